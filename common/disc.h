/*
 * disc.h: DOTS server discovery in the DNS (RFC 8973 §6 and §7), sans I/O.
 *
 * A struct disc resolves one domain into an ordered list of upstream
 * candidates. It never sends a packet and never reads a clock: the caller
 * (gateway/io_dns.c, or a unit test) takes the queries it asks for with
 * disc_next_queries(), feeds each answer back as plain structs with
 * disc_on_answer(), and calls disc_on_expiry() at disc_next_expiry().
 *
 * One run is:
 *   1. S-NAPTR (RFC 3958) for application service "DOTS" and the protocol
 *      tags "signal.udp", "signal.tcp", "data.tcp": NAPTR records sorted
 *      by order then preference; flag "S" leads to SRV, "A" to AAAA+A
 *      (default port: 4646 signal, 443 data, RFC 8973 §6), an empty flag
 *      to another NAPTR lookup (at most DISC_CHAIN_MAX deep, loops
 *      refused). A non-terminal record narrows the protocols followed
 *      below it to its own tags, which is what yields exactly Table 1 from
 *      Figure 8.
 *   2. Only when step 1 gave no candidate (RFC 8973 §4: the mechanisms in
 *      order, the next one when one fails): DNS-SD (RFC 6763, RFC 8973 §7):
 *      PTR at _dots-signal._udp, _dots-signal._tcp, _dots-data._tcp under
 *      the domain, SRV and TXT at each instance, then AAAA+A.
 * SRV records of one lookup (for DNS-SD: of all instances of one service)
 * are ordered by priority, then by RFC 2782's weighted random draw, with
 * the random source in struct disc_params so tests are deterministic.
 * Within a host, IPv6 addresses come before IPv4 ones, each in answer
 * order. A candidate that repeats an earlier one (transport, address,
 * port) is dropped.
 *
 * Reference identifier: RFC 8973 §8.2 builds the DNS-ID to look for in
 * the server's certificate from "the domain name that is used for S-NAPTR
 * lookup", i.e. the configured domain, not a name learnt from the (maybe
 * unsigned) answers (RFC 6125 §6.2.1 source domain). RFC 8973 says nothing
 * for DNS-SD; the same reasoning gives the same answer, the domain. The
 * host name the address came from is kept as `target` for logs.
 *
 * Validity (RFC 8973 §4: discovery is run again when a validity timer
 * such as a DNS TTL expires): each candidate expires at the earliest
 * (answer time + TTL) of the records on its path, TTLs clamped to
 * [ttl_min, ttl_max]; the list expires with its first candidate.
 *
 * Failure (RFC 8973 §6: "before retrying a lookup that has failed, a DOTS
 * client MUST wait a time period that is appropriate for the encountered
 * error"): a run without any candidate is a failure whose retry time is
 *   - NXDOMAIN or no data: the negative-caching TTL of the answer (RFC 2308
 *     §5, min(SOA TTL, SOA MINIMUM)), default neg_default, clamped to
 *     [ttl_min, ttl_max];
 *   - timeout, SERVFAIL, REFUSED, malformed answers: retry_base doubled
 *     after each consecutive failed run, at most retry_max.
 * A successful run whose some branches failed transiently expires no later
 * than the transient retry time, so the failed branches are tried again.
 * After a run, disc_next_expiry() is the list's expiry or the retry time,
 * and disc_on_expiry() then starts the next run by itself.
 *
 * Every record is hostile: names are checked (length, labels, characters),
 * NAPTR fields against RFC 3958 (flags, service syntax, empty regexp,
 * replacement), SRV against RFC 2782 (port 0, "." target); records whose
 * owner is not the query name (or reached from it by a CNAME chain of at
 * most DISC_CNAME_MAX links, loops refused) are ignored. Each refusal is
 * one dg_warn("disc", ...) line naming the record and the rule. The
 * counts of nodes, queries and candidates per run are bounded.
 */
#ifndef DG_DISC_H
#define DG_DISC_H

#include "dg.h"

/* Presentation form of a domain name without the final dot (RFC 1035
 * §2.3.4: 255 octets on the wire, 253 characters). */
#define DISC_NAME_MAX 253
#define DISC_ADDR_TEXT_MAX 46
#define DISC_CANDIDATES_MAX 32
/* Empty-flag NAPTR records followed below the first lookup. */
#define DISC_CHAIN_MAX 4
#define DISC_CNAME_MAX 8
/* Work per run: lookup nodes and distinct (name, type) queries. */
#define DISC_NODES_MAX 96
#define DISC_QUERIES_MAX 64
/* Records considered per answer; io_dns refuses larger answers. */
#define DISC_ANSWER_RR_MAX 64

/* What a candidate is for (the RFC 8973 §6 application protocol tag). */
enum disc_transport {
	DISC_SIGNAL_UDP = 0, /* "signal.udp": signal channel over DTLS */
	DISC_SIGNAL_TCP = 1, /* "signal.tcp": signal channel over TLS */
	DISC_DATA_TCP = 2,   /* "data.tcp": data channel (RESTCONF, TLS) */
	DISC_TRANSPORTS
};
#define DISC_T_ALL ((1u << DISC_TRANSPORTS) - 1)

/* Where a candidate came from, in RFC 8973 §4 preference order. */
enum disc_source { DISC_SRC_CONFIG = 0, DISC_SRC_DHCP, DISC_SRC_NAPTR, DISC_SRC_DNSSD };

/* Mechanisms a run may use (disc_params.mechanisms). */
#define DISC_MECH_NAPTR 1u
#define DISC_MECH_DNSSD 2u

