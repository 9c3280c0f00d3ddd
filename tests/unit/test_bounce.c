/*
 * test_bounce.c: unit tests of relay/bounce.c: the reason and class names, the rules file
 * format (every error with its file:line), the order of evaluation (first match wins, user
 * rules in front, conditions and qualifiers, '*' patterns), bounce_reply_split, and the
 * shipped deploy/bounce-rules.conf over a table of real-world replies of Gmail, Microsoft,
 * Yahoo/AOL, Apple, Comcast, GMX/web.de, Mail.ru, Yandex, Postfix, Exim, Sendmail, qmail and
 * Exchange. Run from the repository root (make unit does). Every failing case prints
 * "case: field got X, want Y".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/bounce.h"
#include "tests/unit/lib_check.h"

#define RULES_PATH "deploy/bounce-rules.conf"

/* ---- names ---- */

static void test_names(void **state)
{
	(void)state;
	static const char *const reasons[] = {
	    "userunknown",   "hostunknown",     "hasmoved",        "mailboxfull",
	    "suspend",       "filtered",        "systemfull",      "systemerror",
	    "networkerror",  "expired",         "blocked",         "badreputation",
	    "spamdetected",  "virusdetected",   "policyviolation", "authfailure",
	    "requireptr",    "notcompliantrfc", "rejected",        "norelaying",
	    "securityerror", "failedstarttls",  "contenterror",    "syntaxerror",
	    "ratelimited",   "emailtoolarge",   "feedback",        "vacation",
	    "delivered",     "onhold",          "undefined",
	};
	check_size("reasons", "count", sizeof reasons / sizeof reasons[0], BOUNCE_REASON_COUNT);
	for (int i = 0; i < BOUNCE_REASON_COUNT; i++) {
		enum bounce_reason r;
		check_str(reasons[i], "name", bounce_reason_name((enum bounce_reason)i),
		          reasons[i]);
		int rc = bounce_reason_from_name(reasons[i], strlen(reasons[i]), &r);
		check_u64(reasons[i], "from_name rc", (uint64_t)rc, 0);
		check_u64(reasons[i], "from_name", (uint64_t)r, (uint64_t)i);
	}
	static const struct {
		const char *reason, *class;
	} classes[] = {
	    {"userunknown", "hard"},    {"hostunknown", "hard"},      {"hasmoved", "hard"},
	    {"mailboxfull", "soft"},    {"suspend", "soft"},          {"systemfull", "soft"},
	    {"systemerror", "soft"},    {"networkerror", "soft"},     {"expired", "soft"},
	    {"undefined", "soft"},      {"onhold", "soft"},           {"filtered", "soft"},
	    {"blocked", "block"},       {"badreputation", "block"},   {"spamdetected", "block"},
	    {"virusdetected", "block"}, {"policyviolation", "block"}, {"authfailure", "block"},
	    {"requireptr", "block"},    {"notcompliantrfc", "block"}, {"rejected", "block"},
	    {"norelaying", "block"},    {"securityerror", "block"},   {"failedstarttls", "block"},
	    {"contenterror", "block"},  {"ratelimited", "block"},     {"syntaxerror", "block"},
	    {"emailtoolarge", "block"}, {"feedback", "complaint"},    {"vacation", "ignore"},
	    {"delivered", "ignore"},
	};
	check_size("classes", "count", sizeof classes / sizeof classes[0], BOUNCE_REASON_COUNT);
	for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
		enum bounce_reason r;
		enum bounce_class c = BOUNCE_CLASS_COUNT;
		const char *n = classes[i].reason;
		if (bounce_reason_from_name(n, strlen(n), &r) != 0) {
			check_fail("%s: not a reason\n", n);
			continue;
		}
		check_str(n, "class", bounce_class_name(bounce_reason_class(r)), classes[i].class);
		int rc = bounce_class_from_name(classes[i].class, strlen(classes[i].class), &c);
		check_u64(n, "class from_name", (uint64_t)rc, 0);
		check_str(n, "class round trip", bounce_class_name(c), classes[i].class);
	}
	enum bounce_reason r;
	enum bounce_class c;
	check_u64("unknown reason", "rc", (uint64_t)bounce_reason_from_name("nosuch", 6, &r),
	          (uint64_t)-1);
	check_u64("prefix of a reason", "rc", (uint64_t)bounce_reason_from_name("user", 4, &r),
	          (uint64_t)-1);
	check_u64("reason in capitals", "rc",
	          (uint64_t)bounce_reason_from_name("USERUNKNOWN", 11, &r), (uint64_t)-1);
	check_u64("unknown class", "rc", (uint64_t)bounce_class_from_name("medium", 6, &c),
	          (uint64_t)-1);
	check_str("reason out of range", "name", bounce_reason_name(BOUNCE_REASON_COUNT),
	          "undefined");
	check_str("class out of range", "name", bounce_class_name(BOUNCE_CLASS_COUNT), "soft");
	check_done();
}

/* ---- rules format ---- */

struct format_case {
	const char *name;
	const char *text;
	const char *err; /* NULL: parses; else the whole error message */
	size_t rules;    /* rules when it parses */
};

