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
	CONFIG_TYPE_TLS_POLICY,
	CONFIG_TYPE_RATE,
	CONFIG_TYPE_IP, /* a numeric IPv4 or IPv6 address, or "" */
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
    {"delivery", CONFIG_TYPE_BOOL, F(delivery), 0, 1, "yes"},
    {"outbound_ehlo", CONFIG_TYPE_STRING, F(outbound_ehlo), 0, 0, ""},
    {"outbound_source", CONFIG_TYPE_IP, F(outbound_source), 0, 0, ""},
    {"outbound_port", CONFIG_TYPE_INT, F(outbound_port), 1, 65535, "25"},
    {"outbound_tls", CONFIG_TYPE_TLS_POLICY, F(outbound_tls), 0, 0, "opportunistic"},
    {"outbound_connect_timeout", CONFIG_TYPE_INT, F(outbound_connect_timeout), 1, 3600, "30"},
    {"outbound_command_timeout", CONFIG_TYPE_INT, F(outbound_command_timeout), 1, 3600, "300"},
    {"outbound_data_timeout", CONFIG_TYPE_INT, F(outbound_data_timeout), 1, 7200, "600"},
    {"outbound_idle_timeout", CONFIG_TYPE_INT, F(outbound_idle_timeout), 0, 3600, "5"},
    {"outbound_max_connections", CONFIG_TYPE_INT, F(outbound_max_connections), 1, 100000, "1000"},
    {"site_connections", CONFIG_TYPE_INT, F(site_connections), 1, 10000, "10"},
    {"site_messages_per_connection", CONFIG_TYPE_INT, F(site_messages_per_connection), 1, 100000,
     "100"},
    {"site_rate", CONFIG_TYPE_RATE, F(site_rate), 0, 0, ""},
    {"site_burst", CONFIG_TYPE_INT, F(site_burst), 1, 100000, "1"},
    {"site_down_time", CONFIG_TYPE_INT, F(site_down_time), 1, 86400, "300"},
    {"retry_first", CONFIG_TYPE_INT, F(retry_first), 1, 86400, "300"},
    {"retry_max", CONFIG_TYPE_INT, F(retry_max), 1, 604800, "3600"},
    {"retry_jitter", CONFIG_TYPE_INT, F(retry_jitter), 0, 100, "10"},
    {"max_queue_age", CONFIG_TYPE_INT, F(max_queue_age), 1, 31622400, "432000"},
    {"lease_timeout", CONFIG_TYPE_INT, F(lease_timeout), 10, 86400, "900"},
    {"max_queued_recipients", CONFIG_TYPE_INT, F(max_queued_recipients), 0, INT32_MAX, "0"},
    {"redis_memory_limit", CONFIG_TYPE_INT, F(redis_memory_limit), 1, 100, "90"},
    {"soft_bounce_limit", CONFIG_TYPE_INT, F(soft_bounce_limit), 0, 1000, "3"},
    {"soft_bounce_window", CONFIG_TYPE_INT, F(soft_bounce_window), 1, 31622400, "604800"},
    {"bounce_rules", CONFIG_TYPE_STRING, F(bounce_rules), 1, 0, "bounce-rules.conf"},
    {"bounce_rules_local", CONFIG_TYPE_STRING, F(bounce_rules_local), 0, 0, ""},
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

static const char *parse_tls_policy(const char *v, enum config_tls_policy *out)
{
	if (strcmp(v, "none") == 0)
		*out = CONFIG_TLS_NONE;
	else if (strcmp(v, "opportunistic") == 0)
		*out = CONFIG_TLS_OPPORTUNISTIC;
	else if (strcmp(v, "required") == 0)
		*out = CONFIG_TLS_REQUIRED;
	else
		return "expected none, opportunistic or required";
	return NULL;
}

