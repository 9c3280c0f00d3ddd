/*
 * auth.h: SMTP AUTH support (RFC 4954, RFC 4616 PLAIN, the LOGIN mechanism): strict base64,
 * SASL PLAIN decoding, salted slow password hashes (scrypt from OpenSSL, parameters stored
 * with the hash), a cache of recent successful checks, and CIDR matching for users bound to
 * client networks.
 *
 * Hash format: "$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt base64>$<key base64>".
 */
#ifndef POSTINO_AUTH_H
#define POSTINO_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_NAME_MAX     255 /* user names, like SMTP local parts, are kept short */
#define AUTH_PASSWORD_MAX 1024
#define AUTH_HASH_MAX     256

/* Strict base64 (RFC 4648, padding required, no whitespace). Decodes into out (outlen bytes).
 * Returns the decoded length, or -1 on bad input or when out is too small. Pure. */
long auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outlen);
/* Encodes into out (NUL-terminated). Returns the length or -1 when out is too small. */
long auth_base64_encode(const unsigned char *in, size_t len, char *out, size_t outlen);

/* Decodes a PLAIN response (base64 of authzid NUL authcid NUL passwd). Fails (-1) on bad
 * base64, a missing NUL, an empty user or password, a NUL-free field over the limits, or an
 * authzid different from the authcid. Pure. */
int auth_plain_decode(const char *b64, size_t len, char *user, size_t userlen, char *pass,
                      size_t passlen);

/* Hashes password with a fresh salt (slow: tens of ms; call it off the event loop). */
int auth_password_hash(const char *password, char *out, size_t outlen);
/* Returns true when password matches stored (constant-time compare). Slow, like hashing. */
bool auth_password_verify(const char *password, const char *stored);
/* Writes a random password of `chars` letters and digits (NUL-terminated). Returns 0/-1. */
int auth_password_generate(char *out, size_t chars);

/* A small per-process cache of successful checks, keyed by a keyed digest of user, password
 * and stored hash, so a changed password misses. Event-loop thread only. */
struct auth_cache;
struct auth_cache *auth_cache_new(unsigned ttl_seconds);
void auth_cache_free(struct auth_cache *c);
bool auth_cache_hit(struct auth_cache *c, const char *user, const char *password,
                    const char *stored, uint64_t now_s);
void auth_cache_put(struct auth_cache *c, const char *user, const char *password,
                    const char *stored, uint64_t now_s);

/* True when addr is inside one of the space-separated CIDRs ("10.0.0.0/8 ::1/128 1.2.3.4").
 * Unparsable entries never match. Pure. */
bool auth_net_contains(const char *cidrs, const struct sockaddr *addr);
/* Checks one CIDR's syntax. Returns 0 or -1. */
int auth_cidr_check(const char *cidr);

#endif
