/*
 * test_sched.c: unit tests of queue/'s delivery scheduling (sched.c, limits.c,
 * sched_admin.c, sched_script.c) against a real redis-server, started on a unix socket in a
 * mkdtemp folder with the durable settings and stopped by its pid at the end. Covers
 * promotion (exactly the due entries, two promoters at once), the resolve queue and the
 * domain -> site map, leases and outcomes (body removed with the last recipient, backoff,
 * expiry, reclaim, dead letters, stale outcomes), site round robin and down marks, the
 * shared GCRA rate and connection slots across two connections, fairness between tenants,
 * campaigns and retries, back-pressure, draining a Redis at maxmemory, the admin commands,
 * and the memory and per-lease cost at 1,000 and 100,000 queued recipients.
 * Every wait is bounded; mismatches print "name: got X, want Y".
 */
#include "queue/queue.h"
#include "tests/unit/lib_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include <stddef.h>
#include <stdint.h>

#define TIMEOUT_MS 2000
#define WAIT_MS    10000

/* ---- event-loop helpers ---- */

static bool cond_ready(void *arg)
{
	return queue_conn_ready(arg);
}

/* ---- fixtures ---- */

struct fixture {
	struct event_base *base;
	struct queue_conn *conn;  /* worker 1 */
	struct queue_conn *conn2; /* worker 2 */
	struct queue_admin *admin;
	struct queue_policy pol;
};

static struct queue_conn *conn_open(struct event_base *base)
{
	struct queue_settings s = {g_redis.addr, NULL, TIMEOUT_MS};
	struct queue_conn *c = queue_conn_new(base, &s);
	if (c == NULL)
		fail_msg("queue_conn_new: got NULL, want a connection");
	if (!run_until(base, cond_ready, c, 3000))
		fail_msg("queue connection: not ready within 3 s (%s)", queue_conn_last_error(c));
	return c;
}

static struct queue_admin *admin_open(void)
{
	struct queue_settings s = {g_redis.addr, NULL, 5000};
	char err[256];
	struct queue_admin *a = queue_admin_connect(&s, err, sizeof(err));
	if (a == NULL)
		fail_msg("queue_admin_connect: %s", err);
	return a;
}

static int group_setup(void **state)
{
	(void)state;
	return test_redis_group_start("sched");
}

static int group_teardown(void **state)
{
	(void)state;
	return test_redis_group_stop();
}

/* Each test starts on an empty, running, durable server with two ready connections. */
static int setup(void **state)
{
	static const char *const reset[] = {"CONFIG SET maxmemory 0",
	                                    "CONFIG SET appendfsync always",
	                                    "CONFIG SET maxmemory-policy noeviction",
	                                    "CONFIG RESETSTAT",
	                                    "SCRIPT FLUSH",
	                                    "FLUSHALL"};
	if (test_redis_reset(reset, sizeof(reset) / sizeof(reset[0])) == -1)
		return -1;
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->base = event_base_new();
	if (f->base == NULL)
		return -1;
	f->conn = conn_open(f->base);
	f->conn2 = conn_open(f->base);
	queue_policy_default(&f->pol);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f == NULL)
		return 0;
	queue_conn_free(f->conn);
	queue_conn_free(f->conn2);
	queue_admin_free(f->admin);
	event_base_free(f->base);
	free(f);
	ctx_drop();
	return 0;
}

/* ---- Redis-side helpers ---- */

static int64_t redis_now_ms(void)
{
	redisReply *r = rq("TIME");
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		fail_msg("TIME: unexpected reply");
	int64_t v = strtoll(r->element[0]->str, NULL, 10) * 1000 +
	            strtoll(r->element[1]->str, NULL, 10) / 1000;
	freeReplyObject(r);
	return v;
}

/* ZSCORE as an integer, -1 when missing. */
static long long zscore(const char *key, const char *member)
{
	redisReply *r = rq("ZSCORE %s %s", key, member);
	long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
	freeReplyObject(r);
	return v;
}

/* Whether "<prefix><id>" exists: prefix is "pst:msg:", "pst:body:" or "pst:rcpt:". */
static bool key_exists(const char *prefix, const char *id)
{
	return rq_int("EXISTS %s%s", prefix, id) == 1;
}

static long long count_keys(const char *pattern)
{
	redisReply *r = rq("KEYS %s", pattern);
	long long n = (long long)r->elements;
	freeReplyObject(r);
	return n;
}

/* ---- waiting for callbacks ---- */

struct waiter {
	int calls;
	int want;
	enum queue_result res;
	bool flag;
	uint64_t ref;
};

static bool cond_calls(void *arg)
{
	struct waiter *w = arg;
	return w->calls >= w->want;
}

static void wait_for(struct fixture *f, struct waiter *w, const char *what)
{
	if (!run_until(f->base, cond_calls, w, WAIT_MS))
		fail_msg("%s: got %d callbacks within %d ms, want %d", what, w->calls, WAIT_MS,
		         w->want);
}

static void on_done(enum queue_result res, uint64_t ref, void *arg)
{
	struct waiter *w = arg;
	w->calls++;
	w->res = res;
	w->ref = ref;
}

static void on_flag(enum queue_result res, bool ok, uint64_t ref, void *arg)
{
	struct waiter *w = arg;
	w->calls++;
	w->res = res;
	w->flag = ok;
	w->ref = ref;
}

static enum queue_result commit_msg(struct fixture *f, const struct queue_message *m)
{
	struct waiter w = {.want = 1};
	CHECK_INT("queue_commit return", queue_commit(f->conn, m, on_done, 1, &w), 0);
	wait_for(f, &w, "commit");
	return w.res;
}

static struct queue_message message(const char *id, const char *user, const char *campaign,
                                    const struct queue_recipient *rcpts, size_t n)
{
	struct queue_message m = {
	    .id = id,
	    .sender = "news@sender.example",
	    .user = user,
	    .client_ip = "192.0.2.7",
	    .helo = "app.sender.example",
	    .received_ms = wall_ms(),
	    .body = "Subject: x\r\n\r\nhello\r\n",
	    .body_len = 21,
	    .rcpts = rcpts,
	    .nrcpts = n,
	    .campaign = campaign,
	};
	return m;
}

static void commit_ok(struct fixture *f, const char *id, const char *user, const char *campaign,
                      const struct queue_recipient *rcpts, size_t n)
{
	struct queue_message m = message(id, user, campaign, rcpts, n);
	CHECK_STR("commit", queue_result_name(commit_msg(f, &m)), "ok");
}

/* Commits count one-recipient messages, ids first_id.., recipient r<i>@d<i % ndomains>.example,
 * up to 500 in flight. */
static void commit_bulk(struct fixture *f, unsigned first_id, unsigned count, const char *user,
                        const char *campaign, unsigned ndomains, size_t body_len)
{
	enum { WINDOW = 500 };
	char *body = malloc(body_len + 1);
	if (body == NULL)
		fail_msg("malloc: failed");
	memset(body, 'x', body_len);
	body[body_len] = '\0';
	static char ids[WINDOW][17], addrs[WINDOW][64], doms[WINDOW][32];
	static struct queue_recipient rc[WINDOW];
	static struct waiter w[WINDOW];
	for (unsigned i = 0; i < count; i += WINDOW) {
		unsigned n = count - i < WINDOW ? count - i : WINDOW;
		memset(w, 0, sizeof(w));
		for (unsigned j = 0; j < n; j++) {
			unsigned k = i + j;
			snprintf(ids[j], sizeof(ids[j]), "%016x", first_id + k);
			snprintf(doms[j], sizeof(doms[j]), "d%u.example", k % ndomains);
			snprintf(addrs[j], sizeof(addrs[j]), "r%u@%s", k, doms[j]);
			rc[j] = (struct queue_recipient){addrs[j], doms[j]};
			struct queue_message m = message(ids[j], user, campaign, &rc[j], 1);
			m.body = body;
			m.body_len = body_len;
			if (queue_commit(f->conn, &m, on_done, k, &w[j]) != 0)
				fail_msg("queue_commit %u: got -1, want 0", k);
		}
		for (unsigned j = 0; j < n; j++) {
			w[j].want = 1;
			wait_for(f, &w[j], "bulk commit");
			if (w[j].res != QUEUE_OK)
				fail_msg("bulk commit %u: got %s, want ok", i + j,
				         queue_result_name(w[j].res));
		}
	}
	free(body);
}

struct promote_waiter {
	struct waiter w;
	struct queue_promote_result r;
};

static void on_promote(enum queue_result res, const struct queue_promote_result *r, uint64_t ref,
                       void *arg)
{
	struct promote_waiter *p = arg;
	p->w.calls++;
	p->w.res = res;
	p->w.ref = ref;
	p->r = *r;
}

static struct queue_promote_result promote_once(struct fixture *f, struct queue_conn *c)
{
	struct promote_waiter p = {.w.want = 1};
	CHECK_INT("queue_sched_promote return", queue_sched_promote(c, &f->pol, on_promote, 7, &p),
	          0);
	wait_for(f, &p.w, "promote");
	CHECK_STR("promote result", queue_result_name(p.w.res), "ok");
	CHECK_INT("promote ref", p.w.ref, 7);
	return p.r;
}

/* Promotes until no batch is full; returns the sums. */
static struct queue_promote_result promote_all(struct fixture *f)
{
	struct queue_promote_result sum = {.next_ms = -1};
	for (int i = 0; i < 10000; i++) {
		struct queue_promote_result r = promote_once(f, f->conn);
		sum.ready += r.ready;
		sum.resolving += r.resolving;
		sum.held += r.held;
		sum.dropped += r.dropped;
		sum.reclaimed += r.reclaimed;
		sum.dead += r.dead;
		sum.next_ms = r.next_ms;
		if (!r.more)
			return sum;
	}
	fail_msg("promote_all: still more after 10000 calls");
	return sum;
}

struct moved_waiter {
	struct waiter w;
	unsigned moved, remaining;
};

static void on_moved(enum queue_result res, unsigned moved, unsigned remaining, uint64_t ref,
                     void *arg)
{
	struct moved_waiter *m = arg;
	m->w.calls++;
	m->w.res = res;
	m->w.ref = ref;
	m->moved = moved;
	m->remaining = remaining;
}

static struct moved_waiter site_set(struct fixture *f, const char *domain, const char *site)
{
	struct moved_waiter m = {.w.want = 1};
	CHECK_INT("queue_site_set return",
	          queue_site_set(f->conn, &f->pol, domain, site, 3600, on_moved, 0, &m), 0);
	wait_for(f, &m.w, "site set");
	CHECK_STR("site set result", queue_result_name(m.w.res), "ok");
	return m;
}

