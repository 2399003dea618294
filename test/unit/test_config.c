/*
 * test_config.c: gateway/config.c against config.h.
 *
 * Fixtures live in $DOTSGW_TEST_DATA/config (meson sets the variable; in a
 * standalone build set it to test/unit/data). The samples in config/ are
 * loaded from $DOTSGW_TEST_DATA/../../../config, with /etc/dotsgw/pki/
 * pointed at the dummy PEM files under the fixtures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/config.h"

#define MAX_REPORTS 512

struct reports {
	char *line[MAX_REPORTS];
	size_t n;
};

static char data_dir[PATH_MAX];
static char tmp_dir[1024];

static void collect(const char *line, void *arg)
{
	struct reports *r = arg;

	assert_non_null(line);
	assert_true(r->n < MAX_REPORTS);
	r->line[r->n] = strdup(line);
	assert_non_null(r->line[r->n]);
	r->n++;
}

static void reports_free(struct reports *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->line[i]);
	r->n = 0;
}

static void reports_print(const struct reports *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		print_message("  report: %s\n", r->line[i]);
}

/* Exactly one report starts with "FILE:LINE: KEY: ". */
static void assert_report(const struct reports *r, const char *file,
			  unsigned line, const char *key)
{
	char want[PATH_MAX + 256];
	size_t i, hits = 0;

	snprintf(want, sizeof(want), "%s:%u: %s: ", file, line, key);
	for (i = 0; i < r->n; i++)
		if (strncmp(r->line[i], want, strlen(want)) == 0)
			hits++;
	if (hits != 1) {
		reports_print(r);
		fail_msg("%zu reports start with \"%s\"", hits, want);
	}
}

static void assert_report_has(const struct reports *r, const char *text)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (strstr(r->line[i], text))
			return;
	reports_print(r);
	fail_msg("no report contains \"%s\"", text);
}

