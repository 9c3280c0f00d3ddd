/*
 * smtpc.c: the outbound SMTP client (see smtpc.h), one explicit state machine per connection.
 *
 * RFC 5321 (SMTP), 3207 (STARTTLS), 2920 (PIPELINING), 1870 (SIZE), 6152 (8BITMIME),
 * 6531 (SMTPUTF8), 2034 + 3463 (enhanced status codes).
 *
 * What it owns: the socket and its bufferevent (cleartext, then OpenSSL after STARTTLS), the
 * reply reader (relay/smtp_reply.c, fed one bounded line at a time), the transaction of the
 * message in flight and its result. Every state change goes through conn_set_state(), which
 * logs "old -> new" at debug level.
 *
 * Pipelining follows Postfix's smtp_proto.c idea of separate send and receive positions in
 * the command sequence [RSET] MAIL RCPT... DATA: with PIPELINING the whole sequence is written
 * at once (RFC 2920 section 3.1) and the replies are matched in order as they come; without
 * it the send position never gets ahead of the receive position. The body waits for 354.
 *
 * Callbacks to the owner (results, IDLE, CLOSED) run only from the connection's own kick
 * event, never inside a bufferevent callback or a call from the owner; freeing from inside
 * one of them is deferred to the kick's end (free_wanted). The bufferevent itself is freed
 * only from the kick (closing marks the connection and kicks).
 *
 * Limits on what the server sends: reply lines and replies (smtp_reply.h), reply lines
 * handled per event (SMTPC_BUDGET), a deadline per reply (the timer, not the bufferevent's
 * read timeout, so a server dripping one octet at a time cannot stretch it).
 */
#include "relay/smtpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "relay/buf.h"
#include "relay/log.h"
#include "relay/tls.h"

#define SMTPC_BUDGET      256 /* reply lines handled per read event */
#define SMTPC_ADDRESS_MAX 254 /* RFC 5321 4.5.3.1.3: 256 octets of path with the <> */
#define SMTPC_FAIL_MAX    512 /* made-up failure texts */

enum smtpc_state {
	SMTPC_STATE_CONNECTING, /* TCP connect under way */
	SMTPC_STATE_GREETING,   /* waiting for 220 */
	SMTPC_STATE_EHLO,       /* EHLO sent */
	SMTPC_STATE_HELO,       /* HELO sent after EHLO got 5xx */
	SMTPC_STATE_STARTTLS,   /* STARTTLS sent */
	SMTPC_STATE_TLS_SWITCH, /* 220 to STARTTLS read: the kick replaces the bufferevent */
	SMTPC_STATE_HANDSHAKE,  /* TLS handshake under way */
	SMTPC_STATE_READY,      /* between messages */
	SMTPC_STATE_COMMANDS,   /* replies to [RSET] MAIL RCPT... DATA awaited */
	SMTPC_STATE_BODY,       /* 354 read; body and final dot queued, not all written yet */
	SMTPC_STATE_DOT,        /* final dot written; waiting for its reply */
	SMTPC_STATE_QUIT,       /* QUIT sent; closing on its reply, EOF or quit_timeout */
	SMTPC_STATE_CLOSED,     /* over; the kick frees the bufferevent, the owner frees c */
};

static const char *const state_names[] = {
    "connecting", "greeting", "ehlo", "helo", "starttls", "tls_switch", "handshake",
    "ready",      "commands", "body", "dot",  "quit",     "closed",
};

/* Position in the command sequence of a transaction: [RSET] MAIL RCPT*n DATA. */
enum smtpc_step { STEP_RSET, STEP_MAIL, STEP_RCPT, STEP_DATA, STEP_END };

struct smtpc_pos {
	enum smtpc_step step;
	size_t rcpt; /* STEP_RCPT: which recipient */
};

/* A reply kept for the result; its text lives in the transaction's arena. */
struct reply_slot {
	int code; /* 0: none came (or made up, then enhanced/text say what) */
	char enhanced[SMTP_ENHANCED_MAX + 1];
	size_t text_off; /* in arena; SIZE_MAX: "" */
};

struct smtpc_txn {
	bool active;   /* a message was given and its callback is owed */
	bool started;  /* its commands began to go out */
	bool finished; /* the result is decided, waiting for the kick to deliver it */
	struct smtpc_message m;
	smtpc_result_fn *cb;
	uint64_t ref;
	void *arg;
	struct smtpc_pos send, recv;
	struct reply_slot mail, data, final;
	struct reply_slot *rcpt; /* m.nrcpts of them */
	bool mail_ok;
	size_t accepted;  /* RCPTs answered 2xx after a 2xx MAIL */
	bool empty_data;  /* 354 with nothing to send: "." alone, its reply ignored */
	struct buf arena; /* reply texts, NUL-terminated */
	/* the result, once finished */
	enum smtpc_scope scope;
	enum smtpc_failure failure;
	bool host_permanent;
	struct reply_slot message_reply;
	unsigned number;
};

struct smtpc {
	uint64_t id;
	struct event_base *base;
	struct smtpc_params p; /* pointers below replace the borrowed ones */
	struct sockaddr_storage remote, source;
	char *remote_name;
	char *ehlo_name;
	char remote_addr[INET6_ADDRSTRLEN + 10];
	char remote_log[128]; /* remote_name escaped */
	SSL_CTX *tls_ctx;     /* our reference */
	evutil_socket_t fd;
	struct bufferevent *bev;
	bool bev_owns_fd;
	struct event *kick;  /* deliveries, the TLS switch, freeing the bufferevent */
	struct event *timer; /* connect / reply / data / quit deadline, idle time */
	enum smtpc_state state;
	struct smtp_reply reply; /* being read */
	/* what the session learned */
	bool established;
	bool tls;
	char tls_desc[96];
	char greeting_name[SMTP_REPLY_NAME_MAX + 1];
	unsigned ext;
	uint64_t size_max;
	unsigned messages;
	size_t discarded;   /* cleartext octets after the 220 to STARTTLS, thrown away */
	bool need_rset;     /* the last transaction stopped midway */
	bool connect_begun; /* conn_start() ran (from the first kick) */
	bool quit_wanted;
	/* why it ended */
	enum smtpc_failure failure;
	int fail_code;
	char fail_enhanced[SMTP_ENHANCED_MAX + 1];
	char fail_text[SMTP_REPLY_TEXT_MAX + 1];
	bool host_permanent;
	/* deliveries owed to the owner, made by the kick */
	bool notify_result, notify_idle, notify_closed, closed_told;
	int in_callback;
	bool free_wanted;
	struct smtpc_txn t;
};

static void conn_close_now(struct smtpc *c);
static void conn_quit(struct smtpc *c);
static void conn_start(struct smtpc *c);
static void txn_start(struct smtpc *c);
static void conn_ready(struct smtpc *c);

/* ---- small helpers ---- */

static void conn_set_state(struct smtpc *c, enum smtpc_state next)
{
	if (c->state != next)
		log_debug(c->id, "event=state from=%s to=%s", state_names[c->state],
		          state_names[next]);
	c->state = next;
}

static void timer_arm(struct smtpc *c, unsigned ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

static void kick(struct smtpc *c)
{
	event_active(c->kick, EV_TIMEOUT, 0);
}

static bool is_2xx(int code)
{
	return code >= 200 && code < 300;
}

/* "a.b.c.d:port" / "[v6]:port" of a socket address. */
static void addr_format(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)ss;
		inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
		port = ntohs(in4->sin_port);
		snprintf(out, outlen, "%s:%u", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		port = ntohs(in6->sin6_port);
		snprintf(out, outlen, "[%s]:%u", ip, port);
	} else {
		snprintf(out, outlen, "unknown");
	}
}

