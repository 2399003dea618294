/*
 * dots-test-server: a scriptable upstream DOTS server (RFC 9132 signal
 * channel) for dotsgw's integration tests and demo.
 *
 * It keeps mitigations in memory, answers /mitigate, /config and /hb,
 * implements Observe on /mitigate itself (libcoap 4.3.1 cannot observe
 * its unknown-resource handler, which we need to parse Uri-Path), sends
 * its own heartbeats on request, and takes commands on stdin to misbehave
 * on purpose (conflict, redirect, error, silent). Every request and every
 * command result is one JSON line on stdout; see usage() for the rest.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cbor.h"
#include "peer_common.h"

#define SRV_MAX_MITIGATIONS 1024
#define SRV_MAX_OBSERVERS 256
#define SRV_MAX_SEGS 8           /* Uri-Path segments we look at */
#define SRV_ID_MAX 128           /* longest cuid/cdid value */
#define SRV_LINE_MAX 4096        /* longest stdin command */
#define SRV_WAIT_MAX_MS 1000     /* loop wakes up at least this often */
#define SRV_CONFIG_MAX_AGE 3600  /* RFC 9132 §4.5.3: send Max-Age */
#define SRV_RETRY_MAX_AGE 60     /* Max-Age of injected 5.03 answers */
#define SRV_OBSERVE_MASK 0xffffff /* RFC 7641 §3.2: 24-bit values */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* RFC 9132 §4.4.1.1 Table 3. */
enum {
	ST_IN_PROGRESS = 1,
	ST_MITIGATED = 2,
	ST_STOPPED = 3,
	ST_EXCEEDED = 4,
	ST_WITHDRAWN = 5,
	ST_TERMINATED = 6,
	ST_WITHDRAWN_SRV = 7,
	ST_SIGNAL_LOSS = 8,
};

enum srv_mode {
	SRV_NORMAL,   /* answer as a DOTS server would */
	SRV_CONFLICT, /* mitigation PUTs get 4.09 with conflict-information */
	SRV_REDIRECT, /* /mitigate and /config get 5.03 redirected-signal */
	SRV_ERROR,    /* /mitigate and /config get error_code + diagnostic */
	SRV_SILENT,   /* record requests, send nothing at all */
};

/* One session configuration set (RFC 9132 §4.5); decimals in 1/100. */
struct srv_cfg_set {
	uint32_t hb_interval, missing_hb, probing_rate, max_retransmit;
	uint32_t ack_timeout, ack_random_factor;
};

struct srv_cfg {
	struct srv_cfg_set mitigating, idle;
};

/* A parameter's acceptable range and default (RFC 9132 §4.5.2). */
struct srv_param {
	const char *name;
	bool decimal;
	uint32_t min, max, def;
	size_t off; /* offset in struct srv_cfg_set */
};

static const struct srv_param srv_params[] = {
	{ "heartbeat-interval", false, 1, 240, 30,
	  offsetof(struct srv_cfg_set, hb_interval) },
	{ "missing-hb-allowed", false, 1, 60, 15,
	  offsetof(struct srv_cfg_set, missing_hb) },
	{ "probing-rate", false, 1, 1000, 5,
	  offsetof(struct srv_cfg_set, probing_rate) },
	{ "max-retransmit", false, 2, 15, 3,
	  offsetof(struct srv_cfg_set, max_retransmit) },
	{ "ack-timeout", true, 100, 3000, 200,
	  offsetof(struct srv_cfg_set, ack_timeout) },
	{ "ack-random-factor", true, 110, 400, 150,
	  offsetof(struct srv_cfg_set, ack_random_factor) },
};

/* App data of a server session: from SERVER_SESSION_NEW to _DEL. */
struct srv_sess {
	struct srv_sess *next;
	coap_session_t *session;
	char cert_cn[PEER_HOST_MAX]; /* X.509: subject CN of the client */
	bool has_sid;
	uint32_t sid;
	struct srv_cfg cfg;
	uint8_t hb_token[8];         /* our last heartbeat, to match replies */
	size_t hb_token_len;
};

struct srv_mitig {
	struct srv_mitig *next;
	char cuid[SRV_ID_MAX + 1];
	char cdid[SRV_ID_MAX + 1];
	bool has_cdid;
	uint32_t mid;
	json_t *entry;         /* the request's scope entry (owned) */
	int64_t lifetime;      /* granted, seconds; -1 = indefinite */
	uint64_t refreshed_ms; /* lifetime counts down from here */
	uint64_t created_ms;
	int status;
	bool auto_pending;     /* still to move 1 -> 2 after status_delay */
	uint64_t start_epoch;  /* mitigation-start */
	uint64_t bytes, pkts, bps, pps;
	bool dead;             /* ended; freed once observers saw status 6 */
};

/* An Observe registration on /mitigate (RFC 7641, RFC 9132 §4.4.2.1). */
struct srv_obs {
	struct srv_obs *next;
	coap_session_t *session; /* valid until SERVER_SESSION_DEL */
	uint8_t token[8];
	size_t token_len;
	char cuid[SRV_ID_MAX + 1];
	bool has_mid;
	uint32_t mid;
	uint32_t seq;            /* last Observe value sent */
	coap_mid_t last_msg_id;  /* of the last NON notification (RST match) */
	bool dirty;              /* a change to notify at the next flush */
};

struct srv_opts {
	char host[PEER_HOST_MAX];
	uint16_t port;
	coap_proto_t proto;
	struct peer_creds creds;
	uint32_t status_delay_ms;
	uint32_t notify_interval_ms;
	uint32_t heartbeat_ms;
	const char *name;
	int coap_log_level;
};

struct srv {
	struct srv_opts o;
	coap_context_t *ctx;
	coap_bin_const_t psk_key;
	struct srv_sess *sessions;
	struct srv_mitig *mitigs;
	size_t nmitigs;
	struct srv_obs *observers;
	size_t nobservers;
	enum srv_mode mode;
	char redirect_host[PEER_HOST_MAX];
	json_t *redirect_records;
	coap_pdu_code_t error_code;
	uint64_t next_notify_ms;
	uint64_t next_hb_ms;
	bool stdin_open;
	bool quit;
	char line[SRV_LINE_MAX];
	size_t line_len;
	bool line_overflow;
	/* The request being answered (srv_on_request sets them): replies
	 * need its session and Block2 option to slice large bodies. */
	coap_session_t *rq_session;
	int64_t rq_block2;
};

/* libcoap 4.3.1 has no context user pointer for resource handlers. */
static struct srv *srv_g;

/* A parsed request URI. */
enum srv_res { RES_UNKNOWN, RES_MITIGATE, RES_CONFIG, RES_HB };

struct srv_uri {
	enum srv_res res;
	bool has_cdid, has_cuid, has_mid, has_sid;
	char cdid[SRV_ID_MAX + 1];
	char cuid[SRV_ID_MAX + 1];
	uint32_t mid, sid;
	char path[1024];
	const char *error; /* why the path is malformed (-> 4.00) */
};

/* ---- small helpers ------------------------------------------------------- */

static json_t *srv_str_or_null(bool has, const char *s)
{
	return has ? json_string(s) : json_null();
}

static const char *srv_status_label(int status)
{
	const char *l = cbor_enum_label("status", status);

	return l ? l : "attack-mitigation-in-progress";
}

/* A new event object with its "event" member first. */
static json_t *srv_event(const char *name)
{
	json_t *ev = json_object();

	if (ev && json_object_set_new(ev, "event", json_string(name))) {
		json_decref(ev);
		return NULL;
	}
	return ev;
}

static struct srv_sess *srv_sess_of(coap_session_t *session)
{
	return session ? coap_session_get_app_data(session) : NULL;
}

/* The peer's identity: PSK identity, or the subject CN of its cert. */
static json_t *srv_identity(coap_session_t *session)
{
	const coap_bin_const_t *id;
	struct srv_sess *ss = srv_sess_of(session);

	if (!peer_proto_secure(coap_session_get_proto(session)))
		return json_null();
	if (ss && ss->cert_cn[0])
		return json_string(ss->cert_cn);
	id = coap_session_get_psk_identity(session);
	if (id && id->length && id->s)
		return peer_safe_string(id->s, id->length);
	return json_null();
}

/* Decimal uint32 without sign, leading zeros or trailing garbage. */
static int srv_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 10)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Appends a Uri-Path segment to the printable path, escaping bytes that
 * are not printable ASCII so the JSON line stays valid. */
static void srv_path_append(char *path, size_t size, const uint8_t *seg,
			    size_t len)
{
	size_t n = strlen(path);

	if (n + 1 < size)
		path[n++] = '/';
	for (size_t i = 0; i < len && n + 5 < size; i++) {
		if (seg[i] > 0x20 && seg[i] < 0x7f)
			path[n++] = (char)seg[i];
		else
			n += (size_t)snprintf(path + n, size - n, "\\x%02x",
					      seg[i]);
	}
	path[n] = '\0';
}

