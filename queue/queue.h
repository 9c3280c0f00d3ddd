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
	/* NULL or "" for none, else a campaign id (the relay takes it from X-Campaign-ID):
	 * 1..QUEUE_CAMPAIGN_MAX bytes of 0x21..0x7e (queue_campaign_valid). The scheduler
	 * serves a tenant's campaigns round-robin. */
	const char *campaign;
};

typedef void queue_done_fn(enum queue_result res, uint64_t ref, void *arg);

/* Writes the message (body once, one state per recipient, one delivery entry per recipient
 * domain due now) in one atomic script. A recipient whose address or domain is on the user's
 * suppression list is final at once instead: state "suppressed", no delivery entry, a
 * "suppressed" event (reply "550 5.7.1 Recipient suppressed: <class> since <time>"); when
 * every recipient is suppressed the message is still accepted (QUEUE_OK) and nothing of it is
 * stored but its events and counters (queue/README.md, Suppression). All strings are copied before
 * this returns. Also returns -1 (no callback) for a malformed message: id not 16 lowercase hex
 * digits, a NULL string, nrcpts 0, an empty recipient domain, or a campaign that
 * queue_campaign_valid refuses. "Due now" is Redis' clock (TIME). Answers QUEUE_FULL, writing
 * nothing, while the queue holds the maximum set by queue_conn_set_max_queued. */
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

/* ---- delivery scheduling (sched.c, limits.c; the flow and keys are in queue/README.md) ----
 *
 * Every function below follows the async contract at the top of this file: -1 without a
 * callback (not ready, bad argument, out of memory), or 0 and exactly one callback later.
 * Results handed to a callback are borrowed for the callback's duration only. Times are
 * Redis' clock (TIME), the one clock every worker shares. */

/* Longest campaign id, site, worker name and SMTP reply the scheduler stores. */
#define QUEUE_CAMPAIGN_MAX 128
#define QUEUE_SITE_MAX     1024
#define QUEUE_WORKER_MAX   128
#define QUEUE_REPLY_MAX    1024 /* longer replies are cut at this many bytes */

/* True for NULL, "", or 1..QUEUE_CAMPAIGN_MAX bytes of 0x21..0x7e. */
bool queue_campaign_valid(const char *campaign);

/* Computes a site name: the MX host names lowercased, without a trailing dot, sorted,
 * duplicates removed, joined by ','. Pure. Returns 0, or -1 when n is 0, a name is empty or
 * longer than 255 bytes or holds a byte outside [A-Za-z0-9._-] (and '[' ']' ':' for an
 * address literal), or the result is longer than QUEUE_SITE_MAX bytes or than out holds. */
int queue_site_name(const char *const *hosts, size_t n, char *out, size_t outlen);

/* Refuse commits with QUEUE_FULL while pst:stat recipients_queued >= max (0, the default:
 * no limit). Checked inside the commit script, so it costs nothing. */
void queue_conn_set_max_queued(struct queue_conn *c, int64_t max_recipients);

/* Scheduling policy; queue_policy_default fills the defaults shown. */
struct queue_policy {
	int64_t lease_ms;         /* 900000 (15 min): longer than the longest SMTP transaction */
	unsigned max_reclaims;    /* 3: an entry whose lease expired more often is dead-lettered */
	int64_t max_age_ms;       /* 432000000 (5 days): then recipients expire (4.4.7) */
	int64_t backoff_first_ms; /* 300000 (5 min): the delay after the first attempt, doubling */
	int64_t backoff_max_ms;   /* 3600000 (1 h) */
	unsigned jitter_percent;  /* 10: each delay is shortened by a random 0..10 % */
	unsigned batch;           /* 500: entries one promote, site set or resolve fail moves */
	int64_t events_max;       /* 1000000: pst:events is trimmed (~) to this; 0 = never */
	/* Suppression by soft failures (queue/README.md, Suppression): an address whose
	 * soft-class failures reach soft_limit within soft_window_ms of the first is added to
	 * its user's list. Each message counts at most once per recipient, however often it is
	 * retried. */
	unsigned soft_limit;    /* 3; 0: soft failures never suppress */
	int64_t soft_window_ms; /* 604800000 (7 days) */
};
/* The largest soft_limit and soft_window_ms queue_policy_valid accepts. */
#define QUEUE_SOFT_LIMIT_MAX     1000
#define QUEUE_SOFT_WINDOW_MAX_MS ((int64_t)366 * 24 * 3600 * 1000)
void queue_policy_default(struct queue_policy *p);
/* True when every field is in range: lease_ms, max_age_ms >= 1; 1 <= backoff_first_ms <=
 * backoff_max_ms; jitter_percent <= 100; 1 <= batch <= 100000; events_max >= 0;
 * soft_limit <= QUEUE_SOFT_LIMIT_MAX; 1 <= soft_window_ms <= QUEUE_SOFT_WINDOW_MAX_MS. */
