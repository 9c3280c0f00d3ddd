/*
 * test_auth.c: unit tests of relay/auth.c: strict base64, SASL PLAIN decoding, scrypt hashes,
 * the success cache and CIDR matching. Table-driven; failures print got/want.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "relay/auth.h"

struct b64_case {
	const char *in;
	const char *want; /* NULL: must be refused */
	size_t want_len;
};

static void test_base64_decode(void **state)
{
	static const struct b64_case cases[] = {
	    {"", "", 0},
	    {"Zg==", "f", 1},
	    {"Zm8=", "fo", 2},
	    {"Zm9v", "foo", 3},
	    {"Zm9vYg==", "foob", 4},
	    {"AGFsaWNlAHNlY3JldA==", "\0alice\0secret", 13},
	    {"Zg=", NULL, 0},      /* length not a multiple of 4 */
	    {"Zg", NULL, 0},       /* padding required */
	    {"Z===", NULL, 0},     /* too much padding */
	    {"Zg==Zg==", NULL, 0}, /* data after padding */
	    {"Zm 9", NULL, 0},     /* whitespace */
	    {"Zm9*", NULL, 0},     /* bad character */
	    {"=Zm9", NULL, 0},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned char out[64];
		long n = auth_base64_decode(cases[i].in, strlen(cases[i].in), out, sizeof out);
		if (cases[i].want == NULL) {
			if (n != -1) {
				print_error("\"%s\": got length %ld, want refusal\n", cases[i].in,
				            n);
				failures++;
			}
		} else if (n != (long)cases[i].want_len ||
		           memcmp(out, cases[i].want, (size_t)n) != 0) {
			print_error("\"%s\": got length %ld, want %zu\n", cases[i].in, n,
			            cases[i].want_len);
			failures++;
		}
	}
	/* output buffer too small */
	unsigned char small[2];
	if (auth_base64_decode("Zm9v", 4, small, sizeof small) != -1) {
		print_error("small buffer: got success, want -1\n");
		failures++;
	}
	assert_int_equal(failures, 0);
}

static void test_base64_roundtrip(void **state)
{
	unsigned char in[256], back[256];
	char enc[400];
	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof in; len++) {
		long e = auth_base64_encode(in, len, enc, sizeof enc);
		assert_true(e >= 0);
		long d = auth_base64_decode(enc, (size_t)e, back, sizeof back);
		if (d != (long)len || memcmp(in, back, len) != 0)
			fail_msg("length %zu: got %ld bytes back, want %zu", len, d, len);
	}
}

struct plain_case {
	const char *raw;
	size_t raw_len;
	int want_rc;
	const char *user, *pass;
};

static void test_plain(void **state)
{
	static const struct plain_case cases[] = {
	    {"\0alice\0secret", 13, 0, "alice", "secret"},
	    {"alice\0alice\0secret", 18, 0, "alice", "secret"},
	    {"bob\0alice\0secret", 16, -1, NULL, NULL}, /* acting for another user */
	    {"\0alice\0", 7, -1, NULL, NULL},           /* empty password */
	    {"\0\0secret", 8, -1, NULL, NULL},          /* empty user */
	    {"\0alice", 6, -1, NULL, NULL},             /* no second NUL */
	    {"alice secret", 12, -1, NULL, NULL},
	    {"\0alice\0sec\0ret", 14, -1, NULL, NULL}, /* NUL inside the password */
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char b64[128], user[256], pass[1025];
		auth_base64_encode((const unsigned char *)cases[i].raw, cases[i].raw_len, b64,
		                   sizeof b64);
		int rc = auth_plain_decode(b64, strlen(b64), user, sizeof user, pass, sizeof pass);
		if (rc != cases[i].want_rc || (rc == 0 && (strcmp(user, cases[i].user) != 0 ||
		                                           strcmp(pass, cases[i].pass) != 0))) {
			print_error("case %zu: got rc=%d, want %d\n", i, rc, cases[i].want_rc);
			failures++;
		}
	}
	char user[256], pass[1025];
	if (auth_plain_decode("not base64!", 11, user, sizeof user, pass, sizeof pass) != -1) {
		print_error("bad base64: got success, want -1\n");
		failures++;
	}
	assert_int_equal(failures, 0);
}

static void test_password_hash(void **state)
{
	char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
	assert_int_equal(auth_password_hash("correct horse", h1, sizeof h1), 0);
	assert_int_equal(auth_password_hash("correct horse", h2, sizeof h2), 0);
	if (strncmp(h1, "$scrypt$ln=14,r=8,p=1$", 22) != 0)
		fail_msg("got hash \"%s\", want the $scrypt$ln=14,r=8,p=1$ prefix", h1);
	assert_string_not_equal(h1, h2); /* fresh salt each time */
	assert_true(auth_password_verify("correct horse", h1));
	assert_true(auth_password_verify("correct horse", h2));
	assert_false(auth_password_verify("correct horsE", h1));
	assert_false(auth_password_verify("", h1));
	/* malformed or hostile stored values never verify (and never allocate wildly) */
	assert_false(auth_password_verify("x", ""));
	assert_false(
	    auth_password_verify("x", "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5"));
	assert_false(auth_password_verify("x", "$pbkdf2$whatever"));
	char small[20];
	assert_int_equal(auth_password_hash("x", small, sizeof small), -1);
}

