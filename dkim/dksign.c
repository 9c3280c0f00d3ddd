/*
 * dksign.c: DKIM signing (contracts in dksign.h). Owns the process's libopendkim library
 * handle and the snapshot of parsed signing keys; the only file of the tree that includes
 * <opendkim/dkim.h>.
 *
 * RFCs: RFC 6376 (3.4.2 relaxed header and 3.4.4 relaxed body canonicalization, 3.5 the
 * DKIM-Signature tags, 3.7 the hashes, 5.4 and 5.4.2 signed and oversigned header fields),
 * RFC 8301 (rsa-sha256 only), RFC 8463 (ed25519-sha256: PureEdDSA over the SHA-256 hash),
 * RFC 5322 (3.6: exactly one From).
 *
 * Why libopendkim does not sign here. dkim_sign() takes the private key as PEM bytes, and
 * every handle's dkim_eom() parses them again (dkim_eom_sign -> dkim_privkey_load ->
 * PEM_read_bio_PrivateKey: one call per message, counted with gdb), then signs through
 * EVP_PKEY_get1_RSA and RSA_sign on that fresh key. With OpenSSL 3.0.22 on the 2-core build
 * host: a PEM parse takes 330-500 us for RSA-2048 and 440-620 us for Ed25519, against 246 us
 * for an RSA-2048 signature with a loaded key (openssl speed) and ~40 us for Ed25519; a 5 KB
 * message through dkim_sign() ... dkim_eom() took 950-1460 us (RSA) and 450-680 us (Ed25519),
 * about a quarter of the OpenSSL rate where the DKIM issue asks for 85 %. libopendkim 2.11
 * has no call that takes a parsed key (DER through dkim_sign() is cut by its strlen() at the
 * first zero octet), and dkim_getsighdr_d() refuses to run unless the handle loaded the key.
 *
 * What happens instead. dksign writes the DKIM-Signature field itself and signs with the key
 * parsed once at load time (a pool of ready OpenSSL contexts per key, below). The header
 * hash comes from libopendkim's verifying side, which canonicalizes and hashes a message
 * against a DKIM-Signature field given as text: the complete fields (one per algorithm, every
 * tag but the b= value, which verifiers strip anyway) go in with the signed header fields to
 * a dkim_verify() handle, and dkim_sig_gethashes() gives the header hashes. The handle is set
 * up so that it never verifies anything: DKIM_LIBFLAGS_DELAYSIGPROC keeps dkim_eoh() from
 * fetching keys, a final callback marks every signature "ignored" so that dkim_eom() stops
 * after hashing, and a key lookup callback answering "not found" stands in for DNS should a
 * path ever ask. libopendkim's clock checks (expired, or from the future) would refuse a
 * field dated by a test clock, so the handle allows a clock drift of DKSIGN_TIME_MIN seconds,
 * which is why t= must be at least that.
 *
 * The header hash covers bh=, so the body hash must come first, from another run. A
 * libopendkim run over a 5 KB body costs ~27 us (its relaxed body canonicalization goes
 * octet by octet), which kept whole-message RSA signing at 79-86 % of OpenSSL's rate; so by
 * default the body goes through body_hash_relaxed() below (~6 us for 5 KB, most of it
 * SHA-256), and dksign_options.body_by_libopendkim switches back to the libopendkim run. The
 * unit tests hold the two to the same result on every edge case and on 300 random bodies.
 * Per 5 KB message, single thread: ~7 us of libopendkim header run, ~6 us of body hash,
 * ~5 us of parsing and writing; 265-281 us in all for RSA against 258 us for the bare
 * signature, 55 us for Ed25519.
 *
 * Choices, so that a reader does not have to guess:
 *   - The header section is split by relay/header.h (the daemon's own strict parser);
 *     control octets other than HTAB in a signed field are MALFORMED (libopendkim stops a
 *     header at NUL and folds VT/FF as spaces, unlike RFC 6376 verifiers); so is a bare CR or
 *     LF anywhere, and a From count other than one.
 *   - Only the signed fields are given to libopendkim: the others cannot change the hashes,
 *     and an existing DKIM-Signature of the message can then never be mistaken for ours.
 *   - h= lists the signed fields present in message order, under our spelling of their
 *     names, then the oversigned names once each.
 *   - Of several active keys of one algorithm, the most recently created signs.
 */
#include "dkim/dksign.h"
#include "dkim/dkkeys.h"
#include "dkim/internal.h"
#include "relay/header.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <opendkim/dkim.h>

_Static_assert(DKSIGN_ALG_RSA == DKKEYS_ALG_RSA, "algorithm bits shared with dkkeys.h");
_Static_assert(DKSIGN_ALG_ED25519 == DKKEYS_ALG_ED25519, "algorithm bits shared with dkkeys.h");

#define HASH_LEN    32  /* SHA-256 */
#define SIG_MAX     512 /* RSA-4096 */
#define FOLD_COLUMN 78  /* RFC 5322 2.1.1: lines SHOULD be at most 78 characters */
#define NALG        2   /* index 0: RSA, 1: Ed25519 */

