/*
 * test_prefix.c: prefixes, port ranges and prefix sets (common/prefix.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "prefix.h"

static struct prefix P(const char *s)
{
	struct prefix p;

	assert_int_equal(prefix_parse(s, false, &p), 0);
	return p;
}

/* Parses s and checks the canonical text form comes back as want. */
static void roundtrip(const char *s, const char *want)
{
	struct prefix p;
	char buf[64];

	assert_int_equal(prefix_parse(s, false, &p), 0);
	assert_int_equal(prefix_format(&p, buf, sizeof(buf)), (int)strlen(want));
	assert_string_equal(buf, want);
}

static void test_parse_v4(void **state)
{
	struct prefix p;

	(void)state;
	assert_int_equal(prefix_parse("192.0.2.0/24", false, &p), 0);
	assert_int_equal(p.family, 4);
	assert_int_equal(p.len, 24);
	assert_int_equal(p.addr[0], 192);
	assert_int_equal(p.addr[1], 0);
	assert_int_equal(p.addr[2], 2);
	assert_int_equal(p.addr[3], 0);
	roundtrip("192.0.2.0/24", "192.0.2.0/24");
	roundtrip("198.51.100.7/32", "198.51.100.7/32");
	roundtrip("0.0.0.0/0", "0.0.0.0/0");
	roundtrip("10.128.0.0/9", "10.128.0.0/9");
}

static void test_parse_v6(void **state)
{
	struct prefix p;

	(void)state;
	assert_int_equal(prefix_parse("2001:db8::/32", false, &p), 0);
	assert_int_equal(p.family, 6);
	assert_int_equal(p.len, 32);
	assert_int_equal(p.addr[0], 0x20);
	assert_int_equal(p.addr[1], 0x01);
	assert_int_equal(p.addr[2], 0x0d);
	assert_int_equal(p.addr[3], 0xb8);
	assert_int_equal(p.addr[15], 0);
	/* the text form is canonical (RFC 5952): lower case, compressed */
	roundtrip("2001:DB8:0:0:0:0:0:0/32", "2001:db8::/32");
	roundtrip("2001:db8:6401::1/128", "2001:db8:6401::1/128");
	roundtrip("::/0", "::/0");
	roundtrip("::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120");
}

static void test_host_bits(void **state)
{
	struct prefix p;
	char buf[48];

	(void)state;
	assert_int_equal(prefix_parse("192.0.2.1/24", false, &p), DG_ERANGE);
	assert_int_equal(prefix_parse("10.192.0.0/9", false, &p), DG_ERANGE);
	assert_int_equal(prefix_parse("1.0.0.0/0", false, &p), DG_ERANGE);
	assert_int_equal(prefix_parse("2001:db8::1/64", false, &p), DG_ERANGE);
	assert_int_equal(prefix_parse("2001:db8:4000::/33", false, &p), DG_ERANGE);
	assert_int_equal(prefix_parse("2001:db8:8000::/33", false, &p), 0);

	assert_int_equal(prefix_parse("192.0.2.77/24", true, &p), 0);
	assert_int_equal(prefix_format(&p, buf, sizeof(buf)), 12);
	assert_string_equal(buf, "192.0.2.0/24");
	assert_int_equal(prefix_parse("10.255.1.1/9", true, &p), 0);
	assert_int_equal(prefix_format(&p, buf, sizeof(buf)), 12);
	assert_string_equal(buf, "10.128.0.0/9");
	assert_int_equal(prefix_parse("2001:db8:ffff::1/36", true, &p), 0);
	assert_true(prefix_format(&p, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "2001:db8:f000::/36");
}

static void test_parse_malformed(void **state)
{
	static const char *const bad[] = {
		"1.2.3.4",            /* length is mandatory */
		"1.2.3.4/33",
		"::/129",
		"1.2.3.4/ 8",
		"1.2.3.4 /8",
		" 1.2.3.4/8",
		"1.2.3.4/8 ",
		"01.2.3.4/8",         /* leading zero in an octet */
		"1.2.3.4/08",         /* leading zero in the length */
		"1.2.3.4/+8",
		"1.2.3.4/-1",
		"1.2.3.4/",
		"/8",
		"1.2.3/24",
		"1.2.3.4.5/32",
		"256.0.0.0/8",
		"1.2.3.4/8/8",
		"1.2.3.4/1000",
		"fe80::1%eth0/64",
		"2001:db8:::/32",
		"2001:db8::/",
		"example.com/24",
		"",
	};
	char longstr[200];
	struct prefix p;

	(void)state;
	memset(&p, 0x5a, sizeof(p));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = prefix_parse(bad[i], true, &p);

		if (rc != DG_EINVAL)
			fail_msg("\"%s\" gave %d, not DG_EINVAL", bad[i], rc);
	}
	/* a failed parse leaves the output alone */
	assert_int_equal(p.family, 0x5a);
	memset(longstr, '1', sizeof(longstr) - 1);
	longstr[sizeof(longstr) - 1] = '\0';
	longstr[100] = '/';
	assert_int_equal(prefix_parse(longstr, true, &p), DG_EINVAL);
	assert_int_equal(prefix_parse(NULL, true, &p), DG_EINVAL);
}

