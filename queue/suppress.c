/*
 * suppress.c: per-user (tenant) suppression lists (DESIGN.md, Bounces; issue 5). The lists
 * live in pst:supp:<user> and the soft-failure counts in pst:soft:<user>:<address> (keys and
 * rules in queue/README.md, Suppression). The commit script (queue.c) reads the lists, the
 * scheduling script's outcome (sched_script.c) adds hard bounces, complaints and repeated
 * soft failures; this file owns the rest: the pure checks of an entry, the async add for the
 * bounce listener (a complaint also writes a "complained" event), and the blocking admin
 * commands of postinoctl (put, del, list). Every write is an operation of the scheduling
 * script, so it is atomic and uses Redis' clock.
 */
#include "queue/queue.h"
#include "queue/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#define SCAN_COUNT "1000" /* fields one HSCAN step asks for (QUEUE_SUPP_PUT_STEP) */
#define NUM_MAX    24     /* an int64_t in decimal, with its NUL */

/* ---- pure checks ---- */

int queue_supp_address_normalize(const char *address, char *out, size_t outlen)
{
	if (out == NULL || outlen == 0)
		return -1;
	out[0] = '\0';
	if (address == NULL)
		return -1;
	size_t len = strnlen(address, QUEUE_SUPP_ADDRESS_MAX + 1);
	const char *at = len <= QUEUE_SUPP_ADDRESS_MAX ? memrchr(address, '@', len) : NULL;
	if (at == NULL || at == address || (size_t)(at - address) + 1 >= len || len >= outlen)
		return -1;
	size_t local = (size_t)(at - address);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)address[i];
		bool in_domain = i > local;
		if (ch < 0x20 || ch == 0x7f || (in_domain && ch == ' ')) {
			out[0] = '\0';
			return -1;
		}
		out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : (char)ch;
	}
	out[len] = '\0';
	return 0;
}

bool queue_supp_class_valid(const char *class_name)
{
	static const char *const classes[] = {"hard", "soft", "complaint", "manual"};
	if (class_name == NULL)
		return false;
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (strcmp(class_name, classes[i]) == 0)
			return true;
	return false;
}

bool queue_supp_source_valid(const char *source)
{
	return queue_word_valid(source, QUEUE_SUPP_SOURCE_MAX);
}

/* An entry ready for the script: the address normalized, numbers in decimal, the reason cut
 * at QUEUE_SUPP_REASON_MAX bytes (not inside a UTF-8 sequence). */
struct prepared {
	char field[QUEUE_SUPP_ADDRESS_MAX + 1];
	char created[NUM_MAX];
	char expires[NUM_MAX];
	char reason[QUEUE_SUPP_REASON_MAX + 1];
	const char *class_name; /* borrowed from the entry */
	const char *source;     /* borrowed from the entry, or "-" */
};

/* Checks s and fills p. Returns NULL, or what is wrong with s. */
static const char *prepare(const struct queue_suppression *s, struct prepared *p)
{
	if (s == NULL || queue_supp_address_normalize(s->address, p->field, sizeof(p->field)) == -1)
		return "bad address";
	if (!queue_supp_class_valid(s->class_name))
		return "bad class (hard, soft, complaint or manual)";
	if (!queue_supp_source_valid(s->source))
		return "bad source";
	if (s->created_ms < 0 || s->expires_ms < 0)
		return "bad time";
	(void)snprintf(p->created, sizeof(p->created), "%" PRId64, s->created_ms);
	(void)snprintf(p->expires, sizeof(p->expires), "%" PRId64, s->expires_ms);
	const char *why = s->reason != NULL ? s->reason : "";
	size_t len = strnlen(why, QUEUE_SUPP_REASON_MAX + 1);
	if (len > QUEUE_SUPP_REASON_MAX) {
		len = QUEUE_SUPP_REASON_MAX;
		while (len > 0 && ((unsigned char)why[len] & 0xc0) == 0x80)
			len--; /* why[len] continues a sequence: cut before its lead byte */
	}
	memcpy(p->reason, why, len);
	p->reason[len] = '\0';
	p->class_name = s->class_name;
	p->source = s->source != NULL && s->source[0] != '\0' ? s->source : "-";
	return NULL;
}

/* ---- async: the bounce listener's entries ---- */

struct add_call {
	queue_done_fn *cb;
	uint64_t ref;
	void *arg;
};

