#include "dhcp_dots.h"

#include <stdio.h>
#include <string.h>

/* Concatenated DHCPv4 options are bounded by what a message can carry. */
#define DD_CONCAT_MAX 4096

static bool dd_ldh(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

int dhcp_dots_name_decode(const uint8_t *wire, size_t len,
			  char out[DHCP_DOTS_NAME_SIZE], size_t *used,
			  struct dg_diag *why)
{
	char text[DHCP_DOTS_NAME_SIZE];
	size_t pos = 0, tlen = 0;
	unsigned labels = 0;

	if (len == 0) {
		dg_diag_set(why, "empty name");
		return DG_EINVAL;
	}
	for (;;) {
		uint8_t l;

		if (pos >= len) {
			/* RFC 1035 §3.1: a name ends with the root label. */
			dg_diag_set(why, "name not terminated by a root label (%zu octets)", len);
			return DG_EINVAL;
		}
		l = wire[pos];
		if ((l & 0xc0) == 0xc0) {
			/* RFC 8415 §10: names in DHCP are never compressed. */
			dg_diag_set(why, "compression pointer at offset %zu", pos);
			return DG_EINVAL;
		}
		if (l & 0xc0) {
			/* RFC 6891 §5 / RFC 2673: extended label types, not names. */
			dg_diag_set(why, "reserved label type 0x%02x at offset %zu", l, pos);
			return DG_EINVAL;
		}
		if (pos + 1 + l > DHCP_DOTS_NAME_WIRE_MAX) {
			/* RFC 1035 §2.3.4: 255 octets at most. */
			dg_diag_set(why, "name longer than 255 octets");
			return DG_EINVAL;
		}
		if (l == 0)
			break;
		if (pos + 1 + l > len) {
			dg_diag_set(why, "label at offset %zu runs past the end (length %u, %zu left)",
				    pos, l, len - pos - 1);
			return DG_EINVAL;
		}
		for (size_t i = 0; i < l; i++) {
			uint8_t c = wire[pos + 1 + i];

			/* RFC 1123 §2.1 host name labels (our choice, see .h). */
			if (!dd_ldh(c)) {
				dg_diag_set(why, "label at offset %zu: octet 0x%02x is not a letter, digit or hyphen",
					    pos, c);
				return DG_EINVAL;
			}
		}
		if (wire[pos + 1] == '-' || wire[pos + l] == '-') {
			dg_diag_set(why, "label at offset %zu begins or ends with a hyphen", pos);
			return DG_EINVAL;
		}
		if (labels)
			text[tlen++] = '.';
		memcpy(text + tlen, wire + pos + 1, l);
		tlen += l;
		labels++;
		pos += 1 + l;
	}
	if (labels == 0) {
		dg_diag_set(why, "root name is not a DOTS agent name");
		return DG_EINVAL;
	}
	text[tlen] = '\0';
	memcpy(out, text, tlen + 1);
	*used = pos + 1;
	return 0;
}

bool dhcp_dots_v4_discarded(const uint8_t a[4], const char **why_not)
{
	const char *r = NULL;

	if (a[0] >= 224 && a[0] <= 239)
		r = "multicast";		/* RFC 8973 §5.2.3 MUST */
	else if (a[0] == 127)
		r = "loopback";			/* RFC 8973 §5.2.3 MUST */
	else if (a[0] == 0)
		r = "this-network (0.0.0.0/8)";	/* RFC 6890: not a destination */
	else if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
		r = "limited broadcast";	/* not a DOTS server's address */
	if (why_not)
		*why_not = r;
	return r != NULL;
}

bool dhcp_dots_v6_discarded(const uint8_t a[16], const char **why_not)
{
	static const uint8_t zero[16], loop[16] = { [15] = 1 };
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	const char *r = NULL;

	if (a[0] == 0xff)
		r = "multicast";		/* RFC 8973 §5.1.3 MUST */
	else if (memcmp(a, loop, 16) == 0)
		r = "loopback";			/* RFC 8973 §5.1.3 MUST */
	else if (memcmp(a, zero, 16) == 0)
		r = "unspecified";		/* RFC 4291 §2.5.2: never a destination */
	else if (memcmp(a, mapped, 12) == 0)
		dhcp_dots_v4_discarded(a + 12, &r);	/* §5.1.2 allows mapped IPv4 */
	if (why_not)
		*why_not = r;
	return r != NULL;
}

/* Validates an address option's value into info; asz is 4 or 16. */
static int dd_addrs(const uint8_t *v, size_t len, size_t asz, unsigned code,
		    struct dhcp_dots_info *info, struct dg_diag *why)
{
	if (len == 0 || len % asz) {
		/* RFC 8973 §5.1.2 (multiple of 16), §9.3 (4*N, at least 4). */
		dg_diag_set(why, "option %u: length %zu is not a positive multiple of %zu",
			    code, len, asz);
		return DG_EINVAL;
	}
	for (size_t off = 0; off < len; off += asz) {
		const uint8_t *a = v + off;
		bool dup = false;

		if (asz == 4 ? dhcp_dots_v4_discarded(a, NULL) :
			       dhcp_dots_v6_discarded(a, NULL)) {
			info->n_discarded++;	/* §5.1.3/§5.2.3: silently */
			continue;
		}
		for (size_t i = 0; i < info->n_addrs && !dup; i++)
			dup = memcmp(info->addrs[i], a, asz) == 0;
		if (dup) {
			info->n_discarded++;
			continue;
		}
		if (info->n_addrs == DHCP_DOTS_MAX_ADDRS) {
			dg_diag_set(why, "option %u: more than %d addresses", code,
				    DHCP_DOTS_MAX_ADDRS);
			return DG_ETOOBIG;
		}
		memset(info->addrs[info->n_addrs], 0, 16);
		memcpy(info->addrs[info->n_addrs++], a, asz);
	}
	return 0;
}

static int dd_name(const uint8_t *v, size_t len, unsigned code,
		   struct dhcp_dots_info *info, struct dg_diag *why)
{
	struct dg_diag inner;
	size_t used;

	if (dhcp_dots_name_decode(v, len, info->name, &used, &inner) < 0) {
		dg_diag_set(why, "option %u: %s", code, inner.text);
		return DG_EINVAL;
	}
	/* §5.1.3/§5.2.3: more than one name: only the first is used. */
	info->n_trailing = len - used;
	info->has_name = true;
	return 0;
}

int dhcp_dots_parse(enum dhcp_dots_family family,
		    const struct dhcp_dots_opt *opts, size_t n,
		    struct dhcp_dots_info *out, struct dg_diag *why)
{
	struct dhcp_dots_info info;
	unsigned ri_code, addr_code;
	size_t asz;
	int rc;

	if (family != DHCP_DOTS_V4 && family != DHCP_DOTS_V6) {
		dg_diag_set(why, "unknown DHCP family %d", (int)family);
		return DG_EINVAL;
	}
	if (n > DHCP_DOTS_MAX_OPTS) {
		dg_diag_set(why, "more than %d options", DHCP_DOTS_MAX_OPTS);
		return DG_ETOOBIG;
	}
	memset(&info, 0, sizeof(info));
	info.family = family;
	ri_code = family == DHCP_DOTS_V4 ? DHCP_DOTS_V4_RI : DHCP_DOTS_V6_RI;
	addr_code = family == DHCP_DOTS_V4 ? DHCP_DOTS_V4_ADDRESS : DHCP_DOTS_V6_ADDRESS;
	asz = family == DHCP_DOTS_V4 ? 4 : 16;

	if (family == DHCP_DOTS_V6) {
		const struct dhcp_dots_opt *ri = NULL, *ad = NULL;

		for (size_t i = 0; i < n; i++) {
			const struct dhcp_dots_opt **slot =
				opts[i].code == ri_code ? &ri :
				opts[i].code == addr_code ? &ad : NULL;

			if (!slot)
				continue;
			if (*slot) {
				/* RFC 8973 §5.1.3: only the first instance. */
				info.n_ignored_instances++;
				continue;
			}
			*slot = &opts[i];
		}
		if (ri && (rc = dd_name(ri->data, ri->len, ri_code, &info, why)) < 0)
			return rc;
		if (ad && (rc = dd_addrs(ad->data, ad->len, asz, addr_code, &info, why)) < 0)
			return rc;
	} else {
		uint8_t cat[2][DD_CONCAT_MAX];
		size_t clen[2] = { 0, 0 };
		bool seen[2] = { false, false };

		for (size_t i = 0; i < n; i++) {
			int k = opts[i].code == ri_code ? 0 :
				opts[i].code == addr_code ? 1 : -1;

			if (k < 0)
				continue;
			/* RFC 3396 §7: instances of one code are one option,
			 * concatenated in order (RFC 8973 §5.2.2). */
			if (clen[k] + opts[i].len > DD_CONCAT_MAX) {
				dg_diag_set(why, "option %u: concatenation longer than %d octets",
					    opts[i].code, DD_CONCAT_MAX);
				return DG_ETOOBIG;
			}
			if (opts[i].len)
				memcpy(cat[k] + clen[k], opts[i].data, opts[i].len);
			clen[k] += opts[i].len;
			seen[k] = true;
		}
		if (seen[0] && (rc = dd_name(cat[0], clen[0], ri_code, &info, why)) < 0)
			return rc;
		if (seen[1] && (rc = dd_addrs(cat[1], clen[1], asz, addr_code, &info, why)) < 0)
			return rc;
	}
	*out = info;
	return 0;
}

int dhcp_dots_parse_v4_area(const uint8_t *area, size_t len,
			    struct dhcp_dots_info *out, struct dg_diag *why)
{
	struct dhcp_dots_opt opts[DHCP_DOTS_MAX_OPTS];
	size_t n = 0, pos = 0;

	while (pos < len) {
		uint8_t code = area[pos];

		if (code == 0) {		/* RFC 2132 §3.1: Pad */
			pos++;
			continue;
		}
		if (code == 255)		/* RFC 2132 §3.2: End */
			break;
		if (pos + 2 > len || pos + 2 + area[pos + 1] > len) {
			dg_diag_set(why, "DHCPv4 option %u at offset %zu overruns the options area",
				    code, pos);
			return DG_EINVAL;
		}
		if (code == DHCP_DOTS_V4_RI || code == DHCP_DOTS_V4_ADDRESS) {
			if (n == DHCP_DOTS_MAX_OPTS) {
				dg_diag_set(why, "more than %d DOTS option instances",
					    DHCP_DOTS_MAX_OPTS);
				return DG_ETOOBIG;
			}
			opts[n].code = code;
			opts[n].len = area[pos + 1];
			opts[n].data = area + pos + 2;
			n++;
		}
		pos += 2 + (size_t)area[pos + 1];
	}
	return dhcp_dots_parse(DHCP_DOTS_V4, opts, n, out, why);
}

int dhcp_dots_parse_v6_area(const uint8_t *area, size_t len,
			    struct dhcp_dots_info *out, struct dg_diag *why)
{
	struct dhcp_dots_opt opts[DHCP_DOTS_MAX_OPTS];
	size_t n = 0, pos = 0;

	while (pos < len) {
		uint16_t code, olen;

		if (pos + 4 > len) {
			dg_diag_set(why, "DHCPv6 option header at offset %zu truncated", pos);
			return DG_EINVAL;
		}
		code = (uint16_t)(area[pos] << 8 | area[pos + 1]);
		olen = (uint16_t)(area[pos + 2] << 8 | area[pos + 3]);
		if (pos + 4 + olen > len) {
			/* RFC 8415 §21.1: option-len octets of data follow. */
			dg_diag_set(why, "DHCPv6 option %u at offset %zu overruns the options area",
				    code, pos);
			return DG_EINVAL;
		}
		if (code == DHCP_DOTS_V6_RI || code == DHCP_DOTS_V6_ADDRESS) {
			if (n == DHCP_DOTS_MAX_OPTS) {
				dg_diag_set(why, "more than %d DOTS option instances",
					    DHCP_DOTS_MAX_OPTS);
				return DG_ETOOBIG;
			}
			opts[n].code = code;
			opts[n].len = olen;
			opts[n].data = area + pos + 4;
			n++;
		}
		pos += 4 + (size_t)olen;
	}
	return dhcp_dots_parse(DHCP_DOTS_V6, opts, n, out, why);
}

int dhcp_dots_candidates(const struct dhcp_dots_info *info, const char *ifname,
			 int64_t acquired, uint32_t lifetime,
			 struct dhcp_dots_cand *out, size_t max, size_t *n)
{
	size_t want = info->n_addrs ? info->n_addrs : (info->has_name ? 1 : 0);
	size_t iflen = strnlen(ifname, DHCP_DOTS_IFNAME_SIZE);

	if (iflen == 0 || iflen >= DHCP_DOTS_IFNAME_SIZE)
		return DG_EINVAL;
	if (*n > max || max - *n < want)
		return DG_ETOOBIG;
	for (size_t i = 0; i < want; i++) {
		struct dhcp_dots_cand *c = &out[*n + i];

		memset(c, 0, sizeof(*c));
		if (info->n_addrs) {
			c->kind = info->family == DHCP_DOTS_V4 ? DHCP_DOTS_ADDR_V4 :
								  DHCP_DOTS_ADDR_V6;
			memcpy(c->addr, info->addrs[i], 16);
		} else {
			c->kind = DHCP_DOTS_ADDR_NONE;	/* §5.1.3: resolve the name */
		}
		c->port = DHCP_DOTS_PORT;
		c->transport = DHCP_DOTS_TRANSPORT_ANY;
		if (info->has_name)
			memcpy(c->name, info->name, sizeof(c->name));
		memcpy(c->ifname, ifname, iflen + 1);
		c->source = info->family;
		c->acquired = acquired;
		c->expires = lifetime == DHCP_DOTS_INFINITY ? INT64_MAX :
							      acquired + (int64_t)lifetime;
	}
	*n += want;
	return 0;
}

void dhcp_dots_addr_text(const struct dhcp_dots_cand *c, char *buf, size_t size)
{
	const uint8_t *a = c->addr;
	size_t o = 0;
	int best = -1, bestlen = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	if (c->kind == DHCP_DOTS_ADDR_V4) {
		snprintf(buf, size, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		return;
	}
	if (c->kind != DHCP_DOTS_ADDR_V6)
		return;
	if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		/* RFC 5952 §5: IPv4-mapped addresses end in dotted quad. */
		snprintf(buf, size, "::ffff:%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
		return;
	}
	/* RFC 5952 §4.2: the longest run of two or more zero groups is "::". */
	for (int i = 0; i < 8;) {
		int j = i;

		while (j < 8 && a[2 * j] == 0 && a[2 * j + 1] == 0)
			j++;
		if (j - i > bestlen && j - i >= 2) {
			best = i;
			bestlen = j - i;
		}
		i = j > i ? j : i + 1;
	}
	for (int i = 0; i < 8 && o < size; i++) {
		if (i == best) {
			o += (size_t)snprintf(buf + o, size - o, "::");
			i += bestlen - 1;
			continue;
		}
		o += (size_t)snprintf(buf + o, size - o, "%s%x",
				      (i == 0 || i == best + bestlen) ? "" : ":",
				      a[2 * i] << 8 | a[2 * i + 1]);
	}
}
