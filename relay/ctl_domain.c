/*
 * ctl_domain.c: postinoctl's domain commands (see ctl_domain.h).
 *
 *   domain check DOMAIN
 *
 * Looks up, through the configured resolver (dns_resolver, dns_timeout), and compares:
 *   dkim   SEL._domainkey.DOMAIN TXT for every selector of the key store that should be
 *          published (pending, active, retiring): RFC 6376 3.6.1 (key record tags), 3.6.2.2
 *          (a TXT record's strings joined), RFC 8463 (k=ed25519);
 *   spf    exactly one TXT record at DOMAIN starting "v=spf1" (RFC 7208 4.5), holding every
 *          term of the spf_include setting;
 *   dmarc  _dmarc.DOMAIN TXT starting "v=DMARC1" (RFC 7489 6.3, 6.6.3; when absent, the
 *          record of a parent domain, as receivers look it up), with a valid p= and a DKIM
 *          alignment (adkim=) that the d= Postino signs this domain's mail with satisfies.
 * Each check prints one line: "PASS <check> <name> (<what it means>)" or "FAIL <check>
 * <name>: <reason>; publish: <zone-file record>".
 */
#include "relay/ctl_domain.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "relay/buf.h"
#include "relay/dns.h"
#include "relay/log.h"
#include "relay/resolver.h"

#define TAGS_MAX       32 /* tags of one DKIM or DMARC record */
#define SPF_TERMS_MAX  64
#define DMARC_WALK_MAX 4 /* parent domains tried for the DMARC record */
#define SHOWN_TEXT_MAX 200

void ctl_domain_usage(FILE *out)
{
	fprintf(out, "  domain check DOMAIN\n");
}

/* ---- tag lists (RFC 6376 3.2, used by RFC 7489 6.4 too) ---- */

