/*
 * deliver.h: one worker process's outbound delivery: it runs the scheduler's steps against
 * Redis (promotion, site resolution, site picks, leases, outcomes; queue/queue.h) and sends
 * what it leases over SMTP client connections (relay/smtpc.h) to each site's MX hosts
 * (relay/mx.h) or to the host a static route names.
 *
 * Every worker of every machine runs one; they share work and limits only through Redis: a
 * connection to a site needs one of the site's connection slots, each message passes the
 * site's shared rate, and each recipient's outcome releases its lease in the same atomic step
 * (DESIGN.md promises 2 and 6).
 */
#ifndef POSTINO_DELIVER_H
#define POSTINO_DELIVER_H

#include <stddef.h>

struct server;
struct deliver;

/* Starts delivery on srv's event loop, with srv's config and Redis connection. Returns NULL
 * with the reason in err. */
struct deliver *deliver_new(struct server *srv, char *err, size_t errlen);

/* New mail was committed by this worker: promote it soon instead of at the next poll. */
void deliver_kick(struct deliver *d);

/* Stops taking work: idle connections QUIT at once, a message in flight finishes and has its
 * outcome recorded, then its connection QUITs. deliver_active() tells when all are done. */
void deliver_stop(struct deliver *d);

/* Connections (with their slot) still open or closing. */
size_t deliver_active(const struct deliver *d);

/* Frees everything at once (no QUIT): call after deliver_stop and after the Redis connection
 * was freed. Leases still held expire in Redis and are delivered again (at-least-once).
 * NULL is a no-op. */
void deliver_free(struct deliver *d);

#endif
