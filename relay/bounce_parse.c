/*
 * bounce_parse.c: the asynchronous bounce parser (see bounce_parse.h). Implements RFC 3464
 * (delivery-status fields), RFC 5965 (feedback-report fields), RFC 3834 (Auto-Submitted),
 * RFC 2045/2046 (MIME entities, multipart boundaries, base64 and quoted-printable), RFC 2047
 * (encoded words, Subject only), RFC 5322 (header fields and folding), and heuristics for
 * plain-text bounces.
 *
 * Owns nothing past one call: decoded parts live in buffers listed in struct ctx and freed
 * before bounce_parse returns. Every pointer into the message is bounded by its length; every
 * output is a fixed-size array, cut where the input is longer.
 */
#include "relay/bounce_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "relay/codec.h"
#include "relay/header.h"

#define BOUNDARY_MAX    200  /* octets of a boundary (RFC 2046: 70; some send longer) */
#define CTYPE_VALUE_MAX 1024 /* octets of a Content-Type value read */
#define SUBJECT_RAW_MAX 1024 /* octets of a Subject value read before decoding */
#define FROM_ADDRESSES  4    /* addresses of a From field parsed */
#define DIAG_RAW_MAX    4096 /* octets of a Diagnostic-Code value read */

struct span {
	const char *p;
	size_t n;
};

struct ctx {
	const struct bounce_rules *rules;
	struct bounce_report *out;
	enum bounce_parse_status status;
	unsigned parts;
	size_t decode_budget; /* octets decoded parts may still take */
	char *buffers[BOUNCE_PARSE_PARTS_MAX];
	size_t buffer_count;
	/* what the walk found */
	bool dsn, arf;
	struct span text;              /* the first human-readable part */
	struct span failed_recipients; /* Exim's X-Failed-Recipients */
	/* the returned message's To and Microsoft's X-HmXmrOriginalRecipient (ARF fallback) */
	char original_to[BOUNCE_ADDRESS_MAX + 1];
	char arf_rcpt_to[BOUNCE_ADDRESS_MAX + 1];
	/* top-level fields */
	char auto_submitted[32];
	char precedence[32];
	bool autoreply_header;
};

/* ---- small text helpers ---- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* True when s[0..n) starts with the lowercase prefix, ignoring ASCII case. */
static bool starts_with(const char *s, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	return n >= pl && strncasecmp(s, prefix, pl) == 0;
}

/* True when s[0..n) holds the lowercase needle, ignoring ASCII case. */
static bool contains(const char *s, size_t n, const char *needle)
{
	size_t nl = strlen(needle);
	for (size_t i = 0; nl <= n && i <= n - nl; i++)
		if (lower(s[i]) == needle[0] && strncasecmp(s + i, needle, nl) == 0)
			return true;
	return false;
}

/* The line at s[pos..len): its length without CR LF or LF; *next is where the next starts. */
static size_t line_at(const char *s, size_t len, size_t pos, size_t *next)
{
	const char *lf = memchr(s + pos, '\n', len - pos);
	size_t end = lf != NULL ? (size_t)(lf - s) : len;
	*next = lf != NULL ? end + 1 : len;
	size_t n = end - pos;
	if (n > 0 && s[pos + n - 1] == '\r')
		n--;
	return n;
}

/* s[0..n) without leading and trailing whitespace. */
static struct span trim(const char *s, size_t n)
{
	while (n > 0 && is_space(*s)) {
		s++;
		n--;
	}
	while (n > 0 && is_space(s[n - 1]))
		n--;
	return (struct span){s, n};
}

/* Copies s[0..n) to out (room for max octets with the NUL, max > 0): CR and LF dropped (header
 * unfolding), whitespace runs folded to one space, trimmed. Returns the length. */
static size_t fold_copy(const char *s, size_t n, char *out, size_t max)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < max; i++) {
		if (is_space(s[i])) {
			if (o > 0 && out[o - 1] != ' ')
				out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return o;
}

/* Appends " " + s[0..n) folded to out (holding *len octets, room for max with the NUL). */
static void fold_append(char *out, size_t *len, size_t max, const char *s, size_t n)
{
	if (*len > 0 && *len + 2 < max)
		out[(*len)++] = ' ';
	*len += fold_copy(s, n, out + *len, max - *len);
}

static void lowercase(char *s)
{
	for (; *s; s++)
		*s = lower(*s);
}

/* ---- addresses ---- */

/* True when s[0..n) looks like one addr-spec: local@domain, no spaces or specials, a dotted
 * domain of letters, digits, '-' and UTF-8; not a URL. */
static bool addr_valid(const char *s, size_t n)
{
	if (n < 5 || n > BOUNCE_ADDRESS_MAX)
		return false;
	const char *at = NULL;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '@')
			at = s + i;
	if (at == NULL || at == s || at - s > SMTP_LOCAL_MAX)
		return false;
	for (const char *p = s; p < at; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c == 127 || strchr("<>()[],;:\"\\@", c) != NULL)
			return false;
	}
	const char *d = at + 1;
	size_t dn = (size_t)(s + n - d);
	if (dn < 3 || d[0] == '.' || d[0] == '-' || d[dn - 1] == '.' || d[dn - 1] == '-' ||
	    memchr(d, '.', dn) == NULL)
		return false;
	for (size_t i = 0; i < dn; i++) {
		unsigned char c = (unsigned char)d[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '-' || c == '.' || c >= 0x80;
		if (!ok || (c == '.' && i + 1 < dn && d[i + 1] == '.'))
			return false;
	}
	return true;
}

/* s[0..n) without surrounding angle brackets, quotes and trailing punctuation. */
static struct span addr_strip(const char *s, size_t n)
{
	struct span t = trim(s, n);
	while (t.n > 0 && strchr("<\"'(", t.p[0]) != NULL) {
		t.p++;
		t.n--;
	}
	while (t.n > 0 && strchr(">\"'),.;:", t.p[t.n - 1]) != NULL)
		t.n--;
	return t;
}

/* Copies the address of a typed DSN field ("rfc822; <a@example.com>") or of a bare address
 * value to out; "" when there is none that looks valid. */
