/*
 * test_smtpc.c: the SMTP client (relay/smtpc.c) against a real smtpsink process (tests/tools/
 * smtpsink.c) on a free loopback port, over a real libevent loop: several messages on one
 * connection, with and without PIPELINING, opportunistic STARTTLS (and the cleartext a server
 * injects after its 220), TLS required but not offered, per-recipient 4xx/5xx, refused DATA,
 * a stalled final reply (timeout: unknown outcome), a connection dropped after the final dot
 * (unknown outcome), dot-stuffing byte for byte, a 998-octet line, HELO fallback, SIZE, the
 * message limit per connection, idle QUIT, refused connections and invalid messages.
 *
 * The sink is build/tools/smtpsink (POSTINO_BUILD, else the build folder this test binary
 * sits in, else "build"); each test starts its own with --save and --verbose into a temporary
 * folder and stops it by pid. Every wait is bounded. POSTINO_TEST_VERBOSE=1 shows the
 * client's debug log, POSTINO_TEST_KEEP=1 keeps the sink's folder (log, saved messages),
 * POSTINO_TEST_FILTER=NAME runs only the tests matching NAME.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "relay/log.h"
#include "relay/smtpc.h"
#include "relay/tls.h"

#define WAIT_MS 20000 /* the longest any test may run its loop */

static char build_dir[4096] = "build";
static char sink_path[4200];
static char cert_dir[64];
static char cert_path[128], key_path[128];
static SSL_CTX *client_tls;

/* ---- the sink process ---- */

struct sink {
	pid_t pid;
	int out; /* its stdout */
	unsigned port;
	char dir[64];       /* temporary folder: save/, stats, sink.log */
	char save_dir[128]; /* dir/save */
	char final[512];    /* its last line: "smtpsink: messages=N ... sessions=N ..." */
};

/* Sinks running now: a failed assertion leaves the test early, the teardown stops them. */
static struct sink *live[4];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Reads a line from fd within ms; returns its length or -1. */
static ssize_t line_read(int fd, char *line, size_t size, int ms)
{
	size_t n = 0;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (n + 1 < size) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int left = ms - (int)((now.tv_sec - start.tv_sec) * 1000 +
		                      (now.tv_nsec - start.tv_nsec) / 1000000);
		struct pollfd p = {fd, POLLIN, 0};
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return -1;
		ssize_t r = read(fd, line + n, 1);
		if (r <= 0)
			return -1;
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	return (ssize_t)n;
}

/* Starts smtpsink with the given extra arguments (NULL-terminated). */
static void sink_start(struct sink *k, ...)
{
	memset(k, 0, sizeof *k);
	snprintf(k->dir, sizeof k->dir, "/tmp/test_smtpc.XXXXXX");
	assert_non_null(mkdtemp(k->dir));
	snprintf(k->save_dir, sizeof k->save_dir, "%s/save", k->dir);
	assert_int_equal(mkdir(k->save_dir, 0700), 0);
	char stats[128], logpath[128];
	snprintf(stats, sizeof stats, "%s/stats", k->dir);
	snprintf(logpath, sizeof logpath, "%s/sink.log", k->dir);
	const char *argv[40] = {sink_path, "--listen",  "127.0.0.1:0", "--hostname", "sink.test",
	                        "--save",  k->save_dir, "--stats",     stats,        "--verbose"};
	int argc = 10;
	va_list ap;
	va_start(ap, k);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && argc < 38)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	int pipefd[2];
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	k->pid = fork();
	assert_true(k->pid >= 0);
	if (k->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
		int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(pipefd[1], 1);
		if (logfd != -1)
			dup2(logfd, 2);
		execv(sink_path, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(pipefd[1]);
	k->out = pipefd[0];
	for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
		if (live[i] == NULL) {
			live[i] = k;
			break;
		}
	}
	char line[256];
	ssize_t n = line_read(k->out, line, sizeof line, 5000);
	const char *p = n > 0 ? strstr(line, "listening=127.0.0.1:") : NULL;
	if (p == NULL)
		fail_msg("smtpsink did not start (see %s/sink.log)", k->dir);
	k->port = (unsigned)strtoul(p + strlen("listening=127.0.0.1:"), NULL, 10);
	assert_true(k->port > 0 && k->port < 65536);
}