/* True when the name is an IP literal (no SNI for those, RFC 6066 section 3). */
static bool ip_literal(const char *name)
{
	unsigned char tmp[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
}

/* An octet allowed in a mailbox we put between <> (see smtpc_send()). */
static bool address_octet_ok(unsigned char ch, bool utf8)
{
	return ch >= 0x20 && ch != 0x7f && ch != '<' && ch != '>' && (ch < 0x80 || utf8);
}

/* A mailbox we are willing to put between <>: see smtpc_send(). */
static bool address_ok(const char *a, bool allow_empty, bool utf8)
{
	size_t len = strnlen(a, SMTPC_ADDRESS_MAX + 1);
	if (len > SMTPC_ADDRESS_MAX)
		return false;
	if (len == 0)
		return allow_empty;
	bool quoted = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)a[i];
		if (!address_octet_ok(ch, utf8))
			return false;
		if (quoted && ch == '\\') { /* quoted pair: the next octet is taken as is */
			if (++i >= len || !address_octet_ok((unsigned char)a[i], utf8))
				return false;
		} else if (ch == '"') {
			quoted = !quoted;
		} else if (ch == ' ' && !quoted) {
			return false;
		}
	}
	return !quoted;
}

static bool ehlo_name_ok(const char *n)
{
	size_t len = strnlen(n, 256);
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)n[i] <= 0x20 || (unsigned char)n[i] >= 0x7f)
			return false;
	return true;
}

/* ---- reply slots ---- */

static void slot_clear(struct reply_slot *s)
{
	s->code = 0;
	s->enhanced[0] = '\0';
	s->text_off = SIZE_MAX;
}

static void slot_text(struct smtpc_txn *t, struct reply_slot *s, const char *text, size_t len)
{
	size_t off = t->arena.len;
	if (buf_append(&t->arena, text, len) == -1 || buf_append(&t->arena, "", 1) == -1) {
		t->arena.len = off; /* keep what fits; this text reads "" */
		s->text_off = SIZE_MAX;
		return;
	}
	s->text_off = off;
}

static void slot_from_reply(struct smtpc_txn *t, struct reply_slot *s, const struct smtp_reply *r)
{
	s->code = r->code;
	memcpy(s->enhanced, r->enhanced, sizeof s->enhanced);
	slot_text(t, s, r->text, r->text_len);
}

static void slot_from_failure(struct smtpc *c, struct reply_slot *s)
{
	s->code = c->fail_code;
	memcpy(s->enhanced, c->fail_enhanced, sizeof s->enhanced);
	slot_text(&c->t, s, c->fail_text, strlen(c->fail_text));
}

static void slot_made_up(struct smtpc_txn *t, struct reply_slot *s, const char *enhanced,
                         const char *text)
{
	s->code = 0;
	snprintf(s->enhanced, sizeof s->enhanced, "%s", enhanced);
	slot_text(t, s, text, strlen(text));
}

/* 2, 4 or 5: the reply's class, from the enhanced code when the client made it up. */
static int slot_class(const struct reply_slot *s)
{
	if (s->code != 0)
		return s->code / 100;
	if (s->enhanced[0] == '5' || s->enhanced[0] == '2')
		return s->enhanced[0] - '0';
	return 4;
}

/* ---- output ---- */

static void command_write(struct smtpc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void command_write(struct smtpc *c, const char *fmt, ...)
{
	char line[SMTPC_ADDRESS_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 2) {
		log_error(c->id, "event=command reason=too_long"); /* addresses are checked */
		return;
	}
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char esc[SMTPC_ADDRESS_MAX * 4 + 64];
		log_debug(c->id, "event=command text=\"%s\"",
		          log_escape(line, (size_t)n, esc, sizeof esc));
	}
	line[n++] = '\r';
	line[n++] = '\n';
	if (bufferevent_write(c->bev, line, (size_t)n) == -1)
		log_warn(c->id, "event=command call=bufferevent_write failed");
}

/*
 * Queues the body dot-stuffed, then CRLF when it does not end with one, then ".\r\n". The
 * body's bytes are referenced, not copied: they must stay valid until the output buffer no
 * longer holds them (it is drained before the result callback whenever that could be early).
 */
static int body_queue(struct evbuffer *out, const char *body, size_t len)
{
	size_t seg = 0; /* start of the bytes not queued yet */
	if (len > 0 && body[0] == '.' && evbuffer_add(out, ".", 1) == -1)
		return -1;
	const char *cur = body, *end = body + len;
	while (cur < end) {
		const char *lf = memchr(cur, '\n', (size_t)(end - cur));
		if (lf == NULL)
			break;
		cur = lf + 1;
		if (cur < end && *cur == '.') {
			size_t upto = (size_t)(cur - body);
			if (evbuffer_add_reference(out, body + seg, upto - seg, NULL, NULL) == -1 ||
			    evbuffer_add(out, ".", 1) == -1)
				return -1;
			seg = upto;
		}
	}
	if (len > seg && evbuffer_add_reference(out, body + seg, len - seg, NULL, NULL) == -1)
		return -1;
	if (len > 0 && (len < 2 || body[len - 2] != '\r' || body[len - 1] != '\n') &&
	    evbuffer_add(out, "\r\n", 2) == -1)
		return -1;
	return evbuffer_add(out, ".\r\n", 3);
}

/* ---- results ---- */

/* Decides the result of the transaction; the kick delivers it. scope and msg (the
 * message-level reply; NULL: none) as in smtpc.h. */
static void txn_finish(struct smtpc *c, enum smtpc_scope scope, const struct reply_slot *msg)
{
	struct smtpc_txn *t = &c->t;
	if (!t->active || t->finished)
		return;
	t->finished = true;
	t->scope = scope;
	if (msg != NULL)
		t->message_reply = *msg;
	else
		slot_clear(&t->message_reply);
	t->number = t->started ? ++c->messages : 0; /* nothing sent: not a transaction */
	c->notify_result = true;
	kick(c);
}

/* Ends the transaction with a connection-level failure (the one recorded in c). */
static void txn_fail_connection(struct smtpc *c)
{
	struct smtpc_txn *t = &c->t;
	if (!t->active || t->finished)
		return;
	bool dot_left = (c->state == SMTPC_STATE_DOT ||
	                 (c->state == SMTPC_STATE_BODY && c->bev != NULL &&
	                  evbuffer_get_length(bufferevent_get_output(c->bev)) == 0));
	t->failure = c->failure;
	t->host_permanent = c->host_permanent;
	struct reply_slot r;
	slot_from_failure(c, &r);
	txn_finish(c,
	           dot_left && t->accepted > 0 && !t->empty_data ? SMTPC_SCOPE_UNKNOWN
	                                                         : SMTPC_SCOPE_CONNECTION,
	           &r);
}

static enum smtpc_outcome outcome_of_class(int cls)
{
	return cls == 5 ? SMTPC_OUTCOME_FAILED : SMTPC_OUTCOME_DEFERRED;
}

static const char *slot_text_get(const struct smtpc_txn *t, const struct reply_slot *s)
{
	return s->text_off == SIZE_MAX || s->text_off >= t->arena.len ? ""
	                                                              : t->arena.data + s->text_off;
}

static struct smtpc_reply slot_export(const struct smtpc_txn *t, const struct reply_slot *s)
{
	struct smtpc_reply r;
	r.code = s->code;
	memcpy(r.enhanced, s->enhanced, sizeof r.enhanced);
	r.text = slot_text_get(t, s);
	return r;
}

