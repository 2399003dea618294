/*
 * io_disc.c: RFC 8973 discovery wired into the client half (io_disc.h).
 */
#include "io_disc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/core.h"
#include "../common/disc.h"
#include "../common/dhcp_dots.h"
#include "io_coap.h"
#include "io_dhcp.h"
#include "io_dns.h"

#define LOG_DISC "disc"

struct disc_up {
	struct io_disc *owner;
	const struct gw_upstream *u;
	char name[65];
	struct io_dns *dns;
	struct io_dns_disc *dns_h;
	struct io_dhcp *dhcp;
	bool dns_seen, dhcp_seen;   /* the mechanism answered once */
	size_t ndns, ndhcp;
	struct disc_candidate dns_c[DISC_CANDIDATES_MAX];
	struct dhcp_dots_cand dhcp_c[CORE_TARGETS_MAX];
};

struct io_disc {
	uv_loop_t *loop;
	struct io *io;
	struct disc_up **ups;
	size_t nups;
};

static bool str_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Whether a running discovery for a can serve b unchanged. */
static bool disc_same(const struct gw_upstream *a, const struct gw_upstream *b)
{
	const struct gw_discovery *x = &a->discovery, *y = &b->discovery;

	return str_same(a->address, b->address) && a->port == b->port &&
	       a->transport == b->transport && str_same(a->server_name, b->server_name) &&
	       x->enabled == y->enabled && str_same(x->domain, y->domain) &&
	       x->dhcp == y->dhcp && str_same(x->dhcp_dir, y->dhcp_dir) &&
	       x->dns == y->dns && str_same(x->resolver, y->resolver) &&
	       x->transport_mask == y->transport_mask && x->ttl_min == y->ttl_min;
}

/* signal.udp is DTLS and signal.tcp TLS (RFC 9132 §4.3); plain CoAP when
 * the upstream is configured plain (gateway.insecure-lab). */
static int transport_for(const struct gw_upstream *u, bool stream)
{
	if (gw_transport_secure(u->transport))
		return stream ? GW_TR_TLS : GW_TR_DTLS;
	return stream ? GW_TR_TCP : GW_TR_UDP;
}

static void add_target(struct core_target *t, size_t *n, const char *addr,
		       uint16_t port, int transport, const char *ref_id)
{
	struct core_target c;

	if (*n >= CORE_TARGETS_MAX)
		return;
	memset(&c, 0, sizeof(c));
	if (snprintf(c.address, sizeof(c.address), "%s", addr) >= (int)sizeof(c.address))
		return;
	c.port = port;
	c.transport = transport;
	snprintf(c.ref_id, sizeof(c.ref_id), "%s", ref_id ? ref_id : "");
	for (size_t i = 0; i < *n; i++)
		if (strcmp(t[i].address, c.address) == 0 && t[i].port == c.port &&
		    t[i].transport == c.transport)
			return; /* RFC 8973 §4: the first source's entry wins */
	t[(*n)++] = c;
}

/* Merges what the mechanisms found (RFC 8973 §4 order) and hands it to
 * the core. */
static void publish(struct disc_up *e)
{
	const struct gw_upstream *u = e->u;
	const struct gw_discovery *d = &u->discovery;
	struct core_target t[CORE_TARGETS_MAX];
	size_t n = 0;
	char addr[DISC_ADDR_TEXT_MAX];

	if (!u->address && ((d->dhcp && !e->dhcp_seen) || (d->dns && !e->dns_seen)))
		return; /* wait for every mechanism's first answer */
	if (u->address)
		add_target(t, &n, u->address, u->port, u->transport, u->server_name);
	for (size_t i = 0; i < e->ndhcp; i++) {
		const struct dhcp_dots_cand *c = &e->dhcp_c[i];
		const char *ref;

		/* §5: the name is the reference identifier; without one, the
		 * address is. A name-only candidate is resolved at connect. */
		dhcp_dots_addr_text(c, addr, sizeof(addr));
		ref = c->name[0] ? c->name : addr;
		if (c->kind == DHCP_DOTS_ADDR_NONE)
			snprintf(addr, sizeof(addr), "%.45s", c->name);
		if (!addr[0])
			continue;
		if (d->transport_mask & GW_DISC_UDP)
			add_target(t, &n, addr, c->port, transport_for(u, false), ref);
		if (d->transport_mask & GW_DISC_TCP)
			add_target(t, &n, addr, c->port, transport_for(u, true), ref);
	}
	for (size_t i = 0; i < e->ndns; i++) {
		const struct disc_candidate *c = &e->dns_c[i];

		if (c->transport == DISC_DATA_TCP)
			continue;
		/* §8.2: the reference identifier is the configured domain. */
		add_target(t, &n, c->address, c->port,
			   transport_for(u, c->transport == DISC_SIGNAL_TCP), c->ref_id);
	}
	if (io_upstream_retarget(e->owner->io, e->name, t, n))
		dg_warn(LOG_DISC, "upstream=%s the core refused the candidate list", e->name);
}

static void on_dns(struct io_dns_disc *h, const struct disc_result *r, void *arg)
{
	struct disc_up *e = arg;

	(void)h;
	e->dns_seen = true;
	if (r->status == 0) {
		e->ndns = r->n;
		memcpy(e->dns_c, r->c, r->n * sizeof(r->c[0]));
		dg_info(LOG_DISC, "upstream=%s DNS: %zu candidate(s) (run %u)", e->name, r->n, r->run);
	} else if (r->status == DG_ENOENT) {
		e->ndns = 0;
		dg_warn(LOG_DISC, "upstream=%s DNS: no DOTS server under %s (run %u)", e->name,
			e->u->discovery.domain, r->run);
	} else {
		/* Transient: keep what the last good run found. */
		dg_warn(LOG_DISC, "upstream=%s DNS: run %u failed; keeping %zu earlier candidate(s)",
			e->name, r->run, e->ndns);
	}
	publish(e);
}

