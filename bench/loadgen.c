/*
 * loadgen.c: the load generator of scripts/bench (libcoap client).
 *
 * Two modes, one JSON line per result on stdout (scripts/bench.py reads
 * them), diagnostics on stderr:
 *
 *   rate      one session (udp or dtls-psk) keeps N mitigation PUTs in
 *             flight (NON by default, RFC 9132 §4.4.1) for a fixed time and
 *             reports completions per second and latency percentiles.
 *             Slot k always PUTs cuid=CUID/mid=BASE+k with its own /32
 *             target, so after the first round every request is a refresh
 *             (RFC 9132 §4.4.1.3: same mid, same attributes, 2.04): the
 *             steady state of a relay, with a bounded number of
 *             mitigations on every hop.
 *   sessions  opens M DTLS-PSK sessions (identities built from a format,
 *             one per configured client), at most W handshakes at once,
 *             and keeps them alive with heartbeats (RFC 9132 §4.7) every
 *             H seconds until SIGTERM. A session that closes, fails or
 *             misses 3 heartbeats is re-opened (backoff 100 ms doubling to
 *             2 s, jittered), which makes a gateway restart a reconnect
 *             storm (paced by --window; SIGUSR1 lifts the window). Progress
 *             lines every second; an "all-up" line each time every session
 *             is established.
 *
 * libcoap 4.3.1 walks every session of a context on every
 * coap_io_process() call (LIBRARY-NOTES.md), so sessions mode spreads its
 * sessions over many contexts (--per-ctx) and waits on all their epoll fds
 * with one epoll of its own. One process holds at most about 950 DTLS
 * sessions: see the FD_SETSIZE check in lg_parse(); scripts/bench.py runs
 * as many processes as it needs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>
#include <jansson.h>

#include "cbor.h"
#include "dg.h"

#define LG_TOKEN_LEN 8
#define LG_MAX_INFLIGHT 4096
#define LG_HS_TIMEOUT_NS (15 * NS_PER_S)
#define LG_RETRY_MIN_MS 100
#define LG_RETRY_MAX_MS 2000
#define LG_HB_MISSES 3
#define LG_SCAN_MS 50
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

enum lg_mode { LG_RATE, LG_SESSIONS };

struct lg_opts {
	enum lg_mode mode;
	char host[256];
	uint16_t port;
	coap_proto_t proto;
	const char *psk_id, *psk_key;
	/* rate */
	unsigned inflight;
	double duration_s, warmup_s;
	const char *cuid;
	unsigned mid_base;
	bool con;
	unsigned timeout_ms;
	/* sessions */
	unsigned sessions, first;
	const char *id_prefix, *key_prefix;
	unsigned digits;
	unsigned hb_s, per_ctx, window;
};

static volatile sig_atomic_t lg_stop;
/* SIGUSR1: lift --window (reconnect as fast as each client's backoff
 * allows: an unpaced storm). */
static volatile sig_atomic_t lg_unpaced;

static uint64_t lg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void lg_on_signal(int sig)
{
	if (sig == SIGUSR1)
		lg_unpaced = 1;
	else
		lg_stop = 1;
}

static void lg_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void lg_log(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* xorshift64*: jitter only, no need for anything better. */
static uint64_t lg_rand_state = 0x2545f4914f6cdd1dull;
static uint64_t lg_rand(void)
{
	lg_rand_state ^= lg_rand_state >> 12;
	lg_rand_state ^= lg_rand_state << 25;
	lg_rand_state ^= lg_rand_state >> 27;
	return lg_rand_state * 0x2545f4914f6cdd1dull;
}

static void lg_token_put(uint64_t v, uint8_t *buf)
{
	for (int i = 0; i < LG_TOKEN_LEN; i++)
		buf[i] = (uint8_t)(v >> (56 - 8 * i));
}

static bool lg_token_get(coap_bin_const_t t, uint64_t *v)
{
	if (t.length != LG_TOKEN_LEN)
		return false;
	*v = 0;
	for (int i = 0; i < LG_TOKEN_LEN; i++)
		*v = *v << 8 | t.s[i];
	return true;
}

static void lg_add_path(coap_pdu_t *pdu, const char *path)
{
	while (*path == '/')
		path++;
	while (*path) {
		const char *e = strchr(path, '/');
		size_t len = e ? (size_t)(e - path) : strlen(path);
		coap_add_option(pdu, COAP_OPTION_URI_PATH, len,
				(const uint8_t *)path);
		path += len;
		while (*path == '/')
			path++;
	}
}

/* A PUT with a DOTS body; NULL when libcoap is out of memory. */
static coap_pdu_t *lg_put(coap_session_t *s, bool con, uint64_t token,
			  const char *path, const uint8_t *body, size_t len)
{
	uint8_t tok[LG_TOKEN_LEN], cf[2];
	coap_pdu_t *pdu = coap_pdu_init(con ? COAP_MESSAGE_CON : COAP_MESSAGE_NON,
					COAP_REQUEST_CODE_PUT,
					coap_new_message_id(s), 1024);

	if (!pdu)
		return NULL;
	lg_token_put(token, tok);
	coap_add_token(pdu, sizeof(tok), tok);
	lg_add_path(pdu, path);
	coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
			coap_encode_var_safe(cf, sizeof(cf),
					     DG_CONTENT_FORMAT_DOTS_CBOR), cf);
	coap_add_data(pdu, len, body);
	return pdu;
}