static void sink_stop(struct sink *k)
{
	for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
		if (live[i] == k)
			live[i] = NULL;
	if (k->pid > 0) {
		kill(k->pid, SIGTERM);
		int status = 0;
		for (int i = 0; i < 500; i++) { /* 5 s */
			if (waitpid(k->pid, &status, WNOHANG) == k->pid) {
				k->pid = 0;
				break;
			}
			usleep(10000);
		}
		if (k->pid > 0) {
			kill(k->pid, SIGKILL);
			waitpid(k->pid, &status, 0);
			k->pid = 0;
		}
	}
	if (k->out > 0) {
		if (line_read(k->out, k->final, sizeof k->final, 1000) < 0)
			k->final[0] = '\0';
		close(k->out);
	}
	if (getenv("POSTINO_TEST_KEEP") == NULL)
		nftw(k->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* The contents of a file under the sink's folder (malloc'd, NUL added), or NULL. */
static char *sink_file(const struct sink *k, const char *name, size_t *len)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", k->dir, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (n + 4096 + 1 > cap)
			b = realloc(b, cap *= 2);
		size_t r = fread(b + n, 1, 4096, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	b[n] = '\0';
	if (len)
		*len = n;
	return b;
}

static bool sink_log_has(const struct sink *k, const char *needle)
{
	char *log = sink_file(k, "sink.log", NULL);
	bool has = log != NULL && strstr(log, needle) != NULL;
	free(log);
	return has;
}

/* ---- driving the client ---- */

struct got_rcpt {
	enum smtpc_outcome outcome;
	int code;
	char enhanced[16];
	char text[256];
};

struct got {
	uint64_t ref;
	enum smtpc_scope scope;
	enum smtpc_failure failure;
	bool host_permanent;
	int code;
	char enhanced[16];
	char text[512];
	size_t n;
	struct got_rcpt r[8];
	size_t delivered, deferred, failed, unknown;
	uint64_t conn_id;
	unsigned number;
	char tls[96];
	char greeting[64];
	char remote_addr[64];
	bool reusable;
};

struct drive {
	struct event_base *base;
	struct smtpc *c;
	const struct smtpc_message *msgs;
	size_t nmsgs, next;
	struct got got[8];
	int results;
	int send_refused; /* smtpc_send() said -1 for a message of the list */
	int idle_events, closed_events;
	bool free_in_result;    /* smtpc_free() from inside the first result callback */
	struct smtpc_info info; /* at CLOSED; strings copied below */
	char info_text[512];
	char info_tls[96];
};

static void result_cb(const struct smtpc_result *r, uint64_t ref, void *arg);

static void send_next(struct drive *d)
{
	while (d->next < d->nmsgs) {
		size_t i = d->next++;
		if (smtpc_send(d->c, &d->msgs[i], NULL, 0, NULL) == 0)
			fail_msg("smtpc_send accepted a NULL callback");
		if (smtpc_send(d->c, &d->msgs[i], result_cb, i, d) == 0)
			return;
		d->send_refused++;
	}
	smtpc_quit(d->c);
}

static void result_cb(const struct smtpc_result *r, uint64_t ref, void *arg)
{
	struct drive *d = arg;
	assert_true(d->results < 8);
	struct got *g = &d->got[d->results++];
	g->ref = ref;
	g->scope = r->scope;
	g->failure = r->failure;
	g->host_permanent = r->host_permanent;
	g->code = r->reply.code;
	snprintf(g->enhanced, sizeof g->enhanced, "%s", r->reply.enhanced);
	snprintf(g->text, sizeof g->text, "%s", r->reply.text);
	g->n = r->nrcpts;
	for (size_t i = 0; i < r->nrcpts && i < 8; i++) {
		g->r[i].outcome = r->rcpts[i].outcome;
		g->r[i].code = r->rcpts[i].reply.code;
		snprintf(g->r[i].enhanced, sizeof g->r[i].enhanced, "%s",
		         r->rcpts[i].reply.enhanced);
		snprintf(g->r[i].text, sizeof g->r[i].text, "%s", r->rcpts[i].reply.text);
	}
	g->delivered = r->delivered;
	g->deferred = r->deferred;
	g->failed = r->failed;
	g->unknown = r->unknown;
	g->conn_id = r->conn_id;
	g->number = r->message_number;
	snprintf(g->tls, sizeof g->tls, "%s", r->tls);
	snprintf(g->greeting, sizeof g->greeting, "%s", r->greeting_name);
	snprintf(g->remote_addr, sizeof g->remote_addr, "%s", r->remote_addr);
	g->reusable = r->reusable;
	if (d->free_in_result) {
		smtpc_free(d->c); /* deferred by the client until this callback returns */
		d->c = NULL;
		event_base_loopbreak(d->base);
		return;
	}
	send_next(d); /* from inside the callback, as the scheduler will */
}

static void on_conn_event(enum smtpc_event ev, uint64_t ref, void *arg)
{
	struct drive *d = arg;
	assert_int_equal(ref, 77);
	if (ev == SMTPC_EVENT_IDLE) {
		d->idle_events++;
		if (d->next < d->nmsgs)
			send_next(d);
		return;
	}
	d->closed_events++;
	smtpc_info_get(d->c, &d->info);
	snprintf(d->info_text, sizeof d->info_text, "%s", d->info.reply.text);
	snprintf(d->info_tls, sizeof d->info_tls, "%s", d->info.tls);
	event_base_loopbreak(d->base);
}

static void params_default(struct smtpc_params *p, struct sockaddr_in *sin, unsigned port)
{
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	smtpc_params_init(p);
	p->remote = (const struct sockaddr *)sin;
	p->remote_len = sizeof *sin;
	p->remote_name = "sink.test";
	p->ehlo_name = "client.test";
	p->tls_ctx = client_tls;
	p->connect_timeout_ms = 3000;
	p->command_timeout_ms = 5000;
	p->data_timeout_ms = 5000;
	p->quit_timeout_ms = 1000;
	p->idle_timeout_ms = 200;
	p->on_event = on_conn_event;
	p->ref = 77;
}

/* Runs the client over the messages, one after another on one connection, until CLOSED (or
 * the free inside a callback). The first message is given before the connection is up. */
static void drive_run(struct drive *d, struct smtpc_params *p, const struct smtpc_message *msgs,
                      size_t n)
{
	d->base = event_base_new();
	assert_non_null(d->base);
	p->arg = d;
	d->msgs = msgs;
	d->nmsgs = n;
	d->c = smtpc_new(d->base, p);
	assert_non_null(d->c);
	if (n > 0)
		send_next(d);
	struct timeval limit = {WAIT_MS / 1000, 0};
	event_base_loopexit(d->base, &limit);
	event_base_dispatch(d->base);
	if (d->c != NULL && d->closed_events == 0 && !d->free_in_result)
		fail_msg("the loop ended before the connection closed (results=%d)", d->results);
	smtpc_free(d->c);
	d->c = NULL;
	/* run what the free left (libevent finalizers) */
	event_base_loop(d->base, EVLOOP_NONBLOCK);
	event_base_free(d->base);
}

static const char *const *rcpts_of(const char *a, const char *b, const char *c, const char *dd)
{
	static const char *list[4][5];
	static int next;
	const char **l = list[next++ % 4];
	l[0] = a;
	l[1] = b;
	l[2] = c;
	l[3] = dd;
	l[4] = NULL;
	return l;
}

static struct smtpc_message msg_make(const char *body, size_t n, const char *const *rcpts)
{
	struct smtpc_message m;
	memset(&m, 0, sizeof m);
	m.sender = "bounces@sender.test";
	m.rcpts = rcpts;
	while (rcpts[m.nrcpts] != NULL)
		m.nrcpts++;
	m.body = body;
	m.body_len = n;
	m.log_id = "test";
	return m;
}

#define BODY(s) s, sizeof(s) - 1

static void expect_outcome(const struct got *g, size_t i, enum smtpc_outcome want, int code,
                           const char *enhanced)
{
	if (g->r[i].outcome != want || g->r[i].code != code ||
	    strcmp(g->r[i].enhanced, enhanced) != 0)
		fail_msg("rcpt %zu: got %s %d %s \"%s\", want %s %d %s", i,
		         smtpc_outcome_name(g->r[i].outcome), g->r[i].code, g->r[i].enhanced,
		         g->r[i].text, smtpc_outcome_name(want), code, enhanced);
}

static void expect_scope(const struct got *g, enum smtpc_scope scope, enum smtpc_failure f)
{
	if (g->scope != scope || g->failure != f)
		fail_msg("scope got %s/%s (reply %d %s \"%s\"), want %s/%s",
		         smtpc_scope_name(g->scope), smtpc_failure_name(g->failure), g->code,
		         g->enhanced, g->text, smtpc_scope_name(scope), smtpc_failure_name(f));
}

/* The saved message number i (1-based) equals want (with CRLF added when want lacks it). */
static void expect_saved(const struct sink *k, unsigned i, const char *want, size_t wlen)
{
	char name[64];
	snprintf(name, sizeof name, "save/%06u.eml", i);
	size_t len = 0;
	char *got = sink_file(k, name, &len);
	if (got == NULL)
		fail_msg("%s: not saved by the sink", name);
	bool add_crlf = wlen > 0 && (wlen < 2 || memcmp(want + wlen - 2, "\r\n", 2) != 0);
	size_t want_len = wlen + (add_crlf ? 2 : 0);
	bool same = len == want_len && memcmp(got, want, wlen) == 0 &&
	            (!add_crlf || memcmp(got + wlen, "\r\n", 2) == 0);
	if (!same) {
		size_t at = 0;
		while (at < len && at < wlen && got[at] == want[at])
			at++;
		free(got);
		fail_msg("%s: got %zu octets, want %zu; first difference at %zu", name, len,
		         want_len, at);
	}
	free(got);
}

static bool saved_exists(const struct sink *k, unsigned i)
{
	char path[256];
	snprintf(path, sizeof path, "%s/save/%06u.eml", k->dir, i);
	return access(path, F_OK) == 0;
}

static int need_sink(void **state)
{
	(void)state;
	if (access(sink_path, X_OK) != 0) {
		print_message("skipped: %s not built (run make all first, or set "
		              "POSTINO_BUILD)\n",
		              sink_path);
		return -1;
	}
	return 0;
}

#define REQUIRE_SINK()                                                                             \
	do {                                                                                       \
		if (need_sink(state) != 0)                                                         \
			skip();                                                                    \
	} while (0)

/* ---- tests ---- */

static const char body1[] = "From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: one\r\n\r\n"
                            "Hello.\r\n";
static const char body2[] = "Subject: two\r\n\r\nSecond message.\r\n";
static const char body3[] = "Subject: three\r\n\r\nThird.\r\n";

/* Three messages on one connection, first given before the connection is up. */
static void several_messages(void **state, bool pipelining)
{
	REQUIRE_SINK();
	struct sink k;
	if (pipelining)
		sink_start(&k, (const char *)NULL);
	else
		sink_start(&k, "--no-pipelining", (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[3] = {
	    msg_make(BODY(body1), rcpts_of("one@rcpt.test", "two@rcpt.test", NULL, NULL)),
	    msg_make(BODY(body2), rcpts_of("three@rcpt.test", NULL, NULL, NULL)),
	    msg_make(BODY(body3),
	             rcpts_of("four@rcpt.test", "five@rcpt.test", "six@rcpt.test", NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 3);
	assert_int_equal(d.results, 3);
	for (int i = 0; i < 3; i++) {
		const struct got *g = &d.got[i];
		assert_int_equal(g->ref, (uint64_t)i);
		expect_scope(g, SMTPC_SCOPE_RECIPIENT, SMTPC_FAILURE_NONE);
		assert_int_equal(g->code, 250);
		assert_string_equal(g->enhanced, "2.0.0");
		assert_int_equal(g->delivered, m[i].nrcpts);
		for (size_t r = 0; r < m[i].nrcpts; r++)
			expect_outcome(g, r, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
		assert_int_equal(g->conn_id, d.got[0].conn_id);
		assert_int_equal(g->number, (unsigned)i + 1);
		assert_string_equal(g->tls, "");
		assert_string_equal(g->greeting, "sink.test");
		assert_true(g->reusable);
	}
	expect_saved(&k, 1, BODY(body1));
	expect_saved(&k, 2, BODY(body2));
	expect_saved(&k, 3, BODY(body3));
	char *env = sink_file(&k, "save/000003.env", NULL);
	assert_non_null(env);
	assert_string_equal(env, "MAIL FROM:<bounces@sender.test>\nRCPT TO:<four@rcpt.test>\n"
	                         "RCPT TO:<five@rcpt.test>\nRCPT TO:<six@rcpt.test>\n");
	free(env);
	assert_int_equal(d.closed_events, 1);
	assert_int_equal(d.info.failure, SMTPC_FAILURE_NONE);
	assert_true(d.info.established);
	assert_int_equal(d.info.messages, 3);
	assert_int_equal((d.info.ext & SMTP_EXT_PIPELINING) != 0, pipelining);
	sink_stop(&k);
	if (strstr(k.final, " messages=3 ") == NULL || strstr(k.final, " sessions=1 ") == NULL)
		fail_msg("sink tallies got \"%s\", want 3 messages over 1 session", k.final);
}

static void test_several_messages_pipelining(void **state)
{
	several_messages(state, true);
}

static void test_several_messages_no_pipelining(void **state)
{
	several_messages(state, false);
}

/* The sink's --no-pipelining check works: a client that pipelines anyway is refused. So the
 * test above would fail if smtpc pipelined without PIPELINING. */
static void test_sink_refuses_improper_pipelining(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--no-pipelining", (const char *)NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)k.port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	char line[512];
	assert_true(line_read(fd, line, sizeof line, 5000) > 0);
	static const char two[] = "EHLO x\r\nNOOP\r\n";
	assert_int_equal(write(fd, two, sizeof two - 1), (ssize_t)(sizeof two - 1));
	assert_true(line_read(fd, line, sizeof line, 5000) > 0);
	if (strncmp(line, "554 5.5.0", 9) != 0)
		fail_msg("got \"%s\", want 554 5.5.0", line);
	close(fd);
	sink_stop(&k);
}

static void starttls(void **state, bool garbage)
{
	REQUIRE_SINK();
	struct sink k;
	if (garbage)
		sink_start(&k, "--tls-cert", cert_path, "--tls-key", key_path, "--tls-garbage",
		           (const char *)NULL);
	else
		sink_start(&k, "--tls-cert", cert_path, "--tls-key", key_path, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[2] = {
	    msg_make(BODY(body1), rcpts_of("one@rcpt.test", NULL, NULL, NULL)),
	    msg_make(BODY(body2), rcpts_of("two@rcpt.test", NULL, NULL, NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 2);
	assert_int_equal(d.results, 2);
	for (int i = 0; i < 2; i++) {
		expect_scope(&d.got[i], SMTPC_SCOPE_RECIPIENT, SMTPC_FAILURE_NONE);
		expect_outcome(&d.got[i], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
		if (strncmp(d.got[i].tls, "TLSv1.", 6) != 0)
			fail_msg("tls got \"%s\", want TLSv1.x", d.got[i].tls);
	}
	expect_saved(&k, 1, BODY(body1));
	expect_saved(&k, 2, BODY(body2));
	assert_int_equal(d.info.failure, SMTPC_FAILURE_NONE);
	assert_string_equal(d.info_tls, d.got[0].tls);
	static const char injected[] = "250-PIPELINING\r\n250 injected in cleartext\r\n";
	assert_int_equal(d.info.discarded, garbage ? sizeof injected - 1 : 0);
	assert_true(sink_log_has(&k, "event=command text=\"STARTTLS\""));
	sink_stop(&k);
}

static void test_starttls_opportunistic(void **state)
{
	starttls(state, false);
}

static void test_starttls_injection_discarded(void **state)
{
	starttls(state, true);
}

static void tls_required_not_offered(void **state, bool have_cert)
{
	REQUIRE_SINK();
	struct sink k;
	if (have_cert)
		sink_start(&k, "--tls-cert", cert_path, "--tls-key", key_path, "--no-starttls",
		           (const char *)NULL);
	else
		sink_start(&k, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.tls_policy = SMTPC_TLS_REQUIRED;
	struct smtpc_message m[1] = {
	    msg_make(BODY(body1), rcpts_of("one@rcpt.test", "two@rcpt.test", NULL, NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	const struct got *g = &d.got[0];
	expect_scope(g, SMTPC_SCOPE_CONNECTION, SMTPC_FAILURE_TLS_UNAVAILABLE);
	assert_true(g->host_permanent);
	assert_int_equal(g->code, 0);
	assert_string_equal(g->enhanced, "4.7.4");
	expect_outcome(g, 0, SMTPC_OUTCOME_DEFERRED, 0, "4.7.4");
	expect_outcome(g, 1, SMTPC_OUTCOME_DEFERRED, 0, "4.7.4");
	assert_false(g->reusable);
	assert_int_equal(d.info.failure, SMTPC_FAILURE_TLS_UNAVAILABLE);
	assert_false(d.info.established);
	assert_false(sink_log_has(&k, "text=\"MAIL"));
	assert_true(sink_log_has(&k, "event=command text=\"QUIT\""));
	sink_stop(&k);
}

static void test_tls_required_no_certificate(void **state)
{
	tls_required_not_offered(state, false);
}

static void test_tls_required_not_advertised(void **state)
{
	tls_required_not_offered(state, true);
}

static void test_tls_required_offered(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--tls-cert", cert_path, "--tls-key", key_path, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.tls_policy = SMTPC_TLS_REQUIRED;
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	assert_true(strncmp(d.got[0].tls, "TLSv1.", 6) == 0);
	sink_stop(&k);
}

static void test_tls_policy_none(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--tls-cert", cert_path, "--tls-key", key_path, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.tls_policy = SMTPC_TLS_NONE;
	p.tls_ctx = NULL;
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	assert_string_equal(d.got[0].tls, "");
	assert_false(sink_log_has(&k, "text=\"STARTTLS\""));
	sink_stop(&k);
}

/* Per-recipient 4xx/5xx, a message nobody accepts (no DATA; the next one starts with RSET),
 * with and without pipelining. */
static void rcpt_mix(void **state, bool pipelining)
{
	REQUIRE_SINK();
	struct sink k;
	if (pipelining)
		sink_start(&k, "--rcpt-by-name", (const char *)NULL);
	else
		sink_start(&k, "--rcpt-by-name", "--no-pipelining", (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[3] = {
	    msg_make(BODY(body1),
	             rcpts_of("ok1@r.test", "defer1@r.test", "reject1@r.test", "ok2@r.test")),
	    msg_make(BODY(body2), rcpts_of("defer2@r.test", "Reject2@r.test", NULL, NULL)),
	    msg_make(BODY(body3), rcpts_of("ok3@r.test", NULL, NULL, NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 3);
	assert_int_equal(d.results, 3);
	const struct got *g = &d.got[0];
	expect_scope(g, SMTPC_SCOPE_RECIPIENT, SMTPC_FAILURE_NONE);
	expect_outcome(g, 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_outcome(g, 1, SMTPC_OUTCOME_DEFERRED, 450, "4.2.1");
	expect_outcome(g, 2, SMTPC_OUTCOME_FAILED, 550, "5.1.1");
	expect_outcome(g, 3, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	assert_string_equal(g->r[2].text, "No such user here");
	assert_int_equal(g->delivered, 2);
	assert_int_equal(g->deferred, 1);
	assert_int_equal(g->failed, 1);
	g = &d.got[1];
	expect_scope(g, SMTPC_SCOPE_RECIPIENT, SMTPC_FAILURE_NONE);
	assert_int_equal(g->code, 0); /* no DATA: no message-level reply */
	expect_outcome(g, 0, SMTPC_OUTCOME_DEFERRED, 450, "4.2.1");
	expect_outcome(g, 1, SMTPC_OUTCOME_FAILED, 550, "5.1.1");
	assert_true(g->reusable);
	g = &d.got[2];
	expect_outcome(g, 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	assert_int_equal(g->conn_id, d.got[0].conn_id);
	expect_saved(&k, 1, BODY(body1));
	expect_saved(&k, 2, BODY(body3)); /* the second was never sent */
	char *env = sink_file(&k, "save/000001.env", NULL);
	assert_string_equal(env, "MAIL FROM:<bounces@sender.test>\nRCPT TO:<ok1@r.test>\n"
	                         "RCPT TO:<ok2@r.test>\n");
	free(env);
	assert_true(sink_log_has(&k, "event=command text=\"RSET\""));
	if (!pipelining) /* DATA is not sent when every RCPT was refused */
		assert_false(sink_log_has(&k, "554 5.5.1 No valid recipients"));
	sink_stop(&k);
}

static void test_rcpt_mix_pipelining(void **state)
{
	rcpt_mix(state, true);
}

static void test_rcpt_mix_no_pipelining(void **state)
{
	rcpt_mix(state, false);
}

static void data_refused(void **state, const char *reply, enum smtpc_outcome want, int code,
                         const char *enhanced)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--reply-data", reply, "--rcpt-by-name", (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[2] = {
	    msg_make(BODY(body1), rcpts_of("a@r.test", "reject@r.test", "b@r.test", NULL)),
	    msg_make(BODY(body2), rcpts_of("c@r.test", NULL, NULL, NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 2);
	assert_int_equal(d.results, 2);
	const struct got *g = &d.got[0];
	expect_scope(g, SMTPC_SCOPE_MESSAGE, SMTPC_FAILURE_NONE);
	assert_int_equal(g->code, code);
	assert_string_equal(g->enhanced, enhanced);
	expect_outcome(g, 0, want, code, enhanced);
	expect_outcome(g, 1, SMTPC_OUTCOME_FAILED, 550, "5.1.1");
	expect_outcome(g, 2, want, code, enhanced);
	assert_true(g->reusable);
	expect_outcome(&d.got[1], 0, want, code, enhanced); /* the connection went on */
	assert_int_equal(d.got[1].number, 2);
	assert_false(saved_exists(&k, 1));
	sink_stop(&k);
}

static void test_data_rejected_5xx(void **state)
{
	data_refused(state, "554 5.7.1 Rejected for policy reasons", SMTPC_OUTCOME_FAILED, 554,
	             "5.7.1");
}

static void test_data_rejected_4xx(void **state)
{
	data_refused(state, "451 4.3.0 Try again later", SMTPC_OUTCOME_DEFERRED, 451, "4.3.0");
}

/* No reply to the final dot within data_timeout_ms: unknown, never delivered or failed. */
static void test_stall_after_dot_is_unknown(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--stall-data", "30", "--rcpt-by-name", (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.data_timeout_ms = 700;
	struct smtpc_message m[1] = {
	    msg_make(BODY(body1), rcpts_of("a@r.test", "reject@r.test", "defer@r.test", NULL)),
	};
	struct drive d = {0};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	drive_run(&d, &p, m, 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(d.results, 1);
	const struct got *g = &d.got[0];
	expect_scope(g, SMTPC_SCOPE_UNKNOWN, SMTPC_FAILURE_TIMEOUT);
	expect_outcome(g, 0, SMTPC_OUTCOME_UNKNOWN, 0, "4.4.2");
	expect_outcome(g, 1, SMTPC_OUTCOME_FAILED, 550, "5.1.1");
	expect_outcome(g, 2, SMTPC_OUTCOME_DEFERRED, 450, "4.2.1");
	assert_int_equal(g->unknown, 1);
	assert_int_equal(g->delivered, 0);
	assert_false(g->reusable);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	if (ms < 600 || ms > 5000)
		fail_msg("took %ld ms, want about the 700 ms data timeout", ms);
	assert_true(saved_exists(&k, 1)); /* the remote does have it */
	sink_stop(&k);
}

/* A server that never greets: the command timeout, a connection-level deferral. */
static void test_greeting_timeout(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--delay-ms", "5000", (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.command_timeout_ms = 300;
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	expect_scope(&d.got[0], SMTPC_SCOPE_CONNECTION, SMTPC_FAILURE_TIMEOUT);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DEFERRED, 0, "4.4.2");
	assert_int_equal(d.got[0].number, 0);
	assert_false(d.info.established);
	sink_stop(&k);
}

static void test_drop_after_dot_is_unknown(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--drop-after-dot", (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[1] = {
	    msg_make(BODY(body1), rcpts_of("a@r.test", "b@r.test", NULL, NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	const struct got *g = &d.got[0];
	expect_scope(g, SMTPC_SCOPE_UNKNOWN, SMTPC_FAILURE_LOST);
	expect_outcome(g, 0, SMTPC_OUTCOME_UNKNOWN, 0, "4.4.2");
	expect_outcome(g, 1, SMTPC_OUTCOME_UNKNOWN, 0, "4.4.2");
	assert_int_equal(g->unknown, 2);
	expect_saved(&k, 1, BODY(body1));
	assert_int_equal(d.info.failure, SMTPC_FAILURE_LOST);
	sink_stop(&k);
}

/* Bodies whose bytes must arrive exactly: lines that start with dots, a line holding only a
 * dot, a body that starts with a dot, no final CRLF, empty, a long body, 998-octet lines. */
static void dot_stuffing_exact(void **state, bool tls)
{
	REQUIRE_SINK();
	struct sink k;
	if (tls)
		sink_start(&k, "--tls-cert", cert_path, "--tls-key", key_path, (const char *)NULL);
	else
		sink_start(&k, (const char *)NULL);
	static const char b1[] = ".starts with a dot\r\n..two dots\r\n.\r\n...\r\nx.\r\n. \r\n";
	static const char b2[] = "Subject: s\r\n\r\nline\r\n.\r\nafter the lone dot\r\n.";
	static const char b3[] = "Subject: no final CRLF";
	static const char b4[] = "";
	static const char b5[] = "\r\n.\r\n";
	/* 1 MiB: 65536 lines of 14 octets + CRLF, every other one starting with a dot */
	size_t big_len = 65536 * 16;
	char *big = malloc(big_len);
	for (size_t i = 0; i < 65536; i++)
		memcpy(big + i * 16, i % 2 ? ".dot line 0001\r\n" : "plain line 001\r\n", 16);
	/* lines of exactly 998 octets (RFC 5322 2.1.1), one of them dot-stuffed to 999 on
	 * the wire */
	char *l998 = malloc(3 * 1000);
	memset(l998, 'x', 3 * 1000);
	for (int i = 0; i < 3; i++)
		memcpy(l998 + i * 1000 + 998, "\r\n", 2);
	l998[1000] = '.';
	struct smtpc_message m[7] = {
	    msg_make(BODY(b1), rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(b2), rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(b3), rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(b4), rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(b5), rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(big, big_len, rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(l998, 3000, rcpts_of("a@r.test", NULL, NULL, NULL)),
	};
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct drive d = {0};
	drive_run(&d, &p, m, 7);
	assert_int_equal(d.results, 7);
	assert_int_equal(strncmp(d.got[0].tls, "TLSv1.", 6) == 0, tls);
	for (int i = 0; i < 7; i++)
		if (d.got[i].delivered != 1)
			fail_msg("message %d: got %s %d %s \"%s\", want delivered", i + 1,
			         smtpc_outcome_name(d.got[i].r[0].outcome), d.got[i].code,
			         d.got[i].enhanced, d.got[i].text);
	expect_saved(&k, 1, BODY(b1));
	expect_saved(&k, 2, BODY(b2));
	expect_saved(&k, 3, BODY(b3));
	expect_saved(&k, 4, BODY(b4));
	expect_saved(&k, 5, BODY(b5));
	expect_saved(&k, 6, big, big_len);
	expect_saved(&k, 7, l998, 3000);
	free(big);
	free(l998);
	sink_stop(&k);
}

static void test_dot_stuffing_exact(void **state)
{
	dot_stuffing_exact(state, false);
}

static void test_dot_stuffing_exact_tls(void **state)
{
	dot_stuffing_exact(state, true);
}

/* The sink refuses a 999-octet line: the 998 case above is a real boundary. */
static void test_line_of_999_refused_by_sink(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, (const char *)NULL);
	char body[1001];
	memset(body, 'y', 999);
	memcpy(body + 999, "\r\n", 2);
	struct smtpc_message m[1] = {msg_make(body, 1001, rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	expect_scope(&d.got[0], SMTPC_SCOPE_MESSAGE, SMTPC_FAILURE_NONE);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_FAILED, 550, "5.6.0");
	sink_stop(&k);
}

static void test_helo_fallback(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--no-ehlo", "--tls-cert", cert_path, "--tls-key", key_path,
	           (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[2] = {
	    msg_make(BODY(body1), rcpts_of("a@r.test", "b@r.test", NULL, NULL)),
	    msg_make(BODY(body2), rcpts_of("c@r.test", NULL, NULL, NULL)),
	};
	struct drive d = {0};
	drive_run(&d, &p, m, 2);
	assert_int_equal(d.results, 2);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_outcome(&d.got[0], 1, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_outcome(&d.got[1], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	assert_string_equal(d.got[0].tls, ""); /* no EHLO, no STARTTLS */
	assert_int_equal(d.info.ext, 0);
	assert_true(sink_log_has(&k, "event=command text=\"HELO client.test\""));
	expect_saved(&k, 2, BODY(body2));
	sink_stop(&k);
}

/* SIZE: a message over the server's limit is refused by the client (5.3.4), nothing sent;
 * the connection goes on with the next one. */
static void test_size_limit(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, "--max-size", "1024", (const char *)NULL);
	char big[2000];
	memset(big, 'z', sizeof big);
	memcpy(big + sizeof big - 2, "\r\n", 2);
	struct smtpc_message m[2] = {
	    msg_make(big, sizeof big, rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(body2), rcpts_of("b@r.test", NULL, NULL, NULL)),
	};
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct drive d = {0};
	drive_run(&d, &p, m, 2);
	assert_int_equal(d.results, 2);
	expect_scope(&d.got[0], SMTPC_SCOPE_MESSAGE, SMTPC_FAILURE_NONE);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_FAILED, 0, "5.3.4");
	assert_int_equal(d.got[0].number, 0);
	expect_outcome(&d.got[1], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	assert_int_equal(d.got[1].number, 1);
	assert_false(sink_log_has(&k, "MAIL FROM:<bounces@sender.test> SIZE=2000"));
	char want[80];
	snprintf(want, sizeof want, "MAIL FROM:<bounces@sender.test> SIZE=%zu", sizeof body2 - 1);
	assert_true(sink_log_has(&k, want));
	sink_stop(&k);
}

static void test_max_messages(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, (const char *)NULL);
	struct smtpc_message m[3] = {
	    msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(body2), rcpts_of("b@r.test", NULL, NULL, NULL)),
	    msg_make(BODY(body3), rcpts_of("c@r.test", NULL, NULL, NULL)),
	};
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.max_messages = 2;
	struct drive d = {0};
	drive_run(&d, &p, m, 3);
	assert_int_equal(d.results, 2);
	assert_true(d.got[0].reusable);
	assert_false(d.got[1].reusable);
	assert_int_equal(d.send_refused, 1);
	assert_int_equal(d.closed_events, 1);
	assert_int_equal(d.info.failure, SMTPC_FAILURE_NONE);
	assert_int_equal(d.info.messages, 2);
	assert_true(sink_log_has(&k, "event=command text=\"QUIT\""));
	sink_stop(&k);
}

static void test_idle_then_quit(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	p.idle_timeout_ms = 100;
	struct drive d = {0};
	drive_run(&d, &p, NULL, 0);
	assert_int_equal(d.results, 0);
	assert_int_equal(d.idle_events, 1);
	assert_int_equal(d.closed_events, 1);
	assert_true(d.info.established);
	assert_int_equal(d.info.failure, SMTPC_FAILURE_NONE);
	assert_true(sink_log_has(&k, "event=command text=\"QUIT\""));
	sink_stop(&k);
}

/* A message given in the IDLE callback (not before the connection was up). */
static void test_send_from_idle(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	d.base = event_base_new();
	p.arg = &d;
	d.msgs = m;
	d.nmsgs = 1;
	d.c = smtpc_new(d.base, &p);
	assert_non_null(d.c);
	struct timeval limit = {WAIT_MS / 1000, 0};
	event_base_loopexit(d.base, &limit);
	event_base_dispatch(d.base);
	smtpc_free(d.c);
	event_base_free(d.base);
	assert_int_equal(d.idle_events, 1);
	assert_int_equal(d.results, 1);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DELIVERED, 250, "2.0.0");
	sink_stop(&k);
}

static void test_connect_refused(void **state)
{
	/* a port nobody listens on: bind one, note it, close it */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof sin;
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	unsigned port = ntohs(sin.sin_port);
	close(fd);
	struct smtpc_params p;
	params_default(&p, &sin, port);
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	expect_scope(&d.got[0], SMTPC_SCOPE_CONNECTION, SMTPC_FAILURE_CONNECT);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DEFERRED, 0, "4.4.1");
	if (strstr(d.got[0].text, "refused") == NULL)
		fail_msg("text got \"%s\", want connection refused", d.got[0].text);
	assert_int_equal(d.closed_events, 1);
	assert_false(d.info.established);
	assert_int_equal(d.info.failure, SMTPC_FAILURE_CONNECT);
}

/* The source address seam: the server sees the connection come from the address asked for;
 * an address that is not ours fails as a connection failure. */
static void test_source_address(void **state)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in lsin = {.sin_family = AF_INET};
	lsin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof lsin;
	assert_int_equal(bind(lfd, (struct sockaddr *)&lsin, sizeof lsin), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&lsin, &sl), 0);
	struct sockaddr_in sin, src = {.sin_family = AF_INET};
	src.sin_addr.s_addr = htonl(0x7f000002); /* 127.0.0.2 */
	struct smtpc_params p;
	params_default(&p, &sin, ntohs(lsin.sin_port));
	p.source = (const struct sockaddr *)&src;
	p.source_len = sizeof src;
	p.on_event = NULL;
	struct event_base *base = event_base_new();
	struct smtpc *c = smtpc_new(base, &p);
	assert_non_null(c);
	struct sockaddr_in peer;
	socklen_t pl = sizeof peer;
	int afd = -1;
	for (int i = 0; i < 200 && afd == -1; i++) { /* 2 s */
		event_base_loop(base, EVLOOP_NONBLOCK);
		afd = accept(lfd, (struct sockaddr *)&peer, &pl);
		if (afd == -1)
			usleep(10000);
	}
	assert_true(afd != -1);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
	assert_string_equal(ip, "127.0.0.2");
	close(afd);
	smtpc_free(c);
	close(lfd);

	/* not an address of this machine: bind fails, reported as a connect failure */
	src.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1, TEST-NET-1 */
	params_default(&p, &sin, ntohs(lsin.sin_port));
	p.source = (const struct sockaddr *)&src;
	p.source_len = sizeof src;
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	expect_scope(&d.got[0], SMTPC_SCOPE_CONNECTION, SMTPC_FAILURE_CONNECT);
	if (strstr(d.got[0].text, "bind to source 192.0.2.1") == NULL)
		fail_msg("text got \"%s\", want the bind failure", d.got[0].text);
	event_base_free(base);
}

/* smtpc_quit() while the message waits for the connection: ABORTED, exactly one result. */
static void test_quit_before_ready(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m = msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL));
	struct drive d = {0};
	d.base = event_base_new();
	p.arg = &d;
	d.c = smtpc_new(d.base, &p);
	assert_int_equal(smtpc_send(d.c, &m, result_cb, 5, &d), 0);
	smtpc_quit(d.c);
	assert_int_equal(d.results, 0); /* never inside the call */
	struct timeval limit = {WAIT_MS / 1000, 0};
	event_base_loopexit(d.base, &limit);
	event_base_dispatch(d.base);
	assert_int_equal(d.results, 1);
	assert_int_equal(d.got[0].ref, 5);
	expect_scope(&d.got[0], SMTPC_SCOPE_CONNECTION, SMTPC_FAILURE_ABORTED);
	expect_outcome(&d.got[0], 0, SMTPC_OUTCOME_DEFERRED, 0, "4.3.0");
	assert_int_equal(d.closed_events, 1);
	smtpc_free(d.c);
	event_base_free(d.base);
	sink_stop(&k);
}

static void test_free_inside_result_callback(void **state)
{
	REQUIRE_SINK();
	struct sink k;
	sink_start(&k, (const char *)NULL);
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, k.port);
	struct smtpc_message m[1] = {msg_make(BODY(body1), rcpts_of("a@r.test", NULL, NULL, NULL))};
	struct drive d = {0};
	d.free_in_result = true;
	drive_run(&d, &p, m, 1);
	assert_int_equal(d.results, 1);
	assert_int_equal(d.closed_events, 0); /* freed: no more callbacks */
	sink_stop(&k);
}

struct bad_case {
	const char *name;
	const char *sender;
	const char *rcpt;
	bool smtputf8;
};

static const struct bad_case bad_cases[] = {
    {"CRLF in recipient", "s@x.test", "a@r.test\r\nRCPT TO:<b@r.test>", false},
    {"'>' in recipient", "s@x.test", "a@r.test> NOTIFY=NEVER", false},
    {"'<' in sender", "<s@x.test", "a@r.test", false},
    {"empty recipient", "s@x.test", "", false},
    {"space outside quotes", "s@x.test", "a b@r.test", false},
    {"unclosed quote", "s@x.test", "\"a@r.test", false},
    {"NUL-less control", "s@x.test", "a\x01@r.test", false},
    {"DEL", "s@x.test", "a\x7f@r.test", false},
    {"UTF-8 without smtputf8", "s@x.test", "j\xc3\xb6rg@r.test", false},
};

static void test_send_refuses_bad_messages(void **state)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	struct smtpc_params p;
	params_default(&p, &sin, 9); /* never connects within this test */
	p.on_event = NULL;
	struct smtpc *c = smtpc_new(base, &p);
	assert_non_null(c);
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *b = &bad_cases[i];
		struct smtpc_message m = msg_make(BODY(body1), rcpts_of(b->rcpt, NULL, NULL, NULL));
		m.sender = b->sender;
		m.smtputf8 = b->smtputf8;
		if (smtpc_send(c, &m, result_cb, 0, NULL) != -1)
			fail_msg("%s: smtpc_send got 0, want -1", b->name);
	}
	/* accepted forms: null sender, quoted local part with a space, UTF-8 with smtputf8 */
	struct smtpc_message ok =
	    msg_make(BODY(body1), rcpts_of("\"a b\"@r.test", NULL, NULL, NULL));
	ok.sender = "";
	struct smtpc_message none = ok;
	none.nrcpts = 0;
	assert_int_equal(smtpc_send(c, &none, result_cb, 0, NULL), -1);
	struct smtpc_message many = ok;
	many.nrcpts = SMTPC_RCPTS_MAX + 1;
	assert_int_equal(smtpc_send(c, &many, result_cb, 0, NULL), -1);
	struct drive d = {0};
	assert_int_equal(smtpc_send(c, &ok, result_cb, 0, &d), 0);
	assert_false(smtpc_can_send(c));
	assert_int_equal(smtpc_send(c, &ok, result_cb, 1, &d), -1); /* one at a time */
	assert_int_equal(d.results, 0);                             /* never inside smtpc_send */
	smtpc_free(c); /* a message in flight: no callback */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(d.results, 0);

	struct smtpc_params bad;
	params_default(&bad, &sin, 25);
	bad.ehlo_name = "two words";
	assert_null(smtpc_new(base, &bad));
	params_default(&bad, &sin, 25);
	bad.tls_ctx = NULL;
	assert_null(smtpc_new(base, &bad)); /* opportunistic needs a context */
	params_default(&bad, &sin, 25);
	bad.remote = NULL;
	assert_null(smtpc_new(base, &bad));
	event_base_free(base);
}

static void test_names(void **state)
{
	assert_string_equal(smtpc_outcome_name(SMTPC_OUTCOME_UNKNOWN), "unknown");
	assert_string_equal(smtpc_scope_name(SMTPC_SCOPE_MESSAGE), "message");
	assert_string_equal(smtpc_failure_name(SMTPC_FAILURE_TLS_UNAVAILABLE), "tls_unavailable");
	assert_string_equal(smtpc_failure_name(SMTPC_FAILURE_INTERNAL), "internal");
}

/* ---- set-up ---- */

static int group_setup(void **state)
{
	(void)state;
	const char *v = getenv("POSTINO_TEST_VERBOSE");
	log_setup(v && *v == '1' ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, "test_smtpc");
	signal(SIGPIPE, SIG_IGN);
	snprintf(sink_path, sizeof sink_path, "%s/tools/smtpsink", build_dir);
	snprintf(cert_dir, sizeof cert_dir, "/tmp/test_smtpc_tls.XXXXXX");
	if (mkdtemp(cert_dir) == NULL)
		return -1;
	snprintf(cert_path, sizeof cert_path, "%s/cert.pem", cert_dir);
	snprintf(key_path, sizeof key_path, "%s/key.pem", cert_dir);
	char err[256];
	if (tls_selfsigned_ensure(cert_path, key_path, "sink.test", err, sizeof err) == -1) {
		print_error("certificate: %s\n", err);
		return -1;
	}
	client_tls = smtpc_tls_ctx_new(err, sizeof err);
	if (client_tls == NULL) {
		print_error("%s\n", err);
		return -1;
	}
	return 0;
}

/* Stops what a failed test left running. */
static int test_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
		if (live[i] != NULL)
			sink_stop(live[i]);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	SSL_CTX_free(client_tls);
	nftw(cert_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(int argc, char **argv)
{
	(void)argc;
	const char *env = getenv("POSTINO_BUILD");
	const char *slash = strstr(argv[0], "/tests/");
	if (env != NULL && *env != '\0')
		snprintf(build_dir, sizeof build_dir, "%s", env);
	else if (slash != NULL && (size_t)(slash - argv[0]) < sizeof build_dir)
		snprintf(build_dir, sizeof build_dir, "%.*s", (int)(slash - argv[0]), argv[0]);
	const char *filter = getenv("POSTINO_TEST_FILTER"); /* a test name, '*' wildcards */
	if (filter != NULL && *filter != '\0')
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_several_messages_pipelining, test_teardown),
	    cmocka_unit_test_teardown(test_several_messages_no_pipelining, test_teardown),
	    cmocka_unit_test_teardown(test_sink_refuses_improper_pipelining, test_teardown),
	    cmocka_unit_test_teardown(test_starttls_opportunistic, test_teardown),
	    cmocka_unit_test_teardown(test_starttls_injection_discarded, test_teardown),
	    cmocka_unit_test_teardown(test_tls_required_no_certificate, test_teardown),
	    cmocka_unit_test_teardown(test_tls_required_not_advertised, test_teardown),
	    cmocka_unit_test_teardown(test_tls_required_offered, test_teardown),
	    cmocka_unit_test_teardown(test_tls_policy_none, test_teardown),
	    cmocka_unit_test_teardown(test_rcpt_mix_pipelining, test_teardown),
	    cmocka_unit_test_teardown(test_rcpt_mix_no_pipelining, test_teardown),
	    cmocka_unit_test_teardown(test_data_rejected_5xx, test_teardown),
	    cmocka_unit_test_teardown(test_data_rejected_4xx, test_teardown),
	    cmocka_unit_test_teardown(test_stall_after_dot_is_unknown, test_teardown),
	    cmocka_unit_test_teardown(test_greeting_timeout, test_teardown),
	    cmocka_unit_test_teardown(test_drop_after_dot_is_unknown, test_teardown),
	    cmocka_unit_test_teardown(test_dot_stuffing_exact, test_teardown),
	    cmocka_unit_test_teardown(test_dot_stuffing_exact_tls, test_teardown),
	    cmocka_unit_test_teardown(test_line_of_999_refused_by_sink, test_teardown),
	    cmocka_unit_test_teardown(test_helo_fallback, test_teardown),
	    cmocka_unit_test_teardown(test_size_limit, test_teardown),
	    cmocka_unit_test_teardown(test_max_messages, test_teardown),
	    cmocka_unit_test_teardown(test_idle_then_quit, test_teardown),
	    cmocka_unit_test_teardown(test_send_from_idle, test_teardown),
	    cmocka_unit_test_teardown(test_connect_refused, test_teardown),
	    cmocka_unit_test_teardown(test_source_address, test_teardown),
	    cmocka_unit_test_teardown(test_quit_before_ready, test_teardown),
	    cmocka_unit_test_teardown(test_free_inside_result_callback, test_teardown),
	    cmocka_unit_test_teardown(test_send_refuses_bad_messages, test_teardown),
	    cmocka_unit_test_teardown(test_names, test_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
