/*
 * disc.c: S-NAPTR and DNS-SD discovery of DOTS servers (RFC 8973 §6, §7),
 * sans I/O. See disc.h for the procedure and its rules.
 *
 * A run is a tree of lookup nodes (NAPTR, SRV, host, DNS-SD service and
 * instance), each waiting on one or two queries; the queries are shared by
 * (name, type) and their validated records are kept for the run, so a
 * host named by three SRV records is asked for once. Nodes are processed
 * as soon as their queries are answered; the candidate list is the
 * depth-first walk of the tree, children in rank order, when no query is
 * left.
 */
#include "disc.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOG_GROUP "disc"
#define TIME_NEVER UINT64_MAX
#define ADDRS_MAX 64
#define SRV_ADDR_PER_HOST 16
#define PORT_SIGNAL 4646 /* RFC 8973 §6, RFC 9132 §3 */
#define PORT_DATA 443    /* RFC 8973 §6, RFC 8783 */

enum node_kind { N_NAPTR, N_SRV, N_HOST, N_PTR, N_INST };

/* A validated record of an answer, owner checked. */
struct crec {
	uint32_t ttl;              /* clamped, min with the CNAME chain */
	uint16_t a, b, c;          /* NAPTR order, preference; SRV prio, weight, port */
	char flag;                 /* NAPTR: 0, 'S' or 'A' */
	bool any_tag;              /* NAPTR: protocol tags were given */
	uint8_t nprotos;
	uint8_t protos[DISC_TRANSPORTS];
	int family;
	uint8_t addr[16];
	char name[DISC_NAME_MAX + 1]; /* replacement, SRV target, PTR name */
};

enum qstate { Q_NEW, Q_SENT, Q_ANSWERED };

struct dquery {
	uint16_t type;
	enum qstate st;
	enum disc_status status;
	bool nodata;
	uint32_t neg_ttl;
	dg_time_ms at;
	struct crec *rec;
	size_t n;
	char name[DISC_NAME_MAX + 1];
};

struct dnode {
	enum node_kind kind;
	int parent;
	uint32_t rank;
	unsigned depth;            /* NAPTR: empty-flag links above */
	unsigned protos;           /* NAPTR: transports followed */
	enum disc_transport transport;
	enum disc_source source;
	uint16_t port;
	int stage;                 /* 0 waiting, 1 processed, 2 (PTR) hosts made */
	int q[2];
	uint32_t ttl;
	dg_time_ms exp;
	char name[DISC_NAME_MAX + 1];
};

struct daddr {
	int node;
	int family;
	uint8_t addr[16];
	uint32_t ttl;
	dg_time_ms exp;
};

struct disc {
	struct disc_params p;
	char domain[DISC_NAME_MAX + 1];
	unsigned run;
	bool busy;
	bool dnssd_done;
	bool have_result;
	bool transient;            /* a query of this run failed transiently */
	uint32_t neg_ttl;          /* smallest RFC 2308 TTL seen; 0 none */
	unsigned fails;            /* consecutive runs without candidates */
	dg_time_ms deadline;
	dg_time_ms next;           /* after a run: expiry or retry */
	size_t nnodes, nqueries, naddrs;
	struct dnode nodes[DISC_NODES_MAX];
	struct dquery queries[DISC_QUERIES_MAX];
	struct daddr addrs[ADDRS_MAX];
	struct disc_result res;
};

static const char *const transport_tags[DISC_TRANSPORTS] = {
	"signal.udp", "signal.tcp", "data.tcp"
};
/* RFC 8973 §7 / §9.1 service names, per transport. */
static const char *const dnssd_services[DISC_TRANSPORTS] = {
	"_dots-signal._udp", "_dots-signal._tcp", "_dots-data._tcp"
};

const char *disc_transport_name(enum disc_transport t)
{
	return (unsigned)t < DISC_TRANSPORTS ? transport_tags[t] : "?";
}

const char *disc_source_name(enum disc_source s)
{
	switch (s) {
	case DISC_SRC_CONFIG: return "config";
	case DISC_SRC_DHCP: return "dhcp";
	case DISC_SRC_NAPTR: return "naptr";
	case DISC_SRC_DNSSD: return "dnssd";
	}
	return "?";
}

/* A host name or service name: RFC 1035 §2.3.4 lengths; letters, digits,
 * hyphen and underscore (RFC 6335 service labels). Anything else,
 * including ares_expand_name's escapes, is refused. */
