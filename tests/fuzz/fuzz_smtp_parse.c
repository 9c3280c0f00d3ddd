/*
 * fuzz_smtp_parse.c: libFuzzer target for relay/smtp_parse.c. Runs every parser over the
 * input and traps when an output breaks its contract (lengths, NUL termination, borrowed
 * pointers inside the line, lowercase domain).
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void path_check(const struct smtp_path *p)
{
	size_t mailbox_len = strnlen(p->mailbox, sizeof(p->mailbox));
	size_t domain_len = strnlen(p->domain_lower, sizeof(p->domain_lower));

	if (mailbox_len > SMTP_PATH_MAX - 2 || domain_len > SMTP_DOMAIN_MAX)
		__builtin_trap();
	if (p->is_null) {
		if (mailbox_len != 0 || p->utf8)
			__builtin_trap();
		return;
	}
	if (p->local_len == 0 || p->local_len > SMTP_LOCAL_MAX || p->local_len > mailbox_len)
		__builtin_trap();
	if (domain_len > 0) {
		/* "local@domain": the domain, lowercased, follows the "@" */
		if (p->mailbox[p->local_len] != '@' || p->local_len + 1 + domain_len != mailbox_len)
			__builtin_trap();
		for (size_t i = 0; i < domain_len; i++) {
			char c = p->mailbox[p->local_len + 1 + i];
			char lower = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
			if (p->domain_lower[i] != lower)
				__builtin_trap();
		}
	} else if (p->local_len != mailbox_len) {
		__builtin_trap();
	}
	bool non_ascii = false;
	for (size_t i = 0; i < mailbox_len; i++) {
		if ((unsigned char)p->mailbox[i] < 0x20 || (unsigned char)p->mailbox[i] == 0x7f)
			__builtin_trap();
		if ((unsigned char)p->mailbox[i] >= 0x80)
			non_ascii = true;
	}
	if (non_ascii != p->utf8)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_command cmd;
	struct smtp_mail_args mail;
	struct smtp_rcpt_args rcpt;

	if (smtp_command_parse(line, size, &cmd) == SMTP_PARSE_OK) {
		if (cmd.arg == NULL)
			__builtin_trap();
		if (cmd.arg_len > 0 && (cmd.arg < line || cmd.arg + cmd.arg_len > line + size))
			__builtin_trap();
		if (cmd.verb == SMTP_VERB_MAIL &&
		    smtp_mail_parse(cmd.arg, cmd.arg_len, &mail) == SMTP_PARSE_OK)
			path_check(&mail.path);
	}
	if (smtp_mail_parse(line, size, &mail) == SMTP_PARSE_OK) {
		path_check(&mail.path);
		if (mail.path.utf8 && !mail.smtputf8)
			__builtin_trap();
	}
	for (int utf8 = 0; utf8 < 2; utf8++) {
		if (smtp_rcpt_parse(line, size, utf8 == 1, &rcpt) == SMTP_PARSE_OK) {
			path_check(&rcpt.path);
			if (rcpt.path.is_null || (rcpt.path.utf8 && utf8 == 0))
				__builtin_trap();
		}
	}
	(void)smtp_helo_check(line, size);
	return 0;
}
