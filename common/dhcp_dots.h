/*
 * dhcp_dots.h: the DHCP options of DOTS agent discovery (RFC 8973 §5),
 * sans-I/O. Input is option bytes exactly as a DHCP server sent them;
 * output is a validated name and address list, and from it the ordered
 * candidate list the client half tries.
 *
 *   DHCPv6 OPTION_V6_DOTS_RI       141  peer name, DNS wire format (§5.1.1)
 *   DHCPv6 OPTION_V6_DOTS_ADDRESS  142  IPv6 addresses, 16*N octets (§5.1.2)
 *   DHCPv4 OPTION_V4_DOTS_RI       147  peer name, DNS wire format (§5.2.1)
 *   DHCPv4 OPTION_V4_DOTS_ADDRESS  148  IPv4 addresses, 4*N octets (§5.2.2)
 *
 * The rules, and where each is enforced (dhcp_dots.c cites them on the line):
 *   - DHCPv6: only the first instance of 141 and of 142 is used, later
 *     ones are ignored unread (§5.1.3).
 *   - DHCPv4: every instance of one code is one option split by the server
 *     (RFC 3396 §7: the receiver concatenates them in order before parsing);
 *     the DOTS RI "first instance" rule of §5.2.3 is then the first name of
 *     the concatenation, as its next paragraph says (names are told apart by
 *     their root labels).
 *   - A name is RFC 1035 §3.1 wire format without compression (RFC 8415
 *     §10): every label 1..63 octets, a root label ends it, 255 octets at
 *     most; only the first name is used, what follows its root label is
 *     ignored (§5.1.3, §5.2.3). Our choice, stricter than the RFC: every
 *     label must be a host name label (letters, digits, inner hyphens;
 *     RFC 1123 §2.1), because the name is resolved and matched as a DNS-ID
 *     (RFC 6125 §6.4), and the bare root name is refused.
 *   - An address option is at least one address and a multiple of the
 *     address size (§5.1.2 "MUST be a multiple of 16", §9.3 "minimal length
 *     is 4").
 *   - Multicast and loopback addresses are silently discarded (§5.1.3,
 *     §5.2.3 MUST). Our choice, also discarded: addresses that cannot be a
 *     unicast destination (IPv4 0.0.0.0/8 and 255.255.255.255, IPv6 ::), an
 *     IPv4-mapped IPv6 address whose IPv4 address would be discarded, and a
 *     repeated address (first kept). Link-local addresses are kept (§5: a
 *     gateway may be reached on one); the candidate names the interface.
 *   - With a valid address list the name is the reference identifier only
 *     and MUST NOT be resolved; with a name only it is resolved and is the
 *     reference identifier; with addresses only, the addresses are the
 *     identifiers (§5.1.3, §5.2.3).
 *     An address option left empty by the filters counts as absent (our
 *     reading: it holds no valid address), so a name next to it is
 *     resolved.
 *
 * Malformed input is refused whole: a function that fails writes a reason
 * into *why (dg_diag) and leaves *out untouched, so nothing of a malformed
 * lease is ever applied. Discarding an address is not a failure.
 */
#ifndef DG_DHCP_DOTS_H
#define DG_DHCP_DOTS_H

#include "dg.h"

#define DHCP_DOTS_V6_RI 141
#define DHCP_DOTS_V6_ADDRESS 142
#define DHCP_DOTS_V4_RI 147
#define DHCP_DOTS_V4_ADDRESS 148

/* RFC 9132 §4.1: DHCP carries no port, the signal channel's default. */
#define DHCP_DOTS_PORT 4646
/* RFC 1035 §3.1: 255 octets of wire format; its text form is shorter. */
#define DHCP_DOTS_NAME_WIRE_MAX 255
#define DHCP_DOTS_NAME_SIZE 254
/* Addresses kept from one option; more is refused (our bound). */
#define DHCP_DOTS_MAX_ADDRS 128
/* Option instances one lease may carry (our bound). */
#define DHCP_DOTS_MAX_OPTS 32
/* Interface names (IFNAMSIZ). */
#define DHCP_DOTS_IFNAME_SIZE 16
/* A lifetime of all ones means infinity (RFC 2131 §3.3, RFC 8415 §7.7). */
#define DHCP_DOTS_INFINITY 0xffffffffu

/* Which DHCP a lease came from. */
enum dhcp_dots_family {
	DHCP_DOTS_V4 = 4,
	DHCP_DOTS_V6 = 6
};

/* One option instance as received, in message order. */
struct dhcp_dots_opt {
	uint16_t code;
	uint16_t len;
	const uint8_t *data;
};

