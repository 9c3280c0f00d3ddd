/*
 * verp.c: VERP return paths with an HMAC-authenticated token (see verp.h). Base32 per RFC 4648
 * section 6 (lowercase, no padding); HMAC-SHA256 per RFC 2104 / FIPS 198-1 through OpenSSL,
 * truncated to VERP_MAC_OCTETS (RFC 2104 section 5). Pure: no I/O, no allocation, no logging.
 */
#include "relay/verp.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "relay/codec.h"

#define VERP_DOMAIN_MAX 253
#define PAYLOAD_OCTETS  12 /* message id + recipient index */
#define TOKEN_OCTETS    (PAYLOAD_OCTETS + VERP_MAC_OCTETS)
#define MAC_LABEL       "postino-verp-v1"

static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/* TOKEN_OCTETS (20, a multiple of 5) octets to VERP_TOKEN_LEN characters. */
static void base32_encode(const unsigned char in[TOKEN_OCTETS], char out[VERP_TOKEN_LEN])
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < TOKEN_OCTETS; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[o++] = base32_alphabet[(acc >> bits) & 31];
		}
	}
}

/* VERP_TOKEN_LEN characters (any case) to TOKEN_OCTETS octets; false on a foreign character. */
static bool base32_decode(const char in[VERP_TOKEN_LEN], unsigned char out[TOKEN_OCTETS])
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < VERP_TOKEN_LEN; i++) {
		char c = in[i];
		int v;
		if (c >= 'a' && c <= 'z')
			v = c - 'a';
		else if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= '2' && c <= '7')
			v = c - '2' + 26;
		else
			return false;
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)((acc >> bits) & 0xff);
		}
	}
	return true;
}

/* HMAC-SHA256(key, MAC_LABEL || payload), first VERP_MAC_OCTETS octets. Returns 0 or -1. */
static int mac_compute(const unsigned char *key, size_t keylen,
                       const unsigned char payload[PAYLOAD_OCTETS],
                       unsigned char mac[VERP_MAC_OCTETS])
{
	unsigned char msg[sizeof MAC_LABEL - 1 + PAYLOAD_OCTETS];
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int full_len = 0;
	if (keylen < VERP_KEY_MIN || keylen > INT32_MAX)
		return -1;
	memcpy(msg, MAC_LABEL, sizeof MAC_LABEL - 1);
	memcpy(msg + sizeof MAC_LABEL - 1, payload, PAYLOAD_OCTETS);
	if (HMAC(EVP_sha256(), key, (int)keylen, msg, sizeof msg, full, &full_len) == NULL ||
	    full_len < VERP_MAC_OCTETS)
		return -1;
	memcpy(mac, full, VERP_MAC_OCTETS);
	OPENSSL_cleanse(full, sizeof full);
	return 0;
}

static bool domain_ok(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > VERP_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c <= ' ' || c == 127 || c == '@' || c == '<' || c == '>')
			return false;
	}
	return true;
}

int verp_address_make(const unsigned char *key, size_t keylen, const char *id, unsigned rcpt_index,
                      const char *bounce_domain, char *out, size_t outlen)
{
	unsigned char token[TOKEN_OCTETS];
	if (strlen(id) != VERP_ID_LEN || !domain_ok(bounce_domain))
		return -1;
	for (size_t i = 0; i < VERP_ID_LEN / 2; i++) {
		int hi = codec_hex_digit(id[2 * i]), lo = codec_hex_digit(id[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		token[i] = (unsigned char)(hi * 16 + lo);
	}
	uint32_t idx = rcpt_index;
	token[8] = (unsigned char)(idx >> 24);
	token[9] = (unsigned char)(idx >> 16);
	token[10] = (unsigned char)(idx >> 8);
	token[11] = (unsigned char)idx;
	if (mac_compute(key, keylen, token, token + PAYLOAD_OCTETS) != 0)
		return -1;
	size_t pl = sizeof VERP_PREFIX - 1, dl = strlen(bounce_domain);
	if (outlen < pl + VERP_TOKEN_LEN + 1 + dl + 1)
		return -1;
	memcpy(out, VERP_PREFIX, pl);
	base32_encode(token, out + pl);
	out[pl + VERP_TOKEN_LEN] = '@';
	memcpy(out + pl + VERP_TOKEN_LEN + 1, bounce_domain, dl + 1);
	return 0;
}

enum verp_status verp_address_parse(const unsigned char *key, size_t keylen,
                                    const char *local_part_or_address, char id_out[VERP_ID_LEN + 1],
                                    unsigned *rcpt_index_out)
{
	const char *s = local_part_or_address;
	size_t n = strlen(s);
	if (n > 0 && s[0] == '<') {
		s++;
		n--;
		if (n > 0 && s[n - 1] == '>')
			n--;
	}
	const char *at = memchr(s, '@', n);
	if (at != NULL)
		n = (size_t)(at - s);
	size_t pl = sizeof VERP_PREFIX - 1;
	if (n < pl || strncasecmp(s, VERP_PREFIX, pl) != 0)
		return VERP_NOT_VERP;
	unsigned char token[TOKEN_OCTETS], mac[VERP_MAC_OCTETS];
	if (n - pl != VERP_TOKEN_LEN || !base32_decode(s + pl, token))
		return VERP_MALFORMED;
	if (mac_compute(key, keylen, token, mac) != 0 ||
	    CRYPTO_memcmp(mac, token + PAYLOAD_OCTETS, VERP_MAC_OCTETS) != 0)
		return VERP_BAD_MAC;
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < VERP_ID_LEN / 2; i++) {
		id_out[2 * i] = hex[token[i] >> 4];
		id_out[2 * i + 1] = hex[token[i] & 15];
	}
	id_out[VERP_ID_LEN] = '\0';
	*rcpt_index_out = (unsigned)((uint32_t)token[8] << 24 | (uint32_t)token[9] << 16 |
	                             (uint32_t)token[10] << 8 | token[11]);
	return VERP_OK;
}

const char *verp_status_name(enum verp_status s)
{
	switch (s) {
	case VERP_OK:
		return "ok";
	case VERP_NOT_VERP:
		return "not_verp";
	case VERP_MALFORMED:
		return "malformed";
	case VERP_BAD_MAC:
		return "bad_mac";
	}
	return "unknown";
}
