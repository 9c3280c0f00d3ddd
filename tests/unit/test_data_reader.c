/*
 * test_data_reader.c: table-driven unit tests of relay/data_reader.c. Every case is fed whole,
 * then split in two at every byte boundary, then one byte at a time; all feeds must give the
 * same output bytes, size, error, header_len, received_count, done and octets consumed. A
 * failing check prints "case: field got X, want Y".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/buf.h"
#include "relay/data_reader.h"
#include "tests/unit/lib_check.h"

#define IN(s)    .in = s, .in_len = sizeof(s) - 1
#define OUT(s)   .out = s, .out_len = sizeof(s) - 1
#define NO_LIMIT SIZE_MAX

static void expect_error(const char *name, enum data_error got, enum data_error want)
{
	if (got != want)
		check_fail("%s: error got %s, want %s\n", name, data_error_name(got),
		           data_error_name(want));
}

struct reader_case {
	const char *name;
	const char *in;
	size_t in_len;
	size_t max_size;
	const char *out; /* stored octets */
	size_t out_len;
	enum data_error error;
	bool done;
	size_t left; /* octets of in not consumed */
	size_t size; /* 0: the same as out_len */
	size_t header_len;
	unsigned received;
};

static const struct reader_case reader_cases[] = {
    {"empty message", IN(".\r\n"), NO_LIMIT, OUT(""), DATA_ERROR_NONE, true, 0, 0, 0, 0},
    {"empty message, command after", IN(".\r\nQUIT\r\n"), NO_LIMIT, OUT(""), DATA_ERROR_NONE, true,
     6, 0, 0, 0},
    {"header and body", IN("Subject: hi\r\n\r\nbody\r\n.\r\n"), NO_LIMIT,
     OUT("Subject: hi\r\n\r\nbody\r\n"), DATA_ERROR_NONE, true, 0, 0, 15, 0},
    {"pipelined command not consumed", IN("a: b\r\n\r\nx\r\n.\r\nQUIT\r\n"), NO_LIMIT,
     OUT("a: b\r\n\r\nx\r\n"), DATA_ERROR_NONE, true, 6, 0, 8, 0},
    {"header without empty line", IN("Subject: x\r\n.\r\n"), NO_LIMIT, OUT("Subject: x\r\n"),
     DATA_ERROR_NONE, true, 0, 0, 0, 0},
    {"header, empty line, no body", IN("Subject: x\r\n\r\n.\r\n"), NO_LIMIT,
     OUT("Subject: x\r\n\r\n"), DATA_ERROR_NONE, true, 0, 0, 14, 0},
    {"empty line first", IN("\r\nbody\r\n.\r\n"), NO_LIMIT, OUT("\r\nbody\r\n"), DATA_ERROR_NONE,
     true, 0, 0, 2, 0},
    {"second empty line is body", IN("a: b\r\n\r\n\r\n.\r\n"), NO_LIMIT, OUT("a: b\r\n\r\n\r\n"),
     DATA_ERROR_NONE, true, 0, 0, 8, 0},
    {"dot-stuffed lines", IN("a: b\r\n\r\n..x\r\n..\r\n.\r\n"), NO_LIMIT,
     OUT("a: b\r\n\r\n.x\r\n.\r\n"), DATA_ERROR_NONE, true, 0, 0, 8, 0},
    {"dot-stuffed first line", IN("..\r\n.\r\n"), NO_LIMIT, OUT(".\r\n"), DATA_ERROR_NONE, true, 0,
     0, 0, 0},
    {"unstuffed dot dropped", IN(".x\r\n.\r\n"), NO_LIMIT, OUT("x\r\n"), DATA_ERROR_NONE, true, 0,
     0, 0, 0},
    {"three dots", IN("...\r\n.\r\n"), NO_LIMIT, OUT("..\r\n"), DATA_ERROR_NONE, true, 0, 0, 0, 0},
    {"dot inside a line", IN("a.\r\n. \r\n.\r\n"), NO_LIMIT, OUT("a.\r\n \r\n"), DATA_ERROR_NONE,
     true, 0, 0, 0, 0},
    {"no end yet", IN("a: b\r\n\r\nbody\r\n"), NO_LIMIT, OUT("a: b\r\n\r\nbody\r\n"),
     DATA_ERROR_NONE, false, 0, 0, 8, 0},
    {"end cut before LF", IN("a\r\n.\r"), NO_LIMIT, OUT("a\r\n"), DATA_ERROR_NONE, false, 0, 0, 0,
     0},
    {"nothing", IN(""), NO_LIMIT, OUT(""), DATA_ERROR_NONE, false, 0, 0, 0, 0},
    /* line-end variants: only CRLF "." CRLF ends */
    {"LF.LF is no end", IN("a\n.\nb\r\n.\r\n"), NO_LIMIT, OUT("a"), DATA_ERROR_BARE_LF, true, 0, 7,
     0, 0},
    {"LF.LF waits for the real end", IN("a\n.\n"), NO_LIMIT, OUT("a"), DATA_ERROR_BARE_LF, false, 0,
     4, 0, 0},
    {"CR.CR is no end", IN("a\r.\rb\r\n.\r\n"), NO_LIMIT, OUT("a"), DATA_ERROR_BARE_CR, true, 0, 7,
     0, 0},
    {"CRLF.LF is no end", IN("a\r\n.\nb\r\n.\r\n"), NO_LIMIT, OUT("a\r\n"), DATA_ERROR_BARE_LF,
     true, 0, 7, 0, 0},
    {"LF.CRLF is no end", IN("a\n.\r\nb\r\n.\r\n"), NO_LIMIT, OUT("a"), DATA_ERROR_BARE_LF, true, 0,
     8, 0, 0},
    {"CR.LF is no end", IN("a\r.\nb\r\n.\r\n"), NO_LIMIT, OUT("a"), DATA_ERROR_BARE_CR, true, 0, 7,
     0, 0},
    {"CRLF.CR then other", IN("a\r\n.\rX\r\n.\r\n"), NO_LIMIT, OUT("a\r\n"), DATA_ERROR_BARE_CR,
     true, 0, 7, 0, 0},
    {"CRLF.CR CRLF", IN("a\r\n.\r\r\n.\r\n"), NO_LIMIT, OUT("a\r\n"), DATA_ERROR_BARE_CR, true, 0,
     6, 0, 0},
    {"smuggled command after bare LF end", IN("a\r\n.\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n"), NO_LIMIT,
     OUT("a\r\n"), DATA_ERROR_BARE_LF, true, 6, 21, 0, 0},
    {"bare CR at end of input", IN("a\r"), NO_LIMIT, OUT("a"), DATA_ERROR_NONE, false, 0, 1, 0, 0},
    {"bare LF first", IN("\n.\r\n.\r\n"), NO_LIMIT, OUT(""), DATA_ERROR_BARE_LF, true, 0, 4, 0, 0},
    {"NUL", IN("a\0b\r\n.\r\n"), NO_LIMIT, OUT("a"), DATA_ERROR_NUL, true, 0, 5, 0, 0},
    {"NUL first", IN("\0\r\n.\r\n"), NO_LIMIT, OUT(""), DATA_ERROR_NUL, true, 0, 3, 0, 0},
    {"first error kept", IN("a\0\nb\r\n.\r\n"), NO_LIMIT, OUT("a"), DATA_ERROR_NUL, true, 0, 6, 0,
     0},
    /* max_size */
    {"size exactly max", IN("abc\r\n.\r\n"), 5, OUT("abc\r\n"), DATA_ERROR_NONE, true, 0, 0, 0, 0},
    {"CRLF over max", IN("abc\r\n.\r\n"), 4, OUT("abc"), DATA_ERROR_TOO_BIG, true, 0, 5, 0, 0},
    {"line over max", IN("abc\r\n.\r\n"), 2, OUT("ab"), DATA_ERROR_TOO_BIG, true, 0, 5, 0, 0},
    {"max 0, empty message", IN(".\r\n"), 0, OUT(""), DATA_ERROR_NONE, true, 0, 0, 0, 0},
    {"max 0, one line", IN("a\r\n.\r\n"), 0, OUT(""), DATA_ERROR_TOO_BIG, true, 0, 3, 0, 0},
    {"too big, end still found", IN("abcdef\r\n.\r\nQUIT\r\n"), 3, OUT("abc"), DATA_ERROR_TOO_BIG,
     true, 6, 8, 0, 0},
    {"too big, header_len still counted", IN("a: b\r\n\r\nbody\r\n.\r\n"), 7, OUT("a: b\r\n"),
     DATA_ERROR_TOO_BIG, true, 0, 14, 8, 0},
    /* Received: counting */
    {"received fields",
     IN("Received: from a\r\nreceived: from b\r\nRECEIVED:x\r\nReceived-SPF: pass\r\n"
        " Received: folded\r\nX: Received: no\r\nReceived from\r\nReceived :x\r\n\r\n"
        "Received: in body\r\n.\r\n"),
     NO_LIMIT,
     OUT("Received: from a\r\nreceived: from b\r\nRECEIVED:x\r\nReceived-SPF: pass\r\n"
         " Received: folded\r\nX: Received: no\r\nReceived from\r\nReceived :x\r\n\r\n"
         "Received: in body\r\n"),
     DATA_ERROR_NONE, true, 0, 0, 134, 3},
    {"received without empty line", IN("Received: a\r\nReceived: b\r\n.\r\n"), NO_LIMIT,
     OUT("Received: a\r\nReceived: b\r\n"), DATA_ERROR_NONE, true, 0, 0, 0, 2},
    {"received only in body", IN("\r\nReceived: a\r\n.\r\n"), NO_LIMIT, OUT("\r\nReceived: a\r\n"),
     DATA_ERROR_NONE, true, 0, 0, 2, 0},
    {"received dot-unstuffed", IN(".Received: a\r\n\r\n.\r\n"), NO_LIMIT,
     OUT("Received: a\r\n\r\n"), DATA_ERROR_NONE, true, 0, 0, 15, 1},
    {"received name only", IN("Received:\r\n.\r\n"), NO_LIMIT, OUT("Received:\r\n"),
     DATA_ERROR_NONE, true, 0, 0, 0, 1},
    {"received cut short", IN("Received\r\n.\r\n"), NO_LIMIT, OUT("Received\r\n"), DATA_ERROR_NONE,
     true, 0, 0, 0, 0},
};

