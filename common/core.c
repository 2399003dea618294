/*
 * core.c: the map-mode B2BUA engine. See core.h for the contract.
 *
 * Object model (all owned by struct core):
 *   client_st   one per configured client: its upstream session (map mode),
 *               its cuids, its downstream observers.
 *   cuid_st     one cuid bound to one client (bound when the upstream first
 *               accepted a mitigation under it); holds its mitigations.
 *   mitig       an active mitigation: the scope the client asked for and
 *               the last status the upstream reported.
 *   dn_sess     a downstream (D)TLS session.
 *   up_sess     an upstream session and its state machine.
 *   up_req      a request the gateway sent (or queued) upstream, keyed by
 *               token; it remembers which downstream request waits for it.
 * Deadlines live in one binary heap of (time, object, generation) entries;
 * an object re-arms by bumping its generation, which voids older entries.
 */
#include "core.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbor.h"
#include "hmap.h"
#include "ident.h"
#include "metrics.h"
#include "../gateway/config.h"

#define LOG_DN "dn"
#define LOG_UP "up"
#define LOG_CORE "core"

#define MS_PER_S 1000u
#define NEVER UINT64_MAX
/* Without an RTT estimate, at most one NON request per 3 s (RFC 9132 §4.4). */
#define NON_RETRANSMIT_MS 3000u
/* With one, one per RTO, never below RFC 6298 §2.4's 1 s minimum. */
#define NON_RETRANSMIT_MIN_MS 1000u
#define RTT_GRANULARITY_MS 10u
/* A client repeating a NON request keeps its token (RFC 9132 §4.4.1);
 * after NON_LIFETIME (RFC 7252 §4.8.2) a token seen again is a new
 * request. */
#define NON_LIFETIME_MS 145000u
/* A status change reaches observers in NON notifications that the
 * network may lose: the gateway repeats the new state this many times,
 * one per 3 s (RFC 9132 §4.4.2.1), whatever the upstream's own pace. */
#define NOTIFY_REPEATS 9u
#define NOTIFY_REPEAT_MS 3000u
/* A (D)TLS handshake under loss needs many retransmissions; GnuTLS gives
 * one up after 60 s in all (libcoap 4.3.1 COAP_DTLS_RETRANSMIT_TOTAL_MS). */
#define CONNECT_TIMEOUT_MS 60000u
#define QUEUE_MAX_PER_UP 256u
#define OBSERVERS_MAX_PER_CLIENT 256u

#define UP_STATES(X)                                                        \
	X(UP_CONNECTING)  /* UP_OPEN sent, waiting for the handshake */      \
	X(UP_CONFIGURING) /* PUT/GET /config in flight (RFC 9132 §4.5) */    \
	X(UP_READY)       /* relaying */                                     \
	X(UP_BACKOFF)     /* down; reconnect_at says when to retry */
#define X_ENUM(n) n,
#define X_NAME(n) #n,
enum up_state { UP_STATES(X_ENUM) };
static const char *const up_state_names[] = { UP_STATES(X_NAME) };

#define REQ_KINDS(X)                                                       \
	X(REQ_RELAY_PUT)      /* a client's mitigation request */           \
	X(REQ_RELAY_EFFICACY) /* a client's efficacy update (If-Match) */   \
	X(REQ_RELAY_DELETE)   /* a client's withdrawal */                   \
	X(REQ_RESEND_PUT)     /* re-installing a mitigation after a reconnect */ \
	X(REQ_OBSERVE)        /* the gateway's own observation of a mitigation */ \
	X(REQ_CONFIG_PUT)     /* session configuration, hop by hop */       \
	X(REQ_CONFIG_GET)                                                   \
	X(REQ_HEARTBEAT)
enum req_kind { REQ_KINDS(X_ENUM) };
static const char *const req_kind_names[] = { REQ_KINDS(X_NAME) };

enum timer_kind { TK_DN, TK_UP, TK_REQ, TK_MITIG };

struct timer_ent {
	dg_time_ms when;
	uint64_t id;
	uint32_t gen;
	uint8_t kind;
};

struct client_st;
struct cuid_st;

struct mitig {
	struct hmap_node node; /* core->mitigs by id */
	struct mitig *next;    /* in cuid_st->mitigs */
	struct hmap_node mid_node; /* cuid_st->mids by mid */
	struct cuid_st *cs;
	uint64_t id;
	uint32_t mid;
	json_t *entry;   /* the request's scope entry (config nodes) */
	/* entry parsed once for the overlap check; object false when the
	 * parse ran out of memory (then the JSON entry is compared) */
	struct model_scope_targets targets;
	json_t *status;  /* upstream's non-config nodes, or NULL */
	int64_t lifetime;
	dg_time_ms expires;
	uint64_t obs_token; /* 0: not observed upstream */
	/* The client request that created it and what it was answered, for
	 * the client's repetitions of that request (RFC 9132 §4.4.1). */
	uint64_t dn_sid;
	uint8_t dn_token[CORE_TOKEN_MAX]; size_t dn_token_len;
	dg_time_ms dn_at;
	int dn_code;
	json_t *dn_body;
	uint32_t renotify_left;
	dg_time_ms next_renotify;
	uint32_t gen;
	/* metrics, from status: RFC 9132 status (0: none reported yet) and
	 * bytes, pkts, bps, pps dropped; a scrape must not parse JSON */
	int mx_status;
	double mx_dropped[4];
};

struct cuid_st {
	struct hmap_node node; /* core->cuids by hash(cuid) */
	struct cuid_st *next;  /* in client_st->cuids */
	struct client_st *owner;
	struct mitig *mitigs;
	struct hmap mids;      /* its mitigations by mid */
	char cuid[MODEL_ID_MAX + 1];
};

struct dn_obs {
	struct dn_obs *next; /* in client_st->observers */
	uint64_t dn_sid;
	uint8_t token[CORE_TOKEN_MAX]; size_t token_len;
	char cuid[MODEL_ID_MAX + 1];
	bool has_mid; uint32_t mid;
	struct model_query query;
	uint32_t seq;
};

struct up_sess;

struct client_st {
	const struct gw_client *cfg;
	struct up_sess *up;   /* map mode: this client's own upstream session */
	size_t n_dn;          /* downstream sessions open */
	struct cuid_st *cuids;
	struct dn_obs *observers;
	size_t n_observers;
	/* Derived from the credential the client last presented (its PSK
	 * identity, or its certificate's SPKI): what a server-domain
	 * gateway inserts as cdid (RFC 9132 §4.4.1.2). */
	char cdid[IDENT_LEN + 1];
};

struct dn_sess {
	struct hmap_node node;
	uint64_t sid;
	struct client_st *cl;
	int transport;
	char cdid[IDENT_LEN + 1];
	char peer[64];
	struct model_session_config cfg;
	bool has_cfg_sid; uint32_t cfg_sid;
	dg_time_ms last_rx, last_peer_hb, next_hb;
	uint64_t hb_token;
	uint32_t gen;
	dg_time_ms since; /* established (introspection) */
};

struct up_req {
	struct hmap_node node; /* core->reqs by token */
	struct up_req *next, *prev; /* in up_sess->reqs */
	struct up_sess *up;
	uint64_t token;
	enum req_kind kind;
	bool queued;           /* waiting for the session to become ready */
	bool answered;         /* REQ_OBSERVE: the registration was accepted */
	bool has_dn; uint64_t dn_sid, dn_req_id;
	uint8_t dn_token[CORE_TOKEN_MAX]; size_t dn_token_len;
	bool creating;         /* PUT of a mid the core did not have */
	uint32_t ntx;          /* transmissions so far */
	dg_time_ms first_tx;
	char cuid[MODEL_ID_MAX + 1];
	uint32_t mid;
	json_t *entry;         /* PUT: the scope entry being installed */
	dg_time_ms deadline, next_retx;
	struct core_msg msg;   /* kept for retransmission */
	uint32_t gen;
};

struct up_sess {
	struct hmap_node node;
	uint64_t id;
	const struct gw_upstream *cfg;
	struct client_st *owner;
	enum up_state state;
	bool reliable;
	dg_time_ms connect_deadline, reconnect_at, next_hb, last_peer_hb;
	uint32_t backoff_s;
	uint32_t missed_hb;
	bool hb_outstanding;
	struct model_session_config want, negotiated;
	/* RTT estimate (RFC 6298 §2) from unambiguous samples (Karn). */
	bool has_rtt;
	uint32_t srtt_ms, rttvar_ms;
	uint32_t config_sid;
	struct up_req *reqs;
	size_t nqueued;
	uint32_t gen;
	dg_time_ms ready_since; /* last became UP_READY (introspection) */
	/* A discovered upstream: the candidate tried (index in its list). */
	bool has_tgt;
	size_t cand;
	struct core_target tgt;
};

struct core {
	const struct gw_config *cfg;
	/* One record per configured client, allocated one by one so that
	 * sessions keep pointing at them across a reload. */
	struct client_st **clients;
	size_t nclients;
	/* The gateway's own client records, one per upstream used by an
	 * operator request (core_own_request), and its mid counter. */
	struct client_st **gw_own;
	size_t ngw_own;
	uint32_t own_next_mid;
	bool draining; /* every request answered with a redirection */
	/* Warnings a client can cause with each request share one budget. */
	struct dg_ratelimit rl_peer;
	struct hmap dn, up, reqs, cuids, mitigs;
	uint64_t next_up_id, next_mitig_id, token_state;
	struct timer_ent *heap;
	size_t heap_n, heap_cap;
	struct metrics_dots *metrics; /* NULL: none */
	/* Discovered upstreams' candidates, by upstream name (RFC 8973). */
	struct core_tlist **tlists;
	size_t ntlists;
};

/* A metrics family, or NULL (a no-op) when metrics are off. */
#define CORE_MX(c, f) ((c)->metrics ? (c)->metrics->f : NULL)

/* ---- small helpers ---------------------------------------------------------- */

static void *xrealloc_array(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	return realloc(p, n * size);
}

static struct core_action *act_push(struct core_actions *a,
				    enum core_act_type type)
{
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 8;
		struct core_action *v = xrealloc_array(a->v, ncap, sizeof(*v));
		if (!v)
			return NULL;
		a->v = v;
		a->cap = ncap;
	}
	struct core_action *x = &a->v[a->n++];
	memset(x, 0, sizeof(*x));
	x->type = type;
	x->msg.content_format = -1;
	return x;
}

static void msg_free(struct core_msg *m)
{
	free(m->path);
	free(m->payload);
	m->path = NULL;
	m->payload = NULL;
}

void core_actions_clear(struct core_actions *a)
{
	for (size_t i = 0; i < a->n; i++)
		msg_free(&a->v[i].msg);
	a->n = 0;
}

void core_actions_free(struct core_actions *a)
{
	core_actions_clear(a);
	free(a->v);
	a->v = NULL;
	a->cap = 0;
}

static int msg_copy(struct core_msg *dst, const struct core_msg *src)
{
	*dst = *src;
	dst->path = NULL;
	dst->payload = NULL;
	if (src->path && !(dst->path = strdup(src->path)))
		return DG_ENOMEM;
	if (src->payload_len) {
		dst->payload = malloc(src->payload_len);
		if (!dst->payload) {
			free(dst->path);
			dst->path = NULL;
			return DG_ENOMEM;
		}
		memcpy(dst->payload, src->payload, src->payload_len);
	}
	return 0;
}

static void token_put(uint64_t t, uint8_t *buf, size_t *len)
{
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(t >> (56 - 8 * i));
	*len = 8;
}

static bool token_get(const uint8_t *buf, size_t len, uint64_t *t)
{
	if (len != 8)
		return false;
	*t = 0;
	for (int i = 0; i < 8; i++)
		*t = *t << 8 | buf[i];
	return true;
}

/* Tokens are unpredictable to the peer (RFC 7252 §5.3.1 advises it) and
 * never 0, which marks "none". */
static uint64_t token_new(struct core *c)
{
	uint64_t t;

	do {
		c->token_state += 0x9e3779b97f4a7c15ULL;
		t = hmap_hash_u64(c->token_state);
	} while (t == 0);
	return t;
}

static uint8_t *encode_or_null(const json_t *model, size_t *len)
{
	uint8_t *buf = NULL;

	if (!model || cbor_encode(model, &buf, len, NULL) != 0) {
		*len = 0;
		return NULL;
	}
	return buf;
}

/* ---- timers -------------------------------------------------------------- */

static bool heap_less(const struct timer_ent *a, const struct timer_ent *b)
{
	return a->when < b->when;
}

static void heap_push(struct core *c, dg_time_ms when, uint8_t kind,
		      uint64_t id, uint32_t gen)
{
	if (when == NEVER)
		return;
	if (c->heap_n == c->heap_cap) {
		size_t ncap = c->heap_cap ? c->heap_cap * 2 : 64;
		struct timer_ent *v = xrealloc_array(c->heap, ncap, sizeof(*v));
		if (!v) {
			dg_err(LOG_CORE, "timer heap: out of memory");
			return;
		}
		c->heap = v;
		c->heap_cap = ncap;
	}
	size_t i = c->heap_n++;
	struct timer_ent e = { when, id, gen, kind };
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&e, &c->heap[p]))
			break;
		c->heap[i] = c->heap[p];
		i = p;
	}
	c->heap[i] = e;
}

static struct timer_ent heap_pop(struct core *c)
{
	struct timer_ent top = c->heap[0];
	struct timer_ent last = c->heap[--c->heap_n];
	size_t i = 0;

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct timer_ent *best = &last;
		if (l < c->heap_n && heap_less(&c->heap[l], best)) {
			m = l;
			best = &c->heap[l];
		}
		if (r < c->heap_n && heap_less(&c->heap[r], best))
			m = r;
		if (m == i)
			break;
		c->heap[i] = c->heap[m];
		i = m;
	}
	if (c->heap_n)
		c->heap[i] = last;
	return top;
}

dg_time_ms core_next_expiry(const struct core *c)
{
	return c->heap_n ? c->heap[0].when : NEVER;
}

/* ---- lookups --------------------------------------------------------------- */

static struct dn_sess *dn_find(const struct core *c, uint64_t sid)
{
	for (struct hmap_node *n = hmap_first(&c->dn, hmap_hash_u64(sid)); n;
	     n = hmap_next(n)) {
		struct dn_sess *s = hmap_entry(n, struct dn_sess, node);
		if (s->sid == sid)
			return s;
	}
	return NULL;
}

static struct up_sess *up_find(const struct core *c, uint64_t id)
{
	for (struct hmap_node *n = hmap_first(&c->up, hmap_hash_u64(id)); n;
	     n = hmap_next(n)) {
		struct up_sess *u = hmap_entry(n, struct up_sess, node);
		if (u->id == id)
			return u;
	}
	return NULL;
}

static struct up_req *req_find(const struct core *c, uint64_t token)
{
	for (struct hmap_node *n = hmap_first(&c->reqs, token); n;
	     n = hmap_next(n)) {
		struct up_req *r = hmap_entry(n, struct up_req, node);
		if (r->token == token)
			return r;
	}
	return NULL;
}

static struct mitig *mitig_by_id(const struct core *c, uint64_t id)
{
	for (struct hmap_node *n = hmap_first(&c->mitigs, hmap_hash_u64(id)); n;
	     n = hmap_next(n)) {
		struct mitig *m = hmap_entry(n, struct mitig, node);
		if (m->id == id)
			return m;
	}
	return NULL;
}

static struct cuid_st *cuid_find(const struct core *c, const char *cuid)
{
	uint64_t h = hmap_hash_bytes(cuid, strlen(cuid));

	for (struct hmap_node *n = hmap_first(&c->cuids, h); n; n = hmap_next(n)) {
		struct cuid_st *cs = hmap_entry(n, struct cuid_st, node);
		if (strcmp(cs->cuid, cuid) == 0)
			return cs;
	}
	return NULL;
}

static struct mitig *mitig_find(const struct cuid_st *cs, uint32_t mid)
{
	if (!cs)
		return NULL;
	for (struct hmap_node *n = hmap_first(&cs->mids, hmap_hash_u64(mid)); n;
	     n = hmap_next(n)) {
		struct mitig *m = hmap_entry(n, struct mitig, mid_node);
		if (m->mid == mid)
			return m;
	}
	return NULL;
}

