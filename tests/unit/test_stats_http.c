/*
 * test_stats_http.c: tests of stats/http.c over real HTTP on loopback. The server runs in this
 * process on its own event loop with a fake provider (keys for alice, bob and an admin; one
 * message each; events, series, queue and gauges) that answers from a timer, or only when the
 * test says so. A raw-socket client sends requests byte for byte and reads the answers while
 * the loop turns. Checked: routes and methods, health and readiness, the dashboard's files and
 * security headers, API keys (none, malformed, unknown, a user's, the admin's), that a user
 * sees only its own data (another user's message is 404), bad parameters (400 naming the
 * parameter), size limits (413, 414, 431), hostile text escaped into valid JSON, /metrics,
 * the provider down or slow (503), a full slot table, pipelined requests, and clients that go
 * away before the answer or a server freed while requests wait (no crash; run it under
 * SANITIZER=address,undefined). Every wait has a bound.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay/log.h"
#include "stats/http.h"
#include "stats/json.h"
#include "stats/metrics.h"
#include "stats/request.h"
#include "tests/unit/lib_check.h"

#define WAIT_MS    3000 /* the longest any answer may take */
#define ANSWER_MAX 65536
#define CALLS_MAX  64
#define ALICE_MSG  "0123456789abcdef"
#define BOB_MSG    "fedcba9876543210"
#define ALICE_KEY  "Authorization: Bearer alice-key-0001\r\n"
#define BOB_KEY    "Authorization: Bearer bob-key-0002\r\n"
#define ADMIN_KEY  "Authorization: Bearer root-key-0003\r\n"
#define HOSTILE    "</script><img src=x onerror=alert(1)>\"\\\x01\xff\xe2\x80\xa8 end"

/* ---- the fake provider ---- */

enum call_kind { CALL_KEY, CALL_MESSAGE, CALL_EVENTS, CALL_SERIES, CALL_QUEUE, CALL_GAUGES };

struct call {
	enum call_kind kind;
	uint64_t ref;
	void *cb_arg;
	stats_key_fn *key_cb;
	stats_message_fn *message_cb;
	stats_events_fn *events_cb;
	stats_series_fn *series_cb;
	stats_queue_fn *queue_cb;
	stats_gauges_fn *gauges_cb;
	char key_hash[STATS_KEY_HASH_LEN + 1];
	struct stats_message_query mq;
	struct stats_event_query eq;
	struct stats_series_query sq;
	char user[STATS_USER_MAX + 1];
	bool admin;
};

struct fake {
	struct event *kick; /* answers every call from the loop, unless hold */
	bool hold;
	bool refuse;      /* every function returns -1 */
	bool unavailable; /* every answer is STATS_UNAVAILABLE */
	struct call calls[CALLS_MAX];
	size_t ncalls;
	unsigned answered;
	/* the last data query's principal and event query, as the provider saw them */
	char last_user[STATS_USER_MAX + 1];
	bool last_admin;
	struct stats_event_query last_events;
};

struct key_entry {
	const char *key;
	const char *user;
	bool admin;
	char hash[STATS_KEY_HASH_LEN + 1];
};

static struct key_entry keys[] = {
    {"alice-key-0001", "alice", false, ""},
    {"bob-key-0002", "bob", false, ""},
    {"root-key-0003", "root", true, ""},
};

static void sha256_hex(const char *s, char out[STATS_KEY_HASH_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	assert_int_equal(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL), 1);
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static const struct stats_recipient alice_rcpts[] = {
    {"carol@example.com", "delivered", 1, -1, 1714564805000, "250 2.0.0 OK", "mx.example.com",
     "TLSv1.3", NULL, NULL},
    {"dave@example.org", "deferred", 2, 1714565400000, 1714564900000, "451 4.7.1 " HOSTILE,
     "mx.example.org", NULL, "ratelimited", "soft"},
};
static const struct stats_event alice_events[] = {
    {"delivered", 1714564805000, ALICE_MSG, "carol@example.com", "alice", "spring", 1,
     "mx.example.com", "250 2.0.0 OK", "TLSv1.3", NULL, NULL},
    {"received", 1714564800000, ALICE_MSG, "carol@example.com", "alice", "spring", 0, NULL, NULL,
     NULL, NULL, NULL},
};
static const struct stats_event bob_events[] = {
    {"bounced", 1714564700000, BOB_MSG, "erin@example.net", "bob", NULL, 1, "mx.example.net",
     "550 5.1.1 no such user", NULL, "userunknown", "hard"},
};
static const char *const alice_tags[] = {"newsletter"};
static const struct stats_message messages[] = {
    {ALICE_MSG, "alice", HOSTILE, "spring", alice_tags, 1, 1714564800000, 4096, alice_rcpts, 2,
     alice_events, 2},
    {BOB_MSG, "bob", "bob@example.net", NULL, NULL, 0, 1714564700000, 1024, NULL, 0, bob_events, 1},
};

static const struct stats_message *message_find(const char *id)
{
	for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++)
		if (strcmp(messages[i].id, id) == 0)
			return &messages[i];
	return NULL;
}

