/*
 * test_smtp_reply.c: table-driven unit tests of relay/smtp_reply.c: reply lines and codes,
 * enhanced status codes, EHLO keywords, and every malformed form (bad or mixed codes, missing
 * separator, too many lines, overlong lines, NUL and bare CR, no line end). Every case that
 * fails prints "case: field got X, want Y"; the test fails at the end if any case did.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/smtp_reply.h"
#include "tests/unit/lib_check.h"

/* A string literal with its length, so that cases may hold NUL octets. */
#define BYTES(s) s, sizeof(s) - 1
/* want used: all of the input */
#define ALL ((size_t)-1)

#define EHLO_ALL                                                                                   \
	(SMTP_EXT_PIPELINING | SMTP_EXT_STARTTLS | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME |             \
	 SMTP_EXT_SMTPUTF8 | SMTP_EXT_ENHANCEDSTATUSCODES | SMTP_EXT_CHUNKING)

static void expect_status(const char *name, enum smtp_reply_status got, enum smtp_reply_status want)
{
	check_str(name, "status", smtp_reply_status_name(got), smtp_reply_status_name(want));
}

/* ---- whole replies ---- */

struct reply_case {
	const char *name;
	const char *in;
	size_t len;
	enum smtp_reply_status status;
	size_t used; /* checked for DONE and MORE */
	/* checked only when status is SMTP_REPLY_DONE */
	int code;
	unsigned lines;
	const char *enhanced;
	const char *name_word;
	const char *text;
	unsigned ext;
	uint64_t size_max;
	int bare_lf;
};

