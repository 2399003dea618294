/*
 * test_metrics.c: common/metrics.c against metrics.h: registration rules,
 * counter/gauge/histogram arithmetic, and the exact text rendering
 * (escaping, cumulative buckets, +Inf, _sum and _count).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/metrics.h"

#define V(...) ((const char *[]){ __VA_ARGS__ })

static char *render(struct metrics *m)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(m, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

static void test_counter_and_gauge_text(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_family *c, *g;
	char *t;

	(void)state;
	c = metrics_register(m, METRICS_COUNTER, "x_requests_total", "Requests.",
			     V("side", "code", NULL), NULL, 0);
	g = metrics_register(m, METRICS_GAUGE, "x_up", "Up.", NULL, NULL, 0);
	assert_non_null(c);
	assert_non_null(g);
	assert_int_equal(metrics_add(c, V("dn", "2.01"), 1), 0);
	assert_int_equal(metrics_add(c, V("dn", "2.01"), 2), 0);
	assert_int_equal(metrics_add(c, V("up", "4.04"), 1), 0);
	assert_int_equal(metrics_set(g, NULL, -2.5), 0);
	assert_true(metrics_get(c, V("dn", "2.01")) == 3);
	assert_true(metrics_get(c, V("dn", "9.99")) == 0);
	t = render(m);
	assert_string_equal(t,
		"# HELP x_requests_total Requests.\n"
		"# TYPE x_requests_total counter\n"
		"x_requests_total{side=\"dn\",code=\"2.01\"} 3\n"
		"x_requests_total{side=\"up\",code=\"4.04\"} 1\n"
		"# HELP x_up Up.\n"
		"# TYPE x_up gauge\n"
		"x_up -2.5\n");
	free(t);
	metrics_free(m);
}

static void test_label_escaping(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_family *g;
	char *t;

	(void)state;
	g = metrics_register(m, METRICS_GAUGE, "x_info", "Back\\slash and\nnewline \"kept\".",
			     V("name", NULL), NULL, 0);
	assert_non_null(g);
	assert_int_equal(metrics_set(g, V("a\"b\\c\nd\te\x7f"), 1), 0);
	t = render(m);
	/* HELP escapes \ and newline only; label values also the quote;
	 * other control characters become '?'. */
	assert_string_equal(t,
		"# HELP x_info Back\\\\slash and\\nnewline \"kept\".\n"
		"# TYPE x_info gauge\n"
		"x_info{name=\"a\\\"b\\\\c\\nd?e?\"} 1\n");
	free(t);
	metrics_free(m);
}

static void test_histogram(void **state)
{
	static const double b[] = { 0.001, 0.01, 0.1 };
	struct metrics *m = metrics_new();
	struct metrics_family *h;
	char *t;

	(void)state;
	h = metrics_register(m, METRICS_HISTOGRAM, "x_latency_seconds", "Latency.",
			     V("side", NULL), b, 3);
	assert_non_null(h);
	/* 0.001 lands in le=0.001 (upper bound inclusive), 0.05 in 0.1,
	 * 3 only in +Inf. */
	assert_int_equal(metrics_observe(h, V("dn"), 0.0005), 0);
	assert_int_equal(metrics_observe(h, V("dn"), 0.001), 0);
	assert_int_equal(metrics_observe(h, V("dn"), 0.05), 0);
	assert_int_equal(metrics_observe(h, V("dn"), 3), 0);
	assert_int_equal(metrics_observe(h, V("dn"), NAN), DG_EINVAL);
	t = render(m);
	assert_string_equal(t,
		"# HELP x_latency_seconds Latency.\n"
		"# TYPE x_latency_seconds histogram\n"
		"x_latency_seconds_bucket{side=\"dn\",le=\"0.001\"} 2\n"
		"x_latency_seconds_bucket{side=\"dn\",le=\"0.01\"} 2\n"
		"x_latency_seconds_bucket{side=\"dn\",le=\"0.1\"} 3\n"
		"x_latency_seconds_bucket{side=\"dn\",le=\"+Inf\"} 4\n"
		"x_latency_seconds_sum{side=\"dn\"} 3.0515\n"
		"x_latency_seconds_count{side=\"dn\"} 4\n");
	free(t);
	assert_true(metrics_get(h, V("dn")) == 4);
	metrics_free(m);
}

