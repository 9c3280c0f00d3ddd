/*
 * server.c: one worker process. Owns its event loop, its listeners (sockets bound by the
 * master, shared between workers with SO_REUSEPORT), its Redis connection, its thread pool
 * for signing and password checks, the AUTH success cache, and the allowed-network list
 * reloaded from Redis every few seconds.
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting; sessions between transactions get 421 4.3.2
 * at once, sessions mid-transaction may finish (then get 421) for up to SERVER_DRAIN_SECONDS,
 * after which the rest get 421 too; then return.
 */
#include "relay/server.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "dkim/dksign.h"
#include "queue/queue.h"
#include "relay/auth.h"
#include "relay/deliver.h"
#include "relay/log.h"
#include "relay/smtpd.h"
#include "relay/workpool.h"

#define SERVER_DRAIN_SECONDS     10
#define SERVER_ALLOWNETS_SECONDS 5
#define SERVER_ACCEPT_PAUSE_MS   200
#define SERVER_AUTH_THREADS      1 /* per worker: a scrypt check is 50 ms and 16 MiB */
#define SERVER_AUTH_BACKLOG      64
#define SERVER_DKIM_RELOAD_MS    2000
#define SERVER_PRESSURE_MS       1000 /* Redis memory and queue size sampled this often */

struct listener_ctx {
	struct server *srv;
	struct evconnlistener *l;
	struct event *resume;
	bool implicit_tls;
};

struct worker {
	struct server srv;
	struct listener_ctx *listeners;
	size_t nlisteners;
	struct event *sigterm, *sigint, *nets_timer, *drain_timer, *dkim_timer, *pressure_timer;
	int drain_ticks;
};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct listener_ctx *lc = arg;
	smtpd_accept(lc->srv, fd, sa, salen, lc->implicit_tls);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener_ctx *lc = arg;
	if (!lc->srv->stopping)
		evconnlistener_enable(lc->l);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct listener_ctx *lc = arg;
	int err = EVUTIL_SOCKET_ERROR();
	log_warn(0, "event=accept_error error=\"%s\"", evutil_socket_error_to_string(err));
	/* out of descriptors or memory: pause this listener instead of spinning */
	evconnlistener_disable(l);
	struct timeval tv = {0, SERVER_ACCEPT_PAUSE_MS * 1000};
	evtimer_add(lc->resume, &tv);
}

static void allownets_clear(struct server *srv)
{
	for (size_t i = 0; i < srv->nnets; i++) {
		free(srv->nets[i].cidr);
		free(srv->nets[i].user);
		free(srv->nets[i].domains);
	}
	free(srv->nets);
	srv->nets = NULL;
	srv->nnets = 0;
}

static void allownets_loaded(enum queue_result res, const struct queue_allownet *nets, size_t count,
                             uint64_t ref, void *arg)
{
	struct server *srv = arg;
	if (res != QUEUE_OK)
		return; /* keep the previous list; the timer tries again */
	struct server_allownet *copy = calloc(count ? count : 1, sizeof *copy);
	if (copy == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		copy[i].cidr = strdup(nets[i].cidr);
		copy[i].user = strdup(nets[i].user);
		copy[i].domains = strdup(nets[i].domains);
		if (!copy[i].cidr || !copy[i].user || !copy[i].domains) {
			for (size_t k = 0; k <= i; k++) {
				free(copy[k].cidr);
				free(copy[k].user);
				free(copy[k].domains);
			}
			free(copy);
			return;
		}
	}
	allownets_clear(srv);
	srv->nets = copy;
	srv->nnets = count;
	srv->nets_loaded = true;
}

static void on_nets_timer(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (queue_conn_ready(w->srv.queue))
		queue_allownets_load(w->srv.queue, allownets_loaded, 0, &w->srv);
	/* soon after start (Redis may not be connected yet), then every few seconds */
	struct timeval tv = {w->srv.nets_loaded ? SERVER_ALLOWNETS_SECONDS : 1, 0};
	evtimer_add(w->nets_timer, &tv);
}

const struct server_allownet *server_allownet_find(const struct server *srv,
                                                   const struct sockaddr *addr)
{
	for (size_t i = 0; i < srv->nnets; i++)
		if (auth_net_contains(srv->nets[i].cidr, addr))
			return &srv->nets[i];
	return NULL;
}

