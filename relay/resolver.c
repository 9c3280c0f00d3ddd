/*
 * resolver.c: the DNS stub resolver (see resolver.h) on a libevent event_base.
 *
 * RFC 1035 4.2.1 (UDP) and 4.2.2 (TCP with a two-octet length prefix), RFC 7766 (TCP when
 * the UDP answer has TC set), RFC 6891 7 (a FORMERR without OPT to an EDNS0 query: ask again
 * without EDNS0), RFC 5452 (random ids and ports, answers checked against the question).
 *
 * Each query is a small state machine: UDP (one connected socket per attempt; a timer per
 * attempt), then maybe TCP_CONNECT -> TCP_WRITE -> TCP_READ (one timer for the exchange), then
 * DONE. Every outcome goes through query_complete(), which closes the socket and arms the
 * query's timer at zero, and the timer delivers it through query_finish(): so a callback never
 * runs inside resolver_query() nor inside a socket callback of its own query.
 */
#include "relay/resolver.h"
#include "relay/num.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "relay/log.h"

#define RESOLV_CONF_MAX     (64 * 1024)
#define UDP_READS_PER_EVENT 16 /* datagrams read per wake-up, so one query cannot spin */

enum query_phase {
	QUERY_UDP,
	QUERY_TCP_CONNECT,
	QUERY_TCP_WRITE,
	QUERY_TCP_READ,
	QUERY_DONE,
};

struct resolver_query {
	struct resolver *r;
	struct resolver_query *prev, *next;
	char name[DNS_NAME_WIRE_MAX + 1];
	uint16_t type, id;
	int attempt;
	bool edns;
	enum query_phase phase;
	int fd;
	struct event *io;
	struct event *timer;
	resolver_done_fn *cb;
	uint64_t ref;
	void *arg;
	unsigned char out[2 + DNS_QUERY_MAX]; /* the query; TCP: after its length prefix */
	size_t out_len, out_sent;
	unsigned char prefix[2]; /* TCP: the answer's length */
	size_t have, want;
	unsigned char *in; /* TCP: the answer, want octets */
	struct resolver_result result;
	bool cached; /* answered from the cache: not stored again */
};

/* One cached answer: (name, type) -> status and response, until expires_ms. */
struct cache_entry {
	struct cache_entry *next;
	uint16_t type;
	enum resolver_status status;
	int64_t expires_ms; /* CLOCK_MONOTONIC */
	struct dns_response *response;
	char name[DNS_NAME_WIRE_MAX + 1]; /* lowercased, without a final dot */
};

struct resolver {
	struct event_base *base;
	struct sockaddr_storage server;
	socklen_t server_len;
	char server_text[INET6_ADDRSTRLEN + 16];
	int timeout_ms, attempts;
	bool closing;
	size_t inflight;
	struct resolver_query *head;
	unsigned char *rbuf;        /* one UDP datagram, DNS_MESSAGE_MAX octets */
	struct cache_entry **cache; /* NULL: no cache (resolver_cache_enable) */
	size_t cache_buckets, cache_count, cache_max;
};

struct resolver_sync {
	struct event_base *base;
	struct resolver *r;
};

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* ---- server address ---- */

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A numeric host (IPv6 may carry %scope) and a port into *out. */
static int host_port_set(const char *host, unsigned port, struct sockaddr_storage *out,
                         socklen_t *outlen)
{
	struct addrinfo hints, *ai = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || ai == NULL)
		return -1;
	if (ai->ai_addrlen > sizeof *out ||
	    (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)) {
		freeaddrinfo(ai);
		return -1;
	}
	memset(out, 0, sizeof *out);
	memcpy(out, ai->ai_addr, ai->ai_addrlen);
	*outlen = (socklen_t)ai->ai_addrlen;
	freeaddrinfo(ai);
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
	return 0;
}

static int port_parse(const char *s, unsigned *port)
{
	uint64_t v;
	if (num_parse_u64(s, strlen(s), 65535, &v) == -1 || v == 0)
		return -1;
	*port = (unsigned)v;
	return 0;
}