static struct client_st *client_of(const struct core *c,
				   const struct gw_client *cfg)
{
	for (size_t i = 0; i < c->nclients; i++)
		if (c->clients[i]->cfg == cfg)
			return c->clients[i];
	return NULL;
}

static bool client_has_mitigations(const struct client_st *cl)
{
	for (const struct cuid_st *cs = cl->cuids; cs; cs = cs->next)
		if (cs->mitigs)
			return true;
	return false;
}

/* ---- replies ----------------------------------------------------------------- */

static void reply(struct core_actions *out, uint64_t dn_sid, uint64_t req_id,
		  int code, const json_t *body)
{
	struct core_action *a = act_push(out, CORE_ACT_REPLY);

	if (!a)
		return;
	a->dn_sid = dn_sid;
	a->req_id = req_id;
	a->msg.code = code;
	if (body) {
		a->msg.payload = encode_or_null(body, &a->msg.payload_len);
		if (a->msg.payload)
			a->msg.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		else
			a->msg.code = DG_CODE_INTERNAL;
	}
}

/* Error replies carry a diagnostic payload (RFC 7252 §5.5.2, RFC 9132 §9). */
static void reply_diag(struct core_actions *out, uint64_t dn_sid,
		       uint64_t req_id, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void reply_diag(struct core_actions *out, uint64_t dn_sid,
		       uint64_t req_id, int code, const char *fmt, ...)
{
	struct core_action *a = act_push(out, CORE_ACT_REPLY);
	char buf[256];
	va_list ap;

	if (!a)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	a->dn_sid = dn_sid;
	a->req_id = req_id;
	a->msg.code = code;
	a->msg.payload = malloc((size_t)n ? (size_t)n : 1);
	if (a->msg.payload) {
		memcpy(a->msg.payload, buf, (size_t)n);
		a->msg.payload_len = (size_t)n;
	}
}

/* The reply just appended for req_id, or NULL when appending failed (out
 * of memory): options are added to it only when it is really there. */
static struct core_action *last_reply(struct core_actions *out, uint64_t req_id)
{
	struct core_action *a = out->n ? &out->v[out->n - 1] : NULL;

	return a && a->type == CORE_ACT_REPLY && a->req_id == req_id ? a : NULL;
}

/* ---- status entries ---------------------------------------------------------- */

static const char *const nonconfig_members[] = {
	"status", "mitigation-start", "bytes-dropped", "bps-dropped",
	"pkts-dropped", "pps-dropped", "conflict-information",
};

static int64_t lifetime_left(const struct mitig *m, dg_time_ms now)
{
	if (m->lifetime < 0)
		return -1;
	if (m->expires <= now)
		return 0;
	return (int64_t)((m->expires - now + MS_PER_S - 1) / MS_PER_S);
}

/* The status entry a client sees: its own request, its mid, the lifetime
 * left, and what the upstream last reported (RFC 9132 §4.4.2). */
static json_t *mitig_entry(const struct mitig *m, dg_time_ms now)
{
	json_t *e = json_object();

	if (!e)
		return NULL;
	json_object_set_new(e, "mid", json_integer(m->mid));
	json_object_update(e, m->entry);
	json_object_del(e, "attack-status");
	json_object_set_new(e, "lifetime", json_integer(lifetime_left(m, now)));
	if (m->status) {
		json_object_update(e, m->status);
	} else {
		json_object_set_new(e, "status",
				    json_string("attack-mitigation-in-progress"));
	}
	return e;
}

static json_t *wrap_scope(json_t *entries)
{
	json_t *scope = json_object();
	json_t *top = json_object();

	if (!scope || !top || !entries) {
		json_decref(scope);
		json_decref(top);
		json_decref(entries);
		return NULL;
	}
	json_object_set_new(scope, "scope", entries);
	json_object_set_new(top, CBOR_MSG_MITIGATION, scope);
	return top;
}

/* ---- downstream observers ---------------------------------------------------- */

static void dn_notify_one(struct core *c, struct dn_obs *o, int code,
			  json_t *body, struct core_actions *out)
{
	struct core_action *a = act_push(out, CORE_ACT_DN_SEND);

	(void)c;
	if (!a)
		return;
	a->dn_sid = o->dn_sid;
	a->msg.code = code;
	/* Notifications are always NON (RFC 9132 §4.4.2.1). */
	a->msg.confirmable = false;
	memcpy(a->msg.token, o->token, o->token_len);
	a->msg.token_len = o->token_len;
	if (code / 100 == 2) {
		a->msg.has_observe = true;
		a->msg.observe = ++o->seq & 0xffffff;
	}
	metrics_add(CORE_MX(c, notifications), (const char *[]){ METRICS_DN }, 1);
	if (body) {
		a->msg.payload = encode_or_null(body, &a->msg.payload_len);
		if (a->msg.payload)
			a->msg.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
	}
}

/* Tells every observer of m's client that m changed. A cuid-wide observer
 * gets only the changed entry: smaller messages while under attack. */
static void notify_mitig(struct core *c, struct mitig *m, dg_time_ms now,
			 struct core_actions *out)
{
	struct client_st *cl = m->cs->owner;
	json_t *entry = NULL;

	for (struct dn_obs *o = cl->observers; o; o = o->next) {
		if (strcmp(o->cuid, m->cs->cuid) != 0)
			continue;
		if (o->has_mid && o->mid != m->mid)
			continue;
		if (!entry && !(entry = mitig_entry(m, now)))
			return;
		if (!model_query_match(&o->query, entry))
			continue;
		json_t *sel = model_entry_select(entry, o->query.content);
		json_t *arr = json_array();
		if (sel && arr)
			json_array_append_new(arr, sel);
		else
			json_decref(sel);
		json_t *body = wrap_scope(arr);
		if (body)
			dn_notify_one(c, o, DG_CODE_CONTENT, body, out);
		json_decref(body);
	}
	json_decref(entry);
}

static void obs_free(struct dn_obs *o)
{
	model_query_free(&o->query);
	free(o);
}

/* Drops cl's observations on session dn_sid: the one with this token, or
 * all of them when token is NULL (the session is gone). */
static void obs_drop(struct client_st *cl, uint64_t dn_sid,
		     const uint8_t *token, size_t token_len)
{
	struct dn_obs **p = &cl->observers;

	while (*p) {
		struct dn_obs *o = *p;
		if (o->dn_sid == dn_sid &&
		    (!token || (o->token_len == token_len &&
				memcmp(o->token, token, token_len) == 0))) {
			*p = o->next;
			cl->n_observers--;
			obs_free(o);
			if (token)
				return;
			continue;
		}
		p = &o->next;
	}
}

/* Ends the observations of a withdrawn mitigation with 4.04 (RFC 7641 §3.2). */
static void end_observers_of(struct core *c, struct client_st *cl,
			     const char *cuid, uint32_t mid,
			     struct core_actions *out)
{
	struct dn_obs **p = &cl->observers;

	while (*p) {
		struct dn_obs *o = *p;
		if (o->has_mid && o->mid == mid && strcmp(o->cuid, cuid) == 0) {
			dn_notify_one(c, o, DG_CODE_NOT_FOUND, NULL, out);
			*p = o->next;
			cl->n_observers--;
			obs_free(o);
			continue;
		}
		p = &o->next;
	}
}

/* ---- upstream requests ----------------------------------------------------------- */

static void req_arm(struct core *c, struct up_req *r)
{
	dg_time_ms when = r->deadline;

	if (!r->queued && r->next_retx < when)
		when = r->next_retx;
	heap_push(c, when, TK_REQ, r->token, ++r->gen);
}

static void req_unlink(struct core *c, struct up_req *r)
{
	hmap_remove(&c->reqs, &r->node);
	if (r->prev)
		r->prev->next = r->next;
	else
		r->up->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->queued)
		r->up->nqueued--;
	msg_free(&r->msg);
	json_decref(r->entry);
	free(r);
}

static const char *up_name(const struct up_sess *u)
{
	return u->cfg->name;
}

static char *mitigate_path(const char *cdid, const char *cuid, bool has_mid,
			   uint32_t mid)
{
	char buf[64 + 2 * MODEL_ID_MAX + IDENT_LEN];
	int n;

	if (cdid && *cdid)
		n = snprintf(buf, sizeof(buf),
			     "/.well-known/dots/mitigate/cdid=%s/cuid=%s", cdid,
			     cuid);
	else
		n = snprintf(buf, sizeof(buf), "/.well-known/dots/mitigate/cuid=%s",
			     cuid);
	if (has_mid && n > 0 && (size_t)n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - (size_t)n, "/mid=%" PRIu32, mid);
	return strdup(buf);
}

/* The cdid a server-domain gateway inserts (RFC 9132 §4.4.1.2): derived
 * from the credential the client presented, never taken from the client. */
static const char *client_cdid(const struct core *c, const struct client_st *cl,
			       char buf[IDENT_LEN + 1])
{
	if (!c->cfg->server_domain || !cl->cdid[0])
		return NULL;
	snprintf(buf, IDENT_LEN + 1, "%s", cl->cdid);
	return buf;
}

static void up_transmit(struct core *c, struct up_req *r, dg_time_ms now,
			struct core_actions *out)
{
	struct core_action *a = act_push(out, CORE_ACT_UP_SEND);

	(void)c;
	if (!a)
		return;
	if (!r->ntx++)
		r->first_tx = now;
	a->up_id = r->up->id;
	if (msg_copy(&a->msg, &r->msg)) {
		out->n--;
		return;
	}
	dg_debug(LOG_UP, "upstream=%s send %s token=%016" PRIx64 " %s", up_name(r->up),
		 req_kind_names[r->kind], r->token, r->msg.path);
}

static bool mitigating(const struct up_sess *u)
{
	return u->owner && client_has_mitigations(u->owner);
}

static const struct model_session_params *up_params(const struct up_sess *u)
{
	/* Agents switch sets when mitigation starts or stops (RFC 9132 §4.5). */
	return mitigating(u) ? &u->negotiated.mitigating : &u->negotiated.idle;
}

/* How long an unanswered NON request waits before its repetition: one
 * per RTO once an RTT estimate exists, else one per 3 s (RFC 9132
 * §4.4.1, RFC 8085 §3.1.3), without backoff (see req_timeout). */
static dg_time_ms up_non_interval(const struct up_sess *u)
{
	uint32_t rto;

	if (!u->has_rtt)
		return NON_RETRANSMIT_MS;
	rto = u->srtt_ms + (4 * u->rttvar_ms > RTT_GRANULARITY_MS ?
			    4 * u->rttvar_ms : RTT_GRANULARITY_MS);
	return rto < NON_RETRANSMIT_MIN_MS ? NON_RETRANSMIT_MIN_MS : rto;
}

/* Takes an RTT sample from the answer to r (RFC 6298 §2: alpha 1/8,
 * beta 1/4). Karn's rule: none from a repeated request, nor from a CON
 * the CoAP layer may have retransmitted (answered after its ACK_TIMEOUT,
 * RFC 7252 §4.2), nor from a notification. */
static void up_rtt_sample(struct up_sess *u, const struct up_req *r,
			  dg_time_ms now)
{
	dg_time_ms ack_ms = (dg_time_ms)up_params(u)->ack_timeout * 10;

	if (r->ntx != 1 || r->answered || now < r->first_tx ||
	    (r->msg.confirmable && now - r->first_tx >= ack_ms) ||
	    now - r->first_tx > UINT32_MAX / 8)
		return;
	uint32_t x = (uint32_t)(now - r->first_tx);
	if (!u->has_rtt) {
		u->srtt_ms = x;
		u->rttvar_ms = x / 2;
		u->has_rtt = true;
		return;
	}
	uint32_t dev = u->srtt_ms > x ? u->srtt_ms - x : x - u->srtt_ms;
	u->rttvar_ms = (3 * u->rttvar_ms + dev) / 4;
	u->srtt_ms = (7 * u->srtt_ms + x) / 8;
}

/*
 * Creates a request on u, not yet sent: the caller sets options on r->msg
 * and calls req_go(). Returns NULL when out of memory or when the queue of
 * a session that is not ready is full.
 */
static struct up_req *up_request(struct core *c, struct up_sess *u,
				 enum req_kind kind, int method, char *path,
				 const json_t *body, dg_time_ms now)
{
	struct up_req *r = calloc(1, sizeof(*r));
	bool direct = u->state == UP_READY ||
		      (u->state == UP_CONFIGURING &&
		       (kind == REQ_CONFIG_PUT || kind == REQ_CONFIG_GET ||
			kind == REQ_HEARTBEAT));

	if (!r || !path || (!direct && u->nqueued >= QUEUE_MAX_PER_UP)) {
		free(r);
		free(path);
		return NULL;
	}
	r->up = u;
	r->kind = kind;
	r->token = token_new(c);
	r->msg.code = method;
	r->msg.path = path;
	r->msg.content_format = -1;
	/* Session configuration is CON, everything else NON (RFC 9132 §4.4,
	 * §4.5, §4.7); io ignores the type on reliable transports. */
	r->msg.confirmable = kind == REQ_CONFIG_PUT || kind == REQ_CONFIG_GET;
	token_put(r->token, r->msg.token, &r->msg.token_len);
	if (body) {
		r->msg.payload = encode_or_null(body, &r->msg.payload_len);
		if (!r->msg.payload) {
			msg_free(&r->msg);
			free(r);
			return NULL;
		}
		r->msg.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
	}
	if (hmap_insert(&c->reqs, &r->node, r->token)) {
		msg_free(&r->msg);
		free(r);
		return NULL;
	}
	r->next = u->reqs;
	if (u->reqs)
		u->reqs->prev = r;
	u->reqs = r;
	/* Heartbeats are judged by the heartbeat timer, not a deadline. */
	r->deadline = kind == REQ_HEARTBEAT ?
			      NEVER : now + (dg_time_ms)c->cfg->request_timeout * MS_PER_S;
	r->next_retx = NEVER;
	if (!direct) {
		r->queued = true;
		u->nqueued++;
	}
	return r;
}

/* Sends r now unless it waits for its session; arms its timers. */
static void req_go(struct core *c, struct up_req *r, dg_time_ms now,
		   struct core_actions *out)
{
	if (!r->queued) {
		if (!r->up->reliable && !r->msg.confirmable &&
		    r->kind != REQ_HEARTBEAT)
			r->next_retx = now + up_non_interval(r->up);
		up_transmit(c, r, now, out);
	}
	req_arm(c, r);
}

/* ---- mitigations ------------------------------------------------------------------ */

static void mitig_arm(struct core *c, struct mitig *m)
{
	dg_time_ms when = m->lifetime < 0 ? NEVER : m->expires;

	if (m->renotify_left && m->next_renotify < when)
		when = m->next_renotify;
	heap_push(c, when, TK_MITIG, m->id, ++m->gen);
}

static struct cuid_st *cuid_bind(struct core *c, struct client_st *cl,
				 const char *cuid)
{
	struct cuid_st *cs = cuid_find(c, cuid);

	if (cs)
		return cs->owner == cl ? cs : NULL;
	cs = calloc(1, sizeof(*cs));
	if (!cs)
		return NULL;
	snprintf(cs->cuid, sizeof(cs->cuid), "%s", cuid);
	cs->owner = cl;
	if (hmap_insert(&c->cuids, &cs->node, hmap_hash_bytes(cuid, strlen(cuid)))) {
		free(cs);
		return NULL;
	}
	cs->next = cl->cuids;
	cl->cuids = cs;
	return cs;
}

static void up_maybe_release(struct core *c, struct client_st *cl,
			     struct core_actions *out);

static void cuid_maybe_unbind(struct core *c, struct cuid_st *cs)
{
	if (cs->mitigs)
		return;
	/* Observers on an unbound cuid stay; they get 4.04 on GET anyway. */
	struct cuid_st **p = &cs->owner->cuids;
	while (*p && *p != cs)
		p = &(*p)->next;
	if (*p)
		*p = cs->next;
	hmap_remove(&c->cuids, &cs->node);
	hmap_free(&cs->mids);
	free(cs);
}

