/* test_dhcp_dots.c: RFC 8973 §5 DHCP options, every rule of the section. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dhcp_dots.h"

/* RFC 8973 Figure 4: "dots.example.com", 18 octets. */
static const uint8_t fig4[] = "\x04" "dots" "\x07" "example" "\x03" "com";
#define FIG4_LEN 18

static struct dhcp_dots_opt opt(uint16_t code, const void *data, size_t len)
{
	struct dhcp_dots_opt o = { code, (uint16_t)len, data };

	return o;
}

/* Runs dhcp_dots_parse expecting failure: *out must stay as it was. */
static void expect_reject(enum dhcp_dots_family fam, const struct dhcp_dots_opt *o,
			  size_t n, int code, const char *reason_part)
{
	struct dhcp_dots_info info, before;
	struct dg_diag why = { "" };

	memset(&info, 0xa5, sizeof(info));
	before = info;
	assert_int_equal(dhcp_dots_parse(fam, o, n, &info, &why), code);
	assert_memory_equal(&info, &before, sizeof(info));
	if (!strstr(why.text, reason_part))
		fail_msg("reason \"%s\" lacks \"%s\"", why.text, reason_part);
}

static void test_figure4_name(void **state)
{
	struct dhcp_dots_opt o[1] = { opt(DHCP_DOTS_V6_RI, fig4, FIG4_LEN) };
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V6, o, 1, &info, &why), 0);
	assert_true(info.has_name);
	assert_string_equal(info.name, "dots.example.com");
	assert_int_equal(info.n_addrs, 0);
	assert_int_equal(info.n_trailing, 0);
	o[0].code = DHCP_DOTS_V4_RI;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 1, &info, &why), 0);
	assert_string_equal(info.name, "dots.example.com");
	assert_int_equal(info.family, DHCP_DOTS_V4);
}

static void test_name_errors(void **state)
{
	char out[DHCP_DOTS_NAME_SIZE];
	size_t used;
	struct dg_diag why;
	uint8_t big[300];

	(void)state;
	/* Each malformation, with the reason naming it. */
	static const struct {
		const char *wire;
		size_t len;
		const char *reason;
	} bad[] = {
		{ "", 0, "empty name" },
		{ "\x00", 1, "root name" },
		{ "\x04" "dots", 5, "not terminated" },
		{ "\x04" "do", 3, "runs past the end" },
		{ "\xc0\x0c", 2, "compression pointer at offset 0" },
		{ "\x04" "dots\xc0\x00", 7, "compression pointer at offset 5" },
		{ "\x40" "x", 2, "reserved label type 0x40" },
		{ "\x80" "x", 2, "reserved label type 0x80" },
		{ "\x04" "do_s\x00", 6, "octet 0x5f" },
		{ "\x04" "do.s\x00", 6, "octet 0x2e" },
		{ "\x04" "do s\x00", 6, "octet 0x20" },
		{ "\x04" "do\x00s\x00", 6, "octet 0x00" },
		{ "\x04" "-dot\x00", 6, "hyphen" },
		{ "\x04" "dot-\x00", 6, "hyphen" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(out, "untouched");
		why.text[0] = '\0';
		assert_int_equal(dhcp_dots_name_decode((const uint8_t *)bad[i].wire,
						       bad[i].len, out, &used, &why),
				 DG_EINVAL);
		assert_string_equal(out, "untouched");
		if (!strstr(why.text, bad[i].reason))
			fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, why.text,
				 bad[i].reason);
	}
	/* 64-octet label: the length octet has a reserved type bit set. */
	memset(big, 'a', sizeof(big));
	big[0] = 64;
	assert_int_equal(dhcp_dots_name_decode(big, 70, out, &used, &why), DG_EINVAL);
	assert_non_null(strstr(why.text, "reserved label type"));
	/* 63-octet labels up to exactly 255 octets pass, 256 fail. */
	for (int i = 0; i < 4; i++)
		big[i * 64] = 63;
	/* 4 labels of 63 = 256 octets + root: too long. */
	big[256] = 0;
	assert_int_equal(dhcp_dots_name_decode(big, 257, out, &used, &why), DG_EINVAL);
	assert_non_null(strstr(why.text, "longer than 255"));
	/* 3 x 63 + 1 x 61 + root = 255 octets: the longest legal name. */
	big[192] = 61;
	big[254] = 0;
	assert_int_equal(dhcp_dots_name_decode(big, 255, out, &used, &why), 0);
	assert_int_equal(used, 255);
	assert_int_equal(strlen(out), 253);
	/* Digits, upper case and inner hyphens are fine. */
	assert_int_equal(dhcp_dots_name_decode((const uint8_t *)"\x05" "D-0ts\x02" "x1\x00",
					       10, out, &used, &why), 0);
	assert_string_equal(out, "D-0ts.x1");
}