/* A lease, copied out of the callback. */
struct got_lease {
	struct waiter w;
	enum queue_lease_status status;
	int64_t wait_ms;
	uint64_t token;
	char id[17], domain[64], site[128], user[64], campaign[64], sender[64];
	unsigned attempt;
	int64_t deadline_ms;
	size_t body_len;
	size_t nrcpts;
	unsigned idx[8], att[8];
	char addr[8][64];
};

static void on_lease(enum queue_result res, const struct queue_delivery *d, uint64_t ref, void *arg)
{
	struct got_lease *g = arg;
	g->w.calls++;
	g->w.res = res;
	g->w.ref = ref;
	if (d == NULL)
		fail_msg("lease callback: got d NULL, want a delivery");
	g->status = d->status;
	g->wait_ms = d->wait_ms;
	snprintf(g->site, sizeof(g->site), "%s", d->site);
	if (d->status != QUEUE_LEASE_OK)
		return;
	g->token = d->token;
	snprintf(g->id, sizeof(g->id), "%s", d->id);
	snprintf(g->domain, sizeof(g->domain), "%s", d->domain);
	snprintf(g->user, sizeof(g->user), "%s", d->user);
	snprintf(g->campaign, sizeof(g->campaign), "%s", d->campaign);
	snprintf(g->sender, sizeof(g->sender), "%s", d->sender);
	g->attempt = d->attempt;
	g->deadline_ms = d->deadline_ms;
	g->body_len = d->body_len;
	g->nrcpts = d->nrcpts;
	for (size_t i = 0; i < d->nrcpts && i < 8; i++) {
		g->idx[i] = d->rcpts[i].index;
		g->att[i] = d->rcpts[i].attempts;
		snprintf(g->addr[i], sizeof(g->addr[i]), "%s", d->rcpts[i].address);
	}
}

static struct got_lease lease_on(struct fixture *f, struct queue_conn *c, const char *site,
                                 const char *worker, const struct queue_rate *rate)
{
	struct got_lease g;
	memset(&g, 0, sizeof(g));
	g.w.want = 1;
	CHECK_INT("queue_delivery_lease return",
	          queue_delivery_lease(c, &f->pol, site, worker, rate, on_lease, 3, &g), 0);
	wait_for(f, &g.w, "lease");
	CHECK_STR("lease result", queue_result_name(g.w.res), "ok");
	CHECK_INT("lease ref", g.w.ref, 3);
	return g;
}

static struct got_lease lease_ok(struct fixture *f, const char *site)
{
	struct got_lease g = lease_on(f, f->conn, site, "w1", NULL);
	CHECK_INT("lease status (0 = ok)", g.status, QUEUE_LEASE_OK);
	return g;
}

struct outcome_waiter {
	struct waiter w;
	struct queue_outcome_result r;
};

static void on_outcome(enum queue_result res, const struct queue_outcome_result *r, uint64_t ref,
                       void *arg)
{
	struct outcome_waiter *o = arg;
	o->w.calls++;
	o->w.res = res;
	o->w.ref = ref;
	o->r = *r;
}

/* Records kind with reply for every recipient of lease g, on connection c. */
static struct queue_outcome_result outcome_on(struct fixture *f, struct queue_conn *c,
                                              const struct got_lease *g,
                                              enum queue_outcome_kind kind, const char *reply,
                                              int64_t down_ms)
{
	struct queue_rcpt_outcome ro[8];
	for (size_t i = 0; i < g->nrcpts && i < 8; i++)
		ro[i] = (struct queue_rcpt_outcome){g->idx[i], kind, reply, NULL};
	struct queue_outcome o = {g->id,     g->domain, g->token, "mx1.example",
	                          "TLSv1.3", down_ms,   ro,       g->nrcpts};
	struct outcome_waiter w = {.w.want = 1};
	CHECK_INT("queue_delivery_outcome return",
	          queue_delivery_outcome(c, &f->pol, &o, on_outcome, 5, &w), 0);
	wait_for(f, &w.w, "outcome");
	CHECK_STR("outcome result", queue_result_name(w.w.res), "ok");
	CHECK_INT("outcome ref", w.w.ref, 5);
	return w.r;
}

static struct queue_outcome_result outcome(struct fixture *f, const struct got_lease *g,
                                           enum queue_outcome_kind kind, const char *reply)
{
	return outcome_on(f, f->conn, g, kind, reply, 0);
}

/* The number of entries in every ready list, and whether any appears twice. */
static long long ready_count(bool *dup)
{
	redisReply *keys = rq("KEYS pst:ready:*|*|*");
	long long n = 0;
	redisReply *all = NULL;
	char **seen = NULL;
	size_t nseen = 0, cap = 0;
	*dup = false;
	for (size_t i = 0; i < keys->elements; i++) {
		all = rq("LRANGE %s 0 -1", keys->element[i]->str);
		for (size_t j = 0; j < all->elements; j++) {
			for (size_t k = 0; k < nseen; k++)
				if (strcmp(seen[k], all->element[j]->str) == 0)
					*dup = true;
			if (nseen == cap) {
				cap = cap ? cap * 2 : 256;
				seen = realloc(seen, cap * sizeof(*seen));
				if (seen == NULL)
					fail_msg("realloc: failed");
			}
			seen[nseen++] = strdup(all->element[j]->str);
			n++;
		}
		freeReplyObject(all);
	}
	for (size_t k = 0; k < nseen; k++)
		free(seen[k]);
	free(seen);
	freeReplyObject(keys);
	return n;
}

/* ---- tests ---- */

