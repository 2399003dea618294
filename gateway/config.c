/*
 * config.c: loads the libconfig file described in config.h.
 *
 * Each section has one table of keys (cf_*_keys below); one row says how
 * a key is typed, bounded and defaulted, and which struct field it fills.
 * cf_apply() walks a libconfig group against its table, so a key that has
 * no row is an "unknown key" error. The section functions then run the
 * checks that involve several keys, and cf_check_server_creds() the ones
 * that span sections.
 *
 * Errors are collected, sorted by file and line, and handed to report()
 * only when the whole file has been examined, so that one run shows the
 * operator every mistake in file order. Line 0 means the file as a whole
 * (unreadable; the implicit listener when there is no server group).
 *
 * Relative cert/key/ca paths are taken from the directory of the file that
 * names them. @include keeps libconfig's meaning (relative to the working
 * directory): libconfig 1.5 would prefix an include dir to absolute paths
 * too. libconfig 1.5 also wraps integers beyond 32 bits that lack the L
 * suffix before we see them; the bounds checks catch most such values.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/prefix.h"

/* Past this many, errors are counted rather than kept: a mangled file must
 * not cost unbounded memory or a flood of lines. */
#define CF_MAX_ERRORS 200
/* Longest part of a configured value echoed back in an error line. */
#define CF_ECHO_MAX DG_ECHO_MAX

enum cf_type {
	CF_SECTION,  /* a nested group or list, parsed by its section function */
	CF_BOOL,     /* bool */
	CF_INT,      /* unsigned integer field in [lo, hi] */
	CF_ENUM,     /* enum field, value named in enums[] */
	CF_STRING,   /* char *, length in [lo, hi], then check() */
	CF_FILE,     /* char *, path of a readable regular file */
	CF_PSK,      /* uint8_t * + size_t at off_n: raw string or "hex:..." */
	CF_STRLIST,  /* char ** + size_t at off_n: each element as CF_STRING */
	CF_PREFIXES, /* struct prefix_set: canonical IP prefixes */
	CF_PORTS,    /* struct port_range * + size_t at off_n */
	CF_TRIPLE,   /* [min, default, max] of one session parameter */
};

#define CF_REQUIRED 0x1 /* "missing" when absent */
#define CF_DECIMAL 0x2  /* CF_TRIPLE of decimals kept in hundredths */

struct cf_enum {
	const char *name;
	int value;
};

struct cf_key {
	const char *name;
	enum cf_type type;
	size_t off, width; /* the field filled (CF_TRIPLE: in model_session_params) */
	size_t off_n;      /* its length or count field, for PSK and lists */
	long long lo, hi;  /* value bounds (CF_INT, CF_TRIPLE), length bounds (strings) */
	long long def;     /* default of CF_BOOL, CF_INT, CF_ENUM */
	const char *sdef;  /* default of CF_STRING */
	long long tdef[3]; /* default of CF_TRIPLE */
	const struct cf_enum *enums;
	const char *(*check)(const char *v); /* NULL when fine, else why not */
	unsigned flags;
};

#define CF_FIELD(T, f) .off = offsetof(T, f), .width = sizeof(((T *)0)->f)
#define CF_COUNT(T, f) .off_n = offsetof(T, f)
#define CF_PARAM(f)                                            \
	.off = offsetof(struct model_session_params, f),       \
	.width = sizeof(((struct model_session_params *)0)->f)
#define CF_PATH .lo = 1, .hi = 4095
#define CF_NKEYS(t) (sizeof(t) / sizeof((t)[0]))

static const char *cf_check_visible(const char *v);
static const char *cf_check_ip(const char *v);
static const char *cf_check_host(const char *v);
static const char *cf_check_dns(const char *v);
static const char *cf_check_http_path(const char *v);
static const char *cf_check_abs_path(const char *v);
static const char *cf_check_mode(const char *v);
static const char *cf_check_resolver(const char *v);
static const char *cf_check_disc_transport(const char *v);

static const struct cf_enum cf_modes[] = {
	{ "map", GW_MODE_MAP },
	{ NULL, 0 }
};

static const struct cf_enum cf_levels[] = {
	{ "err", DG_LOG_ERR },
	{ "warn", DG_LOG_WARN },
	{ "info", DG_LOG_INFO },
	{ "debug", DG_LOG_DEBUG },
	{ NULL, 0 }
};

static const struct cf_enum cf_transports[] = {
	{ "dtls", GW_TR_DTLS },
	{ "tls", GW_TR_TLS },
	{ "udp", GW_TR_UDP },
	{ "tcp", GW_TR_TCP },
	{ NULL, 0 }
};

static const struct cf_key cf_root_keys[] = {
	{ .name = "gateway", .type = CF_SECTION },
	{ .name = "server", .type = CF_SECTION },
	{ .name = "clients", .type = CF_SECTION },
	{ .name = "upstreams", .type = CF_SECTION },
	{ .name = "metrics", .type = CF_SECTION },
	{ .name = "control", .type = CF_SECTION },
};

static const struct cf_key cf_gateway_keys[] = {
	{ "mode", CF_ENUM, CF_FIELD(struct gw_config, mode),
	  .enums = cf_modes, .def = GW_MODE_MAP },
	/* RFC 9132 §4.4.1.2: only a server-domain gateway inserts a cdid. */
	{ "server-domain", CF_BOOL, CF_FIELD(struct gw_config, server_domain),
	  .def = false },
	{ "insecure-lab", CF_BOOL, CF_FIELD(struct gw_config, insecure_lab),
	  .def = false },
	{ "log-level", CF_ENUM, CF_FIELD(struct gw_config, log_level),
	  .enums = cf_levels, .def = DG_LOG_INFO },
	/* RFC 8768 §3: Hop-Limit is 1..255, 16 recommended. */
	{ "hop-limit", CF_INT, CF_FIELD(struct gw_config, hop_limit),
	  .lo = 1, .hi = 255, .def = DG_HOP_LIMIT_DEFAULT },
	{ "max-body", CF_INT, CF_FIELD(struct gw_config, max_body),
	  .lo = 64, .hi = 65536, .def = 8192 },
	{ "request-timeout", CF_INT, CF_FIELD(struct gw_config, request_timeout),
	  .lo = 1, .hi = 600, .def = 20 },
	{ "id", CF_STRING, CF_FIELD(struct gw_config, id),
	  .lo = 1, .hi = 64, .sdef = "dotsgw", .check = cf_check_visible },
};

static const struct cf_key cf_server_keys[] = {
	{ .name = "listen", .type = CF_SECTION },
	{ "psk-hint", CF_STRING, CF_FIELD(struct gw_config, server_cred.psk_identity),
	  .lo = 1, .hi = 128 },
	{ "cert", CF_FILE, CF_FIELD(struct gw_config, server_cred.cert), CF_PATH },
	{ "key", CF_FILE, CF_FIELD(struct gw_config, server_cred.key), CF_PATH },
	{ "ca", CF_FILE, CF_FIELD(struct gw_config, server_cred.ca), CF_PATH },
	{ .name = "session", .type = CF_SECTION },
	{ .name = "drain", .type = CF_SECTION },
	/* A reconnect storm reaches the DTLS/UDP listeners as one burst: the
	 * kernel's default buffer (about 208 KB) dropped thousands of
	 * handshake datagrams. 0 keeps the kernel's default. */
	{ "udp-receive-buffer", CF_INT, CF_FIELD(struct gw_config, udp_rcvbuf),
	  .lo = 0, .hi = 1073741824, .def = 4194304 },
};

/* RFC 9132 §4.6: alt-server is a domain name, alt-server-record IP
 * addresses, Max-Age the redirection's lifetime (0: this request only). */
static const struct cf_key cf_drain_keys[] = {
	{ "alternate", CF_STRING, CF_FIELD(struct gw_config, drain.alternate),
	  .flags = CF_REQUIRED, .lo = 1, .hi = 253, .check = cf_check_dns },
	{ "addresses", CF_STRLIST, CF_FIELD(struct gw_config, drain.addresses),
	  CF_COUNT(struct gw_config, drain.naddresses), .lo = 2, .hi = 45,
	  .check = cf_check_ip },
	{ "ttl", CF_INT, CF_FIELD(struct gw_config, drain.ttl),
	  .lo = 0, .hi = 4294967295LL, .def = 300 },
};

/*
 * Element bounds follow the YANG types (uint16; decimal64 with 2 fraction
 * digits, RFC 9132 §5.3); ACK_RANDOM_FACTOR below 1.0 is forbidden by
 * RFC 7252 §4.8.
 */
