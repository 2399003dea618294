/*
 * test_io_dns.c: the DNS message parser of gateway/io_dns.c against
 * hand-built hostile messages (no network).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "io_dns.h"

struct msg {
	uint8_t b[2048];
	size_t n;
};

static void put8(struct msg *m, unsigned v)
{
	assert_true(m->n < sizeof(m->b));
	m->b[m->n++] = (uint8_t)v;
}

static void put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

static void put_name(struct msg *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);

		put8(m, (unsigned)len);
		memcpy(m->b + m->n, name, len);
		m->n += len;
		name += len + (dot ? 1 : 0);
	}
	put8(m, 0);
}

static void put_cstr(struct msg *m, const char *s)
{
	put8(m, (unsigned)strlen(s));
	memcpy(m->b + m->n, s, strlen(s));
	m->n += strlen(s);
}

static void header(struct msg *m, unsigned an, unsigned ns, const char *qname, unsigned qtype)
{
	m->n = 0;
	put16(m, 0x1234);
	put16(m, 0x8400);
	put16(m, 1);
	put16(m, an);
	put16(m, ns);
	put16(m, 0);
	put_name(m, qname);
	put16(m, qtype);
	put16(m, 1);
}

/* Writes an RR header; returns where rdlength goes (set by rr_end). */
static size_t rr_begin(struct msg *m, const char *owner, unsigned type, unsigned cls, uint32_t ttl)
{
	size_t at;

	put_name(m, owner);
	put16(m, type);
	put16(m, cls);
	put32(m, ttl);
	at = m->n;
	put16(m, 0);
	return at;
}

static void rr_end(struct msg *m, size_t at)
{
	size_t len = m->n - at - 2;

	m->b[at] = (uint8_t)(len >> 8);
	m->b[at + 1] = (uint8_t)len;
}

static void naptr_rr(struct msg *m, const char *owner, const char *flags, const char *svc,
		     const char *re, const char *repl)
{
	size_t at = rr_begin(m, owner, DISC_RR_NAPTR, 1, 300);

	put16(m, 100);
	put16(m, 10);
	put_cstr(m, flags);
	put_cstr(m, svc);
	put_cstr(m, re);
	put_name(m, repl);
	rr_end(m, at);
}

static int parse(const struct msg *m, uint16_t qtype, struct disc_rr *rr, size_t *n,
		 uint32_t *neg, struct io_dns_arena *arena)
{
	return io_dns__parse(m->b, (int)m->n, qtype, rr, DISC_ANSWER_RR_MAX, n, neg, arena);
}

static void test_naptr_ok(void **state)
{
	struct msg m;
	struct disc_rr rr[DISC_ANSWER_RR_MAX];
	struct io_dns_arena arena = { .n = 0 };
	size_t n;
	uint32_t neg;

	(void)state;
	header(&m, 2, 0, "example.net", DISC_RR_NAPTR);
	naptr_rr(&m, "example.net", "s", "DOTS:signal.udp", "", "_dots-signal._udp.example.net");
	naptr_rr(&m, "example.net", "", "DOTS:data.tcp", "", "data.example.net");
	assert_int_equal(parse(&m, DISC_RR_NAPTR, rr, &n, &neg, &arena), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rr[0].owner, "example.net");
	assert_int_equal(rr[0].type, DISC_RR_NAPTR);
	assert_int_equal(rr[0].ttl, 300);
	assert_int_equal(rr[0].u.naptr.order, 100);
	assert_int_equal(rr[0].u.naptr.flags_len, 1);
	assert_memory_equal(rr[0].u.naptr.flags, "s", 1);
	assert_int_equal(rr[0].u.naptr.service_len, 15);
	assert_int_equal(rr[0].u.naptr.regexp_len, 0);
	assert_string_equal(rr[0].u.naptr.replacement, "_dots-signal._udp.example.net");
	assert_int_equal(rr[1].u.naptr.flags_len, 0);
	io_dns__arena_free(&arena);
}