static void txn_clear(struct smtpc_txn *t)
{
	free(t->rcpt);
	buf_free(&t->arena);
	memset(t, 0, sizeof *t);
}

/* Builds the result of the finished transaction, resets c->t (so that the owner may send
 * again from the callback), then calls the callback. From the kick only. */
static void result_deliver(struct smtpc *c)
{
	struct smtpc_txn t = c->t; /* the arena and arrays move to this copy */
	memset(&c->t, 0, sizeof c->t);
	size_t n = t.m.nrcpts;
	struct smtpc_rcpt_result *rr = calloc(n, sizeof *rr);
	struct smtpc_result res;
	memset(&res, 0, sizeof res);
	res.scope = t.scope;
	res.failure = t.scope == SMTPC_SCOPE_CONNECTION || t.scope == SMTPC_SCOPE_UNKNOWN
	                  ? t.failure
	                  : SMTPC_FAILURE_NONE;
	res.host_permanent = t.host_permanent;
	res.reply = slot_export(&t, &t.message_reply);
	res.nrcpts = rr != NULL ? n : 0;
	res.rcpts = rr;
	res.conn_id = c->id;
	res.message_number = t.number;
	res.remote_name = c->remote_name != NULL ? c->remote_name : "";
	res.remote_addr = c->remote_addr;
	res.greeting_name = c->greeting_name;
	res.tls = c->tls ? c->tls_desc : "";
	res.reusable = smtpc_can_send(c);
	int msg_class = slot_class(&t.message_reply);
	for (size_t i = 0; rr != NULL && i < n; i++) {
		const struct reply_slot *rs = &t.rcpt[i];
		struct smtpc_rcpt_result *o = &rr[i];
		if (t.mail_ok && rs->code != 0 && !is_2xx(rs->code)) {
			o->outcome = outcome_of_class(rs->code / 100); /* refused by RCPT */
			o->reply = slot_export(&t, rs);
		} else if (t.scope == SMTPC_SCOPE_RECIPIENT) {
			/* the final dot got 2xx (or nobody was accepted: not reached) */
			o->outcome = is_2xx(t.message_reply.code) && rs->code != 0
			                 ? SMTPC_OUTCOME_DELIVERED
			                 : SMTPC_OUTCOME_DEFERRED;
			o->reply = slot_export(&t, &t.message_reply);
		} else if (t.scope == SMTPC_SCOPE_MESSAGE) {
			o->outcome = outcome_of_class(msg_class);
			o->reply = slot_export(&t, &t.message_reply);
		} else if (t.scope == SMTPC_SCOPE_UNKNOWN && t.mail_ok && is_2xx(rs->code)) {
			o->outcome = SMTPC_OUTCOME_UNKNOWN;
			o->reply = slot_export(&t, &t.message_reply);
		} else {
			o->outcome = SMTPC_OUTCOME_DEFERRED;
			o->reply = slot_export(&t, &t.message_reply);
		}
		switch (o->outcome) {
		case SMTPC_OUTCOME_DELIVERED:
			res.delivered++;
			break;
		case SMTPC_OUTCOME_DEFERRED:
			res.deferred++;
			break;
		case SMTPC_OUTCOME_FAILED:
			res.failed++;
			break;
		case SMTPC_OUTCOME_UNKNOWN:
			res.unknown++;
			break;
		}
	}
	if (rr == NULL && n > 0) {
		/* cannot describe each recipient: say nothing was delivered, scope connection */
		log_error(c->id, "event=result reason=out_of_memory");
		res.scope = SMTPC_SCOPE_CONNECTION;
		res.failure = SMTPC_FAILURE_INTERNAL;
	}
	char esc[512], who[SMTPC_ADDRESS_MAX * 4 + 8], idesc[80];
	log_escape(t.m.log_id ? t.m.log_id : "-", t.m.log_id ? strlen(t.m.log_id) : 1, idesc,
	           sizeof idesc);
	log_info(c->id,
	         "event=result msg=%s number=%u scope=%s failure=%s delivered=%zu deferred=%zu "
	         "failed=%zu unknown=%zu code=%d dsn=%s reply=\"%s\"",
	         idesc, t.number, smtpc_scope_name(res.scope), smtpc_failure_name(res.failure),
	         res.delivered, res.deferred, res.failed, res.unknown, res.reply.code,
	         res.reply.enhanced[0] ? res.reply.enhanced : "-",
	         log_escape(res.reply.text, strlen(res.reply.text), esc, sizeof esc));
	for (size_t i = 0; i < res.nrcpts; i++) {
		const char *a = t.m.rcpts[i];
		log_info(c->id, "event=rcpt msg=%s to=<%s> outcome=%s code=%d dsn=%s reply=\"%s\"",
		         idesc, log_escape(a, strlen(a), who, sizeof who),
		         smtpc_outcome_name(rr[i].outcome), rr[i].reply.code,
		         rr[i].reply.enhanced[0] ? rr[i].reply.enhanced : "-",
		         log_escape(rr[i].reply.text, strlen(rr[i].reply.text), esc, sizeof esc));
	}
	t.cb(&res, t.ref, t.arg);
	free(rr);
	txn_clear(&t);
}

/* ---- failures and closing ---- */

/*
 * Records why the connection ends (the first reason wins), fails the message in flight, and
 * closes: after QUIT when graceful and the session is at a command boundary, else at once.
 * r: the server's reply that caused it, or NULL with a made-up enhanced code and text.
 */
