/*
 * model.h: DOTS signal-channel semantics on top of the JSON model produced
 * by cbor.h (RFC 7951 names; see cbor.h for the representation).
 *
 * Every check returns 0 when the input is acceptable, otherwise the CoAP
 * response code to answer with (DG_CODE_*, e.g. 400) and a diagnostic in
 * *diag that names the offending attribute and why. Checks never modify
 * their input.
 */
#ifndef DG_MODEL_H
#define DG_MODEL_H

#include <jansson.h>

#include "dg.h"
#include "prefix.h"

/* ---- URIs (RFC 9132 §4.2, §4.4.1.1, §4.4.1.2, §4.5) --------------------- */

enum model_resource {
	MODEL_RES_MITIGATE,
	MODEL_RES_CONFIG,
	MODEL_RES_HB,
};

#define MODEL_ID_MAX 128 /* longest cuid/cdid accepted, bytes */

struct model_uri {
	enum model_resource res;
	bool has_cdid, has_cuid, has_mid, has_sid;
	char cdid[MODEL_ID_MAX + 1];
	char cuid[MODEL_ID_MAX + 1];
	uint32_t mid;
	uint32_t sid;
};

/*
 * Parses the Uri-Path segments of a request: ".well-known", "dots", then
 * "mitigate" [cdid=X] cuid=X [mid=N] | "config" [sid=N] | "hb".
 * Order is enforced (cdid before cuid, mid after cuid), values must be
 * non-empty, mid/sid decimal uint32 without sign or leading zeros, cuid and
 * cdid at most MODEL_ID_MAX bytes of visible ASCII. Unknown paths give 404;
 * malformed or misordered segments give 400. cuid is mandatory on
 * mitigate (400); cuid/cdid/mid on config or hb give 400.
 */
int model_parse_uri(const char *const *segs, size_t nsegs,
		    struct model_uri *out, struct dg_diag *diag);

/* ---- Mitigation requests (RFC 9132 §4.4.1, §4.4.3; RFC 9133) ---------- */

enum model_put_kind {
	MODEL_PUT_REQUEST,  /* new request or refresh: no attack-status */
	MODEL_PUT_EFFICACY, /* PUT with empty If-Match: attack-status mandatory */
};

/*
 * Validates a mitigation request body: exactly one top-level member
 * (mitigation-scope), exactly one scope entry, at least one of
 * target-prefix/target-fqdn/target-uri/alias-name, mandatory lifetime
 * (not 0; -1 or 1..2^32-1), canonical non-forbidden prefixes, port ranges
 * with lower <= upper, no empty strings or arrays, syntactically valid
 * FQDNs and URIs, attack-status only (and then necessarily) in an efficacy
 * update, acl-list (RFC 9133) entries with a non-empty acl-name, and none
 * of the attributes a client may not send (mid, status, mitigation-start,
 * *-dropped, conflict-information). 0 or 400.
 */
int model_check_mitigation_request(const json_t *body, enum model_put_kind kind,
				   struct dg_diag *diag);

/* The single scope entry of a checked mitigation request (borrowed). */
json_t *model_scope_entry(const json_t *body);

/* lifetime of a scope entry: -1 (indefinite) or seconds. */
int64_t model_scope_lifetime(const json_t *entry);
/* trigger-mitigation of a scope entry (default true). */
bool model_scope_trigger(const json_t *entry);

/*
 * True when two request scope entries are identical apart from lifetime
 * and attack-status (the RFC 9132 refresh / efficacy-update rule).
 */
bool model_scope_same_request(const json_t *a, const json_t *b);

/*
 * True when the targets of a and b overlap (a common prefix address, FQDN,
 * URI or alias, with overlapping ports and protocols when both give them;
 * RFC 9132 §4.4.1.3). When conflict_scope is not NULL and they overlap, it
 * receives a new conflict-scope object listing the overlapping targets.
 */
bool model_scope_overlap(const json_t *a, const json_t *b,
			 json_t **conflict_scope);

/*
 * A scope entry pre-parsed for the overlap rule, so that an entry kept for
 * a long time (an active mitigation) is parsed once rather than on every
 * comparison. model_scope_targets_overlap(pa, pb) answers exactly what
 * model_scope_overlap(a, b, NULL) answers for the entries they were parsed
 * from; trigger is model_scope_trigger(). Members that the JSON rule
 * skips (unparsable prefixes, bad port ranges...) are left out, but a
 * non-empty port or protocol list still counts as a restriction.
 */
struct model_scope_targets {
	bool object;         /* the entry was a JSON object */
	bool trigger;
	bool has_ports, has_protocols; /* non-empty lists given */
	struct prefix *prefixes; size_t nprefixes;
	struct port_range *ports; size_t nports;
	json_int_t *protocols; size_t nprotocols;
	const char **fqdns; size_t nfqdns; /* lower case, no root dot */
	size_t *fqdn_lens;
	const char **uris; size_t nuris;
	const char **aliases; size_t naliases;
	void *mem;           /* one block holding all of the above */
};

/* 0, or DG_ENOMEM (then *out is empty: object false, nothing to free). */
int model_scope_targets_parse(const json_t *entry,
			      struct model_scope_targets *out);