static void data_path(char *buf, size_t len, const char *rel)
{
	int n = snprintf(buf, len, "%s/%s", data_dir, rel);

	assert_true(n > 0 && (size_t)n < len);
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* A copy of s with every from replaced by to. */
static char *subst(const char *s, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	const char *p;
	char *out, *o;

	for (p = s; (p = strstr(p, from)); p += fl)
		n++;
	out = malloc(strlen(s) + n * tl + 1);
	assert_non_null(out);
	for (o = out, p = s; *p;) {
		if (strncmp(p, from, fl) == 0) {
			memcpy(o, to, tl);
			o += tl;
			p += fl;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* Writes text to $tmp/name and loads it; path receives the file name. */
static int load_text(const char *name, const char *text, char *path, size_t len,
		     struct gw_config **out, struct reports *r)
{
	int n = snprintf(path, len, "%s/%s", tmp_dir, name);

	assert_true(n > 0 && (size_t)n < len);
	write_file(path, text);
	return config_load(path, out, collect, r);
}

/* Loads text that must fail with exactly one report, FILE:line: key: */
static void expect_one_error(const char *text, unsigned line, const char *key,
			     const char *reason)
{
	struct gw_config *cfg = (struct gw_config *)1;
	struct reports r = { .n = 0 };
	char path[PATH_MAX];
	int rc;

	rc = load_text("case.conf", text, path, sizeof(path), &cfg, &r);
	if (rc != DG_EINVAL || r.n != 1) {
		reports_print(&r);
		fail_msg("rc %d, %zu reports for %s (want one)", rc, r.n, key);
	}
	assert_null(cfg);
	assert_report(&r, path, line, key);
	if (reason)
		assert_report_has(&r, reason);
	unlink(path);
	reports_free(&r);
}

static int setup(void **state)
{
	const char *env = getenv("DOTSGW_TEST_DATA");
	const char *tmp = getenv("TMPDIR");

	(void)state;
	if (!env || !realpath(env, data_dir)) {
		fprintf(stderr, "DOTSGW_TEST_DATA must name test/unit/data\n");
		return -1;
	}
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_config.XXXXXX", tmp ? tmp : "/tmp");
	return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(tmp_dir);
}

/* ---- valid configurations --------------------------------------------- */

static void test_full_config(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	const struct gw_client *cl;
	const struct gw_upstream *u;
	char path[PATH_MAX], want[PATH_MAX + 64];
	static const uint8_t carol_key[] = { 0x00, 0xff, 0x10, 0xab };

	(void)state;
	data_path(path, sizeof(path), "config/full.conf");
	assert_int_equal(config_load(path, &cfg, collect, &r), 0);
	assert_int_equal(r.n, 0);
	assert_non_null(cfg);

	assert_string_equal(cfg->path, path);
	assert_int_equal(cfg->mode, GW_MODE_MAP);
	assert_true(cfg->server_domain);
	assert_true(cfg->insecure_lab);
	assert_int_equal(cfg->log_level, DG_LOG_DEBUG);
	assert_int_equal(cfg->hop_limit, 32);
	assert_int_equal(cfg->max_body, 4096);
	assert_int_equal(cfg->request_timeout, 45);
	assert_string_equal(cfg->id, "gw-full.example");

	assert_int_equal(cfg->nlisten, 4);
	assert_int_equal(cfg->listen[0].transport, GW_TR_DTLS);
	assert_string_equal(cfg->listen[0].address, "::1");
	assert_int_equal(cfg->listen[0].port, 14646);
	assert_int_equal(cfg->listen[0].line, 16);
	assert_int_equal(cfg->listen[1].transport, GW_TR_TLS);
	assert_string_equal(cfg->listen[1].address, "127.0.0.1");
	assert_int_equal(cfg->listen[1].port, 14647);
	assert_int_equal(cfg->listen[2].transport, GW_TR_UDP);
	assert_string_equal(cfg->listen[2].address, "0.0.0.0");
	assert_int_equal(cfg->listen[3].transport, GW_TR_TCP);
	assert_int_equal(cfg->listen[3].port, 5683);

	/* relative paths are taken from the configuration's directory */
	assert_string_equal(cfg->server_cred.psk_identity, "full-hint");
	snprintf(want, sizeof(want), "%s/config/pki/edge-gw.pem", data_dir);
	assert_string_equal(cfg->server_cred.cert, want);
	snprintf(want, sizeof(want), "%s/config/pki/edge-gw.key", data_dir);
	assert_string_equal(cfg->server_cred.key, want);
	snprintf(want, sizeof(want), "%s/config/pki/clients-ca.pem", data_dir);
	assert_string_equal(cfg->server_cred.ca, want);
	assert_null(cfg->server_cred.psk_key);

	/* [min, default, max] fill both sets' limits and both defaults */
	assert_int_equal(cfg->session_mitigating.min.heartbeat_interval, 1);
	assert_int_equal(cfg->session_default.mitigating.heartbeat_interval, 10);
	assert_int_equal(cfg->session_mitigating.max.heartbeat_interval, 600);
	assert_int_equal(cfg->session_idle.min.heartbeat_interval, 1);
	assert_int_equal(cfg->session_default.idle.heartbeat_interval, 10);
	assert_int_equal(cfg->session_idle.max.heartbeat_interval, 600);
	assert_int_equal(cfg->session_idle.min.missing_hb_allowed, 2);
	assert_int_equal(cfg->session_default.idle.missing_hb_allowed, 7);
	assert_int_equal(cfg->session_idle.max.missing_hb_allowed, 20);
	assert_int_equal(cfg->session_mitigating.min.probing_rate, 3);
	assert_int_equal(cfg->session_default.mitigating.probing_rate, 6);
	assert_int_equal(cfg->session_mitigating.max.probing_rate, 900);
	assert_int_equal(cfg->session_idle.min.max_retransmit, 1);
	assert_int_equal(cfg->session_default.idle.max_retransmit, 4);
	assert_int_equal(cfg->session_idle.max.max_retransmit, 9);
	/* decimals in hundredths; integers accepted in a decimal triple */
	/* 0.29 and 1.15 are not exact in binary: rounded, not truncated */
	assert_int_equal(cfg->session_mitigating.min.ack_timeout, 29);
	assert_int_equal(cfg->session_default.mitigating.ack_timeout, 300);
	assert_int_equal(cfg->session_mitigating.max.ack_timeout, 1225);
	assert_int_equal(cfg->session_idle.min.ack_random_factor, 100);
	assert_int_equal(cfg->session_default.idle.ack_random_factor, 115);
	assert_int_equal(cfg->session_idle.max.ack_random_factor, 200);

	assert_int_equal(cfg->nclients, 3);
	cl = &cfg->clients[0];
	assert_string_equal(cl->name, "alice");
	assert_int_equal(cl->line, 36);
	assert_string_equal(cl->psk_identity, "alice-id");
	assert_int_equal(cl->psk_key_len, 12);
	assert_memory_equal(cl->psk_key, "alice-secret", 12);
	assert_null(cl->cert_name);
	assert_string_equal(cl->upstream_name, "up-psk");
	assert_ptr_equal(cl->upstream, &cfg->upstreams[0]);
	assert_int_equal(cl->scope.prefixes.n, 2);
	assert_int_equal(cl->scope.prefixes.v[0].family, 4);
	assert_int_equal(cl->scope.prefixes.v[0].len, 24);
	assert_int_equal(cl->scope.prefixes.v[0].addr[0], 203);
	assert_int_equal(cl->scope.prefixes.v[0].addr[2], 113);
	assert_int_equal(cl->scope.prefixes.v[1].family, 6);
	assert_int_equal(cl->scope.prefixes.v[1].len, 48);
	assert_int_equal(cl->scope.nfqdns, 2);
	assert_string_equal(cl->scope.fqdns[0], "alice.example");
	assert_string_equal(cl->scope.fqdns[1], "www.alice.example");
	assert_int_equal(cl->scope.nuris, 1);
	assert_string_equal(cl->scope.uris[0], "https://alice.example/");
	assert_int_equal(cl->scope.nports, 2);
	assert_int_equal(cl->scope.ports[0].lower, 80);
	assert_int_equal(cl->scope.ports[0].upper, 80);
	assert_int_equal(cl->scope.ports[1].lower, 1024);
	assert_int_equal(cl->scope.ports[1].upper, 65535);
	assert_true(cl->scope.allow_aliases);

	cl = &cfg->clients[1];
	assert_string_equal(cl->name, "bob");
	assert_null(cl->psk_identity);
	assert_null(cl->psk_key);
	assert_string_equal(cl->cert_name, "Bob.Example");
	assert_ptr_equal(cl->upstream, &cfg->upstreams[1]);
	assert_int_equal(cl->scope.prefixes.n, 0);
	assert_int_equal(cl->scope.nfqdns, 0);
	assert_int_equal(cl->scope.nports, 0);
	assert_false(cl->scope.allow_aliases);

	cl = &cfg->clients[2];
	assert_int_equal(cl->psk_key_len, sizeof(carol_key));
	assert_memory_equal(cl->psk_key, carol_key, sizeof(carol_key));

	assert_int_equal(cfg->nupstreams, 3);
	u = &cfg->upstreams[0];
	assert_string_equal(u->name, "up-psk");
	assert_string_equal(u->address, "192.0.2.10");
	assert_int_equal(u->port, 24646);
	assert_int_equal(u->transport, GW_TR_DTLS);
	assert_string_equal(u->cred.psk_identity, "gw-id");
	assert_int_equal(u->cred.psk_key_len, 9);
	assert_memory_equal(u->cred.psk_key, "gw-secret", 9);
	assert_null(u->cred.cert);
	assert_int_equal(u->heartbeat_interval, 45);
	assert_int_equal(u->missing_hb_allowed, 9);
	assert_int_equal(u->reconnect_min, 5);
	assert_int_equal(u->reconnect_max, 50);
	u = &cfg->upstreams[1];
	assert_string_equal(u->address, "dots.provider.example");
	assert_int_equal(u->port, 4646);
	assert_int_equal(u->transport, GW_TR_TLS);
	snprintf(want, sizeof(want), "%s/config/pki/provider-ca.pem", data_dir);
	assert_string_equal(u->cred.ca, want);
	assert_non_null(u->cred.cert);
	assert_non_null(u->cred.key);
	assert_null(u->cred.psk_identity);
	assert_string_equal(u->server_name, "dots.provider.example");
	assert_int_equal(u->heartbeat_interval, 30);
	assert_int_equal(u->reconnect_max, 300);
	u = &cfg->upstreams[2];
	assert_int_equal(u->transport, GW_TR_UDP);
	assert_string_equal(u->address, "2001:db8::53");

	config_free(cfg);
}

static void test_defaults(void **state)
{
	static const char text[] =
		"clients = ( { name = \"c\"; psk-identity = \"c\"; psk-key = \"k\";\n"
		"              upstream = \"u\"; } );\n"
		"upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
		"                psk-identity = \"g\"; psk-key = \"k\"; } );\n";
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX];

	(void)state;
	assert_int_equal(load_text("defaults.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_non_null(cfg);
	assert_int_equal(cfg->mode, GW_MODE_MAP);
	assert_false(cfg->server_domain);
	assert_false(cfg->insecure_lab);
	assert_int_equal(cfg->log_level, DG_LOG_INFO);
	assert_int_equal(cfg->hop_limit, 16);
	assert_int_equal(cfg->max_body, 8192);
	assert_int_equal(cfg->request_timeout, 20);
	assert_string_equal(cfg->id, "dotsgw");
	assert_int_equal(cfg->udp_rcvbuf, 4194304);

	assert_int_equal(cfg->nlisten, 1);
	assert_int_equal(cfg->listen[0].transport, GW_TR_DTLS);
	assert_string_equal(cfg->listen[0].address, "::");
	assert_int_equal(cfg->listen[0].port, 4646);
	assert_null(cfg->server_cred.psk_identity);
	assert_null(cfg->server_cred.cert);
	assert_null(cfg->server_cred.key);
	assert_null(cfg->server_cred.ca);

	assert_int_equal(cfg->session_mitigating.min.heartbeat_interval, 15);
	assert_int_equal(cfg->session_default.mitigating.heartbeat_interval, 30);
	assert_int_equal(cfg->session_idle.max.heartbeat_interval, 240);
	assert_int_equal(cfg->session_idle.min.missing_hb_allowed, 1);
	assert_int_equal(cfg->session_default.idle.missing_hb_allowed, 15);
	assert_int_equal(cfg->session_mitigating.max.missing_hb_allowed, 60);
	assert_int_equal(cfg->session_mitigating.min.probing_rate, 1);
	assert_int_equal(cfg->session_default.idle.probing_rate, 5);
	assert_int_equal(cfg->session_idle.max.probing_rate, 1000);
	assert_int_equal(cfg->session_idle.min.max_retransmit, 2);
	assert_int_equal(cfg->session_default.mitigating.max_retransmit, 3);
	assert_int_equal(cfg->session_mitigating.max.max_retransmit, 15);
	assert_int_equal(cfg->session_mitigating.min.ack_timeout, 100);
	assert_int_equal(cfg->session_default.idle.ack_timeout, 200);
	assert_int_equal(cfg->session_idle.max.ack_timeout, 3000);
	assert_int_equal(cfg->session_idle.min.ack_random_factor, 110);
	assert_int_equal(cfg->session_default.mitigating.ack_random_factor, 150);
	assert_int_equal(cfg->session_mitigating.max.ack_random_factor, 400);

	assert_int_equal(cfg->nclients, 1);
	assert_false(cfg->clients[0].scope.allow_aliases);
	assert_int_equal(cfg->clients[0].scope.prefixes.n, 0);
	assert_int_equal(cfg->clients[0].scope.nports, 0);
	assert_int_equal(cfg->clients[0].line, 1);
	assert_int_equal(cfg->nupstreams, 1);
	assert_int_equal(cfg->upstreams[0].port, 4646);
	assert_int_equal(cfg->upstreams[0].transport, GW_TR_DTLS);
	assert_int_equal(cfg->upstreams[0].heartbeat_interval, 30);
	assert_int_equal(cfg->upstreams[0].missing_hb_allowed, 5);
	assert_int_equal(cfg->upstreams[0].reconnect_min, 60);
	assert_int_equal(cfg->upstreams[0].reconnect_max, 300);
	assert_int_equal(cfg->upstreams[0].line, 3);
	assert_null(cfg->upstreams[0].server_name);
	assert_string_equal(cfg->control_socket, "/run/dotsgw/control.sock");
	assert_int_equal(cfg->control_mode, 0660);
	assert_null(cfg->control_group);
	assert_int_equal(cfg->control_gid, -1);
	assert_false(cfg->control_explicit);
	config_free(cfg);
	unlink(path);
}

/* The control group: values, group by name and number, and each refusal. */
static void test_control(void **state)
{
	static const char base[] =
		"clients = ( { name = \"c\"; psk-identity = \"c\"; psk-key = \"k\";\n"
		"              upstream = \"u\"; } );\n"
		"upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
		"                psk-identity = \"g\"; psk-key = \"k\"; } );\n";
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX], text[2048];

	(void)state;
	snprintf(text, sizeof(text), "%scontrol = { socket = \"/tmp/x/ctl.sock\";\n"
		 "  mode = \"0600\"; group = \"root\"; };\n", base);
	assert_int_equal(load_text("control.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_string_equal(cfg->control_socket, "/tmp/x/ctl.sock");
	assert_int_equal(cfg->control_mode, 0600);
	assert_string_equal(cfg->control_group, "root");
	assert_int_equal(cfg->control_gid, 0);
	assert_true(cfg->control_explicit);
	config_free(cfg);
	unlink(path);

	/* A numeric group needs no entry in the group database. */
	snprintf(text, sizeof(text), "%scontrol = { group = \"4242\"; mode = \"660\"; };\n",
		 base);
	assert_int_equal(load_text("control.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(cfg->control_gid, 4242);
	assert_int_equal(cfg->control_mode, 0660);
	assert_false(cfg->control_explicit);
	config_free(cfg);
	unlink(path);

	snprintf(text, sizeof(text), "%scontrol = { socket = \"run/ctl.sock\"; };\n", base);
	expect_one_error(text, 5, "control.socket", "must be an absolute path");
	snprintf(text, sizeof(text), "%scontrol = {\n socket = \"/%0120d\"; };\n", base, 0);
	expect_one_error(text, 6, "control.socket", "longer than 107 bytes");
	snprintf(text, sizeof(text), "%scontrol = { mode = \"0968\"; };\n", base);
	expect_one_error(text, 5, "control.mode", "not an octal mode");
	snprintf(text, sizeof(text), "%scontrol = { mode = \"4755\"; };\n", base);
	expect_one_error(text, 5, "control.mode", "at most 0777");
	snprintf(text, sizeof(text), "%scontrol = { mode = 660; };\n", base);
	expect_one_error(text, 5, "control.mode", "wrong type");
	snprintf(text, sizeof(text), "%scontrol = {\n\n group = \"no-such-group-dotsgw\"; };\n",
		 base);
	expect_one_error(text, 7, "control.group", "no such group");
	snprintf(text, sizeof(text), "%scontrol = { port = 4000; };\n", base);
	expect_one_error(text, 5, "control.port", "unknown key");
	snprintf(text, sizeof(text), "%scontrol = \"/run/x\";\n", base);
	expect_one_error(text, 5, "control", "wrong type");
}

/* No clients at all is fine when the listener has a certificate. */
static void test_zero_clients(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX], text[PATH_MAX * 3];

	(void)state;
	snprintf(text, sizeof(text),
		 "server = { listen = ( { transport = \"tls\"; } );\n"
		 "  cert = \"%s/config/pki/edge-gw.pem\";\n"
		 "  key = \"%s/config/pki/edge-gw.key\"; };\n", data_dir, data_dir);
	assert_int_equal(load_text("zero.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(cfg->nclients, 0);
	assert_null(cfg->clients);
	assert_int_equal(cfg->nupstreams, 0);
	assert_int_equal(cfg->listen[0].transport, GW_TR_TLS);
	assert_int_equal(cfg->listen[0].port, 4646);
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"x", 1));
	config_free(cfg);
	unlink(path);
}

static void test_sample_cpe(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	const struct gw_client *cl;
	char path[PATH_MAX];

	(void)state;
	data_path(path, sizeof(path), "../../../config/cpe-map.conf");
	assert_int_equal(config_load(path, &cfg, collect, &r), 0);
	if (r.n)
		reports_print(&r);
	assert_int_equal(r.n, 0);
	assert_false(cfg->server_domain);
	assert_false(cfg->insecure_lab);
	assert_int_equal(cfg->nlisten, 2);
	assert_int_equal(cfg->listen[0].transport, GW_TR_DTLS);
	assert_int_equal(cfg->listen[1].transport, GW_TR_TLS);
	assert_int_equal(cfg->nupstreams, 1);
	assert_int_equal(cfg->upstreams[0].transport, GW_TR_DTLS);
	assert_int_equal(cfg->upstreams[0].cred.psk_key_len, 16);
	assert_int_equal(cfg->upstreams[0].cred.psk_key[0], 0x0a);
	assert_int_equal(cfg->nclients, 2);
	cl = config_client_by_psk(cfg, (const uint8_t *)"nms.lan", 7);
	assert_ptr_equal(cl, &cfg->clients[1]);
	assert_ptr_equal(cl->upstream, &cfg->upstreams[0]);
	assert_int_equal(cl->scope.nports, 3);
	assert_int_equal(cfg->clients[0].psk_key_len, 16);
	config_free(cfg);
}

static void test_sample_edge(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	const struct gw_client *cl;
	char src[PATH_MAX], path[PATH_MAX], pki[PATH_MAX + 16];
	char *orig, *text;

	(void)state;
	data_path(src, sizeof(src), "../../../config/edge-map.conf");
	orig = read_all(src);
	snprintf(pki, sizeof(pki), "%s/config/pki/", data_dir);
	text = subst(orig, "/etc/dotsgw/pki/", pki);
	assert_int_equal(load_text("edge.conf", text, path, sizeof(path), &cfg, &r), 0);
	if (r.n)
		reports_print(&r);
	assert_int_equal(r.n, 0);
	assert_true(cfg->server_domain);
	assert_int_equal(cfg->log_level, DG_LOG_WARN);
	assert_non_null(cfg->server_cred.cert);
	assert_non_null(cfg->server_cred.key);
	assert_non_null(cfg->server_cred.ca);
	assert_int_equal(cfg->nclients, 2);
	cl = config_client_by_cert_name(cfg, "DOTS.Globex.Example");
	assert_ptr_equal(cl, &cfg->clients[1]);
	assert_null(cl->psk_identity);
	assert_ptr_equal(cl->upstream, &cfg->upstreams[0]);
	assert_int_equal(cfg->upstreams[0].transport, GW_TR_TLS);
	assert_string_equal(cfg->upstreams[0].server_name, "dots.provider.example");
	assert_null(cfg->upstreams[0].cred.psk_key);
	config_free(cfg);
	unlink(path);
	free(text);
	free(orig);
}

static void test_lookups(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX];

	(void)state;
	data_path(path, sizeof(path), "config/full.conf");
	assert_int_equal(config_load(path, &cfg, collect, &r), 0);

	assert_ptr_equal(config_client_by_psk(cfg, (const uint8_t *)"alice-id", 8),
			 &cfg->clients[0]);
	assert_ptr_equal(config_client_by_psk(cfg, (const uint8_t *)"carol-id", 8),
			 &cfg->clients[2]);
	/* the whole identity must match, not a prefix or a longer string */
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"alice-id", 7));
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"alice-idx", 9));
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"", 0));
	assert_null(config_client_by_psk(NULL, (const uint8_t *)"alice-id", 8));

	assert_ptr_equal(config_client_by_cert_name(cfg, "bob.example"), &cfg->clients[1]);
	assert_ptr_equal(config_client_by_cert_name(cfg, "BOB.EXAMPLE"), &cfg->clients[1]);
	assert_null(config_client_by_cert_name(cfg, "bob.example.org"));
	assert_null(config_client_by_cert_name(cfg, "alice"));
	assert_null(config_client_by_cert_name(cfg, NULL));

	assert_ptr_equal(config_upstream_by_name(cfg, "up-pki"), &cfg->upstreams[1]);
	assert_ptr_equal(config_upstream_by_name(cfg, "up-lab"), &cfg->upstreams[2]);
	assert_null(config_upstream_by_name(cfg, "UP-PKI"));
	assert_null(config_upstream_by_name(cfg, NULL));
	config_free(cfg);
}

