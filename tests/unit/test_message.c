/*
 * test_message.c: unit tests of relay/message.c: the Received: header, and Message-ID: and
 * Date: added only when missing. Failures print got/want.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "relay/message.h"

static struct message_trace trace(void)
{
	struct message_trace t;
	memset(&t, 0, sizeof t);
	snprintf(t.qid, sizeof t.qid, "0123456789abcdef");
	snprintf(t.helo, sizeof t.helo, "client.example");
	snprintf(t.client_ip, sizeof t.client_ip, "192.0.2.7");
	snprintf(t.hostname, sizeof t.hostname, "mx.postino.test");
	t.esmtp = true;
	t.authenticated = true;
	t.time = 1795312200; /* Sun, 22 Nov 2026 ... */
	return t;
}

static void expect_output(const struct message_trace *t, const char *in, const char *want)
{
	struct buf out = BUF_INIT;
	struct message_meta meta;
	const char *err = message_prepare(t, in, strlen(in), &out, &meta);
	if (err != NULL)
		fail_msg("got error %s, want none", err);
	if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
		fail_msg("got:\n%s\nwant:\n%s", out.data, want);
	buf_free(&out);
}

static void test_adds_missing_fields(void **state)
{
	struct message_trace t = trace();
	char date[64];
	message_date(t.time, date, sizeof date);
	assert_string_equal(date, "Sun, 22 Nov 2026 01:50:00 +0000");
	expect_output(&t, "From: a@example.com\r\n\r\nbody\r\n",
	              "Received: from client.example ([192.0.2.7])\r\n"
	              "\tby mx.postino.test (Postino) with ESMTPA id 0123456789abcdef;\r\n"
	              "\tSun, 22 Nov 2026 01:50:00 +0000\r\n"
	              "Message-ID: <0123456789abcdef.1795312200@mx.postino.test>\r\n"
	              "Date: Sun, 22 Nov 2026 01:50:00 +0000\r\n"
	              "From: a@example.com\r\n\r\nbody\r\n");
}

static void test_keeps_present_fields(void **state)
{
	struct message_trace t = trace();
	snprintf(t.tls, sizeof t.tls, "TLSv1.3 TLS_AES_256_GCM_SHA384");
	snprintf(t.for_rcpt, sizeof t.for_rcpt, "bob@dest.example");
	expect_output(
	    &t, "message-id: <x@y>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: a@b\r\n\r\n",
	    "Received: from client.example ([192.0.2.7])\r\n"
	    "\tby mx.postino.test (Postino) with ESMTPSA id 0123456789abcdef\r\n"
	    "\t(TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n"
	    "\tfor <bob@dest.example>;\r\n"
	    "\tSun, 22 Nov 2026 01:50:00 +0000\r\n"
	    "message-id: <x@y>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: a@b\r\n\r\n");
}

/* Message-ID in the body is not a header field: it does not count. */
static void test_body_fields_ignored(void **state)
{
	struct message_trace t = trace();
	t.esmtp = false;
	t.authenticated = false;
	struct buf out = BUF_INIT;
	struct message_meta meta;
	const char *in = "From: a@b\r\n\r\nMessage-ID: <in@body>\r\nDate: x\r\n";
	assert_null(message_prepare(&t, in, strlen(in), &out, &meta));
	if (strstr(out.data, "with SMTP id") == NULL)
		fail_msg("got %s, want \"with SMTP id\"", out.data);
	if (strstr(out.data, "\r\nMessage-ID: <0123456789abcdef.") == NULL)
		fail_msg("got %s, want an added Message-ID", out.data);
	buf_free(&out);
}

struct kw_case {
	bool esmtp, tls, auth, utf8;
	const char *want;
};

static void test_with_keywords(void **state)
{
	static const struct kw_case cases[] = {
	    {false, false, false, false, "with SMTP "},
	    {true, false, false, false, "with ESMTP "},
	    {true, true, false, false, "with ESMTPS "},
	    {true, false, true, false, "with ESMTPA "},
	    {true, true, true, false, "with ESMTPSA "},
	    {true, true, true, true, "with UTF8SMTPSA "},
	    {true, false, false, true, "with UTF8SMTP "},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct message_trace t = trace();
		t.esmtp = cases[i].esmtp;
		t.authenticated = cases[i].auth;
		t.utf8 = cases[i].utf8;
		if (cases[i].tls)
			snprintf(t.tls, sizeof t.tls, "TLSv1.2 X");
		struct buf out = BUF_INIT;
		struct message_meta meta;
		assert_null(message_prepare(&t, "From: a@b\r\n\r\n", 13, &out, &meta));
		if (strstr(out.data, cases[i].want) == NULL) {
			print_error("case %zu: got %.120s, want \"%s\"\n", i, out.data,
			            cases[i].want);
			failures++;
		}
		buf_free(&out);
	}
	assert_int_equal(failures, 0);
}

/* X-Campaign-ID is taken out of the stored message and its value checked. */
static void test_campaign(void **state)
{
	static const struct {
		const char *name, *header;
		const char *campaign; /* NULL: refused */
	} cases[] = {
	    {"plain", "X-Campaign-ID: spring-sale\r\n", "spring-sale"},
	    {"case of the name", "x-campaign-id:  q3.2026 \r\n", "q3.2026"},
	    {"folded", "X-Campaign-ID:\r\n  abc\r\n", "abc"},
	    {"none", "", ""},
	    {"empty", "X-Campaign-ID: \r\n", NULL},
	    {"inner space", "X-Campaign-ID: a b\r\n", NULL},
	    {"8-bit", "X-Campaign-ID: caf\xc3\xa9\r\n", NULL},
	    {"twice", "X-Campaign-ID: a\r\nX-Campaign-ID: b\r\n", NULL},
	    {"129 octets",
	     "X-Campaign-ID: "
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aaa"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
	     NULL},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct message_trace t = trace();
		char in[512];
		snprintf(in, sizeof in, "From: a@b\r\n%sSubject: s\r\n\r\nX-Campaign-ID: body\r\n",
		         cases[i].header);
		struct buf out = BUF_INIT;
		struct message_meta meta;
		assert_null(message_prepare(&t, in, strlen(in), &out, &meta));
		bool ok = cases[i].campaign == NULL
		              ? meta.campaign_bad
		              : !meta.campaign_bad && strcmp(meta.campaign, cases[i].campaign) == 0;
		if (!ok) {
			print_error("%s: got campaign \"%s\" bad=%d, want %s\n", cases[i].name,
			            meta.campaign, meta.campaign_bad,
			            cases[i].campaign ? cases[i].campaign : "refused");
			failures++;
		}
		/* the field is gone from the header, the body's line stays */
		char *body = strstr(out.data, "\r\n\r\n");
		if (body == NULL ||
		    strcasestr(out.data, "X-Campaign-ID:") != strstr(body, "X-Campaign-ID:") ||
		    strstr(out.data, "Subject: s\r\n") == NULL) {
			print_error("%s: got %s, want the header field removed\n", cases[i].name,
			            out.data);
			failures++;
		}
		buf_free(&out);
	}
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_adds_missing_fields),
	    cmocka_unit_test(test_keeps_present_fields),
	    cmocka_unit_test(test_body_fields_ignored),
	    cmocka_unit_test(test_with_keywords),
	    cmocka_unit_test(test_campaign),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
