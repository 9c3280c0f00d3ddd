/*
 * test_dkkeys.c: unit tests of dkim/dkkeys.c (the key store on disk) and relay/ctl_dkim.c
 * (the postinoctl dkim commands): names, keygen and default selectors, import of every kind
 * of key file, file and folder modes, DNS record text and its 255-octet strings, the selector
 * life cycle (rotate, activate, retire, delete), walking the store, and the commands' exit
 * codes and output. Table-driven; a failing case prints "name: got X, want Y".
 *
 * Fixtures: tests/fixtures/dkim/TEST-ONLY-*.pem, keys made for these tests and nothing else.
 * Run from the top of the tree (make unit does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dkim/dkkeys.h"
#include "relay/buf.h"
#include "relay/config.h"
#include "relay/ctl_dkim.h"

#define T0 1700000000LL /* 2023-11-14 22:13:20 UTC: default selectors p202311r, p202311e */

/* The public keys of the fixtures, from `openssl pkey -pubout -outform DER` (the Ed25519
 * one: its last 32 octets), base64. */
#define ED25519_P "JFkNL4CcpDq+V3kxTiEvP9x4en8oiu8Vziu0UqP2tYY="
#define RSA2048_P                                                                                  \
	"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwxOCuIr3OeiwXNGsILXP0Wr3zr3p7Q2GQ0iytzb6WN3e" \
	"mo"                                                                                       \
	"vFALJAdh9fS/X3yYV8f8A0eUJTHrNp0KVz/"                                                      \
	"b9eDpVp+PAXmTjEJJ0dhcRdYJHpR4hOwHlchBXV3MiaAYRXMRGR4MP"                                   \
	"VspHW2nAhkveITjKZAPA+gU/lK5MtLVj/HNXch+MENDDPPhviQxleHHOE1m3NA0wt1VSy6ae/"                \
	"gt1f3rQKxFAbGOkQ"                                                                         \
	"5YEGZY7cCU96wRqLug8xVyUGb2fSKZehP5wWe6xAefp3h4guWwpIpTJ465jHnmmkOGOM5xyYrVt5LMqZJTPSWrQq" \
	"y"                                                                                        \
	"odwZQx7ZmOphQnKJtDv2N4T5jCkLwIDAQAB"

static char fixtures[512]; /* short, so that paths made from it fit PATH_MAX */

static int fixtures_find(void)
{
	static const char *const tries[] = {"tests/fixtures/dkim", "../../tests/fixtures/dkim",
	                                    "../../../tests/fixtures/dkim"};
	struct stat st;
	for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
		char probe[PATH_MAX];
		snprintf(probe, sizeof probe, "%s/TEST-ONLY-rsa2048.pem", tries[i]);
		if (stat(probe, &st) == 0) {
			snprintf(fixtures, sizeof fixtures, "%s", tries[i]);
			return 0;
		}
	}
	fprintf(stderr,
	        "test_dkkeys: tests/fixtures/dkim not found: run from the top of the tree\n");
	return -1;
}

static int group_setup(void **state)
{
	return fixtures_find();
}

static char *store_new(void)
{
	char *dir = strdup("/tmp/test_dkkeys-XXXXXX");
	assert_non_null(dir);
	assert_non_null(mkdtemp(dir));
	return dir;
}

static void store_remove(char *dir)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(dir);
}

static const char *fixture(const char *name)
{
	static char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", fixtures, name);
	return path;
}

static unsigned file_mode(const char *dir, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	if (stat(path, &st) == -1)
		return 01000; /* "missing" */
	return (unsigned)(st.st_mode & 0777);
}

/* ---- names ---- */

struct name_case {
	const char *in;
	const char *want; /* NULL: refused */
};

