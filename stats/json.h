/*
 * json.h: a small JSON writer (RFC 8259) into a growable buffer, and a bounded validator.
 *
 * The writer always produces valid JSON, whatever bytes it is given: strings escape '"', '\\'
 * and every control byte (as \u00XX), and also '<', '>', '&', U+2028 and U+2029 (so that a
 * response can never be read as HTML or break a script that embeds it); invalid UTF-8 is
 * replaced by U+FFFD, one per maximal invalid subpart (Unicode 15, section 3.9); doubles that
 * are not finite become null. Output is compact (no spaces) and in the order of the calls.
 *
 * Errors are sticky: after a misuse (a key outside an object, a value without a key inside
 * one, a close that does not match, a second top-level value), a nesting deeper than
 * STATS_JSON_DEPTH_MAX, output past the writer's byte limit or an allocation failure, every
 * later call does nothing and stats_json_finish() returns NULL with the first error's text in
 * stats_json_error(). So a caller may write a whole document and check once at the end.
 */
#ifndef POSTINO_STATS_JSON_H
#define POSTINO_STATS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/buf.h"

#define STATS_JSON_DEPTH_MAX  32 /* objects and arrays open at once */
#define STATS_JSON_NUMBER_MAX 32 /* octets of a formatted number, NUL included */

struct stats_json {
	struct buf out;    /* the text so far (owned; stats_json_release frees it) */
	size_t max;        /* octets the text may reach */
	unsigned depth;    /* containers open */
	bool done;         /* the top-level value is complete */
	bool key_pending;  /* inside an object, a key was written and awaits its value */
	const char *error; /* first error, NULL while none */
	/* per open container: true for an object; and whether it has a member already */
	bool is_object[STATS_JSON_DEPTH_MAX];
	bool has_member[STATS_JSON_DEPTH_MAX];
};

/* Prepares an empty writer whose output may grow to max_bytes octets (1..BUF_HARD_MAX). */
void stats_json_init(struct stats_json *j, size_t max_bytes);
/* Frees the text; j may be initialized again. No-op on a released writer. */
void stats_json_release(struct stats_json *j);

void stats_json_object_open(struct stats_json *j);
void stats_json_object_close(struct stats_json *j);
void stats_json_array_open(struct stats_json *j);
void stats_json_array_close(struct stats_json *j);
/* A member name inside an object (escaped like a string); the next call writes its value. */
void stats_json_key(struct stats_json *j, const char *key);

/* s[0..len): any bytes, escaped and made valid UTF-8. */
void stats_json_string(struct stats_json *j, const char *s, size_t len);
/* A NUL-terminated string, or null when s is NULL. */
void stats_json_cstring(struct stats_json *j, const char *s);
void stats_json_int(struct stats_json *j, int64_t v);
void stats_json_uint(struct stats_json *j, uint64_t v);
/* The shortest decimal form that reads back as v; null for NaN and infinities. */
void stats_json_double(struct stats_json *j, double v);
void stats_json_bool(struct stats_json *j, bool v);
void stats_json_null(struct stats_json *j);

/* Members (key then value) in one call, for the common cases. */
void stats_json_member_cstring(struct stats_json *j, const char *key, const char *s);
void stats_json_member_int(struct stats_json *j, const char *key, int64_t v);
void stats_json_member_uint(struct stats_json *j, const char *key, uint64_t v);
void stats_json_member_double(struct stats_json *j, const char *key, double v);
void stats_json_member_bool(struct stats_json *j, const char *key, bool v);

/*
 * The finished document: its text (NUL-terminated, owned by j until stats_json_release) with
 * its length in *len, or NULL when an error occurred or the top-level value is not complete.
 */
const char *stats_json_finish(struct stats_json *j, size_t *len);
/* The first error's text ("nesting too deep", "output too large", ...), or NULL. */
const char *stats_json_error(const struct stats_json *j);

/*
 * Writes the shortest "%.*g" form of a finite v that reads back as the same double into out
 * (never an exponent-less form longer than the "%.17g" one), e.g. "0.1", "2.5", "1e+21".
 * Returns out. v must be finite. Shared by the Prometheus renderer (metrics.c).
 */
const char *stats_json_double_format(double v, char out[STATS_JSON_NUMBER_MAX]);

/*
 * Length (1..4) of the well-formed UTF-8 sequence at the start of s[0..n) (n >= 1), or 0 when
 * there is none; then *bad is how many octets one U+FFFD replaces (the maximal invalid
 * subpart, at least 1). Shared with the Prometheus renderer's label escaping.
 */
size_t stats_json_utf8_sequence(const char *s, size_t n, size_t *bad);

/*
 * Checks that s[0..len) is one valid JSON document (RFC 8259, UTF-8 with no invalid sequence,
 * surrounding whitespace allowed), nesting at most STATS_JSON_DEPTH_MAX. Returns NULL when it
 * is, or a short text saying what is wrong. Pure and bounded (for tests and fuzzing).
 */
const char *stats_json_check(const char *s, size_t len);

#endif
