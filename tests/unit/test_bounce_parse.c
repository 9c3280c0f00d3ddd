/*
 * test_bounce_parse.c: unit tests of relay/bounce_parse.c: the decisions (DSN, ARF, text
 * bounce, auto-reply, not a bounce), the DSN and ARF fields, the heuristics' address forms,
 * and MIME edge cases: base64 and quoted-printable parts, nested multiparts, a DSN inside a
 * forwarded message (not ours), a missing final boundary, every prefix of a message, CRLF and
 * LF giving the same report, folded headers, RFC 2047 subjects, and each limit (depth, parts,
 * recipients, input size). Table-driven where the cases are alike; a failing case prints
 * "case: field got X, want Y". The corpus test (test_bounce_corpus.c) covers whole real-looking
 * messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/bounce_parse.h"
#include "tests/unit/lib_check.h"

#define RULES_PATH "deploy/bounce-rules.conf"

static struct bounce_rules *rules;
static struct bounce_report *rep;

static int setup(void **state)
{
	(void)state;
	char err[256];
	rules = bounce_rules_load(RULES_PATH, err, sizeof err);
	rep = malloc(sizeof *rep);
	if (rules == NULL || rep == NULL) {
		fprintf(stderr, "setup: %s\n", rules == NULL ? err : "out of memory");
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	bounce_rules_free(rules);
	free(rep);
	return 0;
}

/* A copy of s with every LF turned into CR LF (caller frees). */
static char *crlf(const char *s, size_t *len)
{
	size_t n = strlen(s), lf = 0;
	for (size_t i = 0; i < n; i++)
		lf += s[i] == '\n';
	char *o = malloc(n + lf + 1);
	assert_non_null(o);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			o[k++] = '\r';
		o[k++] = s[i];
	}
	o[k] = '\0';
	*len = k;
	return o;
}

static void parse_str(const char *msg)
{
	assert_int_equal(bounce_parse(rules, msg, strlen(msg), rep), BOUNCE_PARSE_OK);
}

/* ---- messages ---- */

#define DSN_HEAD                                                                                   \
	"From: MAILER-DAEMON@relay.example.org (Mail Delivery System)\n"                           \
	"To: bounces+tok@bounce.example.org\n"                                                     \
	"Subject: Undelivered Mail Returned to Sender\n"                                           \
	"MIME-Version: 1.0\n"

#define ORIGINAL                                                                                   \
	"Return-Path: <bounces+tok@bounce.example.org>\n"                                          \
	"From: news@example.org\n"                                                                 \
	"To: a@example.com\n"                                                                      \
	"Message-ID: <m1@example.org>\n"                                                           \
	"X-Postino-ID: 00112233aabbccdd\n"                                                         \
	"Subject: hi\n"                                                                            \
	"\n"                                                                                       \
	"body of the original\n"

static const char dsn_plain[] =
    DSN_HEAD "Content-Type: multipart/report; report-type=delivery-status;\n"
             "\tboundary=\"BND\"\n"
             "\n"
             "preamble\n"
             "--BND\n"
             "Content-Type: text/plain\n"
             "\n"
             "<a@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1 no such user\n"
             "--BND\n"
             "Content-Type: message/delivery-status\n"
             "\n"
             "Reporting-MTA: dns; relay.example.org\n"
             "Original-Envelope-Id: 00112233aabbccdd\n"
             "\n"
             "Final-Recipient: rfc822; a@example.com\n"
             "Original-Recipient: rfc822;A@Example.com\n"
             "Action: Failed\n"
             "Status: 5.1.1 (bad destination mailbox)\n"
             "Remote-MTA: dns; mx.example.com\n"
             "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to\n"
             "    reach does not exist. 550 5.1.1 Please check\n"
             "\n"
             "--BND\n"
             "Content-Type: message/rfc822\n"
             "\n" ORIGINAL "--BND--\n"
             "epilogue\n";

