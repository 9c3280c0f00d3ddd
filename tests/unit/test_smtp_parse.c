/*
 * test_smtp_parse.c: table-driven unit tests of relay/smtp_parse.c (command split, MAIL and
 * RCPT paths and parameters, HELO/EHLO argument). Every case that fails prints
 * "case: field got X, want Y"; the test fails at the end if any case did.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/smtp_parse.h"
#include "tests/unit/lib_check.h"

/* A string literal with its length, so that cases may hold NUL octets. */
#define BYTES(s) s, sizeof(s) - 1
#define IN(s)    .arg = s, .len = sizeof(s) - 1
/* An accepted path: mailbox, length of its local part, lowercased domain. */
#define OK_PATH(m, l, d) .status = SMTP_PARSE_OK, .mailbox = m, .local_len = l, .domain = d

static void expect_status(const char *name, enum smtp_parse_status got, enum smtp_parse_status want)
{
	check_str(name, "status", smtp_parse_status_name(got), smtp_parse_status_name(want));
}

/* ---- smtp_command_parse ---- */

static const char *verb_name(enum smtp_verb v)
{
	static const char *names[] = {"UNKNOWN", "HELO", "EHLO", "MAIL",     "RCPT",
	                              "DATA",    "BDAT", "RSET", "NOOP",     "QUIT",
	                              "VRFY",    "EXPN", "HELP", "STARTTLS", "AUTH"};
	if ((size_t)v < sizeof(names) / sizeof(names[0]))
		return names[v];
	return "?";
}

struct command_case {
	const char *name;
	const char *line;
	size_t len;
	enum smtp_parse_status status;
	enum smtp_verb verb;
	const char *arg;
};

