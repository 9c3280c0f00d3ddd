/*
 * test_codec.c: unit tests of relay/codec.c: every octet's value as a hexadecimal and as a
 * base64 digit, and MIME base64 decoding (line breaks, junk, padding, incomplete groups,
 * data after '='). A failing case prints "case: field got X, want Y".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/codec.h"
#include "tests/unit/lib_check.h"

static void test_digits(void **state)
{
	(void)state;
	static const char hex[] = "0123456789abcdef", HEX[] = "0123456789ABCDEF";
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (int c = 0; c < 256; c++) {
		char ch = (char)c, name[16];
		snprintf(name, sizeof name, "octet %d", c);
		const char *h = c != 0 ? strchr(hex, ch) : NULL,
		           *H = c != 0 ? strchr(HEX, ch) : NULL;
		int want_hex = h != NULL ? (int)(h - hex) : H != NULL ? (int)(H - HEX) : -1;
		check_u64(name, "hex", (uint64_t)codec_hex_digit(ch), (uint64_t)want_hex);
		const char *b = c != 0 ? strchr(b64, ch) : NULL;
		int want_b64 = b != NULL ? (int)(b - b64) : -1;
		check_u64(name, "base64", (uint64_t)codec_base64_digit(ch), (uint64_t)want_b64);
	}
	check_done();
}

struct mime_case {
	const char *in;
	const char *want;
	size_t want_len;
};

static const struct mime_case mime_cases[] = {
    {"", "", 0},
    {"aGVsbG8=", "hello", 5},
    {"aGVs\r\nbG8=\r\n", "hello", 5},
    {"aGVsbG8", "hello", 5},
    {" a G V s b G 8 = ", "hello", 5},
    {"aGVsbG8=aGVsbG8=", "hello", 5},
    {"!aGV*sbG8#", "hello", 5},
    {"AA==", "\0", 1},
    {"AAAA", "\0\0\0", 3},
    {"A", "", 0},
    {"====", "", 0},
    {"/+/+", "\xff\xef\xfe", 3},
};

static void test_mime(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof mime_cases / sizeof mime_cases[0]; i++) {
		const struct mime_case *c = &mime_cases[i];
		size_t len = strlen(c->in);
		char out[64];
		size_t n = codec_base64_decode_mime(c->in, len, out);
		const char *name = len > 0 ? check_show(c->in, len) : "(empty)";
		if (n > len / 4 * 3 + 3)
			check_fail("%s: %zu octets, past the promised room\n", name, n);
		check_bytes(name, "decoded", out, n, c->want, c->want_len);
	}
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digits),
	    cmocka_unit_test(test_mime),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
