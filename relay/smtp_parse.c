/*
 * smtp_parse.c: pure parsers for SMTP command lines, MAIL/RCPT paths with their ESMTP
 * parameters, and the HELO/EHLO argument (contracts in smtp_parse.h). Owns no state, does no
 * I/O and no logging: bytes in, caller-owned struct out.
 *
 * RFCs: RFC 5321 (4.1.1 command syntax, 4.1.2 Path/Mailbox/Local-part/Domain grammar, 4.1.3
 * address literals, 4.5.3.1 size limits), RFC 1870 (SIZE), RFC 6152 (BODY=8BITMIME),
 * RFC 6531 (SMTPUTF8: UTF-8 in atoms, quoted strings and domain labels), RFC 3629 (well-formed
 * UTF-8), RFC 4954 (AUTH= with RFC 3461 xtext), RFC 1035 2.3.4 (63-octet labels).
 *
 * Choices beyond the RFC text, so that a reader does not have to guess:
 *   - CR, LF and NUL anywhere in a command line, and any control octet (0..31, 127) in a
 *     MAIL/RCPT argument, give SMTP_PARSE_SYNTAX (SMTP smuggling and log injection).
 *   - Only a recognized verb followed by something other than SP is SMTP_PARSE_SYNTAX; any
 *     other first word is SMTP_VERB_UNKNOWN (500 command unrecognized).
 *   - Several SP after the verb are skipped; trailing SP/HTAB are trimmed from the argument.
 *   - General address literals ("[tag:...]") other than IPv6 are refused: none is registered.
 *   - An all-ASCII domain label longer than 63 octets is a bad path (it cannot exist in DNS);
 *     U-labels are not measured (their A-label length needs Punycode).
 *   - AUTH= xtext accepts lowercase hex after "+" (the value is ignored anyway).
 */
#include "relay/smtp_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define SMTP_VERB_LEN_MAX    16 /* longer first words are unknown verbs, not looked up */
#define SMTP_SIZE_DIGITS_MAX 20 /* UINT64_MAX has 20 digits */
#define SMTP_LABEL_MAX       63 /* RFC 1035 2.3.4 */
#define SMTP_IPV6_TEXT_MAX   63 /* longer text after "IPv6:" cannot be an address */

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
    {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO},         {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA},         {"BDAT", SMTP_VERB_BDAT},
    {"RSET", SMTP_VERB_RSET}, {"NOOP", SMTP_VERB_NOOP},         {"QUIT", SMTP_VERB_QUIT},
    {"VRFY", SMTP_VERB_VRFY}, {"EXPN", SMTP_VERB_EXPN},         {"HELP", SMTP_VERB_HELP},
    {"AUTH", SMTP_VERB_AUTH}, {"STARTTLS", SMTP_VERB_STARTTLS},
};

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned char to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* True when s[0..n) equals the NUL-terminated ASCII literal, ignoring ASCII case. */
static bool equal_nocase(const char *s, size_t n, const char *literal)
{
	size_t i;
	for (i = 0; i < n; i++) {
		if (literal[i] == '\0' ||
		    to_lower((unsigned char)s[i]) != to_lower((unsigned char)literal[i]))
			return false;
	}
	return literal[i] == '\0';
}

/* True when s[0..n) starts with the NUL-terminated ASCII literal, ignoring ASCII case. */
static bool prefix_nocase(const char *s, size_t n, const char *literal)
{
	size_t want = strlen(literal);
	return n >= want && equal_nocase(s, want, literal);
}

/*
 * Length of the well-formed UTF-8 sequence of a non-ASCII lead octet at s[0] (RFC 3629 table
 * of section 4: no overlongs, no surrogates, nothing above U+10FFFF), or 0 when malformed or
 * cut by the end of the input.
 */
