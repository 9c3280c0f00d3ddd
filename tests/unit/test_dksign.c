/*
 * test_dksign.c: unit tests of dkim/dksign.c: known messages give known signatures (golden
 * files, fixed clock, fixed test-only keys), every canonicalization edge, the h= lists and
 * oversigning, the refusals, both body hash engines agreeing, and the key snapshot's reload
 * (with pool threads signing while it happens). Table-driven; a failing case prints
 * "name: got X, want Y".
 *
 * Fixtures: tests/fixtures/dkim/TEST-ONLY-*.pem (keys made for these tests and nothing else)
 * and tests/fixtures/dkim/golden/NAME.eml (the signed message: our DKIM-Signature fields and
 * the message). DKSIGN_GOLDEN_UPDATE=1 rewrites the golden files instead of comparing; check
 * them with tests/fixtures/dkim/verify_golden.py (dkimpy, an independent verifier) before
 * committing. Run from the top of the tree (make unit does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim/dkkeys.h"
#include "dkim/dksign.h"
#include "relay/buf.h"

#define T0       1700000000LL /* the fixed clock: 2023-11-14 22:13:20 UTC */
#define LIFETIME (7 * 86400)
#define BOTH     (DKSIGN_ALG_RSA | DKSIGN_ALG_ED25519)

static char fixtures[512]; /* short, so that paths made from it fit PATH_MAX */
static char store[512];
static struct dksign_ctx *ctx;

/* ---- set-up ---- */

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
	        "test_dksign: tests/fixtures/dkim not found: run from the top of the tree\n");
	return -1;
}

static int key_import(const char *dir, const char *domain, const char *selector, const char *file)
{
	char path[PATH_MAX], err[512];
	snprintf(path, sizeof path, "%s/%s", fixtures, file);
	if (dkkeys_key_import(dir, domain, selector, path, T0, NULL, err, sizeof err) == -1) {
		fprintf(stderr, "import %s %s: %s\n", domain, selector, err);
		return -1;
	}
	return 0;
}

static void tree_remove(const char *dir)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* The store every signing test uses: example.com (RSA and Ed25519), relay.example.net (the
 * fallback: both), example.org (RSA only, 4096 bits). */