static void conn_fail(struct smtpc *c, enum smtpc_failure f, const struct smtp_reply *r,
                      const char *enhanced, bool graceful, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void conn_fail(struct smtpc *c, enum smtpc_failure f, const struct smtp_reply *r,
                      const char *enhanced, bool graceful, const char *fmt, ...)
{
	if (c->state == SMTPC_STATE_CLOSED)
		return;
	if (c->failure == SMTPC_FAILURE_NONE) {
		c->failure = f;
		if (r != NULL) {
			c->fail_code = r->code;
			memcpy(c->fail_enhanced, r->enhanced, sizeof c->fail_enhanced);
			memcpy(c->fail_text, r->text, r->text_len + 1);
		} else {
			c->fail_code = 0;
			snprintf(c->fail_enhanced, sizeof c->fail_enhanced, "%s", enhanced);
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(c->fail_text, sizeof c->fail_text, fmt, ap);
			va_end(ap);
		}
		char esc[512];
		log_info(c->id, "event=failure failure=%s state=%s code=%d dsn=%s text=\"%s\"",
		         smtpc_failure_name(f), state_names[c->state], c->fail_code,
		         c->fail_enhanced[0] ? c->fail_enhanced : "-",
		         log_escape(c->fail_text, strlen(c->fail_text), esc, sizeof esc));
	}
	txn_fail_connection(c);
	bool boundary = c->state == SMTPC_STATE_GREETING || c->state == SMTPC_STATE_EHLO ||
	                c->state == SMTPC_STATE_HELO || c->state == SMTPC_STATE_STARTTLS ||
	                c->state == SMTPC_STATE_READY || c->state == SMTPC_STATE_COMMANDS;
	if (graceful && boundary && c->bev != NULL && (r == NULL || r->code != 421)) {
		conn_quit(c); /* RFC 5321 3.8: say goodbye when the peer is still talking */
		return;
	}
	conn_close_now(c);
}

/* Ends the connection without another word. The kick frees the bufferevent and tells the
 * owner. The output is dropped here: it may reference the body of the message in flight. */
static void conn_close_now(struct smtpc *c)
{
	if (c->state == SMTPC_STATE_CLOSED)
		return;
	if (c->t.active && !c->t.finished) {
		/* cannot happen (QUIT waits for the transaction), but a callback is owed */
		if (c->failure == SMTPC_FAILURE_NONE) {
			c->failure = SMTPC_FAILURE_INTERNAL;
			snprintf(c->fail_enhanced, sizeof c->fail_enhanced, "4.3.0");
			snprintf(c->fail_text, sizeof c->fail_text, "connection closed");
		}
		txn_fail_connection(c);
	}
	conn_set_state(c, SMTPC_STATE_CLOSED);
	evtimer_del(c->timer);
	if (c->bev != NULL) {
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		struct evbuffer *out = bufferevent_get_output(c->bev);
		evbuffer_drain(out, evbuffer_get_length(out));
	}
	log_info(c->id, "event=close messages=%u failure=%s", c->messages,
	         smtpc_failure_name(c->failure));
	c->notify_closed = true;
	c->notify_idle = false;
	kick(c);
}

static void conn_quit(struct smtpc *c)
{
	command_write(c, "QUIT");
	conn_set_state(c, SMTPC_STATE_QUIT);
	timer_arm(c, c->p.quit_timeout_ms);
}

/* ---- session set-up ---- */

static void ehlo_send(struct smtpc *c)
{
	smtp_reply_init(&c->reply);
	command_write(c, "EHLO %s", c->ehlo_name);
	conn_set_state(c, SMTPC_STATE_EHLO);
	timer_arm(c, c->p.command_timeout_ms);
}

/* After a 2xx to EHLO or HELO: STARTTLS, or the policy's verdict, or ready. */
static void after_hello(struct smtpc *c)
{
	bool offered = (c->ext & SMTP_EXT_STARTTLS) != 0;
	if (!c->tls && c->p.tls_policy != SMTPC_TLS_NONE && offered) {
		command_write(c, "STARTTLS");
		conn_set_state(c, SMTPC_STATE_STARTTLS);
		timer_arm(c, c->p.command_timeout_ms);
		return;
	}
	if (!c->tls && c->p.tls_policy == SMTPC_TLS_REQUIRED) {
		c->host_permanent = true;
		conn_fail(c, SMTPC_FAILURE_TLS_UNAVAILABLE, NULL, "4.7.4", true,
		          "TLS is required, but was not offered by host %s[%s]", c->remote_log,
		          c->remote_addr);
		return;
	}
	c->established = true;
	conn_ready(c);
}

/* Between messages: starts the one given, or QUITs, or waits (IDLE to the owner). */
static void conn_ready(struct smtpc *c)
{
	conn_set_state(c, SMTPC_STATE_READY);
	evtimer_del(c->timer);
	if (c->t.active && !c->t.started && !c->t.finished) {
		txn_start(c);
		return;
	}
	/* a finished result may still wait for the kick: IDLE comes after it, if still idle */
	if (c->quit_wanted || c->messages >= c->p.max_messages) {
		conn_quit(c);
		return;
	}
	c->notify_idle = true;
	kick(c);
}

/* ---- the transaction ---- */

static void pos_next(struct smtpc_pos *p, size_t nrcpts)
{
	switch (p->step) {
	case STEP_RSET:
		p->step = STEP_MAIL;
		break;
	case STEP_MAIL:
		p->step = STEP_RCPT;
		p->rcpt = 0;
		break;
	case STEP_RCPT:
		if (++p->rcpt >= nrcpts)
			p->step = STEP_DATA;
		break;
	case STEP_DATA:
	case STEP_END:
		p->step = STEP_END;
		break;
	}
}

static bool pos_equal(const struct smtpc_pos *a, const struct smtpc_pos *b)
{
	return a->step == b->step && (a->step != STEP_RCPT || a->rcpt == b->rcpt);
}

static void command_send(struct smtpc *c, const struct smtpc_pos *p)
{
	const struct smtpc_message *m = &c->t.m;
	switch (p->step) {
	case STEP_RSET:
		command_write(c, "RSET");
		break;
	case STEP_MAIL: {
		char size[40] = "";
		if (c->ext & SMTP_EXT_SIZE)
			snprintf(size, sizeof size, " SIZE=%zu", m->body_len);
		bool eight = m->body_8bit && (c->ext & SMTP_EXT_8BITMIME);
		if (m->body_8bit && !eight)
			log_info(c->id, "event=8bit_without_8bitmime");
		command_write(c, "MAIL FROM:<%s>%s%s%s", m->sender, size,
		              eight ? " BODY=8BITMIME" : "", m->smtputf8 ? " SMTPUTF8" : "");
		break;
	}
	case STEP_RCPT:
		command_write(c, "RCPT TO:<%s>", m->rcpts[p->rcpt]);
		break;
	case STEP_DATA:
		command_write(c, "DATA");
		break;
	case STEP_END:
		break;
	}
}

/*
 * Sends what may go now: with PIPELINING every command up to DATA; without it the next one
 * once the previous is answered, and none that is pointless (RCPT after a refused MAIL, DATA
 * with no accepted recipient: the reply handler ends the transaction then).
 */
static void commands_send(struct smtpc *c)
{
	struct smtpc_txn *t = &c->t;
	bool pipelining = (c->ext & SMTP_EXT_PIPELINING) != 0;
	while (t->send.step != STEP_END) {
		if (!pipelining && !pos_equal(&t->send, &t->recv))
			break;
		command_send(c, &t->send);
		pos_next(&t->send, t->m.nrcpts);
	}
}

static void txn_start(struct smtpc *c)
{
	struct smtpc_txn *t = &c->t;
	const struct smtpc_message *m = &t->m;
	if ((c->ext & SMTP_EXT_SIZE) && c->size_max > 0 && m->body_len > c->size_max) {
		struct reply_slot r;
		char text[160];
		snprintf(text, sizeof text, "message size %zu exceeds size limit %llu of server %s",
		         m->body_len, (unsigned long long)c->size_max, c->remote_addr);
		slot_made_up(t, &r, "5.3.4", text);
		txn_finish(c, SMTPC_SCOPE_MESSAGE, &r);
		conn_ready(c);
		return;
	}
	if (m->smtputf8 && !(c->ext & SMTP_EXT_SMTPUTF8)) {
		struct reply_slot r;
		slot_made_up(t, &r, "5.6.7", "SMTPUTF8 is required, but was not offered by host");
		txn_finish(c, SMTPC_SCOPE_MESSAGE, &r);
		conn_ready(c);
		return;
	}
	t->started = true;
	t->send.step = t->recv.step = c->need_rset ? STEP_RSET : STEP_MAIL;
	c->need_rset = false;
	smtp_reply_init(&c->reply);
	conn_set_state(c, SMTPC_STATE_COMMANDS);
	commands_send(c);
	timer_arm(c, c->p.command_timeout_ms);
}

/* The transaction stopped before its end: the next one starts with RSET. */
static void txn_stop_midway(struct smtpc *c, enum smtpc_scope scope, const struct reply_slot *r)
{
	c->need_rset = true;
	txn_finish(c, scope, r);
	conn_ready(c);
}

static void body_send(struct smtpc *c, bool empty)
{
	struct smtpc_txn *t = &c->t;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	t->empty_data = empty;
	int rc = empty ? evbuffer_add(out, ".\r\n", 3) : body_queue(out, t->m.body, t->m.body_len);
	if (rc == -1) {
		conn_fail(c, SMTPC_FAILURE_INTERNAL, NULL, "4.3.0", false,
		          "cannot queue the message body");
		return;
	}
	log_debug(c->id, "event=body octets=%zu queued=%zu", empty ? 0 : t->m.body_len,
	          evbuffer_get_length(out));
	conn_set_state(c, SMTPC_STATE_BODY);
	evtimer_del(c->timer); /* the write timeout covers the body; on_write starts the wait */
}

/* A reply to [RSET] MAIL RCPT... DATA, matched to the oldest command not answered yet. */
static void commands_reply(struct smtpc *c)
{
	struct smtpc_txn *t = &c->t;
	const struct smtp_reply *r = &c->reply;
	bool pipelining = (c->ext & SMTP_EXT_PIPELINING) != 0;
	struct smtpc_pos at = t->recv;
	if (at.step == STEP_END || pos_equal(&t->recv, &t->send)) {
		conn_fail(c, SMTPC_FAILURE_PROTOCOL, NULL, "4.5.0", true,
		          "unexpected reply %d from %s", r->code, c->remote_addr);
		return;
	}
	pos_next(&t->recv, t->m.nrcpts);
	if (r->code == 421) {
		/* the server is closing the channel: what is not answered yet is deferred */
		struct reply_slot s;
		slot_from_reply(t, &s, r);
		if (at.step == STEP_MAIL)
			t->mail = s;
		c->need_rset = true;
		txn_finish(c,
		           t->mail_ok || at.step == STEP_MAIL ? SMTPC_SCOPE_MESSAGE
		                                              : SMTPC_SCOPE_CONNECTION,
		           &s);
		conn_fail(c, SMTPC_FAILURE_LOST, r, "", false, "421");
		return;
	}
	switch (at.step) {
	case STEP_RSET:
		if (!is_2xx(r->code)) {
			conn_fail(c, SMTPC_FAILURE_PROTOCOL, r, "", true, "RSET refused");
			return;
		}
		break;
	case STEP_MAIL:
		slot_from_reply(t, &t->mail, r);
		t->mail_ok = is_2xx(r->code);
		if (!t->mail_ok && !pipelining) {
			txn_stop_midway(c, SMTPC_SCOPE_MESSAGE, &t->mail);
			return;
		}
		break;
	case STEP_RCPT:
		slot_from_reply(t, &t->rcpt[at.rcpt], r);
		if (is_2xx(r->code) && t->mail_ok)
			t->accepted++;
		if (!pipelining && t->recv.step == STEP_DATA && t->accepted == 0) {
			txn_stop_midway(c, SMTPC_SCOPE_RECIPIENT, NULL);
			return;
		}
		break;
	case STEP_DATA:
		slot_from_reply(t, &t->data, r);
		if (r->code == 354) {
			body_send(c, !(t->mail_ok && t->accepted > 0));
			return;
		}
		if (!t->mail_ok)
			txn_stop_midway(c, SMTPC_SCOPE_MESSAGE, &t->mail);
		else if (t->accepted == 0)
			txn_stop_midway(c, SMTPC_SCOPE_RECIPIENT, NULL);
		else
			txn_stop_midway(c, SMTPC_SCOPE_MESSAGE, &t->data);
		return;
	case STEP_END:
		break;
	}
	commands_send(c);
	timer_arm(c, c->p.command_timeout_ms);
}

/* The reply to the final dot. */
static void dot_reply(struct smtpc *c)
{
	struct smtpc_txn *t = &c->t;
	const struct smtp_reply *r = &c->reply;
	evtimer_del(c->timer);
	if (t->empty_data) {
		/* nothing was accepted: the 354 was the server's mistake; the outcome is known */
		if (!t->mail_ok)
			txn_finish(c, SMTPC_SCOPE_MESSAGE, &t->mail);
		else
			txn_finish(c, SMTPC_SCOPE_RECIPIENT, NULL);
	} else {
		slot_from_reply(t, &t->final, r);
		txn_finish(c, is_2xx(r->code) ? SMTPC_SCOPE_RECIPIENT : SMTPC_SCOPE_MESSAGE,
		           &t->final);
	}
	if (r->code == 421) {
		conn_fail(c, SMTPC_FAILURE_LOST, r, "", false, "421");
		return;
	}
	conn_ready(c);
}

/* ---- replies by state ---- */

static void reply_log(struct smtpc *c)
{
	if (!log_enabled(LOG_LEVEL_DEBUG))
		return;
	char esc[512];
	log_debug(c->id, "event=reply state=%s code=%d lines=%u dsn=%s text=\"%s\"%s",
	          state_names[c->state], c->reply.code, c->reply.lines,
	          c->reply.enhanced[0] ? c->reply.enhanced : "-",
	          log_escape(c->reply.text, c->reply.text_len, esc, sizeof esc),
	          c->reply.bare_lf ? " bare_lf=1" : "");
}

static void reply_handle(struct smtpc *c)
{
	const struct smtp_reply *r = &c->reply;
	reply_log(c);
	switch (c->state) {
	case SMTPC_STATE_GREETING:
		snprintf(c->greeting_name, sizeof c->greeting_name, "%s", r->name);
		if (r->code != 220) {
			conn_fail(c, SMTPC_FAILURE_GREETING, r, "", true, "greeting");
			return;
		}
		{
			char esc[300];
			log_info(c->id, "event=greeting name=%s",
			         log_escape(r->name, strlen(r->name), esc, sizeof esc));
		}
		ehlo_send(c);
		return;
	case SMTPC_STATE_EHLO:
		if (is_2xx(r->code)) {
			c->ext = r->ext;
			c->size_max = r->size_max;
			log_debug(c->id,
			          "event=ehlo pipelining=%d starttls=%d size=%llu 8bitmime=%d "
			          "smtputf8=%d",
			          !!(r->ext & SMTP_EXT_PIPELINING), !!(r->ext & SMTP_EXT_STARTTLS),
			          (unsigned long long)r->size_max, !!(r->ext & SMTP_EXT_8BITMIME),
			          !!(r->ext & SMTP_EXT_SMTPUTF8));
			after_hello(c);
		} else if (r->code >= 500) {
			command_write(c, "HELO %s", c->ehlo_name);
			conn_set_state(c, SMTPC_STATE_HELO);
			timer_arm(c, c->p.command_timeout_ms);
		} else {
			conn_fail(c, SMTPC_FAILURE_HELO, r, "", true, "EHLO");
		}
		return;
	case SMTPC_STATE_HELO:
		if (!is_2xx(r->code)) {
			conn_fail(c, SMTPC_FAILURE_HELO, r, "", true, "HELO");
			return;
		}
		c->ext = 0;
		c->size_max = 0;
		after_hello(c);
		return;
	case SMTPC_STATE_STARTTLS: {
		if (r->code == 220) {
			/* RFC 3207 section 4.2 / CVE-2011-0411: nothing sent before the handshake
			 * may be read as part of the TLS session */
			struct evbuffer *in = bufferevent_get_input(c->bev);
			size_t junk = evbuffer_get_length(in);
			if (junk > 0) {
				log_warn(c->id, "event=starttls_injection discarded=%zu", junk);
				evbuffer_drain(in, junk);
				c->discarded += junk;
			}
			bufferevent_disable(c->bev, EV_READ);
			evtimer_del(c->timer);
			conn_set_state(c, SMTPC_STATE_TLS_SWITCH);
			kick(c);
			return;
		}
		if (r->code == 421) {
			conn_fail(c, SMTPC_FAILURE_LOST, r, "", false, "421");
			return;
		}
		if (c->p.tls_policy == SMTPC_TLS_REQUIRED) {
			c->host_permanent = true;
			conn_fail(c, SMTPC_FAILURE_TLS_UNAVAILABLE, r, "", true, "STARTTLS");
			return;
		}
		char esc[256];
		log_info(c->id, "event=starttls_refused code=%d text=\"%s\"", r->code,
		         log_escape(r->text, r->text_len, esc, sizeof esc));
		c->established = true;
		conn_ready(c);
		return;
	}
	case SMTPC_STATE_COMMANDS:
		commands_reply(c);
		return;
	case SMTPC_STATE_BODY:
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
			dot_reply(c); /* written already; on_write has not run yet */
			return;
		}
		/* a reply before our final dot left: the session cannot go on */
		if (!is_2xx(r->code) && !c->t.empty_data) {
			slot_from_reply(&c->t, &c->t.final, r);
			txn_finish(c, SMTPC_SCOPE_MESSAGE, &c->t.final);
		}
		conn_fail(c, SMTPC_FAILURE_PROTOCOL, NULL, "4.5.0", false,
		          "reply %d from %s before the end of the data", r->code, c->remote_addr);
		return;
	case SMTPC_STATE_DOT:
		dot_reply(c);
		return;
	case SMTPC_STATE_READY:
		/* unsolicited: a 421 before closing, or noise */
		conn_fail(c, r->code == 421 ? SMTPC_FAILURE_LOST : SMTPC_FAILURE_PROTOCOL, r, "",
		          false, "unsolicited");
		return;
	case SMTPC_STATE_QUIT:
		conn_close_now(c);
		return;
	case SMTPC_STATE_CONNECTING:
	case SMTPC_STATE_TLS_SWITCH:
	case SMTPC_STATE_HANDSHAKE:
	case SMTPC_STATE_CLOSED:
		return;
	}
}

