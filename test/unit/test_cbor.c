/*
 * test_cbor.c: unit tests for common/cbor.c.
 *
 * CBOR vectors are written as hex with 'quoted' text runs copied verbatim,
 * e.g. "74 '2001:db8:6401::1/128'", so each byte stays readable.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbor.h"

#define MS CBOR_MSG_MITIGATION
#define SC CBOR_MSG_CONFIG
#define P20 "'2001:db8:6401::1/128'" /* 20 bytes: head 74 */

/* ---- Test helpers ---------------------------------------------------------- */

/* Test-only: hex pairs and 'verbatim text' to bytes. */
static size_t hx(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*s) {
		if (*s == ' ' || *s == '\n') {
			s++;
		} else if (*s == '\'') {
			for (s++; *s && *s != '\''; s++) {
				assert_true(n < cap);
				out[n++] = (uint8_t)*s;
			}
			assert_int_equal(*s, '\'');
			s++;
		} else {
			unsigned v;

			assert_int_equal(sscanf(s, "%2x", &v), 1);
			assert_true(n < cap);
			out[n++] = (uint8_t)v;
			s += 2;
		}
	}
	return n;
}

struct bytes {
	uint8_t b[2048];
	size_t n;
};

static struct bytes *mkbytes(const char *hex)
{
	struct bytes *b = malloc(sizeof(*b));

	assert_non_null(b);
	b->n = hx(hex, b->b, sizeof(b->b));
	return b;
}

/* "a/b/0/c": members and array indexes (borrowed). */
static json_t *jget(json_t *root, const char *path)
{
	char buf[256], *seg, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (seg = strtok_r(buf, "/", &save); seg && root;
	     seg = strtok_r(NULL, "/", &save)) {
		if (json_is_array(root))
			root = json_array_get(root, strtoul(seg, NULL, 10));
		else
			root = json_object_get(root, seg);
	}
	return root;
}