static void observe_cancel(struct core *c, struct mitig *m)
{
	if (!m->obs_token)
		return;
	struct up_req *r = req_find(c, m->obs_token);
	if (r)
		req_unlink(c, r);
	m->obs_token = 0;
}

/* What a mitigation owns; the caller has unlinked it. */
static void mitig_free(struct mitig *m)
{
	json_decref(m->entry);
	json_decref(m->status);
	model_scope_targets_free(&m->targets);
	json_decref(m->dn_body);
	free(m);
}

static void mitig_remove(struct core *c, struct mitig *m,
			 struct core_actions *out)
{
	struct cuid_st *cs = m->cs;
	struct client_st *cl = cs->owner;
	struct mitig **p = &cs->mitigs;

	while (*p && *p != m)
		p = &(*p)->next;
	if (*p)
		*p = m->next;
	end_observers_of(c, cl, cs->cuid, m->mid, out);
	observe_cancel(c, m);
	hmap_remove(&c->mitigs, &m->node);
	hmap_remove(&cs->mids, &m->mid_node);
	mitig_free(m);
	cuid_maybe_unbind(c, cs);
	up_maybe_release(c, cl, out);
}

static void observe_start(struct core *c, struct mitig *m, dg_time_ms now,
			  struct core_actions *out)
{
	struct client_st *cl = m->cs->owner;
	struct up_sess *u = cl->up;
	char cdid[IDENT_LEN + 1];

	if (!u || u->state != UP_READY || m->obs_token)
		return;
	char *path = mitigate_path(client_cdid(c, cl, cdid), m->cs->cuid,
				   true, m->mid);
	struct up_req *r = up_request(c, u, REQ_OBSERVE, CORE_GET, path, NULL,
				      now);
	if (!r)
		return;
	r->msg.has_observe = true;
	r->msg.observe = 0;
	r->msg.has_hop_limit = true;
	r->msg.hop_limit = c->cfg->hop_limit;
	snprintf(r->cuid, sizeof(r->cuid), "%s", m->cs->cuid);
	r->mid = m->mid;
	m->obs_token = r->token;
	req_go(c, r, now, out);
}

/* Keeps what the metrics collector needs of m->status, parsed once. */
static void mx_take_status(struct mitig *m)
{
	static const char *const drops[] = {
		"bytes-dropped", "pkts-dropped", "bps-dropped", "pps-dropped",
	};
	const char *sv = json_string_value(json_object_get(m->status, "status"));
	const char *label;

	m->mx_status = 0;
	for (int st = 1; sv && (label = cbor_enum_label("status", st)); st++)
		if (strcmp(sv, label) == 0)
			m->mx_status = st;
	for (size_t i = 0; i < 4; i++) {
		/* uint64 leaves are JSON strings (RFC 7951 §6.1) */
		const char *v = json_string_value(json_object_get(m->status, drops[i]));
		m->mx_dropped[i] = v ? strtod(v, NULL) : 0;
	}
}

/* Takes the non-config nodes of an upstream status entry. */
static void mitig_take_status(struct mitig *m, const json_t *e, dg_time_ms now)
{
	json_t *st = json_object();

	if (!st)
		return;
	for (size_t i = 0; i < sizeof(nonconfig_members) / sizeof(nonconfig_members[0]); i++) {
		json_t *v = json_object_get(e, nonconfig_members[i]);
		if (v)
			json_object_set(st, nonconfig_members[i], v);
	}
	json_decref(m->status);
	m->status = st;
	mx_take_status(m);
	json_t *lt = json_object_get(e, "lifetime");
	if (json_is_integer(lt)) {
		json_int_t v = json_integer_value(lt);
		m->lifetime = v < 0 ? -1 : v;
		if (v >= 0)
			m->expires = now + (dg_time_ms)v * MS_PER_S;
	}
}

/* Same trigger type and overlapping targets (RFC 9132 §4.4.1.3), from
 * the pre-parsed scopes when both have one. */
static bool mitig_overlap(const struct mitig *a, const struct mitig *b)
{
	if (a->targets.object && b->targets.object)
		return a->targets.trigger == b->targets.trigger &&
		       model_scope_targets_overlap(&a->targets, &b->targets);
	return model_scope_trigger(a->entry) == model_scope_trigger(b->entry) &&
	       model_scope_overlap(a->entry, b->entry, NULL);
}

/* Installs or refreshes the local copy of a mitigation the upstream just
 * accepted with 2.01/2.04. *entry (the request's own copy of the scope
 * entry, or NULL) is taken: no second copy. */
static struct mitig *mitig_accept(struct core *c, struct client_st *cl,
				  const char *cuid, uint32_t mid,
				  json_t **entry, const json_t *rsp_body,
				  dg_time_ms now, struct core_actions *out)
{
	struct cuid_st *cs = cuid_bind(c, cl, cuid);

	if (!cs) {
		dg_warn(LOG_CORE, "client=%s cuid=%s: cannot bind (in use by another client or out of memory)",
			cl->cfg->name, cuid);
		return NULL;
	}
	struct mitig *m = mitig_find(cs, mid);
	bool created = !m;
	if (!m) {
		m = calloc(1, sizeof(*m));
		if (!m) {
			cuid_maybe_unbind(c, cs);
			return NULL;
		}
		m->id = ++c->next_mitig_id;
		m->mid = mid;
		m->cs = cs;
		if (hmap_insert(&c->mitigs, &m->node, hmap_hash_u64(m->id))) {
			free(m);
			cuid_maybe_unbind(c, cs);
			return NULL;
		}
		if (hmap_insert(&cs->mids, &m->mid_node, hmap_hash_u64(mid))) {
			hmap_remove(&c->mitigs, &m->node);
			free(m);
			cuid_maybe_unbind(c, cs);
			return NULL;
		}
		m->next = cs->mitigs;
		cs->mitigs = m;
	}
	bool changed = created;
	if (*entry) {
		json_t *copy = *entry;
		*entry = NULL;
		json_object_del(copy, "attack-status");
		json_decref(m->entry);
		m->entry = copy;
		changed = true;
	}
	if (!m->entry)
		m->entry = json_object();
	if (changed || !m->targets.object) {
		model_scope_targets_free(&m->targets);
		(void)model_scope_targets_parse(m->entry, &m->targets);
	}
	m->lifetime = model_scope_lifetime(m->entry);
	/* The upstream may grant a different lifetime (RFC 9132 §4.4.1.3). */
	const json_t *rs = json_object_get(json_object_get(rsp_body, CBOR_MSG_MITIGATION), "scope");
	for (size_t i = 0; json_is_array(rs) && i < json_array_size(rs); i++) {
		const json_t *e = json_array_get(rs, i);
		json_t *jmid = json_object_get(e, "mid");
		json_t *lt = json_object_get(e, "lifetime");
		if (json_is_integer(jmid) && json_integer_value(jmid) == mid &&
		    json_is_integer(lt))
			m->lifetime = json_integer_value(lt) < 0 ? -1 : json_integer_value(lt);
	}
	if (m->lifetime >= 0)
		m->expires = now + (dg_time_ms)m->lifetime * MS_PER_S;
	mitig_arm(c, m);

	if (created) {
		dg_info(LOG_CORE, "client=%s cuid=%s mid=%" PRIu32 " mitigation active upstream=%s lifetime=%" PRId64,
			cl->cfg->name, cuid, mid, cl->up ? up_name(cl->up) : "-",
			m->lifetime);
		/* A higher mid replaces overlapping lower ones of the same
		 * trigger type; the upstream deleted them (RFC 9132 §4.4.1.3). */
		struct mitig *o = cs->mitigs, *next;
		for (; o; o = next) {
			next = o->next;
			if (o != m && o->mid < mid && mitig_overlap(o, m)) {
				dg_info(LOG_CORE, "client=%s cuid=%s mid=%" PRIu32 " replaced by mid=%" PRIu32,
					cl->cfg->name, cuid, o->mid, mid);
				mitig_remove(c, o, out);
			}
		}
	}
	observe_start(c, m, now, out);
	notify_mitig(c, m, now, out);
	return m;
}

/* ---- upstream sessions -------------------------------------------------------------- */

static void up_arm(struct core *c, struct up_sess *u)
{
	dg_time_ms when = NEVER;

	switch (u->state) {
	case UP_CONNECTING:
		when = u->connect_deadline;
		break;
	case UP_CONFIGURING:
	case UP_READY:
		when = u->next_hb;
		break;
	case UP_BACKOFF:
		when = u->reconnect_at;
		break;
	}
	heap_push(c, when, TK_UP, u->id, ++u->gen);
}

static void up_set_state(struct up_sess *u, enum up_state st)
{
	if (u->state != st)
		dg_debug(LOG_UP, "upstream=%s %s -> %s", up_name(u),
			 up_state_names[u->state], up_state_names[st]);
	u->state = st;
}

/* ---- discovered upstreams: the candidate a session tries ----------------------------- */

struct core_tlist {
	char name[65];
	size_t n;
	struct core_target t[CORE_TARGETS_MAX];
};

static struct core_tlist *tlist_find(const struct core *c, const char *name)
{
	for (size_t i = 0; name && i < c->ntlists; i++)
		if (strcmp(c->tlists[i]->name, name) == 0)
			return c->tlists[i];
	return NULL;
}

/* A discovered candidate that is not the last gets this long: RFC 9132
 * §4.3 wants the next one tried soon (this is the sequential stand-in for
 * its happy eyeballs); the last keeps CONNECT_TIMEOUT_MS, loss needs it. */
#define CANDIDATE_CONNECT_MS 10000u

/* Whether u's current candidate has another after it. */
static bool up_has_next(const struct core *c, const struct up_sess *u)
{
	const struct core_tlist *l = u->has_tgt ? tlist_find(c, u->cfg->name) : NULL;

	return l && u->cand + 1 < l->n;
}

static bool target_same(const struct core_target *a, const struct core_target *b)
{
	return strcmp(a->address, b->address) == 0 && a->port == b->port &&
	       a->transport == b->transport && strcmp(a->ref_id, b->ref_id) == 0;
}

/* UP_OPEN of a discovered upstream goes to its current candidate. */
static void up_target_fill(struct core *c, struct up_sess *u,
			   struct core_action *a)
{
	const struct core_tlist *l = tlist_find(c, u->cfg->name);

	u->has_tgt = l && l->n;
	if (!u->has_tgt) {
		u->cand = 0;
		u->reliable = gw_transport_reliable(u->cfg->transport);
		return;
	}
	if (u->cand >= l->n)
		u->cand = 0;
	u->tgt = l->t[u->cand];
	u->reliable = gw_transport_reliable(u->tgt.transport);
	a->has_target = true;
	a->target = u->tgt;
	dg_info(LOG_UP, "upstream=%s candidate %zu/%zu: %s port %u (%s)", up_name(u),
		u->cand + 1, l->n, u->tgt.address, u->tgt.port,
		u->reliable ? "stream" : "datagram");
}

static void up_open(struct core *c, struct up_sess *u, dg_time_ms now,
		    struct core_actions *out)
{
	struct core_action *a = act_push(out, CORE_ACT_UP_OPEN);

	if (!a)
		return;
	a->up_id = u->id;
	a->upstream = u->cfg;
	up_target_fill(c, u, a);
	up_set_state(u, UP_CONNECTING);
	u->connect_deadline = now + CONNECT_TIMEOUT_MS;
	if (up_has_next(c, u))
		u->connect_deadline = now + CANDIDATE_CONNECT_MS;
	u->missed_hb = 0;
	u->hb_outstanding = false;
	up_arm(c, u);
}

static struct up_sess *up_create(struct core *c, struct client_st *cl,
				 dg_time_ms now, struct core_actions *out)
{
	const struct gw_upstream *ucfg = cl->cfg->upstream;
	struct up_sess *u;

	if (!ucfg || !(u = calloc(1, sizeof(*u))))
		return NULL;
	u->id = ++c->next_up_id;
	u->cfg = ucfg;
	u->owner = cl;
	u->reliable = gw_transport_reliable(ucfg->transport);
	u->backoff_s = ucfg->reconnect_min;
	model_session_defaults(&u->want);
	u->want.mitigating.heartbeat_interval = ucfg->heartbeat_interval;
	u->want.idle.heartbeat_interval = ucfg->heartbeat_interval;
	u->want.mitigating.missing_hb_allowed = ucfg->missing_hb_allowed;
	u->want.idle.missing_hb_allowed = ucfg->missing_hb_allowed;
	u->negotiated = u->want;
	if (hmap_insert(&c->up, &u->node, hmap_hash_u64(u->id))) {
		free(u);
		return NULL;
	}
	cl->up = u;
	dg_info(LOG_UP, "upstream=%s opening for client=%s", ucfg->name, cl->cfg->name);
	up_open(c, u, now, out);
	return u;
}

/* Drops the gateway's own requests on u (re-sent on the next session).
 * A client's request waits for the next session until its own deadline
 * (request-timeout): under loss a reconnection often succeeds within it.
 * Past that, the client gets 5.03 with a retry hint (RFC 9132 §9). */
static void up_fail_requests(struct core *c, struct up_sess *u,
			     const char *why, dg_time_ms now,
			     struct core_actions *out)
{
	struct up_req *next;

	for (struct up_req *r = u->reqs; r; r = next) {
		next = r->next;
		if (r->has_dn && now < r->deadline) {
			if (!r->queued) {
				r->queued = true;
				u->nqueued++;
			}
			r->next_retx = NEVER;
			req_arm(c, r);
			continue;
		}
		if (r->has_dn) {
			struct core_action *a;
			reply_diag(out, r->dn_sid, r->dn_req_id, DG_CODE_UNAVAILABLE,
				   "upstream %s: %s", up_name(u), why);
			a = out->n ? &out->v[out->n - 1] : NULL;
			if (a && a->type == CORE_ACT_REPLY) {
				a->msg.has_max_age = true;
				a->msg.max_age = u->backoff_s;
			}
		}
		if (r->kind == REQ_OBSERVE) {
			struct cuid_st *cs = cuid_find(c, r->cuid);
			struct mitig *m = mitig_find(cs, r->mid);
			if (m && m->obs_token == r->token)
				m->obs_token = 0;
		}
		req_unlink(c, r);
	}
}

/*
 * A session to a discovered upstream that could not be established tries
 * the next candidate at once (RFC 8973 §4 order; a sequential form of
 * RFC 9132 §4.3's happy eyeballs). Returns whether it did; otherwise the
 * next attempt starts from the first candidate again.
 */
static bool up_try_next(struct core *c, struct up_sess *u, const char *why,
			dg_time_ms now, struct core_actions *out)
{
	const struct core_tlist *l = u->has_tgt ? tlist_find(c, u->cfg->name) : NULL;
	struct core_action *a;

	if (!l || (u->state != UP_CONNECTING && u->state != UP_CONFIGURING) ||
	    u->cand + 1 >= l->n) {
		u->cand = 0;
		return false;
	}
	dg_warn(LOG_UP, "upstream=%s %s port %u: %s; trying the next candidate",
		up_name(u), u->tgt.address, u->tgt.port, why);
	if ((a = act_push(out, CORE_ACT_UP_CLOSE)))
		a->up_id = u->id;
	u->cand++;
	up_open(c, u, now, out);
	return true;
}

static void up_down(struct core *c, struct up_sess *u, const char *why,
		    dg_time_ms now, struct core_actions *out)
{
	struct core_action *a;

	if (up_try_next(c, u, why, now, out))
		return;

	dg_warn(LOG_UP, "upstream=%s session down (%s); reconnecting in %" PRIu32 " s",
		up_name(u), why, u->backoff_s);
	if (u->state != UP_BACKOFF && (a = act_push(out, CORE_ACT_UP_CLOSE)))
		a->up_id = u->id;
	up_fail_requests(c, u, why, now, out);
	up_set_state(u, UP_BACKOFF);
	u->reconnect_at = now + (dg_time_ms)u->backoff_s * MS_PER_S;
	/* Exponential backoff between the configured bounds (RFC 9132 §4.7
	 * asks for 60 s at least between attempts after a heartbeat loss;
	 * reconnect-min lets a lab go faster). */
	u->backoff_s = u->backoff_s * 2 > u->cfg->reconnect_max ?
			       u->cfg->reconnect_max : u->backoff_s * 2;
	up_arm(c, u);
}

