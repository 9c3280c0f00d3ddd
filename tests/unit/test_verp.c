/*
 * test_verp.c: unit tests of relay/verp.c: known-answer tokens (computed independently with
 * Python's hmac and base64 modules), round trips over ids and recipient indexes, tokens in
 * upper case or inside an address or angle brackets, truncated and overlong tokens, foreign
 * characters, every single-character forgery of a valid token, another key, a short key, and
 * every argument error of verp_address_make. A failing case prints "case: field got X, want
 * Y".
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/verp.h"
#include "tests/unit/lib_check.h"

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN (sizeof key - 1)

struct known {
	const char *id;
	unsigned index;
	const char *local;
};

/* bounces+base32(id || index || HMAC-SHA256(key, "postino-verp-v1" || id || index)[0..8)) */
static const struct known known[] = {
    {"0123456789abcdef", 3, "bounces+aerukz4jvpg66aaaaabwgvry5iifzp2p"},
    {"FFFFFFFFFFFFFFFF", 4294967295u, "bounces+7777777777777777777rivql7ekngl64"},
    {"0000000000000000", 0, "bounces+aaaaaaaaaaaaaaaaaaaiiju5bbdjvivg"},
};

static void test_known_answers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		char out[VERP_ADDRESS_MAX], want[VERP_ADDRESS_MAX];
		int rc = verp_address_make(key, KEYLEN, known[i].id, known[i].index,
		                           "bounce.example.org", out, sizeof out);
		snprintf(want, sizeof want, "%s@bounce.example.org", known[i].local);
		check_u64(known[i].id, "rc", (uint64_t)rc, 0);
		check_str(known[i].id, "address", out, want);
		char id[VERP_ID_LEN + 1], lower_id[VERP_ID_LEN + 1];
		unsigned idx = 12345;
		enum verp_status st = verp_address_parse(key, KEYLEN, out, id, &idx);
		for (size_t k = 0; k <= VERP_ID_LEN; k++)
			lower_id[k] = (char)tolower((unsigned char)known[i].id[k]);
		check_str(known[i].id, "parse", verp_status_name(st), "ok");
		check_str(known[i].id, "id", id, lower_id);
		check_u64(known[i].id, "index", idx, known[i].index);
	}
	check_done();
}

static void test_round_trip(void **state)
{
	(void)state;
	static const unsigned indexes[] = {0, 1, 99, 255, 256, 65535, 65536, 1000000, 4294967295u};
	char id[VERP_ID_LEN + 1];
	for (unsigned n = 0; n < 64; n++) {
		for (int k = 0; k < VERP_ID_LEN; k++)
			id[k] = "0123456789abcdef"[(n * 7 + (unsigned)k * 13) % 16];
		id[VERP_ID_LEN] = '\0';
		for (size_t j = 0; j < sizeof indexes / sizeof indexes[0]; j++) {
			char out[VERP_ADDRESS_MAX], got[VERP_ID_LEN + 1], name[64];
			unsigned idx;
			snprintf(name, sizeof name, "%s/%u", id, indexes[j]);
			if (verp_address_make(key, KEYLEN, id, indexes[j], "b.example.net", out,
			                      sizeof out) != 0) {
				check_fail("%s: make failed\n", name);
				continue;
			}
			enum verp_status st = verp_address_parse(key, KEYLEN, out, got, &idx);
			check_str(name, "status", verp_status_name(st), "ok");
			check_str(name, "id", got, id);
			check_u64(name, "index", idx, indexes[j]);
			check_size(name, "local part length", (size_t)(strchr(out, '@') - out),
			           sizeof VERP_PREFIX - 1 + VERP_TOKEN_LEN);
		}
	}
	check_done();
}

struct parse_case {
	const char *name;
	const char *in;
	enum verp_status want;
};

#define TOK "aerukz4jvpg66aaaaabwgvry5iifzp2p"

