/*
 * loadgen.c: an SMTP submission load generator for Postino's benchmarks and soak tests.
 *
 * Submits --count messages of exactly --size octets over --concurrency simultaneous SMTP
 * sessions to --host:--port. Each session sends --per-session messages in a row on one
 * connection (MAIL, RCPT..., DATA repeated, like an application's connection pool), then QUIT,
 * and connects again while messages remain. One thread, one libevent loop; TLS (STARTTLS or
 * implicit) through OpenSSL bufferevents with certificate verification off, since the servers
 * under test use self-signed certificates.
 *
 * RFC 5321 (SMTP), 3207 (STARTTLS), 8314 (implicit TLS), 4954 + 4616 (AUTH PLAIN),
 * 2920 (PIPELINING), 1870 (SIZE), 5322 (the message format).
 *
 * What it owns: the sessions (one explicit state machine each; every change goes through
 * session_set_state), the message builder (headers, then a dot-stuffed body of 76-character
 * lines padded to the exact size), and the tallies: replies by phase and class, message
 * outcomes, and for every accepted message the latency from the moment its final ".\r\n" was
 * handed to the kernel to the moment its reply was read.
 *
 * Every wait is bounded: connect (--connect-timeout), the TLS handshake and every reply
 * (--timeout). A reply line is at most LG_LINE_MAX octets and a reply at most LG_REPLY_LINES
 * lines, or the session ends with a protocol error. Every connection attempt takes one message
 * from the pool, so a server that refuses or drops connections costs at most --count attempts.
 *
 * Output (stdout): one line per phase with its reply counts, then
 *   loadgen: sent=N ok=N tempfail=N permfail=N errors=N seconds=F msgs_per_s=F p50_ms=F
 *            p90_ms=F p99_ms=F max_ms=F
 * (one line). Exit status 0 when every message got a 2xx reply to its end of data, 1 when
 * not, 2 on a usage error.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "tests/tools/lib_tool.h"

#define LG_LINE_MAX     TOOL_LINE_MAX /* octets of one reply line, without its CRLF */
#define LG_REPLY_LINES  128           /* lines of one multi-line reply */
#define LG_TEXT_MAX     160           /* octets of a reply kept for diagnostics */
#define LG_DIAG_MAX     20 /* failures described on stderr; later ones are only counted */
#define LG_BODY_CHARS   76 /* printable characters per body line */
#define LG_BODY_LINE    (LG_BODY_CHARS + 2)
#define LG_DOT_EVERY    17 /* every 17th body line starts with '.', to exercise stuffing */
#define LG_SIZE_MIN     256
#define LG_SIZE_MAX     (64u << 20)
#define LG_COUNT_MAX    100000000u
#define LG_SESSIONS_MAX 100000u
#define LG_RCPTS_MAX    10000u
#define LG_CRED_MAX     255 /* RFC 4616: authcid and passwd are at most 255 octets */
#define LG_EHLO_NAME    "loadgen.test"

enum lg_tls { LG_TLS_NONE, LG_TLS_STARTTLS, LG_TLS_IMPLICIT };

static const char *const tls_names[] = {"none", "starttls", "implicit"};

enum lg_phase {
	LG_PHASE_CONNECT, /* TCP connect; with implicit TLS, the handshake too */
	LG_PHASE_TLS,     /* the handshake after STARTTLS */
	LG_PHASE_GREETING,
	LG_PHASE_EHLO,
	LG_PHASE_STARTTLS,
	LG_PHASE_AUTH,
	LG_PHASE_MAIL,
	LG_PHASE_RCPT,
	LG_PHASE_DATA,
	LG_PHASE_DOT, /* the reply to the end of data */
	LG_PHASE_RSET,
	LG_PHASE_QUIT,
	LG_PHASE_COUNT,
};

static const char *const phase_names[LG_PHASE_COUNT] = {
    "connect", "tls",  "greeting", "ehlo", "starttls", "auth",
    "mail",    "rcpt", "data",     "dot",  "rset",     "quit",
};

/* Reply classes; a completed connect or handshake counts as 2xx. */
enum lg_class {
	LG_CLASS_2XX,
	LG_CLASS_3XX,
	LG_CLASS_4XX,
	LG_CLASS_5XX,
	LG_CLASS_ERROR,
	LG_CLASS_COUNT
};

enum lg_state {
	LG_STATE_IDLE,        /* no connection yet */
	LG_STATE_CONNECTING,  /* TCP connect, and the handshake with implicit TLS */
	LG_STATE_GREETING,    /* waiting for 220 */
	LG_STATE_EHLO,        /* waiting for the EHLO reply */
	LG_STATE_STARTTLS,    /* waiting for 220 to STARTTLS */
	LG_STATE_TLS_SWITCH,  /* 220 read: the switch to TLS happens from the kick event */
	LG_STATE_HANDSHAKE,   /* TLS handshake after STARTTLS */
	LG_STATE_AUTH,        /* waiting for 235 */
	LG_STATE_TRANSACTION, /* waiting for the replies to MAIL, RCPT..., DATA */
	LG_STATE_DOT,         /* message sent; waiting for the reply to its end */
	LG_STATE_RSET,        /* a transaction failed; waiting for 250 to RSET */
	LG_STATE_QUIT,        /* waiting for 221 */
	LG_STATE_CLOSING,     /* freed, then maybe reconnected, from the kick event */
	LG_STATE_DONE,        /* no connection, no message left */
};

static const char *const state_names[] = {
    "idle", "connecting",  "greeting", "ehlo", "starttls", "tls_switch", "handshake",
    "auth", "transaction", "dot",      "rset", "quit",     "closing",    "done",
};

struct lg_options {
	const char *host;
	unsigned port; /* 0: 465 with implicit TLS, else 587 */
	uint64_t count;
	size_t size;
	unsigned concurrency;
	unsigned per_session;
	unsigned rcpts;
	unsigned domains;
	const char *from;
	const char *from_domain; /* points into from */
	enum lg_tls tls;
	const char *user;
	const char *password;
	bool pipelining;
	unsigned timeout;
	unsigned connect_timeout;
	bool verbose;
};

/* The body text: LG_BODY_CHARS-character lines, dot-stuffed, CRLF-ended. A message's body is a
 * prefix of whole lines of it plus at most two short lines made per message. */
struct lg_body {
	char *text;
	size_t *offset; /* offset[k]: where line k starts in text; offset[nlines] is the end */
	size_t nlines;
};

