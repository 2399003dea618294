/*
 * test_core.c: the relay engine driven without sockets. Each test plays
 * a downstream client and an upstream server by hand: it feeds events,
 * inspects the actions, and answers them.
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

struct fix {
	struct gw_config cfg;
	struct gw_upstream up;
	struct gw_client cl[2];
	struct core *core;
	struct core_actions out;
	dg_time_ms now;
};

static struct fix *fx;

static int setup_common(void **state, bool server_domain)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct prefix p;

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
	f->cfg.server_domain = server_domain;
	f->cfg.hop_limit = 16;
	f->cfg.max_body = 8192;
	f->cfg.request_timeout = 10;
	f->cfg.id = "gw-test";
	model_session_defaults(&f->cfg.session_default);
	f->cfg.session_default.idle.heartbeat_interval = 5;
	f->cfg.session_default.mitigating.heartbeat_interval = 5;
	f->cfg.session_default.idle.missing_hb_allowed = 3;
	f->cfg.session_default.mitigating.missing_hb_allowed = 3;
	for (int i = 0; i < 2; i++) {
		struct model_session_limits *l = i ? &f->cfg.session_idle :
						     &f->cfg.session_mitigating;
		l->min = (struct model_session_params){ 1, 1, 1, 2, 100, 110 };
		l->max = (struct model_session_params){ 240, 60, 1000, 15, 3000, 400 };
	}
	f->now = 1000000;
	f->core = core_new(&f->cfg, 42);
	assert_non_null(f->core);
	fx = f;
	*state = f;
	return 0;
}

static int setup(void **state) { return setup_common(state, false); }
static int setup_sd(void **state) { return setup_common(state, true); }

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

/* ---- helpers -------------------------------------------------------------- */

static struct core_action *find_act(struct fix *f, enum core_act_type t,
				    const char *path_substr)
{
	for (size_t i = 0; i < f->out.n; i++) {
		struct core_action *a = &f->out.v[i];
		if (a->type != t)
			continue;
		if (path_substr && (!a->msg.path || !strstr(a->msg.path, path_substr)))
			continue;
		return a;
	}
	return NULL;
}

static size_t count_act(struct fix *f, enum core_act_type t, const char *path)
{
	size_t n = 0;
	for (size_t i = 0; i < f->out.n; i++)
		if (f->out.v[i].type == t &&
		    (!path || (f->out.v[i].msg.path && strstr(f->out.v[i].msg.path, path))))
			n++;
	return n;
}

static struct core_action *reply_for(struct fix *f, uint64_t req_id)
{
	for (size_t i = 0; i < f->out.n; i++)
		if ((f->out.v[i].type == CORE_ACT_REPLY ||
		     f->out.v[i].type == CORE_ACT_NO_REPLY) &&
		    f->out.v[i].req_id == req_id)
			return &f->out.v[i];
	return NULL;
}

static json_t *payload_json(const struct core_msg *m)
{
	json_t *j = NULL;
	assert_int_equal(cbor_decode(m->payload, m->payload_len, &j, NULL), 0);
	return j;
}

static void clear(struct fix *f) { core_actions_clear(&f->out); }

static uint8_t *encode_json(const char *text, size_t *len)
{
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);
	uint8_t *buf = NULL;
	assert_non_null(j);
	assert_int_equal(cbor_encode(j, &buf, len, NULL), 0);
	json_decref(j);
	return buf;
}

static void split_path(const char *path, char segs[][64], const char **ptrs,
		       size_t *n)
{
	*n = 0;
	while (*path == '/')
		path++;
	while (*path && *n < 16) {
		const char *e = strchr(path, '/');
		size_t len = e ? (size_t)(e - path) : strlen(path);
		memcpy(segs[*n], path, len);
		segs[*n][len] = '\0';
		ptrs[*n] = segs[*n];
		(*n)++;
		path += len;
		while (*path == '/')
			path++;
	}
}

struct dn_req_opts {
	const char *query;
	int observe; /* -1 none */
	bool if_match;
	int hop_limit; /* -1 none */
	int content_format; /* 0 means 271 when a body is given */
	uint32_t token; /* 0: one of its own */
};

static uint64_t req_counter;

static uint64_t dn_request(struct fix *f, uint64_t sid, enum core_method m,
			   const char *path, const uint8_t *body, size_t blen,
			   const struct dn_req_opts *o)
{
	char segs[16][64];
	const char *ptrs[16];
	const char *q[1];
	struct core_request r;

	memset(&r, 0, sizeof(r));
	r.dn_sid = sid;
	r.req_id = ++req_counter;
	r.method = m;
	split_path(path, segs, ptrs, &r.npath);
	r.path = ptrs;
	if (o && o->query) {
		q[0] = o->query;
		r.query = q;
		r.nquery = 1;
	}
	if (o && o->observe >= 0) {
		r.has_observe = true;
		r.observe = (uint32_t)o->observe;
	}
	if (o && o->if_match) {
		r.has_if_match = true;
		r.if_match_empty = true;
	}
	if (o && o->hop_limit >= 0) {
		r.has_hop_limit = true;
		r.hop_limit = (uint32_t)o->hop_limit;
	}
	r.token_len = 4;
	if (o && o->token)
		memcpy(r.token, &o->token, 4);
	else
		memcpy(r.token, &r.req_id, 4);
	r.body = body;
	r.body_len = blen;
	if (blen) {
		r.has_content_format = true;
		r.content_format = o && o->content_format ? (uint32_t)o->content_format : 271;
	}
	core_on_dn_request(f->core, &r, f->now, &f->out);
	return r.req_id;
}

static const struct dn_req_opts NO_OPTS = { NULL, -1, false, -1, 0, 0 };

static void up_answer(struct fix *f, const struct core_action *sent, int code,
		      const char *json_body, int observe, uint64_t up_id)
{
	struct core_response r;
	uint8_t *buf = NULL;
	size_t len = 0;

	memset(&r, 0, sizeof(r));
	r.up_id = up_id;
	memcpy(r.token, sent->msg.token, sent->msg.token_len);
	r.token_len = sent->msg.token_len;
	r.code = code;
	if (observe >= 0) {
		r.has_observe = true;
		r.observe = (uint32_t)observe;
	}
	if (json_body && json_body[0] == '{') {
		buf = encode_json(json_body, &len);
		r.has_content_format = true;
		r.content_format = 271;
	} else if (json_body) {
		buf = (uint8_t *)strdup(json_body);
		len = strlen(json_body);
	}
	r.body = buf;
	r.body_len = len;
	core_on_up_response(f->core, &r, f->now, &f->out);
	free(buf);
}

/* Brings client `who` (0 alice, 1 bob) up with session sid and its
 * upstream to READY. Returns the upstream id. */
static uint64_t bring_up(struct fix *f, uint64_t sid, int who)
{
	struct core_dn_info info = { CORE_TR_DTLS, &f->cl[who], NULL, "127.0.0.1" };
	char cdid[IDENT_LEN + 1];

	ident_derive((const uint8_t *)f->cl[who].psk_identity,
		     strlen(f->cl[who].psk_identity), cdid);
	info.cdid = cdid;
	assert_int_equal(core_on_dn_session(f->core, sid, &info, f->now, &f->out), 0);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	if (!open) {
		clear(f);
		return 0; /* shared upstream already up */
	}
	uint64_t up_id = open->up_id;
	assert_ptr_equal(open->upstream, &f->up);
	clear(f);
	core_on_up_event(f->core, up_id, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action *cfgput = find_act(f, CORE_ACT_UP_SEND, "/config/sid=");
	assert_non_null(cfgput);
	assert_true(cfgput->msg.confirmable); /* RFC 9132 §4.5: CON */
	struct core_action copy = *cfgput;
	clear(f);
	up_answer(f, &copy, 201, NULL, -1, up_id);
	clear(f);
	return up_id;
}

static const char *REQ_BODY =
	"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
	"\"target-prefix\":[\"203.0.113.0/28\"],"
	"\"target-port-range\":[{\"lower-port\":443}],"
	"\"target-protocol\":[6],\"lifetime\":3600}]}}";

/* PUT mid through the gateway and accept it upstream with 2.01. Returns
 * the upstream observe action's token holder (copied). */
static struct core_action install_body(struct fix *f, uint64_t sid,
				       uint64_t up_id, const char *cuid,
				       uint32_t mid, const char *json)
{
	char path[128];
	size_t len;
	uint8_t *body = encode_json(json, &len);

	snprintf(path, sizeof(path), "/.well-known/dots/mitigate/cuid=%s/mid=%u",
		 cuid, mid);
	uint64_t rid = dn_request(f, sid, CORE_PUT, path, body, len, &NO_OPTS);
	free(body);
	assert_null(reply_for(f, rid));
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	struct core_action copy = *put;
	clear(f);
	char rsp[160];
	snprintf(rsp, sizeof(rsp),
		 "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":%u,\"lifetime\":1800}]}}",
		 mid);
	up_answer(f, &copy, 201, rsp, -1, up_id);
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 201);
	struct core_action *obs = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(obs);
	assert_int_equal(obs->msg.code, CORE_GET);
	assert_true(obs->msg.has_observe);
	struct core_action ocopy = *obs;
	ocopy.msg.path = NULL;
	ocopy.msg.payload = NULL;
	clear(f);
	return ocopy;
}

