/*
 * test_header.c: table-driven unit tests of relay/header.c: the header field iterator
 * (folding, malformed lines, end of the header section) and the address-list parser
 * (RFC 5322 3.4 with obsolete forms, RFC 6532 UTF-8). A failing check prints
 * "case: field got X, want Y".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/header.h"
#include "tests/unit/lib_check.h"

#define MSG(s) .msg = s, .len = sizeof(s) - 1
#define VAL(s) .value = s, .len = sizeof(s) - 1

/* ---- header_next ---- */

static const char *header_status_name(enum header_status s)
{
	switch (s) {
	case HEADER_FIELD:
		return "field";
	case HEADER_END:
		return "end";
	case HEADER_MALFORMED:
		return "malformed";
	}
	return "?";
}

struct want_field {
	const char *name;
	const char *value;
};

struct iter_case {
	const char *name;
	const char *msg;
	size_t len;
	struct want_field fields[4]; /* until a NULL name */
	enum header_status last;     /* what follows the fields */
	const char *body;            /* msg from header_body_offset() on, when last is END */
};

static const struct iter_case iter_cases[] = {
    {"two fields and a body",
     MSG("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"),
     {{"From", " a@b"}, {"Subject", " hi"}},
     HEADER_END,
     "body\r\n"},
    {"folded field",
     MSG("Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n"),
     {{"Subject", " a\r\n b\r\n\tc"}, {"To", " x"}},
     HEADER_END,
     ""},
    {"no empty line", MSG("Subject: x\r\n"), {{"Subject", " x"}}, HEADER_END, ""},
    {"empty message", MSG(""), {{NULL, NULL}}, HEADER_END, ""},
    {"empty line only", MSG("\r\n"), {{NULL, NULL}}, HEADER_END, ""},
    {"empty header section", MSG("\r\nbody"), {{NULL, NULL}}, HEADER_END, "body"},
    {"empty value", MSG("A:\r\n\r\n"), {{"A", ""}}, HEADER_END, ""},
    {"colon in value", MSG("A: b:c\r\n\r\n"), {{"A", " b:c"}}, HEADER_END, ""},
    {"blank continuation line", MSG("A: b\r\n \r\n\r\nX"), {{"A", " b\r\n "}}, HEADER_END, "X"},
    {"body looks like a field", MSG("A: b\r\n\r\nC: d\r\n"), {{"A", " b"}}, HEADER_END, "C: d\r\n"},
    {"all ftext in name", MSG("!#~-_.$: v\r\n\r\n"), {{"!#~-_.$", " v"}}, HEADER_END, ""},
    {"first line a continuation", MSG(" x\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"first line a tab continuation",
     MSG("\tx: y\r\n\r\n"),
     {{NULL, NULL}},
     HEADER_MALFORMED,
     NULL},
    {"no colon", MSG("Subject x\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"mbox From line", MSG("From a@b Mon Jan 1\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"space before colon (obsolete, refused)",
     MSG("Subject : x\r\n\r\n"),
     {{NULL, NULL}},
     HEADER_MALFORMED,
     NULL},
    {"empty name", MSG(": x\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"control in name", MSG("Sub\x01ject: x\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"DEL in name", MSG("Sub\x7fject: x\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"utf8 in name", MSG("S\xc3\xbc: x\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"last line without CRLF", MSG("Subject: x"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"second line without CRLF", MSG("A: b\r\nC: d"), {{"A", " b"}}, HEADER_MALFORMED, NULL},
    {"name without colon at end", MSG("A: b\r\nCd"), {{"A", " b"}}, HEADER_MALFORMED, NULL},
    {"continuation without CRLF", MSG("A: b\r\n c"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"bare LF in value", MSG("A: b\nc\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"bare CR in value", MSG("A: b\rc\r\n\r\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"CR at end of value", MSG("A: b\r"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"LF line ends", MSG("A: b\n\n"), {{NULL, NULL}}, HEADER_MALFORMED, NULL},
    {"bare CR as the empty line", MSG("A: b\r\n\rX"), {{"A", " b"}}, HEADER_MALFORMED, NULL},
    {"bare LF as the empty line", MSG("A: b\r\n\nX"), {{"A", " b"}}, HEADER_MALFORMED, NULL},
    {"CR at the very end", MSG("A: b\r\n\r"), {{"A", " b"}}, HEADER_MALFORMED, NULL},
};

static void iter_case_check(const struct iter_case *c)
{
	struct header_iter it;
	struct header_field f;
	enum header_status st;
	size_t n = 0;
	size_t expected_offset = 0;
	char field[64];

	header_iter_init(&it, c->msg, c->len);
	while ((st = header_next(&it, &f)) == HEADER_FIELD) {
		snprintf(field, sizeof(field), "field %zu", n);
		if (n >= 4 || c->fields[n].name == NULL) {
			check_fail("%s: %s got \"%s\", want none\n", c->name, field,
			           check_show(f.name, f.name_len));
			return;
		}
		check_bytes(c->name, "name", f.name, f.name_len, c->fields[n].name,
		            strlen(c->fields[n].name));
		check_bytes(c->name, "value", f.value, f.value_len, c->fields[n].value,
		            strlen(c->fields[n].value));
		/* Fields follow each other; each is name ":" value CRLF. */
		check_size(c->name, "offset", f.offset, expected_offset);
		check_size(c->name, "name position", (size_t)(f.name - c->msg), f.offset);
		check_size(c->name, "value position", (size_t)(f.value - c->msg),
		           f.offset + f.name_len + 1);
		check_size(c->name, "length", f.length, f.name_len + 1 + f.value_len + 2);
		expected_offset = f.offset + f.length;
		n++;
	}
	if (n < 4 && c->fields[n].name != NULL) {
		check_fail("%s: field %zu got none, want \"%s\"\n", c->name, n, c->fields[n].name);
	}
	check_str(c->name, "status", header_status_name(st), header_status_name(c->last));
	/* The iterator stays put: another call gives the same answer. */
	check_str(c->name, "status again", header_status_name(header_next(&it, &f)),
	          header_status_name(st));
	if (st == HEADER_END && c->last == HEADER_END) {
		size_t body = header_body_offset(&it);
		if (body > c->len) {
			check_fail("%s: body offset got %zu, want <= %zu\n", c->name, body, c->len);
			return;
		}
		check_bytes(c->name, "body", c->msg + body, c->len - body, c->body,
		            strlen(c->body));
	}
}

static void test_header_next(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(iter_cases) / sizeof(iter_cases[0]); i++)
		iter_case_check(&iter_cases[i]);
	check_done();
}

static void test_header_name_is(void **state)
{
	(void)state;
	static const struct {
		const char *field;
		const char *name;
		bool want;
	} cases[] = {
	    {"Subject", "subject", true},        {"Subject", "SUBJECT", true},
	    {"X-Mailer", "x-mailer", true},      {"Subject", "Subjec", false},
	    {"Subj", "Subject", false},          {"Received", "Received-SPF", false},
	    {"Received-SPF", "Received", false}, {"A", "B", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct header_field f = {cases[i].field, strlen(cases[i].field), "", 0, 0, 0};
		bool got = header_name_is(&f, cases[i].name);
		if (got != cases[i].want) {
			check_fail("%s vs %s: got %d, want %d\n", cases[i].field, cases[i].name,
			           got, cases[i].want);
		}
	}
	check_done();
}

/* ---- header_addresses_parse ---- */

static const char *addr_status_name(enum header_addr_status s)
{
	switch (s) {
	case HEADER_ADDR_OK:
		return "ok";
	case HEADER_ADDR_SYNTAX:
		return "syntax";
	case HEADER_ADDR_TOO_MANY:
		return "too_many";
	}
	return "?";
}

struct want_addr {
	const char *addr;
	size_t local_len;
	const char *domain;
};

struct addr_case {
	const char *name;
	const char *value;
	size_t len;
	size_t max; /* 0 in the table means 8 */
	bool max_zero;
	enum header_addr_status status;
	size_t count;
	struct want_addr addrs[4];
};

static const struct addr_case addr_cases[] = {
    {"bare addr-spec", VAL("user@example.com"), .count = 1,
     .addrs = {{"user@example.com", 4, "example.com"}}},
    {"leading space, domain lowercased", VAL(" User@Example.COM"), .count = 1,
     .addrs = {{"User@Example.COM", 4, "example.com"}}},
    {"display name", VAL("John Doe <john@x.org>"), .count = 1,
     .addrs = {{"john@x.org", 4, "x.org"}}},
    {"quoted display name with comma", VAL("\"Doe, John\" <john@x.org>"), .count = 1,
     .addrs = {{"john@x.org", 4, "x.org"}}},
    {"angle address alone", VAL("<john@x.org>"), .count = 1, .addrs = {{"john@x.org", 4, "x.org"}}},
    {"two addresses", VAL("a@b.c, d@e.f"), .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"mixed forms", VAL("\"Doe, John\" <john@x.org>, jane@y.org (Jane)"), .count = 2,
     .addrs = {{"john@x.org", 4, "x.org"}, {"jane@y.org", 4, "y.org"}}},
    {"comments everywhere", VAL("(c1) john (c2) @ (c3) x.org (c4)"), .count = 1,
     .addrs = {{"john@x.org", 4, "x.org"}}},
    {"comment in angle address", VAL("Joe <(c)joe(d)@(e)x.org(f)>"), .count = 1,
     .addrs = {{"joe@x.org", 3, "x.org"}}},
    {"nested comments", VAL("a@b.c (outer (inner (deep)) text)"), .count = 1,
     .addrs = {{"a@b.c", 1, "b.c"}}},
    {"escaped paren in comment", VAL("a@b.c (x \\) y)"), .count = 1,
     .addrs = {{"a@b.c", 1, "b.c"}}},
    {"folding", VAL("John\r\n Doe <john@x.org>,\r\n\tjane@y.org"), .count = 2,
     .addrs = {{"john@x.org", 4, "x.org"}, {"jane@y.org", 4, "y.org"}}},
    {"folding in a comment", VAL("a@b.c (x\r\n y)"), .count = 1, .addrs = {{"a@b.c", 1, "b.c"}}},
    {"tab after comma", VAL("a@b.c,\td@e.f"), .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"quoted local part", VAL("\"john doe\"@x.org"), .count = 1,
     .addrs = {{"\"john doe\"@x.org", 10, "x.org"}}},
    {"quoted local part, fold removed", VAL("\"john\r\n doe\"@x.org"), .count = 1,
     .addrs = {{"\"john doe\"@x.org", 10, "x.org"}}},
    {"quoted pair kept", VAL("\"a\\\"b\"@x.org"), .count = 1,
     .addrs = {{"\"a\\\"b\"@x.org", 6, "x.org"}}},
    {"obsolete spaces around dots", VAL("john . doe @ example . com"), .count = 1,
     .addrs = {{"john.doe@example.com", 8, "example.com"}}},
    {"obsolete quoted word in local part", VAL("\"a\".b@x.org"), .count = 1,
     .addrs = {{"\"a\".b@x.org", 5, "x.org"}}},
    {"domain literal", VAL("a@[192.0.2.1]"), .count = 1,
     .addrs = {{"a@[192.0.2.1]", 1, "[192.0.2.1]"}}},
    {"domain literal lowercased", VAL("<a@[IPv6:::1]>"), .count = 1,
     .addrs = {{"a@[IPv6:::1]", 1, "[ipv6:::1]"}}},
    {"group", VAL("Friends: a@b.c, \"X\" <d@e.f>;"), .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"undisclosed recipients", VAL("Undisclosed recipients:;"), .count = 0},
    {"empty group with spaces", VAL("undisclosed-recipients: ;"), .count = 0},
    {"empty group with commas", VAL("G: , ,;"), .count = 0},
    {"group then address", VAL("G: a@b.c;, d@e.f"), .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"group then comment", VAL("G: a@b.c; (c)"), .count = 1, .addrs = {{"a@b.c", 1, "b.c"}}},
    {"obsolete route", VAL("<@a.org,@b.org:user@c.org>"), .count = 1,
     .addrs = {{"user@c.org", 4, "c.org"}}},
    {"obsolete route with name", VAL("Joe <@a.org:joe@c.org>"), .count = 1,
     .addrs = {{"joe@c.org", 3, "c.org"}}},
    {"obsolete route, empty hops", VAL("<,@a.org,,@b.org:u@c.org>"), .count = 1,
     .addrs = {{"u@c.org", 1, "c.org"}}},
    {"obsolete phrase with dots", VAL("John Q. Public <jqp@x.org>"), .count = 1,
     .addrs = {{"jqp@x.org", 3, "x.org"}}},
    {"empty list elements", VAL(", a@b.c,, d@e.f,"), .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"utf8 display name", VAL("J\xc3\xb6rg <j@x.org>"), .count = 1,
     .addrs = {{"j@x.org", 1, "x.org"}}},
    {"utf8 address", VAL("j\xc3\xb6rg@B\xc3\xbc\x63her.de"), .count = 1,
     .addrs = {{"j\xc3\xb6rg@B\xc3\xbc\x63her.de", 5, "b\xc3\xbc\x63her.de"}}},
    {"utf8 quoted name", VAL("\"J\xc3\xb6rg\" <j@x.org>"), .count = 1,
     .addrs = {{"j@x.org", 1, "x.org"}}},
    {"utf8 comment", VAL("j@x.org (J\xc3\xb6rg)"), .count = 1, .addrs = {{"j@x.org", 1, "x.org"}}},
    {"exactly max", VAL("a@b.c, d@e.f"), .max = 2, .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"too many", VAL("a@b.c, d@e.f, g@h.i"), .max = 2, .status = HEADER_ADDR_TOO_MANY, .count = 2,
     .addrs = {{"a@b.c", 1, "b.c"}, {"d@e.f", 1, "e.f"}}},
    {"too many in a group", VAL("G: a@b.c, d@e.f;"), .max = 1, .status = HEADER_ADDR_TOO_MANY,
     .count = 1, .addrs = {{"a@b.c", 1, "b.c"}}},
    {"max 0", VAL("a@b.c"), .max_zero = true, .status = HEADER_ADDR_TOO_MANY, .count = 0},
    {"max 0, empty group", VAL("G:;"), .max_zero = true, .count = 0},
    {"too many, then a syntax error", VAL("a@b.c, d@e.f, g@h.i, x"), .max = 2,
     .status = HEADER_ADDR_SYNTAX},
    /* errors */
    {"empty value", VAL(""), .status = HEADER_ADDR_SYNTAX},
    {"only spaces", VAL("   "), .status = HEADER_ADDR_SYNTAX},
    {"only a comment", VAL("(nobody)"), .status = HEADER_ADDR_SYNTAX},
    {"only commas", VAL(" , ,"), .status = HEADER_ADDR_SYNTAX},
    {"missing at", VAL("user"), .status = HEADER_ADDR_SYNTAX},
    {"missing at in angle", VAL("John <user>"), .status = HEADER_ADDR_SYNTAX},
    {"missing at after a good one", VAL("a@b.c, user"), .status = HEADER_ADDR_SYNTAX},
    {"missing domain", VAL("user@"), .status = HEADER_ADDR_SYNTAX},
    {"missing local part", VAL("@x.org"), .status = HEADER_ADDR_SYNTAX},
    {"domain trailing dot", VAL("a@b."), .status = HEADER_ADDR_SYNTAX},
    {"local part leading dot", VAL(".a@b.c"), .status = HEADER_ADDR_SYNTAX},
    {"local part double dot", VAL("a..b@c.d"), .status = HEADER_ADDR_SYNTAX},
    {"two at signs", VAL("a@b@c"), .status = HEADER_ADDR_SYNTAX},
    {"two words in local part", VAL("john doe@x.org"), .status = HEADER_ADDR_SYNTAX},
    {"empty angle address", VAL("<>"), .status = HEADER_ADDR_SYNTAX},
    {"unclosed angle", VAL("John <a@b.c"), .status = HEADER_ADDR_SYNTAX},
    {"text after angle", VAL("<a@b.c> x"), .status = HEADER_ADDR_SYNTAX},
    {"two angle addresses", VAL("<a@b.c> <d@e.f>"), .status = HEADER_ADDR_SYNTAX},
    {"unquoted comma in name", VAL("Doe, John <a@b.c>"), .status = HEADER_ADDR_SYNTAX},
    {"semicolon outside a group", VAL("a@b.c; d@e.f"), .status = HEADER_ADDR_SYNTAX},
    {"phrase starts with a dot", VAL(". John <a@b.c>"), .status = HEADER_ADDR_SYNTAX},
    {"group without semicolon", VAL("G: a@b.c"), .status = HEADER_ADDR_SYNTAX},
    {"nested group", VAL("G: H: a@b.c;;"), .status = HEADER_ADDR_SYNTAX},
    {"group without a name", VAL(": a@b.c;"), .status = HEADER_ADDR_SYNTAX},
    {"group inside angle", VAL("<G: a@b.c;>"), .status = HEADER_ADDR_SYNTAX},
    {"route without colon", VAL("<@a.org user@c.org>"), .status = HEADER_ADDR_SYNTAX},
    {"route without domain", VAL("<@:user@c.org>"), .status = HEADER_ADDR_SYNTAX},
    {"unclosed comment", VAL("a@b.c (x"), .status = HEADER_ADDR_SYNTAX},
    {"stray close paren", VAL("a@b.c x)"), .status = HEADER_ADDR_SYNTAX},
    {"unclosed quote", VAL("\"John <a@b.c>"), .status = HEADER_ADDR_SYNTAX},
    {"unclosed literal", VAL("a@[1.2.3.4"), .status = HEADER_ADDR_SYNTAX},
    {"bracket inside literal", VAL("a@[1.2[3]"), .status = HEADER_ADDR_SYNTAX},
    {"literal in a display name", VAL("[x] <a@b.c>"), .status = HEADER_ADDR_SYNTAX},
    {"CRLF without WSP", VAL("a@b.c,\r\nd@e.f"), .status = HEADER_ADDR_SYNTAX},
    {"trailing CRLF", VAL("a@b.c\r\n"), .status = HEADER_ADDR_SYNTAX},
    {"bare LF", VAL("a@b.c,\n d@e.f"), .status = HEADER_ADDR_SYNTAX},
    {"bare CR in quotes", VAL("\"a\rb\"@c.d"), .status = HEADER_ADDR_SYNTAX},
    {"NUL", VAL("a@b.c\0"), .status = HEADER_ADDR_SYNTAX},
    {"control in quotes", VAL("\"a\x01\"@b.c"), .status = HEADER_ADDR_SYNTAX},
    {"control in comment", VAL("a@b.c (\x07)"), .status = HEADER_ADDR_SYNTAX},
    {"malformed utf8 in atom", VAL("j\xff@x.org"), .status = HEADER_ADDR_SYNTAX},
    {"overlong utf8 in comment", VAL("j@x.org (\xc0\xaf)"), .status = HEADER_ADDR_SYNTAX},
    {"surrogate in quotes", VAL("\"\xed\xa0\x80\" <a@b.c>"), .status = HEADER_ADDR_SYNTAX},
    {"truncated utf8 at the end", VAL("a@b.c\xc3"), .status = HEADER_ADDR_SYNTAX},
    {"backslash outside quotes", VAL("a\\b@c.d"), .status = HEADER_ADDR_SYNTAX},
};

static void addr_case_check(const struct addr_case *c, size_t max)
{
	struct header_address out[8];
	size_t count = 99;
	enum header_addr_status st = header_addresses_parse(c->value, c->len, out, max, &count);

	check_str(c->name, "status", addr_status_name(st), addr_status_name(c->status));
	if (st == HEADER_ADDR_SYNTAX || c->status == HEADER_ADDR_SYNTAX)
		return;
	check_size(c->name, "count", count, c->count);
	for (size_t i = 0; i < count && i < c->count && i < 4; i++) {
		char field[32];
		snprintf(field, sizeof(field), "addr %zu", i);
		check_str(c->name, field, out[i].addr, c->addrs[i].addr);
		snprintf(field, sizeof(field), "local_len %zu", i);
		check_size(c->name, field, out[i].local_len, c->addrs[i].local_len);
		snprintf(field, sizeof(field), "domain %zu", i);
		check_str(c->name, field, out[i].domain_lower, c->addrs[i].domain);
	}
}

static void test_addresses(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];
		size_t max = c->max_zero ? 0 : c->max != 0 ? c->max : 8;
		addr_case_check(c, max);
	}
	check_done();
}

/* Nested comments up to the depth limit, and the limits of struct header_address. */
static void test_address_limits(void **state)
{
	(void)state;
	char value[700];
	struct header_address out[2];
	size_t count;
	static const struct {
		const char *name;
		size_t depth;
		enum header_addr_status status;
	} depths[] = {
	    {"comments 32 deep", 32, HEADER_ADDR_OK},
	    {"comments 33 deep", 33, HEADER_ADDR_SYNTAX},
	    {"comments 200 deep", 200, HEADER_ADDR_SYNTAX},
	};
	for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
		size_t n = 0;
		memcpy(value + n, "a@b.c ", 6);
		n += 6;
		memset(value + n, '(', depths[i].depth);
		n += depths[i].depth;
		memset(value + n, ')', depths[i].depth);
		n += depths[i].depth;
		enum header_addr_status st = header_addresses_parse(value, n, out, 2, &count);
		check_str(depths[i].name, "status", addr_status_name(st),
		          addr_status_name(depths[i].status));
	}

	static const struct {
		const char *name;
		size_t local_len;
		size_t domain_len;
		enum header_addr_status status;
	} sizes[] = {
	    {"local part of 64", 64, 10, HEADER_ADDR_OK},
	    {"local part of 65", 65, 10, HEADER_ADDR_SYNTAX},
	    {"address of 254", 1, 252, HEADER_ADDR_OK},
	    {"address of 255", 1, 253, HEADER_ADDR_SYNTAX},
	    {"domain of 256", 1, 256, HEADER_ADDR_SYNTAX},
	    {"domain of 600", 1, 600, HEADER_ADDR_SYNTAX},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = 0;
		memset(value, 'l', sizes[i].local_len);
		n += sizes[i].local_len;
		value[n++] = '@';
		for (size_t k = 0; k < sizes[i].domain_len; k++)
			value[n++] = (k % 50 == 49 && k + 1 < sizes[i].domain_len) ? '.' : 'D';
		enum header_addr_status st = header_addresses_parse(value, n, out, 2, &count);
		check_str(sizes[i].name, "status", addr_status_name(st),
		          addr_status_name(sizes[i].status));
		if (st == HEADER_ADDR_OK) {
			check_bytes(sizes[i].name, "addr", out[0].addr, strlen(out[0].addr), value,
			            n);
			check_size(sizes[i].name, "domain length", strlen(out[0].domain_lower),
			           sizes[i].domain_len);
			check_size(sizes[i].name, "lowercase", out[0].domain_lower[0] == 'd', 1);
		}
	}
	check_done();
}

/* The iterator and the address parser together, as the relay uses them. */
static void test_fields_with_addresses(void **state)
{
	(void)state;
	static const char msg[] = "Received: from x\r\n"
	                          "From: \"Doe, Jane\" <Jane@Example.ORG>\r\n"
	                          "To: a@b.c,\r\n"
	                          " \"B\" <b@c.d>\r\n"
	                          "Subject: hi\r\n"
	                          "\r\n"
	                          "From: not@a.header\r\n";
	struct header_iter it;
	struct header_field f;
	struct header_address out[4];
	size_t count, from = 0, to = 0;

	header_iter_init(&it, msg, sizeof(msg) - 1);
	while (header_next(&it, &f) == HEADER_FIELD) {
		if (header_name_is(&f, "from")) {
			from++;
			check_str("from field", "status",
			          addr_status_name(
			              header_addresses_parse(f.value, f.value_len, out, 4, &count)),
			          "ok");
			check_size("from field", "count", count, 1);
			check_str("from field", "domain", out[0].domain_lower, "example.org");
		} else if (header_name_is(&f, "TO")) {
			to++;
			check_str("to field", "status",
			          addr_status_name(
			              header_addresses_parse(f.value, f.value_len, out, 4, &count)),
			          "ok");
			check_size("to field", "count", count, 2);
			check_str("to field", "addr 1", out[1].addr, "b@c.d");
		}
	}
	check_size("fields", "From fields", from, 1);
	check_size("fields", "To fields", to, 1);
	check_str("fields", "body", msg + header_body_offset(&it), "From: not@a.header\r\n");
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_next),
	    cmocka_unit_test(test_header_name_is),
	    cmocka_unit_test(test_addresses),
	    cmocka_unit_test(test_address_limits),
	    cmocka_unit_test(test_fields_with_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
