/*
 * lib_tool.h: what the test tools (the programs in tests/tools/) share, linked into each of them
 * from tests/tools/lib_tool.c: bounded number parsing, a table-driven long-option parser, bounded
 * CRLF line reading from a libevent buffer, the TLS context every tool starts from, process
 * set-up (SIGPIPE, descriptor limit), signal events and clocks. Nothing here keeps state.
 */
#ifndef POSTINO_TESTS_LIB_TOOL_H
#define POSTINO_TESTS_LIB_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#define TOOL_LINE_MAX    4096 /* octets of one protocol line, without its CRLF */
#define TOOL_OPTIONS_MAX 48   /* entries of one option table */

/* Bounded decimal parse of a whole string (digits only, at most 19) within [min, max].
 * Returns 0 with *out set, or -1 and *out untouched. */
int tool_number_parse(const char *s, uint64_t min, uint64_t max, uint64_t *out);

enum tool_option_kind {
	TOOL_OPTION_FLAG,     /* no argument: *(bool *)target = flag */
	TOOL_OPTION_STRING,   /* *(const char **)target = the argument; its length within
	                       * [min, max] unless max is 0 */
	TOOL_OPTION_U64,      /* tool_number_parse within [min, max] into a uint64_t */
	TOOL_OPTION_UNSIGNED, /* the same into an unsigned */
	TOOL_OPTION_SIZE,     /* the same into a size_t */
	TOOL_OPTION_CALL,     /* call(target, argument, &why): 0, or -1 with why or bad */
};

/* One "--name" option. When the argument is refused, "PROG: WHY" is printed on stderr, WHY
 * being bad (or what call said) and the parse ends with -1. */
struct tool_option {
	const char *name;
	enum tool_option_kind kind;
	void *target; /* borrowed for the parse */
	uint64_t min, max;
	const char *bad;
	bool flag;
	int (*call)(void *target, const char *arg, const char **why);
};

/*
 * Parses argv with getopt_long against the table, in order, adding "--help" (usage, then
 * exit 0). Unknown options and positional arguments print usage and return -1; a refused
 * argument prints "PROG: what is wrong" and returns -1. Returns 0 when every option was
 * taken.
 */
int tool_options_parse(const char *prog, int argc, char **argv, const struct tool_option *table,
                       size_t n, void (*usage)(void));

enum tool_line_result {
	TOOL_LINE_NONE,     /* no complete line yet */
	TOOL_LINE_OK,       /* a line, without its CRLF */
	TOOL_LINE_TOO_LONG, /* no LF within TOOL_LINE_MAX + 2 octets */
	TOOL_LINE_BAD,      /* a bare LF, a NUL, or (cr_inside_bad) a CR before the CRLF;
	                     * the line is consumed */
};

/* Takes one CRLF-ended line out of in into line (TOOL_LINE_MAX + 1 octets, NUL-terminated),
 * looking for the LF only within the first TOOL_LINE_MAX + 2 octets. */
enum tool_line_result tool_line_take(struct evbuffer *in, char *line, size_t *len,
                                     bool cr_inside_bad);

/* A TLS context of method, TLS 1.2 at least. Prints "PROG: SSL_CTX_new: error" and returns
 * NULL when OpenSSL cannot make one. Caller frees with SSL_CTX_free. */
SSL_CTX *tool_tls_context_new(const char *prog, const SSL_METHOD *method);

/* Ignores SIGPIPE (writes to a closed peer return EPIPE) and raises the soft limit of open
 * descriptors to the hard one, best effort. */
void tool_process_setup(void);

/* Adds SIGINT and SIGTERM events that call cb(arg) on base; the events are returned to the
 * caller, who frees them (also after a failure). Returns 0 or -1. */
int tool_signals_add(struct event_base *base, event_callback_fn cb, void *arg,
                     struct event **sigint, struct event **sigterm);

int64_t tool_mono_ms(void);     /* CLOCK_MONOTONIC in milliseconds */
int64_t tool_unix_ms(void);     /* CLOCK_REALTIME in milliseconds */
double tool_mono_seconds(void); /* CLOCK_MONOTONIC in seconds, to the nanosecond */

#endif