/* The DSN above, every field checked. */
static void test_dsn_fields(void **state)
{
	(void)state;
	parse_str(dsn_plain);
	const char *n = "dsn";
	check_str(n, "kind", bounce_kind_name(rep->kind), "dsn");
	check_size(n, "recipients", rep->recipient_count, 1);
	const struct bounce_recipient *p = &rep->recipients[0];
	check_str(n, "address", p->address, "a@example.com");
	check_str(n, "original", p->original, "A@Example.com");
	check_str(n, "action", p->action, "failed");
	check_str(n, "status", p->status, "5.1.1");
	check_u64(n, "code", (uint64_t)p->code, 550);
	check_str(n, "remote_mta", p->remote_mta, "mx.example.com");
	check_str(n, "diagnostic", p->diagnostic,
	          "550-5.1.1 The email account that you tried to reach does not exist. 550 "
	          "5.1.1 Please check");
	check_str(n, "reason", bounce_reason_name(p->verdict.reason), "userunknown");
	check_str(n, "class", bounce_class_name(p->verdict.class), "hard");
	check_str(n, "rule file", p->verdict.rule_file, RULES_PATH);
	check_str(n, "reporting_mta", rep->reporting_mta, "relay.example.org");
	check_str(n, "envelope_id", rep->envelope_id, "00112233aabbccdd");
	check_str(n, "from", rep->from, "MAILER-DAEMON@relay.example.org");
	check_str(n, "subject", rep->subject, "Undelivered Mail Returned to Sender");
	check_u64(n, "has_original", rep->has_original, 1);
	check_str(n, "original_message_id", rep->original_message_id, "<m1@example.org>");
	check_str(n, "original_postino_id", rep->original_postino_id, "00112233aabbccdd");
	check_str(n, "original_envelope_from", rep->original_envelope_from,
	          "bounces+tok@bounce.example.org");
	check_u64(n, "truncated", rep->truncated, 0);
	check_done();
}

/* Two reports must agree on everything a caller reads. */
static void reports_compare(const char *name, const struct bounce_report *a,
                            const struct bounce_report *b)
{
	check_str(name, "kind", bounce_kind_name(a->kind), bounce_kind_name(b->kind));
	check_size(name, "recipients", a->recipient_count, b->recipient_count);
	check_str(name, "postino id", a->original_postino_id, b->original_postino_id);
	check_str(name, "message id", a->original_message_id, b->original_message_id);
	check_str(name, "envelope from", a->original_envelope_from, b->original_envelope_from);
	check_str(name, "subject", a->subject, b->subject);
	check_str(name, "feedback type", a->feedback_type, b->feedback_type);
	for (size_t i = 0; i < a->recipient_count && i < b->recipient_count; i++) {
		const struct bounce_recipient *x = &a->recipients[i], *y = &b->recipients[i];
		check_str(name, "address", x->address, y->address);
		check_str(name, "status", x->status, y->status);
		check_u64(name, "code", (uint64_t)x->code, (uint64_t)y->code);
		check_str(name, "diagnostic", x->diagnostic, y->diagnostic);
		check_str(name, "reason", bounce_reason_name(x->verdict.reason),
		          bounce_reason_name(y->verdict.reason));
	}
}

/* The same message with CRLF and with LF line ends gives the same report. */
static void test_crlf_and_lf(void **state)
{
	(void)state;
	static const char *const msgs[] = {
	    dsn_plain, "From: MAILER-DAEMON@mail.example.net\n"
	               "Subject: failure notice\n\n"
	               "<x@example.net>:\n"
	               "Sorry, no mailbox here by that name. (#5.1.1)\n\n"
	               "--- Below this line is a copy of the message.\n\n" ORIGINAL};
	struct bounce_report *lf = malloc(sizeof *lf);
	assert_non_null(lf);
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		size_t len;
		char *c = crlf(msgs[i], &len);
		assert_int_equal(bounce_parse(rules, msgs[i], strlen(msgs[i]), lf),
		                 BOUNCE_PARSE_OK);
		assert_int_equal(bounce_parse(rules, c, len, rep), BOUNCE_PARSE_OK);
		reports_compare(i == 0 ? "dsn crlf vs lf" : "qmail crlf vs lf", rep, lf);
		check_size("crlf vs lf", "recipients", rep->recipient_count, 1);
		free(c);
	}
	free(lf);
	check_done();
}

/* ---- MIME ---- */

struct mime_case {
	const char *name;
	const char *msg;
	const char *kind;
	const char *address; /* of the first recipient; NULL: no recipient */
	const char *status;
	const char *reason;
	const char *postino_id;
	int truncated;
};

