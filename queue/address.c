/*
 * address.c: parsing of the Redis address setting ("unix:<path>", "<host>:<port>",
 * "[<ipv6>]:<port>") and the names of queue results. Pure functions: no I/O, no hiredis, so
 * the config checker can call them. Owns nothing else.
 */
#include "queue/queue.h"
#include "queue/internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void queue_error_set(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vsnprintf(err, errlen, fmt, ap) < 0)
		err[0] = '\0';
	va_end(ap);
}

/* Letters, digits, '.', '-' and '_' only: a DNS name or an IPv4 address in dotted form. */
static bool host_name_valid(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
		if (!ok)
			return false;
	}
	return true;
}

/* 1..65535, decimal digits only (no sign, no spaces, at most 5 digits). */
static int port_parse(const char *s, int *port)
{
	size_t len = strlen(s);
	if (len == 0 || len > 5)
		return -1;
	int v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

int queue_address_parse(const char *text, struct queue_address *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (text == NULL || text[0] == '\0') {
		queue_error_set(err, errlen, "empty redis address");
		return -1;
	}
	for (const char *p = text; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f) {
			queue_error_set(err, errlen,
			                "redis address has a space or control character");
			return -1;
		}
	}
	if (strncmp(text, "unix:", 5) == 0) {
		const char *path = text + 5;
		size_t len = strlen(path);
		if (len == 0 || len >= sizeof(out->path)) {
			queue_error_set(err, errlen, "unix socket path must be 1..%zu bytes",
			                sizeof(out->path) - 1);
			return -1;
		}
		memcpy(out->path, path, len + 1);
		out->is_unix = true;
		return 0;
	}

	const char *colon;
	const char *host;
	size_t hostlen;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':') {
			queue_error_set(err, errlen, "want [ipv6]:port");
			return -1;
		}
		host = text + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1;
		if (hostlen == 0 || hostlen >= sizeof(out->host)) {
			queue_error_set(err, errlen, "bad IPv6 address in brackets");
			return -1;
		}
		memcpy(out->host, host, hostlen);
		out->host[hostlen] = '\0';
		unsigned char tmp[16];
		if (inet_pton(AF_INET6, out->host, tmp) != 1) {
			queue_error_set(err, errlen, "bad IPv6 address in brackets");
			return -1;
		}
	} else {
		colon = strchr(text, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL) {
			queue_error_set(err, errlen, "want unix:/path, host:port or [ipv6]:port");
			return -1;
		}
		host = text;
		hostlen = (size_t)(colon - text);
		if (hostlen >= sizeof(out->host) || !host_name_valid(host, hostlen)) {
			queue_error_set(err, errlen, "bad host name in redis address");
			return -1;
		}
		memcpy(out->host, host, hostlen);
		out->host[hostlen] = '\0';
	}
	if (port_parse(colon + 1, &out->port) == -1) {
		queue_error_set(err, errlen, "redis port must be 1..65535");
		return -1;
	}
	return 0;
}

const char *queue_result_name(enum queue_result res)
{
	switch (res) {
	case QUEUE_OK:
		return "ok";
	case QUEUE_UNAVAILABLE:
		return "unavailable";
	case QUEUE_FULL:
		return "full";
	case QUEUE_CONFLICT:
		return "conflict";
	}
	return "unknown";
}
