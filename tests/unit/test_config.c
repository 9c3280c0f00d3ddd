/*
 * test_config.c: unit tests of relay/config.c: defaults, every type, ranges, and that each
 * bad input gives "file:line: reason". Table-driven; a failing case prints got/want.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/config.h"

static void test_defaults(void **state)
{
	struct config c;
	char err[512] = "";
	int rc = config_parse("t.conf", "", 0, &c, err, sizeof err);
	if (rc != 0)
		fail_msg("empty config: got error \"%s\", want none", err);
	assert_string_equal(c.data_dir, "/var/lib/postino");
	assert_int_equal(c.listen_submission.count, 2);
	assert_string_equal(c.listen_submission.a[0].text, "0.0.0.0:587");
	assert_string_equal(c.listen_submission.a[1].text, "0.0.0.0:2525");
	assert_int_equal(c.listen_smtps.count, 1);
	assert_string_equal(c.listen_smtps.a[0].text, "0.0.0.0:465");
	assert_int_equal(c.max_recipients, 1000);
	assert_int_equal(c.max_message_size, 25u << 20);
	assert_int_equal(c.idle_timeout, 300);
	assert_true(c.workers >= 1);
	assert_true(c.sign_threads >= 1);
	assert_true(c.hostname[0] != '\0');
	assert_false(c.auth_cleartext_loopback);
	assert_false(c.redis_unsafe_ok);
	assert_string_equal(c.redis, "");
	assert_int_equal(c.log_level, LOG_LEVEL_INFO);
}

static void test_values(void **state)
{
	static const char text[] = "# comment\n"
	                           "  hostname = mx.example.com   # trailing comment\n"
	                           "\n"
	                           "redis = unix:/run/redis.sock\n"
	                           "redis_password = pa#ss\n"
	                           "listen_submission = 127.0.0.1:2587, [::1]:2588\n"
	                           "listen_smtps =\n"
	                           "auth_cleartext_loopback = yes\n"
	                           "max_message_size = 10M\n"
	                           "max_recipients = 5\n"
	                           "workers = 3\n"
	                           "log_level = debug\n";
	struct config c;
	char err[512] = "";
	if (config_parse("t.conf", text, sizeof text - 1, &c, err, sizeof err) != 0)
		fail_msg("got error \"%s\", want none", err);
	assert_string_equal(c.hostname, "mx.example.com");
	assert_string_equal(c.redis, "unix:/run/redis.sock");
	assert_string_equal(c.redis_password, "pa#ss"); /* '#' inside a value is kept */
	assert_int_equal(c.listen_submission.count, 2);
	assert_string_equal(c.listen_submission.a[1].text, "[::1]:2588");
	assert_int_equal(c.listen_submission.a[1].addr.ss_family, AF_INET6);
	assert_int_equal(c.listen_smtps.count, 0); /* empty value turns the listener off */
	assert_true(c.auth_cleartext_loopback);
	assert_int_equal(c.max_message_size, 10u << 20);
	assert_int_equal(c.max_recipients, 5);
	assert_int_equal(c.workers, 3);
	assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
}

struct bad_case {
	const char *text;
	const char *want; /* the error starts with this */
};