static const struct cf_key cf_session_keys[] = {
	{ "heartbeat-interval", CF_TRIPLE, CF_PARAM(heartbeat_interval),
	  .lo = 1, .hi = 65535, .tdef = { 15, 30, 240 } },
	{ "missing-hb-allowed", CF_TRIPLE, CF_PARAM(missing_hb_allowed),
	  .lo = 1, .hi = 65535, .tdef = { 1, 15, 60 } },
	{ "probing-rate", CF_TRIPLE, CF_PARAM(probing_rate),
	  .lo = 1, .hi = 65535, .tdef = { 1, 5, 1000 } },
	{ "max-retransmit", CF_TRIPLE, CF_PARAM(max_retransmit),
	  .lo = 1, .hi = 65535, .tdef = { 2, 3, 15 } },
	{ "ack-timeout", CF_TRIPLE, CF_PARAM(ack_timeout), .flags = CF_DECIMAL,
	  .lo = 10, .hi = 30000, .tdef = { 100, 200, 3000 } },
	{ "ack-random-factor", CF_TRIPLE, CF_PARAM(ack_random_factor),
	  .flags = CF_DECIMAL, .lo = 100, .hi = 1000, .tdef = { 110, 150, 400 } },
};

static const struct cf_key cf_listen_keys[] = {
	{ "transport", CF_ENUM, CF_FIELD(struct gw_listen, transport),
	  .enums = cf_transports, .def = GW_TR_DTLS },
	{ "address", CF_STRING, CF_FIELD(struct gw_listen, address),
	  .lo = 1, .hi = 64, .sdef = "::", .check = cf_check_ip },
	/* RFC 9132 §4.3: 4646 over UDP and TCP unless configured otherwise. */
	{ "port", CF_INT, CF_FIELD(struct gw_listen, port),
	  .lo = 1, .hi = 65535, .def = 4646 },
};

static const struct cf_key cf_client_keys[] = {
	{ "name", CF_STRING, CF_FIELD(struct gw_client, name), .flags = CF_REQUIRED,
	  .lo = 1, .hi = 64, .check = cf_check_visible },
	{ "psk-identity", CF_STRING, CF_FIELD(struct gw_client, psk_identity),
	  .lo = 1, .hi = 128 },
	{ "psk-key", CF_PSK, CF_FIELD(struct gw_client, psk_key),
	  CF_COUNT(struct gw_client, psk_key_len), .lo = 1, .hi = 256 },
	{ "cert-name", CF_STRING, CF_FIELD(struct gw_client, cert_name),
	  .lo = 1, .hi = 253, .check = cf_check_visible },
	{ "upstream", CF_STRING, CF_FIELD(struct gw_client, upstream_name),
	  .flags = CF_REQUIRED, .lo = 1, .hi = 64, .check = cf_check_visible },
	{ "allowed-prefixes", CF_PREFIXES, CF_FIELD(struct gw_client, scope.prefixes) },
	{ "allowed-fqdns", CF_STRLIST, CF_FIELD(struct gw_client, scope.fqdns),
	  CF_COUNT(struct gw_client, scope.nfqdns), .lo = 1, .hi = 253,
	  .check = cf_check_dns },
	{ "allowed-uris", CF_STRLIST, CF_FIELD(struct gw_client, scope.uris),
	  CF_COUNT(struct gw_client, scope.nuris), .lo = 1, .hi = 2048,
	  .check = cf_check_visible },
	{ "allowed-ports", CF_PORTS, CF_FIELD(struct gw_client, scope.ports),
	  CF_COUNT(struct gw_client, scope.nports) },
	{ "allow-aliases", CF_BOOL, CF_FIELD(struct gw_client, scope.allow_aliases),
	  .def = false },
};

static const struct cf_key cf_upstream_keys[] = {
	{ "name", CF_STRING, CF_FIELD(struct gw_upstream, name), .flags = CF_REQUIRED,
	  .lo = 1, .hi = 64, .check = cf_check_visible },
	{ "address", CF_STRING, CF_FIELD(struct gw_upstream, address),
	  .lo = 1, .hi = 253, .check = cf_check_host },
	{ "port", CF_INT, CF_FIELD(struct gw_upstream, port),
	  .lo = 1, .hi = 65535, .def = 4646 },
	{ "transport", CF_ENUM, CF_FIELD(struct gw_upstream, transport),
	  .enums = cf_transports, .def = GW_TR_DTLS },
	{ "psk-identity", CF_STRING, CF_FIELD(struct gw_upstream, cred.psk_identity),
	  .lo = 1, .hi = 128 },
	{ "psk-key", CF_PSK, CF_FIELD(struct gw_upstream, cred.psk_key),
	  CF_COUNT(struct gw_upstream, cred.psk_key_len), .lo = 1, .hi = 256 },
	{ "cert", CF_FILE, CF_FIELD(struct gw_upstream, cred.cert), CF_PATH },
	{ "key", CF_FILE, CF_FIELD(struct gw_upstream, cred.key), CF_PATH },
	{ "ca", CF_FILE, CF_FIELD(struct gw_upstream, cred.ca), CF_PATH },
	{ "server-name", CF_STRING, CF_FIELD(struct gw_upstream, server_name),
	  .lo = 1, .hi = 253, .check = cf_check_dns },
	{ "heartbeat-interval", CF_INT, CF_FIELD(struct gw_upstream, heartbeat_interval),
	  .lo = 1, .hi = 3600, .def = 30 },
	{ "missing-hb-allowed", CF_INT, CF_FIELD(struct gw_upstream, missing_hb_allowed),
	  .lo = 1, .hi = 100, .def = 5 },
	{ "reconnect-min", CF_INT, CF_FIELD(struct gw_upstream, reconnect_min),
	  .lo = 1, .hi = 86400, .def = 60 },
	{ "reconnect-max", CF_INT, CF_FIELD(struct gw_upstream, reconnect_max),
	  .lo = 1, .hi = 86400, .def = 300 },
	{ .name = "discovery", .type = CF_SECTION },
};

/* RFC 8973: where the upstream's servers are discovered. */
static const struct cf_key cf_discovery_keys[] = {
	{ "domain", CF_STRING, CF_FIELD(struct gw_discovery, domain),
	  .lo = 1, .hi = 253, .check = cf_check_dns },
	{ "dhcp", CF_BOOL, CF_FIELD(struct gw_discovery, dhcp), .def = false },
	{ "dhcp-dir", CF_STRING, CF_FIELD(struct gw_discovery, dhcp_dir),
	  .lo = 1, .hi = 4095, .sdef = "/run/dotsgw/dhcp", .check = cf_check_abs_path },
	{ "dns", CF_BOOL, CF_FIELD(struct gw_discovery, dns), .def = true },
	{ "resolver", CF_STRING, CF_FIELD(struct gw_discovery, resolver),
	  .lo = 2, .hi = 53, .check = cf_check_resolver },
	{ "transports", CF_STRLIST, CF_FIELD(struct gw_discovery, transports),
	  CF_COUNT(struct gw_discovery, ntransports), .lo = 3, .hi = 3,
	  .check = cf_check_disc_transport },
	/* RFC 8973 §4: discovery runs again when a TTL expires; a floor
	 * keeps a zone with tiny TTLs from driving a query storm. */
	{ "ttl-min", CF_INT, CF_FIELD(struct gw_discovery, ttl_min),
	  .lo = 1, .hi = 86400, .def = 30 },
};

static const struct cf_key cf_metrics_keys[] = {
	{ "enabled", CF_BOOL, CF_FIELD(struct gw_config, metrics.enabled),
	  .def = false },
	/* Plain HTTP without authentication: loopback by default. */
	{ "address", CF_STRING, CF_FIELD(struct gw_config, metrics.address),
	  .lo = 1, .hi = 64, .sdef = "127.0.0.1", .check = cf_check_ip },
	{ "port", CF_INT, CF_FIELD(struct gw_config, metrics.port),
	  .lo = 1, .hi = 65535, .def = 9646 },
	{ "path", CF_STRING, CF_FIELD(struct gw_config, metrics.path),
	  .lo = 1, .hi = 128, .sdef = "/metrics", .check = cf_check_http_path },
};

/* sun_path holds 108 bytes with the terminating NUL (unix(7)). */
static const struct cf_key cf_control_keys[] = {
	{ "socket", CF_STRING, CF_FIELD(struct gw_config, control_socket),
	  .lo = 1, .hi = 107, .sdef = "/run/dotsgw/control.sock",
	  .check = cf_check_abs_path },
	{ "mode", CF_STRING, CF_FIELD(struct gw_config, control_mode_text),
	  .lo = 1, .hi = 4, .sdef = "0660", .check = cf_check_mode },
	{ "group", CF_STRING, CF_FIELD(struct gw_config, control_group),
	  .lo = 1, .hi = 64, .check = cf_check_visible },
};

