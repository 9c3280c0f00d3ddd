/*
 * request.c: routes and query parameters of the HTTP API (see request.h). Percent-decoding
 * per RFC 3986 section 2.1, times per RFC 3339 (stats/rfc3339.c) or unix seconds. Pure.
 */
#include "stats/request.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "relay/codec.h"
#include "relay/num.h"
#include "stats/json.h"
#include "stats/rfc3339.h"

#define EVENTS_LIMIT_DEFAULT 100
#define GROUPS_LIMIT_DEFAULT 10
#define DAY_S                86400

/* The longest decoded value of any parameter (the recipient). */
#define VALUE_MAX STATS_RECIPIENT_MAX

static const char *const event_types[] = {
    "received",   "suppressed", "deferred", "delivered", "bounced", "expired",
    "complained", "dropped",    "deleted",  "opened",    "clicked", "unsubscribed",
};

int stats_request_event_type_valid(const char *name)
{
	for (size_t i = 0; i < sizeof event_types / sizeof event_types[0]; i++)
		if (strcmp(name, event_types[i]) == 0)
			return 1;
	return 0;
}

/* Keywords of step= and by=, in enum order. */
static const char *const step_names[] = {"minute", "hour", "day"};
static const char *const by_names[] = {"", "domain", "campaign", "user", "site"};

int64_t stats_request_step_seconds(enum stats_step step)
{
	static const int64_t seconds[] = {60, 3600, DAY_S};
	return (unsigned)step < sizeof seconds / sizeof seconds[0] ? seconds[step] : DAY_S;
}

const char *stats_request_step_name(enum stats_step step)
{
	return (unsigned)step < sizeof step_names / sizeof step_names[0] ? step_names[step] : "day";
}

const char *stats_request_by_name(enum stats_by by)
{
	return by != STATS_BY_NONE && (unsigned)by < sizeof by_names / sizeof by_names[0]
	           ? by_names[by]
	           : NULL;
}

/* The index of v in names[0..n), or -1. */
static int keyword(const char *v, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (names[i][0] != '\0' && strcmp(v, names[i]) == 0)
			return (int)i;
	return -1;
}

/* ---- routes ---- */

static bool asset_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > STATS_ASSET_NAME_MAX || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

enum stats_route stats_request_route(const char *path, struct stats_request *r)
{
	static const struct {
		const char *path;
		enum stats_route route;
	} exact[] = {
	    {"/healthz", STATS_ROUTE_HEALTHZ},     {"/readyz", STATS_ROUTE_READYZ},
	    {"/metrics", STATS_ROUTE_METRICS},     {"/api/v1/events", STATS_ROUTE_EVENTS},
	    {"/api/v1/stats", STATS_ROUTE_SERIES}, {"/api/v1/queue", STATS_ROUTE_QUEUE},
	};
	memset(r, 0, sizeof *r);
	r->route = STATS_ROUTE_NONE;
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
		if (strcmp(path, exact[i].path) == 0)
			return r->route = exact[i].route;
	if (starts_with(path, "/api/v1/messages/"))
		return r->route = STATS_ROUTE_MESSAGE;
	if (strcmp(path, "/") == 0) {
		snprintf(r->asset, sizeof r->asset, "index.html");
		return r->route = STATS_ROUTE_ASSET;
	}
	if (starts_with(path, "/static/") && asset_name_valid(path + strlen("/static/"))) {
		snprintf(r->asset, sizeof r->asset, "%s", path + strlen("/static/"));
		return r->route = STATS_ROUTE_ASSET;
	}
	return r->route;
}

/* ---- parameters ---- */

static const char *param_fail(struct stats_param_error *err, const char *name, size_t name_len,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records the faulty parameter (its name cut to STATS_PARAM_NAME_MAX octets; the JSON writer
 * escapes it) and the reason. Returns err->reason. */
static const char *param_fail(struct stats_param_error *err, const char *name, size_t name_len,
                              const char *fmt, ...)
{
	va_list ap;
	if (name_len > STATS_PARAM_NAME_MAX)
		name_len = STATS_PARAM_NAME_MAX;
	memcpy(err->parameter, name, name_len);
	err->parameter[name_len] = '\0';
	va_start(ap, fmt);
	vsnprintf(err->reason, sizeof err->reason, fmt, ap);
	va_end(ap);
	return err->reason;
}

/* Percent-decodes s[0..n) into out (at most max octets, then NUL). Returns the decoded length,
 * -1 for a bad escape or a decoded NUL, -2 when longer than max. */
static long percent_decode(const char *s, size_t n, char *out, size_t max)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (n - i < 3)
				return -1;
			int hi = codec_hex_digit(s[i + 1]), lo = codec_hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (o >= max)
			return -2;
		out[o++] = c;
	}
	out[o] = '\0';
	return (long)o;
}

/* What a parameter's decoded value must look like. */
enum param_kind {
	KIND_RECIPIENT, /* valid UTF-8, no control byte or space */
	KIND_PRINTABLE, /* 0x21..0x7e */
	KIND_TYPE,
	KIND_TIME,
	KIND_LIMIT,
	KIND_STEP,
	KIND_BY,
};

