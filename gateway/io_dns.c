/*
 * io_dns.c: c-ares on the libuv loop, driving common/disc (io_dns.h).
 */
#include "io_dns.h"

#include <ares.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define LOG_GROUP "dns"
#define SOCKS_MAX 16
#define AUTH_RR_MAX 16

struct io_dns_sock {
	uv_poll_t poll;
	struct io_dns *io;
	ares_socket_t fd;
	bool live;
};

struct io_dns {
	uv_loop_t *loop;
	ares_channel channel;
	bool channel_ok;
	uv_timer_t timer;     /* ares_timeout */
	unsigned handles;     /* open uv handles, timer included */
	bool closing;
	struct io_dns_sock *socks[SOCKS_MAX];
	struct io_dns_disc *discs;
};

struct io_dns_disc {
	struct io_dns *io;
	struct io_dns_disc *next;
	struct disc *disc;
	uv_timer_t timer;     /* disc_next_expiry */
	io_dns_cb cb;
	void *arg;
	unsigned inflight;    /* c-ares queries not yet called back */
	bool cancelled;
	bool timer_closed;
};

struct qctx {
	struct io_dns_disc *h;
	uint32_t id;
	uint16_t type;
};

static dg_time_ms now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static void io_maybe_free(struct io_dns *io)
{
	if (io->closing && io->handles == 0 && !io->discs)
		free(io);
}

static void on_sock_closed(uv_handle_t *h)
{
	struct io_dns_sock *s = h->data;
	struct io_dns *io = s->io;

	free(s);
	io->handles--;
	io_maybe_free(io);
}

static void on_ares_timer(uv_timer_t *t);

static void arm_ares_timer(struct io_dns *io)
{
	struct timeval tv, *t;

	if (!io->channel_ok || io->closing)
		return;
	t = ares_timeout(io->channel, NULL, &tv);
	if (!t) {
		uv_timer_stop(&io->timer);
		return;
	}
	uv_timer_start(&io->timer, on_ares_timer, (uint64_t)t->tv_sec * 1000 + (uint64_t)t->tv_usec / 1000 + 1, 0);
}

