/*
 * metrics.c: process-shared Prometheus metrics (see metrics.h). Owns one MAP_SHARED anonymous
 * mapping: a header with the layout, then one row of 64-bit atomic cells per worker and a
 * retired row. Rows are padded to 64 octets so that two workers never share a cache line.
 * Renders the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).
 */
#include "stats/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/buffer.h>

#include "relay/log.h"
#include "stats/json.h"

#define WORKERS_MAX      1024
#define HIST_BUCKETS_MAX 16
#define CELLS_PER_LINE   8 /* 64-octet cache line of int64 cells */

enum metric_type { TYPE_COUNTER, TYPE_GAUGE };

struct label_set {
	const char *name;
	unsigned count;
	const char *const *values;
};

static const char *const listener_values[] = {"submission", "smtps", "bounce"};
static const char *const result_values[] = {"accepted", "rejected", "tempfail"};
static const char *const outcome_values[] = {"delivered", "deferred", "bounced", "expired"};
static const char *const class_values[] = {"hard", "soft", "block", "complaint", "ignore"};
static const char *const code_values[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

static const struct label_set no_label = {NULL, 1, NULL};
static const struct label_set listener_label = {"listener", STATS_LISTENER_COUNT, listener_values};
static const struct label_set result_label = {"result", STATS_SUBMISSION_COUNT, result_values};
static const struct label_set outcome_label = {"outcome", STATS_OUTCOME_COUNT, outcome_values};
static const struct label_set class_label = {"class", STATS_CLASS_COUNT, class_values};
static const struct label_set code_label = {"code", STATS_CODE_COUNT, code_values};

struct metric_def {
	const char *name;
	const char *help;
	enum metric_type type;
	const struct label_set *label;
};

/* In enum stats_metric order. */
static const struct metric_def metric_defs[STATS_METRIC_COUNT] = {
    {"postino_smtp_sessions_total", "SMTP sessions accepted.", TYPE_COUNTER, &listener_label},
    {"postino_smtp_sessions_active", "SMTP sessions open now.", TYPE_GAUGE, &listener_label},
    {"postino_submissions_total", "Messages submitted, by the reply to DATA.", TYPE_COUNTER,
     &result_label},
    {"postino_recipients_received_total", "Recipients of accepted messages.", TYPE_COUNTER,
     &no_label},
    {"postino_deliveries_total", "Delivery attempts to one recipient, by outcome.", TYPE_COUNTER,
     &outcome_label},
    {"postino_bounces_total", "Bounces and complaints, by class.", TYPE_COUNTER, &class_label},
    {"postino_tls_handshake_failures_total", "TLS handshakes that failed.", TYPE_COUNTER,
     &no_label},
    {"postino_auth_failures_total", "SMTP AUTH attempts that failed.", TYPE_COUNTER, &no_label},
    {"postino_redis_errors_total", "Redis requests that failed or timed out.", TYPE_COUNTER,
     &no_label},
    {"postino_outbound_connections_active", "Outbound SMTP connections open now.", TYPE_GAUGE,
     &no_label},
    {"postino_http_requests_total", "HTTP API requests answered, by status class.", TYPE_COUNTER,
     &code_label},
};

struct hist_def {
	const char *name;
	const char *help;
	unsigned nbounds;
	double bounds[HIST_BUCKETS_MAX]; /* upper bounds, increasing; +Inf is implied */
};

/* In enum stats_histogram order. */
static const struct hist_def hist_defs[STATS_HIST_COUNT] = {
    {"postino_sign_seconds",
     "Time to DKIM-sign one message, waiting for a signing thread included.",
     13,
     {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}},
    {"postino_redis_request_seconds",
     "Time from sending a Redis request to its answer.",
     14,
     {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}},
};

struct stats_metrics {
	size_t bytes;
	int workers;
	size_t stride; /* cells per row */
	/* first cell of each metric in a row; a histogram has nbounds + 1 buckets then its sum in
	 * nanoseconds */
	size_t metric_at[STATS_METRIC_COUNT];
	size_t hist_at[STATS_HIST_COUNT];
	_Atomic int64_t cells[]; /* (workers + 1) rows; the last is the retired row */
};

static _Atomic int64_t *row(const struct stats_metrics *m, int r)
{
	/* the cells are shared and written through atomics only: the const of m is the
	 * layout's */
	return (_Atomic int64_t *)(uintptr_t)&m->cells[(size_t)r * m->stride];
}

struct stats_metrics *stats_metrics_new(int workers)
{
	if (workers < 1 || workers > WORKERS_MAX) {
		log_error(0, "event=stats_metrics_new workers=%d error=out_of_range", workers);
		return NULL;
	}
	size_t metric_at[STATS_METRIC_COUNT], hist_at[STATS_HIST_COUNT], cells = 0;
	for (int i = 0; i < STATS_METRIC_COUNT; i++) {
		metric_at[i] = cells;
		cells += metric_defs[i].label->count;
	}
	for (int i = 0; i < STATS_HIST_COUNT; i++) {
		hist_at[i] = cells;
		cells += hist_defs[i].nbounds + 2; /* the buckets, +Inf, the sum */
	}
	size_t stride = (cells + CELLS_PER_LINE - 1) / CELLS_PER_LINE * CELLS_PER_LINE;
	size_t bytes =
	    sizeof(struct stats_metrics) + (size_t)(workers + 1) * stride * sizeof(int64_t);
	struct stats_metrics *m =
	    mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		log_error(0, "event=stats_metrics_new call=mmap failed");
		return NULL;
	}
	m->bytes = bytes; /* the kernel zero-fills: every cell starts at 0 */
	m->workers = workers;
	m->stride = stride;
	memcpy(m->metric_at, metric_at, sizeof metric_at);
	memcpy(m->hist_at, hist_at, sizeof hist_at);
	return m;
}

