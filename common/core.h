/*
 * core.h: the B2BUA engine, sans I/O.
 *
 * The core never touches a socket, a TLS library or a clock. The daemon
 * (gateway/io_coap.c) turns each libcoap callback into one core_on_*()
 * call, passing the current monotonic time, and carries out the actions
 * the core appends to a struct core_actions: reply to a downstream
 * request, send a notification, open/close/send on an upstream session,
 * send a request to a downstream client, close a downstream session.
 * core_next_expiry() says when core_on_expiry() must be called next.
 *
 * Objects on either side are named by ids the core hands out or receives
 * (dn session ids come from io; upstream session ids and tokens from the
 * core); the two halves never hold pointers into each other.
 *
 * This issue implements map mode (RFC 8811 §2.2.3, one upstream session
 * per downstream client, the client's cuid and mid kept, a cdid inserted
 * by a server-domain gateway). Aggregation, pools and recursion plug in at
 * the places marked "mode".
 */
#ifndef DG_CORE_H
#define DG_CORE_H

#include <jansson.h>

#include "dg.h"
#include "model.h"

struct gw_config;
struct gw_client;
struct gw_upstream;
struct core;

enum core_method { CORE_GET = 1, CORE_POST = 2, CORE_PUT = 3, CORE_DELETE = 4 };

#define CORE_TOKEN_MAX 8

/* A downstream request, as io_coap decoded it from a CoAP PDU. */
struct core_request {
	uint64_t dn_sid;      /* session it arrived on */
	uint64_t req_id;      /* io's handle for a deferred reply */
	enum core_method method;
	const char *const *path; size_t npath;     /* Uri-Path segments */
	const char *const *query; size_t nquery;   /* Uri-Query options */
	bool has_observe; uint32_t observe;
	bool has_if_match; bool if_match_empty;
	/* Hop-Limit as the receiving CoAP layer left it: libcoap 4.3.1
	 * applies RFC 8768 §3 itself (5.08 for 1, 4.00 for 0 or >255) and
	 * decrements the value before the request reaches us, so the core
	 * forwards it unchanged and inserts the initial value when absent. */
	bool has_hop_limit; uint32_t hop_limit;
	bool has_content_format; uint32_t content_format;
	bool unknown_critical; /* an unrecognised critical option (4.02) */
	bool confirmable;      /* CON on an unreliable transport */
	uint8_t token[CORE_TOKEN_MAX]; size_t token_len;
	const uint8_t *body; size_t body_len;
};

/* A response or notification received on an upstream session. */
struct core_response {
	uint64_t up_id;
	uint8_t token[CORE_TOKEN_MAX]; size_t token_len;
	int code;               /* 201, 404, ... */
	bool has_observe; uint32_t observe;
	bool has_max_age; uint32_t max_age;
	bool has_content_format; uint32_t content_format;
	const uint8_t *body; size_t body_len;
};

/* An outgoing CoAP message. Ownership of path and payload moves with the
 * action; core_actions_clear() frees them. */
struct core_msg {
	int code;               /* method for requests, 201... for responses */
	bool confirmable;       /* CON rather than NON on unreliable transports */
	uint8_t token[CORE_TOKEN_MAX]; size_t token_len;
	char *path;             /* requests: "/.well-known/dots/..." */
	bool has_observe; uint32_t observe;
	bool if_match_empty;
	bool has_hop_limit; uint32_t hop_limit;
	bool has_max_age; uint32_t max_age;
	bool has_size1; uint32_t size1;
	int content_format;     /* -1: none */
	uint8_t *payload; size_t payload_len;
};

enum core_act_type {
	CORE_ACT_REPLY,      /* answer dn request req_id on dn_sid */
	CORE_ACT_NO_REPLY,   /* forget req_id: RFC 9132 says drop silently */
	CORE_ACT_DN_SEND,    /* a request or notification on dn_sid */
	CORE_ACT_DN_CLOSE,   /* close dn_sid */
	CORE_ACT_UP_OPEN,    /* create upstream session up_id to upstream */
	CORE_ACT_UP_CLOSE,   /* release upstream session up_id */
	CORE_ACT_UP_SEND,    /* send msg on upstream session up_id */
};

