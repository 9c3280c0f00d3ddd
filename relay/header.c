/*
 * header.c: pure parsers for a message header section (field iterator with folding) and for
 * address lists in header field values (contracts in header.h). Owns no state beyond the
 * caller's struct header_iter; does no I/O and no logging.
 *
 * RFCs: RFC 5322 (2.2 header fields and ftext, 2.2.3 folding, 3.2.1-3.2.5 quoted-pair, FWS,
 * comments, atoms and quoted strings, 3.4 and 3.4.1 address specification, 4.4 obsolete
 * addressing: obs-phrase, obs-route, obs-local-part, obs-domain, empty list elements),
 * RFC 6532 3.2 (UTF-8 in atext, qtext, ctext, dtext and quoted pairs), RFC 3629 (well-formed
 * UTF-8), RFC 5321 4.5.3.1 (the sizes of struct header_address).
 *
 * Choices, so that a reader does not have to guess:
 *   - Field names are strict: "Name :" (obsolete WSP before the colon, RFC 5322 4.5) is
 *     HEADER_MALFORMED; so is a bare CR or LF anywhere in the header section.
 *   - Address lists: CFWS between tokens is dropped, so "john . doe @ example . com" gives
 *     "john.doe@example.com"; CRLF inside a quoted string or domain literal is dropped (the
 *     unfolding of RFC 5322 2.2.3), other octets of a quoted local part are kept as written.
 *   - Control octets are refused everywhere (obs-NO-WS-CTL is not accepted), NUL included.
 *   - An address whose local part is over 64 octets, domain over 255, or "local@domain" over
 *     254 does not fit the SMTP limits and is HEADER_ADDR_SYNTAX.
 *   - A value with no address and no group (empty, or only commas and comments) is
 *     HEADER_ADDR_SYNTAX. A group without its ";" is HEADER_ADDR_SYNTAX.
 *   - With more than max addresses the whole value is still checked: HEADER_ADDR_SYNTAX wins,
 *     else HEADER_ADDR_TOO_MANY with the first max addresses filled and *count == max.
 *   - Comments may nest HEADER_COMMENT_DEPTH_MAX deep (counted, not recursed).
 */
#include "relay/header.h"

#include <string.h>

#define HEADER_COMMENT_DEPTH_MAX 32

/* ---- field iterator ---- */

void header_iter_init(struct header_iter *it, const char *msg, size_t len)
{
	it->msg = msg;
	it->len = len;
	it->pos = 0;
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Finds the CRLF ending the line that goes on at msg[from]. Returns true with *cr at the CR,
 * or false when a bare CR or LF comes first or the input ends without CRLF.
 */
static bool line_end_find(const char *msg, size_t len, size_t from, size_t *cr)
{
	for (size_t i = from; i < len; i++) {
		if (msg[i] == '\n')
			return false;
		if (msg[i] == '\r') {
			if (i + 1 < len && msg[i + 1] == '\n') {
				*cr = i;
				return true;
			}
			return false;
		}
	}
	return false;
}

enum header_status header_next(struct header_iter *it, struct header_field *out)
{
	const char *m = it->msg;
	size_t len = it->len;
	size_t pos = it->pos;

	/* The iterator stays on the empty line (or a malformed one): calls repeat the answer. */
	if (pos >= len)
		return HEADER_END;
	if (m[pos] == '\r') {
		if (pos + 1 < len && m[pos + 1] == '\n')
			return HEADER_END;
		return HEADER_MALFORMED;
	}
	if (is_wsp(m[pos]))
		return HEADER_MALFORMED; /* a continuation with no field before it */

	/* field-name = 1*ftext, ftext = %d33-57 / %d59-126 */
	size_t colon = pos;
	while (colon < len && m[colon] != ':') {
		unsigned char c = (unsigned char)m[colon];
		if (c < 33 || c > 126)
			return HEADER_MALFORMED;
		colon++;
	}
	if (colon == len || colon == pos)
		return HEADER_MALFORMED;

	size_t cr;
	size_t next = colon + 1;
	for (;;) {
		if (!line_end_find(m, len, next, &cr))
			return HEADER_MALFORMED;
		next = cr + 2;
		if (next < len && is_wsp(m[next]))
			continue; /* folded: the field goes on */
		break;
	}
	out->name = m + pos;
	out->name_len = colon - pos;
	out->value = m + colon + 1;
	out->value_len = cr - (colon + 1);
	out->offset = pos;
	out->length = next - pos;
	it->pos = next;
	return HEADER_FIELD;
}

size_t header_body_offset(const struct header_iter *it)
{
	if (it->pos + 1 < it->len && it->msg[it->pos] == '\r' && it->msg[it->pos + 1] == '\n')
		return it->pos + 2;
	return it->pos < it->len ? it->pos : it->len;
}

bool header_name_is(const struct header_field *f, const char *name)
{
	size_t n = strlen(name);

	if (n != f->name_len)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)f->name[i];
		unsigned char b = (unsigned char)name[i];
		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a + ('a' - 'A'));
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b + ('a' - 'A'));
		if (a != b)
			return false;
	}
	return true;
}

