/*
 * dotsctl: the command-line client of dotsgw's control socket (like birdc
 * or knotc). It sends one request line (ctl.h), reads one answer line and
 * prints it as aligned tables, or as the daemon's JSON with --json.
 *
 * Exit status: 0 done, 1 the gateway refused the command, 2 usage error or
 * no answer (cannot connect, timeout, malformed answer), 3 the command is
 * not implemented yet by the gateway.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "dotsgw_build.h"
#include "ctl.h"

#define DEFAULT_SOCKET "/run/dotsgw/control.sock"
#define ANSWER_MAX (64u << 20) /* a gateway with 100k mitigations stays below */
#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_LATER 3

/* ---- tables --------------------------------------------------------------------- */

#define TABLE_COLS 16

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows x ncols; row 0 is the header when there is one */
	size_t width[TABLE_COLS];
};

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "dotsctl: out of memory\n");
		exit(EXIT_USAGE);
	}
	return p;
}

/* What a JSON value prints as in a table: no control characters reach the
 * terminal, whatever the gateway (or a peer through it) put in a name. */
static char *cell_text(const json_t *v)
{
	char *s;

	if (!v || json_is_null(v)) {
		s = xmalloc(2);
		strcpy(s, "-");
	} else if (json_is_string(v)) {
		s = xmalloc(json_string_length(v) + 1);
		memcpy(s, json_string_value(v), json_string_length(v) + 1);
	} else if (json_is_integer(v)) {
		s = xmalloc(24);
		snprintf(s, 24, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_boolean(v)) {
		s = xmalloc(4);
		strcpy(s, json_is_true(v) ? "yes" : "no");
	} else {
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!s) {
			s = xmalloc(2);
			strcpy(s, "?");
		}
	}
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return s;
}

static void table_init(struct table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
}

static void table_add(struct table *t, char **row)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		char **v = realloc(t->cells, t->cap * t->ncols * sizeof(*v));
		if (!v) {
			fprintf(stderr, "dotsctl: out of memory\n");
			exit(EXIT_USAGE);
		}
		t->cells = v;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		size_t w = strlen(row[i]);
		t->cells[t->nrows * t->ncols + i] = row[i];
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
}

static void table_header(struct table *t, const char *const *names)
{
	char *row[TABLE_COLS];

	for (size_t i = 0; i < t->ncols; i++) {
		row[i] = xmalloc(strlen(names[i]) + 1);
		strcpy(row[i], names[i]);
	}
	table_add(t, row);
}

/* Columns two spaces apart; the last one is not padded. */
static void table_print(struct table *t)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *c = t->cells[r * t->ncols + i];
			if (i + 1 < t->ncols)
				printf("%-*s  ", (int)t->width[i], c);
			else
				printf("%s\n", c);
		}
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* Row of cells from the members named in keys ("a.b": member b of a). */
static void table_row_of(struct table *t, const json_t *o, const char *const *keys)
{
	char *row[TABLE_COLS];

	for (size_t i = 0; i < t->ncols; i++) {
		const json_t *v = o;
		char k[64];
		const char *p = keys[i], *dot;
		while (v && (dot = strchr(p, '.'))) {
			snprintf(k, sizeof(k), "%.*s", (int)(dot - p), p);
			v = json_object_get(v, k);
			p = dot + 1;
		}
		row[i] = cell_text(v ? json_object_get(v, p) : NULL);
	}
	table_add(t, row);
}

/* ---- printing each answer ------------------------------------------------------- */

static void kv(struct table *t, const char *k, char *v)
{
	char *row[2];

	row[0] = xmalloc(strlen(k) + 1);
	strcpy(row[0], k);
	row[1] = v;
	table_add(t, row);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s) {
		fprintf(stderr, "dotsctl: out of memory\n");
		exit(EXIT_USAGE);
	}
	return s;
}