static void test_first_name_only(void **state)
{
	/* §5.1.3/§5.2.3: several names (several root labels): the first. */
	static const uint8_t two[] = "\x01" "a" "\x02" "ex" "\x00" "\x01" "b" "\x02" "ex";
	struct dhcp_dots_opt o[1] = { opt(DHCP_DOTS_V4_RI, two, sizeof(two)) };
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 1, &info, &why), 0);
	assert_string_equal(info.name, "a.ex");
	assert_int_equal(info.n_trailing, 6);
	o[0].code = DHCP_DOTS_V6_RI;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V6, o, 1, &info, &why), 0);
	assert_string_equal(info.name, "a.ex");
}

static void test_bad_ri_rejects_whole_lease(void **state)
{
	static const uint8_t addr[4] = { 192, 0, 2, 1 };
	struct dhcp_dots_opt o[2] = {
		opt(DHCP_DOTS_V4_ADDRESS, addr, 4),
		opt(DHCP_DOTS_V4_RI, "\x04" "dots\xc0\x0c", 7),
	};

	(void)state;
	/* Valid addresses do not survive a malformed name. */
	expect_reject(DHCP_DOTS_V4, o, 2, DG_EINVAL, "option 147: compression pointer");
	o[1].code = DHCP_DOTS_V6_RI;
	o[0].code = 999;
	expect_reject(DHCP_DOTS_V6, o, 2, DG_EINVAL, "option 141: compression pointer");
}

static void test_v6_address_lengths(void **state)
{
	uint8_t a[48] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1,
			  [16] = 0x20, 0x01, 0x0d, 0xb8, [31] = 2 };
	struct dhcp_dots_opt o[1] = { opt(DHCP_DOTS_V6_ADDRESS, a, 32) };
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V6, o, 1, &info, &why), 0);
	assert_int_equal(info.n_addrs, 2);
	assert_memory_equal(info.addrs[0], a, 16);
	assert_memory_equal(info.addrs[1], a + 16, 16);	/* order kept */
	/* §5.1.2: a multiple of 16, one address at least. */
	for (size_t len = 0; len < 48; len++) {
		if (len == 16 || len == 32)
			continue;
		o[0].len = (uint16_t)len;
		expect_reject(DHCP_DOTS_V6, o, 1, DG_EINVAL,
			      "option 142: length");
	}
}

static void test_v4_address_lengths(void **state)
{
	uint8_t a[12] = { 192, 0, 2, 1, 198, 51, 100, 7, 203, 0, 113, 9 };
	struct dhcp_dots_opt o[1] = { opt(DHCP_DOTS_V4_ADDRESS, a, 12) };
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 1, &info, &why), 0);
	assert_int_equal(info.n_addrs, 3);
	assert_memory_equal(info.addrs[2], a + 8, 4);
	/* §9.3: 4*N, minimal length 4. */
	for (uint16_t len = 0; len < 12; len++) {
		if (len % 4 == 0 && len)
			continue;
		o[0].len = len;
		expect_reject(DHCP_DOTS_V4, o, 1, DG_EINVAL, "option 148: length");
	}
}

