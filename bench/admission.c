/*
 * admission.c: what admitting one mitigation request costs the core when
 * many are already active (scripts/bench, measurement d).
 *
 * Drives common/core directly, as test/unit/test_core.c does: C clients
 * (each with its own allowed /L inside 10.0.0.0/8), K cuids per client,
 * and MITIGATIONS active mitigations spread evenly over the cuids, each on
 * its own /32 so that none overlaps another (RFC 9132 §4.4.1.3 would
 * otherwise replace it). Every installation goes the whole way: the
 * client's PUT, the upstream's 2.01, the gateway's observation and the
 * upstream's 2.05 to it.
 *
 * Then SAMPLES new requests, each for a random client and cuid, are timed
 * with clock_gettime(CLOCK_MONOTONIC):
 *   dn   core_on_dn_request(): CBOR decoding, validation (RFC 9132
 *        §4.4.1), authorisation against the client's scope, cuid
 *        collision and mid lookup, the relayed PUT;
 *   up   core_on_up_response() for the upstream's 2.01: installation,
 *        the overlap check against the cuid's other mitigations (the
 *        higher-mid-replaces-overlapping-lower rule), the observation
 *        request and the reply to the client;
 *   total = dn + up (building the fake upstream answer is not counted).
 * Each sampled mitigation is withdrawn again (not timed), so every sample
 * sees exactly MITIGATIONS active ones. Timers are not run: the clock
 * stands still, which only keeps timer work out of the figures.
 *
 * Logging is on at "info" (the gateway's default) into a hook that
 * discards the line: formatting is counted, I/O is not.
 *
 * Output: one JSON line on stdout.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbor.h"
#include "core.h"
#include "prefix.h"
#include "../gateway/config.h"

#define ADM_PATH_SEGS 5
#define ADM_SEG_MAX 64

struct adm_opts {
	unsigned clients, cuids, mitigations, samples;
	uint64_t seed;
};

struct adm {
	struct adm_opts o;
	struct gw_config cfg;
	struct gw_upstream up;
	struct gw_client *cl;
	char (*names)[16];
	struct core *core;
	struct core_actions out;
	dg_time_ms now;
	uint64_t req_id;
	uint64_t *up_id;     /* per client */
	uint32_t *next_mid;  /* per client * cuid */
	uint32_t *next_host; /* per client: next free /32 */
	unsigned host_bits;  /* client prefix: /(32 - host_bits) */
	uint64_t rng;
};

static uint64_t adm_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t adm_rand(struct adm *a)
{
	a->rng ^= a->rng >> 12;
	a->rng ^= a->rng << 25;
	a->rng ^= a->rng >> 27;
	return a->rng * 0x2545f4914f6cdd1dull;
}

static void adm_log_discard(enum dg_log_level level, const char *group,
			    const char *msg, void *arg)
{
	(void)level;
	(void)group;
	(void)msg;
	(void)arg;
}

static void adm_die(const char *what)
{
	fprintf(stderr, "bench-admission: %s\n", what);
	exit(1);
}

static struct core_action *adm_find(struct adm *a, enum core_act_type t,
				    int code)
{
	for (size_t i = 0; i < a->out.n; i++)
		if (a->out.v[i].type == t && (!code || a->out.v[i].msg.code == code))
			return &a->out.v[i];
	return NULL;
}

static uint8_t *adm_encode(json_t *model, size_t *len)
{
	uint8_t *buf = NULL;

	if (!model || cbor_encode(model, &buf, len, NULL))
		adm_die("cannot encode a body");
	json_decref(model);
	return buf;
}

/* Answers the upstream request of action x with code and body (may be NULL). */
static void adm_answer(struct adm *a, const struct core_action *x, int code,
		       const uint8_t *body, size_t len)
{
	struct core_response r;

	memset(&r, 0, sizeof(r));
	r.up_id = x->up_id;
	memcpy(r.token, x->msg.token, x->msg.token_len);
	r.token_len = x->msg.token_len;
	r.code = code;
	if (body) {
		r.has_content_format = true;
		r.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		r.body = body;
		r.body_len = len;
	}
	core_on_up_response(a->core, &r, a->now, &a->out);
}

