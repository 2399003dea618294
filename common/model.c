/*
 * model.c: DOTS signal-channel semantics on the RFC 7951 JSON model.
 *
 * Everything here is a pure function of its arguments: no state, no I/O,
 * no logging. Only the message-type names are taken from cbor.h; no cbor.c
 * symbol is used, so these checks can be tested on their own.
 */
#include "model.h"
#include "cbor.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest piece of peer input quoted in a diagnostic. */
#define MODEL_QUOTE "%.64s"

/* ---- small helpers ------------------------------------------------------ */

static int model_fail(struct dg_diag *diag, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 §4), else 0. */
static size_t model_utf8_len(const unsigned char *s)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0; /* overlong */
	else if (s[0] == 0xed)
		hi = 0x9f; /* surrogates */
	else if (s[0] == 0xf0)
		lo = 0x90; /* overlong */
	else if (s[0] == 0xf4)
		hi = 0x8f; /* beyond U+10FFFF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/*
 * Fills diag and returns code. The diagnostic payload must be UTF-8
 * (RFC 7252 §5.5.2) and quotes peer input, which may be anything and may
 * have been cut mid-character: control characters and every byte that is
 * not part of a well-formed sequence become '?'.
 */
static int model_fail(struct dg_diag *diag, int code, const char *fmt, ...)
{
	unsigned char *c;
	va_list ap;

	if (!diag)
		return code;
	va_start(ap, fmt);
	vsnprintf(diag->text, sizeof(diag->text), fmt, ap);
	va_end(ap);
	for (c = (unsigned char *)diag->text; *c;) {
		size_t n = model_utf8_len(c);

		if (n == 0 || *c < 0x20 || *c == 0x7f) {
			*c++ = '?';
			continue;
		}
		c += n;
	}
	return code;
}

static bool model_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool model_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char model_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* The C string of a JSON string without embedded NULs, else NULL. */
static const char *model_str(const json_t *j)
{
	const char *s;

	if (!json_is_string(j))
		return NULL;
	s = json_string_value(j);
	if (strlen(s) != json_string_length(j))
		return NULL;
	return s;
}

/* Non-empty, only visible ASCII, at most max bytes. */
static bool model_visible(const char *s, size_t max)
{
	size_t n;

	if (!s || !s[0])
		return false;
	for (n = 0; s[n]; n++)
		if (n >= max || s[n] < 0x21 || s[n] > 0x7e)
			return false;
	return true;
}

/* The value of the only member of body, which must be called name. */
static json_t *model_only_member(const json_t *body, const char *name)
{
	if (!json_is_object(body) || json_object_size(body) != 1)
		return NULL;
	return json_object_get(body, name);
}

/* JSON integer within [lo, hi]. */
static bool model_int_in(const json_t *j, json_int_t lo, json_int_t hi,
			 json_int_t *out)
{
	json_int_t v;

	if (!json_is_integer(j))
		return false;
	v = json_integer_value(j);
	if (v < lo || v > hi)
		return false;
	if (out)
		*out = v;
	return true;
}

static bool model_in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

#define MODEL_N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- names: FQDNs and URIs -------------------------------------------- */

/* LDH host name: labels of 1..63 letters, digits and inner hyphens, at
 * most 253 bytes, one optional trailing dot (RFC 1123 §2.1). */
static bool model_fqdn_valid(const char *s)
{
	size_t n, label = 0;

	if (!s)
		return false;
	n = strlen(s);
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? s[i] : '.';

		if (c == '.') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!model_is_alpha(c) && !model_is_digit(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		label++;
	}
	return true;
}

/* Length of a name without its single optional trailing dot. */
static size_t model_fqdn_len(const char *s)
{
	size_t n = strlen(s);

	return (n && s[n - 1] == '.') ? n - 1 : n;
}

static bool model_case_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (model_lower(a[i]) != model_lower(b[i]))
			return false;
	return true;
}

/* name is parent or (strict: only) one of its subdomains; DNS names
 * compare case-insensitively and the root dot does not matter. */
static bool model_fqdn_below(const char *name, const char *parent, bool strict)
{
	size_t ln = model_fqdn_len(name), lp = model_fqdn_len(parent);

	if (lp == 0)
		return false;
	if (ln == lp)
		return !strict && model_case_eq(name, parent, lp);
	return ln > lp && name[ln - lp - 1] == '.' &&
	       model_case_eq(name + ln - lp, parent, lp);
}

static bool model_fqdn_eq(const char *a, const char *b)
{
	return model_fqdn_below(a, b, false) &&
	       model_fqdn_len(a) == model_fqdn_len(b);
}

/* A pattern "*.example.com" (RFC 9244 leftmost wildcard) or a plain name. */
static bool model_fqdn_match(const char *pattern, const char *name)
{
	if (pattern[0] == '*' && pattern[1] == '.')
		return model_fqdn_below(name, pattern + 2, true);
	return model_fqdn_eq(pattern, name);
}

/*
 * A light RFC 3986 check: scheme "://" authority with a non-empty host,
 * visible ASCII only. DOTS servers resolve the host of a target-uri
 * (RFC 9132 §4.4.1.1), so a URI without one is useless.
 */
static bool model_uri_valid(const char *s)
{
	const char *p, *host, *end, *hend;

	if (!model_visible(s, 4096) || !model_is_alpha(s[0]))
		return false;
	for (p = s; model_is_alpha(*p) || model_is_digit(*p) || *p == '+' ||
		    *p == '-' || *p == '.'; p++)
		;
	if (strncmp(p, "://", 3) != 0)
		return false;
	host = p + 3;
	end = host + strcspn(host, "/?#");
	for (p = host; p < end; p++)
		if (*p == '@')
			host = p + 1; /* skip userinfo */
	if (host < end && *host == '[') {
		hend = memchr(host, ']', (size_t)(end - host));
		if (!hend || hend == host + 1)
			return false;
		hend++;
	} else {
		hend = memchr(host, ':', (size_t)(end - host));
		if (!hend)
			hend = end;
		if (hend == host)
			return false;
	}
	if (hend < end && *hend != ':')
		return false;
	for (p = hend < end ? hend + 1 : end; p < end; p++)
		if (!model_is_digit(*p))
			return false;
	return true;
}

/* ---- URIs (RFC 9132 §4.2) ------------------------------------------------ */

/* Decimal uint32 without sign or leading zeros (RFC 9132 §4.4.1.1 mid). */
static bool model_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	size_t n;

	if (!s[0] || (s[0] == '0' && s[1]))
		return false;
	for (n = 0; s[n]; n++) {
		if (!model_is_digit(s[n]) || n >= 10)
			return false;
		v = v * 10 + (uint64_t)(s[n] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Splits "name=value"; returns the value or NULL when there is no '='. */
static const char *model_seg_split(const char *seg, char *name, size_t len)
{
	const char *eq = strchr(seg, '=');
	size_t n;

	if (!eq)
		return NULL;
	n = (size_t)(eq - seg);
	if (n >= len)
		n = len - 1; /* long names are unknown anyway */
	memcpy(name, seg, n);
	name[n] = '\0';
	return eq + 1;
}

static int model_uri_id(const char *name, const char *val, char *dst,
			struct dg_diag *diag)
{
	/* RFC 9132 §4.4.1.1: empty values make the request invalid */
	if (!val[0])
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: empty value (RFC 9132 §4.4.1.1)", name);
	if (!model_visible(val, MODEL_ID_MAX))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: longer than %d bytes or not visible ASCII",
				  name, MODEL_ID_MAX);
	strcpy(dst, val);
	return 0;
}

static int model_parse_mitigate(const char *const *segs, size_t nsegs,
				struct model_uri *out, struct dg_diag *diag)
{
	for (size_t i = 3; i < nsegs; i++) {
		char name[8];
		const char *val = model_seg_split(segs[i], name, sizeof(name));
		int rc;

		if (!val)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "Uri-Path \"" MODEL_QUOTE "\": expected cdid=, cuid= or mid=",
					  segs[i]);
		if (strcmp(name, "cdid") == 0) {
			/* RFC 9132 §4.4.1.2: one cdid, before cuid */
			if (out->has_cdid || out->has_cuid || out->has_mid)
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "cdid: duplicate or after cuid (RFC 9132 §4.4.1.2)");
			rc = model_uri_id("cdid", val, out->cdid, diag);
			if (rc)
				return rc;
			out->has_cdid = true;
		} else if (strcmp(name, "cuid") == 0) {
			if (out->has_cuid || out->has_mid)
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "cuid: duplicate or after mid (RFC 9132 §4.4.1.1)");
			rc = model_uri_id("cuid", val, out->cuid, diag);
			if (rc)
				return rc;
			out->has_cuid = true;
		} else if (strcmp(name, "mid") == 0) {
			/* RFC 9132 §4.4.1.1: mid comes after cuid */
			if (out->has_mid || !out->has_cuid)
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "mid: duplicate or before cuid (RFC 9132 §4.4.1.1)");
			if (!model_parse_u32(val, &out->mid))
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "mid: \"" MODEL_QUOTE "\" is not a uint32 (RFC 9132 §4.4.1.1)",
						  val);
			out->has_mid = true;
		} else {
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "Uri-Path \"" MODEL_QUOTE "\": unknown segment",
					  segs[i]);
		}
	}
	if (!out->has_cuid) /* RFC 9132 §4.4.1.1: cuid is mandatory */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "cuid: missing from the Uri-Path (RFC 9132 §4.4.1.1)");
	return 0;
}