/* Answers one call as the Redis provider would, scoping data to the principal. */
static void fake_answer(struct fake *f, const struct call *c)
{
	enum stats_status down = STATS_UNAVAILABLE;
	f->answered++;
	switch (c->kind) {
	case CALL_KEY:
		if (f->unavailable) {
			c->key_cb(down, NULL, c->ref, c->cb_arg);
			return;
		}
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			/* a provider that compares stored hashes does it in constant time */
			if (CRYPTO_memcmp(keys[i].hash, c->key_hash, STATS_KEY_HASH_LEN) == 0) {
				struct stats_key_owner owner = {keys[i].user, keys[i].admin};
				c->key_cb(STATS_OK, &owner, c->ref, c->cb_arg);
				return;
			}
		}
		c->key_cb(STATS_NOT_FOUND, NULL, c->ref, c->cb_arg);
		return;
	case CALL_MESSAGE: {
		const struct stats_message *m = message_find(c->mq.id);
		if (f->unavailable)
			c->message_cb(down, NULL, c->ref, c->cb_arg);
		else if (m == NULL || (!c->admin && strcmp(m->user, c->user) != 0))
			c->message_cb(STATS_NOT_FOUND, NULL, c->ref, c->cb_arg);
		else
			c->message_cb(STATS_OK, m, c->ref, c->cb_arg);
		return;
	}
	case CALL_EVENTS: {
		struct stats_event list[3];
		size_t n = 0;
		if (f->unavailable) {
			c->events_cb(down, NULL, c->ref, c->cb_arg);
			return;
		}
		if (strcmp(c->eq.cursor, "") != 0 && strcmp(c->eq.cursor, "page2") != 0) {
			c->events_cb(STATS_BAD_CURSOR, NULL, c->ref, c->cb_arg);
			return;
		}
		if (c->eq.cursor[0] == '\0') {
			if (c->admin || strcmp(c->user, "alice") == 0)
				for (size_t i = 0; i < 2; i++)
					list[n++] = alice_events[i];
			if (c->admin || strcmp(c->user, "bob") == 0)
				list[n++] = bob_events[0];
		}
		struct stats_event_page page = {list, n, n > 0 ? "page2" : NULL};
		c->events_cb(STATS_OK, &page, c->ref, c->cb_arg);
		return;
	}
	case CALL_SERIES: {
		const struct stats_bucket buckets[] = {
		    {c->sq.from_s, {.received = 10, .delivered = 9, .bounced_block = 1}},
		    {c->sq.to_s, {.received = 4, .delivered = 4, .complained = 1}},
		};
		const struct stats_series series = {
		    c->sq.by == STATS_BY_NONE ? NULL : "example.com", buckets, 2};
		const struct stats_series_set set = {&series, 1};
		c->series_cb(f->unavailable ? down : STATS_OK, f->unavailable ? NULL : &set, c->ref,
		             c->cb_arg);
		return;
	}
	case CALL_QUEUE: {
		const struct stats_site site = {
		    "mx1.example.com,mx2.example.com", 5, 1, 0, false, true, 120};
		const struct stats_queue q = {2, 5, 1, 0, 0, 3, 8, 42, &site, 1};
		c->queue_cb(f->unavailable ? down : STATS_OK, f->unavailable ? NULL : &q, c->ref,
		            c->cb_arg);
		return;
	}
	case CALL_GAUGES: {
		const struct stats_gauge g[] = {
		    {STATS_GAUGE_QUEUE_DEPTH, STATS_GAUGE_QUEUE_DEPTH_HELP, "state", "ready", 7},
		};
		c->gauges_cb(f->unavailable ? down : STATS_OK, g, 1, c->ref, c->cb_arg);
		return;
	}
	}
}

/* Answers every call made so far (not those the answers make). */
static void fake_answer_all(struct fake *f)
{
	size_t n = f->ncalls;
	struct call batch[CALLS_MAX];
	memcpy(batch, f->calls, n * sizeof batch[0]);
	memmove(f->calls, f->calls + n, (f->ncalls - n) * sizeof f->calls[0]);
	f->ncalls -= n;
	for (size_t i = 0; i < n; i++)
		fake_answer(f, &batch[i]);
}

/* Forgets every call without answering (a provider freed before the server). */
static void fake_drop_all(struct fake *f)
{
	f->ncalls = 0;
}

static void fake_kicked(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	if (!f->hold)
		fake_answer_all(f);
}

/* Records a call; answers come later from the loop (never from inside the call). */
static struct call *fake_call(struct fake *f, enum call_kind kind, uint64_t ref, void *cb_arg,
                              const struct stats_principal *who)
{
	if (f->refuse || f->ncalls == CALLS_MAX)
		return NULL;
	struct call *c = &f->calls[f->ncalls++];
	memset(c, 0, sizeof *c);
	c->kind = kind;
	c->ref = ref;
	c->cb_arg = cb_arg;
	if (who != NULL) {
		snprintf(c->user, sizeof c->user, "%s", who->user);
		c->admin = who->admin;
		snprintf(f->last_user, sizeof f->last_user, "%s", who->user);
		f->last_admin = who->admin;
	}
	const struct timeval now = {0, 0};
	evtimer_add(f->kick, &now);
	return c;
}

static int fake_key_lookup(void *arg, const char *hash, stats_key_fn *cb, uint64_t ref,
                           void *cb_arg)
{
	struct call *c = fake_call(arg, CALL_KEY, ref, cb_arg, NULL);
	if (c == NULL)
		return -1;
	c->key_cb = cb;
	snprintf(c->key_hash, sizeof c->key_hash, "%s", hash);
	return 0;
}

static int fake_message(void *arg, const struct stats_message_query *q,
                        const struct stats_principal *who, stats_message_fn *cb, uint64_t ref,
                        void *cb_arg)
{
	struct call *c = fake_call(arg, CALL_MESSAGE, ref, cb_arg, who);
	if (c == NULL)
		return -1;
	c->message_cb = cb;
	c->mq = *q;
	return 0;
}

static int fake_events(void *arg, const struct stats_event_query *q,
                       const struct stats_principal *who, stats_events_fn *cb, uint64_t ref,
                       void *cb_arg)
{
	struct fake *f = arg;
	struct call *c = fake_call(f, CALL_EVENTS, ref, cb_arg, who);
	if (c == NULL)
		return -1;
	c->events_cb = cb;
	c->eq = *q;
	f->last_events = *q;
	return 0;
}

