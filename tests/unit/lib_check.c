/*
 * lib_check.c: the failure-printing checks of the table-driven unit tests (see lib_check.h).
 * Owns the count of failed checks since the last check_done().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/lib_check.h"

#define CHECK_SHOW_MAX 1400 /* octets of one printable form, "..." included */

static int failures;

const char *check_show(const char *s, size_t n)
{
	static char bufs[4][CHECK_SHOW_MAX];
	static int next;
	char *b = bufs[next];
	size_t o = 0;

	next = (next + 1) % 4;
	for (size_t i = 0; i < n; i++) {
		if (o + 8 >= sizeof(bufs[0])) {
			snprintf(b + o, sizeof(bufs[0]) - o, "...");
			return b;
		}
		unsigned char c = (unsigned char)s[i];
		if (c >= 32 && c < 127 && c != '\\') {
			b[o++] = (char)c;
		} else {
			int w = snprintf(b + o, sizeof(bufs[0]) - o, "\\x%02x", c);
			o += (size_t)w;
		}
	}
	b[o] = '\0';
	return b;
}

void check_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprint_error(fmt, ap);
	va_end(ap);
	failures++;
}

void check_str(const char *name, const char *field, const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		check_fail("%s: %s got \"%s\", want \"%s\"\n", name, field,
		           check_show(got, strlen(got)), check_show(want, strlen(want)));
}

void check_bytes(const char *name, const char *field, const char *got, size_t got_len,
                 const char *want, size_t want_len)
{
	if (got_len != want_len || (want_len > 0 && memcmp(got, want, want_len) != 0))
		check_fail("%s: %s got \"%s\" (%zu octets), want \"%s\" (%zu octets)\n", name,
		           field, check_show(got, got_len), got_len, check_show(want, want_len),
		           want_len);
}

void check_u64(const char *name, const char *field, uint64_t got, uint64_t want)
{
	if (got != want)
		check_fail("%s: %s got %llu, want %llu\n", name, field, (unsigned long long)got,
		           (unsigned long long)want);
}

void check_size(const char *name, const char *field, size_t got, size_t want)
{
	if (got != want)
		check_fail("%s: %s got %zu, want %zu\n", name, field, got, want);
}

void check_capture(FILE *f, char *buf, size_t len)
{
	rewind(f);
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

void check_done(void)
{
	int n = failures;
	failures = 0;
	if (n > 0)
		fail_msg("%d check(s) failed", n);
}