static int model_parse_config(const char *const *segs, size_t nsegs,
			      struct model_uri *out, struct dg_diag *diag)
{
	for (size_t i = 3; i < nsegs; i++) {
		char name[8];
		const char *val = model_seg_split(segs[i], name, sizeof(name));

		if (!val || strcmp(name, "sid") != 0)
			/* RFC 9132 §4.5.2: config is per session, no cuid */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "Uri-Path \"" MODEL_QUOTE "\": only sid= is allowed on config (RFC 9132 §4.5.2)",
					  segs[i]);
		if (out->has_sid)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "sid: duplicate");
		if (!model_parse_u32(val, &out->sid))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "sid: \"" MODEL_QUOTE "\" is not a uint32 (RFC 9132 §4.5.2)",
					  val);
		out->has_sid = true;
	}
	return 0;
}

int model_parse_uri(const char *const *segs, size_t nsegs,
		    struct model_uri *out, struct dg_diag *diag)
{
	if (!out)
		return model_fail(diag, DG_CODE_INTERNAL, "no output");
	memset(out, 0, sizeof(*out));
	if (!segs && nsegs)
		return model_fail(diag, DG_CODE_BAD_REQUEST, "no Uri-Path");
	for (size_t i = 0; i < nsegs; i++)
		if (!segs[i])
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "Uri-Path: missing segment");
	if (nsegs < 3 || strcmp(segs[0], ".well-known") != 0 ||
	    strcmp(segs[1], "dots") != 0)
		return model_fail(diag, DG_CODE_NOT_FOUND,
				  "Uri-Path: not under /.well-known/dots (RFC 9132 §4.2)");
	if (strcmp(segs[2], "mitigate") == 0) {
		out->res = MODEL_RES_MITIGATE;
		return model_parse_mitigate(segs, nsegs, out, diag);
	}
	if (strcmp(segs[2], "config") == 0) {
		out->res = MODEL_RES_CONFIG;
		return model_parse_config(segs, nsegs, out, diag);
	}
	if (strcmp(segs[2], "hb") == 0) {
		out->res = MODEL_RES_HB;
		if (nsegs > 3) /* RFC 9132 §4.7: no cuid, cdid or mid */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "hb: no Uri-Path segment may follow (RFC 9132 §4.7)");
		return 0;
	}
	return model_fail(diag, DG_CODE_NOT_FOUND,
			  "Uri-Path: unknown resource \"" MODEL_QUOTE "\"", segs[2]);
}

/* ---- mitigation requests (RFC 9132 §4.4.1) ------------------------------ */

/* Attributes only a server sends (RFC 9132 §4.4.1.1, YANG
 * "server-to-client-only"); a request carrying one is refused. */
static const char *const model_server_only[] = {
	"mid", "mitigation-start", "status", "conflict-information",
	"bytes-dropped", "bps-dropped", "pkts-dropped", "pps-dropped",
};

/* RFC 9132 attack-status labels (iana-dots-signal-channel). */
static const char *const model_attack_status[] = {
	"under-attack", "attack-successfully-mitigated",
};

/* RFC 9133 / RFC 8783 activation-type labels. */
static const char *const model_activation_types[] = {
	"activate-when-mitigating", "immediate", "deactivate",
};

#define MODEL_ACL_LIST "ietf-dots-signal-control:acl-list"
#define MODEL_CH_SRC_PREFIX "ietf-dots-call-home:source-prefix"
#define MODEL_CH_SRC_PORT "ietf-dots-call-home:source-port-range"
#define MODEL_CH_SRC_ICMP "ietf-dots-call-home:source-icmp-type-range"

static int model_check_array(const json_t *v, const char *attr,
			     struct dg_diag *diag)
{
	/* RFC 9132 §4.4.1.1: empty values make a request invalid */
	if (!json_is_array(v) || json_array_size(v) == 0)
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: must be a non-empty array (RFC 9132 §4.4.1.1)",
				  attr);
	return 0;
}

static int model_check_prefixes(const json_t *v, const char *attr, bool target,
				struct dg_diag *diag)
{
	size_t i;
	json_t *e;
	int rc = model_check_array(v, attr, diag);

	if (rc)
		return rc;
	json_array_foreach(v, i, e) {
		const char *s = model_str(e);
		struct prefix p;

		if (!s)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: not a string", attr, i);
		rc = prefix_parse(s, false, &p);
		if (rc == DG_ERANGE) /* RFC 6991 ip-prefix canonical form */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s " MODEL_QUOTE ": bits set beyond the prefix length",
					  attr, s);
		if (rc)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s \"" MODEL_QUOTE "\": not an IP prefix", attr, s);
		if (!target)
			continue;
		if (p.len == 0)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s " MODEL_QUOTE ": too broad to be a mitigation target",
					  attr, s);
		if (prefix_is_forbidden_target(&p)) /* RFC 9132 §4.4.1.1 */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s " MODEL_QUOTE ": loopback, multicast, broadcast or unspecified addresses are not valid targets (RFC 9132 §4.4.1.1)",
					  attr, s);
	}
	return 0;
}

/* A list of ranges keyed by lo (target-port-range, source-icmp-type-range). */
static int model_check_ranges(const json_t *v, const char *attr,
			      const char *lo, const char *hi, json_int_t max,
			      struct dg_diag *diag)
{
	size_t i, j;
	json_t *e;
	int rc = model_check_array(v, attr, diag);

	if (rc)
		return rc;
	json_array_foreach(v, i, e) {
		json_int_t l, h;
		const char *key;
		json_t *m;

		if (!json_is_object(e))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: not an object", attr, i);
		json_object_foreach(e, key, m)
			if (strcmp(key, lo) != 0 && strcmp(key, hi) != 0)
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "%s[%zu]: unknown attribute " MODEL_QUOTE,
						  attr, i, key);
		if (!model_int_in(json_object_get(e, lo), 0, max, &l))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: %s missing or not in 0..%d",
					  attr, i, lo, (int)max);
		h = l;
		m = json_object_get(e, hi);
		if (m && !model_int_in(m, 0, max, &h))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: %s not in 0..%d", attr, i, hi,
					  (int)max);
		if (h < l) /* YANG must: upper >= lower */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: %s %d is below %s %d", attr, i,
					  hi, (int)h, lo, (int)l);
		for (j = 0; j < i; j++) /* lo is the YANG list key */
			if (json_equal(json_object_get(json_array_get(v, j), lo),
				       json_object_get(e, lo)))
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "%s: duplicate %s %d", attr, lo,
						  (int)l);
	}
	return 0;
}

static int model_check_protocols(const json_t *v, struct dg_diag *diag)
{
	size_t i;
	json_t *e;
	int rc = model_check_array(v, "target-protocol", diag);

	if (rc)
		return rc;
	json_array_foreach(v, i, e)
		if (!model_int_in(e, 0, 255, NULL)) /* uint8 */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "target-protocol[%zu]: not a protocol number 0..255",
					  i);
	return 0;
}