/* cf_apply() reports refused rows in a 64-bit mask. */
#define CF_MASK_OK(t) _Static_assert(CF_NKEYS(t) <= 64, #t " too long")
CF_MASK_OK(cf_root_keys);
CF_MASK_OK(cf_gateway_keys);
CF_MASK_OK(cf_server_keys);
CF_MASK_OK(cf_session_keys);
CF_MASK_OK(cf_listen_keys);
CF_MASK_OK(cf_client_keys);
CF_MASK_OK(cf_upstream_keys);
CF_MASK_OK(cf_metrics_keys);
CF_MASK_OK(cf_control_keys);
CF_MASK_OK(cf_discovery_keys);

struct cf_err {
	char *text;
	const char *file;
	unsigned line;
	size_t seq;
	size_t rank; /* order of the file's first appearance */
};

struct cf_ctx {
	struct gw_config *cfg;
	const char *path;
	config_report_fn report;
	void *arg;
	struct cf_err *errs;
	size_t nerrs, cap, dropped, seq;
	size_t total; /* errors found so far, kept or not */
	bool nomem;
	const config_setting_t *server;  /* NULL when absent */
	const config_setting_t *listen;
	const config_setting_t *clients;
	const config_setting_t *upstreams;
	bool clients_broken; /* a client entry was not even a group */
};

/* ---- errors ------------------------------------------------------------ */

static const char *cf_file(const struct cf_ctx *c, const config_setting_t *s)
{
	const char *f = s ? config_setting_source_file(s) : NULL;

	return f ? f : c->path;
}

static unsigned cf_line(const config_setting_t *s)
{
	return s ? config_setting_source_line(s) : 0;
}

/* file is kept by pointer until cf_flush_errors(): it must be c->path or
 * a name libconfig owns (alive until config_destroy()). */
static void cf_errl(struct cf_ctx *c, const char *file, unsigned line,
		    const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void cf_errl(struct cf_ctx *c, const char *file, unsigned line,
		    const char *key, const char *fmt, ...)
{
	char reason[768], text[1024];
	struct cf_err *e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(text, sizeof(text), "%s:%u: %s: %s", file, line, key, reason);
	c->total++;

	if (c->nerrs == CF_MAX_ERRORS) {
		c->dropped++;
		return;
	}
	if (c->nerrs == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		struct cf_err *v = realloc(c->errs, ncap * sizeof(*v));

		if (!v)
			goto direct;
		c->errs = v;
		c->cap = ncap;
	}
	e = &c->errs[c->nerrs];
	e->text = strdup(text);
	if (!e->text)
		goto direct;
	e->file = file;
	e->line = line;
	e->seq = c->seq++;
	c->nerrs++;
	return;
direct:
	/* Out of memory: an unsorted line beats a lost one. */
	c->nomem = true;
	if (c->report)
		c->report(text, c->arg);
}

#define cf_err(c, s, key, ...) cf_errl(c, cf_file(c, s), cf_line(s), key, __VA_ARGS__)

static int cf_err_cmp(const void *a, const void *b)
{
	const struct cf_err *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void cf_flush_errors(struct cf_ctx *c)
{
	char text[256];
	size_t i, j;

	for (i = 0; i < c->nerrs; i++) {
		c->errs[i].rank = i;
		for (j = 0; j < i; j++) {
			if (strcmp(c->errs[j].file, c->errs[i].file) == 0) {
				c->errs[i].rank = c->errs[j].rank;
				break;
			}
		}
	}
	if (c->nerrs)
		qsort(c->errs, c->nerrs, sizeof(*c->errs), cf_err_cmp);
	for (i = 0; i < c->nerrs; i++) {
		if (c->report)
			c->report(c->errs[i].text, c->arg);
		free(c->errs[i].text);
	}
	free(c->errs);
	c->errs = NULL;
	if (c->dropped && c->report) {
		snprintf(text, sizeof(text), "%s: %zu more errors not shown",
			 c->path, c->dropped);
		c->report(text, c->arg);
	}
}

/* Copies at most CF_ECHO_MAX bytes of a configured value for an error line,
 * with anything unprintable replaced, so the report cannot be used to
 * inject terminal escapes or fake log lines. */
static const char *cf_echo(const char *v, char buf[CF_ECHO_MAX + 4])
{
	return dg_echo(v, SIZE_MAX, buf);
}

static void cf_key_path(char *buf, size_t len, const char *where, const char *name)
{
	char n[CF_ECHO_MAX + 4];

	cf_echo(name ? name : "?", n);
	if (where[0])
		snprintf(buf, len, "%s.%s", where, n);
	else
		snprintf(buf, len, "%s", n);
}

/* ---- value checks -------------------------------------------------------- */

static const char *cf_check_visible(const char *v)
{
	for (; *v; v++)
		if (*v <= 0x20 || *v >= 0x7f)
			return "must be printable ASCII without spaces";
	return NULL;
}

/* A resolver for discovery: "IP", "IPv4:PORT" or "[IPv6]:PORT". */
static const char *cf_check_resolver(const char *v)
{
	char host[64];
	const char *port = NULL, *end;
	unsigned long p;
	uint8_t a[16];
	size_t n;

	if (v[0] == '[') {
		if (!(end = strchr(v, ']')) || (end[1] != ':' && end[1] != '\0'))
			return "not IP, IPv4:PORT or [IPv6]:PORT";
		n = (size_t)(end - v - 1);
		port = end[1] ? end + 2 : NULL;
		v++;
	} else if ((end = strchr(v, ':')) && !strchr(end + 1, ':')) {
		n = (size_t)(end - v);
		port = end + 1;
	} else {
		n = strlen(v);
	}
	if (n >= sizeof(host))
		return "address too long";
	memcpy(host, v, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, a) != 1 && inet_pton(AF_INET6, host, a) != 1)
		return "not a numeric IPv4 or IPv6 address (with an optional :PORT)";
	if (port) {
		char *e;
		if (!*port || *port < '0' || *port > '9')
			return "bad port";
		p = strtoul(port, &e, 10);
		if (*e || p < 1 || p > 65535)
			return "port not in 1..65535";
	}
	return NULL;
}

static const char *cf_check_disc_transport(const char *v)
{
	return strcmp(v, "udp") == 0 || strcmp(v, "tcp") == 0 ? NULL :
	       "not \"udp\" (signal.udp) or \"tcp\" (signal.tcp)";
}

static const char *cf_check_ip(const char *v)
{
	uint8_t a[16];

	if (inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1)
		return NULL;
	return "not a numeric IPv4 or IPv6 address";
}

/* A DNS name: labels of letters, digits, '-' and '_' (RFC 1035 §2.3.4
 * lengths), an optional final dot. */
static const char *cf_check_dns(const char *v)
{
	size_t total = strlen(v), label = 0;
	bool numeric = true, last_numeric = true;
	const char *p;

	if (total > 253)
		return "longer than 253 bytes";
	for (p = v; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return "not a valid DNS name (empty label)";
			last_numeric = numeric;
			numeric = true;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return "not a valid DNS name";
		if (*p < '0' || *p > '9')
			numeric = false;
		if (++label > 63)
			return "not a valid DNS name (label longer than 63)";
	}
	if (total == 0 || (label == 0 && total == 1))
		return "not a valid DNS name";
	/* RFC 1123 §2.1: a top-level label is never all-numeric, so
	 * "192.0.2.300" is a broken address, not a host name. */
	if (label ? numeric : last_numeric)
		return "not a valid DNS name (all-numeric last label)";
	return NULL;
}

/* An origin-form path (RFC 9112 §3.2.1) without query: what the endpoint
 * compares the request's path with. */
static const char *cf_check_http_path(const char *v)
{
	if (v[0] != '/')
		return "must start with /";
	for (; *v; v++)
		if (*v <= 0x20 || *v >= 0x7f || *v == '?' || *v == '#' || *v == '%')
			return "only printable ASCII without spaces, ?, # or %";
	return NULL;
}

static const char *cf_check_host(const char *v)
{
	if (!cf_check_ip(v))
		return NULL;
	if (!cf_check_dns(v))
		return NULL;
	return "not an IP address or host name";
}

static const char *cf_check_abs_path(const char *v)
{
	if (v[0] != '/')
		return "must be an absolute path";
	if (v[strlen(v) - 1] == '/')
		return "names a directory";
	return NULL;
}

/* Permission bits in octal, as chmod(1) takes them; no set-id bits. */
static const char *cf_check_mode(const char *v)
{
	for (const char *p = v; *p; p++)
		if (*p < '0' || *p > '7')
			return "not an octal mode like \"0660\"";
	if (strtoul(v, NULL, 8) > 0777)
		return "only permission bits (at most 0777)";
	return NULL;
}

static bool cf_has_control(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return true;
	return false;
}

static int cf_hex_nibble(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* ---- storing into the struct --------------------------------------------- */

static void cf_put_uint(void *base, size_t off, size_t width, unsigned long long v)
{
	uint8_t *p = (uint8_t *)base + off;

	switch (width) {
	case 1: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
	case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
	case 8: { uint64_t x = v; memcpy(p, &x, 8); break; }
	}
}

static void *cf_field(void *base, size_t off)
{
	return (uint8_t *)base + off;
}

static void cf_put_string(void *base, const struct cf_key *k, char *s)
{
	char **f = cf_field(base, k->off);

	free(*f);
	*f = s;
}

static char *cf_strdup(struct cf_ctx *c, const char *s)
{
	char *d = strdup(s);

	if (!d)
		c->nomem = true;
	return d;
}

static void cf_defaults(struct cf_ctx *c, const struct cf_key *tab, size_t n,
			void *base)
{
	struct gw_config *cfg = c->cfg;
	const struct cf_key *k;
	struct model_session_params *sets[6];
	size_t i, s;

	for (k = tab; k < tab + n; k++) {
		switch (k->type) {
		case CF_BOOL:
		case CF_INT:
		case CF_ENUM:
			cf_put_uint(base, k->off, k->width, (unsigned long long)k->def);
			break;
		case CF_STRING:
			if (k->sdef)
				cf_put_string(base, k, cf_strdup(c, k->sdef));
			break;
		case CF_TRIPLE:
			/* Both sets get the same limits (config.h). */
			sets[0] = &cfg->session_mitigating.min;
			sets[1] = &cfg->session_idle.min;
			sets[2] = &cfg->session_default.mitigating;
			sets[3] = &cfg->session_default.idle;
			sets[4] = &cfg->session_mitigating.max;
			sets[5] = &cfg->session_idle.max;
			for (s = 0; s < 6; s++) {
				i = s / 2;
				cf_put_uint(sets[s], k->off, k->width,
					    (unsigned long long)k->tdef[i]);
			}
			break;
		default:
			break;
		}
	}
}

/* ---- parsing one key ------------------------------------------------------- */

static const char *cf_type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	}
	return "unknown";
}