static const char *jstr(json_t *root, const char *path)
{
	json_t *v = jget(root, path);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

static json_int_t jint(json_t *root, const char *path)
{
	json_t *v = jget(root, path);

	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

/* Decodes a canonical vector, re-encodes it and demands the same bytes.
 * Returns the model for value checks. */
static json_t *roundtrip(const char *hex)
{
	struct bytes *in = mkbytes(hex);
	struct dg_diag d = { "" };
	json_t *m = NULL, *m2 = NULL;
	uint8_t *out = NULL;
	size_t len = 0;
	int rc;

	rc = cbor_decode(in->b, in->n, &m, &d);
	if (rc)
		print_error("decode: %s\n", d.text);
	assert_int_equal(rc, 0);
	assert_non_null(m);
	rc = cbor_encode(m, &out, &len, &d);
	if (rc)
		print_error("encode: %s\n", d.text);
	assert_int_equal(rc, 0);
	assert_int_equal(len, in->n);
	assert_memory_equal(out, in->b, len);
	/* And the model survives a trip through JSON text. */
	{
		char *txt = json_dumps(m, 0);
		json_t *back = json_loads(txt, 0, NULL);

		assert_true(json_equal(m, back));
		json_decref(back);
		free(txt);
	}
	assert_int_equal(cbor_decode(out, len, &m2, &d), 0);
	assert_true(json_equal(m, m2));
	json_decref(m2);
	free(out);
	free(in);
	return m;
}

static void expect_fail(const char *hex, const char *substr)
{
	struct bytes *in = mkbytes(hex);
	struct dg_diag d = { "" };
	json_t *m = (json_t *)1;

	if (!substr)
		substr = ""; /* any diagnostic will do */
	assert_int_equal(cbor_decode(in->b, in->n, &m, &d), DG_EINVAL);
	assert_null(m);
	if (!strstr(d.text, substr))
		print_error("diag \"%s\" lacks \"%s\"\n", d.text, substr);
	assert_non_null(strstr(d.text, substr));
	free(in);
}

static json_t *decode_ok(const char *hex)
{
	struct bytes *in = mkbytes(hex);
	struct dg_diag d = { "" };
	json_t *m = NULL;
	int rc = cbor_decode(in->b, in->n, &m, &d);

	if (rc)
		print_error("decode: %s\n", d.text);
	assert_int_equal(rc, 0);
	free(in);
	return m;
}

/* Encodes a JSON text and compares with the expected hex. */
static void encode_expect(const char *json, const char *hex)
{
	struct bytes *want = mkbytes(hex);
	json_t *m = json_loads(json, 0, NULL);
	struct dg_diag d = { "" };
	uint8_t *out = NULL;
	size_t len = 0;
	int rc;

	assert_non_null(m);
	rc = cbor_encode(m, &out, &len, &d);
	if (rc)
		print_error("encode: %s\n", d.text);
	assert_int_equal(rc, 0);
	assert_int_equal(len, want->n);
	assert_memory_equal(out, want->b, len);
	free(out);
	json_decref(m);
	free(want);
}

static void encode_fail(const char *json, const char *substr)
{
	json_t *m = json_loads(json, JSON_ALLOW_NUL, NULL);
	struct dg_diag d = { "" };
	uint8_t *out = (uint8_t *)1;
	size_t len = 7;

	assert_non_null(m);
	assert_int_equal(cbor_encode(m, &out, &len, &d), DG_EINVAL);
	assert_null(out);
	assert_int_equal(len, 0);
	if (!strstr(d.text, substr))
		print_error("diag \"%s\" lacks \"%s\"\n", d.text, substr);
	assert_non_null(strstr(d.text, substr));
	json_decref(m);
}

/* ---- Canonical vectors, one per message type ------------------------------- */

/* Mitigation request (RFC 9132 §4.4.1.1). */
static const char v_request[] =
	"a1 01 a1 02 81 a7"                   /* {1:{2:[{ 7 members */
	" 06 82 74" P20 " 74 '2001:db8:6401::2/128'" /* target-prefix */
	" 07 82 a1 08 18 50 a2 08 19 01bb 09 19 01be" /* 80, 443-446 */
	" 0a 81 06"                           /* target-protocol [6] */
	" 0b 81 6f 'www.example.com'"         /* target-fqdn */
	" 0d 81 66 'https1'"                  /* alias-name */
	" 0e 19 0e10"                         /* lifetime 3600 */
	" 18 2d f4";                          /* trigger-mitigation false */

/* Mitigation status (RFC 9132 §4.4.2): uint64 leaves become strings. */
static const char v_response[] =
	"a1 01 a1 02 81 a9"
	" 05 18 7b"                           /* mid 123 */
	" 06 81 74" P20
	" 0e 19 07d0"                         /* lifetime 2000 */
	" 0f 1a 59df7bc2"                     /* mitigation-start */
	" 10 02"                              /* status 2 */
	" 18 19 1b 00000002540be400"          /* bytes-dropped 1e10 */
	" 18 1a 1a 00014c08"                  /* bps-dropped 85000 */
	" 18 1b 19 c350"                      /* pkts-dropped 50000 */
	" 18 1c 19 0258";                     /* pps-dropped 600 */

/* Efficacy update (RFC 9132 §4.4.3), with lifetime -1. */
static const char v_efficacy[] =
	"a1 01 a1 02 81 a3 06 81 74" P20 " 0e 20 18 1d 01";

/* RFC 9133 acl-list (53) in a request. */
static const char v_acl_request[] =
	"a1 01 a1 02 81 a3 06 81 74" P20 " 0e 19 0e10"
	" 18 35 81 a2 17 6e 'an-accept-list' 18 34 02";

/* 4.09 body (RFC 9132 §4.4.1.3) with conflict-scope acl-list (22) + mid. */
static const char v_conflict[] =
	"a1 01 a1 02 81 a2 05 0c"             /* mid 12 */
	" 11 a4 12 01 13 02 14 18 78"         /* status 1, cause 2, retry 120 */
	" 15 a3 05 0d"                        /* conflict-scope: mid 13 */
	" 06 81 72 '2001:db8:6401::/48'"
	" 16 81 a2 17 6e 'an-accept-list' 18 18 6d 'ipv6-acl-type'";

/* GET /config answer (RFC 9132 §4.5.1): both sets, min/max/current. */
#define CONFIG_SET(hb_cur)                                                 \
	" a6 18 21 a3 18 22 18 f0 18 23 0f 18 24 " hb_cur                  \
	" 18 25 a3 18 22 14 18 23 03 18 24 0f"                             \
	" 18 26 a3 18 22 0f 18 23 02 18 24 03"                             \
	" 18 27 a3 18 29 c4 82 21 19 0bb8 18 2a c4 82 21 18 64"            \
	" 18 2b c4 82 21 18 c8"                                            \
	" 18 28 a3 18 29 c4 82 21 19 0190 18 2a c4 82 21 18 6e"            \
	" 18 2b c4 82 21 18 96"                                            \
	" 18 32 a3 18 22 1a 000186a0 18 23 05 18 24 05"
static const char v_config_get[] =
	"a1 18 1e a2 18 20" CONFIG_SET("18 1e") " 18 2c" CONFIG_SET("18 f0");

/* PUT /config (RFC 9132 §4.5.2): current values only. */
static const char v_config_put[] =
	"a1 18 1e a2 18 20 a6"
	" 18 21 a1 18 24 18 1e 18 25 a1 18 24 0f 18 26 a1 18 24 03"
	" 18 27 a1 18 2b c4 82 21 18 c8 18 28 a1 18 2b c4 82 21 18 96"
	" 18 32 a1 18 24 05"
	" 18 2c a2 18 21 a1 18 24 18 f0 18 27 a1 18 2b c4 82 21 18 c8";

/* Heartbeat (RFC 9132 §4.7). */
static const char v_heartbeat[] = "a1 18 31 a1 18 33 f5";

/* 5.03 redirection body (RFC 9132 §4.6). */
static const char v_redirect[] =
	"a1 18 2e a2 18 2f 72 'alt-server.example'"
	" 18 30 82 70 '2001:db8:6401::2' 69 '192.0.2.1'";

/* Call home (RFC 9066) source ranges in a scope entry. */
static const char v_call_home[] =
	"a1 01 a1 02 81 a5 06 81 74" P20 " 0e 19 0e10"
	" 19 8000 81 6a '1.2.3.0/24'"
	" 19 8001 81 a2 08 18 50 09 18 5a"
	" 19 8002 81 a2 19 8003 00 19 8004 03";

/* cbor-keys-notes.md §3 worked example (RFC 9132 Figure 8 shape). */
static const char v_rfc_example[] =
	"a1 01 a1 02 81 a3 06 81 74" P20 " 0a 81 06 0e 19 0e10";

static const char *const all_vectors[] = {
	v_request, v_response, v_efficacy, v_acl_request, v_conflict,
	v_config_get, v_config_put, v_heartbeat, v_redirect, v_call_home,
	v_rfc_example,
};

/* ---- Round trips ------------------------------------------------------------ */

static void test_mitigation_request(void **state)
{
	json_t *m = roundtrip(v_request);

	(void)state;
	assert_string_equal(jstr(m, MS "/scope/0/target-prefix/1"),
			    "2001:db8:6401::2/128");
	assert_int_equal(jint(m, MS "/scope/0/target-port-range/0/lower-port"),
			 80);
	assert_null(jget(m, MS "/scope/0/target-port-range/0/upper-port"));
	assert_int_equal(jint(m, MS "/scope/0/target-port-range/1/upper-port"),
			 446);
	assert_int_equal(jint(m, MS "/scope/0/target-protocol/0"), 6);
	assert_string_equal(jstr(m, MS "/scope/0/target-fqdn/0"),
			    "www.example.com");
	assert_string_equal(jstr(m, MS "/scope/0/alias-name/0"), "https1");
	assert_int_equal(jint(m, MS "/scope/0/lifetime"), 3600);
	assert_true(json_is_false(jget(m, MS "/scope/0/trigger-mitigation")));
	json_decref(m);
}

static void test_mitigation_response(void **state)
{
	json_t *m = roundtrip(v_response);

	(void)state;
	assert_int_equal(jint(m, MS "/scope/0/mid"), 123);
	assert_string_equal(jstr(m, MS "/scope/0/mitigation-start"),
			    "1507818434");
	assert_string_equal(jstr(m, MS "/scope/0/status"),
			    "attack-successfully-mitigated");
	assert_string_equal(jstr(m, MS "/scope/0/bytes-dropped"),
			    "10000000000");
	assert_string_equal(jstr(m, MS "/scope/0/bps-dropped"), "85000");
	assert_string_equal(jstr(m, MS "/scope/0/pkts-dropped"), "50000");
	assert_string_equal(jstr(m, MS "/scope/0/pps-dropped"), "600");
	json_decref(m);
}

static void test_efficacy_update(void **state)
{
	json_t *m = roundtrip(v_efficacy);

	(void)state;
	assert_int_equal(jint(m, MS "/scope/0/lifetime"), -1);
	assert_string_equal(jstr(m, MS "/scope/0/attack-status"),
			    "under-attack");
	json_decref(m);
}

static void test_acl_list_request(void **state)
{
	json_t *m = roundtrip(v_acl_request);
	const char *acl = MS "/scope/0/ietf-dots-signal-control:acl-list/0";
	char p[160];

	(void)state;
	snprintf(p, sizeof(p), "%s/acl-name", acl);
	assert_string_equal(jstr(m, p), "an-accept-list");
	snprintf(p, sizeof(p), "%s/activation-type", acl);
	assert_string_equal(jstr(m, p), "immediate");
	json_decref(m);
}

static void test_conflict_response(void **state)
{
	json_t *m = roundtrip(v_conflict);
	const char *ci = MS "/scope/0/conflict-information";
	char p[160];

	(void)state;
	snprintf(p, sizeof(p), "%s/conflict-status", ci);
	assert_string_equal(jstr(m, p), "request-inactive-other-active");
	snprintf(p, sizeof(p), "%s/conflict-cause", ci);
	assert_string_equal(jstr(m, p), "conflict-with-acceptlist");
	snprintf(p, sizeof(p), "%s/retry-timer", ci);
	assert_int_equal(jint(m, p), 120);
	snprintf(p, sizeof(p), "%s/conflict-scope/mid", ci);
	assert_int_equal(jint(m, p), 13);
	snprintf(p, sizeof(p), "%s/conflict-scope/acl-list/0/acl-type", ci);
	assert_string_equal(jstr(m, p), "ipv6-acl-type");
	snprintf(p, sizeof(p), "%s/conflict-scope/target-prefix/0", ci);
	assert_string_equal(jstr(m, p), "2001:db8:6401::/48");
	json_decref(m);
}

static void test_config_get(void **state)
{
	json_t *m = roundtrip(v_config_get);
	const char *mc = SC "/mitigating-config", *ic = SC "/idle-config";
	char p[160];

	(void)state;
	snprintf(p, sizeof(p), "%s/heartbeat-interval/max-value", mc);
	assert_int_equal(jint(m, p), 240);
	snprintf(p, sizeof(p), "%s/heartbeat-interval/min-value", mc);
	assert_int_equal(jint(m, p), 15);
	snprintf(p, sizeof(p), "%s/heartbeat-interval/current-value", mc);
	assert_int_equal(jint(m, p), 30);
	snprintf(p, sizeof(p), "%s/heartbeat-interval/current-value", ic);
	assert_int_equal(jint(m, p), 240);
	snprintf(p, sizeof(p), "%s/probing-rate/max-value", ic);
	assert_int_equal(jint(m, p), 100000);
	snprintf(p, sizeof(p), "%s/ack-timeout/max-value-decimal", mc);
	assert_string_equal(jstr(m, p), "30.00");
	snprintf(p, sizeof(p), "%s/ack-timeout/current-value-decimal", mc);
	assert_string_equal(jstr(m, p), "2.00");
	snprintf(p, sizeof(p), "%s/ack-random-factor/min-value-decimal", ic);
	assert_string_equal(jstr(m, p), "1.10");
	snprintf(p, sizeof(p), "%s/ack-random-factor/current-value-decimal",
		 ic);
	assert_string_equal(jstr(m, p), "1.50");
	json_decref(m);
}

static void test_config_put(void **state)
{
	json_t *m = roundtrip(v_config_put);

	(void)state;
	assert_int_equal(jint(m, SC "/mitigating-config/missing-hb-allowed/"
				    "current-value"), 15);
	assert_null(jget(m, SC "/mitigating-config/missing-hb-allowed/"
			    "max-value"));
	assert_string_equal(jstr(m, SC "/idle-config/ack-timeout/"
				    "current-value-decimal"), "2.00");
	assert_null(jget(m, SC "/idle-config/probing-rate"));
	json_decref(m);
}

static void test_heartbeat(void **state)
{
	json_t *m = roundtrip(v_heartbeat);

	(void)state;
	assert_true(json_is_true(jget(m, CBOR_MSG_HEARTBEAT
				      "/peer-hb-status")));
	json_decref(m);
}

static void test_redirect(void **state)
{
	json_t *m = roundtrip(v_redirect);

	(void)state;
	assert_string_equal(jstr(m, CBOR_MSG_REDIRECT "/alt-server"),
			    "alt-server.example");
	assert_string_equal(jstr(m, CBOR_MSG_REDIRECT "/alt-server-record/1"),
			    "192.0.2.1");
	json_decref(m);
}

static void test_call_home(void **state)
{
	json_t *m = roundtrip(v_call_home);

	(void)state;
	assert_string_equal(jstr(m, MS "/scope/0/ietf-dots-call-home:"
				    "source-prefix/0"), "1.2.3.0/24");
	assert_int_equal(jint(m, MS "/scope/0/ietf-dots-call-home:"
				 "source-port-range/0/upper-port"), 90);
	assert_int_equal(jint(m, MS "/scope/0/ietf-dots-call-home:"
				 "source-icmp-type-range/0/lower-type"), 0);
	assert_int_equal(jint(m, MS "/scope/0/ietf-dots-call-home:"
				 "source-icmp-type-range/0/upper-type"), 3);
	json_decref(m);
}

static void test_rfc_example(void **state)
{
	struct bytes *b = mkbytes(v_rfc_example);
	json_t *m = roundtrip(v_rfc_example);

	(void)state;
	/* The header bytes spelled out in cbor-keys-notes.md §3. */
	assert_int_equal(b->n, 9 + 20 + 7);
	assert_memory_equal(b->b, "\xa1\x01\xa1\x02\x81\xa3\x06\x81\x74", 9);
	assert_memory_equal(b->b + 29, "\x0a\x81\x06\x0e\x19\x0e\x10", 7);
	assert_string_equal(jstr(m, MS "/scope/0/target-prefix/0"),
			    "2001:db8:6401::1/128");
	assert_int_equal(json_array_size(jget(m, MS "/scope/0/target-prefix")),
			 1);
	assert_int_equal(jint(m, MS "/scope/0/target-protocol/0"), 6);
	assert_int_equal(jint(m, MS "/scope/0/lifetime"), 3600);
	assert_int_equal(json_object_size(jget(m, MS "/scope/0")), 3);
	json_decref(m);
	free(b);
}

/* JSON text -> CBOR -> JSON gives the same model. */
static void test_json_roundtrip(void **state)
{
	static const char *const texts[] = {
		"{\"" MS "\":{\"scope\":[{\"target-prefix\":[\"192.0.2.0/24\"],"
		"\"target-port-range\":[{\"lower-port\":53,\"upper-port\":"
		"53}],\"target-uri\":[\"https://example.com/a\"],"
		"\"lifetime\":-1,\"trigger-mitigation\":true}]}}",
		"{\"" MS "\":{\"scope\":[{\"mid\":4294967295,\"lifetime\":0,"
		"\"mitigation-start\":\"18446744073709551615\","
		"\"status\":\"attack-mitigation-signal-loss\","
		"\"bytes-dropped\":\"0\",\"pps-dropped\":\"24\","
		"\"conflict-information\":{\"conflict-cause\":"
		"\"cuid-collision\"}}]}}",
		"{\"" MS "\":{\"scope\":[{\"alias-name\":[\"caf\xc3\xa9 \xe2"
		"\x82\xac \xf0\x9f\x98\x80\"],\"lifetime\":4294967295,"
		"\"attack-status\":\"attack-successfully-mitigated\","
		"\"ietf-dots-signal-control:acl-list\":[{\"acl-name\":\"x\","
		"\"activation-type\":\"deactivate\"}],"
		"\"ietf-dots-call-home:source-icmp-type-range\":"
		"[{\"lower-type\":255}]}]}}",
		"{\"" MS "\":{\"scope\":[{\"mid\":7,\"conflict-information\":"
		"{\"conflict-status\":\"all-requests-inactive\","
		"\"conflict-cause\":\"overlapping-pipes\",\"conflict-scope\":"
		"{\"target-fqdn\":[\"a.example\"],\"target-port-range\":"
		"[{\"lower-port\":65535}],\"target-protocol\":[17,255],"
		"\"acl-list\":[{\"acl-name\":\"n\",\"acl-type\":\"t\"}]}}}]}}",
		"{\"" SC "\":{\"idle-config\":{\"ack-random-factor\":"
		"{\"current-value-decimal\":\"0.05\",\"min-value-decimal\":"
		"\"-92233720368547758.08\",\"max-value-decimal\":"
		"\"92233720368547758.07\"},\"max-retransmit\":{\"min-value\":0}},"
		"\"mitigating-config\":{\"ack-timeout\":{\"min-value-decimal\":"
		"\"-1.25\"}}}}",
		"{\"" CBOR_MSG_HEARTBEAT "\":{\"peer-hb-status\":false}}",
		"{\"" CBOR_MSG_REDIRECT "\":{\"alt-server-record\":[\"::1\"],"
		"\"alt-server\":\"x.example\"}}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_error_t err;
		json_t *m = json_loads(texts[i], 0, &err), *back = NULL;
		struct dg_diag d = { "" };
		uint8_t *buf = NULL;
		size_t len = 0;
		int rc;

		if (!m)
			print_error("json %zu: %s\n", i, err.text);
		assert_non_null(m);
		rc = cbor_encode(m, &buf, &len, &d);
		if (rc)
			print_error("encode %zu: %s\n", i, d.text);
		assert_int_equal(rc, 0);
		rc = cbor_decode(buf, len, &back, &d);
		if (rc)
			print_error("decode %zu: %s\n", i, d.text);
		assert_int_equal(rc, 0);
		assert_true(json_equal(m, back));
		json_decref(back);
		json_decref(m);
		free(buf);
	}
}

/* User convenience on encode: numbers for uint64/decimal, enum integers;
 * the decoder answers with the canonical strings. */
static void test_encode_convenience(void **state)
{
	json_t *m;

	(void)state;
	encode_expect("{\"" SC "\":{\"idle-config\":{\"ack-random-factor\":"
		      "{\"current-value-decimal\":1.5}}}}",
		      "a1 18 1e a1 18 2c a1 18 28 a1 18 2b c4 82 21 18 96");
	encode_expect("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		      "{\"current-value-decimal\":2,"
		      "\"max-value-decimal\":\"30\","
		      "\"min-value-decimal\":\"1.5\"}}}}",
		      "a1 18 1e a1 18 2c a1 18 27 a3 18 2b c4 82 21 18 c8"
		      " 18 29 c4 82 21 19 0bb8 18 2a c4 82 21 18 96");
	/* Negative decimal: mantissa is a negative integer. */
	encode_expect("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		      "{\"current-value-decimal\":-0.25}}}}",
		      "a1 18 1e a1 18 2c a1 18 27 a1 18 2b c4 82 21 38 18");
	encode_expect("{\"" MS "\":{\"scope\":[{\"mitigation-start\":"
		      "1507818434,\"bytes-dropped\":\"10000000000\","
		      "\"status\":3,\"lifetime\":-1}]}}",
		      "a1 01 a1 02 81 a4 0f 1a 59df7bc2"
		      " 18 19 1b 00000002540be400 10 03 0e 20");
	m = decode_ok("a1 01 a1 02 81 a2 0f 1a 59df7bc2 10 03");
	assert_string_equal(jstr(m, MS "/scope/0/mitigation-start"),
			    "1507818434");
	assert_string_equal(jstr(m, MS "/scope/0/status"), "attack-stopped");
	json_decref(m);
	encode_expect("{\"" SC "\":{}}", "a1 18 1e a0");
}

/* Any exponent is fine when the value has at most 2 fraction digits. */
static void test_decimal_decode(void **state)
{
	static const struct {
		const char *hex, *want;
	} cases[] = {
		{ "c4 82 20 0f", "1.50" },          /* [-1, 15] */
		{ "c4 82 21 18 96", "1.50" },       /* [-2, 150] */
		{ "c4 82 22 19 05dc", "1.50" },     /* [-3, 1500] */
		{ "c4 82 00 03", "3.00" },          /* [0, 3] */
		{ "c4 82 01 03", "30.00" },         /* [1, 3] */
		{ "c4 82 21 00", "0.00" },
		{ "c4 82 21 38 18", "-0.25" },      /* [-2, -25] */
		{ "c4 82 3b 7fffffffffffffff 00", "0.00" }, /* 0 * 10^-huge */
		{ "c4 9f 21 18 96 ff", "1.50" },    /* indefinite array */
	};
	char hex[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *m;

		snprintf(hex, sizeof(hex),
			 "a1 18 1e a1 18 20 a1 18 27 a1 18 2b %s", cases[i].hex);
		m = decode_ok(hex);
		assert_string_equal(jstr(m, SC "/mitigating-config/ack-timeout/"
					    "current-value-decimal"),
				    cases[i].want);
		json_decref(m);
	}
}

static void test_lifetime_minus_one(void **state)
{
	json_t *m = roundtrip("a1 01 a1 02 81 a2 06 81 74" P20 " 0e 20");

	(void)state;
	assert_int_equal(jint(m, MS "/scope/0/lifetime"), -1);
	json_decref(m);
	encode_expect("{\"" MS "\":{\"scope\":[{\"lifetime\":-1}]}}",
		      "a1 01 a1 02 81 a1 0e 20");
}

/* RFC 9132 §6: unknown comprehension-optional keys are skipped. */
static void test_optional_key_skipped(void **state)
{
	json_t *m;
	uint8_t *out = NULL;
	size_t len = 0;
	struct bytes *want = mkbytes("a1 01 a1 02 81 a1 0e 19 0e10");

	(void)state;
	m = decode_ok("a1 01 a1 02 81 a5 0e 19 0e10"
		      " 18 c8 a2 18 80 c4 82 21 01 63 'abc' 80" /* 200: {} */
		      " 19 4000 f9 3c00"                    /* 16384: 1.0 */
		      " 1a 00010000 f6"                     /* 65536: null */
		      " 19 c000 5f 41 00 ff");              /* 49152: h'' */
	assert_int_equal(json_object_size(jget(m, MS "/scope/0")), 1);
	assert_int_equal(cbor_encode(m, &out, &len, NULL), 0);
	assert_int_equal(len, want->n);
	assert_memory_equal(out, want->b, len);
	free(out);
	free(want);
	json_decref(m);
	/* Telemetry (203) at the top level is skipped too, next to a type. */
	m = decode_ok("a2 18 cb a0 18 31 a1 18 33 f4");
	assert_int_equal(json_object_size(m), 1);
	assert_true(json_is_false(jget(m, CBOR_MSG_HEARTBEAT
				       "/peer-hb-status")));
	json_decref(m);
}

/* Indefinite lengths are accepted on decode, never produced. */
static void test_indefinite_decode(void **state)
{
	struct bytes *want = mkbytes(v_rfc_example);
	json_t *m;
	uint8_t *out = NULL;
	size_t len = 0;

	(void)state;
	m = decode_ok("bf 01 bf 02 9f bf 06 9f 7f 68 '2001:db8' 6c ':6401::1/128'"
		      " ff ff 0a 9f 06 ff 0e 19 0e10 ff ff ff ff");
	assert_string_equal(jstr(m, MS "/scope/0/target-prefix/0"),
			    "2001:db8:6401::1/128");
	assert_int_equal(cbor_encode(m, &out, &len, NULL), 0);
	assert_int_equal(len, want->n);
	assert_memory_equal(out, want->b, len);
	free(out);
	free(want);
	json_decref(m);
	/* Empty indefinite text, and non-shortest heads, are fine too. */
	m = decode_ok("a1 18 2e a1 18 2f 7f ff");
	assert_string_equal(jstr(m, CBOR_MSG_REDIRECT "/alt-server"), "");
	json_decref(m);
	m = decode_ok("a1 01 a1 02 81 a1 0e 1b 0000000000000e10");
	assert_int_equal(jint(m, MS "/scope/0/lifetime"), 3600);
	json_decref(m);
}

/* ---- Decode errors ----------------------------------------------------------- */

static void test_truncated_every_prefix(void **state)
{
	(void)state;
	for (size_t v = 0; v < sizeof(all_vectors) / sizeof(all_vectors[0]);
	     v++) {
		struct bytes *b = mkbytes(all_vectors[v]);

		for (size_t n = 0; n < b->n; n++) {
			struct dg_diag d = { "" };
			json_t *m = (json_t *)1;

			/* Exact-size heap copy so ASan sees any overread. */
			uint8_t *p = malloc(n ? n : 1);

			assert_non_null(p);
			memcpy(p, b->b, n);
			assert_int_equal(cbor_decode(p, n, &m, &d), DG_EINVAL);
			assert_null(m);
			assert_true(strstr(d.text, "truncated CBOR") ||
				    strstr(d.text, "exceeds input"));
			assert_non_null(strstr(d.text, "offset "));
			free(p);
		}
		free(b);
	}
	expect_fail("", "offset 0: truncated CBOR");
}

static void test_trailing_byte(void **state)
{
	(void)state;
	expect_fail("a1 18 31 a1 18 33 f5 00",
		    "offset 7: trailing bytes");
}

static void test_depth_bomb(void **state)
{
	char hex[1024] = "a1 01 a1 02 81 a2 0e 01 18 c8 "; /* 200: [[[... */
	char *p = hex + strlen(hex);

	(void)state;
	for (int i = 0; i < 100; i++, p += 3)
		memcpy(p, "81 ", 3);
	memcpy(p, "00", 3);
	expect_fail(hex, "nesting too deep");
	/* A chain of tags nests as well. */
	p = hex + strlen("a1 01 a1 02 81 a2 0e 01 18 c8 ");
	for (int i = 0; i < 100; i++)
		memcpy(p + 3 * i, "c6 ", 3);
	expect_fail(hex, "nesting too deep");
	/* The same bomb as a whole message is not even a map. */
	memset(hex, 0, sizeof(hex));
	for (int i = 0; i < 100; i++)
		memcpy(hex + 3 * i, "81 ", 3);
	hex[300] = '0';
	hex[301] = '0';
	expect_fail(hex, "top level: expected map, got array");
	/* 16 levels is the limit: 4 used up to the scope entry, 12 more. */
	memset(hex, 0, sizeof(hex));
	strcpy(hex, "a1 01 a1 02 81 a2 0e 01 18 c8 ");
	for (int i = 0; i < 12; i++)
		strcat(hex, "81 ");
	strcat(hex, "00");
	json_decref(decode_ok(hex));
	hex[strlen(hex) - 2] = '\0';
	strcat(hex, "81 00");
	expect_fail(hex, "nesting too deep");
}

static void test_huge_length(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a1 06 81 7b ffffffffffffffff 'x'",
		    "declared length exceeds input");
	expect_fail("a1 01 a1 02 9b 00000000ffffffff a0",
		    "declared length exceeds input");
	expect_fail("a1 01 ba 7fffffff 02 80",
		    "declared length exceeds input");
	/* Inside a skipped item as well. */
	expect_fail("a1 01 a1 02 81 a1 18 c8 5a 80000000",
		    "declared length exceeds input");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a2 0e 01 0e 02",
		    "mitigation-scope.scope[0]: duplicate key 14 (lifetime)");
	/* Skipped keys may not repeat either. */
	expect_fail("a1 01 a1 02 81 a3 18 c8 01 0e 01 18 c8 02",
		    "duplicate key 200");
	expect_fail("a2 18 31 a1 18 33 f5 18 31 a1 18 33 f5",
		    "duplicate key 49");
}

static void test_text_map_key(void **state)
{
	(void)state;
	expect_fail("a1 70 'mitigation-scope' a0",
		    "map key must be an unsigned integer, got text string");
	expect_fail("a1 01 a1 21 a0",
		    "map key must be an unsigned integer, got negative");
}

static void test_unknown_required_key(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a2 0e 01 18 63 01",
		    "mitigation-scope.scope[0]: key 99: unknown comprehension-"
		    "required attribute in scope entry");
	expect_fail("a1 01 a1 02 81 a1 19 0100 01", "key 256: unknown");
	expect_fail("a1 01 a1 02 81 a1 19 3fff 01", "key 16383: unknown");
	expect_fail("a1 01 a1 02 81 a1 00 01", "key 0: unknown");
}

static void test_misplaced_keys(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a2 0e 01 16 80",
		    "key 22 (acl-list) not allowed in scope entry");
	expect_fail("a1 01 a1 02 81 a1 11 a1 15 a1 18 35 80",
		    "mitigation-scope.scope[0].conflict-information."
		    "conflict-scope: key 53 (ietf-dots-signal-control:acl-list)"
		    " not allowed in conflict-scope");
	expect_fail("a1 0e 01", "top level: key 14 (lifetime) not allowed "
		    "in top level");
	expect_fail("a1 01 a1 02 81 a1 19 8003 01",
		    "key 32771 (lower-type) not allowed in scope entry");
	expect_fail("a1 18 1e a1 18 20 a1 18 21 a1 18 2b 01",
		    "key 43 (current-value-decimal) not allowed in parameter");
}

