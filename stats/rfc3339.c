/*
 * rfc3339.c: RFC 3339 (section 5.6, internet date/time format) parsing and formatting (see
 * rfc3339.h). Day counts use the civil-from-days arithmetic on 400-year eras (146097 days).
 * Pure.
 */
#include "stats/rfc3339.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; y >= 0). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = y / 400; /* y >= -1 here: only year 0's first months are negative */
	if (y < 0)
		era = -1;
	unsigned yoe = (unsigned)(y - era * 400);                       /* 0..399 */
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* 0..365, from March */
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* 0..146096 */
	return era * 146097 + (int64_t)doe - 719468;
}

/* y-m-d of a day count from 1970-01-01 (z >= 0). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = z / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
	static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* Reads exactly n digits at s[*i..len) into *v; advances *i. */
static bool digits(const char *s, size_t len, size_t *i, unsigned n, unsigned *v)
{
	*v = 0;
	if (len - *i < n)
		return false;
	for (unsigned k = 0; k < n; k++) {
		char c = s[*i + k];
		if (c < '0' || c > '9')
			return false;
		*v = *v * 10 + (unsigned)(c - '0');
	}
	*i += n;
	return true;
}

static bool take(const char *s, size_t len, size_t *i, const char *any)
{
	if (*i >= len)
		return false;
	for (; *any != '\0'; any++)
		if (s[*i] == *any) {
			(*i)++;
			return true;
		}
	return false;
}

int stats_rfc3339_parse(const char *s, size_t len, int64_t *unix_s)
{
	size_t i = 0;
	unsigned y, mo, d, h, mi, sec, oh = 0, om = 0, frac;
	int sign = 0;

	if (!digits(s, len, &i, 4, &y) || !take(s, len, &i, "-") || !digits(s, len, &i, 2, &mo) ||
	    !take(s, len, &i, "-") || !digits(s, len, &i, 2, &d) || !take(s, len, &i, "Tt ") ||
	    !digits(s, len, &i, 2, &h) || !take(s, len, &i, ":") || !digits(s, len, &i, 2, &mi) ||
	    !take(s, len, &i, ":") || !digits(s, len, &i, 2, &sec))
		return -1;
	if (take(s, len, &i, ".")) {
		size_t start = i;
		while (i < len && i - start < 9 && digits(s, len, &i, 1, &frac))
			;
		if (i == start || (i < len && s[i] >= '0' && s[i] <= '9'))
			return -1;
	}
	if (take(s, len, &i, "Zz")) {
		sign = 0;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		i++;
		if (!digits(s, len, &i, 2, &oh) || !take(s, len, &i, ":") ||
		    !digits(s, len, &i, 2, &om) || oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	if (i != len || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	t -= sign * (int64_t)(oh * 3600 + om * 60);
	if (t < 0 || t > STATS_TIME_MAX)
		return -1;
	*unix_s = t;
	return 0;
}

const char *stats_rfc3339_format(int64_t ms, char out[STATS_RFC3339_SIZE])
{
	out[0] = '\0';
	if (ms < 0 || ms / 1000 > STATS_TIME_MAX)
		return NULL;
	int64_t s = ms / 1000, y;
	unsigned m, d, frac = (unsigned)(ms % 1000);
	unsigned in_day = (unsigned)(s % 86400);
	civil_from_days(s / 86400, &y, &m, &d);
	int n = snprintf(out, STATS_RFC3339_SIZE, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u", y, m, d,
	                 in_day / 3600, in_day / 60 % 60, in_day % 60);
	if (frac != 0)
		snprintf(out + n, STATS_RFC3339_SIZE - (size_t)n, ".%03uZ", frac);
	else
		snprintf(out + n, STATS_RFC3339_SIZE - (size_t)n, "Z");
	return out;
}