static void cf_wrong_type(struct cf_ctx *c, const config_setting_t *s,
			  const char *key, const char *want)
{
	cf_err(c, s, key, "wrong type: expected %s, got %s", want,
	       cf_type_name(config_setting_type(s)));
}

/* A string value, or NULL after reporting why it is not acceptable. */
static const char *cf_get_string(struct cf_ctx *c, const config_setting_t *s,
				 const char *key, const struct cf_key *k)
{
	const char *v, *why;
	char e[CF_ECHO_MAX + 4];
	size_t len;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cf_wrong_type(c, s, key, "a string");
		return NULL;
	}
	v = config_setting_get_string(s);
	len = strlen(v);
	if (len == 0 && k->lo > 0) {
		cf_err(c, s, key, "must not be empty");
		return NULL;
	}
	/* CF_PSK bounds the decoded key instead */
	if (k->type != CF_PSK && k->hi > 0 && len > (size_t)k->hi) {
		cf_err(c, s, key, "longer than %lld bytes", k->hi);
		return NULL;
	}
	if (k->type != CF_PSK && cf_has_control(v)) {
		cf_err(c, s, key, "contains control characters");
		return NULL;
	}
	if (k->check && (why = k->check(v)) != NULL) {
		cf_err(c, s, key, "\"%s\": %s", cf_echo(v, e), why);
		return NULL;
	}
	return v;
}

static bool cf_get_int(struct cf_ctx *c, const config_setting_t *s,
		       const char *key, long long *out)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		*out = config_setting_get_int64(s);
		return true;
	}
	cf_wrong_type(c, s, key, "an integer");
	return false;
}

static void cf_parse_file(struct cf_ctx *c, const config_setting_t *s,
			  const char *key, const struct cf_key *k, void *base)
{
	const char *v = cf_get_string(c, s, key, k), *src, *slash;
	char e[CF_ECHO_MAX + 4], *path;
	struct stat st;
	size_t dlen;

	if (!v)
		return;
	/* A relative path is taken from the directory of the file that
	 * names it, so a configuration tree can be moved as a whole. */
	src = cf_file(c, s);
	slash = strrchr(src, '/');
	if (v[0] != '/' && slash) {
		dlen = (size_t)(slash - src) + 1;
		path = malloc(dlen + strlen(v) + 1);
		if (!path) {
			c->nomem = true;
			return;
		}
		memcpy(path, src, dlen);
		strcpy(path + dlen, v);
	} else {
		path = cf_strdup(c, v);
		if (!path)
			return;
	}
	if (access(path, R_OK) != 0 || stat(path, &st) != 0) {
		cf_err(c, s, key, "cannot read \"%s\": %s", cf_echo(path, e),
		       strerror(errno));
		free(path);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		cf_err(c, s, key, "\"%s\" is not a regular file", cf_echo(path, e));
		free(path);
		return;
	}
	cf_put_string(base, k, path);
}

/* Key bytes are never echoed: they are secrets. */
static void cf_parse_psk(struct cf_ctx *c, const config_setting_t *s,
			 const char *key, const struct cf_key *k, void *base)
{
	const char *v = cf_get_string(c, s, key, k);
	uint8_t *buf, **f = cf_field(base, k->off);
	size_t len, i;
	int hi, lo;

	if (!v)
		return;
	if (strncmp(v, "hex:", 4) == 0) {
		v += 4;
		len = strlen(v);
		if (len == 0 || len % 2) {
			cf_err(c, s, key, "\"hex:\" needs a non-empty, even number of hex digits");
			return;
		}
		len /= 2;
		buf = malloc(len);
		if (!buf) {
			c->nomem = true;
			return;
		}
		for (i = 0; i < len; i++) {
			hi = cf_hex_nibble(v[2 * i]);
			lo = cf_hex_nibble(v[2 * i + 1]);
			if (hi < 0 || lo < 0) {
				cf_err(c, s, key, "\"hex:\" value has a non-hex digit");
				explicit_bzero(buf, len);
				free(buf);
				return;
			}
			buf[i] = (uint8_t)(hi << 4 | lo);
		}
	} else {
		len = strlen(v);
		buf = malloc(len);
		if (!buf) {
			c->nomem = true;
			return;
		}
		memcpy(buf, v, len);
	}
	if (len > (size_t)k->hi) {
		cf_err(c, s, key, "key longer than %lld bytes", k->hi);
		explicit_bzero(buf, len);
		free(buf);
		return;
	}
	if (*f) {
		explicit_bzero(*f, *(size_t *)cf_field(base, k->off_n));
		free(*f);
	}
	*f = buf;
	*(size_t *)cf_field(base, k->off_n) = len;
}

static bool cf_is_listish(const config_setting_t *s)
{
	return config_setting_type(s) == CONFIG_TYPE_ARRAY ||
	       config_setting_type(s) == CONFIG_TYPE_LIST;
}

static void cf_parse_list(struct cf_ctx *c, const config_setting_t *s,
			  const char *key, const struct cf_key *k, void *base)
{
	char e[CF_ECHO_MAX + 4];
	const config_setting_t *el;
	unsigned i, n;
	void *arr = NULL;
	size_t *count = k->type == CF_PREFIXES ? NULL : cf_field(base, k->off_n);
	const char *v;
	struct prefix p;
	int rc;

	if (!cf_is_listish(s)) {
		cf_wrong_type(c, s, key, "an array of strings");
		return;
	}
	n = (unsigned)config_setting_length(s);
	if (n && k->type == CF_STRLIST)
		arr = calloc(n, sizeof(char *));
	else if (n && k->type == CF_PORTS)
		arr = calloc(n, sizeof(struct port_range));
	if (n && k->type != CF_PREFIXES && !arr) {
		c->nomem = true;
		return;
	}
	if (k->type == CF_STRLIST)
		*(char ***)cf_field(base, k->off) = arr;
	else if (k->type == CF_PORTS)
		*(struct port_range **)cf_field(base, k->off) = arr;

	for (i = 0; i < n; i++) {
		el = config_setting_get_elem(s, i);
		v = cf_get_string(c, el, key, k);
		if (!v)
			continue;
		switch (k->type) {
		case CF_STRLIST:
			((char **)arr)[*count] = cf_strdup(c, v);
			if (((char **)arr)[*count])
				(*count)++;
			break;
		case CF_PORTS:
			if (port_range_parse(v, &((struct port_range *)arr)[*count]) == 0)
				(*count)++;
			else
				cf_err(c, el, key, "\"%s\": not a port or port range",
				       cf_echo(v, e));
			break;
		case CF_PREFIXES:
			rc = prefix_parse(v, false, &p);
			if (rc == DG_ERANGE)
				/* RFC 9132 §4.4.1.1: prefixes must be canonical. */
				cf_err(c, el, key, "\"%s\": not canonical (host bits set)",
				       cf_echo(v, e));
			else if (rc < 0)
				cf_err(c, el, key, "\"%s\": not an IP prefix (address/length)",
				       cf_echo(v, e));
			else if (prefix_set_add(cf_field(base, k->off), &p) < 0)
				c->nomem = true;
			break;
		default:
			break;
		}
	}
}