static void test_v4_concatenation(void **state)
{
	/* RFC 3396: a split option is concatenated before parsing: the
	 * fragments 3 + 5 octets make two addresses, "dots." + "example.com"
	 * one name; the pieces alone are each malformed. */
	static const uint8_t a[8] = { 192, 0, 2, 1, 198, 51, 100, 7 };
	struct dhcp_dots_opt o[5] = {
		opt(DHCP_DOTS_V4_ADDRESS, a, 3),
		opt(DHCP_DOTS_V4_RI, fig4, 5),
		opt(1, "\xff\xff\xff\x00", 4),	/* another option in between */
		opt(DHCP_DOTS_V4_ADDRESS, a + 3, 5),
		opt(DHCP_DOTS_V4_RI, fig4 + 5, FIG4_LEN - 5),
	};
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 5, &info, &why), 0);
	assert_int_equal(info.n_addrs, 2);
	assert_memory_equal(info.addrs[0], a, 4);
	assert_memory_equal(info.addrs[1], a + 4, 4);
	assert_string_equal(info.name, "dots.example.com");
	assert_int_equal(info.n_ignored_instances, 0);
	/* Concatenation beyond 255 octets (the reason RFC 3396 exists). */
	{
		static uint8_t many[4 * 130];
		struct dhcp_dots_opt big[3];

		for (int i = 0; i < 130; i++) {
			many[4 * i] = 10;
			many[4 * i + 2] = (uint8_t)(i / 256);
			many[4 * i + 3] = (uint8_t)(i + 1);
		}
		big[0] = opt(DHCP_DOTS_V4_ADDRESS, many, 255);
		big[1] = opt(DHCP_DOTS_V4_ADDRESS, many + 255, 4 * 80 - 255);
		assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, big, 2, &info, &why), 0);
		assert_int_equal(info.n_addrs, 80);
		assert_memory_equal(info.addrs[63], "\x0a\x00\x00\x40", 4);
		assert_memory_equal(info.addrs[79], "\x0a\x00\x00\x50", 4);
		/* Our bound: DHCP_DOTS_MAX_ADDRS addresses, then refused. */
		big[1].len = 255;
		big[2] = opt(DHCP_DOTS_V4_ADDRESS, many + 510, 4 * 130 - 510);
		assert_int_equal(4 * 130 / 4, DHCP_DOTS_MAX_ADDRS + 2);
		expect_reject(DHCP_DOTS_V4, big, 3, DG_ETOOBIG, "more than 128 addresses");
	}
	/* A zero-length fragment adds nothing; a lone one is malformed. */
	o[0] = opt(DHCP_DOTS_V4_ADDRESS, a, 0);
	o[1] = opt(DHCP_DOTS_V4_ADDRESS, a, 4);
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 2, &info, &why), 0);
	assert_int_equal(info.n_addrs, 1);
	expect_reject(DHCP_DOTS_V4, o, 1, DG_EINVAL, "length 0");
}

static void test_v6_first_instance_only(void **state)
{
	static const uint8_t a1[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	static const uint8_t a2[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 2 };
	struct dhcp_dots_opt o[4] = {
		opt(DHCP_DOTS_V6_ADDRESS, a1, 16),
		opt(DHCP_DOTS_V6_RI, fig4, FIG4_LEN),
		opt(DHCP_DOTS_V6_ADDRESS, a2, 16),
		opt(DHCP_DOTS_V6_RI, "\x01" "x\x00", 3),
	};
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	/* §5.1.3: only the first instance of each option is used. */
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V6, o, 4, &info, &why), 0);
	assert_int_equal(info.n_addrs, 1);
	assert_memory_equal(info.addrs[0], a1, 16);
	assert_string_equal(info.name, "dots.example.com");
	assert_int_equal(info.n_ignored_instances, 2);
	/* Later instances are not read: malformed ones do not matter... */
	o[2].len = 5;
	o[3] = opt(DHCP_DOTS_V6_RI, "\xc0", 1);
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V6, o, 4, &info, &why), 0);
	assert_int_equal(info.n_addrs, 1);
	/* ...but a malformed first one is not replaced by a later one. */
	o[0].len = 15;
	o[2].len = 16;
	expect_reject(DHCP_DOTS_V6, o, 4, DG_EINVAL, "option 142: length 15");
}