static void up_free(struct core *c, struct up_sess *u)
{
	while (u->reqs)
		req_unlink(c, u->reqs);
	hmap_remove(&c->up, &u->node);
	if (u->owner && u->owner->up == u)
		u->owner->up = NULL;
	free(u);
}

/* Map mode: the upstream session lives while its client is connected or
 * has a mitigation to keep alive. */
static void up_maybe_release(struct core *c, struct client_st *cl,
			     struct core_actions *out)
{
	struct up_sess *u = cl->up;

	if (!u || cl->n_dn || client_has_mitigations(cl))
		return;
	for (struct up_req *r = u->reqs; r; r = r->next)
		if (r->has_dn)
			return; /* a withdrawal still in flight */
	struct core_action *a = act_push(out, CORE_ACT_UP_CLOSE);
	if (a) {
		a->up_id = u->id;
		a->final = true;
	}
	dg_info(LOG_UP, "upstream=%s closing: client=%s gone and nothing to keep",
		up_name(u), cl->cfg->name);
	up_free(c, u);
}

static void up_send_heartbeat(struct core *c, struct up_sess *u, dg_time_ms now,
			      struct core_actions *out)
{
	const struct model_session_params *p = up_params(u);
	dg_time_ms interval = (dg_time_ms)p->heartbeat_interval * MS_PER_S;

	if (!p->heartbeat_interval) {
		u->next_hb = NEVER;
		return;
	}
	if (u->hb_outstanding) {
		u->missed_hb++;
		metrics_add(CORE_MX(c, hb_missed), (const char *[]){ u->cfg->name }, 1);
		if (u->missed_hb >= p->missing_hb_allowed) {
			up_down(c, u, "missing heartbeats", now, out);
			return;
		}
	}
	/* peer-hb-status: did the server's own heartbeats reach us within
	 * two intervals (RFC 9132 §4.7)? */
	bool peer_ok = u->last_peer_hb && now - u->last_peer_hb <= 2 * interval;
	json_t *body = model_build_heartbeat(peer_ok);
	struct up_req *old = NULL;
	for (struct up_req *r = u->reqs; r; r = r->next)
		if (r->kind == REQ_HEARTBEAT)
			old = r;
	if (old)
		req_unlink(c, old);
	struct up_req *r = up_request(c, u, REQ_HEARTBEAT, CORE_PUT,
				      strdup("/.well-known/dots/hb"), body, now);
	json_decref(body);
	if (r)
		req_go(c, r, now, out);
	u->hb_outstanding = r != NULL;
	u->next_hb = now + interval;
}

static void up_send_config(struct core *c, struct up_sess *u, dg_time_ms now,
			   struct core_actions *out)
{
	char path[64];
	json_t *body = model_config_build_request(&u->want);

	snprintf(path, sizeof(path), "/.well-known/dots/config/sid=%" PRIu32,
		 ++u->config_sid);
	struct up_req *r = up_request(c, u, REQ_CONFIG_PUT, CORE_PUT, strdup(path),
				      body, now);
	if (r)
		req_go(c, r, now, out);
	else
		dg_err(LOG_UP, "upstream=%s cannot send PUT /config", up_name(u));
	json_decref(body);
}

static void up_resend_mitigations(struct core *c, struct up_sess *u,
				  dg_time_ms now, struct core_actions *out);

static void up_ready(struct core *c, struct up_sess *u, dg_time_ms now,
		     struct core_actions *out)
{
	up_set_state(u, UP_READY);
	u->ready_since = now;
	u->backoff_s = u->cfg->reconnect_min;
	const struct model_session_params *p = up_params(u);
	dg_info(LOG_UP, "upstream=%s ready heartbeat=%" PRIu32 "s missing-hb-allowed=%" PRIu32,
		up_name(u), p->heartbeat_interval, p->missing_hb_allowed);
	/* Flush what waited for the session, oldest first. */
	struct up_req *tail = u->reqs;
	while (tail && tail->next)
		tail = tail->next;
	for (struct up_req *r = tail; r; r = r->prev) {
		if (!r->queued)
			continue;
		r->queued = false;
		u->nqueued--;
		if (!u->reliable && !r->msg.confirmable)
			r->next_retx = now + up_non_interval(u);
		up_transmit(c, r, now, out);
		req_arm(c, r);
	}
	up_resend_mitigations(c, u, now, out);
	u->next_hb = now + (dg_time_ms)p->heartbeat_interval * MS_PER_S;
	up_arm(c, u);
}

static struct up_req *relay_put(struct core *c, struct client_st *cl,
				enum req_kind kind, const char *cuid,
				uint32_t mid, const json_t *entry, bool if_match,
				uint32_t hop_limit, dg_time_ms now,
				struct core_actions *out)
{
	char cdid[IDENT_LEN + 1];
	json_t *arr = json_array();

	if (arr)
		json_array_append(arr, (json_t *)entry);
	json_t *body = wrap_scope(arr);
	if (!body)
		return NULL;
	char *path = mitigate_path(client_cdid(c, cl, cdid), cuid, true,
				   mid);
	struct up_req *r = up_request(c, cl->up, kind, CORE_PUT, path, body, now);
	json_decref(body);
	if (!r)
		return NULL;
	snprintf(r->cuid, sizeof(r->cuid), "%s", cuid);
	r->mid = mid;
	/* A reference, not a copy: callers hand over an entry nobody else
	 * changes (a decoded request body, or a copy of their own). */
	r->entry = json_incref((json_t *)entry);
	r->msg.if_match_empty = if_match;
	r->msg.has_hop_limit = true;
	r->msg.hop_limit = hop_limit;
	req_go(c, r, now, out);
	return r;
}

/* After a reconnect the upstream may have lost everything: send each
 * active mitigation again with its remaining lifetime (a refresh when the
 * upstream still has it, a creation when not), then observe it again. */
static void up_resend_mitigations(struct core *c, struct up_sess *u,
				  dg_time_ms now, struct core_actions *out)
{
	struct client_st *cl = u->owner;

	for (struct cuid_st *cs = cl ? cl->cuids : NULL; cs; cs = cs->next) {
		for (struct mitig *m = cs->mitigs; m; m = m->next) {
			observe_cancel(c, m);
			json_t *entry = json_deep_copy(m->entry);
			if (!entry)
				continue;
			int64_t left = lifetime_left(m, now);
			json_object_set_new(entry, "lifetime",
					    json_integer(left == 0 ? 1 : left));
			struct up_req *r = relay_put(c, cl, REQ_RESEND_PUT, cs->cuid,
						     m->mid, entry, false,
						     c->cfg->hop_limit, now, out);
			json_decref(entry);
			if (r)
				dg_info(LOG_UP, "upstream=%s re-sending cuid=%s mid=%" PRIu32,
					up_name(u), cs->cuid, m->mid);
		}
	}
}

/* ---- lifecycle ---------------------------------------------------------------------- */

struct core *core_new(const struct gw_config *cfg, uint64_t seed)
{
	struct core *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->cfg = cfg;
	c->token_state = seed;
	c->nclients = cfg->nclients;
	c->clients = calloc(cfg->nclients ? cfg->nclients : 1, sizeof(*c->clients));
	if (!c->clients) {
		free(c);
		return NULL;
	}
	for (size_t i = 0; i < cfg->nclients; i++) {
		if (!(c->clients[i] = calloc(1, sizeof(*c->clients[i])))) {
			c->nclients = i;
			core_free(c);
			return NULL;
		}
		c->clients[i]->cfg = &cfg->clients[i];
	}
	return c;
}

static void gw_own_free_all(struct core *c);

void core_free(struct core *c)
{
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	if (!c)
		return;
	while ((n = hmap_iter_next(&c->up, &it)))
		up_free(c, hmap_entry(n, struct up_sess, node));
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&c->mitigs, &it))) {
		mitig_free(hmap_entry(n, struct mitig, node));
	}
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&c->cuids, &it))) {
		struct cuid_st *cs = hmap_entry(n, struct cuid_st, node);
		hmap_free(&cs->mids);
		free(cs);
	}
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&c->dn, &it)))
		free(hmap_entry(n, struct dn_sess, node));
	for (size_t i = 0; i < c->nclients; i++) {
		struct dn_obs *o = c->clients[i]->observers, *next;
		for (; o; o = next) {
			next = o->next;
			obs_free(o);
		}
		free(c->clients[i]);
	}
	gw_own_free_all(c);
	for (size_t i = 0; i < c->ntlists; i++)
		free(c->tlists[i]);
	free(c->tlists);
	hmap_free(&c->up);
	hmap_free(&c->reqs);
	hmap_free(&c->mitigs);
	hmap_free(&c->cuids);
	hmap_free(&c->dn);
	free(c->clients);
	free(c->heap);
	free(c);
}

void core_shutdown(struct core *c, struct core_actions *out)
{
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	while ((n = hmap_iter_next(&c->up, &it))) {
		struct up_sess *u = hmap_entry(n, struct up_sess, node);
		struct core_action *a = act_push(out, CORE_ACT_UP_CLOSE);
		if (a) {
			a->up_id = u->id;
			a->final = true;
		}
	}
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&c->dn, &it))) {
		struct dn_sess *s = hmap_entry(n, struct dn_sess, node);
		struct core_action *a = act_push(out, CORE_ACT_DN_CLOSE);
		if (a)
			a->dn_sid = s->sid;
	}
}

void core_set_metrics(struct core *c, struct metrics_dots *m)
{
	c->metrics = m;
}

void core_collect_metrics(const struct core *c, struct metrics_dots *m)
{
	static const char *const trs[] = { "dtls", "tls", "udp", "tcp" };
	static const char *const ups[] = { "connecting", "configuring", "ready", "backoff" };
	/* [0]: pending; [st]: RFC 9132 status st (1..8) */
	double by_status[9] = { 0 }, *drop;
	size_t nup = c->cfg->nupstreams, ui;
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;
	const char *label;
	int st;

	metrics_clear(m->sessions);
	metrics_clear(m->mitigations);
	metrics_clear(m->upstream_up);
	metrics_clear(m->dropped_bytes);
	metrics_clear(m->dropped_packets);
	metrics_clear(m->dropped_bps);
	metrics_clear(m->dropped_pps);
	/* Every combination shows, at 0 when empty. */
	for (size_t t = 0; t < 4; t++) {
		metrics_set(m->sessions, (const char *[]){ METRICS_DN, trs[t], "established" }, 0);
		for (size_t s = 0; s < 4; s++)
			metrics_set(m->sessions, (const char *[]){ METRICS_UP, trs[t], ups[s] }, 0);
	}
	for (ui = 0; ui < nup; ui++)
		metrics_set(m->upstream_up, (const char *[]){ c->cfg->upstreams[ui].name }, 0);
	while ((n = hmap_iter_next(&c->dn, &it))) {
		const struct dn_sess *s = hmap_entry(n, struct dn_sess, node);
		if (s->transport >= 0 && s->transport < 4)
			metrics_add(m->sessions, (const char *[]){ METRICS_DN, trs[s->transport],
								  "established" }, 1);
	}
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&c->up, &it))) {
		const struct up_sess *u = hmap_entry(n, struct up_sess, node);
		/* enum gw_transport has trs[]'s order; a discovered upstream's
		 * session uses its candidate's transport. */
		unsigned tr = u->has_tgt ? (unsigned)u->tgt.transport : (unsigned)u->cfg->transport;
		if (tr < 4)
			metrics_add(m->sessions, (const char *[]){
				METRICS_UP, trs[tr], ups[u->state] }, 1);
		if (u->state == UP_READY)
			metrics_set(m->upstream_up, (const char *[]){ u->cfg->name }, 1);
	}
	/* Mitigations may be 100k: summed locally, one series update per
	 * label value at the end. */
	drop = calloc(nup ? nup * 4 : 1, sizeof(*drop));
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&c->mitigs, &it))) {
		const struct mitig *mg = hmap_entry(n, struct mitig, node);
		const struct gw_upstream *up = mg->cs->owner->cfg->upstream;
		if (mg->mx_status >= 0 && mg->mx_status < 9)
			by_status[mg->mx_status]++;
		for (ui = 0; drop && ui < nup && &c->cfg->upstreams[ui] != up; ui++)
			;
		if (!drop || ui == nup)
			continue;
		for (size_t i = 0; i < 4; i++)
			drop[ui * 4 + i] += mg->mx_dropped[i];
	}
	metrics_set(m->mitigations, (const char *[]){ "pending" }, by_status[0]);
	for (st = 1; st < 9 && (label = cbor_enum_label("status", st)); st++)
		metrics_set(m->mitigations, (const char *[]){ label }, by_status[st]);
	for (ui = 0; drop && ui < nup; ui++) {
		const char *const v[] = { c->cfg->upstreams[ui].name };
		metrics_set(m->dropped_bytes, v, drop[ui * 4]);
		metrics_set(m->dropped_packets, v, drop[ui * 4 + 1]);
		metrics_set(m->dropped_bps, v, drop[ui * 4 + 2]);
		metrics_set(m->dropped_pps, v, drop[ui * 4 + 3]);
	}
	free(drop);
}

void core_get_stats(const struct core *c, struct core_stats *st)
{
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	memset(st, 0, sizeof(*st));
	st->dn_sessions = c->dn.count;
	st->up_sessions = c->up.count;
	st->mitigations = c->mitigs.count;
	st->up_pending = c->reqs.count;
	while ((n = hmap_iter_next(&c->up, &it)))
		if (hmap_entry(n, struct up_sess, node)->state == UP_READY)
			st->up_ready++;
	for (size_t i = 0; i < c->nclients; i++)
		st->dn_observers += c->clients[i]->n_observers;
}

/* ---- the gateway's own requests (RFC 8811 §3.3.1) ---------------------------------- */

/*
 * An operator's request is sent upstream as the gateway's own: a client
 * record per upstream that no downstream session can match (its
 * configuration lives here, not in the file), so that cuid binding,
 * observation, re-sending after a reconnection and reload all work as for
 * a configured client.
 */
/* The highest mid a client may use before it must reset (RFC 9132
 * §4.4.1.1: 3221225471). */
#define OWN_MID_MAX 3221225471u

static const struct gw_upstream *upstream_by_name(const struct gw_config *cfg,
						  const char *name)
{
	for (size_t i = 0; name && i < cfg->nupstreams; i++)
		if (strcmp(cfg->upstreams[i].name, name) == 0)
			return &cfg->upstreams[i];
	return NULL;
}

struct gw_own {
	struct client_st st;
	struct gw_client cfg;
	char name[96];
};

static struct client_st *gw_own_find(const struct core *c, const char *upstream)
{
	for (size_t i = 0; i < c->ngw_own; i++)
		if (strcmp(c->gw_own[i]->cfg->upstream->name, upstream) == 0)
			return c->gw_own[i];
	return NULL;
}

static struct client_st *gw_own_get(struct core *c, const struct gw_upstream *u)
{
	struct client_st *cl = gw_own_find(c, u->name), **v;
	struct gw_own *g;

	if (cl)
		return cl;
	if (!(v = realloc(c->gw_own, (c->ngw_own + 1) * sizeof(*v))))
		return NULL;
	c->gw_own = v;
	if (!(g = calloc(1, sizeof(*g))))
		return NULL;
	snprintf(g->name, sizeof(g->name), "gateway:%s", u->name);
	g->cfg.name = g->name;
	g->cfg.upstream_name = u->name;
	g->cfg.upstream = (struct gw_upstream *)u;
	g->st.cfg = &g->cfg;
	c->gw_own[c->ngw_own++] = &g->st;
	return &g->st;
}

static void gw_own_free_all(struct core *c)
{
	for (size_t i = 0; i < c->ngw_own; i++) {
		struct client_st *cl = c->gw_own[i];
		struct dn_obs *o, *next;
		for (o = cl->observers; o; o = next) {
			next = o->next;
			obs_free(o);
		}
		free(cl); /* the gw_own it starts */
	}
	free(c->gw_own);
	c->gw_own = NULL;
	c->ngw_own = 0;
}

