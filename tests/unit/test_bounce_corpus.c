/*
 * test_bounce_corpus.c: runs relay/bounce_parse.c with the shipped rules
 * (deploy/bounce-rules.conf) over every message of tests/fixtures/bounces/ and compares what it
 * finds with tests/fixtures/bounces/expected.tsv (one row per recipient: file, recipient,
 * status, code, reason, class, feedback type, kind, X-Postino-ID of the returned message).
 * Prints the accuracy per expected reason and overall; the corpus is ours, so any mismatch
 * fails the test, and so does a message without expectations or an expectation without a
 * message. Run from the repository root (make unit does).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/bounce_parse.h"
#include "tests/unit/lib_check.h"

#define CORPUS_DIR    "tests/fixtures/bounces"
#define EXPECTED_PATH CORPUS_DIR "/expected.tsv"
#define RULES_PATH    "deploy/bounce-rules.conf"
#define ROWS_MAX      512
#define COLUMNS       9
#define LINE_MAX_LEN  1024
#define MESSAGE_MAX   (1u << 20)

enum {
	COL_FILE,
	COL_RCPT,
	COL_STATUS,
	COL_CODE,
	COL_REASON,
	COL_CLASS,
	COL_FEEDBACK,
	COL_KIND,
	COL_POSTINO
};

struct row {
	const char *col[COLUMNS];
	char line[LINE_MAX_LEN];
};

struct tally {
	const char *reason;
	unsigned ok, total;
};

/* Reads expected.tsv into rows; returns the count. Comment and blank lines are skipped. */
static size_t rows_read(struct row *rows)
{
	FILE *f = fopen(EXPECTED_PATH, "r");
	if (f == NULL)
		fail_msg("cannot open %s (run from the repository root)", EXPECTED_PATH);
	size_t n = 0;
	char line[LINE_MAX_LEN];
	unsigned lineno = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (n == ROWS_MAX)
			fail_msg("%s: more than %d rows", EXPECTED_PATH, ROWS_MAX);
		struct row *r = &rows[n];
		memcpy(r->line, line, strlen(line) + 1);
		size_t c = 0;
		char *save = NULL;
		for (char *t = strtok_r(r->line, "\t", &save); t != NULL && c < COLUMNS;
		     t = strtok_r(NULL, "\t", &save))
			r->col[c++] = strcmp(t, "-") == 0 ? "" : t;
		if (c != COLUMNS)
			fail_msg("%s:%u: %zu columns, want %d", EXPECTED_PATH, lineno, c, COLUMNS);
		n++;
	}
	fclose(f);
	return n;
}

static char *file_read(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	char *buf = malloc(MESSAGE_MAX);
	assert_non_null(buf);
	*len = fread(buf, 1, MESSAGE_MAX, f);
	fclose(f);
	return buf;
}

static struct tally *tally_of(struct tally *t, size_t *count, const char *reason)
{
	for (size_t i = 0; i < *count; i++)
		if (strcmp(t[i].reason, reason) == 0)
			return &t[i];
	t[*count] = (struct tally){reason, 0, 0};
	return &t[(*count)++];
}

