/*
 * fuzz_stats_request.c: libFuzzer target for the HTTP API's parsers of untrusted bytes:
 * stats/request.c (routes and query strings), stats/rfc3339.c (times) and the JSON writer's
 * string escaping (stats/json.c). The first input octet picks the route; the rest is the
 * path tail or the query. Traps when an output breaks its contract: a refused query without
 * a reason, a parsed query out of its limits, a time that does not read back, or JSON that
 * does not validate.
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "stats/json.h"
#include "stats/request.h"
#include "stats/rfc3339.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1714564800

static void bounded(const char *s, size_t max)
{
	if (strnlen(s, max + 1) > max)
		__builtin_trap();
}

static void request_check(const char *text, size_t len, unsigned route)
{
	static const char *const paths[] = {"/api/v1/events", "/api/v1/stats", "/api/v1/queue"};
	char path[128];
	struct stats_request r;
	struct stats_param_error err;
	const char *query = text;

	if (route % 4 == 3) {
		/* the message route: the input is the id */
		if (len > 64)
			return;
		memcpy(path, "/api/v1/messages/", 17);
		memcpy(path + 17, text, len + 1);
		query = NULL;
	} else {
		snprintf(path, sizeof path, "%s", paths[route % 4]);
	}
	stats_request_route(path, &r);
	const char *why = stats_request_params(&r, path, query, NOW, &err);
	if (why != NULL) {
		if (why[0] == '\0')
			__builtin_trap();
		bounded(err.parameter, STATS_PARAM_NAME_MAX);
		return;
	}
	const struct stats_event_query *e = &r.events;
	const struct stats_series_query *s = &r.series;
	switch (r.route) {
	case STATS_ROUTE_EVENTS:
		bounded(e->recipient, STATS_RECIPIENT_MAX);
		bounded(e->campaign, STATS_CAMPAIGN_MAX);
		bounded(e->type, STATS_EVENT_TYPE_MAX);
		bounded(e->cursor, STATS_CURSOR_MAX);
		if (e->limit < 1 || e->limit > STATS_EVENTS_LIMIT_MAX || e->from_s < 0 ||
		    e->from_s > e->to_s || e->to_s > STATS_TIME_MAX ||
		    (e->type[0] != '\0' && !stats_request_event_type_valid(e->type)))
			__builtin_trap();
		break;
	case STATS_ROUTE_SERIES: {
		int64_t step = stats_request_step_seconds(s->step);
		if (s->limit < 1 || s->limit > STATS_GROUPS_MAX || s->from_s < 0 ||
		    s->from_s > s->to_s || s->from_s % step != 0 || s->to_s % step != 0 ||
		    (s->to_s - s->from_s) / step >= STATS_BUCKETS_MAX)
			__builtin_trap();
		break;
	}
	case STATS_ROUTE_MESSAGE:
		if (strlen(r.message.id) != STATS_ID_LEN ||
		    strspn(r.message.id, "0123456789abcdef") != STATS_ID_LEN)
			__builtin_trap();
		break;
	default:
		break;
	}
}

static void time_check(const char *text, size_t len)
{
	int64_t t;
	char out[STATS_RFC3339_SIZE];
	int64_t back;
	if (stats_rfc3339_parse(text, len, &t) == -1)
		return;
	if (t < 0 || t > STATS_TIME_MAX || stats_rfc3339_format(t * 1000, out) == NULL ||
	    stats_rfc3339_parse(out, strlen(out), &back) == -1 || back != t)
		__builtin_trap();
}

static void json_check(const char *bytes, size_t len)
{
	struct stats_json j;
	size_t n;
	stats_json_init(&j, 16 * len + 64);
	stats_json_array_open(&j);
	stats_json_string(&j, bytes, len);
	stats_json_array_close(&j);
	const char *text = stats_json_finish(&j, &n);
	if (text == NULL || stats_json_check(text, n) != NULL)
		__builtin_trap();
	stats_json_release(&j);
	(void)stats_json_check(bytes, len); /* any bytes: an answer, never a crash */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > STATS_QUERY_MAX + 64)
		return 0;
	char *text = malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	size_t len = strlen(text);
	request_check(text, len, data[0]);
	time_check(text, len);
	json_check((const char *)data + 1, size - 1);
	free(text);
	return 0;
}
