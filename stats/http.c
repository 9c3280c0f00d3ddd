/*
 * http.c: the HTTP API server on evhttp (see http.h). Owns the evhttp server, the listener
 * wrapper (not the listening fd) and the table of requests waiting for the provider: each
 * slot holds one evhttp request, the connection it came on, a timer and the parsed query;
 * provider calls carry the slot's reference (generation << 32 | index), so a late or
 * duplicate answer never reaches a request that is gone. RFC 9110 (status codes, Allow),
 * RFC 6750 (Bearer tokens, WWW-Authenticate), RFC 6585 (431).
 *
 * evhttp's request lifetimes, which the slot table follows (libevent 2.1): a server request
 * handed to our callback stays on its connection's list until evhttp_send_reply, which frees
 * it once written; reading is paused meanwhile, so a client that goes away is noticed when
 * the answer is written (the connection then fails and frees itself). The connection's close
 * callback runs before it frees the requests still on its list: there the slots of that
 * connection are released, and a request evhttp detached from it (evcon NULL) is freed here.
 */
#include "stats/http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/evp.h>

#include "relay/log.h"
#include "stats/encode.h"
#include "stats/json.h"
#include "stats/metrics.h"
#include "stats/request.h"

#define PATH_LOG_MAX 128 /* octets of a path in a log line, escaped */

/* Sent with every answer: nothing here may be framed, sniffed or load outside resources. */
#define CSP                                                                                        \
	"default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "          \
	"frame-ancestors 'none'"

struct slot {
	struct stats_http *http;
	uint32_t index;
	uint32_t gen; /* bumped on every take, so old references go stale */
	bool used;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;
	uint64_t id; /* the log id of this request */
	struct stats_request rq;
	bool param_bad; /* perr holds why; answered 400 once the key checks out */
	struct stats_param_error perr;
	char user[STATS_USER_MAX + 1];
	bool admin;
};

struct stats_http {
	struct event_base *base;
	struct evhttp *evhttp;
	struct stats_http_settings s; /* with defaults applied */
	const struct stats_provider *p;
	void *parg;
	struct slot *slots;
	unsigned nslots;
	unsigned pending;
	unsigned next; /* where the search for a free slot starts */
};

/* ---- answers ---- */

static const char *method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	}
	return "OTHER";
}

static const char *status_phrase(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

/*
 * Sends one answer and counts it; req is freed by evhttp once written (or at once when its
 * client is gone). cache: the Cache-Control value. body may be NULL when len is 0.
 */
static void reply(struct stats_http *h, struct evhttp_request *req, uint64_t id, int code,
                  const char *content_type, const char *cache, const void *body, size_t len)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evhttp_request_get_output_buffer(req);
	char length[24];
	bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
	/* evhttp 2.1 would send a HEAD answer's body: send its length alone (RFC 9110 9.3.2) */
	snprintf(length, sizeof length, "%zu", len);
	if (head) {
		if (evhttp_add_header(out, "Content-Length", length) == -1)
			code = 500;
		len = 0;
	}
	if (evhttp_add_header(out, "Content-Type", content_type) == -1 ||
	    evhttp_add_header(out, "Cache-Control", cache) == -1 ||
	    evhttp_add_header(out, "X-Content-Type-Options", "nosniff") == -1 ||
	    evhttp_add_header(out, "Content-Security-Policy", CSP) == -1 ||
	    evhttp_add_header(out, "X-Frame-Options", "DENY") == -1 ||
	    evhttp_add_header(out, "Referrer-Policy", "no-referrer") == -1 ||
	    (len > 0 && evbuffer_add(buf, body, len) == -1)) {
		log_error(id, "event=http_reply call=evhttp_add_header|evbuffer_add failed");
		evbuffer_drain(buf, evbuffer_get_length(buf));
		code = 500;
	}
	stats_metrics_add(h->s.metrics, h->s.metrics_worker, STATS_METRIC_HTTP_REQUESTS_TOTAL,
	                  stats_metrics_code_class(code), 1);
	if (code >= 500 && code != 503) /* 503s are logged where they arise */
		log_warn(id, "event=http_reply status=%d", code);
	else
		log_debug(id, "event=http_reply status=%d bytes=%zu", code, len);
	evhttp_send_reply(req, code, status_phrase(code), NULL);
}