static struct core_action install(struct fix *f, uint64_t sid, uint64_t up_id,
				  const char *cuid, uint32_t mid)
{
	return install_body(f, sid, up_id, cuid, mid, REQ_BODY);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_put_relayed_keeps_cuid_mid_and_adds_hop_limit(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	size_t len;
	uint8_t *body = encode_json(REQ_BODY, &len);

	uint64_t rid = dn_request(f, 1, CORE_PUT,
				  "/.well-known/dots/mitigate/cuid=abc/mid=7", body,
				  len, &NO_OPTS);
	free(body);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	assert_string_equal(put->msg.path, "/.well-known/dots/mitigate/cuid=abc/mid=7");
	assert_int_equal(put->msg.code, CORE_PUT);
	assert_false(put->msg.confirmable); /* RFC 9132 §4.4: NON */
	assert_true(put->msg.has_hop_limit);
	assert_int_equal(put->msg.hop_limit, 16);
	assert_int_equal(put->msg.content_format, 271);
	json_t *sent = payload_json(&put->msg);
	json_t *entry = json_array_get(json_object_get(json_object_get(sent,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);
	assert_string_equal(json_string_value(json_array_get(
		json_object_get(entry, "target-prefix"), 0)), "203.0.113.0/28");
	assert_null(json_object_get(entry, "mid")); /* never in a request body */
	json_decref(sent);
	struct core_action copy = *put;
	clear(f);
	up_answer(f, &copy, 201,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":7,\"lifetime\":1800}]}}",
		  -1, up);
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->type, CORE_ACT_REPLY);
	assert_int_equal(r->msg.code, 201);
	json_t *rb = payload_json(&r->msg);
	json_t *re = json_array_get(json_object_get(json_object_get(rb,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);
	assert_int_equal(json_integer_value(json_object_get(re, "lifetime")), 1800);
	json_decref(rb);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 1);
}

static void test_server_domain_inserts_cdid_and_strips_client_cdid(void **state)
{
	struct fix *f = *state;
	char cdid[IDENT_LEN + 1];
	size_t len;

	bring_up(f, 1, 0);
	ident_derive((const uint8_t *)"alice", 5, cdid);
	uint8_t *body = encode_json(REQ_BODY, &len);
	dn_request(f, 1, CORE_PUT,
		   "/.well-known/dots/mitigate/cdid=forged/cuid=abc/mid=1", body,
		   len, &NO_OPTS);
	free(body);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	char want[128];
	snprintf(want, sizeof(want), "/.well-known/dots/mitigate/cdid=%s/cuid=abc/mid=1",
		 cdid);
	assert_string_equal(put->msg.path, want);
	assert_null(strstr(put->msg.path, "forged"));
}

static void test_client_cdid_stripped_without_server_domain(void **state)
{
	struct fix *f = *state;
	size_t len;

	bring_up(f, 1, 0);
	uint8_t *body = encode_json(REQ_BODY, &len);
	dn_request(f, 1, CORE_PUT,
		   "/.well-known/dots/mitigate/cdid=forged/cuid=abc/mid=1", body,
		   len, &NO_OPTS);
	free(body);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	assert_string_equal(put->msg.path, "/.well-known/dots/mitigate/cuid=abc/mid=1");
}

static void test_hop_limit_inserted_kept_and_exhausted(void **state)
{
	struct fix *f = *state;
	size_t len;
	struct dn_req_opts o = NO_OPTS;

	bring_up(f, 1, 0);
	uint8_t *body = encode_json(REQ_BODY, &len);
	/* io delivers the value libcoap already decremented: kept as is. */
	o.hop_limit = 5;
	dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
		   body, len, &o);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	assert_int_equal(put->msg.hop_limit, 5);
	clear(f);
	o.hop_limit = 0;
	uint64_t rid = dn_request(f, 1, CORE_PUT,
				  "/.well-known/dots/mitigate/cuid=abc/mid=2", body,
				  len, &o);
	free(body);
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 508);
	assert_memory_equal(r->msg.payload, "gw-test", 7);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
}

static void test_upstream_508_gets_our_id_appended(void **state)
{
	struct fix *f = *state;
	size_t len;
	uint64_t up = bring_up(f, 1, 0);
	uint8_t *body = encode_json(REQ_BODY, &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT,
				  "/.well-known/dots/mitigate/cuid=abc/mid=1", body,
				  len, &NO_OPTS);
	free(body);
	struct core_action copy = *find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	clear(f);
	up_answer(f, &copy, 508, "gw-other", -1, up);
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 508);
	assert_int_equal(r->msg.payload_len, strlen("gw-other gw-test"));
	assert_memory_equal(r->msg.payload, "gw-other gw-test", r->msg.payload_len);
	assert_true(r->msg.has_hop_limit);
}

static void test_observe_relays_status_and_metrics(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	struct core_action obs = install(f, 1, up, "abc", 3);
	struct dn_req_opts o = NO_OPTS;

	o.observe = 0;
	uint64_t rid = dn_request(f, 1, CORE_GET,
				  "/.well-known/dots/mitigate/cuid=abc/mid=3", NULL,
				  0, &o);
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 205);
	assert_true(r->msg.has_observe);
	json_t *b = payload_json(&r->msg);
	json_t *e = json_array_get(json_object_get(json_object_get(b,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "status")),
			    "attack-mitigation-in-progress");
	assert_int_equal(json_integer_value(json_object_get(e, "mid")), 3);
	json_decref(b);
	clear(f);
	up_answer(f, &obs, 205,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":3,"
		  "\"lifetime\":1700,\"status\":\"attack-successfully-mitigated\","
		  "\"mitigation-start\":\"1700000000\",\"bytes-dropped\":\"4096\","
		  "\"bps-dropped\":\"10\",\"pkts-dropped\":\"4\",\"pps-dropped\":\"1\"}]}}",
		  2, up);
	struct core_action *n = find_act(f, CORE_ACT_DN_SEND, NULL);
	assert_non_null(n);
	assert_int_equal(n->dn_sid, 1);
	assert_int_equal(n->msg.code, 205);
	assert_false(n->msg.confirmable); /* RFC 9132 §4.4.2.1 */
	assert_true(n->msg.has_observe);
	assert_int_equal(n->msg.token_len, 4);
	b = payload_json(&n->msg);
	e = json_array_get(json_object_get(json_object_get(b,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "status")),
			    "attack-successfully-mitigated");
	assert_string_equal(json_string_value(json_object_get(e, "bytes-dropped")), "4096");
	assert_string_equal(json_string_value(json_object_get(e, "target-prefix")
		? json_array_get(json_object_get(e, "target-prefix"), 0) : NULL),
		"203.0.113.0/28");
	json_decref(b);
}

static void test_notifications_reach_only_the_owner(void **state)
{
	struct fix *f = *state;
	uint64_t up_a = bring_up(f, 1, 0);
	bring_up(f, 2, 1);
	struct core_action obs = install(f, 1, up_a, "abc", 3);
	struct dn_req_opts o = NO_OPTS;

	o.observe = 0;
	/* bob asks for alice's cuid: invisible. */
	uint64_t rid = dn_request(f, 2, CORE_GET, "/.well-known/dots/mitigate/cuid=abc",
				  NULL, 0, &o);
	assert_int_equal(reply_for(f, rid)->msg.code, 404);
	clear(f);
	up_answer(f, &obs, 205,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":3,"
		  "\"lifetime\":1700,\"status\":\"attack-successfully-mitigated\"}]}}",
		  2, up_a);
	assert_int_equal(count_act(f, CORE_ACT_DN_SEND, NULL), 0);
}

static void test_other_clients_cuid_put_is_collision_and_delete_invisible(void **state)
{
	struct fix *f = *state;
	uint64_t up_a = bring_up(f, 1, 0);
	bring_up(f, 2, 1);
	install(f, 1, up_a, "abc", 3);
	size_t len;
	uint8_t *body = encode_json(
		"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		"\"target-prefix\":[\"198.51.100.0/28\"],\"lifetime\":60}]}}", &len);
	uint64_t rid = dn_request(f, 2, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=9",
				  body, len, &NO_OPTS);
	free(body);
	struct core_action *r = reply_for(f, rid);
	assert_int_equal(r->msg.code, 409);
	json_t *b = payload_json(&r->msg);
	char *txt = json_dumps(b, JSON_COMPACT);
	assert_non_null(strstr(txt, "cuid-collision"));
	assert_null(strstr(txt, "203.0.113")); /* nothing of alice's */
	free(txt);
	json_decref(b);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
	clear(f);
	rid = dn_request(f, 2, CORE_DELETE, "/.well-known/dots/mitigate/cuid=abc/mid=3",
			 NULL, 0, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 202);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 1);
}

