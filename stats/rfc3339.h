/*
 * rfc3339.h: RFC 3339 timestamps for the HTTP API, both ways. Pure; proleptic Gregorian
 * calendar arithmetic (no timegm, no time zone database, no locale).
 *
 * Parsing accepts "YYYY-MM-DDTHH:MM:SS", an optional fraction of 1..9 digits (dropped: the
 * API counts whole seconds), and "Z" or "+HH:MM"/"-HH:MM"; 't', 'z' and a space for 'T' as
 * RFC 3339 section 5.6 allows; a leap second (":60") as the next second. Results outside
 * 1970-01-01T00:00:00Z .. STATS_TIME_MAX are refused.
 */
#ifndef POSTINO_STATS_RFC3339_H
#define POSTINO_STATS_RFC3339_H

#include <stddef.h>
#include <stdint.h>

#define STATS_TIME_MAX     253402300799LL /* 9999-12-31T23:59:59Z, in unix seconds */
#define STATS_RFC3339_SIZE 32             /* "9999-12-31T23:59:59.999Z" and its NUL fit */

/* Parses s[0..len) into unix seconds. Returns 0, or -1 when it is not a valid timestamp in
 * range. */
int stats_rfc3339_parse(const char *s, size_t len, int64_t *unix_s);

/*
 * Writes unix milliseconds ms as "YYYY-MM-DDTHH:MM:SSZ", or "...SS.mmmZ" when ms is not a
 * whole second, into out. Returns out, or NULL (out set to "") when ms is negative or past
 * STATS_TIME_MAX.
 */
const char *stats_rfc3339_format(int64_t ms, char out[STATS_RFC3339_SIZE]);

#endif