/* ---- input ---- */

static bool reading_state(enum smtpc_state s)
{
	switch (s) {
	case SMTPC_STATE_GREETING:
	case SMTPC_STATE_EHLO:
	case SMTPC_STATE_HELO:
	case SMTPC_STATE_STARTTLS:
	case SMTPC_STATE_READY:
	case SMTPC_STATE_COMMANDS:
	case SMTPC_STATE_BODY:
	case SMTPC_STATE_DOT:
	case SMTPC_STATE_QUIT:
		return true;
	default:
		return false;
	}
}

/* Takes one reply line (with its LF) out of in, looking for the LF only within the first
 * SMTP_REPLY_LINE_MAX + 2 octets. Returns 1 with a line, 0 when none is complete, -1 when
 * the line is too long. */
static int line_take(struct evbuffer *in, char *line, size_t *len)
{
	size_t have = evbuffer_get_length(in);
	if (have == 0)
		return 0;
	size_t scan = have < SMTP_REPLY_LINE_MAX + 2 ? have : SMTP_REPLY_LINE_MAX + 2;
	struct evbuffer_ptr end;
	if (evbuffer_ptr_set(in, &end, scan, EVBUFFER_PTR_SET) == -1)
		return -1;
	struct evbuffer_ptr lf = evbuffer_search_range(in, "\n", 1, NULL, &end);
	if (lf.pos == -1)
		return have >= SMTP_REPLY_LINE_MAX + 2 ? -1 : 0;
	size_t total = (size_t)lf.pos + 1;
	if (evbuffer_remove(in, line, total) != (int)total)
		return -1;
	*len = total;
	return 1;
}

