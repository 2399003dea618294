/*
 * discover.c: dotsgw-discover, RFC 8973 DNS discovery from the command
 * line, through the same code the gateway uses (common/disc, io_dns).
 *
 *   dotsgw-discover --domain NAME [--server IP:PORT[,...]] [--dnssd|--naptr]
 *                   [--transports signal.udp,signal.tcp,data.tcp]
 *                   [--ttl-min S] [--runs N] [--timeout MS] [-l LEVEL]
 *
 * Prints one JSON line per candidate, in order, then one line closing the
 * run ({"run":N,"status":"ok"|"none"|"failed",...}); with --runs N it
 * keeps running (a new run when the list expires or at the retry time)
 * until N runs were printed. Log lines go to stderr. Exit status: 0 when
 * the last run found candidates, 2 when it did not, 1 on a usage error.
 */
#include <ares.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io_dns.h"

struct tool {
	uv_loop_t *loop;
	struct io_dns *io;
	unsigned runs, printed;
	int rc;
	uv_signal_t sigint, sigterm;
};

static void log_stderr(enum dg_log_level level, const char *group, const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "dotsgw-discover: %s: %s: %s\n", dg_log_level_name(level), group, msg);
}

static void print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	json_decref(o);
	fflush(stdout);
}

static void stop(struct tool *t)
{
	io_dns_close(t->io);
	uv_close((uv_handle_t *)&t->sigint, NULL);
	uv_close((uv_handle_t *)&t->sigterm, NULL);
}

static void on_result(struct io_dns_disc *h, const struct disc_result *r, void *arg)
{
	struct tool *t = arg;
	dg_time_ms now = uv_hrtime() / 1000000u;

	for (size_t i = 0; i < r->n; i++) {
		const struct disc_candidate *c = &r->c[i];

		print_json(json_pack("{s:I, s:I, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:I}",
				     "run", (json_int_t)r->run, "order", (json_int_t)i + 1,
				     "transport", disc_transport_name(c->transport),
				     "protocol", c->transport == DISC_SIGNAL_UDP ? "udp" : "tcp",
				     "address", c->address, "port", (int)c->port,
				     "ref_id", c->ref_id, "target", c->target,
				     "source", disc_source_name(c->source),
				     "ttl", (json_int_t)c->ttl,
				     "expires_in_ms", (json_int_t)(c->expires > now ? c->expires - now : 0)));
	}
	if (r->n)
		print_json(json_pack("{s:I, s:s, s:I, s:I}", "run", (json_int_t)r->run, "status", "ok",
				     "candidates", (json_int_t)r->n, "expires_in_ms",
				     (json_int_t)(r->expires > now ? r->expires - now : 0)));
	else
		print_json(json_pack("{s:I, s:s, s:s, s:I}", "run", (json_int_t)r->run,
				     "status", r->status == DG_ENOENT ? "none" : "failed",
				     "error", dg_strerror(r->status), "retry_in_ms",
				     (json_int_t)(r->retry_at > now ? r->retry_at - now : 0)));
	t->rc = r->n ? 0 : 2;
	if (++t->printed >= t->runs) {
		io_dns_cancel(h);
		stop(t);
	}
}

static void on_signal(uv_signal_t *s, int signo)
{
	(void)signo;
	stop(s->data);
}

static int parse_transports(const char *s, unsigned *out)
{
	char buf[128], *tok, *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	*out = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int t;

		for (t = 0; t < DISC_TRANSPORTS; t++)
			if (!strcmp(tok, disc_transport_name((enum disc_transport)t)))
				break;
		if (t == DISC_TRANSPORTS)
			return -1;
		*out |= 1u << t;
	}
	return *out ? 0 : -1;
}

static void usage(FILE *f)
{
	fputs("usage: dotsgw-discover --domain NAME [--server IP:PORT[,...]] [--dnssd|--naptr]\n"
	      "                       [--transports signal.udp,signal.tcp,data.tcp] [--ttl-min S]\n"
	      "                       [--runs N] [--timeout MS] [-l err|warn|info|debug]\n"
	      "RFC 8973 discovery: S-NAPTR, then DNS-SD when S-NAPTR finds nothing\n"
	      "(--naptr: S-NAPTR only, --dnssd: DNS-SD only). One JSON line per candidate.\n", f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "domain", required_argument, NULL, 'd' },
		{ "server", required_argument, NULL, 's' },
		{ "dnssd", no_argument, NULL, 'D' },
		{ "naptr", no_argument, NULL, 'N' },
		{ "transports", required_argument, NULL, 't' },
		{ "ttl-min", required_argument, NULL, 'm' },
		{ "runs", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct tool t = { .runs = 1, .rc = 2 };
	struct io_dns_opts io_opts = { 0 };
	struct disc_params p = { 0 };
	const char *domain = NULL;
	enum dg_log_level level = DG_LOG_INFO;
	int c, rc;

	while ((c = getopt_long(argc, argv, "d:s:t:m:r:T:l:h", opts, NULL)) != -1) {
		char *end = NULL;
		unsigned long v = 0;

		if (strchr("mrT", c)) {
			v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || v == 0 || v > 86400000) {
				fprintf(stderr, "dotsgw-discover: bad number \"%s\"\n", optarg);
				return 1;
			}
		}
		switch (c) {
		case 'd': domain = optarg; break;
		case 's': io_opts.servers = optarg; break;
		case 'D': p.mechanisms = DISC_MECH_DNSSD; break;
		case 'N': p.mechanisms = DISC_MECH_NAPTR; break;
		case 't':
			if (parse_transports(optarg, &p.transports)) {
				fprintf(stderr, "dotsgw-discover: bad transports \"%s\"\n", optarg);
				return 1;
			}
			break;
		case 'm': p.ttl_min = (uint32_t)v; break;
		case 'r': t.runs = (unsigned)v; break;
		case 'T': io_opts.timeout_ms = (unsigned)v; break;
		case 'l':
			if (dg_log_level_parse(optarg, &level)) {
				fprintf(stderr, "dotsgw-discover: bad log level \"%s\"\n", optarg);
				return 1;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (!domain || optind != argc) {
		usage(stderr);
		return 1;
	}
	dg_log_set_level(level);
	dg_log_set_hook(log_stderr, NULL);
	signal(SIGPIPE, SIG_IGN);
	t.loop = uv_default_loop();
	rc = io_dns_new(t.loop, &io_opts, &t.io);
	if (rc) {
		fprintf(stderr, "dotsgw-discover: resolver: %s\n", dg_strerror(rc));
		return 1;
	}
	uv_signal_init(t.loop, &t.sigint);
	uv_signal_init(t.loop, &t.sigterm);
	t.sigint.data = t.sigterm.data = &t;
	uv_signal_start(&t.sigint, on_signal, SIGINT);
	uv_signal_start(&t.sigterm, on_signal, SIGTERM);
	rc = io_dns_discover(t.io, domain, &p, on_result, &t, NULL);
	if (rc) {
		fprintf(stderr, "dotsgw-discover: domain \"%s\": %s\n", domain, dg_strerror(rc));
		stop(&t);
		uv_run(t.loop, UV_RUN_DEFAULT);
		uv_loop_close(t.loop);
		return 1;
	}
	uv_run(t.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(t.loop) != 0)
		fprintf(stderr, "dotsgw-discover: handles left open\n");
	ares_library_cleanup();
	return t.rc;
}
