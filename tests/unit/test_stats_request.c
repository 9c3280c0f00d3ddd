/*
 * test_stats_request.c: table-driven unit tests of the HTTP API's pure parts: routes and
 * query parameters (stats/request.c), RFC 3339 times both ways (stats/rfc3339.c), and the JSON
 * documents with their rates (stats/encode.c), hostile text included. Every case that fails
 * prints "case: field got X, want Y".
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stats/encode.h"
#include "stats/request.h"
#include "stats/rfc3339.h"
#include "tests/unit/lib_check.h"

#define NOW 1714564800 /* 2024-05-01T12:00:00Z */

static void check_i64(const char *name, const char *field, int64_t got, int64_t want)
{
	if (got != want)
		check_fail("%s: %s got %lld, want %lld\n", name, field, (long long)got,
		           (long long)want);
}

/* ---- routes ---- */

static void test_routes(void **state)
{
	(void)state;
	const struct {
		const char *path;
		enum stats_route route;
		const char *asset;
	} cases[] = {
	    {"/healthz", STATS_ROUTE_HEALTHZ, ""},
	    {"/readyz", STATS_ROUTE_READYZ, ""},
	    {"/metrics", STATS_ROUTE_METRICS, ""},
	    {"/api/v1/events", STATS_ROUTE_EVENTS, ""},
	    {"/api/v1/stats", STATS_ROUTE_SERIES, ""},
	    {"/api/v1/queue", STATS_ROUTE_QUEUE, ""},
	    {"/api/v1/messages/0123456789abcdef", STATS_ROUTE_MESSAGE, ""},
	    {"/api/v1/messages/", STATS_ROUTE_MESSAGE, ""},
	    {"/", STATS_ROUTE_ASSET, "index.html"},
	    {"/static/app.js", STATS_ROUTE_ASSET, "app.js"},
	    {"/static/style-2_x.css", STATS_ROUTE_ASSET, "style-2_x.css"},
	    {"", STATS_ROUTE_NONE, ""},
	    {"/healthz/", STATS_ROUTE_NONE, ""},
	    {"/HEALTHZ", STATS_ROUTE_NONE, ""},
	    {"/api/v1/queue/", STATS_ROUTE_NONE, ""},
	    {"/api/v1/messages", STATS_ROUTE_NONE, ""},
	    {"/index.html", STATS_ROUTE_NONE, ""},
	    {"/static/", STATS_ROUTE_NONE, ""},
	    {"/static/../etc/passwd", STATS_ROUTE_NONE, ""},
	    {"/static/.hidden", STATS_ROUTE_NONE, ""},
	    {"/static/a/b.js", STATS_ROUTE_NONE, ""},
	    {"/static/App.js", STATS_ROUTE_NONE, ""},
	    {"/static/%2e%2e", STATS_ROUTE_NONE, ""},
	    {"/static/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	     STATS_ROUTE_NONE, ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct stats_request r;
		check_u64(cases[i].path, "route", stats_request_route(cases[i].path, &r),
		          cases[i].route);
		check_u64(cases[i].path, "r.route", r.route, cases[i].route);
		check_str(cases[i].path, "asset", r.asset, cases[i].asset);
	}
	check_done();
}

/* ---- parameters ---- */

#define EV  "/api/v1/events"
#define SER "/api/v1/stats"
#define MSG "/api/v1/messages/"

/* Queries that must be refused, and the parameter blamed. */
struct bad_case {
	const char *name;
	const char *path;
	const char *query;
	const char *bad;
};

static const struct bad_case bad_cases[] = {
    {"unknown parameter", EV, "recipient=a@b&user=x", "user"},
    {"name is not decoded", EV, "recipi%65nt=a@b", "recipi%65nt"},
    {"long unknown name cut", EV,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1",
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    {"repeated", EV, "limit=5&limit=6", "limit"},
    {"limit 0", EV, "limit=0", "limit"},
    {"limit 1001", EV, "limit=1001", "limit"},
    {"limit negative", EV, "limit=-1", "limit"},
    {"limit not a number", EV, "limit=12a", "limit"},
    {"limit huge", EV, "limit=99999999999999999999999", "limit"},
    {"type unknown", EV, "type=exploded", "type"},
    {"from garbage", EV, "from=yesterday", "from"},
    {"from negative", EV, "from=-5", "from"},
    {"from past 9999", EV, "from=253402300800", "from"},
    {"from after to", EV, "from=10&to=9", "from"},
    {"bad date", EV, "to=2023-02-29T00:00:00Z", "to"},
    {"recipient with space", EV, "recipient=a%20b@c", "recipient"},
    {"recipient with control", EV, "recipient=a%0Ab@c", "recipient"},
    {"recipient invalid UTF-8", EV, "recipient=%FF@c", "recipient"},
    {"recipient too long", EV,
     "recipient="
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "recipient"},
    {"campaign with UTF-8", EV, "campaign=%C3%A9", "campaign"},
    {"cursor with space", EV, "cursor=a%20b", "cursor"},
    {"bad escape", EV, "campaign=%zz", "campaign"},
    {"short escape", EV, "campaign=a%2", "campaign"},
    {"encoded NUL", EV, "campaign=a%00b", "campaign"},
    {"too many parameters", EV,
     "limit=&limit=&limit=&limit=&limit=&limit=&limit=&limit=&limit=&limit=&limit=&limit=&"
     "limit=&limit=&limit=&limit=&limit=",
     ""},
    {"stats 1500 steps", SER, "from=0&to=90000&step=minute", "from"},
    {"stats step unknown", SER, "step=week", "step"},
    {"stats by unknown", SER, "by=tag", "by"},
    {"stats limit 101", SER, "limit=101", "limit"},
    {"stats recipient unknown here", SER, "recipient=a@b", "recipient"},
    {"stats from after to", SER, "from=100&to=50", "from"},
    {"message id uppercase", MSG "0123456789ABCDEF", NULL, "id"},
    {"message id short", MSG "0123456789abcde", NULL, "id"},
    {"message id long", MSG "0123456789abcdef0", NULL, "id"},
    {"message id empty", MSG, NULL, "id"},
    {"message id not hex", MSG "0123456789abcdeg", NULL, "id"},
    {"message id encoded", MSG "%30123456789abcde", NULL, "id"},
};

/* Good event queries and what they must give. */
struct event_case {
	const char *name;
	const char *query;
	const char *recipient, *campaign, *type, *cursor;
	int64_t from, to;
	unsigned limit;
};

static const struct event_case event_cases[] = {
    {"events defaults", NULL, "", "", "", "", 0, STATS_TIME_MAX, 100},
    {"events empty query", "", "", "", "", "", 0, STATS_TIME_MAX, 100},
    {"events all",
     "recipient=a%2Btag%40example.com&campaign=spring-24&type=bounced&from=1000&to="
     "2024-05-01T12:00:00Z&cursor=abc:12&limit=1000",
     "a+tag@example.com", "spring-24", "bounced", "abc:12", 1000, NOW, 1000},
    {"plus stays plus", "recipient=a+b@c.d", "a+b@c.d", "", "", "", 0, STATS_TIME_MAX, 100},
    {"UTF-8 recipient", "recipient=%C3%A9@x.fr", "\xc3\xa9@x.fr", "", "", "", 0, STATS_TIME_MAX,
     100},
    {"empty values ignored", "recipient=&campaign=&&limit=", "", "", "", "", 0, STATS_TIME_MAX,
     100},
    {"RFC 3339 with offset", "from=2024-05-01T14:00:00%2B02:00", "", "", "", "", NOW,
     STATS_TIME_MAX, 100},
    {"RFC 3339 with fraction", "to=2024-05-01T12:00:00.999Z", "", "", "", "", 0, NOW, 100},
    {"from equals to", "from=5&to=5", "", "", "", "", 5, 5, 100},
};

/* Good stats queries and what they must give. */
struct series_case {
	const char *name;
	const char *query;
	int64_t from, to;
	unsigned limit;
	enum stats_step step;
	enum stats_by by;
};

static const struct series_case series_cases[] = {
    {"stats defaults", NULL, NOW - 86400, NOW, 10, STATS_STEP_HOUR, STATS_BY_NONE},
    {"stats day default range", "step=day", (NOW - 30 * 86400) / 86400 * 86400, NOW / 86400 * 86400,
     10, STATS_STEP_DAY, STATS_BY_NONE},
    {"stats rounded to the step", "from=1714564830&to=1714568399&step=minute&by=domain", 1714564800,
     1714568340, 10, STATS_STEP_MINUTE, STATS_BY_DOMAIN},
    {"stats by site", "by=site&limit=100", NOW - 86400, NOW, 100, STATS_STEP_HOUR, STATS_BY_SITE},
    {"stats by campaign", "by=campaign", NOW - 86400, NOW, 10, STATS_STEP_HOUR, STATS_BY_CAMPAIGN},
    {"stats by user", "by=user", NOW - 86400, NOW, 10, STATS_STEP_HOUR, STATS_BY_USER},
    {"stats 1499 steps", "from=0&to=89940&step=minute", 0, 89940, 10, STATS_STEP_MINUTE,
     STATS_BY_NONE},
};

/* Parses path?query; returns the error's reason or NULL. */
static const char *parse(const char *path, const char *query, struct stats_request *r,
                         struct stats_param_error *err)
{
	stats_request_route(path, r);
	return stats_request_params(r, path, query, NOW, err);
}

/* Parses a query that must be good; reports it when it is not. */
static bool parse_good(const char *name, const char *path, const char *query,
                       struct stats_request *r)
{
	struct stats_param_error err;
	const char *why = parse(path, query, r, &err);
	if (why != NULL)
		check_fail("%s: error got \"%s: %s\", want none\n", name, err.parameter, why);
	return why == NULL;
}

static void test_params(void **state)
{
	(void)state;
	struct stats_request r;
	struct stats_param_error err;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		if (parse(c->path, c->query, &r, &err) == NULL)
			check_fail("%s: error got none, want one about \"%s\"\n", c->name, c->bad);
		else
			check_str(c->name, "parameter", err.parameter, c->bad);
	}
	for (size_t i = 0; i < sizeof event_cases / sizeof event_cases[0]; i++) {
		const struct event_case *c = &event_cases[i];
		if (!parse_good(c->name, EV, c->query, &r))
			continue;
		check_str(c->name, "recipient", r.events.recipient, c->recipient);
		check_str(c->name, "campaign", r.events.campaign, c->campaign);
		check_str(c->name, "type", r.events.type, c->type);
		check_str(c->name, "cursor", r.events.cursor, c->cursor);
		check_i64(c->name, "from", r.events.from_s, c->from);
		check_i64(c->name, "to", r.events.to_s, c->to);
		check_u64(c->name, "limit", r.events.limit, c->limit);
	}
	for (size_t i = 0; i < sizeof series_cases / sizeof series_cases[0]; i++) {
		const struct series_case *c = &series_cases[i];
		if (!parse_good(c->name, SER, c->query, &r))
			continue;
		check_i64(c->name, "from", r.series.from_s, c->from);
		check_i64(c->name, "to", r.series.to_s, c->to);
		check_u64(c->name, "limit", r.series.limit, c->limit);
		check_u64(c->name, "step", r.series.step, c->step);
		check_u64(c->name, "by", r.series.by, c->by);
	}
	if (parse_good("message id", MSG "0123456789abcdef", NULL, &r))
		check_str("message id", "id", r.message.id, "0123456789abcdef");
	parse_good("queue ignores its query", "/api/v1/queue", "anything=%zz", &r);

	/* the query string's own limit */
	char *big = malloc(STATS_QUERY_MAX + 2);
	assert_non_null(big);
	memset(big, 'a', STATS_QUERY_MAX + 1);
	big[STATS_QUERY_MAX + 1] = '\0';
	if (parse(EV, big, &r, &err) == NULL)
		check_fail("query too long: error got none, want one\n");
	free(big);
	check_done();
}

/* ---- RFC 3339 ---- */

static void test_rfc3339(void **state)
{
	(void)state;
	const struct {
		const char *in;
		int64_t want; /* -1: refused */
	} parse_cases[] = {
	    {"1970-01-01T00:00:00Z", 0},
	    {"2024-05-01T12:00:00Z", NOW},
	    {"2024-05-01t12:00:00z", NOW},
	    {"2024-05-01 12:00:00Z", NOW},
	    {"2024-05-01T12:00:00.5Z", NOW},
	    {"2024-05-01T12:00:00.123456789Z", NOW},
	    {"2024-05-01T12:00:00.1234567890Z", -1},
	    {"2024-05-01T12:00:00.Z", -1},
	    {"2024-05-01T14:30:00+02:30", NOW},
	    {"2024-05-01T09:00:00-03:00", NOW},
	    {"2000-02-29T00:00:00Z", 951782400},
	    {"1900-02-29T00:00:00Z", -1},
	    {"2023-02-29T00:00:00Z", -1},
	    {"2016-12-31T23:59:60Z", 1483228800},
	    {"9999-12-31T23:59:59Z", STATS_TIME_MAX},
	    {"1969-12-31T23:59:59Z", -1},
	    {"1970-01-01T00:00:00+00:01", -1},
	    {"2024-13-01T00:00:00Z", -1},
	    {"2024-00-01T00:00:00Z", -1},
	    {"2024-04-31T00:00:00Z", -1},
	    {"2024-05-01T24:00:00Z", -1},
	    {"2024-05-01T12:60:00Z", -1},
	    {"2024-05-01T12:00:61Z", -1},
	    {"2024-05-01T12:00:00", -1},
	    {"2024-05-01T12:00:00+0200", -1},
	    {"2024-05-01T12:00:00+24:00", -1},
	    {"2024-05-01", -1},
	    {"2024-5-01T12:00:00Z", -1},
	    {"2024-05-01T12:00:00Zjunk", -1},
	    {"", -1},
	};
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		int64_t got = -1;
		if (stats_rfc3339_parse(parse_cases[i].in, strlen(parse_cases[i].in), &got) == -1)
			got = -1;
		check_i64(parse_cases[i].in, "unix", got, parse_cases[i].want);
	}

	const struct {
		int64_t ms;
		const char *want;
	} format_cases[] = {
	    {0, "1970-01-01T00:00:00Z"},
	    {(int64_t)NOW * 1000, "2024-05-01T12:00:00Z"},
	    {(int64_t)NOW * 1000 + 7, "2024-05-01T12:00:00.007Z"},
	    {951782400000LL + 86399999, "2000-02-29T23:59:59.999Z"},
	    {STATS_TIME_MAX * 1000, "9999-12-31T23:59:59Z"},
	    {(STATS_TIME_MAX + 1) * 1000, ""},
	    {-1, ""},
	};
	for (size_t i = 0; i < sizeof format_cases / sizeof format_cases[0]; i++) {
		char out[STATS_RFC3339_SIZE];
		char name[40];
		snprintf(name, sizeof name, "format %lld", (long long)format_cases[i].ms);
		stats_rfc3339_format(format_cases[i].ms, out);
		check_str(name, "text", out, format_cases[i].want);
	}
	/* every day of four centuries goes there and back */
	for (int64_t day = 0; day < 146097 * 4; day += 7) {
		char out[STATS_RFC3339_SIZE];
		int64_t back = -1;
		stats_rfc3339_format(day * 86400000 + 3723000, out);
		if (stats_rfc3339_parse(out, strlen(out), &back) == -1 ||
		    back != day * 86400 + 3723) {
			check_fail("round trip day %lld: got %lld from \"%s\"\n", (long long)day,
			           (long long)back, out);
			break;
		}
	}
	check_done();
}

