/*
 * bounce.c: bounce reasons and classes, the rules file reader and the reply classifier (see
 * bounce.h for the vocabulary, the rules format and the order of evaluation). Implements the
 * reading of RFC 3463 enhanced status codes and RFC 5321 4.2 reply codes as printed in replies,
 * logs and RFC 3464 Diagnostic-Code fields.
 *
 * Owns the rule set (struct bounce_rules): its rules, their patterns and the names of the
 * files they came from. Text patterns are '*'-separated literal pieces searched left to right
 * with memmem, so a classification costs at most rules x BOUNCE_TEXT_MAX octet comparisons of
 * a linear search: no regular expression, nothing a rule author can make backtrack.
 */
#include "relay/bounce.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_TEXT   1u
#define RULE_CODE   2u
#define RULE_STATUS 4u
#define ANY         (-1) /* a code digit 'x' or a status part '*' */
#define TOKENS_MAX  8    /* tokens of one rule line */
#define CLASS_UNSET (-1)

static const char *const reason_names[BOUNCE_REASON_COUNT] = {
    [BOUNCE_REASON_USERUNKNOWN] = "userunknown",
    [BOUNCE_REASON_HOSTUNKNOWN] = "hostunknown",
    [BOUNCE_REASON_HASMOVED] = "hasmoved",
    [BOUNCE_REASON_MAILBOXFULL] = "mailboxfull",
    [BOUNCE_REASON_SUSPEND] = "suspend",
    [BOUNCE_REASON_FILTERED] = "filtered",
    [BOUNCE_REASON_SYSTEMFULL] = "systemfull",
    [BOUNCE_REASON_SYSTEMERROR] = "systemerror",
    [BOUNCE_REASON_NETWORKERROR] = "networkerror",
    [BOUNCE_REASON_EXPIRED] = "expired",
    [BOUNCE_REASON_BLOCKED] = "blocked",
    [BOUNCE_REASON_BADREPUTATION] = "badreputation",
    [BOUNCE_REASON_SPAMDETECTED] = "spamdetected",
    [BOUNCE_REASON_VIRUSDETECTED] = "virusdetected",
    [BOUNCE_REASON_POLICYVIOLATION] = "policyviolation",
    [BOUNCE_REASON_AUTHFAILURE] = "authfailure",
    [BOUNCE_REASON_REQUIREPTR] = "requireptr",
    [BOUNCE_REASON_NOTCOMPLIANTRFC] = "notcompliantrfc",
    [BOUNCE_REASON_REJECTED] = "rejected",
    [BOUNCE_REASON_NORELAYING] = "norelaying",
    [BOUNCE_REASON_SECURITYERROR] = "securityerror",
    [BOUNCE_REASON_FAILEDSTARTTLS] = "failedstarttls",
    [BOUNCE_REASON_CONTENTERROR] = "contenterror",
    [BOUNCE_REASON_SYNTAXERROR] = "syntaxerror",
    [BOUNCE_REASON_RATELIMITED] = "ratelimited",
    [BOUNCE_REASON_EMAILTOOLARGE] = "emailtoolarge",
    [BOUNCE_REASON_FEEDBACK] = "feedback",
    [BOUNCE_REASON_VACATION] = "vacation",
    [BOUNCE_REASON_DELIVERED] = "delivered",
    [BOUNCE_REASON_ONHOLD] = "onhold",
    [BOUNCE_REASON_UNDEFINED] = "undefined",
};

