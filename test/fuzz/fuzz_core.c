/*
 * fuzz_core.c: libFuzzer target for the relay engine (common/core.c).
 *
 * The input is a script: one byte of setup, then events, each an opcode
 * byte and its parameters, read from the input until it ends or
 * MAX_EVENTS have run. The harness plays io_coap.c's part: it feeds
 * downstream sessions and requests, upstream connection events, answers
 * and notifications, acknowledgement failures and the passing of time,
 * and carries out (that is, checks and forgets) the actions.
 *
 * Answers refer to what the core actually sent: every UP_SEND is kept in
 * a small ring (up id, token, method, path, mid), and an upstream answer
 * picks its request from the ring by kind (the last /config, the last
 * mitigation PUT, ...) so that short scripts reach the relay path. Bodies
 * are either pre-encoded templates (valid requests and answers, with the
 * mid of the request they answer) or raw bytes from the input.
 *
 * Properties checked beyond "no crash, no leak, no sanitizer report":
 *   - core.h: every downstream request gets exactly one REPLY or
 *     NO_REPLY, on its own session, now or later; after the script the
 *     clock runs past request-timeout and every request must have had it;
 *   - every body the gateway emits (replies, notifications, requests
 *     upstream) is valid DOTS CBOR, and every mitigation request it sends
 *     upstream passes the checks a DOTS server would apply;
 *   - UP_SEND only on an upstream session that is open, UP_OPEN only on
 *     one that is not, DN_SEND only to a live downstream session;
 *   - core_next_expiry() is later than now once the due timers have run
 *     (a timer re-armed at now would spin io's event loop);
 *   - core_get_stats() agrees with the sessions the harness knows of.
 * A violated property is abort()ed so that libFuzzer keeps the input.
 *
 * Script format (a read past the end gives 0; the seeds in
 * test/fuzz/corpus/core/ are written in it):
 *   setup byte: 0x01 server-domain, 0x02 upstream over TLS (else DTLS),
 *     bits 2-7 vary the token seed.
 *   each event: an opcode byte, taken modulo 10, and its parameters:
 *     0 dn session up: b: bits 0-1 sid-1, bits 2-3 client (alice, bob,
 *       none), bits 4-5 transport, 0x40 no cdid, 0x80 no peer name;
 *     1 dn session down: b: bits 0-1 sid-1;
 *     2, 3 dn request: see ev_dn_request();
 *     4 upstream event: b: bits 0-1 which of the last ids opened (0x80:
 *       the id 1 + bits 0-1), bits 2-3 connected, connected, failed,
 *       closed;
 *     5, 6 upstream answer: see ev_up_response();
 *     7 upstream nack, or a request from the upstream: see
 *       ev_up_nack_or_request();
 *     8 time: b: the clock moves b * 40 ms (255: 10 min), due timers run;
 *     9 dn response: b: bits 0-1 code (RST, 2.04, 4.00, 4.04), bits 2-4
 *       which of the last DN_SEND it answers (0x80: a token byte follows).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cbor.h"
#include "core.h"
#include "dg.h"
#include "ident.h"
#include "model.h"
#include "prefix.h"
#include "../gateway/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* An UBSan report must end the run, so that libFuzzer keeps the input. */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

#define MAX_EVENTS 256
#define MAX_SIDS 4         /* downstream session ids 1..4 */
#define SENT_RING 16       /* last UP_SEND actions */
#define DN_RING 8          /* last DN_SEND actions (heartbeats, notifications) */
#define UP_RING 4          /* last upstream ids opened */
#define MAX_UP_IDS 1024    /* up ids tracked for open/closed */
#define START_MS 1000000u

/* ---- the fixture: two clients, one upstream, short timers ---------------- */

static struct gw_config cfg;
static struct gw_upstream upstream;
static struct gw_client clients[2];
static char *client_fqdns[] = { "example.com" };
static char *client_uris[] = { "https://example.com/" };
static struct port_range client_ports[2];
static char cdids[2][IDENT_LEN + 1];

/* DOTSGW_FUZZ_TRACE=1 prints each event, action and log line: to read
 * what a crashing input does (run the target on that one file). */
static bool trace;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_core: %s\n", what);
	abort();
}

