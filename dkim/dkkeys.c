/*
 * dkkeys.c: the DKIM key store on disk (contracts in dkkeys.h and internal.h). Owns the
 * files under <data_dir>/dkim/ and every private key byte that passes through them: keys are
 * generated or parsed here, written as PKCS#8 PEM files of mode 0600 in folders of mode 0700,
 * and read back only by dkkeys_private_load(). Nothing is logged.
 *
 * RFCs: RFC 6376 3.6.1 (key record tags v=, k=, p=) and 3.6.2.2 (TXT strings), RFC 8463 3
 * (Ed25519 p= is the raw 32-byte public key), RFC 8301 3.2 (RSA sizes), RFC 1035 2.3.4 and
 * 3.3.14 (name and character-string sizes).
 *
 * The selectors file of a domain ("<data_dir>/dkim/DOMAIN/selectors"), one selector a line:
 *
 *   # comment lines start with '#'
 *   SELECTOR ALGORITHM BITS STATE CREATED RETIRE_AT PUBLIC_KEY
 *   p202501r rsa 2048 active 1735689600 0 MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKC...
 *
 * Fields are separated by one space; numbers are decimal seconds since the epoch. The file is
 * only ever replaced whole (write to a temporary name, fsync, rename, fsync the folder), so a
 * reader sees the old or the new version, never a mix. A change goes: lock, private key file
 * written and synced, selectors file replaced, generation bumped, unlock; a deletion replaces
 * the selectors file before it unlinks the key.
 *
 * When run as root (postinoctl by an administrator), new files and folders are given to the
 * owner of data_dir, so that the daemon's user can read them.
 */
#include "dkim/dkkeys.h"
#include "dkim/internal.h"
#include "relay/num.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define STORE_DIR      "dkim"
#define SELECTORS_FILE "selectors"
#define LINE_MAX_LEN   (DKKEYS_SELECTOR_MAX + DKKEYS_PUBLIC_MAX + 128)
#define DOMAINS_MAX    1000000 /* a store with more domain folders is refused */

void dkim_err_set(char *err, size_t errlen, const char *fmt, ...)
{
	if (errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *dkim_ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	if (e == 0)
		snprintf(buf, len, "no OpenSSL error queued");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static const char *const state_names[] = {
    [DKKEYS_STATE_PENDING] = "pending",
    [DKKEYS_STATE_ACTIVE] = "active",
    [DKKEYS_STATE_RETIRING] = "retiring",
    [DKKEYS_STATE_RETIRED] = "retired",
};

const char *dkkeys_algorithm_name(enum dkkeys_algorithm alg)
{
	return alg == DKKEYS_ALG_RSA ? "rsa" : alg == DKKEYS_ALG_ED25519 ? "ed25519" : "?";
}

const char *dkkeys_state_name(enum dkkeys_state state)
{
	if ((unsigned)state < sizeof state_names / sizeof state_names[0])
		return state_names[state];
	return "?";
}

/* ---- names ---- */

/* LDH labels separated by dots; lowercase letters only when lower_only. */
static bool labels_ok(const char *s, size_t n, bool lower_only)
{
	size_t label = 0;
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool letter = (c >= 'a' && c <= 'z') || (!lower_only && c >= 'A' && c <= 'Z');
		if (!letter && !(c >= '0' && c <= '9') && c != '-')
			return false;
		if ((label == 0 && c == '-') || ++label > 63)
			return false;
	}
	return s[n - 1] != '-';
}

int dkkeys_domain_normalize(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);
	if (n > DKKEYS_DOMAIN_MAX || n >= outlen || !labels_ok(in, n, false))
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = '\0';
	return 0;
}

int dkkeys_selector_check(const char *selector)
{
	size_t n = strlen(selector);
	return n <= DKKEYS_SELECTOR_MAX && labels_ok(selector, n, true) ? 0 : -1;
}

/* ---- paths and files ---- */

static int path_join(char *out, size_t outlen, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int path_join(char *out, size_t outlen, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= outlen) {
		dkim_err_set(err, errlen, "path too long under data_dir");
		return -1;
	}
	return 0;
}

/* Reads a whole regular file of at most DKKEYS_FILE_MAX bytes into a NUL-terminated heap
 * buffer (caller wipes and frees). *st gets fstat()'s view. Returns the buffer or NULL; with
 * *missing set (when missing != NULL) and no error text when the file does not exist. */