static int fake_series(void *arg, const struct stats_series_query *q,
                       const struct stats_principal *who, stats_series_fn *cb, uint64_t ref,
                       void *cb_arg)
{
	struct call *c = fake_call(arg, CALL_SERIES, ref, cb_arg, who);
	if (c == NULL)
		return -1;
	c->series_cb = cb;
	c->sq = *q;
	return 0;
}

static int fake_queue(void *arg, const struct stats_principal *who, stats_queue_fn *cb,
                      uint64_t ref, void *cb_arg)
{
	struct call *c = fake_call(arg, CALL_QUEUE, ref, cb_arg, who);
	if (c == NULL)
		return -1;
	c->queue_cb = cb;
	return 0;
}

static int fake_gauges(void *arg, stats_gauges_fn *cb, uint64_t ref, void *cb_arg)
{
	struct call *c = fake_call(arg, CALL_GAUGES, ref, cb_arg, NULL);
	if (c == NULL)
		return -1;
	c->gauges_cb = cb;
	return 0;
}

static const struct stats_provider fake_provider = {
    fake_key_lookup, fake_message, fake_events, fake_series, fake_queue, fake_gauges,
};

/* ---- the fixture: a loop, a listening socket, the server ---- */

static const char index_html[] = "<!doctype html><title>Postino</title>";
static const char app_js[] = "'use strict';";
static const struct stats_asset assets[] = {
    {"index.html", "text/html; charset=utf-8", (const unsigned char *)index_html,
     sizeof index_html - 1},
    {"app.js", "text/javascript; charset=utf-8", (const unsigned char *)app_js, sizeof app_js - 1},
};

struct fixture {
	struct event_base *base;
	int listen_fd;
	int port;
	struct fake fake;
	struct stats_metrics *metrics;
	struct stats_http_settings settings;
	struct stats_http *http;
	bool ready;
};

static bool fixture_ready(void *arg)
{
	return ((struct fixture *)arg)->ready;
}

/* Default settings; a test changes what it needs, then calls fixture_serve. */
static struct fixture *fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->fake.kick = evtimer_new(f->base, fake_kicked, &f->fake);
	assert_non_null(f->fake.kick);
	f->metrics = stats_metrics_new(1);
	assert_non_null(f->metrics);
	f->ready = true;
	f->settings.max_body_size = 1024;
	f->settings.max_headers_size = 8192;
	f->settings.request_timeout_ms = WAIT_MS;
	f->settings.max_pending = 16;
	f->settings.metrics = f->metrics;
	f->settings.metrics_worker = 0;
	f->settings.ready = fixture_ready;
	f->settings.ready_arg = f;
	f->settings.assets = assets;
	f->settings.nassets = sizeof assets / sizeof assets[0];

	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(f->listen_fd, 64), 0);
	assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	return f;
}

static void fixture_serve(struct fixture *f)
{
	f->http = stats_http_new(f->base, f->listen_fd, &f->settings, &fake_provider, &f->fake);
	assert_non_null(f->http);
}

static void fixture_free(struct fixture *f)
{
	fake_drop_all(&f->fake); /* the provider goes first (provider.h) */
	stats_http_free(f->http);
	close(f->listen_fd);
	event_free(f->fake.kick);
	stats_metrics_free(f->metrics);
	event_base_free(f->base);
	free(f);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Turns the loop for about ms milliseconds. */
static void pump(struct fixture *f, int ms)
{
	int64_t end = now_ms() + ms;
	do {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		poll(NULL, 0, 1);
	} while (now_ms() < end);
}

/* Turns the loop until the fake holds n calls (fails the test after WAIT_MS). */
static void pump_until_calls(struct fixture *f, size_t n)
{
	int64_t end = now_ms() + WAIT_MS;
	while (f->fake.ncalls < n) {
		if (now_ms() > end)
			fail_msg("waited %d ms for %zu provider calls, got %zu", WAIT_MS, n,
			         f->fake.ncalls);
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		poll(NULL, 0, 1);
	}
}

static int client_connect(const struct fixture *f)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)f->port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	/* loopback: the kernel completes the handshake from the listen backlog */
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

static void client_send(struct fixture *f, int fd, const char *data, size_t len)
{
	int64_t end = now_ms() + WAIT_MS;
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK)
			return; /* the server closed on us: the answer says why */
		if (now_ms() > end)
			fail_msg("could not send the request in %d ms", WAIT_MS);
		pump(f, 1);
	}
}

struct answer {
	int status;
	char head[8192];
	char body[ANSWER_MAX];
	size_t body_len;
	size_t raw_len; /* every octet received, both answers of a pipeline included */
	char raw[2 * ANSWER_MAX];
};

/* Reads until the server closes (every request says Connection: close). */
static void client_read(struct fixture *f, int fd, struct answer *a)
{
	int64_t end = now_ms() + WAIT_MS;
	memset(a, 0, sizeof *a);
	for (;;) {
		ssize_t n = recv(fd, a->raw + a->raw_len, sizeof a->raw - 1 - a->raw_len, 0);
		if (n > 0) {
			a->raw_len += (size_t)n;
			continue;
		}
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK))
			break;
		if (now_ms() > end)
			fail_msg("no complete answer in %d ms (got %zu octets)", WAIT_MS,
			         a->raw_len);
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		poll(NULL, 0, 1);
	}
	a->raw[a->raw_len] = '\0';
	const char *sep = strstr(a->raw, "\r\n\r\n");
	if (sep == NULL || sscanf(a->raw, "HTTP/1.%*d %d", &a->status) != 1) {
		a->status = -1;
		return;
	}
	size_t head_len = (size_t)(sep - a->raw);
	if (head_len >= sizeof a->head)
		head_len = sizeof a->head - 1;
	memcpy(a->head, a->raw, head_len);
	a->head[head_len] = '\0';
	a->body_len = a->raw_len - (size_t)(sep + 4 - a->raw);
	if (a->body_len >= sizeof a->body)
		a->body_len = sizeof a->body - 1;
	memcpy(a->body, sep + 4, a->body_len);
	a->body[a->body_len] = '\0';
}

