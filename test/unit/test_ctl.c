/*
 * test_ctl.c: the control commands (gateway/ctl.c) against a core driven
 * by hand, as test_core.c drives it: a client session, its upstream
 * session brought to READY, mitigations accepted upstream and a status
 * notification. Every answer is checked as the JSON dotsctl reads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cbor.h"
#include "core.h"
#include "ident.h"
#include "../../gateway/config.h"
#include "../../gateway/ctl.h"

#define T0 1000000u /* the core's clock at the start of each test */
#define WALL0 1763784000 /* 2025-11-22T04:00:00Z */

struct fix {
	struct gw_config cfg;
	struct gw_upstream up;
	struct gw_client cl[2];
	struct core *core;
	struct core_actions out;
	dg_time_ms now;
	struct ctl_env env;
	int reloads, reload_rc, levels;
	enum dg_log_level level_seen;
	int own_requests, own_rc, drain_rc;
	bool own_upstream_seen_null, draining;
	char own_upstream[32], own_prefix[64];
	uint32_t withdrawn;
};

/* ---- the env's callbacks ------------------------------------------------------- */

static void fake_dn_tls(void *arg, uint64_t sid, char *buf, size_t len)
{
	(void)arg;
	snprintf(buf, len, "(DTLS1.2)-(ECDHE-PSK)-(AES-128-GCM) sid=%llu",
		 (unsigned long long)sid);
}

static void fake_up_tls(void *arg, uint64_t id, char *buf, size_t len)
{
	(void)arg;
	snprintf(buf, len, "up-tls-%llu", (unsigned long long)id);
}

static int fake_reload(void *arg, char *err, size_t errlen)
{
	struct fix *f = arg;

	f->reloads++;
	if (f->reload_rc)
		snprintf(err, errlen, "line 3: bad key");
	return f->reload_rc;
}