static void cf_fmt_num(char *buf, size_t len, const struct cf_key *k, long long v)
{
	if (k->flags & CF_DECIMAL)
		snprintf(buf, len, "%lld.%02lld", v / 100, v % 100);
	else
		snprintf(buf, len, "%lld", v);
}

/* One element of a triple, in stored units (hundredths for decimals). */
static bool cf_triple_elem(struct cf_ctx *c, const config_setting_t *el,
			   const char *key, const struct cf_key *k,
			   const char *what, long long *out)
{
	char lo[32], hi[32];
	double d, r;
	long long v;

	switch (config_setting_type(el)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(el);
		if (k->flags & CF_DECIMAL) {
			if (v < 0 || v > k->hi / 100 + 1)
				goto range;
			v *= 100;
		}
		break;
	case CONFIG_TYPE_FLOAT:
		if (!(k->flags & CF_DECIMAL))
			goto type;
		d = config_setting_get_float(el) * 100.0;
		if (!(d >= 0.0 && d <= (double)k->hi + 1.0))
			goto range;
		v = (long long)(d + 0.5);
		r = d - (double)v;
		/* decimal64 with fraction-digits 2 (RFC 9132 §5.3) */
		if (r > 1e-6 || r < -1e-6) {
			cf_err(c, el, key, "%s has more than two decimals", what);
			return false;
		}
		break;
	default:
		goto type;
	}
	if (v < k->lo || v > k->hi)
		goto range;
	*out = v;
	return true;
type:
	cf_err(c, el, key, "wrong type: %s must be %s", what,
	       k->flags & CF_DECIMAL ? "a number" : "an integer");
	return false;
range:
	cf_fmt_num(lo, sizeof(lo), k, k->lo);
	cf_fmt_num(hi, sizeof(hi), k, k->hi);
	cf_err(c, el, key, "%s out of range %s..%s", what, lo, hi);
	return false;
}

static void cf_parse_triple(struct cf_ctx *c, const config_setting_t *s,
			    const char *key, const struct cf_key *k)
{
	static const char *const what[3] = { "min", "default", "max" };
	struct gw_config *cfg = c->cfg;
	long long v[3];
	bool ok = true;
	unsigned i;

	if (!cf_is_listish(s) || config_setting_length(s) != 3) {
		cf_err(c, s, key, "wrong type: expected [min, default, max]");
		return;
	}
	for (i = 0; i < 3; i++)
		ok &= cf_triple_elem(c, config_setting_get_elem(s, i), key, k,
				     what[i], &v[i]);
	if (!ok)
		return;
	if (v[0] > v[1] || v[1] > v[2]) {
		cf_err(c, s, key, "not ordered: need min <= default <= max");
		return;
	}
	cf_put_uint(&cfg->session_mitigating.min, k->off, k->width, (unsigned long long)v[0]);
	cf_put_uint(&cfg->session_idle.min, k->off, k->width, (unsigned long long)v[0]);
	cf_put_uint(&cfg->session_default.mitigating, k->off, k->width, (unsigned long long)v[1]);
	cf_put_uint(&cfg->session_default.idle, k->off, k->width, (unsigned long long)v[1]);
	cf_put_uint(&cfg->session_mitigating.max, k->off, k->width, (unsigned long long)v[2]);
	cf_put_uint(&cfg->session_idle.max, k->off, k->width, (unsigned long long)v[2]);
}

static void cf_parse_enum(struct cf_ctx *c, const config_setting_t *s,
			  const char *key, const struct cf_key *k, void *base)
{
	char e[CF_ECHO_MAX + 4], names[128];
	const struct cf_enum *en;
	const char *v;
	size_t used = 0;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cf_wrong_type(c, s, key, "a string");
		return;
	}
	v = config_setting_get_string(s);
	for (en = k->enums; en->name; en++) {
		if (strcmp(v, en->name) == 0) {
			cf_put_uint(base, k->off, k->width, (unsigned long long)en->value);
			return;
		}
	}
	names[0] = '\0';
	for (en = k->enums; en->name && used < sizeof(names); en++)
		used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
					 en == k->enums ? "" : ", ", en->name);
	cf_err(c, s, key, "bad value \"%s\" (expected %s)", cf_echo(v, e), names);
}

static void cf_parse_key(struct cf_ctx *c, const config_setting_t *s,
			 const char *key, const struct cf_key *k, void *base)
{
	const char *v;
	long long n;

	switch (k->type) {
	case CF_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			cf_wrong_type(c, s, key, "a boolean");
		else
			cf_put_uint(base, k->off, k->width,
				    config_setting_get_bool(s) ? 1 : 0);
		break;
	case CF_INT:
		if (!cf_get_int(c, s, key, &n))
			break;
		if (n < k->lo || n > k->hi)
			cf_err(c, s, key, "%lld out of range %lld..%lld", n, k->lo, k->hi);
		else
			cf_put_uint(base, k->off, k->width, (unsigned long long)n);
		break;
	case CF_ENUM:
		cf_parse_enum(c, s, key, k, base);
		break;
	case CF_STRING:
		v = cf_get_string(c, s, key, k);
		if (v)
			cf_put_string(base, k, cf_strdup(c, v));
		break;
	case CF_FILE:
		cf_parse_file(c, s, key, k, base);
		break;
	case CF_PSK:
		cf_parse_psk(c, s, key, k, base);
		break;
	case CF_STRLIST:
	case CF_PREFIXES:
	case CF_PORTS:
		cf_parse_list(c, s, key, k, base);
		break;
	case CF_TRIPLE:
		cf_parse_triple(c, s, key, k);
		break;
	case CF_SECTION:
		break;
	}
}

/*
 * Fills base from grp (NULL: defaults only) as tab says: defaults first,
 * then every member, "unknown key" for members without a row, "missing"
 * for absent CF_REQUIRED rows. Returns the rows whose value was refused
 * (bit i for tab[i]): their field keeps its default, which later checks
 * must not mistake for a configured value.
 */
static uint64_t cf_apply(struct cf_ctx *c, const config_setting_t *grp,
		     const char *where, const struct cf_key *tab, size_t n,
		     void *base)
{
	const config_setting_t *m;
	const struct cf_key *k;
	uint64_t bad = 0;
	char key[192];
	unsigned i, len;
	size_t before;

	cf_defaults(c, tab, n, base);
	if (!grp)
		return 0;
	len = (unsigned)config_setting_length(grp);
	for (i = 0; i < len; i++) {
		m = config_setting_get_elem(grp, i);
		cf_key_path(key, sizeof(key), where, config_setting_name(m));
		for (k = tab; k < tab + n; k++)
			if (strcmp(k->name, config_setting_name(m)) == 0)
				break;
		if (k == tab + n) {
			cf_err(c, m, key, "unknown key");
			continue;
		}
		before = c->total;
		cf_parse_key(c, m, key, k, base);
		if (c->total != before)
			bad |= 1ull << (k - tab);
	}
	for (k = tab; k < tab + n; k++) {
		if ((k->flags & CF_REQUIRED) && !config_setting_get_member(grp, k->name)) {
			cf_key_path(key, sizeof(key), where, k->name);
			cf_err(c, grp, key, "missing");
		}
	}
	return bad;
}

/* The key name's value was refused by cf_apply (see its bad mask). */
static bool cf_refused(const struct cf_key *tab, size_t n, uint64_t bad,
		      const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(tab[i].name, name) == 0)
			return bad & (1ull << i);
	return false;
}

/* ---- sections ----------------------------------------------------------- */

static const config_setting_t *cf_member(const config_setting_t *g, const char *name)
{
	return g ? config_setting_get_member(g, name) : NULL;
}

/* A group, or NULL after reporting it is something else. */
static const config_setting_t *cf_group(struct cf_ctx *c, const config_setting_t *s,
					const char *key)
{
	if (s && config_setting_type(s) != CONFIG_TYPE_GROUP) {
		cf_wrong_type(c, s, key, "a group { ... }");
		return NULL;
	}
	return s;
}

/* Number of entries of a list of groups; -1 after reporting a wrong type. */
static int cf_list_len(struct cf_ctx *c, const config_setting_t *s, const char *key)
{
	if (!s)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_LIST ||
	    (config_setting_type(s) == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0))
		return config_setting_length(s);
	cf_wrong_type(c, s, key, "a list ( {...}, ... )");
	return -1;
}

static void cf_pair(struct cf_ctx *c, const config_setting_t *g, const char *where,
		    const char *a, const char *b)
{
	const config_setting_t *sa = cf_member(g, a), *sb = cf_member(g, b);
	char key[192];

	if (sa && !sb) {
		cf_key_path(key, sizeof(key), where, a);
		cf_err(c, sa, key, "needs %s as well", b);
	} else if (sb && !sa) {
		cf_key_path(key, sizeof(key), where, b);
		cf_err(c, sb, key, "needs %s as well", a);
	}
}