bool queue_policy_valid(const struct queue_policy *p);

/* Moves expired leases back to pst:sched (or to pst:dead after max_reclaims), then due
 * entries (score <= now, at most batch of each) into their site's ready queue, or to the
 * resolve queue when their domain's site is unknown, or to pst:held. One atomic script:
 * several promoters may run at once and nothing is lost or doubled. */
struct queue_promote_result {
	unsigned ready;     /* entries put into ready queues */
	unsigned resolving; /* entries waiting for their domain's site */
	unsigned held;      /* entries of held messages or domains */
	unsigned dropped;   /* entries of messages that are gone (deleted) */
	unsigned reclaimed; /* expired leases put back, due now */
	unsigned dead;      /* expired leases dead-lettered */
	bool more;          /* a batch was full: call again at once */
	int64_t next_ms;    /* ms until the next entry or lease is due, -1 when none */
};
typedef void queue_promote_fn(enum queue_result res, const struct queue_promote_result *r,
                              uint64_t ref, void *arg);
int queue_sched_promote(struct queue_conn *c, const struct queue_policy *p, queue_promote_fn *cb,
                        uint64_t ref, void *arg);

/* Claims up to max domains whose site must be resolved (they become claimable again after
 * claim_ms, should the claimer die). The relay resolves each, then calls queue_site_set or
 * queue_resolve_fail. domains is NULL when count is 0. */
typedef void queue_domains_fn(enum queue_result res, const char *const *domains, size_t count,
                              uint64_t ref, void *arg);
int queue_resolve_take(struct queue_conn *c, unsigned max, int64_t claim_ms, queue_domains_fn *cb,
                       uint64_t ref, void *arg);

/* moved: entries handled by this call (at most the policy's batch); remaining: entries still
 * waiting for the domain: call again while it is not 0. */
typedef void queue_moved_fn(enum queue_result res, unsigned moved, unsigned remaining, uint64_t ref,
                            void *arg);
/* Records domain -> site for ttl_s seconds (pst:site:of:<domain>, shared by every worker) and
 * moves the domain's waiting entries into the site's ready queue. domain: 1..255 bytes, no
 * space; site: 1..QUEUE_SITE_MAX bytes of 0x21..0x7e without '|'; ttl_s >= 1. */
int queue_site_set(struct queue_conn *c, const struct queue_policy *p, const char *domain,
                   const char *site, unsigned ttl_s, queue_moved_fn *cb, uint64_t ref, void *arg);
/* The domain could not be resolved: permanent (NXDOMAIN, null MX) fails every waiting
 * recipient with reply; temporary (SERVFAIL, timeout) defers them like a 4xx (an attempt is
 * counted, backoff, expiry). Events are written as for outcomes. */
int queue_resolve_fail(struct queue_conn *c, const struct queue_policy *p, const char *domain,
                       bool permanent, const char *reply, queue_moved_fn *cb, uint64_t ref,
                       void *arg);

enum queue_pick {
	QUEUE_PICK_SITE,  /* site is the next site to serve */
	QUEUE_PICK_NONE,  /* no site has ready entries */
	QUEUE_PICK_LATER, /* only sites that are down or held: ask again after wait_ms */
};
struct queue_site_pick {
	enum queue_pick pick;
	const char *site; /* "" unless QUEUE_PICK_SITE */
	int64_t ready;    /* entries in its ready queue */
	int64_t leased;   /* entries of it leased now */
	int64_t wait_ms;  /* QUEUE_PICK_LATER */
};
typedef void queue_site_fn(enum queue_result res, const struct queue_site_pick *pick, uint64_t ref,
                           void *arg);
/* Round robin over the sites with ready entries (least recently picked first), skipping sites
 * that are down or held. The caller then takes a connection slot and leases from the site. */
int queue_site_next(struct queue_conn *c, queue_site_fn *cb, uint64_t ref, void *arg);

