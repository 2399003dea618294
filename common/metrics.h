/*
 * metrics.h: a small registry of counters, gauges and histograms with
 * labels, and its rendering in the Prometheus text exposition format
 * 0.0.4. Sans I/O: the daemon (gateway/io_metrics.c) serves the text.
 *
 * A family is one metric name with a fixed list of label names; a series
 * is one combination of label values within it, created on first use.
 * Values are doubles (exact for counts below 2^53). Families render in
 * registration order, series in creation order.
 *
 * Collectors are callbacks run at the start of every metrics_render():
 * gauges that describe current state (sessions, mitigations) are computed
 * there from the objects themselves rather than kept in step by hooks, so
 * they cannot drift.
 *
 * Label values are any strings up to METRICS_VALUE_MAX bytes; rendering
 * escapes backslash, double quote and newline (the format's three
 * escapes) and replaces other control characters with '?'.
 *
 * Every function taking a family accepts NULL and then does nothing and
 * returns 0: a component without metrics passes NULL families around.
 *
 * The second half of this header names dotsgw's own series (struct
 * metrics_dots): one table in metrics.c defines them all.
 */
#ifndef DG_METRICS_H
#define DG_METRICS_H

#include "dg.h"

#define METRICS_LABELS_MAX 4
#define METRICS_VALUE_MAX 128    /* bytes of one label value */
#define METRICS_SERIES_MAX 2048  /* per family: bounds memory if labels run wild */
#define METRICS_BUCKETS_MAX 32
#define METRICS_COLLECTORS_MAX 4

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics;
struct metrics_family;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/*
 * Registers a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*; labels: NULL or a
 * NULL-terminated list of at most METRICS_LABELS_MAX names
 * ([a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed, "le" not on histograms);
 * buckets: histograms only, 1..METRICS_BUCKETS_MAX finite, strictly
 * increasing upper bounds (+Inf is implicit). A family without labels has
 * its one series from the start, at 0. help is copied.
 * Returns NULL when an argument is invalid, the name is taken, or out of
 * memory.
 */
struct metrics_family *metrics_register(struct metrics *m, enum metrics_type type,
					const char *name, const char *help,
					const char *const *labels,
					const double *buckets, size_t nbuckets);

/*
 * values: one string per label name of the family (NULL when it has none).
 * metrics_add: counters (v >= 0 and finite, else DG_EINVAL) and gauges.
 * metrics_set: gauges only. metrics_observe: histograms only.
 * Each returns 0, DG_EINVAL (wrong type or value), DG_ETOOBIG (a value
 * longer than METRICS_VALUE_MAX, or the family is full) or DG_ENOMEM.
 */
int metrics_add(struct metrics_family *f, const char *const *values, double v);
int metrics_set(struct metrics_family *f, const char *const *values, double v);
int metrics_observe(struct metrics_family *f, const char *const *values, double v);

/* The current value of a counter or gauge series; 0 when it does not
 * exist. For tests and collectors. */
double metrics_get(const struct metrics_family *f, const char *const *values);

/* Drops every series of a family with labels (a collector starts over);
 * resets the single series of one without labels to 0. */
void metrics_clear(struct metrics_family *f);

typedef void (*metrics_collect_fn)(struct metrics *m, void *arg);
/* Returns 0, DG_ETOOBIG (METRICS_COLLECTORS_MAX reached) or DG_EINVAL. */
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *arg);

/* Runs the collectors, then renders every family. *out is a malloc'd,
 * NUL-terminated text of *len bytes (the caller frees it). Returns 0 or
 * DG_ENOMEM. */
int metrics_render(struct metrics *m, char **out, size_t *len);

/* A double as the format writes it: "+Inf", "-Inf", "NaN", integers
 * without exponent or point, else the shortest text that reads back as
 * the same double. Returns buf. */
char *metrics_format_value(double v, char buf[32]);

/* ---- dotsgw's series ------------------------------------------------------ */

/*
 * Every series dotsgw exposes (README "Metrics" lists them). Counters are
 * incremented where things happen (core.c, io_coap.c); gauges are set by
 * the collectors at scrape time.
 */
struct metrics_dots {
	struct metrics *reg;
	/* gauge {side, transport, state} */
	struct metrics_family *sessions;
	/* counter {side, resource, method, code}: downstream requests
	 * answered by the gateway, upstream requests answered by an upstream
	 * (code "timeout" when none answered) */
	struct metrics_family *requests;
	/* counter {side}: upstream notifications received */
	struct metrics_family *notifications;
	/* gauge {status} */
	struct metrics_family *mitigations;
	/* gauge {upstream}: 1 when a session to it is ready */
	struct metrics_family *upstream_up;
	/* counter {upstream} */
	struct metrics_family *hb_missed;
	/* counter {side, reason} */
	struct metrics_family *hs_failures;
	/* histogram, seconds */
	struct metrics_family *relay_latency;
	/* gauges {upstream}: the last reported *-dropped values summed over
	 * active mitigations */
	struct metrics_family *dropped_bytes, *dropped_packets,
			      *dropped_bps, *dropped_pps;
	/* gauge {version} = 1 */
	struct metrics_family *build_info;
};

/* Registers every family of d in reg. Returns 0, or DG_ENOMEM when a
 * family cannot be registered (out of memory, or its name is taken). */
int metrics_dots_init(struct metrics_dots *d, struct metrics *reg,
		      const char *version);

/* Label values shared by the hooks. */
#define METRICS_DN "downstream"
#define METRICS_UP "upstream"

/* "mitigate", "config" or "hb" for /.well-known/dots/<that>/..., else
 * "other". */
const char *metrics_dots_resource(const char *const *path, size_t npath);
/* "GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH" or "other"
 * for a CoAP method code (1..7). */
const char *metrics_coap_method(int method);
/* "2.01" for 201; "other" outside 0.00..7.31. Returns buf. */
char *metrics_coap_code(int code, char buf[8]);

#endif
