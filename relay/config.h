/*
 * config.h: the daemon's configuration. One table of known keys (config.c) with types, ranges
 * and defaults; the file is "key = value" lines with '#' comments. Any unknown key, repeated
 * key or bad value is an error reported as "file:line: reason". The running code reads a const
 * struct config.
 */
#ifndef POSTINO_CONFIG_H
#define POSTINO_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "relay/log.h"

#define CONFIG_LISTEN_MAX 16
#define CONFIG_STR_MAX    256
#define CONFIG_ROUTES_MAX 256 /* "route DOMAIN = HOST:PORT" lines */
#define CONFIG_SITES_MAX  128 /* "site PATTERN = ..." lines, the built-in ones included */

struct config_listen_addr {
	struct sockaddr_storage addr;
	socklen_t len;
	char text[64]; /* "ADDR:PORT" as given, for logs */
};

struct config_listen {
	size_t count;
	struct config_listen_addr a[CONFIG_LISTEN_MAX];
};

/* dkim_algorithms: the DKSIGN_ALG_* bits of dkim/dksign.h (relay/ctl_dkim.c checks that
 * they are equal). */
enum config_dkim_algorithms {
	CONFIG_DKIM_RSA = 1,
	CONFIG_DKIM_ED25519 = 2,
	CONFIG_DKIM_BOTH = 3,
};

/* dkim_unknown_domain: what happens to a message whose From domain has no DKIM key. */
enum config_dkim_unknown {
	CONFIG_DKIM_UNKNOWN_SIGN,   /* sign it with dkim_domain */
	CONFIG_DKIM_UNKNOWN_REFUSE, /* refuse it (550 5.7.1) */
};

/* TLS policy of outbound connections: the SMTPC_TLS_* values of relay/smtpc.h (deliver.c
 * checks that they are equal). */
enum config_tls_policy {
	CONFIG_TLS_NONE,
	CONFIG_TLS_OPPORTUNISTIC,
	CONFIG_TLS_REQUIRED,
};

/* A message rate: count per period_ms; count 0 = no limit. */
struct config_rate {
	unsigned count;
	int64_t period_ms;
};

/* "route DOMAIN = HOST[:PORT]": mail for DOMAIN (exactly, "*.SUFFIX" for its subdomains, or
 * "*" for every domain) goes to HOST instead of the domain's MX hosts. */
struct config_route {
	char domain[256]; /* lowercased pattern */
	char host[256];   /* a name or an IP address (IPv6 without brackets) */
	int port;
	unsigned line; /* in the config file, for messages */
};

/* "site PATTERN = key=value ...": shaping for the sites whose MX host names (or routed
 * host) match PATTERN ("*.google.com", "mx.example.net", "*"). The first matching rule
 * applies; rules from the file come before the built-in ones. */
struct config_site_rule {
	char pattern[256]; /* lowercased */
	int connections;   /* per site over every worker and machine */
	int messages_per_connection;
	struct config_rate rate; /* shared by every worker; count 0 = none */
	unsigned burst;          /* messages the rate lets through at once (>= 1) */
	enum config_tls_policy tls;
	unsigned line;  /* 0 for a built-in rule */
	unsigned given; /* CONFIG_SITE_* of the fields the line set; the others come from the
	                   site_* keys and outbound_tls when the file has been read */
};
#define CONFIG_SITE_CONNECTIONS 1u
#define CONFIG_SITE_MESSAGES    2u
#define CONFIG_SITE_RATE        4u
#define CONFIG_SITE_BURST       8u
#define CONFIG_SITE_TLS         16u