void stats_metrics_free(struct stats_metrics *m)
{
	if (m != NULL)
		munmap(m, m->bytes);
}

static bool valid_cell(const struct stats_metrics *m, int worker, enum stats_metric id,
                       unsigned label)
{
	return m != NULL && worker >= 0 && worker < m->workers &&
	       (unsigned)id < STATS_METRIC_COUNT && label < metric_defs[id].label->count;
}

int stats_metrics_add(struct stats_metrics *m, int worker, enum stats_metric id, unsigned label,
                      int64_t delta)
{
	if (!valid_cell(m, worker, id, label) ||
	    (metric_defs[id].type == TYPE_COUNTER && delta < 0))
		return -1;
	atomic_fetch_add_explicit(&row(m, worker)[m->metric_at[id] + label], delta,
	                          memory_order_relaxed);
	return 0;
}

int stats_metrics_set(struct stats_metrics *m, int worker, enum stats_metric id, unsigned label,
                      int64_t value)
{
	if (!valid_cell(m, worker, id, label) || metric_defs[id].type != TYPE_GAUGE)
		return -1;
	atomic_store_explicit(&row(m, worker)[m->metric_at[id] + label], value,
	                      memory_order_relaxed);
	return 0;
}

int stats_metrics_observe(struct stats_metrics *m, int worker, enum stats_histogram id,
                          double seconds)
{
	if (m == NULL || worker < 0 || worker >= m->workers || (unsigned)id >= STATS_HIST_COUNT ||
	    isnan(seconds))
		return -1;
	if (seconds < 0)
		seconds = 0; /* a clock stepped back */
	if (seconds > STATS_HIST_SECONDS_MAX)
		seconds = STATS_HIST_SECONDS_MAX;
	const struct hist_def *h = &hist_defs[id];
	unsigned b = 0;
	while (b < h->nbounds && seconds > h->bounds[b])
		b++;
	_Atomic int64_t *cells = row(m, worker) + m->hist_at[id];
	atomic_fetch_add_explicit(&cells[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&cells[h->nbounds + 1], (int64_t)llround(seconds * 1e9),
	                          memory_order_relaxed);
	return 0;
}

void stats_metrics_retire_worker(struct stats_metrics *m, int worker)
{
	if (m == NULL || worker < 0 || worker >= m->workers)
		return;
	_Atomic int64_t *dead = row(m, worker), *retired = row(m, m->workers);
	for (int i = 0; i < STATS_METRIC_COUNT; i++) {
		for (unsigned l = 0; l < metric_defs[i].label->count; l++) {
			size_t c = m->metric_at[i] + l;
			int64_t v = atomic_exchange_explicit(&dead[c], 0, memory_order_relaxed);
			if (metric_defs[i].type == TYPE_COUNTER)
				atomic_fetch_add_explicit(&retired[c], v, memory_order_relaxed);
		}
	}
	for (int i = 0; i < STATS_HIST_COUNT; i++) {
		for (unsigned b = 0; b < hist_defs[i].nbounds + 2; b++) {
			size_t c = m->hist_at[i] + b;
			int64_t v = atomic_exchange_explicit(&dead[c], 0, memory_order_relaxed);
			atomic_fetch_add_explicit(&retired[c], v, memory_order_relaxed);
		}
	}
}

/* Sum of one cell over every row (the retired row holds only counters and histograms). */
static int64_t cell_sum(const struct stats_metrics *m, size_t c)
{
	int64_t sum = 0;
	for (int r = 0; r <= m->workers; r++)
		sum += atomic_load_explicit(&row(m, r)[c], memory_order_relaxed);
	return sum;
}

int64_t stats_metrics_value(const struct stats_metrics *m, enum stats_metric id, unsigned label)
{
	if (m == NULL || (unsigned)id >= STATS_METRIC_COUNT ||
	    label >= metric_defs[id].label->count)
		return 0;
	return cell_sum(m, m->metric_at[id] + label);
}

uint64_t stats_metrics_hist_count(const struct stats_metrics *m, enum stats_histogram id)
{
	if (m == NULL || (unsigned)id >= STATS_HIST_COUNT)
		return 0;
	uint64_t n = 0;
	for (unsigned b = 0; b <= hist_defs[id].nbounds; b++)
		n += (uint64_t)cell_sum(m, m->hist_at[id] + b);
	return n;
}

unsigned stats_metrics_code_class(int status)
{
	if (status < 100 || status > 599)
		return STATS_CODE_5XX;
	return (unsigned)(status / 100 - 1);
}

/* ---- rendering ---- */

/* Appends s with the escapes of a HELP text (\\ and \n) or, when label, of a label value
 * (\\, \" and \n); invalid UTF-8 becomes U+FFFD and other control bytes a space. */
static int put_escaped(struct evbuffer *out, const char *s, bool label)
{
	size_t n = strlen(s), start = 0, i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		size_t used = 1, bad;
		if (c == '\\')
			esc = "\\\\";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '"' && label)
			esc = "\\\"";
		else if (c < 0x20 || c == 0x7f)
			esc = " ";
		else if (c >= 0x80 && (used = stats_json_utf8_sequence(s + i, n - i, &bad)) == 0) {
			used = bad;
			esc = "\xef\xbf\xbd";
		}
		if (esc != NULL) {
			if (evbuffer_add(out, s + start, i - start) == -1 ||
			    evbuffer_add(out, esc, strlen(esc)) == -1)
				return -1;
			start = i + used;
		}
		i += used;
	}
	return evbuffer_add(out, s + start, n - start);
}

