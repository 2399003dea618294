/*
 * test_disc.c: S-NAPTR and DNS-SD discovery (common/disc.c), driven by a
 * fake authoritative server that answers every query from a table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "disc.h"

#define T0 1000000ull

/* ---- captured log ---- */

static char logbuf[16384];
static int nwarn;

static void log_hook(enum dg_log_level level, const char *group, const char *msg, void *arg)
{
	size_t len = strlen(logbuf);

	(void)arg;
	if (level <= DG_LOG_WARN)
		nwarn++;
	snprintf(logbuf + len, sizeof(logbuf) - len, "%s %s: %s\n", dg_log_level_name(level),
		 group, msg);
}

static int setup(void **state)
{
	(void)state;
	logbuf[0] = 0;
	nwarn = 0;
	dg_log_set_level(DG_LOG_DEBUG);
	dg_log_set_hook(log_hook, NULL);
	return 0;
}

static void assert_logged(const char *needle)
{
	if (!strstr(logbuf, needle))
		fail_msg("no log line with \"%s\"; log:\n%s", needle, logbuf);
}

/* ---- fake zone ---- */

struct zrr {
	const char *owner;
	uint16_t type;
	uint32_t ttl;
	uint16_t a, b, c;
	const char *s1, *s2, *s3; /* NAPTR flags, service, regexp */
	const char *name;         /* NAPTR replacement, SRV target, PTR, CNAME */
	const char *addr;
};

#define NAPTR(o, t, ord, pref, fl, svc, re, repl) \
	{ o, DISC_RR_NAPTR, t, ord, pref, 0, fl, svc, re, repl, NULL }
#define SRV(o, t, pr, w, port, tgt) { o, DISC_RR_SRV, t, pr, w, port, NULL, NULL, NULL, tgt, NULL }
#define AAAA(o, t, ad) { o, DISC_RR_AAAA, t, 0, 0, 0, NULL, NULL, NULL, NULL, ad }
#define A(o, t, ad) { o, DISC_RR_A, t, 0, 0, 0, NULL, NULL, NULL, NULL, ad }
#define PTR(o, t, n) { o, DISC_RR_PTR, t, 0, 0, 0, NULL, NULL, NULL, n, NULL }
#define TXT(o, t) { o, DISC_RR_TXT, t, 0, 0, 0, NULL, NULL, NULL, NULL, NULL }
#define CNAME(o, t, n) { o, DISC_RR_CNAME, t, 0, 0, 0, NULL, NULL, NULL, n, NULL }
#define END { NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL }

/* A name whose queries get a status instead of records (type 0: all). */
struct zfail {
	const char *name;
	uint16_t type;
	enum disc_status status;
};

struct fake {
	const struct zrr *zone;
	const struct zfail *fails;
	uint32_t neg_ttl;
	unsigned nqueries;
	char asked[128][DISC_NAME_MAX + 8];
	bool hold;      /* leave queries unanswered */
};

/* RFC 8973 Figure 8, TTLs added. */
static const struct zrr fig8[] = {
	NAPTR("example.net", 3600, 100, 10, "", "DOTS:signal.udp", "", "signal.example.net"),
	NAPTR("example.net", 3600, 200, 10, "", "DOTS:signal.tcp", "", "signal.example.net"),
	NAPTR("example.net", 3600, 300, 10, "", "DOTS:data.tcp", "", "data.example.net"),
	NAPTR("signal.example.net", 3600, 100, 10, "s", "DOTS:signal.udp", "", "_dots-signal._udp.example.net"),
	NAPTR("signal.example.net", 3600, 200, 10, "s", "DOTS:signal.tcp", "", "_dots-signal._tcp.example.net"),
	NAPTR("data.example.net", 3600, 100, 10, "s", "DOTS:data.tcp", "", "_dots-data._tcp.example.net"),
	NAPTR("data.example.net", 3600, 200, 10, "a", "DOTS:data.tcp", "", "b.example.net"),
	SRV("_dots-signal._udp.example.net", 3600, 0, 0, 5000, "a.example.net"),
	SRV("_dots-signal._tcp.example.net", 3600, 0, 0, 5001, "a.example.net"),
	SRV("_dots-data._tcp.example.net", 3600, 0, 0, 5002, "a.example.net"),
	AAAA("a.example.net", 3600, "2001:db8::1"),
	AAAA("b.example.net", 3600, "2001:db8::2"),
	END
};

/* RFC 8973 Figure 10. */
static const struct zrr fig10[] = {
	PTR("_dots-signal._udp.example.net", 3600, "b._dots-signal._udp.example.net"),
	PTR("_dots-signal._udp.example.net", 3600, "a._dots-signal._udp.example.net"),
	SRV("a._dots-signal._udp.example.net", 3600, 0, 0, 4646, "a.example.net"),
	SRV("b._dots-signal._udp.example.net", 3600, 0, 0, 4646, "b.example.net"),
	TXT("a._dots-signal._udp.example.net", 3600),
	TXT("b._dots-signal._udp.example.net", 3600),
	AAAA("a.example.net", 3600, "2001:db8::1"),
	AAAA("b.example.net", 3600, "2001:db8::2"),
	END
};

static bool owner_exists(const struct fake *f, const char *name)
{
	for (const struct zrr *z = f->zone; z->owner; z++)
		if (!strcasecmp(z->owner, name))
			return true;
	return false;
}