static void addr_from_value(const char *v, size_t n, char out[BOUNCE_ADDRESS_MAX + 1])
{
	const char *semi = memchr(v, ';', n);
	if (semi != NULL) {
		n -= (size_t)(semi + 1 - v);
		v = semi + 1;
	}
	struct span a = addr_strip(v, n);
	out[0] = '\0';
	if (addr_valid(a.p, a.n)) {
		memcpy(out, a.p, a.n);
		out[a.n] = '\0';
	}
}

/* The first address of an address-list header value (From, To), or "". */
static void addr_from_header(const char *v, size_t n, char out[BOUNCE_ADDRESS_MAX + 1])
{
	struct header_address addrs[FROM_ADDRESSES];
	size_t count = 0;
	char buf[SUBJECT_RAW_MAX];
	size_t bl = fold_copy(v, n, buf, sizeof buf);
	out[0] = '\0';
	enum header_addr_status st = header_addresses_parse(buf, bl, addrs, FROM_ADDRESSES, &count);
	if ((st == HEADER_ADDR_OK || st == HEADER_ADDR_TOO_MANY) && count > 0 &&
	    strlen(addrs[0].addr) <= BOUNCE_ADDRESS_MAX) {
		memcpy(out, addrs[0].addr, strlen(addrs[0].addr) + 1);
		return;
	}
	addr_from_value(buf, bl, out); /* "<a@b>" or a bare address the strict parser refused */
}

/* ---- header fields ---- */

/*
 * Finds, in the header section h[0..n), the first field of each name (case-insensitive) and
 * sets found[k] to its raw value: from after the colon to the end of its last continuation
 * line (folding kept). found[k].p is NULL for a field that is absent.
 */
static void fields_scan(const char *h, size_t n, const char *const *names, size_t count,
                        struct span *found)
{
	for (size_t k = 0; k < count; k++)
		found[k] = (struct span){NULL, 0};
	size_t pos = 0;
	while (pos < n) {
		size_t next, ln = line_at(h, n, pos, &next);
		const char *line = h + pos;
		const char *colon = ln > 0 && !is_wsp(line[0]) ? memchr(line, ':', ln) : NULL;
		if (colon != NULL) {
			size_t nl = (size_t)(colon - line);
			while (nl > 0 && is_wsp(line[nl - 1]))
				nl--;
			for (size_t k = 0; k < count; k++) {
				if (found[k].p != NULL || strlen(names[k]) != nl ||
				    strncasecmp(line, names[k], nl) != 0)
					continue;
				size_t end = pos + ln, p2 = next;
				while (p2 < n && is_wsp(h[p2])) {
					size_t nx, l2 = line_at(h, n, p2, &nx);
					end = p2 + l2;
					p2 = nx;
				}
				found[k].p = colon + 1;
				found[k].n = end - (size_t)(colon + 1 - h);
				break;
			}
		}
		pos = next;
	}
}

/* Copies a field's value unfolded (fold_copy) to out; "" when the field is absent. */
static size_t field_copy(struct span v, char *out, size_t max)
{
	if (v.p == NULL) {
		out[0] = '\0';
		return 0;
	}
	return fold_copy(v.p, v.n, out, max);
}

/* The value of a typed field without its type ("dns; mx.example.com" -> "mx.example.com"). */
static void typed_copy(struct span v, char *out, size_t max)
{
	size_t n = field_copy(v, out, max);
	char *semi = memchr(out, ';', n);
	if (semi != NULL) {
		struct span t = trim(semi + 1, n - (size_t)(semi + 1 - out));
		memmove(out, t.p, t.n);
		out[t.n] = '\0';
	}
}

/* ---- MIME ---- */

struct content_type {
	char type[64]; /* "multipart/report", lowercase; "" when absent */
	char boundary[BOUNDARY_MAX + 1];
	char report_type[32]; /* lowercase */
};

/* Parses a Content-Type value (RFC 2045 5.1): type/subtype, then ;-separated parameters with
 * token or quoted-string values. Unknown parameters are skipped. */
static void content_type_parse(struct span v, struct content_type *ct)
{
	char buf[CTYPE_VALUE_MAX];
	size_t n = field_copy(v, buf, sizeof buf);
	size_t i = 0, o = 0;
	memset(ct, 0, sizeof *ct);
	while (i < n && buf[i] != ';' && buf[i] != ' ' && o + 1 < sizeof ct->type)
		ct->type[o++] = lower(buf[i++]);
	ct->type[o] = '\0';
	while (i < n) {
		while (i < n && (buf[i] == ';' || buf[i] == ' '))
			i++;
		size_t ns = i;
		while (i < n && buf[i] != '=' && buf[i] != ';')
			i++;
		struct span name = trim(buf + ns, i - ns);
		if (i >= n || buf[i] != '=')
			continue;
		i++;
		while (i < n && buf[i] == ' ')
			i++;
		char value[BOUNDARY_MAX + 1];
		size_t vl = 0;
		if (i < n && buf[i] == '"') {
			for (i++; i < n && buf[i] != '"'; i++) {
				if (buf[i] == '\\' && i + 1 < n)
					i++;
				if (vl < BOUNDARY_MAX)
					value[vl++] = buf[i];
			}
			i++;
		} else {
			while (i < n && buf[i] != ';' && buf[i] != ' ') {
				if (vl < BOUNDARY_MAX)
					value[vl++] = buf[i];
				i++;
			}
		}
		value[vl] = '\0';
		if (name.n == 8 && strncasecmp(name.p, "boundary", 8) == 0) {
			memcpy(ct->boundary, value, vl + 1);
		} else if (name.n == 11 && strncasecmp(name.p, "report-type", 11) == 0 &&
		           vl < sizeof ct->report_type) {
			memcpy(ct->report_type, value, vl + 1);
			lowercase(ct->report_type);
		}
	}
}

/* Decodes quoted-printable (RFC 2045 6.7): "=XX", soft line breaks "=" [WSP] CRLF; a '=' that
 * starts neither is kept. With underscore, '_' is a space (RFC 2047 Q). out has room for n.
 * Returns the length. */
