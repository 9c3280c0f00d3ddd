/*
 * smtpd.c: the SMTP submission session, one explicit state machine per connection.
 *
 * RFC 5321 (SMTP), 3207 (STARTTLS), 4954 (AUTH), 4616 (PLAIN), 1870 (SIZE), 2920 (PIPELINING),
 * 6152 (8BITMIME), 2034 + 3463 (enhanced status codes), 6531 (SMTPUTF8), 3848 (Received
 * "with" keywords).
 *
 * What it owns: reading commands and DATA from a bufferevent (plain or OpenSSL), replies,
 * the transaction (MAIL, RCPTs, message bytes), AUTH, and handing a finished message to the
 * prepare/sign job (workpool) and then to the durable commit (queue/). Every state change goes
 * through session_set_state(), which logs "old -> new" at debug level.
 *
 * Async results (Redis replies, pool jobs, timers) carry the session's handle (slot and
 * generation in the registry), never a pointer: a session closed meanwhile is simply not found.
 * A session is never freed inside one of its own bufferevent callbacks: closing marks it, and
 * the free happens from the session's own "kick" event.
 *
 * Limits on every peer-controlled quantity: command line length (SMTPD_LINE_MAX), DATA line
 * length and size (data_reader), recipients, errors per session, idle/data/handshake timers,
 * commands handled per read event (SMTPD_BUDGET), reply bytes queued before reading pauses
 * (SMTPD_OUTPUT_MAX), connections in total and per IP (connlimit), AUTH failures per IP and
 * user (Redis counters, growing delays, then 421).
 */
#include "relay/smtpd.h"
#include "relay/deliver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "dkim/dksign.h"
#include "queue/queue.h"
#include "relay/auth.h"
#include "relay/buf.h"
#include "relay/connlimit.h"
#include "relay/data_reader.h"
#include "relay/header.h"
#include "relay/log.h"
#include "relay/message.h"
#include "relay/server.h"
#include "relay/smtp_parse.h"
#include "relay/tls.h"
#include "relay/workpool.h"

#define SMTPD_LINE_MAX                                                                             \
	4096                       /* command lines incl. AUTH responses (RFC 4954: 12288 for      \
	                               the whole exchange; PLAIN of 255-octet fields fits) */
#define SMTPD_BUDGET            64 /* commands handled per read event */
#define SMTPD_OUTPUT_MAX        (256 * 1024) /* replies queued before we stop reading */
#define SMTPD_AUTH_DELAY_MAX_MS 5000

enum smtpd_state {
	SMTPD_STATE_HANDSHAKE,       /* TLS handshake (implicit TLS, or after STARTTLS) */
	SMTPD_STATE_GREETED,         /* waiting for EHLO/HELO */
	SMTPD_STATE_READY,           /* after EHLO: AUTH, STARTTLS, MAIL */
	SMTPD_STATE_AUTH_PLAIN,      /* waiting for the PLAIN response line */
	SMTPD_STATE_AUTH_LOGIN_USER, /* waiting for the LOGIN user name line */
	SMTPD_STATE_AUTH_LOGIN_PASS, /* waiting for the LOGIN password line */
	SMTPD_STATE_AUTH_CHECK,      /* user lookup, hash check or failure delay under way */
	SMTPD_STATE_MAIL,            /* after MAIL */
	SMTPD_STATE_RCPT,            /* after at least one accepted RCPT */
	SMTPD_STATE_DATA,            /* reading the message */
	SMTPD_STATE_COMMIT,          /* prepare/sign job, then the Redis commit, under way */
	SMTPD_STATE_STARTTLS,        /* 220 queued; waiting for it to flush before the handshake */
	SMTPD_STATE_CLOSING,         /* last reply queued; freed when it is flushed */
};

static const char *const state_names[] = {
    "handshake",       "greeted",    "ready",   "auth_plain", "auth_login_user",
    "auth_login_pass", "auth_check", "mail",    "rcpt",       "data",
    "commit",          "starttls",   "closing",
};

#define S(x) (1u << SMTPD_STATE_##x)

struct smtpd_session {
	uint64_t id;     /* random, first field of every log line */
	uint64_t handle; /* registry slot and generation, for async replies */
	struct server *srv;
	struct bufferevent *bev;
	int fd;
	struct event *kick;  /* resumes input processing, performs STARTTLS and frees */
	struct event *timer; /* AUTH failure delay */
	struct sockaddr_storage peer;
	int peerlen;
	char peer_ip[INET6_ADDRSTRLEN];
	bool loopback;
	bool tls;
	bool after_starttls; /* the handshake under way follows STARTTLS: no new greeting */
	bool bev_closes_fd;  /* TLS bufferevents own fd; the cleartext one does not */
	char tls_desc[96];
	enum smtpd_state state;
	bool esmtp;
	bool admitted; /* counted in connlimit */
	char helo[SMTP_DOMAIN_MAX + 1];
	int errors;
	/* AUTH */
	bool authenticated;
	char user[AUTH_NAME_MAX + 1];
	char *domains; /* owned; space-separated, lowercased; NULL when not authenticated */
	char auth_user[AUTH_NAME_MAX + 1];
	char auth_delay_reply[96];
	bool auth_delay_close;
	/* transaction */
	char qid[17];
	struct smtp_mail_args mail;
	char from_domain[SMTP_DOMAIN_MAX + 1]; /* of the From: header, set by message_check */
	struct buf rcpts;                      /* "address\0domain\0" per recipient */
	size_t nrcpts;
	struct data_reader reader;
	struct buf message;
	/* a pool job (message or password check) waiting for room in the pool; owned while
	 * waiting, freed with wait_free if the session ends first */
	TAILQ_ENTRY(smtpd_session) wait_entry;
	struct pool_line *wait_line;
	void *wait_job;
	workpool_fn *wait_run;
	workpool_fn *wait_done;
	workpool_fn *wait_free;
	/* the AUTH job whose Redis lookup is under way (owned until the lookup answers) */
	struct smtpd_auth_job *auth_lookup;
};

TAILQ_HEAD(session_list, smtpd_session);

/* Sessions whose job a pool refused (backlog full), oldest first. */
struct pool_line {
	struct workpool *pool;
	struct session_list sessions;
};

/* Sessions by slot; a handle is (generation << 32 | slot). */
struct smtpd_registry {
	struct smtpd_session **slots;
	uint32_t *generation;
	uint32_t *free_slots;
	size_t nfree;
	size_t capacity;
	size_t count;
	struct pool_line sign_line; /* waiting for the signing pool */
	struct pool_line auth_line; /* waiting for the password pool */
};

/* A finished message on its way through prepare/sign (pool thread) to the commit. */
struct smtpd_job {
	uint64_t handle;
	struct server *srv;
	struct buf in;                         /* message as received, moved from the session */
	struct message_trace trace;            /* what the Received header says */
	struct message_meta meta;              /* X-Campaign-ID, taken out of the message */
	char from_domain[SMTP_DOMAIN_MAX + 1]; /* of the (first) From: address */
	struct buf prepared;                   /* Received: etc. + the message */
	struct buf out;                        /* DKIM-Signature fields + prepared */
	const char *refuse;                    /* NULL, or the whole reply refusing it */
	char why[256];                         /* for the log when refused */
};

/* A password check on a pool thread. */
struct smtpd_auth_job {
	uint64_t handle;
	struct server *srv;
	char user[AUTH_NAME_MAX + 1];
	char password[AUTH_PASSWORD_MAX + 1];
	char stored[AUTH_HASH_MAX + 1];
	char *domains;
	char *only_nets;
	unsigned failures; /* max of the IP's and user's failure counts so far */
	bool found;
	bool ok;
};

/* A valid scrypt hash of a random password: users that do not exist are checked against it,
 * so a missing user costs the same time as a wrong password. */