static void test_domain_names(void **state)
{
	static const struct name_case cases[] = {
	    {"example.com", "example.com"},
	    {"Mail.Example.COM", "mail.example.com"},
	    {"xn--bcher-kva.example", "xn--bcher-kva.example"},
	    {"a-b.c1.example", "a-b.c1.example"},
	    {"", NULL},
	    {".example.com", NULL},
	    {"example.com.", NULL},
	    {"exa..mple", NULL},
	    {"-example.com", NULL},
	    {"example-.com", NULL},
	    {"exa_mple.com", NULL},
	    {"exa mple.com", NULL},
	    {"../etc", NULL},
	    {"a/b.example", NULL},
	    {"b\xc3\xbc"
	     "cher.example",
	     NULL},
	    {"a23456789012345678901234567890123456789012345678901234567890123.com",
	     "a23456789012345678901234567890123456789012345678901234567890123.com"},
	    {"a234567890123456789012345678901234567890123456789012345678901234.com", NULL},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[DKKEYS_DOMAIN_MAX + 1] = "";
		int rc = dkkeys_domain_normalize(cases[i].in, out, sizeof out);
		const char *got = rc == 0 ? out : "(refused)";
		const char *want = cases[i].want != NULL ? cases[i].want : "(refused)";
		if (strcmp(got, want) != 0) {
			print_error("domain \"%s\": got %s, want %s\n", cases[i].in, got, want);
			failures++;
		}
	}
	/* 254 octets is one too many */
	char longname[300];
	memset(longname, 'a', sizeof longname);
	for (size_t i = 63; i < 254; i += 64)
		longname[i] = '.';
	longname[254] = '\0';
	char out[DKKEYS_DOMAIN_MAX + 1];
	if (dkkeys_domain_normalize(longname, out, sizeof out) != -1) {
		print_error("254-octet domain: got accepted, want refused\n");
		failures++;
	}
	longname[253] = '\0';
	if (dkkeys_domain_normalize(longname, out, sizeof out) != 0) {
		print_error("253-octet domain: got refused, want accepted\n");
		failures++;
	}
	assert_int_equal(failures, 0);
}

