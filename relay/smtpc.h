/*
 * smtpc.h: the outbound SMTP client: one connection to one remote MX host, over which the
 * delivery scheduler sends messages one after another.
 *
 * RFC 5321 (SMTP), 3207 (STARTTLS), 2920 (PIPELINING), 1870 (SIZE), 6152 (8BITMIME),
 * 6531 (SMTPUTF8), 2034 + 3463 (enhanced status codes).
 *
 * Life of a connection: smtpc_new() connects, reads the greeting, sends EHLO (HELO when EHLO
 * gets 5xx), STARTTLS when the policy says so (then EHLO again), and becomes idle. Each
 * smtpc_send() runs one transaction (RSET if the previous one stopped midway, MAIL, RCPTs,
 * DATA, the dot-stuffed body) and reports once through its callback. After max_messages
 * transactions, on smtpc_quit(), or when idle for idle_timeout_ms, the client sends QUIT and
 * closes; a failure closes at once. The owner is told through params.on_event (IDLE, CLOSED)
 * and frees the connection with smtpc_free().
 *
 * A message's result says, per recipient, delivered / deferred / failed / unknown, and where
 * a non-delivery came from (recipient, message, connection, or unknown: lost after the final
 * dot). Bodies are never logged; each result is logged as key=value lines with the connection
 * id (event=result, one event=rcpt per recipient).
 *
 * Callbacks (the send's result, on_event) always run from the connection's own event, never
 * inside smtpc_new(), smtpc_send(), smtpc_quit() or smtpc_free(), and never inside a
 * bufferevent callback. They carry the caller's ref (a handle: look the owner's object up by
 * it, do not store pointers for them) and arg. smtpc_send() and smtpc_free() may be called
 * from inside any of them.
 */
#ifndef POSTINO_SMTPC_H
#define POSTINO_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "relay/smtp_reply.h"

struct event_base;
struct smtpc;

#define SMTPC_RCPTS_MAX 1000 /* recipients per message (servers commonly take 100) */

enum smtpc_tls_policy {
	SMTPC_TLS_NONE,          /* never STARTTLS */
	SMTPC_TLS_OPPORTUNISTIC, /* STARTTLS when offered; cleartext when not offered or refused */
	SMTPC_TLS_REQUIRED,      /* STARTTLS or no mail: fails with SMTPC_FAILURE_TLS_UNAVAILABLE */
};

enum smtpc_event {
	SMTPC_EVENT_IDLE,   /* ready for a message (smtpc_can_send() is true) and none is given;
	                       without one within idle_timeout_ms the client QUITs */
	SMTPC_EVENT_CLOSED, /* the connection is over (smtpc_info() says why): smtpc_free() it */
};

typedef void smtpc_event_fn(enum smtpc_event ev, uint64_t ref, void *arg);

struct smtpc_params {
	const struct sockaddr *remote; /* address and port to connect to (copied) */
	socklen_t remote_len;
	const char *remote_name;       /* MX host name, for SNI and logs (copied; NULL: none) */
	const struct sockaddr *source; /* local address to bind (copied; NULL: the kernel's
	                                  choice). The seam for a pool of source addresses. */
	socklen_t source_len;
	const char *ehlo_name; /* our name in EHLO/HELO (copied), 1..255 octets */
	enum smtpc_tls_policy tls_policy;
	/* Client context for STARTTLS (a reference is taken; needed unless policy is NONE).
	 * With OPPORTUNISTIC the connection never verifies the certificate, whatever the
	 * context says; with REQUIRED the context's verify mode applies (smtpc_tls_ctx_new()'s
	 * does not verify yet). */
	SSL_CTX *tls_ctx;
	/* Timeouts, all > 0 but idle. Each reply has its own deadline from when it is awaited
	 * (a server dripping octets cannot stretch it); writes time out without progress. */
	unsigned connect_timeout_ms; /* TCP connect (30 s) */
	unsigned command_timeout_ms; /* greeting, each reply, TLS handshake, each write (300 s) */
	unsigned data_timeout_ms;    /* reply to the final dot, once it is written (600 s) */
	unsigned quit_timeout_ms;    /* reply to QUIT before closing anyway (10 s) */
	unsigned idle_timeout_ms;    /* idle before QUIT (5 s; 0: QUIT as soon as idle) */
	unsigned max_messages;       /* transactions per connection (>= 1), then QUIT (100) */
	smtpc_event_fn *on_event;    /* may be NULL */
	uint64_t ref;
	void *arg;
};

/* Fills p with the defaults above, policy OPPORTUNISTIC, and NULL for the rest. */
void smtpc_params_init(struct smtpc_params *p);