static int group_setup(void **state)
{
	char err[512];
	snprintf(store, sizeof store, "/tmp/test_dksign-XXXXXX");
	if (fixtures_find() == -1 || mkdtemp(store) == NULL)
		return -1;
	if (key_import(store, "example.com", "test-rsa", "TEST-ONLY-rsa2048.pem") == -1 ||
	    key_import(store, "example.com", "test-ed", "TEST-ONLY-ed25519.pem") == -1 ||
	    key_import(store, "relay.example.net", "relay-rsa", "TEST-ONLY-rsa2048.pem") == -1 ||
	    key_import(store, "relay.example.net", "relay-ed", "TEST-ONLY-ed25519.pem") == -1 ||
	    key_import(store, "example.org", "org-rsa", "TEST-ONLY-rsa4096.pem") == -1)
		return -1;
	ctx = dksign_ctx_new(store, err, sizeof err);
	if (ctx == NULL) {
		fprintf(stderr, "dksign_ctx_new: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	dksign_ctx_free(ctx);
	tree_remove(store);
	return 0;
}

static struct dksign_options options(unsigned algs, int64_t lifetime)
{
	struct dksign_options o = {.algorithms = algs,
	                           .now = T0,
	                           .lifetime = lifetime,
	                           .fallback_domain = "relay.example.net"};
	return o;
}

/* ---- golden files ---- */

#define HDRS                                                                                       \
	"From: Alice Example <alice@example.com>\r\n"                                              \
	"To: Bob <bob@example.net>\r\n"                                                            \
	"Subject: Hello\r\n"                                                                       \
	"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"                                                \
	"Message-ID: <golden@example.com>\r\n"

struct golden_case {
	const char *name;
	const char *from_domain;
	unsigned algs;
	int64_t lifetime;
	const char *msg; /* NULL: built by the case's code below */
	size_t len;      /* 0: strlen(msg) */
};

static const char eight_bit[] = "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.com>\r\n"
                                "To: bob@example.net\r\n"
                                "Subject: Gr\xc3\xbc\xc3\x9f"
                                "e aus K\xc3\xb6ln \xe6\x97\xa5\xe6\x9c\xac\r\n"
                                "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Transfer-Encoding: 8bit\r\n"
                                "\r\n"
                                "Gr\xc3\xbc\xc3\x9f"
                                "e, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.\r\n"
                                "Raw octets: \xff\xfe\x80\x81 \xa0 end\r\n"
                                "A NUL \0 inside the body.\r\n";

static const struct golden_case golden_cases[] = {
    {"basic", "example.com", BOTH, LIFETIME, HDRS "\r\nHello, world.\r\n", 0},
    {"rsa_only", "example.com", DKSIGN_ALG_RSA, LIFETIME, HDRS "\r\nHello, world.\r\n", 0},
    {"ed25519_only", "example.com", DKSIGN_ALG_ED25519, LIFETIME, HDRS "\r\nHello, world.\r\n", 0},
    {"no_lifetime", "example.com", BOTH, 0, HDRS "\r\nHello, world.\r\n", 0},
    {"from_domain_any_case", "ExAmPlE.COM", BOTH, LIFETIME, HDRS "\r\nHello.\r\n", 0},
    {"folded_headers", "example.com", BOTH, LIFETIME,
     "From: Alice Example\r\n <alice@example.com>\r\n"
     "To: Bob <bob@example.net>,\r\n\tCarol <carol@example.net>,\r\n   Dan <dan@example.net>\r\n"
     "Subject: A subject\r\n that goes on\r\n\tand on\r\n"
     "Date: Tue, 14 Nov 2023\r\n 22:13:20 +0000\r\n"
     "\r\n"
     "Body.\r\n",
     0},
    {"trailing_whitespace", "example.com", BOTH, LIFETIME,
     "From: Alice <alice@example.com>  \t\r\n"
     "To:   Bob   <bob@example.net>\t\r\n"
     "Subject:\tHello  \t world \r\n"
     "Date: Tue, 14 Nov 2023 22:13:20 +0000 \r\n"
     "\r\n"
     "Line with trailing spaces   \r\n"
     "Line with a trailing tab\t\r\n"
     "  Leading spaces and   inner \t runs\r\n"
     "\t\r\n"
     "Last line\r\n",
     0},
    {"empty_body", "example.com", BOTH, LIFETIME, HDRS "\r\n", 0},
    {"headers_only", "example.com", BOTH, LIFETIME, HDRS, 0},
    {"body_no_final_crlf", "example.com", BOTH, LIFETIME, HDRS "\r\nHello\r\nno final line end", 0},
    {"blank_lines_at_end", "example.com", BOTH, LIFETIME,
     HDRS "\r\nText\r\n\r\n   \r\nmore\r\n\r\n\r\n  \r\n\t\r\n\r\n", 0},
    {"crlf_only_body", "example.com", BOTH, LIFETIME, HDRS "\r\n\r\n\r\n\r\n", 0},
    {"eight_bit", "example.com", BOTH, LIFETIME, eight_bit, sizeof eight_bit - 1},
    {"long_header", "example.com", BOTH, LIFETIME, NULL, 0},
    {"large_body", "example.com", BOTH, LIFETIME, NULL, 0},
    {"all_signed_fields", "example.com", BOTH, LIFETIME,
     "Received: from client (client [192.0.2.1]) by relay; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
     "From: News <news@example.com>\r\n"
     "Reply-To: Support <support@example.com>\r\n"
     "To: Bob <bob@example.net>\r\n"
     "Cc: Carol <carol@example.net>\r\n"
     "Subject: Monthly news\r\n"
     "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
     "Message-ID: <news-1@example.com>\r\n"
     "MIME-Version: 1.0\r\n"
     "Content-Type: text/plain; charset=us-ascii\r\n"
     "Content-Transfer-Encoding: 7bit\r\n"
     "List-Unsubscribe: <https://example.com/u/1>, <mailto:u@example.com?subject=1>\r\n"
     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
     "Feedback-ID: campaign1:customer2:newsletter:postino\r\n"
     "X-Mailer: something\r\n"
     "\r\n"
     "News.\r\n",
     0},
    {"two_to_fields", "example.com", BOTH, LIFETIME,
     "From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\nTo: c@example.net\r\n\r\nx\r\n", 0},
    {"existing_signature", "example.com", BOTH, LIFETIME,
     "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=old; h=from; bh=AAAA; b=AAAA\r\n" HDRS
     "\r\nHello.\r\n",
     0},
    {"odd_case_names", "example.com", BOTH, LIFETIME,
     "FROM: alice@example.com\r\nsUbJeCt: Hi\r\nmessage-id: <x@example.com>\r\n\r\nBody\r\n", 0},
    {"fallback_domain", "unknown.example", BOTH, LIFETIME, HDRS "\r\nHello.\r\n", 0},
    {"fallback_without_from_domain", NULL, BOTH, LIFETIME, HDRS "\r\nHello.\r\n", 0},
    {"rsa4096", "example.org", BOTH, LIFETIME, HDRS "\r\nHello.\r\n", 0},
    {"ed25519_wanted_rsa_only_domain", "example.org", DKSIGN_ALG_ED25519, LIFETIME,
     HDRS "\r\nHello.\r\n", 0},
};

/* The messages too long to write out: built once, kept for the run. */
static const char *golden_message(const struct golden_case *c, size_t *len, struct buf *store_in)
{
	if (c->msg != NULL) {
		*len = c->len != 0 ? c->len : strlen(c->msg);
		return c->msg;
	}
	buf_reset(store_in);
	if (strcmp(c->name, "long_header") == 0) {
		/* a 2000-octet Subject folded every ~70, a 900-octet unfolded Reply-To */
		assert_int_equal(buf_append_str(store_in, "From: alice@example.com\r\nSubject:"),
		                 0);
		for (int i = 0; i < 30; i++)
			assert_int_equal(
			    buf_printf(store_in, " word%02d-%s\r\n", i,
			               "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijk"),
			    0);
		assert_int_equal(buf_append_str(store_in, "Reply-To: "), 0);
		for (int i = 0; i < 40; i++)
			assert_int_equal(buf_printf(store_in, "r%02d@example.com, ", i), 0);
		assert_int_equal(buf_append_str(store_in, "last@example.com\r\n\r\nBody\r\n"), 0);
	} else {
		/* 20 KiB of lines of varied spacing: several 4 KiB hashing chunks */
		assert_int_equal(buf_append_str(store_in, HDRS "\r\n"), 0);
		for (int i = 0; store_in->len < 20480; i++)
			assert_int_equal(buf_printf(store_in, "%sline %d:%.*sspaces%s\r\n",
			                            i % 3 == 0 ? " " : "", i, i % 5, "\t \t \t",
			                            i % 4 == 0 ? "  " : ""),
			                 0);
	}
	*len = store_in->len;
	return store_in->data;
}

static char *file_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		if (buf_append(&b, chunk, n) == -1)
			break;
	fclose(f);
	*len = b.len;
	if (b.data == NULL)
		return calloc(1, 1);
	return b.data;
}

/* The first line where got and want differ, for the report. */
static void first_difference(const char *got, size_t glen, const char *want, size_t wlen, char *out,
                             size_t outlen)
{
	size_t i = 0, line = 1, start = 0;
	while (i < glen && i < wlen && got[i] == want[i]) {
		if (got[i] == '\n') {
			line++;
			start = i + 1;
		}
		i++;
	}
	const char *ge = memchr(got + start, '\r', glen - start);
	const char *we = memchr(want + start, '\r', wlen - start);
	int gl = (int)(ge != NULL ? (size_t)(ge - got) - start : glen - start);
	int wl = (int)(we != NULL ? (size_t)(we - want) - start : wlen - start);
	snprintf(out, outlen, "line %zu: got \"%.*s\", want \"%.*s\"", line, gl > 120 ? 120 : gl,
	         got + start, wl > 120 ? 120 : wl, want + start);
}

static void test_golden(void **state)
{
	bool update = getenv("DKSIGN_GOLDEN_UPDATE") != NULL;
	int failures = 0;
	struct buf built = BUF_INIT;
	for (size_t i = 0; i < sizeof golden_cases / sizeof golden_cases[0]; i++) {
		const struct golden_case *c = &golden_cases[i];
		size_t len;
		const char *msg = golden_message(c, &len, &built);
		struct dksign_options o = options(c->algs, c->lifetime);
		struct buf out = BUF_INIT;
		char err[512] = "";
		enum dksign_result r =
		    dksign_message(ctx, &o, c->from_domain, msg, len, &out, err, sizeof err);
		if (r != DKSIGN_OK) {
			print_error("%s: got %s (%s), want ok\n", c->name, dksign_result_name(r),
			            err);
			failures++;
			buf_free(&out);
			continue;
		}
		assert_int_equal(buf_append(&out, msg, len), 0); /* the signed message */
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/golden/%s.eml", fixtures, c->name);
		if (update) {
			FILE *f = fopen(path, "wb");
			assert_non_null(f);
			assert_int_equal(fwrite(out.data, 1, out.len, f), out.len);
			assert_int_equal(fclose(f), 0);
			buf_free(&out);
			continue;
		}
		size_t wlen;
		char *want = file_slurp(path, &wlen);
		if (want == NULL) {
			print_error("%s: got a signature, want the golden file %s (missing)\n",
			            c->name, path);
			failures++;
		} else if (wlen != out.len || memcmp(want, out.data, wlen) != 0) {
			char diff[400];
			first_difference(out.data, out.len, want, wlen, diff, sizeof diff);
			print_error("%s: %s\n", c->name, diff);
			failures++;
		}
		free(want);
		buf_free(&out);
	}
	buf_free(&built);
	if (update)
		print_message("golden files rewritten under %s/golden: check them with "
		              "verify_golden.py\n",
		              fixtures);
	assert_int_equal(failures, 0);
}

/* ---- h= and the tags ---- */

/* The value of tag in the first DKIM-Signature field of sig, unfolded ("" when absent). */
static void tag_value(const char *sig, const char *tag, char *out, size_t outlen)
{
	const char *end = strstr(sig, "\r\nDKIM-Signature:");
	size_t siglen = end != NULL ? (size_t)(end - sig) : strlen(sig);
	size_t tl = strlen(tag), o = 0;
	out[0] = '\0';
	for (size_t i = 0; i + tl + 1 < siglen; i++) {
		bool start = i == 0 || sig[i - 1] == ' ' || sig[i - 1] == '\t' || sig[i - 1] == ';';
		if (!start || memcmp(sig + i, tag, tl) != 0 || sig[i + tl] != '=')
			continue;
		for (size_t j = i + tl + 1; j < siglen && sig[j] != ';' && o + 1 < outlen; j++)
			if (sig[j] != '\r' && sig[j] != '\n' && sig[j] != ' ' && sig[j] != '\t')
				out[o++] = sig[j];
		out[o] = '\0';
		return;
	}
}

struct tags_case {
	const char *name;
	const char *from_domain;
	unsigned algs;
	int64_t lifetime;
	const char *msg;
	const char *tag;
	const char *want;
};

static const struct tags_case tags_cases[] = {
    {"h basic", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "h",
     "From:To:Subject:Date:Message-ID:From:Subject:To:Date:List-Unsubscribe:List-Unsubscribe-"
     "Post"},
    {"h only From", "example.com", BOTH, LIFETIME, "From: a@example.com\r\n\r\nx\r\n", "h",
     "From:From:Subject:To:Date:List-Unsubscribe:List-Unsubscribe-Post"},
    {"h unsigned fields left out", "example.com", BOTH, LIFETIME,
     "Received: x\r\nX-Mailer: y\r\nFrom: a@example.com\r\nSender: s@example.com\r\n"
     "In-Reply-To: <p@example.com>\r\n\r\nx\r\n",
     "h", "From:From:Subject:To:Date:List-Unsubscribe:List-Unsubscribe-Post"},
    {"h two To oversigned once more", "example.com", BOTH, LIFETIME,
     "To: b@example.net\r\nFrom: a@example.com\r\nTo: c@example.net\r\n\r\nx\r\n", "h",
     "To:From:To:From:Subject:To:Date:List-Unsubscribe:List-Unsubscribe-Post"},
    {"h list pair and feedback", "example.com", BOTH, LIFETIME,
     "From: a@example.com\r\nList-Unsubscribe: <https://example.com/u>\r\n"
     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nFeedback-ID: a:b:c:d\r\n"
     "Cc: c@example.net\r\nReply-To: r@example.com\r\n\r\nx\r\n",
     "h",
     "From:List-Unsubscribe:List-Unsubscribe-Post:Feedback-ID:Cc:Reply-To:From:Subject:To:Date:"
     "List-Unsubscribe:List-Unsubscribe-Post"},
    {"d from domain", "EXAMPLE.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "d", "example.com"},
    {"d fallback", "nokeys.example", BOTH, LIFETIME, HDRS "\r\nx\r\n", "d", "relay.example.net"},
    {"s rsa first", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "s", "test-rsa"},
    {"s ed25519 only", "example.com", DKSIGN_ALG_ED25519, LIFETIME, HDRS "\r\nx\r\n", "s",
     "test-ed"},
    {"a rsa", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "a", "rsa-sha256"},
    {"a ed25519", "example.com", DKSIGN_ALG_ED25519, LIFETIME, HDRS "\r\nx\r\n", "a",
     "ed25519-sha256"},
    {"c", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "c", "relaxed/relaxed"},
    {"t", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "t", "1700000000"},
    {"x", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "x", "1700604800"},
    {"no x when lifetime 0", "example.com", BOTH, 0, HDRS "\r\nx\r\n", "x", ""},
    {"no l", "example.com", BOTH, LIFETIME, HDRS "\r\nx\r\n", "l", ""},
    {"bh of the empty body", "example.com", BOTH, LIFETIME, HDRS "\r\n", "bh",
     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
    {"bh of CRLFs only", "example.com", BOTH, LIFETIME, HDRS "\r\n\r\n\r\n", "bh",
     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
    {"bh relaxed", "example.com", BOTH, LIFETIME, HDRS "\r\n a \t b \r\n\r\n \r\n", "bh",
     "LVlqWrI8bvjK0Vjyw9hj94D/ip0k/tCu4i5W92ddeso="}, /* sha256(" a b\r\n"), as dkimpy */
};

static void test_tags(void **state)
{
	int failures = 0;
	for (size_t i = 0; i < sizeof tags_cases / sizeof tags_cases[0]; i++) {
		const struct tags_case *c = &tags_cases[i];
		struct dksign_options o = options(c->algs, c->lifetime);
		struct buf out = BUF_INIT;
		char err[512] = "", got[1024];
		enum dksign_result r = dksign_message(ctx, &o, c->from_domain, c->msg,
		                                      strlen(c->msg), &out, err, sizeof err);
		if (r != DKSIGN_OK) {
			print_error("%s: got %s (%s), want ok\n", c->name, dksign_result_name(r),
			            err);
			failures++;
		} else {
			tag_value(out.data, c->tag, got, sizeof got);
			if (strcmp(got, c->want) != 0) {
				print_error("%s: got %s=\"%s\", want \"%s\"\n", c->name, c->tag,
				            got, c->want);
				failures++;
			}
		}
		buf_free(&out);
	}
	assert_int_equal(failures, 0);
}

/* Every line of the output is at most 78 octets, ends in CRLF, and folds start with WSP. */
static void test_folding(void **state)
{
	struct dksign_options o = options(BOTH, LIFETIME);
	struct buf out = BUF_INIT;
	char err[512];
	const char *msg = "From: a@example.com\r\nTo: b@example.net\r\nCc: c@example.net\r\n"
	                  "Subject: s\r\nDate: d\r\nMessage-ID: <m@example.com>\r\n"
	                  "Reply-To: r@example.com\r\nMIME-Version: 1.0\r\n"
	                  "Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n"
	                  "List-Unsubscribe: <u>\r\nList-Unsubscribe-Post: x\r\n"
	                  "Feedback-ID: f\r\n\r\nx\r\n";
	assert_int_equal(
	    dksign_message(ctx, &o, "example.com", msg, strlen(msg), &out, err, sizeof err),
	    DKSIGN_OK);
	size_t lines = 0, fields = 0;
	for (const char *p = out.data; p < out.data + out.len;) {
		const char *crlf = strstr(p, "\r\n");
		assert_non_null(crlf);
		size_t n = (size_t)(crlf - p);
		if (n > 78)
			fail_msg("line %zu: got %zu octets, want at most 78: %.*s", lines, n,
			         (int)n, p);
		if (strncmp(p, "DKIM-Signature: ", 16) == 0)
			fields++;
		else if (p[0] != '\t' && p[0] != ' ')
			fail_msg("line %zu: got \"%.20s\", want a fold (WSP first)", lines, p);
		lines++;
		p = crlf + 2;
	}
	if (fields != 2)
		fail_msg("fields: got %zu, want 2", fields);
	buf_free(&out);
}

/* ---- refusals ---- */

static const char nul_subject[] = "From: a@example.com\r\nSubject: a\0b\r\n\r\nx\r\n";

struct result_case {
	const char *name;
	const char *from_domain;
	unsigned algs;
	int64_t now, lifetime;
	bool refuse_unknown;
	const char *fallback; /* "-": the default relay.example.net */
	const char *msg;
	size_t len; /* 0: strlen */
	enum dksign_result want;
};

static const struct result_case result_cases[] = {
    {"no From", "example.com", BOTH, T0, LIFETIME, false, "-",
     "To: b@example.net\r\nSubject: s\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"two From", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"line without colon", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\nBogus line\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"continuation first", "example.com", BOTH, T0, LIFETIME, false, "-",
     " folded\r\nFrom: a@example.com\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"WSP before colon", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From : a@example.com\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"bare LF in header", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\nTo: b@example.net\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"bare CR in header", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\rTo: b\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"header without CRLF at the end", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com", 0, DKSIGN_MALFORMED},
    {"bare LF in body", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\n\r\nline\nline\r\n", 0, DKSIGN_MALFORMED},
    {"bare CR in body", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\n\r\nline\rline\r\n", 0, DKSIGN_MALFORMED},
    {"CR at the very end", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\n\r\nline\r", 0, DKSIGN_MALFORMED},
    {"NUL in Subject", "example.com", BOTH, T0, LIFETIME, false, "-", nul_subject,
     sizeof nul_subject - 1, DKSIGN_MALFORMED},
    {"control octet in From", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a\x01@example.com\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"vertical tab in To", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\nTo: b\x0b@example.net\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"DEL in Date", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\nDate: x\x7f\r\n\r\nx\r\n", 0, DKSIGN_MALFORMED},
    {"control octet in an unsigned field is fine", "example.com", BOTH, T0, LIFETIME, false, "-",
     "From: a@example.com\r\nX-Junk: a\x01\r\n\r\nx\r\n", 0, DKSIGN_OK},
    {"unknown domain, refused", "unknown.example", BOTH, T0, LIFETIME, true, "-", HDRS "\r\n", 0,
     DKSIGN_NO_KEY},
    {"unknown domain, no fallback", "unknown.example", BOTH, T0, LIFETIME, false, NULL, HDRS "\r\n",
     0, DKSIGN_NO_KEY},
    {"unknown domain, empty fallback", "unknown.example", BOTH, T0, LIFETIME, false, "",
     HDRS "\r\n", 0, DKSIGN_NO_KEY},
    {"unknown domain, fallback without keys", "unknown.example", BOTH, T0, LIFETIME, false,
     "nokeys.example", HDRS "\r\n", 0, DKSIGN_NO_KEY},
    {"known domain, refusal does not apply", "example.com", BOTH, T0, LIFETIME, true, "-",
     HDRS "\r\n", 0, DKSIGN_OK},
    {"no algorithm", "example.com", 0, T0, LIFETIME, false, "-", HDRS "\r\n", 0, DKSIGN_ERROR},
    {"clock before 2001", "example.com", BOTH, 999999999, LIFETIME, false, "-", HDRS "\r\n", 0,
     DKSIGN_ERROR},
    {"negative lifetime", "example.com", BOTH, T0, -1, false, "-", HDRS "\r\n", 0, DKSIGN_ERROR},
    {"lifetime over ten years", "example.com", BOTH, T0, DKSIGN_LIFETIME_MAX + 1, false, "-",
     HDRS "\r\n", 0, DKSIGN_ERROR},
};

static void test_results(void **state)
{
	int failures = 0;
	for (size_t i = 0; i < sizeof result_cases / sizeof result_cases[0]; i++) {
		const struct result_case *c = &result_cases[i];
		struct dksign_options o = options(c->algs, c->lifetime);
		o.now = c->now;
		o.refuse_unknown = c->refuse_unknown;
		if (c->fallback == NULL || strcmp(c->fallback, "-") != 0)
			o.fallback_domain = c->fallback;
		/* out already holds something: a failure must leave it exactly so */
		struct buf out = BUF_INIT;
		assert_int_equal(buf_append_str(&out, "kept"), 0);
		char err[512] = "";
		size_t len = c->len != 0 ? c->len : strlen(c->msg);
		enum dksign_result r =
		    dksign_message(ctx, &o, c->from_domain, c->msg, len, &out, err, sizeof err);
		if (r != c->want) {
			print_error("%s: got %s (%s), want %s\n", c->name, dksign_result_name(r),
			            err, dksign_result_name(c->want));
			failures++;
		} else if (r != DKSIGN_OK && (out.len != 4 || strcmp(out.data, "kept") != 0)) {
			print_error("%s: got out \"%.40s\" after a failure, want it unchanged\n",
			            c->name, out.data);
			failures++;
		} else if (r != DKSIGN_OK && err[0] == '\0') {
			print_error("%s: got no reason in err, want one\n", c->name);
			failures++;
		}
		buf_free(&out);
	}
	assert_int_equal(failures, 0);
}

/* A message with more signed fields than DKSIGN_SIGNED_FIELDS_MAX is refused. */
static void test_too_many_signed_fields(void **state)
{
	struct buf msg = BUF_INIT;
	assert_int_equal(buf_append_str(&msg, "From: a@example.com\r\n"), 0);
	for (int i = 0; i < DKSIGN_SIGNED_FIELDS_MAX; i++)
		assert_int_equal(buf_printf(&msg, "To: b%d@example.net\r\n", i), 0);
	assert_int_equal(buf_append_str(&msg, "\r\nx\r\n"), 0);
	struct dksign_options o = options(BOTH, LIFETIME);
	struct buf out = BUF_INIT;
	char err[512] = "";
	enum dksign_result r =
	    dksign_message(ctx, &o, "example.com", msg.data, msg.len, &out, err, sizeof err);
	if (r != DKSIGN_MALFORMED)
		fail_msg("%d signed fields: got %s, want malformed", DKSIGN_SIGNED_FIELDS_MAX + 1,
		         dksign_result_name(r));
	buf_free(&msg);
	buf_free(&out);
}

/* ---- the two body hash engines ---- */

struct body_case {
	const char *name;
	const char *body;
	size_t len; /* 0: strlen */
};

/* Bodies that end with CRLF, as every stored message does (libopendkim's verifier refuses a
 * body without it: "CRLF at end of body missing"). */
static const struct body_case body_cases[] = {
    {"empty", "", 0},
    {"one CRLF", "\r\n", 0},
    {"WSP only", "   \r\n", 0},
    {"tab only", "\t\r\n", 0},
    {"inner runs", "a \t b\r\n", 0},
    {"leading WSP", " lead\r\n\tlead\r\n", 0},
    {"trailing WSP", "x  \r\ny\t\r\n", 0},
    {"empty lines at end", "x\r\n\r\n\r\n", 0},
    {"WSP lines at end", "x\r\n \r\n\t\r\n  \t \r\n", 0},
    {"empty lines first", "\r\n\r\nx\r\n", 0},
    {"empty lines inside", "a\r\n\r\n\r\nb\r\n", 0},
    {"WSP lines inside", "a\r\n  \r\n\t\r\nb\r\n", 0},
    {"single spaces", "the quick brown fox\r\n", 0},
    {"eight bit", "\xff\xfe \x80\x81\r\n\xc3\xbc\r\n", 0},
    {"NUL", "a\0b\r\n", 5},
};

static void body_compare(const char *name, const char *body, size_t len, int *failures)
{
	struct buf msg = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
	assert_int_equal(buf_append_str(&msg, "From: a@example.com\r\n\r\n"), 0);
	assert_int_equal(buf_append(&msg, body, len), 0);
	struct dksign_options own = options(BOTH, LIFETIME), lib = own;
	lib.body_by_libopendkim = true;
	char err[512] = "", bha[64], bhb[64];
	enum dksign_result ra =
	    dksign_message(ctx, &own, "example.com", msg.data, msg.len, &a, err, sizeof err);
	enum dksign_result rb =
	    dksign_message(ctx, &lib, "example.com", msg.data, msg.len, &b, err, sizeof err);
	if (ra != DKSIGN_OK || rb != DKSIGN_OK) {
		print_error("%s: got %s / %s (%s), want ok / ok\n", name, dksign_result_name(ra),
		            dksign_result_name(rb), err);
		(*failures)++;
	} else {
		tag_value(a.data, "bh", bha, sizeof bha);
		tag_value(b.data, "bh", bhb, sizeof bhb);
		if (strcmp(bha, bhb) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
			print_error("%s: got bh=%s (dksign), want bh=%s (libopendkim)\n", name, bha,
			            bhb);
			(*failures)++;
		}
	}
	buf_free(&msg);
	buf_free(&a);
	buf_free(&b);
}

static void test_body_engines_agree(void **state)
{
	int failures = 0;
	for (size_t i = 0; i < sizeof body_cases / sizeof body_cases[0]; i++)
		body_compare(body_cases[i].name, body_cases[i].body,
		             body_cases[i].len != 0 ? body_cases[i].len
		                                    : strlen(body_cases[i].body),
		             &failures);
	/* and 300 pseudo-random bodies (fixed seed) of words, SP/HTAB runs and CRLFs */
	unsigned long seed = 12345;
	for (int n = 0; n < 300; n++) {
		char body[2048];
		size_t len = 0, want = (size_t)(n * 7 % 2000);
		while (len + 2 < want) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			unsigned r = (unsigned)(seed >> 33) % 10;
			if (r < 5)
				body[len++] = (char)('a' + r);
			else if (r < 7)
				body[len++] = ' ';
			else if (r < 8)
				body[len++] = '\t';
			else if (len + 2 <= want) {
				body[len++] = '\r';
				body[len++] = '\n';
			} else {
				body[len++] = 'z';
			}
		}
		if (len > 0) {
			body[len++] = '\r';
			body[len++] = '\n';
		}
		char name[32];
		snprintf(name, sizeof name, "random body %d", n);
		body_compare(name, body, len, &failures);
	}
	assert_int_equal(failures, 0);
}

/*
 * A body whose last line has no CRLF is signed as the receiver will see it once SMTP has
 * ended that line: with the CRLF (RFC 6376 3.4.4 adds it; the line's trailing WSP goes).
 * Verifiers disagree on the unended form itself (dkimpy keeps one SP of "abc   ", libopendkim
 * refuses it), so this compares against the ended form.
 */
static void test_body_without_final_crlf(void **state)
{
	static const char *const bodies[] = {"abc",     "abc   ", "a \t b", "x\r\n\r\nlast",
	                                     "x\r\n  ", "   ",    "\t",     "x\r\n\r\n  \t"};
	int failures = 0;
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		struct buf open = BUF_INIT, ended = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
		assert_int_equal(buf_printf(&open, "From: a@example.com\r\n\r\n%s", bodies[i]), 0);
		assert_int_equal(buf_printf(&ended, "%s\r\n", open.data), 0);
		struct dksign_options o = options(BOTH, LIFETIME);
		char err[512], bha[64] = "", bhb[64] = "";
		if (dksign_message(ctx, &o, "example.com", open.data, open.len, &a, err,
		                   sizeof err) == DKSIGN_OK &&
		    dksign_message(ctx, &o, "example.com", ended.data, ended.len, &b, err,
		                   sizeof err) == DKSIGN_OK) {
			tag_value(a.data, "bh", bha, sizeof bha);
			tag_value(b.data, "bh", bhb, sizeof bhb);
		}
		if (bha[0] == '\0' || strcmp(bha, bhb) != 0) {
			print_error("\"%s\" without CRLF: got bh=%s, want bh=%s (with CRLF)\n",
			            bodies[i], bha, bhb);
			failures++;
		}
		buf_free(&open);
		buf_free(&ended);
		buf_free(&a);
		buf_free(&b);
	}
	assert_int_equal(failures, 0);
}

/* ---- reloads ---- */

static enum dksign_result sign_one(struct dksign_ctx *c, const char *domain, const char *msg,
                                   char *d_out, size_t d_len)
{
	struct dksign_options o = options(BOTH, LIFETIME);
	o.fallback_domain = NULL;
	struct buf out = BUF_INIT;
	char err[512];
	enum dksign_result r =
	    dksign_message(c, &o, domain, msg, strlen(msg), &out, err, sizeof err);
	if (r == DKSIGN_OK && d_out != NULL)
		tag_value(out.data, "d", d_out, d_len);
	buf_free(&out);
	return r;
}

static void file_put(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.new", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	assert_int_equal(rename(tmp, path), 0); /* a new inode, as an editor or cp --remove does */
}

static void test_reload(void **state)
{
	char dir[] = "/tmp/test_dksign_reload-XXXXXX", err[512], d[300], path[PATH_MAX];
	assert_non_null(mkdtemp(dir));
	/* an empty store: every domain is unknown */
	struct dksign_ctx *c = dksign_ctx_new(dir, err, sizeof err);
	assert_non_null(c);
	const char *msg = "From: a@one.example\r\n\r\nx\r\n";
	assert_int_equal(sign_one(c, "one.example", msg, NULL, 0), DKSIGN_NO_KEY);
	assert_int_equal(dksign_ctx_reload(c, err, sizeof err), 0);

	/* a new domain appears: one reload picks it up, the next sees no change */
	assert_int_equal(key_import(dir, "one.example", "s1", "TEST-ONLY-ed25519.pem"), 0);
	int rc = dksign_ctx_reload(c, err, sizeof err);
	if (rc != 1)
		fail_msg("reload after import: got %d (%s), want 1", rc, err);
	assert_int_equal(dksign_ctx_reload(c, err, sizeof err), 0);
	assert_int_equal(sign_one(c, "one.example", msg, d, sizeof d), DKSIGN_OK);
	assert_string_equal(d, "one.example");
	size_t domains, keys;
	dksign_ctx_counts(c, &domains, &keys);
	assert_int_equal(domains, 1);
	assert_int_equal(keys, 1);

	/* a corrupt key file: the reload fails, the old snapshot keeps signing */
	snprintf(path, sizeof path, "%s/dkim/one.example/s1.pem", dir);
	file_put(path, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
	assert_int_equal(key_import(dir, "two.example", "s2", "TEST-ONLY-rsa2048.pem"), 0);
	err[0] = '\0';
	rc = dksign_ctx_reload(c, err, sizeof err);
	if (rc != -1 || strstr(err, "s1.pem") == NULL)
		fail_msg("reload with a corrupt key: got %d \"%s\", want -1 naming s1.pem", rc,
		         err);
	assert_int_equal(sign_one(c, "one.example", msg, d, sizeof d), DKSIGN_OK);
	assert_int_equal(sign_one(c, "two.example", "From: a@two.example\r\n\r\nx\r\n", NULL, 0),
	                 DKSIGN_NO_KEY); /* not loaded: the new snapshot was dropped */
	/* the same broken generation is not tried again */
	assert_int_equal(dksign_ctx_reload(c, err, sizeof err), 0);

	/* a key file readable by others is refused too */
	assert_int_equal(dkkeys_selector_delete(dir, "one.example", "s1", err, sizeof err), 0);
	assert_int_equal(dksign_ctx_reload(c, err, sizeof err), 1);
	assert_int_equal(sign_one(c, "one.example", msg, NULL, 0), DKSIGN_NO_KEY);
	assert_int_equal(
	    sign_one(c, "two.example", "From: a@two.example\r\n\r\nx\r\n", d, sizeof d), DKSIGN_OK);
	assert_string_equal(d, "two.example");
	snprintf(path, sizeof path, "%s/dkim/two.example/s2.pem", dir);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(key_import(dir, "three.example", "s3", "TEST-ONLY-ed25519.pem"), 0);
	err[0] = '\0';
	rc = dksign_ctx_reload(c, err, sizeof err);
	if (rc != -1 || strstr(err, "mode") == NULL)
		fail_msg("reload with a 0644 key: got %d \"%s\", want -1 about its mode", rc, err);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(dkkeys_selector_delete(dir, "three.example", NULL, err, sizeof err), 0);
	assert_int_equal(dksign_ctx_reload(c, err, sizeof err), 1);

	/* a starting daemon refuses a store it cannot read whole */
	snprintf(path, sizeof path, "%s/dkim/two.example/selectors", dir);
	file_put(path, "s2 rsa 2048 active 1700000000 0\n");
	struct dksign_ctx *c2 = dksign_ctx_new(dir, err, sizeof err);
	if (c2 != NULL || strstr(err, "selectors:1") == NULL)
		fail_msg("ctx_new on a bad selectors file: got %p \"%s\", want NULL naming line 1",
		         (void *)c2, err);
	dksign_ctx_free(c);
	tree_remove(dir);
}

/* Pool threads sign while the loop thread reloads: every message is signed with one whole
 * snapshot or another, never a half-built one (run it under ASan and TSan). */
struct signer {
	pthread_t thread;
	struct dksign_ctx *ctx;
	int ok, bad;
};

static void *signer_main(void *arg)
{
	struct signer *s = arg;
	for (int i = 0; i < 150; i++) {
		char d[300];
		enum dksign_result r =
		    sign_one(s->ctx, "base.example",
		             "From: a@base.example\r\nSubject: s\r\n\r\nbody\r\n", d, sizeof d);
		if (r == DKSIGN_OK && strcmp(d, "base.example") == 0)
			s->ok++;
		else
			s->bad++;
	}
	return NULL;
}

static void test_reload_while_signing(void **state)
{
	char dir[] = "/tmp/test_dksign_race-XXXXXX", err[512];
	assert_non_null(mkdtemp(dir));
	assert_int_equal(key_import(dir, "base.example", "b1", "TEST-ONLY-ed25519.pem"), 0);
	struct dksign_ctx *c = dksign_ctx_new(dir, err, sizeof err);
	assert_non_null(c);
	struct signer s[4];
	for (int i = 0; i < 4; i++) {
		s[i] = (struct signer){.ctx = c};
		assert_int_equal(pthread_create(&s[i].thread, NULL, signer_main, &s[i]), 0);
	}
	int reloads = 0;
	for (int i = 0; i < 12; i++) {
		char domain[64];
		snprintf(domain, sizeof domain, "d%d.example", i);
		assert_int_equal(key_import(dir, domain, "k", "TEST-ONLY-ed25519.pem"), 0);
		if (dksign_ctx_reload(c, err, sizeof err) == 1)
			reloads++;
	}
	int ok = 0, bad = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(s[i].thread, NULL);
		ok += s[i].ok;
		bad += s[i].bad;
	}
	if (bad != 0 || ok != 600 || reloads != 12)
		fail_msg("got ok=%d bad=%d reloads=%d, want ok=600 bad=0 reloads=12", ok, bad,
		         reloads);
	size_t domains, keys;
	dksign_ctx_counts(c, &domains, &keys);
	assert_int_equal(domains, 13);
	dksign_ctx_free(c);
	tree_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_golden),
	    cmocka_unit_test(test_tags),
	    cmocka_unit_test(test_folding),
	    cmocka_unit_test(test_results),
	    cmocka_unit_test(test_too_many_signed_fields),
	    cmocka_unit_test(test_body_engines_agree),
	    cmocka_unit_test(test_body_without_final_crlf),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_reload_while_signing),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
