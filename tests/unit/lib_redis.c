/*
 * lib_redis.c: the shared fixture of the queue/ unit tests (contracts in lib_redis.h): a real
 * redis-server in a mkdtemp folder on a unix socket, started with the durable settings and
 * stopped by its pid, a blocking hiredis helper context on it, and bounded event-loop runs.
 * Owns g_redis and the helper context.
 */
#include "tests/unit/lib_redis.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct test_redis g_redis = {.pid = -1};

/* ---- clocks ---- */

uint64_t now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		abort();
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t wall_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		abort();
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* ---- the redis-server under test ---- */

redisContext *connect_sock(const char *sock, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	redisContext *ctx = redisConnectUnixWithTimeout(sock, tv);
	if (ctx == NULL)
		return NULL;
	if (ctx->err != 0 || redisSetTimeout(ctx, tv) != REDIS_OK) {
		redisFree(ctx);
		return NULL;
	}
	return ctx;
}

/* Waits, at most max_ms, for PONG (not LOADING) on sock. */
static int server_wait(const char *sock, pid_t pid, int max_ms)
{
	uint64_t end = now_ms() + (uint64_t)max_ms;
	while (now_ms() < end) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			return -1;
		redisContext *ctx = connect_sock(sock, 200);
		if (ctx != NULL) {
			redisReply *r = redisCommand(ctx, "PING");
			bool ok = r != NULL && r->type == REDIS_REPLY_STATUS &&
			          strcmp(r->str, "PONG") == 0;
			if (r != NULL)
				freeReplyObject(r);
			redisFree(ctx);
			if (ok)
				return 0;
		}
		sleep_ms(20);
	}
	return -1;
}

/* Starts redis-server in s->dir on s->sock, extra arguments (NULL-terminated) appended. */
int test_redis_start(struct test_redis *s, ...)
{
	const char *argv[40];
	char logfile[128];
	int argc = 0;
	if (snprintf(logfile, sizeof(logfile), "%s/redis.log", s->dir) >= (int)sizeof(logfile))
		return -1;
	argv[argc++] = "redis-server";
	argv[argc++] = "--port";
	argv[argc++] = "0";
	argv[argc++] = "--unixsocket";
	argv[argc++] = s->sock;
	argv[argc++] = "--unixsocketperm";
	argv[argc++] = "700";
	argv[argc++] = "--dir";
	argv[argc++] = s->dir;
	argv[argc++] = "--appendonly";
	argv[argc++] = "yes";
	argv[argc++] = "--appendfsync";
	argv[argc++] = "always";
	argv[argc++] = "--save";
	argv[argc++] = "";
	argv[argc++] = "--daemonize";
	argv[argc++] = "no";
	argv[argc++] = "--logfile";
	argv[argc++] = logfile;
	va_list ap;
	va_start(ap, s);
	const char *extra;
	while ((extra = va_arg(ap, const char *)) != NULL && argc < 38)
		argv[argc++] = extra;
	va_end(ap);
	argv[argc] = NULL;

	pid_t pid = fork();
	if (pid == -1)
		return -1;
	if (pid == 0) {
		/* Dies with the test, even when the test crashes. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
			_exit(126);
		execvp("redis-server", (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	s->pid = pid;
	if (server_wait(s->sock, pid, 10000) == -1) {
		fprintf(stderr, "redis-server did not answer PING within 10 s (log %s)\n", logfile);
		return -1;
	}
	return 0;
}

void test_redis_stop(struct test_redis *s)
{
	if (s->pid <= 0)
		return;
	(void)kill(s->pid, SIGCONT);
	(void)kill(s->pid, SIGTERM);
	uint64_t end = now_ms() + 5000;
	int status;
	while (waitpid(s->pid, &status, WNOHANG) == 0) {
		if (now_ms() > end) {
			(void)kill(s->pid, SIGKILL);
			(void)waitpid(s->pid, &status, 0);
			break;
		}
		sleep_ms(10);
	}
	s->pid = -1;
}

int test_redis_init(struct test_redis *s, const char *name)
{
	if (snprintf(s->dir, sizeof(s->dir), "/tmp/pst-%s-XXXXXX", name) >= (int)sizeof(s->dir))
		return -1;
	if (mkdtemp(s->dir) == NULL)
		return -1;
	if (snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir) >= (int)sizeof(s->sock) ||
	    snprintf(s->addr, sizeof(s->addr), "unix:%s", s->sock) >= (int)sizeof(s->addr))
		return -1;
	s->pid = -1;
	return 0;
}

/* Removes a folder made by test_redis_init, and nothing else. */
void test_redis_remove_dir(const char *dir)
{
	if (strncmp(dir, "/tmp/pst-", 9) != 0 || strstr(dir, "..") != NULL ||
	    strstr(dir, "XXXXXX") != NULL)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
		_exit(127);
	}
	if (pid > 0) {
		int status;
		(void)waitpid(pid, &status, 0);
	}
}

/* ---- a blocking helper context on the server under test ---- */

static redisContext *g_ctx;

redisContext *ctx_get(void)
{
	if (g_ctx != NULL && g_ctx->err != 0) {
		redisFree(g_ctx);
		g_ctx = NULL;
	}
	if (g_ctx == NULL)
		g_ctx = connect_sock(g_redis.sock, 2000);
	if (g_ctx == NULL)
		fail_msg("connect to the test redis: failed");
	return g_ctx;
}

void ctx_drop(void)
{
	if (g_ctx != NULL)
		redisFree(g_ctx);
	g_ctx = NULL;
}

/* r, or a test failure naming fmt and the context's error when r is NULL. */
static redisReply *reply_present(redisReply *r, const char *fmt)
{
	if (r == NULL)
		fail_msg("redis command %s: no reply (%s)", fmt, g_ctx->errstr);
	return r;
}

redisReply *rq(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(ctx_get(), fmt, ap);
	va_end(ap);
	return reply_present(r, fmt);
}

void rq_ok(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(ctx_get(), fmt, ap);
	va_end(ap);
	reply_present(r, fmt);
	if (r->type == REDIS_REPLY_ERROR) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", r->str);
		freeReplyObject(r);
		fail_msg("redis command %s: %s", fmt, msg);
	}
	freeReplyObject(r);
}

