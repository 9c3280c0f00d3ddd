/*
 * sched.c: the async side of delivery scheduling: promotion of due entries, the resolve queue
 * and the domain -> site map, the choice of the next site, leases of delivery entries and
 * their outcomes (DESIGN.md promises 2 and 3). Each step is one operation of the scheduling
 * script (sched_script.c), run on the daemon's async connection through queue.c's raw
 * requests; this file checks arguments, builds the requests and turns the script's replies
 * into the structs of queue.h. It also owns the policy defaults and two pure helpers (site
 * names, campaign ids). Keys and flow: queue/README.md.
 */
#include "queue/queue.h"
#include "queue/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#define HOST_MAX   255
#define DOMAIN_MAX 255
#define TOKEN_MAX  32

/* ---- pure helpers ---- */

void queue_policy_default(struct queue_policy *p)
{
	p->lease_ms = 15 * 60 * 1000;
	p->max_reclaims = 3;
	p->max_age_ms = (int64_t)5 * 24 * 3600 * 1000;
	p->backoff_first_ms = 5 * 60 * 1000;
	p->backoff_max_ms = 3600 * 1000;
	p->jitter_percent = 10;
	p->batch = 500;
	p->events_max = 1000000;
	p->soft_limit = 3;
	p->soft_window_ms = (int64_t)7 * 24 * 3600 * 1000;
}

bool queue_policy_valid(const struct queue_policy *p)
{
	return p != NULL && p->lease_ms >= 1 && p->max_age_ms >= 1 && p->backoff_first_ms >= 1 &&
	       p->backoff_first_ms <= p->backoff_max_ms && p->jitter_percent <= 100 &&
	       p->batch >= 1 && p->batch <= 100000 && p->events_max >= 0 &&
	       p->soft_limit <= QUEUE_SOFT_LIMIT_MAX && p->soft_window_ms >= 1 &&
	       p->soft_window_ms <= QUEUE_SOFT_WINDOW_MAX_MS;
}

/* Contract in internal.h. */
bool queue_word_valid(const char *s, size_t max)
{
	if (s == NULL)
		return true;
	size_t len = strnlen(s, max + 1);
	if (len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

bool queue_campaign_valid(const char *campaign)
{
	return queue_word_valid(campaign, QUEUE_CAMPAIGN_MAX);
}

static bool host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
	       ch == '_' || ch == '[' || ch == ']' || ch == ':';
}

static int str_cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int queue_site_name(const char *const *hosts, size_t n, char *out, size_t outlen)
{
	if (out == NULL || outlen == 0)
		return -1;
	out[0] = '\0';
	if (hosts == NULL || n == 0 || n > 4096)
		return -1;
	char(*names)[HOST_MAX + 1] = calloc(n, sizeof(*names));
	const char **sorted = calloc(n, sizeof(*sorted));
	int rc = -1;
	if (names == NULL || sorted == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const char *h = hosts[i];
		size_t len = h != NULL ? strnlen(h, HOST_MAX + 2) : 0;
		if (len > 0 && h[len - 1] == '.')
			len--;
		if (len == 0 || len > HOST_MAX)
			goto out;
		for (size_t j = 0; j < len; j++) {
			char ch = h[j] >= 'A' && h[j] <= 'Z' ? (char)(h[j] - 'A' + 'a') : h[j];
			if (!host_char(ch))
				goto out;
			names[i][j] = ch;
		}
		names[i][len] = '\0';
		sorted[i] = names[i];
	}
	qsort(sorted, n, sizeof(*sorted), str_cmp);
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
			continue;
		size_t len = strlen(sorted[i]);
		size_t need = used + (used > 0 ? 1 : 0) + len;
		if (need > QUEUE_SITE_MAX || need >= outlen)
			goto out;
		if (used > 0)
			out[used++] = ',';
		memcpy(out + used, sorted[i], len);
		used += len;
	}
	out[used] = '\0';
	rc = 0;
out:
	if (rc == -1)
		out[0] = '\0';
	free(names);
	free(sorted);
	return rc;
}

/* ---- argument checks ---- */

/* Printable ASCII (and UTF-8 bytes when utf8), no space, 1..max bytes, no byte of reject. */
static bool token_valid(const char *s, size_t max, bool utf8, const char *reject)
{
	if (s == NULL)
		return false;
	size_t len = strnlen(s, max + 1);
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch == 0x7f || (ch > 0x7f && !utf8) || strchr(reject, ch) != NULL)
			return false;
	}
	return true;
}