/* Takes "name=value" into an identifier buffer. */
static int srv_take_id(const char *seg, const char *prefix, char *out)
{
	size_t plen = strlen(prefix), len = strlen(seg) - plen;

	if (len == 0) /* RFC 9132 §4.4.1.1: empty values are invalid */
		return -1;
	if (len > SRV_ID_MAX)
		return -1;
	for (size_t i = plen; seg[i]; i++)
		if (seg[i] <= 0x20 || seg[i] >= 0x7f)
			return -1;
	memcpy(out, seg + plen, len + 1);
	return 0;
}

static bool srv_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * Parses the Uri-Path: .well-known/dots/{mitigate [cdid=] cuid= [mid=] |
 * config [sid=] | hb}. Order matters (RFC 9132 §4.4.1.1, §4.4.1.2):
 * cdid before cuid, mid after cuid.
 */
static void srv_parse_uri(const coap_pdu_t *pdu, struct srv_uri *u)
{
	char segs[SRV_MAX_SEGS][256];
	coap_opt_iterator_t it;
	coap_opt_filter_t f;
	coap_opt_t *opt;
	size_t n = 0, total = 0, i;

	memset(u, 0, sizeof(*u));
	coap_option_filter_clear(&f);
	coap_option_filter_set(&f, COAP_OPTION_URI_PATH);
	coap_option_iterator_init(pdu, &it, &f);
	while ((opt = coap_option_next(&it))) {
		size_t len = coap_opt_length(opt);
		const uint8_t *v = coap_opt_value(opt);

		srv_path_append(u->path, sizeof(u->path), v, len);
		total++;
		if (n >= SRV_MAX_SEGS)
			continue;
		/* RFC 7252 §5.10: Uri-Path is 0-255 bytes; a NUL inside a
		 * segment cannot be a valid name. */
		if (len >= sizeof(segs[n]) || memchr(v, 0, len)) {
			u->error = "malformed Uri-Path segment";
			len = 0;
		}
		memcpy(segs[n], v, len);
		segs[n][len] = '\0';
		n++;
	}
	if (!total)
		strcpy(u->path, "/");
	if (total < 3 || strcmp(segs[0], ".well-known") ||
	    strcmp(segs[1], "dots"))
		return;
	if (total > SRV_MAX_SEGS)
		u->error = "too many Uri-Path segments";
	if (n >= 3 && strcmp(segs[2], "mitigate") == 0) {
		u->res = RES_MITIGATE;
		i = 3;
		if (i < n && srv_has_prefix(segs[i], "cdid=")) {
			if (srv_take_id(segs[i], "cdid=", u->cdid))
				u->error = "bad cdid";
			u->has_cdid = true;
			i++;
		}
		if (i < n && srv_has_prefix(segs[i], "cuid=")) {
			if (srv_take_id(segs[i], "cuid=", u->cuid))
				u->error = "bad cuid";
			u->has_cuid = true;
			i++;
		}
		if (i < n && srv_has_prefix(segs[i], "mid=")) {
			if (srv_parse_u32(segs[i] + 4, &u->mid))
				u->error = "bad mid";
			u->has_mid = true;
			i++;
		}
		if (i < n && !u->error)
			u->error = "unexpected or misordered Uri-Path segment "
				   "(order: [cdid=], cuid=, [mid=])";
		if (!u->has_cuid && !u->error)
			u->error = "cuid is mandatory";
	} else if (n >= 3 && strcmp(segs[2], "config") == 0) {
		u->res = RES_CONFIG;
		if (n >= 4) {
			if (!srv_has_prefix(segs[3], "sid=") ||
			    srv_parse_u32(segs[3] + 4, &u->sid))
				u->error = "bad sid";
			u->has_sid = true;
		}
		if (n > 4 && !u->error)
			u->error = "unexpected Uri-Path segment after sid";
	} else if (n >= 3 && strcmp(segs[2], "hb") == 0) {
		u->res = RES_HB;
		/* RFC 9132 §4.7: no cuid, cdid or mid on heartbeats. */
		if (n > 3)
			u->error = "heartbeat takes no further Uri-Path";
	}
}

/* ---- responses ----------------------------------------------------------- */

/* Makes libcoap send nothing: an empty NON (or any empty message on a
 * reliable transport) is dropped, and a CON then gets no ACK either. */
static void srv_no_reply(coap_pdu_t *response)
{
	coap_pdu_set_code(response, COAP_EMPTY_CODE);
	coap_pdu_set_type(response, COAP_MESSAGE_NON);
}

/* An error with a diagnostic payload (RFC 7252 §5.5.2; RFC 9132 §9). */
static void srv_reply_diag(coap_pdu_t *response, coap_pdu_code_t code,
			   const char *text)
{
	coap_pdu_set_code(response, code);
	if (COAP_RESPONSE_CLASS(code) == 5)
		peer_add_uint_option(response, COAP_OPTION_MAXAGE,
				     SRV_RETRY_MAX_AGE);
	if (text && *text)
		coap_add_data(response, strlen(text), (const uint8_t *)text);
}

/* FNV-1a: an ETag that changes with the body (RFC 9132 §4.4.2). */
static uint64_t srv_etag(const uint8_t *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ buf[i]) * 0x100000001b3ULL;
	return h;
}

/*
 * Adds Content-Format 271, Max-Age (when >= 0) and the payload to a
 * response or notification. A body that does not fit the session's PDU,
 * or a request that asked for a block, is sliced with Block2, Size2 and
 * an ETag (RFC 7959 §2.2-2.4, RFC 9132 §4.4.2). Follow-up block GETs come
 * back to the handler, which rebuilds the body and sends the slice asked
 * for. `block2` is the request's Block2 value, -1 when absent. Returns 0,
 * 1 when the requested block is past the end, -1 when building failed.
 */
static int srv_add_payload(coap_session_t *ss, coap_pdu_t *pdu,
			   const uint8_t *buf, size_t len, int64_t max_age,
			   int64_t block2)
{
	size_t budget = coap_session_max_pdu_size(ss), size, off;
	unsigned szx = 6;
	uint64_t num = 0, etag;
	bool more;

	/* Headroom for the token and the options added here. */
	budget = budget > 96 ? budget - 96 : 16;
	if (block2 < 0 && len <= budget) {
		if (peer_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT,
					 DG_CONTENT_FORMAT_DOTS_CBOR) ||
		    (max_age >= 0 &&
		     peer_add_uint_option(pdu, COAP_OPTION_MAXAGE,
					  (uint32_t)max_age)) ||
		    (len && !coap_add_data(pdu, len, buf)))
			return -1;
		return 0;
	}
	while (szx > 0 && ((size_t)1 << (szx + 4)) > budget)
		szx--;
	if (block2 >= 0) {
		/* RFC 7959 §2.2: honour a smaller size; 7 is BERT (RFC 8323),
		 * which we do not do. */
		if ((unsigned)(block2 & 7) < szx)
			szx = (unsigned)(block2 & 7);
		num = (uint64_t)block2 >> 4;
	}
	size = (size_t)1 << (szx + 4);
	if (num > SIZE_MAX / size || (num && num * size >= len))
		return 1;
	off = (size_t)(num * size);
	more = len - off > size;
	etag = srv_etag(buf, len);
	if (!coap_add_option(pdu, COAP_OPTION_ETAG, 4,
			     (const uint8_t *)&etag) ||
	    peer_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT,
				 DG_CONTENT_FORMAT_DOTS_CBOR) ||
	    (max_age >= 0 && peer_add_uint_option(pdu, COAP_OPTION_MAXAGE,
						  (uint32_t)max_age)) ||
	    peer_add_uint_option(pdu, COAP_OPTION_BLOCK2,
				 (uint32_t)(num << 4 | (more ? 8 : 0) | szx)) ||
	    (num == 0 && peer_add_uint_option(pdu, COAP_OPTION_SIZE2,
					      (uint32_t)len)) ||
	    (len && !coap_add_data(pdu, more ? size : len - off, buf + off)))
		return -1;
	return 0;
}

/* A response with a DOTS body (Content-Format 271). Steals `model`. */
static void srv_reply_body(coap_pdu_t *response, coap_pdu_code_t code,
			   json_t *model, int64_t observe, int64_t max_age)
{
	struct srv *s = srv_g;
	struct dg_diag diag = { "" };
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	if (!model || cbor_encode(model, &buf, &len, &diag)) {
		peer_log("cannot encode a response: %s", diag.text);
		json_decref(model);
		srv_reply_diag(response, COAP_RESPONSE_CODE(500),
			       "test server: cannot encode response");
		return;
	}
	json_decref(model);
	coap_pdu_set_code(response, code);
	if (observe >= 0)
		peer_add_uint_option(response, COAP_OPTION_OBSERVE,
				     (uint32_t)observe);
	rc = srv_add_payload(s->rq_session, response, buf, len, max_age,
			     s->rq_block2);
	free(buf);
	if (rc == 1) {
		/* Options are in already: say it in the code and the log. */
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(400));
		peer_log("requested block past the end of the body");
	} else if (rc) {
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(500));
		peer_log("cannot add a response body (%zu bytes)", len);
	}
}

/* {"ietf-dots-signal-channel:mitigation-scope":{"scope":[...]}}, steals
 * `scope`. */