static void test_transport_name(void **state)
{
	(void)state;
	assert_string_equal(gw_transport_name(GW_TR_DTLS), "dtls");
	assert_string_equal(gw_transport_name(GW_TR_TLS), "tls");
	assert_string_equal(gw_transport_name(GW_TR_UDP), "udp");
	assert_string_equal(gw_transport_name(GW_TR_TCP), "tcp");
	assert_string_equal(gw_transport_name((enum gw_transport)42), "?");
	assert_true(gw_transport_secure(GW_TR_DTLS));
	assert_false(gw_transport_secure(GW_TR_TCP));
	config_free(NULL);
}

/* ---- errors ------------------------------------------------------------- */

static void test_invalid_reports_every_error(void **state)
{
	static const struct {
		unsigned line;
		const char *key;
		const char *reason;
	} want[] = {
		{ 3, "gateway.log-level", "bad value \"verbose\"" },
		{ 4, "gateway.hop-limit", "out of range 1..255" },
		{ 5, "gateway.max-body", "wrong type" },
		{ 6, "gateway.colour", "unknown key" },
		{ 11, "server.listen[0].transport", "insecure-lab" },
		{ 12, "server.listen[1].address", "not a numeric" },
		{ 14, "server.cert", "no-such-cert.pem" },
		{ 18, "server.session.heartbeat-interval", "not ordered" },
		{ 19, "server.session.ack-timeout", "more than two decimals" },
		{ 20, "server.session.jitter", "unknown key" },
		{ 25, "clients[0].upstream", "no upstream named \"nowhere\"" },
		{ 26, "clients[1].name", "duplicate name (first at line 25)" },
		{ 27, "clients[2].psk-identity", "duplicate psk-identity" },
		{ 29, "clients[3].allowed-prefixes", "\"192.0.2.1/24\": not canonical" },
		{ 30, "clients[4].cert-name", "duplicate cert-name (first at line 28)" },
		{ 31, "clients[5]", "needs psk-identity and psk-key, or cert-name" },
		{ 32, "clients[6].psk-key", "non-hex" },
		{ 33, "clients[6].allowed-ports", "\"70000\"" },
		{ 34, "clients[7].psk-identity", "needs psk-key" },
		{ 38, "upstreams[0].transport", "plain tcp" },
		{ 39, "upstreams[0].port", "70000 out of range 1..65535" },
		{ 40, "upstreams[1].address", "not an IP address or host name" },
		{ 42, "upstreams[2].reconnect-min", "greater than reconnect-max 300" },
		{ 43, "upstreams[3]", "needs psk-identity and psk-key, or cert and key" },
		{ 45, "extra", "unknown key" },
	};
	struct reports r = { .n = 0 };
	struct gw_config *cfg = (struct gw_config *)1;
	char path[PATH_MAX], prefix[PATH_MAX + 64];
	size_t i;

	(void)state;
	data_path(path, sizeof(path), "config/invalid.conf");
	assert_int_equal(config_load(path, &cfg, collect, &r), DG_EINVAL);
	assert_null(cfg);
	if (r.n != sizeof(want) / sizeof(want[0]))
		reports_print(&r);
	assert_int_equal(r.n, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < r.n; i++) {
		assert_report(&r, path, want[i].line, want[i].key);
		/* reports come in file order */
		snprintf(prefix, sizeof(prefix), "%s:%u: %s: ", path, want[i].line,
			 want[i].key);
		assert_true(strncmp(r.line[i], prefix, strlen(prefix)) == 0);
		assert_non_null(strstr(r.line[i] + strlen(prefix), want[i].reason));
	}
	reports_free(&r);
}