static void to_rr(const struct zrr *z, struct disc_rr *rr)
{
	memset(rr, 0, sizeof(*rr));
	rr->owner = z->owner;
	rr->type = z->type;
	rr->ttl = z->ttl;
	switch (z->type) {
	case DISC_RR_NAPTR:
		rr->u.naptr.order = z->a;
		rr->u.naptr.preference = z->b;
		rr->u.naptr.flags = z->s1;
		rr->u.naptr.flags_len = strlen(z->s1);
		rr->u.naptr.service = z->s2;
		rr->u.naptr.service_len = strlen(z->s2);
		rr->u.naptr.regexp = z->s3;
		rr->u.naptr.regexp_len = strlen(z->s3);
		rr->u.naptr.replacement = z->name;
		break;
	case DISC_RR_SRV:
		rr->u.srv.priority = z->a;
		rr->u.srv.weight = z->b;
		rr->u.srv.port = z->c;
		rr->u.srv.target = z->name;
		break;
	case DISC_RR_PTR:
	case DISC_RR_CNAME:
		rr->u.name = z->name;
		break;
	case DISC_RR_A:
		assert_int_equal(inet_pton(AF_INET, z->addr, rr->u.addr), 1);
		break;
	case DISC_RR_AAAA:
		assert_int_equal(inet_pton(AF_INET6, z->addr, rr->u.addr), 1);
		break;
	}
}

/* Answers q as an authoritative server would: CNAMEs followed (and
 * included) within the zone, at most 10 links. */
static void fake_answer(struct fake *f, struct disc *d, const struct disc_query *q, dg_time_ms now)
{
	struct disc_rr rr[80];
	struct disc_answer a = { .id = q->id, .status = DISC_ANS_OK, .rr = rr };
	const char *name = q->name;

	snprintf(f->asked[f->nqueries % 128], sizeof(f->asked[0]), "%s/%u", q->name, q->type);
	f->nqueries++;
	for (const struct zfail *x = f->fails; x && x->name; x++)
		if (!strcasecmp(x->name, q->name) && (!x->type || x->type == q->type)) {
			a.status = x->status;
			assert_int_equal(disc_on_answer(d, &a, now), 0);
			return;
		}
	if (!owner_exists(f, name)) {
		a.status = DISC_ANS_NXDOMAIN;
		a.neg_ttl = f->neg_ttl;
		assert_int_equal(disc_on_answer(d, &a, now), 0);
		return;
	}
	for (int hop = 0; hop < 10 && name; hop++) {
		const char *next = NULL;

		for (const struct zrr *z = f->zone; z->owner; z++) {
			if (strcasecmp(z->owner, name))
				continue;
			if (z->type == DISC_RR_CNAME && a.n_rr < 80) {
				to_rr(z, &rr[a.n_rr++]);
				next = z->name;
			} else if (z->type == q->type && a.n_rr < 80) {
				to_rr(z, &rr[a.n_rr++]);
			}
		}
		name = next;
	}
	if (a.n_rr == 0)
		a.neg_ttl = f->neg_ttl;
	assert_int_equal(disc_on_answer(d, &a, now), 0);
}

/* Answers every query until the run ends (bounded). */
static void fake_run(struct fake *f, struct disc *d, dg_time_ms now)
{
	struct disc_query qs[8];

	for (int round = 0; round < 200 && disc_busy(d); round++) {
		size_t n = disc_next_queries(d, qs, 8);

		if (n == 0 || f->hold)
			return;
		for (size_t i = 0; i < n; i++)
			fake_answer(f, d, &qs[i], now);
	}
	assert_false(disc_busy(d));
}

static struct disc *new_disc(const char *domain, const struct disc_params *p)
{
	struct disc *d = NULL;

	assert_int_equal(disc_new(domain, p, &d), 0);
	return d;
}

static const struct disc_result *resolve(struct fake *f, struct disc *d, dg_time_ms now)
{
	const struct disc_result *r;

	disc_start(d, now);
	fake_run(f, d, now);
	r = disc_take_result(d);
	assert_non_null(r);
	return r;
}

static void check_cand(const struct disc_candidate *c, const char *addr, uint16_t port,
		       enum disc_transport t)
{
	if (strcmp(c->address, addr) || c->port != port || c->transport != t)
		fail_msg("candidate %s port %u %s, expected %s port %u %s", c->address, c->port,
			 disc_transport_name(c->transport), addr, port, disc_transport_name(t));
}

/* ---- tests ---- */

/* RFC 8973 Table 1 from Figure 8: order, protocol, address, port, tag. */
static void test_table1(void **state)
{
	struct fake f = { .zone = fig8 };
	struct disc *d = new_disc("example.net.", NULL);
	const struct disc_result *r;
	unsigned aaaa_a = 0;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->status, 0);
	assert_int_equal(r->n, 4);
	check_cand(&r->c[0], "2001:db8::1", 5000, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "2001:db8::1", 5001, DISC_SIGNAL_TCP);
	check_cand(&r->c[2], "2001:db8::1", 5002, DISC_DATA_TCP);
	check_cand(&r->c[3], "2001:db8::2", 443, DISC_DATA_TCP);
	for (size_t i = 0; i < r->n; i++) {
		/* RFC 8973 §8.2: DNS-ID from the S-NAPTR domain. */
		assert_string_equal(r->c[i].ref_id, "example.net");
		assert_int_equal(r->c[i].source, DISC_SRC_NAPTR);
		assert_int_equal(r->c[i].family, 6);
	}
	assert_string_equal(r->c[0].target, "a.example.net");
	assert_string_equal(r->c[3].target, "b.example.net");
	/* Shared queries: a.example.net's AAAA is asked once. */
	for (unsigned i = 0; i < f.nqueries; i++)
		aaaa_a += !strcmp(f.asked[i], "a.example.net/28");
	assert_int_equal(aaaa_a, 1);
	assert_int_equal(nwarn, 0);
	disc_free(d);
}