/* What one feeding produced. */
struct run {
	struct buf out;
	size_t consumed;
	bool done;
	struct data_reader r;
	bool short_read; /* a feed consumed less than given without being done */
};

/*
 * Feeds in[0..len): a first chunk of first octets, then chunks of chunk octets (SIZE_MAX:
 * the rest), until done or the input ends.
 */
static void run_feed(const char *in, size_t len, size_t max_size, size_t first, size_t chunk,
                     struct run *run)
{
	size_t pos = 0;
	size_t want = first;

	memset(run, 0, sizeof(*run));
	data_reader_init(&run->r, max_size);
	while (pos < len && !run->done) {
		size_t n = len - pos < want ? len - pos : want;
		size_t c = data_reader_feed(&run->r, in + pos, n, &run->out, &run->done);
		if (!run->done && c != n)
			run->short_read = true;
		pos += c;
		want = chunk;
		if (c == 0 && !run->done)
			break;
	}
	if (len == 0)
		data_reader_feed(&run->r, in, 0, &run->out, &run->done);
	run->consumed = pos;
}

/* Compares a split feeding with the whole one; label names the split in messages. */
static void run_compare(const char *label, const struct run *got, const struct run *want)
{
	check_bytes(label, "output", got->out.data, got->out.len, want->out.data, want->out.len);
	check_size(label, "consumed", got->consumed, want->consumed);
	check_size(label, "done", got->done, want->done);
	check_size(label, "size", got->r.size, want->r.size);
	check_size(label, "header_len", got->r.header_len, want->r.header_len);
	check_size(label, "received_count", got->r.received_count, want->r.received_count);
	expect_error(label, got->r.error, want->r.error);
	check_size(label, "short read", got->short_read, false);
}