/* Compares one recipient of the report with one row; returns true when every column agrees. */
static bool row_check(const struct row *w, const struct bounce_report *rep, size_t i)
{
	const char *name = w->col[COL_FILE];
	char code[16], want_rcpt[300];
	bool ok = true;
	snprintf(want_rcpt, sizeof want_rcpt, "%s #%zu", name, i);
	if (strcmp(w->col[COL_REASON], "notbounce") == 0) {
		if (rep->kind != BOUNCE_KIND_NOTBOUNCE || rep->recipient_count != 0) {
			check_fail("%s: got kind %s with %zu recipients, want notbounce\n", name,
			           bounce_kind_name(rep->kind), rep->recipient_count);
			ok = false;
		}
		if (strcmp(rep->original_postino_id, w->col[COL_POSTINO]) != 0) {
			check_fail("%s: postino_id got \"%s\", want \"%s\"\n", name,
			           rep->original_postino_id, w->col[COL_POSTINO]);
			ok = false;
		}
		return ok;
	}
	if (i >= rep->recipient_count) {
		check_fail("%s: got %zu recipients, want a recipient %s\n", name,
		           rep->recipient_count, w->col[COL_RCPT]);
		return false;
	}
	const struct bounce_recipient *p = &rep->recipients[i];
	snprintf(code, sizeof code, "%d", p->code);
	const char *got[COLUMNS] = {
	    name,
	    p->address,
	    p->status,
	    code,
	    bounce_reason_name(p->verdict.reason),
	    bounce_class_name(p->verdict.class),
	    rep->feedback_type,
	    bounce_kind_name(rep->kind),
	    rep->original_postino_id,
	};
	static const char *const names[COLUMNS] = {"file",          "recipient", "status",
	                                           "code",          "reason",    "class",
	                                           "feedback_type", "kind",      "postino_id"};
	for (int c = 1; c < COLUMNS; c++) {
		if (strcmp(got[c], w->col[c]) != 0) {
			check_fail(
			    "%s: %s got \"%s\", want \"%s\" (diagnostic \"%s\", rule %s:%u)\n",
			    want_rcpt, names[c], got[c], w->col[c],
			    check_show(p->diagnostic, strlen(p->diagnostic)), p->verdict.rule_file,
			    p->verdict.rule_line);
			ok = false;
		}
	}
	return ok;
}

static void test_corpus(void **state)
{
	(void)state;
	char err[256];
	struct bounce_rules *rules = bounce_rules_load(RULES_PATH, err, sizeof err);
	if (rules == NULL)
		fail_msg("%s", err);
	struct row *rows = calloc(ROWS_MAX, sizeof *rows);
	struct bounce_report *rep = malloc(sizeof *rep);
	assert_non_null(rows);
	assert_non_null(rep);
	size_t n = rows_read(rows);
	struct tally tallies[BOUNCE_REASON_COUNT + 1];
	size_t tally_count = 0;
	unsigned ok_rows = 0, files = 0;

	for (size_t i = 0; i < n;) {
		const char *file = rows[i].col[COL_FILE];
		size_t j = i;
		while (j < n && strcmp(rows[j].col[COL_FILE], file) == 0)
			j++;
		size_t len;
		char *msg = file_read(file, &len);
		files++;
		if (msg == NULL) {
			check_fail("%s: listed in expected.tsv but cannot be read\n", file);
			i = j;
			continue;
		}
		enum bounce_parse_status st = bounce_parse(rules, msg, len, rep);
		if (st != BOUNCE_PARSE_OK)
			check_fail("%s: parse status %d\n", file, (int)st);
		size_t want_rcpts = strcmp(rows[i].col[COL_REASON], "notbounce") == 0 ? 0 : j - i;
		if (rep->recipient_count != want_rcpts)
			check_fail("%s: got %zu recipients, want %zu\n", file, rep->recipient_count,
			           want_rcpts);
		for (size_t k = i; k < j; k++) {
			struct tally *t = tally_of(tallies, &tally_count, rows[k].col[COL_REASON]);
			t->total++;
			if (row_check(&rows[k], rep, k - i)) {
				t->ok++;
				ok_rows++;
			}
		}
		free(msg);
		i = j;
	}

	/* every message of the folder has rows */
	DIR *d = opendir(CORPUS_DIR);
	assert_non_null(d);
	struct dirent *e;
	unsigned messages = 0;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 4, ".eml") != 0)
			continue;
		messages++;
		bool listed = false;
		for (size_t k = 0; k < n && !listed; k++)
			listed = strcmp(rows[k].col[COL_FILE], e->d_name) == 0;
		if (!listed)
			check_fail("%s: a message without a row in expected.tsv\n", e->d_name);
	}
	closedir(d);

	for (size_t k = 0; k < tally_count; k++)
		print_message("corpus: %-16s %3u/%-3u %5.1f%%\n", tallies[k].reason, tallies[k].ok,
		              tallies[k].total, 100.0 * tallies[k].ok / tallies[k].total);
	print_message("corpus: overall %u/%zu rows (%.1f%%) in %u files (%u .eml in %s)\n", ok_rows,
	              n, n > 0 ? 100.0 * ok_rows / n : 0.0, files, messages, CORPUS_DIR);
	if (messages < 40)
		check_fail("corpus: got %u messages, want at least 40\n", messages);
	free(rows);
	free(rep);
	bounce_rules_free(rules);
	check_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