static void test_pure_helpers(void **state)
{
	(void)state;
	static const struct {
		const char *hosts[3];
		size_t n;
		size_t outlen;
		int rc;
		const char *want;
	} cases[] = {
	    {{"MX2.Example.COM.", "mx1.example.com"}, 2, 64, 0, "mx1.example.com,mx2.example.com"},
	    {{"a.example", "a.example.", "A.EXAMPLE"}, 3, 64, 0, "a.example"},
	    {{"[192.0.2.1]"}, 1, 64, 0, "[192.0.2.1]"},
	    {{"b.example", "a.example"}, 2, 20, 0, "a.example,b.example"},
	    {{"b.example", "a.example"}, 2, 19, -1, ""},
	    {{"mx .example"}, 1, 64, -1, ""},
	    {{"mx|x.example"}, 1, 64, -1, ""},
	    {{""}, 1, 64, -1, ""},
	    {{"."}, 1, 64, -1, ""},
	    {{NULL}, 0, 64, -1, ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64] = "junk", name[64];
		snprintf(name, sizeof(name), "site name case %zu", i);
		CHECK_INT(name, queue_site_name(cases[i].hosts, cases[i].n, out, cases[i].outlen),
		          cases[i].rc);
		CHECK_STR(name, out, cases[i].want);
	}

	char long_campaign[QUEUE_CAMPAIGN_MAX + 2];
	memset(long_campaign, 'c', sizeof(long_campaign));
	long_campaign[QUEUE_CAMPAIGN_MAX] = '\0';
	CHECK_TRUE("campaign of the maximum length", queue_campaign_valid(long_campaign));
	long_campaign[QUEUE_CAMPAIGN_MAX] = 'c';
	long_campaign[QUEUE_CAMPAIGN_MAX + 1] = '\0';
	CHECK_TRUE("campaign too long", !queue_campaign_valid(long_campaign));
	CHECK_TRUE("campaign NULL", queue_campaign_valid(NULL));
	CHECK_TRUE("campaign empty", queue_campaign_valid(""));
	CHECK_TRUE("campaign token", queue_campaign_valid("spring-2024_#7"));
	CHECK_TRUE("campaign with a space", !queue_campaign_valid("spring 2024"));
	CHECK_TRUE("campaign with 8-bit", !queue_campaign_valid("caf\xc3\xa9"));

	static const struct {
		struct queue_pressure p;
		unsigned percent;
		int64_t max_rcpts;
		bool want;
	} pressure[] = {
	    {{900, 1000, 0, 0}, 90, 0, false},  {{901, 1000, 0, 0}, 90, 0, true},
	    {{901, 0, 0, 0}, 90, 0, false},     {{901, 1000, 0, 0}, 0, 0, false},
	    {{1, 1000, 5, 99}, 90, 100, false}, {{1, 1000, 5, 100}, 90, 100, true},
	    {{1, 1000, 5, 100}, 90, 0, false},
	};
	for (size_t i = 0; i < sizeof(pressure) / sizeof(pressure[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "pressure case %zu", i);
		CHECK_INT(
		    name,
		    queue_pressure_full(&pressure[i].p, pressure[i].percent, pressure[i].max_rcpts),
		    pressure[i].want);
	}

	struct queue_policy p;
	queue_policy_default(&p);
	CHECK_TRUE("default policy valid", queue_policy_valid(&p));
	CHECK_INT("default lease", p.lease_ms, 15 * 60 * 1000);
	CHECK_INT("default max age", p.max_age_ms, 5LL * 24 * 3600 * 1000);
	CHECK_INT("default first backoff", p.backoff_first_ms, 300000);
	CHECK_INT("default max backoff", p.backoff_max_ms, 3600000);
	p.jitter_percent = 101;
	CHECK_TRUE("jitter over 100 %", !queue_policy_valid(&p));
	queue_policy_default(&p);
	p.backoff_first_ms = p.backoff_max_ms + 1;
	CHECK_TRUE("first backoff over the cap", !queue_policy_valid(&p));
	queue_policy_default(&p);
	p.batch = 0;
	CHECK_TRUE("batch 0", !queue_policy_valid(&p));
}

static const struct queue_recipient rc_a[] = {{"ann@a.example", "a.example"}};
static const struct queue_recipient rc_ab[] = {
    {"ann@a.example", "a.example"},
    {"bob@b.example", "b.example"},
    {"cat@A.EXAMPLE", "a.example"},
};

static void test_commit_campaign(void **state)
{
	struct fixture *f = *state;
	commit_ok(f, "00000000000000c1", "alice", "spring-2024", rc_a, 1);
	commit_ok(f, "00000000000000c2", "alice", NULL, rc_a, 1);
	commit_ok(f, "00000000000000c3", "alice", "", rc_a, 1);
	char buf[64];
	CHECK_STR("campaign stored", hget("pst:msg:00000000000000c1", "campaign", buf, 64),
	          "spring-2024");
	CHECK_INT("no campaign field for NULL", rq_int("HEXISTS pst:msg:00000000000000c2 campaign"),
	          0);
	CHECK_INT("no campaign field for \"\"", rq_int("HEXISTS pst:msg:00000000000000c3 campaign"),
	          0);
	struct queue_message m = message("00000000000000c4", "alice", "two words", rc_a, 1);
	struct waiter w = {.want = 1};
	CHECK_INT("commit with a bad campaign", queue_commit(f->conn, &m, on_done, 0, &w), -1);
	CHECK_INT("no callback for a refused commit", w.calls, 0);
}

struct promoter {
	struct fixture *f;
	struct queue_conn *conn;
	bool busy, done;
	unsigned ready, calls;
};

static void on_promoter(enum queue_result res, const struct queue_promote_result *r, uint64_t ref,
                        void *arg);

static void promoter_go(struct promoter *p)
{
	p->busy = true;
	p->calls++;
	if (queue_sched_promote(p->conn, &p->f->pol, on_promoter, 0, p) != 0)
		fail_msg("queue_sched_promote: got -1, want 0");
}

static void on_promoter(enum queue_result res, const struct queue_promote_result *r, uint64_t ref,
                        void *arg)
{
	(void)ref;
	struct promoter *p = arg;
	p->busy = false;
	if (res != QUEUE_OK)
		fail_msg("concurrent promote: got %s, want ok", queue_result_name(res));
	p->ready += r->ready;
	if (r->ready == 0 && !r->more)
		p->done = true;
	else
		promoter_go(p);
}

static bool cond_promoters(void *arg)
{
	struct promoter *p = arg;
	return p[0].done && p[1].done && !p[0].busy && !p[1].busy;
}

static void test_promote_exact(void **state)
{
	struct fixture *f = *state;
	enum { N = 400, FUTURE = 100, DOMAINS = 20 };
	for (unsigned d = 0; d < DOMAINS; d++) {
		char dom[32], site[64];
		snprintf(dom, sizeof(dom), "d%u.example", d);
		snprintf(site, sizeof(site), "mx%u.example", d % 7);
		CHECK_INT("site set moves nothing yet", site_set(f, dom, site).moved, 0);
	}
	commit_bulk(f, 0x1000, N, "alice", NULL, DOMAINS, 100);
	/* The first FUTURE entries are due in a minute. */
	int64_t later = redis_now_ms() + 60000;
	for (unsigned i = 0; i < FUTURE; i++)
		rq_ok("ZADD pst:sched XX %lld %016x:d%u.example", (long long)later, 0x1000 + i,
		      i % DOMAINS);
	f->pol.batch = 7;
	struct promoter p[2] = {{f, f->conn, false, false, 0, 0},
	                        {f, f->conn2, false, false, 0, 0}};
	promoter_go(&p[0]);
	promoter_go(&p[1]);
	if (!run_until(f->base, cond_promoters, p, WAIT_MS))
		fail_msg("two promoters: not done within %d ms", WAIT_MS);
	print_message("two promoters, batch 7: %u and %u entries moved in %u and %u calls\n",
	              p[0].ready, p[1].ready, p[0].calls, p[1].calls);
	CHECK_INT("entries moved by both promoters", p[0].ready + p[1].ready, N - FUTURE);
	CHECK_TRUE("both promoters moved some", p[0].ready > 0 && p[1].ready > 0);
	bool dup;
	CHECK_INT("entries in ready lists", ready_count(&dup), N - FUTURE);
	CHECK_TRUE("no entry twice in the ready lists", !dup);
	CHECK_INT("entries left in pst:sched", rq_int("ZCARD pst:sched"), FUTURE);
	CHECK_INT("left entries are the future ones",
	          rq_int("ZCOUNT pst:sched %lld %lld", (long long)later, (long long)later), FUTURE);
	redisReply *h = rq("HVALS pst:depth");
	long long sum = 0;
	for (size_t i = 0; i < h->elements; i++)
		sum += strtoll(h->element[i]->str, NULL, 10);
	freeReplyObject(h);
	CHECK_INT("pst:depth total", sum, N - FUTURE);
	CHECK_INT("sites with work", rq_int("ZCARD pst:sites"), 7);
	struct queue_promote_result r = promote_once(f, f->conn);
	CHECK_INT("nothing due after", r.ready, 0);
	CHECK_TRUE("next due within the minute", r.next_ms > 50000 && r.next_ms <= 60000);
}

struct domains_waiter {
	struct waiter w;
	size_t count;
	char first[64];
};

static void on_domains(enum queue_result res, const char *const *domains, size_t count,
                       uint64_t ref, void *arg)
{
	struct domains_waiter *d = arg;
	d->w.calls++;
	d->w.res = res;
	d->w.ref = ref;
	d->count = count;
	snprintf(d->first, sizeof(d->first), "%s", count > 0 ? domains[0] : "");
}

static struct domains_waiter resolve_take(struct fixture *f, int64_t claim_ms)
{
	struct domains_waiter d = {.w.want = 1};
	CHECK_INT("queue_resolve_take return",
	          queue_resolve_take(f->conn, 10, claim_ms, on_domains, 0, &d), 0);
	wait_for(f, &d.w, "resolve take");
	CHECK_STR("resolve take result", queue_result_name(d.w.res), "ok");
	return d;
}

static void test_resolve_and_site_set(void **state)
{
	struct fixture *f = *state;
	commit_bulk(f, 0x2000, 5, "alice", NULL, 1, 50); /* five entries at d0.example */
	struct queue_promote_result r = promote_all(f);
	CHECK_INT("entries waiting for resolution", r.resolving, 5);
	CHECK_INT("entries ready", r.ready, 0);
	CHECK_INT("pst:wait:d0.example", rq_int("LLEN pst:wait:d0.example"), 5);

	struct domains_waiter d = resolve_take(f, 200);
	CHECK_INT("domains to resolve", d.count, 1);
	CHECK_STR("domain to resolve", d.first, "d0.example");
	CHECK_INT("claimed: not handed out again", resolve_take(f, 200).count, 0);
	sleep_ms(250);
	CHECK_INT("claim expired: handed out again", resolve_take(f, 60000).count, 1);

	/* A site set moves at most one batch; the domain stays claimed until all moved. */
	f->pol.batch = 2;
	struct moved_waiter m = site_set(f, "d0.example", "mx.d0.example");
	CHECK_INT("moved by the first site set", m.moved, 2);
	CHECK_INT("remaining after the first site set", m.remaining, 3);
	CHECK_INT("still in pst:resolve", zscore("pst:resolve", "d0.example") > 0, 1);
	m = site_set(f, "d0.example", "mx.d0.example");
	m = site_set(f, "d0.example", "mx.d0.example");
	CHECK_INT("remaining after three", m.remaining, 0);
	CHECK_INT("pst:resolve entry removed", zscore("pst:resolve", "d0.example"), -1);
	CHECK_INT("pst:site:of ttl set", rq_int("TTL pst:site:of:d0.example") > 3000, 1);
	bool dup;
	CHECK_INT("entries ready", ready_count(&dup), 5);

	/* With the site known, new entries go straight to the ready queue. */
	commit_bulk(f, 0x2100, 1, "alice", NULL, 1, 50);
	r = promote_all(f);
	CHECK_INT("known site: ready", r.ready, 1);
	CHECK_INT("known site: resolving", r.resolving, 0);
	struct got_lease g = lease_ok(f, "mx.d0.example");
	CHECK_STR("leased domain", g.domain, "d0.example");
	CHECK_STR("leased site", g.site, "mx.d0.example");
}

static void test_resolve_fail(void **state)
{
	struct fixture *f = *state;
	f->pol.backoff_first_ms = 5000;
	f->pol.jitter_percent = 0;
	static const struct queue_recipient rc_nx[] = {{"x@nx.example", "nx.example"},
	                                               {"y@nx.example", "nx.example"}};
	static const struct queue_recipient rc_sf[] = {{"z@sf.example", "sf.example"}};
	commit_ok(f, "00000000000000f1", "alice", NULL, rc_nx, 2);
	commit_ok(f, "00000000000000f2", "alice", NULL, rc_sf, 1);
	CHECK_INT("resolving", promote_all(f).resolving, 2);

	struct moved_waiter m = {.w.want = 1};
	CHECK_INT("queue_resolve_fail permanent",
	          queue_resolve_fail(f->conn, &f->pol, "nx.example", true,
	                             "550 5.1.2 Host or domain name not found", on_moved, 0, &m),
	          0);
	wait_for(f, &m.w, "resolve fail");
	CHECK_INT("permanent: moved", m.moved, 1);
	CHECK_INT("permanent: message gone", key_exists("pst:msg:", "00000000000000f1"), false);
	CHECK_INT("permanent: body gone", key_exists("pst:body:", "00000000000000f1"), false);
	CHECK_INT("permanent: bounced total", hget_int("pst:stat", "recipients_bounced_total"), 2);

	int64_t before = redis_now_ms();
	m = (struct moved_waiter){.w.want = 1};
	CHECK_INT("queue_resolve_fail temporary",
	          queue_resolve_fail(f->conn, &f->pol, "sf.example", false,
	                             "451 4.4.3 DNS SERVFAIL", on_moved, 0, &m),
	          0);
	wait_for(f, &m.w, "resolve fail");
	long long due = zscore("pst:sched", "00000000000000f2:sf.example");
	CHECK_TRUE("temporary: rescheduled after the first backoff",
	           due >= before + 5000 && due <= before + 6000);
	char buf[256];
	hget("pst:rcpt:00000000000000f2", "0", buf, sizeof(buf));
	CHECK_TRUE("temporary: deferred, one attempt", strncmp(buf, "deferred 1 ", 11) == 0);
	CHECK_INT("pst:resolve empty", rq_int("ZCARD pst:resolve"), 0);
}

/* Events written by the scheduler: the commit's "received" events are left out. */
static long long xlen_events(void)
{
	redisReply *r = rq("XRANGE pst:events - +");
	long long n = 0;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const char *type = hash_field(r->element[i]->element[1], "type");
		n += type == NULL || strcmp(type, "received") != 0;
	}
	freeReplyObject(r);
	return n;
}