/* Sends a finished JSON document, or a 500 when the writer failed. Releases j. */
static void reply_json(struct stats_http *h, struct evhttp_request *req, uint64_t id, int code,
                       struct stats_json *j)
{
	size_t len;
	const char *text = stats_json_finish(j, &len);
	if (text == NULL) {
		log_error(id, "event=http_json error=\"%s\"", stats_json_error(j));
		static const char fallback[] =
		    "{\"error\":\"internal\",\"reason\":\"the answer could not be encoded\"}";
		reply(h, req, id, 500, "application/json", "no-store", fallback,
		      sizeof fallback - 1);
	} else {
		reply(h, req, id, code, "application/json", "no-store", text, len);
	}
	stats_json_release(j);
}

static void reply_error(struct stats_http *h, struct evhttp_request *req, uint64_t id, int code,
                        const char *error, const char *reason, const char *parameter)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct stats_json j;
	if (code == 401)
		evhttp_add_header(out, "WWW-Authenticate", "Bearer realm=\"postino\"");
	else if (code == 405)
		evhttp_add_header(out, "Allow", "GET, HEAD");
	else if (code == 503)
		evhttp_add_header(out, "Retry-After", "5");
	stats_json_init(&j, STATS_HTTP_RESPONSE_MAX);
	stats_encode_error(&j, error, reason, parameter);
	reply_json(h, req, id, code, &j);
}

/* ---- the slot table ---- */

static uint64_t slot_ref(const struct slot *sl)
{
	return (uint64_t)sl->gen << 32 | sl->index;
}

static struct slot *slot_take(struct stats_http *h)
{
	for (unsigned k = 0; k < h->nslots; k++) {
		struct slot *sl = &h->slots[(h->next + k) % h->nslots];
		if (sl->used)
			continue;
		h->next = (sl->index + 1) % h->nslots;
		sl->used = true;
		sl->gen++;
		h->pending++;
		return sl;
	}
	return NULL;
}

/* The live slot of ref, or NULL when it was answered, timed out or its client left. */
static struct slot *slot_find(struct stats_http *h, uint64_t ref)
{
	uint32_t index = (uint32_t)ref;
	if (index >= h->nslots)
		return NULL;
	struct slot *sl = &h->slots[index];
	return sl->used && sl->gen == (uint32_t)(ref >> 32) ? sl : NULL;
}

static void slot_release(struct slot *sl)
{
	evtimer_del(sl->timer);
	sl->used = false;
	sl->req = NULL;
	sl->conn = NULL;
	sl->http->pending--;
}

/* Answers a slot's request with an error and frees the slot. */
static void slot_error(struct slot *sl, int code, const char *error, const char *reason,
                       const char *parameter)
{
	struct evhttp_request *req = sl->req;
	uint64_t id = sl->id;
	slot_release(sl);
	reply_error(sl->http, req, id, code, error, reason, parameter);
}

static void slot_json(struct slot *sl, struct stats_json *j)
{
	struct evhttp_request *req = sl->req;
	uint64_t id = sl->id;
	slot_release(sl);
	reply_json(sl->http, req, id, 200, j);
}

static void slot_unavailable(struct slot *sl)
{
	slot_error(sl, 503, "unavailable", "the data store is unavailable; retry later", NULL);
}