/* ok: false when the thing named (a lease, a slot) is no longer the caller's. */
typedef void queue_flag_fn(enum queue_result res, bool ok, uint64_t ref, void *arg);
/* Marks site down for down_ms (pst:down:<site>; never shortens a longer mark): leases from it
 * answer QUEUE_LEASE_DOWN and queue_site_next skips it. cb may be NULL. */
int queue_site_down(struct queue_conn *c, const char *site, int64_t down_ms, queue_flag_fn *cb,
                    uint64_t ref, void *arg);

/* A shared rate: count messages per period_ms, with bursts of up to burst (>= 1) messages.
 * count 0 means no limit. */
struct queue_rate {
	unsigned count;
	int64_t period_ms;
	unsigned burst;
};

enum queue_lease_status {
	QUEUE_LEASE_OK,    /* a delivery is leased */
	QUEUE_LEASE_EMPTY, /* nothing ready for the site */
	QUEUE_LEASE_WAIT,  /* the site's rate allows the next message in wait_ms */
	QUEUE_LEASE_DOWN,  /* the site is marked down for wait_ms more */
	QUEUE_LEASE_HELD,  /* the site is held by the administrator */
};

struct queue_lease_rcpt {
	unsigned index;    /* in pst:rcpt, to name the recipient in the outcome */
	unsigned attempts; /* counted attempts before this one */
	const char *address;
};

/* One leased delivery entry: one message, the recipients at one domain still open. */
struct queue_delivery {
	enum queue_lease_status status;
	int64_t wait_ms; /* QUEUE_LEASE_WAIT, QUEUE_LEASE_DOWN */
	/* The rest is set for QUEUE_LEASE_OK only. id, domain and token name the lease in
	 * queue_delivery_outcome and queue_delivery_renew. */
	uint64_t token; /* unique per lease: an outcome with an older token is refused */
	const char *id;
	const char *domain;
	const char *site;
	const char *sender; /* "" for <> */
	const char *user;
	const char *campaign; /* "" for none */
	int64_t received_ms;
	int64_t deadline_ms; /* the lease expires then (Redis clock) unless renewed */
	unsigned attempt;    /* this attempt's number, 1 for the first */
	bool smtputf8;
	bool body_8bit;
	const char *body;
	size_t body_len;
	const struct queue_lease_rcpt *rcpts;
	size_t nrcpts; /* >= 1 */
};
typedef void queue_lease_fn(enum queue_result res, const struct queue_delivery *d, uint64_t ref,
                            void *arg);
/* Leases the site's next entry: round robin over tenants, then over the tenant's flows
 * (campaigns, first attempts and retries apart), oldest entry of the flow first. With rate
 * (NULL or count 0: none), the site's shared GCRA limit is checked first and charged only
 * when an entry is leased. worker: 1..QUEUE_WORKER_MAX bytes of [A-Za-z0-9._:@-], for the
 * logs and `queue stats`. The lease lasts policy lease_ms; the recipients' state becomes
 * "sending". d is never NULL; with res != QUEUE_OK its status is QUEUE_LEASE_EMPTY. */
int queue_delivery_lease(struct queue_conn *c, const struct queue_policy *p, const char *site,
                         const char *worker, const struct queue_rate *rate, queue_lease_fn *cb,
                         uint64_t ref, void *arg);
/* Extends a lease to now + lease_ms. ok is false when the lease is no longer the caller's. */
int queue_delivery_renew(struct queue_conn *c, const char *id, const char *domain, uint64_t token,
                         int64_t lease_ms, queue_flag_fn *cb, uint64_t ref, void *arg);

enum queue_outcome_kind {
	QUEUE_OUTCOME_DELIVERED, /* 2xx: final */
	QUEUE_OUTCOME_DEFERRED,  /* 4xx, timeout, connection lost (even after the final dot) */
	QUEUE_OUTCOME_FAILED,    /* 5xx: final (bounced) */
	QUEUE_OUTCOME_SITE_DOWN, /* no host of the site answered: deferred, no attempt counted */
};

struct queue_rcpt_outcome {
	unsigned index; /* queue_lease_rcpt.index */
	enum queue_outcome_kind kind;
	const char *reply; /* the SMTP reply or the local reason; cut at QUEUE_REPLY_MAX */
	/* NULL, or the bounce classifier's class: written into the event, and it decides
	 * suppression (queue_delivery_outcome) */
	const char *bounce_class;
};