/* Table 1 does not depend on the order the server sends records in. */
static void test_table1_answer_order(void **state)
{
	static const struct zrr rev[] = {
		AAAA("b.example.net", 3600, "2001:db8::2"),
		AAAA("a.example.net", 3600, "2001:db8::1"),
		SRV("_dots-data._tcp.example.net", 3600, 0, 0, 5002, "a.example.net"),
		SRV("_dots-signal._tcp.example.net", 3600, 0, 0, 5001, "a.example.net"),
		SRV("_dots-signal._udp.example.net", 3600, 0, 0, 5000, "a.example.net"),
		NAPTR("data.example.net", 3600, 200, 10, "a", "DOTS:data.tcp", "", "b.example.net"),
		NAPTR("data.example.net", 3600, 100, 10, "s", "DOTS:data.tcp", "", "_dots-data._tcp.example.net"),
		NAPTR("signal.example.net", 3600, 200, 10, "s", "DOTS:signal.tcp", "", "_dots-signal._tcp.example.net"),
		NAPTR("signal.example.net", 3600, 100, 10, "s", "DOTS:signal.udp", "", "_dots-signal._udp.example.net"),
		NAPTR("example.net", 3600, 300, 10, "", "DOTS:data.tcp", "", "data.example.net"),
		NAPTR("example.net", 3600, 200, 10, "", "DOTS:signal.tcp", "", "signal.example.net"),
		NAPTR("example.net", 3600, 100, 10, "", "DOTS:signal.udp", "", "signal.example.net"),
		END
	};
	struct fake f = { .zone = rev };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 4);
	check_cand(&r->c[0], "2001:db8::1", 5000, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "2001:db8::1", 5001, DISC_SIGNAL_TCP);
	check_cand(&r->c[2], "2001:db8::1", 5002, DISC_DATA_TCP);
	check_cand(&r->c[3], "2001:db8::2", 443, DISC_DATA_TCP);
	disc_free(d);
}

/* Preference orders records of equal order; IPv6 before IPv4 per host. */
static void test_preference_and_families(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 10, 20, "a", "DOTS:signal.tcp", "", "h2.example.net"),
		NAPTR("example.net", 60, 10, 10, "a", "DOTS:signal.udp", "", "h1.example.net"),
		/* A lower preference does not beat a lower order. */
		NAPTR("example.net", 60, 11, 1, "a", "DOTS:data.tcp", "", "h3.example.net"),
		A("h3.example.net", 60, "192.0.2.4"),
		A("h1.example.net", 60, "192.0.2.1"),
		AAAA("h1.example.net", 60, "2001:db8::1"),
		A("h2.example.net", 60, "192.0.2.2"),
		A("h2.example.net", 60, "192.0.2.3"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 5);
	check_cand(&r->c[0], "2001:db8::1", 4646, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "192.0.2.1", 4646, DISC_SIGNAL_UDP);
	check_cand(&r->c[2], "192.0.2.2", 4646, DISC_SIGNAL_TCP);
	check_cand(&r->c[3], "192.0.2.3", 4646, DISC_SIGNAL_TCP);
	check_cand(&r->c[4], "192.0.2.4", 443, DISC_DATA_TCP);
	assert_int_equal(r->c[1].family, 4);
	disc_free(d);
}

/* One record naming two protocols; case-insensitive tags; unknown tags
 * and other application services are skipped without a warning. */
static void test_service_field(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 10, 10, "S", "dots:SIGNAL.TCP:foo.bar:signal.udp", "", "_x._tcp.example.net"),
		NAPTR("example.net", 60, 5, 10, "S", "SIP+D2U", "", "_sip._udp.example.net"),
		NAPTR("example.net", 60, 6, 10, "a", "DOTS-CALL-HOME:signal.udp", "", "h.example.net"),
		SRV("_x._tcp.example.net", 60, 0, 0, 7000, "h.example.net"),
		AAAA("h.example.net", 60, "2001:db8::7"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 2);
	check_cand(&r->c[0], "2001:db8::7", 7000, DISC_SIGNAL_TCP);
	check_cand(&r->c[1], "2001:db8::7", 7000, DISC_SIGNAL_UDP);
	assert_int_equal(nwarn, 0);
	for (unsigned i = 0; i < f.nqueries; i++)
		assert_null(strstr(f.asked[i], "_sip"));
	disc_free(d);
}

/* A non-terminal record's protocol tags narrow what is followed below
 * it, so the top-level order decides which protocol comes first. */
static void test_naptr_narrowing(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 100, 10, "", "DOTS:signal.tcp", "", "s1.example.net"),
		NAPTR("example.net", 60, 200, 10, "", "DOTS:signal.udp", "", "s1.example.net"),
		NAPTR("s1.example.net", 60, 100, 10, "a", "DOTS:signal.udp", "", "h.example.net"),
		NAPTR("s1.example.net", 60, 200, 10, "a", "DOTS:signal.tcp", "", "h.example.net"),
		AAAA("h.example.net", 60, "2001:db8::1"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 2);
	check_cand(&r->c[0], "2001:db8::1", 4646, DISC_SIGNAL_TCP);
	check_cand(&r->c[1], "2001:db8::1", 4646, DISC_SIGNAL_UDP);
	disc_free(d);
}