static void setup_fixture(void)
{
	static const char *const prefixes[2] = { "203.0.113.0/24", "198.51.100.0/24" };
	struct prefix p;

	upstream.name = "provider";
	upstream.address = "127.0.0.1";
	upstream.port = 4646;
	upstream.transport = GW_TR_DTLS;
	upstream.heartbeat_interval = 2;
	upstream.missing_hb_allowed = 3;
	upstream.reconnect_min = 1;
	upstream.reconnect_max = 8;
	for (int i = 0; i < 2; i++) {
		struct gw_client *cl = &clients[i];

		cl->name = i ? "bob" : "alice";
		cl->psk_identity = i ? "bob" : "alice";
		cl->upstream_name = "provider";
		cl->upstream = &upstream;
		if (prefix_parse(prefixes[i], false, &p) ||
		    prefix_set_add(&cl->scope.prefixes, &p))
			fail("fixture prefixes");
		if (ident_derive((const uint8_t *)cl->psk_identity,
				 strlen(cl->psk_identity), cdids[i]))
			fail("fixture cdid");
	}
	/* alice may name FQDNs, URIs, aliases and some ports; bob only his
	 * prefix, so both branches of model_scope_authorize() are reached. */
	clients[0].scope.fqdns = client_fqdns;
	clients[0].scope.nfqdns = 1;
	clients[0].scope.uris = client_uris;
	clients[0].scope.nuris = 1;
	if (port_range_parse("80", &client_ports[0]) ||
	    port_range_parse("443-446", &client_ports[1]))
		fail("fixture ports");
	clients[0].scope.ports = client_ports;
	clients[0].scope.nports = 2;
	clients[0].scope.allow_aliases = true;

	cfg.mode = GW_MODE_MAP;
	cfg.clients = clients;
	cfg.nclients = 2;
	cfg.upstreams = &upstream;
	cfg.nupstreams = 1;
	cfg.hop_limit = 16;
	cfg.max_body = 1024;
	cfg.request_timeout = 10;
	cfg.id = "gw-fuzz";
	model_session_defaults(&cfg.session_default);
	cfg.session_default.idle.heartbeat_interval = 5;
	cfg.session_default.mitigating.heartbeat_interval = 5;
	cfg.session_default.idle.missing_hb_allowed = 3;
	cfg.session_default.mitigating.missing_hb_allowed = 3;
	for (int i = 0; i < 2; i++) {
		struct model_session_limits *l = i ? &cfg.session_idle :
						     &cfg.session_mitigating;

		l->min = (struct model_session_params){ 1, 1, 1, 2, 100, 110 };
		l->max = (struct model_session_params){ 240, 60, 1000, 15, 3000, 400 };
	}
}

/* ---- tables ----------------------------------------------------------------- */

#define MSG_SCOPE "{\"" CBOR_MSG_MITIGATION "\":{\"scope\":[{"

/* Request bodies: valid ones in alice's and bob's scopes, and a few that
 * a check refuses. */
static const char *const req_json[] = {
	MSG_SCOPE "\"target-prefix\":[\"203.0.113.0/28\"],"
		"\"target-port-range\":[{\"lower-port\":443}],"
		"\"target-protocol\":[6],\"lifetime\":3600}]}}",
	MSG_SCOPE "\"target-prefix\":[\"203.0.113.0/28\"],"
		"\"target-port-range\":[{\"lower-port\":443}],"
		"\"target-protocol\":[6],\"lifetime\":5}]}}",
	MSG_SCOPE "\"target-prefix\":[\"203.0.113.0/24\"],\"lifetime\":-1}]}}",
	MSG_SCOPE "\"target-prefix\":[\"198.51.100.0/24\"],\"lifetime\":3600}]}}",
	MSG_SCOPE "\"target-prefix\":[\"192.0.2.0/24\"],\"lifetime\":3600}]}}",
	MSG_SCOPE "\"target-prefix\":[\"203.0.113.0/28\"],"
		"\"target-port-range\":[{\"lower-port\":443}],"
		"\"target-protocol\":[6],\"lifetime\":3600,"
		"\"attack-status\":\"under-attack\"}]}}",
	MSG_SCOPE "\"target-fqdn\":[\"www.example.com\"],"
		"\"target-uri\":[\"https://example.com/a\"],\"lifetime\":600}]}}",
	MSG_SCOPE "\"alias-name\":[\"web\"],\"lifetime\":600,"
		"\"trigger-mitigation\":false}]}}",
	MSG_SCOPE "\"target-prefix\":[\"203.0.113.0/28\"],"
		"\"ietf-dots-signal-control:acl-list\":[{\"acl-name\":\"x\","
		"\"activation-type\":\"immediate\"}],\"lifetime\":3600}]}}",
	MSG_SCOPE "\"target-prefix\":[\"203.0.113.0/28\"]}]}}",
	"{\"" CBOR_MSG_CONFIG "\":{\"mitigating-config\":{"
		"\"heartbeat-interval\":{\"current-value\":30},"
		"\"ack-timeout\":{\"current-value-decimal\":\"2.00\"}},"
		"\"idle-config\":{\"heartbeat-interval\":{\"current-value\":60}}}}",
	"{\"" CBOR_MSG_CONFIG "\":{\"mitigating-config\":{"
		"\"heartbeat-interval\":{\"current-value\":9999}}}}",
	"{\"" CBOR_MSG_HEARTBEAT "\":{\"peer-hb-status\":true}}",
	"{\"" CBOR_MSG_HEARTBEAT "\":{\"peer-hb-status\":false}}",
};
#define N_REQ (sizeof(req_json) / sizeof(req_json[0]))
static struct { uint8_t *b; size_t n; } req_body[N_REQ];

/* Answer bodies. Each "mid" is replaced by the mid of the request
 * answered (plus the entry's index: a second entry names another one). */
