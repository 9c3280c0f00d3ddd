/*
 * test_json.c: table-driven unit tests of stats/json.c: string escaping (quotes, backslash,
 * control bytes, HTML-significant characters, U+2028/2029), invalid UTF-8 replaced per maximal
 * subpart, numbers (integers at their limits, shortest doubles, NaN and infinities as null),
 * nesting and misuse errors, the output limit, the validator, and random bytes that must
 * always come out as valid JSON. Every case that fails prints "case: field got X, want Y".
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

#include "stats/json.h"
#include "tests/unit/lib_check.h"

#define BYTES(s) s, sizeof(s) - 1

/* The finished document of j, copied to out ("(error)" when it failed); releases j. */
static const char *finish(struct stats_json *j, char *out, size_t outlen)
{
	size_t len;
	const char *text = stats_json_finish(j, &len);
	snprintf(out, outlen, "%s", text != NULL ? text : "(error)");
	stats_json_release(j);
	return out;
}

/* Writes one string value and returns the document (static storage). */
static const char *encode_string(const char *s, size_t n)
{
	static char out[4096];
	struct stats_json j;
	stats_json_init(&j, sizeof out - 1);
	stats_json_string(&j, s, n);
	return finish(&j, out, sizeof out);
}

struct string_case {
	const char *name;
	const char *in;
	size_t len;
	const char *want;
};