static const struct mime_case mime_cases[] = {
    {"base64 delivery-status",
     DSN_HEAD "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
              /* "Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; b@example.com\r\n"
                 "Action: failed\r\nStatus: 5.2.2\r\n" */
              "UmVwb3J0aW5nLU1UQTogZG5zOyB4DQoNCkZpbmFsLVJlY2lwaWVudDogcmZjODIyOyBiQGV4YW1w\n"
              "bGUuY29tDQpBY3Rpb246IGZhaWxlZA0KU3RhdHVzOiA1LjIuMg0K\n"
              "--b--\n",
     "dsn", "b@example.com", "5.2.2", "mailboxfull", "", 0},
    {"base64 with junk and no padding",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: BASE64\n\n"
              "UmVwb3J0aW5nLU1UQTogZG5zOyB4DQoNCkZpbmFsLVJlY2lwaWVudDogcmZjODIyOyBiQGV4YW1w\n"
              "!!bGUuY29tDQpBY3Rpb246IGZhaWxlZA0KU3RhdHVzOiA1LjIuMg0K  \n"
              "--b--\n",
     "dsn", "b@example.com", "5.2.2", "mailboxfull", "", 0},
    {"quoted-printable text part, soft breaks and =XX",
     "From: MAILER-DAEMON@mail.example.net\nSubject: failure notice\n"
     "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
     "<c@example.=\ncom>:\nRemote host said: 550 5.1.1 User unkn=  \nown =3D gone\n",
     "text", "c@example.com", "5.1.1", "userunknown", "", 0},
    {"folded Content-Type, quoted boundary with specials",
     DSN_HEAD "Content-Type: multipart/report;\n report-type=\"delivery-status\";\n"
              "\tboundary=\"=_a b;c\\\"d\"\n\n"
              "--=_a b;c\"d\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822;\n  <d@example.com>\nAction: failed\nStatus: 5.1.2\n"
              "--=_a b;c\"d--\n",
     "dsn", "d@example.com", "5.1.2", "hostunknown", "", 0},
    {"delimiter with trailing whitespace",
     DSN_HEAD "Content-Type: multipart/report; boundary=zz\n\n"
              "--zz \t\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; e@example.com\nAction: failed\nStatus: 5.2.1\n"
              "--zz-- \n",
     "dsn", "e@example.com", "5.2.1", "suspend", "", 0},
    {"boundary prefix is not a delimiter",
     DSN_HEAD "Content-Type: multipart/report; boundary=zz\n\n"
              "--zz\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; f@example.com\nAction: failed\nStatus: 5.1.1\n"
              "--zzz\nnot a part\n"
              "--zz--\n",
     "dsn", "f@example.com", "5.1.1", "userunknown", "", 0},
    {"missing final boundary",
     DSN_HEAD "Content-Type: multipart/report; boundary=zz\n\n"
              "--zz\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; g@example.com\nAction: failed\nStatus: 5.1.1\n",
     "dsn", "g@example.com", "5.1.1", "userunknown", "", 1},
    {"nested multiparts, DSN three levels down",
     DSN_HEAD "Content-Type: multipart/mixed; boundary=L1\n\n"
              "--L1\nContent-Type: multipart/mixed; boundary=L2\n\n"
              "--L2\nContent-Type: multipart/report; boundary=L3\n\n"
              "--L3\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; h@example.com\nAction: failed\nStatus: 5.1.1\n"
              "--L3--\n--L2--\n--L1--\n",
     "dsn", "h@example.com", "5.1.1", "userunknown", "", 0},
    {"a DSN inside a forwarded message is not ours",
     "From: someone@example.com\nSubject: Fwd: look at this\n"
     "Content-Type: multipart/mixed; boundary=o\n\n"
     "--o\nContent-Type: text/plain\n\nsee attached\n"
     "--o\nContent-Type: message/rfc822\n\n" DSN_HEAD
     "Content-Type: multipart/report; boundary=i\n\n"
     "--i\nContent-Type: message/delivery-status\n\n"
     "Final-Recipient: rfc822; i@example.com\nAction: failed\nStatus: 5.1.1\n--i--\n"
     "--o--\n",
     "notbounce", NULL, "", "", "", 0},
    {"nested rfc822: the first returned message counts",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; j@example.com\nAction: failed\nStatus: 5.1.1\n"
              "--b\nContent-Type: message/rfc822\n\n" ORIGINAL
              "--b\nContent-Type: message/rfc822\n\nX-Postino-ID: ffffffffffffffff\n\nx\n"
              "--b--\n",
     "dsn", "j@example.com", "5.1.1", "userunknown", "00112233aabbccdd", 0},
    {"text/rfc822-headers original",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; k@example.com\nAction: failed\nStatus: 5.1.1\n"
              "--b\nContent-Type: text/rfc822-headers\n\nX-Postino-ID: 0a0b0c0d0e0f1011\n"
              "--b--\n",
     "dsn", "k@example.com", "5.1.1", "userunknown", "0a0b0c0d0e0f1011", 0},
    {"multipart without boundary",
     DSN_HEAD "Content-Type: multipart/report\n\n--b\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; l@example.com\n--b--\n",
     "text", "", "", "undefined", "", 0},
    {"only a header, no body", "From: MAILER-DAEMON@example.net\nSubject: x", "text", "", "",
     "undefined", "", 0},
    {"empty input", "", "notbounce", NULL, "", "", "", 0},
    {"a DSN recipient with Original-Recipient only",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\n\n"
              "Original-Recipient: rfc822;m@example.com\nAction: failed\nStatus: 5.1.1\n"
              "--b--\n",
     "dsn", "m@example.com", "5.1.1", "userunknown", "", 0},
    {"Action delivered",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; n@example.com\nAction: relayed\nStatus: 2.0.0\n"
              "--b--\n",
     "dsn", "n@example.com", "2.0.0", "delivered", "", 0},
    {"failed 4.x.x networkerror becomes expired",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; o@example.com\nAction: failed\nStatus: 4.4.2\n"
              "Diagnostic-Code: X-Postfix; lost connection with mx.example.com\n"
              "--b--\n",
     "dsn", "o@example.com", "4.4.2", "expired", "", 0},
    {"DSN without Diagnostic-Code takes it from the text",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: text/plain\n\n  p@example.com\n    Unrouteable address\n"
              "--b\nContent-Type: message/delivery-status\n\n"
              "Final-Recipient: rfc822; p@example.com\nAction: failed\nStatus: 5.0.0\n"
              "--b--\n",
     "dsn", "p@example.com", "5.0.0", "hostunknown", "", 0},
    {"an unknown Content-Transfer-Encoding is read as is",
     DSN_HEAD "Content-Type: multipart/report; boundary=b\n\n"
              "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: x-uu\n\n"
              "Final-Recipient: rfc822; q@example.com\nAction: failed\nStatus: 5.2.2\n"
              "--b--\n",
     "dsn", "q@example.com", "5.2.2", "mailboxfull", "", 0},
};

