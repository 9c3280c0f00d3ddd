/*
 * sched_admin.c: the blocking side of delivery scheduling, for postinoctl: queue retry, hold,
 * release and delete by message id, recipient domain or site, and queue stats. Each step is an
 * operation of the scheduling script (sched_script.c), run by SHA on the admin connection
 * (admin.c). Selections by domain or site scan the queue with ZSCAN in steps of a thousand and
 * let the script check and change each step atomically: an entry that moved meanwhile is left
 * alone, and Redis is never blocked for the whole scan. Owns nothing else.
 */
#include "queue/queue.h"
#include "queue/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#define SCAN_COUNT "1000"

/* Contract in internal.h. */
int queue_sched_admin_load(struct queue_sched_admin *s, struct queue_admin *a, char *err,
                           size_t errlen)
{
	const char *argv[3] = {"SCRIPT", "LOAD", queue_script_sched};
	size_t lens[3] = {6, 4, strlen(queue_script_sched)};
	redisReply *r = queue_admin_call(a, 3, argv, lens, err, errlen);
	if (r == NULL)
		return -1;
	int rc = -1;
	if (r->type == REDIS_REPLY_STRING && r->len == QUEUE_SHA_LEN) {
		memcpy(s->sha, r->str, QUEUE_SHA_LEN);
		s->sha[QUEUE_SHA_LEN] = '\0';
		rc = 0;
	} else {
		queue_error_set(err, errlen, "SCRIPT LOAD: unexpected reply");
	}
	freeReplyObject(r);
	struct queue_policy p;
	queue_policy_default(&p);
	(void)snprintf(s->events_max, sizeof(s->events_max), "%" PRId64, p.events_max);
	s->admin = a;
	return rc;
}

/* Contract in internal.h. */
redisReply *queue_sched_admin_run(struct queue_sched_admin *s, const char *const *args, size_t n,
                                  char *err, size_t errlen)
{
	const char **argv = calloc(n + 3, sizeof(*argv));
	size_t *lens = calloc(n + 3, sizeof(*lens));
	redisReply *r = NULL;
	if (argv == NULL || lens == NULL || n > INT32_MAX - 3) {
		queue_error_set(err, errlen, "out of memory");
		goto out;
	}
	argv[0] = "EVALSHA";
	argv[1] = s->sha;
	argv[2] = "0";
	for (size_t i = 0; i < n; i++)
		argv[3 + i] = args[i];
	for (size_t i = 0; i < n + 3; i++)
		lens[i] = strlen(argv[i]);
	char why[256] = "";
	r = queue_admin_call(s->admin, (int)(n + 3), argv, lens, why, sizeof(why));
	if (r == NULL && strncmp(why, "NOSCRIPT", 8) == 0) {
		/* Someone flushed the script cache between our load and this call. */
		if (queue_sched_admin_load(s, s->admin, err, errlen) == -1)
			goto out;
		argv[1] = s->sha;
		r = queue_admin_call(s->admin, (int)(n + 3), argv, lens, why, sizeof(why));
	}
	if (r == NULL)
		queue_error_set(err, errlen, "%s", why);
out:
	free(argv);
	free(lens);
	return r;
}

static bool reply_count(const redisReply *r, uint64_t *out)
{
	if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
		return false;
	*out = (uint64_t)r->integer;
	return true;
}

static bool domain_valid(const char *d)
{
	size_t len = d != NULL ? strnlen(d, 256) : 0;
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)d[i] <= 0x20 || d[i] == 0x7f)
			return false;
	return true;
}

static int check_selection(enum queue_select by, const char *value, char *err, size_t errlen)
{
	bool ok = false;
	switch (by) {
	case QUEUE_SELECT_MESSAGE:
		ok = queue_id_valid(value);
		if (!ok)
			queue_error_set(err, errlen, "no such message");
		return ok ? 0 : -1;
	case QUEUE_SELECT_DOMAIN:
		ok = domain_valid(value);
		break;
	case QUEUE_SELECT_SITE:
		ok = queue_site_valid(value);
		break;
	}
	if (!ok)
		queue_error_set(err, errlen, "bad %s", by == QUEUE_SELECT_SITE ? "site" : "domain");
	return ok ? 0 : -1;
}

