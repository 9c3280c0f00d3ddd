/*
 * dkimbench.c: how fast dkim/dksign.c signs whole messages, beside OpenSSL's own signing
 * rate measured in the same run (the DKIM issue's target: RSA-2048 message signing at no less
 * than 85 % of `openssl speed -multi CORES rsa2048`).
 *
 *   dkimbench [-t THREADS] [-s SECONDS] [-r ROUNDS] [-b BYTES] [-n] [-L]
 *
 * Makes a key store in a temporary folder (RSA-2048 and Ed25519 keys for bench.example),
 * builds one message of BYTES octets (default 5120: the usual headers and 76-column lines),
 * then for each of rsa, ed25519 and both runs THREADS threads (default: the cores online)
 * that sign it in a loop for SECONDS seconds (default 3) through dksign_message(), exactly as
 * the daemon's pool threads do, and prints the messages signed per second and the CPU time
 * each took (getrusage over the run). Then the same threads make bare signatures of a
 * SHA-256 hash with an RSA-2048 key of their own (EVP_PKEY_sign on one ready context per
 * thread, what openssl speed measures), and `openssl speed -seconds 3 -multi THREADS rsa2048
 * ed25519` runs (skipped with -n). All that ROUNDS times (default 3), interleaved, and each
 * figure's best round counts: on a shared machine other work only ever slows a run down, so
 * the best of a few interleaved rounds compares the two sides under similar conditions; CPU
 * time per message is less disturbed still. -L hashes bodies with libopendkim instead of
 * dksign's canonicalizer (dksign_options.body_by_libopendkim), to measure that choice.
 * Last line (one line):
 *
 *   dkimbench: rsa_msgs_per_s=N ed25519_msgs_per_s=N both_msgs_per_s=N
 *              openssl_rsa2048_sign_per_s=M ratio_rsa=R openssl_ed25519_sign_per_s=M
 *              ratio_ed25519=R evp_rsa2048_sign_per_s=M cpu_us_rsa=F cpu_us_ed25519=F
 *              cpu_us_both=F cpu_us_evp_rsa2048=F ratio_rsa_cpu=R
 *
 * ratio_rsa is rsa_msgs_per_s / openssl_rsa2048_sign_per_s (0 when openssl was skipped),
 * ratio_rsa_cpu is cpu_us_evp_rsa2048 / cpu_us_rsa. Exit status 0, or 1 when something
 * failed.
 * The temporary folder is removed at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "dkim/dkkeys.h"
#include "dkim/dksign.h"
#include "relay/buf.h"
#include "tests/tools/lib_tool.h"

#define BENCH_DOMAIN    "bench.example"
#define BENCH_BYTES_MAX (10 * 1024 * 1024)

struct worker {
	pthread_t thread;
	EVP_PKEY *baseline; /* set: sign hashes with it instead of messages with ctx */
	struct dksign_ctx *ctx;
	const struct dksign_options *opt;
	const char *msg;
	size_t len;
	atomic_bool *stop;
	unsigned long long done;
	bool failed;
	char err[256];
};

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* OpenSSL alone: RSASSA-PKCS1-v1_5 signatures of a SHA-256 hash with one context. */
static void baseline_main(struct worker *w)
{
	unsigned char hash[32] = {1, 2, 3}, sig[512];
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, w->baseline, NULL);
	if (pc == NULL || EVP_PKEY_sign_init(pc) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) != 1) {
		snprintf(w->err, sizeof w->err, "EVP_PKEY_sign_init failed");
		w->failed = true;
	}
	while (!w->failed && !atomic_load_explicit(w->stop, memory_order_relaxed)) {
		size_t len = sizeof sig;
		if (EVP_PKEY_sign(pc, sig, &len, hash, sizeof hash) != 1) {
			snprintf(w->err, sizeof w->err, "EVP_PKEY_sign failed");
			w->failed = true;
			break;
		}
		w->done++;
	}
	EVP_PKEY_CTX_free(pc);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	if (w->baseline != NULL) {
		baseline_main(w);
		return NULL;
	}
	struct buf out = BUF_INIT;
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		buf_reset(&out);
		enum dksign_result r = dksign_message(w->ctx, w->opt, BENCH_DOMAIN, w->msg, w->len,
		                                      &out, w->err, sizeof w->err);
		if (r != DKSIGN_OK) {
			w->failed = true;
			break;
		}
		w->done++;
	}
	buf_free(&out);
	return NULL;
}