static void test_mime(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof mime_cases / sizeof mime_cases[0]; i++) {
		const struct mime_case *c = &mime_cases[i];
		size_t len = strlen(c->msg);
		char *copy =
		    malloc(len > 0 ? len : 1); /* exactly len octets: ASan sees overreads */
		assert_non_null(copy);
		memcpy(copy, c->msg, len);
		enum bounce_parse_status st = bounce_parse(rules, copy, len, rep);
		check_u64(c->name, "status", st, BOUNCE_PARSE_OK);
		check_str(c->name, "kind", bounce_kind_name(rep->kind), c->kind);
		check_u64(c->name, "truncated", rep->truncated, (uint64_t)c->truncated);
		check_str(c->name, "postino id", rep->original_postino_id, c->postino_id);
		if (c->address == NULL) {
			check_size(c->name, "recipients", rep->recipient_count, 0);
		} else if (rep->recipient_count == 0) {
			check_fail("%s: no recipient, want %s\n", c->name, c->address);
		} else {
			const struct bounce_recipient *p = &rep->recipients[0];
			check_str(c->name, "address", p->address, c->address);
			check_str(c->name, "status", p->status, c->status);
			check_str(c->name, "reason", bounce_reason_name(p->verdict.reason),
			          c->reason);
		}
		free(copy);
	}
	check_done();
}

/* Every prefix of a message parses without error, within bounds; a cut inside the recipient
 * block still finds the recipient once its Final-Recipient line is complete. */
static void test_truncated_input(void **state)
{
	(void)state;
	size_t len = strlen(dsn_plain);
	const char *fr = strstr(dsn_plain, "Final-Recipient: rfc822; a@example.com\n");
	size_t complete =
	    (size_t)(fr - dsn_plain) + strlen("Final-Recipient: rfc822; a@example.com");
	for (size_t k = 0; k <= len; k++) {
		char *cut = malloc(k > 0 ? k : 1); /* exactly k octets: ASan sees any overread */
		assert_non_null(cut);
		memcpy(cut, dsn_plain, k);
		enum bounce_parse_status st = bounce_parse(rules, cut, k, rep);
		char name[64];
		snprintf(name, sizeof name, "prefix of %zu octets", k);
		check_u64(name, "status", st, BOUNCE_PARSE_OK);
		if (rep->recipient_count > BOUNCE_PARSE_RCPTS_MAX)
			check_fail("%s: %zu recipients\n", name, rep->recipient_count);
		if (k >= complete && k < len) {
			check_str(name, "kind", bounce_kind_name(rep->kind), "dsn");
			check_str(name, "address", rep->recipients[0].address, "a@example.com");
		}
		free(cut);
	}
	check_done();
}

/* ---- ARF ---- */

struct arf_case {
	const char *name;
	const char *fields;
	const char *original;
	const char *address;
	const char *class;
	const char *type;
};

#define ARF_HEAD                                                                                   \
	"From: fbl@example.net\nSubject: complaint\n"                                              \
	"Content-Type: multipart/report; report-type=feedback-report; boundary=f\n\n"              \
	"--f\nContent-Type: text/plain\n\nThis is an abuse report.\n"                              \
	"--f\nContent-Type: message/feedback-report\n\n"