static void test_selector_names(void **state)
{
	static const struct name_case cases[] = {
	    {"p202311r", "ok"},
	    {"s1", "ok"},
	    {"mail.2024", "ok"},
	    {"a-b", "ok"},
	    {"", NULL},
	    {"UPPER", NULL},
	    {"a_b", NULL},
	    {"a/b", NULL},
	    {"..", NULL},
	    {".a", NULL},
	    {"a.", NULL},
	    {"-a", NULL},
	    {"a b", NULL},
	    {"a234567890123456789012345678901234567890123456789012345678901234", NULL},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = dkkeys_selector_check(cases[i].in);
		const char *got = rc == 0 ? "ok" : "(refused)";
		const char *want = cases[i].want != NULL ? "ok" : "(refused)";
		if (strcmp(got, want) != 0) {
			print_error("selector \"%s\": got %s, want %s\n", cases[i].in, got, want);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* ---- keygen ---- */

static void test_keygen(void **state)
{
	char *dir = store_new(), err[512];
	struct dkkeys_selector s;
	int failures = 0;

	/* the first key of an algorithm is active, with the month's default name */
	assert_int_equal(dkkeys_key_generate(dir, "Example.COM", NULL, DKKEYS_ALG_RSA, 1024, T0, &s,
	                                     err, sizeof err),
	                 0);
	if (strcmp(s.name, "p202311r") != 0 || s.state != DKKEYS_STATE_ACTIVE || s.bits != 1024 ||
	    s.algorithm != DKKEYS_ALG_RSA || s.created != T0) {
		print_error("first rsa: got %s %s %u, want p202311r active 1024\n", s.name,
		            dkkeys_state_name(s.state), s.bits);
		failures++;
	}
	/* the next one of the same algorithm is pending, with a counter */
	assert_int_equal(dkkeys_key_generate(dir, "example.com", NULL, DKKEYS_ALG_RSA, 1024, T0, &s,
	                                     err, sizeof err),
	                 0);
	if (strcmp(s.name, "p202311r2") != 0 || s.state != DKKEYS_STATE_PENDING) {
		print_error("second rsa: got %s %s, want p202311r2 pending\n", s.name,
		            dkkeys_state_name(s.state));
		failures++;
	}
	assert_int_equal(dkkeys_key_generate(dir, "example.com", NULL, DKKEYS_ALG_ED25519, 0, T0,
	                                     &s, err, sizeof err),
	                 0);
	if (strcmp(s.name, "p202311e") != 0 || s.state != DKKEYS_STATE_ACTIVE || s.bits != 256 ||
	    strlen(s.public_key) != 44) {
		print_error("first ed25519: got %s %s %u p=%s, want p202311e active 256 and a "
		            "44-character p=\n",
		            s.name, dkkeys_state_name(s.state), s.bits, s.public_key);
		failures++;
	}
	assert_int_equal(dkkeys_key_generate(dir, "example.com", "mine", DKKEYS_ALG_ED25519, 0, T0,
	                                     &s, err, sizeof err),
	                 0);

	/* modes: folders 0700, files 0600 */
	static const struct {
		const char *rel;
		unsigned want;
	} modes[] = {
	    {"dkim", 0700},
	    {"dkim/example.com", 0700},
	    {"dkim/example.com/selectors", 0600},
	    {"dkim/example.com/p202311r.pem", 0600},
	    {"dkim/example.com/p202311e.pem", 0600},
	    {"dkim/example.com/mine.pem", 0600},
	    {"dkim/generation", 0600},
	};
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		unsigned got = file_mode(dir, modes[i].rel);
		if (got != modes[i].want) {
			print_error("mode of %s: got %o, want %o\n", modes[i].rel, got,
			            modes[i].want);
			failures++;
		}
	}

	/* what the store reads back */
	struct dkkeys_domain *d = malloc(sizeof *d);
	assert_non_null(d);
	assert_int_equal(dkkeys_domain_read(dir, "EXAMPLE.com", d, err, sizeof err), 0);
	static const char *const want_names[] = {"p202311r", "p202311r2", "p202311e", "mine"};
	if (d->count != 4) {
		print_error("selectors: got %zu, want 4\n", d->count);
		failures++;
	}
	for (size_t i = 0; i < d->count && i < 4; i++) {
		if (strcmp(d->sel[i].name, want_names[i]) != 0) {
			print_error("selector %zu: got %s, want %s\n", i, d->sel[i].name,
			            want_names[i]);
			failures++;
		}
	}
	free(d);

	/* refusals */
	static const struct {
		const char *name, *domain, *selector;
		enum dkkeys_algorithm alg;
		unsigned bits;
		const char *want;
	} bad[] = {
	    {"taken selector", "example.com", "mine", DKKEYS_ALG_ED25519, 0, "already has"},
	    {"bad domain", "exa_mple.com", NULL, DKKEYS_ALG_ED25519, 0, "not a domain"},
	    {"one label", "localhost", NULL, DKKEYS_ALG_ED25519, 0, "not a domain"},
	    {"bad selector", "example.com", "Bad", DKKEYS_ALG_ED25519, 0, "bad selector"},
	    {"small RSA", "example.com", NULL, DKKEYS_ALG_RSA, 512, "RSA key size"},
	    {"huge RSA", "example.com", NULL, DKKEYS_ALG_RSA, 8192, "RSA key size"},
	    {"bad algorithm", "example.com", NULL, (enum dkkeys_algorithm)7, 0,
	     "unknown algorithm"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		int rc = dkkeys_key_generate(dir, bad[i].domain, bad[i].selector, bad[i].alg,
		                             bad[i].bits, T0, NULL, err, sizeof err);
		if (rc != -1 || strstr(err, bad[i].want) == NULL) {
			print_error("%s: got %d \"%s\", want -1 \"...%s...\"\n", bad[i].name, rc,
			            err, bad[i].want);
			failures++;
		}
	}
	/* a data_dir that is not there */
	err[0] = '\0';
	if (dkkeys_key_generate("/nonexistent/postino", "example.com", NULL, DKKEYS_ALG_ED25519, 0,
	                        T0, NULL, err, sizeof err) != -1 ||
	    strstr(err, "data_dir") == NULL) {
		print_error("missing data_dir: got \"%s\", want an error naming data_dir\n", err);
		failures++;
	}
	store_remove(dir);
	assert_int_equal(failures, 0);
}

/* A loose store folder is tightened to 0700 by the next change. */
static void test_store_mode_tightened(void **state)
{
	char *dir = store_new(), path[PATH_MAX], err[512];
	snprintf(path, sizeof path, "%s/dkim", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(chmod(path, 0755), 0);
	assert_int_equal(dkkeys_key_import(dir, "example.com", "e",
	                                   fixture("TEST-ONLY-ed25519.pem"), T0, NULL, err,
	                                   sizeof err),
	                 0);
	unsigned got = file_mode(dir, "dkim");
	if (got != 0700)
		fail_msg("store folder: got %o, want 700", got);
	store_remove(dir);
}

/* ---- import ---- */

static void test_import(void **state)
{
	static const struct {
		const char *name, *file;
		const char *want; /* "ok:ALG:BITS" or the error's text */
		const char *want_p;
	} cases[] = {
	    {"rsa 2048 pkcs8", "TEST-ONLY-rsa2048.pem", "ok:rsa:2048", RSA2048_P},
	    {"rsa 2048 pkcs1", "TEST-ONLY-rsa2048-pkcs1.pem", "ok:rsa:2048", RSA2048_P},
	    {"ed25519", "TEST-ONLY-ed25519.pem", "ok:ed25519:256", ED25519_P},
	    {"rsa 1024", "TEST-ONLY-rsa1024.pem", "ok:rsa:1024", NULL},
	    {"rsa 4096", "TEST-ONLY-rsa4096.pem", "ok:rsa:4096", NULL},
	    {"rsa 512", "TEST-ONLY-rsa512.pem", "RSA key of 512 bits", NULL},
	    {"ec p-256", "TEST-ONLY-ec-p256.pem", "not an RSA or Ed25519 key", NULL},
	    {"encrypted", "TEST-ONLY-rsa2048-encrypted.pem", "encrypted", NULL},
	    {"not a key", "README", "not a PEM private key", NULL},
	    {"missing", "no-such-file.pem", "No such file", NULL},
	};
	char *dir = store_new();
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[512] = "", selector[16], got[600];
		struct dkkeys_selector s;
		snprintf(selector, sizeof selector, "s%zu", i);
		int rc = dkkeys_key_import(dir, "example.com", selector, fixture(cases[i].file), T0,
		                           &s, err, sizeof err);
		if (rc == 0)
			snprintf(got, sizeof got, "ok:%s:%u", dkkeys_algorithm_name(s.algorithm),
			         s.bits);
		else
			snprintf(got, sizeof got, "%s", err);
		if (strstr(got, cases[i].want) == NULL) {
			print_error("%s: got \"%s\", want \"%s\"\n", cases[i].name, got,
			            cases[i].want);
			failures++;
		} else if (rc == 0 && cases[i].want_p != NULL &&
		           strcmp(s.public_key, cases[i].want_p) != 0) {
			print_error("%s: got p=%s, want p=%s\n", cases[i].name, s.public_key,
			            cases[i].want_p);
			failures++;
		}
	}
	/* import needs a selector; the same key twice under one selector is refused */
	char err[512] = "";
	if (dkkeys_key_import(dir, "example.com", NULL, fixture("TEST-ONLY-ed25519.pem"), T0, NULL,
	                      err, sizeof err) != -1 ||
	    strstr(err, "selector") == NULL) {
		print_error("no selector: got \"%s\", want an error about the selector\n", err);
		failures++;
	}
	if (dkkeys_key_import(dir, "example.com", "s0", fixture("TEST-ONLY-ed25519.pem"), T0, NULL,
	                      err, sizeof err) != -1) {
		print_error("selector taken: got accepted, want refused\n");
		failures++;
	}
	/* the key as stored is a PKCS#8 PEM file whatever the input's form */
	char path[PATH_MAX], head[40] = "";
	snprintf(path, sizeof path, "%s/dkim/example.com/s1.pem", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(head, sizeof head, f));
	fclose(f);
	if (strcmp(head, "-----BEGIN PRIVATE KEY-----\n") != 0) {
		print_error("stored pkcs1 key: got first line \"%s\", want PKCS#8\n", head);
		failures++;
	}
	store_remove(dir);
	assert_int_equal(failures, 0);
}

/* ---- DNS records ---- */

static void test_records(void **state)
{
	char *dir = store_new(), err[512];
	struct dkkeys_selector ed, rsa, big;
	assert_int_equal(dkkeys_key_import(dir, "example.com", "e1",
	                                   fixture("TEST-ONLY-ed25519.pem"), T0, &ed, err,
	                                   sizeof err),
	                 0);
	assert_int_equal(dkkeys_key_import(dir, "example.com", "r1",
	                                   fixture("TEST-ONLY-rsa2048.pem"), T0, &rsa, err,
	                                   sizeof err),
	                 0);
	assert_int_equal(dkkeys_key_import(dir, "example.com", "big",
	                                   fixture("TEST-ONLY-rsa4096.pem"), T0, &big, err,
	                                   sizeof err),
	                 0);
	int failures = 0;
	struct buf out = BUF_INIT;

	assert_int_equal(dkkeys_record_format("example.com", &ed, &out), 0);
	const char *want_ed =
	    "e1._domainkey.example.com. IN TXT ( \"v=DKIM1; k=ed25519; p=" ED25519_P "\" )\n";
	if (strcmp(out.data, want_ed) != 0) {
		print_error("ed25519 record: got %s, want %s", out.data, want_ed);
		failures++;
	}
	/* RSA-2048: 18 + 392 octets of value: a string of 255 and one of 155 */
	buf_reset(&out);
	assert_int_equal(dkkeys_record_format("example.com", &rsa, &out), 0);
	const char *value = "v=DKIM1; k=rsa; p=" RSA2048_P;
	struct buf want = BUF_INIT;
	assert_int_equal(buf_printf(&want,
	                            "r1._domainkey.example.com. IN TXT ( \"%.255s\" \"%s\" )\n",
	                            value, value + 255),
	                 0);
	if (strcmp(out.data, want.data) != 0) {
		print_error("rsa 2048 record: got %s, want %s", out.data, want.data);
		failures++;
	}

	/* RSA-4096: every string at most 255 octets, together the whole value */
	buf_reset(&out);
	assert_int_equal(dkkeys_record_format("example.com", &big, &out), 0);
	struct buf joined = BUF_INIT;
	size_t strings = 0;
	const char *p = strchr(out.data, '(');
	assert_non_null(p);
	while ((p = strchr(p + 1, '"')) != NULL) {
		const char *close = strchr(p + 1, '"');
		assert_non_null(close);
		size_t n = (size_t)(close - p - 1);
		if (n > 255) {
			print_error("rsa 4096 string %zu: got %zu octets, want at most 255\n",
			            strings, n);
			failures++;
		}
		assert_int_equal(buf_append(&joined, p + 1, n), 0);
		strings++;
		p = close;
	}
	char want_value[DKKEYS_PUBLIC_MAX + 64];
	snprintf(want_value, sizeof want_value, "v=DKIM1; k=rsa; p=%s", big.public_key);
	if (strings != 3 || strcmp(joined.data, want_value) != 0 || strlen(big.public_key) != 736) {
		print_error("rsa 4096 record: got %zu strings joined to %zu octets, want 3 strings "
		            "and %zu octets\n",
		            strings, joined.len, strlen(want_value));
		failures++;
	}
	buf_free(&out);
	buf_free(&want);
	buf_free(&joined);
	store_remove(dir);
	assert_int_equal(failures, 0);
}

/* ---- life cycle ---- */

static enum dkkeys_state state_of(const char *dir, const char *selector)
{
	char err[512];
	struct dkkeys_domain *d = malloc(sizeof *d);
	assert_non_null(d);
	assert_int_equal(dkkeys_domain_read(dir, "example.com", d, err, sizeof err), 0);
	int state = -1;
	for (size_t i = 0; i < d->count; i++)
		if (strcmp(d->sel[i].name, selector) == 0)
			state = (int)d->sel[i].state;
	free(d);
	return (enum dkkeys_state)state;
}

static void expect_state(const char *dir, const char *selector, enum dkkeys_state want,
                         const char *step, int *failures)
{
	enum dkkeys_state got = state_of(dir, selector);
	if (got != want) {
		print_error("%s: %s got %s, want %s\n", step, selector,
		            (int)got == -1 ? "(absent)" : dkkeys_state_name(got),
		            dkkeys_state_name(want));
		(*failures)++;
	}
}

static void test_lifecycle(void **state)
{
	char *dir = store_new(), err[512], path[PATH_MAX];
	int failures = 0;
	struct dkkeys_selector made[2];
	size_t n;

	/* nothing to rotate yet */
	if (dkkeys_domain_rotate(dir, "example.com", T0, made, &n, err, sizeof err) != -1) {
		print_error("rotate without keys: got 0, want -1\n");
		failures++;
	}
	assert_int_equal(dkkeys_key_generate(dir, "example.com", NULL, DKKEYS_ALG_RSA, 1024, T0,
	                                     NULL, err, sizeof err),
	                 0);
	assert_int_equal(dkkeys_key_generate(dir, "example.com", NULL, DKKEYS_ALG_ED25519, 0, T0,
	                                     NULL, err, sizeof err),
	                 0);

	/* rotate: one new pending key per algorithm, same RSA size */
	assert_int_equal(
	    dkkeys_domain_rotate(dir, "example.com", T0 + 10, made, &n, err, sizeof err), 0);
	if (n != 2 || strcmp(made[0].name, "p202311r2") != 0 || made[0].bits != 1024 ||
	    strcmp(made[1].name, "p202311e2") != 0 || made[0].state != DKKEYS_STATE_PENDING) {
		print_error("rotate: got %zu keys (%s %u, %s), want p202311r2 1024 and p202311e2 "
		            "pending\n",
		            n, made[0].name, made[0].bits, n > 1 ? made[1].name : "-");
		failures++;
	}
	expect_state(dir, "p202311r", DKKEYS_STATE_ACTIVE, "after rotate", &failures);
	err[0] = '\0';
	if (dkkeys_domain_rotate(dir, "example.com", T0 + 20, made, &n, err, sizeof err) != -1 ||
	    strstr(err, "already pending") == NULL) {
		print_error("second rotate: got \"%s\", want refused as already pending\n", err);
		failures++;
	}

	/* the DNS checker saw the new RSA record */
	assert_int_equal(dkkeys_selector_activate(dir, "example.com", "p202311r2", T0 + 100, 50,
	                                          err, sizeof err),
	                 0);
	expect_state(dir, "p202311r2", DKKEYS_STATE_ACTIVE, "activate", &failures);
	expect_state(dir, "p202311r", DKKEYS_STATE_RETIRING, "activate", &failures);
	expect_state(dir, "p202311e", DKKEYS_STATE_ACTIVE, "activate (other algorithm)", &failures);
	expect_state(dir, "p202311e2", DKKEYS_STATE_PENDING, "activate (other algorithm)",
	             &failures);
	/* again: no change, no error */
	assert_int_equal(dkkeys_selector_activate(dir, "example.com", "p202311r2", T0 + 101, 50,
	                                          err, sizeof err),
	                 0);

	/* grace period: retiring until T0 + 150 */
	size_t retired = 99;
	assert_int_equal(
	    dkkeys_domain_retire_due(dir, "example.com", T0 + 149, &retired, err, sizeof err), 0);
	if (retired != 0) {
		print_error("retire before the grace ends: got %zu, want 0\n", retired);
		failures++;
	}
	assert_int_equal(
	    dkkeys_domain_retire_due(dir, "example.com", T0 + 150, &retired, err, sizeof err), 0);
	if (retired != 1) {
		print_error("retire when the grace ends: got %zu, want 1\n", retired);
		failures++;
	}
	expect_state(dir, "p202311r", DKKEYS_STATE_RETIRED, "retire", &failures);
	if (file_mode(dir, "dkim/example.com/p202311r.pem") != 01000) {
		print_error("retired key file: got present, want deleted\n");
		failures++;
	}
	/* only pending selectors activate */
	err[0] = '\0';
	if (dkkeys_selector_activate(dir, "example.com", "p202311r", T0 + 200, 0, err,
	                             sizeof err) != -1 ||
	    strstr(err, "retired") == NULL) {
		print_error("activate a retired selector: got \"%s\", want refused\n", err);
		failures++;
	}
	if (dkkeys_selector_activate(dir, "example.com", "nosuch", T0, 0, err, sizeof err) != -1) {
		print_error("activate an unknown selector: got 0, want -1\n");
		failures++;
	}

	/* delete one selector, then the domain */
	assert_int_equal(dkkeys_selector_delete(dir, "example.com", "p202311e2", err, sizeof err),
	                 0);
	expect_state(dir, "p202311e2", (enum dkkeys_state) - 1, "delete", &failures);
	if (file_mode(dir, "dkim/example.com/p202311e2.pem") != 01000) {
		print_error("deleted key file: got present, want gone\n");
		failures++;
	}
	if (dkkeys_selector_delete(dir, "example.com", "nosuch", err, sizeof err) != -1) {
		print_error("delete an unknown selector: got 0, want -1\n");
		failures++;
	}
	assert_int_equal(dkkeys_selector_delete(dir, "example.com", NULL, err, sizeof err), 0);
	snprintf(path, sizeof path, "%s/dkim/example.com", dir);
	if (access(path, F_OK) == 0) {
		print_error("deleted domain: got its folder, want it gone\n");
		failures++;
	}
	if (dkkeys_selector_delete(dir, "example.com", NULL, err, sizeof err) != -1 ||
	    strstr(err, "no DKIM keys") == NULL) {
		print_error("delete an unknown domain: got \"%s\", want \"no DKIM keys\"\n", err);
		failures++;
	}
	store_remove(dir);
	assert_int_equal(failures, 0);
}

/* ---- walking ---- */

static int walk_collect(const struct dkkeys_domain *d, void *arg, char *err, size_t errlen)
{
	struct buf *b = arg;
	return buf_printf(b, "%s:%zu ", d->name, d->count);
}

static void test_walk(void **state)
{
	char *dir = store_new(), err[512], path[PATH_MAX];
	struct buf got = BUF_INIT;
	assert_int_equal(dkkeys_store_walk(dir, walk_collect, &got, err, sizeof err), 0);
	if (got.len != 0)
		fail_msg("empty store: got \"%s\", want nothing", got.data);
	const char *domains[] = {"b.example", "a.example", "c.example"};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(dkkeys_key_import(dir, domains[i], "k",
		                                   fixture("TEST-ONLY-ed25519.pem"), T0, NULL, err,
		                                   sizeof err),
		                 0);
	assert_int_equal(dkkeys_key_import(dir, "a.example", "k2", fixture("TEST-ONLY-rsa1024.pem"),
	                                   T0, NULL, err, sizeof err),
	                 0);
	/* things that are not domains are passed over */
	snprintf(path, sizeof path, "%s/dkim/notadomain", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/dkim/stray.file", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(dkkeys_store_walk(dir, walk_collect, &got, err, sizeof err), 0);
	assert_string_equal(got.data, "a.example:2 b.example:1 c.example:1 ");
	buf_free(&got);
	store_remove(dir);
}

/* ---- postinoctl dkim ---- */

struct ctl_case {
	const char *name;
	const char *args; /* space-separated; {F} is the fixtures folder, {M} this month */
	int want_rc;
	const char *want; /* a substring of stdout (rc 0) or stderr (otherwise); NULL: none */
};

static int ctl_run(const struct config *cfg, const char *args, struct buf *out, struct buf *errs)
{
	char line[1024], *argv[32];
	int argc = 0;
	snprintf(line, sizeof line, "%s", args);
	for (char *save = NULL, *t = strtok_r(line, " ", &save); t != NULL && argc < 31;
	     t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	argv[argc] = NULL;
	char opath[] = "/tmp/test_dkkeys_out-XXXXXX", epath[] = "/tmp/test_dkkeys_err-XXXXXX";
	int ofd = mkstemp(opath), efd = mkstemp(epath);
	assert_true(ofd >= 0 && efd >= 0);
	fflush(stdout);
	fflush(stderr);
	int saved_out = dup(1), saved_err = dup(2);
	dup2(ofd, 1);
	dup2(efd, 2);
	int rc = ctl_dkim_main(cfg, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	struct buf *targets[2] = {out, errs};
	int fds[2] = {ofd, efd};
	for (int i = 0; i < 2; i++) {
		buf_reset(targets[i]);
		lseek(fds[i], 0, SEEK_SET);
		char chunk[4096];
		ssize_t n;
		while ((n = read(fds[i], chunk, sizeof chunk)) > 0)
			assert_int_equal(buf_append(targets[i], chunk, (size_t)n), 0);
		assert_int_equal(buf_append(targets[i], "", 0), 0);
		close(fds[i]);
	}
	unlink(opath);
	unlink(epath);
	return rc;
}

static void expand(const char *in, const char *month, char *out, size_t outlen)
{
	struct buf b = BUF_INIT;
	for (const char *p = in; *p != '\0'; p++) {
		if (strncmp(p, "{F}", 3) == 0) {
			assert_int_equal(buf_append_str(&b, fixtures), 0);
			p += 2;
		} else if (strncmp(p, "{M}", 3) == 0) {
			assert_int_equal(buf_append_str(&b, month), 0);
			p += 2;
		} else {
			assert_int_equal(buf_append(&b, p, 1), 0);
		}
	}
	snprintf(out, outlen, "%s", b.data != NULL ? b.data : "");
	buf_free(&b);
}

static void test_ctl(void **state)
{
	static const struct ctl_case cases[] = {
	    {"no subcommand", "", 2, "usage"},
	    {"unknown subcommand", "frobnicate", 2, "usage"},
	    {"keygen without domain", "keygen", 2, "usage"},
	    {"keygen bad domain", "keygen exa_mple.com", 2, "not a domain name"},
	    {"keygen bad algo", "keygen example.com --algo dsa", 2, "rsa, ed25519 or both"},
	    {"keygen bad bits", "keygen example.com --bits 100", 2, "--bits takes"},
	    {"keygen bits for ed25519", "keygen example.com --algo ed25519 --bits 2048", 2,
	     "for RSA"},
	    {"keygen selector for both", "keygen example.com --selector s", 2, "its own selector"},
	    {"keygen option twice", "keygen example.com --algo rsa --algo rsa", 2, "twice"},
	    {"keygen option without value", "keygen example.com --algo", 2, "needs a value"},
	    {"keygen unknown option", "keygen example.com --key x", 2, "unknown option"},
	    {"list empty", "list", 0, "no DKIM keys"},
	    {"keygen rsa", "keygen Example.com --algo rsa --bits 1024 --selector s1", 0,
	     "s1._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; p=MIGfMA0"},
	    {"keygen taken", "keygen example.com --algo rsa --selector s1", 1, "already has"},
	    {"import ed25519", "import example.com --selector e1 --key {F}/TEST-ONLY-ed25519.pem",
	     0, "e1._domainkey.example.com. IN TXT ( \"v=DKIM1; k=ed25519; p=" ED25519_P "\" )\n"},
	    {"import without key", "import example.com --selector e2", 2, "needs --selector and"},
	    {"import bad key", "import example.com --selector e2 --key {F}/TEST-ONLY-ec-p256.pem",
	     1, "not an RSA or Ed25519"},
	    {"list", "list", 0, "example.com                    e1                   ed25519"},
	    {"show", "show example.com", 0, "; example.com s1: rsa 1024, active, created "},
	    {"show unknown", "show nokeys.example", 1, "no DKIM keys for nokeys.example"},
	    {"show extra argument", "show example.com x", 2, "usage"},
	    {"rotate", "rotate example.com", 0, "selector p{M}e created (ed25519, pending)"},
	    {"rotate again", "rotate example.com", 1, "already pending"},
	    {"activate needs selector", "activate example.com", 2, "needs --selector"},
	    {"activate bad grace", "activate example.com --selector p{M}r --grace x", 2,
	     "--grace takes"},
	    {"activate", "activate example.com --selector p{M}r --grace 0", 0, "p{M}r active"},
	    {"list after activate", "list", 0, "s1                   rsa 1024     retired"},
	    {"del unknown selector", "del example.com --selector nosuch", 1, "no selector nosuch"},
	    {"del selector", "del example.com --selector s1", 0, "1 selector deleted"},
	    {"del domain", "del example.com", 0, "3 selectors deleted (an active one"},
	    {"del unknown domain", "del example.com", 1, "no DKIM keys for example.com"},
	    {"keygen both", "keygen example.net", 0, "p{M}e._domainkey.example.net. IN TXT"},
	    {"list both", "list", 0, "p{M}r             rsa 2048     active"},
	};
	char *dir = store_new(), text[PATH_MAX + 32], err[512];
	struct config cfg;
	snprintf(text, sizeof text, "data_dir = %s\n", dir);
	assert_int_equal(config_parse("t.conf", text, strlen(text), &cfg, err, sizeof err), 0);
	char month[16];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(month, sizeof month, "%Y%m", &tm);
	struct buf out = BUF_INIT, errs = BUF_INIT;
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char args[1024], want[1024];
		expand(cases[i].args, month, args, sizeof args);
		expand(cases[i].want != NULL ? cases[i].want : "", month, want, sizeof want);
		int rc = ctl_run(&cfg, args, &out, &errs);
		const char *where = rc == 0 ? out.data : errs.data;
		if (rc != cases[i].want_rc || strstr(where, want) == NULL) {
			print_error(
			    "%s: got rc %d, stdout \"%.300s\", stderr \"%.300s\"; want rc %d "
			    "and \"%s\"\n",
			    cases[i].name, rc, out.data, errs.data, cases[i].want_rc, want);
			failures++;
		}
	}
	buf_free(&out);
	buf_free(&errs);
	store_remove(dir);
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_domain_names), cmocka_unit_test(test_selector_names),
	    cmocka_unit_test(test_keygen),       cmocka_unit_test(test_store_mode_tightened),
	    cmocka_unit_test(test_import),       cmocka_unit_test(test_records),
	    cmocka_unit_test(test_lifecycle),    cmocka_unit_test(test_walk),
	    cmocka_unit_test(test_ctl),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