static const struct parse_case parse_cases[] = {
    {"local part", "bounces+" TOK, VERP_OK},
    {"address", "bounces+" TOK "@bounce.example.org", VERP_OK},
    {"any domain", "bounces+" TOK "@other.example.com", VERP_OK},
    {"angle brackets", "<bounces+" TOK "@bounce.example.org>", VERP_OK},
    {"upper-case token", "bounces+AERUKZ4JVPG66AAAAABWGVRY5IIFZP2P@bounce.example.org", VERP_OK},
    {"upper-case everything", "BOUNCES+AERUKZ4JVPG66AAAAABWGVRY5IIFZP2P@BOUNCE.EXAMPLE.ORG",
     VERP_OK},
    {"mixed case", "Bounces+aErUkZ4jVpG66aAaAaBwGvRy5IiFzP2p", VERP_OK},
    {"truncated by one", "bounces+aerukz4jvpg66aaaaabwgvry5iifzp2", VERP_MALFORMED},
    {"truncated to half", "bounces+aerukz4jvpg66aaa@bounce.example.org", VERP_MALFORMED},
    {"one too many", "bounces+" TOK "a", VERP_MALFORMED},
    {"digit 0 is not base32", "bounces+0erukz4jvpg66aaaaabwgvry5iifzp2p", VERP_MALFORMED},
    {"digit 1 is not base32", "bounces+aerukz4jvpg66aaaaabwgvry5iifzp21", VERP_MALFORMED},
    {"digit 8 is not base32", "bounces+aerukz4jvpg66aaaaabwgvry5iifzp28", VERP_MALFORMED},
    {"padding is not allowed", "bounces+aerukz4jvpg66aaaaabwgvry5iifzp2=", VERP_MALFORMED},
    {"empty token", "bounces+", VERP_MALFORMED},
    {"empty token with domain", "bounces+@bounce.example.org", VERP_MALFORMED},
    {"empty", "", VERP_NOT_VERP},
    {"other local part", "postmaster@bounce.example.org", VERP_NOT_VERP},
    {"no plus", "bounces" TOK, VERP_NOT_VERP},
    {"other separator", "bounces-" TOK, VERP_NOT_VERP},
    {"prefix inside", "xbounces+" TOK, VERP_NOT_VERP},
    {"forged mac", "bounces+aerukz4jvpg66aaaaabwgvry5iifzp2q", VERP_BAD_MAC},
    {"forged id", "bounces+berukz4jvpg66aaaaabwgvry5iifzp2p", VERP_BAD_MAC},
    {"index 4 with the mac of index 3", "bounces+aerukz4jvpg66aaaaacggvry5iifzp2p", VERP_BAD_MAC},
    {"token made with another key", "bounces+aerukz4jvpg66aaaaabqeicpaoi6nqp6", VERP_BAD_MAC},
};

static void test_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const struct parse_case *c = &parse_cases[i];
		char id[VERP_ID_LEN + 1];
		unsigned idx = 0;
		enum verp_status st = verp_address_parse(key, KEYLEN, c->in, id, &idx);
		check_str(c->name, "status", verp_status_name(st), verp_status_name(c->want));
		if (st == VERP_OK && c->want == VERP_OK) {
			check_str(c->name, "id", id, "0123456789abcdef");
			check_u64(c->name, "index", idx, 3);
		}
	}
	check_done();
}