static const struct reply_case reply_cases[] = {
    /* one line */
    {"simple", BYTES("250 ok\r\n"), SMTP_REPLY_DONE, ALL, 250, 1, "", "ok", "ok", 0, 0, 0},
    {"greeting", BYTES("220 mx.example.com ESMTP Postfix\r\n"), SMTP_REPLY_DONE, ALL, 220, 1, "",
     "mx.example.com", "mx.example.com ESMTP Postfix", 0, 0, 0},
    {"code only", BYTES("250\r\n"), SMTP_REPLY_DONE, ALL, 250, 1, "", "", "", 0, 0, 0},
    {"code and space", BYTES("354 \r\n"), SMTP_REPLY_DONE, ALL, 354, 1, "", "", "", 0, 0, 0},
    {"first digit 5", BYTES("554 no\r\n"), SMTP_REPLY_DONE, ALL, 554, 1, "", "no", "no", 0, 0, 0},
    {"odd middle digit accepted", BYTES("299 x\r\n"), SMTP_REPLY_DONE, ALL, 299, 1, "", "x", "x", 0,
     0, 0},
    {"tab and UTF-8 in text kept", BYTES("250 a\tb \xc3\xa9\r\n"), SMTP_REPLY_DONE, ALL, 250, 1, "",
     "a\tb", "a\tb \xc3\xa9", 0, 0, 0},
    {"next reply left alone", BYTES("250 ok\r\n354 go\r\n"), SMTP_REPLY_DONE, 8, 250, 1, "", "ok",
     "ok", 0, 0, 0},
    /* bare LF: accepted as a line end, and noted */
    {"bare LF", BYTES("250 ok\n"), SMTP_REPLY_DONE, ALL, 250, 1, "", "ok", "ok", 0, 0, 1},
    {"bare LF on one line of two", BYTES("250-a\n250 b\r\n"), SMTP_REPLY_DONE, ALL, 250, 2, "", "a",
     "a b", 0, 0, 1},
    /* enhanced status codes */
    {"enhanced", BYTES("550 5.1.1 <a@b.c>: Recipient address rejected\r\n"), SMTP_REPLY_DONE, ALL,
     550, 1, "5.1.1", "<a@b.c>:", "<a@b.c>: Recipient address rejected", 0, 0, 0},
    {"enhanced alone", BYTES("250 2.0.0\r\n"), SMTP_REPLY_DONE, ALL, 250, 1, "2.0.0", "", "", 0, 0,
     0},
    {"enhanced three digits each", BYTES("451 4.123.456 later\r\n"), SMTP_REPLY_DONE, ALL, 451, 1,
     "4.123.456", "later", "later", 0, 0, 0},
    {"enhanced class differs from code", BYTES("550 4.1.1 no\r\n"), SMTP_REPLY_DONE, ALL, 550, 1,
     "", "4.1.1", "4.1.1 no", 0, 0, 0},
    {"enhanced class 3 is not one", BYTES("354 3.0.0 go\r\n"), SMTP_REPLY_DONE, ALL, 354, 1, "",
     "3.0.0", "3.0.0 go", 0, 0, 0},
    {"enhanced four digits", BYTES("451 4.1234.1 x\r\n"), SMTP_REPLY_DONE, ALL, 451, 1, "",
     "4.1234.1", "4.1234.1 x", 0, 0, 0},
    {"enhanced glued to text", BYTES("451 4.1.1x\r\n"), SMTP_REPLY_DONE, ALL, 451, 1, "", "4.1.1x",
     "4.1.1x", 0, 0, 0},
    {"enhanced two parts", BYTES("451 4.1 x\r\n"), SMTP_REPLY_DONE, ALL, 451, 1, "", "4.1", "4.1 x",
     0, 0, 0},
    {"enhanced empty part", BYTES("451 4..1 x\r\n"), SMTP_REPLY_DONE, ALL, 451, 1, "", "4..1",
     "4..1 x", 0, 0, 0},
    {"enhanced on later lines only is text", BYTES("550-no\r\n550 5.1.1 x\r\n"), SMTP_REPLY_DONE,
     ALL, 550, 2, "", "no", "no 5.1.1 x", 0, 0, 0},
    /* multi-line */
    {"gmail style",
     BYTES("550-5.1.1 The email account that you tried to reach does not exist.\r\n"
           "550-5.1.1 Please try double-checking the address\r\n"
           "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser x1si\r\n"),
     SMTP_REPLY_DONE, ALL, 550, 3, "5.1.1", "The",
     "The email account that you tried to reach does not exist. Please try "
     "double-checking the address https://support.google.com/mail/?p=NoSuchUser x1si",
     0, 0, 0},
    {"other enhanced code on a later line kept", BYTES("550-5.1.1 a\r\n550 5.7.1 b\r\n"),
     SMTP_REPLY_DONE, ALL, 550, 2, "5.1.1", "a", "a 5.7.1 b", 0, 0, 0},
    {"empty continuation texts", BYTES("250-\r\n250-a\r\n250 \r\n"), SMTP_REPLY_DONE, ALL, 250, 3,
     "", "", "a", 0, 0, 0},
    {"ehlo every keyword",
     BYTES("250-mx.example.com Hello [127.0.0.1]\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
           "250-STARTTLS\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n"
           "250-CHUNKING\r\n250 DSN\r\n"),
     SMTP_REPLY_DONE, ALL, 250, 9, "", "mx.example.com",
     "mx.example.com Hello [127.0.0.1] PIPELINING SIZE 10240000 STARTTLS 8BITMIME "
     "ENHANCEDSTATUSCODES SMTPUTF8 CHUNKING DSN",
     EHLO_ALL, 10240000, 0},
    {"ehlo keywords any case", BYTES("250-x\r\n250-pipelining\r\n250 StartTls\r\n"),
     SMTP_REPLY_DONE, ALL, 250, 3, "", "x", "x pipelining StartTls",
     SMTP_EXT_PIPELINING | SMTP_EXT_STARTTLS, 0, 0},
    {"ehlo single line", BYTES("250 mx.example.com\r\n"), SMTP_REPLY_DONE, ALL, 250, 1, "",
     "mx.example.com", "mx.example.com", 0, 0, 0},
    {"ehlo keyword on the first line is the name", BYTES("250 PIPELINING\r\n"), SMTP_REPLY_DONE,
     ALL, 250, 1, "", "PIPELINING", "PIPELINING", 0, 0, 0},
    {"ehlo SIZE without limit", BYTES("250-x\r\n250 SIZE\r\n"), SMTP_REPLY_DONE, ALL, 250, 2, "",
     "x", "x SIZE", SMTP_EXT_SIZE, 0, 0},
    {"ehlo SIZE 0", BYTES("250-x\r\n250 SIZE 0\r\n"), SMTP_REPLY_DONE, ALL, 250, 2, "", "x",
     "x SIZE 0", SMTP_EXT_SIZE, 0, 0},
    {"ehlo SIZE not a number", BYTES("250-x\r\n250 SIZE 12a\r\n"), SMTP_REPLY_DONE, ALL, 250, 2, "",
     "x", "x SIZE 12a", SMTP_EXT_SIZE, 0, 0},
    {"ehlo SIZE largest", BYTES("250-x\r\n250 SIZE 18446744073709551615\r\n"), SMTP_REPLY_DONE, ALL,
     250, 2, "", "x", "x SIZE 18446744073709551615", SMTP_EXT_SIZE, UINT64_MAX, 0},
    {"ehlo SIZE overflows", BYTES("250-x\r\n250 SIZE 18446744073709551616\r\n"), SMTP_REPLY_DONE,
     ALL, 250, 2, "", "x", "x SIZE 18446744073709551616", SMTP_EXT_SIZE, 0, 0},
    {"ehlo SIZE two spaces", BYTES("250-x\r\n250 SIZE  1000\r\n"), SMTP_REPLY_DONE, ALL, 250, 2, "",
     "x", "x SIZE  1000", SMTP_EXT_SIZE, 1000, 0},
    {"ehlo longer keyword is not one", BYTES("250-x\r\n250-PIPELININGX\r\n250 STARTTLSS\r\n"),
     SMTP_REPLY_DONE, ALL, 250, 3, "", "x", "x PIPELININGX STARTTLSS", 0, 0, 0},
    {"ehlo old AUTH= form ignored", BYTES("250-x\r\n250 AUTH=LOGIN\r\n"), SMTP_REPLY_DONE, ALL, 250,
     2, "", "x", "x AUTH=LOGIN", 0, 0, 0},
    {"keywords only in a 250 reply", BYTES("220-x\r\n220 PIPELINING\r\n"), SMTP_REPLY_DONE, ALL,
     220, 2, "", "x", "x PIPELINING", 0, 0, 0},
    /* incomplete */
    {"empty input", BYTES(""), SMTP_REPLY_MORE, 0, 0, 0, "", "", "", 0, 0, 0},
    {"no line end yet", BYTES("250 ok"), SMTP_REPLY_MORE, 0, 0, 0, "", "", "", 0, 0, 0},
    {"CR without LF yet", BYTES("250 ok\r"), SMTP_REPLY_MORE, 0, 0, 0, "", "", "", 0, 0, 0},
    {"last line missing", BYTES("250-a\r\n250-b\r\n"), SMTP_REPLY_MORE, 0, 0, 0, "", "", "", 0, 0,
     0},
    /* malformed */
    {"two-digit code", BYTES("25 ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"letters for code", BYTES("abc ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"letter in code", BYTES("2x0 ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"first digit 1", BYTES("150 ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"first digit 6", BYTES("650 ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"first digit 0", BYTES("050 ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"leading space", BYTES(" 250 ok\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"empty line", BYTES("\r\n"), SMTP_REPLY_BAD_CODE, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"empty line inside", BYTES("250-a\r\n\r\n250 b\r\n"), SMTP_REPLY_BAD_CODE, 9, 0, 0, "", "", "",
     0, 0, 0},
    {"no separator", BYTES("250ok\r\n"), SMTP_REPLY_BAD_SEPARATOR, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"tab separator", BYTES("250\tok\r\n"), SMTP_REPLY_BAD_SEPARATOR, ALL, 0, 0, "", "", "", 0, 0,
     0},
    {"four-digit code", BYTES("2500 ok\r\n"), SMTP_REPLY_BAD_SEPARATOR, ALL, 0, 0, "", "", "", 0, 0,
     0},
    {"no separator on a later line", BYTES("250-a\r\n250b\r\n"), SMTP_REPLY_BAD_SEPARATOR, 13, 0, 0,
     "", "", "", 0, 0, 0},
    {"mixed codes", BYTES("250-a\r\n251 b\r\n"), SMTP_REPLY_MIXED_CODES, 14, 0, 0, "", "", "", 0, 0,
     0},
    {"mixed classes", BYTES("250-a\r\n550 b\r\n"), SMTP_REPLY_MIXED_CODES, 14, 0, 0, "", "", "", 0,
     0, 0},
    {"mixed codes in the middle", BYTES("550-a\r\n550-b\r\n450-c\r\n550 d\r\n"),
     SMTP_REPLY_MIXED_CODES, 21, 0, 0, "", "", "", 0, 0, 0},
    {"NUL in text", BYTES("250 a\0b\r\n"), SMTP_REPLY_BAD_OCTET, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"NUL in code", BYTES("2\00050 ok\r\n"), SMTP_REPLY_BAD_OCTET, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"bare CR in text", BYTES("250 a\rb\r\n"), SMTP_REPLY_BAD_OCTET, ALL, 0, 0, "", "", "", 0, 0,
     0},
    {"CR CR LF", BYTES("250 ab\r\r\n"), SMTP_REPLY_BAD_OCTET, ALL, 0, 0, "", "", "", 0, 0, 0},
    {"bare CR ends nothing", BYTES("250-a\r250 b\r\n"), SMTP_REPLY_BAD_OCTET, 13, 0, 0, "", "", "",
     0, 0, 0},
};

static void test_reply_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *c = &reply_cases[i];
		struct smtp_reply r;
		size_t used = 12345;
		enum smtp_reply_status st = smtp_reply_parse(c->in, c->len, &r, &used);
		expect_status(c->name, st, c->status);
		check_u64(c->name, "used", used, c->used == ALL ? c->len : c->used);
		if (st != SMTP_REPLY_DONE || c->status != SMTP_REPLY_DONE)
			continue;
		check_u64(c->name, "code", (uint64_t)r.code, (uint64_t)c->code);
		check_u64(c->name, "lines", r.lines, c->lines);
		check_str(c->name, "enhanced", r.enhanced, c->enhanced);
		check_str(c->name, "name", r.name, c->name_word);
		check_str(c->name, "text", r.text, c->text);
		check_u64(c->name, "text_len", r.text_len, strlen(c->text));
		check_u64(c->name, "text_truncated", r.text_truncated, 0);
		check_u64(c->name, "ext", r.ext, c->ext);
		check_u64(c->name, "size_max", r.size_max, c->size_max);
		check_u64(c->name, "bare_lf", r.bare_lf, (uint64_t)c->bare_lf);
	}
	check_done();
}

/* Every prefix of a complete reply is MORE; the whole is DONE, fed at once or line by line. */
static void test_reply_prefixes(void **state)
{
	(void)state;
	static const char ehlo[] = "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	                           "250 STARTTLS\r\n";
	size_t n = sizeof ehlo - 1;
	struct smtp_reply r;
	size_t used;
	char name[64];
	for (size_t k = 0; k < n; k++) {
		snprintf(name, sizeof name, "prefix of %zu octets", k);
		expect_status(name, smtp_reply_parse(ehlo, k, &r, &used), SMTP_REPLY_MORE);
		check_u64(name, "used", used, 0);
	}
	expect_status("whole", smtp_reply_parse(ehlo, n, &r, &used), SMTP_REPLY_DONE);
	check_u64("whole", "used", used, n);

	smtp_reply_init(&r);
	const char *p = ehlo;
	enum smtp_reply_status st = SMTP_REPLY_MORE;
	unsigned fed = 0;
	while (st == SMTP_REPLY_MORE && p < ehlo + n) {
		const char *lf = strchr(p, '\n');
		st = smtp_reply_feed(&r, p, (size_t)(lf - p) + 1);
		p = lf + 1;
		fed++;
	}
	expect_status("fed line by line", st, SMTP_REPLY_DONE);
	check_u64("fed line by line", "lines fed", fed, 4);
	check_u64("fed line by line", "ext", r.ext,
	          SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_STARTTLS);
	check_u64("fed line by line", "size_max", r.size_max, 1000);
	check_str("fed line by line", "name", r.name, "mx.example.com");
	check_done();
}

/* A reply of `lines` lines "CCC-x" ... "CCC x" in a malloc'd buffer. */
static char *lines_make(unsigned lines, size_t *len)
{
	char *b = malloc((size_t)lines * 7 + 1);
	assert_non_null(b);
	size_t o = 0;
	for (unsigned i = 0; i < lines; i++) {
		memcpy(b + o, i + 1 < lines ? "250-x\r\n" : "250 x\r\n", 7);
		o += 7;
	}
	b[o] = '\0';
	*len = o;
	return b;
}

/* One line "250 " + pad octets of text + ending. */
static char *long_line_make(size_t pad, const char *ending, size_t *len)
{
	size_t el = strlen(ending);
	char *b = malloc(4 + pad + el + 1);
	assert_non_null(b);
	memcpy(b, "250 ", 4);
	memset(b + 4, 'a', pad);
	memcpy(b + 4 + pad, ending, el + 1);
	*len = 4 + pad + el;
	return b;
}

static void test_reply_limits(void **state)
{
	(void)state;
	struct smtp_reply r;
	size_t len, used;
	char *b;

	b = lines_make(SMTP_REPLY_LINES_MAX, &len);
	expect_status("100 lines", smtp_reply_parse(b, len, &r, &used), SMTP_REPLY_DONE);
	check_u64("100 lines", "lines", r.lines, SMTP_REPLY_LINES_MAX);
	free(b);
	b = lines_make(SMTP_REPLY_LINES_MAX + 1, &len);
	expect_status("101 lines", smtp_reply_parse(b, len, &r, &used), SMTP_REPLY_TOO_MANY_LINES);
	check_u64("101 lines", "used", used, len);
	free(b);

	/* SMTP_REPLY_LINE_MAX octets before the line end, with CRLF and with LF */
	b = long_line_make(SMTP_REPLY_LINE_MAX - 4, "\r\n", &len);
	expect_status("line of 2048 + CRLF", smtp_reply_parse(b, len, &r, &used), SMTP_REPLY_DONE);
	check_u64("line of 2048 + CRLF", "text_truncated", r.text_truncated, 1);
	check_u64("line of 2048 + CRLF", "text_len", r.text_len, SMTP_REPLY_TEXT_MAX);
	check_u64("line of 2048 + CRLF", "name length", strlen(r.name), SMTP_REPLY_NAME_MAX);
	free(b);
	b = long_line_make(SMTP_REPLY_LINE_MAX - 4, "\n", &len);
	expect_status("line of 2048 + LF", smtp_reply_parse(b, len, &r, &used), SMTP_REPLY_DONE);
	free(b);
	b = long_line_make(SMTP_REPLY_LINE_MAX - 3, "\r\n", &len);
	expect_status("line of 2049 + CRLF", smtp_reply_parse(b, len, &r, &used),
	              SMTP_REPLY_LINE_TOO_LONG);
	free(b);
	b = long_line_make(SMTP_REPLY_LINE_MAX - 3, "\n", &len);
	expect_status("line of 2049 + LF", smtp_reply_parse(b, len, &r, &used),
	              SMTP_REPLY_LINE_TOO_LONG);
	free(b);
	/* no line end: waiting is right while a legal line may still end, not after */
	b = long_line_make(SMTP_REPLY_LINE_MAX - 3, "", &len); /* 2049 octets */
	expect_status("2049 octets, no end yet", smtp_reply_parse(b, len, &r, &used),
	              SMTP_REPLY_MORE);
	free(b);
	b = long_line_make(SMTP_REPLY_LINE_MAX - 2, "", &len); /* 2050 octets */
	expect_status("2050 octets, no end", smtp_reply_parse(b, len, &r, &used),
	              SMTP_REPLY_LINE_TOO_LONG);
	check_u64("2050 octets, no end", "used", used, len);
	free(b);
	b = long_line_make(100000, "\r\n", &len);
	expect_status("line of 100004", smtp_reply_parse(b, len, &r, &used),
	              SMTP_REPLY_LINE_TOO_LONG);
	free(b);

	/* text is cut at SMTP_REPLY_TEXT_MAX over many lines, and stays NUL-terminated */
	char many[20 * 210 + 1];
	size_t o = 0;
	for (int i = 0; i < 20; i++) {
		memcpy(many + o, i < 19 ? "550-" : "550 ", 4);
		memset(many + o + 4, 'a' + i, 200);
		memcpy(many + o + 204, "\r\n", 2);
		o += 206;
	}
	expect_status("20 lines of 200", smtp_reply_parse(many, o, &r, &used), SMTP_REPLY_DONE);
	check_u64("20 lines of 200", "text_len", r.text_len, SMTP_REPLY_TEXT_MAX);
	check_u64("20 lines of 200", "strlen(text)", strlen(r.text), SMTP_REPLY_TEXT_MAX);
	check_u64("20 lines of 200", "text_truncated", r.text_truncated, 1);
	check_done();
}

struct feed_case {
	const char *name;
	const char *in;
	size_t len;
	enum smtp_reply_status status;
};

static const struct feed_case feed_cases[] = {
    {"CRLF", BYTES("250 ok\r\n"), SMTP_REPLY_DONE},
    {"continuation", BYTES("250-ok\r\n"), SMTP_REPLY_MORE},
    {"no LF", BYTES("250 ok"), SMTP_REPLY_NO_LINE_END},
    {"CR only", BYTES("250 ok\r"), SMTP_REPLY_NO_LINE_END},
    {"two lines", BYTES("250-a\n250 b\n"), SMTP_REPLY_NO_LINE_END},
    {"empty", BYTES(""), SMTP_REPLY_NO_LINE_END},
    {"LF only", BYTES("\n"), SMTP_REPLY_BAD_CODE},
};

static void test_reply_feed(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(feed_cases) / sizeof(feed_cases[0]); i++) {
		const struct feed_case *c = &feed_cases[i];
		struct smtp_reply r;
		smtp_reply_init(&r);
		expect_status(c->name, smtp_reply_feed(&r, c->in, c->len), c->status);
	}
	check_done();
}

struct enhanced_case {
	const char *in;
	size_t want_len;
	const char *want;
};

static const struct enhanced_case enhanced_cases[] = {
    {"2.0.0", 5, "2.0.0"},
    {"5.1.1 user unknown", 5, "5.1.1"},
    {"4.7.0 ", 5, "4.7.0"},
    {"5.999.999", 9, "5.999.999"},
    {"5.999.999 x", 9, "5.999.999"},
    {"5.1000.1", 0, ""},
    {"5.1.1000", 0, ""},
    {"3.1.1", 0, ""},
    {"1.1.1", 0, ""},
    {"5.1.1.1", 0, ""},
    {"5.1", 0, ""},
    {"5..1", 0, ""},
    {"5.1.", 0, ""},
    {".1.1", 0, ""},
    {"5,1,1", 0, ""},
    {"5.1.1x", 0, ""},
    {"5.1.1\t", 0, ""},
    {"", 0, ""},
    {"55.1.1", 0, ""},
    {"5.a.1", 0, ""},
};

static void test_enhanced_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(enhanced_cases) / sizeof(enhanced_cases[0]); i++) {
		const struct enhanced_case *c = &enhanced_cases[i];
		char out[SMTP_ENHANCED_MAX + 1];
		size_t n = smtp_enhanced_parse(c->in, strlen(c->in), out);
		check_u64(c->in, "length", n, c->want_len);
		check_str(c->in, "code", out, c->want);
	}
	check_done();
}

static void test_status_names(void **state)
{
	(void)state;
	const enum smtp_reply_status all[] = {
	    SMTP_REPLY_DONE,          SMTP_REPLY_MORE,        SMTP_REPLY_BAD_CODE,
	    SMTP_REPLY_BAD_SEPARATOR, SMTP_REPLY_MIXED_CODES, SMTP_REPLY_TOO_MANY_LINES,
	    SMTP_REPLY_LINE_TOO_LONG, SMTP_REPLY_BAD_OCTET,   SMTP_REPLY_NO_LINE_END,
	};
	const char *want[] = {"done",          "more",        "bad_code",
	                      "bad_separator", "mixed_codes", "too_many_lines",
	                      "line_too_long", "bad_octet",   "no_line_end"};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		check_str(want[i], "name", smtp_reply_status_name(all[i]), want[i]);
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_parse),    cmocka_unit_test(test_reply_prefixes),
	    cmocka_unit_test(test_reply_limits),   cmocka_unit_test(test_reply_feed),
	    cmocka_unit_test(test_enhanced_parse), cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
