/*
 * verp.h: pure VERP return paths (variable envelope return path) for bounce intake:
 *
 *   bounces+TOKEN@BOUNCE_DOMAIN
 *
 * TOKEN is 32 characters of lowercase base32 (RFC 4648 alphabet, no padding) over 20 octets:
 * the message id (8 octets, the 16 hex digits of a queue id), the recipient's index in the
 * message (4 octets, big-endian) and the first 8 octets of HMAC-SHA256(key, "postino-verp-v1"
 * || those 12 octets). Base32 only uses letters and digits 2-7, so the token survives MTAs
 * that lowercase or uppercase local parts; parsing ignores case. The MAC keeps anyone but the
 * holder of the key from making a token that names a message and recipient (a forged bounce
 * would otherwise suppress an address); the comparison is constant-time (CRYPTO_memcmp).
 *
 * The key is octets given by the caller, at least VERP_KEY_MIN of them. Pure: no I/O.
 */
#ifndef POSTINO_VERP_H
#define POSTINO_VERP_H

#include <stddef.h>

#define VERP_PREFIX     "bounces+"
#define VERP_TOKEN_LEN  32 /* base32 characters of a token */
#define VERP_ID_LEN     16 /* hex digits of a message id */
#define VERP_KEY_MIN    16 /* octets of key */
#define VERP_MAC_OCTETS 8  /* octets of HMAC-SHA256 kept */
/* "bounces+" + token + "@" + a domain of at most 253 octets + NUL */
#define VERP_ADDRESS_MAX (sizeof VERP_PREFIX - 1 + VERP_TOKEN_LEN + 1 + 253 + 1)

enum verp_status {
	VERP_OK,
	VERP_NOT_VERP,  /* the local part does not start with "bounces+" (any case) */
	VERP_MALFORMED, /* it does, but the token is not 32 base32 characters */
	VERP_BAD_MAC,   /* the token does not verify under the key (forged, damaged, other key,
	                   or a key shorter than VERP_KEY_MIN) */
};

/*
 * Writes "bounces+TOKEN@bounce_domain" (NUL-terminated) to out. id is 16 hex digits (any
 * case; the token holds their octets); bounce_domain is a non-empty domain without '@',
 * whitespace or control octets, at most 253 octets. Returns 0, or -1 when an argument is
 * invalid, keylen < VERP_KEY_MIN, outlen is too small or HMAC fails.
 */
int verp_address_make(const unsigned char *key, size_t keylen, const char *id, unsigned rcpt_index,
                      const char *bounce_domain, char *out, size_t outlen);

/*
 * Reads a VERP local part or address ("bounces+TOKEN", "bounces+TOKEN@domain", optionally in
 * angle brackets; the domain is not checked). On VERP_OK, writes the message id as 16
 * lowercase hex digits + NUL to id_out and the recipient index to *rcpt_index_out; on any
 * other status they are left unspecified.
 */
enum verp_status verp_address_parse(const unsigned char *key, size_t keylen,
                                    const char *local_part_or_address, char id_out[VERP_ID_LEN + 1],
                                    unsigned *rcpt_index_out);

/* "ok", "not_verp", "malformed", "bad_mac". */
const char *verp_status_name(enum verp_status s);

#endif
