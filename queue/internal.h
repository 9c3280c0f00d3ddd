/*
 * internal.h: helpers shared by the files of queue/ only (not part of its API): error text,
 * the scheduling script's text, and raw script requests on the async connection, which
 * sched.c and limits.c use to run the scheduling script and parse its replies themselves.
 */
#ifndef POSTINO_QUEUE_INTERNAL_H
#define POSTINO_QUEUE_INTERNAL_H

#include "queue/queue.h"

#include <stddef.h>
#include <stdint.h>

struct redisReply;
struct redisContext;
struct queue_request;

/* Formats a reason into err (no-op when err is NULL or errlen is 0). */
void queue_error_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lua shared by the commit and scheduling scripts: count(ty, user, addr, campaign, class, ms)
 * adds 1 to the counters of one recipient event (queue/README.md, Counters): the minute, hour
 * and day buckets of ms, each by all ("a|TYPE"), user ("u|TYPE|USER"), recipient domain
 * ("d|TYPE|DOMAIN") and campaign ("c|TYPE|CAMPAIGN"), and "a|TYPE_CLASS" when a class is
 * given; a bucket expires after its retention (2 days, 90 days, 2 years). */
#define QUEUE_LUA_COUNT                                                                            \
	"local CNT = {{'m', 60, 172800}, {'h', 3600, 7776000}, {'d', 86400, 63072000}}\n"          \
	"local function count(ty, user, addr, campaign, class, ms)\n"                              \
	"  local dom = string.lower(string.match(addr, '@([^@]*)$') or '')\n"                      \
	"  local sec = math.floor(ms / 1000)\n"                                                    \
	"  for _, g in ipairs(CNT) do\n"                                                           \
	"    local key = 'pst:cnt:' .. g[1] .. ':' .. string.format('%d', sec - sec % g[2])\n"     \
	"    local f = {'a|' .. ty, 'u|' .. ty .. '|' .. user, 'd|' .. ty .. '|' .. dom}\n"        \
	"    if campaign ~= '' then f[#f + 1] = 'c|' .. ty .. '|' .. campaign end\n"               \
	"    if class ~= nil and class ~= '' then f[#f + 1] = 'a|' .. ty .. '_' .. class end\n"    \
	"    for _, x in ipairs(f) do redis.call('HINCRBY', key, x, 1) end\n"                      \
	"    redis.call('EXPIRE', key, g[3], 'NX')\n"                                              \
	"  end\n"                                                                                  \
	"end\n"

/* Lua shared by the commit and scheduling scripts: suppression entries (queue/README.md,
 * Suppression). A value is "<created_ms> <expires_ms or 0> <class> <source> <reason>";
 * supp_parse(v) makes it a table {created, expires, class, source, reason}, nil when v is nil
 * or malformed; supp_live(v, now) is that table when the entry applies at now (no expiry, or
 * one still ahead), else nil. */
#define QUEUE_LUA_SUPP                                                                             \
	"local function supp_parse(v)\n"                                                           \
	"  if not v then return nil end\n"                                                         \
	"  local c, x, cl, src, why = string.match(v, '^(%d+) (%d+) (%S+) (%S+) ?(.*)$')\n"        \
	"  if not c then return nil end\n"                                                         \
	"  return {created = tonumber(c), expires = tonumber(x), class = cl, source = src,\n"      \
	"    reason = why}\n"                                                                      \
	"end\n"                                                                                    \
	"local function supp_live(v, now)\n"                                                       \
	"  local e = supp_parse(v)\n"                                                              \
	"  if e and (e.expires == 0 or e.expires > now) then return e end\n"                       \
	"  return nil\n"                                                                           \
	"end\n"

/* The scheduling script (sched_script.c): ARGV[1] names the operation, no KEYS. Loaded by
 * every async connection; run with EVAL/EVALSHA by the admin side. */
extern const char queue_script_sched[];

/* Called exactly once per sent raw request: with QUEUE_OK and the script's (non-error)
 * reply, borrowed for the call; or with another result and reply NULL (error reply, timeout,
 * lost connection, queue_conn_free). ctx is the caller's; the callback owns it from then on
 * and frees it. */
