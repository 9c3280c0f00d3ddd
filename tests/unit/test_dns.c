/*
 * test_dns.c: unit tests of relay/dns.c (the DNS message codec) and relay/resolver.c (the stub
 * resolver, against a fake DNS server on loopback driven by the same event loop).
 *
 * Packets are written in a small notation (packet_build below) so that each case is one table
 * row; a parsed response is rendered as one line of text and compared with the wanted line, so
 * a failing case prints "name: got X, want Y".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "relay/buf.h"
#include "relay/dns.h"
#include "relay/resolver.h"

static int failures;

static void failures_check(void)
{
	int n = failures;
	failures = 0;
	if (n > 0)
		fail_msg("%d check(s) failed", n);
}

static void expect_str(const char *name, const char *field, const char *got, const char *want)
{
	if (strcmp(got, want) != 0) {
		print_error("%s: %s\n  got  %s\n  want %s\n", name, field, got, want);
		failures++;
	}
}

/* ---- packet notation ----
 *
 * Space-separated items, each appending bytes:
 *   hdr=ID/FLAGS/QD/AN/NS/AR   header; ID and FLAGS in hex, counts in decimal
 *   q=NAME/TYPE                question: NAME uncompressed, TYPE, class IN
 *   name=NAME                  a name, uncompressed ("." is the root)
 *   labels=NAME                the labels of NAME without the final root octet
 *   ptr=OFFSET                 a compression pointer
 *   rr=TYPE/CLASS/TTL          the fixed fields of a record, without RDLENGTH
 *   {  ...  }                  RDLENGTH, counting the bytes between the braces
 *   str=TEXT                   a character-string ('~' stands for a space)
 *   u8=N u16=N u32=N           numbers, decimal
 *   fill=N/C                   N octets of the character C
 *   opt=PAYLOAD/EXTRCODE       an OPT record with an empty RDATA
 */
struct packet {
	unsigned char b[70000];
	size_t n;
};

static void put(struct packet *p, unsigned v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		p->b[p->n++] = (unsigned char)(v >> (8 * i));
}

static void put_labels(struct packet *p, const char *name, bool root)
{
	if (strcmp(name, ".") != 0) {
		const char *s = name;
		while (*s != '\0') {
			const char *dot = strchr(s, '.');
			size_t l = dot ? (size_t)(dot - s) : strlen(s);
			p->b[p->n++] = (unsigned char)l;
			memcpy(p->b + p->n, s, l);
			p->n += l;
			s += l + (dot ? 1 : 0);
		}
	}
	if (root)
		p->b[p->n++] = 0;
}

static unsigned long num(const char *s, int base)
{
	char *end;
	unsigned long v = strtoul(s, &end, base);
	if (end == s)
		fail_msg("bad number in packet notation: %s", s);
	return v;
}

static void packet_build(const char *spec, struct packet *p)
{
	char copy[4096];
	size_t open[8], depth = 0;
	snprintf(copy, sizeof copy, "%s", spec);
	p->n = 0;
	for (char *save = NULL, *t = strtok_r(copy, " ", &save); t != NULL;
	     t = strtok_r(NULL, " ", &save)) {
		char *v = strchr(t, '=');
		if (v != NULL)
			*v++ = '\0';
		if (strcmp(t, "{") == 0) {
			open[depth++] = p->n;
			p->n += 2;
		} else if (strcmp(t, "}") == 0) {
			size_t at = open[--depth], len = p->n - at - 2;
			p->b[at] = (unsigned char)(len >> 8);
			p->b[at + 1] = (unsigned char)len;
		} else if (strcmp(t, "hdr") == 0) {
			char *f[6];
			for (int i = 0; i < 6; i++)
				f[i] = strsep(&v, "/");
			put(p, (unsigned)num(f[0], 16), 2);
			put(p, (unsigned)num(f[1], 16), 2);
			for (int i = 2; i < 6; i++)
				put(p, (unsigned)num(f[i], 10), 2);
		} else if (strcmp(t, "q") == 0) {
			char *nm = strsep(&v, "/");
			put_labels(p, nm, true);
			put(p, (unsigned)num(v, 10), 2);
			put(p, 1, 2);
		} else if (strcmp(t, "name") == 0) {
			put_labels(p, v, true);
		} else if (strcmp(t, "labels") == 0) {
			put_labels(p, v, false);
		} else if (strcmp(t, "ptr") == 0) {
			put(p, 0xc000u | (unsigned)num(v, 10), 2);
		} else if (strcmp(t, "rr") == 0) {
			char *ty = strsep(&v, "/"), *cl = strsep(&v, "/");
			put(p, (unsigned)num(ty, 10), 2);
			put(p, (unsigned)num(cl, 10), 2);
			put(p, (unsigned)num(v, 10), 4);
		} else if (strcmp(t, "str") == 0) {
			size_t l = strlen(v);
			p->b[p->n++] = (unsigned char)l;
			for (size_t i = 0; i < l; i++)
				p->b[p->n++] = (unsigned char)(v[i] == '~' ? ' ' : v[i]);
		} else if (strcmp(t, "u8") == 0) {
			put(p, (unsigned)num(v, 10), 1);
		} else if (strcmp(t, "u16") == 0) {
			put(p, (unsigned)num(v, 10), 2);
		} else if (strcmp(t, "u32") == 0) {
			put(p, (unsigned)num(v, 10), 4);
		} else if (strcmp(t, "fill") == 0) {
			char *cnt = strsep(&v, "/");
			size_t k = num(cnt, 10);
			memset(p->b + p->n, v[0], k);
			p->n += k;
		} else if (strcmp(t, "opt") == 0) {
			char *pl = strsep(&v, "/");
			put(p, 0, 1);
			put(p, DNS_TYPE_OPT, 2);
			put(p, (unsigned)num(pl, 10), 2);
			put(p, (unsigned)num(v, 10) << 24, 4);
			put(p, 0, 2);
		} else {
			fail_msg("unknown packet notation item %s", t);
		}
	}
}