/* New, rotated or deleted DKIM keys take effect without a restart. */
static void on_dkim_timer(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	char err[512];
	int rc = dksign_ctx_reload(w->srv.dkim, err, sizeof err);
	if (rc == 1) {
		size_t domains, keys;
		dksign_ctx_counts(w->srv.dkim, &domains, &keys);
		log_info(0, "event=dkim_reload domains=%zu keys=%zu", domains, keys);
	} else if (rc == -1) {
		log_error(0, "event=dkim_reload result=kept_previous_keys error=\"%s\"", err);
	}
	struct timeval tv = {SERVER_DKIM_RELOAD_MS / 1000, (SERVER_DKIM_RELOAD_MS % 1000) * 1000};
	evtimer_add(w->dkim_timer, &tv);
}

static void pressure_read(enum queue_result res, const struct queue_pressure *p, uint64_t ref,
                          void *arg)
{
	struct server *srv = arg;
	if (res != QUEUE_OK)
		return; /* Redis' own refusals (OOM, the commit's max_queued) still hold */
	bool full = queue_pressure_full(p, (unsigned)srv->cfg->redis_memory_limit,
	                                srv->cfg->max_queued_recipients);
	if (full != srv->queue_full)
		log_warn(0,
		         "event=back_pressure state=%s used_memory=%lld maxmemory=%lld "
		         "recipients_queued=%lld",
		         full ? "on" : "off", (long long)p->used_memory, (long long)p->maxmemory,
		         (long long)p->recipients_queued);
	srv->queue_full = full;
}

static void on_pressure_timer(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (queue_conn_ready(w->srv.queue))
		queue_pressure_read(w->srv.queue, pressure_read, 0, &w->srv);
	struct timeval tv = {SERVER_PRESSURE_MS / 1000, (SERVER_PRESSURE_MS % 1000) * 1000};
	evtimer_add(w->pressure_timer, &tv);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	w->drain_ticks++;
	if (w->drain_ticks == SERVER_DRAIN_SECONDS * 10) /* deadline: say goodbye to everyone */
		smtpd_drain(&w->srv, true);
	/* after the deadline, one more second for the 421s to flush; outbound messages in
	 * flight past it are delivered again after their lease expires */
	bool idle = smtpd_count(&w->srv) == 0 && deliver_active(w->srv.deliver) == 0;
	if (idle || w->drain_ticks > (SERVER_DRAIN_SECONDS + 1) * 10) {
		event_base_loopexit(w->srv.base, NULL);
		return;
	}
	struct timeval tv = {0, 100 * 1000};
	evtimer_add(w->drain_timer, &tv);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;
	if (w->srv.stopping)
		return;
	w->srv.stopping = true;
	log_info(0, "event=stopping signal=%d sessions=%zu", (int)sig, smtpd_count(&w->srv));
	for (size_t i = 0; i < w->nlisteners; i++)
		evconnlistener_disable(w->listeners[i].l);
	smtpd_drain(&w->srv, false);
	deliver_stop(w->srv.deliver);
	struct timeval tv = {0, 0};
	evtimer_add(w->drain_timer, &tv);
}

