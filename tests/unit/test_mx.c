/*
 * test_mx.c: unit tests of mx_order (relay/mx.c): preference order, shuffling of equal
 * preferences only, duplicates, the null MX of RFC 7505, records that are not MX answers, and
 * the MX_HOSTS_MAX most preferred hosts kept. Table-driven; failures print got/want.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/mx.h"

struct rr {
	const char *exchange;
	uint16_t preference;
	uint32_t ttl;
	bool match;
};

/* A response holding the given MX records (owner "d.test"). */
static void response_fill(struct dns_response *r, const struct rr *rrs, size_t n)
{
	memset(r, 0, sizeof *r);
	r->qtype = DNS_TYPE_MX;
	r->negative_ttl = -1;
	for (size_t i = 0; i < n && rrs[i].exchange != NULL; i++) {
		struct dns_record *rec = &r->answers[r->count++];
		rec->type = DNS_TYPE_MX;
		rec->ttl = rrs[i].ttl;
		rec->match = rrs[i].match;
		rec->owner = "d.test";
		rec->rdata.mx.exchange = rrs[i].exchange;
		rec->rdata.mx.preference = rrs[i].preference;
		r->matches += rrs[i].match;
	}
}

static uint32_t state32 = 2463534242u;
static uint32_t fake_random(void) /* xorshift32: repeatable */
{
	state32 ^= state32 << 13;
	state32 ^= state32 >> 17;
	state32 ^= state32 << 5;
	return state32;
}

static void hosts_text(const struct mx_result *res, char *out, size_t outlen)
{
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < res->nhosts && n < outlen; i++)
		n += (size_t)snprintf(out + n, outlen - n, "%s%s/%u", i ? " " : "",
		                      res->hosts[i].name, res->hosts[i].preference);
}

static void test_order(void **state)
{
	static const struct {
		const char *name;
		struct rr rrs[6];
		enum mx_status status;
		const char *want; /* hosts in order; NULL: only check the status */
		uint32_t ttl;
	} cases[] = {
	    {"preference order",
	     {{"b.test", 20, 300, true}, {"a.test", 10, 60, true}, {"c.test", 30, 900, true}},
	     MX_OK,
	     "a.test/10 b.test/20 c.test/30",
	     60},
	    {"duplicates removed",
	     {{"a.test", 10, 300, true}, {"a.test", 10, 300, true}, {"b.test", 5, 300, true}},
	     MX_OK,
	     "b.test/5 a.test/10",
	     300},
	    {"null MX", {{"", 0, 3600, true}}, MX_NULL, NULL, 3600},
	    {"empty exchange among others is skipped",
	     {{"", 0, 300, true}, {"a.test", 10, 300, true}},
	     MX_OK,
	     "a.test/10",
	     300},
	    {"records of other owners or types ignored",
	     {{"x.test", 1, 300, false}, {"a.test", 10, 300, true}},
	     MX_OK,
	     "a.test/10",
	     300},
	    {"no MX at all", {{NULL, 0, 0, false}}, MX_NOTFOUND, NULL, 0},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct dns_response r;
		response_fill(&r, cases[i].rrs, 6);
		struct mx_result res;
		mx_order(&r, NULL, &res);
		char got[512];
		hosts_text(&res, got, sizeof got);
		if (res.status != cases[i].status ||
		    (cases[i].want != NULL && strcmp(got, cases[i].want) != 0) ||
		    res.ttl != cases[i].ttl) {
			print_error("%s: got %s [%s] ttl=%u, want %s [%s] ttl=%u\n", cases[i].name,
			            mx_status_name(res.status), got, res.ttl,
			            mx_status_name(cases[i].status),
			            cases[i].want ? cases[i].want : "", cases[i].ttl);
			failures++;
		}
		if (res.status == MX_NULL && strstr(res.reply, "556 5.1.10") != res.reply) {
			print_error("%s: got reply \"%s\", want 556 5.1.10\n", cases[i].name,
			            res.reply);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* Equal preferences come out in every order over many shuffles; unequal ones never move. */
static void test_shuffle_equal_only(void **state)
{
	static const struct rr rrs[] = {{"z.test", 50, 60, true},
	                                {"a.test", 10, 60, true},
	                                {"b.test", 10, 60, true},
	                                {"c.test", 10, 60, true}};
	struct dns_response r;
	response_fill(&r, rrs, 4);
	int first_seen[3] = {0, 0, 0};
	for (int k = 0; k < 300; k++) {
		struct mx_result res;
		mx_order(&r, fake_random, &res);
		assert_int_equal(res.nhosts, 4);
		if (strcmp(res.hosts[3].name, "z.test") != 0)
			fail_msg("round %d: got %s last, want z.test (preference 50)", k,
			         res.hosts[3].name);
		first_seen[res.hosts[0].name[0] - 'a']++;
	}
	for (int i = 0; i < 3; i++)
		if (first_seen[i] < 30)
			fail_msg("host %c.test came first %d times in 300 shuffles, want about 100",
			         'a' + i, first_seen[i]);
}

/* More than MX_HOSTS_MAX records: the most preferred are kept. */
static void test_keeps_most_preferred(void **state)
{
	static char names[40][16];
	struct rr rrs[40];
	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof names[i], "h%02d.test", i);
		rrs[i] = (struct rr){names[i], (uint16_t)(100 - i), 60, true};
	}
	struct dns_response r;
	response_fill(&r, rrs, 40);
	struct mx_result res;
	mx_order(&r, NULL, &res);
	assert_int_equal(res.nhosts, MX_HOSTS_MAX);
	for (size_t i = 0; i < MX_HOSTS_MAX; i++)
		if (res.hosts[i].preference != 61 + i)
			fail_msg("host %zu: got preference %u, want %zu", i,
			         res.hosts[i].preference, 61 + i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order),
	    cmocka_unit_test(test_shuffle_equal_only),
	    cmocka_unit_test(test_keeps_most_preferred),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
