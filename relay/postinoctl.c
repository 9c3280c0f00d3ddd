/*
 * postinoctl.c: administration of a Postino installation through its Redis: users (with
 * their domains, allowed and only networks, passwords), and the queue.
 *
 *   postinoctl -c FILE user add NAME --domain D [--domain D ...] [--password P]
 *                               [--allow-net CIDR ...] [--only-net CIDR ...]
 *   postinoctl -c FILE user del NAME
 *   postinoctl -c FILE user list
 *   postinoctl -c FILE user passwd NAME [--password P]
 *   postinoctl -c FILE queue show [--limit N]
 *   postinoctl -c FILE queue cat ID
 *   postinoctl -c FILE queue retry|hold|release|delete ID | --domain D | --site S
 *   postinoctl -c FILE queue stats
 *   postinoctl -c FILE dkim ...         (relay/ctl_dkim.c: keys, selectors, DNS records)
 *   postinoctl -c FILE domain check D   (relay/ctl_domain.c: DKIM, SPF, DMARC in DNS)
 *   postinoctl -c FILE bounce parse [--json] FILE... | classify 'REPLY'  (relay/ctl_bounce.c)
 *   postinoctl -c FILE suppression add|del|list|import|export ...  (relay/ctl_suppress.c)
 *
 * Exit codes: 0 done, 1 failed (message on stderr), 2 usage or configuration error.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "queue/queue.h"
#include "relay/auth.h"
#include "relay/buf.h"
#include "relay/config.h"
#include "relay/ctl_bounce.h"
#include "relay/ctl_dkim.h"
#include "relay/ctl_domain.h"
#include "relay/ctl_suppress.h"

#define CTL_LIST_MAX             64
#define GENERATED_PASSWORD_CHARS 24

static void usage(void)
{
	fprintf(stderr, "usage: postinoctl -c FILE COMMAND\n"
	                "  user add NAME --domain D [--domain D ...] [--password P]\n"
	                "                [--allow-net CIDR ...] [--only-net CIDR ...]\n"
	                "  user del NAME\n"
	                "  user list\n"
	                "  user passwd NAME [--password P]\n"
	                "  queue show [--limit N]\n"
	                "  queue cat ID\n"
	                "  queue retry|hold|release|delete ID | --domain DOMAIN | --site SITE\n"
	                "  queue stats\n");
	ctl_dkim_usage(stderr);
	ctl_bounce_usage(stderr);
	ctl_domain_usage(stderr);
	ctl_suppress_usage(stderr);
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("._@+-", s[i]) == NULL)
			return false;
	return true;
}

/* A domain as users own it: LDH labels, lowercased here, at most 253 octets. */
static bool domain_normalize(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);
	if (n == 0 || n > 253 || n >= outlen || in[0] == '.' || in[n - 1] == '.')
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		char c = (char)tolower((unsigned char)in[i]);
		if (c == '.') {
			if (label == 0 || out[i - 1] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)c) || c == '-') {
			if ((label == 0 && c == '-') || ++label > 63)
				return false;
		} else {
			return false;
		}
		out[i] = c;
	}
	out[n] = '\0';
	return out[n - 1] != '-';
}

static int join_list(const char *const *items, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++)
		if ((i > 0 && buf_append(out, " ", 1) == -1) || buf_append_str(out, items[i]) == -1)
			return -1;
	if (out->data == NULL && buf_append(out, "", 0) == -1)
		return -1;
	return 0;
}

/* The Redis the daemon uses: the configured one or the embedded socket. */
static struct queue_admin *connect_redis(const struct config *cfg)
{
	char address[PATH_MAX + 8], sock[PATH_MAX], err[512];
	if (cfg->redis[0] != '\0') {
		snprintf(address, sizeof address, "%s", cfg->redis);
	} else {
		if (config_embedded_redis_path(cfg, sock, sizeof sock) == -1) {
			fprintf(stderr, "postinoctl: data_dir too long\n");
			return NULL;
		}
		snprintf(address, sizeof address, "unix:%s", sock);
	}
	struct queue_settings qs = {address, cfg->redis_password, 5000};
	struct queue_admin *a = queue_admin_connect(&qs, err, sizeof err);
	if (a == NULL)
		fprintf(stderr, "postinoctl: cannot connect to Redis at %s: %s%s\n", address, err,
		        cfg->redis[0] == '\0' ? " (is postino running?)" : "");
	return a;
}