/* "" (no limit), or "N/s", "N/m", "N/h" with N in 1..1000000. */
static const char *parse_rate(const char *v, struct config_rate *out)
{
	if (*v == '\0') {
		out->count = 0;
		out->period_ms = 1000;
		return NULL;
	}
	const char *slash = strchr(v, '/');
	uint64_t n;
	if (slash == NULL || parse_uint(v, (size_t)(slash - v), &n) == -1 || n < 1 || n > 1000000)
		return "expected a rate N/s, N/m or N/h (N in 1..1000000)";
	if (strcmp(slash + 1, "s") == 0)
		out->period_ms = 1000;
	else if (strcmp(slash + 1, "m") == 0)
		out->period_ms = 60000;
	else if (strcmp(slash + 1, "h") == 0)
		out->period_ms = 3600000;
	else
		return "expected a rate N/s, N/m or N/h (N in 1..1000000)";
	out->count = (unsigned)n;
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
	case CONFIG_TYPE_TLS_POLICY:
		return parse_tls_policy(v, (enum config_tls_policy *)(void *)field);
	case CONFIG_TYPE_RATE:
		return parse_rate(v, (struct config_rate *)(void *)field);
	case CONFIG_TYPE_IP: {
		unsigned char addr[16];
		if (*v != '\0' && inet_pton(AF_INET, v, addr) != 1 &&
		    inet_pton(AF_INET6, v, addr) != 1)
			return "not a numeric IP address";
		if (strlen(v) >= k->size)
			return "value too long";
		memcpy(field, v, strlen(v) + 1);
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

static bool pattern_valid(const char *p, bool site)
{
	size_t n = strlen(p);
	if (n == 0 || n > 253)
		return false;
	if (strcmp(p, "*") == 0)
		return true;
	if (p[0] == '*') {
		if (p[1] != '.' || p[2] == '\0')
			return false;
		p += 2;
	}
	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' ||
		      (site && (c == ':' || c == '[' || c == ']'))))
			return false;
	}
	return true;
}

static void lower_copy(char *dst, size_t dstlen, const char *src)
{
	size_t i = 0;
	for (; src[i] != '\0' && i + 1 < dstlen; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

/* "route DOMAIN = HOST[:PORT]" (IPv6 as [ADDR] or [ADDR]:PORT). */
static const char *parse_route(struct config *cfg, const char *domain, const char *v, unsigned line)
{
	if (!pattern_valid(domain, false))
		return "route: expected a domain, *.DOMAIN or * before '='";
	if (cfg->nroutes == CONFIG_ROUTES_MAX)
		return "route: too many routes (at most 256)";
	struct config_route *r = &cfg->routes[cfg->nroutes];
	memset(r, 0, sizeof *r);
	lower_copy(r->domain, sizeof r->domain, domain);
	for (size_t i = 0; i < cfg->nroutes; i++)
		if (strcmp(cfg->routes[i].domain, r->domain) == 0)
			return "route: this domain has a route already";
	const char *host = v, *port = NULL;
	size_t hlen;
	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return "route: expected HOST, HOST:PORT or [IPv6]:PORT";
		host = v + 1;
		hlen = (size_t)(close - host);
		port = close[1] == ':' ? close + 2 : NULL;
	} else {
		const char *colon = strchr(v, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return "route: an IPv6 address must be written [ADDR]:PORT";
		hlen = colon ? (size_t)(colon - v) : strlen(v);
		port = colon ? colon + 1 : NULL;
	}
	if (hlen == 0 || hlen >= sizeof r->host)
		return "route: expected HOST, HOST:PORT or [IPv6]:PORT";
	memcpy(r->host, host, hlen);
	r->host[hlen] = '\0';
	for (const char *p = r->host; *p != '\0'; p++)
		if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':'))
			return "route: bad host name";
	uint64_t pn = 25;
	if (port != NULL && (parse_uint(port, strlen(port), &pn) == -1 || pn < 1 || pn > 65535))
		return "route: bad port (1..65535)";
	r->port = (int)pn;
	r->line = line;
	cfg->nroutes++;
	return NULL;
}