void core_set_own_mid_base(struct core *c, uint32_t base)
{
	if (base > c->own_next_mid)
		c->own_next_mid = base;
}

int core_own_request(struct core *c, const char *upstream, const char *cuid,
		     const json_t *body, uint32_t *mid_out, dg_time_ms now,
		     struct core_actions *out, struct dg_diag *d)
{
	const struct gw_upstream *ucfg = upstream_by_name(c->cfg, upstream);
	struct client_st *cl;
	struct cuid_st *cs;

	if (!ucfg) {
		dg_diag_set(d, "no upstream named \"%s\"", upstream ? upstream : "");
		return DG_CODE_NOT_FOUND;
	}
	if (!cuid || !*cuid || strlen(cuid) > MODEL_ID_MAX) {
		dg_diag_set(d, "no usable cuid for the gateway");
		return DG_CODE_BAD_REQUEST;
	}
	int code = model_check_mitigation_request(body, MODEL_PUT_REQUEST, d);
	if (code)
		return code;
	/* The gateway's cuid must not be a downstream client's. */
	if ((cs = cuid_find(c, cuid)) && cs->owner != gw_own_find(c, ucfg->name)) {
		dg_diag_set(d, "cuid %s is in use by client %s", cuid, cs->owner->cfg->name);
		return DG_CODE_CONFLICT;
	}
	if (c->own_next_mid >= OWN_MID_MAX) {
		dg_diag_set(d, "the gateway's mids are exhausted (RFC 9132 §4.4.1.1)");
		return DG_CODE_UNAVAILABLE;
	}
	if (!(cl = gw_own_get(c, ucfg))) {
		dg_diag_set(d, "out of memory");
		return DG_CODE_UNAVAILABLE;
	}
	if (!cl->up && !up_create(c, cl, now, out)) {
		dg_diag_set(d, "cannot open a session to %s", ucfg->name);
		return DG_CODE_UNAVAILABLE;
	}
	/* Strictly increasing, never reused (RFC 9132 §4.4.1.1). */
	uint32_t mid = ++c->own_next_mid;
	struct up_req *r = relay_put(c, cl, REQ_RELAY_PUT, cuid, mid,
				     model_scope_entry(body), false,
				     c->cfg->hop_limit, now, out);
	if (!r) {
		dg_diag_set(d, "upstream %s: queue full", ucfg->name);
		return DG_CODE_UNAVAILABLE;
	}
	dg_info(LOG_CORE, "client=%s cuid=%s mid=%" PRIu32 " operator request sent",
		cl->cfg->name, cuid, mid);
	*mid_out = mid;
	return 0;
}

int core_own_withdraw(struct core *c, const char *upstream, const char *cuid,
		      uint32_t mid, dg_time_ms now, struct core_actions *out,
		      struct dg_diag *d)
{
	struct client_st *cl = upstream ? gw_own_find(c, upstream) : NULL;
	struct cuid_st *cs = cuid_find(c, cuid);
	char cdid[IDENT_LEN + 1];

	if (!cl || !cs || cs->owner != cl || !mitig_find(cs, mid)) {
		dg_diag_set(d, "no gateway mitigation mid %" PRIu32 " on upstream %s",
			mid, upstream ? upstream : "-");
		return DG_CODE_NOT_FOUND;
	}
	if (!cl->up && !up_create(c, cl, now, out)) {
		dg_diag_set(d, "cannot open a session to %s", upstream);
		return DG_CODE_UNAVAILABLE;
	}
	char *path = mitigate_path(client_cdid(c, cl, cdid), cuid, true, mid);
	struct up_req *r = up_request(c, cl->up, REQ_RELAY_DELETE, CORE_DELETE,
				      path, NULL, now);
	if (!r) {
		dg_diag_set(d, "upstream %s: queue full", upstream);
		return DG_CODE_UNAVAILABLE;
	}
	r->msg.has_hop_limit = true;
	r->msg.hop_limit = c->cfg->hop_limit;
	snprintf(r->cuid, sizeof(r->cuid), "%s", cuid);
	r->mid = mid;
	req_go(c, r, now, out);
	dg_info(LOG_CORE, "client=%s cuid=%s mid=%" PRIu32 " operator withdrawal sent",
		cl->cfg->name, cuid, mid);
	return 0;
}

/* ---- reload ----------------------------------------------------------------------------- */

static bool str_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool bytes_same(const uint8_t *a, size_t alen, const uint8_t *b,
		       size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Whether a session opened to a could go on serving b unchanged: any
 * difference (address, credential, timers) means a new session. */
static bool upstream_same(const struct gw_upstream *a,
			  const struct gw_upstream *b)
{
	if (!a || !b)
		return a == b;
	return str_same(a->name, b->name) && str_same(a->address, b->address) &&
	       a->port == b->port && a->transport == b->transport &&
	       str_same(a->cred.psk_identity, b->cred.psk_identity) &&
	       bytes_same(a->cred.psk_key, a->cred.psk_key_len, b->cred.psk_key,
			  b->cred.psk_key_len) &&
	       str_same(a->cred.cert, b->cred.cert) &&
	       str_same(a->cred.key, b->cred.key) &&
	       str_same(a->cred.ca, b->cred.ca) &&
	       str_same(a->server_name, b->server_name) &&
	       a->heartbeat_interval == b->heartbeat_interval &&
	       a->missing_hb_allowed == b->missing_hb_allowed &&
	       a->reconnect_min == b->reconnect_min &&
	       a->reconnect_max == b->reconnect_max;
}

/* Whether a session authenticated under a is still authenticated under b. */
static bool client_cred_same(const struct gw_client *a, const struct gw_client *b)
{
	return str_same(a->psk_identity, b->psk_identity) &&
	       bytes_same(a->psk_key, a->psk_key_len, b->psk_key, b->psk_key_len) &&
	       str_same(a->cert_name, b->cert_name);
}

static int client_name_cmp(const void *a, const void *b)
{
	const struct gw_client *x = *(const struct gw_client *const *)a;
	const struct gw_client *y = *(const struct gw_client *const *)b;

	return strcmp(x->name, y->name);
}

/* Closes every downstream session of cl; the core forgets them at once,
 * as when a session times out. */
static void client_close_sessions(struct core *c, struct client_st *cl,
				  dg_time_ms now, struct core_actions *out)
{
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	while ((n = hmap_iter_next(&c->dn, &it))) {
		struct dn_sess *s = hmap_entry(n, struct dn_sess, node);
		struct core_action *a;

		if (s->cl != cl)
			continue;
		if ((a = act_push(out, CORE_ACT_DN_CLOSE)))
			a->dn_sid = s->sid;
		core_on_dn_session_down(c, s->sid, now, out);
	}
}

/* A client gone from the configuration: its sessions close and the
 * gateway forgets its state. Its mitigations are not withdrawn upstream:
 * they end at their lifetime there, as when a client goes silent. */
static void client_remove(struct core *c, struct client_st *cl, dg_time_ms now,
			  struct core_actions *out)
{
	dg_info(LOG_CORE, "reload: client=%s removed; closing its sessions",
		cl->cfg->name);
	client_close_sessions(c, cl, now, out);
	while (cl->cuids) {
		struct cuid_st *cs = cl->cuids;
		while (cs->mitigs) {
			struct mitig *m = cs->mitigs;
			cs->mitigs = m->next;
			observe_cancel(c, m);
			hmap_remove(&c->mitigs, &m->node);
			mitig_free(m);
		}
		cl->cuids = cs->next;
		hmap_remove(&c->cuids, &cs->node);
		hmap_free(&cs->mids);
		free(cs);
	}
	while (cl->observers) {
		struct dn_obs *o = cl->observers;
		cl->observers = o->next;
		obs_free(o);
	}
	if (cl->up) {
		struct core_action *a = act_push(out, CORE_ACT_UP_CLOSE);
		if (a) {
			a->up_id = cl->up->id;
			a->final = true;
		}
		up_free(c, cl->up);
	}
	free(cl);
}

/* The client's upstream changed: its session closes and a new one opens
 * to the new upstream, where its active mitigations are installed again
 * once it is ready (up_resend_mitigations), as after a reconnection. */
static void client_rehome(struct core *c, struct client_st *cl, dg_time_ms now,
			  struct core_actions *out)
{
	struct up_sess *u = cl->up;
	struct core_action *a;

	dg_info(LOG_CORE, "reload: client=%s upstream changed (%s -> %s); re-homing",
		cl->cfg->name, up_name(u),
		cl->cfg->upstream ? cl->cfg->upstream->name : "-");
	if ((a = act_push(out, CORE_ACT_UP_CLOSE))) {
		a->up_id = u->id;
		a->final = true;
	}
	up_fail_requests(c, u, "upstream reconfigured", NEVER, out);
	up_free(c, u);
	if (cl->cfg->upstream && (cl->n_dn || client_has_mitigations(cl)))
		up_create(c, cl, now, out);
}

int core_reconfigure(struct core *c, const struct gw_config *cfg,
		     const struct gw_client **old_to_new, dg_time_ms now,
		     struct core_actions *out, struct core_reload_stats *st)
{
	size_t nnew = cfg->nclients, nold = c->nclients;
	struct client_st **nv = calloc(nnew ? nnew : 1, sizeof(*nv));
	const struct gw_client **sorted = calloc(nnew ? nnew : 1, sizeof(*sorted));
	bool *kept = calloc(nold ? nold : 1, sizeof(*kept));
	int rc = DG_ENOMEM;

	memset(st, 0, sizeof(*st));
	if (!nv || !sorted || !kept)
		goto out;
	/* Clients are matched by name: O(n log n) so that a reload with
	 * thousands of clients stays instant. */
	for (size_t i = 0; i < nnew; i++)
		sorted[i] = &cfg->clients[i];
	qsort(sorted, nnew, sizeof(*sorted), client_name_cmp);
	for (size_t j = 0; j < nold; j++) {
		const struct gw_client *key = c->clients[j]->cfg, **hit;

		hit = bsearch(&key, sorted, nnew, sizeof(*sorted), client_name_cmp);
		old_to_new[j] = hit ? *hit : NULL;
		if (hit) {
			nv[*hit - cfg->clients] = c->clients[j];
			kept[j] = true;
		}
	}
	/* Everything that can fail happens before anything changes. */
	for (size_t i = 0; i < nnew; i++) {
		if (nv[i])
			continue;
		if (!(nv[i] = calloc(1, sizeof(*nv[i])))) {
			for (size_t k = 0; k < i; k++)
				if (!nv[k]->cfg)
					free(nv[k]);
			goto out;
		}
	}
	for (size_t j = 0; j < nold; j++) {
		if (!kept[j]) {
			client_remove(c, c->clients[j], now, out);
			st->clients_removed++;
		}
	}
	c->cfg = cfg;
	for (size_t i = 0; i < nnew; i++) {
		struct client_st *cl = nv[i];
		const struct gw_client *was = cl->cfg;

		cl->cfg = &cfg->clients[i];
		if (!was) {
			st->clients_added++;
			continue;
		}
		if (!client_cred_same(was, cl->cfg) && cl->n_dn) {
			dg_info(LOG_CORE, "reload: client=%s credential changed; closing its sessions",
				cl->cfg->name);
			client_close_sessions(c, cl, now, out);
			st->clients_reauth++;
		}
		if (!cl->up)
			continue;
		if (upstream_same(cl->up->cfg, cl->cfg->upstream)) {
			cl->up->cfg = cl->cfg->upstream;
			continue;
		}
		client_rehome(c, cl, now, out);
		st->clients_rehomed++;
	}
	free(c->clients);
	c->clients = nv;
	c->nclients = nnew;
	nv = NULL;
	rc = 0;
	/* The gateway's own records follow their upstream by name. */
	for (size_t i = 0; i < c->ngw_own;) {
		struct gw_own *g = (struct gw_own *)c->gw_own[i];
		const struct gw_upstream *u = upstream_by_name(cfg, g->cfg.upstream->name);

		if (!u) {
			client_remove(c, &g->st, now, out);
			c->gw_own[i] = c->gw_own[--c->ngw_own];
			continue;
		}
		g->cfg.upstream = (struct gw_upstream *)u;
		g->cfg.upstream_name = u->name;
		if (g->st.up) {
			if (upstream_same(g->st.up->cfg, u))
				g->st.up->cfg = u;
			else
				client_rehome(c, &g->st, now, out);
		}
		i++;
	}
out:
	free(nv);
	free(sorted);
	free(kept);
	return rc;
}

/* ---- drain (RFC 9132 §4.6) ---------------------------------------------------------------- */

static json_t *redirect_body(const struct core *c)
{
	const struct gw_drain *dr = &c->cfg->drain;
	json_t *rs = json_object(), *recs = json_array(), *body = json_object();

	if (!rs || !recs || !body ||
	    json_object_set_new(rs, "alt-server", json_string(dr->alternate))) {
		json_decref(rs);
		json_decref(recs);
		json_decref(body);
		return NULL;
	}
	for (size_t i = 0; i < dr->naddresses; i++)
		json_array_append_new(recs, json_string(dr->addresses[i]));
	if (dr->naddresses)
		json_object_set_new(rs, "alt-server-record", recs);
	else
		json_decref(recs);
	json_object_set_new(body, CBOR_MSG_REDIRECT, rs);
	return body;
}

/* 5.03 with the redirection and its lifetime as Max-Age. */
static void reply_redirect(struct core *c, uint64_t dn_sid, uint64_t req_id,
			   struct core_actions *out)
{
	json_t *body = redirect_body(c);
	struct core_action *a;

	reply(out, dn_sid, req_id, DG_CODE_UNAVAILABLE, body);
	json_decref(body);
	if ((a = last_reply(out, req_id))) {
		a->msg.has_max_age = true;
		a->msg.max_age = c->cfg->drain.ttl;
	}
}

int core_drain(struct core *c, bool on, dg_time_ms now, struct core_actions *out,
	       size_t *notified)
{
	json_t *body;

	(void)now;
	*notified = 0;
	if (on && !c->cfg->drain.alternate)
		return DG_EINVAL;
	if (c->draining == on)
		return 0;
	c->draining = on;
	dg_info(LOG_CORE, "drain %s%s%s", on ? "on: redirecting clients to " : "off",
		on ? c->cfg->drain.alternate : "", on ? "" : "");
	if (!on || !(body = redirect_body(c)))
		return 0;
	/* Observers learn at once: a 5.03 notification carrying the
	 * redirection, which also ends the observation (RFC 7641 §4.2). The
	 * others at their next request, heartbeats included. */
	for (size_t i = 0; i < c->nclients; i++) {
		struct client_st *cl = c->clients[i];
		while (cl->observers) {
			struct dn_obs *o = cl->observers;
			struct core_action *a;
			dn_notify_one(c, o, DG_CODE_UNAVAILABLE, body, out);
			if (out->n && (a = &out->v[out->n - 1])->type == CORE_ACT_DN_SEND) {
				a->msg.has_max_age = true;
				a->msg.max_age = c->cfg->drain.ttl;
			}
			cl->observers = o->next;
			cl->n_observers--;
			obs_free(o);
			(*notified)++;
		}
	}
	json_decref(body);
	return 0;
}

bool core_draining(const struct core *c)
{
	return c->draining;
}

/* ---- downstream sessions --------------------------------------------------------------- */

static void dn_arm(struct core *c, struct dn_sess *s)
{
	heap_push(c, s->next_hb, TK_DN, s->sid, ++s->gen);
}

static const struct model_session_params *dn_params(const struct dn_sess *s)
{
	return s->cl && client_has_mitigations(s->cl) ? &s->cfg.mitigating :
							 &s->cfg.idle;
}

int core_dn_params(const struct core *c, uint64_t dn_sid,
		   struct model_session_params *out)
{
	const struct dn_sess *s = dn_find(c, dn_sid);

	if (!s)
		return DG_ENOENT;
	*out = *dn_params(s);
	return 0;
}

int core_up_params(const struct core *c, uint64_t up_id,
		   struct model_session_params *out)
{
	const struct up_sess *u = up_find(c, up_id);

	if (!u)
		return DG_ENOENT;
	*out = *up_params(u);
	return 0;
}

int core_on_dn_session(struct core *c, uint64_t dn_sid,
		       const struct core_dn_info *info, dg_time_ms now,
		       struct core_actions *out)
{
	struct dn_sess *s = dn_find(c, dn_sid);

	if (s)
		return DG_EEXIST;
	s = calloc(1, sizeof(*s));
	if (!s)
		return DG_ENOMEM;
	s->sid = dn_sid;
	s->cl = info->client ? client_of(c, info->client) : NULL;
	s->transport = info->transport;
	snprintf(s->cdid, sizeof(s->cdid), "%s", info->cdid ? info->cdid : "");
	snprintf(s->peer, sizeof(s->peer), "%s", info->peer ? info->peer : "?");
	s->cfg = c->cfg->session_default;
	s->last_rx = now;
	s->since = now;
	if (hmap_insert(&c->dn, &s->node, hmap_hash_u64(dn_sid))) {
		free(s);
		return DG_ENOMEM;
	}
	const struct model_session_params *p = dn_params(s);
	s->next_hb = p->heartbeat_interval ?
			     now + (dg_time_ms)p->heartbeat_interval * MS_PER_S : NEVER;
	dn_arm(c, s);
	dg_info(LOG_DN, "sid=%" PRIu64 " session up peer=%s client=%s", dn_sid,
		s->peer, s->cl ? s->cl->cfg->name : "-");
	if (s->cl) {
		if (info->cdid && info->cdid[0])
			snprintf(s->cl->cdid, sizeof(s->cl->cdid), "%s", info->cdid);
		s->cl->n_dn++;
		if (!s->cl->up)
			up_create(c, s->cl, now, out);
	}
	return 0;
}

void core_on_dn_session_down(struct core *c, uint64_t dn_sid, dg_time_ms now,
			     struct core_actions *out)
{
	struct dn_sess *s = dn_find(c, dn_sid);

	(void)now;
	if (!s)
		return;
	dg_info(LOG_DN, "sid=%" PRIu64 " session down peer=%s", dn_sid, s->peer);
	if (s->cl) {
		obs_drop(s->cl, dn_sid, NULL, 0);
		/* Replies to requests in flight are dropped by io; the upstream
		 * work itself (a withdrawal, say) still completes. */
		s->cl->n_dn--;
		up_maybe_release(c, s->cl, out);
	}
	hmap_remove(&c->dn, &s->node);
	free(s);
}

static void dn_send_heartbeat(struct core *c, struct dn_sess *s, dg_time_ms now,
			      struct core_actions *out)
{
	const struct model_session_params *p = dn_params(s);
	dg_time_ms interval = (dg_time_ms)p->heartbeat_interval * MS_PER_S;
	struct core_action *a;

	if (!p->heartbeat_interval) {
		s->next_hb = NEVER;
		return;
	}
	/* Nothing at all from the client for missing-hb-allowed intervals:
	 * the session is lost (RFC 9132 §4.7, server side). */
	if (now - s->last_rx > (dg_time_ms)p->missing_hb_allowed * interval) {
		dg_warn(LOG_DN, "sid=%" PRIu64 " peer=%s client=%s: no traffic for %" PRIu64 " ms, session lost",
			s->sid, s->peer, s->cl ? s->cl->cfg->name : "-", now - s->last_rx);
		if ((a = act_push(out, CORE_ACT_DN_CLOSE)))
			a->dn_sid = s->sid;
		core_on_dn_session_down(c, s->sid, now, out);
		return;
	}
	json_t *body = model_build_heartbeat(s->last_peer_hb &&
					     now - s->last_peer_hb <= 2 * interval);
	if ((a = act_push(out, CORE_ACT_DN_SEND))) {
		a->dn_sid = s->sid;
		a->msg.code = CORE_PUT;
		a->msg.path = strdup("/.well-known/dots/hb");
		s->hb_token = token_new(c);
		token_put(s->hb_token, a->msg.token, &a->msg.token_len);
		a->msg.payload = encode_or_null(body, &a->msg.payload_len);
		a->msg.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
	}
	json_decref(body);
	s->next_hb = now + interval;
	dn_arm(c, s);
}

void core_on_dn_response(struct core *c, uint64_t dn_sid, const uint8_t *token,
			 size_t token_len, int code, dg_time_ms now,
			 struct core_actions *out)
{
	struct dn_sess *s = dn_find(c, dn_sid);

	(void)out;
	if (!s)
		return;
	s->last_rx = now;
	if (code == 0 && s->cl) {
		/* An RST to a notification cancels that observation (RFC 7641 §3.6). */
		obs_drop(s->cl, dn_sid, token, token_len);
	}
}

/* ---- downstream requests ---------------------------------------------------------------- */

static void handle_hb(struct core *c, struct dn_sess *s,
		      const struct core_request *req, const json_t *body,
		      dg_time_ms now, struct core_actions *out)
{
	struct dg_diag d = { "" };
	bool peer_status;

	(void)c;
	if (req->method != CORE_PUT) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_METHOD_NOT_ALLOWED,
			   "/hb accepts PUT only (RFC 9132 §4.7)");
		return;
	}
	int code = model_check_heartbeat(body, &peer_status, &d);
	if (code) {
		reply_diag(out, s->sid, req->req_id, code, "%s", d.text);
		return;
	}
	/* Heartbeats are hop by hop: answered here, never relayed (§4.7). */
	s->last_peer_hb = now;
	reply(out, s->sid, req->req_id, DG_CODE_CHANGED, NULL);
}

