/*
 * config.c: the configuration table and its parser (see config.h).
 *
 * Every key is one row of config_keys: name, type, range and default text. Defaults go through
 * the same parser as the file, so a default can never be a value the file could not hold.
 * The file format: "key = value", '#' starts a comment at line start or after whitespace,
 * blank lines ignored, a key may appear once.
 */
#include "relay/config.h"
#include "relay/num.h"

#include "queue/queue.h"
#include "relay/resolver.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1024 * 1024)

enum config_type {
	CONFIG_TYPE_STRING,
	CONFIG_TYPE_BOOL,
	CONFIG_TYPE_INT,
	CONFIG_TYPE_SIZE,
	CONFIG_TYPE_LISTEN,
	CONFIG_TYPE_LOG_LEVEL,
	CONFIG_TYPE_REDIS,
	CONFIG_TYPE_DKIM_ALGORITHMS,
	CONFIG_TYPE_DKIM_UNKNOWN,
	CONFIG_TYPE_DNS_SERVER,
};

struct config_key {
	const char *name;
	enum config_type type;
	size_t offset;
	size_t size; /* of the field, for strings */
	int64_t min, max;
	const char *def;
};

#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)

static const struct config_key config_keys[] = {
    {"hostname", CONFIG_TYPE_STRING, F(hostname), 0, 0, ""},
    {"data_dir", CONFIG_TYPE_STRING, F(data_dir), 1, 0, "/var/lib/postino"},
    {"redis", CONFIG_TYPE_REDIS, F(redis), 0, 0, ""},
    {"redis_password", CONFIG_TYPE_STRING, F(redis_password), 0, 0, ""},
    {"redis_unsafe_ok", CONFIG_TYPE_BOOL, F(redis_unsafe_ok), 0, 1, "no"},
    {"redis_timeout", CONFIG_TYPE_INT, F(redis_timeout_ms), 10, 600000, "3000"},
    {"redis_server", CONFIG_TYPE_STRING, F(redis_server), 1, 0, "redis-server"},
    {"redis_maxmemory", CONFIG_TYPE_SIZE, F(redis_maxmemory), 0, INT64_MAX, "0"},
    {"listen_submission", CONFIG_TYPE_LISTEN, F(listen_submission), 0, 0,
     "0.0.0.0:587,0.0.0.0:2525"},
    {"listen_smtps", CONFIG_TYPE_LISTEN, F(listen_smtps), 0, 0, "0.0.0.0:465"},
    {"tls_cert", CONFIG_TYPE_STRING, F(tls_cert), 0, 0, ""},
    {"tls_key", CONFIG_TYPE_STRING, F(tls_key), 0, 0, ""},
    {"workers", CONFIG_TYPE_INT, F(workers), 0, 256, "0"},
    {"sign_threads", CONFIG_TYPE_INT, F(sign_threads), 0, 256, "0"},
    {"sign_backlog", CONFIG_TYPE_INT, F(sign_backlog), 1, 100000, "256"},
    {"auth_cleartext_loopback", CONFIG_TYPE_BOOL, F(auth_cleartext_loopback), 0, 1, "no"},
    {"max_recipients", CONFIG_TYPE_INT, F(max_recipients), 1, 100000, "1000"},
    {"max_message_size", CONFIG_TYPE_SIZE, F(max_message_size), 1024, 512LL << 20, "25M"},
    {"max_received_headers", CONFIG_TYPE_INT, F(max_received_headers), 1, 1000, "50"},
    {"idle_timeout", CONFIG_TYPE_INT, F(idle_timeout), 1, 86400, "300"},
    {"data_timeout", CONFIG_TYPE_INT, F(data_timeout), 1, 86400, "180"},
    {"tls_handshake_timeout", CONFIG_TYPE_INT, F(tls_handshake_timeout), 1, 3600, "30"},
    {"max_connections", CONFIG_TYPE_INT, F(max_connections), 1, 1000000, "10000"},
    {"max_connections_per_ip", CONFIG_TYPE_INT, F(max_connections_per_ip), 1, 1000000, "200"},
    {"max_errors", CONFIG_TYPE_INT, F(max_errors), 1, 1000, "10"},
    {"auth_max_failures_ip", CONFIG_TYPE_INT, F(auth_max_failures_ip), 1, 100000, "20"},
    {"auth_max_failures_user", CONFIG_TYPE_INT, F(auth_max_failures_user), 1, 100000, "10"},
    {"auth_failure_window", CONFIG_TYPE_INT, F(auth_failure_window), 1, 86400, "900"},
    {"auth_cache_ttl", CONFIG_TYPE_INT, F(auth_cache_ttl), 0, 86400, "60"},
    {"log_level", CONFIG_TYPE_LOG_LEVEL, F(log_level), 0, 0, "info"},
    {"dkim_algorithms", CONFIG_TYPE_DKIM_ALGORITHMS, F(dkim_algorithms), 0, 0, "both"},
    {"dkim_lifetime", CONFIG_TYPE_INT, F(dkim_lifetime), 0, 31622400, "604800"},
    {"dkim_unknown_domain", CONFIG_TYPE_DKIM_UNKNOWN, F(dkim_unknown_domain), 0, 0, "sign"},
    {"dkim_domain", CONFIG_TYPE_STRING, F(dkim_domain), 0, 0, ""},
    {"dns_resolver", CONFIG_TYPE_DNS_SERVER, F(dns_resolver), 0, 0, ""},
    {"dns_timeout", CONFIG_TYPE_INT, F(dns_timeout_ms), 100, 60000, "5000"},
    {"spf_include", CONFIG_TYPE_STRING, F(spf_include), 0, 0, ""},
    {"dkim_dns_check_interval", CONFIG_TYPE_INT, F(dkim_dns_check_interval), 0, 86400, "300"},
    {"dkim_retire_grace", CONFIG_TYPE_INT, F(dkim_retire_grace), 0, 31622400, "1036800"},
};

