/*
 * test_model.c: DOTS signal-channel semantics (common/model.c).
 *
 * Bodies are written as JSON with single quotes (turned into double quotes
 * by J()) so the RFC 7951 model reads as it is on the wire.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MS "ietf-dots-signal-channel:mitigation-scope"

/* ---- helpers ------------------------------------------------------------ */

/* Parses JSON written with ' for ". */
static json_t *J(const char *text)
{
	char *t = strdup(text);
	json_error_t err;
	json_t *j;

	assert_non_null(t);
	for (char *c = t; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = json_loads(t, JSON_DECODE_ANY, &err);
	if (!j)
		fail_msg("test JSON does not parse: %s: %s", err.text, t);
	free(t);
	return j;
}

/* A mitigation request body around one scope entry. */
static json_t *REQ(const char *entry)
{
	json_t *b = json_pack("{s:{s:[o]}}", MS, "scope", J(entry));

	assert_non_null(b);
	return b;
}

static void expect_diag(int rc, int code, const struct dg_diag *d,
			const char *sub, const char *what)
{
	if (rc != code)
		fail_msg("%s: returned %d, expected %d (diag \"%s\")", what, rc,
			 code, d->text);
	if (code && !strstr(d->text, sub))
		fail_msg("%s: diag \"%s\" lacks \"%s\"", what, d->text, sub);
}

static void check_req(const char *entry, enum model_put_kind kind, int code,
		      const char *sub)
{
	struct dg_diag d = { "" };
	json_t *b = REQ(entry);

	expect_diag(model_check_mitigation_request(b, kind, &d), code, &d, sub,
		    entry);
	json_decref(b);
}

/* Checks a whole body (not wrapped). */
static void check_body(const char *body, int code, const char *sub)
{
	struct dg_diag d = { "" };
	json_t *b = J(body);

	expect_diag(model_check_mitigation_request(b, MODEL_PUT_REQUEST, &d),
		    code, &d, sub, body);
	json_decref(b);
}

static int parse_uri(const char *const *segs, size_t n, struct model_uri *u,
		     struct dg_diag *d)
{
	d->text[0] = '\0';
	return model_parse_uri(segs, n, u, d);
}

#define SEGS(...) ((const char *const[]){ __VA_ARGS__ })
#define NSEGS(...) (sizeof(SEGS(__VA_ARGS__)) / sizeof(const char *))
#define URI(u, d, ...) parse_uri(SEGS(__VA_ARGS__), NSEGS(__VA_ARGS__), u, d)

static void uri_fails(int code, const char *sub, const char *const *segs,
		      size_t n)
{
	struct model_uri u;
	struct dg_diag d;

	expect_diag(parse_uri(segs, n, &u, &d), code, &d, sub, sub);
}

#define URI_FAILS(code, sub, ...) \
	uri_fails(code, sub, SEGS(__VA_ARGS__), NSEGS(__VA_ARGS__))

static void expect_json(json_t *got, const char *want)
{
	json_t *w = J(want);

	if (!json_equal(got, w)) {
		char *g = json_dumps(got, JSON_COMPACT);

		fail_msg("got %s, want %s", g ? g : "(null)", want);
	}
	json_decref(w);
}

/* ---- URIs -------------------------------------------------------------- */

static void test_uri_mitigate_ok(void **state)
{
	struct model_uri u;
	struct dg_diag d;
	char id128[MODEL_ID_MAX + 6];

	(void)state;
	assert_int_equal(URI(&u, &d, ".well-known", "dots", "mitigate",
			     "cuid=abc", "mid=12"), 0);
	assert_int_equal(u.res, MODEL_RES_MITIGATE);
	assert_true(u.has_cuid);
	assert_string_equal(u.cuid, "abc");
	assert_true(u.has_mid);
	assert_int_equal(u.mid, 12);
	assert_false(u.has_cdid);
	assert_false(u.has_sid);

	assert_int_equal(URI(&u, &d, ".well-known", "dots", "mitigate",
			     "cdid=gw1", "cuid=dz6pHjaADkaFTbjr0JGBpw"), 0);
	assert_true(u.has_cdid);
	assert_string_equal(u.cdid, "gw1");
	assert_string_equal(u.cuid, "dz6pHjaADkaFTbjr0JGBpw");
	assert_false(u.has_mid);

	assert_int_equal(URI(&u, &d, ".well-known", "dots", "mitigate",
			     "cuid=a", "mid=0"), 0);
	assert_int_equal(u.mid, 0);
	assert_int_equal(URI(&u, &d, ".well-known", "dots", "mitigate",
			     "cuid=a", "mid=4294967295"), 0);
	assert_int_equal(u.mid, 4294967295u);

	/* exactly MODEL_ID_MAX bytes is still fine */
	strcpy(id128, "cuid=");
	memset(id128 + 5, 'x', MODEL_ID_MAX);
	id128[5 + MODEL_ID_MAX] = '\0';
	assert_int_equal(URI(&u, &d, ".well-known", "dots", "mitigate", id128), 0);
	assert_int_equal(strlen(u.cuid), MODEL_ID_MAX);
}

static void test_uri_mitigate_bad(void **state)
{
	char id129[MODEL_ID_MAX + 7];

	(void)state;
	URI_FAILS(400, "mid: duplicate or before cuid", ".well-known", "dots",
		  "mitigate", "mid=1", "cuid=a");
	URI_FAILS(400, "mid: duplicate or before cuid", ".well-known", "dots",
		  "mitigate", "mid=1");
	URI_FAILS(400, "cdid", ".well-known", "dots", "mitigate", "cuid=a", "cdid=x");
	URI_FAILS(400, "cuid: duplicate", ".well-known", "dots", "mitigate",
		  "cuid=a", "cuid=b");
	URI_FAILS(400, "cuid", ".well-known", "dots", "mitigate", "cuid=a",
		  "mid=1", "cuid=b");
	URI_FAILS(400, "mid: duplicate", ".well-known", "dots", "mitigate",
		  "cuid=a", "mid=1", "mid=2");
	URI_FAILS(400, "cdid: duplicate", ".well-known", "dots", "mitigate",
		  "cdid=a", "cdid=b", "cuid=c");
	URI_FAILS(400, "cuid: empty", ".well-known", "dots", "mitigate", "cuid=");
	URI_FAILS(400, "cdid: empty", ".well-known", "dots", "mitigate", "cdid=",
		  "cuid=a");
	URI_FAILS(400, "not a uint32", ".well-known", "dots", "mitigate",
		  "cuid=a", "mid=012");
	URI_FAILS(400, "not a uint32", ".well-known", "dots", "mitigate",
		  "cuid=a", "mid=4294967296");
	URI_FAILS(400, "not a uint32", ".well-known", "dots", "mitigate",
		  "cuid=a", "mid=");
	URI_FAILS(400, "not a uint32", ".well-known", "dots", "mitigate",
		  "cuid=a", "mid=-1");
	URI_FAILS(400, "not a uint32", ".well-known", "dots", "mitigate",
		  "cuid=a", "mid=1x");
	URI_FAILS(400, "missing", ".well-known", "dots", "mitigate");
	URI_FAILS(400, "missing", ".well-known", "dots", "mitigate", "cdid=x");
	URI_FAILS(400, "unknown segment", ".well-known", "dots", "mitigate",
		  "cuid=a", "foo=1");
	URI_FAILS(400, "expected cdid=", ".well-known", "dots", "mitigate",
		  "cuid=a", "12");
	URI_FAILS(400, "visible ASCII", ".well-known", "dots", "mitigate",
		  "cuid=a b");
	strcpy(id129, "cuid=");
	memset(id129 + 5, 'x', MODEL_ID_MAX + 1);
	id129[6 + MODEL_ID_MAX] = '\0';
	URI_FAILS(400, "longer than 128", ".well-known", "dots", "mitigate", id129);
}

static void test_uri_config_hb(void **state)
{
	struct model_uri u;
	struct dg_diag d;

	(void)state;
	assert_int_equal(URI(&u, &d, ".well-known", "dots", "config"), 0);
	assert_int_equal(u.res, MODEL_RES_CONFIG);
	assert_false(u.has_sid);
	assert_int_equal(URI(&u, &d, ".well-known", "dots", "config", "sid=5"), 0);
	assert_true(u.has_sid);
	assert_int_equal(u.sid, 5);
	assert_int_equal(URI(&u, &d, ".well-known", "dots", "hb"), 0);
	assert_int_equal(u.res, MODEL_RES_HB);

	URI_FAILS(400, "sid", ".well-known", "dots", "config", "sid=05");
	URI_FAILS(400, "sid: duplicate", ".well-known", "dots", "config",
		  "sid=5", "sid=6");
	URI_FAILS(400, "only sid=", ".well-known", "dots", "config", "cuid=x");
	URI_FAILS(400, "only sid=", ".well-known", "dots", "config", "mid=1");
	URI_FAILS(400, "hb", ".well-known", "dots", "hb", "cuid=x");
	URI_FAILS(400, "hb", ".well-known", "dots", "hb", "mid=1");
	URI_FAILS(404, "unknown resource", ".well-known", "dots", "foo");
	URI_FAILS(404, "not under", ".well-known", "dots");
	URI_FAILS(404, "not under", ".well-known", "dotz", "hb");
	URI_FAILS(404, "not under", "dots", ".well-known", "hb");
	URI_FAILS(400, "missing segment", ".well-known", "dots", "hb", NULL);
	assert_int_equal(parse_uri(NULL, 0, &u, &d), 404);
}

/* Diagnostics quote peer input but must stay printable UTF-8 (RFC 7252
 * §5.5.2), also when the quote is cut in the middle of a character. */
static void test_diag_sanitised(void **state)
{
	char entry[200] = "{'alias-name':['a'],'lifetime':1,'x";

	(void)state;
	URI_FAILS(400, "\"?\?=1\": unknown segment", ".well-known", "dots",
		  "mitigate", "cuid=a", "\x01\xff=1");
	/* 'x' and 40 two-byte characters: the 64-byte quote ends mid-way */
	for (int i = 0; i < 40; i++)
		strcat(entry, "\xc3\xa9");
	strcat(entry, "':1}");
	check_req(entry, MODEL_PUT_REQUEST, 400,
		  "\xc3\xa9?: unknown attribute in a scope entry (RFC 9132 \xc2\xa7" "6)");
}

/* ---- mitigation requests ------------------------------------------------ */

static void test_request_valid(void **state)
{
	(void)state;
	check_req("{'target-prefix':['2001:db8:6401::/64','192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':80,'upper-port':443},"
		  "{'lower-port':8080}],'target-protocol':[6,17],"
		  "'target-fqdn':['www.example.com','example.net.'],"
		  "'target-uri':['https://www.example.com/app',"
		  "'http://[2001:db8::1]:8080/x'],"
		  "'alias-name':['web-servers'],'lifetime':3600,"
		  "'trigger-mitigation':false,"
		  "'ietf-dots-signal-control:acl-list':[{'acl-name':'a1',"
		  "'activation-type':'immediate'},{'acl-name':'a2'}],"
		  "'ietf-dots-call-home:source-prefix':['203.0.113.0/24'],"
		  "'ietf-dots-call-home:source-port-range':[{'lower-port':1}],"
		  "'ietf-dots-call-home:source-icmp-type-range':"
		  "[{'lower-type':3,'upper-type':5}]}",
		  MODEL_PUT_REQUEST, 0, "");
	check_req("{'alias-name':['x'],'lifetime':-1}", MODEL_PUT_REQUEST, 0, "");
	check_req("{'target-fqdn':['a.b'],'lifetime':4294967295}",
		  MODEL_PUT_REQUEST, 0, "");
	check_req("{'target-uri':['coap://h'],'lifetime':1}",
		  MODEL_PUT_REQUEST, 0, "");
}

static void test_request_structure(void **state)
{
	(void)state;
	check_body("{'" MS "':{'scope':[{'alias-name':['x'],'lifetime':1}]},"
		   "'ietf-dots-signal-channel:heartbeat':{}}",
		   400, "exactly one member");
	check_body("{'ietf-dots-signal-channel:signal-config':{}}", 400,
		   "mitigation-scope");
	check_body("{'" MS "':[]}", 400, "not an object");
	check_body("{'" MS "':{}}", 400, "scope: missing");
	check_body("{'" MS "':{'scope':[]}}", 400, "scope: missing or empty");
	check_body("{'" MS "':{'scope':[{'alias-name':['x'],'lifetime':1},"
		   "{'alias-name':['y'],'lifetime':1}]}}", 400, "2 entries");
	check_body("{'" MS "':{'scope':[{'alias-name':['x'],'lifetime':1}],"
		   "'extra':1}}", 400, "unknown attribute extra");
	check_body("{'" MS "':{'scope':[7]}}", 400, "scope[0]: not an object");
	check_body("[]", 400, "exactly one member");
}

static void test_request_lifetime(void **state)
{
	(void)state;
	check_req("{'target-prefix':['192.0.2.0/24']}", MODEL_PUT_REQUEST, 400,
		  "lifetime: mandatory");
	check_req("{'target-prefix':['192.0.2.0/24'],'lifetime':0}",
		  MODEL_PUT_REQUEST, 400,
		  "lifetime: 0 is not a valid lifetime (RFC 9132 §4.4.1.1)");
	check_req("{'target-prefix':['192.0.2.0/24'],'lifetime':-2}",
		  MODEL_PUT_REQUEST, 400, "lifetime: -2 is neither");
	check_req("{'target-prefix':['192.0.2.0/24'],'lifetime':4294967296}",
		  MODEL_PUT_REQUEST, 400, "lifetime: 4294967296");
	check_req("{'target-prefix':['192.0.2.0/24'],'lifetime':'3600'}",
		  MODEL_PUT_REQUEST, 400, "lifetime: not an integer");
	check_req("{'target-prefix':['192.0.2.0/24'],'lifetime':3600.0}",
		  MODEL_PUT_REQUEST, 400, "lifetime: not an integer");
}

static void test_request_targets(void **state)
{
	(void)state;
	check_req("{'lifetime':3600}", MODEL_PUT_REQUEST, 400, "needs one of");
	check_req("{'target-port-range':[{'lower-port':80}],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "needs one of");
	check_req("{'target-prefix':[],'lifetime':3600}", MODEL_PUT_REQUEST, 400,
		  "target-prefix: must be a non-empty array");
	check_req("{'target-prefix':'192.0.2.0/24','lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "target-prefix: must be a non-empty array");
	check_req("{'target-prefix':['192.0.2.1/24'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "192.0.2.1/24: bits set");
	check_req("{'target-prefix':['192.0.2.0'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "\"192.0.2.0\": not an IP prefix");
	check_req("{'target-prefix':[5],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "target-prefix[0]: not a string");
	check_req("{'target-prefix':['192.0.2.0/24','127.0.0.0/8'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "target-prefix 127.0.0.0/8: loopback");
	check_req("{'target-prefix':['ff02::/16'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "ff02::/16: loopback, multicast");
	check_req("{'target-prefix':['255.255.255.255/32'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "255.255.255.255/32");
	check_req("{'target-prefix':['0.0.0.0/0'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "0.0.0.0/0: too broad");
	check_req("{'target-prefix':['::/0'],'lifetime':3600}",
		  MODEL_PUT_REQUEST, 400, "::/0: too broad");
	check_req("{'alias-name':[''],'lifetime':3600}", MODEL_PUT_REQUEST, 400,
		  "alias-name[0]: not a non-empty string");
	check_req("{'alias-name':[],'lifetime':3600}", MODEL_PUT_REQUEST, 400,
		  "alias-name: must be a non-empty array");
	/* source prefixes need not be valid targets, but must be prefixes */
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-call-home:source-prefix':['10.0.0.1/8']}",
		  MODEL_PUT_REQUEST, 400, "source-prefix 10.0.0.1/8: bits set");
}

static void test_request_ports_protocols(void **state)
{
	(void)state;
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'lower-port':443,'upper-port':80}]}", MODEL_PUT_REQUEST, 400,
		  "target-port-range[0]: upper-port 80 is below lower-port 443");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'lower-port':65536}]}", MODEL_PUT_REQUEST, 400,
		  "target-port-range[0]: lower-port missing or not in 0..65535");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'upper-port':80}]}", MODEL_PUT_REQUEST, 400,
		  "lower-port missing");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'lower-port':1,'upper-port':-1}]}", MODEL_PUT_REQUEST, 400,
		  "upper-port not in 0..65535");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'lower-port':1,'port':2}]}", MODEL_PUT_REQUEST, 400,
		  "unknown attribute port");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'lower-port':80},{'lower-port':80,'upper-port':81}]}",
		  MODEL_PUT_REQUEST, 400, "duplicate lower-port 80");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':[80]}",
		  MODEL_PUT_REQUEST, 400, "target-port-range[0]: not an object");
	check_req("{'alias-name':['a'],'lifetime':1,'target-protocol':[6,256]}",
		  MODEL_PUT_REQUEST, 400, "target-protocol[1]: not a protocol");
	check_req("{'alias-name':['a'],'lifetime':1,'target-protocol':['6']}",
		  MODEL_PUT_REQUEST, 400, "target-protocol[0]");
	check_req("{'alias-name':['a'],'lifetime':1,'target-protocol':[]}",
		  MODEL_PUT_REQUEST, 400, "target-protocol: must be a non-empty");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-call-home:source-icmp-type-range':[{'lower-type':256}]}",
		  MODEL_PUT_REQUEST, 400, "lower-type missing or not in 0..255");
	check_req("{'alias-name':['a'],'lifetime':1,'target-port-range':"
		  "[{'lower-port':0,'upper-port':65535}],'target-protocol':[0,255]}",
		  MODEL_PUT_REQUEST, 0, "");
}