static void handle_config(struct core *c, struct dn_sess *s,
			  const struct core_request *req,
			  const struct model_uri *uri, const json_t *body,
			  struct core_actions *out)
{
	const struct gw_config *g = c->cfg;
	struct dg_diag d = { "" };
	struct core_action *a;

	/* Session configuration is per session and hop by hop: the
	 * gateway answers with its own limits (RFC 9132 §4.5.1). */
	switch (req->method) {
	case CORE_GET: {
		if (uri->has_sid && (!s->has_cfg_sid || s->cfg_sid != uri->sid)) {
			reply_diag(out, s->sid, req->req_id, DG_CODE_NOT_FOUND,
				   "no session configuration with sid %" PRIu32, uri->sid);
			return;
		}
		json_t *rsp = model_config_build(&s->cfg, &g->session_mitigating,
						 &g->session_idle);
		reply(out, s->sid, req->req_id, DG_CODE_CONTENT, rsp);
		json_decref(rsp);
		break;
	}
	case CORE_PUT: {
		if (!uri->has_sid) {
			reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
				   "PUT /config needs a sid (RFC 9132 §4.5.2)");
			return;
		}
		if (s->has_cfg_sid && uri->sid < s->cfg_sid) {
			reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
				   "sid %" PRIu32 " is lower than the current sid %" PRIu32,
				   uri->sid, s->cfg_sid);
			return;
		}
		struct model_session_config cfg = s->cfg;
		int code = model_config_apply(body, &g->session_mitigating,
					      &g->session_idle, &cfg, &d);
		if (code) {
			reply_diag(out, s->sid, req->req_id, code, "%s", d.text);
			return;
		}
		bool same = s->has_cfg_sid && s->cfg_sid == uri->sid;
		s->cfg = cfg;
		s->has_cfg_sid = true;
		s->cfg_sid = uri->sid;
		reply(out, s->sid, req->req_id,
		      same ? DG_CODE_CHANGED : DG_CODE_CREATED, NULL);
		/* The new interval applies from the next heartbeat. */
		break;
	}
	case CORE_DELETE:
		s->cfg = g->session_default;
		s->has_cfg_sid = false;
		reply(out, s->sid, req->req_id, DG_CODE_DELETED, NULL);
		return;
	default:
		reply_diag(out, s->sid, req->req_id, DG_CODE_METHOD_NOT_ALLOWED,
			   "/config accepts GET, PUT and DELETE");
		return;
	}
	/* Freshness hint (RFC 9132 §4.5.3): a client refreshes before expiry. */
	a = out->n ? &out->v[out->n - 1] : NULL;
	if (a && a->type == CORE_ACT_REPLY && a->msg.code / 100 == 2) {
		a->msg.has_max_age = true;
		a->msg.max_age = 3600;
	}
}

static void handle_get(struct core *c, struct dn_sess *s,
		       const struct core_request *req,
		       const struct model_uri *uri, dg_time_ms now,
		       struct core_actions *out)
{
	struct client_st *cl = s->cl;
	struct cuid_st *cs = cuid_find(c, uri->cuid);
	struct model_query q = { MODEL_CONTENT_ALL, NULL };
	struct dg_diag d = { "" };

	int code = model_parse_query(req->query, req->nquery, &q, &d);
	if (code) {
		reply_diag(out, s->sid, req->req_id, code, "%s", d.text);
		return;
	}
	if (req->has_observe && req->observe == 1) {
		/* Deregistration (RFC 7641 §3.6): same token. */
		obs_drop(cl, s->sid, req->token, req->token_len);
	}
	/* Another client's cuid is invisible: same answer as no mitigation. */
	json_t *arr = json_array();
	if (cs && cs->owner == cl && arr) {
		for (struct mitig *m = cs->mitigs; m; m = m->next) {
			if (uri->has_mid && m->mid != uri->mid)
				continue;
			json_t *e = mitig_entry(m, now);
			if (!e)
				continue;
			if (model_query_match(&q, e))
				json_array_append_new(arr, model_entry_select(e, q.content));
			json_decref(e);
		}
	}
	if (!arr || json_array_size(arr) == 0) {
		json_decref(arr);
		model_query_free(&q);
		if (uri->has_mid)
			reply_diag(out, s->sid, req->req_id, DG_CODE_NOT_FOUND,
				   "no mitigation with mid %" PRIu32, uri->mid);
		else
			reply_diag(out, s->sid, req->req_id, DG_CODE_NOT_FOUND,
				   "no mitigation for this cuid");
		return;
	}
	json_t *body = wrap_scope(arr);
	bool observe = req->has_observe && req->observe == 0;
	struct dn_obs *o = NULL;
	if (observe) {
		for (o = cl->observers; o; o = o->next)
			if (o->dn_sid == s->sid && o->token_len == req->token_len &&
			    memcmp(o->token, req->token, req->token_len) == 0)
				break;
		if (!o && cl->n_observers < OBSERVERS_MAX_PER_CLIENT &&
		    (o = calloc(1, sizeof(*o)))) {
			o->dn_sid = s->sid;
			memcpy(o->token, req->token, req->token_len);
			o->token_len = req->token_len;
			snprintf(o->cuid, sizeof(o->cuid), "%s", uri->cuid);
			o->has_mid = uri->has_mid;
			o->mid = uri->mid;
			o->query = q;
			q.filter = NULL;
			o->next = cl->observers;
			cl->observers = o;
			cl->n_observers++;
		}
	}
	model_query_free(&q);
	reply(out, s->sid, req->req_id, DG_CODE_CONTENT, body);
	json_decref(body);
	if (o && out->n && out->v[out->n - 1].type == CORE_ACT_REPLY) {
		out->v[out->n - 1].msg.has_observe = true;
		out->v[out->n - 1].msg.observe = ++o->seq & 0xffffff;
	}
}

/* Hop-Limit (RFC 8768 §3): inserted when absent; otherwise already
 * checked and decremented by the CoAP layer (see core_request), and
 * forwarded as is. 0 cannot come from libcoap; a layer that delivers it
 * gets the exhausted answer. Returns the value to send upstream, or 0
 * after replying. */
static uint32_t hop_limit_next(struct core *c, struct dn_sess *s,
			       const struct core_request *req,
			       struct core_actions *out)
{
	if (!req->has_hop_limit)
		return c->cfg->hop_limit;
	if (req->hop_limit == 0) {
		dg_log_limited(&c->rl_peer, s->last_rx, DG_LOG_WARN, LOG_DN,
			       "sid=%" PRIu64 " peer=%s: Hop-Limit exhausted, answering 5.08",
			       s->sid, s->peer);
		reply_diag(out, s->sid, req->req_id, DG_CODE_HOP_LIMIT, "%s",
			   c->cfg->id);
		return 0;
	}
	return req->hop_limit > 255 ? 255 : req->hop_limit;
}

static bool up_usable(struct dn_sess *s, uint64_t req_id, dg_time_ms now,
		      struct core_actions *out)
{
	struct up_sess *u = s->cl->up;

	if (!u) {
		reply_diag(out, s->sid, req_id, DG_CODE_UNAVAILABLE,
			   "no upstream configured for this client");
		return false;
	}
	if (u->state == UP_BACKOFF) {
		reply_diag(out, s->sid, req_id, DG_CODE_UNAVAILABLE,
			   "upstream %s unreachable", up_name(u));
		/* Max-Age: when to try again (RFC 9132 §9, 5.03). */
		if (out->n && out->v[out->n - 1].type == CORE_ACT_REPLY) {
			struct core_action *a = &out->v[out->n - 1];
			a->msg.has_max_age = true;
			a->msg.max_age = (uint32_t)((u->reconnect_at - now + MS_PER_S - 1) /
						     MS_PER_S);
		}
		return false;
	}
	return true;
}

static void handle_put(struct core *c, struct dn_sess *s,
		       const struct core_request *req,
		       const struct model_uri *uri, const json_t *body,
		       uint32_t hop_limit, dg_time_ms now,
		       struct core_actions *out)
{
	struct client_st *cl = s->cl;
	struct dg_diag d = { "" };
	bool efficacy = req->has_if_match;

	if (!uri->has_mid) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
			   "PUT needs a mid (RFC 9132 §4.4.1.1)");
		return;
	}
	if (efficacy && !req->if_match_empty) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
			   "an efficacy update carries an empty If-Match (RFC 9132 §4.4.3)");
		return;
	}
	int code = model_check_mitigation_request(
		body, efficacy ? MODEL_PUT_EFFICACY : MODEL_PUT_REQUEST, &d);
	if (code) {
		reply_diag(out, s->sid, req->req_id, code, "%s", d.text);
		return;
	}
	const json_t *entry = model_scope_entry(body);
	code = model_scope_authorize(entry, &cl->cfg->scope, &d);
	if (code) {
		dg_log_limited(&c->rl_peer, now, DG_LOG_WARN, LOG_DN,
			       "sid=%" PRIu64 " client=%s: %s", s->sid, cl->cfg->name, d.text);
		reply_diag(out, s->sid, req->req_id, code, "%s", d.text);
		return;
	}
	struct cuid_st *cs = cuid_find(c, uri->cuid);
	if (cs && cs->owner != cl) {
		/* RFC 9132 §4.4.1.3: cuid collision, and nothing else said. */
		json_t *ci = json_pack("{s:{s:[{s:{s:s}}]}}", CBOR_MSG_MITIGATION,
				       "scope", "conflict-information",
				       "conflict-cause", "cuid-collision");
		dg_log_limited(&c->rl_peer, now, DG_LOG_WARN, LOG_DN,
			       "sid=%" PRIu64 " client=%s: cuid collision", s->sid,
			       cl->cfg->name);
		reply(out, s->sid, req->req_id, DG_CODE_CONFLICT, ci);
		json_decref(ci);
		return;
	}
	struct mitig *m = mitig_find(cs, uri->mid);
	if (efficacy && !m) {
		/* Unknown mid with If-Match: silently dropped (RFC 9132 §4.4.3). */
		struct core_action *a = act_push(out, CORE_ACT_NO_REPLY);
		if (a) {
			a->dn_sid = s->sid;
			a->req_id = req->req_id;
		}
		return;
	}
	if (m && !model_scope_same_request(m->entry, entry)) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
			   "mid %" PRIu32 " exists with other attributes; a refresh repeats them (RFC 9132 §4.4.1.3)",
			   uri->mid);
		return;
	}
	/* The client repeats a NON request it got no answer to (RFC 9132
	 * §4.4.1), same token: the answer it missed, not a refresh. */
	if (m && m->dn_code && m->dn_sid == s->sid && !efficacy &&
	    m->dn_token_len == req->token_len &&
	    memcmp(m->dn_token, req->token, req->token_len) == 0 &&
	    now - m->dn_at <= NON_LIFETIME_MS) {
		dg_debug(LOG_DN, "sid=%" PRIu64 " client=%s cuid=%s mid=%" PRIu32 " repeated request answered again",
			 s->sid, cl->cfg->name, uri->cuid, uri->mid);
		reply(out, s->sid, req->req_id, m->dn_code, m->dn_body);
		return;
	}
	if (!up_usable(s, req->req_id, now, out))
		return;
	struct up_req *r = relay_put(c, cl,
				     efficacy ? REQ_RELAY_EFFICACY : REQ_RELAY_PUT,
				     uri->cuid, uri->mid, entry, efficacy,
				     hop_limit, now, out);
	if (!r) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_UNAVAILABLE,
			   "gateway overloaded");
		return;
	}
	r->has_dn = true;
	r->dn_sid = s->sid;
	r->dn_req_id = req->req_id;
	memcpy(r->dn_token, req->token, req->token_len);
	r->dn_token_len = req->token_len;
	r->creating = !m && !efficacy;
}