/* Where a discovered upstream is reached (RFC 8973): one candidate of the
 * ordered list io hands to core_upstream_retarget(). */
#define CORE_TARGETS_MAX 32
struct core_target {
	char address[64];   /* numeric address, or a host name to resolve */
	uint16_t port;
	int transport;      /* GW_TR_* */
	char ref_id[254];   /* reference identifier (RFC 8973 §8.2); "": none */
};

struct core_action {
	enum core_act_type type;
	/* UP_CLOSE: the core forgot up_id for good (no reconnection will
	 * reuse it); io may free what it keeps for it. */
	bool final;
	uint64_t dn_sid, req_id, up_id;
	const struct gw_upstream *upstream;
	/* UP_OPEN of a discovered upstream: connect here rather than to the
	 * upstream's configured address, port and transport. */
	bool has_target;
	struct core_target target;
	struct core_msg msg;
};

struct core_actions {
	struct core_action *v;
	size_t n, cap;
};
void core_actions_clear(struct core_actions *a);
void core_actions_free(struct core_actions *a);

/* ---- lifecycle ----------------------------------------------------------- */

/* cfg must outlive the core. Returns NULL when out of memory.
 * seed randomises upstream tokens (io passes random bytes). */
struct core *core_new(const struct gw_config *cfg, uint64_t seed);
void core_free(struct core *c);

/* ---- downstream events ------------------------------------------------- */

struct core_dn_info {
	enum { CORE_TR_DTLS, CORE_TR_TLS, CORE_TR_UDP, CORE_TR_TCP } transport;
	const struct gw_client *client; /* authenticated client; NULL = none */
	const char *cdid;  /* derived from the credential (IDENT_LEN chars) */
	const char *peer;  /* printable address, for logs */
};

/* A downstream session is established (handshake done). */
int core_on_dn_session(struct core *c, uint64_t dn_sid,
		       const struct core_dn_info *info, dg_time_ms now,
		       struct core_actions *out);
/* A downstream session is gone; pending replies to it are dropped. */
void core_on_dn_session_down(struct core *c, uint64_t dn_sid, dg_time_ms now,
			     struct core_actions *out);
/* A request from a downstream client. Always appends exactly one REPLY or
 * NO_REPLY for req->req_id, now or in a later call. */
void core_on_dn_request(struct core *c, const struct core_request *req,
			dg_time_ms now, struct core_actions *out);
/* A response from a downstream client to a request the gateway sent
 * (its heartbeat), or an RST (code 0) to a notification. */
void core_on_dn_response(struct core *c, uint64_t dn_sid, const uint8_t *token,
			 size_t token_len, int code, dg_time_ms now,
			 struct core_actions *out);

/* ---- upstream events --------------------------------------------------- */

enum core_up_event {
	CORE_UP_CONNECTED, /* (D)TLS/TCP established (or plain UDP created) */
	CORE_UP_FAILED,    /* could not be established */
	CORE_UP_CLOSED,    /* closed by the peer or by an error */
};
void core_on_up_event(struct core *c, uint64_t up_id, enum core_up_event ev,
		      dg_time_ms now, struct core_actions *out);
void core_on_up_response(struct core *c, const struct core_response *rsp,
			 dg_time_ms now, struct core_actions *out);
/* A CON request the library gave up on (no ACK after MAX_RETRANSMIT). */
void core_on_up_nack(struct core *c, uint64_t up_id, const uint8_t *token,
		     size_t token_len, dg_time_ms now, struct core_actions *out);
/* A request an upstream server sent us (its heartbeat). Returns the code
 * to answer with (204, or 400/404/405). */
int core_on_up_request(struct core *c, uint64_t up_id,
		       const struct core_request *req, dg_time_ms now,
		       struct core_actions *out);

/* ---- time ---------------------------------------------------------------- */

/* Absolute time of the next deadline, or UINT64_MAX when there is none. */
dg_time_ms core_next_expiry(const struct core *c);
void core_on_expiry(struct core *c, dg_time_ms now, struct core_actions *out);

/* ---- introspection (tests, logs, later the control socket) -------------- */