static void test_delete_withdraws_and_ends_observation(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	struct dn_req_opts o = NO_OPTS;

	o.observe = 0;
	dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc/mid=3", NULL, 0, &o);
	clear(f);
	uint64_t rid = dn_request(f, 1, CORE_DELETE,
				  "/.well-known/dots/mitigate/cuid=abc/mid=3", NULL,
				  0, &NO_OPTS);
	struct core_action *del = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(del);
	assert_int_equal(del->msg.code, CORE_DELETE);
	assert_string_equal(del->msg.path, "/.well-known/dots/mitigate/cuid=abc/mid=3");
	struct core_action copy = *del;
	clear(f);
	up_answer(f, &copy, 202, NULL, -1, up);
	assert_int_equal(reply_for(f, rid)->msg.code, 202);
	struct core_action *n = find_act(f, CORE_ACT_DN_SEND, NULL);
	assert_non_null(n);
	assert_int_equal(n->msg.code, 404);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 0);
	assert_int_equal(st.dn_observers, 0);
}

static void test_efficacy_update_relayed_with_if_match(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	struct dn_req_opts o = NO_OPTS;
	size_t len;
	uint8_t *body = encode_json(
		"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		"\"target-prefix\":[\"203.0.113.0/28\"],"
		"\"target-port-range\":[{\"lower-port\":443}],"
		"\"target-protocol\":[6],\"lifetime\":3600,"
		"\"attack-status\":\"under-attack\"}]}}", &len);

	o.if_match = true;
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=3",
				  body, len, &o);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	assert_non_null(put);
	assert_true(put->msg.if_match_empty);
	json_t *sent = payload_json(&put->msg);
	char *txt = json_dumps(sent, JSON_COMPACT);
	assert_non_null(strstr(txt, "\"attack-status\":\"under-attack\""));
	free(txt);
	json_decref(sent);
	struct core_action copy = *put;
	clear(f);
	up_answer(f, &copy, 204, NULL, -1, up);
	assert_int_equal(reply_for(f, rid)->msg.code, 204);
	clear(f);
	/* Unknown mid with If-Match: dropped silently (RFC 9132 §4.4.3). */
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=99",
			 body, len, &o);
	free(body);
	assert_int_equal(reply_for(f, rid)->type, CORE_ACT_NO_REPLY);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
}

static void test_upstream_conflict_relayed(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	size_t len;
	uint8_t *body = encode_json(REQ_BODY, &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
				  body, len, &NO_OPTS);
	free(body);
	struct core_action copy = *find_act(f, CORE_ACT_UP_SEND, "/mitigate/");
	clear(f);
	up_answer(f, &copy, 409,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		  "\"conflict-information\":{\"conflict-status\":\"request-inactive-other-active\","
		  "\"conflict-cause\":\"overlapping-targets\",\"retry-timer\":30,"
		  "\"conflict-scope\":{\"target-prefix\":[\"203.0.113.0/28\"],\"mid\":1}}}]}}",
		  -1, up);
	struct core_action *r = reply_for(f, rid);
	assert_int_equal(r->msg.code, 409);
	json_t *b = payload_json(&r->msg);
	char *txt = json_dumps(b, JSON_COMPACT);
	assert_non_null(strstr(txt, "\"retry-timer\":30"));
	assert_non_null(strstr(txt, "overlapping-targets"));
	free(txt);
	json_decref(b);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 0);
}

static void test_request_timeout_gives_504(void **state)
{
	struct fix *f = *state;
	size_t len;

	bring_up(f, 1, 0);
	/* Longer than the heartbeat loss (3 x 2 s): the request outlives
	 * its session and still ends at its own deadline. */
	f->cfg.request_timeout = 7;
	uint8_t *body = encode_json(REQ_BODY, &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
				  body, len, &NO_OPTS);
	free(body);
	clear(f);
	/* NON is repeated (RFC 9132 §4.4) before the deadline. */
	f->now += 3000;
	core_on_expiry(f->core, f->now, &f->out);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mitigate/"), 1);
	clear(f);
	/* Steadily, not backing off. */
	f->now += 3000;
	core_on_expiry(f->core, f->now, &f->out);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mitigate/"), 1);
	clear(f);
	for (int i = 0; i < 20 && !reply_for(f, rid); i++) {
		f->now += 1000;
		core_on_expiry(f->core, f->now, &f->out);
	}
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 504);
}

static void test_dead_upstream_reconnects_and_resends(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	bool closed = false;

	/* Heartbeats every 2 s go unanswered: 3 missed -> down. */
	for (int i = 0; i < 20 && !closed; i++) {
		f->now += 1000;
		core_on_expiry(f->core, f->now, &f->out);
		struct core_action *cl = find_act(f, CORE_ACT_UP_CLOSE, NULL);
		closed = cl != NULL;
		/* A close before a reconnection is not final: io keeps the slot. */
		if (cl)
			assert_false(cl->final);
		clear(f);
	}
	assert_true(closed);
	/* A new request meanwhile: 5.03 with Max-Age, not a hang. */
	size_t len;
	uint8_t *body = encode_json(REQ_BODY, &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=4",
				  body, len, &NO_OPTS);
	free(body);
	struct core_action *r = reply_for(f, rid);
	assert_int_equal(r->msg.code, 503);
	assert_true(r->msg.has_max_age);
	clear(f);
	struct core_action *open = NULL;
	for (int i = 0; i < 20 && !open; i++) {
		f->now += 500;
		core_on_expiry(f->core, f->now, &f->out);
		open = find_act(f, CORE_ACT_UP_OPEN, NULL);
		if (!open)
			clear(f);
	}
	assert_non_null(open);
	assert_int_equal(open->up_id, up);
	clear(f);
	core_on_up_event(f->core, up, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action cfg = *find_act(f, CORE_ACT_UP_SEND, "/config/");
	clear(f);
	up_answer(f, &cfg, 201, NULL, -1, up);
	struct core_action *again = find_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=abc/mid=3");
	assert_non_null(again);
	assert_int_equal(again->msg.code, CORE_PUT);
	struct core_action copy = *again;
	clear(f);
	up_answer(f, &copy, 201,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":3,\"lifetime\":1700}]}}",
		  -1, up);
	struct core_action *obs = find_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=abc/mid=3");
	assert_non_null(obs);
	assert_int_equal(obs->msg.code, CORE_GET);
	assert_true(obs->msg.has_observe);
}

static void test_refresh_with_other_attributes_rejected(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	size_t len;
	uint8_t *body = encode_json(
		"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		"\"target-prefix\":[\"203.0.113.64/28\"],\"lifetime\":3600}]}}", &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=3",
				  body, len, &NO_OPTS);
	free(body);
	assert_int_equal(reply_for(f, rid)->msg.code, 400);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
}

static void test_scope_outside_policy_forbidden(void **state)
{
	struct fix *f = *state;
	size_t len;

	bring_up(f, 1, 0);
	uint8_t *body = encode_json(
		"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		"\"target-prefix\":[\"198.51.100.0/28\"],\"lifetime\":3600}]}}", &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=3",
				  body, len, &NO_OPTS);
	free(body);
	struct core_action *r = reply_for(f, rid);
	assert_int_equal(r->msg.code, 403);
	assert_non_null(memmem(r->msg.payload, r->msg.payload_len, "198.51.100.0/28", 15));
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
}

static void test_bad_inputs_change_nothing(void **state)
{
	struct fix *f = *state;
	static const uint8_t garbage[] = { 0xa1, 0x01, 0xff };
	struct dn_req_opts o = NO_OPTS;
	uint64_t rid;

	bring_up(f, 1, 0);
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
			 garbage, sizeof(garbage), &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 400);
	o.content_format = 60; /* application/cbor, not dots+cbor */
	size_t len;
	uint8_t *body = encode_json(REQ_BODY, &len);
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
			 body, len, &o);
	assert_int_equal(reply_for(f, rid)->msg.code, 415);
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc",
			 body, len, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 400);
	f->cfg.max_body = 8;
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
			 body, len, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 413);
	assert_true(reply_for(f, rid)->msg.has_size1);
	f->cfg.max_body = 8192;
	free(body);
	rid = dn_request(f, 1, CORE_POST, "/.well-known/dots/mitigate/cuid=abc/mid=1",
			 NULL, 0, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 405);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 0);
}

static void test_unauthenticated_session_gets_401(void **state)
{
	struct fix *f = *state;
	struct core_dn_info info = { CORE_TR_UDP, NULL, NULL, "127.0.0.1" };

	assert_int_equal(core_on_dn_session(f->core, 9, &info, f->now, &f->out), 0);
	assert_null(find_act(f, CORE_ACT_UP_OPEN, NULL));
	uint64_t rid = dn_request(f, 9, CORE_GET, "/.well-known/dots/mitigate/cuid=abc",
				  NULL, 0, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 401);
}