#undef F

#define NKEYS (sizeof config_keys / sizeof config_keys[0])

static void set_err(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_err(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
{
	int n = line ? snprintf(err, errlen, "%s:%u: ", name, line)
	             : snprintf(err, errlen, "%s: ", name);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Decimal s[0..len) into *out, at most 18 digits' worth (the table's ranges are far below). */
static int parse_uint(const char *s, size_t len, uint64_t *out)
{
	return num_parse_u64(s, len, 999999999999999999ULL, out);
}

static int parse_size(const char *s, uint64_t *out)
{
	size_t len = strlen(s);
	uint64_t mult = 1;
	if (len > 0) {
		switch (s[len - 1]) {
		case 'k':
		case 'K':
			mult = 1024;
			break;
		case 'm':
		case 'M':
			mult = 1024 * 1024;
			break;
		case 'g':
		case 'G':
			mult = 1024 * 1024 * 1024;
			break;
		default:
			break;
		}
		if (mult != 1)
			len--;
	}
	uint64_t v;
	if (parse_uint(s, len, &v) == -1 || v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

/* Parses "ADDR:PORT" (IPv4) or "[ADDR]:PORT" (IPv6) into a. Returns NULL or a reason. */
static const char *parse_listen_addr(const char *s, size_t len, struct config_listen_addr *a)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon;
	size_t hlen;
	if (len == 0)
		return "empty address";
	if (len >= sizeof a->text)
		return "address too long";
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (close == NULL || close + 1 >= s + len || close[1] != ':')
			return "IPv6 address must be written [ADDR]:PORT";
		hlen = (size_t)(close - s - 1);
		if (hlen >= sizeof host)
			return "bad IPv6 address";
		memcpy(host, s + 1, hlen);
		colon = close + 1;
	} else {
		colon = memrchr(s, ':', len);
		if (colon == NULL)
			return "missing :PORT";
		hlen = (size_t)(colon - s);
		if (hlen >= sizeof host)
			return "bad address";
		if (memchr(s, ':', hlen) != NULL)
			return "IPv6 address must be written [ADDR]:PORT";
		memcpy(host, s, hlen);
	}
	host[hlen] = '\0';
	uint64_t port;
	if (parse_uint(colon + 1, (size_t)(s + len - colon - 1), &port) == -1 || port == 0 ||
	    port > 65535)
		return "bad port (1..65535)";
	memset(a, 0, sizeof *a);
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->addr;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		a->len = sizeof *in4;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		a->len = sizeof *in6;
	} else {
		return "not a numeric IP address";
	}
	memcpy(a->text, s, len);
	a->text[len] = '\0';
	return NULL;
}

static const char *parse_listen(const char *v, struct config_listen *l)
{
	l->count = 0;
	const char *p = v;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *end = p;
		while (*end != '\0' && *end != ',' && *end != ' ' && *end != '\t')
			end++;
		if (l->count == CONFIG_LISTEN_MAX)
			return "too many addresses (at most 16)";
		const char *why = parse_listen_addr(p, (size_t)(end - p), &l->a[l->count]);
		if (why != NULL)
			return why;
		l->count++;
		p = end;
	}
	return NULL;
}

