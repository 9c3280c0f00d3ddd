/*
 * test_queue.c: unit tests of queue/ against a real redis-server, started on a unix socket in
 * a mkdtemp folder with the durable settings (appendonly yes, appendfsync always) and stopped
 * by its pid at the end. Covers address parsing, the commit schema byte for byte, conflicts,
 * exactly-once callbacks, timeouts (SIGSTOP), loss and reconnection (SIGKILL and restart),
 * OOM, NOSCRIPT, AUTH, users and their failure counters, allowed networks, the admin
 * functions and their output formats, and the memory a queued 5 KB message costs.
 * Every wait is bounded; mismatches print "name: got X, want Y".
 */
#include "queue/queue.h"
#include "tests/unit/lib_redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include <stddef.h>
#include <stdint.h>

#define TIMEOUT_MS 300

/* ---- event-loop helpers ---- */

static bool cond_ready(void *arg)
{
	return queue_conn_ready(arg);
}

struct waiter {
	int calls;
	enum queue_result res;
	uint64_t ref;
	uint64_t at_ms;
	int want_calls;
	/* user lookup */
	struct queue_user_record rec;
	char pwhash[128], domains[256], only_nets[256];
	/* allowed networks, "cidr user domains" lines sorted */
	char nets[1024];
	size_t nets_count;
	/* for the free-inside-callback test */
	struct queue_conn **free_in_cb;
};

static bool cond_calls(void *arg)
{
	struct waiter *w = arg;
	return w->calls >= w->want_calls;
}

static void on_done(enum queue_result res, uint64_t ref, void *arg)
{
	struct waiter *w = arg;
	w->calls++;
	w->res = res;
	w->ref = ref;
	w->at_ms = now_ms();
	if (w->free_in_cb != NULL && *w->free_in_cb != NULL) {
		struct queue_conn *c = *w->free_in_cb;
		*w->free_in_cb = NULL;
		queue_conn_free(c);
	}
}

