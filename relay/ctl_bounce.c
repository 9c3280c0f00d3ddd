/*
 * ctl_bounce.c: postinoctl's bounce commands (see ctl_bounce.h): parse message files with
 * relay/bounce_parse.c and classify replies with relay/bounce.c, printing key=value lines or
 * JSON (RFC 8259) objects, one per line. Peer bytes are never printed raw: in JSON, control
 * octets are \u00XX and octets that are not well-formed UTF-8 (RFC 3629) become U+FFFD; in
 * key=value lines, every octet outside printable ASCII is \xHH.
 */
#include "relay/ctl_bounce.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "relay/bounce_parse.h"

#define EXIT_USAGE      1
#define EXIT_UNREADABLE 2
#define REPLY_MAX       BOUNCE_TEXT_MAX /* octets of a reply given to classify */

void ctl_bounce_usage(FILE *out)
{
	fprintf(out, "  bounce parse [--json] FILE...\n"
	             "  bounce classify [--json] 'REPLY TEXT'\n");
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629 table 3.1: no overlongs,
 * no surrogates, nothing past U+10FFFF), or 0 when s does not start with one. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* s as a JSON string, quotes included. */
static void json_string(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	fputc('"', out);
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			fputc('\\', out);
			fputc(c, out);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(out, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			fputc(c, out);
			i++;
		} else {
			size_t l = utf8_sequence(p + i, n - i);
			if (l == 0) {
				fputs("\\ufffd", out);
				i++;
			} else {
				fwrite(p + i, 1, l, out);
				i += l;
			}
		}
	}
	fputc('"', out);
}

/* s for a key=value line: printable ASCII as is, '\' and every other octet as \xHH. */
static void text_value(FILE *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			fputc(*p, out);
		else
			fprintf(out, "\\x%02x", *p);
	}
}

struct field {
	const char *key;
	const char *value; /* NULL: a number */
	long number;
};

/* One result: a JSON object or a key=value line; empty string values are left out of the
 * line, kept in the object. */
static void fields_print(FILE *out, bool json, const struct field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (json) {
			fputs(i == 0 ? "{" : ",", out);
			json_string(out, f[i].key);
			fputc(':', out);
			if (f[i].value != NULL)
				json_string(out, f[i].value);
			else
				fprintf(out, "%ld", f[i].number);
			continue;
		}
		if (f[i].value != NULL && f[i].value[0] == '\0')
			continue;
		if (i > 0)
			fputc(' ', out);
		fprintf(out, "%s=", f[i].key);
		if (f[i].value == NULL) {
			fprintf(out, "%ld", f[i].number);
		} else if (strchr(f[i].value, ' ') != NULL) {
			fputc('"', out);
			text_value(out, f[i].value);
			fputc('"', out);
		} else {
			text_value(out, f[i].value);
		}
	}
	fputs(json ? "}\n" : "\n", out);
}

static void rule_name(const struct bounce_verdict *v, char *out, size_t outlen)
{
	if (v->rule_line == 0)
		snprintf(out, outlen, "%s", "");
	else
		snprintf(out, outlen, "%s:%u", v->rule_file, v->rule_line);
}

static void report_print(FILE *out, bool json, const char *file, const struct bounce_report *r)
{
	if (r->kind == BOUNCE_KIND_NOTBOUNCE) {
		struct field f[] = {
		    {"file", file, 0}, {"kind", "notbounce", 0}, {"reason", "notbounce", 0}};
		fields_print(out, json, f, sizeof f / sizeof f[0]);
		return;
	}
	for (size_t i = 0; i < r->recipient_count; i++) {
		const struct bounce_recipient *p = &r->recipients[i];
		char rule[BOUNCE_FIELD_MAX + 16];
		rule_name(&p->verdict, rule, sizeof rule);
		struct field f[] = {
		    {"file", file, 0},
		    {"kind", bounce_kind_name(r->kind), 0},
		    {"recipient", p->address, 0},
		    {"action", p->action, 0},
		    {"status", p->status, 0},
		    {"code", NULL, p->code},
		    {"reason", bounce_reason_name(p->verdict.reason), 0},
		    {"class", bounce_class_name(p->verdict.class), 0},
		    {"rule", rule, 0},
		    {"diagnostic", p->diagnostic, 0},
		    {"postino_id", r->original_postino_id, 0},
		    {"message_id", r->original_message_id, 0},
		    {"envelope_from", r->original_envelope_from, 0},
		    {"feedback_type", r->feedback_type, 0},
		};
		size_t n = sizeof f / sizeof f[0];
		if (r->kind != BOUNCE_KIND_ARF)
			n--; /* feedback_type only for feedback reports */
		fields_print(out, json, f, n);
	}
}

static struct bounce_rules *rules_open(const char *path, FILE *err)
{
	char why[512];
	struct bounce_rules *rules = bounce_rules_load(path, why, sizeof why);
	if (rules == NULL)
		fprintf(err, "postinoctl: bounce rules: %s\n", why);
	return rules;
}

