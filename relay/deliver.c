/*
 * deliver.c: outbound delivery of one worker process (see deliver.h). Owns the delivery
 * tasks, their SMTP client connections, the resolver used for MX lookups (with its cache),
 * the client TLS context and three loops driven by timers:
 *
 *   promote   queue_sched_promote: due entries into ready queues (every second, at the
 *             scheduler's next_ms, at once while a batch was full, soon after a local commit);
 *   resolve   queue_resolve_take: domains whose site is unknown -> route or MX lookup ->
 *             queue_site_set, or queue_resolve_fail for a null MX, NXDOMAIN or a DNS failure;
 *   dispatch  queue_site_next -> queue_site_slot_acquire -> a task for the site.
 *
 * A task holds one connection slot of one site and at most one connection: it leases the
 * site's next entry (the shared rate is checked in the same step), finds the hosts (the
 * route, or the domain's MX hosts in preference order and their addresses), sends, records
 * the outcome (which releases the lease), and leases again on the same connection until the
 * site is empty for outbound_idle_timeout, the connection has carried its messages, or the
 * worker stops. A site whose every host fails to connect or greet is marked down (no attempt
 * counted). Leases last lease_timeout, longer than the longest transaction (connect + commands
 * + end of data), so they are never renewed; a killed worker's leases expire and the
 * promoter of any worker puts them back.
 *
 * Callbacks find their task by handle (index and generation), never by pointer; connection
 * objects (struct dconn) are owned here and freed only on their CLOSED event or by
 * smtpc_free, after which smtpc calls nothing, so they may be callback arguments.
 */
#include "relay/deliver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "queue/queue.h"
#include "relay/bounce.h"
#include "relay/config.h"
#include "relay/log.h"
#include "relay/mx.h"
#include "relay/resolver.h"
#include "relay/server.h"
#include "relay/smtpc.h"

_Static_assert((int)CONFIG_TLS_NONE == (int)SMTPC_TLS_NONE &&
                   (int)CONFIG_TLS_OPPORTUNISTIC == (int)SMTPC_TLS_OPPORTUNISTIC &&
                   (int)CONFIG_TLS_REQUIRED == (int)SMTPC_TLS_REQUIRED,
               "config and smtpc TLS policies must match");

#define DELIVER_RESOLVE_PARALLEL 32    /* domain resolutions at once per worker */
#define DELIVER_RESOLVE_CLAIM_MS 60000 /* a claimed domain comes back after this */
#define DELIVER_SITE_TTL_MIN     60    /* seconds pst:site:of:<domain> lives at least */
#define DELIVER_SITE_TTL_MAX     86400 /* and at most */
#define DELIVER_ROUTE_SITE_TTL   300   /* for routed domains (the config may change) */
#define DELIVER_DNS_CACHE        65536 /* answers kept by the resolver cache */
#define DELIVER_POLL_MS          1000  /* promote, resolve and dispatch polls */
#define DELIVER_KICK_MS          20    /* a local commit promotes within this */
#define DELIVER_IDLE_POLL_MS     100   /* a connection with nothing to send asks again */
#define DELIVER_MISS_PAUSE_MS    50    /* dispatch found nothing to open, many times */
#define DELIVER_REPLY_MAX        512   /* reply text recorded per recipient */
#define DELIVER_SLOT_TTL_MS      60000 /* a connection slot lives this long unless renewed */
#define DELIVER_SLOT_RENEW_MS    20000 /* and is renewed this often while in use */
#define DELIVER_RETRY_MS         1000  /* unrecorded outcomes and releases are sent again */

struct deliver;

/* One SMTP client connection. Freed on its CLOSED event, or with the task at shutdown. */
struct dconn {
	struct deliver *d;
	struct smtpc *c;
	uint64_t task; /* the owning task's handle, 0 once detached (closing) */
	struct dconn *prev, *next;
};

/* The leased entry being delivered, copied out of the lease's reply. */
struct current {
	bool have;
	char id[17];
	char domain[256];
	uint64_t token;
	unsigned attempt;
	char *sender;
	char *body;
	size_t body_len;
	bool smtputf8, body_8bit;
	size_t nrcpts;
	unsigned *index;
	char **rcpts;
	bool fresh_retry; /* already reconnected once after a reused connection failed */
};

/* An outcome to record, with copies of everything it names: kept and sent again while Redis
 * is unavailable, so that a delivery done is recorded as done (not leased and sent again
 * once its lease expires). */
struct record {
	struct deliver *d;
	uint64_t task; /* the task to continue once recorded, 0 for none */
	struct record *next;
	char id[17];
	char domain[256];
	uint64_t token;
	char host[MX_NAME_MAX + 1];
	char tls[64];
	int64_t down_ms;
	size_t nrcpts;
	struct queue_rcpt_outcome *rcpts;
	char (*replies)[DELIVER_REPLY_MAX];
};

/* A connection slot to give back; kept and sent again while Redis is unavailable, or the
 * site would stay short of a connection until the slot expires. */
struct release {
	struct deliver *d;
	struct release *next;
	uint64_t slot;
	char site[QUEUE_SITE_MAX + 1];
};

enum task_state {
	TASK_LEASING,   /* a lease request is out */
	TASK_WAITING,   /* timer: rate wait, or idle poll */
	TASK_ROUTING,   /* MX or address lookup */
	TASK_SENDING,   /* smtpc has the message */
	TASK_RECORDING, /* the outcome request is out */
};

struct task {
	struct deliver *d;
	uint64_t handle;
	enum task_state state;
	char site[QUEUE_SITE_MAX + 1];
	const struct config_site_rule *rule;
	uint64_t slot;
	struct event *renew_timer;
	bool slot_lost;
	struct dconn *conn;
	unsigned sent; /* messages this task sent (each connection carries at most the rule's) */
	bool idle;     /* polling an empty site */
	int64_t idle_since_ms;
	struct event *timer;
	struct current cur;  /* the message being routed or sent */
	struct current next; /* leased ahead while cur is sent (next.have) */
	bool lease_out;      /* a lease request is out (for cur when state is TASK_LEASING, else
	                        ahead of time for next) */
	bool end_wanted;     /* end once the lease request out has come back */
	/* finding a host for cur */
	const struct config_route *route;
	struct mx_result mx;
	size_t host_i;
	struct mx_addresses addrs;
	size_t addr_i;
	bool tls_fallback;    /* this address again without STARTTLS (failed handshake) */
	bool any_established; /* a host greeted and answered EHLO/HELO */
	bool tls_unavailable; /* a host did not offer the TLS the policy requires */
	char last_failure[DELIVER_REPLY_MAX];
	char host_name[MX_NAME_MAX + 1];
};