static void input_process(struct smtpc *c)
{
	if (c->bev == NULL)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	for (int budget = SMTPC_BUDGET; budget > 0; budget--) {
		if (!reading_state(c->state))
			return;
		char line[SMTP_REPLY_LINE_MAX + 2];
		size_t len = 0;
		int got = line_take(in, line, &len);
		if (got == 0)
			return;
		enum smtp_reply_status st =
		    got == -1 ? SMTP_REPLY_LINE_TOO_LONG : smtp_reply_feed(&c->reply, line, len);
		if (st == SMTP_REPLY_MORE)
			continue;
		if (st != SMTP_REPLY_DONE) {
			if (c->state == SMTPC_STATE_QUIT) {
				conn_close_now(c);
				return;
			}
			conn_fail(c, SMTPC_FAILURE_PROTOCOL, NULL, "4.5.0", false,
			          "malformed reply from %s (%s) in state %s", c->remote_addr,
			          smtp_reply_status_name(st), state_names[c->state]);
			return;
		}
		reply_handle(c);
		smtp_reply_init(&c->reply);
	}
	if (reading_state(c->state) && evbuffer_get_length(in) > 0)
		kick(c); /* budget spent: go on after the other connections */
}

/* ---- bufferevent and timer callbacks ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	input_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct smtpc *c = arg;
	/* the output is flushed: in BODY that means the final dot has left */
	if (c->state == SMTPC_STATE_BODY) {
		conn_set_state(c, SMTPC_STATE_DOT);
		timer_arm(c, c->t.empty_data ? c->p.command_timeout_ms : c->p.data_timeout_ms);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtpc *c = arg;
	int err = EVUTIL_SOCKET_ERROR();
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == SMTPC_STATE_CONNECTING) {
			log_info(c->id, "event=connected remote=%s addr=%s", c->remote_log,
			         c->remote_addr);
			conn_set_state(c, SMTPC_STATE_GREETING);
			smtp_reply_init(&c->reply);
			timer_arm(c, c->p.command_timeout_ms);
		} else if (c->state == SMTPC_STATE_HANDSHAKE) {
			c->tls = true;
			tls_describe(bufferevent_openssl_get_ssl(bev), c->tls_desc,
			             sizeof c->tls_desc);
			log_info(c->id, "event=tls version=\"%s\"", c->tls_desc);
			ehlo_send(c);
		}
		/* the read callback may have run first in this loop turn, while the state did
		 * not read: the greeting can be waiting in the input buffer already */
		input_process(c);
		return;
	}
	/* replies that arrived with the end of the connection count (a 421, a final reply) */
	if ((what & BEV_EVENT_EOF) && reading_state(c->state))
		input_process(c);
	if (c->state == SMTPC_STATE_CLOSED)
		return;
	if (c->state == SMTPC_STATE_QUIT) {
		conn_close_now(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		conn_fail(c, SMTPC_FAILURE_TIMEOUT, NULL, "4.4.2", false,
		          "timeout writing to %s in state %s", c->remote_addr,
		          state_names[c->state]);
	} else if (c->state == SMTPC_STATE_CONNECTING) {
		conn_fail(c, SMTPC_FAILURE_CONNECT, NULL, "4.4.1", false, "connect to %s[%s]: %s",
		          c->remote_log, c->remote_addr,
		          (what & BEV_EVENT_ERROR) ? evutil_socket_error_to_string(err) : "closed");
	} else if (c->state == SMTPC_STATE_HANDSHAKE) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		char why[200] = "connection closed";
		if (e != 0)
			ERR_error_string_n(e, why, sizeof why);
		else if (what & BEV_EVENT_ERROR)
			snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(err));
		conn_fail(c, SMTPC_FAILURE_TLS, NULL, "4.7.5", false,
		          "TLS handshake with %s failed: %s", c->remote_addr, why);
	} else {
		unsigned long e = c->tls ? bufferevent_get_openssl_error(bev) : 0;
		char why[200] = "connection closed by remote";
		if (e != 0)
			ERR_error_string_n(e, why, sizeof why);
		else if (what & BEV_EVENT_ERROR)
			snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(err));
		conn_fail(c, SMTPC_FAILURE_LOST, NULL, "4.4.2", false,
		          "lost connection with %s in state %s: %s", c->remote_addr,
		          state_names[c->state], why);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc *c = arg;
	switch (c->state) {
	case SMTPC_STATE_CONNECTING:
		conn_fail(c, SMTPC_FAILURE_CONNECT, NULL, "4.4.1", false,
		          "connect to %s[%s]: timed out", c->remote_log, c->remote_addr);
		return;
	case SMTPC_STATE_READY:
		log_debug(c->id, "event=idle_timeout");
		conn_quit(c);
		return;
	case SMTPC_STATE_QUIT:
		conn_close_now(c);
		return;
	case SMTPC_STATE_CLOSED:
		return;
	default:
		conn_fail(c, SMTPC_FAILURE_TIMEOUT, NULL, "4.4.2", false,
		          "timeout waiting for a reply from %s in state %s", c->remote_addr,
		          state_names[c->state]);
		return;
	}
}

