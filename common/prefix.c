/*
 * prefix.c: IPv4/IPv6 prefixes and port ranges (inet:ip-prefix and
 * inet:port-number of RFC 6991, as used by RFC 9132 targets).
 */
#include "prefix.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest textual address inet_pton() can accept (INET6_ADDRSTRLEN - 1). */
#define PREFIX_ADDR_MAX 45

static unsigned prefix_bits(const struct prefix *p)
{
	return p->family == 4 ? 32 : 128;
}

/* Clears every bit of addr beyond len; returns true when some were set. */
static bool prefix_clear_host_bits(uint8_t *addr, unsigned nbytes, unsigned len)
{
	bool had = false;

	for (unsigned i = 0; i < nbytes; i++) {
		unsigned first = i * 8;
		uint8_t keep;

		if (first + 8 <= len)
			continue;
		keep = first >= len ? 0 : (uint8_t)(0xff << (8 - (len - first)));
		if (addr[i] & (uint8_t)~keep)
			had = true;
		addr[i] &= keep;
	}
	return had;
}

/* Decimal without sign, spaces or leading zeros ("0" itself is fine). */
static int prefix_parse_uint(const char *s, size_t maxdigits, unsigned long *out)
{
	unsigned long v = 0;
	size_t n = 0;

	if (!s[0] || (s[0] == '0' && s[1]))
		return DG_EINVAL;
	for (; s[n]; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= maxdigits)
			return DG_EINVAL;
		v = v * 10 + (unsigned long)(s[n] - '0');
	}
	*out = v;
	return 0;
}

int prefix_parse(const char *s, bool allow_host_bits, struct prefix *out)
{
	char addr[PREFIX_ADDR_MAX + 1];
	struct prefix p;
	const char *slash;
	unsigned long len;
	size_t alen;

	if (!s || !out)
		return DG_EINVAL;
	slash = strchr(s, '/');
	if (!slash) /* the length is mandatory in inet:ip-prefix */
		return DG_EINVAL;
	alen = (size_t)(slash - s);
	if (alen == 0 || alen > PREFIX_ADDR_MAX)
		return DG_EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = '\0';

	memset(&p, 0, sizeof(p));
	if (memchr(addr, ':', alen)) {
		if (inet_pton(AF_INET6, addr, p.addr) != 1)
			return DG_EINVAL;
		p.family = 6;
	} else {
		/* glibc's inet_pton refuses leading zeros and short forms */
		if (inet_pton(AF_INET, addr, p.addr) != 1)
			return DG_EINVAL;
		p.family = 4;
	}
	if (prefix_parse_uint(slash + 1, 3, &len) < 0 || len > prefix_bits(&p))
		return DG_EINVAL;
	p.len = (uint8_t)len;
	if (prefix_clear_host_bits(p.addr, sizeof(p.addr), p.len) && !allow_host_bits)
		return DG_ERANGE;
	*out = p;
	return 0;
}

int prefix_format(const struct prefix *p, char *buf, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	int n;

	if (!p || !buf || (p->family != 4 && p->family != 6) ||
	    p->len > prefix_bits(p))
		return DG_EINVAL;
	if (!inet_ntop(p->family == 4 ? AF_INET : AF_INET6, p->addr, addr,
		       sizeof(addr)))
		return DG_EINVAL;
	n = snprintf(buf, len, "%s/%u", addr, (unsigned)p->len);
	if (n < 0 || (size_t)n >= len)
		return DG_ETOOBIG;
	return n;
}

