#include "dhcp_state.h"

#include <string.h>

/* Year 9999: a larger acquisition time is garbage, not a date. */
#define DS_TIME_MAX 253402300799LL

enum {
	DS_IFACE = 1 << 0,
	DS_FAMILY = 1 << 1,
	DS_REASON = 1 << 2,
	DS_ACQUIRED = 1 << 3,
	DS_LIFETIME = 1 << 4
};

static bool ds_ifchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static bool ds_ifname_ok(const char *s, size_t len)
{
	if (len == 0 || len >= DHCP_DOTS_IFNAME_SIZE || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!ds_ifchar(s[i]))
			return false;
	return true;
}

int dhcp_state_filename(const char *name, char ifname[DHCP_DOTS_IFNAME_SIZE],
			enum dhcp_dots_family *family)
{
	size_t len = strnlen(name, DHCP_DOTS_IFNAME_SIZE + 4);

	if (len < 4 || name[len - 3] != '.' || name[len - 2] != 'v' ||
	    (name[len - 1] != '4' && name[len - 1] != '6'))
		return DG_EINVAL;
	if (!ds_ifname_ok(name, len - 3))
		return DG_EINVAL;
	memcpy(ifname, name, len - 3);
	ifname[len - 3] = '\0';
	*family = name[len - 1] == '4' ? DHCP_DOTS_V4 : DHCP_DOTS_V6;
	return 0;
}

/* Decimal without sign or leading zero, at most max. */
static int ds_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20 || (s[0] == '0' && len > 1))
		return DG_EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return DG_EINVAL;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return DG_ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int ds_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool ds_key(const char *line, size_t len, const char *key,
		   const char **val, size_t *vlen)
{
	size_t k = strlen(key);

	if (len <= k + 1 || memcmp(line, key, k) != 0 || line[k] != ' ')
		return false;
	*val = line + k + 1;
	*vlen = len - k - 1;
	return true;
}

/* One "option CODE HEX" value into st. */
static int ds_option(const char *v, size_t vlen, struct dhcp_state *st,
		     size_t *used, unsigned lineno, struct dg_diag *why)
{
	const char *sp = memchr(v, ' ', vlen);
	const char *hex;
	size_t hlen;
	uint64_t code;
	struct dhcp_state_opt *o;

	if (!sp || ds_uint(v, (size_t)(sp - v), 65535, &code) < 0 || code == 0) {
		dg_diag_set(why, "line %u: option: expected a code and a value", lineno);
		return DG_EINVAL;
	}
	hex = sp + 1;
	hlen = vlen - (size_t)(hex - v);
	if (st->n_opts == DHCP_DOTS_MAX_OPTS) {
		dg_diag_set(why, "line %u: more than %d options", lineno, DHCP_DOTS_MAX_OPTS);
		return DG_ETOOBIG;
	}
	if (hlen == 1 && hex[0] == '-') {
		hlen = 0;
	} else if (hlen == 0 || hlen % 2) {
		dg_diag_set(why, "line %u: option %u: hex value of odd or zero length",
			    lineno, (unsigned)code);
		return DG_EINVAL;
	}
	/* Cannot happen within DHCP_STATE_MAX; checked all the same. */
	if (hlen / 2 > 65535 || hlen / 2 > sizeof(st->buf) - *used) {
		dg_diag_set(why, "line %u: option %u: values exceed %zu octets", lineno,
			    (unsigned)code, sizeof(st->buf));
		return DG_ETOOBIG;
	}
	o = &st->opts[st->n_opts];
	o->code = (uint16_t)code;
	o->len = (uint16_t)(hlen / 2);
	o->off = (uint16_t)*used;
	for (size_t i = 0; i < hlen; i += 2) {
		int hi = ds_hexval(hex[i]), lo = ds_hexval(hex[i + 1]);

		if (hi < 0 || lo < 0) {
			dg_diag_set(why, "line %u: option %u: not hex at column %zu", lineno,
				    (unsigned)code, (size_t)(hex - v) + i + 8);
			return DG_EINVAL;
		}
		st->buf[*used + i / 2] = (uint8_t)(hi << 4 | lo);
	}
	*used += hlen / 2;
	st->n_opts++;
	return 0;
}

static int ds_line(const char *line, size_t len, unsigned lineno,
		   struct dhcp_state *st, unsigned *seen, size_t *used,
		   struct dg_diag *why)
{
	const char *v;
	size_t vlen;
	uint64_t u;
	unsigned bit;