static coap_session_t *lg_connect(coap_context_t *ctx, const coap_address_t *dst,
				  coap_proto_t proto, const char *id,
				  const char *key)
{
	coap_dtls_cpsk_t cp;

	if (proto == COAP_PROTO_UDP)
		return coap_new_client_session(ctx, NULL, dst, proto);
	memset(&cp, 0, sizeof(cp));
	cp.version = COAP_DTLS_CPSK_SETUP_VERSION;
	cp.psk_info.identity.s = (const uint8_t *)id;
	cp.psk_info.identity.length = strlen(id);
	cp.psk_info.key.s = (const uint8_t *)key;
	cp.psk_info.key.length = strlen(key);
	return coap_new_client_session_psk2(ctx, NULL, dst, proto, &cp);
}

/* The gateway's (or server's) own heartbeats to us (RFC 9132 §4.7): 2.04,
 * no body. Anything else on any path gets the same: a load generator does
 * not judge. */
static void lg_on_request(coap_resource_t *r, coap_session_t *s,
			  const coap_pdu_t *req, const coap_string_t *q,
			  coap_pdu_t *rsp);

static coap_context_t *lg_new_context(void);

/* ==== rate mode ===================================================== */

struct lg_slot {
	uint64_t seq;
	uint64_t sent_ns;
	bool busy;
	char path[160];
	uint8_t *body;
	size_t body_len;
};

struct lg_rate {
	const struct lg_opts *o;
	coap_session_t *s;
	struct lg_slot *slots;
	uint64_t start_ns, end_ns; /* measurement window */
	bool sending;
	uint64_t *lat;
	size_t nlat, cap;
	uint64_t completed, timeouts, send_fail;
	uint64_t codes[8][32]; /* by class and detail */
};

static struct lg_rate *lg_rate_g;

static int lg_body_for(unsigned k, uint8_t **buf, size_t *len)
{
	char prefix[32];
	int rc;

	/* One /32 per slot inside 10.0.0.0/8: slots never overlap, so a
	 * gateway never replaces one slot's mitigation by another's
	 * (RFC 9132 §4.4.1.3). */
	snprintf(prefix, sizeof(prefix), "10.%u.%u.%u/32", (k >> 16) & 0xff,
		 (k >> 8) & 0xff, k & 0xff);
	json_t *m = json_pack("{s:{s:[{s:[s],s:[i],s:i}]}}", CBOR_MSG_MITIGATION,
			      "scope", "target-prefix", prefix,
			      "target-protocol", 6, "lifetime", 3600);
	if (!m)
		return DG_ENOMEM;
	rc = cbor_encode(m, buf, len, NULL);
	json_decref(m);
	return rc;
}

static void lg_rate_send(struct lg_rate *r, unsigned k, uint64_t now)
{
	struct lg_slot *sl = &r->slots[k];
	uint64_t token = (uint64_t)k << 48 | (++sl->seq & 0xffffffffffffull);
	coap_pdu_t *pdu = lg_put(r->s, r->o->con, token, sl->path, sl->body,
				 sl->body_len);

	sl->busy = true;
	sl->sent_ns = now;
	if (!pdu || coap_send(r->s, pdu) == COAP_INVALID_MID)
		r->send_fail++; /* the slot times out and tries again */
}

static void lg_rate_record(struct lg_rate *r, uint64_t lat)
{
	if (r->nlat == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 65536;
		uint64_t *v = realloc(r->lat, ncap * sizeof(*v));
		if (!v)
			return;
		r->lat = v;
		r->cap = ncap;
	}
	r->lat[r->nlat++] = lat;
}

static coap_response_t lg_rate_on_response(coap_session_t *s,
					   const coap_pdu_t *sent,
					   const coap_pdu_t *rcvd,
					   const coap_mid_t mid)
{
	struct lg_rate *r = lg_rate_g;
	uint64_t tok, now = lg_now();
	coap_pdu_code_t code = coap_pdu_get_code(rcvd);

	(void)s;
	(void)sent;
	(void)mid;
	if (!r || !lg_token_get(coap_pdu_get_token(rcvd), &tok))
		return COAP_RESPONSE_OK;
	unsigned k = (unsigned)(tok >> 48);
	if (k >= r->o->inflight)
		return COAP_RESPONSE_OK;
	struct lg_slot *sl = &r->slots[k];
	if (!sl->busy || (sl->seq & 0xffffffffffffull) != (tok & 0xffffffffffffull))
		return COAP_RESPONSE_OK; /* late answer to a timed-out try */
	sl->busy = false;
	if (now >= r->start_ns && now < r->end_ns && sl->sent_ns >= r->start_ns) {
		r->completed++;
		r->codes[(code >> 5) & 7][code & 0x1f]++;
		lg_rate_record(r, now - sl->sent_ns);
	}
	if (r->sending)
		lg_rate_send(r, k, now);
	return COAP_RESPONSE_OK;
}