static void test_errors(void **state)
{
	static const struct bad_case cases[] = {
	    {"bogus = 1\n", "t.conf:1: unknown key 'bogus'"},
	    {"\n\nmax_recipients = 0\n", "t.conf:3: max_recipients: out of range (1..100000)"},
	    {"max_recipients = 100001\n", "t.conf:1: max_recipients: out of range"},
	    {"max_recipients = 12x\n", "t.conf:1: max_recipients: expected a whole number"},
	    {"max_recipients = -1\n", "t.conf:1: max_recipients: expected a whole number"},
	    {"max_recipients = 99999999999999999999999\n", "t.conf:1: max_recipients: expected"},
	    {"idle_timeout = 5\nidle_timeout = 6\n", "t.conf:2: idle_timeout is set twice"},
	    {"auth_cleartext_loopback = maybe\n",
	     "t.conf:1: auth_cleartext_loopback: expected yes"},
	    {"listen_smtps = nonsense\n", "t.conf:1: listen_smtps: missing :PORT"},
	    {"listen_smtps = 1.2.3.4:0\n", "t.conf:1: listen_smtps: bad port"},
	    {"listen_smtps = 1.2.3.4:70000\n", "t.conf:1: listen_smtps: bad port"},
	    {"listen_smtps = host.example:465\n", "t.conf:1: listen_smtps: not a numeric IP"},
	    {"listen_smtps = ::1:465\n", "t.conf:1: listen_smtps: IPv6 address must be written"},
	    {"redis = localhost\n", "t.conf:1: redis: want unix:/path, host:port or [ipv6]:port"},
	    {"redis = unix:relative.sock\n", "t.conf:1: redis: unix socket path must be absolute"},
	    {"max_message_size = 1G\n", "t.conf:1: max_message_size: out of range"},
	    {"max_message_size = 10Q\n", "t.conf:1: max_message_size: expected a size"},
	    {"log_level = loud\n", "t.conf:1: log_level: expected debug"},
	    {"hostname\n", "t.conf:1: expected key = value"},
	    {"data_dir =\n", "t.conf:1: data_dir: value must not be empty"},
	    {"tls_cert = /a.pem\n", "t.conf: tls_cert and tls_key must be set together"},
	    {"route = 1.2.3.4\n", "t.conf:1: unknown key 'route'"},
	    {"routes a.example = 1.2.3.4\n", "t.conf:1: unknown key (only route and site"},
	    {"route a..b/ = 1.2.3.4\n", "t.conf:1: route: expected a domain"},
	    {"route a.example = \n", "t.conf:1: route: expected HOST"},
	    {"route a.example = h:0\n", "t.conf:1: route: bad port"},
	    {"route a.example = ::1:25\n", "t.conf:1: route: an IPv6 address must be written"},
	    {"route a.example = h\nroute A.example = i\n", "t.conf:2: route: this domain has"},
	    {"site *.x = bogus=1\n", "t.conf:1: site: unknown setting"},
	    {"site *.x = connections=0\n", "t.conf:1: site: connections must be 1..10000"},
	    {"site *.x = rate=5/d\n", "t.conf:1: expected a rate N/s"},
	    {"site *.x = tls=maybe\n", "t.conf:1: expected none, opportunistic or required"},
	    {"site *.x = rate=1/s rate=2/s\n", "t.conf:1: site: a setting is given twice"},
	    {"site *.x =\n", "t.conf:1: site: expected at least one"},
	    {"site x*y = rate=1/s\n", "t.conf:1: site: expected a host name"},
	    {"site_rate = fast\n", "t.conf:1: site_rate: expected a rate"},
	    {"outbound_tls = always\n", "t.conf:1: outbound_tls: expected none"},
	    {"outbound_source = host.example\n", "t.conf:1: outbound_source: not a numeric IP"},
	    {"retry_first = 100\nretry_max = 50\n", "t.conf: retry_first must not be above"},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config c;
		char err[512] = "";
		int rc = config_parse("t.conf", cases[i].text, strlen(cases[i].text), &c, err,
		                      sizeof err);
		if (rc != -1 || strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
			print_error("case %zu: got rc=%d \"%s\", want -1 \"%s...\"\n", i, rc, err,
			            cases[i].want);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* Routes (exact, longest *.suffix, then *) and site rules (first match on any MX host name;
 * unset fields from the site_* keys; built-in provider rules after the file's). */
static void test_routes_and_sites(void **state)
{
	static const char text[] = "route a.example = 127.0.0.1:2525\n"
	                           "route *.example = sink.test\n"
	                           "route *.b.example = [::1]:26\n"
	                           "route * = 192.0.2.1:27\n"
	                           "site_connections = 4\n"
	                           "site mx.partner.test = rate=10/s tls=required\n"
	                           "site *.google.com = connections=3\n"
	                           "site_rate = 2/m\n";
	struct config c;
	char err[512] = "";
	if (config_parse("t.conf", text, sizeof text - 1, &c, err, sizeof err) != 0)
		fail_msg("got error \"%s\", want none", err);
	static const struct {
		const char *domain, *host;
		int port;
	} routes[] = {
	    {"a.example", "127.0.0.1", 2525}, {"x.example", "sink.test", 25},
	    {"y.b.example", "::1", 26},       {"b.example", "sink.test", 25},
	    {"other.test", "192.0.2.1", 27},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		const struct config_route *r = config_route_find(&c, routes[i].domain);
		if (r == NULL || strcmp(r->host, routes[i].host) != 0 ||
		    r->port != routes[i].port) {
			print_error("route of %s: got %s:%d, want %s:%d\n", routes[i].domain,
			            r ? r->host : "none", r ? r->port : 0, routes[i].host,
			            routes[i].port);
			failures++;
		}
	}
	static const struct {
		const char *site;
		int connections, messages;
		unsigned rate;
		int64_t period_ms;
		enum config_tls_policy tls;
	} sites[] = {
	    {"mx.partner.test", 4, 100, 10, 1000, CONFIG_TLS_REQUIRED},
	    {"alt1.aspmx.l.google.com,aspmx.l.google.com", 3, 100, 2, 60000,
	     CONFIG_TLS_OPPORTUNISTIC},
	    {"mta5.am0.yahoodns.net", 10, 20, 2, 60000, CONFIG_TLS_OPPORTUNISTIC},
	    {"a.mx.test,mx.partner.test", 4, 100, 10, 1000, CONFIG_TLS_REQUIRED},
	    {"mx.other.test", 4, 100, 2, 60000, CONFIG_TLS_OPPORTUNISTIC},
	    {"127.0.0.1:2525", 4, 100, 2, 60000, CONFIG_TLS_OPPORTUNISTIC},
	};
	for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++) {
		const struct config_site_rule *r = config_site_rule_find(&c, sites[i].site);
		if (r->connections != sites[i].connections ||
		    r->messages_per_connection != sites[i].messages ||
		    r->rate.count != sites[i].rate || r->rate.period_ms != sites[i].period_ms ||
		    r->tls != sites[i].tls) {
			print_error(
			    "site %s (rule %s): got connections=%d messages=%d rate=%u/%lld "
			    "tls=%d, want %d %d %u/%lld %d\n",
			    sites[i].site, r->pattern, r->connections, r->messages_per_connection,
			    r->rate.count, (long long)r->rate.period_ms, (int)r->tls,
			    sites[i].connections, sites[i].messages, sites[i].rate,
			    (long long)sites[i].period_ms, (int)sites[i].tls);
			failures++;
		}
	}
	assert_string_equal(c.outbound_ehlo, c.hostname);
	assert_int_equal(failures, 0);
}

static void test_load_missing_file(void **state)
{
	struct config c;
	char err[512] = "";
	assert_int_equal(config_load("/nonexistent/postino.conf", &c, err, sizeof err), -1);
	if (strstr(err, "/nonexistent/postino.conf: cannot open") != err)
		fail_msg("got \"%s\", want \"/nonexistent/postino.conf: cannot open...\"", err);
}

static void test_example_config_is_valid(void **state)
{
	struct config c;
	char err[512] = "";
	if (config_load("deploy/postino.conf", &c, err, sizeof err) != 0)
		fail_msg("deploy/postino.conf: got error \"%s\", want none", err);
	if (config_load("deploy/dev.conf", &c, err, sizeof err) != 0)
		fail_msg("deploy/dev.conf: got error \"%s\", want none", err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_routes_and_sites),
	    cmocka_unit_test(test_load_missing_file),
	    cmocka_unit_test(test_example_config_is_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