	if (ds_key(line, len, "option", &v, &vlen))
		return ds_option(v, vlen, st, used, lineno, why);
	if (ds_key(line, len, "interface", &v, &vlen)) {
		bit = DS_IFACE;
		if (!ds_ifname_ok(v, vlen))
			goto bad;
		memcpy(st->ifname, v, vlen);
		st->ifname[vlen] = '\0';
	} else if (ds_key(line, len, "family", &v, &vlen)) {
		bit = DS_FAMILY;
		if (vlen != 1 || (v[0] != '4' && v[0] != '6'))
			goto bad;
		st->family = v[0] == '4' ? DHCP_DOTS_V4 : DHCP_DOTS_V6;
	} else if (ds_key(line, len, "reason", &v, &vlen)) {
		bit = DS_REASON;
		if (vlen >= sizeof(st->reason))
			goto bad;
		for (size_t i = 0; i < vlen; i++)
			if (!((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= '0' && v[i] <= '9')))
				goto bad;
		memcpy(st->reason, v, vlen);
		st->reason[vlen] = '\0';
	} else if (ds_key(line, len, "acquired", &v, &vlen)) {
		bit = DS_ACQUIRED;
		if (ds_uint(v, vlen, DS_TIME_MAX, &u) < 0)
			goto bad;
		st->acquired = (int64_t)u;
	} else if (ds_key(line, len, "lifetime", &v, &vlen)) {
		bit = DS_LIFETIME;
		if (ds_uint(v, vlen, UINT32_MAX, &u) < 0)
			goto bad;
		st->lifetime = (uint32_t)u;
	} else {
		dg_diag_set(why, "line %u: unknown line", lineno);
		return DG_EINVAL;
	}
	if (*seen & bit) {
		dg_diag_set(why, "line %u: repeated key", lineno);
		return DG_EINVAL;
	}
	*seen |= bit;
	return 0;
bad:
	dg_diag_set(why, "line %u: invalid value", lineno);
	return DG_EINVAL;
}

int dhcp_state_parse(const char *text, size_t len, struct dhcp_state *out,
		     struct dg_diag *why)
{
	struct dhcp_state st;
	size_t pos = 0, used = 0, mlen = strlen(DHCP_STATE_MAGIC);
	unsigned lineno = 1, seen = 0;
	int rc;

	if (len > DHCP_STATE_MAX) {
		dg_diag_set(why, "file larger than %d octets", DHCP_STATE_MAX);
		return DG_ETOOBIG;
	}
	if (len == 0 || text[len - 1] != '\n') {
		dg_diag_set(why, "file empty or its last line unterminated");
		return DG_EINVAL;
	}
	if (memchr(text, '\0', len) || memchr(text, '\r', len)) {
		dg_diag_set(why, "file contains a NUL or CR octet");
		return DG_EINVAL;
	}
	if (len < mlen + 1 || memcmp(text, DHCP_STATE_MAGIC "\n", mlen + 1) != 0) {
		dg_diag_set(why, "line 1: not \"%s\"", DHCP_STATE_MAGIC);
		return DG_EINVAL;
	}
	memset(&st, 0, sizeof(st));
	pos = mlen + 1;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t llen = (size_t)(nl - (text + pos));

		lineno++;
		rc = ds_line(text + pos, llen, lineno, &st, &seen, &used, why);
		if (rc < 0)
			return rc;
		pos += llen + 1;
	}
	if ((seen & (DS_IFACE | DS_FAMILY | DS_ACQUIRED | DS_LIFETIME)) !=
	    (DS_IFACE | DS_FAMILY | DS_ACQUIRED | DS_LIFETIME)) {
		dg_diag_set(why, "missing %s",
			    !(seen & DS_IFACE) ? "interface" :
			    !(seen & DS_FAMILY) ? "family" :
			    !(seen & DS_ACQUIRED) ? "acquired" : "lifetime");
		return DG_EINVAL;
	}
	for (size_t i = 0; i < st.n_opts; i++) {
		uint16_t c = st.opts[i].code;
		bool ok = st.family == DHCP_DOTS_V4 ?
			  (c == DHCP_DOTS_V4_RI || c == DHCP_DOTS_V4_ADDRESS) :
			  (c == DHCP_DOTS_V6_RI || c == DHCP_DOTS_V6_ADDRESS);

		if (!ok) {
			dg_diag_set(why, "option %u is not a DHCPv%d DOTS option", c,
				    (int)st.family);
			return DG_EINVAL;
		}
	}
	*out = st;
	return 0;
}

int dhcp_state_candidates(const struct dhcp_state *st,
			  struct dhcp_dots_info *info,
			  struct dhcp_dots_cand *out, size_t max, size_t *n,
			  struct dg_diag *why)
{
	struct dhcp_dots_opt opts[DHCP_DOTS_MAX_OPTS];
	struct dhcp_dots_info local;
	int rc;

	if (st->n_opts > DHCP_DOTS_MAX_OPTS) {
		dg_diag_set(why, "more than %d options", DHCP_DOTS_MAX_OPTS);
		return DG_ETOOBIG;
	}
	for (size_t i = 0; i < st->n_opts; i++) {
		if ((size_t)st->opts[i].off + st->opts[i].len > sizeof(st->buf)) {
			dg_diag_set(why, "option %zu outside the buffer", i);
			return DG_EINVAL;
		}
		opts[i].code = st->opts[i].code;
		opts[i].len = st->opts[i].len;
		opts[i].data = st->buf + st->opts[i].off;
	}
	rc = dhcp_dots_parse(st->family, opts, st->n_opts, &local, why);
	if (rc < 0)
		return rc;
	rc = dhcp_dots_candidates(&local, st->ifname, st->acquired, st->lifetime,
				  out, max, n);
	if (rc < 0) {
		dg_diag_set(why, "%s", rc == DG_ETOOBIG ? "candidate list full" :
							  "invalid interface name");
		return rc;
	}
	if (info)
		*info = local;
	return 0;
}