static int put_header(struct evbuffer *out, const char *name, const char *help, const char *type)
{
	if (evbuffer_add_printf(out, "# HELP %s ", name) == -1 ||
	    put_escaped(out, help, false) == -1 ||
	    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type) == -1)
		return -1;
	return 0;
}

static int render_metric(const struct stats_metrics *m, int id, struct evbuffer *out)
{
	const struct metric_def *d = &metric_defs[id];
	if (put_header(out, d->name, d->help, d->type == TYPE_COUNTER ? "counter" : "gauge") == -1)
		return -1;
	for (unsigned l = 0; l < d->label->count; l++) {
		int64_t v = cell_sum(m, m->metric_at[id] + l);
		int rc = d->label->name == NULL
		             ? evbuffer_add_printf(out, "%s %" PRId64 "\n", d->name, v)
		             : evbuffer_add_printf(out, "%s{%s=\"%s\"} %" PRId64 "\n", d->name,
		                                   d->label->name, d->label->values[l], v);
		if (rc == -1)
			return -1;
	}
	return 0;
}

static int render_hist(const struct stats_metrics *m, int id, struct evbuffer *out)
{
	const struct hist_def *h = &hist_defs[id];
	char num[STATS_JSON_NUMBER_MAX];
	int64_t cumulative = 0;
	if (put_header(out, h->name, h->help, "histogram") == -1)
		return -1;
	for (unsigned b = 0; b <= h->nbounds; b++) {
		cumulative += cell_sum(m, m->hist_at[id] + b);
		const char *le =
		    b < h->nbounds ? stats_json_double_format(h->bounds[b], num) : "+Inf";
		if (evbuffer_add_printf(out, "%s_bucket{le=\"%s\"} %" PRId64 "\n", h->name, le,
		                        cumulative) == -1)
			return -1;
	}
	double sum = (double)cell_sum(m, m->hist_at[id] + h->nbounds + 1) / 1e9;
	if (evbuffer_add_printf(out, "%s_sum %s\n%s_count %" PRId64 "\n", h->name,
	                        stats_json_double_format(sum, num), h->name, cumulative) == -1)
		return -1;
	return 0;
}

