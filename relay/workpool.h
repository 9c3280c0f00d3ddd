/*
 * workpool.h: a fixed set of threads that run CPU-heavy jobs (DKIM signing, password hashing)
 * off the event loop, with a bounded backlog. Completions come back on the event loop thread.
 *
 * Ownership: the caller owns each job; it must stay valid from workpool_submit() until its
 * done callback has run (on the loop thread). The pool never frees jobs.
 */
#ifndef POSTINO_WORKPOOL_H
#define POSTINO_WORKPOOL_H

struct event_base;
struct workpool;

typedef void workpool_fn(void *job);

/* Starts `threads` threads; at most `backlog` jobs may wait or run at once. Returns NULL on
 * failure (logged). */
struct workpool *workpool_new(struct event_base *base, int threads, int backlog);
/* Runs every queued job, stops the threads, then calls the remaining done callbacks (on the
 * calling thread, which must be the loop thread). No-op on NULL. */
void workpool_free(struct workpool *p);

/* Queues a job: run(job) on a pool thread, then done(job) on the loop thread. Returns 0, or
 * -1 when the backlog is full (nothing queued: wait for the space callback and retry). */
int workpool_submit(struct workpool *p, workpool_fn *run, workpool_fn *done, void *job);

/* Called on the loop thread each time a job completes while submitters were refused, so a
 * waiting submitter can retry. */
void workpool_on_space(struct workpool *p, void (*cb)(void *arg), void *arg);

/* Jobs submitted and not yet done. */
int workpool_pending(const struct workpool *p);

#endif
