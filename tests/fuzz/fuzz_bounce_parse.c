/*
 * fuzz_bounce_parse.c: libFuzzer target for relay/bounce_parse.c and relay/bounce.c. Parses
 * the input as a returned message with the shipped rules (deploy/bounce-rules.conf, read once
 * from the current folder; a small built-in set when it cannot be read) and traps when the
 * report breaks its contract: at most BOUNCE_PARSE_RCPTS_MAX recipients, every string
 * NUL-terminated within its array, statuses well-formed enhanced codes, codes 0 or 200..599,
 * reasons and classes in range, no recipient for a message that is no bounce and one at most
 * for a feedback report or an auto-reply. It also classifies the input as one SMTP reply,
 * checks bounce_reply_split and bounce_reply_find stay within their bounds, and reads the input
 * as a rules file.
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/bounce_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char builtin_rules[] = "text \"spamhaus\" blocked\n"
                                    "text \"user unknown\" userunknown\n"
                                    "status *.1.1 userunknown\n"
                                    "status *.2.2 mailboxfull\n"
                                    "code 4xx onhold\n"
                                    "code 5xx undefined\n";

static struct bounce_rules *rules;
static struct bounce_report *report;

static void string_check(const char *s, size_t size)
{
	if (strnlen(s, size) >= size)
		__builtin_trap();
}

#define STRING_CHECK(s) string_check((s), sizeof(s))

static void status_check(const char *st)
{
	char again[SMTP_ENHANCED_MAX + 1];
	size_t n = strnlen(st, SMTP_ENHANCED_MAX + 1);
	if (n > SMTP_ENHANCED_MAX || (n > 0 && smtp_enhanced_parse(st, n, again) != n))
		__builtin_trap();
}

static void verdict_check(const struct bounce_verdict *v)
{
	if ((unsigned)v->reason >= BOUNCE_REASON_COUNT || (unsigned)v->class >= BOUNCE_CLASS_COUNT)
		__builtin_trap();
	if (v->rule_file == NULL || (v->rule_line > 0 && v->rule_file[0] == '\0'))
		__builtin_trap();
}

static void report_check(const struct bounce_report *r)
{
	if (r->recipient_count > BOUNCE_PARSE_RCPTS_MAX)
		__builtin_trap();
	if (r->kind == BOUNCE_KIND_NOTBOUNCE && r->recipient_count != 0)
		__builtin_trap();
	if ((r->kind == BOUNCE_KIND_ARF || r->kind == BOUNCE_KIND_AUTOREPLY) &&
	    r->recipient_count > 1)
		__builtin_trap();
	if ((r->kind == BOUNCE_KIND_DSN || r->kind == BOUNCE_KIND_TEXT) &&
	    r->recipient_count == 0 && !r->recipients_truncated)
		__builtin_trap();
	STRING_CHECK(r->from);
	STRING_CHECK(r->subject);
	STRING_CHECK(r->reporting_mta);
	STRING_CHECK(r->envelope_id);
	STRING_CHECK(r->feedback_type);
	STRING_CHECK(r->reported_domain);
	STRING_CHECK(r->source_ip);
	STRING_CHECK(r->original_message_id);
	STRING_CHECK(r->original_postino_id);
	STRING_CHECK(r->original_envelope_from);
	for (size_t i = 0; i < r->recipient_count; i++) {
		const struct bounce_recipient *p = &r->recipients[i];
		STRING_CHECK(p->address);
		STRING_CHECK(p->original);
		STRING_CHECK(p->action);
		STRING_CHECK(p->remote_mta);
		STRING_CHECK(p->diagnostic);
		status_check(p->status);
		if (p->code != 0 && (p->code < 200 || p->code > 599))
			__builtin_trap();
		verdict_check(&p->verdict);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char err[256];
	if (rules == NULL) {
		rules = bounce_rules_load("deploy/bounce-rules.conf", err, sizeof err);
		if (rules == NULL)
			rules = bounce_rules_parse("builtin", builtin_rules,
			                           sizeof builtin_rules - 1, err, sizeof err);
		report = malloc(sizeof *report);
		if (rules == NULL || report == NULL)
			__builtin_trap();
	}
	if (bounce_parse(rules, buf, size, report) != BOUNCE_PARSE_OK)
		__builtin_trap();
	report_check(report);

	int code;
	char enh[SMTP_ENHANCED_MAX + 1];
	char text[BOUNCE_TEXT_MAX];
	size_t tl = bounce_reply_split(buf, size, &code, enh, text, sizeof text);
	if (tl >= sizeof text || strlen(text) != tl || (code != 0 && (code < 200 || code > 599)))
		__builtin_trap();
	status_check(enh);
	size_t off = bounce_reply_find(buf, size, &code, enh);
	if (off > size || (off == size && (code != 0 || enh[0] != '\0')))
		__builtin_trap();
	status_check(enh);
	struct bounce_verdict v;
	bounce_classify(rules, code, enh, buf, size, &v);
	verdict_check(&v);

	struct bounce_rules *parsed = bounce_rules_parse("fuzz", buf, size, err, sizeof err);
	if (parsed != NULL) {
		bounce_classify(parsed, code, enh, text, tl, &v);
		verdict_check(&v);
	} else if (strncmp(err, "fuzz", 4) != 0) {
		__builtin_trap();
	}
	bounce_rules_free(parsed);
	return 0;
}
