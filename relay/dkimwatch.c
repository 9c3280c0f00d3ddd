/*
 * dkimwatch.c: the master's DKIM DNS watcher (see dkimwatch.h).
 *
 * RFC 6376 3.6.2 (a selector's key record at SEL._domainkey.DOMAIN) and 3.1 (selectors let
 * a domain change keys without breaking signatures in flight), after M3AAWG's DKIM key
 * rotation practice: a new key signs only once its record is visible, the key it replaces
 * stays published for a grace period, then its private key is deleted.
 *
 * A round: walk the key store (synchronous file I/O, as dkkeys.h allows for the master),
 * retire what is due, then one TXT lookup per pending selector, at most
 * DKIMWATCH_INFLIGHT_MAX at once and none while the previous round's lookups are still in
 * flight. Each answer is compared with the key (ctl_domain_dkim_record_check, as "domain
 * check" does) and, when it matches, the store is read again and the selector activated if
 * it is still pending: the store may have changed while the lookup ran.
 */
#include "relay/dkimwatch.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "dkim/dkkeys.h"
#include "relay/ctl_domain.h"
#include "relay/log.h"
#include "relay/resolver.h"

#define DKIMWATCH_INFLIGHT_MAX 64 /* lookups at once; the rest wait for later rounds */
#define DKIMWATCH_FIRST_DELAY  1  /* seconds from start to the first round */

struct dkimwatch {
	struct event_base *base;
	const struct config *cfg;
	struct resolver *resolver;
	struct event *first; /* the first round, soon after start */
	struct event *timer; /* then every dkim_dns_check_interval seconds */
	size_t inflight;
	size_t cursor; /* where the next round starts among the pending selectors */
};

/* One pending selector in a round; a lookup owns its copy until its callback. */
struct watch_item {
	struct dkimwatch *w;
	char domain[DKKEYS_DOMAIN_MAX + 1];
	struct dkkeys_selector sel;
};

struct round {
	struct watch_item *pending;
	size_t npending, cap;
	char (*due)[DKKEYS_DOMAIN_MAX + 1]; /* domains with a retiring key whose time has come */
	size_t ndue, due_cap;
	int64_t now;
};

