/*
 * data_reader.c: the streaming reader of the SMTP DATA phase (contract in data_reader.h).
 * Owns only the parse state in struct data_reader; appends to a caller-owned struct buf.
 *
 * RFCs: RFC 5321 4.1.1.4 (end of data is CRLF "." CRLF), 4.5.2 (dot-unstuffing), 4.5.3.1.6
 * (1000-octet lines including CRLF), 2.3.8 (only CRLF ends a line); RFC 5322 2.1 and 2.2
 * (header section up to the first empty line, "Received:" fields).
 *
 * The reader is a byte-wise state machine; runs of ordinary octets are handled in bulk, with
 * limits applied at the exact octet that crosses them, so that the result (output bytes, size,
 * error, header_len, received_count, done, octets consumed) does not depend on how the input
 * is split between calls. Only CRLF starts a new line: after a bare LF the line goes on, so a
 * "." that follows a bare LF is neither unstuffed nor an end (that is what smuggling relies on).
 * Bare CR, bare LF and NUL octets are counted in size and line length like other octets.
 * max_size is taken literally: 0 allows only the empty message (pass SIZE_MAX for no limit).
 */
#include "relay/data_reader.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DATA_RECEIVED     "received:"
#define DATA_RECEIVED_LEN 9

enum data_state {
	DATA_STATE_LINE_START, /* at the first octet of a line */
	DATA_STATE_DOT,        /* a line started with ".", dropped (unstuffed) */
	DATA_STATE_DOT_CR,     /* "." CR at the start of a line: LF ends the data */
	DATA_STATE_LINE,       /* inside a line */
	DATA_STATE_CR,         /* a CR inside a line: LF ends the line */
	DATA_STATE_DONE,       /* CRLF "." CRLF consumed */
};

void data_reader_init(struct data_reader *r, size_t max_size)
{
	memset(r, 0, sizeof(*r));
	r->state = DATA_STATE_LINE_START;
	r->in_headers = true;
	r->max_size = max_size;
	r->error = DATA_ERROR_NONE;
}

static void error_set(struct data_reader *r, enum data_error e)
{
	if (r->error == DATA_ERROR_NONE)
		r->error = e;
}

static size_t add_saturated(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static bool received_prefix(const char *p)
{
	for (size_t i = 0; i < DATA_RECEIVED_LEN; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + ('a' - 'A'));
		if (c != (unsigned char)DATA_RECEIVED[i])
			return false;
	}
	return true;
}

/*
 * n octets of line content (after unstuffing). Stores the octets that fit under both limits,
 * and records the error of the first octet that does not.
 */
static void line_octets(struct data_reader *r, const char *p, size_t n, struct buf *out)
{
	if (r->in_headers && r->prefix_len < DATA_RECEIVED_LEN) {
		size_t take = DATA_RECEIVED_LEN - r->prefix_len;
		if (take > n)
			take = n;
		memcpy(r->prefix + r->prefix_len, p, take);
		r->prefix_len += take;
		if (r->prefix_len == DATA_RECEIVED_LEN && received_prefix(r->prefix))
			r->received_count++;
	}
	if (r->error == DATA_ERROR_NONE) {
		size_t line_room = r->line_len < DATA_LINE_MAX ? DATA_LINE_MAX - r->line_len : 0;
		size_t size_room = r->size < r->max_size ? r->max_size - r->size : 0;
		size_t fit = n;
		if (fit > line_room)
			fit = line_room;
		if (fit > size_room)
			fit = size_room;
		if (fit > 0 && buf_append(out, p, fit) == -1)
			error_set(r, DATA_ERROR_NO_MEMORY);
		else if (fit < n)
			error_set(r,
			          fit == line_room ? DATA_ERROR_LINE_TOO_LONG : DATA_ERROR_TOO_BIG);
	}
	r->line_len = add_saturated(r->line_len, n);
	r->size = add_saturated(r->size, n);
}

/* A CRLF ending a line: it belongs to the message, and an empty line ends the header. */
static void line_end(struct data_reader *r, struct buf *out)
{
	if (r->error == DATA_ERROR_NONE) {
		if (r->size > r->max_size || r->max_size - r->size < 2)
			error_set(r, DATA_ERROR_TOO_BIG);
		else if (buf_append(out, "\r\n", 2) == -1)
			error_set(r, DATA_ERROR_NO_MEMORY);
	}
	r->size = add_saturated(r->size, 2);
	if (r->in_headers && r->line_len == 0) {
		r->in_headers = false;
		r->header_len = r->size;
	}
	r->line_len = 0;
	r->prefix_len = 0;
	r->state = DATA_STATE_LINE_START;
}

/* Length of the run of octets at p[0..n) that are neither CR, LF nor NUL. */
static size_t ordinary_run(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
		i++;
	return i;
}

size_t data_reader_feed(struct data_reader *r, const char *buf, size_t len, struct buf *out,
                        bool *done)
{
	size_t i = 0;

	/* Each case either consumes octets or changes state to re-read the same octet. */
	while (i < len && r->state != DATA_STATE_DONE) {
		char c = buf[i];
		switch (r->state) {
		case DATA_STATE_LINE_START:
			if (c == '.') {
				r->state = DATA_STATE_DOT;
				i++;
			} else {
				r->state = DATA_STATE_LINE;
			}
			break;
		case DATA_STATE_DOT:
			if (c == '\r') {
				r->state = DATA_STATE_DOT_CR;
				i++;
			} else {
				r->state = DATA_STATE_LINE;
			}
			break;
		case DATA_STATE_DOT_CR:
		case DATA_STATE_CR:
			if (c == '\n') {
				i++;
				if (r->state == DATA_STATE_DOT_CR)
					r->state = DATA_STATE_DONE;
				else
					line_end(r, out);
			} else {
				error_set(r, DATA_ERROR_BARE_CR);
				line_octets(r, "\r", 1, out);
				r->state = DATA_STATE_LINE;
			}
			break;
		case DATA_STATE_LINE:
			if (c == '\r') {
				r->state = DATA_STATE_CR;
				i++;
			} else if (c == '\n' || c == '\0') {
				error_set(r, c == '\n' ? DATA_ERROR_BARE_LF : DATA_ERROR_NUL);
				line_octets(r, buf + i, 1, out);
				i++;
			} else {
				size_t n = ordinary_run(buf + i, len - i);
				line_octets(r, buf + i, n, out);
				i += n;
			}
			break;
		default:
			/* DATA_STATE_DONE ends the loop; any other value is a broken invariant. */
			abort();
		}
	}
	*done = r->state == DATA_STATE_DONE;
	return i;
}

const char *data_error_name(enum data_error e)
{
	switch (e) {
	case DATA_ERROR_NONE:
		return "none";
	case DATA_ERROR_BARE_CR:
		return "bare_cr";
	case DATA_ERROR_BARE_LF:
		return "bare_lf";
	case DATA_ERROR_NUL:
		return "nul";
	case DATA_ERROR_LINE_TOO_LONG:
		return "line_too_long";
	case DATA_ERROR_TOO_BIG:
		return "too_big";
	case DATA_ERROR_NO_MEMORY:
		return "no_memory";
	}
	return "unknown_error";
}