static void on_user(enum queue_result res, const struct queue_user_record *rec, uint64_t ref,
                    void *arg)
{
	struct waiter *w = arg;
	w->calls++;
	w->res = res;
	w->ref = ref;
	if (rec == NULL)
		fail_msg("user callback: got rec NULL, want a record");
	w->rec = *rec;
	snprintf(w->pwhash, sizeof(w->pwhash), "%s", rec->pwhash);
	snprintf(w->domains, sizeof(w->domains), "%s", rec->domains);
	snprintf(w->only_nets, sizeof(w->only_nets), "%s", rec->only_nets);
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void on_nets(enum queue_result res, const struct queue_allownet *nets, size_t count,
                    uint64_t ref, void *arg)
{
	struct waiter *w = arg;
	w->calls++;
	w->res = res;
	w->ref = ref;
	w->nets_count = count;
	char lines[16][128];
	const char *sorted[16];
	size_t n = count < 16 ? count : 16;
	for (size_t i = 0; i < n; i++) {
		snprintf(lines[i], sizeof(lines[i]), "%s %s %s", nets[i].cidr, nets[i].user,
		         nets[i].domains);
		sorted[i] = lines[i];
	}
	qsort(sorted, n, sizeof(sorted[0]), line_cmp);
	w->nets[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t used = strlen(w->nets);
		snprintf(w->nets + used, sizeof(w->nets) - used, "%s\n", sorted[i]);
	}
}

/* ---- fixtures ---- */

struct fixture {
	struct event_base *base;
	struct queue_conn *conn;
	struct queue_admin *admin;
};

static struct queue_conn *conn_open(struct event_base *base, const char *password, int timeout)
{
	struct queue_settings s = {g_redis.addr, password, timeout};
	struct queue_conn *c = queue_conn_new(base, &s);
	if (c == NULL)
		fail_msg("queue_conn_new: got NULL, want a connection");
	return c;
}

static struct queue_admin *admin_open(void)
{
	struct queue_settings s = {g_redis.addr, NULL, 2000};
	char err[256];
	struct queue_admin *a = queue_admin_connect(&s, err, sizeof(err));
	if (a == NULL)
		fail_msg("queue_admin_connect: %s", err);
	return a;
}

static int group_setup(void **state)
{
	(void)state;
	return test_redis_group_start("queue");
}

static int group_teardown(void **state)
{
	(void)state;
	return test_redis_group_stop();
}

/* Each test starts on an empty, running, durable server with a ready connection. */
static int setup(void **state)
{
	static const char *const reset[] = {"CONFIG SET maxmemory 0",
	                                    "CONFIG SET appendfsync always",
	                                    "CONFIG SET maxmemory-policy noeviction",
	                                    "CONFIG SET port 0",
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
	struct queue_settings s = {g_redis.addr, NULL, TIMEOUT_MS};
	f->conn = queue_conn_new(f->base, &s);
	if (f->conn == NULL || !run_until(f->base, cond_ready, f->conn, 3000))
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

/* ---- messages ---- */

static const struct queue_recipient rcpts3[] = {
    {"ann@a.example", "a.example"},
    {"bob@b.example", "b.example"},
    {"cat@a.example", "a.example"},
};

static struct queue_message message(const char *id, const char *body, size_t len,
                                    const struct queue_recipient *rcpts, size_t n)
{
	struct queue_message m = {
	    .id = id,
	    .sender = "news@sender.example",
	    .user = "alice",
	    .client_ip = "192.0.2.7",
	    .helo = "app.sender.example",
	    .received_ms = 1700000000123,
	    .body = body,
	    .body_len = len,
	    .rcpts = rcpts,
	    .nrcpts = n,
	    .smtputf8 = true,
	    .body_8bit = true,
	};
	return m;
}

/* Commits m and waits for its callback; returns the result. */
static enum queue_result commit_wait(struct fixture *f, const struct queue_message *m)
{
	struct waiter w = {.want_calls = 1};
	int rc = queue_commit(f->conn, m, on_done, 42, &w);
	CHECK_INT("queue_commit return", rc, 0);
	if (!run_until(f->base, cond_calls, &w, 5000))
		fail_msg("commit callback: got no call within 5 s, want one");
	CHECK_INT("commit callback ref", w.ref, 42);
	return w.res;
}

/* A body of len bytes: CRLF lines, 8-bit bytes, no NUL. */
static char *body_make(size_t len)
{
	char *b = malloc(len + 1);
	if (b == NULL)
		fail_msg("malloc: failed");
	static const char head[] = "Subject: caf\xc3\xa9\r\nFrom: a@sender.example\r\n\r\n";
	for (size_t i = 0; i < len; i++) {
		if (i < sizeof(head) - 1)
			b[i] = head[i];
		else if (i % 78 == 76)
			b[i] = '\r';
		else if (i % 78 == 77)
			b[i] = '\n';
		else
			b[i] = (char)(1 + (i * 37) % 255); /* 0x01..0xff, never NUL */
	}
	b[len] = '\0';
	return b;
}

/* ---- tests ---- */

static void test_address_parse(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		bool is_unix;
		const char *where; /* path or host */
		int port;
	} cases[] = {
	    {"unix:/run/redis.sock", 0, true, "/run/redis.sock", 0},
	    {"127.0.0.1:6379", 0, false, "127.0.0.1", 6379},
	    {"localhost:1", 0, false, "localhost", 1},
	    {"[::1]:65535", 0, false, "::1", 65535},
	    {"", -1, false, "", 0},
	    {"unix:", -1, false, "", 0},
	    {"127.0.0.1", -1, false, "", 0},
	    {"127.0.0.1:", -1, false, "", 0},
	    {"127.0.0.1:0", -1, false, "", 0},
	    {"127.0.0.1:65536", -1, false, "", 0},
	    {"127.0.0.1:+80", -1, false, "", 0},
	    {"127.0.0.1:80x", -1, false, "", 0},
	    {"127.0.0.1:080808", -1, false, "", 0},
	    {" 127.0.0.1:80", -1, false, "", 0},
	    {"127.0.0.1:80 ", -1, false, "", 0},
	    {"::1:6379", -1, false, "", 0},
	    {"[::1:6379", -1, false, "", 0},
	    {"[zz]:6379", -1, false, "", 0},
	    {"[]:6379", -1, false, "", 0},
	    {":6379", -1, false, "", 0},
	    {"ho/st:6379", -1, false, "", 0},
	    {"unix:/a\tb", -1, false, "", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct queue_address a;
		char err[128] = "";
		char name[96];
		snprintf(name, sizeof(name), "queue_address_parse(\"%s\")", cases[i].in);
		int rc = queue_address_parse(cases[i].in, &a, err, sizeof(err));
		CHECK_INT(name, rc, cases[i].rc);
		if (rc == -1) {
			CHECK_TRUE(name, err[0] != '\0');
			continue;
		}
		CHECK_INT(name, a.is_unix, cases[i].is_unix);
		CHECK_STR(name, a.is_unix ? a.path : a.host, cases[i].where);
		CHECK_INT(name, a.port, cases[i].port);
	}
	char longpath[200] = "unix:/";
	memset(longpath + 6, 'x', 150);
	longpath[156] = '\0';
	struct queue_address a;
	char err[128];
	CHECK_INT("queue_address_parse(long path)", queue_address_parse(longpath, &a, err, 128),
	          -1);
	CHECK_STR("queue_result_name(QUEUE_FULL)", queue_result_name(QUEUE_FULL), "full");
}

static void test_conn_new_bad(void **state)
{
	struct fixture *f = *state;
	struct queue_settings bad = {"redis:6379x", NULL, 100};
	CHECK_TRUE("queue_conn_new(bad address) is NULL", queue_conn_new(f->base, &bad) == NULL);
	struct queue_settings zero = {g_redis.addr, NULL, 0};
	CHECK_TRUE("queue_conn_new(timeout 0) is NULL", queue_conn_new(f->base, &zero) == NULL);
	char err[128] = "";
	CHECK_TRUE("queue_admin_connect(bad address) is NULL",
	           queue_admin_connect(&bad, err, sizeof(err)) == NULL);
	CHECK_TRUE("queue_admin_connect(bad address) err", err[0] != '\0');
	queue_conn_free(NULL);
	queue_admin_free(NULL);
}

static void test_commit_schema(void **state)
{
	struct fixture *f = *state;
	const size_t len = 9000;
	char *body = body_make(len);
	struct queue_message m = message("0123456789abcdef", body, len, rcpts3, 3);
	int64_t before = wall_ms();
	CHECK_STR("commit result", queue_result_name(commit_wait(f, &m)), "ok");
	int64_t after = wall_ms();
	CHECK_TRUE("last latency > 0", queue_conn_last_latency_us(f->conn) > 0);

	/* Exactly the schema's keys: 6, the event stream and the minute, hour and day counters */
	redisReply *keys = rq("KEYS pst:*");
	CHECK_INT("number of pst:* keys", keys->elements, 10);
	freeReplyObject(keys);
	redisReply *ev = rq("XLEN pst:events");
	CHECK_INT("received events (one per recipient)", ev->integer, 3);
	freeReplyObject(ev);
	redisReply *cnt = rq("KEYS pst:cnt:*");
	CHECK_INT("counter buckets", cnt->elements, 3);
	for (size_t i = 0; i < cnt->elements; i++) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "HGET %s a|received", cnt->element[i]->str);
		redisReply *v = rq(cmd);
		CHECK_STR("a|received in each bucket", v->str ? v->str : "(nil)", "3");
		freeReplyObject(v);
	}
	freeReplyObject(cnt);

	redisReply *h = rq("HGETALL pst:msg:0123456789abcdef");
	CHECK_INT("pst:msg fields", h->elements / 2, 10);
	CHECK_STR("msg sender", hash_field(h, "sender"), "news@sender.example");
	CHECK_STR("msg user", hash_field(h, "user"), "alice");
	CHECK_STR("msg client", hash_field(h, "client"), "192.0.2.7");
	CHECK_STR("msg helo", hash_field(h, "helo"), "app.sender.example");
	CHECK_STR("msg received", hash_field(h, "received"), "1700000000123");
	CHECK_STR("msg size", hash_field(h, "size"), "9000");
	CHECK_STR("msg rcpts", hash_field(h, "rcpts"), "3");
	CHECK_STR("msg open", hash_field(h, "open"), "3");
	CHECK_STR("msg utf8", hash_field(h, "utf8"), "1");
	CHECK_STR("msg 8bit", hash_field(h, "8bit"), "1");
	freeReplyObject(h);

	redisReply *b = rq("GET pst:body:0123456789abcdef");
	CHECK_INT("body type", b->type, REDIS_REPLY_STRING);
	CHECK_INT("body length", b->len, len);
	CHECK_TRUE("body bytes equal", memcmp(b->str, body, len) == 0);
	freeReplyObject(b);

	/* Recipients: "queued 0 <now_ms> <address>", now from Redis' clock. */
	redisReply *r = rq("HGETALL pst:rcpt:0123456789abcdef");
	CHECK_INT("pst:rcpt fields", r->elements / 2, 3);
	long long due = 0;
	for (size_t i = 0; i < 3; i++) {
		char field[8], want_prefix[16], name[32];
		snprintf(field, sizeof(field), "%zu", i);
		snprintf(name, sizeof(name), "rcpt %zu", i);
		const char *v = hash_field(r, field);
		CHECK_TRUE(name, v != NULL);
		snprintf(want_prefix, sizeof(want_prefix), "queued 0 ");
		CHECK_TRUE(name, strncmp(v, want_prefix, strlen(want_prefix)) == 0);
		char *end;
		long long t = strtoll(v + strlen(want_prefix), &end, 10);
		CHECK_TRUE(name, *end == ' ');
		CHECK_STR(name, end + 1, rcpts3[i].address);
		CHECK_TRUE("due time within the commit", t >= before - 1000 && t <= after + 1000);
		if (i == 0)
			due = t;
		CHECK_INT("same due time for every recipient", t, due);
	}
	freeReplyObject(r);

	/* One delivery entry per message and domain, due now. */
	redisReply *z = rq("ZRANGE pst:sched 0 -1 WITHSCORES");
	CHECK_INT("pst:sched entries", z->elements / 2, 2);
	CHECK_STR("sched 0", z->element[0]->str, "0123456789abcdef:a.example");
	CHECK_STR("sched 1", z->element[2]->str, "0123456789abcdef:b.example");
	CHECK_INT("sched 0 score", strtoll(z->element[1]->str, NULL, 10), due);
	CHECK_INT("sched 1 score", strtoll(z->element[3]->str, NULL, 10), due);
	freeReplyObject(z);

	redisReply *ms = rq("ZSCORE pst:msgs 0123456789abcdef");
	CHECK_STR("pst:msgs score", ms->str, "1700000000123");
	freeReplyObject(ms);

	redisReply *st = rq("HGETALL pst:stat");
	CHECK_INT("pst:stat fields", st->elements / 2, 4);
	CHECK_STR("messages_queued", hash_field(st, "messages_queued"), "1");
	CHECK_STR("recipients_queued", hash_field(st, "recipients_queued"), "3");
	CHECK_STR("messages_received_total", hash_field(st, "messages_received_total"), "1");
	CHECK_STR("recipients_received_total", hash_field(st, "recipients_received_total"), "3");
	freeReplyObject(st);

	/* The same bytes through the admin side. */
	f->admin = admin_open();
	char *got = NULL;
	size_t got_len = 0;
	char err[128];
	CHECK_INT("queue_admin_body", queue_admin_body(f->admin, m.id, &got, &got_len, err, 128),
	          0);
	CHECK_INT("queue_admin_body length", got_len, len);
	CHECK_TRUE("queue_admin_body bytes equal", memcmp(got, body, len) == 0);
	free(got);
	free(body);
}

static void test_commit_flags_and_null_sender(void **state)
{
	struct fixture *f = *state;
	static const struct queue_recipient one[] = {{"\"j doe\"@c.example", "c.example"}};
	struct queue_message m = message("00000000000000aa", "x\r\n", 3, one, 1);
	m.sender = "";
	m.smtputf8 = false;
	m.body_8bit = false;
	CHECK_STR("commit result", queue_result_name(commit_wait(f, &m)), "ok");
	redisReply *h = rq("HGETALL pst:msg:00000000000000aa");
	CHECK_STR("msg sender", hash_field(h, "sender"), "");
	CHECK_STR("msg utf8", hash_field(h, "utf8"), "0");
	CHECK_STR("msg 8bit", hash_field(h, "8bit"), "0");
	freeReplyObject(h);
	redisReply *v = rq("HGET pst:rcpt:00000000000000aa 0");
	const char *sp = strchr(v->str + strlen("queued 0 "), ' ');
	CHECK_STR("address with a space", sp != NULL ? sp + 1 : NULL, "\"j doe\"@c.example");
	freeReplyObject(v);
}

static void test_commit_conflict(void **state)
{
	struct fixture *f = *state;
	struct queue_message m = message("1111111111111111", "first\r\n", 7, rcpts3, 3);
	CHECK_STR("first commit", queue_result_name(commit_wait(f, &m)), "ok");
	struct queue_message m2 = message("1111111111111111", "second\r\n", 8, rcpts3, 1);
	CHECK_STR("second commit, same id", queue_result_name(commit_wait(f, &m2)), "conflict");
	redisReply *b = rq("GET pst:body:1111111111111111");
	CHECK_STR("body after conflict", b->str, "first\r\n");
	freeReplyObject(b);
	redisReply *st = rq("HGET pst:stat messages_received_total");
	CHECK_STR("messages_received_total after conflict", st->str, "1");
	freeReplyObject(st);
	CHECK_INT("rcpt fields after conflict", rq_int("HLEN pst:rcpt:1111111111111111"), 3);
	/* A body key left alone (say by a crash of a later version) conflicts as well. */
	rq_ok("SET pst:body:2222222222222222 stray");
	struct queue_message m3 = message("2222222222222222", "x", 1, rcpts3, 1);
	CHECK_STR("commit over a stray body", queue_result_name(commit_wait(f, &m3)), "conflict");
	CHECK_INT("no msg key after conflict", rq_int("EXISTS pst:msg:2222222222222222"), 0);
}

static void test_commit_exactly_once(void **state)
{
	struct fixture *f = *state;
	struct waiter w[5] = {0};
	char ids[5][17];
	for (int i = 0; i < 5; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%016x", 0x100 + i);
		struct queue_message m = message(ids[i], "hello\r\n", 7, rcpts3, 2);
		CHECK_INT("queue_commit return",
		          queue_commit(f->conn, &m, on_done, (uint64_t)i, &w[i]), 0);
	}
	struct waiter *last = &w[4];
	last->want_calls = 1;
	CHECK_TRUE("five callbacks", run_until(f->base, cond_calls, last, 3000));
	run_for(f->base, 2 * TIMEOUT_MS); /* past every timer: nothing may fire again */
	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "callback %d calls", i);
		CHECK_INT(name, w[i].calls, 1);
		CHECK_INT("callback ref", w[i].ref, i);
		CHECK_STR("callback result", queue_result_name(w[i].res), "ok");
	}
	CHECK_INT("callbacks in order", w[0].at_ms <= w[4].at_ms, 1);
}