static void case_check(const struct reader_case *c)
{
	struct run whole, part;
	char label[200];

	run_feed(c->in, c->in_len, c->max_size, SIZE_MAX, SIZE_MAX, &whole);
	check_bytes(c->name, "output", whole.out.data, whole.out.len, c->out, c->out_len);
	expect_error(c->name, whole.r.error, c->error);
	check_size(c->name, "done", whole.done, c->done);
	check_size(c->name, "consumed", whole.consumed, c->in_len - c->left);
	check_size(c->name, "size", whole.r.size, c->size != 0 ? c->size : c->out_len);
	check_size(c->name, "header_len", whole.r.header_len, c->header_len);
	check_size(c->name, "received_count", whole.r.received_count, c->received);
	check_size(c->name, "short read", whole.short_read, false);

	/* Feeding after the end consumes nothing and stays done. */
	if (whole.done) {
		bool done = false;
		size_t c2 = data_reader_feed(&whole.r, "x\r\n", 3, &whole.out, &done);
		check_size(c->name, "consumed after done", c2, 0);
		check_size(c->name, "done after done", done, true);
	}

	for (size_t k = 1; k < c->in_len; k++) {
		snprintf(label, sizeof(label), "%s, split at %zu", c->name, k);
		run_feed(c->in, c->in_len, c->max_size, k, SIZE_MAX, &part);
		run_compare(label, &part, &whole);
		buf_free(&part.out);
	}
	snprintf(label, sizeof(label), "%s, one octet at a time", c->name);
	run_feed(c->in, c->in_len, c->max_size, 1, 1, &part);
	run_compare(label, &part, &whole);
	buf_free(&part.out);
	buf_free(&whole.out);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reader_cases) / sizeof(reader_cases[0]); i++)
		case_check(&reader_cases[i]);
	check_done();
}

