/*
 * dns.h: DNS messages as a pure codec: a query built into bytes, a response parsed from bytes
 * into a struct. No I/O, no logging, no clock: relay/resolver.c does the sending.
 *
 * RFC 1035 (messages, names, compression, A/CNAME/MX/TXT/SOA), RFC 3596 (AAAA), RFC 2181 (TTLs
 * with the top bit set are 0; any octet in a label), RFC 2308 (negative TTL from the SOA),
 * RFC 6891 (EDNS0 OPT: one at most, the extended RCODE bits), RFC 7505 (null MX: preference 0,
 * exchange "."), RFC 6604 (the CNAME chain of an answer).
 *
 * Everything in a response is untrusted: every read is bounds-checked against the message
 * length, compression pointers must point strictly before the name part that holds them (so
 * they cannot loop), names are at most 255 octets and labels 63, counts that promise more than
 * the message holds are an error, and RDATA must fill its RDLENGTH exactly.
 */
#ifndef POSTINO_DNS_H
#define POSTINO_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_PORT          53
#define DNS_HEADER_SIZE   12
#define DNS_LABEL_MAX     63   /* RFC 1035 2.3.4 */
#define DNS_NAME_WIRE_MAX 255  /* RFC 1035 2.3.4, with the length octets and the root */
#define DNS_NAME_TEXT_MAX 1024 /* presentation form: 255 wire octets with \DDD escapes fit */
#define DNS_UDP_PAYLOAD   1232 /* EDNS0 UDP size we announce (DNS flag day 2020) */
#define DNS_MESSAGE_MAX   65535
#define DNS_QUERY_MAX     512 /* header + question (<= 259) + OPT (11) */
#define DNS_RECORDS_MAX   64  /* answer records kept per response; others are counted */
#define DNS_CHAIN_MAX     8   /* CNAME links followed within one answer */

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_OPT = 41,
};

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
	DNS_RCODE_BADVERS = 16, /* needs EDNS0's extended bits */
};

enum dns_parse_status {
	DNS_PARSE_OK,
	DNS_PARSE_SHORT,     /* the message ends before its header or a record it counts */
	DNS_PARSE_MALFORMED, /* bad name, bad RDATA for its type, two OPT records */
	DNS_PARSE_MISMATCH,  /* not the response to this query: QR, opcode, id, question */
	DNS_PARSE_NOMEM,
};

/* One answer record. Names are in lowercase presentation form without the final dot ("" is
 * the root); octets other than letters, digits, '-' and '_' are written \DDD (so "a.b" in one
 * label is "a\046b"). Every pointer points into the response's own text and lives as long as
 * the response. */
struct dns_record {
	uint16_t type; /* DNS_TYPE_A, _AAAA, _CNAME, _MX or _TXT (others are not kept) */
	uint32_t ttl;  /* seconds; 0 when the top bit was set (RFC 2181 8) */
	bool match;    /* of the question's type, at the question name or its CNAME chain */
	const char *owner;
	union {
		unsigned char a[4];     /* network order */
		unsigned char aaaa[16]; /* network order */
		const char *cname;
		struct {
			uint16_t preference;
			const char *exchange; /* "" with preference 0: null MX (RFC 7505) */
		} mx;
		struct {
			const char *data; /* the character-strings joined; NUL-terminated, may
			                   * also hold NUL octets: use len */
			size_t len;
		} txt;
	} rdata;
};

/* A parsed response. Owned by whoever got it from dns_response_parse or dns_response_copy;
 * freed with dns_response_free. */
struct dns_response {
	uint16_t id;
	uint16_t qtype;
	unsigned rcode; /* DNS_RCODE_*, including EDNS0's extended bits */
	bool truncated; /* TC: the sections are not parsed (answers empty); ask over TCP */
	bool authoritative;
	bool recursion_available;
	bool edns;             /* the response carried an OPT record */
	uint16_t edns_payload; /* its UDP payload size, 0 without OPT */
	const char *canonical; /* the question name at the end of the answer's CNAME chain */
	int64_t negative_ttl;  /* RFC 2308 5: min(SOA TTL, SOA MINIMUM) of the authority
	                        * section's SOA; -1 without one */
	size_t count;          /* records in answers[] */
	size_t matches;        /* how many of them have match set */
	size_t skipped;        /* answer records not kept: other types or classes, or past
	                        * DNS_RECORDS_MAX */
	struct dns_record answers[DNS_RECORDS_MAX];
	char *text; /* owned: every name and TXT value of the records */
	size_t text_len;
};

/*
 * Builds a standard query (RD set) for name and type with message id id into out, and with
 * edns an OPT record announcing DNS_UDP_PAYLOAD octets. name is a host name in presentation
 * form: labels of 1..63 printable octets other than '.', '\\', '"' and space, separated by
 * dots, an optional final dot, at most 253 characters. Returns 0 with the length in *len, or
 * -1 when name is not such a name or out is too small (DNS_QUERY_MAX is always enough).
 */
int dns_query_build(uint16_t id, const char *name, uint16_t type, bool edns, unsigned char *out,
                    size_t outlen, size_t *len);

/*
 * Parses msg[0..len) as the response to the query (id, name, type) that dns_query_build
 * made. The question must match: QR set, opcode QUERY, same id, one question with the same
 * name (ASCII case-insensitive), type and class IN. An error response (RCODE not NOERROR)
 * may carry no question. With TC set only the header and question are read.
 * Returns DNS_PARSE_OK with *out set (caller frees with dns_response_free), or another
 * status with *out NULL.
 */
enum dns_parse_status dns_response_parse(const unsigned char *msg, size_t len, uint16_t id,
                                         const char *name, uint16_t type,
                                         struct dns_response **out);

/* A deep copy of r (for a cache, or to keep an answer past a callback). NULL: out of memory. */
struct dns_response *dns_response_copy(const struct dns_response *r);

/* Frees r; NULL is a no-op. */
void dns_response_free(struct dns_response *r);

/* Names for messages: "ok", "short", ...; "A", "TXT", ... ("TYPE<n>" in buf otherwise: the
 * result is buf); "NOERROR", "NXDOMAIN", ... ("RCODE<n>" in buf otherwise). buf needs 16. */
const char *dns_parse_status_name(enum dns_parse_status s);
const char *dns_type_name(uint16_t type, char *buf, size_t buflen);
const char *dns_rcode_name(unsigned rcode, char *buf, size_t buflen);

#endif
