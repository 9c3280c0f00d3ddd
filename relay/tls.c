/*
 * tls.c: server TLS context and self-signed certificate generation (see tls.h).
 * Only TLS 1.2 and 1.3 are enabled; OpenSSL's default cipher lists and security level 2 apply.
 * SSL_MODE_RELEASE_BUFFERS keeps idle sessions small (thousands of pooled client connections).
 */
#include "relay/tls.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "relay/log.h"

static void openssl_reason(char *out, size_t outlen)
{
	unsigned long e = ERR_get_error();
	if (e == 0)
		snprintf(out, outlen, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, out, outlen);
	ERR_clear_error();
}

static int add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ex == NULL)
		return -1;
	int ok = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return ok == 1 ? 0 : -1;
}

static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1)
		return -1;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	int ok =
	    key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	if (fclose(f) != 0)
		ok = 0;
	if (ok != 1 || rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

int tls_selfsigned_ensure(const char *cert_path, const char *key_path, const char *hostname,
                          char *err, size_t errlen)
{
	struct stat st;
	bool have_cert = stat(cert_path, &st) == 0, have_key = stat(key_path, &st) == 0;
	if (have_cert && have_key)
		return 0;
	if (have_cert != have_key) {
		snprintf(err, errlen, "%s exists but %s does not", have_cert ? cert_path : key_path,
		         have_cert ? key_path : cert_path);
		return -1;
	}
	int rc = -1;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	if (key == NULL || cert == NULL)
		goto ssl_fail;
	unsigned char serial[16];
	if (RAND_bytes(serial, sizeof serial) != 1)
		goto ssl_fail;
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL) {
		BN_free(bn);
		goto ssl_fail;
	}
	BN_free(bn);
	char san[300];
	snprintf(san, sizeof san, "DNS:%s", hostname);
	X509_NAME *name = X509_get_subject_name(cert);
	if (X509_set_version(cert, 2) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600) == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname,
	                               -1, -1, 0) != 1 ||
	    X509_set_issuer_name(cert, name) != 1 || X509_set_pubkey(cert, key) != 1 ||
	    add_ext(cert, NID_subject_alt_name, san) == -1 ||
	    add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") == -1 ||
	    add_ext(cert, NID_ext_key_usage, "serverAuth") == -1 ||
	    X509_sign(cert, key, EVP_sha256()) == 0)
		goto ssl_fail;
	if (write_pem(key_path, 0600, key, NULL) == -1 ||
	    write_pem(cert_path, 0644, NULL, cert) == -1) {
		snprintf(err, errlen, "cannot write %s or %s: %s", key_path, cert_path,
		         strerror(errno));
		goto out;
	}
	log_info(0, "event=tls_selfsigned cert=%s key=%s hostname=%s", cert_path, key_path,
	         hostname);
	rc = 0;
	goto out;
ssl_fail : {
	char why[256];
	openssl_reason(why, sizeof why);
	snprintf(err, errlen, "self-signed certificate: %s", why);
}
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}

SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
	char why[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		openssl_reason(why, sizeof why);
		snprintf(err, errlen, "SSL_CTX_new: %s", why);
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		openssl_reason(why, sizeof why);
		snprintf(err, errlen, "SSL_CTX_set_min_proto_version: %s", why);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		openssl_reason(why, sizeof why);
		snprintf(err, errlen, "%s: %s", cert_path, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		openssl_reason(why, sizeof why);
		snprintf(err, errlen, "%s: %s", key_path, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		openssl_reason(why, sizeof why);
		snprintf(err, errlen, "%s does not match %s: %s", key_path, cert_path, why);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void tls_describe(SSL *ssl, char *out, size_t outlen)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	snprintf(out, outlen, "%s %s", SSL_get_version(ssl), c ? SSL_CIPHER_get_name(c) : "none");
}
