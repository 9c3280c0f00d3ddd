/*
 * smtpsink.c: an SMTP server that accepts mail, counts it and throws it away: the remote MX of
 * Postino's delivery benchmarks and tests. It can be slow (--delay-ms before every reply) and
 * fail on purpose (--reply-rcpt, --reply-data, --fail-rate), answer each recipient by its
 * local part (--rcpt-rule, --rcpt-by-name), stall the reply to the final dot (--stall-data),
 * drop the connection right after it (--drop-after-dot), leave PIPELINING or STARTTLS out of
 * its EHLO reply (--no-pipelining, which also refuses a client that pipelines anyway;
 * --no-starttls), refuse EHLO so that clients fall back to HELO (--no-ehlo), send cleartext
 * after its 220 to STARTTLS (--tls-garbage, the injection a client must discard), and keep
 * every accepted message (--save DIR).
 *
 * RFC 5321 (SMTP), 3207 (STARTTLS), 2920 (PIPELINING), 1870 (SIZE), 6152 (8BITMIME),
 * 2034 + 3463 (enhanced status codes).
 *
 * What it owns: the listener, one state machine per connection (every change through
 * session_set_state), the DATA scanner, and the tallies: messages accepted, their recipients
 * and octets (after dot-unstuffing), the times of the first and last, connections, rejections.
 * On SIGTERM/SIGINT it prints
 *   smtpsink: messages=N recipients=N bytes=N first=T last=T sessions=N rejected=N peak=N
 * (peak: the most connections open at once)
 * (T: unix time with milliseconds, 0.000 before the first message) and exits 0. With --stats
 * FILE the same line replaces FILE atomically (write FILE.tmp, rename) after every accepted
 * message, at most every SINK_STATS_MS milliseconds and never later than that after the last
 * one, so a benchmark can poll it. At start it prints "smtpsink: listening=ADDR:PORT" (the
 * real port when --listen asks for port 0).
 *
 * Strictness: a command line is at most SINK_LINE_MAX octets and must end in CRLF; the end of
 * data is CRLF "." CRLF and nothing else (a bare LF never starts a line); a leading dot is
 * removed from every other line that has one; a message with a bare CR or LF, a line longer
 * than 998 octets or more than --max-size octets is refused at its end with 5xx. Every
 * peer-controlled quantity is bounded: line length, recipients per message, 5xx replies per
 * session, buffered replies, idle time (--timeout), connections (--max-sessions).
 *
 * --save DIR writes each message it accepts (and, with --drop-after-dot, each it drops after)
 * as DIR/NNNNNN.eml, the content octets after dot-unstuffing, and DIR/NNNNNN.env, its
 * envelope ("MAIL FROM:<a>" then one "RCPT TO:<b>" per accepted recipient, LF after each),
 * NNNNNN counting from 000001 in the order the final dots arrived. Both are complete before
 * the reply leaves (written to NAME.tmp, then renamed).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "relay/buf.h"
#include "tests/tools/lib_tool.h"

#define SINK_LINE_MAX      TOOL_LINE_MAX /* command line octets, without CRLF */
#define SINK_TEXT_LINE_MAX 998           /* RFC 5322 2.1.1: message line octets, without CRLF */
#define SINK_REPLY_MAX     1024          /* one (possibly multi-line) reply */
#define SINK_CUSTOM_MAX    512           /* a reply given on the command line */
#define SINK_RCPTS_MAX     1000
#define SINK_ERRORS_MAX    20           /* 5xx replies before 421 and close */
#define SINK_BUDGET        64           /* commands per read event */
#define SINK_OUTPUT_MAX    (256 * 1024) /* buffered replies before reading pauses */
#define SINK_INPUT_MAX     (256 * 1024) /* read high watermark */
#define SINK_STATS_MS      20
#define SINK_DEFAULT_SIZE  (50u << 20)
#define SINK_RULES_MAX     16 /* --rcpt-rule */
#define SINK_PREFIX_MAX    64 /* a --rcpt-rule local part prefix */

enum sink_state {
	SINK_STATE_HANDSHAKE,  /* TLS handshake after STARTTLS */
	SINK_STATE_GREETED,    /* waiting for EHLO/HELO */
	SINK_STATE_READY,      /* after EHLO/HELO */
	SINK_STATE_MAIL,       /* after MAIL */
	SINK_STATE_RCPT,       /* after at least one RCPT */
	SINK_STATE_DATA,       /* reading the message */
	SINK_STATE_TLS_SWITCH, /* 220 to STARTTLS queued; switch once it is flushed */
	SINK_STATE_CLOSING,    /* last reply queued; freed once it is flushed */
};

static const char *const state_names[] = {
    "handshake", "greeted", "ready", "mail", "rcpt", "data", "tls_switch", "closing",
};

/* Where the DATA scanner is within a line. */
enum data_state {
	DATA_LINE_START, /* after CRLF (or DATA's 354): a dot here is special */
	DATA_DOT,        /* a dot at line start */
	DATA_DOT_CR,     /* dot, CR at line start: LF ends the data */
	DATA_TEXT,       /* within a line */
	DATA_CR,         /* after a CR within a line */
};

enum sink_after { SINK_AFTER_NONE, SINK_AFTER_CLOSE, SINK_AFTER_STARTTLS };

/* --rcpt-rule PREFIX=REPLY: recipients whose local part starts with PREFIX get REPLY. */
struct sink_rule {
	char prefix[SINK_PREFIX_MAX + 1];
	const char *reply;
};

struct sink_options {
	const char *listen;
	const char *hostname;
	const char *tls_cert, *tls_key;
	uint64_t delay_ms;
	uint32_t fail_ppm; /* of end-of-data replies that get fail_reply, per million */
	const char *fail_reply;
	const char *reply_rcpt;
	const char *reply_data;
	const char *stats;
	uint64_t max_size;
	uint64_t timeout;
	uint64_t max_sessions;
	uint64_t seed;
	bool verbose;
	struct sink_rule rules[SINK_RULES_MAX];
	size_t nrules;
	uint64_t stall_data; /* seconds before the reply to the final dot */
	bool drop_after_dot;
	bool no_pipelining;
	bool no_starttls;
	bool tls_garbage;
	bool no_ehlo;
	const char *save;
};

struct sink_session;
LIST_HEAD(session_list, sink_session);

struct sink {
	struct sink_options opt;
	struct event_base *base;
	SSL_CTX *tls;
	struct evconnlistener *listener;
	struct session_list sessions;
	uint64_t nsessions; /* open now */
	uint64_t next_id;
	/* tallies */
	uint64_t messages, recipients, bytes, rejected, sessions_total, sessions_peak;
	int64_t first_ms, last_ms;
	/* --stats */
	struct event *stats_timer;
	int64_t stats_written_ms; /* monotonic */
	uint64_t rng;
	struct event *sigint, *sigterm;
	uint64_t saved; /* --save: messages written so far */
};