size_t smtp_utf8_sequence_len(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (n == 0)
		return 0;
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		len = 2;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		len = 3;
		if (u[0] == 0xe0)
			lo = 0xa0;
		else if (u[0] == 0xed)
			hi = 0x9f;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		len = 4;
		if (u[0] == 0xf0)
			lo = 0x90;
		else if (u[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || u[1] < lo || u[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if (u[i] < 0x80 || u[i] > 0xbf)
			return 0;
	}
	return len;
}

/* RFC 5322 atext without its RFC 6531 UTF-8 extension (handled by the callers). */
static bool is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Dot-string = Atom *("." Atom); on success *pos is after it. */
static bool scan_dot_string(const char *s, size_t len, size_t *pos, bool *non_ascii)
{
	size_t p = *pos;

	for (;;) {
		size_t atom_start = p;
		while (p < len) {
			unsigned char c = (unsigned char)s[p];
			if (c >= 0x80) {
				size_t n = smtp_utf8_sequence_len(s + p, len - p);
				if (n == 0)
					return false;
				*non_ascii = true;
				p += n;
			} else if (is_atext(c)) {
				p++;
			} else {
				break;
			}
		}
		if (p == atom_start)
			return false;
		if (p < len && s[p] == '.') {
			p++;
			continue;
		}
		break;
	}
	*pos = p;
	return true;
}

/* Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE, s[*pos] being the DQUOTE. */
static bool scan_quoted_string(const char *s, size_t len, size_t *pos, bool *non_ascii)
{
	size_t p = *pos + 1;

	while (p < len) {
		unsigned char c = (unsigned char)s[p];
		if (c == '"') {
			*pos = p + 1;
			return true;
		}
		if (c == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (p + 1 >= len || (unsigned char)s[p + 1] < 32 ||
			    (unsigned char)s[p + 1] > 126)
				return false;
			p += 2;
		} else if (c >= 0x80) {
			size_t n = smtp_utf8_sequence_len(s + p, len - p);
			if (n == 0)
				return false;
			*non_ascii = true;
			p += n;
		} else if (c >= 32 && c <= 126) {
			p++;
		} else {
			return false;
		}
	}
	return false;
}

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str] or a U-label.
 * Returns SMTP_PARSE_OK with *pos after the domain, or SMTP_PARSE_BAD_PATH.
 */
static enum smtp_parse_status scan_domain(const char *s, size_t len, size_t *pos, bool *non_ascii)
{
	size_t p = *pos;

	for (;;) {
		size_t label_start = p;
		bool label_ascii = true;
		bool last_hyphen = false;
		while (p < len) {
			unsigned char c = (unsigned char)s[p];
			if (c >= 0x80) {
				size_t n = smtp_utf8_sequence_len(s + p, len - p);
				if (n == 0)
					return SMTP_PARSE_BAD_PATH;
				label_ascii = false;
				*non_ascii = true;
				last_hyphen = false;
				p += n;
			} else if (is_alpha(c) || is_digit(c)) {
				last_hyphen = false;
				p++;
			} else if (c == '-') {
				if (p == label_start)
					return SMTP_PARSE_BAD_PATH;
				last_hyphen = true;
				p++;
			} else {
				break;
			}
		}
		if (p == label_start || last_hyphen)
			return SMTP_PARSE_BAD_PATH;
		if (label_ascii && p - label_start > SMTP_LABEL_MAX)
			return SMTP_PARSE_BAD_PATH;
		if (p < len && s[p] == '.') {
			p++;
			continue;
		}
		break;
	}
	*pos = p;
	return SMTP_PARSE_OK;
}

/* IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT of value 0..255. */
static bool ipv4_literal_valid(const char *s, size_t n)
{
	size_t p = 0;

	for (int part = 0; part < 4; part++) {
		unsigned value = 0;
		size_t digits = 0;
		if (part > 0) {
			if (p >= n || s[p] != '.')
				return false;
			p++;
		}
		while (p < n && digits < 3 && is_digit((unsigned char)s[p])) {
			value = value * 10 + (unsigned)(s[p] - '0');
			digits++;
			p++;
		}
		if (digits == 0 || value > 255)
			return false;
	}
	return p == n;
}

/* IPv6-addr of RFC 5321 4.1.3, all four forms; inet_pton(3) is pure and strict enough. */
static bool ipv6_literal_valid(const char *s, size_t n)
{
	char text[SMTP_IPV6_TEXT_MAX + 1];
	struct in6_addr addr;

	if (n == 0 || n > SMTP_IPV6_TEXT_MAX)
		return false;
	memcpy(text, s, n);
	text[n] = '\0';
	return inet_pton(AF_INET6, text, &addr) == 1;
}

/* address-literal = "[" ( IPv4-address-literal / "IPv6:" IPv6-addr ) "]", s[*pos] being "[". */
static bool scan_address_literal(const char *s, size_t len, size_t *pos)
{
	size_t start = *pos + 1;
	const char *close = memchr(s + start, ']', len - start);

	if (close == NULL)
		return false;
	size_t n = (size_t)(close - (s + start));
	bool ok;
	if (prefix_nocase(s + start, n, "IPv6:"))
		ok = ipv6_literal_valid(s + start + 5, n - 5);
	else
		ok = ipv4_literal_valid(s + start, n);
	if (ok)
		*pos = start + n + 1;
	return ok;
}

/*
 * Path = "<" [ A-d-l ":" ] Mailbox ">" or "<>", starting at s[*pos]. The source route is
 * checked and dropped. rcpt allows "<postmaster>" without a domain. *route_non_ascii tells
 * whether the dropped route had UTF-8 (SMTPUTF8 is needed for it too).
 */
static enum smtp_parse_status parse_path(const char *s, size_t len, size_t *pos, bool rcpt,
                                         struct smtp_path *path, bool *route_non_ascii)
{
	size_t start = *pos;
	size_t p = start;
	bool had_route = false;
	bool non_ascii = false;
	bool postmaster = false;
	enum smtp_parse_status st;

	if (p >= len || s[p] != '<')
		return SMTP_PARSE_BAD_PATH;
	p++;
	if (p < len && s[p] == '>') {
		path->is_null = true;
		path->mailbox[0] = '\0';
		path->domain_lower[0] = '\0';
		*pos = p + 1;
		return SMTP_PARSE_OK;
	}
	if (p < len && s[p] == '@') {
		/* A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain */
		for (;;) {
			p++;
			st = scan_domain(s, len, &p, route_non_ascii);
			if (st != SMTP_PARSE_OK)
				return st;
			if (p < len && s[p] == ',') {
				p++;
				if (p >= len || s[p] != '@')
					return SMTP_PARSE_BAD_PATH;
				continue;
			}
			if (p < len && s[p] == ':') {
				p++;
				break;
			}
			return SMTP_PARSE_BAD_PATH;
		}
		had_route = true;
	}

	size_t local_start = p;
	if (p < len && s[p] == '"') {
		if (!scan_quoted_string(s, len, &p, &non_ascii))
			return SMTP_PARSE_BAD_PATH;
	} else if (!scan_dot_string(s, len, &p, &non_ascii)) {
		return SMTP_PARSE_BAD_PATH;
	}
	size_t local_len = p - local_start;

	size_t domain_start = p;
	if (rcpt && !had_route && p < len && s[p] == '>' &&
	    equal_nocase(s + local_start, local_len, "postmaster")) {
		/* RFC 5321 4.1.1.3: "<Postmaster>" needs no domain. */
		postmaster = true;
	} else {
		if (p >= len || s[p] != '@')
			return SMTP_PARSE_BAD_PATH;
		p++;
		domain_start = p;
		if (p < len && s[p] == '[') {
			if (!scan_address_literal(s, len, &p))
				return SMTP_PARSE_BAD_PATH;
		} else {
			st = scan_domain(s, len, &p, &non_ascii);
			if (st != SMTP_PARSE_OK)
				return st;
		}
		if (p >= len || s[p] != '>')
			return SMTP_PARSE_BAD_PATH;
	}
	size_t domain_len = p - domain_start;
	p++; /* the ">" */

	if (local_len > SMTP_LOCAL_MAX || domain_len > SMTP_DOMAIN_MAX || p - start > SMTP_PATH_MAX)
		return SMTP_PARSE_TOO_LONG;

	/* The path limit keeps local "@" domain within mailbox[]. */
	memcpy(path->mailbox, s + local_start, local_len);
	size_t out = local_len;
	if (!postmaster) {
		path->mailbox[out++] = '@';
		memcpy(path->mailbox + out, s + domain_start, domain_len);
		out += domain_len;
	}
	path->mailbox[out] = '\0';
	path->local_len = local_len;
	for (size_t i = 0; i < domain_len; i++)
		path->domain_lower[i] = (char)to_lower((unsigned char)s[domain_start + i]);
	path->domain_lower[domain_len] = '\0';
	path->is_null = false;
	path->utf8 = non_ascii;
	*pos = p;
	return SMTP_PARSE_OK;
}

/* One "keyword[=value]" of esmtp-param (RFC 5321 4.1.2), borrowed from the argument. */
struct esmtp_param {
	const char *keyword;
	size_t keyword_len;
	bool has_value;
	const char *value;
	size_t value_len;
};

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool keyword_valid(const char *s, size_t n)
{
	if (n == 0 || !(is_alpha((unsigned char)s[0]) || is_digit((unsigned char)s[0])))
		return false;
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_alpha(c) && !is_digit(c) && c != '-')
			return false;
	}
	return true;
}