static int lg_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double lg_pct_us(const uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)n);
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1000.0;
}

static bool lg_wait_established(coap_context_t *ctx, coap_session_t *s,
				unsigned ms)
{
	uint64_t deadline = lg_now() + (uint64_t)ms * NS_PER_MS;

	while (!lg_stop && lg_now() < deadline) {
		if (coap_session_get_state(s) == COAP_SESSION_STATE_ESTABLISHED)
			return true;
		coap_io_process(ctx, 20);
	}
	return coap_session_get_state(s) == COAP_SESSION_STATE_ESTABLISHED;
}

static int lg_run_rate(const struct lg_opts *o, const coap_address_t *dst)
{
	struct lg_rate r;
	coap_context_t *ctx = lg_new_context();
	int rc = 1;

	memset(&r, 0, sizeof(r));
	r.o = o;
	if (!ctx)
		return 1;
	coap_register_response_handler(ctx, lg_rate_on_response);
	r.slots = calloc(o->inflight, sizeof(*r.slots));
	if (!r.slots)
		goto out;
	for (unsigned k = 0; k < o->inflight; k++) {
		snprintf(r.slots[k].path, sizeof(r.slots[k].path),
			 "/.well-known/dots/mitigate/cuid=%s/mid=%u", o->cuid,
			 o->mid_base + k);
		if (lg_body_for(k, &r.slots[k].body, &r.slots[k].body_len))
			goto out;
	}
	r.s = lg_connect(ctx, dst, o->proto, o->psk_id, o->psk_key);
	if (!r.s) {
		lg_log("cannot create the session");
		goto out;
	}
	if (!lg_wait_established(ctx, r.s, 10000)) {
		lg_log("session not established within 10 s");
		goto out;
	}
	lg_rate_g = &r;
	uint64_t t0 = lg_now();
	r.start_ns = t0 + (uint64_t)(o->warmup_s * 1e9);
	r.end_ns = r.start_ns + (uint64_t)(o->duration_s * 1e9);
	r.sending = true;
	for (unsigned k = 0; k < o->inflight; k++)
		lg_rate_send(&r, k, t0);
	uint64_t next_check = t0;
	for (;;) {
		uint64_t now = lg_now();
		if (lg_stop)
			break;
		if (now >= r.end_ns)
			break;
		if (now >= next_check) {
			/* A lost NON is never answered: try again. */
			uint64_t limit = (uint64_t)o->timeout_ms * NS_PER_MS;
			for (unsigned k = 0; k < o->inflight; k++) {
				if (r.slots[k].busy && now - r.slots[k].sent_ns > limit) {
					if (r.slots[k].sent_ns >= r.start_ns)
						r.timeouts++;
					lg_rate_send(&r, k, now);
				}
			}
			next_check = now + 10 * NS_PER_MS;
		}
		coap_io_process(ctx, 10);
	}
	r.sending = false;
	double secs = (double)(r.end_ns - r.start_ns) / 1e9;
	if (lg_stop && lg_now() < r.end_ns)
		secs = (double)(lg_now() - r.start_ns) / 1e9;
	qsort(r.lat, r.nlat, sizeof(*r.lat), lg_cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < r.nlat; i++)
		sum += (double)r.lat[i];
	printf("{\"event\":\"rate\",\"transport\":\"%s\",\"inflight\":%u,"
	       "\"type\":\"%s\",\"seconds\":%.3f,\"completed\":%" PRIu64 ","
	       "\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
	       "\"mean_us\":%.1f,\"max_us\":%.1f,\"timeouts\":%" PRIu64 ","
	       "\"send_failures\":%" PRIu64 ",\"codes\":{",
	       o->proto == COAP_PROTO_DTLS ? "dtls" : "udp", o->inflight,
	       o->con ? "con" : "non", secs, r.completed,
	       secs > 0 ? (double)r.completed / secs : 0.0,
	       lg_pct_us(r.lat, r.nlat, 0.50), lg_pct_us(r.lat, r.nlat, 0.99),
	       lg_pct_us(r.lat, r.nlat, 0.999),
	       r.nlat ? sum / (double)r.nlat / 1000.0 : 0.0,
	       r.nlat ? (double)r.lat[r.nlat - 1] / 1000.0 : 0.0, r.timeouts,
	       r.send_fail);
	bool first = true;
	for (int c = 0; c < 8; c++)
		for (int d = 0; d < 32; d++)
			if (r.codes[c][d]) {
				printf("%s\"%d.%02d\":%" PRIu64, first ? "" : ",", c, d,
				       r.codes[c][d]);
				first = false;
			}
	printf("}}\n");
	fflush(stdout);
	rc = 0;
out:
	lg_rate_g = NULL;
	if (r.s)
		coap_session_release(r.s);
	coap_free_context(ctx);
	if (r.slots)
		for (unsigned k = 0; k < o->inflight; k++)
			free(r.slots[k].body);
	free(r.slots);
	free(r.lat);
	return rc;
}

