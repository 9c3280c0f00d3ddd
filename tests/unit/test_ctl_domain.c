/*
 * test_ctl_domain.c: unit tests of relay/ctl_domain.c's pure part: the comparison of a DKIM
 * key record's text with a selector's key (RFC 6376 3.6.1 tags, 3.2 tag-list syntax), which
 * both "postinoctl domain check" and the daemon's DKIM DNS watcher rely on. The DNS lookups
 * and the SPF and DMARC checks are tested against dnsmasq in
 * tests/integration/test_domain_check.py. Table-driven; a failing case prints got/want.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/ctl_domain.h"

#define KEY   "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtest+key/AB=="
#define EDKEY "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

struct record_case {
	const char *name;
	const char *txt;
	size_t len; /* 0: strlen(txt) */
	enum dkkeys_algorithm alg;
	const char *want; /* NULL: the record publishes the key; else a part of the reason */
};

static const struct record_case cases[] = {
    {"full rsa record", "v=DKIM1; k=rsa; p=" KEY, 0, DKKEYS_ALG_RSA, NULL},
    {"without v= and k=", "p=" KEY, 0, DKKEYS_ALG_RSA, NULL},
    {"ed25519", "v=DKIM1;k=ed25519;p=" EDKEY, 0, DKKEYS_ALG_ED25519, NULL},
    {"k= in capitals", "v=DKIM1; k=RSA; p=" KEY, 0, DKKEYS_ALG_RSA, NULL},
    {"whitespace around everything", "  v = DKIM1 ;\tk= rsa ;  p =" KEY " ; ", 0, DKKEYS_ALG_RSA,
     NULL},
    {"p= split by spaces and tabs (joined strings)",
     "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEF AAOCAQ8AMIIBCgKCAQEA\ttest+key/AB==", 0,
     DKKEYS_ALG_RSA, NULL},
    {"trailing semicolon", "v=DKIM1; p=" KEY ";", 0, DKKEYS_ALG_RSA, NULL},
    {"unknown tags ignored", "v=DKIM1; n=notes here; t=y; x_y=1; p=" KEY, 0, DKKEYS_ALG_RSA, NULL},
    {"h= with sha256", "v=DKIM1; h=sha1:sha256; p=" KEY, 0, DKKEYS_ALG_RSA, NULL},
    {"s= star", "v=DKIM1; s=*; p=" KEY, 0, DKKEYS_ALG_RSA, NULL},
    {"s= email among others", "v=DKIM1; s=tlsrpt:email; p=" KEY, 0, DKKEYS_ALG_RSA, NULL},

    {"another key", "v=DKIM1; k=rsa; p=MIIBother", 0, DKKEYS_ALG_RSA, "p= is another key"},
    {"key with one more octet", "v=DKIM1; k=rsa; p=" KEY "A", 0, DKKEYS_ALG_RSA,
     "p= is another key"},
    {"revoked", "v=DKIM1; k=rsa; p=", 0, DKKEYS_ALG_RSA, "revoked"},
    {"revoked with spaces", "v=DKIM1; k=rsa; p=  ;", 0, DKKEYS_ALG_RSA, "revoked"},
    {"no p=", "v=DKIM1; k=rsa", 0, DKKEYS_ALG_RSA, "no p= tag"},
    {"k= of the other algorithm", "v=DKIM1; k=rsa; p=" EDKEY, 0, DKKEYS_ALG_ED25519, "k=rsa"},
    {"k= absent means rsa", "v=DKIM1; p=" EDKEY, 0, DKKEYS_ALG_ED25519, "k=rsa (the default)"},
    {"v= not first", "k=rsa; v=DKIM1; p=" KEY, 0, DKKEYS_ALG_RSA, "v= must be the first"},
    {"v= another version", "v=DKIM2; p=" KEY, 0, DKKEYS_ALG_RSA, "v= must be the first"},
    {"v= lowercase", "v=dkim1; p=" KEY, 0, DKKEYS_ALG_RSA, "v= must be the first"},
    {"missing semicolon", "v=DKIM1 p=" KEY, 0, DKKEYS_ALG_RSA, "v= must be the first"},
    {"h= without sha256", "v=DKIM1; h=sha1; p=" KEY, 0, DKKEYS_ALG_RSA, "h= does not allow"},
    {"s= without email", "v=DKIM1; s=tlsrpt; p=" KEY, 0, DKKEYS_ALG_RSA, "s= does not allow"},
    {"tag twice", "v=DKIM1; p=" KEY "; p=" KEY, 0, DKKEYS_ALG_RSA, "appears twice"},
    {"tag without =", "v=DKIM1; novalue; p=" KEY, 0, DKKEYS_ALG_RSA, "no '='"},
    {"tag without name", "v=DKIM1; =x; p=" KEY, 0, DKKEYS_ALG_RSA, "no name"},
    {"tag name with a dash", "v=DKIM1; a-b=1; p=" KEY, 0, DKKEYS_ALG_RSA, "tag name"},
    {"starts with a semicolon", "; v=DKIM1; p=" KEY, 0, DKKEYS_ALG_RSA, "starts with"},
    {"NUL octet", "v=DKIM1; p=" KEY "\0x", sizeof("v=DKIM1; p=" KEY "\0x") - 1, DKKEYS_ALG_RSA,
     "NUL"},
    {"empty", "", 0, DKKEYS_ALG_RSA, "no p= tag"},
    {"spf record at the name", "v=spf1 -all", 0, DKKEYS_ALG_RSA, "v= must be the first"},
};