/* Runs a one-reply operation and adds its integer reply to *count. */
static int run_count(struct queue_sched_admin *s, const char *const *args, size_t n,
                     uint64_t *count, char *err, size_t errlen)
{
	redisReply *r = queue_sched_admin_run(s, args, n, err, errlen);
	if (r == NULL)
		return -1;
	uint64_t v = 0;
	bool ok = reply_count(r, &v);
	freeReplyObject(r);
	if (!ok) {
		queue_error_set(err, errlen, "%s: unexpected reply", args[0]);
		return -1;
	}
	*count += v;
	return 0;
}

/* ZSCANs key and hands each step's members (the message ids for pst:msgs) to admin_batch. */
static int scan_batches(struct queue_sched_admin *s, const char *key, const char *act,
                        const char *by, const char *value, uint64_t *count, char *err,
                        size_t errlen)
{
	char cursor[32] = "0";
	do {
		const char *argv[5] = {"ZSCAN", key, cursor, "COUNT", SCAN_COUNT};
		size_t lens[5];
		for (int i = 0; i < 5; i++)
			lens[i] = strlen(argv[i]);
		redisReply *r = queue_admin_call(s->admin, 5, argv, lens, err, errlen);
		if (r == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			queue_error_set(err, errlen, "ZSCAN %s: unexpected reply", key);
			freeReplyObject(r);
			return -1;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		const redisReply *items = r->element[1];
		size_t members = items->elements / 2;
		int rc = 0;
		if (members > 0) {
			const char **args = calloc(members + 5, sizeof(*args));
			if (args == NULL) {
				queue_error_set(err, errlen, "out of memory");
				rc = -1;
			} else {
				args[0] = "admin_batch";
				args[1] = act;
				args[2] = by;
				args[3] = value;
				args[4] = s->events_max;
				size_t n = 5;
				for (size_t i = 0; i < members; i++)
					if (items->element[2 * i]->type == REDIS_REPLY_STRING)
						args[n++] = items->element[2 * i]->str;
				rc = run_count(s, args, n, count, err, errlen);
				free(args);
			}
		}
		freeReplyObject(r);
		if (rc == -1)
			return -1;
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

static int act(struct queue_admin *a, const char *action, enum queue_select by, const char *value,
               uint64_t *count, char *err, size_t errlen)
{
	uint64_t n = 0;
	if (count != NULL)
		*count = 0;
	if (a == NULL || check_selection(by, value, err, errlen) == -1)
		return -1;
	struct queue_sched_admin s;
	if (queue_sched_admin_load(&s, a, err, errlen) == -1)
		return -1;
	int rc;
	if (by == QUEUE_SELECT_MESSAGE) {
		const char *args[4] = {"admin_msg", action, value, s.events_max};
		rc = run_count(&s, args, 4, &n, err, errlen);
	} else {
		const char *kind = by == QUEUE_SELECT_DOMAIN ? "domain" : "site";
		rc = 0;
		if (strcmp(action, "delete") != 0) {
			const char *args[4] = {"admin_mark", action, kind, value};
			rc = run_count(&s, args, 4, &n, err, errlen);
		}
		if (rc == 0 && strcmp(action, "retry") == 0)
			rc = scan_batches(&s, "pst:sched", action, kind, value, &n, err, errlen);
		else if (rc == 0 && strcmp(action, "release") == 0 && by == QUEUE_SELECT_DOMAIN)
			rc = scan_batches(&s, "pst:held", action, kind, value, &n, err, errlen);
		else if (rc == 0 && strcmp(action, "delete") == 0)
			rc = scan_batches(&s, "pst:msgs", action, kind, value, &n, err, errlen);
	}
	if (rc == 0 && count != NULL)
		*count = n;
	return rc;
}

int queue_admin_retry(struct queue_admin *a, enum queue_select by, const char *value,
                      uint64_t *count, char *err, size_t errlen)
{
	return act(a, "retry", by, value, count, err, errlen);
}

int queue_admin_hold(struct queue_admin *a, enum queue_select by, const char *value,
                     uint64_t *count, char *err, size_t errlen)
{
	return act(a, "hold", by, value, count, err, errlen);
}

int queue_admin_release(struct queue_admin *a, enum queue_select by, const char *value,
                        uint64_t *count, char *err, size_t errlen)
{
	return act(a, "release", by, value, count, err, errlen);
}

int queue_admin_delete(struct queue_admin *a, enum queue_select by, const char *value,
                       uint64_t *count, char *err, size_t errlen)
{
	return act(a, "delete", by, value, count, err, errlen);
}

/* ---- stats ---- */

#define STATS_FIXED 9

struct site_row {
	const char *site;
	long long ready, leased, down_ms, held;
};

static int row_cmp(const void *x, const void *y)
{
	const struct site_row *a = x, *b = y;
	if (a->ready != b->ready)
		return a->ready > b->ready ? -1 : 1;
	return strcmp(a->site, b->site);
}

static bool element_ll(const redisReply *e, long long *out)
{
	if (e->type != REDIS_REPLY_INTEGER)
		return false;
	*out = e->integer;
	return true;
}

int queue_admin_stats(struct queue_admin *a, FILE *out, char *err, size_t errlen)
{
	struct queue_sched_admin s;
	if (a == NULL || out == NULL || queue_sched_admin_load(&s, a, err, errlen) == -1)
		return -1;
	const char *args[1] = {"stats"};
	redisReply *r = queue_sched_admin_run(&s, args, 1, err, errlen);
	if (r == NULL)
		return -1;
	int rc = -1;
	struct site_row *rows = NULL;
	long long v[STATS_FIXED];
	if (r->type != REDIS_REPLY_ARRAY || r->elements < STATS_FIXED ||
	    (r->elements - STATS_FIXED) % 5 != 0)
		goto bad;
	for (size_t i = 0; i < STATS_FIXED; i++)
		if (!element_ll(r->element[i], &v[i]))
			goto bad;
	size_t nrows = (r->elements - STATS_FIXED) / 5;
	rows = calloc(nrows > 0 ? nrows : 1, sizeof(*rows));
	if (rows == NULL) {
		queue_error_set(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nrows; i++) {
		redisReply **e = r->element + STATS_FIXED + 5 * i;
		if (e[0]->type != REDIS_REPLY_STRING || !element_ll(e[1], &rows[i].ready) ||
		    !element_ll(e[2], &rows[i].leased) || !element_ll(e[3], &rows[i].down_ms) ||
		    !element_ll(e[4], &rows[i].held))
			goto bad;
		rows[i].site = e[0]->str;
	}
	qsort(rows, nrows, sizeof(*rows), row_cmp);
	if (fprintf(out,
	            "scheduled=%lld due=%lld resolving=%lld waiting=%lld leased=%lld held=%lld "
	            "dead=%lld messages=%lld recipients=%lld\n",
	            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]) < 0)
		goto write_failed;
	for (size_t i = 0; i < nrows; i++) {
		char down[32] = "-";
		if (rows[i].down_ms > 0)
			(void)snprintf(down, sizeof(down), "%lld", (rows[i].down_ms + 999) / 1000);
		if (fprintf(out, "%s ready=%lld leased=%lld down=%s held=%s\n", rows[i].site,
		            rows[i].ready, rows[i].leased, down, rows[i].held ? "yes" : "no") < 0)
			goto write_failed;
	}
	rc = 0;
	goto out;
bad:
	queue_error_set(err, errlen, "stats: unexpected reply");
	goto out;
write_failed:
	queue_error_set(err, errlen, "writing the stats failed");
out:
	free(rows);
	freeReplyObject(r);
	return rc;
}
