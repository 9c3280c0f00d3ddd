/*
 * mx.c: MX resolution (see mx.h). RFC 5321 5.1 (MX, preference order, implicit MX), RFC 7505
 * (null MX) and RFC 3463 / RFC 7505 status codes for the failures.
 */
#include "relay/mx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "relay/resolver.h"

void mx_order(const struct dns_response *response, uint32_t (*random)(void), struct mx_result *out)
{
	memset(out, 0, sizeof *out);
	size_t nmx = 0, nulls = 0;
	uint32_t ttl = UINT32_MAX;
	for (size_t i = 0; i < response->count; i++) {
		const struct dns_record *rr = &response->answers[i];
		if (rr->ttl < ttl)
			ttl = rr->ttl;
		if (!rr->match || rr->type != DNS_TYPE_MX)
			continue;
		nmx++;
		if (rr->rdata.mx.exchange[0] == '\0') {
			nulls++;
			continue;
		}
		if (strlen(rr->rdata.mx.exchange) > MX_NAME_MAX)
			continue;
		bool dup = false;
		for (size_t k = 0; k < out->nhosts && !dup; k++)
			dup = strcmp(out->hosts[k].name, rr->rdata.mx.exchange) == 0;
		if (dup)
			continue;
		/* keep the MX_HOSTS_MAX most preferred: replace the worst when full */
		size_t at = out->nhosts;
		if (at == MX_HOSTS_MAX) {
			size_t worst = 0;
			for (size_t k = 1; k < MX_HOSTS_MAX; k++)
				if (out->hosts[k].preference > out->hosts[worst].preference)
					worst = k;
			if (out->hosts[worst].preference <= rr->rdata.mx.preference)
				continue;
			at = worst;
		} else {
			out->nhosts++;
		}
		snprintf(out->hosts[at].name, sizeof out->hosts[at].name, "%s",
		         rr->rdata.mx.exchange);
		out->hosts[at].preference = rr->rdata.mx.preference;
	}
	out->ttl = ttl == UINT32_MAX ? 0 : ttl;
	if (nmx == 1 && nulls == 1) {
		out->status = MX_NULL;
		snprintf(out->reply, sizeof out->reply,
		         "556 5.1.10 Recipient address has null MX (RFC 7505)");
		return;
	}
	if (out->nhosts == 0) {
		out->status = MX_NOTFOUND;
		snprintf(out->reply, sizeof out->reply,
		         "550 5.1.2 No usable MX host for the domain");
		return;
	}
	/* insertion sort by preference (at most MX_HOSTS_MAX), then shuffle each run of equal
	 * preferences (Fisher-Yates) */
	for (size_t i = 1; i < out->nhosts; i++) {
		struct mx_host h = out->hosts[i];
		size_t k = i;
		for (; k > 0 && out->hosts[k - 1].preference > h.preference; k--)
			out->hosts[k] = out->hosts[k - 1];
		out->hosts[k] = h;
	}
	for (size_t start = 0; random != NULL && start < out->nhosts;) {
		size_t end = start + 1;
		while (end < out->nhosts &&
		       out->hosts[end].preference == out->hosts[start].preference)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + random() % (i - start + 1);
			struct mx_host t = out->hosts[i];
			out->hosts[i] = out->hosts[j];
			out->hosts[j] = t;
		}
		start = end;
	}
	out->status = MX_OK;
}

/* ---- async lookups ---- */

enum op_step {
	STEP_MX,
	STEP_A,
	STEP_AAAA,
};

struct mx_op {
	struct resolver *r;
	enum op_step step;
	bool addresses; /* mx_addresses_lookup, else mx_lookup */
	char name[MX_NAME_MAX + 1];
	int port;
	mx_done_fn *cb;
	mx_addresses_fn *acb;
	uint64_t ref;
	void *arg;
	struct mx_result res;
	struct mx_addresses addrs;
};