/* The default class of each reason; bounce.h says why for the ones open to debate. */
static const enum bounce_class reason_classes[BOUNCE_REASON_COUNT] = {
    [BOUNCE_REASON_USERUNKNOWN] = BOUNCE_CLASS_HARD,
    [BOUNCE_REASON_HOSTUNKNOWN] = BOUNCE_CLASS_HARD,
    [BOUNCE_REASON_HASMOVED] = BOUNCE_CLASS_HARD,
    [BOUNCE_REASON_MAILBOXFULL] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_SUSPEND] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_FILTERED] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_SYSTEMFULL] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_SYSTEMERROR] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_NETWORKERROR] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_EXPIRED] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_BLOCKED] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_BADREPUTATION] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_SPAMDETECTED] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_VIRUSDETECTED] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_POLICYVIOLATION] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_AUTHFAILURE] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_REQUIREPTR] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_NOTCOMPLIANTRFC] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_REJECTED] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_NORELAYING] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_SECURITYERROR] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_FAILEDSTARTTLS] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_CONTENTERROR] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_SYNTAXERROR] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_RATELIMITED] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_EMAILTOOLARGE] = BOUNCE_CLASS_BLOCK,
    [BOUNCE_REASON_FEEDBACK] = BOUNCE_CLASS_COMPLAINT,
    [BOUNCE_REASON_VACATION] = BOUNCE_CLASS_IGNORE,
    [BOUNCE_REASON_DELIVERED] = BOUNCE_CLASS_IGNORE,
    [BOUNCE_REASON_ONHOLD] = BOUNCE_CLASS_SOFT,
    [BOUNCE_REASON_UNDEFINED] = BOUNCE_CLASS_SOFT,
};

static const char *const class_names[BOUNCE_CLASS_COUNT] = {
    [BOUNCE_CLASS_HARD] = "hard",     [BOUNCE_CLASS_SOFT] = "soft",
    [BOUNCE_CLASS_BLOCK] = "block",   [BOUNCE_CLASS_COMPLAINT] = "complaint",
    [BOUNCE_CLASS_IGNORE] = "ignore",
};

struct bounce_rule {
	unsigned conditions; /* RULE_TEXT | RULE_CODE | RULE_STATUS */
	int code[3];         /* digits or ANY */
	int status[3];       /* parts or ANY */
	enum bounce_reason reason;
	int class; /* an enum bounce_class, or CLASS_UNSET: the reason's class */
	unsigned file;
	unsigned line;
	size_t pattern_len;
	char pattern[BOUNCE_PATTERN_MAX + 1]; /* lowercase pieces, each ended by NUL */
};

struct bounce_rules {
	struct bounce_rule *rules;
	size_t count, cap;
	char *files[BOUNCE_RULE_FILES_MAX];
	size_t file_count;
	int reason_class[BOUNCE_REASON_COUNT]; /* CLASS_UNSET: the built-in default */
};

/* ---- names ---- */

const char *bounce_reason_name(enum bounce_reason r)
{
	return (unsigned)r < BOUNCE_REASON_COUNT ? reason_names[r] : "undefined";
}

/* Index of name[0..len) in names[0..n), or -1. */
static int name_find(const char *const *names, int n, const char *name, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
			return i;
	return -1;
}

int bounce_reason_from_name(const char *name, size_t len, enum bounce_reason *out)
{
	int i = name_find(reason_names, BOUNCE_REASON_COUNT, name, len);
	if (i < 0)
		return -1;
	*out = (enum bounce_reason)i;
	return 0;
}

const char *bounce_class_name(enum bounce_class c)
{
	return (unsigned)c < BOUNCE_CLASS_COUNT ? class_names[c] : "soft";
}

int bounce_class_from_name(const char *name, size_t len, enum bounce_class *out)
{
	int i = name_find(class_names, BOUNCE_CLASS_COUNT, name, len);
	if (i < 0)
		return -1;
	*out = (enum bounce_class)i;
	return 0;
}

enum bounce_class bounce_reason_class(enum bounce_reason r)
{
	return (unsigned)r < BOUNCE_REASON_COUNT ? reason_classes[r] : BOUNCE_CLASS_SOFT;
}

/* ---- text and codes ---- */

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' || c == 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * Writes " " + s[0..len) with whitespace runs (and NUL) folded to one space + " " to out (room
 * for max octets, max >= 3), ASCII letters lowercased when fold_case, the input cut to fit.
 * Returns the length written.
 */