static void test_histogram_without_labels(void **state)
{
	static const double b[] = { 5e-05, 10 };
	struct metrics *m = metrics_new();
	struct metrics_family *h;
	char *t;

	(void)state;
	h = metrics_register(m, METRICS_HISTOGRAM, "x_s", "H.", NULL, b, 2);
	assert_non_null(h);
	t = render(m);
	/* Present from the start, all zero. */
	assert_string_equal(t,
		"# HELP x_s H.\n# TYPE x_s histogram\n"
		"x_s_bucket{le=\"5e-05\"} 0\n"
		"x_s_bucket{le=\"10\"} 0\n"
		"x_s_bucket{le=\"+Inf\"} 0\n"
		"x_s_sum 0\n"
		"x_s_count 0\n");
	free(t);
	assert_int_equal(metrics_observe(h, NULL, 0.00002), 0);
	assert_int_equal(metrics_observe(h, NULL, 20), 0);
	t = render(m);
	assert_non_null(strstr(t, "x_s_bucket{le=\"5e-05\"} 1\n"
				  "x_s_bucket{le=\"10\"} 1\n"
				  "x_s_bucket{le=\"+Inf\"} 2\n"
				  "x_s_sum 20.00002\n"
				  "x_s_count 2\n"));
	free(t);
	metrics_free(m);
}

static void test_register_rules(void **state)
{
	static const double ok[] = { 1, 2 }, unordered[] = { 2, 1 },
			    inf[] = { 1, INFINITY };
	struct metrics *m = metrics_new();

	(void)state;
	assert_non_null(metrics_register(m, METRICS_COUNTER, "a:b_total", "", NULL, NULL, 0));
	/* duplicate name, bad names, bad labels */
	assert_null(metrics_register(m, METRICS_GAUGE, "a:b_total", "", NULL, NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "1a", "", NULL, NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "a-b", "", NULL, NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "", "", NULL, NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "g", "", V("a:b", NULL), NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "g", "", V("__x", NULL), NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "g", "", V("a", "a", NULL), NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "g", "",
				     V("a", "b", "c", "d", "e", NULL), NULL, 0));
	/* histograms: le reserved, buckets finite and increasing */
	assert_null(metrics_register(m, METRICS_HISTOGRAM, "h", "", V("le", NULL), ok, 2));
	assert_null(metrics_register(m, METRICS_HISTOGRAM, "h", "", NULL, unordered, 2));
	assert_null(metrics_register(m, METRICS_HISTOGRAM, "h", "", NULL, inf, 2));
	assert_null(metrics_register(m, METRICS_HISTOGRAM, "h", "", NULL, NULL, 0));
	assert_null(metrics_register(m, METRICS_GAUGE, "g", "", NULL, ok, 2));
	assert_non_null(metrics_register(m, METRICS_GAUGE, "g", "", V("le", NULL), NULL, 0));
	assert_non_null(metrics_register(m, METRICS_HISTOGRAM, "h", "", NULL, ok, 2));
	metrics_free(m);
}