static void test_forbidden_keys(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a2 0e 01 04 66 'abcdef'",
		    "key 4 (cuid) is never allowed in a body (RFC 9132 "
		    "\xc2\xa7" "4.4.1.1)");
	expect_fail("a1 01 a1 03 65 'abcde'",
		    "key 3 (cdid) is never allowed in a body (RFC 9132 "
		    "\xc2\xa7" "4.4.1.2)");
	expect_fail("a1 18 1e a1 18 1f 01",
		    "key 31 (sid) is never allowed in a body (RFC 9132 "
		    "Appendix A)");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a1 0e 64 '3600'",
		    "mitigation-scope.scope[0].lifetime: expected integer, "
		    "got text string");
	expect_fail("a1 01 a1 02 81 a1 0e 24",
		    "mitigation-scope.scope[0].lifetime: negative value other "
		    "than -1");
	expect_fail("a1 01 a1 02 81 a1 0e fb 40ac200000000000",
		    "lifetime: expected integer, got float");
	expect_fail("a1 01 a1 02 81 a1 0e f9 3c00", "got float");
	expect_fail("a1 01 a1 02 81 a1 0e f6", "got null");
	expect_fail("a1 01 a1 02 81 a1 0e f7", "got undefined");
	expect_fail("a1 01 a1 02 81 a1 0e 1b 0000000100000000",
		    "lifetime: value 4294967296 out of range");
	expect_fail("a1 01 a1 02 81 a1 06 81 44 c0000201",
		    "scope[0].target-prefix[0]: expected text string, got byte "
		    "string");
	expect_fail("a1 01 a1 02 81 a1 06 74" P20,
		    "target-prefix: expected array, got text string");
	expect_fail("a1 01 a1 02 81 a1 0f c1 1a 59df7bc2",
		    "mitigation-start: expected unsigned integer, got tag 1");
	expect_fail("a1 01 a1 02 81 a1 07 81 a1 08 1a 00010000",
		    "target-port-range[0].lower-port: value 65536 out of range");
	expect_fail("a1 01 a1 02 81 a1 0a 81 19 0100",
		    "target-protocol[0]: value 256 out of range");
	expect_fail("a1 18 31 a1 18 33 01",
		    "peer-hb-status: expected boolean, got unsigned integer");
	expect_fail("a1 01 a1 02 a1 0e 01", "scope: expected array, got map");
	expect_fail("a1 01 a1 02 81 a1 05 20",
		    "mid: expected unsigned integer, got negative integer");
	expect_fail("81 a0", "top level: expected map, got array");
}