static size_t qp_decode(const char *in, size_t n, char *out, bool underscore)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (underscore && c == '_') {
			out[o++] = ' ';
			continue;
		}
		if (c != '=') {
			out[o++] = c;
			continue;
		}
		if (i + 2 < n && codec_hex_digit(in[i + 1]) >= 0 &&
		    codec_hex_digit(in[i + 2]) >= 0) {
			out[o++] =
			    (char)(codec_hex_digit(in[i + 1]) * 16 + codec_hex_digit(in[i + 2]));
			i += 2;
			continue;
		}
		size_t j = i + 1;
		while (j < n && is_wsp(in[j]))
			j++;
		if (j < n && in[j] == '\r')
			j++;
		if (j < n && in[j] == '\n') {
			i = j; /* soft line break */
			continue;
		}
		if (j == n) /* "=" at the very end: a soft break cut short */
			break;
		out[o++] = c;
	}
	return o;
}

/* One RFC 2047 encoded word "=?charset?B|Q?text?=" at the start of s[0..n): appends its octets
 * to out (holding *o, room for max with the NUL), first dropping the spaces that follow a
 * previous word. Returns the word's length, or 0 when s does not start with one. */
static size_t word_decode(const char *s, size_t n, char *out, size_t max, size_t *o,
                          bool after_word)
{
	if (n < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	const char *q1 = memchr(s + 2, '?', n - 2);
	if (q1 == NULL || (size_t)(q1 - s) + 3 >= n || q1[2] != '?' ||
	    memchr(s, ' ', (size_t)(q1 - s)))
		return 0;
	char enc = lower(q1[1]);
	const char *t = q1 + 3, *end = NULL;
	for (const char *p = t; p + 1 < s + n && end == NULL; p++)
		if (p[0] == '?' && p[1] == '=')
			end = p;
	if (end == NULL || (enc != 'b' && enc != 'q'))
		return 0;
	char tmp[SUBJECT_RAW_MAX];
	size_t tl = (size_t)(end - t);
	if (tl > sizeof tmp - 4)
		tl = sizeof tmp - 4;
	size_t dl = enc == 'b' ? codec_base64_decode_mime(t, tl, tmp) : qp_decode(t, tl, tmp, true);
	if (after_word)
		while (*o > 0 && out[*o - 1] == ' ')
			(*o)--;
	for (size_t k = 0; k < dl && *o + 1 < max; k++)
		out[(*o)++] = is_space(tmp[k]) ? ' ' : tmp[k];
	return (size_t)(end + 2 - s);
}

/* Decodes the RFC 2047 encoded words of a folded header value into out (max > 0 with the
 * NUL); whitespace between two encoded words is dropped; the charset is not converted. */
static void words_decode(const char *s, size_t n, char *out, size_t max)
{
	size_t o = 0, i = 0;
	bool prev_word = false;
	while (i < n && o + 1 < max) {
		size_t used = word_decode(s + i, n - i, out, max, &o, prev_word);
		if (used > 0) {
			i += used;
			prev_word = true;
			continue;
		}
		if (!is_space(s[i]))
			prev_word = false;
		out[o++] = is_space(s[i]) ? ' ' : s[i];
		i++;
	}
	out[o] = '\0';
}

/* ---- the report ---- */

/* The recipient with this address (ASCII case ignored), or a new one; NULL when full. An empty
 * address always makes a new recipient. */
static struct bounce_recipient *rcpt_get(struct ctx *c, const char *addr)
{
	struct bounce_report *r = c->out;
	if (addr[0] != '\0')
		for (size_t i = 0; i < r->recipient_count; i++)
			if (strcasecmp(r->recipients[i].address, addr) == 0)
				return &r->recipients[i];
	if (r->recipient_count == BOUNCE_PARSE_RCPTS_MAX) {
		r->recipients_truncated = true;
		r->truncated = true;
		return NULL;
	}
	struct bounce_recipient *p = &r->recipients[r->recipient_count++];
	memset(p, 0, sizeof *p);
	memcpy(p->address, addr, strlen(addr) + 1);
	return p;
}

static bool action_is(const struct bounce_recipient *p, const char *a)
{
	return strcmp(p->action, a) == 0;
}

/* Reasons that say nothing about the recipient: when the MTA gave up after them, the news is
 * that it gave up (expired). */
static bool gave_up(enum bounce_reason r)
{
	return r == BOUNCE_REASON_NETWORKERROR || r == BOUNCE_REASON_SYSTEMERROR ||
	       r == BOUNCE_REASON_UNDEFINED || r == BOUNCE_REASON_ONHOLD;
}

/*
 * Fills p's code and status (where still unknown) from its diagnostic and classifies it.
 * Success actions give delivered; a failed 4.x.x whose reason says nothing about the
 * recipient (gave_up) gives expired.
 */
static void rcpt_classify(struct ctx *c, struct bounce_recipient *p)
{
	int code;
	char enh[SMTP_ENHANCED_MAX + 1];
	char text[BOUNCE_DIAGNOSTIC_MAX + 1];
	size_t tl =
	    bounce_reply_split(p->diagnostic, strlen(p->diagnostic), &code, enh, text, sizeof text);
	if (code == 0 && enh[0] == '\0')
		bounce_reply_find(text, tl, &code, enh);
	if (p->code == 0)
		p->code = code;
	if (p->status[0] == '\0')
		memcpy(p->status, enh, strlen(enh) + 1);
	bounce_classify(c->rules, p->code, p->status, text, tl, &p->verdict);
	if (action_is(p, "delivered") || action_is(p, "relayed") || action_is(p, "expanded")) {
		p->verdict =
		    (struct bounce_verdict){BOUNCE_REASON_DELIVERED, BOUNCE_CLASS_IGNORE, "", 0};
	} else if (action_is(p, "failed") && p->status[0] == '4' && gave_up(p->verdict.reason)) {
		p->verdict = (struct bounce_verdict){
		    BOUNCE_REASON_EXPIRED, bounce_reason_class(BOUNCE_REASON_EXPIRED), "", 0};
	}
}

/* The enhanced code at the start of a Status value ("5.1.1 (permanent failure)"). */
static void status_copy(struct span v, char out[SMTP_ENHANCED_MAX + 1])
{
	char buf[64];
	size_t n = field_copy(v, buf, sizeof buf), e = 0;
	while (e < n && buf[e] != ' ' && buf[e] != '(')
		e++;
	smtp_enhanced_parse(buf, e, out);
}

/* ---- RFC 3464 delivery-status ---- */

enum {
	DSN_FINAL,
	DSN_ORIGINAL,
	DSN_ACTION,
	DSN_STATUS,
	DSN_REMOTE,
	DSN_DIAG,
	DSN_REPORTING,
	DSN_ENVID,
	DSN_POSTFIX_SENDER,
	DSN_FIELDS
};

static const char *const dsn_names[DSN_FIELDS] = {
    "Final-Recipient", "Original-Recipient",   "Action",
    "Status",          "Remote-MTA",           "Diagnostic-Code",
    "Reporting-MTA",   "Original-Envelope-Id", "X-Postfix-Sender",
};

static void dsn_recipient(struct ctx *c, const struct span *f)
{
	char addr[BOUNCE_ADDRESS_MAX + 1] = "";
	if (f[DSN_FINAL].p != NULL)
		addr_from_value(f[DSN_FINAL].p, f[DSN_FINAL].n, addr);
	if (addr[0] == '\0' && f[DSN_ORIGINAL].p != NULL)
		addr_from_value(f[DSN_ORIGINAL].p, f[DSN_ORIGINAL].n, addr);
	struct bounce_recipient *p = rcpt_get(c, addr);
	if (p == NULL)
		return;
	if (f[DSN_ORIGINAL].p != NULL)
		addr_from_value(f[DSN_ORIGINAL].p, f[DSN_ORIGINAL].n, p->original);
	field_copy(f[DSN_ACTION], p->action, sizeof p->action);
	lowercase(p->action);
	status_copy(f[DSN_STATUS], p->status);
	typed_copy(f[DSN_REMOTE], p->remote_mta, sizeof p->remote_mta);
	char diag[DIAG_RAW_MAX];
	size_t dl = field_copy(f[DSN_DIAG], diag, sizeof diag);
	const char *semi = memchr(diag, ';', dl < 32 ? dl : 32);
	struct span d =
	    semi != NULL ? trim(semi + 1, dl - (size_t)(semi + 1 - diag)) : (struct span){diag, dl};
	fold_copy(d.p, d.n, p->diagnostic, sizeof p->diagnostic);
}

/* The body of a message/delivery-status part: a per-message block, then one block per
 * recipient, separated by empty lines. */
static void dsn_parse(struct ctx *c, const char *b, size_t n)
{
	struct bounce_report *r = c->out;
	size_t pos = 0;
	c->dsn = true;
	while (pos < n) {
		size_t next, ln = line_at(b, n, pos, &next);
		if (ln == 0 || trim(b + pos, ln).n == 0) {
			pos = next;
			continue;
		}
		size_t start = pos;
		while (pos < n) {
			ln = line_at(b, n, pos, &next);
			if (trim(b + pos, ln).n == 0)
				break;
			pos = next;
		}
		struct span f[DSN_FIELDS];
		fields_scan(b + start, pos - start, dsn_names, DSN_FIELDS, f);
		if (f[DSN_REPORTING].p != NULL && r->reporting_mta[0] == '\0')
			typed_copy(f[DSN_REPORTING], r->reporting_mta, sizeof r->reporting_mta);
		if (f[DSN_ENVID].p != NULL && r->envelope_id[0] == '\0')
			field_copy(f[DSN_ENVID], r->envelope_id, sizeof r->envelope_id);
		if (f[DSN_POSTFIX_SENDER].p != NULL && r->original_envelope_from[0] == '\0')
			addr_from_value(f[DSN_POSTFIX_SENDER].p, f[DSN_POSTFIX_SENDER].n,
			                r->original_envelope_from);
		if (f[DSN_FINAL].p != NULL || f[DSN_ORIGINAL].p != NULL)
			dsn_recipient(c, f);
	}
}

/* ---- RFC 5965 feedback-report ---- */

enum { ARF_TYPE, ARF_MAIL_FROM, ARF_RCPT_TO, ARF_DOMAIN, ARF_SOURCE_IP, ARF_REPORTING, ARF_FIELDS };

static const char *const arf_names[ARF_FIELDS] = {
    "Feedback-Type",   "Original-Mail-From", "Original-Rcpt-To",
    "Reported-Domain", "Source-IP",          "Reporting-MTA",
};

static void arf_parse(struct ctx *c, const char *b, size_t n)
{
	struct bounce_report *r = c->out;
	struct span f[ARF_FIELDS];
	c->arf = true;
	fields_scan(b, n, arf_names, ARF_FIELDS, f);
	field_copy(f[ARF_TYPE], r->feedback_type, sizeof r->feedback_type);
	lowercase(r->feedback_type);
	if (f[ARF_MAIL_FROM].p != NULL && r->original_envelope_from[0] == '\0')
		addr_from_value(f[ARF_MAIL_FROM].p, f[ARF_MAIL_FROM].n, r->original_envelope_from);
	if (f[ARF_RCPT_TO].p != NULL)
		addr_from_value(f[ARF_RCPT_TO].p, f[ARF_RCPT_TO].n, c->arf_rcpt_to);
	field_copy(f[ARF_DOMAIN], r->reported_domain, sizeof r->reported_domain);
	field_copy(f[ARF_SOURCE_IP], r->source_ip, sizeof r->source_ip);
	if (r->reporting_mta[0] == '\0')
		typed_copy(f[ARF_REPORTING], r->reporting_mta, sizeof r->reporting_mta);
}

/* ---- the returned original message ---- */

enum {
	ORIG_MESSAGE_ID,
	ORIG_POSTINO_ID,
	ORIG_RETURN_PATH,
	ORIG_TO,
	ORIG_HOTMAIL_RCPT,
	ORIG_FIELDS
};

static const char *const orig_names[ORIG_FIELDS] = {
    "Message-ID", "X-Postino-ID", "Return-Path", "To", "X-HmXmrOriginalRecipient",
};

/* The header section of the returned message (the first one found counts). */
static void original_parse(struct ctx *c, const char *h, size_t n)
{
	struct bounce_report *r = c->out;
	struct span f[ORIG_FIELDS];
	if (r->has_original)
		return;
	r->has_original = true;
	fields_scan(h, n, orig_names, ORIG_FIELDS, f);
	field_copy(f[ORIG_MESSAGE_ID], r->original_message_id, sizeof r->original_message_id);
	field_copy(f[ORIG_POSTINO_ID], r->original_postino_id, sizeof r->original_postino_id);
	if (f[ORIG_RETURN_PATH].p != NULL) { /* it comes before the fallbacks of DSN and ARF */
		char rp[BOUNCE_ADDRESS_MAX + 1];
		addr_from_value(f[ORIG_RETURN_PATH].p, f[ORIG_RETURN_PATH].n, rp);
		if (rp[0] != '\0')
			memcpy(r->original_envelope_from, rp, strlen(rp) + 1);
	}
	if (f[ORIG_HOTMAIL_RCPT].p != NULL)
		addr_from_value(f[ORIG_HOTMAIL_RCPT].p, f[ORIG_HOTMAIL_RCPT].n, c->original_to);
	if (c->original_to[0] == '\0' && f[ORIG_TO].p != NULL)
		addr_from_header(f[ORIG_TO].p, f[ORIG_TO].n, c->original_to);
}

/* ---- entities ---- */

enum { ENT_CTYPE, ENT_CTE, ENT_FIELDS };
static const char *const entity_names[ENT_FIELDS] = {"Content-Type", "Content-Transfer-Encoding"};

/* Splits e[0..n) at its first empty line: header e[0..*hlen), body e[*body..n). A header
 * section without an end within BOUNCE_PARSE_HEADER_MAX octets is cut there. */
static void entity_split(struct ctx *c, const char *e, size_t n, size_t *hlen, size_t *body)
{
	size_t pos = 0;
	while (pos < n) {
		size_t next, ln = line_at(e, n, pos, &next);
		if (ln == 0) {
			*hlen = pos;
			*body = next;
			return;
		}
		if (next > BOUNCE_PARSE_HEADER_MAX) {
			c->out->truncated = true;
			*hlen = pos;
			*body = pos;
			return;
		}
		pos = next;
	}
	*hlen = n;
	*body = n;
}

/* The body decoded per its Content-Transfer-Encoding into a buffer owned by c (or the body
 * itself when it needs no decoding, or when the decoding budget or memory runs out). */
static struct span body_decode(struct ctx *c, struct span cte, const char *b, size_t n)
{
	char enc[32];
	field_copy(cte, enc, sizeof enc);
	lowercase(enc);
	bool b64 = strcmp(enc, "base64") == 0, qp = strcmp(enc, "quoted-printable") == 0;
	if (!b64 && !qp)
		return (struct span){b, n};
	size_t room = b64 ? n / 4 * 3 + 3 : n;
	if (room > c->decode_budget || c->buffer_count == BOUNCE_PARSE_PARTS_MAX) {
		c->out->truncated = true;
		return (struct span){b, n};
	}
	char *buf = malloc(room + 1);
	if (buf == NULL) {
		c->status = BOUNCE_PARSE_NOMEM;
		return (struct span){b, n};
	}
	c->buffers[c->buffer_count++] = buf;
	c->decode_budget -= room;
	size_t dl = b64 ? codec_base64_decode_mime(b, n, buf) : qp_decode(b, n, buf, false);
	return (struct span){buf, dl};
}

static void entity_walk(struct ctx *c, const char *e, size_t n, unsigned depth);

/* Walks the parts of a multipart body (RFC 2046 5.1.1): a delimiter line is "--" boundary,
 * optionally "--" (the close), optionally followed by whitespace; the line break before a
 * delimiter belongs to it. A body that ends without the close delimiter is truncated. */
static void multipart_walk(struct ctx *c, const char *b, size_t n, const char *boundary,
                           unsigned depth)
{
	size_t bl = strlen(boundary);
	size_t pos = 0, part = SIZE_MAX;
	while (pos < n) {
		size_t next, ln = line_at(b, n, pos, &next);
		const char *l = b + pos;
		bool delimiter =
		    ln >= bl + 2 && l[0] == '-' && l[1] == '-' && memcmp(l + 2, boundary, bl) == 0;
		bool close = false;
		if (delimiter) {
			struct span rest = trim(l + 2 + bl, ln - 2 - bl);
			close = rest.n == 2 && rest.p[0] == '-' && rest.p[1] == '-';
			delimiter = rest.n == 0 || close;
		}
		if (delimiter) {
			if (part != SIZE_MAX) {
				size_t end = pos;
				if (end > part && b[end - 1] == '\n')
					end--;
				if (end > part && b[end - 1] == '\r')
					end--;
				entity_walk(c, b + part, end - part, depth + 1);
			}
			if (close)
				return;
			part = next;
		}
		pos = next;
	}
	c->out->truncated = true;
	if (part != SIZE_MAX && part < n)
		entity_walk(c, b + part, n - part, depth + 1);
}

static void entity_walk(struct ctx *c, const char *e, size_t n, unsigned depth)
{
	if (depth > BOUNCE_PARSE_DEPTH_MAX || c->parts >= BOUNCE_PARSE_PARTS_MAX) {
		c->out->truncated = true;
		return;
	}
	c->parts++;
	size_t hlen, body;
	entity_split(c, e, n, &hlen, &body);
	struct span f[ENT_FIELDS];
	fields_scan(e, hlen, entity_names, ENT_FIELDS, f);
	struct content_type ct;
	content_type_parse(f[ENT_CTYPE], &ct);
	const char *b = e + body;
	size_t bn = n - body;
	if (strncmp(ct.type, "multipart/", 10) == 0) {
		if (ct.boundary[0] != '\0')
			multipart_walk(c, b, bn, ct.boundary, depth);
		return;
	}
	bool is_dsn = strcmp(ct.type, "message/delivery-status") == 0 ||
	              strcmp(ct.type, "message/global-delivery-status") == 0;
	bool is_arf = strcmp(ct.type, "message/feedback-report") == 0;
	bool is_original = strcmp(ct.type, "message/rfc822") == 0 ||
	                   strcmp(ct.type, "message/global") == 0 ||
	                   strcmp(ct.type, "text/rfc822-headers") == 0 ||
	                   strcmp(ct.type, "message/rfc822-headers") == 0 ||
	                   strcmp(ct.type, "message/global-headers") == 0;
	bool is_text = ct.type[0] == '\0' || strcmp(ct.type, "text/plain") == 0;
	if (!is_dsn && !is_arf && !is_original && !(is_text && c->text.p == NULL))
		return;
	struct span d = body_decode(c, f[ENT_CTE], b, bn);
	if (is_dsn) {
		dsn_parse(c, d.p, d.n);
	} else if (is_arf) {
		arf_parse(c, d.p, d.n);
	} else if (is_original) {
		size_t oh, ob;
		entity_split(c, d.p, d.n, &oh, &ob);
		original_parse(c, d.p, oh);
	} else {
		c->text = d;
	}
}

/* ---- plain-text heuristics ---- */

/* Lines after which the bounce quotes the original message. */
static const char *const stop_markers[] = {
    "--- below this line is a copy of the message",
    "------ this is a copy of the message",
    "------ this is a copy of your message",
    "----- original message -----",
    "-----original message-----",
    "--- original message follows",
    "original message headers:",
    "------- returned message --------",
    "----- the header of the original message",
    "--- the header of the original message",
};

static bool stop_marker(struct span l)
{
	for (size_t i = 0; i < sizeof stop_markers / sizeof stop_markers[0]; i++)
		if (starts_with(l.p, l.n, stop_markers[i]))
			return true;
	return false;
}

/* Words after which a bounce names the failed address in a sentence. */
static const char *const lead_ins[] = {
    "delivered to ",
    "your message to ",
    "delivery to ",
};

/* Copies s[0..n) stripped to out when it is an address. */
static bool addr_take(const char *s, size_t n, char out[BOUNCE_ADDRESS_MAX + 1])
{
	struct span a = addr_strip(s, n);
	if (!addr_valid(a.p, a.n))
		return false;
	memcpy(out, a.p, a.n);
	out[a.n] = '\0';
	return true;
}

/*
 * Recognizes a line that names a failed recipient (trimmed line l): "<addr>", "<addr>: text",
 * "<addr>... text" (Postfix, qmail, Yahoo, Sendmail), "addr" or "addr:" alone (Exim, GMX,
 * Exchange), "addr... text", "addr on DATE" (Exchange 2003), "Final-Recipient: rfc822; addr",
 * and sentences with a lead-in
 * ("wasn't delivered to addr because"). Sets addr and, in rest, the text that follows on the
 * line (the whole line for sentences).
 */
static bool line_address(struct span l, char addr[BOUNCE_ADDRESS_MAX + 1], struct span *rest)
{
	*rest = (struct span){l.p + l.n, 0};
	if (starts_with(l.p, l.n, "final-recipient:")) {
		addr_from_value(l.p + 16, l.n - 16, addr);
		return addr[0] != '\0';
	}
	if (l.n > 0 && l.p[0] == '<') {
		const char *gt = memchr(l.p, '>', l.n);
		if (gt == NULL || !addr_take(l.p + 1, (size_t)(gt - l.p - 1), addr))
			return false;
		struct span r = trim(gt + 1, l.n - (size_t)(gt + 1 - l.p));
		while (r.n > 0 && (r.p[0] == ':' || r.p[0] == '.' || r.p[0] == ' ')) {
			r.p++;
			r.n--;
		}
		*rest = r;
		return true;
	}
	size_t w = 0;
	while (w < l.n && !is_space(l.p[w]))
		w++;
	const char *dots = NULL;
	for (size_t i = 0; i + 3 <= w && dots == NULL; i++)
		if (memcmp(l.p + i, "...", 3) == 0)
			dots = l.p + i;
	size_t tok = dots != NULL ? (size_t)(dots - l.p) : w;
	bool colon = dots == NULL && tok > 0 && l.p[tok - 1] == ':';
	bool on_date = w < l.n && starts_with(l.p + w, l.n - w, " on "); /* Exchange 2003 */
	if ((w == l.n || dots != NULL || colon || on_date) && addr_take(l.p, tok, addr)) {
		size_t skip = dots != NULL ? tok + 3 : w;
		*rest = trim(l.p + skip, l.n - skip);
		return true;
	}
	for (size_t k = 0; k < sizeof lead_ins / sizeof lead_ins[0]; k++) {
		size_t kl = strlen(lead_ins[k]);
		for (size_t i = 0; kl <= l.n && i <= l.n - kl; i++) {
			if (strncasecmp(l.p + i, lead_ins[k], kl) != 0)
				continue;
			size_t s = i + kl, e = s;
			while (e < l.n && !is_space(l.p[e]))
				e++;
			if (addr_take(l.p + s, e - s, addr)) {
				*rest = l;
				return true;
			}
		}
	}
	return false;
}

/* Moves p's diagnostic to start at the reply found in it, when one is. */
static void diagnostic_focus(struct bounce_recipient *p)
{
	int code;
	char enh[SMTP_ENHANCED_MAX + 1];
	size_t n = strlen(p->diagnostic);
	size_t off = bounce_reply_find(p->diagnostic, n, &code, enh);
	if (off < n && off > 0 && code != 0)
		memmove(p->diagnostic, p->diagnostic + off, n - off + 1);
}

/* Whether a header section starts at the line l: "Name: value" with a field name of
 * printable octets and no space (RFC 5322 2.2). */
static bool header_line(struct span l)
{
	size_t i = 0;
	while (i < l.n && l.p[i] > ' ' && l.p[i] < 127 && l.p[i] != ':')
		i++;
	return i > 0 && i < l.n && l.p[i] == ':';
}

/*
 * Reads recipients and their diagnostics from the human-readable text t[0..n). With create,
 * addresses found become recipients; without, only recipients that had no diagnostic get one
 * (a DSN without Diagnostic-Code). Stops at the copy of the original message, whose header
 * section is read when the report has none yet.
 */
static void text_scan(struct ctx *c, const char *t, size_t n, bool create)
{
	struct bounce_report *r = c->out;
	bool fill[BOUNCE_PARSE_RCPTS_MAX];
	for (size_t i = 0; i < BOUNCE_PARSE_RCPTS_MAX; i++)
		fill[i] = create || (i < r->recipient_count && r->recipients[i].diagnostic[0] == 0);
	if (n > BOUNCE_PARSE_TEXT_MAX) {
		n = BOUNCE_PARSE_TEXT_MAX;
		r->truncated = true;
	}
	struct bounce_recipient *cur = NULL;
	size_t pos = 0;
	while (pos < n) {
		size_t next, ln = line_at(t, n, pos, &next);
		struct span l = trim(t + pos, ln);
		char addr[BOUNCE_ADDRESS_MAX + 1];
		struct span rest;
		if (stop_marker(l) || (ln > 0 && (starts_with(t + pos, ln, "received: ") ||
		                                  starts_with(t + pos, ln, "return-path: ")))) {
			size_t h = stop_marker(l) ? next : pos;
			while (h < n) { /* blank lines before the quoted header */
				size_t nx, hl = line_at(t, n, h, &nx);
				if (trim(t + h, hl).n > 0)
					break;
				h = nx;
			}
			size_t nx, hl = h < n ? line_at(t, n, h, &nx) : 0;
			if (h < n && header_line((struct span){t + h, hl})) {
				size_t oh, ob;
				entity_split(c, t + h, n - h, &oh, &ob);
				original_parse(c, t + h, oh);
			}
			break;
		}
		if (line_address(l, addr, &rest)) {
			cur = NULL;
			for (size_t i = 0; i < r->recipient_count; i++)
				if (strcasecmp(r->recipients[i].address, addr) == 0)
					cur = &r->recipients[i];
			if (cur == NULL && create)
				cur = rcpt_get(c, addr);
			if (cur != NULL && !fill[cur - r->recipients])
				cur = NULL;
			l = rest;
		}
		if (cur != NULL && l.n > 0) {
			size_t dl = strlen(cur->diagnostic);
			fold_append(cur->diagnostic, &dl, sizeof cur->diagnostic, l.p, l.n);
		}
		pos = next;
	}
	for (size_t i = 0; i < r->recipient_count; i++)
		if (fill[i])
			diagnostic_focus(&r->recipients[i]);
}

/* The diagnostic of a bounce that names no recipient: the paragraph holding the first reply
 * found in the text (up to its empty line), from that reply on. */
static void text_first_reply(const char *t, size_t n, struct bounce_recipient *p)
{
	if (n > BOUNCE_PARSE_TEXT_MAX)
		n = BOUNCE_PARSE_TEXT_MAX;
	size_t pos = 0, dl = 0;
	bool found = false;
	while (pos < n) {
		size_t next, ln = line_at(t, n, pos, &next);
		struct span l = trim(t + pos, ln);
		if (stop_marker(l) || (found && l.n == 0))
			break;
		int code;
		char enh[SMTP_ENHANCED_MAX + 1];
		if (!found && l.n > 0) {
			size_t off = bounce_reply_find(l.p, l.n, &code, enh);
			if (off < l.n && (code != 0 || enh[0] != '\0')) {
				found = true;
				l.p += off;
				l.n -= off;
			}
		}
		if (found)
			fold_append(p->diagnostic, &dl, sizeof p->diagnostic, l.p, l.n);
		pos = next;
	}
}

/* ---- what kind of message ---- */

static const char *const bounce_subjects[] = {
    "undelivered mail returned to sender",
    "undeliverable",
    "undelivered mail",
    "mail delivery failed",
    "failure notice",
    "delivery status notification",
    "returned mail",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "delivery notification",
    "mail delivery subsystem",
    "nondeliverable",
    "non-deliverable",
    "non-delivery",
    "not delivered",
    "could not be delivered",
    "warning: could not send message",
    "delayed mail",
    "mail system error",
    "message delivery failure",
    "returned to sender",
    "unzustellbar",
    "non remis",
    "onbestelbaar",
};

static const char *const daemon_senders[] = {
    "mailer-daemon@", "mailer_daemon@",    "mail-daemon@",   "maildaemon@",
    "postmaster@",    "microsoftexchange", "mail-delivery@", "mailerdaemon@",
};

static const char *const autoreply_subjects[] = {
    "out of office",
    "out of the office",
    "automatic reply",
    "auto:",
    "autoreply",
    "auto-reply",
    "auto reply",
    "automatische antwort",
    "abwesenheitsnotiz",
    "abwesend",
    "r\xc3\xa9ponse automatique",
    "respuesta autom\xc3\xa1tica",
    "risposta automatica",
    "on vacation",
    "vacation reply",
    "away from the office",
    "absence",
};

static bool any_in(const char *s, size_t n, const char *const *list, size_t count, bool prefix)
{
	for (size_t i = 0; i < count; i++)
		if (prefix ? starts_with(s, n, list[i]) : contains(s, n, list[i]))
			return true;
	return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum {
	TOP_FROM,
	TOP_SUBJECT,
	TOP_AUTO_SUBMITTED,
	TOP_X_AUTOREPLY,
	TOP_X_AUTORESPOND,
	TOP_PRECEDENCE,
	TOP_FAILED,
	TOP_FIELDS
};

static const char *const top_names[TOP_FIELDS] = {
    "From",          "Subject",    "Auto-Submitted",      "X-Autoreply",
    "X-Autorespond", "Precedence", "X-Failed-Recipients",
};

/* The top-level fields that decide the kind of a message that is no report. */
static void top_fields(struct ctx *c, const char *msg, size_t len)
{
	struct bounce_report *r = c->out;
	size_t hlen, body;
	entity_split(c, msg, len, &hlen, &body);
	struct span f[TOP_FIELDS];
	fields_scan(msg, hlen, top_names, TOP_FIELDS, f);
	if (f[TOP_FROM].p != NULL)
		addr_from_header(f[TOP_FROM].p, f[TOP_FROM].n, r->from);
	char raw[SUBJECT_RAW_MAX];
	size_t sl = field_copy(f[TOP_SUBJECT], raw, sizeof raw);
	char subject[SUBJECT_RAW_MAX];
	words_decode(raw, sl, subject, sizeof subject);
	fold_copy(subject, strlen(subject), r->subject, sizeof r->subject);
	field_copy(f[TOP_AUTO_SUBMITTED], c->auto_submitted, sizeof c->auto_submitted);
	lowercase(c->auto_submitted);
	field_copy(f[TOP_PRECEDENCE], c->precedence, sizeof c->precedence);
	lowercase(c->precedence);
	c->autoreply_header = f[TOP_X_AUTOREPLY].p != NULL || f[TOP_X_AUTORESPOND].p != NULL;
	c->failed_recipients = f[TOP_FAILED];
}

static bool looks_bounce(const struct ctx *c)
{
	const struct bounce_report *r = c->out;
	size_t fl = strlen(r->from), sl = strlen(r->subject);
	return any_in(r->from, fl, daemon_senders, COUNT(daemon_senders), true) ||
	       any_in(r->subject, sl, bounce_subjects, COUNT(bounce_subjects), false) ||
	       c->failed_recipients.p != NULL;
}

static bool looks_autoreply(const struct ctx *c)
{
	const struct bounce_report *r = c->out;
	return starts_with(c->auto_submitted, strlen(c->auto_submitted), "auto-replied") ||
	       c->autoreply_header || strcmp(c->precedence, "auto_reply") == 0 ||
	       any_in(r->subject, strlen(r->subject), autoreply_subjects, COUNT(autoreply_subjects),
	              true);
}

/* X-Failed-Recipients (Exim): comma-separated addresses. */
static void failed_recipients_add(struct ctx *c)
{
	char buf[DIAG_RAW_MAX];
	size_t n = field_copy(c->failed_recipients, buf, sizeof buf), start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && buf[i] != ',')
			continue;
		char addr[BOUNCE_ADDRESS_MAX + 1];
		if (addr_take(buf + start, i - start, addr))
			rcpt_get(c, addr);
		start = i + 1;
	}
}