static void test_request_fqdn_uri(void **state)
{
	static const char *const bad_fqdns[] = {
		"*.example.com", "-a.example.com", "a-.example.com", "a..b",
		".example.com", "exa_mple.com", "example.com..", "a b.com",
	};
	static const char *const bad_uris[] = {
		"www.example.com", "https://", "https:///path", "http://:80/",
		"http://host:80a/", "http://ho st/", "1http://h/", "http//h/",
		"http://[]/", "http://[::1/",
	};
	char buf[400];
	char label[70];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_fqdns) / sizeof(bad_fqdns[0]); i++) {
		snprintf(buf, sizeof(buf),
			 "{'target-fqdn':['%s'],'lifetime':1}", bad_fqdns[i]);
		check_req(buf, MODEL_PUT_REQUEST, 400, "not a valid domain name");
	}
	/* a 63-byte label is fine, 64 is not */
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(buf, sizeof(buf), "{'target-fqdn':['%s.com'],'lifetime':1}", label);
	check_req(buf, MODEL_PUT_REQUEST, 0, "");
	memset(label, 'a', 64);
	label[64] = '\0';
	snprintf(buf, sizeof(buf), "{'target-fqdn':['%s.com'],'lifetime':1}", label);
	check_req(buf, MODEL_PUT_REQUEST, 400, "not a valid domain name");
	/* 4 x 63 + 3 dots = 255 bytes: over the 253 limit */
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(buf, sizeof(buf), "{'target-fqdn':['%s.%s.%s.%s'],'lifetime':1}",
		 label, label, label, label);
	check_req(buf, MODEL_PUT_REQUEST, 400, "not a valid domain name");
	check_req("{'target-fqdn':[''],'lifetime':1}", MODEL_PUT_REQUEST, 400,
		  "target-fqdn[0]: not a non-empty string");

	for (size_t i = 0; i < sizeof(bad_uris) / sizeof(bad_uris[0]); i++) {
		snprintf(buf, sizeof(buf),
			 "{'target-uri':['%s'],'lifetime':1}", bad_uris[i]);
		check_req(buf, MODEL_PUT_REQUEST, 400, "not a valid URI");
	}
	check_req("{'target-uri':['https://user@www.example.com:8443/a?b#c'],"
		  "'lifetime':1}", MODEL_PUT_REQUEST, 0, "");
}