static int round_collect(const struct dkkeys_domain *d, void *arg, char *err, size_t errlen)
{
	struct round *r = arg;
	bool due = false;
	for (size_t i = 0; i < d->count; i++) {
		const struct dkkeys_selector *s = &d->sel[i];
		due = due || (s->state == DKKEYS_STATE_RETIRING && s->retire_at <= r->now);
		if (s->state != DKKEYS_STATE_PENDING)
			continue;
		if (r->npending == r->cap) {
			size_t ncap = r->cap ? r->cap * 2 : 16;
			struct watch_item *n = realloc(r->pending, ncap * sizeof *n);
			if (n == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			r->pending = n;
			r->cap = ncap;
		}
		struct watch_item *it = &r->pending[r->npending++];
		memset(it, 0, sizeof *it);
		memcpy(it->domain, d->name, strlen(d->name) + 1);
		it->sel = *s;
	}
	if (due) {
		if (r->ndue == r->due_cap) {
			size_t ncap = r->due_cap ? r->due_cap * 2 : 16;
			char(*n)[DKKEYS_DOMAIN_MAX + 1] = realloc(r->due, ncap * sizeof *n);
			if (n == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			r->due = n;
			r->due_cap = ncap;
		}
		memcpy(r->due[r->ndue++], d->name, strlen(d->name) + 1);
	}
	return 0;
}

/* dkkeys_domain_retire_due for one domain, with a log line per selector it retired. */
static void retire_domain(const struct dkimwatch *w, const char *domain, int64_t now)
{
	char err[512];
	struct dkkeys_domain *before = malloc(sizeof *before), *after = malloc(sizeof *after);
	size_t retired = 0;
	if (before == NULL || after == NULL ||
	    dkkeys_domain_read(w->cfg->data_dir, domain, before, err, sizeof err) == -1 ||
	    dkkeys_domain_retire_due(w->cfg->data_dir, domain, now, &retired, err, sizeof err) ==
	        -1 ||
	    dkkeys_domain_read(w->cfg->data_dir, domain, after, err, sizeof err) == -1) {
		log_error(0, "event=dkim_retire_failed domain=%s error=\"%s\"", domain,
		          before == NULL || after == NULL ? "out of memory" : err);
		free(before);
		free(after);
		return;
	}
	for (size_t i = 0; i < before->count; i++)
		for (size_t k = 0; k < after->count; k++)
			if (strcmp(before->sel[i].name, after->sel[k].name) == 0 &&
			    before->sel[i].state != DKKEYS_STATE_RETIRED &&
			    after->sel[k].state == DKKEYS_STATE_RETIRED)
				log_info(0,
				         "event=dkim_selector_retired domain=%s selector=%s "
				         "algorithm=%s from=%s private_key=deleted",
				         domain, after->sel[k].name,
				         dkkeys_algorithm_name(after->sel[k].algorithm),
				         dkkeys_state_name(before->sel[i].state));
	free(before);
	free(after);
}

/* Activates it->sel when it is still pending, and logs what changed. */
static void activate(const struct watch_item *it)
{
	const struct dkimwatch *w = it->w;
	char err[512];
	int64_t now = (int64_t)time(NULL);
	struct dkkeys_domain *d = malloc(sizeof *d);
	if (d == NULL ||
	    dkkeys_domain_read(w->cfg->data_dir, it->domain, d, err, sizeof err) == -1) {
		log_error(0, "event=dkim_activate_failed domain=%s selector=%s error=\"%s\"",
		          it->domain, it->sel.name, d == NULL ? "out of memory" : err);
		free(d);
		return;
	}
	const struct dkkeys_selector *now_sel = NULL;
	for (size_t i = 0; i < d->count; i++)
		if (strcmp(d->sel[i].name, it->sel.name) == 0)
			now_sel = &d->sel[i];
	if (now_sel == NULL || now_sel->state != DKKEYS_STATE_PENDING ||
	    strcmp(now_sel->public_key, it->sel.public_key) != 0) {
		log_info(0,
		         "event=dkim_activate_skipped domain=%s selector=%s reason=\"changed "
		         "while its record was looked up\"",
		         it->domain, it->sel.name);
		free(d);
		return;
	}
	if (dkkeys_selector_activate(w->cfg->data_dir, it->domain, it->sel.name, now,
	                             (int64_t)w->cfg->dkim_retire_grace, err, sizeof err) == -1) {
		log_error(0, "event=dkim_activate_failed domain=%s selector=%s error=\"%s\"",
		          it->domain, it->sel.name, err);
		free(d);
		return;
	}
	log_info(0, "event=dkim_selector_activated domain=%s selector=%s algorithm=%s from=pending",
	         it->domain, it->sel.name, dkkeys_algorithm_name(it->sel.algorithm));
	for (size_t i = 0; i < d->count; i++) {
		const struct dkkeys_selector *o = &d->sel[i];
		if (o->algorithm == it->sel.algorithm && o->state == DKKEYS_STATE_ACTIVE &&
		    strcmp(o->name, it->sel.name) != 0)
			log_info(0,
			         "event=dkim_selector_retiring domain=%s selector=%s algorithm=%s "
			         "from=active retire_at=%lld replaced_by=%s",
			         it->domain, o->name, dkkeys_algorithm_name(o->algorithm),
			         (long long)(now + w->cfg->dkim_retire_grace), it->sel.name);
	}
	free(d);
}

static void on_answer(const struct resolver_result *res, uint64_t ref, void *arg)
{
	struct watch_item *it = arg;
	struct dkimwatch *w = it->w;
	w->inflight--;
	char why[300];
	const char *reason = NULL;
	if (res->status == RESOLVER_CANCELLED) {
		free(it);
		return;
	}
	if (res->status == RESOLVER_OK) {
		const struct dns_record *found = NULL;
		size_t n = 0;
		for (size_t i = 0; i < res->response->count; i++)
			if (res->response->answers[i].match &&
			    res->response->answers[i].type == DNS_TYPE_TXT) {
				found = &res->response->answers[i];
				n++;
			}
		if (n > 1)
			reason = "several TXT records at the name";
		else
			reason = ctl_domain_dkim_record_check(
			    found->rdata.txt.data, found->rdata.txt.len, &it->sel, why, sizeof why);
		if (reason == NULL)
			activate(it);
		else
			log_warn(0,
			         "event=dkim_selector_pending domain=%s selector=%s reason=\"%s\" "
			         "publish=\"v=DKIM1; k=%s; p=...\"",
			         it->domain, it->sel.name, reason,
			         dkkeys_algorithm_name(it->sel.algorithm));
	} else if (res->status == RESOLVER_NODATA || res->status == RESOLVER_NXDOMAIN) {
		log_debug(0,
		          "event=dkim_selector_pending domain=%s selector=%s reason=\"no record\"",
		          it->domain, it->sel.name);
	} else {
		log_warn(0,
		         "event=dkim_lookup_failed domain=%s selector=%s status=%s "
		         "reason=\"%s\"",
		         it->domain, it->sel.name, resolver_status_name(res->status), res->detail);
	}
	free(it);
}

static void lookups_start(struct dkimwatch *w, struct round *r)
{
	if (r->npending == 0)
		return;
	if (w->inflight > 0) {
		log_debug(0, "event=dkimwatch_busy inflight=%zu", w->inflight);
		return;
	}
	size_t start = w->cursor % r->npending, started = 0;
	for (size_t k = 0; k < r->npending && w->inflight < DKIMWATCH_INFLIGHT_MAX; k++) {
		const struct watch_item *src = &r->pending[(start + k) % r->npending];
		char name[DKKEYS_SELECTOR_MAX + DKKEYS_DOMAIN_MAX + 16];
		snprintf(name, sizeof name, "%s._domainkey.%s", src->sel.name, src->domain);
		struct watch_item *it = malloc(sizeof *it);
		if (it == NULL) {
			log_error(0, "event=dkimwatch_lookup error=\"out of memory\"");
			break;
		}
		*it = *src;
		it->w = w;
		if (resolver_query(w->resolver, name, DNS_TYPE_TXT, on_answer, 0, it) == -1) {
			log_error(
			    0, "event=dkimwatch_lookup name=%s error=\"cannot start the lookup\"",
			    name);
			free(it);
			continue;
		}
		w->inflight++;
		started++;
	}
	w->cursor += started;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct dkimwatch *w = arg;
	struct round r = {0};
	r.now = (int64_t)time(NULL);
	char err[512];
	if (dkkeys_store_walk(w->cfg->data_dir, round_collect, &r, err, sizeof err) == -1)
		log_error(0, "event=dkimwatch_walk error=\"%s\"", err);
	else {
		for (size_t i = 0; i < r.ndue; i++)
			retire_domain(w, r.due[i], r.now);
		lookups_start(w, &r);
	}
	free(r.pending);
	free(r.due);
}

struct dkimwatch *dkimwatch_new(struct event_base *base, const struct config *cfg, char *err,
                                size_t errlen)
{
	if (cfg->dkim_dns_check_interval <= 0) {
		snprintf(err, errlen, "off");
		return NULL;
	}
	struct dkimwatch *w = calloc(1, sizeof *w);
	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->base = base;
	w->cfg = cfg;
	w->resolver = resolver_new(base, cfg->dns_resolver, cfg->dns_timeout_ms,
	                           RESOLVER_ATTEMPTS_DEFAULT, err, errlen);
	w->first = event_new(base, -1, 0, on_tick, w);
	w->timer = event_new(base, -1, EV_PERSIST, on_tick, w);
	struct timeval first = {DKIMWATCH_FIRST_DELAY, 0};
	struct timeval every = {cfg->dkim_dns_check_interval, 0};
	if (w->resolver == NULL || w->first == NULL || w->timer == NULL ||
	    event_add(w->first, &first) == -1 || event_add(w->timer, &every) == -1) {
		if (w->resolver != NULL)
			snprintf(err, errlen, "cannot start its timers");
		dkimwatch_free(w);
		return NULL;
	}
	log_info(0, "event=dkimwatch_started interval=%d resolver=%s grace=%d",
	         cfg->dkim_dns_check_interval, resolver_server_text(w->resolver),
	         cfg->dkim_retire_grace);
	return w;
}

void dkimwatch_free(struct dkimwatch *w)
{
	if (w == NULL)
		return;
	if (w->first != NULL)
		event_free(w->first);
	if (w->timer != NULL)
		event_free(w->timer);
	resolver_free(w->resolver); /* cancels the lookups: on_answer frees their items */
	free(w);
}