static void test_password_generate(void **state)
{
	char a[25], b[25];
	assert_int_equal(auth_password_generate(a, 24), 0);
	assert_int_equal(auth_password_generate(b, 24), 0);
	assert_int_equal(strlen(a), 24);
	assert_string_not_equal(a, b);
	for (size_t i = 0; i < 24; i++)
		if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= 'A' && a[i] <= 'Z') ||
		      (a[i] >= '0' && a[i] <= '9')))
			fail_msg("got character 0x%02x, want a letter or digit",
			         (unsigned char)a[i]);
}

static void test_cache(void **state)
{
	struct auth_cache *c = auth_cache_new(60);
	assert_non_null(c);
	assert_false(auth_cache_hit(c, "alice", "pw", "$h1", 1000));
	auth_cache_put(c, "alice", "pw", "$h1", 1000);
	assert_true(auth_cache_hit(c, "alice", "pw", "$h1", 1059));
	assert_false(auth_cache_hit(c, "alice", "pw", "$h1", 1060)); /* expired */
	assert_false(auth_cache_hit(c, "alice", "pW", "$h1", 1001)); /* other password */
	assert_false(auth_cache_hit(c, "alicf", "pw", "$h1", 1001)); /* other user */
	assert_false(auth_cache_hit(c, "alice", "pw", "$h2", 1001)); /* password changed */
	/* "ab"+"c" must not collide with "a"+"bc" */
	auth_cache_put(c, "ab", "c", "$h", 1000);
	assert_false(auth_cache_hit(c, "a", "bc", "$h", 1001));
	auth_cache_free(c);
	struct auth_cache *off = auth_cache_new(0);
	auth_cache_put(off, "alice", "pw", "$h1", 1000);
	assert_false(auth_cache_hit(off, "alice", "pw", "$h1", 1000));
	auth_cache_free(off);
	auth_cache_free(NULL);
}

struct net_case {
	const char *cidrs;
	const char *addr;
	bool want;
};

static void test_net_contains(void **state)
{
	static const struct net_case cases[] = {
	    {"10.1.2.0/24", "10.1.2.77", true},
	    {"10.1.2.0/24", "10.1.3.1", false},
	    {"10.1.2.0/23", "10.1.3.1", true},
	    {"127.0.0.0/8", "127.255.0.1", true},
	    {"1.2.3.4", "1.2.3.4", true},
	    {"1.2.3.4", "1.2.3.5", false},
	    {"0.0.0.0/0", "8.8.8.8", true},
	    {"10.0.0.0/8 192.168.0.0/16", "192.168.9.9", true},
	    {"10.0.0.0/8,192.168.0.0/16", "192.168.9.9", true},
	    {"::1/128", "::1", true},
	    {"2001:db8::/32", "2001:db8:ffff::1", true},
	    {"2001:db8::/32", "2001:db9::1", false},
	    {"10.0.0.0/8", "::ffff:10.9.9.9", true}, /* v4-mapped counts as IPv4 */
	    {"10.0.0.0/8", "::1", false},
	    {"garbage 10.0.0.0/8", "10.0.0.1", true}, /* bad entries never match, others do */
	    {"10.0.0.0/33", "10.0.0.1", false},
	    {"", "10.0.0.1", false},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof ss);
		struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, cases[i].addr, &in4->sin_addr) == 1) {
			in4->sin_family = AF_INET;
		} else {
			assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &in6->sin6_addr), 1);
			in6->sin6_family = AF_INET6;
		}
		bool got = auth_net_contains(cases[i].cidrs, (struct sockaddr *)&ss);
		if (got != cases[i].want) {
			print_error("\"%s\" contains %s: got %d, want %d\n", cases[i].cidrs,
			            cases[i].addr, got, cases[i].want);
			failures++;
		}
	}
	assert_int_equal(auth_cidr_check("10.0.0.0/8"), 0);
	assert_int_equal(auth_cidr_check("::/0"), 0);
	assert_int_equal(auth_cidr_check("10.0.0.0/"), -1);
	assert_int_equal(auth_cidr_check("10.0.0/8"), -1);
	assert_int_equal(auth_cidr_check("10.0.0.0/8/8"), -1);
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64_decode),
	    cmocka_unit_test(test_base64_roundtrip),
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_password_hash),
	    cmocka_unit_test(test_password_generate),
	    cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_net_contains),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