/* The first "nameserver ADDR" line of RESOLVER_RESOLV_CONF, or 127.0.0.1. */
static int resolv_conf_first(struct sockaddr_storage *out, socklen_t *outlen, char *err,
                             size_t errlen)
{
	char *text = malloc(RESOLV_CONF_MAX + 1);
	if (text == NULL) {
		errf(err, errlen, "out of memory");
		return -1;
	}
	size_t len = 0;
	int fd = open(RESOLVER_RESOLV_CONF, O_RDONLY | O_CLOEXEC);
	if (fd != -1) {
		ssize_t n;
		while (len < RESOLV_CONF_MAX &&
		       (n = read(fd, text + len, RESOLV_CONF_MAX - len)) != 0) {
			if (n == -1) {
				if (errno == EINTR)
					continue;
				break;
			}
			len += (size_t)n;
		}
		close(fd);
	}
	text[len] = '\0';
	int rc = 1; /* no nameserver line */
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL && rc == 1;
	     line = strtok_r(NULL, "\n", &save)) {
		char *s = line + strspn(line, " \t");
		if (strncmp(s, "nameserver", 10) != 0 || (s[10] != ' ' && s[10] != '\t'))
			continue;
		s += 10 + strspn(s + 10, " \t");
		s[strcspn(s, " \t\r#;")] = '\0';
		rc = host_port_set(s, DNS_PORT, out, outlen);
		if (rc == -1)
			errf(err, errlen, "%s: nameserver %.64s is not a numeric address",
			     RESOLVER_RESOLV_CONF, s);
	}
	free(text);
	if (rc == 1) /* the C library's default */
		rc = host_port_set("127.0.0.1", DNS_PORT, out, outlen);
	return rc;
}

int resolver_server_parse(const char *text, struct sockaddr_storage *out, socklen_t *outlen,
                          char *err, size_t errlen)
{
	if (text == NULL || text[0] == '\0')
		return resolv_conf_first(out, outlen, err, errlen);
	char host[INET6_ADDRSTRLEN + 32];
	unsigned port = DNS_PORT;
	size_t n = strlen(text);
	const char *port_text = NULL;
	if (n >= sizeof host) {
		errf(err, errlen, "address too long");
		return -1;
	}
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
			errf(err, errlen, "an IPv6 address with a port is written [ADDR]:PORT");
			return -1;
		}
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		if (close[1] == ':')
			port_text = close + 2;
	} else {
		const char *colon = strchr(text, ':');
		memcpy(host, text, n + 1);
		if (colon != NULL && strchr(colon + 1, ':') == NULL) { /* IPv4:PORT */
			host[colon - text] = '\0';
			port_text = colon + 1;
		}
	}
	if (port_text != NULL && port_parse(port_text, &port) == -1) {
		errf(err, errlen, "bad port (1..65535)");
		return -1;
	}
	if (host_port_set(host, port, out, outlen) == -1) {
		errf(err, errlen, "not a numeric IPv4 or IPv6 address");
		return -1;
	}
	return 0;
}

static void server_text_format(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in4->sin_addr, a, sizeof a);
		snprintf(out, outlen, "%s:%u", a, (unsigned)ntohs(in4->sin_port));
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
		snprintf(out, outlen, "[%s]:%u", a, (unsigned)ntohs(in6->sin6_port));
	}
}

/* ---- queries ---- */

static void io_close(struct resolver_query *q)
{
	if (q->io != NULL) {
		event_free(q->io);
		q->io = NULL;
	}
	if (q->fd != -1) {
		close(q->fd);
		q->fd = -1;
	}
	free(q->in);
	q->in = NULL;
}

static void timer_arm(struct resolver_query *q, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (evtimer_add(q->timer, &tv) == -1)
		log_error(0, "event=dns_timer call=evtimer_add failed name=%s", q->name);
}

/* The outcome is known: close the socket now, deliver from the timer (see the top). Takes
 * response. */
static void query_complete(struct resolver_query *q, enum resolver_status st,
                           struct dns_response *response, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void query_complete(struct resolver_query *q, enum resolver_status st,
                           struct dns_response *response, const char *fmt, ...)
{
	io_close(q);
	q->phase = QUERY_DONE;
	q->result.status = st;
	dns_response_free(q->result.response);
	q->result.response = response;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->result.detail, sizeof q->result.detail, fmt, ap);
	va_end(ap);
	timer_arm(q, 0);
}