static void test_v4_filters(void **state)
{
	static const struct {
		uint8_t a[4];
		const char *why;
	} cases[] = {
		{ { 224, 0, 0, 1 }, "multicast" },
		{ { 239, 255, 255, 255 }, "multicast" },
		{ { 127, 0, 0, 1 }, "loopback" },
		{ { 127, 9, 8, 7 }, "loopback" },
		{ { 0, 0, 0, 0 }, "this-network" },
		{ { 0, 1, 2, 3 }, "this-network" },
		{ { 255, 255, 255, 255 }, "broadcast" },
	};
	static const uint8_t keep[][4] = {
		{ 192, 0, 2, 1 }, { 223, 255, 255, 255 }, { 240, 0, 0, 1 },
		{ 126, 255, 255, 255 }, { 128, 0, 0, 0 }, { 169, 254, 1, 1 },
		{ 10, 0, 0, 1 }, { 255, 255, 255, 254 },
	};
	uint8_t buf[4 * 16];
	size_t len = 0;
	struct dhcp_dots_opt o[1];
	struct dhcp_dots_info info;
	struct dg_diag why;
	const char *r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(dhcp_dots_v4_discarded(cases[i].a, &r));
		assert_non_null(strstr(r, cases[i].why));
		memcpy(buf + len, cases[i].a, 4);
		len += 4;
	}
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		assert_false(dhcp_dots_v4_discarded(keep[i], &r));
		assert_null(r);
	}
	/* Interleaved: kept ones in order, discarded ones silently gone. */
	memcpy(buf + len, keep[0], 4);
	memcpy(buf + len + 4, keep[1], 4);
	memcpy(buf + len + 8, keep[0], 4);	/* a repeat */
	o[0] = opt(DHCP_DOTS_V4_ADDRESS, buf, len + 12);
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 1, &info, &why), 0);
	assert_int_equal(info.n_addrs, 2);
	assert_memory_equal(info.addrs[0], keep[0], 4);
	assert_memory_equal(info.addrs[1], keep[1], 4);
	assert_int_equal(info.n_discarded, 8);
	/* All discarded: no address, not an error. */
	o[0].len = (uint16_t)len;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 1, &info, &why), 0);
	assert_int_equal(info.n_addrs, 0);
}

static void test_v6_filters(void **state)
{
	static const struct {
		uint8_t a[16];
		const char *why;
	} cases[] = {
		{ { 0xff, 0x02, [15] = 1 }, "multicast" },
		{ { 0xff, 0x0e, [15] = 9 }, "multicast" },
		{ { [15] = 1 }, "loopback" },
		{ { 0 }, "unspecified" },
		{ { [10] = 0xff, 0xff, 127, 0, 0, 1 }, "loopback" },
		{ { [10] = 0xff, 0xff, 224, 0, 0, 5 }, "multicast" },
		{ { [10] = 0xff, 0xff, 0, 0, 0, 0 }, "this-network" },
	};
	static const uint8_t keep[][16] = {
		{ 0x20, 0x01, 0x0d, 0xb8, [15] = 1 },
		{ 0xfe, 0x80, [15] = 1 },		/* link-local: §5 keeps it */
		{ [10] = 0xff, 0xff, 192, 0, 2, 1 },	/* mapped: §5.1.2 allows */
		{ 0xfd, 0x00, [15] = 1 },
		{ [15] = 2 },
		{ 0xfe, 0xff, [15] = 1 },
	};
	uint8_t buf[16 * 16];
	size_t len = 0;
	struct dhcp_dots_opt o[1];
	struct dhcp_dots_info info;
	struct dg_diag why;
	const char *r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(dhcp_dots_v6_discarded(cases[i].a, &r));
		if (!strstr(r, cases[i].why))
			fail_msg("case %zu: %s", i, r);
		memcpy(buf + len, cases[i].a, 16);
		len += 16;
	}
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		assert_false(dhcp_dots_v6_discarded(keep[i], &r));
		memcpy(buf + len, keep[i], 16);
		len += 16;
	}
	o[0] = opt(DHCP_DOTS_V6_ADDRESS, buf, len);
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V6, o, 1, &info, &why), 0);
	assert_int_equal(info.n_addrs, sizeof(keep) / sizeof(keep[0]));
	assert_int_equal(info.n_discarded, sizeof(cases) / sizeof(cases[0]));
	for (size_t i = 0; i < info.n_addrs; i++)
		assert_memory_equal(info.addrs[i], keep[i], 16);
}