/* ---- address lists: tokenizer ---- */

static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

enum token_type {
	TOKEN_END,
	TOKEN_ERROR,
	TOKEN_ATOM,    /* 1*atext */
	TOKEN_QUOTED,  /* quoted-string, quotes included */
	TOKEN_LITERAL, /* domain-literal, brackets included */
	TOKEN_SPECIAL, /* one of . @ , : ; < > */
};

struct token {
	enum token_type type;
	size_t start; /* the token is value[start..end) */
	size_t end;
};

struct addr_parser {
	const char *s;
	size_t len;
	size_t pos;       /* after tok */
	struct token tok; /* the lookahead */
};

/* Where the parsed addresses go. */
struct addr_sink {
	struct header_address *list;
	size_t max;
	size_t count; /* addresses seen, may exceed max */
};

/*
 * Steps over one element that may appear inside comments, quoted strings and domain literals
 * besides their own text: WSP, folding (CRLF WSP), a quoted-pair, a UTF-8 sequence or a
 * printable ASCII octet. Returns the octets taken, 0 on a syntax error.
 */
static size_t text_element(const char *s, size_t len, size_t pos)
{
	unsigned char c = (unsigned char)s[pos];

	if (c == ' ' || c == '\t')
		return 1;
	if (c == '\r') {
		if (pos + 2 < len && s[pos + 1] == '\n' && is_wsp(s[pos + 2]))
			return 2; /* the WSP is taken as the next element */
		return 0;
	}
	if (c == '\\') {
		/* quoted-pair = "\" (VCHAR / WSP), VCHAR extended by RFC 6532 */
		if (pos + 1 >= len)
			return 0;
		unsigned char d = (unsigned char)s[pos + 1];
		if (d == ' ' || d == '\t' || (d >= 33 && d <= 126))
			return 2;
		if (d >= 0x80) {
			size_t n = smtp_utf8_sequence_len(s + pos + 1, len - pos - 1);
			return n == 0 ? 0 : n + 1;
		}
		return 0;
	}
	if (c >= 0x80)
		return smtp_utf8_sequence_len(s + pos, len - pos);
	if (c >= 33 && c <= 126)
		return 1;
	return 0;
}

/* Skips a comment at s[*pos] == '(', nested comments included. */
static bool comment_skip(const char *s, size_t len, size_t *pos)
{
	size_t p = *pos;
	unsigned depth = 0;

	while (p < len) {
		if (s[p] == '(') {
			if (++depth > HEADER_COMMENT_DEPTH_MAX)
				return false;
			p++;
		} else if (s[p] == ')') {
			p++;
			if (--depth == 0) {
				*pos = p;
				return true;
			}
		} else {
			size_t n = text_element(s, len, p);
			if (n == 0)
				return false;
			p += n;
		}
	}
	return false;
}

/* Skips CFWS: WSP, folding and comments. False on a malformed comment or line end. */
static bool cfws_skip(const char *s, size_t len, size_t *pos)
{
	size_t p = *pos;

	while (p < len) {
		if (is_wsp(s[p])) {
			p++;
		} else if (s[p] == '\r') {
			if (!(p + 2 < len && s[p + 1] == '\n' && is_wsp(s[p + 2])))
				return false;
			p += 2;
		} else if (s[p] == '(') {
			if (!comment_skip(s, len, &p))
				return false;
		} else {
			break;
		}
	}
	*pos = p;
	return true;
}

/* A quoted string (closer '"') or domain literal (closer ']') starting at s[*pos]. */
static bool delimited_skip(const char *s, size_t len, size_t *pos, char closer)
{
	size_t p = *pos + 1;

	while (p < len) {
		char c = s[p];
		if (c == closer) {
			*pos = p + 1;
			return true;
		}
		/* dtext excludes "[", "]" and "\" (obs-dtext allows quoted-pair); qtext excludes
		 * DQUOTE and "\" (the quoted-pair is taken by text_element). */
		if (closer == ']' && c == '[')
			return false;
		size_t n = text_element(s, len, p);
		if (n == 0)
			return false;
		p += n;
	}
	return false;
}

