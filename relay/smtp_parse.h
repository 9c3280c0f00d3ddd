/*
 * smtp_parse.h: pure parsers for SMTP command lines, paths and ESMTP parameters.
 * RFC 5321 (commands, paths, limits of 4.5.3.1), RFC 1870 (SIZE), RFC 6152 (8BITMIME),
 * RFC 6531 (SMTPUTF8: UTF-8 in local parts and domains), RFC 4954 (AUTH= parameter).
 *
 * Every function reads (const char *, size_t) without its CRLF, writes a caller-owned struct,
 * does no I/O and keeps no state. Strings in the output structs are copies (NUL-terminated),
 * except smtp_command.arg which borrows from the line.
 */
#ifndef POSTINO_SMTP_PARSE_H
#define POSTINO_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LOCAL_MAX  64  /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX   256 /* RFC 5321 4.5.3.1.3, including the angle brackets */

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

enum smtp_parse_status {
	SMTP_PARSE_OK,
	SMTP_PARSE_SYNTAX,    /* malformed command or argument: 501 5.5.2 */
	SMTP_PARSE_BAD_PATH,  /* malformed path/address: 501 5.1.7 (MAIL) / 501 5.1.3 (RCPT) */
	SMTP_PARSE_TOO_LONG,  /* local part, domain or path over the RFC 5321 limits: 501 5.5.4 */
	SMTP_PARSE_NEED_UTF8, /* non-ASCII address without SMTPUTF8 on MAIL: 553 5.6.7 */
	SMTP_PARSE_UNKNOWN_PARAM, /* unrecognized ESMTP parameter: 555 5.5.4 */
	SMTP_PARSE_BAD_PARAM, /* recognized parameter with a bad value or given twice: 501 5.5.4 */
};

/* One command line. arg points into the parsed line (borrowed), after the verb and its SP. */
struct smtp_command {
	enum smtp_verb verb;
	const char *arg; /* "" when there is no argument; never NULL after SMTP_PARSE_OK */
	size_t arg_len;
};

/*
 * Splits a command line (without CRLF) into verb and argument. The verb is matched
 * case-insensitively; an unknown verb gives SMTP_VERB_UNKNOWN with SMTP_PARSE_OK. Returns
 * SMTP_PARSE_SYNTAX when the verb is followed by something other than SP or end of line.
 */
enum smtp_parse_status smtp_command_parse(const char *line, size_t len, struct smtp_command *out);

/* A reverse-path or forward-path with the source route (A-d-l) removed. */
struct smtp_path {
	bool is_null;     /* "<>"; mailbox is "" */
	bool utf8;        /* the mailbox has a non-ASCII octet (valid UTF-8 checked) */
	size_t local_len; /* mailbox[0..local_len) is the local part as received (quotes kept) */
	char mailbox[SMTP_PATH_MAX + 1]; /* "local@domain"; the domain starts at local_len + 1 */
	char domain_lower[SMTP_DOMAIN_MAX + 1]; /* the domain, ASCII letters lowercased */
};

enum smtp_body_type { SMTP_BODY_UNSET, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

struct smtp_mail_args {
	struct smtp_path path;
	bool has_size;
	uint64_t size;            /* SIZE=, RFC 1870 */
	enum smtp_body_type body; /* BODY=, RFC 6152 */
	bool smtputf8;            /* SMTPUTF8, RFC 6531 */
};

struct smtp_rcpt_args {
	struct smtp_path path;
};

/*
 * Parses the argument of MAIL ("FROM:<path> [params]"). "FROM:" is case-insensitive; one SP
 * after the colon is tolerated (common client habit). Accepts "<>". Parameters: SIZE, BODY,
 * SMTPUTF8, AUTH (RFC 4954 AUTH=<> or xtext, accepted and ignored). A non-ASCII mailbox is
 * accepted only when SMTPUTF8 is among the parameters.
 */
enum smtp_parse_status smtp_mail_parse(const char *arg, size_t len, struct smtp_mail_args *out);

/*
 * Parses the argument of RCPT ("TO:<path> [params]"). "<>" is refused (SMTP_PARSE_BAD_PATH),
 * "<postmaster>" without a domain is accepted with domain "". smtputf8 says whether the
 * transaction's MAIL had SMTPUTF8 (else non-ASCII gives SMTP_PARSE_NEED_UTF8). No RCPT
 * parameter is supported (NOTIFY/ORCPT are not advertised): any gives SMTP_PARSE_UNKNOWN_PARAM.
 */
enum smtp_parse_status smtp_rcpt_parse(const char *arg, size_t len, bool smtputf8,
                                       struct smtp_rcpt_args *out);

/*
 * Checks an EHLO/HELO argument: a domain name or an address literal ([1.2.3.4], [IPv6:...]).
 * Lenient on the name's shape (clients send bare host names, underscores, a trailing dot),
 * strict on its octets: letters, digits, '-', '.', '_' and well-formed UTF-8 only, 1..255
 * octets, so the name can go into a Received: header as is. Returns SMTP_PARSE_OK or
 * SMTP_PARSE_SYNTAX.
 */
enum smtp_parse_status smtp_helo_check(const char *arg, size_t len);

/*
 * Length of the well-formed UTF-8 sequence whose non-ASCII lead octet is s[0] (RFC 3629
 * section 4: no overlongs, no surrogates, nothing above U+10FFFF), or 0 when malformed or cut
 * short by n. Shared by every parser that accepts UTF-8 (RFC 6531, RFC 6532).
 */
size_t smtp_utf8_sequence_len(const char *s, size_t n);

/* Text of a status for logs ("ok", "syntax", "bad_path", ...). */
const char *smtp_parse_status_name(enum smtp_parse_status s);

#endif