/* Every change of one character of a valid token is caught: all 160 bits are covered. */
static void test_single_character_forgeries(void **state)
{
	(void)state;
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	char in[] = "bounces+" TOK "@bounce.example.org";
	size_t start = sizeof VERP_PREFIX - 1;
	unsigned tried = 0;
	for (size_t pos = start; pos < start + VERP_TOKEN_LEN; pos++) {
		char orig = in[pos];
		for (size_t a = 0; a < 32; a++) {
			if (alphabet[a] == orig)
				continue;
			in[pos] = alphabet[a];
			char id[VERP_ID_LEN + 1];
			unsigned idx;
			enum verp_status st = verp_address_parse(key, KEYLEN, in, id, &idx);
			if (st != VERP_BAD_MAC)
				check_fail("%s: status got %s, want bad_mac\n", in,
				           verp_status_name(st));
			tried++;
		}
		in[pos] = orig;
	}
	check_u64("forgeries", "tried", tried, VERP_TOKEN_LEN * 31);

	char id[VERP_ID_LEN + 1];
	unsigned idx;
	static const unsigned char other[] = "another key of thirty-two octets";
	check_str("another key", "status",
	          verp_status_name(verp_address_parse(other, sizeof other - 1, in, id, &idx)),
	          "bad_mac");
	check_str("key too short", "status",
	          verp_status_name(verp_address_parse(key, VERP_KEY_MIN - 1, in, id, &idx)),
	          "bad_mac");
	char out[VERP_ADDRESS_MAX];
	assert_int_equal(verp_address_make(key, VERP_KEY_MIN, "0123456789abcdef", 7, "x.example",
	                                   out, sizeof out),
	                 0);
	check_str("minimum key", "status",
	          verp_status_name(verp_address_parse(key, VERP_KEY_MIN, out, id, &idx)), "ok");
	check_str("minimum key token under the full key", "status",
	          verp_status_name(verp_address_parse(key, KEYLEN, out, id, &idx)), "bad_mac");
	check_done();
}

struct make_case {
	const char *name;
	size_t keylen;
	const char *id;
	const char *domain;
	size_t outlen;
	int want;
};

#define EXACT (sizeof "bounces+" TOK "@bounce.example.org")

static const struct make_case make_cases[] = {
    {"exact room", KEYLEN, "0123456789abcdef", "bounce.example.org", EXACT, 0},
    {"one octet short", KEYLEN, "0123456789abcdef", "bounce.example.org", EXACT - 1, -1},
    {"no room", KEYLEN, "0123456789abcdef", "bounce.example.org", 0, -1},
    {"id of 15 digits", KEYLEN, "0123456789abcde", "bounce.example.org", EXACT, -1},
    {"id of 17 digits", KEYLEN, "0123456789abcdef0", "bounce.example.org", EXACT, -1},
    {"id not hex", KEYLEN, "0123456789abcdeg", "bounce.example.org", EXACT, -1},
    {"empty domain", KEYLEN, "0123456789abcdef", "", EXACT, -1},
    {"domain with @", KEYLEN, "0123456789abcdef", "a@b.example", EXACT, -1},
    {"domain with space", KEYLEN, "0123456789abcdef", "b example", EXACT, -1},
    {"key too short", VERP_KEY_MIN - 1, "0123456789abcdef", "bounce.example.org", EXACT, -1},
    {"empty key", 0, "0123456789abcdef", "bounce.example.org", EXACT, -1},
};

static void test_make_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof make_cases / sizeof make_cases[0]; i++) {
		const struct make_case *c = &make_cases[i];
		char out[VERP_ADDRESS_MAX + 8];
		int rc = verp_address_make(key, c->keylen, c->id, 3, c->domain, out, c->outlen);
		check_u64(c->name, "rc", (uint64_t)rc, (uint64_t)c->want);
		if (rc == 0)
			check_str(c->name, "address", out, "bounces+" TOK "@bounce.example.org");
	}
	char dom[300], out[VERP_ADDRESS_MAX];
	memset(dom, 'a', 253);
	dom[253] = '\0';
	check_u64(
	    "domain of 253", "rc",
	    (uint64_t)verp_address_make(key, KEYLEN, "0123456789abcdef", 1, dom, out, sizeof out),
	    0);
	dom[253] = 'a';
	dom[254] = '\0';
	check_u64(
	    "domain of 254", "rc",
	    (uint64_t)verp_address_make(key, KEYLEN, "0123456789abcdef", 1, dom, out, sizeof out),
	    (uint64_t)-1);
	check_str("names", "unknown", verp_status_name((enum verp_status)99), "unknown");
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_answers), cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_parse),         cmocka_unit_test(test_single_character_forgeries),
	    cmocka_unit_test(test_make_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