/* A response in one line: header facts, then each record. */
static void response_render(const struct dns_response *r, struct buf *out)
{
	char b1[16], b2[16];
	buf_printf(out, "rcode=%s tc=%d edns=%u neg=%lld canon=%s matches=%zu skipped=%zu |",
	           dns_rcode_name(r->rcode, b1, sizeof b1), r->truncated, r->edns_payload,
	           (long long)r->negative_ttl, r->canonical, r->matches, r->skipped);
	for (size_t i = 0; i < r->count; i++) {
		const struct dns_record *rec = &r->answers[i];
		char addr[INET6_ADDRSTRLEN];
		buf_printf(out, " %s%s %s %u", rec->match ? "*" : "",
		           dns_type_name(rec->type, b2, sizeof b2), rec->owner, rec->ttl);
		switch (rec->type) {
		case DNS_TYPE_A:
			buf_printf(out, " %s", inet_ntop(AF_INET, rec->rdata.a, addr, sizeof addr));
			break;
		case DNS_TYPE_AAAA:
			buf_printf(out, " %s",
			           inet_ntop(AF_INET6, rec->rdata.aaaa, addr, sizeof addr));
			break;
		case DNS_TYPE_CNAME:
			buf_printf(out, " %s", rec->rdata.cname);
			break;
		case DNS_TYPE_MX:
			buf_printf(out, " %u %s", rec->rdata.mx.preference, rec->rdata.mx.exchange);
			break;
		case DNS_TYPE_TXT:
			buf_append_str(out, " \"");
			for (size_t k = 0; k < rec->rdata.txt.len; k++) {
				unsigned char c = (unsigned char)rec->rdata.txt.data[k];
				if (c >= 0x20 && c < 0x7f)
					buf_append(out, &c, 1);
				else
					buf_printf(out, "\\%03u", c);
			}
			buf_append_str(out, "\"");
			break;
		default:
			break;
		}
		buf_append_str(out, ";");
	}
}

/* ---- dns_response_parse ---- */

#define QA(name, type) "hdr=1234/8180/1/1/0/0 q=" name "/" type
struct parse_case {
	const char *name;
	const char *packet;
	const char *qname;
	uint16_t qtype;
	enum dns_parse_status status;
	const char *want; /* response_render's line, for DNS_PARSE_OK */
};