static uint32_t random_u32(void)
{
	return (uint32_t)random();
}

static void op_finish(struct mx_op *op)
{
	if (op->addresses)
		op->acb(&op->addrs, op->ref, op->arg);
	else
		op->cb(&op->res, op->ref, op->arg);
	free(op);
}

static void fail(struct mx_op *op, enum mx_status st, const struct resolver_result *rr,
                 const char *what)
{
	const char *reply = st == MX_NOTFOUND ? "550 5.1.2" : "451 4.4.3";
	const char *why = st == MX_NOTFOUND ? "Domain not found" : "DNS lookup failed, will retry";
	op->res.status = st;
	op->addrs.status = st;
	snprintf(op->res.reply, sizeof op->res.reply, "%s %s (%s %s: %s)", reply, why, what,
	         op->name, resolver_status_name(rr->status));
	snprintf(op->addrs.detail, sizeof op->addrs.detail, "%s %s: %s (%.200s)", what, op->name,
	         resolver_status_name(rr->status), rr->detail);
	op_finish(op);
}

static void on_answer(const struct resolver_result *rr, uint64_t ref, void *arg);

static void ask(struct mx_op *op, enum op_step step)
{
	static const uint16_t types[] = {DNS_TYPE_MX, DNS_TYPE_A, DNS_TYPE_AAAA};
	op->step = step;
	if (resolver_query(op->r, op->name, types[step], on_answer, 0, op) == -1) {
		struct resolver_result rr = {.status = RESOLVER_NETWORK};
		snprintf(rr.detail, sizeof rr.detail, "query could not start");
		fail(op, MX_TEMPFAIL, &rr, "query");
	}
}

static bool temporary(enum resolver_status s)
{
	return s != RESOLVER_OK && s != RESOLVER_NODATA && s != RESOLVER_NXDOMAIN;
}

static void add_addresses(struct mx_op *op, const struct dns_response *resp)
{
	for (size_t i = 0; i < resp->count && op->addrs.count < MX_ADDRS_MAX; i++) {
		const struct dns_record *rec = &resp->answers[i];
		if (!rec->match)
			continue;
		struct sockaddr_storage *ss = &op->addrs.addrs[op->addrs.count];
		memset(ss, 0, sizeof *ss);
		if (rec->type == DNS_TYPE_A) {
			struct sockaddr_in *in = (struct sockaddr_in *)ss;
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)op->port);
			memcpy(&in->sin_addr, rec->rdata.a, 4);
			op->addrs.lens[op->addrs.count++] = sizeof *in;
		} else if (rec->type == DNS_TYPE_AAAA) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)op->port);
			memcpy(&in6->sin6_addr, rec->rdata.aaaa, 16);
			op->addrs.lens[op->addrs.count++] = sizeof *in6;
		}
	}
}

