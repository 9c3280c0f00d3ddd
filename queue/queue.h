/*
 * queue.h: Postino's Redis store. The only module that includes hiredis. It owns the key
 * schema (queue/README.md), the Lua scripts, the async connection used by the daemon's event
 * loops and the blocking connection used by postinoctl and start-up checks.
 *
 * Async contract: every request function either returns -1 without calling its callback (not
 * connected, or out of memory), or returns 0 and calls its callback exactly once, later, from
 * the event loop: with the reply, or with QUEUE_UNAVAILABLE when Redis errs, disconnects or
 * does not answer within settings.timeout_ms (hiredis 0.14 has no timeout: the module keeps one
 * timer per request). A timed-out request drops the connection, which fails every other pending
 * request, and reconnects with backoff. Callbacks get back the caller's uint64_t ref and void
 * *arg untouched: the caller finds its session by ref (never keep a session pointer in arg).
 */
#ifndef POSTINO_QUEUE_H
#define POSTINO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct event_base;
struct queue_conn;
struct queue_admin;

enum queue_result {
	QUEUE_OK,
	QUEUE_UNAVAILABLE, /* down, timed out, READONLY, LOADING, other error: 451 4.3.0 */
	QUEUE_FULL,        /* OOM (maxmemory reached): 452 4.3.1 */
	QUEUE_CONFLICT,    /* the message id exists already (commit) */
};

struct queue_settings {
	const char *address;  /* "unix:/path/to/sock" or "host:port" */
	const char *password; /* NULL or "" for none */
	int timeout_ms;       /* per request */
};

/* Longest user name stored in a key (RFC 4616 caps a SASL authcid at 255 octets). */
#define QUEUE_NAME_MAX 255
/* Longest client address text accepted as a key part (INET6_ADDRSTRLEN is 46). */
#define QUEUE_IP_MAX 63

/* A Redis address, parsed. */
struct queue_address {
	bool is_unix;
	char path[108]; /* unix socket path (sun_path size) */
	char host[256]; /* name, IPv4, or IPv6 without brackets */
	int port;       /* 1..65535 */
};

/* Parses settings.address strictly: "unix:<path>", "<host>:<port>" or "[<ipv6>]:<port>". A pure
 * function, for the config checker too. Returns 0, or -1 with the reason in err. Host names are
 * resolved by hiredis with a blocking getaddrinfo(): prefer an IP address or a unix socket. */
int queue_address_parse(const char *text, struct queue_address *out, char *err, size_t errlen);

/* "ok", "unavailable", "full", "conflict": for logs. */
const char *queue_result_name(enum queue_result res);

/* ---- async connection (daemon) ---- */

/* Creates a connection bound to base; connects now and reconnects by itself (backoff 100 ms
 * doubling to 2 s). Scripts are loaded on every (re)connect. Returns NULL on bad address or
 * memory. Caller frees with queue_conn_free (pending callbacks are called with
 * QUEUE_UNAVAILABLE before it returns). */
struct queue_conn *queue_conn_new(struct event_base *base, const struct queue_settings *s);
void queue_conn_free(struct queue_conn *c);
/* True when connected, authenticated and the scripts are loaded. */
bool queue_conn_ready(const struct queue_conn *c);
/* Round-trip time of the last completed request in microseconds (for metrics), 0 if none. */
uint64_t queue_conn_last_latency_us(const struct queue_conn *c);
/* Why the connection last failed (connect, AUTH, SCRIPT LOAD, timeout, lost), "" if never:
 * for the daemon's log. Borrowed until the next call into c. */
const char *queue_conn_last_error(const struct queue_conn *c);

struct queue_recipient {
	const char *address; /* "local@domain" */
	const char *domain;  /* lowercased domain of address */
};

struct queue_message {
	const char *id;     /* 16 lowercase hex digits */
	const char *sender; /* envelope sender "local@domain" ("" for <>) */
	const char *user;   /* authenticated user name */
	const char *client_ip;
	const char *helo;
	int64_t received_ms; /* unix time in ms */
	const char *body;    /* the signed message, CRLF line ends */
	size_t body_len;
	const struct queue_recipient *rcpts;
	size_t nrcpts; /* >= 1 */
	bool smtputf8;
	bool body_8bit;
};

typedef void queue_done_fn(enum queue_result res, uint64_t ref, void *arg);

/* Writes the message (body once, one state per recipient, one delivery entry per recipient
 * domain due now) in one atomic script. All strings are copied before this returns. Also
 * returns -1 (no callback) for a malformed message: id not 16 lowercase hex digits, a NULL
 * string, nrcpts 0, or an empty recipient domain. "Due now" is Redis' clock (TIME). */
int queue_commit(struct queue_conn *c, const struct queue_message *m, queue_done_fn *cb,
                 uint64_t ref, void *arg);