/* A provider's error status, answered. */
static void slot_status(struct slot *sl, enum stats_status st, const char *what)
{
	switch (st) {
	case STATS_NOT_FOUND:
		slot_error(sl, 404, "not_found", what, NULL);
		return;
	case STATS_BAD_CURSOR:
		slot_error(sl, 400, "bad_parameter", "not a cursor this API gave", "cursor");
		return;
	case STATS_OK:
	case STATS_UNAVAILABLE:
		break;
	}
	slot_unavailable(sl);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct slot *sl = arg;
	log_warn(sl->id, "event=http_provider_timeout route=%d", (int)sl->rq.route);
	slot_error(sl, 503, "unavailable", "the data store did not answer in time", NULL);
}

/* The connection is going away: its waiting requests will not be answered. */
static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct stats_http *h = arg;
	for (unsigned i = 0; i < h->nslots && h->pending > 0; i++) {
		struct slot *sl = &h->slots[i];
		if (!sl->used || sl->conn != conn)
			continue;
		log_info(sl->id, "event=http_client_gone");
		/* Still on the connection's list: evhttp frees it right after this callback.
		 * Detached (evcon NULL): nobody else will. */
		if (evhttp_request_get_connection(sl->req) == NULL)
			evhttp_request_free(sl->req);
		slot_release(sl);
	}
}

/* ---- provider answers ---- */

/* Writes a provider's result as the route's document. */
typedef void encode_fn(struct stats_json *j, const struct slot *sl, const void *result);

/*
 * A provider's answer to the request of ref: encoded and sent, or its error status answered,
 * or dropped when the request is gone. not_found: the reason of a 404, NULL when the route
 * has no such answer (a NOT_FOUND then counts as unavailable).
 */
static void answer(struct stats_http *h, uint64_t ref, enum stats_status st, const void *result,
                   encode_fn *encode, const char *not_found)
{
	struct slot *sl = slot_find(h, ref);
	struct stats_json j;
	if (sl == NULL)
		return;
	if (st != STATS_OK || result == NULL) {
		if (st == STATS_OK || (st == STATS_NOT_FOUND && not_found == NULL) ||
		    (st == STATS_BAD_CURSOR && sl->rq.route != STATS_ROUTE_EVENTS))
			st = STATS_UNAVAILABLE;
		slot_status(sl, st, not_found);
		return;
	}
	stats_json_init(&j, STATS_HTTP_RESPONSE_MAX);
	encode(&j, sl, result);
	slot_json(sl, &j);
}

static void encode_message(struct stats_json *j, const struct slot *sl, const void *m)
{
	stats_encode_message(j, m);
}

static void encode_events(struct stats_json *j, const struct slot *sl, const void *page)
{
	stats_encode_events(j, page);
}

static void encode_series(struct stats_json *j, const struct slot *sl, const void *set)
{
	stats_encode_series(j, &sl->rq.series, set);
}

static void encode_queue(struct stats_json *j, const struct slot *sl, const void *q)
{
	stats_encode_queue(j, q);
}

static void on_message(enum stats_status st, const struct stats_message *m, uint64_t ref, void *arg)
{
	answer(arg, ref, st, m, encode_message, "no such message");
}

static void on_events(enum stats_status st, const struct stats_event_page *page, uint64_t ref,
                      void *arg)
{
	answer(arg, ref, st, page, encode_events, NULL);
}

static void on_series(enum stats_status st, const struct stats_series_set *set, uint64_t ref,
                      void *arg)
{
	answer(arg, ref, st, set, encode_series, NULL);
}

static void on_queue(enum stats_status st, const struct stats_queue *q, uint64_t ref, void *arg)
{
	answer(arg, ref, st, q, encode_queue, NULL);
}

