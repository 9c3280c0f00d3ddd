/*
 * internal.h: what dkim/dkkeys.c offers to dkim/dksign.c and to nothing else: loading a
 * private key from the store, and the stamps that tell whether the store or a key file
 * changed. Private key bytes stay inside dkim/.
 */
#ifndef POSTINO_DKIM_INTERNAL_H
#define POSTINO_DKIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/evp.h>

/* The identity of a file as stat() sees it: a file replaced, written or chmod()ed differs. */
struct dkkeys_stamp {
	bool exists;
	dev_t dev;
	ino_t ino;
	mode_t mode;
	off_t size;
	struct timespec mtime, ctime;
};

bool dkkeys_stamp_equal(const struct dkkeys_stamp *a, const struct dkkeys_stamp *b);

/* The stamp of <data_dir>/dkim/generation (exists == false when there is none yet).
 * Returns 0, or -1 when stat() fails for another reason than a missing file. */
int dkkeys_generation_stamp(const char *data_dir, struct dkkeys_stamp *out, char *err,
                            size_t errlen);

/* The stamp of a selector's private key file, without reading it. Returns 0 or -1. */
int dkkeys_private_stamp(const char *data_dir, const char *domain, const char *selector,
                         struct dkkeys_stamp *out, char *err, size_t errlen);

/* Formats a reason into err (nothing when errlen is 0). */
void dkim_err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The OpenSSL error queue's first entry as text in buf (and the queue emptied). */
const char *dkim_ssl_error(char *buf, size_t len);

struct dkkeys_selector;

/*
 * Reads and parses the private key file of domain's selector sel (mode must be 0600 or
 * stricter, at most DKKEYS_FILE_MAX bytes; the bytes read are wiped before returning) and
 * checks that it is the key sel describes (algorithm and public key). *stamp gets the file's
 * identity at the time it was read. Returns the key (caller frees with EVP_PKEY_free), or
 * NULL with the reason in err.
 */
EVP_PKEY *dkkeys_private_load(const char *data_dir, const char *domain,
                              const struct dkkeys_selector *sel, struct dkkeys_stamp *stamp,
                              char *err, size_t errlen);

#endif