static const struct format_case format_cases[] = {
    {"empty", "", NULL, 0},
    {"comments and blanks", "# a comment\n\n   \t\n  # indented comment\n", NULL, 0},
    {"one of each", "status 5.1.1 userunknown\ncode 5xx undefined\ntext \"a b\" blocked\n", NULL,
     3},
    {"trailing comment", "status 5.1.1 userunknown # RFC 3463\n", NULL, 1},
    {"class given", "text spam spamdetected soft\n", NULL, 1},
    {"qualifiers", "text \"x y\" code=55x status=5.*.* userunknown hard\n", NULL, 1},
    {"CRLF lines", "code 5xx undefined\r\ncode 4xx onhold\r\n", NULL, 2},
    {"no final newline", "code 5xx undefined", NULL, 1},
    {"status stars", "status *.*.* undefined\n", NULL, 1},
    {"status three digits", "status 5.123.456 undefined\n", NULL, 1},
    {"escaped quote and star", "text \"say \\\"hi\\\" \\* now\" blocked\n", NULL, 1},
    {"class line", "class filtered hard\n", NULL, 0},
    {"unknown keyword", "\nregex x blocked\n",
     "t.conf:2: a rule starts with status, code, text or class", 0},
    {"unknown reason", "status 5.1.1 nosuchreason\n", "t.conf:1: unknown reason", 0},
    {"unknown class", "status 5.1.1 userunknown medium\n", "t.conf:1: unknown class", 0},
    {"words after the class", "status 5.1.1 userunknown hard extra\n",
     "t.conf:1: unexpected words after the class", 0},
    {"no reason", "status 5.1.1\n", "t.conf:1: a rule needs a pattern and a reason", 0},
    {"qualifier but no reason", "text x code=5xx\n", "t.conf:1: a rule needs a reason", 0},
    {"bad status", "status 5.1 userunknown\n",
     "t.conf:1: a status pattern is C.S.D, each a number (1 to 3 digits) or *", 0},
    {"status four digits", "status 5.1000.1 userunknown\n",
     "t.conf:1: a status pattern is C.S.D, each a number (1 to 3 digits) or *", 0},
    {"status class 3", "status 3.1.1 userunknown\n", "t.conf:1: a status class is 2, 4 or 5", 0},
    {"bad code", "code 5x userunknown\n",
     "t.conf:1: a code pattern is three characters, each a digit or x", 0},
    {"code letter", "code 5a0 userunknown\n",
     "t.conf:1: a code pattern is three characters, each a digit or x", 0},
    {"code first digit 6", "code 6xx userunknown\n",
     "t.conf:1: a reply code starts with 2, 3, 4 or 5", 0},
    {"unterminated quote", "text \"abc blocked\n", "t.conf:1: unterminated quote", 0},
    {"quote glued", "text \"abc\"blocked\n",
     "t.conf:1: a quoted pattern must be followed by a space", 0},
    {"empty pattern", "text \"\" blocked\n", "t.conf:1: empty pattern", 0},
    {"only stars", "text \"**\" blocked\n", "t.conf:1: empty pattern", 0},
    {"same condition twice", "text a code=5xx code=4xx blocked\n",
     "t.conf:1: the same condition twice", 0},
    {"code twice", "code 5xx code=4xx blocked\n", "t.conf:1: the same condition twice", 0},
    {"too many words", "text a code=5xx status=5.1.1 b c d e f g\n", "t.conf:1: too many words", 0},
    {"class line short", "class filtered\n", "t.conf:1: class takes a reason and a class", 0},
    {"class line bad reason", "class nosuch hard\n", "t.conf:1: unknown reason", 0},
    {"NUL octet", "code 5xx undefined\ntext \"a\0b\" blocked\n", "t.conf:2: NUL octet", 0},
    {"control octet", "text \"a\x01b\" blocked\n", "t.conf:1: control octet in pattern", 0},
    {"error on line 3 after good lines", "code 5xx undefined\n# c\nbogus\n",
     "t.conf:3: a rule starts with status, code, text or class", 0},
};

static void test_rules_format(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof format_cases / sizeof format_cases[0]; i++) {
		const struct format_case *c = &format_cases[i];
		char err[256] = "";
		size_t len = strlen(c->text);
		if (strcmp(c->name, "NUL octet") == 0)
			len = sizeof "code 5xx undefined\ntext \"a\0b\" blocked\n" - 1;
		struct bounce_rules *r =
		    bounce_rules_parse("t.conf", c->text, len, err, sizeof err);
		if (c->err == NULL) {
			if (r == NULL)
				check_fail("%s: got error \"%s\", want success\n", c->name, err);
			else
				check_size(c->name, "rules", bounce_rules_count(r), c->rules);
		} else {
			if (r != NULL)
				check_fail("%s: parsed, want error \"%s\"\n", c->name, c->err);
			else
				check_str(c->name, "error", err, c->err);
		}
		bounce_rules_free(r);
	}
	check_done();
}