/* ==== sessions mode ================================================= */

enum lg_sstate { SS_IDLE, SS_CONNECTING, SS_UP, SS_RETRY };

struct lg_sess {
	coap_session_t *s;
	unsigned num;        /* client number, in the identity and key */
	unsigned ctx;
	enum lg_sstate st;
	unsigned retries;    /* consecutive failures, for the backoff */
	unsigned missed;     /* heartbeats without an answer */
	bool hb_outstanding;
	uint64_t t_start, next_hb, retry_at;
	uint64_t hb_seq;
};

struct lg_ctx {
	coap_context_t *ctx;
	unsigned first, n;   /* its sessions: sess[first .. first+n) */
	unsigned connecting;
	bool kick;
};

struct lg_sessions {
	const struct lg_opts *o;
	const coap_address_t *dst;
	struct lg_sess *sess;
	struct lg_ctx *ctxs;
	unsigned nctx;
	unsigned up, connecting;
	unsigned next_idle;  /* first never-opened session */
	uint64_t handshakes, failures, closes, hb_timeouts;
	uint64_t hb_sent, hb_ok, hb_rx;
	uint64_t t_begin;    /* when the current "not all up" period began */
	uint64_t hs_at_begin;
	bool all_up;
	uint64_t sec_start, sec_hs, peak_hs;
	uint64_t first_all_up_ns;
	coap_session_t **rel;
	size_t nrel;
	uint64_t *hs_ns;     /* handshake times since t_begin */
	size_t nhs;
};

static struct lg_sessions *lg_ss_g;

