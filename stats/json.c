/*
 * json.c: JSON writer and validator (see json.h). RFC 8259 (JSON), RFC 3629 and Unicode 15
 * section 3.9 (well-formed UTF-8; U+FFFD per maximal invalid subpart). Owns nothing but the
 * writer's text buffer. Pure: no I/O, no logging.
 */
#include "stats/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/codec.h"

/* ---- UTF-8 ---- */

/*
 * Length of the well-formed UTF-8 sequence at s[0..n) (1..4), or 0 when there is none; then
 * *bad is the length of the maximal subpart to replace by one U+FFFD (at least 1).
 * Unicode 15 table 3-7: the second byte's range depends on the first.
 */
static size_t utf8_sequence(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xbf;

	*bad = 1;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlong form */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogate */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90; /* no overlong form */
		else if (c == 0xf4)
			hi = 0x8f; /* nothing above U+10FFFF */
	} else {
		return 0; /* 0x80..0xc1, 0xf5..0xff never start a sequence */
	}
	for (size_t i = 1; i < need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need;
}

size_t stats_json_utf8_sequence(const char *s, size_t n, size_t *bad)
{
	return utf8_sequence((const unsigned char *)s, n, bad);
}

/* ---- writer ---- */

static void fail(struct stats_json *j, const char *why)
{
	if (j->error == NULL)
		j->error = why;
}

static void put(struct stats_json *j, const char *s, size_t n)
{
	if (j->error != NULL)
		return;
	if (n > j->max || j->out.len > j->max - n) {
		fail(j, "output too large");
		return;
	}
	if (buf_append(&j->out, s, n) == -1)
		fail(j, "out of memory");
}

static void put_str(struct stats_json *j, const char *s)
{
	put(j, s, strlen(s));
}

void stats_json_init(struct stats_json *j, size_t max_bytes)
{
	memset(j, 0, sizeof *j);
	j->max = max_bytes < BUF_HARD_MAX ? max_bytes : BUF_HARD_MAX;
}

void stats_json_release(struct stats_json *j)
{
	buf_free(&j->out);
}

/* Writes what must come before a value: a comma between array items; checks the grammar. */
static bool before_value(struct stats_json *j)
{
	if (j->error != NULL)
		return false;
	if (j->done) {
		fail(j, "second top-level value");
		return false;
	}
	if (j->depth == 0)
		return true;
	unsigned top = j->depth - 1;
	if (j->is_object[top]) {
		if (!j->key_pending) {
			fail(j, "value without a key in an object");
			return false;
		}
		j->key_pending = false;
		return true;
	}
	if (j->has_member[top])
		put(j, ",", 1);
	j->has_member[top] = true;
	return j->error == NULL;
}

/* Marks the top-level value complete when no container is open. */
static void after_value(struct stats_json *j)
{
	if (j->depth == 0 && j->error == NULL)
		j->done = true;
}

static void open_container(struct stats_json *j, bool object)
{
	if (!before_value(j))
		return;
	if (j->depth >= STATS_JSON_DEPTH_MAX) {
		fail(j, "nesting too deep");
		return;
	}
	j->is_object[j->depth] = object;
	j->has_member[j->depth] = false;
	j->depth++;
	put(j, object ? "{" : "[", 1);
}

static void close_container(struct stats_json *j, bool object)
{
	if (j->error != NULL)
		return;
	if (j->depth == 0 || j->is_object[j->depth - 1] != object || j->key_pending) {
		fail(j, "close does not match an open container");
		return;
	}
	j->depth--;
	put(j, object ? "}" : "]", 1);
	after_value(j);
}

void stats_json_object_open(struct stats_json *j)
{
	open_container(j, true);
}

void stats_json_object_close(struct stats_json *j)
{
	close_container(j, true);
}

void stats_json_array_open(struct stats_json *j)
{
	open_container(j, false);
}

void stats_json_array_close(struct stats_json *j)
{
	close_container(j, false);
}

/* Writes s[0..n) as a quoted, escaped string. */
static void put_string(struct stats_json *j, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t start = 0, i = 0;

	put(j, "\"", 1);
	while (i < n && j->error == NULL) {
		unsigned char c = u[i];
		char esc[8];
		size_t esc_len = 0, used = 1, bad;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			esc_len = 2;
		} else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&') {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			esc_len = 6;
		} else if (c >= 0x80) {
			used = utf8_sequence(u + i, n - i, &bad);
			if (used == 0) {
				used = bad;
				memcpy(esc, "\\ufffd", 6);
				esc_len = 6;
			} else if (used == 3 && c == 0xe2 && u[i + 1] == 0x80 &&
			           (u[i + 2] == 0xa8 || u[i + 2] == 0xa9)) {
				/* U+2028, U+2029: valid JSON, but line ends in older JavaScript */
				memcpy(esc, u[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
				esc_len = 6;
			}
		}
		if (esc_len > 0) {
			put(j, s + start, i - start);
			put(j, esc, esc_len);
			start = i + used;
		}
		i += used;
	}
	put(j, s + start, n - start);
	put(j, "\"", 1);
}