static bool name_ok(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > DISC_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static bool name_eq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* name is "<instance>.<service>" (RFC 6763 §4.1): a non-empty first part
 * of at most 63 octets as ares_expand_name writes it (escapes allowed). */
static bool instance_ok(const char *name, const char *service)
{
	size_t n = strlen(name), s = strlen(service);

	if (n > DISC_NAME_MAX || n < s + 2 || name[n - s - 1] != '.' ||
	    !name_eq(name + n - s, service))
		return false;
	for (size_t i = 0; i < n - s - 1; i++)
		if ((unsigned char)name[i] < 0x20)
			return false;
	return n - s - 1 <= 4 * 63;
}

int disc_new(const char *domain, const struct disc_params *p, struct disc **out)
{
	struct disc *d;
	size_t len;

	if (!domain || !out)
		return DG_EINVAL;
	len = strlen(domain);
	if (len > 1 && len <= DISC_NAME_MAX + 1 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > DISC_NAME_MAX)
		return DG_EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return DG_ENOMEM;
	memcpy(d->domain, domain, len);
	if (!name_ok(d->domain)) {
		free(d);
		return DG_EINVAL;
	}
	if (p)
		d->p = *p;
	if (!d->p.mechanisms)
		d->p.mechanisms = DISC_MECH_NAPTR | DISC_MECH_DNSSD;
	d->p.transports &= DISC_T_ALL;
	if (!d->p.transports)
		d->p.transports = DISC_T_ALL;
	if (!d->p.ttl_min)
		d->p.ttl_min = 30;
	if (!d->p.ttl_max)
		d->p.ttl_max = 86400;
	if (d->p.ttl_max < d->p.ttl_min)
		d->p.ttl_max = d->p.ttl_min;
	if (!d->p.neg_default)
		d->p.neg_default = 300;
	if (!d->p.retry_base)
		d->p.retry_base = 5;
	if (!d->p.retry_max)
		d->p.retry_max = 300;
	if (!d->p.run_timeout_ms)
		d->p.run_timeout_ms = 30000;
	d->next = TIME_NEVER;
	*out = d;
	return 0;
}

static void run_reset(struct disc *d)
{
	for (size_t i = 0; i < d->nqueries; i++)
		free(d->queries[i].rec);
	d->nqueries = d->nnodes = d->naddrs = 0;
	d->transient = false;
	d->neg_ttl = 0;
	d->dnssd_done = false;
}

void disc_free(struct disc *d)
{
	if (!d)
		return;
	run_reset(d);
	free(d);
}

static uint32_t clamp_ttl(const struct disc *d, uint32_t ttl)
{
	if (ttl < d->p.ttl_min)
		return d->p.ttl_min;
	return ttl > d->p.ttl_max ? d->p.ttl_max : ttl;
}

static uint32_t draw(struct disc *d)
{
	if (d->p.random)
		return d->p.random(d->p.random_arg);
	return (uint32_t)random();
}

/* The query for (name, type) of this run, shared; -1 when the run has
 * asked too many. */
static int query_get(struct disc *d, const char *name, uint16_t type)
{
	struct dquery *q;

	for (size_t i = 0; i < d->nqueries; i++)
		if (d->queries[i].type == type && name_eq(d->queries[i].name, name))
			return (int)i;
	if (d->nqueries == DISC_QUERIES_MAX) {
		dg_warn(LOG_GROUP, "%s: more than %d queries in one run, %s type %u not asked",
			d->domain, DISC_QUERIES_MAX, name, type);
		return -1;
	}
	q = &d->queries[d->nqueries];
	memset(q, 0, sizeof(*q));
	q->type = type;
	q->st = Q_NEW;
	strcpy(q->name, name);
	return (int)d->nqueries++;
}

static int node_add(struct disc *d, enum node_kind kind, int parent, uint32_t rank,
		    const char *name, uint32_t ttl, dg_time_ms exp)
{
	struct dnode *n;
	static const uint16_t types[][2] = {
		[N_NAPTR] = { DISC_RR_NAPTR, 0 },
		[N_SRV] = { DISC_RR_SRV, 0 },
		[N_HOST] = { DISC_RR_AAAA, DISC_RR_A },
		[N_PTR] = { DISC_RR_PTR, 0 },
		[N_INST] = { DISC_RR_SRV, DISC_RR_TXT },
	};

	if (d->nnodes == DISC_NODES_MAX) {
		dg_warn(LOG_GROUP, "%s: more than %d lookups in one run, %s not followed",
			d->domain, DISC_NODES_MAX, name);
		return -1;
	}
	n = &d->nodes[d->nnodes];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->parent = parent;
	n->rank = rank;
	n->ttl = ttl;
	n->exp = exp;
	strcpy(n->name, name);
	n->q[1] = -1;
	n->q[0] = query_get(d, name, types[kind][0]);
	if (n->q[0] < 0)
		return -1;
	if (types[kind][1]) {
		n->q[1] = query_get(d, name, types[kind][1]);
		if (n->q[1] < 0)
			return -1;
	}
	if (parent >= 0) {
		n->source = d->nodes[parent].source;
		n->depth = d->nodes[parent].depth;
	}
	return (int)d->nnodes++;
}

static bool node_ready(const struct disc *d, const struct dnode *n)
{
	for (int i = 0; i < 2; i++)
		if (n->q[i] >= 0 && d->queries[n->q[i]].st != Q_ANSWERED)
			return false;
	return true;
}

static bool query_ok(const struct dquery *q)
{
	return q->status == DISC_ANS_OK;
}

/* Validity of a child made from record r of query q under node n. */
static void child_validity(const struct dnode *n, const struct dquery *q, const struct crec *r,
			   uint32_t *ttl, dg_time_ms *exp)
{
	dg_time_ms e = q->at + (dg_time_ms)r->ttl * 1000;

	*ttl = r->ttl < n->ttl ? r->ttl : n->ttl;
	*exp = e < n->exp ? e : n->exp;
}

static bool naptr_loops(const struct disc *d, int parent, const char *name)
{
	for (int i = parent; i >= 0; i = d->nodes[i].parent)
		if (d->nodes[i].kind == N_NAPTR && name_eq(d->nodes[i].name, name))
			return true;
	return false;
}

static int naptr_cmp(const void *pa, const void *pb)
{
	const struct crec *a = *(const struct crec *const *)pa;
	const struct crec *b = *(const struct crec *const *)pb;
	int c;

	/* RFC 3403 §4.1: ORDER, then PREFERENCE; the rest only makes the
	 * list independent of the order the server sent the records in. */
	if (a->a != b->a)
		return a->a < b->a ? -1 : 1;
	if (a->b != b->b)
		return a->b < b->b ? -1 : 1;
	if (a->flag != b->flag)
		return a->flag < b->flag ? -1 : 1;
	c = strcasecmp(a->name, b->name);
	return c ? c : memcmp(a->protos, b->protos, sizeof(a->protos));
}

static void process_naptr(struct disc *d, int ni)
{
	struct dquery *q = &d->queries[d->nodes[ni].q[0]];
	const struct crec *sorted[DISC_ANSWER_RR_MAX];
	size_t n = q->n;

	if (!query_ok(q) || n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		sorted[i] = &q->rec[i];
	qsort(sorted, n, sizeof(sorted[0]), naptr_cmp);
	for (size_t i = 0; i < n; i++) {
		const struct crec *r = sorted[i];
		struct dnode *node = &d->nodes[ni];
		unsigned allowed = node->protos;
		uint32_t ttl;
		dg_time_ms exp;
		int c;

		child_validity(node, q, r, &ttl, &exp);
		if (r->flag == 0) {
			/* Non-terminal: the next lookup is NAPTR at the
			 * replacement (RFC 3958 §2.2.3), for the protocols
			 * this record names, if it names any. */
			unsigned mask = 0;
			const char *name = node->name;
			unsigned depth = node->depth;

			for (unsigned k = 0; k < r->nprotos; k++)
				mask |= 1u << r->protos[k];
			if (r->any_tag)
				allowed &= mask;
			if (!allowed)
				continue;
			if (depth + 1 > DISC_CHAIN_MAX) {
				dg_warn(LOG_GROUP, "%s: NAPTR %u %u \"\" -> %s: chain deeper than %d, not followed",
					name, r->a, r->b, r->name, DISC_CHAIN_MAX);
				continue;
			}
			if (naptr_loops(d, ni, r->name)) {
				dg_warn(LOG_GROUP, "%s: NAPTR %u %u \"\" -> %s: loop, not followed",
					name, r->a, r->b, r->name);
				continue;
			}
			c = node_add(d, N_NAPTR, ni, (uint32_t)i * 8, r->name, ttl, exp);
			if (c >= 0) {
				d->nodes[c].protos = allowed;
				d->nodes[c].depth = depth + 1;
			}
			continue;
		}
		for (unsigned k = 0; k < r->nprotos; k++) {
			enum disc_transport t = (enum disc_transport)r->protos[k];

			if (!(allowed & (1u << t)))
				continue;
			c = node_add(d, r->flag == 'S' ? N_SRV : N_HOST, ni,
				     (uint32_t)i * 8 + k, r->name, ttl, exp);
			if (c < 0)
				continue;
			d->nodes[c].transport = t;
			d->nodes[c].port = t == DISC_DATA_TCP ? PORT_DATA : PORT_SIGNAL;
		}
	}
}

static int srv_cmp(const void *pa, const void *pb)
{
	const struct crec *a = *(const struct crec *const *)pa;
	const struct crec *b = *(const struct crec *const *)pb;
	int c;

	if (a->a != b->a)
		return a->a < b->a ? -1 : 1;
	/* RFC 2782: weight 0 records first within a priority. */
	if ((a->b == 0) != (b->b == 0))
		return a->b == 0 ? -1 : 1;
	c = strcasecmp(a->name, b->name);
	if (c)
		return c;
	return a->c < b->c ? -1 : a->c > b->c;
}

/* Orders recs[0..n) as RFC 2782 says: by priority, then by a weighted
 * random draw among the records of one priority. */
static void srv_order(struct disc *d, const struct crec **recs, size_t n)
{
	qsort(recs, n, sizeof(recs[0]), srv_cmp);
	for (size_t i = 0; i < n;) {
		size_t end = i;

		while (end < n && recs[end]->a == recs[i]->a)
			end++;
		for (size_t k = i; k < end; k++) {
			uint64_t sum = 0, r;
			size_t pick = end - 1;

			for (size_t m = k; m < end; m++)
				sum += recs[m]->b;
			r = sum ? draw(d) % (sum + 1) : 0;
			sum = 0;
			for (size_t m = k; m < end; m++) {
				sum += recs[m]->b;
				if (sum >= r) {
					pick = m;
					break;
				}
			}
			if (pick != k) {
				const struct crec *t = recs[pick];

				memmove(&recs[k + 1], &recs[k], (pick - k) * sizeof(recs[0]));
				recs[k] = t;
			}
		}
		i = end;
	}
}

/* Makes host children of node ni from SRV records (of one or several
 * queries: qs[i] answered recs[i]). */
static void srv_hosts(struct disc *d, int ni, const struct crec **recs,
		      const struct dquery **qs, size_t n, uint32_t rank0)
{
	const struct crec *order[DISC_ANSWER_RR_MAX * 2];
	const struct dquery *oq[DISC_ANSWER_RR_MAX * 2];

	for (size_t i = 0; i < n; i++) {
		/* RFC 2782: a single "." target: decidedly not available. */
		if (recs[i]->name[0] == 0) {
			if (n > 1)
				dg_warn(LOG_GROUP, "%s: SRV target \".\" among other records, ignored",
					d->nodes[ni].name);
			else
				dg_info(LOG_GROUP, "%s: SRV \".\": service not available here",
					d->nodes[ni].name);
		}
	}
	memcpy(order, recs, n * sizeof(recs[0]));
	srv_order(d, order, n);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < n; k++)
			if (recs[k] == order[i])
				oq[i] = qs[k];
	for (size_t i = 0; i < n; i++) {
		uint32_t ttl;
		dg_time_ms exp;
		int c;

		if (order[i]->name[0] == 0)
			continue;
		child_validity(&d->nodes[ni], oq[i], order[i], &ttl, &exp);
		c = node_add(d, N_HOST, ni, rank0 + (uint32_t)i, order[i]->name, ttl, exp);
		if (c < 0)
			continue;
		d->nodes[c].transport = d->nodes[ni].transport;
		d->nodes[c].port = order[i]->c;
	}
}

static void process_srv(struct disc *d, int ni)
{
	struct dquery *q = &d->queries[d->nodes[ni].q[0]];
	const struct crec *recs[DISC_ANSWER_RR_MAX];
	const struct dquery *qs[DISC_ANSWER_RR_MAX];

	if (!query_ok(q))
		return;
	for (size_t i = 0; i < q->n; i++) {
		recs[i] = &q->rec[i];
		qs[i] = q;
	}
	srv_hosts(d, ni, recs, qs, q->n, 0);
}

static void process_host(struct disc *d, int ni)
{
	const struct dquery *q6 = &d->queries[d->nodes[ni].q[0]];
	const struct dquery *q4 = &d->queries[d->nodes[ni].q[1]];

	/* A target without any address is a zone error worth a line (a
	 * failed lookup was logged already). */
	if ((q6->status == DISC_ANS_OK || q6->status == DISC_ANS_NXDOMAIN) &&
	    (q4->status == DISC_ANS_OK || q4->status == DISC_ANS_NXDOMAIN) &&
	    q6->n == 0 && q4->n == 0)
		dg_warn(LOG_GROUP, "%s: no usable A or AAAA record, target ignored",
			d->nodes[ni].name);
	for (int k = 0; k < 2; k++) {
		struct dquery *q = &d->queries[d->nodes[ni].q[k]];

		if (!query_ok(q))
			continue;
		for (size_t i = 0; i < q->n && i < SRV_ADDR_PER_HOST; i++) {
			struct daddr *a;
			uint32_t ttl;
			dg_time_ms exp;

			if (d->naddrs == ADDRS_MAX) {
				dg_warn(LOG_GROUP, "%s: more than %d addresses in one run, rest ignored",
					d->domain, ADDRS_MAX);
				return;
			}
			child_validity(&d->nodes[ni], q, &q->rec[i], &ttl, &exp);
			a = &d->addrs[d->naddrs++];
			a->node = ni;
			a->family = q->rec[i].family;
			memcpy(a->addr, q->rec[i].addr, 16);
			a->ttl = ttl;
			a->exp = exp;
		}
	}
}

static void process_ptr(struct disc *d, int ni)
{
	struct dquery *q = &d->queries[d->nodes[ni].q[0]];

	if (!query_ok(q))
		return;
	for (size_t i = 0; i < q->n; i++) {
		uint32_t ttl;
		dg_time_ms exp;
		int c;

		child_validity(&d->nodes[ni], q, &q->rec[i], &ttl, &exp);
		c = node_add(d, N_INST, ni, (uint32_t)i, q->rec[i].name, ttl, exp);
		if (c >= 0)
			d->nodes[c].transport = d->nodes[ni].transport;
	}
}

/* DNS-SD, second stage: once every instance of service node ni has its
 * SRV and TXT answers, order all their SRV records together. */
static bool ptr_hosts(struct disc *d, int ni)
{
	const struct crec *recs[DISC_ANSWER_RR_MAX * 2];
	const struct dquery *qs[DISC_ANSWER_RR_MAX * 2];
	size_t n = 0;

	for (size_t i = 0; i < d->nnodes; i++) {
		struct dnode *in = &d->nodes[i];

		if (in->parent != ni || in->kind != N_INST)
			continue;
		if (!node_ready(d, in))
			return false;
	}
	for (size_t i = 0; i < d->nnodes; i++) {
		struct dnode *in = &d->nodes[i];
		struct dquery *sq, *tq;

		if (in->parent != ni || in->kind != N_INST)
			continue;
		sq = &d->queries[in->q[0]];
		tq = &d->queries[in->q[1]];
		if (!query_ok(tq) || tq->n == 0)
			dg_warn(LOG_GROUP, "%s: instance without a TXT record (RFC 6763 §6), used anyway",
				in->name);
		if (!query_ok(sq))
			continue;
		if (sq->n == 0)
			dg_warn(LOG_GROUP, "%s: instance without an SRV record, ignored", in->name);
		for (size_t k = 0; k < sq->n && n < DISC_ANSWER_RR_MAX * 2; k++) {
			recs[n] = &sq->rec[k];
			qs[n] = sq;
			n++;
		}
	}
	srv_hosts(d, ni, recs, qs, n, 1u << 20);
	return true;
}

/* Processes every node whose answers are all in; repeats until nothing
 * changes (a node may find its queries answered already). */
static void pump(struct disc *d)
{
	bool progress = true;

	while (progress) {
		progress = false;
		for (size_t i = 0; i < d->nnodes; i++) {
			struct dnode *n = &d->nodes[i];

			if (n->stage == 0 && node_ready(d, n)) {
				n->stage = 1;
				progress = true;
				switch (n->kind) {
				case N_NAPTR: process_naptr(d, (int)i); break;
				case N_SRV: process_srv(d, (int)i); break;
				case N_HOST: process_host(d, (int)i); break;
				case N_PTR: process_ptr(d, (int)i); break;
				case N_INST: break;
				}
			}
			if (n->kind == N_PTR && n->stage == 1 && ptr_hosts(d, (int)i)) {
				n->stage = 2;
				progress = true;
			}
		}
	}
}

static bool run_pending(const struct disc *d)
{
	for (size_t i = 0; i < d->nqueries; i++)
		if (d->queries[i].st != Q_ANSWERED)
			return true;
	for (size_t i = 0; i < d->nnodes; i++)
		if (d->nodes[i].kind == N_PTR && d->nodes[i].stage != 2)
			return true;
	return false;
}

static void start_dnssd(struct disc *d, dg_time_ms now)
{
	char name[DISC_NAME_MAX + 2];

	d->dnssd_done = true;
	d->deadline = now + d->p.run_timeout_ms;
	for (int t = 0; t < DISC_TRANSPORTS; t++) {
		int c;

		if (!(d->p.transports & (1u << t)))
			continue;
		if ((size_t)snprintf(name, sizeof(name), "%s.%s", dnssd_services[t], d->domain) >
		    DISC_NAME_MAX)
			continue;
		c = node_add(d, N_PTR, -1, 100 + (uint32_t)t, name, UINT32_MAX, TIME_NEVER);
		if (c >= 0) {
			d->nodes[c].transport = (enum disc_transport)t;
			d->nodes[c].source = DISC_SRC_DNSSD;
		}
	}
}

static bool cand_dup(const struct disc_result *r, const struct disc_candidate *c)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->c[i].transport == c->transport && r->c[i].port == c->port &&
		    r->c[i].family == c->family && !memcmp(r->c[i].addr, c->addr, 16))
			return true;
	return false;
}