static void callbacks_set(struct smtpc *c)
{
	struct timeval wtv = {(time_t)(c->p.command_timeout_ms / 1000),
	                      (suseconds_t)(c->p.command_timeout_ms % 1000) * 1000};
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_set_timeouts(c->bev, NULL, &wtv);
}

/* Replaces the cleartext bufferevent by an OpenSSL one on the same socket. From the kick. */
static void tls_switch(struct smtpc *c)
{
	SSL *ssl = SSL_new(c->tls_ctx);
	if (ssl == NULL) {
		conn_fail(c, SMTPC_FAILURE_INTERNAL, NULL, "4.7.5", false, "SSL_new failed");
		return;
	}
	if (c->p.tls_policy == SMTPC_TLS_OPPORTUNISTIC)
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	if (c->remote_name != NULL && c->remote_name[0] != '\0' && !ip_literal(c->remote_name) &&
	    SSL_set_tlsext_host_name(ssl, c->remote_name) != 1)
		log_warn(c->id, "event=tls call=SSL_set_tlsext_host_name failed");
	bufferevent_free(c->bev); /* made without BEV_OPT_CLOSE_ON_FREE: fd stays open */
	c->bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		SSL_free(ssl);
		conn_fail(c, SMTPC_FAILURE_INTERNAL, NULL, "4.7.5", false,
		          "bufferevent_openssl_socket_new failed");
		return;
	}
	c->bev_owns_fd = true;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	callbacks_set(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	conn_set_state(c, SMTPC_STATE_HANDSHAKE);
	timer_arm(c, c->p.command_timeout_ms);
}

static void conn_destroy(struct smtpc *c)
{
	log_debug(c->id, "event=free state=%s", state_names[c->state]);
	if (c->bev != NULL) {
		struct evbuffer *out = bufferevent_get_output(c->bev);
		evbuffer_drain(out, evbuffer_get_length(out)); /* drop references to the body */
		bufferevent_free(c->bev);
	}
	if (!c->bev_owns_fd && c->fd != -1)
		evutil_closesocket(c->fd);
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->timer != NULL)
		event_free(c->timer);
	SSL_CTX_free(c->tls_ctx);
	txn_clear(&c->t);
	free(c->remote_name);
	free(c->ehlo_name);
	free(c);
}

/* The connection's own event: the TLS switch, freeing the bufferevent of a closed
 * connection, the owner's callbacks, and input left over by the budget. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc *c = arg;
	if (c->state == SMTPC_STATE_CONNECTING && !c->connect_begun) {
		c->connect_begun = true;
		conn_start(c);
	}
	if (c->state == SMTPC_STATE_TLS_SWITCH)
		tls_switch(c);
	if (c->state == SMTPC_STATE_CLOSED && c->bev != NULL) {
		bufferevent_free(c->bev); /* output drained by conn_close_now */
		c->bev = NULL;
		if (!c->bev_owns_fd && c->fd != -1)
			evutil_closesocket(c->fd);
		c->fd = -1;
	}
	c->in_callback++;
	if (c->notify_result && c->t.finished) {
		c->notify_result = false;
		result_deliver(c);
	}
	if (!c->free_wanted && c->notify_closed && !c->closed_told && !c->t.active) {
		c->closed_told = true;
		if (c->p.on_event != NULL)
			c->p.on_event(SMTPC_EVENT_CLOSED, c->p.ref, c->p.arg);
	} else if (!c->free_wanted && c->notify_idle) {
		c->notify_idle = false;
		if (c->state == SMTPC_STATE_READY && !c->t.active) {
			if (c->p.on_event != NULL)
				c->p.on_event(SMTPC_EVENT_IDLE, c->p.ref, c->p.arg);
			if (!c->free_wanted && c->state == SMTPC_STATE_READY && !c->t.active)
				timer_arm(c, c->p.idle_timeout_ms);
		}
	}
	c->in_callback--;
	if (c->free_wanted) {
		conn_destroy(c);
		return;
	}
	if (c->notify_result || (c->notify_closed && !c->closed_told))
		kick(c); /* set again from inside a callback */
	else if (reading_state(c->state))
		input_process(c);
}

/* ---- API ---- */

void smtpc_params_init(struct smtpc_params *p)
{
	memset(p, 0, sizeof *p);
	p->tls_policy = SMTPC_TLS_OPPORTUNISTIC;
	p->connect_timeout_ms = 30 * 1000;
	p->command_timeout_ms = 300 * 1000;
	p->data_timeout_ms = 600 * 1000;
	p->quit_timeout_ms = 10 * 1000;
	p->idle_timeout_ms = 5 * 1000;
	p->max_messages = 100;
}

