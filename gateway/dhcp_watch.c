/*
 * dhcp_watch.c: dotsgw-dhcp-watch, io_dhcp on its own loop. Prints the
 * candidate list as one JSON line each time it changes, log lines on
 * stderr. For tests and for operators checking the DHCP hooks:
 *
 *   dotsgw-dhcp-watch [-d DIR] [-r RESCAN_MS] [-l LEVEL] [--once]
 *
 * --once exits after the first list. SIGHUP re-reads, SIGTERM/SIGINT stop.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "io_dhcp.h"

struct watch {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint, sighup;
	struct io_dhcp *io;
	bool once;
};

static void log_to_stderr(enum dg_log_level level, const char *group,
			  const char *msg, void *arg)
{
	fprintf(stderr, "level=%s group=%s %s\n", dg_log_level_name(level), group, msg);
	fflush(stderr);
}

static void stop(struct watch *w)
{
	io_dhcp_stop(w->io);
	w->io = NULL;
	uv_close((uv_handle_t *)&w->sigterm, NULL);
	uv_close((uv_handle_t *)&w->sigint, NULL);
	uv_close((uv_handle_t *)&w->sighup, NULL);
}

static void on_list(const struct dhcp_dots_cand *list, size_t n, void *arg)
{
	struct watch *w = arg;
	json_t *arr = json_array(), *ev;
	char *text;

	for (size_t i = 0; i < n; i++) {
		const struct dhcp_dots_cand *c = &list[i];
		char addr[64];

		dhcp_dots_addr_text(c, addr, sizeof(addr));
		json_array_append_new(arr, json_pack(
			"{s:s?, s:i, s:s, s:s?, s:b, s:s, s:s, s:I, s:o?}",
			"address", c->kind == DHCP_DOTS_ADDR_NONE ? NULL : addr,
			"port", (int)c->port,
			"transport", "any",
			"reference-identifier", c->name[0] ? c->name : NULL,
			"resolve", c->kind == DHCP_DOTS_ADDR_NONE,
			"interface", c->ifname,
			"source", c->source == DHCP_DOTS_V4 ? "dhcpv4" : "dhcpv6",
			"acquired", (json_int_t)c->acquired,
			"expires", c->expires == INT64_MAX ? NULL :
				   json_integer((json_int_t)c->expires)));
	}
	ev = json_pack("{s:s, s:o}", "event", "candidates", "candidates", arr);
	text = json_dumps(ev, JSON_COMPACT);
	if (text)
		printf("%s\n", text);
	fflush(stdout);
	free(text);
	json_decref(ev);
	if (w->once)
		stop(w);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct watch *w = h->data;

	if (signum == SIGHUP) {
		if (w->io)
			io_dhcp_rescan(w->io);
		return;
	}
	stop(w);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "rescan", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "once", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct watch w = { 0 };
	struct io_dhcp_opts opts = { .cb = on_list, .arg = &w };
	enum dg_log_level level = DG_LOG_INFO;
	int c, rc;

	while ((c = getopt_long(argc, argv, "d:r:l:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			opts.dir = optarg;
			break;
		case 'r':
			opts.rescan_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'l':
			if (dg_log_level_parse(optarg, &level) < 0) {
				fprintf(stderr, "unknown log level %s\n", optarg);
				return 2;
			}
			break;
		case 'o':
			w.once = true;
			break;
		default:
			fprintf(stderr, "usage: %s [-d DIR] [-r RESCAN_MS] [-l LEVEL] [--once]\n",
				argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}
	dg_log_set_hook(log_to_stderr, NULL);
	dg_log_set_level(level);
	uv_loop_init(&w.loop);
	uv_signal_init(&w.loop, &w.sigterm);
	uv_signal_init(&w.loop, &w.sigint);
	uv_signal_init(&w.loop, &w.sighup);
	w.sigterm.data = w.sigint.data = w.sighup.data = &w;
	uv_signal_start(&w.sigterm, on_signal, SIGTERM);
	uv_signal_start(&w.sigint, on_signal, SIGINT);
	uv_signal_start(&w.sighup, on_signal, SIGHUP);
	rc = io_dhcp_start(&w.loop, &opts, &w.io);
	if (rc < 0) {
		fprintf(stderr, "cannot watch: %s\n", dg_strerror(rc));
		return 1;
	}
	dg_info("dhcp", "watching %s", opts.dir ? opts.dir : IO_DHCP_DEFAULT_DIR);
	uv_run(&w.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&w.loop);
	if (rc < 0) {
		fprintf(stderr, "event loop closed with handles left: %s\n", uv_strerror(rc));
		return 1;
	}
	return 0;
}
