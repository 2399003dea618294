/*
 * io_disc.h: RFC 8973 discovery wired into the client half.
 *
 * For each upstream with a discovery group, io_disc runs the mechanisms
 * the configuration enables (gateway/io_dhcp: the DHCP hooks' state
 * directory; gateway/io_dns: S-NAPTR, then DNS-SD), merges what they find
 * in RFC 8973 §4 order (the explicit address first, then DHCP, then
 * S-NAPTR, then DNS-SD; a repeat of (address, port, transport) dropped)
 * and hands the ordered list to the core through io_upstream_retarget().
 * The core connects to the first candidate and tries the next one when a
 * connection cannot be established (common/core.h).
 *
 * A list is published once every enabled mechanism has answered at least
 * once (so that a DNS answer arriving first cannot pin a session before
 * the DHCP candidates that RFC 8973 §4 prefers are known), at once when
 * the upstream has an explicit address. Both mechanisms re-run by
 * themselves: DNS when the list's TTL expires, DHCP when a lease changes
 * or expires; each new list goes to the core, which re-homes the
 * upstream's clients when the server in use is no longer offered. A DNS
 * run that fails transiently keeps the previous DNS candidates; a name
 * that no longer exists (NXDOMAIN, no data) drops them.
 */
#ifndef DG_IO_DISC_H
#define DG_IO_DISC_H

#include <uv.h>

#include "config.h"

struct io;
struct io_disc;

/* Starts discovery for every upstream of cfg that asks for it. Returns 0
 * (also when none does), DG_ENOMEM, or DG_EINVAL / DG_EIO when a
 * mechanism cannot start (logged). */
int io_disc_start(uv_loop_t *loop, struct io *io, const struct gw_config *cfg,
		  struct io_disc **out);

/* After io_reload(io, ncfg) succeeded: upstreams whose discovery settings
 * are unchanged keep running, others restart or stop (an upstream that no
 * longer uses discovery goes back to its configured address). */
int io_disc_reload(struct io_disc *d, const struct gw_config *ncfg);

/* Runs every discovery again now (the operator's request). Returns the
 * number of upstreams concerned. */
size_t io_disc_rediscover(struct io_disc *d);

/* Stops everything; the memory goes when libuv has closed the handles. */
void io_disc_stop(struct io_disc *d);

#endif