struct tag {
	const char *name, *value;
	size_t name_len, value_len;
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Splits "name=value; name=value" with optional whitespace around names and values. Returns NULL,
 * or why the text is not a tag-list. */
static const char *tags_parse(const char *s, size_t len, struct tag *tags, size_t *count)
{
	size_t n = 0, i = 0;
	if (memchr(s, '\0', len) != NULL)
		return "it holds a NUL octet";
	while (i < len) {
		size_t end = i;
		while (end < len && s[end] != ';')
			end++;
		size_t a = i, b = end;
		while (a < b && is_wsp(s[a]))
			a++;
		while (b > a && is_wsp(s[b - 1]))
			b--;
		i = end + 1;
		if (a == b) {
			if (end == len || n > 0) /* an empty spec: only after the last ';' */
				continue;
			return "it starts with ';'";
		}
		const char *eq = memchr(s + a, '=', b - a);
		if (eq == NULL)
			return "a tag has no '='";
		size_t ne = (size_t)(eq - s);
		while (ne > a && is_wsp(s[ne - 1]))
			ne--;
		size_t vs = (size_t)(eq - s) + 1;
		while (vs < b && is_wsp(s[vs]))
			vs++;
		if (ne == a || !isalpha((unsigned char)s[a]))
			return "a tag has no name";
		for (size_t k = a; k < ne; k++)
			if (!isalnum((unsigned char)s[k]) && s[k] != '_')
				return "a tag name has a character other than letters, digits and "
				       "'_'";
		for (size_t k = 0; k < n; k++)
			if (tags[k].name_len == ne - a && memcmp(tags[k].name, s + a, ne - a) == 0)
				return "a tag appears twice";
		if (n == TAGS_MAX)
			return "too many tags";
		tags[n++] = (struct tag){s + a, s + vs, ne - a, b - vs};
	}
	*count = n;
	return NULL;
}

static const struct tag *tag_find(const struct tag *tags, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (tags[i].name_len == strlen(name) &&
		    memcmp(tags[i].name, name, tags[i].name_len) == 0)
			return &tags[i];
	return NULL;
}

static bool value_is(const struct tag *t, const char *want)
{
	return t->value_len == strlen(want) && strncasecmp(t->value, want, t->value_len) == 0;
}

/* True when the colon-separated list in t's value holds one of the words (any case). */
static bool list_has(const struct tag *t, const char *word1, const char *word2)
{
	size_t i = 0;
	while (i <= t->value_len) {
		size_t e = i;
		while (e < t->value_len && t->value[e] != ':')
			e++;
		size_t a = i, b = e;
		while (a < b && is_wsp(t->value[a]))
			a++;
		while (b > a && is_wsp(t->value[b - 1]))
			b--;
		struct tag w = {NULL, t->value + a, 0, b - a};
		if (value_is(&w, word1) || (word2 != NULL && value_is(&w, word2)))
			return true;
		i = e + 1;
	}
	return false;
}

const char *ctl_domain_dkim_record_check(const char *txt, size_t len,
                                         const struct dkkeys_selector *s, char *why, size_t whylen)
{
	struct tag tags[TAGS_MAX];
	size_t n;
	const char *bad = tags_parse(txt, len, tags, &n);
	if (bad != NULL) {
		snprintf(why, whylen, "the record is not a DKIM tag list: %s", bad);
		return why;
	}
	const struct tag *v = tag_find(tags, n, "v");
	if (v != NULL &&
	    (v != &tags[0] || v->value_len != 5 || memcmp(v->value, "DKIM1", 5) != 0)) {
		snprintf(why, whylen, "v= must be the first tag and be DKIM1");
		return why;
	}
	const struct tag *k = tag_find(tags, n, "k");
	const char *alg = dkkeys_algorithm_name(s->algorithm);
	if ((k == NULL && s->algorithm != DKKEYS_ALG_RSA) || (k != NULL && !value_is(k, alg))) {
		if (k == NULL)
			snprintf(why, whylen, "k=rsa (the default), but the key is %s", alg);
		else
			snprintf(why, whylen, "k=%.*s, but the key is %s", (int)k->value_len,
			         k->value, alg);
		return why;
	}
	const struct tag *h = tag_find(tags, n, "h");
	if (h != NULL && !list_has(h, "sha256", NULL)) {
		snprintf(why, whylen, "h= does not allow sha256, which Postino signs with");
		return why;
	}
	const struct tag *st = tag_find(tags, n, "s");
	if (st != NULL && !list_has(st, "email", "*")) {
		snprintf(why, whylen, "s= does not allow email");
		return why;
	}
	const struct tag *p = tag_find(tags, n, "p");
	if (p == NULL) {
		snprintf(why, whylen, "no p= tag");
		return why;
	}
	char key[DKKEYS_PUBLIC_MAX + 1];
	size_t kl = 0;
	for (size_t i = 0; i < p->value_len; i++) {
		if (is_wsp(p->value[i]))
			continue;
		if (kl == DKKEYS_PUBLIC_MAX) {
			snprintf(why, whylen, "p= is another key (longer than this one)");
			return why;
		}
		key[kl++] = p->value[i];
	}
	key[kl] = '\0';
	if (kl == 0) {
		snprintf(why, whylen, "p= is empty: the key is revoked");
		return why;
	}
	if (strcmp(key, s->public_key) != 0) {
		snprintf(why, whylen, "p= is another key than selector %s's", s->name);
		return why;
	}
	return NULL;
}

/* ---- output ---- */

struct check_run {
	const struct config *cfg;
	struct resolver_sync *rs;
	const char *domain;
	int failed;
};

/* Appends text as zone-file character-strings of at most 255 octets, escaped (RFC 1035 5.1);
 * several strings are wrapped in parentheses. */
static int zone_strings_append(struct buf *out, const char *text, size_t len)
{
	bool many = len > 255;
	if (many && buf_append_str(out, "( ") == -1)
		return -1;
	for (size_t off = 0; off < len || off == 0; off += 255) {
		size_t end = off + 255 < len ? off + 255 : len;
		if ((off > 0 && buf_append_str(out, " ") == -1) || buf_append_str(out, "\"") == -1)
			return -1;
		for (size_t i = off; i < end; i++) {
			unsigned char c = (unsigned char)text[i];
			int rc;
			if (c == '"' || c == '\\')
				rc = buf_printf(out, "\\%c", c);
			else if (c < 0x20 || c >= 0x7f)
				rc = buf_printf(out, "\\%03u", c);
			else
				rc = buf_append(out, &c, 1);
			if (rc == -1)
				return -1;
		}
		if (buf_append_str(out, "\"") == -1)
			return -1;
		if (len == 0)
			break;
	}
	return many ? buf_append_str(out, " )") : 0;
}

static void line_pass(const char *check, const char *name, const char *what)
{
	printf("PASS %s %s (%s)\n", check, name, what);
}

/* "FAIL check name: reason[; publish: NAME. IN TXT value]" */
static void line_fail(struct check_run *run, const char *check, const char *name,
                      const char *reason, const char *publish_name, const char *value)
{
	struct buf rec = BUF_INIT;
	run->failed++;
	if (publish_name != NULL && (buf_printf(&rec, "%s. IN TXT ", publish_name) == -1 ||
	                             zone_strings_append(&rec, value, strlen(value)) == -1)) {
		buf_free(&rec);
		printf("FAIL %s %s: %s\n", check, name, reason);
		return;
	}
	if (rec.len > 0)
		printf("FAIL %s %s: %s; publish: %s\n", check, name, reason, rec.data);
	else
		printf("FAIL %s %s: %s\n", check, name, reason);
	buf_free(&rec);
}

/* A TXT value shown inside a reason: escaped and cut. */
static const char *shown(const char *text, size_t len, char *out, size_t outlen)
{
	return log_escape(text, len, out, outlen);
}

/* The TXT records at name that answer the question. res must be OK. */
static size_t txt_records(const struct resolver_result *res, const struct dns_record **out,
                          size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < res->response->count && n < max; i++)
		if (res->response->answers[i].match &&
		    res->response->answers[i].type == DNS_TYPE_TXT)
			out[n++] = &res->response->answers[i];
	return n;
}

