/*
 * dots-test-client: a scripted downstream DOTS client (RFC 9132 signal
 * channel) for dotsgw's integration tests and demo.
 *
 * It opens ONE session, runs the steps of a JSON script in order, prints
 * every response and notification as a JSON line on stdout, and answers
 * the heartbeats the server side sends (RFC 9132 §4.7). See usage().
 *
 * Exit status: 0 all steps completed, 3 a step timed out (or its session
 * went down), 2 bad arguments or script, 1 setup failure, 4 interrupted.
 */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "cbor.h"
#include "peer_common.h"

#define CLI_MAX_STEPS 10000
#define CLI_MAX_SLEEP_MS 3600000 /* one hour: anything longer is a typo */
#define CLI_POLL_MS 100          /* longest single wait in the loop */
/* NON repetition (RFC 9132 §4.4.1): one per 3 s without an RTT estimate;
 * with one, one per RTO, never below RFC 6298's 1 s minimum RTO. */
#define CLI_NON_NO_RTT_MS 3000
#define CLI_NON_MIN_MS 1000
#define CLI_REPEAT_AUTO UINT32_MAX

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct cli_step {
	json_t *def;             /* the step object (borrowed from script) */
	bool is_sleep;
	uint32_t sleep_ms;
	bool is_wait_stdin;      /* {"wait_stdin":MS}: until a line on stdin */
	coap_pdu_code_t method;
	const char *path;
	int64_t observe;         /* -1: no Observe option */
	bool cancel_observe;
	size_t observe_step;     /* cancel_observe: the step observed */
	uint32_t wait_notifications;
	uint32_t wait_ms;
	json_t *until;           /* borrowed */

	/* run time */
	bool sent;
	uint8_t token[8];
	size_t token_len;
	bool awaiting;           /* request sent, no response yet */
	bool responded;
	bool failed;             /* NACK or session down */
	const char *fail_reason;
	bool observing;          /* 2.xx with Observe: notifications follow */
	uint32_t tries;          /* transmissions of the request */
	uint64_t first_sent_ms, next_repeat_ms;
	uint32_t notifications;
	bool until_met;
	coap_pdu_type_t type;

	/* A Block2 transfer in progress (RFC 7959 §2.4, §2.6). */
	struct cli_blk {
		bool active;
		bool notification;  /* assembling a notification */
		uint8_t token[8];   /* of the follow-up GET */
		size_t token_len;
		uint32_t next;      /* block number asked for */
		unsigned szx;
		coap_pdu_code_t code;
		int64_t observe, max_age, cf;
		uint8_t *buf;
		size_t len;
	} blk;
};

struct cli_opts {
	char host[PEER_HOST_MAX];
	uint16_t port;
	coap_proto_t proto;
	struct peer_creds creds;
	const char *script;
	uint32_t timeout_ms;
	int coap_log_level;
	bool follow_redirect;
	uint32_t repeat_ms;      /* NON repetition: 0 off, CLI_REPEAT_AUTO */
	uint32_t ack_timeout_ms; /* CON (RFC 7252 §4.8); 0: libcoap's */
	int max_retransmit;      /* -1: libcoap's */
};

struct cli {
	struct cli_opts o;
	coap_context_t *ctx;
	coap_session_t *session;
	json_t *script;
	struct cli_step *steps;
	size_t nsteps;
	bool session_down;
	char sni[PEER_HOST_MAX];
	int exit_code;
	/* A 5.03 redirection (RFC 9132 §4.6) to follow at the next turn of
	 * the loop (not from inside libcoap's handler). */
	bool redirect_pending;
	char redirect_to[64];
	/* RTT estimate (RFC 6298 §2), in ms, from unambiguous samples. */
	bool has_rtt;
	double srtt, rttvar;
};

/* libcoap 4.3.1 handlers carry no user pointer. */
static struct cli *cli_g;

/* ---- output -------------------------------------------------------------- */

/* Every event carries when it happened: CLOCK_MONOTONIC (comparable with
 * the test's own monotonic clock) and wall-clock time, in ms. */
