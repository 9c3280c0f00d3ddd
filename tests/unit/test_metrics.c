/*
 * test_metrics.c: unit tests of stats/metrics.c: counters and gauges summed over worker rows,
 * out-of-range calls refused, histogram buckets (a value equal to a bound counts in it),
 * a dead worker's counters kept while its gauges go, the table shared across fork(), and the
 * Prometheus text (golden, with label-value and help escaping and the extra gauges grouped
 * by name).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats/metrics.h"
#include "tests/unit/lib_check.h"

/* The rendering as a NUL-terminated string (caller frees). */
static char *render(const struct stats_metrics *m, const struct stats_gauge *extra, size_t n)
{
	struct evbuffer *out = evbuffer_new();
	assert_non_null(out);
	assert_int_equal(stats_metrics_render(m, extra, n, out), 0);
	size_t len = evbuffer_get_length(out);
	char *text = malloc(len + 1);
	assert_non_null(text);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

static void check_value(const char *name, const struct stats_metrics *m, enum stats_metric id,
                        unsigned label, int64_t want)
{
	int64_t got = stats_metrics_value(m, id, label);
	if (got != want)
		check_fail("%s: value got %lld, want %lld\n", name, (long long)got,
		           (long long)want);
}

static void test_sum_over_workers(void **state)
{
	(void)state;
	struct stats_metrics *m = stats_metrics_new(3);
	assert_non_null(m);
	for (int w = 0; w < 3; w++) {
		stats_metrics_add(m, w, STATS_METRIC_DELIVERIES_TOTAL, STATS_OUTCOME_DELIVERED,
		                  w + 1);
		stats_metrics_add(m, w, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SMTPS, 2);
		stats_metrics_set(m, w, STATS_METRIC_OUTBOUND_CONNECTIONS_ACTIVE, 0, 10 * w);
	}
	stats_metrics_add(m, 2, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SMTPS, -1);
	check_value("delivered", m, STATS_METRIC_DELIVERIES_TOTAL, STATS_OUTCOME_DELIVERED, 6);
	check_value("deferred untouched", m, STATS_METRIC_DELIVERIES_TOTAL, STATS_OUTCOME_DEFERRED,
	            0);
	check_value("sessions active", m, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SMTPS,
	            5);
	check_value("outbound set", m, STATS_METRIC_OUTBOUND_CONNECTIONS_ACTIVE, 0, 30);
	stats_metrics_set(m, 1, STATS_METRIC_OUTBOUND_CONNECTIONS_ACTIVE, 0, 0);
	check_value("outbound set again", m, STATS_METRIC_OUTBOUND_CONNECTIONS_ACTIVE, 0, 20);
	check_done();
	stats_metrics_free(m);
}

struct misuse_case {
	const char *name;
	int rc;
};

static void test_out_of_range(void **state)
{
	(void)state;
	struct stats_metrics *m = stats_metrics_new(2);
	assert_non_null(m);
	const struct misuse_case cases[] = {
	    {"worker -1", stats_metrics_add(m, -1, STATS_METRIC_AUTH_FAILURES_TOTAL, 0, 1)},
	    {"worker 2 of 2", stats_metrics_add(m, 2, STATS_METRIC_AUTH_FAILURES_TOTAL, 0, 1)},
	    {"label of a metric without one",
	     stats_metrics_add(m, 0, STATS_METRIC_AUTH_FAILURES_TOTAL, 1, 1)},
	    {"label past the set",
	     stats_metrics_add(m, 0, STATS_METRIC_BOUNCES_TOTAL, STATS_CLASS_COUNT, 1)},
	    {"metric past the table", stats_metrics_add(m, 0, STATS_METRIC_COUNT, 0, 1)},
	    {"counter down", stats_metrics_add(m, 0, STATS_METRIC_AUTH_FAILURES_TOTAL, 0, -1)},
	    {"set a counter", stats_metrics_set(m, 0, STATS_METRIC_AUTH_FAILURES_TOTAL, 0, 5)},
	    {"NULL table", stats_metrics_add(NULL, 0, STATS_METRIC_AUTH_FAILURES_TOTAL, 0, 1)},
	    {"observe NaN", stats_metrics_observe(m, 0, STATS_HIST_SIGN_SECONDS, NAN)},
	    {"observe past the table", stats_metrics_observe(m, 0, STATS_HIST_COUNT, 1)},
	    {"observe bad worker", stats_metrics_observe(m, 5, STATS_HIST_SIGN_SECONDS, 1)},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		check_u64(cases[i].name, "rc", (uint64_t)(int64_t)cases[i].rc, (uint64_t)-1);
	check_value("nothing counted", m, STATS_METRIC_AUTH_FAILURES_TOTAL, 0, 0);
	check_u64("nothing observed", "count", stats_metrics_hist_count(m, STATS_HIST_SIGN_SECONDS),
	          0);
	check_u64("bad index value", "value",
	          (uint64_t)stats_metrics_value(m, STATS_METRIC_BOUNCES_TOTAL, 99), 0);
	assert_null(stats_metrics_new(0));
	assert_null(stats_metrics_new(100000));
	stats_metrics_free(NULL);
	check_done();
	stats_metrics_free(m);
}

static void test_retire_worker(void **state)
{
	(void)state;
	struct stats_metrics *m = stats_metrics_new(2);
	assert_non_null(m);
	stats_metrics_add(m, 0, STATS_METRIC_SUBMISSIONS_TOTAL, STATS_SUBMISSION_ACCEPTED, 3);
	stats_metrics_add(m, 1, STATS_METRIC_SUBMISSIONS_TOTAL, STATS_SUBMISSION_ACCEPTED, 4);
	stats_metrics_add(m, 1, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SUBMISSION, 2);
	stats_metrics_add(m, 0, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SUBMISSION, 1);
	stats_metrics_observe(m, 1, STATS_HIST_REDIS_REQUEST_SECONDS, 0.002);
	stats_metrics_retire_worker(m, 1);
	check_value("counter kept", m, STATS_METRIC_SUBMISSIONS_TOTAL, STATS_SUBMISSION_ACCEPTED,
	            7);
	check_value("gauge gone", m, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SUBMISSION,
	            1);
	check_u64("histogram kept", "count",
	          stats_metrics_hist_count(m, STATS_HIST_REDIS_REQUEST_SECONDS), 1);
	/* the new worker in that row starts from zero and adds up */
	stats_metrics_add(m, 1, STATS_METRIC_SUBMISSIONS_TOTAL, STATS_SUBMISSION_ACCEPTED, 1);
	check_value("after restart", m, STATS_METRIC_SUBMISSIONS_TOTAL, STATS_SUBMISSION_ACCEPTED,
	            8);
	stats_metrics_retire_worker(m, 7); /* out of range: nothing */
	check_done();
	stats_metrics_free(m);
}

static void test_shared_across_fork(void **state)
{
	(void)state;
	struct stats_metrics *m = stats_metrics_new(2);
	assert_non_null(m);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc =
		    stats_metrics_add(m, 1, STATS_METRIC_BOUNCES_TOTAL, STATS_CLASS_BLOCK, 41) |
		    stats_metrics_observe(m, 1, STATS_HIST_SIGN_SECONDS, 0.003);
		_exit(rc == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	stats_metrics_add(m, 0, STATS_METRIC_BOUNCES_TOTAL, STATS_CLASS_BLOCK, 1);
	check_value("child's bounces seen", m, STATS_METRIC_BOUNCES_TOTAL, STATS_CLASS_BLOCK, 42);
	check_u64("child's observation seen", "count",
	          stats_metrics_hist_count(m, STATS_HIST_SIGN_SECONDS), 1);
	check_done();
	stats_metrics_free(m);
}

/* The whole text, every line checked: counters, gauges, labels, histograms, extras. */
static const char golden[] =
    "# HELP postino_smtp_sessions_total SMTP sessions accepted.\n"
    "# TYPE postino_smtp_sessions_total counter\n"
    "postino_smtp_sessions_total{listener=\"submission\"} 5\n"
    "postino_smtp_sessions_total{listener=\"smtps\"} 0\n"
    "postino_smtp_sessions_total{listener=\"bounce\"} 0\n"
    "# HELP postino_smtp_sessions_active SMTP sessions open now.\n"
    "# TYPE postino_smtp_sessions_active gauge\n"
    "postino_smtp_sessions_active{listener=\"submission\"} 0\n"
    "postino_smtp_sessions_active{listener=\"smtps\"} -1\n"
    "postino_smtp_sessions_active{listener=\"bounce\"} 0\n"
    "# HELP postino_submissions_total Messages submitted, by the reply to DATA.\n"
    "# TYPE postino_submissions_total counter\n"
    "postino_submissions_total{result=\"accepted\"} 0\n"
    "postino_submissions_total{result=\"rejected\"} 0\n"
    "postino_submissions_total{result=\"tempfail\"} 2\n"
    "# HELP postino_recipients_received_total Recipients of accepted messages.\n"
    "# TYPE postino_recipients_received_total counter\n"
    "postino_recipients_received_total 0\n"
    "# HELP postino_deliveries_total Delivery attempts to one recipient, by outcome.\n"
    "# TYPE postino_deliveries_total counter\n"
    "postino_deliveries_total{outcome=\"delivered\"} 0\n"
    "postino_deliveries_total{outcome=\"deferred\"} 0\n"
    "postino_deliveries_total{outcome=\"bounced\"} 0\n"
    "postino_deliveries_total{outcome=\"expired\"} 9\n"
    "# HELP postino_bounces_total Bounces and complaints, by class.\n"
    "# TYPE postino_bounces_total counter\n"
    "postino_bounces_total{class=\"hard\"} 0\n"
    "postino_bounces_total{class=\"soft\"} 0\n"
    "postino_bounces_total{class=\"block\"} 0\n"
    "postino_bounces_total{class=\"complaint\"} 0\n"
    "postino_bounces_total{class=\"ignore\"} 0\n"
    "# HELP postino_tls_handshake_failures_total TLS handshakes that failed.\n"
    "# TYPE postino_tls_handshake_failures_total counter\n"
    "postino_tls_handshake_failures_total 0\n"
    "# HELP postino_auth_failures_total SMTP AUTH attempts that failed.\n"
    "# TYPE postino_auth_failures_total counter\n"
    "postino_auth_failures_total 0\n"
    "# HELP postino_redis_errors_total Redis requests that failed or timed out.\n"
    "# TYPE postino_redis_errors_total counter\n"
    "postino_redis_errors_total 0\n"
    "# HELP postino_outbound_connections_active Outbound SMTP connections open now.\n"
    "# TYPE postino_outbound_connections_active gauge\n"
    "postino_outbound_connections_active 0\n"
    "# HELP postino_http_requests_total HTTP API requests answered, by status class.\n"
    "# TYPE postino_http_requests_total counter\n"
    "postino_http_requests_total{code=\"1xx\"} 0\n"
    "postino_http_requests_total{code=\"2xx\"} 0\n"
    "postino_http_requests_total{code=\"3xx\"} 0\n"
    "postino_http_requests_total{code=\"4xx\"} 1\n"
    "postino_http_requests_total{code=\"5xx\"} 0\n"
    "# HELP postino_sign_seconds Time to DKIM-sign one message, waiting for a signing thread "
    "included.\n"
    "# TYPE postino_sign_seconds histogram\n"
    "postino_sign_seconds_bucket{le=\"0.0005\"} 0\n"
    "postino_sign_seconds_bucket{le=\"0.001\"} 1\n"
    "postino_sign_seconds_bucket{le=\"0.0025\"} 1\n"
    "postino_sign_seconds_bucket{le=\"0.005\"} 1\n"
    "postino_sign_seconds_bucket{le=\"0.01\"} 1\n"
    "postino_sign_seconds_bucket{le=\"0.025\"} 2\n"
    "postino_sign_seconds_bucket{le=\"0.05\"} 2\n"
    "postino_sign_seconds_bucket{le=\"0.1\"} 2\n"
    "postino_sign_seconds_bucket{le=\"0.25\"} 2\n"
    "postino_sign_seconds_bucket{le=\"0.5\"} 2\n"
    "postino_sign_seconds_bucket{le=\"1\"} 2\n"
    "postino_sign_seconds_bucket{le=\"2.5\"} 2\n"
    "postino_sign_seconds_bucket{le=\"5\"} 2\n"
    "postino_sign_seconds_bucket{le=\"+Inf\"} 3\n"
    "postino_sign_seconds_sum 7.021\n"
    "postino_sign_seconds_count 3\n"
    "# HELP postino_redis_request_seconds Time from sending a Redis request to its answer.\n"
    "# TYPE postino_redis_request_seconds histogram\n"
    "postino_redis_request_seconds_bucket{le=\"0.0001\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.00025\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.0005\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.001\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.0025\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.005\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.01\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.025\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.05\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.1\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.25\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"0.5\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"1\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"2.5\"} 1\n"
    "postino_redis_request_seconds_bucket{le=\"+Inf\"} 1\n"
    "postino_redis_request_seconds_sum 0\n"
    "postino_redis_request_seconds_count 1\n"
    "# HELP postino_queue_depth Recipients waiting, by state.\\nSecond line \\\\ here.\n"
    "# TYPE postino_queue_depth gauge\n"
    "postino_queue_depth{state=\"ready\"} 12\n"
    "postino_queue_depth{state=\"a\\\"b\\\\c\\nd\"} 0.5\n"
    "postino_queue_depth{state=\"caf\xc3\xa9 \xef\xbf\xbd\"} 3\n"
    "# HELP postino_sites_down Sites marked down.\n"
    "# TYPE postino_sites_down gauge\n"
    "postino_sites_down +Inf\n";

static void test_render_golden(void **state)
{
	(void)state;
	struct stats_metrics *m = stats_metrics_new(2);
	assert_non_null(m);
	stats_metrics_add(m, 0, STATS_METRIC_SMTP_SESSIONS_TOTAL, STATS_LISTENER_SUBMISSION, 2);
	stats_metrics_add(m, 1, STATS_METRIC_SMTP_SESSIONS_TOTAL, STATS_LISTENER_SUBMISSION, 3);
	stats_metrics_add(m, 1, STATS_METRIC_SMTP_SESSIONS_ACTIVE, STATS_LISTENER_SMTPS, -1);
	stats_metrics_add(m, 0, STATS_METRIC_SUBMISSIONS_TOTAL, STATS_SUBMISSION_TEMPFAIL, 2);
	stats_metrics_add(m, 1, STATS_METRIC_DELIVERIES_TOTAL, STATS_OUTCOME_EXPIRED, 9);
	stats_metrics_add(m, 0, STATS_METRIC_HTTP_REQUESTS_TOTAL, stats_metrics_code_class(404), 1);
	stats_metrics_observe(m, 0, STATS_HIST_SIGN_SECONDS, 0.001); /* on a bound: in it */
	stats_metrics_observe(m, 1, STATS_HIST_SIGN_SECONDS, 0.02);
	stats_metrics_observe(m, 1, STATS_HIST_SIGN_SECONDS, 7);
	stats_metrics_observe(m, 0, STATS_HIST_REDIS_REQUEST_SECONDS, -3); /* clock back: 0 */
	const struct stats_gauge extra[] = {
	    {"postino_queue_depth", "Recipients waiting, by state.\nSecond line \\ here.", "state",
	     "ready", 12},
	    {"postino_sites_down", "Sites marked down.", NULL, NULL, INFINITY},
	    {"bad name", "x", NULL, NULL, 1},
	    {"postino_queue_depth", "ignored: the first entry gives the help", "state",
	     "a\"b\\c\nd", 0.5},
	    {"postino_x", "x", "bad-label", "v", 1},
	    {"postino_x", "x", "__reserved", "v", 1},
	    {"postino_bounces_total", "collides with the table", NULL, NULL, 1},
	    {"postino_sign_seconds_bucket", "collides with the table", NULL, NULL, 1},
	    {"postino_queue_depth", NULL, "state", "caf\xc3\xa9\x01\xff", 3},
	};
	char *text = render(m, extra, sizeof extra / sizeof extra[0]);
	check_bytes("golden", "text", text, strlen(text), golden, sizeof golden - 1);
	free(text);

	/* no table: the extras alone */
	const struct stats_gauge one[] = {{"postino_queue_depth", "h", NULL, NULL, 4}};
	text = render(NULL, one, 1);
	check_str("extras only", "text", text,
	          "# HELP postino_queue_depth h\n# TYPE postino_queue_depth gauge\n"
	          "postino_queue_depth 4\n");
	free(text);
	check_done();
	stats_metrics_free(m);
}

static void test_code_class(void **state)
{
	(void)state;
	const struct {
		int status;
		unsigned want;
	} cases[] = {{100, STATS_CODE_1XX}, {200, STATS_CODE_2XX}, {304, STATS_CODE_3XX},
	             {404, STATS_CODE_4XX}, {431, STATS_CODE_4XX}, {503, STATS_CODE_5XX},
	             {599, STATS_CODE_5XX}, {600, STATS_CODE_5XX}, {0, STATS_CODE_5XX},
	             {-1, STATS_CODE_5XX}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char name[32];
		snprintf(name, sizeof name, "status %d", cases[i].status);
		check_u64(name, "class", stats_metrics_code_class(cases[i].status), cases[i].want);
	}
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sum_over_workers), cmocka_unit_test(test_out_of_range),
	    cmocka_unit_test(test_retire_worker),    cmocka_unit_test(test_shared_across_fork),
	    cmocka_unit_test(test_render_golden),    cmocka_unit_test(test_code_class),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