struct param_spec {
	const char *name;
	enum param_kind kind;
	size_t max;   /* octets (strings) or the largest value (limit) */
	size_t field; /* offset of the destination in struct stats_request */
};

#define EVENT_FIELD(f)  offsetof(struct stats_request, events.f)
#define SERIES_FIELD(f) offsetof(struct stats_request, series.f)

static const struct param_spec event_params[] = {
    {"recipient", KIND_RECIPIENT, STATS_RECIPIENT_MAX, EVENT_FIELD(recipient)},
    {"campaign", KIND_PRINTABLE, STATS_CAMPAIGN_MAX, EVENT_FIELD(campaign)},
    {"type", KIND_TYPE, STATS_EVENT_TYPE_MAX, EVENT_FIELD(type)},
    {"from", KIND_TIME, 0, EVENT_FIELD(from_s)},
    {"to", KIND_TIME, 0, EVENT_FIELD(to_s)},
    {"cursor", KIND_PRINTABLE, STATS_CURSOR_MAX, EVENT_FIELD(cursor)},
    {"limit", KIND_LIMIT, STATS_EVENTS_LIMIT_MAX, EVENT_FIELD(limit)},
};

/* series_params' indices that the defaults depend on */
#define SERIES_FROM 0
#define SERIES_TO   1

static const struct param_spec series_params[] = {
    {"from", KIND_TIME, 0, SERIES_FIELD(from_s)},
    {"to", KIND_TIME, 0, SERIES_FIELD(to_s)},
    {"step", KIND_STEP, 0, SERIES_FIELD(step)},
    {"by", KIND_BY, 0, SERIES_FIELD(by)},
    {"limit", KIND_LIMIT, STATS_GROUPS_MAX, SERIES_FIELD(limit)},
};

#define PARAMS_SPECS_MAX 8

static bool utf8_text_valid(const char *s, size_t n)
{
	size_t i = 0, bad;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f)
			return false;
		size_t used = stats_json_utf8_sequence(s + i, n - i, &bad);
		if (used == 0)
			return false;
		i += used;
	}
	return true;
}

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

static int parse_time(const char *s, size_t n, int64_t *out)
{
	uint64_t v;
	if (n > 0 && s[0] >= '0' && s[0] <= '9' && num_parse_u64(s, n, STATS_TIME_MAX, &v) == 0) {
		*out = (int64_t)v;
		return 0;
	}
	return stats_rfc3339_parse(s, n, out);
}

/* Stores one decoded value v[0..n) per spec into r. Returns NULL or the reason. */
static const char *store(const struct param_spec *spec, const char *v, size_t n,
                         struct stats_request *r, struct stats_param_error *err)
{
	char *field = (char *)r + spec->field;
	const char *name = spec->name;
	uint64_t num;
	int k;

	switch (spec->kind) {
	case KIND_RECIPIENT:
		if (!utf8_text_valid(v, n))
			return param_fail(err, name, strlen(name),
			                  "must be UTF-8 without spaces or control characters");
		memcpy(field, v, n + 1);
		return NULL;
	case KIND_PRINTABLE:
		if (!printable(v, n))
			return param_fail(err, name, strlen(name),
			                  "must be printable ASCII without spaces");
		memcpy(field, v, n + 1);
		return NULL;
	case KIND_TYPE:
		if (!stats_request_event_type_valid(v))
			return param_fail(err, name, strlen(name),
			                  "must be an event type such as delivered or bounced");
		memcpy(field, v, n + 1);
		return NULL;
	case KIND_TIME:
		if (parse_time(v, n, (int64_t *)(void *)field) == -1)
			return param_fail(err, name, strlen(name),
			                  "must be unix seconds or an RFC 3339 time, "
			                  "1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z");
		return NULL;
	case KIND_LIMIT:
		if (num_parse_u64(v, n, spec->max, &num) == -1 || num == 0)
			return param_fail(err, name, strlen(name), "must be a number from 1 to %zu",
			                  spec->max);
		*(unsigned *)(void *)field = (unsigned)num;
		return NULL;
	case KIND_STEP:
		k = keyword(v, step_names, sizeof step_names / sizeof step_names[0]);
		if (k < 0)
			return param_fail(err, name, strlen(name), "must be minute, hour or day");
		*(enum stats_step *)(void *)field = (enum stats_step)k;
		return NULL;
	case KIND_BY:
		k = keyword(v, by_names, sizeof by_names / sizeof by_names[0]);
		if (k < 0)
			return param_fail(err, name, strlen(name),
			                  "must be domain, campaign, user or site");
		*(enum stats_by *)(void *)field = (enum stats_by)k;
		return NULL;
	}
	return param_fail(err, name, strlen(name), "unknown kind");
}

/*
 * Splits query into parameters, checks each against specs and stores it in r. seen[i] tells
 * whether specs[i] was given (with a non-empty value). Returns NULL or the reason.
 */
static const char *parse_query(const char *query, const struct param_spec *specs, size_t nspecs,
                               bool seen[PARAMS_SPECS_MAX], struct stats_request *r,
                               struct stats_param_error *err)
{
	size_t len = query != NULL ? strlen(query) : 0, pos = 0, count = 0;
	char value[VALUE_MAX + 1];

