/*
 * header.h: pure parsers for an RFC 5322 message header section and address lists.
 *
 * The input is a message with CRLF line ends (as the DATA reader produces). Nothing is copied
 * except where a struct holds a fixed-size array; all other pointers borrow from the input.
 */
#ifndef POSTINO_HEADER_H
#define POSTINO_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#include "relay/smtp_parse.h"

/* One header field: name without the colon; value from after the colon to before the final
 * CRLF, folding (CRLF WSP) kept as is. */
struct header_field {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
	size_t offset; /* of the field's first octet in the message */
	size_t length; /* of the whole field including its final CRLF */
};

struct header_iter {
	const char *msg;
	size_t len;
	size_t pos;
};

enum header_status {
	HEADER_FIELD,     /* *out holds the next field */
	HEADER_END,       /* the empty line (or the end of the message) was reached */
	HEADER_MALFORMED, /* a line that is neither a field nor a continuation, a field name with
	                     bytes outside RFC 5322 ftext, or a header section without CRLF ends */
};

void header_iter_init(struct header_iter *it, const char *msg, size_t len);
enum header_status header_next(struct header_iter *it, struct header_field *out);
/* Offset of the body (after the empty line) once header_next returned HEADER_END. */
size_t header_body_offset(const struct header_iter *it);

/* Case-insensitive comparison of a field's name with a NUL-terminated name. */
bool header_name_is(const struct header_field *f, const char *name);

#define HEADER_ADDRESSES_MAX 64

struct header_address {
	size_t local_len;                       /* addr[0..local_len) is the local part */
	char addr[SMTP_PATH_MAX + 1];           /* "local@domain", quotes of the local part kept */
	char domain_lower[SMTP_DOMAIN_MAX + 1]; /* ASCII letters lowercased */
};

enum header_addr_status {
	HEADER_ADDR_OK,
	HEADER_ADDR_SYNTAX,   /* the value is not an RFC 5322 address-list / mailbox-list */
	HEADER_ADDR_TOO_MANY, /* more than max addresses */
};

/*
 * Parses an address-list (From, Sender, To, Cc, Reply-To values): display names, quoted
 * strings, comments (nested), angle addresses, groups ("name: a@b, c@d;"), obsolete routes,
 * folding. Fills out[0..*count). UTF-8 (RFC 6532) is accepted in names and addresses.
 */
enum header_addr_status header_addresses_parse(const char *value, size_t len,
                                               struct header_address *out, size_t max,
                                               size_t *count);

#endif