struct loadgen;

struct lg_session {
	struct loadgen *lg;
	unsigned index;
	enum lg_state state;
	struct bufferevent *bev;
	evutil_socket_t fd;  /* the cleartext socket, ours to close; -1 once a TLS bufferevent
	                        owns the socket (or before connecting) */
	struct event *timer; /* connect, handshake and reply timeout */
	struct event *kick;  /* STARTTLS switch, free and reconnect: outside bev callbacks */
	bool tls_active;
	/* the reply being read */
	int code;
	unsigned lines;
	char text[LG_TEXT_MAX + 1]; /* its first line */
	/* EHLO keywords of the current server greeting */
	bool ext_pipelining, ext_starttls, ext_auth_plain, ext_size;
	/* the message in hand */
	bool has_message;
	uint64_t message;
	unsigned messages_here; /* messages begun on this connection */
	bool pipelined;         /* this transaction's commands went out in one write */
	unsigned sent_index;    /* transaction commands written: 0 MAIL, 1..R RCPT, R+1 DATA */
	unsigned reply_index;   /* transaction replies read, same numbering */
	int first_failure;      /* first non-2xx reply code of the transaction, 0 if none */
	unsigned rcpts_accepted;
	bool dot_pending; /* message queued, not yet all handed to the kernel */
	struct timespec dot_time;
};

struct loadgen {
	struct lg_options opt;
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool host_is_name; /* send SNI */
	char sni[256];     /* the host name for SNI (a copy: OpenSSL's macro drops const) */
	struct lg_session *sessions;
	unsigned nsessions;
	unsigned active;   /* sessions not DONE */
	uint64_t reserved; /* messages handed to sessions so far */
	uint64_t ok, tempfail, permfail, errors;
	uint64_t replies[LG_PHASE_COUNT][LG_CLASS_COUNT];
	double *latency_ms; /* one per accepted message */
	uint64_t nlatency;
	unsigned diagnostics;
	struct lg_body body;
	char *scratch; /* one message, built just before it is written */
	size_t scratch_cap;
	size_t header_cap;
	char run_id[17];
	char auth_line[16 + 4 * ((2 * LG_CRED_MAX + 2 + 2) / 3) + 8];
	bool interrupted;
	struct event *sigint, *sigterm;
};

static void session_read(struct lg_session *s);
static void session_close(struct lg_session *s);
static void session_fail(struct lg_session *s, int code, const char *why);
static void session_begin(struct lg_session *s);
static void transaction_start(struct lg_session *s);

/* ---- small helpers ---- */

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static unsigned digits_of(uint64_t v)
{
	unsigned n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

static void escape_text(const char *in, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < outlen; i++)
		out[o++] = isprint((unsigned char)in[i]) && in[i] != '"' ? in[i] : '?';
	out[o] = '\0';
}

static void diag(struct lg_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Describes one failure on stderr, up to LG_DIAG_MAX of them. */
static void diag(struct lg_session *s, const char *fmt, ...)
{
	struct loadgen *lg = s->lg;
	if (lg->diagnostics > LG_DIAG_MAX)
		return;
	if (lg->diagnostics++ == LG_DIAG_MAX) {
		fprintf(stderr, "loadgen: more failures: counted, not described\n");
		return;
	}
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "loadgen: session=%u state=%s %s\n", s->index, state_names[s->state], line);
}

static void session_set_state(struct lg_session *s, enum lg_state next)
{
	if (s->lg->opt.verbose && s->state != next)
		fprintf(stderr, "loadgen: session=%u event=state from=%s to=%s\n", s->index,
		        state_names[s->state], state_names[next]);
	s->state = next;
}

static enum lg_class class_of(int code)
{
	switch (code / 100) {
	case 2:
		return LG_CLASS_2XX;
	case 3:
		return LG_CLASS_3XX;
	case 4:
		return LG_CLASS_4XX;
	case 5:
		return LG_CLASS_5XX;
	default:
		return LG_CLASS_ERROR;
	}
}

static enum lg_phase session_phase(const struct lg_session *s)
{
	switch (s->state) {
	case LG_STATE_HANDSHAKE:
		return LG_PHASE_TLS;
	case LG_STATE_GREETING:
		return LG_PHASE_GREETING;
	case LG_STATE_EHLO:
		return LG_PHASE_EHLO;
	case LG_STATE_STARTTLS:
	case LG_STATE_TLS_SWITCH:
		return LG_PHASE_STARTTLS;
	case LG_STATE_AUTH:
		return LG_PHASE_AUTH;
	case LG_STATE_TRANSACTION:
		if (s->reply_index == 0)
			return LG_PHASE_MAIL;
		return s->reply_index <= s->lg->opt.rcpts ? LG_PHASE_RCPT : LG_PHASE_DATA;
	case LG_STATE_DOT:
		return LG_PHASE_DOT;
	case LG_STATE_RSET:
		return LG_PHASE_RSET;
	case LG_STATE_QUIT:
		return LG_PHASE_QUIT;
	default:
		return LG_PHASE_CONNECT;
	}
}

static bool waiting_for_reply(enum lg_state st)
{
	switch (st) {
	case LG_STATE_GREETING:
	case LG_STATE_EHLO:
	case LG_STATE_STARTTLS:
	case LG_STATE_AUTH:
	case LG_STATE_TRANSACTION:
	case LG_STATE_DOT:
	case LG_STATE_RSET:
	case LG_STATE_QUIT:
		return true;
	default:
		return false;
	}
}

static void timer_arm(struct lg_session *s, unsigned seconds)
{
	struct timeval tv = {(time_t)seconds, 0};
	evtimer_add(s->timer, &tv);
}

/* ---- messages ---- */