static json_t *srv_mitigation_model(json_t *scope)
{
	return json_pack("{s:{s:o}}", CBOR_MSG_MITIGATION, "scope", scope);
}

/* RFC 9132 §4.6: 5.03 with redirected-signal, Max-Age = TTL. */
static void srv_reply_redirect(struct srv *s, coap_pdu_t *response)
{
	json_t *rs = json_pack("{s:s}", "alt-server", s->redirect_host);

	if (rs && json_array_size(s->redirect_records))
		json_object_set(rs, "alt-server-record", s->redirect_records);
	srv_reply_body(response, COAP_RESPONSE_CODE(503),
		       rs ? json_pack("{s:o}", CBOR_MSG_REDIRECT, rs) : NULL,
		       -1, SRV_RETRY_MAX_AGE);
}

/* The injected error of "error CODE". */
static void srv_reply_injected(struct srv *s, coap_pdu_t *response)
{
	char code[8], text[64];

	snprintf(text, sizeof(text), "test server: injected error %s",
		 peer_code_str(s->error_code, code));
	srv_reply_diag(response, s->error_code, text);
}

/* ---- mitigations --------------------------------------------------------- */

static struct srv_mitig *srv_mitig_find(struct srv *s, const char *cuid,
					uint32_t mid)
{
	for (struct srv_mitig *m = s->mitigs; m; m = m->next)
		if (!m->dead && m->mid == mid && strcmp(m->cuid, cuid) == 0)
			return m;
	return NULL;
}

static void srv_mitig_free(struct srv *s, struct srv_mitig *m)
{
	for (struct srv_mitig **pp = &s->mitigs; *pp; pp = &(*pp)->next) {
		if (*pp == m) {
			*pp = m->next;
			s->nmitigs--;
			break;
		}
	}
	json_decref(m->entry);
	free(m);
}

static bool srv_status_active(int status)
{
	return status >= ST_IN_PROGRESS && status <= ST_WITHDRAWN;
}

static int64_t srv_remaining(const struct srv_mitig *m, uint64_t now)
{
	int64_t left;

	if (m->lifetime < 0)
		return -1;
	if (m->status == ST_TERMINATED)
		return 0;
	left = m->lifetime - (int64_t)((now - m->refreshed_ms) / 1000);
	return left > 0 ? left : 0;
}

static json_t *srv_u64_json(uint64_t v)
{
	char buf[24];

	/* RFC 7951 §6.1: uint64 leaves are JSON strings. */
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return json_string(buf);
}

/* A status entry (RFC 9132 §4.4.2): mid, the request's targets, the
 * remaining lifetime, status and counters. */
static json_t *srv_status_entry(const struct srv_mitig *m, uint64_t now)
{
	const char *key;
	json_t *e, *v;

	e = json_pack("{s:I}", "mid", (json_int_t)m->mid);
	if (!e)
		return NULL;
	json_object_foreach(m->entry, key, v) {
		if (strcmp(key, "lifetime") && strcmp(key, "attack-status"))
			json_object_set(e, key, v);
	}
	json_object_set_new(e, "lifetime",
			    json_integer(srv_remaining(m, now)));
	json_object_set_new(e, "status",
			    json_string(srv_status_label(m->status)));
	/* RFC 9132 §4.4.2: no mitigation-start with status 8. */
	if (m->status != ST_SIGNAL_LOSS)
		json_object_set_new(e, "mitigation-start",
				    srv_u64_json(m->start_epoch));
	json_object_set_new(e, "bytes-dropped", srv_u64_json(m->bytes));
	json_object_set_new(e, "bps-dropped", srv_u64_json(m->bps));
	json_object_set_new(e, "pkts-dropped", srv_u64_json(m->pkts));
	json_object_set_new(e, "pps-dropped", srv_u64_json(m->pps));
	return e;
}

static bool srv_obs_matches(const struct srv_obs *o, const struct srv_mitig *m)
{
	return strcmp(o->cuid, m->cuid) == 0 && (!o->has_mid ||
						 o->mid == m->mid);
}

/* Status entries of every mitigation of cuid (one mid if has_mid);
 * ended ones only for notifications (with_dead). */
static json_t *srv_collect(struct srv *s, const char *cuid, bool has_mid,
			   uint32_t mid, uint64_t now, bool with_dead,
			   bool *any_active)
{
	json_t *scope = json_array();

	if (any_active)
		*any_active = false;
	if (!scope)
		return NULL;
	for (struct srv_mitig *m = s->mitigs; m; m = m->next) {
		if (strcmp(m->cuid, cuid) || (has_mid && m->mid != mid) ||
		    (m->dead && !with_dead))
			continue;
		json_array_append_new(scope, srv_status_entry(m, now));
		if (any_active && srv_status_active(m->status))
			*any_active = true;
	}
	return scope;
}

/* ---- observers ----------------------------------------------------------- */

static struct srv_obs *srv_obs_find(struct srv *s, coap_session_t *session,
				    coap_bin_const_t token)
{
	for (struct srv_obs *o = s->observers; o; o = o->next)
		if (o->session == session && o->token_len == token.length &&
		    memcmp(o->token, token.s, token.length) == 0)
			return o;
	return NULL;
}

static void srv_obs_remove(struct srv *s, struct srv_obs *o, const char *why)
{
	for (struct srv_obs **pp = &s->observers; *pp; pp = &(*pp)->next) {
		if (*pp == o) {
			*pp = o->next;
			s->nobservers--;
			break;
		}
	}
	peer_log("observer of cuid=%s removed: %s", o->cuid, why);
	free(o);
}

static void srv_obs_drop_session(struct srv *s, coap_session_t *session,
				 const char *why)
{
	struct srv_obs *o = s->observers, *next;

	for (; o; o = next) {
		next = o->next;
		if (o->session == session)
			srv_obs_remove(s, o, why);
	}
}

/* Sends one notification: NON (RFC 9132 §4.4.2.1), 2.05, the next
 * Observe value, Content-Format 271. */
static void srv_obs_send(struct srv_obs *o, json_t *scope)
{
	struct dg_diag diag = { "" };
	coap_session_t *ss = o->session;
	coap_pdu_t *pdu;
	uint8_t *buf = NULL;
	size_t len = 0;
	json_t *model = srv_mitigation_model(scope);
	coap_mid_t id;

	if (!model || cbor_encode(model, &buf, &len, &diag)) {
		peer_log("cannot encode a notification: %s", diag.text);
		json_decref(model);
		return;
	}
	json_decref(model);
	if (coap_session_get_state(ss) != COAP_SESSION_STATE_ESTABLISHED) {
		free(buf);
		return;
	}
	pdu = coap_pdu_init(COAP_MESSAGE_NON, COAP_RESPONSE_CODE(205),
			    coap_new_message_id(ss),
			    coap_session_max_pdu_size(ss));
	if (!pdu) {
		free(buf);
		return;
	}
	o->seq = (o->seq + 1) & SRV_OBSERVE_MASK;
	/* RFC 7959 §2.6: a large notification carries its first block; the
	 * client GETs the rest. */
	if (!coap_add_token(pdu, o->token_len, o->token) ||
	    peer_add_uint_option(pdu, COAP_OPTION_OBSERVE, o->seq) ||
	    srv_add_payload(ss, pdu, buf, len, -1, -1)) {
		peer_log("cannot build a notification (%zu bytes)", len);
		coap_delete_pdu(pdu);
		free(buf);
		return;
	}
	free(buf);
	id = coap_send(ss, pdu);
	if (id != COAP_INVALID_MID)
		o->last_msg_id = id;
}

/* Marks every observer that sees `m` (a status change, a new or an
 * ended mitigation). srv_flush() sends one notification per observer, so
 * a burst of changes does not become a burst of notifications (RFC 9132
 * §4.4.2.1 asks for at most one per RTT). */
static void srv_notify_change(struct srv *s, const struct srv_mitig *m)
{
	for (struct srv_obs *o = s->observers; o; o = o->next)
		if (srv_obs_matches(o, m))
			o->dirty = true;
}

/* Sends the marked notifications, then frees ended mitigations. */
static void srv_flush(struct srv *s, uint64_t now)
{
	struct srv_mitig *m, *next;
	json_t *scope;

	for (struct srv_obs *o = s->observers; o; o = o->next) {
		if (!o->dirty)
			continue;
		o->dirty = false;
		if (s->mode == SRV_SILENT)
			continue;
		scope = srv_collect(s, o->cuid, o->has_mid, o->mid, now, true,
				    NULL);
		if (scope && json_array_size(scope))
			srv_obs_send(o, scope);
		else
			json_decref(scope);
	}
	for (m = s->mitigs; m; m = next) {
		next = m->next;
		if (m->dead)
			srv_mitig_free(s, m);
	}
}

/* The periodic notification: only while a mitigation is active. */
static void srv_notify_periodic(struct srv *s, uint64_t now)
{
	json_t *scope;
	bool active;

	if (s->mode == SRV_SILENT)
		return;
	for (struct srv_obs *o = s->observers; o; o = o->next) {
		scope = srv_collect(s, o->cuid, o->has_mid, o->mid, now, true,
				    &active);
		if (scope && active) {
			srv_obs_send(o, scope);
			o->dirty = false;
		} else {
			json_decref(scope);
		}
	}
}

