/*
 * metrics.c: the registry and its text rendering. See metrics.h.
 *
 * The exposition format (Prometheus text format 0.0.4):
 *   # HELP name text          (text escapes \\ and \n)
 *   # TYPE name counter|gauge|histogram
 *   name{label="value",...} value
 * Histograms render name_bucket{...,le="bound"} with cumulative counts,
 * the le="+Inf" bucket equal to name_count, then name_sum and name_count.
 */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

#define MX_HASH_BUCKETS 128 /* per family; chains stay short below SERIES_MAX */

struct mx_series {
	struct mx_series *next;  /* creation order */
	struct mx_series *hnext; /* hash chain */
	uint64_t hash;
	char *values[METRICS_LABELS_MAX];
	double value;            /* counter, gauge */
	uint64_t *counts;        /* histogram: per bucket, not cumulative */
	uint64_t count;
	double sum;
};

struct metrics_family {
	struct metrics_family *next;
	enum metrics_type type;
	char *name, *help;
	size_t nlabels;
	char *labels[METRICS_LABELS_MAX];
	double buckets[METRICS_BUCKETS_MAX];
	size_t nbuckets;
	struct mx_series *first, **tail;
	struct mx_series *hash[MX_HASH_BUCKETS];
	size_t nseries;
};

struct mx_collector {
	metrics_collect_fn fn;
	void *arg;
};

struct metrics {
	struct metrics_family *first, **tail;
	struct mx_collector collectors[METRICS_COLLECTORS_MAX];
	size_t ncollectors;
};

/* ---- registry ------------------------------------------------------------ */

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (m)
		m->tail = &m->first;
	return m;
}

static void mx_series_free(struct mx_series *s)
{
	for (size_t i = 0; i < METRICS_LABELS_MAX; i++)
		free(s->values[i]);
	free(s->counts);
	free(s);
}

static void mx_family_drop_series(struct metrics_family *f)
{
	struct mx_series *s, *next;

	for (s = f->first; s; s = next) {
		next = s->next;
		mx_series_free(s);
	}
	f->first = NULL;
	f->tail = &f->first;
	memset(f->hash, 0, sizeof(f->hash));
	f->nseries = 0;
}

static void mx_family_free(struct metrics_family *f)
{
	mx_family_drop_series(f);
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f);
}

void metrics_free(struct metrics *m)
{
	struct metrics_family *f, *next;

	if (!m)
		return;
	for (f = m->first; f; f = next) {
		next = f->next;
		mx_family_free(f);
	}
	free(m);
}