static int append(char *out, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int append(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
	if (*len >= cap)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	return 0;
}

/* Recipient j (0-based) of message n: user<g>@rcpt-<g mod D>.test, g = n * R + j. */
static int rcpt_format(const struct loadgen *lg, uint64_t n, unsigned j, char *out, size_t cap)
{
	uint64_t g = n * lg->opt.rcpts + j;
	int w = snprintf(out, cap, "user%" PRIu64 "@rcpt-%" PRIu64 ".test", g, g % lg->opt.domains);
	return w < 0 || (size_t)w >= cap ? -1 : 0;
}

/* Line k of the body text, unstuffed: LG_BODY_CHARS printable characters. */
static void body_line(size_t k, char out[LG_BODY_CHARS])
{
	static const char words[] = "Postino load test: the quick brown fox jumps over the lazy "
	                            "dog, 0123456789 times; Pack my box with five dozen liquor "
	                            "jugs! (~`@#$%^&*_+=-[]{}|\\:;'<>,.?/) ";
	size_t n = sizeof words - 1;
	for (size_t i = 0; i < LG_BODY_CHARS; i++)
		out[i] = words[(k * 7 + i) % n];
	if (k % LG_DOT_EVERY == 3)
		out[0] = '.';
}

/* Builds the dot-stuffed text of nlines body lines. Returns 0 or -1 (no memory). */
static int body_init(struct lg_body *b, size_t nlines)
{
	b->nlines = nlines;
	b->offset = calloc(nlines + 1, sizeof *b->offset);
	b->text = malloc(nlines * (LG_BODY_LINE + 1) + 1);
	if (b->offset == NULL || b->text == NULL)
		return -1;
	size_t o = 0;
	for (size_t k = 0; k < nlines; k++) {
		char line[LG_BODY_CHARS];
		body_line(k, line);
		b->offset[k] = o;
		if (line[0] == '.')
			b->text[o++] = '.';
		memcpy(b->text + o, line, LG_BODY_CHARS);
		o += LG_BODY_CHARS;
		b->text[o++] = '\r';
		b->text[o++] = '\n';
	}
	b->offset[nlines] = o;
	return 0;
}

/* Writes message n's header section, with the empty line that ends it, into out. Returns its
 * length, or 0 when it does not fit in cap. */
static size_t header_build(const struct loadgen *lg, uint64_t n, char *out, size_t cap)
{
	const struct lg_options *o = &lg->opt;
	size_t len = 0;
	char date[64], rcpt[128];
	time_t now = time(NULL);
	struct tm tm;
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
		snprintf(date, sizeof date, "Thu, 01 Jan 1970 00:00:00 +0000");
	if (append(out, cap, &len, "From: Load Generator <%s>\r\nTo: ", o->from) == -1)
		return 0;
	for (unsigned j = 0; j < o->rcpts; j++) {
		if (rcpt_format(lg, n, j, rcpt, sizeof rcpt) == -1 ||
		    append(out, cap, &len, "%s%s", j > 0 ? ",\r\n " : "", rcpt) == -1)
			return 0;
	}
	if (append(out, cap, &len,
	           "\r\nSubject: loadgen message %" PRIu64 "\r\n"
	           "Date: %s\r\n"
	           "Message-ID: <loadgen.%s.%" PRIu64 "@%s>\r\n"
	           "MIME-Version: 1.0\r\n"
	           "Content-Type: text/plain; charset=us-ascii\r\n"
	           "Content-Transfer-Encoding: 7bit\r\n"
	           "\r\n",
	           n, date, lg->run_id, n, o->from_domain) == -1)
		return 0;
	return len;
}

/*
 * Writes message n, dot-stuffed and followed by ".\r\n", into lg->scratch. The message
 * before stuffing is exactly opt.size octets: headers, then body lines of LG_BODY_CHARS
 * characters, then one shorter line (or a 75-character line and an empty one when a single
 * octet is left over). Returns the number of octets to send, or 0 when the headers do not
 * leave room (checked at start-up, so it means a bug).
 */
static size_t message_build(struct loadgen *lg, uint64_t n)
{
	char *out = lg->scratch;
	size_t h = header_build(lg, n, out, lg->header_cap);
	if (h == 0 || h + 2 > lg->opt.size)
		return 0;
	size_t body_len = lg->opt.size - h;
	size_t full = body_len / LG_BODY_LINE, rest = body_len % LG_BODY_LINE;
	size_t last = 0; /* characters of the short line */
	bool short_line = rest >= 2, empty_line = false;
	if (rest >= 2) {
		last = rest - 2;
	} else if (rest == 1) {
		full--; /* full >= 1: body_len >= 2 */
		last = LG_BODY_CHARS - 1;
		short_line = true;
		empty_line = true;
	}
	if (full > lg->body.nlines)
		return 0;
	size_t len = h;
	size_t chunk = lg->body.offset[full];
	memcpy(out + len, lg->body.text, chunk);
	len += chunk;
	if (short_line) {
		char line[LG_BODY_CHARS];
		body_line(full, line);
		if (last > 0 && line[0] == '.')
			out[len++] = '.';
		memcpy(out + len, line, last);
		len += last;
		out[len++] = '\r';
		out[len++] = '\n';
	}
	if (empty_line) {
		out[len++] = '\r';
		out[len++] = '\n';
	}
	memcpy(out + len, ".\r\n", 3);
	return len + 3;
}

/* ---- tallies ---- */

static void count_reply(struct loadgen *lg, enum lg_phase ph, enum lg_class cl)
{
	lg->replies[ph][cl]++;
}

/* Records the outcome of the message in hand: code is its deciding reply (0: no reply, an
 * error). latency is used for 2xx. */
static void message_finish(struct lg_session *s, int code, double latency)
{
	struct loadgen *lg = s->lg;
	if (!s->has_message)
		return;
	s->has_message = false;
	s->messages_here++;
	switch (class_of(code)) {
	case LG_CLASS_2XX:
		lg->ok++;
		if (lg->nlatency < lg->opt.count)
			lg->latency_ms[lg->nlatency++] = latency;
		break;
	case LG_CLASS_4XX:
		lg->tempfail++;
		break;
	case LG_CLASS_5XX:
		lg->permfail++;
		break;
	default:
		lg->errors++;
		break;
	}
}

static bool message_reserve(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	if (lg->interrupted || lg->reserved >= lg->opt.count)
		return false;
	s->message = lg->reserved++;
	s->has_message = true;
	return true;
}

/* ---- sending ---- */

static void send_text(struct lg_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Queues a command (fmt includes the CRLF) and re-arms the reply timer. */
static void send_text(struct lg_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	if (rc < 0) {
		session_fail(s, 0, "evbuffer_add_vprintf failed");
		return;
	}
	timer_arm(s, s->lg->opt.timeout);
}

static void send_rcpt(struct lg_session *s, unsigned j)
{
	char rcpt[128];
	if (rcpt_format(s->lg, s->message, j, rcpt, sizeof rcpt) == -1) {
		session_fail(s, 0, "recipient address too long");
		return;
	}
	send_text(s, "RCPT TO:<%s>\r\n", rcpt);
}

static void send_mail(struct lg_session *s)
{
	if (s->ext_size)
		send_text(s, "MAIL FROM:<%s> SIZE=%zu\r\n", s->lg->opt.from, s->lg->opt.size);
	else
		send_text(s, "MAIL FROM:<%s>\r\n", s->lg->opt.from);
}

static void send_message(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	size_t len = message_build(lg, s->message);
	if (len == 0) {
		session_fail(s, 0, "message does not fit --size");
		return;
	}
	session_set_state(s, LG_STATE_DOT);
	if (bufferevent_write(s->bev, lg->scratch, len) == -1) {
		session_fail(s, 0, "bufferevent_write failed");
		return;
	}
	/* dot_time is replaced when the output drains (on_write); this is the fallback */
	clock_gettime(CLOCK_MONOTONIC, &s->dot_time);
	s->dot_pending = true;
	timer_arm(s, lg->opt.timeout);
}

static void send_quit(struct lg_session *s)
{
	session_set_state(s, LG_STATE_QUIT);
	send_text(s, "QUIT\r\n");
}

static void send_rset(struct lg_session *s)
{
	session_set_state(s, LG_STATE_RSET);
	send_text(s, "RSET\r\n");
}

/* Next message on this connection, or QUIT. */
static void next_message(struct lg_session *s)
{
	if (s->messages_here < s->lg->opt.per_session && message_reserve(s))
		transaction_start(s);
	else
		send_quit(s);
}

static void transaction_start(struct lg_session *s)
{
	const struct lg_options *o = &s->lg->opt;
	s->pipelined = o->pipelining && s->ext_pipelining;
	s->sent_index = 0;
	s->reply_index = 0;
	s->first_failure = 0;
	s->rcpts_accepted = 0;
	session_set_state(s, LG_STATE_TRANSACTION);
	send_mail(s);
	s->sent_index = 1;
	if (!s->pipelined)
		return;
	/* RFC 2920: MAIL, every RCPT and DATA in one group; the message waits for 354 */
	for (unsigned j = 0; j < o->rcpts && s->state == LG_STATE_TRANSACTION; j++) {
		send_rcpt(s, j);
		s->sent_index++;
	}
	if (s->state == LG_STATE_TRANSACTION) {
		send_text(s, "DATA\r\n");
		s->sent_index++;
	}
}

/* Ends a failed transaction: the message is decided by its first failure; RSET clears what
 * the server may still hold. */
static void transaction_failed(struct lg_session *s, int code)
{
	message_finish(s, s->first_failure != 0 ? s->first_failure : code, 0);
	send_rset(s);
}

static void transaction_reply(struct lg_session *s, int code)
{
	const struct lg_options *o = &s->lg->opt;
	if (s->reply_index >= s->sent_index) {
		session_fail(s, 0, "reply to a command not sent");
		return;
	}
	unsigned i = s->reply_index++;
	bool good = class_of(code) == LG_CLASS_2XX;
	if (i == o->rcpts + 1) { /* DATA */
		if (code == 354) {
			if (s->rcpts_accepted == 0) {
				/* a server that accepts DATA without recipients gets an empty
				 * message; the outcome is already a failure */
				session_set_state(s, LG_STATE_DOT);
				send_text(s, ".\r\n");
				return;
			}
			send_message(s);
			return;
		}
		if (s->first_failure == 0)
			s->first_failure = code;
		transaction_failed(s, code);
		return;
	}
	if (!good && s->first_failure == 0)
		s->first_failure = code;
	if (i > 0 && good)
		s->rcpts_accepted++;
	if (s->pipelined)
		return; /* everything is sent: wait for the rest */
	if (i == 0 && !good) {
		transaction_failed(s, code);
	} else if (i < o->rcpts) {
		send_rcpt(s, i);
		s->sent_index++;
	} else if (s->rcpts_accepted == 0) {
		transaction_failed(s, code);
	} else {
		send_text(s, "DATA\r\n");
		s->sent_index++;
	}
}

static void dot_reply(struct lg_session *s, int code)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double ms = elapsed_ms(&s->dot_time, &now);
	s->dot_pending = false;
	if (class_of(code) == LG_CLASS_2XX && s->first_failure == 0)
		message_finish(s, code, ms);
	else
		message_finish(s, s->first_failure != 0 ? s->first_failure : code, 0);
	next_message(s);
}

static void after_ehlo(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	if (lg->opt.tls == LG_TLS_STARTTLS && !s->tls_active) {
		if (!s->ext_starttls) {
			session_fail(s, 0, "server does not offer STARTTLS");
			return;
		}
		session_set_state(s, LG_STATE_STARTTLS);
		send_text(s, "STARTTLS\r\n");
	} else if (lg->opt.user != NULL) {
		if (!s->ext_auth_plain) {
			session_fail(s, 0, "server does not offer AUTH PLAIN");
			return;
		}
		session_set_state(s, LG_STATE_AUTH);
		send_text(s, "%s", lg->auth_line);
	} else {
		transaction_start(s);
	}
}

static void send_ehlo(struct lg_session *s)
{
	s->ext_pipelining = s->ext_starttls = s->ext_auth_plain = s->ext_size = false;
	session_set_state(s, LG_STATE_EHLO);
	send_text(s, "EHLO %s\r\n", LG_EHLO_NAME);
}

/* ---- replies ---- */

/* One EHLO keyword line (after "250-" or "250 "). */
static void ehlo_keyword(struct lg_session *s, const char *p, size_t len)
{
	size_t k = 0;
	while (k < len && p[k] != ' ' && p[k] != '=')
		k++;
	if (k == 10 && strncasecmp(p, "PIPELINING", 10) == 0) {
		s->ext_pipelining = true;
	} else if (k == 8 && strncasecmp(p, "STARTTLS", 8) == 0) {
		s->ext_starttls = true;
	} else if (k == 4 && strncasecmp(p, "SIZE", 4) == 0) {
		s->ext_size = true;
	} else if (k == 4 && strncasecmp(p, "AUTH", 4) == 0) {
		/* mechanisms separated by spaces (or "AUTH=" in old servers) */
		size_t i = k + 1;
		while (i < len) {
			size_t e = i;
			while (e < len && p[e] != ' ')
				e++;
			if (e - i == 5 && strncasecmp(p + i, "PLAIN", 5) == 0)
				s->ext_auth_plain = true;
			i = e + 1;
		}
	}
}

/* One reply line. Returns 1 when it ends the reply, 0 when more lines follow, -1 when it is
 * malformed: not "DDD", "DDD text" or "DDD-text", first digit 2..5, the same code on every
 * line, at most LG_REPLY_LINES lines. */
static int reply_line(struct lg_session *s, const char *line, size_t len)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-'))
		return -1;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (s->lines == 0) {
		s->code = code;
		escape_text(line, len, s->text, sizeof s->text);
	} else if (code != s->code) {
		return -1;
	}
	if (++s->lines > LG_REPLY_LINES)
		return -1;
	if (s->state == LG_STATE_EHLO && s->lines > 1 && len > 4)
		ehlo_keyword(s, line + 4, len - 4);
	return len == 3 || line[3] == ' ' ? 1 : 0;
}

