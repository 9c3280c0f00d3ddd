/*
 * queue.c: the async side of Postino's Redis store, used by the daemon's event loops. It owns
 * the key schema (below, and queue/README.md), the Lua scripts the daemon runs, the async
 * connection (connect, AUTH, SCRIPT LOAD, reconnect with backoff, one timer per request,
 * since hiredis 0.14 has none) and the async requests: commit, user lookup, AUTH outcome,
 * allowed networks, and raw requests running the scheduling script (internal.h) for
 * sched.c and limits.c. queue/admin.c holds the blocking side (postinoctl, start-up checks).
 *
 * Key schema (all keys start with "pst:"; <id> is 16 lowercase hex digits; times are unix ms):
 *
 *   pst:msg:<id>    hash   sender, user, client, helo, received, size, rcpts (total),
 *                          open (recipients not yet final), utf8 (0/1), 8bit (0/1),
 *                          campaign (only when set); the scheduler adds fields (README)
 *   pst:body:<id>   string the signed message bytes, exactly as committed
 *   pst:rcpt:<id>   hash   "<i>" (0-based recipient index) -> "<state> <attempts> <next_ms>
 *                          <address>"; the address is last and may hold spaces; state is one
 *                          of queued sending deferred delivered bounced expired suppressed
 *                          deleted; commit writes "queued 0 <now_ms> <address>", or
 *                          "suppressed 0 0 <address>"
 *   pst:sched       zset   "<id>:<domain>" -> due time: one delivery entry per message and
 *                          recipient domain (split at the first ':', the id has none);
 *                          commit adds them due now (Redis TIME)
 *   pst:msgs        zset   <id> -> received: listing, age of the oldest message
 *   pst:stat        hash   messages_queued, recipients_queued (current), and
 *                          messages_received_total, recipients_received_total,
 *                          recipients_suppressed_total
 *   pst:user:<name> hash   pw, domains, allow_nets, only_nets (space-separated), created (ms)
 *   pst:users       set    user names
 *   pst:allownets   hash   cidr -> user name (kept in step with allow_nets by admin.c)
 *   pst:authfail:ip:<ip>, pst:authfail:user:<name>
 *                   string AUTH failure counters, EXPIRE window after the last failure
 *   pst:supp:<user> hash   the user's suppression list: lowercased address or "*@<domain>"
 *                          -> "<created> <expires or 0> <class> <source> <reason>"; commit
 *                          makes a recipient on it "suppressed" (suppress.c, README)
 *   scheduling keys (ready lists, leases, limits, events): see queue/README.md
 *
 * Commit is one script: it checks that none of msg/body/rcpt exists and that the shared keys
 * have their types, reads the user's suppression entries, then writes. Redis runs a script
 * atomically, and an OOM refusal comes on the first write, before anything was written, so a commit
 * writes all or nothing.
 *
 * Lifetimes: a request is owned by hiredis (its privdata) from the send until hiredis calls
 * its callback, which frees it; the request answers its caller exactly once, either from that
 * callback or, when queue_conn_free detaches it, from queue_conn_free. We never free a
 * redisAsyncContext from inside one of its own callbacks: a drop decided there parks it in
 * `dying` and a zero-timeout event frees it. The one exception is queue_conn_free called from
 * a caller's callback, where no later loop turn is ours to wait for: it asks redisAsyncFree,
 * which hiredis defers until its callback returns. The queue_conn itself is freed only when
 * no frame of ours is on the stack (depth 0), so a caller's callback may call queue_conn_free.
 */
#include "queue/queue.h"
#include "queue/internal.h"
#include "relay/buf.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* Room kept before a request's arguments for the "*N $7 EVALSHA $40 <sha>" header. */
#define HEADROOM 80
#define SHA_LEN  40

enum script_id {
	SCRIPT_COMMIT,
	SCRIPT_USER,
	SCRIPT_AUTH,
	SCRIPT_NETS,
	SCRIPT_SCHED, /* the scheduling script, sched_script.c */
	SCRIPT_COUNT,
};

/* KEYS: msg body rcpt sched msgs stat supp (the user's suppression list).
 * ARGV: id sender user client helo received size utf8 8bit body campaign max_queued n, then
 * n pairs address domain. Returns 1; 0 when the id exists; 2 when recipients_queued has
 * reached max_queued (> 0); an error before any write otherwise. Recipients on the list are
 * final at once ("suppressed", with an event, no entry); when all are, only the totals, the
 * events and the counters are written. Large tables go out in slices because unpack() is
 * bounded by the Lua C stack. */