typedef void queue_raw_fn(enum queue_result res, const struct redisReply *reply, void *ctx);

/* Starts a request running the scheduling script's operation op (its first argument).
 * Returns NULL when c is not ready or memory is short (ctx stays the caller's). */
struct queue_request *queue_request_new(struct queue_conn *c, const char *op, queue_raw_fn *cb,
                                        void *ctx);
/* Append one argument each. Return 0, or -1 (out of memory; the request is still valid and
 * must be discarded). */
int queue_request_add(struct queue_request *r, const void *data, size_t len);
int queue_request_add_str(struct queue_request *r, const char *s);
int queue_request_add_i64(struct queue_request *r, int64_t v);
/* Sends r. Returns 0: cb will be called exactly once. Returns -1: r is freed, cb will never
 * be called and ctx is the caller's again. */
int queue_request_send(struct queue_request *r);
/* Frees an unsent request (NULL is a no-op); ctx stays the caller's. */
void queue_request_discard(struct queue_request *r);

/* A site name as the scheduler stores it: 1..QUEUE_SITE_MAX bytes of 0x21..0x7e, no '|'
 * (it separates the parts of ready-queue keys). */
bool queue_site_valid(const char *site);

/* True for NULL, "", or 1..max bytes of 0x21..0x7e (printable ASCII, no space): campaign
 * ids, suppression sources. */
bool queue_word_valid(const char *s, size_t max);

/* A message id as queue/ writes it: exactly 16 lowercase hex digits. NULL is invalid. */
bool queue_id_valid(const char *id);

/* Reply parsing shared by sched.c and limits.c (defined in sched.c). queue_reply_int64 reads
 * an integer reply, or a string reply holding a decimal number that fits in int64_t, into
 * *out; false (and *out untouched) otherwise. queue_reply_ints does the same for each element
 * of an array reply of exactly n elements; false when reply is NULL, not such an array or an
 * element is not a number (out may then be partly written). */
bool queue_reply_int64(const struct redisReply *e, int64_t *out);
bool queue_reply_ints(const struct redisReply *reply, int64_t *out, size_t n);
/* v clamped to 0..UINT32_MAX, for counts a reply carries as int64_t. */
unsigned queue_count_clamp(int64_t v);

/* A user name as the admin side accepts it (admin.c): 1..QUEUE_NAME_MAX bytes of
 * [A-Za-z0-9._@+-]. */
bool queue_user_name_valid(const char *name);

/* The blocking connection's hiredis context (admin.c), for sched_admin.c. */
struct redisContext *queue_admin_context(struct queue_admin *a);
/* Runs one command on the blocking connection (admin.c). Returns the reply (caller frees with
 * freeReplyObject), or NULL with err set on an I/O error, a timeout or an error reply (whose
 * text goes into err). */
struct redisReply *queue_admin_call(struct queue_admin *a, int argc, const char **argv,
                                    const size_t *lens, char *err, size_t errlen);

/* The scheduling script on the blocking connection (sched_admin.c), for the admin commands
 * of sched_admin.c and suppress.c: load it once per command, then run operations by SHA (a
 * NOSCRIPT reply loads it again, once). */
#define QUEUE_SHA_LEN 40 /* a script's SHA1, in hex */
struct queue_sched_admin {
	struct queue_admin *admin;
	char sha[QUEUE_SHA_LEN + 1];
	char events_max[24]; /* the default policy's events_max, as an argument */
};
/* Returns 0, or -1 with err. */
int queue_sched_admin_load(struct queue_sched_admin *s, struct queue_admin *a, char *err,
                           size_t errlen);
/* Runs the operation args[0] with args[1..n-1] (C strings). Returns the reply (caller frees)
 * or NULL with err (the script's error text, e.g. "no such message"). */
struct redisReply *queue_sched_admin_run(struct queue_sched_admin *s, const char *const *args,
                                         size_t n, char *err, size_t errlen);

#endif