long long rq_int(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(ctx_get(), fmt, ap);
	va_end(ap);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		fail_msg("redis command %s: no integer reply", fmt);
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

const char *hget(const char *key, const char *field, char *buf, size_t len)
{
	redisReply *r = rq("HGET %s %s", key, field);
	snprintf(buf, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
	freeReplyObject(r);
	return buf;
}

long long hget_int(const char *key, const char *field)
{
	char buf[64];
	return strtoll(hget(key, field, buf, sizeof(buf)), NULL, 10);
}

/* The value of field in an HGETALL reply, or NULL. */
const char *hash_field(const redisReply *r, const char *field)
{
	for (size_t i = 0; i + 1 < r->elements; i += 2)
		if (strcmp(r->element[i]->str, field) == 0)
			return r->element[i + 1]->str;
	return NULL;
}

long long info_used_memory(void)
{
	redisReply *r = rq("INFO memory");
	const char *p = strstr(r->str, "used_memory:");
	if (p == NULL)
		fail_msg("INFO memory: no used_memory");
	long long v = strtoll(p + strlen("used_memory:"), NULL, 10);
	freeReplyObject(r);
	return v;
}

/* ---- event-loop helpers ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs base until cond(arg) holds or max_ms passes; returns whether cond holds. */
bool run_until(struct event_base *base, bool (*cond)(void *), void *arg, int max_ms)
{
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 10000};
	if (tick == NULL || event_add(tick, &tv) == -1)
		fail_msg("event_new/event_add: failed");
	uint64_t end = now_ms() + (uint64_t)max_ms;
	bool ok;
	while (!(ok = cond(arg)) && now_ms() < end)
		if (event_base_loop(base, EVLOOP_ONCE) == -1)
			break;
	event_free(tick);
	return ok;
}

static bool cond_never(void *arg)
{
	(void)arg;
	return false;
}

void run_for(struct event_base *base, int ms)
{
	run_until(base, cond_never, NULL, ms);
}

/* ---- group and per-test fixtures ---- */

int test_redis_group_start(const char *name)
{
	if (test_redis_init(&g_redis, name) == -1)
		return -1;
	if (test_redis_start(&g_redis, (const char *)NULL) == -1) {
		test_redis_stop(&g_redis);
		return -1;
	}
	return 0;
}

int test_redis_group_stop(void)
{
	ctx_drop();
	test_redis_stop(&g_redis);
	test_redis_remove_dir(g_redis.dir);
	return 0;
}

int test_redis_reset(const char *const *commands, size_t n)
{
	int status;
	if (g_redis.pid > 0 && waitpid(g_redis.pid, &status, WNOHANG) == g_redis.pid)
		g_redis.pid = -1;
	if (g_redis.pid > 0)
		(void)kill(g_redis.pid, SIGCONT);
	else if (test_redis_start(&g_redis, (const char *)NULL) == -1)
		return -1;
	ctx_drop();
	redisContext *ctx = connect_sock(g_redis.sock, 2000);
	if (ctx == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		redisReply *r = redisCommand(ctx, commands[i]);
		bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
		if (r != NULL)
			freeReplyObject(r);
		if (!ok) {
			redisFree(ctx);
			return -1;
		}
	}
	redisFree(ctx);
	return 0;
}