struct queue_outcome {
	const char *id;
	const char *domain;
	uint64_t token;
	const char *host; /* remote host name or address, "" when none was reached; no spaces */
	const char *tls;  /* TLS version ("TLSv1.3"), "" for cleartext; no spaces */
	int64_t down_ms;  /* SITE_DOWN: mark the site down this long, retry then (0: backoff) */
	const struct queue_rcpt_outcome *rcpts;
	size_t nrcpts; /* leased recipients left out are deferred ("no outcome reported") */
};

enum queue_record {
	QUEUE_RECORD_OK,    /* written, lease released */
	QUEUE_RECORD_STALE, /* the lease is not the caller's any more: nothing written */
	QUEUE_RECORD_GONE,  /* the message was deleted meanwhile: lease released */
};
struct queue_outcome_result {
	enum queue_record record;
	unsigned delivered, bounced, deferred, expired;
	unsigned suppressed; /* addresses this outcome added to the user's suppression list */
	bool message_done;   /* every recipient final: body, message and recipients removed */
	int64_t next_ms;     /* when deferred: the entry's next due time (Redis ms), else -1 */
};
typedef void queue_outcome_fn(enum queue_result res, const struct queue_outcome_result *r,
                              uint64_t ref, void *arg);
/* Records the outcome of one leased attempt and releases the lease, in one atomic script,
 * which checks first that the lease (id, domain, token) is still the caller's. Per recipient:
 * delivered or failed is final; deferred counts an attempt and schedules the entry again
 * after the backoff (the first delay, doubling, capped, with jitter, and never past the
 * maximum age, so the last attempt happens at it); a deferral at or after the maximum age
 * expires the recipient (4.4.7). Writes one pst:events record per recipient; when the last
 * recipient of the message is final, removes body, message and recipients.
 * Suppression, by each recipient's bounce_class (DESIGN.md, Bounces): "hard" on a failure
 * and "complaint" on a failure or deferral add the address to the message's user's list at
 * once (source: the message id; reason: the reply's first QUEUE_SUPP_REASON_MAX bytes);
 * "soft" on a failure, deferral or expiry, and "hard" on a deferral (a 4xx is never final
 * proof), count towards the policy's soft_limit, once per message and recipient; "block",
 * "ignore", no class, and SITE_DOWN never suppress. */
int queue_delivery_outcome(struct queue_conn *c, const struct queue_policy *p,
                           const struct queue_outcome *o, queue_outcome_fn *cb, uint64_t ref,
                           void *arg);

/* ---- suppression lists (suppress.c; keys and rules in queue/README.md, Suppression) ----
 *
 * Each user (tenant) has a list of addresses mail is not sent to: the commit script makes
 * a recipient whose address, or whose domain as "*@domain", is on the message's user's list
 * (and not expired) final at once, state "suppressed" (queue_commit). */

#define QUEUE_SUPP_ADDRESS_MAX 256 /* an address or "*@domain" (RFC 5321 path: 256 octets) */
#define QUEUE_SUPP_REASON_MAX  200 /* longer reasons are cut (the first 200 bytes are kept) */
#define QUEUE_SUPP_SOURCE_MAX  64

/* One entry of a user's list. Handed to a function, the strings stay the caller's (they are
 * copied before it returns); in a struct queue_supp_list, they are the list's. */
struct queue_suppression {
	const char *address;    /* "local@domain", or "*@domain" for the whole domain */
	const char *class_name; /* "hard", "soft", "complaint" or "manual" */
	const char *reason;     /* NULL or text; control bytes become spaces; cut at the max */
	/* NULL or "" for none (stored "-"); else a message id or 1..QUEUE_SUPP_SOURCE_MAX bytes
	 * of 0x21..0x7e ("admin", "import") */
	const char *source;
	int64_t created_ms; /* when it was suppressed; 0: now (Redis' clock) */
	int64_t expires_ms; /* 0: never; else the unix ms from which the entry no longer applies */
};

/* Pure. Writes the list's form of address into out: ASCII letters lowercased (the local part
 * too: providers treat it without case), everything else as is. Accepts 3..
 * QUEUE_SUPP_ADDRESS_MAX bytes: a non-empty local part ("*" for the whole domain) of bytes
 * 0x20..0xff except 0x7f, the last '@', a non-empty domain of bytes 0x21..0xff except 0x7f.
 * Returns 0, or -1 (out then holds "") when address is malformed or out is too small. */