/* Lines longer than the limit, patterns longer than the limit, more rules than the limit. */
static void test_rules_limits(void **state)
{
	(void)state;
	char err[256];
	size_t big = (BOUNCE_RULES_MAX + 1) * 20;
	char *text = malloc(big);
	assert_non_null(text);

	/* a pattern of exactly BOUNCE_PATTERN_MAX - 1 octets (+ its end mark) fits; one more not */
	for (size_t n = BOUNCE_PATTERN_MAX - 1; n <= BOUNCE_PATTERN_MAX; n++) {
		size_t o = (size_t)snprintf(text, big, "text \"");
		memset(text + o, 'a', n);
		o += n;
		o += (size_t)snprintf(text + o, big - o, "\" blocked\n");
		struct bounce_rules *r = bounce_rules_parse("t", text, o, err, sizeof err);
		if (n < BOUNCE_PATTERN_MAX && r == NULL)
			check_fail("pattern of %zu: got error %s, want success\n", n, err);
		if (n == BOUNCE_PATTERN_MAX) {
			if (r != NULL)
				check_fail("pattern of %zu: parsed, want an error\n", n);
			else
				check_str("pattern too long", "error", err,
				          "t:1: pattern too long");
		}
		bounce_rules_free(r);
	}

	/* a line of BOUNCE_RULE_LINE_MAX + 1 octets */
	memset(text, ' ', BOUNCE_RULE_LINE_MAX + 1);
	memcpy(text, "# long", 6);
	text[BOUNCE_RULE_LINE_MAX + 1] = '\n';
	struct bounce_rules *r =
	    bounce_rules_parse("t", text, BOUNCE_RULE_LINE_MAX + 2, err, sizeof err);
	if (r != NULL)
		check_fail("long line: parsed, want an error\n");
	else
		check_str("long line", "error", err, "t:1: line too long");
	bounce_rules_free(r);

	/* BOUNCE_RULES_MAX rules fit; one more does not */
	size_t o = 0;
	for (int i = 0; i < BOUNCE_RULES_MAX; i++)
		o += (size_t)snprintf(text + o, big - o, "code 5xx undefined\n");
	r = bounce_rules_parse("t", text, o, err, sizeof err);
	check_size("BOUNCE_RULES_MAX rules", "count", bounce_rules_count(r), BOUNCE_RULES_MAX);
	bounce_rules_free(r);
	o += (size_t)snprintf(text + o, big - o, "code 4xx onhold\n");
	r = bounce_rules_parse("t", text, o, err, sizeof err);
	if (r != NULL)
		check_fail("too many rules: parsed, want an error\n");
	else
		check_str("too many rules", "error", err, "t:4097: too many rules");
	bounce_rules_free(r);
	free(text);

	r = bounce_rules_load("/nonexistent/bounce.conf", err, sizeof err);
	if (r != NULL)
		check_fail("missing file: loaded\n");
	else
		check_str("missing file", "error", err,
		          "/nonexistent/bounce.conf: No such file or directory");
	bounce_rules_free(r);
	bounce_rules_free(NULL);
	check_done();
}

/* ---- evaluation ---- */

struct eval_case {
	const char *name;
	int code;
	const char *enhanced;
	const char *text;
	const char *reason;
	const char *class;
	unsigned line; /* of the rule in eval_rules; 0: none matched */
};

static const char eval_rules[] = "text \"listed*spamhaus\" blocked\n"                  /* 1 */
                                 "text \" rbl \" blocked\n"                            /* 2 */
                                 "text \"mailbox unavailable\" code=55x userunknown\n" /* 3 */
                                 "text \"over quota\" status=4.*.* mailboxfull hard\n" /* 4 */
                                 "status *.1.1 userunknown\n"                          /* 5 */
                                 "status 5.7.* policyviolation\n"                      /* 6 */
                                 "text \"x\\*y\" contenterror\n"                       /* 7 */
                                 "code 550 undefined hard\n"                           /* 8 */
                                 "code 5xx undefined\n"                                /* 9 */
                                 "class onhold ignore\n"                               /* 10 */
                                 "code 4xx onhold\n";                                  /* 11 */

static const struct eval_case eval_cases[] = {
    {"star pattern", 550, "5.1.1", "Client LISTED at zen.SpamHaus.org", "blocked", "block", 1},
    {"star pattern in order only", 550, "5.1.1", "spamhaus says listed", "userunknown", "hard", 5},
    {"word with spaces at the start", 554, "", "RBL check failed", "blocked", "block", 2},
    {"word with spaces at the end", 554, "", "failed: rbl", "blocked", "block", 2},
    {"word inside another is not it", 554, "", "verbally", "undefined", "soft", 9},
    {"whitespace runs fold", 554, "", "in   the\t\r\n rbl\n", "blocked", "block", 2},
    {"qualifier holds", 550, "", "Mailbox   Unavailable", "userunknown", "hard", 3},
    {"qualifier fails", 450, "", "mailbox unavailable", "onhold", "ignore", 11},
    {"status qualifier and class", 452, "4.2.2", "over quota", "mailboxfull", "hard", 4},
    {"status qualifier fails", 552, "5.2.2", "over quota", "undefined", "soft", 9},
    {"status wildcard class", 450, "4.1.1", "whatever", "userunknown", "hard", 5},
    {"status from the text", 550, "", "sorry (#5.1.1)", "userunknown", "hard", 5},
    {"status in an IP is not one", 550, "", "from 192.5.1.1 host", "undefined", "hard", 8},
    {"status given beats the text", 550, "5.7.1", "(#5.1.1)", "policyviolation", "block", 6},
    {"escaped star is literal", 550, "", "a x*y b", "contenterror", "block", 7},
    {"escaped star is not a wildcard", 550, "", "a xzy b", "undefined", "hard", 8},
    {"code exact", 550, "", "nothing known", "undefined", "hard", 8},
    {"code class", 551, "", "nothing known", "undefined", "soft", 9},
    {"class line changes the default", 421, "", "nothing", "onhold", "ignore", 11},
    {"unknown code takes the status class", 0, "5.9.9", "nothing", "undefined", "soft", 9},
    {"unknown code and no status", 0, "", "nothing", "undefined", "soft", 0},
    {"2xx matches nothing here", 250, "2.0.0", "ok", "undefined", "soft", 0},
    {"NUL in text is a space", 554, "", "a\0rbl\0b", "blocked", "block", 2},
};

