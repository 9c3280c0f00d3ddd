/*
 * dksign.h: DKIM signing of stored messages (RFC 6376 with c=relaxed/relaxed; rsa-sha256 of
 * RFC 8301 and ed25519-sha256 of RFC 8463), with the keys of the on-disk store (dkkeys.h)
 * parsed once and cached in an immutable snapshot.
 *
 * One struct dksign_ctx per worker process: created at start-up, reloaded from the event loop
 * thread by a timer, used by any number of pool threads at once through dksign_message().
 *
 * How the work is split: libopendkim (the only user of <opendkim/dkim.h> in the tree)
 * canonicalizes and hashes the header fields; dksign hashes the body with its own relaxed
 * canonicalizer (held equal to libopendkim's by the tests), writes the DKIM-Signature field
 * and signs with the cached OpenSSL key. libopendkim's own signing path re-reads the PEM key
 * for every message (dkim_sign() takes key bytes), which with OpenSSL 3.0 costs more than
 * the RSA signature itself; see dksign.c for the numbers and the mechanics.
 */
#ifndef POSTINO_DKSIGN_H
#define POSTINO_DKSIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/buf.h"

#define DKSIGN_ALG_RSA     1u /* rsa-sha256 */
#define DKSIGN_ALG_ED25519 2u /* ed25519-sha256 */

/* Signed header fields: at most this many instances in one message (more is MALFORMED). */
#define DKSIGN_SIGNED_FIELDS_MAX 64
/* t= must be at least this (2001-09-09): see dksign.c on libopendkim's clock checks. */
#define DKSIGN_TIME_MIN 1000000000LL
/* x= - t= at most ten years. */
#define DKSIGN_LIFETIME_MAX (10LL * 366 * 86400)

enum dksign_result {
	DKSIGN_OK,        /* signature field(s) appended to out */
	DKSIGN_NO_KEY,    /* no usable key for the From domain nor (when allowed) the fallback */
	DKSIGN_MALFORMED, /* the header section does not parse, From is absent or repeated, a
	                     signed field has control octets, a bare CR or LF in the message,
	                     more than DKSIGN_SIGNED_FIELDS_MAX signed fields */
	DKSIGN_ERROR,     /* anything else (out of memory, a library failure): see err */
};

struct dksign_options {
	unsigned algorithms;         /* DKSIGN_ALG_RSA | DKSIGN_ALG_ED25519: what to sign with,
	                                when the domain has an active key of that algorithm */
	int64_t now;                 /* t= (seconds since the epoch; >= DKSIGN_TIME_MIN) */
	int64_t lifetime;            /* x= t + lifetime when > 0; no x= when 0 */
	const char *fallback_domain; /* d= when from_domain has no key; NULL or "": none */
	bool refuse_unknown;         /* true: DKSIGN_NO_KEY instead of the fallback */
	bool body_by_libopendkim;    /* hash the body with a libopendkim run rather than
	                                dksign's own canonicalizer: same result, ~20 us more
	                                per 5 KB, and DKSIGN_ERROR for a body whose last line
	                                has no CRLF (for tests and dkimbench -L; see dksign.c) */
};

struct dksign_ctx;

/*
 * Creates the context: libopendkim's library handle and the key snapshot of
 * <data_dir>/dkim (every active key read and parsed once; a missing store is an empty one).
 * Returns NULL with the reason in err (a corrupt key or selectors file, a library failure).
 * data_dir is copied.
 */
struct dksign_ctx *dksign_ctx_new(const char *data_dir, char *err, size_t errlen);
/* Frees the context. No pool thread may be inside dksign_message(). No-op on NULL. */
void dksign_ctx_free(struct dksign_ctx *ctx);

/*
 * Checks whether the store changed (one stat() of its generation file) and if so builds a new
 * snapshot (keys whose files did not change are shared with the old one, new ones parsed) and
 * swaps it in; messages being signed finish with the snapshot they started with. Returns 1
 * reloaded, 0 unchanged, -1 error with the reason in err and the old snapshot kept (a failed
 * generation is not retried until the store changes again). Call it from one thread at a
 * time (the event loop's timer); it does file I/O and parses new keys (~0.5 ms each).
 */
int dksign_ctx_reload(struct dksign_ctx *ctx, char *err, size_t errlen);

/* Domains and keys in the current snapshot (for a log line after a reload). */
void dksign_ctx_counts(struct dksign_ctx *ctx, size_t *domains, size_t *keys);

/*
 * Signs msg[0..len): the whole message as Postino stores it (CRLF line ends, header section,
 * empty line, body). On DKSIGN_OK appends to out one DKIM-Signature field per algorithm used
 * (rsa-sha256 first, then ed25519-sha256), each folded and ending in CRLF, for the caller to
 * put in front of the message; on any other result out is left as it was.
 *
 * d= is from_domain (any case) when the store has an active key of a wanted algorithm for it;
 * else, unless opt->refuse_unknown, opt->fallback_domain; else DKSIGN_NO_KEY. Signed fields:
 * From, To, Cc, Subject, Date, Message-ID, Reply-To, MIME-Version, Content-Type,
 * Content-Transfer-Encoding, List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID when
 * present; From, Subject, To, Date, List-Unsubscribe and List-Unsubscribe-Post oversigned
 * (h= names them once more than they occur, so that any added instance breaks the signature).
 *
 * Thread-safe: any number of threads may call it at once with the same ctx. err gets the
 * reason for every result but DKSIGN_OK.
 */
enum dksign_result dksign_message(struct dksign_ctx *ctx, const struct dksign_options *opt,
                                  const char *from_domain, const char *msg, size_t len,
                                  struct buf *out, char *err, size_t errlen);

/* "ok", "no key", "malformed", "error". */
const char *dksign_result_name(enum dksign_result r);

#endif