static char *file_read(const char *path, size_t *len, struct stat *st, bool *missing, char *err,
                       size_t errlen)
{
	if (missing != NULL)
		*missing = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		if ((errno == ENOENT || errno == ENOTDIR) && missing != NULL) {
			*missing = true;
			return NULL;
		}
		dkim_err_set(err, errlen, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, st) == -1 || !S_ISREG(st->st_mode) || st->st_size > DKKEYS_FILE_MAX) {
		dkim_err_set(err, errlen, "%s: not a regular file of at most %d bytes", path,
		             DKKEYS_FILE_MAX);
		close(fd);
		return NULL;
	}
	size_t want = (size_t)st->st_size;
	char *data = malloc(want + 1);
	if (data == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	size_t got = 0;
	while (got < want) {
		ssize_t n = read(fd, data + got, want - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			dkim_err_set(err, errlen, "read %s: %s", path,
			             n == 0 ? "short read" : strerror(errno));
			OPENSSL_clear_free(data, want + 1);
			close(fd);
			return NULL;
		}
		got += (size_t)n;
	}
	close(fd);
	data[got] = '\0';
	*len = got;
	return data;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* When running as root, hands fd to the owner of data_dir (so the daemon can read it). */
static int adopt_owner(int fd, const char *data_dir, char *err, size_t errlen)
{
	if (geteuid() != 0)
		return 0;
	struct stat st;
	if (stat(data_dir, &st) == -1 || fchown(fd, st.st_uid, st.st_gid) == -1) {
		dkim_err_set(err, errlen, "chown to the owner of %s: %s", data_dir,
		             strerror(errno));
		return -1;
	}
	return 0;
}

static int dir_sync(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || fsync(fd) == -1) {
		dkim_err_set(err, errlen, "fsync %s: %s", dir, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Creates dir with mode 0700, or checks an existing one and tightens its mode to 0700. */
static int dir_ensure(const char *dir, const char *data_dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		dkim_err_set(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		return -1;
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		dkim_err_set(err, errlen, "open %s: %s", dir, strerror(errno));
		return -1;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) == -1) {
		dkim_err_set(err, errlen, "stat %s: %s", dir, strerror(errno));
		rc = -1;
	} else if ((st.st_mode & 077) != 0 && fchmod(fd, 0700) == -1) {
		dkim_err_set(err, errlen, "chmod 0700 %s: %s", dir, strerror(errno));
		rc = -1;
	} else {
		rc = adopt_owner(fd, data_dir, err, errlen);
	}
	close(fd);
	return rc;
}

/*
 * Writes data to path through "path.tmp": created 0600, synced, renamed over path, folder
 * synced. With exclusive set, path must not exist yet (a key file is written once) and the
 * temporary step is skipped in favour of O_EXCL on path itself.
 */
static int file_write(const char *path, const char *dir, const char *data, size_t len,
                      bool exclusive, const char *data_dir, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	const char *target = path;
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
	if (exclusive) {
		flags |= O_EXCL;
	} else {
		if (path_join(tmp, sizeof tmp, err, errlen, "%s.tmp", path) == -1)
			return -1;
		target = tmp;
		flags |= O_TRUNC;
	}
	int fd = open(target, flags, 0600);
	if (fd == -1) {
		dkim_err_set(err, errlen, "create %s: %s", target, strerror(errno));
		return -1;
	}
	if (adopt_owner(fd, data_dir, err, errlen) == -1)
		goto fail;
	if (write_all(fd, data, len) == -1 || fsync(fd) == -1) {
		dkim_err_set(err, errlen, "write %s: %s", target, strerror(errno));
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		dkim_err_set(err, errlen, "close %s: %s", target, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (!exclusive && rename(tmp, path) == -1) {
		dkim_err_set(err, errlen, "rename %s: %s", tmp, strerror(errno));
		goto fail;
	}
	return dir_sync(dir, err, errlen);
fail:
	if (fd != -1)
		close(fd);
	unlink(target);
	return -1;
}

/* ---- the lock and the generation counter ---- */

struct store {
	const char *data_dir;
	char dir[PATH_MAX]; /* <data_dir>/dkim */
	int lock_fd;
};

static int store_lock(struct store *s, const char *data_dir, char *err, size_t errlen)
{
	struct stat st;
	s->data_dir = data_dir;
	s->lock_fd = -1;
	if (stat(data_dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		dkim_err_set(err, errlen, "data_dir %s is not a folder", data_dir);
		return -1;
	}
	char path[PATH_MAX];
	if (path_join(s->dir, sizeof s->dir, err, errlen, "%s/" STORE_DIR, data_dir) == -1 ||
	    path_join(path, sizeof path, err, errlen, "%s/lock", s->dir) == -1 ||
	    dir_ensure(s->dir, data_dir, err, errlen) == -1)
		return -1;
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->lock_fd == -1) {
		dkim_err_set(err, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	if (adopt_owner(s->lock_fd, data_dir, err, errlen) == -1)
		goto fail;
	while (flock(s->lock_fd, LOCK_EX) == -1) {
		if (errno != EINTR) {
			dkim_err_set(err, errlen, "flock %s: %s", path, strerror(errno));
			goto fail;
		}
	}
	return 0;
fail:
	close(s->lock_fd);
	s->lock_fd = -1;
	return -1;
}

static void key_file_remove(struct store *s, const char *domain, const char *selector);

static void store_unlock(struct store *s)
{
	if (s->lock_fd != -1)
		close(s->lock_fd); /* releases the flock */
	s->lock_fd = -1;
}

/* Rewrites the generation file with the next counter value (a new inode every time). */
static int generation_bump(struct store *s, char *err, size_t errlen)
{
	char path[PATH_MAX], text[32];
	if (path_join(path, sizeof path, err, errlen, "%s/generation", s->dir) == -1)
		return -1;
	unsigned long long gen = 0;
	size_t len;
	struct stat st;
	bool missing;
	char *old = file_read(path, &len, &st, &missing, err, errlen);
	if (old == NULL && !missing)
		return -1;
	if (old != NULL) {
		gen = strtoull(old, NULL, 10); /* bounded: the file is ours, at most 64 KiB */
		free(old);
	}
	int n = snprintf(text, sizeof text, "%llu\n", gen + 1);
	return file_write(path, s->dir, text, (size_t)n, false, s->data_dir, err, errlen);
}

bool dkkeys_stamp_equal(const struct dkkeys_stamp *a, const struct dkkeys_stamp *b)
{
	if (a->exists != b->exists)
		return false;
	if (!a->exists)
		return true;
	return a->dev == b->dev && a->ino == b->ino && a->mode == b->mode && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void stamp_from(struct dkkeys_stamp *out, const struct stat *st)
{
	memset(out, 0, sizeof *out);
	out->exists = true;
	out->dev = st->st_dev;
	out->ino = st->st_ino;
	out->mode = st->st_mode;
	out->size = st->st_size;
	out->mtime = st->st_mtim;
	out->ctime = st->st_ctim;
}

int dkkeys_generation_stamp(const char *data_dir, struct dkkeys_stamp *out, char *err,
                            size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	memset(out, 0, sizeof *out);
	if (path_join(path, sizeof path, err, errlen, "%s/" STORE_DIR "/generation", data_dir) ==
	    -1)
		return -1;
	if (stat(path, &st) == -1) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		dkim_err_set(err, errlen, "stat %s: %s", path, strerror(errno));
		return -1;
	}
	stamp_from(out, &st);
	return 0;
}

/* ---- the selectors file ---- */

static int parse_i64(const char *s, int64_t *out)
{
	uint64_t v;
	if (num_parse_u64(s, strlen(s), INT64_MAX, &v) == -1)
		return -1;
	*out = (int64_t)v;
	return 0;
}

static bool base64_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n % 4 != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '+' && c != '/' && !(c == '=' && i >= n - 2))
			return false;
	}
	return true;
}

/* Parses one line (NUL-terminated, no newline) into *s. Returns NULL or a reason. */
static const char *selector_parse(char *line, struct dkkeys_selector *s)
{
	char *field[8];
	size_t n = 0;
	char *p = line;
	while (n < 8) {
		field[n++] = p;
		p = strchr(p, ' ');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	if (n != 7 || p != NULL)
		return "expected 7 fields";
	memset(s, 0, sizeof *s);
	if (dkkeys_selector_check(field[0]) == -1)
		return "bad selector";
	memcpy(s->name, field[0], strlen(field[0]) + 1);
	if (strcmp(field[1], "rsa") == 0)
		s->algorithm = DKKEYS_ALG_RSA;
	else if (strcmp(field[1], "ed25519") == 0)
		s->algorithm = DKKEYS_ALG_ED25519;
	else
		return "unknown algorithm";
	int64_t bits, created, retire_at;
	if (parse_i64(field[2], &bits) == -1 || parse_i64(field[4], &created) == -1 ||
	    parse_i64(field[5], &retire_at) == -1)
		return "bad number";
	if (s->algorithm == DKKEYS_ALG_RSA
	        ? bits < DKKEYS_RSA_BITS_MIN || bits > DKKEYS_RSA_BITS_MAX
	        : bits != 256)
		return "bad key size";
	s->bits = (unsigned)bits;
	s->created = created;
	s->retire_at = retire_at;
	size_t st;
	for (st = 0; st < sizeof state_names / sizeof state_names[0]; st++)
		if (strcmp(field[3], state_names[st]) == 0)
			break;
	if (st == sizeof state_names / sizeof state_names[0])
		return "unknown state";
	s->state = (enum dkkeys_state)st;
	if (strlen(field[6]) > DKKEYS_PUBLIC_MAX || !base64_ok(field[6]))
		return "bad public key";
	memcpy(s->public_key, field[6], strlen(field[6]) + 1);
	return NULL;
}

static int domain_path(char *out, size_t outlen, const char *data_dir, const char *domain,
                       const char *file, char *err, size_t errlen)
{
	if (file == NULL)
		return path_join(out, outlen, err, errlen, "%s/" STORE_DIR "/%s", data_dir, domain);
	return path_join(out, outlen, err, errlen, "%s/" STORE_DIR "/%s/%s", data_dir, domain,
	                 file);
}

static int key_path(char *out, size_t outlen, const char *data_dir, const char *domain,
                    const char *selector, char *err, size_t errlen)
{
	return path_join(out, outlen, err, errlen, "%s/" STORE_DIR "/%s/%s.pem", data_dir, domain,
	                 selector);
}

/* Reads domain's (already normalized) selectors file. */
static int domain_load(const char *data_dir, const char *domain, struct dkkeys_domain *out,
                       char *err, size_t errlen)
{
	char path[PATH_MAX];
	memset(out, 0, sizeof *out);
	memcpy(out->name, domain, strlen(domain) + 1);
	if (domain_path(path, sizeof path, data_dir, domain, SELECTORS_FILE, err, errlen) == -1)
		return -1;
	size_t len;
	struct stat st;
	bool missing;
	char *text = file_read(path, &len, &st, &missing, err, errlen);
	if (text == NULL)
		return missing ? 0 : -1;
	if (memchr(text, '\0', len) != NULL) {
		dkim_err_set(err, errlen, "%s: NUL byte", path);
		free(text);
		return -1;
	}
	unsigned lineno = 0;
	int rc = 0;
	for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
		lineno++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (strlen(line) > LINE_MAX_LEN) {
			dkim_err_set(err, errlen, "%s:%u: line too long", path, lineno);
			rc = -1;
			break;
		}
		if (out->count == DKKEYS_SELECTORS_MAX) {
			dkim_err_set(err, errlen, "%s:%u: more than %d selectors", path, lineno,
			             DKKEYS_SELECTORS_MAX);
			rc = -1;
			break;
		}
		struct dkkeys_selector *s = &out->sel[out->count];
		const char *why = selector_parse(line, s);
		if (why != NULL) {
			dkim_err_set(err, errlen, "%s:%u: %s", path, lineno, why);
			rc = -1;
			break;
		}
		for (size_t i = 0; i < out->count; i++) {
			if (strcmp(out->sel[i].name, s->name) == 0) {
				dkim_err_set(err, errlen, "%s:%u: selector %s repeated", path,
				             lineno, s->name);
				rc = -1;
			}
		}
		if (rc == -1)
			break;
		out->count++;
	}
	free(text);
	if (rc == -1)
		out->count = 0;
	return rc;
}

int dkkeys_domain_read(const char *data_dir, const char *domain, struct dkkeys_domain *out,
                       char *err, size_t errlen)
{
	char name[DKKEYS_DOMAIN_MAX + 1];
	if (dkkeys_domain_normalize(domain, name, sizeof name) == -1) {
		dkim_err_set(err, errlen, "not a domain name: %.300s", domain);
		return -1;
	}
	return domain_load(data_dir, name, out, err, errlen);
}

/* Replaces domain's selectors file with d's content (d->count > 0). */
static int domain_store(struct store *s, const struct dkkeys_domain *d, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	if (domain_path(dir, sizeof dir, s->data_dir, d->name, NULL, err, errlen) == -1 ||
	    domain_path(path, sizeof path, s->data_dir, d->name, SELECTORS_FILE, err, errlen) == -1)
		return -1;
	struct buf text = BUF_INIT;
	int rc = buf_printf(&text,
	                    "# postino DKIM selectors of %s; change them with postinoctl dkim\n"
	                    "# selector algorithm bits state created retire_at public_key\n",
	                    d->name);
	for (size_t i = 0; i < d->count && rc == 0; i++) {
		const struct dkkeys_selector *e = &d->sel[i];
		rc = buf_printf(&text, "%s %s %u %s %lld %lld %s\n", e->name,
		                dkkeys_algorithm_name(e->algorithm), e->bits,
		                dkkeys_state_name(e->state), (long long)e->created,
		                (long long)e->retire_at, e->public_key);
	}
	if (rc == -1) {
		dkim_err_set(err, errlen, "out of memory");
	} else {
		rc = dir_ensure(dir, s->data_dir, err, errlen);
		if (rc == 0)
			rc = file_write(path, dir, text.data, text.len, false, s->data_dir, err,
			                errlen);
	}
	buf_free(&text);
	return rc;
}

/* Removes a domain's selectors file, then its keys (names[0..n)), then its folder. */
static int domain_remove(struct store *s, const char *domain,
                         char (*names)[DKKEYS_SELECTOR_MAX + 1], size_t n, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
	if (domain_path(dir, sizeof dir, s->data_dir, domain, NULL, err, errlen) == -1 ||
	    domain_path(path, sizeof path, s->data_dir, domain, SELECTORS_FILE, err, errlen) ==
	        -1 ||
	    domain_path(tmp, sizeof tmp, s->data_dir, domain, SELECTORS_FILE ".tmp", err, errlen) ==
	        -1)
		return -1;
	if (unlink(path) == -1 && errno != ENOENT) {
		dkim_err_set(err, errlen, "unlink %s: %s", path, strerror(errno));
		return -1;
	}
	unlink(tmp);
	for (size_t i = 0; i < n; i++)
		key_file_remove(s, domain, names[i]);
	if (rmdir(dir) == -1 && errno != ENOENT) {
		dkim_err_set(err, errlen, "rmdir %s: %s (files other than keys left there?)", dir,
		             strerror(errno));
		return -1;
	}
	return dir_sync(s->dir, err, errlen);
}

/* ---- walking the store ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int dkkeys_store_walk(const char *data_dir, dkkeys_walk_fn *fn, void *arg, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	if (path_join(dir, sizeof dir, err, errlen, "%s/" STORE_DIR, data_dir) == -1)
		return -1;
	DIR *dp = opendir(dir);
	if (dp == NULL) {
		if (errno == ENOENT)
			return 0;
		dkim_err_set(err, errlen, "opendir %s: %s", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t count = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dp)) != NULL) {
		char norm[DKKEYS_DOMAIN_MAX + 1];
		/* only folders named by a lowercase domain are domains; files and others skipped */
		if (dkkeys_domain_normalize(de->d_name, norm, sizeof norm) == -1 ||
		    strcmp(norm, de->d_name) != 0 || strchr(de->d_name, '.') == NULL)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (count == DOMAINS_MAX) {
			dkim_err_set(err, errlen, "%s: more than %d domains", dir, DOMAINS_MAX);
			rc = -1;
			break;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **n = realloc(names, ncap * sizeof *n);
			if (n == NULL) {
				dkim_err_set(err, errlen, "out of memory");
				rc = -1;
				break;
			}
			names = n;
			cap = ncap;
		}
		names[count] = strdup(de->d_name);
		if (names[count] == NULL) {
			dkim_err_set(err, errlen, "out of memory");
			rc = -1;
			break;
		}
		count++;
		errno = 0;
	}
	if (rc == 0 && errno != 0) {
		dkim_err_set(err, errlen, "readdir %s: %s", dir, strerror(errno));
		rc = -1;
	}
	closedir(dp);
	if (rc == 0 && count > 1)
		qsort(names, count, sizeof *names, name_cmp);
	struct dkkeys_domain *d = rc == 0 ? malloc(sizeof *d) : NULL;
	if (rc == 0 && d == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		rc = -1;
	}
	for (size_t i = 0; i < count && rc == 0; i++) {
		if (domain_load(data_dir, names[i], d, err, errlen) == -1)
			rc = -1;
		else if (d->count > 0)
			rc = fn(d, arg, err, errlen);
	}
	free(d);
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* ---- keys ---- */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1; /* never prompt on a terminal: encrypted keys are refused */
}

/* Fills the p= value, the algorithm and the size of a key; checks what we accept. */
static int key_describe(EVP_PKEY *pkey, struct dkkeys_selector *s, char *err, size_t errlen)
{
	char ebuf[256];
	unsigned char raw[64];
	unsigned char *der = NULL;
	int len;
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		int bits = EVP_PKEY_get_bits(pkey);
		if (bits < DKKEYS_RSA_BITS_MIN || bits > DKKEYS_RSA_BITS_MAX) {
			dkim_err_set(err, errlen, "RSA key of %d bits: want %d to %d", bits,
			             DKKEYS_RSA_BITS_MIN, DKKEYS_RSA_BITS_MAX);
			return -1;
		}
		s->algorithm = DKKEYS_ALG_RSA;
		s->bits = (unsigned)bits;
		len = i2d_PUBKEY(pkey, &der); /* SubjectPublicKeyInfo, as DKIM verifiers expect */
		if (len <= 0) {
			dkim_err_set(err, errlen, "i2d_PUBKEY: %s",
			             dkim_ssl_error(ebuf, sizeof ebuf));
			return -1;
		}
	} else if (EVP_PKEY_is_a(pkey, "ED25519")) {
		size_t rlen = sizeof raw;
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &rlen) != 1 || rlen != 32) {
			dkim_err_set(err, errlen, "EVP_PKEY_get_raw_public_key: %s",
			             dkim_ssl_error(ebuf, sizeof ebuf));
			return -1;
		}
		s->algorithm = DKKEYS_ALG_ED25519;
		s->bits = 256;
		len = (int)rlen;
	} else {
		dkim_err_set(err, errlen, "not an RSA or Ed25519 key");
		return -1;
	}
	const unsigned char *pub = der != NULL ? der : raw;
	if ((size_t)(len + 2) / 3 * 4 > DKKEYS_PUBLIC_MAX) {
		OPENSSL_free(der);
		dkim_err_set(err, errlen, "public key too large");
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)s->public_key, pub, len);
	OPENSSL_free(der);
	return 0;
}

