/*
 * test_dg.c: the logging budget for lines peers can cause at will.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dg.h"

static char lines[64][256];
static size_t nlines;

static void collect(enum dg_log_level level, const char *group, const char *msg,
		    void *arg)
{
	(void)level;
	(void)group;
	(void)arg;
	if (nlines < 64)
		snprintf(lines[nlines++], sizeof(lines[0]), "%s", msg);
}

static void test_burst_then_silence_then_count(void **state)
{
	struct dg_ratelimit rl = { 0 };

	(void)state;
	nlines = 0;
	dg_log_set_hook(collect, NULL);
	dg_log_set_level(DG_LOG_INFO);
	/* A flood of 50 in one window: the burst gets through. */
	for (int i = 0; i < 50; i++)
		dg_log_limited(&rl, 1000 + (uint64_t)i, DG_LOG_WARN, "t", "refused %d", i);
	assert_int_equal(nlines, DG_LOG_BURST);
	assert_string_equal(lines[0], "refused 0");
	assert_string_equal(lines[DG_LOG_BURST - 1], "refused 9");
	/* Still the same window: nothing. */
	dg_log_limited(&rl, 1000 + DG_LOG_WINDOW_MS - 1, DG_LOG_WARN, "t", "late");
	assert_int_equal(nlines, DG_LOG_BURST);
	/* The next window: the first line says what was dropped. */
	dg_log_limited(&rl, 1000 + DG_LOG_WINDOW_MS, DG_LOG_WARN, "t", "again");
	assert_int_equal(nlines, DG_LOG_BURST + 1);
	assert_string_equal(lines[DG_LOG_BURST], "again (41 similar lines suppressed)");
	dg_log_limited(&rl, 1000 + DG_LOG_WINDOW_MS + 1, DG_LOG_WARN, "t", "quiet");
	assert_string_equal(lines[DG_LOG_BURST + 1], "quiet");
	/* A level that is off costs nothing and counts nothing. */
	dg_log_limited(&rl, 1000 + DG_LOG_WINDOW_MS + 2, DG_LOG_DEBUG, "t", "debug");
	assert_int_equal(nlines, DG_LOG_BURST + 2);
	assert_int_equal(rl.suppressed, 0);
	dg_log_set_hook(NULL, NULL);
}

static void test_clock_going_back_resets(void **state)
{
	struct dg_ratelimit rl = { 0 };

	(void)state;
	nlines = 0;
	dg_log_set_hook(collect, NULL);
	for (int i = 0; i < DG_LOG_BURST + 3; i++)
		dg_log_limited(&rl, 50000, DG_LOG_WARN, "t", "x");
	dg_log_limited(&rl, 10, DG_LOG_WARN, "t", "y");
	assert_string_equal(lines[nlines - 1], "y (3 similar lines suppressed)");
	dg_log_set_hook(NULL, NULL);
}

static void test_echo_printable_bounded(void **state)
{
	char buf[DG_ECHO_MAX + 4], longer[200];

	(void)state;
	/* A line break would forge a log line; an escape, a terminal. */
	assert_string_equal(dg_echo("evil\nlevel=err x\x1b[2J", SIZE_MAX, buf),
			    "evil?level=err x?[2J");
	/* Length-bounded input (a PSK identity is not NUL-terminated). */
	assert_string_equal(dg_echo("alice-and-more", 5, buf), "alice");
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	dg_echo(longer, SIZE_MAX, buf);
	assert_int_equal(strlen(buf), DG_ECHO_MAX + 3);
	assert_string_equal(buf + DG_ECHO_MAX, "...");
	/* Exactly DG_ECHO_MAX bytes: no "...". */
	longer[DG_ECHO_MAX] = '\0';
	assert_int_equal(strlen(dg_echo(longer, SIZE_MAX, buf)), DG_ECHO_MAX);
	assert_string_equal(dg_echo(NULL, 3, buf), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_silence_then_count),
		cmocka_unit_test(test_clock_going_back_resets),
		cmocka_unit_test(test_echo_printable_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