static void test_syntax_error(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = (struct gw_config *)1;
	char path[PATH_MAX];

	(void)state;
	data_path(path, sizeof(path), "config/syntax.conf");
	assert_int_equal(config_load(path, &cfg, collect, &r), DG_EINVAL);
	assert_null(cfg);
	assert_int_equal(r.n, 1);
	assert_report(&r, path, 5, "syntax error");
	reports_free(&r);

	/* libconfig refuses mixed types inside [ ]: a syntax error too */
	expect_one_error("gateway = {\n  hop-limit = 3;\n};\nserver = { session = {\n"
			 "  ack-timeout = [1, 2.0, 3]; }; };\n",
			 5, "syntax error", "mismatched element type");
}

static void test_unreadable_file(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = (struct gw_config *)1;
	char path[PATH_MAX];

	(void)state;
	data_path(path, sizeof(path), "config/no-such-file.conf");
	assert_int_equal(config_load(path, &cfg, collect, &r), DG_EIO);
	assert_null(cfg);
	assert_int_equal(r.n, 1);
	assert_report(&r, path, 0, "file");
	assert_report_has(&r, "No such file");
	reports_free(&r);

	cfg = (struct gw_config *)1;
	data_path(path, sizeof(path), "config");
	assert_int_equal(config_load(path, &cfg, collect, &r), DG_EIO);
	assert_null(cfg);
	assert_int_equal(r.n, 1);
	assert_report_has(&r, "not a regular file");
	reports_free(&r);

	cfg = (struct gw_config *)1;
	assert_int_equal(config_load(NULL, &cfg, collect, &r), DG_EINVAL);
	assert_null(cfg);
	assert_int_equal(config_load(path, NULL, collect, &r), DG_EINVAL);
	assert_int_equal(r.n, 0);
}