struct deliver {
	struct server *srv;
	const struct config *cfg;
	struct event_base *base;
	struct queue_conn *q;
	struct resolver *resolver;
	struct bounce_rules *rules; /* classify failures for the events (bounce_rules) */
	SSL_CTX *tls;
	struct queue_policy policy;
	char worker_name[QUEUE_WORKER_MAX + 1];
	struct sockaddr_storage source;
	socklen_t source_len;
	struct event *promote_timer, *resolve_timer, *dispatch_timer, *retry_timer;
	struct record *unrecorded;  /* outcomes waiting for Redis */
	struct release *unreleased; /* slots waiting for Redis */
	bool promoting, kicked, taking, dispatching, stopping;
	unsigned resolving; /* domains being resolved */
	unsigned misses;    /* dispatch picks that opened nothing, in a row */
	/* task registry: handle = generation << 32 | (index + 1) */
	struct task **tasks;
	uint32_t *gens;
	size_t cap, ntasks;
	struct dconn *conns; /* every connection, owned or closing */
};

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timer_in(struct event *ev, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(ev, &tv);
}

static struct task *task_find(struct deliver *d, uint64_t handle)
{
	size_t i = (size_t)(handle & 0xffffffffu);
	if (i == 0 || i > d->cap || d->tasks[i - 1] == NULL || d->gens[i - 1] != handle >> 32)
		return NULL;
	return d->tasks[i - 1];
}