static void emit_addr(struct disc *d, const struct dnode *n, const struct daddr *a)
{
	struct disc_result *r = &d->res;
	struct disc_candidate c;

	memset(&c, 0, sizeof(c));
	c.family = a->family;
	memcpy(c.addr, a->addr, 16);
	inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->addr, c.address, sizeof(c.address));
	c.port = n->port;
	c.transport = n->transport;
	strcpy(c.ref_id, d->domain);
	strcpy(c.target, n->name);
	c.source = n->source;
	c.ttl = a->ttl;
	c.expires = a->exp;
	if (cand_dup(r, &c))
		return;
	if (r->n == DISC_CANDIDATES_MAX) {
		dg_warn(LOG_GROUP, "%s: more than %d candidates, %s ignored", d->domain,
			DISC_CANDIDATES_MAX, c.address);
		return;
	}
	r->c[r->n++] = c;
}

/* Depth-first, children in rank order (the node array is small). */
static void emit(struct disc *d, int ni, unsigned depth)
{
	uint32_t last = 0;
	bool first = true;

	if (ni >= 0 && d->nodes[ni].kind == N_HOST) {
		for (int fam = 6; fam >= 4; fam -= 2)
			for (size_t i = 0; i < d->naddrs; i++)
				if (d->addrs[i].node == ni && d->addrs[i].family == fam)
					emit_addr(d, &d->nodes[ni], &d->addrs[i]);
		return;
	}
	if (depth > DISC_CHAIN_MAX + 4)
		return;
	for (;;) {
		int best = -1;

		for (size_t i = 0; i < d->nnodes; i++) {
			const struct dnode *c = &d->nodes[i];

			if (c->parent != ni || (!first && c->rank <= last))
				continue;
			if (best < 0 || c->rank < d->nodes[best].rank)
				best = (int)i;
		}
		if (best < 0)
			return;
		/* Siblings of equal rank (not made by this code) would be
		 * skipped; ranks are unique per parent by construction. */
		last = d->nodes[best].rank;
		first = false;
		emit(d, best, depth + 1);
	}
}

