/*
 * request.h: the HTTP API's routes and query parameters, parsed and checked. Pure: a path and
 * a query string in, a route and a self-contained query struct (stats/provider.h) out; no
 * I/O, no logging, no libevent. Everything the HTTP layer hands to a provider went through
 * here.
 *
 * Query strings are split on '&'; a name is taken as it is (never decoded) and its value is
 * percent-decoded (RFC 3986 section 2.1; '+' stays '+', so addresses like a+tag@b work). An
 * empty value is as if the parameter were absent. Unknown, repeated, malformed and too long
 * parameters are refused with the parameter's name and why. Routes without parameters ignore
 * the query string.
 */
#ifndef POSTINO_STATS_REQUEST_H
#define POSTINO_STATS_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "stats/provider.h"

#define STATS_QUERY_MAX      2048 /* octets of a query string */
#define STATS_PARAMS_MAX     16   /* parameters in one query string */
#define STATS_PARAM_NAME_MAX 32   /* octets of a parameter name kept for the error */
#define STATS_REASON_MAX     160  /* octets of an error's reason, NUL included */
#define STATS_ASSET_NAME_MAX 64   /* octets of a dashboard file name */

enum stats_route {
	STATS_ROUTE_NONE, /* no such path: 404 */
	STATS_ROUTE_HEALTHZ,
	STATS_ROUTE_READYZ,
	STATS_ROUTE_METRICS,
	STATS_ROUTE_MESSAGE, /* /api/v1/messages/ID */
	STATS_ROUTE_EVENTS,  /* /api/v1/events */
	STATS_ROUTE_SERIES,  /* /api/v1/stats */
	STATS_ROUTE_QUEUE,   /* /api/v1/queue */
	STATS_ROUTE_ASSET,   /* / and /static/NAME */
};

struct stats_request {
	enum stats_route route;
	char asset[STATS_ASSET_NAME_MAX + 1]; /* ASSET: "index.html" for "/", else NAME */
	struct stats_message_query message;
	struct stats_event_query events;
	struct stats_series_query series;
};

struct stats_param_error {
	char parameter[STATS_PARAM_NAME_MAX + 1]; /* the parameter at fault ("id" for the path) */
	char reason[STATS_REASON_MAX];
};

/*
 * The route of path (the request URI's path, not decoded, NUL-terminated) into r->route, and
 * r->asset for STATS_ROUTE_ASSET (NAME: 1..STATS_ASSET_NAME_MAX octets of [a-z0-9._-], not
 * starting with '.'; anything else is STATS_ROUTE_NONE). Returns r->route.
 */
enum stats_route stats_request_route(const char *path, struct stats_request *r);

/*
 * Checks r->route's parameters: the message id in path (16 lowercase hex digits), and query
 * (NULL when the URI has none). now_s (unix seconds) sets the default time ranges:
 *   events: recipient, campaign, type (stats_request_event_type_valid), from, to (unix seconds
 *           or RFC 3339, default the whole retention: 0 .. STATS_TIME_MAX), cursor, limit
 *           (1..1000, default 100);
 *   stats:  from, to (default: the last day for step minute or hour, 30 days for day; to
 *           defaults to now), step (minute|hour|day, default hour), by
 *           (domain|campaign|user|site, default none), limit (1..100 groups, default 10);
 *           from and to are rounded down to the step and may span STATS_BUCKETS_MAX steps.
 * Returns NULL with r's query filled, or err->reason with err->parameter set.
 */
const char *stats_request_params(struct stats_request *r, const char *path, const char *query,
                                 int64_t now_s, struct stats_param_error *err);

/* True when name is an event type the API knows. */
int stats_request_event_type_valid(const char *name);

/* The step's length in seconds. */
int64_t stats_request_step_seconds(enum stats_step step);
/* The keywords of step= and by= ("minute", "domain"...); by_name is NULL for STATS_BY_NONE. */
const char *stats_request_step_name(enum stats_step step);
const char *stats_request_by_name(enum stats_by by);

#endif