static void on_answer(const struct resolver_result *rr, uint64_t ref, void *arg)
{
	struct mx_op *op = arg;
	if (rr->status == RESOLVER_CANCELLED) {
		fail(op, MX_TEMPFAIL, rr, "lookup of");
		return;
	}
	if (op->step == STEP_MX) {
		if (rr->status == RESOLVER_NXDOMAIN) {
			fail(op, MX_NOTFOUND, rr, "MX of");
			return;
		}
		if (temporary(rr->status)) {
			fail(op, MX_TEMPFAIL, rr, "MX of");
			return;
		}
		if (rr->status == RESOLVER_OK) {
			mx_order(rr->response, random_u32, &op->res);
			if (op->res.status != MX_NOTFOUND) {
				op_finish(op);
				return;
			}
		}
		ask(op, STEP_A); /* no MX: the implicit MX, if the domain has an address */
		return;
	}
	if (temporary(rr->status)) {
		fail(op, MX_TEMPFAIL, rr, op->step == STEP_A ? "A of" : "AAAA of");
		return;
	}
	if (op->addresses) {
		if (rr->status == RESOLVER_OK)
			add_addresses(op, rr->response);
		if (op->addrs.count > 0) {
			op->addrs.status = MX_OK;
			op_finish(op);
		} else if (op->step == STEP_A && rr->status == RESOLVER_NODATA) {
			ask(op, STEP_AAAA);
		} else {
			fail(op, MX_NOTFOUND, rr, op->step == STEP_A ? "A of" : "AAAA of");
		}
		return;
	}
	/* the implicit MX */
	if (rr->status == RESOLVER_OK) {
		op->res.status = MX_OK;
		op->res.implicit = true;
		op->res.nhosts = 1;
		snprintf(op->res.hosts[0].name, sizeof op->res.hosts[0].name, "%s", op->name);
		op->res.ttl = UINT32_MAX;
		for (size_t i = 0; i < rr->response->count; i++)
			if (rr->response->answers[i].ttl < op->res.ttl)
				op->res.ttl = rr->response->answers[i].ttl;
		if (op->res.ttl == UINT32_MAX)
			op->res.ttl = 0;
		op->res.reply[0] = '\0';
		op_finish(op);
	} else if (op->step == STEP_A && rr->status == RESOLVER_NODATA) {
		ask(op, STEP_AAAA);
	} else {
		fail(op, MX_NOTFOUND, rr, op->step == STEP_A ? "A of" : "AAAA of");
	}
}

static struct mx_op *op_new(struct resolver *r, const char *name, uint64_t ref, void *arg)
{
	size_t n = strlen(name);
	if (n == 0 || n > MX_NAME_MAX)
		return NULL;
	struct mx_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return NULL;
	op->r = r;
	for (size_t i = 0; i <= n; i++)
		op->name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	if (op->name[n - 1] == '.')
		op->name[n - 1] = '\0';
	op->ref = ref;
	op->arg = arg;
	return op;
}

int mx_lookup(struct resolver *r, const char *domain, mx_done_fn *cb, uint64_t ref, void *arg)
{
	struct mx_op *op = op_new(r, domain, ref, arg);
	if (op == NULL)
		return -1;
	op->cb = cb;
	if (resolver_query(r, op->name, DNS_TYPE_MX, on_answer, 0, op) == -1) {
		free(op);
		return -1;
	}
	op->step = STEP_MX;
	return 0;
}

static void on_numeric(evutil_socket_t fd, short what, void *arg)
{
	op_finish(arg);
}

int mx_addresses_lookup(struct resolver *r, const char *host, int port, mx_addresses_fn *cb,
                        uint64_t ref, void *arg)
{
	struct mx_op *op = op_new(r, host, ref, arg);
	if (op == NULL)
		return -1;
	op->addresses = true;
	op->acb = cb;
	op->port = port;
	struct sockaddr_in *in = (struct sockaddr_in *)&op->addrs.addrs[0];
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&op->addrs.addrs[0];
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		op->addrs.lens[0] = sizeof *in;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		op->addrs.lens[0] = sizeof *in6;
	}
	if (op->addrs.lens[0] != 0) {
		op->addrs.count = 1;
		op->addrs.status = MX_OK;
		struct timeval zero = {0, 0};
		if (event_base_once(resolver_base(r), -1, EV_TIMEOUT, on_numeric, op, &zero) ==
		    -1) {
			free(op);
			return -1;
		}
		return 0;
	}
	if (resolver_query(r, op->name, DNS_TYPE_A, on_answer, 0, op) == -1) {
		free(op);
		return -1;
	}
	op->step = STEP_A;
	return 0;
}

const char *mx_status_name(enum mx_status s)
{
	switch (s) {
	case MX_OK:
		return "ok";
	case MX_NULL:
		return "nullmx";
	case MX_NOTFOUND:
		return "notfound";
	case MX_TEMPFAIL:
		return "tempfail";
	}
	return "unknown";
}