static const char *const rsp_json[] = {
	MSG_SCOPE "\"mid\":0,\"lifetime\":1800}]}}",
	MSG_SCOPE "\"mid\":0,\"lifetime\":3}]}}",
	MSG_SCOPE "\"mid\":0,\"lifetime\":-1}]}}",
	MSG_SCOPE "\"mid\":0,\"lifetime\":1700,"
		"\"status\":\"attack-mitigation-in-progress\","
		"\"mitigation-start\":\"1700000000\",\"bytes-dropped\":\"4096\","
		"\"bps-dropped\":\"10\",\"pkts-dropped\":\"4\",\"pps-dropped\":\"1\"}]}}",
	MSG_SCOPE "\"mid\":0,\"target-prefix\":[\"203.0.113.0/28\"],"
		"\"lifetime\":0,\"status\":\"attack-successfully-mitigated\"}]}}",
	MSG_SCOPE "\"mid\":0,\"conflict-information\":{"
		"\"conflict-status\":\"request-inactive-other-active\","
		"\"conflict-cause\":\"overlapping-targets\",\"retry-timer\":30,"
		"\"conflict-scope\":{\"target-prefix\":[\"203.0.113.0/24\"]}}}]}}",
	"{\"" CBOR_MSG_REDIRECT "\":{\"alt-server\":\"alt.example\","
		"\"alt-server-record\":[\"192.0.2.1\"]}}",
	"{\"" CBOR_MSG_CONFIG "\":{\"mitigating-config\":{"
		"\"heartbeat-interval\":{\"current-value\":7},"
		"\"missing-hb-allowed\":{\"current-value\":2}},"
		"\"idle-config\":{\"heartbeat-interval\":{\"current-value\":1}}}}",
	"{\"" CBOR_MSG_HEARTBEAT "\":{\"peer-hb-status\":true}}",
	MSG_SCOPE "\"mid\":0,\"lifetime\":100},{\"mid\":0,\"lifetime\":200}]}}",
};
#define N_RSP (sizeof(rsp_json) / sizeof(rsp_json[0]))
static json_t *rsp_model[N_RSP];

static const char *const path_tab[] = {
	"/.well-known/dots/mitigate/cuid=c1/mid=1",
	"/.well-known/dots/mitigate/cuid=c1/mid=2",
	"/.well-known/dots/mitigate/cuid=c1/mid=3",
	"/.well-known/dots/mitigate/cuid=c2/mid=1",
	"/.well-known/dots/mitigate/cuid=c1",
	"/.well-known/dots/mitigate/cuid=c2",
	"/.well-known/dots/mitigate/cdid=forged/cuid=c1/mid=1",
	"/.well-known/dots/config/sid=1",
	"/.well-known/dots/config/sid=2",
	"/.well-known/dots/config",
	"/.well-known/dots/hb",
	"/.well-known/dots/mitigate",
	"/.well-known/dots/mitigate/mid=1/cuid=c1",
	"/.well-known/dots/mitigate/cuid=c1/mid=01",
	"/.well-known/dots/mitigate/cuid=c1/mid=4294967296",
	"/.well-known/dots/mitigate/cuid=/mid=1",
	"/.well-known/dots/config/sid=x",
	"/.well-known/dots/hb/cuid=c1",
	"/.well-known/dots/nothing",
	"/.well-known/core",
	"",
};
#define N_PATH (sizeof(path_tab) / sizeof(path_tab[0]))

static const char *const query_tab[] = {
	"c=a", "c=c", "c=n", "c=x",
	"target-prefix=203.0.113.0/28", "target-prefix=203.0.113.0/24,10.0.0.0/8",
	"target-port=443", "target-port=1-1024", "target-protocol=6,17",
	"target-fqdn=*.example.com", "target-uri=https://example.com/a",
	"target-alias=web", "bogus=1", "target-port=70000",
};
#define N_QUERY (sizeof(query_tab) / sizeof(query_tab[0]))

static const int rsp_codes[] = {
	201, 204, 205, 202, 203, 400, 401, 402, 403, 404, 405, 409, 412, 413,
	415, 422, 500, 502, 503, 504, 508, 231, 429, 531,
};
#define N_CODES (sizeof(rsp_codes) / sizeof(rsp_codes[0]))

/* ---- reading the script ---------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint8_t rd_u8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static uint16_t rd_u16(struct rd *r)
{
	uint16_t hi = rd_u8(r);

	return (uint16_t)(hi << 8 | rd_u8(r));
}

static const uint8_t *rd_bytes(struct rd *r, size_t want, size_t *got)
{
	const uint8_t *p = r->p;

	*got = want < r->n ? want : r->n;
	r->p += *got;
	r->n -= *got;
	return p;
}

/* ---- harness state ------------------------------------------------------------ */

struct sent {
	uint64_t up_id;
	uint8_t token[CORE_TOKEN_MAX];
	size_t token_len;
	int method;
	char kind;     /* 'c' config, 'h' hb, 'm' mitigate */
	uint32_t mid;
};

struct dn_sent {
	uint64_t sid;
	uint8_t token[CORE_TOKEN_MAX];
	size_t token_len;
};

struct req_track {
	uint64_t sid;
	bool answered;
};

enum { UP_IS_NEW, UP_IS_OPEN, UP_IS_CLOSED, UP_IS_GONE };

struct run {
	struct core *core;
	struct core_actions out;
	dg_time_ms now;
	bool live[MAX_SIDS + 1];
	struct sent sent[SENT_RING];
	size_t nsent, sent_pos;
	struct dn_sent dn[DN_RING];
	size_t ndn, dn_pos;
	uint64_t ups[UP_RING];
	size_t nups, ups_pos;
	/* io's view of each upstream id: 0 never opened, then UP_OPEN ->
	 * UP_IS_OPEN, UP_CLOSE -> UP_IS_CLOSED (a reconnection may reopen
	 * it), final UP_CLOSE -> UP_IS_GONE (never used again). */
	uint8_t up_state[MAX_UP_IDS];
	struct req_track reqs[MAX_EVENTS + 1];
	uint64_t nreqs;
	uint32_t observe_seq;
	uint64_t closed[16];
	size_t nclosed;
};

static uint32_t path_mid(const char *path)
{
	const char *m = path ? strstr(path, "/mid=") : NULL;

	return m ? (uint32_t)strtoul(m + 5, NULL, 10) : 1;
}