/* Why a lookup did not give records, for a FAIL line. */
static const char *lookup_reason(const struct resolver_result *res, char *out, size_t outlen)
{
	switch (res->status) {
	case RESOLVER_NODATA:
	case RESOLVER_NXDOMAIN:
		snprintf(out, outlen, "no record");
		break;
	default:
		snprintf(out, outlen, "lookup failed (%s): %s", resolver_status_name(res->status),
		         res->detail);
		break;
	}
	return out;
}

static bool lookup_failed(const struct resolver_result *res)
{
	return res->status != RESOLVER_OK && res->status != RESOLVER_NODATA &&
	       res->status != RESOLVER_NXDOMAIN;
}

/* ---- dkim ---- */

static void date_format(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (t <= 0 || gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%d", &tm) == 0)
		snprintf(out, outlen, "-");
}

static void dkim_check_one(struct check_run *run, const struct dkkeys_selector *s)
{
	char name[DKKEYS_SELECTOR_MAX + DKKEYS_DOMAIN_MAX + 16], what[96], label[512];
	char reason[800], why[500], date[16];
	snprintf(name, sizeof name, "%s._domainkey.%s", s->name, run->domain);
	const char *alg = dkkeys_algorithm_name(s->algorithm);
	date_format(s->retire_at, date, sizeof date);
	if (s->state == DKKEYS_STATE_PENDING)
		snprintf(what, sizeof what, "%s, pending", alg);
	else if (s->state == DKKEYS_STATE_RETIRING)
		snprintf(what, sizeof what, "%s, retiring: keep it published until %s", alg, date);
	else
		snprintf(what, sizeof what, "%s", alg);
	snprintf(label, sizeof label, "%s (%s)", name, what);
	/* the value to publish, as "dkim show" prints it */
	char value[DKKEYS_PUBLIC_MAX + 64];
	snprintf(value, sizeof value, "v=DKIM1; k=%s; p=%s", alg, s->public_key);
	struct resolver_result res;
	resolver_sync_query(run->rs, name, DNS_TYPE_TXT, &res);
	if (res.status != RESOLVER_OK) {
		lookup_reason(&res, why, sizeof why);
		if (s->state == DKKEYS_STATE_PENDING && !lookup_failed(&res))
			snprintf(reason, sizeof reason,
			         "%s yet (Postino activates the key once this record is visible)",
			         why);
		else
			snprintf(reason, sizeof reason, "%s", why);
		line_fail(run, "dkim", label, reason, lookup_failed(&res) ? NULL : name, value);
		dns_response_free(res.response);
		return;
	}
	const struct dns_record *recs[DNS_RECORDS_MAX];
	size_t n = txt_records(&res, recs, DNS_RECORDS_MAX);
	if (n > 1) {
		snprintf(reason, sizeof reason,
		         "%zu TXT records: a verifier may take any of them; keep only this "
		         "key's",
		         n);
		line_fail(run, "dkim", label, reason, name, value);
	} else if (ctl_domain_dkim_record_check(recs[0]->rdata.txt.data, recs[0]->rdata.txt.len, s,
	                                        why, sizeof why) != NULL) {
		char txt[SHOWN_TEXT_MAX];
		snprintf(reason, sizeof reason, "%s (published: \"%s\")", why,
		         shown(recs[0]->rdata.txt.data, recs[0]->rdata.txt.len, txt, sizeof txt));
		line_fail(run, "dkim", label, reason, name, value);
	} else {
		line_pass("dkim", name, what);
	}
	dns_response_free(res.response);
}

/* The d= Postino signs mail from the domain with: the domain itself when it has an active key of a
 * configured algorithm (as dkim/dksign.c chooses), else the fallback, else NULL. */
static const char *signing_domain(const struct check_run *run, const struct dkkeys_domain *d)
{
	for (size_t i = 0; i < d->count; i++)
		if (d->sel[i].state == DKKEYS_STATE_ACTIVE &&
		    ((unsigned)run->cfg->dkim_algorithms & (unsigned)d->sel[i].algorithm) != 0)
			return run->domain;
	if (run->cfg->dkim_unknown_domain == CONFIG_DKIM_UNKNOWN_SIGN)
		return run->cfg->dkim_domain;
	return NULL;
}

static void dkim_check(struct check_run *run, const struct dkkeys_domain *d)
{
	size_t checked = 0;
	for (size_t i = 0; i < d->count; i++) {
		if (d->sel[i].state == DKKEYS_STATE_RETIRED)
			continue; /* its record may go */
		dkim_check_one(run, &d->sel[i]);
		checked++;
	}
	if (checked == 0) {
		char reason[600];
		snprintf(reason, sizeof reason,
		         "no DKIM key in the key store; create them: postinoctl dkim keygen %s",
		         run->domain);
		line_fail(run, "dkim", run->domain, reason, NULL, NULL);
	}
}

/* ---- spf ---- */

struct spf_terms {
	size_t n;
	char *t[SPF_TERMS_MAX];
};

static void terms_free(struct spf_terms *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->t[i]);
	t->n = 0;
}