struct sink_session {
	struct sink *sink;
	uint64_t id;
	LIST_ENTRY(sink_session) entry;
	struct bufferevent *bev;
	evutil_socket_t fd;  /* ours to close until a TLS bufferevent owns it (then -1) */
	struct event *kick;  /* continues input, switches to TLS, frees: outside bev callbacks */
	struct event *delay; /* --delay-ms before a reply */
	enum sink_state state;
	bool tls;
	bool output_paused;
	int errors;
	/* transaction */
	unsigned rcpts_total, rcpts_accepted;
	struct buf envelope; /* --save: "MAIL FROM:<a>\n" "RCPT TO:<b>\n"... */
	struct buf content;  /* --save: the message after unstuffing */
	bool content_failed; /* --save: content did not fit in memory */
	bool stall_next;     /* the next reply waits --stall-data more */
	/* DATA */
	enum data_state ds;
	uint64_t data_bytes;
	size_t line_len;
	bool bare, too_long, too_big;
	/* the reply waiting for --delay-ms */
	bool delaying;
	char pending[SINK_REPLY_MAX];
	size_t pending_len;
	enum sink_after pending_after;
	bool pending_accept; /* an accepted message: counted when its reply leaves */
	bool pending_reject;
	unsigned pending_rcpts;
	uint64_t pending_bytes;
};

static void session_process(struct sink_session *s);
static void session_end(struct sink_session *s);

/* ---- helpers ---- */

/* xorshift64*: enough for --fail-rate, reproducible with --seed. */
static uint64_t rng_next(struct sink *k)
{
	k->rng ^= k->rng >> 12;
	k->rng ^= k->rng << 25;
	k->rng ^= k->rng >> 27;
	return k->rng * 0x2545F4914F6CDD1DULL;
}

/* "P" or "P.FFFF" percent, 0..100, into parts per million. */
static int parse_percent(const char *s, uint32_t *ppm)
{
	uint64_t whole = 0, frac = 0, scale = 10000;
	const char *dot = strchr(s, '.');
	char head[8];
	size_t hl = dot ? (size_t)(dot - s) : strlen(s);
	if (hl == 0 || hl >= sizeof head)
		return -1;
	memcpy(head, s, hl);
	head[hl] = '\0';
	if (tool_number_parse(head, 0, 100, &whole) == -1)
		return -1;
	if (dot != NULL) {
		const char *f = dot + 1;
		if (*f == '\0' || strlen(f) > 4)
			return -1;
		for (; *f != '\0'; f++) {
			if (*f < '0' || *f > '9')
				return -1;
			scale /= 10;
			frac += (uint64_t)(*f - '0') * scale;
		}
	}
	uint64_t v = whole * 10000 + frac;
	if (v > 1000000)
		return -1;
	*ppm = (uint32_t)v;
	return 0;
}

/* A reply given on the command line: "DDD" or "DDD text", first digit 2..5, printable. */
static bool reply_valid(const char *r)
{
	size_t n = strlen(r);
	if (n < 3 || n > SINK_CUSTOM_MAX || r[0] < '2' || r[0] > '5' ||
	    !isdigit((unsigned char)r[1]) || !isdigit((unsigned char)r[2]) ||
	    (n > 3 && r[3] != ' '))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isprint((unsigned char)r[i]))
			return false;
	return true;
}

static void session_set_state(struct sink_session *s, enum sink_state next)
{
	if (s->sink->opt.verbose && s->state != next)
		fprintf(stderr, "smtpsink: session=%" PRIu64 " event=state from=%s to=%s\n", s->id,
		        state_names[s->state], state_names[next]);
	s->state = next;
}

/* ---- stats ---- */

static void stats_format(const struct sink *k, char *out, size_t len)
{
	snprintf(out, len,
	         "smtpsink: messages=%" PRIu64 " recipients=%" PRIu64 " bytes=%" PRIu64
	         " first=%" PRId64 ".%03" PRId64 " last=%" PRId64 ".%03" PRId64 " sessions=%" PRIu64
	         " rejected=%" PRIu64 " peak=%" PRIu64 "\n",
	         k->messages, k->recipients, k->bytes, k->first_ms / 1000, k->first_ms % 1000,
	         k->last_ms / 1000, k->last_ms % 1000, k->sessions_total, k->rejected,
	         k->sessions_peak);
}

/* Replaces --stats FILE with the current line (write FILE.tmp, then rename). */
static void stats_write(struct sink *k)
{
	if (k->opt.stats == NULL)
		return;
	char line[512], tmp[4096 + 8];
	stats_format(k, line, sizeof line);
	int n = snprintf(tmp, sizeof tmp, "%s.tmp", k->opt.stats);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1) {
		fprintf(stderr, "smtpsink: %s: %s\n", tmp, strerror(errno));
		return;
	}
	size_t len = strlen(line);
	ssize_t w = write(fd, line, len);
	if (close(fd) == -1 || w != (ssize_t)len || rename(tmp, k->opt.stats) == -1)
		fprintf(stderr, "smtpsink: cannot write %s: %s\n", k->opt.stats, strerror(errno));
	k->stats_written_ms = tool_mono_ms();
}

static void on_stats_timer(evutil_socket_t fd, short what, void *arg)
{
	stats_write(arg);
}

/* After a change: write now, or within SINK_STATS_MS when the last write was too recent. */
static void stats_touch(struct sink *k)
{
	if (k->opt.stats == NULL || evtimer_pending(k->stats_timer, NULL))
		return;
	int64_t since = tool_mono_ms() - k->stats_written_ms;
	if (since >= SINK_STATS_MS) {
		stats_write(k);
		return;
	}
	struct timeval tv = {0, (suseconds_t)((SINK_STATS_MS - since) * 1000)};
	evtimer_add(k->stats_timer, &tv);
}

/* ---- replies ---- */

static void session_close(struct sink_session *s);