/* Sets one key from its text value. Returns NULL or a reason. */
static const char *config_set(struct config *cfg, const struct config_key *k, const char *v,
                              char *why_buf, size_t why_len)
{
	char *field = (char *)cfg + k->offset;
	uint64_t u;
	switch (k->type) {
	case CONFIG_TYPE_REDIS: {
		struct queue_address qa;
		if (*v != '\0' && queue_address_parse(v, &qa, why_buf, why_len) == -1)
			return why_buf;
		if (*v != '\0' && qa.is_unix && qa.path[0] != '/')
			return "unix socket path must be absolute (unix:/path)";
	}
		/* fall through */
	case CONFIG_TYPE_DNS_SERVER:
		if (k->type == CONFIG_TYPE_DNS_SERVER && *v != '\0') { /* "" is resolv.conf's */
			struct sockaddr_storage ss;
			socklen_t sl;
			if (resolver_server_parse(v, &ss, &sl, why_buf, why_len) == -1)
				return why_buf;
		}
		/* fall through */
	case CONFIG_TYPE_STRING:
		if (strlen(v) >= k->size)
			return "value too long";
		if (k->min > 0 && *v == '\0')
			return "value must not be empty";
		memcpy(field, v, strlen(v) + 1);
		return NULL;
	case CONFIG_TYPE_BOOL:
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0)
			*(bool *)(void *)field = true;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "off") == 0)
			*(bool *)(void *)field = false;
		else
			return "expected yes or no";
		return NULL;
	case CONFIG_TYPE_INT:
		if (parse_uint(v, strlen(v), &u) == -1)
			return "expected a whole number";
		if ((int64_t)u < k->min || (int64_t)u > k->max)
			return "out of range";
		*(int *)(void *)field = (int)u;
		return NULL;
	case CONFIG_TYPE_SIZE:
		if (parse_size(v, &u) == -1)
			return "expected a size (bytes, or with K, M or G)";
		if (u > (uint64_t)k->max || (int64_t)u < k->min)
			return "out of range";
		*(uint64_t *)(void *)field = u;
		return NULL;
	case CONFIG_TYPE_LISTEN:
		return parse_listen(v, (struct config_listen *)(void *)field);
	case CONFIG_TYPE_LOG_LEVEL:
		if (log_level_parse(v, (enum log_level *)(void *)field) == -1)
			return "expected debug, info, warning or error";
		return NULL;
	case CONFIG_TYPE_DKIM_ALGORITHMS: {
		enum config_dkim_algorithms *a = (enum config_dkim_algorithms *)(void *)field;
		if (strcmp(v, "rsa") == 0)
			*a = CONFIG_DKIM_RSA;
		else if (strcmp(v, "ed25519") == 0)
			*a = CONFIG_DKIM_ED25519;
		else if (strcmp(v, "both") == 0)
			*a = CONFIG_DKIM_BOTH;
		else
			return "expected rsa, ed25519 or both";
		return NULL;
	}
	case CONFIG_TYPE_DKIM_UNKNOWN: {
		enum config_dkim_unknown *unknown = (enum config_dkim_unknown *)(void *)field;
		if (strcmp(v, "sign") == 0)
			*unknown = CONFIG_DKIM_UNKNOWN_SIGN;
		else if (strcmp(v, "refuse") == 0)
			*unknown = CONFIG_DKIM_UNKNOWN_REFUSE;
		else
			return "expected sign or refuse";
		return NULL;
	}
	}
	return "unknown type";
}

static const struct config_key *config_key_find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static void range_text(const struct config_key *k, char *out, size_t outlen)
{
	if (k->type == CONFIG_TYPE_INT || k->type == CONFIG_TYPE_SIZE)
		snprintf(out, outlen, " (%lld..%lld)", (long long)k->min, (long long)k->max);
	else
		out[0] = '\0';
}