#define PSK_UP "upstreams = ( { name = \"u\"; address = \"192.0.2.1\"; " \
	       "psk-identity = \"g\"; psk-key = \"k\"; } );\n"
#define PSK_CLIENT "clients = ( { name = \"c\"; psk-identity = \"c\"; " \
		   "psk-key = \"k\"; upstream = \"u\"; } );\n"

/* Many PSK clients, listed out of order: each identity finds its own
 * record through the sorted index, and nothing else matches. */
static void test_psk_index(void **state)
{
	enum { N = 600 };
	size_t cap = N * 128 + 256, len;
	char *text = malloc(cap), path[PATH_MAX], id[32];
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;

	(void)state;
	assert_non_null(text);
	len = (size_t)snprintf(text, cap, PSK_UP "clients = (\n");
	for (unsigned i = 0; i < N; i++) {
		/* 7 is prime to 600: a permutation, "p1" before "p10"... apart */
		unsigned k = (i * 7u) % N;
		len += (size_t)snprintf(text + len, cap - len,
					" { name = \"n%u\"; psk-identity = \"p%u\";"
					" psk-key = \"k\"; upstream = \"u\"; }%s\n",
					k, k, i + 1 < N ? "," : "");
		assert_true(len < cap);
	}
	snprintf(text + len, cap - len, ");\n");
	assert_int_equal(load_text("psk-index.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_non_null(cfg->psk_index);
	assert_int_equal(cfg->npsk_index, N);
	for (unsigned i = 0; i < N; i++) {
		const struct gw_client *cl;
		char name[32];

		snprintf(id, sizeof(id), "p%u", i);
		snprintf(name, sizeof(name), "n%u", i);
		cl = config_client_by_psk(cfg, (const uint8_t *)id, strlen(id));
		assert_non_null(cl);
		assert_string_equal(cl->name, name);
	}
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"p", 1));
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"p600", 4));
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"p1\0", 3));
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"P1", 2));
	assert_null(config_client_by_psk(cfg, NULL, 0));
	assert_null(config_client_by_psk(cfg, (const uint8_t *)"", 0));
	config_free(cfg);
	unlink(path);
	free(text);
}

/* server.udp-receive-buffer: bytes, 0 (the kernel's default) to 1 GiB. */
static void test_udp_receive_buffer(void **state)
{
	static const unsigned ok[] = { 0, 65536, 1073741824 };
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char text[1024], path[PATH_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), PSK_CLIENT PSK_UP
			 "server = { udp-receive-buffer = %u; };\n", ok[i]);
		assert_int_equal(load_text("rcvbuf.conf", text, path, sizeof(path),
					   &cfg, &r), 0);
		assert_int_equal(r.n, 0);
		assert_int_equal(cfg->udp_rcvbuf, ok[i]);
		config_free(cfg);
		unlink(path);
	}
	expect_one_error(PSK_CLIENT PSK_UP "server = {\n udp-receive-buffer = 1073741825; };\n",
			 4, "server.udp-receive-buffer", "out of range 0..1073741824");
	expect_one_error(PSK_CLIENT PSK_UP "server = {\n udp-receive-buffer = -1; };\n",
			 4, "server.udp-receive-buffer", "out of range");
	expect_one_error(PSK_CLIENT PSK_UP "server = {\n udp-receive-buffer = \"4M\"; };\n",
			 4, "server.udp-receive-buffer", "wrong type");
}

/* Rules that need more than one key, and type and shape checks: one
 * error each, with its line and key. */