/* Splits text at whitespace; returns -1 past SPF_TERMS_MAX or out of memory. */
static int terms_split(const char *text, size_t len, struct spf_terms *out)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && is_wsp(text[i]))
			i++;
		size_t e = i;
		while (e < len && !is_wsp(text[e]))
			e++;
		if (e > i) {
			if (out->n == SPF_TERMS_MAX ||
			    (out->t[out->n] = strndup(text + i, e - i)) == NULL)
				return -1;
			out->n++;
		}
		i = e;
	}
	return 0;
}

/* A term without its "+" qualifier (pass is the default, RFC 7208 4.6.2). */
static const char *term_bare(const char *t)
{
	return t[0] == '+' ? t + 1 : t;
}

static bool terms_have(const struct spf_terms *t, const char *term)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcasecmp(term_bare(t->t[i]), term_bare(term)) == 0)
			return true;
	return false;
}

static bool term_is_all_or_redirect(const char *t)
{
	const char *b = t[0] == '+' || t[0] == '-' || t[0] == '~' || t[0] == '?' ? t + 1 : t;
	return strcasecmp(b, "all") == 0 || strncasecmp(t, "redirect=", 9) == 0;
}

static bool spf_is_record(const char *txt, size_t len)
{
	return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

/*
 * The SPF record to publish: the terms of the records found (none, one or several; the version
 * tags, "all" terms and redirects left out and repeated terms once), then the required terms
 * missing, then the first record's "all" or redirect term, or "~all".
 */
static int spf_suggest(const struct check_run *run, const struct dns_record **recs, size_t n,
                       const struct spf_terms *required, struct buf *out)
{
	struct spf_terms all = {0}, seen = {0};
	int rc = buf_append_str(out, "v=spf1");
	const char *ending = NULL;
	for (size_t r = 0; r < n && rc == 0; r++)
		rc = terms_split(recs[r]->rdata.txt.data, recs[r]->rdata.txt.len, &all);
	for (size_t i = 0; i < all.n && rc == 0; i++) {
		const char *t = all.t[i];
		if (strcasecmp(t, "v=spf1") == 0)
			continue;
		if (term_is_all_or_redirect(t)) {
			if (ending == NULL)
				ending = t;
			continue;
		}
		if (terms_have(&seen, t))
			continue;
		seen.t[seen.n++] = strdup(t);
		if (seen.t[seen.n - 1] == NULL)
			rc = -1;
		else
			rc = buf_printf(out, " %s", t);
	}
	bool added = false;
	for (size_t i = 0; i < required->n && rc == 0; i++)
		if (!terms_have(&seen, required->t[i])) {
			rc = buf_printf(out, " %s", required->t[i]);
			added = true;
		}
	if (rc == 0 && seen.n == 0 && !added) /* nothing known: Postino's own host */
		rc = buf_printf(out, " a:%s", run->cfg->hostname);
	if (rc == 0)
		rc = buf_printf(out, " %s", ending != NULL ? ending : "~all");
	terms_free(&all);
	terms_free(&seen);
	return rc;
}

static void spf_check(struct check_run *run)
{
	const char *domain = run->domain;
	struct spf_terms required = {0};
	char reason[1200];
	if (terms_split(run->cfg->spf_include, strlen(run->cfg->spf_include), &required) == -1) {
		line_fail(run, "spf", domain, "spf_include has too many terms", NULL, NULL);
		terms_free(&required);
		return;
	}
	struct resolver_result res;
	resolver_sync_query(run->rs, domain, DNS_TYPE_TXT, &res);
	if (lookup_failed(&res)) {
		line_fail(run, "spf", domain, lookup_reason(&res, reason, sizeof reason), NULL,
		          NULL);
		dns_response_free(res.response);
		terms_free(&required);
		return;
	}
	const struct dns_record *txt[DNS_RECORDS_MAX], *spf[DNS_RECORDS_MAX];
	size_t ntxt = res.status == RESOLVER_OK ? txt_records(&res, txt, DNS_RECORDS_MAX) : 0;
	size_t n = 0;
	for (size_t i = 0; i < ntxt; i++)
		if (spf_is_record(txt[i]->rdata.txt.data, txt[i]->rdata.txt.len))
			spf[n++] = txt[i];
	struct buf suggestion = BUF_INIT;
	if (spf_suggest(run, spf, n, &required, &suggestion) == -1) {
		line_fail(run, "spf", domain, "out of memory", NULL, NULL);
	} else if (n == 0) {
		snprintf(reason, sizeof reason, "no SPF record%s",
		         res.status == RESOLVER_NXDOMAIN ? " (the domain does not exist)" : "");
		line_fail(run, "spf", domain, reason, domain, suggestion.data);
	} else if (n > 1) {
		snprintf(reason, sizeof reason,
		         "%zu SPF records: receivers then fail SPF with a permanent error "
		         "(RFC 7208 "
		         "4.5); merge them into one",
		         n);
		line_fail(run, "spf", domain, reason, domain, suggestion.data);
	} else {
		struct spf_terms have = {0};
		struct buf missing = BUF_INIT;
		int rc = terms_split(spf[0]->rdata.txt.data, spf[0]->rdata.txt.len, &have);
		for (size_t i = 0; i < required.n && rc == 0; i++)
			if (!terms_have(&have, required.t[i]))
				rc = buf_printf(&missing, "%s%s", missing.len ? " " : "",
				                required.t[i]);
		char txtbuf[SHOWN_TEXT_MAX];
		if (rc == -1) {
			line_fail(run, "spf", domain, "the record has too many terms", NULL, NULL);
		} else if (missing.len > 0) {
			snprintf(reason, sizeof reason,
			         "the record lacks %.300s, which spf_include requires (published: "
			         "\"%s\")",
			         missing.data,
			         shown(spf[0]->rdata.txt.data, spf[0]->rdata.txt.len, txtbuf,
			               sizeof txtbuf));
			line_fail(run, "spf", domain, reason, domain, suggestion.data);
		} else {
			snprintf(reason, sizeof reason, "%s%s",
			         required.n > 0 ? "one record, with every term of spf_include: "
			                        : "one record; spf_include is empty, so what it "
			                          "allows was not checked: ",
			         shown(spf[0]->rdata.txt.data, spf[0]->rdata.txt.len, txtbuf,
			               sizeof txtbuf));
			line_pass("spf", domain, reason);
		}
		terms_free(&have);
		buf_free(&missing);
	}
	buf_free(&suggestion);
	dns_response_free(res.response);
	terms_free(&required);
}

/* ---- dmarc ---- */

/* RFC 7489 6.6.3: a record starts with the v=DMARC1 tag (6.4: "v" *WSP "=" *WSP "DMARC1"); other
 * TXT records there are discarded. One that starts so but breaks the tag syntax after counts, so
 * that the check can say what is wrong with it. */
static bool dmarc_is_record(const char *txt, size_t len)
{
	struct tag tags[TAGS_MAX];
	size_t n;
	if (tags_parse(txt, len, tags, &n) != NULL)
		return len >= 8 && strncmp(txt, "v=DMARC1", 8) == 0;
	return n > 0 && tags[0].name_len == 1 && tags[0].name[0] == 'v' && tags[0].value_len == 6 &&
	       memcmp(tags[0].value, "DMARC1", 6) == 0;
}

static bool policy_ok(const struct tag *t)
{
	return value_is(t, "none") || value_is(t, "quarantine") || value_is(t, "reject");
}

/* The record's tags as text with one tag's value replaced (or added when absent). */
static int dmarc_rewrite(const struct tag *tags, size_t n, const char *name, const char *value,
                         struct buf *out)
{
	bool done = false;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		bool here = tags[i].name_len == strlen(name) &&
		            memcmp(tags[i].name, name, tags[i].name_len) == 0;
		rc = buf_printf(out, "%s%.*s=%.*s", i ? "; " : "", (int)tags[i].name_len,
		                tags[i].name, here ? (int)strlen(value) : (int)tags[i].value_len,
		                here ? value : tags[i].value);
		done = done || here;
	}
	if (rc == 0 && !done)
		rc = buf_printf(out, "; %s=%s", name, value);
	return rc;
}

