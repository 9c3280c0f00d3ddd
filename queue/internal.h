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

/* The blocking connection's hiredis context (admin.c), for sched_admin.c. */
struct redisContext *queue_admin_context(struct queue_admin *a);

#endif