static void test_cross_checks(void **state)
{
	char text[PATH_MAX * 4], *big;
	size_t i;

	(void)state;
	/* RFC 9132 §8: nothing to authenticate a TLS client with */
	expect_one_error(PSK_UP "server = {\n listen = (\n { transport = \"tls\"; } ); };\n",
			 4, "server.listen[0]", "needs a PSK client or server.cert");
	/* the same with the implicit listener: reported at the server group */
	expect_one_error(PSK_UP "server = { psk-hint = \"h\"; };\n",
			 2, "server.listen", "dtls listener");

	snprintf(text, sizeof(text), PSK_UP
		 "server = { cert = \"%s/config/pki/edge-gw.pem\";\n"
		 "  key = \"%s/config/pki/edge-gw.key\"; };\n"
		 "clients = ( { name = \"c\"; upstream = \"u\";\n"
		 "  cert-name = \"c.example\"; } );\n", data_dir, data_dir);
	expect_one_error(text, 5, "clients[0].cert-name", "server.ca");

	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"k\"; upstream = \"u\";\n cert-name = \"c.example\"; } );\n",
			 4, "clients[0].cert-name", "not both");
	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-key = \"k\";\n"
			 " upstream = \"u\"; } );\n", 2, "clients[0].psk-key", "needs psk-identity");

	snprintf(text, sizeof(text), PSK_CLIENT
		 "upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
		 " psk-identity = \"g\"; psk-key = \"k\";\n"
		 " cert = \"%s/config/pki/edge-gw.pem\"; key = \"%s/config/pki/edge-gw.key\"; } );\n",
		 data_dir, data_dir);
	expect_one_error(text, 2, "upstreams[0]", "not both");
	expect_one_error(PSK_CLIENT PSK_UP "upstreams2 = 1;\n", 3, "upstreams2", "unknown key");
	expect_one_error(PSK_CLIENT "upstreams = (\n { name = \"u\"; address = \"192.0.2.1\";"
			 " psk-identity = \"g\"; psk-key = \"k\"; },\n"
			 " { name = \"u\"; address = \"192.0.2.2\"; psk-identity = \"g\";"
			 " psk-key = \"k\"; } );\n", 4, "upstreams[1].name",
			 "duplicate name (first at line 3)");
	expect_one_error(PSK_CLIENT "upstreams = ( { name = \"u\";\n psk-identity = \"g\";"
			 " psk-key = \"k\"; } );\n", 2, "upstreams[0].address", "missing");
	expect_one_error(PSK_CLIENT "upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
			 " psk-identity = \"g\"; psk-key = \"k\";\n reconnect-max = 30; } );\n",
			 4, "upstreams[0].reconnect-min", "60 greater than reconnect-max 30");
	/* a refused value keeps its default, which must not cause a second error */
	expect_one_error(PSK_CLIENT "upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
			 " psk-identity = \"g\"; psk-key = \"k\";\n reconnect-min = 0;"
			 " reconnect-max = 30; } );\n", 4, "upstreams[0].reconnect-min",
			 "0 out of range 1..86400");
	expect_one_error(PSK_CLIENT "upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
			 " transport = \"quic\"; } );\n", 3, "upstreams[0].transport",
			 "bad value \"quic\" (expected dtls, tls, udp, tcp)");
	expect_one_error(PSK_CLIENT "upstreams = ( { name = \"u\"; address = \"192.0.2.1\";\n"
			 " psk-identity = \"g\"; psk-key = \"k\";\n server-name = \"a b\"; } );\n",
			 4, "upstreams[0].server-name", "not a valid DNS name");
	expect_one_error(PSK_CLIENT "upstreams = ( { name = \"u\";\n address = \"192.0.2.300\";\n"
			 " psk-identity = \"g\"; psk-key = \"k\"; } );\n",
			 3, "upstreams[0].address", "not an IP address or host name");

	expect_one_error(PSK_CLIENT PSK_UP "server = { session = {\n"
			 " probing-rate = [1, 2]; }; };\n",
			 4, "server.session.probing-rate", "[min, default, max]");
	expect_one_error(PSK_CLIENT PSK_UP "server = { session = {\n"
			 " max-retransmit = (1, 2.5, 3); }; };\n",
			 4, "server.session.max-retransmit", "default must be an integer");
	/* RFC 7252 §4.8: ACK_RANDOM_FACTOR is at least 1.0 */
	expect_one_error(PSK_CLIENT PSK_UP "server = { session = {\n"
			 " ack-random-factor = [0.5, 1.5, 2.0]; }; };\n",
			 4, "server.session.ack-random-factor", "min out of range 1.00..10.00");
	expect_one_error(PSK_CLIENT PSK_UP "server = { session = {\n"
			 " heartbeat-interval = [0, 30, 60]; }; };\n",
			 4, "server.session.heartbeat-interval", "min out of range 1..65535");
	expect_one_error(PSK_CLIENT PSK_UP "server = { session = 3; };\n",
			 3, "server.session", "expected a group");

	expect_one_error(PSK_CLIENT PSK_UP "server = { listen = (\n"
			 " { address = \"::\"; },\n { transport = \"dtls\"; port = 4646; } ); };\n",
			 5, "server.listen[1]", "same UDP address and port as server.listen[0] (line 4)");
	/* UDP and TCP sockets do not collide */
	snprintf(text, sizeof(text), PSK_CLIENT PSK_UP "server = { listen = (\n"
		 " { address = \"::\"; },\n { transport = \"tls\"; } ); };\n"
		 "gateway = { colour = 1; };\n");
	expect_one_error(text, 6, "gateway.colour", "unknown key");
	expect_one_error(PSK_CLIENT PSK_UP "server = { listen = ();\n};\n",
			 3, "server.listen", "no listener");
	expect_one_error(PSK_CLIENT PSK_UP "server = { listen = (\n { prot = 1; } ); };\n",
			 4, "server.listen[0].prot", "unknown key");
	expect_one_error(PSK_CLIENT PSK_UP "server = { listen = (\n { port = 0; } ); };\n",
			 4, "server.listen[0].port", "0 out of range 1..65535");

	expect_one_error(PSK_CLIENT PSK_UP "gateway = 5;\n", 3, "gateway", "expected a group");
	expect_one_error(PSK_UP "clients = ( \"c\" );\n", 2, "clients[0]", "expected a group");
	expect_one_error(PSK_UP "clients = { name = \"c\"; };\n", 2, "clients", "expected a list");
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n hop-limit = 5000000000L; };\n",
			 4, "gateway.hop-limit", "5000000000 out of range");
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n hop-limit = 1.5; };\n",
			 4, "gateway.hop-limit", "expected an integer, got a float");
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n server-domain = 1; };\n",
			 4, "gateway.server-domain", "expected a boolean");
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n id = \"\"; };\n",
			 4, "gateway.id", "must not be empty");
	/* never echo a control character into a log line */
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n id = \"a\\nb\"; };\n",
			 4, "gateway.id", "control characters");
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n mode = \"proxy\"; };\n",
			 4, "gateway.mode", "expected map");
	/* an echoed value has its control characters replaced */
	expect_one_error(PSK_CLIENT PSK_UP "gateway = {\n mode = \"x\\ny\\x1b[2J\"; };\n",
			 4, "gateway.mode", "bad value \"x?y?[2J\"");

	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"hex:abc\"; upstream = \"u\"; } );\n",
			 3, "clients[0].psk-key", "even number");
	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"k\"; upstream = \"u\"; allowed-prefixes = [ 1 ]; } );\n",
			 3, "clients[0].allowed-prefixes", "expected a string");
	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"k\"; upstream = \"u\";\n allowed-prefixes = [ \"10.0.0.0\" ]; } );\n",
			 4, "clients[0].allowed-prefixes", "not an IP prefix");
	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"k\"; } );\n", 2, "clients[0].upstream", "missing");
	/* the line of a missing key is its entry's, the bad fqdn on its own */
	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"k\"; upstream = \"u\";\n allowed-fqdns = [ \"a..b\" ]; } );\n",
			 4, "clients[0].allowed-fqdns", "empty label");
	expect_one_error(PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";\n"
			 " psk-key = \"k\"; upstream = \"u\";\n allow-aliases = \"yes\"; } );\n",
			 4, "clients[0].allow-aliases", "expected a boolean");

	/* a 257-byte key is one byte too long */
	big = malloc(1024);
	assert_non_null(big);
	i = (size_t)snprintf(big, 1024, PSK_UP "clients = ( { name = \"c\"; psk-identity = \"c\";"
			     " upstream = \"u\";\n psk-key = \"");
	memset(big + i, 'x', 257);
	strcpy(big + i + 257, "\"; } );\n");
	expect_one_error(big, 3, "clients[0].psk-key", "longer than 256 bytes");
	memcpy(big + i + 256, "\"; } );\n", 9);
	{
		struct reports r = { .n = 0 };
		struct gw_config *cfg = NULL;
		char path[PATH_MAX];

		assert_int_equal(load_text("k256.conf", big, path, sizeof(path), &cfg, &r), 0);
		assert_int_equal(cfg->clients[0].psk_key_len, 256);
		config_free(cfg);
		unlink(path);
	}
	free(big);
}