/* The PKCS#8 PEM text of pkey in a secure-memory BIO (caller frees the BIO, which wipes). */
static BIO *key_pem(EVP_PKEY *pkey, char *err, size_t errlen)
{
	char ebuf[256];
	BIO *bio = BIO_new(BIO_s_secmem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		dkim_err_set(err, errlen, "PEM_write_bio_PrivateKey: %s",
		             dkim_ssl_error(ebuf, sizeof ebuf));
		BIO_free(bio);
		return NULL;
	}
	return bio;
}

static const struct dkkeys_selector *selector_find(const struct dkkeys_domain *d, const char *name)
{
	for (size_t i = 0; i < d->count; i++)
		if (strcmp(d->sel[i].name, name) == 0)
			return &d->sel[i];
	return NULL;
}

static bool has_state(const struct dkkeys_domain *d, enum dkkeys_algorithm alg,
                      enum dkkeys_state state)
{
	for (size_t i = 0; i < d->count; i++)
		if (d->sel[i].algorithm == alg && d->sel[i].state == state)
			return true;
	return false;
}

/* "p<YYYYMM>r" / "p<YYYYMM>e", then p...r2 .. p...r99, the first one not in d (or in taken). */
static int selector_default(const struct dkkeys_domain *d, enum dkkeys_algorithm alg, int64_t now,
                            const char *taken, char *out, size_t outlen)
{
	time_t t = (time_t)now;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		return -1;
	char letter = alg == DKKEYS_ALG_RSA ? 'r' : 'e';
	for (int n = 1; n < 100; n++) {
		if (n == 1)
			snprintf(out, outlen, "p%04d%02d%c", tm.tm_year + 1900, tm.tm_mon + 1,
			         letter);
		else
			snprintf(out, outlen, "p%04d%02d%c%d", tm.tm_year + 1900, tm.tm_mon + 1,
			         letter, n);
		if (selector_find(d, out) == NULL && (taken == NULL || strcmp(taken, out) != 0))
			return 0;
	}
	return -1;
}

