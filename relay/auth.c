/*
 * auth.c: password hashing, SASL decoding, the success cache and CIDR matching (see auth.h).
 * RFC 4648 (base64), RFC 4616 (PLAIN), RFC 7914 (scrypt, through OpenSSL's EVP_PBE_scrypt).
 */
#include "relay/auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "relay/codec.h"

/* scrypt N=2^14, r=8, p=1: 16 MiB and about 50 ms per check on one core. */
#define SCRYPT_LOG_N     14
#define SCRYPT_R         8
#define SCRYPT_P         1
#define SCRYPT_SALT      16
#define SCRYPT_KEY       32
#define SCRYPT_MAXMEM    (64u * 1024 * 1024)
#define AUTH_CACHE_SLOTS 1024

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outlen)
{
	if (len % 4 != 0)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)in[i + (size_t)j];
			if (c == '=' && i + 4 == len && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad > 0) /* data after padding */
				return -1;
			v[j] = codec_base64_digit((char)c);
			if (v[j] < 0)
				return -1;
		}
		uint32_t n = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		size_t emit = 3 - (size_t)pad;
		if (o + emit > outlen)
			return -1;
		out[o++] = (unsigned char)(n >> 16);
		if (emit > 1)
			out[o++] = (unsigned char)(n >> 8);
		if (emit > 2)
			out[o++] = (unsigned char)n;
	}
	return (long)o;
}