static char path_kind(const char *path)
{
	if (!path)
		return '?';
	if (strstr(path, "/config"))
		return 'c';
	if (strstr(path, "/hb"))
		return 'h';
	if (strstr(path, "/mitigate"))
		return 'm';
	return '?';
}

/* Splits "/a/b" into at most 16 segments of at most 255 bytes. */
struct segs {
	char buf[16][256];
	const char *ptr[16];
	size_t n;
};

static void split_path(const char *path, size_t len, struct segs *s)
{
	size_t i = 0;

	s->n = 0;
	while (i < len && path[i] == '/')
		i++;
	while (i < len && s->n < 16) {
		size_t j = i, k;

		while (j < len && path[j] != '/')
			j++;
		k = j - i < 255 ? j - i : 255;
		memcpy(s->buf[s->n], path + i, k);
		s->buf[s->n][k] = '\0';
		s->ptr[s->n] = s->buf[s->n];
		s->n++;
		i = j;
		while (i < len && path[i] == '/')
			i++;
	}
}

static void check_body(const struct core_msg *m, const char *what)
{
	struct dg_diag d = { "" };
	json_t *j = NULL;
	int rc;

	if (m->content_format != DG_CONTENT_FORMAT_DOTS_CBOR)
		return;
	if (!m->payload || !m->payload_len) {
		fprintf(stderr, "fuzz_core: %s: Content-Format 271 without a body\n", what);
		abort();
	}
	rc = cbor_decode(m->payload, m->payload_len, &j, &d);
	if (rc == DG_ENOMEM)
		return;
	if (rc) {
		fprintf(stderr, "fuzz_core: %s: emitted body does not decode: %s\n",
			what, d.text);
		abort();
	}
	json_decref(j);
}

/* A mitigation request the gateway re-originates must be one a DOTS
 * server accepts (RFC 9132 §4.4.1): same checks as for the client's. */
static void check_up_put(const struct core_msg *m)
{
	struct dg_diag d = { "" };
	struct model_uri uri;
	struct segs s;
	json_t *j = NULL;
	int rc;

	split_path(m->path, strlen(m->path), &s);
	rc = model_parse_uri(s.ptr, s.n, &uri, &d);
	if (rc) {
		fprintf(stderr, "fuzz_core: UP_SEND path %s: %s\n", m->path, d.text);
		abort();
	}
	if (uri.res != MODEL_RES_MITIGATE || !uri.has_mid)
		return;
	if (!m->payload || cbor_decode(m->payload, m->payload_len, &j, &d))
		return; /* check_body() has judged it */
	rc = model_check_mitigation_request(j, m->if_match_empty ?
					    MODEL_PUT_EFFICACY : MODEL_PUT_REQUEST, &d);
	json_decref(j);
	if (rc) {
		fprintf(stderr, "fuzz_core: relayed PUT %s refused: %s\n", m->path, d.text);
		abort();
	}
}

static void check_code(int code, const char *what)
{
	if (code < 201 || code > 599 || code % 100 > 31 ||
	    (code / 100 != 2 && code / 100 != 4 && code / 100 != 5)) {
		fprintf(stderr, "fuzz_core: %s with code %d\n", what, code);
		abort();
	}
}

/* Looks at every action of the last event, as io would carry them out. */
static void trace_action(const struct core_action *a)
{
	static const char *const names[] = {
		"REPLY", "NO_REPLY", "DN_SEND", "DN_CLOSE", "UP_OPEN", "UP_CLOSE",
		"UP_SEND",
	};

	fprintf(stderr, "    -> %s dn=%" PRIu64 " req=%" PRIu64 " up=%" PRIu64
		"%s code=%d %s%s len=%zu\n",
		(unsigned)a->type < 7 ? names[a->type] : "?", a->dn_sid,
		a->req_id, a->up_id, a->final ? " final" : "", a->msg.code,
		a->msg.path ? a->msg.path : "",
		a->msg.has_observe ? " observe" : "", a->msg.payload_len);
}