/* A whole reply has been read: count it and move the session on. */
static void reply_done(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	int code = s->code;
	enum lg_class cl = class_of(code);
	count_reply(lg, session_phase(s), cl);
	if (cl == LG_CLASS_4XX || cl == LG_CLASS_5XX)
		diag(s, "phase=%s reply=\"%s\"", phase_names[session_phase(s)], s->text);
	if (code == 421 && s->state != LG_STATE_QUIT) {
		/* the server is closing the connection */
		session_fail(s, code, "421");
		return;
	}
	switch (s->state) {
	case LG_STATE_GREETING:
		if (code == 220)
			send_ehlo(s);
		else
			session_fail(s, code, "greeting refused");
		break;
	case LG_STATE_EHLO:
		if (code == 250)
			after_ehlo(s);
		else
			session_fail(s, code, "EHLO refused");
		break;
	case LG_STATE_STARTTLS:
		if (code != 220) {
			session_fail(s, code, "STARTTLS refused");
			break;
		}
		session_set_state(s, LG_STATE_TLS_SWITCH);
		bufferevent_disable(s->bev, EV_READ);
		event_active(s->kick, EV_TIMEOUT, 0);
		break;
	case LG_STATE_AUTH:
		if (code == 235)
			transaction_start(s);
		else
			session_fail(s, code, "AUTH refused");
		break;
	case LG_STATE_TRANSACTION:
		transaction_reply(s, code);
		break;
	case LG_STATE_DOT:
		dot_reply(s, code);
		break;
	case LG_STATE_RSET:
		if (cl == LG_CLASS_2XX)
			next_message(s);
		else
			session_fail(s, code, "RSET refused");
		break;
	case LG_STATE_QUIT:
		session_close(s); /* any reply to QUIT ends the connection */
		break;
	default:
		session_fail(s, 0, "reply in a state that expects none");
		break;
	}
}