/* ---- cache ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cache_key(const char *name, char *out)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	out[n] = '\0';
}

static size_t cache_bucket(const struct resolver *r, const char *key, uint16_t type)
{
	uint64_t h = 1469598103934665603ULL ^ type; /* FNV-1a */
	for (const char *p = key; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (size_t)(h % r->cache_buckets);
}

static void cache_entry_free(struct cache_entry *e)
{
	dns_response_free(e->response);
	free(e);
}

/* Drops every expired entry; O(entries), run only when the cache is full. */
static void cache_sweep(struct resolver *r, int64_t now)
{
	for (size_t b = 0; b < r->cache_buckets; b++) {
		struct cache_entry **pp = &r->cache[b];
		while (*pp != NULL) {
			struct cache_entry *e = *pp;
			if (e->expires_ms <= now) {
				*pp = e->next;
				cache_entry_free(e);
				r->cache_count--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* How long an answer may be kept: the smallest TTL of its records (RFC 1035 3.2.1); for a
 * negative answer the SOA's negative TTL (RFC 2308 5), RESOLVER_NEGATIVE_TTL without one.
 * -1: not cached (server failures and timeouts are asked again). */
static int64_t cache_ttl(const struct resolver_result *res)
{
	int64_t ttl = -1;
	if (res->response == NULL)
		return -1;
	if (res->status == RESOLVER_OK) {
		for (size_t i = 0; i < res->response->count; i++)
			if (ttl == -1 || res->response->answers[i].ttl < ttl)
				ttl = res->response->answers[i].ttl;
	} else if (res->status == RESOLVER_NODATA || res->status == RESOLVER_NXDOMAIN) {
		ttl = res->response->negative_ttl >= 0 ? res->response->negative_ttl
		                                       : RESOLVER_NEGATIVE_TTL;
	}
	if (ttl == -1)
		return -1;
	if (ttl < RESOLVER_CACHE_TTL_MIN)
		ttl = RESOLVER_CACHE_TTL_MIN;
	if (ttl > RESOLVER_CACHE_TTL_MAX)
		ttl = RESOLVER_CACHE_TTL_MAX;
	return ttl;
}

static void cache_store(struct resolver *r, const struct resolver_query *q)
{
	int64_t ttl = cache_ttl(&q->result);
	if (r->cache == NULL || q->cached || ttl < 0)
		return;
	int64_t now = mono_ms();
	char key[DNS_NAME_WIRE_MAX + 1];
	cache_key(q->name, key);
	size_t b = cache_bucket(r, key, q->type);
	for (struct cache_entry **pp = &r->cache[b]; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->type == q->type && strcmp((*pp)->name, key) == 0) {
			struct cache_entry *old = *pp;
			*pp = old->next;
			cache_entry_free(old);
			r->cache_count--;
			break;
		}
	}
	if (r->cache_count >= r->cache_max)
		cache_sweep(r, now);
	if (r->cache_count >= r->cache_max)
		return; /* full of live answers: ask the server next time */
	struct cache_entry *e = calloc(1, sizeof *e);
	if (e == NULL)
		return;
	e->response = dns_response_copy(q->result.response);
	if (e->response == NULL) {
		free(e);
		return;
	}
	e->type = q->type;
	e->status = q->result.status;
	e->expires_ms = now + ttl * 1000;
	memcpy(e->name, key, strlen(key) + 1);
	e->next = r->cache[b];
	r->cache[b] = e;
	r->cache_count++;
}

/* A live cached answer for (name, type), or NULL. */
static const struct cache_entry *cache_find(struct resolver *r, const char *name, uint16_t type)
{
	if (r->cache == NULL)
		return NULL;
	char key[DNS_NAME_WIRE_MAX + 1];
	cache_key(name, key);
	for (struct cache_entry *e = r->cache[cache_bucket(r, key, type)]; e != NULL; e = e->next)
		if (e->type == type && strcmp(e->name, key) == 0)
			return e->expires_ms > mono_ms() ? e : NULL;
	return NULL;
}

int resolver_cache_enable(struct resolver *r, size_t max_entries)
{
	if (r->cache != NULL || max_entries == 0)
		return -1;
	size_t buckets = max_entries / 2 + 1;
	r->cache = calloc(buckets, sizeof *r->cache);
	if (r->cache == NULL)
		return -1;
	r->cache_buckets = buckets;
	r->cache_max = max_entries;
	return 0;
}

size_t resolver_cache_count(const struct resolver *r)
{
	return r->cache_count;
}

static void cache_free(struct resolver *r)
{
	if (r->cache == NULL)
		return;
	for (size_t b = 0; b < r->cache_buckets; b++) {
		while (r->cache[b] != NULL) {
			struct cache_entry *e = r->cache[b];
			r->cache[b] = e->next;
			cache_entry_free(e);
		}
	}
	free(r->cache);
	r->cache = NULL;
}

/* Unlinks and frees q, then calls its callback. r is not touched after the callback. */
static void query_finish(struct resolver_query *q)
{
	struct resolver *r = q->r;
	if (q->result.status != RESOLVER_CANCELLED)
		cache_store(r, q);
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		r->head = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	r->inflight--;
	io_close(q);
	event_free(q->timer);
	struct resolver_result res = q->result;
	resolver_done_fn *cb = q->cb;
	uint64_t ref = q->ref;
	void *arg = q->arg;
	free(q);
	cb(&res, ref, arg);
	dns_response_free(res.response);
}

static int id_random(uint16_t *id)
{
	unsigned char b[2];
	if (RAND_bytes(b, sizeof b) != 1)
		return -1;
	*id = (uint16_t)(b[0] << 8 | b[1]);
	return 0;
}

/* A new id and the query bytes at q->out + off. */
static int query_prepare(struct resolver_query *q, size_t off)
{
	if (id_random(&q->id) == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "RAND_bytes failed");
		return -1;
	}
	if (dns_query_build(q->id, q->name, q->type, q->edns, q->out + off, sizeof q->out - off,
	                    &q->out_len) == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "cannot build the query");
		return -1;
	}
	return 0;
}

static void answer_take(struct resolver_query *q, struct dns_response *resp);

static void udp_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct resolver_query *q = arg;
	struct resolver *r = q->r;
	for (int i = 0; i < UDP_READS_PER_EVENT; i++) {
		ssize_t n = recv(fd, r->rbuf, DNS_MESSAGE_MAX, 0);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			query_complete(q, RESOLVER_NETWORK, NULL, "no DNS server at %s: %s",
			               r->server_text, strerror(errno));
			return;
		}
		struct dns_response *resp;
		enum dns_parse_status st =
		    dns_response_parse(r->rbuf, (size_t)n, q->id, q->name, q->type, &resp);
		if (st == DNS_PARSE_OK) {
			answer_take(q, resp);
			return;
		}
		if (st == DNS_PARSE_NOMEM) {
			query_complete(q, RESOLVER_NETWORK, NULL, "out of memory");
			return;
		}
		/* not the answer to our question, or garbage: a forger's or a late one */
		log_debug(0, "event=dns_ignored name=%s server=%s reason=%s octets=%zd", q->name,
		          r->server_text, dns_parse_status_name(st), n);
	}
}