static void test_request_server_only(void **state)
{
	static const char *const attrs[] = {
		"'mid':5", "'status':'attack-stopped'", "'mitigation-start':'0'",
		"'bytes-dropped':'1'", "'bps-dropped':'1'", "'pkts-dropped':'1'",
		"'pps-dropped':'1'", "'conflict-information':{}",
	};
	char buf[200], name[40];

	(void)state;
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		const char *end = strchr(attrs[i] + 1, '\'');

		snprintf(name, sizeof(name), "%.*s: only a server",
			 (int)(end - attrs[i] - 1), attrs[i] + 1);
		snprintf(buf, sizeof(buf),
			 "{'alias-name':['a'],'lifetime':1,%s}", attrs[i]);
		check_req(buf, MODEL_PUT_REQUEST, 400, name);
	}
	check_req("{'alias-name':['a'],'lifetime':1,'cuid':'x'}",
		  MODEL_PUT_REQUEST, 400, "cuid: belongs in the Uri-Path");
	check_req("{'alias-name':['a'],'lifetime':1,'foo':1}",
		  MODEL_PUT_REQUEST, 400, "foo: unknown attribute");
	check_req("{'alias-name':['a'],'lifetime':1,'trigger-mitigation':1}",
		  MODEL_PUT_REQUEST, 400, "trigger-mitigation: not a boolean");
}

static void test_request_attack_status(void **state)
{
	(void)state;
	check_req("{'alias-name':['a'],'lifetime':1,'attack-status':'under-attack'}",
		  MODEL_PUT_REQUEST, 400, "attack-status: only allowed in an efficacy");
	check_req("{'alias-name':['a'],'lifetime':1}", MODEL_PUT_EFFICACY, 400,
		  "attack-status: mandatory in an efficacy update");
	check_req("{'alias-name':['a'],'lifetime':1,'attack-status':'under-attack'}",
		  MODEL_PUT_EFFICACY, 0, "");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'attack-status':'attack-successfully-mitigated'}",
		  MODEL_PUT_EFFICACY, 0, "");
	check_req("{'alias-name':['a'],'lifetime':1,'attack-status':'attack-stopped'}",
		  MODEL_PUT_EFFICACY, 400, "attack-status: not a known");
	check_req("{'alias-name':['a'],'lifetime':1,'attack-status':1}",
		  MODEL_PUT_EFFICACY, 400, "attack-status: not a known");
}

static void test_request_acl_list(void **state)
{
	(void)state;
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-signal-control:acl-list':[{'acl-name':'x',"
		  "'activation-type':'deactivate'}]}", MODEL_PUT_REQUEST, 0, "");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-signal-control:acl-list':[{'acl-name':''}]}",
		  MODEL_PUT_REQUEST, 400, "acl-name must be a non-empty string");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-signal-control:acl-list':[{'activation-type':'immediate'}]}",
		  MODEL_PUT_REQUEST, 400, "acl-list[0]: acl-name missing");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-signal-control:acl-list':[{'acl-name':'x',"
		  "'activation-type':'sometimes'}]}",
		  MODEL_PUT_REQUEST, 400, "activation-type is not a known");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-signal-control:acl-list':[{'acl-name':'x','acl-type':'y'}]}",
		  MODEL_PUT_REQUEST, 400, "unknown attribute acl-type");
	check_req("{'alias-name':['a'],'lifetime':1,"
		  "'ietf-dots-signal-control:acl-list':[]}",
		  MODEL_PUT_REQUEST, 400, "acl-list: must be a non-empty array");
}

static void test_scope_accessors(void **state)
{
	json_t *b = REQ("{'alias-name':['a'],'lifetime':-1,'trigger-mitigation':false}");
	json_t *e = model_scope_entry(b), *none = J("{}");

	(void)state;
	assert_non_null(e);
	assert_ptr_equal(e, json_array_get(json_object_get(json_object_get(b, MS),
							   "scope"), 0));
	assert_int_equal(model_scope_lifetime(e), -1);
	assert_false(model_scope_trigger(e));
	/* YANG defaults: lifetime 3600, trigger-mitigation true */
	assert_int_equal(model_scope_lifetime(none), 3600);
	assert_true(model_scope_trigger(none));
	assert_null(model_scope_entry(none));
	json_decref(b);
	json_decref(none);
}

/* ---- refresh, overlap, authorization ----------------------------------- */