static bool cf_plain_ok(struct cf_ctx *c, const config_setting_t *g,
			const char *where, enum gw_transport t)
{
	char key[192];

	if (gw_transport_secure(t) || c->cfg->insecure_lab)
		return true;
	/* RFC 9132 §8: DOTS agents must use (D)TLS; plain CoAP is for labs. */
	cf_key_path(key, sizeof(key), where, "transport");
	cf_err(c, cf_member(g, "transport"), key,
	       "plain %s needs gateway.insecure-lab = true", gw_transport_name(t));
	return false;
}

static bool cf_listen_addr(const struct gw_listen *l, uint8_t out[17])
{
	memset(out, 0, 17);
	if (!l->address)
		return false;
	if (inet_pton(AF_INET, l->address, out + 1) == 1)
		out[0] = 4;
	else if (inet_pton(AF_INET6, l->address, out + 1) == 1)
		out[0] = 6;
	else
		return false;
	return true;
}

static void cf_listeners(struct cf_ctx *c)
{
	struct gw_config *cfg = c->cfg;
	const config_setting_t *g;
	uint8_t ai[17], aj[17];
	char where[64];
	int n = cf_list_len(c, c->listen, "server.listen");
	uint64_t bad;
	size_t i, j;

	if (n < 0)
		return;
	if (!c->listen) {
		/* No listen key: one DTLS listener on every address. */
		n = 1;
	} else if (n == 0) {
		cf_err(c, c->listen, "server.listen", "no listener configured");
		return;
	}
	cfg->listen = calloc((size_t)n, sizeof(*cfg->listen));
	if (!cfg->listen) {
		c->nomem = true;
		return;
	}
	cfg->nlisten = (size_t)n;
	for (i = 0; i < cfg->nlisten; i++) {
		snprintf(where, sizeof(where), "server.listen[%zu]", i);
		g = c->listen ? cf_group(c, config_setting_get_elem(c->listen, (unsigned)i), where)
			      : NULL;
		bad = cf_apply(c, g, where, cf_listen_keys, CF_NKEYS(cf_listen_keys),
			       &cfg->listen[i]);
		cfg->listen[i].line = (int)cf_line(g ? g : c->server);
		if (c->listen && !g)
			continue;
		cf_plain_ok(c, g, where, cfg->listen[i].transport);
		if (bad) {
			/* out of the duplicate checks: it holds defaults */
			free(cfg->listen[i].address);
			cfg->listen[i].address = NULL;
		}
		if (!cf_listen_addr(&cfg->listen[i], ai))
			continue;
		for (j = 0; j < i; j++) {
			if (!cf_listen_addr(&cfg->listen[j], aj))
				continue;
			/* dtls and udp share UDP sockets, tls and tcp TCP ones */
			if (memcmp(ai, aj, sizeof(ai)) == 0 &&
			    cfg->listen[i].port == cfg->listen[j].port &&
			    gw_transport_reliable(cfg->listen[i].transport) ==
			    gw_transport_reliable(cfg->listen[j].transport)) {
				cf_err(c, g, where, "same %s address and port as server.listen[%zu] (line %d)",
				       gw_transport_reliable(cfg->listen[i].transport) ? "TCP" : "UDP",
				       j, cfg->listen[j].line);
				break;
			}
		}
	}
}

static void cf_server(struct cf_ctx *c, const config_setting_t *root)
{
	const config_setting_t *session, *drain;

	c->server = cf_group(c, cf_member(root, "server"), "server");
	cf_apply(c, c->server, "server", cf_server_keys, CF_NKEYS(cf_server_keys),
		 c->cfg);
	cf_pair(c, c->server, "server", "cert", "key");
	session = cf_group(c, cf_member(c->server, "session"), "server.session");
	cf_apply(c, session, "server.session", cf_session_keys,
		 CF_NKEYS(cf_session_keys), c->cfg);
	c->listen = cf_member(c->server, "listen");
	cf_listeners(c);
	drain = cf_group(c, cf_member(c->server, "drain"), "server.drain");
	if (drain)
		cf_apply(c, drain, "server.drain", cf_drain_keys,
			 CF_NKEYS(cf_drain_keys), c->cfg);
}

/* The group is resolved here so that --check-config catches a typo. */
static void cf_control(struct cf_ctx *c, const config_setting_t *root)
{
	struct gw_config *cfg = c->cfg;
	const config_setting_t *g, *gs;
	char buf[4096], e[CF_ECHO_MAX + 4], *end;
	struct group gr, *res = NULL;
	unsigned long v;

	g = cf_group(c, cf_member(root, "control"), "control");
	cf_apply(c, g, "control", cf_control_keys, CF_NKEYS(cf_control_keys), cfg);
	cfg->control_explicit = cf_member(g, "socket") != NULL;
	cfg->control_mode = cfg->control_mode_text ?
				    (uint32_t)strtoul(cfg->control_mode_text, NULL, 8) : 0660;
	cfg->control_gid = -1;
	gs = cf_member(g, "group");
	if (!cfg->control_group)
		return;
	errno = 0;
	v = strtoul(cfg->control_group, &end, 10);
	if (cfg->control_group[0] >= '0' && cfg->control_group[0] <= '9' && !*end) {
		if (errno || v > 0x7fffffffUL)
			cf_err(c, gs, "control.group", "\"%s\": out of range",
			       cf_echo(cfg->control_group, e));
		else
			cfg->control_gid = (long)v;
		return;
	}
	if (getgrnam_r(cfg->control_group, &gr, buf, sizeof(buf), &res) == 0 && res)
		cfg->control_gid = (long)res->gr_gid;
	else
		cf_err(c, gs, "control.group", "\"%s\": no such group",
		       cf_echo(cfg->control_group, e));
}

/*
 * upstreams[].discovery. RFC 8973 §4 orders the sources: an explicit
 * address first, then DHCP, then S-NAPTR, then DNS-SD; the group may come
 * instead of or besides address.
 */
static void cf_discovery(struct cf_ctx *c, const config_setting_t *g,
			 const char *where, struct gw_upstream *u)
{
	struct gw_discovery *d = &u->discovery;
	const config_setting_t *dg;
	char dwhere[136], key[224];
	uint64_t bad;

	cf_key_path(dwhere, sizeof(dwhere), where, "discovery");
	dg = cf_group(c, cf_member(g, "discovery"), dwhere);
	if (!dg) {
		cf_defaults(c, cf_discovery_keys, CF_NKEYS(cf_discovery_keys), d);
		if (!cf_member(g, "address") && !cf_member(g, "discovery")) {
			cf_key_path(key, sizeof(key), where, "address");
			cf_err(c, g, key, "missing (give it, or a discovery group)");
		}
		return;
	}
	d->enabled = true;
	bad = cf_apply(c, dg, dwhere, cf_discovery_keys, CF_NKEYS(cf_discovery_keys), d);
	if (!d->dns && !d->dhcp)
		cf_err(c, dg, dwhere, "enable dns or dhcp (or both)");
	if (d->dns && !d->domain &&
	    !cf_refused(cf_discovery_keys, CF_NKEYS(cf_discovery_keys), bad, "domain")) {
		cf_key_path(key, sizeof(key), dwhere, "domain");
		cf_err(c, dg, key, "missing: dns discovery needs the domain");
	}
	if (!d->dns && cf_member(dg, "resolver")) {
		cf_key_path(key, sizeof(key), dwhere, "resolver");
		cf_err(c, cf_member(dg, "resolver"), key, "only with dns = true");
	}
	if (!d->dhcp && cf_member(dg, "dhcp-dir")) {
		cf_key_path(key, sizeof(key), dwhere, "dhcp-dir");
		cf_err(c, cf_member(dg, "dhcp-dir"), key, "only with dhcp = true");
	}
	d->transport_mask = 0;
	for (size_t i = 0; i < d->ntransports; i++) {
		unsigned bit = strcmp(d->transports[i], "udp") == 0 ? GW_DISC_UDP : GW_DISC_TCP;
		if (d->transport_mask & bit) {
			cf_key_path(key, sizeof(key), dwhere, "transports");
			cf_err(c, cf_member(dg, "transports"), key, "\"%s\" listed twice",
			       d->transports[i]);
		}
		d->transport_mask |= bit;
	}
	if (cf_member(dg, "transports") && !d->ntransports &&
	    !cf_refused(cf_discovery_keys, CF_NKEYS(cf_discovery_keys), bad, "transports")) {
		cf_key_path(key, sizeof(key), dwhere, "transports");
		cf_err(c, cf_member(dg, "transports"), key, "empty");
	}
	if (!cf_member(dg, "transports"))
		d->transport_mask = GW_DISC_UDP | GW_DISC_TCP;
}