static void test_hb_and_config_are_hop_by_hop(void **state)
{
	struct fix *f = *state;
	size_t len;

	bring_up(f, 1, 0);
	uint8_t *hb = encode_json("{\"ietf-dots-signal-channel:heartbeat\":{\"peer-hb-status\":true}}",
				  &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/hb", hb, len, &NO_OPTS);
	free(hb);
	assert_int_equal(reply_for(f, rid)->msg.code, 204);
	rid = dn_request(f, 1, CORE_GET, "/.well-known/dots/config", NULL, 0, &NO_OPTS);
	struct core_action *r = reply_for(f, rid);
	assert_int_equal(r->msg.code, 205);
	assert_true(r->msg.has_max_age);
	json_t *b = payload_json(&r->msg);
	json_t *hbi = json_object_get(json_object_get(json_object_get(json_object_get(b,
		"ietf-dots-signal-channel:signal-config"), "idle-config"), "heartbeat-interval"),
		"max-value");
	assert_int_equal(json_integer_value(hbi), 240);
	json_decref(b);
	uint8_t *cfg = encode_json(
		"{\"ietf-dots-signal-channel:signal-config\":{\"idle-config\":{"
		"\"heartbeat-interval\":{\"current-value\":60}}}}", &len);
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/config/sid=1", cfg, len, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 201);
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/config/sid=1", cfg, len, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 204);
	free(cfg);
	cfg = encode_json(
		"{\"ietf-dots-signal-channel:signal-config\":{\"idle-config\":{"
		"\"heartbeat-interval\":{\"current-value\":9999}}}}", &len);
	rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/config/sid=2", cfg, len, &NO_OPTS);
	free(cfg);
	assert_int_equal(reply_for(f, rid)->msg.code, 422);
	rid = dn_request(f, 1, CORE_DELETE, "/.well-known/dots/config/sid=1", NULL, 0, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 202);
	/* None of it went upstream. */
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
}

static void test_silent_client_session_closed(void **state)
{
	struct fix *f = *state;
	bool closed = false;

	bring_up(f, 1, 0);
	/* heartbeat 5 s, 3 allowed: closed after 15 s of silence, not before. */
	for (int i = 0; i < 40 && !closed; i++) {
		f->now += 1000;
		core_on_expiry(f->core, f->now, &f->out);
		struct core_action *hb = find_act(f, CORE_ACT_DN_SEND, "/hb");
		if (hb)
			assert_int_equal(hb->msg.code, CORE_PUT);
		closed = find_act(f, CORE_ACT_DN_CLOSE, NULL) != NULL;
		if (!closed)
			clear(f);
		assert_true(i >= 14 || !closed);
	}
	assert_true(closed);
	/* The client is gone with nothing to keep: its upstream session is
	 * released for good, and io is told so. */
	struct core_action *rel = find_act(f, CORE_ACT_UP_CLOSE, NULL);
	assert_non_null(rel);
	assert_true(rel->final);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.dn_sessions, 0);
	assert_int_equal(st.up_sessions, 0);
}

static void test_queued_until_upstream_ready(void **state)
{
	struct fix *f = *state;
	struct core_dn_info info = { CORE_TR_TLS, &f->cl[0], "", "127.0.0.1" };
	size_t len;

	core_on_dn_session(f->core, 1, &info, f->now, &f->out);
	uint64_t up = find_act(f, CORE_ACT_UP_OPEN, NULL)->up_id;
	clear(f);
	uint8_t *body = encode_json(REQ_BODY, &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=1",
				  body, len, &NO_OPTS);
	free(body);
	assert_null(reply_for(f, rid));
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mitigate/"), 0);
	core_on_up_event(f->core, up, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action cfg = *find_act(f, CORE_ACT_UP_SEND, "/config/");
	clear(f);
	up_answer(f, &cfg, 201, NULL, -1, up);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=abc/mid=1"), 1);
}

static void test_refresh_renews_lifetime(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	size_t len;
	uint8_t *body = encode_json(REQ_BODY, &len);

	f->now += 600 * 1000; /* 1800 s granted, 600 s later */
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=3",
				  body, len, &NO_OPTS);
	free(body);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=abc/mid=3");
	assert_non_null(put);
	struct core_action copy = *put;
	clear(f);
	up_answer(f, &copy, 204,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":3,\"lifetime\":3600}]}}",
		  -1, up);
	assert_int_equal(reply_for(f, rid)->msg.code, 204);
	clear(f);
	rid = dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc/mid=3",
			 NULL, 0, &NO_OPTS);
	json_t *b = payload_json(&reply_for(f, rid)->msg);
	json_t *e = json_array_get(json_object_get(json_object_get(b,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);
	/* The upstream's newly granted lifetime, not what was left. */
	assert_int_equal(json_integer_value(json_object_get(e, "lifetime")), 3600);
	json_decref(b);
	/* And it expires when that runs out, not before. */
	clear(f);
	f->now += 3599 * 1000;
	core_on_expiry(f->core, f->now, &f->out);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 1);
	f->now += 2000;
	core_on_expiry(f->core, f->now, &f->out);
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 0);
}

static void test_cuid_wide_observe_gets_each_change(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	struct dn_req_opts o = NO_OPTS;

	o.observe = 0;
	uint64_t rid = dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc",
				  NULL, 0, &o);
	assert_int_equal(reply_for(f, rid)->msg.code, 205);
	assert_true(reply_for(f, rid)->msg.has_observe);
	clear(f);
	/* mid 4 has the same scope: it replaces mid 3 (RFC 9132 §4.4.1.3). */
	struct core_action obs4 = install(f, 1, up, "abc", 4);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 1);
	clear(f);
	up_answer(f, &obs4, 205,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":4,"
		  "\"lifetime\":1700,\"status\":\"attack-stopped\"}]}}", 3, up);
	struct core_action *n = find_act(f, CORE_ACT_DN_SEND, NULL);
	assert_non_null(n);
	json_t *b = payload_json(&n->msg);
	json_t *scope = json_object_get(json_object_get(b,
		"ietf-dots-signal-channel:mitigation-scope"), "scope");
	/* Only the changed entry: small messages under attack. */
	assert_int_equal(json_array_size(scope), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(scope, 0), "mid")), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(scope, 0), "status")),
			    "attack-stopped");
	json_decref(b);
}

/* A new mid replaces exactly the lower mids of the cuid whose scope
 * overlaps its own and that have the same trigger type (RFC 9132
 * §4.4.1.3); the others stay, each found again by its mid. */
static void test_overlap_replaces_only_overlapping_lower_mids(void **state)
{
	static const struct {
		uint32_t mid;
		const char *scope;
		bool stays;
	} v[] = {
		{ 1, "\"target-prefix\":[\"203.0.113.1/32\"],\"target-protocol\":[6]", false },
		{ 2, "\"target-prefix\":[\"203.0.113.2/32\"]", false },
		/* other trigger type */
		{ 3, "\"target-prefix\":[\"203.0.113.3/32\"],\"trigger-mitigation\":false", true },
		/* other address */
		{ 4, "\"target-prefix\":[\"203.0.113.16/32\"]", true },
		/* other protocol */
		{ 5, "\"target-prefix\":[\"203.0.113.1/32\"],\"target-protocol\":[17]", true },
		/* other ports */
		{ 6, "\"target-prefix\":[\"203.0.113.2/32\"],"
		     "\"target-port-range\":[{\"lower-port\":80}]", true },
		/* a higher mid */
		{ 20, "\"target-prefix\":[\"203.0.113.3/32\"]", true },
		{ 10, "\"target-prefix\":[\"203.0.113.0/30\"],\"target-protocol\":[6],"
		      "\"target-port-range\":[{\"lower-port\":443}]", true },
	};
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	struct core_stats st;
	char body[512];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
			 "%s,\"lifetime\":3600}]}}", v[i].scope);
		install_body(f, 1, up, "abc", v[i].mid, body);
	}
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, sizeof(v) / sizeof(v[0]) - 2);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char path[96];
		snprintf(path, sizeof(path), "/.well-known/dots/mitigate/cuid=abc/mid=%u",
			 v[i].mid);
		uint64_t rid = dn_request(f, 1, CORE_GET, path, NULL, 0, &NO_OPTS);
		if (reply_for(f, rid)->msg.code != (v[i].stays ? 205 : 404))
			fail_msg("mid %u: %d", v[i].mid, reply_for(f, rid)->msg.code);
		clear(f);
	}
}

/* Observe=1 on the same token (RFC 7641 §3.6), or an RST to a notification,
 * ends the observation: later upstream changes reach nobody. */
static void cancel_then_change(struct fix *f, bool by_rst)
{
	uint64_t up = bring_up(f, 1, 0);
	struct core_action obs = install(f, 1, up, "abc", 3);
	struct dn_req_opts o = NO_OPTS;

	o.observe = 0;
	uint64_t rid = dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc/mid=3",
				  NULL, 0, &o);
	uint8_t token[8];
	size_t token_len = 4;
	memcpy(token, &rid, 4); /* dn_request's token scheme */
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.dn_observers, 1);
	clear(f);
	if (by_rst) {
		core_on_dn_response(f->core, 1, token, token_len, 0, f->now, &f->out);
	} else {
		/* dn_request makes a new token per request: reuse the first. */
		char segs[16][64];
		const char *ptrs[16];
		struct core_request r;
		memset(&r, 0, sizeof(r));
		r.dn_sid = 1;
		r.req_id = ++req_counter;
		r.method = CORE_GET;
		split_path("/.well-known/dots/mitigate/cuid=abc/mid=3", segs, ptrs, &r.npath);
		r.path = ptrs;
		r.has_observe = true;
		r.observe = 1;
		memcpy(r.token, token, token_len);
		r.token_len = token_len;
		core_on_dn_request(f->core, &r, f->now, &f->out);
		struct core_action *a = reply_for(f, r.req_id);
		assert_non_null(a);
		assert_int_equal(a->msg.code, 205);
		assert_false(a->msg.has_observe);
	}
	core_get_stats(f->core, &st);
	assert_int_equal(st.dn_observers, 0);
	clear(f);
	up_answer(f, &obs, 205,
		  "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":3,"
		  "\"lifetime\":1700,\"status\":\"attack-successfully-mitigated\"}]}}", 2, up);
	assert_int_equal(count_act(f, CORE_ACT_DN_SEND, NULL), 0);
}