static void adm_setup(struct adm *a)
{
	unsigned bits = 0;

	while ((1u << bits) < a->o.clients)
		bits++;
	a->host_bits = 24 - bits; /* clients share 10.0.0.0/8 */
	if ((uint64_t)a->o.mitigations / a->o.clients + a->o.samples + 1 >=
	    (1ull << a->host_bits))
		adm_die("too many mitigations per client for its prefix");
	a->up.name = "provider";
	a->up.address = "127.0.0.1";
	a->up.port = 4646;
	a->up.transport = GW_TR_DTLS;
	a->up.heartbeat_interval = 30;
	a->up.missing_hb_allowed = 5;
	a->up.reconnect_min = 60;
	a->up.reconnect_max = 300;
	a->cl = calloc(a->o.clients, sizeof(*a->cl));
	a->names = calloc(a->o.clients, sizeof(*a->names));
	a->up_id = calloc(a->o.clients, sizeof(*a->up_id));
	a->next_host = calloc(a->o.clients, sizeof(*a->next_host));
	a->next_mid = calloc((size_t)a->o.clients * a->o.cuids, sizeof(*a->next_mid));
	if (!a->cl || !a->names || !a->up_id || !a->next_host || !a->next_mid)
		adm_die("out of memory");
	for (unsigned i = 0; i < a->o.clients; i++) {
		struct prefix p;
		char text[32];
		uint32_t base = 10u << 24 | i << a->host_bits;

		snprintf(a->names[i], sizeof(a->names[i]), "c%05u", i + 1);
		a->cl[i].name = a->names[i];
		a->cl[i].psk_identity = a->names[i];
		a->cl[i].upstream = &a->up;
		snprintf(text, sizeof(text), "%u.%u.%u.%u/%u", base >> 24,
			 base >> 16 & 255, base >> 8 & 255, base & 255,
			 32 - a->host_bits);
		if (prefix_parse(text, false, &p) ||
		    prefix_set_add(&a->cl[i].scope.prefixes, &p))
			adm_die("bad client prefix");
	}
	a->cfg.clients = a->cl;
	a->cfg.nclients = a->o.clients;
	a->cfg.upstreams = &a->up;
	a->cfg.nupstreams = 1;
	a->cfg.hop_limit = 16;
	a->cfg.max_body = 8192;
	a->cfg.request_timeout = 20;
	a->cfg.id = "bench";
	model_session_defaults(&a->cfg.session_default);
	for (int i = 0; i < 2; i++) {
		struct model_session_limits *l = i ? &a->cfg.session_idle :
						     &a->cfg.session_mitigating;
		l->min = (struct model_session_params){ 15, 1, 1, 2, 100, 110 };
		l->max = (struct model_session_params){ 240, 60, 1000, 15, 3000, 400 };
	}
	a->now = 1000000;
	a->core = core_new(&a->cfg, a->o.seed);
	if (!a->core)
		adm_die("core_new failed");

	/* One DTLS session per client, its upstream connected and
	 * configured (PUT /config answered 2.01). */
	for (unsigned i = 0; i < a->o.clients; i++) {
		struct core_dn_info info = { CORE_TR_DTLS, &a->cl[i],
					     "bench-cdid", "127.0.0.1" };
		core_actions_clear(&a->out);
		if (core_on_dn_session(a->core, i + 1, &info, a->now, &a->out))
			adm_die("core_on_dn_session failed");
		struct core_action *x = adm_find(a, CORE_ACT_UP_OPEN, 0);
		if (!x)
			adm_die("no upstream opened");
		a->up_id[i] = x->up_id;
		core_actions_clear(&a->out);
		core_on_up_event(a->core, a->up_id[i], CORE_UP_CONNECTED, a->now,
				 &a->out);
		x = adm_find(a, CORE_ACT_UP_SEND, CORE_PUT);
		if (!x)
			adm_die("no PUT /config");
		struct core_action cfg_put = *x;
		adm_answer(a, &cfg_put, DG_CODE_CREATED, NULL, 0);
	}
	core_actions_clear(&a->out);
}

struct adm_req {
	char segs[ADM_PATH_SEGS][ADM_SEG_MAX];
	const char *segp[ADM_PATH_SEGS];
	struct core_request r;
	uint8_t *body;
	size_t body_len;
};