enum model_name_kind { MODEL_NAME_FQDN, MODEL_NAME_URI, MODEL_NAME_ALIAS };

static int model_check_names(const json_t *v, const char *attr,
			     enum model_name_kind kind, struct dg_diag *diag)
{
	size_t i;
	json_t *e;
	int rc = model_check_array(v, attr, diag);

	if (rc)
		return rc;
	json_array_foreach(v, i, e) {
		const char *s = model_str(e);
		bool ok;

		if (!s || !s[0]) /* RFC 9132 §4.4.1.1: no empty values */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: not a non-empty string", attr, i);
		switch (kind) {
		case MODEL_NAME_FQDN:
			ok = model_fqdn_valid(s);
			break;
		case MODEL_NAME_URI:
			ok = model_uri_valid(s);
			break;
		default:
			ok = model_visible(s, 1024);
			break;
		}
		if (!ok)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s \"" MODEL_QUOTE "\": not a valid %s", attr, s,
					  kind == MODEL_NAME_FQDN ? "domain name" :
					  kind == MODEL_NAME_URI ? "URI" : "alias name");
	}
	return 0;
}

static int model_check_acl_list(const json_t *v, struct dg_diag *diag)
{
	const char *attr = MODEL_ACL_LIST;
	size_t i;
	json_t *e;
	int rc = model_check_array(v, attr, diag);

	if (rc)
		return rc;
	json_array_foreach(v, i, e) {
		const char *key, *s;
		json_t *m;

		if (!json_is_object(e))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: not an object", attr, i);
		json_object_foreach(e, key, m) {
			if (strcmp(key, "acl-name") == 0) {
				s = model_str(m);
				if (!s || !s[0]) /* the list key (RFC 9133) */
					return model_fail(diag, DG_CODE_BAD_REQUEST,
							  "%s[%zu]: acl-name must be a non-empty string",
							  attr, i);
			} else if (strcmp(key, "activation-type") == 0) {
				s = model_str(m);
				if (!s || !model_in_list(s, model_activation_types,
							 MODEL_N(model_activation_types)))
					return model_fail(diag, DG_CODE_BAD_REQUEST,
							  "%s[%zu]: activation-type is not a known activation type (RFC 9133)",
							  attr, i);
			} else {
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "%s[%zu]: unknown attribute " MODEL_QUOTE,
						  attr, i, key);
			}
		}
		if (!json_object_get(e, "acl-name"))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s[%zu]: acl-name missing (RFC 9133)", attr, i);
	}
	return 0;
}

static int model_check_scope_member(const char *key, const json_t *v,
				    enum model_put_kind kind,
				    struct dg_diag *diag)
{
	const char *s;

	if (strcmp(key, "target-prefix") == 0)
		return model_check_prefixes(v, key, true, diag);
	if (strcmp(key, "target-port-range") == 0)
		return model_check_ranges(v, key, "lower-port", "upper-port",
					  65535, diag);
	if (strcmp(key, "target-protocol") == 0)
		return model_check_protocols(v, diag);
	if (strcmp(key, "target-fqdn") == 0)
		return model_check_names(v, key, MODEL_NAME_FQDN, diag);
	if (strcmp(key, "target-uri") == 0)
		return model_check_names(v, key, MODEL_NAME_URI, diag);
	if (strcmp(key, "alias-name") == 0)
		return model_check_names(v, key, MODEL_NAME_ALIAS, diag);
	if (strcmp(key, "lifetime") == 0) {
		if (!json_is_integer(v))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "lifetime: not an integer (RFC 9132 §4.4.1.1)");
		if (json_integer_value(v) == 0)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "lifetime: 0 is not a valid lifetime (RFC 9132 §4.4.1.1)");
		if (json_integer_value(v) != -1 &&
		    !model_int_in(v, 1, UINT32_MAX, NULL))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "lifetime: %lld is neither -1 nor a uint32 (RFC 9132 §4.4.1.1)",
					  (long long)json_integer_value(v));
		return 0;
	}
	if (strcmp(key, "trigger-mitigation") == 0) {
		if (!json_is_boolean(v))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "trigger-mitigation: not a boolean");
		return 0;
	}
	if (strcmp(key, "attack-status") == 0) {
		/* RFC 9132 §4.4.3: only in an efficacy update */
		if (kind != MODEL_PUT_EFFICACY)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "attack-status: only allowed in an efficacy update (RFC 9132 §4.4.3)");
		s = model_str(v);
		if (!s || !model_in_list(s, model_attack_status,
					 MODEL_N(model_attack_status)))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "attack-status: not a known attack status (RFC 9132 §4.4.3)");
		return 0;
	}
	if (strcmp(key, MODEL_ACL_LIST) == 0)
		return model_check_acl_list(v, diag);
	if (strcmp(key, MODEL_CH_SRC_PREFIX) == 0)
		return model_check_prefixes(v, key, false, diag);
	if (strcmp(key, MODEL_CH_SRC_PORT) == 0)
		return model_check_ranges(v, key, "lower-port", "upper-port",
					  65535, diag);
	if (strcmp(key, MODEL_CH_SRC_ICMP) == 0)
		return model_check_ranges(v, key, "lower-type", "upper-type",
					  255, diag);
	if (model_in_list(key, model_server_only, MODEL_N(model_server_only)))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: only a server sends this attribute (RFC 9132 §4.4.1.1)",
				  key);
	if (strcmp(key, "cuid") == 0 || strcmp(key, "cdid") == 0)
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: belongs in the Uri-Path, never in a body (RFC 9132 §4.4.1.1)",
				  key);
	return model_fail(diag, DG_CODE_BAD_REQUEST,
			  MODEL_QUOTE ": unknown attribute in a scope entry (RFC 9132 §6)",
			  key);
}

int model_check_mitigation_request(const json_t *body, enum model_put_kind kind,
				   struct dg_diag *diag)
{
	json_t *ms, *scope, *entry, *v;
	const char *key;
	int rc;

	ms = model_only_member(body, CBOR_MSG_MITIGATION);
	if (!ms)
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "body: must hold exactly one member, mitigation-scope (RFC 9132 §4.4.1.1)");
	if (!json_is_object(ms))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "mitigation-scope: not an object");
	json_object_foreach(ms, key, v)
		if (strcmp(key, "scope") != 0)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "mitigation-scope: unknown attribute " MODEL_QUOTE,
					  key);
	scope = json_object_get(ms, "scope");
	if (!json_is_array(scope) || json_array_size(scope) == 0)
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "scope: missing or empty (RFC 9132 §4.4.1.1)");
	if (json_array_size(scope) != 1) /* RFC 9132 §4.4.1.1 */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "scope: %zu entries, a request carries exactly one (RFC 9132 §4.4.1.1)",
				  json_array_size(scope));
	entry = json_array_get(scope, 0);
	if (!json_is_object(entry))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "scope[0]: not an object");
	json_object_foreach(entry, key, v) {
		rc = model_check_scope_member(key, v, kind, diag);
		if (rc)
			return rc;
	}
	/* RFC 9132 §4.4.1.1: at least one target */
	if (!json_object_get(entry, "target-prefix") &&
	    !json_object_get(entry, "target-fqdn") &&
	    !json_object_get(entry, "target-uri") &&
	    !json_object_get(entry, "alias-name"))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "scope: needs one of target-prefix, target-fqdn, target-uri or alias-name (RFC 9132 §4.4.1.1)");
	if (!json_object_get(entry, "lifetime")) /* RFC 9132 §4.4.1.1 */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "lifetime: mandatory in a mitigation request (RFC 9132 §4.4.1.1)");
	if (kind == MODEL_PUT_EFFICACY && !json_object_get(entry, "attack-status"))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "attack-status: mandatory in an efficacy update (RFC 9132 §4.4.3)");
	return 0;
}

json_t *model_scope_entry(const json_t *body)
{
	json_t *scope = json_object_get(json_object_get(body, CBOR_MSG_MITIGATION),
					"scope");

	if (!json_is_array(scope) || json_array_size(scope) != 1 ||
	    !json_is_object(json_array_get(scope, 0)))
		return NULL;
	return json_array_get(scope, 0);
}