bool prefix_contains(const struct prefix *outer, const struct prefix *inner)
{
	unsigned full, rest;

	if (!outer || !inner || outer->family != inner->family ||
	    outer->len > inner->len || outer->len > prefix_bits(outer))
		return false;
	full = outer->len / 8;
	rest = outer->len % 8;
	if (memcmp(outer->addr, inner->addr, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		if ((outer->addr[full] & mask) != (inner->addr[full] & mask))
			return false;
	}
	return true;
}

bool prefix_overlaps(const struct prefix *a, const struct prefix *b)
{
	/* Two CIDR blocks share an address only when one holds the other. */
	return prefix_contains(a, b) || prefix_contains(b, a);
}

struct prefix_forbidden {
	uint8_t family, len;
	uint8_t addr[16];
};

/*
 * Addresses that can never be a mitigation target (RFC 9132 §4.4.1.1 rules
 * out loopback, broadcast and multicast; the unspecified address is no
 * host at all). 224.0.0.0/4 and ff00::/8 include the link-local multicast
 * ranges.
 */
static const struct prefix_forbidden prefix_forbidden[] = {
	{ 4, 8, { 127 } },                               /* loopback */
	{ 4, 4, { 224 } },                               /* multicast */
	{ 4, 32, { 255, 255, 255, 255 } },               /* limited broadcast */
	{ 4, 32, { 0 } },                                /* unspecified */
	{ 6, 128, { [15] = 1 } },                        /* ::1 loopback */
	{ 6, 128, { 0 } },                               /* :: unspecified */
	{ 6, 8, { 0xff } },                              /* multicast */
};

static bool prefix_forbidden_plain(const struct prefix *p)
{
	for (size_t i = 0; i < sizeof(prefix_forbidden) / sizeof(prefix_forbidden[0]); i++) {
		struct prefix f;

		f.family = prefix_forbidden[i].family;
		f.len = prefix_forbidden[i].len;
		memcpy(f.addr, prefix_forbidden[i].addr, sizeof(f.addr));
		if (prefix_overlaps(p, &f))
			return true;
	}
	return false;
}

bool prefix_is_forbidden_target(const struct prefix *p)
{
	static const struct prefix mapped = {
		6, 96, { [10] = 0xff, [11] = 0xff }
	};

	if (!p || (p->family != 4 && p->family != 6) || p->len > prefix_bits(p))
		return true;
	/* Anything that covers a forbidden range (down to 0.0.0.0/0 or
	 * ::/0, which cover everything) is as bad as the range itself. */
	if (prefix_forbidden_plain(p))
		return true;
	if (p->family == 6 && prefix_contains(&mapped, p)) {
		/* ::ffff:127.0.0.1 is IPv4 loopback in disguise (RFC 4291
		 * §2.5.5.2): judge IPv4-mapped prefixes as IPv4. */
		struct prefix v4 = { .family = 4, .len = (uint8_t)(p->len - 96) };

		memcpy(v4.addr, p->addr + 12, 4);
		return prefix_forbidden_plain(&v4);
	}
	if (p->family == 6 && prefix_contains(p, &mapped))
		return true; /* covers every IPv4-mapped address */
	return false;
}

int port_range_parse(const char *s, struct port_range *out)
{
	char buf[12];
	unsigned long lo, hi;
	const char *dash;
	size_t n;

	if (!s || !out)
		return DG_EINVAL;
	n = strlen(s);
	if (n == 0 || n >= sizeof(buf))
		return DG_EINVAL;
	memcpy(buf, s, n + 1);
	dash = strchr(buf, '-');
	if (dash) {
		buf[dash - buf] = '\0';
		if (prefix_parse_uint(buf, 5, &lo) < 0 ||
		    prefix_parse_uint(dash + 1, 5, &hi) < 0)
			return DG_EINVAL;
	} else {
		if (prefix_parse_uint(buf, 5, &lo) < 0)
			return DG_EINVAL;
		hi = lo;
	}
	if (lo > 65535 || hi > 65535 || lo > hi)
		return DG_EINVAL;
	out->lower = (uint16_t)lo;
	out->upper = (uint16_t)hi;
	return 0;
}

bool port_range_contains(const struct port_range *outer,
			 const struct port_range *inner)
{
	return outer && inner && outer->lower <= inner->lower &&
	       inner->upper <= outer->upper;
}

bool port_range_overlaps(const struct port_range *a, const struct port_range *b)
{
	return a && b && a->lower <= b->upper && b->lower <= a->upper;
}

int prefix_set_add(struct prefix_set *s, const struct prefix *p)
{
	if (!s || !p)
		return DG_EINVAL;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct prefix *v;

		if (cap > SIZE_MAX / sizeof(*v))
			return DG_ENOMEM;
		v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return DG_ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = *p;
	return 0;
}

void prefix_set_free(struct prefix_set *s)
{
	if (!s)
		return;
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

bool prefix_set_contains(const struct prefix_set *s, const struct prefix *p)
{
	if (!s || !p)
		return false;
	for (size_t i = 0; i < s->n; i++)
		if (prefix_contains(&s->v[i], p))
			return true;
	return false;
}