static uint32_t retry_wait(struct disc *d)
{
	uint64_t w;

	if (d->transient) {
		unsigned shift = d->fails > 16 ? 16 : d->fails;

		w = (uint64_t)d->p.retry_base << shift;
		return w > d->p.retry_max ? d->p.retry_max : (uint32_t)w;
	}
	return clamp_ttl(d, d->neg_ttl ? d->neg_ttl : d->p.neg_default);
}

static void finish(struct disc *d, dg_time_ms now)
{
	struct disc_result *r = &d->res;
	unsigned run = d->run;

	memset(r, 0, sizeof(*r));
	r->run = run;
	emit(d, -1, 0);
	d->busy = false;
	d->have_result = true;
	if (r->n) {
		r->expires = TIME_NEVER;
		for (size_t i = 0; i < r->n; i++)
			if (r->c[i].expires < r->expires)
				r->expires = r->c[i].expires;
		if (d->transient) {
			dg_time_ms t = now + (dg_time_ms)retry_wait(d) * 1000;

			if (t < r->expires)
				r->expires = t;
		}
		d->fails = 0;
		d->next = r->expires;
		dg_info(LOG_GROUP, "%s: %zu candidate(s) by %s, valid for %llu s", d->domain, r->n,
			disc_source_name(r->c[0].source),
			(unsigned long long)((r->expires - now) / 1000));
		return;
	}
	r->status = d->transient ? DG_EIO : DG_ENOENT;
	r->retry_at = now + (dg_time_ms)retry_wait(d) * 1000;
	d->fails++;
	d->next = r->retry_at;
	dg_warn(LOG_GROUP, "%s: no DOTS server found (%s), next try in %llu s", d->domain,
		d->transient ? "lookups failed" : "no records",
		(unsigned long long)((r->retry_at - now) / 1000));
}