static json_t *cli_event(const char *name)
{
	json_t *ev = json_object();
	struct timespec ts;

	if (ev && json_object_set_new(ev, "event", json_string(name))) {
		json_decref(ev);
		return NULL;
	}
	if (ev) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		json_object_set_new(ev, "mono_ms", json_real(
			(double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6));
		clock_gettime(CLOCK_REALTIME, &ts);
		json_object_set_new(ev, "wall_ms", json_real(
			(double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6));
	}
	return ev;
}

static void cli_emit_timeout(size_t step, const char *reason)
{
	json_t *ev = cli_event("timeout");

	if (ev) {
		json_object_set_new(ev, "step", json_integer((json_int_t)step));
		if (reason)
			json_object_set_new(ev, "reason", json_string(reason));
	}
	peer_emit(ev);
	cli_g->exit_code = 3;
}

/* A received message, possibly reassembled from Block2 slices. */
struct cli_msg {
	coap_pdu_code_t code;
	int64_t observe, max_age, cf;
	const uint8_t *data;
	size_t len;
};

static void cli_msg_from_pdu(const coap_pdu_t *pdu, struct cli_msg *m)
{
	m->code = coap_pdu_get_code(pdu);
	m->observe = peer_opt_uint(pdu, COAP_OPTION_OBSERVE);
	m->max_age = peer_opt_uint(pdu, COAP_OPTION_MAXAGE);
	m->cf = peer_opt_uint(pdu, COAP_OPTION_CONTENT_FORMAT);
	m->data = NULL;
	m->len = 0;
	coap_get_data(pdu, &m->len, &m->data);
}

/* Prints a received response or notification; returns its decoded body
 * (new reference, JSON null when there is none). */
static json_t *cli_emit_message(const char *event, size_t step, bool late,
				const struct cli_msg *m)
{
	char cs[8];
	json_t *ev = cli_event(event), *body;

	if (!ev)
		return NULL;
	json_object_set_new(ev, "step", json_integer((json_int_t)step));
	json_object_set_new(ev, "code", json_string(peer_code_str(m->code,
								   cs)));
	json_object_set_new(ev, "observe", m->observe >= 0 ?
			    json_integer(m->observe) : json_null());
	json_object_set_new(ev, "max_age", m->max_age >= 0 ?
			    json_integer(m->max_age) : json_null());
	json_object_set_new(ev, "content_format", m->cf >= 0 ?
			    json_integer(m->cf) : json_null());
	peer_describe_payload(ev, m->data, m->len, m->cf,
			      COAP_RESPONSE_CLASS(m->code));
	if (late)
		json_object_set_new(ev, "late", json_true());
	body = json_incref(json_object_get(ev, "body"));
	peer_emit(ev);
	if (m->code == COAP_RESPONSE_CODE(503) && cli_g && cli_g->o.follow_redirect) {
		json_t *rs = json_object_get(body, CBOR_MSG_REDIRECT);
		const char *to = json_string_value(json_array_get(
			json_object_get(rs, "alt-server-record"), 0));
		if (to && strlen(to) < sizeof(cli_g->redirect_to)) {
			snprintf(cli_g->redirect_to, sizeof(cli_g->redirect_to), "%s", to);
			cli_g->redirect_pending = true;
		}
	}
	return body;
}

/* ---- matching ------------------------------------------------------------ */

/* True when one scope entry of `body` has every member of `until`. */
static bool cli_until_matches(json_t *until, json_t *body)
{
	json_t *scope, *entry, *want;
	const char *key;
	size_t i;

	if (!until || !body)
		return false;
	scope = json_object_get(json_object_get(body, CBOR_MSG_MITIGATION),
				"scope");
	json_array_foreach(scope, i, entry) {
		bool all = true;

		json_object_foreach(until, key, want) {
			if (!json_equal(json_object_get(entry, key), want)) {
				all = false;
				break;
			}
		}
		if (all)
			return true;
	}
	return false;
}

static bool cli_token_eq(const uint8_t *t, size_t len, coap_bin_const_t tok)
{
	return len == tok.length && memcmp(t, tok.s, len) == 0;
}

/* The latest sent step using this token. */
static struct cli_step *cli_step_by_token(struct cli *c,
					  coap_bin_const_t token, size_t *idx)
{
	for (size_t i = c->nsteps; i-- > 0;) {
		struct cli_step *s = &c->steps[i];

		if (s->sent && cli_token_eq(s->token, s->token_len, token)) {
			*idx = i;
			return s;
		}
	}
	return NULL;
}

/* An RTT sample (RFC 6298 §2: alpha 1/8, beta 1/4). Karn's rule: only
 * from a request sent once; a CON that libcoap may have retransmitted
 * (answered after its first ACK timeout) gives none either. */
static void cli_rtt_sample(struct cli *c, const struct cli_step *s)
{
	uint64_t now = peer_now_ms();
	uint32_t ack_ms = c->o.ack_timeout_ms ? c->o.ack_timeout_ms : 2000;
	double r;

	if (s->tries != 1 || now < s->first_sent_ms)
		return;
	r = (double)(now - s->first_sent_ms);
	if (s->type == COAP_MESSAGE_CON && r >= ack_ms)
		return;
	if (!c->has_rtt) {
		c->srtt = r;
		c->rttvar = r / 2;
		c->has_rtt = true;
		return;
	}
	c->rttvar = 0.75 * c->rttvar + 0.25 * (c->srtt > r ? c->srtt - r :
						r - c->srtt);
	c->srtt = 0.875 * c->srtt + 0.125 * r;
}

/* When to repeat an unanswered NON request (RFC 9132 §4.4.1). */
static uint32_t cli_repeat_interval(const struct cli *c)
{
	double rto;

	if (c->o.repeat_ms != CLI_REPEAT_AUTO)
		return c->o.repeat_ms;
	if (!c->has_rtt)
		return CLI_NON_NO_RTT_MS;
	rto = c->srtt + (4 * c->rttvar > CLI_POLL_MS ? 4 * c->rttvar :
			 CLI_POLL_MS);
	return rto < CLI_NON_MIN_MS ? CLI_NON_MIN_MS : (uint32_t)rto;
}

/* The response to step idx. */
static void cli_deliver_response(struct cli *c, size_t idx,
				 const struct cli_msg *m)
{
	struct cli_step *s = &c->steps[idx];
	json_t *body;

	if (s->awaiting)
		cli_rtt_sample(c, s);

	/* After a timeout event, a response is reported as late. */
	body = cli_emit_message("response", idx, !s->awaiting, m);
	s->awaiting = false;
	s->responded = true;
	if (s->cancel_observe)
		c->steps[s->observe_step].observing = false;
	else if (m->observe >= 0 && s->observe == 0 &&
		 COAP_RESPONSE_CLASS(m->code) == 2)
		s->observing = true;
	if (cli_until_matches(s->until, body))
		s->until_met = true;
	json_decref(body);
}

/* A notification of the observation of step idx. Returns false when we
 * do not (or no longer) want it. */
static bool cli_deliver_notification(struct cli *c, size_t idx,
				     const struct cli_msg *m)
{
	struct cli_step *s = &c->steps[idx];
	json_t *body = cli_emit_message("notification", idx, false, m);

	if (!s->observing) {
		json_decref(body);
		return false;
	}
	s->notifications++;
	if (cli_until_matches(s->until, body))
		s->until_met = true;
	/* RFC 7641 §3.2: a non-2.xx notification ends the observation. */
	if (COAP_RESPONSE_CLASS(m->code) != 2)
		s->observing = false;
	json_decref(body);
	return true;
}

static int cli_block_request(struct cli *c, struct cli_step *s);

static void cli_blk_reset(struct cli_blk *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

#define CLI_BLK_MAX (1024 * 1024) /* largest body we reassemble */

/*
 * Block2 (RFC 7959): a message with Block2 M=1 starts a transfer; its
 * follow-up GETs carry their own token. Returns true when the message was
 * taken (the caller delivers nothing yet), with *done set when the
 * transfer is complete and s->blk holds the whole body.
 */
static bool cli_blk_take(struct cli *c, struct cli_step *s,
			 const coap_pdu_t *pdu, bool notification,
			 bool continuation, bool *done)
{
	struct cli_blk *b = &s->blk;
	int64_t v = peer_opt_uint(pdu, COAP_OPTION_BLOCK2);
	const uint8_t *data = NULL;
	size_t len = 0, off;
	uint8_t *nb;
	uint32_t num;
	bool more;

	*done = false;
	if (v < 0)
		return false;
	num = (uint32_t)(v >> 4);
	more = v & 8;
	if (!continuation) {
		if (num != 0 || !more)
			return false; /* a lone block: deliver as is */
		cli_blk_reset(b);
		b->active = true;
		b->notification = notification;
		b->code = coap_pdu_get_code(pdu);
		b->observe = peer_opt_uint(pdu, COAP_OPTION_OBSERVE);
		b->max_age = peer_opt_uint(pdu, COAP_OPTION_MAXAGE);
		b->cf = peer_opt_uint(pdu, COAP_OPTION_CONTENT_FORMAT);
		b->szx = (unsigned)(v & 7) > 6 ? 6 : (unsigned)(v & 7);
	} else if (num != b->next ||
		   COAP_RESPONSE_CLASS(coap_pdu_get_code(pdu)) != 2) {
		peer_log("block transfer broken (block %u, wanted %u)", num,
			 b->next);
		cli_blk_reset(b);
		return true;
	}
	coap_get_data(pdu, &len, &data);
	off = b->len;
	if (len > CLI_BLK_MAX - off) {
		peer_log("block transfer too large");
		cli_blk_reset(b);
		return true;
	}
	nb = realloc(b->buf, off + len + 1);
	if (!nb) {
		cli_blk_reset(b);
		return true;
	}
	b->buf = nb;
	if (len)
		memcpy(b->buf + off, data, len);
	b->len = off + len;
	if (!more) {
		*done = true;
		return true;
	}
	b->next = num + 1;
	if (cli_block_request(c, s))
		cli_blk_reset(b);
	return true;
}

static coap_response_t cli_on_response(coap_session_t *session,
				       const coap_pdu_t *sent,
				       const coap_pdu_t *received,
				       const coap_mid_t id)
{
	struct cli *c = cli_g;
	coap_bin_const_t token = coap_pdu_get_token(received);
	bool has_obs = peer_opt_present(received, COAP_OPTION_OBSERVE);
	struct cli_step *s = NULL;
	struct cli_msg m;
	bool done, notif;
	size_t idx = 0;
	json_t *ev;

	(void)session;
	(void)sent;
	(void)id;
	/* A slice of a Block2 transfer we asked for. */
	for (size_t i = 0; i < c->nsteps && !s; i++) {
		struct cli_blk *b = &c->steps[i].blk;

		if (b->active && cli_token_eq(b->token, b->token_len, token)) {
			s = &c->steps[i];
			idx = i;
		}
	}
	if (s) {
		cli_blk_take(c, s, received, false, true, &done);
		if (done) {
			m = (struct cli_msg){ s->blk.code, s->blk.observe,
					      s->blk.max_age, s->blk.cf,
					      s->blk.buf, s->blk.len };
			notif = s->blk.notification;
			if (notif)
				cli_deliver_notification(c, idx, &m);
			else if (!s->responded)
				cli_deliver_response(c, idx, &m);
			cli_blk_reset(&s->blk);
		}
		return COAP_RESPONSE_OK;
	}
	s = cli_step_by_token(c, token, &idx);
	if (!s && !has_obs) {
		/* A late slice of an abandoned Block2 transfer. */
		peer_log("ignoring a response with an unknown token");
		return COAP_RESPONSE_OK;
	}
	if (!s) {
		char cs[8];

		ev = cli_event("notification");
		if (ev) {
			json_object_set_new(ev, "step", json_null());
			json_object_set_new(ev, "code", json_string(
				peer_code_str(coap_pdu_get_code(received),
					      cs)));
			json_object_set_new(ev, "unknown_token", json_true());
		}
		peer_emit(ev);
		return COAP_RESPONSE_FAIL; /* RFC 7641 §3.6: RST it */
	}
	/* A cancel step shares its token with the observe step: a message
	 * with Observe is still a notification of that observation. */
	if (s->cancel_observe &&
	    ((has_obs && c->steps[s->observe_step].observing) ||
	     s->responded)) {
		idx = s->observe_step;
		s = &c->steps[idx];
		notif = true;
	} else {
		notif = s->responded;
	}
	/* A repeated request gets an answer per copy that arrives (and the
	 * network may duplicate one): the first counted, the rest noted. */
	if (notif && !s->observing && !has_obs && c->o.repeat_ms) {
		ev = cli_event("duplicate");
		if (ev) {
			char cs[8];

			json_object_set_new(ev, "step",
					    json_integer((json_int_t)idx));
			json_object_set_new(ev, "code", json_string(
				peer_code_str(coap_pdu_get_code(received),
					      cs)));
		}
		peer_emit(ev);
		return COAP_RESPONSE_OK;
	}
	if (notif && !s->observing) {
		cli_msg_from_pdu(received, &m);
		cli_deliver_notification(c, idx, &m);
		return COAP_RESPONSE_FAIL; /* not (or no longer) wanted */
	}
	if (cli_blk_take(c, s, received, notif, false, &done))
		return COAP_RESPONSE_OK;
	cli_msg_from_pdu(received, &m);
	if (notif)
		cli_deliver_notification(c, idx, &m);
	else
		cli_deliver_response(c, idx, &m);
	return COAP_RESPONSE_OK;
}

static void cli_on_nack(coap_session_t *session, const coap_pdu_t *sent,
			const coap_nack_reason_t reason, const coap_mid_t id)
{
	static const char *const names[] = {
		"too many retries", "not deliverable", "RST", "TLS failed",
		"ICMP issue",
	};
	struct cli *c = cli_g;
	struct cli_step *s;
	size_t idx;

	(void)session;
	(void)id;
	if (!sent)
		return;
	s = cli_step_by_token(c, coap_pdu_get_token(sent), &idx);
	if (s && s->awaiting) {
		s->failed = true;
		s->fail_reason = (unsigned)reason < ARRAY_SIZE(names) ?
				 names[reason] : "nack";
	}
}

static int cli_on_event(coap_session_t *session, const coap_event_t event)
{
	struct cli *c = cli_g;

	(void)session;
	switch (event) {
	case COAP_EVENT_DTLS_CLOSED:
	case COAP_EVENT_TCP_CLOSED:
	case COAP_EVENT_SESSION_CLOSED:
	case COAP_EVENT_DTLS_ERROR:
	case COAP_EVENT_TCP_FAILED:
	case COAP_EVENT_SESSION_FAILED:
		peer_log("session down (event 0x%04x)", (unsigned)event);
		c->session_down = true;
		break;
	case COAP_EVENT_DTLS_CONNECTED:
	case COAP_EVENT_TCP_CONNECTED:
	case COAP_EVENT_SESSION_CONNECTED:
		peer_log("session up (event 0x%04x)", (unsigned)event);
		break;
	default:
		break;
	}
	return 0;
}

/* PUT /.well-known/dots/hb from the server side (RFC 9132 §4.7). */
static void cli_on_hb(coap_resource_t *resource, coap_session_t *session,
		      const coap_pdu_t *request, const coap_string_t *query,
		      coap_pdu_t *response)
{
	int64_t cf = peer_opt_uint(request, COAP_OPTION_CONTENT_FORMAT);
	const uint8_t *data = NULL;
	size_t len = 0;
	json_t *ev = cli_event("hb-received");

	(void)resource;
	(void)query;
	coap_get_data(request, &len, &data);
	if (ev) {
		json_object_set_new(ev, "type", json_string(
			COAP_PROTO_RELIABLE(coap_session_get_proto(session)) ?
			"tcp" : coap_pdu_get_type(request) == COAP_MESSAGE_CON ?
			"con" : "non"));
		peer_describe_payload(ev, data, len, cf, 0);
		json_object_del(ev, "diagnostic");
	}
	peer_emit(ev);
	coap_pdu_set_code(response, COAP_RESPONSE_CODE(204));
}

/* ---- script -------------------------------------------------------------- */

static const char *const cli_step_keys[] = {
	"method", "path", "body", "body_hex", "content_format", "observe",
	"if_match", "hop_limit", "type", "wait_notifications", "wait_ms",
	"until", "cancel_observe", "sleep_ms", "comment", "wait_stdin",
};

static int cli_get_u32(json_t *step, const char *key, uint32_t max,
		       uint32_t *out, size_t i)
{
	json_t *v = json_object_get(step, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)max) {
		peer_log("step %zu: %s must be an integer 0..%u", i, key, max);
		return -1;
	}
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* Checks one step and fills in what does not change at run time. */
static int cli_parse_step(struct cli *c, size_t i)
{
	struct cli_step *s = &c->steps[i];
	json_t *d = s->def, *v;
	const char *key, *m;
	bool known;

	if (!json_is_object(d)) {
		peer_log("step %zu: not an object", i);
		return -1;
	}
	json_object_foreach(d, key, v) {
		known = false;
		for (size_t k = 0; k < ARRAY_SIZE(cli_step_keys); k++)
			known = known || strcmp(key, cli_step_keys[k]) == 0;
		if (!known) {
			peer_log("step %zu: unknown key \"%s\"", i, key);
			return -1;
		}
	}
	if (json_object_get(d, "sleep_ms")) {
		s->is_sleep = true;
		return cli_get_u32(d, "sleep_ms", CLI_MAX_SLEEP_MS,
				   &s->sleep_ms, i);
	}
	if (json_object_get(d, "wait_stdin")) {
		s->is_wait_stdin = true;
		return cli_get_u32(d, "wait_stdin", CLI_MAX_SLEEP_MS,
				   &s->sleep_ms, i);
	}
	s->observe = -1;
	s->cancel_observe = json_is_true(json_object_get(d, "cancel_observe"));
	if (s->cancel_observe) {
		/* RFC 7641 §3.6: GET, Observe 1, the observation's token. */
		size_t j = i;

		while (j-- > 0)
			if (!c->steps[j].is_sleep && !c->steps[j].is_wait_stdin &&
			    c->steps[j].observe == 0 &&
			    !c->steps[j].cancel_observe)
				break;
		if (j == (size_t)-1) {
			peer_log("step %zu: cancel_observe without an earlier "
				 "observe step", i);
			return -1;
		}
		s->observe_step = j;
		s->observe = 1;
	}
	m = json_string_value(json_object_get(d, "method"));
	if (!m && s->cancel_observe)
		m = "GET";
	if (!m) {
		peer_log("step %zu: method missing", i);
		return -1;
	}
	if (strcmp(m, "GET") == 0)
		s->method = COAP_REQUEST_CODE_GET;
	else if (strcmp(m, "PUT") == 0)
		s->method = COAP_REQUEST_CODE_PUT;
	else if (strcmp(m, "DELETE") == 0)
		s->method = COAP_REQUEST_CODE_DELETE;
	else if (strcmp(m, "POST") == 0)
		s->method = COAP_REQUEST_CODE_POST;
	else {
		peer_log("step %zu: unknown method %s", i, m);
		return -1;
	}
	s->path = json_string_value(json_object_get(d, "path"));
	if (!s->path && s->cancel_observe)
		s->path = c->steps[s->observe_step].path;
	if (!s->path || s->path[0] != '/') {
		peer_log("step %zu: path must start with /", i);
		return -1;
	}
	v = json_object_get(d, "observe");
	if (v && !s->cancel_observe) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1) {
			peer_log("step %zu: observe must be 0 or 1", i);
			return -1;
		}
		s->observe = json_integer_value(v);
	}
	v = json_object_get(d, "until");
	if (v && !json_is_object(v)) {
		peer_log("step %zu: until must be an object", i);
		return -1;
	}
	s->until = v;
	v = json_object_get(d, "type");
	if (v && (!json_is_string(v) ||
		  (strcmp(json_string_value(v), "con") &&
		   strcmp(json_string_value(v), "non")))) {
		peer_log("step %zu: type must be \"con\" or \"non\"", i);
		return -1;
	}
	v = json_object_get(d, "body_hex");
	if (v && !json_is_string(v)) {
		peer_log("step %zu: body_hex must be a string", i);
		return -1;
	}
	v = json_object_get(d, "content_format");
	if (v && (!json_is_integer(v) || json_integer_value(v) < -1 ||
		  json_integer_value(v) > 65535)) {
		peer_log("step %zu: content_format must be -1..65535", i);
		return -1;
	}
	v = json_object_get(d, "hop_limit");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
		  json_integer_value(v) > 255)) {
		peer_log("step %zu: hop_limit must be 0..255", i);
		return -1;
	}
	return cli_get_u32(d, "wait_notifications", 100000,
			   &s->wait_notifications, i) ||
	       cli_get_u32(d, "wait_ms", CLI_MAX_SLEEP_MS, &s->wait_ms, i);
}