/* A header's value from a->head ("" when absent). */
static const char *header(const struct answer *a, const char *name)
{
	static char value[1024];
	size_t n = strlen(name);
	value[0] = '\0';
	for (const char *line = strstr(a->head, "\r\n"); line != NULL;
	     line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;
		if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
			const char *v = h + n + 1;
			while (*v == ' ')
				v++;
			size_t len = strcspn(v, "\r");
			if (len >= sizeof value)
				len = sizeof value - 1;
			memcpy(value, v, len);
			value[len] = '\0';
			break;
		}
	}
	return value;
}

/* Sends one request: "METHOD TARGET HTTP/1.1", Host, extra header lines, Connection: close. */
static void request(struct fixture *f, const char *method, const char *target, const char *extra,
                    struct answer *a)
{
	char *req = NULL;
	int n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n",
	                 method, target, extra != NULL ? extra : "");
	assert_true(n > 0);
	int fd = client_connect(f);
	client_send(f, fd, req, (size_t)n);
	client_read(f, fd, a);
	close(fd);
	free(req);
}

static void check_status(const char *name, const struct answer *a, int want)
{
	if (a->status != want)
		check_fail("%s: status got %d, want %d (body \"%s\")\n", name, a->status, want,
		           check_show(a->body, a->body_len));
}

static void check_contains(const char *name, const char *what, const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		check_fail("%s: %s got \"%s\", want it to contain \"%s\"\n", name, what,
		           check_show(text, strlen(text)), check_show(want, strlen(want)));
}

static void check_lacks(const char *name, const char *what, const char *text, const char * not )
{
	if (strstr(text, not ) != NULL)
		check_fail("%s: %s got \"%s\", want it without \"%s\"\n", name, what,
		           check_show(text, strlen(text)), check_show(not, strlen(not )));
}

/* A JSON answer: valid JSON, the API's headers, and the body's length as announced. */
static void check_json(const char *name, const struct answer *a)
{
	const char *why = stats_json_check(a->body, a->body_len);
	if (why != NULL)
		check_fail("%s: body is not JSON (%s): \"%s\"\n", name, why,
		           check_show(a->body, a->body_len));
	check_str(name, "Content-Type", header(a, "Content-Type"), "application/json");
	check_str(name, "Cache-Control", header(a, "Cache-Control"), "no-store");
	check_str(name, "X-Content-Type-Options", header(a, "X-Content-Type-Options"), "nosniff");
	char len[32];
	snprintf(len, sizeof len, "%zu", a->body_len);
	check_str(name, "Content-Length", header(a, "Content-Length"), len);
}

/* ---- tests ---- */

struct route_case {
	const char *name;
	const char *method;
	const char *target;
	const char *extra;
	int status;
	const char *body_has; /* NULL: no check */
};

static void run_cases(struct fixture *f, const struct route_case *cases, size_t n)
{
	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	for (size_t i = 0; i < n; i++) {
		const struct route_case *c = &cases[i];
		request(f, c->method, c->target, c->extra, a);
		check_status(c->name, a, c->status);
		if (c->body_has != NULL)
			check_contains(c->name, "body", a->body, c->body_has);
		if (strcmp(header(a, "Content-Type"), "application/json") == 0 || c->status != 200)
			check_json(c->name, a);
	}
	free(a);
}

static void test_routes(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	const struct route_case cases[] = {
	    {"healthz", "GET", "/healthz", NULL, 200, "{\"status\":\"ok\"}"},
	    {"healthz with a query", "GET", "/healthz?x=%zz", NULL, 200, "\"ok\""},
	    {"readyz", "GET", "/readyz", NULL, 200, "\"ready\""},
	    {"no such path", "GET", "/nope", NULL, 404, "\"error\":\"not_found\""},
	    {"API path with a slash", "GET", "/api/v1/queue/", ADMIN_KEY, 404, "not_found"},
	    {"POST", "POST", "/healthz", NULL, 405, "\"error\":\"method_not_allowed\""},
	    {"DELETE on the API", "DELETE", "/api/v1/queue", ADMIN_KEY, 405, "method_not_allowed"},
	    {"OPTIONS", "OPTIONS", "/api/v1/events", NULL, 405, "method_not_allowed"},
	    {"PUT on a file", "PUT", "/static/app.js", NULL, 405, "method_not_allowed"},
	    {"missing file", "GET", "/static/missing.js", NULL, 404, "no such file"},
	    {"traversal", "GET", "/static/../../etc/passwd", NULL, 404, "not_found"},
	    {"app.js", "GET", "/static/app.js", NULL, 200, "'use strict';"},
	    {"absolute URI", "GET", "http://127.0.0.1/healthz", NULL, 200, "\"ok\""},
	};
	run_cases(f, cases, sizeof cases / sizeof cases[0]);

	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	request(f, "GET", "/", NULL, a);
	check_status("index", a, 200);
	check_str("index", "body", a->body, index_html);
	check_str("index", "Content-Type", header(a, "Content-Type"), "text/html; charset=utf-8");
	check_contains("index", "Content-Security-Policy", header(a, "Content-Security-Policy"),
	               "default-src 'self'");
	check_str("index", "X-Content-Type-Options", header(a, "X-Content-Type-Options"),
	          "nosniff");
	check_str("index", "X-Frame-Options", header(a, "X-Frame-Options"), "DENY");

	request(f, "POST", "/healthz", NULL, a);
	check_str("405", "Allow", header(a, "Allow"), "GET, HEAD");

	request(f, "HEAD", "/healthz", NULL, a);
	check_status("HEAD", a, 200);
	check_u64("HEAD", "body octets", a->body_len, 0);
	check_str("HEAD", "Content-Length", header(a, "Content-Length"), "15");

	f->ready = false;
	request(f, "GET", "/readyz", NULL, a);
	check_status("not ready", a, 503);
	check_json("not ready", a);
	check_contains("not ready", "body", a->body, "\"error\":\"unavailable\"");
	check_str("not ready", "Retry-After", header(a, "Retry-After"), "5");

	/* a request line evhttp cannot parse: its own 400, and the server goes on */
	int fd = client_connect(f);
	client_send(f, fd, "NONSENSE\r\n\r\n", 12);
	client_read(f, fd, a);
	close(fd);
	check_status("garbage", a, 400);
	request(f, "GET", "/healthz", NULL, a);
	check_status("after garbage", a, 200);
	free(a);
	check_done();
	fixture_free(f);
}