static const char dummy_hash[] = "$scrypt$ln=14,r=8,p=1$c29tZSBzYWx0IGJ5dGVz$"
                                 "hTDCuyWZT2kY2aWtMHv3yXqV1v11M0sPHqEkgiT3dT0=";

static void session_process(struct smtpd_session *s);
static void pool_submit(struct smtpd_session *s, struct pool_line *line, workpool_fn *run,
                        workpool_fn *done, workpool_fn *free_fn, void *job);
static void session_close(struct smtpd_session *s);
static void session_free(struct smtpd_session *s);
static void session_end(struct smtpd_session *s);
static void reply(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- registry ---- */

static int registry_add(struct smtpd_registry *r, struct smtpd_session *s)
{
	if (r->nfree == 0) {
		size_t cap = r->capacity ? r->capacity * 2 : 256;
		struct smtpd_session **slots = realloc(r->slots, cap * sizeof *slots);
		if (slots == NULL)
			return -1;
		r->slots = slots;
		uint32_t *gen = realloc(r->generation, cap * sizeof *gen);
		if (gen == NULL)
			return -1;
		r->generation = gen;
		uint32_t *fr = realloc(r->free_slots, cap * sizeof *fr);
		if (fr == NULL)
			return -1;
		r->free_slots = fr;
		for (size_t i = r->capacity; i < cap; i++) {
			r->slots[i] = NULL;
			r->generation[i] = 0;
			r->free_slots[r->nfree++] = (uint32_t)(cap - 1 - (i - r->capacity));
		}
		r->capacity = cap;
	}
	uint32_t slot = r->free_slots[--r->nfree];
	r->generation[slot]++;
	r->slots[slot] = s;
	s->handle = (uint64_t)r->generation[slot] << 32 | slot;
	r->count++;
	return 0;
}

static void registry_remove(struct smtpd_registry *r, struct smtpd_session *s)
{
	uint32_t slot = (uint32_t)s->handle;
	if (slot < r->capacity && r->slots[slot] == s) {
		r->slots[slot] = NULL;
		r->free_slots[r->nfree++] = slot;
		r->count--;
	}
}

static struct smtpd_session *registry_find(struct smtpd_registry *r, uint64_t handle)
{
	uint32_t slot = (uint32_t)handle;
	if (slot >= r->capacity || r->generation[slot] != (uint32_t)(handle >> 32))
		return NULL;
	return r->slots[slot];
}

/* ---- small helpers ---- */

static uint64_t now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void session_set_state(struct smtpd_session *s, enum smtpd_state next)
{
	if (s->state != next)
		log_debug(s->id, "event=state from=%s to=%s", state_names[s->state],
		          state_names[next]);
	s->state = next;
}

/* True when domain (lowercased) is one of the space-separated domains. */
static bool domain_owned(const char *domains, const char *domain)
{
	size_t dl = strlen(domain);
	const char *p = domains;
	while (p != NULL && *p != '\0') {
		while (*p == ' ')
			p++;
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == dl && l > 0 && strncasecmp(p, domain, l) == 0)
			return true;
		p = e;
	}
	return false;
}

static void reply(struct smtpd_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 3;
	/* permanent failures are the client's doing: they count towards max_errors */
	if (line[0] == '5')
		s->errors++;
	line[len++] = '\r';
	line[len++] = '\n';
	if (bufferevent_write(s->bev, line, len) == -1)
		log_warn(s->id, "event=reply call=bufferevent_write failed");
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char esc[256];
		log_debug(s->id, "event=reply text=\"%s\"",
		          log_escape(line, len - 2, esc, sizeof esc));
	}
}

static void transaction_reset(struct smtpd_session *s)
{
	memset(&s->mail, 0, sizeof s->mail);
	buf_free(&s->rcpts);
	s->nrcpts = 0;
	buf_free(&s->message);
	s->qid[0] = '\0';
}

static void auth_forget(struct smtpd_session *s)
{
	s->authenticated = false;
	s->user[0] = '\0';
	free(s->domains);
	s->domains = NULL;
}