/* The last event's field, into buf. */
static const char *last_event(const char *field, char *buf, size_t len)
{
	redisReply *r = rq("XREVRANGE pst:events + - COUNT 1");
	buf[0] = '\0';
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
		const redisReply *fields = r->element[0]->element[1];
		const char *v = hash_field(fields, field);
		snprintf(buf, len, "%s", v != NULL ? v : "(none)");
	}
	freeReplyObject(r);
	return buf;
}

static void test_lease_delivered_removes_body(void **state)
{
	struct fixture *f = *state;
	site_set(f, "a.example", "mx.a.example");
	site_set(f, "b.example", "mx.b.example");
	commit_ok(f, "00000000000000d1", "alice", "spring", rc_ab, 3);
	CHECK_INT("ready", promote_all(f).ready, 2);

	struct got_lease g = lease_ok(f, "mx.a.example");
	CHECK_STR("lease id", g.id, "00000000000000d1");
	CHECK_STR("lease domain", g.domain, "a.example");
	CHECK_STR("lease user", g.user, "alice");
	CHECK_STR("lease campaign", g.campaign, "spring");
	CHECK_STR("lease sender", g.sender, "news@sender.example");
	CHECK_INT("lease attempt", g.attempt, 1);
	CHECK_INT("lease body length", g.body_len, 21);
	CHECK_INT("recipients at a.example (both cases)", g.nrcpts, 2);
	CHECK_INT("first recipient index", g.idx[0], 0);
	CHECK_INT("second recipient index", g.idx[1], 2);
	CHECK_STR("second recipient", g.addr[1], "cat@A.EXAMPLE");
	char buf[256];
	hget("pst:rcpt:00000000000000d1", "2", buf, sizeof(buf));
	CHECK_TRUE("state sending", strncmp(buf, "sending 0 ", 10) == 0);
	CHECK_INT("lease recorded", zscore("pst:leases", "00000000000000d1:a.example"),
	          g.deadline_ms);
	CHECK_INT("nothing else ready at a",
	          lease_on(f, f->conn, "mx.a.example", "w1", NULL).status, QUEUE_LEASE_EMPTY);

	struct queue_outcome_result r = outcome(f, &g, QUEUE_OUTCOME_DELIVERED, "250 2.0.0 Ok");
	CHECK_INT("record", r.record, QUEUE_RECORD_OK);
	CHECK_INT("delivered", r.delivered, 2);
	CHECK_INT("message not done", r.message_done, false);
	CHECK_INT("body kept while b is open", key_exists("pst:body:", "00000000000000d1"), true);
	CHECK_INT("open", hget_int("pst:msg:00000000000000d1", "open"), 1);
	CHECK_INT("recipients_queued", hget_int("pst:stat", "recipients_queued"), 1);
	hget("pst:rcpt:00000000000000d1", "0:last", buf, sizeof(buf));
	CHECK_TRUE("last attempt recorded on the recipient",
	           strstr(buf, " mx1.example TLSv1.3 250 2.0.0 Ok") != NULL);
	CHECK_INT("events", xlen_events(), 2);
	CHECK_STR("event type", last_event("type", buf, sizeof(buf)), "delivered");
	CHECK_STR("event rcpt", last_event("rcpt", buf, sizeof(buf)), "cat@A.EXAMPLE");
	CHECK_STR("event campaign", last_event("campaign", buf, sizeof(buf)), "spring");
	CHECK_STR("event host", last_event("host", buf, sizeof(buf)), "mx1.example");
	CHECK_STR("event tls", last_event("tls", buf, sizeof(buf)), "TLSv1.3");
	CHECK_STR("event attempt", last_event("attempt", buf, sizeof(buf)), "1");
	CHECK_STR("event user", last_event("user", buf, sizeof(buf)), "alice");

	g = lease_ok(f, "mx.b.example");
	r = outcome(f, &g, QUEUE_OUTCOME_FAILED, "550 5.1.1 No such user");
	CHECK_INT("bounced", r.bounced, 1);
	CHECK_INT("message done", r.message_done, true);
	static const char *const gone[] = {"pst:msg:", "pst:body:", "pst:rcpt:"};
	for (size_t i = 0; i < 3; i++)
		CHECK_INT(gone[i], key_exists(gone[i], "00000000000000d1"), false);
	CHECK_INT("pst:msgs entry gone", zscore("pst:msgs", "00000000000000d1"), -1);
	CHECK_INT("messages_queued", hget_int("pst:stat", "messages_queued"), 0);
	CHECK_INT("recipients_queued", hget_int("pst:stat", "recipients_queued"), 0);
	CHECK_INT("no lease left", rq_int("ZCARD pst:leases") + rq_int("HLEN pst:lease"), 0);
	CHECK_INT("nothing in flight", rq_int("HLEN pst:inflight"), 0);
	CHECK_INT("no site left", rq_int("ZCARD pst:sites") + rq_int("HLEN pst:depth"), 0);
	CHECK_STR("bounce event", last_event("type", buf, sizeof(buf)), "bounced");
	CHECK_STR("bounce reply", last_event("reply", buf, sizeof(buf)), "550 5.1.1 No such user");
	/* Only shared keys are left: the message left nothing behind. */
	redisReply *keys = rq("KEYS pst:*");
	for (size_t i = 0; i < keys->elements; i++) {
		const char *k = keys->element[i]->str;
		bool shared = strcmp(k, "pst:stat") == 0 || strcmp(k, "pst:events") == 0 ||
		              strcmp(k, "pst:lease:seq") == 0 || strncmp(k, "pst:cnt:", 8) == 0 ||
		              strncmp(k, "pst:site:of:", 12) == 0;
		if (!shared)
			fail_msg("key left after the last recipient: got %s, want none", k);
	}
	freeReplyObject(keys);
}

/* Makes the entry due now (as if its time had come) and promotes it. */
static void make_due(struct fixture *f, const char *entry)
{
	rq_ok("ZADD pst:sched XX 0 %s", entry);
	CHECK_INT("made due: ready", promote_all(f).ready, 1);
}

static void test_deferred_backoff(void **state)
{
	struct fixture *f = *state;
	f->pol.backoff_first_ms = 2000;
	f->pol.backoff_max_ms = 9000;
	f->pol.jitter_percent = 0;
	site_set(f, "a.example", "mx.a.example");
	commit_ok(f, "00000000000000e1", "alice", NULL, rc_a, 1);
	promote_all(f);
	static const long long want_delay[] = {2000, 4000, 8000, 9000, 9000};
	for (size_t i = 0; i < sizeof(want_delay) / sizeof(want_delay[0]); i++) {
		char name[64];
		struct got_lease g = lease_ok(f, "mx.a.example");
		snprintf(name, sizeof(name), "attempt %zu: lease attempt", i + 1);
		CHECK_INT(name, g.attempt, i + 1);
		CHECK_INT("recipient attempts before", g.att[0], i);
		int64_t before = redis_now_ms();
		struct queue_outcome_result r =
		    outcome(f, &g, QUEUE_OUTCOME_DEFERRED, "451 4.7.1 Try again later");
		int64_t after = redis_now_ms();
		CHECK_INT("deferred", r.deferred, 1);
		long long due = zscore("pst:sched", "00000000000000e1:a.example");
		snprintf(name, sizeof(name), "attempt %zu: delay %lld ms", i + 1, want_delay[i]);
		if (due < before + want_delay[i] || due > after + want_delay[i])
			fail_msg("%s: got due now%+lld, want now+%lld", name,
			         (long long)(due - before), want_delay[i]);
		CHECK_INT("outcome next_ms", r.next_ms, due);
		char buf[256];
		hget("pst:rcpt:00000000000000e1", "0", buf, sizeof(buf));
		char want[64];
		snprintf(want, sizeof(want), "deferred %zu %lld ", i + 1, due);
		CHECK_TRUE(name, strncmp(buf, want, strlen(want)) == 0);
		CHECK_INT("not due yet: nothing promoted", promote_once(f, f->conn).ready, 0);
		make_due(f, "00000000000000e1:a.example");
	}
	char buf[64];
	CHECK_STR("deferred event", last_event("type", buf, sizeof(buf)), "deferred");
	CHECK_STR("deferred event attempt", last_event("attempt", buf, sizeof(buf)), "5");
	CHECK_INT("deferrals total", hget_int("pst:stat", "deferrals_total"), 5);

	/* Jitter shortens each delay by up to jitter_percent, never lengthens it. */
	f->pol.jitter_percent = 50;
	f->pol.backoff_first_ms = 10000;
	f->pol.backoff_max_ms = 10000;
	long long lo = 1000000, hi = 0;
	for (int i = 0; i < 12; i++) {
		struct got_lease g = lease_ok(f, "mx.a.example");
		int64_t before = redis_now_ms();
		outcome(f, &g, QUEUE_OUTCOME_DEFERRED, "451 later");
		long long d = zscore("pst:sched", "00000000000000e1:a.example") - before;
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
		make_due(f, "00000000000000e1:a.example");
	}
	print_message("delays with 50%% jitter on 10 s: %lld..%lld ms\n", lo, hi);
	CHECK_TRUE("jitter within 5..10 s", lo >= 4990 && hi <= 10010);
	CHECK_TRUE("jitter varies", hi - lo >= 200);
}

static void test_expiry_at_max_age(void **state)
{
	struct fixture *f = *state;
	f->pol.backoff_first_ms = 600000;
	f->pol.backoff_max_ms = 600000;
	f->pol.max_age_ms = 4000;
	f->pol.jitter_percent = 0;
	site_set(f, "a.example", "mx.a.example");
	/* Received 3 s ago: the 10 min backoff is capped at the maximum age (in 1 s). */
	struct queue_message m = message("00000000000000a1", "alice", NULL, rc_a, 1);
	int64_t now = redis_now_ms();
	m.received_ms = now - 3000;
	CHECK_STR("commit", queue_result_name(commit_msg(f, &m)), "ok");
	promote_all(f);
	struct got_lease g = lease_ok(f, "mx.a.example");
	struct queue_outcome_result r = outcome(f, &g, QUEUE_OUTCOME_DEFERRED, "451 4.2.0 Busy");
	CHECK_INT("first deferral is not an expiry", r.deferred, 1);
	CHECK_INT("last attempt at the maximum age",
	          zscore("pst:sched", "00000000000000a1:a.example"), now - 3000 + 4000);
	/* Wait for it for real: promotion picks it up at the maximum age. */
	int64_t until = now + 1000 + 2000;
	struct queue_promote_result pr = {0};
	while (pr.ready == 0 && redis_now_ms() < until) {
		sleep_ms(50);
		pr = promote_once(f, f->conn);
	}
	CHECK_INT("due at the maximum age", pr.ready, 1);
	CHECK_TRUE("not before it", redis_now_ms() >= now + 1000);
	g = lease_ok(f, "mx.a.example");
	CHECK_INT("attempt 2", g.attempt, 2);
	r = outcome(f, &g, QUEUE_OUTCOME_DEFERRED, "451 4.2.0 Still busy");
	CHECK_INT("expired", r.expired, 1);
	CHECK_INT("message done", r.message_done, true);
	char buf[256];
	CHECK_STR("event", last_event("type", buf, sizeof(buf)), "expired");
	CHECK_STR("event reply", last_event("reply", buf, sizeof(buf)),
	          "4.4.7 Delivery time expired; last reply: 451 4.2.0 Still busy");
	CHECK_INT("body gone", key_exists("pst:body:", "00000000000000a1"), false);
	CHECK_INT("expired total", hget_int("pst:stat", "recipients_expired_total"), 1);
	CHECK_INT("no entry left", rq_int("ZCARD pst:sched"), 0);
}