/* Prometheus' metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, without colons, label name. */
static bool valid_name(const char *s, bool colon)
{
	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || (colon && c == ':')))
			return false;
	}
	return true;
}

/* True when name is one of the table's metrics (a second header would make the text
 * invalid). */
static bool table_name(const char *name)
{
	for (int i = 0; i < STATS_METRIC_COUNT; i++)
		if (strcmp(name, metric_defs[i].name) == 0)
			return true;
	for (int i = 0; i < STATS_HIST_COUNT; i++)
		if (strncmp(name, hist_defs[i].name, strlen(hist_defs[i].name)) == 0)
			return true;
	return false;
}

static bool valid_gauge(const struct stats_gauge *g)
{
	return valid_name(g->name, true) && !table_name(g->name) &&
	       (g->label == NULL || (valid_name(g->label, false) &&
	                             strncmp(g->label, "__", 2) != 0 && g->label_value != NULL));
}

static int render_value(struct evbuffer *out, double v)
{
	char num[STATS_JSON_NUMBER_MAX];
	if (isnan(v))
		return evbuffer_add_printf(out, " NaN\n");
	if (isinf(v))
		return evbuffer_add_printf(out, " %cInf\n", v > 0 ? '+' : '-');
	return evbuffer_add_printf(out, " %s\n", stats_json_double_format(v, num));
}

/* Every valid extra gauge named like extra[first], in their order, under one header. */
static int render_extra_group(const struct stats_gauge *extra, size_t n, size_t first,
                              struct evbuffer *out)
{
	const char *name = extra[first].name;
	if (put_header(out, name, extra[first].help != NULL ? extra[first].help : "", "gauge") ==
	    -1)
		return -1;
	for (size_t i = first; i < n; i++) {
		const struct stats_gauge *g = &extra[i];
		if (!valid_gauge(g) || strcmp(g->name, name) != 0)
			continue;
		if (evbuffer_add_printf(out, "%s", name) == -1)
			return -1;
		if (g->label != NULL && (evbuffer_add_printf(out, "{%s=\"", g->label) == -1 ||
		                         put_escaped(out, g->label_value, true) == -1 ||
		                         evbuffer_add(out, "\"}", 2) == -1))
			return -1;
		if (render_value(out, g->value) == -1)
			return -1;
	}
	return 0;
}

int stats_metrics_render(const struct stats_metrics *m, const struct stats_gauge *extra,
                         size_t nextra, struct evbuffer *out)
{
	if (m != NULL) {
		for (int i = 0; i < STATS_METRIC_COUNT; i++)
			if (render_metric(m, i, out) == -1)
				return -1;
		for (int i = 0; i < STATS_HIST_COUNT; i++)
			if (render_hist(m, i, out) == -1)
				return -1;
	}
	if (nextra > STATS_METRICS_EXTRA_MAX) {
		log_warn(0, "event=stats_metrics_render extra=%zu max=%d error=too_many", nextra,
		         STATS_METRICS_EXTRA_MAX);
		nextra = STATS_METRICS_EXTRA_MAX;
	}
	for (size_t i = 0; i < nextra; i++) {
		if (!valid_gauge(&extra[i]))
			continue;
		bool seen = false; /* the name's group was rendered at its first valid entry */
		for (size_t k = 0; k < i && !seen; k++)
			seen = valid_gauge(&extra[k]) && strcmp(extra[k].name, extra[i].name) == 0;
		if (!seen && render_extra_group(extra, nextra, i, out) == -1)
			return -1;
	}
	return 0;
}