/* Called after every change: falls back to DNS-SD or finishes. */
static void advance(struct disc *d, dg_time_ms now)
{
	pump(d);
	if (!d->busy || run_pending(d))
		return;
	if ((d->p.mechanisms & DISC_MECH_DNSSD) && !d->dnssd_done) {
		/* Every address kept so far is one of S-NAPTR's. */
		if (d->naddrs == 0) {
			/* RFC 8973 §4, §6: S-NAPTR gave nothing, next mechanism. */
			if (d->p.mechanisms & DISC_MECH_NAPTR)
				dg_info(LOG_GROUP, "%s: no S-NAPTR result, trying DNS-SD", d->domain);
			start_dnssd(d, now);
			pump(d);
			if (run_pending(d))
				return;
		}
	}
	finish(d, now);
}

void disc_start(struct disc *d, dg_time_ms now)
{
	int c;

	run_reset(d);
	d->run++;
	d->busy = true;
	d->have_result = false;
	d->deadline = now + d->p.run_timeout_ms;
	d->next = TIME_NEVER;
	if (d->p.mechanisms & DISC_MECH_NAPTR) {
		c = node_add(d, N_NAPTR, -1, 0, d->domain, UINT32_MAX, TIME_NEVER);
		if (c >= 0) {
			d->nodes[c].protos = d->p.transports;
			d->nodes[c].source = DISC_SRC_NAPTR;
		}
	} else {
		d->dnssd_done = false;
	}
	advance(d, now);
}