/* Prepares (not timed) a PUT or DELETE for client i, cuid k, mid. */
static void adm_prepare(struct adm *a, struct adm_req *q, enum core_method m,
			unsigned i, unsigned k, uint32_t mid, uint32_t host)
{
	static const char *const fixed[] = { ".well-known", "dots", "mitigate" };

	memset(&q->r, 0, sizeof(q->r));
	for (int s = 0; s < 3; s++)
		snprintf(q->segs[s], ADM_SEG_MAX, "%s", fixed[s]);
	snprintf(q->segs[3], ADM_SEG_MAX, "cuid=bench-c%05u-k%03u", i + 1, k);
	snprintf(q->segs[4], ADM_SEG_MAX, "mid=%" PRIu32, mid);
	for (int s = 0; s < ADM_PATH_SEGS; s++)
		q->segp[s] = q->segs[s];
	q->r.dn_sid = i + 1;
	q->r.req_id = ++a->req_id;
	q->r.method = m;
	q->r.path = q->segp;
	q->r.npath = ADM_PATH_SEGS;
	q->r.token_len = 8;
	memcpy(q->r.token, &q->r.req_id, 8);
	q->body = NULL;
	q->body_len = 0;
	if (m == CORE_PUT) {
		char prefix[32];
		uint32_t addr = 10u << 24 | i << a->host_bits | host;
		snprintf(prefix, sizeof(prefix), "%u.%u.%u.%u/32", addr >> 24,
			 addr >> 16 & 255, addr >> 8 & 255, addr & 255);
		q->body = adm_encode(json_pack("{s:{s:[{s:[s],s:[i],s:i}]}}",
					       CBOR_MSG_MITIGATION, "scope",
					       "target-prefix", prefix,
					       "target-protocol", 6,
					       "lifetime", 3600),
				     &q->body_len);
		q->r.has_content_format = true;
		q->r.content_format = DG_CONTENT_FORMAT_DOTS_CBOR;
		q->r.body = q->body;
		q->r.body_len = q->body_len;
	}
}

static uint8_t *adm_put_answer(uint32_t mid, size_t *len)
{
	return adm_encode(json_pack("{s:{s:[{s:i,s:i}]}}", CBOR_MSG_MITIGATION,
				    "scope", "mid", (int)mid, "lifetime", 3600),
			  len);
}

static uint8_t *adm_observe_answer(uint32_t mid, size_t *len)
{
	return adm_encode(json_pack("{s:{s:[{s:i,s:i,s:s}]}}", CBOR_MSG_MITIGATION,
				    "scope", "mid", (int)mid, "lifetime", 3600,
				    "status", "attack-mitigation-in-progress"),
			  len);
}

/*
 * One complete admission: PUT, 2.01, observation answered. Returns the
 * time of the dn and up steps in ns through *dn and *up (may be NULL).
 */
static void adm_admit(struct adm *a, unsigned i, unsigned k, uint64_t *dn,
		      uint64_t *up)
{
	struct adm_req q;
	uint32_t mid = ++a->next_mid[(size_t)i * a->o.cuids + k];
	uint32_t host = ++a->next_host[i];
	size_t alen, olen;
	uint8_t *ans = adm_put_answer(mid, &alen);
	uint8_t *obs = adm_observe_answer(mid, &olen);

	adm_prepare(a, &q, CORE_PUT, i, k, mid, host);
	core_actions_clear(&a->out);
	uint64_t t0 = adm_ns();
	core_on_dn_request(a->core, &q.r, a->now, &a->out);
	uint64_t t1 = adm_ns();
	struct core_action *x = adm_find(a, CORE_ACT_UP_SEND, CORE_PUT);
	if (!x)
		adm_die("PUT not relayed (refused?)");
	struct core_action put = *x;
	/* The action list may move while the core appends: keep what the
	 * answer needs (up_id, token) in put; its path/payload pointers are
	 * not used after this point. */
	put.msg.path = NULL;
	put.msg.payload = NULL;
	uint64_t t2 = adm_ns();
	adm_answer(a, &put, DG_CODE_CREATED, ans, alen);
	uint64_t t3 = adm_ns();
	if (!adm_find(a, CORE_ACT_REPLY, DG_CODE_CREATED))
		adm_die("no 2.01 to the client");
	x = adm_find(a, CORE_ACT_UP_SEND, CORE_GET);
	if (x) {
		struct core_action get = *x;
		get.msg.path = NULL;
		get.msg.payload = NULL;
		adm_answer(a, &get, DG_CODE_CONTENT, obs, olen);
	}
	core_actions_clear(&a->out);
	if (dn)
		*dn = t1 - t0;
	if (up)
		*up = t3 - t2;
	free(q.body);
	free(ans);
	free(obs);
}

static void adm_withdraw(struct adm *a, unsigned i, unsigned k)
{
	struct adm_req q;
	uint32_t mid = a->next_mid[(size_t)i * a->o.cuids + k];

	adm_prepare(a, &q, CORE_DELETE, i, k, mid, 0);
	core_actions_clear(&a->out);
	core_on_dn_request(a->core, &q.r, a->now, &a->out);
	struct core_action *x = adm_find(a, CORE_ACT_UP_SEND, CORE_DELETE);
	if (!x)
		adm_die("DELETE not relayed");
	struct core_action del = *x;
	del.msg.path = NULL;
	del.msg.payload = NULL;
	adm_answer(a, &del, DG_CODE_DELETED, NULL, 0);
	core_actions_clear(&a->out);
}

/*
 * One timed sample: admit, then withdraw again. A function of its own so
 * that callgrind can count just the samples
 * (--collect-atstart=no --toggle-collect=adm_sample).
 */