/* Only the transports asked for are followed. */
static void test_transport_filter(void **state)
{
	struct fake f = { .zone = fig8 };
	struct disc_params p = { .transports = 1u << DISC_SIGNAL_TCP };
	struct disc *d = new_disc("example.net", &p);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "2001:db8::1", 5001, DISC_SIGNAL_TCP);
	for (unsigned i = 0; i < f.nqueries; i++)
		assert_null(strstr(f.asked[i], "data"));
	disc_free(d);
}

/* Malformed NAPTR records: each refused with a log line, the good one
 * kept. */
static void test_naptr_malformed(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "u", "DOTS:signal.udp", "!^.*$!dots://x!", "."),
		NAPTR("example.net", 60, 2, 1, "s", "DOTS:signal.udp", "!^.*$!foo!", "_s._udp.example.net"),
		NAPTR("example.net", 60, 3, 1, "sa", "DOTS:signal.udp", "", "_s._udp.example.net"),
		NAPTR("example.net", 60, 4, 1, "s", "DOTS:signal.udp", "", ""),
		NAPTR("example.net", 60, 5, 1, "s", "DOTS:signal.udp", "", "bad\\032name.example.net"),
		NAPTR("example.net", 60, 6, 1, "s", "DOTS", "", "_s._udp.example.net"),
		NAPTR("example.net", 60, 7, 1, "s", "DOTS:1bad", "", "_s._udp.example.net"),
		NAPTR("example.net", 60, 8, 1, "s", "DOTS::signal.udp", "", "_s._udp.example.net"),
		NAPTR("example.net", 60, 9, 1, "p", "DOTS:signal.udp", "", "_s._udp.example.net"),
		NAPTR("example.net", 60, 10, 1, "S", "DOTS:signal.udp", "", "_ok._udp.example.net"),
		SRV("_s._udp.example.net", 60, 0, 0, 1111, "h.example.net"),
		SRV("_ok._udp.example.net", 60, 0, 0, 2222, "h.example.net"),
		AAAA("h.example.net", 60, "2001:db8::9"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "2001:db8::9", 2222, DISC_SIGNAL_UDP);
	assert_int_equal(nwarn, 9);
	assert_logged("flag unknown to S-NAPTR");
	assert_logged("non-empty regexp");
	assert_logged("flags longer than one character");
	assert_logged("empty replacement");
	assert_logged("invalid replacement name");
	assert_logged("terminal record without a protocol tag");
	assert_logged("malformed service field");
	disc_free(d);
}

/* Empty-flag chains: bounded depth, loops refused, each with a line. */
static void test_naptr_chains(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "", "DOTS:signal.udp", "", "c1.example.net"),
		NAPTR("c1.example.net", 60, 1, 1, "", "DOTS:signal.udp", "", "c2.example.net"),
		NAPTR("c2.example.net", 60, 1, 1, "", "DOTS:signal.udp", "", "c3.example.net"),
		NAPTR("c3.example.net", 60, 1, 1, "", "DOTS:signal.udp", "", "c4.example.net"),
		NAPTR("c4.example.net", 60, 1, 1, "", "DOTS:signal.udp", "", "c5.example.net"),
		NAPTR("c5.example.net", 60, 1, 1, "a", "DOTS:signal.udp", "", "deep.example.net"),
		/* A loop back to the domain and a loop on itself. */
		NAPTR("example.net", 60, 2, 1, "", "DOTS", "", "l1.example.net"),
		NAPTR("l1.example.net", 60, 1, 1, "", "", "", "example.net"),
		NAPTR("l1.example.net", 60, 2, 1, "", "", "", "l1.example.net"),
		NAPTR("l1.example.net", 60, 3, 1, "a", "DOTS:signal.tcp", "", "ok.example.net"),
		AAAA("deep.example.net", 60, "2001:db8::d"),
		AAAA("ok.example.net", 60, "2001:db8::c"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	/* c1..c4 are followed (4 links), c5 is not. */
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "2001:db8::c", 4646, DISC_SIGNAL_TCP);
	assert_logged("c4.example.net: NAPTR 1 1 \"\" -> c5.example.net: chain deeper than 4");
	assert_logged("l1.example.net: NAPTR 1 1 \"\" -> example.net: loop");
	assert_logged("l1.example.net: NAPTR 2 1 \"\" -> l1.example.net: loop");
	assert_int_equal(nwarn, 3);
	disc_free(d);
}

static uint32_t seq_random(void *arg)
{
	uint32_t **p = arg;

	return *(*p)++;
}

