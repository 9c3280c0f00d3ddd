/*
 * lib_tool.c: the pieces the test tools share (see lib_tool.h). Owns nothing beyond a call:
 * every function works on what its caller passes.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/err.h>

#include "tests/tools/lib_tool.h"

#define TOOL_OPTION_FIRST 256 /* getopt_long value of table entry 0 */

int tool_number_parse(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (s == NULL || *s == '\0' || strlen(s) > 19)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Applies one option's argument. Returns NULL or what is wrong. */
static const char *option_take(const struct tool_option *o, const char *arg)
{
	uint64_t v;
	const char *why = NULL;
	switch (o->kind) {
	case TOOL_OPTION_FLAG:
		*(bool *)o->target = o->flag;
		return NULL;
	case TOOL_OPTION_STRING:
		*(const char **)o->target = arg;
		if (o->max > 0 && (strlen(arg) < o->min || strlen(arg) > o->max))
			return o->bad;
		return NULL;
	case TOOL_OPTION_U64:
	case TOOL_OPTION_UNSIGNED:
	case TOOL_OPTION_SIZE:
		if (tool_number_parse(arg, o->min, o->max, &v) == -1)
			return o->bad;
		if (o->kind == TOOL_OPTION_U64)
			*(uint64_t *)o->target = v;
		else if (o->kind == TOOL_OPTION_UNSIGNED)
			*(unsigned *)o->target = (unsigned)v;
		else
			*(size_t *)o->target = (size_t)v;
		return NULL;
	case TOOL_OPTION_CALL:
		if (o->call(o->target, arg, &why) == -1)
			return why != NULL ? why : o->bad;
		return NULL;
	}
	return o->bad;
}

int tool_options_parse(const char *prog, int argc, char **argv, const struct tool_option *table,
                       size_t n, void (*usage)(void))
{
	struct option longopts[TOOL_OPTIONS_MAX + 2];
	if (n > TOOL_OPTIONS_MAX) {
		fprintf(stderr, "%s: %zu options, at most %d\n", prog, n, TOOL_OPTIONS_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		longopts[i] = (struct option){table[i].name,
		                              table[i].kind == TOOL_OPTION_FLAG ? no_argument
		                                                                : required_argument,
		                              NULL, TOOL_OPTION_FIRST + (int)i};
	longopts[n] = (struct option){"help", no_argument, NULL, TOOL_OPTION_FIRST + (int)n};
	longopts[n + 1] = (struct option){NULL, 0, NULL, 0};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == TOOL_OPTION_FIRST + (int)n) {
			usage();
			exit(0);
		}
		if (c < TOOL_OPTION_FIRST || c > TOOL_OPTION_FIRST + (int)n) {
			usage();
			return -1;
		}
		const char *bad = option_take(&table[c - TOOL_OPTION_FIRST], optarg);
		if (bad != NULL) {
			fprintf(stderr, "%s: %s\n", prog, bad);
			return -1;
		}
	}
	if (optind != argc) {
		usage();
		return -1;
	}
	return 0;
}

enum tool_line_result tool_line_take(struct evbuffer *in, char *line, size_t *len,
                                     bool cr_inside_bad)
{
	size_t have = evbuffer_get_length(in);
	if (have == 0)
		return TOOL_LINE_NONE;
	size_t scan = have < TOOL_LINE_MAX + 2 ? have : TOOL_LINE_MAX + 2;
	struct evbuffer_ptr end;
	if (evbuffer_ptr_set(in, &end, scan, EVBUFFER_PTR_SET) == -1)
		return TOOL_LINE_TOO_LONG;
	struct evbuffer_ptr lf = evbuffer_search_range(in, "\n", 1, NULL, &end);
	if (lf.pos == -1)
		return have >= TOOL_LINE_MAX + 2 ? TOOL_LINE_TOO_LONG : TOOL_LINE_NONE;
	size_t total = (size_t)lf.pos + 1;
	char tmp[TOOL_LINE_MAX + 2];
	if (evbuffer_remove(in, tmp, total) != (int)total)
		return TOOL_LINE_BAD;
	if (total < 2 || tmp[total - 2] != '\r')
		return TOOL_LINE_BAD;
	size_t l = total - 2;
	if ((cr_inside_bad && memchr(tmp, '\r', l) != NULL) || memchr(tmp, '\0', l) != NULL)
		return TOOL_LINE_BAD;
	memcpy(line, tmp, l);
	line[l] = '\0';
	*len = l;
	return TOOL_LINE_OK;
}

SSL_CTX *tool_tls_context_new(const char *prog, const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (ctx == NULL) {
		char err[256];
		ERR_error_string_n(ERR_get_error(), err, sizeof err);
		fprintf(stderr, "%s: SSL_CTX_new: %s\n", prog, err);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	return ctx;
}

void tool_process_setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int tool_signals_add(struct event_base *base, event_callback_fn cb, void *arg,
                     struct event **sigint, struct event **sigterm)
{
	*sigint = evsignal_new(base, SIGINT, cb, arg);
	*sigterm = evsignal_new(base, SIGTERM, cb, arg);
	if (*sigint == NULL || *sigterm == NULL || event_add(*sigint, NULL) == -1 ||
	    event_add(*sigterm, NULL) == -1)
		return -1;
	return 0;
}

int64_t tool_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tool_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double tool_mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