static void test_commit_invalid(void **state)
{
	struct fixture *f = *state;
	struct waiter w = {0};
	static const char *const bad_ids[] = {"0123456789ABCDEF", "0123", "0123456789abcdefa",
	                                      "0123456789abcdeg", ""};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		struct queue_message m = message(bad_ids[i], "x", 1, rcpts3, 1);
		char name[64];
		snprintf(name, sizeof(name), "commit with id \"%s\"", bad_ids[i]);
		CHECK_INT(name, queue_commit(f->conn, &m, on_done, 0, &w), -1);
	}
	struct queue_message m = message("3333333333333333", "x", 1, rcpts3, 0);
	CHECK_INT("commit with 0 recipients", queue_commit(f->conn, &m, on_done, 0, &w), -1);
	static const struct queue_recipient nodomain[] = {{"a@", ""}};
	m = message("3333333333333333", "x", 1, nodomain, 1);
	CHECK_INT("commit with an empty domain", queue_commit(f->conn, &m, on_done, 0, &w), -1);
	m = message("3333333333333333", "x", 1, rcpts3, 1);
	m.helo = NULL;
	CHECK_INT("commit with helo NULL", queue_commit(f->conn, &m, on_done, 0, &w), -1);
	m.helo = "h";
	CHECK_INT("commit with cb NULL", queue_commit(f->conn, &m, NULL, 0, &w), -1);

	/* Not connected: -1 at once, no callback. */
	struct queue_settings s = {"unix:/nonexistent/redis.sock", NULL, TIMEOUT_MS};
	struct queue_conn *down = queue_conn_new(f->base, &s);
	CHECK_TRUE("queue_conn_new(no server) is not NULL", down != NULL);
	CHECK_INT("ready with no server", queue_conn_ready(down), 0);
	CHECK_INT("commit with no server", queue_commit(down, &m, on_done, 0, &w), -1);
	run_for(f->base, 250); /* a few reconnect attempts */
	CHECK_TRUE("last error names the connect",
	           strstr(queue_conn_last_error(down), "onnect") != NULL);
	queue_conn_free(down);
	run_for(f->base, 50);
	CHECK_INT("callbacks for refused requests", w.calls, 0);
}

static void test_noscript_retry(void **state)
{
	struct fixture *f = *state;
	rq_ok("SCRIPT FLUSH");
	struct queue_message m = message("4444444444444444", "x\r\n", 3, rcpts3, 1);
	CHECK_STR("commit after SCRIPT FLUSH", queue_result_name(commit_wait(f, &m)), "ok");
	CHECK_INT("msg after SCRIPT FLUSH", rq_int("EXISTS pst:msg:4444444444444444"), 1);
	/* The EVAL fallback cached the script: the next commit runs by SHA. */
	struct queue_message m2 = message("4444444444444445", "x\r\n", 3, rcpts3, 1);
	CHECK_STR("second commit", queue_result_name(commit_wait(f, &m2)), "ok");
	rq_ok("SCRIPT FLUSH");
	struct waiter w = {.want_calls = 1};
	CHECK_INT("lookup after SCRIPT FLUSH",
	          queue_user_lookup(f->conn, "x", "1.2.3.4", on_user, 5, &w), 0);
	CHECK_TRUE("lookup callback", run_until(f->base, cond_calls, &w, 3000));
	CHECK_STR("lookup result", queue_result_name(w.res), "ok");
}