/* RFC 2782: priority first, then the weighted draw (fixed draws). */
static void test_srv_weights(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "s", "DOTS:signal.udp", "", "_s._udp.example.net"),
		SRV("_s._udp.example.net", 60, 20, 5, 4000, "w.example.net"),
		SRV("_s._udp.example.net", 60, 10, 10, 3000, "z.example.net"),
		SRV("_s._udp.example.net", 60, 10, 60, 1000, "x.example.net"),
		SRV("_s._udp.example.net", 60, 10, 30, 2000, "y.example.net"),
		SRV("_s._udp.example.net", 60, 10, 0, 5000, "zero.example.net"),
		AAAA("zero.example.net", 60, "2001:db8::5"),
		AAAA("w.example.net", 60, "2001:db8::4"),
		AAAA("x.example.net", 60, "2001:db8::1"),
		AAAA("y.example.net", 60, "2001:db8::2"),
		AAAA("z.example.net", 60, "2001:db8::3"),
		END
	};
	/* Priority 10, sorted: zero(0) first (RFC 2782), then by name x(60)
	 * y(30) z(10), running sums 0 60 90 100. Draw 75 % 101 = 75 -> y;
	 * then zero x z (0 60 70): 65 % 71 -> z; then zero x (0 60): 0 ->
	 * zero; then x; then priority 20: w. */
	uint32_t draws[] = { 75, 65, 0, 0, 0, 0, 0 }, *dp = draws;
	struct disc_params p = { .random = seq_random, .random_arg = &dp };
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", &p);
	const struct disc_result *r;
	uint32_t draws2[] = { 0, 0, 0, 0, 0, 0, 0 };

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 5);
	check_cand(&r->c[0], "2001:db8::2", 2000, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "2001:db8::3", 3000, DISC_SIGNAL_UDP);
	check_cand(&r->c[2], "2001:db8::5", 5000, DISC_SIGNAL_UDP);
	check_cand(&r->c[3], "2001:db8::1", 1000, DISC_SIGNAL_UDP);
	check_cand(&r->c[4], "2001:db8::4", 4000, DISC_SIGNAL_UDP);
	/* Draws of 0 always take the first remaining: the weight-0 record
	 * first (RFC 2782), then in name order. */
	dp = draws2;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 5);
	check_cand(&r->c[0], "2001:db8::5", 5000, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "2001:db8::1", 1000, DISC_SIGNAL_UDP);
	check_cand(&r->c[2], "2001:db8::2", 2000, DISC_SIGNAL_UDP);
	check_cand(&r->c[3], "2001:db8::3", 3000, DISC_SIGNAL_UDP);
	check_cand(&r->c[4], "2001:db8::4", 4000, DISC_SIGNAL_UDP);
	disc_free(d);
}

/* SRV "." (not available), port 0, a bad target, a missing target. */
static void test_srv_malformed(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "s", "DOTS:signal.udp", "", "_none._udp.example.net"),
		NAPTR("example.net", 60, 2, 1, "s", "DOTS:signal.tcp", "", "_s._tcp.example.net"),
		SRV("_none._udp.example.net", 60, 0, 0, 0, ""),
		SRV("_s._tcp.example.net", 60, 0, 0, 0, "h.example.net"),
		SRV("_s._tcp.example.net", 60, 1, 0, 99, "bad_\\046.example.net"),
		SRV("_s._tcp.example.net", 60, 2, 0, 98, "missing.example.net"),
		SRV("_s._tcp.example.net", 60, 3, 0, 97, "h.example.net"),
		AAAA("h.example.net", 60, "2001:db8::8"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "2001:db8::8", 97, DISC_SIGNAL_TCP);
	assert_logged("service not available here");
	assert_logged("port 0, refused");
	assert_logged("invalid target name, refused");
	assert_logged("missing.example.net: no usable A or AAAA record, target ignored");
	assert_int_equal(nwarn, 3);
	disc_free(d);
}

/* Figure 10 through the fallback: no NAPTR at all, DNS-SD finds both
 * servers (same priority and weight: name order). */
static void test_dnssd_figure10(void **state)
{
	struct fake f = { .zone = fig10 };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->status, 0);
	assert_int_equal(r->n, 2);
	check_cand(&r->c[0], "2001:db8::1", 4646, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "2001:db8::2", 4646, DISC_SIGNAL_UDP);
	assert_int_equal(r->c[0].source, DISC_SRC_DNSSD);
	assert_string_equal(r->c[0].ref_id, "example.net");
	assert_string_equal(r->c[1].target, "b.example.net");
	assert_logged("no S-NAPTR result, trying DNS-SD");
	assert_int_equal(nwarn, 0);
	disc_free(d);
}

/* DNS-SD is not asked when S-NAPTR found something, and S-NAPTR is not
 * asked with DNS-SD alone. */
static void test_mechanisms(void **state)
{
	static struct zrr both[32];
	struct fake f = { .zone = both };
	struct disc_params p = { .mechanisms = DISC_MECH_DNSSD };
	struct disc *d;
	const struct disc_result *r;
	size_t n = 0;

	(void)state;
	for (const struct zrr *z = fig8; z->owner; z++)
		both[n++] = *z;
	for (const struct zrr *z = fig10; z->owner; z++)
		if (z->type != DISC_RR_AAAA)
			both[n++] = *z;
	d = new_disc("example.net", NULL);
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 4);
	for (unsigned i = 0; i < f.nqueries; i++)
		assert_null(strstr(f.asked[i], "/12"));
	disc_free(d);

	f.nqueries = 0;
	d = new_disc("example.net", &p);
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->c[0].source, DISC_SRC_DNSSD);
	for (unsigned i = 0; i < f.nqueries; i++)
		assert_null(strstr(f.asked[i], "/35"));
	disc_free(d);
}

/* DNS-SD: PTR to another service's instance refused; an instance without
 * TXT used with a warning; without SRV ignored. */