static bool mx_name_ok(const char *s, bool colon)
{
	if (!s || !*s)
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     c == '_' || (colon && c == ':');
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

static struct metrics_family *mx_find(const struct metrics *m, const char *name)
{
	for (struct metrics_family *f = m->first; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static struct mx_series *mx_series_get(struct metrics_family *f,
				       const char *const *values, int *err);

struct metrics_family *metrics_register(struct metrics *m, enum metrics_type type,
					const char *name, const char *help,
					const char *const *labels,
					const double *buckets, size_t nbuckets)
{
	struct metrics_family *f;
	size_t n = 0;
	int err;

	if (!m || !mx_name_ok(name, true) || mx_find(m, name))
		return NULL;
	if (type != METRICS_COUNTER && type != METRICS_GAUGE &&
	    type != METRICS_HISTOGRAM)
		return NULL;
	for (; labels && labels[n]; n++) {
		if (n == METRICS_LABELS_MAX || !mx_name_ok(labels[n], false) ||
		    strncmp(labels[n], "__", 2) == 0 ||
		    (type == METRICS_HISTOGRAM && strcmp(labels[n], "le") == 0))
			return NULL;
		for (size_t j = 0; j < n; j++)
			if (strcmp(labels[j], labels[n]) == 0)
				return NULL;
	}
	if (type == METRICS_HISTOGRAM) {
		if (!buckets || nbuckets == 0 || nbuckets > METRICS_BUCKETS_MAX)
			return NULL;
		for (size_t i = 0; i < nbuckets; i++)
			if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1]))
				return NULL;
	} else if (buckets || nbuckets) {
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->type = type;
	f->tail = &f->first;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->nlabels = n;
	for (size_t i = 0; i < n; i++)
		if (!(f->labels[i] = strdup(labels[i])))
			goto fail;
	if (!f->name || !f->help)
		goto fail;
	if (type == METRICS_HISTOGRAM)
		memcpy(f->buckets, buckets, nbuckets * sizeof(*buckets));
	f->nbuckets = type == METRICS_HISTOGRAM ? nbuckets : 0;
	/* A family without labels is one series, visible from the start. */
	if (n == 0 && !mx_series_get(f, NULL, &err))
		goto fail;
	*m->tail = f;
	m->tail = &f->next;
	return f;
fail:
	mx_family_free(f);
	return NULL;
}

/* ---- series ---------------------------------------------------------------- */

static uint64_t mx_hash(const struct metrics_family *f, const char *const *values)
{
	uint64_t h = hmap_hash_bytes("", 0);

	for (size_t i = 0; i < f->nlabels; i++) {
		/* the NUL separates values: ("ab","c") differs from ("a","bc") */
		h ^= hmap_hash_bytes(values[i], strlen(values[i]) + 1);
		h = hmap_hash_u64(h + i);
	}
	return h;
}

static bool mx_same(const struct metrics_family *f, const struct mx_series *s,
		    const char *const *values)
{
	for (size_t i = 0; i < f->nlabels; i++)
		if (strcmp(s->values[i], values[i]) != 0)
			return false;
	return true;
}

/* The series for values, created when absent. NULL with *err set when the
 * values are unusable, the family is full, or out of memory. */
static struct mx_series *mx_series_get(struct metrics_family *f,
				       const char *const *values, int *err)
{
	struct mx_series *s;
	uint64_t h;
	size_t b;

	for (size_t i = 0; i < f->nlabels; i++) {
		if (!values || !values[i]) {
			*err = DG_EINVAL;
			return NULL;
		}
		if (strlen(values[i]) > METRICS_VALUE_MAX) {
			*err = DG_ETOOBIG;
			return NULL;
		}
	}
	h = mx_hash(f, values);
	b = h % MX_HASH_BUCKETS;
	for (s = f->hash[b]; s; s = s->hnext)
		if (s->hash == h && mx_same(f, s, values))
			return s;
	if (f->nseries >= METRICS_SERIES_MAX) {
		*err = DG_ETOOBIG;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto nomem;
	s->hash = h;
	for (size_t i = 0; i < f->nlabels; i++) {
		if (!(s->values[i] = strdup(values[i]))) {
			mx_series_free(s);
			goto nomem;
		}
	}
	if (f->type == METRICS_HISTOGRAM &&
	    !(s->counts = calloc(f->nbuckets, sizeof(*s->counts)))) {
		mx_series_free(s);
		goto nomem;
	}
	s->hnext = f->hash[b];
	f->hash[b] = s;
	*f->tail = s;
	f->tail = &s->next;
	f->nseries++;
	return s;
nomem:
	*err = DG_ENOMEM;
	return NULL;
}

int metrics_add(struct metrics_family *f, const char *const *values, double v)
{
	struct mx_series *s;
	int err = 0;

	if (!f)
		return 0;
	if (f->type == METRICS_HISTOGRAM ||
	    (f->type == METRICS_COUNTER && !(v >= 0 && isfinite(v))))
		return DG_EINVAL;
	if (!(s = mx_series_get(f, values, &err)))
		return err;
	s->value += v;
	return 0;
}

int metrics_set(struct metrics_family *f, const char *const *values, double v)
{
	struct mx_series *s;
	int err = 0;

	if (!f)
		return 0;
	if (f->type != METRICS_GAUGE)
		return DG_EINVAL;
	if (!(s = mx_series_get(f, values, &err)))
		return err;
	s->value = v;
	return 0;
}

int metrics_observe(struct metrics_family *f, const char *const *values, double v)
{
	struct mx_series *s;
	size_t i;
	int err = 0;

	if (!f)
		return 0;
	if (f->type != METRICS_HISTOGRAM || isnan(v))
		return DG_EINVAL;
	if (!(s = mx_series_get(f, values, &err)))
		return err;
	/* Bucket i counts v <= buckets[i] (and > buckets[i-1]); larger
	 * values only reach +Inf, which is count. */
	for (i = 0; i < f->nbuckets && v > f->buckets[i]; i++)
		;
	if (i < f->nbuckets)
		s->counts[i]++;
	s->count++;
	s->sum += v;
	return 0;
}

double metrics_get(const struct metrics_family *f, const char *const *values)
{
	const struct mx_series *s;
	uint64_t h;

	if (!f)
		return 0;
	for (size_t i = 0; i < f->nlabels; i++)
		if (!values || !values[i])
			return 0;
	h = mx_hash(f, values);
	for (s = f->hash[h % MX_HASH_BUCKETS]; s; s = s->hnext)
		if (s->hash == h && mx_same(f, s, values))
			return f->type == METRICS_HISTOGRAM ? (double)s->count : s->value;
	return 0;
}

void metrics_clear(struct metrics_family *f)
{
	if (!f)
		return;
	if (f->nlabels) {
		mx_family_drop_series(f);
		return;
	}
	f->first->value = 0;
	f->first->count = 0;
	f->first->sum = 0;
	if (f->first->counts)
		memset(f->first->counts, 0, f->nbuckets * sizeof(*f->first->counts));
}

int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *arg)
{
	if (!m || !fn)
		return DG_EINVAL;
	if (m->ncollectors == METRICS_COLLECTORS_MAX)
		return DG_ETOOBIG;
	m->collectors[m->ncollectors].fn = fn;
	m->collectors[m->ncollectors].arg = arg;
	m->ncollectors++;
	return 0;
}

/* ---- rendering --------------------------------------------------------------- */

struct mx_buf {
	char *p;
	size_t len, cap;
	bool nomem;
};

static void mx_put(struct mx_buf *b, const char *s, size_t n)
{
	if (b->nomem)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 4096;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		char *p = realloc(b->p, ncap);
		if (!p) {
			b->nomem = true;
			return;
		}
		b->p = p;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void mx_puts(struct mx_buf *b, const char *s)
{
	mx_put(b, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also the double
 * quote (format 0.0.4). Other control characters would break a line-based
 * reader: they become '?'. */
static void mx_escaped(struct mx_buf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\\')
			mx_put(b, "\\\\", 2);
		else if (c == '\n')
			mx_put(b, "\\n", 2);
		else if (c == '"' && quote)
			mx_put(b, "\\\"", 2);
		else if (c < 0x20 || c == 0x7f)
			mx_put(b, "?", 1);
		else
			mx_put(b, (const char *)&c, 1);
	}
}

char *metrics_format_value(double v, char buf[32])
{
	if (isnan(v)) {
		strcpy(buf, "NaN");
	} else if (isinf(v)) {
		strcpy(buf, v > 0 ? "+Inf" : "-Inf");
	} else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(buf, 32, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
	} else {
		for (int prec = 1; prec <= 17; prec++) {
			snprintf(buf, 32, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	return buf;
}

/* name{labels[,le="x"]} value\n; le is NULL outside histogram buckets. */
static void mx_sample(struct mx_buf *b, const struct metrics_family *f,
		      const char *suffix, const struct mx_series *s,
		      const char *le, double v)
{
	char num[32];

	mx_puts(b, f->name);
	mx_puts(b, suffix);
	if (f->nlabels || le) {
		mx_put(b, "{", 1);
		for (size_t i = 0; i < f->nlabels; i++) {
			if (i)
				mx_put(b, ",", 1);
			mx_puts(b, f->labels[i]);
			mx_put(b, "=\"", 2);
			mx_escaped(b, s->values[i], true);
			mx_put(b, "\"", 1);
		}
		if (le) {
			if (f->nlabels)
				mx_put(b, ",", 1);
			mx_puts(b, "le=\"");
			mx_puts(b, le);
			mx_put(b, "\"", 1);
		}
		mx_put(b, "}", 1);
	}
	mx_put(b, " ", 1);
	mx_puts(b, metrics_format_value(v, num));
	mx_put(b, "\n", 1);
}

static void mx_render_family(struct mx_buf *b, const struct metrics_family *f)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	char le[32];

	mx_puts(b, "# HELP ");
	mx_puts(b, f->name);
	mx_put(b, " ", 1);
	mx_escaped(b, f->help, false);
	mx_puts(b, "\n# TYPE ");
	mx_puts(b, f->name);
	mx_put(b, " ", 1);
	mx_puts(b, types[f->type]);
	mx_put(b, "\n", 1);
	for (const struct mx_series *s = f->first; s; s = s->next) {
		if (f->type != METRICS_HISTOGRAM) {
			mx_sample(b, f, "", s, NULL, s->value);
			continue;
		}
		uint64_t cum = 0;
		for (size_t i = 0; i < f->nbuckets; i++) {
			cum += s->counts[i];
			mx_sample(b, f, "_bucket", s,
				  metrics_format_value(f->buckets[i], le), (double)cum);
		}
		mx_sample(b, f, "_bucket", s, "+Inf", (double)s->count);
		mx_sample(b, f, "_sum", s, NULL, s->sum);
		mx_sample(b, f, "_count", s, NULL, (double)s->count);
	}
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
	struct mx_buf b = { NULL, 0, 0, false };

	*out = NULL;
	*len = 0;
	for (size_t i = 0; i < m->ncollectors; i++)
		m->collectors[i].fn(m, m->collectors[i].arg);
	mx_put(&b, "", 0);
	for (const struct metrics_family *f = m->first; f; f = f->next)
		mx_render_family(&b, f);
	if (b.nomem) {
		free(b.p);
		return DG_ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* ---- dotsgw's series ------------------------------------------------------------ */

/* Relay latency from 50 us (a loopback relay) to 10 s (an upstream that
 * takes its request-timeout's worth). */
static const double mx_latency_buckets[] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

int metrics_dots_init(struct metrics_dots *d, struct metrics *reg,
		      const char *version)
{
	static const char *const side_tr_state[] = { "side", "transport", "state", NULL };
	static const char *const req_labels[] = { "side", "resource", "method", "code", NULL };
	static const char *const side[] = { "side", NULL };
	static const char *const status[] = { "status", NULL };
	static const char *const upstream[] = { "upstream", NULL };
	static const char *const side_reason[] = { "side", "reason", NULL };
	static const char *const ver[] = { "version", NULL };

	memset(d, 0, sizeof(*d));
	d->reg = reg;
#define MX_REG(field, type, name, help, labels)                                 \
	if (!(d->field = metrics_register(reg, type, name, help, labels, NULL, 0))) \
		return DG_ENOMEM
	MX_REG(build_info, METRICS_GAUGE, "dotsgw_build_info",
	       "dotsgw version, always 1.", ver);
	MX_REG(sessions, METRICS_GAUGE, "dotsgw_sessions",
	       "Signal channel sessions by side (downstream: DOTS clients, upstream: DOTS servers), transport and state.",
	       side_tr_state);
	MX_REG(requests, METRICS_COUNTER, "dotsgw_requests_total",
	       "Signal channel requests by side, resource, method and response code: downstream, those the gateway answered (code none: dropped silently); upstream, those it sent and an upstream answered (code timeout: none did).",
	       req_labels);
	MX_REG(notifications, METRICS_COUNTER, "dotsgw_notifications_total",
	       "Observe notifications received from upstream servers (side upstream) and sent to clients (side downstream).",
	       side);
	MX_REG(mitigations, METRICS_GAUGE, "dotsgw_mitigations",
	       "Active mitigations by the status the upstream last reported (pending: none reported yet).",
	       status);
	MX_REG(upstream_up, METRICS_GAUGE, "dotsgw_upstream_up",
	       "1 when at least one session to the upstream is ready (configured and heartbeating), else 0.",
	       upstream);
	MX_REG(hb_missed, METRICS_COUNTER, "dotsgw_upstream_heartbeats_missed_total",
	       "Heartbeats an upstream did not answer within the heartbeat interval.",
	       upstream);
	MX_REG(hs_failures, METRICS_COUNTER, "dotsgw_handshake_failures_total",
	       "(D)TLS handshakes that did not complete, by side and reason.",
	       side_reason);
	MX_REG(dropped_bytes, METRICS_GAUGE, "dotsgw_mitigation_dropped_bytes",
	       "bytes-dropped last reported by the upstream, summed over active mitigations.",
	       upstream);
	MX_REG(dropped_packets, METRICS_GAUGE, "dotsgw_mitigation_dropped_packets",
	       "pkts-dropped last reported by the upstream, summed over active mitigations.",
	       upstream);
	MX_REG(dropped_bps, METRICS_GAUGE, "dotsgw_mitigation_dropped_bytes_per_second",
	       "bps-dropped last reported by the upstream, summed over active mitigations.",
	       upstream);
	MX_REG(dropped_pps, METRICS_GAUGE, "dotsgw_mitigation_dropped_packets_per_second",
	       "pps-dropped last reported by the upstream, summed over active mitigations.",
	       upstream);
#undef MX_REG
	d->relay_latency = metrics_register(reg, METRICS_HISTOGRAM,
		"dotsgw_relay_latency_seconds",
		"Time from a downstream request to the answer relayed from upstream.",
		NULL, mx_latency_buckets,
		sizeof(mx_latency_buckets) / sizeof(mx_latency_buckets[0]));
	if (!d->relay_latency)
		return DG_ENOMEM;
	return metrics_set(d->build_info, (const char *[]){ version ? version : "?" }, 1);
}

const char *metrics_dots_resource(const char *const *path, size_t npath)
{
	static const char *const known[] = { "mitigate", "config", "hb" };

	/* RFC 9132 §5: /.well-known/dots/<resource>[/...] */
	if (npath < 3 || strcmp(path[0], ".well-known") || strcmp(path[1], "dots"))
		return "other";
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(path[2], known[i]) == 0)
			return known[i];
	return "other";
}

const char *metrics_coap_method(int method)
{
	/* RFC 7252 §12.1.1, RFC 8132 §6 */
	static const char *const names[] = {
		"other", "GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH",
	};

	return method >= 1 && method <= 7 ? names[method] : "other";
}

char *metrics_coap_code(int code, char buf[8])
{
	if (code < 0 || code > 731 || code % 100 > 31)
		snprintf(buf, 8, "other");
	else
		snprintf(buf, 8, "%d.%02d", code / 100, code % 100);
	return buf;
}