static void take_actions(struct run *r)
{
	for (size_t i = 0; i < r->out.n; i++) {
		struct core_action *a = &r->out.v[i];

		if (trace)
			trace_action(a);

		switch (a->type) {
		case CORE_ACT_REPLY:
		case CORE_ACT_NO_REPLY: {
			struct req_track *t;

			if (a->req_id == 0 || a->req_id > r->nreqs)
				fail("reply to a request never made");
			t = &r->reqs[a->req_id];
			if (t->answered)
				fail("second reply to one request");
			if (t->sid != a->dn_sid)
				fail("reply on another session");
			t->answered = true;
			if (a->type == CORE_ACT_REPLY) {
				check_code(a->msg.code, "REPLY");
				check_body(&a->msg, "REPLY");
			}
			break;
		}
		case CORE_ACT_DN_SEND: {
			struct dn_sent *d = &r->dn[r->dn_pos];

			if (a->dn_sid == 0 || a->dn_sid > MAX_SIDS || !r->live[a->dn_sid])
				fail("DN_SEND to a session that is not up");
			if (a->msg.token_len > CORE_TOKEN_MAX)
				fail("DN_SEND token too long");
			check_body(&a->msg, "DN_SEND");
			d->sid = a->dn_sid;
			memcpy(d->token, a->msg.token, a->msg.token_len);
			d->token_len = a->msg.token_len;
			r->dn_pos = (r->dn_pos + 1) % DN_RING;
			if (r->ndn < DN_RING)
				r->ndn++;
			break;
		}
		case CORE_ACT_DN_CLOSE:
			if (a->dn_sid == 0 || a->dn_sid > MAX_SIDS || !r->live[a->dn_sid])
				fail("DN_CLOSE of a session that is not up");
			r->live[a->dn_sid] = false;
			/* io closes it and libcoap reports the end: core_on_
			 * dn_session_down() again, after this loop. */
			if (r->nclosed < sizeof(r->closed) / sizeof(r->closed[0]))
				r->closed[r->nclosed++] = a->dn_sid;
			break;
		case CORE_ACT_UP_OPEN:
			if (a->upstream != &upstream)
				fail("UP_OPEN without the upstream");
			if (a->up_id == 0 || a->up_id >= MAX_UP_IDS)
				break; /* beyond what we track */
			if (r->up_state[a->up_id] == UP_IS_OPEN)
				fail("UP_OPEN of an open upstream session");
			if (r->up_state[a->up_id] == UP_IS_GONE)
				fail("UP_OPEN of an upstream id released for good");
			r->up_state[a->up_id] = UP_IS_OPEN;
			r->ups[r->ups_pos] = a->up_id;
			r->ups_pos = (r->ups_pos + 1) % UP_RING;
			if (r->nups < UP_RING)
				r->nups++;
			break;
		case CORE_ACT_UP_CLOSE:
			if (a->up_id == 0 || a->up_id >= MAX_UP_IDS)
				break;
			if (r->up_state[a->up_id] == UP_IS_GONE ||
			    r->up_state[a->up_id] == UP_IS_NEW)
				fail("UP_CLOSE of an upstream id not in use");
			/* core.h: only the final close may repeat one. */
			if (!a->final && r->up_state[a->up_id] != UP_IS_OPEN)
				fail("UP_CLOSE of a closed upstream session");
			r->up_state[a->up_id] = a->final ? UP_IS_GONE : UP_IS_CLOSED;
			break;
		case CORE_ACT_UP_SEND: {
			struct sent *s = &r->sent[r->sent_pos];

			if (a->up_id > 0 && a->up_id < MAX_UP_IDS &&
			    r->up_state[a->up_id] != UP_IS_OPEN)
				fail("UP_SEND on an upstream session that is not open");
			if (!a->msg.path || a->msg.token_len != 8)
				fail("UP_SEND without path or core token");
			check_body(&a->msg, "UP_SEND");
			if (a->msg.code == CORE_PUT)
				check_up_put(&a->msg);
			s->up_id = a->up_id;
			memcpy(s->token, a->msg.token, a->msg.token_len);
			s->token_len = a->msg.token_len;
			s->method = a->msg.code;
			s->kind = path_kind(a->msg.path);
			s->mid = path_mid(a->msg.path);
			r->sent_pos = (r->sent_pos + 1) % SENT_RING;
			if (r->nsent < SENT_RING)
				r->nsent++;
			break;
		}
		default:
			fail("unknown action type");
		}
	}
	core_actions_clear(&r->out);
	while (r->nclosed) {
		uint64_t sid = r->closed[--r->nclosed];

		core_on_dn_session_down(r->core, sid, r->now, &r->out);
		if (r->out.n)
			fail("actions from a session the core had closed itself");
	}
}

static void check_stats(struct run *r)
{
	struct core_stats st;
	size_t live = 0;

	core_get_stats(r->core, &st);
	for (int i = 1; i <= MAX_SIDS; i++)
		live += r->live[i];
	if (st.dn_sessions != live)
		fail("stats: downstream sessions differ");
	/* Map mode: at most one upstream session per client. */
	if (st.up_sessions > cfg.nclients || st.up_ready > st.up_sessions)
		fail("stats: upstream sessions");
}

/* Runs due timers as io does when its uv_timer fires. */
static void run_timers(struct run *r)
{
	for (int i = 0; i < 16 && core_next_expiry(r->core) <= r->now; i++) {
		core_on_expiry(r->core, r->now, &r->out);
		take_actions(r);
	}
	if (core_next_expiry(r->core) <= r->now)
		fail("a timer stays due after core_on_expiry()");
}

/* ---- events ------------------------------------------------------------------ */

/*
 * sel: bits 0-2 the newest UP_SEND of a kind: 0 any, 1 /config, 2
 * mitigation PUT, 3 mitigation GET (observe), 4 mitigation DELETE, 5 /hb
 * (the newest at all when there is none); 6, 7 by age, bits 3-7 (0 the
 * newest).
 */
static const struct sent *pick_sent(struct run *r, struct rd *in)
{
	uint8_t sel = rd_u8(in);
	static const char kinds[] = { 0, 'c', 'm', 'm', 'm', 'h', 0, 0 };
	static const int methods[] = { 0, 0, CORE_PUT, CORE_GET, CORE_DELETE, 0, 0, 0 };
	unsigned k = sel & 7;

	if (!r->nsent)
		return NULL;
	if (k >= 6) /* by age: 0 is the newest */
		return &r->sent[(r->sent_pos + SENT_RING - 1 - (sel >> 3) % r->nsent) % SENT_RING];
	/* The newest of a kind (and method), else the newest at all. */
	for (size_t i = 0; i < r->nsent; i++) {
		const struct sent *s = &r->sent[(r->sent_pos + SENT_RING - 1 - i) % SENT_RING];

		if ((!kinds[k] || s->kind == kinds[k]) &&
		    (!methods[k] || s->method == methods[k]))
			return s;
	}
	return &r->sent[(r->sent_pos + SENT_RING - 1) % SENT_RING];
}