/* ---- documents ---- */

static const char *finish(struct stats_json *j)
{
	static char out[8192];
	size_t len;
	const char *text = stats_json_finish(j, &len);
	snprintf(out, sizeof out, "%s", text != NULL ? text : "(error)");
	stats_json_release(j);
	const char *why = stats_json_check(out, strlen(out));
	if (why != NULL)
		check_fail("document: check got \"%s\", want valid\n", why);
	return out;
}

static void test_rates(void **state)
{
	(void)state;
	const struct {
		const char *name;
		struct stats_counts c;
		double delivery, bounce, complaint;
	} cases[] = {
	    {"nothing", {0}, NAN, NAN, NAN},
	    {"all delivered", {.delivered = 10}, 1, 0, 0},
	    {"bounces of each class",
	     {.delivered = 90, .bounced_hard = 5, .bounced_soft = 3, .bounced_block = 2},
	     0.9,
	     0.1,
	     0},
	    {"expired counts against delivery", {.delivered = 3, .expired = 1}, 0.75, 0, 0},
	    {"complaints", {.delivered = 1000, .complained = 3}, 1, 0, 0.003},
	    {"complaints without deliveries", {.complained = 3, .bounced_hard = 1}, 0, 1, NAN},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct stats_rates r = stats_encode_rates(&cases[i].c);
		const double got[3] = {r.delivery, r.bounce, r.complaint};
		const double want[3] = {cases[i].delivery, cases[i].bounce, cases[i].complaint};
		const char *field[3] = {"delivery", "bounce", "complaint"};
		for (int k = 0; k < 3; k++)
			if (!(isnan(got[k]) && isnan(want[k])) && fabs(got[k] - want[k]) > 1e-12)
				check_fail("%s: %s got %g, want %g\n", cases[i].name, field[k],
				           got[k], want[k]);
	}
	check_done();
}