/* Ends a mitigation: observers see status 6 with lifetime 0 once. */
static void srv_mitig_terminate(struct srv *s, struct srv_mitig *m)
{
	m->status = ST_TERMINATED;
	m->auto_pending = false;
	m->dead = true;
	srv_notify_change(s, m);
}

/* ---- /mitigate ----------------------------------------------------------- */

static const char *const srv_server_only[] = {
	"mid", "mitigation-start", "status", "conflict-information",
	"bytes-dropped", "bps-dropped", "pkts-dropped", "pps-dropped",
};

static const char *const srv_targets[] = {
	"target-prefix", "target-fqdn", "target-uri", "alias-name",
};

/* Checks a mitigation request body (RFC 9132 §4.4.1) and returns its
 * scope entry (borrowed from body), or NULL with a diagnostic. */
static json_t *srv_check_request(json_t *body, bool efficacy, char *why,
				 size_t why_size)
{
	json_t *ms, *scope, *e, *lt;
	bool target = false;

	ms = json_object_get(body, CBOR_MSG_MITIGATION);
	scope = json_object_get(ms, "scope");
	if (!ms || json_object_size(body) != 1 || !json_is_array(scope)) {
		snprintf(why, why_size, "expected mitigation-scope with scope");
		return NULL;
	}
	/* RFC 9132 §4.4.1: exactly one scope per request. */
	if (json_array_size(scope) != 1) {
		snprintf(why, why_size, "exactly one scope entry expected, "
			 "got %zu", json_array_size(scope));
		return NULL;
	}
	e = json_array_get(scope, 0);
	for (size_t i = 0; i < ARRAY_SIZE(srv_server_only); i++) {
		if (json_object_get(e, srv_server_only[i])) {
			snprintf(why, why_size, "%s is server-to-client only",
				 srv_server_only[i]);
			return NULL;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(srv_targets); i++)
		target = target || json_object_get(e, srv_targets[i]);
	if (!target) {
		snprintf(why, why_size, "no target (prefix, fqdn, uri or "
			 "alias-name)");
		return NULL;
	}
	lt = json_object_get(e, "lifetime");
	if (!json_is_integer(lt)) {
		snprintf(why, why_size, "lifetime is mandatory");
		return NULL;
	}
	/* RFC 9132 §4.4.1: a lifetime of 0 is invalid. */
	if (json_integer_value(lt) == 0 || json_integer_value(lt) < -1) {
		snprintf(why, why_size, "invalid lifetime %"
			 JSON_INTEGER_FORMAT, json_integer_value(lt));
		return NULL;
	}
	/* RFC 9132 §4.4.3: attack-status only (and always) in an efficacy
	 * update. */
	if (efficacy != (json_object_get(e, "attack-status") != NULL)) {
		snprintf(why, why_size, efficacy ?
			 "efficacy update without attack-status" :
			 "attack-status outside an efficacy update (If-Match)");
		return NULL;
	}
	return e;
}

/* Equal apart from lifetime and attack-status (RFC 9132 §4.4.3). */
static bool srv_same_scope(json_t *a, json_t *b)
{
	json_t *ca = json_deep_copy(a), *cb = json_deep_copy(b);
	bool eq;

	json_object_del(ca, "lifetime");
	json_object_del(ca, "attack-status");
	json_object_del(cb, "lifetime");
	json_object_del(cb, "attack-status");
	eq = ca && cb && json_equal(ca, cb);
	json_decref(ca);
	json_decref(cb);
	return eq;
}

static int64_t srv_lifetime(json_t *entry)
{
	return json_integer_value(json_object_get(entry, "lifetime"));
}

static json_t *srv_put_answer(const struct srv_mitig *m)
{
	return srv_mitigation_model(json_pack("[{s:I,s:I}]", "mid",
					      (json_int_t)m->mid, "lifetime",
					      (json_int_t)m->lifetime));
}

/* RFC 9132 §4.4.1.3: 4.09 with conflict-information. */
static void srv_reply_conflict(coap_pdu_t *response, json_t *entry)
{
	json_t *cs = json_pack("{}"), *tp;

	tp = json_object_get(entry, "target-prefix");
	if (cs && tp)
		json_object_set(cs, "target-prefix", tp);
	if (cs)
		json_object_set_new(cs, "mid", json_integer(1));
	srv_reply_body(response, COAP_RESPONSE_CODE(409),
		       cs ? srv_mitigation_model(json_pack(
			       "[{s:{s:s,s:s,s:i,s:o}}]",
			       "conflict-information",
			       "conflict-status",
			       "request-inactive-other-active",
			       "conflict-cause", "overlapping-targets",
			       "retry-timer", 30, "conflict-scope", cs)) : NULL,
		       -1, -1);
}

static void srv_mitigate_put(struct srv *s, const struct srv_uri *u,
			     json_t *body, bool if_match,
			     coap_pdu_t *response, uint64_t now)
{
	struct srv_mitig *m;
	char why[160];
	json_t *e;

	if (!u->has_mid) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400),
			       "mid is mandatory in PUT");
		return;
	}
	m = srv_mitig_find(s, u->cuid, u->mid);
	if (if_match && !m) {
		/* RFC 9132 §4.4.3: an efficacy update for an unknown mid
		 * is dropped silently. */
		srv_no_reply(response);
		return;
	}
	if (!body) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400),
			       "missing or undecodable body");
		return;
	}
	e = srv_check_request(body, if_match, why, sizeof(why));
	if (!e) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400), why);
		return;
	}
	if (if_match) {
		if (!srv_same_scope(m->entry, e)) {
			srv_reply_diag(response, COAP_RESPONSE_CODE(400),
				       "efficacy update changes attributes");
			return;
		}
		json_object_set(m->entry, "attack-status",
				json_object_get(e, "attack-status"));
		m->lifetime = srv_lifetime(e);
		m->refreshed_ms = now;
		srv_reply_body(response, COAP_RESPONSE_CODE(204),
			       srv_put_answer(m), -1, -1);
		return;
	}
	if (s->mode == SRV_CONFLICT) {
		srv_reply_conflict(response, e);
		return;
	}
	if (m) {
		/* RFC 9132 §4.4.1: same mid again refreshes (or updates)
		 * the request: 2.04. */
		json_decref(m->entry);
		m->entry = json_deep_copy(e);
		m->lifetime = srv_lifetime(e);
		m->refreshed_ms = now;
		srv_reply_body(response, COAP_RESPONSE_CODE(204),
			       srv_put_answer(m), -1, -1);
		return;
	}
	if (s->nmitigs >= SRV_MAX_MITIGATIONS) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(503),
			       "test server: too many mitigations");
		return;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->entry = json_deep_copy(e))) {
		free(m);
		srv_reply_diag(response, COAP_RESPONSE_CODE(500),
			       "test server: out of memory");
		return;
	}
	strcpy(m->cuid, u->cuid);
	strcpy(m->cdid, u->cdid);
	m->has_cdid = u->has_cdid;
	m->mid = u->mid;
	m->lifetime = srv_lifetime(e);
	m->refreshed_ms = m->created_ms = now;
	m->status = ST_IN_PROGRESS;
	m->auto_pending = true;
	m->start_epoch = (uint64_t)time(NULL);
	m->next = s->mitigs;
	s->mitigs = m;
	s->nmitigs++;
	srv_reply_body(response, COAP_RESPONSE_CODE(201), srv_put_answer(m),
		       -1, -1);
	srv_notify_change(s, m);
}

static void srv_mitigate_get(struct srv *s, const struct srv_uri *u,
			     coap_session_t *session,
			     const coap_pdu_t *request, coap_pdu_t *response,
			     uint64_t now)
{
	coap_bin_const_t token = coap_pdu_get_token(request);
	int64_t observe = peer_opt_uint(request, COAP_OPTION_OBSERVE);
	struct srv_obs *o = srv_obs_find(s, session, token);
	json_t *scope;

	/* RFC 7641 §3.6 / RFC 9132 §4.4.2.1: Observe 1 cancels. A GET on
	 * the same token without Observe may be a follow-up block request
	 * (RFC 7959 §2.6) and leaves the observation alone. */
	if (o && observe == 1) {
		srv_obs_remove(s, o, "cancelled by GET");
		o = NULL;
	}
	scope = srv_collect(s, u->cuid, u->has_mid, u->mid, now, false, NULL);
	if (!scope || json_array_size(scope) == 0) {
		json_decref(scope);
		/* RFC 7641 §4.1: an error ends the observation. */
		if (o && observe == 0)
			srv_obs_remove(s, o, "GET found nothing");
		/* RFC 9132 §4.4.2: nothing for this client (or mid): 4.04. */
		srv_reply_diag(response, COAP_RESPONSE_CODE(404),
			       "no such mitigation");
		return;
	}
	if (observe == 0 && token.length <= sizeof(o->token)) {
		if (!o && s->nobservers < SRV_MAX_OBSERVERS) {
			o = calloc(1, sizeof(*o));
			if (o) {
				o->session = session;
				o->last_msg_id = COAP_INVALID_MID;
				memcpy(o->token, token.s, token.length);
				o->token_len = token.length;
				o->next = s->observers;
				s->observers = o;
				s->nobservers++;
			}
		}
		if (o) {
			strcpy(o->cuid, u->cuid);
			o->has_mid = u->has_mid;
			o->mid = u->mid;
			o->seq = (o->seq + 1) & SRV_OBSERVE_MASK;
			srv_reply_body(response, COAP_RESPONSE_CODE(205),
				       srv_mitigation_model(scope), o->seq,
				       -1);
			return;
		}
	}
	srv_reply_body(response, COAP_RESPONSE_CODE(205),
		       srv_mitigation_model(scope), -1, -1);
}

