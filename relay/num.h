/*
 * num.h: bounded parsing of untrusted decimal numbers (STYLE.md: no atoi), shared by the
 * config reader, the DKIM key store and the resolver. Pure.
 */
#ifndef POSTINO_NUM_H
#define POSTINO_NUM_H

#include <stddef.h>
#include <stdint.h>

/* Parses s[0..len) as ASCII digits only (no sign, no space) into *out. Returns 0, or -1 when
 * len is 0, a byte is not a digit, or the value exceeds max (checked before it can overflow). */
int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);

#endif