/* Is d (the DKIM d=) relaxed-aligned with the From domain? Without the Public Suffix List, only
 * when one is the other or inside it (RFC 7489 3.1.1). */
static bool relaxed_aligned(const char *d, const char *from)
{
	size_t dl = strlen(d), fl = strlen(from);
	if (dl == fl)
		return strcasecmp(d, from) == 0;
	const char *longer = dl > fl ? d : from, *shorter = dl > fl ? from : d;
	size_t ll = dl > fl ? dl : fl, sl = dl > fl ? fl : dl;
	return longer[ll - sl - 1] == '.' && strcasecmp(longer + ll - sl, shorter) == 0 &&
	       strchr(shorter, '.') != NULL;
}

/* Finds the DMARC record: _dmarc.DOMAIN, then its parents' (as receivers do when the From domain
 * has none, RFC 7489 6.6.3). Fills *res (the response holding it), *rec, *at (the name where it was
 * found). Returns 0 found, 1 none, -1 lookup failed (reason printed). */
static int dmarc_find(struct check_run *run, struct resolver_result *res,
                      const struct dns_record **rec, size_t *count, char *at, size_t atlen)
{
	const char *name = run->domain;
	for (int step = 0; step <= DMARC_WALK_MAX && strchr(name, '.') != NULL; step++) {
		char reason[600];
		snprintf(at, atlen, "_dmarc.%s", name);
		resolver_sync_query(run->rs, at, DNS_TYPE_TXT, res);
		if (lookup_failed(res)) {
			line_fail(run, "dmarc", at, lookup_reason(res, reason, sizeof reason), NULL,
			          NULL);
			return -1;
		}
		const struct dns_record *txt[DNS_RECORDS_MAX];
		size_t n = res->status == RESOLVER_OK ? txt_records(res, txt, DNS_RECORDS_MAX) : 0;
		*count = 0;
		for (size_t i = 0; i < n; i++)
			if (dmarc_is_record(txt[i]->rdata.txt.data, txt[i]->rdata.txt.len)) {
				if (*count == 0)
					*rec = txt[i];
				(*count)++;
			}
		if (*count > 0)
			return 0;
		dns_response_free(res->response);
		res->response = NULL;
		name = strchr(name, '.') + 1;
	}
	return 1;
}