static uint64_t pick_up(struct run *r, uint8_t sel)
{
	if (!r->nups || (sel & 0x80))
		return 1 + (sel & 3);
	return r->ups[(r->ups_pos + UP_RING - 1 - (sel & 3) % r->nups) % UP_RING];
}

static void ev_dn_up(struct run *r, struct rd *in)
{
	uint8_t b = rd_u8(in);
	uint64_t sid = 1 + (b & 3);
	unsigned who = (b >> 2) % 3;
	struct core_dn_info info = {
		.transport = (b >> 4) & 3,
		.client = who < 2 ? &clients[who] : NULL,
		.cdid = who < 2 && !(b & 0x40) ? cdids[who] : NULL,
		.peer = b & 0x80 ? NULL : "192.0.2.7",
	};
	int rc = core_on_dn_session(r->core, sid, &info, r->now, &r->out);

	if (rc == 0) {
		if (r->live[sid])
			fail("session accepted twice");
		r->live[sid] = true;
	} else if (rc != DG_EEXIST || !r->live[sid]) {
		fail("core_on_dn_session failed");
	}
}

static void ev_dn_down(struct run *r, struct rd *in)
{
	uint64_t sid = 1 + (rd_u8(in) & 3);

	core_on_dn_session_down(r->core, sid, r->now, &r->out);
	r->live[sid] = false;
}

/*
 * f: bits 0-1 sid-1, 2-3 method-1, 0x10 Observe, 0x20 Observe=1,
 *    0x40 If-Match, 0x80 an option byte x follows.
 * x: 0x01 If-Match not empty, 0x06 both: an unknown critical option,
 *    0x08 CON, 0x10 Hop-Limit (a value byte follows; 0x20 adds 256),
 *    0x40 one-byte token, 0x80 a byte y follows.
 * y: bits 0-1 Content-Format (0 271 with a body, 1 none, 2 60, 3 271
 *    even without a body), bits 2-4 the one-byte token.
 * p: bits 0-5 path (48-63: length byte and bytes from the input),
 *    0x40 one Uri-Query, 0x80 a second one (q: table index, or >= 0xf0:
 *    length byte and bytes).
 * b: < 0x40 no body, 0x40-0x7f a request template, >= 0x80 a 16-bit
 *    length (11 bits used) and bytes.
 */
static void ev_dn_request(struct run *r, struct rd *in)
{
	uint8_t f = rd_u8(in), x = 0, y = 0, psel, bsel;
	struct core_request q;
	struct segs segs;
	const char *query[2];
	char qbuf[2][128];
	size_t n;

	memset(&q, 0, sizeof(q));
	q.dn_sid = 1 + (f & 3);
	q.method = (enum core_method)(1 + ((f >> 2) & 3));
	if (f & 0x80)
		x = rd_u8(in);
	if (x & 0x80)
		y = rd_u8(in);
	q.has_observe = f & 0x10;
	q.observe = (f & 0x20) ? 1 : 0;
	q.has_if_match = f & 0x40;
	q.if_match_empty = !(x & 0x01);
	q.unknown_critical = (x & 0x06) == 0x06;
	q.confirmable = x & 0x08;
	if (x & 0x10) {
		q.has_hop_limit = true;
		q.hop_limit = rd_u8(in) | ((x & 0x20) ? 0x100u : 0);
	}
	/* Tokens from a small space so that deregistration and RSTs can
	 * name an earlier observation; else one per request. */
	if (x & 0x40) {
		q.token[0] = (uint8_t)((y >> 2) & 7);
		q.token_len = 1;
	} else {
		uint32_t id = (uint32_t)r->nreqs + 1;

		memcpy(q.token, &id, 4);
		q.token_len = 4;
	}

	psel = rd_u8(in);
	if ((psel & 0x3f) < 48) {
		const char *p = path_tab[(psel & 0x3f) % N_PATH];

		split_path(p, strlen(p), &segs);
	} else {
		const uint8_t *p = rd_bytes(in, rd_u8(in), &n);

		split_path((const char *)p, n, &segs);
	}
	q.path = segs.ptr;
	q.npath = segs.n;

	for (size_t i = 0; i < 2 && (psel & (0x40 << i)); i++) {
		uint8_t s = rd_u8(in);

		if (s < 0xf0) {
			snprintf(qbuf[i], sizeof(qbuf[i]), "%s", query_tab[s % N_QUERY]);
		} else {
			const uint8_t *p = rd_bytes(in, rd_u8(in) & 0x7f, &n);

			memcpy(qbuf[i], p, n);
			qbuf[i][n] = '\0';
		}
		query[i] = qbuf[i];
		q.nquery = i + 1;
	}
	q.query = q.nquery ? query : NULL;

	bsel = rd_u8(in);
	if (bsel >= 0x40 && bsel < 0x80) {
		q.body = req_body[(bsel - 0x40) % N_REQ].b;
		q.body_len = req_body[(bsel - 0x40) % N_REQ].n;
	} else if (bsel >= 0x80) {
		q.body = rd_bytes(in, rd_u16(in) & 0x7ff, &q.body_len);
	}
	switch (y & 3) {
	case 0:
		q.has_content_format = q.body_len > 0;
		q.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		break;
	case 1:
		break;
	case 2:
		q.has_content_format = true;
		q.content_format = 60;
		break;
	case 3:
		q.has_content_format = true;
		q.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		break;
	}
	if (r->nreqs >= MAX_EVENTS)
		return;
	q.req_id = ++r->nreqs;
	r->reqs[q.req_id].sid = q.dn_sid;
	r->reqs[q.req_id].answered = false;
	core_on_dn_request(r->core, &q, r->now, &r->out);
}