void stats_json_key(struct stats_json *j, const char *key)
{
	if (j->error != NULL)
		return;
	if (j->depth == 0 || !j->is_object[j->depth - 1] || j->key_pending) {
		fail(j, "key outside an object");
		return;
	}
	if (j->has_member[j->depth - 1])
		put(j, ",", 1);
	j->has_member[j->depth - 1] = true;
	put_string(j, key, strlen(key));
	put(j, ":", 1);
	j->key_pending = true;
}

void stats_json_string(struct stats_json *j, const char *s, size_t len)
{
	if (!before_value(j))
		return;
	put_string(j, s, len);
	after_value(j);
}

void stats_json_cstring(struct stats_json *j, const char *s)
{
	if (s == NULL)
		stats_json_null(j);
	else
		stats_json_string(j, s, strlen(s));
}

void stats_json_int(struct stats_json *j, int64_t v)
{
	char t[STATS_JSON_NUMBER_MAX];
	if (!before_value(j))
		return;
	snprintf(t, sizeof t, "%" PRId64, v);
	put_str(j, t);
	after_value(j);
}

void stats_json_uint(struct stats_json *j, uint64_t v)
{
	char t[STATS_JSON_NUMBER_MAX];
	if (!before_value(j))
		return;
	snprintf(t, sizeof t, "%" PRIu64, v);
	put_str(j, t);
	after_value(j);
}

const char *stats_json_double_format(double v, char out[STATS_JSON_NUMBER_MAX])
{
	/* DBL_DIG (15) digits always read back for decimal inputs, but not every double does:
	 * try from 1 digit up, 17 always reads back. */
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, STATS_JSON_NUMBER_MAX, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			break;
	}
	return out;
}

void stats_json_double(struct stats_json *j, double v)
{
	char t[STATS_JSON_NUMBER_MAX];
	if (!isfinite(v)) {
		stats_json_null(j);
		return;
	}
	if (!before_value(j))
		return;
	put_str(j, stats_json_double_format(v, t));
	after_value(j);
}

static void put_literal(struct stats_json *j, const char *lit)
{
	if (!before_value(j))
		return;
	put_str(j, lit);
	after_value(j);
}

void stats_json_bool(struct stats_json *j, bool v)
{
	put_literal(j, v ? "true" : "false");
}

void stats_json_null(struct stats_json *j)
{
	put_literal(j, "null");
}

void stats_json_member_cstring(struct stats_json *j, const char *key, const char *s)
{
	stats_json_key(j, key);
	stats_json_cstring(j, s);
}

void stats_json_member_int(struct stats_json *j, const char *key, int64_t v)
{
	stats_json_key(j, key);
	stats_json_int(j, v);
}

void stats_json_member_uint(struct stats_json *j, const char *key, uint64_t v)
{
	stats_json_key(j, key);
	stats_json_uint(j, v);
}

void stats_json_member_double(struct stats_json *j, const char *key, double v)
{
	stats_json_key(j, key);
	stats_json_double(j, v);
}

void stats_json_member_bool(struct stats_json *j, const char *key, bool v)
{
	stats_json_key(j, key);
	stats_json_bool(j, v);
}

const char *stats_json_finish(struct stats_json *j, size_t *len)
{
	if (j->error == NULL && !j->done)
		fail(j, "document not complete");
	if (j->error != NULL)
		return NULL;
	*len = j->out.len;
	return j->out.data;
}

const char *stats_json_error(const struct stats_json *j)
{
	return j->error;
}

/* ---- validator ---- */

struct reader {
	const unsigned char *s;
	size_t len, pos;
	const char *error;
};

static void skip_space(struct reader *r)
{
	while (r->pos < r->len && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' ||
	                           r->s[r->pos] == '\n' || r->s[r->pos] == '\r'))
		r->pos++;
}

static bool expect(struct reader *r, const char *why, bool ok)
{
	if (!ok && r->error == NULL)
		r->error = why;
	return ok;
}

static bool at(const struct reader *r, char c)
{
	return r->pos < r->len && r->s[r->pos] == (unsigned char)c;
}

/* Reads the 4 hex digits after "\u" into *cp. */
static bool read_hex4(struct reader *r, unsigned *cp)
{
	*cp = 0;
	if (!expect(r, "short \\u escape", r->len - r->pos >= 4))
		return false;
	for (int k = 0; k < 4; k++) {
		int h = codec_hex_digit((char)r->s[r->pos++]);
		if (!expect(r, "bad \\u escape", h >= 0))
			return false;
		*cp = *cp * 16 + (unsigned)h;
	}
	return true;
}