int queue_supp_address_normalize(const char *address, char *out, size_t outlen);
/* Pure. True for "hard", "soft", "complaint" and "manual". */
bool queue_supp_class_valid(const char *class_name);
/* Pure. True for NULL or "" (none), or 1..QUEUE_SUPP_SOURCE_MAX bytes of 0x21..0x7e (a
 * message id is one). */
bool queue_supp_source_valid(const char *source);

/* Adds s to user's list now (the bounce listener's complaints and asynchronous hard bounces),
 * replacing an entry of the same address, and clears the address' soft-failure count. When
 * s->class_name is "complaint" and s->source is a message id, also writes a "complained"
 * event (and its counters) for that message and recipient s->address, with the message's
 * campaign while the message is still queued; p gives events_max. cb may be NULL. Returns -1
 * (no callback) for a user name that is empty or longer than QUEUE_NAME_MAX, or an entry that
 * queue_supp_address_normalize, queue_supp_class_valid or the source rule refuses, or a
 * negative time. */
int queue_suppress_add(struct queue_conn *c, const struct queue_policy *p, const char *user,
                       const struct queue_suppression *s, queue_done_fn *cb, uint64_t ref,
                       void *arg);

/* ---- shared limits (limits.c) ---- */

struct queue_rate_result {
	bool allowed;
	int64_t wait_ms;  /* when not allowed: the next message is allowed after this */
	int64_t redis_us; /* Redis' clock at the decision, microseconds */
};
typedef void queue_rate_fn(enum queue_result res, const struct queue_rate_result *r, uint64_t ref,
                           void *arg);
/* GCRA in Redis (pst:rate:<site>): takes one message from the site's shared rate. rate->count
 * must be >= 1, period_ms >= 1, burst >= 1. */
int queue_site_rate_take(struct queue_conn *c, const char *site, const struct queue_rate *rate,
                         queue_rate_fn *cb, uint64_t ref, void *arg);

struct queue_slot_result {
	uint64_t slot;      /* the connection slot, 0 when the site is full */
	unsigned in_use;    /* slots taken after this call */
	int64_t wait_ms;    /* when full: until the earliest slot expires */
	unsigned reclaimed; /* expired slots (of crashed workers) removed by this call */
};
typedef void queue_slot_fn(enum queue_result res, const struct queue_slot_result *r, uint64_t ref,
                           void *arg);
/* Takes one of max connection slots of site for ttl_ms (pst:slots:<site>, a sorted set of slot
 * -> expiry); expired slots are removed first. Renew before ttl_ms passes; release when the
 * connection closes. */
int queue_site_slot_acquire(struct queue_conn *c, const char *site, unsigned max, int64_t ttl_ms,
                            queue_slot_fn *cb, uint64_t ref, void *arg);
/* ok false: the slot expired (and may be someone else's now): close the connection. */
int queue_site_slot_renew(struct queue_conn *c, const char *site, uint64_t slot, int64_t ttl_ms,
                          queue_flag_fn *cb, uint64_t ref, void *arg);
/* cb may be NULL. */
int queue_site_slot_release(struct queue_conn *c, const char *site, uint64_t slot,
                            queue_flag_fn *cb, uint64_t ref, void *arg);

struct queue_pressure {
	int64_t used_memory; /* INFO memory */
	int64_t maxmemory;   /* 0: none set */
	int64_t messages_queued;
	int64_t recipients_queued;
};
typedef void queue_pressure_fn(enum queue_result res, const struct queue_pressure *p, uint64_t ref,
                               void *arg);
/* Reads memory use and queue size in one round trip, for the relay to sample (every second)
 * and cache. */
int queue_pressure_read(struct queue_conn *c, queue_pressure_fn *cb, uint64_t ref, void *arg);
/* Pure: true when used_memory is above max_memory_percent (1..100) of maxmemory (ignored when
 * maxmemory is 0 or the percent is 0) or recipients_queued >= max_recipients (0: ignored).
 * Submission then answers 452 4.3.1. */
bool queue_pressure_full(const struct queue_pressure *p, unsigned max_memory_percent,
                         int64_t max_recipients);

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