static int cli_load_script(struct cli *c)
{
	json_error_t err;

	c->script = json_load_file(c->o.script, 0, &err);
	if (!c->script) {
		peer_log("%s:%d: %s", c->o.script, err.line, err.text);
		return -1;
	}
	if (!json_is_array(c->script) ||
	    json_array_size(c->script) > CLI_MAX_STEPS) {
		peer_log("%s: expected an array of at most %d steps",
			 c->o.script, CLI_MAX_STEPS);
		return -1;
	}
	c->nsteps = json_array_size(c->script);
	c->steps = calloc(c->nsteps ? c->nsteps : 1, sizeof(*c->steps));
	if (!c->steps)
		return -1;
	for (size_t i = 0; i < c->nsteps; i++) {
		c->steps[i].def = json_array_get(c->script, i);
		if (cli_parse_step(c, i))
			return -1;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

static int cli_optlist_add(coap_optlist_t **ol, coap_option_num_t num,
			   size_t len, const uint8_t *data)
{
	coap_optlist_t *o = coap_new_optlist(num, len,
					     data ? data : (const uint8_t *)"");

	return o && coap_insert_optlist(ol, o) ? 0 : -1;
}

static int cli_optlist_uint(coap_optlist_t **ol, coap_option_num_t num,
			    uint32_t v)
{
	uint8_t buf[4];

	return cli_optlist_add(ol, num, coap_encode_var_safe(buf, sizeof(buf),
							     v), buf);
}

/* Uri-Path segments (kept as given, empty ones too: malformed-input
 * tests need them) and Uri-Query parts after '?'. */
static int cli_add_uri(coap_optlist_t **ol, const char *path)
{
	const char *p = path + 1, *q = strchr(path, '?'), *end;
	const char *pend = q ? q : path + strlen(path);

	/* "/" alone (or "/?q") has no Uri-Path at all. */
	while (p < pend) {
		end = memchr(p, '/', (size_t)(pend - p));
		if (!end)
			end = pend;
		if (end - p > 255 ||
		    cli_optlist_add(ol, COAP_OPTION_URI_PATH, (size_t)(end - p),
				    (const uint8_t *)p))
			return -1;
		if (end == pend)
			break;
		p = end + 1;
		/* A trailing '/' leaves one empty segment. */
		if (p == pend && cli_optlist_add(ol, COAP_OPTION_URI_PATH, 0,
						  (const uint8_t *)p))
			return -1;
	}
	while (q && *q) {
		q++;
		end = strchr(q, '&');
		if (!end)
			end = q + strlen(q);
		if (end - q > 255 ||
		    cli_optlist_add(ol, COAP_OPTION_URI_QUERY,
				    (size_t)(end - q), (const uint8_t *)q))
			return -1;
		q = *end ? end : NULL;
	}
	return 0;
}

/* The payload of a step: body_hex wins over body. */
static int cli_payload(struct cli_step *s, size_t i, uint8_t **buf,
		       size_t *len)
{
	struct dg_diag diag = { "" };
	json_t *hex = json_object_get(s->def, "body_hex");
	json_t *body = json_object_get(s->def, "body");

	*buf = NULL;
	*len = 0;
	if (hex) {
		if (peer_hex_decode(json_string_value(hex), buf, len)) {
			peer_log("step %zu: bad body_hex", i);
			return -1;
		}
		return 0;
	}
	if (!body || json_is_null(body))
		return 0;
	if (cbor_encode(body, buf, len, &diag)) {
		peer_log("step %zu: cannot encode body: %s", i, diag.text);
		return -1;
	}
	return 0;
}

/* Builds and sends the request of step i; `repeat` sends it again, same
 * token and content with a fresh Message ID (RFC 9132 §4.4.1, RFC 7252
 * §4.5). Returns 0, or -1 for a script problem (the run stops). A send
 * failure marks the step failed. */
static int cli_send(struct cli *c, size_t i, bool repeat)
{
	struct cli_step *s = &c->steps[i];
	json_t *d = s->def, *v;
	coap_optlist_t *ol = NULL;
	coap_pdu_type_t type;
	coap_pdu_t *pdu = NULL;
	uint8_t *payload = NULL;
	size_t plen = 0;
	int64_t cf;
	int rc = -1;

	if (cli_payload(s, i, &payload, &plen))
		return -1;
	/* RFC 9132 §4.4.1: mitigation requests and heartbeats are NON;
	 * others default to CON. Ignored by libcoap on TCP. */
	v = json_object_get(d, "type");
	if (v)
		type = strcmp(json_string_value(v), "con") == 0 ?
		       COAP_MESSAGE_CON : COAP_MESSAGE_NON;
	else
		type = strstr(s->path, "/mitigate") || strstr(s->path, "/hb") ?
		       COAP_MESSAGE_NON : COAP_MESSAGE_CON;
	v = json_object_get(d, "content_format");
	cf = v ? json_integer_value(v) : plen ? DG_CONTENT_FORMAT_DOTS_CBOR :
						  -1;

	if (repeat) {
		/* the same token */
	} else if (s->cancel_observe) {
		memcpy(s->token, c->steps[s->observe_step].token,
		       c->steps[s->observe_step].token_len);
		s->token_len = c->steps[s->observe_step].token_len;
	} else {
		coap_session_new_token(c->session, &s->token_len, s->token);
	}
	if (json_is_true(json_object_get(d, "if_match")) &&
	    cli_optlist_add(&ol, COAP_OPTION_IF_MATCH, 0, NULL))
		goto out;
	if (s->observe >= 0 &&
	    cli_optlist_uint(&ol, COAP_OPTION_OBSERVE, (uint32_t)s->observe))
		goto out;
	if (cli_add_uri(&ol, s->path)) {
		peer_log("step %zu: path segment too long", i);
		goto out;
	}
	if (cf >= 0 &&
	    cli_optlist_uint(&ol, COAP_OPTION_CONTENT_FORMAT, (uint32_t)cf))
		goto out;
	v = json_object_get(d, "hop_limit");
	if (v && cli_optlist_uint(&ol, COAP_OPTION_HOP_LIMIT,
				  (uint32_t)json_integer_value(v)))
		goto out;

	pdu = coap_pdu_init(type, s->method, coap_new_message_id(c->session),
			    coap_session_max_pdu_size(c->session));
	if (!pdu || !coap_add_token(pdu, s->token_len, s->token) ||
	    !coap_add_optlist_pdu(pdu, &ol) ||
	    (plen && !coap_add_data(pdu, plen, payload))) {
		peer_log("step %zu: cannot build the request (too large?)", i);
		goto out;
	}
	s->sent = true;
	s->awaiting = true;
	s->type = type;
	s->tries++;
	if (!repeat)
		s->first_sent_ms = peer_now_ms();
	/* NON on an unreliable transport: repeated until answered. */
	if (c->o.repeat_ms && type == COAP_MESSAGE_NON &&
	    !COAP_PROTO_RELIABLE(c->o.proto)) {
		json_t *ev = cli_event("sent");

		s->next_repeat_ms = peer_now_ms() + cli_repeat_interval(c);
		if (ev) {
			json_object_set_new(ev, "step",
					    json_integer((json_int_t)i));
			json_object_set_new(ev, "try",
					    json_integer(s->tries));
			json_object_set_new(ev, "next_ms", json_integer(
				(json_int_t)(s->next_repeat_ms -
					     peer_now_ms())));
		}
		peer_emit(ev);
	} else {
		s->next_repeat_ms = 0;
	}
	if (coap_send(c->session, pdu) == COAP_INVALID_MID) {
		s->failed = true;
		s->fail_reason = "send failed";
	}
	pdu = NULL; /* coap_send() owns it, even on failure */
	rc = 0;
out:
	coap_delete_pdu(pdu);
	coap_delete_optlist(ol);
	free(payload);
	return rc;
}

/* Asks for the next Block2 slice (RFC 7959 §2.4): same URI, Block2 with
 * the number wanted and the server's size, a fresh token. */
static int cli_block_request(struct cli *c, struct cli_step *s)
{
	struct cli_blk *b = &s->blk;
	coap_optlist_t *ol = NULL;
	coap_pdu_t *pdu;
	int rc = -1;

	if (c->session_down)
		return -1;
	coap_session_new_token(c->session, &b->token_len, b->token);
	if (cli_add_uri(&ol, s->path) ||
	    cli_optlist_uint(&ol, COAP_OPTION_BLOCK2, b->next << 4 | b->szx))
		goto out;
	pdu = coap_pdu_init(s->type, COAP_REQUEST_CODE_GET,
			    coap_new_message_id(c->session),
			    coap_session_max_pdu_size(c->session));
	if (!pdu)
		goto out;
	if (!coap_add_token(pdu, b->token_len, b->token) ||
	    !coap_add_optlist_pdu(pdu, &ol)) {
		coap_delete_pdu(pdu);
		goto out;
	}
	if (coap_send(c->session, pdu) != COAP_INVALID_MID)
		rc = 0;
out:
	coap_delete_optlist(ol);
	return rc;
}

/* ---- the run ------------------------------------------------------------- */

enum cli_wait { WAIT_NONE, WAIT_RESPONSE, WAIT_NOTIFY };

static bool cli_done(const struct cli *c, const struct cli_step *s,
		     enum cli_wait w)
{
	if (w == WAIT_RESPONSE)
		return !s->awaiting || s->failed || c->session_down;
	if (w == WAIT_NOTIFY) {
		if (s->until && !s->until_met)
			return false;
		return s->notifications >= s->wait_notifications;
	}
	return false;
}

static void cli_follow_redirect(struct cli *c);

/* Processes I/O until the condition holds or `ms` passed, repeating an
 * unanswered NON request of s on its schedule. Returns true when the
 * condition held. */
static bool cli_run(struct cli *c, struct cli_step *s, enum cli_wait w,
		    uint32_t ms)
{
	uint64_t deadline = peer_now_ms() + ms, now, wake;

	for (;;) {
		if (peer_stop)
			return false;
		if (c->redirect_pending)
			cli_follow_redirect(c);
		if (s && cli_done(c, s, w))
			return true;
		now = peer_now_ms();
		if (now >= deadline)
			return false;
		if (s && w == WAIT_RESPONSE && s->next_repeat_ms &&
		    now >= s->next_repeat_ms && !c->session_down &&
		    cli_send(c, (size_t)(s - c->steps), true))
			return false;
		coap_io_process(c->ctx, COAP_IO_NO_WAIT);
		if (s && cli_done(c, s, w))
			return true;
		wake = deadline - now < CLI_POLL_MS ? deadline : now + CLI_POLL_MS;
		if (s && w == WAIT_RESPONSE && s->next_repeat_ms &&
		    s->next_repeat_ms < wake)
			wake = s->next_repeat_ms > now ? s->next_repeat_ms : now;
		peer_wait(c->ctx, (uint32_t)(wake - now), NULL);
		coap_io_process(c->ctx, COAP_IO_NO_WAIT);
	}
}

/* Reads what stdin has without blocking; true once a whole line came
 * (the test's go-ahead: it lets a test act between two steps of one
 * session, e.g. reload the gateway, without guessing a delay). */
static bool cli_stdin_line(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	char ch;

	while (poll(&p, 1, 0) == 1) {
		if (read(0, &ch, 1) != 1)
			return true; /* EOF also releases the step */
		if (ch == '\n')
			return true;
	}
	return false;
}

/* Keeps the session going (heartbeats) until a line on stdin or ms. */
static bool cli_wait_stdin(struct cli *c, uint32_t ms)
{
	uint64_t deadline = peer_now_ms() + ms;

	while (!peer_stop && peer_now_ms() < deadline) {
		if (cli_stdin_line())
			return true;
		cli_run(c, NULL, WAIT_NONE, CLI_POLL_MS);
	}
	return false;
}

static int cli_run_steps(struct cli *c)
{
	for (size_t i = 0; i < c->nsteps && !peer_stop; i++) {
		struct cli_step *s = &c->steps[i];

		if (s->is_sleep) {
			cli_run(c, NULL, WAIT_NONE, s->sleep_ms);
			continue;
		}
		if (s->is_wait_stdin) {
			if (!cli_wait_stdin(c, s->sleep_ms))
				cli_emit_timeout(i, "no line on stdin");
			continue;
		}
		if (c->session_down) {
			cli_emit_timeout(i, "session down");
			continue;
		}
		if (cli_send(c, i, false))
			return -1;
		cli_run(c, s, WAIT_RESPONSE, c->o.timeout_ms);
		if (peer_stop)
			break;
		s->next_repeat_ms = 0;
		if (!s->responded) {
			s->awaiting = false;
			cli_emit_timeout(i, s->failed ? s->fail_reason :
					 c->session_down ? "session down" :
					 NULL);
		} else if ((s->wait_notifications || s->until) &&
			   !cli_run(c, s, WAIT_NOTIFY, c->o.timeout_ms)) {
			if (peer_stop)
				break;
			cli_emit_timeout(i, s->until ? "until not met" :
					 "too few notifications");
		}
		if (s->wait_ms)
			cli_run(c, NULL, WAIT_NONE, s->wait_ms);
	}
	return 0;
}

/* ---- setup --------------------------------------------------------------- */

static int cli_on_server_cn(const char *cn, const uint8_t *der,
			    size_t der_len, coap_session_t *session,
			    unsigned depth, int validated, void *arg)
{
	(void)der;
	(void)der_len;
	(void)session;
	(void)arg;
	peer_log("server certificate (depth %u): %s, %s", depth,
		 cn ? cn : "?", validated ? "verified" : "NOT verified");
	return validated;
}

static coap_session_t *cli_connect(struct cli *c, const coap_address_t *dst);

/* Moves to the alternate server's first address, same port, transport
 * and credential; observations do not survive the move. */
static void cli_follow_redirect(struct cli *c)
{
	coap_address_t dst;
	json_t *ev;

	c->redirect_pending = false;
	if (peer_resolve(c->redirect_to, c->o.port, false, c->o.proto, &dst)) {
		peer_log("redirect: cannot use %s", c->redirect_to);
		return;
	}
	if (c->session)
		coap_session_release(c->session);
	c->session = cli_connect(c, &dst);
	c->session_down = c->session == NULL;
	for (size_t i = 0; i < c->nsteps; i++)
		c->steps[i].observing = false;
	ev = cli_event("redirected");
	if (ev)
		json_object_set_new(ev, "to", json_string(c->redirect_to));
	peer_emit(ev);
}

static coap_session_t *cli_connect(struct cli *c, const coap_address_t *dst)
{
	const struct peer_creds *cr = &c->o.creds;

	if (!peer_proto_secure(c->o.proto))
		return coap_new_client_session(c->ctx, NULL, dst, c->o.proto);
	if (!peer_is_ip_literal(c->o.host))
		snprintf(c->sni, sizeof(c->sni), "%s", c->o.host);
	if (cr->psk_id) {
		coap_dtls_cpsk_t cp;

		memset(&cp, 0, sizeof(cp));
		cp.version = COAP_DTLS_CPSK_SETUP_VERSION;
		cp.client_sni = c->sni[0] ? c->sni : NULL;
		cp.psk_info.identity.s = (const uint8_t *)cr->psk_id;
		cp.psk_info.identity.length = strlen(cr->psk_id);
		cp.psk_info.key.s = (const uint8_t *)cr->psk_key;
		cp.psk_info.key.length = strlen(cr->psk_key);
		return coap_new_client_session_psk2(c->ctx, NULL, dst,
						    c->o.proto, &cp);
	} else {
		coap_dtls_pki_t pki;

		memset(&pki, 0, sizeof(pki));
		pki.version = COAP_DTLS_PKI_SETUP_VERSION;
		/* RFC 9132 §8: validate the server's chain against --ca. */
		pki.verify_peer_cert = 1;
		pki.check_common_ca = 1;
		pki.cert_chain_validation = 1;
		pki.cert_chain_verify_depth = 3;
		pki.validate_cn_call_back = cli_on_server_cn;
		pki.client_sni = c->sni[0] ? c->sni : NULL;
		pki.pki_key.key_type = COAP_PKI_KEY_PEM;
		pki.pki_key.key.pem.ca_file = cr->ca;
		pki.pki_key.key.pem.public_cert = cr->cert;
		pki.pki_key.key.pem.private_key = cr->key;
		return coap_new_client_session_pki(c->ctx, NULL, dst,
						   c->o.proto, &pki);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: dots-test-client --connect HOST:PORT --transport dtls|tls|udp|tcp\n"
"         [--psk-id ID --psk-key KEY | --cert F --key F --ca F]\n"
"         --script FILE [--timeout-ms 5000] [--debug LEVEL]\n"
"         [--repeat-non off|auto|MS] [--ack-timeout-ms MS]\n"
"         [--max-retransmit N] [--follow-redirect]\n"
"\n"
"Runs the JSON array of steps in FILE on one session. A step is\n"
"{\"sleep_ms\":N} or {\"method\",\"path\",\"body\",\"body_hex\",\n"
"\"content_format\",\"observe\",\"if_match\",\"hop_limit\",\"type\",\n"
"\"wait_notifications\",\"wait_ms\",\"until\",\"cancel_observe\"}, or\n"
"{\"wait_stdin\":MS}: wait for a line on stdin, keeping the session up.\n"
"Prints response, notification, hb-received and timeout events (steps\n"
"counted from 0), each with mono_ms and wall_ms. --repeat-non repeats\n"
"an unanswered NON request (same token, new Message ID) until answered\n"
"or the step times out (RFC 9132 §4.4.1): every MS, or auto (3 s, then\n"
"the RTO of the RTT estimate, at least 1 s); it prints a sent event per\n"
"transmission and a duplicate event per extra answer. Default off.\n"
"--ack-timeout-ms and --max-retransmit set the CON parameters (RFC 7252\n"
"§4.8). Exit: 0 done, 3 a step timed out, 2 usage, 1 setup,\n"
"4 interrupted.\n");
}

static int cli_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return -1;
	v = strtoul(s, &end, 10);
	if (*end || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int cli_parse_args(struct cli_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "transport", required_argument, NULL, 't' },
		{ "psk-id", required_argument, NULL, 'i' },
		{ "psk-key", required_argument, NULL, 'k' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "ca", required_argument, NULL, 'a' },
		{ "script", required_argument, NULL, 's' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "debug", required_argument, NULL, 'd' },
		{ "follow-redirect", no_argument, NULL, 'R' },
		{ "repeat-non", required_argument, NULL, 'r' },
		{ "ack-timeout-ms", required_argument, NULL, 'A' },
		{ "max-retransmit", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *connect = NULL, *transport = NULL;
	uint32_t lvl;
	int ch;

	o->timeout_ms = 5000;
	o->coap_log_level = LOG_WARNING;
	o->max_retransmit = -1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': connect = optarg; break;
		case 't': transport = optarg; break;
		case 'R': o->follow_redirect = true; break;
		case 'i': o->creds.psk_id = optarg; break;
		case 'k': o->creds.psk_key = optarg; break;
		case 'C': o->creds.cert = optarg; break;
		case 'K': o->creds.key = optarg; break;
		case 'a': o->creds.ca = optarg; break;
		case 's': o->script = optarg; break;
		case 'T':
			if (cli_parse_u32(optarg, CLI_MAX_SLEEP_MS,
					  &o->timeout_ms) || !o->timeout_ms)
				goto bad;
			break;
		case 'd':
			if (cli_parse_u32(optarg, LOG_DEBUG, &lvl))
				goto bad;
			o->coap_log_level = (int)lvl;
			break;
		case 'r':
			if (strcmp(optarg, "off") == 0)
				o->repeat_ms = 0;
			else if (strcmp(optarg, "auto") == 0)
				o->repeat_ms = CLI_REPEAT_AUTO;
			else if (cli_parse_u32(optarg, CLI_MAX_SLEEP_MS,
					       &o->repeat_ms) || !o->repeat_ms)
				goto bad;
			break;
		case 'A':
			/* libcoap takes at least 1 s (coap_session.c). */
			if (cli_parse_u32(optarg, 600000, &o->ack_timeout_ms) ||
			    o->ack_timeout_ms < 1000)
				goto bad;
			break;
		case 'M':
			if (cli_parse_u32(optarg, 20, &lvl))
				goto bad;
			o->max_retransmit = (int)lvl;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind != argc || !connect || !transport || !o->script ||
	    peer_parse_transport(transport, &o->proto) ||
	    peer_split_hostport(connect, o->host, sizeof(o->host), &o->port,
				false) ||
	    peer_check_creds(&o->creds, o->proto))
		goto bad;
	return 0;
bad:
	usage(stderr);
	return -1;
}

int main(int argc, char **argv)
{
	struct cli c;
	coap_address_t dst;
	coap_resource_t *r;
	int rc = 1;

	memset(&c, 0, sizeof(c));
	if (cli_parse_args(&c.o, argc, argv))
		return 2;
	cli_g = &c;
	peer_init(NULL, c.o.coap_log_level);
	if (cli_load_script(&c)) {
		rc = 2;
		goto out;
	}
	if (peer_resolve(c.o.host, c.o.port, false, c.o.proto, &dst))
		goto out;
	c.ctx = coap_new_context(NULL);
	if (!c.ctx)
		goto out;
	/* No COAP_BLOCK_USE_LIBCOAP: in 4.3.1 it rewrites the token of an
	 * Observe-1 cancel, so the server cannot match it. We do Block2
	 * ourselves. */
	coap_register_response_handler(c.ctx, cli_on_response);
	coap_register_nack_handler(c.ctx, cli_on_nack);
	coap_register_event_handler(c.ctx, cli_on_event);
	/* Server-initiated requests on our client session land on the
	 * context's resources. */
	r = coap_resource_init(coap_make_str_const(".well-known/dots/hb"), 0);
	if (!r)
		goto out;
	coap_register_request_handler(r, COAP_REQUEST_PUT, cli_on_hb);
	coap_add_resource(c.ctx, r);
	c.session = cli_connect(&c, &dst);
	if (!c.session) {
		peer_log("cannot create the session");
		goto out;
	}
	/* Before the first exchange: the (D)TLS handshake uses them too. */
	if (c.o.ack_timeout_ms)
		coap_session_set_ack_timeout(c.session, (coap_fixed_point_t){
			c.o.ack_timeout_ms / 1000, c.o.ack_timeout_ms % 1000 });
	if (c.o.max_retransmit >= 0)
		coap_session_set_max_retransmit(c.session,
						(uint16_t)c.o.max_retransmit);
	if (cli_run_steps(&c)) {
		rc = 2;
		goto out;
	}
	rc = peer_stop ? 4 : c.exit_code;
out:
	if (c.ctx) {
		coap_register_event_handler(c.ctx, NULL);
		if (c.session)
			coap_session_release(c.session);
		coap_free_context(c.ctx);
	}
	json_decref(c.script);
	for (size_t i = 0; c.steps && i < c.nsteps; i++)
		cli_blk_reset(&c.steps[i].blk);
	free(c.steps);
	cli_g = NULL;
	peer_fini();
	return rc;
}
