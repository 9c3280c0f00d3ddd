/*
 * ctl_dkim.c: postinoctl's DKIM key commands (see ctl_dkim.h). A thin layer over
 * dkim/dkkeys.h: argument checks, then one store operation, then the DNS records to publish.
 * Private keys never pass through here; they stay inside dkim/.
 *
 *   dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519|both] [--bits N]
 *   dkim import DOMAIN --selector S --key FILE
 *   dkim list
 *   dkim show DOMAIN
 *   dkim rotate DOMAIN
 *   dkim activate DOMAIN --selector S [--grace SECONDS]
 *   dkim del DOMAIN [--selector S]
 *
 * Records are printed in zone-file form with values cut into 255-octet strings (RFC 6376
 * 3.6.2.2). Exit codes: 0 done, 1 failed (reason on stderr), 2 usage.
 */
#include "relay/ctl_dkim.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim/dkkeys.h"
#include "dkim/dksign.h"
#include "relay/buf.h"

_Static_assert(CONFIG_DKIM_RSA == DKSIGN_ALG_RSA, "config and dksign algorithm bits differ");
_Static_assert(CONFIG_DKIM_ED25519 == DKSIGN_ALG_ED25519,
               "config and dksign algorithm bits differ");

/* How long a replaced key stays published after its successor is activated: the longest a
 * message signed with it may wait in the queue (5 days of retries) plus a week of x=. */

#define CTL_DKIM_GRACE_MAX (366 * 86400)

void ctl_dkim_usage(FILE *out)
{
	fprintf(
	    out,
	    "  dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519|both] [--bits N]\n"
	    "  dkim import DOMAIN --selector S --key FILE\n"
	    "  dkim list\n"
	    "  dkim show DOMAIN\n"
	    "  dkim rotate DOMAIN\n"
	    "  dkim activate DOMAIN --selector S [--grace SECONDS (default: dkim_retire_grace)]\n"
	    "  dkim del DOMAIN [--selector S]\n");
}

/* Options of a subcommand: "--name value" pairs, each known name at most once. */
struct opts {
	const char *selector, *algo, *bits, *key, *grace;
};

static int opts_parse(int argc, char **argv, const char *allowed, struct opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 0; i < argc; i += 2) {
		const char *name = argv[i];
		const char **slot = NULL;
		if (strcmp(name, "--selector") == 0)
			slot = &o->selector;
		else if (strcmp(name, "--algo") == 0)
			slot = &o->algo;
		else if (strcmp(name, "--bits") == 0)
			slot = &o->bits;
		else if (strcmp(name, "--key") == 0)
			slot = &o->key;
		else if (strcmp(name, "--grace") == 0)
			slot = &o->grace;
		if (slot == NULL || strstr(allowed, name) == NULL) {
			fprintf(stderr, "postinoctl: unknown option %s\n", name);
			return -1;
		}
		if (*slot != NULL) {
			fprintf(stderr, "postinoctl: %s given twice\n", name);
			return -1;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "postinoctl: %s needs a value\n", name);
			return -1;
		}
		*slot = argv[i + 1];
	}
	return 0;
}