static void test_v4_area(void **state)
{
	/* Pad, subnet mask, DOTS options split in two, End, then junk. */
	static const uint8_t area[] = {
		0, 0, 1, 4, 255, 255, 255, 0,
		148, 2, 192, 0,
		147, 5, 4, 'd', 'o', 't', 's',
		148, 2, 2, 1,
		147, 1, 0,
		255, 148, 1, 1,
	};
	static const uint8_t trunc[] = { 148, 4, 192, 0, 2 };
	static const uint8_t trunc2[] = { 1, 4, 255, 255, 255, 0, 148 };
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse_v4_area(area, sizeof(area), &info, &why), 0);
	assert_int_equal(info.n_addrs, 1);
	assert_memory_equal(info.addrs[0], "\xc0\x00\x02\x01", 4);
	assert_string_equal(info.name, "dots");
	assert_int_equal(dhcp_dots_parse_v4_area(trunc, sizeof(trunc), &info, &why),
			 DG_EINVAL);
	assert_non_null(strstr(why.text, "option 148 at offset 0 overruns"));
	assert_int_equal(dhcp_dots_parse_v4_area(trunc2, sizeof(trunc2), &info, &why),
			 DG_EINVAL);
	assert_non_null(strstr(why.text, "offset 6"));
	/* No DOTS option: empty result. */
	assert_int_equal(dhcp_dots_parse_v4_area(area, 8, &info, &why), 0);
	assert_false(info.has_name);
	assert_int_equal(info.n_addrs, 0);
}

static void test_v6_area(void **state)
{
	static const uint8_t area[] = {
		0, 23, 0, 0,				/* DNS servers, empty */
		0, 142, 0, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 1,
		0, 141, 0, 6, 4, 'd', 'o', 't', 's', 0,
		0, 142, 0, 16, 0xff, 2, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 1,
	};
	struct dhcp_dots_info info;
	struct dg_diag why;

	(void)state;
	assert_int_equal(dhcp_dots_parse_v6_area(area, sizeof(area), &info, &why), 0);
	assert_int_equal(info.n_addrs, 1);
	assert_int_equal(info.addrs[0][15], 1);
	assert_string_equal(info.name, "dots");
	assert_int_equal(info.n_ignored_instances, 1);
	assert_int_equal(dhcp_dots_parse_v6_area(area, sizeof(area) - 1, &info, &why),
			 DG_EINVAL);
	assert_non_null(strstr(why.text, "option 142 at offset 34 overruns"));
	assert_int_equal(dhcp_dots_parse_v6_area(area, 3, &info, &why), DG_EINVAL);
	assert_non_null(strstr(why.text, "header at offset 0 truncated"));
}

