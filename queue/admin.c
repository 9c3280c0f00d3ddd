/*
 * admin.c: the blocking side of Postino's Redis store, for postinoctl and start-up checks.
 * It owns the blocking connection (connect with a timeout, AUTH, a read/write timeout on
 * every command), the durability check, the user records with their allowed-network index
 * (kept in step by Lua scripts, so each change is atomic), the queue listing and body
 * fetching. The key schema is in queue.c and queue/README.md.
 *
 * Scripts here run with EVAL: the tool runs a handful of commands, so caching by SHA would
 * only add a NOSCRIPT path. Every script checks first and writes after, so a refusal (an
 * error reply, or OOM on the first write) leaves Redis unchanged.
 */
#include "queue/queue.h"
#include "queue/internal.h"
#include "relay/buf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#define ADMIN_TIMEOUT_MS 5000
#define PWHASH_MAX       1024
#define LIST_MAX         65536 /* bytes of a normalised domains or networks list */
#define PIPELINE         100   /* messages fetched per round trip by queue_admin_show */

struct queue_admin {
	redisContext *ctx;
};

/* KEYS: user users allownets. ARGV: name create pw domains allow_nets only_nets. */
static const char script_user_put[] =
    "local exists = redis.call('EXISTS', KEYS[1]) == 1\n"
    "if ARGV[2] == '1' and exists then\n"
    "  return redis.error_reply('user ' .. ARGV[1] .. ' exists')\n"
    "end\n"
    "local nets = {}\n"
    "for net in string.gmatch(ARGV[5], '%S+') do\n"
    "  local owner = redis.call('HGET', KEYS[3], net)\n"
    "  if owner and owner ~= ARGV[1] then\n"
    "    return redis.error_reply('network ' .. net .. ' belongs to user ' .. owner)\n"
    "  end\n"
    "  nets[#nets + 1] = net\n"
    "end\n"
    "local old = {}\n"
    "if exists then\n"
    "  for net in string.gmatch(redis.call('HGET', KEYS[1], 'allow_nets') or '', '%S+') do\n"
    "    old[#old + 1] = net\n"
    "  end\n"
    "end\n"
    "local fields = {'pw', ARGV[3], 'domains', ARGV[4], 'allow_nets', ARGV[5],\n"
    "  'only_nets', ARGV[6]}\n"
    "if not exists then\n"
    "  local t = redis.call('TIME')\n"
    "  fields[#fields + 1] = 'created'\n"
    "  fields[#fields + 1] = string.format('%d',\n"
    "    tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(fields))\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "for _, net in ipairs(old) do\n"
    "  if redis.call('HGET', KEYS[3], net) == ARGV[1] then redis.call('HDEL', KEYS[3], net) end\n"
    "end\n"
    "for _, net in ipairs(nets) do redis.call('HSET', KEYS[3], net, ARGV[1]) end\n"
    "return 1\n";