/* "site PATTERN = connections=N messages=N rate=N/s burst=N tls=POLICY" (any subset). */
static const char *parse_site(struct config *cfg, const char *pattern, const char *v, unsigned line)
{
	if (!pattern_valid(pattern, true))
		return "site: expected a host name, *.DOMAIN or * before '='";
	if (cfg->nsites == CONFIG_SITES_MAX - 8) /* room for the built-in rules */
		return "site: too many site rules (at most 120)";
	struct config_site_rule *r = &cfg->sites[cfg->nsites];
	memset(r, 0, sizeof *r);
	lower_copy(r->pattern, sizeof r->pattern, pattern);
	for (size_t i = 0; i < cfg->nsites; i++)
		if (strcmp(cfg->sites[i].pattern, r->pattern) == 0)
			return "site: this pattern has a rule already";
	r->line = line;
	char word[128];
	const char *p = v;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		size_t n = strcspn(p, " \t");
		if (n >= sizeof word)
			return "site: value too long";
		memcpy(word, p, n);
		word[n] = '\0';
		p += n;
		char *eq = strchr(word, '=');
		if (eq == NULL)
			return "site: expected key=value (connections, messages, rate, burst, tls)";
		*eq = '\0';
		const char *val = eq + 1;
		uint64_t u;
		const char *bad = NULL;
		unsigned bit;
		if (strcmp(word, "connections") == 0) {
			bit = CONFIG_SITE_CONNECTIONS;
			if (parse_uint(val, strlen(val), &u) == -1 || u < 1 || u > 10000)
				bad = "site: connections must be 1..10000";
			else
				r->connections = (int)u;
		} else if (strcmp(word, "messages") == 0) {
			bit = CONFIG_SITE_MESSAGES;
			if (parse_uint(val, strlen(val), &u) == -1 || u < 1 || u > 100000)
				bad = "site: messages must be 1..100000";
			else
				r->messages_per_connection = (int)u;
		} else if (strcmp(word, "burst") == 0) {
			bit = CONFIG_SITE_BURST;
			if (parse_uint(val, strlen(val), &u) == -1 || u < 1 || u > 100000)
				bad = "site: burst must be 1..100000";
			else
				r->burst = (unsigned)u;
		} else if (strcmp(word, "rate") == 0) {
			bit = CONFIG_SITE_RATE;
			if (strcmp(val, "none") == 0) {
				r->rate.count = 0;
				r->rate.period_ms = 1000;
			} else {
				bad = parse_rate(val, &r->rate);
			}
		} else if (strcmp(word, "tls") == 0) {
			bit = CONFIG_SITE_TLS;
			bad = parse_tls_policy(val, &r->tls);
		} else {
			return "site: unknown setting (connections, messages, rate, burst, tls)";
		}
		if (bad != NULL)
			return bad;
		if (r->given & bit)
			return "site: a setting is given twice";
		r->given |= bit;
	}
	if (r->given == 0)
		return "site: expected at least one of connections, messages, rate, burst, tls";
	cfg->nsites++;
	return NULL;
}

/* Starting points for the big mailbox providers, matched by their MX host names, after the
 * file's own rules. Their published guidance is about reputation more than numbers; these
 * keep a new sender's connection count and messages per connection where Microsoft and Yahoo
 * stop throttling ("421 4.7.0 [TSS04]", "451 4.7.500 Server busy") on a fresh IP. */
static const struct {
	const char *pattern;
	int connections, messages;
} config_site_builtin[] = {
    {"*.google.com", 20, 100},     /* Gmail and Google Workspace (aspmx.l.google.com) */
    {"*.googlemail.com", 20, 100}, /* older Google MX names */
    {"*.outlook.com", 10, 20},     /* Outlook.com and Microsoft 365 (*.protection.outlook.com) */
    {"*.yahoodns.net", 10, 20},    /* Yahoo, AOL, Verizon (mta5.am0.yahoodns.net) */
    {"*.icloud.com", 10, 50},      /* iCloud (mx01.mail.icloud.com) */
};

/* Fills what site rules left out from the site_* keys, then adds the built-in rules and the
 * catch-all. */
static void site_rules_finish(struct config *cfg)
{
	for (size_t i = 0; i < sizeof config_site_builtin / sizeof config_site_builtin[0]; i++) {
		struct config_site_rule *r = &cfg->sites[cfg->nsites++];
		memset(r, 0, sizeof *r);
		snprintf(r->pattern, sizeof r->pattern, "%s", config_site_builtin[i].pattern);
		r->connections = config_site_builtin[i].connections;
		r->messages_per_connection = config_site_builtin[i].messages;
		r->given = CONFIG_SITE_CONNECTIONS | CONFIG_SITE_MESSAGES;
	}
	struct config_site_rule *all = &cfg->sites[cfg->nsites++];
	memset(all, 0, sizeof *all);
	all->pattern[0] = '*';
	for (size_t i = 0; i < cfg->nsites; i++) {
		struct config_site_rule *r = &cfg->sites[i];
		if (!(r->given & CONFIG_SITE_CONNECTIONS))
			r->connections = cfg->site_connections;
		if (!(r->given & CONFIG_SITE_MESSAGES))
			r->messages_per_connection = cfg->site_messages_per_connection;
		if (!(r->given & CONFIG_SITE_RATE))
			r->rate = cfg->site_rate;
		if (!(r->given & CONFIG_SITE_BURST))
			r->burst = (unsigned)cfg->site_burst;
		if (!(r->given & CONFIG_SITE_TLS))
			r->tls = cfg->outbound_tls;
	}
}