/* Recipient domains as the relay stores them: lowercased ASCII, or UTF-8 with SMTPUTF8. */
static bool domain_valid(const char *d)
{
	return token_valid(d, DOMAIN_MAX, true, "");
}

bool queue_site_valid(const char *site)
{
	return token_valid(site, QUEUE_SITE_MAX, false, "|");
}

static bool worker_valid(const char *w)
{
	if (!token_valid(w, QUEUE_WORKER_MAX, false, ""))
		return false;
	for (const char *p = w; *p != '\0'; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr("._:@-", ch) != NULL))
			return false;
	}
	return true;
}

/* "" or a token without spaces (host names, TLS versions). */
static bool word_valid(const char *s, size_t max)
{
	return s != NULL && (s[0] == '\0' || token_valid(s, max, false, ""));
}

/* ---- reply parsing ---- */

/* queue_reply_int64, queue_reply_ints and queue_count_clamp: contracts in internal.h. */

bool queue_reply_int64(const struct redisReply *e, int64_t *out)
{
	if (e->type == REDIS_REPLY_INTEGER) {
		*out = e->integer;
		return true;
	}
	if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 20)
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(e->str, &end, 10);
	if (errno != 0 || end != e->str + e->len)
		return false;
	*out = v;
	return true;
}

static bool reply_is_str(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS;
}

static bool reply_is(const redisReply *e, const char *word)
{
	return reply_is_str(e) && e->len == strlen(word) && memcmp(e->str, word, e->len) == 0;
}

bool queue_reply_ints(const struct redisReply *reply, int64_t *out, size_t n)
{
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!queue_reply_int64(reply->element[i], &out[i]))
			return false;
	return true;
}

unsigned queue_count_clamp(int64_t v)
{
	if (v < 0)
		return 0;
	if (v > (int64_t)UINT32_MAX)
		return UINT32_MAX;
	return (unsigned)v;
}

/* ---- requests ---- */

/* One request in flight: the caller's callback, ref and arg, and what the parser needs. */
struct call {
	union {
		queue_promote_fn *promote;
		queue_domains_fn *domains;
		queue_moved_fn *moved;
		queue_site_fn *site;
		queue_flag_fn *flag;
		queue_lease_fn *lease;
		queue_outcome_fn *outcome;
	} cb;
	uint64_t ref;
	void *arg;
	char site[]; /* leases: the site asked for */
};

static struct call *call_new(const char *site, uint64_t ref, void *arg)
{
	size_t len = site != NULL ? strlen(site) : 0;
	struct call *k = calloc(1, sizeof(*k) + len + 1);
	if (k == NULL)
		return NULL;
	k->ref = ref;
	k->arg = arg;
	if (len > 0)
		memcpy(k->site, site, len);
	return k;
}

/* Sends r for k. Returns 0 (k is the callback's now) or -1 (k freed, no callback). */
static int call_send(struct queue_request *r, struct call *k)
{
	if (queue_request_send(r) == -1) {
		free(k);
		return -1;
	}
	return 0;
}

static int call_fail(struct queue_request *r, struct call *k)
{
	queue_request_discard(r);
	free(k);
	return -1;
}

/* A random 32-bit value for the backoff jitter. Not a secret: the clock will do when the
 * kernel's pool cannot answer. */
static uint32_t jitter_random(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	struct timespec ts;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)ts.tv_nsec * 2654435761u;
}

/* The policy arguments the script's policy() reads: max_age first max jitter rand events
 * soft_limit soft_window. */
static int add_policy(struct queue_request *r, const struct queue_policy *p)
{
	if (queue_request_add_i64(r, p->max_age_ms) == -1 ||
	    queue_request_add_i64(r, p->backoff_first_ms) == -1 ||
	    queue_request_add_i64(r, p->backoff_max_ms) == -1 ||
	    queue_request_add_i64(r, p->jitter_percent) == -1 ||
	    queue_request_add_i64(r, jitter_random()) == -1 ||
	    queue_request_add_i64(r, p->events_max) == -1 ||
	    queue_request_add_i64(r, p->soft_limit) == -1 ||
	    queue_request_add_i64(r, p->soft_window_ms) == -1)
		return -1;
	return 0;
}