static void test_keys(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	const char *msg = "/api/v1/messages/" ALICE_MSG;
	const struct route_case cases[] = {
	    {"no key", "GET", msg, NULL, 401, "\"error\":\"unauthorized\""},
	    {"no key on the queue", "GET", "/api/v1/queue", NULL, 401, "unauthorized"},
	    {"basic scheme", "GET", msg, "Authorization: Basic YWxpY2U6eA==\r\n", 401,
	     "unauthorized"},
	    {"bearer without key", "GET", msg, "Authorization: Bearer \r\n", 401, "unauthorized"},
	    {"key with a space inside", "GET", msg, "Authorization: Bearer alice key\r\n", 401,
	     "unauthorized"},
	    {"unknown key", "GET", msg, "Authorization: Bearer nobody-key\r\n", 401,
	     "unknown API key"},
	    {"two headers", "GET", msg, ALICE_KEY ALICE_KEY, 401, "unauthorized"},
	    {"scheme in any case", "GET", msg, "Authorization: bEaReR   alice-key-0001  \r\n", 200,
	     "\"user\":\"alice\""},
	    {"own message", "GET", msg, ALICE_KEY, 200, "\"id\":\"" ALICE_MSG "\""},
	    {"another user's message", "GET", "/api/v1/messages/" BOB_MSG, ALICE_KEY, 404,
	     "\"error\":\"not_found\""},
	    {"the other way round", "GET", msg, BOB_KEY, 404, "not_found"},
	    {"admin sees bob's", "GET", "/api/v1/messages/" BOB_MSG, ADMIN_KEY, 200,
	     "\"user\":\"bob\""},
	    {"admin sees alice's", "GET", msg, ADMIN_KEY, 200, "\"user\":\"alice\""},
	    {"no such message", "GET", "/api/v1/messages/00000000000000ff", ADMIN_KEY, 404,
	     "no such message"},
	};
	run_cases(f, cases, sizeof cases / sizeof cases[0]);

	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	char longkey[STATS_HTTP_KEY_MAX + 40];
	snprintf(longkey, sizeof longkey, "Authorization: Bearer %0*d\r\n", STATS_HTTP_KEY_MAX + 1,
	         7);
	request(f, "GET", msg, longkey, a);
	check_status("key too long", a, 401);
	request(f, "GET", msg, NULL, a);
	check_contains("401", "WWW-Authenticate", header(a, "WWW-Authenticate"), "Bearer");

	/* the provider gets the resolved user and scopes the events to it */
	request(f, "GET", "/api/v1/events", ALICE_KEY, a);
	check_status("alice's events", a, 200);
	check_str("alice's events", "provider user", f->fake.last_user, "alice");
	check_u64("alice's events", "provider admin", f->fake.last_admin, 0);
	check_contains("alice's events", "body", a->body, ALICE_MSG);
	check_lacks("alice's events", "body", a->body, BOB_MSG);
	request(f, "GET", "/api/v1/events", ADMIN_KEY, a);
	check_u64("admin's events", "provider admin", f->fake.last_admin, 1);
	check_contains("admin's events", "body", a->body, BOB_MSG);
	check_contains("admin's events", "body", a->body, ALICE_MSG);
	free(a);
	check_done();
	fixture_free(f);
}

static void test_queries(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	const struct route_case cases[] = {
	    {"events page 1", "GET", "/api/v1/events?limit=2", ALICE_KEY, 200,
	     "\"next_cursor\":\"page2\""},
	    {"events page 2", "GET", "/api/v1/events?cursor=page2", ALICE_KEY, 200,
	     "{\"events\":[],\"next_cursor\":null}"},
	    {"events bad cursor", "GET", "/api/v1/events?cursor=forged", ALICE_KEY, 400,
	     "\"parameter\":\"cursor\""},
	    {"events limit 0", "GET", "/api/v1/events?limit=0", ALICE_KEY, 400,
	     "\"parameter\":\"limit\""},
	    {"events unknown parameter", "GET", "/api/v1/events?user=bob", ALICE_KEY, 400,
	     "\"parameter\":\"user\""},
	    {"events bad time", "GET", "/api/v1/events?from=tomorrow", ALICE_KEY, 400,
	     "\"parameter\":\"from\""},
	    {"events bad type", "GET", "/api/v1/events?type=%3Cscript%3E", ALICE_KEY, 400,
	     "\"parameter\":\"type\""},
	    {"bad params without a key", "GET", "/api/v1/events?limit=0", NULL, 401,
	     "unauthorized"},
	    {"bad params with an unknown key", "GET", "/api/v1/events?limit=0",
	     "Authorization: Bearer nobody\r\n", 401, "unauthorized"},
	    {"hostile parameter name", "GET", "/api/v1/events?%3Cb%3E=1", ALICE_KEY, 400,
	     "\"parameter\":\"%3Cb%3E\""},
	    {"message id uppercase", "GET", "/api/v1/messages/0123456789ABCDEF", ALICE_KEY, 400,
	     "\"parameter\":\"id\""},
	    {"stats", "GET", "/api/v1/stats?from=1714521600&to=1714564800&step=hour", ALICE_KEY,
	     200, "\"rates\":{\"delivery\":0.9,\"bounce\":0.1,\"complaint\":0}"},
	    {"stats by domain", "GET", "/api/v1/stats?by=domain", ADMIN_KEY, 200,
	     "\"key\":\"example.com\""},
	    {"stats too many steps", "GET", "/api/v1/stats?from=0&to=1714564800&step=minute",
	     ALICE_KEY, 400, "\"parameter\":\"from\""},
	    {"queue", "GET", "/api/v1/queue", ADMIN_KEY, 200,
	     "\"name\":\"mx1.example.com,mx2.example.com\""},
	};
	run_cases(f, cases, sizeof cases / sizeof cases[0]);

	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	request(f, "GET",
	        "/api/v1/events?recipient=a%2Bb%40example.com&campaign=spring&type=delivered&from="
	        "2024-05-01T00:00:00Z&to=1714564800&limit=7",
	        ALICE_KEY, a);
	check_status("events query", a, 200);
	const struct stats_event_query *q = &f->fake.last_events;
	check_str("events query", "recipient", q->recipient, "a+b@example.com");
	check_str("events query", "campaign", q->campaign, "spring");
	check_str("events query", "type", q->type, "delivered");
	check_u64("events query", "from", (uint64_t)q->from_s, 1714521600);
	check_u64("events query", "to", (uint64_t)q->to_s, 1714564800);
	check_u64("events query", "limit", q->limit, 7);
	free(a);
	check_done();
	fixture_free(f);
}