static void test_reclaim_dead_and_stale(void **state)
{
	struct fixture *f = *state;
	f->pol.lease_ms = 150;
	f->pol.max_reclaims = 2;
	site_set(f, "a.example", "mx.a.example");
	commit_ok(f, "00000000000000b1", "alice", NULL, rc_a, 1);
	promote_all(f);

	struct got_lease a = lease_on(f, f->conn, "mx.a.example", "worker-a", NULL);
	CHECK_INT("worker a leased", a.status, QUEUE_LEASE_OK);
	CHECK_INT("not reclaimed before the timeout", promote_once(f, f->conn2).reclaimed, 0);
	sleep_ms(200);
	struct queue_promote_result pr = promote_once(f, f->conn2);
	CHECK_INT("reclaimed after the timeout", pr.reclaimed, 1);
	CHECK_INT("and ready again", pr.ready, 1);
	struct got_lease b = lease_on(f, f->conn2, "mx.a.example", "worker-b", NULL);
	CHECK_INT("worker b leased it", b.status, QUEUE_LEASE_OK);
	CHECK_STR("same entry", b.id, a.id);
	CHECK_TRUE("new token", b.token != a.token);
	CHECK_INT("reclaim does not count an attempt", b.attempt, 1);

	/* Worker a comes back late: its outcome is refused and changes nothing. */
	long long events = xlen_events();
	struct queue_outcome_result r =
	    outcome_on(f, f->conn, &a, QUEUE_OUTCOME_DELIVERED, "250 ok", 0);
	CHECK_INT("stale outcome refused", r.record, QUEUE_RECORD_STALE);
	CHECK_INT("no event from the stale outcome", xlen_events(), events);
	CHECK_INT("message still open", hget_int("pst:msg:00000000000000b1", "open"), 1);
	struct waiter w = {.want = 1};
	CHECK_INT("renew stale",
	          queue_delivery_renew(f->conn, a.id, a.domain, a.token, 1000, on_flag, 0, &w), 0);
	wait_for(f, &w, "renew");
	CHECK_INT("stale renew refused", w.flag, false);
	w = (struct waiter){.want = 1};
	CHECK_INT("renew",
	          queue_delivery_renew(f->conn2, b.id, b.domain, b.token, 60000, on_flag, 0, &w),
	          0);
	wait_for(f, &w, "renew");
	CHECK_INT("renewed", w.flag, true);
	sleep_ms(200);
	CHECK_INT("renewed lease not reclaimed", promote_once(f, f->conn).reclaimed, 0);
	r = outcome_on(f, f->conn2, &b, QUEUE_OUTCOME_DEFERRED, "451 later", 0);
	CHECK_INT("worker b records", r.record, QUEUE_RECORD_OK);
	r = outcome_on(f, f->conn2, &b, QUEUE_OUTCOME_DEFERRED, "451 later", 0);
	CHECK_INT("a second outcome for one lease is refused", r.record, QUEUE_RECORD_STALE);

	/* Three expired leases in a row (the outcome above reset the count): the third is
	 * more than max_reclaims and goes to pst:dead. */
	make_due(f, "00000000000000b1:a.example");
	for (int i = 0; i < 3; i++) {
		struct got_lease x = lease_ok(f, "mx.a.example");
		CHECK_INT("leased again", x.attempt, 2);
		sleep_ms(200);
		pr = promote_once(f, f->conn);
		char name[64];
		snprintf(name, sizeof(name), "expiry %d: reclaimed", i + 1);
		CHECK_INT(name, pr.reclaimed, i < 2 ? 1 : 0);
		snprintf(name, sizeof(name), "expiry %d: dead", i + 1);
		CHECK_INT(name, pr.dead, i < 2 ? 0 : 1);
	}
	CHECK_INT("in pst:dead", rq_int("LLEN pst:dead"), 1);
	char buf[256];
	CHECK_STR("dead event", last_event("type", buf, sizeof(buf)), "dead");
	hget("pst:rcpt:00000000000000b1", "0", buf, sizeof(buf));
	CHECK_TRUE("dead recipient deferred without a next time",
	           strncmp(buf, "deferred 1 0 ", 13) == 0);
	CHECK_INT("nothing to lease", lease_on(f, f->conn, "mx.a.example", "w1", NULL).status,
	          QUEUE_LEASE_EMPTY);
	CHECK_INT("message still queued", hget_int("pst:msg:00000000000000b1", "open"), 1);

	f->admin = admin_open();
	uint64_t count = 0;
	char err[256] = "";
	CHECK_INT("retry a dead message",
	          queue_admin_retry(f->admin, QUEUE_SELECT_MESSAGE, "00000000000000b1", &count, err,
	                            sizeof(err)),
	          0);
	CHECK_INT("retried entries", count, 1);
	CHECK_INT("pst:dead empty", rq_int("LLEN pst:dead"), 0);
	CHECK_INT("reclaim count reset", rq_int("HEXISTS pst:msg:00000000000000b1 c:a.example"), 0);
	CHECK_INT("ready again", promote_all(f).ready, 1);
}

struct site_waiter {
	struct waiter w;
	enum queue_pick pick;
	char site[128];
	int64_t ready, leased, wait_ms;
};

static void on_site(enum queue_result res, const struct queue_site_pick *p, uint64_t ref, void *arg)
{
	struct site_waiter *s = arg;
	s->w.calls++;
	s->w.res = res;
	s->w.ref = ref;
	s->pick = p->pick;
	snprintf(s->site, sizeof(s->site), "%s", p->site);
	s->ready = p->ready;
	s->leased = p->leased;
	s->wait_ms = p->wait_ms;
}

static struct site_waiter site_next(struct fixture *f)
{
	struct site_waiter s = {.w.want = 1};
	CHECK_INT("queue_site_next return", queue_site_next(f->conn, on_site, 0, &s), 0);
	wait_for(f, &s.w, "site next");
	CHECK_STR("site next result", queue_result_name(s.w.res), "ok");
	return s;
}

static void test_site_round_robin_and_down(void **state)
{
	struct fixture *f = *state;
	CHECK_INT("no site yet", site_next(f).pick, QUEUE_PICK_NONE);
	static const char *const sites[] = {"mx.s0.example", "mx.s1.example", "mx.s2.example"};
	for (unsigned d = 0; d < 3; d++) {
		char dom[32];
		snprintf(dom, sizeof(dom), "d%u.example", d);
		site_set(f, dom, sites[d]);
	}
	commit_bulk(f, 0x3000, 9, "alice", NULL, 3, 10);
	promote_all(f);
	/* Round robin: each site once in any three picks. */
	for (int round = 0; round < 2; round++) {
		bool seen[3] = {false, false, false};
		for (int i = 0; i < 3; i++) {
			struct site_waiter s = site_next(f);
			CHECK_INT("picked a site", s.pick, QUEUE_PICK_SITE);
			CHECK_INT("ready at the site", s.ready, 3);
			for (int k = 0; k < 3; k++)
				if (strcmp(s.site, sites[k]) == 0)
					seen[k] = true;
		}
		CHECK_TRUE("three picks cover the three sites", seen[0] && seen[1] && seen[2]);
	}
	/* A down site is skipped, and answers DOWN to a lease. */
	struct waiter w = {.want = 1};
	CHECK_INT("queue_site_down", queue_site_down(f->conn, sites[1], 300, on_flag, 0, &w), 0);
	wait_for(f, &w, "site down");
	for (int i = 0; i < 4; i++)
		CHECK_TRUE("down site not picked", strcmp(site_next(f).site, sites[1]) != 0);
	struct got_lease g = lease_on(f, f->conn, sites[1], "w1", NULL);
	CHECK_INT("lease from a down site", g.status, QUEUE_LEASE_DOWN);
	CHECK_TRUE("down for at most 300 ms", g.wait_ms > 0 && g.wait_ms <= 300);
	/* Drain the other two: only the down site is left, so "later". */
	for (int i = 0; i < 6; i++) {
		struct got_lease x = lease_ok(f, i % 2 == 0 ? sites[0] : sites[2]);
		outcome(f, &x, QUEUE_OUTCOME_DELIVERED, "250 ok");
	}
	struct site_waiter s = site_next(f);
	CHECK_INT("only a down site: later", s.pick, QUEUE_PICK_LATER);
	CHECK_TRUE("later within 300 ms", s.wait_ms > 0 && s.wait_ms <= 300);
	sleep_ms(320);
	s = site_next(f);
	CHECK_INT("back after the mark expired", s.pick, QUEUE_PICK_SITE);
	CHECK_STR("the site that was down", s.site, sites[1]);
	CHECK_INT("drained sites left pst:sites", rq_int("ZCARD pst:sites"), 1);
}

static void test_site_down_outcome(void **state)
{
	struct fixture *f = *state;
	f->pol.jitter_percent = 0;
	site_set(f, "a.example", "mx.a.example");
	commit_ok(f, "0000000000000051", "alice", NULL, rc_a, 1);
	promote_all(f);
	struct got_lease g = lease_ok(f, "mx.a.example");
	int64_t before = redis_now_ms();
	struct queue_outcome_result r = outcome_on(f, f->conn, &g, QUEUE_OUTCOME_SITE_DOWN,
	                                           "connect to every host failed", 30000);
	CHECK_INT("deferred", r.deferred, 1);
	long long due = zscore("pst:sched", "0000000000000051:a.example");
	CHECK_TRUE("due when the site is back", due >= before + 30000 && due <= before + 31000);
	CHECK_TRUE("site marked down", rq_int("PTTL pst:down:mx.a.example") > 29000);
	char buf[256];
	hget("pst:rcpt:0000000000000051", "0", buf, sizeof(buf));
	CHECK_TRUE("no attempt counted", strncmp(buf, "deferred 0 ", 11) == 0);
	make_due(f, "0000000000000051:a.example");
	rq_ok("DEL pst:down:mx.a.example");
	g = lease_ok(f, "mx.a.example");
	CHECK_INT("still the first attempt", g.attempt, 1);
}