/* Ends the session after the queued replies flush. */
static void session_close(struct smtpd_session *s)
{
	if (s->state == SMTPD_STATE_CLOSING)
		return;
	session_set_state(s, SMTPD_STATE_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		event_active(s->kick, EV_TIMEOUT, 0);
	/* else the write callback fires once the output is flushed */
}

static void too_many_errors_check(struct smtpd_session *s)
{
	if (s->errors >= s->srv->cfg->max_errors && s->state != SMTPD_STATE_CLOSING) {
		log_info(s->id, "event=too_many_errors errors=%d", s->errors);
		reply(s, "421 4.7.0 %s Too many errors, closing connection", s->srv->cfg->hostname);
		session_close(s);
	}
}

/* ---- reading lines ---- */

enum line_result { LINE_NONE, LINE_OK, LINE_TOO_LONG, LINE_BAD_ENDING };

/*
 * Takes one command line out of in into line (without its line end). Looks for LF only
 * within the first SMTPD_LINE_MAX + 1 octets. LINE_BAD_ENDING: the line ended with a bare
 * LF, or held a bare CR or a NUL (the line is consumed).
 */
static enum line_result read_line(struct evbuffer *in, char *line, size_t *len)
{
	size_t have = evbuffer_get_length(in);
	if (have == 0)
		return LINE_NONE;
	struct evbuffer_ptr end;
	size_t scan = have < SMTPD_LINE_MAX + 2 ? have : SMTPD_LINE_MAX + 2;
	if (evbuffer_ptr_set(in, &end, scan, EVBUFFER_PTR_SET) == -1)
		return LINE_TOO_LONG;
	struct evbuffer_ptr lf = evbuffer_search_range(in, "\n", 1, NULL, &end);
	if (lf.pos == -1)
		return have > SMTPD_LINE_MAX + 1 ? LINE_TOO_LONG : LINE_NONE;
	size_t total = (size_t)lf.pos + 1;
	if (total > SMTPD_LINE_MAX + 2)
		return LINE_TOO_LONG;
	char tmp[SMTPD_LINE_MAX + 2];
	evbuffer_remove(in, tmp, total);
	if (total < 2 || tmp[total - 2] != '\r')
		return LINE_BAD_ENDING;
	size_t l = total - 2;
	if (memchr(tmp, '\r', l) != NULL || memchr(tmp, '\0', l) != NULL)
		return LINE_BAD_ENDING;
	memcpy(line, tmp, l);
	line[l] = '\0';
	*len = l;
	return LINE_OK;
}

/* ---- EHLO / HELO ---- */

static bool auth_offered(const struct smtpd_session *s)
{
	return s->tls || (s->loopback && s->srv->cfg->auth_cleartext_loopback);
}

static void cmd_helo(struct smtpd_session *s, const struct smtp_command *c, bool esmtp)
{
	if (smtp_helo_check(c->arg, c->arg_len) != SMTP_PARSE_OK) {
		reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	memcpy(s->helo, c->arg, c->arg_len);
	s->helo[c->arg_len] = '\0';
	s->esmtp = esmtp;
	transaction_reset(s);
	session_set_state(s, SMTPD_STATE_READY);
	const struct config *cfg = s->srv->cfg;
	if (!esmtp) {
		reply(s, "250 %s", cfg->hostname);
		return;
	}
	reply(s, "250-%s Hello %s [%s]", cfg->hostname, s->helo, s->peer_ip);
	reply(s, "250-SIZE %llu", (unsigned long long)cfg->max_message_size);
	reply(s, "250-PIPELINING");
	reply(s, "250-8BITMIME");
	reply(s, "250-ENHANCEDSTATUSCODES");
	if (!s->tls)
		reply(s, "250-STARTTLS");
	if (auth_offered(s))
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 SMTPUTF8");
}

/* ---- STARTTLS ---- */

static void cmd_starttls(struct smtpd_session *s, const struct smtp_command *c)
{
	if (s->tls) {
		reply(s, "503 5.5.1 TLS already active");
		return;
	}
	if (c->arg_len != 0) {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	session_set_state(s, SMTPD_STATE_STARTTLS);
	/* Anything pipelined after STARTTLS was sent in cleartext: it must never be read as a
	 * command of the TLS session (RFC 3207 section 5, CVE-2011-0411). */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t junk = evbuffer_get_length(in);
	if (junk > 0) {
		log_warn(s->id, "event=starttls_injection discarded=%zu", junk);
		evbuffer_drain(in, junk);
	}
	bufferevent_disable(s->bev, EV_READ);
	/* the switch happens in on_write once "220" has left, then in on_kick */
}

static void session_callbacks_set(struct smtpd_session *s);

/* Replaces the cleartext bufferevent by an OpenSSL one on the same socket. */
static void starttls_switch(struct smtpd_session *s)
{
	SSL *ssl = SSL_new(s->srv->tls);
	if (ssl == NULL) {
		log_error(s->id, "event=starttls call=SSL_new error=%lu", ERR_get_error());
		session_free(s);
		return;
	}
	/* the cleartext bufferevent was made without BEV_OPT_CLOSE_ON_FREE: fd stays open */
	bufferevent_free(s->bev);
	s->bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		log_error(s->id, "event=starttls call=bufferevent_openssl_socket_new failed");
		SSL_free(ssl);
		session_free(s); /* closes fd: bev is NULL and bev_closes_fd still false */
		return;
	}
	s->bev_closes_fd = true;
	s->after_starttls = true;
	s->helo[0] = '\0';
	s->esmtp = false;
	auth_forget(s);
	transaction_reset(s);
	session_set_state(s, SMTPD_STATE_HANDSHAKE);
	session_callbacks_set(s);
}

/* ---- AUTH ---- */

static void auth_job_free(struct smtpd_auth_job *j)
{
	free(j->domains);
	free(j->only_nets);
	OPENSSL_cleanse(j->password, sizeof j->password);
	free(j);
}

static void auth_job_free_cb(void *arg)
{
	auth_job_free(arg);
}

static void auth_job_run(void *arg)
{
	struct smtpd_auth_job *j = arg;
	j->ok = auth_password_verify(j->password, j->found ? j->stored : dummy_hash) && j->found;
}

static void auth_success(struct smtpd_session *s, struct smtpd_auth_job *j)
{
	s->authenticated = true;
	snprintf(s->user, sizeof s->user, "%s", j->user);
	free(s->domains);
	s->domains = j->domains;
	j->domains = NULL;
	log_info(s->id, "event=auth result=ok user=%s", s->user);
	queue_auth_record(s->srv->queue, j->user, s->peer_ip, true,
	                  (unsigned)s->srv->cfg->auth_failure_window, NULL, 0, NULL);
	reply(s, "235 2.7.0 Authentication successful");
	session_set_state(s, SMTPD_STATE_READY);
}

static void auth_delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_session *s = arg; /* the timer belongs to the session and dies with it */
	reply(s, "%s", s->auth_delay_reply);
	if (s->auth_delay_close) {
		session_close(s);
		return;
	}
	session_set_state(s, SMTPD_STATE_READY);
	too_many_errors_check(s);
	if (s->state != SMTPD_STATE_CLOSING) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

/* Answers a failed AUTH after a delay that doubles with each failure: 250 ms, 500 ms, ... */
static void auth_failure(struct smtpd_session *s, const char *why, unsigned failures)
{
	const struct config *cfg = s->srv->cfg;
	log_info(s->id, "event=auth result=fail user=%s reason=%s failures=%u", s->auth_user, why,
	         failures);
	queue_auth_record(s->srv->queue, s->auth_user, s->peer_ip, false,
	                  (unsigned)cfg->auth_failure_window, NULL, 0, NULL);
	unsigned shift = failures < 5 ? failures : 5;
	long ms = 250L << shift;
	if (ms > SMTPD_AUTH_DELAY_MAX_MS)
		ms = SMTPD_AUTH_DELAY_MAX_MS;
	snprintf(s->auth_delay_reply, sizeof s->auth_delay_reply,
	         "535 5.7.8 Authentication credentials invalid");
	s->auth_delay_close = false;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(s->timer, &tv);
}

static void auth_job_done(void *arg)
{
	struct smtpd_auth_job *j = arg;
	struct smtpd_session *s = registry_find(j->srv->sessions, j->handle);
	if (s == NULL || s->state != SMTPD_STATE_AUTH_CHECK) {
		auth_job_free(j);
		return;
	}
	if (!j->found) {
		auth_failure(s, "no_such_user", j->failures);
	} else if (!j->ok) {
		auth_failure(s, "bad_password", j->failures);
	} else if (j->only_nets[0] != '\0' &&
	           !auth_net_contains(j->only_nets, (struct sockaddr *)&s->peer)) {
		auth_failure(s, "network_not_allowed", j->failures);
	} else {
		auth_cache_put(s->srv->auth_cache, j->user, j->password, j->stored, now_seconds());
		auth_success(s, j);
	}
	auth_job_free(j);
}

static void auth_temp_failure(struct smtpd_session *s, const char *why)
{
	log_warn(s->id, "event=auth result=tempfail user=%s reason=%s", s->auth_user, why);
	reply(s, "454 4.7.0 Temporary authentication failure, try again later");
	session_set_state(s, SMTPD_STATE_READY);
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static void auth_lookup_done(enum queue_result res, const struct queue_user_record *rec,
                             uint64_t ref, void *arg)
{
	struct server *srv = arg;
	struct smtpd_session *s = registry_find(srv->sessions, ref);
	if (s == NULL)
		return; /* the session freed its auth job when it closed */
	struct smtpd_auth_job *j = s->auth_lookup;
	s->auth_lookup = NULL;
	if (j == NULL)
		return;
	if (s->state != SMTPD_STATE_AUTH_CHECK) {
		auth_job_free(j);
		return;
	}
	if (res != QUEUE_OK) {
		auth_job_free(j);
		auth_temp_failure(s, "redis");
		return;
	}
	const struct config *cfg = srv->cfg;
	if (rec->ip_failures >= (unsigned)cfg->auth_max_failures_ip ||
	    rec->user_failures >= (unsigned)cfg->auth_max_failures_user) {
		log_warn(s->id, "event=auth result=locked user=%s ip_failures=%u user_failures=%u",
		         s->auth_user, rec->ip_failures, rec->user_failures);
		auth_job_free(j);
		reply(s, "421 4.7.0 Too many authentication failures, try again later");
		session_close(s);
		return;
	}
	j->found = rec->found;
	j->failures = rec->ip_failures > rec->user_failures ? rec->ip_failures : rec->user_failures;
	snprintf(j->stored, sizeof j->stored, "%s", rec->found ? rec->pwhash : "");
	j->domains = strdup(rec->found ? rec->domains : "");
	j->only_nets = strdup(rec->found ? rec->only_nets : "");
	if (j->domains == NULL || j->only_nets == NULL) {
		auth_job_free(j);
		auth_temp_failure(s, "memory");
		return;
	}
	if (j->found &&
	    (j->only_nets[0] == '\0' ||
	     auth_net_contains(j->only_nets, (struct sockaddr *)&s->peer)) &&
	    auth_cache_hit(srv->auth_cache, j->user, j->password, j->stored, now_seconds())) {
		auth_success(s, j);
		auth_job_free(j);
		return;
	}
	pool_submit(s, &srv->sessions->auth_line, auth_job_run, auth_job_done, auth_job_free_cb, j);
}

/* Starts checking user/password: Redis lookup first, then the hash on a pool thread. */
static void auth_check(struct smtpd_session *s, const char *user, const char *password)
{
	snprintf(s->auth_user, sizeof s->auth_user, "%s", user);
	struct smtpd_auth_job *j = calloc(1, sizeof *j);
	if (j == NULL) {
		auth_temp_failure(s, "memory");
		return;
	}
	j->handle = s->handle;
	j->srv = s->srv;
	snprintf(j->user, sizeof j->user, "%s", user);
	snprintf(j->password, sizeof j->password, "%s", password);
	session_set_state(s, SMTPD_STATE_AUTH_CHECK);
	bufferevent_disable(s->bev, EV_READ);
	if (queue_user_lookup(s->srv->queue, user, s->peer_ip, auth_lookup_done, s->handle,
	                      s->srv) == -1) {
		auth_job_free(j);
		auth_temp_failure(s, "redis_down");
		return;
	}
	s->auth_lookup = j;
}

static bool auth_name_ok(const char *u, size_t len)
{
	if (len == 0 || len > AUTH_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)u[i] < 0x21 || u[i] == 0x7f)
			return false;
	return true;
}

static void auth_plain_response(struct smtpd_session *s, const char *b64, size_t len)
{
	char user[AUTH_NAME_MAX + 1], pass[AUTH_PASSWORD_MAX + 1];
	if (auth_plain_decode(b64, len, user, sizeof user, pass, sizeof pass) == -1 ||
	    !auth_name_ok(user, strlen(user))) {
		reply(s, "501 5.5.2 Invalid PLAIN response");
		session_set_state(s, SMTPD_STATE_READY);
		return;
	}
	auth_check(s, user, pass);
	OPENSSL_cleanse(pass, sizeof pass);
}

static void cmd_auth(struct smtpd_session *s, const struct smtp_command *c)
{
	if (s->authenticated) {
		reply(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (!auth_offered(s)) {
		reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	const char *sp = memchr(c->arg, ' ', c->arg_len);
	size_t mlen = sp ? (size_t)(sp - c->arg) : c->arg_len;
	const char *initial = sp ? sp + 1 : NULL;
	size_t ilen = sp ? c->arg_len - mlen - 1 : 0;
	if (mlen == 5 && strncasecmp(c->arg, "PLAIN", 5) == 0) {
		if (initial == NULL) {
			session_set_state(s, SMTPD_STATE_AUTH_PLAIN);
			reply(s, "334 ");
		} else {
			auth_plain_response(s, initial, ilen);
		}
	} else if (mlen == 5 && strncasecmp(c->arg, "LOGIN", 5) == 0) {
		if (initial == NULL) {
			session_set_state(s, SMTPD_STATE_AUTH_LOGIN_USER);
			reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
		} else {
			unsigned char u[AUTH_NAME_MAX + 1];
			long n = auth_base64_decode(initial, ilen, u, sizeof u - 1);
			if (n <= 0 || !auth_name_ok((const char *)u, (size_t)n)) {
				reply(s, "501 5.5.2 Invalid LOGIN user name");
				return;
			}
			memcpy(s->auth_user, u, (size_t)n);
			s->auth_user[n] = '\0';
			session_set_state(s, SMTPD_STATE_AUTH_LOGIN_PASS);
			reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
		}
	} else {
		reply(s, "504 5.5.4 Unrecognized authentication mechanism");
	}
}

/* A line in one of the AUTH continuation states. */
static void auth_continue(struct smtpd_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		reply(s, "501 5.0.0 Authentication cancelled");
		session_set_state(s, SMTPD_STATE_READY);
		return;
	}
	if (s->state == SMTPD_STATE_AUTH_PLAIN) {
		auth_plain_response(s, line, len);
	} else if (s->state == SMTPD_STATE_AUTH_LOGIN_USER) {
		unsigned char u[AUTH_NAME_MAX + 1];
		long n = auth_base64_decode(line, len, u, sizeof u - 1);
		if (n <= 0 || !auth_name_ok((const char *)u, (size_t)n)) {
			reply(s, "501 5.5.2 Invalid LOGIN user name");
			session_set_state(s, SMTPD_STATE_READY);
			return;
		}
		memcpy(s->auth_user, u, (size_t)n);
		s->auth_user[n] = '\0';
		session_set_state(s, SMTPD_STATE_AUTH_LOGIN_PASS);
		reply(s, "334 UGFzc3dvcmQ6");
	} else {
		unsigned char p[AUTH_PASSWORD_MAX + 1];
		long n = auth_base64_decode(line, len, p, sizeof p - 1);
		if (n <= 0 || memchr(p, '\0', (size_t)n) != NULL) {
			OPENSSL_cleanse(p, sizeof p);
			reply(s, "501 5.5.2 Invalid LOGIN password");
			session_set_state(s, SMTPD_STATE_READY);
			return;
		}
		p[n] = '\0';
		char user[AUTH_NAME_MAX + 1];
		snprintf(user, sizeof user, "%s", s->auth_user);
		auth_check(s, user, (const char *)p);
		OPENSSL_cleanse(p, sizeof p);
	}
}

/* ---- MAIL / RCPT ---- */

static void parse_error_reply(struct smtpd_session *s, enum smtp_parse_status st, bool mail)
{
	switch (st) {
	case SMTP_PARSE_BAD_PATH:
		reply(s, "501 %s Bad %s address syntax", mail ? "5.1.7" : "5.1.3",
		      mail ? "sender" : "recipient");
		break;
	case SMTP_PARSE_TOO_LONG:
		reply(s, "501 5.5.4 Address too long");
		break;
	case SMTP_PARSE_NEED_UTF8:
		reply(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		break;
	case SMTP_PARSE_UNKNOWN_PARAM:
		reply(s, "555 5.5.4 Unsupported %s parameter", mail ? "MAIL" : "RCPT");
		break;
	case SMTP_PARSE_BAD_PARAM:
		reply(s, "501 5.5.4 Bad %s parameter value", mail ? "MAIL" : "RCPT");
		break;
	case SMTP_PARSE_SYNTAX:
	case SMTP_PARSE_OK:
		reply(s, "501 5.5.2 Syntax: %s",
		      mail ? "MAIL FROM:<address>" : "RCPT TO:<address>");
		break;
	}
}

/* Makes the session act for its allowed network's user, when it has one and no AUTH. */
static void allownet_apply(struct smtpd_session *s)
{
	if (s->authenticated)
		return;
	const struct server_allownet *n =
	    server_allownet_find(s->srv, (const struct sockaddr *)&s->peer);
	if (n == NULL)
		return;
	char *d = strdup(n->domains);
	if (d == NULL)
		return;
	s->authenticated = true;
	snprintf(s->user, sizeof s->user, "%s", n->user);
	free(s->domains);
	s->domains = d;
	log_info(s->id, "event=auth result=ok user=%s method=network cidr=%s", s->user, n->cidr);
}

static void cmd_mail(struct smtpd_session *s, const struct smtp_command *c)
{
	allownet_apply(s);
	if (!s->authenticated) {
		reply(s, "530 5.7.0 Authentication required");
		return;
	}
	struct smtp_mail_args m;
	enum smtp_parse_status st = smtp_mail_parse(c->arg, c->arg_len, &m);
	if (st != SMTP_PARSE_OK) {
		parse_error_reply(s, st, true);
		return;
	}
	const struct config *cfg = s->srv->cfg;
	if (m.has_size && m.size > cfg->max_message_size) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	if (m.path.is_null) {
		reply(s, "553 5.7.1 Null sender not accepted for submission");
		return;
	}
	if (!domain_owned(s->domains, m.path.domain_lower)) {
		char esc[300];
		log_info(
		    s->id, "event=mail result=refused user=%s from=\"%s\" reason=domain_not_owned",
		    s->user, log_escape(m.path.mailbox, strlen(m.path.mailbox), esc, sizeof esc));
		reply(s, "553 5.7.1 Sender address domain not owned by user %s", s->user);
		return;
	}
	if (s->srv->queue_full) { /* back-pressure: refuse before the client sends the data */
		log_warn(s->id, "event=mail result=tempfail user=%s reason=queue_full", s->user);
		reply(s, "452 4.3.1 Insufficient system storage, try again later");
		return;
	}
	s->mail = m;
	uint64_t q = log_id_new();
	snprintf(s->qid, sizeof s->qid, "%016llx", (unsigned long long)q);
	session_set_state(s, SMTPD_STATE_MAIL);
	reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct smtpd_session *s, const struct smtp_command *c)
{
	struct smtp_rcpt_args r;
	enum smtp_parse_status st = smtp_rcpt_parse(c->arg, c->arg_len, s->mail.smtputf8, &r);
	if (st != SMTP_PARSE_OK) {
		parse_error_reply(s, st, false);
		return;
	}
	if (r.path.domain_lower[0] == '\0') {
		reply(s, "550 5.1.1 Recipient needs a domain");
		return;
	}
	if (s->nrcpts >= (size_t)s->srv->cfg->max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (buf_append(&s->rcpts, r.path.mailbox, strlen(r.path.mailbox) + 1) == -1 ||
	    buf_append(&s->rcpts, r.path.domain_lower, strlen(r.path.domain_lower) + 1) == -1) {
		reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	s->nrcpts++;
	session_set_state(s, SMTPD_STATE_RCPT);
	reply(s, "250 2.1.5 Ok");
}

static void cmd_data(struct smtpd_session *s, const struct smtp_command *c)
{
	if (c->arg_len != 0) {
		reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	data_reader_init(&s->reader, (size_t)s->srv->cfg->max_message_size);
	buf_reset(&s->message);
	session_set_state(s, SMTPD_STATE_DATA);
	struct timeval tv = {s->srv->cfg->data_timeout, 0};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* ---- end of DATA: checks, prepare/sign job, commit ---- */

static void commit_done(enum queue_result res, uint64_t ref, void *arg);

static void job_free(struct smtpd_job *j)
{
	if (j == NULL)
		return;
	buf_free(&j->in);
	buf_free(&j->prepared);
	buf_free(&j->out);
	free(j);
}

/* Runs on a pool thread, never on the loop: prepare the stored form, sign it, and put the
 * signatures in front. */
static void job_run(void *arg)
{
	struct smtpd_job *j = arg;
	const struct config *cfg = j->srv->cfg;
	const char *e = message_prepare(&j->trace, j->in.data, j->in.len, &j->prepared, &j->meta);
	if (e != NULL) {
		snprintf(j->why, sizeof j->why, "%s", e);
		j->refuse = "452 4.3.1 Insufficient system resources";
		return;
	}
	if (j->meta.campaign_bad) {
		snprintf(j->why, sizeof j->why, "bad X-Campaign-ID");
		j->refuse =
		    "550 5.6.0 X-Campaign-ID must appear once, with 1 to 128 printable ASCII "
		    "characters and no spaces";
		return;
	}
	buf_free(&j->in); /* no longer needed: keep one copy of the message at a time */
	struct dksign_options opt = {
	    .algorithms = (unsigned)cfg->dkim_algorithms,
	    .now = (int64_t)time(NULL),
	    .lifetime = cfg->dkim_lifetime,
	    .fallback_domain = cfg->dkim_domain,
	    .refuse_unknown = cfg->dkim_unknown_domain == CONFIG_DKIM_UNKNOWN_REFUSE,
	};
	if (buf_reserve(&j->out, j->prepared.len + 2048) == -1) {
		snprintf(j->why, sizeof j->why, "out of memory");
		j->refuse = "452 4.3.1 Insufficient system resources";
		return;
	}
	enum dksign_result r = dksign_message(j->srv->dkim, &opt, j->from_domain, j->prepared.data,
	                                      j->prepared.len, &j->out, j->why, sizeof j->why);
	switch (r) {
	case DKSIGN_OK:
		if (buf_append(&j->out, j->prepared.data, j->prepared.len) == -1) {
			snprintf(j->why, sizeof j->why, "out of memory");
			j->refuse = "452 4.3.1 Insufficient system resources";
		}
		break;
	case DKSIGN_NO_KEY:
		j->refuse =
		    opt.refuse_unknown
		        ? "550 5.7.1 No DKIM key for the From: domain; this relay signs only "
		          "domains it has keys for"
		        : "451 4.3.0 Signing key unavailable, try again later";
		break;
	case DKSIGN_MALFORMED:
		j->refuse = "550 5.6.0 Malformed message header section";
		break;
	case DKSIGN_ERROR:
		j->refuse = "451 4.3.0 Signing failed, try again later";
		break;
	}
	buf_free(&j->prepared);
}

static void finish_transaction(struct smtpd_session *s)
{
	transaction_reset(s);
	if (s->srv->stopping) {
		reply(s, "421 4.3.2 %s Service shutting down, try again later",
		      s->srv->cfg->hostname);
		session_close(s);
		return;
	}
	session_set_state(s, SMTPD_STATE_READY);
	struct timeval tv = {s->srv->cfg->idle_timeout, 0};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	too_many_errors_check(s);
	if (s->state != SMTPD_STATE_CLOSING) {
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void job_done(void *arg)
{
	struct smtpd_job *j = arg;
	struct smtpd_session *s = registry_find(j->srv->sessions, j->handle);
	if (s == NULL || s->state != SMTPD_STATE_COMMIT) {
		job_free(j);
		return;
	}
	if (j->refuse != NULL) {
		char esc[300];
		log_warn(s->id, "event=message result=refused qid=%s reason=\"%s\" reply=\"%.3s\"",
		         s->qid, log_escape(j->why, strlen(j->why), esc, sizeof esc), j->refuse);
		reply(s, "%s", j->refuse);
		job_free(j);
		finish_transaction(s);
		return;
	}
	struct queue_recipient *rc = calloc(s->nrcpts, sizeof *rc);
	if (rc == NULL) {
		reply(s, "452 4.3.1 Insufficient system resources");
		job_free(j);
		finish_transaction(s);
		return;
	}
	const char *p = s->rcpts.data;
	for (size_t i = 0; i < s->nrcpts; i++) {
		rc[i].address = p;
		p += strlen(p) + 1;
		rc[i].domain = p;
		p += strlen(p) + 1;
	}
	struct queue_message m = {
	    .id = s->qid,
	    .sender = s->mail.path.mailbox,
	    .user = s->user,
	    .client_ip = s->peer_ip,
	    .helo = s->helo,
	    .received_ms = now_ms(),
	    .body = j->out.data,
	    .body_len = j->out.len,
	    .rcpts = rc,
	    .nrcpts = s->nrcpts,
	    .smtputf8 = s->mail.smtputf8,
	    .body_8bit = s->mail.body == SMTP_BODY_8BITMIME,
	    .campaign = j->meta.campaign,
	};
	int rcode = queue_commit(s->srv->queue, &m, commit_done, s->handle, s->srv);
	free(rc);
	job_free(j); /* queue_commit copied everything it needs */
	if (rcode == -1) {
		log_warn(s->id, "event=commit result=tempfail qid=%s reason=redis_down", s->qid);
		reply(s, "451 4.3.0 Queue unavailable, try again later");
		finish_transaction(s);
	}
}

static void commit_done(enum queue_result res, uint64_t ref, void *arg)
{
	struct server *srv = arg;
	struct smtpd_session *s = registry_find(srv->sessions, ref);
	if (s == NULL || s->state != SMTPD_STATE_COMMIT)
		return; /* the client left: it never saw 250, the message may still be queued */
	switch (res) {
	case QUEUE_OK:
		log_info(s->id, "event=queued qid=%s user=%s rcpts=%zu size=%zu", s->qid, s->user,
		         s->nrcpts, s->reader.size);
		reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
		deliver_kick(srv->deliver);
		break;
	case QUEUE_FULL:
		log_warn(s->id, "event=commit result=tempfail qid=%s reason=redis_full", s->qid);
		reply(s, "452 4.3.1 Insufficient system storage, try again later");
		break;
	case QUEUE_CONFLICT:
	case QUEUE_UNAVAILABLE:
		log_warn(s->id, "event=commit result=tempfail qid=%s reason=%s", s->qid,
		         res == QUEUE_CONFLICT ? "id_conflict" : "redis_unavailable");
		reply(s, "451 4.3.0 Queue unavailable, try again later");
		break;
	}
	finish_transaction(s);
}

/* Hands a job to line's pool, or, when that pool is saturated, parks it on the session, which
 * waits in line (reading nothing) until pool_space() submits it. */
static void pool_submit(struct smtpd_session *s, struct pool_line *line, workpool_fn *run,
                        workpool_fn *done, workpool_fn *free_fn, void *job)
{
	if (workpool_submit(line->pool, run, done, job) == 0)
		return;
	s->wait_line = line;
	s->wait_job = job;
	s->wait_run = run;
	s->wait_done = done;
	s->wait_free = free_fn;
	TAILQ_INSERT_TAIL(&line->sessions, s, wait_entry);
}

static void pool_space(void *arg)
{
	struct pool_line *line = arg;
	struct smtpd_session *s;
	while ((s = TAILQ_FIRST(&line->sessions)) != NULL) {
		if (workpool_submit(line->pool, s->wait_run, s->wait_done, s->wait_job) == -1)
			break;
		TAILQ_REMOVE(&line->sessions, s, wait_entry);
		s->wait_job = NULL;
	}
}

static void job_free_cb(void *arg)
{
	job_free(arg);
}

/* Checks the header section: From (one field; several mailboxes need a Sender), owned
 * domains, Received count. Returns NULL or the whole reply to send. */
static const char *message_check(struct smtpd_session *s)
{
	const struct config *cfg = s->srv->cfg;
	if (s->reader.received_count > (unsigned)cfg->max_received_headers)
		return "554 5.4.6 Too many Received headers: mail loop";
	struct header_iter it;
	struct header_field f;
	header_iter_init(&it, s->message.data ? s->message.data : "", s->message.len);
	struct header_address from[8];
	size_t nfrom = 0, nfields_from = 0, nsender = 0;
	enum header_status hs;
	while ((hs = header_next(&it, &f)) == HEADER_FIELD) {
		struct header_address a[8];
		size_t n = 0;
		bool is_from = header_name_is(&f, "From"), is_sender = header_name_is(&f, "Sender");
		if (!is_from && !is_sender)
			continue;
		if (header_addresses_parse(f.value, f.value_len, a, 8, &n) != HEADER_ADDR_OK ||
		    n == 0)
			return is_from ? "550 5.6.0 Malformed From: header"
			               : "550 5.6.0 Malformed Sender: header";
		if (is_sender) {
			if (++nsender > 1 || n != 1)
				return "550 5.6.0 Sender: must hold exactly one address";
			if (!domain_owned(s->domains, a[0].domain_lower))
				return "550 5.7.1 Sender: header domain not owned by user";
			continue;
		}
		if (++nfields_from > 1)
			return "550 5.6.0 More than one From: header";
		memcpy(from, a, n * sizeof a[0]);
		snprintf(s->from_domain, sizeof s->from_domain, "%s", a[0].domain_lower);
		nfrom = n;
	}
	if (hs == HEADER_MALFORMED)
		return "550 5.6.0 Malformed header section";
	if (nfields_from == 0)
		return "550 5.6.0 Message has no From: header";
	if (nfrom > 1 && nsender == 0)
		return "550 5.6.0 From: with several addresses needs a Sender: header";
	for (size_t i = 0; i < nfrom; i++)
		if (!domain_owned(s->domains, from[i].domain_lower))
			return "550 5.7.1 From: header domain not owned by user";
	return NULL;
}

static void data_finished(struct smtpd_session *s)
{
	const char *refuse = NULL;
	switch (s->reader.error) {
	case DATA_ERROR_NONE:
		break;
	case DATA_ERROR_BARE_CR:
	case DATA_ERROR_BARE_LF:
		refuse = "550 5.6.0 Message refused: bare CR or LF in data (only CRLF line ends)";
		break;
	case DATA_ERROR_NUL:
		refuse = "550 5.6.0 Message refused: NUL octet in data";
		break;
	case DATA_ERROR_LINE_TOO_LONG:
		refuse = "550 5.6.0 Message refused: line longer than 998 octets";
		break;
	case DATA_ERROR_TOO_BIG:
		refuse = "552 5.3.4 Message size exceeds fixed maximum message size";
		break;
	case DATA_ERROR_NO_MEMORY:
		refuse = "452 4.3.1 Insufficient system resources";
		break;
	}
	if (refuse == NULL)
		refuse = message_check(s);
	if (refuse != NULL) {
		log_info(s->id, "event=message result=refused qid=%s reason=%s size=%zu", s->qid,
		         s->reader.error != DATA_ERROR_NONE ? data_error_name(s->reader.error)
		                                            : "headers",
		         s->reader.size);
		reply(s, "%s", refuse);
		finish_transaction(s);
		return;
	}
	struct smtpd_job *j = calloc(1, sizeof *j);
	if (j == NULL) {
		reply(s, "452 4.3.1 Insufficient system resources");
		finish_transaction(s);
		return;
	}
	j->handle = s->handle;
	j->srv = s->srv;
	j->in = s->message; /* moved: the session no longer owns these bytes */
	s->message = (struct buf)BUF_INIT;
	struct message_trace *t = &j->trace;
	snprintf(t->qid, sizeof t->qid, "%s", s->qid);
	snprintf(t->helo, sizeof t->helo, "%s", s->helo);
	snprintf(t->client_ip, sizeof t->client_ip, "%s", s->peer_ip);
	snprintf(t->hostname, sizeof t->hostname, "%s", s->srv->cfg->hostname);
	snprintf(t->tls, sizeof t->tls, "%s", s->tls ? s->tls_desc : "");
	t->esmtp = s->esmtp;
	t->authenticated = s->authenticated;
	t->utf8 = s->mail.smtputf8;
	t->header_len = s->reader.header_len;
	snprintf(j->from_domain, sizeof j->from_domain, "%s", s->from_domain);
	if (s->nrcpts == 1)
		snprintf(t->for_rcpt, sizeof t->for_rcpt, "%s", s->rcpts.data);
	t->time = time(NULL);
	session_set_state(s, SMTPD_STATE_COMMIT);
	bufferevent_disable(s->bev, EV_READ);
	pool_submit(s, &s->srv->sessions->sign_line, job_run, job_done, job_free_cb, j);
}

/* Feeds buffered input to the DATA reader. Returns true when the end of data was reached. */
static bool data_feed(struct smtpd_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[8];
	for (;;) {
		int n = evbuffer_peek(in, -1, NULL, v, 8);
		if (n <= 0)
			return false;
		size_t used_total = 0;
		bool done = false;
		for (int i = 0; i < n && i < 8 && !done; i++) {
			size_t used = data_reader_feed(&s->reader, v[i].iov_base, v[i].iov_len,
			                               &s->message, &done);
			used_total += used;
		}
		evbuffer_drain(in, used_total);
		if (done)
			return true;
		if (n <= 8)
			return false;
	}
}

/* ---- dispatch ---- */

struct smtpd_command {
	enum smtp_verb verb;
	unsigned states; /* where the command is allowed */
	const char *wrong_state_reply;
	void (*run)(struct smtpd_session *s, const struct smtp_command *c);
};

static void cmd_ehlo(struct smtpd_session *s, const struct smtp_command *c)
{
	cmd_helo(s, c, true);
}

static void cmd_helo_plain(struct smtpd_session *s, const struct smtp_command *c)
{
	cmd_helo(s, c, false);
}

static void cmd_rset(struct smtpd_session *s, const struct smtp_command *c)
{
	transaction_reset(s);
	if (s->state == SMTPD_STATE_MAIL || s->state == SMTPD_STATE_RCPT)
		session_set_state(s, SMTPD_STATE_READY);
	reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtpd_session *s, const struct smtp_command *c)
{
	reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtpd_session *s, const struct smtp_command *c)
{
	reply(s, "221 2.0.0 %s Bye", s->srv->cfg->hostname);
	session_close(s);
}

static void cmd_vrfy(struct smtpd_session *s, const struct smtp_command *c)
{
	reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtpd_session *s, const struct smtp_command *c)
{
	reply(s, "502 5.5.1 EXPN not supported");
}

static void cmd_bdat(struct smtpd_session *s, const struct smtp_command *c)
{
	reply(s, "502 5.5.1 CHUNKING not supported");
}

static void cmd_help(struct smtpd_session *s, const struct smtp_command *c)
{
	reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY "
	         "HELP QUIT");
}

#define ANY_READY (S(GREETED) | S(READY) | S(MAIL) | S(RCPT))

static const struct smtpd_command commands[] = {
    {SMTP_VERB_EHLO, ANY_READY, NULL, cmd_ehlo},
    {SMTP_VERB_HELO, ANY_READY, NULL, cmd_helo_plain},
    {SMTP_VERB_STARTTLS, S(READY), "503 5.5.1 Send EHLO first", cmd_starttls},
    {SMTP_VERB_AUTH, S(READY), "503 5.5.1 AUTH needs EHLO first and no mail transaction", cmd_auth},
    {SMTP_VERB_MAIL, S(READY), "503 5.5.1 Send EHLO first, and no nested MAIL", cmd_mail},
    {SMTP_VERB_RCPT, S(MAIL) | S(RCPT), "503 5.5.1 Need MAIL before RCPT", cmd_rcpt},
    {SMTP_VERB_DATA, S(RCPT), "503 5.5.1 Need RCPT before DATA", cmd_data},
    {SMTP_VERB_RSET, ANY_READY, NULL, cmd_rset},
    {SMTP_VERB_NOOP, ANY_READY, NULL, cmd_noop},
    {SMTP_VERB_QUIT, ANY_READY, NULL, cmd_quit},
    {SMTP_VERB_VRFY, ANY_READY, NULL, cmd_vrfy},
    {SMTP_VERB_EXPN, ANY_READY, NULL, cmd_expn},
    {SMTP_VERB_HELP, ANY_READY, NULL, cmd_help},
    {SMTP_VERB_BDAT, ANY_READY, NULL, cmd_bdat},
};

static void dispatch(struct smtpd_session *s, const char *line, size_t len)
{
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char esc[256];
		bool secret = s->state == SMTPD_STATE_AUTH_PLAIN ||
		              s->state == SMTPD_STATE_AUTH_LOGIN_USER ||
		              s->state == SMTPD_STATE_AUTH_LOGIN_PASS ||
		              (len >= 5 && strncasecmp(line, "AUTH ", 5) == 0);
		log_debug(s->id, "event=command text=\"%s\"",
		          secret ? "AUTH ***" : log_escape(line, len, esc, sizeof esc));
	}
	if (s->state == SMTPD_STATE_AUTH_PLAIN || s->state == SMTPD_STATE_AUTH_LOGIN_USER ||
	    s->state == SMTPD_STATE_AUTH_LOGIN_PASS) {
		auth_continue(s, line, len);
		return;
	}
	struct smtp_command c;
	if (smtp_command_parse(line, len, &c) != SMTP_PARSE_OK) {
		reply(s, "501 5.5.2 Syntax error");
		return;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		const struct smtpd_command *cmd = &commands[i];
		if (cmd->verb != c.verb)
			continue;
		if ((cmd->states & (1u << s->state)) == 0) {
			if (s->state == SMTPD_STATE_GREETED)
				reply(s, "503 5.5.1 Send EHLO/HELO first");
			else
				reply(s, "%s", cmd->wrong_state_reply);
			return;
		}
		cmd->run(s, &c);
		return;
	}
	reply(s, "500 5.5.2 Command not recognized");
}

/* Handles buffered input: commands, or DATA, within a budget. */
static void session_process(struct smtpd_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	for (int budget = SMTPD_BUDGET; budget > 0; budget--) {
		if (evbuffer_get_length(out) > SMTPD_OUTPUT_MAX) {
			/* the client does not read its replies: pause until they drain */
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		switch (s->state) {
		case SMTPD_STATE_DATA:
			if (data_feed(s))
				data_finished(s);
			else
				return;
			continue;
		case SMTPD_STATE_GREETED:
		case SMTPD_STATE_READY:
		case SMTPD_STATE_MAIL:
		case SMTPD_STATE_RCPT:
		case SMTPD_STATE_AUTH_PLAIN:
		case SMTPD_STATE_AUTH_LOGIN_USER:
		case SMTPD_STATE_AUTH_LOGIN_PASS:
			break;
		default:
			return; /* waiting for something else than input */
		}
		char line[SMTPD_LINE_MAX + 2];
		size_t len = 0;
		switch (read_line(in, line, &len)) {
		case LINE_NONE:
			return;
		case LINE_TOO_LONG:
			log_info(s->id, "event=protocol_error reason=line_too_long");
			reply(s, "500 5.5.2 Line too long");
			session_close(s);
			return;
		case LINE_BAD_ENDING:
			log_info(s->id, "event=protocol_error reason=bare_cr_lf_or_nul");
			reply(s, "500 5.5.2 Bare CR, bare LF or NUL in command refused");
			break;
		case LINE_OK:
			dispatch(s, line, len);
			OPENSSL_cleanse(line, len);
			break;
		}
		too_many_errors_check(s);
		if (s->state == SMTPD_STATE_CLOSING)
			return;
	}
	/* budget spent with input left: continue on a later loop turn, after other sessions */
	if (evbuffer_get_length(in) > 0)
		event_active(s->kick, EV_TIMEOUT, 0);
}

/* ---- bufferevent callbacks ---- */

/* States in which the session reads input (all others wait for something else). */
static bool reading_state(enum smtpd_state st)
{
	return ((1u << st) & (S(GREETED) | S(READY) | S(MAIL) | S(RCPT) | S(DATA) | S(AUTH_PLAIN) |
	                      S(AUTH_LOGIN_USER) | S(AUTH_LOGIN_PASS))) != 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct smtpd_session *s = arg;
	/* output fully flushed (low watermark 0) */
	switch (s->state) {
	case SMTPD_STATE_CLOSING:
	case SMTPD_STATE_STARTTLS:
		event_active(s->kick, EV_TIMEOUT, 0);
		break;
	default:
		if ((bufferevent_get_enabled(s->bev) & EV_READ) == 0 && reading_state(s->state)) {
			bufferevent_enable(s->bev, EV_READ);
			event_active(s->kick, EV_TIMEOUT, 0);
		}
		break;
	}
}

static void greet(struct smtpd_session *s)
{
	session_set_state(s, SMTPD_STATE_GREETED);
	struct timeval tv = {s->srv->cfg->idle_timeout, 0};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	reply(s, "220 %s ESMTP Postino", s->srv->cfg->hostname);
}

/* Ends the session now, without flushing: the free happens in on_kick, outside the
 * bufferevent's own callbacks. */
static void session_end(struct smtpd_session *s)
{
	session_set_state(s, SMTPD_STATE_CLOSING);
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	event_active(s->kick, EV_TIMEOUT, 0);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtpd_session *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* TLS handshake completed */
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		s->tls = true;
		tls_describe(ssl, s->tls_desc, sizeof s->tls_desc);
		log_info(s->id, "event=tls version=\"%s\"", s->tls_desc);
		/* implicit TLS: greet now; after STARTTLS: the client starts over with EHLO */
		if (s->after_starttls) {
			session_set_state(s, SMTPD_STATE_GREETED);
			struct timeval tv = {s->srv->cfg->idle_timeout, 0};
			bufferevent_set_timeouts(s->bev, &tv, &tv);
		} else {
			greet(s);
		}
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info(s->id, "event=timeout state=%s", state_names[s->state]);
		if (s->state != SMTPD_STATE_HANDSHAKE && s->state != SMTPD_STATE_CLOSING) {
			reply(s, "421 4.4.2 %s Timeout, closing connection", s->srv->cfg->hostname);
			session_close(s);
			/* the client may not read: bound the flush with the write timeout */
			bufferevent_enable(s->bev, EV_WRITE);
			return;
		}
		session_end(s);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		if (e != 0) {
			char why[160];
			ERR_error_string_n(e, why, sizeof why);
			log_info(s->id, "event=disconnect reason=tls_error error=\"%s\" state=%s",
			         why, state_names[s->state]);
		} else {
			log_info(s->id, "event=disconnect reason=error error=\"%s\" state=%s",
			         strerror(EVUTIL_SOCKET_ERROR()), state_names[s->state]);
		}
	} else if (what & BEV_EVENT_EOF) {
		log_info(s->id, "event=disconnect reason=eof state=%s", state_names[s->state]);
	}
	session_end(s);
}

static void session_callbacks_set(struct smtpd_session *s)
{
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	if (s->state == SMTPD_STATE_HANDSHAKE) {
		struct timeval tv = {s->srv->cfg->tls_handshake_timeout, 0};
		bufferevent_set_timeouts(s->bev, &tv, &tv);
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* The session's own event: resumes input, switches to TLS, or frees a closing session.
 * Never runs inside a bufferevent callback. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_session *s = arg;
	switch (s->state) {
	case SMTPD_STATE_CLOSING:
		session_free(s);
		return;
	case SMTPD_STATE_STARTTLS:
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			starttls_switch(s);
		return;
	default:
		session_process(s);
		return;
	}
}

/* ---- lifetime ---- */

static void session_free(struct smtpd_session *s)
{
	struct smtpd_registry *r = s->srv->sessions;
	log_debug(s->id, "event=session_free state=%s", state_names[s->state]);
	if (s->wait_job != NULL) { /* not handed to the pool yet: ours to free */
		TAILQ_REMOVE(&s->wait_line->sessions, s, wait_entry);
		s->wait_free(s->wait_job);
	}
	/* a job inside the pool, or a pending commit, finds no session and cleans up itself */
	if (s->auth_lookup != NULL)
		auth_job_free(s->auth_lookup);
	registry_remove(r, s);
	if (s->admitted)
		connlimit_release(s->srv->limits, s->srv->worker, (struct sockaddr *)&s->peer);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (!(s->bev != NULL && s->bev_closes_fd))
		close(s->fd);
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->timer != NULL)
		event_free(s->timer);
	transaction_reset(s);
	auth_forget(s);
	free(s);
}

int smtpd_init(struct server *srv)
{
	srv->sessions = calloc(1, sizeof *srv->sessions);
	if (srv->sessions == NULL)
		return -1;
	struct smtpd_registry *r = srv->sessions;
	r->sign_line.pool = srv->pool;
	r->auth_line.pool = srv->auth_pool;
	TAILQ_INIT(&r->sign_line.sessions);
	TAILQ_INIT(&r->auth_line.sessions);
	workpool_on_space(srv->pool, pool_space, &r->sign_line);
	workpool_on_space(srv->auth_pool, pool_space, &r->auth_line);
	return 0;
}

void smtpd_shutdown(struct server *srv)
{
	struct smtpd_registry *r = srv->sessions;
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->capacity; i++)
		if (r->slots[i] != NULL)
			session_free(r->slots[i]);
	free(r->slots);
	free(r->generation);
	free(r->free_slots);
	free(r);
	srv->sessions = NULL;
}

void smtpd_drain(struct server *srv, bool force)
{
	struct smtpd_registry *r = srv->sessions;
	for (size_t i = 0; r != NULL && i < r->capacity; i++) {
		struct smtpd_session *s = r->slots[i];
		if (s == NULL || s->state == SMTPD_STATE_CLOSING)
			continue;
		if (s->state == SMTPD_STATE_HANDSHAKE || s->state == SMTPD_STATE_STARTTLS) {
			session_end(s); /* no SMTP reply can be sent mid-handshake */
			continue;
		}
		bool idle = s->state == SMTPD_STATE_GREETED || s->state == SMTPD_STATE_READY;
		if (!idle && !force)
			continue;
		log_info(s->id, "event=shutdown state=%s", state_names[s->state]);
		reply(s, "421 4.3.2 %s Service shutting down, try again later", srv->cfg->hostname);
		session_close(s);
	}
}

size_t smtpd_count(const struct server *srv)
{
	return srv->sessions ? srv->sessions->count : 0;
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >>
		        24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

void smtpd_accept(struct server *srv, int fd, const struct sockaddr *sa, int salen,
                  bool implicit_tls)
{
	const struct config *cfg = srv->cfg;
	if (srv->stopping || connlimit_acquire(srv->limits, srv->worker, sa, cfg->max_connections,
	                                       cfg->max_connections_per_ip) == -1) {
		static const char busy[] = "421 4.7.0 Too many connections, try again later\r\n";
		if (!implicit_tls) { /* in TLS a cleartext reply would only confuse the client */
			ssize_t w = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
		}
		log_info(0, "event=connection_refused reason=limit total=%d",
		         connlimit_total(srv->limits));
		close(fd);
		return;
	}
	struct smtpd_session *s = calloc(1, sizeof *s);
	if (s == NULL) {
		connlimit_release(srv->limits, srv->worker, sa);
		close(fd);
		return;
	}
	s->admitted = true;
	s->srv = srv;
	s->fd = fd;
	s->id = log_id_new();
	memcpy(&s->peer, sa, (size_t)salen < sizeof s->peer ? (size_t)salen : sizeof s->peer);
	s->peerlen = salen;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		          s->peer_ip, sizeof s->peer_ip);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		          s->peer_ip, sizeof s->peer_ip);
	else
		snprintf(s->peer_ip, sizeof s->peer_ip, "unknown");
	s->loopback = is_loopback(sa);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s->kick = event_new(srv->base, -1, 0, on_kick, s);
	s->timer = evtimer_new(srv->base, auth_delay_done, s);
	if (s->kick == NULL || s->timer == NULL || registry_add(srv->sessions, s) == -1)
		goto fail;
	if (implicit_tls) {
		SSL *ssl = SSL_new(srv->tls);
		if (ssl == NULL)
			goto fail;
		s->bev = bufferevent_openssl_socket_new(
		    srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (s->bev == NULL) {
			SSL_free(ssl);
			goto fail;
		}
		s->bev_closes_fd = true;
		s->state = SMTPD_STATE_HANDSHAKE;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, 0); /* fd closed by session_free */
		if (s->bev == NULL)
			goto fail;
		s->state = SMTPD_STATE_GREETED;
	}
	log_info(s->id, "event=connect client=%s tls=%s", s->peer_ip,
	         implicit_tls ? "implicit" : "no");
	session_callbacks_set(s);
	if (!implicit_tls)
		greet(s);
	return;
fail:
	log_error(0, "event=accept reason=out_of_memory");
	session_free(s);
}
