/*
 * main.c: process life of dotsgw: arguments, configuration, logging,
 * signals, the event loop.
 */
#include <getopt.h>
#include <signal.h>
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
#include "io_metrics.h"
#include "io_ctl.h"
#include "io_disc.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
/* Built without libsystemd: nobody to tell (the unit is then Type=exec). */
static int sd_notify(int unset_environment, const char *state)
{
	(void)unset_environment;
	(void)state;
	return 0;
}
#endif

struct app {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint, sighup, sigusr1, sigusr2;
	struct io *io;
	struct io_metrics *metrics_io;
	struct metrics *metrics;
	struct metrics_dots dots;
	struct io_ctl *ctl;
	struct io_disc *disc; /* RFC 8973 discovery of upstreams */
	struct gw_config *cfg;
	const char *config_path;
	bool use_syslog;
	bool level_from_cli; /* -l given: a reload keeps that level */
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
	sd_notify(0, "STOPPING=1");
	io_ctl_stop(app->ctl);
	io_disc_stop(app->disc);
	app->disc = NULL;
	io_stop(app->io);
	io_metrics_stop(app->metrics_io);
	uv_close((uv_handle_t *)&app->sigterm, NULL);
	uv_close((uv_handle_t *)&app->sigint, NULL);
	uv_close((uv_handle_t *)&app->sighup, NULL);
	uv_close((uv_handle_t *)&app->sigusr1, NULL);
	uv_close((uv_handle_t *)&app->sigusr2, NULL);
}

/* SIGUSR1 drains (clients redirected to server.drain, RFC 9132 §4.6),
 * SIGUSR2 ends the drain. */
static void on_drain_signal(uv_signal_t *h, int signum)
{
	struct app *app = h->data;
	size_t told = 0;

	if (io_drain(app->io, signum == SIGUSR1, &told))
		dg_err("main", "drain refused: no server.drain alternate configured");
	else if (signum == SIGUSR1)
		dg_info("main", "draining to %s: %zu observations redirected",
			app->cfg->drain.alternate, told);
}

static void report_reload_error(const char *line, void *arg)
{
	(void)arg;
	dg_err("config", "%s", line);
}

/* Live reload: the whole new file is validated, and io checks what it
 * cannot apply, before anything changes; on any refusal the running
 * configuration stays as it was. */
static int gw_reload(struct app *app)
{
	struct gw_config *ncfg = NULL;
	int rc;

	dg_info("main", "reloading %s", app->config_path);
	if (config_load(app->config_path, &ncfg, report_reload_error, NULL)) {
		dg_err("main", "reload refused: %s is invalid; the running configuration is unchanged",
		       app->config_path);
		return DG_EINVAL;
	}
	rc = io_reload(app->io, ncfg);
	if (rc) {
		config_free(ncfg);
		dg_err("main", "reload refused (%s); the running configuration is unchanged",
		       dg_strerror(rc));
		return rc;
	}
	if (ncfg->metrics.enabled != app->cfg->metrics.enabled ||
	    ncfg->metrics.port != app->cfg->metrics.port ||
	    strcmp(ncfg->metrics.address, app->cfg->metrics.address) ||
	    strcmp(ncfg->metrics.path, app->cfg->metrics.path))
		dg_warn("main", "metrics settings changed: they apply at the next restart");
	if (io_disc_reload(app->disc, ncfg))
		dg_err("main", "reload: discovery could not restart for every upstream");
	config_free(app->cfg);
	app->cfg = ncfg;
	if (!app->level_from_cli && dg_log_get_level() != ncfg->log_level) {
		dg_log_set_level(ncfg->log_level);
		coap_set_log_level(ncfg->log_level >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_WARNING);
		coap_dtls_set_log_level(ncfg->log_level >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_ERR);
	}
	dg_info("main", "reloaded %s", app->config_path);
	return 0;
}

static void on_hup(uv_signal_t *h, int signum)
{
	(void)signum;
	gw_reload(h->data);
}

/* Runtime log level, from the control socket: libcoap follows as at start. */
static void set_log_level(void *arg, enum dg_log_level lvl)
{
	(void)arg;
	dg_log_set_level(lvl);
	coap_set_log_level(lvl >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_WARNING);
	coap_dtls_set_log_level(lvl >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_ERR);
}

/* "reload" from the control socket: what SIGHUP does. */
static int ctl_reload(void *arg, char *err, size_t errlen)
{
	int rc = gw_reload(arg);

	if (rc)
		snprintf(err, errlen, "reload refused (%s): the running configuration is unchanged; the log has the reasons",
			 dg_strerror(rc));
	return rc;
}

