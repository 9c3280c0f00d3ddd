/*
 * data_reader.h: the streaming reader for the SMTP DATA phase (RFC 5321 4.1.1.4, 4.5.2,
 * 4.5.3.1.6). Pure: bytes in, unstuffed message bytes and a verdict out.
 *
 * The reader ends only at CRLF "." CRLF. It refuses (records an error but keeps consuming to
 * the real end, so nothing after a smuggled end is read as a command):
 *   - a bare CR (CR not followed by LF) or a bare LF (LF not preceded by CR): SMTP smuggling;
 *   - a NUL octet;
 *   - a line longer than DATA_LINE_MAX octets before its CRLF (after unstuffing);
 *   - more than max_size octets of message (it stops storing but keeps counting);
 * It also counts "Received:" header fields in the header section (before the first empty line)
 * and records where the header section ends.
 *
 * Feeding may split the input at any byte: state is kept in struct data_reader.
 */
#ifndef POSTINO_DATA_READER_H
#define POSTINO_DATA_READER_H

#include <stdbool.h>
#include <stddef.h>

#include "relay/buf.h"

#define DATA_LINE_MAX 998 /* octets before CRLF (RFC 5321 4.5.3.1.6: 1000 with CRLF) */

enum data_error {
	DATA_ERROR_NONE,
	DATA_ERROR_BARE_CR,
	DATA_ERROR_BARE_LF,
	DATA_ERROR_NUL,
	DATA_ERROR_LINE_TOO_LONG,
	DATA_ERROR_TOO_BIG,
	DATA_ERROR_NO_MEMORY, /* buf_append failed */
};

struct data_reader {
	/* private parse state */
	int state;
	size_t line_len; /* octets in the current line so far (unstuffed) */
	char prefix[10]; /* first octets of the current line, to spot "Received:" */
	size_t prefix_len;
	bool in_headers;
	/* results, valid at any time */
	size_t max_size;
	size_t size;             /* message octets seen (unstuffed), including those not stored */
	size_t header_len;       /* octets up to and including the empty line; 0 if none yet */
	unsigned received_count; /* "Received:" fields in the header section */
	enum data_error error;   /* the first error seen, DATA_ERROR_NONE if none */
};

/* Starts a reader at the beginning of a line, as right after the 354 reply. */
void data_reader_init(struct data_reader *r, size_t max_size);

/*
 * Consumes bytes from buf[0..len). Unstuffed message octets are appended to out (the final
 * CRLF before "." belongs to the message; ".\r\n" does not). Returns the number of octets
 * consumed; *done is set true when the terminating CRLF.CRLF has been consumed, and then bytes
 * after it are left unconsumed. Once r->error is set, nothing more is appended to out.
 */
size_t data_reader_feed(struct data_reader *r, const char *buf, size_t len, struct buf *out,
                        bool *done);

/* Text of an error for logs ("bare_lf", ...). */
const char *data_error_name(enum data_error e);

#endif