static double lg_sec(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* Delayed: libcoap must not see a release inside its own handlers
 * (LIBRARY-NOTES.md). */
static void lg_ss_down(struct lg_sessions *g, struct lg_sess *x, uint64_t now,
		       bool failed)
{
	if (x->st == SS_UP)
		g->up--;
	else if (x->st == SS_CONNECTING) {
		g->connecting--;
		g->ctxs[x->ctx].connecting--;
	} else {
		return;
	}
	if (x->s) {
		coap_session_set_app_data(x->s, NULL);
		g->rel[g->nrel++] = x->s;
		x->s = NULL;
	}
	if (failed)
		g->failures++;
	else
		g->closes++;
	unsigned ms = LG_RETRY_MIN_MS << (x->retries < 5 ? x->retries : 5);
	if (ms > LG_RETRY_MAX_MS)
		ms = LG_RETRY_MAX_MS;
	x->retries++;
	/* Jitter 50..100% so that a storm does not retry in lockstep. */
	ms = ms / 2 + (unsigned)(lg_rand() % (ms / 2 + 1));
	x->st = SS_RETRY;
	x->retry_at = now + (uint64_t)ms * NS_PER_MS;
	if (g->all_up) {
		g->all_up = false;
		g->t_begin = now;
		g->hs_at_begin = g->handshakes;
		g->nhs = 0;
	}
}

static int lg_ss_on_event(coap_session_t *s, const coap_event_t ev)
{
	struct lg_sessions *g = lg_ss_g;
	struct lg_sess *x = coap_session_get_app_data(s);

	if (!g || !x)
		return 0;
	switch (ev) {
	case COAP_EVENT_DTLS_CLOSED:
	case COAP_EVENT_SESSION_CLOSED:
		lg_ss_down(g, x, lg_now(), false);
		break;
	case COAP_EVENT_DTLS_ERROR:
	case COAP_EVENT_SESSION_FAILED:
		lg_ss_down(g, x, lg_now(), true);
		break;
	default:
		break;
	}
	return 0;
}

static coap_response_t lg_ss_on_response(coap_session_t *s,
					 const coap_pdu_t *sent,
					 const coap_pdu_t *rcvd,
					 const coap_mid_t mid)
{
	struct lg_sessions *g = lg_ss_g;
	struct lg_sess *x = coap_session_get_app_data(s);
	uint64_t tok;

	(void)sent;
	(void)mid;
	if (!g || !x || !lg_token_get(coap_pdu_get_token(rcvd), &tok))
		return COAP_RESPONSE_OK;
	if (tok == x->hb_seq && x->hb_outstanding &&
	    coap_pdu_get_code(rcvd) == COAP_RESPONSE_CODE(204)) {
		x->hb_outstanding = false;
		x->missed = 0;
		g->hb_ok++;
	}
	return COAP_RESPONSE_OK;
}

static void lg_ss_nack(coap_session_t *s, const coap_pdu_t *sent,
		       const coap_nack_reason_t reason, const coap_mid_t mid)
{
	struct lg_sessions *g = lg_ss_g;
	struct lg_sess *x = coap_session_get_app_data(s);

	(void)sent;
	(void)mid;
	if (g && x && (reason == COAP_NACK_TLS_FAILED ||
		       reason == COAP_NACK_NOT_DELIVERABLE))
		lg_ss_down(g, x, lg_now(), true);
}

static void lg_ss_open(struct lg_sessions *g, struct lg_sess *x, uint64_t now)
{
	char id[128], key[128];
	struct lg_ctx *c = &g->ctxs[x->ctx];

	snprintf(id, sizeof(id), "%s%0*u", g->o->id_prefix, (int)g->o->digits,
		 x->num);
	snprintf(key, sizeof(key), "%s%0*u", g->o->key_prefix,
		 (int)g->o->digits, x->num);
	x->s = lg_connect(c->ctx, g->dst, COAP_PROTO_DTLS, id, key);
	x->t_start = now;
	x->missed = 0;
	x->hb_outstanding = false;
	if (!x->s) {
		x->st = SS_CONNECTING; /* so that lg_ss_down counts it */
		g->connecting++;
		c->connecting++;
		lg_ss_down(g, x, now, true);
		return;
	}
	coap_session_set_app_data(x->s, x);
	x->st = SS_CONNECTING;
	g->connecting++;
	c->connecting++;
	c->kick = true;
}

static void lg_ss_check_ctx(struct lg_sessions *g, struct lg_ctx *c,
			    uint64_t now)
{
	/* libcoap 4.3.1 (GnuTLS) raises no event when a client handshake
	 * completes: look at the state (as gateway/io_coap.c does). */
	for (unsigned i = c->first; i < c->first + c->n && c->connecting; i++) {
		struct lg_sess *x = &g->sess[i];
		if (x->st != SS_CONNECTING || !x->s)
			continue;
		if (coap_session_get_state(x->s) == COAP_SESSION_STATE_ESTABLISHED) {
			x->st = SS_UP;
			x->retries = 0;
			c->connecting--;
			g->connecting--;
			g->up++;
			g->handshakes++;
			g->sec_hs++;
			if (g->nhs < g->o->sessions * 4u)
				g->hs_ns[g->nhs++] = now - x->t_start;
			/* Spread the heartbeats over one interval. */
			x->next_hb = now + (lg_rand() % ((uint64_t)g->o->hb_s * 1000 + 1)) *
					   NS_PER_MS;
		} else if (now - x->t_start > LG_HS_TIMEOUT_NS) {
			lg_ss_down(g, x, now, true);
		}
	}
}

static const uint8_t lg_hb_body[] = {
	/* {49: {51: true}}: ietf-dots-signal-channel:heartbeat with
	 * peer-hb-status (RFC 9132 §4.7, cbor-keys.tsv) */
	0xa1, 0x18, 0x31, 0xa1, 0x18, 0x33, 0xf5,
};

static void lg_ss_heartbeat(struct lg_sessions *g, struct lg_sess *x,
			    uint64_t now)
{
	if (x->hb_outstanding && ++x->missed >= LG_HB_MISSES) {
		g->hb_timeouts++;
		lg_ss_down(g, x, now, false);
		return;
	}
	x->hb_seq = (uint64_t)x->num << 32 | (uint32_t)(g->hb_sent + 1);
	coap_pdu_t *pdu = lg_put(x->s, false, x->hb_seq, "/.well-known/dots/hb",
				 lg_hb_body, sizeof(lg_hb_body));
	if (pdu && coap_send(x->s, pdu) != COAP_INVALID_MID) {
		g->hb_sent++;
		x->hb_outstanding = true;
		g->ctxs[x->ctx].kick = true;
	}
	x->next_hb = now + (uint64_t)g->o->hb_s * NS_PER_S;
}

static void lg_ss_progress(struct lg_sessions *g, uint64_t now)
{
	printf("{\"event\":\"progress\",\"t\":%.3f,\"up\":%u,\"connecting\":%u,"
	       "\"handshakes\":%" PRIu64 ",\"failures\":%" PRIu64 ","
	       "\"closes\":%" PRIu64 ",\"hb_sent\":%" PRIu64 ",\"hb_ok\":%" PRIu64
	       ",\"hb_rx\":%" PRIu64 ",\"hb_timeouts\":%" PRIu64 "}\n",
	       lg_sec(now), g->up, g->connecting, g->handshakes, g->failures,
	       g->closes, g->hb_sent, g->hb_ok, g->hb_rx, g->hb_timeouts);
	fflush(stdout);
}

/* Opens never-opened sessions up to the window: called on every pass so
 * that a finished handshake makes room at once. */
static void lg_ss_fill(struct lg_sessions *g, uint64_t now)
{
	unsigned window = lg_unpaced ? g->o->sessions : g->o->window;

	while (g->next_idle < g->o->sessions && g->connecting < window)
		lg_ss_open(g, &g->sess[g->next_idle++], now);
}

static void lg_ss_timers(struct lg_sessions *g, uint64_t now)
{
	const struct lg_opts *o = g->o;
	unsigned window = lg_unpaced ? o->sessions : o->window;

	for (unsigned i = 0; i < o->sessions; i++) {
		struct lg_sess *x = &g->sess[i];
		if (x->st == SS_UP && now >= x->next_hb)
			lg_ss_heartbeat(g, x, now);
		else if (x->st == SS_RETRY && now >= x->retry_at &&
			 g->connecting < window)
			lg_ss_open(g, x, now);
	}
	lg_ss_fill(g, now);
}

static int lg_run_sessions(const struct lg_opts *o, const coap_address_t *dst)
{
	struct lg_sessions g;
	struct epoll_event evs[64];
	int ep = epoll_create1(EPOLL_CLOEXEC), rc = 1;

	memset(&g, 0, sizeof(g));
	g.o = o;
	g.dst = dst;
	g.nctx = (o->sessions + o->per_ctx - 1) / o->per_ctx;
	g.sess = calloc(o->sessions, sizeof(*g.sess));
	g.ctxs = calloc(g.nctx, sizeof(*g.ctxs));
	g.rel = calloc(o->sessions, sizeof(*g.rel));
	g.hs_ns = calloc((size_t)o->sessions * 4, sizeof(*g.hs_ns));
	if (ep < 0 || !g.sess || !g.ctxs || !g.rel || !g.hs_ns)
		goto out;
	lg_ss_g = &g;
	for (unsigned c = 0; c < g.nctx; c++) {
		struct lg_ctx *lc = &g.ctxs[c];
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = c };
		lc->ctx = lg_new_context();
		if (!lc->ctx)
			goto out;
		coap_register_response_handler(lc->ctx, lg_ss_on_response);
		coap_register_event_handler(lc->ctx, lg_ss_on_event);
		coap_register_nack_handler(lc->ctx, lg_ss_nack);
		lc->first = c * o->per_ctx;
		lc->n = o->sessions - lc->first < o->per_ctx ?
				o->sessions - lc->first : o->per_ctx;
		int fd = coap_context_get_coap_fd(lc->ctx);
		if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
			lg_log("libcoap has no epoll fd: sessions mode needs one");
			goto out;
		}
		for (unsigned i = lc->first; i < lc->first + lc->n; i++) {
			g.sess[i].ctx = c;
			g.sess[i].num = o->first + i;
		}
	}
	uint64_t now = lg_now(), next_scan = now, next_progress = now + NS_PER_S;
	g.t_begin = now;
	g.sec_start = now;
	printf("{\"event\":\"start\",\"t\":%.3f,\"sessions\":%u,\"contexts\":%u}\n",
	       lg_sec(now), o->sessions, g.nctx);
	fflush(stdout);
	while (!lg_stop) {
		int n = epoll_wait(ep, evs, 64, LG_SCAN_MS / 5);
		now = lg_now();
		for (int i = 0; i < n; i++) {
			struct lg_ctx *c = &g.ctxs[evs[i].data.u32];
			coap_io_process(c->ctx, COAP_IO_NO_WAIT);
			c->kick = false;
			if (c->connecting)
				lg_ss_check_ctx(&g, c, now);
		}
		for (size_t i = 0; i < g.nrel; i++)
			coap_session_release(g.rel[i]);
		g.nrel = 0;
		lg_ss_fill(&g, now);
		if (now >= next_scan) {
			lg_ss_timers(&g, now);
			for (unsigned c = 0; c < g.nctx; c++)
				if (g.ctxs[c].connecting)
					lg_ss_check_ctx(&g, &g.ctxs[c], now);
			for (size_t i = 0; i < g.nrel; i++)
				coap_session_release(g.rel[i]);
			g.nrel = 0;
			next_scan = now + LG_SCAN_MS * NS_PER_MS;
		}
		/* Calls made outside libcoap's handlers need one pass to arm
		 * its timers (LIBRARY-NOTES.md). */
		for (unsigned c = 0; c < g.nctx; c++) {
			if (g.ctxs[c].kick) {
				g.ctxs[c].kick = false;
				coap_io_process(g.ctxs[c].ctx, COAP_IO_NO_WAIT);
			}
		}
		if (!g.all_up && g.up == o->sessions) {
			g.all_up = true;
			if (!g.first_all_up_ns)
				g.first_all_up_ns = now;
			uint64_t hs = g.handshakes - g.hs_at_begin;
			double el = lg_sec(now - g.t_begin);
			/* How long single handshakes took: a DTLS flight lost or
			 * ignored shows as a 1 s (then 2 s...) retransmission. */
			qsort(g.hs_ns, g.nhs, sizeof(*g.hs_ns), lg_cmp_u64);
			printf("{\"event\":\"all-up\",\"t\":%.3f,\"elapsed_s\":%.3f,"
			       "\"handshakes\":%" PRIu64 ",\"rate\":%.1f,"
			       "\"failures\":%" PRIu64 ",\"hs_p50_ms\":%.1f,"
			       "\"hs_p99_ms\":%.1f,\"hs_max_ms\":%.1f}\n",
			       lg_sec(now), el, hs, el > 0 ? (double)hs / el : 0.0,
			       g.failures, lg_pct_us(g.hs_ns, g.nhs, 0.5) / 1000,
			       lg_pct_us(g.hs_ns, g.nhs, 0.99) / 1000,
			       g.nhs ? (double)g.hs_ns[g.nhs - 1] / 1e6 : 0.0);
			g.nhs = 0;
			fflush(stdout);
		}
		if (now - g.sec_start >= NS_PER_S) {
			if (g.sec_hs > g.peak_hs)
				g.peak_hs = g.sec_hs;
			g.sec_hs = 0;
			g.sec_start = now;
		}
		if (now >= next_progress) {
			lg_ss_progress(&g, now);
			next_progress = now + NS_PER_S;
		}
	}
	lg_ss_progress(&g, lg_now());
	printf("{\"event\":\"summary\",\"handshakes\":%" PRIu64 ",\"peak_hs_per_s\":%"
	       PRIu64 ",\"failures\":%" PRIu64 ",\"closes\":%" PRIu64 "}\n",
	       g.handshakes, g.peak_hs, g.failures, g.closes);
	fflush(stdout);
	rc = 0;