static size_t text_normalize(const char *s, size_t len, bool fold_case, char *out, size_t max)
{
	size_t o = 0;
	out[o++] = ' ';
	for (size_t i = 0; i < len && o < max - 1; i++) {
		if (is_space((unsigned char)s[i])) {
			if (out[o - 1] != ' ')
				out[o++] = ' ';
		} else {
			out[o++] = fold_case ? lower(s[i]) : s[i];
		}
	}
	if (out[o - 1] != ' ')
		out[o++] = ' ';
	return o;
}

/* Reads "C.S.D" at s[0..len) into parts (and its text into enhanced unless NULL); the code
 * ends at len, at an octet that is not a digit or a dot, or at a final dot. Returns its
 * length, or 0. */
static size_t status_read(const char *s, size_t len, int parts[3], char *enhanced)
{
	char enh[SMTP_ENHANCED_MAX + 1];
	size_t n = 0;
	while (n < len && n <= SMTP_ENHANCED_MAX + 1 && (is_digit(s[n]) || s[n] == '.'))
		n++;
	if (n > 0 && s[n - 1] == '.') /* the end of a sentence */
		n--;
	if (n > SMTP_ENHANCED_MAX || smtp_enhanced_parse(s, n, enh) != n)
		return 0;
	const char *p = enh;
	for (int k = 0; k < 3; k++) {
		parts[k] = 0;
		while (is_digit(*p))
			parts[k] = parts[k] * 10 + (*p++ - '0');
		if (*p == '.')
			p++;
	}
	if (enhanced != NULL)
		memcpy(enhanced, enh, n + 1);
	return n;
}

/* The first enhanced status code in normalized text that stands alone (not inside a number
 * such as an IP address or "4.16.55.1"). Returns true and fills parts. */
static bool status_find(const char *t, size_t n, int parts[3])
{
	for (size_t i = 0; i + 5 <= n; i++) {
		if ((t[i] != '2' && t[i] != '4' && t[i] != '5') || t[i + 1] != '.')
			continue;
		if (i > 0 && (is_digit(t[i - 1]) || t[i - 1] == '.'))
			continue;
		if (status_read(t + i, n - i, parts, NULL) > 0)
			return true;
	}
	return false;
}

static bool text_match(const char *t, size_t n, const char *pat, size_t plen)
{
	size_t pos = 0;
	for (size_t i = 0; i < plen;) {
		size_t piece = strlen(pat + i);
		if (piece > 0) {
			const char *hit = memmem(t + pos, n - pos, pat + i, piece);
			if (hit == NULL)
				return false;
			pos = (size_t)(hit - t) + piece;
		}
		i += piece + 1;
	}
	return true;
}

static bool parts_match(const int *want, const int *got, int n)
{
	for (int k = 0; k < n; k++)
		if (want[k] != ANY && want[k] != got[k])
			return false;
	return true;
}