/* A user's record, borrowed by the callback for its duration only. */
struct queue_user_record {
	bool found;
	const char *pwhash;     /* "" when not found */
	const char *domains;    /* space-separated, lowercased */
	const char *only_nets;  /* space-separated CIDRs, "" = anywhere */
	unsigned ip_failures;   /* AUTH failures from this IP within the window */
	unsigned user_failures; /* AUTH failures for this user within the window */
};

typedef void queue_user_fn(enum queue_result res, const struct queue_user_record *rec, uint64_t ref,
                           void *arg);

/* Fetches user `name` and the failure counters of `name` and `ip` in one round trip. rec is
 * never NULL: with res != QUEUE_OK it is an empty record (found false, strings ""). Also
 * returns -1 when name is empty or longer than QUEUE_NAME_MAX, or ip empty or longer than
 * QUEUE_IP_MAX. */
int queue_user_lookup(struct queue_conn *c, const char *name, const char *ip, queue_user_fn *cb,
                      uint64_t ref, void *arg);

/* Records an AUTH outcome: failure increments the IP's and the user's counters (each expires
 * window_s after its last increment); success deletes the user's counter. cb may be NULL.
 * Same limits on name and ip as queue_user_lookup; window_s must be >= 1. */
int queue_auth_record(struct queue_conn *c, const char *name, const char *ip, bool success,
                      unsigned window_s, queue_done_fn *cb, uint64_t ref, void *arg);

/* One allowed network: sessions from cidr act as user (with that user's domains). */
struct queue_allownet {
	const char *cidr;
	const char *user;
	const char *domains; /* space-separated, lowercased */
};

typedef void queue_allownets_fn(enum queue_result res, const struct queue_allownet *nets,
                                size_t count, uint64_t ref, void *arg);

/* Loads every allowed network with its user's domains. nets (NULL when count is 0 or res is
 * not QUEUE_OK) is borrowed for the callback's duration only. */
int queue_allownets_load(struct queue_conn *c, queue_allownets_fn *cb, uint64_t ref, void *arg);

/* ---- blocking connection (postinoctl, start-up) ---- */

/* Connects (and AUTHs). On failure returns NULL and writes a reason into err. */
struct queue_admin *queue_admin_connect(const struct queue_settings *s, char *err, size_t errlen);
void queue_admin_free(struct queue_admin *a);
/* Returns 0 when Redis runs appendonly yes, appendfsync always and maxmemory-policy
 * noeviction; else -1 with every unsafe setting (or a failed CONFIG GET) named in err. */
int queue_admin_check_durable(struct queue_admin *a, char *err, size_t errlen);

struct queue_user {
	const char *name;
	const char *pwhash;
	const char *domains;    /* space-separated, lowercased */
	const char *allow_nets; /* space-separated CIDRs */
	const char *only_nets;  /* space-separated CIDRs */
};

/* Creates (create=true: fails with -1 and "exists" in err if present) or updates a user, and
 * keeps the allowed-network index in step, atomically. create=false creates a missing user.
 * Fails with -1, writing nothing, when an allowed network belongs to another user (err names
 * it) or a field is malformed: name of [A-Za-z0-9._@+-] (1..QUEUE_NAME_MAX), pwhash without
 * spaces, domains of [a-z0-9.-] (stored lowercased), networks "address/length". */
int queue_admin_user_put(struct queue_admin *a, const struct queue_user *u, bool create, char *err,
                         size_t errlen);
/* Deletes a user and its allowed networks. Returns 0, or -1 ("no such user" in err). */
int queue_admin_user_del(struct queue_admin *a, const char *name, char *err, size_t errlen);
/* Sets a user's password hash. Returns 0, or -1 ("no such user" in err). */
int queue_admin_user_passwd(struct queue_admin *a, const char *name, const char *pwhash, char *err,
                            size_t errlen);
/* Prints one line per user, sorted by name: "NAME domains=a,b allow_nets=... only_nets=..."
 * (each list comma-separated, empty when none). Returns 0/-1. */
int queue_admin_user_list(struct queue_admin *a, FILE *out, char *err, size_t errlen);
/* Prints up to limit queued messages, oldest first, each followed by its recipients:
 *   <id> received=<iso8601> user=<u> from=<sender> size=<n> rcpts=<n>
 *     <address> state=<state> attempts=<n> next=<iso8601|->
 * and a last line "messages=<n> recipients=<n>". Returns 0/-1.
 * iso8601 is UTC to the second ("2024-05-01T12:00:00Z"); from=<> for the null sender; next=-
 * for a final state; recipient lines are indented by two spaces, in recipient order; the last
 * line counts the whole queue (queued messages, recipients not yet final), not just the lines
 * printed. */
int queue_admin_show(struct queue_admin *a, FILE *out, size_t limit, char *err, size_t errlen);

/* For tests and tools: fetches a queued message's body into a malloc'd buffer (caller frees).
 * Returns 0, or -1 with err ("no such message"). */
int queue_admin_body(struct queue_admin *a, const char *id, char **body, size_t *len, char *err,
                     size_t errlen);

#endif