static void udp_start(struct resolver_query *q)
{
	struct resolver *r = q->r;
	io_close(q);
	q->phase = QUERY_UDP;
	if (query_prepare(q, 0) == -1)
		return;
	q->fd = socket(r->server.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "socket: %s", strerror(errno));
		return;
	}
	if (connect(q->fd, (const struct sockaddr *)&r->server, r->server_len) == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "connect to %s: %s", r->server_text,
		               strerror(errno));
		return;
	}
	ssize_t n = send(q->fd, q->out, q->out_len, 0);
	if (n != (ssize_t)q->out_len) {
		query_complete(q, RESOLVER_NETWORK, NULL, "send to %s: %s", r->server_text,
		               n == -1 ? strerror(errno) : "short write");
		return;
	}
	q->io = event_new(r->base, q->fd, EV_READ | EV_PERSIST, udp_on_read, q);
	if (q->io == NULL || event_add(q->io, NULL) == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "event_add failed");
		return;
	}
	timer_arm(q, r->timeout_ms);
}

static void tcp_on_io(evutil_socket_t fd, short what, void *arg);

static int tcp_event_set(struct resolver_query *q, short events)
{
	if (q->io != NULL)
		event_free(q->io);
	q->io = event_new(q->r->base, q->fd, events | EV_PERSIST, tcp_on_io, q);
	if (q->io == NULL || event_add(q->io, NULL) == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "event_add failed");
		return -1;
	}
	return 0;
}