__attribute__((noinline)) static void adm_sample(struct adm *a, unsigned i,
						 unsigned k, uint64_t *dn,
						 uint64_t *up)
{
	adm_admit(a, i, k, dn, up);
	adm_withdraw(a, i, k);
}

static int adm_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static double adm_pct(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)n);

	if (!n)
		return 0;
	return (double)v[i < n ? i : n - 1] / 1000.0;
}

static void adm_print(const char *name, uint64_t *v, size_t n)
{
	double sum = 0;

	qsort(v, n, sizeof(*v), adm_cmp);
	for (size_t i = 0; i < n; i++)
		sum += (double)v[i];
	printf("\"%s\":{\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,"
	       "\"mean_us\":%.2f,\"max_us\":%.2f}", name,
	       adm_pct(v, n, 0.5), adm_pct(v, n, 0.99), adm_pct(v, n, 0.999),
	       n ? sum / (double)n / 1000.0 : 0, n ? (double)v[n - 1] / 1000.0 : 0);
}

static int adm_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "clients", required_argument, NULL, 'c' },
		{ "cuids", required_argument, NULL, 'k' },
		{ "mitigations", required_argument, NULL, 'm' },
		{ "samples", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct adm a;
	int c;

	memset(&a, 0, sizeof(a));
	a.o.clients = 100;
	a.o.cuids = 10;
	a.o.mitigations = 100000;
	a.o.samples = 20000;
	a.o.seed = 42;
	a.rng = 0x9e3779b97f4a7c15ull;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'c': bad = adm_uint(optarg, 1, 65536, &a.o.clients); break;
		case 'k': bad = adm_uint(optarg, 1, 1000, &a.o.cuids); break;
		case 'm': bad = adm_uint(optarg, 0, 10000000, &a.o.mitigations); break;
		case 's': bad = adm_uint(optarg, 1, 10000000, &a.o.samples); break;
		case 'h':
		default:
			fprintf(c == 'h' ? stdout : stderr,
				"usage: bench-admission [--clients 100] [--cuids 10 (per client)]\n"
				"         [--mitigations 100000] [--samples 20000]\n");
			return c == 'h' ? 0 : 2;
		}
		if (bad) {
			fprintf(stderr, "bench-admission: bad value '%s'\n", optarg);
			return 2;
		}
	}
	dg_log_set_hook(adm_log_discard, NULL);
	dg_log_set_level(DG_LOG_INFO);
	adm_setup(&a);

	/* Install: round robin over clients and cuids. */
	unsigned ncuids = a.o.clients * a.o.cuids;
	uint64_t t0 = adm_ns();
	for (unsigned n = 0; n < a.o.mitigations; n++) {
		unsigned slot = n % ncuids;
		adm_admit(&a, slot / a.o.cuids, slot % a.o.cuids, NULL, NULL);
	}
	double install_s = (double)(adm_ns() - t0) / 1e9;
	struct core_stats st;
	core_get_stats(a.core, &st);
	if (st.mitigations != a.o.mitigations)
		adm_die("not every mitigation was installed");

	uint64_t *dn = calloc(a.o.samples, sizeof(*dn));
	uint64_t *up = calloc(a.o.samples, sizeof(*up));
	uint64_t *tot = calloc(a.o.samples, sizeof(*tot));
	if (!dn || !up || !tot)
		adm_die("out of memory");
	for (unsigned n = 0; n < a.o.samples; n++) {
		unsigned i = (unsigned)(adm_rand(&a) % a.o.clients);
		unsigned k = (unsigned)(adm_rand(&a) % a.o.cuids);
		adm_sample(&a, i, k, &dn[n], &up[n]);
		tot[n] = dn[n] + up[n];
	}
	core_get_stats(a.core, &st);
	printf("{\"event\":\"admission\",\"clients\":%u,\"cuids\":%u,"
	       "\"mitigations\":%u,\"active_after\":%zu,\"samples\":%u,"
	       "\"install_s\":%.3f,\"install_per_s\":%.0f,",
	       a.o.clients, ncuids, a.o.mitigations, st.mitigations, a.o.samples,
	       install_s, install_s > 0 ? a.o.mitigations / install_s : 0);
	adm_print("total", tot, a.o.samples);
	printf(",");
	adm_print("dn", dn, a.o.samples);
	printf(",");
	adm_print("up", up, a.o.samples);
	printf("}\n");

	core_actions_free(&a.out);
	core_free(a.core);
	for (unsigned i = 0; i < a.o.clients; i++)
		prefix_set_free(&a.cl[i].scope.prefixes);
	free(a.cl);
	free(a.names);
	free(a.up_id);
	free(a.next_host);
	free(a.next_mid);
	free(dn);
	free(up);
	free(tot);
	return 0;
}