/* The path names the failing member after a sibling whose own path was
 * entered and left (the path text is built only when something fails). */
static void test_path_after_siblings(void **state)
{
	struct bytes *in = mkbytes("a1 01 a1 02 82 a1 0e 01 a2 07 81 a1 08 18 50 0e 24");
	struct dg_diag d = { "" };
	json_t *m = (json_t *)1;

	(void)state;
	assert_int_equal(cbor_decode(in->b, in->n, &m, &d), DG_EINVAL);
	assert_null(m);
	assert_string_equal(d.text, "mitigation-scope.scope[1].lifetime: "
			    "negative value other than -1");
	free(in);
}

static void test_invalid_text(void **state)
{
	(void)state;
	expect_fail("a1 18 2e a1 18 2f 62 c3 28", "invalid UTF-8");
	expect_fail("a1 18 2e a1 18 2f 62 c0 80", "invalid UTF-8"); /* overlong */
	expect_fail("a1 18 2e a1 18 2f 63 e0 80 80", "invalid UTF-8"); /* overlong */
	expect_fail("a1 18 2e a1 18 2f 64 f0 80 80 80", "invalid UTF-8");
	expect_fail("a1 18 2e a1 18 2f 63 ed a0 80", "invalid UTF-8"); /* D800 */
	expect_fail("a1 18 2e a1 18 2f 64 f4 90 80 80", "invalid UTF-8");
	expect_fail("a1 18 2e a1 18 2f 61 e2", "invalid UTF-8");
	/* A character may not straddle indefinite-string chunks. */
	expect_fail("a1 18 2e a1 18 2f 7f 61 c3 61 a9 ff", "invalid UTF-8");
	expect_fail("a1 18 2e a1 18 2f 63 61 00 62",
		    "redirected-signal.alt-server: text string contains NUL");
	expect_fail("a1 18 2e a1 18 2f 7f 61 61 41 62 ff",
		    "bad indefinite string chunk");
	expect_fail("a1 18 2e a1 18 2f 7f 7f ff ff",
		    "bad indefinite string chunk");
}