/* Renders /metrics: the shared table, the provider's gauges (n may be 0) and readiness. */
static void metrics_reply(struct stats_http *h, struct evhttp_request *req, uint64_t id,
                          const struct stats_gauge *g, size_t n)
{
	struct stats_gauge *all;
	struct evbuffer *text = evbuffer_new();

	if (n > STATS_METRICS_EXTRA_MAX - 1)
		n = STATS_METRICS_EXTRA_MAX - 1;
	all = calloc(n + 1, sizeof *all);
	if (text == NULL || all == NULL) {
		log_error(id, "event=http_metrics call=evbuffer_new|calloc failed");
		free(all);
		evbuffer_free(text);
		reply_error(h, req, id, 500, "internal", "out of memory", NULL);
		return;
	}
	if (n > 0)
		memcpy(all, g, n * sizeof *g);
	all[n].name = "postino_ready";
	all[n].help = "1 when the data store answers (the check of /readyz), else 0.";
	all[n].value = h->s.ready == NULL || h->s.ready(h->s.ready_arg) ? 1 : 0;
	if (stats_metrics_render(h->s.metrics, all, n + 1, text) == -1) {
		free(all);
		evbuffer_free(text);
		reply_error(h, req, id, 500, "internal", "out of memory", NULL);
		return;
	}
	free(all);
	size_t len = evbuffer_get_length(text);
	const void *body = evbuffer_pullup(text, -1);
	reply(h, req, id, 200, "text/plain; version=0.0.4; charset=utf-8", "no-store", body, len);
	evbuffer_free(text);
}

static void on_gauges(enum stats_status st, const struct stats_gauge *g, size_t n, uint64_t ref,
                      void *arg)
{
	struct slot *sl = slot_find(arg, ref);
	if (sl == NULL)
		return;
	struct evhttp_request *req = sl->req;
	uint64_t id = sl->id;
	slot_release(sl);
	/* Redis down: the process's own metrics still matter most */
	bool ok = st == STATS_OK && g != NULL;
	metrics_reply(arg, req, id, ok ? g : NULL, ok ? n : 0);
}

/* ---- request flow: route, key, query ---- */

static void query_start(struct slot *sl)
{
	struct stats_http *h = sl->http;
	const struct stats_provider *p = h->p;
	struct stats_principal who = {sl->user, sl->admin};
	uint64_t ref = slot_ref(sl);
	int rc = -1;

	switch (sl->rq.route) {
	case STATS_ROUTE_MESSAGE:
		if (p->message != NULL)
			rc = p->message(h->parg, &sl->rq.message, &who, on_message, ref, h);
		break;
	case STATS_ROUTE_EVENTS:
		if (p->events != NULL)
			rc = p->events(h->parg, &sl->rq.events, &who, on_events, ref, h);
		break;
	case STATS_ROUTE_SERIES:
		if (p->series != NULL)
			rc = p->series(h->parg, &sl->rq.series, &who, on_series, ref, h);
		break;
	case STATS_ROUTE_QUEUE:
		if (p->queue != NULL)
			rc = p->queue(h->parg, &who, on_queue, ref, h);
		break;
	case STATS_ROUTE_METRICS:
		if (p->gauges != NULL)
			rc = p->gauges(h->parg, on_gauges, ref, h);
		if (rc == -1)
			on_gauges(STATS_UNAVAILABLE, NULL, 0, ref, h);
		return;
	default:
		break;
	}
	if (rc == -1)
		slot_unavailable(sl);
}

static void on_key(enum stats_status st, const struct stats_key_owner *owner, uint64_t ref,
                   void *arg)
{
	struct slot *sl = slot_find(arg, ref);
	if (sl == NULL)
		return;
	if (st == STATS_NOT_FOUND) {
		log_info(sl->id, "event=http_auth result=unknown_key");
		slot_error(sl, 401, "unauthorized", "unknown API key", NULL);
		return;
	}
	size_t n = st == STATS_OK && owner != NULL && owner->user != NULL ? strlen(owner->user) : 0;
	if (n == 0 || n > STATS_USER_MAX) {
		if (st == STATS_OK)
			log_error(sl->id, "event=http_auth error=bad_owner user_len=%zu", n);
		slot_unavailable(sl);
		return;
	}
	memcpy(sl->user, owner->user, n + 1);
	sl->admin = owner->admin;
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char shown[64];
		log_debug(sl->id, "event=http_auth result=ok user=\"%s\" admin=%d",
		          log_escape(sl->user, n, shown, sizeof shown), sl->admin);
	}
	if (sl->rq.route == STATS_ROUTE_METRICS && !sl->admin) {
		slot_error(sl, 403, "forbidden", "this route needs an admin key", NULL);
		return;
	}
	if (sl->param_bad) {
		slot_error(sl, 400, "bad_parameter", sl->perr.reason, sl->perr.parameter);
		return;
	}
	query_start(sl);
}

