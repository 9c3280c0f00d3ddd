/*
 * test_suppress.c: unit tests of the per-user suppression lists (queue/suppress.c, the
 * commit script in queue/queue.c, the outcome's learning in queue/sched_script.c, and
 * postinoctl's relay/ctl_suppress.c) against a real redis-server on a unix socket in a
 * mkdtemp folder, stopped by its pid at the end. Covers: a commit with a suppressed
 * recipient (state, event, counters, no delivery entry), a commit whose every recipient is
 * suppressed, domain-wide entries, expiry, hard bounces and complaints, soft failures counted
 * once per message up to the limit, block and ignore never suppressing, the bounce listener's
 * add with its "complained" event, the admin functions, and the CLI with CSV export and
 * import (bad lines reported, nothing imported). Mismatches print "name: got X, want Y".
 */
#include "queue/queue.h"
#include "relay/ctl_suppress.h"
#include "tests/unit/lib_check.h"
#include "tests/unit/lib_redis.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#define WAIT_MS 10000
#define USER    "alice"

struct fixture {
	struct event_base *base;
	struct queue_conn *conn;
	struct queue_admin *admin;
	struct queue_policy pol;
};

static bool conn_is_ready(void *arg)
{
	return queue_conn_ready(arg);
}

static int group_setup(void **state)
{
	(void)state;
	return test_redis_group_start("suppress");
}

static int group_teardown(void **state)
{
	(void)state;
	return test_redis_group_stop();
}

static int setup(void **state)
{
	static const char *const reset[] = {"CONFIG SET maxmemory 0", "SCRIPT FLUSH", "FLUSHALL"};
	if (test_redis_reset(reset, sizeof(reset) / sizeof(reset[0])) == -1)
		return -1;
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL || (f->base = event_base_new()) == NULL)
		return -1;
	struct queue_settings s = {g_redis.addr, NULL, 2000};
	char err[256];
	f->conn = queue_conn_new(f->base, &s);
	f->admin = queue_admin_connect(&s, err, sizeof(err));
	if (f->conn == NULL || f->admin == NULL ||
	    !run_until(f->base, conn_is_ready, f->conn, 3000))
		return -1;
	queue_policy_default(&f->pol);
	f->pol.jitter_percent = 0;
	struct queue_user u = {USER, "x", "sender.example", "", ""};
	struct queue_user bob = {"bob", "x", "other.example", "", ""};
	if (queue_admin_user_put(f->admin, &u, true, err, sizeof(err)) == -1 ||
	    queue_admin_user_put(f->admin, &bob, true, err, sizeof(err)) == -1)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f == NULL)
		return 0;
	queue_conn_free(f->conn);
	queue_admin_free(f->admin);
	event_base_free(f->base);
	free(f);
	ctx_drop();
	return 0;
}

/* ---- one async call at a time ---- */

struct call {
	int calls;
	enum queue_result res;
	struct queue_outcome_result outcome;
	struct queue_delivery lease; /* copied: only the fields below are kept */
	char id[17], domain[64];
	size_t nrcpts;
	unsigned index[4];
};

static bool call_answered(void *arg)
{
	return ((struct call *)arg)->calls > 0;
}

static void call_wait(struct fixture *f, struct call *k, const char *what)
{
	if (!run_until(f->base, call_answered, k, WAIT_MS))
		fail_msg("%s: got no callback within %d ms, want one", what, WAIT_MS);
	if (k->res != QUEUE_OK)
		fail_msg("%s: got %s, want ok", what, queue_result_name(k->res));
}

static void on_done(enum queue_result res, uint64_t ref, void *arg)
{
	(void)ref;
	struct call *k = arg;
	k->calls++;
	k->res = res;
}

static void on_promote(enum queue_result res, const struct queue_promote_result *r, uint64_t ref,
                       void *arg)
{
	(void)r;
	on_done(res, ref, arg);
}

static void on_moved(enum queue_result res, unsigned moved, unsigned remaining, uint64_t ref,
                     void *arg)
{
	(void)moved;
	(void)remaining;
	on_done(res, ref, arg);
}

static void on_lease(enum queue_result res, const struct queue_delivery *d, uint64_t ref, void *arg)
{
	struct call *k = arg;
	on_done(res, ref, arg);
	k->lease.status = d->status;
	if (d->status != QUEUE_LEASE_OK)
		return;
	k->lease.token = d->token;
	snprintf(k->id, sizeof(k->id), "%s", d->id);
	snprintf(k->domain, sizeof(k->domain), "%s", d->domain);
	k->nrcpts = d->nrcpts < 4 ? d->nrcpts : 4;
	for (size_t i = 0; i < k->nrcpts; i++)
		k->index[i] = d->rcpts[i].index;
}

static void on_outcome(enum queue_result res, const struct queue_outcome_result *r, uint64_t ref,
                       void *arg)
{
	struct call *k = arg;
	on_done(res, ref, arg);
	k->outcome = *r;
}