static void test_observe_cancelled_by_observe_1(void **state)
{
	cancel_then_change(*state, false);
}

static void test_observe_cancelled_by_rst(void **state)
{
	cancel_then_change(*state, true);
}

/* ---- reload ------------------------------------------------------------------- */

/* A second configuration, as a reload would load it: same names, fresh
 * records. */
struct cfg2 {
	struct gw_config cfg;
	struct gw_upstream up;
	struct gw_client cl[2];
};

static struct cfg2 *cfg2_copy(const struct fix *f, const char *alice_prefix)
{
	struct cfg2 *n = calloc(1, sizeof(*n));
	struct prefix p;

	assert_non_null(n);
	n->cfg = f->cfg;
	n->up = f->up;
	for (int i = 0; i < 2; i++) {
		n->cl[i] = f->cl[i];
		n->cl[i].upstream = &n->up;
		memset(&n->cl[i].scope, 0, sizeof(n->cl[i].scope));
		assert_int_equal(prefix_parse(i ? "198.51.100.0/24" : alice_prefix,
					      false, &p), 0);
		assert_int_equal(prefix_set_add(&n->cl[i].scope.prefixes, &p), 0);
	}
	n->cfg.clients = n->cl;
	n->cfg.upstreams = &n->up;
	return n;
}

static void cfg2_free(struct cfg2 *n)
{
	for (int i = 0; i < 2; i++)
		prefix_set_free(&n->cl[i].scope.prefixes);
	free(n);
}

static void reload(struct fix *f, struct cfg2 *n, struct core_reload_stats *st)
{
	const struct gw_client *map[2] = { NULL, NULL };

	assert_int_equal(core_reconfigure(f->core, &n->cfg, map, f->now, &f->out, st), 0);
	/* io re-points its own client pointers with the map. */
	for (int i = 0; i < 2; i++) {
		for (size_t j = 0; j < n->cfg.nclients; j++)
			if (strcmp(n->cfg.clients[j].name, f->cl[i].name) == 0)
				assert_ptr_equal(map[i], &n->cfg.clients[j]);
	}
}

static void test_reload_unchanged_does_nothing(void **state)
{
	struct fix *f = *state;
	struct core_reload_stats st;
	struct core_stats before, after;
	uint64_t up = bring_up(f, 1, 0);

	install(f, 1, up, "abc", 3);
	core_get_stats(f->core, &before);
	struct cfg2 *n = cfg2_copy(f, "203.0.113.0/24");
	reload(f, n, &st);
	assert_int_equal(f->out.n, 0);
	assert_int_equal(st.clients_added + st.clients_removed + st.clients_reauth +
			 st.clients_rehomed, 0);
	core_get_stats(f->core, &after);
	assert_int_equal(after.mitigations, before.mitigations);
	assert_int_equal(after.dn_sessions, 1);
	assert_int_equal(after.up_sessions, 1);
	core_free(f->core); /* before n: the core points into it */
	f->core = NULL;
	cfg2_free(n);
}

/* The acceptance: a scope narrowed by a reload is enforced on the
 * next request over the same session. */
static void test_reload_narrowed_scope_applies_to_next_request(void **state)
{
	struct fix *f = *state;
	struct core_reload_stats st;
	size_t len;
	uint64_t up = bring_up(f, 1, 0);

	install(f, 1, up, "abc", 3); /* 203.0.113.0/28 allowed */
	struct cfg2 *n = cfg2_copy(f, "203.0.113.128/25");
	reload(f, n, &st);
	assert_null(find_act(f, CORE_ACT_DN_CLOSE, NULL));
	assert_null(find_act(f, CORE_ACT_UP_CLOSE, NULL));
	uint8_t *body = encode_json(REQ_BODY, &len);
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/mitigate/cuid=abc/mid=4",
				  body, len, &NO_OPTS);
	free(body);
	assert_int_equal(reply_for(f, rid)->msg.code, 403);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
	clear(f);
	core_free(f->core);
	f->core = NULL;
	cfg2_free(n);
}

static void test_reload_removed_client_closed_others_untouched(void **state)
{
	struct fix *f = *state;
	struct core_reload_stats st;
	struct core_stats s;
	uint64_t up_a = bring_up(f, 1, 0);
	uint64_t up_b = bring_up(f, 2, 1);

	install(f, 1, up_a, "abc", 3);
	struct cfg2 *n = cfg2_copy(f, "203.0.113.0/24");
	/* Only bob stays (configurations list clients in any order). */
	prefix_set_free(&n->cl[0].scope.prefixes);
	n->cl[0] = n->cl[1];
	memset(&n->cl[1].scope, 0, sizeof(n->cl[1].scope));
	n->cfg.nclients = 1;
	reload(f, n, &st);
	assert_int_equal(st.clients_removed, 1);
	struct core_action *dc = find_act(f, CORE_ACT_DN_CLOSE, NULL);
	assert_non_null(dc);
	assert_int_equal(dc->dn_sid, 1);
	assert_int_equal(count_act(f, CORE_ACT_DN_CLOSE, NULL), 1);
	struct core_action *uc = find_act(f, CORE_ACT_UP_CLOSE, NULL);
	assert_non_null(uc);
	assert_int_equal(uc->up_id, up_a);
	assert_true(uc->final);
	assert_int_equal(count_act(f, CORE_ACT_UP_CLOSE, NULL), 1);
	clear(f);
	core_get_stats(f->core, &s);
	assert_int_equal(s.dn_sessions, 1);
	assert_int_equal(s.up_sessions, 1);
	assert_int_equal(s.mitigations, 0);
	/* bob's session and upstream work on. */
	size_t len;
	uint8_t *body = encode_json(
		"{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{"
		"\"target-prefix\":[\"198.51.100.0/28\"],\"lifetime\":3600}]}}", &len);
	uint64_t rid = dn_request(f, 2, CORE_PUT, "/.well-known/dots/mitigate/cuid=bcd/mid=7",
				  body, len, &NO_OPTS);
	free(body);
	assert_null(reply_for(f, rid));
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=bcd/mid=7");
	assert_non_null(put);
	assert_int_equal(put->up_id, up_b);
	clear(f);
	core_free(f->core);
	f->core = NULL;
	n->cl[1].scope = (struct model_scope_policy){ 0 };
	prefix_set_free(&n->cl[0].scope.prefixes);
	free(n);
}