/* The validated content of one lease's DOTS options. */
struct dhcp_dots_info {
	enum dhcp_dots_family family;
	bool has_name;
	char name[DHCP_DOTS_NAME_SIZE];	/* text form, no trailing dot */
	size_t n_addrs;
	/* Network order; DHCPv4 addresses use the first 4 octets. */
	uint8_t addrs[DHCP_DOTS_MAX_ADDRS][16];
	unsigned n_discarded;		/* addresses dropped by the filters */
	unsigned n_ignored_instances;	/* DHCPv6 instances after the first */
	size_t n_trailing;		/* RI octets after the first name */
};

/*
 * Parses the DOTS options among opts[0..n) for family; other codes are
 * ignored. A lease without DOTS options gives an empty info (no name, no
 * address). Returns 0, or DG_EINVAL (malformed: *why says what and where)
 * or DG_ETOOBIG (more than DHCP_DOTS_MAX_ADDRS addresses kept, or more than
 * DHCP_DOTS_MAX_OPTS instances), *out untouched.
 */
int dhcp_dots_parse(enum dhcp_dots_family family,
		    const struct dhcp_dots_opt *opts, size_t n,
		    struct dhcp_dots_info *out, struct dg_diag *why);

/*
 * The same from a raw options area: DHCPv4 options as in a message after
 * the magic cookie (code, length, value; Pad 0 and End 255 have no length;
 * RFC 2132 §2), or DHCPv6 options (16-bit code and length; RFC 8415 §21.1).
 * An option overrunning the area is DG_EINVAL.
 */
int dhcp_dots_parse_v4_area(const uint8_t *area, size_t len,
			    struct dhcp_dots_info *out, struct dg_diag *why);
int dhcp_dots_parse_v6_area(const uint8_t *area, size_t len,
			    struct dhcp_dots_info *out, struct dg_diag *why);

/*
 * Decodes the first name of an RFC 1035 wire-format buffer into text
 * (labels joined by dots, no trailing dot), with the label rules above.
 * *used receives the octets of that name including its root label.
 * Returns 0 or DG_EINVAL with *why set.
 */
int dhcp_dots_name_decode(const uint8_t *wire, size_t len,
			  char out[DHCP_DOTS_NAME_SIZE], size_t *used,
			  struct dg_diag *why);

/*
 * True when RFC 8973 §5.1.3/§5.2.3 (and our additions above) discard the
 * address. *why_not, when not NULL, names the reason for a log line.
 */
bool dhcp_dots_v4_discarded(const uint8_t a[4], const char **why_not);
bool dhcp_dots_v6_discarded(const uint8_t a[16], const char **why_not);

/*
 * DHCP says nothing of the transport: the client half tries DTLS and TLS
 * as RFC 9132 §4.1 describes.
 */
enum dhcp_dots_transport {
	DHCP_DOTS_TRANSPORT_ANY = 0
};

enum dhcp_dots_addr_kind {
	DHCP_DOTS_ADDR_NONE = 0,	/* no address: resolve name */
	DHCP_DOTS_ADDR_V4 = 4,
	DHCP_DOTS_ADDR_V6 = 6
};

/* One DOTS server to try, in the order the lists give. */
struct dhcp_dots_cand {
	enum dhcp_dots_addr_kind kind;
	uint8_t addr[16];	/* network order; IPv4 in the first 4 octets */
	uint16_t port;
	enum dhcp_dots_transport transport;
	/* Reference identifier for authentication; "" means the address is
	 * the identifier (addresses only, §5.1.3). With kind NONE it is also
	 * the name to resolve; with an address it MUST NOT be resolved. */
	char name[DHCP_DOTS_NAME_SIZE];
	char ifname[DHCP_DOTS_IFNAME_SIZE];	/* where the lease was obtained */
	enum dhcp_dots_family source;		/* DHCPv4 or DHCPv6 */
	int64_t acquired;	/* wall-clock seconds the lease was received */
	int64_t expires;	/* acquired + lifetime; INT64_MAX for infinity */
};

/*
 * Appends info's candidates to out[*n..max): one per address in option
 * order, or a single name-only candidate. ifname must be shorter than
 * DHCP_DOTS_IFNAME_SIZE. Returns 0, or DG_ETOOBIG (nothing appended, *n
 * unchanged) when they do not fit, DG_EINVAL for a bad ifname.
 */
int dhcp_dots_candidates(const struct dhcp_dots_info *info, const char *ifname,
			 int64_t acquired, uint32_t lifetime,
			 struct dhcp_dots_cand *out, size_t max, size_t *n);

/* Text form of a candidate's address ("" for kind NONE); 46 octets do. */
void dhcp_dots_addr_text(const struct dhcp_dots_cand *c, char *buf, size_t size);

#endif