/* A file of nothing but mistakes costs bounded memory and output. */
static void test_error_cap(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = (struct gw_config *)1;
	char path[PATH_MAX], *text;
	size_t i, len = 0;

	(void)state;
	text = malloc(300 * 16 + 512);
	assert_non_null(text);
	len += (size_t)sprintf(text, "gateway = {\n");
	for (i = 0; i < 300; i++)
		len += (size_t)sprintf(text + len, " k%zu = 1;\n", i);
	strcpy(text + len, "};\n" PSK_CLIENT PSK_UP);
	assert_int_equal(load_text("cap.conf", text, path, sizeof(path), &cfg, &r),
			 DG_EINVAL);
	assert_null(cfg);
	assert_int_equal(r.n, 201);
	assert_report(&r, path, 2, "gateway.k0");
	assert_report(&r, path, 201, "gateway.k199");
	assert_report_has(&r, "100 more errors not shown");
	reports_free(&r);
	unlink(path);
	free(text);
}

/* Errors in an @include'd file name that file and its own lines. */
static void test_include(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX], inc[PATH_MAX], text[PATH_MAX * 2];

	(void)state;
	snprintf(inc, sizeof(inc), "%s/inc.part", tmp_dir);
	write_file(inc, "hop-limit = 7;\nbogus = 1;\n");
	snprintf(text, sizeof(text), PSK_CLIENT PSK_UP "gateway = {\n@include \"%s\"\n};\n",
		 inc);
	assert_int_equal(load_text("main.conf", text, path, sizeof(path), &cfg, &r),
			 DG_EINVAL);
	assert_null(cfg);
	assert_int_equal(r.n, 1);
	/* the report names the included file and its line */
	assert_report(&r, inc, 2, "gateway.bogus");
	reports_free(&r);

	write_file(inc, "hop-limit = 7;\n");
	assert_int_equal(config_load(path, &cfg, collect, &r), 0);
	assert_int_equal(cfg->hop_limit, 7);
	config_free(cfg);
	unlink(inc);
	unlink(path);
}

/* The metrics group: off by default, loopback when on, every key checked. */
static void test_metrics_keys(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX];

	(void)state;
	assert_int_equal(load_text("m0.conf", PSK_CLIENT PSK_UP, path, sizeof(path),
				   &cfg, &r), 0);
	assert_false(cfg->metrics.enabled);
	assert_string_equal(cfg->metrics.address, "127.0.0.1");
	assert_int_equal(cfg->metrics.port, 9646);
	assert_string_equal(cfg->metrics.path, "/metrics");
	config_free(cfg);
	unlink(path);

	assert_int_equal(load_text("m1.conf", PSK_CLIENT PSK_UP
				   "metrics = { enabled = true; address = \"::1\";\n"
				   "  port = 19646; path = \"/x/prom-metrics_1\"; };\n",
				   path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_true(cfg->metrics.enabled);
	assert_string_equal(cfg->metrics.address, "::1");
	assert_int_equal(cfg->metrics.port, 19646);
	assert_string_equal(cfg->metrics.path, "/x/prom-metrics_1");
	config_free(cfg);
	unlink(path);

	expect_one_error(PSK_CLIENT PSK_UP "metrics = { enabled = 1; };\n", 3,
			 "metrics.enabled", "expected a boolean");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { address = \"localhost\"; };\n", 3,
			 "metrics.address", "not a numeric IPv4 or IPv6 address");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { port = 0; };\n", 3,
			 "metrics.port", "0 out of range 1..65535");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { port = 65536; };\n", 3,
			 "metrics.port", "out of range");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { path = \"metrics\"; };\n", 3,
			 "metrics.path", "must start with /");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { path = \"/m?x=1\"; };\n", 3,
			 "metrics.path", "without spaces, ?, # or %");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { path = \"/a b\"; };\n", 3,
			 "metrics.path", "without spaces");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = { path = \"\"; };\n", 3,
			 "metrics.path", "must not be empty");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = {\n  listen = 1; };\n", 4,
			 "metrics.listen", "unknown key");
	expect_one_error(PSK_CLIENT PSK_UP "metrics = ( 1 );\n", 3,
			 "metrics", "expected a group");
}

#define DRAIN_HEAD "server = { listen = ( { transport = \"tls\"; } );\n" \
		   "  cert = \"%s/config/pki/edge-gw.pem\";\n" \
		   "  key = \"%s/config/pki/edge-gw.key\";\n"