static void test_documents(void **state)
{
	(void)state;
	struct stats_json j;
	const struct stats_event ev[] = {
	    {"bounced", 1714564800123, "0123456789abcdef", "a@b.c", "alice", NULL, 2, "mx.b.c",
	     "550 5.1.1 <a@b.c>: \"no\"\r\n<script>", "TLSv1.3", "userunknown", "hard"},
	    {"received", 1714564800000, "0123456789abcdef", "a@b.c", "alice", "c\xff", 0, NULL,
	     NULL, NULL, NULL, NULL},
	};
	const struct stats_event_page page = {ev, 2, "next\"1"};
	stats_json_init(&j, 100000);
	stats_encode_events(&j, &page);
	check_str(
	    "events page", "json", finish(&j),
	    "{\"events\":[{\"type\":\"bounced\",\"time\":\"2024-05-01T12:00:00.123Z\",\"id\":"
	    "\"0123456789abcdef\",\"rcpt\":\"a@b.c\",\"user\":\"alice\",\"campaign\":null,"
	    "\"attempt\":2,\"host\":\"mx.b.c\",\"reply\":\"550 5.1.1 \\u003ca@b.c\\u003e: "
	    "\\\"no\\\"\\u000d\\u000a\\u003cscript\\u003e\",\"tls\":\"TLSv1.3\",\"reason\":"
	    "\"userunknown\",\"class\":\"hard\"},{\"type\":\"received\",\"time\":"
	    "\"2024-05-01T12:00:00Z\",\"id\":\"0123456789abcdef\",\"rcpt\":\"a@b.c\",\"user\":"
	    "\"alice\",\"campaign\":\"c\\ufffd\",\"attempt\":null,\"host\":null,\"reply\":null,"
	    "\"tls\":null,\"reason\":null,\"class\":null}],\"next_cursor\":\"next\\\"1\"}");

	const char *tags[] = {"t1", "t<2>"};
	const struct stats_recipient rc[] = {
	    {"a@b.c", "deferred", 1, 1714565100000, 1714564800000, "451 later", "mx.b.c", "TLSv1.2",
	     "ratelimited", "soft"},
	};
	const struct stats_message m = {"0123456789abcdef", "alice", "", "spring", tags,   2,
	                                1714564790000,      2048,    rc, 1,        ev + 1, 1};
	stats_json_init(&j, 100000);
	stats_encode_message(&j, &m);
	check_str("message", "json", finish(&j),
	          "{\"id\":\"0123456789abcdef\",\"user\":\"alice\",\"sender\":\"\",\"campaign\":"
	          "\"spring\",\"tags\":[\"t1\",\"t\\u003c2\\u003e\"],\"received\":"
	          "\"2024-05-01T11:59:50Z\",\"size\":2048,\"recipients\":[{\"rcpt\":\"a@b.c\","
	          "\"state\":\"deferred\",\"attempts\":1,\"next_attempt\":"
	          "\"2024-05-01T12:05:00Z\",\"last_attempt\":\"2024-05-01T12:00:00Z\","
	          "\"last_reply\":\"451 later\",\"host\":\"mx.b.c\",\"tls\":\"TLSv1.2\","
	          "\"reason\":\"ratelimited\",\"class\":\"soft\"}],\"events\":[{\"type\":"
	          "\"received\",\"time\":\"2024-05-01T12:00:00Z\",\"id\":\"0123456789abcdef\","
	          "\"rcpt\":\"a@b.c\",\"user\":\"alice\",\"campaign\":\"c\\ufffd\",\"attempt\":"
	          "null,\"host\":null,\"reply\":null,\"tls\":null,\"reason\":null,\"class\":"
	          "null}]}");

	const struct stats_bucket buckets[] = {
	    {1714561200, {.received = 10, .delivered = 8, .bounced_hard = 2}},
	    {1714564800, {.received = 5, .delivered = 5, .complained = 1, .deferred = 3}},
	};
	const struct stats_series series[] = {{"gmail.com", buckets, 2}};
	const struct stats_series_set set = {series, 1};
	const struct stats_series_query q = {1714561200, 1714564800, STATS_STEP_HOUR,
	                                     STATS_BY_DOMAIN, 10};
	stats_json_init(&j, 100000);
	stats_encode_series(&j, &q, &set);
	check_str("series", "json", finish(&j),
	          "{\"from\":\"2024-05-01T11:00:00Z\",\"to\":\"2024-05-01T12:00:00Z\",\"step\":"
	          "\"hour\",\"by\":\"domain\",\"series\":[{\"key\":\"gmail.com\",\"totals\":{"
	          "\"received\":15,\"delivered\":13,\"deferred\":3,\"bounced\":2,"
	          "\"bounced_hard\":2,\"bounced_soft\":0,\"bounced_block\":0,\"complained\":1,"
	          "\"suppressed\":0,\"expired\":0,\"rates\":{\"delivery\":0.8666666666666667,"
	          "\"bounce\":0.13333333333333333,\"complaint\":0.07692307692307693}},"
	          "\"buckets\":[{\"time\":\"2024-05-01T11:00:00Z\",\"received\":10,"
	          "\"delivered\":8,\"deferred\":0,\"bounced\":2,\"bounced_hard\":2,"
	          "\"bounced_soft\":0,\"bounced_block\":0,\"complained\":0,\"suppressed\":0,"
	          "\"expired\":0,\"rates\":{\"delivery\":0.8,\"bounce\":0.2,\"complaint\":0}},"
	          "{\"time\":\"2024-05-01T12:00:00Z\",\"received\":5,\"delivered\":5,"
	          "\"deferred\":3,\"bounced\":0,\"bounced_hard\":0,\"bounced_soft\":0,"
	          "\"bounced_block\":0,\"complained\":1,\"suppressed\":0,\"expired\":0,"
	          "\"rates\":{\"delivery\":1,\"bounce\":0,\"complaint\":0.2}}]}]}");

	const struct stats_site sites[] = {
	    {"mx1.a,mx2.a", 7, 2, 0, false, true, 250},
	    {"mx.down", 1, 0, 120, true, false, 0},
	};
	const struct stats_queue queue = {3, 8, 2, 1, 0, 4, 11, 3600, sites, 2};
	stats_json_init(&j, 100000);
	stats_encode_queue(&j, &queue);
	check_str("queue", "json", finish(&j),
	          "{\"totals\":{\"scheduled\":3,\"ready\":8,\"leased\":2,\"held\":1,\"dead\":0,"
	          "\"messages\":4,\"recipients\":11,\"sites\":2,\"sites_down\":1},"
	          "\"oldest_age_s\":3600,\"sites\":[{\"name\":\"mx1.a,mx2.a\",\"ready\":7,"
	          "\"leased\":2,\"down_s\":0,\"held\":false,\"rate_limited\":true,"
	          "\"rate_wait_ms\":250},{\"name\":\"mx.down\",\"ready\":1,\"leased\":0,"
	          "\"down_s\":120,\"held\":true,\"rate_limited\":false,\"rate_wait_ms\":0}]}");

	stats_json_init(&j, 100000);
	stats_encode_error(&j, "bad_parameter", "must be \"x\"", "li<m>it");
	check_str("error", "json", finish(&j),
	          "{\"error\":\"bad_parameter\",\"reason\":\"must be \\\"x\\\"\",\"parameter\":"
	          "\"li\\u003cm\\u003eit\"}");
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),    cmocka_unit_test(test_params),
	    cmocka_unit_test(test_rfc3339),   cmocka_unit_test(test_rates),
	    cmocka_unit_test(test_documents),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