static void test_dnssd_malformed(void **state)
{
	static const struct zrr z[] = {
		PTR("_dots-signal._tcp.example.net", 60, "x._other._tcp.example.net"),
		PTR("_dots-signal._tcp.example.net", 60, "notxt._dots-signal._tcp.example.net"),
		PTR("_dots-signal._tcp.example.net", 60, "nosrv._dots-signal._tcp.example.net"),
		SRV("x._other._tcp.example.net", 60, 0, 0, 1, "h.example.net"),
		SRV("notxt._dots-signal._tcp.example.net", 60, 0, 0, 4646, "h.example.net"),
		TXT("nosrv._dots-signal._tcp.example.net", 60),
		A("h.example.net", 60, "127.0.0.1"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "127.0.0.1", 4646, DISC_SIGNAL_TCP);
	assert_logged("not an instance of this service");
	assert_logged("instance without a TXT record");
	assert_logged("nosrv._dots-signal._tcp.example.net: instance without an SRV record");
	disc_free(d);
}

/* Validity: smallest TTL on the path, clamped; the list expires with its
 * first candidate; at expiry a new run starts and sees the new zone. */
static void test_ttl_and_rerun(void **state)
{
	static const struct zrr z1[] = {
		NAPTR("example.net", 300, 1, 1, "s", "DOTS:signal.udp", "", "_s._udp.example.net"),
		NAPTR("example.net", 300, 2, 1, "a", "DOTS:signal.tcp", "", "t.example.net"),
		SRV("_s._udp.example.net", 100, 0, 0, 4646, "h.example.net"),
		AAAA("h.example.net", 50, "2001:db8::1"),
		AAAA("t.example.net", 0, "2001:db8::2"),
		END
	};
	static const struct zrr z2[] = {
		NAPTR("example.net", 300, 1, 1, "a", "DOTS:signal.udp", "", "h.example.net"),
		AAAA("h.example.net", 3600, "2001:db8::99"),
		END
	};
	struct fake f = { .zone = z1 };
	struct disc_params p = { .ttl_min = 10 };
	struct disc *d = new_disc("example.net", &p);
	const struct disc_result *r;
	struct disc_query q[4];

	(void)state;
	assert_true(disc_next_expiry(d) == UINT64_MAX);
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->run, 1);
	assert_int_equal(r->c[0].ttl, 50);
	assert_true(r->c[0].expires == T0 + 50000);
	assert_int_equal(r->c[1].ttl, 10); /* TTL 0 clamped to ttl_min */
	assert_true(r->c[1].expires == T0 + 10000);
	assert_true(r->expires == T0 + 10000);
	assert_true(disc_next_expiry(d) == T0 + 10000);
	/* Nothing happens before expiry. */
	disc_on_expiry(d, T0 + 9999);
	assert_false(disc_busy(d));
	assert_int_equal(disc_next_queries(d, q, 4), 0);
	f.zone = z2;
	disc_on_expiry(d, T0 + 10000);
	assert_true(disc_busy(d));
	fake_run(&f, d, T0 + 10000);
	r = disc_take_result(d);
	assert_non_null(r);
	assert_null(disc_take_result(d));
	assert_int_equal(r->run, 2);
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "2001:db8::99", 4646, DISC_SIGNAL_UDP);
	assert_true(r->expires == T0 + 10000 + 300000);
	disc_free(d);
}

/* A CNAME's TTL counts; CNAME loops and foreign owners are refused. */
static void test_cname(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 300, 1, 1, "a", "DOTS:signal.udp", "", "alias.example.net"),
		NAPTR("example.net", 300, 2, 1, "a", "DOTS:signal.tcp", "", "loop1.example.net"),
		CNAME("alias.example.net", 40, "real.example.net"),
		AAAA("real.example.net", 300, "2001:db8::1"),
		CNAME("loop1.example.net", 300, "loop2.example.net"),
		CNAME("loop2.example.net", 300, "loop1.example.net"),
		END
	};
	struct fake f = { .zone = z };
	struct disc_params p = { .ttl_min = 1 };
	struct disc *d = new_disc("example.net", &p);
	const struct disc_result *r;
	struct disc_rr rr[2];
	struct disc_query q[8];
	size_t n;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 1);
	check_cand(&r->c[0], "2001:db8::1", 4646, DISC_SIGNAL_UDP);
	assert_int_equal(r->c[0].ttl, 40);
	assert_logged("CNAME loop");

	/* A record for another name in the answer is not believed. */
	logbuf[0] = 0;
	disc_start(d, T0);
	n = disc_next_queries(d, q, 8);
	assert_int_equal(n, 1);
	memset(rr, 0, sizeof(rr));
	rr[0].owner = "evil.example.org";
	rr[0].type = DISC_RR_NAPTR;
	rr[0].ttl = 60;
	rr[0].u.naptr.flags = "a";
	rr[0].u.naptr.flags_len = 1;
	rr[0].u.naptr.service = "DOTS:signal.udp";
	rr[0].u.naptr.service_len = 15;
	rr[0].u.naptr.regexp = "";
	rr[0].u.naptr.replacement = "evil.example.org";
	{
		struct disc_answer a = { .id = q[0].id, .rr = rr, .n_rr = 1 };

		assert_int_equal(disc_on_answer(d, &a, T0), 0);
	}
	assert_logged("record owned by evil.example.org in the answer, ignored");
	disc_free(d);
}

/* Addresses that cannot be a server are refused. */
static void test_bad_addresses(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "a", "DOTS:signal.udp", "", "h.example.net"),
		A("h.example.net", 60, "0.0.0.0"),
		A("h.example.net", 60, "224.0.0.1"),
		A("h.example.net", 60, "255.255.255.255"),
		AAAA("h.example.net", 60, "::"),
		AAAA("h.example.net", 60, "ff02::1"),
		A("h.example.net", 60, "127.0.0.1"),
		AAAA("h.example.net", 60, "::1"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 2);
	check_cand(&r->c[0], "::1", 4646, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "127.0.0.1", 4646, DISC_SIGNAL_UDP);
	assert_int_equal(nwarn, 5);
	assert_logged("address 224.0.0.1 cannot be a DOTS server");
	disc_free(d);
}