/* KEYS: user users allownets authfail_user. ARGV: name. */
static const char script_user_del[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('no such user') end\n"
    "local nets = redis.call('HGET', KEYS[1], 'allow_nets') or ''\n"
    "redis.call('DEL', KEYS[1], KEYS[4])\n"
    "redis.call('SREM', KEYS[2], ARGV[1])\n"
    "for net in string.gmatch(nets, '%S+') do\n"
    "  if redis.call('HGET', KEYS[3], net) == ARGV[1] then redis.call('HDEL', KEYS[3], net) end\n"
    "end\n"
    "return 1\n";

/* KEYS: user. ARGV: pwhash. */
static const char script_user_passwd[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('no such user') end\n"
    "redis.call('HSET', KEYS[1], 'pw', ARGV[1])\n"
    "return 1\n";

static int out_printf(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int out_printf(FILE *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vfprintf(out, fmt, ap);
	va_end(ap);
	return n < 0 ? -1 : 0;
}

/* Contract in internal.h (queue_admin_call). */
static redisReply *admin_call(struct queue_admin *a, int argc, const char **argv,
                              const size_t *lens, char *err, size_t errlen)
{
	redisReply *reply = redisCommandArgv(a->ctx, argc, argv, lens);
	if (reply == NULL) {
		queue_error_set(err, errlen, "redis %s: %s", argv[0],
		                a->ctx->errstr[0] != '\0' ? a->ctx->errstr : "no reply");
		return NULL;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		queue_error_set(err, errlen, "%s", reply->str);
		freeReplyObject(reply);
		return NULL;
	}
	return reply;
}

/* Reads the replies of count pipelined commands into replies[] (error replies included; the
 * caller frees each). Always reads all of them, so that the next command's reply is its own.
 * Returns 0, or -1 with err on an I/O error or a timeout (the connection is unusable then, and
 * replies[] holds nothing to free). */
static int admin_collect(struct queue_admin *a, redisReply **replies, size_t count, char *err,
                         size_t errlen)
{
	for (size_t i = 0; i < count; i++) {
		void *r = NULL;
		if (redisGetReply(a->ctx, &r) != REDIS_OK || r == NULL) {
			queue_error_set(err, errlen, "redis: %s",
			                a->ctx->errstr[0] != '\0' ? a->ctx->errstr : "no reply");
			for (size_t j = 0; j < i; j++) {
				freeReplyObject(replies[j]);
				replies[j] = NULL;
			}
			return -1;
		}
		replies[i] = r;
	}
	return 0;
}

static void replies_free(redisReply **replies, size_t count)
{
	if (replies == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		if (replies[i] != NULL)
			freeReplyObject(replies[i]);
	free(replies);
}

static int admin_append(struct queue_admin *a, int argc, const char **argv, const size_t *lens,
                        char *err, size_t errlen)
{
	if (redisAppendCommandArgv(a->ctx, argc, argv, lens) != REDIS_OK) {
		queue_error_set(err, errlen, "redisAppendCommandArgv: %s", a->ctx->errstr);
		return -1;
	}
	return 0;
}

static void lens_of(int argc, const char **argv, size_t *lens)
{
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
}

/* "<prefix><name>" into buf; -1 when it does not fit. */
static int key_make(char *buf, size_t len, const char *prefix, const char *name)
{
	int n = snprintf(buf, len, "%s%s", prefix, name);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int parse_i64(const char *s, int64_t *out)
{
	if (s == NULL || s[0] == '\0')
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* ---- connection ---- */

struct queue_admin *queue_admin_connect(const struct queue_settings *s, char *err, size_t errlen)
{
	struct queue_address addr;
	if (s == NULL) {
		queue_error_set(err, errlen, "no settings");
		return NULL;
	}
	if (queue_address_parse(s->address, &addr, err, errlen) == -1)
		return NULL;
	int ms = s->timeout_ms > 0 ? s->timeout_ms : ADMIN_TIMEOUT_MS;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	redisContext *ctx = addr.is_unix ? redisConnectUnixWithTimeout(addr.path, tv)
	                                 : redisConnectWithTimeout(addr.host, addr.port, tv);
	if (ctx == NULL) {
		queue_error_set(err, errlen, "redisConnect: out of memory");
		return NULL;
	}
	if (ctx->err != 0) {
		queue_error_set(err, errlen, "connect to %s: %s", s->address, ctx->errstr);
		redisFree(ctx);
		return NULL;
	}
	if (redisSetTimeout(ctx, tv) != REDIS_OK) {
		queue_error_set(err, errlen, "redisSetTimeout: %s", ctx->errstr);
		redisFree(ctx);
		return NULL;
	}
	struct queue_admin *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		queue_error_set(err, errlen, "out of memory");
		redisFree(ctx);
		return NULL;
	}
	a->ctx = ctx;
	if (s->password != NULL && s->password[0] != '\0') {
		const char *argv[2] = {"AUTH", s->password};
		size_t lens[2];
		lens_of(2, argv, lens);
		redisReply *r = admin_call(a, 2, argv, lens, err, errlen);
		if (r == NULL) {
			queue_admin_free(a);
			return NULL;
		}
		freeReplyObject(r);
	}
	return a;
}

struct redisContext *queue_admin_context(struct queue_admin *a)
{
	return a->ctx;
}

redisReply *queue_admin_call(struct queue_admin *a, int argc, const char **argv, const size_t *lens,
                             char *err, size_t errlen)
{
	return admin_call(a, argc, argv, lens, err, errlen);
}

void queue_admin_free(struct queue_admin *a)
{
	if (a == NULL)
		return;
	redisFree(a->ctx);
	free(a);
}

/* Appends "; <text>" (or "<text>" first) to err, truncating. */
static void err_append(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_append(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	size_t used = strnlen(err, errlen);
	if (used + 1 >= errlen)
		return;
	if (used > 0) {
		int n = snprintf(err + used, errlen - used, "; ");
		if (n < 0)
			return;
		used = strnlen(err, errlen);
	}
	va_list ap;
	va_start(ap, fmt);
	if (vsnprintf(err + used, errlen - used, fmt, ap) < 0)
		err[used] = '\0';
	va_end(ap);
}

int queue_admin_check_durable(struct queue_admin *a, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		const char *want;
	} settings[] = {
	    {"appendonly", "yes"},
	    {"appendfsync", "always"},
	    {"maxmemory-policy", "noeviction"},
	};
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	bool unsafe = false;
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const char *argv[3] = {"CONFIG", "GET", settings[i].name};
		size_t lens[3];
		lens_of(3, argv, lens);
		char why[256] = "";
		redisReply *r = admin_call(a, 3, argv, lens, why, sizeof(why));
		if (r == NULL) {
			err_append(err, errlen, "CONFIG GET %s failed (%s): cannot prove %s %s",
			           settings[i].name, why, settings[i].name, settings[i].want);
			unsafe = true;
			continue;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[1]->type != REDIS_REPLY_STRING) {
			err_append(err, errlen, "CONFIG GET %s gave no value: want %s",
			           settings[i].name, settings[i].want);
			unsafe = true;
		} else if (strcmp(r->element[1]->str, settings[i].want) != 0) {
			err_append(err, errlen, "%s is %s, want %s", settings[i].name,
			           r->element[1]->str, settings[i].want);
			unsafe = true;
		}
		freeReplyObject(r);
	}
	return unsafe ? -1 : 0;
}

/* ---- users ---- */

/* Contract in internal.h. */
bool queue_user_name_valid(const char *name)
{
	size_t len = name != NULL ? strlen(name) : 0;
	if (len == 0 || len > QUEUE_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '@' ||
		          ch == '+' || ch == '-';
		if (!ok)
			return false;
	}
	return true;
}

static bool pwhash_valid(const char *pw)
{
	size_t len = pw != NULL ? strlen(pw) : 0;
	if (len == 0 || len > PWHASH_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)pw[i] <= ' ' || (unsigned char)pw[i] >= 0x7f)
			return false;
	return true;
}

static bool domain_valid(const char *s, size_t len)
{
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
		if (!ok)
			return false;
	}
	return true;
}

/* "address/length", IPv4 or IPv6, length within the family's bits. */
static bool cidr_valid(const char *s, size_t len)
{
	char tmp[INET6_ADDRSTRLEN + 5];
	if (len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	char *slash = strchr(tmp, '/');
	if (slash == NULL || slash[1] == '\0' || strlen(slash + 1) > 3)
		return false;
	*slash = '\0';
	int bits = 0;
	for (const char *p = slash + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		bits = bits * 10 + (*p - '0');
	}
	unsigned char addr[16];
	if (inet_pton(AF_INET, tmp, addr) == 1)
		return bits <= 32;
	if (inet_pton(AF_INET6, tmp, addr) == 1)
		return bits <= 128;
	return false;
}

/* Splits in at spaces and tabs, checks each item, and writes them to out separated by single
 * spaces (domains lowercased). Returns 0, or -1 with err naming the bad item. */
static int list_normalize(const char *what, const char *in, bool is_domain, struct buf *out,
                          char *err, size_t errlen)
{
	buf_reset(out);
	if (buf_append(out, "", 0) == -1) {
		queue_error_set(err, errlen, "out of memory");
		return -1;
	}
	const char *p = in != NULL ? in : "";
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		size_t len = strcspn(p, " \t");
		bool ok = is_domain ? domain_valid(p, len) : cidr_valid(p, len);
		if (!ok) {
			queue_error_set(err, errlen, "bad %s item \"%.*s\"", what,
			                (int)(len > 80 ? 80 : len), p);
			return -1;
		}
		if ((out->len > 0 && buf_append(out, " ", 1) == -1) ||
		    buf_append(out, p, len) == -1 || out->len > LIST_MAX) {
			queue_error_set(err, errlen, "%s list too long", what);
			return -1;
		}
		if (is_domain)
			for (size_t i = out->len - len; i < out->len; i++)
				if (out->data[i] >= 'A' && out->data[i] <= 'Z')
					out->data[i] = (char)(out->data[i] - 'A' + 'a');
		p += len;
	}
	return 0;
}

/* Runs a script; returns 0, or -1 with the script's error text (or the I/O error) in err. */
static int admin_eval(struct queue_admin *a, const char *script, int nkeys, const char **keys,
                      int nargs, const char **args, char *err, size_t errlen)
{
	const char *argv[16];
	size_t lens[16];
	if (3 + nkeys + nargs > 16)
		return -1;
	char numkeys[8];
	if (snprintf(numkeys, sizeof(numkeys), "%d", nkeys) < 0)
		return -1;
	int argc = 0;
	argv[argc++] = "EVAL";
	argv[argc++] = script;
	argv[argc++] = numkeys;
	for (int i = 0; i < nkeys; i++)
		argv[argc++] = keys[i];
	for (int i = 0; i < nargs; i++)
		argv[argc++] = args[i];
	lens_of(argc, argv, lens);
	redisReply *r = admin_call(a, argc, argv, lens, err, errlen);
	if (r == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

int queue_admin_user_put(struct queue_admin *a, const struct queue_user *u, bool create, char *err,
                         size_t errlen)
{
	if (u == NULL || !queue_user_name_valid(u->name)) {
		queue_error_set(err, errlen, "bad user name");
		return -1;
	}
	if (!pwhash_valid(u->pwhash)) {
		queue_error_set(err, errlen, "bad password hash");
		return -1;
	}
	struct buf domains = BUF_INIT, allow = BUF_INIT, only = BUF_INIT;
	int rc = -1;
	char kuser[QUEUE_NAME_MAX + 16];
	if (list_normalize("domains", u->domains, true, &domains, err, errlen) == -1 ||
	    list_normalize("allow_nets", u->allow_nets, false, &allow, err, errlen) == -1 ||
	    list_normalize("only_nets", u->only_nets, false, &only, err, errlen) == -1)
		goto out;
	if (key_make(kuser, sizeof(kuser), "pst:user:", u->name) == -1)
		goto out;
	const char *keys[3] = {kuser, "pst:users", "pst:allownets"};
	const char *args[6] = {u->name,      create ? "1" : "0", u->pwhash,
	                       domains.data, allow.data,         only.data};
	rc = admin_eval(a, script_user_put, 3, keys, 6, args, err, errlen);
out:
	buf_free(&domains);
	buf_free(&allow);
	buf_free(&only);
	return rc;
}

int queue_admin_user_del(struct queue_admin *a, const char *name, char *err, size_t errlen)
{
	char kuser[QUEUE_NAME_MAX + 16], kfail[QUEUE_NAME_MAX + 32];
	if (!queue_user_name_valid(name)) {
		queue_error_set(err, errlen, "no such user");
		return -1;
	}
	if (key_make(kuser, sizeof(kuser), "pst:user:", name) == -1 ||
	    key_make(kfail, sizeof(kfail), "pst:authfail:user:", name) == -1)
		return -1;
	const char *keys[4] = {kuser, "pst:users", "pst:allownets", kfail};
	const char *args[1] = {name};
	return admin_eval(a, script_user_del, 4, keys, 1, args, err, errlen);
}

int queue_admin_user_passwd(struct queue_admin *a, const char *name, const char *pwhash, char *err,
                            size_t errlen)
{
	char kuser[QUEUE_NAME_MAX + 16];
	if (!queue_user_name_valid(name)) {
		queue_error_set(err, errlen, "no such user");
		return -1;
	}
	if (!pwhash_valid(pwhash)) {
		queue_error_set(err, errlen, "bad password hash");
		return -1;
	}
	if (key_make(kuser, sizeof(kuser), "pst:user:", name) == -1)
		return -1;
	const char *keys[1] = {kuser};
	const char *args[1] = {pwhash};
	return admin_eval(a, script_user_passwd, 1, keys, 1, args, err, errlen);
}

static int name_cmp(const void *x, const void *y)
{
	const redisReply *const *a = x;
	const redisReply *const *b = y;
	return strcmp((*a)->str, (*b)->str);
}

/* Prints s with its spaces turned into commas. */
static int print_commas(FILE *out, const char *s)
{
	for (const char *p = s; *p != '\0'; p++)
		if (fputc(*p == ' ' ? ',' : *p, out) == EOF)
			return -1;
	return 0;
}

static const char *element_str(const redisReply *r, size_t i)
{
	if (r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
	    r->element[i]->type != REDIS_REPLY_STRING)
		return "";
	return r->element[i]->str;
}

static int print_user(FILE *out, const char *name, const redisReply *u)
{
	if (out_printf(out, "%s domains=", name) == -1 ||
	    print_commas(out, element_str(u, 0)) == -1 || out_printf(out, " allow_nets=") == -1 ||
	    print_commas(out, element_str(u, 1)) == -1 || out_printf(out, " only_nets=") == -1 ||
	    print_commas(out, element_str(u, 2)) == -1 || out_printf(out, "\n") == -1)
		return -1;
	return 0;
}

int queue_admin_user_list(struct queue_admin *a, FILE *out, char *err, size_t errlen)
{
	const char *argv[2] = {"SMEMBERS", "pst:users"};
	size_t lens[2];
	lens_of(2, argv, lens);
	redisReply *names = admin_call(a, 2, argv, lens, err, errlen);
	if (names == NULL)
		return -1;
	int rc = -1;
	redisReply **users = NULL;
	size_t n = names->type == REDIS_REPLY_ARRAY ? names->elements : 0, sent = 0;
	for (size_t i = 0; i < n; i++)
		if (names->element[i]->type != REDIS_REPLY_STRING) {
			queue_error_set(err, errlen, "pst:users holds a non-string");
			goto out;
		}
	if (n == 0) {
		rc = 0;
		goto out;
	}
	qsort(names->element, n, sizeof(names->element[0]), name_cmp);
	users = calloc(n, sizeof(*users));
	if (users == NULL) {
		queue_error_set(err, errlen, "out of memory");
		goto out;
	}
	for (; sent < n; sent++) {
		char kuser[QUEUE_NAME_MAX + 16];
		if (key_make(kuser, sizeof(kuser), "pst:user:", names->element[sent]->str) == -1) {
			queue_error_set(err, errlen, "user name too long in pst:users");
			break;
		}
		const char *hm[5] = {"HMGET", kuser, "domains", "allow_nets", "only_nets"};
		size_t hl[5];
		lens_of(5, hm, hl);
		if (admin_append(a, 5, hm, hl, err, errlen) == -1)
			break;
	}
	char why[256];
	if (admin_collect(a, users, sent, why, sizeof(why)) == -1) {
		queue_error_set(err, errlen, "%s", why);
		goto out;
	}
	if (sent < n)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (users[i]->type == REDIS_REPLY_ERROR) {
			queue_error_set(err, errlen, "pst:user:%s: %s", names->element[i]->str,
			                users[i]->str);
			goto out;
		}
		if (print_user(out, names->element[i]->str, users[i]) == -1) {
			queue_error_set(err, errlen, "writing the list failed");
			goto out;
		}
	}
	rc = 0;
out:
	replies_free(users, sent);
	freeReplyObject(names);
	return rc;
}

/* ---- queue listing ---- */

static void iso8601(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		(void)snprintf(out, len, "-");
}

struct rcpt_line {
	int64_t index;
	const char *value;
};

static int rcpt_cmp(const void *x, const void *y)
{
	const struct rcpt_line *a = x, *b = y;
	return (a->index > b->index) - (a->index < b->index);
}

static bool state_is_final(const char *state, size_t len)
{
	static const char *const finals[] = {"delivered", "bounced", "expired", "suppressed",
	                                     "deleted"};
	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++)
		if (strlen(finals[i]) == len && memcmp(finals[i], state, len) == 0)
			return true;
	return false;
}

/* Prints "  <address> state=<state> attempts=<n> next=<iso8601|->" from a pst:rcpt value
 * "<state> <attempts> <next_ms> <address>". */
static int print_rcpt(FILE *out, const char *v)
{
	const char *sp1 = strchr(v, ' ');
	const char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	const char *sp3 = sp2 != NULL ? strchr(sp2 + 1, ' ') : NULL;
	char num[24];
	int64_t attempts, next_ms;
	if (sp3 == NULL || sp1 - v > 16 || sp2 - sp1 - 1 >= (ptrdiff_t)sizeof(num) ||
	    sp3 - sp2 - 1 >= (ptrdiff_t)sizeof(num))
		return out_printf(out, "  %s state=invalid attempts=0 next=-\n", v);
	memcpy(num, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	num[sp2 - sp1 - 1] = '\0';
	if (parse_i64(num, &attempts) == -1)
		return out_printf(out, "  %s state=invalid attempts=0 next=-\n", v);
	memcpy(num, sp2 + 1, (size_t)(sp3 - sp2 - 1));
	num[sp3 - sp2 - 1] = '\0';
	if (parse_i64(num, &next_ms) == -1)
		return out_printf(out, "  %s state=invalid attempts=0 next=-\n", v);
	char next[32];
	if (state_is_final(v, (size_t)(sp1 - v)))
		(void)snprintf(next, sizeof(next), "-");
	else
		iso8601(next_ms, next, sizeof(next));
	return out_printf(out, "  %s state=%.*s attempts=%" PRId64 " next=%s\n", sp3 + 1,
	                  (int)(sp1 - v), v, attempts, next);
}

/* Prints one message from its HMGET (received user sender size rcpts) and HGETALL replies.
 * A message gone meanwhile (delivered) prints nothing. */
static int print_message(FILE *out, const char *id, const redisReply *msg, const redisReply *rcpt)
{
	if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 5 ||
	    msg->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	int64_t received = 0;
	if (parse_i64(element_str(msg, 0), &received) == -1)
		received = 0;
	char when[32];
	iso8601(received, when, sizeof(when));
	const char *sender = element_str(msg, 2);
	if (out_printf(out, "%s received=%s user=%s from=%s size=%s rcpts=%s\n", id, when,
	               element_str(msg, 1), sender[0] != '\0' ? sender : "<>", element_str(msg, 3),
	               element_str(msg, 4)) == -1)
		return -1;
	if (rcpt->type != REDIS_REPLY_ARRAY || rcpt->elements < 2)
		return 0;
	size_t n = rcpt->elements / 2;
	struct rcpt_line *lines = calloc(n, sizeof(*lines));
	if (lines == NULL)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const redisReply *f = rcpt->element[2 * i], *v = rcpt->element[2 * i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    parse_i64(f->str, &lines[k].index) == -1)
			continue;
		lines[k++].value = v->str;
	}
	qsort(lines, k, sizeof(*lines), rcpt_cmp);
	int rc = 0;
	for (size_t i = 0; i < k && rc == 0; i++)
		rc = print_rcpt(out, lines[i].value);
	free(lines);
	return rc;
}

/* Fetches and prints ids [0, n) in one pipeline. */
static int show_batch(struct queue_admin *a, FILE *out, redisReply **ids, size_t n, char *err,
                      size_t errlen)
{
	char kmsg[64], krcpt[64];
	size_t sent = 0; /* commands sent: two per message */
	redisReply **replies = calloc(2 * n, sizeof(*replies));
	if (replies == NULL) {
		queue_error_set(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *id = ids[i]->str;
		if (key_make(kmsg, sizeof(kmsg), "pst:msg:", id) == -1 ||
		    key_make(krcpt, sizeof(krcpt), "pst:rcpt:", id) == -1) {
			queue_error_set(err, errlen, "bad id in pst:msgs");
			break;
		}
		const char *hm[7] = {"HMGET", kmsg, "received", "user", "sender", "size", "rcpts"};
		const char *ha[2] = {"HGETALL", krcpt};
		size_t hml[7], hal[2];
		lens_of(7, hm, hml);
		lens_of(2, ha, hal);
		if (admin_append(a, 7, hm, hml, err, errlen) == -1)
			break;
		sent++;
		if (admin_append(a, 2, ha, hal, err, errlen) == -1)
			break;
		sent++;
	}
	int rc = sent == 2 * n ? 0 : -1;
	char why[256];
	if (admin_collect(a, replies, sent, why, sizeof(why)) == -1) {
		queue_error_set(err, errlen, "%s", why);
		free(replies);
		return -1;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		redisReply *msg = replies[2 * i], *rcpt = replies[2 * i + 1];
		if (msg->type == REDIS_REPLY_ERROR || rcpt->type == REDIS_REPLY_ERROR) {
			queue_error_set(err, errlen, "message %s: %s", ids[i]->str,
			                msg->type == REDIS_REPLY_ERROR ? msg->str : rcpt->str);
			rc = -1;
		} else if (print_message(out, ids[i]->str, msg, rcpt) == -1) {
			queue_error_set(err, errlen, "writing the listing failed");
			rc = -1;
		}
	}
	replies_free(replies, sent);
	return rc;
}

int queue_admin_show(struct queue_admin *a, FILE *out, size_t limit, char *err, size_t errlen)
{
	int rc = -1;
	redisReply *ids = NULL, *count = NULL, *open = NULL;
	if (limit > 0) {
		char stop[24];
		if (snprintf(stop, sizeof(stop), "%zu", limit - 1) < 0)
			return -1;
		const char *argv[4] = {"ZRANGE", "pst:msgs", "0", stop};
		size_t lens[4];
		lens_of(4, argv, lens);
		ids = admin_call(a, 4, argv, lens, err, errlen);
		if (ids == NULL)
			return -1;
		if (ids->type != REDIS_REPLY_ARRAY) {
			queue_error_set(err, errlen, "ZRANGE pst:msgs: not an array");
			goto out;
		}
		for (size_t i = 0; i < ids->elements; i++)
			if (ids->element[i]->type != REDIS_REPLY_STRING) {
				queue_error_set(err, errlen, "pst:msgs holds a non-string");
				goto out;
			}
		for (size_t i = 0; i < ids->elements; i += PIPELINE) {
			size_t n = ids->elements - i < PIPELINE ? ids->elements - i : PIPELINE;
			if (show_batch(a, out, ids->element + i, n, err, errlen) == -1)
				goto out;
		}
	}
	const char *zc[2] = {"ZCARD", "pst:msgs"};
	const char *hg[3] = {"HGET", "pst:stat", "recipients_queued"};
	size_t zl[2], hl[3];
	lens_of(2, zc, zl);
	lens_of(3, hg, hl);
	count = admin_call(a, 2, zc, zl, err, errlen);
	open = count != NULL ? admin_call(a, 3, hg, hl, err, errlen) : NULL;
	if (open == NULL)
		goto out;
	int64_t recipients = 0;
	if (open->type == REDIS_REPLY_STRING && parse_i64(open->str, &recipients) == -1)
		recipients = 0;
	if (out_printf(out, "messages=%lld recipients=%" PRId64 "\n",
	               count->type == REDIS_REPLY_INTEGER ? count->integer : 0LL,
	               recipients) == -1) {
		queue_error_set(err, errlen, "writing the listing failed");
		goto out;
	}
	rc = 0;
out:
	if (ids != NULL)
		freeReplyObject(ids);
	if (count != NULL)
		freeReplyObject(count);
	if (open != NULL)
		freeReplyObject(open);
	return rc;
}

int queue_admin_body(struct queue_admin *a, const char *id, char **body, size_t *len, char *err,
                     size_t errlen)
{
	char kbody[64];
	*body = NULL;
	*len = 0;
	if (id == NULL || strlen(id) != 16 ||
	    key_make(kbody, sizeof(kbody), "pst:body:", id) == -1) {
		queue_error_set(err, errlen, "no such message");
		return -1;
	}
	const char *argv[2] = {"GET", kbody};
	size_t lens[2];
	lens_of(2, argv, lens);
	redisReply *r = admin_call(a, 2, argv, lens, err, errlen);
	if (r == NULL)
		return -1;
	if (r->type != REDIS_REPLY_STRING) {
		queue_error_set(err, errlen, "no such message");
		freeReplyObject(r);
		return -1;
	}
	char *copy = malloc(r->len + 1);
	if (copy == NULL) {
		queue_error_set(err, errlen, "out of memory");
		freeReplyObject(r);
		return -1;
	}
	memcpy(copy, r->str, r->len);
	copy[r->len] = '\0';
	*body = copy;
	*len = r->len;
	freeReplyObject(r);
	return 0;
}