/* An entry: "<id>:<domain>". */
static int add_entry(struct queue_request *r, const char *id, const char *domain)
{
	char entry[16 + 1 + DOMAIN_MAX + 1];
	int n = snprintf(entry, sizeof(entry), "%s:%s", id, domain);
	if (n < 0 || (size_t)n >= sizeof(entry))
		return -1;
	return queue_request_add(r, entry, (size_t)n);
}

static int add_u64(struct queue_request *r, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return queue_request_add(r, tmp, (size_t)n);
}

/* ---- promotion ---- */

static void promote_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	struct queue_promote_result out = {.next_ms = -1};
	int64_t v[8];
	if (res == QUEUE_OK && !queue_reply_ints(reply, v, 8))
		res = QUEUE_UNAVAILABLE;
	if (res == QUEUE_OK) {
		out.ready = queue_count_clamp(v[0]);
		out.resolving = queue_count_clamp(v[1]);
		out.held = queue_count_clamp(v[2]);
		out.dropped = queue_count_clamp(v[3]);
		out.reclaimed = queue_count_clamp(v[4]);
		out.dead = queue_count_clamp(v[5]);
		out.more = v[6] != 0;
		out.next_ms = v[7];
	}
	k->cb.promote(res, &out, k->ref, k->arg);
	free(k);
}