static void cf_upstreams(struct cf_ctx *c, const config_setting_t *root)
{
	struct gw_config *cfg = c->cfg;
	const config_setting_t *g;
	struct gw_upstream *u;
	bool psk, pki, secure;
	uint64_t bad;
	char where[64], key[192];
	int n;
	size_t i, j;

	c->upstreams = cf_member(root, "upstreams");
	n = cf_list_len(c, c->upstreams, "upstreams");
	if (n <= 0)
		return;
	cfg->upstreams = calloc((size_t)n, sizeof(*cfg->upstreams));
	if (!cfg->upstreams) {
		c->nomem = true;
		return;
	}
	cfg->nupstreams = (size_t)n;
	for (i = 0; i < cfg->nupstreams; i++) {
		u = &cfg->upstreams[i];
		snprintf(where, sizeof(where), "upstreams[%zu]", i);
		g = cf_group(c, config_setting_get_elem(c->upstreams, (unsigned)i), where);
		if (!g)
			continue;
		bad = cf_apply(c, g, where, cf_upstream_keys, CF_NKEYS(cf_upstream_keys), u);
		u->line = (int)cf_line(g);
		for (j = 0; u->name && j < i; j++) {
			if (cfg->upstreams[j].name && strcmp(u->name, cfg->upstreams[j].name) == 0) {
				cf_key_path(key, sizeof(key), where, "name");
				cf_err(c, cf_member(g, "name"), key,
				       "duplicate name (first at line %d)", cfg->upstreams[j].line);
				break;
			}
		}
		cf_discovery(c, g, where, u);
		cf_plain_ok(c, g, where, u->transport);
		cf_pair(c, g, where, "psk-identity", "psk-key");
		cf_pair(c, g, where, "cert", "key");
		psk = cf_member(g, "psk-identity") || cf_member(g, "psk-key");
		pki = cf_member(g, "cert") || cf_member(g, "key");
		/* RFC 9132 §8: mutual authentication, by PSK or certificate. */
		secure = gw_transport_secure(u->transport) &&
			 !cf_refused(cf_upstream_keys, CF_NKEYS(cf_upstream_keys), bad, "transport");
		if (secure && !psk && !pki)
			cf_err(c, g, where, "%s needs psk-identity and psk-key, or cert and key",
			       gw_transport_name(u->transport));
		else if (psk && pki)
			cf_err(c, g, where, "give either psk-identity/psk-key or cert/key, not both");
		if (!cf_refused(cf_upstream_keys, CF_NKEYS(cf_upstream_keys), bad, "reconnect-min") &&
		    !cf_refused(cf_upstream_keys, CF_NKEYS(cf_upstream_keys), bad, "reconnect-max") &&
		    u->reconnect_min > u->reconnect_max) {
			cf_key_path(key, sizeof(key), where, "reconnect-min");
			cf_err(c, cf_member(g, "reconnect-min") ? cf_member(g, "reconnect-min")
								 : cf_member(g, "reconnect-max"),
			       key, "%u greater than reconnect-max %u",
			       u->reconnect_min, u->reconnect_max);
		}
	}
}

static void cf_clients(struct cf_ctx *c, const config_setting_t *root)
{
	struct gw_config *cfg = c->cfg;
	const config_setting_t *g;
	struct gw_client *cl, *o;
	char where[64], key[192], e[CF_ECHO_MAX + 4];
	bool psk, cert;
	int n;
	size_t i, j;

	c->clients = cf_member(root, "clients");
	n = cf_list_len(c, c->clients, "clients");
	c->clients_broken = n < 0;
	if (n <= 0)
		return;
	cfg->clients = calloc((size_t)n, sizeof(*cfg->clients));
	if (!cfg->clients) {
		c->nomem = true;
		return;
	}
	cfg->nclients = (size_t)n;
	for (i = 0; i < cfg->nclients; i++) {
		cl = &cfg->clients[i];
		snprintf(where, sizeof(where), "clients[%zu]", i);
		g = cf_group(c, config_setting_get_elem(c->clients, (unsigned)i), where);
		if (!g) {
			c->clients_broken = true;
			continue;
		}
		cf_apply(c, g, where, cf_client_keys, CF_NKEYS(cf_client_keys), cl);
		cl->line = (int)cf_line(g);

		cf_pair(c, g, where, "psk-identity", "psk-key");
		psk = cf_member(g, "psk-identity") || cf_member(g, "psk-key");
		cert = cf_member(g, "cert-name") != NULL;
		if (!psk && !cert)
			cf_err(c, g, where, "needs psk-identity and psk-key, or cert-name");
		if (psk && cert) {
			cf_key_path(key, sizeof(key), where, "cert-name");
			cf_err(c, cf_member(g, "cert-name"), key,
			       "give either psk-identity/psk-key or cert-name, not both");
		}

		for (j = 0; j < i; j++) {
			o = &cfg->clients[j];
			if (cl->name && o->name && strcmp(cl->name, o->name) == 0) {
				cf_key_path(key, sizeof(key), where, "name");
				cf_err(c, cf_member(g, "name"), key,
				       "duplicate name (first at line %d)", o->line);
			}
			if (cl->psk_identity && o->psk_identity &&
			    strcmp(cl->psk_identity, o->psk_identity) == 0) {
				cf_key_path(key, sizeof(key), where, "psk-identity");
				cf_err(c, cf_member(g, "psk-identity"), key,
				       "duplicate psk-identity (first at line %d)", o->line);
			}
			/* Names in certificates compare without case (RFC 6125 §6.4.1). */
			if (cl->cert_name && o->cert_name &&
			    strcasecmp(cl->cert_name, o->cert_name) == 0) {
				cf_key_path(key, sizeof(key), where, "cert-name");
				cf_err(c, cf_member(g, "cert-name"), key,
				       "duplicate cert-name (first at line %d)", o->line);
			}
		}

		if (cl->upstream_name) {
			cl->upstream = (struct gw_upstream *)config_upstream_by_name(cfg,
								cl->upstream_name);
			if (!cl->upstream) {
				cf_key_path(key, sizeof(key), where, "upstream");
				cf_err(c, cf_member(g, "upstream"), key,
				       "no upstream named \"%s\"", cf_echo(cl->upstream_name, e));
			}
		}
	}
}

/*
 * A secure listener can only complete a handshake if the gateway has
 * something to authenticate with: PSK clients, or its own certificate;
 * cert-name clients additionally need a CA to verify them against.
 */
static void cf_check_server_creds(struct cf_ctx *c)
{
	const struct gw_config *cfg = c->cfg;
	const config_setting_t *g, *s;
	const struct gw_listen *sec = NULL;
	bool has_cert = cf_member(c->server, "cert") && cf_member(c->server, "key");
	bool has_ca = cf_member(c->server, "ca") != NULL;
	size_t i, npsk = 0, first_cert = SIZE_MAX, lidx = 0;
	char where[64];

	for (i = 0; i < cfg->nlisten && !sec; i++) {
		if (gw_transport_secure(cfg->listen[i].transport)) {
			sec = &cfg->listen[i];
			lidx = i;
		}
	}
	/* Which clients exist is unknown: do not guess at credentials. */
	if (!sec || c->clients_broken)
		return;
	for (i = 0; i < cfg->nclients; i++) {
		g = config_setting_get_elem(c->clients, (unsigned)i);
		if (!g || config_setting_type(g) != CONFIG_TYPE_GROUP)
			continue;
		if (cf_member(g, "psk-identity") || cf_member(g, "psk-key"))
			npsk++;
		else if (cf_member(g, "cert-name") && first_cert == SIZE_MAX)
			first_cert = i;
	}
	if (npsk == 0 && !has_cert) {
		/* RFC 9132 §8: mutual (D)TLS authentication is required. */
		if (c->listen) {
			snprintf(where, sizeof(where), "server.listen[%zu]", lidx);
			s = config_setting_get_elem(c->listen, (unsigned)lidx);
		} else {
			snprintf(where, sizeof(where), "server.listen");
			s = c->server;
		}
		cf_errl(c, cf_file(c, s), (unsigned)sec->line, where,
			"a %s listener needs a PSK client or server.cert and server.key",
			gw_transport_name(sec->transport));
	}
	if (first_cert != SIZE_MAX && (!has_cert || !has_ca)) {
		g = config_setting_get_elem(c->clients, (unsigned)first_cert);
		snprintf(where, sizeof(where), "clients[%zu].cert-name", first_cert);
		cf_err(c, cf_member(g, "cert-name"), where,
		       "cert-name clients need server.cert, server.key and server.ca");
	}
}

/* ---- public -------------------------------------------------------------- */

const char *gw_transport_name(enum gw_transport t)
{
	switch (t) {
	case GW_TR_DTLS: return "dtls";
	case GW_TR_TLS: return "tls";
	case GW_TR_UDP: return "udp";
	case GW_TR_TCP: return "tcp";
	}
	return "?";
}