int bounce_classify(const struct bounce_rules *rules, int code, const char *enhanced,
                    const char *text, size_t textlen, struct bounce_verdict *out)
{
	char norm[BOUNCE_TEXT_MAX + 3];
	size_t n = text_normalize(text, textlen < BOUNCE_TEXT_MAX ? textlen : BOUNCE_TEXT_MAX, true,
	                          norm, sizeof norm);
	int status[3];
	bool has_status = false;
	if (enhanced != NULL && enhanced[0] != '\0')
		has_status = status_read(enhanced, strlen(enhanced), status, NULL) > 0;
	if (!has_status)
		has_status = status_find(norm, n, status);
	int digits[3] = {ANY, ANY, ANY};
	bool has_code = code >= 200 && code <= 599;
	if (has_code) {
		digits[0] = code / 100;
		digits[1] = code / 10 % 10;
		digits[2] = code % 10;
	} else if (has_status) {
		digits[0] = status[0];
	}
	/* an unknown digit matches only 'x' in a pattern */
	int unknown[3] = {has_code || has_status ? 0 : 1, has_code ? 0 : 1, has_code ? 0 : 1};

	out->reason = BOUNCE_REASON_UNDEFINED;
	out->class = bounce_reason_class(BOUNCE_REASON_UNDEFINED);
	out->rule_file = "";
	out->rule_line = 0;
	if (rules == NULL)
		return -1;
	for (size_t i = 0; i < rules->count; i++) {
		const struct bounce_rule *r = &rules->rules[i];
		if (r->conditions & RULE_STATUS) {
			if (!has_status || !parts_match(r->status, status, 3))
				continue;
		}
		if (r->conditions & RULE_CODE) {
			bool ok = true;
			for (int k = 0; k < 3 && ok; k++)
				ok = r->code[k] == ANY || (!unknown[k] && r->code[k] == digits[k]);
			if (!ok)
				continue;
		}
		if ((r->conditions & RULE_TEXT) && !text_match(norm, n, r->pattern, r->pattern_len))
			continue;
		out->reason = r->reason;
		if (r->class != CLASS_UNSET)
			out->class = (enum bounce_class)r->class;
		else if (rules->reason_class[r->reason] != CLASS_UNSET)
			out->class = (enum bounce_class)rules->reason_class[r->reason];
		else
			out->class = bounce_reason_class(r->reason);
		out->rule_file = rules->files[r->file];
		out->rule_line = r->line;
		return 0;
	}
	if (rules->reason_class[BOUNCE_REASON_UNDEFINED] != CLASS_UNSET)
		out->class = (enum bounce_class)rules->reason_class[BOUNCE_REASON_UNDEFINED];
	return -1;
}

/* A reply code at s[0..len): [2-5] digit digit followed by the end or an octet of seps. */
static int code_read_sep(const char *s, size_t len, const char *seps)
{
	if (len < 3 || s[0] < '2' || s[0] > '5' || !is_digit(s[1]) || !is_digit(s[2]))
		return 0;
	if (len > 3 && strchr(seps, s[3]) == NULL)
		return 0;
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* A reply code followed by '-', SP or the end. */
static int code_read(const char *s, size_t len)
{
	return code_read_sep(s, len, "- ");
}

size_t bounce_reply_find(const char *s, size_t len, int *code, char enhanced[SMTP_ENHANCED_MAX + 1])
{
	int parts[3], lone_class = 0;
	char lone_text[SMTP_ENHANCED_MAX + 1];
	size_t lone = len;
	*code = 0;
	enhanced[0] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))
			continue;
		int c = code_read(s + i, len - i);
		if (c != 0 && i + 4 < len &&
		    status_read(s + i + 4, len - i - 4, parts, enhanced) > 0) {
			if (parts[0] == c / 100) {
				*code = c;
				return i;
			}
			enhanced[0] = '\0';
		}
		if (lone == len && status_read(s + i, len - i, parts, lone_text) > 0) {
			lone = i;
			lone_class = parts[0];
		}
	}
	for (size_t i = 0; i < len; i++) {
		bool after = i == 0 || s[i - 1] == ':' || s[i - 1] == '\'' || s[i - 1] == '"' ||
		             (s[i - 1] == ' ' && i >= 2 && s[i - 2] == ':');
		int c = after ? code_read_sep(s + i, len - i, "- :") : 0;
		if (c == 0)
			continue;
		*code = c;
		if (lone < len && lone_class == c / 100)
			memcpy(enhanced, lone_text, strlen(lone_text) + 1);
		return i;
	}
	if (lone < len)
		memcpy(enhanced, lone_text, strlen(lone_text) + 1);
	return lone;
}

