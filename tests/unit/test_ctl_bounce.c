/*
 * test_ctl_bounce.c: unit tests of relay/ctl_bounce.c ("postinoctl bounce parse|classify"):
 * output lines and JSON objects for replies and message files, exit codes (usage, unreadable
 * message, unreadable rules), and the escaping of peer bytes: control octets, quotes,
 * backslashes, invalid UTF-8 (lone octets, overlongs, surrogates) in JSON and in key=value
 * lines. Output is captured through temporary files. Run from the repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "relay/ctl_bounce.h"
#include "tests/unit/lib_check.h"

#define RULES    "deploy/bounce-rules.conf"
#define FIXTURES "tests/fixtures/bounces/"
#define OUT_MAX  65536

struct run {
	int rc;
	char out[OUT_MAX];
	char err[OUT_MAX];
};

/* Runs ctl_bounce_run over a NULL-terminated argument list. */
static void run(struct run *r, const char *rules, const char *const *args)
{
	char *argv[32];
	int argc = 0;
	while (args[argc] != NULL && argc < 31) {
		argv[argc] = (char *)(uintptr_t)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	FILE *out = tmpfile(), *err = tmpfile();
	assert_non_null(out);
	assert_non_null(err);
	r->rc = ctl_bounce_run(rules, argc, argv, out, err);
	check_capture(out, r->out, sizeof(r->out));
	check_capture(err, r->err, sizeof(r->err));
}

static void check_has(const char *name, const char *what, const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		check_fail("%s: %s got \"%s\", want it to hold \"%s\"\n", name, what,
		           check_show(hay, strlen(hay)), check_show(needle, strlen(needle)));
}

struct classify_case {
	const char *name;
	const char *args[6];
	int rc;
	const char *out; /* a part of stdout */
};

static const struct classify_case classify_cases[] = {
    {"postfix user unknown",
     {"classify",
      "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient "
      "table",
      NULL},
     0,
     "reason=userunknown class=hard rule=" RULES ":"},
    {"code and status printed", {"classify", "550 5.1.1 x", NULL}, 0, " code=550 status=5.1.1\n"},
    {"words joined", {"classify", "550", "No", "such", "user", NULL}, 0, "reason=userunknown"},
    {"json",
     {"classify", "--json", "451 4.7.1 Greylisted, try later", NULL},
     0,
     "{\"reason\":\"onhold\",\"class\":\"soft\",\"rule\":\"" RULES ":"},
    {"json code and status",
     {"classify", "--json", "451 4.7.1 Greylisted", NULL},
     0,
     ",\"code\":451,\"status\":\"4.7.1\"}\n"},
    {"status inside the text",
     {"classify", "Sorry, no mailbox here by that name. (#5.1.1)", NULL},
     0,
     "reason=userunknown class=hard"},
    {"nothing matches",
     {"classify", "hello", NULL},
     0,
     "reason=undefined class=soft rule=none code=0\n"},
    {"no reply", {"classify", NULL}, 1, ""},
    {"json but no reply", {"classify", "--json", NULL}, 1, ""},
    {"unknown subcommand", {"explain", "x", NULL}, 1, ""},
    {"no subcommand", {NULL}, 1, ""},
    {"parse without files", {"parse", "--json", NULL}, 1, ""},
};

static void test_classify(void **state)
{
	(void)state;
	struct run *r = malloc(sizeof *r);
	assert_non_null(r);
	for (size_t i = 0; i < sizeof classify_cases / sizeof classify_cases[0]; i++) {
		const struct classify_case *c = &classify_cases[i];
		run(r, RULES, c->args);
		check_u64(c->name, "exit code", (uint64_t)r->rc, (uint64_t)c->rc);
		check_has(c->name, "stdout", r->out, c->out);
		if (c->rc == 1)
			check_has(c->name, "stderr", r->err, "usage:");
	}
	const char *args[] = {"classify", "550 x", NULL};
	run(r, "/nonexistent/rules.conf", args);
	check_u64("rules unreadable", "exit code", (uint64_t)r->rc, 2);
	check_has("rules unreadable", "stderr", r->err, "/nonexistent/rules.conf: No such file");
	free(r);
	check_done();
}

static void test_parse_files(void **state)
{
	(void)state;
	struct run *r = malloc(sizeof *r);
	assert_non_null(r);
	const char *a1[] = {"parse", "--json", FIXTURES "postfix-userunknown.eml", NULL};
	run(r, RULES, a1);
	check_u64("json dsn", "exit code", (uint64_t)r->rc, 0);
	check_has("json dsn", "stdout", r->out,
	          "{\"file\":\"" FIXTURES "postfix-userunknown.eml\",\"kind\":\"dsn\","
	          "\"recipient\":\"a@example.com\",\"action\":\"failed\",\"status\":\"5.1.1\","
	          "\"code\":550,\"reason\":\"userunknown\",\"class\":\"hard\",\"rule\":\"" RULES
	          ":");
	check_has("json dsn", "stdout", r->out,
	          "\"postino_id\":\"0123456789abcdef\",\"message_id\":\"<20250303100000."
	          "0123456789abcdef@example.org>\",\"envelope_from\":\"bounces+"
	          "0123456789abcdef00000003a9f4c2d1e07b5a66@bounce.example.org\"}\n");
	if (strstr(r->out, "feedback_type") != NULL)
		check_fail("json dsn: feedback_type printed for a DSN\n");

	const char *a2[] = {"parse", "--json", FIXTURES "arf-yahoo.eml",
	                    FIXTURES "notbounce-human-reply.eml", NULL};
	run(r, RULES, a2);
	check_has("json arf", "stdout", r->out,
	          "\"reason\":\"feedback\",\"class\":\"complaint\",\"rule\":\"\"");
	check_has("json arf", "stdout", r->out, ",\"feedback_type\":\"abuse\"}\n");
	check_has("json notbounce", "stdout", r->out,
	          "{\"file\":\"" FIXTURES "notbounce-human-reply.eml\",\"kind\":\"notbounce\","
	          "\"reason\":\"notbounce\"}\n");

	const char *a3[] = {"parse", FIXTURES "postfix-two-recipients.eml", NULL};
	run(r, RULES, a3);
	check_has("text lines", "stdout", r->out,
	          "file=" FIXTURES "postfix-two-recipients.eml kind=dsn recipient=e1@example.com "
	          "action=failed status=5.1.1 code=550 reason=userunknown class=hard rule=");
	check_has("text lines", "stdout", r->out, "recipient=e2@example.com");
	check_has("text lines", "stdout", r->out,
	          "diagnostic=\"452 4.2.2 <e2@example.com>: Recipient address rejected: Mailbox "
	          "over quota\"");

	const char *a4[] = {"parse", "/nonexistent/a.eml", FIXTURES "qmail-remote.eml", NULL};
	run(r, RULES, a4);
	check_u64("one unreadable", "exit code", (uint64_t)r->rc, 2);
	check_has("one unreadable", "stderr", r->err,
	          "postinoctl: /nonexistent/a.eml: No such file");
	check_has("one unreadable", "stdout", r->out, "recipient=x2@example.com");
	free(r);
	check_done();
}

/* Peer bytes in a diagnostic: JSON escapes, U+FFFD for invalid UTF-8, \xHH in text lines. */
static void test_escaping(void **state)
{
	(void)state;
	static const char msg[] = "From: MAILER-DAEMON@example.net\nSubject: failure notice\n\n"
	                          "<q@example.com>:\n"
	                          "550 5.1.1 a\x01"
	                          "b \"q\" back\\slash caf\xc3\xa9 \xf0\x9f\x93\xa7 "
	                          "lone\xff over\xc0\xaf sur\xed\xa0\x80 cut\xe2\x82 del\x7f end\n";
	char path[] = "/tmp/test_ctl_bounce_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg, sizeof msg - 1), (ssize_t)(sizeof msg - 1));
	close(fd);
	struct run *r = malloc(sizeof *r);
	assert_non_null(r);
	const char *a1[] = {"parse", "--json", path, NULL};
	run(r, RULES, a1);
	check_has("json escaping", "stdout", r->out,
	          "\"diagnostic\":\"550 5.1.1 a\\u0001b \\\"q\\\" back\\\\slash caf\xc3\xa9 "
	          "\xf0\x9f\x93\xa7 lone\\ufffd over\\ufffd\\ufffd sur\\ufffd\\ufffd\\ufffd "
	          "cut\\ufffd\\ufffd del\\u007f end\"");
	const char *a2[] = {"parse", path, NULL};
	run(r, RULES, a2);
	check_has("text escaping", "stdout", r->out,
	          "diagnostic=\"550 5.1.1 a\\x01b \"q\" back\\x5cslash caf\\xc3\\xa9 "
	          "\\xf0\\x9f\\x93\\xa7 lone\\xff");
	unlink(path);
	free(r);
	check_done();
}

static void test_usage(void **state)
{
	(void)state;
	char buf[256] = "";
	FILE *f = tmpfile();
	assert_non_null(f);
	ctl_bounce_usage(f);
	rewind(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	check_str("usage", "text", buf,
	          "  bounce parse [--json] FILE...\n  bounce classify [--json] 'REPLY TEXT'\n");
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_parse_files),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_usage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