static const unsigned alg_bits[NALG] = {DKSIGN_ALG_RSA, DKSIGN_ALG_ED25519};
static const char *const alg_tags[NALG] = {"rsa-sha256", "ed25519-sha256"};

/* The fields we sign when present (RFC 6376 5.4.1's list, trimmed to what a bulk sender's
 * receivers look at, plus the RFC 8058 pair and Feedback-ID). */
static const char *const signed_names[] = {
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
};
#define NSIGNED   (sizeof signed_names / sizeof signed_names[0])
#define NAME_FROM 0

/* Named once more in h= than they occur: an added instance breaks the signature. */
static const char *const oversigned_names[] = {
    "From", "Subject", "To", "Date", "List-Unsubscribe", "List-Unsubscribe-Post",
};
#define NOVERSIGNED (sizeof oversigned_names / sizeof oversigned_names[0])

const char *dksign_result_name(enum dksign_result r)
{
	switch (r) {
	case DKSIGN_OK:
		return "ok";
	case DKSIGN_NO_KEY:
		return "no key";
	case DKSIGN_MALFORMED:
		return "malformed";
	case DKSIGN_ERROR:
		return "error";
	}
	return "?";
}

/* ---- the key snapshot ---- */

/*
 * A ready-to-sign OpenSSL context. RSA ones own a copy of the key: OpenSSL's RSA blinding
 * state lives in the key, and threads sharing one key take turns on a lock for it (and its
 * refresh every 32 signatures costs a modular inverse under that lock), so each context has
 * its own. Contexts wait in their key's pool between messages; a thread takes one, signs,
 * puts it back. Creating one costs ~3 us (EVP_PKEY_CTX_new + init, algorithm fetch).
 */
struct signer {
	EVP_PKEY *key;          /* RSA: EVP_PKEY_dup()'d; Ed25519: up-ref'd */
	EVP_PKEY_CTX *pkey_ctx; /* RSA: EVP_PKEY_sign() after sign_init, padding and md */
	EVP_MD_CTX *md_ctx;     /* Ed25519: EVP_DigestSign() after DigestSignInit */
};

#define SIGNER_POOL_MAX 64 /* contexts kept per key; more concurrent signers make new ones */

struct signer_pool {
	pthread_mutex_t lock;
	size_t count;
	struct signer *idle[SIGNER_POOL_MAX];
};

struct sign_key {
	bool present;
	char selector[DKKEYS_SELECTOR_MAX + 1];
	EVP_PKEY *pkey; /* shared (up-ref'd) between snapshots while its file is unchanged */
	struct dkkeys_stamp stamp;
	struct signer_pool *pool; /* this snapshot's contexts for pkey */
};

struct sign_domain {
	char name[DKKEYS_DOMAIN_MAX + 1];
	struct sign_key key[NALG];
};

/* Immutable once published; freed when the last user lets go. */
struct snapshot {
	atomic_uint refs;
	size_t count, cap, keys;
	struct sign_domain *domains; /* sorted by name (the store walks in name order) */
};

struct dksign_ctx {
	DKIM_LIB *lib;
	char data_dir[PATH_MAX];
	pthread_mutex_t lock; /* guards current (the pointer, not what it points to) */
	struct snapshot *current;
	struct dkkeys_stamp tried; /* generation of the last reload attempt */
};

static void signer_free(struct signer *g)
{
	if (g == NULL)
		return;
	EVP_PKEY_CTX_free(g->pkey_ctx);
	EVP_MD_CTX_free(g->md_ctx);
	EVP_PKEY_free(g->key);
	free(g);
}

static struct signer *signer_new(EVP_PKEY *pkey, size_t alg)
{
	struct signer *g = calloc(1, sizeof *g);
	if (g == NULL)
		return NULL;
	bool ok;
	if (alg == 0) {
		/* RSASSA-PKCS1-v1_5 over the SHA-256 DigestInfo (RFC 6376 3.3.1) */
		g->key = EVP_PKEY_dup(pkey);
		g->pkey_ctx =
		    g->key != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, g->key, NULL) : NULL;
		ok = g->pkey_ctx != NULL && EVP_PKEY_sign_init(g->pkey_ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(g->pkey_ctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(g->pkey_ctx, EVP_sha256()) == 1;
	} else {
		/* PureEdDSA of the 32-byte hash (RFC 8463 3); the context signs again and again */
		g->key = EVP_PKEY_up_ref(pkey) == 1 ? pkey : NULL;
		g->md_ctx = g->key != NULL ? EVP_MD_CTX_new() : NULL;
		ok = g->md_ctx != NULL &&
		     EVP_DigestSignInit_ex(g->md_ctx, NULL, NULL, NULL, NULL, g->key, NULL) == 1;
	}
	if (!ok) {
		signer_free(g);
		return NULL;
	}
	return g;
}

static struct signer_pool *pool_new(void)
{
	struct signer_pool *p = calloc(1, sizeof *p);
	if (p != NULL && pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return NULL;
	}
	return p;
}

static void pool_free(struct signer_pool *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->count; i++)
		signer_free(p->idle[i]);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* An idle context of the pool, or a new one; NULL when OpenSSL fails. */
static struct signer *pool_take(struct signer_pool *p, EVP_PKEY *pkey, size_t alg)
{
	struct signer *g = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->count > 0)
		g = p->idle[--p->count];
	pthread_mutex_unlock(&p->lock);
	return g != NULL ? g : signer_new(pkey, alg);
}

