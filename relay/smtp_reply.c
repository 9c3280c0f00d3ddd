/*
 * smtp_reply.c: SMTP reply parser (see smtp_reply.h): reply lines and codes (RFC 5321 4.2),
 * enhanced status codes (RFC 3463, RFC 2034), EHLO keywords (RFC 5321 4.1.1.1, 2920, 3207,
 * 1870, 6152, 6531, 3030). Pure: no I/O, no allocation, no logging.
 */
#include "relay/smtp_reply.h"

#include <string.h>
#include <strings.h>

void smtp_reply_init(struct smtp_reply *r)
{
	r->code = 0;
	r->lines = 0;
	r->bare_lf = false;
	r->enhanced[0] = '\0';
	r->name[0] = '\0';
	r->text[0] = '\0';
	r->text_len = 0;
	r->text_truncated = false;
	r->ext = 0;
	r->size_max = 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1 to 3 digits at s[*i..len); advances *i. */
static bool digits_1_3(const char *s, size_t len, size_t *i)
{
	size_t start = *i;
	while (*i < len && *i - start < 3 && is_digit(s[*i]))
		(*i)++;
	return *i > start && !(*i < len && is_digit(s[*i]));
}

size_t smtp_enhanced_parse(const char *s, size_t len, char out[SMTP_ENHANCED_MAX + 1])
{
	out[0] = '\0';
	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	size_t i = 2;
	if (!digits_1_3(s, len, &i) || i >= len || s[i] != '.')
		return 0;
	i++;
	if (!digits_1_3(s, len, &i) || (i < len && s[i] != ' '))
		return 0;
	memcpy(out, s, i);
	out[i] = '\0';
	return i;
}

/* Appends text to r->text, cutting at SMTP_REPLY_TEXT_MAX. */
static void text_add(struct smtp_reply *r, const char *s, size_t n)
{
	size_t room = SMTP_REPLY_TEXT_MAX - r->text_len;
	if (n > room) {
		n = room;
		r->text_truncated = true;
	}
	memcpy(r->text + r->text_len, s, n);
	r->text_len += n;
	r->text[r->text_len] = '\0';
}

/* True when word[0..n) is kw, ignoring ASCII case. */
static bool keyword_is(const char *word, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(word, kw, n) == 0;
}

/* SIZE's parameter: 1 to 20 digits without overflow, else 0 (no usable limit). */
static uint64_t size_param(const char *s, size_t n)
{
	uint64_t v = 0;
	if (n == 0 || n > 20)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return 0;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return v;
}

/* One line of an EHLO reply after the first: "keyword [params]". Unknown keywords are
 * ignored (RFC 5321 4.1.1.1: the client must ignore what it does not know). */
static void ehlo_line(struct smtp_reply *r, const char *t, size_t n)
{
	size_t kl = 0;
	while (kl < n && t[kl] != ' ')
		kl++;
	static const struct {
		const char *name;
		unsigned bit;
	} keywords[] = {
	    {"PIPELINING", SMTP_EXT_PIPELINING},
	    {"STARTTLS", SMTP_EXT_STARTTLS},
	    {"SIZE", SMTP_EXT_SIZE},
	    {"8BITMIME", SMTP_EXT_8BITMIME},
	    {"SMTPUTF8", SMTP_EXT_SMTPUTF8},
	    {"ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES},
	    {"CHUNKING", SMTP_EXT_CHUNKING},
	};
	for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++) {
		if (!keyword_is(t, kl, keywords[i].name))
			continue;
		r->ext |= keywords[i].bit;
		if (keywords[i].bit == SMTP_EXT_SIZE) {
			size_t p = kl;
			while (p < n && t[p] == ' ')
				p++;
			size_t e = p;
			while (e < n && t[e] != ' ')
				e++;
			r->size_max = size_param(t + p, e - p);
		}
		return;
	}
}

enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len)
{
	if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
		return SMTP_REPLY_NO_LINE_END;
	size_t n = len - 1;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	else
		r->bare_lf = true;
	if (n > SMTP_REPLY_LINE_MAX)
		return SMTP_REPLY_LINE_TOO_LONG;
	if (memchr(line, '\r', n) != NULL || memchr(line, '\0', n) != NULL)
		return SMTP_REPLY_BAD_OCTET;
	if (r->lines >= SMTP_REPLY_LINES_MAX)
		return SMTP_REPLY_TOO_MANY_LINES;
	if (n < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
		return SMTP_REPLY_BAD_CODE;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (n > 3 && line[3] != '-' && line[3] != ' ')
		return SMTP_REPLY_BAD_SEPARATOR;
	if (r->lines > 0 && code != r->code)
		return SMTP_REPLY_MIXED_CODES;
	bool last = n == 3 || line[3] == ' ';
	const char *t = n > 3 ? line + 4 : line + n;
	size_t tl = n > 3 ? n - 4 : 0;
	if (r->lines == 0) {
		r->code = code;
		char enh[SMTP_ENHANCED_MAX + 1];
		size_t el = smtp_enhanced_parse(t, tl, enh);
		if (el > 0 && enh[0] == line[0])
			memcpy(r->enhanced, enh, el + 1);
	}
	/* drop the enhanced code (and the spaces after it) where it repeats the first line's */
	size_t el = strlen(r->enhanced);
	if (el > 0 && tl >= el && memcmp(t, r->enhanced, el) == 0 && (tl == el || t[el] == ' ')) {
		t += el;
		tl -= el;
		while (tl > 0 && *t == ' ') {
			t++;
			tl--;
		}
	}
	if (r->lines == 0) {
		size_t w = 0;
		while (w < tl && t[w] != ' ')
			w++;
		if (w > SMTP_REPLY_NAME_MAX)
			w = SMTP_REPLY_NAME_MAX;
		memcpy(r->name, t, w);
		r->name[w] = '\0';
	} else if (code == 250) {
		ehlo_line(r, t, tl);
	}
	if (r->text_len > 0 && tl > 0)
		text_add(r, " ", 1);
	text_add(r, t, tl);
	r->lines++;
	return last ? SMTP_REPLY_DONE : SMTP_REPLY_MORE;
}

enum smtp_reply_status smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                                        size_t *used)
{
	smtp_reply_init(r);
	*used = 0;
	size_t pos = 0;
	for (;;) {
		size_t left = len - pos;
		size_t scan = left < SMTP_REPLY_LINE_MAX + 2 ? left : SMTP_REPLY_LINE_MAX + 2;
		const char *lf = memchr(buf + pos, '\n', scan);
		if (lf == NULL) {
			if (left >= SMTP_REPLY_LINE_MAX + 2) {
				*used = len;
				return SMTP_REPLY_LINE_TOO_LONG;
			}
			return SMTP_REPLY_MORE;
		}
		size_t line_len = (size_t)(lf - (buf + pos)) + 1;
		enum smtp_reply_status st = smtp_reply_feed(r, buf + pos, line_len);
		pos += line_len;
		if (st == SMTP_REPLY_MORE)
			continue;
		*used = pos;
		return st;
	}
}

const char *smtp_reply_status_name(enum smtp_reply_status s)
{
	switch (s) {
	case SMTP_REPLY_DONE:
		return "done";
	case SMTP_REPLY_MORE:
		return "more";
	case SMTP_REPLY_BAD_CODE:
		return "bad_code";
	case SMTP_REPLY_BAD_SEPARATOR:
		return "bad_separator";
	case SMTP_REPLY_MIXED_CODES:
		return "mixed_codes";
	case SMTP_REPLY_TOO_MANY_LINES:
		return "too_many_lines";
	case SMTP_REPLY_LINE_TOO_LONG:
		return "line_too_long";
	case SMTP_REPLY_BAD_OCTET:
		return "bad_octet";
	case SMTP_REPLY_NO_LINE_END:
		return "no_line_end";
	}
	return "unknown";
}
