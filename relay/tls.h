/*
 * tls.h: the server TLS context (RFC 8446/5246; TLS 1.2 and newer only) and the self-signed
 * certificate made at first start when none is configured.
 */
#ifndef POSTINO_TLS_H
#define POSTINO_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Makes sure cert_path and key_path exist: when both are missing, writes a new self-signed
 * ECDSA P-256 certificate for hostname (key mode 0600) and logs its path. Returns 0 or -1
 * with a reason in err. */
int tls_selfsigned_ensure(const char *cert_path, const char *key_path, const char *hostname,
                          char *err, size_t errlen);

/* Creates the server context from PEM files (certificate chain and key). Returns NULL with
 * a reason in err (OpenSSL's error text included). Caller frees with SSL_CTX_free. */
SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" style description of a session, for logs and Received. */
void tls_describe(SSL *ssl, char *out, size_t outlen);

#endif
