/*
 * provider.h: what the HTTP API (stats/http.c) asks of its data source, and the answers it
 * encodes as JSON. The daemon's provider reads Redis (queue/); the unit tests use a fake.
 *
 * Async contract (the same as queue.h's): every function either returns -1 without calling
 * its callback (not connected, out of memory: the HTTP layer answers 503), or returns 0 and
 * calls its callback exactly once, later, from the event loop (never from inside the call).
 * The callback gets back ref and cb_arg untouched: the HTTP layer finds its request by ref in
 * its own table, so a late answer for a request that timed out or whose client went away is
 * dropped safely. Queries and principals are borrowed for the duration of the call only (copy
 * what you keep); results handed to a callback are borrowed by the HTTP layer for the
 * callback's duration only. Every pointer in a result may be NULL (encoded as null) unless
 * its comment says otherwise; strings are any bytes (the encoder escapes them and makes them
 * valid UTF-8).
 *
 * The HTTP layer must outlive the calls it makes: free the provider (dropping its pending
 * calls without calling back) before stats_http_free(), or wait for every callback.
 *
 * Access: every data query carries the principal the API key resolved to. The provider must
 * scope its answer to it: a principal that is not admin sees only its own user's messages,
 * events, series and queue entries, and a message of another user is STATS_NOT_FOUND (never
 * a distinct "forbidden", so ids cannot be probed).
 */
#ifndef POSTINO_STATS_PROVIDER_H
#define POSTINO_STATS_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stats/metrics.h"

/* Limits of the query fields (checked by the HTTP layer before any call). */
#define STATS_ID_LEN           16   /* a message id: lowercase hex digits */
#define STATS_RECIPIENT_MAX    320  /* octets: 64 local part + '@' + 255 domain */
#define STATS_CAMPAIGN_MAX     128  /* octets of 0x21..0x7e, as queue/ stores them */
#define STATS_EVENT_TYPE_MAX   16   /* octets of an event type name */
#define STATS_CURSOR_MAX       256  /* octets of 0x21..0x7e, opaque to the HTTP layer */
#define STATS_USER_MAX         255  /* octets of a user name (QUEUE_NAME_MAX) */
#define STATS_KEY_HASH_LEN     64   /* SHA-256 in lowercase hex */
#define STATS_EVENTS_LIMIT_MAX 1000 /* events per page */
#define STATS_GROUPS_MAX       100  /* series per stats answer (by=...) */
#define STATS_BUCKETS_MAX      1500 /* buckets per series: (to - from) / step */

enum stats_status {
	STATS_OK,
	STATS_NOT_FOUND,   /* no such message (or not the principal's), or no such key */
	STATS_UNAVAILABLE, /* Redis down, slow, or erring: 503 */
	STATS_BAD_CURSOR,  /* events: the cursor is not one the provider made: 400 */
};

/* Who asks: the user an API key belongs to. Borrowed for the call. */
struct stats_principal {
	const char *user; /* never NULL */
	bool admin;       /* sees every user's data */
};

/* ---- queries (self-contained: no pointer into the request) ---- */

struct stats_message_query {
	char id[STATS_ID_LEN + 1];
};

/* Empty strings mean "any". Times are unix seconds, both ends included (an event at
 * to_s + 0.999 s matches); from_s <= to_s. */
struct stats_event_query {
	char recipient[STATS_RECIPIENT_MAX + 1]; /* exact address (the provider decides case) */
	char campaign[STATS_CAMPAIGN_MAX + 1];
	char type[STATS_EVENT_TYPE_MAX + 1]; /* one of the names in stats/request.h */
	int64_t from_s, to_s;
	char cursor[STATS_CURSOR_MAX + 1]; /* "" for the first page */
	unsigned limit;                    /* 1..STATS_EVENTS_LIMIT_MAX */
};

enum stats_step { STATS_STEP_MINUTE, STATS_STEP_HOUR, STATS_STEP_DAY };
enum stats_by { STATS_BY_NONE, STATS_BY_DOMAIN, STATS_BY_CAMPAIGN, STATS_BY_USER, STATS_BY_SITE };

/* Buckets whose start lies in [from_s, to_s]; from_s and to_s are multiples of the step
 * (the HTTP layer rounds them down) and hold at most STATS_BUCKETS_MAX steps. */
struct stats_series_query {
	int64_t from_s, to_s;
	enum stats_step step;
	enum stats_by by; /* STATS_BY_NONE: one series, the principal's total */
	unsigned limit;   /* by != NONE: the limit groups with the most received, 1..GROUPS_MAX */
};

/* ---- results ---- */

/* One state change of one recipient (DESIGN.md, Events and stats). */
struct stats_event {
	const char *type;       /* "received", "deferred", "delivered", "bounced", ... */
	int64_t time_ms;        /* unix milliseconds */
	const char *message_id; /* 16 hex digits */
	const char *recipient;
	const char *user;
	const char *campaign;
	unsigned attempt; /* 0 when the event has none */
	const char *host; /* remote MX host */
	const char *reply;
	const char *tls; /* "TLSv1.3", ... */
	const char *reason;
	const char *bounce_class; /* "hard", "soft", "block", "complaint", "ignore" */
};