static void ev_up_event(struct run *r, struct rd *in)
{
	uint8_t b = rd_u8(in);
	static const enum core_up_event evs[4] = {
		CORE_UP_CONNECTED, CORE_UP_CONNECTED, CORE_UP_FAILED, CORE_UP_CLOSED,
	};

	core_on_up_event(r->core, pick_up(r, b), evs[(b >> 2) & 3], r->now, &r->out);
}

static uint8_t *rsp_template(unsigned k, uint32_t mid, size_t *len)
{
	json_t *j = json_deep_copy(rsp_model[k % N_RSP]);
	json_t *scope = json_object_get(json_object_get(j, CBOR_MSG_MITIGATION),
					"scope");
	uint8_t *buf = NULL;

	*len = 0;
	if (!j)
		return NULL;
	for (size_t i = 0; i < json_array_size(scope); i++) {
		json_t *e = json_array_get(scope, i);

		if (json_object_get(e, "mid"))
			json_object_set_new(e, "mid", json_integer((json_int_t)mid + (json_int_t)i));
	}
	if (cbor_encode(j, &buf, len, NULL) == DG_EINVAL)
		fail("response template does not encode");
	json_decref(j);
	return buf;
}

/*
 * f: 0x01 Observe (0x02: value 0, else a growing sequence number),
 *    0x04 Max-Age (0x08: 0, else 60), bits 4-5 Content-Format (0: 271
 *    with a template body, 1 none, 2 60, 3 271), 0x80 another up id.
 * c: index into rsp_codes. Then pick_sent()'s selector (with no UP_SEND
 *    yet: 8 token bytes), then a body selector b: < 0x20 none, 0x20-0x3f
 *    a diagnostic text, 0x40-0x7f a response template, >= 0x80 a 16-bit
 *    length (11 bits used) and bytes.
 */
static void ev_up_response(struct run *r, struct rd *in)
{
	uint8_t f = rd_u8(in), c = rd_u8(in), bsel;
	const struct sent *s = pick_sent(r, in);
	struct core_response rsp;
	uint8_t *owned = NULL;

	memset(&rsp, 0, sizeof(rsp));
	if (s) {
		rsp.up_id = s->up_id + ((f & 0x80) ? 1 : 0);
		memcpy(rsp.token, s->token, s->token_len);
		rsp.token_len = s->token_len;
	} else {
		size_t n;
		const uint8_t *t = rd_bytes(in, 8, &n);

		rsp.up_id = 1;
		memcpy(rsp.token, t, n);
		rsp.token_len = n;
	}
	rsp.code = rsp_codes[c % N_CODES];
	if (f & 0x01) {
		rsp.has_observe = true;
		rsp.observe = (f & 0x02) ? 0 : ++r->observe_seq;
	}
	if (f & 0x04) {
		rsp.has_max_age = true;
		rsp.max_age = (f & 0x08) ? 0 : 60;
	}
	bsel = rd_u8(in);
	if (bsel >= 0x40 && bsel < 0x80) {
		owned = rsp_template(bsel - 0x40, s ? s->mid : 1, &rsp.body_len);
		rsp.body = owned;
	} else if (bsel >= 0x80) {
		rsp.body = rd_bytes(in, rd_u16(in) & 0x7ff, &rsp.body_len);
	} else if (bsel >= 0x20) {
		rsp.body = (const uint8_t *)"gw-other \x01\xff";
		rsp.body_len = 11;
	}
	switch ((f >> 4) & 3) {
	case 0: /* what a DOTS server sends: 271 with a CBOR body */
		rsp.has_content_format = rsp.body_len && bsel >= 0x40;
		rsp.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		break;
	case 1:
		break;
	case 2:
		rsp.has_content_format = true;
		rsp.content_format = 60;
		break;
	case 3:
		rsp.has_content_format = true;
		rsp.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		break;
	}
	core_on_up_response(r->core, &rsp, r->now, &r->out);
	free(owned);
}

/*
 * b: 0x01 clear: a nack of pick_sent()'s choice. 0x01 set: a request
 * from the upstream: 0x02 to /hb (else path_tab[b >> 2]), 0x80 GET (else
 * PUT); then a body selector (< 0x80 request template, else a length
 * byte and bytes) and pick_up()'s selector.
 */
static void ev_up_nack_or_request(struct run *r, struct rd *in)
{
	uint8_t b = rd_u8(in);

	if (!(b & 1)) {
		const struct sent *s = pick_sent(r, in);

		if (s)
			core_on_up_nack(r->core, s->up_id, s->token, s->token_len,
					r->now, &r->out);
		return;
	}
	/* The upstream server's own heartbeat (RFC 9132 §4.7). */
	struct core_request q;
	struct segs segs;
	const char *p = (b & 2) ? "/.well-known/dots/hb" : path_tab[(b >> 2) % N_PATH];
	uint8_t bsel = rd_u8(in);
	int code;

	memset(&q, 0, sizeof(q));
	split_path(p, strlen(p), &segs);
	q.path = segs.ptr;
	q.npath = segs.n;
	q.method = (b & 0x80) ? CORE_GET : CORE_PUT;
	q.token_len = 2;
	if (bsel < 0x80) {
		q.body = req_body[bsel % N_REQ].b;
		q.body_len = req_body[bsel % N_REQ].n;
	} else {
		q.body = rd_bytes(in, rd_u8(in), &q.body_len);
	}
	q.has_content_format = q.body_len > 0;
	q.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
	code = core_on_up_request(r->core, pick_up(r, rd_u8(in)), &q, r->now, &r->out);
	/* core.h: 204, or 400/404/405 (500: no such session). */
	if (code != 204 && code != 400 && code != 404 && code != 405 && code != 500)
		fail("core_on_up_request code");
}