/* Reads every complete reply in the input buffer. */
static void session_read(struct lg_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	while (waiting_for_reply(s->state)) {
		char line[LG_LINE_MAX + 1];
		size_t len = 0;
		enum tool_line_result got = tool_line_take(in, line, &len, false);
		if (got == TOOL_LINE_NONE)
			return;
		if (got != TOOL_LINE_OK) {
			session_fail(s, 0, "reply line too long, without CRLF or with NUL");
			return;
		}
		int rc = reply_line(s, line, len);
		if (rc == -1) {
			char esc[LG_TEXT_MAX + 1];
			escape_text(line, len, esc, sizeof esc);
			diag(s, "malformed reply line \"%s\"", esc);
			session_fail(s, 0, "malformed reply");
			return;
		}
		if (rc == 1) {
			reply_done(s);
			s->lines = 0;
			if (waiting_for_reply(s->state))
				timer_arm(s, s->lg->opt.timeout);
		}
	}
	/* bytes the server sent while no reply is due */
	if (s->state != LG_STATE_CLOSING && s->state != LG_STATE_DONE &&
	    s->state != LG_STATE_TLS_SWITCH && evbuffer_get_length(in) > 0)
		session_fail(s, 0, "data from the server while no reply is due");
}

/* ---- connection ---- */

static void session_close(struct lg_session *s)
{
	if (s->state == LG_STATE_CLOSING || s->state == LG_STATE_DONE)
		return;
	session_set_state(s, LG_STATE_CLOSING);
	evtimer_del(s->timer);
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	event_active(s->kick, EV_TIMEOUT, 0);
}

/* Ends the connection after a failure; code is the reply that caused it (already counted) or
 * 0 for an error (counted here). The message in hand, if any, takes the same outcome. */
static void session_fail(struct lg_session *s, int code, const char *why)
{
	if (s->state == LG_STATE_CLOSING || s->state == LG_STATE_DONE)
		return;
	enum lg_phase ph = session_phase(s);
	if (code == 0) {
		count_reply(s->lg, ph, LG_CLASS_ERROR);
		diag(s, "phase=%s error=\"%s\"", phase_names[ph], why);
	}
	message_finish(s, code, 0);
	session_close(s);
}

static void session_release(struct lg_session *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->fd != -1) {
		evutil_closesocket(s->fd);
		s->fd = -1;
	}
	s->tls_active = false;
	s->dot_pending = false;
	s->lines = 0;
}

