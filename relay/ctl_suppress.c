/*
 * ctl_suppress.c: postinoctl's suppression commands (see ctl_suppress.h): argument and CSV
 * checks, then one call of queue/queue.h's blocking admin functions. Addresses are checked
 * as SMTP paths (relay/smtp_parse.c, RFC 5321 4.1.2, with RFC 6531 UTF-8); CSV is RFC 4180
 * with one record per line (a quoted field may hold commas and doubled quotes, not line
 * ends). Import reads the whole file, checks every line, and writes only when none is bad.
 * Times are UTC, RFC 3339 "YYYY-MM-DDTHH:MM:SSZ".
 */
#include "relay/ctl_suppress.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/queue.h"
#include "relay/buf.h"
#include "relay/num.h"
#include "relay/smtp_parse.h"

#define CSV_HEADER "address,class,reason,source,created,expires"
#define CSV_FIELDS 6
#define ISO_LEN    20 /* "YYYY-MM-DDTHH:MM:SSZ" */
#define DAY_MS     ((int64_t)86400 * 1000)

enum csv_field { CSV_ADDRESS, CSV_CLASS, CSV_REASON, CSV_SOURCE, CSV_CREATED, CSV_EXPIRES };

void ctl_suppress_usage(FILE *out)
{
	fprintf(out, "  suppression add USER ADDRESS [--reason TEXT] [--expires DAYS]\n"
	             "  suppression del USER ADDRESS\n"
	             "  suppression list USER\n"
	             "  suppression import USER FILE   (CSV: " CSV_HEADER ")\n"
	             "  suppression export USER\n"
	             "                 ADDRESS: local@domain, or *@domain for the whole domain\n");
}

/* ---- checks ---- */

/* NULL when address is "local@domain" as RCPT TO would take it (UTF-8 allowed), or
 * "*@domain" for a domain RCPT TO would take; else the reason. */
static const char *address_check(const char *address)
{
	size_t len = strlen(address);
	if (len == 0 || len > SMTP_PATH_MAX - 2)
		return "bad address (empty or over 254 bytes)";
	char arg[SMTP_PATH_MAX + 8];
	bool wild = len > 2 && address[0] == '*' && address[1] == '@';
	/* A domain alone is checked as the mailbox x@domain. */
	int n = snprintf(arg, sizeof(arg), "TO:<%s%s>", wild ? "x" : "", address + (wild ? 1 : 0));
	if (n < 0 || (size_t)n >= sizeof(arg))
		return "bad address (too long)";
	struct smtp_rcpt_args rcpt;
	if (smtp_rcpt_parse(arg, (size_t)n, true, &rcpt) != SMTP_PARSE_OK ||
	    rcpt.path.domain_lower[0] == '\0')
		return "bad address (want local@domain or *@domain)";
	return NULL;
}

static bool user_check(const char *user, FILE *err)
{
	size_t len = strlen(user);
	bool ok = len > 0 && len <= QUEUE_NAME_MAX;
	for (size_t i = 0; ok && i < len; i++) {
		char c = user[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     strchr("._@+-", c) != NULL;
	}
	if (!ok)
		fprintf(err, "postinoctl: user names are letters, digits or ._@+-\n");
	return ok;
}

/* ---- times ---- */

/* Unix ms as "YYYY-MM-DDTHH:MM:SSZ" (seconds cut), or "" for 0. */
static void iso_format(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	out[0] = '\0';
	if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		out[0] = '\0';
}

/* Parses exactly "YYYY-MM-DDTHH:MM:SSZ" (a real date, 1970 or later) into unix ms. */
static int iso_parse(const char *s, size_t len, int64_t *ms)
{
	static const struct {
		size_t at, len;
		uint64_t min, max;
	} parts[6] = {{0, 4, 1970, 9999}, {5, 2, 1, 12},  {8, 2, 1, 31},
	              {11, 2, 0, 23},     {14, 2, 0, 59}, {17, 2, 0, 60}};
	if (len != ISO_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != 'Z')
		return -1;
	uint64_t v[6];
	for (size_t i = 0; i < 6; i++)
		if (num_parse_u64(s + parts[i].at, parts[i].len, parts[i].max, &v[i]) == -1 ||
		    v[i] < parts[i].min)
			return -1;
	struct tm tm = {.tm_year = (int)v[0] - 1900,
	                .tm_mon = (int)v[1] - 1,
	                .tm_mday = (int)v[2],
	                .tm_hour = (int)v[3],
	                .tm_min = (int)v[4],
	                .tm_sec = (int)v[5]};
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != (int)v[2]) /* timegm normalizes 02-31 to 03-03 */
		return -1;
	*ms = (int64_t)t * 1000;
	return 0;
}