static void report_decide(struct ctx *c, const char *msg, size_t len)
{
	struct bounce_report *r = c->out;
	struct span text = c->text.p != NULL ? c->text : (struct span){msg, 0};
	if (c->dsn) {
		r->kind = BOUNCE_KIND_DSN;
		text_scan(c, text.p, text.n, r->recipient_count == 0);
	} else if (c->arf) {
		r->kind = BOUNCE_KIND_ARF;
		const char *to = c->arf_rcpt_to[0] != '\0' ? c->arf_rcpt_to : c->original_to;
		struct bounce_recipient *p = rcpt_get(c, to);
		if (p != NULL) {
			bool ignore = strcmp(r->feedback_type, "not-spam") == 0 ||
			              strcmp(r->feedback_type, "auth-failure") == 0;
			p->verdict = (struct bounce_verdict){
			    BOUNCE_REASON_FEEDBACK,
			    ignore ? BOUNCE_CLASS_IGNORE : BOUNCE_CLASS_COMPLAINT, "", 0};
		}
		return;
	} else if (looks_bounce(c)) {
		r->kind = BOUNCE_KIND_TEXT;
		if (c->failed_recipients.p != NULL)
			failed_recipients_add(c);
		text_scan(c, text.p, text.n, true);
		bool delay = contains(r->subject, strlen(r->subject), "delay") ||
		             contains(r->subject, strlen(r->subject), "warning");
		for (size_t i = 0; i < r->recipient_count; i++)
			memcpy(r->recipients[i].action, delay ? "delayed" : "failed",
			       delay ? 8 : 7);
	} else if (looks_autoreply(c)) {
		r->kind = BOUNCE_KIND_AUTOREPLY;
		struct bounce_recipient *p = rcpt_get(c, r->from);
		if (p != NULL)
			p->verdict = (struct bounce_verdict){BOUNCE_REASON_VACATION,
			                                     BOUNCE_CLASS_IGNORE, "", 0};
		return;
	} else {
		r->kind = BOUNCE_KIND_NOTBOUNCE;
		return;
	}
	if (r->recipient_count == 0) {
		struct bounce_recipient *p = rcpt_get(c, "");
		if (p != NULL)
			memcpy(p->action, "failed", 7);
	}
	struct bounce_recipient fallback; /* the text's first reply, found once when needed */
	bool fallback_done = false;
	for (size_t i = 0; i < r->recipient_count; i++) {
		struct bounce_recipient *p = &r->recipients[i];
		if (p->diagnostic[0] == '\0') {
			if (!fallback_done) {
				fallback.diagnostic[0] = '\0';
				text_first_reply(text.p, text.n, &fallback);
				fallback_done = true;
			}
			memcpy(p->diagnostic, fallback.diagnostic, strlen(fallback.diagnostic) + 1);
		}
		rcpt_classify(c, p);
	}
}

enum bounce_parse_status bounce_parse(const struct bounce_rules *rules, const char *msg, size_t len,
                                      struct bounce_report *out)
{
	struct ctx c;
	memset(&c, 0, sizeof c);
	memset(out, 0, sizeof *out);
	c.rules = rules;
	c.out = out;
	c.status = BOUNCE_PARSE_OK;
	if (len > BOUNCE_PARSE_INPUT_MAX) {
		len = BOUNCE_PARSE_INPUT_MAX;
		out->truncated = true;
	}
	c.decode_budget = 2 * len;
	top_fields(&c, msg, len);
	entity_walk(&c, msg, len, 0);
	report_decide(&c, msg, len);
	for (size_t i = 0; i < c.buffer_count; i++)
		free(c.buffers[i]);
	return c.status;
}

const char *bounce_kind_name(enum bounce_kind k)
{
	switch (k) {
	case BOUNCE_KIND_NOTBOUNCE:
		return "notbounce";
	case BOUNCE_KIND_DSN:
		return "dsn";
	case BOUNCE_KIND_ARF:
		return "arf";
	case BOUNCE_KIND_AUTOREPLY:
		return "autoreply";
	case BOUNCE_KIND_TEXT:
		return "text";
	}
	return "notbounce";
}