static void test_rules_eval(void **state)
{
	(void)state;
	char err[256];
	struct bounce_rules *r =
	    bounce_rules_parse("eval", eval_rules, sizeof eval_rules - 1, err, sizeof err);
	if (r == NULL)
		fail_msg("eval rules: %s", err);
	for (size_t i = 0; i < sizeof eval_cases / sizeof eval_cases[0]; i++) {
		const struct eval_case *c = &eval_cases[i];
		struct bounce_verdict v;
		size_t tl = strlen(c->text);
		if (strcmp(c->name, "NUL in text is a space") == 0)
			tl = 7;
		int rc = bounce_classify(r, c->code, c->enhanced, c->text, tl, &v);
		check_str(c->name, "reason", bounce_reason_name(v.reason), c->reason);
		check_str(c->name, "class", bounce_class_name(v.class), c->class);
		check_u64(c->name, "line", v.rule_line, c->line);
		check_str(c->name, "file", v.rule_file, c->line > 0 ? "eval" : "");
		check_u64(c->name, "rc", (uint64_t)rc, c->line > 0 ? 0 : (uint64_t)-1);
	}
	bounce_rules_free(r);

	struct bounce_verdict v;
	int rc = bounce_classify(NULL, 550, "5.1.1", "x", 1, &v);
	check_u64("no rules", "rc", (uint64_t)rc, (uint64_t)-1);
	check_str("no rules", "reason", bounce_reason_name(v.reason), "undefined");
	check_done();
}

/* A user file added first wins; its class lines too; a failed add leaves the set as it was. */
static void test_rules_order(void **state)
{
	(void)state;
	char err[256];
	static const char user[] = "text \"user unknown\" mailboxfull\nclass userunknown soft\n";
	static const char shipped[] = "text \"user unknown\" userunknown\n"
	                              "status 5.1.1 userunknown\nclass userunknown hard\n";
	struct bounce_rules *r = bounce_rules_new();
	assert_non_null(r);
	assert_int_equal(
	    bounce_rules_add_text(r, "user.conf", user, sizeof user - 1, err, sizeof err), 0);
	assert_int_equal(
	    bounce_rules_add_text(r, "shipped.conf", shipped, sizeof shipped - 1, err, sizeof err),
	    0);
	struct bounce_verdict v;
	bounce_classify(r, 550, "5.1.1", "User unknown", 12, &v);
	check_str("user rule first", "reason", bounce_reason_name(v.reason), "mailboxfull");
	check_str("user rule first", "file", v.rule_file, "user.conf");
	check_u64("user rule first", "line", v.rule_line, 1);
	bounce_classify(r, 550, "5.1.1", "no such person", 14, &v);
	check_str("shipped rule", "reason", bounce_reason_name(v.reason), "userunknown");
	check_str("shipped rule", "class (user's class line wins)", bounce_class_name(v.class),
	          "soft");
	check_str("shipped rule", "file", v.rule_file, "shipped.conf");
	check_u64("shipped rule", "line", v.rule_line, 2);

	static const char bad[] = "code 4xx onhold\nclass onhold block\nnonsense\n";
	assert_int_equal(bounce_rules_add_text(r, "bad.conf", bad, sizeof bad - 1, err, sizeof err),
	                 -1);
	check_str("failed add", "error", err,
	          "bad.conf:3: a rule starts with status, code, text or class");
	check_size("failed add", "rules kept", bounce_rules_count(r), 3);
	static const char good[] = "code 4xx onhold\n";
	assert_int_equal(
	    bounce_rules_add_text(r, "good.conf", good, sizeof good - 1, err, sizeof err), 0);
	bounce_classify(r, 450, "", "x", 1, &v);
	check_str("after a failed add", "reason", bounce_reason_name(v.reason), "onhold");
	check_str("after a failed add", "class line rolled back", bounce_class_name(v.class),
	          "soft");
	check_str("after a failed add", "file", v.rule_file, "good.conf");
	bounce_rules_free(r);
	check_done();
}

/* ---- bounce_reply_split ---- */

struct split_case {
	const char *in;
	int code;
	const char *enhanced;
	const char *text;
};

static const struct split_case split_cases[] = {
    {"550 5.1.1 <a@example.com>: User unknown", 550, "5.1.1", "<a@example.com>: User unknown"},
    {"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
     "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
     "550 5.1.1 unnecessary spaces.",
     550, "5.1.1",
     "The email account that you tried to reach does not exist. Please try double-checking the "
     "recipient's email address for typos or unnecessary spaces."},
    {"550-Verification failed for <a@example.org>\n550-Unrouteable address\n550 Sender verify "
     "failed",
     550, "", "Verification failed for <a@example.org> Unrouteable address Sender verify failed"},
    {"  421   4.7.0   Try   again  later  ", 421, "4.7.0", "Try again later"},
    {"5.1.1 no code", 0, "5.1.1", "no code"},
    {"no code at all", 0, "", "no code at all"},
    {"550 4.1.1 mismatched class", 550, "", "4.1.1 mismatched class"},
    {"550", 550, "", ""},
    {"", 0, "", ""},
    {"5500 not a code", 0, "", "5500 not a code"},
    {"550 text with 550 inside", 550, "", "text with 550 inside"},
    {"550 5.7.1 a 550 5.7.1 b 550 5.1.1 c", 550, "5.7.1", "a b 550 5.1.1 c"},
    {"550-a\n550 b 550 c", 550, "", "a b c"},
    {"550-5.1.1 a\n550 5.1.1 b 550 5.1.1", 550, "5.1.1", "a b"},
    {"smtp; 550 x", 0, "", "smtp; 550 x"},
    {"451 4.4.1\treply:\tread error", 451, "4.4.1", "reply: read error"},
};