/* Sends the pending reply and does what must follow it. */
static void reply_emit(struct sink_session *s)
{
	struct sink *k = s->sink;
	s->delaying = false;
	if (bufferevent_write(s->bev, s->pending, s->pending_len) == -1) {
		session_close(s);
		return;
	}
	if (k->opt.verbose)
		fprintf(stderr, "smtpsink: session=%" PRIu64 " event=reply text=\"%.*s\"\n", s->id,
		        (int)(s->pending_len > 2 ? s->pending_len - 2 : 0), s->pending);
	if (s->pending_accept) {
		int64_t now = tool_unix_ms();
		k->messages++;
		k->recipients += s->pending_rcpts;
		k->bytes += s->pending_bytes;
		if (k->first_ms == 0)
			k->first_ms = now;
		k->last_ms = now;
		s->pending_accept = false;
		stats_touch(k);
	} else if (s->pending_reject) {
		k->rejected++;
		s->pending_reject = false;
		stats_touch(k);
	}
	enum sink_after after = s->pending_after;
	s->pending_after = SINK_AFTER_NONE;
	s->pending_len = 0;
	switch (after) {
	case SINK_AFTER_CLOSE:
		session_close(s);
		return;
	case SINK_AFTER_STARTTLS: {
		/* RFC 3207 section 5: whatever came in cleartext after STARTTLS is discarded */
		struct evbuffer *in = bufferevent_get_input(s->bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		session_set_state(s, SINK_STATE_TLS_SWITCH);
		bufferevent_disable(s->bev, EV_READ);
		return; /* on_write kicks the switch once 220 is flushed */
	}
	case SINK_AFTER_NONE:
		break;
	}
}

/*
 * Queues the reply in s->pending (len octets, without the final CRLF), after --delay-ms when
 * set; while it waits the session reads nothing. A 5xx the client caused (protocol_error)
 * counts towards SINK_ERRORS_MAX; replies chosen on the command line never do, so a sink
 * told to refuse keeps its connections.
 */
static void reply_queue(struct sink_session *s, size_t len, enum sink_after after,
                        bool protocol_error)
{
	struct sink *k = s->sink;
	if (protocol_error && s->pending[0] == '5' && ++s->errors >= SINK_ERRORS_MAX &&
	    after == SINK_AFTER_NONE)
		after = SINK_AFTER_CLOSE; /* the 5xx goes out, then the connection ends */
	s->pending[len++] = '\r';
	s->pending[len++] = '\n';
	s->pending_len = len;
	s->pending_after = after;
	uint64_t delay_ms = k->opt.delay_ms;
	if (s->stall_next) {
		delay_ms += k->opt.stall_data * 1000;
		s->stall_next = false;
	}
	if (delay_ms == 0) {
		reply_emit(s);
		return;
	}
	s->delaying = true;
	bufferevent_disable(s->bev, EV_READ);
	struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000};
	evtimer_add(s->delay, &tv);
}

static void reply(struct sink_session *s, enum sink_after after, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Queues one reply of the sink's own (fmt without the final CRLF; a multi-line reply has
 * "\r\n" between its lines). */
static void reply(struct sink_session *s, enum sink_after after, const char *fmt, ...)
{
	if (s->delaying) /* cannot happen: processing stops while a reply waits */
		reply_emit(s);
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s->pending, sizeof s->pending - 2, fmt, ap);
	va_end(ap);
	size_t len = n < 0                               ? 0
	             : (size_t)n < sizeof s->pending - 2 ? (size_t)n
	                                                 : sizeof s->pending - 3;
	reply_queue(s, len, after, true);
}

/* Queues a reply given on the command line (checked by reply_valid: fits, one line). */
static void reply_configured(struct sink_session *s, const char *text)
{
	if (s->delaying)
		reply_emit(s);
	size_t len = strlen(text);
	if (len > sizeof s->pending - 3)
		len = sizeof s->pending - 3;
	memcpy(s->pending, text, len);
	reply_queue(s, len, SINK_AFTER_NONE, false);
}

static bool reading_state(enum sink_state st)
{
	return st == SINK_STATE_GREETED || st == SINK_STATE_READY || st == SINK_STATE_MAIL ||
	       st == SINK_STATE_RCPT || st == SINK_STATE_DATA;
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
	struct sink_session *s = arg;
	reply_emit(s);
	if (reading_state(s->state)) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

/* ---- DATA ---- */

static void transaction_reset(struct sink_session *s)
{
	s->rcpts_total = 0;
	s->rcpts_accepted = 0;
	buf_reset(&s->envelope);
	buf_reset(&s->content);
	s->content_failed = false;
}

/* One octet of message content (after unstuffing): counts it, checks line ends and lengths. */
static void data_octet(struct sink_session *s, unsigned char c)
{
	if (++s->data_bytes > s->sink->opt.max_size)
		s->too_big = true;
	else if (s->sink->opt.save != NULL && !s->content_failed &&
	         buf_append(&s->content, &c, 1) == -1)
		s->content_failed = true;
	if (c == '\n') {
		if (s->ds == DATA_CR) {
			s->ds = DATA_LINE_START;
			s->line_len = 0;
		} else {
			s->bare = true; /* a bare LF never starts a line */
			s->ds = DATA_TEXT;
		}
		return;
	}
	if (s->ds == DATA_CR)
		s->bare = true; /* the CR before this octet was bare */
	if (c == '\r') {
		s->ds = DATA_CR;
		return;
	}
	s->ds = DATA_TEXT;
	if (++s->line_len > SINK_TEXT_LINE_MAX)
		s->too_long = true;
}

/* Scans p[0..len) of DATA. Returns the octets used; *done when CRLF.CRLF was reached. */
static size_t data_scan(struct sink_session *s, const unsigned char *p, size_t len, bool *done)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		switch (s->ds) {
		case DATA_LINE_START:
			if (c == '.') {
				s->ds = DATA_DOT;
				continue;
			}
			break;
		case DATA_DOT:
			if (c == '\r') {
				s->ds = DATA_DOT_CR;
				continue;
			}
			/* RFC 5321 4.5.2: the leading dot was stuffing; c starts the line */
			s->ds = DATA_TEXT;
			s->line_len = 0;
			break;
		case DATA_DOT_CR:
			if (c == '\n') {
				*done = true;
				return i + 1;
			}
			/* ".\r" and no LF: the dot was stuffing and the CR is content */
			s->ds = DATA_TEXT;
			s->line_len = 0;
			data_octet(s, '\r');
			break;
		case DATA_TEXT:
		case DATA_CR:
			break;
		}
		data_octet(s, c);
	}
	return len;
}

/* Feeds buffered input to the scanner. Returns true at the end of the data. */
static bool data_feed(struct sink_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	bool done = false;
	while (!done && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v[16];
		int n = evbuffer_peek(in, -1, NULL, v, 16);
		if (n <= 0)
			break;
		size_t used = 0;
		for (int i = 0; i < n && i < 16 && !done; i++)
			used += data_scan(s, v[i].iov_base, v[i].iov_len, &done);
		evbuffer_drain(in, used);
	}
	return done;
}