/* Cases with long lines, built at run time into one allocation per case. */
struct built {
	char *in;
	size_t in_len;
	char *out;
	size_t out_len;
};

static void built_make(struct built *b, const char *prefix, char fill, size_t fill_len,
                       const char *suffix, size_t out_keep)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	b->in_len = pl + fill_len + sl;
	b->in = malloc(b->in_len + 1);
	b->out = malloc(b->in_len + 1);
	assert_non_null(b->in);
	assert_non_null(b->out);
	memcpy(b->in, prefix, pl);
	memset(b->in + pl, fill, fill_len);
	memcpy(b->in + pl + fill_len, suffix, sl);
	b->in[b->in_len] = '\0';
	/* out_keep: how many octets of the fill (after the prefix, unstuffed) are stored */
	size_t unstuff = (pl > 0 && prefix[0] == '.') ? 1 : 0;
	b->out_len = 0;
	memcpy(b->out, prefix + unstuff, pl - unstuff);
	b->out_len = pl - unstuff;
	memset(b->out + b->out_len, fill, out_keep);
	b->out_len += out_keep;
}

static void built_free(struct built *b)
{
	free(b->in);
	free(b->out);
}

static void test_long_lines(void **state)
{
	(void)state;
	struct built b;

	/* 998 octets before CRLF is the limit (RFC 5321 4.5.3.1.6). */
	built_make(&b, "", 'x', 998, "\r\n.\r\n", 998);
	memcpy(b.out + b.out_len, "\r\n", 2);
	b.out_len += 2;
	struct reader_case c998 = {"line of 998",   b.in, b.in_len, NO_LIMIT, b.out, b.out_len,
	                           DATA_ERROR_NONE, true, 0,        0,        0,     0};
	case_check(&c998);
	built_free(&b);

	built_make(&b, "", 'x', 999, "\r\n.\r\nQUIT\r\n", 998);
	struct reader_case c999 = {
	    "line of 999", b.in, b.in_len, NO_LIMIT, b.out, b.out_len, DATA_ERROR_LINE_TOO_LONG,
	    true,          6,    1001,     0,        0};
	case_check(&c999);
	built_free(&b);

	/* The leading dot of a stuffed line does not count. */
	built_make(&b, ".", '.', 998, "\r\n.\r\n", 998);
	memcpy(b.out + b.out_len, "\r\n", 2);
	b.out_len += 2;
	struct reader_case stuffed = {
	    "stuffed line of 998", b.in, b.in_len, NO_LIMIT, b.out, b.out_len,
	    DATA_ERROR_NONE,       true, 0,        0,        0,     0};
	case_check(&stuffed);
	built_free(&b);

	/* The limit is per line: two lines of 998 are fine, a header line too. */
	built_make(&b, "Received: ", 'y', 988, "\r\n\r\n.\r\n", 988);
	memcpy(b.out + b.out_len, "\r\n\r\n", 4);
	b.out_len += 4;
	struct reader_case header = {
	    "header line of 998", b.in, b.in_len, NO_LIMIT, b.out, b.out_len,
	    DATA_ERROR_NONE,      true, 0,        0,        1002,  1};
	case_check(&header);
	built_free(&b);

	/* Both limits at the same octet: the line limit is reported. */
	built_make(&b, "", 'z', 999, "\r\n.\r\n", 998);
	struct reader_case both = {
	    "line and size limits at once", b.in, b.in_len, 998,  b.out, b.out_len,
	    DATA_ERROR_LINE_TOO_LONG,       true, 0,        1001, 0,     0};
	case_check(&both);
	built_free(&b);
	check_done();
}

static void test_error_names(void **state)
{
	(void)state;
	const enum data_error all[] = {
	    DATA_ERROR_NONE,          DATA_ERROR_BARE_CR, DATA_ERROR_BARE_LF,  DATA_ERROR_NUL,
	    DATA_ERROR_LINE_TOO_LONG, DATA_ERROR_TOO_BIG, DATA_ERROR_NO_MEMORY};
	const char *want[] = {"none",          "bare_cr", "bare_lf",  "nul",
	                      "line_too_long", "too_big", "no_memory"};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *got = data_error_name(all[i]);
		if (strcmp(got, want[i]) != 0) {
			check_fail("%s: name got %s, want %s\n", want[i], got, want[i]);
		}
	}
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_long_lines),
	    cmocka_unit_test(test_error_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