static const struct command_case command_cases[] = {
    {"ehlo", BYTES("EHLO mail.example.com"), SMTP_PARSE_OK, SMTP_VERB_EHLO, "mail.example.com"},
    {"lowercase verb", BYTES("ehlo x"), SMTP_PARSE_OK, SMTP_VERB_EHLO, "x"},
    {"mixed case verb", BYTES("eHlO x"), SMTP_PARSE_OK, SMTP_VERB_EHLO, "x"},
    {"trailing space trimmed", BYTES("EHLO x "), SMTP_PARSE_OK, SMTP_VERB_EHLO, "x"},
    {"trailing blanks trimmed", BYTES("EHLO x \t "), SMTP_PARSE_OK, SMTP_VERB_EHLO, "x"},
    {"two spaces after verb", BYTES("EHLO  x"), SMTP_PARSE_OK, SMTP_VERB_EHLO, "x"},
    {"helo", BYTES("HELO x"), SMTP_PARSE_OK, SMTP_VERB_HELO, "x"},
    {"mail keeps FROM:", BYTES("MAIL FROM:<a@b.c> SIZE=10"), SMTP_PARSE_OK, SMTP_VERB_MAIL,
     "FROM:<a@b.c> SIZE=10"},
    {"rcpt", BYTES("rcpt to:<a@b.c>"), SMTP_PARSE_OK, SMTP_VERB_RCPT, "to:<a@b.c>"},
    {"data", BYTES("DATA"), SMTP_PARSE_OK, SMTP_VERB_DATA, ""},
    {"bdat", BYTES("BDAT 100 LAST"), SMTP_PARSE_OK, SMTP_VERB_BDAT, "100 LAST"},
    {"rset", BYTES("RSET"), SMTP_PARSE_OK, SMTP_VERB_RSET, ""},
    {"noop with arg", BYTES("NOOP hello there"), SMTP_PARSE_OK, SMTP_VERB_NOOP, "hello there"},
    {"quit", BYTES("QUIT"), SMTP_PARSE_OK, SMTP_VERB_QUIT, ""},
    {"quit trailing space", BYTES("QUIT "), SMTP_PARSE_OK, SMTP_VERB_QUIT, ""},
    {"vrfy", BYTES("VRFY a"), SMTP_PARSE_OK, SMTP_VERB_VRFY, "a"},
    {"expn", BYTES("EXPN a"), SMTP_PARSE_OK, SMTP_VERB_EXPN, "a"},
    {"help", BYTES("HELP"), SMTP_PARSE_OK, SMTP_VERB_HELP, ""},
    {"starttls", BYTES("StartTLS"), SMTP_PARSE_OK, SMTP_VERB_STARTTLS, ""},
    {"auth", BYTES("AUTH PLAIN dGVzdA=="), SMTP_PARSE_OK, SMTP_VERB_AUTH, "PLAIN dGVzdA=="},
    {"empty line", BYTES(""), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"only spaces", BYTES("   "), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"unknown verb", BYTES("XCLIENT NAME=x"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"unknown with hyphen", BYTES("X-FOO bar"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"known verb prefix", BYTES("EHLOX y"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"short prefix", BYTES("EHL x"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"verb of 17 letters", BYTES("STARTTLSSTARTTLSS"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"digits", BYTES("123 x"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"leading space", BYTES(" EHLO x"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"tls client hello", BYTES("\x16\x03\x01\x02"), SMTP_PARSE_OK, SMTP_VERB_UNKNOWN, ""},
    {"tab after verb", BYTES("EHLO\tx"), SMTP_PARSE_SYNTAX, SMTP_VERB_EHLO, ""},
    {"colon after verb", BYTES("MAIL:FROM:<a@b.c>"), SMTP_PARSE_SYNTAX, SMTP_VERB_MAIL, ""},
    {"dot after verb", BYTES("DATA."), SMTP_PARSE_SYNTAX, SMTP_VERB_DATA, ""},
    {"NUL in argument", BYTES("NOOP a\0b"), SMTP_PARSE_SYNTAX, SMTP_VERB_UNKNOWN, ""},
    {"bare CR", BYTES("NOOP\rQUIT"), SMTP_PARSE_SYNTAX, SMTP_VERB_UNKNOWN, ""},
    {"bare LF", BYTES("NOOP\nQUIT"), SMTP_PARSE_SYNTAX, SMTP_VERB_UNKNOWN, ""},
    {"CR at end", BYTES("QUIT\r"), SMTP_PARSE_SYNTAX, SMTP_VERB_UNKNOWN, ""},
};

static void test_command_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(command_cases) / sizeof(command_cases[0]); i++) {
		const struct command_case *c = &command_cases[i];
		struct smtp_command cmd;
		enum smtp_parse_status st = smtp_command_parse(c->line, c->len, &cmd);
		expect_status(c->name, st, c->status);
		check_str(c->name, "verb", verb_name(cmd.verb), verb_name(c->verb));
		if (cmd.arg == NULL) {
			check_fail("%s: arg got NULL, want non-NULL\n", c->name);
			continue;
		}
		if (st != SMTP_PARSE_OK)
			continue;
		char arg[256];
		size_t n = cmd.arg_len < sizeof(arg) - 1 ? cmd.arg_len : sizeof(arg) - 1;
		memcpy(arg, cmd.arg, n);
		arg[n] = '\0';
		check_str(c->name, "arg", arg, c->arg);
		/* A non-empty arg borrows from the line. */
		if (cmd.arg_len > 0 &&
		    (cmd.arg < c->line || cmd.arg + cmd.arg_len > c->line + c->len)) {
			check_fail("%s: arg got a pointer outside the line, want inside\n",
			           c->name);
		}
	}
	check_done();
}

/* ---- helpers for long addresses ---- */

/* A domain of n octets: labels of "a" (at most 50 long) joined by dots. */
static void domain_make(char *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (i % 50 == 49 && i + 1 < n) ? '.' : 'a';
	out[n] = '\0';
}

static void repeat_make(char *out, char c, size_t n)
{
	memset(out, c, n);
	out[n] = '\0';
}

/* ---- smtp_mail_parse ---- */

struct mail_case {
	const char *name;
	const char *arg;
	size_t len;
	enum smtp_parse_status status;
	/* checked only when status is SMTP_PARSE_OK */
	bool is_null;
	const char *mailbox;
	size_t local_len;
	const char *domain;
	bool utf8;
	bool has_size;
	uint64_t size;
	enum smtp_body_type body;
	bool smtputf8;
};

static const struct mail_case mail_cases[] = {
    {.name = "simple",
     IN("FROM:<user@example.com>"),
     OK_PATH("user@example.com", 4, "example.com")},
    {.name = "domain lowercased, mailbox as sent",
     IN("FROM:<User@Example.COM>"),
     OK_PATH("User@Example.COM", 4, "example.com")},
    {.name = "lowercase from", IN("from:<a@b.c>"), OK_PATH("a@b.c", 1, "b.c")},
    {.name = "one space after colon", IN("FROM: <a@b.c>"), OK_PATH("a@b.c", 1, "b.c")},
    {.name = "two spaces after colon", IN("FROM:  <a@b.c>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "null path",
     IN("FROM:<>"),
     .status = SMTP_PARSE_OK,
     .is_null = true,
     .mailbox = "",
     .domain = ""},
    {.name = "null path with size",
     IN("FROM:<> SIZE=0"),
     .status = SMTP_PARSE_OK,
     .is_null = true,
     .mailbox = "",
     .domain = "",
     .has_size = true,
     .size = 0},
    {.name = "single label domain",
     IN("FROM:<root@localhost>"),
     OK_PATH("root@localhost", 4, "localhost")},
    {.name = "no angle brackets", IN("FROM:a@b.c"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "nothing after FROM:", IN("FROM:"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "missing FROM:", IN("<a@b.c>"), .status = SMTP_PARSE_SYNTAX},
    {.name = "TO: instead of FROM:", IN("TO:<a@b.c>"), .status = SMTP_PARSE_SYNTAX},
    {.name = "FROM without colon", IN("FROM <a@b.c>"), .status = SMTP_PARSE_SYNTAX},
    {.name = "empty argument", IN(""), .status = SMTP_PARSE_SYNTAX},
    {.name = "unclosed bracket", IN("FROM:<a@b.c"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "junk after path", IN("FROM:<a@b.c>x"), .status = SMTP_PARSE_SYNTAX},
    {.name = "double bracket", IN("FROM:<<a@b.c>>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "dotted local part", IN("FROM:<a.b.c@d.e>"), OK_PATH("a.b.c@d.e", 5, "d.e")},
    {.name = "all atext specials",
     IN("FROM:<!#$%&'*+-/=?^_`{|}~@x.org>"),
     OK_PATH("!#$%&'*+-/=?^_`{|}~@x.org", 19, "x.org")},
    {.name = "leading dot", IN("FROM:<.a@b.c>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "trailing dot", IN("FROM:<a.@b.c>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "double dot", IN("FROM:<a..b@c.d>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "space in local part", IN("FROM:<a b@c.d>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "parenthesis in local part", IN("FROM:<a(b)@c.d>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "no at sign", IN("FROM:<abc>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "postmaster refused in MAIL", IN("FROM:<postmaster>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "two at signs", IN("FROM:<a@b@c.d>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "empty domain", IN("FROM:<a@>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "quoted local part",
     IN("FROM:<\"john doe\"@example.com>"),
     OK_PATH("\"john doe\"@example.com", 10, "example.com")},
    {.name = "quoted pair", IN("FROM:<\"a\\\"b\"@x.org>"), OK_PATH("\"a\\\"b\"@x.org", 6, "x.org")},
    {.name = "quoted > and @", IN("FROM:<\"a>@b\"@x.org>"), OK_PATH("\"a>@b\"@x.org", 6, "x.org")},
    {.name = "empty quoted string", IN("FROM:<\"\"@x.org>"), OK_PATH("\"\"@x.org", 2, "x.org")},
    {.name = "unterminated quote", IN("FROM:<\"abc@x.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "quote then atom", IN("FROM:<\"a\"b@x.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "control in quoted string", IN("FROM:<\"a\x01\"@x.org>"), .status = SMTP_PARSE_SYNTAX},
    {.name = "DEL in local part", IN("FROM:<a\x7f@b.c>"), .status = SMTP_PARSE_SYNTAX},
    {.name = "NUL after path", IN("FROM:<a@b.c>\0"), .status = SMTP_PARSE_SYNTAX},
    {.name = "tab before parameter", IN("FROM:<a@b.c>\tSIZE=1"), .status = SMTP_PARSE_SYNTAX},
    {.name = "hyphen inside label", IN("FROM:<a@x-y.org>"), OK_PATH("a@x-y.org", 1, "x-y.org")},
    {.name = "label leading hyphen", IN("FROM:<a@-x.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "label trailing hyphen", IN("FROM:<a@x-.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "empty label", IN("FROM:<a@x..org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "domain trailing dot", IN("FROM:<a@x.org.>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "domain leading dot", IN("FROM:<a@.x.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "underscore in domain", IN("FROM:<a@x_y.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv4 literal",
     IN("FROM:<a@[192.0.2.1]>"),
     OK_PATH("a@[192.0.2.1]", 1, "[192.0.2.1]")},
    {.name = "ipv4 octet 256", IN("FROM:<a@[192.0.2.256]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv4 three parts", IN("FROM:<a@[192.0.2]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv4 five parts", IN("FROM:<a@[192.0.2.1.5]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv4 four digits", IN("FROM:<a@[192.0.2.1234]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv4 empty part", IN("FROM:<a@[192..2.1]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "empty literal", IN("FROM:<a@[]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv6 literal",
     IN("FROM:<a@[IPv6:2001:DB8::1]>"),
     OK_PATH("a@[IPv6:2001:DB8::1]", 1, "[ipv6:2001:db8::1]")},
    {.name = "ipv6 tag lowercase",
     IN("FROM:<a@[ipv6:::1]>"),
     OK_PATH("a@[ipv6:::1]", 1, "[ipv6:::1]")},
    {.name = "ipv6 with ipv4 tail",
     IN("FROM:<a@[IPv6:::ffff:192.0.2.1]>"),
     OK_PATH("a@[IPv6:::ffff:192.0.2.1]", 1, "[ipv6:::ffff:192.0.2.1]")},
    {.name = "ipv6 two double colons",
     IN("FROM:<a@[IPv6:2001::db8::1]>"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv6 without tag", IN("FROM:<a@[2001:db8::1]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "ipv6 empty", IN("FROM:<a@[IPv6:]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "general literal", IN("FROM:<a@[x-tag:abc]>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "literal unclosed", IN("FROM:<a@[192.0.2.1>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "literal then label", IN("FROM:<a@[192.0.2.1].org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "source route dropped",
     IN("FROM:<@a.org,@b.org:user@c.org>"),
     OK_PATH("user@c.org", 4, "c.org")},
    {.name = "one-hop route dropped",
     IN("FROM:<@a.org:user@c.org>"),
     OK_PATH("user@c.org", 4, "c.org")},
    {.name = "route with semicolon", IN("FROM:<@a.org;user@c.org>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "route hop without at",
     IN("FROM:<@a.org,b.org:user@c.org>"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "route without mailbox", IN("FROM:<@a.org:>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "route only", IN("FROM:<@a.org>"), .status = SMTP_PARSE_BAD_PATH},
    /* parameters */
    {.name = "size",
     IN("FROM:<a@b.c> SIZE=12345"),
     OK_PATH("a@b.c", 1, "b.c"),
     .has_size = true,
     .size = 12345},
    {.name = "size keyword lowercase",
     IN("FROM:<a@b.c> size=1"),
     OK_PATH("a@b.c", 1, "b.c"),
     .has_size = true,
     .size = 1},
    {.name = "size uint64 max",
     IN("FROM:<a@b.c> SIZE=18446744073709551615"),
     OK_PATH("a@b.c", 1, "b.c"),
     .has_size = true,
     .size = UINT64_MAX},
    {.name = "size 20 digits with zeros",
     IN("FROM:<a@b.c> SIZE=00000000000000000001"),
     OK_PATH("a@b.c", 1, "b.c"),
     .has_size = true,
     .size = 1},
    {.name = "size overflow",
     IN("FROM:<a@b.c> SIZE=18446744073709551616"),
     .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size 99999999999999999999",
     IN("FROM:<a@b.c> SIZE=99999999999999999999"),
     .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size 21 digits",
     IN("FROM:<a@b.c> SIZE=000000000000000000001"),
     .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size empty", IN("FROM:<a@b.c> SIZE="), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size without value", IN("FROM:<a@b.c> SIZE"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size negative", IN("FROM:<a@b.c> SIZE=-1"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size plus sign", IN("FROM:<a@b.c> SIZE=+1"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size with unit", IN("FROM:<a@b.c> SIZE=10k"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "size twice", IN("FROM:<a@b.c> SIZE=1 SIZE=1"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "body 8bitmime",
     IN("FROM:<a@b.c> BODY=8BITMIME"),
     OK_PATH("a@b.c", 1, "b.c"),
     .body = SMTP_BODY_8BITMIME},
    {.name = "body 7bit lowercase",
     IN("FROM:<a@b.c> body=7bit"),
     OK_PATH("a@b.c", 1, "b.c"),
     .body = SMTP_BODY_7BIT},
    {.name = "body binarymime not offered",
     IN("FROM:<a@b.c> BODY=BINARYMIME"),
     .status = SMTP_PARSE_BAD_PARAM},
    {.name = "body unknown", IN("FROM:<a@b.c> BODY=8BIT"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "body empty", IN("FROM:<a@b.c> BODY="), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "body twice", IN("FROM:<a@b.c> BODY=7BIT BODY=7BIT"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "smtputf8", IN("FROM:<a@b.c> SMTPUTF8"), OK_PATH("a@b.c", 1, "b.c"), .smtputf8 = true},
    {.name = "smtputf8 with value",
     IN("FROM:<a@b.c> SMTPUTF8=yes"),
     .status = SMTP_PARSE_BAD_PARAM},
    {.name = "smtputf8 twice",
     IN("FROM:<a@b.c> SMTPUTF8 smtputf8"),
     .status = SMTP_PARSE_BAD_PARAM},
    {.name = "auth null", IN("FROM:<a@b.c> AUTH=<>"), OK_PATH("a@b.c", 1, "b.c")},
    {.name = "auth xtext", IN("FROM:<a@b.c> AUTH=user+40example.com"), OK_PATH("a@b.c", 1, "b.c")},
    {.name = "auth short hex", IN("FROM:<a@b.c> AUTH=a+4"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "auth bad hex", IN("FROM:<a@b.c> AUTH=a+zz"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "auth equals in value", IN("FROM:<a@b.c> AUTH=a=b"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "auth empty", IN("FROM:<a@b.c> AUTH="), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "auth without value", IN("FROM:<a@b.c> AUTH"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "auth twice", IN("FROM:<a@b.c> AUTH=<> AUTH=<>"), .status = SMTP_PARSE_BAD_PARAM},
    {.name = "all parameters",
     IN("FROM:<a@b.c> SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=<>"),
     OK_PATH("a@b.c", 1, "b.c"),
     .has_size = true,
     .size = 100,
     .body = SMTP_BODY_8BITMIME,
     .smtputf8 = true},
    {.name = "several spaces",
     IN("FROM:<a@b.c>  SIZE=1   BODY=7BIT  "),
     OK_PATH("a@b.c", 1, "b.c"),
     .has_size = true,
     .size = 1,
     .body = SMTP_BODY_7BIT},
    {.name = "dsn ret not offered",
     IN("FROM:<a@b.c> RET=FULL"),
     .status = SMTP_PARSE_UNKNOWN_PARAM},
    {.name = "unknown keyword alone", IN("FROM:<a@b.c> XFOO"), .status = SMTP_PARSE_UNKNOWN_PARAM},
    {.name = "unknown after known",
     IN("FROM:<a@b.c> SIZE=1 ENVID=x"),
     .status = SMTP_PARSE_UNKNOWN_PARAM},
    {.name = "keyword leading hyphen", IN("FROM:<a@b.c> -FOO=1"), .status = SMTP_PARSE_SYNTAX},
    {.name = "keyword underscore", IN("FROM:<a@b.c> SI_ZE=1"), .status = SMTP_PARSE_SYNTAX},
    {.name = "empty keyword", IN("FROM:<a@b.c> =1"), .status = SMTP_PARSE_SYNTAX},
    /* SMTPUTF8, RFC 6531 */
    {.name = "utf8 without smtputf8",
     IN("FROM:<j\xc3\xb6rg@ex\xc3\xa4mple.org>"),
     .status = SMTP_PARSE_NEED_UTF8},
    {.name = "utf8 with smtputf8 after path",
     IN("FROM:<j\xc3\xb6rg@EX\xc3\x84MPLE.org> SMTPUTF8"),
     OK_PATH("j\xc3\xb6rg@EX\xc3\x84MPLE.org", 5, "ex\xc3\x84mple.org"),
     .utf8 = true,
     .smtputf8 = true},
    {.name = "utf8 quoted local part",
     IN("FROM:<\"\xc3\xa9 t\xc3\xa9\"@x.org> SMTPUTF8"),
     OK_PATH("\"\xc3\xa9 t\xc3\xa9\"@x.org", 8, "x.org"),
     .utf8 = true,
     .smtputf8 = true},
    {.name = "utf8 four octets",
     IN("FROM:<\xf0\x9f\x93\xa7@x.org> SMTPUTF8"),
     OK_PATH("\xf0\x9f\x93\xa7@x.org", 4, "x.org"),
     .utf8 = true,
     .smtputf8 = true},
    {.name = "utf8 in route only",
     IN("FROM:<@r\xc3\xa4.org:a@b.c>"),
     .status = SMTP_PARSE_NEED_UTF8},
    {.name = "utf8 bad param wins",
     IN("FROM:<j\xc3\xb6@x.org> FOO=1"),
     .status = SMTP_PARSE_UNKNOWN_PARAM},
    {.name = "invalid octet ff", IN("FROM:<a\xff@x.org> SMTPUTF8"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "lone continuation", IN("FROM:<a\x80@x.org> SMTPUTF8"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "overlong slash",
     IN("FROM:<a\xc0\xaf@x.org> SMTPUTF8"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "overlong three octets",
     IN("FROM:<a\xe0\x80\xaf@x.org> SMTPUTF8"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "surrogate", IN("FROM:<a\xed\xa0\x80@x.org> SMTPUTF8"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "above U+10FFFF",
     IN("FROM:<a\xf4\x90\x80\x80@x.org> SMTPUTF8"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "truncated sequence",
     IN("FROM:<a\xc3@x.org> SMTPUTF8"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "truncated at end of domain",
     IN("FROM:<a@x.org\xe2\x82> SMTPUTF8"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "utf8 in quoted pair",
     IN("FROM:<\"\\\xc3\xa9\"@x.org> SMTPUTF8"),
     .status = SMTP_PARSE_BAD_PATH},
};

static void mail_case_check(const struct mail_case *c)
{
	struct smtp_mail_args args;
	enum smtp_parse_status st = smtp_mail_parse(c->arg, c->len, &args);

	expect_status(c->name, st, c->status);
	if (st != SMTP_PARSE_OK || c->status != SMTP_PARSE_OK)
		return;
	check_u64(c->name, "is_null", args.path.is_null, c->is_null);
	check_str(c->name, "mailbox", args.path.mailbox, c->mailbox);
	check_u64(c->name, "local_len", args.path.local_len, c->local_len);
	check_str(c->name, "domain_lower", args.path.domain_lower, c->domain);
	check_u64(c->name, "utf8", args.path.utf8, c->utf8);
	check_u64(c->name, "has_size", args.has_size, c->has_size);
	check_u64(c->name, "size", args.size, c->size);
	check_u64(c->name, "body", args.body, c->body);
	check_u64(c->name, "smtputf8", args.smtputf8, c->smtputf8);
}

static void test_mail_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++)
		mail_case_check(&mail_cases[i]);
	check_done();
}

/* Limits of RFC 5321 4.5.3.1, built at run time. */
struct limit_case {
	const char *name;
	size_t route_len; /* 0: no route, else "@<domain of route_len>:" */
	size_t local_len;
	size_t domain_len;
	enum smtp_parse_status status;
};

static const struct limit_case limit_cases[] = {
    {"local part of 64", 0, 64, 10, SMTP_PARSE_OK},
    {"local part of 65", 0, 65, 10, SMTP_PARSE_TOO_LONG},
    {"path of 256", 0, 1, 252, SMTP_PARSE_OK},
    {"path of 257", 0, 1, 253, SMTP_PARSE_TOO_LONG},
    {"path of 256, local 64", 0, 64, 189, SMTP_PARSE_OK},
    {"path of 257, local 64", 0, 64, 190, SMTP_PARSE_TOO_LONG},
    {"domain of 255", 0, 1, 255, SMTP_PARSE_TOO_LONG},
    {"domain of 256", 0, 1, 256, SMTP_PARSE_TOO_LONG},
    {"domain of 1000", 0, 1, 1000, SMTP_PARSE_TOO_LONG},
    {"route counts in path", 100, 10, 150, SMTP_PARSE_TOO_LONG},
    {"short route", 10, 10, 150, SMTP_PARSE_OK},
};

static void test_mail_limits(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
		const struct limit_case *c = &limit_cases[i];
		char route[1200], local[1100], domain[1100], arg[4000], mailbox[2300];
		struct smtp_mail_args args;
		route[0] = '\0';
		if (c->route_len > 0) {
			char route_domain[1100];
			domain_make(route_domain, c->route_len);
			snprintf(route, sizeof(route), "@%s:", route_domain);
		}
		repeat_make(local, 'l', c->local_len);
		domain_make(domain, c->domain_len);
		snprintf(arg, sizeof(arg), "FROM:<%s%s@%s>", route, local, domain);
		snprintf(mailbox, sizeof(mailbox), "%s@%s", local, domain);
		enum smtp_parse_status st = smtp_mail_parse(arg, strlen(arg), &args);
		expect_status(c->name, st, c->status);
		if (st == SMTP_PARSE_OK && c->status == SMTP_PARSE_OK) {
			check_str(c->name, "mailbox", args.path.mailbox, mailbox);
			check_str(c->name, "domain_lower", args.path.domain_lower, domain);
		}
	}

	/* RFC 1035 labels: 63 octets at most. */
	char label[70], arg[120];
	struct smtp_mail_args args;
	repeat_make(label, 'a', 63);
	snprintf(arg, sizeof(arg), "FROM:<a@%s.org>", label);
	expect_status("label of 63", smtp_mail_parse(arg, strlen(arg), &args), SMTP_PARSE_OK);
	repeat_make(label, 'a', 64);
	snprintf(arg, sizeof(arg), "FROM:<a@%s.org>", label);
	expect_status("label of 64", smtp_mail_parse(arg, strlen(arg), &args), SMTP_PARSE_BAD_PATH);
	check_done();
}

/* ---- smtp_rcpt_parse ---- */

struct rcpt_case {
	const char *name;
	const char *arg;
	size_t len;
	bool smtputf8;
	enum smtp_parse_status status;
	const char *mailbox; /* checked when status is SMTP_PARSE_OK */
	size_t local_len;
	const char *domain;
	bool utf8;
};

static const struct rcpt_case rcpt_cases[] = {
    {.name = "simple", IN("TO:<user@example.com>"), OK_PATH("user@example.com", 4, "example.com")},
    {.name = "lowercase to, space", IN("to: <a@B.C>"), OK_PATH("a@B.C", 1, "b.c")},
    {.name = "trailing spaces", IN("TO:<a@b.c>   "), OK_PATH("a@b.c", 1, "b.c")},
    {.name = "null refused", IN("TO:<>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "postmaster", IN("TO:<postmaster>"), OK_PATH("postmaster", 10, "")},
    {.name = "postmaster any case", IN("TO:<PostMaster>"), OK_PATH("PostMaster", 10, "")},
    {.name = "postmaster with domain",
     IN("TO:<postmaster@x.org>"),
     OK_PATH("postmaster@x.org", 10, "x.org")},
    {.name = "postmaster behind route",
     IN("TO:<@a.org:postmaster>"),
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "quoted postmaster", IN("TO:<\"postmaster\">"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "other local part alone", IN("TO:<abuse>"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "route dropped", IN("TO:<@relay.org:u@x.org>"), OK_PATH("u@x.org", 1, "x.org")},
    {.name = "notify not offered",
     IN("TO:<a@b.c> NOTIFY=NEVER"),
     .status = SMTP_PARSE_UNKNOWN_PARAM},
    {.name = "orcpt not offered",
     IN("TO:<a@b.c> ORCPT=rfc822;a@b.c"),
     .status = SMTP_PARSE_UNKNOWN_PARAM},
    {.name = "malformed keyword", IN("TO:<a@b.c> =x"), .status = SMTP_PARSE_SYNTAX},
    {.name = "junk after path", IN("TO:<a@b.c>x"), .status = SMTP_PARSE_SYNTAX},
    {.name = "FROM: instead of TO:", IN("FROM:<a@b.c>"), .status = SMTP_PARSE_SYNTAX},
    {.name = "no brackets", IN("TO:a@b.c"), .status = SMTP_PARSE_BAD_PATH},
    {.name = "bare LF", IN("TO:<a@b.c>\n"), .status = SMTP_PARSE_SYNTAX},
    {.name = "utf8 without smtputf8", IN("TO:<\xc3\xbc@x.org>"), .status = SMTP_PARSE_NEED_UTF8},
    {.name = "utf8 with smtputf8",
     IN("TO:<\xc3\xbc@X.org>"),
     .smtputf8 = true,
     OK_PATH("\xc3\xbc@X.org", 2, "x.org"),
     .utf8 = true},
    {.name = "utf8 domain with smtputf8",
     IN("TO:<u@b\xc3\xbc\x63her.de>"),
     .smtputf8 = true,
     OK_PATH("u@b\xc3\xbc\x63her.de", 1, "b\xc3\xbc\x63her.de"),
     .utf8 = true},
    {.name = "ascii with smtputf8", IN("TO:<a@b.c>"), .smtputf8 = true, OK_PATH("a@b.c", 1, "b.c")},
    {.name = "malformed utf8 with smtputf8",
     IN("TO:<\xc3\x28@x.org>"),
     .smtputf8 = true,
     .status = SMTP_PARSE_BAD_PATH},
    {.name = "local part of 65",
     IN("TO:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.org>"),
     .status = SMTP_PARSE_TOO_LONG},
    {.name = "local part of 64",
     IN("TO:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.org>"),
     OK_PATH("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.org", 64,
             "x.org")},
};

static void test_rcpt_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		struct smtp_rcpt_args args;
		enum smtp_parse_status st = smtp_rcpt_parse(c->arg, c->len, c->smtputf8, &args);
		expect_status(c->name, st, c->status);
		if (st != SMTP_PARSE_OK || c->status != SMTP_PARSE_OK)
			continue;
		check_u64(c->name, "is_null", args.path.is_null, false);
		check_str(c->name, "mailbox", args.path.mailbox, c->mailbox);
		check_u64(c->name, "local_len", args.path.local_len, c->local_len);
		check_str(c->name, "domain_lower", args.path.domain_lower, c->domain);
		check_u64(c->name, "utf8", args.path.utf8, c->utf8);
	}
	check_done();
}

/* ---- smtp_helo_check ---- */

struct helo_case {
	const char *name;
	const char *arg;
	size_t len;
	enum smtp_parse_status status;
};

static const struct helo_case helo_cases[] = {
    {"domain", BYTES("mail.example.com"), SMTP_PARSE_OK},
    {"bare host name", BYTES("localhost"), SMTP_PARSE_OK},
    {"underscore tolerated", BYTES("my_host"), SMTP_PARSE_OK},
    {"trailing dot tolerated", BYTES("mail.example.com."), SMTP_PARSE_OK},
    {"ipv4 literal", BYTES("[192.0.2.1]"), SMTP_PARSE_OK},
    {"ipv6 literal", BYTES("[IPv6:2001:db8::1]"), SMTP_PARSE_OK},
    {"utf8 name", BYTES("b\xc3\xbc\x63her.example"), SMTP_PARSE_OK},
    {"bad ipv4 literal", BYTES("[300.1.1.1]"), SMTP_PARSE_SYNTAX},
    {"bad ipv6 literal", BYTES("[IPv6:zz::1]"), SMTP_PARSE_SYNTAX},
    {"literal then text", BYTES("[192.0.2.1]x"), SMTP_PARSE_SYNTAX},
    {"unclosed literal", BYTES("[192.0.2.1"), SMTP_PARSE_SYNTAX},
    {"empty", BYTES(""), SMTP_PARSE_SYNTAX},
    {"space inside", BYTES("a b"), SMTP_PARSE_SYNTAX},
    {"tab", BYTES("a\tb"), SMTP_PARSE_SYNTAX},
    {"NUL", BYTES("a\0b"), SMTP_PARSE_SYNTAX},
    {"DEL", BYTES("a\x7f"), SMTP_PARSE_SYNTAX},
    {"CR", BYTES("a\r"), SMTP_PARSE_SYNTAX},
    {"malformed utf8", BYTES("a\xff"), SMTP_PARSE_SYNTAX},
    {"overlong utf8", BYTES("a\xc1\x81"), SMTP_PARSE_SYNTAX},
    /* octets that would change the meaning of the Received: header the name goes into */
    {"semicolon", BYTES("a;b.example"), SMTP_PARSE_SYNTAX},
    {"open paren", BYTES("x(y.example"), SMTP_PARSE_SYNTAX},
    {"close paren", BYTES("x)y.example"), SMTP_PARSE_SYNTAX},
    {"angle", BYTES("x<y"), SMTP_PARSE_SYNTAX},
    {"quote", BYTES("x\"y"), SMTP_PARSE_SYNTAX},
    {"backslash", BYTES("x\\y"), SMTP_PARSE_SYNTAX},
    {"at", BYTES("user@host"), SMTP_PARSE_SYNTAX},
};

static void test_helo_check(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(helo_cases) / sizeof(helo_cases[0]); i++) {
		const struct helo_case *c = &helo_cases[i];
		expect_status(c->name, smtp_helo_check(c->arg, c->len), c->status);
	}

	char name[300];
	repeat_make(name, 'h', 255);
	expect_status("name of 255", smtp_helo_check(name, 255), SMTP_PARSE_OK);
	repeat_make(name, 'h', 256);
	expect_status("name of 256", smtp_helo_check(name, 256), SMTP_PARSE_SYNTAX);
	check_done();
}

static void test_status_names(void **state)
{
	(void)state;
	const enum smtp_parse_status all[] = {
	    SMTP_PARSE_OK,        SMTP_PARSE_SYNTAX,    SMTP_PARSE_BAD_PATH,
	    SMTP_PARSE_TOO_LONG,  SMTP_PARSE_NEED_UTF8, SMTP_PARSE_UNKNOWN_PARAM,
	    SMTP_PARSE_BAD_PARAM,
	};
	const char *want[] = {"ok",        "syntax",        "bad_path", "too_long",
	                      "need_utf8", "unknown_param", "bad_param"};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		check_str(want[i], "name", smtp_parse_status_name(all[i]), want[i]);
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_command_parse), cmocka_unit_test(test_mail_parse),
	    cmocka_unit_test(test_mail_limits),   cmocka_unit_test(test_rcpt_parse),
	    cmocka_unit_test(test_helo_check),    cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