/* Repeats of (transport, address, port) are dropped. */
static void test_duplicates(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "a", "DOTS:signal.udp", "", "h.example.net"),
		NAPTR("example.net", 60, 2, 1, "a", "DOTS:signal.udp", "", "h2.example.net"),
		NAPTR("example.net", 60, 3, 1, "a", "DOTS:signal.tcp", "", "h2.example.net"),
		A("h.example.net", 60, "127.0.0.1"),
		A("h2.example.net", 60, "127.0.0.1"),
		END
	};
	struct fake f = { .zone = z };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 2);
	check_cand(&r->c[0], "127.0.0.1", 4646, DISC_SIGNAL_UDP);
	assert_string_equal(r->c[0].target, "h.example.net");
	check_cand(&r->c[1], "127.0.0.1", 4646, DISC_SIGNAL_TCP);
	disc_free(d);
}

/* RFC 8973 §6: no DOTS records: failure, retried after the negative TTL
 * (RFC 2308), default 300 s, clamped. */
static void test_nxdomain_wait(void **state)
{
	static const struct zrr z[] = {
		NAPTR("example.net", 60, 1, 1, "u", "E2U+sip", "!^.*$!sip:x@example.net!", ""),
		END
	};
	struct fake f = { .zone = z, .neg_ttl = 120 };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->status, DG_ENOENT);
	assert_int_equal(r->n, 0);
	assert_true(r->retry_at == T0 + 120000);
	assert_true(disc_next_expiry(d) == T0 + 120000);
	assert_logged("no DOTS server found (no records), next try in 120 s");
	/* No SOA: the default wait. */
	f.neg_ttl = 0;
	r = resolve(&f, d, T0);
	assert_true(r->retry_at == T0 + 300000);
	/* A tiny negative TTL is raised to ttl_min. */
	f.neg_ttl = 1;
	r = resolve(&f, d, T0);
	assert_true(r->retry_at == T0 + 30000);
	disc_free(d);
}

/* Timeouts and server failures: exponential backoff, capped; success
 * resets it. */
static void test_transient_backoff(void **state)
{
	static const struct zfail all[] = {
		{ "example.net", 0, DISC_ANS_TIMEOUT },
		{ "_dots-signal._udp.example.net", 0, DISC_ANS_SERVFAIL },
		{ "_dots-signal._tcp.example.net", 0, DISC_ANS_TIMEOUT },
		{ "_dots-data._tcp.example.net", 0, DISC_ANS_MALFORMED },
		{ NULL, 0, 0 }
	};
	struct fake f = { .zone = fig8, .fails = all };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;
	dg_time_ms now = T0;
	static const uint32_t waits[] = { 5, 10, 20, 40, 80, 160, 300, 300 };

	(void)state;
	for (unsigned i = 0; i < 8; i++) {
		r = resolve(&f, d, now);
		assert_int_equal(r->status, DG_EIO);
		assert_true(r->retry_at == now + waits[i] * 1000ull);
		now = r->retry_at;
	}
	f.fails = NULL;
	r = resolve(&f, d, now);
	assert_int_equal(r->n, 4);
	f.fails = all;
	r = resolve(&f, d, now);
	assert_true(r->retry_at == now + 5000);
	disc_free(d);
}

/* A branch that fails transiently shortens the list's validity so it is
 * asked again soon; the other branches still give candidates. */
static void test_partial_failure(void **state)
{
	static const struct zfail fails[] = {
		{ "_dots-signal._tcp.example.net", DISC_RR_SRV, DISC_ANS_SERVFAIL },
		{ NULL, 0, 0 }
	};
	struct fake f = { .zone = fig8, .fails = fails };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	r = resolve(&f, d, T0);
	assert_int_equal(r->status, 0);
	assert_int_equal(r->n, 3);
	check_cand(&r->c[0], "2001:db8::1", 5000, DISC_SIGNAL_UDP);
	check_cand(&r->c[1], "2001:db8::1", 5002, DISC_DATA_TCP);
	assert_true(r->expires == T0 + 5000);
	assert_logged("_dots-signal._tcp.example.net type 33: server failure");
	disc_free(d);
}

/* A run whose answers do not come ends at its deadline; late and stale
 * answers are ignored. */
static void test_deadline_and_stale(void **state)
{
	struct fake f = { .zone = fig8, .hold = true };
	struct disc_params p = { .run_timeout_ms = 2000, .mechanisms = DISC_MECH_NAPTR };
	struct disc *d = new_disc("example.net", &p);
	struct disc_query q[4];
	struct disc_answer a = { .status = DISC_ANS_OK };
	const struct disc_result *r;

	(void)state;
	disc_start(d, T0);
	assert_int_equal(disc_next_queries(d, q, 4), 1);
	assert_true(disc_next_expiry(d) == T0 + 2000);
	disc_on_expiry(d, T0 + 1999);
	assert_true(disc_busy(d));
	disc_on_expiry(d, T0 + 2000);
	assert_false(disc_busy(d));
	r = disc_take_result(d);
	assert_non_null(r);
	assert_int_equal(r->status, DG_EIO);
	assert_true(r->retry_at == T0 + 2000 + 5000);
	a.id = q[0].id;
	assert_int_equal(disc_on_answer(d, &a, T0 + 2001), DG_ENOENT);
	/* A new run: the old id is stale. */
	f.hold = false;
	disc_start(d, T0 + 3000);
	assert_int_equal(disc_on_answer(d, &a, T0 + 3000), DG_ENOENT);
	fake_run(&f, d, T0 + 3000);
	r = disc_take_result(d);
	assert_int_equal(r->n, 4);
	disc_free(d);
}