static void dmarc_check(struct check_run *run, const struct dkkeys_domain *d)
{
	const char *domain = run->domain;
	char own[DKKEYS_DOMAIN_MAX + 16], at[DKKEYS_DOMAIN_MAX + 16], reason[1500];
	char txtbuf[SHOWN_TEXT_MAX];
	snprintf(own, sizeof own, "_dmarc.%s", domain);
	struct resolver_result res;
	const struct dns_record *rec = NULL;
	size_t count = 0;
	int found = dmarc_find(run, &res, &rec, &count, at, sizeof at);
	if (found == -1) {
		dns_response_free(res.response);
		return;
	}
	if (found == 1) {
		line_fail(run, "dmarc", own,
		          "no record (receivers apply no DMARC policy, and Gmail and Yahoo "
		          "require one from bulk senders); p=none only asks for reports: move "
		          "to quarantine or reject once they show your mail passes",
		          own, "v=DMARC1; p=none; adkim=r; aspf=r");
		return;
	}
	bool inherited = strcmp(at, own) != 0;
	struct tag tags[TAGS_MAX];
	size_t n = 0;
	const char *bad = tags_parse(rec->rdata.txt.data, rec->rdata.txt.len, tags, &n);
	const char *published =
	    shown(rec->rdata.txt.data, rec->rdata.txt.len, txtbuf, sizeof txtbuf);
	const char *sign_d = signing_domain(run, d);
	struct buf fix = BUF_INIT;
	const struct tag *p = bad ? NULL : tag_find(tags, n, "p");
	const struct tag *sp = bad ? NULL : tag_find(tags, n, "sp");
	const struct tag *adkim = bad ? NULL : tag_find(tags, n, "adkim");
	bool strict = adkim != NULL && value_is(adkim, "s");
	if (count > 1) {
		snprintf(reason, sizeof reason,
		         "%zu DMARC records: receivers then apply none (RFC 7489 6.6.3); "
		         "keep one",
		         count);
		line_fail(run, "dmarc", at, reason, NULL, NULL);
	} else if (bad != NULL) {
		snprintf(reason, sizeof reason, "not a valid tag list: %s (published: \"%s\")", bad,
		         published);
		line_fail(run, "dmarc", at, reason, at, "v=DMARC1; p=none; adkim=r; aspf=r");
	} else if (p == NULL || !policy_ok(p) || (inherited && sp != NULL && !policy_ok(sp))) {
		const struct tag *wrong = (p != NULL && policy_ok(p)) ? sp : p;
		if (wrong == NULL)
			snprintf(reason, sizeof reason, "no p= tag (published: \"%s\")", published);
		else
			snprintf(
			    reason, sizeof reason,
			    "%.*s=%.*s is not none, quarantine or reject: receivers ignore the "
			    "record (published: \"%s\")",
			    (int)wrong->name_len, wrong->name, (int)wrong->value_len, wrong->value,
			    published);
		char wname[8];
		snprintf(wname, sizeof wname, "%.*s", wrong ? (int)wrong->name_len : 1,
		         wrong ? wrong->name : "p");
		if (dmarc_rewrite(tags, n, wname, "none", &fix) == 0)
			line_fail(run, "dmarc", at, reason, at, fix.data);
		else
			line_fail(run, "dmarc", at, reason, NULL, NULL);
	} else if (adkim != NULL && !value_is(adkim, "r") && !strict) {
		snprintf(reason, sizeof reason, "adkim=%.*s is not r or s (published: \"%s\")",
		         (int)adkim->value_len, adkim->value, published);
		if (dmarc_rewrite(tags, n, "adkim", "r", &fix) == 0)
			line_fail(run, "dmarc", at, reason, at, fix.data);
		else
			line_fail(run, "dmarc", at, reason, NULL, NULL);
	} else if (sign_d != NULL && strict && strcasecmp(sign_d, domain) != 0) {
		snprintf(reason, sizeof reason,
		         "adkim=s (strict alignment) needs the DKIM d= to be exactly %s, "
		         "but Postino "
		         "signs mail from %s with d=%s (%s has no active DKIM key), so "
		         "DKIM does not "
		         "align and DMARC fails unless SPF aligns; create keys for %s "
		         "(postinoctl "
		         "dkim keygen %s) or use adkim=r",
		         domain, domain, sign_d, domain, domain, domain);
		if (dmarc_rewrite(tags, n, "adkim", "r", &fix) == 0)
			line_fail(run, "dmarc", at, reason, at, fix.data);
		else
			line_fail(run, "dmarc", at, reason, NULL, NULL);
	} else if (sign_d != NULL && !strict && !relaxed_aligned(sign_d, domain)) {
		snprintf(reason, sizeof reason,
		         "Postino signs mail from %s with d=%s (%s has no active DKIM key), "
		         "which "
		         "does not align with %s even in relaxed mode (Postino cannot check the "
		         "Public Suffix List: it accepts only a domain inside the other); "
		         "create "
		         "keys for %s (postinoctl dkim keygen %s)",
		         domain, sign_d, domain, domain, domain, domain);
		line_fail(run, "dmarc", at, reason, NULL, NULL);
	} else {
		/* a parent's record rules a subdomain with sp= when it has one (RFC 7489 6.3) */
		const struct tag *rule = inherited && sp != NULL ? sp : p;
		char pol[80];
		snprintf(pol, sizeof pol, "%s=%.*s", rule == sp ? "sp" : "p", (int)rule->value_len,
		         rule->value);
		const char *parent = inherited ? "; the record of a parent domain applies" : "";
		if (sign_d == NULL)
			snprintf(reason, sizeof reason,
			         "%s; Postino refuses mail from %s while it has no DKIM key "
			         "(dkim_unknown_domain = refuse)%s",
			         pol, domain, parent);
		else
			snprintf(reason, sizeof reason,
			         "%s; adkim=%s: %s alignment, DKIM d=%s %s the From: domain %s%s",
			         pol, strict ? "s" : "r", strict ? "strict" : "relaxed", sign_d,
			         strcasecmp(sign_d, domain) == 0 ? "is exactly" : "aligns with",
			         domain, parent);
		line_pass("dmarc", at, reason);
	}
	buf_free(&fix);
	dns_response_free(res.response);
}