static int number_parse(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	if (s[0] < '0' || s[0] > '9')
		return -1;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* The DOMAIN argument, lowercased and checked into out (DKKEYS_DOMAIN_MAX + 1 bytes). */
static int domain_arg(const char *in, char *out)
{
	if (in[0] == '-' || dkkeys_domain_normalize(in, out, DKKEYS_DOMAIN_MAX + 1) == -1 ||
	    strchr(out, '.') == NULL) {
		fprintf(stderr, "postinoctl: not a domain name: %.300s\n", in);
		return -1;
	}
	return 0;
}

static void date_format(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (t <= 0 || gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%d", &tm) == 0)
		snprintf(out, outlen, "-");
}

static const char *alg_label(const struct dkkeys_selector *s, char *buf, size_t len)
{
	if (s->algorithm == DKKEYS_ALG_RSA)
		snprintf(buf, len, "rsa %u", s->bits);
	else
		snprintf(buf, len, "%s", dkkeys_algorithm_name(s->algorithm));
	return buf;
}

/* Prints the records of s[0..n) for domain, with what to do about pending ones. */
static int records_print(const char *domain, const struct dkkeys_selector *s, size_t n)
{
	struct buf text = BUF_INIT;
	bool pending = false;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = dkkeys_record_format(domain, &s[i], &text);
		pending = pending || s[i].state == DKKEYS_STATE_PENDING;
	}
	if (rc == -1) {
		fprintf(stderr, "postinoctl: out of memory\n");
		buf_free(&text);
		return 1;
	}
	printf("Publish in DNS:\n%s", text.data != NULL ? text.data : "");
	if (pending)
		printf("Pending selectors sign once activated, after their record is visible in "
		       "DNS:\n  postinoctl dkim activate %s --selector SELECTOR\n",
		       domain);
	buf_free(&text);
	return 0;
}

static void created_print(const char *domain, const struct dkkeys_selector *s)
{
	char alg[32];
	printf("%s: selector %s created (%s, %s)\n", domain, s->name, alg_label(s, alg, sizeof alg),
	       dkkeys_state_name(s->state));
}

static int cmd_keygen(const char *data_dir, int argc, char **argv)
{
	struct opts o;
	char domain[DKKEYS_DOMAIN_MAX + 1];
	if (argc < 1 || domain_arg(argv[0], domain) == -1 ||
	    opts_parse(argc - 1, argv + 1, "--selector --algo --bits", &o) == -1)
		return 2;
	unsigned algs = DKSIGN_ALG_RSA | DKSIGN_ALG_ED25519;
	if (o.algo != NULL) {
		if (strcmp(o.algo, "rsa") == 0)
			algs = DKSIGN_ALG_RSA;
		else if (strcmp(o.algo, "ed25519") == 0)
			algs = DKSIGN_ALG_ED25519;
		else if (strcmp(o.algo, "both") != 0) {
			fprintf(stderr, "postinoctl: --algo takes rsa, ed25519 or both\n");
			return 2;
		}
	}
	unsigned long bits = DKKEYS_RSA_BITS_DEFAULT;
	if (o.bits != NULL) {
		if ((algs & DKSIGN_ALG_RSA) == 0) {
			fprintf(stderr, "postinoctl: --bits is for RSA keys\n");
			return 2;
		}
		if (number_parse(o.bits, DKKEYS_RSA_BITS_MIN, DKKEYS_RSA_BITS_MAX, &bits) == -1) {
			fprintf(stderr, "postinoctl: --bits takes %d to %d\n", DKKEYS_RSA_BITS_MIN,
			        DKKEYS_RSA_BITS_MAX);
			return 2;
		}
	}
	if (o.selector != NULL && algs == (DKSIGN_ALG_RSA | DKSIGN_ALG_ED25519)) {
		fprintf(stderr,
		        "postinoctl: each key needs its own selector: with --selector, give "
		        "--algo rsa or --algo ed25519 (and run keygen once for each)\n");
		return 2;
	}
	struct dkkeys_selector made[2];
	size_t n = 0;
	char err[512];
	static const enum dkkeys_algorithm order[2] = {DKKEYS_ALG_RSA, DKKEYS_ALG_ED25519};
	for (size_t i = 0; i < 2; i++) {
		if ((algs & (unsigned)order[i]) == 0)
			continue;
		if (dkkeys_key_generate(data_dir, domain, o.selector, order[i], (unsigned)bits,
		                        (int64_t)time(NULL), &made[n], err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: dkim keygen %s: %s\n", domain, err);
			if (n > 0)
				records_print(domain, made,
				              n); /* what was made before the failure */
			return 1;
		}
		created_print(domain, &made[n]);
		n++;
	}
	return records_print(domain, made, n);
}

static int cmd_import(const char *data_dir, int argc, char **argv)
{
	struct opts o;
	char domain[DKKEYS_DOMAIN_MAX + 1];
	if (argc < 1 || domain_arg(argv[0], domain) == -1 ||
	    opts_parse(argc - 1, argv + 1, "--selector --key", &o) == -1)
		return 2;
	if (o.selector == NULL || o.key == NULL) {
		fprintf(stderr, "postinoctl: dkim import needs --selector and --key\n");
		return 2;
	}
	struct dkkeys_selector made;
	char err[512];
	if (dkkeys_key_import(data_dir, domain, o.selector, o.key, (int64_t)time(NULL), &made, err,
	                      sizeof err) == -1) {
		fprintf(stderr, "postinoctl: dkim import %s: %s\n", domain, err);
		return 1;
	}
	created_print(domain, &made);
	return records_print(domain, &made, 1);
}

static int list_domain(const struct dkkeys_domain *d, void *arg, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	size_t *rows = arg;
	for (size_t i = 0; i < d->count; i++) {
		const struct dkkeys_selector *s = &d->sel[i];
		char alg[32], created[16], retires[16];
		if (*rows == 0)
			printf("%-30s %-20s %-12s %-9s %-10s %s\n", "DOMAIN", "SELECTOR",
			       "ALGORITHM", "STATE", "CREATED", "RETIRES");
		date_format(s->created, created, sizeof created);
		date_format(s->state == DKKEYS_STATE_RETIRING ? s->retire_at : 0, retires,
		            sizeof retires);
		printf("%-30s %-20s %-12s %-9s %-10s %s\n", d->name, s->name,
		       alg_label(s, alg, sizeof alg), dkkeys_state_name(s->state), created,
		       retires);
		(*rows)++;
	}
	return 0;
}

static int cmd_list(const char *data_dir, int argc)
{
	if (argc != 0)
		return 2;
	size_t rows = 0;
	char err[512];
	if (dkkeys_store_walk(data_dir, list_domain, &rows, err, sizeof err) == -1) {
		fprintf(stderr, "postinoctl: dkim list: %s\n", err);
		return 1;
	}
	if (rows == 0)
		printf("no DKIM keys (create some with: postinoctl dkim keygen DOMAIN)\n");
	return 0;
}

static struct dkkeys_domain *domain_get(const char *data_dir, const char *domain, const char *what)
{
	char err[512];
	struct dkkeys_domain *d = malloc(sizeof *d);
	if (d == NULL) {
		fprintf(stderr, "postinoctl: out of memory\n");
		return NULL;
	}
	if (dkkeys_domain_read(data_dir, domain, d, err, sizeof err) == -1) {
		fprintf(stderr, "postinoctl: dkim %s %s: %s\n", what, domain, err);
		free(d);
		return NULL;
	}
	if (d->count == 0) {
		fprintf(stderr, "postinoctl: dkim %s: no DKIM keys for %s\n", what, d->name);
		free(d);
		return NULL;
	}
	return d;
}

static int cmd_show(const char *data_dir, int argc, char **argv)
{
	char domain[DKKEYS_DOMAIN_MAX + 1];
	if (argc != 1 || domain_arg(argv[0], domain) == -1)
		return 2;
	struct dkkeys_domain *d = domain_get(data_dir, domain, "show");
	if (d == NULL)
		return 1;
	struct buf text = BUF_INIT;
	int rc = 0;
	for (size_t i = 0; i < d->count && rc == 0; i++) {
		const struct dkkeys_selector *s = &d->sel[i];
		char alg[32], created[16], retires[16];
		if (s->state == DKKEYS_STATE_RETIRED)
			continue; /* may be removed from DNS */
		date_format(s->created, created, sizeof created);
		date_format(s->retire_at, retires, sizeof retires);
		if (s->state == DKKEYS_STATE_RETIRING)
			rc = buf_printf(&text, "; %s %s: %s, retiring (keep published until %s)\n",
			                d->name, s->name, alg_label(s, alg, sizeof alg), retires);
		else
			rc = buf_printf(&text, "; %s %s: %s, %s, created %s\n", d->name, s->name,
			                alg_label(s, alg, sizeof alg), dkkeys_state_name(s->state),
			                created);
		if (rc == 0)
			rc = dkkeys_record_format(d->name, s, &text);
	}
	if (rc == -1)
		fprintf(stderr, "postinoctl: out of memory\n");
	else
		fputs(text.data != NULL ? text.data : "", stdout);
	for (size_t i = 0; i < d->count; i++)
		if (d->sel[i].state == DKKEYS_STATE_RETIRED)
			printf("; %s %s: retired, its record can be removed from DNS\n", d->name,
			       d->sel[i].name);
	buf_free(&text);
	free(d);
	return rc == -1 ? 1 : 0;
}

static int cmd_rotate(const char *data_dir, int argc, char **argv)
{
	char domain[DKKEYS_DOMAIN_MAX + 1];
	if (argc != 1 || domain_arg(argv[0], domain) == -1)
		return 2;
	struct dkkeys_selector made[2];
	size_t n;
	char err[512];
	if (dkkeys_domain_rotate(data_dir, domain, (int64_t)time(NULL), made, &n, err,
	                         sizeof err) == -1) {
		fprintf(stderr, "postinoctl: dkim rotate %s: %s\n", domain, err);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		created_print(domain, &made[i]);
	printf("The current keys keep signing until the new ones are activated.\n");
	return records_print(domain, made, n);
}

static int cmd_activate(const struct config *cfg, int argc, char **argv)
{
	struct opts o;
	char domain[DKKEYS_DOMAIN_MAX + 1];
	if (argc < 1 || domain_arg(argv[0], domain) == -1 ||
	    opts_parse(argc - 1, argv + 1, "--selector --grace", &o) == -1)
		return 2;
	if (o.selector == NULL) {
		fprintf(stderr, "postinoctl: dkim activate needs --selector\n");
		return 2;
	}
	const char *data_dir = cfg->data_dir;
	unsigned long grace = (unsigned long)cfg->dkim_retire_grace; /* as the DNS watcher does */
	if (o.grace != NULL && number_parse(o.grace, 0, CTL_DKIM_GRACE_MAX, &grace) == -1) {
		fprintf(stderr, "postinoctl: --grace takes 0 to %d seconds\n", CTL_DKIM_GRACE_MAX);
		return 2;
	}
	char err[512];
	int64_t now = (int64_t)time(NULL);
	size_t retired;
	if (dkkeys_selector_activate(data_dir, domain, o.selector, now, (int64_t)grace, err,
	                             sizeof err) == -1 ||
	    dkkeys_domain_retire_due(data_dir, domain, now, &retired, err, sizeof err) == -1) {
		fprintf(stderr, "postinoctl: dkim activate %s: %s\n", domain, err);
		return 1;
	}
	printf("%s: selector %s active; keys of its algorithm it replaces are retiring: keep "
	       "their records published for %lu more seconds\n",
	       domain, o.selector, grace);
	return 0;
}

static int cmd_del(const char *data_dir, int argc, char **argv)
{
	struct opts o;
	char domain[DKKEYS_DOMAIN_MAX + 1];
	if (argc < 1 || domain_arg(argv[0], domain) == -1 ||
	    opts_parse(argc - 1, argv + 1, "--selector", &o) == -1)
		return 2;
	struct dkkeys_domain *d = domain_get(data_dir, domain, "del");
	if (d == NULL)
		return 1;
	bool was_active = false;
	size_t n = 0;
	for (size_t i = 0; i < d->count; i++) {
		if (o.selector == NULL || strcmp(d->sel[i].name, o.selector) == 0) {
			n++;
			was_active = was_active || d->sel[i].state == DKKEYS_STATE_ACTIVE;
		}
	}
	char err[512];
	int rc = 0;
	if (dkkeys_selector_delete(data_dir, d->name, o.selector, err, sizeof err) == -1) {
		fprintf(stderr, "postinoctl: dkim del %s: %s\n", d->name, err);
		rc = 1;
	} else {
		printf("%s: %zu selector%s deleted%s\n", d->name, n, n == 1 ? "" : "s",
		       was_active ? " (an active one: mail from this domain is now signed by "
		                    "another key, or dkim_unknown_domain applies)"
		                  : "");
	}
	free(d);
	return rc;
}

int ctl_dkim_main(const struct config *cfg, int argc, char **argv)
{
	int rc = 2;
	if (argc >= 1) {
		const char *cmd = argv[0];
		int n = argc - 1;
		char **args = argv + 1;
		if (strcmp(cmd, "keygen") == 0)
			rc = cmd_keygen(cfg->data_dir, n, args);
		else if (strcmp(cmd, "import") == 0)
			rc = cmd_import(cfg->data_dir, n, args);
		else if (strcmp(cmd, "list") == 0)
			rc = cmd_list(cfg->data_dir, n);
		else if (strcmp(cmd, "show") == 0)
			rc = cmd_show(cfg->data_dir, n, args);
		else if (strcmp(cmd, "rotate") == 0)
			rc = cmd_rotate(cfg->data_dir, n, args);
		else if (strcmp(cmd, "activate") == 0)
			rc = cmd_activate(cfg, n, args);
		else if (strcmp(cmd, "del") == 0)
			rc = cmd_del(cfg->data_dir, n, args);
	}
	if (rc == 2) {
		fprintf(stderr, "usage: postinoctl -c FILE COMMAND\n");
		ctl_dkim_usage(stderr);
	}
	fflush(stdout);
	return rc;
}