static void commit(struct fixture *f, const char *id, const char *user,
                   const struct queue_recipient *rcpts, size_t n)
{
	struct queue_message m = {.id = id,
	                          .sender = "news@sender.example",
	                          .user = user,
	                          .client_ip = "192.0.2.7",
	                          .helo = "app.sender.example",
	                          .received_ms = wall_ms(),
	                          .body = "Subject: x\r\n\r\nhi\r\n",
	                          .body_len = 18,
	                          .rcpts = rcpts,
	                          .nrcpts = n,
	                          .campaign = "spring"};
	struct call k = {0};
	CHECK_INT("queue_commit return", queue_commit(f->conn, &m, on_done, 0, &k), 0);
	call_wait(f, &k, "commit");
}

/* One delivery attempt of the message's entry at domain (site "mx.<domain>"): due now,
 * promoted, leased, and every recipient given kind, reply and class. */
static struct queue_outcome_result attempt(struct fixture *f, const char *id, const char *domain,
                                           enum queue_outcome_kind kind, const char *reply,
                                           const char *bounce_class)
{
	char entry[128], site[80];
	snprintf(entry, sizeof(entry), "%s:%s", id, domain);
	snprintf(site, sizeof(site), "mx.%s", domain);
	rq_ok("ZADD pst:sched XX 0 %s", entry);
	struct call k = {0};
	CHECK_INT("site_set return",
	          queue_site_set(f->conn, &f->pol, domain, site, 3600, on_moved, 0, &k), 0);
	call_wait(f, &k, "site set");
	k = (struct call){0};
	CHECK_INT("promote return", queue_sched_promote(f->conn, &f->pol, on_promote, 0, &k), 0);
	call_wait(f, &k, "promote");
	k = (struct call){0};
	CHECK_INT("lease return",
	          queue_delivery_lease(f->conn, &f->pol, site, "w1", NULL, on_lease, 0, &k), 0);
	call_wait(f, &k, "lease");
	CHECK_INT("lease status (0 = ok)", k.lease.status, QUEUE_LEASE_OK);
	CHECK_STR("leased entry", k.id, id);
	struct queue_rcpt_outcome ro[4];
	for (size_t i = 0; i < k.nrcpts; i++)
		ro[i] = (struct queue_rcpt_outcome){k.index[i], kind, reply, bounce_class};
	struct queue_outcome o = {id, domain, k.lease.token, "mx1.example", "", 0, ro, k.nrcpts};
	struct call r = {0};
	CHECK_INT("outcome return", queue_delivery_outcome(f->conn, &f->pol, &o, on_outcome, 0, &r),
	          0);
	call_wait(f, &r, "outcome");
	CHECK_INT("outcome recorded", r.outcome.record, QUEUE_RECORD_OK);
	return r.outcome;
}

/* ---- Redis-side helpers ---- */

/* GET as a number, 0 when missing. */
static long long get_num(const char *key)
{
	redisReply *r = rq("GET %s", key);
	long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
	freeReplyObject(r);
	return v;
}

/* The field of the events (oldest first) of type for rcpt, into buf; "" when none. The
 * number of such events is returned. */
static int event_field(const char *type, const char *rcpt, const char *field, char *buf, size_t len)
{
	redisReply *r = rq("XRANGE pst:events - +");
	int n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *fields = r->element[i]->element[1];
		const char *t = hash_field(fields, "type"), *to = hash_field(fields, "rcpt");
		if (t == NULL || to == NULL || strcmp(t, type) != 0 || strcmp(to, rcpt) != 0)
			continue;
		n++;
		const char *v = hash_field(fields, field);
		snprintf(buf, len, "%s", v != NULL ? v : "(none)");
	}
	freeReplyObject(r);
	return n;
}

/* The sum of a counter field over the minute buckets (one bucket unless a minute turned). */
static long long minute_count(const char *field)
{
	redisReply *keys = rq("KEYS pst:cnt:m:*");
	long long sum = 0;
	for (size_t i = 0; i < keys->elements; i++)
		sum += hget_int(keys->element[i]->str, field);
	freeReplyObject(keys);
	return sum;
}

static void put(struct fixture *f, const char *user, const struct queue_suppression *s, size_t n)
{
	char err[256] = "";
	if (queue_admin_suppress_put(f->admin, user, s, n, err, sizeof(err)) == -1)
		fail_msg("queue_admin_suppress_put: got -1 (%s), want 0", err);
}

/* ---- tests ---- */

