/*
 * server.h: one worker process's context (event loop, TLS context, Redis connection, thread
 * pool, caches) and the entry point the master calls after fork. Sessions (smtpd.c) reach
 * shared things through struct server; nothing here is shared between processes except the
 * connlimit table.
 */
#ifndef POSTINO_SERVER_H
#define POSTINO_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "relay/config.h"

struct event_base;
struct queue_conn;
struct workpool;
struct auth_cache;
struct connlimit;
struct smtpd_registry;
struct dksign_ctx;
struct deliver;

/* An allowed client network, as loaded from Redis (owned strings). */
struct server_allownet {
	char *cidr;
	char *user;
	char *domains;
};

/* A listening socket handed to a worker: fd and whether it speaks TLS from the first byte. */
struct server_listener {
	int fd;
	bool implicit_tls;
};

struct server {
	const struct config *cfg;
	int worker;
	const char *redis_address;
	struct event_base *base;
	SSL_CTX *tls;
	struct queue_conn *queue;
	struct workpool *pool;      /* message preparation and signing */
	struct workpool *auth_pool; /* password checks, apart so that a login burst cannot delay
	                               the messages of sessions already logged in */
	struct auth_cache *auth_cache;
	struct dksign_ctx *dkim; /* keys cached; reloaded by a timer when the store changes */
	struct connlimit *limits;
	struct smtpd_registry *sessions;
	struct server_allownet *nets;
	size_t nnets;
	bool nets_loaded;
	struct deliver *deliver; /* NULL when this process does not deliver */
	bool queue_full; /* back-pressure: Redis memory or queue size past its limit (452 4.3.1) */
	bool stopping;
};

/* Runs a worker's event loop over the given listeners until SIGTERM; then stops accepting,
 * lets sessions finish their current message for a bounded time and returns. Returns 0, or
 * -1 when start-up failed (logged). */
int server_run(const struct config *cfg, int worker, const char *redis_address, SSL_CTX *tls,
               struct connlimit *limits, const struct server_listener *listeners,
               size_t nlisteners);

/* The allowed network containing addr, or NULL. */
const struct server_allownet *server_allownet_find(const struct server *srv,
                                                   const struct sockaddr *addr);

#endif