static void test_oom_full(void **state)
{
	struct fixture *f = *state;
	const size_t len = 2 * 1024 * 1024;
	char *body = body_make(len);
	rq_ok("CONFIG SET maxmemory 1mb");
	enum queue_result res = QUEUE_OK;
	int ok = 0;
	char id[17] = "";
	for (int i = 0; i < 3 && res == QUEUE_OK; i++) {
		snprintf(id, sizeof(id), "%016x", 0x5000 + i);
		struct queue_message m = message(id, body, len, rcpts3, 3);
		res = commit_wait(f, &m);
		ok += res == QUEUE_OK;
	}
	CHECK_STR("commit over maxmemory", queue_result_name(res), "full");
	CHECK_TRUE("at most one commit before full", ok <= 1);
	CHECK_TRUE("last error names OOM", strstr(queue_conn_last_error(f->conn), "OOM") != NULL);
	rq_ok("CONFIG SET maxmemory 0");
	/* All or nothing: the refused message left no key. */
	CHECK_INT("msg of the refused commit",
	          rq_int("EXISTS pst:msg:%s pst:body:%s pst:rcpt:%s", id, id, id), 0);
	redisReply *z = rq("ZSCORE pst:msgs %s", id);
	CHECK_INT("pst:msgs entry of the refused commit", z->type, REDIS_REPLY_NIL);
	freeReplyObject(z);
	redisReply *st = rq("HGET pst:stat messages_queued");
	CHECK_INT("messages_queued after the refusal",
	          st->type == REDIS_REPLY_NIL ? 0 : strtoll(st->str, NULL, 10), ok);
	freeReplyObject(st);
	struct queue_message m = message("5555555555555555", body, 1000, rcpts3, 1);
	CHECK_STR("commit after maxmemory 0", queue_result_name(commit_wait(f, &m)), "ok");
	free(body);
}

static void test_timeout_sigstop(void **state)
{
	struct fixture *f = *state;
	struct queue_message m1 = message("6666666666666661", "a\r\n", 3, rcpts3, 1);
	struct queue_message m2 = message("6666666666666662", "b\r\n", 3, rcpts3, 1);
	struct waiter w1 = {.want_calls = 1}, w2 = {.want_calls = 1};
	CHECK_INT("SIGSTOP", kill(g_redis.pid, SIGSTOP), 0);
	uint64_t start = now_ms();
	CHECK_INT("commit 1 while stopped", queue_commit(f->conn, &m1, on_done, 1, &w1), 0);
	CHECK_INT("commit 2 while stopped", queue_commit(f->conn, &m2, on_done, 2, &w2), 0);
	bool answered = run_until(f->base, cond_calls, &w1, TIMEOUT_MS + 1500);
	uint64_t took = now_ms() - start;
	if (!answered) {
		(void)kill(g_redis.pid, SIGCONT);
		fail_msg("commit while stopped: got no callback within %d ms, want one",
		         TIMEOUT_MS + 1500);
	}
	CHECK_STR("commit 1 while stopped", queue_result_name(w1.res), "unavailable");
	CHECK_STR("commit 2 while stopped", queue_result_name(w2.res), "unavailable");
	CHECK_INT("commit 2 answered with commit 1", w2.calls, 1);
	CHECK_TRUE("answered after the timeout", took + 20 >= TIMEOUT_MS);
	CHECK_TRUE("answered within timeout + 500 ms", took <= TIMEOUT_MS + 500);
	CHECK_INT("ready after a timeout", queue_conn_ready(f->conn), 0);
	CHECK_INT("commit while down", queue_commit(f->conn, &m1, on_done, 3, &w1), -1);
	run_for(f->base, 700); /* reconnects whose handshakes time out too */
	CHECK_INT("SIGCONT", kill(g_redis.pid, SIGCONT), 0);
	CHECK_TRUE("ready again after SIGCONT", run_until(f->base, cond_ready, f->conn, 5000));
	run_for(f->base, 100);
	CHECK_INT("commit 1 calls after SIGCONT", w1.calls, 1);
	CHECK_INT("commit 2 calls after SIGCONT", w2.calls, 1);
	struct queue_message m3 = message("6666666666666663", "c\r\n", 3, rcpts3, 1);
	CHECK_STR("commit after SIGCONT", queue_result_name(commit_wait(f, &m3)), "ok");
	/* A timed-out commit may still have run once Redis read it: 451 then, and the client's
	 * retry makes a duplicate, which is the RFC 1047 window the design accepts. */
	print_message("timed-out commits that Redis ran after SIGCONT: %lld of 2\n",
	              rq_int("EXISTS pst:msg:6666666666666661 pst:msg:6666666666666662"));
}

static bool cond_none_ready(void *arg)
{
	struct queue_conn **c = arg;
	return !queue_conn_ready(c[0]) && !queue_conn_ready(c[1]) && !queue_conn_ready(c[2]);
}

static bool cond_all_ready(void *arg)
{
	struct queue_conn **c = arg;
	return queue_conn_ready(c[0]) && queue_conn_ready(c[1]) && queue_conn_ready(c[2]);
}

static void test_killed_and_restarted(void **state)
{
	struct fixture *f = *state;
	struct queue_message m1 = message("7777777777777771", "a\r\n", 3, rcpts3, 1);
	CHECK_STR("commit before the kill", queue_result_name(commit_wait(f, &m1)), "ok");
	/* conns[0] has a request in flight at the kill, conns[1] is idle, conns[2] is in its
	 * handshake (connected while Redis was stopped). */
	struct queue_conn *conns[3] = {f->conn, conn_open(f->base, NULL, TIMEOUT_MS), NULL};
	CHECK_TRUE("idle conn ready", run_until(f->base, cond_ready, conns[1], 3000));
	ctx_drop();
	CHECK_INT("SIGSTOP", kill(g_redis.pid, SIGSTOP), 0);
	conns[2] = conn_open(f->base, NULL, 5000);
	run_for(f->base, 50);
	CHECK_INT("conn in handshake is not ready", queue_conn_ready(conns[2]), 0);
	CHECK_INT("SIGKILL", kill(g_redis.pid, SIGKILL), 0);
	int status;
	CHECK_INT("waitpid", waitpid(g_redis.pid, &status, 0), g_redis.pid);
	g_redis.pid = -1;
	/* Sent before the loop noticed: -1 or UNAVAILABLE, never OK. */
	struct queue_message m2 = message("7777777777777772", "b\r\n", 3, rcpts3, 1);
	struct waiter w = {.want_calls = 1};
	int rc = queue_commit(f->conn, &m2, on_done, 2, &w);
	if (rc == 0) {
		CHECK_TRUE("callback after the kill", run_until(f->base, cond_calls, &w, 2000));
		CHECK_STR("commit after the kill", queue_result_name(w.res), "unavailable");
	} else {
		CHECK_INT("commit after the kill", rc, -1);
	}
	CHECK_TRUE("none ready after the kill", run_until(f->base, cond_none_ready, conns, 2000));
	CHECK_TRUE("idle conn saw the disconnect",
	           strstr(queue_conn_last_error(conns[1]), "disconnected") != NULL);
	CHECK_TRUE("conn in handshake saw the loss",
	           strstr(queue_conn_last_error(conns[2]), "handshake") != NULL);
	CHECK_INT("commit while down", queue_commit(f->conn, &m2, on_done, 3, &w), -1);
	run_for(f->base, 300);
	CHECK_INT("restart redis", test_redis_start(&g_redis, (const char *)NULL), 0);
	CHECK_TRUE("reconnected by themselves", run_until(f->base, cond_all_ready, conns, 5000));
	CHECK_STR("commit after the restart", queue_result_name(commit_wait(f, &m2)), "ok");
	CHECK_INT("message from before the kill (AOF)", rq_int("EXISTS pst:msg:7777777777777771"),
	          1);
	CHECK_INT("callbacks of the refused commit", w.calls, rc == 0 ? 1 : 0);
	queue_conn_free(conns[1]);
	queue_conn_free(conns[2]);
}