/* Length of a repeated prefix at s[0..len): "CODE-", "CODE-ENH ", "CODE ENH " (the code and
 * enhanced code of the first line), or "CODE " once a "CODE-" was seen (*multiline). 0 when
 * there is none. */
static size_t prefix_repeat(const char *s, size_t len, int code, const char *enhanced,
                            bool *multiline)
{
	if (code == 0 || code_read(s, len) != code || len == 3)
		return 0;
	size_t el = strlen(enhanced);
	bool enh = el > 0 && len >= 4 + el && memcmp(s + 4, enhanced, el) == 0 &&
	           (len == 4 + el || s[4 + el] == ' ');
	if (s[3] == '-')
		*multiline = true;
	if (enh)
		return 4 + el;
	return s[3] == '-' || *multiline ? 4 : 0;
}

size_t bounce_reply_split(const char *s, size_t len, int *code,
                          char enhanced[SMTP_ENHANCED_MAX + 1], char *text, size_t textmax)
{
	/* fold whitespace first, into a bounded buffer, so that folded continuation lines look
	 * like "550-5.1.1 a 550-5.1.1 b" */
	char folded[BOUNCE_TEXT_MAX + 3];
	size_t n = text_normalize(s, len < BOUNCE_TEXT_MAX ? len : BOUNCE_TEXT_MAX, false, folded,
	                          sizeof folded);
	const char *p = folded + 1;
	size_t left = n >= 2 ? n - 2 : 0; /* without the added spaces at both ends */
	*code = code_read(p, left);
	enhanced[0] = '\0';
	/* in a multi-line reply the last line's "CODE " goes too, enhanced code or not */
	bool multiline = *code != 0 && left > 3 && p[3] == '-';
	if (*code != 0) {
		size_t skip = left > 3 ? 4 : 3;
		p += skip;
		left -= skip;
	}
	size_t el = smtp_enhanced_parse(p, left, enhanced);
	if (el > 0 && *code != 0 && enhanced[0] != '0' + *code / 100) {
		enhanced[0] = '\0';
		el = 0;
	}
	if (el > 0) {
		p += el;
		left -= el;
	}
	while (left > 0 && *p == ' ') {
		p++;
		left--;
	}
	size_t o = 0;
	bool word_start = true;
	for (size_t i = 0; i < left && o + 1 < textmax;) {
		if (word_start) {
			size_t skip = prefix_repeat(p + i, left - i, *code, enhanced, &multiline);
			if (skip > 0) {
				i += skip;
				while (i < left && p[i] == ' ')
					i++;
				continue;
			}
		}
		if (p[i] == ' ' && (o == 0 || text[o - 1] == ' ')) {
			i++;
			continue;
		}
		word_start = p[i] == ' ';
		text[o++] = p[i++];
	}
	while (o > 0 && text[o - 1] == ' ')
		o--;
	if (textmax > 0)
		text[o] = '\0';
	return o;
}

/* ---- rule set ---- */

struct bounce_rules *bounce_rules_new(void)
{
	struct bounce_rules *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	for (int i = 0; i < BOUNCE_REASON_COUNT; i++)
		r->reason_class[i] = CLASS_UNSET;
	return r;
}

void bounce_rules_free(struct bounce_rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->file_count; i++)
		free(r->files[i]);
	free(r->rules);
	free(r);
}

size_t bounce_rules_count(const struct bounce_rules *r)
{
	return r != NULL ? r->count : 0;
}

struct token {
	const char *s;
	size_t n;
	bool quoted; /* s[0..n) is what stands between the quotes, escapes not yet undone */
};