out:
	if (ep >= 0)
		close(ep);
	for (unsigned c = 0; g.ctxs && c < g.nctx; c++)
		if (g.ctxs[c].ctx)
			coap_register_event_handler(g.ctxs[c].ctx, NULL);
	for (unsigned i = 0; g.sess && i < o->sessions; i++) {
		if (g.sess[i].s) {
			coap_session_set_app_data(g.sess[i].s, NULL);
			coap_session_release(g.sess[i].s);
		}
	}
	for (size_t i = 0; i < g.nrel; i++)
		coap_session_release(g.rel[i]);
	for (unsigned c = 0; g.ctxs && c < g.nctx; c++)
		if (g.ctxs[c].ctx)
			coap_free_context(g.ctxs[c].ctx);
	lg_ss_g = NULL;
	free(g.sess);
	free(g.ctxs);
	free(g.rel);
	free(g.hs_ns);
	return rc;
}

/* ==== common ======================================================== */

static void lg_on_request(coap_resource_t *r, coap_session_t *s,
			  const coap_pdu_t *req, const coap_string_t *q,
			  coap_pdu_t *rsp)
{
	(void)r;
	(void)s;
	(void)req;
	(void)q;
	if (lg_ss_g)
		lg_ss_g->hb_rx++;
	coap_pdu_set_code(rsp, COAP_RESPONSE_CODE(204));
}