/* Whether argv[*i] is "--json"; moves *i past it when it is. */
static bool json_flag(int argc, char **argv, int *i)
{
	if (*i < argc && strcmp(argv[*i], "--json") == 0) {
		(*i)++;
		return true;
	}
	return false;
}

/* Parses and prints one message file. Returns 0, or EXIT_UNREADABLE. */
static int file_report(const char *path, char *buf, const struct bounce_rules *rules,
                       struct bounce_report *rep, bool json, FILE *out, FILE *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(err, "postinoctl: %s: %s\n", path, strerror(errno));
		return EXIT_UNREADABLE;
	}
	size_t len = fread(buf, 1, BOUNCE_PARSE_INPUT_MAX, f);
	bool failed = ferror(f) != 0;
	fclose(f);
	if (failed) {
		fprintf(err, "postinoctl: %s: read error\n", path);
		return EXIT_UNREADABLE;
	}
	if (bounce_parse(rules, buf, len, rep) != BOUNCE_PARSE_OK)
		fprintf(err, "postinoctl: %s: out of memory, partial result\n", path);
	report_print(out, json, path, rep);
	return 0;
}

static int cmd_parse(const char *rules_path, int argc, char **argv, FILE *out, FILE *err)
{
	int i = 1;
	bool json = json_flag(argc, argv, &i);
	if (i >= argc) {
		fprintf(err, "usage: postinoctl bounce parse [--json] FILE...\n");
		return EXIT_USAGE;
	}
	struct bounce_rules *rules = rules_open(rules_path, err);
	if (rules == NULL)
		return EXIT_UNREADABLE;
	char *buf = malloc(BOUNCE_PARSE_INPUT_MAX);
	struct bounce_report *rep = malloc(sizeof *rep);
	int rc = 0;
	if (buf == NULL || rep == NULL) {
		fprintf(err, "postinoctl: out of memory\n");
		rc = EXIT_UNREADABLE;
		i = argc;
	}
	for (; i < argc; i++) /* an unreadable file does not stop the others */
		if (file_report(argv[i], buf, rules, rep, json, out, err) != 0)
			rc = EXIT_UNREADABLE;
	free(buf);
	free(rep);
	bounce_rules_free(rules);
	return rc;
}

static int cmd_classify(const char *rules_path, int argc, char **argv, FILE *out, FILE *err)
{
	int i = 1;
	bool json = json_flag(argc, argv, &i);
	if (i >= argc) {
		fprintf(err, "usage: postinoctl bounce classify [--json] 'REPLY TEXT'\n");
		return EXIT_USAGE;
	}
	char reply[REPLY_MAX + 1];
	size_t n = 0;
	for (; i < argc; i++) {
		size_t l = strlen(argv[i]);
		if (n > 0 && n < REPLY_MAX)
			reply[n++] = ' ';
		if (l > REPLY_MAX - n)
			l = REPLY_MAX - n;
		memcpy(reply + n, argv[i], l);
		n += l;
	}
	reply[n] = '\0';
	struct bounce_rules *rules = rules_open(rules_path, err);
	if (rules == NULL)
		return EXIT_UNREADABLE;
	int code;
	char enh[SMTP_ENHANCED_MAX + 1], text[REPLY_MAX + 1];
	size_t tl = bounce_reply_split(reply, n, &code, enh, text, sizeof text);
	if (code == 0 && enh[0] == '\0')
		bounce_reply_find(text, tl, &code, enh);
	struct bounce_verdict v;
	bounce_classify(rules, code, enh, text, tl, &v);
	char rule[BOUNCE_FIELD_MAX + 16];
	rule_name(&v, rule, sizeof rule);
	struct field f[] = {
	    {"reason", bounce_reason_name(v.reason), 0},
	    {"class", bounce_class_name(v.class), 0},
	    {"rule", v.rule_line > 0 ? rule : "none", 0},
	    {"code", NULL, code},
	    {"status", enh, 0},
	};
	fields_print(out, json, f, sizeof f / sizeof f[0]);
	bounce_rules_free(rules);
	return 0;
}

int ctl_bounce_run(const char *rules_path, int argc, char **argv, FILE *out, FILE *err)
{
	if (argc >= 1 && strcmp(argv[0], "parse") == 0)
		return cmd_parse(rules_path, argc, argv, out, err);
	if (argc >= 1 && strcmp(argv[0], "classify") == 0)
		return cmd_classify(rules_path, argc, argv, out, err);
	fprintf(err, "usage: postinoctl bounce COMMAND\n");
	ctl_bounce_usage(err);
	return EXIT_USAGE;
}

int ctl_bounce_main(const char *rules_path, int argc, char **argv)
{
	return ctl_bounce_run(rules_path, argc, argv, stdout, stderr);
}