/* Writes dir/name from data[0..len) through dir/name.tmp and a rename. Returns 0 or -1. */
static int file_write(const char *dir, const char *name, const char *data, size_t len)
{
	char path[4200], tmp[4210];
	int n = snprintf(path, sizeof path, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof path)
		return -1;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		return -1;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w <= 0) {
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)w;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* --save: the message just ended, as NNNNNN.eml and NNNNNN.env. */
static void message_save(struct sink_session *s)
{
	struct sink *k = s->sink;
	char name[32];
	if (s->content_failed) {
		fprintf(stderr, "smtpsink: --save: message too big for memory, not saved\n");
		return;
	}
	k->saved++;
	snprintf(name, sizeof name, "%06" PRIu64 ".eml", k->saved);
	int rc =
	    file_write(k->opt.save, name, s->content.data ? s->content.data : "", s->content.len);
	snprintf(name, sizeof name, "%06" PRIu64 ".env", k->saved);
	if (rc == 0)
		rc = file_write(k->opt.save, name, s->envelope.data ? s->envelope.data : "",
		                s->envelope.len);
	if (rc == -1)
		fprintf(stderr, "smtpsink: --save %s: cannot write %s: %s\n", k->opt.save, name,
		        strerror(errno));
}

static void data_end(struct sink_session *s)
{
	const struct sink_options *o = &s->sink->opt;
	const char *text;
	char ok[64];
	bool configured = false;
	if (s->too_big) {
		text = "552 5.3.4 Message size exceeds fixed maximum message size";
	} else if (s->bare) {
		text = "550 5.6.0 Message refused: bare CR or LF in data";
	} else if (s->too_long) {
		text = "550 5.6.0 Message refused: line longer than 998 octets";
	} else if (o->fail_ppm > 0 && rng_next(s->sink) % 1000000 < o->fail_ppm) {
		text = o->fail_reply;
		configured = true;
	} else if (o->reply_data != NULL) {
		text = o->reply_data;
		configured = true;
	} else {
		snprintf(ok, sizeof ok, "250 2.0.0 Ok: queued as %016" PRIx64, rng_next(s->sink));
		text = ok;
	}
	bool clean = !s->too_big && !s->bare && !s->too_long;
	if (o->save != NULL && (text[0] == '2' || (o->drop_after_dot && clean)))
		message_save(s);
	if (o->drop_after_dot && clean) {
		if (o->verbose)
			fprintf(stderr, "smtpsink: session=%" PRIu64 " event=drop_after_dot\n",
			        s->id);
		transaction_reset(s);
		session_end(s);
		return;
	}
	if (text[0] == '2') {
		s->pending_accept = true;
		s->pending_rcpts = s->rcpts_accepted;
		s->pending_bytes = s->data_bytes;
	} else {
		s->pending_reject = true;
	}
	transaction_reset(s);
	session_set_state(s, SINK_STATE_READY);
	s->stall_next = o->stall_data > 0;
	if (configured)
		reply_configured(s, text);
	else
		reply(s, SINK_AFTER_NONE, "%s", text);
}

/* ---- commands ---- */

/* The address of "FROM:<...>" / "TO:<...>" and what follows it; NULL when malformed. */
static const char *path_parse(const char *arg, const char *prefix, size_t *addr_len,
                              const char **params)
{
	size_t pl = strlen(prefix);
	if (strncasecmp(arg, prefix, pl) != 0)
		return NULL;
	const char *p = arg + pl;
	while (*p == ' ')
		p++;
	if (*p != '<')
		return NULL;
	const char *close = strchr(p, '>');
	if (close == NULL)
		return NULL;
	*addr_len = (size_t)(close - p - 1);
	*params = close + 1;
	return p + 1;
}

static bool starttls_offered(const struct sink_session *s)
{
	return s->sink->tls != NULL && !s->tls && !s->sink->opt.no_starttls;
}