static void test_record_check(void **state)
{
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct record_case *c = &cases[i];
		struct dkkeys_selector s;
		memset(&s, 0, sizeof s);
		snprintf(s.name, sizeof s.name, "sel");
		s.algorithm = c->alg;
		s.state = DKKEYS_STATE_PENDING;
		snprintf(s.public_key, sizeof s.public_key, "%s",
		         c->alg == DKKEYS_ALG_RSA ? KEY : EDKEY);
		char why[300] = "";
		size_t len = c->len ? c->len : strlen(c->txt);
		const char *got = ctl_domain_dkim_record_check(c->txt, len, &s, why, sizeof why);
		if (c->want == NULL && got != NULL) {
			print_error("%s: got \"%s\", want a match\n", c->name, got);
			failures++;
		} else if (c->want != NULL && (got == NULL || strstr(got, c->want) == NULL)) {
			print_error("%s: got %s%s%s, want a reason with \"%s\"\n", c->name,
			            got ? "\"" : "", got ? got : "a match", got ? "\"" : "",
			            c->want);
			failures++;
		}
	}
	if (failures > 0)
		fail_msg("%d case(s) failed", failures);
}

/* A p= longer than any key the store holds is refused without overflowing. */
static void test_record_check_long_key(void **state)
{
	static char txt[4 * DKKEYS_PUBLIC_MAX];
	struct dkkeys_selector s;
	memset(&s, 0, sizeof s);
	s.algorithm = DKKEYS_ALG_RSA;
	memset(s.public_key, 'A', DKKEYS_PUBLIC_MAX);
	int n = snprintf(txt, sizeof txt, "v=DKIM1; p=");
	memset(txt + n, 'A', sizeof txt - (size_t)n - 1);
	char why[300];
	const char *got = ctl_domain_dkim_record_check(txt, strlen(txt), &s, why, sizeof why);
	if (got == NULL || strstr(got, "another key") == NULL)
		fail_msg("got %s, want \"p= is another key...\"", got ? got : "a match");
	/* exactly the stored key's length matches */
	txt[n + DKKEYS_PUBLIC_MAX] = '\0';
	assert_null(ctl_domain_dkim_record_check(txt, strlen(txt), &s, why, sizeof why));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_check),
	    cmocka_unit_test(test_record_check_long_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