static void test_hostile_text(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	request(f, "GET", "/api/v1/messages/" ALICE_MSG, ALICE_KEY, a);
	check_status("hostile", a, 200);
	check_json("hostile", a);
	check_lacks("hostile", "body", a->body, "<");
	check_lacks("hostile", "body", a->body, ">");
	check_contains("hostile", "body", a->body,
	               "\"sender\":\"\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)"
	               "\\u003e\\\"\\\\\\u0001\\ufffd\\u2028 end\"");
	check_contains("hostile", "body", a->body, "\"last_reply\":\"451 4.7.1 \\u003c/script");
	free(a);
	check_done();
	fixture_free(f);
}

static void test_limits(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	struct answer *a = malloc(sizeof *a);
	char *big = malloc(20000);
	assert_non_null(a);
	assert_non_null(big);

	/* a body past max_body_size (1024): evhttp's own 413 */
	request(f, "GET", "/healthz", "Content-Length: 100000\r\n", a);
	check_status("body too large", a, 413);
	/* a small body is read and ignored */
	int fd = client_connect(f);
	const char small[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	                     "Connection: close\r\n\r\nhello";
	client_send(f, fd, small, sizeof small - 1);
	client_read(f, fd, a);
	close(fd);
	check_status("small body", a, 200);

	/* headers past max_headers_size (8192): 431; past twice that: evhttp's own 400 */
	snprintf(big, 20000, "X-Big: %09000d\r\n", 1);
	request(f, "GET", "/healthz", big, a);
	check_status("headers too large", a, 431);
	check_json("headers too large", a);
	snprintf(big, 20000, "X-Big: %017000d\r\n", 1);
	request(f, "GET", "/healthz", big, a);
	check_status("headers past evhttp's cap", a, 400);

	/* too many header lines: 431 */
	size_t o = 0;
	for (int i = 0; i < STATS_HTTP_HEADERS_MAX + 1; i++)
		o += (size_t)snprintf(big + o, 20000 - o, "X-H%d: v\r\n", i);
	request(f, "GET", "/healthz", big, a);
	check_status("too many headers", a, 431);
	check_json("too many headers", a);
	check_contains("too many headers", "body", a->body, "headers_too_large");

	/* a URI past STATS_HTTP_URI_MAX, within the header limit: 414 */
	o = (size_t)snprintf(big, 20000, "/api/v1/events?campaign=");
	memset(big + o, 'a', STATS_HTTP_URI_MAX);
	big[o + STATS_HTTP_URI_MAX] = '\0';
	request(f, "GET", big, ALICE_KEY, a);
	check_status("URI too long", a, 414);
	check_json("URI too long", a);

	/* a query past STATS_QUERY_MAX: 400 */
	o = (size_t)snprintf(big, 20000, "/api/v1/events?campaign=");
	memset(big + o, 'a', STATS_QUERY_MAX);
	big[o + STATS_QUERY_MAX] = '\0';
	request(f, "GET", big, ALICE_KEY, a);
	check_status("query too long", a, 400);

	request(f, "GET", "/healthz", NULL, a);
	check_status("still serving", a, 200);
	free(big);
	free(a);
	check_done();
	fixture_free(f);
}

static void test_metrics_route(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	request(f, "GET", "/healthz", NULL, a);
	request(f, "GET", "/nope", NULL, a);
	request(f, "GET", "/metrics", NULL, a);
	check_status("metrics", a, 200);
	check_str("metrics", "Content-Type", header(a, "Content-Type"),
	          "text/plain; version=0.0.4; charset=utf-8");
	check_contains("metrics", "body", a->body, "postino_http_requests_total{code=\"2xx\"} 1\n");
	check_contains("metrics", "body", a->body, "postino_http_requests_total{code=\"4xx\"} 1\n");
	check_contains(
	    "metrics", "body", a->body,
	    "# TYPE postino_queue_depth gauge\npostino_queue_depth{state=\"ready\"} 7\n");
	check_contains("metrics", "body", a->body, "postino_ready 1\n");

	/* the provider down: the process's own metrics still come */
	f->fake.refuse = true;
	f->ready = false;
	request(f, "GET", "/metrics", NULL, a);
	check_status("metrics, provider down", a, 200);
	check_lacks("metrics, provider down", "body", a->body, "postino_queue_depth");
	check_contains("metrics, provider down", "body", a->body, "postino_ready 0\n");
	check_contains("metrics, provider down", "body", a->body, "postino_sign_seconds_count 0\n");
	f->fake.refuse = false;
	f->fake.unavailable = true;
	request(f, "GET", "/metrics", NULL, a);
	check_status("metrics, provider erring", a, 200);
	check_lacks("metrics, provider erring", "body", a->body, "postino_queue_depth");
	free(a);
	check_done();
	fixture_free(f);

	/* behind an admin key */
	f = fixture_new();
	f->settings.metrics_need_key = true;
	fixture_serve(f);
	const struct route_case cases[] = {
	    {"metrics without a key", "GET", "/metrics", NULL, 401, "unauthorized"},
	    {"metrics with a user's key", "GET", "/metrics", ALICE_KEY, 403, "forbidden"},
	    {"metrics with the admin key", "GET", "/metrics", ADMIN_KEY, 200,
	     "postino_queue_depth"},
	};
	run_cases(f, cases, sizeof cases / sizeof cases[0]);
	check_done();
	fixture_free(f);
}

static void test_provider_down(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	f->fake.refuse = true;
	const struct route_case refused[] = {
	    {"refused: key", "GET", "/api/v1/queue", ADMIN_KEY, 503, "\"error\":\"unavailable\""},
	};
	run_cases(f, refused, 1);
	f->fake.refuse = false;
	f->fake.unavailable = true;
	const struct route_case erring[] = {
	    {"erring: key", "GET", "/api/v1/queue", ADMIN_KEY, 503, "unavailable"},
	};
	run_cases(f, erring, 1);
	check_done();
	fixture_free(f);
}

/* Sends a request on a fresh connection and returns the connection (not read). */
static int start_request(struct fixture *f, const char *target, const char *extra)
{
	char req[512];
	int n =
	    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
	             target, extra);
	int fd = client_connect(f);
	client_send(f, fd, req, (size_t)n);
	return fd;
}