/*
 * Writes pkey as the key file of (domain, selector). A file left there by an operation that
 * crashed before the selectors file named it is an orphan: it is replaced.
 */
static int key_file_write(struct store *s, const char *domain, const char *selector, EVP_PKEY *pkey,
                          char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	if (domain_path(dir, sizeof dir, s->data_dir, domain, NULL, err, errlen) == -1 ||
	    key_path(path, sizeof path, s->data_dir, domain, selector, err, errlen) == -1 ||
	    dir_ensure(dir, s->data_dir, err, errlen) == -1)
		return -1;
	BIO *bio = key_pem(pkey, err, errlen);
	if (bio == NULL)
		return -1;
	char *pem;
	long len = BIO_get_mem_data(bio, &pem);
	if (unlink(path) == -1 && errno != ENOENT) {
		dkim_err_set(err, errlen, "unlink %s: %s", path, strerror(errno));
		BIO_free(bio);
		return -1;
	}
	int rc = file_write(path, dir, pem, (size_t)len, true, s->data_dir, err, errlen);
	BIO_free(bio);
	return rc;
}

static void key_file_remove(struct store *s, const char *domain, const char *selector)
{
	char path[PATH_MAX], ignored[16];
	if (key_path(path, sizeof path, s->data_dir, domain, selector, ignored, sizeof ignored) ==
	    0)
		unlink(path);
}