static const struct parse_case parse_cases[] = {
    {"txt two strings joined",
     QA("example.com", "16") " ptr=12 rr=16/1/300 { str=v=spf1~include:_spf.example.net "
                             "str=~-all }",
     "example.com", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*TXT "
     "example.com 300 \"v=spf1 include:_spf.example.net -all\";"},
    {"txt empty string kept", QA("example.com", "16") " ptr=12 rr=16/1/1 { u8=0 }", "example.com",
     DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*TXT "
     "example.com 1 \"\";"},
    {"txt with NUL octet", QA("example.com", "16") " ptr=12 rr=16/1/1 { u8=3 u8=97 u8=0 u8=98 }",
     "example.com", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*TXT "
     "example.com 1 \"a\\000b\";"},
    {"question name any case", "hdr=1234/8180/1/1/0/0 q=ExAmple.COM/16 ptr=12 rr=16/1/5 { str=x }",
     "EXAMPLE.com.", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*TXT "
     "example.com 5 \"x\";"},
    {"mx two with preferences and compression",
     "hdr=1234/8180/1/2/0/0 q=example.com/15 ptr=12 rr=15/1/3600 { u16=10 "
     "labels=mx1 ptr=12 } "
     "ptr=12 rr=15/1/3600 { u16=20 labels=mx2 ptr=12 }",
     "example.com", DNS_TYPE_MX, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=2 skipped=0 | "
     "*MX "
     "example.com 3600 10 mx1.example.com; *MX example.com 3600 20 "
     "mx2.example.com;"},
    {"pointer to a pointer",
     "hdr=1234/8180/1/2/0/0 q=example.com/15 ptr=12 rr=15/1/60 { u16=10 "
     "labels=mx ptr=12 } "
     "ptr=12 rr=15/1/60 { u16=20 labels=b ptr=43 }",
     "example.com", DNS_TYPE_MX, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=2 skipped=0 | "
     "*MX "
     "example.com 60 10 mx.example.com; *MX example.com 60 20 "
     "b.mx.example.com;"},
    {"null mx", QA("example.com", "15") " ptr=12 rr=15/1/300 { u16=0 u8=0 }", "example.com",
     DNS_TYPE_MX, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*MX "
     "example.com 300 0 ;"},
    {"a and aaaa",
     "hdr=1234/8180/1/2/0/0 q=h.example/1 ptr=12 rr=1/1/30 { u8=192 u8=0 u8=2 "
     "u8=1 } ptr=12 "
     "rr=28/1/30 { u32=536939960 u32=0 u32=0 u32=1 }",
     "h.example", DNS_TYPE_A, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=h.example matches=1 skipped=0 | "
     "*A h.example 30 "
     "192.0.2.1; AAAA h.example 30 2001:db8::1;"},
    {"cname chain to a txt",
     "hdr=1234/8180/1/3/0/0 q=sel._domainkey.a.example/16 ptr=12 rr=5/1/100 { "
     "name=b.example "
     "} ptr=54 rr=5/1/100 { name=c.example } ptr=77 rr=16/1/50 { str=v=DKIM1 }",
     "sel._domainkey.a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=c.example matches=1 skipped=0 | "
     "CNAME "
     "sel._domainkey.a.example 100 b.example; CNAME b.example 100 c.example; "
     "*TXT c.example 50 "
     "\"v=DKIM1\";"},
    {"cname loop stops",
     "hdr=1234/8180/1/2/0/0 q=a.example/16 ptr=12 rr=5/1/1 { name=b.example } "
     "ptr=39 rr=5/1/1 "
     "{ ptr=12 }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=b.example matches=0 skipped=0 | "
     "CNAME a.example 1 "
     "b.example; CNAME b.example 1 a.example;"},
    {"txt at another name is no match",
     QA("example.com", "16") " name=other.example rr=16/1/1 { str=x }", "example.com", DNS_TYPE_TXT,
     DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=0 skipped=0 | "
     "TXT "
     "other.example 1 \"x\";"},
    {"other types and classes skipped",
     "hdr=1234/8180/1/3/0/0 q=example.com/16 ptr=12 rr=46/1/1 { u32=7 } ptr=12 "
     "rr=16/3/1 { "
     "str=chaos } ptr=12 rr=16/1/1 { str=in }",
     "example.com", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=2 | "
     "*TXT "
     "example.com 1 \"in\";"},
    {"ttl with the top bit is 0", QA("example.com", "16") " ptr=12 rr=16/1/2147483648 { str=x }",
     "example.com", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*TXT "
     "example.com 0 \"x\";"},
    {"odd octets escaped in names",
     "hdr=1234/8180/1/1/0/0 q=example.com/5 ptr=12 rr=5/1/1 { u8=3 u8=97 u8=46 "
     "u8=66 u8=1 "
     "u8=0 u8=0 }",
     "example.com", DNS_TYPE_CNAME, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=example.com matches=1 skipped=0 | "
     "*CNAME "
     "example.com 1 a\\046b.\\000;"},
    {"nxdomain with soa",
     "hdr=1234/8183/1/0/1/0 q=nope.example/16 labels=example u8=0 rr=6/1/3600 "
     "{ "
     "name=ns.example name=host.example u32=1 u32=2 u32=3 u32=4 u32=300 }",
     "nope.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NXDOMAIN tc=0 edns=0 neg=300 canon=nope.example matches=0 "
     "skipped=0 |"},
    {"soa ttl below its minimum",
     "hdr=1234/8180/1/0/1/0 q=a.example/16 ptr=14 rr=6/1/60 { u8=0 u8=0 u32=1 "
     "u32=2 u32=3 "
     "u32=4 u32=300 }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=60 canon=a.example matches=0 skipped=0 |"},
    {"servfail", "hdr=1234/8182/1/0/0/0 q=a.example/16", "a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=SERVFAIL tc=0 edns=0 neg=-1 canon=a.example matches=0 skipped=0 |"},
    {"formerr without question", "hdr=1234/8181/0/0/0/0", "a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=FORMERR tc=0 edns=0 neg=-1 canon=a.example matches=0 skipped=0 |"},
    {"edns payload and extended rcode", "hdr=1234/8180/1/0/0/1 q=a.example/16 opt=1232/1",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=BADVERS tc=0 edns=1232 neg=-1 canon=a.example matches=0 skipped=0 "
     "|"},
    {"truncated: sections not read", "hdr=1234/8380/1/5/0/0 q=a.example/16 u8=7", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=1 edns=0 neg=-1 canon=a.example matches=0 skipped=0 |"},
    {"trailing octets ignored", QA("a.example", "16") " ptr=12 rr=16/1/1 { str=x } u32=0",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_OK,
     "rcode=NOERROR tc=0 edns=0 neg=-1 canon=a.example matches=1 skipped=0 | "
     "*TXT a.example 1 "
     "\"x\";"},
    {"more answers than kept",
     "hdr=1234/8180/1/66/0/0 q=a.example/16 ptr=12 rr=16/1/1 { str=0 } ptr=12 "
     "rr=16/1/1 { "
     "str=1 } ptr=12 rr=16/1/1 { str=2 } ptr=12 rr=16/1/1 { str=3 } ptr=12 "
     "rr=16/1/1 { str=4 } "
     "ptr=12 rr=16/1/1 { str=5 } ptr=12 rr=16/1/1 { str=6 } ptr=12 rr=16/1/1 { "
     "str=7 } ptr=12 "
     "rr=16/1/1 { str=8 } ptr=12 rr=16/1/1 { str=9 } ptr=12 rr=16/1/1 { str=10 "
     "} ptr=12 "
     "rr=16/1/1 { str=11 } ptr=12 rr=16/1/1 { str=12 } ptr=12 rr=16/1/1 { "
     "str=13 } ptr=12 "
     "rr=16/1/1 { str=14 } ptr=12 rr=16/1/1 { str=15 } ptr=12 rr=16/1/1 { "
     "str=16 } ptr=12 "
     "rr=16/1/1 { str=17 } ptr=12 rr=16/1/1 { str=18 } ptr=12 rr=16/1/1 { "
     "str=19 } ptr=12 "
     "rr=16/1/1 { str=20 } ptr=12 rr=16/1/1 { str=21 } ptr=12 rr=16/1/1 { "
     "str=22 } ptr=12 "
     "rr=16/1/1 { str=23 } ptr=12 rr=16/1/1 { str=24 } ptr=12 rr=16/1/1 { "
     "str=25 } ptr=12 "
     "rr=16/1/1 { str=26 } ptr=12 rr=16/1/1 { str=27 } ptr=12 rr=16/1/1 { "
     "str=28 } ptr=12 "
     "rr=16/1/1 { str=29 } ptr=12 rr=16/1/1 { str=30 } ptr=12 rr=16/1/1 { "
     "str=31 } ptr=12 "
     "rr=16/1/1 { str=32 } ptr=12 rr=16/1/1 { str=33 } ptr=12 rr=16/1/1 { "
     "str=34 } ptr=12 "
     "rr=16/1/1 { str=35 } ptr=12 rr=16/1/1 { str=36 } ptr=12 rr=16/1/1 { "
     "str=37 } ptr=12 "
     "rr=16/1/1 { str=38 } ptr=12 rr=16/1/1 { str=39 } ptr=12 rr=16/1/1 { "
     "str=40 } ptr=12 "
     "rr=16/1/1 { str=41 } ptr=12 rr=16/1/1 { str=42 } ptr=12 rr=16/1/1 { "
     "str=43 } ptr=12 "
     "rr=16/1/1 { str=44 } ptr=12 rr=16/1/1 { str=45 } ptr=12 rr=16/1/1 { "
     "str=46 } ptr=12 "
     "rr=16/1/1 { str=47 } ptr=12 rr=16/1/1 { str=48 } ptr=12 rr=16/1/1 { "
     "str=49 } ptr=12 "
     "rr=16/1/1 { str=50 } ptr=12 rr=16/1/1 { str=51 } ptr=12 rr=16/1/1 { "
     "str=52 } ptr=12 "
     "rr=16/1/1 { str=53 } ptr=12 rr=16/1/1 { str=54 } ptr=12 rr=16/1/1 { "
     "str=55 } ptr=12 "
     "rr=16/1/1 { str=56 } ptr=12 rr=16/1/1 { str=57 } ptr=12 rr=16/1/1 { "
     "str=58 } ptr=12 "
     "rr=16/1/1 { str=59 } ptr=12 rr=16/1/1 { str=60 } ptr=12 rr=16/1/1 { "
     "str=61 } ptr=12 "
     "rr=16/1/1 { str=62 } ptr=12 rr=16/1/1 { str=63 } ptr=12 rr=16/1/1 { "
     "str=64 } ptr=12 "
     "rr=16/1/1 { str=65 }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_OK, NULL /* checked by count below */},

    /* not ours: ignored by the resolver */
    {"other id", "hdr=4321/8180/1/0/0/0 q=a.example/16", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MISMATCH, NULL},
    {"a query, not a response", "hdr=1234/0100/1/0/0/0 q=a.example/16", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MISMATCH, NULL},
    {"opcode not query", "hdr=1234/a180/1/0/0/0 q=a.example/16", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MISMATCH, NULL},
    {"other question name", "hdr=1234/8180/1/0/0/0 q=b.example/16", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MISMATCH, NULL},
    {"question name one label longer", "hdr=1234/8180/1/0/0/0 q=x.a.example/16", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MISMATCH, NULL},
    {"other question type", "hdr=1234/8180/1/0/0/0 q=a.example/15", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MISMATCH, NULL},
    {"question class chaos", "hdr=1234/8180/1/0/0/0 name=a.example u16=16 u16=3", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MISMATCH, NULL},
    {"noerror without question", "hdr=1234/8180/0/0/0/0", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MISMATCH, NULL},
    {"two questions", "hdr=1234/8180/2/0/0/0 q=a.example/16 q=a.example/16", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MISMATCH, NULL},

    /* short: the message ends early */
    {"empty", "", "a.example", DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"half a header", "u32=1 u32=2", "a.example", DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"question cut", "hdr=1234/8180/1/0/0/0 labels=a.example", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_SHORT, NULL},
    {"question without type", "hdr=1234/8180/1/0/0/0 name=a.example u16=16", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"answer count lies", QA("a.example", "16"), "a.example", DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"answer count lies by one", "hdr=1234/8180/1/2/0/0 q=a.example/16 ptr=12 rr=16/1/1 { str=x }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"additional count lies", "hdr=1234/8180/1/0/0/1 q=a.example/16", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_SHORT, NULL},
    {"record without rdlength", QA("a.example", "16") " ptr=12 rr=16/1/1 u8=0", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"rdlength past the end", QA("a.example", "16") " ptr=12 rr=16/1/1 u16=9 str=x", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_SHORT, NULL},
    {"pointer cut in half", QA("a.example", "16") " u8=192", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_SHORT, NULL},

    /* malformed */
    {"pointer to itself", QA("a.example", "16") " ptr=27 rr=16/1/1 { str=x }", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"pointer forward", QA("a.example", "16") " ptr=40 rr=16/1/1 { str=x }", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"pointer loop of two",
     /* at 27: label "b" then a pointer to 31, which points back to 27 */
     QA("a.example", "16") " labels=b ptr=31 ptr=27 rr=16/1/1 { str=x }", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MALFORMED, NULL},
    {"pointer into its own labels", QA("a.example", "16") " labels=b.c ptr=29 rr=16/1/1 { str=x }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"pointer in the question", "hdr=1234/8180/1/0/0/0 ptr=12 u16=16 u16=1", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"label type 0x40 (a length of 64)",
     QA("a.example", "16") " u8=64 fill=64/a u8=0 rr=16/1/1 { str=x }", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MALFORMED, NULL},
    {"label type 0x80", QA("a.example", "16") " u8=128 u8=0 rr=16/1/1 { str=x }", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"name of 256 octets",
     QA("a.example", "16") " u8=63 fill=63/a u8=63 fill=63/b u8=63 fill=63/c "
                           "u8=63 fill=63/d "
                           "u8=0 rr=16/1/1 { str=x }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"name over 255 octets through pointers",
     QA("a.example", "16") " u8=63 fill=63/a u8=63 fill=63/b u8=63 fill=63/c "
                           "u8=61 fill=61/d "
                           "ptr=12 rr=16/1/1 { str=x }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"name of 255 octets", /* the longest: kept, not a match */
     QA("a.example", "16") " u8=63 fill=63/a u8=63 fill=63/b u8=63 fill=63/c "
                           "u8=61 fill=61/d "
                           "u8=0 rr=16/1/1 { str=x }",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_OK, NULL},
    {"a of 5 octets", QA("a.example", "1") " ptr=12 rr=1/1/1 { u32=1 u8=1 }", "a.example",
     DNS_TYPE_A, DNS_PARSE_MALFORMED, NULL},
    {"aaaa of 4 octets", QA("a.example", "28") " ptr=12 rr=28/1/1 { u32=1 }", "a.example",
     DNS_TYPE_AAAA, DNS_PARSE_MALFORMED, NULL},
    {"txt string longer than rdata", QA("a.example", "16") " ptr=12 rr=16/1/1 { u8=5 u8=97 } u32=0",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"txt rdata empty", QA("a.example", "16") " ptr=12 rr=16/1/1 { }", "a.example", DNS_TYPE_TXT,
     DNS_PARSE_MALFORMED, NULL},
    {"mx exchange past rdata",
     QA("a.example", "15") " ptr=12 rr=15/1/1 { u16=10 u8=2 } u8=109 u8=120 u8=0", "a.example",
     DNS_TYPE_MX, DNS_PARSE_MALFORMED, NULL},
    {"mx rdata with extra octets", QA("a.example", "15") " ptr=12 rr=15/1/1 { u16=10 ptr=12 u8=0 }",
     "a.example", DNS_TYPE_MX, DNS_PARSE_MALFORMED, NULL},
    {"mx without exchange", QA("a.example", "15") " ptr=12 rr=15/1/1 { u16=10 }", "a.example",
     DNS_TYPE_MX, DNS_PARSE_MALFORMED, NULL},
    {"cname rdata name runs past the message",
     QA("a.example", "5") " ptr=12 rr=5/1/1 { u8=5 u8=97 }", "a.example", DNS_TYPE_CNAME,
     DNS_PARSE_MALFORMED, NULL},
    {"two opt records", "hdr=1234/8180/1/0/0/2 q=a.example/16 opt=1232/0 opt=512/0", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"opt not at the root",
     "hdr=1234/8180/1/0/0/1 q=a.example/16 ptr=12 u16=41 u16=512 u32=0 "
     "u16=0",
     "a.example", DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
    {"soa rdata too short",
     "hdr=1234/8183/1/0/1/0 q=a.example/16 ptr=14 rr=6/1/1 { u8=0 u8=0 u32=1 }", "a.example",
     DNS_TYPE_TXT, DNS_PARSE_MALFORMED, NULL},
};

static void test_parse_table(void **state)
{
	static struct packet p;
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const struct parse_case *c = &parse_cases[i];
		packet_build(c->packet, &p);
		struct dns_response *r = (struct dns_response *)(uintptr_t)1;
		enum dns_parse_status st =
		    dns_response_parse(p.b, p.n, 0x1234, c->qname, c->qtype, &r);
		expect_str(c->name, "status", dns_parse_status_name(st),
		           dns_parse_status_name(c->status));
		if (st != DNS_PARSE_OK) {
			if (r != NULL) {
				print_error("%s: response got %p, want NULL\n", c->name, (void *)r);
				failures++;
			}
			continue;
		}
		struct buf got = BUF_INIT;
		response_render(r, &got);
		if (c->want != NULL)
			expect_str(c->name, "response", got.data, c->want);
		/* a copy renders the same */
		struct dns_response *copy = dns_response_copy(r);
		struct buf again = BUF_INIT;
		response_render(copy, &again);
		expect_str(c->name, "copy", again.data, got.data);
		buf_free(&again);
		buf_free(&got);
		dns_response_free(copy);
		dns_response_free(r);
	}
	failures_check();
}

static void test_parse_many_answers(void **state)
{
	static struct packet p;
	const struct parse_case *c = NULL;
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++)
		if (strcmp(parse_cases[i].name, "more answers than kept") == 0)
			c = &parse_cases[i];
	assert_non_null(c);
	packet_build(c->packet, &p);
	struct dns_response *r;
	assert_int_equal(dns_response_parse(p.b, p.n, 0x1234, c->qname, c->qtype, &r),
	                 DNS_PARSE_OK);
	if (r->count != DNS_RECORDS_MAX || r->skipped != 2 || r->matches != DNS_RECORDS_MAX)
		fail_msg("count/skipped/matches: got %zu/%zu/%zu, want %d/2/%d", r->count,
		         r->skipped, r->matches, DNS_RECORDS_MAX, DNS_RECORDS_MAX);
	assert_string_equal(r->answers[63].rdata.txt.data, "63");
	dns_response_free(r);
}

/* Every prefix of a good response is refused without reading past its end (ASan checks the
 * reads: each prefix is copied into a buffer of exactly its size). */
static void test_parse_prefixes(void **state)
{
	static struct packet p;
	packet_build("hdr=1234/8180/1/2/1/1 q=example.com/15 ptr=12 rr=15/1/60 { "
	             "u16=10 labels=mx "
	             "ptr=12 } ptr=12 rr=15/1/60 { u16=20 labels=b ptr=43 } ptr=12 "
	             "rr=6/1/60 { "
	             "ptr=43 ptr=12 u32=1 u32=2 u32=3 u32=4 u32=5 } opt=1232/0",
	             &p);
	for (size_t n = 0; n < p.n; n++) {
		unsigned char *copy = malloc(n ? n : 1);
		assert_non_null(copy);
		memcpy(copy, p.b, n);
		struct dns_response *r;
		enum dns_parse_status st =
		    dns_response_parse(copy, n, 0x1234, "example.com", DNS_TYPE_MX, &r);
		if (st == DNS_PARSE_OK) {
			print_error("prefix of %zu octets: status got ok, want an error\n", n);
			failures++;
			dns_response_free(r);
		}
		free(copy);
	}
	struct dns_response *r;
	assert_int_equal(dns_response_parse(p.b, p.n, 0x1234, "example.com", DNS_TYPE_MX, &r),
	                 DNS_PARSE_OK);
	assert_int_equal(r->matches, 2);
	assert_int_equal(r->edns_payload, 1232);
	assert_int_equal(r->negative_ttl, 5);
	dns_response_free(r);
	failures_check();
}

/* ---- dns_query_build ---- */

struct build_case {
	const char *name;
	const char *qname;
	uint16_t type;
	bool edns;
	const char *want; /* packet notation, or NULL for -1 */
};

static const struct build_case build_cases[] = {
    {"txt with edns", "example.com", DNS_TYPE_TXT, true,
     "hdr=abcd/0100/1/0/0/1 q=example.com/16 opt=1232/0"},
    {"mx without edns", "Mail.Example.COM", DNS_TYPE_MX, false,
     "hdr=abcd/0100/1/0/0/0 q=Mail.Example.COM/15"},
    {"final dot", "sel._domainkey.example.com.", DNS_TYPE_TXT, false,
     "hdr=abcd/0100/1/0/0/0 q=sel._domainkey.example.com/16"},
    {"label of 63", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
     DNS_TYPE_A, false,
     "hdr=abcd/0100/1/0/0/0 "
     "q=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
     "example/1"},
    {"label of 64", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
     DNS_TYPE_A, false, NULL},
    {"empty", "", DNS_TYPE_A, false, NULL},
    {"root only", ".", DNS_TYPE_A, false, NULL},
    {"empty label", "a..example", DNS_TYPE_A, false, NULL},
    {"leading dot", ".example", DNS_TYPE_A, false, NULL},
    {"space", "a b.example", DNS_TYPE_A, false, NULL},
    {"backslash", "a\\.example", DNS_TYPE_A, false, NULL},
    {"control octet", "a\x01.example", DNS_TYPE_A, false, NULL},
    {"eight-bit octet", "caf\xc3\xa9.example", DNS_TYPE_A, false, NULL},
};

static void test_build_table(void **state)
{
	static struct packet want;
	for (size_t i = 0; i < sizeof build_cases / sizeof build_cases[0]; i++) {
		const struct build_case *c = &build_cases[i];
		unsigned char out[DNS_QUERY_MAX];
		size_t len = 0;
		int rc = dns_query_build(0xabcd, c->qname, c->type, c->edns, out, sizeof out, &len);
		if (c->want == NULL) {
			if (rc != -1) {
				print_error("%s: got %d, want -1\n", c->name, rc);
				failures++;
			}
			continue;
		}
		packet_build(c->want, &want);
		if (rc != 0 || len != want.n || memcmp(out, want.b, len) != 0) {
			print_error("%s: got rc %d, %zu octets; want 0, %zu octets (or bytes "
			            "differ)\n",
			            c->name, rc, len, want.n);
			failures++;
		}
	}
	failures_check();
}

static void test_build_limits(void **state)
{
	/* 253 characters is the longest name; 254 (without a final dot) is too long */
	char name[300];
	memset(name, 0, sizeof name);
	for (size_t i = 0; i < 253; i++)
		name[i] = (i % 64 == 63) ? '.' : 'a';
	unsigned char out[DNS_QUERY_MAX];
	size_t len;
	assert_int_equal(dns_query_build(1, name, DNS_TYPE_A, true, out, sizeof out, &len), 0);
	assert_int_equal(len, DNS_HEADER_SIZE + 255 + 4 + 11);
	name[253] = 'a';
	assert_int_equal(dns_query_build(1, name, DNS_TYPE_A, true, out, sizeof out, &len), -1);
	/* too small an output buffer */
	assert_int_equal(dns_query_build(1, "a.example", DNS_TYPE_A, true, out, 20, &len), -1);
	/* a built query parses as its own question once QR is set */
	assert_int_equal(dns_query_build(7, "A.Example", DNS_TYPE_TXT, true, out, sizeof out, &len),
	                 0);
	out[2] |= 0x80;
	struct dns_response *r;
	assert_int_equal(dns_response_parse(out, len, 7, "a.example.", DNS_TYPE_TXT, &r),
	                 DNS_PARSE_OK);
	assert_int_equal(r->edns_payload, DNS_UDP_PAYLOAD);
	dns_response_free(r);
}

/* ---- resolver: a fake DNS server on loopback, on the test's event base ----
 *
 * It answers by the first label of the question name:
 *   ok        TXT "hello", TTL 300
 *   drop      nothing to the first query of the name, then as ok
 *   wrongid   first a reply with another id, then one for another name, then as ok
 *   big       UDP: TC set and no records; TCP: one TXT of 3000 octets in 12 strings
 *   tcpclose  UDP: TC set; TCP: reads the query and closes
 *   servfail, nxdomain (with an SOA, MINIMUM 60), refused: that RCODE
 *   nodata    NOERROR, no records
 *   formerr   to a query with OPT: FORMERR without OPT; without OPT: TXT "plain"
 *   silent    never answers
 */
struct fake_query {
	uint16_t id;
	bool edns;
	uint16_t port; /* the client's source port */
	char label[64];
};

struct fake {
	struct event_base *base;
	int udp, tcp;
	uint16_t port;
	struct event *udp_ev, *tcp_ev;
	struct fake_query seen[16];
	size_t nseen;
	int tcp_queries;
};

struct fake_conn {
	struct fake *f;
	int fd;
	struct event *ev;
	unsigned char buf[600];
	size_t have;
};

/* The question's end, the first label and whether an OPT follows (ARCOUNT > 0). */
static size_t query_read(const unsigned char *q, size_t len, struct fake_query *out)
{
	size_t at = DNS_HEADER_SIZE;
	assert_true(len > at + 5);
	out->id = (uint16_t)(q[0] << 8 | q[1]);
	out->edns = (q[10] << 8 | q[11]) > 0;
	size_t l = q[at];
	assert_true(l < sizeof out->label);
	memcpy(out->label, q + at + 1, l);
	out->label[l] = '\0';
	while (at < len && q[at] != 0)
		at += 1 + (size_t)q[at];
	return at + 1 + 4;
}

/* The reply to query q for fq's label, into p; returns false for "no reply". */
static bool fake_reply(const unsigned char *q, size_t qlen, const struct fake_query *fq, bool tcp,
                       int nth, struct packet *p)
{
	size_t qend = query_read(q, qlen, &(struct fake_query){0});
	unsigned flags = 0x8180, an = 0, ns = 0;
	const char *l = fq->label;
	if (strcmp(l, "silent") == 0 || (strcmp(l, "drop") == 0 && nth == 1) ||
	    (strcmp(l, "tcpclose") == 0 && tcp))
		return false;
	p->n = 0;
	put(p, fq->id, 2);
	bool txt = strcmp(l, "ok") == 0 || strcmp(l, "drop") == 0 || strcmp(l, "wrongid") == 0;
	if (strcmp(l, "big") == 0 || strcmp(l, "tcpclose") == 0)
		flags |= tcp ? 0 : 0x0200;
	if (strcmp(l, "servfail") == 0)
		flags |= 2;
	if (strcmp(l, "nxdomain") == 0)
		flags |= 3, ns = 1;
	if (strcmp(l, "refused") == 0)
		flags |= 5;
	if (strcmp(l, "formerr") == 0 && fq->edns)
		flags |= 1;
	an = txt || (strcmp(l, "big") == 0 && tcp) || (strcmp(l, "formerr") == 0 && !fq->edns);
	put(p, flags, 2);
	put(p, 1, 2);
	put(p, an, 2);
	put(p, ns, 2);
	put(p, 0, 2);
	memcpy(p->b + p->n, q + DNS_HEADER_SIZE, qend - DNS_HEADER_SIZE);
	p->n += qend - DNS_HEADER_SIZE;
	if (an) {
		put(p, 0xc00c, 2);
		put(p, DNS_TYPE_TXT, 2);
		put(p, 1, 2);
		put(p, 300, 4);
		if (strcmp(l, "big") == 0) {
			put(p, 12 * 251, 2);
			for (int i = 0; i < 12; i++) {
				p->b[p->n++] = 250;
				memset(p->b + p->n, 'x', 250);
				p->n += 250;
			}
		} else {
			const char *v = strcmp(l, "formerr") == 0 ? "plain" : "hello";
			put(p, 1 + (unsigned)strlen(v), 2);
			p->b[p->n++] = (unsigned char)strlen(v);
			memcpy(p->b + p->n, v, strlen(v));
			p->n += strlen(v);
		}
	}
	if (ns) { /* example. SOA with MINIMUM 60, TTL 3600 */
		put(p, 0, 1);
		put(p, DNS_TYPE_SOA, 2);
		put(p, 1, 2);
		put(p, 3600, 4);
		put(p, 22, 2);
		put(p, 0, 1);
		put(p, 0, 1);
		put(p, 1, 4);
		put(p, 2, 4);
		put(p, 3, 4);
		put(p, 4, 4);
		put(p, 60, 4);
	}
	return true;
}

static int fake_count(const struct fake *f, const char *label)
{
	int n = 0;
	for (size_t i = 0; i < f->nseen; i++)
		n += strcmp(f->seen[i].label, label) == 0;
	return n;
}

static void fake_on_udp(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	unsigned char q[600];
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
	if (n <= 0)
		return;
	struct fake_query fq;
	query_read(q, (size_t)n, &fq);
	fq.port = ntohs(from.sin_port);
	if (f->nseen < 16)
		f->seen[f->nseen++] = fq;
	static struct packet p;
	if (!fake_reply(q, (size_t)n, &fq, false, fake_count(f, fq.label), &p))
		return;
	if (strcmp(fq.label, "wrongid") == 0) {
		/* another id, then the right id for another name: both to be ignored */
		p.b[0] ^= 0x55;
		sendto(fd, p.b, p.n, 0, (struct sockaddr *)&from, fl);
		p.b[0] ^= 0x55;
		p.b[DNS_HEADER_SIZE + 1] = 'W';
		sendto(fd, p.b, p.n, 0, (struct sockaddr *)&from, fl);
		p.b[DNS_HEADER_SIZE + 1] = 'w';
	}
	sendto(fd, p.b, p.n, 0, (struct sockaddr *)&from, fl);
}

static void fake_conn_free(struct fake_conn *c)
{
	event_free(c->ev);
	close(c->fd);
	free(c);
}

static void fake_on_conn(evutil_socket_t fd, short what, void *arg)
{
	struct fake_conn *c = arg;
	ssize_t n = recv(fd, c->buf + c->have, sizeof c->buf - c->have, 0);
	if (n <= 0) {
		fake_conn_free(c);
		return;
	}
	c->have += (size_t)n;
	if (c->have < 2 || c->have < 2 + (size_t)(c->buf[0] << 8 | c->buf[1]))
		return;
	struct fake_query fq;
	query_read(c->buf + 2, c->have - 2, &fq);
	c->f->tcp_queries++;
	static struct packet p;
	if (fake_reply(c->buf + 2, c->have - 2, &fq, true, 1, &p)) {
		unsigned char len[2] = {(unsigned char)(p.n >> 8), (unsigned char)p.n};
		assert_int_equal(send(fd, len, 2, 0), 2);
		assert_int_equal(send(fd, p.b, p.n, 0), (ssize_t)p.n);
	}
	fake_conn_free(c);
}

static void fake_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (s == -1)
		return;
	struct fake_conn *c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->f = f;
	c->fd = s;
	c->ev = event_new(f->base, s, EV_READ | EV_PERSIST, fake_on_conn, c);
	assert_int_equal(event_add(c->ev, NULL), 0);
}

static void fake_start(struct fake *f, struct event_base *base)
{
	memset(f, 0, sizeof *f);
	f->base = base;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	/* a port free for both UDP and TCP */
	for (int tries = 0; tries < 50; tries++) {
		f->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		a.sin_port = 0;
		assert_int_equal(bind(f->udp, (struct sockaddr *)&a, sizeof a), 0);
		assert_int_equal(getsockname(f->udp, (struct sockaddr *)&a, &al), 0);
		f->tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		setsockopt(f->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(f->tcp, (struct sockaddr *)&a, sizeof a) == 0 && listen(f->tcp, 8) == 0)
			break;
		close(f->udp);
		close(f->tcp);
		f->udp = f->tcp = -1;
	}
	assert_true(f->udp != -1);
	f->port = ntohs(a.sin_port);
	f->udp_ev = event_new(base, f->udp, EV_READ | EV_PERSIST, fake_on_udp, f);
	f->tcp_ev = event_new(base, f->tcp, EV_READ | EV_PERSIST, fake_on_accept, f);
	assert_int_equal(event_add(f->udp_ev, NULL), 0);
	assert_int_equal(event_add(f->tcp_ev, NULL), 0);
}

static void fake_stop(struct fake *f)
{
	event_free(f->udp_ev);
	event_free(f->tcp_ev);
	close(f->udp);
	close(f->tcp);
}

struct outcome {
	int calls;
	bool in_query; /* set while resolver_query runs: a callback then breaks the contract */
	uint64_t ref;
	enum resolver_status status;
	char detail[400];
	char txt[4000];
	size_t txt_len;
	uint32_t ttl;
	int64_t negative_ttl;
};

static void on_done(const struct resolver_result *res, uint64_t ref, void *arg)
{
	struct outcome *o = arg;
	if (o->in_query)
		fail_msg("callback called from inside resolver_query");
	o->calls++;
	o->ref = ref;
	o->status = res->status;
	snprintf(o->detail, sizeof o->detail, "%s", res->detail);
	o->txt[0] = '\0';
	o->negative_ttl = res->response ? res->response->negative_ttl : -2;
	if (res->response != NULL)
		for (size_t i = 0; i < res->response->count; i++) {
			const struct dns_record *rec = &res->response->answers[i];
			if (rec->match && rec->type == DNS_TYPE_TXT &&
			    rec->rdata.txt.len < sizeof o->txt) {
				memcpy(o->txt, rec->rdata.txt.data, rec->rdata.txt.len + 1);
				o->txt_len = rec->rdata.txt.len;
				o->ttl = rec->ttl;
			}
		}
}

/* Runs base until o has its callback, at most 5 s. */
static void wait_outcome(struct event_base *base, struct outcome *o)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (o->calls == 0) {
		struct timeval tv = {0, 50000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec > 5)
			fail_msg("no callback within 5 s");
	}
}