bool config_pattern_match(const char *pattern, const char *name)
{
	if (strcmp(pattern, "*") == 0)
		return true;
	if (pattern[0] == '*' && pattern[1] == '.') {
		size_t pl = strlen(pattern + 1), nl = strlen(name); /* ".suffix" */
		return nl > pl && strcmp(name + nl - pl, pattern + 1) == 0;
	}
	return strcmp(pattern, name) == 0;
}

const struct config_route *config_route_find(const struct config *cfg, const char *domain)
{
	const struct config_route *best = NULL;
	size_t best_len = 0;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];
		if (strcmp(r->domain, domain) == 0)
			return r;
		size_t len = strcmp(r->domain, "*") == 0 ? 1 : strlen(r->domain) + 1;
		if (config_pattern_match(r->domain, domain) && len > best_len) {
			best = r;
			best_len = len;
		}
	}
	return best;
}

const struct config_site_rule *config_site_rule_find(const struct config *cfg, const char *site)
{
	for (size_t i = 0; i < cfg->nsites; i++) {
		const char *p = site;
		while (*p != '\0') {
			size_t n = strcspn(p, ",");
			char name[256];
			if (n < sizeof name) {
				memcpy(name, p, n);
				name[n] = '\0';
				if (config_pattern_match(cfg->sites[i].pattern, name))
					return &cfg->sites[i];
			}
			p += n;
			if (*p == ',')
				p++;
		}
	}
	return &cfg->sites[cfg->nsites - 1]; /* the catch-all */
}

static void range_text(const struct config_key *k, char *out, size_t outlen)
{
	if (k->type == CONFIG_TYPE_INT || k->type == CONFIG_TYPE_SIZE)
		snprintf(out, outlen, " (%lld..%lld)", (long long)k->min, (long long)k->max);
	else
		out[0] = '\0';
}

/* A relative path (not "") is taken from the config file's folder. */
static int config_path_resolve(const struct config *cfg, char *path, size_t size)
{
	if (path[0] == '\0' || path[0] == '/')
		return 0;
	const char *slash = strrchr(cfg->file, '/');
	if (slash == NULL)
		return 0; /* the config file is in the current folder */
	char out[PATH_MAX];
	int n = snprintf(out, sizeof out, "%.*s/%s", (int)(slash - cfg->file), cfg->file, path);
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof out)
		return -1;
	memcpy(path, out, (size_t)n + 1);
	return 0;
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
	if (config_path_resolve(cfg, cfg->bounce_rules, sizeof cfg->bounce_rules) == -1 ||
	    config_path_resolve(cfg, cfg->bounce_rules_local, sizeof cfg->bounce_rules_local) ==
	        -1) {
		set_err(err, errlen, cfg->file, 0, "bounce_rules: path too long");
		return -1;
	}
	if (cfg->outbound_ehlo[0] == '\0')
		snprintf(cfg->outbound_ehlo, sizeof cfg->outbound_ehlo, "%s", cfg->hostname);
	if (cfg->retry_first > cfg->retry_max) {
		set_err(err, errlen, cfg->file, 0, "retry_first must not be above retry_max");
		return -1;
	}
	site_rules_finish(cfg);
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
		char *space = strpbrk(s, " \t");
		if (space != NULL) { /* "route DOMAIN" or "site PATTERN" */
			*space = '\0';
			char *arg = space + 1;
			while (isspace((unsigned char)*arg))
				arg++;
			const char *bad;
			if (strcmp(s, "route") == 0)
				bad = parse_route(cfg, arg, v, lineno);
			else if (strcmp(s, "site") == 0)
				bad = parse_site(cfg, arg, v, lineno);
			else
				bad = "unknown key (only route and site take an argument)";
			if (bad != NULL) {
				set_err(err, errlen, name, lineno, "%s", bad);
				return -1;
			}
			continue;
		}
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