static void token_next(struct addr_parser *p)
{
	const char *s = p->s;
	size_t pos = p->pos;
	struct token t = {TOKEN_ERROR, pos, pos};

	if (!cfws_skip(s, p->len, &pos)) {
		p->tok = t;
		return;
	}
	t.start = pos;
	if (pos == p->len) {
		t.type = TOKEN_END;
	} else if (is_atext((unsigned char)s[pos]) || (unsigned char)s[pos] >= 0x80) {
		while (pos < p->len) {
			unsigned char c = (unsigned char)s[pos];
			if (c >= 0x80) {
				size_t n = smtp_utf8_sequence_len(s + pos, p->len - pos);
				if (n == 0)
					break;
				pos += n;
			} else if (is_atext(c)) {
				pos++;
			} else {
				break;
			}
		}
		/* An atom stopped by a malformed UTF-8 octet is an error, not two tokens. */
		if (pos < p->len && (unsigned char)s[pos] >= 0x80)
			t.type = TOKEN_ERROR;
		else
			t.type = TOKEN_ATOM;
	} else if (s[pos] == '"') {
		t.type = delimited_skip(s, p->len, &pos, '"') ? TOKEN_QUOTED : TOKEN_ERROR;
	} else if (s[pos] == '[') {
		t.type = delimited_skip(s, p->len, &pos, ']') ? TOKEN_LITERAL : TOKEN_ERROR;
	} else if (strchr(".@,:;<>", s[pos]) != NULL && s[pos] != '\0') {
		t.type = TOKEN_SPECIAL;
		pos++;
	}
	t.end = pos;
	p->tok = t;
	/* An error token stops the parse: no parser rule accepts it, so pos need not move. */
	p->pos = pos;
}

static bool token_is(const struct addr_parser *p, char special)
{
	return p->tok.type == TOKEN_SPECIAL && p->s[p->tok.start] == special;
}

static bool token_is_word(const struct addr_parser *p)
{
	return p->tok.type == TOKEN_ATOM || p->tok.type == TOKEN_QUOTED;
}

/* ---- address lists: parser ---- */

/* Text being assembled with a bound. */
struct text {
	char *data;
	size_t len;
	size_t max;
	bool overflow;
};

/* Appends the current token's text, dropping CR and LF (only folds remain there). */
static void text_add_token(struct text *t, const struct addr_parser *p)
{
	for (size_t i = p->tok.start; i < p->tok.end; i++) {
		if (p->s[i] == '\r' || p->s[i] == '\n')
			continue;
		if (t->len >= t->max) {
			t->overflow = true;
			return;
		}
		t->data[t->len++] = p->s[i];
	}
}

/* domain = dot-atom / domain-literal / obs-domain; appended to t when t is not NULL. */
static bool domain_parse(struct addr_parser *p, struct text *t)
{
	if (p->tok.type == TOKEN_LITERAL) {
		if (t != NULL)
			text_add_token(t, p);
		token_next(p);
		return true;
	}
	for (;;) {
		if (p->tok.type != TOKEN_ATOM)
			return false;
		if (t != NULL)
			text_add_token(t, p);
		token_next(p);
		if (!token_is(p, '.'))
			return true;
		if (t != NULL)
			text_add_token(t, p);
		token_next(p);
	}
}

/* addr-spec = local-part "@" domain, stored in the sink. */
static enum header_addr_status addr_spec_parse(struct addr_parser *p, struct addr_sink *sink)
{
	char local[SMTP_LOCAL_MAX + 1];
	char domain[SMTP_DOMAIN_MAX + 1];
	struct text lt = {local, 0, SMTP_LOCAL_MAX, false};
	struct text dt = {domain, 0, SMTP_DOMAIN_MAX, false};

	/* local-part = word *("." word) covers dot-atom, quoted-string and obs-local-part */
	for (;;) {
		if (!token_is_word(p))
			return HEADER_ADDR_SYNTAX;
		text_add_token(&lt, p);
		token_next(p);
		if (!token_is(p, '.'))
			break;
		text_add_token(&lt, p);
		token_next(p);
	}
	if (!token_is(p, '@'))
		return HEADER_ADDR_SYNTAX;
	token_next(p);
	if (!domain_parse(p, &dt))
		return HEADER_ADDR_SYNTAX;
	if (lt.overflow || dt.overflow || lt.len + 1 + dt.len > SMTP_PATH_MAX - 2)
		return HEADER_ADDR_SYNTAX;