void model_scope_targets_free(struct model_scope_targets *t);
bool model_scope_targets_overlap(const struct model_scope_targets *a,
				 const struct model_scope_targets *b);

/* What a client is allowed to ask mitigation for (from its config). */
struct model_scope_policy {
	struct prefix_set prefixes;   /* target-prefix must be inside one */
	char **fqdns; size_t nfqdns;  /* target-fqdn equal to or below one */
	char **uris; size_t nuris;    /* target-uri starts with one */
	struct port_range *ports; size_t nports; /* each target port range
				       * inside one; none configured = any */
	bool allow_aliases;           /* alias-name allowed at all */
};

/*
 * Checks a scope entry against a client's policy. 0, or 403 with the first
 * target that is outside (the diagnostic names it, so the client can fix
 * its request; it never names another client's data).
 */
int model_scope_authorize(const json_t *entry,
			  const struct model_scope_policy *policy,
			  struct dg_diag *diag);

/* ---- Session configuration (RFC 9132 §4.5) ---------------------------- */

/* Values of one configuration set. ack_timeout and ack_random_factor are
 * hundredths (decimal64 with 2 fraction digits): 2.00 -> 200. */
struct model_session_params {
	uint32_t heartbeat_interval;
	uint32_t missing_hb_allowed;
	uint32_t probing_rate;
	uint32_t max_retransmit;
	uint32_t ack_timeout;
	uint32_t ack_random_factor;
};

struct model_session_config {
	struct model_session_params mitigating;
	struct model_session_params idle;
};

struct model_session_limits {
	struct model_session_params min, max;
};

/* RFC 9132 Appendix C defaults, in both sets. */
void model_session_defaults(struct model_session_config *out);

/*
 * Builds the GET /config answer: both sets, each parameter with
 * current-value(-decimal) from cur and min/max from each set's limits.
 * Returns a new reference or NULL (out of memory).
 */
json_t *model_config_build(const struct model_session_config *cur,
			   const struct model_session_limits *mitigating,
			   const struct model_session_limits *idle);

/*
 * Builds a PUT /config body carrying only current-value(-decimal) leaves,
 * as a DOTS client (the gateway's client half) sends it upstream.
 */
json_t *model_config_build_request(const struct model_session_config *want);

/*
 * Validates a PUT /config body and merges it into *cfg (which the caller
 * pre-fills with the current values): 0, 400 (missing signal-config, no
 * parameter at all, min/max sent by a client, unknown member, wrong type)
 * or 422 (a value outside the limits; RFC 9132 §4.5.2). *cfg is untouched
 * unless 0 is returned.
 */
int model_config_apply(const json_t *body,
		       const struct model_session_limits *mitigating,
		       const struct model_session_limits *idle,
		       struct model_session_config *cfg, struct dg_diag *diag);

/*
 * Reads a server's GET/PUT /config answer (current values, ignoring
 * min/max) into *cfg. 0 or 400 when it is not a signal-config.
 */
int model_config_read(const json_t *body, struct model_session_config *cfg,
		      struct dg_diag *diag);

/* ---- Heartbeat (RFC 9132 §4.7) ---------------------------------------- */

/* 0 and *peer_hb_status, or 400 (not exactly {heartbeat:{peer-hb-status}}). */
int model_check_heartbeat(const json_t *body, bool *peer_hb_status,
			  struct dg_diag *diag);
json_t *model_build_heartbeat(bool peer_hb_status);

/* ---- Redirection (RFC 9132 §4.6) --------------------------------------- */

/* 0 and the alt-server (borrowed) or 400. */
int model_check_redirect(const json_t *body, const char **alt_server,
			 struct dg_diag *diag);

/* ---- Mitigation status (RFC 9132 §4.4.2) ------------------------------- */

enum model_content { MODEL_CONTENT_ALL, MODEL_CONTENT_CONFIG,
		     MODEL_CONTENT_NONCONFIG };

/*
 * Parses the Uri-Query options of a GET /mitigate: "c=a|c|n" and the
 * RFC 9244 target filters (target-prefix, target-port, target-protocol,
 * target-fqdn, target-uri, target-alias; comma-separated values, a-b
 * ranges, a leftmost "*." wildcard for FQDNs). Returns 0 and fills the
 * filter (caller frees with model_query_free), or 400 for an unknown or
 * malformed query.
 */
struct model_query {
	enum model_content content;
	json_t *filter; /* NULL, or an object like a scope entry's targets:
			 * {"target-prefix":[...],"target-port-range":[...],
			 *  "target-protocol":[...],"target-fqdn":[...],
			 *  "target-uri":[...],"alias-name":[...]} */
};
int model_parse_query(const char *const *queries, size_t nqueries,
		      struct model_query *out, struct dg_diag *diag);
void model_query_free(struct model_query *q);
/* A status entry passes the query filter (no filter: always). */
bool model_query_match(const struct model_query *q, const json_t *entry);

/*
 * Copies a status scope entry keeping only what content selects: config
 * nodes (targets, lifetime, trigger-mitigation, acl-list) for c=c,
 * non-config nodes (mid, status, mitigation-start, *-dropped,
 * conflict-information, lifetime) for c=n; mid is always kept.
 */
json_t *model_entry_select(const json_t *entry, enum model_content content);

#endif