SSL_CTX *smtpc_tls_ctx_new(char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		char why[256];
		unsigned long e = ERR_get_error();
		ERR_error_string_n(e, why, sizeof why);
		ERR_clear_error();
		snprintf(err, errlen, "client TLS context: %s", why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static size_t sockaddr_copy(struct sockaddr_storage *dst, const struct sockaddr *sa, socklen_t len)
{
	if (sa == NULL || len == 0 || (size_t)len > sizeof *dst ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return 0;
	memset(dst, 0, sizeof *dst);
	memcpy(dst, sa, (size_t)len);
	return (size_t)len;
}

/* Opens the socket and starts the connect; failures are reported through the kick. */
static void conn_start(struct smtpc *c)
{
	int family = c->remote.ss_family;
	c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		conn_fail(c, SMTPC_FAILURE_CONNECT, NULL, "4.4.1", false, "socket: %s",
		          strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (c->p.source != NULL) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* the port is picked at connect time: many connections from one address */
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
		if (bind(c->fd, (const struct sockaddr *)&c->source, c->p.source_len) == -1) {
			char src[INET6_ADDRSTRLEN + 10];
			addr_format(&c->source, src, sizeof src);
			conn_fail(c, SMTPC_FAILURE_CONNECT, NULL, "4.4.1", false,
			          "bind to source %s: %s", src, strerror(errno));
			return;
		}
	}
	c->bev = bufferevent_socket_new(c->base, c->fd, 0); /* fd closed by us: see tls_switch */
	if (c->bev == NULL) {
		conn_fail(c, SMTPC_FAILURE_INTERNAL, NULL, "4.3.0", false,
		          "bufferevent_socket_new failed");
		return;
	}
	callbacks_set(c);
	timer_arm(c, c->p.connect_timeout_ms);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->remote,
	                               (int)c->p.remote_len) == -1) {
		conn_fail(c, SMTPC_FAILURE_CONNECT, NULL, "4.4.1", false, "connect to %s[%s]: %s",
		          c->remote_log, c->remote_addr,
		          evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

struct smtpc *smtpc_new(struct event_base *base, const struct smtpc_params *params)
{
	if (base == NULL || params == NULL || params->ehlo_name == NULL ||
	    !ehlo_name_ok(params->ehlo_name) ||
	    (params->tls_policy != SMTPC_TLS_NONE && params->tls_ctx == NULL) ||
	    params->max_messages == 0 || params->connect_timeout_ms == 0 ||
	    params->command_timeout_ms == 0 || params->data_timeout_ms == 0 ||
	    params->quit_timeout_ms == 0)
		return NULL;
	struct smtpc *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->base = base;
	c->p = *params;
	c->id = log_id_new();
	if (sockaddr_copy(&c->remote, params->remote, params->remote_len) == 0 ||
	    (params->source != NULL &&
	     sockaddr_copy(&c->source, params->source, params->source_len) == 0)) {
		free(c);
		return NULL;
	}
	c->p.remote = NULL; /* the copies are used from here on */
	c->p.source = params->source != NULL ? (const struct sockaddr *)&c->source : NULL;
	c->ehlo_name = strdup(params->ehlo_name);
	c->remote_name = params->remote_name ? strdup(params->remote_name) : NULL;
	c->kick = event_new(base, -1, 0, on_kick, c);
	c->timer = evtimer_new(base, on_timer, c);
	if (c->ehlo_name == NULL || (params->remote_name != NULL && c->remote_name == NULL) ||
	    c->kick == NULL || c->timer == NULL) {
		conn_destroy(c);
		return NULL;
	}
	c->p.ehlo_name = NULL;
	c->p.remote_name = NULL;
	if (params->tls_ctx != NULL) {
		SSL_CTX_up_ref(params->tls_ctx);
		c->tls_ctx = params->tls_ctx;
	}
	addr_format(&c->remote, c->remote_addr, sizeof c->remote_addr);
	log_escape(c->remote_name ? c->remote_name : "-",
	           c->remote_name ? strlen(c->remote_name) : 1, c->remote_log,
	           sizeof c->remote_log);
	c->state = SMTPC_STATE_CONNECTING;
	log_info(c->id, "event=connect remote=%s addr=%s tls_policy=%s", c->remote_log,
	         c->remote_addr,
	         c->p.tls_policy == SMTPC_TLS_NONE            ? "none"
	         : c->p.tls_policy == SMTPC_TLS_OPPORTUNISTIC ? "opportunistic"
	                                                      : "required");
	kick(c); /* the connect starts from the loop: even a failed socket() or bind() is
	            reported later, to a message given right after smtpc_new() too */
	return c;
}

void smtpc_free(struct smtpc *c)
{
	if (c == NULL)
		return;
	if (c->in_callback > 0) {
		c->free_wanted = true; /* the kick frees it once the callback returns */
		return;
	}
	conn_destroy(c);
}

bool smtpc_can_send(const struct smtpc *c)
{
	return !c->t.active && !c->quit_wanted && !c->free_wanted &&
	       c->failure == SMTPC_FAILURE_NONE && c->messages < c->p.max_messages &&
	       c->state != SMTPC_STATE_QUIT && c->state != SMTPC_STATE_CLOSED;
}

static bool message_ok(const struct smtpc_message *m)
{
	if (m == NULL || m->sender == NULL || m->rcpts == NULL || m->nrcpts == 0 ||
	    m->nrcpts > SMTPC_RCPTS_MAX || (m->body == NULL && m->body_len > 0))
		return false;
	if (!address_ok(m->sender, true, m->smtputf8))
		return false;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i] == NULL || !address_ok(m->rcpts[i], false, m->smtputf8))
			return false;
	return true;
}

int smtpc_send(struct smtpc *c, const struct smtpc_message *m, smtpc_result_fn *cb, uint64_t ref,
               void *arg)
{
	if (c == NULL || cb == NULL || !smtpc_can_send(c) || !message_ok(m))
		return -1;
	struct smtpc_txn *t = &c->t;
	txn_clear(t);
	t->rcpt = calloc(m->nrcpts, sizeof *t->rcpt);
	if (t->rcpt == NULL)
		return -1;
	for (size_t i = 0; i < m->nrcpts; i++)
		slot_clear(&t->rcpt[i]);
	slot_clear(&t->mail);
	slot_clear(&t->data);
	slot_clear(&t->final);
	slot_clear(&t->message_reply);
	t->active = true;
	t->m = *m;
	t->cb = cb;
	t->ref = ref;
	t->arg = arg;
	char idesc[80];
	log_debug(c->id, "event=send msg=%s rcpts=%zu octets=%zu state=%s",
	          log_escape(m->log_id ? m->log_id : "-", m->log_id ? strlen(m->log_id) : 1, idesc,
	                     sizeof idesc),
	          m->nrcpts, m->body_len, state_names[c->state]);
	if (c->state == SMTPC_STATE_READY) {
		evtimer_del(c->timer);
		c->notify_idle = false;
		txn_start(c);
	}
	return 0;
}

void smtpc_quit(struct smtpc *c)
{
	if (c == NULL || c->quit_wanted)
		return;
	c->quit_wanted = true;
	switch (c->state) {
	case SMTPC_STATE_READY: /* a result may wait for the kick: it needs no connection */
		evtimer_del(c->timer);
		c->notify_idle = false;
		conn_quit(c);
		return;
	case SMTPC_STATE_CONNECTING:
	case SMTPC_STATE_GREETING:
	case SMTPC_STATE_EHLO:
	case SMTPC_STATE_HELO:
	case SMTPC_STATE_STARTTLS:
	case SMTPC_STATE_TLS_SWITCH:
	case SMTPC_STATE_HANDSHAKE:
		if (c->t.active)
			conn_fail(c, SMTPC_FAILURE_ABORTED, NULL, "4.3.0", false,
			          "closed before the message could be sent");
		else
			conn_close_now(c);
		return;
	default:
		return; /* the transaction ends first; conn_ready() then QUITs */
	}
}

void smtpc_info_get(const struct smtpc *c, struct smtpc_info *out)
{
	memset(out, 0, sizeof *out);
	out->id = c->id;
	out->established = c->established;
	out->greeting_name = c->greeting_name;
	out->tls = c->tls ? c->tls_desc : "";
	out->ext = c->ext;
	out->size_max = c->size_max;
	out->messages = c->messages;
	out->discarded = c->discarded;
	out->failure = c->failure;
	out->reply.code = c->fail_code;
	memcpy(out->reply.enhanced, c->fail_enhanced, sizeof out->reply.enhanced);
	out->reply.text = c->fail_text;
}

const char *smtpc_outcome_name(enum smtpc_outcome o)
{
	switch (o) {
	case SMTPC_OUTCOME_DELIVERED:
		return "delivered";
	case SMTPC_OUTCOME_DEFERRED:
		return "deferred";
	case SMTPC_OUTCOME_FAILED:
		return "failed";
	case SMTPC_OUTCOME_UNKNOWN:
		return "unknown";
	}
	return "?";
}

const char *smtpc_scope_name(enum smtpc_scope s)
{
	switch (s) {
	case SMTPC_SCOPE_RECIPIENT:
		return "recipient";
	case SMTPC_SCOPE_MESSAGE:
		return "message";
	case SMTPC_SCOPE_CONNECTION:
		return "connection";
	case SMTPC_SCOPE_UNKNOWN:
		return "unknown";
	}
	return "?";
}

const char *smtpc_failure_name(enum smtpc_failure f)
{
	static const char *const names[] = {
	    "none",    "connect", "greeting", "helo",    "tls_unavailable", "tls",
	    "timeout", "lost",    "protocol", "aborted", "internal",
	};
	return (size_t)f < sizeof names / sizeof names[0] ? names[f] : "?";
}
