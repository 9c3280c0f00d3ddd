/*
 * dns.c: the DNS message codec (see dns.h): queries out, responses in, nothing else.
 *
 * RFC 1035 4.1 (header, question, resource records), 4.1.4 (compression), 3.3 (CNAME, MX,
 * TXT, SOA RDATA), 3.4.1 (A); RFC 3596 2.2 (AAAA); RFC 2181 8 (TTL) and 11 (any octet in a
 * label); RFC 2308 5 (negative TTL); RFC 6891 6.1 (OPT: root owner, CLASS = payload size,
 * TTL = extended RCODE, version and flags; more than one is FORMERR); RFC 7505 (null MX).
 *
 * A response is read in one pass. Names are first expanded into wire form (bounded by
 * DNS_NAME_WIRE_MAX), then written into the response's text in presentation form. The text
 * grows in a struct buf, so records keep offsets while parsing and get pointers at the end.
 */
#include "relay/dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/buf.h"

#define DNS_CLASS_IN     1
#define DNS_FLAG_QR      0x8000
#define DNS_FLAG_AA      0x0400
#define DNS_FLAG_TC      0x0200
#define DNS_FLAG_RD      0x0100
#define DNS_FLAG_RA      0x0080
#define DNS_OPCODE_SHIFT 11
#define DNS_POINTER_HOPS 127 /* more than a 255-octet name can need */
#define DNS_TTL_MAX      0x7fffffffu

/* ---- query ---- */

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)(v & 0xff);
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The presentation name (see dns_query_build) in wire form. Returns 0, or -1. */
static int name_to_wire(const char *name, unsigned char *out, size_t *len)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -1;
	size_t o = 0, label_at = 0, label = 0;
	out[o++] = 0; /* the first label's length, set below */
	for (size_t i = 0; i <= n; i++) {
		if (i == n || name[i] == '.') {
			if (label == 0 || label > DNS_LABEL_MAX)
				return -1;
			out[label_at] = (unsigned char)label;
			label_at = o;
			out[o++] = 0;
			label = 0;
			continue;
		}
		unsigned char c = (unsigned char)name[i];
		if (c <= ' ' || c >= 0x7f || c == '\\' || c == '"')
			return -1;
		out[o++] = c;
		label++;
	}
	*len = o; /* ends with the root's 0 */
	return 0;
}

int dns_query_build(uint16_t id, const char *name, uint16_t type, bool edns, unsigned char *out,
                    size_t outlen, size_t *len)
{
	unsigned char wire[DNS_NAME_WIRE_MAX + 2];
	size_t wlen;
	if (name == NULL || name_to_wire(name, wire, &wlen) == -1)
		return -1;
	size_t need = DNS_HEADER_SIZE + wlen + 4 + (edns ? 11 : 0);
	if (need > outlen)
		return -1;
	memset(out, 0, need);
	put16(out, id);
	put16(out + 2, DNS_FLAG_RD);
	put16(out + 4, 1);             /* QDCOUNT */
	put16(out + 10, edns ? 1 : 0); /* ARCOUNT */
	memcpy(out + DNS_HEADER_SIZE, wire, wlen);
	size_t o = DNS_HEADER_SIZE + wlen;
	put16(out + o, type);
	put16(out + o + 2, DNS_CLASS_IN);
	o += 4;
	if (edns) { /* root owner, TYPE OPT, CLASS = payload, TTL 0 (version 0), RDLENGTH 0 */
		out[o] = 0;
		put16(out + o + 1, DNS_TYPE_OPT);
		put16(out + o + 3, DNS_UDP_PAYLOAD);
		o += 11;
	}
	*len = o;
	return 0;
}

/* ---- response ---- */

struct parser {
	const unsigned char *msg;
	size_t len;
	struct buf text;
};

/*
 * Reads the name at *pos into wire (at least DNS_NAME_WIRE_MAX bytes), *wlen its length with
 * the root's 0, and moves *pos past the name's bytes in place (the first pointer ends them).
 * A pointer must point before the start of the run of labels that holds it, which makes every
 * jump go backwards: no loop can form.
 */