int64_t model_scope_lifetime(const json_t *entry)
{
	json_t *v = json_object_get(entry, "lifetime");
	json_int_t l;

	if (v && model_int_in(v, -1, UINT32_MAX, &l))
		return l;
	return 3600; /* YANG default, RFC 9132 Appendix C */
}

bool model_scope_trigger(const json_t *entry)
{
	json_t *v = json_object_get(entry, "trigger-mitigation");

	return !json_is_false(v); /* YANG default true */
}

static bool model_refresh_ignored(const char *key)
{
	/* RFC 9132 §4.4.1.3, §4.4.3: only these may change on a refresh */
	return strcmp(key, "lifetime") == 0 || strcmp(key, "attack-status") == 0;
}

bool model_scope_same_request(const json_t *a, const json_t *b)
{
	size_t na = 0, nb = 0;
	const char *key;
	json_t *v;

	if (!json_is_object(a) || !json_is_object(b))
		return false;
	json_object_foreach((json_t *)a, key, v) {
		if (model_refresh_ignored(key))
			continue;
		if (!json_equal(v, json_object_get(b, key)))
			return false;
		na++;
	}
	json_object_foreach((json_t *)b, key, v)
		if (!model_refresh_ignored(key))
			nb++;
	return na == nb;
}

/* ---- overlap (RFC 9132 §4.4.1.3) ----------------------------------------- */

/* A list member, or NULL when absent or not a non-empty array. */
static json_t *model_list(const json_t *entry, const char *name)
{
	json_t *v = json_object_get(entry, name);

	return (json_is_array(v) && json_array_size(v)) ? v : NULL;
}

static bool model_range_get(const json_t *o, const char *lo, const char *hi,
			    struct port_range *out)
{
	json_int_t l, h;
	json_t *m = json_object_get(o, hi);

	if (!model_int_in(json_object_get(o, lo), 0, 65535, &l))
		return false;
	h = l;
	if (m && !model_int_in(m, 0, 65535, &h))
		return false;
	if (h < l)
		return false;
	out->lower = (uint16_t)l;
	out->upper = (uint16_t)h;
	return true;
}

enum model_hit_kind {
	MODEL_HIT_PREFIX, MODEL_HIT_FQDN, MODEL_HIT_FQDN_PATTERN, MODEL_HIT_EXACT,
	MODEL_HIT_PORT, MODEL_HIT_PROTO,
};

/* Does the single value x overlap some member of list? For
 * MODEL_HIT_FQDN_PATTERN, list members are the patterns. */
static bool model_hit(const json_t *list, const json_t *x, enum model_hit_kind k)
{
	struct prefix px, py;
	struct port_range rx, ry;
	const char *sx = model_str(x), *sy;
	size_t i;
	json_t *y;

	if (k == MODEL_HIT_PREFIX && (!sx || prefix_parse(sx, true, &px)))
		return false;
	if (k == MODEL_HIT_PORT &&
	    !model_range_get(x, "lower-port", "upper-port", &rx))
		return false;
	json_array_foreach(list, i, y) {
		sy = model_str(y);
		switch (k) {
		case MODEL_HIT_PREFIX:
			if (sy && !prefix_parse(sy, true, &py) &&
			    prefix_overlaps(&px, &py))
				return true;
			break;
		case MODEL_HIT_FQDN:
			if (sx && sy && model_fqdn_eq(sx, sy))
				return true;
			break;
		case MODEL_HIT_FQDN_PATTERN:
			if (sx && sy && model_fqdn_match(sy, sx))
				return true;
			break;
		case MODEL_HIT_EXACT:
			if (sx && sy && strcmp(sx, sy) == 0)
				return true;
			break;
		case MODEL_HIT_PORT:
			if (model_range_get(y, "lower-port", "upper-port", &ry) &&
			    port_range_overlaps(&rx, &ry))
				return true;
			break;
		case MODEL_HIT_PROTO:
			if (json_is_integer(x) && json_is_integer(y) &&
			    json_integer_value(x) == json_integer_value(y))
				return true;
			break;
		}
	}
	return false;
}

/* Some member of b's list overlaps some member of a's list. */
static bool model_any_hit(const json_t *a, const json_t *b, const char *name,
			  enum model_hit_kind k)
{
	json_t *la = model_list(a, name), *lb = model_list(b, name), *x;
	size_t i;

	if (!la || !lb)
		return false;
	json_array_foreach(lb, i, x)
		if (model_hit(la, x, k))
			return true;
	return false;
}

static const struct {
	const char *name;
	enum model_hit_kind kind;
	bool target; /* a target (needs a hit) or a qualifier (absent = all) */
} model_overlap_attrs[] = {
	{ "target-prefix", MODEL_HIT_PREFIX, true },
	{ "target-fqdn", MODEL_HIT_FQDN, true },
	{ "target-uri", MODEL_HIT_EXACT, true },
	{ "alias-name", MODEL_HIT_EXACT, true },
	{ "target-port-range", MODEL_HIT_PORT, false },
	{ "target-protocol", MODEL_HIT_PROTO, false },
};

/* conflict-scope: b's members that overlap a (RFC 9132 §4.4.1.3). */
static json_t *model_conflict_build(const json_t *a, const json_t *b)
{
	json_t *cs = json_object();

	if (!cs)
		return NULL;
	for (size_t k = 0; k < MODEL_N(model_overlap_attrs); k++) {
		const char *name = model_overlap_attrs[k].name;
		json_t *la = model_list(a, name), *lb = model_list(b, name);
		json_t *out, *x;
		size_t i;

		if (!la || !lb)
			continue;
		out = json_array();
		if (!out)
			goto fail;
		json_array_foreach(lb, i, x)
			if (model_hit(la, x, model_overlap_attrs[k].kind) &&
			    json_array_append_new(out, json_deep_copy(x)))
				goto fail_out;
		if (json_array_size(out) == 0) {
			json_decref(out);
			continue;
		}
		if (json_object_set_new(cs, name, out))
			goto fail;
		continue;
fail_out:
		json_decref(out);
		goto fail;
	}
	return cs;
fail:
	json_decref(cs);
	return NULL;
}

bool model_scope_overlap(const json_t *a, const json_t *b,
			 json_t **conflict_scope)
{
	bool targets = false;

	if (conflict_scope)
		*conflict_scope = NULL;
	if (!json_is_object(a) || !json_is_object(b))
		return false;
	for (size_t k = 0; k < MODEL_N(model_overlap_attrs); k++) {
		const char *name = model_overlap_attrs[k].name;
		bool hit = model_any_hit(a, b, name, model_overlap_attrs[k].kind);

		if (model_overlap_attrs[k].target) {
			targets = targets || hit;
		} else if (model_list(a, name) && model_list(b, name) && !hit) {
			/* both restrict ports (or protocols), disjointly */
			return false;
		}
	}
	if (!targets)
		return false;
	if (conflict_scope)
		*conflict_scope = model_conflict_build(a, b);
	return true;
}

/* ---- pre-parsed overlap (same rule as model_scope_overlap) --------------- */

/* The members the overlap rule reads (model_overlap_attrs). */
enum { MODEL_T_PREFIX, MODEL_T_PORT, MODEL_T_PROTO, MODEL_T_FQDN, MODEL_T_URI,
       MODEL_T_ALIAS, MODEL_T_N };
static const char *const model_target_names[MODEL_T_N] = {
	"target-prefix", "target-port-range", "target-protocol", "target-fqdn",
	"target-uri", "alias-name",
};

/* Bytes the valid strings of a list need, with their NULs. */
static size_t model_list_bytes(const json_t *l)
{
	json_t *y;
	size_t i, n = 0;
	const char *s;

	json_array_foreach(l, i, y)
		if ((s = model_str(y)))
			n += strlen(s) + 1;
	return n;
}

/* Copies the valid strings of a list into *pool; FQDNs are lowered and
 * lose their root dot so that equality is memcmp (model_fqdn_eq). */