static void test_reload_changed_upstream_rehomes_mitigations(void **state)
{
	struct fix *f = *state;
	struct core_reload_stats st;
	uint64_t up = bring_up(f, 1, 0);

	install(f, 1, up, "abc", 3);
	struct cfg2 *n = cfg2_copy(f, "203.0.113.0/24");
	n->up.address = "127.0.0.2";
	reload(f, n, &st);
	assert_int_equal(st.clients_rehomed, 1);
	assert_null(find_act(f, CORE_ACT_DN_CLOSE, NULL));
	struct core_action *uc = find_act(f, CORE_ACT_UP_CLOSE, NULL);
	assert_non_null(uc);
	assert_int_equal(uc->up_id, up);
	assert_true(uc->final);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	assert_ptr_equal(open->upstream, &n->up);
	uint64_t up2 = open->up_id;
	assert_int_not_equal(up2, up);
	clear(f);
	core_on_up_event(f->core, up2, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action cfg = *find_act(f, CORE_ACT_UP_SEND, "/config/");
	clear(f);
	up_answer(f, &cfg, 201, NULL, -1, up2);
	struct core_action *again = find_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=abc/mid=3");
	assert_non_null(again);
	assert_int_equal(again->up_id, up2);
	assert_int_equal(again->msg.code, CORE_PUT);
	clear(f);
	core_free(f->core);
	f->core = NULL;
	cfg2_free(n);
}

static void test_reload_changed_credential_closes_sessions_keeps_state(void **state)
{
	struct fix *f = *state;
	struct core_reload_stats st;
	struct core_stats s;
	uint64_t up = bring_up(f, 1, 0);

	install(f, 1, up, "abc", 3);
	struct cfg2 *n = cfg2_copy(f, "203.0.113.0/24");
	n->cl[0].psk_identity = "alice-2027";
	reload(f, n, &st);
	assert_int_equal(st.clients_reauth, 1);
	struct core_action *dc = find_act(f, CORE_ACT_DN_CLOSE, NULL);
	assert_non_null(dc);
	assert_int_equal(dc->dn_sid, 1);
	assert_null(find_act(f, CORE_ACT_UP_CLOSE, NULL));
	clear(f);
	core_get_stats(f->core, &s);
	assert_int_equal(s.dn_sessions, 0);
	assert_int_equal(s.up_sessions, 1); /* kept for the mitigation */
	assert_int_equal(s.mitigations, 1);
	core_free(f->core);
	f->core = NULL;
	cfg2_free(n);
}

/* ---- the gateway's own requests ---------------------------------------------- */

static uint64_t own_up(struct fix *f, const char *body_text, uint32_t *mid)
{
	struct dg_diag d = { "" };
	json_t *body = json_loads(body_text, 0, NULL);

	assert_non_null(body);
	assert_int_equal(core_own_request(f->core, "provider", "gw-cuid", body, mid,
					  f->now, &f->out, &d), 0);
	json_decref(body);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	if (!open)
		return 0;
	uint64_t up = open->up_id;
	clear(f);
	core_on_up_event(f->core, up, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action cfg = *find_act(f, CORE_ACT_UP_SEND, "/config/");
	clear(f);
	up_answer(f, &cfg, 201, NULL, -1, up);
	return up;
}

static void test_own_request_and_withdraw(void **state)
{
	struct fix *f = *state;
	struct dg_diag d = { "" };
	struct core_stats st;
	uint32_t mid = 0, mid2 = 0;
	char path[96];

	core_set_own_mid_base(f->core, 5000);
	uint64_t up = own_up(f, REQ_BODY, &mid);
	assert_int_not_equal(up, 0);
	assert_int_equal(mid, 5001);
	snprintf(path, sizeof(path), "/mitigate/cuid=gw-cuid/mid=%u", mid);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, path);
	assert_non_null(put);
	assert_int_equal(put->msg.code, CORE_PUT);
	assert_true(put->msg.has_hop_limit);
	struct core_action copy = *put;
	clear(f);
	up_answer(f, &copy, 201, NULL, -1, up);
	/* Accepted: kept, observed upstream like a client's. */
	struct core_action *obs = find_act(f, CORE_ACT_UP_SEND, path);
	assert_non_null(obs);
	assert_int_equal(obs->msg.code, CORE_GET);
	assert_true(obs->msg.has_observe);
	clear(f);
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 1);
	/* Mids strictly increase; the same session carries the next one. */
	assert_int_equal(own_up(f, REQ_BODY, &mid2), 0);
	assert_int_equal(mid2, mid + 1);
	clear(f);
	/* Withdraw the first. */
	assert_int_equal(core_own_withdraw(f->core, "provider", "gw-cuid", mid, f->now,
					   &f->out, &d), 0);
	struct core_action *del = find_act(f, CORE_ACT_UP_SEND, path);
	assert_non_null(del);
	assert_int_equal(del->msg.code, CORE_DELETE);
	copy = *del;
	clear(f);
	up_answer(f, &copy, 202, NULL, -1, up);
	clear(f);
	core_get_stats(f->core, &st);
	assert_int_equal(st.mitigations, 0);
	/* Unknown now. */
	assert_int_equal(core_own_withdraw(f->core, "provider", "gw-cuid", mid, f->now,
					   &f->out, &d), 404);
	assert_int_equal(f->out.n, 0);
}

static void test_own_request_refusals_change_nothing(void **state)
{
	struct fix *f = *state;
	struct dg_diag d = { "" };
	uint32_t mid = 0;
	json_t *good = json_loads(REQ_BODY, 0, NULL);
	json_t *bad = json_loads("{\"ietf-dots-signal-channel:mitigation-scope\":"
				 "{\"scope\":[{\"target-prefix\":[\"203.0.113.0/28\"]}]}}",
				 0, NULL);

	assert_int_equal(core_own_request(f->core, "nobody", "gw-cuid", good, &mid,
					  f->now, &f->out, &d), 404);
	assert_non_null(strstr(d.text, "nobody"));
	/* No lifetime: invalid as a client's request would be. */
	assert_int_equal(core_own_request(f->core, "provider", "gw-cuid", bad, &mid,
					  f->now, &f->out, &d), 400);
	/* A downstream client's cuid is not the gateway's to use. */
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	assert_int_equal(core_own_request(f->core, "provider", "abc", good, &mid,
					  f->now, &f->out, &d), 409);
	assert_int_equal(f->out.n, 0);
	json_decref(good);
	json_decref(bad);
}

/* ---- drain -------------------------------------------------------------------- */

static void test_drain_redirects_observers_and_requests(void **state)
{
	struct fix *f = *state;
	struct dn_req_opts o = NO_OPTS;
	char *addrs[] = { "192.0.2.7", "2001:db8::7" };
	size_t told = 0;
	uint64_t up = bring_up(f, 1, 0);

	install(f, 1, up, "abc", 3);
	o.observe = 0;
	dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc/mid=3", NULL, 0, &o);
	clear(f);
	/* Without an alternate, refused and nothing changes. */
	assert_int_equal(core_drain(f->core, true, f->now, &f->out, &told), DG_EINVAL);
	assert_int_equal(f->out.n, 0);
	assert_false(core_draining(f->core));

	f->cfg.drain.alternate = "alt.dots.test";
	f->cfg.drain.addresses = addrs;
	f->cfg.drain.naddresses = 2;
	f->cfg.drain.ttl = 600;
	assert_int_equal(core_drain(f->core, true, f->now, &f->out, &told), 0);
	assert_int_equal(told, 1);
	struct core_action *n = find_act(f, CORE_ACT_DN_SEND, NULL);
	assert_non_null(n);
	assert_int_equal(n->dn_sid, 1);
	assert_int_equal(n->msg.code, 503);
	assert_false(n->msg.has_observe); /* an error ends the observation */
	assert_true(n->msg.has_max_age);
	assert_int_equal(n->msg.max_age, 600);
	json_t *b = payload_json(&n->msg);
	json_t *rs = json_object_get(b, "ietf-dots-signal-channel:redirected-signal");
	assert_string_equal(json_string_value(json_object_get(rs, "alt-server")),
			    "alt.dots.test");
	assert_string_equal(json_string_value(json_array_get(
		json_object_get(rs, "alt-server-record"), 1)), "2001:db8::7");
	json_decref(b);
	clear(f);
	/* Requests, heartbeats included, get the redirection too. */
	uint64_t rid = dn_request(f, 1, CORE_PUT, "/.well-known/dots/hb", NULL, 0, &NO_OPTS);
	struct core_action *r = reply_for(f, rid);
	assert_int_equal(r->msg.code, 503);
	assert_int_equal(r->msg.max_age, 600);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, NULL), 0);
	clear(f);
	/* Observers are gone: a status change notifies nobody. */
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.dn_observers, 0);
	/* Drain off: served again. */
	assert_int_equal(core_drain(f->core, false, f->now, &f->out, &told), 0);
	rid = dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc/mid=3",
			 NULL, 0, &NO_OPTS);
	assert_int_equal(reply_for(f, rid)->msg.code, 205);
	f->cfg.drain = (struct gw_drain){ 0 };
}

/* ---- discovered upstreams (RFC 8973): core_upstream_retarget ----------------- */

static struct core_target tgt(const char *addr, uint16_t port, int transport)
{
	struct core_target t;

	memset(&t, 0, sizeof(t));
	snprintf(t.address, sizeof(t.address), "%s", addr);
	t.port = port;
	t.transport = transport;
	snprintf(t.ref_id, sizeof(t.ref_id), "example.net");
	return t;
}

static void retarget(struct fix *f, const struct core_target *t, size_t n,
		     size_t want_rehomed)
{
	size_t rehomed = 99;

	assert_int_equal(core_upstream_retarget(f->core, "provider", t, n, f->now,
						&f->out, &rehomed), 0);
	assert_int_equal(rehomed, want_rehomed);
}