static void srv_mitigate_delete(struct srv *s, const struct srv_uri *u,
				coap_pdu_t *response)
{
	struct srv_mitig *m;

	if (!u->has_mid) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400),
			       "mid is mandatory in DELETE");
		return;
	}
	m = srv_mitig_find(s, u->cuid, u->mid);
	if (m)
		srv_mitig_terminate(s, m);
	/* RFC 9132 §4.4.4: 2.02 even when the mid is unknown. */
	coap_pdu_set_code(response, COAP_RESPONSE_CODE(202));
}

/* ---- /config ------------------------------------------------------------- */

static void srv_cfg_defaults(struct srv_cfg *c)
{
	for (size_t i = 0; i < ARRAY_SIZE(srv_params); i++) {
		*(uint32_t *)((char *)&c->mitigating + srv_params[i].off) =
			srv_params[i].def;
		*(uint32_t *)((char *)&c->idle + srv_params[i].off) =
			srv_params[i].def;
	}
}

static json_t *srv_dec_json(uint32_t hundredths)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%u.%02u", hundredths / 100,
		 hundredths % 100);
	return json_string(buf);
}

static json_t *srv_cfg_set_json(const struct srv_cfg_set *set, bool limits)
{
	json_t *o = json_object(), *p;

	for (size_t i = 0; o && i < ARRAY_SIZE(srv_params); i++) {
		const struct srv_param *sp = &srv_params[i];
		uint32_t cur = *(const uint32_t *)((const char *)set + sp->off);

		p = json_object();
		if (!p)
			break;
		if (sp->decimal) {
			if (limits) {
				json_object_set_new(p, "max-value-decimal",
						    srv_dec_json(sp->max));
				json_object_set_new(p, "min-value-decimal",
						    srv_dec_json(sp->min));
			}
			json_object_set_new(p, "current-value-decimal",
					    srv_dec_json(cur));
		} else {
			if (limits) {
				json_object_set_new(p, "max-value",
						    json_integer(sp->max));
				json_object_set_new(p, "min-value",
						    json_integer(sp->min));
			}
			json_object_set_new(p, "current-value",
					    json_integer(cur));
		}
		json_object_set_new(o, sp->name, p);
	}
	return o;
}

static json_t *srv_cfg_json(const struct srv_cfg *c, bool limits)
{
	return json_pack("{s:{s:o,s:o}}", CBOR_MSG_CONFIG,
			 "mitigating-config",
			 srv_cfg_set_json(&c->mitigating, limits),
			 "idle-config", srv_cfg_set_json(&c->idle, limits));
}

/* Hundredths from a "1.50" decimal string. */
static int srv_parse_dec(const char *s, uint32_t *out)
{
	unsigned whole = 0, frac = 0;
	int n = 0;

	if (sscanf(s, "%u%n", &whole, &n) != 1 || whole > 100000)
		return -1;
	if (s[n] == '.') {
		const char *f = s + n + 1;
		size_t fl = strspn(f, "0123456789");

		if (fl < 1 || fl > 2 || f[fl])
			return -1;
		frac = (unsigned)(f[0] - '0') * 10 +
		       (fl == 2 ? (unsigned)(f[1] - '0') : 0);
	} else if (s[n]) {
		return -1;
	}
	*out = whole * 100 + frac;
	return 0;
}

/* Applies one config set of a PUT (RFC 9132 §4.5.2). Returns 0, 400 or
 * 422 with a diagnostic; counts the parameters seen. */
static int srv_cfg_apply(json_t *jset, struct srv_cfg_set *set,
			 size_t *nparams, char *why, size_t why_size)
{
	const char *key;
	json_t *jp, *cv;

	json_object_foreach(jset, key, jp) {
		const struct srv_param *sp = NULL;
		uint32_t v;

		for (size_t i = 0; i < ARRAY_SIZE(srv_params); i++)
			if (strcmp(key, srv_params[i].name) == 0)
				sp = &srv_params[i];
		if (!sp) {
			snprintf(why, why_size, "unknown parameter %s", key);
			return 400;
		}
		cv = json_object_get(jp, sp->decimal ? "current-value-decimal" :
					 "current-value");
		if (!cv || json_object_size(jp) != 1) {
			snprintf(why, why_size, "%s: only current-value%s "
				 "allowed", key, sp->decimal ? "-decimal" : "");
			return 400;
		}
		if (sp->decimal) {
			if (!json_is_string(cv) ||
			    srv_parse_dec(json_string_value(cv), &v)) {
				snprintf(why, why_size, "%s: bad decimal", key);
				return 400;
			}
		} else {
			if (!json_is_integer(cv) ||
			    json_integer_value(cv) < 0 ||
			    json_integer_value(cv) > UINT32_MAX) {
				snprintf(why, why_size, "%s: bad value", key);
				return 400;
			}
			v = (uint32_t)json_integer_value(cv);
		}
		/* RFC 9132 §4.5.2: out of the acceptable range -> 4.22. */
		if (v < sp->min || v > sp->max) {
			snprintf(why, why_size, "%s out of range", key);
			return 422;
		}
		*(uint32_t *)((char *)set + sp->off) = v;
		(*nparams)++;
	}
	return 0;
}

static void srv_config(const struct srv_uri *u,
		       coap_session_t *session, coap_pdu_code_t method,
		       json_t *body, coap_pdu_t *response)
{
	struct srv_sess *ss = srv_sess_of(session);
	struct srv_cfg defaults, next;
	size_t nparams = 0;
	char why[160] = "";
	json_t *sc;
	int rc = 0;
	bool fresh;

	srv_cfg_defaults(&defaults);
	if (method == COAP_REQUEST_CODE_GET) {
		if (!u->has_sid) {
			/* RFC 9132 §4.5.1: discovery, current + limits. */
			srv_reply_body(response, COAP_RESPONSE_CODE(205),
				       srv_cfg_json(ss && ss->has_sid ?
						    &ss->cfg : &defaults, true),
				       -1, SRV_CONFIG_MAX_AGE);
		} else if (ss && ss->has_sid && ss->sid == u->sid) {
			srv_reply_body(response, COAP_RESPONSE_CODE(205),
				       srv_cfg_json(&ss->cfg, false), -1,
				       SRV_CONFIG_MAX_AGE);
		} else {
			srv_reply_diag(response, COAP_RESPONSE_CODE(404),
				       "unknown sid");
		}
		return;
	}
	if (method == COAP_REQUEST_CODE_DELETE) {
		/* RFC 9132 §4.5.4: back to defaults. */
		if (ss)
			ss->has_sid = false;
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(202));
		return;
	}
	if (!u->has_sid) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400),
			       "sid is mandatory in PUT");
		return;
	}
	sc = json_object_get(body, CBOR_MSG_CONFIG);
	if (!sc || json_object_size(body) != 1) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400),
			       "expected signal-config");
		return;
	}
	next = ss && ss->has_sid ? ss->cfg : defaults;
	if (json_object_get(sc, "mitigating-config"))
		rc = srv_cfg_apply(json_object_get(sc, "mitigating-config"),
				   &next.mitigating, &nparams, why,
				   sizeof(why));
	if (!rc && json_object_get(sc, "idle-config"))
		rc = srv_cfg_apply(json_object_get(sc, "idle-config"),
				   &next.idle, &nparams, why, sizeof(why));
	if (!rc && !nparams) {
		snprintf(why, sizeof(why), "no parameter given");
		rc = 400;
	}
	if (rc) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(rc), why);
		return;
	}
	fresh = !ss || !ss->has_sid || ss->sid != u->sid;
	if (ss) {
		ss->cfg = next;
		ss->sid = u->sid;
		ss->has_sid = true;
	}
	coap_pdu_set_code(response, COAP_RESPONSE_CODE(fresh ? 201 : 204));
}

/* ---- request dispatch ---------------------------------------------------- */

static const char *srv_method_name(coap_pdu_code_t code)
{
	switch (code) {
	case COAP_REQUEST_CODE_GET: return "GET";
	case COAP_REQUEST_CODE_POST: return "POST";
	case COAP_REQUEST_CODE_PUT: return "PUT";
	case COAP_REQUEST_CODE_DELETE: return "DELETE";
	default: return "?";
	}
}

/* Prints the request event; returns the decoded body (new reference) or
 * NULL, and whether the body failed to decode. */