static const struct arf_case arf_cases[] = {
    {"Original-Rcpt-To wins", "Feedback-Type: abuse\nOriginal-Rcpt-To: <a@example.com>\n",
     "To: b@example.com\nX-HmXmrOriginalRecipient: c@example.com\n", "a@example.com", "complaint",
     "abuse"},
    {"then X-HmXmrOriginalRecipient", "Feedback-Type: Abuse\n",
     "To: b@example.com\nX-HmXmrOriginalRecipient: <c@example.com>\n", "c@example.com", "complaint",
     "abuse"},
    {"then the original's To", "Feedback-Type: fraud\n",
     "To: \"Bee, B.\" <b@example.com>, d@example.com\n", "b@example.com", "complaint", "fraud"},
    {"no recipient anywhere", "Feedback-Type: virus\n", "Subject: x\n", "", "complaint", "virus"},
    {"other", "Feedback-Type: other\nOriginal-Rcpt-To: e@example.com\n", "To: x@example.com\n",
     "e@example.com", "complaint", "other"},
    {"not-spam is no complaint", "Feedback-Type: not-spam\nOriginal-Rcpt-To: f@example.com\n",
     "To: f@example.com\n", "f@example.com", "ignore", "not-spam"},
    {"auth-failure is no complaint",
     "Feedback-Type: auth-failure\nAuth-Failure: dkim\nOriginal-Rcpt-To: g@example.com\n",
     "To: g@example.com\n", "g@example.com", "ignore", "auth-failure"},
};

static void test_arf(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof arf_cases / sizeof arf_cases[0]; i++) {
		const struct arf_case *c = &arf_cases[i];
		char msg[2048];
		snprintf(msg, sizeof msg,
		         ARF_HEAD "%s\n--f\nContent-Type: message/rfc822\n\n%s"
		                  "Return-Path: <bounces+t@bounce.example.org>\n"
		                  "X-Postino-ID: 0123456789abcdef\n\nbody\n--f--\n",
		         c->fields, c->original);
		parse_str(msg);
		check_str(c->name, "kind", bounce_kind_name(rep->kind), "arf");
		check_size(c->name, "recipients", rep->recipient_count, 1);
		check_str(c->name, "address", rep->recipients[0].address, c->address);
		check_str(c->name, "reason", bounce_reason_name(rep->recipients[0].verdict.reason),
		          "feedback");
		check_str(c->name, "class", bounce_class_name(rep->recipients[0].verdict.class),
		          c->class);
		check_str(c->name, "feedback type", rep->feedback_type, c->type);
		check_str(c->name, "postino id", rep->original_postino_id, "0123456789abcdef");
		check_str(c->name, "envelope from", rep->original_envelope_from,
		          "bounces+t@bounce.example.org");
	}
	/* Original-Mail-From when the original has no Return-Path */
	parse_str(ARF_HEAD "Feedback-Type: abuse\nOriginal-Mail-From: <bounces+u@example.org>\n"
	                   "\n--f--\n");
	check_str("Original-Mail-From", "envelope from", rep->original_envelope_from,
	          "bounces+u@example.org");
	check_u64("Original-Mail-From", "has_original", rep->has_original, 0);
	check_done();
}

/* ---- text bounces, auto-replies, others ---- */

struct kind_case {
	const char *name;
	const char *msg;
	const char *kind;
	size_t recipients;
	const char *address; /* first recipient */
	const char *reason;
	int code;
};

