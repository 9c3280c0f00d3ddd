/*
 * lib_redis.h: the fixture the unit tests of queue/ share (tests/unit/lib_redis.c, linked
 * into every unit test binary): a real redis-server started in a mkdtemp folder on a unix
 * socket with the durable settings (appendonly yes, appendfsync always) and stopped by its
 * pid, a blocking hiredis helper context on it, checks that print "name: got X, want Y",
 * and bounded event-loop runs. Every wait has a bound. Failures inside a test go through
 * cmocka's fail_msg, so the helpers that fail are only for use inside a running test.
 */
#ifndef POSTINO_TESTS_LIB_REDIS_H
#define POSTINO_TESTS_LIB_REDIS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include <setjmp.h>
#include <cmocka.h>

/* ---- checks that say what went wrong ---- */

#define CHECK_INT(name, got, want)                                                                 \
	do {                                                                                       \
		long long got_ = (long long)(got), want_ = (long long)(want);                      \
		if (got_ != want_)                                                                 \
			fail_msg("%s: got %lld, want %lld", (name), got_, want_);                  \
	} while (0)

#define CHECK_STR(name, got, want)                                                                 \
	do {                                                                                       \
		const char *got_ = (got), *want_ = (want);                                         \
		if (got_ == NULL || strcmp(got_, want_) != 0)                                      \
			fail_msg("%s: got \"%s\", want \"%s\"", (name),                            \
			         got_ != NULL ? got_ : "(null)", want_);                           \
	} while (0)

#define CHECK_TRUE(name, cond)                                                                     \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("%s: got false, want true (%s)", (name), #cond);                  \
	} while (0)

/* ---- clocks ---- */

/* Monotonic milliseconds (aborts if the clock fails: a broken test host). */
uint64_t now_ms(void);
/* Wall-clock milliseconds since the epoch. */
int64_t wall_ms(void);
/* Sleeps ms milliseconds, resuming after signals. */
void sleep_ms(int ms);

/* ---- the redis-server under test ---- */

struct test_redis {
	pid_t pid; /* -1 when not running */
	char dir[64];
	char sock[128];
	char addr[160]; /* "unix:<sock>", for struct queue_settings */
};

/* The server the helper context below talks to; set up by test_redis_group_start. */
extern struct test_redis g_redis;

/* Makes s->dir (/tmp/pst-<name>-XXXXXX) and names the socket in it. Returns 0 or -1. */
int test_redis_init(struct test_redis *s, const char *name);
/* Starts redis-server in s->dir on s->sock, extra arguments (NULL-terminated; past 19 ignored)
 * appended, and waits at most 10 s for PONG. Returns 0, or -1 (s->pid may then be set: call
 * test_redis_stop). The server is killed when the test process dies. */
int test_redis_start(struct test_redis *s, ...) __attribute__((sentinel));
/* Stops the server by its pid: SIGCONT, SIGTERM, then SIGKILL after 5 s. No-op when not
 * running. */
void test_redis_stop(struct test_redis *s);
/* Removes a folder made by test_redis_init, and nothing else. */
void test_redis_remove_dir(const char *dir);

/* For cmocka's group setup and teardown: starts g_redis in a new folder named after name,
 * and stops it, drops the helper context and removes the folder. Return 0 or -1. */
int test_redis_group_start(const char *name);
int test_redis_group_stop(void);
/* For a test's setup: reaps g_redis if it died, continues it if stopped (SIGSTOP), restarts
 * it if gone, then runs each of the n commands on a fresh connection. Returns 0, or -1 when
 * the server cannot be started or a command fails. */
int test_redis_reset(const char *const *commands, size_t n);

/* A blocking context on sock with ms as connect and command timeout; NULL on failure.
 * Caller frees with redisFree. */
redisContext *connect_sock(const char *sock, int ms);

/* ---- a blocking helper context on g_redis (fail_msg on failure) ---- */

/* The helper context, connected again when it has failed. Owned by this file. */
redisContext *ctx_get(void);
/* Closes the helper context (next ctx_get reconnects). */
void ctx_drop(void);
/* The reply to a command; caller frees with freeReplyObject. */
redisReply *rq(const char *fmt, ...);
/* Runs a command that must not answer an error. */
void rq_ok(const char *fmt, ...);
/* Runs a command that must answer an integer; returns it. */
long long rq_int(const char *fmt, ...);
/* HGET key field into buf, "" when missing; returns buf. */
const char *hget(const char *key, const char *field, char *buf, size_t len);
/* HGET key field as a decimal number, 0 when missing. */
long long hget_int(const char *key, const char *field);
/* The value of field in an HGETALL reply, or NULL; borrowed from r. */
const char *hash_field(const redisReply *r, const char *field);
/* used_memory from INFO memory. */
long long info_used_memory(void);

/* ---- event-loop helpers ---- */

/* Runs base until cond(arg) holds or max_ms passes; returns whether cond holds. */
bool run_until(struct event_base *base, bool (*cond)(void *), void *arg, int max_ms);
/* Runs base for ms milliseconds. */
void run_for(struct event_base *base, int ms);

#endif