/* Connects up_id and answers its PUT /config: the session is ready. */
static void up_confirm(struct fix *f, uint64_t up_id)
{
	core_on_up_event(f->core, up_id, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action *put = find_act(f, CORE_ACT_UP_SEND, "/config/");
	assert_non_null(put);
	struct core_action copy = *put;
	clear(f);
	up_answer(f, &copy, 201, NULL, -1, up_id);
}

static void test_discovered_target_in_up_open_and_next_on_failure(void **state)
{
	struct fix *f = *state;
	struct core_target t[3] = { tgt("::1", 5000, GW_TR_DTLS),
				    tgt("::1", 5001, GW_TR_TLS),
				    tgt("127.0.0.2", 4646, GW_TR_DTLS) };
	struct core_dn_info info = { CORE_TR_DTLS, &f->cl[0], "cdid", "127.0.0.1" };

	retarget(f, t, 3, 0);
	assert_int_equal(f->out.n, 0); /* no session: nothing to do */
	assert_int_equal(core_on_dn_session(f->core, 1, &info, f->now, &f->out), 0);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	uint64_t up = open->up_id;
	assert_true(open->has_target);
	assert_string_equal(open->target.address, "::1");
	assert_int_equal(open->target.port, 5000);
	assert_int_equal(open->target.transport, GW_TR_DTLS);
	assert_string_equal(open->target.ref_id, "example.net");
	/* The configuration is not touched. */
	assert_string_equal(f->up.address, "127.0.0.1");
	clear(f);
	/* Handshake failure: the next candidate at once, same session. */
	core_on_up_event(f->core, up, CORE_UP_FAILED, f->now, &f->out);
	open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	assert_int_equal(open->up_id, up);
	assert_int_equal(open->target.port, 5001);
	assert_int_equal(open->target.transport, GW_TR_TLS);
	clear(f);
	/* Handshake timeout: the third. */
	open = NULL;
	for (int i = 0; i < 30 && !open; i++) {
		f->now += 1000;
		core_on_expiry(f->core, f->now, &f->out);
		open = find_act(f, CORE_ACT_UP_OPEN, NULL);
		if (!open)
			clear(f);
	}
	assert_non_null(open);
	assert_string_equal(open->target.address, "127.0.0.2");
	clear(f);
	/* The last failed: backoff, then the first again. */
	core_on_up_event(f->core, up, CORE_UP_FAILED, f->now, &f->out);
	assert_null(find_act(f, CORE_ACT_UP_OPEN, NULL));
	clear(f);
	open = NULL;
	for (int i = 0; i < 30 && !open; i++) {
		f->now += 500;
		core_on_expiry(f->core, f->now, &f->out);
		open = find_act(f, CORE_ACT_UP_OPEN, NULL);
		if (!open)
			clear(f);
	}
	assert_non_null(open);
	assert_int_equal(open->target.port, 5000);
	clear(f);
	up_confirm(f, up);
	struct core_stats st;
	core_get_stats(f->core, &st);
	assert_int_equal(st.up_ready, 1);
}

static void test_new_list_rehomes_mitigations_when_server_gone(void **state)
{
	struct fix *f = *state;
	struct core_target a = tgt("127.0.0.2", 4646, GW_TR_DTLS);
	struct core_target b = tgt("127.0.0.3", 4646, GW_TR_DTLS);
	struct core_target ab[2] = { a, b }, ba[2] = { b, a };

	retarget(f, &a, 1, 0);
	uint64_t up = bring_up(f, 1, 0);
	install(f, 1, up, "abc", 3);
	/* Same list, or the server in use still offered (even second): stays. */
	retarget(f, &a, 1, 0);
	retarget(f, ba, 2, 0);
	assert_null(find_act(f, CORE_ACT_UP_CLOSE, NULL));
	assert_null(find_act(f, CORE_ACT_UP_OPEN, NULL));
	retarget(f, ab, 2, 0);
	/* a is gone: the session closes, a new one opens to b. */
	retarget(f, &b, 1, 1);
	assert_null(find_act(f, CORE_ACT_DN_CLOSE, NULL));
	struct core_action *uc = find_act(f, CORE_ACT_UP_CLOSE, NULL);
	assert_non_null(uc);
	assert_int_equal(uc->up_id, up);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	uint64_t up2 = open->up_id;
	assert_int_not_equal(up2, up);
	assert_string_equal(open->target.address, "127.0.0.3");
	clear(f);
	up_confirm(f, up2);
	struct core_action *again = find_act(f, CORE_ACT_UP_SEND, "/mitigate/cuid=abc/mid=3");
	assert_non_null(again);
	assert_int_equal(again->up_id, up2);
	assert_int_equal(again->msg.code, CORE_PUT);
	clear(f);
	/* An empty list: back to the configured address. */
	retarget(f, NULL, 0, 1);
	open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	assert_false(open->has_target);
}

static void test_list_while_waiting_opens_at_once(void **state)
{
	struct fix *f = *state;
	struct core_target a = tgt("127.0.0.2", 4646, GW_TR_DTLS);
	struct core_dn_info info = { CORE_TR_DTLS, &f->cl[0], "cdid", "127.0.0.1" };
	size_t rehomed;

	/* Before discovery answered: no target, io fails the open. */
	assert_int_equal(core_on_dn_session(f->core, 1, &info, f->now, &f->out), 0);
	struct core_action *open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	assert_false(open->has_target);
	uint64_t up = open->up_id;
	clear(f);
	core_on_up_event(f->core, up, CORE_UP_FAILED, f->now, &f->out);
	assert_null(find_act(f, CORE_ACT_UP_OPEN, NULL));
	clear(f);
	/* The list arrives during the backoff: no waiting for it. */
	retarget(f, &a, 1, 0);
	open = find_act(f, CORE_ACT_UP_OPEN, NULL);
	assert_non_null(open);
	assert_int_equal(open->up_id, up);
	assert_true(open->has_target);
	clear(f);
	/* Refusals change nothing. */
	assert_int_equal(core_upstream_retarget(f->core, "nosuch", &a, 1, f->now,
						&f->out, &rehomed), DG_EINVAL);
	assert_int_equal(core_upstream_retarget(f->core, "provider", &a,
						CORE_TARGETS_MAX + 1, f->now,
						&f->out, &rehomed), DG_EINVAL);
	assert_int_equal(f->out.n, 0);
}

/* Sends PUT mid with token tok; returns the request id. */
static uint64_t put_tok(struct fix *f, uint32_t mid, uint32_t tok)
{
	char path[96];
	size_t len;
	uint8_t *body = encode_json(REQ_BODY, &len);
	struct dn_req_opts o = NO_OPTS;

	o.token = tok;
	snprintf(path, sizeof(path), "/.well-known/dots/mitigate/cuid=abc/mid=%u", mid);
	uint64_t rid = dn_request(f, 1, CORE_PUT, path, body, len, &o);
	free(body);
	return rid;
}

/* Lets `s` seconds pass with both sessions alive: the client and the
 * upstream exchange heartbeats every second. Returns the notifications
 * sent to clients meanwhile. */
static size_t keep_alive(struct fix *f, int s, uint64_t up)
{
	size_t n = 0;
	size_t len;
	uint8_t *hb = encode_json("{\"ietf-dots-signal-channel:heartbeat\":{\"peer-hb-status\":true}}",
				  &len);

	for (int i = 0; i < s; i++) {
		f->now += 1000;
		dn_request(f, 1, CORE_PUT, "/.well-known/dots/hb", hb, len, &NO_OPTS);
		core_on_expiry(f->core, f->now, &f->out);
		for (size_t k = 0; k < f->out.n; k++)
			n += f->out.v[k].type == CORE_ACT_DN_SEND &&
			     f->out.v[k].msg.has_observe;
		struct core_action *a = find_act(f, CORE_ACT_UP_SEND, "/hb");
		struct core_action copy;
		if (a) {
			copy = *a;
			copy.msg.path = NULL;
			copy.msg.payload = NULL;
		}
		clear(f);
		if (a)
			up_answer(f, &copy, 204, NULL, -1, up);
		clear(f);
	}
	free(hb);
	return n;
}

/* Advances time by ms in 100 ms steps; returns the upstream sends of
 * path seen meanwhile. */
static size_t run_for(struct fix *f, dg_time_ms ms, const char *path)
{
	size_t n = 0;

	for (dg_time_ms t = 0; t < ms; t += 100) {
		f->now += 100;
		core_on_expiry(f->core, f->now, &f->out);
		n += count_act(f, CORE_ACT_UP_SEND, path);
		clear(f);
	}
	return n;
}

static void test_non_repetition_paced_by_rtt_estimate(void **state)
{
	struct fix *f = *state;
	struct core_dn_info info = { CORE_TR_DTLS, &f->cl[0], "", "127.0.0.1" };

	core_on_dn_session(f->core, 1, &info, f->now, &f->out);
	uint64_t up = find_act(f, CORE_ACT_UP_OPEN, NULL)->up_id;
	clear(f);
	core_on_up_event(f->core, up, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action cfg = *find_act(f, CORE_ACT_UP_SEND, "/config/");
	clear(f);
	/* Answered after ACK_TIMEOUT: the CON may have been sent twice, so
	 * no RTT sample (Karn). */
	f->now += 2500;
	up_answer(f, &cfg, 201, NULL, -1, up);
	clear(f);
	/* Without an estimate: one repetition per 3 s (RFC 9132 §4.4.1). */
	put_tok(f, 1, 0);
	struct core_action p1 = *find_act(f, CORE_ACT_UP_SEND, "/mid=1");
	p1.msg.path = NULL;
	p1.msg.payload = NULL;
	clear(f);
	assert_int_equal(run_for(f, 2900, "/mid=1"), 0);
	assert_int_equal(run_for(f, 200, "/mid=1"), 1);
	/* An answer after a repetition is ambiguous: no sample either. */
	f->now += 40;
	up_answer(f, &p1, 201, NULL, -1, up);
	clear(f);
	put_tok(f, 2, 0);
	struct core_action p2 = *find_act(f, CORE_ACT_UP_SEND, "/mid=2");
	p2.msg.path = NULL;
	p2.msg.payload = NULL;
	clear(f);
	assert_int_equal(run_for(f, 2900, "/mid=2"), 0);
	/* Answered 200 ms after its only transmission... */
	f->now += 200;
	put_tok(f, 3, 0);
	struct core_action p3 = *find_act(f, CORE_ACT_UP_SEND, "/mid=3");
	p3.msg.path = NULL;
	p3.msg.payload = NULL;
	clear(f);
	f->now += 200;
	up_answer(f, &p3, 201, NULL, -1, up);
	clear(f);
	/* ...gives RTO = 200 + 4 x 100 ms, below the 1 s floor: the next
	 * request is repeated every second (RFC 6298 §2.4). */
	put_tok(f, 4, 0);
	clear(f);
	assert_int_equal(run_for(f, 900, "/mid=4"), 0);
	assert_int_equal(run_for(f, 200, "/mid=4"), 1);
	assert_int_equal(run_for(f, 1000, "/mid=4"), 1);
	/* mid=2, sent at 3 s and repeated since, answered late: had that
	 * counted as a 3.6 s sample, mid=4 would wait far longer. */
	up_answer(f, &p2, 201, NULL, -1, up);
	clear(f);
	assert_int_equal(run_for(f, 1000, "/mid=4"), 1);
}

static void test_repeated_put_answered_once_as_created(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	const char *ok = "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":7,\"lifetime\":1800}]}}";

	uint64_t rid = put_tok(f, 7, 0xab);
	struct core_action put = *find_act(f, CORE_ACT_UP_SEND, "/mid=7");
	put.msg.path = NULL;
	put.msg.payload = NULL;
	clear(f);
	/* Repeated upstream; the 2.01 to the first copy is lost and the
	 * upstream answers the repetition with 2.04. */
	assert_int_equal(run_for(f, 1100, "/mid=7"), 1);
	up_answer(f, &put, 204, ok, -1, up);
	struct core_action *r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 201);
	clear(f);
	/* The client missed that answer and repeats its request, same
	 * token: answered again from the gateway's state, not relayed. */
	f->now += 2000;
	rid = put_tok(f, 7, 0xab);
	r = reply_for(f, rid);
	assert_non_null(r);
	assert_int_equal(r->msg.code, 201);
	json_t *b = payload_json(&r->msg);
	json_t *e = json_array_get(json_object_get(json_object_get(b,
		"ietf-dots-signal-channel:mitigation-scope"), "scope"), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "mid")), 7);
	json_decref(b);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mid=7"), 0);
	clear(f);
	/* A refresh is a new request (new token): relayed, and its 2.04,
	 * answering a single transmission, relayed as is. */
	rid = put_tok(f, 7, 0xcd);
	assert_null(reply_for(f, rid));
	struct core_action *re = find_act(f, CORE_ACT_UP_SEND, "/mid=7");
	assert_non_null(re);
	put = *re;
	put.msg.path = NULL;
	put.msg.payload = NULL;
	clear(f);
	up_answer(f, &put, 204, ok, -1, up);
	assert_int_equal(reply_for(f, rid)->msg.code, 204);
	clear(f);
	/* The same token long after NON_LIFETIME is a new request too. */
	keep_alive(f, 146, up);
	rid = put_tok(f, 7, 0xab);
	assert_null(reply_for(f, rid));
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mid=7"), 1);
	clear(f);
	/* A new mid answered 2.04 to its only transmission: the upstream
	 * had it already, so the client hears 2.04. */
	rid = put_tok(f, 8, 0xef);
	put = *find_act(f, CORE_ACT_UP_SEND, "/mid=8");
	put.msg.path = NULL;
	put.msg.payload = NULL;
	clear(f);
	up_answer(f, &put, 204, NULL, -1, up);
	assert_int_equal(reply_for(f, rid)->msg.code, 204);
}