/* ---- shared rate across two workers ---- */

#define MAX_GRANTS 4096

struct hammer {
	struct fixture *f;
	struct queue_conn *conn;
	const struct queue_rate *rate;
	uint64_t end_ms;
	bool busy;
	unsigned asked, granted;
	int64_t *grants; /* shared: Redis time of every grant, µs */
	size_t *ngrants;
};

static void on_rate(enum queue_result res, const struct queue_rate_result *r, uint64_t ref,
                    void *arg);

static void hammer_go(struct hammer *h)
{
	h->busy = now_ms() < h->end_ms;
	if (!h->busy)
		return;
	h->asked++;
	if (queue_site_rate_take(h->conn, "mx.rate.example", h->rate, on_rate, 0, h) != 0)
		fail_msg("queue_site_rate_take: got -1, want 0");
}

static void on_rate(enum queue_result res, const struct queue_rate_result *r, uint64_t ref,
                    void *arg)
{
	(void)ref;
	struct hammer *h = arg;
	if (res != QUEUE_OK)
		fail_msg("rate take: got %s, want ok", queue_result_name(res));
	if (r->allowed) {
		if (*h->ngrants < MAX_GRANTS)
			h->grants[(*h->ngrants)++] = r->redis_us;
		h->granted++;
	} else if (r->wait_ms <= 0 || r->wait_ms > 1000) {
		fail_msg("rate wait: got %lld ms, want 1..1000", (long long)r->wait_ms);
	}
	hammer_go(h);
}

static bool cond_hammers(void *arg)
{
	struct hammer *h = arg;
	return !h[0].busy && !h[1].busy;
}

static int i64_cmp(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
	return (a > b) - (a < b);
}

static void test_gcra_two_workers(void **state)
{
	struct fixture *f = *state;
	enum { RATE = 20, RUN_MS = 2500 };
	const struct queue_rate rate = {RATE, 1000, 1};
	static int64_t grants[MAX_GRANTS];
	size_t ngrants = 0;
	uint64_t end = now_ms() + RUN_MS;
	struct hammer h[2] = {{f, f->conn, &rate, end, false, 0, 0, grants, &ngrants},
	                      {f, f->conn2, &rate, end, false, 0, 0, grants, &ngrants}};
	hammer_go(&h[0]);
	hammer_go(&h[1]);
	if (!run_until(f->base, cond_hammers, h, RUN_MS + WAIT_MS))
		fail_msg("rate hammers: not done in time");
	qsort(grants, ngrants, sizeof(grants[0]), i64_cmp);
	/* Every one-second window starting at a grant holds at most RATE grants. */
	size_t worst = 0;
	for (size_t i = 0, j = 0; i < ngrants; i++) {
		while (j < ngrants && grants[j] < grants[i] + 1000000)
			j++;
		worst = j - i > worst ? j - i : worst;
	}
	print_message("GCRA %d/s, two workers hammering %d ms: %u+%u requests, %u+%u granted, "
	              "busiest 1 s window %zu\n",
	              RATE, RUN_MS, h[0].asked, h[1].asked, h[0].granted, h[1].granted, worst);
	CHECK_INT("grants in the busiest one-second window <= rate", worst <= RATE, 1);
	CHECK_TRUE("the rate is used (>= 90 % of 2.5 s x 20/s)", ngrants >= 45);
	CHECK_TRUE("both workers got grants", h[0].granted > 0 && h[1].granted > 0);
	CHECK_TRUE("both workers were refused too",
	           h[0].asked > h[0].granted && h[1].asked > h[1].granted);

	/* Lease charges the same rate, and only when it leases something. */
	rq_ok("DEL pst:rate:mx.rate.example");
	site_set(f, "d0.example", "mx.rate.example");
	commit_bulk(f, 0x4000, 3, "alice", NULL, 1, 10);
	promote_all(f);
	const struct queue_rate slow = {1, 60000, 2};
	CHECK_INT("lease 1 in the burst",
	          lease_on(f, f->conn, "mx.rate.example", "w", &slow).status, QUEUE_LEASE_OK);
	CHECK_INT("lease 2 in the burst",
	          lease_on(f, f->conn, "mx.rate.example", "w", &slow).status, QUEUE_LEASE_OK);
	struct got_lease g = lease_on(f, f->conn, "mx.rate.example", "w", &slow);
	CHECK_INT("lease 3 waits", g.status, QUEUE_LEASE_WAIT);
	CHECK_TRUE("wait about a minute", g.wait_ms > 50000 && g.wait_ms <= 60000);
}

/* ---- connection slots ---- */

struct slot_waiter {
	struct waiter w;
	struct queue_slot_result r;
};

static void on_slot(enum queue_result res, const struct queue_slot_result *r, uint64_t ref,
                    void *arg)
{
	struct slot_waiter *s = arg;
	s->w.calls++;
	s->w.res = res;
	s->w.ref = ref;
	s->r = *r;
}

static struct queue_slot_result slot_acquire(struct fixture *f, struct queue_conn *c, unsigned max,
                                             int64_t ttl)
{
	struct slot_waiter s = {.w.want = 1};
	CHECK_INT("slot acquire return",
	          queue_site_slot_acquire(c, "mx.slots.example", max, ttl, on_slot, 0, &s), 0);
	wait_for(f, &s.w, "slot acquire");
	CHECK_STR("slot acquire result", queue_result_name(s.w.res), "ok");
	return s.r;
}

static bool slot_flag(struct fixture *f, bool renew, uint64_t slot, int64_t ttl)
{
	struct waiter w = {.want = 1};
	int rc = renew
	             ? queue_site_slot_renew(f->conn, "mx.slots.example", slot, ttl, on_flag, 0, &w)
	             : queue_site_slot_release(f->conn, "mx.slots.example", slot, on_flag, 0, &w);
	CHECK_INT("slot renew/release return", rc, 0);
	wait_for(f, &w, "slot renew/release");
	return w.flag;
}

static void test_slots_cap_and_expiry(void **state)
{
	struct fixture *f = *state;
	enum { MAX = 3 };
	/* Ten acquires from two workers at once: exactly MAX succeed. */
	struct slot_waiter s[10];
	memset(s, 0, sizeof(s));
	for (int i = 0; i < 10; i++) {
		s[i].w.want = 1;
		CHECK_INT("acquire",
		          queue_site_slot_acquire(i % 2 ? f->conn2 : f->conn, "mx.slots.example",
		                                  MAX, 400, on_slot, 0, &s[i]),
		          0);
	}
	uint64_t held[MAX];
	int granted = 0;
	for (int i = 0; i < 10; i++) {
		wait_for(f, &s[i].w, "acquire");
		if (s[i].r.slot != 0) {
			if (granted < MAX)
				held[granted] = s[i].r.slot;
			granted++;
		} else {
			CHECK_TRUE("full: wait until a slot expires",
			           s[i].r.wait_ms > 0 && s[i].r.wait_ms <= 400);
			CHECK_INT("full: in use", s[i].r.in_use, MAX);
		}
	}
	CHECK_INT("slots granted out of 10 concurrent acquires", granted, MAX);
	CHECK_INT("release one", slot_flag(f, false, held[1], 0), true);
	CHECK_INT("release twice", slot_flag(f, false, held[1], 0), false);
	struct queue_slot_result r = slot_acquire(f, f->conn2, MAX, 400);
	CHECK_TRUE("acquire after a release", r.slot != 0);
	CHECK_INT("renew a live slot", slot_flag(f, true, held[0], 1000), true);
	/* A crashed worker never releases: its slots expire and the next acquire removes them. */
	sleep_ms(450);
	r = slot_acquire(f, f->conn, MAX, 400);
	CHECK_TRUE("acquire after expiry", r.slot != 0);
	CHECK_INT("expired slots reclaimed", r.reclaimed, 2);
	CHECK_INT("in use: the renewed one and the new one", r.in_use, 2);
	CHECK_INT("renew an expired slot", slot_flag(f, true, held[2], 1000), false);
	CHECK_TRUE("the key expires with its slots", rq_int("PTTL pst:slots:mx.slots.example") > 0);
}

/* ---- fairness ---- */

static void test_fairness(void **state)
{
	struct fixture *f = *state;
	site_set(f, "d0.example", "mx.fair.example");
	/* The bulk tenant queues 1000 first, then the small one 10. */
	commit_bulk(f, 0x10000, 1000, "bulk", "spring-sale", 1, 10);
	commit_bulk(f, 0x20000, 10, "small", NULL, 1, 10);
	f->pol.batch = 2000;
	CHECK_INT("ready", promote_all(f).ready, 1010);
	int small_seen = 0, last_small = 0;
	for (int i = 1; i <= 20; i++) {
		struct got_lease g = lease_ok(f, "mx.fair.example");
		if (strcmp(g.user, "small") == 0) {
			small_seen++;
			last_small = i;
		}
		outcome(f, &g, QUEUE_OUTCOME_DELIVERED, "250 ok");
	}
	print_message("fairness: the small tenant's 10 messages within the first 20 leases: %d "
	              "(last at lease %d)\n",
	              small_seen, last_small);
	CHECK_INT("small tenant's messages in the first 20 leases", small_seen, 10);

	/* Within one tenant: campaigns round robin, and retries beside first attempts. */
	site_set(f, "d1.example", "mx.camp.example");
	commit_bulk(f, 0x30000, 200, "carol", "big", 2, 10);   /* 100 at d1 */
	commit_bulk(f, 0x40000, 10, "carol", "alerts", 2, 10); /* 5 at d1 */
	CHECK_INT("ready (d0 at its own site)", promote_all(f).ready, 210);
	int alerts = 0;
	f->pol.backoff_first_ms = 1;
	f->pol.backoff_max_ms = 1;
	for (int i = 0; i < 10; i++) {
		struct got_lease g = lease_ok(f, "mx.camp.example");
		if (strcmp(g.campaign, "alerts") == 0)
			alerts++;
		/* Defer the big campaign's: they come back as retries. */
		outcome(f, &g,
		        strcmp(g.campaign, "big") == 0 ? QUEUE_OUTCOME_DEFERRED
		                                       : QUEUE_OUTCOME_DELIVERED,
		        "451 later");
	}
	CHECK_INT("the small campaign's 5 within the first 10", alerts, 5);
	sleep_ms(5);
	CHECK_INT("5 retries ready", promote_all(f).ready, 5);
	int retries = 0;
	for (int i = 0; i < 10; i++) {
		struct got_lease g = lease_ok(f, "mx.camp.example");
		if (g.attempt > 1)
			retries++;
		outcome(f, &g, QUEUE_OUTCOME_DELIVERED, "250 ok");
	}
	CHECK_INT("retries interleaved with first attempts: 5 of the next 10", retries, 5);
}