	if (len > STATS_QUERY_MAX)
		return param_fail(err, "", 0, "the query string is longer than %d octets",
		                  STATS_QUERY_MAX);
	while (pos < len) {
		const char *part = query + pos;
		const char *amp = memchr(part, '&', len - pos);
		size_t part_len = amp != NULL ? (size_t)(amp - part) : len - pos;
		pos += part_len + 1;
		if (part_len == 0)
			continue;
		if (++count > STATS_PARAMS_MAX)
			return param_fail(err, "", 0, "more than %d parameters", STATS_PARAMS_MAX);
		const char *eq = memchr(part, '=', part_len);
		size_t name_len = eq != NULL ? (size_t)(eq - part) : part_len;
		const char *raw = eq != NULL ? eq + 1 : part + part_len;
		size_t raw_len = part_len - name_len - (eq != NULL);

		size_t i = 0;
		while (i < nspecs && !(strlen(specs[i].name) == name_len &&
		                       memcmp(specs[i].name, part, name_len) == 0))
			i++;
		if (i == nspecs)
			return param_fail(err, part, name_len, "unknown parameter");
		/* strings have their limit; a time, a number or a keyword fits in 64 octets */
		size_t max = specs[i].max > 0 && specs[i].kind != KIND_LIMIT ? specs[i].max : 64;
		long n = percent_decode(raw, raw_len, value, max);
		if (n == -1)
			return param_fail(err, part, name_len,
			                  "bad percent-encoding (or an encoded NUL)");
		if (n == -2)
			return param_fail(err, part, name_len, "longer than %zu octets", max);
		if (n == 0)
			continue; /* empty: as if absent */
		if (seen[i])
			return param_fail(err, part, name_len, "given more than once");
		seen[i] = true;
		const char *why = store(&specs[i], value, (size_t)n, r, err);
		if (why != NULL)
			return why;
	}
	return NULL;
}

static const char *message_params(struct stats_request *r, const char *path,
                                  struct stats_param_error *err)
{
	const char *id = path + strlen("/api/v1/messages/");
	size_t n = strlen(id);
	if (n != STATS_ID_LEN)
		return param_fail(err, "id", 2, "must be %d lowercase hex digits", STATS_ID_LEN);
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return param_fail(err, "id", 2, "must be %d lowercase hex digits",
			                  STATS_ID_LEN);
	memcpy(r->message.id, id, n + 1);
	return NULL;
}

static const char *event_query(struct stats_request *r, const char *query,
                               struct stats_param_error *err)
{
	bool seen[PARAMS_SPECS_MAX] = {false};
	struct stats_event_query *q = &r->events;
	q->from_s = 0;
	q->to_s = STATS_TIME_MAX;
	q->limit = EVENTS_LIMIT_DEFAULT;
	const char *why = parse_query(query, event_params,
	                              sizeof event_params / sizeof event_params[0], seen, r, err);
	if (why != NULL)
		return why;
	if (q->from_s > q->to_s)
		return param_fail(err, "from", 4, "must not be after to");
	return NULL;
}

static const char *series_query(struct stats_request *r, const char *query, int64_t now_s,
                                struct stats_param_error *err)
{
	bool seen[PARAMS_SPECS_MAX] = {false};
	struct stats_series_query *q = &r->series;
	q->step = STATS_STEP_HOUR;
	q->by = STATS_BY_NONE;
	q->limit = GROUPS_LIMIT_DEFAULT;
	const char *why = parse_query(query, series_params,
	                              sizeof series_params / sizeof series_params[0], seen, r, err);
	if (why != NULL)
		return why;
	int64_t step = stats_request_step_seconds(q->step);
	if (!seen[SERIES_TO])
		q->to_s = now_s < 0 ? 0 : (now_s > STATS_TIME_MAX ? STATS_TIME_MAX : now_s);
	if (!seen[SERIES_FROM]) {
		int64_t span = q->step == STATS_STEP_DAY ? 30 * DAY_S : DAY_S;
		q->from_s = q->to_s > span ? q->to_s - span : 0;
	}
	if (q->from_s > q->to_s)
		return param_fail(err, "from", 4, "must not be after to");
	q->from_s -= q->from_s % step;
	q->to_s -= q->to_s % step;
	if ((q->to_s - q->from_s) / step >= STATS_BUCKETS_MAX)
		return param_fail(err, "from", 4,
		                  "from .. to spans more than %d steps: narrow it or use a longer "
		                  "step",
		                  STATS_BUCKETS_MAX);
	return NULL;
}

const char *stats_request_params(struct stats_request *r, const char *path, const char *query,
                                 int64_t now_s, struct stats_param_error *err)
{
	err->parameter[0] = '\0';
	err->reason[0] = '\0';
	switch (r->route) {
	case STATS_ROUTE_MESSAGE:
		return message_params(r, path, err);
	case STATS_ROUTE_EVENTS:
		return event_query(r, query, err);
	case STATS_ROUTE_SERIES:
		return series_query(r, query, now_s, err);
	default:
		return NULL;
	}
}