static void test_status_change_repeated_to_observers(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);
	struct core_action obs = install(f, 1, up, "abc", 3);
	struct dn_req_opts o = NO_OPTS;
	const char *st2 = "{\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[{\"mid\":3,"
		"\"lifetime\":1700,\"status\":\"attack-successfully-mitigated\"}]}}";

	o.observe = 0;
	dn_request(f, 1, CORE_GET, "/.well-known/dots/mitigate/cuid=abc/mid=3",
		   NULL, 0, &o);
	clear(f);
	up_answer(f, &obs, 205, st2, 2, up);
	assert_int_equal(count_act(f, CORE_ACT_DN_SEND, NULL), 1);
	clear(f);
	/* The change is repeated every 3 s, NOTIFY_REPEATS (9) times... */
	assert_int_equal(keep_alive(f, 28, up), 9);
	/* ...and then left to the upstream's own notifications. */
	assert_int_equal(keep_alive(f, 10, up), 0);
	up_answer(f, &obs, 205, st2, 3, up);
	assert_int_equal(count_act(f, CORE_ACT_DN_SEND, NULL), 1);
	clear(f);
	/* The same status again is no change: relayed, not repeated. */
	assert_int_equal(keep_alive(f, 10, up), 0);
}

static void test_pending_request_survives_reconnect(void **state)
{
	struct fix *f = *state;
	uint64_t up = bring_up(f, 1, 0);

	f->cfg.request_timeout = 20;
	uint64_t rid = put_tok(f, 5, 0);
	assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mid=5"), 1);
	clear(f);
	/* The session fails (a lost handshake, an ICMP error...): the
	 * client's request waits for the next one instead of a 5.03. */
	core_on_up_event(f->core, up, CORE_UP_CLOSED, f->now, &f->out);
	assert_non_null(find_act(f, CORE_ACT_UP_CLOSE, NULL));
	assert_null(reply_for(f, rid));
	clear(f);
	struct core_action *open = NULL;
	for (int i = 0; i < 30 && !open; i++) {
		f->now += 100;
		core_on_expiry(f->core, f->now, &f->out);
		assert_null(reply_for(f, rid));
		assert_int_equal(count_act(f, CORE_ACT_UP_SEND, "/mid=5"), 0);
		open = find_act(f, CORE_ACT_UP_OPEN, NULL);
		if (!open)
			clear(f);
	}
	assert_non_null(open);
	clear(f);
	core_on_up_event(f->core, up, CORE_UP_CONNECTED, f->now, &f->out);
	struct core_action cfg = *find_act(f, CORE_ACT_UP_SEND, "/config/");
	clear(f);
	up_answer(f, &cfg, 201, NULL, -1, up);
	struct core_action *again = find_act(f, CORE_ACT_UP_SEND, "/mid=5");
	assert_non_null(again);
	struct core_action copy = *again;
	copy.msg.path = NULL;
	copy.msg.payload = NULL;
	clear(f);
	up_answer(f, &copy, 201, NULL, -1, up);
	assert_int_equal(reply_for(f, rid)->msg.code, 201);
	clear(f);
	/* Down again with a request that cannot wait any longer: answered
	 * at its deadline, 20 s after it came. */
	rid = put_tok(f, 6, 0);
	clear(f);
	core_on_up_event(f->core, up, CORE_UP_CLOSED, f->now, &f->out);
	assert_null(reply_for(f, rid));
	clear(f);
	dg_time_ms t0 = f->now;
	struct core_action *r = NULL;
	for (int i = 0; i < 300 && !r; i++) {
		f->now += 100;
		core_on_expiry(f->core, f->now, &f->out);
		r = reply_for(f, rid);
		if (!r)
			clear(f);
	}
	assert_non_null(r);
	assert_int_equal(r->msg.code, 504);
	assert_true(f->now - t0 >= 19900);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_relayed_keeps_cuid_mid_and_adds_hop_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_domain_inserts_cdid_and_strips_client_cdid, setup_sd, teardown),
		cmocka_unit_test_setup_teardown(test_client_cdid_stripped_without_server_domain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hop_limit_inserted_kept_and_exhausted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upstream_508_gets_our_id_appended, setup, teardown),
		cmocka_unit_test_setup_teardown(test_observe_relays_status_and_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notifications_reach_only_the_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_clients_cuid_put_is_collision_and_delete_invisible, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_withdraws_and_ends_observation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_efficacy_update_relayed_with_if_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upstream_conflict_relayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_timeout_gives_504, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_upstream_reconnects_and_resends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_with_other_attributes_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_outside_policy_forbidden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_inputs_change_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unauthenticated_session_gets_401, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hb_and_config_are_hop_by_hop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_client_session_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queued_until_upstream_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_renews_lifetime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cuid_wide_observe_gets_each_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_observe_cancelled_by_observe_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_observe_cancelled_by_rst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_unchanged_does_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_narrowed_scope_applies_to_next_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_removed_client_closed_others_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_changed_upstream_rehomes_mitigations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discovered_target_in_up_open_and_next_on_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_list_rehomes_mitigations_when_server_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_while_waiting_opens_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_changed_credential_closes_sessions_keeps_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_request_and_withdraw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_request_refusals_change_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_redirects_observers_and_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap_replaces_only_overlapping_lower_mids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_non_repetition_paced_by_rtt_estimate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeated_put_answered_once_as_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_change_repeated_to_observers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_request_survives_reconnect, setup, teardown),
	};
	(void)fx;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