static size_t model_list_strings(const json_t *l, bool fqdn, const char **v,
				 size_t *lens, char **pool)
{
	json_t *y;
	size_t i, n = 0;
	const char *s;

	json_array_foreach(l, i, y) {
		if (!(s = model_str(y)))
			continue;
		size_t len = fqdn ? model_fqdn_len(s) : strlen(s);
		if (fqdn && len == 0)
			continue; /* "." equals nothing */
		for (size_t k = 0; k < len; k++)
			(*pool)[k] = fqdn ? model_lower(s[k]) : s[k];
		(*pool)[len] = '\0';
		v[n] = *pool;
		if (lens)
			lens[n] = len;
		n++;
		*pool += len + 1;
	}
	return n;
}

int model_scope_targets_parse(const json_t *entry,
			      struct model_scope_targets *out)
{
	json_t *l[MODEL_T_N] = { NULL }, *v, *y;
	size_t n[MODEL_T_N] = { 0 }, size, chars, i;
	bool trigger = true; /* YANG default, as model_scope_trigger() */
	const char *key;
	char *p;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(entry))
		return 0;
	/* One walk over the members rather than a lookup per name: this
	 * runs on every installation and refresh. */
	json_object_foreach((json_t *)entry, key, v) {
		if (strcmp(key, "trigger-mitigation") == 0) {
			trigger = !json_is_false(v);
			continue;
		}
		for (int k = 0; k < MODEL_T_N; k++) {
			if (strcmp(key, model_target_names[k]) != 0)
				continue;
			/* as model_list(): only a non-empty array counts */
			if (json_is_array(v) && json_array_size(v)) {
				l[k] = v;
				n[k] = json_array_size(v);
			}
			break;
		}
	}
	chars = model_list_bytes(l[MODEL_T_FQDN]) +
		model_list_bytes(l[MODEL_T_URI]) +
		model_list_bytes(l[MODEL_T_ALIAS]);
	/* Most aligned first: one block, one free. */
	size = n[MODEL_T_PROTO] * sizeof(json_int_t) +
	       (n[MODEL_T_FQDN] + n[MODEL_T_URI] + n[MODEL_T_ALIAS]) * sizeof(char *) +
	       n[MODEL_T_FQDN] * sizeof(size_t) +
	       n[MODEL_T_PORT] * sizeof(struct port_range) +
	       n[MODEL_T_PREFIX] * sizeof(struct prefix) + chars;
	out->mem = malloc(size ? size : 1); /* no arithmetic on NULL below */
	if (!out->mem)
		return DG_ENOMEM;
	p = out->mem;
	out->object = true;
	out->trigger = trigger;
	out->protocols = (json_int_t *)(void *)p;
	p += n[MODEL_T_PROTO] * sizeof(json_int_t);
	out->fqdns = (const char **)(void *)p;
	p += n[MODEL_T_FQDN] * sizeof(char *);
	out->uris = (const char **)(void *)p;
	p += n[MODEL_T_URI] * sizeof(char *);
	out->aliases = (const char **)(void *)p;
	p += n[MODEL_T_ALIAS] * sizeof(char *);
	out->fqdn_lens = (size_t *)(void *)p;
	p += n[MODEL_T_FQDN] * sizeof(size_t);
	out->ports = (struct port_range *)(void *)p;
	p += n[MODEL_T_PORT] * sizeof(struct port_range);
	out->prefixes = (struct prefix *)(void *)p;
	p += n[MODEL_T_PREFIX] * sizeof(struct prefix);

	json_array_foreach(l[MODEL_T_PREFIX], i, y) {
		const char *s = model_str(y);
		if (s && !prefix_parse(s, true, &out->prefixes[out->nprefixes]))
			out->nprefixes++;
	}
	out->has_ports = l[MODEL_T_PORT] != NULL;
	json_array_foreach(l[MODEL_T_PORT], i, y)
		if (model_range_get(y, "lower-port", "upper-port",
				    &out->ports[out->nports]))
			out->nports++;
	out->has_protocols = l[MODEL_T_PROTO] != NULL;
	json_array_foreach(l[MODEL_T_PROTO], i, y)
		if (json_is_integer(y))
			out->protocols[out->nprotocols++] = json_integer_value(y);
	out->nfqdns = model_list_strings(l[MODEL_T_FQDN], true, out->fqdns,
					 out->fqdn_lens, &p);
	out->nuris = model_list_strings(l[MODEL_T_URI], false, out->uris, NULL,
					&p);
	out->naliases = model_list_strings(l[MODEL_T_ALIAS], false,
					   out->aliases, NULL, &p);
	return 0;
}

void model_scope_targets_free(struct model_scope_targets *t)
{
	free(t->mem);
	memset(t, 0, sizeof(*t));
}

static bool model_strs_hit(const char *const *a, size_t na,
			   const char *const *b, size_t nb)
{
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (strcmp(a[i], b[j]) == 0)
				return true;
	return false;
}

bool model_scope_targets_overlap(const struct model_scope_targets *a,
				 const struct model_scope_targets *b)
{
	bool hit = false;

	if (!a->object || !b->object)
		return false;
	/* Both restrict ports (or protocols): they must share one. */
	if (a->has_ports && b->has_ports) {
		for (size_t i = 0; i < a->nports && !hit; i++)
			for (size_t j = 0; j < b->nports && !hit; j++)
				hit = port_range_overlaps(&a->ports[i], &b->ports[j]);
		if (!hit)
			return false;
	}
	if (a->has_protocols && b->has_protocols) {
		hit = false;
		for (size_t i = 0; i < a->nprotocols && !hit; i++)
			for (size_t j = 0; j < b->nprotocols && !hit; j++)
				hit = a->protocols[i] == b->protocols[j];
		if (!hit)
			return false;
	}
	for (size_t i = 0; i < a->nprefixes; i++)
		for (size_t j = 0; j < b->nprefixes; j++)
			if (prefix_overlaps(&a->prefixes[i], &b->prefixes[j]))
				return true;
	for (size_t i = 0; i < a->nfqdns; i++)
		for (size_t j = 0; j < b->nfqdns; j++)
			if (a->fqdn_lens[i] == b->fqdn_lens[j] &&
			    memcmp(a->fqdns[i], b->fqdns[j], a->fqdn_lens[i]) == 0)
				return true;
	return model_strs_hit(a->uris, a->nuris, b->uris, b->nuris) ||
	       model_strs_hit(a->aliases, a->naliases, b->aliases, b->naliases);
}

/* ---- authorization ------------------------------------------------------- */

static bool model_policy_fqdn(const struct model_scope_policy *pol, const char *s)
{
	for (size_t i = 0; i < pol->nfqdns; i++) {
		const char *f = pol->fqdns[i];

		if (!f)
			continue;
		if (f[0] == '*' && f[1] == '.') {
			if (model_fqdn_below(s, f + 2, true))
				return true;
		} else if (model_fqdn_below(s, f, false)) {
			return true;
		}
	}
	return false;
}

static bool model_policy_uri(const struct model_scope_policy *pol, const char *s)
{
	for (size_t i = 0; i < pol->nuris; i++) {
		const char *u = pol->uris[i];
		size_t n;

		if (!u || !u[0])
			continue;
		n = strlen(u);
		if (strncmp(s, u, n) != 0)
			continue;
		/* "https://example.com" must not admit
		 * "https://example.com.attacker.net/": the match has to end at
		 * a URI delimiter unless the policy entry itself does. */
		if (u[n - 1] == '/' || s[n] == '\0' || s[n] == '/' ||
		    s[n] == '?' || s[n] == '#' || s[n] == ':')
			return true;
	}
	return false;
}

int model_scope_authorize(const json_t *entry,
			  const struct model_scope_policy *policy,
			  struct dg_diag *diag)
{
	json_t *l, *v;
	size_t i;