/* "250 2.0.0 text", "2.0.0 text" for a made-up reply (code 0). */
static void reply_format(const struct smtpc_reply *r, char *out, size_t outlen)
{
	char esc[DELIVER_REPLY_MAX];
	size_t n = 0;
	/* keep the reply on one line: control octets become spaces */
	for (const char *p = r->text; *p != '\0' && n + 1 < sizeof esc; p++)
		esc[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
	esc[n] = '\0';
	const char *sep = r->enhanced[0] != '\0' ? " " : "";
	if (r->code > 0)
		snprintf(out, outlen, "%d%s%s %.400s", r->code, sep, r->enhanced, esc);
	else
		snprintf(out, outlen, "%s %.400s", r->enhanced[0] != '\0' ? r->enhanced : "4.4.0",
		         esc);
}

static void current_clear(struct current *c)
{
	free(c->sender);
	free(c->body);
	if (c->rcpts != NULL)
		for (size_t i = 0; i < c->nrcpts; i++)
			free(c->rcpts[i]);
	free(c->rcpts);
	free(c->index);
	memset(c, 0, sizeof *c);
}

static int current_copy(struct current *c, const struct queue_delivery *dl)
{
	memset(c, 0, sizeof *c);
	snprintf(c->id, sizeof c->id, "%s", dl->id);
	snprintf(c->domain, sizeof c->domain, "%s", dl->domain);
	c->token = dl->token;
	c->attempt = dl->attempt;
	c->smtputf8 = dl->smtputf8;
	c->body_8bit = dl->body_8bit;
	c->sender = strdup(dl->sender);
	c->body = malloc(dl->body_len ? dl->body_len : 1);
	c->rcpts = calloc(dl->nrcpts, sizeof *c->rcpts);
	c->index = calloc(dl->nrcpts, sizeof *c->index);
	c->have = true;
	if (c->sender == NULL || c->body == NULL || c->rcpts == NULL || c->index == NULL)
		return -1;
	memcpy(c->body, dl->body, dl->body_len);
	c->body_len = dl->body_len;
	for (size_t i = 0; i < dl->nrcpts; i++) {
		c->rcpts[i] = strdup(dl->rcpts[i].address);
		c->index[i] = dl->rcpts[i].index;
		c->nrcpts = i + 1;
		if (c->rcpts[i] == NULL)
			return -1;
	}
	return 0;
}

/* ---- connections ---- */

static void on_conn_event(enum smtpc_event ev, uint64_t ref, void *arg);

static void dconn_destroy(struct dconn *dc)
{
	struct deliver *d = dc->d;
	if (dc->prev != NULL)
		dc->prev->next = dc->next;
	else
		d->conns = dc->next;
	if (dc->next != NULL)
		dc->next->prev = dc->prev;
	smtpc_free(dc->c);
	free(dc);
}

/* The task lets go of its connection: QUIT when idle, now if it is broken. */
static void task_conn_release(struct task *t, bool now)
{
	struct dconn *dc = t->conn;
	if (dc == NULL)
		return;
	t->conn = NULL;
	dc->task = 0;
	if (now)
		dconn_destroy(dc);
	else
		smtpc_quit(dc->c); /* SMTPC_EVENT_CLOSED frees it */
}

static struct dconn *dconn_open(struct task *t, const struct sockaddr_storage *addr, socklen_t len,
                                enum smtpc_tls_policy tls)
{
	struct deliver *d = t->d;
	const struct config *cfg = d->cfg;
	struct dconn *dc = calloc(1, sizeof *dc);
	if (dc == NULL)
		return NULL;
	struct smtpc_params p;
	smtpc_params_init(&p);
	p.remote = (const struct sockaddr *)addr;
	p.remote_len = len;
	p.remote_name = t->host_name;
	if (d->source_len > 0) {
		p.source = (const struct sockaddr *)&d->source;
		p.source_len = d->source_len;
	}
	p.ehlo_name = cfg->outbound_ehlo;
	p.tls_policy = tls;
	p.tls_ctx = d->tls;
	p.connect_timeout_ms = (unsigned)cfg->outbound_connect_timeout * 1000;
	p.command_timeout_ms = (unsigned)cfg->outbound_command_timeout * 1000;
	p.data_timeout_ms = (unsigned)cfg->outbound_data_timeout * 1000;
	p.idle_timeout_ms = (unsigned)cfg->outbound_idle_timeout * 1000;
	p.max_messages = (unsigned)t->rule->messages_per_connection;
	p.on_event = on_conn_event;
	p.ref = 0;
	p.arg = dc;
	dc->d = d;
	dc->task = t->handle;
	dc->c = smtpc_new(d->base, &p);
	if (dc->c == NULL) {
		free(dc);
		return NULL;
	}
	dc->next = d->conns;
	if (d->conns != NULL)
		d->conns->prev = dc;
	d->conns = dc;
	return dc;
}

/* ---- tasks ---- */

static void dispatch(struct deliver *d);
static void task_lease(struct task *t);
static void task_route(struct task *t);
static void task_send(struct task *t);
static void task_lease_ahead(struct task *t);
static void task_next_address(struct task *t);
static void on_task_timer(evutil_socket_t fd, short what, void *arg);
static void on_renew_timer(evutil_socket_t fd, short what, void *arg);
static void slot_release(struct deliver *d, const char *site, uint64_t slot);

static struct task *task_new(struct deliver *d, const char *site, uint64_t slot)
{
	size_t i = 0;
	while (i < d->cap && d->tasks[i] != NULL)
		i++;
	if (i == d->cap)
		return NULL;
	struct task *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->timer = evtimer_new(d->base, on_task_timer, t);
	t->renew_timer = evtimer_new(d->base, on_renew_timer, t);
	if (t->timer == NULL || t->renew_timer == NULL) {
		if (t->timer)
			event_free(t->timer);
		if (t->renew_timer)
			event_free(t->renew_timer);
		free(t);
		return NULL;
	}
	t->d = d;
	d->gens[i]++;
	t->handle = (uint64_t)d->gens[i] << 32 | (uint64_t)(i + 1);
	d->tasks[i] = t;
	d->ntasks++;
	snprintf(t->site, sizeof t->site, "%s", site);
	t->rule = config_site_rule_find(d->cfg, site);
	t->slot = slot;
	timer_in(t->renew_timer, DELIVER_SLOT_RENEW_MS);
	return t;
}

static void task_return(struct task *t, struct current *c);

/* Ends a task: gives back a message leased ahead, QUITs its connection, gives its slot back
 * and makes room for another. With a lease request out, the end waits for its answer, so
 * that a message it brings is given back too (not left to its lease's expiry). */
static void task_end(struct task *t, const char *why)
{
	struct deliver *d = t->d;
	if (t->next.have)
		task_return(t, &t->next);
	if (t->cur.have) /* leased and not (or not fully) tried: back to the queue */
		task_return(t, &t->cur);
	if (t->lease_out && !d->stopping) {
		t->end_wanted = true;
		t->state = TASK_LEASING;
		task_conn_release(t, false);
		return;
	}
	log_debug(0, "event=delivery_task_end site=%s sent=%u reason=%s", t->site, t->sent, why);
	task_conn_release(t, false);
	if (t->slot != 0)
		slot_release(d, t->site, t->slot);
	size_t i = (size_t)(t->handle & 0xffffffffu) - 1;
	d->tasks[i] = NULL;
	d->ntasks--;
	event_free(t->timer);
	event_free(t->renew_timer);
	current_clear(&t->cur);
	current_clear(&t->next);
	free(t);
	if (!d->stopping)
		dispatch(d);
}

static void record_free(struct record *rec)
{
	if (rec == NULL)
		return;
	free(rec->rcpts);
	free(rec->replies);
	free(rec);
}

static int record_send(struct record *rec);

static void on_outcome(enum queue_result res, const struct queue_outcome_result *r, uint64_t ref,
                       void *arg)
{
	struct record *rec = arg;
	struct deliver *d = rec->d;
	struct task *t = rec->task != 0 ? task_find(d, rec->task) : NULL;
	rec->task = 0;
	if (res != QUEUE_OK && !d->stopping) {
		/* keep it: sent again every DELIVER_RETRY_MS until Redis answers */
		log_warn(0,
		         "event=outcome_unrecorded msg=%s domain=%s result=%s note=\"kept, sent "
		         "again when Redis answers\"",
		         rec->id, rec->domain, queue_result_name(res));
		rec->next = d->unrecorded;
		d->unrecorded = rec;
	} else {
		if (res == QUEUE_OK && r->record == QUEUE_RECORD_STALE)
			log_warn(0,
			         "event=outcome_stale msg=%s domain=%s note=\"lease expired "
			         "meanwhile\"",
			         rec->id, rec->domain);
		record_free(rec);
	}
	if (t != NULL && res != QUEUE_OK)
		t->slot_lost = true; /* Redis is in trouble: finish, the dispatcher starts again */
}

static int record_send(struct record *rec)
{
	struct deliver *d = rec->d;
	struct queue_outcome o = {
	    .id = rec->id,
	    .domain = rec->domain,
	    .token = rec->token,
	    .host = rec->host,
	    .tls = rec->tls,
	    .down_ms = rec->down_ms,
	    .rcpts = rec->rcpts,
	    .nrcpts = rec->nrcpts,
	};
	return queue_delivery_outcome(d->q, &d->policy, &o, on_outcome, 0, rec);
}

/* A record of c's outcome with every recipient's index filled in, their kinds and replies
 * left for the caller; NULL when memory is short (c's lease then expires). */
static struct record *record_new(struct task *t, const struct current *c, const char *host,
                                 const char *tls, int64_t down_ms)
{
	struct record *rec = calloc(1, sizeof *rec);
	if (rec != NULL) {
		rec->rcpts = calloc(t->cur.nrcpts, sizeof *rec->rcpts);
		rec->replies = calloc(t->cur.nrcpts, sizeof *rec->replies);
	}
	if (rec == NULL || rec->rcpts == NULL || rec->replies == NULL) {
		record_free(rec);
		return NULL;
	}
	rec->d = t->d;
	rec->task = t->handle;
	snprintf(rec->id, sizeof rec->id, "%s", c->id);
	snprintf(rec->domain, sizeof rec->domain, "%s", c->domain);
	rec->token = c->token;
	snprintf(rec->host, sizeof rec->host, "%s", host);
	snprintf(rec->tls, sizeof rec->tls, "%s", tls);
	rec->down_ms = down_ms;
	rec->nrcpts = c->nrcpts;
	for (size_t i = 0; i < c->nrcpts; i++) {
		rec->rcpts[i].index = c->index[i];
		rec->rcpts[i].reply = rec->replies[i];
		rec->rcpts[i].bounce_class = NULL; /* the bounce classifier's hook */
	}
	return rec;
}

/* The bounce class of a failure's reply (for the event and suppression; retries follow the
 * reply code), or NULL for a delivery, a site down, and a failure no remote server replied
 * to (connect, timeout, lost connection, TLS: a made-up reply without a code), which says
 * nothing about the address. */
static const char *reply_class(const struct deliver *d, enum queue_outcome_kind kind,
                               const char *reply)
{
	if (kind == QUEUE_OUTCOME_DELIVERED || kind == QUEUE_OUTCOME_SITE_DOWN ||
	    !(reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' && reply[1] <= '9' &&
	      reply[2] >= '0' && reply[2] <= '9' && reply[3] == ' '))
		return NULL;
	int code;
	char enhanced[SMTP_ENHANCED_MAX + 1];
	char text[DELIVER_REPLY_MAX];
	size_t n = bounce_reply_split(reply, strlen(reply), &code, enhanced, text, sizeof text);
	struct bounce_verdict v;
	bounce_classify(d->rules, code, enhanced, text, n, &v);
	return bounce_class_name(v.class);
}

/* Sends rec (the outcome of a leased entry, which releases its lease); when Redis is not
 * there, keeps it to send again. The task does not wait for the answer. */
static void record_post(struct deliver *d, struct record *rec)
{
	if (rec == NULL)
		return; /* out of memory: the lease expires and the entry is tried again */
	for (size_t i = 0; i < rec->nrcpts; i++)
		rec->rcpts[i].bounce_class = reply_class(d, rec->rcpts[i].kind, rec->replies[i]);
	if (record_send(rec) == -1) {
		rec->task = 0;
		rec->next = d->unrecorded;
		d->unrecorded = rec;
	}
}

static void task_continue(struct task *t);

/* Records cur's outcome, then goes on with the next message. */
static void task_record(struct task *t, struct record *rec)
{
	record_post(t->d, rec);
	current_clear(&t->cur);
	task_continue(t);
}

/* Gives back a message leased but not tried: due again at once, no attempt counted (a site
 * down mark of 1 ms). */
static void task_return(struct task *t, struct current *c)
{
	struct record *rec = record_new(t, c, "", "", 1);
	if (rec != NULL) {
		for (size_t i = 0; i < c->nrcpts; i++) {
			rec->rcpts[i].kind = QUEUE_OUTCOME_SITE_DOWN;
			snprintf(rec->replies[i], sizeof rec->replies[i],
			         "451 4.3.2 Returned to the queue untried");
		}
		rec->task = 0;
	}
	record_post(t->d, rec);
	current_clear(c);
}

/* The same outcome and reply for every recipient of cur. */
static void task_record_all(struct task *t, enum queue_outcome_kind kind, const char *reply,
                            int64_t down_ms)
{
	struct record *rec = record_new(t, &t->cur, t->host_name, "", down_ms);
	if (rec == NULL) {
		task_end(t, "memory");
		return;
	}
	for (size_t i = 0; i < t->cur.nrcpts; i++) {
		rec->rcpts[i].kind = kind;
		snprintf(rec->replies[i], sizeof rec->replies[i], "%s", reply);
	}
	task_record(t, rec);
}

/* Every host of the site was tried for cur and none took it. */
static void task_hosts_exhausted(struct task *t)
{
	struct deliver *d = t->d;
	if (t->tls_unavailable) {
		task_record_all(
		    t, QUEUE_OUTCOME_DEFERRED,
		    "451 4.7.4 TLS is required for this destination and no host offered "
		    "STARTTLS",
		    0);
		return;
	}
	if (!t->any_established) {
		char reply[DELIVER_REPLY_MAX];
		snprintf(reply, sizeof reply, "%s",
		         t->last_failure[0] ? t->last_failure : "451 4.4.1 No host reachable");
		log_warn(0, "event=site_down site=%s for_s=%d last=\"%s\"", t->site,
		         d->cfg->site_down_time, reply);
		t->slot_lost = true; /* no use going on: end after recording */
		task_record_all(t, QUEUE_OUTCOME_SITE_DOWN, reply,
		                (int64_t)d->cfg->site_down_time * 1000);
		return;
	}
	task_record_all(t, QUEUE_OUTCOME_DEFERRED,
	                t->last_failure[0] ? t->last_failure : "451 4.4.2 Connection failed", 0);
}

static enum queue_outcome_kind outcome_kind(enum smtpc_outcome o)
{
	switch (o) {
	case SMTPC_OUTCOME_DELIVERED:
		return QUEUE_OUTCOME_DELIVERED;
	case SMTPC_OUTCOME_FAILED:
		return QUEUE_OUTCOME_FAILED;
	case SMTPC_OUTCOME_DEFERRED:
	case SMTPC_OUTCOME_UNKNOWN: /* maybe delivered: never counted delivered or bounced */
		break;
	}
	return QUEUE_OUTCOME_DEFERRED;
}

static void on_result(const struct smtpc_result *r, uint64_t ref, void *arg)
{
	struct dconn *dc = arg;
	struct deliver *d = dc->d;
	struct task *t = task_find(d, dc->task);
	if (t == NULL || t->conn != dc || t->state != TASK_SENDING)
		return;
	struct smtpc_info info;
	smtpc_info_get(dc->c, &info);
	if (r->scope == SMTPC_SCOPE_CONNECTION && r->message_number == 0 && !info.established) {
		/* this address did not work; nothing of the message was sent */
		reply_format(&r->reply, t->last_failure, sizeof t->last_failure);
		t->tls_unavailable |= r->host_permanent;
		bool retry_plain = r->failure == SMTPC_FAILURE_TLS &&
		                   t->rule->tls == CONFIG_TLS_OPPORTUNISTIC && !t->tls_fallback;
		task_conn_release(t, true);
		if (retry_plain) {
			t->tls_fallback =
			    true; /* RFC 3207 opportunistic: cleartext beats no mail */
		} else {
			t->tls_fallback = false;
			t->addr_i++;
		}
		task_next_address(t);
		return;
	}
	if (r->scope == SMTPC_SCOPE_CONNECTION && info.messages > 0 && r->message_number > 1 &&
	    !t->cur.fresh_retry && r->failure == SMTPC_FAILURE_LOST) {
		/* a reused connection the server had closed: once more on a new one, not counted */
		t->cur.fresh_retry = true;
		task_conn_release(t, true);
		task_route(t);
		return;
	}
	t->sent++;
	t->any_established = true;
	char tls[64];
	size_t tl = strcspn(r->tls, " ");
	snprintf(tls, sizeof tls, "%.*s", (int)(tl < sizeof tls ? tl : sizeof tls - 1), r->tls);
	char host[MX_NAME_MAX + 1];
	snprintf(host, sizeof host, "%s", r->remote_name[0] ? r->remote_name : r->remote_addr);
	for (char *p = host; *p != '\0'; p++)
		if (*p == ' ')
			*p = '_';
	struct record *rec = record_new(t, &t->cur, host, tls, 0);
	if (rec == NULL) {
		task_end(t, "memory");
		return;
	}
	for (size_t i = 0; i < t->cur.nrcpts; i++) {
		if (i < r->nrcpts) {
			rec->rcpts[i].kind = outcome_kind(r->rcpts[i].outcome);
			reply_format(&r->rcpts[i].reply, rec->replies[i], sizeof rec->replies[i]);
		} else { /* out of memory in smtpc: defer */
			rec->rcpts[i].kind = QUEUE_OUTCOME_DEFERRED;
			reply_format(&r->reply, rec->replies[i], sizeof rec->replies[i]);
		}
	}
	if (!r->reusable)
		task_conn_release(t, true);
	task_record(t, rec);
}

static void on_conn_event(enum smtpc_event ev, uint64_t ref, void *arg)
{
	struct dconn *dc = arg;
	if (ev != SMTPC_EVENT_CLOSED)
		return;
	struct task *t = dc->task != 0 ? task_find(dc->d, dc->task) : NULL;
	if (t != NULL && t->conn == dc)
		t->conn = NULL; /* the task reconnects when it has mail again */
	dconn_destroy(dc);
}

static void task_send(struct task *t)
{
	struct smtpc_message m = {
	    .sender = t->cur.sender,
	    .rcpts = (const char *const *)t->cur.rcpts,
	    .nrcpts = t->cur.nrcpts,
	    .body = t->cur.body,
	    .body_len = t->cur.body_len,
	    .body_8bit = t->cur.body_8bit,
	    .smtputf8 = t->cur.smtputf8,
	    .log_id = t->cur.id,
	};
	t->state = TASK_SENDING;
	task_lease_ahead(t);
	if (smtpc_send(t->conn->c, &m, on_result, 0, t->conn) == -1) {
		/* an address the client refuses to send, or a connection that cannot take it */
		if (smtpc_can_send(t->conn->c)) {
			task_record_all(t, QUEUE_OUTCOME_FAILED,
			                "553 5.1.3 Address not acceptable to the SMTP client", 0);
			return;
		}
		task_conn_release(t, false);
		task_route(t);
	}
}

static void task_next_address(struct task *t);

static void on_addresses(const struct mx_addresses *a, uint64_t ref, void *arg)
{
	struct deliver *d = arg;
	struct task *t = task_find(d, ref);
	if (t == NULL || t->state != TASK_ROUTING)
		return;
	if (a->status != MX_OK) {
		snprintf(t->last_failure, sizeof t->last_failure, "451 4.4.3 %.480s", a->detail);
		t->host_i++;
		t->addr_i = 0;
		task_next_address(t);
		return;
	}
	t->addrs = *a;
	t->addr_i = 0;
	task_next_address(t);
}

/* Connects to the next address of the current host, or looks up the next host. */
static void task_next_address(struct task *t)
{
	struct deliver *d = t->d;
	t->state = TASK_ROUTING;
	if (t->addr_i < t->addrs.count) {
		enum smtpc_tls_policy tls =
		    t->tls_fallback ? SMTPC_TLS_NONE : (enum smtpc_tls_policy)t->rule->tls;
		t->conn = dconn_open(t, &t->addrs.addrs[t->addr_i], t->addrs.lens[t->addr_i], tls);
		if (t->conn == NULL) {
			task_record_all(t, QUEUE_OUTCOME_DEFERRED, "451 4.3.0 Local error", 0);
			return;
		}
		task_send(t);
		return;
	}
	if (t->addrs.count > 0) { /* every address of this host was tried */
		t->host_i++;
		t->addrs.count = 0;
	}
	if (t->host_i >= t->mx.nhosts) {
		task_hosts_exhausted(t);
		return;
	}
	snprintf(t->host_name, sizeof t->host_name, "%s", t->mx.hosts[t->host_i].name);
	int port = t->route != NULL ? t->route->port : d->cfg->outbound_port;
	t->addr_i = 0;
	t->addrs.count = 0;
	if (mx_addresses_lookup(d->resolver, t->host_name, port, on_addresses, t->handle, d) ==
	    -1) {
		snprintf(t->last_failure, sizeof t->last_failure,
		         "451 4.4.3 Address lookup of %s could not start", t->host_name);
		t->host_i++;
		task_next_address(t);
	}
}

static void on_mx(const struct mx_result *res, uint64_t ref, void *arg)
{
	struct deliver *d = arg;
	struct task *t = task_find(d, ref);
	if (t == NULL || t->state != TASK_ROUTING)
		return;
	switch (res->status) {
	case MX_OK:
		t->mx = *res;
		t->host_i = 0;
		t->addrs.count = 0;
		task_next_address(t);
		return;
	case MX_NULL:
	case MX_NOTFOUND:
		task_record_all(t, QUEUE_OUTCOME_FAILED, res->reply, 0);
		return;
	case MX_TEMPFAIL:
		task_record_all(t, QUEUE_OUTCOME_DEFERRED, res->reply, 0);
		return;
	}
}

/* Finds the hosts for cur (route or MX) and starts connecting. */
static void task_route(struct task *t)
{
	struct deliver *d = t->d;
	t->state = TASK_ROUTING;
	t->any_established = false;
	t->tls_unavailable = false;
	t->tls_fallback = false;
	t->last_failure[0] = '\0';
	t->host_name[0] = '\0';
	t->addrs.count = 0;
	t->addr_i = 0;
	t->host_i = 0;
	t->route = config_route_find(d->cfg, t->cur.domain);
	if (t->route != NULL) {
		memset(&t->mx, 0, sizeof t->mx);
		t->mx.status = MX_OK;
		t->mx.nhosts = 1;
		snprintf(t->mx.hosts[0].name, sizeof t->mx.hosts[0].name, "%s", t->route->host);
		task_next_address(t);
		return;
	}
	if (mx_lookup(d->resolver, t->cur.domain, on_mx, t->handle, d) == -1)
		task_record_all(t, QUEUE_OUTCOME_DEFERRED, "451 4.4.3 MX lookup could not start",
		                0);
}

static void on_slot_renewed(enum queue_result res, bool ok, uint64_t ref, void *arg)
{
	struct task *t = task_find(arg, ref);
	if (t != NULL && res == QUEUE_OK && !ok) {
		t->slot_lost = true; /* expired: it may be someone else's now */
		t->slot = 0;
	}
}

/* Starts on cur: over the connection when it can take it, else through routing. */
static void task_start_current(struct task *t)
{
	if (t->conn != NULL && smtpc_can_send(t->conn->c)) {
		task_send(t);
	} else {
		task_conn_release(t, false);
		task_route(t);
	}
}

static void on_lease(enum queue_result res, const struct queue_delivery *dl, uint64_t ref,
                     void *arg)
{
	struct deliver *d = arg;
	struct task *t = task_find(d, ref);
	if (t == NULL)
		return; /* cannot happen while d lives: a lease here would expire and come back */
	t->lease_out = false;
	bool waiting = t->state == TASK_LEASING; /* else this was a lease ahead, for next */
	if (res == QUEUE_OK && dl->status == QUEUE_LEASE_OK) {
		struct current *c = waiting ? &t->cur : &t->next;
		if (current_copy(c, dl) == -1) {
			current_clear(c); /* the lease expires and the entry comes back */
			task_end(t, "memory");
			return;
		}
		if (t->end_wanted) {
			task_end(t, "stopping");
			return;
		}
		t->idle = false;
		if (waiting)
			task_start_current(t);
		return;
	}
	if (t->end_wanted) {
		task_end(t, "stopping");
		return;
	}
	if (!waiting)
		return; /* nothing ahead: the task asks again when cur is done */
	if (res != QUEUE_OK) {
		task_end(t, "redis");
		return;
	}
	switch (dl->status) {
	case QUEUE_LEASE_OK:
		break;
	case QUEUE_LEASE_EMPTY:
		if (t->conn == NULL || d->stopping) {
			task_end(t, "empty");
			return;
		}
		if (!t->idle) {
			t->idle = true;
			t->idle_since_ms = now_ms();
		}
		if (now_ms() - t->idle_since_ms >= (int64_t)d->cfg->outbound_idle_timeout * 1000) {
			task_end(t, "idle");
			return;
		}
		t->state = TASK_WAITING;
		timer_in(t->timer, DELIVER_IDLE_POLL_MS);
		return;
	case QUEUE_LEASE_WAIT:
		t->state = TASK_WAITING;
		timer_in(t->timer, dl->wait_ms > 0 ? dl->wait_ms : 1);
		return;
	case QUEUE_LEASE_DOWN:
	case QUEUE_LEASE_HELD:
		task_end(t, dl->status == QUEUE_LEASE_DOWN ? "down" : "held");
		return;
	}
}

static int lease_request(struct task *t)
{
	struct deliver *d = t->d;
	struct queue_rate rate = {t->rule->rate.count, t->rule->rate.period_ms, t->rule->burst};
	if (queue_delivery_lease(d->q, &d->policy, t->site, d->worker_name,
	                         rate.count > 0 ? &rate : NULL, on_lease, t->handle, d) == -1)
		return -1;
	t->lease_out = true;
	return 0;
}

/* Leases cur, or waits for the lease already out. */
static void task_lease(struct task *t)
{
	struct deliver *d = t->d;
	if (d->stopping || t->slot_lost) {
		task_end(t, d->stopping ? "stopping" : "slot");
		return;
	}
	t->state = TASK_LEASING;
	if (!t->lease_out && lease_request(t) == -1)
		task_end(t, "redis");
}

/* Leases the message after cur while cur is sent, so that the connection never waits for
 * Redis between two messages: when the connection can carry one more and the site's rate
 * does not make leases wait. */
static void task_lease_ahead(struct task *t)
{
	struct deliver *d = t->d;
	if (t->lease_out || t->next.have || d->stopping || t->slot_lost || t->idle ||
	    t->rule->rate.count > 0 || t->sent + 2 > (unsigned)t->rule->messages_per_connection)
		return;
	lease_request(t); /* -1: nothing ahead; the task leases when cur is done */
}

/* cur is done (recorded): the next message, leased ahead or now. */
static void task_continue(struct task *t)
{
	struct deliver *d = t->d;
	if (d->stopping || t->slot_lost) {
		task_end(t, d->stopping ? "stopping" : "slot");
		return;
	}
	if (t->conn != NULL && !smtpc_can_send(t->conn->c))
		task_conn_release(t, false);
	if (t->conn == NULL && t->sent >= (unsigned)t->rule->messages_per_connection) {
		task_end(t, "messages_per_connection");
		return;
	}
	if (t->next.have) {
		t->cur = t->next;
		memset(&t->next, 0, sizeof t->next);
		task_start_current(t);
		return;
	}
	task_lease(t);
}

static void on_task_timer(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	task_lease(t);
}

/* A slot is renewed while its task lives, so that a killed worker's slots expire within
 * DELIVER_SLOT_TTL_MS and a live one's never do. */
static void on_renew_timer(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	struct deliver *d = t->d;
	if (t->slot != 0)
		queue_site_slot_renew(d->q, t->site, t->slot, DELIVER_SLOT_TTL_MS, on_slot_renewed,
		                      t->handle, d);
	timer_in(t->renew_timer, DELIVER_SLOT_RENEW_MS);
}

/* ---- retries of what Redis did not take ---- */

static void on_released(enum queue_result res, bool ok, uint64_t ref, void *arg)
{
	struct release *rl = arg;
	struct deliver *d = rl->d;
	if (res != QUEUE_OK && !d->stopping) {
		rl->next = d->unreleased;
		d->unreleased = rl;
		return;
	}
	free(rl);
}

static void slot_release(struct deliver *d, const char *site, uint64_t slot)
{
	struct release *rl = calloc(1, sizeof *rl);
	if (rl == NULL)
		return; /* the slot expires */
	rl->d = d;
	rl->slot = slot;
	snprintf(rl->site, sizeof rl->site, "%s", site);
	if (queue_site_slot_release(d->q, rl->site, slot, on_released, 0, rl) == -1) {
		if (d->stopping) {
			free(rl);
			return;
		}
		rl->next = d->unreleased;
		d->unreleased = rl;
	}
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
	struct deliver *d = arg;
	if (queue_conn_ready(d->q)) {
		struct record *recs = d->unrecorded;
		d->unrecorded = NULL;
		while (recs != NULL) {
			struct record *rec = recs;
			recs = rec->next;
			rec->next = NULL;
			if (record_send(rec) == -1) {
				rec->next = d->unrecorded;
				d->unrecorded = rec;
			}
		}
		struct release *rls = d->unreleased;
		d->unreleased = NULL;
		while (rls != NULL) {
			struct release *rl = rls;
			rls = rl->next;
			if (queue_site_slot_release(d->q, rl->site, rl->slot, on_released, 0, rl) ==
			    -1) {
				rl->next = d->unreleased;
				d->unreleased = rl;
			}
		}
	}
	timer_in(d->retry_timer, DELIVER_RETRY_MS);
}

/* ---- dispatch: open connections to sites with ready mail ---- */

static size_t site_tasks(const struct deliver *d, const char *site, bool *idle)
{
	size_t n = 0;
	*idle = false;
	for (size_t i = 0; i < d->cap; i++) {
		const struct task *t = d->tasks[i];
		if (t != NULL && strcmp(t->site, site) == 0) {
			n++;
			*idle |= t->idle;
		}
	}
	return n;
}

static void dispatch_later(struct deliver *d, int64_t ms)
{
	if (!d->stopping)
		timer_in(d->dispatch_timer, ms);
}

/* A slot request: the site asked for, and who asked. */
struct slot_req {
	struct deliver *d;
	char site[QUEUE_SITE_MAX + 1];
};

static void on_slot(enum queue_result res, const struct queue_slot_result *r, uint64_t ref,
                    void *arg);

static void on_site_next(enum queue_result res, const struct queue_site_pick *pick, uint64_t ref,
                         void *arg)
{
	struct deliver *d = arg;
	d->dispatching = false;
	if (d->stopping)
		return;
	if (res != QUEUE_OK) {
		dispatch_later(d, 500);
		return;
	}
	if (pick->pick == QUEUE_PICK_NONE) {
		dispatch_later(d, DELIVER_POLL_MS);
		return;
	}
	if (pick->pick == QUEUE_PICK_LATER) {
		dispatch_later(d,
		               pick->wait_ms < DELIVER_POLL_MS ? pick->wait_ms : DELIVER_POLL_MS);
		return;
	}
	const struct config_site_rule *rule = config_site_rule_find(d->cfg, pick->site);
	bool idle;
	size_t mine = site_tasks(d, pick->site, &idle);
	/* Ramp with the backlog: another connection only while ready entries outnumber the
	 * leased ones and none of ours is idle. */
	if (idle || mine >= (size_t)rule->connections ||
	    (mine > 0 && pick->ready <= pick->leased)) {
		d->misses++;
		if (d->misses < 8)
			dispatch(d);
		else
			dispatch_later(d, DELIVER_MISS_PAUSE_MS);
		return;
	}
	struct slot_req *sr = malloc(sizeof *sr);
	if (sr == NULL) {
		dispatch_later(d, 500);
		return;
	}
	sr->d = d;
	snprintf(sr->site, sizeof sr->site, "%s", pick->site);
	d->dispatching = true;
	if (queue_site_slot_acquire(d->q, sr->site, (unsigned)rule->connections,
	                            DELIVER_SLOT_TTL_MS, on_slot, 0, sr) == -1) {
		d->dispatching = false;
		free(sr);
		dispatch_later(d, 500);
	}
}

static void on_slot(enum queue_result res, const struct queue_slot_result *r, uint64_t ref,
                    void *arg)
{
	struct slot_req *sr = arg;
	struct deliver *d = sr->d;
	d->dispatching = false;
	if (res != QUEUE_OK || d->stopping) {
		if (res == QUEUE_OK && r->slot != 0)
			slot_release(d, sr->site, r->slot);
		free(sr);
		dispatch_later(d, 500);
		return;
	}
	if (r->slot == 0) { /* the site has all its connections, over every worker */
		free(sr);
		d->misses++;
		if (d->misses < 8)
			dispatch(d);
		else
			dispatch_later(d, DELIVER_MISS_PAUSE_MS);
		return;
	}
	struct task *t = task_new(d, sr->site, r->slot);
	if (t == NULL) {
		slot_release(d, sr->site, r->slot);
		free(sr);
		dispatch_later(d, 500);
		return;
	}
	free(sr);
	d->misses = 0;
	log_debug(0, "event=delivery_task_start site=%s slot=%llu in_use=%u", t->site,
	          (unsigned long long)t->slot, r->in_use);
	task_lease(t);
	dispatch(d);
}

static void dispatch(struct deliver *d)
{
	if (d->dispatching || d->stopping || d->ntasks >= d->cap || !queue_conn_ready(d->q))
		return;
	d->dispatching = true;
	if (queue_site_next(d->q, on_site_next, 0, d) == -1) {
		d->dispatching = false;
		dispatch_later(d, 500);
	}
}

static void on_dispatch_timer(evutil_socket_t fd, short what, void *arg)
{
	struct deliver *d = arg;
	if (!d->dispatching && d->misses >= 8)
		d->misses = 0;
	dispatch(d);
	if (!d->dispatching)
		dispatch_later(d, DELIVER_POLL_MS);
}

/* ---- resolve: domain -> site ---- */

struct rjob {
	struct deliver *d;
	char domain[256];
	char site[QUEUE_SITE_MAX + 1];
	unsigned ttl;
	bool permanent;
	char reply[400];
};

static void resolve_poll(struct deliver *d);

static void rjob_end(struct rjob *j)
{
	struct deliver *d = j->d;
	d->resolving--;
	free(j);
	if (!d->stopping) {
		resolve_poll(d);
		dispatch(d);
	}
}

static void on_site_moved(enum queue_result res, unsigned moved, unsigned remaining, uint64_t ref,
                          void *arg)
{
	struct rjob *j = arg;
	struct deliver *d = j->d;
	if (res == QUEUE_OK && remaining > 0 && !d->stopping) {
		int rc = j->site[0] != '\0'
		             ? queue_site_set(d->q, &d->policy, j->domain, j->site, j->ttl,
		                              on_site_moved, 0, j)
		             : queue_resolve_fail(d->q, &d->policy, j->domain, j->permanent,
		                                  j->reply, on_site_moved, 0, j);
		if (rc == 0)
			return;
	}
	rjob_end(j); /* on a failure the claim expires and the domain is resolved again */
}

static void rjob_site(struct rjob *j, const char *site, unsigned ttl)
{
	struct deliver *d = j->d;
	snprintf(j->site, sizeof j->site, "%s", site);
	j->ttl = ttl;
	log_debug(0, "event=site_resolved domain=%s site=%s ttl=%u", j->domain, site, ttl);
	if (queue_site_set(d->q, &d->policy, j->domain, j->site, ttl, on_site_moved, 0, j) == -1)
		rjob_end(j);
}

static void rjob_fail(struct rjob *j, bool permanent, const char *reply)
{
	struct deliver *d = j->d;
	j->site[0] = '\0';
	j->permanent = permanent;
	snprintf(j->reply, sizeof j->reply, "%s", reply);
	log_info(0, "event=domain_unresolved domain=%s permanent=%s reply=\"%s\"", j->domain,
	         permanent ? "yes" : "no", reply);
	if (queue_resolve_fail(d->q, &d->policy, j->domain, permanent, j->reply, on_site_moved, 0,
	                       j) == -1)
		rjob_end(j);
}

static void on_site_mx(const struct mx_result *res, uint64_t ref, void *arg)
{
	struct rjob *j = arg;
	if (j->d->stopping) {
		rjob_end(j);
		return;
	}
	if (res->status == MX_OK) {
		const char *names[MX_HOSTS_MAX];
		for (size_t i = 0; i < res->nhosts; i++)
			names[i] = res->hosts[i].name;
		char site[QUEUE_SITE_MAX + 1];
		unsigned ttl = res->ttl < DELIVER_SITE_TTL_MIN   ? DELIVER_SITE_TTL_MIN
		               : res->ttl > DELIVER_SITE_TTL_MAX ? DELIVER_SITE_TTL_MAX
		                                                 : res->ttl;
		if (queue_site_name(names, res->nhosts, site, sizeof site) == 0) {
			rjob_site(j, site, ttl);
			return;
		}
		rjob_fail(j, false, "451 4.4.3 MX host names unusable");
		return;
	}
	rjob_fail(j, res->status != MX_TEMPFAIL, res->reply);
}

static void resolve_domain(struct deliver *d, const char *domain)
{
	struct rjob *j = calloc(1, sizeof *j);
	if (j == NULL)
		return; /* the claim expires */
	j->d = d;
	d->resolving++;
	snprintf(j->domain, sizeof j->domain, "%s", domain);
	const struct config_route *route = config_route_find(d->cfg, j->domain);
	if (route != NULL) {
		char site[300];
		if (strchr(route->host, ':') != NULL)
			snprintf(site, sizeof site, "[%s]:%d", route->host, route->port);
		else
			snprintf(site, sizeof site, "%s:%d", route->host, route->port);
		rjob_site(j, site, DELIVER_ROUTE_SITE_TTL);
		return;
	}
	if (mx_lookup(d->resolver, j->domain, on_site_mx, 0, j) == -1)
		rjob_fail(j, false, "451 4.4.3 MX lookup could not start");
}

static void on_taken(enum queue_result res, const char *const *domains, size_t count, uint64_t ref,
                     void *arg)
{
	struct deliver *d = arg;
	d->taking = false;
	if (res != QUEUE_OK || d->stopping)
		return;
	for (size_t i = 0; i < count; i++)
		resolve_domain(d, domains[i]);
	if (count > 0)
		resolve_poll(d);
}

static void resolve_poll(struct deliver *d)
{
	if (d->taking || d->stopping || d->resolving >= DELIVER_RESOLVE_PARALLEL ||
	    !queue_conn_ready(d->q))
		return;
	d->taking = true;
	if (queue_resolve_take(d->q, DELIVER_RESOLVE_PARALLEL - d->resolving,
	                       DELIVER_RESOLVE_CLAIM_MS, on_taken, 0, d) == -1)
		d->taking = false;
}

static void on_resolve_timer(evutil_socket_t fd, short what, void *arg)
{
	struct deliver *d = arg;
	resolve_poll(d);
	timer_in(d->resolve_timer, DELIVER_POLL_MS);
}

/* ---- promote ---- */

static void promote(struct deliver *d);

static void on_promoted(enum queue_result res, const struct queue_promote_result *r, uint64_t ref,
                        void *arg)
{
	struct deliver *d = arg;
	d->promoting = false;
	if (d->stopping)
		return;
	if (res != QUEUE_OK) {
		timer_in(d->promote_timer, 500);
		return;
	}
	if (r->reclaimed > 0 || r->dead > 0)
		log_warn(0, "event=leases_reclaimed reclaimed=%u dead=%u", r->reclaimed, r->dead);
	if (r->resolving > 0)
		resolve_poll(d);
	if (r->ready > 0 || r->reclaimed > 0) {
		d->misses = 0;
		dispatch(d);
	}
	if (r->more) {
		promote(d);
		return;
	}
	int64_t next =
	    r->next_ms < 0 || r->next_ms > DELIVER_POLL_MS ? DELIVER_POLL_MS : r->next_ms;
	if (!d->kicked)
		timer_in(d->promote_timer, next);
}

static void promote(struct deliver *d)
{
	d->kicked = false;
	if (d->promoting || d->stopping)
		return;
	if (!queue_conn_ready(d->q)) {
		timer_in(d->promote_timer, 200);
		return;
	}
	d->promoting = true;
	if (queue_sched_promote(d->q, &d->policy, on_promoted, 0, d) == -1) {
		d->promoting = false;
		timer_in(d->promote_timer, 200);
	}
}

static void on_promote_timer(evutil_socket_t fd, short what, void *arg)
{
	promote(arg);
}

void deliver_kick(struct deliver *d)
{
	if (d == NULL || d->kicked || d->stopping)
		return;
	d->kicked = true;
	timer_in(d->promote_timer, DELIVER_KICK_MS);
}

/* ---- life ---- */

struct deliver *deliver_new(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->cfg;
	struct deliver *d = calloc(1, sizeof *d);
	if (d == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->srv = srv;
	d->cfg = cfg;
	d->base = srv->base;
	d->q = srv->queue;
	queue_policy_default(&d->policy);
	d->policy.lease_ms = (int64_t)cfg->lease_timeout * 1000;
	d->policy.max_age_ms = (int64_t)cfg->max_queue_age * 1000;
	d->policy.backoff_first_ms = (int64_t)cfg->retry_first * 1000;
	d->policy.backoff_max_ms = (int64_t)cfg->retry_max * 1000;
	d->policy.jitter_percent = (unsigned)cfg->retry_jitter;
	d->policy.soft_limit = (unsigned)cfg->soft_bounce_limit;
	d->policy.soft_window_ms = (int64_t)cfg->soft_bounce_window * 1000;
	if (!queue_policy_valid(&d->policy)) {
		snprintf(err, errlen, "retry settings out of range");
		free(d);
		return NULL;
	}
	char host[64];
	size_t n = 0;
	for (const char *p = cfg->hostname; *p != '\0' && n + 1 < sizeof host; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '-';
		host[n++] = ok ? c : '_';
	}
	host[n] = '\0';
	snprintf(d->worker_name, sizeof d->worker_name, "%s:%d", n ? host : "relay", (int)getpid());
	if (cfg->outbound_source[0] != '\0') {
		struct sockaddr_in *in = (struct sockaddr_in *)&d->source;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&d->source;
		if (inet_pton(AF_INET, cfg->outbound_source, &in->sin_addr) == 1) {
			in->sin_family = AF_INET;
			d->source_len = sizeof *in;
		} else if (inet_pton(AF_INET6, cfg->outbound_source, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			d->source_len = sizeof *in6;
		}
	}
	d->cap = (size_t)cfg->outbound_max_connections;
	d->tasks = calloc(d->cap, sizeof *d->tasks);
	d->gens = calloc(d->cap, sizeof *d->gens);
	d->resolver = resolver_new(d->base, cfg->dns_resolver, cfg->dns_timeout_ms,
	                           RESOLVER_ATTEMPTS_DEFAULT, err, errlen);
	if (d->resolver == NULL) {
		deliver_free(d);
		return NULL;
	}
	const char *paths[2];
	size_t npaths = 0;
	if (cfg->bounce_rules_local[0] != '\0')
		paths[npaths++] = cfg->bounce_rules_local; /* the user's rules come first */
	paths[npaths++] = cfg->bounce_rules;
	d->rules = bounce_rules_load_list(paths, npaths, err, errlen);
	if (d->rules == NULL) {
		deliver_free(d);
		return NULL;
	}
	d->tls = smtpc_tls_ctx_new(err, errlen);
	d->promote_timer = evtimer_new(d->base, on_promote_timer, d);
	d->resolve_timer = evtimer_new(d->base, on_resolve_timer, d);
	d->dispatch_timer = evtimer_new(d->base, on_dispatch_timer, d);
	d->retry_timer = evtimer_new(d->base, on_retry_timer, d);
	if (d->tls == NULL || d->tasks == NULL || d->gens == NULL || d->promote_timer == NULL ||
	    d->resolve_timer == NULL || d->dispatch_timer == NULL || d->retry_timer == NULL ||
	    resolver_cache_enable(d->resolver, DELIVER_DNS_CACHE) == -1) {
		if (err[0] == '\0')
			snprintf(err, errlen, "out of memory");
		deliver_free(d);
		return NULL;
	}
	timer_in(d->promote_timer, 100);
	timer_in(d->resolve_timer, 200);
	timer_in(d->dispatch_timer, 300);
	timer_in(d->retry_timer, DELIVER_RETRY_MS);
	log_info(0, "event=delivery_started worker_name=%s resolver=%s max_connections=%zu",
	         d->worker_name, resolver_server_text(d->resolver), d->cap);
	return d;
}

void deliver_stop(struct deliver *d)
{
	if (d == NULL || d->stopping)
		return;
	d->stopping = true;
	for (size_t i = 0; i < d->cap; i++) {
		struct task *t = d->tasks[i];
		if (t != NULL && t->state == TASK_WAITING) {
			evtimer_del(t->timer);
			task_end(t, "stopping");
		}
	}
}

size_t deliver_active(const struct deliver *d)
{
	if (d == NULL)
		return 0;
	size_t n = d->ntasks;
	for (const struct dconn *dc = d->conns; dc != NULL; dc = dc->next)
		if (dc->task == 0)
			n++;
	return n;
}

void deliver_free(struct deliver *d)
{
	if (d == NULL)
		return;
	d->stopping = true;
	/* the resolver answers its pending lookups (cancelled): tasks and jobs still exist */
	resolver_free(d->resolver);
	for (size_t i = 0; i < d->cap && d->tasks != NULL; i++) {
		struct task *t = d->tasks[i];
		if (t == NULL)
			continue;
		event_free(t->timer);
		event_free(t->renew_timer);
		current_clear(&t->cur);
		free(t);
		d->tasks[i] = NULL;
	}
	while (d->unrecorded != NULL) {
		struct record *rec = d->unrecorded;
		d->unrecorded = rec->next;
		log_warn(0,
		         "event=outcome_lost_at_exit msg=%s domain=%s note=\"the lease expires and "
		         "the entry is delivered again\"",
		         rec->id, rec->domain);
		record_free(rec);
	}
	while (d->unreleased != NULL) {
		struct release *rl = d->unreleased;
		d->unreleased = rl->next;
		free(rl);
	}
	while (d->conns != NULL)
		dconn_destroy(d->conns);
	if (d->promote_timer)
		event_free(d->promote_timer);
	if (d->resolve_timer)
		event_free(d->resolve_timer);
	if (d->dispatch_timer)
		event_free(d->dispatch_timer);
	if (d->retry_timer)
		event_free(d->retry_timer);
	SSL_CTX_free(d->tls);
	bounce_rules_free(d->rules);
	free(d->tasks);
	free(d->gens);
	free(d);
}