size_t disc_next_queries(struct disc *d, struct disc_query *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < d->nqueries && n < max; i++) {
		struct dquery *q = &d->queries[i];

		if (q->st != Q_NEW)
			continue;
		q->st = Q_SENT;
		out[n].id = (d->run & 0xffffffu) << 8 | (uint32_t)i;
		out[n].type = q->type;
		strcpy(out[n].name, q->name);
		n++;
	}
	return n;
}

/* Follows the CNAME chain from q->name through the answer's records;
 * writes the names (chain[0] = q->name) and returns their count, 0 on a
 * loop or an over-long chain. *ttl: the smallest CNAME TTL. */
static size_t cname_chain(const struct disc_answer *a, const char *qname,
			  const char **chain, uint32_t *ttl)
{
	size_t n = 1;

	chain[0] = qname;
	*ttl = UINT32_MAX;
	for (;;) {
		const struct disc_rr *next = NULL;

		for (size_t i = 0; i < a->n_rr; i++)
			if (a->rr[i].type == DISC_RR_CNAME && a->rr[i].owner &&
			    name_eq(a->rr[i].owner, chain[n - 1])) {
				next = &a->rr[i];
				break;
			}
		if (!next)
			return n;
		if (!next->u.name || !name_ok(next->u.name)) {
			dg_warn(LOG_GROUP, "%s: CNAME to an invalid name, answer ignored", chain[n - 1]);
			return 0;
		}
		for (size_t k = 0; k < n; k++)
			if (name_eq(chain[k], next->u.name)) {
				dg_warn(LOG_GROUP, "%s: CNAME loop at %s, answer ignored", qname,
					next->u.name);
				return 0;
			}
		if (n > DISC_CNAME_MAX) {
			dg_warn(LOG_GROUP, "%s: CNAME chain longer than %d, answer ignored", qname,
				DISC_CNAME_MAX);
			return 0;
		}
		if (next->ttl < *ttl)
			*ttl = next->ttl;
		chain[n++] = next->u.name;
	}
}

static bool tag_ok(const char *s, size_t len)
{
	/* RFC 3958 §6.5: tags of at most 32 characters starting with a
	 * letter; letters, digits, '+', '-', '.', '_' after it. */
	if (len == 0 || len > 32)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (size_t i = 1; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.' || ch == '_'))
			return false;
	}
	return true;
}

/* Checks a NAPTR record for S-NAPTR and DOTS; fills out. Returns 1 to
 * keep, 0 to skip silently (another application's record), -1 refused
 * (logged). */
