/*
 * fuzz_dns.c: libFuzzer target for relay/dns.c, the DNS message codec.
 *
 * The first input octet picks a mode:
 *   odd:  the rest is a whole response to a TXT query for "example.com" (its own id);
 *   even: the rest's first 12 octets are a header, then a well-formed question for one of
 *         a few (name, type) pairs is inserted, then the rest follows: so the fuzzer reaches
 *         the answer, authority and additional sections without having to find the question.
 * Each parsed response is checked against the contract of dns.h (counts, names within their
 * bounds, pointers into the response's text, copies equal), and the input is also tried as
 * a query name: a name dns_query_build accepts must parse back as its own question.
 *
 * Build and run: make fuzz (all targets; FUZZ_SECONDS=N per target)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
	const char *name;
	uint16_t type;
	const unsigned char *wire;
	size_t wire_len;
} questions[] = {
    {"example.com", DNS_TYPE_TXT, (const unsigned char *)"\7example\3com\0\0\x10\0\1", 17},
    {"example.com", DNS_TYPE_MX, (const unsigned char *)"\7example\3com\0\0\x0f\0\1", 17},
    {"a.b", DNS_TYPE_A, (const unsigned char *)"\1a\1b\0\0\1\0\1", 9},
    {"a.b", DNS_TYPE_AAAA, (const unsigned char *)"\1a\1b\0\0\x1c\0\1", 9},
};

static bool inside(const struct dns_response *r, const char *p)
{
	return p >= r->text && p < r->text + r->text_len;
}

static void response_check(const struct dns_response *r)
{
	if (r->count > DNS_RECORDS_MAX || r->matches > r->count || !inside(r, r->canonical) ||
	    strlen(r->canonical) >= DNS_NAME_TEXT_MAX)
		__builtin_trap();
	if (r->truncated && r->count != 0)
		__builtin_trap();
	size_t matches = 0;
	for (size_t i = 0; i < r->count; i++) {
		const struct dns_record *rec = &r->answers[i];
		matches += rec->match;
		if (!inside(r, rec->owner) || strlen(rec->owner) >= DNS_NAME_TEXT_MAX ||
		    (rec->match && rec->type != r->qtype) || rec->ttl > 0x7fffffffu)
			__builtin_trap();
		switch (rec->type) {
		case DNS_TYPE_A:
		case DNS_TYPE_AAAA:
			break;
		case DNS_TYPE_CNAME:
			if (!inside(r, rec->rdata.cname) ||
			    strlen(rec->rdata.cname) >= DNS_NAME_TEXT_MAX)
				__builtin_trap();
			break;
		case DNS_TYPE_MX:
			if (!inside(r, rec->rdata.mx.exchange) ||
			    strlen(rec->rdata.mx.exchange) >= DNS_NAME_TEXT_MAX)
				__builtin_trap();
			break;
		case DNS_TYPE_TXT:
			if (!inside(r, rec->rdata.txt.data) ||
			    rec->rdata.txt.data + rec->rdata.txt.len >= r->text + r->text_len ||
			    rec->rdata.txt.data[rec->rdata.txt.len] != '\0')
				__builtin_trap();
			break;
		default:
			__builtin_trap();
		}
	}
	if (matches != r->matches)
		__builtin_trap();
	struct dns_response *c = dns_response_copy(r);
	if (c == NULL)
		return;
	if (c->count != r->count || strcmp(c->canonical, r->canonical) != 0)
		__builtin_trap();
	for (size_t i = 0; i < c->count; i++)
		if (strcmp(c->answers[i].owner, r->answers[i].owner) != 0)
			__builtin_trap();
	dns_response_free(c);
}

static void name_check(const uint8_t *data, size_t size)
{
	char name[300];
	if (size >= sizeof name)
		return;
	memcpy(name, data, size);
	name[size] = '\0';
	unsigned char q[DNS_QUERY_MAX];
	size_t len;
	if (dns_query_build(0x4242, name, DNS_TYPE_TXT, true, q, sizeof q, &len) == -1)
		return;
	if (len > DNS_QUERY_MAX)
		__builtin_trap();
	q[2] |= 0x80; /* QR: now the echo a server would send */
	struct dns_response *r;
	if (dns_response_parse(q, len, 0x4242, name, DNS_TYPE_TXT, &r) != DNS_PARSE_OK)
		__builtin_trap();
	response_check(r);
	dns_response_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > DNS_MESSAGE_MAX)
		return 0;
	name_check(data + 1, size - 1);
	struct dns_response *r = NULL;
	enum dns_parse_status st;
	if (data[0] & 1) {
		uint16_t id = size >= 3 ? (uint16_t)(data[1] << 8 | data[2]) : 0;
		st = dns_response_parse(data + 1, size - 1, id, "example.com", DNS_TYPE_TXT, &r);
	} else {
		size_t rest = size - 1;
		if (rest < DNS_HEADER_SIZE)
			return 0;
		size_t k = (size_t)(data[0] >> 1) % (sizeof questions / sizeof questions[0]);
		size_t len = rest + questions[k].wire_len;
		unsigned char *msg = malloc(len);
		if (msg == NULL)
			return 0;
		memcpy(msg, data + 1, DNS_HEADER_SIZE);
		msg[4] = 0;
		msg[5] = 1; /* QDCOUNT */
		memcpy(msg + DNS_HEADER_SIZE, questions[k].wire, questions[k].wire_len);
		memcpy(msg + DNS_HEADER_SIZE + questions[k].wire_len, data + 1 + DNS_HEADER_SIZE,
		       rest - DNS_HEADER_SIZE);
		uint16_t id = (uint16_t)(msg[0] << 8 | msg[1]);
		st = dns_response_parse(msg, len, id, questions[k].name, questions[k].type, &r);
		free(msg);
	}
	if ((st == DNS_PARSE_OK) != (r != NULL))
		__builtin_trap();
	if (r != NULL) {
		response_check(r);
		dns_response_free(r);
	}
	return 0;
}