static void cf_free_psk(uint8_t *key, size_t len)
{
	if (key)
		explicit_bzero(key, len);
	free(key);
}

static void cf_free_cred(struct gw_cred *cr)
{
	free(cr->psk_identity);
	cf_free_psk(cr->psk_key, cr->psk_key_len);
	free(cr->cert);
	free(cr->key);
	free(cr->ca);
}

static void cf_free_scope(struct model_scope_policy *p)
{
	size_t i;

	prefix_set_free(&p->prefixes);
	for (i = 0; p->fqdns && i < p->nfqdns; i++)
		free(p->fqdns[i]);
	free(p->fqdns);
	for (i = 0; p->uris && i < p->nuris; i++)
		free(p->uris[i]);
	free(p->uris);
	free(p->ports);
}

void config_free(struct gw_config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->id);
	for (i = 0; cfg->listen && i < cfg->nlisten; i++)
		free(cfg->listen[i].address);
	free(cfg->listen);
	cf_free_cred(&cfg->server_cred);
	for (i = 0; cfg->clients && i < cfg->nclients; i++) {
		struct gw_client *cl = &cfg->clients[i];

		free(cl->name);
		free(cl->psk_identity);
		cf_free_psk(cl->psk_key, cl->psk_key_len);
		free(cl->cert_name);
		free(cl->upstream_name);
		cf_free_scope(&cl->scope);
	}
	free(cfg->clients);
	free(cfg->drain.alternate);
	for (i = 0; cfg->drain.addresses && i < cfg->drain.naddresses; i++)
		free(cfg->drain.addresses[i]);
	free(cfg->drain.addresses);
	for (i = 0; cfg->upstreams && i < cfg->nupstreams; i++) {
		struct gw_upstream *u = &cfg->upstreams[i];

		free(u->name);
		free(u->address);
		cf_free_cred(&u->cred);
		free(u->server_name);
		free(u->discovery.domain);
		free(u->discovery.dhcp_dir);
		free(u->discovery.resolver);
		for (size_t k = 0; u->discovery.transports && k < u->discovery.ntransports; k++)
			free(u->discovery.transports[k]);
		free(u->discovery.transports);
	}
	free(cfg->upstreams);
	free(cfg->metrics.address);
	free(cfg->metrics.path);
	free(cfg->control_socket);
	free(cfg->control_mode_text);
	free(cfg->control_group);
	free(cfg->psk_index);
	free(cfg);
}

/* Opens path ourselves first so that an unreadable file gets its errno
 * (libconfig only says "file I/O error"). */
static int cf_check_readable(struct cf_ctx *c)
{
	struct stat st;
	FILE *f = fopen(c->path, "r");
	int err;

	if (!f) {
		err = errno;
		cf_errl(c, c->path, 0, "file", "cannot read: %s", strerror(err));
		return err == ENOMEM ? DG_ENOMEM : DG_EIO;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		cf_errl(c, c->path, 0, "file", "not a regular file");
		return DG_EIO;
	}
	fclose(f);
	return 0;
}

/* Orders PSK identities as byte strings: memcmp, then the shorter first. */
static int cf_psk_cmp(const uint8_t *a, size_t alen, const uint8_t *b,
		      size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int d = n ? memcmp(a, b, n) : 0; /* b may be NULL when blen is 0 */

	if (d)
		return d;
	return alen < blen ? -1 : alen > blen;
}

static int cf_psk_sort_cmp(const void *x, const void *y)
{
	const char *a = (*(const struct gw_client *const *)x)->psk_identity;
	const char *b = (*(const struct gw_client *const *)y)->psk_identity;

	return cf_psk_cmp((const uint8_t *)a, strlen(a), (const uint8_t *)b,
			  strlen(b));
}

/* A handshake looks its client up by PSK identity: with thousands of
 * clients reconnecting at once a linear search showed in the profile.
 * Identities are unique (checked in cf_clients). */
static void cf_index_psk(struct cf_ctx *c)
{
	struct gw_config *cfg = c->cfg;
	size_t n = 0;

	for (size_t i = 0; i < cfg->nclients; i++)
		n += cfg->clients[i].psk_identity != NULL;
	if (!n)
		return;
	cfg->psk_index = calloc(n, sizeof(*cfg->psk_index));
	if (!cfg->psk_index) {
		c->nomem = true;
		return;
	}
	for (size_t i = 0; i < cfg->nclients; i++)
		if (cfg->clients[i].psk_identity)
			cfg->psk_index[cfg->npsk_index++] = &cfg->clients[i];
	qsort(cfg->psk_index, n, sizeof(*cfg->psk_index), cf_psk_sort_cmp);
}

int config_load(const char *path, struct gw_config **out,
		config_report_fn report, void *arg)
{
	struct cf_ctx c = { .path = path, .report = report, .arg = arg };
	config_t lc;
	const config_setting_t *root;
	int rc;

	if (out)
		*out = NULL;
	if (!path || !out)
		return DG_EINVAL;
	rc = cf_check_readable(&c);
	if (rc < 0) {
		cf_flush_errors(&c);
		return rc;
	}
	c.cfg = calloc(1, sizeof(*c.cfg));
	if (!c.cfg)
		return DG_ENOMEM;
	c.cfg->path = cf_strdup(&c, path);

	/* No include dir: libconfig 1.5 would prefix it to absolute @include
	 * paths as well, so @include keeps libconfig's meaning (relative to
	 * the working directory). */
	config_init(&lc);
	if (!config_read_file(&lc, path)) {
		if (config_error_type(&lc) == CONFIG_ERR_PARSE) {
			cf_errl(&c, config_error_file(&lc) ? config_error_file(&lc) : path,
				(unsigned)config_error_line(&lc), "syntax error", "%s",
				config_error_text(&lc));
			rc = DG_EINVAL;
		} else {
			cf_errl(&c, path, 0, "file", "cannot read: %s",
				config_error_text(&lc));
			rc = DG_EIO;
		}
		goto done;
	}

	root = config_root_setting(&lc);
	cf_apply(&c, root, "", cf_root_keys, CF_NKEYS(cf_root_keys), NULL);
	cf_apply(&c, cf_group(&c, cf_member(root, "gateway"), "gateway"), "gateway",
		 cf_gateway_keys, CF_NKEYS(cf_gateway_keys), c.cfg);
	cf_server(&c, root);
	cf_upstreams(&c, root);
	cf_clients(&c, root);
	cf_control(&c, root);
	cf_check_server_creds(&c);
	cf_apply(&c, cf_group(&c, cf_member(root, "metrics"), "metrics"), "metrics",
		 cf_metrics_keys, CF_NKEYS(cf_metrics_keys), c.cfg);
	rc = c.nerrs || c.dropped ? DG_EINVAL : 0;
	if (!rc)
		cf_index_psk(&c);
done:
	if (c.nomem)
		rc = DG_ENOMEM;
	cf_flush_errors(&c);
	config_destroy(&lc);
	if (rc < 0) {
		config_free(c.cfg);
		return rc;
	}
	*out = c.cfg;
	return 0;
}

const struct gw_client *config_client_by_psk(const struct gw_config *cfg,
					     const uint8_t *id, size_t len)
{
	size_t i;

	if (!cfg || (!id && len))
		return NULL;
	if (cfg->psk_index) {
		size_t lo = 0, hi = cfg->npsk_index;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const char *cid = cfg->psk_index[mid]->psk_identity;
			int d = cf_psk_cmp((const uint8_t *)cid, strlen(cid),
					   id, len);

			if (d == 0)
				return cfg->psk_index[mid];
			if (d < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		return NULL;
	}
	for (i = 0; i < cfg->nclients; i++) {
		const char *cid = cfg->clients[i].psk_identity;

		if (cid && strlen(cid) == len && memcmp(cid, id, len) == 0)
			return &cfg->clients[i];
	}
	return NULL;
}

const struct gw_client *config_client_by_cert_name(const struct gw_config *cfg,
						   const char *name)
{
	size_t i;

	if (!cfg || !name)
		return NULL;
	for (i = 0; i < cfg->nclients; i++) {
		const char *cn = cfg->clients[i].cert_name;

		/* RFC 6125 §6.4.1: DNS names compare case-insensitively. */
		if (cn && strcasecmp(cn, name) == 0)
			return &cfg->clients[i];
	}
	return NULL;
}

const struct gw_upstream *config_upstream_by_name(const struct gw_config *cfg,
						  const char *name)
{
	size_t i;

	if (!cfg || !name)
		return NULL;
	for (i = 0; i < cfg->nupstreams; i++)
		if (cfg->upstreams[i].name && strcmp(cfg->upstreams[i].name, name) == 0)
			return &cfg->upstreams[i];
	return NULL;
}