static json_t *srv_record(coap_session_t *session, const coap_pdu_t *req,
			  const coap_string_t *query, const struct srv_uri *u,
			  bool *bad_body, char *why, size_t why_size)
{
	const uint8_t *data = NULL;
	size_t len = 0;
	int64_t cf = peer_opt_uint(req, COAP_OPTION_CONTENT_FORMAT);
	int64_t hl = peer_opt_uint(req, COAP_OPTION_HOP_LIMIT);
	int64_t obs = peer_opt_uint(req, COAP_OPTION_OBSERVE);
	const char *type;
	json_t *ev = srv_event("request"), *body;

	*bad_body = false;
	coap_get_data(req, &len, &data);
	if (COAP_PROTO_RELIABLE(coap_session_get_proto(session)))
		type = "tcp";
	else
		type = coap_pdu_get_type(req) == COAP_MESSAGE_CON ? "con" :
								    "non";
	if (!ev)
		return NULL;
	json_object_set_new(ev, "method",
			    json_string(srv_method_name(
				    coap_pdu_get_code(req))));
	json_object_set_new(ev, "path", json_string(u->path));
	json_object_set_new(ev, "cuid", srv_str_or_null(u->has_cuid,
							u->cuid));
	json_object_set_new(ev, "cdid", srv_str_or_null(u->has_cdid,
							u->cdid));
	json_object_set_new(ev, "mid", u->has_mid && !u->error ?
			    json_integer(u->mid) : json_null());
	if (u->res == RES_CONFIG)
		json_object_set_new(ev, "sid", u->has_sid && !u->error ?
				    json_integer(u->sid) : json_null());
	/* libcoap has already decremented Hop-Limit (RFC 8768 §3); report
	 * what was on the wire. */
	json_object_set_new(ev, "hop_limit", hl >= 0 ? json_integer(hl + 1) :
			    json_null());
	json_object_set_new(ev, "if_match", json_boolean(
		peer_opt_present(req, COAP_OPTION_IF_MATCH)));
	json_object_set_new(ev, "observe", obs >= 0 ? json_integer(obs) :
			    json_null());
	json_object_set_new(ev, "type", json_string(type));
	json_object_set_new(ev, "token", peer_hex_json(
		coap_pdu_get_token(req).s, coap_pdu_get_token(req).length));
	json_object_set_new(ev, "peer_identity", srv_identity(session));
	json_object_set_new(ev, "content_format", cf >= 0 ?
			    json_integer(cf) : json_null());
	json_object_set_new(ev, "query", query && query->length ?
			    peer_safe_string(query->s, query->length) :
			    json_null());
	peer_describe_payload(ev, data, len, cf, 0);
	body = json_object_get(ev, "body");
	if (json_is_object(body)) {
		json_incref(body);
	} else {
		body = NULL;
		if (len) {
			const char *e = json_string_value(
				json_object_get(ev, "decode_error"));

			*bad_body = true;
			snprintf(why, why_size, "%s",
				 e ? e : "body is not application/dots+cbor");
		}
	}
	json_object_del(ev, "diagnostic");
	peer_emit(ev);
	return body;
}

static void srv_on_request(coap_resource_t *resource, coap_session_t *session,
			   const coap_pdu_t *request,
			   const coap_string_t *query, coap_pdu_t *response)
{
	struct srv *s = srv_g;
	coap_pdu_code_t method = coap_pdu_get_code(request);
	int64_t cf = peer_opt_uint(request, COAP_OPTION_CONTENT_FORMAT);
	uint64_t now = peer_now_ms();
	struct srv_uri u;
	char why[200] = "";
	bool bad_body;
	json_t *body;

	(void)resource;
	s->rq_session = session;
	s->rq_block2 = peer_opt_uint(request, COAP_OPTION_BLOCK2);
	srv_parse_uri(request, &u);
	body = srv_record(session, request, query, &u, &bad_body, why,
			  sizeof(why));
	if (s->mode == SRV_SILENT) {
		srv_no_reply(response);
		goto out;
	}
	if (u.res == RES_UNKNOWN) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(404),
			       "unknown resource");
		goto out;
	}
	if (u.error) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400), u.error);
		goto out;
	}
	if (u.res != RES_HB && s->mode == SRV_REDIRECT) {
		srv_reply_redirect(s, response);
		goto out;
	}
	if (u.res != RES_HB && s->mode == SRV_ERROR) {
		srv_reply_injected(s, response);
		goto out;
	}
	if (method == COAP_REQUEST_CODE_POST ||
	    (u.res == RES_HB && method != COAP_REQUEST_CODE_PUT)) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(405),
			       "method not allowed");
		goto out;
	}
	/* RFC 9132 §3: bodies are application/dots+cbor. */
	if (method == COAP_REQUEST_CODE_PUT && cf >= 0 &&
	    cf != DG_CONTENT_FORMAT_DOTS_CBOR) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(415),
			       "content-format must be 271");
		goto out;
	}
	if (bad_body) {
		srv_reply_diag(response, COAP_RESPONSE_CODE(400), why);
		goto out;
	}
	switch (u.res) {
	case RES_MITIGATE:
		if (method == COAP_REQUEST_CODE_PUT)
			srv_mitigate_put(s, &u, body,
					 peer_opt_present(request,
							  COAP_OPTION_IF_MATCH),
					 response, now);
		else if (method == COAP_REQUEST_CODE_GET)
			srv_mitigate_get(s, &u, session, request, response,
					 now);
		else
			srv_mitigate_delete(s, &u, response);
		break;
	case RES_CONFIG:
		srv_config(&u, session, method, body, response);
		break;
	case RES_HB:
		if (body && !json_object_get(body, CBOR_MSG_HEARTBEAT)) {
			srv_reply_diag(response, COAP_RESPONSE_CODE(400),
				       "expected heartbeat");
			break;
		}
		/* RFC 9132 §4.7: 2.04 with no body. */
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(204));
		break;
	default:
		break;
	}
out:
	json_decref(body);
}

/* ---- our heartbeats (RFC 9132 §4.7: the server sends them too) ----------- */

static void srv_send_heartbeats(struct srv *s)
{
	static const char *const segs[] = { ".well-known", "dots", "hb" };
	json_t *model = json_pack("{s:{s:b}}", CBOR_MSG_HEARTBEAT,
				  "peer-hb-status", 1);
	struct dg_diag diag = { "" };
	uint8_t *buf = NULL;
	size_t len = 0;

	if (!model || cbor_encode(model, &buf, &len, &diag)) {
		peer_log("cannot encode a heartbeat: %s", diag.text);
		json_decref(model);
		return;
	}
	json_decref(model);
	for (struct srv_sess *ss = s->sessions; ss; ss = ss->next) {
		coap_session_t *cs = ss->session;
		coap_pdu_t *pdu;
		bool ok = true;

		if (coap_session_get_state(cs) !=
		    COAP_SESSION_STATE_ESTABLISHED)
			continue;
		pdu = coap_pdu_init(COAP_MESSAGE_NON, COAP_REQUEST_CODE_PUT,
				    coap_new_message_id(cs),
				    coap_session_max_pdu_size(cs));
		if (!pdu)
			continue;
		coap_session_new_token(cs, &ss->hb_token_len, ss->hb_token);
		ok = coap_add_token(pdu, ss->hb_token_len, ss->hb_token);
		for (size_t i = 0; ok && i < ARRAY_SIZE(segs); i++)
			ok = coap_add_option(pdu, COAP_OPTION_URI_PATH,
					     strlen(segs[i]),
					     (const uint8_t *)segs[i]);
		ok = ok && !peer_add_uint_option(pdu,
						 COAP_OPTION_CONTENT_FORMAT,
						 DG_CONTENT_FORMAT_DOTS_CBOR);
		ok = ok && coap_add_data(pdu, len, buf);
		if (!ok) {
			coap_delete_pdu(pdu);
			continue;
		}
		coap_send(cs, pdu);
	}
	free(buf);
}

static coap_response_t srv_on_response(coap_session_t *session,
				       const coap_pdu_t *sent,
				       const coap_pdu_t *received,
				       const coap_mid_t id)
{
	struct srv_sess *ss = srv_sess_of(session);
	coap_bin_const_t token = coap_pdu_get_token(received);
	const uint8_t *data = NULL;
	size_t len = 0;
	char code[8];
	json_t *ev;

	(void)sent;
	(void)id;
	/* Only our latest heartbeat is reported; answers to older ones are
	 * accepted silently. */
	if (!ss || !ss->hb_token_len || token.length != ss->hb_token_len ||
	    memcmp(token.s, ss->hb_token, token.length))
		return COAP_RESPONSE_OK;
	coap_get_data(received, &len, &data);
	ev = srv_event("hb-response");
	if (ev) {
		json_object_set_new(ev, "code", json_string(peer_code_str(
			coap_pdu_get_code(received), code)));
		json_object_set_new(ev, "peer_identity", srv_identity(session));
		peer_describe_payload(ev, data, len,
				      peer_opt_uint(received,
						    COAP_OPTION_CONTENT_FORMAT),
				      COAP_RESPONSE_CLASS(
					      coap_pdu_get_code(received)));
	}
	peer_emit(ev);
	return COAP_RESPONSE_OK;
}