/* Signs with opt (or with the baseline key when not NULL) on threads threads for seconds;
 * returns messages per second, or -1; *cpu_us gets the CPU time per message. */
static double bench_run(struct dksign_ctx *ctx, EVP_PKEY *baseline,
                        const struct dksign_options *opt, const char *msg, size_t len, int threads,
                        double seconds, double *cpu_us)
{
	struct worker *w = calloc((size_t)threads, sizeof *w);
	atomic_bool stop;
	atomic_init(&stop, false);
	if (w == NULL)
		return -1;
	double start = tool_mono_seconds(), cpu_start = cpu_seconds();
	int started = 0;
	for (; started < threads; started++) {
		w[started] = (struct worker){.baseline = baseline,
		                             .ctx = ctx,
		                             .opt = opt,
		                             .msg = msg,
		                             .len = len,
		                             .stop = &stop};
		if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0) {
			fprintf(stderr, "dkimbench: pthread_create failed\n");
			break;
		}
	}
	struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
	while (started == threads && nanosleep(&nap, &nap) == -1 && errno == EINTR)
		;
	atomic_store(&stop, true);
	unsigned long long total = 0;
	bool failed = started != threads;
	for (int i = 0; i < started; i++) {
		pthread_join(w[i].thread, NULL);
		total += w[i].done;
		if (w[i].failed) {
			fprintf(stderr, "dkimbench: signing failed: %s\n", w[i].err);
			failed = true;
		}
	}
	double elapsed = tool_mono_seconds() - start;
	*cpu_us = total > 0 ? (cpu_seconds() - cpu_start) / (double)total * 1e6 : 0;
	free(w);
	return failed ? -1 : (double)total / elapsed;
}

/* A message of exactly len octets (len >= 1024): headers, then 76-column body lines. */
static char *message_make(size_t len)
{
	static const char head[] = "From: Bench Sender <news@" BENCH_DOMAIN ">\r\n"
	                           "To: Someone <someone@example.net>\r\n"
	                           "Subject: Your weekly digest of things that happened\r\n"
	                           "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
	                           "Message-ID: <0123456789abcdef@" BENCH_DOMAIN ">\r\n"
	                           "MIME-Version: 1.0\r\n"
	                           "Content-Type: text/plain; charset=utf-8\r\n"
	                           "Content-Transfer-Encoding: 8bit\r\n"
	                           "List-Unsubscribe: <https://" BENCH_DOMAIN "/u/0123456789>\r\n"
	                           "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	                           "\r\n";
	static const char words[] = "lorem ipsum dolor sit amet consectetur adipiscing elit sed "
	                            "do eiusmod tempor incididunt ut labore et dolore magna ";
	char *m = malloc(len + 1);
	if (m == NULL)
		return NULL;
	size_t pos = sizeof head - 1, w = 0;
	memcpy(m, head, pos);
	while (pos < len) {
		size_t line = len - pos >= 78 ? 76 : len - pos - 2; /* text, then CRLF */
		for (size_t i = 0; i < line; i++, w++)
			m[pos + i] = words[w % (sizeof words - 1)];
		if (line > 0 && m[pos + line - 1] == ' ')
			m[pos + line - 1] = '.'; /* no trailing space */
		pos += line;
		m[pos++] = '\r';
		m[pos++] = '\n';
	}
	m[len] = '\0';
	return m;
}

