/*
 * io_dns.h: DNS lookups for discovery (common/disc) on the daemon's libuv
 * loop, through c-ares.
 *
 * c-ares is asynchronous, parses names with compression safely
 * (ares_expand_name) and tells us which sockets to watch
 * (ARES_OPT_SOCK_STATE_CB) and when to call it back (ares_timeout), so it
 * runs on our loop with one uv_poll per socket and one uv_timer: no thread,
 * no blocking call.
 *
 * One io_dns holds a c-ares channel. Each io_dns_discover() runs RFC 8973
 * discovery for one domain and keeps running it: the callback gets every
 * result (the ordered candidates and their expiry, or a failure and when
 * the next try is), and a new run starts by itself at that time, until
 * io_dns_cancel().
 *
 * Every answer is hostile. io_dns parses answer sections itself, because
 * the typed parsers of c-ares 1.18 drop TTLs and owner names that RFC 8973
 * §4 (validity) and the CNAME checks need: names and strings through
 * c-ares (ares_expand_name), every length checked against its record and
 * the message, at most DISC_ANSWER_RR_MAX records, and for NAPTR and SRV
 * answers c-ares's own parser must agree on the count (a message either
 * parser refuses is refused). disc then checks every record.
 *
 * Wiring plan (not done yet): the client half calls io_dns_discover() for
 * an upstream configured by domain, and on each callback hands the
 * candidates to the core, which connects to the first one it can, checks
 * the server's certificate against candidate.ref_id, and re-homes when a
 * new list no longer holds the current one.
 */
#ifndef DG_IO_DNS_H
#define DG_IO_DNS_H

#include <uv.h>

#include "disc.h"

struct io_dns_opts {
	/* Resolvers as "IP[:PORT],[IPv6]:PORT..." (ares_set_servers_ports_csv);
	 * NULL: the system's (/etc/resolv.conf). */
	const char *servers;
	unsigned timeout_ms; /* first try; c-ares doubles it; 0: 2000 */
	unsigned tries;      /* per query; 0: 2 */
};

struct io_dns;
struct io_dns_disc;

/* A result; r is valid during the call only. h may be cancelled inside. */
typedef void (*io_dns_cb)(struct io_dns_disc *h, const struct disc_result *r, void *arg);

/* Returns 0, DG_EINVAL (servers unparsable: logged), DG_EIO or DG_ENOMEM. */
int io_dns_new(uv_loop_t *loop, const struct io_dns_opts *o, struct io_dns **out);

/* Cancels every discovery (no callback after this), closes the channel
 * and handles; the memory goes when libuv has closed them. */
void io_dns_close(struct io_dns *io);

/* Starts discovering domain (disc_new rules); p as for disc_new (NULL:
 * defaults), its random source defaulting to getrandom(2). The first run
 * starts at once. Returns 0, DG_EINVAL or DG_ENOMEM; on error cb is never
 * called. */
int io_dns_discover(struct io_dns *io, const char *domain, const struct disc_params *p,
		    io_dns_cb cb, void *arg, struct io_dns_disc **out);

/* Stops a discovery; its callback is not called again. */
void io_dns_cancel(struct io_dns_disc *h);

/*
 * Internal, for tests: turns the message abuf (the answer to (qname,
 * qtype)) into disc records. Strings live in *arena until
 * io_dns__arena_free(). Returns 0 with *st set, or DG_EINVAL (malformed:
 * the reason logged), DG_ETOOBIG (more than max records).
 */
struct io_dns_arena {
	char *p[2 * DISC_ANSWER_RR_MAX + 24];
	size_t n;
};
int io_dns__parse(const unsigned char *abuf, int alen, uint16_t qtype, struct disc_rr *rr,
		  size_t max, size_t *n, uint32_t *neg_ttl, struct io_dns_arena *arena);
void io_dns__arena_free(struct io_dns_arena *arena);

#endif