static void test_pure(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *want; /* NULL: refused */
	} cases[] = {
	    {"Bob@Example.COM", "bob@example.com"},
	    {"*@Example.com", "*@example.com"},
	    {"\"John Doe\"@x.example", "\"john doe\"@x.example"},
	    {"caf\xc3\xa9@x.example", "caf\xc3\xa9@x.example"},
	    {"a@b@c.example", "a@b@c.example"},
	    {"@x.example", NULL},
	    {"bob@", NULL},
	    {"bob", NULL},
	    {"", NULL},
	    {"bob@x exa", NULL},
	    {"bo\tb@x.example", NULL},
	    {"bob@x.exam\x7fple", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[QUEUE_SUPP_ADDRESS_MAX + 1], name[96];
		snprintf(name, sizeof(name), "normalize(\"%s\")", cases[i].in);
		int rc = queue_supp_address_normalize(cases[i].in, out, sizeof(out));
		CHECK_INT(name, rc, cases[i].want != NULL ? 0 : -1);
		CHECK_STR(name, out, cases[i].want != NULL ? cases[i].want : "");
	}
	char longer[QUEUE_SUPP_ADDRESS_MAX + 8], out[QUEUE_SUPP_ADDRESS_MAX + 1];
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	longer[10] = '@';
	CHECK_INT("normalize(over the maximum)",
	          queue_supp_address_normalize(longer, out, sizeof(out)), -1);
	CHECK_INT("normalize(out too small)", queue_supp_address_normalize("a@b.c", out, 5), -1);
	CHECK_TRUE("class hard", queue_supp_class_valid("hard"));
	CHECK_TRUE("class manual", queue_supp_class_valid("manual"));
	CHECK_TRUE("class block refused", !queue_supp_class_valid("block"));
	CHECK_TRUE("class NULL refused", !queue_supp_class_valid(NULL));
	struct queue_policy p;
	queue_policy_default(&p);
	CHECK_INT("default soft_limit", p.soft_limit, 3);
	CHECK_INT("default soft_window_ms", p.soft_window_ms, 7LL * 86400 * 1000);
	CHECK_TRUE("default policy valid", queue_policy_valid(&p));
	p.soft_limit = 0;
	CHECK_TRUE("soft_limit 0 (never) valid", queue_policy_valid(&p));
	p.soft_limit = QUEUE_SOFT_LIMIT_MAX + 1;
	CHECK_TRUE("soft_limit over the maximum refused", !queue_policy_valid(&p));
	p.soft_limit = 3;
	p.soft_window_ms = 0;
	CHECK_TRUE("soft_window_ms 0 refused", !queue_policy_valid(&p));
	p.soft_window_ms = QUEUE_SOFT_WINDOW_MAX_MS + 1;
	CHECK_TRUE("soft_window_ms over the maximum refused", !queue_policy_valid(&p));
}

static void test_commit_with_suppressed_recipient(void **state)
{
	struct fixture *f = *state;
	struct queue_suppression s = {"BOB@b.example",    "hard",        "550 5.1.1 gone",
	                              "00000000000000ff", 1714564800000, 0};
	put(f, USER, &s, 1);
	static const struct queue_recipient rc[] = {
	    {"ann@a.example", "a.example"},
	    {"Bob@B.example", "b.example"},
	    {"cat@a.example", "a.example"},
	};
	commit(f, "00000000000000a1", USER, rc, 3);
	char buf[256];
	CHECK_STR("suppressed recipient state", hget("pst:rcpt:00000000000000a1", "1", buf, 256),
	          "suppressed 0 0 Bob@B.example");
	CHECK_TRUE("other recipient queued",
	           strncmp(hget("pst:rcpt:00000000000000a1", "0", buf, 256), "queued 0 ", 9) == 0);
	CHECK_INT("msg rcpts", hget_int("pst:msg:00000000000000a1", "rcpts"), 3);
	CHECK_INT("msg open", hget_int("pst:msg:00000000000000a1", "open"), 2);
	CHECK_INT("delivery entries (a.example only)", rq_int("ZCARD pst:sched"), 1);
	CHECK_TRUE("no entry for b.example",
	           rq_int("ZRANK pst:sched 00000000000000a1:a.example") == 0);
	CHECK_INT("messages_queued", hget_int("pst:stat", "messages_queued"), 1);
	CHECK_INT("recipients_queued", hget_int("pst:stat", "recipients_queued"), 2);
	CHECK_INT("recipients_received_total", hget_int("pst:stat", "recipients_received_total"),
	          3);
	CHECK_INT("recipients_suppressed_total",
	          hget_int("pst:stat", "recipients_suppressed_total"), 1);
	CHECK_INT("one suppressed event",
	          event_field("suppressed", "Bob@B.example", "reply", buf, sizeof(buf)), 1);
	CHECK_STR("suppressed reply", buf,
	          "550 5.7.1 Recipient suppressed: hard since 2024-05-01T12:00:00Z");
	event_field("suppressed", "Bob@B.example", "class", buf, sizeof(buf));
	CHECK_STR("suppressed event class", buf, "hard");
	event_field("suppressed", "Bob@B.example", "campaign", buf, sizeof(buf));
	CHECK_STR("suppressed event campaign", buf, "spring");
	event_field("suppressed", "Bob@B.example", "user", buf, sizeof(buf));
	CHECK_STR("suppressed event user", buf, USER);
	CHECK_INT("received event too",
	          event_field("received", "Bob@B.example", "type", buf, sizeof(buf)), 1);
	CHECK_INT("no suppressed event for the others",
	          event_field("suppressed", "ann@a.example", "type", buf, sizeof(buf)), 0);
	CHECK_INT("a|suppressed", minute_count("a|suppressed"), 1);
	CHECK_INT("a|suppressed_hard", minute_count("a|suppressed_hard"), 1);
	CHECK_INT("u|suppressed|alice", minute_count("u|suppressed|alice"), 1);
	CHECK_INT("d|suppressed|b.example", minute_count("d|suppressed|b.example"), 1);
	CHECK_INT("c|suppressed|spring", minute_count("c|suppressed|spring"), 1);

	/* The list is the user's own: another tenant mails the same address. */
	static const struct queue_recipient rb[] = {{"bob@b.example", "b.example"}};
	commit(f, "00000000000000a2", "bob", rb, 1);
	CHECK_TRUE("another user's recipient queued",
	           strncmp(hget("pst:rcpt:00000000000000a2", "0", buf, 256), "queued 0 ", 9) == 0);

	/* The queued recipients are delivered; the message goes with the last of them. */
	struct queue_outcome_result r =
	    attempt(f, "00000000000000a1", "a.example", QUEUE_OUTCOME_DELIVERED, "250 ok", NULL);
	CHECK_INT("delivered", r.delivered, 2);
	CHECK_INT("message done", r.message_done, true);
	CHECK_INT("message removed", rq_int("EXISTS pst:msg:00000000000000a1"), 0);
	CHECK_INT("recipients_queued after", hget_int("pst:stat", "recipients_queued"), 1);
	CHECK_INT("messages_queued after", hget_int("pst:stat", "messages_queued"), 1);
}