static const char script_commit[] = QUEUE_LUA_COUNT QUEUE_LUA_SUPP
    "local function flush(cmd, key, t)\n"
    "  local i = 1\n"
    "  while i <= #t do\n"
    "    local j = math.min(i + 999, #t)\n"
    "    redis.call(cmd, key, unpack(t, i, j))\n"
    "    i = j + 1\n"
    "  end\n"
    "end\n"
    "-- UTC \"YYYY-MM-DDTHH:MM:SSZ\" of unix ms (days to civil date, proleptic Gregorian)\n"
    "local function iso(ms)\n"
    "  local s = math.floor(ms / 1000)\n"
    "  local days = math.floor(s / 86400)\n"
    "  local sec = s - days * 86400\n"
    "  local z = days + 719468\n"
    "  local era = math.floor(z / 146097)\n"
    "  local doe = z - era * 146097\n"
    "  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) -\n"
    "    math.floor(doe / 146096)) / 365)\n"
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n"
    "  local mp = math.floor((5 * doy + 2) / 153)\n"
    "  local d = doy - math.floor((153 * mp + 2) / 5) + 1\n"
    "  local m = mp < 10 and mp + 3 or mp - 9\n"
    "  local y = yoe + era * 400 + (m <= 2 and 1 or 0)\n"
    "  return string.format('%04d-%02d-%02dT%02d:%02d:%02dZ', y, m, d, math.floor(sec / 3600),\n"
    "    math.floor(sec % 3600 / 60), sec % 60)\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) ~= 0 then return 0 end\n"
    "local want = {[4] = 'zset', [5] = 'zset', [6] = 'hash', [7] = 'hash'}\n"
    "for k, ty in pairs(want) do\n"
    "  local got = redis.call('TYPE', KEYS[k])['ok']\n"
    "  if got ~= 'none' and got ~= ty then\n"
    "    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' is a ' .. got)\n"
    "  end\n"
    "end\n"
    "local max = tonumber(ARGV[12])\n"
    "if max > 0 and tonumber(redis.call('HGET', KEYS[6], 'recipients_queued') or '0') >= max\n"
    "then return 2 end\n"
    "local t = redis.call('TIME')\n"
    "local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))\n"
    "local id = ARGV[1]\n"
    "local n = tonumber(ARGV[13])\n"
    "-- The list's entries of every address and domain, in one HMGET per 1000 fields.\n"
    "local ask, asked, list = {}, {}, {}\n"
    "for i = 0, n - 1 do\n"
    "  local a, d = string.lower(ARGV[14 + 2 * i]), '*@' .. string.lower(ARGV[15 + 2 * i])\n"
    "  for _, f in ipairs({a, d}) do\n"
    "    if not asked[f] then\n"
    "      asked[f] = true\n"
    "      ask[#ask + 1] = f\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local i = 1\n"
    "while i <= #ask do\n"
    "  local j = math.min(i + 999, #ask)\n"
    "  local got = redis.call('HMGET', KEYS[7], unpack(ask, i, j))\n"
    "  for k = i, j do list[ask[k]] = got[k - i + 1] end\n"
    "  i = j + 1\n"
    "end\n"
    "local nowms = tonumber(now)\n"
    "local supp, open = {}, n\n"
    "for i = 0, n - 1 do\n"
    "  local e = supp_live(list[string.lower(ARGV[14 + 2 * i])], nowms) or\n"
    "    supp_live(list['*@' .. string.lower(ARGV[15 + 2 * i])], nowms)\n"
    "  if e then\n"
    "    supp[i] = e\n"
    "    open = open - 1\n"
    "  end\n"
    "end\n"
    "local rcpt, sched, seen = {}, {}, {}\n"
    "for i = 0, n - 1 do\n"
    "  local addr, dom = ARGV[14 + 2 * i], ARGV[15 + 2 * i]\n"
    "  rcpt[#rcpt + 1] = tostring(i)\n"
    "  if supp[i] then\n"
    "    rcpt[#rcpt + 1] = 'suppressed 0 0 ' .. addr\n"
    "  else\n"
    "    rcpt[#rcpt + 1] = 'queued 0 ' .. now .. ' ' .. addr\n"
    "    if not seen[dom] then\n"
    "      seen[dom] = true\n"
    "      sched[#sched + 1] = now\n"
    "      sched[#sched + 1] = id .. ':' .. dom\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if open > 0 then\n"
    "  redis.call('HSET', KEYS[1], 'sender', ARGV[2], 'user', ARGV[3], 'client', ARGV[4],\n"
    "    'helo', ARGV[5], 'received', ARGV[6], 'size', ARGV[7], 'rcpts', n, 'open', open,\n"
    "    'utf8', ARGV[8], '8bit', ARGV[9])\n"
    "  if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'campaign', ARGV[11]) end\n"
    "  redis.call('SET', KEYS[2], ARGV[10])\n"
    "  flush('HSET', KEYS[3], rcpt)\n"
    "  flush('ZADD', KEYS[4], sched)\n"
    "  redis.call('ZADD', KEYS[5], ARGV[6], id)\n"
    "end\n"
    "-- by 0 when nothing is queued: the fields exist after the first commit, whatever it was\n"
    "redis.call('HINCRBY', KEYS[6], 'messages_queued', open > 0 and 1 or 0)\n"
    "redis.call('HINCRBY', KEYS[6], 'recipients_queued', open)\n"
    "redis.call('HINCRBY', KEYS[6], 'messages_received_total', 1)\n"
    "redis.call('HINCRBY', KEYS[6], 'recipients_received_total', n)\n"
    "if open < n then\n"
    "  redis.call('HINCRBY', KEYS[6], 'recipients_suppressed_total', n - open)\n"
    "end\n"
    "for i = 0, n - 1 do\n"
    "  local addr = ARGV[14 + 2 * i]\n"
    "  redis.call('XADD', 'pst:events', '*', 'type', 'received', 'time', now, 'id', id,\n"
    "    'rcpt', addr, 'user', ARGV[3], 'campaign', ARGV[11], 'attempt', '0')\n"
    "  count('received', ARGV[3], addr, ARGV[11], nil, nowms)\n"
    "  local e = supp[i]\n"
    "  if e then\n"
    "    redis.call('XADD', 'pst:events', '*', 'type', 'suppressed', 'time', now, 'id', id,\n"
    "      'rcpt', addr, 'user', ARGV[3], 'campaign', ARGV[11], 'attempt', '0', 'host', '',\n"
    "      'reply', '550 5.7.1 Recipient suppressed: ' .. e.class .. ' since ' ..\n"
    "      iso(e.created), 'tls', '', 'class', e.class)\n"
    "    count('suppressed', ARGV[3], addr, ARGV[11], e.class, nowms)\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* KEYS: user authfail_ip authfail_user. Returns {found, pw, domains, only_nets, ipfail,
 * userfail}. Read-only. */