static void test_enum_out_of_range(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a1 10 09",
		    "mitigation-scope.scope[0].status: value 9 has no label");
	expect_fail("a1 01 a1 02 81 a1 10 00", "status: value 0 has no label");
	expect_fail("a1 01 a1 02 81 a1 18 1d 03",
		    "attack-status: value 3 has no label");
	expect_fail("a1 01 a1 02 81 a1 11 a1 13 06",
		    "conflict-cause: value 6 has no label");
	expect_fail("a1 01 a1 02 81 a1 10 63 'abc'",
		    "status: expected unsigned integer, got text string");
}

static void test_decimal_errors(void **state)
{
	static const struct {
		const char *hex, *diag;
	} cases[] = {
		{ "c4 82 22 19 04d2", "decimal 1234e-3 not representable" },
		{ "c4 82 21 fb 3ff8000000000000", "expected integer, got float" },
		{ "c4 83 21 01 02", "must have 2 elements" },
		{ "c4 81 21", "must have 2 elements" },
		{ "c4 9f 21 01 02 ff", "must have 2 elements" },
		{ "c4 82 21 c2 41 01", "expected integer, got tag 2" },
		{ "c5 82 21 01", "expected decimal fraction (tag 4), got tag 5" },
		{ "fa 3fc00000", "expected decimal fraction (tag 4), got float" },
		{ "63 '1.5'", "got text string" },
		{ "c4 82 14 01", "not representable" }, /* 10^20 overflows */
		{ "c4 82 1b 8000000000000000 01", "integer out of range" },
		{ "c4 82 3b 7fffffffffffffff 01", "not representable" },
	};
	char hex[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(hex, sizeof(hex),
			 "a1 18 1e a1 18 20 a1 18 27 a1 18 2b %s", cases[i].hex);
		expect_fail(hex, cases[i].diag);
	}
	expect_fail("a1 18 1e a1 18 20 a1 18 27 a1 18 2b c4 82 22 19 04d2",
		    "signal-config.mitigating-config.ack-timeout."
		    "current-value-decimal: decimal 1234e-3 not representable "
		    "with 2 fraction digits");
}

