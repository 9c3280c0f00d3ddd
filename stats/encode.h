/*
 * encode.h: the HTTP API's JSON documents, from the provider's results (stats/provider.h).
 * Pure: each function writes one complete document with the JSON writer (stats/json.h), whose
 * sticky error the caller checks once with stats_json_finish(). Times are RFC 3339 strings in
 * UTC ("2024-05-01T12:00:00Z", milliseconds when not whole), null when unknown; counts are
 * integers; rates are numbers from 0 to 1, null when their denominator is 0.
 *
 * Documents (the reference the dashboard and README follow):
 *   error:   {"error":"bad_parameter","reason":"...","parameter":"limit"}  (parameter optional)
 *   event:   {"type","time","id","rcpt","user","campaign","attempt","host","reply","tls",
 *             "reason","class"}
 *   message: {"id","user","sender","campaign","tags":[],"received","size",
 *             "recipients":[{"rcpt","state","attempts","next_attempt","last_attempt",
 *             "last_reply","host","tls","reason","class"}],"events":[event...]}
 *   events:  {"events":[event...],"next_cursor":null|"..."}
 *   stats:   {"from","to","step","by","series":[{"key","totals":counts,"buckets":[counts
 *             with "time"]}]}, counts = {"received","delivered","deferred","bounced",
 *             "bounced_hard","bounced_soft","bounced_block","complained","suppressed",
 *             "expired","rates":{"delivery","bounce","complaint"}}
 *   queue:   {"totals":{"scheduled","ready","leased","held","dead","messages","recipients",
 *             "sites","sites_down"},"oldest_age_s","sites":[{"name","ready","leased",
 *             "down_s","held","rate_limited","rate_wait_ms"}]}
 */
#ifndef POSTINO_STATS_ENCODE_H
#define POSTINO_STATS_ENCODE_H

#include "stats/json.h"
#include "stats/provider.h"

/*
 * Rates of a set of counts, each NaN when its denominator is 0:
 *   delivery  = delivered / (delivered + bounced + expired)
 *   bounce    = bounced / (delivered + bounced), bounced = hard + soft + block: the share of
 *               sent mail the receivers refused, as mailbox providers and ESPs count it
 *   complaint = complained / delivered: Gmail's "spam rate" is reports over mail delivered
 */
struct stats_rates {
	double delivery;
	double bounce;
	double complaint;
};
struct stats_rates stats_encode_rates(const struct stats_counts *c);

void stats_encode_error(struct stats_json *j, const char *error, const char *reason,
                        const char *parameter);
void stats_encode_message(struct stats_json *j, const struct stats_message *m);
void stats_encode_events(struct stats_json *j, const struct stats_event_page *page);
/* q gives "from", "to", "step" and "by" (the ranges as they were asked, rounded). */
void stats_encode_series(struct stats_json *j, const struct stats_series_query *q,
                         const struct stats_series_set *set);
void stats_encode_queue(struct stats_json *j, const struct stats_queue *q);

#endif