static int get_password(const char *given, char *out, size_t outlen, bool *generated)
{
	*generated = given == NULL;
	if (given != NULL) {
		size_t n = strlen(given);
		if (n < 8 || n >= outlen) {
			fprintf(stderr, "postinoctl: the password must have 8 to %zu characters\n",
			        outlen - 1);
			return -1;
		}
		memcpy(out, given, n + 1);
		return 0;
	}
	if (auth_password_generate(out, GENERATED_PASSWORD_CHARS) == -1) {
		fprintf(stderr, "postinoctl: cannot generate a password\n");
		return -1;
	}
	return 0;
}

static int user_add_or_passwd(struct queue_admin *a, int argc, char **argv, bool add)
{
	if (argc < 1 || !name_ok(argv[0])) {
		fprintf(stderr, "postinoctl: user names are 1-64 letters, digits or ._@+-\n");
		return 2;
	}
	const char *name = argv[0];
	const char *password = NULL;
	const char *domains[CTL_LIST_MAX], *allow[CTL_LIST_MAX], *only[CTL_LIST_MAX];
	char dom_store[CTL_LIST_MAX][256];
	size_t nd = 0, na = 0, no = 0;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (i + 1 >= argc) {
			fprintf(stderr, "postinoctl: %s needs a value\n", opt);
			return 2;
		}
		const char *v = argv[++i];
		if (strcmp(opt, "--password") == 0) {
			password = v;
		} else if (add && strcmp(opt, "--domain") == 0 && nd < CTL_LIST_MAX) {
			if (!domain_normalize(v, dom_store[nd], sizeof dom_store[nd])) {
				fprintf(stderr, "postinoctl: not a domain name: %s\n", v);
				return 2;
			}
			domains[nd] = dom_store[nd];
			nd++;
		} else if (add &&
		           (strcmp(opt, "--allow-net") == 0 || strcmp(opt, "--only-net") == 0)) {
			if (auth_cidr_check(v) == -1) {
				fprintf(stderr, "postinoctl: not a network (ADDR/BITS): %s\n", v);
				return 2;
			}
			bool is_allow = opt[2] == 'a';
			if ((is_allow ? na : no) >= CTL_LIST_MAX) {
				fprintf(stderr, "postinoctl: too many networks\n");
				return 2;
			}
			if (is_allow)
				allow[na++] = v;
			else
				only[no++] = v;
		} else {
			fprintf(stderr, "postinoctl: unknown or repeated option %s\n", opt);
			return 2;
		}
	}
	if (add && nd == 0) {
		fprintf(stderr, "postinoctl: a user needs at least one --domain\n");
		return 2;
	}
	char pw[AUTH_PASSWORD_MAX + 1], hash[AUTH_HASH_MAX + 1], err[512];
	bool generated;
	if (get_password(password, pw, sizeof pw, &generated) == -1)
		return 2;
	if (auth_password_hash(pw, hash, sizeof hash) == -1) {
		fprintf(stderr, "postinoctl: cannot hash the password\n");
		OPENSSL_cleanse(pw, sizeof pw);
		return 1;
	}
	int rc;
	if (add) {
		struct buf d = BUF_INIT, al = BUF_INIT, on = BUF_INIT;
		if (join_list(domains, nd, &d) == -1 || join_list(allow, na, &al) == -1 ||
		    join_list(only, no, &on) == -1) {
			fprintf(stderr, "postinoctl: out of memory\n");
			rc = -1;
		} else {
			struct queue_user u = {name, hash, d.data, al.data, on.data};
			rc = queue_admin_user_put(a, &u, true, err, sizeof err);
		}
		buf_free(&d);
		buf_free(&al);
		buf_free(&on);
	} else {
		rc = queue_admin_user_passwd(a, name, hash, err, sizeof err);
	}
	if (rc == -1) {
		fprintf(stderr, "postinoctl: user %s: %s\n", name, err);
		OPENSSL_cleanse(pw, sizeof pw);
		return 1;
	}
	if (generated)
		printf("user %s %s; password: %s\n", name, add ? "added" : "updated", pw);
	else
		printf("user %s %s\n", name, add ? "added" : "updated");
	OPENSSL_cleanse(pw, sizeof pw);
	return 0;
}