int queue_sched_promote(struct queue_conn *c, const struct queue_policy *p, queue_promote_fn *cb,
                        uint64_t ref, void *arg)
{
	if (cb == NULL || !queue_policy_valid(p))
		return -1;
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.promote = cb;
	struct queue_request *r = queue_request_new(c, "promote", promote_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (queue_request_add_i64(r, p->batch) == -1 ||
	    queue_request_add_i64(r, p->max_reclaims) == -1 ||
	    queue_request_add_i64(r, p->events_max) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

/* ---- resolution ---- */

static void domains_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	const char **list = NULL;
	size_t n = 0;
	if (res == QUEUE_OK && reply->type != REDIS_REPLY_ARRAY)
		res = QUEUE_UNAVAILABLE;
	if (res == QUEUE_OK && reply->elements > 0) {
		list = calloc(reply->elements, sizeof(*list));
		if (list == NULL)
			res = QUEUE_UNAVAILABLE;
		for (size_t i = 0; list != NULL && i < reply->elements; i++) {
			if (!reply_is_str(reply->element[i])) {
				res = QUEUE_UNAVAILABLE;
				break;
			}
			list[i] = reply->element[i]->str;
		}
		n = res == QUEUE_OK ? reply->elements : 0;
	}
	k->cb.domains(res, n > 0 ? list : NULL, n, k->ref, k->arg);
	free(list);
	free(k);
}

int queue_resolve_take(struct queue_conn *c, unsigned max, int64_t claim_ms, queue_domains_fn *cb,
                       uint64_t ref, void *arg)
{
	if (cb == NULL || max == 0 || max > 10000 || claim_ms < 1)
		return -1;
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.domains = cb;
	struct queue_request *r = queue_request_new(c, "resolve_take", domains_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (queue_request_add_i64(r, max) == -1 || queue_request_add_i64(r, claim_ms) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

static void moved_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	int64_t v[2] = {0, 0};
	if (res == QUEUE_OK && !queue_reply_ints(reply, v, 2))
		res = QUEUE_UNAVAILABLE;
	if (res != QUEUE_OK)
		v[0] = v[1] = 0;
	k->cb.moved(res, queue_count_clamp(v[0]), queue_count_clamp(v[1]), k->ref, k->arg);
	free(k);
}

int queue_site_set(struct queue_conn *c, const struct queue_policy *p, const char *domain,
                   const char *site, unsigned ttl_s, queue_moved_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL || !queue_policy_valid(p) || !domain_valid(domain) ||
	    !queue_site_valid(site) || ttl_s == 0)
		return -1;
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.moved = cb;
	struct queue_request *r = queue_request_new(c, "site_set", moved_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (queue_request_add_str(r, domain) == -1 || queue_request_add_str(r, site) == -1 ||
	    queue_request_add_i64(r, ttl_s) == -1 || queue_request_add_i64(r, p->batch) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

static size_t reply_len(const char *reply)
{
	return strnlen(reply, QUEUE_REPLY_MAX);
}

int queue_resolve_fail(struct queue_conn *c, const struct queue_policy *p, const char *domain,
                       bool permanent, const char *reply, queue_moved_fn *cb, uint64_t ref,
                       void *arg)
{
	if (cb == NULL || !queue_policy_valid(p) || !domain_valid(domain) || reply == NULL)
		return -1;
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.moved = cb;
	struct queue_request *r = queue_request_new(c, "resolve_fail", moved_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (queue_request_add_str(r, domain) == -1 ||
	    queue_request_add_str(r, permanent ? "1" : "0") == -1 ||
	    queue_request_add(r, reply, reply_len(reply)) == -1 ||
	    queue_request_add_i64(r, p->batch) == -1 || add_policy(r, p) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

/* ---- sites ---- */

static void site_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	struct queue_site_pick pick = {.pick = QUEUE_PICK_NONE, .site = ""};
	int64_t v[3];
	if (res == QUEUE_OK) {
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5 ||
		    !reply_is_str(reply->element[0]) || !reply_is_str(reply->element[1]) ||
		    !queue_reply_int64(reply->element[2], &v[0]) ||
		    !queue_reply_int64(reply->element[3], &v[1]) ||
		    !queue_reply_int64(reply->element[4], &v[2]))
			res = QUEUE_UNAVAILABLE;
		else if (reply_is(reply->element[0], "site") && reply->element[1]->len > 0)
			pick = (struct queue_site_pick){QUEUE_PICK_SITE, reply->element[1]->str,
			                                v[0], v[1], 0};
		else if (reply_is(reply->element[0], "later"))
			pick = (struct queue_site_pick){QUEUE_PICK_LATER, "", 0, 0, v[2]};
		else if (!reply_is(reply->element[0], "none"))
			res = QUEUE_UNAVAILABLE;
	}
	k->cb.site(res, &pick, k->ref, k->arg);
	free(k);
}

int queue_site_next(struct queue_conn *c, queue_site_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL)
		return -1;
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.site = cb;
	struct queue_request *r = queue_request_new(c, "site_next", site_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	return call_send(r, k);
}

static void flag_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	int64_t v = 0;
	if (res == QUEUE_OK && !queue_reply_int64(reply, &v))
		res = QUEUE_UNAVAILABLE;
	if (k->cb.flag != NULL)
		k->cb.flag(res, res == QUEUE_OK && v > 0, k->ref, k->arg);
	free(k);
}

/* Starts a request whose reply is an integer flag. cb may be NULL. */
static struct queue_request *flag_request(struct queue_conn *c, const char *op, queue_flag_fn *cb,
                                          uint64_t ref, void *arg, struct call **kp)
{
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return NULL;
	k->cb.flag = cb;
	struct queue_request *r = queue_request_new(c, op, flag_done, k);
	if (r == NULL) {
		free(k);
		return NULL;
	}
	*kp = k;
	return r;
}

int queue_site_down(struct queue_conn *c, const char *site, int64_t down_ms, queue_flag_fn *cb,
                    uint64_t ref, void *arg)
{
	if (!queue_site_valid(site) || down_ms < 1)
		return -1;
	struct call *k;
	struct queue_request *r = flag_request(c, "site_down", cb, ref, arg, &k);
	if (r == NULL)
		return -1;
	if (queue_request_add_str(r, site) == -1 || queue_request_add_i64(r, down_ms) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

/* ---- leases ---- */

static const struct {
	const char *word;
	enum queue_lease_status status;
} lease_words[] = {
    {"empty", QUEUE_LEASE_EMPTY},
    {"wait", QUEUE_LEASE_WAIT},
    {"down", QUEUE_LEASE_DOWN},
    {"held", QUEUE_LEASE_HELD},
};

#define LEASE_FIXED 14 /* elements before the recipients in an "ok" reply */

/* Fills d from an "ok" reply; rcpts is allocated for the recipients (caller frees). */
static bool lease_parse(const redisReply *reply, struct queue_delivery *d,
                        struct queue_lease_rcpt **rcpts)
{
	redisReply **e = reply->element;
	int64_t token, received, utf8, bit8, attempt, deadline, n;
	if (reply->elements < LEASE_FIXED || !queue_reply_int64(e[1], &token) || token <= 0)
		return false;
	for (size_t i = 2; i <= 6; i++)
		if (!reply_is_str(e[i]))
			return false;
	if (!queue_reply_int64(e[7], &received) || !queue_reply_int64(e[8], &utf8) ||
	    !queue_reply_int64(e[9], &bit8) || !queue_reply_int64(e[10], &attempt) ||
	    !queue_reply_int64(e[11], &deadline) || e[12]->type != REDIS_REPLY_STRING ||
	    !queue_reply_int64(e[13], &n) || n < 1 ||
	    reply->elements != LEASE_FIXED + 3 * (size_t)n)
		return false;
	*rcpts = calloc((size_t)n, sizeof(**rcpts));
	if (*rcpts == NULL)
		return false;
	for (size_t i = 0; i < (size_t)n; i++) {
		redisReply **x = e + LEASE_FIXED + 3 * i;
		int64_t index, attempts;
		if (!queue_reply_int64(x[0], &index) || !queue_reply_int64(x[1], &attempts) ||
		    !reply_is_str(x[2]) || index < 0 || index > UINT32_MAX)
			return false;
		(*rcpts)[i].index = (unsigned)index;
		(*rcpts)[i].attempts = queue_count_clamp(attempts);
		(*rcpts)[i].address = x[2]->str;
	}
	d->token = (uint64_t)token;
	d->id = e[2]->str;
	d->domain = e[3]->str;
	d->sender = e[4]->str;
	d->user = e[5]->str;
	d->campaign = e[6]->str;
	d->received_ms = received;
	d->smtputf8 = utf8 != 0;
	d->body_8bit = bit8 != 0;
	d->attempt = queue_count_clamp(attempt);
	d->deadline_ms = deadline;
	d->body = e[12]->str;
	d->body_len = e[12]->len;
	d->rcpts = *rcpts;
	d->nrcpts = (size_t)n;
	return true;
}

static void lease_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	struct queue_delivery d = {.status = QUEUE_LEASE_EMPTY, .site = k->site};
	struct queue_lease_rcpt *rcpts = NULL;
	if (res == QUEUE_OK) {
		bool ok = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
		          reply_is_str(reply->element[0]);
		if (ok && reply_is(reply->element[0], "ok")) {
			ok = lease_parse(reply, &d, &rcpts);
			d.status = QUEUE_LEASE_OK;
		} else if (ok) {
			size_t i = 0, n = sizeof(lease_words) / sizeof(lease_words[0]);
			while (i < n && !reply_is(reply->element[0], lease_words[i].word))
				i++;
			ok = i < n && reply->elements == 2 &&
			     queue_reply_int64(reply->element[1], &d.wait_ms);
			if (ok)
				d.status = lease_words[i].status;
		}
		if (!ok) {
			/* A lease we cannot parse stays in Redis until it expires and is
			 * reclaimed: at-least-once still holds. */
			res = QUEUE_UNAVAILABLE;
			d = (struct queue_delivery){.status = QUEUE_LEASE_EMPTY, .site = k->site};
		}
	}
	k->cb.lease(res, &d, k->ref, k->arg);
	free(rcpts);
	free(k);
}

int queue_delivery_lease(struct queue_conn *c, const struct queue_policy *p, const char *site,
                         const char *worker, const struct queue_rate *rate, queue_lease_fn *cb,
                         uint64_t ref, void *arg)
{
	struct queue_rate none = {0, 1, 1};
	if (rate == NULL || rate->count == 0)
		rate = &none;
	if (cb == NULL || !queue_policy_valid(p) || !queue_site_valid(site) ||
	    !worker_valid(worker) || rate->period_ms < 1 || rate->burst < 1)
		return -1;
	struct call *k = call_new(site, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.lease = cb;
	struct queue_request *r = queue_request_new(c, "lease", lease_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (queue_request_add_str(r, site) == -1 || queue_request_add_str(r, worker) == -1 ||
	    queue_request_add_i64(r, p->lease_ms) == -1 ||
	    queue_request_add_i64(r, rate->count) == -1 ||
	    queue_request_add_i64(r, rate->period_ms) == -1 ||
	    queue_request_add_i64(r, rate->burst) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

int queue_delivery_renew(struct queue_conn *c, const char *id, const char *domain, uint64_t token,
                         int64_t lease_ms, queue_flag_fn *cb, uint64_t ref, void *arg)
{
	if (cb == NULL || !queue_id_valid(id) || !domain_valid(domain) || token == 0 ||
	    lease_ms < 1)
		return -1;
	struct call *k;
	struct queue_request *r = flag_request(c, "renew", cb, ref, arg, &k);
	if (r == NULL)
		return -1;
	if (add_entry(r, id, domain) == -1 || add_u64(r, token) == -1 ||
	    queue_request_add_i64(r, lease_ms) == -1)
		return call_fail(r, k);
	return call_send(r, k);
}

/* ---- outcomes ---- */

static void outcome_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct call *k = ctx;
	struct queue_outcome_result out = {.record = QUEUE_RECORD_STALE, .next_ms = -1};
	if (res == QUEUE_OK) {
		int64_t v[7];
		bool ok = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
		          reply_is_str(reply->element[0]);
		if (ok && reply_is(reply->element[0], "stale") && reply->elements == 1) {
			out.record = QUEUE_RECORD_STALE;
		} else if (ok && reply_is(reply->element[0], "gone") && reply->elements == 1) {
			out.record = QUEUE_RECORD_GONE;
		} else if (ok && reply_is(reply->element[0], "ok") && reply->elements == 8) {
			for (size_t i = 0; ok && i < 7; i++)
				ok = queue_reply_int64(reply->element[i + 1], &v[i]);
			if (ok) {
				out.record = QUEUE_RECORD_OK;
				out.delivered = queue_count_clamp(v[0]);
				out.bounced = queue_count_clamp(v[1]);
				out.deferred = queue_count_clamp(v[2]);
				out.expired = queue_count_clamp(v[3]);
				out.message_done = v[4] != 0;
				out.next_ms = v[5];
				out.suppressed = queue_count_clamp(v[6]);
			}
		} else {
			ok = false;
		}
		if (!ok) {
			res = QUEUE_UNAVAILABLE;
			out = (struct queue_outcome_result){.record = QUEUE_RECORD_STALE,
			                                    .next_ms = -1};
		}
	}
	k->cb.outcome(res, &out, k->ref, k->arg);
	free(k);
}

static const char *kind_code(enum queue_outcome_kind kind)
{
	switch (kind) {
	case QUEUE_OUTCOME_DELIVERED:
		return "d";
	case QUEUE_OUTCOME_DEFERRED:
		return "t";
	case QUEUE_OUTCOME_FAILED:
		return "p";
	case QUEUE_OUTCOME_SITE_DOWN:
		return "s";
	}
	return NULL;
}

int queue_delivery_outcome(struct queue_conn *c, const struct queue_policy *p,
                           const struct queue_outcome *o, queue_outcome_fn *cb, uint64_t ref,
                           void *arg)
{
	if (cb == NULL || !queue_policy_valid(p) || o == NULL || !queue_id_valid(o->id) ||
	    !domain_valid(o->domain) || o->token == 0 || !word_valid(o->host, HOST_MAX) ||
	    !word_valid(o->tls, 32) || o->down_ms < 0 || (o->rcpts == NULL && o->nrcpts > 0) ||
	    o->nrcpts > 1000000)
		return -1;
	for (size_t i = 0; i < o->nrcpts; i++)
		if (kind_code(o->rcpts[i].kind) == NULL || o->rcpts[i].reply == NULL ||
		    (o->rcpts[i].bounce_class != NULL && !word_valid(o->rcpts[i].bounce_class, 64)))
			return -1;
	struct call *k = call_new(NULL, ref, arg);
	if (k == NULL)
		return -1;
	k->cb.outcome = cb;
	struct queue_request *r = queue_request_new(c, "outcome", outcome_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (add_entry(r, o->id, o->domain) == -1 || add_u64(r, o->token) == -1 ||
	    queue_request_add_str(r, o->host) == -1 || queue_request_add_str(r, o->tls) == -1 ||
	    queue_request_add_i64(r, o->down_ms) == -1 || add_policy(r, p) == -1 ||
	    queue_request_add_i64(r, (int64_t)o->nrcpts) == -1)
		return call_fail(r, k);
	for (size_t i = 0; i < o->nrcpts; i++) {
		const struct queue_rcpt_outcome *x = &o->rcpts[i];
		if (queue_request_add_i64(r, x->index) == -1 ||
		    queue_request_add_str(r, kind_code(x->kind)) == -1 ||
		    queue_request_add(r, x->reply, reply_len(x->reply)) == -1 ||
		    queue_request_add_str(r, x->bounce_class != NULL ? x->bounce_class : "") == -1)
			return call_fail(r, k);
	}
	return call_send(r, k);
}