struct disc_candidate {
	int family;                         /* 4 or 6 */
	uint8_t addr[16];                   /* network order, 4 or 16 bytes */
	char address[DISC_ADDR_TEXT_MAX];   /* numeric text form */
	uint16_t port;
	enum disc_transport transport;
	char ref_id[DISC_NAME_MAX + 1];     /* DNS-ID to check in the cert */
	char target[DISC_NAME_MAX + 1];     /* host name the address is of */
	enum disc_source source;
	uint32_t ttl;                       /* s, smallest on the path */
	dg_time_ms expires;                 /* absolute */
};

struct disc_result {
	int status;        /* 0: n >= 1; DG_ENOENT: nothing found; DG_EIO:
			    * transient failures only */
	size_t n;
	struct disc_candidate c[DISC_CANDIDATES_MAX];
	dg_time_ms expires;  /* status 0: run again at this time */
	dg_time_ms retry_at; /* status != 0: not before this time */
	unsigned run;        /* 1 for the first run, then +1 each */
};

/* DNS types the procedure asks for or accepts in answers. */
enum {
	DISC_RR_A = 1, DISC_RR_CNAME = 5, DISC_RR_PTR = 12, DISC_RR_TXT = 16,
	DISC_RR_AAAA = 28, DISC_RR_SRV = 33, DISC_RR_NAPTR = 35
};

struct disc_query {
	uint32_t id;   /* echo it in disc_answer.id */
	uint16_t type; /* DISC_RR_* */
	char name[DISC_NAME_MAX + 1];
};

/* One record from an answer section. Names are in presentation form,
 * without the final dot (as ares_expand_name gives them); the NAPTR
 * character-strings come with their length because they may hold NULs. */
struct disc_rr {
	const char *owner;
	uint16_t type;
	uint32_t ttl;
	union {
		struct {
			uint16_t order, preference;
			const char *flags; size_t flags_len;
			const char *service; size_t service_len;
			const char *regexp; size_t regexp_len;
			const char *replacement;
		} naptr;
		struct {
			uint16_t priority, weight, port;
			const char *target;
		} srv;
		const char *name;  /* PTR, CNAME */
		uint8_t addr[16];  /* A (4 bytes), AAAA */
	} u;
};

enum disc_status {
	DISC_ANS_OK = 0,     /* NOERROR: records (maybe none: no data) */
	DISC_ANS_NXDOMAIN,   /* RCODE 3 */
	DISC_ANS_SERVFAIL,   /* RCODE 2, or REFUSED, NOTIMP */
	DISC_ANS_TIMEOUT,    /* no answer from any server */
	DISC_ANS_MALFORMED   /* the answer could not be parsed */
};

struct disc_answer {
	uint32_t id;
	enum disc_status status;
	/* RFC 2308 §5 negative TTL from the authority SOA; 0: none. */
	uint32_t neg_ttl;
	const struct disc_rr *rr;
	size_t n_rr;
};

struct disc_params {
	unsigned mechanisms;     /* DISC_MECH_*; 0: both */
	unsigned transports;     /* bit (1 << DISC_*); 0: DISC_T_ALL */
	uint32_t ttl_min, ttl_max;         /* s; 0: 30 and 86400 */
	uint32_t neg_default;              /* s; 0: 300 */
	uint32_t retry_base, retry_max;    /* s; 0: 5 and 300 */
	uint32_t run_timeout_ms;           /* one run at most; 0: 30000 */
	/* RFC 2782 weighted draw; NULL: random(3). */
	uint32_t (*random)(void *arg);
	void *random_arg;
};

struct disc;

/* Allocates a resolver for domain (checked: a host name of at most
 * DISC_NAME_MAX characters, a final dot allowed). Returns 0, DG_EINVAL or
 * DG_ENOMEM. Nothing is asked before disc_start(). */
int disc_new(const char *domain, const struct disc_params *p, struct disc **out);
void disc_free(struct disc *d);

/* Starts a run now (abandoning one in progress). */
void disc_start(struct disc *d, dg_time_ms now);

/* Copies at most max queries not yet handed out into out; returns how
 * many. Each query is handed out once; answer each, even with a
 * DISC_ANS_TIMEOUT. */
size_t disc_next_queries(struct disc *d, struct disc_query *out, size_t max);

/* Feeds an answer. Answers to unknown ids (an earlier run) are ignored.
 * Returns 0, or DG_ENOENT for an unknown id. */
int disc_on_answer(struct disc *d, const struct disc_answer *a, dg_time_ms now);

/* When disc_on_expiry() must be called: the run's deadline while a run
 * is in progress, then the result's expiry or retry time. */
dg_time_ms disc_next_expiry(const struct disc *d);
void disc_on_expiry(struct disc *d, dg_time_ms now);

/* The result of the run that finished last, once; NULL when none
 * finished since the previous call. Valid until the next disc_* call. */
const struct disc_result *disc_take_result(struct disc *d);

/* Whether a run is in progress. */
bool disc_busy(const struct disc *d);

const char *disc_transport_name(enum disc_transport t); /* "signal.udp" */
const char *disc_source_name(enum disc_source s);       /* "naptr" */

/* Appends src's candidates to dst keeping RFC 8973 §4 preference (config,
 * DHCP, S-NAPTR, DNS-SD; stable within a source), dropping repeats of
 * (transport, address, port). dst->expires becomes the earlier of both.
 * Returns 0 or DG_ETOOBIG when candidates had to be dropped for room. */
int disc_result_merge(struct disc_result *dst, const struct disc_result *src);

#endif