static void test_format_small_buffer(void **state)
{
	struct prefix p = P("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120");
	char buf[48];

	(void)state;
	/* 43 characters: the longest form needs 44 bytes, 48 suffice */
	assert_int_equal(prefix_format(&p, buf, sizeof(buf)), 43);
	assert_int_equal(prefix_format(&p, buf, 44), 43);
	assert_int_equal(prefix_format(&p, buf, 43), DG_ETOOBIG);
	p = P("192.0.2.0/24");
	assert_int_equal(prefix_format(&p, buf, 12), DG_ETOOBIG);
	assert_int_equal(prefix_format(&p, buf, 13), 12);
	p.family = 5;
	assert_int_equal(prefix_format(&p, buf, sizeof(buf)), DG_EINVAL);
}

static void test_contains(void **state)
{
	struct prefix v4_16 = P("192.0.0.0/16"), v4_24 = P("192.0.2.0/24");
	struct prefix v4_host = P("192.0.2.255/32"), v4_other = P("192.1.2.0/24");
	struct prefix v6_32 = P("2001:db8::/32"), v6_64 = P("2001:db8:1:2::/64");
	struct prefix all4 = P("0.0.0.0/0"), all6 = P("::/0");
	struct prefix odd = P("10.128.0.0/9"), odd_in = P("10.200.0.0/16");
	struct prefix odd_out = P("10.64.0.0/16");

	(void)state;
	assert_true(prefix_contains(&v4_16, &v4_24));
	assert_true(prefix_contains(&v4_24, &v4_host));
	assert_true(prefix_contains(&v4_24, &v4_24));
	assert_false(prefix_contains(&v4_24, &v4_16));
	assert_false(prefix_contains(&v4_16, &v4_other));
	assert_true(prefix_contains(&v6_32, &v6_64));
	assert_false(prefix_contains(&v6_64, &v6_32));
	assert_true(prefix_contains(&all4, &v4_host));
	assert_true(prefix_contains(&all6, &v6_64));
	/* families never mix */
	assert_false(prefix_contains(&all6, &v4_24));
	assert_false(prefix_contains(&all4, &v6_64));
	/* lengths that are not byte multiples */
	assert_true(prefix_contains(&odd, &odd_in));
	assert_false(prefix_contains(&odd, &odd_out));
}

static void test_overlaps(void **state)
{
	struct prefix a = P("192.0.2.0/24"), b = P("192.0.2.128/25");
	struct prefix c = P("198.51.100.0/24"), d = P("2001:db8::/32");
	struct prefix e = P("2001:db8:ffff::/48"), f = P("2001:db9::/32");

	(void)state;
	assert_true(prefix_overlaps(&a, &b));
	assert_true(prefix_overlaps(&b, &a));
	assert_false(prefix_overlaps(&a, &c));
	assert_true(prefix_overlaps(&d, &e));
	assert_true(prefix_overlaps(&e, &d));
	assert_false(prefix_overlaps(&d, &f));
	assert_false(prefix_overlaps(&a, &d));
}

static void check_forbidden(const char *s, bool want)
{
	struct prefix p = P(s);

	if (prefix_is_forbidden_target(&p) != want)
		fail_msg("%s: forbidden should be %d", s, want);
}

static void test_forbidden_v4(void **state)
{
	(void)state;
	check_forbidden("127.0.0.1/32", true);
	check_forbidden("127.0.0.0/8", true);
	check_forbidden("127.10.0.0/16", true);
	check_forbidden("126.0.0.0/7", true);       /* covers loopback */
	check_forbidden("224.0.0.0/4", true);
	check_forbidden("224.0.0.251/32", true);    /* link-local multicast */
	check_forbidden("239.1.2.0/24", true);
	check_forbidden("255.255.255.255/32", true);
	check_forbidden("0.0.0.0/32", true);
	check_forbidden("0.0.0.0/8", true);         /* covers 0.0.0.0 */
	check_forbidden("0.0.0.0/0", true);
	check_forbidden("128.0.0.0/1", true);       /* covers multicast */

	check_forbidden("192.0.2.0/24", false);
	check_forbidden("198.51.100.1/32", false);
	check_forbidden("255.255.255.254/32", false);
	check_forbidden("0.0.0.1/32", false);
	check_forbidden("128.0.0.0/2", false);
	check_forbidden("240.0.0.0/32", false);     /* 240/4 is not 224/4 */
}

