/*
 * io_dhcp.h: DOTS servers discovered through DHCP (RFC 8973 §5), on the
 * daemon's libuv loop.
 *
 * dotsgw runs no DHCP client. The system's client runs a dotsgw hook
 * (scripts/dhcp/) that writes one state file per interface and address
 * family (common/dhcp_state.h) into a directory; this module watches that
 * directory (uv_fs_event, plus a periodic re-read as a safety net for
 * missed events), validates every file (common/dhcp_dots.h: RFC 8973 §5
 * rules) and hands the merged, ordered candidate list to a callback.
 *
 * The list: sources (files) ordered by interface name, DHCPv6 before
 * DHCPv4 on one interface (RFC 6724 §10.3 prefers IPv6), each source's
 * candidates in the DHCP server's order (§5.1.2, §5.2.2: order of
 * preference). A candidate whose lease has expired (wall clock) leaves the
 * list; RFC 8973 §4 has discovery re-run then, which here is the client's
 * next lease, written by the hook.
 *
 * The directory must be owned by root (or the daemon's user) and writable
 * by nobody else, or it is treated as empty with a warning: whoever writes
 * it chooses the DOTS servers. Files are opened without following links
 * and must be regular files of at most DHCP_STATE_MAX octets.
 *
 * A file that is malformed, or whose options break an RFC 8973 §5 rule, is
 * rejected whole with one warning (group "dhcp") naming the file and the
 * reason, once per distinct content; the source keeps what it had before
 * (nothing of a rejected file is applied) until that expires or a valid
 * file replaces it. A removed file removes its source.
 *
 * Wiring into the client half (later): start it next to io_coap with the
 * configured directory; in the callback, hand the list to the code that
 * picks upstreams. The list is only valid during the callback: copy what
 * is kept. This module never touches the configuration or the core.
 */
#ifndef DG_IO_DHCP_H
#define DG_IO_DHCP_H

#include <uv.h>

#include "dhcp_state.h"

#define IO_DHCP_DEFAULT_DIR "/run/dotsgw/dhcp"
/* The safety-net re-read interval when none is given. */
#define IO_DHCP_DEFAULT_RESCAN_MS 30000
/* State files considered; more are ignored with a warning (our bound). */
#define IO_DHCP_MAX_SOURCES 32

struct io_dhcp;

/*
 * Called once after the first read (even with an empty list), then each
 * time the merged list changes. list[0..n) lives until the callback
 * returns. The callback may call io_dhcp_stop().
 */
typedef void (*io_dhcp_cb)(const struct dhcp_dots_cand *list, size_t n,
			   void *arg);

struct io_dhcp_opts {
	const char *dir;	/* NULL: IO_DHCP_DEFAULT_DIR */
	unsigned rescan_ms;	/* 0: IO_DHCP_DEFAULT_RESCAN_MS */
	io_dhcp_cb cb;
	void *arg;
};

/*
 * Creates the directory if missing (mode 0755, parents too), starts
 * watching it and schedules the first read on the loop (the callback never
 * runs from inside io_dhcp_start). Returns 0 and *out, or DG_ENOMEM /
 * DG_EINVAL (no callback, directory path too long) / DG_EIO (a libuv
 * handle could not start), calling nothing. A directory that cannot be
 * watched is not an error: it is logged and re-read on the timer only.
 */
int io_dhcp_start(uv_loop_t *loop, const struct io_dhcp_opts *opts,
		  struct io_dhcp **out);

/* Re-reads the directory now (for SIGHUP or tests); the callback runs if
 * the list changed. */
void io_dhcp_rescan(struct io_dhcp *w);

/*
 * Closes the handles; the memory is freed when the last one is closed, so
 * the loop must run once more. The callback is never called after this.
 */
void io_dhcp_stop(struct io_dhcp *w);

#endif