static int naptr_check(const char *owner, const struct disc_rr *rr, struct crec *out)
{
	const char *s = rr->u.naptr.service;
	size_t len = rr->u.naptr.service_len, start = 0, ntag = 0;
	const char *why = NULL;

	if (len > 255 || (len && (!s || memchr(s, 0, len))))
		why = "malformed service field";
	for (size_t i = 0; !why && len && i <= len; i++) {
		if (i < len && s[i] != ':')
			continue;
		if (!tag_ok(s + start, i - start)) {
			why = "malformed service field (RFC 3958 §6.5)";
			break;
		}
		if (ntag == 0) {
			if (i - start != 4 || strncasecmp(s, "DOTS", 4)) {
				dg_debug(LOG_GROUP, "%s: NAPTR for \"%.*s\" skipped", owner,
					 (int)(len > 64 ? 64 : len), s);
				return 0;
			}
		} else {
			out->any_tag = true;
			for (int t = 0; t < DISC_TRANSPORTS; t++) {
				bool seen = false;

				if (strlen(transport_tags[t]) != i - start ||
				    strncasecmp(s + start, transport_tags[t], i - start))
					continue;
				for (unsigned k = 0; k < out->nprotos; k++)
					seen |= out->protos[k] == t;
				if (!seen)
					out->protos[out->nprotos++] = (uint8_t)t;
			}
		}
		ntag++;
		start = i + 1;
	}
	if (!why && rr->u.naptr.flags_len > 1)
		why = "flags longer than one character";
	else if (!why && rr->u.naptr.flags_len == 1) {
		char f = rr->u.naptr.flags ? rr->u.naptr.flags[0] : 0;

		if (f == 's' || f == 'S')
			out->flag = 'S';
		else if (f == 'a' || f == 'A')
			out->flag = 'A';
		else
			/* RFC 3958 §6.4 defines "S", "A" and empty only;
			 * RFC 3403 §4.1: a record with an unknown flag is
			 * ignored. */
			why = "flag unknown to S-NAPTR";
	}
	if (!why && rr->u.naptr.regexp_len)
		why = "non-empty regexp (S-NAPTR uses the replacement only, RFC 3958 §6.2)";
	if (!why && (!rr->u.naptr.replacement || !rr->u.naptr.replacement[0]))
		why = "empty replacement";
	if (!why && !name_ok(rr->u.naptr.replacement))
		why = "invalid replacement name";
	if (!why && len == 0 && out->flag)
		why = "terminal record without a service";
	if (!why && out->flag && !out->any_tag)
		why = "terminal record without a protocol tag (RFC 3958 §6.5)";
	if (why) {
		dg_warn(LOG_GROUP, "%s: NAPTR %u %u \"%.*s\" \"%.*s\" -> %s refused: %s", owner,
			rr->u.naptr.order, rr->u.naptr.preference,
			(int)(rr->u.naptr.flags_len > 8 ? 8 : rr->u.naptr.flags_len),
			rr->u.naptr.flags ? rr->u.naptr.flags : "",
			(int)(s ? (len > 64 ? 64 : len) : 0), s ? s : "",
			rr->u.naptr.replacement && rr->u.naptr.replacement[0] ?
			rr->u.naptr.replacement : ".", why);
		return -1;
	}
	out->a = rr->u.naptr.order;
	out->b = rr->u.naptr.preference;
	strcpy(out->name, rr->u.naptr.replacement);
	return 1;
}

static bool addr_usable(int family, const uint8_t *a)
{
	static const uint8_t zero[16];

	if (family == 4)
		return !(a[0] == 0 || a[0] >= 224); /* this-net, multicast, reserved */
	return memcmp(a, zero, 16) && a[0] != 0xff; /* unspecified, multicast */
}

/* Validates rr (owner already matched) for query type; fills out.
 * Returns 1 keep, 0 skip silently, -1 refused. */
static int rr_check(const struct dquery *q, const struct disc_rr *rr, struct crec *out)
{
	const char *owner = rr->owner;

	switch (q->type) {
	case DISC_RR_NAPTR:
		return naptr_check(owner, rr, out);
	case DISC_RR_SRV:
		if (!rr->u.srv.target) {
			dg_warn(LOG_GROUP, "%s: SRV without a target, refused", owner);
			return -1;
		}
		if (rr->u.srv.target[0] && !name_ok(rr->u.srv.target)) {
			dg_warn(LOG_GROUP, "%s: SRV %u %u %u: invalid target name, refused", owner,
				rr->u.srv.priority, rr->u.srv.weight, rr->u.srv.port);
			return -1;
		}
		if (rr->u.srv.target[0] && rr->u.srv.port == 0) {
			dg_warn(LOG_GROUP, "%s: SRV %u %u 0 %s: port 0, refused", owner,
				rr->u.srv.priority, rr->u.srv.weight, rr->u.srv.target);
			return -1;
		}
		out->a = rr->u.srv.priority;
		out->b = rr->u.srv.weight;
		out->c = rr->u.srv.port;
		strcpy(out->name, rr->u.srv.target);
		return 1;
	case DISC_RR_PTR:
		if (!rr->u.name || !instance_ok(rr->u.name, q->name)) {
			dg_warn(LOG_GROUP, "%s: PTR to %s: not an instance of this service (RFC 6763 §4.1), refused",
				owner, rr->u.name ? rr->u.name : "(none)");
			return -1;
		}
		strcpy(out->name, rr->u.name);
		return 1;
	case DISC_RR_A:
	case DISC_RR_AAAA:
		out->family = q->type == DISC_RR_A ? 4 : 6;
		memcpy(out->addr, rr->u.addr, out->family == 4 ? 4 : 16);
		if (!addr_usable(out->family, out->addr)) {
			char text[DISC_ADDR_TEXT_MAX];

			inet_ntop(out->family == 4 ? AF_INET : AF_INET6, out->addr, text, sizeof(text));
			dg_warn(LOG_GROUP, "%s: address %s cannot be a DOTS server, refused", owner, text);
			return -1;
		}
		return 1;
	case DISC_RR_TXT:
		return 1;
	}
	return 0;
}