/* ---- sessions and credentials -------------------------------------------- */

static int srv_on_event(coap_session_t *session, const coap_event_t event)
{
	struct srv *s = srv_g;
	struct srv_sess *ss;

	switch (event) {
	case COAP_EVENT_SERVER_SESSION_NEW:
		ss = calloc(1, sizeof(*ss));
		if (!ss)
			break;
		ss->session = session;
		ss->next = s->sessions;
		s->sessions = ss;
		coap_session_set_app_data(session, ss);
		break;
	case COAP_EVENT_SERVER_SESSION_DEL:
		srv_obs_drop_session(s, session, "session deleted");
		ss = srv_sess_of(session);
		for (struct srv_sess **pp = &s->sessions; ss && *pp;
		     pp = &(*pp)->next) {
			if (*pp == ss) {
				*pp = ss->next;
				break;
			}
		}
		free(ss);
		coap_session_set_app_data(session, NULL);
		break;
	case COAP_EVENT_DTLS_CLOSED:
	case COAP_EVENT_TCP_CLOSED:
	case COAP_EVENT_SESSION_CLOSED:
	case COAP_EVENT_DTLS_ERROR:
	case COAP_EVENT_TCP_FAILED:
	case COAP_EVENT_SESSION_FAILED:
		/* RFC 7641 §3.6: observations end with the session. */
		srv_obs_drop_session(s, session, "session closed");
		break;
	default:
		break;
	}
	return 0;
}

static const coap_bin_const_t *srv_on_psk_id(coap_bin_const_t *identity,
					     coap_session_t *session,
					     void *arg)
{
	struct srv *s = arg;
	const char *want = s->o.creds.psk_id;

	(void)session;
	if (!identity || identity->length != strlen(want) ||
	    memcmp(identity->s, want, identity->length)) {
		peer_log("rejecting unknown PSK identity");
		return NULL;
	}
	return &s->psk_key;
}

static int srv_on_cn(const char *cn, const uint8_t *der, size_t der_len,
		     coap_session_t *session, unsigned depth, int validated,
		     void *arg)
{
	struct srv_sess *ss = srv_sess_of(session);

	(void)arg;
	if (!validated)
		return 0;
	if (depth == 0 && ss) {
		/* libcoap hands us the SAN first: read the subject CN. */
		if (peer_cert_cn(der, der_len, ss->cert_cn,
				 sizeof(ss->cert_cn)))
			snprintf(ss->cert_cn, sizeof(ss->cert_cn), "%s",
				 cn ? cn : "");
	}
	return 1;
}

static int srv_setup_security(struct srv *s)
{
	const struct peer_creds *c = &s->o.creds;

	if (!peer_proto_secure(s->o.proto))
		return 0;
	if (c->psk_id) {
		coap_dtls_spsk_t sp;

		memset(&sp, 0, sizeof(sp));
		sp.version = COAP_DTLS_SPSK_SETUP_VERSION;
		sp.validate_id_call_back = srv_on_psk_id;
		sp.id_call_back_arg = s;
		s->psk_key.s = (const uint8_t *)c->psk_key;
		s->psk_key.length = strlen(c->psk_key);
		sp.psk_info.key = s->psk_key;
		return coap_context_set_psk2(s->ctx, &sp) ? 0 : -1;
	} else {
		coap_dtls_pki_t pki;

		memset(&pki, 0, sizeof(pki));
		pki.version = COAP_DTLS_PKI_SETUP_VERSION;
		/* Mutual authentication (RFC 9132 §8): the client must
		 * present a certificate issued by --ca. */
		pki.verify_peer_cert = 1;
		pki.check_common_ca = 1;
		pki.cert_chain_validation = 1;
		pki.cert_chain_verify_depth = 3;
		pki.validate_cn_call_back = srv_on_cn;
		pki.cn_call_back_arg = s;
		pki.pki_key.key_type = COAP_PKI_KEY_PEM;
		pki.pki_key.key.pem.ca_file = c->ca;
		pki.pki_key.key.pem.public_cert = c->cert;
		pki.pki_key.key.pem.private_key = c->key;
		return coap_context_set_pki(s->ctx, &pki) ? 0 : -1;
	}
}

/* libcoap 4.3.1 tells nobody about an RST answering a NON notification
 * except its log ("got RST for mid=0x..."): match it to the observer
 * whose last notification carried that message ID (RFC 7641 §3.6). */
static void srv_on_coap_log(int level, const char *msg)
{
	struct srv *s = srv_g;
	unsigned int mid;
	struct srv_obs *o, *next;

	(void)level;
	if (!s || sscanf(msg, "got RST for mid=0x%x", &mid) != 1)
		return;
	for (o = s->observers; o; o = next) {
		next = o->next;
		if (o->last_msg_id == (coap_mid_t)mid)
			srv_obs_remove(s, o, "RST");
	}
}

/* The real port of the endpoint (for --listen ...:0). */
static int srv_endpoint_port(coap_endpoint_t *ep)
{
	char buf[160], *sp, *colon;
	unsigned long port;

	snprintf(buf, sizeof(buf), "%s", coap_endpoint_str(ep));
	sp = strchr(buf, ' ');
	if (sp)
		*sp = '\0';
	colon = strrchr(buf, ':');
	if (!colon)
		return -1;
	port = strtoul(colon + 1, &sp, 10);
	if (*sp || port > 65535)
		return -1;
	return (int)port;
}

/* ---- stdin commands ------------------------------------------------------ */

static void srv_command_result(const char *line, bool ok, const char *error)
{
	json_t *ev = srv_event("command");
	char word[32] = "";

	sscanf(line, "%31s", word);
	if (!ev)
		return;
	json_object_set_new(ev, "ok", json_boolean(ok));
	json_object_set_new(ev, "command", json_string(word));
	json_object_set_new(ev, "line", json_string(line));
	if (error)
		json_object_set_new(ev, "error", json_string(error));
	peer_emit(ev);
}

static void srv_command(struct srv *s, char *line)
{
	char *save = NULL, *cmd, *arg;
	char copy[SRV_LINE_MAX];

	snprintf(copy, sizeof(copy), "%s", line);
	cmd = strtok_r(line, " \t\r", &save);
	if (!cmd)
		return;
	if (strcmp(cmd, "normal") == 0 || strcmp(cmd, "conflict") == 0 ||
	    strcmp(cmd, "silent") == 0) {
		s->mode = cmd[0] == 'n' ? SRV_NORMAL :
			  cmd[0] == 'c' ? SRV_CONFLICT : SRV_SILENT;
	} else if (strcmp(cmd, "redirect") == 0) {
		json_t *recs;

		arg = strtok_r(NULL, " \t\r", &save);
		if (!arg || strlen(arg) >= sizeof(s->redirect_host)) {
			srv_command_result(copy, false, "usage: redirect HOST "
					   "[IP...]");
			return;
		}
		recs = json_array();
		if (!recs) {
			srv_command_result(copy, false, "out of memory");
			return;
		}
		snprintf(s->redirect_host, sizeof(s->redirect_host), "%s", arg);
		while ((arg = strtok_r(NULL, " \t\r", &save)))
			json_array_append_new(recs, json_string(arg));
		json_decref(s->redirect_records);
		s->redirect_records = recs;
		s->mode = SRV_REDIRECT;
	} else if (strcmp(cmd, "error") == 0) {
		arg = strtok_r(NULL, " \t\r", &save);
		if (!arg || peer_parse_code(arg, &s->error_code) ||
		    COAP_RESPONSE_CLASS(s->error_code) < 4) {
			srv_command_result(copy, false, "usage: error CODE "
					   "(4.xx or 5.xx)");
			return;
		}
		s->mode = SRV_ERROR;
	} else if (strcmp(cmd, "status") == 0) {
		char *a1 = strtok_r(NULL, " \t\r", &save);
		char *a2 = strtok_r(NULL, " \t\r", &save);
		uint32_t mid, st;
		bool found = false;

		if (!a1 || !a2 || srv_parse_u32(a1, &mid) ||
		    srv_parse_u32(a2, &st) || !cbor_enum_label("status",
							      (int)st)) {
			srv_command_result(copy, false, "usage: status MID N "
					   "(N 1..8)");
			return;
		}
		for (struct srv_mitig *m = s->mitigs; m; m = m->next) {
			if (m->mid != mid || m->dead)
				continue;
			found = true;
			m->status = (int)st;
			m->auto_pending = false;
			srv_notify_change(s, m);
		}
		if (!found) {
			srv_command_result(copy, false, "no such mid");
			return;
		}
	} else if (strcmp(cmd, "quit") == 0) {
		s->quit = true;
	} else {
		srv_command_result(copy, false, "unknown command");
		return;
	}
	srv_command_result(copy, true, NULL);
}