/* Adds pkey to domain d (already loaded under the lock) as selector name. */
static int selector_add(struct store *s, struct dkkeys_domain *d, const char *name, EVP_PKEY *pkey,
                        int64_t now, struct dkkeys_selector *out, char *err, size_t errlen)
{
	if (selector_find(d, name) != NULL) {
		dkim_err_set(err, errlen, "%s already has a selector %s", d->name, name);
		return -1;
	}
	if (d->count == DKKEYS_SELECTORS_MAX) {
		dkim_err_set(err, errlen, "%s has %d selectors already: delete some first", d->name,
		             DKKEYS_SELECTORS_MAX);
		return -1;
	}
	struct dkkeys_selector *e = &d->sel[d->count];
	memset(e, 0, sizeof *e);
	memcpy(e->name, name, strlen(name) + 1);
	if (key_describe(pkey, e, err, errlen) == -1)
		return -1;
	e->created = now;
	e->state = has_state(d, e->algorithm, DKKEYS_STATE_ACTIVE) ? DKKEYS_STATE_PENDING
	                                                           : DKKEYS_STATE_ACTIVE;
	if (key_file_write(s, d->name, name, pkey, err, errlen) == -1)
		return -1;
	d->count++;
	if (domain_store(s, d, err, errlen) == -1) {
		d->count--;
		key_file_remove(s, d->name, name);
		return -1;
	}
	if (out != NULL)
		*out = *e;
	return generation_bump(s, err, errlen);
}

