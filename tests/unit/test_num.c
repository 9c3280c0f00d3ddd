/*
 * test_num.c: unit tests of relay/num.c, the bounded decimal parser. Table-driven; failures
 * print got/want.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/num.h"

struct num_case {
	const char *in;
	uint64_t max;
	int want_rc;
	uint64_t want;
};

static void test_parse(void **state)
{
	static const struct num_case cases[] = {
	    {"0", 10, 0, 0},
	    {"10", 10, 0, 10},
	    {"11", 10, -1, 0},
	    {"65535", 65535, 0, 65535},
	    {"65536", 65535, -1, 0},
	    {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
	    {"18446744073709551616", UINT64_MAX, -1, 0}, /* would overflow */
	    {"99999999999999999999999", UINT64_MAX, -1, 0},
	    {"9223372036854775807", INT64_MAX, 0, INT64_MAX},
	    {"9223372036854775808", INT64_MAX, -1, 0},
	    {"007", 10, 0, 7},
	    {"", 10, -1, 0},
	    {"-1", 10, -1, 0},
	    {"+1", 10, -1, 0},
	    {" 1", 10, -1, 0},
	    {"1 ", 10, -1, 0},
	    {"1x", 10, -1, 0},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t got = 0;
		int rc = num_parse_u64(cases[i].in, strlen(cases[i].in), cases[i].max, &got);
		if (rc != cases[i].want_rc || (rc == 0 && got != cases[i].want)) {
			print_error(
			    "\"%s\" (max %llu): got rc=%d value=%llu, want rc=%d value=%llu\n",
			    cases[i].in, (unsigned long long)cases[i].max, rc,
			    (unsigned long long)got, cases[i].want_rc,
			    (unsigned long long)cases[i].want);
			failures++;
		}
	}
	uint64_t v;
	assert_int_equal(num_parse_u64("12345", 3, 1000, &v), 0); /* length bounds the read */
	assert_int_equal(v, 123);
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