static void test_type_and_value_checks(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_family *c, *g;
	char big[METRICS_VALUE_MAX + 2];
	char name[32];

	(void)state;
	c = metrics_register(m, METRICS_COUNTER, "c_total", "", V("k", NULL), NULL, 0);
	g = metrics_register(m, METRICS_GAUGE, "g", "", V("k", NULL), NULL, 0);
	/* counters only go up */
	assert_int_equal(metrics_add(c, V("a"), -1), DG_EINVAL);
	assert_int_equal(metrics_add(c, V("a"), INFINITY), DG_EINVAL);
	assert_int_equal(metrics_set(c, V("a"), 1), DG_EINVAL);
	assert_int_equal(metrics_observe(g, V("a"), 1), DG_EINVAL);
	assert_int_equal(metrics_add(g, V("a"), -1), 0);
	assert_true(metrics_get(g, V("a")) == -1);
	/* a missing value, an overlong value */
	assert_int_equal(metrics_add(c, V(NULL), 1), DG_EINVAL);
	assert_int_equal(metrics_add(c, NULL, 1), DG_EINVAL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(metrics_add(c, V(big), 1), DG_ETOOBIG);
	/* a family is bounded */
	for (int i = 0; i < METRICS_SERIES_MAX; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		assert_int_equal(metrics_add(c, V(name), 1), 0);
	}
	assert_int_equal(metrics_add(c, V("one-more"), 1), DG_ETOOBIG);
	assert_int_equal(metrics_add(c, V("v7"), 1), 0); /* existing ones still count */
	assert_true(metrics_get(c, V("v7")) == 2);
	/* NULL families are no-ops */
	assert_int_equal(metrics_add(NULL, NULL, 1), 0);
	assert_int_equal(metrics_observe(NULL, NULL, 1), 0);
	metrics_clear(NULL);
	metrics_free(m);
}

static void test_format_value(void **state)
{
	char b[32];

	(void)state;
	assert_string_equal(metrics_format_value(0, b), "0");
	assert_string_equal(metrics_format_value(-0.0, b), "0");
	assert_string_equal(metrics_format_value(42, b), "42");
	assert_string_equal(metrics_format_value(1e15, b), "1000000000000000");
	assert_string_equal(metrics_format_value(0.1, b), "0.1");
	assert_string_equal(metrics_format_value(5e-05, b), "5e-05");
	assert_string_equal(metrics_format_value(0.00025, b), "0.00025");
	assert_string_equal(metrics_format_value(INFINITY, b), "+Inf");
	assert_string_equal(metrics_format_value(-INFINITY, b), "-Inf");
	assert_string_equal(metrics_format_value(NAN, b), "NaN");
	assert_true(strtod(metrics_format_value(1.0 / 3, b), NULL) == 1.0 / 3);
}

struct coll {
	struct metrics_family *g;
	int calls;
};

static void collect(struct metrics *m, void *arg)
{
	struct coll *c = arg;

	(void)m;
	metrics_clear(c->g);
	c->calls++;
	if (c->calls == 1)
		metrics_set(c->g, V("gone-later"), 1);
	metrics_set(c->g, V("always"), c->calls);
}

static void test_collector_and_clear(void **state)
{
	struct metrics *m = metrics_new();
	struct coll c = { NULL, 0 };
	char *t;

	(void)state;
	c.g = metrics_register(m, METRICS_GAUGE, "g", "G.", V("k", NULL), NULL, 0);
	assert_int_equal(metrics_add_collector(m, collect, &c), 0);
	t = render(m);
	assert_string_equal(t, "# HELP g G.\n# TYPE g gauge\n"
			       "g{k=\"gone-later\"} 1\ng{k=\"always\"} 1\n");
	free(t);
	t = render(m);
	/* cleared series are gone, not left at a stale value */
	assert_string_equal(t, "# HELP g G.\n# TYPE g gauge\ng{k=\"always\"} 2\n");
	free(t);
	assert_int_equal(c.calls, 2);
	for (int i = 1; i < METRICS_COLLECTORS_MAX; i++)
		assert_int_equal(metrics_add_collector(m, collect, &c), 0);
	assert_int_equal(metrics_add_collector(m, collect, &c), DG_ETOOBIG);
	metrics_free(m);
}

static void test_dots_series(void **state)
{
	struct metrics *m = metrics_new();
	struct metrics_dots d;
	char *t, code[8];

	(void)state;
	assert_int_equal(metrics_dots_init(&d, m, "1.2.3"), 0);
	assert_int_equal(metrics_add(d.requests,
				     V(METRICS_DN, "mitigate", metrics_coap_method(3),
				       metrics_coap_code(201, code)), 1), 0);
	t = render(m);
	assert_non_null(strstr(t, "dotsgw_build_info{version=\"1.2.3\"} 1\n"));
	assert_non_null(strstr(t, "dotsgw_requests_total{side=\"downstream\",resource=\"mitigate\",method=\"PUT\",code=\"2.01\"} 1\n"));
	assert_non_null(strstr(t, "# TYPE dotsgw_relay_latency_seconds histogram\n"
				  "dotsgw_relay_latency_seconds_bucket{le=\"5e-05\"} 0\n"));
	assert_non_null(strstr(t, "dotsgw_relay_latency_seconds_bucket{le=\"10\"} 0\n"
				  "dotsgw_relay_latency_seconds_bucket{le=\"+Inf\"} 0\n"));
	free(t);
	/* A second registration of the same names fails cleanly. */
	struct metrics_dots d2;
	assert_int_equal(metrics_dots_init(&d2, m, "x"), DG_ENOMEM);
	metrics_free(m);
}

static void test_dots_helpers(void **state)
{
	char b[8];

	(void)state;
	assert_string_equal(metrics_dots_resource(V(".well-known", "dots", "mitigate", "cuid=x"), 4),
			    "mitigate");
	assert_string_equal(metrics_dots_resource(V(".well-known", "dots", "hb"), 3), "hb");
	assert_string_equal(metrics_dots_resource(V(".well-known", "dots", "config"), 3), "config");
	assert_string_equal(metrics_dots_resource(V(".well-known", "dots", "other"), 3), "other");
	assert_string_equal(metrics_dots_resource(V(".well-known", "dots"), 2), "other");
	assert_string_equal(metrics_dots_resource(V("x", "dots", "hb"), 3), "other");
	assert_string_equal(metrics_coap_method(1), "GET");
	assert_string_equal(metrics_coap_method(4), "DELETE");
	assert_string_equal(metrics_coap_method(7), "iPATCH");
	assert_string_equal(metrics_coap_method(0), "other");
	assert_string_equal(metrics_coap_method(8), "other");
	assert_string_equal(metrics_coap_code(205, b), "2.05");
	assert_string_equal(metrics_coap_code(0, b), "0.00");
	assert_string_equal(metrics_coap_code(731, b), "7.31");
	assert_string_equal(metrics_coap_code(732, b), "other");
	assert_string_equal(metrics_coap_code(-1, b), "other");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge_text),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_without_labels),
		cmocka_unit_test(test_register_rules),
		cmocka_unit_test(test_type_and_value_checks),
		cmocka_unit_test(test_format_value),
		cmocka_unit_test(test_collector_and_clear),
		cmocka_unit_test(test_dots_series),
		cmocka_unit_test(test_dots_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
