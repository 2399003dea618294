/* test_dhcp_state.c: the DHCP hooks' state files (common/dhcp_state.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dhcp_state.h"

#define GOOD_V4 \
	"dotsgw-dhcp 1\n" \
	"interface eth0\n" \
	"family 4\n" \
	"reason BOUND\n" \
	"acquired 1763790000\n" \
	"lifetime 3600\n" \
	"option 148 c0000201c6336407\n" \
	"option 147 04646f7473076578616d706c6503636f6d00\n"

static struct dhcp_state st;

static int parse(const char *text, struct dg_diag *why)
{
	return dhcp_state_parse(text, strlen(text), &st, why);
}

static void test_good_v4(void **state)
{
	struct dhcp_dots_cand c[4];
	struct dhcp_dots_info info;
	struct dg_diag why;
	size_t n = 0;

	(void)state;
	assert_int_equal(parse(GOOD_V4, &why), 0);
	assert_string_equal(st.ifname, "eth0");
	assert_int_equal(st.family, DHCP_DOTS_V4);
	assert_string_equal(st.reason, "BOUND");
	assert_int_equal(st.acquired, 1763790000);
	assert_int_equal(st.lifetime, 3600);
	assert_int_equal(st.n_opts, 2);
	assert_int_equal(st.opts[0].code, 148);
	assert_int_equal(st.opts[0].len, 8);
	assert_int_equal(dhcp_state_candidates(&st, &info, c, 4, &n, &why), 0);
	assert_int_equal(n, 2);
	assert_string_equal(c[0].name, "dots.example.com");
	assert_memory_equal(c[1].addr, "\xc6\x33\x64\x07", 4);
	assert_int_equal(c[1].expires, 1763790000 + 3600);
	assert_string_equal(c[1].ifname, "eth0");
}

static void test_good_v6_upper_hex_and_empty(void **state)
{
	struct dhcp_dots_cand c[4];
	struct dg_diag why;
	size_t n = 0;

	(void)state;
	assert_int_equal(parse("dotsgw-dhcp 1\nfamily 6\ninterface veth-c.1\n"
			       "lifetime 4294967295\nacquired 0\n"
			       "option 142 20010DB8000000000000000000000001\n"
			       "option 142 -\n", &why), 0);
	assert_int_equal(st.n_opts, 2);
	assert_int_equal(st.opts[1].len, 0);
	assert_string_equal(st.reason, "");
	/* The second (empty) instance is ignored by §5.1.3. */
	assert_int_equal(dhcp_state_candidates(&st, NULL, c, 4, &n, &why), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].expires, INT64_MAX);
	assert_int_equal(c[0].kind, DHCP_DOTS_ADDR_V6);
}

static void test_malformed_files(void **state)
{
	static const struct {
		const char *text;
		const char *reason;
	} bad[] = {
		{ "", "empty" },
		{ "dotsgw-dhcp 1", "unterminated" },
		{ "dotsgw-dhcp 2\n", "line 1" },
		{ "dotsgw-dhcp 1 \n", "line 1" },
		{ "\ndotsgw-dhcp 1\n", "line 1" },
		{ "dotsgw-dhcp 1\r\n", "CR" },
		{ "dotsgw-dhcp 1\n", "missing interface" },
		{ "dotsgw-dhcp 1\ninterface eth0\nfamily 4\nacquired 1\n", "missing lifetime" },
		{ "dotsgw-dhcp 1\ninterface eth0\nfamily 4\nlifetime 1\n", "missing acquired" },
		{ "dotsgw-dhcp 1\ninterface eth0\nacquired 1\nlifetime 1\n", "missing family" },
		{ "dotsgw-dhcp 1\n\n", "line 2: unknown" },
		{ "dotsgw-dhcp 1\n# comment\n", "line 2: unknown" },
		{ "dotsgw-dhcp 1\ninterface  eth0\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\ninterface eth0 \n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\ninterface ../x\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\ninterface 0123456789abcdef\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\ninterface eth0\ninterface eth1\n", "line 3: repeated" },
		{ "dotsgw-dhcp 1\nfamily 5\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nfamily 44\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nacquired -1\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nacquired 01\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nacquired 253402300800\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nacquired 99999999999999999999999\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nlifetime 4294967296\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nlifetime 1e3\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nreason bound\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\nreason ABCDEFGHIJKLMNOPQ\n", "line 2: invalid" },
		{ "dotsgw-dhcp 1\noption 148\n", "line 2: option: expected" },
		{ "dotsgw-dhcp 1\noption 148 \n", "line 2: option 148: hex value of odd" },
		{ "dotsgw-dhcp 1\noption 148 abc\n", "line 2: option 148: hex value of odd" },
		{ "dotsgw-dhcp 1\noption 148 zz\n", "line 2: option 148: not hex" },
		{ "dotsgw-dhcp 1\noption 148 c0:00\n", "line 2: option 148: hex value of odd" },
		{ "dotsgw-dhcp 1\noption 148 c0 000\n", "line 2: option 148: not hex" },
		{ "dotsgw-dhcp 1\noption 0 00\n", "line 2: option: expected" },
		{ "dotsgw-dhcp 1\noption 65536 00\n", "line 2: option: expected" },
		{ "dotsgw-dhcp 1\noption x 00\n", "line 2: option: expected" },
		{ GOOD_V4 "option 141 00\n", "option 141 is not a DHCPv4 DOTS option" },
		{ GOOD_V4 "option 1 00\n", "option 1 is not a DHCPv4 DOTS option" },
		{ GOOD_V4 "family 4\n", "line 9: repeated" },
		{ GOOD_V4 "lifetime 1\n", "line 9: repeated" },
		{ GOOD_V4 "acquired 1\n", "line 9: repeated" },
		{ GOOD_V4 "reason RENEW\n", "line 9: repeated" },
	};
	struct dhcp_state before;

	(void)state;
	memset(&st, 0x5a, sizeof(st));
	before = st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dg_diag why = { "" };
		int rc = parse(bad[i].text, &why);

		if (rc != DG_EINVAL && rc != DG_ETOOBIG)
			fail_msg("case %zu: rc %d", i, rc);
		if (!strstr(why.text, bad[i].reason))
			fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, why.text,
				 bad[i].reason);
		/* Nothing partially applied. */
		assert_memory_equal(&st, &before, sizeof(st));
	}
	{
		/* A NUL inside the length given. */
		struct dg_diag why;
		static const char nul[] = "dotsgw-dhcp 1\ninterface e\0th0\n";

		assert_int_equal(dhcp_state_parse(nul, sizeof(nul) - 1, &st, &why), DG_EINVAL);
		assert_non_null(strstr(why.text, "NUL"));
	}
}