static const char script_user[] =
    "local found = redis.call('EXISTS', KEYS[1])\n"
    "local u = redis.call('HMGET', KEYS[1], 'pw', 'domains', 'only_nets')\n"
    "local ipf = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
    "local uf = tonumber(redis.call('GET', KEYS[3]) or '0') or 0\n"
    "return {found, u[1] or '', u[2] or '', u[3] or '', ipf, uf}\n";

/* KEYS: authfail_ip authfail_user. ARGV: success (0/1) window_s. */
static const char script_auth[] = "if ARGV[1] == '1' then\n"
                                  "  redis.call('DEL', KEYS[2])\n"
                                  "  return 1\n"
                                  "end\n"
                                  "redis.call('INCR', KEYS[1])\n"
                                  "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
                                  "redis.call('INCR', KEYS[2])\n"
                                  "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
                                  "return 1\n";

/* KEYS: allownets. ARGV: user key prefix. Returns a flat list of cidr, user, domains. The user
 * keys are computed here, not passed in KEYS: their names are known only after the read. */
static const char script_nets[] = "local nets = redis.call('HGETALL', KEYS[1])\n"
                                  "local out, cache = {}, {}\n"
                                  "for i = 1, #nets, 2 do\n"
                                  "  local user = nets[i + 1]\n"
                                  "  local d = cache[user]\n"
                                  "  if d == nil then\n"
                                  "    d = redis.call('HGET', ARGV[1] .. user, 'domains') or ''\n"
                                  "    cache[user] = d\n"
                                  "  end\n"
                                  "  out[#out + 1] = nets[i]\n"
                                  "  out[#out + 1] = user\n"
                                  "  out[#out + 1] = d\n"
                                  "end\n"
                                  "return out\n";

static const char *const script_text[SCRIPT_COUNT] = {
    [SCRIPT_COMMIT] = script_commit,     [SCRIPT_USER] = script_user,
    [SCRIPT_AUTH] = script_auth,         [SCRIPT_NETS] = script_nets,
    [SCRIPT_SCHED] = queue_script_sched,
};

/* Handshake replies carry a tag instead of a pointer: the connection may be gone by then. */
#define TAG_AUTH SCRIPT_COUNT

enum conn_state {
	CONN_DOWN,      /* no context; retry_ev pending */
	CONN_HANDSHAKE, /* context made; connect, AUTH and SCRIPT LOAD in flight */
	CONN_READY,
};

enum request_kind {
	REQUEST_COMMIT,
	REQUEST_USER,
	REQUEST_AUTH,
	REQUEST_NETS,
	REQUEST_RAW, /* queue_request_new: the caller parses the reply */
};

struct request {
	struct queue_conn *conn; /* NULL once queue_conn_free has answered and detached it */
	redisAsyncContext *ac;   /* the context that holds it (identity only) */
	struct request *prev, *next;
	enum request_kind kind;
	enum script_id script;
	struct event *timer;
	struct buf cmd; /* HEADROOM bytes, then numkeys, keys, args in RESP */
	size_t argc;    /* arguments in cmd after HEADROOM */
	bool retried;   /* NOSCRIPT retry done */
	uint64_t sent_us;
	union {
		queue_done_fn *done;
		queue_user_fn *user;
		queue_allownets_fn *nets;
		queue_raw_fn *raw;
	} cb;
	void *raw_ctx; /* REQUEST_RAW: the caller's, handed to cb.raw */
	uint64_t ref;
	void *arg;
};

struct queue_conn {
	struct event_base *base;
	struct queue_address address;
	char *password; /* NULL for none */
	int timeout_ms;
	enum conn_state state;
	redisAsyncContext *ac;    /* live context, or NULL */
	redisAsyncContext *dying; /* dropped inside a hiredis callback; reap_ev frees it */
	unsigned handshake_left;  /* handshake replies still awaited */
	char sha[SCRIPT_COUNT][SHA_LEN + 1];
	struct event *retry_ev;
	struct event *handshake_ev;
	struct event *reap_ev;
	int backoff_ms;
	struct request *head, *tail; /* requests sent and not answered, oldest first */
	unsigned depth;              /* our frames on the stack that may touch this struct */
	bool closing;                /* queue_conn_free called; freed when depth drops to 0 */
	uint64_t last_latency_us;
	int64_t max_queued; /* commit refuses (QUEUE_FULL) at this many queued recipients; 0: off */
	char last_error[256];
};

static void conn_connect(struct queue_conn *c);

static uint64_t monotonic_us(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void conn_error(struct queue_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_error(struct queue_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap) < 0)
		c->last_error[0] = '\0';
	va_end(ap);
}