long auth_base64_encode(const unsigned char *in, size_t len, char *out, size_t outlen)
{
	size_t need = (len + 2) / 3 * 4;
	if (need + 1 > outlen)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t n = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			n |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			n |= in[i + 2];
		out[o++] = b64chars[(n >> 18) & 63];
		out[o++] = b64chars[(n >> 12) & 63];
		out[o++] = i + 1 < len ? b64chars[(n >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64chars[n & 63] : '=';
	}
	out[o] = '\0';
	return (long)o;
}

int auth_plain_decode(const char *b64, size_t len, char *user, size_t userlen, char *pass,
                      size_t passlen)
{
	unsigned char raw[3 * AUTH_NAME_MAX + AUTH_PASSWORD_MAX];
	long n = auth_base64_decode(b64, len, raw, sizeof raw);
	if (n < 0)
		return -1;
	const unsigned char *end = raw + n;
	const unsigned char *z1 = memchr(raw, '\0', (size_t)n);
	if (z1 == NULL)
		return -1;
	const unsigned char *authc = z1 + 1;
	const unsigned char *z2 = memchr(authc, '\0', (size_t)(end - authc));
	if (z2 == NULL)
		return -1;
	const unsigned char *pw = z2 + 1;
	size_t zlen = (size_t)(z1 - raw), ulen = (size_t)(z2 - authc), plen = (size_t)(end - pw);
	if (ulen == 0 || plen == 0 || ulen >= userlen || plen >= passlen ||
	    memchr(pw, '\0', plen) != NULL)
		return -1;
	/* acting as another user (authzid) is not supported */
	if (zlen != 0 && (zlen != ulen || memcmp(raw, authc, ulen) != 0))
		return -1;
	memcpy(user, authc, ulen);
	user[ulen] = '\0';
	memcpy(pass, pw, plen);
	pass[plen] = '\0';
	return 0;
}

static int scrypt_derive(const char *password, const unsigned char *salt, size_t saltlen,
                         unsigned logn, unsigned r, unsigned p, unsigned char *key, size_t keylen)
{
	if (logn < 10 || logn > 20 || r < 1 || r > 32 || p < 1 || p > 16)
		return -1;
	if (EVP_PBE_scrypt(password, strlen(password), salt, saltlen, (uint64_t)1 << logn, r, p,
	                   SCRYPT_MAXMEM, key, keylen) != 1)
		return -1;
	return 0;
}

int auth_password_hash(const char *password, char *out, size_t outlen)
{
	unsigned char salt[SCRYPT_SALT], key[SCRYPT_KEY];
	char salt64[32], key64[64];
	if (RAND_bytes(salt, sizeof salt) != 1)
		return -1;
	if (scrypt_derive(password, salt, sizeof salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, key,
	                  sizeof key) == -1)
		return -1;
	if (auth_base64_encode(salt, sizeof salt, salt64, sizeof salt64) < 0 ||
	    auth_base64_encode(key, sizeof key, key64, sizeof key64) < 0)
		return -1;
	int n = snprintf(out, outlen, "$scrypt$ln=%d,r=%d,p=%d$%s$%s", SCRYPT_LOG_N, SCRYPT_R,
	                 SCRYPT_P, salt64, key64);
	OPENSSL_cleanse(key, sizeof key);
	return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

bool auth_password_verify(const char *password, const char *stored)
{
	unsigned logn, r, p;
	char salt64[64], key64[128];
	if (sscanf(stored, "$scrypt$ln=%2u,r=%2u,p=%2u$%63[A-Za-z0-9+/=]$%127[A-Za-z0-9+/=]", &logn,
	           &r, &p, salt64, key64) != 5)
		return false;
	unsigned char salt[48], want[96], got[96];
	long slen = auth_base64_decode(salt64, strlen(salt64), salt, sizeof salt);
	long klen = auth_base64_decode(key64, strlen(key64), want, sizeof want);
	if (slen < 8 || klen < 16)
		return false;
	if (scrypt_derive(password, salt, (size_t)slen, logn, r, p, got, (size_t)klen) == -1)
		return false;
	bool ok = CRYPTO_memcmp(got, want, (size_t)klen) == 0;
	OPENSSL_cleanse(got, sizeof got);
	return ok;
}

int auth_password_generate(char *out, size_t chars)
{
	static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
	const size_t n = sizeof alphabet - 1;
	for (size_t i = 0; i < chars;) {
		unsigned char r;
		if (RAND_bytes(&r, 1) != 1)
			return -1;
		if (r >= 256 - 256 % n) /* reject to avoid modulo bias */
			continue;
		out[i++] = alphabet[r % n];
	}
	out[chars] = '\0';
	return 0;
}

struct auth_cache_slot {
	unsigned char digest[SHA256_DIGEST_LENGTH];
	uint64_t expires;
};

struct auth_cache {
	unsigned ttl;
	unsigned char key[32];
	struct auth_cache_slot slots[AUTH_CACHE_SLOTS];
};

struct auth_cache *auth_cache_new(unsigned ttl_seconds)
{
	struct auth_cache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->ttl = ttl_seconds;
	if (RAND_bytes(c->key, sizeof c->key) != 1) {
		free(c);
		return NULL;
	}
	return c;
}

void auth_cache_free(struct auth_cache *c)
{
	if (c == NULL)
		return;
	OPENSSL_cleanse(c, sizeof *c);
	free(c);
}

/* HMAC-SHA256 under the cache's random key over user, password and stored hash (each with its
 * NUL, so fields cannot run into each other). Returns 0 or -1. */
static int cache_digest(const struct auth_cache *c, const char *user, const char *password,
                        const char *stored, unsigned char *out)
{
	unsigned char msg[AUTH_NAME_MAX + AUTH_PASSWORD_MAX + AUTH_HASH_MAX + 3];
	size_t ul = strnlen(user, AUTH_NAME_MAX), pl = strnlen(password, AUTH_PASSWORD_MAX),
	       sl = strnlen(stored, AUTH_HASH_MAX);
	size_t n = 0;
	memcpy(msg + n, user, ul);
	n += ul;
	msg[n++] = '\0';
	memcpy(msg + n, password, pl);
	n += pl;
	msg[n++] = '\0';
	memcpy(msg + n, stored, sl);
	n += sl;
	msg[n++] = '\0';
	unsigned int dlen = SHA256_DIGEST_LENGTH;
	unsigned char *ok = HMAC(EVP_sha256(), c->key, sizeof c->key, msg, n, out, &dlen);
	OPENSSL_cleanse(msg, sizeof msg);
	return ok == NULL ? -1 : 0;
}

bool auth_cache_hit(struct auth_cache *c, const char *user, const char *password,
                    const char *stored, uint64_t now_s)
{
	if (c == NULL || c->ttl == 0)
		return false;
	unsigned char d[SHA256_DIGEST_LENGTH];
	if (cache_digest(c, user, password, stored, d) == -1)
		return false;
	struct auth_cache_slot *s = &c->slots[(d[0] | (unsigned)d[1] << 8) % AUTH_CACHE_SLOTS];
	return s->expires > now_s && CRYPTO_memcmp(s->digest, d, sizeof d) == 0;
}

void auth_cache_put(struct auth_cache *c, const char *user, const char *password,
                    const char *stored, uint64_t now_s)
{
	if (c == NULL || c->ttl == 0)
		return;
	unsigned char d[SHA256_DIGEST_LENGTH];
	if (cache_digest(c, user, password, stored, d) == -1)
		return;
	struct auth_cache_slot *s = &c->slots[(d[0] | (unsigned)d[1] << 8) % AUTH_CACHE_SLOTS];
	memcpy(s->digest, d, sizeof d);
	s->expires = now_s + c->ttl;
}

/* Parses "ADDR[/BITS]" into family, 16 address bytes and a prefix length. */
static int cidr_parse(const char *s, size_t len, int *family, unsigned char *bytes, unsigned *bits)
{
	char text[INET6_ADDRSTRLEN + 5];
	if (len == 0 || len >= sizeof text)
		return -1;
	memcpy(text, s, len);
	text[len] = '\0';
	char *slash = strchr(text, '/');
	long want = -1;
	if (slash != NULL) {
		*slash = '\0';
		const char *b = slash + 1;
		size_t bl = strlen(b);
		if (bl == 0 || bl > 3)
			return -1;
		want = 0;
		for (size_t i = 0; i < bl; i++) {
			if (b[i] < '0' || b[i] > '9')
				return -1;
			want = want * 10 + (b[i] - '0');
		}
	}
	memset(bytes, 0, 16);
	if (inet_pton(AF_INET, text, bytes) == 1) {
		*family = AF_INET;
		if (want > 32)
			return -1;
		*bits = want < 0 ? 32 : (unsigned)want;
	} else if (inet_pton(AF_INET6, text, bytes) == 1) {
		*family = AF_INET6;
		if (want > 128)
			return -1;
		*bits = want < 0 ? 128 : (unsigned)want;
	} else {
		return -1;
	}
	return 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

int auth_cidr_check(const char *cidr)
{
	int family;
	unsigned char bytes[16];
	unsigned bits;
	return cidr_parse(cidr, strlen(cidr), &family, bytes, &bits);
}

bool auth_net_contains(const char *cidrs, const struct sockaddr *addr)
{
	unsigned char peer[16];
	int pfamily = addr->sa_family;
	if (pfamily == AF_INET) {
		memcpy(peer, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
	} else if (pfamily == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) { /* ::ffff:a.b.c.d matches IPv4 networks */
			pfamily = AF_INET;
			memcpy(peer, &a6->s6_addr[12], 4);
		} else {
			memcpy(peer, a6, 16);
		}
	} else {
		return false;
	}
	const char *p = cidrs;
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		const char *e = p;
		while (*e != '\0' && *e != ' ' && *e != ',')
			e++;
		int family;
		unsigned char net[16];
		unsigned bits;
		if (e > p && cidr_parse(p, (size_t)(e - p), &family, net, &bits) == 0 &&
		    family == pfamily && prefix_equal(peer, net, bits))
			return true;
		p = e;
	}
	return false;
}