static void test_commit_all_suppressed(void **state)
{
	struct fixture *f = *state;
	struct queue_suppression s[] = {
	    {"x@a.example", "complaint", "", NULL, 0, 0},
	    {"*@b.example", "manual", "closed", "admin", 0, 0},
	};
	put(f, USER, s, 2);
	static const struct queue_recipient rc[] = {
	    {"X@A.example", "a.example"},
	    {"anyone@B.EXAMPLE", "b.example"},
	};
	commit(f, "00000000000000b1", USER, rc, 2);
	static const char *const gone[] = {"pst:msg:00000000000000b1", "pst:body:00000000000000b1",
	                                   "pst:rcpt:00000000000000b1", "pst:sched", "pst:msgs"};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		CHECK_INT(gone[i], rq_int("EXISTS %s", gone[i]), 0);
	char buf[256];
	CHECK_STR("messages_queued (written, 0)", hget("pst:stat", "messages_queued", buf, 256),
	          "0");
	CHECK_STR("recipients_queued (written, 0)", hget("pst:stat", "recipients_queued", buf, 256),
	          "0");
	CHECK_INT("messages_received_total", hget_int("pst:stat", "messages_received_total"), 1);
	CHECK_INT("recipients_received_total", hget_int("pst:stat", "recipients_received_total"),
	          2);
	CHECK_INT("recipients_suppressed_total",
	          hget_int("pst:stat", "recipients_suppressed_total"), 2);
	CHECK_INT("event by address",
	          event_field("suppressed", "X@A.example", "class", buf, sizeof(buf)), 1);
	CHECK_STR("class by address", buf, "complaint");
	CHECK_INT("event by domain",
	          event_field("suppressed", "anyone@B.EXAMPLE", "class", buf, sizeof(buf)), 1);
	CHECK_STR("class by domain", buf, "manual");
	CHECK_INT("a|suppressed", minute_count("a|suppressed"), 2);
	/* A commit that conflicts on nothing: the id was never stored, the message is done. */
	struct call k = {0};
	CHECK_INT("promote return", queue_sched_promote(f->conn, &f->pol, on_promote, 0, &k), 0);
	call_wait(f, &k, "promote");
	CHECK_INT("nothing to deliver", rq_int("EXISTS pst:sched pst:wait:a.example"), 0);
}

static void test_domain_wide_and_expiry(void **state)
{
	struct fixture *f = *state;
	int64_t now = wall_ms();
	struct queue_suppression s[] = {
	    {"*@d.example", "manual", "", NULL, 0, now + 3600 * 1000},   /* live */
	    {"old@e.example", "hard", "", NULL, 0, now - 1000},          /* expired */
	    {"*@e.example", "manual", "", NULL, 0, now - 1000},          /* expired */
	    {"soon@e.example", "soft", "", NULL, 0, now + 3600 * 1000}}; /* live */
	put(f, USER, s, 4);
	static const struct queue_recipient rc[] = {
	    {"any@d.example", "d.example"},
	    {"old@e.example", "e.example"},
	    {"soon@e.example", "e.example"},
	    {"new@e.example", "e.example"},
	};
	commit(f, "00000000000000c1", USER, rc, 4);
	static const char *const want[] = {"suppressed", "queued", "suppressed", "queued"};
	for (size_t i = 0; i < 4; i++) {
		char field[8], buf[256], name[64];
		snprintf(field, sizeof(field), "%zu", i);
		hget("pst:rcpt:00000000000000c1", field, buf, sizeof(buf));
		snprintf(name, sizeof(name), "%s state", rc[i].address);
		buf[strcspn(buf, " ")] = '\0';
		CHECK_STR(name, buf, want[i]);
	}
	CHECK_INT("open", hget_int("pst:msg:00000000000000c1", "open"), 2);
	CHECK_INT("only e.example has an entry", rq_int("ZCARD pst:sched"), 1);

	/* Listing leaves out the expired entries and removes them from Redis. */
	struct queue_supp_list l;
	char err[256] = "";
	CHECK_INT("list", queue_admin_suppress_list(f->admin, USER, &l, err, sizeof(err)), 0);
	CHECK_INT("listed", l.count, 2);
	CHECK_STR("first (sorted)", l.entries[0].address, "*@d.example");
	CHECK_STR("second", l.entries[1].address, "soon@e.example");
	CHECK_INT("second expires", l.entries[1].expires_ms, now + 3600 * 1000);
	CHECK_STR("source none", l.entries[1].source, "-");
	queue_supp_list_free(&l);
	CHECK_INT("expired entries removed", rq_int("HLEN pst:supp:" USER), 2);
}