static void test_same_request(void **state)
{
	json_t *a = J("{'target-prefix':['192.0.2.0/24'],'target-protocol':[6],"
		      "'lifetime':3600}");
	json_t *b = J("{'lifetime':60,'target-protocol':[6],"
		      "'target-prefix':['192.0.2.0/24']}");
	json_t *c = J("{'target-prefix':['192.0.2.0/24'],'target-protocol':[6],"
		      "'lifetime':3600,'attack-status':'under-attack'}");
	json_t *d = J("{'target-prefix':['192.0.2.0/25'],'target-protocol':[6],"
		      "'lifetime':3600}");
	json_t *e = J("{'target-prefix':['192.0.2.0/24'],'target-protocol':[6],"
		      "'lifetime':3600,'trigger-mitigation':true}");
	json_t *f = J("{'target-prefix':['192.0.2.0/24'],'lifetime':3600}");

	(void)state;
	assert_true(model_scope_same_request(a, b)); /* order, lifetime */
	assert_true(model_scope_same_request(b, a));
	assert_true(model_scope_same_request(a, c)); /* attack-status */
	assert_true(model_scope_same_request(c, a));
	assert_false(model_scope_same_request(a, d));
	assert_false(model_scope_same_request(a, e)); /* an added member */
	assert_false(model_scope_same_request(e, a));
	assert_false(model_scope_same_request(a, f)); /* a dropped member */
	assert_false(model_scope_same_request(f, a));
	assert_false(model_scope_same_request(a, NULL));
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
	json_decref(e);
	json_decref(f);
}