/* Splits a line into tokens; '#' at a token start ends the line. Returns NULL or why not. */
static const char *tokens_split(const char *s, size_t n, struct token *t, size_t *count)
{
	size_t c = 0, i = 0;
	for (;;) {
		while (i < n && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i == n || s[i] == '#')
			break;
		if (c == TOKENS_MAX)
			return "too many words";
		t[c].quoted = s[i] == '"';
		if (t[c].quoted) {
			size_t start = ++i;
			while (i < n && s[i] != '"')
				i += s[i] == '\\' && i + 1 < n ? 2 : 1;
			if (i >= n)
				return "unterminated quote";
			t[c].s = s + start;
			t[c].n = i - start;
			i++;
			if (i < n && s[i] != ' ' && s[i] != '\t')
				return "a quoted pattern must be followed by a space";
		} else {
			size_t start = i;
			while (i < n && s[i] != ' ' && s[i] != '\t')
				i++;
			t[c].s = s + start;
			t[c].n = i - start;
		}
		c++;
	}
	*count = c;
	return NULL;
}

/* Compiles a text pattern into r->pattern. Returns NULL or why not. */
static const char *pattern_compile(struct bounce_rule *r, const struct token *t)
{
	size_t o = 0;
	bool any_literal = false;
	for (size_t i = 0; i < t->n; i++) {
		char c = t->s[i];
		bool star = c == '*';
		if (t->quoted && c == '\\' && i + 1 < t->n) {
			c = t->s[++i];
			star = false;
		}
		if (o >= BOUNCE_PATTERN_MAX)
			return "pattern too long";
		if (star) {
			if (o > 0 && r->pattern[o - 1] != '\0')
				r->pattern[o++] = '\0';
			continue;
		}
		if (c == '\0' || (unsigned char)c < 32 || c == 127) {
			if (c != '\t')
				return "control octet in pattern";
		}
		if (c == '\t')
			c = ' ';
		if (c == ' ' && o > 0 && r->pattern[o - 1] == ' ')
			continue;
		r->pattern[o++] = lower(c);
		any_literal = true;
	}
	if (!any_literal)
		return "empty pattern";
	if (r->pattern[o - 1] != '\0') {
		if (o >= BOUNCE_PATTERN_MAX)
			return "pattern too long";
		r->pattern[o++] = '\0';
	}
	r->pattern_len = o;
	return NULL;
}

/* "550", "5xx", "45x". */
static const char *code_pattern(const struct token *t, int code[3])
{
	if (t->quoted || t->n != 3)
		return "a code pattern is three characters, each a digit or x";
	for (int k = 0; k < 3; k++) {
		char c = lower(t->s[k]);
		if (c == 'x')
			code[k] = ANY;
		else if (is_digit(c))
			code[k] = c - '0';
		else
			return "a code pattern is three characters, each a digit or x";
	}
	if (code[0] != ANY && (code[0] < 2 || code[0] > 5))
		return "a reply code starts with 2, 3, 4 or 5";
	return NULL;
}

/* "5.1.1", "*.1.1", "5.7.*". */
static const char *status_pattern(const struct token *t, int status[3])
{
	static const char *bad = "a status pattern is C.S.D, each a number (1 to 3 digits) or *";
	size_t i = 0;
	if (t->quoted)
		return bad;
	for (int k = 0; k < 3; k++) {
		if (i < t->n && t->s[i] == '*') {
			status[k] = ANY;
			i++;
		} else {
			size_t start = i;
			status[k] = 0;
			while (i < t->n && is_digit(t->s[i]) && i - start < 3)
				status[k] = status[k] * 10 + (t->s[i++] - '0');
			if (i == start || (i < t->n && is_digit(t->s[i])))
				return bad;
		}
		if (k < 2 && (i >= t->n || t->s[i++] != '.'))
			return bad;
	}
	if (i != t->n)
		return bad;
	if (status[0] != ANY && status[0] != 2 && status[0] != 4 && status[0] != 5)
		return "a status class is 2, 4 or 5";
	return NULL;
}

static bool token_is(const struct token *t, const char *word)
{
	return !t->quoted && strlen(word) == t->n && memcmp(t->s, word, t->n) == 0;
}