static void test_client_gone(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	f->fake.hold = true;

	/* gone while the key is looked up */
	int fd = start_request(f, "/api/v1/messages/" ALICE_MSG, ALICE_KEY);
	pump_until_calls(f, 1);
	close(fd);
	pump(f, 20);
	fake_answer_all(&f->fake); /* the key: the server goes on to the message */
	pump_until_calls(f, 1);
	fake_answer_all(&f->fake); /* the message: answered to a closed socket */
	pump(f, 50);
	check_u64("gone during the key", "pending", stats_http_pending(f->http), 0);

	/* gone with a reset (SO_LINGER 0) while the message is looked up */
	fd = start_request(f, "/api/v1/events", ALICE_KEY);
	pump_until_calls(f, 1);
	fake_answer_all(&f->fake);
	pump_until_calls(f, 1);
	struct linger lg = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
	pump(f, 20);
	fake_answer_all(&f->fake);
	pump(f, 50);
	check_u64("reset during the query", "pending", stats_http_pending(f->http), 0);

	/* two answers for one request: the second finds a stale reference */
	fd = start_request(f, "/api/v1/queue", ADMIN_KEY);
	pump_until_calls(f, 1);
	fake_answer_all(&f->fake);
	pump_until_calls(f, 1);
	struct call twice = f->fake.calls[0];
	fake_answer_all(&f->fake);
	client_read(f, fd, a);
	close(fd);
	check_status("first answer", a, 200);
	fake_answer(&f->fake, &twice);
	check_u64("second answer", "pending", stats_http_pending(f->http), 0);

	f->fake.hold = false;
	request(f, "GET", "/api/v1/queue", ADMIN_KEY, a);
	check_status("still serving", a, 200);
	free(a);
	check_done();
	fixture_free(f);
}

static void test_timeout(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	f->settings.request_timeout_ms = 200;
	fixture_serve(f);
	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	f->fake.hold = true;
	int64_t start = now_ms();
	request(f, "GET", "/api/v1/queue", ADMIN_KEY, a);
	int64_t took = now_ms() - start;
	check_status("slow provider", a, 503);
	check_json("slow provider", a);
	check_contains("slow provider", "body", a->body, "did not answer in time");
	if (took < 150 || took > 2000)
		check_fail("slow provider: answered after %lld ms, want about 200\n",
		           (long long)took);
	check_u64("slow provider", "pending", stats_http_pending(f->http), 0);
	/* the late answer is dropped */
	check_u64("slow provider", "calls held", f->fake.ncalls, 1);
	fake_answer_all(&f->fake);
	pump(f, 20);
	f->fake.hold = false;
	request(f, "GET", "/healthz", NULL, a);
	check_status("after the timeout", a, 200);
	free(a);
	check_done();
	fixture_free(f);
}

static void test_busy_and_pipeline(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	f->settings.max_pending = 2;
	fixture_serve(f);
	struct answer *a = malloc(sizeof *a);
	assert_non_null(a);
	f->fake.hold = true;
	int fd1 = start_request(f, "/api/v1/queue", ADMIN_KEY);
	int fd2 = start_request(f, "/api/v1/queue", ADMIN_KEY);
	pump_until_calls(f, 2);
	request(f, "GET", "/api/v1/queue", ADMIN_KEY, a);
	check_status("third waiting request", a, 503);
	check_contains("third waiting request", "body", a->body, "\"error\":\"busy\"");
	request(f, "GET", "/healthz", NULL, a);
	check_status("healthz needs no slot", a, 200);
	f->fake.hold = false;
	fake_answer_all(&f->fake);
	client_read(f, fd1, a);
	check_status("first", a, 200);
	client_read(f, fd2, a);
	check_status("second", a, 200);
	close(fd1);
	close(fd2);

	/* two requests in one write on a kept-alive connection: two answers, in order */
	const char two[] = "GET /api/v1/messages/" ALICE_MSG " HTTP/1.1\r\nHost: x\r\n" ALICE_KEY
	                   "\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	int fd = client_connect(f);
	client_send(f, fd, two, sizeof two - 1);
	client_read(f, fd, a);
	close(fd);
	check_status("pipeline first", a, 200);
	const char *second = strstr(a->raw + 1, "HTTP/1.1 200");
	if (second == NULL || strstr(a->raw, "\"id\":\"" ALICE_MSG "\"") == NULL ||
	    strstr(second, "{\"status\":\"ok\"}") == NULL)
		check_fail("pipeline: got \"%s\", want the message then ok\n",
		           check_show(a->raw, a->raw_len));
	free(a);
	check_done();
	fixture_free(f);
}