struct resolve_case {
	const char *label;
	int attempts;
	enum resolver_status status;
	const char *txt; /* wanted TXT value, or NULL */
	int queries;     /* UDP queries the fake should see */
	int tcp_queries;
};

static const struct resolve_case resolve_cases[] = {
    {"ok", 2, RESOLVER_OK, "hello", 1, 0},          {"drop", 2, RESOLVER_OK, "hello", 2, 0},
    {"wrongid", 2, RESOLVER_OK, "hello", 1, 0},     {"big", 2, RESOLVER_OK, NULL, 1, 1},
    {"tcpclose", 2, RESOLVER_NETWORK, NULL, 1, 1},  {"servfail", 2, RESOLVER_SERVFAIL, NULL, 1, 0},
    {"nxdomain", 2, RESOLVER_NXDOMAIN, NULL, 1, 0}, {"refused", 2, RESOLVER_REFUSED, NULL, 1, 0},
    {"nodata", 2, RESOLVER_NODATA, NULL, 1, 0},     {"formerr", 2, RESOLVER_OK, "plain", 2, 0},
    {"silent", 3, RESOLVER_TIMEOUT, NULL, 3, 0},
};

static void test_resolver_table(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct fake f;
	fake_start(&f, base);
	char server[64], err[256];
	snprintf(server, sizeof server, "127.0.0.1:%u", f.port);
	for (size_t i = 0; i < sizeof resolve_cases / sizeof resolve_cases[0]; i++) {
		const struct resolve_case *c = &resolve_cases[i];
		struct resolver *r = resolver_new(base, server, 150, c->attempts, err, sizeof err);
		assert_non_null(r);
		f.nseen = 0;
		f.tcp_queries = 0;
		char name[64];
		snprintf(name, sizeof name, "%s.example", c->label);
		struct outcome o = {.in_query = true};
		assert_int_equal(resolver_query(r, name, DNS_TYPE_TXT, on_done, 77 + i, &o), 0);
		o.in_query = false;
		wait_outcome(base, &o);
		expect_str(c->label, "status", resolver_status_name(o.status),
		           resolver_status_name(c->status));
		if (o.ref != 77 + i) {
			print_error("%s: ref got %llu, want %zu\n", c->label,
			            (unsigned long long)o.ref, 77 + i);
			failures++;
		}
		if (c->txt != NULL)
			expect_str(c->label, "txt", o.txt, c->txt);
		if (strcmp(c->label, "big") == 0 && o.txt_len != 3000) {
			print_error("big: TXT length got %zu, want 3000\n", o.txt_len);
			failures++;
		}
		if (strcmp(c->label, "nxdomain") == 0 && o.negative_ttl != 60) {
			print_error("nxdomain: negative TTL got %lld, want 60\n",
			            (long long)o.negative_ttl);
			failures++;
		}
		if ((int)f.nseen != c->queries || f.tcp_queries != c->tcp_queries) {
			print_error("%s: UDP/TCP queries got %zu/%d, want %d/%d\n", c->label,
			            f.nseen, f.tcp_queries, c->queries, c->tcp_queries);
			failures++;
		}
		if (strcmp(c->label, "formerr") == 0 && f.nseen == 2 &&
		    (!f.seen[0].edns || f.seen[1].edns)) {
			print_error("formerr: EDNS got %d then %d, want 1 then 0\n", f.seen[0].edns,
			            f.seen[1].edns);
			failures++;
		}
		/* each attempt: a new socket (source port) and a new id; both the same by chance is
		 * a 1 in 2^32 event */
		for (size_t k = 1; k < f.nseen; k++)
			if (f.seen[k].port == f.seen[k - 1].port &&
			    f.seen[k].id == f.seen[k - 1].id) {
				print_error("%s: attempt %zu reused port %u and id %u\n", c->label,
				            k + 1, f.seen[k].port, f.seen[k].id);
				failures++;
			}
		if (o.calls != 1) {
			print_error("%s: callbacks got %d, want 1\n", c->label, o.calls);
			failures++;
		}
		/* nothing more arrives later */
		struct timeval tv = {0, 200000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
		if (o.calls != 1) {
			print_error("%s: callbacks after a while got %d, want 1\n", c->label,
			            o.calls);
			failures++;
		}
		resolver_free(r);
	}
	fake_stop(&f);
	event_base_free(base);
	failures_check();
}

/* With the cache on, a second query for a name answered OK, NODATA or NXDOMAIN is answered
 * from the cache (the fake sees one query), later and through the callback like any answer;
 * a SERVFAIL is asked again; names differing in case share an entry. */
static void test_resolver_cache(void **state)
{
	static const struct {
		const char *name;
		enum resolver_status status;
		int queries; /* the fake sees this many over the two lookups */
	} cases[] = {
	    {"ok.example", RESOLVER_OK, 1},
	    {"nxdomain.example", RESOLVER_NXDOMAIN, 1},
	    {"nodata.example", RESOLVER_NODATA, 1},
	    {"servfail.example", RESOLVER_SERVFAIL, 2},
	};
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct fake f;
	fake_start(&f, base);
	char server[64], err[256];
	snprintf(server, sizeof server, "127.0.0.1:%u", f.port);
	struct resolver *r = resolver_new(base, server, 150, 2, err, sizeof err);
	assert_non_null(r);
	assert_int_equal(resolver_cache_enable(r, 100), 0);
	assert_int_equal(resolver_cache_enable(r, 100), -1); /* once */
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		f.nseen = 0;
		for (int round = 0; round < 2; round++) {
			char name[64];
			snprintf(name, sizeof name, "%s", cases[i].name);
			if (round == 1 &&
			    cases[i].queries == 1) /* "Ok.example": the same entry
			                              (the fake answers by exact label) */
				name[0] = (char)(name[0] - 32);
			struct outcome o = {.in_query = true};
			assert_int_equal(resolver_query(r, name, DNS_TYPE_TXT, on_done, 5, &o), 0);
			o.in_query = false;
			wait_outcome(base, &o);
			expect_str(cases[i].name, "status", resolver_status_name(o.status),
			           resolver_status_name(cases[i].status));
			if (round == 1 && cases[i].queries == 1 &&
			    strstr(o.detail, "cached") == NULL) {
				print_error("%s: detail got \"%s\", want a cached answer\n",
				            cases[i].name, o.detail);
				failures++;
			}
			if (round == 1 && cases[i].status == RESOLVER_OK)
				expect_str(cases[i].name, "cached txt", o.txt, "hello");
		}
		if ((int)f.nseen != cases[i].queries) {
			print_error("%s: queries got %zu, want %d\n", cases[i].name, f.nseen,
			            cases[i].queries);
			failures++;
		}
	}
	if (resolver_cache_count(r) != 3) {
		print_error("cache entries got %zu, want 3\n", resolver_cache_count(r));
		failures++;
	}
	resolver_free(r);
	fake_stop(&f);
	event_base_free(base);
	failures_check();
}