/* Applies one condition (kind, argument) to r. Returns NULL or why not. */
static const char *condition_add(struct bounce_rule *r, unsigned kind, const struct token *arg)
{
	if (r->conditions & kind)
		return "the same condition twice";
	r->conditions |= kind;
	if (kind == RULE_TEXT)
		return pattern_compile(r, arg);
	if (kind == RULE_CODE)
		return code_pattern(arg, r->code);
	return status_pattern(arg, r->status);
}

/* "class REASON CLASS". */
static const char *class_line(struct bounce_rules *rs, const struct token *t, size_t n)
{
	enum bounce_reason reason;
	enum bounce_class class;
	if (n != 3)
		return "class takes a reason and a class";
	if (t[1].quoted || bounce_reason_from_name(t[1].s, t[1].n, &reason) != 0)
		return "unknown reason";
	if (t[2].quoted || bounce_class_from_name(t[2].s, t[2].n, &class) != 0)
		return "unknown class";
	if (rs->reason_class[reason] == CLASS_UNSET) /* the first file's wins */
		rs->reason_class[reason] = (int)class;
	return NULL;
}

/* One line. Appends a rule to rs (room reserved by the caller) or nothing (blank, comment). */
static const char *line_parse(struct bounce_rules *rs, const char *s, size_t n, unsigned file,
                              unsigned line)
{
	struct token t[TOKENS_MAX];
	size_t count;
	const char *why = tokens_split(s, n, t, &count);
	if (why != NULL || count == 0)
		return why;
	if (token_is(&t[0], "class"))
		return class_line(rs, t, count);
	struct bounce_rule *r = &rs->rules[rs->count];
	memset(r, 0, sizeof *r);
	r->class = CLASS_UNSET;
	r->file = file;
	r->line = line;
	static const struct {
		const char *word, *qualifier;
		unsigned kind;
	} kinds[] = {
	    {"text", NULL, RULE_TEXT},
	    {"code", "code=", RULE_CODE},
	    {"status", "status=", RULE_STATUS},
	};
	size_t k;
	for (k = 0; k < 3 && !token_is(&t[0], kinds[k].word); k++)
		;
	if (k == 3)
		return "a rule starts with status, code, text or class";
	if (count < 3)
		return "a rule needs a pattern and a reason";
	if ((why = condition_add(r, kinds[k].kind, &t[1])) != NULL)
		return why;
	size_t i = 2;
	for (; i < count; i++) {
		size_t q;
		for (q = 1; q < 3; q++) {
			size_t ql = strlen(kinds[q].qualifier);
			if (!t[i].quoted && t[i].n > ql &&
			    memcmp(t[i].s, kinds[q].qualifier, ql) == 0)
				break;
		}
		if (q == 3)
			break;
		size_t ql = strlen(kinds[q].qualifier);
		struct token arg = {t[i].s + ql, t[i].n - ql, false};
		if ((why = condition_add(r, kinds[q].kind, &arg)) != NULL)
			return why;
	}
	if (i == count)
		return "a rule needs a reason";
	if (t[i].quoted || bounce_reason_from_name(t[i].s, t[i].n, &r->reason) != 0)
		return "unknown reason";
	if (++i < count) {
		enum bounce_class class;
		if (t[i].quoted || bounce_class_from_name(t[i].s, t[i].n, &class) != 0)
			return "unknown class";
		r->class = (int)class;
		i++;
	}
	if (i != count)
		return "unexpected words after the class";
	rs->count++;
	return NULL;
}

static int rules_reserve(struct bounce_rules *rs)
{
	if (rs->count < rs->cap)
		return 0;
	size_t cap = rs->cap == 0 ? 64 : rs->cap * 2;
	if (cap > BOUNCE_RULES_MAX)
		cap = BOUNCE_RULES_MAX;
	struct bounce_rule *n = realloc(rs->rules, cap * sizeof *n);
	if (n == NULL)
		return -1;
	rs->rules = n;
	rs->cap = cap;
	return 0;
}