static void test_candidates(void **state)
{
	static const uint8_t a[8] = { 192, 0, 2, 1, 198, 51, 100, 7 };
	struct dhcp_dots_opt o[2] = {
		opt(DHCP_DOTS_V4_ADDRESS, a, 8),
		opt(DHCP_DOTS_V4_RI, fig4, FIG4_LEN),
	};
	struct dhcp_dots_info info;
	struct dhcp_dots_cand c[3];
	struct dg_diag why;
	char text[64];
	size_t n = 0;

	(void)state;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 2, &info, &why), 0);
	assert_int_equal(dhcp_dots_candidates(&info, "eth0", 1000, 3600, c, 3, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(c[0].kind, DHCP_DOTS_ADDR_V4);
	dhcp_dots_addr_text(&c[0], text, sizeof(text));
	assert_string_equal(text, "192.0.2.1");
	dhcp_dots_addr_text(&c[1], text, sizeof(text));
	assert_string_equal(text, "198.51.100.7");
	assert_int_equal(c[1].port, 4646);
	assert_int_equal(c[1].transport, DHCP_DOTS_TRANSPORT_ANY);
	/* With addresses the name is the reference identifier only. */
	assert_string_equal(c[1].name, "dots.example.com");
	assert_string_equal(c[1].ifname, "eth0");
	assert_int_equal(c[1].source, DHCP_DOTS_V4);
	assert_int_equal(c[1].expires, 4600);
	/* Does not fit: nothing appended. */
	assert_int_equal(dhcp_dots_candidates(&info, "eth0", 1000, 3600, c, 3, &n),
			 DG_ETOOBIG);
	assert_int_equal(n, 2);
	/* Name only: one candidate to resolve; infinite lifetime. */
	n = 0;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o + 1, 1, &info, &why), 0);
	assert_int_equal(dhcp_dots_candidates(&info, "eth1", 5, DHCP_DOTS_INFINITY,
					      c, 3, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].kind, DHCP_DOTS_ADDR_NONE);
	assert_string_equal(c[0].name, "dots.example.com");
	assert_int_equal(c[0].expires, INT64_MAX);
	/* Addresses only: the address is the identifier. */
	n = 0;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 1, &info, &why), 0);
	assert_int_equal(dhcp_dots_candidates(&info, "eth1", 5, 10, c, 3, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(c[0].name, "");
	/* Every address discarded: the name alone, to resolve. */
	n = 0;
	o[0] = opt(DHCP_DOTS_V4_ADDRESS, "\x7f\x00\x00\x01\xe0\x00\x00\x01", 8);
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 2, &info, &why), 0);
	assert_int_equal(info.n_discarded, 2);
	assert_int_equal(dhcp_dots_candidates(&info, "eth1", 5, 10, c, 3, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].kind, DHCP_DOTS_ADDR_NONE);
	assert_string_equal(c[0].name, "dots.example.com");
	/* Nothing at all: no candidate. */
	n = 0;
	assert_int_equal(dhcp_dots_parse(DHCP_DOTS_V4, o, 0, &info, &why), 0);
	assert_int_equal(dhcp_dots_candidates(&info, "eth1", 5, 10, c, 3, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(dhcp_dots_candidates(&info, "", 5, 10, c, 3, &n), DG_EINVAL);
	assert_int_equal(dhcp_dots_candidates(&info, "0123456789abcdef", 5, 10, c, 3, &n),
			 DG_EINVAL);
}

static void test_addr_text_v6(void **state)
{
	struct dhcp_dots_cand c = { .kind = DHCP_DOTS_ADDR_V6 };
	char text[64];
	static const struct {
		uint8_t a[16];
		const char *s;
	} v[] = {
		{ { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 }, "2001:db8::1" },
		{ { 0xfe, 0x80, [15] = 1 }, "fe80::1" },
		{ { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1 },
		  "2001:db8:0:1::1" },
		{ { 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1 },
		  "2001:db8:1:0:1::1" },
		{ { [10] = 0xff, 0xff, 192, 0, 2, 1 }, "::ffff:192.0.2.1" },
		{ { 0x20, 0x01, [14] = 0xab, 0xcd }, "2001::abcd" },
		{ { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, "100::" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memcpy(c.addr, v[i].a, 16);
		dhcp_dots_addr_text(&c, text, sizeof(text));
		assert_string_equal(text, v[i].s);
	}
}

static void test_unknown_family(void **state)
{
	(void)state;
	expect_reject((enum dhcp_dots_family)5, NULL, 0, DG_EINVAL, "family");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_figure4_name),
		cmocka_unit_test(test_name_errors),
		cmocka_unit_test(test_first_name_only),
		cmocka_unit_test(test_bad_ri_rejects_whole_lease),
		cmocka_unit_test(test_v6_address_lengths),
		cmocka_unit_test(test_v4_address_lengths),
		cmocka_unit_test(test_v4_concatenation),
		cmocka_unit_test(test_v6_first_instance_only),
		cmocka_unit_test(test_v4_filters),
		cmocka_unit_test(test_v6_filters),
		cmocka_unit_test(test_v4_area),
		cmocka_unit_test(test_v6_area),
		cmocka_unit_test(test_candidates),
		cmocka_unit_test(test_addr_text_v6),
		cmocka_unit_test(test_unknown_family),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