static void add_done(enum queue_result res, const redisReply *reply, void *ctx)
{
	struct add_call *k = ctx;
	if (res == QUEUE_OK && reply->type != REDIS_REPLY_INTEGER)
		res = QUEUE_UNAVAILABLE;
	if (k->cb != NULL)
		k->cb(res, k->ref, k->arg);
	free(k);
}

int queue_suppress_add(struct queue_conn *c, const struct queue_policy *p, const char *user,
                       const struct queue_suppression *s, queue_done_fn *cb, uint64_t ref,
                       void *arg)
{
	struct prepared e;
	if (!queue_policy_valid(p) || user == NULL || user[0] == '\0' ||
	    strnlen(user, QUEUE_NAME_MAX + 1) > QUEUE_NAME_MAX || prepare(s, &e) != NULL)
		return -1;
	struct add_call *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return -1;
	*k = (struct add_call){cb, ref, arg};
	struct queue_request *r = queue_request_new(c, "suppress", add_done, k);
	if (r == NULL) {
		free(k);
		return -1;
	}
	if (queue_request_add_str(r, user) == -1 || queue_request_add_str(r, e.field) == -1 ||
	    queue_request_add_str(r, e.class_name) == -1 ||
	    queue_request_add_str(r, e.source) == -1 || queue_request_add_str(r, e.reason) == -1 ||
	    queue_request_add_str(r, e.expires) == -1 ||
	    queue_request_add_str(r, s->address) == -1 ||
	    queue_request_add_i64(r, p->events_max) == -1) {
		queue_request_discard(r);
		free(k);
		return -1;
	}
	if (queue_request_send(r) == -1) {
		free(k);
		return -1;
	}
	return 0;
}

/* ---- blocking: postinoctl ---- */

/* Runs one admin operation whose reply is an integer, into *out (may be NULL). */
static int run_int(struct queue_sched_admin *s, const char *const *args, size_t n, long long *out,
                   char *err, size_t errlen)
{
	redisReply *r = queue_sched_admin_run(s, args, n, err, errlen);
	if (r == NULL)
		return -1;
	bool ok = r->type == REDIS_REPLY_INTEGER;
	if (ok && out != NULL)
		*out = r->integer;
	freeReplyObject(r);
	if (!ok)
		queue_error_set(err, errlen, "%s: unexpected reply", args[0]);
	return ok ? 0 : -1;
}

int queue_admin_suppress_put(struct queue_admin *a, const char *user,
                             const struct queue_suppression *entries, size_t n, char *err,
                             size_t errlen)
{
	if (a == NULL || !queue_user_name_valid(user)) {
		queue_error_set(err, errlen, "no such user");
		return -1;
	}
	if (entries == NULL && n > 0) {
		queue_error_set(err, errlen, "no entries");
		return -1;
	}
	struct prepared *step = calloc(QUEUE_SUPP_PUT_STEP, sizeof(*step));
	const char **args = calloc(3 + 6 * QUEUE_SUPP_PUT_STEP, sizeof(*args));
	int rc = -1;
	if (step == NULL || args == NULL) {
		queue_error_set(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) { /* every entry is checked before the first write */
		const char *why = prepare(&entries[i], &step[0]);
		if (why != NULL) {
			queue_error_set(err, errlen, "entry %zu: %s", i + 1, why);
			goto out;
		}
	}
	struct queue_sched_admin s;
	if (queue_sched_admin_load(&s, a, err, errlen) == -1)
		goto out;
	for (size_t done = 0; done < n;) {
		size_t count = n - done < QUEUE_SUPP_PUT_STEP ? n - done : QUEUE_SUPP_PUT_STEP;
		char num[NUM_MAX];
		(void)snprintf(num, sizeof(num), "%zu", count);
		args[0] = "admin_supp_put";
		args[1] = user;
		args[2] = num;
		for (size_t i = 0; i < count; i++) {
			struct prepared *p = &step[i];
			(void)prepare(&entries[done + i], p);
			const char *fields[6] = {p->field,      p->created, p->expires,
			                         p->class_name, p->source,  p->reason};
			memcpy(&args[3 + 6 * i], fields, sizeof(fields));
		}
		if (run_int(&s, args, 3 + 6 * count, NULL, err, errlen) == -1)
			goto out;
		done += count;
	}
	rc = 0;
out:
	free(step);
	free(args);
	return rc;
}

int queue_admin_suppress_del(struct queue_admin *a, const char *user, const char *address,
                             bool *found, char *err, size_t errlen)
{
	char field[QUEUE_SUPP_ADDRESS_MAX + 1];
	if (found != NULL)
		*found = false;
	if (a == NULL || !queue_user_name_valid(user)) {
		queue_error_set(err, errlen, "no such user");
		return -1;
	}
	if (queue_supp_address_normalize(address, field, sizeof(field)) == -1) {
		queue_error_set(err, errlen, "bad address");
		return -1;
	}
	struct queue_sched_admin s;
	long long removed = 0;
	const char *args[3] = {"admin_supp_del", user, field};
	if (queue_sched_admin_load(&s, a, err, errlen) == -1 ||
	    run_int(&s, args, 3, &removed, err, errlen) == -1)
		return -1;
	if (found != NULL)
		*found = removed > 0;
	return 0;
}

void queue_supp_list_free(struct queue_supp_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->count; i++)
		free(l->storage[i]);
	free(l->storage);
	free(l->entries);
	*l = (struct queue_supp_list){NULL, 0, NULL};
}