static void on_dhcp(const struct dhcp_dots_cand *list, size_t n, void *arg)
{
	struct disc_up *e = arg;

	e->dhcp_seen = true;
	if (n > CORE_TARGETS_MAX)
		n = CORE_TARGETS_MAX;
	e->ndhcp = n;
	if (n)	/* an empty list may come as NULL: memcpy(d, NULL, 0) is UB */
		memcpy(e->dhcp_c, list, n * sizeof(list[0]));
	dg_info(LOG_DISC, "upstream=%s DHCP: %zu candidate(s)", e->name, n);
	publish(e);
}

static int dns_begin(struct disc_up *e)
{
	const struct gw_discovery *d = &e->u->discovery;
	struct disc_params p;

	memset(&p, 0, sizeof(p));
	p.ttl_min = d->ttl_min;
	p.transports = ((d->transport_mask & GW_DISC_UDP) ? 1u << DISC_SIGNAL_UDP : 0) |
		       ((d->transport_mask & GW_DISC_TCP) ? 1u << DISC_SIGNAL_TCP : 0);
	return io_dns_discover(e->dns, d->domain, &p, on_dns, e, &e->dns_h);
}

static void up_stop(struct disc_up *e)
{
	if (e->dns)
		io_dns_close(e->dns); /* cancels e->dns_h too */
	if (e->dhcp)
		io_dhcp_stop(e->dhcp);
	free(e);
}

static int up_start(struct io_disc *dd, const struct gw_upstream *u, struct disc_up **out)
{
	const struct gw_discovery *d = &u->discovery;
	struct disc_up *e = calloc(1, sizeof(*e));
	int rc = 0;

	if (!e)
		return DG_ENOMEM;
	e->owner = dd;
	e->u = u;
	snprintf(e->name, sizeof(e->name), "%s", u->name);
	if (d->dns) {
		struct io_dns_opts o = { .servers = d->resolver };
		rc = io_dns_new(dd->loop, &o, &e->dns);
		if (!rc)
			rc = dns_begin(e);
	}
	if (!rc && d->dhcp) {
		struct io_dhcp_opts o = { .dir = d->dhcp_dir, .cb = on_dhcp, .arg = e };
		rc = io_dhcp_start(dd->loop, &o, &e->dhcp);
	}
	if (rc) {
		dg_err(LOG_DISC, "upstream=%s cannot start discovery: %s", u->name, dg_strerror(rc));
		up_stop(e);
		return rc;
	}
	dg_info(LOG_DISC, "upstream=%s discovery started:%s%s%s%s", u->name,
		u->address ? " explicit address first," : "", d->dhcp ? " DHCP" : "",
		d->dns ? " DNS " : "", d->dns ? d->domain : "");
	*out = e;
	publish(e); /* the explicit address at once */
	return 0;
}

int io_disc_start(uv_loop_t *loop, struct io *io, const struct gw_config *cfg,
		  struct io_disc **out)
{
	struct io_disc *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return DG_ENOMEM;
	d->loop = loop;
	d->io = io;
	*out = d;
	rc = io_disc_reload(d, cfg);
	if (rc) {
		io_disc_stop(d);
		*out = NULL;
	}
	return rc;
}

int io_disc_reload(struct io_disc *d, const struct gw_config *ncfg)
{
	struct disc_up **nv = calloc(ncfg->nupstreams ? ncfg->nupstreams : 1, sizeof(*nv));
	size_t nn = 0;
	int rc = 0;

	if (!nv)
		return DG_ENOMEM;
	for (size_t i = 0; i < ncfg->nupstreams; i++) {
		const struct gw_upstream *u = &ncfg->upstreams[i];
		struct disc_up *e = NULL;

		for (size_t j = 0; j < d->nups; j++) {
			if (d->ups[j] && strcmp(d->ups[j]->name, u->name) == 0) {
				e = d->ups[j];
				d->ups[j] = NULL;
				break;
			}
		}
		if (e && u->discovery.enabled && disc_same(e->u, u)) {
			e->u = u; /* unchanged: keeps running */
			nv[nn++] = e;
			continue;
		}
		if (e) {
			up_stop(e);
			if (!u->discovery.enabled) /* back to the configured address */
				io_upstream_retarget(d->io, u->name, NULL, 0);
		}
		if (!u->discovery.enabled)
			continue;
		int r = up_start(d, u, &e);
		if (r)
			rc = r;
		else
			nv[nn++] = e;
	}
	for (size_t j = 0; j < d->nups; j++) {
		if (d->ups[j]) { /* the upstream is gone */
			io_upstream_retarget(d->io, d->ups[j]->name, NULL, 0);
			up_stop(d->ups[j]);
		}
	}
	free(d->ups);
	d->ups = nv;
	d->nups = nn;
	return rc;
}

size_t io_disc_rediscover(struct io_disc *d)
{
	for (size_t i = 0; d && i < d->nups; i++) {
		struct disc_up *e = d->ups[i];

		dg_info(LOG_DISC, "upstream=%s discovery requested", e->name);
		if (e->dhcp)
			io_dhcp_rescan(e->dhcp);
		if (e->dns_h) {
			io_dns_cancel(e->dns_h);
			e->dns_h = NULL;
			if (dns_begin(e))
				dg_err(LOG_DISC, "upstream=%s cannot restart DNS discovery", e->name);
		}
	}
	return d ? d->nups : 0;
}

void io_disc_stop(struct io_disc *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nups; i++)
		up_stop(d->ups[i]);
	free(d->ups);
	free(d);
}