static void tcp_start(struct resolver_query *q)
{
	struct resolver *r = q->r;
	io_close(q);
	q->phase = QUERY_TCP_CONNECT;
	q->out_sent = q->have = q->want = 0;
	if (query_prepare(q, 2) == -1)
		return;
	q->out[0] = (unsigned char)(q->out_len >> 8);
	q->out[1] = (unsigned char)(q->out_len & 0xff);
	q->out_len += 2;
	q->fd = socket(r->server.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q->fd == -1) {
		query_complete(q, RESOLVER_NETWORK, NULL, "socket: %s", strerror(errno));
		return;
	}
	if (connect(q->fd, (const struct sockaddr *)&r->server, r->server_len) == -1 &&
	    errno != EINPROGRESS) {
		query_complete(q, RESOLVER_NETWORK, NULL, "TCP connect to %s: %s", r->server_text,
		               strerror(errno));
		return;
	}
	if (tcp_event_set(q, EV_WRITE) == -1)
		return;
	timer_arm(q, r->timeout_ms);
}

/* Reads what is there of the answer, never past its announced length. Returns 1 when the
 * answer is complete, 0 to wait, -1 after query_complete. */
static int tcp_read(struct resolver_query *q)
{
	struct resolver *r = q->r;
	for (;;) {
		unsigned char *dst;
		size_t room;
		if (q->have < 2) {
			dst = q->prefix + q->have;
			room = 2 - q->have;
		} else {
			dst = q->in + (q->have - 2);
			room = q->want - (q->have - 2);
		}
		ssize_t n = recv(q->fd, dst, room, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			query_complete(q, RESOLVER_NETWORK, NULL, "TCP answer from %s: %s",
			               r->server_text,
			               n == 0 ? "connection closed early" : strerror(errno));
			return -1;
		}
		q->have += (size_t)n;
		if (q->have == 2) {
			q->want = (size_t)q->prefix[0] << 8 | q->prefix[1];
			if (q->want < DNS_HEADER_SIZE) {
				query_complete(q, RESOLVER_NETWORK, NULL,
				               "TCP answer from %s: length %zu", r->server_text,
				               q->want);
				return -1;
			}
			q->in = malloc(q->want);
			if (q->in == NULL) {
				query_complete(q, RESOLVER_NETWORK, NULL, "out of memory");
				return -1;
			}
		}
		if (q->have >= 2 && q->have - 2 == q->want)
			return 1;
	}
}

static void tcp_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct resolver_query *q = arg;
	struct resolver *r = q->r;
	if (q->phase == QUERY_TCP_CONNECT) {
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
			soerr = errno;
		if (soerr != 0) {
			query_complete(q, RESOLVER_NETWORK, NULL, "TCP connect to %s: %s",
			               r->server_text, strerror(soerr));
			return;
		}
		q->phase = QUERY_TCP_WRITE;
	}
	if (q->phase == QUERY_TCP_WRITE) {
		while (q->out_sent < q->out_len) {
			ssize_t n =
			    send(fd, q->out + q->out_sent, q->out_len - q->out_sent, MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (n <= 0) {
				query_complete(q, RESOLVER_NETWORK, NULL, "TCP send to %s: %s",
				               r->server_text, strerror(errno));
				return;
			}
			q->out_sent += (size_t)n;
		}
		q->phase = QUERY_TCP_READ;
		tcp_event_set(q, EV_READ);
		return;
	}
	if (q->phase != QUERY_TCP_READ || tcp_read(q) != 1)
		return;
	struct dns_response *resp;
	enum dns_parse_status st =
	    dns_response_parse(q->in, q->want, q->id, q->name, q->type, &resp);
	if (st != DNS_PARSE_OK) {
		query_complete(q, RESOLVER_NETWORK, NULL, "TCP answer from %s: %s", r->server_text,
		               dns_parse_status_name(st));
		return;
	}
	answer_take(q, resp);
}

