/*
 * workpool.c: a thread pool with a bounded ring of jobs and an eventfd that wakes the event
 * loop for completions (see workpool.h). The loop thread is the only one that submits and the
 * only one that runs done callbacks; pool threads only run jobs.
 */
#include "relay/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "relay/log.h"

struct workpool_item {
	workpool_fn *run;
	workpool_fn *done;
	void *job;
};

/* A ring of capacity items; head is the next to take, count the number held. */
struct ring {
	struct workpool_item *items;
	int capacity, head, count;
};

struct workpool {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct ring todo; /* submitted, not started */
	struct ring done; /* finished, done callback not yet run */
	int pending;      /* submitted and not yet done (loop thread only) */
	int backlog;
	bool stopping;
	bool refused; /* a submit was refused since the last space callback */
	int efd;
	struct event *efd_event;
	pthread_t *threads;
	int nthreads;
	void (*space_cb)(void *);
	void *space_arg;
};

static void ring_push(struct ring *r, struct workpool_item it)
{
	r->items[(r->head + r->count) % r->capacity] = it;
	r->count++;
}

static struct workpool_item ring_pop(struct ring *r)
{
	struct workpool_item it = r->items[r->head];
	r->head = (r->head + 1) % r->capacity;
	r->count--;
	return it;
}

static void *pool_thread(void *arg)
{
	struct workpool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->todo.count == 0 && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->todo.count == 0 && p->stopping)
			break;
		struct workpool_item it = ring_pop(&p->todo);
		pthread_mutex_unlock(&p->lock);
		it.run(it.job);
		pthread_mutex_lock(&p->lock);
		ring_push(&p->done, it);
		uint64_t one = 1;
		ssize_t w = write(p->efd, &one, sizeof one);
		(void)w; /* the counter only saturates; the loop drains the ring anyway */
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void drain_done(evutil_socket_t fd, short what, void *arg)
{
	struct workpool *p = arg;
	uint64_t n;
	ssize_t r = read(p->efd, &n, sizeof n);
	(void)r;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		if (p->done.count == 0) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		struct workpool_item it = ring_pop(&p->done);
		pthread_mutex_unlock(&p->lock);
		p->pending--;
		it.done(it.job);
	}
	if (p->refused && p->pending < p->backlog && p->space_cb != NULL) {
		p->refused = false;
		p->space_cb(p->space_arg);
	}
}

struct workpool *workpool_new(struct event_base *base, int threads, int backlog)
{
	struct workpool *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	p->base = base;
	p->backlog = backlog;
	p->todo.capacity = p->done.capacity = backlog;
	p->todo.items = calloc((size_t)backlog, sizeof(struct workpool_item));
	p->done.items = calloc((size_t)backlog, sizeof(struct workpool_item));
	p->threads = calloc((size_t)threads, sizeof(pthread_t));
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->todo.items == NULL || p->done.items == NULL || p->threads == NULL || p->efd == -1) {
		log_error(0, "event=workpool_new error=\"%s\"", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->efd_event = event_new(base, p->efd, EV_READ | EV_PERSIST, drain_done, p);
	if (p->efd_event == NULL || event_add(p->efd_event, NULL) == -1) {
		log_error(0, "event=workpool_new error=event_new");
		goto fail;
	}
	for (int i = 0; i < threads; i++) {
		int rc = pthread_create(&p->threads[i], NULL, pool_thread, p);
		if (rc != 0) {
			log_error(0, "event=workpool_new call=pthread_create error=\"%s\"",
			          strerror(rc));
			workpool_free(p);
			return NULL;
		}
		p->nthreads++;
	}
	return p;
fail:
	if (p->efd_event != NULL)
		event_free(p->efd_event);
	if (p->efd != -1 && p->efd != 0)
		close(p->efd);
	free(p->todo.items);
	free(p->done.items);
	free(p->threads);
	free(p);
	return NULL;
}

int workpool_submit(struct workpool *p, workpool_fn *run, workpool_fn *done, void *job)
{
	if (p->pending >= p->backlog) {
		p->refused = true;
		return -1;
	}
	struct workpool_item it = {run, done, job};
	pthread_mutex_lock(&p->lock);
	ring_push(&p->todo, it);
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	p->pending++;
	return 0;
}

void workpool_on_space(struct workpool *p, void (*cb)(void *arg), void *arg)
{
	p->space_cb = cb;
	p->space_arg = arg;
}

int workpool_pending(const struct workpool *p)
{
	return p->pending;
}

void workpool_free(struct workpool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	/* threads ran every queued job before exiting; hand back the completions */
	while (p->done.count > 0) {
		struct workpool_item it = ring_pop(&p->done);
		it.done(it.job);
	}
	event_free(p->efd_event);
	close(p->efd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p->todo.items);
	free(p->done.items);
	free(p->threads);
	free(p);
}
