/*
 * dkkeys.h: the DKIM key store on disk: per domain, a list of selectors (algorithm, state,
 * times, public key) and one private key file per selector. Used by postinoctl (relay/
 * ctl_dkim.c) to administer keys and by dkim/dksign.c to load the keys that sign.
 *
 * Layout under <data_dir>/dkim/ (folder mode 0700, files 0600, never in Redis, never logged):
 *
 *   generation            a counter rewritten (new inode) after every change; the daemon
 *                         stats it to notice changes cheaply (dksign_ctx_reload), so a
 *                         change made by hand must end with `touch generation`
 *   lock                  flock()ed by writers, so two postinoctl runs do not interleave
 *   DOMAIN/selectors      one line per selector, see dkkeys.c
 *   DOMAIN/SELECTOR.pem   the private key, PKCS#8 PEM, unencrypted
 *
 * Selector life cycle (RFC 6376 3.1 selectors; M3AAWG key rotation practice):
 *
 *   pending --activate--> active --(another key of its algorithm activated)--> retiring
 *   retiring --(grace period over: dkkeys_domain_retire_due)--> retired (private key deleted)
 *
 * Only active keys sign. A new domain's first key of an algorithm is active at once (nothing
 * is published yet, so nothing can break); later keys of that algorithm start pending, and the
 * DNS checker calls dkkeys_selector_activate() once their TXT record is visible.
 *
 * Every function here is synchronous file I/O: for postinoctl, start-up and the reload timer,
 * never for a pool thread's hot path. Errors come back as text in err (errlen > 0); nothing
 * is logged here.
 */
#ifndef POSTINO_DKKEYS_H
#define POSTINO_DKKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/buf.h"

#define DKKEYS_DOMAIN_MAX       253  /* RFC 1035 2.3.4, without the final dot */
#define DKKEYS_SELECTOR_MAX     63   /* our limit: one DNS label's worth, dots allowed */
#define DKKEYS_SELECTORS_MAX    16   /* per domain, all states */
#define DKKEYS_PUBLIC_MAX       800  /* base64 of a 4096-bit RSA SubjectPublicKeyInfo is 736 */
#define DKKEYS_RSA_BITS_MIN     1024 /* RFC 8301 3.2: verifiers must accept 1024 and up */
#define DKKEYS_RSA_BITS_MAX     4096
#define DKKEYS_RSA_BITS_DEFAULT 2048
#define DKKEYS_FILE_MAX         (64 * 1024) /* a selectors file or a PEM key */

enum dkkeys_algorithm {
	DKKEYS_ALG_RSA = 1,     /* rsa-sha256 (RFC 6376, RFC 8301) */
	DKKEYS_ALG_ED25519 = 2, /* ed25519-sha256 (RFC 8463) */
};

enum dkkeys_state {
	DKKEYS_STATE_PENDING,
	DKKEYS_STATE_ACTIVE,
	DKKEYS_STATE_RETIRING,
	DKKEYS_STATE_RETIRED,
};

struct dkkeys_selector {
	char name[DKKEYS_SELECTOR_MAX + 1];
	enum dkkeys_algorithm algorithm;
	unsigned bits; /* RSA modulus size; 256 for Ed25519 */
	enum dkkeys_state state;
	int64_t created;                        /* seconds since the epoch */
	int64_t retire_at;                      /* retiring: when it becomes retired; 0 otherwise */
	char public_key[DKKEYS_PUBLIC_MAX + 1]; /* the p= value (base64) */
};

struct dkkeys_domain {
	char name[DKKEYS_DOMAIN_MAX + 1]; /* lowercase */
	size_t count;
	struct dkkeys_selector sel[DKKEYS_SELECTORS_MAX]; /* in file order (creation order) */
};

const char *dkkeys_algorithm_name(enum dkkeys_algorithm alg); /* "rsa", "ed25519" */
const char *dkkeys_state_name(enum dkkeys_state state);       /* "pending", ... */

/* Lowercases and checks a domain (LDH labels of 1..63, total <= 253, no final dot) into out
 * (>= DKKEYS_DOMAIN_MAX + 1 bytes). Returns 0, or -1 when it is not a domain name. */