static void test_srv_cname_soa(void **state)
{
	struct msg m;
	struct disc_rr rr[DISC_ANSWER_RR_MAX];
	struct io_dns_arena arena = { .n = 0 };
	size_t n, at;
	uint32_t neg;

	(void)state;
	header(&m, 3, 0, "_s._udp.example.net", DISC_RR_SRV);
	at = rr_begin(&m, "_s._udp.example.net", DISC_RR_SRV, 1, 0x80000001u);
	put16(&m, 1);
	put16(&m, 2);
	put16(&m, 4646);
	put_name(&m, "a.example.net");
	rr_end(&m, at);
	/* A CHAOS-class record is not ours: skipped. */
	at = rr_begin(&m, "_s._udp.example.net", DISC_RR_SRV, 3, 60);
	put16(&m, 1);
	put16(&m, 2);
	put16(&m, 1);
	put_name(&m, "b.example.net");
	rr_end(&m, at);
	at = rr_begin(&m, "x.example.net", DISC_RR_CNAME, 1, 60);
	put_name(&m, "y.example.net");
	rr_end(&m, at);
	assert_int_equal(parse(&m, DISC_RR_SRV, rr, &n, &neg, &arena), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rr[0].ttl, 0); /* RFC 2181 §8 */
	assert_int_equal(rr[0].u.srv.port, 4646);
	assert_string_equal(rr[0].u.srv.target, "a.example.net");
	assert_int_equal(rr[1].type, DISC_RR_CNAME);
	assert_string_equal(rr[1].u.name, "y.example.net");
	io_dns__arena_free(&arena);

	/* Negative answer: RFC 2308 TTL from the authority SOA. */
	header(&m, 0, 1, "nothere.example.net", DISC_RR_NAPTR);
	m.b[3] = 0x03; /* NXDOMAIN */
	at = rr_begin(&m, "example.net", 6, 1, 60);
	put_name(&m, "ns.example.net");
	put_name(&m, "host.example.net");
	put32(&m, 1);
	put32(&m, 3600);
	put32(&m, 600);
	put32(&m, 86400);
	put32(&m, 45);
	rr_end(&m, at);
	assert_int_equal(parse(&m, DISC_RR_NAPTR, rr, &n, &neg, &arena), 0);
	assert_int_equal(n, 0);
	assert_int_equal(neg, 45);
	io_dns__arena_free(&arena);
}