static void test_malformed(void **state)
{
	(void)state;
	expect_fail("a1 01 a1 02 81 a1 0e 1c", "offset 7: reserved additional");
	expect_fail("a1 01 a1 02 81 a1 0e 1f", "indefinite length not allowed");
	expect_fail("a1 01 a1 02 81 a2 0e 01 18 c8 ff", "unexpected break");
	expect_fail("a1 01 a1 02 81 a2 0e 01 18 c8 f8 10",
		    "invalid simple value");
	expect_fail("a1 01 a1 02 81 a1 0e ff", "got break");
	expect_fail("bf 01 a1 02 80", "truncated CBOR");
	expect_fail("a0", "top level: expected exactly one message type, got 0");
	expect_fail("a2 18 31 a1 18 33 f5 18 2e a1 18 2f 61 'x'",
		    "expected exactly one message type, got 2");
	/* Only skipped members: still no message type. */
	expect_fail("a1 18 cb a0", "expected exactly one message type, got 0");
}

static void test_decode_null_buffer(void **state)
{
	struct dg_diag d = { "" };
	json_t *m = (json_t *)1;

	(void)state;
	assert_int_equal(cbor_decode(NULL, 5, &m, &d), DG_EINVAL);
	assert_null(m);
	assert_non_null(strstr(d.text, "truncated"));
	/* diag is optional. */
	assert_int_equal(cbor_decode((const uint8_t *)"\xa0", 1, &m, NULL),
			 DG_EINVAL);
	assert_null(m);
}