static enum dns_parse_status name_read(const struct parser *p, size_t *pos, unsigned char *wire,
                                       size_t *wlen)
{
	size_t at = *pos, run_start = *pos, o = 0;
	bool jumped = false;
	unsigned hops = 0;
	for (;;) {
		if (at >= p->len)
			return DNS_PARSE_SHORT;
		unsigned c = p->msg[at];
		if ((c & 0xc0) == 0xc0) {
			if (at + 1 >= p->len)
				return DNS_PARSE_SHORT;
			size_t target = (size_t)(c & 0x3f) << 8 | p->msg[at + 1];
			if (target >= run_start || ++hops > DNS_POINTER_HOPS)
				return DNS_PARSE_MALFORMED;
			if (!jumped)
				*pos = at + 2;
			jumped = true;
			at = run_start = target;
			continue;
		}
		if ((c & 0xc0) != 0) /* 0x40 and 0x80: extended and reserved label types */
			return DNS_PARSE_MALFORMED;
		if (o + 1 + c > DNS_NAME_WIRE_MAX)
			return DNS_PARSE_MALFORMED;
		if (c == 0) {
			wire[o++] = 0;
			if (!jumped)
				*pos = at + 1;
			*wlen = o;
			return DNS_PARSE_OK;
		}
		if (at + 1 + c > p->len)
			return DNS_PARSE_SHORT;
		memcpy(wire + o, p->msg + at, 1 + (size_t)c);
		o += 1 + (size_t)c;
		at += 1 + (size_t)c;
	}
}

static unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Appends the wire name in presentation form (see dns.h) and a NUL; *off gets where. */
static int name_text_append(struct parser *p, const unsigned char *wire, size_t *off)
{
	char out[DNS_NAME_TEXT_MAX + 8];
	size_t o = 0;
	for (size_t i = 0; wire[i] != 0; i += 1 + (size_t)wire[i]) {
		if (i > 0)
			out[o++] = '.';
		for (size_t k = 1; k <= wire[i]; k++) {
			unsigned char c = ascii_lower(wire[i + k]);
			if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			    c == '_') {
				out[o++] = (char)c;
			} else {
				out[o++] = '\\';
				out[o++] = (char)('0' + c / 100);
				out[o++] = (char)('0' + c / 10 % 10);
				out[o++] = (char)('0' + c % 10);
			}
		}
	}
	/* C content octets in L labels take C + L + 1 <= 255 wire octets and at most
	 * 4 * C + L - 1 characters: at most 1003 (L = 4), below DNS_NAME_TEXT_MAX */
	out[o] = '\0';
	*off = p->text.len;
	return buf_append(&p->text, out, o + 1);
}

static bool wire_equal_nocase(const unsigned char *a, size_t alen, const unsigned char *b,
                              size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (ascii_lower(a[i]) != ascii_lower(b[i]))
			return false;
	return true;
}

/* Offsets into the text while it can still move. */
struct record_offsets {
	size_t owner, target; /* target: CNAME target, MX exchange or TXT data */
};

/* Fixed fields after a record's owner. */
struct rr_head {
	uint16_t type, class;
	uint32_t ttl;
	size_t rdata, rdend;
};

static enum dns_parse_status rr_head_read(const struct parser *p, size_t *pos, struct rr_head *h)
{
	if (p->len - *pos < 10)
		return DNS_PARSE_SHORT;
	const unsigned char *f = p->msg + *pos;
	h->type = get16(f);
	h->class = get16(f + 2);
	h->ttl = get32(f + 4);
	size_t rdlen = get16(f + 8);
	h->rdata = *pos + 10;
	if (rdlen > p->len - h->rdata)
		return DNS_PARSE_SHORT;
	h->rdend = h->rdata + rdlen;
	*pos = h->rdend;
	return DNS_PARSE_OK;
}