static coap_context_t *lg_new_context(void)
{
	coap_context_t *ctx = coap_new_context(NULL);
	coap_resource_t *r;

	if (!ctx)
		return NULL;
	r = coap_resource_unknown_init2(lg_on_request, 0);
	if (!r) {
		coap_free_context(ctx);
		return NULL;
	}
	coap_add_resource(ctx, r);
	return ctx;
}

static int lg_resolve(const char *host, uint16_t port, coap_address_t *out)
{
	struct addrinfo hints, *res = NULL;
	char p[8];

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	snprintf(p, sizeof(p), "%u", port);
	if (getaddrinfo(host, p, &hints, &res) || !res)
		return -1;
	coap_address_init(out);
	out->size = res->ai_addrlen;
	memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void lg_usage(FILE *f)
{
	fprintf(f,
"usage: loadgen --connect HOST:PORT --transport udp|dtls [--psk-id ID --psk-key KEY]\n"
"         rate mode (default):  [--inflight 1] [--duration 5] [--warmup 1]\n"
"             [--cuid bench] [--mid-base 1] [--con] [--timeout-ms 2000]\n"
"         sessions mode:  --sessions M [--first 1] [--id-prefix c]\n"
"             [--key-prefix bench-key-] [--digits 5] [--hb 30] [--per-ctx 64]\n"
"             [--window 48]   (client N: identity c00042, key bench-key-00042)\n"
"Prints JSON lines on stdout (rate: one \"rate\" line; sessions: progress,\n"
"all-up, summary until SIGTERM).\n");
}

static int lg_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int lg_parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static int lg_parse(int argc, char **argv, struct lg_opts *o)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "transport", required_argument, NULL, 't' },
		{ "psk-id", required_argument, NULL, 'i' },
		{ "psk-key", required_argument, NULL, 'k' },
		{ "inflight", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "cuid", required_argument, NULL, 'u' },
		{ "mid-base", required_argument, NULL, 'm' },
		{ "con", no_argument, NULL, 'C' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "sessions", required_argument, NULL, 'S' },
		{ "first", required_argument, NULL, 'F' },
		{ "id-prefix", required_argument, NULL, 'I' },
		{ "key-prefix", required_argument, NULL, 'K' },
		{ "digits", required_argument, NULL, 'D' },
		{ "hb", required_argument, NULL, 'H' },
		{ "per-ctx", required_argument, NULL, 'P' },
		{ "window", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *connect = NULL, *tr = "udp";
	int c;

	memset(o, 0, sizeof(*o));
	o->inflight = 1;
	o->duration_s = 5;
	o->warmup_s = 1;
	o->cuid = "bench";
	o->mid_base = 1;
	o->timeout_ms = 2000;
	o->first = 1;
	o->id_prefix = "c";
	o->key_prefix = "bench-key-";
	o->digits = 5;
	o->hb_s = 30;
	o->per_ctx = 64;
	o->window = 48;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'c': connect = optarg; break;
		case 't': tr = optarg; break;
		case 'i': o->psk_id = optarg; break;
		case 'k': o->psk_key = optarg; break;
		case 'n': bad = lg_parse_uint(optarg, 1, LG_MAX_INFLIGHT, &o->inflight); break;
		case 'd': bad = lg_parse_double(optarg, 0.1, 3600, &o->duration_s); break;
		case 'w': bad = lg_parse_double(optarg, 0, 600, &o->warmup_s); break;
		case 'u': o->cuid = optarg; break;
		case 'm': bad = lg_parse_uint(optarg, 0, 1u << 30, &o->mid_base); break;
		case 'C': o->con = true; break;
		case 'T': bad = lg_parse_uint(optarg, 10, 600000, &o->timeout_ms); break;
		case 'S': bad = lg_parse_uint(optarg, 1, 1000000, &o->sessions); break;
		case 'F': bad = lg_parse_uint(optarg, 0, 1u << 30, &o->first); break;
		case 'I': o->id_prefix = optarg; break;
		case 'K': o->key_prefix = optarg; break;
		case 'D': bad = lg_parse_uint(optarg, 0, 20, &o->digits); break;
		case 'H': bad = lg_parse_uint(optarg, 1, 3600, &o->hb_s); break;
		case 'P': bad = lg_parse_uint(optarg, 1, 100000, &o->per_ctx); break;
		case 'W': bad = lg_parse_uint(optarg, 1, 100000, &o->window); break;
		case 'h': lg_usage(stdout); exit(0);
		default: return -1;
		}
		if (bad) {
			lg_log("bad option value '%s'", optarg);
			return -1;
		}
	}
	if (optind != argc || !connect)
		return -1;
	const char *colon = strrchr(connect, ':');
	unsigned port;
	if (!colon || (size_t)(colon - connect) >= sizeof(o->host) ||
	    lg_parse_uint(colon + 1, 1, 65535, &port))
		return -1;
	memcpy(o->host, connect, (size_t)(colon - connect));
	o->host[colon - connect] = '\0';
	if (o->host[0] == '[') { /* [v6]:port */
		size_t l = strlen(o->host);
		if (l < 2 || o->host[l - 1] != ']')
			return -1;
		memmove(o->host, o->host + 1, l - 2);
		o->host[l - 2] = '\0';
	}
	o->port = (uint16_t)port;
	if (strcmp(tr, "udp") == 0)
		o->proto = COAP_PROTO_UDP;
	else if (strcmp(tr, "dtls") == 0)
		o->proto = COAP_PROTO_DTLS;
	else
		return -1;
	if (o->sessions) {
		o->mode = LG_SESSIONS;
		/* libcoap 4.3.1's GnuTLS backend polls a DTLS client socket
		 * with select() (receive_timeout() in coap_gnutls.c): a socket
		 * numbered FD_SETSIZE or more aborts the process (glibc's
		 * fortified FD_SET). Every client session has its own socket,
		 * and every context two more fds. */
		unsigned nctx = (o->sessions + o->per_ctx - 1) / o->per_ctx;
		if ((uint64_t)o->sessions + 2ull * nctx + 16 > FD_SETSIZE) {
			lg_log("%u sessions need fds beyond FD_SETSIZE (%d), which "
			       "libcoap 4.3.1 (GnuTLS) cannot poll: run several "
			       "processes", o->sessions, FD_SETSIZE);
			return -1;
		}
		if (o->proto != COAP_PROTO_DTLS || strlen(o->id_prefix) > 64 ||
		    strlen(o->key_prefix) > 64) {
			lg_log("sessions mode needs --transport dtls (and prefixes of at most 64 bytes)");
			return -1;
		}
	} else if (o->proto == COAP_PROTO_DTLS && (!o->psk_id || !o->psk_key)) {
		lg_log("dtls needs --psk-id and --psk-key");
		return -1;
	}
	if (o->mode == LG_RATE && (size_t)o->inflight > 0xffff)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct lg_opts o;
	coap_address_t dst;
	struct sigaction sa;
	int rc;

	if (lg_parse(argc, argv, &o)) {
		lg_usage(stderr);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lg_on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	lg_rand_state ^= lg_now() ^ (uint64_t)getpid() << 32;
	coap_startup();
	coap_set_log_level(LOG_ERR);
	coap_dtls_set_log_level(LOG_ERR);
	if (lg_resolve(o.host, o.port, &dst)) {
		lg_log("cannot resolve %s", o.host);
		coap_cleanup();
		return 2;
	}
	rc = o.mode == LG_RATE ? lg_run_rate(&o, &dst) : lg_run_sessions(&o, &dst);
	coap_cleanup();
	return rc;
}
