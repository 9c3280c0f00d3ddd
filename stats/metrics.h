/*
 * metrics.h: the process's Prometheus counters, gauges and latency histograms, shared by
 * every worker process. The master maps one table (anonymous shared memory) before fork; each
 * worker writes only its own row (one row per worker, relaxed atomics, so increments never
 * contend and a thread pool inside a worker may write too), and /metrics sums the rows when it
 * renders the text exposition format 0.0.4. When a worker dies, the master folds its counters
 * into a row of their own (stats_metrics_retire_worker) so that no counter ever goes down.
 *
 * Metrics are a fixed table (enum stats_metric, enum stats_histogram): names prefixed
 * "postino_", at most one label each, whose values come from a small fixed set (the enums
 * below), so the number of series is bounded. Data that lives in Redis (queue depth) is not
 * counted here: the caller passes it to stats_metrics_render as extra gauges.
 */
#ifndef POSTINO_STATS_METRICS_H
#define POSTINO_STATS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct stats_metrics;

/* Counters and gauges; the comment names the label (none: label index 0). */
enum stats_metric {
	STATS_METRIC_SMTP_SESSIONS_TOTAL,          /* counter, listener */
	STATS_METRIC_SMTP_SESSIONS_ACTIVE,         /* gauge, listener */
	STATS_METRIC_SUBMISSIONS_TOTAL,            /* counter, result */
	STATS_METRIC_RECIPIENTS_RECEIVED_TOTAL,    /* counter */
	STATS_METRIC_DELIVERIES_TOTAL,             /* counter, outcome */
	STATS_METRIC_BOUNCES_TOTAL,                /* counter, class */
	STATS_METRIC_TLS_HANDSHAKE_FAILURES_TOTAL, /* counter */
	STATS_METRIC_AUTH_FAILURES_TOTAL,          /* counter */
	STATS_METRIC_REDIS_ERRORS_TOTAL,           /* counter */
	STATS_METRIC_OUTBOUND_CONNECTIONS_ACTIVE,  /* gauge */
	STATS_METRIC_HTTP_REQUESTS_TOTAL,          /* counter, code */
	STATS_METRIC_COUNT
};

/* Latency histograms, in seconds. */
enum stats_histogram {
	STATS_HIST_SIGN_SECONDS,          /* DKIM signing of one message, queue wait included */
	STATS_HIST_REDIS_REQUEST_SECONDS, /* one Redis request, sent to answered */
	STATS_HIST_COUNT
};

/* Label values ("listener"). */
enum stats_listener {
	STATS_LISTENER_SUBMISSION, /* 587 and 2525, STARTTLS */
	STATS_LISTENER_SMTPS,      /* 465, implicit TLS */
	STATS_LISTENER_BOUNCE,     /* inbound DSN and ARF */
	STATS_LISTENER_COUNT
};

/* Label values ("result"): the reply to a submitted message's DATA. */
enum stats_submission_result {
	STATS_SUBMISSION_ACCEPTED, /* 250 */
	STATS_SUBMISSION_REJECTED, /* 5xx */
	STATS_SUBMISSION_TEMPFAIL, /* 4xx */
	STATS_SUBMISSION_COUNT
};

/* Label values ("outcome"): the end of one delivery attempt to one recipient. */
enum stats_outcome {
	STATS_OUTCOME_DELIVERED,
	STATS_OUTCOME_DEFERRED,
	STATS_OUTCOME_BOUNCED,
	STATS_OUTCOME_EXPIRED,
	STATS_OUTCOME_COUNT
};

/* Label values ("class"): DESIGN.md, Bounces. */
enum stats_bounce_class {
	STATS_CLASS_HARD,
	STATS_CLASS_SOFT,
	STATS_CLASS_BLOCK,
	STATS_CLASS_COMPLAINT,
	STATS_CLASS_IGNORE,
	STATS_CLASS_COUNT
};