static const struct string_case string_cases[] = {
    {"plain", BYTES("abc"), "\"abc\""},
    {"empty", BYTES(""), "\"\""},
    {"quote and backslash", BYTES("a\"b\\c"), "\"a\\\"b\\\\c\""},
    {"slash kept", BYTES("a/b"), "\"a/b\""},
    {"newline tab CR", BYTES("a\nb\tc\r"), "\"a\\u000ab\\u0009c\\u000d\""},
    {"NUL inside", BYTES("a\0b"), "\"a\\u0000b\""},
    {"0x01 and 0x1f", BYTES("\x01\x1f"), "\"\\u0001\\u001f\""},
    {"DEL", BYTES("\x7f"), "\"\\u007f\""},
    {"html", BYTES("<script>&</script>"), "\"\\u003cscript\\u003e\\u0026\\u003c/script\\u003e\""},
    {"two-octet UTF-8 kept", BYTES("caf\xc3\xa9"), "\"caf\xc3\xa9\""},
    {"three-octet UTF-8 kept", BYTES("\xe2\x82\xac"), "\"\xe2\x82\xac\""},
    {"four-octet UTF-8 kept", BYTES("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\""},
    {"U+2028 and U+2029",
     BYTES("a\xe2\x80\xa8"
           "b\xe2\x80\xa9"),
     "\"a\\u2028b\\u2029\""},
    {"lone continuation", BYTES("a\x80z"), "\"a\\ufffdz\""},
    {"overlong 2 octets", BYTES("\xc0\x80"), "\"\\ufffd\\ufffd\""},
    {"C1 lead", BYTES("\xc1\xbf"), "\"\\ufffd\\ufffd\""},
    {"overlong 3 octets", BYTES("\xe0\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\""},
    {"surrogate", BYTES("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\""},
    {"above U+10FFFF", BYTES("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
    {"F5 lead", BYTES("\xf5"), "\"\\ufffd\""},
    {"FF", BYTES("\xff"), "\"\\ufffd\""},
    {"truncated 3 octets at end", BYTES("a\xe2\x82"), "\"a\\ufffd\""},
    {"truncated 4 octets then ASCII", BYTES("\xf0\x9f\x98z"), "\"\\ufffdz\""},
    {"truncated then quote", BYTES("\xc3\""), "\"\\ufffd\\\"\""},
    {"valid after invalid", BYTES("\xff\xc3\xa9"), "\"\\ufffd\xc3\xa9\""},
};

static void test_strings(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof string_cases / sizeof string_cases[0]; i++) {
		const struct string_case *c = &string_cases[i];
		const char *got = encode_string(c->in, c->len);
		check_str(c->name, "json", got, c->want);
		const char *why = stats_json_check(got, strlen(got));
		if (why != NULL)
			check_fail("%s: check got \"%s\", want valid\n", c->name, why);
	}
	check_done();
}

/* ---- numbers ---- */

static const char *encode_double(double v)
{
	static char out[64];
	struct stats_json j;
	stats_json_init(&j, 100);
	stats_json_double(&j, v);
	return finish(&j, out, sizeof out);
}

struct double_case {
	const char *name;
	double v;
	const char *want;
};

static void test_numbers(void **state)
{
	(void)state;
	const struct double_case cases[] = {
	    {"zero", 0.0, "0"},
	    {"negative zero", -0.0, "-0"},
	    {"tenth", 0.1, "0.1"},
	    {"one and a half", 1.5, "1.5"},
	    {"third", 1.0 / 3.0, "0.3333333333333333"},
	    {"large", 1e21, "1e+21"},
	    {"small", 0.00025, "0.00025"},
	    {"tiny", 5e-324, "5e-324"},
	    {"max", 1.7976931348623157e308, "1.7976931348623157e+308"},
	    {"integer", 12345678.0, "12345678"},
	    {"NaN", NAN, "null"},
	    {"infinity", INFINITY, "null"},
	    {"minus infinity", -INFINITY, "null"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *got = encode_double(cases[i].v);
		check_str(cases[i].name, "json", got, cases[i].want);
		if (isfinite(cases[i].v) && strtod(got, NULL) != cases[i].v)
			check_fail("%s: read back got %.17g, want %.17g\n", cases[i].name,
			           strtod(got, NULL), cases[i].v);
	}

	struct stats_json j;
	char out[200];
	stats_json_init(&j, 1000);
	stats_json_array_open(&j);
	stats_json_int(&j, INT64_MIN);
	stats_json_int(&j, INT64_MAX);
	stats_json_uint(&j, UINT64_MAX);
	stats_json_bool(&j, true);
	stats_json_bool(&j, false);
	stats_json_null(&j);
	stats_json_cstring(&j, NULL);
	stats_json_array_close(&j);
	check_str("integers and literals", "json", finish(&j, out, sizeof out),
	          "[-9223372036854775808,9223372036854775807,18446744073709551615,true,false,"
	          "null,null]");
	check_done();
}

/* ---- structure ---- */

static void test_objects(void **state)
{
	(void)state;
	struct stats_json j;
	size_t len;
	stats_json_init(&j, 1000);
	stats_json_object_open(&j);
	stats_json_member_cstring(&j, "a\"b", "x");
	stats_json_member_int(&j, "n", -5);
	stats_json_member_uint(&j, "u", 7);
	stats_json_member_double(&j, "d", 2.5);
	stats_json_member_bool(&j, "t", true);
	stats_json_key(&j, "list");
	stats_json_array_open(&j);
	stats_json_object_open(&j);
	stats_json_object_close(&j);
	stats_json_array_open(&j);
	stats_json_array_close(&j);
	stats_json_array_close(&j);
	stats_json_object_close(&j);
	const char *text = stats_json_finish(&j, &len);
	check_str("object", "json", text != NULL ? text : "(error)",
	          "{\"a\\\"b\":\"x\",\"n\":-5,\"u\":7,\"d\":2.5,\"t\":true,\"list\":[{},[]]}");
	check_size("object", "len", len, text != NULL ? strlen(text) : 0);
	stats_json_release(&j);
	check_done();
}

/* One misuse per case: the writer must refuse it with this error. */
struct misuse_case {
	const char *name;
	void (*write)(struct stats_json *j);
	const char *error;
};

static void misuse_key_outside(struct stats_json *j)
{
	stats_json_key(j, "a");
}

static void misuse_value_without_key(struct stats_json *j)
{
	stats_json_object_open(j);
	stats_json_int(j, 1);
	stats_json_object_close(j);
}

static void misuse_two_keys(struct stats_json *j)
{
	stats_json_object_open(j);
	stats_json_key(j, "a");
	stats_json_key(j, "b");
}

static void misuse_close_mismatch(struct stats_json *j)
{
	stats_json_array_open(j);
	stats_json_object_close(j);
}

static void misuse_close_with_key_pending(struct stats_json *j)
{
	stats_json_object_open(j);
	stats_json_key(j, "a");
	stats_json_object_close(j);
}

static void misuse_close_nothing(struct stats_json *j)
{
	stats_json_array_close(j);
}

static void misuse_two_values(struct stats_json *j)
{
	stats_json_int(j, 1);
	stats_json_int(j, 2);
}

static void misuse_unclosed(struct stats_json *j)
{
	stats_json_array_open(j);
	stats_json_int(j, 1);
}

static void misuse_nothing(struct stats_json *j)
{
	(void)j;
}

static void misuse_too_deep(struct stats_json *j)
{
	for (int i = 0; i < STATS_JSON_DEPTH_MAX + 1; i++)
		stats_json_array_open(j);
	for (int i = 0; i < STATS_JSON_DEPTH_MAX + 1; i++)
		stats_json_array_close(j);
}

static void misuse_too_large(struct stats_json *j)
{
	stats_json_array_open(j);
	for (int i = 0; i < 100; i++)
		stats_json_cstring(j, "0123456789");
	stats_json_array_close(j);
}

static void test_misuse(void **state)
{
	(void)state;
	const struct misuse_case cases[] = {
	    {"key outside an object", misuse_key_outside, "key outside an object"},
	    {"value without a key", misuse_value_without_key, "value without a key in an object"},
	    {"two keys", misuse_two_keys, "key outside an object"},
	    {"close mismatch", misuse_close_mismatch, "close does not match an open container"},
	    {"close with key pending", misuse_close_with_key_pending,
	     "close does not match an open container"},
	    {"close nothing", misuse_close_nothing, "close does not match an open container"},
	    {"two top-level values", misuse_two_values, "second top-level value"},
	    {"unclosed", misuse_unclosed, "document not complete"},
	    {"nothing", misuse_nothing, "document not complete"},
	    {"too deep", misuse_too_deep, "nesting too deep"},
	    {"too large", misuse_too_large, "output too large"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct stats_json j;
		size_t len = 12345;
		stats_json_init(&j, 500);
		cases[i].write(&j);
		const char *text = stats_json_finish(&j, &len);
		if (text != NULL)
			check_fail("%s: finish got \"%s\", want NULL\n", cases[i].name, text);
		const char *err = stats_json_error(&j);
		check_str(cases[i].name, "error", err != NULL ? err : "(none)", cases[i].error);
		stats_json_release(&j);
	}

	/* exactly the limit: fine */
	struct stats_json j;
	char out[100];
	stats_json_init(&j, 5);
	stats_json_cstring(&j, "abc");
	check_str("at the limit", "json", finish(&j, out, sizeof out), "\"abc\"");
	/* deepest nesting allowed */
	stats_json_init(&j, 500);
	for (int i = 0; i < STATS_JSON_DEPTH_MAX; i++)
		stats_json_array_open(&j);
	for (int i = 0; i < STATS_JSON_DEPTH_MAX; i++)
		stats_json_array_close(&j);
	check_size("deepest nesting", "len", strlen(finish(&j, out, sizeof out)),
	           2 * STATS_JSON_DEPTH_MAX);
	check_done();
}

/* ---- validator ---- */

struct check_case {
	const char *name;
	const char *in;
	size_t len;
	const char *want; /* NULL: valid */
};

static void test_check(void **state)
{
	(void)state;
	const struct check_case cases[] = {
	    {"object", BYTES("{\"a\":[1,-2.5e3,true,false,null,\"x\"]}"), NULL},
	    {"spaces", BYTES(" \t\r\n[ 1 , 2 ] \n"), NULL},
	    {"escapes", BYTES("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\""), NULL},
	    {"surrogate pair", BYTES("\"\\ud83d\\ude00\""), NULL},
	    {"UTF-8", BYTES("\"\xc3\xa9\xf0\x9f\x98\x80\""), NULL},
	    {"empty", BYTES(""), "value expected"},
	    {"trailing comma", BYTES("[1,]"), "value expected"},
	    {"two values", BYTES("1 2"), "text after the value"},
	    {"leading zero", BYTES("01"), "text after the value"},
	    {"bare dot", BYTES("1."), "bad number"},
	    {"minus alone", BYTES("-"), "bad number"},
	    {"plus sign", BYTES("+1"), "value expected"},
	    {"single quotes", BYTES("'a'"), "value expected"},
	    {"control in string", BYTES("\"a\nb\""), "control byte in a string"},
	    {"bad escape", BYTES("\"\\x\""), "bad escape"},
	    {"short unicode escape", BYTES("\"\\u12\""), "short \\u escape"},
	    {"bad unicode escape", BYTES("\"\\u12g4\""), "bad \\u escape"},
	    {"lone high surrogate", BYTES("\"\\ud83d\""), "lone high surrogate"},
	    {"lone low surrogate", BYTES("\"\\ude00\""), "lone low surrogate"},
	    {"invalid UTF-8", BYTES("\"\xff\""), "invalid UTF-8"},
	    {"unterminated", BYTES("\"abc"), "unterminated string"},
	    {"missing colon", BYTES("{\"a\" 1}"), "':' expected"},
	    {"number key", BYTES("{1:2}"), "member name expected"},
	    {"NaN", BYTES("NaN"), "value expected"},
	    {"truncated literal", BYTES("tru"), "bad literal"},
	    {"NUL after", BYTES("1\0"), "text after the value"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *got = stats_json_check(cases[i].in, cases[i].len);
		check_str(cases[i].name, "check", got != NULL ? got : "(valid)",
		          cases[i].want != NULL ? cases[i].want : "(valid)");
	}
	char deep[2 * (STATS_JSON_DEPTH_MAX + 1)];
	for (int i = 0; i <= STATS_JSON_DEPTH_MAX; i++) {
		deep[i] = '[';
		deep[2 * (STATS_JSON_DEPTH_MAX + 1) - 1 - i] = ']';
	}
	const char *got = stats_json_check(deep, sizeof deep);
	check_str("too deep", "check", got != NULL ? got : "(valid)", "nesting too deep");
	got = stats_json_check(deep + 1, sizeof deep - 2);
	check_str("deepest", "check", got != NULL ? got : "(valid)", "(valid)");
	check_done();
}

/* Random bytes (a fixed seed, so a failure repeats) must always encode to valid JSON. */
static void test_random_bytes(void **state)
{
	(void)state;
	uint32_t x = 2463534242u;
	char in[64];
	for (int round = 0; round < 20000; round++) {
		size_t n = round % sizeof in;
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			/* bias towards the interesting octets */
			in[i] = (char)(x % 3 == 0 ? 0x80 | (x >> 8) % 0x80 : (x >> 8));
		}
		const char *out = encode_string(in, n);
		const char *why = stats_json_check(out, strlen(out));
		if (why != NULL) {
			check_fail("random round %d: check got \"%s\" for \"%s\", want valid\n",
			           round, why, check_show(in, n));
			break;
		}
	}
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strings), cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_objects), cmocka_unit_test(test_misuse),
	    cmocka_unit_test(test_check),   cmocka_unit_test(test_random_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