/* A name inside RDATA that ends at or before end. */
static enum dns_parse_status rdata_name_read(const struct parser *p, size_t *pos, size_t end,
                                             unsigned char *wire, size_t *wlen)
{
	enum dns_parse_status st = name_read(p, pos, wire, wlen);
	if (st == DNS_PARSE_SHORT) /* the RDATA is inside the message: the record lies */
		return DNS_PARSE_MALFORMED;
	if (st != DNS_PARSE_OK)
		return st;
	return *pos > end ? DNS_PARSE_MALFORMED : DNS_PARSE_OK;
}

/* One answer record: kept (A, AAAA, CNAME, MX, TXT of class IN) or counted as skipped. */
static enum dns_parse_status answer_read(struct parser *p, size_t *pos, struct dns_response *r,
                                         struct record_offsets *offs)
{
	unsigned char owner[DNS_NAME_WIRE_MAX + 1], wire[DNS_NAME_WIRE_MAX + 1];
	size_t olen, wlen;
	struct rr_head h;
	enum dns_parse_status st = name_read(p, pos, owner, &olen);
	if (st == DNS_PARSE_OK)
		st = rr_head_read(p, pos, &h);
	if (st != DNS_PARSE_OK)
		return st;
	bool kept_type = h.type == DNS_TYPE_A || h.type == DNS_TYPE_AAAA ||
	                 h.type == DNS_TYPE_CNAME || h.type == DNS_TYPE_MX ||
	                 h.type == DNS_TYPE_TXT;
	if (!kept_type || h.class != DNS_CLASS_IN || r->count == DNS_RECORDS_MAX) {
		r->skipped++;
		return DNS_PARSE_OK;
	}
	struct dns_record *rec = &r->answers[r->count];
	struct record_offsets *off = &offs[r->count];
	memset(rec, 0, sizeof *rec);
	rec->type = h.type;
	rec->ttl = h.ttl > DNS_TTL_MAX ? 0 : h.ttl;
	size_t rdlen = h.rdend - h.rdata, at = h.rdata;
	switch (h.type) {
	case DNS_TYPE_A:
		if (rdlen != 4)
			return DNS_PARSE_MALFORMED;
		memcpy(rec->rdata.a, p->msg + at, 4);
		break;
	case DNS_TYPE_AAAA:
		if (rdlen != 16)
			return DNS_PARSE_MALFORMED;
		memcpy(rec->rdata.aaaa, p->msg + at, 16);
		break;
	case DNS_TYPE_MX:
		if (rdlen < 3)
			return DNS_PARSE_MALFORMED;
		rec->rdata.mx.preference = get16(p->msg + at);
		at += 2;
		/* fall through */
	case DNS_TYPE_CNAME:
		st = rdata_name_read(p, &at, h.rdend, wire, &wlen);
		if (st != DNS_PARSE_OK)
			return st;
		if (at != h.rdend)
			return DNS_PARSE_MALFORMED;
		if (name_text_append(p, wire, &off->target) == -1)
			return DNS_PARSE_NOMEM;
		break;
	case DNS_TYPE_TXT: {
		/* one or more <character-string>s filling RDLENGTH exactly (RFC 1035 3.3.14) */
		if (rdlen == 0)
			return DNS_PARSE_MALFORMED;
		size_t total = 0;
		for (size_t k = at; k < h.rdend; k += 1 + (size_t)p->msg[k]) {
			if (1 + (size_t)p->msg[k] > h.rdend - k)
				return DNS_PARSE_MALFORMED;
			total += p->msg[k];
		}
		off->target = p->text.len;
		if (buf_reserve(&p->text, total + 1) == -1)
			return DNS_PARSE_NOMEM;
		for (size_t k = at; k < h.rdend; k += 1 + (size_t)p->msg[k])
			if (buf_append(&p->text, p->msg + k + 1, p->msg[k]) == -1)
				return DNS_PARSE_NOMEM;
		if (buf_append(&p->text, "", 1) == -1)
			return DNS_PARSE_NOMEM;
		rec->rdata.txt.len = total;
		break;
	}
	default:
		break;
	}
	if (name_text_append(p, owner, &off->owner) == -1)
		return DNS_PARSE_NOMEM;
	r->count++;
	return DNS_PARSE_OK;
}

