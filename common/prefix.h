/*
 * prefix.h: IPv4/IPv6 prefixes, port ranges, and the sets of them that
 * describe a client's allowed scope. Pure functions, no allocation except
 * in prefix_set_*.
 */
#ifndef DG_PREFIX_H
#define DG_PREFIX_H

#include "dg.h"

struct prefix {
	uint8_t family; /* 4 or 6 */
	uint8_t len;    /* prefix length in bits: 0..32 or 0..128 */
	uint8_t addr[16]; /* network order; IPv4 uses addr[0..3] */
};

/*
 * Parses "192.0.2.0/24" or "2001:db8::/32" (the inet:ip-prefix syntax;
 * the "/len" part is mandatory). Returns 0, or DG_EINVAL for a malformed
 * string, and DG_ERANGE when the address has bits set beyond the prefix
 * length (a non-canonical prefix, which RFC 9132 requests must not carry).
 * With allow_host_bits the host bits are cleared instead of refused.
 */
int prefix_parse(const char *s, bool allow_host_bits, struct prefix *out);

/* Writes the canonical text form ("2001:db8::/32"). Returns the length, or
 * DG_ETOOBIG when it does not fit (48 bytes always suffice). */
int prefix_format(const struct prefix *p, char *buf, size_t len);

/* outer contains inner (same family, outer->len <= inner->len, bits match). */
bool prefix_contains(const struct prefix *outer, const struct prefix *inner);
/* a and b share at least one address. */
bool prefix_overlaps(const struct prefix *a, const struct prefix *b);
/* Loopback, multicast, limited broadcast, unspecified, link-local
 * multicast: never valid mitigation targets (RFC 9132 §4.4.1.1). */
bool prefix_is_forbidden_target(const struct prefix *p);

struct port_range {
	uint16_t lower, upper; /* inclusive; lower <= upper */
};

/* Parses "80" or "1024-65535". Returns 0 or DG_EINVAL. */
int port_range_parse(const char *s, struct port_range *out);
bool port_range_contains(const struct port_range *outer,
			 const struct port_range *inner);
bool port_range_overlaps(const struct port_range *a,
			 const struct port_range *b);

/* A growable array of prefixes; zero-initialise before use. */
struct prefix_set {
	struct prefix *v;
	size_t n, cap;
};
int prefix_set_add(struct prefix_set *s, const struct prefix *p);
void prefix_set_free(struct prefix_set *s);
/* Some member of s contains p. */
bool prefix_set_contains(const struct prefix_set *s, const struct prefix *p);

#endif