/* Takes the word at *p, which a space must end (NUL-terminated in place), and moves *p past
 * the space; NULL when there is no such word. */
static char *word_take(char **p)
{
	char *w = *p;
	char *sp = strchr(w, ' ');
	if (sp == NULL || sp == w)
		return NULL;
	*sp = '\0';
	*p = sp + 1;
	return w;
}

static bool decimal_take(char **p, int64_t *out)
{
	const char *w = word_take(p);
	if (w == NULL || strlen(w) > 18)
		return false;
	int64_t v = 0;
	for (; *w != '\0'; w++) {
		if (*w < '0' || *w > '9')
			return false;
		v = v * 10 + (*w - '0');
	}
	*out = v;
	return true;
}

/* Parses "<created> <expires> <class> <source> <reason>" in the copy at text (field, NUL,
 * value), pointing e's strings into it. False when malformed. */
static bool entry_parse(char *text, size_t field_len, struct queue_suppression *e)
{
	char *p = text + field_len + 1;
	e->address = text;
	if (!decimal_take(&p, &e->created_ms) || !decimal_take(&p, &e->expires_ms))
		return false;
	e->class_name = word_take(&p);
	if (e->class_name == NULL)
		return false;
	e->source = strchr(p, ' ') != NULL ? word_take(&p) : p;
	if (e->source == NULL)
		return false;
	e->reason = e->source == p ? "" : p;
	return true;
}

/* One entry read by queue_admin_suppress_list, with the copy its strings point into. */
struct read_entry {
	struct queue_suppression e;
	char *text;
};

struct reading {
	struct read_entry *items;
	size_t count, cap;
	int64_t now;
};

static int read_cmp(const void *x, const void *y)
{
	const struct read_entry *a = x, *b = y;
	return strcmp(a->e.address, b->e.address);
}

/* Redis' clock in ms. */
static int redis_now(struct queue_admin *a, int64_t *now, char *err, size_t errlen)
{
	const char *argv[1] = {"TIME"};
	size_t lens[1] = {4};
	redisReply *r = queue_admin_call(a, 1, argv, lens, err, errlen);
	if (r == NULL)
		return -1;
	bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	          r->element[0]->type == REDIS_REPLY_STRING &&
	          r->element[1]->type == REDIS_REPLY_STRING;
	if (ok)
		*now = strtoll(r->element[0]->str, NULL, 10) * 1000 +
		       strtoll(r->element[1]->str, NULL, 10) / 1000;
	freeReplyObject(r);
	if (!ok)
		queue_error_set(err, errlen, "TIME: unexpected reply");
	return ok ? 0 : -1;
}

/* Keeps the entry of one HSCAN pair in rd, or names its field in prune (borrowed from the
 * reply) when it has expired. Malformed values are left out: they never apply either.
 * Returns 0 or -1 (memory). */