static void test_reply_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof split_cases / sizeof split_cases[0]; i++) {
		const struct split_case *c = &split_cases[i];
		int code = -1;
		char enh[SMTP_ENHANCED_MAX + 1];
		char text[512];
		const char *name = c->in[0]
		                       ? check_show(c->in, strlen(c->in) < 40 ? strlen(c->in) : 40)
		                       : "(empty)";
		size_t n = bounce_reply_split(c->in, strlen(c->in), &code, enh, text, sizeof text);
		check_u64(name, "code", (uint64_t)code, (uint64_t)c->code);
		check_str(name, "enhanced", enh, c->enhanced);
		check_str(name, "text", text, c->text);
		check_size(name, "length", n, strlen(c->text));
	}
	/* cut to textmax - 1 */
	int code;
	char enh[SMTP_ENHANCED_MAX + 1];
	char small[6];
	size_t n = bounce_reply_split("550 abcdefghij", 14, &code, enh, small, sizeof small);
	check_str("cut", "text", small, "abcde");
	check_size("cut", "length", n, 5);
	check_done();
}

/* ---- the shipped rules over real replies ---- */

struct real_case {
	const char *who;
	const char *reply; /* as the client read it, continuation lines joined */
	const char *reason;
	const char *class;
};

static const struct real_case real_cases[] = {
    /* Gmail */
    {"gmail no such user",
     "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 "
     "double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. "
     "For more information, go to 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser "
     "a1si1234567qkb.12 - gsmtp",
     "userunknown", "hard"},
    {"gmail over quota temp",
     "452-4.2.2 The recipient's inbox is out of storage space. Please direct the 452-4.2.2 "
     "recipient to 452 4.2.2 https://support.google.com/mail/?p=OverQuotaTemp x1si - gsmtp",
     "mailboxfull", "soft"},
    {"gmail over quota perm",
     "552-5.2.2 The email account that you tried to reach is over quota. Please direct 552 5.2.2 "
     "the recipient to https://support.google.com/mail/?p=OverQuotaPerm",
     "mailboxfull", "soft"},
    {"gmail disabled",
     "550-5.2.1 The email account that you tried to reach is disabled. Learn more at 550 5.2.1 "
     "https://support.google.com/mail/?p=DisabledUser",
     "suspend", "soft"},
    {"gmail 4.7.28 dkim domain rate",
     "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating 421-4.7.28 "
     "from your DKIM domain [example.com 40]. To protect our users from 421-4.7.28 spam, mail "
     "sent from your domain has been temporarily rate limited.",
     "ratelimited", "block"},
    {"gmail 5.7.26 unauthenticated",
     "550-5.7.26 This mail has been blocked because the sender is unauthenticated. 550-5.7.26 "
     "Gmail requires all senders to authenticate with either SPF or DKIM. 550-5.7.26 "
     "Authentication results: DKIM = did not pass SPF [example.com] with ip: [192.0.2.10] = did "
     "not pass",
     "authfailure", "block"},
    {"gmail 5.7.26 dmarc",
     "550-5.7.26 Unauthenticated email from example.com is not accepted due to 550-5.7.26 "
     "domain's DMARC policy. Please contact the administrator of example.com domain",
     "authfailure", "block"},
    {"gmail 4.7.0 ip rate limited",
     "421-4.7.0 [192.0.2.10] Our system has detected an unusual rate of 421-4.7.0 unsolicited "
     "mail originating from your IP address. To protect our 421-4.7.0 users from spam, mail "
     "sent from your IP address has been temporarily 421 4.7.0 rate limited.",
     "ratelimited", "block"},
    {"gmail 4.7.27 spf",
     "421-4.7.27 Your email has been rate limited because SPF "
     "authentication didn't pass for this message.",
     "authfailure", "block"},
    {"gmail likely unsolicited",
     "550-5.7.1 [192.0.2.10] Our system has detected that this message is likely 550-5.7.1 "
     "unsolicited mail. To reduce the amount of spam sent to Gmail, this 550-5.7.1 message has "
     "been blocked.",
     "spamdetected", "block"},
    {"gmail low reputation",
     "550-5.7.1 [192.0.2.10] Our system has detected that this message is likely suspicious "
     "due to the very low reputation of the sending IP address. To best protect our users "
     "from spam, the message has been blocked.",
     "badreputation", "block"},
    {"gmail ptr",
     "550-5.7.25 [192.0.2.10] The IP address sending this message does not have a 550-5.7.25 "
     "PTR record setup, or the corresponding forward DNS entry does not 550 5.7.25 point to the "
     "sending IP.",
     "requireptr", "block"},
    {"gmail multiple from",
     "550-5.7.1 Messages with multiple addresses in From: header are not accepted.",
     "notcompliantrfc", "block"},
    {"gmail size", "552-5.2.3 Your message exceeded Google's message size limits.", "emailtoolarge",
     "block"},
    {"gmail receiving too fast",
     "450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 "
     "prevents additional messages from being delivered.",
     "ratelimited", "block"},
    {"gmail direct to mx from dynamic ip",
     "550-5.7.1 [192.0.2.10] The IP you're using to send mail is not authorized to 550-5.7.1 "
     "send email directly to our servers. Please use the SMTP relay at your 550-5.7.1 service "
     "provider instead.",
     "blocked", "block"},
    {"gmail security issue",
     "552-5.7.0 This message was blocked because its content presents a potential 552-5.7.0 "
     "security issue.",
     "virusdetected", "block"},
    /* Microsoft */
    {"outlook mailbox unavailable",
     "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302) "
     "[AM4PEPF00025F95.EURPRD83.prod.outlook.com]",
     "userunknown", "hard"},
    {"outlook spamhaus",
     "550 5.7.1 Service unavailable, Client host [192.0.2.10] blocked using Spamhaus. To "
     "request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.10 "
     "(AS3130). [BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]",
     "blocked", "block"},
    {"outlook S3150",
     "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your "
     "Internet service provider since part of their network is on our block list (S3150). You "
     "can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
     "blocked", "block"},
    {"outlook S3140",
     "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your "
     "Internet service provider since part of their network is on our block list (S3140).",
     "blocked", "block"},
    {"office365 DBEB access denied",
     "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
     "[DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
     "userunknown", "hard"},
    {"microsoft bare service unavailable", "550 5.7.1 Service unavailable", "blocked", "block"},
    {"exchange recipient not found",
     "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     "userunknown", "hard"},
    {"exchange quota",
     "554 5.2.2 mailbox full; "
     "STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
     "mailboxfull", "soft"},
    {"office365 banned ip",
     "550 5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal from this "
     "list please visit https://sender.office.com/",
     "blocked", "block"},
    {"outlook S77719",
     "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. "
     "(S77719) [VI1EUR04FT012.eop-eur04.prod.protection.outlook.com]",
     "ratelimited", "block"},
    {"office365 dmarc reject",
     "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification "
     "and has a DMARC policy of reject.",
     "authfailure", "block"},
    {"office365 nonexistent domain",
     "550 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent "
     "domain",
     "hostunknown", "hard"},
    {"office365 forwarding",
     "550 5.7.520 Access denied, Your organization does not allow external forwarding.",
     "policyviolation", "block"},
    {"exchange hop count", "554 5.4.14 Hop count exceeded - possible mail loop ATTR34",
     "networkerror", "soft"},
    {"exchange resources", "452 4.3.1 Insufficient system resources", "systemfull", "soft"},
    {"hotmail SC-001",
     "550 SC-001 (BAY004-MC4F49) Unfortunately, messages from 192.0.2.10 weren't sent. Please "
     "contact your Internet service provider since part of their network is on our block list.",
     "blocked", "block"},
    /* Yahoo and AOL */
    {"yahoo policy",
     "554 5.7.9 Message not accepted for policy reasons.  See "
     "https://senders.yahooinc.com/error-codes",
     "policyviolation", "block"},
    {"yahoo BL21",
     "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.10, because the ip is in "
     "Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
     "blocked", "block"},
    {"yahoo TSS04",
     "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume "
     "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
     "badreputation", "block"},
    {"yahoo unauthenticated",
     "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
     "requires all senders to authenticate with either SPF or DKIM.",
     "authfailure", "block"},
    {"yahoo no account",
     "554 delivery error: dd This user doesn't have a yahoo.com account (a@example.com) [0] - "
     "mta1050.mail.bf1.yahoo.com",
     "userunknown", "hard"},
    {"yahoo disabled",
     "554 30 Sorry, your message to a@example.com cannot be delivered. This "
     "mailbox is disabled (554.30).",
     "suspend", "soft"},
    {"yahoo per connection",
     "421 Max message per connection reached, closing transmission "
     "channel",
     "ratelimited", "block"},
    {"aol mailbox not found", "552 1 Requested mail action aborted, mailbox not found",
     "userunknown", "hard"},
    {"yahoo resources",
     "451 Resources temporarily unavailable. Please try again later "
     "[#4.16.1].",
     "systemerror", "soft"},
    {"yahoo TSS09",
     "553 5.7.2 [TSS09] All messages from 192.0.2.10 will be permanently "
     "deferred; Retrying will NOT succeed.",
     "blocked", "block"},
    /* Apple iCloud */
    {"icloud no user", "550 5.1.1 <a@example.com>: user does not exist", "userunknown", "hard"},
    {"icloud HM08",
     "554 5.7.1 [HM08] Message rejected due to local policy. Please visit "
     "https://support.apple.com/en-us/HT204137",
     "policyviolation", "block"},
    {"icloud CS01",
     "550 5.7.1 [CS01] Message rejected due to local policy. Please visit "
     "https://support.apple.com/en-us/HT204137",
     "policyviolation", "block"},
    {"icloud volume",
     "421 4.7.1 Messages to a@example.com deferred due to excessive volume. "
     "Try again later - https://support.apple.com/en-us/HT204137",
     "ratelimited", "block"},
    {"icloud quota", "552 5.2.2 <a@example.com>: user is over quota", "mailboxfull", "soft"},
    {"icloud dbl",
     "550 5.7.1 Your email was rejected due to having a domain present in the Spamhaus DBL -- "
     "see https://www.spamhaus.org/dbl/",
     "blocked", "block"},
    /* Comcast */
    {"comcast dnsbl",
     "554 resimta-po-01v.sys.comcast.net comcast 192.0.2.10 found on one or more DNSBLs, see "
     "http://postmaster.comcast.net/smtp-error-codes.php#BL000000",
     "blocked", "block"},
    {"comcast not our customer", "550 5.1.1 <a@example.com> Not our Customer", "userunknown",
     "hard"},
    {"comcast sessions",
     "421 resimta-h1p-028598.sys.comcast.net comcast 192.0.2.10 Too many sessions opened from "
     "192.0.2.10. Please see http://postmaster.comcast.net/smtp-error-codes.php#RL000001",
     "ratelimited", "block"},
    /* GMX, web.de */
    {"gmx mailbox unavailable", "550 Requested action not taken: mailbox unavailable",
     "userunknown", "hard"},
    {"gmx policy",
     "554-Transaction failed 554-Reject due to policy restrictions. 554 For explanation visit "
     "https://postmaster.gmx.net/en/case?c=hi&i=ip&v=192.0.2.10&r=1MxyzAB",
     "policyviolation", "block"},
    {"gmx block listed",
     "554-gmx.net (mxgmx104) Nemesis ESMTP Service not available 554-No SMTP service 554-IP "
     "address is block listed. 554 For explanation visit "
     "https://postmaster.gmx.net/en/case?c=r0201",
     "blocked", "block"},
    {"web.de storage",
     "550 Benutzer hat das Speichervolumen ueberschritten. / User has "
     "exhausted allowed storage space.",
     "mailboxfull", "soft"},
    {"gmx spf",
     "550 <a@example.com>: Reject due to SPF policy. The originating IP of the "
     "message is not permitted by the domain owner",
     "authfailure", "block"},
    /* Mail.ru */
    {"mail.ru no user",
     "550 Message was not accepted -- invalid mailbox. Local mailbox "
     "a@example.com is unavailable: user not found",
     "userunknown", "hard"},
    {"mail.ru disabled",
     "550 Message was not accepted -- invalid mailbox. Local mailbox "
     "a@example.com is unavailable: account is disabled",
     "suspend", "soft"},
    {"mail.ru spam",
     "550 spam message rejected. Please visit https://help.mail.ru/notspam-support/id?c=abc or "
     "report details to abuse@corp.mail.ru. Error code: 1A2B3C. ID: 00000000.",
     "spamdetected", "block"},
    /* Yandex */
    {"yandex no user", "550 5.7.1 No such user!", "userunknown", "hard"},
    {"yandex mailbox size", "552 5.2.2 Mailbox size limit exceeded", "mailboxfull", "soft"},
    {"yandex spam",
     "554 5.7.1 [2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc "
     "1688123456-abcdEF12",
     "spamdetected", "block"},
    /* Postfix */
    {"postfix local recipient table",
     "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient "
     "table",
     "userunknown", "hard"},
    {"postfix 450 user unknown is hard",
     "450 4.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient "
     "table",
     "userunknown", "hard"},
    {"postfix domain not found",
     "450 4.1.2 <a@example.invalid>: Recipient address rejected: Domain not found", "hostunknown",
     "hard"},
    {"postfix relay", "554 5.7.1 <a@example.com>: Relay access denied", "norelaying", "block"},
    {"postfix no hostname",
     "450 4.7.1 Client host rejected: cannot find your hostname, "
     "[192.0.2.10]",
     "requireptr", "block"},
    {"postfix zen",
     "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; "
     "https://www.spamhaus.org/query/ip/192.0.2.10",
     "blocked", "block"},
    {"5.1.1 but blocked using spamhaus",
     "550 5.1.1 <a@example.com>: Recipient address rejected: blocked using Spamhaus", "blocked",
     "block"},
    {"5.7.1 listed at zen",
     "550 5.7.1 <a@example.com>: Recipient address rejected: Rejected because 192.0.2.10 is "
     "listed at zen.spamhaus.org",
     "blocked", "block"},
    {"postfix mailbox full 452",
     "452 4.2.2 <a@example.com>: Recipient address rejected: Mailbox is full", "mailboxfull",
     "soft"},
    {"postgrey",
     "450 4.2.0 <a@example.com>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.com.html",
     "onhold", "soft"},
    {"postfix size", "552 5.3.4 Message size exceeds fixed limit", "emailtoolarge", "block"},
    {"postfix too many recipients", "452 4.5.3 Error: too many recipients", "ratelimited", "block"},
    {"postfix access denied",
     "554 5.7.1 <a@example.com>: Recipient address rejected: Access "
     "denied",
     "policyviolation", "block"},
    {"policyd-spf",
     "550 5.7.23 <a@example.com>: Recipient address rejected: Message rejected due to: SPF fail "
     "- not authorized. Please see "
     "http://www.openspf.net/Why?s=mfrom;id=bounce@example.org;ip=192.0.2.10;r=example.com",
     "authfailure", "block"},
    {"postfix helo",
     "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified "
     "hostname",
     "blocked", "block"},
    {"postfix sender domain",
     "550 5.1.8 <bounce@example.org>: Sender address rejected: Domain "
     "not found",
     "rejected", "block"},
    {"postfix connection timed out",
     "connect to mx.example.com[192.0.2.20]:25: Connection timed out", "networkerror", "soft"},
    /* Exim */
    {"exim unrouteable", "550 Unrouteable address", "hostunknown", "hard"},
    {"exim sender verify",
     "550-Verification failed for <bounce@example.org> 550-Unrouteable address 550 Sender "
     "verify failed",
     "rejected", "block"},
    {"exim retry time", "retry time not reached for any host after a long failure period",
     "expired", "soft"},
    {"exim no such user", "550 No Such User Here", "userunknown", "hard"},
    {"exim black list", "550 rejected because 192.0.2.10 is in a black list at zen.spamhaus.org",
     "blocked", "block"},
    {"exim admin prohibition", "550 Administrative prohibition", "policyviolation", "block"},
    {"exim quota", "552 Mailbox quota exceeded", "mailboxfull", "soft"},
    /* Sendmail */
    {"sendmail user unknown", "550 5.1.1 <a@example.com>... User unknown", "userunknown", "hard"},
    {"sendmail sender domain",
     "553 5.1.8 <bounce@example.org>... Domain of sender address "
     "bounce@example.org does not exist",
     "rejected", "block"},
    {"sendmail relaying denied", "550 5.7.1 <a@example.com>... Relaying denied", "norelaying",
     "block"},
    {"sendmail read error", "451 4.4.1 reply: read error from mx.example.com.", "networkerror",
     "soft"},
    {"sendmail service unavailable", "554 5.0.0 Service unavailable", "systemerror", "soft"},
    {"domino", "550 5.0.0 User a@example.com not listed in Domino Directory", "userunknown",
     "hard"},
    /* qmail */
    {"qmail no mailbox", "550 Sorry, no mailbox here by that name. (#5.1.1)", "userunknown",
     "hard"},
    {"qmail no host", "Sorry, I couldn't find any host named example.invalid. (#5.1.2)",
     "hostunknown", "hard"},
    {"qmail rcpthosts", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
     "norelaying", "block"},
    {"qmail no connection", "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)",
     "networkerror", "soft"},
    {"qmail giving up after user unknown",
     "192.0.2.20 does not like recipient. Remote host said: 550 5.1.1 <a@example.com>... User "
     "unknown Giving up on 192.0.2.20.",
     "userunknown", "hard"},
    /* protocol and others */
    {"insufficient storage", "452 4.3.1 Insufficient system storage", "systemfull", "soft"},
    {"starttls first", "530 5.7.0 Must issue a STARTTLS command first", "failedstarttls", "block"},
    {"auth credentials", "535 5.7.8 Authentication credentials invalid", "authfailure", "block"},
    {"moved", "550 5.1.6 Recipient has moved; forwarding address unknown", "hasmoved", "hard"},
    {"accepted", "250 2.0.0 Ok: queued as 4XyZ123", "delivered", "ignore"},
    {"mailbox disabled", "550 5.2.1 <a@example.com>: mailbox disabled, not accepting messages",
     "suspend", "soft"},
    {"421 closing", "421 4.3.2 Service not available, closing transmission channel", "systemerror",
     "soft"},
    {"bare 451", "451", "systemerror", "soft"},
    {"bare 450", "450", "onhold", "soft"},
    {"bare 550", "550", "undefined", "soft"},
    {"bad syntax", "501 5.5.4 Syntax error in parameters or arguments", "syntaxerror", "block"},
    {"invalid message", "554 5.6.0 Invalid message", "contenterror", "block"},
    {"virus", "550 5.7.1 Message contains a virus (Eicar-Test-Signature)", "virusdetected",
     "block"},
    {"expired 4.4.7", "Delivery time expired (status 4.4.7)", "expired", "soft"},
    {"null mx", "556 5.1.10 Recipient address has null MX", "hostunknown", "hard"},
    {"filtered by recipient", "550 5.7.1 The recipient has blocked your address", "filtered",
     "soft"},
};

static void test_shipped_rules(void **state)
{
	(void)state;
	char err[256];
	struct bounce_rules *r = bounce_rules_load(RULES_PATH, err, sizeof err);
	if (r == NULL)
		fail_msg("%s", err);
	if (bounce_rules_count(r) < 300)
		check_fail("shipped rules: got %zu rules, want at least 300\n",
		           bounce_rules_count(r));
	size_t ok = 0, n = sizeof real_cases / sizeof real_cases[0];
	for (size_t i = 0; i < n; i++) {
		const struct real_case *c = &real_cases[i];
		int code;
		char enh[SMTP_ENHANCED_MAX + 1];
		char text[BOUNCE_TEXT_MAX];
		size_t tl =
		    bounce_reply_split(c->reply, strlen(c->reply), &code, enh, text, sizeof text);
		struct bounce_verdict v;
		bounce_classify(r, code, enh, text, tl, &v);
		const char *got = bounce_reason_name(v.reason);
		const char *got_class = bounce_class_name(v.class);
		if (strcmp(got, c->reason) != 0 || strcmp(got_class, c->class) != 0)
			check_fail("%s: got %s/%s (%s:%u), want %s/%s\n", c->who, got, got_class,
			           v.rule_file, v.rule_line, c->reason, c->class);
		else
			ok++;
	}
	print_message("shipped rules: %zu rules, %zu of %zu replies classified as expected\n",
	              bounce_rules_count(r), ok, n);
	if (n < 60)
		check_fail("real_cases: got %zu rows, want at least 60\n", n);
	bounce_rules_free(r);
	check_done();
}

/* A long text costs rules x text: check it stays bounded (the test would time out if not). */
static void test_classify_bounded(void **state)
{
	(void)state;
	char err[256];
	struct bounce_rules *r = bounce_rules_load(RULES_PATH, err, sizeof err);
	if (r == NULL)
		fail_msg("%s", err);
	size_t big = 1 << 20;
	char *text = malloc(big);
	assert_non_null(text);
	for (size_t i = 0; i < big; i++)
		text[i] = "ab *x"[i % 5];
	struct bounce_verdict v;
	for (int i = 0; i < 200; i++)
		bounce_classify(r, 550, "", text, big, &v);
	check_str("1 MiB of noise", "reason", bounce_reason_name(v.reason), "undefined");
	memcpy(text + BOUNCE_TEXT_MAX + 10, "user unknown", 12);
	bounce_classify(r, 550, "", text, big, &v);
	check_str("past BOUNCE_TEXT_MAX", "reason", bounce_reason_name(v.reason), "undefined");
	memcpy(text + 100, "user unknown", 12);
	bounce_classify(r, 550, "", text, big, &v);
	check_str("within BOUNCE_TEXT_MAX", "reason", bounce_reason_name(v.reason), "userunknown");
	free(text);
	bounce_rules_free(r);
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),         cmocka_unit_test(test_rules_format),
	    cmocka_unit_test(test_rules_limits),  cmocka_unit_test(test_rules_eval),
	    cmocka_unit_test(test_rules_order),   cmocka_unit_test(test_reply_split),
	    cmocka_unit_test(test_shipped_rules), cmocka_unit_test(test_classify_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
