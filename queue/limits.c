/*
 * limits.c: shared limits in Redis (DESIGN.md promise 6) and back-pressure. A site's message
 * rate is a GCRA over Redis' clock (pst:rate:<site>: the theoretical arrival time in
 * microseconds), its connections are expiring slots in a sorted set (pst:slots:<site>), and
 * the back-pressure sample reads Redis' memory and the queue counters in one round trip. All
 * three are operations of the scheduling script (sched_script.c), so every worker on every
 * machine obeys the same limit. Owns nothing else.
 */
#include "queue/queue.h"
#include "queue/internal.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

struct limit_call {
	union {
		queue_rate_fn *rate;
		queue_slot_fn *slot;
		queue_flag_fn *flag;
		queue_pressure_fn *pressure;
	} cb;
	uint64_t ref;
	void *arg;
};

/* Starts op for a new limit_call; NULL when not ready or out of memory. */
static struct queue_request *limit_request(struct queue_conn *c, const char *op, queue_raw_fn *fn,
                                           uint64_t ref, void *arg, struct limit_call **kp)
{
	struct limit_call *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return NULL;
	k->ref = ref;
	k->arg = arg;
	struct queue_request *r = queue_request_new(c, op, fn, k);
	if (r == NULL) {
		free(k);
		return NULL;
	}
	*kp = k;
	return r;
}

static int limit_send(struct queue_request *r, struct limit_call *k)
{
	if (queue_request_send(r) == -1) {
		free(k);
		return -1;
	}
	return 0;
}

static int limit_fail(struct queue_request *r, struct limit_call *k)
{
	queue_request_discard(r);
	free(k);
	return -1;
}

static int add_u64(struct queue_request *r, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return queue_request_add(r, tmp, (size_t)n);
}

/* ---- rate ---- */

static void rate_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct limit_call *k = ctx;
	struct queue_rate_result out = {false, 0, 0};
	int64_t v[3];
	if (res == QUEUE_OK && !queue_reply_ints(reply, v, 3))
		res = QUEUE_UNAVAILABLE;
	if (res == QUEUE_OK)
		out = (struct queue_rate_result){v[0] == 1, v[1], v[2]};
	k->cb.rate(res, &out, k->ref, k->arg);
	free(k);
}

int queue_site_rate_take(struct queue_conn *c, const char *site, const struct queue_rate *rate,
                         queue_rate_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL || !queue_site_valid(site) || rate == NULL || rate->count == 0 ||
	    rate->period_ms < 1 || rate->burst < 1)
		return -1;
	struct limit_call *k;
	struct queue_request *r = limit_request(c, "rate", rate_done, ref, arg, &k);
	if (r == NULL)
		return -1;
	k->cb.rate = cb;
	if (queue_request_add_str(r, site) == -1 || queue_request_add_i64(r, rate->count) == -1 ||
	    queue_request_add_i64(r, rate->period_ms) == -1 ||
	    queue_request_add_i64(r, rate->burst) == -1)
		return limit_fail(r, k);
	return limit_send(r, k);
}

/* ---- connection slots ---- */

static void slot_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct limit_call *k = ctx;
	struct queue_slot_result out = {0, 0, 0, 0};
	int64_t v[4];
	if (res == QUEUE_OK && (!queue_reply_ints(reply, v, 4) || v[0] < 0))
		res = QUEUE_UNAVAILABLE;
	if (res == QUEUE_OK)
		out = (struct queue_slot_result){(uint64_t)v[0], queue_count_clamp(v[1]), v[2],
		                                 queue_count_clamp(v[3])};
	k->cb.slot(res, &out, k->ref, k->arg);
	free(k);
}

int queue_site_slot_acquire(struct queue_conn *c, const char *site, unsigned max, int64_t ttl_ms,
                            queue_slot_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL || !queue_site_valid(site) || max == 0 || ttl_ms < 1)
		return -1;
	struct limit_call *k;
	struct queue_request *r = limit_request(c, "slot_acquire", slot_done, ref, arg, &k);
	if (r == NULL)
		return -1;
	k->cb.slot = cb;
	if (queue_request_add_str(r, site) == -1 || queue_request_add_i64(r, max) == -1 ||
	    queue_request_add_i64(r, ttl_ms) == -1)
		return limit_fail(r, k);
	return limit_send(r, k);
}

static void flag_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct limit_call *k = ctx;
	int64_t v = 0;
	if (res == QUEUE_OK && !queue_reply_int64(reply, &v))
		res = QUEUE_UNAVAILABLE;
	if (k->cb.flag != NULL)
		k->cb.flag(res, res == QUEUE_OK && v > 0, k->ref, k->arg);
	free(k);
}

int queue_site_slot_renew(struct queue_conn *c, const char *site, uint64_t slot, int64_t ttl_ms,
                          queue_flag_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL || !queue_site_valid(site) || slot == 0 || ttl_ms < 1)
		return -1;
	struct limit_call *k;
	struct queue_request *r = limit_request(c, "slot_renew", flag_done, ref, arg, &k);
	if (r == NULL)
		return -1;
	k->cb.flag = cb;
	if (queue_request_add_str(r, site) == -1 || add_u64(r, slot) == -1 ||
	    queue_request_add_i64(r, ttl_ms) == -1)
		return limit_fail(r, k);
	return limit_send(r, k);
}

int queue_site_slot_release(struct queue_conn *c, const char *site, uint64_t slot,
                            queue_flag_fn *cb, uint64_t ref, void *arg)
{
	if (!queue_site_valid(site) || slot == 0)
		return -1;
	struct limit_call *k;
	struct queue_request *r = limit_request(c, "slot_release", flag_done, ref, arg, &k);
	if (r == NULL)
		return -1;
	k->cb.flag = cb;
	if (queue_request_add_str(r, site) == -1 || add_u64(r, slot) == -1)
		return limit_fail(r, k);
	return limit_send(r, k);
}

/* ---- back-pressure ---- */

static void pressure_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct limit_call *k = ctx;
	struct queue_pressure out = {0, 0, 0, 0};
	int64_t v[4];
	if (res == QUEUE_OK && !queue_reply_ints(reply, v, 4))
		res = QUEUE_UNAVAILABLE;
	if (res == QUEUE_OK)
		out = (struct queue_pressure){v[0], v[1], v[2], v[3]};
	k->cb.pressure(res, &out, k->ref, k->arg);
	free(k);
}

int queue_pressure_read(struct queue_conn *c, queue_pressure_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL)
		return -1;
	struct limit_call *k;
	struct queue_request *r = limit_request(c, "pressure", pressure_done, ref, arg, &k);
	if (r == NULL)
		return -1;
	k->cb.pressure = cb;
	return limit_send(r, k);
}

bool queue_pressure_full(const struct queue_pressure *p, unsigned max_memory_percent,
                         int64_t max_recipients)
{
	if (p == NULL)
		return false;
	if (max_recipients > 0 && p->recipients_queued >= max_recipients)
		return true;
	if (max_memory_percent == 0 || max_memory_percent > 100 || p->maxmemory <= 0)
		return false;
	/* used / max > percent / 100, without overflow for any int64 memory size. */
	return (double)p->used_memory * 100.0 > (double)p->maxmemory * (double)max_memory_percent;
}