static void answer_records(struct disc *d, struct dquery *q, const struct disc_answer *a)
{
	const char *chain[DISC_CNAME_MAX + 2];
	uint32_t cttl;
	size_t nchain, n = 0;

	if (a->n_rr > DISC_ANSWER_RR_MAX) {
		dg_warn(LOG_GROUP, "%s: answer with %zu records (more than %d), refused", q->name,
			a->n_rr, DISC_ANSWER_RR_MAX);
		q->status = DISC_ANS_MALFORMED;
		return;
	}
	nchain = cname_chain(a, q->name, chain, &cttl);
	if (nchain == 0) {
		q->nodata = true;
		return;
	}
	q->rec = calloc(a->n_rr ? a->n_rr : 1, sizeof(*q->rec));
	if (!q->rec) {
		dg_err(LOG_GROUP, "%s: out of memory", q->name);
		q->status = DISC_ANS_MALFORMED;
		return;
	}
	for (size_t i = 0; i < a->n_rr; i++) {
		const struct disc_rr *rr = &a->rr[i];
		bool owned = false;
		int k;

		if (rr->type != q->type || !rr->owner)
			continue;
		for (size_t c = 0; c < nchain; c++)
			owned |= name_eq(rr->owner, chain[c]);
		if (!owned) {
			dg_warn(LOG_GROUP, "%s: record owned by %s in the answer, ignored", q->name,
				rr->owner);
			continue;
		}
		memset(&q->rec[n], 0, sizeof(q->rec[n]));
		k = rr_check(q, rr, &q->rec[n]);
		if (k <= 0)
			continue;
		q->rec[n].ttl = clamp_ttl(d, rr->ttl < cttl ? rr->ttl : cttl);
		n++;
	}
	q->n = n;
	q->nodata = n == 0;
}

int disc_on_answer(struct disc *d, const struct disc_answer *a, dg_time_ms now)
{
	uint32_t idx = a->id & 0xff;
	struct dquery *q;

	if (!d->busy || a->id >> 8 != (d->run & 0xffffffu) || idx >= d->nqueries ||
	    d->queries[idx].st != Q_SENT) {
		dg_debug(LOG_GROUP, "%s: answer %u not expected, ignored", d->domain, a->id);
		return DG_ENOENT;
	}
	q = &d->queries[idx];
	q->st = Q_ANSWERED;
	q->at = now;
	q->status = a->status;
	switch (a->status) {
	case DISC_ANS_OK:
		answer_records(d, q, a);
		if (q->status != DISC_ANS_OK)
			d->transient = true;
		break;
	case DISC_ANS_NXDOMAIN:
		q->nodata = true;
		break;
	default:
		d->transient = true;
		dg_warn(LOG_GROUP, "%s type %u: %s", q->name, q->type,
			a->status == DISC_ANS_TIMEOUT ? "no answer" :
			a->status == DISC_ANS_SERVFAIL ? "server failure" : "malformed answer");
		break;
	}
	if (q->nodata && a->neg_ttl && (!d->neg_ttl || a->neg_ttl < d->neg_ttl))
		d->neg_ttl = a->neg_ttl;
	advance(d, now);
	return 0;
}

dg_time_ms disc_next_expiry(const struct disc *d)
{
	return d->busy ? d->deadline : d->next;
}

void disc_on_expiry(struct disc *d, dg_time_ms now)
{
	if (!d->busy) {
		if (now >= d->next)
			disc_start(d, now);
		return;
	}
	if (now < d->deadline)
		return;
	/* The run took too long: what is still unanswered timed out. */
	for (size_t i = 0; i < d->nqueries; i++) {
		struct dquery *q = &d->queries[i];

		if (q->st == Q_ANSWERED)
			continue;
		q->st = Q_ANSWERED;
		q->at = now;
		q->status = DISC_ANS_TIMEOUT;
		d->transient = true;
	}
	dg_warn(LOG_GROUP, "%s: lookups unanswered after %u ms", d->domain, d->p.run_timeout_ms);
	advance(d, now);
}

const struct disc_result *disc_take_result(struct disc *d)
{
	if (!d->have_result)
		return NULL;
	d->have_result = false;
	return &d->res;
}

bool disc_busy(const struct disc *d)
{
	return d->busy;
}

int disc_result_merge(struct disc_result *dst, const struct disc_result *src)
{
	struct disc_candidate *tmp;
	size_t n = 0, i = 0, k = 0;
	int rc = 0;

	tmp = malloc(sizeof(dst->c));
	if (!tmp)
		return DG_ENOMEM;
	/* Stable merge by source rank (RFC 8973 §4 order). */
	while (i < dst->n || k < src->n) {
		const struct disc_candidate *c;
		bool dup = false;

		if (k >= src->n || (i < dst->n && dst->c[i].source <= src->c[k].source))
			c = &dst->c[i++];
		else
			c = &src->c[k++];
		for (size_t m = 0; m < n; m++)
			dup |= tmp[m].transport == c->transport && tmp[m].port == c->port &&
			       tmp[m].family == c->family && !memcmp(tmp[m].addr, c->addr, 16);
		if (dup)
			continue;
		if (n == DISC_CANDIDATES_MAX) {
			rc = DG_ETOOBIG;
			continue;
		}
		tmp[n++] = *c;
	}
	memcpy(dst->c, tmp, n * sizeof(tmp[0]));
	dst->n = n;
	if (src->n && (dst->expires == 0 || src->expires < dst->expires))
		dst->expires = src->expires;
	if (n)
		dst->status = 0;
	free(tmp);
	return rc;
}