/* An authority record: only the SOA matters (its MINIMUM bounds negative caching). */
static enum dns_parse_status authority_read(const struct parser *p, size_t *pos,
                                            struct dns_response *r)
{
	unsigned char wire[DNS_NAME_WIRE_MAX + 1];
	size_t wlen;
	struct rr_head h;
	enum dns_parse_status st = name_read(p, pos, wire, &wlen);
	if (st == DNS_PARSE_OK)
		st = rr_head_read(p, pos, &h);
	if (st != DNS_PARSE_OK || h.type != DNS_TYPE_SOA || h.class != DNS_CLASS_IN)
		return st;
	size_t at = h.rdata;
	for (int i = 0; i < 2; i++) { /* MNAME, RNAME */
		st = rdata_name_read(p, &at, h.rdend, wire, &wlen);
		if (st != DNS_PARSE_OK)
			return st;
	}
	if (h.rdend - at != 20) /* SERIAL REFRESH RETRY EXPIRE MINIMUM */
		return DNS_PARSE_MALFORMED;
	uint32_t ttl = h.ttl > DNS_TTL_MAX ? 0 : h.ttl;
	uint32_t minimum = get32(p->msg + at + 16);
	if (minimum > DNS_TTL_MAX)
		minimum = 0;
	int64_t neg = ttl < minimum ? ttl : minimum;
	if (r->negative_ttl < 0 || neg < r->negative_ttl)
		r->negative_ttl = neg;
	return DNS_PARSE_OK;
}

/* An additional record: only OPT matters (RFC 6891 6.1.1: one at most, owner the root). */
static enum dns_parse_status additional_read(const struct parser *p, size_t *pos,
                                             struct dns_response *r)
{
	unsigned char wire[DNS_NAME_WIRE_MAX + 1];
	size_t wlen;
	struct rr_head h;
	enum dns_parse_status st = name_read(p, pos, wire, &wlen);
	if (st == DNS_PARSE_OK)
		st = rr_head_read(p, pos, &h);
	if (st != DNS_PARSE_OK || h.type != DNS_TYPE_OPT)
		return st;
	if (r->edns || wlen != 1)
		return DNS_PARSE_MALFORMED;
	r->edns = true;
	r->edns_payload = h.class;
	r->rcode |= (h.ttl >> 24) << 4; /* the upper 8 bits of the 12-bit RCODE */
	return DNS_PARSE_OK;
}

static bool text_equal(const struct parser *p, size_t a, size_t b)
{
	return strcmp(p->text.data + a, p->text.data + b) == 0;
}

/* Marks the records of the question's type along the CNAME chain from the question name
 * (RFC 1034 3.6.2, RFC 6604); sets the canonical name's offset. */
static void chain_follow(const struct parser *p, struct dns_response *r,
                         const struct record_offsets *offs, size_t qname, size_t *canonical)
{
	size_t chain[DNS_CHAIN_MAX + 1];
	size_t n = 0;
	chain[n++] = qname;
	while (r->qtype != DNS_TYPE_CNAME && n <= DNS_CHAIN_MAX) {
		size_t next = SIZE_MAX;
		for (size_t i = 0; i < r->count && next == SIZE_MAX; i++)
			if (r->answers[i].type == DNS_TYPE_CNAME &&
			    text_equal(p, offs[i].owner, chain[n - 1]))
				next = offs[i].target;
		bool seen = false;
		for (size_t k = 0; k < n && next != SIZE_MAX; k++)
			seen = seen || text_equal(p, chain[k], next);
		if (next == SIZE_MAX || seen)
			break;
		chain[n++] = next;
	}
	*canonical = chain[n - 1];
	for (size_t i = 0; i < r->count; i++) {
		if (r->answers[i].type != r->qtype)
			continue;
		for (size_t k = 0; k < n; k++)
			if (text_equal(p, offs[i].owner, chain[k]))
				r->answers[i].match = true;
		r->matches += r->answers[i].match;
	}
}