static void on_ares_timer(uv_timer_t *t)
{
	struct io_dns *io = t->data;

	ares_process_fd(io->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_ares_timer(io);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct io_dns_sock *s = p->data;
	struct io_dns *io = s->io;
	ares_socket_t fd = s->fd;

	/* An error on the socket: let c-ares read and write and find out. */
	if (status < 0)
		events = UV_READABLE | UV_WRITABLE;
	ares_process_fd(io->channel, (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
			(events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
	arm_ares_timer(io);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct io_dns *io = data;
	struct io_dns_sock *s = NULL;
	int slot = -1, events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

	for (int i = 0; i < SOCKS_MAX && !s; i++)
		if (io->socks[i] && io->socks[i]->fd == fd)
			s = io->socks[i], slot = i;
	for (int i = 0; i < SOCKS_MAX && !s && slot < 0; i++)
		if (!io->socks[i])
			slot = i;
	if (!events) {
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, on_sock_closed);
			io->socks[slot] = NULL;
		}
		return;
	}
	if (!s) {
		if (io->closing)
			return;
		if (slot < 0) {
			dg_err(LOG_GROUP, "more than %d resolver sockets, socket %d not watched",
			       SOCKS_MAX, (int)fd);
			return;
		}
		s = calloc(1, sizeof(*s));
		if (!s || uv_poll_init(io->loop, &s->poll, fd) != 0) {
			dg_err(LOG_GROUP, "cannot watch resolver socket %d", (int)fd);
			free(s);
			return;
		}
		s->io = io;
		s->fd = fd;
		s->poll.data = s;
		io->socks[slot] = s;
		io->handles++;
	}
	uv_poll_start(&s->poll, events, on_poll);
}

int io_dns_new(uv_loop_t *loop, const struct io_dns_opts *o, struct io_dns **out)
{
	static bool lib_ok;
	struct ares_options ao;
	struct io_dns *io;
	int rc, mask;

	if (!lib_ok) {
		if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
			return DG_EIO;
		lib_ok = true;
	}
	io = calloc(1, sizeof(*io));
	if (!io)
		return DG_ENOMEM;
	io->loop = loop;
	memset(&ao, 0, sizeof(ao));
	ao.sock_state_cb = on_sock_state;
	ao.sock_state_cb_data = io;
	ao.timeout = (int)(o && o->timeout_ms ? o->timeout_ms : 2000);
	ao.tries = (int)(o && o->tries ? o->tries : 2);
	/* No search list, no "ndots" games: discovery asks exact names. */
	ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
	rc = ares_init_options(&io->channel, &ao, mask);
	if (rc != ARES_SUCCESS) {
		dg_err(LOG_GROUP, "c-ares: %s", ares_strerror(rc));
		free(io);
		return rc == ARES_ENOMEM ? DG_ENOMEM : DG_EIO;
	}
	io->channel_ok = true;
	if (o && o->servers) {
		rc = ares_set_servers_ports_csv(io->channel, o->servers);
		if (rc != ARES_SUCCESS) {
			dg_err(LOG_GROUP, "resolver \"%s\": %s", o->servers, ares_strerror(rc));
			ares_destroy(io->channel);
			free(io);
			return DG_EINVAL;
		}
	}
	uv_timer_init(loop, &io->timer);
	io->timer.data = io;
	io->handles = 1;
	*out = io;
	return 0;
}

/* ---- answers ---- */

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void io_dns__arena_free(struct io_dns_arena *arena)
{
	for (size_t i = 0; i < arena->n; i++)
		ares_free_string(arena->p[i]);
	arena->n = 0;
}

/* Expands the name at p (inside [rd, end) when rd is set) into the arena. */
static int get_name(const unsigned char *p, const unsigned char *abuf, int alen,
		    const unsigned char *end, struct io_dns_arena *arena, const char **out,
		    const unsigned char **next)
{
	char *s = NULL;
	long enclen = 0;

	if (arena->n == sizeof(arena->p) / sizeof(arena->p[0]))
		return DG_ETOOBIG;
	if (p >= end || ares_expand_name(p, abuf, alen, &s, &enclen) != ARES_SUCCESS)
		return DG_EINVAL;
	arena->p[arena->n++] = s;
	/* ares_expand_name gives "" for the root; longer than any name
	 * disc accepts is refused there, but stop silly lengths here. */
	if (enclen <= 0 || p + enclen > end || strlen(s) > 4 * 255)
		return DG_EINVAL;
	*out = s;
	*next = p + enclen;
	return 0;
}

/* A <character-string> (RFC 1035 §3.3) inside [p, end). */
static int get_cstr(const unsigned char **p, const unsigned char *end, const char **s,
		    size_t *len)
{
	if (*p >= end || *p + 1 + **p > end)
		return DG_EINVAL;
	*len = **p;
	*s = (const char *)*p + 1;
	*p += 1 + *len;
	return 0;
}

static int parse_rdata(const unsigned char *abuf, int alen, const unsigned char *rd,
		       const unsigned char *end, struct disc_rr *rr, struct io_dns_arena *arena)
{
	const unsigned char *p = rd;
	size_t rdlen = (size_t)(end - rd);

	switch (rr->type) {
	case DISC_RR_A:
		if (rdlen != 4)
			return DG_EINVAL;
		memcpy(rr->u.addr, rd, 4);
		return 0;
	case DISC_RR_AAAA:
		if (rdlen != 16)
			return DG_EINVAL;
		memcpy(rr->u.addr, rd, 16);
		return 0;
	case DISC_RR_CNAME:
	case DISC_RR_PTR:
		if (get_name(p, abuf, alen, end, arena, &rr->u.name, &p))
			return DG_EINVAL;
		return p == end ? 0 : DG_EINVAL;
	case DISC_RR_SRV:
		if (rdlen < 7)
			return DG_EINVAL;
		rr->u.srv.priority = get16(rd);
		rr->u.srv.weight = get16(rd + 2);
		rr->u.srv.port = get16(rd + 4);
		if (get_name(rd + 6, abuf, alen, end, arena, &rr->u.srv.target, &p))
			return DG_EINVAL;
		return p == end ? 0 : DG_EINVAL;
	case DISC_RR_NAPTR:
		if (rdlen < 8)
			return DG_EINVAL;
		rr->u.naptr.order = get16(rd);
		rr->u.naptr.preference = get16(rd + 2);
		p = rd + 4;
		if (get_cstr(&p, end, &rr->u.naptr.flags, &rr->u.naptr.flags_len) ||
		    get_cstr(&p, end, &rr->u.naptr.service, &rr->u.naptr.service_len) ||
		    get_cstr(&p, end, &rr->u.naptr.regexp, &rr->u.naptr.regexp_len) ||
		    get_name(p, abuf, alen, end, arena, &rr->u.naptr.replacement, &p))
			return DG_EINVAL;
		return p == end ? 0 : DG_EINVAL;
	case DISC_RR_TXT:
		while (p < end) {
			const char *s;
			size_t len;

			if (get_cstr(&p, end, &s, &len))
				return DG_EINVAL;
		}
		return 0;
	}
	return 0;
}

/* RFC 2181 §8: a TTL with the top bit set is taken as zero. */
static uint32_t ttl_of(uint32_t t)
{
	return t & 0x80000000u ? 0 : t;
}

/* c-ares's own parser must accept what we accepted, with the same count. */
static int cares_agrees(const unsigned char *abuf, int alen, uint16_t qtype, size_t n)
{
	size_t count = 0;
	int rc;

	if (qtype == DISC_RR_NAPTR) {
		struct ares_naptr_reply *r = NULL;

		rc = ares_parse_naptr_reply(abuf, alen, &r);
		for (struct ares_naptr_reply *x = r; x; x = x->next)
			count++;
		ares_free_data(r);
	} else if (qtype == DISC_RR_SRV) {
		struct ares_srv_reply *r = NULL;

		rc = ares_parse_srv_reply(abuf, alen, &r);
		for (struct ares_srv_reply *x = r; x; x = x->next)
			count++;
		ares_free_data(r);
	} else {
		return 0;
	}
	if (rc == ARES_ENODATA && n == 0)
		return 0;
	if (rc != ARES_SUCCESS || count != n)
		return DG_EINVAL;
	return 0;
}

int io_dns__parse(const unsigned char *abuf, int alen, uint16_t qtype, struct disc_rr *rr,
		  size_t max, size_t *n, uint32_t *neg_ttl, struct io_dns_arena *arena)
{
	const unsigned char *p, *end = abuf + alen;
	unsigned qd, an, ns;
	size_t typed = 0;

	*n = 0;
	*neg_ttl = 0;
	if (alen < 12)
		return DG_EINVAL;
	qd = get16(abuf + 4);
	an = get16(abuf + 6);
	ns = get16(abuf + 8);
	if (qd != 1)
		return DG_EINVAL;
	if (an > max)
		return DG_ETOOBIG;
	p = abuf + 12;
	{
		const char *qn;

		if (get_name(p, abuf, alen, end, arena, &qn, &p) || p + 4 > end)
			return DG_EINVAL;
		p += 4;
	}
	for (unsigned i = 0; i < an + ns && i < an + AUTH_RR_MAX; i++) {
		struct disc_rr tmp, *r = i < an ? &rr[*n] : &tmp;
		const char *owner;
		uint16_t cls;
		size_t rdlen;

		memset(r, 0, sizeof(*r));
		if (get_name(p, abuf, alen, end, arena, &owner, &p) || p + 10 > end)
			return DG_EINVAL;
		r->owner = owner;
		r->type = get16(p);
		cls = get16(p + 2);
		r->ttl = ttl_of(get32(p + 4));
		rdlen = get16(p + 8);
		p += 10;
		if (p + rdlen > end)
			return DG_EINVAL;
		if (i >= an) {
			/* RFC 2308 §5: the negative TTL is the SOA's TTL or
			 * its MINIMUM, whichever is less. */
			if (r->type == 6 && rdlen >= 22) {
				uint32_t min = get32(p + rdlen - 4);

				*neg_ttl = min < r->ttl ? min : r->ttl;
			}
			p += rdlen;
			continue;
		}
		if (cls != 1) { /* not IN: not ours */
			p += rdlen;
			continue;
		}
		if (parse_rdata(abuf, alen, p, p + rdlen, r, arena))
			return DG_EINVAL;
		typed += r->type == qtype;
		p += rdlen;
		(*n)++;
	}
	return cares_agrees(abuf, alen, qtype, typed);
}

/* ---- discoveries ---- */

static void disc_pump(struct io_dns_disc *h);

static void disc_maybe_free(struct io_dns_disc *h)
{
	struct io_dns *io = h->io;

	if (!h->cancelled || h->inflight || !h->timer_closed)
		return;
	for (struct io_dns_disc **pp = &io->discs; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	disc_free(h->disc);
	free(h);
	io_maybe_free(io);
}

static void on_disc_timer_closed(uv_handle_t *t)
{
	struct io_dns_disc *h = t->data;

	h->timer_closed = true;
	disc_maybe_free(h);
}

static enum disc_status map_status(int status)
{
	switch (status) {
	case ARES_SUCCESS:
	case ARES_ENODATA:
		return DISC_ANS_OK;
	case ARES_ENOTFOUND:
		return DISC_ANS_NXDOMAIN;
	case ARES_ETIMEOUT:
		return DISC_ANS_TIMEOUT;
	case ARES_ESERVFAIL:
	case ARES_EREFUSED:
	case ARES_ENOTIMP:
	case ARES_ECONNREFUSED:
		return DISC_ANS_SERVFAIL;
	}
	return DISC_ANS_MALFORMED;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct qctx *q = arg;
	struct io_dns_disc *h = q->h;
	struct disc_rr rr[DISC_ANSWER_RR_MAX];
	struct io_dns_arena arena = { .n = 0 };
	struct disc_answer a = { .id = q->id, .rr = rr };
	int rc;

	h->inflight--;
	if (h->cancelled || status == ARES_ECANCELLED || status == ARES_EDESTRUCTION) {
		free(q);
		disc_maybe_free(h);
		return;
	}
	a.status = map_status(status);
	if (a.status == DISC_ANS_MALFORMED)
		dg_warn(LOG_GROUP, "query %u: %s", q->type, ares_strerror(status));
	if ((a.status == DISC_ANS_OK || a.status == DISC_ANS_NXDOMAIN) && abuf) {
		rc = io_dns__parse(abuf, alen, q->type, rr, DISC_ANSWER_RR_MAX, &a.n_rr,
				   &a.neg_ttl, &arena);
		if (rc) {
			dg_warn(LOG_GROUP, "answer to a type %u query refused: %s", q->type,
				rc == DG_ETOOBIG ? "more than 64 records" : "malformed message");
			a.status = DISC_ANS_MALFORMED;
			a.n_rr = 0;
		}
		if (a.status == DISC_ANS_NXDOMAIN)
			a.n_rr = 0;
	} else if (a.status == DISC_ANS_OK) {
		a.status = DISC_ANS_MALFORMED;
	}
	disc_on_answer(h->disc, &a, now_ms());
	io_dns__arena_free(&arena);
	free(q);
	disc_pump(h);
}

static void on_disc_timer(uv_timer_t *t)
{
	struct io_dns_disc *h = t->data;

	disc_on_expiry(h->disc, now_ms());
	disc_pump(h);
}

/* Sends what disc asks, delivers a result, arms the timer. */
static void disc_pump(struct io_dns_disc *h)
{
	struct disc_query qs[8];
	const struct disc_result *r;
	dg_time_ms next, now;
	size_t n;

	if (h->cancelled)
		return;
	while ((n = disc_next_queries(h->disc, qs, 8)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct qctx *q = malloc(sizeof(*q));

			if (!q) {
				struct disc_answer a = { .id = qs[i].id, .status = DISC_ANS_TIMEOUT };

				dg_err(LOG_GROUP, "out of memory");
				disc_on_answer(h->disc, &a, now_ms());
				continue;
			}
			q->h = h;
			q->id = qs[i].id;
			q->type = qs[i].type;
			h->inflight++;
			dg_debug(LOG_GROUP, "query %s type %u", qs[i].name, qs[i].type);
			/* May call on_answer at once (e.g. a bad name). */
			ares_query(h->io->channel, qs[i].name, 1 /* IN */, qs[i].type, on_answer, q);
			if (h->cancelled)
				return;
		}
	}
	r = disc_take_result(h->disc);
	if (r) {
		h->cb(h, r, h->arg);
		if (h->cancelled)
			return;
	}
	next = disc_next_expiry(h->disc);
	now = now_ms();
	if (next != UINT64_MAX)
		uv_timer_start(&h->timer, on_disc_timer, next > now ? next - now : 0, 0);
	arm_ares_timer(h->io);
}

/* RFC 2782's draw wants different gateways to spread over equal-weight
 * servers: an unseeded random(3) would draw the same in every process. */
static uint32_t draw_random(void *arg)
{
	uint32_t v;

	(void)arg;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = (uint32_t)random();
	return v;
}

int io_dns_discover(struct io_dns *io, const char *domain, const struct disc_params *p,
		    io_dns_cb cb, void *arg, struct io_dns_disc **out)
{
	struct disc_params dp = { 0 };
	struct io_dns_disc *h;
	int rc;

	if (io->closing || !cb)
		return DG_EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return DG_ENOMEM;
	if (p)
		dp = *p;
	if (!dp.random)
		dp.random = draw_random;
	rc = disc_new(domain, &dp, &h->disc);
	if (rc) {
		free(h);
		return rc;
	}
	h->io = io;
	h->cb = cb;
	h->arg = arg;
	uv_timer_init(io->loop, &h->timer);
	h->timer.data = h;
	h->next = io->discs;
	io->discs = h;
	if (out)
		*out = h;
	disc_start(h->disc, now_ms());
	disc_pump(h);
	return 0;
}

void io_dns_cancel(struct io_dns_disc *h)
{
	if (!h || h->cancelled)
		return;
	h->cancelled = true;
	uv_close((uv_handle_t *)&h->timer, on_disc_timer_closed);
}

/* c-ares may be calling us (io_dns_close from a result callback): the
 * channel is destroyed from the timer's close callback, outside it. */
static void on_timer_closed(uv_handle_t *t)
{
	struct io_dns *io = t->data;

	/* Calls back every query (EDESTRUCTION) and closes its sockets,
	 * which closes their polls through on_sock_state. */
	ares_destroy(io->channel);
	io->channel_ok = false;
	for (int i = 0; i < SOCKS_MAX; i++)
		if (io->socks[i]) {
			uv_close((uv_handle_t *)&io->socks[i]->poll, on_sock_closed);
			io->socks[i] = NULL;
		}
	io->handles--;
	io_maybe_free(io);
}

void io_dns_close(struct io_dns *io)
{
	if (!io || io->closing)
		return;
	io->closing = true;
	for (struct io_dns_disc *h = io->discs; h; h = h->next)
		io_dns_cancel(h);
	uv_close((uv_handle_t *)&io->timer, on_timer_closed);
}