	if (!json_is_object(entry) || !policy)
		return model_fail(diag, DG_CODE_FORBIDDEN, "no scope to authorize");
	l = model_list(entry, "target-prefix");
	json_array_foreach(l, i, v) {
		const char *s = model_str(v);
		struct prefix p;

		if (!s || prefix_parse(s, false, &p) ||
		    !prefix_set_contains(&policy->prefixes, &p))
			return model_fail(diag, DG_CODE_FORBIDDEN,
					  "target-prefix " MODEL_QUOTE " is outside this client's allowed scope",
					  s ? s : "?");
	}
	l = model_list(entry, "target-fqdn");
	json_array_foreach(l, i, v) {
		const char *s = model_str(v);

		if (!s || !model_policy_fqdn(policy, s))
			return model_fail(diag, DG_CODE_FORBIDDEN,
					  "target-fqdn " MODEL_QUOTE " is outside this client's allowed scope",
					  s ? s : "?");
	}
	l = model_list(entry, "target-uri");
	json_array_foreach(l, i, v) {
		const char *s = model_str(v);

		if (!s || !model_policy_uri(policy, s))
			return model_fail(diag, DG_CODE_FORBIDDEN,
					  "target-uri " MODEL_QUOTE " is outside this client's allowed scope",
					  s ? s : "?");
	}
	l = model_list(entry, "target-port-range");
	json_array_foreach(l, i, v) {
		struct port_range r;
		bool ok = false;

		if (!model_range_get(v, "lower-port", "upper-port", &r))
			return model_fail(diag, DG_CODE_FORBIDDEN,
					  "target-port-range[%zu] is malformed", i);
		for (size_t k = 0; k < policy->nports && !ok; k++)
			ok = port_range_contains(&policy->ports[k], &r);
		if (!ok && policy->nports)
			return model_fail(diag, DG_CODE_FORBIDDEN,
					  "target-port-range %u-%u is outside this client's allowed scope",
					  r.lower, r.upper);
	}
	l = model_list(entry, "alias-name");
	if (l && !policy->allow_aliases)
		return model_fail(diag, DG_CODE_FORBIDDEN,
				  "alias-name " MODEL_QUOTE ": this client may not use aliases",
				  model_str(json_array_get(l, 0)) ?
				  model_str(json_array_get(l, 0)) : "?");
	return 0;
}

/* ---- session configuration (RFC 9132 §4.5) -------------------------------- */

struct model_param {
	const char *name;
	size_t off;
	bool decimal; /* decimal64 with 2 fraction digits, in hundredths */
};

/* In the YANG (and so the wire) order. */
static const struct model_param model_params[] = {
	{ "heartbeat-interval",
	  offsetof(struct model_session_params, heartbeat_interval), false },
	{ "missing-hb-allowed",
	  offsetof(struct model_session_params, missing_hb_allowed), false },
	{ "probing-rate", offsetof(struct model_session_params, probing_rate),
	  false },
	{ "max-retransmit",
	  offsetof(struct model_session_params, max_retransmit), false },
	{ "ack-timeout", offsetof(struct model_session_params, ack_timeout),
	  true },
	{ "ack-random-factor",
	  offsetof(struct model_session_params, ack_random_factor), true },
};

static uint32_t model_param_get(const struct model_session_params *p,
				const struct model_param *d)
{
	uint32_t v;

	memcpy(&v, (const char *)p + d->off, sizeof(v));
	return v;
}

static void model_param_set(struct model_session_params *p,
			    const struct model_param *d, uint32_t v)
{
	memcpy((char *)p + d->off, &v, sizeof(v));
}

void model_session_defaults(struct model_session_config *out)
{
	/* RFC 9132 Appendix C */
	static const struct model_session_params def = {
		.heartbeat_interval = 30,
		.missing_hb_allowed = 15,
		.probing_rate = 5,
		.max_retransmit = 3,
		.ack_timeout = 200,
		.ack_random_factor = 150,
	};

	if (!out)
		return;
	out->mitigating = def;
	out->idle = def;
}

static json_t *model_value(uint32_t v, bool decimal)
{
	char buf[24];

	if (!decimal)
		return json_integer(v);
	snprintf(buf, sizeof(buf), "%u.%02u", (unsigned)(v / 100),
		 (unsigned)(v % 100));
	return json_string(buf);
}

/* One of mitigating-config / idle-config; lim NULL = current values only. */
static json_t *model_config_set(const struct model_session_params *cur,
				const struct model_session_limits *lim)
{
	json_t *set = json_object();

	if (!set)
		return NULL;
	for (size_t i = 0; i < MODEL_N(model_params); i++) {
		const struct model_param *d = &model_params[i];
		json_t *p = json_object();

		if (!p || json_object_set_new(set, d->name, p))
			goto fail;
		if (lim &&
		    (json_object_set_new(p, d->decimal ? "max-value-decimal" : "max-value",
					 model_value(model_param_get(&lim->max, d), d->decimal)) ||
		     json_object_set_new(p, d->decimal ? "min-value-decimal" : "min-value",
					 model_value(model_param_get(&lim->min, d), d->decimal))))
			goto fail;
		if (json_object_set_new(p, d->decimal ? "current-value-decimal" : "current-value",
					model_value(model_param_get(cur, d), d->decimal)))
			goto fail;
	}
	return set;
fail:
	json_decref(set);
	return NULL;
}

static json_t *model_config_wrap(const struct model_session_config *cur,
				 const struct model_session_limits *mit,
				 const struct model_session_limits *idle)
{
	json_t *sc = json_object(), *body;

	if (!sc)
		return NULL;
	if (json_object_set_new(sc, "mitigating-config",
				model_config_set(&cur->mitigating, mit)) ||
	    json_object_set_new(sc, "idle-config",
				model_config_set(&cur->idle, idle))) {
		json_decref(sc);
		return NULL;
	}
	body = json_object();
	if (!body || json_object_set_new(body, CBOR_MSG_CONFIG, sc)) {
		json_decref(body);
		return NULL;
	}
	return body;
}

json_t *model_config_build(const struct model_session_config *cur,
			   const struct model_session_limits *mitigating,
			   const struct model_session_limits *idle)
{
	if (!cur || !mitigating || !idle)
		return NULL;
	return model_config_wrap(cur, mitigating, idle);
}

json_t *model_config_build_request(const struct model_session_config *want)
{
	if (!want)
		return NULL;
	return model_config_wrap(want, NULL, NULL);
}

/* "2", "1.5" or "1.50" (decimal64, fraction-digits 2) in hundredths. */
static bool model_decimal_parse(const char *s, int64_t *out)
{
	int64_t v = 0;
	bool neg = false;
	size_t n = 0, frac = 0;

	if (!s)
		return false;
	if (*s == '-') {
		neg = true;
		s++;
	}
	for (; model_is_digit(*s); s++, n++) {
		if (n >= 9)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (n == 0)
		return false;
	v *= 100;
	if (*s == '.') {
		s++;
		for (; model_is_digit(*s); s++, frac++) {
			if (frac >= 2)
				return false;
			v += (*s - '0') * (frac == 0 ? 10 : 1);
		}
		if (frac == 0)
			return false;
	}
	if (*s)
		return false;
	*out = neg ? -v : v;
	return true;
}

static void model_value_text(int64_t v, bool decimal, char *buf, size_t len)
{
	if (!decimal)
		snprintf(buf, len, "%lld", (long long)v);
	else
		snprintf(buf, len, "%s%lld.%02lld", v < 0 ? "-" : "",
			 (long long)(v < 0 ? -v : v) / 100,
			 (long long)(v < 0 ? -v : v) % 100);
}

static const struct model_param *model_param_find(const char *name)
{
	for (size_t i = 0; i < MODEL_N(model_params); i++)
		if (strcmp(name, model_params[i].name) == 0)
			return &model_params[i];
	return NULL;
}

/* Reads the current value of one parameter container; 0 when absent. */
static int model_param_read(const char *setname, const struct model_param *d,
			    const json_t *p, bool strict, bool *present,
			    int64_t *val, struct dg_diag *diag)
{
	const char *cur = d->decimal ? "current-value-decimal" : "current-value";
	const char *key;
	json_t *m;

	*present = false;
	if (!json_is_object(p))
		return model_fail(diag, DG_CODE_BAD_REQUEST, "%s %s: not an object",
				  setname, d->name);
	json_object_foreach((json_t *)p, key, m) {
		if (strcmp(key, cur) == 0)
			continue;
		if (!strict)
			continue;
		if (strncmp(key, "min-value", 9) == 0 ||
		    strncmp(key, "max-value", 9) == 0)
			/* RFC 9132 §4.5.2: a client sends only current values */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s %s: " MODEL_QUOTE " is the server's to set, not the client's (RFC 9132 §4.5.2)",
					  setname, d->name, key);
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s %s: unknown attribute " MODEL_QUOTE " (RFC 9132 §4.5.2)",
				  setname, d->name, key);
	}
	m = json_object_get(p, cur);
	if (!m) {
		if (strict)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s %s: %s missing (RFC 9132 §4.5.2)",
					  setname, d->name, cur);
		return 0;
	}
	if (d->decimal) {
		if (!model_decimal_parse(model_str(m), val))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s %s: %s is not a decimal with at most 2 fraction digits",
					  setname, d->name, cur);
	} else {
		json_int_t iv;

		if (!model_int_in(m, 0, UINT16_MAX, &iv)) /* YANG uint16 */
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s %s: %s is not a uint16", setname,
					  d->name, cur);
		*val = iv;
	}
	*present = true;
	return 0;
}