/* A TCP port that was free a moment ago. */
static int free_tcp_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t len = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) == -1)
		fail_msg("free_tcp_port: %s", strerror(errno));
	close(fd);
	return ntohs(sa.sin_port);
}

static void test_tcp(void **state)
{
	struct fixture *f = *state;
	int port = free_tcp_port();
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	/* Nobody listens yet: refused, retried. */
	struct queue_settings s = {addr, NULL, TIMEOUT_MS};
	struct queue_conn *c = queue_conn_new(f->base, &s);
	CHECK_TRUE("queue_conn_new(tcp)", c != NULL);
	run_for(f->base, 150);
	CHECK_INT("ready with nobody listening", queue_conn_ready(c), 0);
	rq_ok("CONFIG SET port %d", port);
	bool ready = run_until(f->base, cond_ready, c, 5000);
	struct waiter w = {.want_calls = 1};
	struct queue_message m = message("cccccccccccccccc", "tcp\r\n", 5, rcpts3, 2);
	int rc = ready ? queue_commit(c, &m, on_done, 7, &w) : -1;
	bool answered = rc == 0 && run_until(f->base, cond_calls, &w, 3000);
	char err[256] = "";
	struct queue_settings sa = {addr, NULL, 2000};
	struct queue_admin *a = queue_admin_connect(&sa, err, sizeof(err));
	int durable = a != NULL ? queue_admin_check_durable(a, err, sizeof(err)) : -2;
	queue_admin_free(a);
	queue_conn_free(c);
	rq_ok("CONFIG SET port 0");
	CHECK_INT("ready over tcp", ready, 1);
	CHECK_INT("commit over tcp", answered, 1);
	CHECK_STR("commit over tcp", queue_result_name(w.res), "ok");
	CHECK_INT("check_durable over tcp", durable, 0);
}

static void test_conn_free_answers(void **state)
{
	struct fixture *f = *state;
	struct waiter w[3] = {0};
	for (int i = 0; i < 3; i++) {
		char id[17];
		snprintf(id, sizeof(id), "%016x", 0x8000 + i);
		struct queue_message m = message(id, "x", 1, rcpts3, 1);
		CHECK_INT("queue_commit", queue_commit(f->conn, &m, on_done, (uint64_t)i, &w[i]),
		          0);
	}
	queue_conn_free(f->conn);
	f->conn = NULL;
	for (int i = 0; i < 3; i++) {
		CHECK_INT("calls when queue_conn_free returns", w[i].calls, 1);
		CHECK_STR("result after queue_conn_free", queue_result_name(w[i].res),
		          "unavailable");
	}
	run_for(f->base, 2 * TIMEOUT_MS);
	for (int i = 0; i < 3; i++)
		CHECK_INT("calls after the loop ran", w[i].calls, 1);

	/* Freed from inside a callback: the others are answered once, nothing touches it. */
	f->conn = conn_open(f->base, NULL, TIMEOUT_MS);
	CHECK_TRUE("ready", run_until(f->base, cond_ready, f->conn, 3000));
	struct queue_conn *victim = f->conn;
	f->conn = NULL;
	struct waiter v[3] = {0};
	v[0].free_in_cb = &victim;
	for (int i = 0; i < 3; i++) {
		char id[17];
		snprintf(id, sizeof(id), "%016x", 0x8100 + i);
		struct queue_message m = message(id, "x", 1, rcpts3, 1);
		CHECK_INT("queue_commit", queue_commit(victim, &m, on_done, (uint64_t)i, &v[i]), 0);
	}
	v[2].want_calls = 1;
	CHECK_TRUE("all answered", run_until(f->base, cond_calls, &v[2], 3000));
	CHECK_TRUE("freed in the callback", victim == NULL);
	run_for(f->base, 2 * TIMEOUT_MS);
	CHECK_STR("first result", queue_result_name(v[0].res), "ok");
	for (int i = 0; i < 3; i++)
		CHECK_INT("calls after free in a callback", v[i].calls, 1);
}

static void test_auth_password(void **state)
{
	struct fixture *f = *state;
	rq_ok("CONFIG SET requirepass s3cret");
	ctx_drop();
	struct queue_conn *bad = conn_open(f->base, "wrong", TIMEOUT_MS);
	struct queue_conn *good = conn_open(f->base, "s3cret", TIMEOUT_MS);
	bool ready = run_until(f->base, cond_ready, good, 3000);
	run_for(f->base, 300);
	bool bad_ready = queue_conn_ready(bad);
	char bad_error[256];
	snprintf(bad_error, sizeof(bad_error), "%s", queue_conn_last_error(bad));
	struct waiter w = {.want_calls = 1};
	int rc = queue_user_lookup(good, "nobody", "192.0.2.1", on_user, 1, &w);
	bool answered = rc == 0 && run_until(f->base, cond_calls, &w, 3000);
	queue_conn_free(bad);
	queue_conn_free(good);

	struct queue_settings s = {g_redis.addr, "s3cret", 2000};
	char err[256];
	struct queue_admin *a = queue_admin_connect(&s, err, sizeof(err));
	struct queue_settings sw = {g_redis.addr, "wrong", 2000};
	char werr[256] = "";
	struct queue_admin *aw = queue_admin_connect(&sw, werr, sizeof(werr));
	queue_admin_free(aw);
	/* Put things back before checking, so a failure leaves a usable server. */
	redisContext *ctx = connect_sock(g_redis.sock, 2000);
	CHECK_TRUE("connect", ctx != NULL);
	redisReply *r = redisCommand(ctx, "AUTH s3cret");
	if (r != NULL)
		freeReplyObject(r);
	r = redisCommand(ctx, "CONFIG SET requirepass %s", "");
	if (r != NULL)
		freeReplyObject(r);
	redisFree(ctx);

	CHECK_INT("ready with the right password", ready, 1);
	CHECK_INT("ready with a wrong password", bad_ready, 0);
	CHECK_TRUE("last error names AUTH", strstr(bad_error, "AUTH") != NULL);
	CHECK_INT("lookup with the right password", answered, 1);
	CHECK_STR("lookup result", queue_result_name(w.res), "ok");
	CHECK_TRUE("admin with the right password", a != NULL);
	CHECK_TRUE("admin with a wrong password fails", aw == NULL && werr[0] != '\0');
	queue_admin_free(a);
}