/* Turns the offsets into pointers once the text stops moving. */
static void pointers_set(struct dns_response *r, const struct record_offsets *offs,
                         size_t canonical)
{
	char *t = r->text;
	r->canonical = t + canonical;
	for (size_t i = 0; i < r->count; i++) {
		struct dns_record *rec = &r->answers[i];
		rec->owner = t + offs[i].owner;
		if (rec->type == DNS_TYPE_CNAME)
			rec->rdata.cname = t + offs[i].target;
		else if (rec->type == DNS_TYPE_MX)
			rec->rdata.mx.exchange = t + offs[i].target;
		else if (rec->type == DNS_TYPE_TXT)
			rec->rdata.txt.data = t + offs[i].target;
	}
}

static enum dns_parse_status sections_read(struct parser *p, size_t pos, const uint16_t counts[3],
                                           struct dns_response *r, struct record_offsets *offs)
{
	enum dns_parse_status st = DNS_PARSE_OK;
	for (unsigned i = 0; i < counts[0] && st == DNS_PARSE_OK; i++)
		st = answer_read(p, &pos, r, offs);
	for (unsigned i = 0; i < counts[1] && st == DNS_PARSE_OK; i++)
		st = authority_read(p, &pos, r);
	for (unsigned i = 0; i < counts[2] && st == DNS_PARSE_OK; i++)
		st = additional_read(p, &pos, r);
	return st; /* octets after the last counted record are ignored */
}

enum dns_parse_status dns_response_parse(const unsigned char *msg, size_t len, uint16_t id,
                                         const char *name, uint16_t type, struct dns_response **out)
{
	*out = NULL;
	unsigned char want[DNS_NAME_WIRE_MAX + 2], got[DNS_NAME_WIRE_MAX + 1];
	size_t want_len, got_len;
	if (name == NULL || name_to_wire(name, want, &want_len) == -1)
		return DNS_PARSE_MISMATCH; /* no query can have been made for it */
	if (len < DNS_HEADER_SIZE)
		return DNS_PARSE_SHORT;
	uint16_t flags = get16(msg + 2);
	uint16_t qdcount = get16(msg + 4);
	uint16_t counts[3] = {get16(msg + 6), get16(msg + 8), get16(msg + 10)};
	unsigned rcode = flags & 0x0f;
	if (get16(msg) != id || (flags & DNS_FLAG_QR) == 0 ||
	    ((flags >> DNS_OPCODE_SHIFT) & 0x0f) != 0)
		return DNS_PARSE_MISMATCH;
	if (qdcount > 1 || (qdcount == 0 && rcode == DNS_RCODE_NOERROR))
		return DNS_PARSE_MISMATCH;
	struct parser p = {msg, len, BUF_INIT};
	size_t pos = DNS_HEADER_SIZE;
	if (qdcount == 1) {
		enum dns_parse_status st = name_read(&p, &pos, got, &got_len);
		if (st != DNS_PARSE_OK)
			return st;
		if (len - pos < 4)
			return DNS_PARSE_SHORT;
		if (!wire_equal_nocase(got, got_len, want, want_len) || get16(msg + pos) != type ||
		    get16(msg + pos + 2) != DNS_CLASS_IN)
			return DNS_PARSE_MISMATCH;
		pos += 4;
	}
	struct dns_response *r = calloc(1, sizeof *r);
	struct record_offsets *offs = calloc(DNS_RECORDS_MAX, sizeof *offs);
	if (r == NULL || offs == NULL) {
		free(r);
		free(offs);
		return DNS_PARSE_NOMEM;
	}
	r->id = id;
	r->qtype = type;
	r->rcode = rcode;
	r->truncated = (flags & DNS_FLAG_TC) != 0;
	r->authoritative = (flags & DNS_FLAG_AA) != 0;
	r->recursion_available = (flags & DNS_FLAG_RA) != 0;
	r->negative_ttl = -1;
	enum dns_parse_status st = DNS_PARSE_OK;
	if (!r->truncated)
		st = sections_read(&p, pos, counts, r, offs);
	size_t qname = 0, canonical = 0;
	if (st == DNS_PARSE_OK)
		st = name_text_append(&p, want, &qname) == 0 ? DNS_PARSE_OK : DNS_PARSE_NOMEM;
	if (st != DNS_PARSE_OK) {
		buf_free(&p.text);
		free(offs);
		free(r);
		return st;
	}
	chain_follow(&p, r, offs, qname, &canonical);
	r->text = p.text.data; /* now owned by r */
	r->text_len = p.text.len;
	pointers_set(r, offs, canonical);
	free(offs);
	*out = r;
	return DNS_PARSE_OK;
}