static int config_derive(struct config *cfg, char *err, size_t errlen)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	if (cfg->workers == 0)
		cfg->workers = (int)cores;
	if (cfg->sign_threads == 0)
		cfg->sign_threads = (int)cores;
	if (cfg->hostname[0] == '\0') {
		if (gethostname(cfg->hostname, sizeof cfg->hostname - 1) == -1) {
			set_err(err, errlen, cfg->file, 0, "gethostname: %s", strerror(errno));
			return -1;
		}
		cfg->hostname[sizeof cfg->hostname - 1] = '\0';
	}
	if (cfg->dkim_domain[0] == '\0') {
		/* The relay's own signing domain: mx1.example.com signs as example.com, a
		 * two-label name (example.com) as itself; a bare host name has no domain, so it
		 * signs as NAME.invalid (RFC 2606), which can never verify: main.c warns. */
		const char *h = cfg->hostname;
		const char *dot = strchr(h, '.');
		bool three = dot != NULL && strchr(dot + 1, '.') != NULL;
		const char *from = three ? dot + 1 : h;
		size_t i = 0;
		for (; from[i] != '\0' && i < sizeof cfg->dkim_domain - 10; i++)
			cfg->dkim_domain[i] = (char)tolower((unsigned char)from[i]);
		cfg->dkim_domain[i] = '\0';
		if (i > 0 && cfg->dkim_domain[i - 1] == '.')
			cfg->dkim_domain[--i] = '\0';
		if (dot == NULL)
			memcpy(cfg->dkim_domain + i, ".invalid", sizeof ".invalid");
	}
	if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
		set_err(err, errlen, cfg->file, 0, "tls_cert and tls_key must be set together");
		return -1;
	}
	return 0;
}

int config_parse(const char *name, const char *text, size_t len, struct config *cfg, char *err,
                 size_t errlen)
{
	bool seen[NKEYS] = {false};
	memset(cfg, 0, sizeof *cfg);
	snprintf(cfg->file, sizeof cfg->file, "%s", name);
	char why[200];
	for (size_t i = 0; i < NKEYS; i++) {
		const char *bad =
		    config_set(cfg, &config_keys[i], config_keys[i].def, why, sizeof why);
		if (bad != NULL) { /* a broken table is a programming error */
			set_err(err, errlen, "built-in default", 0, "%s: %s", config_keys[i].name,
			        bad);
			return -1;
		}
	}
	unsigned lineno = 0;
	size_t pos = 0;
	while (pos < len) {
		lineno++;
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		pos += llen + (nl ? 1 : 0);
		char buf[4096];
		if (llen >= sizeof buf) {
			set_err(err, errlen, name, lineno, "line too long");
			return -1;
		}
		memcpy(buf, line, llen);
		buf[llen] = '\0';
		if (memchr(line, '\0', llen) != NULL) {
			set_err(err, errlen, name, lineno, "NUL byte in line");
			return -1;
		}
		/* strip comments: '#' at line start or after whitespace */
		for (size_t i = 0; i < llen; i++) {
			if (buf[i] == '#' && (i == 0 || isspace((unsigned char)buf[i - 1]))) {
				buf[i] = '\0';
				break;
			}
		}
		char *s = buf;
		while (isspace((unsigned char)*s))
			s++;
		char *end = s + strlen(s);
		while (end > s && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*s == '\0')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			set_err(err, errlen, name, lineno, "expected key = value");
			return -1;
		}
		char *kend = eq;
		while (kend > s && isspace((unsigned char)kend[-1]))
			kend--;
		*kend = '\0';
		char *v = eq + 1;
		while (isspace((unsigned char)*v))
			v++;
		const struct config_key *k = config_key_find(s);
		if (k == NULL) {
			set_err(err, errlen, name, lineno, "unknown key '%.64s'", s);
			return -1;
		}
		size_t idx = (size_t)(k - config_keys);
		if (seen[idx]) {
			set_err(err, errlen, name, lineno, "%s is set twice", k->name);
			return -1;
		}
		seen[idx] = true;
		const char *bad = config_set(cfg, k, v, why, sizeof why);
		if (bad != NULL) {
			char range[64];
			range_text(k, range, sizeof range);
			set_err(err, errlen, name, lineno, "%s: %s%s", k->name, bad, range);
			return -1;
		}
	}
	return config_derive(cfg, err, errlen);
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		set_err(err, errlen, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
		set_err(err, errlen, path, 0, "not a regular file of at most 1 MiB");
		close(fd);
		return -1;
	}
	char *text = malloc((size_t)st.st_size + 1);
	if (text == NULL) {
		close(fd);
		set_err(err, errlen, path, 0, "out of memory");
		return -1;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	int rc = config_parse(path, text, got, cfg, err, errlen);
	free(text);
	return rc;
}

int config_embedded_redis_path(const struct config *cfg, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/redis.sock", cfg->data_dir);
	return (n < 0 || (size_t)n >= outlen || (size_t)n >= 100) ? -1 : 0; /* sun_path limit */
}