static void test_overlap_prefixes(void **state)
{
	json_t *a = J("{'target-prefix':['192.0.2.0/24','2001:db8::/32']}");
	json_t *b = J("{'target-prefix':['198.51.100.0/24','192.0.2.128/25',"
		      "'2001:db8:1::/48']}");
	json_t *c = J("{'target-prefix':['198.51.100.0/24']}");
	json_t *cs = (json_t *)1;

	(void)state;
	assert_true(model_scope_overlap(a, b, &cs));
	expect_json(cs, "{'target-prefix':['192.0.2.128/25','2001:db8:1::/48']}");
	json_decref(cs);
	assert_true(model_scope_overlap(b, a, NULL));
	cs = (json_t *)1;
	assert_false(model_scope_overlap(a, c, &cs));
	assert_null(cs);
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

static void test_overlap_ports_protocols(void **state)
{
	json_t *a = J("{'target-prefix':['192.0.2.0/24'],"
		      "'target-port-range':[{'lower-port':80,'upper-port':443}],"
		      "'target-protocol':[6]}");
	json_t *b1 = J("{'target-prefix':['192.0.2.0/24'],"
		       "'target-port-range':[{'lower-port':8080}]}");
	json_t *b2 = J("{'target-prefix':['192.0.2.0/24'],"
		       "'target-port-range':[{'lower-port':8080},"
		       "{'lower-port':443,'upper-port':500}],'target-protocol':[17,6]}");
	json_t *b3 = J("{'target-prefix':['192.0.2.7/32']}");
	json_t *b4 = J("{'target-prefix':['192.0.2.0/24'],'target-protocol':[17]}");
	json_t *cs = NULL;

	(void)state;
	assert_false(model_scope_overlap(a, b1, NULL)); /* disjoint ports */
	assert_false(model_scope_overlap(b1, a, NULL));
	assert_true(model_scope_overlap(a, b2, &cs));
	expect_json(cs, "{'target-prefix':['192.0.2.0/24'],'target-port-range':"
		    "[{'lower-port':443,'upper-port':500}],'target-protocol':[6]}");
	json_decref(cs);
	/* no ports or protocols on one side means all of them */
	assert_true(model_scope_overlap(a, b3, &cs));
	expect_json(cs, "{'target-prefix':['192.0.2.7/32']}");
	json_decref(cs);
	assert_true(model_scope_overlap(b3, a, NULL));
	assert_false(model_scope_overlap(a, b4, NULL)); /* TCP vs UDP */
	assert_true(model_scope_overlap(b1, b4, NULL));
	json_decref(a);
	json_decref(b1);
	json_decref(b2);
	json_decref(b3);
	json_decref(b4);
}

static void test_overlap_names(void **state)
{
	json_t *a = J("{'target-fqdn':['WWW.Example.com.','a.example.com'],"
		      "'target-uri':['https://example.com/x'],'alias-name':['web']}");
	json_t *b = J("{'target-fqdn':['www.example.com','b.example.com'],"
		      "'alias-name':['db']}");
	json_t *c = J("{'target-uri':['https://example.com/x'],'alias-name':['web']}");
	json_t *d = J("{'target-fqdn':['x.www.example.com'],"
		      "'target-uri':['https://example.com/X'],'alias-name':['Web']}");
	json_t *cs = NULL;

	(void)state;
	assert_true(model_scope_overlap(a, b, &cs));
	expect_json(cs, "{'target-fqdn':['www.example.com']}");
	json_decref(cs);
	assert_true(model_scope_overlap(a, c, &cs));
	expect_json(cs, "{'target-uri':['https://example.com/x'],'alias-name':['web']}");
	json_decref(cs);
	/* a subdomain, a different URI and an alias in other case: no overlap */
	assert_false(model_scope_overlap(a, d, NULL));
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
}

/*
 * The pre-parsed overlap answers what the JSON one answers: a table of
 * pairs with the expected answer, both paths, both orders.
 */
static void test_overlap_preparsed_same_as_json(void **state)
{
	static const struct {
		const char *a, *b;
		bool overlap;
	} cases[] = {
		{ "{'target-prefix':['192.0.2.0/24']}",
		  "{'target-prefix':['192.0.2.128/25']}", true },
		{ "{'target-prefix':['192.0.2.0/24']}",
		  "{'target-prefix':['198.51.100.0/24']}", false },
		{ "{'target-prefix':['192.0.2.0/24','2001:db8::/32']}",
		  "{'target-prefix':['2001:db8:1::/48']}", true },
		{ "{'target-prefix':['0.0.0.0/0']}",
		  "{'target-prefix':['::/0']}", false },
		/* host bits are cleared, as in the JSON path */
		{ "{'target-prefix':['192.0.2.5/24']}",
		  "{'target-prefix':['192.0.2.9/32']}", true },
		/* unparsable members never hit */
		{ "{'target-prefix':['192.0.2.0/24','bogus',7]}",
		  "{'target-prefix':['bogus',7,'192.0.2.1/33']}", false },
		{ "{'target-prefix':'192.0.2.0/24'}",
		  "{'target-prefix':['192.0.2.0/24']}", false },
		{ "{'target-prefix':[]}", "{'target-prefix':[]}", false },
		{ "{}", "{}", false },
		{ "[]", "{'target-prefix':['192.0.2.0/24']}", false },
		{ "'x'", "'x'", false },
		/* ports and protocols: absent or on one side only = all */
		{ "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':80,'upper-port':443}]}",
		  "{'target-prefix':['192.0.2.0/24']}", true },
		{ "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':80,'upper-port':443}]}",
		  "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':443}]}", true },
		{ "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':80,'upper-port':442}]}",
		  "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':443}]}", false },
		/* a list of only bad ranges still restricts, and hits nothing */
		{ "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':90,'upper-port':80},"
		  "{'lower-port':70000},{'upper-port':80},5]}",
		  "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':0,'upper-port':65535}]}", false },
		{ "{'target-prefix':['192.0.2.0/24'],'target-port-range':[]}",
		  "{'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':1}]}", true },
		{ "{'target-prefix':['192.0.2.0/24'],'target-protocol':[6,17]}",
		  "{'target-prefix':['192.0.2.0/24'],'target-protocol':[17]}", true },
		{ "{'target-prefix':['192.0.2.0/24'],'target-protocol':[6]}",
		  "{'target-prefix':['192.0.2.0/24'],'target-protocol':[17]}", false },
		{ "{'target-prefix':['192.0.2.0/24'],'target-protocol':['6']}",
		  "{'target-prefix':['192.0.2.0/24'],'target-protocol':[6]}", false },
		{ "{'target-prefix':['192.0.2.0/24'],'target-protocol':[6]}",
		  "{'target-prefix':['192.0.2.0/24'],'target-protocol':[6.0]}", false },
		/* qualifiers alone are not targets */
		{ "{'target-protocol':[6]}", "{'target-protocol':[6]}", false },
		/* FQDNs: case and the root dot do not matter, subdomains differ */
		{ "{'target-fqdn':['WWW.Example.com.']}",
		  "{'target-fqdn':['www.example.COM']}", true },
		{ "{'target-fqdn':['example.com']}",
		  "{'target-fqdn':['www.example.com']}", false },
		{ "{'target-fqdn':['.']}", "{'target-fqdn':['.']}", false },
		{ "{'target-fqdn':['a..']}", "{'target-fqdn':['A.']}", false },
		{ "{'target-fqdn':['a..']}", "{'target-fqdn':['A..']}", true },
		/* URIs and aliases compare exactly */
		{ "{'target-uri':['https://example.com/x']}",
		  "{'target-uri':['https://example.com/x']}", true },
		{ "{'target-uri':['https://example.com/x']}",
		  "{'target-uri':['https://example.com/X']}", false },
		{ "{'alias-name':['web','db']}", "{'alias-name':['db']}", true },
		{ "{'alias-name':['web']}", "{'alias-name':['Web']}", false },
		{ "{'alias-name':['web']}", "{'target-uri':['web']}", false },
		/* a target hit with disjoint protocols is no overlap */
		{ "{'alias-name':['web'],'target-protocol':[6]}",
		  "{'alias-name':['web'],'target-protocol':[17]}", false },
		{ "{'target-fqdn':['a.example'],'target-uri':['u'],"
		  "'alias-name':['x'],'target-prefix':['192.0.2.0/24'],"
		  "'target-port-range':[{'lower-port':53}],'target-protocol':[17]}",
		  "{'target-prefix':['10.0.0.0/8'],'alias-name':['x'],"
		  "'target-port-range':[{'lower-port':1,'upper-port':53}]}", true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *a = J(cases[i].a), *b = J(cases[i].b);
		struct model_scope_targets pa, pb;

		assert_int_equal(model_scope_targets_parse(a, &pa), 0);
		assert_int_equal(model_scope_targets_parse(b, &pb), 0);
		if (model_scope_overlap(a, b, NULL) != cases[i].overlap ||
		    model_scope_overlap(b, a, NULL) != cases[i].overlap)
			fail_msg("case %zu: JSON path does not give %d", i,
				 cases[i].overlap);
		if (model_scope_targets_overlap(&pa, &pb) != cases[i].overlap ||
		    model_scope_targets_overlap(&pb, &pa) != cases[i].overlap)
			fail_msg("case %zu: pre-parsed path does not give %d", i,
				 cases[i].overlap);
		model_scope_targets_free(&pa);
		model_scope_targets_free(&pb);
		json_decref(a);
		json_decref(b);
	}
}

static void test_overlap_preparsed_trigger_and_nul(void **state)
{
	json_t *f = J("{'target-prefix':['192.0.2.0/24'],'trigger-mitigation':false}");
	json_t *t = J("{'target-prefix':['192.0.2.0/24'],'trigger-mitigation':true}");
	json_t *d = J("{'target-prefix':['192.0.2.0/24']}");
	struct model_scope_targets pf, pt, pd;

	(void)state;
	assert_int_equal(model_scope_targets_parse(f, &pf), 0);
	assert_int_equal(model_scope_targets_parse(t, &pt), 0);
	assert_int_equal(model_scope_targets_parse(d, &pd), 0);
	assert_true(pf.object);
	assert_false(pf.trigger);
	assert_true(pt.trigger);
	assert_true(pd.trigger);
	model_scope_targets_free(&pf);
	assert_null(pf.mem);
	assert_false(pf.object);
	model_scope_targets_free(&pt);
	model_scope_targets_free(&pd);
	json_decref(f);
	json_decref(t);
	json_decref(d);

	/* Strings with a NUL inside (CBOR allows them) match nothing. */
	json_t *n = json_pack("{s:[s#],s:[s#],s:[s#],s:[s#]}",
			      "target-prefix", "192.0.2.0/24\0x", (size_t)14,
			      "target-fqdn", "a\0b", (size_t)3,
			      "target-uri", "u\0v", (size_t)3,
			      "alias-name", "w\0x", (size_t)3);
	assert_non_null(n);
	assert_false(model_scope_overlap(n, n, NULL));
	assert_int_equal(model_scope_targets_parse(n, &pd), 0);
	assert_true(pd.object);
	assert_int_equal(pd.nprefixes + pd.nfqdns + pd.nuris + pd.naliases, 0);
	assert_false(model_scope_targets_overlap(&pd, &pd));
	model_scope_targets_free(&pd);
	json_decref(n);
}

struct test_policy {
	struct model_scope_policy pol;
	char *fqdns[2];
	char *uris[1];
	struct port_range ports[2];
};

static void policy_init(struct test_policy *t, bool with_ports)
{
	static char fqdn0[] = "example.com", fqdn1[] = "*.example.org.";
	static char uri0[] = "https://example.com";
	struct prefix p;

	memset(t, 0, sizeof(*t));
	assert_int_equal(prefix_parse("192.0.2.0/24", false, &p), 0);
	assert_int_equal(prefix_set_add(&t->pol.prefixes, &p), 0);
	assert_int_equal(prefix_parse("2001:db8:6401::/48", false, &p), 0);
	assert_int_equal(prefix_set_add(&t->pol.prefixes, &p), 0);
	t->fqdns[0] = fqdn0;
	t->fqdns[1] = fqdn1;
	t->pol.fqdns = t->fqdns;
	t->pol.nfqdns = 2;
	t->uris[0] = uri0;
	t->pol.uris = t->uris;
	t->pol.nuris = 1;
	t->ports[0] = (struct port_range){ 80, 443 };
	t->ports[1] = (struct port_range){ 8000, 8999 };
	t->pol.ports = t->ports;
	t->pol.nports = with_ports ? 2 : 0;
}

static void check_auth(const struct test_policy *t, const char *entry, int code,
		       const char *sub)
{
	struct dg_diag d = { "" };
	json_t *e = J(entry);

	expect_diag(model_scope_authorize(e, &t->pol, &d), code, &d, sub, entry);
	json_decref(e);
}

static void test_authorize(void **state)
{
	struct test_policy t;

	(void)state;
	policy_init(&t, true);
	check_auth(&t, "{'target-prefix':['192.0.2.128/25','2001:db8:6401:1::/64'],"
		   "'target-fqdn':['www.EXAMPLE.com','example.com.','a.b.example.org'],"
		   "'target-uri':['https://example.com/shop','https://example.com:8443/'],"
		   "'target-port-range':[{'lower-port':443},{'lower-port':8000,"
		   "'upper-port':8080}],'lifetime':1}", 0, "");
	check_auth(&t, "{'target-prefix':['192.0.2.0/24','198.51.100.0/24']}", 403,
		   "target-prefix 198.51.100.0/24 is outside this client's allowed scope");
	check_auth(&t, "{'target-prefix':['192.0.0.0/16']}", 403,
		   "target-prefix 192.0.0.0/16 is outside");
	check_auth(&t, "{'target-fqdn':['evilexample.com']}", 403,
		   "target-fqdn evilexample.com is outside");
	check_auth(&t, "{'target-fqdn':['example.org']}", 403,
		   "target-fqdn example.org is outside"); /* "*." = below only */
	check_auth(&t, "{'target-uri':['https://example.com.evil.net/']}", 403,
		   "target-uri https://example.com.evil.net/ is outside");
	check_auth(&t, "{'target-uri':['http://example.com/']}", 403,
		   "target-uri http://example.com/ is outside");
	check_auth(&t, "{'target-prefix':['192.0.2.0/24'],'target-port-range':"
		   "[{'lower-port':443,'upper-port':8000}]}", 403,
		   "target-port-range 443-8000 is outside");
	check_auth(&t, "{'alias-name':['web']}", 403,
		   "alias-name web: this client may not use aliases");
	t.pol.allow_aliases = true;
	check_auth(&t, "{'alias-name':['web']}", 0, "");
	prefix_set_free(&t.pol.prefixes);

	/* no port ranges configured: every port is fine */
	policy_init(&t, false);
	check_auth(&t, "{'target-prefix':['192.0.2.0/24'],'target-port-range':"
		   "[{'lower-port':0,'upper-port':65535}]}", 0, "");
	t.pol.nuris = 0;
	check_auth(&t, "{'target-uri':['https://example.com/']}", 403,
		   "target-uri https://example.com/ is outside");
	prefix_set_free(&t.pol.prefixes);
}

/* ---- session configuration --------------------------------------------- */

static const struct model_session_limits lim = {
	.min = { 15, 3, 5, 2, 100, 110 },
	.max = { 240, 20, 50, 15, 3000, 400 },
};

static void test_config_defaults_build(void **state)
{
	struct model_session_config c;
	json_t *b;
	char *s;

	(void)state;
	model_session_defaults(&c);
	assert_int_equal(c.mitigating.heartbeat_interval, 30);
	assert_int_equal(c.mitigating.missing_hb_allowed, 15);
	assert_int_equal(c.mitigating.probing_rate, 5);
	assert_int_equal(c.mitigating.max_retransmit, 3);
	assert_int_equal(c.mitigating.ack_timeout, 200);
	assert_int_equal(c.mitigating.ack_random_factor, 150);
	assert_memory_equal(&c.mitigating, &c.idle, sizeof(c.idle));

	c.idle.heartbeat_interval = 91;
	c.idle.ack_random_factor = 105;
	b = model_config_build(&c, &lim, &lim);
	assert_non_null(b);
	s = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(s);
	/* the exact member order of the RFC 9132 YANG */
#define SET(hb, arf)                                                                  \
	"{\"heartbeat-interval\":{\"max-value\":240,\"min-value\":15,\"current-value\":" hb "}," \
	"\"missing-hb-allowed\":{\"max-value\":20,\"min-value\":3,\"current-value\":15}," \
	"\"probing-rate\":{\"max-value\":50,\"min-value\":5,\"current-value\":5},"      \
	"\"max-retransmit\":{\"max-value\":15,\"min-value\":2,\"current-value\":3},"    \
	"\"ack-timeout\":{\"max-value-decimal\":\"30.00\",\"min-value-decimal\":\"1.00\"," \
	"\"current-value-decimal\":\"2.00\"},"                                          \
	"\"ack-random-factor\":{\"max-value-decimal\":\"4.00\",\"min-value-decimal\":\"1.10\"," \
	"\"current-value-decimal\":\"" arf "\"}}"
	assert_string_equal(s, "{\"ietf-dots-signal-channel:signal-config\":{"
			    "\"mitigating-config\":" SET("30", "1.50") ","
			    "\"idle-config\":" SET("91", "1.05") "}}");
#undef SET
	free(s);
	json_decref(b);
	assert_null(model_config_build(&c, NULL, &lim));
}

static void test_config_build_request(void **state)
{
	struct model_session_config c;
	json_t *b;
	char *s;

	(void)state;
	model_session_defaults(&c);
	c.mitigating.ack_timeout = 1234;
	b = model_config_build_request(&c);
	assert_non_null(b);
	s = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(s);
#define SET(at)                                                         \
	"{\"heartbeat-interval\":{\"current-value\":30},"               \
	"\"missing-hb-allowed\":{\"current-value\":15},"                \
	"\"probing-rate\":{\"current-value\":5},"                       \
	"\"max-retransmit\":{\"current-value\":3},"                     \
	"\"ack-timeout\":{\"current-value-decimal\":\"" at "\"},"       \
	"\"ack-random-factor\":{\"current-value-decimal\":\"1.50\"}}"
	assert_string_equal(s, "{\"ietf-dots-signal-channel:signal-config\":{"
			    "\"mitigating-config\":" SET("12.34") ","
			    "\"idle-config\":" SET("2.00") "}}");
#undef SET
	free(s);
	json_decref(b);
}

static int apply(const char *body, struct model_session_config *c,
		 struct dg_diag *d)
{
	json_t *b = J(body);
	int rc;

	d->text[0] = '\0';
	rc = model_config_apply(b, &lim, &lim, c, d);
	json_decref(b);
	return rc;
}

#define SC "{'ietf-dots-signal-channel:signal-config':"

static void test_config_apply_ok(void **state)
{
	struct model_session_config c, want;
	struct dg_diag d;

	(void)state;
	model_session_defaults(&c);
	want = c;
	/* one set alone, one parameter alone (RFC 9132 §4.5.2) */
	assert_int_equal(apply(SC "{'idle-config':{'heartbeat-interval':"
			       "{'current-value':240}}}}", &c, &d), 0);
	want.idle.heartbeat_interval = 240;
	assert_memory_equal(&c, &want, sizeof(c));

	assert_int_equal(apply(SC "{'mitigating-config':{"
			       "'ack-timeout':{'current-value-decimal':'3'},"
			       "'ack-random-factor':{'current-value-decimal':'1.1'},"
			       "'max-retransmit':{'current-value':15}},"
			       "'idle-config':{'ack-timeout':"
			       "{'current-value-decimal':'29.99'}}}}", &c, &d), 0);
	want.mitigating.ack_timeout = 300;
	want.mitigating.ack_random_factor = 110;
	want.mitigating.max_retransmit = 15;
	want.idle.ack_timeout = 2999;
	assert_memory_equal(&c, &want, sizeof(c));
}

static void check_apply(const char *body, int code, const char *sub)
{
	struct model_session_config c, before;
	struct dg_diag d;

	model_session_defaults(&c);
	c.idle.probing_rate = 7;
	before = c;
	expect_diag(apply(body, &c, &d), code, &d, sub, body);
	/* RFC contract: nothing merged unless everything was acceptable */
	assert_memory_equal(&c, &before, sizeof(c));
}

static void test_config_apply_400(void **state)
{
	(void)state;
	check_apply("{}", 400, "signal-config");
	check_apply("{'ietf-dots-signal-channel:heartbeat':{}}", 400, "signal-config");
	check_apply(SC "{}}", 400, "carries no parameter");
	check_apply(SC "{'idle-config':{},'mitigating-config':{}}}", 400,
		    "carries no parameter");
	check_apply(SC "{'idle-config':{'heartbeat-interval':"
		    "{'current-value':30,'min-value':15}}}}", 400,
		    "idle-config heartbeat-interval: min-value is the server's");
	check_apply(SC "{'idle-config':{'ack-timeout':{'current-value-decimal':'2.00',"
		    "'max-value-decimal':'9.00'}}}}", 400,
		    "ack-timeout: max-value-decimal is the server's");
	check_apply(SC "{'busy-config':{'heartbeat-interval':"
		    "{'current-value':30}}}}", 400, "unknown attribute busy-config");
	check_apply(SC "{'sid':1,'idle-config':{'heartbeat-interval':"
		    "{'current-value':30}}}}", 400, "unknown attribute sid");
	check_apply(SC "{'idle-config':{'heartbeat':{'current-value':30}}}}", 400,
		    "idle-config: unknown attribute heartbeat");
	check_apply(SC "{'idle-config':{'heartbeat-interval':{'current':30}}}}",
		    400, "unknown attribute current");
	check_apply(SC "{'idle-config':{'heartbeat-interval':{}}}}", 400,
		    "current-value missing");
	check_apply(SC "{'idle-config':{'heartbeat-interval':"
		    "{'current-value':'30'}}}}", 400, "current-value is not a uint16");
	check_apply(SC "{'idle-config':{'heartbeat-interval':"
		    "{'current-value':65536}}}}", 400, "not a uint16");
	check_apply(SC "{'idle-config':{'ack-timeout':"
		    "{'current-value-decimal':'2.005'}}}}", 400,
		    "ack-timeout: current-value-decimal is not a decimal");
	check_apply(SC "{'idle-config':{'ack-timeout':"
		    "{'current-value-decimal':2.5}}}}", 400, "not a decimal");
	check_apply(SC "{'idle-config':{'ack-timeout':"
		    "{'current-value-decimal':'2.'}}}}", 400, "not a decimal");
	check_apply(SC "{'idle-config':{'ack-timeout':"
		    "{'current-value':2}}}}", 400, "unknown attribute current-value");
	check_apply(SC "{'idle-config':[]}}", 400, "idle-config: not an object");
	/* a 400 anywhere wins over a 422 elsewhere */
	check_apply(SC "{'idle-config':{'heartbeat-interval':{'current-value':1},"
		    "'probing-rate':{'current-value':'x'}}}}", 400, "probing-rate");
}

static void test_config_apply_422(void **state)
{
	(void)state;
	check_apply(SC "{'mitigating-config':{'heartbeat-interval':"
		    "{'current-value':5}}}}", 422,
		    "mitigating-config heartbeat-interval: 5 is outside the acceptable range 15..240");
	check_apply(SC "{'idle-config':{'missing-hb-allowed':{'current-value':21}}}}",
		    422, "missing-hb-allowed: 21 is outside");
	check_apply(SC "{'idle-config':{'ack-timeout':"
		    "{'current-value-decimal':'0.50'}}}}", 422,
		    "idle-config ack-timeout: 0.50 is outside the acceptable range 1.00..30.00");
	check_apply(SC "{'idle-config':{'ack-random-factor':"
		    "{'current-value-decimal':'-1.5'}}}}", 422,
		    "ack-random-factor: -1.50 is outside");
	/* one good and one bad value: nothing is applied */
	check_apply(SC "{'idle-config':{'heartbeat-interval':{'current-value':60},"
		    "'max-retransmit':{'current-value':16}}}}", 422,
		    "max-retransmit: 16 is outside");
}

static void test_config_read(void **state)
{
	struct model_session_config c, back, before;
	struct dg_diag d = { "" };
	json_t *b;

	(void)state;
	model_session_defaults(&c);
	c.mitigating.heartbeat_interval = 15;
	c.idle.ack_timeout = 123;
	c.idle.probing_rate = 9;
	b = model_config_build(&c, &lim, &lim);
	assert_non_null(b);
	model_session_defaults(&back);
	assert_int_equal(model_config_read(b, &back, &d), 0);
	assert_memory_equal(&back, &c, sizeof(c));
	json_decref(b);

	/* a partial answer keeps the other values */
	model_session_defaults(&back);
	b = J(SC "{'idle-config':{'probing-rate':{'max-value':9,'current-value':8}}}}");
	assert_int_equal(model_config_read(b, &back, &d), 0);
	assert_int_equal(back.idle.probing_rate, 8);
	assert_int_equal(back.mitigating.probing_rate, 5);
	json_decref(b);

	before = back;
	b = J("{'ietf-dots-signal-channel:heartbeat':{'peer-hb-status':true}}");
	expect_diag(model_config_read(b, &back, &d), 400, &d, "signal-config",
		    "read heartbeat");
	json_decref(b);
	b = J(SC "{'idle-config':{'probing-rate':{'current-value':-1}}}}");
	expect_diag(model_config_read(b, &back, &d), 400, &d,
		    "probing-rate: current-value is not a uint16", "read -1");
	json_decref(b);
	b = J(SC "{'idle-config':{'ack-timeout':{'current-value-decimal':'-2.00'}}}}");
	expect_diag(model_config_read(b, &back, &d), 400, &d, "ack-timeout",
		    "read negative decimal");
	json_decref(b);
	assert_memory_equal(&back, &before, sizeof(back));
}

/* ---- heartbeat and redirect ---------------------------------------------- */

static void check_hb(const char *body, int code, bool want, const char *sub)
{
	struct dg_diag d = { "" };
	bool st = !want;
	json_t *b = J(body);

	expect_diag(model_check_heartbeat(b, &st, &d), code, &d, sub, body);
	if (code == 0)
		assert_int_equal(st, want);
	json_decref(b);
}

#define HB "'ietf-dots-signal-channel:heartbeat'"

static void test_heartbeat(void **state)
{
	json_t *b;
	char *s;

	(void)state;
	check_hb("{" HB ":{'peer-hb-status':true}}", 0, true, "");
	check_hb("{" HB ":{'peer-hb-status':false}}", 0, false, "");
	check_hb("{" HB ":{'peer-hb-status':1}}", 400, false, "peer-hb-status");
	check_hb("{" HB ":{}}", 400, false, "peer-hb-status");
	check_hb("{" HB ":{'peer-hb-status':true,'x':1}}", 400, false,
		 "exactly peer-hb-status");
	check_hb("{" HB ":{'peer-hb-status':true},'y':{}}", 400, false,
		 "exactly one member, heartbeat");
	check_hb("{'ietf-dots-signal-channel:redirected-signal':{}}", 400, false,
		 "heartbeat");
	check_hb("{" HB ":true}", 400, false, "heartbeat");

	b = model_build_heartbeat(true);
	s = json_dumps(b, JSON_COMPACT);
	assert_string_equal(s, "{\"ietf-dots-signal-channel:heartbeat\":"
			    "{\"peer-hb-status\":true}}");
	free(s);
	json_decref(b);
	b = model_build_heartbeat(false);
	expect_json(b, "{" HB ":{'peer-hb-status':false}}");
	json_decref(b);
}

#define RS "{'ietf-dots-signal-channel:redirected-signal':"

static void check_redirect(const char *body, int code, const char *sub,
			   const char *want_alt)
{
	struct dg_diag d = { "" };
	const char *alt = NULL;
	json_t *b = J(body);

	expect_diag(model_check_redirect(b, &alt, &d), code, &d, sub, body);
	if (code == 0)
		assert_string_equal(alt, want_alt);
	else
		assert_null(alt);
	json_decref(b);
}

static void test_redirect(void **state)
{
	(void)state;
	check_redirect(RS "{'alt-server':'alt.example.com',"
		       "'alt-server-record':['2001:db8:6401::1','192.0.2.1']}}",
		       0, "", "alt.example.com");
	check_redirect(RS "{'alt-server':'alt.example.com'}}", 0, "",
		       "alt.example.com");
	check_redirect(RS "{'alt-server-record':['192.0.2.1']}}", 400,
		       "alt-server: missing", NULL);
	check_redirect(RS "{'alt-server':''}}", 400, "alt-server: missing, empty",
		       NULL);
	check_redirect(RS "{'alt-server':7}}", 400, "alt-server", NULL);
	check_redirect(RS "{'alt-server':'a','alt-server-record':['a.b']}}", 400,
		       "alt-server-record[0]: not an IP address", NULL);
	check_redirect(RS "{'alt-server':'a','alt-server-record':'192.0.2.1'}}",
		       400, "alt-server-record: not an array", NULL);
	check_redirect(RS "{'alt-server':'a','ttl':5}}", 400,
		       "unknown attribute ttl", NULL);
	check_redirect("{'ietf-dots-signal-channel:heartbeat':{}}", 400,
		       "redirected-signal", NULL);
}

/* ---- queries and content selection -------------------------------------- */

static int query(struct model_query *q, struct dg_diag *d,
		 const char *const *qs, size_t n)
{
	d->text[0] = '\0';
	return model_parse_query(qs, n, q, d);
}

#define QUERY(q, d, ...) query(q, d, SEGS(__VA_ARGS__), NSEGS(__VA_ARGS__))

static void query_fails(const char *sub, const char *const *qs, size_t n)
{
	struct model_query q;
	struct dg_diag d;

	expect_diag(query(&q, &d, qs, n), 400, &d, sub, sub);
	assert_null(q.filter);
}

#define QUERY_FAILS(sub, ...) query_fails(sub, SEGS(__VA_ARGS__), NSEGS(__VA_ARGS__))

static void test_query_parse(void **state)
{
	struct model_query q;
	struct dg_diag d;

	(void)state;
	assert_int_equal(model_parse_query(NULL, 0, &q, &d), 0);
	assert_int_equal(q.content, MODEL_CONTENT_ALL);
	assert_null(q.filter);
	assert_int_equal(QUERY(&q, &d, "c=n"), 0);
	assert_int_equal(q.content, MODEL_CONTENT_NONCONFIG);
	assert_null(q.filter);
	assert_int_equal(QUERY(&q, &d, "c=c"), 0);
	assert_int_equal(q.content, MODEL_CONTENT_CONFIG);
	assert_int_equal(QUERY(&q, &d, "c=a"), 0);
	assert_int_equal(q.content, MODEL_CONTENT_ALL);

	assert_int_equal(QUERY(&q, &d, "target-prefix=2001:db8::/32,192.0.2.0/24",
			       "c=c", "target-port=80-443,8080",
			       "target-protocol=6,17", "target-fqdn=*.example.com",
			       "target-uri=https://example.com/a",
			       "target-alias=x", "target-protocol=1-2"), 0);
	assert_int_equal(q.content, MODEL_CONTENT_CONFIG);
	expect_json(q.filter,
		    "{'target-prefix':['2001:db8::/32','192.0.2.0/24'],"
		    "'target-port-range':[{'lower-port':80,'upper-port':443},"
		    "{'lower-port':8080}],'target-protocol':[6,17,1,2],"
		    "'target-fqdn':['*.example.com'],"
		    "'target-uri':['https://example.com/a'],'alias-name':['x']}");
	model_query_free(&q);
	assert_null(q.filter);
	model_query_free(&q);

	QUERY_FAILS("c: given twice", "c=n", "c=n");
	QUERY_FAILS("c: \"x\" is not a, c or n", "c=x");
	QUERY_FAILS("c: \"\" is not", "c=");
	QUERY_FAILS("mid: unknown query", "target-prefix=192.0.2.0/24", "mid=5");
	QUERY_FAILS("expected key=value", "target-prefix");
	QUERY_FAILS("target-prefix: empty value", "target-prefix=");
	QUERY_FAILS("target-prefix: empty value", "target-prefix=192.0.2.0/24,");
	QUERY_FAILS("target-fqdn: empty value", "target-fqdn=a.com,,b.com");
	QUERY_FAILS("target-prefix: \"1.2.3.4\" is malformed", "target-prefix=1.2.3.4");
	QUERY_FAILS("\"192.0.2.1/24\" is malformed", "target-prefix=192.0.2.1/24");
	QUERY_FAILS("target-port: \"443-80\"", "target-port=443-80");
	QUERY_FAILS("target-port: \"http\"", "target-port=http");
	QUERY_FAILS("target-protocol: \"300\"", "target-protocol=300");
	QUERY_FAILS("target-protocol: \"6-256\"", "target-protocol=6-256");
	QUERY_FAILS("target-fqdn: \"a.*.example.com\"", "target-fqdn=a.*.example.com");
	QUERY_FAILS("target-fqdn: \"*example.com\"", "target-fqdn=*example.com");
	QUERY_FAILS("target-uri: \"example.com\"", "target-uri=example.com");
	QUERY_FAILS("target-alias: \"a b\"", "target-alias=a b");
	QUERY_FAILS("Uri-Query: missing", "c=n", NULL);
}

static void check_match(const char *const *qs, size_t n, const char *entry,
			bool want)
{
	struct model_query q;
	struct dg_diag d;
	json_t *e = J(entry);

	assert_int_equal(query(&q, &d, qs, n), 0);
	if (model_query_match(&q, e) != want)
		fail_msg("%s against %s: expected %d", qs[0], entry, want);
	model_query_free(&q);
	json_decref(e);
}

#define MATCH(entry, want, ...) \
	check_match(SEGS(__VA_ARGS__), NSEGS(__VA_ARGS__), entry, want)

static void test_query_match(void **state)
{
	const char *e = "{'mid':1,'target-prefix':['192.0.2.0/24'],"
			"'target-port-range':[{'lower-port':80,'upper-port':443}],"
			"'target-protocol':[6],'target-fqdn':['www.example.com'],"
			"'alias-name':['web'],'status':'attack-stopped'}";
	const char *bare = "{'mid':2,'target-prefix':['198.51.100.0/24']}";

	(void)state;
	MATCH(e, true, "c=n");
	MATCH(e, true, "target-prefix=192.0.2.128/25");
	MATCH(e, true, "target-prefix=192.0.0.0/16");
	MATCH(e, true, "target-prefix=2001:db8::/32,192.0.2.7/32");
	MATCH(e, false, "target-prefix=198.51.100.0/24");
	MATCH(e, true, "target-port=443-500");
	MATCH(e, false, "target-port=8080,444-500");
	MATCH(e, true, "target-protocol=17,6");
	MATCH(e, false, "target-protocol=17");
	MATCH(e, true, "target-fqdn=*.example.com");
	MATCH(e, true, "target-fqdn=WWW.example.com.");
	MATCH(e, false, "target-fqdn=*.www.example.com"); /* apex not included */
	MATCH(e, false, "target-fqdn=example.com");
	MATCH(e, true, "target-alias=web");
	MATCH(e, false, "target-alias=db");
	MATCH(e, false, "target-uri=https://www.example.com/");
	/* every filter member must match */
	MATCH(e, true, "target-prefix=192.0.2.0/24", "target-port=80");
	MATCH(e, false, "target-prefix=192.0.2.0/24", "target-port=22");
	/* no ports or protocols in the entry means all of them */
	MATCH(bare, true, "target-port=22", "target-protocol=17");
	MATCH(bare, false, "target-fqdn=*.example.com");
}

static void test_entry_select(void **state)
{
	json_t *e = J("{'mid':7,'target-prefix':['192.0.2.0/24'],"
		      "'target-port-range':[{'lower-port':80}],'target-protocol':[6],"
		      "'target-fqdn':['a.example.com'],'target-uri':['https://a.example.com/'],"
		      "'alias-name':['web'],'lifetime':3599,'trigger-mitigation':true,"
		      "'ietf-dots-signal-control:acl-list':[{'acl-name':'x'}],"
		      "'ietf-dots-call-home:source-prefix':['203.0.113.0/24'],"
		      "'mitigation-start':'1507818393','status':'attack-successfully-mitigated',"
		      "'conflict-information':{'conflict-cause':'overlapping-targets'},"
		      "'bytes-dropped':'134334555','bps-dropped':'43344',"
		      "'pkts-dropped':'333334444','pps-dropped':'432432'}");
	json_t *s;

	(void)state;
	s = model_entry_select(e, MODEL_CONTENT_CONFIG);
	expect_json(s, "{'mid':7,'target-prefix':['192.0.2.0/24'],"
		    "'target-port-range':[{'lower-port':80}],'target-protocol':[6],"
		    "'target-fqdn':['a.example.com'],'target-uri':['https://a.example.com/'],"
		    "'alias-name':['web'],'lifetime':3599,'trigger-mitigation':true,"
		    "'ietf-dots-signal-control:acl-list':[{'acl-name':'x'}],"
		    "'ietf-dots-call-home:source-prefix':['203.0.113.0/24']}");
	json_decref(s);
	s = model_entry_select(e, MODEL_CONTENT_NONCONFIG);
	expect_json(s, "{'mid':7,'lifetime':3599,'mitigation-start':'1507818393',"
		    "'status':'attack-successfully-mitigated',"
		    "'conflict-information':{'conflict-cause':'overlapping-targets'},"
		    "'bytes-dropped':'134334555','bps-dropped':'43344',"
		    "'pkts-dropped':'333334444','pps-dropped':'432432'}");
	json_decref(s);
	s = model_entry_select(e, MODEL_CONTENT_ALL);
	assert_true(json_equal(s, e));
	assert_ptr_not_equal(s, e);
	/* a deep copy: changing it leaves the original alone */
	json_array_clear(json_object_get(s, "target-prefix"));
	assert_int_equal(json_array_size(json_object_get(e, "target-prefix")), 1);
	json_decref(s);
	assert_null(model_entry_select(NULL, MODEL_CONTENT_ALL));
	json_decref(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_mitigate_ok),
		cmocka_unit_test(test_uri_mitigate_bad),
		cmocka_unit_test(test_uri_config_hb),
		cmocka_unit_test(test_diag_sanitised),
		cmocka_unit_test(test_request_valid),
		cmocka_unit_test(test_request_structure),
		cmocka_unit_test(test_request_lifetime),
		cmocka_unit_test(test_request_targets),
		cmocka_unit_test(test_request_ports_protocols),
		cmocka_unit_test(test_request_fqdn_uri),
		cmocka_unit_test(test_request_server_only),
		cmocka_unit_test(test_request_attack_status),
		cmocka_unit_test(test_request_acl_list),
		cmocka_unit_test(test_scope_accessors),
		cmocka_unit_test(test_same_request),
		cmocka_unit_test(test_overlap_prefixes),
		cmocka_unit_test(test_overlap_ports_protocols),
		cmocka_unit_test(test_overlap_names),
		cmocka_unit_test(test_overlap_preparsed_same_as_json),
		cmocka_unit_test(test_overlap_preparsed_trigger_and_nul),
		cmocka_unit_test(test_authorize),
		cmocka_unit_test(test_config_defaults_build),
		cmocka_unit_test(test_config_build_request),
		cmocka_unit_test(test_config_apply_ok),
		cmocka_unit_test(test_config_apply_400),
		cmocka_unit_test(test_config_apply_422),
		cmocka_unit_test(test_config_read),
		cmocka_unit_test(test_heartbeat),
		cmocka_unit_test(test_redirect),
		cmocka_unit_test(test_query_parse),
		cmocka_unit_test(test_query_match),
		cmocka_unit_test(test_entry_select),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