static struct timeval ms_to_timeval(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

/* Stops a timer. event_del() fails only for an event without a base, and all of ours have
 * one, so there is no error to handle. */
static void timer_stop(struct event *ev)
{
	(void)evtimer_del(ev);
}

/* ---- RESP encoding of request arguments ---- */

static int resp_arg(struct buf *b, const void *data, size_t len)
{
	if (buf_printf(b, "$%zu\r\n", len) == -1 || buf_append(b, data, len) == -1 ||
	    buf_append(b, "\r\n", 2) == -1)
		return -1;
	return 0;
}

static int resp_arg_str(struct buf *b, const char *s)
{
	return resp_arg(b, s, strlen(s));
}

/* One argument made of prefix and name, without a temporary copy. */
static int resp_arg_key(struct buf *b, const char *prefix, const char *name)
{
	size_t plen = strlen(prefix), nlen = strlen(name);
	if (buf_printf(b, "$%zu\r\n", plen + nlen) == -1 || buf_append(b, prefix, plen) == -1 ||
	    buf_append(b, name, nlen) == -1 || buf_append(b, "\r\n", 2) == -1)
		return -1;
	return 0;
}

static int resp_arg_i64(struct buf *b, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return resp_arg(b, tmp, (size_t)n);
}

/* ---- requests ---- */

static void request_link(struct queue_conn *c, struct request *r)
{
	r->prev = c->tail;
	r->next = NULL;
	if (c->tail != NULL)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
}

static void request_unlink(struct queue_conn *c, struct request *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		c->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		c->tail = r->prev;
	r->prev = r->next = NULL;
}

static void request_free(struct request *r)
{
	if (r == NULL)
		return;
	if (r->timer != NULL)
		event_free(r->timer);
	buf_free(&r->cmd);
	free(r);
}

static void on_request_timeout(evutil_socket_t fd, short what, void *arg);

static struct request *request_new(struct queue_conn *c, enum request_kind kind,
                                   enum script_id script, uint64_t ref, void *arg)
{
	static const char zeros[HEADROOM];
	struct request *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->conn = c;
	r->kind = kind;
	r->script = script;
	r->ref = ref;
	r->arg = arg;
	r->timer = evtimer_new(c->base, on_request_timeout, r);
	if (r->timer == NULL || buf_append(&r->cmd, zeros, HEADROOM) == -1) {
		request_free(r);
		return NULL;
	}
	return r;
}

/* Appends one argument; counts it. */
static int request_arg(struct request *r, const void *data, size_t len)
{
	if (resp_arg(&r->cmd, data, len) == -1)
		return -1;
	r->argc++;
	return 0;
}

static int request_arg_str(struct request *r, const char *s)
{
	if (resp_arg_str(&r->cmd, s) == -1)
		return -1;
	r->argc++;
	return 0;
}

static int request_arg_key(struct request *r, const char *prefix, const char *name)
{
	if (resp_arg_key(&r->cmd, prefix, name) == -1)
		return -1;
	r->argc++;
	return 0;
}

static int request_arg_i64(struct request *r, int64_t v)
{
	if (resp_arg_i64(&r->cmd, v) == -1)
		return -1;
	r->argc++;
	return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends r as EVALSHA on the live context and starts its timer. Returns 0 (r now belongs to
 * hiredis until on_reply) or -1 (r still belongs to the caller, nothing sent). */
static int request_send(struct request *r)
{
	struct queue_conn *c = r->conn;
	char head[HEADROOM];
	int n = snprintf(head, sizeof(head), "*%zu\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n", r->argc + 2,
	                 SHA_LEN, c->sha[r->script]);
	if (n < 0 || n > HEADROOM)
		return -1;
	char *start = r->cmd.data + HEADROOM - n;
	memcpy(start, head, (size_t)n);
	struct timeval tv = ms_to_timeval(c->timeout_ms);
	if (evtimer_add(r->timer, &tv) == -1)
		return -1;
	if (redisAsyncFormattedCommand(c->ac, on_reply, r, start, r->cmd.len - HEADROOM + n) !=
	    REDIS_OK) {
		conn_error(c, "redisAsyncFormattedCommand: %s",
		           c->ac->errstr[0] != '\0' ? c->ac->errstr : "refused");
		timer_stop(r->timer);
		return -1;
	}
	r->ac = c->ac;
	r->sent_us = monotonic_us();
	request_link(c, r);
	return 0;
}

/* Resends r as EVAL with the script's text (which also caches it in Redis) after a NOSCRIPT.
 * Returns 0 when sent (r stays with hiredis), -1 otherwise. */
static int request_resend_eval(struct request *r, redisAsyncContext *ac)
{
	struct buf eval = BUF_INIT;
	const char *text = script_text[r->script];
	int rc = -1;
	if (buf_printf(&eval, "*%zu\r\n$4\r\nEVAL\r\n", r->argc + 2) == 0 &&
	    resp_arg(&eval, text, strlen(text)) == 0 &&
	    buf_append(&eval, r->cmd.data + HEADROOM, r->cmd.len - HEADROOM) == 0 &&
	    redisAsyncFormattedCommand(ac, on_reply, r, eval.data, eval.len) == REDIS_OK)
		rc = 0;
	buf_free(&eval);
	return rc;
}

/* A failure counter as the record holds it: anything odd in Redis is clamped. */
static unsigned counter_of(long long v)
{
	if (v < 0)
		return 0;
	if (v > UINT_MAX)
		return UINT_MAX;
	return (unsigned)v;
}

/* Calls the caller's callback once. reply is the script's reply when res is QUEUE_OK. */
static void request_answer(struct request *r, enum queue_result res, const redisReply *reply)
{
	switch (r->kind) {
	case REQUEST_COMMIT:
	case REQUEST_AUTH:
		if (r->cb.done != NULL)
			r->cb.done(res, r->ref, r->arg);
		return;
	case REQUEST_USER: {
		struct queue_user_record rec = {false, "", "", "", 0, 0};
		if (res == QUEUE_OK) {
			redisReply **e = reply->element;
			rec.found = e[0]->integer == 1;
			rec.pwhash = e[1]->str;
			rec.domains = e[2]->str;
			rec.only_nets = e[3]->str;
			rec.ip_failures = counter_of(e[4]->integer);
			rec.user_failures = counter_of(e[5]->integer);
		}
		r->cb.user(res, &rec, r->ref, r->arg);
		return;
	}
	case REQUEST_RAW:
		r->cb.raw(res, res == QUEUE_OK ? reply : NULL, r->raw_ctx);
		return;
	case REQUEST_NETS: {
		struct queue_allownet *nets = NULL;
		size_t count = 0;
		if (res == QUEUE_OK && reply->elements > 0) {
			count = reply->elements / 3;
			nets = calloc(count, sizeof(*nets));
			if (nets == NULL) {
				res = QUEUE_UNAVAILABLE;
				count = 0;
			}
			for (size_t i = 0; i < count; i++) {
				nets[i].cidr = reply->element[3 * i]->str;
				nets[i].user = reply->element[3 * i + 1]->str;
				nets[i].domains = reply->element[3 * i + 2]->str;
			}
		}
		r->cb.nets(res, nets, count, r->ref, r->arg);
		free(nets);
		return;
	}
	}
}

/* Error replies: "OOM ..." is a full Redis (maxmemory), everything else (READONLY, LOADING,
 * MASTERDOWN, BUSY, a script error) is unavailable. */
static enum queue_result result_of_error(const char *msg)
{
	if (strncmp(msg, "OOM", 3) == 0 && (msg[3] == ' ' || msg[3] == '\0'))
		return QUEUE_FULL;
	return QUEUE_UNAVAILABLE;
}

static bool reply_is_string(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS;
}

/* Checks that a non-error reply has the shape the script returns. */
static enum queue_result result_of_reply(enum request_kind kind, const redisReply *reply)
{
	switch (kind) {
	case REQUEST_COMMIT:
		if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
			return QUEUE_OK;
		if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
			return QUEUE_CONFLICT;
		if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 2)
			return QUEUE_FULL;
		return QUEUE_UNAVAILABLE;
	case REQUEST_RAW:
		return QUEUE_OK;
	case REQUEST_AUTH:
		return reply->type == REDIS_REPLY_INTEGER ? QUEUE_OK : QUEUE_UNAVAILABLE;
	case REQUEST_USER:
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 6)
			return QUEUE_UNAVAILABLE;
		for (size_t i = 0; i < 6; i++) {
			bool want_int = i == 0 || i >= 4;
			const redisReply *e = reply->element[i];
			if (want_int ? e->type != REDIS_REPLY_INTEGER : !reply_is_string(e))
				return QUEUE_UNAVAILABLE;
		}
		return QUEUE_OK;
	case REQUEST_NETS:
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 0)
			return QUEUE_UNAVAILABLE;
		for (size_t i = 0; i < reply->elements; i++)
			if (!reply_is_string(reply->element[i]))
				return QUEUE_UNAVAILABLE;
		return QUEUE_OK;
	}
	return QUEUE_UNAVAILABLE;
}