static const char *rebase(const char *ptr, const char *old, char *new)
{
	return ptr == NULL ? NULL : new + (ptr - old);
}

struct dns_response *dns_response_copy(const struct dns_response *r)
{
	struct dns_response *c = malloc(sizeof *c);
	char *text = malloc(r->text_len + 1);
	if (c == NULL || text == NULL) {
		free(c);
		free(text);
		return NULL;
	}
	memcpy(c, r, sizeof *c);
	memcpy(text, r->text, r->text_len);
	text[r->text_len] = '\0';
	c->text = text;
	c->canonical = rebase(r->canonical, r->text, text);
	for (size_t i = 0; i < c->count; i++) {
		struct dns_record *rec = &c->answers[i];
		const struct dns_record *src = &r->answers[i];
		rec->owner = rebase(src->owner, r->text, text);
		if (rec->type == DNS_TYPE_CNAME)
			rec->rdata.cname = rebase(src->rdata.cname, r->text, text);
		else if (rec->type == DNS_TYPE_MX)
			rec->rdata.mx.exchange = rebase(src->rdata.mx.exchange, r->text, text);
		else if (rec->type == DNS_TYPE_TXT)
			rec->rdata.txt.data = rebase(src->rdata.txt.data, r->text, text);
	}
	return c;
}

void dns_response_free(struct dns_response *r)
{
	if (r == NULL)
		return;
	free(r->text);
	free(r);
}

const char *dns_parse_status_name(enum dns_parse_status s)
{
	switch (s) {
	case DNS_PARSE_OK:
		return "ok";
	case DNS_PARSE_SHORT:
		return "short";
	case DNS_PARSE_MALFORMED:
		return "malformed";
	case DNS_PARSE_MISMATCH:
		return "mismatch";
	case DNS_PARSE_NOMEM:
		return "nomem";
	}
	return "unknown";
}

const char *dns_type_name(uint16_t type, char *buf, size_t buflen)
{
	static const struct {
		uint16_t type;
		const char *name;
	} names[] = {{DNS_TYPE_A, "A"},       {DNS_TYPE_NS, "NS"},  {DNS_TYPE_CNAME, "CNAME"},
	             {DNS_TYPE_SOA, "SOA"},   {DNS_TYPE_MX, "MX"},  {DNS_TYPE_TXT, "TXT"},
	             {DNS_TYPE_AAAA, "AAAA"}, {DNS_TYPE_OPT, "OPT"}};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].type == type)
			return names[i].name;
	snprintf(buf, buflen, "TYPE%u", (unsigned)type);
	return buf;
}

const char *dns_rcode_name(unsigned rcode, char *buf, size_t buflen)
{
	static const char *const names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
	                                    "NXDOMAIN", "NOTIMP",  "REFUSED"};
	if (rcode < sizeof names / sizeof names[0])
		return names[rcode];
	if (rcode == DNS_RCODE_BADVERS)
		return "BADVERS";
	snprintf(buf, buflen, "RCODE%u", rcode);
	return buf;
}