/*
 * Reads the next parameter from s[*pos..len), skipping SPs. Returns 1 with *param filled, 0 at
 * the end, or -1 when the keyword is malformed.
 */
static int param_next(const char *s, size_t len, size_t *pos, struct esmtp_param *param)
{
	size_t p = *pos;

	while (p < len && s[p] == ' ')
		p++;
	if (p == len) {
		*pos = p;
		return 0;
	}
	size_t start = p;
	while (p < len && s[p] != ' ')
		p++;
	const char *eq = memchr(s + start, '=', p - start);
	param->keyword = s + start;
	param->keyword_len = eq != NULL ? (size_t)(eq - (s + start)) : p - start;
	param->has_value = eq != NULL;
	param->value = eq != NULL ? eq + 1 : s + p;
	param->value_len = eq != NULL ? (size_t)((s + p) - (eq + 1)) : 0;
	if (!keyword_valid(param->keyword, param->keyword_len))
		return -1;
	*pos = p;
	return 1;
}

/* SIZE value: 1..20 decimal digits, no overflow of uint64_t (RFC 1870). */
static bool size_value_parse(const char *s, size_t n, uint64_t *out)
{
	uint64_t value = 0;

	if (n == 0 || n > SMTP_SIZE_DIGITS_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return false;
		unsigned digit = (unsigned)(s[i] - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
	}
	*out = value;
	return true;
}

/* AUTH value: "<>" or non-empty xtext (RFC 3461 4: xchar or "+" two hex digits). */
static bool auth_value_valid(const char *s, size_t n)
{
	if (n == 2 && s[0] == '<' && s[1] == '>')
		return true;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			if (i + 2 >= n)
				return false;
			if (!is_hex((unsigned char)s[i + 1]) || !is_hex((unsigned char)s[i + 2]))
				return false;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

/* Parameters after the path of MAIL, s[pos] being SP or the end. */
static enum smtp_parse_status mail_params_parse(const char *s, size_t len, size_t pos,
                                                struct smtp_mail_args *out)
{
	struct esmtp_param param;
	bool seen_auth = false;
	int r;

	if (pos < len && s[pos] != ' ')
		return SMTP_PARSE_SYNTAX;
	while ((r = param_next(s, len, &pos, &param)) == 1) {
		const char *v = param.value;
		size_t vn = param.value_len;
		if (equal_nocase(param.keyword, param.keyword_len, "SIZE")) {
			if (out->has_size || !param.has_value ||
			    !size_value_parse(v, vn, &out->size))
				return SMTP_PARSE_BAD_PARAM;
			out->has_size = true;
		} else if (equal_nocase(param.keyword, param.keyword_len, "BODY")) {
			if (out->body != SMTP_BODY_UNSET || !param.has_value)
				return SMTP_PARSE_BAD_PARAM;
			if (equal_nocase(v, vn, "7BIT"))
				out->body = SMTP_BODY_7BIT;
			else if (equal_nocase(v, vn, "8BITMIME"))
				out->body = SMTP_BODY_8BITMIME;
			else /* BINARYMIME (RFC 3030) is not offered */
				return SMTP_PARSE_BAD_PARAM;
		} else if (equal_nocase(param.keyword, param.keyword_len, "SMTPUTF8")) {
			if (out->smtputf8 || param.has_value)
				return SMTP_PARSE_BAD_PARAM;
			out->smtputf8 = true;
		} else if (equal_nocase(param.keyword, param.keyword_len, "AUTH")) {
			if (seen_auth || !param.has_value || !auth_value_valid(v, vn))
				return SMTP_PARSE_BAD_PARAM;
			seen_auth = true;
		} else {
			return SMTP_PARSE_UNKNOWN_PARAM;
		}
	}
	return r == 0 ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
}

static bool has_control(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (is_control((unsigned char)s[i]))
			return true;
	}
	return false;
}

enum smtp_parse_status smtp_command_parse(const char *line, size_t len, struct smtp_command *out)
{
	out->verb = SMTP_VERB_UNKNOWN;
	out->arg = "";
	out->arg_len = 0;

	for (size_t i = 0; i < len; i++) {
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n')
			return SMTP_PARSE_SYNTAX;
	}
	size_t n = 0;
	while (n < len && is_alpha((unsigned char)line[n]))
		n++;
	if (n == 0 || n > SMTP_VERB_LEN_MAX)
		return SMTP_PARSE_OK;

	enum smtp_verb verb = SMTP_VERB_UNKNOWN;
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		if (equal_nocase(line, n, smtp_verbs[i].name)) {
			verb = smtp_verbs[i].verb;
			break;
		}
	}
	if (verb == SMTP_VERB_UNKNOWN)
		return SMTP_PARSE_OK;
	out->verb = verb;
	if (n < len && line[n] != ' ')
		return SMTP_PARSE_SYNTAX;

	size_t start = n;
	while (start < len && line[start] == ' ')
		start++;
	size_t end = len;
	while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	if (end > start) {
		out->arg = line + start;
		out->arg_len = end - start;
	}
	return SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_mail_parse(const char *arg, size_t len, struct smtp_mail_args *out)
{
	bool route_non_ascii = false;
	enum smtp_parse_status st;

	memset(out, 0, sizeof(*out));
	if (has_control(arg, len) || !prefix_nocase(arg, len, "FROM:"))
		return SMTP_PARSE_SYNTAX;
	size_t pos = 5;
	if (pos < len && arg[pos] == ' ')
		pos++;
	st = parse_path(arg, len, &pos, false, &out->path, &route_non_ascii);
	if (st != SMTP_PARSE_OK)
		return st;
	/* SMTPUTF8 comes after the path: judge the address once the parameters are known. */
	st = mail_params_parse(arg, len, pos, out);
	if (st != SMTP_PARSE_OK)
		return st;
	if ((out->path.utf8 || route_non_ascii) && !out->smtputf8)
		return SMTP_PARSE_NEED_UTF8;
	return SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_rcpt_parse(const char *arg, size_t len, bool smtputf8,
                                       struct smtp_rcpt_args *out)
{
	bool route_non_ascii = false;
	struct esmtp_param param;
	enum smtp_parse_status st;

	memset(out, 0, sizeof(*out));
	if (has_control(arg, len) || !prefix_nocase(arg, len, "TO:"))
		return SMTP_PARSE_SYNTAX;
	size_t pos = 3;
	if (pos < len && arg[pos] == ' ')
		pos++;
	st = parse_path(arg, len, &pos, true, &out->path, &route_non_ascii);
	if (st != SMTP_PARSE_OK)
		return st;
	if (out->path.is_null)
		return SMTP_PARSE_BAD_PATH;
	if (pos < len && arg[pos] != ' ')
		return SMTP_PARSE_SYNTAX;
	switch (param_next(arg, len, &pos, &param)) {
	case 0:
		break;
	case 1:
		return SMTP_PARSE_UNKNOWN_PARAM;
	default:
		return SMTP_PARSE_SYNTAX;
	}
	if ((out->path.utf8 || route_non_ascii) && !smtputf8)
		return SMTP_PARSE_NEED_UTF8;
	return SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_helo_check(const char *arg, size_t len)
{
	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return SMTP_PARSE_SYNTAX;
	if (arg[0] == '[') {
		size_t pos = 0;
		if (!scan_address_literal(arg, len, &pos) || pos != len)
			return SMTP_PARSE_SYNTAX;
		return SMTP_PARSE_OK;
	}
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)arg[i];
		if (c >= 0x80) {
			size_t n = smtp_utf8_sequence_len(arg + i, len - i);
			if (n == 0)
				return SMTP_PARSE_SYNTAX;
			i += n;
		} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_') {
			/* LDH plus '_', which real client hosts use; nothing that could change
			 * the meaning of the Received: header the name is copied into */
			i++;
		} else {
			return SMTP_PARSE_SYNTAX;
		}
	}
	return SMTP_PARSE_OK;
}

const char *smtp_parse_status_name(enum smtp_parse_status s)
{
	switch (s) {
	case SMTP_PARSE_OK:
		return "ok";
	case SMTP_PARSE_SYNTAX:
		return "syntax";
	case SMTP_PARSE_BAD_PATH:
		return "bad_path";
	case SMTP_PARSE_TOO_LONG:
		return "too_long";
	case SMTP_PARSE_NEED_UTF8:
		return "need_utf8";
	case SMTP_PARSE_UNKNOWN_PARAM:
		return "unknown_param";
	case SMTP_PARSE_BAD_PARAM:
		return "bad_param";
	}
	return "unknown_status";
}