static bool read_string(struct reader *r)
{
	r->pos++; /* the opening quote */
	for (;;) {
		if (!expect(r, "unterminated string", r->pos < r->len))
			return false;
		unsigned char c = r->s[r->pos];
		size_t bad;
		if (c == '"') {
			r->pos++;
			return true;
		}
		if (!expect(r, "control byte in a string", c >= 0x20))
			return false;
		if (c >= 0x80) {
			size_t n = utf8_sequence(r->s + r->pos, r->len - r->pos, &bad);
			if (!expect(r, "invalid UTF-8", n > 0))
				return false;
			r->pos += n;
			continue;
		}
		r->pos++;
		if (c != '\\')
			continue;
		if (!expect(r, "unterminated escape", r->pos < r->len))
			return false;
		c = r->s[r->pos++];
		if (c != 'u') {
			if (!expect(r, "bad escape", strchr("\"\\/bfnrt", c) != NULL && c != '\0'))
				return false;
			continue;
		}
		unsigned cp, low;
		if (!read_hex4(r, &cp))
			return false;
		if (!expect(r, "lone low surrogate", cp < 0xdc00 || cp > 0xdfff))
			return false;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (!expect(r, "lone high surrogate",
			            r->len - r->pos >= 2 && r->s[r->pos] == '\\' &&
			                r->s[r->pos + 1] == 'u'))
				return false;
			r->pos += 2;
			if (!read_hex4(r, &low) ||
			    !expect(r, "lone high surrogate", low >= 0xdc00 && low <= 0xdfff))
				return false;
		}
	}
}

static bool is_digit(const struct reader *r)
{
	return r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9';
}

static bool read_number(struct reader *r)
{
	if (at(r, '-'))
		r->pos++;
	if (!expect(r, "bad number", is_digit(r)))
		return false;
	if (at(r, '0'))
		r->pos++;
	else
		while (is_digit(r))
			r->pos++;
	if (at(r, '.')) {
		r->pos++;
		if (!expect(r, "bad number", is_digit(r)))
			return false;
		while (is_digit(r))
			r->pos++;
	}
	if (at(r, 'e') || at(r, 'E')) {
		r->pos++;
		if (at(r, '+') || at(r, '-'))
			r->pos++;
		if (!expect(r, "bad number", is_digit(r)))
			return false;
		while (is_digit(r))
			r->pos++;
	}
	return true;
}

static bool read_literal(struct reader *r, const char *lit)
{
	size_t n = strlen(lit);
	if (!expect(r, "bad literal", r->len - r->pos >= n && memcmp(r->s + r->pos, lit, n) == 0))
		return false;
	r->pos += n;
	return true;
}

static bool read_value(struct reader *r, unsigned depth);

/* An object or array after its opening bracket; close is '}' or ']'. */
static bool read_container(struct reader *r, unsigned depth, char close)
{
	if (!expect(r, "nesting too deep", depth < STATS_JSON_DEPTH_MAX))
		return false;
	r->pos++;
	skip_space(r);
	if (at(r, close)) {
		r->pos++;
		return true;
	}
	for (;;) {
		if (close == '}') {
			if (!expect(r, "member name expected", at(r, '"')) || !read_string(r))
				return false;
			skip_space(r);
			if (!expect(r, "':' expected", at(r, ':')))
				return false;
			r->pos++;
		}
		if (!read_value(r, depth + 1))
			return false;
		skip_space(r);
		if (at(r, close)) {
			r->pos++;
			return true;
		}
		if (!expect(r, "',' expected", at(r, ',')))
			return false;
		r->pos++;
		skip_space(r);
	}
}

static bool read_value(struct reader *r, unsigned depth)
{
	skip_space(r);
	if (!expect(r, "value expected", r->pos < r->len))
		return false;
	switch (r->s[r->pos]) {
	case '{':
		return read_container(r, depth, '}');
	case '[':
		return read_container(r, depth, ']');
	case '"':
		return read_string(r);
	case 't':
		return read_literal(r, "true");
	case 'f':
		return read_literal(r, "false");
	case 'n':
		return read_literal(r, "null");
	default:
		if (!expect(r, "value expected", r->s[r->pos] == '-' || is_digit(r)))
			return false;
		return read_number(r);
	}
}

const char *stats_json_check(const char *s, size_t len)
{
	struct reader r = {(const unsigned char *)s, len, 0, NULL};
	if (!read_value(&r, 0))
		return r.error;
	skip_space(&r);
	if (r.pos != r.len)
		return "text after the value";
	return NULL;
}