/* Parses every line of text into rs as file number `file`. Returns NULL, or why not with *line
 * the faulty line. */
static const char *lines_parse(struct bounce_rules *rs, const char *text, size_t len, unsigned file,
                               unsigned *line)
{
	for (size_t pos = 0; pos < len;) {
		const char *lf = memchr(text + pos, '\n', len - pos);
		size_t end = lf != NULL ? (size_t)(lf - text) : len;
		size_t n = end - pos;
		const char *why;
		(*line)++;
		if (n > 0 && text[pos + n - 1] == '\r')
			n--;
		if (n > BOUNCE_RULE_LINE_MAX)
			why = "line too long";
		else if (memchr(text + pos, '\0', n) != NULL)
			why = "NUL octet";
		else if (rs->count == BOUNCE_RULES_MAX)
			why = "too many rules";
		else if (rules_reserve(rs) != 0)
			why = "out of memory";
		else
			why = line_parse(rs, text + pos, n, file, *line);
		if (why != NULL)
			return why;
		pos = end + 1;
	}
	return NULL;
}

int bounce_rules_add_text(struct bounce_rules *rs, const char *name, const char *text, size_t len,
                          char *err, size_t errlen)
{
	size_t count_before = rs->count;
	int classes_before[BOUNCE_REASON_COUNT];
	memcpy(classes_before, rs->reason_class, sizeof classes_before);
	unsigned line = 0;
	const char *why = NULL;
	char *copy = NULL;

	if (rs->file_count == BOUNCE_RULE_FILES_MAX)
		why = "too many rules files";
	else if ((copy = strdup(name)) == NULL)
		why = "out of memory";
	if (why == NULL) {
		rs->files[rs->file_count] = copy;
		why = lines_parse(rs, text, len, (unsigned)rs->file_count, &line);
	}
	if (why == NULL) {
		rs->file_count++;
		return 0;
	}
	free(copy);
	rs->count = count_before;
	memcpy(rs->reason_class, classes_before, sizeof classes_before);
	if (errlen > 0 && line > 0)
		snprintf(err, errlen, "%s:%u: %s", name, line, why);
	else if (errlen > 0)
		snprintf(err, errlen, "%s: %s", name, why);
	return -1;
}

int bounce_rules_add_file(struct bounce_rules *rs, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char *text = malloc(BOUNCE_RULES_FILE_MAX + 1);
	if (text == NULL) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	size_t len = fread(text, 1, BOUNCE_RULES_FILE_MAX + 1, f);
	int failed = ferror(f);
	fclose(f);
	int rc = -1;
	if (failed)
		snprintf(err, errlen, "%s: read error", path);
	else if (len > BOUNCE_RULES_FILE_MAX)
		snprintf(err, errlen, "%s: larger than %d octets", path, BOUNCE_RULES_FILE_MAX);
	else
		rc = bounce_rules_add_text(rs, path, text, len, err, errlen);
	free(text);
	return rc;
}

struct bounce_rules *bounce_rules_load_list(const char *const *paths, size_t n, char *err,
                                            size_t errlen)
{
	struct bounce_rules *rs = bounce_rules_new();
	if (rs == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (bounce_rules_add_file(rs, paths[i], err, errlen) != 0) {
			bounce_rules_free(rs);
			return NULL;
		}
	}
	return rs;
}

struct bounce_rules *bounce_rules_load(const char *path, char *err, size_t errlen)
{
	return bounce_rules_load_list(&path, 1, err, errlen);
}

struct bounce_rules *bounce_rules_parse(const char *name, const char *text, size_t len, char *err,
                                        size_t errlen)
{
	struct bounce_rules *rs = bounce_rules_new();
	if (rs == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (bounce_rules_add_text(rs, name, text, len, err, errlen) != 0) {
		bounce_rules_free(rs);
		return NULL;
	}
	return rs;
}
