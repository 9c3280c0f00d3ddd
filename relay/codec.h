/*
 * codec.h: the digits of hexadecimal and base64 (RFC 4648 sections 4 and 8) and the lenient
 * base64 of MIME bodies (RFC 2045 section 6.8), shared by SMTP AUTH (relay/auth.c), VERP
 * tokens (relay/verp.c) and the bounce parser (relay/bounce_parse.c). Pure.
 */
#ifndef POSTINO_CODEC_H
#define POSTINO_CODEC_H

#include <stddef.h>

/* The value of a hexadecimal digit (either case), or -1. */
int codec_hex_digit(char c);

/* The value of a base64 digit (A-Z a-z 0-9 + /), or -1 ('=' included). */
int codec_base64_digit(char c);

/*
 * Decodes the base64 of a MIME body: octets outside the alphabet (line breaks, spaces, junk)
 * are skipped, the first '=' ends the data, a last incomplete group gives what it holds. out
 * has room for len / 4 * 3 + 3 octets. Returns the decoded length.
 */
size_t codec_base64_decode_mime(const char *in, size_t len, char *out);

#endif