/* Reads what stdin has (one read: poll said it would not block). */
static void srv_read_stdin(struct srv *s)
{
	char buf[1024];
	ssize_t n = read(0, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* EOF: keep serving; tests may simply not script us. */
		s->stdin_open = false;
		return;
	}
	for (ssize_t i = 0; i < n && !s->quit; i++) {
		if (buf[i] == '\n') {
			s->line[s->line_len] = '\0';
			if (s->line_overflow)
				srv_command_result("", false, "line too long");
			else
				srv_command(s, s->line);
			s->line_len = 0;
			s->line_overflow = false;
		} else if (s->line_len + 1 < sizeof(s->line)) {
			s->line[s->line_len++] = buf[i];
		} else {
			s->line_overflow = true;
		}
	}
}

/* ---- timers -------------------------------------------------------------- */

/* Runs what is due and returns the ms until the next deadline. */
static uint32_t srv_timers(struct srv *s, uint64_t now)
{
	uint64_t next = now + SRV_WAIT_MAX_MS, due;
	struct srv_mitig *m, *mnext;

	for (m = s->mitigs; m; m = mnext) {
		mnext = m->next;
		if (m->dead)
			continue;
		due = m->created_ms + s->o.status_delay_ms;
		if (m->auto_pending && now >= due) {
			m->auto_pending = false;
			m->status = ST_MITIGATED;
			srv_notify_change(s, m);
		} else if (m->auto_pending && due < next) {
			next = due;
		}
		if (m->lifetime < 0)
			continue;
		due = m->refreshed_ms + (uint64_t)m->lifetime * 1000;
		if (now >= due) {
			/* RFC 9132 §4.4.1: expired requests are removed. */
			srv_mitig_terminate(s, m);
			continue;
		}
		if (due < next)
			next = due;
	}
	if (now >= s->next_notify_ms) {
		uint64_t ival = s->o.notify_interval_ms;

		for (m = s->mitigs; m; m = m->next) {
			if (m->status != ST_MITIGATED)
				continue;
			/* Invented but plausible traffic: 1000 packets of
			 * 100 bytes per interval. */
			m->pkts += 1000;
			m->bytes += 100000;
			m->pps = ival ? 1000 * 1000 / ival : 0;
			m->bps = ival ? 100000 * 1000 / ival : 0;
		}
		srv_notify_periodic(s, now);
		s->next_notify_ms = now + ival;
	}
	if (s->next_notify_ms < next)
		next = s->next_notify_ms;
	if (s->o.heartbeat_ms) {
		if (now >= s->next_hb_ms) {
			if (s->mode != SRV_SILENT)
				srv_send_heartbeats(s);
			s->next_hb_ms = now + s->o.heartbeat_ms;
		}
		if (s->next_hb_ms < next)
			next = s->next_hb_ms;
	}
	return next > now ? (uint32_t)(next - now) : 0;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: dots-test-server --listen ADDR:PORT --transport dtls|tls|udp|tcp\n"
"         [--psk-id ID --psk-key KEY | --cert F --key F --ca F]\n"
"         [--status-delay-ms 500] [--notify-interval-ms 500]\n"
"         [--heartbeat-ms N] [--name NAME] [--debug LEVEL]\n"
"\n"
"A test DOTS server (RFC 9132). Port 0 picks a free port. One JSON line\n"
"per event on stdout: listening, request, command, hb-response.\n"
"Commands on stdin: conflict | redirect HOST [IP...] | error CODE |\n"
"silent | normal | status MID N | quit\n");
}

static int srv_parse_ms(const char *s, uint32_t *out)
{
	return srv_parse_u32(s, out) || *out > 86400000 ? -1 : 0;
}

static int srv_parse_args(struct srv_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "transport", required_argument, NULL, 't' },
		{ "psk-id", required_argument, NULL, 'i' },
		{ "psk-key", required_argument, NULL, 'k' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'K' },
		{ "ca", required_argument, NULL, 'a' },
		{ "status-delay-ms", required_argument, NULL, 's' },
		{ "notify-interval-ms", required_argument, NULL, 'n' },
		{ "heartbeat-ms", required_argument, NULL, 'b' },
		{ "name", required_argument, NULL, 'N' },
		{ "debug", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = NULL, *transport = NULL;
	uint32_t lvl;
	int c;

	o->status_delay_ms = 500;
	o->notify_interval_ms = 500;
	o->coap_log_level = LOG_WARNING;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 't': transport = optarg; break;
		case 'i': o->creds.psk_id = optarg; break;
		case 'k': o->creds.psk_key = optarg; break;
		case 'c': o->creds.cert = optarg; break;
		case 'K': o->creds.key = optarg; break;
		case 'a': o->creds.ca = optarg; break;
		case 'N': o->name = optarg; break;
		case 's':
			if (srv_parse_ms(optarg, &o->status_delay_ms))
				goto bad;
			break;
		case 'n':
			if (srv_parse_ms(optarg, &o->notify_interval_ms) ||
			    o->notify_interval_ms == 0)
				goto bad;
			break;
		case 'b':
			if (srv_parse_ms(optarg, &o->heartbeat_ms))
				goto bad;
			break;
		case 'd':
			if (srv_parse_u32(optarg, &lvl) || lvl > LOG_DEBUG)
				goto bad;
			o->coap_log_level = (int)lvl;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind != argc || !listen || !transport ||
	    peer_parse_transport(transport, &o->proto) ||
	    peer_split_hostport(listen, o->host, sizeof(o->host), &o->port,
				true) ||
	    peer_check_creds(&o->creds, o->proto))
		goto bad;
	return 0;
bad:
	usage(stderr);
	return -1;
}

static void srv_free(struct srv *s)
{
	while (s->observers)
		srv_obs_remove(s, s->observers, "shutdown");
	while (s->mitigs)
		srv_mitig_free(s, s->mitigs);
	if (s->ctx) {
		/* LIBRARY-NOTES: no event handler while the context dies. */
		coap_register_event_handler(s->ctx, NULL);
		while (s->sessions) {
			struct srv_sess *ss = s->sessions;

			s->sessions = ss->next;
			coap_session_set_app_data(ss->session, NULL);
			free(ss);
		}
		coap_free_context(s->ctx);
	}
	json_decref(s->redirect_records);
}

int main(int argc, char **argv)
{
	struct srv s;
	coap_address_t addr;
	coap_endpoint_t *ep;
	coap_resource_t *r;
	int port, rc = 1;
	json_t *ev;

	memset(&s, 0, sizeof(s));
	if (srv_parse_args(&s.o, argc, argv))
		return 2;
	srv_g = &s;
	peer_init(s.o.name, s.o.coap_log_level);
	peer_set_coap_log_hook(srv_on_coap_log);
	s.stdin_open = true;

	if (peer_resolve(s.o.host, s.o.port, true, s.o.proto, &addr))
		goto out;
	s.ctx = coap_new_context(NULL);
	if (!s.ctx)
		goto out;
	if (srv_setup_security(&s)) {
		peer_log("cannot set up credentials");
		goto out;
	}
	coap_register_event_handler(s.ctx, srv_on_event);
	coap_register_response_handler(s.ctx, srv_on_response);
	ep = coap_new_endpoint(s.ctx, &addr, s.o.proto);
	if (!ep) {
		peer_log("cannot listen on %s:%u", s.o.host,
			 (unsigned)s.o.port);
		goto out;
	}
	/* Every path goes to one handler: we parse Uri-Path ourselves. */
	r = coap_resource_unknown_init2(srv_on_request, 0);
	if (!r)
		goto out;
	coap_register_request_handler(r, COAP_REQUEST_GET, srv_on_request);
	coap_register_request_handler(r, COAP_REQUEST_DELETE, srv_on_request);
	coap_register_request_handler(r, COAP_REQUEST_POST, srv_on_request);
	coap_add_resource(s.ctx, r);

	port = srv_endpoint_port(ep);
	ev = srv_event("listening");
	if (ev) {
		json_object_set_new(ev, "port", json_integer(port));
		json_object_set_new(ev, "transport", json_string(
			s.o.proto == COAP_PROTO_DTLS ? "dtls" :
			s.o.proto == COAP_PROTO_TLS ? "tls" :
			s.o.proto == COAP_PROTO_UDP ? "udp" : "tcp"));
	}
	peer_emit(ev);

	s.next_notify_ms = peer_now_ms() + s.o.notify_interval_ms;
	s.next_hb_ms = peer_now_ms() + s.o.heartbeat_ms;
	while (!peer_stop && !s.quit) {
		bool stdin_ready = false;
		uint64_t now = peer_now_ms();
		uint32_t wait = srv_timers(&s, now);

		srv_flush(&s, now);
		/* Arms libcoap's timers after whatever we sent. */
		coap_io_process(s.ctx, COAP_IO_NO_WAIT);
		peer_wait(s.ctx, wait, s.stdin_open ? &stdin_ready : NULL);
		if (peer_stop)
			break;
		if (coap_io_process(s.ctx, COAP_IO_NO_WAIT) < 0) {
			peer_log("coap_io_process failed");
			break;
		}
		if (stdin_ready)
			srv_read_stdin(&s);
	}
	rc = 0;
out:
	peer_set_coap_log_hook(NULL);
	srv_free(&s);
	srv_g = NULL;
	peer_fini();
	return rc;
}
