/*
 * dhcp_state.h: the state files the DHCP client hooks (scripts/dhcp/)
 * write for dotsgw, sans-I/O. dotsgw runs no DHCP client: a hook in the
 * system's client writes, for each interface and address family, the raw
 * bytes of the DOTS options it received, and gateway/io_dhcp.c reads them.
 * The file is hostile input (any local process able to write the directory,
 * or a hook fed by a hostile DHCP server): this parser is strict, bounded
 * and allocation-free.
 *
 * File name: IFACE.v4 or IFACE.v6 (IFACE: 1..15 of [A-Za-z0-9_.-], not
 * starting with '.' or '-'; names starting with '.' are the hooks' temp
 * files). Content, every line ending in '\n', one space between fields,
 * nothing else (no comments, no blank lines, no '\r'):
 *
 *   dotsgw-dhcp 1                 format and version, first line
 *   interface eth0                must match the file name
 *   family 4                      4 or 6, must match the file name
 *   reason BOUND                  optional: the client's reason, [A-Z0-9]
 *   acquired 1763790000           wall-clock seconds the lease arrived
 *   lifetime 3600                 seconds it is valid: DHCPv4 lease time,
 *                                 DHCPv6 valid lifetime or information
 *                                 refresh time; 4294967295 is infinity
 *   option 147 04646f7473...00    code (a DOTS code of the family) and the
 *                                 value in hex; "-" for an empty value;
 *                                 repeated in message order for several
 *                                 instances (dhcp_dots.h says how they
 *                                 combine)
 *
 * interface, family, acquired and lifetime appear exactly once, option at
 * most DHCP_DOTS_MAX_OPTS times; any other line is an error.
 */
#ifndef DG_DHCP_STATE_H
#define DG_DHCP_STATE_H

#include "dhcp_dots.h"

/* Largest state file accepted; a DHCP message's options fit in it. */
#define DHCP_STATE_MAX 16384
#define DHCP_STATE_MAGIC "dotsgw-dhcp 1"

struct dhcp_state_opt {
	uint16_t code;
	uint16_t len;
	uint16_t off;	/* into dhcp_state.buf */
};

struct dhcp_state {
	char ifname[DHCP_DOTS_IFNAME_SIZE];
	enum dhcp_dots_family family;
	char reason[16];	/* "" when absent */
	int64_t acquired;
	uint32_t lifetime;
	size_t n_opts;
	struct dhcp_state_opt opts[DHCP_DOTS_MAX_OPTS];
	uint8_t buf[DHCP_STATE_MAX / 2];
};

/*
 * Splits a file name into interface and family. Returns 0, or DG_EINVAL
 * for a name that is not a state file's (temp files included).
 */
int dhcp_state_filename(const char *name, char ifname[DHCP_DOTS_IFNAME_SIZE],
			enum dhcp_dots_family *family);

/*
 * Parses len bytes of a state file into *out. Returns 0, or DG_EINVAL /
 * DG_ETOOBIG with *why naming the line and the fault; *out is then
 * untouched. Checks the format only: the options' content is checked by
 * dhcp_state_candidates().
 */
int dhcp_state_parse(const char *text, size_t len, struct dhcp_state *out,
		     struct dg_diag *why);

/*
 * Validates st's DOTS options (dhcp_dots_parse) and appends its candidates
 * to out[*n..max) (dhcp_dots_candidates). *info, when not NULL, receives
 * the parse result. Returns 0, DG_EINVAL or DG_ETOOBIG with *why set;
 * on failure nothing is appended.
 */
int dhcp_state_candidates(const struct dhcp_state *st,
			  struct dhcp_dots_info *info,
			  struct dhcp_dots_cand *out, size_t max, size_t *n,
			  struct dg_diag *why);

#endif