/*
 * The key of an "Authorization: Bearer KEY" header (RFC 6750 section 2.1; the scheme in any
 * case, then spaces): *key and *len, or -1 when the header is absent, repeated or malformed.
 */
static int bearer_key(struct evkeyvalq *headers, const char **key, size_t *len)
{
	const char *value = NULL;
	for (struct evkeyval *kv = headers->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "Authorization") != 0)
			continue;
		if (value != NULL)
			return -1;
		value = kv->value;
	}
	if (value == NULL || strncasecmp(value, "Bearer ", 7) != 0)
		return -1;
	value += 7;
	while (*value == ' ')
		value++;
	size_t n = 0;
	while (value[n] >= 0x21 && value[n] <= 0x7e)
		n++;
	size_t end = n;
	while (value[end] == ' ')
		end++;
	if (n == 0 || n > STATS_HTTP_KEY_MAX || value[end] != '\0')
		return -1;
	*key = value;
	*len = n;
	return 0;
}

/* SHA-256 of key[0..len) in lowercase hex. Returns 0, or -1 (logged). */
static int key_hash(uint64_t id, const char *key, size_t len, char hex[STATS_KEY_HASH_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen * 2 != STATS_KEY_HASH_LEN) {
		log_error(id, "event=http_auth call=EVP_Digest failed");
		return -1;
	}
	for (unsigned i = 0; i < mdlen; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[STATS_KEY_HASH_LEN] = '\0';
	return 0;
}

static void auth_start(struct slot *sl)
{
	struct stats_http *h = sl->http;
	const char *key;
	size_t len;
	char hex[STATS_KEY_HASH_LEN + 1];

	if (bearer_key(evhttp_request_get_input_headers(sl->req), &key, &len) == -1) {
		log_info(sl->id, "event=http_auth result=no_key");
		slot_error(sl, 401, "unauthorized",
		           "send an API key as \"Authorization: Bearer KEY\"", NULL);
		return;
	}
	if (key_hash(sl->id, key, len, hex) == -1) {
		slot_unavailable(sl);
		return;
	}
	if (h->p->key_lookup == NULL ||
	    h->p->key_lookup(h->parg, hex, on_key, slot_ref(sl), h) == -1)
		slot_unavailable(sl);
}

/* A route answered through the provider: takes a slot, checks the key, then queries. */
static void async_start(struct stats_http *h, struct evhttp_request *req, uint64_t id,
                        const struct stats_request *rq, const char *path, const char *query)
{
	struct slot *sl = slot_take(h);
	if (sl == NULL) {
		log_warn(id, "event=http_busy pending=%u", h->pending);
		reply_error(h, req, id, 503, "busy", "too many requests waiting; retry later",
		            NULL);
		return;
	}
	sl->req = req;
	sl->conn = evhttp_request_get_connection(req);
	sl->id = id;
	sl->rq = *rq;
	sl->user[0] = '\0';
	sl->admin = false;
	sl->param_bad =
	    stats_request_params(&sl->rq, path, query, (int64_t)time(NULL), &sl->perr) != NULL;
	struct timeval tv = {h->s.request_timeout_ms / 1000, h->s.request_timeout_ms % 1000 * 1000};
	evtimer_add(sl->timer, &tv);
	if (sl->rq.route == STATS_ROUTE_METRICS && !h->s.metrics_need_key) {
		sl->admin = true;
		snprintf(sl->user, sizeof sl->user, "-");
		query_start(sl);
	} else {
		auth_start(sl);
	}
}

static void serve_asset(struct stats_http *h, struct evhttp_request *req, uint64_t id,
                        const char *name)
{
	for (size_t i = 0; i < h->s.nassets; i++) {
		const struct stats_asset *a = &h->s.assets[i];
		if (strcmp(a->name, name) == 0) {
			reply(h, req, id, 200, a->content_type, "no-cache", a->data, a->len);
			return;
		}
	}
	reply_error(h, req, id, 404, "not_found", "no such file", NULL);
}

static unsigned header_count(struct evkeyvalq *headers)
{
	unsigned n = 0;
	for (struct evkeyval *kv = headers->tqh_first; kv != NULL; kv = kv->next.tqe_next)
		n++;
	return n;
}

/* Octets of the header fields as sent ("Name: value" and CRLF). */
static size_t headers_size(struct evkeyvalq *headers)
{
	size_t n = 0;
	for (struct evkeyval *kv = headers->tqh_first; kv != NULL; kv = kv->next.tqe_next)
		n += strlen(kv->key) + strlen(kv->value) + 4;
	return n;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct stats_http *h = arg;
	uint64_t id = log_id_new();
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *uri = evhttp_request_get_uri(req);
	const struct evhttp_uri *parsed = evhttp_request_get_evhttp_uri(req);
	const char *path = parsed != NULL ? evhttp_uri_get_path(parsed) : NULL;
	const char *query = parsed != NULL ? evhttp_uri_get_query(parsed) : NULL;
	struct stats_request rq;
	char shown[PATH_LOG_MAX];

	if (conn != NULL)
		evhttp_connection_set_closecb(conn, on_close, h);
	if (path == NULL)
		path = "";
	log_debug(id, "event=http_request method=%s path=\"%s\"", method_name(method),
	          log_escape(path, strlen(path), shown, sizeof shown));
	if (uri == NULL || strlen(uri) > STATS_HTTP_URI_MAX) {
		reply_error(h, req, id, 414, "uri_too_long", "the request URI is too long", NULL);
		return;
	}
	if (header_count(evhttp_request_get_input_headers(req)) > STATS_HTTP_HEADERS_MAX) {
		reply_error(h, req, id, 431, "headers_too_large", "too many header fields", NULL);
		return;
	}
	if (strlen(uri) + headers_size(evhttp_request_get_input_headers(req)) >
	    h->s.max_headers_size) {
		reply_error(h, req, id, 431, "headers_too_large", "the header fields are too large",
		            NULL);
		return;
	}
	if (stats_request_route(path, &rq) == STATS_ROUTE_NONE) {
		reply_error(h, req, id, 404, "not_found", "no such path", NULL);
		return;
	}
	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
		reply_error(h, req, id, 405, "method_not_allowed", "only GET and HEAD are allowed",
		            NULL);
		return;
	}
	switch (rq.route) {
	case STATS_ROUTE_HEALTHZ: {
		static const char ok[] = "{\"status\":\"ok\"}";
		reply(h, req, id, 200, "application/json", "no-store", ok, sizeof ok - 1);
		return;
	}
	case STATS_ROUTE_READYZ:
		if (h->s.ready == NULL || h->s.ready(h->s.ready_arg)) {
			static const char ready[] = "{\"status\":\"ready\"}";
			reply(h, req, id, 200, "application/json", "no-store", ready,
			      sizeof ready - 1);
		} else {
			reply_error(h, req, id, 503, "unavailable", "the data store is not ready",
			            NULL);
		}
		return;
	case STATS_ROUTE_ASSET:
		serve_asset(h, req, id, rq.asset);
		return;
	default:
		async_start(h, req, id, &rq, path, query);
		return;
	}
}