/* Walks a signal-config body: strict for a client's PUT (limits checked,
 * min/max and unknown attributes refused), lenient for a server's answer. */
static int model_config_walk(const json_t *body, bool strict,
			     const struct model_session_limits *mit_lim,
			     const struct model_session_limits *idle_lim,
			     struct model_session_config *cfg,
			     struct dg_diag *diag)
{
	struct model_session_config tmp = *cfg;
	struct dg_diag range_diag = { { 0 } };
	bool range_bad = false;
	size_t nparams = 0;
	const char *skey, *pkey;
	json_t *sc, *set, *p;
	int rc;

	sc = model_only_member(body, CBOR_MSG_CONFIG);
	if (!json_is_object(sc))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "body: must hold exactly one member, signal-config (RFC 9132 §4.5.2)");
	json_object_foreach(sc, skey, set) {
		const struct model_session_limits *lim;
		struct model_session_params *params;

		if (strcmp(skey, "mitigating-config") == 0) {
			params = &tmp.mitigating;
			lim = mit_lim;
		} else if (strcmp(skey, "idle-config") == 0) {
			params = &tmp.idle;
			lim = idle_lim;
		} else if (strict) {
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "signal-config: unknown attribute " MODEL_QUOTE " (RFC 9132 §4.5.2)",
					  skey);
		} else {
			continue;
		}
		if (!json_is_object(set))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "%s: not an object", skey);
		json_object_foreach(set, pkey, p) {
			const struct model_param *d = model_param_find(pkey);
			bool present;
			int64_t v = 0, lo = 0, hi = UINT32_MAX;

			if (!d) {
				if (!strict)
					continue;
				return model_fail(diag, DG_CODE_BAD_REQUEST,
						  "%s: unknown attribute " MODEL_QUOTE " (RFC 9132 §4.5.2)",
						  skey, pkey);
			}
			rc = model_param_read(skey, d, p, strict, &present, &v,
					      diag);
			if (rc)
				return rc;
			if (!present)
				continue;
			nparams++;
			if (lim) {
				lo = model_param_get(&lim->min, d);
				hi = model_param_get(&lim->max, d);
			}
			if (v < lo || v > hi) {
				char vt[24], lt[24], ht[24];

				/* RFC 9132 §4.5.2: out of the server's range */
				if (!range_bad) {
					model_value_text(v, d->decimal, vt, sizeof(vt));
					model_value_text(lo, d->decimal, lt, sizeof(lt));
					model_value_text(hi, d->decimal, ht, sizeof(ht));
					model_fail(&range_diag, DG_CODE_UNPROCESSABLE,
						   "%s %s: %s is outside the acceptable range %s..%s (RFC 9132 §4.5.2)",
						   skey, d->name, vt, lt, ht);
				}
				range_bad = true;
				continue;
			}
			model_param_set(params, d, (uint32_t)v);
		}
	}
	if (strict && nparams == 0) /* RFC 9132 §4.5.2 */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "signal-config: carries no parameter (RFC 9132 §4.5.2)");
	if (range_bad) {
		if (diag)
			*diag = range_diag;
		return strict ? DG_CODE_UNPROCESSABLE : DG_CODE_BAD_REQUEST;
	}
	*cfg = tmp;
	return 0;
}

int model_config_apply(const json_t *body,
		       const struct model_session_limits *mitigating,
		       const struct model_session_limits *idle,
		       struct model_session_config *cfg, struct dg_diag *diag)
{
	if (!cfg)
		return model_fail(diag, DG_CODE_INTERNAL, "no configuration");
	return model_config_walk(body, true, mitigating, idle, cfg, diag);
}

int model_config_read(const json_t *body, struct model_session_config *cfg,
		      struct dg_diag *diag)
{
	if (!cfg)
		return model_fail(diag, DG_CODE_INTERNAL, "no configuration");
	return model_config_walk(body, false, NULL, NULL, cfg, diag);
}

/* ---- heartbeat (RFC 9132 §4.7) ------------------------------------------- */

int model_check_heartbeat(const json_t *body, bool *peer_hb_status,
			  struct dg_diag *diag)
{
	json_t *hb = model_only_member(body, CBOR_MSG_HEARTBEAT);
	json_t *st = model_only_member(hb, "peer-hb-status");

	if (!hb || !json_is_object(hb))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "body: must hold exactly one member, heartbeat (RFC 9132 §4.7)");
	if (!json_is_boolean(st)) /* mandatory and alone (RFC 9132 §4.7) */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "heartbeat: must hold exactly peer-hb-status, a boolean (RFC 9132 §4.7)");
	if (peer_hb_status)
		*peer_hb_status = json_is_true(st);
	return 0;
}

json_t *model_build_heartbeat(bool peer_hb_status)
{
	return json_pack("{s:{s:b}}", CBOR_MSG_HEARTBEAT, "peer-hb-status",
			 peer_hb_status);
}

/* ---- redirection (RFC 9132 §4.6) ----------------------------------------- */

int model_check_redirect(const json_t *body, const char **alt_server,
			 struct dg_diag *diag)
{
	json_t *rs = model_only_member(body, CBOR_MSG_REDIRECT), *v, *rec;
	const char *key, *s;
	size_t i;

	if (!json_is_object(rs))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "body: must hold exactly one member, redirected-signal (RFC 9132 §4.6)");
	json_object_foreach(rs, key, v)
		if (strcmp(key, "alt-server") != 0 &&
		    strcmp(key, "alt-server-record") != 0)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "redirected-signal: unknown attribute " MODEL_QUOTE,
					  key);
	s = model_str(json_object_get(rs, "alt-server"));
	if (!model_visible(s, 255)) /* mandatory (RFC 9132 §4.6) */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "alt-server: missing, empty or not a domain name (RFC 9132 §4.6)");
	rec = json_object_get(rs, "alt-server-record");
	if (rec && !json_is_array(rec))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "alt-server-record: not an array");
	json_array_foreach(rec, i, v) {
		const char *a = model_str(v);
		uint8_t buf[16];

		if (!a || (inet_pton(AF_INET, a, buf) != 1 &&
			   inet_pton(AF_INET6, a, buf) != 1))
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "alt-server-record[%zu]: not an IP address",
					  i);
	}
	if (alt_server)
		*alt_server = s;
	return 0;
}

/* ---- GET /mitigate queries (RFC 9132 §4.4.2, RFC 9244) ------------------- */

static const struct {
	const char *query;
	const char *member; /* the scope-entry member it filters on */
} model_query_keys[] = {
	{ "target-prefix", "target-prefix" },
	{ "target-port", "target-port-range" },
	{ "target-protocol", "target-protocol" },
	{ "target-fqdn", "target-fqdn" },
	{ "target-uri", "target-uri" },
	{ "target-alias", "alias-name" },
};

/* Appends the filter value(s) of one comma-separated item; 0, 400 or 500. */
static int model_query_item(const char *key, const char *item, json_t *arr,
			    struct dg_diag *diag)
{
	struct port_range r;
	struct prefix p;
	json_t *v = NULL;