/* "discover" from the control socket (RFC 8973 §4: on request). */
static size_t ctl_discover(void *arg)
{
	return io_disc_rediscover(((struct app *)arg)->disc);
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

/* A start that failed once io was running: stop what runs, let the loop
 * close the handles, free the rest. Returns the exit status. */
static int start_failed(struct app *app)
{
	io_ctl_stop(app->ctl);
	io_disc_stop(app->disc);
	app->disc = NULL;
	io_stop(app->io);
	io_metrics_stop(app->metrics_io);
	uv_run(&app->loop, UV_RUN_DEFAULT);
	io_free(app->io);
	io_ctl_free(app->ctl);
	io_metrics_free(app->metrics_io);
	metrics_free(app->metrics);
	uv_loop_close(&app->loop);
	coap_cleanup();
	config_free(app->cfg);
	return 1;
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
	app.config_path = config_path;
	app.level_from_cli = level != NULL;
	if (app.use_syslog)
		openlog("dotsgw", LOG_PID, LOG_DAEMON);
	coap_startup();
	coap_set_log_handler(libcoap_log);
	coap_set_log_level(lvl >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_WARNING);
	coap_dtls_set_log_level(lvl >= DG_LOG_DEBUG ? LOG_DEBUG : LOG_ERR);

	/* A control client that goes away leaves a write failing with EPIPE:
	 * that connection ends, not the gateway. */
	signal(SIGPIPE, SIG_IGN);
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
	rc = io_disc_start(&app.loop, app.io, app.cfg, &app.disc);
	if (rc) {
		dg_err("main", "cannot start: discovery: %s", dg_strerror(rc));
		return start_failed(&app);
	}
	if (app.cfg->metrics.enabled) {
		app.metrics = metrics_new();
		rc = app.metrics ? metrics_dots_init(&app.dots, app.metrics, DOTSGW_VERSION)
				 : DG_ENOMEM;
		if (!rc)
			rc = io_set_metrics(app.io, &app.dots);
		if (!rc)
			rc = io_metrics_start(&app.loop, &app.cfg->metrics, app.metrics,
					      &app.metrics_io);
		if (rc) {
			dg_err("main", "cannot start the metrics endpoint: %s", dg_strerror(rc));
			return start_failed(&app);
		}
	}
	const struct io_ctl_callbacks ctl_cb = {
		.reload = ctl_reload, .set_log_level = set_log_level, .arg = &app,
		.discover = ctl_discover,
	};
	rc = io_ctl_start(&app.loop, (const struct gw_config *const *)&app.cfg,
			  app.io, &ctl_cb, &app.ctl);
	if (rc && app.cfg->control_explicit) {
		/* Configured, so needed: do not run without it. */
		dg_err("main", "cannot start: control socket %s: %s",
		       app.cfg->control_socket, dg_strerror(rc));
		return start_failed(&app);
	}
	if (rc)
		dg_warn("main", "no control socket (default path %s: %s); set control.socket to require one",
			app.cfg->control_socket, dg_strerror(rc));
	uv_signal_init(&app.loop, &app.sigterm);
	uv_signal_init(&app.loop, &app.sigint);
	uv_signal_init(&app.loop, &app.sighup);
	uv_signal_init(&app.loop, &app.sigusr1);
	uv_signal_init(&app.loop, &app.sigusr2);
	app.sigterm.data = app.sigint.data = app.sighup.data = &app;
	app.sigusr1.data = app.sigusr2.data = &app;
	uv_signal_start(&app.sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&app.sigint, on_stop_signal, SIGINT);
	uv_signal_start(&app.sighup, on_hup, SIGHUP);
	uv_signal_start(&app.sigusr1, on_drain_signal, SIGUSR1);
	uv_signal_start(&app.sigusr2, on_drain_signal, SIGUSR2);
	dg_info("main", "dotsgw %s ready config=%s mode=map clients=%zu upstreams=%zu",
		DOTSGW_VERSION, config_path, app.cfg->nclients, app.cfg->nupstreams);
	/* Listeners are bound and signals handled: systemd may go on. */
	sd_notify(0, "READY=1");

	uv_run(&app.loop, UV_RUN_DEFAULT);

	io_free(app.io);
	io_metrics_free(app.metrics_io);
	metrics_free(app.metrics);
	io_ctl_free(app.ctl);
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