int server_run(const struct config *cfg, int worker, const char *redis_address, SSL_CTX *tls,
               struct connlimit *limits, const struct server_listener *listeners, size_t nlisteners)
{
	int rc = -1;
	struct worker *w = calloc(1, sizeof *w);
	if (w == NULL)
		return -1;
	struct server *srv = &w->srv;
	srv->cfg = cfg;
	srv->worker = worker;
	srv->redis_address = redis_address;
	srv->tls = tls;
	srv->limits = limits;
	srv->base = event_base_new();
	if (srv->base == NULL) {
		log_error(0, "event=start call=event_base_new failed");
		goto out;
	}
	struct queue_settings qs = {redis_address, cfg->redis_password, cfg->redis_timeout_ms};
	srv->queue = queue_conn_new(srv->base, &qs);
	srv->pool = workpool_new(srv->base, cfg->sign_threads, cfg->sign_backlog);
	srv->auth_pool = workpool_new(srv->base, SERVER_AUTH_THREADS, SERVER_AUTH_BACKLOG);
	srv->auth_cache = auth_cache_new((unsigned)cfg->auth_cache_ttl);
	char dkerr[512];
	srv->dkim = dksign_ctx_new(cfg->data_dir, dkerr, sizeof dkerr);
	if (srv->dkim == NULL) {
		log_error(0, "event=start reason=dkim error=\"%s\"", dkerr);
		goto out;
	}
	if (srv->queue == NULL || srv->pool == NULL || srv->auth_pool == NULL ||
	    srv->auth_cache == NULL || smtpd_init(srv) == -1) {
		log_error(0, "event=start reason=\"cannot create queue, pool or cache\"");
		goto out;
	}
	w->listeners = calloc(nlisteners ? nlisteners : 1, sizeof *w->listeners);
	if (w->listeners == NULL)
		goto out;
	for (size_t i = 0; i < nlisteners; i++) {
		struct listener_ctx *lc = &w->listeners[i];
		lc->srv = srv;
		lc->implicit_tls = listeners[i].implicit_tls;
		lc->resume = evtimer_new(srv->base, on_accept_resume, lc);
		lc->l = evconnlistener_new(srv->base, on_accept, lc,
		                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
		                           listeners[i].fd);
		if (lc->l == NULL || lc->resume == NULL) {
			log_error(0, "event=start call=evconnlistener_new failed");
			goto out;
		}
		w->nlisteners++;
		evconnlistener_set_error_cb(lc->l, on_accept_error);
	}
	w->sigterm = evsignal_new(srv->base, SIGTERM, on_stop_signal, w);
	w->sigint = evsignal_new(srv->base, SIGINT, on_stop_signal, w);
	w->nets_timer = evtimer_new(srv->base, on_nets_timer, w);
	w->drain_timer = evtimer_new(srv->base, on_drain_tick, w);
	w->dkim_timer = evtimer_new(srv->base, on_dkim_timer, w);
	w->pressure_timer = evtimer_new(srv->base, on_pressure_timer, w);
	if (!w->sigterm || !w->sigint || !w->nets_timer || !w->drain_timer || !w->dkim_timer ||
	    !w->pressure_timer || event_add(w->sigterm, NULL) == -1 ||
	    event_add(w->sigint, NULL) == -1) {
		log_error(0, "event=start call=evsignal_new failed");
		goto out;
	}
	struct timeval first = {0, 200 * 1000};
	evtimer_add(w->nets_timer, &first);
	struct timeval dk = {SERVER_DKIM_RELOAD_MS / 1000, (SERVER_DKIM_RELOAD_MS % 1000) * 1000};
	evtimer_add(w->dkim_timer, &dk);
	struct timeval pt = {0, 300 * 1000};
	evtimer_add(w->pressure_timer, &pt);
	queue_conn_set_max_queued(srv->queue, cfg->max_queued_recipients);
	if (cfg->delivery) {
		char derr[512] = "";
		srv->deliver = deliver_new(srv, derr, sizeof derr);
		if (srv->deliver == NULL) {
			log_error(0, "event=start reason=delivery error=\"%s\"", derr);
			goto out;
		}
	}
	log_info(0, "event=worker_started worker=%d listeners=%zu sign_threads=%d", worker,
	         nlisteners, cfg->sign_threads);
	if (event_base_dispatch(srv->base) == -1)
		log_error(0, "event=loop call=event_base_dispatch failed");
	rc = 0;
	log_info(0, "event=worker_stopped worker=%d sessions_left=%zu", worker, smtpd_count(srv));
out:
	/* the pool's last completions commit through the queue, whose last callbacks answer
	 * sessions: free in that order */
	workpool_free(srv->pool);
	workpool_free(srv->auth_pool);
	deliver_stop(srv->deliver);
	queue_conn_free(srv->queue);
	deliver_free(srv->deliver); /* after the queue: its last callbacks find their tasks */
	smtpd_shutdown(srv);
	for (size_t i = 0; i < w->nlisteners; i++) {
		evconnlistener_free(w->listeners[i].l);
		event_free(w->listeners[i].resume);
	}
	free(w->listeners);
	if (w->sigterm)
		event_free(w->sigterm);
	if (w->sigint)
		event_free(w->sigint);
	if (w->nets_timer)
		event_free(w->nets_timer);
	if (w->drain_timer)
		event_free(w->drain_timer);
	if (w->dkim_timer)
		event_free(w->dkim_timer);
	if (w->pressure_timer)
		event_free(w->pressure_timer);
	auth_cache_free(srv->auth_cache);
	dksign_ctx_free(srv->dkim); /* the pools are stopped: no thread is signing */
	allownets_clear(srv);
	if (srv->base)
		event_base_free(srv->base);
	free(w);
	return rc;
}