static void cmd_ehlo(struct sink_session *s, const char *arg, bool esmtp)
{
	struct sink *k = s->sink;
	if (*arg == '\0') {
		reply(s, SINK_AFTER_NONE, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	if (esmtp && k->opt.no_ehlo) {
		reply(s, SINK_AFTER_NONE, "502 5.5.2 EHLO not supported, say HELO");
		return;
	}
	transaction_reset(s);
	session_set_state(s, SINK_STATE_READY);
	if (!esmtp) {
		reply(s, SINK_AFTER_NONE, "250 %s", k->opt.hostname);
		return;
	}
	reply(s, SINK_AFTER_NONE,
	      "250-%s Hello %.64s\r\n%s250-8BITMIME\r\n250-SIZE %" PRIu64
	      "\r\n250-ENHANCEDSTATUSCODES\r\n%s250 SMTPUTF8",
	      k->opt.hostname, arg, k->opt.no_pipelining ? "" : "250-PIPELINING\r\n",
	      k->opt.max_size, starttls_offered(s) ? "250-STARTTLS\r\n" : "");
}

static void cmd_mail(struct sink_session *s, const char *arg)
{
	if (s->state == SINK_STATE_GREETED) {
		reply(s, SINK_AFTER_NONE, "503 5.5.1 Send EHLO first");
		return;
	}
	if (s->state != SINK_STATE_READY) {
		reply(s, SINK_AFTER_NONE, "503 5.5.1 Nested MAIL command");
		return;
	}
	size_t alen;
	const char *params;
	const char *from = path_parse(arg, "FROM:", &alen, &params);
	if (from == NULL) {
		reply(s, SINK_AFTER_NONE, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	const char *size = strcasestr(params, "SIZE=");
	if (size != NULL) {
		char digits[24];
		size_t n = strspn(size + 5, "0123456789");
		uint64_t v;
		if (n == 0 || n >= sizeof digits) {
			reply(s, SINK_AFTER_NONE, "501 5.5.4 Bad SIZE parameter");
			return;
		}
		memcpy(digits, size + 5, n);
		digits[n] = '\0';
		if (tool_number_parse(digits, 0, UINT64_MAX, &v) == -1 ||
		    v > s->sink->opt.max_size) {
			reply(s, SINK_AFTER_NONE,
			      "552 5.3.4 Message size exceeds fixed maximum message size");
			return;
		}
	}
	transaction_reset(s);
	if (s->sink->opt.save != NULL)
		buf_printf(&s->envelope, "MAIL FROM:<%.*s>\n", (int)alen, from);
	session_set_state(s, SINK_STATE_MAIL);
	reply(s, SINK_AFTER_NONE, "250 2.1.0 Ok");
}

/* The reply of the first --rcpt-rule whose prefix starts the local part (ASCII case
 * ignored), or NULL. */
static const char *rule_reply(const struct sink_options *o, const char *addr, size_t len)
{
	const char *at = memchr(addr, '@', len);
	size_t local = at ? (size_t)(at - addr) : len;
	for (size_t i = 0; i < o->nrules; i++) {
		size_t pl = strlen(o->rules[i].prefix);
		if (pl <= local && strncasecmp(addr, o->rules[i].prefix, pl) == 0)
			return o->rules[i].reply;
	}
	return NULL;
}

static void cmd_rcpt(struct sink_session *s, const char *arg)
{
	if (s->state != SINK_STATE_MAIL && s->state != SINK_STATE_RCPT) {
		reply(s, SINK_AFTER_NONE, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	size_t alen;
	const char *params;
	const char *addr = path_parse(arg, "TO:", &alen, &params);
	if (addr == NULL || alen == 0) {
		reply(s, SINK_AFTER_NONE, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->rcpts_total >= SINK_RCPTS_MAX) {
		reply(s, SINK_AFTER_NONE, "452 4.5.3 Too many recipients");
		return;
	}
	s->rcpts_total++;
	session_set_state(s, SINK_STATE_RCPT);
	const char *custom = rule_reply(&s->sink->opt, addr, alen);
	if (custom == NULL)
		custom = s->sink->opt.reply_rcpt;
	if (custom == NULL || custom[0] == '2') {
		s->rcpts_accepted++;
		if (s->sink->opt.save != NULL)
			buf_printf(&s->envelope, "RCPT TO:<%.*s>\n", (int)alen, addr);
	}
	if (custom != NULL)
		reply_configured(s, custom);
	else
		reply(s, SINK_AFTER_NONE, "250 2.1.5 Ok");
}

static void cmd_data(struct sink_session *s, const char *arg)
{
	if (*arg != '\0') {
		reply(s, SINK_AFTER_NONE, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->state != SINK_STATE_MAIL && s->state != SINK_STATE_RCPT) {
		reply(s, SINK_AFTER_NONE, "503 5.5.1 Need MAIL and RCPT before DATA");
		return;
	}
	if (s->rcpts_accepted == 0) {
		reply(s, SINK_AFTER_NONE, "554 5.5.1 No valid recipients");
		return;
	}
	s->ds = DATA_LINE_START;
	s->data_bytes = 0;
	s->line_len = 0;
	s->bare = s->too_long = s->too_big = false;
	session_set_state(s, SINK_STATE_DATA);
	reply(s, SINK_AFTER_NONE, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_starttls(struct sink_session *s, const char *arg)
{
	if (s->sink->tls == NULL || s->sink->opt.no_starttls) {
		reply(s, SINK_AFTER_NONE, "502 5.5.1 STARTTLS not available");
	} else if (s->tls) {
		reply(s, SINK_AFTER_NONE, "503 5.5.1 TLS already active");
	} else if (*arg != '\0') {
		reply(s, SINK_AFTER_NONE, "501 5.5.4 Syntax: STARTTLS");
	} else if (s->state != SINK_STATE_READY) {
		reply(s, SINK_AFTER_NONE, "503 5.5.1 Send EHLO first, and no mail transaction");
	} else {
		reply(s, SINK_AFTER_STARTTLS,
		      s->sink->opt.tls_garbage
		          ? "220 2.0.0 Ready to start TLS\r\n250-PIPELINING\r\n250 injected in "
		            "cleartext"
		          : "220 2.0.0 Ready to start TLS");
	}
}

static void cmd_rset(struct sink_session *s, const char *arg)
{
	transaction_reset(s);
	if (s->state == SINK_STATE_MAIL || s->state == SINK_STATE_RCPT)
		session_set_state(s, SINK_STATE_READY);
	reply(s, SINK_AFTER_NONE, "250 2.0.0 Ok");
}

static void cmd_noop(struct sink_session *s, const char *arg)
{
	reply(s, SINK_AFTER_NONE, "250 2.0.0 Ok");
}

static void cmd_quit(struct sink_session *s, const char *arg)
{
	reply(s, SINK_AFTER_CLOSE, "221 2.0.0 %s Bye", s->sink->opt.hostname);
}

static void cmd_vrfy(struct sink_session *s, const char *arg)
{
	reply(s, SINK_AFTER_NONE, "252 2.5.0 Cannot VRFY user");
}

static void cmd_help(struct sink_session *s, const char *arg)
{
	reply(s, SINK_AFTER_NONE,
	      "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT "
	      "STARTTLS");
}

static void cmd_ehlo_esmtp(struct sink_session *s, const char *arg)
{
	cmd_ehlo(s, arg, true);
}

static void cmd_helo(struct sink_session *s, const char *arg)
{
	cmd_ehlo(s, arg, false);
}

struct sink_command {
	const char *verb;
	bool needs_helo;
	void (*run)(struct sink_session *s, const char *arg);
};

static const struct sink_command commands[] = {
    {"EHLO", false, cmd_ehlo_esmtp}, {"HELO", false, cmd_helo},         {"MAIL", true, cmd_mail},
    {"RCPT", true, cmd_rcpt},        {"DATA", true, cmd_data},          {"RSET", false, cmd_rset},
    {"NOOP", false, cmd_noop},       {"QUIT", false, cmd_quit},         {"VRFY", true, cmd_vrfy},
    {"HELP", false, cmd_help},       {"STARTTLS", false, cmd_starttls},
};

static void dispatch(struct sink_session *s, const char *line, size_t len)
{
	if (s->sink->opt.verbose)
		fprintf(stderr, "smtpsink: session=%" PRIu64 " event=command text=\"%.*s\"\n",
		        s->id, (int)(len > 200 ? 200 : len), line);
	size_t verb_len = strcspn(line, " ");
	const char *arg = line + verb_len;
	while (*arg == ' ')
		arg++;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		const struct sink_command *c = &commands[i];
		if (strlen(c->verb) != verb_len || strncasecmp(line, c->verb, verb_len) != 0)
			continue;
		if (c->needs_helo && s->state == SINK_STATE_GREETED)
			reply(s, SINK_AFTER_NONE, "503 5.5.1 Send EHLO first");
		else
			c->run(s, arg);
		return;
	}
	reply(s, SINK_AFTER_NONE, "500 5.5.2 Command not recognized");
}

/* ---- input ---- */

/* Handles buffered input within a budget; stops while a reply waits (--delay-ms). */
static void session_process(struct sink_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	for (int budget = SINK_BUDGET; budget > 0; budget--) {
		if (s->delaying || !reading_state(s->state))
			return;
		if (evbuffer_get_length(out) > SINK_OUTPUT_MAX) {
			/* the client does not read its replies: wait for them to drain */
			s->output_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (s->state == SINK_STATE_DATA) {
			if (!data_feed(s))
				return;
			data_end(s);
			continue;
		}
		char line[SINK_LINE_MAX + 2];
		size_t len = 0;
		switch (tool_line_take(in, line, &len, true)) {
		case TOOL_LINE_NONE:
			return;
		case TOOL_LINE_TOO_LONG:
			reply(s, SINK_AFTER_CLOSE, "500 5.5.2 Line too long");
			return;
		case TOOL_LINE_BAD:
			reply(s, SINK_AFTER_NONE, "500 5.5.2 Bare CR, bare LF or NUL in command");
			break;
		case TOOL_LINE_OK:
			if (s->sink->opt.no_pipelining && evbuffer_get_length(in) > 0) {
				/* PIPELINING was not offered: a client must wait for each reply */
				if (s->sink->opt.verbose)
					fprintf(stderr,
					        "smtpsink: session=%" PRIu64
					        " event=improper_pipelining"
					        " text=\"%.*s\"\n",
					        s->id, (int)(len > 200 ? 200 : len), line);
				reply(s, SINK_AFTER_CLOSE,
				      "554 5.5.0 Improper use of SMTP command pipelining");
				return;
			}
			dispatch(s, line, len);
			break;
		}
	}
	if (evbuffer_get_length(in) > 0)
		event_active(s->kick, EV_TIMEOUT, 0);
}

/* ---- sessions ---- */

static void session_free(struct sink_session *s)
{
	struct sink *k = s->sink;
	LIST_REMOVE(s, entry);
	k->nsessions--;
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->fd != -1)
		evutil_closesocket(s->fd);
	event_free(s->kick);
	event_free(s->delay);
	buf_free(&s->envelope);
	buf_free(&s->content);
	free(s);
}

/* Ends the session once the queued output is flushed (now when there is none). */
static void session_close(struct sink_session *s)
{
	if (s->state == SINK_STATE_CLOSING)
		return;
	session_set_state(s, SINK_STATE_CLOSING);
	event_del(s->delay);
	s->delaying = false;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		event_active(s->kick, EV_TIMEOUT, 0);
	else
		bufferevent_enable(s->bev, EV_WRITE); /* bounded by the write timeout */
}

/* Ends the session now, without flushing. */
static void session_end(struct sink_session *s)
{
	session_set_state(s, SINK_STATE_CLOSING);
	event_del(s->delay);
	s->delaying = false;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	event_active(s->kick, EV_TIMEOUT, 0);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct sink_session *s = arg;
	switch (s->state) {
	case SINK_STATE_CLOSING:
	case SINK_STATE_TLS_SWITCH:
		event_active(s->kick, EV_TIMEOUT, 0);
		break;
	default:
		if (s->output_paused) {
			s->output_paused = false;
			if (!s->delaying)
				bufferevent_enable(s->bev, EV_READ);
			event_active(s->kick, EV_TIMEOUT, 0);
		}
		break;
	}
}

static void session_callbacks_set(struct sink_session *s);

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct sink_session *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* TLS handshake after STARTTLS done: the client starts over with EHLO */
		s->tls = true;
		session_set_state(s, SINK_STATE_GREETED);
		return;
	}
	if (s->sink->opt.verbose)
		fprintf(stderr, "smtpsink: session=%" PRIu64 " event=%s state=%s\n", s->id,
		        what & BEV_EVENT_EOF       ? "eof"
		        : what & BEV_EVENT_TIMEOUT ? "timeout"
		                                   : "error",
		        state_names[s->state]);
	session_end(s);
}

/* Replaces the cleartext bufferevent by an OpenSSL one on the same socket. From the kick
 * event, never inside the old bufferevent's callbacks. */
static void tls_switch(struct sink_session *s)
{
	struct sink *k = s->sink;
	SSL *ssl = SSL_new(k->tls);
	if (ssl == NULL) {
		session_end(s);
		return;
	}
	bufferevent_free(s->bev); /* made without BEV_OPT_CLOSE_ON_FREE: fd stays open */
	s->bev = bufferevent_openssl_socket_new(k->base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		/* libevent versions differ on who frees ssl here: leak rather than double free */
		session_free(s);
		return;
	}
	s->fd = -1;
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	session_callbacks_set(s);
	session_set_state(s, SINK_STATE_HANDSHAKE);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct sink_session *s = arg;
	switch (s->state) {
	case SINK_STATE_CLOSING:
		session_free(s);
		break;
	case SINK_STATE_TLS_SWITCH:
		tls_switch(s);
		break;
	default:
		session_process(s);
		break;
	}
}

static void session_callbacks_set(struct sink_session *s)
{
	struct timeval tv = {(time_t)s->sink->opt.timeout, 0};
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SINK_INPUT_MAX);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct sink *k = arg;
	if (k->nsessions >= k->opt.max_sessions) {
		static const char busy[] = "421 4.7.0 Too many connections\r\n";
		ssize_t w = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w; /* best effort */
		evutil_closesocket(fd);
		return;
	}
	struct sink_session *s = calloc(1, sizeof *s);
	if (s != NULL) {
		s->kick = event_new(k->base, -1, 0, on_kick, s);
		s->delay = evtimer_new(k->base, on_delay, s);
		s->bev = bufferevent_socket_new(k->base, fd, 0);
	}
	if (s == NULL || s->kick == NULL || s->delay == NULL || s->bev == NULL) {
		fprintf(stderr, "smtpsink: out of memory for a session\n");
		if (s != NULL) {
			if (s->bev)
				bufferevent_free(s->bev);
			if (s->kick)
				event_free(s->kick);
			if (s->delay)
				event_free(s->delay);
			free(s);
		}
		evutil_closesocket(fd);
		return;
	}
	s->sink = k;
	s->id = ++k->next_id;
	s->fd = fd;
	s->state = SINK_STATE_GREETED;
	LIST_INSERT_HEAD(&k->sessions, s, entry);
	k->nsessions++;
	k->sessions_total++;
	if (k->nsessions > k->sessions_peak)
		k->sessions_peak = k->nsessions;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	session_callbacks_set(s);
	reply(s, SINK_AFTER_NONE, "220 %s ESMTP smtpsink", k->opt.hostname);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	fprintf(stderr, "smtpsink: accept: %s\n", evutil_socket_error_to_string(err));
	/* EMFILE and the like: the listener retries on the next readiness */
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sink *k = arg;
	event_base_loopbreak(k->base);
}

/* ---- start-up ---- */

static void usage(void)
{
	fprintf(stderr,
	        "usage: smtpsink --listen ADDR:PORT [options]\n"
	        "  --listen ADDR:PORT   where to listen; [ADDR]:PORT for IPv6; port 0 picks one\n"
	        "                       (default 127.0.0.1:2525)\n"
	        "  --hostname NAME      name in the greeting and EHLO (default sink.test)\n"
	        "  --tls-cert F --tls-key F  offer STARTTLS with this PEM pair\n"
	        "  --delay-ms N         wait N ms before every reply (default 0)\n"
	        "  --fail-rate P        answer P percent of messages (0..100, up to 4 decimals)\n"
	        "                       with --fail-reply (default \"451 4.3.0 Simulated "
	        "failure\")\n"
	        "  --reply-rcpt TEXT    answer every RCPT with TEXT (\"DDD text\")\n"
	        "  --reply-data TEXT    answer every end of data with TEXT\n"
	        "  --max-size N         SIZE announced and enforced (default 52428800)\n"
	        "  --timeout S          idle seconds before the connection is dropped (default "
	        "300)\n"
	        "  --max-sessions N     simultaneous connections; more get 421 (default 10000)\n"
	        "  --stats FILE         keep FILE up to date with the tallies\n"
	        "  --seed N             seed of --fail-rate's random choices\n"
	        "  --rcpt-rule P=TEXT   answer RCPT with TEXT when the local part starts with P\n"
	        "                       (ASCII case ignored; first match wins; up to 16 rules;\n"
	        "                       before --reply-rcpt)\n"
	        "  --rcpt-by-name       the rules defer=\"450 4.2.1 ...\" and reject=\"550 5.1.1 "
	        "...\"\n"
	        "                       (after any --rcpt-rule)\n"
	        "  --stall-data S       wait S more seconds before answering the final dot\n"
	        "  --drop-after-dot     close the connection at the final dot, without a reply\n"
	        "  --no-pipelining      leave PIPELINING out of EHLO and answer a client that\n"
	        "                       pipelines anyway with 554 and close\n"
	        "  --no-starttls        leave STARTTLS out of EHLO (and refuse it) even with a\n"
	        "                       certificate\n"
	        "  --tls-garbage        send cleartext lines right after the 220 to STARTTLS\n"
	        "  --no-ehlo            answer EHLO with 502 (clients fall back to HELO)\n"
	        "  --save DIR           write each accepted message to DIR (see the file's top)\n"
	        "  --verbose            log commands, replies and state changes on stderr\n");
}

/* Adds a --rcpt-rule "PREFIX=REPLY". Returns NULL or what is wrong. */
static const char *rule_add(struct sink_options *o, const char *text)
{
	const char *eq = strchr(text, '=');
	if (o->nrules >= SINK_RULES_MAX)
		return "--rcpt-rule: at most 16 rules";
	if (eq == NULL || eq == text || (size_t)(eq - text) > SINK_PREFIX_MAX)
		return "--rcpt-rule: want PREFIX=REPLY, PREFIX 1..64 octets";
	for (const char *p = text; p < eq; p++)
		if ((unsigned char)*p <= ' ' || *p == '@' || *p == '<' || *p == '>' || *p == 0x7f)
			return "--rcpt-rule: PREFIX is a local part's start: no spaces, '@' or "
			       "'<>'";
	if (!reply_valid(eq + 1))
		return "--rcpt-rule: want PREFIX=\"DDD text\"";
	struct sink_rule *r = &o->rules[o->nrules++];
	memcpy(r->prefix, text, (size_t)(eq - text));
	r->prefix[eq - text] = '\0';
	r->reply = eq + 1;
	return NULL;
}

/* --hostname NAME */
static int hostname_option(void *target, const char *arg, const char **why)
{
	*(const char **)target = arg;
	return strlen(arg) == 0 || strlen(arg) > 255 || strpbrk(arg, " \r\n\t") != NULL ? -1 : 0;
}

/* --fail-reply, --reply-rcpt, --reply-data: "DDD text" */
static int reply_option(void *target, const char *arg, const char **why)
{
	*(const char **)target = arg;
	return reply_valid(arg) ? 0 : -1;
}

static int fail_rate_option(void *target, const char *arg, const char **why)
{
	return parse_percent(arg, target);
}

static int rcpt_rule_option(void *target, const char *arg, const char **why)
{
	*why = rule_add(target, arg);
	return *why != NULL ? -1 : 0;
}

static int options_parse(int argc, char **argv, struct sink_options *o)
{
	bool by_name = false;
	*o = (struct sink_options){
	    .listen = "127.0.0.1:2525",
	    .hostname = "sink.test",
	    .fail_reply = "451 4.3.0 Simulated failure",
	    .max_size = SINK_DEFAULT_SIZE,
	    .timeout = 300,
	    .max_sessions = 10000,
	    .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32),
	};
	const struct tool_option table[] = {
	    {"listen", TOOL_OPTION_STRING, &o->listen, 0, 0, NULL, false, NULL},
	    {"hostname", TOOL_OPTION_CALL, &o->hostname, 0, 0,
	     "--hostname: 1..255 octets, no spaces", false, hostname_option},
	    {"tls-cert", TOOL_OPTION_STRING, &o->tls_cert, 0, 0, NULL, false, NULL},
	    {"tls-key", TOOL_OPTION_STRING, &o->tls_key, 0, 0, NULL, false, NULL},
	    {"delay-ms", TOOL_OPTION_U64, &o->delay_ms, 0, 3600000, "--delay-ms: 0..3600000", false,
	     NULL},
	    {"fail-rate", TOOL_OPTION_CALL, &o->fail_ppm, 0, 0, "--fail-rate: a percentage 0..100",
	     false, fail_rate_option},
	    {"fail-reply", TOOL_OPTION_CALL, &o->fail_reply, 0, 0,
	     "--fail-reply: want \"DDD text\"", false, reply_option},
	    {"reply-rcpt", TOOL_OPTION_CALL, &o->reply_rcpt, 0, 0,
	     "--reply-rcpt: want \"DDD text\"", false, reply_option},
	    {"reply-data", TOOL_OPTION_CALL, &o->reply_data, 0, 0,
	     "--reply-data: want \"DDD text\"", false, reply_option},
	    {"max-size", TOOL_OPTION_U64, &o->max_size, 1024, UINT32_MAX,
	     "--max-size: 1024..4294967295", false, NULL},
	    {"timeout", TOOL_OPTION_U64, &o->timeout, 1, 86400, "--timeout: 1..86400", false, NULL},
	    {"max-sessions", TOOL_OPTION_U64, &o->max_sessions, 1, 1000000,
	     "--max-sessions: 1..1000000", false, NULL},
	    {"stats", TOOL_OPTION_STRING, &o->stats, 1, 4000, "--stats: a file name", false, NULL},
	    {"seed", TOOL_OPTION_U64, &o->seed, 0, UINT64_MAX, "--seed: a number", false, NULL},
	    {"verbose", TOOL_OPTION_FLAG, &o->verbose, 0, 0, NULL, true, NULL},
	    {"rcpt-rule", TOOL_OPTION_CALL, o, 0, 0, NULL, false, rcpt_rule_option},
	    {"rcpt-by-name", TOOL_OPTION_FLAG, &by_name, 0, 0, NULL, true, NULL},
	    {"stall-data", TOOL_OPTION_U64, &o->stall_data, 0, 3600, "--stall-data: 0..3600", false,
	     NULL},
	    {"drop-after-dot", TOOL_OPTION_FLAG, &o->drop_after_dot, 0, 0, NULL, true, NULL},
	    {"no-pipelining", TOOL_OPTION_FLAG, &o->no_pipelining, 0, 0, NULL, true, NULL},
	    {"no-starttls", TOOL_OPTION_FLAG, &o->no_starttls, 0, 0, NULL, true, NULL},
	    {"tls-garbage", TOOL_OPTION_FLAG, &o->tls_garbage, 0, 0, NULL, true, NULL},
	    {"save", TOOL_OPTION_STRING, &o->save, 1, 4000, "--save: a folder name", false, NULL},
	    {"no-ehlo", TOOL_OPTION_FLAG, &o->no_ehlo, 0, 0, NULL, true, NULL},
	};
	if (tool_options_parse("smtpsink", argc, argv, table, sizeof table / sizeof table[0],
	                       usage) == -1)
		return -1;
	if (by_name) {
		const char *bad = rule_add(o, "defer=450 4.2.1 Mailbox busy, try again later");
		if (bad == NULL)
			bad = rule_add(o, "reject=550 5.1.1 No such user here");
		if (bad != NULL) {
			fprintf(stderr, "smtpsink: --rcpt-by-name: %s\n", bad);
			return -1;
		}
	}
	if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
		fprintf(stderr, "smtpsink: --tls-cert and --tls-key go together\n");
		return -1;
	}
	if (o->seed == 0)
		o->seed = 0x9E3779B97F4A7C15ULL; /* xorshift needs a non-zero state */
	return 0;
}

static SSL_CTX *tls_setup(const struct sink_options *o)
{
	SSL_CTX *ctx = tool_tls_context_new("smtpsink", TLS_server_method());
	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char err[256];
		ERR_error_string_n(ERR_get_error(), err, sizeof err);
		fprintf(stderr, "smtpsink: TLS: %s\n", err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* "A.B.C.D:PORT" or "[IPv6]:PORT", numeric, PORT 0..65535 (0: the kernel picks one). */
static int listen_parse(const char *text, struct sockaddr_storage *ss, int *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon = strrchr(text, ':');
	size_t hl;
	const char *h = text;
	if (colon == NULL)
		return -1;
	if (text[0] == '[') {
		if (colon == text || colon[-1] != ']')
			return -1;
		h = text + 1;
		hl = (size_t)(colon - 1 - h);
	} else {
		hl = (size_t)(colon - text);
	}
	if (hl == 0 || hl >= sizeof host)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	uint64_t port;
	if (tool_number_parse(colon + 1, 0, 65535, &port) == -1)
		return -1;
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (text[0] != '[' && evutil_inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = (int)sizeof *in4;
	} else if (text[0] == '[' && evutil_inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = (int)sizeof *in6;
	} else {
		return -1;
	}
	return 0;
}

static int listen_setup(struct sink *k)
{
	struct sockaddr_storage ss;
	int len = 0;
	if (listen_parse(k->opt.listen, &ss, &len) == -1) {
		fprintf(stderr, "smtpsink: --listen %s: want A.B.C.D:PORT or [IPv6]:PORT\n",
		        k->opt.listen);
		return -1;
	}
	k->listener = evconnlistener_new_bind(k->base, on_accept, k,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                          LEV_OPT_CLOSE_ON_EXEC,
	                                      1024, (struct sockaddr *)&ss, len);
	if (k->listener == NULL) {
		fprintf(stderr, "smtpsink: cannot listen on %s: %s\n", k->opt.listen,
		        strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(k->listener, on_accept_error);
	struct sockaddr_storage bound;
	socklen_t bl = sizeof bound;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (getsockname(evconnlistener_get_fd(k->listener), (struct sockaddr *)&bound, &bl) == 0) {
		if (bound.ss_family == AF_INET) {
			struct sockaddr_in *in4 = (struct sockaddr_in *)&bound;
			evutil_inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
			port = ntohs(in4->sin_port);
		} else if (bound.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&bound;
			evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
			port = ntohs(in6->sin6_port);
		}
	}
	printf(bound.ss_family == AF_INET6 ? "smtpsink: listening=[%s]:%u\n"
	                                   : "smtpsink: listening=%s:%u\n",
	       host, port);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	static struct sink k;
	if (options_parse(argc, argv, &k.opt) == -1)
		return 2;
	tool_process_setup();
	LIST_INIT(&k.sessions);
	k.rng = k.opt.seed;
	int rc = 1;
	if (k.opt.tls_cert != NULL && (k.tls = tls_setup(&k.opt)) == NULL)
		goto out;
	k.base = event_base_new();
	if (k.base == NULL) {
		fprintf(stderr, "smtpsink: event_base_new failed\n");
		goto out;
	}
	k.stats_timer = evtimer_new(k.base, on_stats_timer, &k);
	if (k.stats_timer == NULL ||
	    tool_signals_add(k.base, on_signal, &k, &k.sigint, &k.sigterm) == -1) {
		fprintf(stderr, "smtpsink: cannot set up events\n");
		goto out;
	}
	if (listen_setup(&k) == -1)
		goto out;
	stats_write(&k);
	if (event_base_dispatch(k.base) == -1) {
		fprintf(stderr, "smtpsink: event_base_dispatch failed\n");
		goto out;
	}
	char line[512];
	stats_format(&k, line, sizeof line);
	fputs(line, stdout);
	fflush(stdout);
	stats_write(&k);
	rc = 0;
out:
	while (!LIST_EMPTY(&k.sessions))
		session_free(LIST_FIRST(&k.sessions));
	if (k.listener)
		evconnlistener_free(k.listener);
	if (k.stats_timer)
		event_free(k.stats_timer);
	if (k.sigint)
		event_free(k.sigint);
	if (k.sigterm)
		event_free(k.sigterm);
	if (k.base)
		event_base_free(k.base);
	SSL_CTX_free(k.tls);
	return rc;
}
