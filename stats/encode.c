/*
 * encode.c: the HTTP API's JSON documents (see encode.h for their shapes). Pure. Times per
 * RFC 3339 (stats/rfc3339.c).
 */
#include "stats/encode.h"

#include <math.h>

#include "stats/request.h"
#include "stats/rfc3339.h"

/* ms as an RFC 3339 string, or null when negative (unknown, none) or out of range. */
static void member_time(struct stats_json *j, const char *key, int64_t ms)
{
	char t[STATS_RFC3339_SIZE];
	stats_json_key(j, key);
	stats_json_cstring(j, ms >= 0 ? stats_rfc3339_format(ms, t) : NULL);
}

static double ratio(uint64_t num, uint64_t den)
{
	return den == 0 ? NAN : (double)num / (double)den;
}

struct stats_rates stats_encode_rates(const struct stats_counts *c)
{
	uint64_t bounced = c->bounced_hard + c->bounced_soft + c->bounced_block;
	struct stats_rates r = {
	    .delivery = ratio(c->delivered, c->delivered + bounced + c->expired),
	    .bounce = ratio(bounced, c->delivered + bounced),
	    .complaint = ratio(c->complained, c->delivered),
	};
	return r;
}

void stats_encode_error(struct stats_json *j, const char *error, const char *reason,
                        const char *parameter)
{
	stats_json_object_open(j);
	stats_json_member_cstring(j, "error", error);
	stats_json_member_cstring(j, "reason", reason);
	if (parameter != NULL)
		stats_json_member_cstring(j, "parameter", parameter);
	stats_json_object_close(j);
}

static void encode_event(struct stats_json *j, const struct stats_event *e)
{
	stats_json_object_open(j);
	stats_json_member_cstring(j, "type", e->type);
	member_time(j, "time", e->time_ms);
	stats_json_member_cstring(j, "id", e->message_id);
	stats_json_member_cstring(j, "rcpt", e->recipient);
	stats_json_member_cstring(j, "user", e->user);
	stats_json_member_cstring(j, "campaign", e->campaign);
	stats_json_key(j, "attempt");
	if (e->attempt > 0)
		stats_json_uint(j, e->attempt);
	else
		stats_json_null(j);
	stats_json_member_cstring(j, "host", e->host);
	stats_json_member_cstring(j, "reply", e->reply);
	stats_json_member_cstring(j, "tls", e->tls);
	stats_json_member_cstring(j, "reason", e->reason);
	stats_json_member_cstring(j, "class", e->bounce_class);
	stats_json_object_close(j);
}

static void encode_event_list(struct stats_json *j, const struct stats_event *events, size_t n)
{
	stats_json_array_open(j);
	for (size_t i = 0; i < n; i++)
		encode_event(j, &events[i]);
	stats_json_array_close(j);
}

static void encode_recipient(struct stats_json *j, const struct stats_recipient *r)
{
	stats_json_object_open(j);
	stats_json_member_cstring(j, "rcpt", r->address);
	stats_json_member_cstring(j, "state", r->state);
	stats_json_member_uint(j, "attempts", r->attempts);
	member_time(j, "next_attempt", r->next_attempt_ms);
	member_time(j, "last_attempt", r->last_attempt_ms);
	stats_json_member_cstring(j, "last_reply", r->last_reply);
	stats_json_member_cstring(j, "host", r->host);
	stats_json_member_cstring(j, "tls", r->tls);
	stats_json_member_cstring(j, "reason", r->reason);
	stats_json_member_cstring(j, "class", r->bounce_class);
	stats_json_object_close(j);
}

void stats_encode_message(struct stats_json *j, const struct stats_message *m)
{
	stats_json_object_open(j);
	stats_json_member_cstring(j, "id", m->id);
	stats_json_member_cstring(j, "user", m->user);
	stats_json_member_cstring(j, "sender", m->sender);
	stats_json_member_cstring(j, "campaign", m->campaign);
	stats_json_key(j, "tags");
	stats_json_array_open(j);
	for (size_t i = 0; i < m->ntags; i++)
		stats_json_cstring(j, m->tags[i]);
	stats_json_array_close(j);
	member_time(j, "received", m->received_ms);
	stats_json_member_uint(j, "size", m->size);
	stats_json_key(j, "recipients");
	stats_json_array_open(j);
	for (size_t i = 0; i < m->nrecipients; i++)
		encode_recipient(j, &m->recipients[i]);
	stats_json_array_close(j);
	stats_json_key(j, "events");
	encode_event_list(j, m->events, m->nevents);
	stats_json_object_close(j);
}

void stats_encode_events(struct stats_json *j, const struct stats_event_page *page)
{
	stats_json_object_open(j);
	stats_json_key(j, "events");
	encode_event_list(j, page->events, page->nevents);
	stats_json_member_cstring(j, "next_cursor", page->next_cursor);
	stats_json_object_close(j);
}