struct core_stats {
	size_t dn_sessions, up_sessions, up_ready, mitigations, dn_observers,
	       up_pending;
};
void core_get_stats(const struct core *c, struct core_stats *st);

/* Metrics (common/metrics.h): m's counters are incremented as things
 * happen from now on (NULL: none); core_collect_metrics() sets its
 * gauges (sessions, mitigations, upstream health, dropped traffic) from
 * the current state, at scrape time. m must outlive the core. */
struct metrics_dots;
void core_set_metrics(struct core *c, struct metrics_dots *m);
void core_collect_metrics(const struct core *c, struct metrics_dots *m);

/* ---- the gateway's own requests (RFC 8811 §3.3.1) ------------------------ */

/*
 * An operator's mitigation request, sent to upstream as the gateway's own
 * with cuid (the caller derives it from the gateway's credential for that
 * upstream, RFC 9132 §4.4.1.2) and the next of the gateway's mids, which
 * strictly increase. body is a full mitigation-scope request (one scope
 * entry), validated as a client's would be. Returns 0 with *mid_out set
 * (the upstream's answer arrives later; the mitigation then shows among
 * the others under client "gateway:UPSTREAM"), or a CoAP-style code
 * (404 no such upstream, 400/422 invalid, 409 cuid in use, 503) with d
 * saying why.
 */
int core_own_request(struct core *c, const char *upstream, const char *cuid,
		     const json_t *body, uint32_t *mid_out, dg_time_ms now,
		     struct core_actions *out, struct dg_diag *d);
/* Withdraws the gateway's own mitigation mid (404 when it has none). */
int core_own_withdraw(struct core *c, const char *upstream, const char *cuid,
		      uint32_t mid, dg_time_ms now, struct core_actions *out,
		      struct dg_diag *d);
/* The gateway's mids continue above base (until the persistent store of
 * issue 3, io passes a wall-clock-derived base so that mids still grow
 * across restarts). */
void core_set_own_mid_base(struct core *c, uint32_t base);

/* ---- drain -------------------------------------------------------------- */

/*
 * Drain on: every downstream observation gets a 5.03 notification with a
 * redirection to cfg->drain (RFC 9132 §4.6, Max-Age = its ttl) and ends;
 * from then on every downstream request, on old and new sessions, is
 * answered the same way. Drain off: service as usual. *notified counts
 * the observations told. Returns 0, or DG_EINVAL when no alternate is
 * configured (nothing changed).
 */
int core_drain(struct core *c, bool on, dg_time_ms now, struct core_actions *out,
	       size_t *notified);
bool core_draining(const struct core *c);

/* ---- reload --------------------------------------------------------------- */

struct core_reload_stats {
	size_t clients_added, clients_removed, clients_reauth, clients_rehomed;
};

/*
 * Moves the core to cfg (which must outlive it; the caller frees the old
 * configuration after this returns). Clients are matched by name:
 * - a client no longer configured: its sessions close (DN_CLOSE) and the
 *   core forgets its state; its mitigations end at their lifetime upstream;
 * - a client whose credential changed: its sessions close, its state stays;
 * - a client whose upstream (or any setting of it) changed: its upstream
 *   session closes and one opens to the new upstream, where its active
 *   mitigations are installed again;
 * - everything else (scopes, limits, hop-limit...) applies to the next
 *   request; negotiated session parameters stay as negotiated.
 * old_to_new (one slot per client of the old configuration, in its order)
 * receives each old client's new record, or NULL, for io's own pointers.
 * Returns 0, or DG_ENOMEM with nothing changed.
 */
int core_reconfigure(struct core *c, const struct gw_config *cfg,
		     const struct gw_client **old_to_new, dg_time_ms now,
		     struct core_actions *out, struct core_reload_stats *st);

/* The CoAP transmission parameters (max-retransmit, ack-timeout,
 * ack-random-factor) negotiated for a session, in the set in force (idle
 * or mitigating, RFC 9132 §4.5); io applies them to the CoAP layer.
 * Returns 0, or DG_ENOENT for an unknown session. */
int core_up_params(const struct core *c, uint64_t up_id,
		   struct model_session_params *out);
int core_dn_params(const struct core *c, uint64_t dn_sid,
		   struct model_session_params *out);