static void test_limits(void **state)
{
	char *text = malloc(DHCP_STATE_MAX + 64);
	struct dg_diag why;
	size_t len;

	(void)state;
	/* 33 options: one more than DHCP_DOTS_MAX_OPTS. */
	len = (size_t)sprintf(text, "dotsgw-dhcp 1\n");
	for (int i = 0; i <= DHCP_DOTS_MAX_OPTS; i++)
		len += (size_t)sprintf(text + len, "option 148 c0000201\n");
	assert_int_equal(dhcp_state_parse(text, len, &st, &why), DG_ETOOBIG);
	assert_non_null(strstr(why.text, "line 34: more than 32 options"));
	/* Larger than the file limit. */
	memset(text, 'a', DHCP_STATE_MAX + 1);
	text[DHCP_STATE_MAX] = '\n';
	assert_int_equal(dhcp_state_parse(text, DHCP_STATE_MAX + 1, &st, &why), DG_ETOOBIG);
	free(text);
}

static void test_option_content_rejected(void **state)
{
	struct dhcp_dots_cand c[4];
	struct dhcp_dots_info info;
	struct dg_diag why;
	size_t n = 1;

	(void)state;
	/* Well-formed file, malformed option: refused by the RFC rules, the
	 * candidate list untouched. */
	assert_int_equal(parse("dotsgw-dhcp 1\ninterface eth0\nfamily 4\nacquired 1\n"
			       "lifetime 1\noption 148 c00002\n", &why), 0);
	memset(&info, 0x11, sizeof(info));
	assert_int_equal(dhcp_state_candidates(&st, &info, c, 4, &n, &why), DG_EINVAL);
	assert_non_null(strstr(why.text, "option 148: length 3"));
	assert_int_equal(n, 1);
	assert_int_equal(info.n_addrs, 0x1111111111111111ULL);
	/* Full list. */
	assert_int_equal(parse(GOOD_V4, &why), 0);
	n = 3;
	assert_int_equal(dhcp_state_candidates(&st, NULL, c, 4, &n, &why), DG_ETOOBIG);
	assert_int_equal(n, 3);
}

static void test_filenames(void **state)
{
	char ifname[DHCP_DOTS_IFNAME_SIZE];
	enum dhcp_dots_family fam;

	(void)state;
	assert_int_equal(dhcp_state_filename("eth0.v4", ifname, &fam), 0);
	assert_string_equal(ifname, "eth0");
	assert_int_equal(fam, DHCP_DOTS_V4);
	assert_int_equal(dhcp_state_filename("eth0.100.v6", ifname, &fam), 0);
	assert_string_equal(ifname, "eth0.100");
	assert_int_equal(fam, DHCP_DOTS_V6);
	assert_int_equal(dhcp_state_filename("0123456789abcde.v6", ifname, &fam), 0);
	static const char *const bad[] = {
		".v4", "eth0.v5", "eth0.V4", "eth0v4", ".eth0.v4", ".eth0.v4.tmp.12",
		"eth0.v4.tmp", "-x.v4", "e/x.v4", "e x.v4", "0123456789abcdef.v4", "",
		"eth0.v", "..v4",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (dhcp_state_filename(bad[i], ifname, &fam) != DG_EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_v4),
		cmocka_unit_test(test_good_v6_upper_hex_and_empty),
		cmocka_unit_test(test_malformed_files),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_option_content_rejected),
		cmocka_unit_test(test_filenames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