/*
 * A client TLS context: TLS 1.2 and newer, no certificate verification (opportunistic TLS per
 * RFC 3207 section 4.1: an unverified channel still beats cleartext; checking certificates for
 * REQUIRED, DANE or MTA-STS comes later). Returns NULL with the reason in err. Caller frees
 * with SSL_CTX_free.
 */
SSL_CTX *smtpc_tls_ctx_new(char *err, size_t errlen);

/*
 * Starts a connection on base. Returns NULL only when out of memory or when params are
 * invalid (no IPv4/IPv6 address, EHLO name missing or not 1..255 printable octets without
 * spaces, tls_ctx missing, a zero timeout, max_messages 0); connection failures come later as
 * SMTPC_EVENT_CLOSED (and as the result of a message given meanwhile). Owned by the caller:
 * smtpc_free() it.
 */
struct smtpc *smtpc_new(struct event_base *base, const struct smtpc_params *params);

/*
 * Frees the connection at once: no QUIT, no further callback, not even for a message in flight
 * (the caller treats that message as not sent, or as unknown if it may have been: it knows
 * where it stopped from its own state). Safe inside the connection's callbacks. NULL: no-op.
 */
void smtpc_free(struct smtpc *c);

/* ---- messages ---- */

struct smtpc_message {
	const char *sender;       /* reverse-path without <>, "" for the null sender */
	const char *const *rcpts; /* forward-paths without <> */
	size_t nrcpts;            /* 1..SMTPC_RCPTS_MAX */
	const char *body;         /* the message as stored: CRLF lines, not dot-stuffed */
	size_t body_len;
	bool body_8bit;     /* MAIL gets BODY=8BITMIME when the server offers it */
	bool smtputf8;      /* needs SMTPUTF8: refused (5.6.7) when not offered */
	const char *log_id; /* shown as msg= in log lines (the queue id); may be NULL */
};

enum smtpc_outcome {
	SMTPC_OUTCOME_DELIVERED, /* RCPT 2xx and the final dot 2xx */
	SMTPC_OUTCOME_DEFERRED,  /* 4xx, or a connection-level failure before the final dot left */
	SMTPC_OUTCOME_FAILED,    /* 5xx (from RCPT, MAIL, DATA or the final dot) */
	SMTPC_OUTCOME_UNKNOWN,   /* the final dot left and no reply came: the remote may have the
	                            message. Defer it; never count it delivered or bounced. */
};

/* Where a non-delivery comes from. */
enum smtpc_scope {
	SMTPC_SCOPE_RECIPIENT,  /* the transaction ran to its end (the final dot was answered, or
	                           every RCPT was refused): each recipient's outcome stands alone */
	SMTPC_SCOPE_MESSAGE,    /* MAIL, DATA or the final dot was refused (or the client refused
	                           to send: SIZE, SMTPUTF8): reply applies to every recipient whose
	                           RCPT was not refused */
	SMTPC_SCOPE_CONNECTION, /* connect, greeting, EHLO, TLS, timeout or lost connection before
	                           the final dot left: failure says which; deferred */
	SMTPC_SCOPE_UNKNOWN,    /* lost or timed out after the final dot left: every recipient
	                           accepted by RCPT is SMTPC_OUTCOME_UNKNOWN */
};

enum smtpc_failure {
	SMTPC_FAILURE_NONE,
	SMTPC_FAILURE_CONNECT,         /* TCP connect failed or timed out */
	SMTPC_FAILURE_GREETING,        /* the greeting was not 220 (reply holds it) */
	SMTPC_FAILURE_HELO,            /* EHLO and then HELO refused (reply holds it) */
	SMTPC_FAILURE_TLS_UNAVAILABLE, /* REQUIRED, and STARTTLS not offered or refused */
	SMTPC_FAILURE_TLS,             /* TLS handshake failed */
	SMTPC_FAILURE_TIMEOUT,         /* a reply or a write did not come in time */
	SMTPC_FAILURE_LOST,     /* the server closed (or said 421), or the connection broke */
	SMTPC_FAILURE_PROTOCOL, /* malformed or unexpected reply, refused RSET */
	SMTPC_FAILURE_ABORTED,  /* smtpc_quit() before the message could start */
	SMTPC_FAILURE_INTERNAL, /* out of memory, or a library call failed */
};

/*
 * A reply, as received, or made up by the client when none came (code 0 then, with an
 * enhanced code in the style of Postfix: 4.4.1 connect, 4.4.2 lost or timeout, 4.5.0
 * protocol, 4.7.4 TLS not offered, 4.7.5 TLS failure; and 5.3.4 / 5.6.7 for messages the
 * client refused to send).
 */