/* Every single-bit corruption of every vector: never crash or leak; what
 * decodes must re-encode. */
static void test_bitflips(void **state)
{
	(void)state;
	for (size_t v = 0; v < sizeof(all_vectors) / sizeof(all_vectors[0]);
	     v++) {
		struct bytes *b = mkbytes(all_vectors[v]);

		for (size_t i = 0; i < b->n * 8; i++) {
			json_t *m = NULL;
			uint8_t *out = NULL;
			size_t len;
			int rc;

			b->b[i / 8] ^= (uint8_t)(1u << (i % 8));
			rc = cbor_decode(b->b, b->n, &m, NULL);
			assert_true(rc == 0 || rc == DG_EINVAL);
			if (rc == 0) {
				assert_int_equal(cbor_encode(m, &out, &len,
							     NULL), 0);
				free(out);
				json_decref(m);
			} else {
				assert_null(m);
			}
			b->b[i / 8] ^= (uint8_t)(1u << (i % 8));
		}
		free(b);
	}
}

/* ---- Encode errors ----------------------------------------------------------- */

static void test_encode_errors(void **state)
{
	struct dg_diag d = { "" };
	uint8_t *out = (uint8_t *)1;
	size_t len = 1;
	json_t *m;

	(void)state;
	encode_fail("{\"" MS "\":{\"scope\":[{\"lifetime\":1,\"foo\":1}]}}",
		    "mitigation-scope.scope[0]: member \"foo\" not allowed in "
		    "scope entry");
	encode_fail("{\"" MS "\":{\"scope\":[{\"cuid\":\"abc\"}]}}",
		    "member \"cuid\" not allowed in scope entry");
	encode_fail("{\"" MS "\":{\"scope\":[{\"acl-list\":[]}]}}",
		    "member \"acl-list\" not allowed in scope entry");
	encode_fail("{\"mitigation-scope\":{}}",
		    "top level: member \"mitigation-scope\" not allowed");
	encode_fail("{\"" MS "\":{\"scope\":[{\"lifetime\":\"3600\"}]}}",
		    "mitigation-scope.scope[0].lifetime: expected integer, got "
		    "string");
	encode_fail("{\"" MS "\":{\"scope\":[{\"lifetime\":-2}]}}",
		    "lifetime: value -2 out of range");
	encode_fail("{\"" MS "\":{\"scope\":[{\"mid\":4294967296}]}}",
		    "mid: value 4294967296 out of range");
	encode_fail("{\"" MS "\":{\"scope\":[{\"status\":\"nope\"}]}}",
		    "status: unknown label \"nope\"");
	encode_fail("{\"" MS "\":{\"scope\":[{\"status\":9}]}}",
		    "status: value 9 has no label");
	encode_fail("{\"" MS "\":{\"scope\":[{\"bytes-dropped\":\"01\"}]}}",
		    "invalid uint64 \"01\"");
	encode_fail("{\"" MS "\":{\"scope\":[{\"bytes-dropped\":"
		    "\"18446744073709551616\"}]}}", "uint64 out of range");
	encode_fail("{\"" MS "\":{\"scope\":[{\"bytes-dropped\":-1}]}}",
		    "expected unsigned integer string, got integer");
	encode_fail("{\"" MS "\":{\"scope\":[{\"target-prefix\":\"x\"}]}}",
		    "target-prefix: expected array, got string");
	encode_fail("{\"" MS "\":{\"scope\":[{\"target-prefix\":[\"a\\u0000"
		    "b\"]}]}}", "target-prefix[0]: string contains NUL");
	encode_fail("{\"" MS "\":{\"scope\":[{\"trigger-mitigation\":1}]}}",
		    "expected boolean, got integer");
	encode_fail("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		    "{\"current-value-decimal\":\"1.234\"}}}}",
		    "invalid decimal \"1.234\"");
	encode_fail("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		    "{\"current-value-decimal\":1.234}}}}",
		    "not representable with 2 fraction digits");
	encode_fail("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		    "{\"current-value-decimal\":\"1.\"}}}}", "invalid decimal");
	encode_fail("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		    "{\"current-value-decimal\":\"+1\"}}}}", "invalid decimal");
	encode_fail("{\"" SC "\":{\"idle-config\":{\"ack-timeout\":"
		    "{\"current-value-decimal\":1e300}}}}", "out of range");
	encode_fail("{\"" SC "\":{\"idle-config\":{\"heartbeat-interval\":"
		    "{\"current-value-decimal\":\"1.00\"}}}}",
		    "member \"current-value-decimal\" not allowed in parameter");
	encode_fail("{\"" CBOR_MSG_HEARTBEAT "\":{\"peer-hb-status\":true},"
		    "\"" CBOR_MSG_REDIRECT "\":{}}",
		    "expected exactly one message type, got 2");
	encode_fail("{}", "expected exactly one message type, got 0");
	encode_fail("[1]", "top level: expected object, got array");

	m = json_loads("{\"" MS "\":{\"scope\":[{\"foo\":1}]}}", 0, NULL);
	assert_int_equal(cbor_encode(m, &out, &len, NULL), DG_EINVAL);
	assert_null(out);
	json_decref(m);
	assert_int_equal(cbor_encode(NULL, &out, &len, &d), DG_EINVAL);
	assert_null(out);
}

static void test_enum_helpers(void **state)
{
	(void)state;
	assert_int_equal(cbor_enum_value("status", "attack-stopped"), 3);
	assert_int_equal(cbor_enum_value("status",
					 "attack-mitigation-signal-loss"), 8);
	assert_int_equal(cbor_enum_value("conflict-status", "request-active"),
			 2);
	assert_int_equal(cbor_enum_value("conflict-cause",
					 "overlapping-pipes"), 5);
	assert_int_equal(cbor_enum_value("attack-status", "under-attack"), 1);
	assert_int_equal(cbor_enum_value("activation-type", "deactivate"), 3);
	assert_int_equal(cbor_enum_value("status", "under-attack"), -1);
	assert_int_equal(cbor_enum_value("colour", "red"), -1);
	assert_int_equal(cbor_enum_value(NULL, "immediate"), -1);
	assert_int_equal(cbor_enum_value("status", NULL), -1);
	assert_string_equal(cbor_enum_label("status", 1),
			    "attack-mitigation-in-progress");
	assert_string_equal(cbor_enum_label("conflict-cause", 4),
			    "request-rejected-legitimate-traffic");
	assert_string_equal(cbor_enum_label("activation-type", 1),
			    "activate-when-mitigating");
	assert_string_equal(cbor_enum_label("attack-status", 2),
			    "attack-successfully-mitigated");
	assert_null(cbor_enum_label("status", 0));
	assert_null(cbor_enum_label("status", 9));
	assert_null(cbor_enum_label("conflict-status", 4));
	assert_null(cbor_enum_label("nope", 1));
	assert_null(cbor_enum_label(NULL, 1));
}

/* ---- Allocation failures ------------------------------------------------------ */

static long alloc_budget = -1; /* jansson allocations left; -1 = no limit */

static void *fail_malloc(size_t n)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(n);
}

/* Fails the n-th jansson allocation for n = 0, 1, ... until decoding
 * succeeds: each failure must be DG_ENOMEM with nothing leaked (LSan). */
static void test_decode_enomem(void **state)
{
	static const char *const vecs[] = { v_conflict, v_config_get,
					    v_call_home };

	(void)state;
	json_set_alloc_funcs(fail_malloc, free);
	for (size_t v = 0; v < sizeof(vecs) / sizeof(vecs[0]); v++) {
		struct bytes *b = mkbytes(vecs[v]);
		long n;

		for (n = 0; n < 10000; n++) {
			json_t *m = (json_t *)1;
			int rc;

			alloc_budget = n;
			rc = cbor_decode(b->b, b->n, &m, NULL);
			alloc_budget = -1;
			if (rc == 0) {
				json_decref(m);
				break;
			}
			assert_int_equal(rc, DG_ENOMEM);
			assert_null(m);
		}
		assert_true(n > 5 && n < 10000);
		free(b);
	}
	json_set_alloc_funcs(malloc, free);
}

/* ---- Seed corpus (test/unit/data/cbor) ---------------------------------------- */

/* valid-*.cbor decode and survive a re-encode; invalid-*.cbor fail. */
static void test_seed_corpus(void **state)
{
	const char *base = getenv("DOTSGW_TEST_DATA");
	char dir[512], path[1024];
	struct dirent *de;
	int nvalid = 0, ninvalid = 0;
	DIR *dp;

	(void)state;
	if (!base)
		skip();
	snprintf(dir, sizeof(dir), "%s/cbor", base);
	dp = opendir(dir);
	assert_non_null(dp);
	while ((de = readdir(dp))) {
		uint8_t buf[4096], *out = NULL;
		bool valid = strncmp(de->d_name, "valid-", 6) == 0;
		struct dg_diag d = { "" };
		json_t *m = NULL, *m2 = NULL;
		size_t n, len;
		FILE *f;
		int rc;

		if (!strstr(de->d_name, ".cbor"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "rb");
		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		rc = cbor_decode(buf, n, &m, &d);
		if (valid != (rc == 0))
			print_error("%s: %d %s\n", de->d_name, rc, d.text);
		if (!valid) {
			assert_int_equal(rc, DG_EINVAL);
			ninvalid++;
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(cbor_encode(m, &out, &len, &d), 0);
		assert_int_equal(cbor_decode(out, len, &m2, &d), 0);
		assert_true(json_equal(m, m2));
		json_decref(m);
		json_decref(m2);
		free(out);
		nvalid++;
	}
	closedir(dp);
	assert_true(nvalid >= 10);
	assert_true(ninvalid >= 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mitigation_request),
		cmocka_unit_test(test_mitigation_response),
		cmocka_unit_test(test_efficacy_update),
		cmocka_unit_test(test_acl_list_request),
		cmocka_unit_test(test_conflict_response),
		cmocka_unit_test(test_config_get),
		cmocka_unit_test(test_config_put),
		cmocka_unit_test(test_heartbeat),
		cmocka_unit_test(test_redirect),
		cmocka_unit_test(test_call_home),
		cmocka_unit_test(test_rfc_example),
		cmocka_unit_test(test_json_roundtrip),
		cmocka_unit_test(test_encode_convenience),
		cmocka_unit_test(test_decimal_decode),
		cmocka_unit_test(test_lifetime_minus_one),
		cmocka_unit_test(test_optional_key_skipped),
		cmocka_unit_test(test_indefinite_decode),
		cmocka_unit_test(test_truncated_every_prefix),
		cmocka_unit_test(test_trailing_byte),
		cmocka_unit_test(test_depth_bomb),
		cmocka_unit_test(test_huge_length),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_text_map_key),
		cmocka_unit_test(test_unknown_required_key),
		cmocka_unit_test(test_misplaced_keys),
		cmocka_unit_test(test_forbidden_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_path_after_siblings),
		cmocka_unit_test(test_invalid_text),
		cmocka_unit_test(test_enum_out_of_range),
		cmocka_unit_test(test_decimal_errors),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_decode_null_buffer),
		cmocka_unit_test(test_bitflips),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_enum_helpers),
		cmocka_unit_test(test_decode_enomem),
		cmocka_unit_test(test_seed_corpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