static void handle_delete(struct core *c, struct dn_sess *s,
			  const struct core_request *req,
			  const struct model_uri *uri, uint32_t hop_limit,
			  dg_time_ms now, struct core_actions *out)
{
	struct client_st *cl = s->cl;
	char cdid[IDENT_LEN + 1];

	if (!uri->has_mid) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
			   "DELETE needs a mid (RFC 9132 §4.4.4)");
		return;
	}
	struct cuid_st *cs = cuid_find(c, uri->cuid);
	if (cs && cs->owner != cl) {
		/* Invisible: the answer a server gives for an unknown mid. */
		reply(out, s->sid, req->req_id, DG_CODE_DELETED, NULL);
		return;
	}
	if (!up_usable(s, req->req_id, now, out))
		return;
	char *path = mitigate_path(client_cdid(c, cl, cdid), uri->cuid,
				   true, uri->mid);
	struct up_req *r = up_request(c, cl->up, REQ_RELAY_DELETE, CORE_DELETE,
				      path, NULL, now);
	if (!r) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_UNAVAILABLE,
			   "gateway overloaded");
		return;
	}
	r->msg.has_hop_limit = true;
	r->msg.hop_limit = hop_limit;
	req_go(c, r, now, out);
	snprintf(r->cuid, sizeof(r->cuid), "%s", uri->cuid);
	r->mid = uri->mid;
	r->has_dn = true;
	r->dn_sid = s->sid;
	r->dn_req_id = req->req_id;
}

void core_on_dn_request(struct core *c, const struct core_request *req,
			dg_time_ms now, struct core_actions *out)
{
	struct dn_sess *s = dn_find(c, req->dn_sid);
	struct model_uri uri;
	struct dg_diag d = { "" };
	json_t *body = NULL;

	if (!s) {
		reply_diag(out, req->dn_sid, req->req_id, DG_CODE_INTERNAL,
			   "unknown session");
		return;
	}
	s->last_rx = now;
	if (!s->cl) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_UNAUTHORIZED,
			   "client not authorized (RFC 9132 §8)");
		return;
	}
	if (req->unknown_critical) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_OPTION,
			   "unrecognized critical option");
		return;
	}
	if (c->draining) {
		reply_redirect(c, s->sid, req->req_id, out);
		return;
	}
	int code = model_parse_uri(req->path, req->npath, &uri, &d);
	if (code) {
		reply_diag(out, s->sid, req->req_id, code, "%s", d.text);
		return;
	}
	/* Methods first: a POST is 4.05 whatever it carries (RFC 9132 §3). */
	if (req->method != CORE_PUT &&
	    (uri.res == MODEL_RES_HB ||
	     (req->method != CORE_GET && req->method != CORE_DELETE))) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_METHOD_NOT_ALLOWED,
			   uri.res == MODEL_RES_HB ? "/hb accepts PUT only (RFC 9132 §4.7)" :
			   "only GET, PUT and DELETE are defined (RFC 9132 §3)");
		return;
	}
	if (req->body_len > c->cfg->max_body) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_TOO_LARGE,
			   "body of %zu bytes exceeds %" PRIu32, req->body_len,
			   c->cfg->max_body);
		struct core_action *a = last_reply(out, req->req_id);
		if (a) {
			a->msg.has_size1 = true;
			a->msg.size1 = c->cfg->max_body;
		}
		return;
	}
	if (req->body_len) {
		if (!req->has_content_format ||
		    req->content_format != DG_CONTENT_FORMAT_DOTS_CBOR) {
			reply_diag(out, s->sid, req->req_id, DG_CODE_UNSUPPORTED_FORMAT,
				   "Content-Format must be application/dots+cbor (271)");
			return;
		}
		if (cbor_decode(req->body, req->body_len, &body, &d)) {
			reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST, "%s",
				   d.text);
			return;
		}
	} else if (req->method == CORE_PUT) {
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
			   "PUT needs a body");
		return;
	}
	if (req->method != CORE_PUT && body) {
		json_decref(body);
		reply_diag(out, s->sid, req->req_id, DG_CODE_BAD_REQUEST,
			   "a %s request carries no body",
			   req->method == CORE_GET ? "GET" : "DELETE");
		return;
	}

	switch (uri.res) {
	case MODEL_RES_HB:
		handle_hb(c, s, req, body, now, out);
		break;
	case MODEL_RES_CONFIG:
		handle_config(c, s, req, &uri, body, out);
		break;
	case MODEL_RES_MITIGATE: {
		/* A cdid from downstream is never trusted (RFC 9132 §4.4.1.2):
		 * dropped here, and the gateway's own inserted upstream. */
		if (uri.has_cdid)
			dg_debug(LOG_DN, "sid=%" PRIu64 " stripped cdid from client", s->sid);
		if (req->method == CORE_GET) {
			handle_get(c, s, req, &uri, now, out);
			break;
		}
		if (req->method != CORE_PUT && req->method != CORE_DELETE) {
			reply_diag(out, s->sid, req->req_id, DG_CODE_METHOD_NOT_ALLOWED,
				   "/mitigate accepts GET, PUT and DELETE");
			break;
		}
		uint32_t hop = hop_limit_next(c, s, req, out);
		if (!hop)
			break;
		if (req->method == CORE_PUT)
			handle_put(c, s, req, &uri, body, hop, now, out);
		else
			handle_delete(c, s, req, &uri, hop, now, out);
		break;
	}
	}
	json_decref(body);
}

/* ---- upstream responses ------------------------------------------------------------------ */

/* An upstream answered r with code (-1: nobody did in time). Later
 * answers to an accepted observation are notifications. */
static void count_up_answer(struct core *c, const struct up_req *r, int code)
{
	static const char *const res[] = {
		[REQ_RELAY_PUT] = "mitigate", [REQ_RELAY_EFFICACY] = "mitigate",
		[REQ_RELAY_DELETE] = "mitigate", [REQ_RESEND_PUT] = "mitigate",
		[REQ_OBSERVE] = "mitigate", [REQ_CONFIG_PUT] = "config",
		[REQ_CONFIG_GET] = "config", [REQ_HEARTBEAT] = "hb",
	};
	char buf[8];

	if (!c->metrics)
		return;
	if (r->kind == REQ_OBSERVE && r->answered && code >= 0) {
		metrics_add(c->metrics->notifications, (const char *[]){ METRICS_UP }, 1);
		return;
	}
	metrics_add(c->metrics->requests, (const char *[]){
		METRICS_UP, res[r->kind], metrics_coap_method(r->msg.code),
		code < 0 ? "timeout" : metrics_coap_code(code, buf) }, 1);
}

/* Relays an upstream answer to the waiting client faithfully: same code,
 * Max-Age, and a body re-encoded from the model (CBOR bodies) or the
 * diagnostic text. A redirection is the gateway's business, not the
 * client's: its body is replaced by a diagnostic. */
static void reply_from_upstream(const struct core *c, struct up_req *r,
				const struct core_response *rsp,
				const json_t *body, struct core_actions *out)
{
	struct core_action *a;

	if (!r->has_dn)
		return;
	if (json_object_get(body, CBOR_MSG_REDIRECT)) {
		reply_diag(out, r->dn_sid, r->dn_req_id, rsp->code,
			   "upstream %s redirected the request", up_name(r->up));
	} else if (body) {
		reply(out, r->dn_sid, r->dn_req_id, rsp->code, body);
	} else if (rsp->body_len && !(rsp->has_content_format &&
				      rsp->content_format == DG_CONTENT_FORMAT_DOTS_CBOR)) {
		/* Diagnostic text: printable ASCII only, bounded. */
		char text[193];
		size_t n = rsp->body_len < sizeof(text) - 1 ? rsp->body_len : sizeof(text) - 1;
		for (size_t i = 0; i < n; i++)
			text[i] = rsp->body[i] >= 0x20 && rsp->body[i] < 0x7f ?
					  (char)rsp->body[i] : '?';
		text[n] = '\0';
		if (rsp->code == DG_CODE_HOP_LIMIT) {
			/* RFC 8768 §3: each proxy adds itself to the trace.
			 * The Hop-Limit on the answer keeps libcoap from taking
			 * its own address in the trace for a loop and dropping
			 * the answer (two gateways may share an address). */
			reply_diag(out, r->dn_sid, r->dn_req_id, rsp->code, "%s %s",
				   text, c->cfg->id);
			if ((a = last_reply(out, r->dn_req_id))) {
				a->msg.has_hop_limit = true;
				a->msg.hop_limit = 255;
			}
		} else {
			reply_diag(out, r->dn_sid, r->dn_req_id, rsp->code, "%s", text);
		}
	} else {
		reply(out, r->dn_sid, r->dn_req_id, rsp->code, NULL);
	}
	a = out->n ? &out->v[out->n - 1] : NULL;
	if (a && a->type == CORE_ACT_REPLY && rsp->has_max_age) {
		a->msg.has_max_age = true;
		a->msg.max_age = rsp->max_age;
	}
	r->has_dn = false;
}

static void on_mitig_answer(struct core *c, struct up_req *r,
			    const struct core_response *rsp, const json_t *body,
			    dg_time_ms now, struct core_actions *out)
{
	struct client_st *cl = r->up->owner;
	struct core_response fixed = *rsp;
	struct mitig *m = NULL;

	if (rsp->code == DG_CODE_CREATED || rsp->code == DG_CODE_CHANGED) {
		bool existed = mitig_find(cuid_find(c, r->cuid), r->mid) != NULL;
		m = mitig_accept(c, cl, r->cuid, r->mid, &r->entry, body, now, out);
		/* We repeated the PUT of a new mid, and the upstream's 2.01
		 * to an earlier copy was lost: its 2.04 answers a repetition.
		 * The client asked once and gets 2.01 (RFC 9132 §4.4.1.3). */
		if (m && !existed && r->creating && r->ntx > 1 &&
		    rsp->code == DG_CODE_CHANGED)
			fixed.code = DG_CODE_CREATED;
	} else if (r->kind == REQ_RESEND_PUT) {
		dg_warn(LOG_UP, "upstream=%s re-sending cuid=%s mid=%" PRIu32 " refused with %d.%02d",
			up_name(r->up), r->cuid, r->mid, rsp->code / 100, rsp->code % 100);
	}
	if (m && r->has_dn && r->kind == REQ_RELAY_PUT &&
	    !json_object_get(body, CBOR_MSG_REDIRECT)) {
		/* Kept for the client's repetitions of this request. */
		json_decref(m->dn_body);
		m->dn_body = json_incref((json_t *)body);
		m->dn_code = fixed.code;
		m->dn_sid = r->dn_sid;
		memcpy(m->dn_token, r->dn_token, r->dn_token_len);
		m->dn_token_len = r->dn_token_len;
		m->dn_at = now;
	}
	reply_from_upstream(c, r, &fixed, body, out);
}

static void on_observe_answer(struct core *c, struct up_req *r,
			      const struct core_response *rsp, const json_t *body,
			      dg_time_ms now, struct core_actions *out)
{
	struct cuid_st *cs = cuid_find(c, r->cuid);
	struct mitig *m = mitig_find(cs, r->mid);

	if (!m || m->obs_token != r->token) {
		req_unlink(c, r);
		return;
	}
	if (rsp->code == DG_CODE_NOT_FOUND) {
		/* The upstream lost it although the client still wants it. */
		dg_warn(LOG_UP, "upstream=%s cuid=%s mid=%" PRIu32 " unknown upstream; re-sending",
			up_name(r->up), r->cuid, r->mid);
		m->obs_token = 0;
		req_unlink(c, r);
		json_t *entry = json_deep_copy(m->entry);
		if (entry) {
			int64_t left = lifetime_left(m, now);
			json_object_set_new(entry, "lifetime", json_integer(left ? left : 1));
			relay_put(c, cs->owner, REQ_RESEND_PUT, cs->cuid, m->mid, entry,
				  false, c->cfg->hop_limit, now, out);
			json_decref(entry);
		}
		return;
	}
	if (rsp->code / 100 != 2) {
		dg_warn(LOG_UP, "upstream=%s observe cuid=%s mid=%" PRIu32 ": %d.%02d",
			up_name(r->up), r->cuid, r->mid, rsp->code / 100, rsp->code % 100);
		m->obs_token = 0;
		req_unlink(c, r);
		return;
	}
	r->answered = true;
	r->deadline = NEVER;
	r->next_retx = NEVER;
	r->gen++;
	const json_t *rs = json_object_get(json_object_get(body, CBOR_MSG_MITIGATION), "scope");
	for (size_t i = 0; json_is_array(rs) && i < json_array_size(rs); i++) {
		const json_t *e = json_array_get(rs, i);
		json_t *jmid = json_object_get(e, "mid");
		if (!json_is_integer(jmid) || json_integer_value(jmid) != m->mid)
			continue;
		json_t *before = json_incref(json_object_get(m->status, "status"));
		mitig_take_status(m, e, now);
		if (!json_equal(before, json_object_get(m->status, "status")))
			m->renotify_left = NOTIFY_REPEATS;
		json_decref(before);
		m->next_renotify = now + NOTIFY_REPEAT_MS;
		mitig_arm(c, m);
		dg_debug(LOG_UP, "upstream=%s cuid=%s mid=%" PRIu32 " status=%s", up_name(r->up),
			 r->cuid, r->mid,
			 json_string_value(json_object_get(e, "status")) ?: "?");
		notify_mitig(c, m, now, out);
	}
}