static void test_hostile(void **state)
{
	struct msg m;
	struct disc_rr rr[DISC_ANSWER_RR_MAX];
	struct io_dns_arena arena = { .n = 0 };
	size_t n, at;
	uint32_t neg;

	(void)state;
	/* Truncated header. */
	m.n = 5;
	memset(m.b, 0, 5);
	assert_int_equal(parse(&m, DISC_RR_A, rr, &n, &neg, &arena), DG_EINVAL);

	/* Two questions. */
	header(&m, 0, 0, "example.net", DISC_RR_A);
	m.b[5] = 2;
	assert_int_equal(parse(&m, DISC_RR_A, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* More records than disc takes. */
	header(&m, DISC_ANSWER_RR_MAX + 1, 0, "example.net", DISC_RR_A);
	assert_int_equal(parse(&m, DISC_RR_A, rr, &n, &neg, &arena), DG_ETOOBIG);
	io_dns__arena_free(&arena);

	/* An owner that is a compression pointer to itself. */
	header(&m, 1, 0, "example.net", DISC_RR_A);
	put8(&m, 0xc0);
	put8(&m, (unsigned)m.n - 1);
	put16(&m, DISC_RR_A);
	put16(&m, 1);
	put32(&m, 60);
	put16(&m, 4);
	put32(&m, 0x7f000001);
	assert_int_equal(parse(&m, DISC_RR_A, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* rdlength past the end of the message. */
	header(&m, 1, 0, "example.net", DISC_RR_A);
	at = rr_begin(&m, "example.net", DISC_RR_A, 1, 60);
	put32(&m, 0x7f000001);
	rr_end(&m, at);
	m.b[at + 1] = 40;
	assert_int_equal(parse(&m, DISC_RR_A, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* An A record of 5 bytes. */
	header(&m, 1, 0, "example.net", DISC_RR_A);
	at = rr_begin(&m, "example.net", DISC_RR_A, 1, 60);
	put32(&m, 0x7f000001);
	put8(&m, 1);
	rr_end(&m, at);
	assert_int_equal(parse(&m, DISC_RR_A, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* A NAPTR character-string longer than its record. */
	header(&m, 1, 0, "example.net", DISC_RR_NAPTR);
	at = rr_begin(&m, "example.net", DISC_RR_NAPTR, 1, 60);
	put16(&m, 1);
	put16(&m, 1);
	put8(&m, 200);
	put8(&m, 'S');
	rr_end(&m, at);
	put_name(&m, "padding.padding.padding.example.net");
	assert_int_equal(parse(&m, DISC_RR_NAPTR, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* An SRV target running past its rdlength into the next record. */
	header(&m, 1, 0, "_s._udp.example.net", DISC_RR_SRV);
	at = rr_begin(&m, "_s._udp.example.net", DISC_RR_SRV, 1, 60);
	put16(&m, 0);
	put16(&m, 0);
	put16(&m, 1);
	put_name(&m, "a.example.net");
	rr_end(&m, at);
	m.b[at + 1] -= 3;
	assert_int_equal(parse(&m, DISC_RR_SRV, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* Trailing bytes after a PTR name inside its rdata. */
	header(&m, 1, 0, "_s._udp.example.net", DISC_RR_PTR);
	at = rr_begin(&m, "_s._udp.example.net", DISC_RR_PTR, 1, 60);
	put_name(&m, "a._s._udp.example.net");
	put8(&m, 0);
	rr_end(&m, at);
	assert_int_equal(parse(&m, DISC_RR_PTR, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);

	/* An ancount larger than the records present. */
	header(&m, 2, 0, "example.net", DISC_RR_NAPTR);
	naptr_rr(&m, "example.net", "s", "DOTS:signal.udp", "", "x.example.net");
	assert_int_equal(parse(&m, DISC_RR_NAPTR, rr, &n, &neg, &arena), DG_EINVAL);
	io_dns__arena_free(&arena);
}

/* Every single-byte corruption and every truncation of a valid message:
 * no crash, no leak (run under ASan), and either refused or parsed into
 * at most ancount records. */
static void test_mutations(void **state)
{
	struct msg base, m;
	struct disc_rr rr[DISC_ANSWER_RR_MAX];
	struct io_dns_arena arena = { .n = 0 };
	size_t n, at;
	uint32_t neg;
	static const uint8_t vals[] = { 0x00, 0x01, 0x3f, 0x40, 0x7f, 0xc0, 0xc5, 0xff };

	(void)state;
	header(&base, 3, 0, "example.net", DISC_RR_NAPTR);
	naptr_rr(&base, "example.net", "s", "DOTS:signal.udp", "", "_dots-signal._udp.example.net");
	at = rr_begin(&base, "example.net", DISC_RR_CNAME, 1, 60);
	base.b[base.n++] = 0xc0;
	base.b[base.n++] = 12;
	rr_end(&base, at);
	naptr_rr(&base, "example.net", "a", "DOTS:data.tcp", "", "b.example.net");
	for (size_t i = 0; i < base.n; i++) {
		for (size_t v = 0; v < sizeof(vals); v++) {
			m = base;
			m.b[i] = vals[v];
			if (parse(&m, DISC_RR_NAPTR, rr, &n, &neg, &arena) == 0)
				assert_true(n <= 3);
			io_dns__arena_free(&arena);
		}
		m = base;
		m.n = i;
		assert_int_not_equal(parse(&m, DISC_RR_NAPTR, rr, &n, &neg, &arena), 0);
		io_dns__arena_free(&arena);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_naptr_ok),
		cmocka_unit_test(test_srv_cname_soa),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