/* Hostile volume: an answer with too many records is refused; a zone
 * that fans out is cut at the query bound. */
static void test_bounds(void **state)
{
	static struct zrr big[81]; /* the last one stays END */
	static char names[80][32];
	struct fake f = { .zone = big };
	struct disc *d = new_disc("example.net", NULL);
	const struct disc_result *r;

	(void)state;
	for (int i = 0; i < 70; i++) {
		snprintf(names[i], sizeof(names[i]), "h%d.example.net", i);
		big[i] = (struct zrr)NAPTR("example.net", 60, (uint16_t)i, 1, "a",
					   "DOTS:signal.udp", "", names[i]);
	}
	r = resolve(&f, d, T0);
	assert_int_equal(r->n, 0);
	assert_logged("answer with 70 records (more than 64), refused");

	for (int i = 0; i < 70; i++)
		big[i] = (struct zrr)END;
	for (int i = 0; i < 40; i++)
		big[i] = (struct zrr)NAPTR("example.net", 60, (uint16_t)i, 1, "a",
					   "DOTS:signal.udp", "", names[i]);
	for (int i = 0; i < 40; i++)
		big[40 + i] = (struct zrr)A(names[i], 60, "127.0.0.1");
	logbuf[0] = 0;
	r = resolve(&f, d, T0);
	/* 40 hosts would need 81 queries; the run stops asking at 64. */
	assert_logged("more than 64 queries in one run");
	assert_int_equal(r->n, 1); /* one address, deduplicated */
	assert_true(f.nqueries <= 64 + 64 + 3 + 1);
	disc_free(d);
}

static void test_bad_domain(void **state)
{
	struct disc *d = NULL;
	char longname[300];

	(void)state;
	assert_int_equal(disc_new("", NULL, &d), DG_EINVAL);
	assert_int_equal(disc_new(".", NULL, &d), DG_EINVAL);
	assert_int_equal(disc_new("a..b", NULL, &d), DG_EINVAL);
	assert_int_equal(disc_new("a b.example", NULL, &d), DG_EINVAL);
	memset(longname, 'a', sizeof(longname));
	longname[299] = 0;
	assert_int_equal(disc_new(longname, NULL, &d), DG_EINVAL);
	assert_null(d);
}

/* RFC 8973 §4 order when results of several mechanisms are merged. */
static void test_merge(void **state)
{
	static struct disc_result a, b;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.n = 2;
	a.c[0].source = DISC_SRC_NAPTR;
	a.c[0].port = 1;
	a.c[1].source = DISC_SRC_DNSSD;
	a.c[1].port = 2;
	a.expires = 5000;
	b.n = 2;
	b.c[0].source = DISC_SRC_CONFIG;
	b.c[0].port = 3;
	b.c[1].source = DISC_SRC_NAPTR;
	b.c[1].port = 1; /* a repeat of a.c[0] */
	b.expires = 4000;
	assert_int_equal(disc_result_merge(&a, &b), 0);
	assert_int_equal(a.n, 3);
	assert_int_equal(a.c[0].port, 3);
	assert_int_equal(a.c[1].port, 1);
	assert_int_equal(a.c[2].port, 2);
	assert_true(a.expires == 4000);
	assert_string_equal(disc_source_name(DISC_SRC_DHCP), "dhcp");
	assert_string_equal(disc_transport_name(DISC_DATA_TCP), "data.tcp");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_table1, setup),
		cmocka_unit_test_setup(test_table1_answer_order, setup),
		cmocka_unit_test_setup(test_preference_and_families, setup),
		cmocka_unit_test_setup(test_service_field, setup),
		cmocka_unit_test_setup(test_naptr_narrowing, setup),
		cmocka_unit_test_setup(test_transport_filter, setup),
		cmocka_unit_test_setup(test_naptr_malformed, setup),
		cmocka_unit_test_setup(test_naptr_chains, setup),
		cmocka_unit_test_setup(test_srv_weights, setup),
		cmocka_unit_test_setup(test_srv_malformed, setup),
		cmocka_unit_test_setup(test_dnssd_figure10, setup),
		cmocka_unit_test_setup(test_mechanisms, setup),
		cmocka_unit_test_setup(test_dnssd_malformed, setup),
		cmocka_unit_test_setup(test_ttl_and_rerun, setup),
		cmocka_unit_test_setup(test_cname, setup),
		cmocka_unit_test_setup(test_bad_addresses, setup),
		cmocka_unit_test_setup(test_duplicates, setup),
		cmocka_unit_test_setup(test_nxdomain_wait, setup),
		cmocka_unit_test_setup(test_transient_backoff, setup),
		cmocka_unit_test_setup(test_partial_failure, setup),
		cmocka_unit_test_setup(test_deadline_and_stale, setup),
		cmocka_unit_test_setup(test_bounds, setup),
		cmocka_unit_test_setup(test_bad_domain, setup),
		cmocka_unit_test_setup(test_merge, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
