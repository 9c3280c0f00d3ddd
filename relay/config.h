/*
 * config.h: the daemon's configuration. One table of known keys (config.c) with types, ranges
 * and defaults; the file is "key = value" lines with '#' comments. Any unknown key, repeated
 * key or bad value is an error reported as "file:line: reason". The running code reads a const
 * struct config.
 */
#ifndef POSTINO_CONFIG_H
#define POSTINO_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "relay/log.h"

#define CONFIG_LISTEN_MAX 16
#define CONFIG_STR_MAX    256

struct config_listen_addr {
	struct sockaddr_storage addr;
	socklen_t len;
	char text[64]; /* "ADDR:PORT" as given, for logs */
};

struct config_listen {
	size_t count;
	struct config_listen_addr a[CONFIG_LISTEN_MAX];
};

/* dkim_algorithms: the DKSIGN_ALG_* bits of dkim/dksign.h (relay/ctl_dkim.c checks that
 * they are equal). */
enum config_dkim_algorithms {
	CONFIG_DKIM_RSA = 1,
	CONFIG_DKIM_ED25519 = 2,
	CONFIG_DKIM_BOTH = 3,
};

/* dkim_unknown_domain: what happens to a message whose From domain has no DKIM key. */
enum config_dkim_unknown {
	CONFIG_DKIM_UNKNOWN_SIGN,   /* sign it with dkim_domain */
	CONFIG_DKIM_UNKNOWN_REFUSE, /* refuse it (550 5.7.1) */
};

struct config {
	char file[PATH_MAX];
	char hostname[CONFIG_STR_MAX];
	char data_dir[PATH_MAX];
	char redis[PATH_MAX];
	char redis_password[CONFIG_STR_MAX];
	bool redis_unsafe_ok;
	int redis_timeout_ms;
	char redis_server[PATH_MAX];
	uint64_t redis_maxmemory;
	struct config_listen listen_submission;
	struct config_listen listen_smtps;
	char tls_cert[PATH_MAX];
	char tls_key[PATH_MAX];
	int workers;
	int sign_threads;
	int sign_backlog;
	bool auth_cleartext_loopback;
	int max_recipients;
	uint64_t max_message_size;
	int max_received_headers;
	int idle_timeout;
	int data_timeout;
	int tls_handshake_timeout;
	int max_connections;
	int max_connections_per_ip;
	int max_errors;
	int auth_max_failures_ip;
	int auth_max_failures_user;
	int auth_failure_window;
	int auth_cache_ttl;
	enum log_level log_level;
	enum config_dkim_algorithms dkim_algorithms;
	int dkim_lifetime;
	enum config_dkim_unknown dkim_unknown_domain;
	char dkim_domain[CONFIG_STR_MAX];
	char dns_resolver[CONFIG_STR_MAX]; /* "" = resolv.conf (relay/resolver.h) */
	int dns_timeout_ms;
	char spf_include[CONFIG_STR_MAX]; /* SPF terms the domain's record must hold */
	int dkim_dns_check_interval;      /* seconds; 0 = the DKIM DNS watcher is off */
	int dkim_retire_grace;            /* seconds a replaced key stays published */
};

/*
 * Reads and checks path into *cfg (defaults first, then the file, then derived values:
 * hostname from gethostname(), workers and sign_threads from the core count when 0,
 * dkim_domain from the hostname without its first label when empty).
 * Returns 0, or -1 with "file:line: reason" (or "file: reason") in err.
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Same as config_load over text in memory; name is used in messages. For tests. */
int config_parse(const char *name, const char *text, size_t len, struct config *cfg, char *err,
                 size_t errlen);

/* The address of the Redis socket of the embedded server: "<data_dir>/redis.sock". */
int config_embedded_redis_path(const struct config *cfg, char *out, size_t outlen);

#endif