/* Label values ("code"): an HTTP status's class. */
enum stats_code_class {
	STATS_CODE_1XX,
	STATS_CODE_2XX,
	STATS_CODE_3XX,
	STATS_CODE_4XX,
	STATS_CODE_5XX,
	STATS_CODE_COUNT
};

/* Histogram observations are clamped to [0, STATS_HIST_SECONDS_MAX] seconds. */
#define STATS_HIST_SECONDS_MAX 1e6
/* Extra gauges rendered at most (the rest are left out, and logged). */
#define STATS_METRICS_EXTRA_MAX 1024

/* A value the caller computed (from Redis) for one rendering. Strings borrowed for the call. */
struct stats_gauge {
	const char *name;        /* [a-zA-Z_:][a-zA-Z0-9_:]*, e.g. "postino_queue_depth" */
	const char *help;        /* one line; the first entry of a name gives it */
	const char *label;       /* NULL, or a label name [a-zA-Z_][a-zA-Z0-9_]* */
	const char *label_value; /* any text (escaped); used when label is set */
	double value;
};

/* The extra gauges the HTTP layer asks its provider for (stats/provider.h). */
#define STATS_GAUGE_QUEUE_DEPTH      "postino_queue_depth"
#define STATS_GAUGE_QUEUE_DEPTH_HELP "Recipients waiting in the queue, by state."

/*
 * Maps the shared table for `workers` rows (1..1024) plus the retired row. Call before fork;
 * every process then uses the same pointer. Returns NULL (logged) on failure.
 */
struct stats_metrics *stats_metrics_new(int workers);
/* Unmaps the table in this process. No-op on NULL. */
void stats_metrics_free(struct stats_metrics *m);

/*
 * Adds delta to a counter (delta >= 0) or a gauge (any sign) in worker's row. label is the
 * index of the metric's label value (an enum above), 0 for a metric without a label.
 * Returns 0, or -1 (nothing changed) when m is NULL or worker, id, label or delta is out of
 * range. Safe from any thread of the worker.
 */
int stats_metrics_add(struct stats_metrics *m, int worker, enum stats_metric id, unsigned label,
                      int64_t delta);
/* Sets a gauge's value in worker's row (the rendered value is the sum over workers). Returns
 * 0, or -1 as above and for a counter. */
int stats_metrics_set(struct stats_metrics *m, int worker, enum stats_metric id, unsigned label,
                      int64_t value);
/* Counts one observation of `seconds` (clamped, see STATS_HIST_SECONDS_MAX). Returns 0, or -1
 * when m is NULL, an index is out of range or seconds is NaN. */
int stats_metrics_observe(struct stats_metrics *m, int worker, enum stats_histogram id,
                          double seconds);

/*
 * Folds a dead worker's counters and histograms into the retired row and zeroes its row (its
 * gauges end at 0). Only for a worker that no longer runs (the master, after waitpid), or a
 * concurrent increment may be lost.
 */
void stats_metrics_retire_worker(struct stats_metrics *m, int worker);

/* Sum over every row of one counter or gauge value; 0 for a bad index. For tests and logs. */
int64_t stats_metrics_value(const struct stats_metrics *m, enum stats_metric id, unsigned label);
/* Observations of a histogram over every row. */
uint64_t stats_metrics_hist_count(const struct stats_metrics *m, enum stats_histogram id);

/* "http_requests_total"'s label index for an HTTP status (100..599; others count as 5xx). */
unsigned stats_metrics_code_class(int status);

/*
 * Appends the text exposition format 0.0.4 to out: for each metric "# HELP", "# TYPE", then its
 * samples (every label value, zeros included; histograms as cumulative _bucket{le=...} up to
 * le="+Inf", then _sum and _count), then the extra gauges grouped by name (help and type
 * written once per name; entries with an invalid name or label name, or named like a metric
 * of the table, are left out). m may be
 * NULL (extra gauges only). Returns 0, or -1 when out could not grow.
 */
int stats_metrics_render(const struct stats_metrics *m, const struct stats_gauge *extra,
                         size_t nextra, struct evbuffer *out);

#endif