/* ---- the command ---- */

static int cmd_check(const struct config *cfg, int argc, char **argv)
{
	char domain[DKKEYS_DOMAIN_MAX + 1], err[512];
	if (argc != 1 || argv[0][0] == '-' ||
	    dkkeys_domain_normalize(argv[0], domain, sizeof domain) == -1 ||
	    strchr(domain, '.') == NULL) {
		if (argc == 1)
			fprintf(stderr, "postinoctl: not a domain name: %.300s\n", argv[0]);
		return 2;
	}
	struct dkkeys_domain *d = malloc(sizeof *d);
	if (d == NULL) {
		fprintf(stderr, "postinoctl: out of memory\n");
		return 1;
	}
	if (dkkeys_domain_read(cfg->data_dir, domain, d, err, sizeof err) == -1) {
		fprintf(stderr, "postinoctl: domain check %s: %s\n", domain, err);
		free(d);
		return 1;
	}
	struct resolver_sync *rs = resolver_sync_new(cfg->dns_resolver, cfg->dns_timeout_ms,
	                                             RESOLVER_ATTEMPTS_DEFAULT, err, sizeof err);
	if (rs == NULL) {
		fprintf(stderr, "postinoctl: DNS resolver %s: %s\n",
		        cfg->dns_resolver[0] ? cfg->dns_resolver : RESOLVER_RESOLV_CONF, err);
		free(d);
		return 1;
	}
	struct check_run run = {cfg, rs, domain, 0};
	dkim_check(&run, d);
	spf_check(&run);
	dmarc_check(&run, d);
	resolver_sync_free(rs);
	free(d);
	return run.failed > 0 ? 1 : 0;
}

int ctl_domain_main(const struct config *cfg, int argc, char **argv)
{
	int rc = 2;
	if (argc >= 1 && strcmp(argv[0], "check") == 0)
		rc = cmd_check(cfg, argc - 1, argv + 1);
	if (rc == 2) {
		fprintf(stderr, "usage: postinoctl -c FILE COMMAND\n");
		ctl_domain_usage(stderr);
	}
	fflush(stdout);
	return rc;
}