int dkkeys_domain_normalize(const char *in, char *out, size_t outlen);
/* Checks a selector: lowercase LDH labels separated by dots, 1..DKKEYS_SELECTOR_MAX octets.
 * Returns 0 or -1. */
int dkkeys_selector_check(const char *selector);

/* Reads one domain's selectors into *out (out->count == 0 when the domain has none).
 * Returns 0, or -1 with the reason in err (unreadable or malformed selectors file). */
int dkkeys_domain_read(const char *data_dir, const char *domain, struct dkkeys_domain *out,
                       char *err, size_t errlen);

/* Calls fn for every domain of the store, in name order; fn returns 0 to go on or -1 to stop
 * (then the walk returns -1, and fn should have written err). A missing store is empty.
 * The struct passed to fn is borrowed for the call. Returns 0 or -1. */
typedef int dkkeys_walk_fn(const struct dkkeys_domain *d, void *arg, char *err, size_t errlen);
int dkkeys_store_walk(const char *data_dir, dkkeys_walk_fn *fn, void *arg, char *err,
                      size_t errlen);

/*
 * Generates a key (alg, RSA bits; bits is ignored for Ed25519) for domain under selector
 * (NULL: the default name "p<YYYYMM>r" or "p<YYYYMM>e" of now, with a counter appended when
 * taken: p202501r2, ...). The new selector is active when the domain has no active key of
 * that algorithm, else pending. Fills *out. Returns 0, or -1 with the reason in err.
 */
int dkkeys_key_generate(const char *data_dir, const char *domain, const char *selector,
                        enum dkkeys_algorithm alg, unsigned bits, int64_t now,
                        struct dkkeys_selector *out, char *err, size_t errlen);

/* Adopts the unencrypted PEM private key (RSA 1024..4096 bits, or Ed25519) in the file at
 * pem_path as domain's selector; state as for dkkeys_key_generate. Returns 0 or -1. */
int dkkeys_key_import(const char *data_dir, const char *domain, const char *selector,
                      const char *pem_path, int64_t now, struct dkkeys_selector *out, char *err,
                      size_t errlen);

/*
 * Starts a rotation: for each algorithm with an active key, a new pending key (same RSA size)
 * under a default selector name. The active keys keep signing until the new ones are
 * activated. Fills out[0..*count). Returns 0, or -1 (no active key, or a rotation of that
 * algorithm already pending, or an I/O error) with nothing changed.
 */
int dkkeys_domain_rotate(const char *data_dir, const char *domain, int64_t now,
                         struct dkkeys_selector out[2], size_t *count, char *err, size_t errlen);

/*
 * The DNS checker's transition once selector's record is visible: pending -> active, and
 * every other active key of the same algorithm -> retiring until now + grace (seconds).
 * Activating an active selector does nothing and returns 0. Returns 0 or -1.
 */
int dkkeys_selector_activate(const char *data_dir, const char *domain, const char *selector,
                             int64_t now, int64_t grace, char *err, size_t errlen);

/* Moves domain's retiring selectors whose time has come (retire_at <= now) to retired and
 * deletes their private keys. *retired gets how many. Returns 0 or -1. */
int dkkeys_domain_retire_due(const char *data_dir, const char *domain, int64_t now, size_t *retired,
                             char *err, size_t errlen);

/* Deletes one selector (its key and its line), or with selector NULL the whole domain.
 * Returns 0, or -1 (unknown domain or selector, I/O error). */
int dkkeys_selector_delete(const char *data_dir, const char *domain, const char *selector,
                           char *err, size_t errlen);

/*
 * Appends the DNS record to publish for s, in zone-file form with the value split into
 * strings of at most 255 octets (RFC 1035 3.3.14, RFC 6376 3.6.2.2):
 *   SEL._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; p=..." "..." )
 * plus a final newline. Returns 0 or -1 (out of memory).
 */
int dkkeys_record_format(const char *domain, const struct dkkeys_selector *s, struct buf *out);

#endif