static void pool_put(struct signer_pool *p, struct signer *g)
{
	pthread_mutex_lock(&p->lock);
	if (p->count < SIGNER_POOL_MAX) {
		p->idle[p->count++] = g;
		g = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	signer_free(g);
}

static void snapshot_release(struct snapshot *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (size_t i = 0; i < s->count; i++) {
		for (size_t a = 0; a < NALG; a++) {
			EVP_PKEY_free(s->domains[i].key[a].pkey);
			pool_free(s->domains[i].key[a].pool);
		}
	}
	free(s->domains);
	free(s);
}

static struct snapshot *snapshot_acquire(struct dksign_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	struct snapshot *s = ctx->current;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&ctx->lock);
	return s;
}

static int ascii_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y || x == '\0')
			return x - y;
	}
}

static const struct sign_domain *snapshot_find(const struct snapshot *s, const char *domain)
{
	size_t lo = 0, hi = s->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ascii_casecmp(domain, s->domains[mid].name);
		if (c == 0)
			return &s->domains[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* What a reload builds: the new snapshot, with the old one to borrow unchanged keys from. */
struct build {
	const char *data_dir;
	struct snapshot *next;
	const struct snapshot *prev;
};

/* The key of (domain, selector) in the previous snapshot when its file did not change. */
static EVP_PKEY *key_reuse(const struct build *b, const char *domain,
                           const struct dkkeys_selector *sel, struct dkkeys_stamp *stamp)
{
	if (b->prev == NULL)
		return NULL;
	const struct sign_domain *old = snapshot_find(b->prev, domain);
	if (old == NULL)
		return NULL;
	const struct sign_key *k = &old->key[sel->algorithm == DKKEYS_ALG_RSA ? 0 : 1];
	char ignored[16];
	if (!k->present || strcmp(k->selector, sel->name) != 0 ||
	    dkkeys_private_stamp(b->data_dir, domain, sel->name, stamp, ignored, sizeof ignored) ==
	        -1 ||
	    !dkkeys_stamp_equal(stamp, &k->stamp) || EVP_PKEY_up_ref(k->pkey) != 1)
		return NULL;
	return k->pkey;
}

static int build_domain(const struct dkkeys_domain *d, void *arg, char *err, size_t errlen)
{
	struct build *b = arg;
	struct snapshot *s = b->next;
	const struct dkkeys_selector *pick[NALG] = {NULL, NULL};
	for (size_t i = 0; i < d->count; i++) {
		const struct dkkeys_selector *e = &d->sel[i];
		size_t a = e->algorithm == DKKEYS_ALG_RSA ? 0 : 1;
		/* the newest active key; the file order breaks ties (later wins) */
		if (e->state == DKKEYS_STATE_ACTIVE &&
		    (pick[a] == NULL || e->created >= pick[a]->created))
			pick[a] = e;
	}
	if (pick[0] == NULL && pick[1] == NULL)
		return 0;
	if (s->count == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct sign_domain *n = realloc(s->domains, ncap * sizeof *n);
		if (n == NULL) {
			dkim_err_set(err, errlen, "out of memory");
			return -1;
		}
		s->domains = n;
		s->cap = ncap;
	}
	struct sign_domain *sd = &s->domains[s->count];
	memset(sd, 0, sizeof *sd);
	memcpy(sd->name, d->name, sizeof sd->name);
	s->count++; /* counted now so that snapshot_release frees what follows */
	for (size_t a = 0; a < NALG; a++) {
		if (pick[a] == NULL)
			continue;
		struct sign_key *k = &sd->key[a];
		memcpy(k->selector, pick[a]->name, sizeof k->selector);
		k->pkey = key_reuse(b, d->name, pick[a], &k->stamp);
		if (k->pkey == NULL) {
			k->pkey = dkkeys_private_load(b->data_dir, d->name, pick[a], &k->stamp, err,
			                              errlen);
			if (k->pkey == NULL)
				return -1;
		}
		k->pool = pool_new();
		if (k->pool == NULL) {
			dkim_err_set(err, errlen, "out of memory");
			return -1;
		}
		k->present = true;
		s->keys++;
	}
	return 0;
}

/* Reads the whole store into a new snapshot (refs 1), borrowing unchanged keys from prev. */
static struct snapshot *snapshot_build(const char *data_dir, const struct snapshot *prev, char *err,
                                       size_t errlen)
{
	struct snapshot *s = calloc(1, sizeof *s);
	if (s == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&s->refs, 1);
	struct build b = {data_dir, s, prev};
	if (dkkeys_store_walk(data_dir, build_domain, &b, err, errlen) == -1) {
		snapshot_release(s);
		return NULL;
	}
	return s;
}

/* ---- the context ---- */

static DKIM_CBSTAT final_ignore_all(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	(void)dkim;
	for (int i = 0; i < nsigs; i++)
		dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

static DKIM_CBSTAT key_lookup_none(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	(void)dkim;
	(void)sig;
	(void)buf;
	(void)buflen;
	return DKIM_CBSTAT_NOTFOUND;
}

static DKIM_LIB *library_new(char *err, size_t errlen)
{
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	if (lib == NULL) {
		dkim_err_set(err, errlen, "dkim_init failed");
		return NULL;
	}
	unsigned int flags = DKIM_LIBFLAGS_DELAYSIGPROC;
	uint64_t drift = (uint64_t)DKSIGN_TIME_MIN;
	DKIM_STAT st;
	const char *what = NULL;
	if (!dkim_libfeature(lib, DKIM_FEATURE_SHA256) ||
	    !dkim_libfeature(lib, DKIM_FEATURE_ED25519))
		what = "dkim_libfeature (libopendkim without SHA-256 or Ed25519)";
	else if ((st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags)) !=
	         DKIM_STAT_OK)
		what = "dkim_options(DKIM_OPTS_FLAGS)";
	else if ((st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_CLOCKDRIFT, &drift,
	                            sizeof drift)) != DKIM_STAT_OK)
		what = "dkim_options(DKIM_OPTS_CLOCKDRIFT)";
	else if ((st = dkim_set_final(lib, final_ignore_all)) != DKIM_STAT_OK)
		what = "dkim_set_final";
	else if ((st = dkim_set_key_lookup(lib, key_lookup_none)) != DKIM_STAT_OK)
		what = "dkim_set_key_lookup";
	if (what != NULL) {
		dkim_err_set(err, errlen, "%s failed", what);
		dkim_close(lib);
		return NULL;
	}
	return lib;
}

struct dksign_ctx *dksign_ctx_new(const char *data_dir, char *err, size_t errlen)
{
	struct dksign_ctx *ctx = calloc(1, sizeof *ctx);
	if (ctx == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		return NULL;
	}
	if (strlen(data_dir) >= sizeof ctx->data_dir) {
		dkim_err_set(err, errlen, "data_dir too long");
		free(ctx);
		return NULL;
	}
	memcpy(ctx->data_dir, data_dir, strlen(data_dir) + 1);
	if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
		dkim_err_set(err, errlen, "pthread_mutex_init failed");
		free(ctx);
		return NULL;
	}
	ctx->lib = library_new(err, errlen);
	if (ctx->lib == NULL || dkkeys_generation_stamp(data_dir, &ctx->tried, err, errlen) == -1 ||
	    (ctx->current = snapshot_build(data_dir, NULL, err, errlen)) == NULL) {
		dksign_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

void dksign_ctx_free(struct dksign_ctx *ctx)
{
	if (ctx == NULL)
		return;
	snapshot_release(ctx->current);
	if (ctx->lib != NULL)
		dkim_close(ctx->lib);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

int dksign_ctx_reload(struct dksign_ctx *ctx, char *err, size_t errlen)
{
	struct dkkeys_stamp now;
	if (dkkeys_generation_stamp(ctx->data_dir, &now, err, errlen) == -1)
		return -1;
	if (dkkeys_stamp_equal(&now, &ctx->tried))
		return 0;
	ctx->tried = now; /* a broken generation is reported once, not every tick */
	/* only this thread replaces current, so reading it without the lock is safe here */
	struct snapshot *next = snapshot_build(ctx->data_dir, ctx->current, err, errlen);
	if (next == NULL)
		return -1;
	pthread_mutex_lock(&ctx->lock);
	struct snapshot *old = ctx->current;
	ctx->current = next;
	pthread_mutex_unlock(&ctx->lock);
	snapshot_release(old);
	return 1;
}

void dksign_ctx_counts(struct dksign_ctx *ctx, size_t *domains, size_t *keys)
{
	struct snapshot *s = snapshot_acquire(ctx);
	*domains = s->count;
	*keys = s->keys;
	snapshot_release(s);
}

/* ---- the message ---- */

struct field_ref {
	size_t offset, length; /* the field in the message, without its final CRLF */
	size_t name;           /* index in signed_names */
};

struct parsed {
	struct field_ref field[DKSIGN_SIGNED_FIELDS_MAX];
	size_t count;
	size_t body; /* offset of the body */
};

static bool field_octets_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r' && i + 2 < n && p[i + 1] == '\n' &&
		    (p[i + 2] == ' ' || p[i + 2] == '\t'))
			i++; /* a fold: header_next() already checked that CR LF WSP is all there is
			      */
		else if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

/* A bare CR or LF in the body (the stored form has none; a verifier could read it otherwise). */
static bool body_line_ends_ok(const char *p, size_t n)
{
	const char *end = p + n;
	for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
		if (q == p || q[-1] != '\r')
			return false;
	for (const char *q = p; (q = memchr(q, '\r', (size_t)(end - q))) != NULL; q++)
		if (q + 1 == end || q[1] != '\n')
			return false;
	return true;
}

static enum dksign_result message_parse(const char *msg, size_t len, struct parsed *p, char *err,
                                        size_t errlen)
{
	struct header_iter it;
	struct header_field f;
	enum header_status hs;
	size_t froms = 0;
	p->count = 0;
	header_iter_init(&it, msg, len);
	while ((hs = header_next(&it, &f)) == HEADER_FIELD) {
		size_t n;
		for (n = 0; n < NSIGNED; n++)
			if (header_name_is(&f, signed_names[n]))
				break;
		if (n == NSIGNED)
			continue;
		if (p->count == DKSIGN_SIGNED_FIELDS_MAX) {
			dkim_err_set(err, errlen, "more than %d signed header fields",
			             DKSIGN_SIGNED_FIELDS_MAX);
			return DKSIGN_MALFORMED;
		}
		if (!field_octets_ok(f.name, f.length - 2)) {
			dkim_err_set(err, errlen, "control octet in the %s field at offset %zu",
			             signed_names[n], f.offset);
			return DKSIGN_MALFORMED;
		}
		if (n == NAME_FROM)
			froms++;
		p->field[p->count++] = (struct field_ref){f.offset, f.length - 2, n};
	}
	if (hs == HEADER_MALFORMED) {
		dkim_err_set(err, errlen, "the header section does not parse at offset %zu",
		             it.pos);
		return DKSIGN_MALFORMED;
	}
	if (froms != 1) {
		dkim_err_set(err, errlen, froms == 0 ? "no From field" : "%zu From fields", froms);
		return DKSIGN_MALFORMED;
	}
	p->body = header_body_offset(&it);
	if (!body_line_ends_ok(msg + p->body, len - p->body)) {
		dkim_err_set(err, errlen, "bare CR or LF in the body");
		return DKSIGN_MALFORMED;
	}
	return DKSIGN_OK;
}

/* ---- writing the DKIM-Signature field ---- */

struct folder {
	struct buf *b;
	size_t col; /* characters on the current line so far */
	int rc;     /* -1 once an append failed */
};

static void fold_put(struct folder *f, const char *s, size_t n)
{
	if (f->rc == 0 && buf_append(f->b, s, n) == -1)
		f->rc = -1;
	f->col += n;
}

/* Appends a word, after a space or, when the line would pass FOLD_COLUMN, a fold. */
static void fold_word(struct folder *f, const char *s, size_t n)
{
	if (f->col + 1 + n > FOLD_COLUMN) {
		fold_put(f, "\r\n\t", 3);
		f->col = 8; /* a tab counts as 8 columns */
	} else {
		fold_put(f, " ", 1);
	}
	fold_put(f, s, n);
}

/*
 * Writes "DKIM-Signature: v=1; a=...; c=relaxed/relaxed; d=; s=; t=; [x=;] h=; bh=; b=" (all
 * but the b= value) for one key into b.
 */
static int field_prefix(struct buf *b, size_t alg, const char *domain, const char *selector,
                        const struct dksign_options *opt, const struct parsed *p, const char *bh64)
{
	struct folder f = {b, 0, 0};
	char word[DKKEYS_DOMAIN_MAX + 64];
	int n;
	fold_put(&f, "DKIM-Signature: v=1;", 20);
	n = snprintf(word, sizeof word, "a=%s;", alg_tags[alg]);
	fold_word(&f, word, (size_t)n);
	fold_word(&f, "c=relaxed/relaxed;", 18);
	n = snprintf(word, sizeof word, "d=%s;", domain);
	fold_word(&f, word, (size_t)n);
	n = snprintf(word, sizeof word, "s=%s;", selector);
	fold_word(&f, word, (size_t)n);
	n = snprintf(word, sizeof word, "t=%lld;", (long long)opt->now);
	fold_word(&f, word, (size_t)n);
	if (opt->lifetime > 0) {
		n = snprintf(word, sizeof word, "x=%lld;", (long long)(opt->now + opt->lifetime));
		fold_word(&f, word, (size_t)n);
	}
	/* h=: the present signed fields in message order, then the oversigned names; a fold may
	 * follow any colon (RFC 6376 3.5: FWS around the colons of h=) */
	size_t total = p->count + NOVERSIGNED;
	for (size_t i = 0; i < total; i++) {
		const char *name =
		    i < p->count ? signed_names[p->field[i].name] : oversigned_names[i - p->count];
		n = snprintf(word, sizeof word, "%s%s%s", i == 0 ? "h=" : "", name,
		             i + 1 == total ? ";" : ":");
		if (i == 0) {
			fold_word(&f, word, (size_t)n);
		} else if (f.col + (size_t)n > FOLD_COLUMN) {
			fold_put(&f, "\r\n\t ", 4);
			f.col = 9;
			fold_put(&f, word, (size_t)n);
		} else {
			fold_put(&f, word, (size_t)n);
		}
	}
	n = snprintf(word, sizeof word, "bh=%s;", bh64);
	fold_word(&f, word, (size_t)n);
	/* b= always starts a line of its own: its value comes later, folded by value_fold() */
	fold_put(&f, "\r\n\tb=", 5);
	return f.rc;
}

/* Appends base64 text folded in lines of at most FOLD_COLUMN, after "\tb=" (column 10). */
static int value_fold(struct buf *b, const char *v, size_t n)
{
	size_t col = 10;
	while (n > 0) {
		size_t room = FOLD_COLUMN - col;
		size_t chunk = n < room ? n : room;
		if (buf_append(b, v, chunk) == -1)
			return -1;
		v += chunk;
		n -= chunk;
		if (n > 0) {
			if (buf_append(b, "\r\n\t ", 4) == -1)
				return -1;
			col = 9;
		}
	}
	return buf_append(b, "\r\n", 2);
}

/* ---- the libopendkim runs ---- */

static void dkim_fail(char *err, size_t errlen, const char *call, DKIM *d, DKIM_STAT st)
{
	const char *detail = d != NULL ? dkim_geterror(d) : NULL;
	dkim_err_set(err, errlen, "%s: %s%s%s%s", call, dkim_getresultstr(st),
	             detail != NULL && *detail ? " (" : "", detail != NULL ? detail : "",
	             detail != NULL && *detail ? ")" : "");
}

/*
 * One verifying run: our DKIM-Signature fields sig[0..nsig) (each a NUL-terminated buffer,
 * writable as libopendkim's prototypes want), then the signed fields of the message
 * (copied into scratch, which the run may reuse), then the body when body != NULL. Fills
 * hh[i] with the header hash of sig[i] and bh with the body hash. Returns 0 or -1.
 */
static int canon_run(DKIM_LIB *lib, struct buf *const *sig, size_t nsig, const char *msg,
                     const struct parsed *p, const char *body, size_t bodylen,
                     unsigned char (*hh)[HASH_LEN], unsigned char *bh, struct buf *scratch,
                     char *err, size_t errlen)
{
	DKIM_STAT st;
	DKIM *d = dkim_verify(lib, (const unsigned char *)"postino", NULL, &st);
	if (d == NULL) {
		dkim_fail(err, errlen, "dkim_verify", NULL, st);
		return -1;
	}
	int rc = -1;
	for (size_t i = 0; i < nsig; i++) {
		st = dkim_header(d, (u_char *)sig[i]->data, sig[i]->len);
		if (st != DKIM_STAT_OK) {
			dkim_fail(err, errlen, "dkim_header", d, st);
			goto done;
		}
	}
	/* libopendkim copies each field (and never writes to it), but its prototype is not
	 * const: the fields go through a scratch copy rather than a cast */
	buf_reset(scratch);
	for (size_t i = 0; i < p->count; i++) {
		if (buf_append(scratch, msg + p->field[i].offset, p->field[i].length) == -1) {
			dkim_err_set(err, errlen, "out of memory");
			goto done;
		}
	}
	size_t off = 0;
	for (size_t i = 0; i < p->count; i++) {
		st = dkim_header(d, (u_char *)scratch->data + off, p->field[i].length);
		if (st != DKIM_STAT_OK) {
			dkim_fail(err, errlen, "dkim_header", d, st);
			goto done;
		}
		off += p->field[i].length;
	}
	st = dkim_eoh(d);
	if (st != DKIM_STAT_OK) {
		dkim_fail(err, errlen, "dkim_eoh", d, st);
		goto done;
	}
	if (body != NULL && bodylen > 0) {
		/* dkim_body() only reads the chunk (dkim_canon_bodychunk in 2.11); the cast through
		 * uintptr_t drops a const its prototype lacks */
		st = dkim_body(d, (u_char *)(uintptr_t)body, bodylen);
		if (st != DKIM_STAT_OK) {
			dkim_fail(err, errlen, "dkim_body", d, st);
			goto done;
		}
	}
	st = dkim_eom(d, NULL);
	if (st != DKIM_STAT_NOSIG && st != DKIM_STAT_OK) { /* NOSIG: all ignored, as set up */
		dkim_fail(err, errlen, "dkim_eom", d, st);
		goto done;
	}
	DKIM_SIGINFO **sigs;
	int n;
	st = dkim_getsiglist(d, &sigs, &n);
	if (st != DKIM_STAT_OK || n != (int)nsig) {
		dkim_err_set(err, errlen, "dkim_getsiglist: %d signatures, want %zu", n, nsig);
		goto done;
	}
	for (size_t i = 0; i < nsig; i++) {
		/* a field libopendkim refused has no hashes, and dkim_sig_gethashes() would
		 * assert() on it: check first */
		int e = dkim_sig_geterror(sigs[i]);
		if (e != DKIM_SIGERROR_UNKNOWN && e != DKIM_SIGERROR_OK) {
			dkim_err_set(err, errlen, "libopendkim refused the signature field: %s",
			             dkim_sig_geterrorstr(e));
			goto done;
		}
		void *h, *b;
		size_t hlen, blen;
		st = dkim_sig_gethashes(sigs[i], &h, &hlen, &b, &blen);
		if (st != DKIM_STAT_OK || hlen != HASH_LEN || blen != HASH_LEN) {
			dkim_err_set(err, errlen, "dkim_sig_gethashes: %s", dkim_getresultstr(st));
			goto done;
		}
		memcpy(hh[i], h, HASH_LEN);
		if (i == 0)
			memcpy(bh, b, HASH_LEN);
	}
	rc = 0;
done:
	dkim_free(d);
	return rc;
}

/* ---- the body hash ---- */

struct hasher {
	EVP_MD_CTX *md;
	size_t fill;
	unsigned char chunk[4096]; /* canonical output waits here: fewer, larger updates */
	int rc;
};

static void hasher_put(struct hasher *h, const char *s, size_t n)
{
	while (n > 0 && h->rc == 0) {
		size_t room = sizeof h->chunk - h->fill;
		size_t take = n < room ? n : room;
		memcpy(h->chunk + h->fill, s, take);
		h->fill += take;
		s += take;
		n -= take;
		if (h->fill == sizeof h->chunk) {
			if (EVP_DigestUpdate(h->md, h->chunk, h->fill) != 1)
				h->rc = -1;
			h->fill = 0;
		}
	}
}

/* Writes s[0..n) of a body line; the first octets of a line write its pending empty lines. */
static void line_put(struct hasher *h, size_t *blanks, bool *text, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (!*text) {
		for (; *blanks > 0; (*blanks)--)
			hasher_put(h, "\r\n", 2);
		*text = true;
	}
	hasher_put(h, s, n);
}

/*
 * SHA-256 of the relaxed canonical form of body[0..len) (RFC 6376 3.4.4): WSP runs become
 * one SP, WSP at the end of a line goes, empty lines at the end go, and a last line without
 * CRLF gets one. The body has CRLF line ends only (message_parse checked), so a CR always
 * starts a line end. Returns 0, or -1 when OpenSSL fails.
 */
static int body_hash_relaxed(const char *body, size_t len, unsigned char *out)
{
	struct hasher h = {.md = EVP_MD_CTX_new()};
	if (h.md == NULL || EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h.md);
		return -1;
	}
	const char *p = body, *end = body + len;
	size_t blanks = 0; /* empty lines not written yet: they count only if text follows */
	while (p < end) {
		const char *cr = memchr(p, '\r', (size_t)(end - p));
		const char *eol = cr != NULL ? cr : end;
		/* Text goes out in spans that are canonical as they stand (a single SP inside the
		 * line stays in its span); any other WSP run ends a span and becomes one SP, or
		 * nothing at the end of the line. */
		const char *span = p, *q = p;
		bool text = false;
		while (q < eol) {
			if (*q != ' ' && *q != '\t') {
				q++;
				continue;
			}
			const char *run = q;
			while (q < eol && (*q == ' ' || *q == '\t'))
				q++;
			if (q == eol) {
				eol = run; /* trailing WSP: the line's text ends before it */
				break;
			}
			if (q - run == 1 && *run == ' ')
				continue;
			line_put(&h, &blanks, &text, span, (size_t)(run - span));
			line_put(&h, &blanks, &text, " ", 1);
			span = q;
		}
		line_put(&h, &blanks, &text, span, (size_t)(eol - span));
		if (text)
			hasher_put(&h, "\r\n", 2);
		else
			blanks++;
		p = cr != NULL ? cr + 2 : end;
	}
	unsigned int n = 0;
	if (h.rc == 0 && h.fill > 0 && EVP_DigestUpdate(h.md, h.chunk, h.fill) != 1)
		h.rc = -1;
	if (h.rc == 0 && (EVP_DigestFinal_ex(h.md, out, &n) != 1 || n != HASH_LEN))
		h.rc = -1;
	EVP_MD_CTX_free(h.md);
	return h.rc;
}

/* ---- signatures ---- */

static int hash_sign(const struct sign_key *k, size_t alg, const unsigned char *hash,
                     unsigned char *sig, size_t *siglen, char *err, size_t errlen)
{
	char ebuf[256];
	struct signer *g = pool_take(k->pool, k->pkey, alg);
	int ok =
	    g != NULL && (alg == 0 ? EVP_PKEY_sign(g->pkey_ctx, sig, siglen, hash, HASH_LEN)
	                           : EVP_DigestSign(g->md_ctx, sig, siglen, hash, HASH_LEN)) == 1;
	if (!ok) {
		dkim_err_set(err, errlen, "%s signature: %s", alg_tags[alg],
		             dkim_ssl_error(ebuf, sizeof ebuf));
		signer_free(g); /* never back into the pool after a failure */
		return -1;
	}
	pool_put(k->pool, g);
	return 0;
}

/* The keys to sign with: from_domain's, else the fallback's; NULL when none. */
static const struct sign_domain *
domain_pick(const struct snapshot *s, const struct dksign_options *opt, const char *from_domain)
{
	const char *names[2] = {from_domain, opt->refuse_unknown ? NULL : opt->fallback_domain};
	for (size_t i = 0; i < 2; i++) {
		if (names[i] == NULL || names[i][0] == '\0')
			continue;
		const struct sign_domain *d = snapshot_find(s, names[i]);
		if (d == NULL)
			continue;
		for (size_t a = 0; a < NALG; a++)
			if (d->key[a].present && (opt->algorithms & alg_bits[a]) != 0)
				return d;
	}
	return NULL;
}

static enum dksign_result sign_with(DKIM_LIB *lib, const struct sign_domain *dom,
                                    const struct dksign_options *opt, const char *msg, size_t len,
                                    const struct parsed *p, struct buf *out, char *err,
                                    size_t errlen)
{
	/* a body run only needs the body hash: a minimal field of either algorithm will do */
	static const char body_field[] = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
	                                 "d=invalid; s=x; h=From; bh=AAAA; b=AAAA";
	struct buf fields[NALG] = {BUF_INIT, BUF_INIT};
	struct buf scratch = BUF_INIT;
	struct buf *run[NALG];
	size_t use[NALG], nuse = 0;
	unsigned char hh[NALG][HASH_LEN], bh[HASH_LEN], bh_unused[HASH_LEN];
	char bh64[48], sig64[(SIG_MAX + 2) / 3 * 4 + 1], ebuf[256];
	unsigned char sig[SIG_MAX];
	enum dksign_result r = DKSIGN_ERROR;
	size_t mark = out->len;

	for (size_t a = 0; a < NALG; a++)
		if (dom->key[a].present && (opt->algorithms & alg_bits[a]) != 0)
			use[nuse++] = a;
	if (opt->body_by_libopendkim) {
		if (buf_append_str(&fields[0], body_field) == -1) {
			dkim_err_set(err, errlen, "out of memory");
			goto done;
		}
		run[0] = &fields[0];
		if (canon_run(lib, run, 1, msg, p, msg + p->body, len - p->body, hh, bh, &scratch,
		              err, errlen) == -1)
			goto done;
	} else if (body_hash_relaxed(msg + p->body, len - p->body, bh) == -1) {
		dkim_err_set(err, errlen, "body hash: %s", dkim_ssl_error(ebuf, sizeof ebuf));
		goto done;
	}
	EVP_EncodeBlock((unsigned char *)bh64, bh, HASH_LEN);

	for (size_t i = 0; i < nuse; i++) {
		size_t a = use[i];
		buf_reset(&fields[i]);
		if (field_prefix(&fields[i], a, dom->name, dom->key[a].selector, opt, p, bh64) ==
		        -1 ||
		    buf_append_str(&fields[i], "AAAA") == -1) { /* a stand-in b= value: stripped */
			dkim_err_set(err, errlen, "out of memory");
			goto done;
		}
		run[i] = &fields[i];
	}
	/* the header run: no body, so its body hash is of nothing and not wanted */
	if (canon_run(lib, run, nuse, msg, p, NULL, 0, hh, bh_unused, &scratch, err, errlen) == -1)
		goto done;

	for (size_t i = 0; i < nuse; i++) {
		size_t a = use[i], siglen = sizeof sig;
		if (hash_sign(&dom->key[a], a, hh[i], sig, &siglen, err, errlen) == -1)
			goto done;
		int n = EVP_EncodeBlock((unsigned char *)sig64, sig, (int)siglen);
		fields[i].len -= 4; /* drop the stand-in value */
		if (buf_append(out, fields[i].data, fields[i].len) == -1 ||
		    value_fold(out, sig64, (size_t)n) == -1) {
			dkim_err_set(err, errlen, "out of memory");
			goto done;
		}
	}
	r = DKSIGN_OK;
done:
	if (r != DKSIGN_OK) {
		out->len = mark;
		if (out->data != NULL)
			out->data[mark] = '\0';
	}
	for (size_t a = 0; a < NALG; a++)
		buf_free(&fields[a]);
	buf_free(&scratch);
	OPENSSL_cleanse(sig, sizeof sig);
	return r;
}

enum dksign_result dksign_message(struct dksign_ctx *ctx, const struct dksign_options *opt,
                                  const char *from_domain, const char *msg, size_t len,
                                  struct buf *out, char *err, size_t errlen)
{
	if ((opt->algorithms & (DKSIGN_ALG_RSA | DKSIGN_ALG_ED25519)) == 0) {
		dkim_err_set(err, errlen, "no signing algorithm configured");
		return DKSIGN_ERROR;
	}
	if (opt->now < DKSIGN_TIME_MIN || opt->lifetime < 0 ||
	    opt->lifetime > DKSIGN_LIFETIME_MAX) {
		dkim_err_set(err, errlen, "bad signing time %lld or lifetime %lld",
		             (long long)opt->now, (long long)opt->lifetime);
		return DKSIGN_ERROR;
	}
	struct parsed *p = malloc(sizeof *p);
	if (p == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		return DKSIGN_ERROR;
	}
	enum dksign_result r = message_parse(msg, len, p, err, errlen);
	if (r == DKSIGN_OK) {
		struct snapshot *s = snapshot_acquire(ctx);
		const struct sign_domain *dom = domain_pick(s, opt, from_domain);
		if (dom == NULL) {
			dkim_err_set(err, errlen, "no DKIM key for %.253s%s%.253s",
			             from_domain != NULL ? from_domain : "(none)",
			             opt->refuse_unknown || opt->fallback_domain == NULL ||
			                     opt->fallback_domain[0] == '\0'
			                 ? ""
			                 : " nor for ",
			             opt->refuse_unknown || opt->fallback_domain == NULL
			                 ? ""
			                 : opt->fallback_domain);
			r = DKSIGN_NO_KEY;
		} else {
			r = sign_with(ctx->lib, dom, opt, msg, len, p, out, err, errlen);
		}
		snapshot_release(s);
	}
	free(p);
	return r;
}