static const struct kind_case kind_cases[] = {
    {"From MAILER-DAEMON alone",
     "From: Mailer-Daemon@example.net\nSubject: x\n\n<a@example.com>: 550 5.1.1 gone\n", "text", 1,
     "a@example.com", "userunknown", 550},
    {"From postmaster with a display name",
     "From: \"Post Master\" <POSTMASTER@example.net>\nSubject: x\n\na@example.com\n    550 5.2.2 "
     "full\n",
     "text", 1, "a@example.com", "mailboxfull", 550},
    {"bounce Subject alone",
     "From: robot@example.net\nSubject: Returned mail: see transcript\n\n"
     "a@example.com... User unknown\n",
     "text", 1, "a@example.com", "userunknown", 0},
    {"X-Failed-Recipients alone",
     "From: robot@example.net\nSubject: x\nX-Failed-Recipients: a@example.com, b@example.com\n\n"
     "550 5.7.1 Relaying denied\n",
     "text", 2, "a@example.com", "norelaying", 550},
    {"sentence with the address",
     "From: mailer-daemon@example.net\nSubject: Delivery Status "
     "Notification (Failure)\n\nYour message wasn't delivered to "
     "<a@example.com> because the address couldn't be found.\n",
     "text", 1, "a@example.com", "undefined", 0},
    {"sendmail address with dots",
     "From: MAILER-DAEMON@example.net\nSubject: x\n\n<a@example.com>... "
     "Deferred: Connection refused by mx.example.com.\n",
     "text", 1, "a@example.com", "networkerror", 0},
    {"duplicate addresses are one recipient",
     "From: MAILER-DAEMON@example.net\nSubject: x\n\n<a@example.com>:\nfirst\n\nA@EXAMPLE.COM\n550 "
     "5.1.1 second\n",
     "text", 1, "a@example.com", "userunknown", 550},
    {"URLs and sentences are no addresses",
     "From: MAILER-DAEMON@example.net\nSubject: x\n\nhttps://example.com/@x.y/z\nmail "
     "me@example.com please\n<not an address>\n",
     "text", 1, "", "undefined", 0},
    {"delay subject gives action delayed",
     "From: MAILER-DAEMON@example.net\nSubject: Warning: could not send message for past 4 "
     "hours\n\n<a@example.com>... Deferred: Connection timed out\n",
     "text", 1, "a@example.com", "networkerror", 0},
    {"Auto-Submitted: auto-replied",
     "From: Ann <ann@example.com>\nSubject: Re: hi\nAuto-Submitted: auto-replied\n\naway\n",
     "autoreply", 1, "ann@example.com", "vacation", 0},
    {"Auto-Submitted: no is not one",
     "From: Ann <ann@example.com>\nSubject: Re: hi\nAuto-Submitted: no\n\nhello\n", "notbounce", 0,
     NULL, NULL, 0},
    {"auto-generated alone is not one",
     "From: Ann <ann@example.com>\nSubject: Your invoice\nAuto-Submitted: auto-generated\n\nx\n",
     "notbounce", 0, NULL, NULL, 0},
    {"X-Autorespond", "From: ann@example.com\nSubject: hi\nX-Autorespond: yes\n\nx\n", "autoreply",
     1, "ann@example.com", "vacation", 0},
    {"Precedence: auto_reply", "From: ann@example.com\nSubject: hi\nPrecedence: auto_reply\n\nx\n",
     "autoreply", 1, "ann@example.com", "vacation", 0},
    {"Out of Office subject", "From: ann@example.com\nSubject: Out of Office: hi\n\nx\n",
     "autoreply", 1, "ann@example.com", "vacation", 0},
    {"encoded-word subject, two words",
     "From: ann@example.com\nSubject: =?utf-8?B?QXV0b21hdGlj?= =?utf-8?Q?_reply:_hi?=\n\nx\n",
     "autoreply", 1, "ann@example.com", "vacation", 0},
    {"Precedence: bulk alone is not one",
     "From: ann@example.com\nSubject: news\nPrecedence: bulk\n\nx\n", "notbounce", 0, NULL, NULL,
     0},
    {"a normal message", "From: ann@example.com\nSubject: lunch?\n\nsee you at 12\n", "notbounce",
     0, NULL, NULL, 0},
};

static void test_kinds(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof kind_cases / sizeof kind_cases[0]; i++) {
		const struct kind_case *c = &kind_cases[i];
		parse_str(c->msg);
		check_str(c->name, "kind", bounce_kind_name(rep->kind), c->kind);
		check_size(c->name, "recipients", rep->recipient_count, c->recipients);
		if (c->recipients == 0 || rep->recipient_count == 0)
			continue;
		const struct bounce_recipient *p = &rep->recipients[0];
		check_str(c->name, "address", p->address, c->address);
		check_str(c->name, "reason", bounce_reason_name(p->verdict.reason), c->reason);
		check_u64(c->name, "code", (uint64_t)p->code, (uint64_t)c->code);
	}
	parse_str("From: MAILER-DAEMON@example.net\nSubject: Warning: could not send message\n\n"
	          "<a@example.com>... Deferred\n");
	check_str("delay subject", "action", rep->recipients[0].action, "delayed");
	parse_str(
	    "From: MAILER-DAEMON@example.net\nSubject: failure notice\n\n<a@example.com>: x\n");
	check_str("failure subject", "action", rep->recipients[0].action, "failed");
	parse_str(
	    "From: ann@example.com\nSubject: =?iso-8859-1?q?Abwesenheitsnotiz:_F=FCr?=\n\nx\n");
	check_str("Q word", "subject", rep->subject, "Abwesenheitsnotiz: F\xfcr");
	static const char nul[] = "From: MAILER-DAEMON@example.net\nSubject: failure notice\n\n"
	                          "he\0llo\n<r@example.com>:\nno such\0user\n";
	assert_int_equal(bounce_parse(rules, nul, sizeof nul - 1, rep), BOUNCE_PARSE_OK);
	check_str("NUL octets", "address", rep->recipients[0].address, "r@example.com");
	check_str("NUL octets", "diagnostic", rep->recipients[0].diagnostic, "no such user");
	check_str("NUL octets", "reason", bounce_reason_name(rep->recipients[0].verdict.reason),
	          "userunknown");
	parse_str("From: a@example.com\nSubject: =?utf-8?x?bad?= =?broken\n\nx\n");
	check_str("bad words kept", "subject", rep->subject, "=?utf-8?x?bad?= =?broken");
	check_done();
}