/* Runs openssl speed and reads the sign/s of both algorithms from its table. */
static int openssl_speed(int threads, double *rsa, double *ed25519)
{
	char cmd[128], line[512];
	snprintf(cmd, sizeof cmd, "openssl speed -seconds 3 -multi %d rsa2048 ed25519 2>/dev/null",
	         threads);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	*rsa = *ed25519 = 0;
	while (fgets(line, sizeof line, p) != NULL) {
		double sign_s, verify_s, a, b;
		/* "rsa 2048 bits 0.000136s 0.000009s   7378.0 111935.0" */
		if (sscanf(line, "rsa 2048 bits %lfs %lfs %lf %lf", &a, &b, &sign_s, &verify_s) ==
		    4) {
			*rsa = sign_s;
			printf("    %s", line);
		}
		/* " 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  46748.0  15909.0" */
		if (sscanf(line, " 253 bits EdDSA (Ed25519) %lfs %lfs %lf %lf", &a, &b, &sign_s,
		           &verify_s) == 4) {
			*ed25519 = sign_s;
			printf("    %s", line);
		}
	}
	int status = pclose(p);
	return status == 0 && *rsa > 0 && *ed25519 > 0 ? 0 : -1;
}

static void store_remove(const char *dir)
{
	char cmd[256];
	/* the folder is our own mkdtemp() result: no quoting issue */
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "dkimbench: could not remove %s\n", dir);
}

static void usage(void)
{
	fprintf(stderr, "usage: dkimbench [-t THREADS] [-s SECONDS] [-r ROUNDS] [-b BYTES] [-n] "
	                "[-L]\n");
}