static void lookup(struct fixture *f, const char *name, const char *ip, struct waiter *w)
{
	memset(w, 0, sizeof(*w));
	w->want_calls = 1;
	CHECK_INT("queue_user_lookup", queue_user_lookup(f->conn, name, ip, on_user, 9, w), 0);
	CHECK_TRUE("lookup callback", run_until(f->base, cond_calls, w, 3000));
	CHECK_STR("lookup result", queue_result_name(w->res), "ok");
	CHECK_INT("lookup ref", w->ref, 9);
}

static void auth_record(struct fixture *f, const char *name, const char *ip, bool success)
{
	struct waiter w = {.want_calls = 1};
	CHECK_INT("queue_auth_record",
	          queue_auth_record(f->conn, name, ip, success, 1, on_done, 0, &w), 0);
	CHECK_TRUE("auth_record callback", run_until(f->base, cond_calls, &w, 3000));
	CHECK_STR("auth_record result", queue_result_name(w.res), "ok");
}

static void test_user_lookup(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	char err[256];
	struct queue_user u = {"alice", "$argon2id$v=19$x", "a.example B.example", "",
	                       "192.0.2.0/24 2001:db8::/32"};
	CHECK_INT("user_put", queue_admin_user_put(f->admin, &u, true, err, sizeof(err)), 0);

	struct waiter w;
	lookup(f, "alice", "192.0.2.9", &w);
	CHECK_INT("alice found", w.rec.found, 1);
	CHECK_STR("alice pwhash", w.pwhash, "$argon2id$v=19$x");
	CHECK_STR("alice domains", w.domains, "a.example b.example");
	CHECK_STR("alice only_nets", w.only_nets, "192.0.2.0/24 2001:db8::/32");
	CHECK_INT("alice ip failures", w.rec.ip_failures, 0);
	CHECK_INT("alice user failures", w.rec.user_failures, 0);

	lookup(f, "mallory", "192.0.2.9", &w);
	CHECK_INT("mallory found", w.rec.found, 0);
	CHECK_STR("mallory pwhash", w.pwhash, "");

	auth_record(f, "alice", "192.0.2.9", false);
	auth_record(f, "mallory", "192.0.2.9", false);
	lookup(f, "alice", "192.0.2.9", &w);
	CHECK_INT("ip failures after 2", w.rec.ip_failures, 2);
	CHECK_INT("alice failures after 1", w.rec.user_failures, 1);
	long long ttl = rq_int("TTL pst:authfail:ip:192.0.2.9");
	CHECK_TRUE("ip counter expires within the window", ttl >= 0 && ttl <= 1);
	auth_record(f, "alice", "192.0.2.9", true);
	lookup(f, "alice", "192.0.2.9", &w);
	CHECK_INT("alice failures after a success", w.rec.user_failures, 0);
	CHECK_INT("ip failures after a success", w.rec.ip_failures, 2);
	lookup(f, "mallory", "192.0.2.9", &w);
	CHECK_INT("mallory failures", w.rec.user_failures, 1);
	sleep_ms(1200);
	lookup(f, "mallory", "192.0.2.9", &w);
	CHECK_INT("ip failures after the window", w.rec.ip_failures, 0);
	CHECK_INT("mallory failures after the window", w.rec.user_failures, 0);

	char longname[QUEUE_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT("lookup of a too long name",
	          queue_user_lookup(f->conn, longname, "192.0.2.9", on_user, 0, &w), -1);
	CHECK_INT("lookup of an empty name",
	          queue_user_lookup(f->conn, "", "192.0.2.9", on_user, 0, &w), -1);
	CHECK_INT("auth_record with window 0",
	          queue_auth_record(f->conn, "a", "192.0.2.9", false, 0, NULL, 0, NULL), -1);
	/* cb NULL is allowed for auth_record */
	CHECK_INT("auth_record without callback",
	          queue_auth_record(f->conn, "a", "192.0.2.10", false, 5, NULL, 0, NULL), 0);
	run_for(f->base, 200);
	CHECK_INT("counter without callback", rq_int("EXISTS pst:authfail:ip:192.0.2.10"), 1);
}

static void test_allownets_load(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	char err[256];
	struct waiter w = {.want_calls = 1};
	CHECK_INT("allownets_load (empty)", queue_allownets_load(f->conn, on_nets, 3, &w), 0);
	CHECK_TRUE("allownets callback", run_until(f->base, cond_calls, &w, 3000));
	CHECK_STR("allownets result", queue_result_name(w.res), "ok");
	CHECK_INT("allownets count (empty)", w.nets_count, 0);

	struct queue_user a = {"alice", "h1", "a.example b.example", "10.0.0.0/8 192.168.1.0/24",
	                       ""};
	struct queue_user b = {"bob", "h2", "bob.example", "2001:db8::/32", ""};
	CHECK_INT("put alice", queue_admin_user_put(f->admin, &a, true, err, sizeof(err)), 0);
	CHECK_INT("put bob", queue_admin_user_put(f->admin, &b, true, err, sizeof(err)), 0);
	memset(&w, 0, sizeof(w));
	w.want_calls = 1;
	CHECK_INT("allownets_load", queue_allownets_load(f->conn, on_nets, 3, &w), 0);
	CHECK_TRUE("allownets callback", run_until(f->base, cond_calls, &w, 3000));
	CHECK_INT("allownets count", w.nets_count, 3);
	CHECK_STR("allownets", w.nets,
	          "10.0.0.0/8 alice a.example b.example\n"
	          "192.168.1.0/24 alice a.example b.example\n"
	          "2001:db8::/32 bob bob.example\n");
	CHECK_INT("allownets ref", w.ref, 3);
}

static void test_admin_users(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	char err[256] = "";
	struct queue_user a = {"alice", "h1", "a.example", "10.0.0.0/8 192.168.1.0/24", ""};
	CHECK_INT("create alice", queue_admin_user_put(f->admin, &a, true, err, sizeof(err)), 0);
	CHECK_INT("create alice again", queue_admin_user_put(f->admin, &a, true, err, sizeof(err)),
	          -1);
	CHECK_TRUE("create twice says exists", strstr(err, "exists") != NULL);
	CHECK_INT("created is set", rq_int("HEXISTS pst:user:alice created"), 1);
	CHECK_INT("users set", rq_int("SISMEMBER pst:users alice"), 1);

	/* Update: the index follows the new allow_nets. */
	struct queue_user a2 = {"alice", "h1", "a.example", "10.0.0.0/8 172.16.0.0/12", ""};
	CHECK_INT("update alice", queue_admin_user_put(f->admin, &a2, false, err, sizeof(err)), 0);
	CHECK_INT("index keeps 10/8", rq_int("HEXISTS pst:allownets 10.0.0.0/8"), 1);
	CHECK_INT("index drops 192.168.1/24", rq_int("HEXISTS pst:allownets 192.168.1.0/24"), 0);
	CHECK_INT("index adds 172.16/12", rq_int("HEXISTS pst:allownets 172.16.0.0/12"), 1);

	/* A network of someone else: refused, nothing written. */
	struct queue_user b = {"bob", "h2", "b.example", "192.0.2.0/24 10.0.0.0/8", ""};
	CHECK_INT("bob takes alice's net", queue_admin_user_put(f->admin, &b, true, err, 256), -1);
	CHECK_TRUE("error names the owner", strstr(err, "alice") != NULL);
	CHECK_INT("bob not written", rq_int("EXISTS pst:user:bob"), 0);
	CHECK_INT("bob's other net not written", rq_int("HEXISTS pst:allownets 192.0.2.0/24"), 0);
	b.allow_nets = "192.0.2.0/24";
	b.only_nets = "198.51.100.0/24";
	CHECK_INT("create bob", queue_admin_user_put(f->admin, &b, true, err, sizeof(err)), 0);

	static const struct {
		const char *name, *pw, *domains, *nets, *want;
	} bad[] = {
	    {"bad name", "h", "", "", "name"},
	    {"", "h", "", "", "name"},
	    {"carl", "", "", "", "password"},
	    {"carl", "h h", "", "", "password"},
	    {"carl", "h", "a_b.example", "", "domains"},
	    {"carl", "h", "", "10.0.0.0", "allow_nets"},
	    {"carl", "h", "", "10.0.0.0/33", "allow_nets"},
	    {"carl", "h", "", "2001:db8::/129", "allow_nets"},
	    {"carl", "h", "", "example.com/8", "allow_nets"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct queue_user u = {bad[i].name, bad[i].pw, bad[i].domains, bad[i].nets, ""};
		char name[64];
		snprintf(name, sizeof(name), "put bad case %zu", i);
		err[0] = '\0';
		CHECK_INT(name, queue_admin_user_put(f->admin, &u, true, err, sizeof(err)), -1);
		CHECK_TRUE(name, strstr(err, bad[i].want) != NULL);
	}
	CHECK_INT("carl not written", rq_int("EXISTS pst:user:carl"), 0);

	CHECK_INT("passwd alice", queue_admin_user_passwd(f->admin, "alice", "h9", err, 256), 0);
	redisReply *pw = rq("HGET pst:user:alice pw");
	CHECK_STR("alice pw", pw->str, "h9");
	freeReplyObject(pw);
	CHECK_INT("passwd nobody", queue_admin_user_passwd(f->admin, "nobody", "h", err, 256), -1);
	CHECK_TRUE("passwd nobody says no such user", strstr(err, "no such user") != NULL);

	char *out = NULL;
	size_t outlen = 0;
	FILE *fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("user_list", queue_admin_user_list(f->admin, fp, err, sizeof(err)), 0);
	CHECK_INT("fclose", fclose(fp), 0);
	CHECK_STR("user_list output", out,
	          "alice domains=a.example allow_nets=10.0.0.0/8,172.16.0.0/12 only_nets=\n"
	          "bob domains=b.example allow_nets=192.0.2.0/24 only_nets=198.51.100.0/24\n");
	free(out);

	/* A broken record in the middle of the pipeline: an error naming it, and the next
	 * command's reply is still its own. */
	rq_ok("SADD pst:users aaron zed");
	rq_ok("SET pst:user:aaron not-a-hash");
	out = NULL;
	fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("user_list with a broken record",
	          queue_admin_user_list(f->admin, fp, err, sizeof(err)), -1);
	CHECK_INT("fclose", fclose(fp), 0);
	free(out);
	CHECK_TRUE("error names the broken record", strstr(err, "pst:user:aaron") != NULL);
	rq_ok("DEL pst:user:aaron");
	rq_ok("SREM pst:users aaron zed");
	CHECK_INT("passwd after the broken list",
	          queue_admin_user_passwd(f->admin, "bob", "h3", err, sizeof(err)), 0);
	out = NULL;
	fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("user_list after the broken list",
	          queue_admin_user_list(f->admin, fp, err, sizeof(err)), 0);
	CHECK_INT("fclose", fclose(fp), 0);
	CHECK_STR("user_list output after the broken list", out,
	          "alice domains=a.example allow_nets=10.0.0.0/8,172.16.0.0/12 only_nets=\n"
	          "bob domains=b.example allow_nets=192.0.2.0/24 only_nets=198.51.100.0/24\n");
	free(out);

	rq_ok("SET pst:authfail:user:alice 3");
	CHECK_INT("del alice", queue_admin_user_del(f->admin, "alice", err, sizeof(err)), 0);
	CHECK_INT("alice gone", rq_int("EXISTS pst:user:alice pst:authfail:user:alice"), 0);
	CHECK_INT("alice out of the set", rq_int("SISMEMBER pst:users alice"), 0);
	CHECK_INT("alice's nets gone", rq_int("HLEN pst:allownets"), 1);
	CHECK_INT("del alice again", queue_admin_user_del(f->admin, "alice", err, sizeof(err)), -1);
	CHECK_TRUE("del again says no such user", strstr(err, "no such user") != NULL);
}

static void test_check_durable(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	char err[512] = "x";
	CHECK_INT("check_durable on the durable server",
	          queue_admin_check_durable(f->admin, err, sizeof(err)), 0);
	CHECK_STR("check_durable err when durable", err, "");
	rq_ok("CONFIG SET appendfsync everysec");
	CHECK_INT("check_durable with everysec",
	          queue_admin_check_durable(f->admin, err, sizeof(err)), -1);
	CHECK_STR("check_durable err", err, "appendfsync is everysec, want always");
	rq_ok("CONFIG SET maxmemory-policy allkeys-lru");
	CHECK_INT("check_durable with two unsafe settings",
	          queue_admin_check_durable(f->admin, err, sizeof(err)), -1);
	CHECK_STR("check_durable err", err,
	          "appendfsync is everysec, want always; maxmemory-policy is allkeys-lru, want "
	          "noeviction");
	rq_ok("CONFIG SET appendfsync always");
	rq_ok("CONFIG SET maxmemory-policy noeviction");
	CHECK_INT("check_durable restored", queue_admin_check_durable(f->admin, err, sizeof(err)),
	          0);
}

static void test_check_durable_renamed_config(void **state)
{
	(void)state;
	struct test_redis other;
	CHECK_INT("mkdtemp", test_redis_init(&other, "renamed"), 0);
	int rc = test_redis_start(&other, "--rename-command", "CONFIG", "", (const char *)NULL);
	char err[512] = "";
	int check = -2;
	if (rc == 0) {
		struct queue_settings s = {other.addr, NULL, 2000};
		struct queue_admin *a = queue_admin_connect(&s, err, sizeof(err));
		if (a != NULL)
			check = queue_admin_check_durable(a, err, sizeof(err));
		queue_admin_free(a);
	}
	test_redis_stop(&other);
	test_redis_remove_dir(other.dir);
	CHECK_INT("start a redis without CONFIG", rc, 0);
	CHECK_INT("check_durable without CONFIG", check, -1);
	CHECK_TRUE("err names the failed CONFIG GET",
	           strstr(err, "CONFIG GET appendonly failed") != NULL);
	CHECK_TRUE("err names every setting",
	           strstr(err, "CONFIG GET appendfsync failed") != NULL &&
	               strstr(err, "maxmemory-policy") != NULL);
}

static void test_admin_show(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	static const struct queue_recipient two[] = {{"x@c.example", "c.example"},
	                                             {"y@d.example", "d.example"}};
	struct queue_message m1 = message("aaaaaaaaaaaaaaa1", "hello\r\n", 7, two, 2);
	m1.received_ms = 1700000000000; /* 2023-11-14T22:13:20Z */
	struct queue_message m2 = message("aaaaaaaaaaaaaaa0", "hi\r\n", 4, rcpts3, 1);
	m2.received_ms = 1700000100999;
	m2.sender = "";
	m2.user = "bob";
	CHECK_STR("commit 1", queue_result_name(commit_wait(f, &m1)), "ok");
	CHECK_STR("commit 2", queue_result_name(commit_wait(f, &m2)), "ok");
	/* Known states and times in place of "queued 0 <now>". */
	rq_ok("HSET pst:rcpt:aaaaaaaaaaaaaaa1 0 %s 1 %s", "deferred 3 1700003600000 x@c.example",
	      "delivered 1 1700000050000 y@d.example");
	rq_ok("HSET pst:rcpt:aaaaaaaaaaaaaaa0 0 %s", "queued 0 1700000100999 ann@a.example");

	char err[256];
	char *out = NULL;
	size_t outlen = 0;
	FILE *fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("queue_admin_show", queue_admin_show(f->admin, fp, 10, err, sizeof(err)), 0);
	CHECK_INT("fclose", fclose(fp), 0);
	CHECK_STR("queue_admin_show output", out,
	          "aaaaaaaaaaaaaaa1 received=2023-11-14T22:13:20Z user=alice "
	          "from=news@sender.example size=7 rcpts=2\n"
	          "  x@c.example state=deferred attempts=3 next=2023-11-14T23:13:20Z\n"
	          "  y@d.example state=delivered attempts=1 next=-\n"
	          "aaaaaaaaaaaaaaa0 received=2023-11-14T22:15:00Z user=bob from=<> size=4 rcpts=1\n"
	          "  ann@a.example state=queued attempts=0 next=2023-11-14T22:15:00Z\n"
	          "messages=2 recipients=3\n");
	free(out);

	out = NULL;
	fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("queue_admin_show limit 1", queue_admin_show(f->admin, fp, 1, err, sizeof(err)),
	          0);
	CHECK_INT("fclose", fclose(fp), 0);
	CHECK_STR("queue_admin_show limit 1 output", out,
	          "aaaaaaaaaaaaaaa1 received=2023-11-14T22:13:20Z user=alice "
	          "from=news@sender.example size=7 rcpts=2\n"
	          "  x@c.example state=deferred attempts=3 next=2023-11-14T23:13:20Z\n"
	          "  y@d.example state=delivered attempts=1 next=-\n"
	          "messages=2 recipients=3\n");
	free(out);

	/* A message key of the wrong type: an error naming it; the connection stays in step. */
	rq_ok("DEL pst:msg:aaaaaaaaaaaaaaa1");
	rq_ok("SET pst:msg:aaaaaaaaaaaaaaa1 broken");
	out = NULL;
	fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("queue_admin_show with a broken message",
	          queue_admin_show(f->admin, fp, 10, err, sizeof(err)), -1);
	CHECK_INT("fclose", fclose(fp), 0);
	free(out);
	CHECK_TRUE("error names the message", strstr(err, "aaaaaaaaaaaaaaa1") != NULL);
	char *body = NULL;
	size_t body_len = 0;
	CHECK_INT("body after the broken listing",
	          queue_admin_body(f->admin, "aaaaaaaaaaaaaaa0", &body, &body_len, err, 256), 0);
	CHECK_INT("body length after the broken listing", body_len, 4);
	free(body);

	rq_ok("FLUSHALL");
	out = NULL;
	fp = open_memstream(&out, &outlen);
	CHECK_TRUE("open_memstream", fp != NULL);
	CHECK_INT("queue_admin_show empty", queue_admin_show(f->admin, fp, 10, err, sizeof(err)),
	          0);
	CHECK_INT("fclose", fclose(fp), 0);
	CHECK_STR("queue_admin_show empty output", out, "messages=0 recipients=0\n");
	free(out);
}

static void test_admin_body(void **state)
{
	struct fixture *f = *state;
	f->admin = admin_open();
	char *body = (char *)1;
	size_t len = 7;
	char err[128] = "";
	CHECK_INT("body of an unknown id",
	          queue_admin_body(f->admin, "bbbbbbbbbbbbbbbb", &body, &len, err, sizeof(err)),
	          -1);
	CHECK_TRUE("unknown body is NULL", body == NULL && len == 0);
	CHECK_STR("unknown body err", err, "no such message");
	CHECK_INT("body of a bad id", queue_admin_body(f->admin, "b", &body, &len, err, 128), -1);

	static const char bytes[] = "L1\r\n\x80\xff\xfe\x01\r\n.\r\n";
	struct queue_message m = message("bbbbbbbbbbbbbbb1", bytes, sizeof(bytes) - 1, rcpts3, 1);
	CHECK_STR("commit", queue_result_name(commit_wait(f, &m)), "ok");
	CHECK_INT("queue_admin_body",
	          queue_admin_body(f->admin, "bbbbbbbbbbbbbbb1", &body, &len, err, sizeof(err)), 0);
	CHECK_INT("body length", len, sizeof(bytes) - 1);
	CHECK_TRUE("body bytes equal", memcmp(body, bytes, len) == 0);
	free(body);
}

static void test_memory_per_message(void **state)
{
	struct fixture *f = *state;
	enum { N = 1000, BATCH = 100, BODY = 5 * 1024 };
	char *body = body_make(BODY);
	static const struct queue_recipient one[] = {{"someone@example.com", "example.com"}};
	/* Warm up the shared keys so that the delta is per message. */
	struct queue_message warm = message("ffffffffffffffff", body, BODY, one, 1);
	CHECK_STR("warm-up commit", queue_result_name(commit_wait(f, &warm)), "ok");
	long long before = info_used_memory();
	for (int i = 0; i < N; i += BATCH) {
		struct waiter w[BATCH];
		memset(w, 0, sizeof(w));
		for (int j = 0; j < BATCH; j++) {
			char id[17];
			snprintf(id, sizeof(id), "%016x", 0x900000 + i + j);
			struct queue_message m = message(id, body, BODY, one, 1);
			m.received_ms += i + j;
			CHECK_INT("queue_commit", queue_commit(f->conn, &m, on_done, 0, &w[j]), 0);
		}
		w[BATCH - 1].want_calls = 1;
		CHECK_TRUE("batch answered", run_until(f->base, cond_calls, &w[BATCH - 1], 10000));
		for (int j = 0; j < BATCH; j++)
			CHECK_STR("batch result", queue_result_name(w[j].res), "ok");
	}
	long long after = info_used_memory();
	long long per = (after - before) / N;
	long long k_msg = rq_int("MEMORY USAGE pst:msg:%016x", 0x900000);
	long long k_body = rq_int("MEMORY USAGE pst:body:%016x", 0x900000);
	long long k_rcpt = rq_int("MEMORY USAGE pst:rcpt:%016x", 0x900000);
	print_message("memory per queued %d-byte message, 1 recipient: %lld bytes (INFO delta over "
	              "%d); MEMORY USAGE msg=%lld body=%lld rcpt=%lld\n",
	              BODY, per, N, k_msg, k_body, k_rcpt);
	CHECK_TRUE("under 7 KB per queued 5 KB message", per < 7 * 1024);
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_address_parse),
	    cmocka_unit_test_setup_teardown(test_conn_new_bad, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_flags_and_null_sender, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_conflict, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_exactly_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_invalid, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_noscript_retry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oom_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_sigstop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_killed_and_restarted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conn_free_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_auth_password, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_lookup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_allownets_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_users, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check_durable_renamed_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_show, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_memory_per_message, setup, teardown),
	};
	/* A write to a socket Redis closed must not kill the test. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
