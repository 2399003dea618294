/*
 * main.c: process life of dotsgw: arguments, configuration, logging,
 * signals, the event loop.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>

#include <coap3/coap.h>
#include <uv.h>

#include "dotsgw_build.h"
#include "config.h"
#include "io_coap.h"

struct app {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint, sighup;
	struct io *io;
	struct gw_config *cfg;
	bool use_syslog;
};

static void log_to_stderr(enum dg_log_level level, const char *group,
			  const char *msg, void *arg)
{
	struct app *app = arg;
	struct timespec ts;
	struct tm tm;
	char when[32];

	if (app && app->use_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		syslog(prio[level], "level=%s group=%s %s", dg_log_level_name(level),
		       group, msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ level=%s group=%s %s\n", when,
		ts.tv_nsec / 1000000, dg_log_level_name(level), group, msg);
}

/* libcoap's own messages join ours, one level lower so that its routine
 * chatter stays at debug. */
static void libcoap_log(coap_log_t level, const char *message)
{
	size_t len = strlen(message);
	enum dg_log_level l = level <= LOG_ERR ? DG_LOG_WARN : DG_LOG_DEBUG;

	while (len && message[len - 1] == '\n')
		len--;
	dg_log(l, "coap", "%.*s", (int)len, message);
}

static void report_config_error(const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "%s\n", line);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
	struct app *app = h->data;

	dg_info("main", "signal %d: shutting down", signum);
	io_stop(app->io);
	uv_close((uv_handle_t *)&app->sigterm, NULL);
	uv_close((uv_handle_t *)&app->sigint, NULL);
	uv_close((uv_handle_t *)&app->sighup, NULL);
}

static void on_hup(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	/* Live reload is a later piece of work (README: not yet). */
	dg_warn("main", "SIGHUP: reload is not supported yet; configuration unchanged");
}

/* Map mode holds a socket per client upstream (and TLS/TCP clients one
 * each downstream): the usual soft limit of 1,024 descriptors is reached
 * long before the hard limit, so take all that is allowed. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		dg_warn("main", "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur != rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl)) {
			dg_warn("main", "cannot raise the open-file limit from %llu to %llu: %s",
				(unsigned long long)was, (unsigned long long)rl.rlim_max,
				strerror(errno));
			return;
		}
	}
	dg_debug("main", "open-file limit %llu", (unsigned long long)rl.rlim_cur);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dotsgw -c FILE [-l LEVEL] [--syslog]\n"
		"       dotsgw --check-config FILE\n"
		"  -c, --config FILE        run with this configuration\n"
		"  -t, --check-config FILE  validate FILE, print each error as FILE:LINE: KEY: reason\n"
		"  -l, --log-level LEVEL    err|warn|info|debug (overrides gateway.log-level)\n"
		"      --syslog             log to syslog/journald instead of stderr\n"
		"  -V, --version            print the version\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "syslog", no_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct app app;
	const char *config_path = NULL, *check_path = NULL, *level = NULL;
	int c, rc;

	memset(&app, 0, sizeof(app));
	while ((c = getopt_long(argc, argv, "c:t:l:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_path = optarg; break;
		case 't': check_path = optarg; break;
		case 'l': level = optarg; break;
		case 's': app.use_syslog = true; break;
		case 'V': printf("dotsgw %s\n", DOTSGW_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || (!config_path && !check_path)) {
		usage(stderr);
		return 2;
	}
	dg_log_set_hook(log_to_stderr, &app);
	if (check_path) {
		rc = config_load(check_path, &app.cfg, report_config_error, NULL);
		if (rc) {
			fprintf(stderr, "%s: configuration is invalid\n", check_path);
			return 1;
		}
		printf("%s: configuration is valid\n", check_path);
		config_free(app.cfg);
		return 0;
	}
	if (config_load(config_path, &app.cfg, report_config_error, NULL)) {
		fprintf(stderr, "%s: configuration is invalid; not starting\n", config_path);
		return 1;
	}
	enum dg_log_level lvl = app.cfg->log_level;
	if (level && dg_log_level_parse(level, &lvl)) {
		fprintf(stderr, "unknown log level '%s'\n", level);
		config_free(app.cfg);
		return 2;
	}
	dg_log_set_level(lvl);
	if (app.use_syslog)
		openlog("dotsgw", LOG_PID, LOG_DAEMON);
	coap_startup();
	coap_set_log_handler(libcoap_log);
	coap_set_log_level(lvl >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_WARNING);
	coap_dtls_set_log_level(lvl >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_ERR);

	raise_nofile();
	uv_loop_init(&app.loop);
	rc = io_start(&app.loop, app.cfg, &app.io);
	if (rc) {
		dg_err("main", "cannot start: %s", dg_strerror(rc));
		uv_loop_close(&app.loop);
		coap_cleanup();
		config_free(app.cfg);
		return 1;
	}
	uv_signal_init(&app.loop, &app.sigterm);
	uv_signal_init(&app.loop, &app.sigint);
	uv_signal_init(&app.loop, &app.sighup);
	app.sigterm.data = app.sigint.data = app.sighup.data = &app;
	uv_signal_start(&app.sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&app.sigint, on_stop_signal, SIGINT);
	uv_signal_start(&app.sighup, on_hup, SIGHUP);
	dg_info("main", "dotsgw %s ready config=%s mode=map clients=%zu upstreams=%zu",
		DOTSGW_VERSION, config_path, app.cfg->nclients, app.cfg->nupstreams);

	uv_run(&app.loop, UV_RUN_DEFAULT);

	io_free(app.io);
	rc = uv_loop_close(&app.loop);
	if (rc)
		dg_err("main", "event loop closed with handles left: %s", uv_strerror(rc));
	coap_cleanup();
	config_free(app.cfg);
	dg_info("main", "stopped");
	if (app.use_syslog)
		closelog();
	return rc ? 1 : 0;
}