static EVP_PKEY *key_new(enum dkkeys_algorithm alg, unsigned bits, char *err, size_t errlen)
{
	char ebuf[256];
	EVP_PKEY *pkey;
	if (alg == DKKEYS_ALG_RSA)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pkey == NULL)
		dkim_err_set(err, errlen, "EVP_PKEY_Q_keygen: %s",
		             dkim_ssl_error(ebuf, sizeof ebuf));
	return pkey;
}

/* Checks the arguments common to keygen and import; normalizes the domain into name. */
static int args_check(const char *domain, const char *selector, char *name, char *err,
                      size_t errlen)
{
	if (dkkeys_domain_normalize(domain, name, DKKEYS_DOMAIN_MAX + 1) == -1 ||
	    strchr(name, '.') == NULL) {
		dkim_err_set(err, errlen, "not a domain name: %.300s", domain);
		return -1;
	}
	if (selector != NULL && dkkeys_selector_check(selector) == -1) {
		dkim_err_set(
		    err, errlen,
		    "bad selector %.100s: lowercase letters, digits, '-' and '.', at most %d",
		    selector, DKKEYS_SELECTOR_MAX);
		return -1;
	}
	return 0;
}

int dkkeys_key_generate(const char *data_dir, const char *domain, const char *selector,
                        enum dkkeys_algorithm alg, unsigned bits, int64_t now,
                        struct dkkeys_selector *out, char *err, size_t errlen)
{
	char name[DKKEYS_DOMAIN_MAX + 1], sel[DKKEYS_SELECTOR_MAX + 1];
	if (args_check(domain, selector, name, err, errlen) == -1)
		return -1;
	if (alg != DKKEYS_ALG_RSA && alg != DKKEYS_ALG_ED25519) {
		dkim_err_set(err, errlen, "unknown algorithm");
		return -1;
	}
	if (alg == DKKEYS_ALG_RSA && (bits < DKKEYS_RSA_BITS_MIN || bits > DKKEYS_RSA_BITS_MAX)) {
		dkim_err_set(err, errlen, "RSA key size %u: want %d to %d bits", bits,
		             DKKEYS_RSA_BITS_MIN, DKKEYS_RSA_BITS_MAX);
		return -1;
	}
	struct dkkeys_domain *d = malloc(sizeof *d);
	if (d == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		return -1;
	}
	struct store s;
	EVP_PKEY *pkey = NULL;
	int rc = -1;
	if (store_lock(&s, data_dir, err, errlen) == -1 ||
	    domain_load(data_dir, name, d, err, errlen) == -1)
		goto done;
	if (selector == NULL) {
		if (selector_default(d, alg, now, NULL, sel, sizeof sel) == -1) {
			dkim_err_set(err, errlen, "no free default selector name; give --selector");
			goto done;
		}
	} else {
		memcpy(sel, selector, strlen(selector) + 1);
	}
	if (selector_find(d, sel) != NULL) {
		dkim_err_set(err, errlen, "%s already has a selector %s", name, sel);
		goto done;
	}
	pkey = key_new(alg, bits, err, errlen);
	if (pkey != NULL)
		rc = selector_add(&s, d, sel, pkey, now, out, err, errlen);
done:
	EVP_PKEY_free(pkey);
	store_unlock(&s);
	free(d);
	return rc;
}

int dkkeys_key_import(const char *data_dir, const char *domain, const char *selector,
                      const char *pem_path, int64_t now, struct dkkeys_selector *out, char *err,
                      size_t errlen)
{
	char name[DKKEYS_DOMAIN_MAX + 1], ebuf[256];
	if (selector == NULL) {
		dkim_err_set(err, errlen, "import needs a selector (the one published in DNS)");
		return -1;
	}
	if (args_check(domain, selector, name, err, errlen) == -1)
		return -1;
	size_t len;
	struct stat st;
	char *pem = file_read(pem_path, &len, &st, NULL, err, errlen);
	if (pem == NULL)
		return -1;
	EVP_PKEY *pkey = NULL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		if (strstr(pem, "ENCRYPTED") != NULL)
			dkim_err_set(
			    err, errlen,
			    "%s: the key is encrypted; decrypt it first (openssl pkey -in FILE)",
			    pem_path);
		else
			dkim_err_set(err, errlen, "%s: not a PEM private key (%s)", pem_path,
			             dkim_ssl_error(ebuf, sizeof ebuf));
	}
	OPENSSL_clear_free(pem, len + 1);
	if (pkey == NULL)
		return -1;
	ERR_clear_error(); /* see dkkeys_private_load */
	struct dkkeys_selector probe;
	if (key_describe(pkey, &probe, err, errlen) == -1) {
		EVP_PKEY_free(pkey);
		return -1;
	}
	struct dkkeys_domain *d = malloc(sizeof *d);
	struct store s = {.lock_fd = -1};
	int rc = -1;
	if (d == NULL)
		dkim_err_set(err, errlen, "out of memory");
	else if (store_lock(&s, data_dir, err, errlen) == 0 &&
	         domain_load(data_dir, name, d, err, errlen) == 0)
		rc = selector_add(&s, d, selector, pkey, now, out, err, errlen);
	store_unlock(&s);
	free(d);
	EVP_PKEY_free(pkey);
	return rc;
}