static void test_hard_bounce_and_complaint_suppress(void **state)
{
	struct fixture *f = *state;
	static const struct queue_recipient rc[] = {{"Gone@H.example", "h.example"},
	                                            {"fine@h.example", "h.example"}};
	commit(f, "00000000000000d1", USER, rc, 2);
	char reply[400];
	memset(reply, 'x', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	static const char head[] = "550 5.1.1 <Gone@H.example>: no such user\r\n";
	memcpy(reply, head, strlen(head));
	int64_t before = wall_ms();
	struct queue_outcome_result r =
	    attempt(f, "00000000000000d1", "h.example", QUEUE_OUTCOME_FAILED, reply, "hard");
	CHECK_INT("bounced", r.bounced, 2);
	CHECK_INT("outcome suppressed", r.suppressed, 2);
	char buf[512];
	hget("pst:supp:" USER, "gone@h.example", buf, sizeof(buf));
	char *end;
	long long created = strtoll(buf, &end, 10);
	CHECK_TRUE("created now", created >= before - 1000 && created <= wall_ms() + 1000);
	static const char want[] = " 0 hard 00000000000000d1 550 5.1.1 <Gone@H.example>: no such "
	                           "user  xxx";
	CHECK_TRUE("no expiry, class hard, source the message, reason the reply",
	           strncmp(end, want, strlen(want)) == 0);
	const char *reason = end + strlen(" 0 hard 00000000000000d1 ");
	CHECK_INT("reason cut at 200 bytes", strlen(reason), QUEUE_SUPP_REASON_MAX);
	CHECK_TRUE("control bytes made spaces", strpbrk(reason, "\r\n") == NULL);

	/* The next message to it: suppressed at once, the other recipient queued. */
	static const struct queue_recipient again[] = {{"gone@h.example", "h.example"},
	                                               {"new@h.example", "h.example"}};
	commit(f, "00000000000000d2", USER, again, 2);
	CHECK_STR("next message", hget("pst:rcpt:00000000000000d2", "0", buf, sizeof(buf)),
	          "suppressed 0 0 gone@h.example");

	/* A complaint in a reply suppresses too, even on a deferral. */
	static const struct queue_recipient c1[] = {{"angry@i.example", "i.example"}};
	commit(f, "00000000000000d3", USER, c1, 1);
	/* 4 + 195 bytes, then a 2-byte UTF-8 sequence across the 200-byte cut */
	char utf8[256] = "451 ";
	memset(utf8 + 4, 'c', 195);
	snprintf(utf8 + 199, sizeof(utf8) - 199, "\xc3\xa9 and more");
	r = attempt(f, "00000000000000d3", "i.example", QUEUE_OUTCOME_DEFERRED, utf8, "complaint");
	CHECK_INT("complaint suppressed", r.suppressed, 1);
	hget("pst:supp:" USER, "angry@i.example", buf, sizeof(buf));
	const char *why = strstr(buf, " 0 complaint 00000000000000d3 451 ");
	CHECK_TRUE("complaint entry", why != NULL);
	why += strlen(" 0 complaint 00000000000000d3 ");
	CHECK_INT("reason cut before the UTF-8 sequence, not inside it", strlen(why), 199);
}

static void test_soft_after_limit_and_block_never(void **state)
{
	struct fixture *f = *state;
	f->pol.backoff_first_ms = 1000;
	static const struct queue_recipient rc[] = {{"Full@S.example", "s.example"},
	                                            {"blocked@s.example", "s.example"}};
	char id[17], buf[256];
	for (unsigned m = 1; m <= 3; m++) {
		snprintf(id, sizeof(id), "00000000000000%x%x", 0xe, m);
		commit(f, id, USER, rc, 2);
		/* Retries of one message count once. */
		for (int t = 0; t < 2; t++) {
			struct queue_outcome_result r =
			    attempt(f, id, "s.example", QUEUE_OUTCOME_DEFERRED,
			            "452 4.2.2 Mailbox full", "soft");
			CHECK_INT("deferred", r.deferred, 2);
			char name[64];
			snprintf(name, sizeof(name), "message %u try %d: suppressed", m, t + 1);
			CHECK_INT(name, r.suppressed, m == 3 && t == 0 ? 2 : 0);
		}
		if (m < 3) {
			CHECK_INT("soft count", get_num("pst:soft:" USER ":full@s.example"), m);
			long long ttl = rq_int("PTTL pst:soft:" USER ":full@s.example");
			CHECK_TRUE("count expires within the window",
			           ttl > 0 && ttl <= f->pol.soft_window_ms);
			CHECK_INT("not suppressed yet",
			          rq_int("HEXISTS pst:supp:" USER " full@s.example"), 0);
		}
	}
	CHECK_TRUE("soft entry", strstr(hget("pst:supp:" USER, "full@s.example", buf, sizeof(buf)),
	                                " 0 soft 00000000000000e3 452 4.2.2 Mailbox full") != NULL);
	CHECK_INT("count ended", rq_int("EXISTS pst:soft:" USER ":full@s.example"), 0);

	/* Block and ignore never suppress nor count, on a failure or a deferral. */
	rq_ok("DEL pst:supp:" USER);
	static const char *const classes[] = {"block", "ignore", ""};
	for (unsigned m = 0; m < 3; m++) {
		snprintf(id, sizeof(id), "00000000000000f%x", m);
		commit(f, id, USER, rc, 2);
		attempt(f, id, "s.example", QUEUE_OUTCOME_DEFERRED, "421 4.7.0 blocked",
		        classes[m]);
		attempt(f, id, "s.example", QUEUE_OUTCOME_FAILED, "554 5.7.1 blocked", classes[m]);
	}
	CHECK_INT("block: no entry", rq_int("EXISTS pst:supp:" USER), 0);
	CHECK_INT("block: no count", rq_int("EXISTS pst:soft:" USER ":blocked@s.example"), 0);

	/* A hard-class 4xx counts as soft; a site down counts nothing; limit 0 never. */
	snprintf(id, sizeof(id), "%s", "0000000000000101");
	commit(f, id, USER, rc, 2);
	attempt(f, id, "s.example", QUEUE_OUTCOME_SITE_DOWN, "421 down", "soft");
	CHECK_INT("site down: no count", rq_int("EXISTS pst:soft:" USER ":full@s.example"), 0);
	attempt(f, id, "s.example", QUEUE_OUTCOME_DEFERRED, "450 4.1.1 unknown", "hard");
	CHECK_INT("hard 4xx: counted", get_num("pst:soft:" USER ":full@s.example"), 1);
	CHECK_INT("hard 4xx: not suppressed", rq_int("EXISTS pst:supp:" USER), 0);
	f->pol.soft_limit = 0;
	snprintf(id, sizeof(id), "%s", "0000000000000102");
	commit(f, id, USER, rc, 2);
	attempt(f, id, "s.example", QUEUE_OUTCOME_FAILED, "552 full", "soft");
	CHECK_INT("soft_limit 0: not counted", get_num("pst:soft:" USER ":full@s.example"), 1);
	CHECK_INT("soft_limit 0: not suppressed", rq_int("EXISTS pst:supp:" USER), 0);
}

static void test_suppress_add_complaint(void **state)
{
	struct fixture *f = *state;
	static const struct queue_recipient rc[] = {{"Reader@R.example", "r.example"},
	                                            {"other@r.example", "r.example"}};
	commit(f, "0000000000000c01", USER, rc, 2);
	struct queue_suppression s = {"Reader@R.example", "complaint", "abuse report",
	                              "0000000000000c01", 0,           0};
	struct call k = {0};
	CHECK_INT("queue_suppress_add",
	          queue_suppress_add(f->conn, &f->pol, USER, &s, on_done, 0, &k), 0);
	call_wait(f, &k, "suppress add");
	char buf[256];
	CHECK_TRUE("entry", strstr(hget("pst:supp:" USER, "reader@r.example", buf, sizeof(buf)),
	                           " 0 complaint 0000000000000c01 abuse report") != NULL);
	CHECK_INT("complained event",
	          event_field("complained", "Reader@R.example", "id", buf, sizeof(buf)), 1);
	CHECK_STR("event id", buf, "0000000000000c01");
	event_field("complained", "Reader@R.example", "campaign", buf, sizeof(buf));
	CHECK_STR("event campaign (message still queued)", buf, "spring");
	event_field("complained", "Reader@R.example", "class", buf, sizeof(buf));
	CHECK_STR("event class", buf, "complaint");
	CHECK_INT("a|complained", minute_count("a|complained"), 1);

	/* Without a message id: the entry, no event. Bad arguments: -1, no callback. */
	struct queue_suppression hard = {"x@q.example", "hard", "dsn 5.1.1", "bounce", 0, 0};
	k = (struct call){0};
	CHECK_INT("add hard", queue_suppress_add(f->conn, &f->pol, USER, &hard, NULL, 0, &k), 0);
	CHECK_INT("no event for a hard entry",
	          event_field("complained", "x@q.example", "id", buf, sizeof(buf)), 0);
	struct queue_suppression bad[] = {
	    {"no-at-sign", "hard", "", NULL, 0, 0},
	    {"x@q.example", "block", "", NULL, 0, 0},
	    {"x@q.example", "hard", "", "has space", 0, 0},
	    {"x@q.example", "hard", "", NULL, 0, -5},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT("bad entry refused",
		          queue_suppress_add(f->conn, &f->pol, USER, &bad[i], on_done, 0, &k), -1);
	CHECK_INT("empty user refused",
	          queue_suppress_add(f->conn, &f->pol, "", &hard, on_done, 0, &k), -1);
	run_for(f->base, 50);
	CHECK_INT("hard entry written", rq_int("HEXISTS pst:supp:" USER " x@q.example"), 1);
}

static void test_admin_put_del(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct queue_suppression good = {"a@x.example", "manual", "r", NULL, 0, 0};
	struct queue_suppression two[] = {good, {"bad", "manual", "", NULL, 0, 0}};
	CHECK_INT("a bad entry fails the call",
	          queue_admin_suppress_put(f->admin, USER, two, 2, err, sizeof(err)), -1);
	CHECK_STR("err names it", err, "entry 2: bad address");
	CHECK_INT("nothing written", rq_int("EXISTS pst:supp:" USER), 0);
	CHECK_INT("unknown user",
	          queue_admin_suppress_put(f->admin, "nobody", &good, 1, err, sizeof(err)), -1);
	CHECK_STR("unknown user err", err, "no such user");
	CHECK_INT("bad user name",
	          queue_admin_suppress_put(f->admin, "a b", &good, 1, err, sizeof(err)), -1);

	/* More than one step of entries. */
	enum { N = QUEUE_SUPP_PUT_STEP + 5 };
	static struct queue_suppression many[N];
	static char addrs[N][32];
	for (size_t i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "u%05zu@many.example", i);
		many[i] = (struct queue_suppression){addrs[i], "hard", "", "import", 0, 0};
	}
	put(f, USER, many, N);
	CHECK_INT("all written", rq_int("HLEN pst:supp:" USER), N);
	struct queue_supp_list l;
	CHECK_INT("list", queue_admin_suppress_list(f->admin, USER, &l, err, sizeof(err)), 0);
	CHECK_INT("listed", l.count, N);
	CHECK_STR("sorted first", l.entries[0].address, "u00000@many.example");
	CHECK_STR("sorted last", l.entries[N - 1].address, "u01004@many.example");
	queue_supp_list_free(&l);
	queue_supp_list_free(&l);

	rq_ok("SET pst:soft:" USER ":u00001@many.example 2");
	bool found = false;
	CHECK_INT("del",
	          queue_admin_suppress_del(f->admin, USER, "U00001@Many.example", &found, err,
	                                   sizeof(err)),
	          0);
	CHECK_TRUE("found", found);
	CHECK_INT("soft count gone too", rq_int("EXISTS pst:soft:" USER ":u00001@many.example"), 0);
	CHECK_INT("del again",
	          queue_admin_suppress_del(f->admin, USER, "u00001@many.example", &found, err,
	                                   sizeof(err)),
	          0);
	CHECK_TRUE("not found", !found);
	CHECK_INT("empty list of another user",
	          queue_admin_suppress_list(f->admin, "bob", &l, err, sizeof(err)), 0);
	CHECK_INT("empty", l.count, 0);
	queue_supp_list_free(&l);
}

/* ---- the CLI ---- */

struct ctl_run {
	int rc;
	char out[65536], err[8192];
};

static void ctl(struct fixture *f, struct ctl_run *r, const char *const *args)
{
	char *argv[16];
	int argc = 0;
	for (; args[argc] != NULL && argc < 15; argc++)
		argv[argc] = (char *)(uintptr_t)args[argc];
	argv[argc] = NULL;
	FILE *out = tmpfile(), *err = tmpfile();
	if (out == NULL || err == NULL)
		fail_msg("tmpfile: failed");
	r->rc = ctl_suppress_run(f->admin, argc, argv, out, err);
	check_capture(out, r->out, sizeof(r->out));
	check_capture(err, r->err, sizeof(r->err));
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0)
		fail_msg("writing %s: failed", path);
}