/* ---- limits ---- */

/* A buffer holding the concatenation of the formatted pieces (caller frees). */
static char *build(size_t cap, size_t *len)
{
	char *b = malloc(cap);
	assert_non_null(b);
	b[0] = '\0';
	*len = 0;
	return b;
}

static void add(char *b, size_t cap, size_t *len, const char *s)
{
	size_t n = strlen(s);
	assert_true(*len + n < cap);
	memcpy(b + *len, s, n + 1);
	*len += n;
}

/* A DSN at the bottom of `depth` nested multiparts. */
static char *nested(unsigned depth, size_t *len)
{
	size_t cap = 4096 + depth * 200;
	char *b = build(cap, len);
	char line[128];
	add(b, cap, len, DSN_HEAD);
	for (unsigned i = 0; i < depth; i++) {
		snprintf(line, sizeof line,
		         "Content-Type: multipart/mixed; boundary=N%u\n\n--N%u\n", i, i);
		add(b, cap, len, line);
	}
	add(b, cap, len,
	    "Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822; deep@example.com\n"
	    "Action: failed\nStatus: 5.1.1\n");
	for (unsigned i = depth; i-- > 0;) {
		snprintf(line, sizeof line, "--N%u--\n", i);
		add(b, cap, len, line);
	}
	return b;
}