/* ---- life ---- */

static void free_slots(struct stats_http *h)
{
	for (unsigned i = 0; i < h->nslots; i++)
		if (h->slots[i].timer != NULL)
			event_free(h->slots[i].timer);
	free(h->slots);
}

struct stats_http *stats_http_new(struct event_base *base, int listen_fd,
                                  const struct stats_http_settings *s,
                                  const struct stats_provider *p, void *provider_arg)
{
	struct stats_http *h = calloc(1, sizeof *h);
	if (h == NULL) {
		log_error(0, "event=stats_http_new call=calloc failed");
		return NULL;
	}
	h->base = base;
	h->s = *s;
	h->p = p;
	h->parg = provider_arg;
	if (h->s.max_body_size == 0)
		h->s.max_body_size = STATS_HTTP_BODY_DEFAULT;
	if (h->s.max_headers_size == 0)
		h->s.max_headers_size = STATS_HTTP_HEADERS_DEFAULT;
	if (h->s.request_timeout_ms <= 0)
		h->s.request_timeout_ms = STATS_HTTP_TIMEOUT_DEFAULT;
	if (h->s.max_pending == 0)
		h->s.max_pending = STATS_HTTP_PENDING_DEFAULT;
	if (h->s.max_pending > STATS_HTTP_PENDING_MAX)
		h->s.max_pending = STATS_HTTP_PENDING_MAX;

	h->nslots = h->s.max_pending;
	h->slots = calloc(h->nslots, sizeof *h->slots);
	if (h->slots == NULL) {
		log_error(0, "event=stats_http_new call=calloc failed");
		free(h);
		return NULL;
	}
	for (unsigned i = 0; i < h->nslots; i++) {
		struct slot *sl = &h->slots[i];
		sl->http = h;
		sl->index = i;
		sl->timer = evtimer_new(base, on_timeout, sl);
		if (sl->timer == NULL) {
			log_error(0, "event=stats_http_new call=evtimer_new failed");
			free_slots(h);
			free(h);
			return NULL;
		}
	}

	struct evconnlistener *listener = NULL;
	const char *failed = NULL;
	h->evhttp = evhttp_new(base);
	if (h->evhttp == NULL)
		failed = "evhttp_new";
	else if (evutil_make_socket_nonblocking(listen_fd) == -1)
		failed = "evutil_make_socket_nonblocking";
	else if ((listener = evconnlistener_new(base, NULL, NULL, 0, 0, listen_fd)) == NULL)
		failed = "evconnlistener_new";
	else if (evhttp_bind_listener(h->evhttp, listener) == NULL)
		failed = "evhttp_bind_listener";
	if (failed != NULL) {
		log_error(0, "event=stats_http_new fd=%d call=%s failed", listen_fd, failed);
		if (listener != NULL)
			evconnlistener_free(listener); /* not bound: still ours */
		if (h->evhttp != NULL)
			evhttp_free(h->evhttp);
		free_slots(h);
		free(h);
		return NULL;
	}
	struct timeval tv = {h->s.request_timeout_ms / 1000, h->s.request_timeout_ms % 1000 * 1000};
	evhttp_set_timeout_tv(h->evhttp, &tv);
	evhttp_set_max_body_size(h->evhttp, (ev_ssize_t)h->s.max_body_size);
	/* evhttp's own cap (an HTML 400 past it) leaves room for on_request's JSON 431 */
	evhttp_set_max_headers_size(h->evhttp,
	                            (ev_ssize_t)(h->s.max_headers_size * STATS_HTTP_HEADERS_SLACK));
	/* every method evhttp parses reaches on_request, which answers 405 in JSON */
	evhttp_set_allowed_methods(h->evhttp, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	                                          EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                          EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                          EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(h->evhttp, on_request, h);
	log_info(0, "event=stats_http_listen fd=%d max_pending=%u timeout_ms=%d", listen_fd,
	         h->nslots, h->s.request_timeout_ms);
	return h;
}

void stats_http_free(struct stats_http *h)
{
	if (h == NULL)
		return;
	/* closes every connection: on_close releases the slots still waiting */
	evhttp_free(h->evhttp);
	free_slots(h);
	free(h);
}

unsigned stats_http_pending(const struct stats_http *h)
{
	return h->pending;
}