void core_on_up_response(struct core *c, const struct core_response *rsp,
			 dg_time_ms now, struct core_actions *out)
{
	uint64_t token;
	struct up_req *r;
	json_t *body = NULL;
	struct dg_diag d = { "" };

	if (!token_get(rsp->token, rsp->token_len, &token) ||
	    !(r = req_find(c, token)) || r->up->id != rsp->up_id) {
		dg_debug(LOG_UP, "response with unknown token ignored");
		return;
	}
	struct up_sess *u = r->up;
	/* Any answer proves the upstream alive. */
	u->missed_hb = 0;
	if (r->queued)
		return;
	count_up_answer(c, r, rsp->code);
	up_rtt_sample(u, r, now);
	dg_debug(LOG_UP, "upstream=%s %s token=%016" PRIx64 " answered %d.%02d after %" PRIu32 " tries rtt=%" PRIu32 "/%" PRIu32 " ms",
		 up_name(u), req_kind_names[r->kind], r->token, rsp->code / 100,
		 rsp->code % 100, r->ntx, u->srtt_ms, u->rttvar_ms);
	if (rsp->body_len && rsp->has_content_format &&
	    rsp->content_format == DG_CONTENT_FORMAT_DOTS_CBOR &&
	    cbor_decode(rsp->body, rsp->body_len, &body, &d)) {
		dg_warn(LOG_UP, "upstream=%s undecodable %s answer: %s", up_name(u),
			req_kind_names[r->kind], d.text);
		if (r->has_dn)
			reply_diag(out, r->dn_sid, r->dn_req_id, DG_CODE_BAD_GATEWAY,
				   "upstream answer not understood");
		r->has_dn = false;
		if (r->kind != REQ_OBSERVE) {
			req_unlink(c, r);
			return;
		}
	}

	switch (r->kind) {
	case REQ_RELAY_PUT:
	case REQ_RELAY_EFFICACY:
	case REQ_RESEND_PUT:
		on_mitig_answer(c, r, rsp, body, now, out);
		req_unlink(c, r);
		break;
	case REQ_RELAY_DELETE: {
		struct cuid_st *cs = cuid_find(c, r->cuid);
		struct mitig *m = mitig_find(cs, r->mid);
		struct client_st *cl = u->owner;
		reply_from_upstream(c, r, rsp, body, out);
		req_unlink(c, r);
		if (rsp->code == DG_CODE_DELETED && m) {
			dg_info(LOG_CORE, "client=%s cuid=%s mid=%" PRIu32 " withdrawn",
				cl->cfg->name, cs->cuid, m->mid);
			mitig_remove(c, m, out);
		} else {
			up_maybe_release(c, cl, out);
		}
		break;
	}
	case REQ_OBSERVE:
		on_observe_answer(c, r, rsp, body, now, out);
		break;
	case REQ_CONFIG_PUT:
		req_unlink(c, r);
		if (rsp->code == DG_CODE_CREATED || rsp->code == DG_CODE_CHANGED) {
			u->negotiated = u->want;
			up_ready(c, u, now, out);
		} else {
			/* Out of the server's bounds (4.22) or refused: adopt
			 * what the server currently uses (RFC 9132 §4.5.2). */
			dg_warn(LOG_UP, "upstream=%s PUT /config answered %d.%02d; using the server's values",
				up_name(u), rsp->code / 100, rsp->code % 100);
			struct up_req *g = up_request(c, u, REQ_CONFIG_GET, CORE_GET,
						      strdup("/.well-known/dots/config"),
						      NULL, now);
			if (g)
				req_go(c, g, now, out);
			else
				up_ready(c, u, now, out);
		}
		break;
	case REQ_CONFIG_GET: {
		struct model_session_config cur = u->want;
		req_unlink(c, r);
		if (rsp->code == DG_CODE_CONTENT && body &&
		    model_config_read(body, &cur, &d) == 0)
			u->negotiated = cur;
		else
			model_session_defaults(&u->negotiated);
		up_ready(c, u, now, out);
		break;
	}
	case REQ_HEARTBEAT:
		if (rsp->code == DG_CODE_CHANGED)
			u->hb_outstanding = false;
		req_unlink(c, r);
		break;
	}
	json_decref(body);
}

void core_on_up_nack(struct core *c, uint64_t up_id, const uint8_t *token,
		     size_t token_len, dg_time_ms now, struct core_actions *out)
{
	struct up_sess *u = up_find(c, up_id);

	(void)token;
	(void)token_len;
	/* A CON that exhausted its retransmissions: the session is dead
	 * even if (D)TLS still believes otherwise (LIBRARY-NOTES). */
	if (u && u->state != UP_BACKOFF)
		up_down(c, u, "no acknowledgement", now, out);
}

void core_on_up_event(struct core *c, uint64_t up_id, enum core_up_event ev,
		      dg_time_ms now, struct core_actions *out)
{
	struct up_sess *u = up_find(c, up_id);

	if (!u)
		return;
	switch (ev) {
	case CORE_UP_CONNECTED:
		if (u->state != UP_CONNECTING)
			return;
		up_set_state(u, UP_CONFIGURING);
		dg_info(LOG_UP, "upstream=%s connected", up_name(u));
		up_send_config(c, u, now, out);
		/* Heartbeats run during configuration too. */
		u->next_hb = now + (dg_time_ms)up_params(u)->heartbeat_interval * MS_PER_S;
		up_arm(c, u);
		break;
	case CORE_UP_FAILED:
	case CORE_UP_CLOSED:
		if (u->state == UP_BACKOFF)
			return;
		up_down(c, u, ev == CORE_UP_FAILED ? "connection failed" : "closed",
			now, out);
		break;
	}
}

int core_on_up_request(struct core *c, uint64_t up_id,
		       const struct core_request *req, dg_time_ms now,
		       struct core_actions *out)
{
	struct up_sess *u = up_find(c, up_id);
	struct model_uri uri;
	struct dg_diag d = { "" };
	json_t *body = NULL;
	bool status;

	(void)out;
	if (!u)
		return DG_CODE_INTERNAL;
	int code = model_parse_uri(req->path, req->npath, &uri, &d);
	if (code)
		return code;
	/* A DOTS server only ever sends us its heartbeats (RFC 9132 §4.7). */
	if (uri.res != MODEL_RES_HB)
		return DG_CODE_NOT_FOUND;
	if (req->method != CORE_PUT)
		return DG_CODE_METHOD_NOT_ALLOWED;
	if (!req->body_len || cbor_decode(req->body, req->body_len, &body, &d))
		return DG_CODE_BAD_REQUEST;
	code = model_check_heartbeat(body, &status, &d);
	json_decref(body);
	if (code)
		return code;
	u->last_peer_hb = now;
	u->missed_hb = 0;
	return DG_CODE_CHANGED;
}

/* ---- timers ---------------------------------------------------------------------------------- */

static void req_timeout(struct core *c, struct up_req *r, dg_time_ms now,
			struct core_actions *out)
{
	if (now >= r->deadline) {
		struct up_sess *u = r->up;
		dg_warn(LOG_UP, "upstream=%s %s token=%016" PRIx64 " timed out", up_name(u),
			req_kind_names[r->kind], r->token);
		if (r->has_dn)
			reply_diag(out, r->dn_sid, r->dn_req_id, DG_CODE_GATEWAY_TIMEOUT,
				   "upstream %s did not answer within %" PRIu32 " s",
				   up_name(u), c->cfg->request_timeout);
		count_up_answer(c, r, -1);
		r->has_dn = false;
		enum req_kind kind = r->kind;
		char cuid[sizeof(r->cuid)];
		uint32_t mid = r->mid;
		snprintf(cuid, sizeof(cuid), "%s", r->cuid);
		req_unlink(c, r);
		if (kind == REQ_OBSERVE) {
			/* Try again: the client's observation depends on it. */
			struct mitig *m = mitig_find(cuid_find(c, cuid), mid);
			if (m) {
				m->obs_token = 0;
				observe_start(c, m, now, out);
			}
		} else if (kind == REQ_CONFIG_PUT || kind == REQ_CONFIG_GET) {
			up_down(c, u, "no answer to session configuration", now, out);
		}
		return;
	}
	if (now >= r->next_retx) {
		/* NON requests are repeated until answered, at most one per
		 * 3 s without an RTT estimate (RFC 9132 §4.4). No backoff:
		 * under attack the link is lossy, not congested by us, and a
		 * steady cadence is what gets a request through 50% loss. */
		up_transmit(c, r, now, out);
		r->next_retx = now + up_non_interval(r->up);
	}
	req_arm(c, r);
}

static void up_timeout(struct core *c, struct up_sess *u, dg_time_ms now,
		       struct core_actions *out)
{
	switch (u->state) {
	case UP_CONNECTING:
		if (now >= u->connect_deadline) {
			metrics_add(CORE_MX(c, hs_failures),
				    (const char *[]){ METRICS_UP, "timeout" }, 1);
			up_down(c, u, "handshake timeout", now, out);
		}
		else
			up_arm(c, u);
		break;
	case UP_CONFIGURING:
	case UP_READY:
		if (now >= u->next_hb)
			up_send_heartbeat(c, u, now, out);
		if (up_find(c, u->id) && u->state != UP_BACKOFF)
			up_arm(c, u);
		break;
	case UP_BACKOFF:
		if (now >= u->reconnect_at) {
			dg_info(LOG_UP, "upstream=%s reconnecting", up_name(u));
			up_open(c, u, now, out);
		} else {
			up_arm(c, u);
		}
		break;
	}
}

static void mitig_timeout(struct core *c, struct mitig *m, dg_time_ms now,
			  struct core_actions *out)
{
	if (m->renotify_left && now >= m->next_renotify) {
		m->renotify_left--;
		m->next_renotify = now + NOTIFY_REPEAT_MS;
		notify_mitig(c, m, now, out);
	}
	if (m->lifetime < 0 || now < m->expires) {
		mitig_arm(c, m);
		return;
	}
	dg_info(LOG_CORE, "client=%s cuid=%s mid=%" PRIu32 " lifetime expired",
		m->cs->owner->cfg->name, m->cs->cuid, m->mid);
	mitig_remove(c, m, out);
}

void core_on_expiry(struct core *c, dg_time_ms now, struct core_actions *out)
{
	/* Bounded: entries pushed while handling are due later than now
	 * unless a handler re-arms at now, which they never do. */
	size_t budget = c->heap_n + 64;

	while (c->heap_n && c->heap[0].when <= now && budget--) {
		struct timer_ent e = heap_pop(c);
		switch (e.kind) {
		case TK_DN: {
			struct dn_sess *s = dn_find(c, e.id);
			if (s && s->gen == e.gen)
				dn_send_heartbeat(c, s, now, out);
			break;
		}
		case TK_UP: {
			struct up_sess *u = up_find(c, e.id);
			if (u && u->gen == e.gen)
				up_timeout(c, u, now, out);
			break;
		}
		case TK_REQ: {
			struct up_req *r = req_find(c, e.id);
			if (r && r->gen == e.gen)
				req_timeout(c, r, now, out);
			break;
		}
		case TK_MITIG: {
			struct mitig *m = mitig_by_id(c, e.id);
			if (m && m->gen == e.gen)
				mitig_timeout(c, m, now, out);
			break;
		}
		}
	}
}

/* ---- read-only introspection ------------------------------------------------------------ */

void core_foreach_dn_session(const struct core *c, dg_time_ms now,
			     core_dn_view_fn fn, void *arg)
{
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	while ((n = hmap_iter_next(&c->dn, &it))) {
		const struct dn_sess *s = hmap_entry(n, struct dn_sess, node);
		const struct model_session_params *p = dn_params(s);
		struct core_dn_view v = {
			.sid = s->sid,
			.transport = s->transport,
			.peer = s->peer,
			.client = s->cl ? s->cl->cfg->name : NULL,
			.cdid = s->cdid,
			.since = s->since,
			.last_rx = s->last_rx,
			.heartbeat_interval = p->heartbeat_interval,
			.missing_hb_allowed = p->missing_hb_allowed,
		};
		if (p->heartbeat_interval && now > s->last_rx)
			v.missed_hb = (uint32_t)((now - s->last_rx) /
						 ((dg_time_ms)p->heartbeat_interval * MS_PER_S));
		for (const struct dn_obs *o = s->cl ? s->cl->observers : NULL; o; o = o->next)
			v.observers += o->dn_sid == s->sid;
		if (!fn(&v, arg))
			return;
	}
}

void core_foreach_up_session(const struct core *c, core_up_view_fn fn,
			     void *arg)
{
	static const char *const names[] = {
		[UP_CONNECTING] = "connecting", [UP_CONFIGURING] = "configuring",
		[UP_READY] = "ready", [UP_BACKOFF] = "backoff",
	};
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	while ((n = hmap_iter_next(&c->up, &it))) {
		const struct up_sess *u = hmap_entry(n, struct up_sess, node);
		const struct model_session_params *p = up_params(u);
		struct core_up_view v = {
			.id = u->id,
			.upstream = u->cfg,
			.client = u->owner ? u->owner->cfg->name : NULL,
			.state = names[u->state],
			.ready = u->state == UP_READY,
			.since = u->ready_since,
			.reconnect_at = u->reconnect_at,
			.heartbeat_interval = p->heartbeat_interval,
			.missing_hb_allowed = p->missing_hb_allowed,
			.missed_hb = u->missed_hb,
			.target = u->has_tgt ? &u->tgt : NULL,
		};
		for (const struct up_req *r = u->reqs; r; r = r->next)
			v.pending++;
		if (!fn(&v, arg))
			return;
	}
}

void core_foreach_mitigation(const struct core *c, const char *client,
			     dg_time_ms now, core_mitig_view_fn fn, void *arg)
{
	char cdid[IDENT_LEN + 1];

	/* Configured clients, then the gateway's own records. */
	for (size_t i = 0; i < c->nclients + c->ngw_own; i++) {
		const struct client_st *cl = i < c->nclients ? c->clients[i] :
					     c->gw_own[i - c->nclients];
		if (client && strcmp(cl->cfg->name, client) != 0)
			continue;
		for (const struct cuid_st *cs = cl->cuids; cs; cs = cs->next) {
			for (const struct mitig *m = cs->mitigs; m; m = m->next) {
				/* Map mode: the client's cuid and mid are kept
				 * upstream (RFC 8811 §2.2.3). */
				struct core_mitig_view v = {
					.client = cl->cfg->name,
					.cuid = cs->cuid,
					.mid = m->mid,
					.cdid = client_cdid(c, cl, cdid),
					.up_id = cl->up ? cl->up->id : 0,
					.upstream = cl->cfg->upstream,
					.up_cuid = cs->cuid,
					.up_mid = m->mid,
					.lifetime_left = lifetime_left(m, now),
					.observed = m->obs_token != 0,
					.scope = m->entry,
					.status = m->status,
				};
				if (!fn(&v, arg))
					return;
			}
		}
	}
}

/* ---- discovered upstreams (RFC 8973) ------------------------------------------------------ */

static bool tlist_same(const struct core_tlist *l, const struct core_target *t,
		       size_t n)
{
	if ((l ? l->n : 0) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!target_same(&l->t[i], &t[i]))
			return false;
	return true;
}

int core_upstream_retarget(struct core *c, const char *upstream,
			   const struct core_target *t, size_t n, dg_time_ms now,
			   struct core_actions *out, size_t *rehomed)
{
	struct core_tlist *l = tlist_find(c, upstream), **v;
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *node;
	uint64_t *ids;
	size_t nids = 0;

	*rehomed = 0;
	if (!upstream || strlen(upstream) >= sizeof(l->name) || n > CORE_TARGETS_MAX ||
	    (n && (!t || !upstream_by_name(c->cfg, upstream))))
		return DG_EINVAL; /* n = 0 forgets even a removed upstream's list */
	if (tlist_same(l, t, n))
		return 0;
	if (!(ids = calloc(c->up.count ? c->up.count : 1, sizeof(*ids))))
		return DG_ENOMEM;
	if (!l) {
		if (!(v = realloc(c->tlists, (c->ntlists + 1) * sizeof(*v))) ||
		    !(l = calloc(1, sizeof(*l)))) {
			if (v)
				c->tlists = v;
			free(ids);
			return DG_ENOMEM;
		}
		c->tlists = v;
		snprintf(l->name, sizeof(l->name), "%s", upstream);
		c->tlists[c->ntlists++] = l;
	}
	for (size_t i = 0; i < n; i++)
		l->t[i] = t[i];
	l->n = n;
	dg_info(LOG_CORE, "upstream %s: %zu candidate(s)%s%s", upstream, n,
		n ? ", first " : "", n ? t[0].address : "");
	while ((node = hmap_iter_next(&c->up, &it))) {
		struct up_sess *u = hmap_entry(node, struct up_sess, node);
		if (strcmp(u->cfg->name, upstream) == 0)
			ids[nids++] = u->id;
	}
	/* Sessions are collected first: re-homing frees and creates them. */
	for (size_t k = 0; k < nids; k++) {
		struct up_sess *u = up_find(c, ids[k]);
		struct core_action *a;
		size_t i;

		if (!u)
			continue;
		for (i = 0; u->has_tgt && i < n; i++)
			if (target_same(&u->tgt, &t[i]))
				break;
		if ((u->state == UP_READY || u->state == UP_CONFIGURING) &&
		    u->has_tgt && i < n) {
			u->cand = i; /* still offered: the session stays */
			continue;
		}
		if (u->state == UP_READY || u->state == UP_CONFIGURING) {
			/* RFC 8973 §4: the server in use is no longer offered:
			 * move the client and its mitigations to the first. */
			client_rehome(c, u->owner, now, out);
			++*rehomed;
			continue;
		}
		/* Connecting or waiting to reconnect: start over at the
		 * first candidate of the new list now. */
		if (u->state == UP_CONNECTING && (a = act_push(out, CORE_ACT_UP_CLOSE)))
			a->up_id = u->id;
		u->cand = 0;
		up_open(c, u, now, out);
	}
	free(ids);
	return 0;
}