	if (sink->count < sink->max) {
		struct header_address *a = &sink->list[sink->count];
		memcpy(a->addr, local, lt.len);
		a->addr[lt.len] = '@';
		memcpy(a->addr + lt.len + 1, domain, dt.len);
		a->addr[lt.len + 1 + dt.len] = '\0';
		a->local_len = lt.len;
		for (size_t i = 0; i < dt.len; i++) {
			char c = domain[i];
			a->domain_lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
		}
		a->domain_lower[dt.len] = '\0';
	}
	sink->count++;
	return HEADER_ADDR_OK;
}

/* angle-addr = "<" [obs-route] addr-spec ">", the lookahead being "<". */
static enum header_addr_status angle_addr_parse(struct addr_parser *p, struct addr_sink *sink)
{
	token_next(p);
	if (token_is(p, '@') || token_is(p, ',')) {
		/* obs-route = *("," / CFWS) "@" domain *("," [CFWS] ["@" domain]) ":" */
		while (token_is(p, ','))
			token_next(p);
		if (!token_is(p, '@'))
			return HEADER_ADDR_SYNTAX;
		token_next(p);
		if (!domain_parse(p, NULL))
			return HEADER_ADDR_SYNTAX;
		while (token_is(p, ',')) {
			token_next(p);
			if (token_is(p, '@')) {
				token_next(p);
				if (!domain_parse(p, NULL))
					return HEADER_ADDR_SYNTAX;
			}
		}
		if (!token_is(p, ':'))
			return HEADER_ADDR_SYNTAX;
		token_next(p);
	}
	enum header_addr_status st = addr_spec_parse(p, sink);
	if (st != HEADER_ADDR_OK)
		return st;
	if (!token_is(p, '>'))
		return HEADER_ADDR_SYNTAX;
	token_next(p);
	return HEADER_ADDR_OK;
}

static enum header_addr_status address_parse(struct addr_parser *p, struct addr_sink *sink,
                                             bool group_allowed);

/* group-list after "display-name :", up to and including ";" (obs-group-list included). */
static enum header_addr_status group_parse(struct addr_parser *p, struct addr_sink *sink)
{
	bool need_separator = false;

	for (;;) {
		if (token_is(p, ';')) {
			token_next(p);
			return HEADER_ADDR_OK;
		}
		if (token_is(p, ',')) {
			need_separator = false;
			token_next(p);
			continue;
		}
		if (need_separator)
			return HEADER_ADDR_SYNTAX;
		enum header_addr_status st = address_parse(p, sink, false);
		if (st != HEADER_ADDR_OK)
			return st;
		need_separator = true;
	}
}

/*
 * address = mailbox / group. Scans the leading words to tell a display name (before "<" or
 * ":") from a local part (before "@"), then rewinds for the latter.
 */
static enum header_addr_status address_parse(struct addr_parser *p, struct addr_sink *sink,
                                             bool group_allowed)
{
	struct addr_parser start = *p;
	size_t words = 0;
	bool leading_dot = token_is(p, '.');

	/* phrase = 1*word / obs-phrase (word *(word / "." / CFWS)) */
	while (token_is_word(p) || token_is(p, '.')) {
		words++;
		token_next(p);
	}
	if (token_is(p, '<')) {
		if (leading_dot)
			return HEADER_ADDR_SYNTAX;
		return angle_addr_parse(p, sink);
	}
	if (token_is(p, ':')) {
		if (!group_allowed || words == 0 || leading_dot)
			return HEADER_ADDR_SYNTAX;
		token_next(p);
		return group_parse(p, sink);
	}
	if (token_is(p, '@')) {
		*p = start;
		return addr_spec_parse(p, sink);
	}
	return HEADER_ADDR_SYNTAX;
}

enum header_addr_status header_addresses_parse(const char *value, size_t len,
                                               struct header_address *out, size_t max,
                                               size_t *count)
{
	struct addr_parser p = {value, len, 0, {TOKEN_END, 0, 0}};
	struct addr_sink sink = {out, max, 0};
	bool any = false;

	*count = 0;
	token_next(&p);
	/* address-list with obs-addr-list's empty elements: *([CFWS] ",") address ... */
	for (;;) {
		if (p.tok.type == TOKEN_END)
			break;
		if (token_is(&p, ',')) {
			token_next(&p);
			continue;
		}
		enum header_addr_status st = address_parse(&p, &sink, true);
		if (st != HEADER_ADDR_OK)
			return st;
		any = true;
		if (p.tok.type == TOKEN_END)
			break;
		if (!token_is(&p, ','))
			return HEADER_ADDR_SYNTAX;
	}
	if (!any)
		return HEADER_ADDR_SYNTAX;
	if (sink.count > max) {
		*count = max;
		return HEADER_ADDR_TOO_MANY;
	}
	*count = sink.count;
	return HEADER_ADDR_OK;
}