static void test_free_while_waiting(void **state)
{
	(void)state;
	struct fixture *f = fixture_new();
	fixture_serve(f);
	f->fake.hold = true;
	int fd1 = start_request(f, "/api/v1/events", ALICE_KEY);
	int fd2 = start_request(f, "/metrics", "");
	pump_until_calls(f, 2);
	check_u64("before free", "pending", stats_http_pending(f->http), 2);
	fake_drop_all(&f->fake);
	stats_http_free(f->http);
	f->http = NULL;
	/* the clients see the connections close, unanswered */
	char b[16];
	struct pollfd p = {fd1, POLLIN, 0};
	if (poll(&p, 1, WAIT_MS) != 1 || recv(fd1, b, sizeof b, 0) > 0)
		check_fail("free while waiting: first client got no close\n");
	p.fd = fd2;
	if (poll(&p, 1, WAIT_MS) != 1 || recv(fd2, b, sizeof b, 0) > 0)
		check_fail("free while waiting: second client got no close\n");
	close(fd1);
	close(fd2);
	check_done();
	fixture_free(f);
}

/* ---- the dashboard's files, read as text ---- */

/* A file of the source tree (tests run from the repository's root), NUL-terminated. */
static char *read_source(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (run from the repository's root): %s", path,
		         strerror(errno));
	char *text = calloc(1, 1 << 20);
	assert_non_null(text);
	size_t n = fread(text, 1, (1 << 20) - 1, f);
	fclose(f);
	assert_true(n > 0);
	return text;
}

/*
 * The dashboard keeps to its CSP and its promise to insert data as text: no HTML sinks or
 * eval in app.js, no inline script, style or event handler in index.html, nothing loaded from
 * elsewhere, and every element app.js looks up by a literal id exists in index.html.
 */
static void test_dashboard_files(void **state)
{
	(void)state;
	char *js = read_source("stats/dashboard/app.js");
	char *html = read_source("stats/dashboard/index.html");
	char *css = read_source("stats/dashboard/style.css");
	const char *js_banned[] = {"innerHTML",      "outerHTML", "insertAdjacentHTML",
	                           "document.write", "eval(",     "new Function",
	                           "localStorage",   ".style."};
	for (size_t i = 0; i < sizeof js_banned / sizeof js_banned[0]; i++)
		check_lacks("app.js", "text", js, js_banned[i]);
	const char *html_banned[] = {" style=", "http://", "https://", "<script>", "javascript:"};
	for (size_t i = 0; i < sizeof html_banned / sizeof html_banned[0]; i++)
		check_lacks("index.html", "text", html, html_banned[i]);
	for (const char *p = strstr(html, " on"); p != NULL; p = strstr(p + 1, " on")) {
		size_t n = strspn(p + 3, "abcdefghijklmnopqrstuvwxyz");
		if (n > 0 && p[3 + n] == '=')
			check_fail("index.html: an inline event handler at \"%.20s\"\n", p + 1);
	}
	check_lacks("style.css", "text", css, "@import");
	check_lacks("style.css", "text", css, "url(");

	unsigned ids = 0;
	const char *lookups[] = {"$('", "setFigure('"};
	for (size_t k = 0; k < 2; k++) {
		for (const char *p = strstr(js, lookups[k]); p != NULL;
		     p = strstr(p + 1, lookups[k])) {
			const char *id = p + strlen(lookups[k]);
			size_t n = strcspn(id, "'");
			char want[80];
			if (n == 0 || n > 60 || (id[n + 1] != ')' && id[n + 1] != ','))
				continue; /* not a whole literal id ('total-' + f) */
			snprintf(want, sizeof want, "id=\"%.*s\"", (int)n, id);
			if (strstr(html, want) == NULL)
				check_fail("app.js looks up \"%.*s\": index.html has no %s\n",
				           (int)n, id, want);
			ids++;
		}
	}
	if (ids < 30)
		check_fail("app.js: found %u literal id lookups, want 30 or more\n", ids);
	const char *totals[] = {"received",     "delivered",    "deferred",      "bounced",
	                        "bounced_hard", "bounced_soft", "bounced_block", "complained",
	                        "suppressed",   "expired"};
	for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
		char want[64];
		snprintf(want, sizeof want, "id=\"total-%s\"", totals[i]);
		check_contains("index.html", "text", html, want);
		snprintf(want, sizeof want, "'%s'", totals[i]);
		check_contains("app.js", "TOTAL_FIELDS", js, want);
	}
	free(js);
	free(html);
	free(css);
	check_done();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the daemon does: http.h asks for it */
	log_setup(LOG_LEVEL_ERROR, "test_stats_http");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		sha256_hex(keys[i].key, keys[i].hash);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_queries),
	    cmocka_unit_test(test_hostile_text),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_metrics_route),
	    cmocka_unit_test(test_provider_down),
	    cmocka_unit_test(test_client_gone),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_busy_and_pipeline),
	    cmocka_unit_test(test_free_while_waiting),
	    cmocka_unit_test(test_dashboard_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