/* Loads a domain under the lock, with errors for an unknown domain. */
static struct dkkeys_domain *domain_open(struct store *s, const char *data_dir, const char *domain,
                                         char *err, size_t errlen)
{
	char name[DKKEYS_DOMAIN_MAX + 1];
	s->lock_fd = -1;
	if (dkkeys_domain_normalize(domain, name, sizeof name) == -1) {
		dkim_err_set(err, errlen, "not a domain name: %.300s", domain);
		return NULL;
	}
	struct dkkeys_domain *d = malloc(sizeof *d);
	if (d == NULL) {
		dkim_err_set(err, errlen, "out of memory");
		return NULL;
	}
	if (store_lock(s, data_dir, err, errlen) == -1 ||
	    domain_load(data_dir, name, d, err, errlen) == -1) {
		store_unlock(s);
		free(d);
		return NULL;
	}
	if (d->count == 0) {
		dkim_err_set(err, errlen, "no DKIM keys for %s", name);
		store_unlock(s);
		free(d);
		return NULL;
	}
	return d;
}

int dkkeys_domain_rotate(const char *data_dir, const char *domain, int64_t now,
                         struct dkkeys_selector out[2], size_t *count, char *err, size_t errlen)
{
	static const enum dkkeys_algorithm algs[2] = {DKKEYS_ALG_RSA, DKKEYS_ALG_ED25519};
	struct store s;
	*count = 0;
	struct dkkeys_domain *d = domain_open(&s, data_dir, domain, err, errlen);
	if (d == NULL)
		return -1;
	EVP_PKEY *keys[2] = {NULL, NULL};
	char names[2][DKKEYS_SELECTOR_MAX + 1];
	size_t n = 0, old_count = d->count;
	int rc = -1;
	for (size_t a = 0; a < 2; a++) {
		const struct dkkeys_selector *active = NULL;
		for (size_t i = 0; i < d->count; i++)
			if (d->sel[i].algorithm == algs[a] &&
			    d->sel[i].state == DKKEYS_STATE_ACTIVE)
				active = &d->sel[i];
		if (active == NULL)
			continue;
		for (size_t i = 0; i < d->count; i++) {
			if (d->sel[i].algorithm == algs[a] &&
			    d->sel[i].state == DKKEYS_STATE_PENDING) {
				dkim_err_set(
				    err, errlen,
				    "%s: selector %s (%s) is already pending; activate or delete "
				    "it first",
				    d->name, d->sel[i].name, dkkeys_algorithm_name(algs[a]));
				goto done;
			}
		}
		if (d->count + n >= DKKEYS_SELECTORS_MAX) {
			dkim_err_set(err, errlen,
			             "%s has too many selectors: delete retired ones first",
			             d->name);
			goto done;
		}
		if (selector_default(d, algs[a], now, n > 0 ? names[0] : NULL, names[n],
		                     sizeof names[n]) == -1) {
			dkim_err_set(err, errlen, "no free default selector name this month");
			goto done;
		}
		keys[n] = key_new(algs[a], active->bits, err, errlen);
		if (keys[n] == NULL)
			goto done;
		struct dkkeys_selector *e = &d->sel[d->count + n];
		memset(e, 0, sizeof *e);
		memcpy(e->name, names[n], strlen(names[n]) + 1);
		if (key_describe(keys[n], e, err, errlen) == -1)
			goto done;
		e->created = now;
		e->state = DKKEYS_STATE_PENDING;
		n++;
	}
	if (n == 0) {
		dkim_err_set(err, errlen, "%s has no active key to rotate (use keygen)", d->name);
		goto done;
	}
	size_t written = 0;
	for (; written < n; written++)
		if (key_file_write(&s, d->name, names[written], keys[written], err, errlen) == -1)
			break;
	if (written == n) {
		d->count += n;
		if (domain_store(&s, d, err, errlen) == 0)
			rc = 0;
		else
			d->count = old_count;
	}
	if (rc == -1) {
		for (size_t i = 0; i < written; i++)
			key_file_remove(&s, d->name, names[i]);
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = d->sel[old_count + i];
	*count = n;
	rc = generation_bump(&s, err, errlen);
done:
	for (size_t i = 0; i < 2; i++)
		EVP_PKEY_free(keys[i]);
	store_unlock(&s);
	free(d);
	return rc;
}

int dkkeys_selector_activate(const char *data_dir, const char *domain, const char *selector,
                             int64_t now, int64_t grace, char *err, size_t errlen)
{
	struct store s;
	struct dkkeys_domain *d = domain_open(&s, data_dir, domain, err, errlen);
	if (d == NULL)
		return -1;
	int rc = -1;
	struct dkkeys_selector *e = NULL;
	for (size_t i = 0; i < d->count; i++)
		if (strcmp(d->sel[i].name, selector) == 0)
			e = &d->sel[i];
	if (e == NULL) {
		dkim_err_set(err, errlen, "%s has no selector %.100s", d->name, selector);
	} else if (e->state == DKKEYS_STATE_ACTIVE) {
		rc = 0;
	} else if (e->state != DKKEYS_STATE_PENDING) {
		dkim_err_set(err, errlen, "%s selector %s is %s, only pending selectors activate",
		             d->name, e->name, dkkeys_state_name(e->state));
	} else {
		for (size_t i = 0; i < d->count; i++) {
			struct dkkeys_selector *o = &d->sel[i];
			if (o != e && o->algorithm == e->algorithm &&
			    o->state == DKKEYS_STATE_ACTIVE) {
				o->state = DKKEYS_STATE_RETIRING;
				o->retire_at = now + (grace > 0 ? grace : 0);
			}
		}
		e->state = DKKEYS_STATE_ACTIVE;
		if (domain_store(&s, d, err, errlen) == 0)
			rc = generation_bump(&s, err, errlen);
	}
	store_unlock(&s);
	free(d);
	return rc;
}

int dkkeys_domain_retire_due(const char *data_dir, const char *domain, int64_t now, size_t *retired,
                             char *err, size_t errlen)
{
	struct store s;
	*retired = 0;
	struct dkkeys_domain *d = domain_open(&s, data_dir, domain, err, errlen);
	if (d == NULL)
		return -1;
	for (size_t i = 0; i < d->count; i++) {
		if (d->sel[i].state == DKKEYS_STATE_RETIRING && d->sel[i].retire_at <= now) {
			d->sel[i].state = DKKEYS_STATE_RETIRED;
			(*retired)++;
		}
	}
	int rc = 0;
	if (*retired > 0) {
		rc = domain_store(&s, d, err, errlen);
		for (size_t i = 0; i < d->count && rc == 0; i++)
			if (d->sel[i].state == DKKEYS_STATE_RETIRED)
				key_file_remove(&s, d->name, d->sel[i].name);
		if (rc == 0)
			rc = generation_bump(&s, err, errlen);
	}
	store_unlock(&s);
	free(d);
	return rc;
}

int dkkeys_selector_delete(const char *data_dir, const char *domain, const char *selector,
                           char *err, size_t errlen)
{
	struct store s;
	struct dkkeys_domain *d = domain_open(&s, data_dir, domain, err, errlen);
	if (d == NULL)
		return -1;
	char removed[DKKEYS_SELECTORS_MAX][DKKEYS_SELECTOR_MAX + 1];
	size_t nremoved = 0, keep = 0;
	for (size_t i = 0; i < d->count; i++) {
		if (selector == NULL || strcmp(d->sel[i].name, selector) == 0)
			memcpy(removed[nremoved++], d->sel[i].name, sizeof removed[0]);
		else
			d->sel[keep++] = d->sel[i];
	}
	int rc = -1;
	if (nremoved == 0) {
		dkim_err_set(err, errlen, "%s has no selector %.100s", d->name, selector);
	} else if (keep > 0) {
		/* the selectors file first, so that a reader never meets a named key that is gone
		 */
		d->count = keep;
		rc = domain_store(&s, d, err, errlen);
		for (size_t i = 0; i < nremoved && rc == 0; i++)
			key_file_remove(&s, d->name, removed[i]);
	} else {
		rc = domain_remove(&s, d->name, removed, nremoved, err, errlen);
	}
	if (rc == 0)
		rc = generation_bump(&s, err, errlen);
	store_unlock(&s);
	free(d);
	return rc;
}

/* ---- what dksign.c reads ---- */

int dkkeys_private_stamp(const char *data_dir, const char *domain, const char *selector,
                         struct dkkeys_stamp *out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	memset(out, 0, sizeof *out);
	if (key_path(path, sizeof path, data_dir, domain, selector, err, errlen) == -1)
		return -1;
	if (stat(path, &st) == -1) {
		dkim_err_set(err, errlen, "stat %s: %s", path, strerror(errno));
		return -1;
	}
	stamp_from(out, &st);
	return 0;
}

EVP_PKEY *dkkeys_private_load(const char *data_dir, const char *domain,
                              const struct dkkeys_selector *sel, struct dkkeys_stamp *stamp,
                              char *err, size_t errlen)
{
	char path[PATH_MAX], ebuf[256];
	if (key_path(path, sizeof path, data_dir, domain, sel->name, err, errlen) == -1)
		return NULL;
	size_t len;
	struct stat st;
	char *pem = file_read(path, &len, &st, NULL, err, errlen);
	if (pem == NULL)
		return NULL;
	EVP_PKEY *pkey = NULL;
	if ((st.st_mode & 077) != 0) {
		dkim_err_set(err, errlen, "%s: mode %03o, want 0600 (a private key)", path,
		             (unsigned)(st.st_mode & 0777));
	} else {
		BIO *bio = BIO_new_mem_buf(pem, (int)len);
		if (bio != NULL)
			pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
		BIO_free(bio);
		if (pkey == NULL)
			dkim_err_set(err, errlen, "%s: cannot parse the private key (%s)", path,
			             dkim_ssl_error(ebuf, sizeof ebuf));
	}
	OPENSSL_clear_free(pem, len + 1);
	if (pkey == NULL)
		return NULL;
	struct dkkeys_selector got;
	memset(&got, 0, sizeof got);
	if (key_describe(pkey, &got, err, errlen) == -1) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	if (got.algorithm != sel->algorithm || strcmp(got.public_key, sel->public_key) != 0) {
		dkim_err_set(err, errlen, "%s: not the key of selector %s (its public key differs)",
		             path, sel->name);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	stamp_from(stamp, &st);
	/* OpenSSL 3's decoders may queue errors from the formats they tried first: leave the
	 * thread's queue empty (the event loop thread reloads keys, and its TLS calls read it) */
	ERR_clear_error();
	return pkey;
}

/* ---- DNS record text ---- */

int dkkeys_record_format(const char *domain, const struct dkkeys_selector *s, struct buf *out)
{
	char value[DKKEYS_PUBLIC_MAX + 64];
	int n = snprintf(value, sizeof value, "v=DKIM1; k=%s; p=%s",
	                 dkkeys_algorithm_name(s->algorithm), s->public_key);
	if (n < 0 || (size_t)n >= sizeof value)
		return -1;
	if (buf_printf(out, "%s._domainkey.%s. IN TXT (", s->name, domain) == -1)
		return -1;
	/* RFC 1035 3.3.14: a character-string is at most 255 octets; the value has no '"'
	 * or '\\' to escape (base64 and fixed text) */
	for (size_t off = 0; off < (size_t)n; off += 255) {
		size_t chunk = (size_t)n - off < 255 ? (size_t)n - off : 255;
		if (buf_printf(out, " \"%.*s\"", (int)chunk, value + off) == -1)
			return -1;
	}
	return buf_append_str(out, " )\n");
}