/* Stops: withdraws nothing (mitigations outlive the gateway upstream),
 * closes every session. */
void core_shutdown(struct core *c, struct core_actions *out);

/* ---- read-only introspection (the control socket, gateway/ctl.c) --------- */

/* What core_foreach_*() show of one object. Pointers are borrowed and
 * valid only during the callback; the callback must not call back into
 * the core. Times are the monotonic ms the core was given. */
struct core_dn_view {
	uint64_t sid;
	int transport;            /* CORE_TR_* */
	const char *peer;
	const char *client;       /* configured client name; NULL: none */
	const char *cdid;         /* derived from its credential; "" if none */
	dg_time_ms since;         /* established */
	dg_time_ms last_rx;       /* last message from the client */
	uint32_t heartbeat_interval; /* s, the set in force (RFC 9132 §4.5) */
	uint32_t missing_hb_allowed;
	uint32_t missed_hb;       /* whole intervals without any traffic */
	size_t observers;         /* observations held on this session */
};

struct core_up_view {
	uint64_t id;
	const struct gw_upstream *upstream;
	const char *client;       /* map mode: the client it serves */
	const char *state;        /* "connecting", "configuring", "ready", "backoff" */
	bool ready;
	dg_time_ms since;         /* became ready (valid when ready) */
	dg_time_ms reconnect_at;  /* next attempt (valid in backoff) */
	uint32_t heartbeat_interval; /* s, negotiated, the set in force */
	uint32_t missing_hb_allowed;
	uint32_t missed_hb;       /* heartbeats unanswered in a row */
	size_t pending;           /* requests sent or queued on it */
	const struct core_target *target; /* discovered; NULL: configured */
};

struct core_mitig_view {
	const char *client;
	const char *cuid;         /* the client's identifiers */
	uint32_t mid;
	const char *cdid;         /* inserted upstream; NULL: none */
	uint64_t up_id;           /* its upstream session; 0: none at present */
	const struct gw_upstream *upstream;
	const char *up_cuid;      /* identifiers upstream (map mode: the same) */
	uint32_t up_mid;
	int64_t lifetime_left;    /* s; -1: indefinite */
	bool observed;            /* the gateway observes it upstream */
	const json_t *scope;      /* the client's request entry */
	const json_t *status;     /* the last status the upstream reported;
				   * NULL: none yet */
};

/* Each calls fn once per object, in no set order, until fn returns false. */
typedef bool (*core_dn_view_fn)(const struct core_dn_view *v, void *arg);
typedef bool (*core_up_view_fn)(const struct core_up_view *v, void *arg);
typedef bool (*core_mitig_view_fn)(const struct core_mitig_view *v, void *arg);
void core_foreach_dn_session(const struct core *c, dg_time_ms now,
			     core_dn_view_fn fn, void *arg);
void core_foreach_up_session(const struct core *c, core_up_view_fn fn,
			     void *arg);
/* client: only the mitigations of the client of that name; NULL: all. */
void core_foreach_mitigation(const struct core *c, const char *client,
			     dg_time_ms now, core_mitig_view_fn fn, void *arg);

/* ---- discovered upstreams (RFC 8973) ----------------------------------------- */

/*
 * Sets the ordered candidates (t[0..n), at most CORE_TARGETS_MAX; n = 0:
 * none, the configured address is used again) for the upstream named
 * upstream. The core keeps them (never the configuration structs) and
 * every session to that upstream uses them: it opens to the first
 * candidate, and when one cannot be established (connection failed, no
 * handshake within 10 s, the last candidate excepted, or lost before PUT
 * /config was answered) it tries the next at once; after the last, the usual backoff, then from the first
 * again. When the list changes, a ready session whose candidate is still
 * listed stays; any other is re-homed to the first candidate (its active
 * mitigations installed there again, as after a reload). *rehomed counts
 * the sessions moved. Returns 0, DG_EINVAL (n too large, or n > 0 and no
 * upstream of that name) or DG_ENOMEM (nothing changed).
 */
int core_upstream_retarget(struct core *c, const char *upstream,
			   const struct core_target *t, size_t n, dg_time_ms now,
			   struct core_actions *out, size_t *rehomed);

#endif