static int cmd_user(struct queue_admin *a, int argc, char **argv)
{
	char err[512];
	if (argc < 1) {
		usage();
		return 2;
	}
	if (strcmp(argv[0], "add") == 0)
		return user_add_or_passwd(a, argc - 1, argv + 1, true);
	if (strcmp(argv[0], "passwd") == 0)
		return user_add_or_passwd(a, argc - 1, argv + 1, false);
	if (strcmp(argv[0], "del") == 0 && argc == 2) {
		if (queue_admin_user_del(a, argv[1], err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: user %s: %s\n", argv[1], err);
			return 1;
		}
		printf("user %s deleted\n", argv[1]);
		return 0;
	}
	if (strcmp(argv[0], "list") == 0 && argc == 1) {
		if (queue_admin_user_list(a, stdout, err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: %s\n", err);
			return 1;
		}
		return 0;
	}
	usage();
	return 2;
}

static int cmd_queue(struct queue_admin *a, int argc, char **argv)
{
	char err[512];
	if (argc >= 1 && strcmp(argv[0], "show") == 0) {
		size_t limit = 100;
		if (argc == 3 && strcmp(argv[1], "--limit") == 0) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(argv[2], &end, 10);
			if (errno != 0 || *end != '\0' || v == 0 || v > 1000000) {
				fprintf(stderr, "postinoctl: --limit takes 1..1000000\n");
				return 2;
			}
			limit = v;
		} else if (argc != 1) {
			usage();
			return 2;
		}
		if (queue_admin_show(a, stdout, limit, err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: %s\n", err);
			return 1;
		}
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "cat") == 0) {
		char *body;
		size_t len;
		if (queue_admin_body(a, argv[1], &body, &len, err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: %s: %s\n", argv[1], err);
			return 1;
		}
		fwrite(body, 1, len, stdout);
		free(body);
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "stats") == 0) {
		if (queue_admin_stats(a, stdout, err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: %s\n", err);
			return 1;
		}
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(struct queue_admin *, enum queue_select, const char *, uint64_t *, char *,
		          size_t);
		const char *counted;
	} actions[] = {
	    {"retry", queue_admin_retry, "entries due now"},
	    {"hold", queue_admin_hold, "held"},
	    {"release", queue_admin_release, "released"},
	    {"delete", queue_admin_delete, "recipients deleted"},
	};
	for (size_t k = 0; argc >= 2 && k < sizeof actions / sizeof actions[0]; k++) {
		if (strcmp(argv[0], actions[k].name) != 0)
			continue;
		enum queue_select by = QUEUE_SELECT_MESSAGE;
		const char *value = argv[1];
		if (argc == 3 && strcmp(argv[1], "--domain") == 0) {
			by = QUEUE_SELECT_DOMAIN;
			value = argv[2];
		} else if (argc == 3 && strcmp(argv[1], "--site") == 0) {
			by = QUEUE_SELECT_SITE;
			value = argv[2];
		} else if (argc != 2 || argv[1][0] == '-') {
			break;
		}
		char lower[256];
		if (by == QUEUE_SELECT_DOMAIN) { /* domains are stored lowercased */
			size_t n = 0;
			for (; value[n] != '\0' && n + 1 < sizeof lower; n++)
				lower[n] = (char)tolower((unsigned char)value[n]);
			lower[n] = '\0';
			value = lower;
		}
		uint64_t count = 0;
		if (actions[k].fn(a, by, value, &count, err, sizeof err) == -1) {
			fprintf(stderr, "postinoctl: %s: %s\n", value, err);
			return 1;
		}
		printf("%s: %llu %s\n", value, (unsigned long long)count, actions[k].counted);
		return 0;
	}
	usage();
	return 2;
}

int main(int argc, char **argv)
{
	const char *conf = NULL;
	int i = 1;
	if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
		conf = argv[2];
		i = 3;
	}
	if (conf == NULL || i >= argc) {
		usage();
		return 2;
	}
	struct config cfg;
	char err[1024];
	if (config_load(conf, &cfg, err, sizeof err) == -1) {
		fprintf(stderr, "postinoctl: %s\n", err);
		return 2;
	}
	/* DKIM keys live in files under data_dir: no Redis needed */
	if (strcmp(argv[i], "dkim") == 0)
		return ctl_dkim_main(&cfg, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "domain") == 0) /* DNS lookups and the key store: no Redis */
		return ctl_domain_main(&cfg, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "bounce") == 0) { /* files and the rules only: no Redis */
		int rc = ctl_bounce_main(cfg.bounce_rules, argc - i - 1, argv + i + 1);
		return rc == 1 ? 2 : rc == 2 ? 1 : rc; /* postinoctl's codes: 2 usage, 1 failed */
	}
	int (*cmd)(struct queue_admin *, int, char **) = NULL;
	if (strcmp(argv[i], "user") == 0)
		cmd = cmd_user;
	else if (strcmp(argv[i], "queue") == 0)
		cmd = cmd_queue;
	else if (strcmp(argv[i], "suppression") == 0)
		cmd = ctl_suppress_main;
	if (cmd == NULL || i + 1 >= argc) { /* a usage error never waits for Redis */
		usage();
		return 2;
	}
	struct queue_admin *a = connect_redis(&cfg);
	if (a == NULL)
		return 1;
	int rc = cmd(a, argc - i - 1, argv + i + 1);
	queue_admin_free(a);
	return rc;
}