static void test_forbidden_v6(void **state)
{
	(void)state;
	check_forbidden("::1/128", true);
	check_forbidden("::/128", true);
	check_forbidden("::/0", true);
	check_forbidden("::/64", true);             /* covers :: and ::1 */
	check_forbidden("ff00::/8", true);
	check_forbidden("ff02::1/128", true);       /* link-local multicast */
	check_forbidden("fe00::/7", true);          /* covers ff00::/8 */
	check_forbidden("::ffff:127.0.0.1/128", true);  /* mapped loopback */
	check_forbidden("::ffff:224.0.0.0/100", true);  /* mapped multicast */
	check_forbidden("::ffff:0:0/96", true);
	check_forbidden("::8000:0:0/81", true);     /* covers all of ::ffff:0:0/96 */

	check_forbidden("2001:db8::/32", false);
	check_forbidden("::2/128", false);
	check_forbidden("fe80::/10", false);
	check_forbidden("::ffff:192.0.2.0/120", false);
}

static void test_forbidden_invalid_struct(void **state)
{
	struct prefix p = P("192.0.2.0/24");

	(void)state;
	p.len = 40; /* impossible for IPv4: refuse rather than read past */
	assert_true(prefix_is_forbidden_target(&p));
	p.family = 0;
	assert_true(prefix_is_forbidden_target(&p));
}

static void test_port_range_parse(void **state)
{
	struct port_range r;

	(void)state;
	assert_int_equal(port_range_parse("80", &r), 0);
	assert_int_equal(r.lower, 80);
	assert_int_equal(r.upper, 80);
	assert_int_equal(port_range_parse("1024-65535", &r), 0);
	assert_int_equal(r.lower, 1024);
	assert_int_equal(r.upper, 65535);
	assert_int_equal(port_range_parse("0", &r), 0);
	assert_int_equal(r.lower, 0);
	assert_int_equal(r.upper, 0);
	assert_int_equal(port_range_parse("443-443", &r), 0);
	assert_int_equal(r.lower, 443);
	assert_int_equal(r.upper, 443);
}

static void test_port_range_malformed(void **state)
{
	static const char *const bad[] = {
		"", "65536", "80-", "-80", "443-80", "08", "8 0", " 80", "80 ",
		"80-443-8080", "1a", "999999", "80--90", "+80", "80-65536",
		"0x50", "80,443",
	};
	struct port_range r = { 7, 9 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (port_range_parse(bad[i], &r) != DG_EINVAL)
			fail_msg("\"%s\" was accepted", bad[i]);
	assert_int_equal(r.lower, 7);
	assert_int_equal(r.upper, 9);
	assert_int_equal(port_range_parse(NULL, &r), DG_EINVAL);
}

static void test_port_range_relations(void **state)
{
	struct port_range web = { 80, 443 }, one = { 443, 443 };
	struct port_range high = { 444, 8080 }, all = { 0, 65535 };

	(void)state;
	assert_true(port_range_contains(&web, &one));
	assert_false(port_range_contains(&one, &web));
	assert_true(port_range_contains(&all, &web));
	assert_false(port_range_contains(&web, &high));
	assert_true(port_range_overlaps(&web, &one));
	assert_true(port_range_overlaps(&one, &web));
	assert_false(port_range_overlaps(&web, &high));
	assert_false(port_range_overlaps(&high, &one));
	assert_true(port_range_overlaps(&all, &high));
}

static void test_prefix_set(void **state)
{
	struct prefix_set s = { 0 };
	struct prefix p;
	char buf[48];

	(void)state;
	p = P("192.0.2.0/24");
	assert_false(prefix_set_contains(&s, &p));
	/* enough members to force several reallocations */
	for (unsigned i = 0; i < 40; i++) {
		snprintf(buf, sizeof(buf), "10.%u.0.0/16", i);
		p = P(buf);
		assert_int_equal(prefix_set_add(&s, &p), 0);
	}
	p = P("2001:db8::/32");
	assert_int_equal(prefix_set_add(&s, &p), 0);
	assert_int_equal(s.n, 41);
	assert_true(s.cap >= 41);

	p = P("10.39.7.0/24");
	assert_true(prefix_set_contains(&s, &p));
	p = P("10.0.0.0/16");
	assert_true(prefix_set_contains(&s, &p));
	p = P("10.40.0.0/24");
	assert_false(prefix_set_contains(&s, &p));
	p = P("10.0.0.0/8"); /* bigger than every member */
	assert_false(prefix_set_contains(&s, &p));
	p = P("2001:db8:1::/48");
	assert_true(prefix_set_contains(&s, &p));
	assert_int_equal(prefix_set_add(&s, NULL), DG_EINVAL);

	prefix_set_free(&s);
	assert_null(s.v);
	assert_int_equal(s.n, 0);
	assert_int_equal(s.cap, 0);
	assert_false(prefix_set_contains(&s, &p));
	prefix_set_free(&s); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_v4),
		cmocka_unit_test(test_parse_v6),
		cmocka_unit_test(test_host_bits),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_format_small_buffer),
		cmocka_unit_test(test_contains),
		cmocka_unit_test(test_overlaps),
		cmocka_unit_test(test_forbidden_v4),
		cmocka_unit_test(test_forbidden_v6),
		cmocka_unit_test(test_forbidden_invalid_struct),
		cmocka_unit_test(test_port_range_parse),
		cmocka_unit_test(test_port_range_malformed),
		cmocka_unit_test(test_port_range_relations),
		cmocka_unit_test(test_prefix_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