static int fake_own_request(void *arg, const char *upstream, const json_t *body,
			    uint32_t *mid, char *cuid, const char **used,
			    char *err, size_t errlen)
{
	struct fix *f = arg;
	const json_t *e = json_array_get(json_object_get(json_object_get(body,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);

	f->own_requests++;
	f->own_upstream_seen_null = upstream == NULL;
	snprintf(f->own_upstream, sizeof(f->own_upstream), "%s", upstream ? upstream : "");
	snprintf(f->own_prefix, sizeof(f->own_prefix), "%s",
		 json_string_value(json_array_get(json_object_get(e, "target-prefix"), 0)) ?: "");
	if (f->own_rc) {
		snprintf(err, errlen, "no scope");
		return f->own_rc;
	}
	*mid = 77;
	strcpy(cuid, "gw-cuid");
	*used = "provider";
	return 0;
}

static int fake_own_withdraw(void *arg, const char *upstream, uint32_t mid,
			     char *err, size_t errlen)
{
	struct fix *f = arg;

	(void)upstream;
	if (f->own_rc) {
		snprintf(err, errlen, "no such mid");
		return f->own_rc;
	}
	f->withdrawn = mid;
	return 0;
}

static int fake_drain(void *arg, bool on, size_t *told)
{
	struct fix *f = arg;

	if (f->drain_rc)
		return f->drain_rc;
	f->draining = on;
	*told = on ? 3 : 0;
	return 0;
}

static void fake_level(void *arg, enum dg_log_level l)
{
	struct fix *f = arg;

	f->levels++;
	f->level_seen = l;
	dg_log_set_level(l);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct prefix p;

	assert_non_null(f);
	f->up.name = "provider";
	f->up.address = "127.0.0.1";
	f->up.port = 4646;
	f->up.transport = GW_TR_DTLS;
	f->up.heartbeat_interval = 2;
	f->up.missing_hb_allowed = 3;
	f->up.reconnect_min = 1;
	f->up.reconnect_max = 8;
	for (int i = 0; i < 2; i++) {
		f->cl[i].name = i ? "bob" : "alice";
		f->cl[i].psk_identity = i ? "bob" : "alice";
		f->cl[i].upstream = &f->up;
		assert_int_equal(prefix_parse(i ? "198.51.100.0/24" : "203.0.113.0/24",
					      false, &p), 0);
		assert_int_equal(prefix_set_add(&f->cl[i].scope.prefixes, &p), 0);
	}
	f->cfg.clients = f->cl;
	f->cfg.nclients = 2;
	f->cfg.upstreams = &f->up;
	f->cfg.nupstreams = 1;
	f->cfg.hop_limit = 16;
	f->cfg.max_body = 8192;
	f->cfg.request_timeout = 10;
	f->cfg.id = "gw-test";
	model_session_defaults(&f->cfg.session_default);
	f->cfg.session_default.idle.heartbeat_interval = 5;
	f->cfg.session_default.mitigating.heartbeat_interval = 5;
	f->cfg.session_default.idle.missing_hb_allowed = 3;
	f->cfg.session_default.mitigating.missing_hb_allowed = 3;
	f->now = T0;
	f->core = core_new(&f->cfg, 42);
	assert_non_null(f->core);
	f->env = (struct ctl_env){
		.core = f->core, .cfg = &f->cfg, .version = "9.8.7",
		.now = T0, .started = T0 - 65000, .wall_now = WALL0,
		.dn_tls = fake_dn_tls, .up_tls = fake_up_tls,
		.set_log_level = fake_level, .reload = fake_reload,
		.own_request = fake_own_request, .own_withdraw = fake_own_withdraw,
		.drain = fake_drain, .arg = f,
	};
	dg_log_set_level(DG_LOG_ERR);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	core_actions_free(&f->out);
	core_free(f->core);
	for (int i = 0; i < 2; i++)
		prefix_set_free(&f->cl[i].scope.prefixes);
	free(f);
	return 0;
}

/* ---- driving the core ------------------------------------------------------------- */

static void clear(struct fix *f) { core_actions_clear(&f->out); }

static struct core_action *find_act(struct fix *f, enum core_act_type t,
				    const char *path)
{
	for (size_t i = 0; i < f->out.n; i++) {
		struct core_action *a = &f->out.v[i];
		if (a->type == t && (!path || (a->msg.path && strstr(a->msg.path, path))))
			return a;
	}
	return NULL;
}

static uint8_t *encode_json(const char *text, size_t *len)
{
	json_t *j = json_loads(text, 0, NULL);
	uint8_t *buf = NULL;

	assert_non_null(j);
	assert_int_equal(cbor_encode(j, &buf, len, NULL), 0);
	json_decref(j);
	return buf;
}

/* The upstream answers sent with code and json_body. */
static void up_answer(struct fix *f, const struct core_action *sent, int code,
		      const char *json_body, int observe, uint64_t up_id)
{
	struct core_response r;
	size_t len = 0;
	uint8_t *buf = json_body ? encode_json(json_body, &len) : NULL;

	memset(&r, 0, sizeof(r));
	r.up_id = up_id;
	memcpy(r.token, sent->msg.token, sent->msg.token_len);
	r.token_len = sent->msg.token_len;
	r.code = code;
	r.has_observe = observe >= 0;
	r.observe = observe >= 0 ? (uint32_t)observe : 0;
	r.body = buf;
	r.body_len = len;
	r.has_content_format = buf != NULL;
	r.content_format = 271;
	core_on_up_response(f->core, &r, f->now, &f->out);
	free(buf);
}

/* Client who's session sid up, its upstream READY; returns the up id. */
static uint64_t bring_up(struct fix *f, uint64_t sid, int who, const char *peer)
{
	struct core_dn_info info = { CORE_TR_DTLS, &f->cl[who], NULL, peer };
	char cdid[IDENT_LEN + 1];

	ident_derive((const uint8_t *)f->cl[who].psk_identity,
		     strlen(f->cl[who].psk_identity), cdid);
	info.cdid = cdid;
	assert_int_equal(core_on_dn_session(f->core, sid, &info, f->now, &f->out), 0);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	uint64_t up_id = open->up_id;
	clear(f);
	core_on_up_event(f->core, up_id, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action *cfgput = find_act(f, CORE_ACT_UP_SEND, "/config/sid=");
	assert_non_null(cfgput);
	struct core_action copy = *cfgput;
	up_answer(f, &copy, 201, NULL, -1, up_id);
	clear(f);
	return up_id;
}

#define REQ_BODY \
	"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{" \
	"\"target-prefix\":[\"%s\"]," \
	"\"target-protocol\":[6],\"lifetime\":3600}]}}"

/* PUT cuid/mid from session sid, accepted upstream (lifetime 1800).
 * Returns the gateway's upstream observation request (paths dropped). */
static struct core_action install(struct fix *f, uint64_t sid, uint64_t up_id,
				  const char *cuid, uint32_t mid, const char *prefix)
{
	char path[128], segs[4][64], body[512], rsp[160];
	const char *ptrs[4] = { segs[0], segs[1], segs[2], segs[3] };
	struct core_request r;
	size_t len;

	snprintf(path, sizeof(path), "/.well-known/dots/mitigate/cuid=%s/mid=%u", cuid, mid);
	snprintf(segs[0], 64, ".well-known");
	snprintf(segs[1], 64, "dots");
	snprintf(segs[2], 64, "mitigate");
	snprintf(segs[3], 64, "cuid=%s", cuid);
	char mseg[64];
	snprintf(mseg, sizeof(mseg), "mid=%u", mid);
	const char *p5[5] = { ptrs[0], ptrs[1], ptrs[2], ptrs[3], mseg };
	snprintf(body, sizeof(body), REQ_BODY, prefix);
	uint8_t *cb = encode_json(body, &len);
	memset(&r, 0, sizeof(r));
	r.dn_sid = sid;
	r.req_id = 1000 + mid;
	r.method = CORE_PUT;
	r.path = p5;
	r.npath = 5;
	r.token_len = 2;
	r.body = cb;
	r.body_len = len;
	r.has_content_format = true;
	r.content_format = 271;
	core_on_dn_request(f->core, &r, f->now, &f->out);
	free(cb);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	struct core_action copy = *put;
	snprintf(rsp, sizeof(rsp),
		 "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":%u,\"lifetime\":1800}]}}",
		 mid);
	up_answer(f, &copy, 201, rsp, -1, up_id);
	struct core_action *obs = NULL;
	for (size_t i = 0; i < f->out.n; i++)
		if (f->out.v[i].type == CORE_ACT_UP_SEND && f->out.v[i].msg.code == CORE_GET)
			obs = &f->out.v[i];
	assert_non_null(obs);
	struct core_action ocopy = *obs;
	ocopy.msg.path = NULL;
	ocopy.msg.payload = NULL;
	clear(f);
	return ocopy;
}

/* ---- asking ---------------------------------------------------------------------- */

/* Sends req (len -1: strlen) and returns the parsed answer; checks that it
 * is one line ending in '\n'. */
static json_t *ask_n(struct fix *f, const char *req, ssize_t n)
{
	size_t out_len = 0;
	char *out;
	json_t *j;

	f->env.now = f->now;
	out = ctl_handle(&f->env, req, n < 0 ? strlen(req) : (size_t)n, &out_len);
	assert_non_null(out);
	assert_int_equal(strlen(out), out_len);
	assert_true(out_len > 1 && out[out_len - 1] == '\n');
	assert_null(memchr(out, '\n', out_len - 1));
	j = json_loads(out, 0, NULL);
	if (!j)
		fail_msg("answer is not JSON: %s", out);
	free(out);
	assert_true(json_is_object(j));
	assert_true(json_is_boolean(json_object_get(j, "ok")));
	return j;
}

static json_t *ask(struct fix *f, const char *req)
{
	return ask_n(f, req, -1);
}

static json_t *ask_ok(struct fix *f, const char *req)
{
	json_t *j = ask(f, req);

	if (!json_is_true(json_object_get(j, "ok")))
		fail_msg("%s refused: %s", req,
			 json_string_value(json_object_get(j, "error")));
	return j;
}

/* The request is refused with an error containing want. */
static void refused_n(struct fix *f, const char *req, ssize_t n, const char *want)
{
	json_t *j = ask_n(f, req, n);
	const char *err = json_string_value(json_object_get(j, "error"));

	assert_true(json_is_false(json_object_get(j, "ok")));
	assert_non_null(err);
	if (!strstr(err, want))
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
	json_decref(j);
}

static void refused(struct fix *f, const char *req, const char *want)
{
	refused_n(f, req, -1, want);
}

static const char *sget(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	if (!s)
		fail_msg("%s is not a string", k);
	return s;
}

static json_int_t iget(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	if (!json_is_integer(v))
		fail_msg("%s is not an integer", k);
	return json_integer_value(v);
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_hostile_requests_refused(void **state)
{
	struct fix *f = *state;
	char big[CTL_REQUEST_MAX + 64];

	refused(f, "garbage", "not JSON");
	refused(f, "", "not JSON");
	refused(f, "[1,2]", "a request is a JSON object");
	refused(f, "\"status\"", "not JSON");
	refused(f, "{}", "cmd is required");
	refused(f, "{\"cmd\":7}", "cmd is required");
	refused(f, "{\"cmd\":\"status\"} trailing", "not JSON");
	refused(f, "{\"cmd\":\"status\",\"cmd\":\"reload\"}", "not JSON");
	refused(f, "{\"cmd\":\"shutdown\"}", "unknown command \"shutdown\"");
	refused(f, "{\"cmd\":\"status\",\"verbose\":true}",
		"status: unknown argument \"verbose\"");
	/* Echoed names are cut and cleaned. */
	refused(f, "{\"cmd\":\"\\u001b[31mxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
		"unknown command \"?[31mxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"");
	/* Not UTF-8, and a NUL inside. */
	refused_n(f, "{\"cmd\":\"st\xff\xfe\"}", -1, "not JSON");
	refused_n(f, "{\"cmd\":\"status\"}\0{\"cmd\":1}", 27, "not JSON");
	/* Longer than the limit: refused before parsing. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"cmd\":\"status\"}", 16);
	refused_n(f, big, CTL_REQUEST_MAX + 1, "longer than 4096 bytes");
	/* At the limit: fine (JSON allows trailing white space). */
	json_t *j = ask_n(f, big, CTL_REQUEST_MAX);
	assert_true(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	/* Deep nesting does not crash the parser. */
	memset(big, '[', 4000);
	refused_n(f, big, 4000, "not JSON");
	/* Nothing was changed by any of it. */
	assert_int_equal(f->reloads, 0);
	assert_int_equal(f->levels, 0);
}

static void test_status_counts(void **state)
{
	struct fix *f = *state;
	json_t *j = ask_ok(f, "{\"cmd\":\"status\"}");

	assert_string_equal(sget(j, "version"), "9.8.7");
	assert_string_equal(sget(j, "id"), "gw-test");
	assert_int_equal(iget(j, "uptime"), 65);
	assert_string_equal(sget(j, "mode"), "map");
	assert_true(json_is_false(json_object_get(j, "server-domain")));
	assert_string_equal(sget(j, "log-level"), "err");
	assert_int_equal(iget(json_object_get(j, "sessions"), "downstream"), 0);
	assert_int_equal(iget(j, "mitigations"), 0);
	assert_int_equal(iget(j, "clients"), 2);
	assert_int_equal(iget(j, "upstreams"), 1);
	json_decref(j);

	uint64_t up = bring_up(f, 7, 0, "127.0.0.1:5000");
	install(f, 7, up, "cuid-a", 3, "203.0.113.0/28");
	/* An observation by the client. */
	struct core_request r;
	const char *path[] = { ".well-known", "dots", "mitigate", "cuid=cuid-a", "mid=3" };
	memset(&r, 0, sizeof(r));
	r.dn_sid = 7;
	r.req_id = 99;
	r.method = CORE_GET;
	r.path = path;
	r.npath = 5;
	r.has_observe = true;
	r.token_len = 3;
	core_on_dn_request(f->core, &r, f->now, &f->out);
	clear(f);

	f->now += 10000;
	j = ask_ok(f, "{\"cmd\":\"status\"}");
	assert_int_equal(iget(j, "uptime"), 75);
	const json_t *s = json_object_get(j, "sessions");
	assert_int_equal(iget(s, "downstream"), 1);
	assert_int_equal(iget(s, "upstream"), 1);
	assert_int_equal(iget(s, "upstream-ready"), 1);
	assert_int_equal(iget(j, "mitigations"), 1);
	assert_int_equal(iget(j, "observers"), 1);
	/* The gateway's own observation of mid 3 upstream. */
	assert_int_equal(iget(j, "pending-upstream-requests"), 1);
	json_decref(j);
}

static void test_sessions_both_sides(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 7, 0, "127.0.0.1:5000");
	char cdid[IDENT_LEN + 1];

	ident_derive((const uint8_t *)"alice", 5, cdid);
	f->now += 12000; /* 12 s without a word from the client: 2 intervals of 5 s */
	json_t *j = ask_ok(f, "{\"cmd\":\"sessions\"}");
	json_t *arr = json_object_get(j, "sessions");
	assert_int_equal(json_array_size(arr), 2);
	/* Downstream first. */
	json_t *d = json_array_get(arr, 0), *u = json_array_get(arr, 1);
	assert_string_equal(sget(d, "side"), "downstream");
	assert_int_equal(iget(d, "id"), 7);
	assert_string_equal(sget(d, "peer"), "127.0.0.1:5000");
	assert_string_equal(sget(d, "client"), "alice");
	assert_string_equal(sget(d, "cdid"), cdid);
	assert_string_equal(sget(d, "transport"), "dtls");
	assert_string_equal(sget(d, "cipher"), "(DTLS1.2)-(ECDHE-PSK)-(AES-128-GCM) sid=7");
	assert_string_equal(sget(d, "state"), "established");
	assert_int_equal(iget(d, "heartbeat-interval"), 5);
	assert_int_equal(iget(d, "heartbeats-missed"), 2);
	assert_int_equal(iget(d, "missing-hb-allowed"), 3);
	assert_int_equal(iget(d, "age"), 12);
	/* Established 12 s before WALL0 (04:00:00Z). */
	assert_string_equal(sget(d, "established"), "2025-11-22T03:59:48Z");

	assert_string_equal(sget(u, "side"), "upstream");
	assert_int_equal(iget(u, "id"), (json_int_t)up);
	assert_string_equal(sget(u, "peer"), "127.0.0.1:4646");
	assert_string_equal(sget(u, "upstream"), "provider");
	assert_string_equal(sget(u, "client"), "alice");
	assert_string_equal(sget(u, "transport"), "dtls");
	assert_string_equal(sget(u, "state"), "ready");
	assert_string_equal(sget(u, "cipher"), "up-tls-1");
	assert_int_equal(iget(u, "age"), 12);
	assert_true(json_is_null(json_object_get(u, "reconnect-in")));
	json_decref(j);

	/* One side only. */
	j = ask_ok(f, "{\"cmd\":\"sessions\",\"side\":\"upstream\"}");
	arr = json_object_get(j, "sessions");
	assert_int_equal(json_array_size(arr), 1);
	assert_string_equal(sget(json_array_get(arr, 0), "side"), "upstream");
	json_decref(j);
	j = ask_ok(f, "{\"cmd\":\"sessions\",\"side\":\"downstream\"}");
	assert_int_equal(json_array_size(json_object_get(j, "sessions")), 1);
	json_decref(j);
	refused(f, "{\"cmd\":\"sessions\",\"side\":\"left\"}", "side must be");
	refused(f, "{\"cmd\":\"sessions\",\"side\":1}", "side must be");

	/* The upstream goes down: backoff, no cipher, a reconnection time. */
	core_on_up_event(f->core, up, CORE_UP_CLOSED, f->now, &f->out);
	clear(f);
	j = ask_ok(f, "{\"cmd\":\"sessions\",\"side\":\"upstream\"}");
	u = json_array_get(json_object_get(j, "sessions"), 0);
	assert_string_equal(sget(u, "state"), "backoff");
	assert_true(json_is_null(json_object_get(u, "cipher")));
	assert_true(json_is_null(json_object_get(u, "established")));
	assert_int_equal(iget(u, "reconnect-in"), 1);
	json_decref(j);
}

static void test_sessions_sorted_and_names_cleaned(void **state)
{
	struct fix *f = *state;

	bring_up(f, 9, 1, "peer-\xff-bad");
	bring_up(f, 3, 0, "127.0.0.1:1");
	json_t *j = ask_ok(f, "{\"cmd\":\"sessions\",\"side\":\"downstream\"}");
	json_t *arr = json_object_get(j, "sessions");
	assert_int_equal(json_array_size(arr), 2);
	assert_int_equal(iget(json_array_get(arr, 0), "id"), 3);
	assert_int_equal(iget(json_array_get(arr, 1), "id"), 9);
	/* A peer string that is not UTF-8 still comes out, cleaned. */
	assert_string_equal(sget(json_array_get(arr, 1), "peer"), "peer-?-bad");
	json_decref(j);
}

static void test_mitigations_mapping_status_metrics(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 7, 0, "127.0.0.1:5000");
	/* Installed in mid order; the core lists the newest first. */
	install(f, 7, up, "cuid-a", 3, "203.0.113.64/28");
	struct core_action obs5 = install(f, 7, up, "cuid-a", 5, "203.0.113.0/28");

	bring_up(f, 8, 1, "127.0.0.1:5001");
	up_answer(f, &obs5, 205,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":5,"
		  "\"lifetime\":1700,\"status\":\"attack-successfully-mitigated\","
		  "\"mitigation-start\":\"1700000000\",\"bytes-dropped\":\"4096\","
		  "\"bps-dropped\":\"10\",\"pkts-dropped\":\"4\",\"pps-dropped\":\"1\"}]}}",
		  2, up);
	clear(f);
	f->now += 100000; /* 100 s later */

	json_t *j = ask_ok(f, "{\"cmd\":\"mitigations\"}");
	json_t *arr = json_object_get(j, "mitigations");
	assert_int_equal(json_array_size(arr), 2);
	json_t *m3 = json_array_get(arr, 0), *m5 = json_array_get(arr, 1);
	assert_int_equal(iget(m3, "mid"), 3); /* sorted by mid within a cuid */
	assert_string_equal(sget(m5, "client"), "alice");
	assert_string_equal(sget(m5, "cuid"), "cuid-a");
	assert_int_equal(iget(m5, "mid"), 5);
	assert_true(json_is_null(json_object_get(m5, "cdid"))); /* not server-domain */
	assert_string_equal(sget(m5, "upstream"), "provider");
	assert_int_equal(iget(m5, "upstream-session"), (json_int_t)up);
	assert_string_equal(sget(m5, "upstream-cuid"), "cuid-a");
	assert_int_equal(iget(m5, "upstream-mid"), 5);
	assert_string_equal(sget(m5, "status"), "attack-successfully-mitigated");
	assert_int_equal(iget(m5, "lifetime"), 1600);
	assert_true(json_is_true(json_object_get(m5, "observed")));
	json_t *met = json_object_get(m5, "metrics");
	assert_string_equal(sget(met, "bytes-dropped"), "4096");
	assert_string_equal(sget(met, "pkts-dropped"), "4");
	assert_string_equal(sget(met, "mitigation-start"), "1700000000");
	assert_null(json_object_get(met, "status"));
	json_t *scope = json_object_get(m5, "scope");
	assert_string_equal(json_string_value(json_array_get(json_object_get(scope, "target-prefix"), 0)),
			    "203.0.113.0/28");
	/* mid 3: no status from upstream yet, granted 1800 s, 100 s ago. */
	assert_true(json_is_null(json_object_get(m3, "status")));
	assert_int_equal(iget(m3, "lifetime"), 1700);
	assert_int_equal(json_object_size(json_object_get(m3, "metrics")), 0);
	json_decref(j);

	/* By client. */
	j = ask_ok(f, "{\"cmd\":\"mitigations\",\"client\":\"bob\"}");
	assert_int_equal(json_array_size(json_object_get(j, "mitigations")), 0);
	json_decref(j);
	j = ask_ok(f, "{\"cmd\":\"mitigations\",\"client\":\"alice\"}");
	assert_int_equal(json_array_size(json_object_get(j, "mitigations")), 2);
	json_decref(j);
	refused(f, "{\"cmd\":\"mitigations\",\"client\":\"carol\"}", "no client named \"carol\"");
	refused(f, "{\"cmd\":\"mitigations\",\"client\":[]}", "client must be a string");

	/* One of them. */
	j = ask_ok(f, "{\"cmd\":\"mitigation\",\"client\":\"alice\",\"mid\":5}");
	arr = json_object_get(j, "mitigations");
	assert_int_equal(json_array_size(arr), 1);
	assert_string_equal(sget(json_array_get(arr, 0), "status"),
			    "attack-successfully-mitigated");
	json_decref(j);
	j = ask_ok(f, "{\"cmd\":\"mitigation\",\"client\":\"alice\",\"mid\":3,\"cuid\":\"cuid-a\"}");
	assert_int_equal(iget(json_array_get(json_object_get(j, "mitigations"), 0), "mid"), 3);
	json_decref(j);
	refused(f, "{\"cmd\":\"mitigation\",\"client\":\"alice\",\"mid\":3,\"cuid\":\"other\"}",
		"client alice has no mitigation with mid 3");
	refused(f, "{\"cmd\":\"mitigation\",\"client\":\"bob\",\"mid\":5}",
		"client bob has no mitigation with mid 5");
	refused(f, "{\"cmd\":\"mitigation\",\"client\":\"alice\",\"mid\":-1}", "mid must be");
	refused(f, "{\"cmd\":\"mitigation\",\"client\":\"alice\",\"mid\":4294967296}", "mid must be");
	refused(f, "{\"cmd\":\"mitigation\",\"client\":\"alice\",\"mid\":\"5\"}", "mid must be");
	refused(f, "{\"cmd\":\"mitigation\",\"mid\":5}", "client is required");
	refused(f, "{\"cmd\":\"mitigation\",\"client\":\"zed\",\"mid\":5}", "no client named");
}

static void test_log_level(void **state)
{
	struct fix *f = *state;
	json_t *j = ask_ok(f, "{\"cmd\":\"log-level\",\"level\":\"debug\"}");

	assert_string_equal(sget(j, "log-level"), "debug");
	assert_string_equal(sget(j, "previous"), "err");
	assert_int_equal(f->levels, 1);
	assert_int_equal(f->level_seen, DG_LOG_DEBUG);
	assert_int_equal(dg_log_get_level(), DG_LOG_DEBUG);
	json_decref(j);
	refused(f, "{\"cmd\":\"log-level\",\"level\":\"verbose\"}", "unknown level \"verbose\"");
	refused(f, "{\"cmd\":\"log-level\"}", "level is required");
	assert_int_equal(f->levels, 1);
	/* Without a callback ctl sets dotsgw's level itself. */
	f->env.set_log_level = NULL;
	json_decref(ask_ok(f, "{\"cmd\":\"log-level\",\"level\":\"warn\"}"));
	assert_int_equal(dg_log_get_level(), DG_LOG_WARN);
	dg_log_set_level(DG_LOG_ERR);
}

static void test_reload(void **state)
{
	struct fix *f = *state;
	json_t *j = ask_ok(f, "{\"cmd\":\"reload\"}");

	assert_int_equal(f->reloads, 1);
	json_decref(j);
	f->reload_rc = DG_EINVAL;
	refused(f, "{\"cmd\":\"reload\"}", "reload failed: line 3: bad key");
	assert_int_equal(f->reloads, 2);
	refused(f, "{\"cmd\":\"reload\",\"now\":true}", "reload: unknown argument");
	assert_int_equal(f->reloads, 2);
	f->env.reload = NULL;
	refused(f, "{\"cmd\":\"reload\"}", "reload is not available");
}

static void test_own_request_withdraw_drain(void **state)
{
	struct fix *f = *state;
	json_t *j;

	/* The body goes to the callback as given; the answer names what
	 * the gateway used. */
	j = ask_ok(f, "{\"cmd\":\"request\",\"upstream\":\"provider\",\"body\":"
		   "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		   "\"target-prefix\":[\"203.0.113.0/28\"],\"lifetime\":600}]}}}");
	assert_int_equal(f->own_requests, 1);
	assert_string_equal(f->own_upstream, "provider");
	assert_string_equal(f->own_prefix, "203.0.113.0/28");
	assert_int_equal(json_integer_value(json_object_get(j, "mid")), 77);
	assert_string_equal(sget(j, "cuid"), "gw-cuid");
	assert_string_equal(sget(j, "upstream"), "provider");
	json_decref(j);
	/* The gateway's refusal comes back with its code and reason. */
	f->own_rc = 400;
	refused(f, "{\"cmd\":\"request\",\"body\":{}}", "4.00 no scope");
	assert_true(f->own_upstream_seen_null); /* none given: io picks */
	refused(f, "{\"cmd\":\"request\"}", "body is required");
	refused(f, "{\"cmd\":\"request\",\"upstream\":7,\"body\":{}}", "upstream must be a name");
	refused(f, "{\"cmd\":\"request\",\"body\":{},\"client\":\"x\"}", "client");
	assert_int_equal(f->own_requests, 2);
	f->own_rc = 0;

	j = ask_ok(f, "{\"cmd\":\"withdraw\",\"mid\":77}");
	assert_int_equal(f->withdrawn, 77);
	json_decref(j);
	refused(f, "{\"cmd\":\"withdraw\"}", "mid is required");
	refused(f, "{\"cmd\":\"withdraw\",\"mid\":-1}", "mid is required");
	refused(f, "{\"cmd\":\"withdraw\",\"mid\":4294967296}", "mid is required");
	f->own_rc = 404;
	refused(f, "{\"cmd\":\"withdraw\",\"mid\":78}", "4.04 no such mid");

	j = ask_ok(f, "{\"cmd\":\"drain\"}");
	assert_true(f->draining);
	assert_true(json_is_true(json_object_get(j, "draining")));
	assert_int_equal(json_integer_value(json_object_get(j, "observations-redirected")), 3);
	json_decref(j);
	j = ask_ok(f, "{\"cmd\":\"drain\",\"off\":true}");
	assert_false(f->draining);
	json_decref(j);
	refused(f, "{\"cmd\":\"drain\",\"off\":\"yes\"}", "off must be");
	f->drain_rc = DG_EINVAL;
	refused(f, "{\"cmd\":\"drain\"}", "no server.drain alternate");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hostile_requests_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sessions_both_sides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sessions_sorted_and_names_cleaned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mitigations_mapping_status_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_request_withdraw_drain, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