static void test_drain(void **state)
{
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	char path[PATH_MAX], text[PATH_MAX * 3];

	(void)state;
	snprintf(text, sizeof(text), DRAIN_HEAD
		 "  drain = { alternate = \"alt.dots.test\";\n"
		 "    addresses = [ \"192.0.2.7\", \"2001:db8::7\" ]; };\n};\n",
		 data_dir, data_dir);
	assert_int_equal(load_text("drain.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_string_equal(cfg->drain.alternate, "alt.dots.test");
	assert_int_equal(cfg->drain.naddresses, 2);
	assert_string_equal(cfg->drain.addresses[1], "2001:db8::7");
	assert_int_equal(cfg->drain.ttl, 300);
	config_free(cfg);
	unlink(path);
	cfg = NULL;

	/* No alternate, a bad address, a TTL beyond 2^32-1: three errors,
	 * each on its own line. */
	snprintf(text, sizeof(text), DRAIN_HEAD
		 "  drain = {\n"
		 "    addresses = [ \"192.0.2.300\" ];\n"
		 "    ttl = 4294967296L; };\n};\n", data_dir, data_dir);
	assert_int_not_equal(load_text("drain-bad.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_null(cfg);
	bool alt = false, addr = false, ttl = false;
	for (size_t i = 0; i < r.n; i++) {
		alt |= strstr(r.line[i], ":4: server.drain.alternate") != NULL;
		addr |= strstr(r.line[i], ":5: server.drain.addresses") != NULL;
		ttl |= strstr(r.line[i], ":6: server.drain.ttl") != NULL;
	}
	if (!alt || !addr || !ttl || r.n != 3)
		reports_print(&r);
	assert_int_equal(r.n, 3);
	assert_true(alt && addr && ttl);
	reports_free(&r);
	unlink(path);
}

/* ---- upstreams[].discovery (RFC 8973) ---------------------------------------- */

#define DISC_HEAD \
	"clients = ( { name = \"c\"; psk-identity = \"c\"; psk-key = \"k\";\n" \
	"              upstream = \"u\"; } );\n"

static void test_discovery(void **state)
{
	static const char text[] = DISC_HEAD
		"upstreams = ( { name = \"u\"; psk-identity = \"g\"; psk-key = \"k\";\n"
		"  discovery = { domain = \"example.net\"; resolver = \"127.0.0.1:53\";\n"
		"                dhcp = true; transports = [ \"udp\" ]; ttl-min = 2; }; },\n"
		"  { name = \"v\"; address = \"192.0.2.1\"; psk-identity = \"g\"; psk-key = \"k\";\n"
		"    discovery = { domain = \"example.org\"; }; },\n"
		"  { name = \"w\"; address = \"192.0.2.2\"; psk-identity = \"g\"; psk-key = \"k\"; },\n"
		"  { name = \"x\"; psk-identity = \"g\"; psk-key = \"k\";\n"
		"    discovery = { dns = false; dhcp = true; dhcp-dir = \"/tmp/d\"; }; } );\n";
	struct reports r = { .n = 0 };
	struct gw_config *cfg = NULL;
	const struct gw_discovery *d;
	char path[PATH_MAX];

	(void)state;
	assert_int_equal(load_text("disc.conf", text, path, sizeof(path), &cfg, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(cfg->nupstreams, 4);
	assert_null(cfg->upstreams[0].address);
	d = &cfg->upstreams[0].discovery;
	assert_true(d->enabled);
	assert_string_equal(d->domain, "example.net");
	assert_string_equal(d->resolver, "127.0.0.1:53");
	assert_true(d->dhcp);
	assert_true(d->dns);
	assert_string_equal(d->dhcp_dir, "/run/dotsgw/dhcp");
	assert_int_equal(d->transport_mask, GW_DISC_UDP);
	assert_int_equal(d->ttl_min, 2);
	/* Defaults; an explicit address may come with discovery. */
	d = &cfg->upstreams[1].discovery;
	assert_string_equal(cfg->upstreams[1].address, "192.0.2.1");
	assert_true(d->enabled);
	assert_true(d->dns);
	assert_false(d->dhcp);
	assert_null(d->resolver);
	assert_int_equal(d->transport_mask, GW_DISC_UDP | GW_DISC_TCP);
	assert_int_equal(d->ttl_min, 30);
	assert_false(cfg->upstreams[2].discovery.enabled);
	d = &cfg->upstreams[3].discovery;
	assert_false(d->dns);
	assert_null(d->domain);
	assert_string_equal(d->dhcp_dir, "/tmp/d");
	config_free(cfg);
	reports_free(&r);
	unlink(path);
}

#define DISC_UP(body) DISC_HEAD \
	"upstreams = ( { name = \"u\"; psk-identity = \"g\"; psk-key = \"k\";\n" body " } );\n"

static void test_discovery_errors(void **state)
{
	(void)state;
	expect_one_error(DISC_UP(""), 3, "upstreams[0].address", "or a discovery group");
	expect_one_error(DISC_UP("discovery = { dhcp = false; };"), 4,
			 "upstreams[0].discovery.domain", "dns discovery needs the domain");
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\"; dns = false; };"), 4,
			 "upstreams[0].discovery", "enable dns or dhcp");
	expect_one_error(DISC_UP("discovery = { dns = false; dhcp = true;\n"
				 " resolver = \"127.0.0.1\"; };"), 5,
			 "upstreams[0].discovery.resolver", "only with dns = true");
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\";\n"
				 " dhcp-dir = \"/tmp/x\"; };"), 5,
			 "upstreams[0].discovery.dhcp-dir", "only with dhcp = true");
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\";\n"
				 " resolver = \"127.0.0.1:0\"; };"), 5,
			 "upstreams[0].discovery.resolver", "port not in 1..65535");
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\";\n"
				 " resolver = \"ns.example\"; };"), 5,
			 "upstreams[0].discovery.resolver", "not a numeric");
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\";\n"
				 " transports = [ \"ip\" ]; };"), 5,
			 "upstreams[0].discovery.transports", "not \"udp\"");
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\";\n"
				 " transports = [ \"tcp\", \"tcp\" ]; };"), 5,
			 "upstreams[0].discovery.transports", "listed twice");
	expect_one_error(DISC_UP("discovery = { domain = \"bad name!\"; };"), 4,
			 "upstreams[0].discovery.domain", NULL);
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\"; ttl-min = 0; };"), 4,
			 "upstreams[0].discovery.ttl-min", NULL);
	expect_one_error(DISC_UP("discovery = { domain = \"e.net\"; colour = 1; };"), 4,
			 "upstreams[0].discovery.colour", "unknown key");
	expect_one_error(DISC_UP("discovery = 3;"), 4, "upstreams[0].discovery", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_config),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_control),
		cmocka_unit_test(test_zero_clients),
		cmocka_unit_test(test_sample_cpe),
		cmocka_unit_test(test_sample_edge),
		cmocka_unit_test(test_lookups),
		cmocka_unit_test(test_transport_name),
		cmocka_unit_test(test_invalid_reports_every_error),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_unreadable_file),
		cmocka_unit_test(test_psk_index),
		cmocka_unit_test(test_udp_receive_buffer),
		cmocka_unit_test(test_cross_checks),
		cmocka_unit_test(test_error_cap),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_metrics_keys),
		cmocka_unit_test(test_discovery),
		cmocka_unit_test(test_discovery_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