static void test_resolver_refused_port(void **state)
{
	/* a UDP port with nothing bound: ICMP port unreachable, seen on the connected socket */
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);
	char server[64], err[256];
	snprintf(server, sizeof server, "127.0.0.1:%u", ntohs(a.sin_port));
	struct event_base *base = event_base_new();
	struct resolver *r = resolver_new(base, server, 1000, 2, err, sizeof err);
	assert_non_null(r);
	struct outcome o = {0};
	assert_int_equal(resolver_query(r, "a.example", DNS_TYPE_MX, on_done, 1, &o), 0);
	wait_outcome(base, &o);
	assert_string_equal(resolver_status_name(o.status), "network");
	if (strstr(o.detail, "refused") == NULL)
		fail_msg("detail got \"%s\", want ...refused...", o.detail);
	resolver_free(r);
	event_base_free(base);
}

static void on_done_requery(const struct resolver_result *res, uint64_t ref, void *arg)
{
	struct outcome *o = arg;
	on_done(res, ref, arg);
	/* while the resolver closes, no new query may start */
	struct resolver *r = (struct resolver *)(uintptr_t)ref;
	if (resolver_query(r, "again.example", DNS_TYPE_TXT, on_done, 0, o) != -1)
		fail_msg("resolver_query during resolver_free: got 0, want -1");
}