struct config {
	char file[PATH_MAX];
	char hostname[CONFIG_STR_MAX];
	char data_dir[PATH_MAX];
	char redis[PATH_MAX];
	char redis_password[CONFIG_STR_MAX];
	bool redis_unsafe_ok;
	int redis_timeout_ms;
	char redis_server[PATH_MAX];
	uint64_t redis_maxmemory;
	struct config_listen listen_submission;
	struct config_listen listen_smtps;
	char tls_cert[PATH_MAX];
	char tls_key[PATH_MAX];
	int workers;
	int sign_threads;
	int sign_backlog;
	bool auth_cleartext_loopback;
	int max_recipients;
	uint64_t max_message_size;
	int max_received_headers;
	int idle_timeout;
	int data_timeout;
	int tls_handshake_timeout;
	int max_connections;
	int max_connections_per_ip;
	int max_errors;
	int auth_max_failures_ip;
	int auth_max_failures_user;
	int auth_failure_window;
	int auth_cache_ttl;
	enum log_level log_level;
	enum config_dkim_algorithms dkim_algorithms;
	int dkim_lifetime;
	enum config_dkim_unknown dkim_unknown_domain;
	char dkim_domain[CONFIG_STR_MAX];
	char dns_resolver[CONFIG_STR_MAX]; /* "" = resolv.conf (relay/resolver.h) */
	int dns_timeout_ms;
	char spf_include[CONFIG_STR_MAX]; /* SPF terms the domain's record must hold */
	int dkim_dns_check_interval;      /* seconds; 0 = the DKIM DNS watcher is off */
	int dkim_retire_grace;            /* seconds a replaced key stays published */

	/* outbound delivery (relay/deliver.c) */
	bool delivery;                        /* this process delivers (the "delivery" role) */
	char outbound_ehlo[CONFIG_STR_MAX];   /* "" = hostname (derived) */
	char outbound_source[CONFIG_STR_MAX]; /* local address to send from, "" = any */
	int outbound_port;
	enum config_tls_policy outbound_tls;
	int outbound_connect_timeout;
	int outbound_command_timeout;
	int outbound_data_timeout;
	int outbound_idle_timeout;
	int outbound_max_connections; /* per worker process */
	int site_connections;
	int site_messages_per_connection;
	struct config_rate site_rate;
	int site_burst;
	int site_down_time;
	int retry_first;
	int retry_max;
	int retry_jitter;
	int max_queue_age;
	int lease_timeout;
	int max_queued_recipients;
	int redis_memory_limit; /* percent of maxmemory; past it submission gets 452 4.3.1 */
	int soft_bounce_limit;  /* soft failures that suppress an address (0: never) */
	int soft_bounce_window; /* seconds, from the first soft failure */
	/* bounce classification rules (relay/bounce.h): the shipped file and the user's own,
	 * which come first; relative paths are taken from the config file's folder */
	char bounce_rules[PATH_MAX];
	char bounce_rules_local[PATH_MAX];
	size_t nroutes;
	struct config_route routes[CONFIG_ROUTES_MAX];
	size_t nsites;
	struct config_site_rule sites[CONFIG_SITES_MAX];
};

/*
 * Reads and checks path into *cfg (defaults first, then the file, then derived values:
 * hostname from gethostname(), workers and sign_threads from the core count when 0,
 * dkim_domain from the hostname without its first label when empty).
 * Returns 0, or -1 with "file:line: reason" (or "file: reason") in err.
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Same as config_load over text in memory; name is used in messages. For tests. */
int config_parse(const char *name, const char *text, size_t len, struct config *cfg, char *err,
                 size_t errlen);

/* The route for domain (lowercase), or NULL: an exact rule first, then the longest "*.SUFFIX",
 * then "*". */
const struct config_route *config_route_find(const struct config *cfg, const char *domain);

/* The shaping rule for a site (queue_site_name's comma-separated host names, or a routed
 * "HOST:PORT"): the first rule with a pattern matching one of its names. Never NULL: the
 * last rule is always the catch-all made from the site_* keys. */
const struct config_site_rule *config_site_rule_find(const struct config *cfg, const char *site);

/* True when name (lowercase) matches pattern: equal, "*" for anything, or "*.SUFFIX" for
 * names ending with ".SUFFIX". Pure. */
bool config_pattern_match(const char *pattern, const char *name);

/* The address of the Redis socket of the embedded server: "<data_dir>/redis.sock". */
int config_embedded_redis_path(const struct config *cfg, char *out, size_t outlen);

#endif