static int64_t wall_now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- CSV ---- */

/* Splits one record (no line end) into CSV_FIELDS fields, unquoted into out (NUL-separated;
 * field i at out->data + at[i]). NULL, or what is wrong. */
static const char *csv_split(const char *line, size_t len, struct buf *out, size_t at[CSV_FIELDS])
{
	buf_reset(out);
	size_t nfields = 0, i = 0;
	for (;;) {
		if (nfields == CSV_FIELDS)
			return "more than 6 fields";
		at[nfields++] = out->len;
		if (i < len && line[i] == '"') {
			for (i++;; i++) {
				if (i >= len)
					return "a quoted field is not closed";
				if (line[i] == '"' && (i + 1 >= len || line[i + 1] != '"'))
					break;
				if (line[i] == '"')
					i++; /* "" is one quote */
				if (buf_append(out, line + i, 1) == -1)
					return "out of memory";
			}
			i++; /* the closing quote */
			if (i < len && line[i] != ',')
				return "text after a closing quote";
		} else {
			size_t end = i;
			while (end < len && line[end] != ',')
				end++;
			if (memchr(line + i, '"', end - i) != NULL)
				return "a quote inside an unquoted field";
			if (buf_append(out, line + i, end - i) == -1)
				return "out of memory";
			i = end;
		}
		if (buf_append(out, "", 1) == -1)
			return "out of memory";
		if (i >= len)
			break;
		i++; /* the comma */
	}
	return nfields == CSV_FIELDS ? NULL : "fewer than 6 fields";
}