/* What a queue command applies to. */
enum queue_select {
	QUEUE_SELECT_MESSAGE, /* value: a message id */
	QUEUE_SELECT_DOMAIN,  /* value: a recipient domain (lowercase) */
	QUEUE_SELECT_SITE,    /* value: a site name, as queue_site_name makes it */
};

/* postinoctl queue retry|hold|release|delete. Each returns 0 with *count set, or -1 with err
 * ("no such message" for an unknown id). By domain or site they scan the queue in steps of a
 * thousand (they may take seconds on a large queue, without blocking Redis for long); by site
 * they match the domains whose site is known now.
 * retry:   scheduled entries become due now; dead-lettered ones are queued again; by site, the
 *          site's down mark is removed. count: entries.
 * hold:    by message, its scheduled entries move to pst:held at once and the others when
 *          they are next promoted or leased (count: entries moved now); by domain, entries
 *          stop there too; by site, the site is not served (count: 1 when newly held).
 * release: undoes hold; held entries are due now. count: entries (and marks) released.
 * delete:  the recipients become final ("deleted", with an event), and the message goes when
 *          none is left open; entries already leased finish their attempt but record nothing.
 *          count: recipients. */
int queue_admin_retry(struct queue_admin *a, enum queue_select by, const char *value,
                      uint64_t *count, char *err, size_t errlen);
int queue_admin_hold(struct queue_admin *a, enum queue_select by, const char *value,
                     uint64_t *count, char *err, size_t errlen);
int queue_admin_release(struct queue_admin *a, enum queue_select by, const char *value,
                        uint64_t *count, char *err, size_t errlen);
int queue_admin_delete(struct queue_admin *a, enum queue_select by, const char *value,
                       uint64_t *count, char *err, size_t errlen);
/* postinoctl queue stats: prints
 *   scheduled=<n> due=<n> resolving=<domains> waiting=<entries> leased=<n> held=<n> dead=<n>
 *   messages=<n> recipients=<n>
 * on one line, then one line per site with ready or leased entries, most ready first:
 *   <site> ready=<n> leased=<n> down=<seconds|-> held=<yes|no>
 * Returns 0/-1. */
int queue_admin_stats(struct queue_admin *a, FILE *out, char *err, size_t errlen);

/* postinoctl suppression add|import: writes n entries into user's list, replacing entries of
 * the same address and clearing their soft-failure counts. Every entry is checked first (as
 * queue_suppress_add does); one bad entry fails the call with err naming it ("entry 3: bad
 * address") and nothing is written. Writes in atomic steps of QUEUE_SUPP_PUT_STEP entries:
 * an error from Redis midway ("no such user" is found by the first step) leaves the earlier
 * steps written, which a second run of the same import overwrites. Returns 0 or -1. */
#define QUEUE_SUPP_PUT_STEP 1000
int queue_admin_suppress_put(struct queue_admin *a, const char *user,
                             const struct queue_suppression *entries, size_t n, char *err,
                             size_t errlen);
/* Removes address (normalized as queue_supp_address_normalize does) from user's list and its
 * soft-failure count. *found says whether it was there. Returns 0, or -1 with err. */
int queue_admin_suppress_del(struct queue_admin *a, const char *user, const char *address,
                             bool *found, char *err, size_t errlen);

/* A user's list, read by queue_admin_suppress_list. */
struct queue_supp_list {
	struct queue_suppression *entries; /* count entries, sorted by address */
	size_t count;
	char **storage; /* the entries' strings: owned, freed by queue_supp_list_free */
};
/* Reads user's list in steps (HSCAN, QUEUE_SUPP_PUT_STEP fields a step: Redis is never
 * blocked for the whole list), sorted by address. Entries that have expired are left out and
 * removed from Redis (each checked again when removed). The whole list is held in memory.
 * Returns 0 with *out filled (free it with queue_supp_list_free), or -1 with err (*out then
 * empty). A user without a list has an empty one. */
int queue_admin_suppress_list(struct queue_admin *a, const char *user, struct queue_supp_list *out,
                              char *err, size_t errlen);
/* Frees what queue_admin_suppress_list filled in (an empty list is a no-op); l stays valid,
 * empty. */
void queue_supp_list_free(struct queue_supp_list *l);

/* For tests and tools: fetches a queued message's body into a malloc'd buffer (caller frees).
 * Returns 0, or -1 with err ("no such message"). */
int queue_admin_body(struct queue_admin *a, const char *id, char **body, size_t *len, char *err,
                     size_t errlen);

#endif
