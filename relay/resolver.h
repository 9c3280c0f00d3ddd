/*
 * resolver.h: Postino's DNS stub resolver. It asks one recursive server (the configured
 * dns_resolver, or the first nameserver of /etc/resolv.conf) over UDP with EDNS0, falls back
 * to TCP when the answer is truncated, and hands back the parsed response (relay/dns.h) with
 * its TTLs and RCODE, which libevent's evdns cannot do for TXT and MX.
 *
 * Async contract (as queue/queue.h): resolver_query either returns -1 without calling its
 * callback (bad name, too many queries in flight, out of memory, resolver closing), or
 * returns 0 and calls its callback exactly once, later, from the event loop: never from
 * inside resolver_query. Callbacks get back the caller's ref and arg untouched: find the
 * session by ref, never keep a session pointer in arg.
 *
 * Defences against forged answers (RFC 5452): a random 16-bit id from RAND_bytes and a
 * fresh connected UDP socket (so a random source port, and the kernel drops datagrams from
 * other addresses) for every attempt; a datagram that is not the answer to our question
 * (id, name, type) is ignored and the attempt keeps waiting.
 *
 * Caching (resolver_cache_enable; off by default): answers OK, NODATA and NXDOMAIN are kept
 * by (name, type) for the smallest TTL of their records, or the negative TTL (RFC 2308),
 * clamped to RESOLVER_CACHE_TTL_MIN..MAX; failures are not kept. A hit is delivered like any
 * answer: later, from the event loop, with detail "cached answer ...".
 */
#ifndef POSTINO_RESOLVER_H
#define POSTINO_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "relay/dns.h"

struct event_base;
struct resolver;
struct resolver_sync;

#define RESOLVER_ATTEMPTS_DEFAULT 2 /* UDP tries of timeout_ms each */
#define RESOLVER_TIMEOUT_MIN_MS   10
#define RESOLVER_TIMEOUT_MAX_MS   60000
#define RESOLVER_ATTEMPTS_MAX     10
#define RESOLVER_INFLIGHT_MAX     512 /* queries at once per resolver (one socket each) */
#define RESOLVER_RESOLV_CONF      "/etc/resolv.conf"
#define RESOLVER_CACHE_TTL_MIN    5     /* seconds an answer is kept at least */
#define RESOLVER_CACHE_TTL_MAX    86400 /* and at most */
#define RESOLVER_NEGATIVE_TTL     300   /* a negative answer without an SOA */

enum resolver_status {
	RESOLVER_OK,        /* records of the type: response->matches > 0 */
	RESOLVER_NODATA,    /* NOERROR without a record of the type (the name exists) */
	RESOLVER_NXDOMAIN,  /* the name does not exist */
	RESOLVER_SERVFAIL,  /* the server could not answer (broken zone, DNSSEC failure) */
	RESOLVER_REFUSED,   /* FORMERR, NOTIMP, REFUSED or another RCODE */
	RESOLVER_TIMEOUT,   /* no answer after every attempt */
	RESOLVER_NETWORK,   /* socket error, ICMP unreachable, TCP failure or bad TCP answer */
	RESOLVER_CANCELLED, /* resolver_free() while the query was in flight */
};

struct resolver_result {
	enum resolver_status status;
	/* The parsed response for OK, NODATA, NXDOMAIN, SERVFAIL and REFUSED (TTLs, rcode,
	 * negative_ttl), NULL otherwise. In a callback: borrowed for the callback only. From
	 * resolver_sync_query: owned by the caller (dns_response_free). */
	struct dns_response *response;
	char detail[400]; /* a sentence for people: "no answer from 127.0.0.1:53 after ..." */
};

typedef void resolver_done_fn(const struct resolver_result *res, uint64_t ref, void *arg);

/*
 * Parses a server address: "ADDR", "ADDR:PORT", "[ADDR]:PORT" or "[ADDR]" with a numeric
 * IPv4 or IPv6 address (an IPv6 address with a port needs the brackets), the port 53 when
 * absent. NULL or "": the first "nameserver" of RESOLVER_RESOLV_CONF, or 127.0.0.1:53 when it
 * has none (as the C library does). A pure function but for that file; config.c uses it to
 * check dns_resolver. Returns 0, or -1 with the reason in err.
 */
int resolver_server_parse(const char *text, struct sockaddr_storage *out, socklen_t *outlen,
                          char *err, size_t errlen);

/*
 * A resolver on base, asking server (see resolver_server_parse) with timeout_ms per attempt
 * (RESOLVER_TIMEOUT_MIN_MS..RESOLVER_TIMEOUT_MAX_MS) and attempts UDP tries
 * (1..RESOLVER_ATTEMPTS_MAX). Returns NULL with the reason in err. Freed with resolver_free.
 */
struct resolver *resolver_new(struct event_base *base, const char *server, int timeout_ms,
                              int attempts, char *err, size_t errlen);

/* Calls every pending callback with RESOLVER_CANCELLED (they may not start new queries:
 * resolver_query returns -1 then), then frees r. NULL is a no-op. Never call it from inside
 * one of r's callbacks. */
void resolver_free(struct resolver *r);

/* Turns the cache on, holding at most max_entries answers (when full, expired answers are
 * dropped; if none is, new answers are not kept). Returns 0, or -1 (already on, max_entries
 * 0, out of memory). */
int resolver_cache_enable(struct resolver *r, size_t max_entries);
/* Answers in the cache, live or expired. */
size_t resolver_cache_count(const struct resolver *r);

/* The event base r runs on. */
struct event_base *resolver_base(const struct resolver *r);

/* The server asked, as "ADDR:PORT" or "[ADDR]:PORT": for messages. Borrowed from r. */
const char *resolver_server_text(const struct resolver *r);

/*
 * Looks up (name, type): name as dns_query_build takes it, type a DNS_TYPE_*. See the
 * contract at the top. name is copied.
 */
int resolver_query(struct resolver *r, const char *name, uint16_t type, resolver_done_fn *cb,
                   uint64_t ref, void *arg);

/* "ok", "nodata", "nxdomain", "servfail", "refused", "timeout", "network", "cancelled". */
const char *resolver_status_name(enum resolver_status status);

/* ---- blocking use, for postinoctl: a private event base run until each answer comes ---- */

/* Same arguments as resolver_new. Freed with resolver_sync_free (NULL is a no-op). */
struct resolver_sync *resolver_sync_new(const char *server, int timeout_ms, int attempts, char *err,
                                        size_t errlen);
void resolver_sync_free(struct resolver_sync *s);
const char *resolver_sync_server_text(const struct resolver_sync *s);

/*
 * Looks up (name, type) and waits for the outcome: at most attempts * timeout_ms for UDP
 * plus timeout_ms when the answer moves to TCP. Fills *out (out->response owned by the
 * caller). Returns 0, or -1 when the query could not start (bad name, out of memory) with the
 * reason in out->detail.
 */
int resolver_sync_query(struct resolver_sync *s, const char *name, uint16_t type,
                        struct resolver_result *out);

#endif
