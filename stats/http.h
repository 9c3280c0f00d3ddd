/*
 * http.h: the HTTP API, /metrics, health checks and the dashboard, served by libevent's
 * evhttp on a listening socket the caller made. The only includer of evhttp.
 *
 * Routes (GET and HEAD only; another method on a known path is 405):
 *   /healthz               200 while the event loop runs
 *   /readyz                200 when settings.ready says so (Redis reachable), else 503
 *   /metrics               Prometheus text (stats/metrics.h) plus the provider's gauges; an
 *                          admin key only when settings.metrics_need_key
 *   /api/v1/messages/ID    one message with its recipients and timeline     (API key)
 *   /api/v1/events         search, newest first, paginated by cursor       (API key)
 *   /api/v1/stats          series of counts and rates                       (API key)
 *   /api/v1/queue          queue depth per site                             (API key)
 *   /, /static/NAME        the dashboard's files (settings.assets)
 * Parameters: stats/request.h. Documents: stats/encode.h.
 *
 * API keys: "Authorization: Bearer KEY" (KEY: 1..STATS_HTTP_KEY_MAX octets of 0x21..0x7e).
 * The key's SHA-256 is looked up through the provider; the key itself is never logged, kept
 * or passed on. A missing, malformed or unknown key is 401 (with WWW-Authenticate); a user's
 * key on an admin-only route is 403. Errors are JSON {"error","reason"[,"parameter"]}: 400,
 * 401, 403, 404, 405, 414, 431, 503 (the provider is down, slow past the request timeout, or
 * every pending slot is taken). Three limits are enforced inside evhttp (libevent 2.1 has no
 * hook for its error pages), which answers them itself with its own HTML page: a body past
 * max_body_size (413), a request line and headers past STATS_HTTP_HEADERS_SLACK times
 * max_headers_size (400), and a request it cannot parse (400). Between max_headers_size and
 * that cap the answer is a JSON 431.
 *
 * Lifetimes: a request waiting for the provider holds a slot in a fixed table, and the
 * provider gets the slot's reference (index and generation), never a pointer. Every request
 * is answered exactly once: by the provider's callback or by the slot's timer (503); a late
 * or second answer finds a stale reference and is dropped. evhttp (2.1) stops reading a
 * connection while its request waits, so a client that leaves is noticed when the answer is
 * written, and evhttp then frees the connection and the request; a connection closed from
 * this side (stats_http_free) runs the close callback, which releases its slots first. The
 * process must ignore SIGPIPE.
 */
#ifndef POSTINO_STATS_HTTP_H
#define POSTINO_STATS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "stats/dashboard_assets.h"
#include "stats/provider.h"

struct event_base;
struct stats_http;
struct stats_metrics;

#define STATS_HTTP_KEY_MAX       256     /* octets of an API key */
#define STATS_HTTP_URI_MAX       4096    /* octets of a request URI: 414 past it */
#define STATS_HTTP_HEADERS_MAX   64      /* header lines of a request: 431 past it */
#define STATS_HTTP_RESPONSE_MAX  8388608 /* octets of a JSON document (8 MiB): 500 past it */
#define STATS_HTTP_PENDING_MAX   4096    /* largest settings.max_pending */
#define STATS_HTTP_HEADERS_SLACK 2       /* evhttp's header cap: this times max_headers_size */

/* Defaults, used for a 0 in the settings. */
#define STATS_HTTP_BODY_DEFAULT    4096  /* the API takes no body */
#define STATS_HTTP_HEADERS_DEFAULT 16384 /* request line and headers */
#define STATS_HTTP_TIMEOUT_DEFAULT 10000 /* ms */
#define STATS_HTTP_PENDING_DEFAULT 256

struct stats_http_settings {
	size_t max_body_size;    /* octets of a request body */
	size_t max_headers_size; /* octets of the request line plus the headers */
	/* ms: the idle time while reading a request or writing an answer, and the longest wait
	 * for the provider */
	int request_timeout_ms;
	unsigned max_pending; /* requests waiting for the provider at once, 1..PENDING_MAX */
	/* shared metrics (may be NULL): rendered by /metrics, and http_requests_total counted
	 * in row metrics_worker */
	struct stats_metrics *metrics;
	int metrics_worker;
	bool metrics_need_key; /* /metrics wants an admin key */
	/* readiness for /readyz (NULL: always ready); called on the loop thread */
	bool (*ready)(void *arg);
	void *ready_arg;
	/* the dashboard's files (borrowed for the server's life), e.g. stats_dashboard_assets */
	const struct stats_asset *assets;
	size_t nassets;
};

/*
 * Serves HTTP on listen_fd (a bound, listening TCP socket; made non-blocking here) on base.
 * s, p and the assets are borrowed for the server's life; provider_arg is passed to every
 * provider function. listen_fd stays the caller's: it is not closed, here or by
 * stats_http_free. Returns NULL on failure (logged).
 */
struct stats_http *stats_http_new(struct event_base *base, int listen_fd,
                                  const struct stats_http_settings *s,
                                  const struct stats_provider *p, void *provider_arg);

/*
 * Stops listening, closes every connection (requests waiting for the provider are dropped
 * unanswered) and frees the server. The provider must have no call pending (see
 * provider.h). No-op on NULL.
 */
void stats_http_free(struct stats_http *h);

/* Requests waiting for the provider now (for tests and shutdown). */
unsigned stats_http_pending(const struct stats_http *h);

#endif