/* ---- back-pressure ---- */

struct pressure_waiter {
	struct waiter w;
	struct queue_pressure p;
};

static void on_pressure(enum queue_result res, const struct queue_pressure *p, uint64_t ref,
                        void *arg)
{
	struct pressure_waiter *pw = arg;
	pw->w.calls++;
	pw->w.res = res;
	pw->w.ref = ref;
	pw->p = *p;
}

static void test_back_pressure(void **state)
{
	struct fixture *f = *state;
	site_set(f, "a.example", "mx.a.example");
	queue_conn_set_max_queued(f->conn, 3);
	commit_ok(f, "0000000000000061", "alice", NULL, rc_a, 1);
	commit_ok(f, "0000000000000062", "alice", NULL, rc_a, 1);
	commit_ok(f, "0000000000000063", "alice", NULL, rc_a, 1);
	struct queue_message m = message("0000000000000064", "alice", NULL, rc_a, 1);
	CHECK_STR("commit at the maximum", queue_result_name(commit_msg(f, &m)), "full");
	CHECK_INT("nothing written", key_exists("pst:msg:", "0000000000000064"), false);
	CHECK_INT("counter unchanged", hget_int("pst:stat", "recipients_queued"), 3);

	rq_ok("CONFIG SET maxmemory 104857600");
	struct pressure_waiter pw = {.w.want = 1};
	CHECK_INT("queue_pressure_read", queue_pressure_read(f->conn, on_pressure, 9, &pw), 0);
	wait_for(f, &pw.w, "pressure");
	CHECK_STR("pressure result", queue_result_name(pw.w.res), "ok");
	CHECK_INT("pressure maxmemory", pw.p.maxmemory, 104857600);
	CHECK_TRUE("pressure used_memory",
	           pw.p.used_memory > 100000 && pw.p.used_memory < pw.p.maxmemory);
	CHECK_INT("pressure recipients", pw.p.recipients_queued, 3);
	CHECK_INT("pressure messages", pw.p.messages_queued, 3);
	CHECK_INT("full by count", queue_pressure_full(&pw.p, 90, 3), true);
	CHECK_INT("not full by memory at 90 %", queue_pressure_full(&pw.p, 90, 0), false);
	rq_ok("CONFIG SET maxmemory 0");

	promote_all(f);
	struct got_lease g = lease_ok(f, "mx.a.example");
	outcome(f, &g, QUEUE_OUTCOME_DELIVERED, "250 ok");
	CHECK_STR("commit below the maximum again", queue_result_name(commit_msg(f, &m)), "ok");
	queue_conn_set_max_queued(f->conn, 0);
	struct queue_message m2 = message("0000000000000065", "alice", NULL, rc_a, 1);
	CHECK_STR("no maximum", queue_result_name(commit_msg(f, &m2)), "ok");
}

static void test_drain_at_maxmemory(void **state)
{
	struct fixture *f = *state;
	site_set(f, "d0.example", "mx.oom.example");
	commit_bulk(f, 0x5000, 20, "alice", NULL, 1, 2000);
	promote_all(f);
	/* Redis is over maxmemory: new mail is refused, delivery still drains it. */
	rq_ok("CONFIG SET maxmemory 1");
	struct queue_message m = message("0000000000000071", "alice", NULL, rc_a, 1);
	CHECK_STR("commit over maxmemory", queue_result_name(commit_msg(f, &m)), "full");
	CHECK_INT("bodies before", count_keys("pst:body:*"), 20);
	for (int i = 0; i < 10; i++) {
		struct got_lease g = lease_ok(f, "mx.oom.example");
		struct queue_outcome_result r = outcome(
		    f, &g, i % 2 ? QUEUE_OUTCOME_DELIVERED : QUEUE_OUTCOME_FAILED, "250 ok");
		CHECK_INT("outcome over maxmemory recorded", r.record, QUEUE_RECORD_OK);
		CHECK_INT("message done", r.message_done, true);
	}
	CHECK_TRUE("promote runs over maxmemory", promote_once(f, f->conn).ready == 0);
	CHECK_INT("bodies removed over maxmemory", count_keys("pst:body:*"), 10);
	CHECK_INT("messages removed over maxmemory", count_keys("pst:msg:*"), 10);
	CHECK_STR("still refusing new mail", queue_result_name(commit_msg(f, &m)), "full");
	rq_ok("CONFIG SET maxmemory 0");
}

/* ---- administration ---- */

static uint64_t admin_do(struct fixture *f,
                         int (*fn)(struct queue_admin *, enum queue_select, const char *,
                                   uint64_t *, char *, size_t),
                         enum queue_select by, const char *value)
{
	uint64_t count = 12345;
	char err[256] = "";
	if (fn(f->admin, by, value, &count, err, sizeof(err)) != 0)
		fail_msg("admin %s: got -1 (%s), want 0", value, err);
	return count;
}

static void stats_text(struct fixture *f, char *buf, size_t len)
{
	FILE *out = fmemopen(buf, len, "w");
	if (out == NULL)
		fail_msg("fmemopen: failed");
	char err[256] = "";
	int rc = queue_admin_stats(f->admin, out, err, sizeof(err));
	fclose(out);
	if (rc != 0)
		fail_msg("queue_admin_stats: got -1 (%s), want 0", err);
}

static void test_admin(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	static const struct queue_recipient rc_c[] = {{"cy@c.example", "c.example"}};
	site_set(f, "a.example", "mx.shared.example");
	site_set(f, "b.example", "mx.b.example");
	site_set(f, "c.example", "mx.shared.example");
	commit_ok(f, "00000000000000a1", "alice", NULL, rc_ab, 3); /* a.example x2, b.example */
	commit_ok(f, "00000000000000a2", "alice", NULL, rc_a, 1);
	commit_ok(f, "00000000000000a3", "alice", NULL, rc_c, 1);

	uint64_t count = 0;
	char err[256] = "";
	CHECK_INT("hold an unknown message",
	          queue_admin_hold(f->admin, QUEUE_SELECT_MESSAGE, "ffffffffffffffff", &count, err,
	                           sizeof(err)),
	          -1);
	CHECK_STR("unknown message err", err, "no such message");
	CHECK_INT("hold a bad id",
	          queue_admin_hold(f->admin, QUEUE_SELECT_MESSAGE, "x", &count, err, sizeof(err)),
	          -1);

	/* Hold a message: its scheduled entries leave pst:sched at once. */
	CHECK_INT("hold message",
	          admin_do(f, queue_admin_hold, QUEUE_SELECT_MESSAGE, "00000000000000a1"), 2);
	struct queue_promote_result r = promote_all(f);
	CHECK_INT("ready without the held message", r.ready, 2);
	char text[4096];
	stats_text(f, text, sizeof(text));
	CHECK_TRUE("stats: held 2", strstr(text, " held=2 ") != NULL);
	CHECK_TRUE("stats: shared site line",
	           strstr(text, "\nmx.shared.example ready=2 leased=0 down=- held=no\n") != NULL);
	CHECK_INT("release message",
	          admin_do(f, queue_admin_release, QUEUE_SELECT_MESSAGE, "00000000000000a1"), 2);
	CHECK_INT("released entries ready", promote_all(f).ready, 2);

	/* Hold a domain: its ready entries are diverted when a lease meets them. */
	CHECK_INT("hold domain", admin_do(f, queue_admin_hold, QUEUE_SELECT_DOMAIN, "a.example"),
	          1);
	struct got_lease g = lease_ok(f, "mx.shared.example");
	CHECK_STR("lease skips the held domain", g.domain, "c.example");
	CHECK_INT("nothing else at the shared site",
	          lease_on(f, f->conn, "mx.shared.example", "w1", NULL).status, QUEUE_LEASE_EMPTY);
	CHECK_INT("held entries", rq_int("ZCARD pst:held"), 2);
	CHECK_INT("release domain",
	          admin_do(f, queue_admin_release, QUEUE_SELECT_DOMAIN, "a.example"), 3);
	CHECK_INT("released domain ready", promote_all(f).ready, 2);

	/* Delete by domain while one of its entries is leased: the lease records nothing. */
	CHECK_INT("delete domain c",
	          admin_do(f, queue_admin_delete, QUEUE_SELECT_DOMAIN, "c.example"), 1);
	CHECK_INT("message a3 gone", key_exists("pst:msg:", "00000000000000a3"), false);
	struct queue_outcome_result o = outcome(f, &g, QUEUE_OUTCOME_DELIVERED, "250 ok");
	CHECK_INT("outcome for a deleted message", o.record, QUEUE_RECORD_GONE);
	CHECK_INT("deleted total", hget_int("pst:stat", "recipients_deleted_total"), 1);

	/* Hold a site: it is not served; release serves it again. */
	CHECK_INT("hold site", admin_do(f, queue_admin_hold, QUEUE_SELECT_SITE, "mx.b.example"), 1);
	CHECK_INT("lease from a held site", lease_on(f, f->conn, "mx.b.example", "w1", NULL).status,
	          QUEUE_LEASE_HELD);
	for (int i = 0; i < 3; i++)
		CHECK_TRUE("held site not picked", strcmp(site_next(f).site, "mx.b.example") != 0);
	CHECK_INT("release site",
	          admin_do(f, queue_admin_release, QUEUE_SELECT_SITE, "mx.b.example"), 1);
	g = lease_ok(f, "mx.b.example");

	/* Retry by site: a deferred entry is due at once, and the down mark goes. */
	f->pol.backoff_first_ms = 3600000;
	outcome_on(f, f->conn, &g, QUEUE_OUTCOME_SITE_DOWN, "no host answered", 600000);
	CHECK_INT("not due", promote_once(f, f->conn).ready, 0);
	CHECK_INT("retry site", admin_do(f, queue_admin_retry, QUEUE_SELECT_SITE, "mx.b.example"),
	          2);
	CHECK_INT("down mark removed", rq_int("EXISTS pst:down:mx.b.example"), 0);
	CHECK_INT("due again", promote_once(f, f->conn).ready, 1);

	/* Retry by domain. */
	g = lease_ok(f, "mx.shared.example");
	outcome(f, &g, QUEUE_OUTCOME_DEFERRED, "451 later");
	CHECK_INT("retry domain", admin_do(f, queue_admin_retry, QUEUE_SELECT_DOMAIN, "a.example"),
	          1);
	CHECK_INT("retried due", promote_once(f, f->conn).ready, 1);

	/* Delete by site, then by message. */
	CHECK_INT("delete site b",
	          admin_do(f, queue_admin_delete, QUEUE_SELECT_SITE, "mx.b.example"), 1);
	CHECK_INT("a1 still open at a", hget_int("pst:msg:00000000000000a1", "open"), 2);
	CHECK_INT("delete message a1",
	          admin_do(f, queue_admin_delete, QUEUE_SELECT_MESSAGE, "00000000000000a1"), 2);
	CHECK_INT("delete message a2",
	          admin_do(f, queue_admin_delete, QUEUE_SELECT_MESSAGE, "00000000000000a2"), 1);
	CHECK_INT("no message left", rq_int("ZCARD pst:msgs"), 0);
	CHECK_INT("recipients_queued", hget_int("pst:stat", "recipients_queued"), 0);
	CHECK_INT("messages_queued", hget_int("pst:stat", "messages_queued"), 0);
	/* Entries left in ready lists are dropped when met. */
	CHECK_INT("stale ready entries dropped",
	          lease_on(f, f->conn, "mx.shared.example", "w1", NULL).status, QUEUE_LEASE_EMPTY);
	CHECK_INT("stale ready entries dropped at b",
	          lease_on(f, f->conn, "mx.b.example", "w1", NULL).status, QUEUE_LEASE_EMPTY);
	stats_text(f, text, sizeof(text));
	CHECK_STR("stats when empty", text,
	          "scheduled=0 due=0 resolving=0 waiting=0 leased=0 held=0 dead=0 messages=0 "
	          "recipients=0\n");
}

