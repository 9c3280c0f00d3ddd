/*
 * connlimit.h: connection counters shared by every worker process (anonymous shared memory
 * mapped before fork): the total and a count per client IP. Each worker writes its own row,
 * and a check sums the rows, so the master can zero a dead worker's row without touching
 * the others. IPs are hashed into a fixed table; two IPs that collide share one count, which
 * can only make the limit stricter. Two workers admitting at the same instant can overshoot a
 * limit by one each.
 */
#ifndef POSTINO_CONNLIMIT_H
#define POSTINO_CONNLIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

struct connlimit;

/* Maps the shared table for `workers` rows. Call before fork. Returns NULL (logged). */
struct connlimit *connlimit_new(int workers);
void connlimit_free(struct connlimit *c);

/* Counts a new connection from addr in worker's row. Returns 0 when admitted, -1 when the
 * total or the per-IP count is at its limit (nothing counted then). */
int connlimit_acquire(struct connlimit *c, int worker, const struct sockaddr *addr, int max_total,
                      int max_per_ip);
/* Releases a connection counted by connlimit_acquire in the same worker. */
void connlimit_release(struct connlimit *c, int worker, const struct sockaddr *addr);
/* Zeroes a worker's row (the master does this when the worker has died). */
void connlimit_reset_worker(struct connlimit *c, int worker);
/* Current total over all workers. */
int connlimit_total(struct connlimit *c);

#endif