/* Writes s as one CSV field: quoted when it holds a comma, a quote or a space at an end. */
static void csv_put(FILE *out, const char *s)
{
	size_t len = strlen(s);
	bool quote =
	    strpbrk(s, ",\"\r\n") != NULL || (len > 0 && (s[0] == ' ' || s[len - 1] == ' '));
	if (!quote) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"')
			fputc('"', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

/* Reads one line of at most CTL_SUPPRESS_LINE_MAX bytes into line (NUL-terminated, LF or
 * CRLF removed). Returns 1 (a line), 0 (end of file), -1 (read error), or 2 when the line is
 * too long or holds a NUL or another control byte (the rest of it is skipped). */
static int line_read(FILE *f, char line[CTL_SUPPRESS_LINE_MAX + 1], size_t *len)
{
	size_t n = 0;
	bool bad = false;
	int c;
	while ((c = getc(f)) != EOF && c != '\n') {
		if (n < CTL_SUPPRESS_LINE_MAX)
			line[n] = (char)c;
		else
			bad = true;
		if ((c < 0x20 && c != '\r' && c != '\t') || c == 0x7f)
			bad = true;
		n++;
	}
	if (ferror(f))
		return -1;
	if (c == EOF && n == 0)
		return 0;
	if (!bad && n > 0 && line[n - 1] == '\r')
		n--;
	if (!bad && memchr(line, '\r', n) != NULL)
		bad = true; /* a bare CR inside the line */
	*len = bad ? 0 : n;
	line[*len] = '\0';
	return bad ? 2 : 1;
}

/* ---- import ---- */

/* An entry read from the file: offsets into the arena, which grows while reading. */
struct pending {
	size_t address, class_name, reason, source;
	int64_t created_ms, expires_ms;
};

struct import {
	struct buf arena;
	struct pending *items;
	size_t count, cap;
	unsigned bad;
};

/* Keeps one checked entry. Returns 0 or -1 (memory). */
static int import_keep(struct import *im, const char *const field[CSV_FIELDS], int64_t created,
                       int64_t expires)
{
	if (im->count == im->cap) {
		size_t ncap = im->cap > 0 ? im->cap * 2 : 256;
		struct pending *n = realloc(im->items, ncap * sizeof(*n));
		if (n == NULL)
			return -1;
		im->items = n;
		im->cap = ncap;
	}
	struct pending *p = &im->items[im->count];
	const char *class_name = field[CSV_CLASS][0] != '\0' ? field[CSV_CLASS] : "manual";
	const char *source = field[CSV_SOURCE][0] != '\0' ? field[CSV_SOURCE] : "import";
	const char *strs[4] = {field[CSV_ADDRESS], class_name, field[CSV_REASON], source};
	size_t *offs[4] = {&p->address, &p->class_name, &p->reason, &p->source};
	for (size_t i = 0; i < 4; i++) {
		*offs[i] = im->arena.len;
		if (buf_append(&im->arena, strs[i], strlen(strs[i]) + 1) == -1)
			return -1;
	}
	p->created_ms = created;
	p->expires_ms = expires;
	im->count++;
	return 0;
}

/* Checks one record's fields. NULL, or what is wrong. */
static const char *record_check(const char *const field[CSV_FIELDS], int64_t *created,
                                int64_t *expires)
{
	const char *why = address_check(field[CSV_ADDRESS]);
	if (why != NULL)
		return why;
	if (field[CSV_CLASS][0] != '\0' && !queue_supp_class_valid(field[CSV_CLASS]))
		return "bad class (hard, soft, complaint, manual or empty)";
	if (!queue_supp_source_valid(field[CSV_SOURCE]))
		return "bad source (up to 64 printable ASCII bytes without spaces, or empty)";
	*created = *expires = 0;
	if (field[CSV_CREATED][0] != '\0' &&
	    iso_parse(field[CSV_CREATED], strlen(field[CSV_CREATED]), created) == -1)
		return "bad created (want YYYY-MM-DDTHH:MM:SSZ or empty)";
	if (field[CSV_EXPIRES][0] != '\0' &&
	    iso_parse(field[CSV_EXPIRES], strlen(field[CSV_EXPIRES]), expires) == -1)
		return "bad expires (want YYYY-MM-DDTHH:MM:SSZ or empty for never)";
	return NULL;
}

static void import_bad(struct import *im, FILE *err, const char *path, size_t lineno,
                       const char *why)
{
	if (im->bad++ < CTL_SUPPRESS_ERRORS_MAX)
		fprintf(err, "%s:%zu: %s\n", path, lineno, why);
}

/* Reads and checks the whole file into im. Returns 0 (im->bad counts the bad lines) or -1
 * (the file cannot be read, or memory; reported). */
static int import_read(struct import *im, FILE *f, const char *path, FILE *err)
{
	char line[CTL_SUPPRESS_LINE_MAX + 1];
	struct buf fields = BUF_INIT;
	size_t len, lineno = 0;
	int rc = 0, got;
	while ((got = line_read(f, line, &len)) != 0) {
		lineno++;
		if (got == -1) {
			fprintf(err, "postinoctl: %s: %s\n", path, strerror(errno));
			rc = -1;
			break;
		}
		if (got == 2) {
			import_bad(im, err, path, lineno,
			           "line too long (over 2048 bytes) or holds a control byte");
			continue;
		}
		const char *text = line;
		if (lineno == 1 && len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
			text += 3; /* a UTF-8 byte order mark */
			len -= 3;
		}
		if (lineno == 1) {
			if (len != strlen(CSV_HEADER) || memcmp(text, CSV_HEADER, len) != 0)
				import_bad(im, err, path, lineno, "want the header " CSV_HEADER);
			continue;
		}
		if (len == 0)
			continue; /* blank lines are allowed */
		size_t at[CSV_FIELDS];
		const char *why = csv_split(text, len, &fields, at);
		int64_t created = 0, expires = 0;
		const char *field[CSV_FIELDS];
		for (size_t i = 0; why == NULL && i < CSV_FIELDS; i++)
			field[i] = fields.data + at[i];
		if (why == NULL)
			why = record_check(field, &created, &expires);
		if (why == NULL && im->count >= CTL_SUPPRESS_IMPORT_MAX)
			why = "too many entries (the most is 1000000 per file)";
		if (why != NULL) {
			import_bad(im, err, path, lineno, why);
			continue;
		}
		if (im->bad == 0 && import_keep(im, field, created, expires) == -1) {
			fprintf(err, "postinoctl: out of memory\n");
			rc = -1;
			break;
		}
	}
	if (rc == 0 && lineno == 0)
		import_bad(im, err, path, 1, "empty file: want the header " CSV_HEADER);
	buf_free(&fields);
	return rc;
}

static int cmd_import(struct queue_admin *a, const char *user, const char *path, FILE *out,
                      FILE *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(err, "postinoctl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	struct import im = {BUF_INIT, NULL, 0, 0, 0};
	int rc = 1;
	struct queue_suppression *entries = NULL;
	if (import_read(&im, f, path, err) == -1)
		goto out;
	if (im.bad > 0) {
		if (im.bad > CTL_SUPPRESS_ERRORS_MAX)
			fprintf(err, "%s: %u more bad lines\n", path,
			        im.bad - CTL_SUPPRESS_ERRORS_MAX);
		fprintf(err, "postinoctl: %s: %u bad lines, nothing imported\n", path, im.bad);
		goto out;
	}
	entries = calloc(im.count > 0 ? im.count : 1, sizeof(*entries));
	if (entries == NULL) {
		fprintf(err, "postinoctl: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < im.count; i++) {
		const struct pending *p = &im.items[i];
		const char *base = im.arena.data;
		entries[i] = (struct queue_suppression){base + p->address, base + p->class_name,
		                                        base + p->reason,  base + p->source,
		                                        p->created_ms,     p->expires_ms};
	}
	char why[512];
	if (queue_admin_suppress_put(a, user, entries, im.count, why, sizeof(why)) == -1) {
		fprintf(err, "postinoctl: import into %s: %s\n", user, why);
		goto out;
	}
	fprintf(out, "%s: %zu entries imported for %s\n", path, im.count, user);
	rc = 0;
out:
	fclose(f);
	free(entries);
	free(im.items);
	buf_free(&im.arena);
	return rc;
}

/* ---- the other commands ---- */

/* add USER ADDRESS [--reason TEXT] [--expires DAYS] */
static int cmd_add(struct queue_admin *a, int argc, char **argv, FILE *out, FILE *err)
{
	const char *reason = NULL, *days = NULL;
	for (int i = 2; i < argc; i += 2) {
		const char **slot = strcmp(argv[i], "--reason") == 0    ? &reason
		                    : strcmp(argv[i], "--expires") == 0 ? &days
		                                                        : NULL;
		if (slot == NULL || *slot != NULL || i + 1 >= argc) {
			fprintf(err, "postinoctl: unknown, repeated or empty option %s\n", argv[i]);
			return 2;
		}
		*slot = argv[i + 1];
	}
	const char *why = address_check(argv[1]);
	if (why != NULL) {
		fprintf(err, "postinoctl: %s: %s\n", argv[1], why);
		return 2;
	}
	int64_t expires = 0;
	if (days != NULL) {
		uint64_t n;
		if (num_parse_u64(days, strlen(days), CTL_SUPPRESS_DAYS_MAX, &n) == -1 || n == 0) {
			fprintf(err, "postinoctl: --expires takes 1..%d days\n",
			        CTL_SUPPRESS_DAYS_MAX);
			return 2;
		}
		expires = wall_now_ms() + (int64_t)n * DAY_MS;
	}
	struct queue_suppression s = {argv[1], "manual", reason, "admin", 0, expires};
	char msg[512];
	if (queue_admin_suppress_put(a, argv[0], &s, 1, msg, sizeof(msg)) == -1) {
		fprintf(err, "postinoctl: %s: %s\n", argv[0], msg);
		return 1;
	}
	fprintf(out, "%s suppressed for %s\n", argv[1], argv[0]);
	return 0;
}

/* Reads user's list into l, reporting a failure. Returns 0 or 1. */
static int list_read(struct queue_admin *a, const char *user, struct queue_supp_list *l, FILE *err)
{
	char msg[512];
	if (queue_admin_suppress_list(a, user, l, msg, sizeof(msg)) == -1) {
		fprintf(err, "postinoctl: %s: %s\n", user, msg);
		return 1;
	}
	return 0;
}

/* Writes s with '"' and '\' escaped by '\'. */
static void quoted_put(FILE *out, const char *s)
{
	fputc('"', out);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

/* list USER: "<address> class=<c> since=<time> expires=<time|never> source=<s> reason="..."",
 * then "entries=<n>". */
static int cmd_list(struct queue_admin *a, const char *user, bool csv, FILE *out, FILE *err)
{
	struct queue_supp_list l;
	if (list_read(a, user, &l, err) != 0)
		return 1;
	if (csv)
		fprintf(out, "%s\n", CSV_HEADER);
	for (size_t i = 0; i < l.count; i++) {
		const struct queue_suppression *e = &l.entries[i];
		char since[32], until[32];
		iso_format(e->created_ms, since, sizeof(since));
		iso_format(e->expires_ms, until, sizeof(until));
		if (csv) {
			const char *field[CSV_FIELDS] = {e->address, e->class_name, e->reason,
			                                 e->source,  since,         until};
			for (size_t k = 0; k < CSV_FIELDS; k++) {
				if (k > 0)
					fputc(',', out);
				csv_put(out, field[k]);
			}
			fputc('\n', out);
			continue;
		}
		fprintf(out, "%s class=%s since=%s expires=%s source=%s reason=", e->address,
		        e->class_name, since, until[0] != '\0' ? until : "never", e->source);
		quoted_put(out, e->reason);
		fputc('\n', out);
	}
	if (!csv)
		fprintf(out, "entries=%zu\n", l.count);
	queue_supp_list_free(&l);
	if (fflush(out) == EOF || ferror(out)) {
		fprintf(err, "postinoctl: writing the list failed\n");
		return 1;
	}
	return 0;
}

static int cmd_del(struct queue_admin *a, const char *user, const char *address, FILE *out,
                   FILE *err)
{
	char msg[512];
	bool found;
	if (queue_admin_suppress_del(a, user, address, &found, msg, sizeof(msg)) == -1) {
		fprintf(err, "postinoctl: %s: %s\n", address, msg);
		return 1;
	}
	if (!found) {
		fprintf(err, "postinoctl: %s is not on %s's list\n", address, user);
		return 1;
	}
	fprintf(out, "%s removed from %s's list\n", address, user);
	return 0;
}

int ctl_suppress_run(struct queue_admin *a, int argc, char **argv, FILE *out, FILE *err)
{
	const char *sub = argc > 0 ? argv[0] : "";
	argc--;
	argv++;
	int rc = -1;
	if (argc >= 1 && !user_check(argv[0], err))
		return 2;
	if (strcmp(sub, "add") == 0 && argc >= 2 && argc % 2 == 0)
		rc = cmd_add(a, argc, argv, out, err);
	else if (strcmp(sub, "del") == 0 && argc == 2)
		rc = cmd_del(a, argv[0], argv[1], out, err);
	else if (strcmp(sub, "list") == 0 && argc == 1)
		rc = cmd_list(a, argv[0], false, out, err);
	else if (strcmp(sub, "export") == 0 && argc == 1)
		rc = cmd_list(a, argv[0], true, out, err);
	else if (strcmp(sub, "import") == 0 && argc == 2)
		rc = cmd_import(a, argv[0], argv[1], out, err);
	if (rc == -1) {
		fprintf(err, "usage:\n");
		ctl_suppress_usage(err);
		return 2;
	}
	return rc;
}

int ctl_suppress_main(struct queue_admin *a, int argc, char **argv)
{
	return ctl_suppress_run(a, argc, argv, stdout, stderr);
}