	if (!item[0]) /* RFC 9244: malformed query */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: empty value in the query (RFC 9244)", key);
	if (strcmp(key, "target-prefix") == 0) {
		if (prefix_parse(item, false, &p))
			goto bad;
		v = json_string(item);
	} else if (strcmp(key, "target-port") == 0) {
		if (port_range_parse(item, &r))
			goto bad;
		v = r.lower == r.upper ?
		    json_pack("{s:i}", "lower-port", (int)r.lower) :
		    json_pack("{s:i,s:i}", "lower-port", (int)r.lower,
			      "upper-port", (int)r.upper);
	} else if (strcmp(key, "target-protocol") == 0) {
		/* a-b ranges are allowed; expand them into the uint8 list */
		if (port_range_parse(item, &r) || r.upper > 255)
			goto bad;
		for (unsigned n = r.lower; n <= r.upper; n++)
			if (json_array_append_new(arr, json_integer(n)))
				return model_fail(diag, DG_CODE_INTERNAL,
						  "out of memory");
		return 0;
	} else if (strcmp(key, "target-fqdn") == 0) {
		/* RFC 9244: only a leftmost "*." wildcard */
		const char *name = (item[0] == '*' && item[1] == '.') ? item + 2 : item;

		if (!model_fqdn_valid(name))
			goto bad;
		v = json_string(item);
	} else if (strcmp(key, "target-uri") == 0) {
		if (!model_uri_valid(item))
			goto bad;
		v = json_string(item);
	} else {
		if (!model_visible(item, 1024))
			goto bad;
		v = json_string(item);
	}
	if (json_array_append_new(arr, v))
		return model_fail(diag, DG_CODE_INTERNAL, "out of memory");
	return 0;
bad:
	return model_fail(diag, DG_CODE_BAD_REQUEST,
			  "%s: \"" MODEL_QUOTE "\" is malformed (RFC 9244)", key,
			  item);
}

static int model_query_one(const char *q, struct model_query *out,
			   bool *seen_c, struct dg_diag *diag)
{
	const char *eq = strchr(q, '='), *val, *member = NULL;
	char key[20], *copy, *item, *next;
	size_t klen;
	json_t *arr;
	int rc = 0;

	if (!eq)
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "Uri-Query \"" MODEL_QUOTE "\": expected key=value",
				  q);
	klen = (size_t)(eq - q);
	val = eq + 1;
	if (klen >= sizeof(key))
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "Uri-Query \"" MODEL_QUOTE "\": unknown query", q);
	memcpy(key, q, klen);
	key[klen] = '\0';
	if (strcmp(key, "c") == 0) {
		/* RFC 9132 §4.4.2: one content selector, a, c or n */
		if (*seen_c)
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "c: given twice (RFC 9132 §4.4.2)");
		*seen_c = true;
		if (strcmp(val, "a") == 0)
			out->content = MODEL_CONTENT_ALL;
		else if (strcmp(val, "c") == 0)
			out->content = MODEL_CONTENT_CONFIG;
		else if (strcmp(val, "n") == 0)
			out->content = MODEL_CONTENT_NONCONFIG;
		else
			return model_fail(diag, DG_CODE_BAD_REQUEST,
					  "c: \"" MODEL_QUOTE "\" is not a, c or n (RFC 9132 §4.4.2)",
					  val);
		return 0;
	}
	for (size_t i = 0; i < MODEL_N(model_query_keys); i++)
		if (strcmp(key, model_query_keys[i].query) == 0)
			member = model_query_keys[i].member;
	if (!member) /* RFC 9244: unsupported query -> 4.00 */
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "Uri-Query " MODEL_QUOTE ": unknown query (RFC 9244)",
				  key);
	if (!val[0])
		return model_fail(diag, DG_CODE_BAD_REQUEST,
				  "%s: empty value in the query (RFC 9244)", key);
	if (!out->filter) {
		out->filter = json_object();
		if (!out->filter)
			return model_fail(diag, DG_CODE_INTERNAL, "out of memory");
	}
	arr = json_object_get(out->filter, member);
	if (!arr) {
		arr = json_array();
		if (!arr || json_object_set_new(out->filter, member, arr))
			return model_fail(diag, DG_CODE_INTERNAL, "out of memory");
	}
	copy = strdup(val);
	if (!copy)
		return model_fail(diag, DG_CODE_INTERNAL, "out of memory");
	for (item = copy; item && !rc; item = next) {
		next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		rc = model_query_item(key, item, arr, diag);
	}
	free(copy);
	return rc;
}

int model_parse_query(const char *const *queries, size_t nqueries,
		      struct model_query *out, struct dg_diag *diag)
{
	bool seen_c = false;
	int rc;

	if (!out)
		return model_fail(diag, DG_CODE_INTERNAL, "no output");
	out->content = MODEL_CONTENT_ALL; /* RFC 9132 §4.4.2 default */
	out->filter = NULL;
	if (!queries && nqueries)
		return model_fail(diag, DG_CODE_BAD_REQUEST, "no Uri-Query");
	for (size_t i = 0; i < nqueries; i++) {
		rc = queries[i] ? model_query_one(queries[i], out, &seen_c, diag) :
		     model_fail(diag, DG_CODE_BAD_REQUEST, "Uri-Query: missing");
		if (rc) {
			model_query_free(out);
			out->content = MODEL_CONTENT_ALL;
			return rc;
		}
	}
	return 0;
}

void model_query_free(struct model_query *q)
{
	if (!q)
		return;
	json_decref(q->filter);
	q->filter = NULL;
}

bool model_query_match(const struct model_query *q, const json_t *entry)
{
	static const struct {
		const char *name;
		enum model_hit_kind kind;
		bool all_if_absent; /* absent ports/protocols mean all */
	} attrs[] = {
		{ "target-prefix", MODEL_HIT_PREFIX, false },
		{ "target-port-range", MODEL_HIT_PORT, true },
		{ "target-protocol", MODEL_HIT_PROTO, true },
		{ "target-fqdn", MODEL_HIT_FQDN_PATTERN, false },
		{ "target-uri", MODEL_HIT_EXACT, false },
		{ "alias-name", MODEL_HIT_EXACT, false },
	};

	if (!q || !q->filter)
		return true;
	if (!json_is_object(entry))
		return false;
	for (size_t k = 0; k < MODEL_N(attrs); k++) {
		json_t *f = model_list(q->filter, attrs[k].name);
		json_t *e = model_list(entry, attrs[k].name), *x;
		bool hit = false;
		size_t i;

		if (!f)
			continue;
		if (!e) {
			if (attrs[k].all_if_absent)
				continue;
			return false;
		}
		/* patterns (FQDN wildcards) are on the filter side */
		json_array_foreach(e, i, x)
			if (model_hit(f, x, attrs[k].kind)) {
				hit = true;
				break;
			}
		if (!hit)
			return false;
	}
	return true;
}

/* ---- content selection (RFC 9132 §4.4.2 "c") ------------------------------ */

static const char *const model_config_nodes[] = {
	"mid", "target-prefix", "target-port-range", "target-protocol",
	"target-fqdn", "target-uri", "alias-name", "lifetime",
	"trigger-mitigation", MODEL_ACL_LIST, MODEL_CH_SRC_PREFIX,
	MODEL_CH_SRC_PORT, MODEL_CH_SRC_ICMP,
};

static const char *const model_nonconfig_nodes[] = {
	"mid", "status", "mitigation-start", "lifetime", "bytes-dropped",
	"bps-dropped", "pkts-dropped", "pps-dropped", "conflict-information",
};

json_t *model_entry_select(const json_t *entry, enum model_content content)
{
	const char *const *keep;
	const char *key;
	size_t nkeep;
	json_t *out, *v;

	if (!json_is_object(entry))
		return NULL;
	if (content == MODEL_CONTENT_CONFIG) {
		keep = model_config_nodes;
		nkeep = MODEL_N(model_config_nodes);
	} else if (content == MODEL_CONTENT_NONCONFIG) {
		keep = model_nonconfig_nodes;
		nkeep = MODEL_N(model_nonconfig_nodes);
	} else {
		return json_deep_copy(entry);
	}
	out = json_object();
	if (!out)
		return NULL;
	json_object_foreach((json_t *)entry, key, v) {
		if (!model_in_list(key, keep, nkeep))
			continue;
		if (json_object_set_new(out, key, json_deep_copy(v))) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}