struct stats_recipient {
	const char *address;     /* never NULL */
	const char *state;       /* "queued", "sending", "deferred", "delivered", ... */
	unsigned attempts;       /* made so far */
	int64_t next_attempt_ms; /* -1 when none is planned */
	int64_t last_attempt_ms; /* -1 before the first */
	const char *last_reply;
	const char *host;
	const char *tls;
	const char *reason;
	const char *bounce_class;
};

struct stats_message {
	const char *id; /* never NULL */
	const char *user;
	const char *sender; /* "" for the null reverse-path */
	const char *campaign;
	const char *const *tags;
	size_t ntags;
	int64_t received_ms;
	uint64_t size; /* octets, signed */
	const struct stats_recipient *recipients;
	size_t nrecipients;
	const struct stats_event *events; /* the timeline, oldest first */
	size_t nevents;
};

/* Newest first. */
struct stats_event_page {
	const struct stats_event *events;
	size_t nevents;
	const char *next_cursor; /* NULL on the last page */
};

/* Recipients counted per bucket by what happened to them in it. */
struct stats_counts {
	uint64_t received; /* accepted at submission */
	uint64_t delivered;
	uint64_t deferred; /* attempts deferred (a recipient may count several times) */
	uint64_t bounced_hard;
	uint64_t bounced_soft;
	uint64_t bounced_block;
	uint64_t complained;
	uint64_t suppressed;
	uint64_t expired;
};

struct stats_bucket {
	int64_t start_s; /* a multiple of the step */
	struct stats_counts counts;
};

struct stats_series {
	const char *key; /* the domain, campaign, user or site; NULL for by=NONE */
	const struct stats_bucket *buckets; /* oldest first; empty buckets may be left out */
	size_t nbuckets;
};

struct stats_series_set {
	const struct stats_series *series;
	size_t nseries;
};

/* One site of the delivery scheduler (queue.h). */
struct stats_site {
	const char *name; /* never NULL: its MX hosts joined by ',' */
	uint64_t ready;
	uint64_t leased;
	int64_t down_s;       /* seconds the site stays marked down, 0 when it is up */
	bool held;            /* held by the administrator */
	bool rate_limited;    /* the shared rate made the last lease wait */
	int64_t rate_wait_ms; /* that wait, 0 when not limited */
};

struct stats_queue {
	uint64_t scheduled; /* waiting for their next attempt */
	uint64_t ready;     /* due, in a site's ready queue */
	uint64_t leased;
	uint64_t held;
	uint64_t dead;
	uint64_t messages;
	uint64_t recipients;
	int64_t oldest_age_s; /* the oldest queued message's age, -1 when the queue is empty */
	const struct stats_site *sites;
	size_t nsites;
};

/* What an API key hash resolves to. */
struct stats_key_owner {
	const char *user; /* never NULL; at most STATS_USER_MAX octets */
	bool admin;
};

/* ---- callbacks: st is STATS_OK with a result, or an error with a NULL result ---- */

typedef void stats_key_fn(enum stats_status st, const struct stats_key_owner *owner, uint64_t ref,
                          void *cb_arg);
typedef void stats_message_fn(enum stats_status st, const struct stats_message *m, uint64_t ref,
                              void *cb_arg);
typedef void stats_events_fn(enum stats_status st, const struct stats_event_page *page,
                             uint64_t ref, void *cb_arg);
typedef void stats_series_fn(enum stats_status st, const struct stats_series_set *set, uint64_t ref,
                             void *cb_arg);
typedef void stats_queue_fn(enum stats_status st, const struct stats_queue *q, uint64_t ref,
                            void *cb_arg);
/* Gauges for /metrics (queue depth...): n entries, see struct stats_gauge in metrics.h. */
typedef void stats_gauges_fn(enum stats_status st, const struct stats_gauge *g, size_t n,
                             uint64_t ref, void *cb_arg);

/*
 * The data source. arg is the provider_arg given to stats_http_new. A NULL function makes its
 * routes answer 503 (gauges: /metrics renders the process's own metrics only).
 */
struct stats_provider {
	/*
	 * Resolves an API key from its SHA-256 (64 lowercase hex digits, never the key itself):
	 * STATS_OK with its owner, or STATS_NOT_FOUND. The store is indexed by the hash, so no
	 * secret is compared; a provider that does compare stored secrets must use a
	 * constant-time comparison (CRYPTO_memcmp).
	 */
	int (*key_lookup)(void *arg, const char *key_sha256_hex, stats_key_fn *cb, uint64_t ref,
	                  void *cb_arg);
	int (*message)(void *arg, const struct stats_message_query *q,
	               const struct stats_principal *who, stats_message_fn *cb, uint64_t ref,
	               void *cb_arg);
	int (*events)(void *arg, const struct stats_event_query *q,
	              const struct stats_principal *who, stats_events_fn *cb, uint64_t ref,
	              void *cb_arg);
	int (*series)(void *arg, const struct stats_series_query *q,
	              const struct stats_principal *who, stats_series_fn *cb, uint64_t ref,
	              void *cb_arg);
	int (*queue)(void *arg, const struct stats_principal *who, stats_queue_fn *cb, uint64_t ref,
	             void *cb_arg);
	int (*gauges)(void *arg, stats_gauges_fn *cb, uint64_t ref, void *cb_arg);
};

#endif