/* ---- connection ---- */

static void conn_enter(struct queue_conn *c)
{
	c->depth++;
}

static void conn_destroy(struct queue_conn *c)
{
	free(c->password);
	free(c);
}

/* Returns true when c was freed (queue_conn_free ran while we were on the stack). */
static bool conn_leave(struct queue_conn *c)
{
	c->depth--;
	if (c->depth == 0 && c->closing) {
		conn_destroy(c);
		return true;
	}
	return false;
}

static void conn_schedule_retry(struct queue_conn *c)
{
	if (c->closing || evtimer_pending(c->retry_ev, NULL))
		return;
	struct timeval tv = ms_to_timeval(c->backoff_ms);
	if (evtimer_add(c->retry_ev, &tv) == -1) {
		/* Nothing else would bring the connection back: try on the next loop turn. */
		conn_error(c, "evtimer_add(retry) failed");
		event_active(c->retry_ev, EV_TIMEOUT, 0);
	}
	c->backoff_ms *= 2;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
}

/* The live context is being freed by hiredis (error, EOF, failed connect): forget it. */
static void conn_lost(struct queue_conn *c)
{
	c->ac = NULL;
	c->state = CONN_DOWN;
	timer_stop(c->handshake_ev);
	conn_schedule_retry(c);
}

/* Frees the parked context, if any. Never from inside a hiredis callback. Returns true when
 * c was freed meanwhile. */
static bool conn_reap(struct queue_conn *c)
{
	redisAsyncContext *ac = c->dying;
	if (ac == NULL)
		return false;
	c->dying = NULL;
	conn_enter(c);
	redisAsyncFree(ac); /* pending callbacks run now, with NULL replies */
	return conn_leave(c);
}

/* Closes the live context on our initiative and schedules a reconnect. Requests on it are
 * answered QUEUE_UNAVAILABLE by hiredis' NULL-reply callbacks: now when in_callback is false,
 * else from reap_ev. Returns true when c was freed meanwhile (only when in_callback is false).
 */
static bool conn_drop(struct queue_conn *c, bool in_callback)
{
	redisAsyncContext *ac = c->ac;
	if (ac == NULL)
		return false;
	c->ac = NULL;
	c->state = CONN_DOWN;
	timer_stop(c->handshake_ev);
	conn_schedule_retry(c);
	if (in_callback && c->dying == NULL) {
		/* ac->data stays c: should hiredis free ac first (a read error before the
		 * reaper runs), on_connect or on_disconnect see ac == c->dying and forget it. */
		c->dying = ac;
		struct timeval zero = {0, 0};
		if (evtimer_add(c->reap_ev, &zero) == -1)
			event_active(c->reap_ev, EV_TIMEOUT, 0);
		return false;
	}
	ac->data = NULL;
	if (in_callback) {
		/* A second drop before the reaper ran (cannot happen: a new context is made
		 * only by the retry timer, which reaps first). hiredis defers a free asked
		 * from its own callback, the documented fallback. */
		redisAsyncFree(ac);
		return false;
	}
	conn_enter(c);
	redisAsyncFree(ac);
	return conn_leave(c);
}

/* hiredis is freeing ac on its own: if it is the parked one, the reaper must not free it. */
static void conn_forget_dying(struct queue_conn *c, const redisAsyncContext *ac)
{
	if (c->dying == ac)
		c->dying = NULL;
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_reap(arg);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct queue_conn *c = arg;
	if (conn_reap(c))
		return;
	if (c->ac == NULL && !c->closing)
		conn_connect(c);
}