static void answer_take(struct resolver_query *q, struct dns_response *resp)
{
	struct resolver *r = q->r;
	char rc[16], ty[16];
	if (resp->truncated) {
		dns_response_free(resp);
		if (q->phase == QUERY_UDP)
			tcp_start(q);
		else
			query_complete(q, RESOLVER_NETWORK, NULL,
			               "truncated answer over TCP from %s", r->server_text);
		return;
	}
	if (resp->rcode == DNS_RCODE_FORMERR && q->edns && !resp->edns) {
		dns_response_free(resp); /* a server from before EDNS0: ask it plainly */
		q->edns = false;
		if (q->phase == QUERY_UDP)
			udp_start(q);
		else
			tcp_start(q);
		return;
	}
	const char *type = dns_type_name(q->type, ty, sizeof ty);
	switch (resp->rcode) {
	case DNS_RCODE_NOERROR:
		if (resp->matches > 0)
			query_complete(q, RESOLVER_OK, resp, "%zu %s record%s", resp->matches, type,
			               resp->matches == 1 ? "" : "s");
		else
			query_complete(q, RESOLVER_NODATA, resp, "no %s record at %s", type,
			               q->name);
		return;
	case DNS_RCODE_NXDOMAIN:
		query_complete(q, RESOLVER_NXDOMAIN, resp, "%s does not exist (NXDOMAIN)",
		               resp->canonical);
		return;
	case DNS_RCODE_SERVFAIL:
		query_complete(q, RESOLVER_SERVFAIL, resp,
		               "the resolver %s answered SERVFAIL (it could not get an answer "
		               "from the domain's name servers)",
		               r->server_text);
		return;
	default:
		query_complete(q, RESOLVER_REFUSED, resp, "the resolver %s answered %s",
		               r->server_text, dns_rcode_name(resp->rcode, rc, sizeof rc));
		return;
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct resolver_query *q = arg;
	struct resolver *r = q->r;
	switch (q->phase) {
	case QUERY_DONE:
		query_finish(q);
		return;
	case QUERY_UDP:
		if (++q->attempt < r->attempts) {
			log_debug(0, "event=dns_retry name=%s server=%s attempt=%d", q->name,
			          r->server_text, q->attempt + 1);
			udp_start(q);
			return;
		}
		query_complete(q, RESOLVER_TIMEOUT, NULL,
		               "no answer from %s after %d attempt%s of %d ms", r->server_text,
		               r->attempts, r->attempts == 1 ? "" : "s", r->timeout_ms);
		return;
	case QUERY_TCP_CONNECT:
	case QUERY_TCP_WRITE:
	case QUERY_TCP_READ:
		query_complete(q, RESOLVER_TIMEOUT, NULL, "no answer over TCP from %s within %d ms",
		               r->server_text, r->timeout_ms);
		return;
	}
}

/* ---- the resolver ---- */

struct resolver *resolver_new(struct event_base *base, const char *server, int timeout_ms,
                              int attempts, char *err, size_t errlen)
{
	if (timeout_ms < RESOLVER_TIMEOUT_MIN_MS || timeout_ms > RESOLVER_TIMEOUT_MAX_MS ||
	    attempts < 1 || attempts > RESOLVER_ATTEMPTS_MAX) {
		errf(err, errlen, "timeout or attempts out of range");
		return NULL;
	}
	struct resolver *r = calloc(1, sizeof *r);
	if (r == NULL || (r->rbuf = malloc(DNS_MESSAGE_MAX)) == NULL) {
		free(r);
		errf(err, errlen, "out of memory");
		return NULL;
	}
	if (resolver_server_parse(server, &r->server, &r->server_len, err, errlen) == -1) {
		free(r->rbuf);
		free(r);
		return NULL;
	}
	r->base = base;
	r->timeout_ms = timeout_ms;
	r->attempts = attempts;
	server_text_format(&r->server, r->server_text, sizeof r->server_text);
	return r;
}

void resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	r->closing = true;
	while (r->head != NULL) {
		struct resolver_query *q = r->head;
		if (q->phase != QUERY_DONE) {
			q->result.status = RESOLVER_CANCELLED;
			snprintf(q->result.detail, sizeof q->result.detail, "resolver closed");
		}
		query_finish(q);
	}
	cache_free(r);
	free(r->rbuf);
	free(r);
}

struct event_base *resolver_base(const struct resolver *r)
{
	return r->base;
}

const char *resolver_server_text(const struct resolver *r)
{
	return r->server_text;
}