static void ev_time(struct run *r, struct rd *in)
{
	uint8_t b = rd_u8(in);

	/* 0..10.2 s in 40 ms steps; 255 jumps 10 min (lifetimes, backoff). */
	r->now += b == 255 ? 600000 : (dg_time_ms)b * 40;
	run_timers(r);
}

static void ev_dn_response(struct run *r, struct rd *in)
{
	uint8_t b = rd_u8(in);
	static const int codes[4] = { 0, 204, 400, 404 };

	if (r->ndn && !(b & 0x80)) {
		const struct dn_sent *d = &r->dn[(r->dn_pos + DN_RING - 1 -
						   (b >> 2 & 7) % r->ndn) % DN_RING];

		core_on_dn_response(r->core, d->sid, d->token, d->token_len,
				    codes[b & 3], r->now, &r->out);
	} else {
		uint8_t t = rd_u8(in);

		core_on_dn_response(r->core, 1 + (t & 3), &t, 1, codes[b & 3],
				    r->now, &r->out);
	}
}

static const char *const event_names[10] = {
	"dn session up", "dn session down", "dn request", "dn request",
	"upstream event", "upstream response", "upstream response",
	"upstream nack or request", "time", "dn response",
};

/* ---- driver ------------------------------------------------------------------ */

static void log_sink(enum dg_log_level level, const char *group,
		     const char *msg, void *arg)
{
	(void)arg;
	if (trace)
		fprintf(stderr, "    log %s %s: %s\n", dg_log_level_name(level),
			group, msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	json_object_seed(1);
	trace = getenv("DOTSGW_FUZZ_TRACE") != NULL;
	/* Every log line is formatted (and so checked by the sanitizers),
	 * then dropped. */
	dg_log_set_hook(log_sink, NULL);
	dg_log_set_level(DG_LOG_DEBUG);
	setup_fixture();
	for (size_t i = 0; i < N_REQ; i++) {
		json_error_t err;
		json_t *j = json_loads(req_json[i], 0, &err);

		if (!j) {
			fprintf(stderr, "fuzz_core: request template %zu: %s\n", i, err.text);
			abort();
		}
		if (cbor_encode(j, &req_body[i].b, &req_body[i].n, NULL))
			fail("request template does not encode");
		json_decref(j);
	}
	for (size_t k = 0; k < N_RSP; k++) {
		json_error_t err;
		size_t n;

		rsp_model[k] = json_loads(rsp_json[k], 0, &err);
		if (!rsp_model[k]) {
			fprintf(stderr, "fuzz_core: response template %zu: %s\n", k, err.text);
			abort();
		}
		free(rsp_template(k, 1, &n));
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd in = { data, size };
	struct run *r = calloc(1, sizeof(*r));
	uint8_t setup;
	size_t nup, ndn;

	if (!r)
		return 0;
	setup = rd_u8(&in);
	cfg.server_domain = setup & 1;
	upstream.transport = (setup & 2) ? GW_TR_TLS : GW_TR_DTLS;
	r->now = START_MS;
	r->core = core_new(&cfg, 42 + (setup >> 2));
	if (!r->core) {
		free(r);
		return 0;
	}

	for (int ev = 0; ev < MAX_EVENTS && in.n; ev++) {
		uint8_t op = rd_u8(&in) % 10;

		if (trace)
			fprintf(stderr, "event %d: %s at +%" PRIu64 " ms\n", ev,
				event_names[op], r->now - START_MS);
		switch (op) {
		case 0: ev_dn_up(r, &in); break;
		case 1: ev_dn_down(r, &in); break;
		case 2:
		case 3: ev_dn_request(r, &in); break;
		case 4: ev_up_event(r, &in); break;
		case 5:
		case 6: ev_up_response(r, &in); break;
		case 7: ev_up_nack_or_request(r, &in); break;
		case 8: ev_time(r, &in); break;
		case 9: ev_dn_response(r, &in); break;
		}
		take_actions(r);
		if (ev % 8 == 7)
			check_stats(r);
	}
	check_stats(r);

	/* Past every request deadline: each request has had its answer
	 * (a 5.04 at the latest, core.h). */
	r->now += (dg_time_ms)cfg.request_timeout * 1000;
	run_timers(r);
	r->now += 1000;
	run_timers(r);
	for (uint64_t id = 1; id <= r->nreqs; id++)
		if (!r->reqs[id].answered)
			fail("request never answered");
	check_stats(r);

	/* Shutdown closes every session the core holds, once. */
	struct core_stats st;
	core_get_stats(r->core, &st);
	core_shutdown(r->core, &r->out);
	nup = ndn = 0;
	for (size_t i = 0; i < r->out.n; i++) {
		nup += r->out.v[i].type == CORE_ACT_UP_CLOSE;
		ndn += r->out.v[i].type == CORE_ACT_DN_CLOSE;
	}
	if (nup != st.up_sessions || ndn != st.dn_sessions || nup + ndn != r->out.n)
		fail("core_shutdown actions");
	core_actions_free(&r->out);
	core_free(r->core);
	free(r);
	return 0;
}