static void on_handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct queue_conn *c = arg;
	conn_error(c, "connect, AUTH or SCRIPT LOAD took over %d ms", c->timeout_ms);
	conn_drop(c, false);
}

static void on_request_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct request *r = arg;
	struct queue_conn *c = r->conn;
	if (c == NULL)
		return;
	conn_error(c, "request took over %d ms", c->timeout_ms);
	/* Dropping the context answers r (and every other request on it) through hiredis'
	 * NULL-reply callbacks, exactly once each. */
	if (r->ac == c->ac) {
		conn_drop(c, false);
		return;
	}
	if (r->ac == c->dying) {
		conn_reap(c);
		return;
	}
	/* Not reachable while the invariant "every listed request is held by c->ac or
	 * c->dying" holds; answer and detach rather than hang. */
	request_unlink(c, r);
	r->conn = NULL;
	conn_enter(c);
	request_answer(r, QUEUE_UNAVAILABLE, NULL);
	conn_leave(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct queue_conn *c = ac->data;
	if (c == NULL || status == REDIS_OK)
		return;
	if (c->ac != ac) {
		conn_forget_dying(c, ac);
		return;
	}
	/* hiredis frees ac when this returns. */
	conn_error(c, "connect: %s", ac->errstr);
	conn_lost(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	(void)status;
	struct queue_conn *c = ac->data;
	if (c == NULL)
		return;
	if (c->ac != ac) {
		conn_forget_dying(c, ac);
		return;
	}
	conn_error(c, "disconnected: %s", ac->errstr[0] != '\0' ? ac->errstr : "closed");
	conn_lost(c);
}

static void on_handshake(redisAsyncContext *ac, void *reply_, void *privdata)
{
	redisReply *reply = reply_;
	struct queue_conn *c = ac->data;
	unsigned tag = (unsigned)(uintptr_t)privdata;
	if (c == NULL)
		return;
	if (c->ac != ac) {
		if (reply == NULL)
			conn_forget_dying(c, ac);
		return;
	}
	if (reply == NULL) {
		ac->data = NULL;
		conn_error(c, "connection lost during handshake: %s", ac->errstr);
		conn_lost(c);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		conn_error(c, "%s: %s", tag == TAG_AUTH ? "AUTH" : "SCRIPT LOAD", reply->str);
		conn_drop(c, true);
		return;
	}
	if (tag < SCRIPT_COUNT) {
		if (reply->type != REDIS_REPLY_STRING || reply->len != SHA_LEN) {
			conn_error(c, "SCRIPT LOAD: unexpected reply");
			conn_drop(c, true);
			return;
		}
		memcpy(c->sha[tag], reply->str, SHA_LEN);
		c->sha[tag][SHA_LEN] = '\0';
	}
	if (--c->handshake_left == 0) {
		c->state = CONN_READY;
		c->backoff_ms = BACKOFF_MIN_MS;
		timer_stop(c->handshake_ev);
	}
}

static void conn_connect(struct queue_conn *c)
{
	redisAsyncContext *ac;
	if (c->address.is_unix)
		ac = redisAsyncConnectUnix(c->address.path);
	else
		ac = redisAsyncConnect(c->address.host, c->address.port);
	if (ac == NULL) {
		conn_error(c, "redisAsyncConnect: out of memory");
		conn_schedule_retry(c);
		return;
	}
	if (ac->err != 0) {
		conn_error(c, "redisAsyncConnect: %s", ac->errstr);
		redisAsyncFree(ac); /* not attached, no callbacks */
		conn_schedule_retry(c);
		return;
	}
	ac->data = c;
	if (redisLibeventAttach(ac, c->base) != REDIS_OK ||
	    redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
	    redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK) {
		conn_error(c, "redisLibeventAttach failed");
		ac->data = NULL;
		redisAsyncFree(ac);
		conn_schedule_retry(c);
		return;
	}
	c->ac = ac;
	c->state = CONN_HANDSHAKE;
	c->handshake_left = 0;
	/* Commands wait in hiredis' output buffer until the socket connects. */
	if (c->password != NULL) {
		const char *argv[2] = {"AUTH", c->password};
		size_t lens[2] = {4, strlen(c->password)};
		if (redisAsyncCommandArgv(ac, on_handshake, (void *)(uintptr_t)TAG_AUTH, 2, argv,
		                          lens) != REDIS_OK)
			goto fail;
		c->handshake_left++;
	}
	for (unsigned i = 0; i < SCRIPT_COUNT; i++) {
		const char *argv[3] = {"SCRIPT", "LOAD", script_text[i]};
		size_t lens[3] = {6, 4, strlen(script_text[i])};
		if (redisAsyncCommandArgv(ac, on_handshake, (void *)(uintptr_t)i, 3, argv, lens) !=
		    REDIS_OK)
			goto fail;
		c->handshake_left++;
	}
	struct timeval tv = ms_to_timeval(c->timeout_ms);
	if (evtimer_add(c->handshake_ev, &tv) == -1)
		goto fail;
	return;
fail:
	conn_error(c, "queueing the handshake failed");
	conn_drop(c, false);
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
	redisReply *reply = reply_;
	struct request *r = privdata;
	struct queue_conn *c = r->conn;
	if (c == NULL) { /* answered by queue_conn_free */
		request_free(r);
		return;
	}
	conn_enter(c);
	enum queue_result res;
	if (reply == NULL) {
		/* ac is being freed: by us (conn_drop, conn_reap) or by hiredis on an error. */
		if (c->ac == ac) {
			ac->data = NULL;
			conn_error(c, "connection lost: %s",
			           ac->errstr[0] != '\0' ? ac->errstr : "closed");
			conn_lost(c);
		} else {
			conn_forget_dying(c, ac);
		}
		res = QUEUE_UNAVAILABLE;
	} else {
		c->last_latency_us = monotonic_us() - r->sent_us;
		if (reply->type == REDIS_REPLY_ERROR && !r->retried &&
		    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
			/* Someone flushed the script cache: run it by text, once. */
			r->retried = true;
			if (request_resend_eval(r, ac) == 0) {
				conn_leave(c);
				return;
			}
			res = QUEUE_UNAVAILABLE;
		} else if (reply->type == REDIS_REPLY_ERROR) {
			conn_error(c, "script error: %.200s", reply->str);
			res = result_of_error(reply->str);
		} else {
			res = result_of_reply(r->kind, reply);
			if (res == QUEUE_UNAVAILABLE)
				conn_error(c, "script reply of an unexpected shape");
		}
	}
	request_unlink(c, r);
	timer_stop(r->timer);
	r->conn = NULL;
	request_answer(r, res, res == QUEUE_OK ? reply : NULL);
	request_free(r);
	conn_leave(c);
}

struct queue_conn *queue_conn_new(struct event_base *base, const struct queue_settings *s)
{
	if (base == NULL || s == NULL || s->timeout_ms <= 0)
		return NULL;
	struct queue_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base = base;
	c->timeout_ms = s->timeout_ms;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->state = CONN_DOWN;
	if (queue_address_parse(s->address, &c->address, c->last_error, sizeof(c->last_error)) ==
	    -1)
		goto fail;
	if (s->password != NULL && s->password[0] != '\0') {
		c->password = strdup(s->password);
		if (c->password == NULL)
			goto fail;
	}
	c->retry_ev = evtimer_new(base, on_retry, c);
	c->handshake_ev = evtimer_new(base, on_handshake_timeout, c);
	c->reap_ev = evtimer_new(base, on_reap, c);
	if (c->retry_ev == NULL || c->handshake_ev == NULL || c->reap_ev == NULL)
		goto fail;
	conn_connect(c);
	return c;
fail:
	if (c->retry_ev != NULL)
		event_free(c->retry_ev);
	if (c->handshake_ev != NULL)
		event_free(c->handshake_ev);
	if (c->reap_ev != NULL)
		event_free(c->reap_ev);
	conn_destroy(c);
	return NULL;
}

void queue_conn_free(struct queue_conn *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = true;
	conn_enter(c);
	/* Answer everything first, in order; the requests stay with hiredis, detached, and
	 * free themselves when their callback runs. */
	while (c->head != NULL) {
		struct request *r = c->head;
		request_unlink(c, r);
		timer_stop(r->timer);
		r->conn = NULL;
		request_answer(r, QUEUE_UNAVAILABLE, NULL);
	}
	event_free(c->retry_ev);
	event_free(c->handshake_ev);
	event_free(c->reap_ev);
	c->retry_ev = c->handshake_ev = c->reap_ev = NULL;
	redisAsyncContext *live = c->ac, *dying = c->dying;
	c->ac = c->dying = NULL;
	/* Called from one of this context's callbacks, hiredis defers the free until that
	 * callback returns; there is no later event-loop turn we could wait for here. */
	if (live != NULL) {
		live->data = NULL;
		redisAsyncFree(live);
	}
	if (dying != NULL) {
		dying->data = NULL;
		redisAsyncFree(dying);
	}
	conn_leave(c);
}

bool queue_conn_ready(const struct queue_conn *c)
{
	return c != NULL && !c->closing && c->state == CONN_READY && c->ac != NULL;
}

uint64_t queue_conn_last_latency_us(const struct queue_conn *c)
{
	return c != NULL ? c->last_latency_us : 0;
}

const char *queue_conn_last_error(const struct queue_conn *c)
{
	return c != NULL ? c->last_error : "";
}

/* ---- requests of the daemon ---- */

/* Contract in internal.h; sched.c and sched_admin.c check ids with it too. */
bool queue_id_valid(const char *id)
{
	if (id == NULL || strnlen(id, 17) != 16)
		return false;
	for (size_t i = 0; i < 16; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static bool name_valid(const char *s, size_t max)
{
	if (s == NULL)
		return false;
	size_t len = strlen(s);
	return len >= 1 && len <= max;
}

/* Sends a built request or frees it. Returns 0 or -1 (callback never called). */
static int request_submit(struct request *r)
{
	if (request_send(r) == -1) {
		request_free(r);
		return -1;
	}
	return 0;
}

int queue_commit(struct queue_conn *c, const struct queue_message *m, queue_done_fn *cb,
                 uint64_t ref, void *arg)
{
	if (!queue_conn_ready(c) || m == NULL || cb == NULL || !queue_id_valid(m->id) ||
	    m->sender == NULL || m->user == NULL || m->client_ip == NULL || m->helo == NULL ||
	    (m->body == NULL && m->body_len > 0) || m->rcpts == NULL || m->nrcpts == 0 ||
	    m->nrcpts > INT_MAX / 2)
		return -1;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].address == NULL || m->rcpts[i].domain == NULL ||
		    m->rcpts[i].domain[0] == '\0')
			return -1;
	if (!queue_campaign_valid(m->campaign))
		return -1;
	struct request *r = request_new(c, REQUEST_COMMIT, SCRIPT_COMMIT, ref, arg);
	if (r == NULL)
		return -1;
	r->cb.done = cb;
	size_t est = m->body_len + 512 + m->nrcpts * 160;
	if (buf_reserve(&r->cmd, est) == -1 || request_arg_str(r, "7") == -1 ||
	    request_arg_key(r, "pst:msg:", m->id) == -1 ||
	    request_arg_key(r, "pst:body:", m->id) == -1 ||
	    request_arg_key(r, "pst:rcpt:", m->id) == -1 || request_arg_str(r, "pst:sched") == -1 ||
	    request_arg_str(r, "pst:msgs") == -1 || request_arg_str(r, "pst:stat") == -1 ||
	    request_arg_key(r, "pst:supp:", m->user) == -1 || request_arg_str(r, m->id) == -1 ||
	    request_arg_str(r, m->sender) == -1 || request_arg_str(r, m->user) == -1 ||
	    request_arg_str(r, m->client_ip) == -1 || request_arg_str(r, m->helo) == -1 ||
	    request_arg_i64(r, m->received_ms) == -1 ||
	    request_arg_i64(r, (int64_t)m->body_len) == -1 ||
	    request_arg_str(r, m->smtputf8 ? "1" : "0") == -1 ||
	    request_arg_str(r, m->body_8bit ? "1" : "0") == -1 ||
	    request_arg(r, m->body != NULL ? m->body : "", m->body_len) == -1 ||
	    request_arg_str(r, m->campaign != NULL ? m->campaign : "") == -1 ||
	    request_arg_i64(r, c->max_queued) == -1 || request_arg_i64(r, (int64_t)m->nrcpts) == -1)
		goto fail;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (request_arg_str(r, m->rcpts[i].address) == -1 ||
		    request_arg_str(r, m->rcpts[i].domain) == -1)
			goto fail;
	return request_submit(r);
fail:
	request_free(r);
	return -1;
}

int queue_user_lookup(struct queue_conn *c, const char *name, const char *ip, queue_user_fn *cb,
                      uint64_t ref, void *arg)
{
	if (!queue_conn_ready(c) || cb == NULL || !name_valid(name, QUEUE_NAME_MAX) ||
	    !name_valid(ip, QUEUE_IP_MAX))
		return -1;
	struct request *r = request_new(c, REQUEST_USER, SCRIPT_USER, ref, arg);
	if (r == NULL)
		return -1;
	r->cb.user = cb;
	if (request_arg_str(r, "3") == -1 || request_arg_key(r, "pst:user:", name) == -1 ||
	    request_arg_key(r, "pst:authfail:ip:", ip) == -1 ||
	    request_arg_key(r, "pst:authfail:user:", name) == -1) {
		request_free(r);
		return -1;
	}
	return request_submit(r);
}

int queue_auth_record(struct queue_conn *c, const char *name, const char *ip, bool success,
                      unsigned window_s, queue_done_fn *cb, uint64_t ref, void *arg)
{
	if (!queue_conn_ready(c) || !name_valid(name, QUEUE_NAME_MAX) ||
	    !name_valid(ip, QUEUE_IP_MAX) || window_s == 0)
		return -1;
	struct request *r = request_new(c, REQUEST_AUTH, SCRIPT_AUTH, ref, arg);
	if (r == NULL)
		return -1;
	r->cb.done = cb;
	if (request_arg_str(r, "2") == -1 || request_arg_key(r, "pst:authfail:ip:", ip) == -1 ||
	    request_arg_key(r, "pst:authfail:user:", name) == -1 ||
	    request_arg_str(r, success ? "1" : "0") == -1 ||
	    request_arg_i64(r, (int64_t)window_s) == -1) {
		request_free(r);
		return -1;
	}
	return request_submit(r);
}

int queue_allownets_load(struct queue_conn *c, queue_allownets_fn *cb, uint64_t ref, void *arg)
{
	if (!queue_conn_ready(c) || cb == NULL)
		return -1;
	struct request *r = request_new(c, REQUEST_NETS, SCRIPT_NETS, ref, arg);
	if (r == NULL)
		return -1;
	r->cb.nets = cb;
	if (request_arg_str(r, "1") == -1 || request_arg_str(r, "pst:allownets") == -1 ||
	    request_arg_str(r, "pst:user:") == -1) {
		request_free(r);
		return -1;
	}
	return request_submit(r);
}

void queue_conn_set_max_queued(struct queue_conn *c, int64_t max_recipients)
{
	if (c != NULL)
		c->max_queued = max_recipients > 0 ? max_recipients : 0;
}

/* ---- raw requests (internal.h): the scheduling script, replies parsed by the caller ---- */

/* struct queue_request is struct request seen from sched.c and limits.c. */
static struct request *request_of(struct queue_request *q)
{
	return (struct request *)(void *)q;
}

struct queue_request *queue_request_new(struct queue_conn *c, const char *op, queue_raw_fn *cb,
                                        void *ctx)
{
	if (!queue_conn_ready(c) || op == NULL || cb == NULL)
		return NULL;
	struct request *r = request_new(c, REQUEST_RAW, SCRIPT_SCHED, 0, NULL);
	if (r == NULL)
		return NULL;
	r->cb.raw = cb;
	r->raw_ctx = ctx;
	if (request_arg_str(r, "0") == -1 || request_arg_str(r, op) == -1) {
		request_free(r);
		return NULL;
	}
	return (struct queue_request *)(void *)r;
}

int queue_request_add(struct queue_request *q, const void *data, size_t len)
{
	return request_arg(request_of(q), data, len);
}

int queue_request_add_str(struct queue_request *q, const char *s)
{
	return request_arg_str(request_of(q), s);
}

int queue_request_add_i64(struct queue_request *q, int64_t v)
{
	return request_arg_i64(request_of(q), v);
}

int queue_request_send(struct queue_request *q)
{
	struct request *r = request_of(q);
	if (!queue_conn_ready(r->conn)) {
		request_free(r);
		return -1;
	}
	return request_submit(r);
}

void queue_request_discard(struct queue_request *q)
{
	if (q != NULL)
		request_free(request_of(q));
}
