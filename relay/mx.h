/*
 * mx.h: where mail for a domain goes (RFC 5321 section 5.1, RFC 7505), over the stub resolver
 * of relay/resolver.h (whose cache keeps answers for their TTL, negative ones too).
 *
 *   - MX records sorted by preference, equal preferences shuffled;
 *   - no MX record (NODATA): the domain itself is the only host (the implicit MX), if it has
 *     an A or AAAA record;
 *   - a null MX (one MX, preference 0, exchange "."): the domain accepts no mail, 556 5.1.10;
 *   - NXDOMAIN (for the MX, or for the implicit MX's address): 550 5.1.2;
 *   - SERVFAIL, REFUSED, a timeout or a network error: a temporary failure, 451 4.4.3.
 *
 * mx_order is the pure part (a parsed MX answer in, an ordered host list out), for tests.
 */
#ifndef POSTINO_MX_H
#define POSTINO_MX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "relay/dns.h"

struct resolver;

#define MX_HOSTS_MAX 16 /* MX hosts kept per domain, the most preferred ones */
#define MX_ADDRS_MAX 8  /* addresses kept per host */
#define MX_NAME_MAX  255

enum mx_status {
	MX_OK,       /* hosts[0..nhosts) in the order to try */
	MX_NULL,     /* null MX: permanent, reply "556 5.1.10 ..." */
	MX_NOTFOUND, /* the domain does not exist or has no MX, A or AAAA: permanent, 5.1.2 */
	MX_TEMPFAIL, /* try again later: 4.4.3 */
};

struct mx_host {
	char name[MX_NAME_MAX + 1]; /* lowercase, no final dot */
	uint16_t preference;
};

struct mx_result {
	enum mx_status status;
	bool implicit; /* no MX record: hosts[0] is the domain itself */
	struct mx_host hosts[MX_HOSTS_MAX];
	size_t nhosts;
	uint32_t ttl;    /* seconds the answer holds (the smallest TTL seen; 0 if none) */
	char reply[400]; /* for a failure: the SMTP-style reply to record, "556 5.1.10 ..." */
};

typedef void mx_done_fn(const struct mx_result *res, uint64_t ref, void *arg);

/*
 * Orders the MX records of response (an answer to "domain MX") into out: by preference,
 * duplicates removed, equal preferences shuffled with random() (a function returning a
 * uniformly random 32-bit value; NULL: no shuffle). Sets MX_NULL for a null MX (a lone
 * exchange "" of preference 0; an empty exchange among others is skipped), MX_OK otherwise,
 * MX_NOTFOUND when no usable record is left. Pure.
 */
void mx_order(const struct dns_response *response, uint32_t (*random)(void), struct mx_result *out);

/*
 * Looks up domain's mail hosts through r: MX, then for a NODATA answer the domain's A (then
 * AAAA) record. The async contract of resolver.h: -1 without a callback (bad name, too many
 * queries), or 0 and exactly one callback later with the result (borrowed for the call).
 */
int mx_lookup(struct resolver *r, const char *domain, mx_done_fn *cb, uint64_t ref, void *arg);

struct mx_addresses {
	enum mx_status status; /* MX_OK, MX_NOTFOUND (no address) or MX_TEMPFAIL */
	struct sockaddr_storage addrs[MX_ADDRS_MAX];
	socklen_t lens[MX_ADDRS_MAX];
	size_t count;
	char detail[512];
};

typedef void mx_addresses_fn(const struct mx_addresses *res, uint64_t ref, void *arg);

/*
 * The IPv4 (A) addresses of host, or its IPv6 (AAAA) ones when it has no A record, each with
 * port. A numeric address is taken as is (answered later all the same). Same contract as
 * mx_lookup.
 */
int mx_addresses_lookup(struct resolver *r, const char *host, int port, mx_addresses_fn *cb,
                        uint64_t ref, void *arg);

const char *mx_status_name(enum mx_status s);

#endif