int main(int argc, char **argv)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = cores > 0 ? (int)cores : 1;
	double seconds = 3;
	size_t bytes = 5120;
	bool run_openssl = true, body_by_libopendkim = false;
	int rounds = 3;
	int c;
	while ((c = getopt(argc, argv, "t:s:r:b:nL")) != -1) {
		char *end;
		errno = 0;
		switch (c) {
		case 't':
			threads = (int)strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || threads < 1 || threads > 1024) {
				usage();
				return 1;
			}
			break;
		case 's':
			seconds = strtod(optarg, &end);
			if (errno != 0 || *end != '\0' || seconds < 0.1 || seconds > 3600) {
				usage();
				return 1;
			}
			break;
		case 'b':
			bytes = (size_t)strtoul(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || bytes < 1024 || bytes > BENCH_BYTES_MAX) {
				usage();
				return 1;
			}
			break;
		case 'r':
			rounds = (int)strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || rounds < 1 || rounds > 100) {
				usage();
				return 1;
			}
			break;
		case 'n':
			run_openssl = false;
			break;
		case 'L':
			body_by_libopendkim = true;
			break;
		default:
			usage();
			return 1;
		}
	}

	char dir[] = "/tmp/dkimbench-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("dkimbench: mkdtemp");
		return 1;
	}
	char err[512];
	int rc = 1;
	struct dksign_ctx *ctx = NULL;
	char *msg = message_make(bytes);
	/* the baseline's own key: OpenSSL's, never read from the store */
	EVP_PKEY *baseline = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (baseline == NULL) {
		fprintf(stderr, "dkimbench: EVP_PKEY_Q_keygen failed\n");
		goto done;
	}
	if (msg == NULL ||
	    dkkeys_key_generate(dir, BENCH_DOMAIN, "bench-r", DKKEYS_ALG_RSA, 2048, 1700000000,
	                        NULL, err, sizeof err) == -1 ||
	    dkkeys_key_generate(dir, BENCH_DOMAIN, "bench-e", DKKEYS_ALG_ED25519, 0, 1700000000,
	                        NULL, err, sizeof err) == -1 ||
	    (ctx = dksign_ctx_new(dir, err, sizeof err)) == NULL) {
		fprintf(stderr, "dkimbench: setup: %s\n", msg == NULL ? "out of memory" : err);
		goto done;
	}
	printf("dkimbench: %d threads, %.1f s per run, %d rounds, %zu-octet message, body hash "
	       "by %s\n",
	       threads, seconds, rounds, bytes, body_by_libopendkim ? "libopendkim" : "dksign");
	static const char *const names[3] = {"rsa", "ed25519", "both"};
	static const unsigned algs[3] = {DKSIGN_ALG_RSA, DKSIGN_ALG_ED25519,
	                                 DKSIGN_ALG_RSA | DKSIGN_ALG_ED25519};
	double rate[3] = {0, 0, 0}, cpu[3] = {0, 0, 0}, ossl_rsa = 0, ossl_ed = 0;
	double evp_rate = 0, evp_cpu = 0;
	for (int round = 1; round <= rounds; round++) {
		printf("round %d:\n", round);
		for (int i = 0; i < 4; i++) {
			struct dksign_options opt = {.algorithms = i < 3 ? algs[i] : 0,
			                             .now = (int64_t)time(NULL),
			                             .lifetime = 7 * 86400,
			                             .body_by_libopendkim = body_by_libopendkim};
			double c_us;
			double r = bench_run(ctx, i == 3 ? baseline : NULL, &opt, msg, bytes,
			                     threads, seconds, &c_us);
			if (r < 0)
				goto done;
			printf("  %-8s %10.1f %s/s  %7.1f us CPU each\n",
			       i < 3 ? names[i] : "evp rsa", r, i < 3 ? "msgs" : "sign", c_us);
			fflush(stdout);
			double *best_rate = i < 3 ? &rate[i] : &evp_rate;
			double *best_cpu = i < 3 ? &cpu[i] : &evp_cpu;
			if (r > *best_rate)
				*best_rate = r;
			if (*best_cpu == 0 || c_us < *best_cpu)
				*best_cpu = c_us;
		}
		if (run_openssl) {
			double o_rsa, o_ed;
			printf("  openssl speed -seconds 3 -multi %d rsa2048 ed25519:\n", threads);
			fflush(stdout);
			if (openssl_speed(threads, &o_rsa, &o_ed) == -1) {
				fprintf(stderr,
				        "dkimbench: openssl speed failed or printed no rates\n");
				goto done;
			}
			if (o_rsa > ossl_rsa)
				ossl_rsa = o_rsa;
			if (o_ed > ossl_ed)
				ossl_ed = o_ed;
		}
	}
	printf("best of %d: rsa %.1f, ed25519 %.1f, both %.1f msgs/s; in-process EVP rsa2048 %.1f "
	       "sign/s; openssl speed rsa2048 %.1f, ed25519 %.1f sign/s\n",
	       rounds, rate[0], rate[1], rate[2], evp_rate, ossl_rsa, ossl_ed);
	printf("dkimbench: rsa_msgs_per_s=%.0f ed25519_msgs_per_s=%.0f both_msgs_per_s=%.0f "
	       "openssl_rsa2048_sign_per_s=%.0f ratio_rsa=%.3f openssl_ed25519_sign_per_s=%.0f "
	       "ratio_ed25519=%.3f evp_rsa2048_sign_per_s=%.0f cpu_us_rsa=%.1f "
	       "cpu_us_ed25519=%.1f cpu_us_both=%.1f cpu_us_evp_rsa2048=%.1f ratio_rsa_cpu=%.3f\n",
	       rate[0], rate[1], rate[2], ossl_rsa, ossl_rsa > 0 ? rate[0] / ossl_rsa : 0, ossl_ed,
	       ossl_ed > 0 ? rate[1] / ossl_ed : 0, evp_rate, cpu[0], cpu[1], cpu[2], evp_cpu,
	       cpu[0] > 0 ? evp_cpu / cpu[0] : 0);
	rc = 0;
done:
	EVP_PKEY_free(baseline);
	dksign_ctx_free(ctx);
	free(msg);
	store_remove(dir);
	return rc;
}