static void test_ctl(void **state)
{
	struct fixture *f = *state;
	static struct ctl_run r;
	ctl(f, &r,
	    (const char *[]){"add", USER, "Ann@A.example", "--reason", "asked, \"twice\"",
	                     "--expires", "30", NULL});
	CHECK_INT("add rc", r.rc, 0);
	CHECK_STR("add out", r.out, "Ann@A.example suppressed for alice\n");
	ctl(f, &r, (const char *[]){"add", USER, "*@Spam.example", NULL});
	CHECK_INT("add domain rc", r.rc, 0);
	ctl(f, &r, (const char *[]){"add", USER, "not an address", NULL});
	CHECK_INT("add bad address rc", r.rc, 2);
	ctl(f, &r, (const char *[]){"add", USER, "a@b.example", "--expires", "0", NULL});
	CHECK_INT("add --expires 0 rc", r.rc, 2);
	ctl(f, &r, (const char *[]){"add", "nobody", "a@b.example", NULL});
	CHECK_INT("add unknown user rc", r.rc, 1);
	CHECK_TRUE("add unknown user err", strstr(r.err, "no such user") != NULL);

	ctl(f, &r, (const char *[]){"list", USER, NULL});
	CHECK_INT("list rc", r.rc, 0);
	CHECK_TRUE("list line 1", strncmp(r.out, "*@spam.example class=manual since=", 34) == 0);
	CHECK_TRUE("list expiry",
	           strstr(r.out, "ann@a.example class=manual since=") != NULL &&
	               strstr(r.out, " source=admin reason=\"asked, \\\"twice\\\"\"\n") != NULL);
	CHECK_TRUE("list never", strstr(r.out, "expires=never source=admin reason=\"\"\n") != NULL);
	CHECK_TRUE("list count", strstr(r.out, "entries=2\n") != NULL);

	ctl(f, &r, (const char *[]){"export", USER, NULL});
	CHECK_INT("export rc", r.rc, 0);
	CHECK_TRUE("export header",
	           strncmp(r.out, "address,class,reason,source,created,expires\n", 44) == 0);
	CHECK_TRUE("export quoting",
	           strstr(r.out, "\nann@a.example,manual,\"asked, \"\"twice\"\"\",admin,") != NULL);
	static char exported[sizeof(r.out)];
	snprintf(exported, sizeof(exported), "%s", r.out);

	/* Round trip into another user. */
	char path[] = "/tmp/pst-supp-XXXXXX";
	int fd = mkstemp(path);
	CHECK_TRUE("mkstemp", fd >= 0);
	close(fd);
	write_file(path, exported);
	ctl(f, &r, (const char *[]){"import", "bob", path, NULL});
	CHECK_INT("import rc", r.rc, 0);
	CHECK_TRUE("import out", strstr(r.out, ": 2 entries imported for bob\n") != NULL);
	ctl(f, &r, (const char *[]){"export", "bob", NULL});
	CHECK_STR("round trip", r.out, exported);

	/* Bad lines: each reported, nothing imported. */
	write_file(path, "address,class,reason,source,created,expires\n"
	                 "ok@c.example,,,,,\n"
	                 "bad address,hard,,,,\n"
	                 "x@c.example,block,,,,\n"
	                 "y@c.example,hard,\"open,,,,\n"
	                 "z@c.example,hard,,,2024-02-30T00:00:00Z,\n"
	                 "w@c.example,hard,,,\n"
	                 "\n"
	                 "v@c.example,hard,r,src,2024-05-01T12:00:00Z,\r\n");
	ctl(f, &r, (const char *[]){"import", "bob", path, NULL});
	CHECK_INT("bad import rc", r.rc, 1);
	char want[256];
	static const int bad_lines[] = {3, 4, 5, 6, 7};
	for (size_t i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
		snprintf(want, sizeof(want), "%s:%d: ", path, bad_lines[i]);
		CHECK_TRUE(want, strstr(r.err, want) != NULL);
	}
	snprintf(want, sizeof(want), "%s:2: ", path);
	CHECK_TRUE("good line not reported", strstr(r.err, want) == NULL);
	CHECK_TRUE("nothing imported", strstr(r.err, "5 bad lines, nothing imported") != NULL);
	CHECK_INT("bob's list unchanged", rq_int("HLEN pst:supp:bob"), 2);
	CHECK_INT("ok@ not imported", rq_int("HEXISTS pst:supp:bob ok@c.example"), 0);

	write_file(path, "address,class\nx@y.example,hard\n");
	ctl(f, &r, (const char *[]){"import", "bob", path, NULL});
	CHECK_INT("wrong header rc", r.rc, 1);
	snprintf(want, sizeof(want), "%s:1: want the header", path);
	CHECK_TRUE("wrong header", strstr(r.err, want) != NULL);

	char longline[CTL_SUPPRESS_LINE_MAX + 200];
	int n = snprintf(longline, sizeof(longline),
	                 "address,class,reason,source,created,"
	                 "expires\nl@y.example,hard,");
	memset(longline + n, 'r', sizeof(longline) - (size_t)n - 3);
	memcpy(longline + sizeof(longline) - 3, ",\n", 3);
	write_file(path, longline);
	ctl(f, &r, (const char *[]){"import", "bob", path, NULL});
	CHECK_INT("long line rc", r.rc, 1);
	snprintf(want, sizeof(want), "%s:2: line too long", path);
	CHECK_TRUE("long line", strstr(r.err, want) != NULL);

	write_file(path, "address,class,reason,source,created,expires\n"
	                 "v@c.example,hard,r,src,2024-05-01T12:00:00Z,2030-01-01T00:00:00Z\r\n");
	ctl(f, &r, (const char *[]){"import", "bob", path, NULL});
	CHECK_INT("good import rc", r.rc, 0);
	char buf[256];
	CHECK_STR("imported value", hget("pst:supp:bob", "v@c.example", buf, sizeof(buf)),
	          "1714564800000 1893456000000 hard src r");
	unlink(path);
	ctl(f, &r, (const char *[]){"import", "bob", path, NULL});
	CHECK_INT("missing file rc", r.rc, 1);

	ctl(f, &r, (const char *[]){"del", USER, "ANN@a.example", NULL});
	CHECK_INT("del rc", r.rc, 0);
	CHECK_STR("del out", r.out, "ANN@a.example removed from alice's list\n");
	ctl(f, &r, (const char *[]){"del", USER, "ann@a.example", NULL});
	CHECK_INT("del again rc", r.rc, 1);
	ctl(f, &r, (const char *[]){"frobnicate", USER, NULL});
	CHECK_INT("unknown subcommand rc", r.rc, 2);
	ctl(f, &r, (const char *[]){"list", "bad user", NULL});
	CHECK_INT("bad user rc", r.rc, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pure),
	    cmocka_unit_test_setup_teardown(test_commit_with_suppressed_recipient, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_all_suppressed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domain_wide_and_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hard_bounce_and_complaint_suppress, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_soft_after_limit_and_block_never, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_suppress_add_complaint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_put_del, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ctl, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