static SSL *ssl_new(struct loadgen *lg)
{
	SSL *ssl = SSL_new(lg->ssl_ctx);
	if (ssl == NULL)
		return NULL;
	if (lg->host_is_name && SSL_set_tlsext_host_name(ssl, lg->sni) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void session_callbacks_set(struct lg_session *s)
{
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* Replaces the cleartext bufferevent by an OpenSSL one on the same socket (after 220 to
 * STARTTLS). Runs from the kick event, never inside the old bufferevent's callbacks. */
static void tls_switch(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		/* RFC 3207: nothing may follow 220 in cleartext */
		session_fail(s, 0, "data after 220 to STARTTLS");
		return;
	}
	SSL *ssl = ssl_new(lg);
	if (ssl == NULL) {
		session_fail(s, 0, "SSL_new failed");
		return;
	}
	/* the cleartext bufferevent was made without BEV_OPT_CLOSE_ON_FREE: fd stays open */
	bufferevent_free(s->bev);
	s->bev = bufferevent_openssl_socket_new(lg->base, s->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		/* libevent versions differ on who frees ssl here; a leak on this out-of-memory
		 * path is better than a double free */
		session_fail(s, 0, "bufferevent_openssl_socket_new failed");
		return;
	}
	s->fd = -1; /* the TLS bufferevent owns the socket now */
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	session_callbacks_set(s);
	session_set_state(s, LG_STATE_HANDSHAKE);
	timer_arm(s, lg->opt.timeout);
}

static void session_connect(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	s->lines = 0;
	s->messages_here = 0;
	session_set_state(s, LG_STATE_CONNECTING);
	timer_arm(s, lg->opt.connect_timeout);
	if (lg->opt.tls == LG_TLS_IMPLICIT) {
		SSL *ssl = ssl_new(lg);
		if (ssl == NULL) {
			session_fail(s, 0, "SSL_new failed");
			return;
		}
		s->bev = bufferevent_openssl_socket_new(
		    lg->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (s->bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	} else {
		s->bev = bufferevent_socket_new(lg->base, -1, 0);
	}
	if (s->bev == NULL) {
		session_fail(s, 0, "cannot create a bufferevent");
		return;
	}
	session_callbacks_set(s);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&lg->addr, (int)lg->addrlen) ==
	    -1) {
		char why[160];
		snprintf(why, sizeof why, "connect: %s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		session_fail(s, 0, why);
		return;
	}
	evutil_socket_t fd = bufferevent_getfd(s->bev);
	if (fd != -1) {
		int one = 1;
		/* replies and pipelined groups are small: no Nagle delay on loopback */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (lg->opt.tls != LG_TLS_IMPLICIT)
			s->fd = fd;
	}
}

/* Starts a connection for the next message, or ends the session when none is left. */
static void session_begin(struct lg_session *s)
{
	struct loadgen *lg = s->lg;
	if (!message_reserve(s)) {
		session_set_state(s, LG_STATE_DONE);
		if (--lg->active == 0)
			event_base_loopexit(lg->base, NULL);
		return;
	}
	session_connect(s);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct lg_session *s = arg;
	if (s->state == LG_STATE_TLS_SWITCH) {
		tls_switch(s);
	} else if (s->state == LG_STATE_CLOSING) {
		session_release(s);
		session_begin(s);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct lg_session *s = arg;
	session_fail(s, 0, "timeout");
}

static void on_read(struct bufferevent *bev, void *arg)
{
	session_read(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct lg_session *s = arg;
	/* the output buffer is empty: the final ".\r\n" has been handed to the kernel */
	if (s->dot_pending) {
		clock_gettime(CLOCK_MONOTONIC, &s->dot_time);
		s->dot_pending = false;
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct lg_session *s = arg;
	struct loadgen *lg = s->lg;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == LG_STATE_CONNECTING) {
			count_reply(lg, LG_PHASE_CONNECT, LG_CLASS_2XX);
			s->tls_active = lg->opt.tls == LG_TLS_IMPLICIT;
			session_set_state(s, LG_STATE_GREETING);
			timer_arm(s, lg->opt.timeout);
		} else if (s->state == LG_STATE_HANDSHAKE) {
			count_reply(lg, LG_PHASE_TLS, LG_CLASS_2XX);
			s->tls_active = true;
			send_ehlo(s);
		}
		return;
	}
	/* replies that arrived with the end of the connection count first */
	if (waiting_for_reply(s->state))
		session_read(s);
	if (s->state == LG_STATE_CLOSING || s->state == LG_STATE_DONE)
		return;
	if (s->state == LG_STATE_QUIT) {
		session_close(s); /* closed before 221: nothing is lost */
		return;
	}
	char why[200];
	if (what & BEV_EVENT_EOF) {
		snprintf(why, sizeof why, "connection closed by the server");
	} else {
		unsigned long e = bufferevent_get_openssl_error(bev);
		if (e != 0) {
			char ebuf[160];
			ERR_error_string_n(e, ebuf, sizeof ebuf);
			snprintf(why, sizeof why, "TLS: %s", ebuf);
		} else {
			int err = EVUTIL_SOCKET_ERROR();
			snprintf(why, sizeof why, "%s",
			         err != 0 ? evutil_socket_error_to_string(err)
			                  : "connection error");
		}
	}
	session_fail(s, 0, why);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct loadgen *lg = arg;
	lg->interrupted = true;
	event_base_loopbreak(lg->base);
}

/* ---- start-up and report ---- */

static void usage(void)
{
	fprintf(stderr,
	        "usage: loadgen [options]\n"
	        "  --host H             server (default 127.0.0.1)\n"
	        "  --port P             port (default 587, 465 with --tls implicit)\n"
	        "  --count N            messages in all (default 1000)\n"
	        "  --size BYTES         octets per message, headers included (default 5120)\n"
	        "  --concurrency C      simultaneous sessions (default 20)\n"
	        "  --per-session M      messages per connection (default 50)\n"
	        "  --rcpts R            recipients per message (default 1)\n"
	        "  --domains D          recipient domains rcpt-<i>.test, cycled (default 1)\n"
	        "  --from ADDR          envelope sender and From: (default sender@example.com)\n"
	        "  --tls MODE           none, starttls or implicit (default starttls)\n"
	        "  --user U --password P  AUTH PLAIN (default: no AUTH)\n"
	        "  --pipelining / --no-pipelining  MAIL+RCPT+DATA in one write when offered\n"
	        "                       (default on)\n"
	        "  --timeout S          seconds per reply and TLS handshake (default 30)\n"
	        "  --connect-timeout S  seconds per TCP connect (default 10)\n"
	        "  --verbose            log every state change on stderr\n");
}

/* --tls MODE */
static int tls_option(void *target, const char *arg, const char **why)
{
	for (int i = 0; i <= LG_TLS_IMPLICIT; i++)
		if (strcmp(arg, tls_names[i]) == 0) {
			*(enum lg_tls *)target = (enum lg_tls)i;
			return 0;
		}
	return -1;
}

static int options_parse(int argc, char **argv, struct lg_options *o)
{
	*o = (struct lg_options){
	    .host = "127.0.0.1",
	    .count = 1000,
	    .size = 5120,
	    .concurrency = 20,
	    .per_session = 50,
	    .rcpts = 1,
	    .domains = 1,
	    .from = "sender@example.com",
	    .tls = LG_TLS_STARTTLS,
	    .pipelining = true,
	    .timeout = 30,
	    .connect_timeout = 10,
	};
	const struct tool_option table[] = {
	    {"host", TOOL_OPTION_STRING, &o->host, 0, 0, NULL, false, NULL},
	    {"port", TOOL_OPTION_UNSIGNED, &o->port, 1, 65535, "--port: 1..65535", false, NULL},
	    {"count", TOOL_OPTION_U64, &o->count, 1, LG_COUNT_MAX, "--count: 1..100000000", false,
	     NULL},
	    {"size", TOOL_OPTION_SIZE, &o->size, LG_SIZE_MIN, LG_SIZE_MAX, "--size: 256..67108864",
	     false, NULL},
	    {"concurrency", TOOL_OPTION_UNSIGNED, &o->concurrency, 1, LG_SESSIONS_MAX,
	     "--concurrency: 1..100000", false, NULL},
	    {"per-session", TOOL_OPTION_UNSIGNED, &o->per_session, 1, 1000000,
	     "--per-session: 1..1000000", false, NULL},
	    {"rcpts", TOOL_OPTION_UNSIGNED, &o->rcpts, 1, LG_RCPTS_MAX, "--rcpts: 1..10000", false,
	     NULL},
	    {"domains", TOOL_OPTION_UNSIGNED, &o->domains, 1, 1000000, "--domains: 1..1000000",
	     false, NULL},
	    {"from", TOOL_OPTION_STRING, &o->from, 0, 0, NULL, false, NULL},
	    {"tls", TOOL_OPTION_CALL, &o->tls, 0, 0, "--tls: none, starttls or implicit", false,
	     tls_option},
	    {"user", TOOL_OPTION_STRING, &o->user, 0, 0, NULL, false, NULL},
	    {"password", TOOL_OPTION_STRING, &o->password, 0, 0, NULL, false, NULL},
	    {"pipelining", TOOL_OPTION_FLAG, &o->pipelining, 0, 0, NULL, true, NULL},
	    {"no-pipelining", TOOL_OPTION_FLAG, &o->pipelining, 0, 0, NULL, false, NULL},
	    {"timeout", TOOL_OPTION_UNSIGNED, &o->timeout, 1, 3600, "--timeout: 1..3600", false,
	     NULL},
	    {"connect-timeout", TOOL_OPTION_UNSIGNED, &o->connect_timeout, 1, 3600,
	     "--connect-timeout: 1..3600", false, NULL},
	    {"verbose", TOOL_OPTION_FLAG, &o->verbose, 0, 0, NULL, true, NULL},
	};
	if (tool_options_parse("loadgen", argc, argv, table, sizeof table / sizeof table[0],
	                       usage) == -1)
		return -1;
	if (o->port == 0)
		o->port = o->tls == LG_TLS_IMPLICIT ? 465 : 587;
	const char *at = strrchr(o->from, '@');
	if (at == NULL || at == o->from || at[1] == '\0' || strlen(o->from) > 254 ||
	    strpbrk(o->from, " <>\r\n\t\"") != NULL) {
		fprintf(stderr, "loadgen: --from: want local@domain without spaces or brackets\n");
		return -1;
	}
	o->from_domain = at + 1;
	if ((o->user == NULL) != (o->password == NULL)) {
		fprintf(stderr, "loadgen: --user and --password go together\n");
		return -1;
	}
	if (o->user != NULL && (strlen(o->user) == 0 || strlen(o->user) > LG_CRED_MAX ||
	                        strlen(o->password) > LG_CRED_MAX)) {
		fprintf(stderr, "loadgen: --user and --password: 1..255 octets\n");
		return -1;
	}
	return 0;
}

/* "AUTH PLAIN <base64(\0user\0password)>\r\n" (RFC 4616 with an initial response). */
static int auth_line_make(struct loadgen *lg)
{
	unsigned char raw[2 * LG_CRED_MAX + 2];
	size_t ul = strlen(lg->opt.user), pl = strlen(lg->opt.password);
	raw[0] = '\0';
	memcpy(raw + 1, lg->opt.user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, lg->opt.password, pl);
	unsigned char b64[4 * ((sizeof raw + 2) / 3) + 1];
	int n = EVP_EncodeBlock(b64, raw, (int)(ul + pl + 2));
	OPENSSL_cleanse(raw, sizeof raw);
	if (n <= 0)
		return -1;
	int w = snprintf(lg->auth_line, sizeof lg->auth_line, "AUTH PLAIN %s\r\n", (char *)b64);
	OPENSSL_cleanse(b64, sizeof b64);
	return w < 0 || (size_t)w >= sizeof lg->auth_line ? -1 : 0;
}

static int resolve(struct loadgen *lg)
{
	char port[8];
	snprintf(port, sizeof port, "%u", lg->opt.port);
	struct evutil_addrinfo hints = {0}, *ai = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	int rc = evutil_getaddrinfo(lg->opt.host, port, &hints, &ai);
	if (rc != 0 || ai == NULL) {
		fprintf(stderr, "loadgen: %s: %s\n", lg->opt.host, evutil_gai_strerror(rc));
		return -1;
	}
	memcpy(&lg->addr, ai->ai_addr, ai->ai_addrlen);
	lg->addrlen = (socklen_t)ai->ai_addrlen;
	evutil_freeaddrinfo(ai);
	struct in6_addr a6;
	lg->host_is_name = inet_pton(AF_INET, lg->opt.host, &a6) != 1 &&
	                   inet_pton(AF_INET6, lg->opt.host, &a6) != 1;
	if (lg->host_is_name)
		snprintf(lg->sni, sizeof lg->sni, "%s", lg->opt.host);
	lg->host_is_name = lg->host_is_name && strlen(lg->opt.host) < sizeof lg->sni;
	return 0;
}

static int ssl_setup(struct loadgen *lg)
{
	lg->ssl_ctx = tool_tls_context_new("loadgen", TLS_client_method());
	if (lg->ssl_ctx == NULL)
		return -1;
	/* servers under test use self-signed certificates: no verification */
	SSL_CTX_set_verify(lg->ssl_ctx, SSL_VERIFY_NONE, NULL);
	/* every connection pays a full handshake, as a pool of fresh clients would */
	SSL_CTX_set_session_cache_mode(lg->ssl_ctx, SSL_SESS_CACHE_OFF);
	return 0;
}

/* Sizes the message buffers and checks that the largest header section leaves room for a
 * body of at least one line end. */
static int messages_setup(struct loadgen *lg)
{
	const struct lg_options *o = &lg->opt;
	lg->header_cap = 1024 + 2 * strlen(o->from) + (size_t)o->rcpts * 96;
	size_t nlines = o->size / LG_BODY_LINE + 2;
	if (body_init(&lg->body, nlines) == -1)
		return -1;
	lg->scratch_cap = lg->header_cap + lg->body.offset[nlines] + 2 * LG_BODY_LINE + 8;
	lg->scratch = malloc(lg->scratch_cap);
	if (lg->scratch == NULL)
		return -1;
	/* the last message has the longest numbers; domain numbers are bounded by digits(D-1) */
	size_t h = header_build(lg, o->count - 1, lg->scratch, lg->header_cap);
	size_t need = h + (size_t)o->rcpts * digits_of(o->domains - 1) + 2;
	if (h == 0 || need > o->size) {
		fprintf(stderr,
		        "loadgen: --size %zu leaves no room for the headers: use at least "
		        "%zu\n",
		        o->size, need);
		return -1;
	}
	return 0;
}

static double percentile(const double *sorted, uint64_t n, double q)
{
	if (n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(struct loadgen *lg, double seconds)
{
	for (int p = 0; p < LG_PHASE_COUNT; p++) {
		const uint64_t *r = lg->replies[p];
		if (r[0] + r[1] + r[2] + r[3] + r[4] == 0)
			continue;
		printf("loadgen: phase=%s 2xx=%" PRIu64 " 3xx=%" PRIu64 " 4xx=%" PRIu64
		       " 5xx=%" PRIu64 " errors=%" PRIu64 "\n",
		       phase_names[p], r[LG_CLASS_2XX], r[LG_CLASS_3XX], r[LG_CLASS_4XX],
		       r[LG_CLASS_5XX], r[LG_CLASS_ERROR]);
	}
	qsort(lg->latency_ms, (size_t)lg->nlatency, sizeof *lg->latency_ms, compare_double);
	uint64_t sent = lg->ok + lg->tempfail + lg->permfail + lg->errors;
	printf("loadgen: sent=%" PRIu64 " ok=%" PRIu64 " tempfail=%" PRIu64 " permfail=%" PRIu64
	       " errors=%" PRIu64 " seconds=%.3f msgs_per_s=%.1f p50_ms=%.3f p90_ms=%.3f "
	       "p99_ms=%.3f max_ms=%.3f\n",
	       sent, lg->ok, lg->tempfail, lg->permfail, lg->errors, seconds,
	       seconds > 0 ? (double)lg->ok / seconds : 0.0,
	       percentile(lg->latency_ms, lg->nlatency, 0.50),
	       percentile(lg->latency_ms, lg->nlatency, 0.90),
	       percentile(lg->latency_ms, lg->nlatency, 0.99),
	       lg->nlatency ? lg->latency_ms[lg->nlatency - 1] : 0.0);
	fflush(stdout);
}

static void cleanup(struct loadgen *lg)
{
	for (unsigned i = 0; i < lg->nsessions; i++) {
		struct lg_session *s = &lg->sessions[i];
		session_release(s);
		if (s->timer)
			event_free(s->timer);
		if (s->kick)
			event_free(s->kick);
	}
	free(lg->sessions);
	if (lg->sigint)
		event_free(lg->sigint);
	if (lg->sigterm)
		event_free(lg->sigterm);
	if (lg->base)
		event_base_free(lg->base);
	SSL_CTX_free(lg->ssl_ctx);
	free(lg->latency_ms);
	free(lg->scratch);
	free(lg->body.text);
	free(lg->body.offset);
	OPENSSL_cleanse(lg->auth_line, sizeof lg->auth_line);
}

int main(int argc, char **argv)
{
	static struct loadgen lg;
	if (options_parse(argc, argv, &lg.opt) == -1)
		return 2;
	tool_process_setup();
	unsigned char rnd[8];
	if (RAND_bytes(rnd, sizeof rnd) != 1) {
		fprintf(stderr, "loadgen: RAND_bytes failed\n");
		return 1;
	}
	for (int i = 0; i < 8; i++)
		snprintf(lg.run_id + 2 * i, 3, "%02x", rnd[i]);
	int rc = 1;
	if (resolve(&lg) == -1 || messages_setup(&lg) == -1)
		goto out;
	if (lg.opt.user != NULL && auth_line_make(&lg) == -1) {
		fprintf(stderr, "loadgen: cannot encode the AUTH PLAIN response\n");
		goto out;
	}
	if (lg.opt.tls != LG_TLS_NONE && ssl_setup(&lg) == -1)
		goto out;
	lg.base = event_base_new();
	lg.latency_ms = calloc((size_t)lg.opt.count, sizeof *lg.latency_ms);
	lg.nsessions =
	    lg.opt.count < lg.opt.concurrency ? (unsigned)lg.opt.count : lg.opt.concurrency;
	lg.sessions = calloc(lg.nsessions, sizeof *lg.sessions);
	if (lg.base == NULL || lg.latency_ms == NULL || lg.sessions == NULL) {
		fprintf(stderr, "loadgen: out of memory\n");
		goto out;
	}
	if (tool_signals_add(lg.base, on_signal, &lg, &lg.sigint, &lg.sigterm) == -1) {
		fprintf(stderr, "loadgen: cannot set up signal handling\n");
		goto out;
	}
	for (unsigned i = 0; i < lg.nsessions; i++) {
		struct lg_session *s = &lg.sessions[i];
		s->lg = &lg;
		s->index = i;
		s->fd = -1;
		s->timer = evtimer_new(lg.base, on_timer, s);
		s->kick = event_new(lg.base, -1, 0, on_kick, s);
		if (s->timer == NULL || s->kick == NULL) {
			fprintf(stderr, "loadgen: cannot create events\n");
			goto out;
		}
	}
	fprintf(stderr,
	        "loadgen: target=%s:%u tls=%s auth=%s count=%" PRIu64
	        " size=%zu concurrency=%u per_session=%u rcpts=%u domains=%u pipelining=%s\n",
	        lg.opt.host, lg.opt.port, tls_names[lg.opt.tls], lg.opt.user ? "plain" : "none",
	        lg.opt.count, lg.opt.size, lg.nsessions, lg.opt.per_session, lg.opt.rcpts,
	        lg.opt.domains, lg.opt.pipelining ? "on" : "off");
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	lg.active = lg.nsessions;
	for (unsigned i = 0; i < lg.nsessions; i++)
		session_begin(&lg.sessions[i]);
	if (event_base_dispatch(lg.base) == -1) {
		fprintf(stderr, "loadgen: event_base_dispatch failed\n");
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	if (lg.interrupted)
		fprintf(stderr, "loadgen: interrupted; messages in flight are not counted\n");
	report(&lg, elapsed_ms(&start, &end) / 1e3);
	rc = !lg.interrupted && lg.ok == lg.opt.count ? 0 : 1;
out:
	cleanup(&lg);
	return rc;
}
