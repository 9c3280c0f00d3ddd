/*
 * fuzz_smtp_reply.c: libFuzzer target for relay/smtp_reply.c. Parses the input as a stream of
 * replies (as the SMTP client reads them) and traps when an output breaks its contract:
 * used within the input and ending at a line end, code 200..599, at most SMTP_REPLY_LINES_MAX
 * lines, text and name NUL-terminated within their bounds, enhanced code well formed and of
 * the code's class. It also checks that feeding the same lines one by one gives the same
 * result as parsing the buffer, and that smtp_enhanced_parse accepts only what it promises.
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reply_check(const struct smtp_reply *r)
{
	if (r->code < 200 || r->code > 599 || r->lines < 1 || r->lines > SMTP_REPLY_LINES_MAX)
		__builtin_trap();
	if (r->text_len > SMTP_REPLY_TEXT_MAX || strlen(r->text) > r->text_len ||
	    r->text[r->text_len] != '\0')
		__builtin_trap();
	if (strnlen(r->name, sizeof r->name) > SMTP_REPLY_NAME_MAX || strchr(r->name, ' '))
		__builtin_trap();
	size_t el = strnlen(r->enhanced, sizeof r->enhanced);
	if (el > SMTP_ENHANCED_MAX)
		__builtin_trap();
	if (el > 0) {
		char again[SMTP_ENHANCED_MAX + 1];
		if (r->enhanced[0] != '0' + r->code / 100 ||
		    smtp_enhanced_parse(r->enhanced, el, again) != el || strcmp(again, r->enhanced))
			__builtin_trap();
	}
	if (r->size_max != 0 && !(r->ext & SMTP_EXT_SIZE))
		__builtin_trap();
	if (r->code != 250 && r->ext != 0)
		__builtin_trap();
}

/* Feeds buf[0..len) line by line, as the client does; must agree with smtp_reply_parse. */
static void feed_compare(const char *buf, size_t len, enum smtp_reply_status want,
                         const struct smtp_reply *want_r)
{
	struct smtp_reply r;
	smtp_reply_init(&r);
	size_t pos = 0;
	enum smtp_reply_status st = SMTP_REPLY_MORE;
	while (pos < len) {
		const char *lf = memchr(buf + pos, '\n', len - pos);
		if (lf == NULL)
			break;
		size_t n = (size_t)(lf - (buf + pos)) + 1;
		if (n > SMTP_REPLY_LINE_MAX + 2)
			return; /* parse saw it as too long before the LF; the client does too */
		st = smtp_reply_feed(&r, buf + pos, n);
		pos += n;
		if (st != SMTP_REPLY_MORE)
			break;
	}
	if (st != want)
		__builtin_trap();
	if (st == SMTP_REPLY_DONE &&
	    (r.code != want_r->code || r.lines != want_r->lines || r.ext != want_r->ext ||
	     r.size_max != want_r->size_max || r.text_len != want_r->text_len ||
	     memcmp(r.text, want_r->text, r.text_len) != 0 || strcmp(r.enhanced, want_r->enhanced)))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t pos = 0;
	for (int replies = 0; replies < 1000 && pos <= size; replies++) {
		struct smtp_reply r;
		size_t used = 0;
		enum smtp_reply_status st = smtp_reply_parse(buf + pos, size - pos, &r, &used);
		if (used > size - pos)
			__builtin_trap();
		if (st == SMTP_REPLY_MORE) {
			if (used != 0)
				__builtin_trap();
			break;
		}
		if (st == SMTP_REPLY_DONE) {
			if (used == 0 || buf[pos + used - 1] != '\n')
				__builtin_trap();
			reply_check(&r);
		}
		if (st != SMTP_REPLY_LINE_TOO_LONG || used < size - pos)
			feed_compare(buf + pos, used, st, &r);
		if (st != SMTP_REPLY_DONE)
			break;
		pos += used;
	}
	char out[SMTP_ENHANCED_MAX + 1];
	size_t el = smtp_enhanced_parse(buf, size, out);
	if (el != 0 && (el < 5 || el > SMTP_ENHANCED_MAX || strlen(out) != el ||
	                memcmp(out, buf, el) != 0 || (el < size && buf[el] != ' ')))
		__builtin_trap();
	if (el == 0 && out[0] != '\0')
		__builtin_trap();
	return 0;
}