struct smtpc_reply {
	int code;                             /* 200..599, or 0 */
	char enhanced[SMTP_ENHANCED_MAX + 1]; /* "5.1.1", "" when none */
	const char *text;                     /* never NULL; see struct smtp_reply's text */
};

struct smtpc_rcpt_result {
	enum smtpc_outcome outcome;
	struct smtpc_reply reply; /* what decided it: the RCPT reply when RCPT was refused, else
	                             the message-level reply (the final dot's, MAIL's, DATA's, or
	                             the made-up one of a connection failure) */
};

/* Everything borrowed until the callback returns. */
struct smtpc_result {
	enum smtpc_scope scope;
	enum smtpc_failure failure; /* SCOPE_CONNECTION and SCOPE_UNKNOWN; else NONE */
	bool host_permanent;        /* retrying this host under the same policy cannot help
	                               (TLS required, not offered): try another MX, or hold */
	struct smtpc_reply reply;   /* message level: the final dot's reply when it came,
	                               else the refusing MAIL/DATA reply, else the made-up one
	                               (code 0, text "" when every RCPT was refused) */
	const struct smtpc_rcpt_result *rcpts; /* in the message's order (nrcpts 0 with failure
	                                          INTERNAL when out of memory: defer them all) */
	size_t nrcpts;
	size_t delivered, deferred, failed, unknown; /* recipients per outcome */
	uint64_t conn_id;                            /* the connection's log id */
	unsigned message_number;   /* 1 for the connection's first transaction; 0 when nothing
	                              was sent (connection failure first, or SIZE/SMTPUTF8) */
	const char *remote_name;   /* as given, "" when none */
	const char *remote_addr;   /* "192.0.2.1:25", "[2001:db8::1]:25" */
	const char *greeting_name; /* first word of the remote's 220 greeting ("" before it) */
	const char *tls;           /* "TLSv1.3 TLS_AES_256_GCM_SHA384", "" in cleartext */
	bool reusable;             /* the connection may take another message */
};

typedef void smtpc_result_fn(const struct smtpc_result *r, uint64_t ref, void *arg);

/* True when smtpc_send() would take a message now: no message in flight, not closing or
 * closed, max_messages not reached. (A connection still being set up can take one.) */
bool smtpc_can_send(const struct smtpc *c);

/*
 * Sends m (borrowed, with everything it points to, until cb runs). Returns 0: cb runs exactly
 * once, later. Returns -1 without any callback when smtpc_can_send() is false or m is invalid
 * (no or too many recipients; an address that is empty (but for the null sender), longer than
 * 254 octets (a 256-octet path with its <>), or holds a control octet, SP outside quotes, '<'
 * or '>', or an unclosed quote; non-ASCII without smtputf8).
 *
 * The body goes out as given, dot-stuffed (a '.' is added to every line that starts with one,
 * RFC 5321 4.5.2; after any LF, so a stray bare LF cannot make a line the server sees
 * unstuffed), then CRLF if it does not end with one, then ".\r\n". Its bytes are referenced
 * (evbuffer_add_reference), not copied.
 */
int smtpc_send(struct smtpc *c, const struct smtpc_message *m, smtpc_result_fn *cb, uint64_t ref,
               void *arg);

/* Asks for a graceful end: QUIT once the message in flight (if any) is done, now when idle.
 * A message given while the connection was still being set up fails with
 * SMTPC_FAILURE_ABORTED. SMTPC_EVENT_CLOSED follows. */
void smtpc_quit(struct smtpc *c);

/* ---- what the connection knows ---- */

struct smtpc_info {
	uint64_t id;
	bool established;          /* greeting and EHLO/HELO succeeded: the host works */
	const char *greeting_name; /* "" before the greeting */
	const char *tls;           /* "" in cleartext */
	unsigned ext;              /* SMTP_EXT_* of the last EHLO reply (0 after HELO) */
	uint64_t size_max;         /* the server's SIZE, 0 when none */
	unsigned messages;         /* transactions done */
	size_t discarded;          /* octets the server sent in cleartext after its 220 to
	                              STARTTLS: thrown away, never read (RFC 3207 section 4.2) */
	/* Why the connection ended (SMTPC_FAILURE_NONE: QUIT after idle, max messages or
	 * smtpc_quit), with the reply or the made-up one. */
	enum smtpc_failure failure;
	struct smtpc_reply reply;
};

/* Borrowed until the next call into c or the next return to the event loop. */
void smtpc_info_get(const struct smtpc *c, struct smtpc_info *out);

/* Names for logs: "delivered"/"deferred"/..., "recipient"/"message"/..., "connect"/... */
const char *smtpc_outcome_name(enum smtpc_outcome o);
const char *smtpc_scope_name(enum smtpc_scope s);
const char *smtpc_failure_name(enum smtpc_failure f);

#endif