int resolver_query(struct resolver *r, const char *name, uint16_t type, resolver_done_fn *cb,
                   uint64_t ref, void *arg)
{
	unsigned char scratch[DNS_QUERY_MAX];
	size_t len;
	if (r->closing || r->inflight >= RESOLVER_INFLIGHT_MAX || cb == NULL ||
	    dns_query_build(0, name, type, true, scratch, sizeof scratch, &len) == -1 ||
	    strlen(name) > DNS_NAME_WIRE_MAX)
		return -1;
	struct resolver_query *q = calloc(1, sizeof *q);
	if (q == NULL)
		return -1;
	q->timer = evtimer_new(r->base, on_timer, q);
	if (q->timer == NULL) {
		free(q);
		return -1;
	}
	q->r = r;
	q->fd = -1;
	q->edns = true;
	q->type = type;
	q->cb = cb;
	q->ref = ref;
	q->arg = arg;
	memcpy(q->name, name, strlen(name) + 1);
	q->next = r->head;
	if (r->head != NULL)
		r->head->prev = q;
	r->head = q;
	r->inflight++;
	const struct cache_entry *hit = cache_find(r, name, type);
	if (hit != NULL) { /* delivered later, through the timer, like any answer */
		struct dns_response *copy = dns_response_copy(hit->response);
		if (copy != NULL) {
			q->cached = true;
			query_complete(q, hit->status, copy, "cached answer from %s",
			               r->server_text);
			return 0;
		}
	}
	udp_start(q); /* its failures are delivered later, through the timer */
	return 0;
}

const char *resolver_status_name(enum resolver_status status)
{
	switch (status) {
	case RESOLVER_OK:
		return "ok";
	case RESOLVER_NODATA:
		return "nodata";
	case RESOLVER_NXDOMAIN:
		return "nxdomain";
	case RESOLVER_SERVFAIL:
		return "servfail";
	case RESOLVER_REFUSED:
		return "refused";
	case RESOLVER_TIMEOUT:
		return "timeout";
	case RESOLVER_NETWORK:
		return "network";
	case RESOLVER_CANCELLED:
		return "cancelled";
	}
	return "unknown";
}

/* ---- blocking use ---- */

struct sync_wait {
	bool done;
	struct resolver_result *out;
};

static void sync_on_done(const struct resolver_result *res, uint64_t ref, void *arg)
{
	struct sync_wait *w = arg;
	*w->out = *res;
	w->out->response = NULL;
	if (res->response != NULL) {
		w->out->response = dns_response_copy(res->response);
		if (w->out->response == NULL) {
			w->out->status = RESOLVER_NETWORK;
			snprintf(w->out->detail, sizeof w->out->detail, "out of memory");
		}
	}
	w->done = true;
}

struct resolver_sync *resolver_sync_new(const char *server, int timeout_ms, int attempts, char *err,
                                        size_t errlen)
{
	struct resolver_sync *s = calloc(1, sizeof *s);
	if (s == NULL) {
		errf(err, errlen, "out of memory");
		return NULL;
	}
	s->base = event_base_new();
	if (s->base == NULL) {
		errf(err, errlen, "event_base_new failed");
		free(s);
		return NULL;
	}
	s->r = resolver_new(s->base, server, timeout_ms, attempts, err, errlen);
	if (s->r == NULL) {
		event_base_free(s->base);
		free(s);
		return NULL;
	}
	return s;
}

void resolver_sync_free(struct resolver_sync *s)
{
	if (s == NULL)
		return;
	resolver_free(s->r);
	event_base_free(s->base);
	free(s);
}

const char *resolver_sync_server_text(const struct resolver_sync *s)
{
	return s->r != NULL ? s->r->server_text : "(closed)";
}

int resolver_sync_query(struct resolver_sync *s, const char *name, uint16_t type,
                        struct resolver_result *out)
{
	struct sync_wait w = {false, out};
	memset(out, 0, sizeof *out);
	if (s->r == NULL || resolver_query(s->r, name, type, sync_on_done, 0, &w) == -1) {
		out->status = RESOLVER_NETWORK;
		snprintf(out->detail, sizeof out->detail,
		         "cannot look up %.300s: not a domain name, or out of memory", name);
		return -1;
	}
	/* the resolver's timers bound this: every query completes */
	while (!w.done) {
		if (event_base_loop(s->base, EVLOOP_ONCE) == -1) {
			resolver_free(s->r); /* cancels the query: w is not used after this */
			s->r = NULL;
		}
	}
	return 0;
}