/* ---- scale: memory per recipient and the cost of a lease ---- */

struct scale {
	long long bytes_sched; /* per recipient, committed (in pst:sched) */
	long long bytes_ready; /* per recipient, promoted into ready queues */
	double lease_us;       /* wall time per lease + outcome round trip pair */
	double redis_us;       /* Redis CPU per lease + outcome (commandstats) */
	double redis_lease_us, redis_outcome_us;
	long long bytes_lease; /* Redis memory per lease held */
};

/* usec and calls of EVALSHA so far. */
static void evalsha_stats(long long *usec, long long *calls)
{
	redisReply *r = rq("INFO commandstats");
	const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
	*usec = *calls = 0;
	if (p != NULL) {
		*calls = strtoll(p + strlen("cmdstat_evalsha:calls="), NULL, 10);
		const char *u = strstr(p, "usec=");
		if (u != NULL)
			*usec = strtoll(u + 5, NULL, 10);
	}
	freeReplyObject(r);
}

static struct scale measure(struct fixture *f, unsigned recipients, unsigned domains,
                            unsigned sites)
{
	struct scale s = {0, 0, 0, 0, 0, 0, 0};
	rq_ok("FLUSHALL");
	rq_ok("CONFIG SET appendfsync no"); /* memory and CPU are measured, not the disk */
	f->pol.batch = 5000;
	struct moved_waiter mw[500];
	for (unsigned d = 0; d < domains; d += 500) {
		unsigned n = domains - d < 500 ? domains - d : 500;
		for (unsigned j = 0; j < n; j++) {
			char dom[32], site[32];
			snprintf(dom, sizeof(dom), "d%u.example", d + j);
			snprintf(site, sizeof(site), "mx%u.example", (d + j) % sites);
			mw[j] = (struct moved_waiter){.w.want = 1};
			if (queue_site_set(f->conn, &f->pol, dom, site, 86400, on_moved, 0,
			                   &mw[j]) != 0)
				fail_msg("queue_site_set: got -1, want 0");
		}
		for (unsigned j = 0; j < n; j++)
			wait_for(f, &mw[j].w, "site set");
	}
	/* Warm the shared keys, then measure. */
	commit_bulk(f, 0x7000000, 1, "warm", NULL, 1, 100);
	promote_all(f);
	long long m0 = info_used_memory();
	commit_bulk(f, 0x100000, recipients, "bulk", "c1", domains, 100);
	long long m1 = info_used_memory();
	CHECK_INT("promoted", promote_all(f).ready, recipients);
	long long m2 = info_used_memory();
	s.bytes_sched = (m1 - m0) / (long long)recipients;
	s.bytes_ready = (m2 - m0) / (long long)recipients;
	enum { LEASES = 400 };
	static struct got_lease g[LEASES];
	long long u0, c0, u1, c1, u2, c2;
	long long mem0 = info_used_memory();
	evalsha_stats(&u0, &c0);
	uint64_t t0 = now_ms();
	for (unsigned i = 0; i < LEASES; i++) {
		char site[32];
		snprintf(site, sizeof(site), "mx%u.example", i % sites);
		g[i] = lease_ok(f, site);
	}
	evalsha_stats(&u1, &c1);
	s.bytes_lease = (info_used_memory() - mem0) / LEASES;
	for (unsigned i = 0; i < LEASES; i++)
		outcome(f, &g[i], QUEUE_OUTCOME_DELIVERED, "250 ok");
	uint64_t t1 = now_ms();
	evalsha_stats(&u2, &c2);
	s.lease_us = (double)(t1 - t0) * 1000.0 / LEASES;
	s.redis_lease_us = (double)(u1 - u0) / LEASES;
	s.redis_outcome_us = (double)(u2 - u1) / LEASES;
	s.redis_us = s.redis_lease_us + s.redis_outcome_us;
	CHECK_INT("one script call per lease and per outcome", c2 - c0, 2 * LEASES);
	rq_ok("CONFIG SET appendfsync always");
	return s;
}

static void test_scale_memory_and_lease_cost(void **state)
{
	struct fixture *f = *state;
	struct scale small = measure(f, 1000, 100, 10);
	struct scale large = measure(f, 100000, 10000, 1000);
	print_message("1,000 recipients (100 domains, 10 sites): %lld bytes/recipient scheduled, "
	              "%lld ready (100-byte bodies); lease+outcome %.0f us wall, in Redis %.1f "
	              "(lease %.1f, outcome %.1f) us; %lld bytes per lease held\n",
	              small.bytes_sched, small.bytes_ready, small.lease_us, small.redis_us,
	              small.redis_lease_us, small.redis_outcome_us, small.bytes_lease);
	print_message("100,000 recipients (10,000 domains, 1,000 sites): %lld bytes/recipient "
	              "scheduled, %lld ready; lease+outcome %.0f us wall, in Redis %.1f (lease "
	              "%.1f, outcome %.1f) us; %lld bytes per lease held\n",
	              large.bytes_sched, large.bytes_ready, large.lease_us, large.redis_us,
	              large.redis_lease_us, large.redis_outcome_us, large.bytes_lease);
	/* An O(queue) step would be 100 times slower at 100,000; the margin is for a busy host. */
	CHECK_TRUE("Redis time per lease does not grow with the queue (x3 + 50 us)",
	           large.redis_us <= small.redis_us * 3 + 50);
	CHECK_TRUE("memory per recipient does not grow with the queue",
	           large.bytes_ready <= small.bytes_ready * 3 / 2 + 64);
}

/* ---- exactly one callback, also when the connection goes ---- */

static void test_conn_free_answers(void **state)
{
	struct fixture *f = *state;
	site_set(f, "a.example", "mx.a.example");
	struct got_lease g;
	memset(&g, 0, sizeof(g));
	struct promote_waiter p = {.w.want = 1};
	struct site_waiter s = {.w.want = 1};
	CHECK_INT(
	    "lease",
	    queue_delivery_lease(f->conn, &f->pol, "mx.a.example", "w1", NULL, on_lease, 1, &g), 0);
	CHECK_INT("promote", queue_sched_promote(f->conn, &f->pol, on_promote, 2, &p), 0);
	CHECK_INT("site next", queue_site_next(f->conn, on_site, 3, &s), 0);
	queue_conn_free(f->conn);
	f->conn = NULL;
	CHECK_INT("lease answered once", g.w.calls, 1);
	CHECK_STR("lease answer", queue_result_name(g.w.res), "unavailable");
	CHECK_INT("lease status on failure", g.status, QUEUE_LEASE_EMPTY);
	CHECK_INT("promote answered once", p.w.calls, 1);
	CHECK_INT("promote ref", p.w.ref, 2);
	CHECK_INT("site next answered once", s.w.calls, 1);
	run_for(f->base, 100);
	CHECK_INT("still once", g.w.calls + p.w.calls + s.w.calls, 3);
	CHECK_INT("not ready: -1 without a callback", queue_site_next(f->conn2, NULL, 0, NULL), -1);
	struct queue_policy bad = f->pol;
	bad.batch = 0;
	CHECK_INT("bad policy: -1", queue_sched_promote(f->conn2, &bad, on_promote, 0, &p), -1);
	CHECK_INT("bad site: -1",
	          queue_delivery_lease(f->conn2, &f->pol, "a|b", "w1", NULL, on_lease, 0, &g), -1);
	CHECK_INT("bad worker: -1",
	          queue_delivery_lease(f->conn2, &f->pol, "mx", "w 1", NULL, on_lease, 0, &g), -1);
	CHECK_INT("no callback for refused calls", g.w.calls + p.w.calls, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pure_helpers),
	    cmocka_unit_test_setup_teardown(test_commit_campaign, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_promote_exact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_and_site_set, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_fail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lease_delivered_removes_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deferred_backoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry_at_max_age, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reclaim_dead_and_stale, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_site_round_robin_and_down, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_site_down_outcome, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gcra_two_workers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slots_cap_and_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fairness, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_back_pressure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_at_maxmemory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conn_free_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scale_memory_and_lease_cost, setup, teardown),
	};
	/* A write to a socket Redis closed must not kill the test. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