/* The members of one set of counts (inside an open object), rates included. */
static void encode_counts(struct stats_json *j, const struct stats_counts *c)
{
	struct stats_rates r = stats_encode_rates(c);
	stats_json_member_uint(j, "received", c->received);
	stats_json_member_uint(j, "delivered", c->delivered);
	stats_json_member_uint(j, "deferred", c->deferred);
	stats_json_member_uint(j, "bounced", c->bounced_hard + c->bounced_soft + c->bounced_block);
	stats_json_member_uint(j, "bounced_hard", c->bounced_hard);
	stats_json_member_uint(j, "bounced_soft", c->bounced_soft);
	stats_json_member_uint(j, "bounced_block", c->bounced_block);
	stats_json_member_uint(j, "complained", c->complained);
	stats_json_member_uint(j, "suppressed", c->suppressed);
	stats_json_member_uint(j, "expired", c->expired);
	stats_json_key(j, "rates");
	stats_json_object_open(j);
	stats_json_member_double(j, "delivery", r.delivery);
	stats_json_member_double(j, "bounce", r.bounce);
	stats_json_member_double(j, "complaint", r.complaint);
	stats_json_object_close(j);
}

static void add_counts(struct stats_counts *sum, const struct stats_counts *c)
{
	sum->received += c->received;
	sum->delivered += c->delivered;
	sum->deferred += c->deferred;
	sum->bounced_hard += c->bounced_hard;
	sum->bounced_soft += c->bounced_soft;
	sum->bounced_block += c->bounced_block;
	sum->complained += c->complained;
	sum->suppressed += c->suppressed;
	sum->expired += c->expired;
}

void stats_encode_series(struct stats_json *j, const struct stats_series_query *q,
                         const struct stats_series_set *set)
{
	stats_json_object_open(j);
	member_time(j, "from", q->from_s * 1000);
	member_time(j, "to", q->to_s * 1000);
	stats_json_member_cstring(j, "step", stats_request_step_name(q->step));
	stats_json_member_cstring(j, "by", stats_request_by_name(q->by));
	stats_json_key(j, "series");
	stats_json_array_open(j);
	for (size_t s = 0; s < set->nseries; s++) {
		const struct stats_series *series = &set->series[s];
		struct stats_counts total = {0};
		for (size_t b = 0; b < series->nbuckets; b++)
			add_counts(&total, &series->buckets[b].counts);
		stats_json_object_open(j);
		stats_json_member_cstring(j, "key", series->key);
		stats_json_key(j, "totals");
		stats_json_object_open(j);
		encode_counts(j, &total);
		stats_json_object_close(j);
		stats_json_key(j, "buckets");
		stats_json_array_open(j);
		for (size_t b = 0; b < series->nbuckets; b++) {
			stats_json_object_open(j);
			member_time(j, "time", series->buckets[b].start_s * 1000);
			encode_counts(j, &series->buckets[b].counts);
			stats_json_object_close(j);
		}
		stats_json_array_close(j);
		stats_json_object_close(j);
	}
	stats_json_array_close(j);
	stats_json_object_close(j);
}

void stats_encode_queue(struct stats_json *j, const struct stats_queue *q)
{
	uint64_t down = 0;
	for (size_t i = 0; i < q->nsites; i++)
		down += q->sites[i].down_s > 0;
	stats_json_object_open(j);
	stats_json_key(j, "totals");
	stats_json_object_open(j);
	stats_json_member_uint(j, "scheduled", q->scheduled);
	stats_json_member_uint(j, "ready", q->ready);
	stats_json_member_uint(j, "leased", q->leased);
	stats_json_member_uint(j, "held", q->held);
	stats_json_member_uint(j, "dead", q->dead);
	stats_json_member_uint(j, "messages", q->messages);
	stats_json_member_uint(j, "recipients", q->recipients);
	stats_json_member_uint(j, "sites", q->nsites);
	stats_json_member_uint(j, "sites_down", down);
	stats_json_object_close(j);
	stats_json_key(j, "oldest_age_s");
	if (q->oldest_age_s >= 0)
		stats_json_int(j, q->oldest_age_s);
	else
		stats_json_null(j);
	stats_json_key(j, "sites");
	stats_json_array_open(j);
	for (size_t i = 0; i < q->nsites; i++) {
		const struct stats_site *s = &q->sites[i];
		stats_json_object_open(j);
		stats_json_member_cstring(j, "name", s->name);
		stats_json_member_uint(j, "ready", s->ready);
		stats_json_member_uint(j, "leased", s->leased);
		stats_json_member_int(j, "down_s", s->down_s);
		stats_json_member_bool(j, "held", s->held);
		stats_json_member_bool(j, "rate_limited", s->rate_limited);
		stats_json_member_int(j, "rate_wait_ms", s->rate_wait_ms);
		stats_json_object_close(j);
	}
	stats_json_array_close(j);
	stats_json_object_close(j);
}