static int read_pair(struct reading *rd, const redisReply *field, const redisReply *value,
                     const char **prune, size_t *nprune)
{
	if (field->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
		return 0;
	char *text = malloc(field->len + value->len + 2);
	if (text == NULL)
		return -1;
	memcpy(text, field->str, field->len + 1);
	memcpy(text + field->len + 1, value->str, value->len + 1);
	struct queue_suppression e;
	bool parsed = entry_parse(text, field->len, &e);
	bool expired = parsed && e.expires_ms > 0 && e.expires_ms <= rd->now;
	if (!parsed || expired) {
		if (expired)
			prune[(*nprune)++] = field->str;
		free(text);
		return 0;
	}
	if (rd->count == rd->cap) {
		size_t ncap = rd->cap > 0 ? rd->cap * 2 : 64;
		struct read_entry *n = realloc(rd->items, ncap * sizeof(*n));
		if (n == NULL) {
			free(text);
			return -1;
		}
		rd->items = n;
		rd->cap = ncap;
	}
	rd->items[rd->count++] = (struct read_entry){e, text};
	return 0;
}

/* Sorts rd by address and moves it into out, keeping the first of each address (HSCAN may
 * return a field twice when the hash is rehashed meanwhile). Returns 0 or -1 (memory; rd
 * then still owns everything). */
static int reading_finish(struct reading *rd, struct queue_supp_list *out)
{
	if (rd->count == 0)
		return 0;
	qsort(rd->items, rd->count, sizeof(*rd->items), read_cmp);
	out->entries = calloc(rd->count, sizeof(*out->entries));
	out->storage = calloc(rd->count, sizeof(*out->storage));
	if (out->entries == NULL || out->storage == NULL) {
		free(out->entries);
		free(out->storage);
		*out = (struct queue_supp_list){NULL, 0, NULL};
		return -1;
	}
	for (size_t i = 0; i < rd->count; i++) {
		if (out->count > 0 &&
		    strcmp(out->entries[out->count - 1].address, rd->items[i].e.address) == 0) {
			free(rd->items[i].text);
			continue;
		}
		out->entries[out->count] = rd->items[i].e;
		out->storage[out->count++] = rd->items[i].text;
	}
	rd->count = 0;
	return 0;
}

static void reading_free(struct reading *rd)
{
	for (size_t i = 0; i < rd->count; i++)
		free(rd->items[i].text);
	free(rd->items);
}

int queue_admin_suppress_list(struct queue_admin *a, const char *user, struct queue_supp_list *out,
                              char *err, size_t errlen)
{
	if (out == NULL)
		return -1;
	*out = (struct queue_supp_list){NULL, 0, NULL};
	if (a == NULL || !queue_user_name_valid(user)) {
		queue_error_set(err, errlen, "no such user");
		return -1;
	}
	char key[QUEUE_NAME_MAX + 16];
	(void)snprintf(key, sizeof(key), "pst:supp:%s", user);
	struct queue_sched_admin s;
	struct reading rd = {NULL, 0, 0, 0};
	if (queue_sched_admin_load(&s, a, err, errlen) == -1 ||
	    redis_now(a, &rd.now, err, errlen) == -1)
		return -1;
	char cursor[32] = "0";
	int rc = 0;
	do {
		const char *argv[5] = {"HSCAN", key, cursor, "COUNT", SCAN_COUNT};
		size_t lens[5];
		for (size_t i = 0; i < 5; i++)
			lens[i] = strlen(argv[i]);
		redisReply *r = queue_admin_call(a, 5, argv, lens, err, errlen);
		if (r == NULL) {
			rc = -1;
			break;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2 != 0) {
			queue_error_set(err, errlen, "HSCAN %s: unexpected reply", key);
			freeReplyObject(r);
			rc = -1;
			break;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		const redisReply *items = r->element[1];
		/* admin_supp_prune user field...: the expired fields of this step */
		const char **prune = calloc(2 + items->elements / 2, sizeof(*prune));
		size_t nprune = 2;
		rc = prune != NULL ? 0 : -1;
		for (size_t i = 0; rc == 0 && i < items->elements; i += 2)
			rc = read_pair(&rd, items->element[i], items->element[i + 1], prune,
			               &nprune);
		if (rc == -1)
			queue_error_set(err, errlen, "out of memory");
		if (rc == 0 && nprune > 2) {
			prune[0] = "admin_supp_prune";
			prune[1] = user;
			rc = run_int(&s, prune, nprune, NULL, err, errlen);
		}
		free(prune);
		freeReplyObject(r);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	if (rc == 0 && reading_finish(&rd, out) == -1) {
		queue_error_set(err, errlen, "out of memory");
		rc = -1;
	}
	reading_free(&rd);
	return rc;
}