static void test_resolver_contract(void **state)
{
	struct event_base *base = event_base_new();
	struct fake f;
	fake_start(&f, base);
	char server[64], err[256];
	snprintf(server, sizeof server, "127.0.0.1:%u", f.port);
	struct resolver *r = resolver_new(base, server, 1000, 2, err, sizeof err);
	assert_non_null(r);
	struct outcome o = {0};
	/* refused at once, without a callback */
	assert_int_equal(resolver_query(r, "bad name.example", DNS_TYPE_TXT, on_done, 0, &o), -1);
	assert_int_equal(resolver_query(r, "", DNS_TYPE_TXT, on_done, 0, &o), -1);
	assert_int_equal(resolver_query(r, "a..b", DNS_TYPE_TXT, on_done, 0, &o), -1);
	/* freed while in flight: cancelled, exactly once, and no new query then */
	assert_int_equal(
	    resolver_query(r, "silent.example", DNS_TYPE_TXT, on_done_requery, (uintptr_t)r, &o),
	    0);
	struct timeval tv = {0, 50000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(o.calls, 0);
	resolver_free(r);
	assert_int_equal(o.calls, 1);
	assert_string_equal(resolver_status_name(o.status), "cancelled");
	resolver_free(NULL);
	/* bad settings */
	assert_null(resolver_new(base, server, 5, 2, err, sizeof err));
	assert_null(resolver_new(base, server, 1000, 0, err, sizeof err));
	assert_null(resolver_new(base, "example.com:53", 1000, 2, err, sizeof err));
	fake_stop(&f);
	event_base_free(base);
}

struct server_case {
	const char *in;
	const char *want; /* the address as resolver_server_text shows it, or NULL: refused */
};

static const struct server_case server_cases[] = {
    {"127.0.0.1:5353", "127.0.0.1:5353"},
    {"127.0.0.1", "127.0.0.1:53"},
    {"[::1]:5353", "[::1]:5353"},
    {"[::1]", "[::1]:53"},
    {"::1", "[::1]:53"},
    {"2001:db8::53", "[2001:db8::53]:53"},
    {"192.0.2.1:0", NULL},
    {"192.0.2.1:65536", NULL},
    {"192.0.2.1:", NULL},
    {"192.0.2.1:x", NULL},
    {"[::1", NULL},
    {"[::1]x", NULL},
    {"[::1]:", NULL},
    {"dns.example:53", NULL},
    {"dns.example", NULL},
    {"192.0.2.256", NULL},
};

static void test_server_parse(void **state)
{
	struct event_base *base = event_base_new();
	for (size_t i = 0; i < sizeof server_cases / sizeof server_cases[0]; i++) {
		const struct server_case *c = &server_cases[i];
		char err[256] = "";
		struct resolver *r = resolver_new(base, c->in, 1000, 1, err, sizeof err);
		const char *got = r != NULL ? resolver_server_text(r) : "(refused)";
		expect_str(c->in, "server", got, c->want != NULL ? c->want : "(refused)");
		if (r == NULL && err[0] == '\0') {
			print_error("%s: refused without a reason\n", c->in);
			failures++;
		}
		resolver_free(r);
	}
	/* the system's resolver: some address, whatever resolv.conf says */
	char err[256];
	struct resolver *r = resolver_new(base, "", 1000, 1, err, sizeof err);
	if (r == NULL)
		fail_msg("system resolver: %s", err);
	resolver_free(r);
	event_base_free(base);
	failures_check();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),           cmocka_unit_test(test_parse_many_answers),
	    cmocka_unit_test(test_parse_prefixes),        cmocka_unit_test(test_build_table),
	    cmocka_unit_test(test_build_limits),          cmocka_unit_test(test_resolver_table),
	    cmocka_unit_test(test_resolver_refused_port), cmocka_unit_test(test_resolver_cache),
	    cmocka_unit_test(test_resolver_contract),     cmocka_unit_test(test_server_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