static void test_limits(void **state)
{
	(void)state;
	size_t len;
	char *b;

	/* depth: the top-level entity is depth 0, so BOUNCE_PARSE_DEPTH_MAX multiparts fit */
	b = nested(BOUNCE_PARSE_DEPTH_MAX, &len);
	assert_int_equal(bounce_parse(rules, b, len, rep), BOUNCE_PARSE_OK);
	check_str("depth at the limit", "kind", bounce_kind_name(rep->kind), "dsn");
	check_u64("depth at the limit", "truncated", rep->truncated, 0);
	free(b);
	b = nested(BOUNCE_PARSE_DEPTH_MAX + 1, &len);
	assert_int_equal(bounce_parse(rules, b, len, rep), BOUNCE_PARSE_OK);
	check_str("depth past the limit", "kind", bounce_kind_name(rep->kind), "text");
	check_u64("depth past the limit", "truncated", rep->truncated, 1);
	free(b);
	b = nested(5000, &len);
	assert_int_equal(bounce_parse(rules, b, len, rep), BOUNCE_PARSE_OK);
	check_u64("depth 5000", "truncated", rep->truncated, 1);
	free(b);

	/* parts: BOUNCE_PARSE_PARTS_MAX entities are visited, the DSN after them is not */
	size_t cap = 1 << 20;
	b = build(cap, &len);
	add(b, cap, &len, DSN_HEAD "Content-Type: multipart/mixed; boundary=p\n\n");
	for (int i = 0; i < BOUNCE_PARSE_PARTS_MAX; i++)
		add(b, cap, &len, "--p\nContent-Type: text/plain\n\nfiller\n");
	add(b, cap, &len,
	    "--p\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; "
	    "late@example.com\nAction: failed\nStatus: 5.1.1\n--p--\n");
	assert_int_equal(bounce_parse(rules, b, len, rep), BOUNCE_PARSE_OK);
	check_u64("too many parts", "truncated", rep->truncated, 1);
	check_str("too many parts", "kind", bounce_kind_name(rep->kind), "text");
	free(b);

	/* recipients: BOUNCE_PARSE_RCPTS_MAX kept, the rest counted as truncated */
	b = build(cap, &len);
	add(b, cap, &len,
	    DSN_HEAD "Content-Type: multipart/report; boundary=r\n\n--r\n"
	             "Content-Type: message/delivery-status\n\nReporting-MTA: dns; x\n");
	char line[160];
	for (int i = 0; i < BOUNCE_PARSE_RCPTS_MAX + 50; i++) {
		snprintf(
		    line, sizeof line,
		    "\nFinal-Recipient: rfc822; r%d@example.com\nAction: failed\nStatus: 5.1.1\n",
		    i);
		add(b, cap, &len, line);
	}
	add(b, cap, &len, "--r--\n");
	assert_int_equal(bounce_parse(rules, b, len, rep), BOUNCE_PARSE_OK);
	check_size("150 recipients", "kept", rep->recipient_count, BOUNCE_PARSE_RCPTS_MAX);
	check_u64("150 recipients", "recipients_truncated", rep->recipients_truncated, 1);
	check_str("150 recipients", "last kept",
	          rep->recipients[BOUNCE_PARSE_RCPTS_MAX - 1].address, "r99@example.com");
	free(b);

	/* input: past BOUNCE_PARSE_INPUT_MAX is not read */
	size_t big = BOUNCE_PARSE_INPUT_MAX + 100;
	b = malloc(big);
	assert_non_null(b);
	static const char head[] = "From: MAILER-DAEMON@example.net\nSubject: failure notice\n\n";
	memset(b, 'x', big);
	memcpy(b, head, sizeof head - 1);
	for (size_t i = sizeof head; i < big; i += 80)
		b[i] = '\n';
	memcpy(b + big - 40, "\n<late@example.com>:\n550 5.1.1 x\n", 33);
	assert_int_equal(bounce_parse(rules, b, big, rep), BOUNCE_PARSE_OK);
	check_u64("input past the limit", "truncated", rep->truncated, 1);
	check_str("input past the limit", "address", rep->recipients[0].address, "");
	/* a header section longer than BOUNCE_PARSE_HEADER_MAX */
	memset(b, 'x', big);
	memcpy(b, "X-Long: ", 8);
	assert_int_equal(bounce_parse(rules, b, BOUNCE_PARSE_HEADER_MAX * 2, rep), BOUNCE_PARSE_OK);
	check_u64("header past the limit", "truncated", rep->truncated, 1);
	check_str("header past the limit", "kind", bounce_kind_name(rep->kind), "notbounce");
	free(b);

	/* text: the heuristics read BOUNCE_PARSE_TEXT_MAX octets of the human-readable part */
	for (int past = 0; past <= 1; past++) {
		static const char th[] =
		    "From: MAILER-DAEMON@example.net\nSubject: failure notice\n\n";
		static const char tail[] = "<t@example.com>:\n550 5.1.1 gone\n";
		/* the tail ends at the limit, or starts there */
		size_t fill = BOUNCE_PARSE_TEXT_MAX - (past ? 0 : sizeof tail - 1);
		size_t tlen = sizeof th - 1 + fill + sizeof tail - 1;
		b = malloc(tlen);
		assert_non_null(b);
		memcpy(b, th, sizeof th - 1);
		memset(b + sizeof th - 1, 'x', fill);
		for (size_t i = sizeof th - 1 + 79; i < sizeof th - 1 + fill; i += 80)
			b[i] = '\n';
		b[sizeof th - 1 + fill - 1] = '\n';
		memcpy(b + sizeof th - 1 + fill, tail, sizeof tail - 1);
		assert_int_equal(bounce_parse(rules, b, tlen, rep), BOUNCE_PARSE_OK);
		const char *name = past ? "text past the limit" : "text at the limit";
		check_str(name, "address", rep->recipients[0].address, past ? "" : "t@example.com");
		check_u64(name, "truncated", rep->truncated, (uint64_t)past);
		free(b);
	}

	/* many small base64 parts stay within the decoding budget */
	b = build(cap, &len);
	add(b, cap, &len, DSN_HEAD "Content-Type: multipart/report; boundary=q\n\n");
	for (int i = 0; i < 100; i++)
		add(b, cap, &len,
		    "--q\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nAAAA\n");
	add(b, cap, &len, "--q--\n");
	assert_int_equal(bounce_parse(rules, b, len, rep), BOUNCE_PARSE_OK);
	free(b);
	check_done();
}

/* No rules: every reason undefined, kinds unchanged. */
static void test_no_rules(void **state)
{
	(void)state;
	assert_int_equal(bounce_parse(NULL, dsn_plain, strlen(dsn_plain), rep), BOUNCE_PARSE_OK);
	check_str("no rules", "kind", bounce_kind_name(rep->kind), "dsn");
	check_str("no rules", "reason", bounce_reason_name(rep->recipients[0].verdict.reason),
	          "undefined");
	check_str("kind names", "text", bounce_kind_name(BOUNCE_KIND_TEXT), "text");
	check_str("kind names", "arf", bounce_kind_name(BOUNCE_KIND_ARF), "arf");
	check_str("kind names", "autoreply", bounce_kind_name(BOUNCE_KIND_AUTOREPLY), "autoreply");
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dsn_fields), cmocka_unit_test(test_crlf_and_lf),
	    cmocka_unit_test(test_mime),       cmocka_unit_test(test_truncated_input),
	    cmocka_unit_test(test_arf),        cmocka_unit_test(test_kinds),
	    cmocka_unit_test(test_limits),     cmocka_unit_test(test_no_rules),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