static json_int_t geti(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void print_status(const json_t *a)
{
	const json_t *s = json_object_get(a, "sessions");
	json_int_t up = geti(a, "uptime");
	struct table t;

	table_init(&t, 2);
	kv(&t, "version", cell_text(json_object_get(a, "version")));
	kv(&t, "id", cell_text(json_object_get(a, "id")));
	kv(&t, "uptime", fmt("%" JSON_INTEGER_FORMAT "d %02d:%02d:%02d",
			     up / 86400, (int)(up / 3600 % 24), (int)(up / 60 % 60),
			     (int)(up % 60)));
	kv(&t, "mode", fmt("%s%s", json_string_value(json_object_get(a, "mode")) ?: "?",
			   json_is_true(json_object_get(a, "server-domain")) ?
				   " (server-domain)" : ""));
	kv(&t, "log-level", cell_text(json_object_get(a, "log-level")));
	kv(&t, "sessions", fmt("%" JSON_INTEGER_FORMAT " downstream, %" JSON_INTEGER_FORMAT
			       " upstream (%" JSON_INTEGER_FORMAT " ready)",
			       geti(s, "downstream"), geti(s, "upstream"),
			       geti(s, "upstream-ready")));
	kv(&t, "mitigations", cell_text(json_object_get(a, "mitigations")));
	kv(&t, "observers", cell_text(json_object_get(a, "observers")));
	kv(&t, "pending", fmt("%" JSON_INTEGER_FORMAT " upstream requests",
			      geti(a, "pending-upstream-requests")));
	kv(&t, "configured", fmt("%" JSON_INTEGER_FORMAT " clients, %" JSON_INTEGER_FORMAT
				 " upstreams", geti(a, "clients"), geti(a, "upstreams")));
	table_print(&t);
}

static void print_sessions(const json_t *a)
{
	static const char *const head[] = {
		"SIDE", "ID", "PEER", "IDENTITY", "TRANSPORT", "CIPHER", "STATE",
		"HB-MISSED", "ESTABLISHED",
	};
	const json_t *arr = json_object_get(a, "sessions"), *o;
	struct table t;
	size_t i;

	table_init(&t, 9);
	table_header(&t, head);
	json_array_foreach(arr, i, o) {
		bool up = !strcmp(json_string_value(json_object_get(o, "side")) ?: "", "upstream");
		char *row[9];
		row[0] = cell_text(json_object_get(o, "side"));
		row[1] = cell_text(json_object_get(o, "id"));
		row[2] = cell_text(json_object_get(o, "peer"));
		/* Who is at the other end: the client, or the upstream (and the
		 * client it serves, map mode). */
		if (up) {
			char *u = cell_text(json_object_get(o, "upstream"));
			char *c = cell_text(json_object_get(o, "client"));
			row[3] = fmt("%s (for %s)", u, c);
			free(u);
			free(c);
		} else {
			row[3] = cell_text(json_object_get(o, "client"));
		}
		row[4] = cell_text(json_object_get(o, "transport"));
		row[5] = cell_text(json_object_get(o, "cipher"));
		row[6] = cell_text(json_object_get(o, "state"));
		row[7] = fmt("%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
			     geti(o, "heartbeats-missed"), geti(o, "missing-hb-allowed"));
		row[8] = cell_text(json_object_get(o, "established"));
		table_add(&t, row);
	}
	table_print(&t);
}

static void print_mitigations(const json_t *a)
{
	static const char *const head[] = {
		"CLIENT", "CUID", "MID", "UPSTREAM", "SESSION", "UP-CUID", "UP-MID",
		"STATUS", "LIFETIME", "BYTES-DROPPED", "PKTS-DROPPED",
	};
	static const char *const keys[] = {
		"client", "cuid", "mid", "upstream", "upstream-session", "upstream-cuid",
		"upstream-mid", "status", "lifetime", "metrics.bytes-dropped",
		"metrics.pkts-dropped",
	};
	const json_t *arr = json_object_get(a, "mitigations"), *o;
	struct table t;
	size_t i;

	table_init(&t, 11);
	table_header(&t, head);
	json_array_foreach(arr, i, o)
		table_row_of(&t, o, keys);
	table_print(&t);
}

static void print_mitigation(const json_t *a)
{
	const json_t *arr = json_object_get(a, "mitigations"), *o, *v;
	const char *k;
	size_t i;

	json_array_foreach(arr, i, o) {
		struct table t;
		if (i)
			printf("\n");
		table_init(&t, 2);
		kv(&t, "client", cell_text(json_object_get(o, "client")));
		kv(&t, "cuid", cell_text(json_object_get(o, "cuid")));
		kv(&t, "mid", cell_text(json_object_get(o, "mid")));
		kv(&t, "cdid", cell_text(json_object_get(o, "cdid")));
		kv(&t, "upstream", cell_text(json_object_get(o, "upstream")));
		kv(&t, "upstream-session", cell_text(json_object_get(o, "upstream-session")));
		kv(&t, "upstream-cuid", cell_text(json_object_get(o, "upstream-cuid")));
		kv(&t, "upstream-mid", cell_text(json_object_get(o, "upstream-mid")));
		kv(&t, "status", cell_text(json_object_get(o, "status")));
		kv(&t, "lifetime", cell_text(json_object_get(o, "lifetime")));
		kv(&t, "observed", cell_text(json_object_get(o, "observed")));
		json_object_foreach((json_t *)json_object_get(o, "metrics"), k, v)
			kv(&t, k, cell_text(v));
		json_object_foreach((json_t *)json_object_get(o, "scope"), k, v)
			kv(&t, k, cell_text(v));
		table_print(&t);
	}
}

/* ---- talking to the gateway ------------------------------------------------------ */

static int connect_to(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "dotsctl: %s: socket path too long\n", path);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "dotsctl: cannot connect to %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends line, returns the answer line (malloc'd, without '\n') or NULL. */
static char *exchange(int fd, const char *line, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	size_t len = strlen(line), off = 0, cap = 4096, n = 0;
	char *buf;

	while (off < len) {
		ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "dotsctl: send: %s\n", strerror(errno));
			return NULL;
		}
		off += (size_t)w;
	}
	buf = xmalloc(cap);
	for (;;) {
		int64_t left = deadline - mono_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *nl;
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			fprintf(stderr, "dotsctl: no answer within %d ms\n", timeout_ms);
			break;
		}
		if (n == cap) {
			if (cap >= ANSWER_MAX) {
				fprintf(stderr, "dotsctl: answer longer than %u bytes\n", ANSWER_MAX);
				break;
			}
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (!nb)
				break;
			buf = nb;
		}
		r = recv(fd, buf + n, cap - n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "dotsctl: the gateway closed the connection without an answer\n");
			break;
		}
		nl = memchr(buf + n, '\n', (size_t)r);
		n += (size_t)r;
		if (nl) {
			*nl = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

static void print_requested(const json_t *a)
{
	printf("requested mid %" JSON_INTEGER_FORMAT " (cuid %s) on upstream %s\n",
	       geti(a, "mid"), json_string_value(json_object_get(a, "cuid")) ?: "?",
	       json_string_value(json_object_get(a, "upstream")) ?: "?");
}

static void print_withdrawn(const json_t *a)
{
	printf("withdrawal of mid %" JSON_INTEGER_FORMAT " sent\n", geti(a, "mid"));
}

static void print_drain(const json_t *a)
{
	if (json_is_true(json_object_get(a, "draining")))
		printf("draining: %" JSON_INTEGER_FORMAT " observations redirected\n",
		       geti(a, "observations-redirected"));
	else
		printf("drain off\n");
}

/* ---- command line ----------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dotsctl [-s SOCKET] [--json] [-t SECONDS] COMMAND [ARGS]\n"
		"commands:\n"
		"  status                          version, uptime, counts\n"
		"  sessions [downstream|upstream]  sessions on either side\n"
		"  mitigations [--client NAME]     mitigations and their upstream mapping\n"
		"  mitigation show CLIENT MID      one mitigation in full\n"
		"  log-level err|warn|info|debug   change the log level now\n"
		"  reload                          reload the configuration\n"
		"  request [--upstream NAME] [--lifetime S] [--port P[-Q]]... [--protocol N]...\n"
		"          PREFIX... | request [--upstream NAME] --file REQUEST.json\n"
		"                                  a mitigation request as the gateway's own\n"
		"  withdraw [--upstream NAME] MID  withdraw one of the gateway's own\n"
		"  drain [--off]                   redirect clients to server.drain (or stop)\n"
		"options:\n"
		"  -s, --socket PATH   control socket (default " DEFAULT_SOCKET ")\n"
		"  -j, --json          print the gateway's JSON answer as is\n"
		"  -t, --timeout SEC   how long to wait for the answer (default 10)\n"
		"exit: 0 ok, 1 refused by the gateway, 2 usage or no answer, 3 not implemented yet\n");
}

static int usage_error(const char *msg)
{
	fprintf(stderr, "dotsctl: %s\n", msg);
	usage(stderr);
	return EXIT_USAGE;
}

/* -1 when v cannot be put in a request (not UTF-8). */
static int set_str(json_t *req, const char *k, const char *v)
{
	return json_object_set_new(req, k, json_string(v));
}

static bool parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (!*s || *s == '-' || *s == '+')
		return false;
	v = strtoull(s, &end, 10);
	if (*end || errno || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* "P" or "P-Q" as a target-port-range element (RFC 9132 §4.4.1.2). */
static json_t *port_range(const char *s)
{
	char buf[16];
	char *dash;
	uint32_t lo, hi;

	if (strlen(s) >= sizeof(buf))
		return NULL;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (!parse_u32(buf, 65535, &lo))
		return NULL;
	if (!dash)
		return json_pack("{s:I}", "lower-port", (json_int_t)lo);
	if (!parse_u32(dash + 1, 65535, &hi) || hi < lo)
		return NULL;
	return json_pack("{s:I, s:I}", "lower-port", (json_int_t)lo,
			 "upper-port", (json_int_t)hi);
}

/* request's arguments into {"upstream"?, "body"}: the body is built from
 * flags, or read whole from --file. The gateway validates it as it would
 * a client's. */
static bool build_own_request(json_t *req, int argc, char **argv)
{
	json_t *entry = json_object(), *prefixes = json_array(),
	       *ports = json_array(), *protos = json_array(), *body = NULL;
	const char *file = NULL;
	uint32_t lifetime = 3600, v;
	bool ok = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
		json_t *pr;

		if (!strcmp(a, "--upstream") && next) {
			if (set_str(req, "upstream", next))
				goto out;
			i++;
		} else if (!strcmp(a, "--file") && next) {
			file = next;
			i++;
		} else if (!strcmp(a, "--lifetime") && next) {
			if (!parse_u32(next, INT32_MAX, &lifetime))
				goto out;
			i++;
		} else if (!strcmp(a, "--port") && next) {
			if (!(pr = port_range(next)) || json_array_append_new(ports, pr))
				goto out;
			i++;
		} else if (!strcmp(a, "--protocol") && next) {
			if (!parse_u32(next, 255, &v) ||
			    json_array_append_new(protos, json_integer(v)))
				goto out;
			i++;
		} else if (a[0] != '-') {
			if (json_array_append_new(prefixes, json_string(a)))
				goto out;
		} else {
			goto out;
		}
	}
	if (file) {
		json_error_t e;
		if (json_array_size(prefixes) || json_array_size(ports) ||
		    json_array_size(protos))
			goto out;
		body = json_load_file(file, JSON_REJECT_DUPLICATES, &e);
		if (!body) {
			fprintf(stderr, "dotsctl: %s:%d: %s\n", file, e.line, e.text);
			goto out;
		}
	} else {
		if (!json_array_size(prefixes))
			goto out;
		json_object_set(entry, "target-prefix", prefixes);
		if (json_array_size(ports))
			json_object_set(entry, "target-port-range", ports);
		if (json_array_size(protos))
			json_object_set(entry, "target-protocol", protos);
		json_object_set_new(entry, "lifetime", json_integer(lifetime));
		body = json_pack("{s:{s:[O]}}", "ietf-dots-signal-channel:mitigation-scope",
				 "scope", entry);
	}
	ok = body && !json_object_set_new(req, "body", body);
	body = NULL;
out:
	json_decref(body);
	json_decref(entry);
	json_decref(prefixes);
	json_decref(ports);
	json_decref(protos);
	return ok;
}

/* Builds the request for argv; NULL after a usage error message. */
static json_t *build_request(int argc, char **argv, void (**print)(const json_t *))
{
	const char *cmd = argv[0];
	json_t *req = json_pack("{s:s}", "cmd", cmd);

	if (!req)
		return NULL;
	*print = NULL;
	if (!strcmp(cmd, "status") && argc == 1) {
		*print = print_status;
	} else if (!strcmp(cmd, "sessions") && argc <= 2) {
		if (argc == 2) {
			if (strcmp(argv[1], "downstream") && strcmp(argv[1], "upstream"))
				goto bad;
			if (set_str(req, "side", argv[1]))
				goto bad;
		}
		*print = print_sessions;
	} else if (!strcmp(cmd, "mitigations") && (argc == 1 || argc == 3)) {
		if (argc == 3) {
			if (strcmp(argv[1], "--client"))
				goto bad;
			if (set_str(req, "client", argv[2]))
				goto bad;
		}
		*print = print_mitigations;
	} else if (!strcmp(cmd, "mitigation") && argc == 4 && !strcmp(argv[1], "show")) {
		char *end;
		errno = 0;
		unsigned long long mid = strtoull(argv[3], &end, 10);
		if (!*argv[3] || *end || errno || mid > UINT32_MAX || argv[3][0] == '-')
			goto bad;
		if (set_str(req, "client", argv[2]) ||
		    json_object_set_new(req, "mid", json_integer((json_int_t)mid)))
			goto bad;
		*print = print_mitigation;
	} else if (!strcmp(cmd, "log-level") && argc == 2) {
		if (set_str(req, "level", argv[1]))
			goto bad;
	} else if (!strcmp(cmd, "reload") && argc == 1) {
	} else if (!strcmp(cmd, "request")) {
		if (!build_own_request(req, argc, argv))
			goto bad;
		*print = print_requested;
	} else if (!strcmp(cmd, "withdraw") && (argc == 2 || argc == 4)) {
		uint32_t mid;
		if (argc == 4 && (strcmp(argv[1], "--upstream") ||
				  set_str(req, "upstream", argv[2])))
			goto bad;
		if (!parse_u32(argv[argc - 1], UINT32_MAX, &mid) ||
		    json_object_set_new(req, "mid", json_integer(mid)))
			goto bad;
		*print = print_withdrawn;
	} else if (!strcmp(cmd, "drain") && argc <= 2) {
		if (argc == 2 && (strcmp(argv[1], "--off") ||
				  json_object_set_new(req, "off", json_true())))
			goto bad;
		*print = print_drain;
	} else {
		goto bad;
	}
	return req;
bad:
	json_decref(req);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_SOCKET;
	void (*print)(const json_t *) = NULL;
	bool as_json = false;
	int timeout_s = 10, c, fd, rc;
	json_t *req, *ans;
	char *line, *text;

	/* "+": options end at the command, so "mitigations --client X" is
	 * the command's own argument. */
	while ((c = getopt_long(argc, argv, "+s:jt:hV", opts, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'j': as_json = true; break;
		case 't':
			timeout_s = atoi(optarg);
			if (timeout_s < 1 || timeout_s > 3600)
				return usage_error("timeout must be 1..3600 seconds");
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("dotsctl %s\n", DOTSGW_VERSION); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("no command");
	req = build_request(argc - optind, argv + optind, &print);
	if (!req)
		return usage_error("unknown command or wrong arguments");
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		return EXIT_USAGE;
	if (strlen(text) > CTL_REQUEST_MAX) {
		free(text);
		return usage_error("arguments too long");
	}
	line = fmt("%s\n", text);
	free(text);
	fd = connect_to(path);
	if (fd < 0) {
		free(line);
		return EXIT_USAGE;
	}
	text = exchange(fd, line, timeout_s * 1000);
	close(fd);
	free(line);
	if (!text)
		return EXIT_USAGE;
	ans = json_loads(text, 0, NULL);
	if (!json_is_object(ans) || !json_is_boolean(json_object_get(ans, "ok"))) {
		fprintf(stderr, "dotsctl: malformed answer from the gateway\n");
		json_decref(ans);
		free(text);
		return EXIT_USAGE;
	}
	if (as_json)
		printf("%s\n", text);
	free(text);
	if (!json_is_true(json_object_get(ans, "ok"))) {
		const char *err = json_string_value(json_object_get(ans, "error"));
		if (!as_json)
			fprintf(stderr, "dotsctl: %s\n", err ? err : "refused");
		rc = err && !strcmp(err, CTL_ERR_NOT_IMPLEMENTED) ? EXIT_LATER : EXIT_REFUSED;
		json_decref(ans);
		return rc;
	}
	if (!as_json) {
		if (print) {
			print(ans);
		} else if (json_object_get(ans, "log-level")) {
			printf("log level %s (was %s)\n",
			       json_string_value(json_object_get(ans, "log-level")) ?: "?",
			       json_string_value(json_object_get(ans, "previous")) ?: "?");
		} else {
			printf("done\n");
		}
	}
	json_decref(ans);
	return 0;
}
