/*
 * smtp_reply.h: pure parser for SMTP replies as a client receives them: RFC 5321 section 4.2
 * (reply lines and codes), RFC 3463 + RFC 2034 (enhanced status codes), RFC 5321 4.1.1.1 and
 * the EHLO keywords of RFC 2920 (PIPELINING), 3207 (STARTTLS), 1870 (SIZE), 6152 (8BITMIME),
 * 6531 (SMTPUTF8), 2034 (ENHANCEDSTATUSCODES) and 3030 (CHUNKING, recognized, never used).
 *
 * A reply is "NNN-text" continuation lines then one "NNN text" (or bare "NNN") last line, the
 * same code on every line. The parser is fed one line at a time (smtp_reply_feed) or a whole
 * buffer (smtp_reply_parse); it does no I/O, keeps its state in struct smtp_reply and uses
 * bounded memory whatever the peer sends.
 *
 * Choices where RFC 5321 leaves room (each one tested in tests/unit/test_smtp_reply.c):
 *   - line length: RFC 5321 4.5.3.1.5 says 512 octets with CRLF; real servers send longer
 *     lines (long policy URLs), so up to SMTP_REPLY_LINE_MAX octets before the line end are
 *     accepted and a longer line is an error;
 *   - at most SMTP_REPLY_LINES_MAX lines per reply;
 *   - a bare LF ends a line like CRLF (common in old servers; replies are never relayed, so
 *     there is nothing to smuggle) and sets bare_lf so the client can log it; a CR anywhere
 *     but just before the LF, or a NUL, is an error;
 *   - the code's first digit must be 2..5, the other two any digit;
 *   - the enhanced code is taken from the first line only when its class equals the reply
 *     code's first digit (RFC 3463 section 2) and it is followed by SP or the line end.
 */
#ifndef POSTINO_SMTP_REPLY_H
#define POSTINO_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX  2048 /* octets of one line, without its CRLF or LF */
#define SMTP_REPLY_LINES_MAX 100
#define SMTP_REPLY_TEXT_MAX  1024 /* octets of text kept (see smtp_reply.text) */
#define SMTP_REPLY_NAME_MAX  255  /* octets of smtp_reply.name */
#define SMTP_ENHANCED_MAX    9    /* "5.999.999" */

/* EHLO keywords (smtp_reply.ext). */
#define SMTP_EXT_PIPELINING          (1u << 0)
#define SMTP_EXT_STARTTLS            (1u << 1)
#define SMTP_EXT_SIZE                (1u << 2)
#define SMTP_EXT_8BITMIME            (1u << 3)
#define SMTP_EXT_SMTPUTF8            (1u << 4)
#define SMTP_EXT_ENHANCEDSTATUSCODES (1u << 5)
#define SMTP_EXT_CHUNKING            (1u << 6) /* recognized for logs; BDAT is never used */

enum smtp_reply_status {
	SMTP_REPLY_DONE,           /* the last line arrived: the reply is complete */
	SMTP_REPLY_MORE,           /* a continuation line (or, for parse, the buffer ended) */
	SMTP_REPLY_BAD_CODE,       /* the line does not start with a code 2..5 digit digit */
	SMTP_REPLY_BAD_SEPARATOR,  /* the code is followed by other than '-', SP or line end */
	SMTP_REPLY_MIXED_CODES,    /* a line's code differs from the first line's */
	SMTP_REPLY_TOO_MANY_LINES, /* more than SMTP_REPLY_LINES_MAX lines */
	SMTP_REPLY_LINE_TOO_LONG,  /* more than SMTP_REPLY_LINE_MAX octets before the line end */
	SMTP_REPLY_BAD_OCTET,      /* a NUL, or a CR that is not just before the LF */
	SMTP_REPLY_NO_LINE_END,    /* smtp_reply_feed: the line does not end with its only LF */
};

struct smtp_reply {
	int code;       /* 200..599 once the first line is in */
	unsigned lines; /* lines fed so far */
	bool bare_lf;   /* some line ended with LF alone */
	/* RFC 3463 code of the first line ("5.1.1"), "" when there is none */
	char enhanced[SMTP_ENHANCED_MAX + 1];
	/* The first word of the first line's text (after the enhanced code), at most
	 * SMTP_REPLY_NAME_MAX octets: the server's name in a 220 greeting or a 250 EHLO reply. */
	char name[SMTP_REPLY_NAME_MAX + 1];
	/*
	 * The text of every line (what follows "NNN-" or "NNN "), without the enhanced code when
	 * a line starts with the first line's one, non-empty texts joined by one SP. Peer bytes as
	 * they came (escape before logging). Cut at SMTP_REPLY_TEXT_MAX octets (text_truncated
	 * set).
	 */
	char text[SMTP_REPLY_TEXT_MAX + 1];
	size_t text_len;
	bool text_truncated;
	/* EHLO keywords found on the lines after the first of a 250 reply (meaningful only in
	 * the reply to EHLO), and the SIZE parameter (0: none given, or not a valid number). */
	unsigned ext;
	uint64_t size_max;
};

/* Prepares r for a new reply. */
void smtp_reply_init(struct smtp_reply *r);

/*
 * Adds one line to r: line[0..len) holds exactly one LF, as its last octet (CRLF or bare LF
 * ending). Returns SMTP_REPLY_MORE after a continuation line, SMTP_REPLY_DONE after the last
 * line, or an error; after an error r is unspecified until smtp_reply_init.
 */
enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len);

/*
 * Parses one whole reply from the start of buf[0..len), r initialized here. Returns
 * SMTP_REPLY_DONE with *used the octets of the reply (what follows is the next reply),
 * SMTP_REPLY_MORE when buf ends before the last line (*used 0: call again with more bytes),
 * or an error (*used: the octets up to and including the faulty line, or all of buf when the
 * fault is a line with no end in sight).
 */
enum smtp_reply_status smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                                        size_t *used);

/*
 * Reads an RFC 3463 enhanced status code at the start of s[0..len): class 2, 4 or 5, then
 * "." subject "." detail, each 1 to 3 digits, followed by SP or the end of s. Writes it
 * NUL-terminated to out and returns its length (5..9), or returns 0 (out set to "").
 */
size_t smtp_enhanced_parse(const char *s, size_t len, char out[SMTP_ENHANCED_MAX + 1]);

/* Text of a status for logs ("done", "more", "bad_code", ...). */
const char *smtp_reply_status_name(enum smtp_reply_status s);

#endif
