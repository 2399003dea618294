/*
 * io_coap.c: libcoap <-> libuv glue and the translation between CoAP PDUs
 * and core events/actions. See io_coap.h.
 */
#include "io_coap.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

/* Always: the gateway's own cuid comes from its certificate (own_cuid),
 * whichever TLS library libcoap uses. */
#include <gnutls/gnutls.h>

#include <coap3/coap.h>

#include "dotsgw_build.h"
#if ENABLE_COAP_GNUTLS
#include <gnutls/gnutls.h>
#endif

#include "../common/core.h"
#include "../common/hmap.h"
#include "../common/ident.h"
#include "../common/metrics.h"

#define LOG_IO "io"
#define PATH_SEGS_MAX 16
#define QUERY_MAX 16
#define OPT_TEXT_MAX 255
/* libcoap 4.3.1 (GnuTLS) abandons a DTLS handshake after max_retransmit
 * timeouts in all (coap_dtls_handle_timeout never resets its count): a
 * session in handshake gets enough for GnuTLS's own limit (60 s) to
 * decide, which loss needs. The negotiated value returns afterwards. */
#define IO_HANDSHAKE_MAX_RETRANSMIT 60

/* Per downstream session, hung on the libcoap session (app data). */
struct io_dn {
	struct hmap_node node; /* io->dn by sid */
	uint64_t sid;
	coap_session_t *session;
	const struct gw_client *client;
	char cdid[IDENT_LEN + 1];
	bool announced;
	const char *hs_reason; /* why we refused its handshake (metrics) */
	bool hs_counted;       /* its handshake failure is counted */
};

/* A downstream request answered later (core relays it upstream first). */
struct io_pending {
	struct hmap_node node; /* io->pending by req_id */
	uint64_t req_id;
	uint64_t sid;
	coap_session_t *session;
	coap_async_t *async;
	coap_pdu_type_t type;
	uint8_t token[8];
	size_t token_len;
	const char *res;   /* metrics labels of the request */
	int method;
	uint64_t t0;       /* uv_hrtime() at arrival */
};

struct io_up {
	struct hmap_node node; /* io->up by up_id */
	struct io_up *next_connecting; /* in io->connecting while !connected */
	bool on_connecting;
	uint64_t up_id;
	coap_session_t *session;
	const struct gw_upstream *cfg;
	bool connected;
	bool has_target; /* a discovered upstream's candidate (RFC 8973) */
	struct core_target target;
};

struct io {
	uv_loop_t *loop;
	const struct gw_config *cfg;
	struct core *core;
	coap_context_t *srv, *cli;
	uv_poll_t srv_poll, cli_poll;
	uv_timer_t timer, kick;
	int open_handles;
	struct core_actions acts;
	struct hmap dn, pending, up;
	struct io_up *connecting; /* sessions whose handshake is in progress */
	uint64_t next_sid, next_req_id;
	coap_session_t **releases;
	size_t nreleases, releases_cap;
	coap_bin_const_t *client_keys; /* PSK per configured client */
	struct dg_ratelimit rl_peer;   /* refused handshakes' log lines */
	coap_endpoint_t **endpoints;   /* one per cfg->listen entry */
	bool stopping;
	int busy;       /* nesting depth of action execution */
	bool in_coap;   /* inside coap_io_process() */
	bool need_kick; /* libcoap was called from outside its loop */
	struct metrics_dots *metrics; /* NULL: none */
	coap_session_t *hs_gone; /* deleted in handshake, failure counted */
};

/* A metrics family, or NULL (a no-op) when metrics are off. */
#define IO_MX(io, f) ((io)->metrics ? (io)->metrics->f : NULL)

/* One downstream request answered with code (-1: dropped silently). */
static void count_dn(struct io *io, const char *res, int method, int code)
{
	char buf[8];

	if (!io->metrics)
		return;
	metrics_add(io->metrics->requests, (const char *[]){ METRICS_DN, res,
		    metrics_coap_method(method),
		    code < 0 ? "none" : metrics_coap_code(code, buf) }, 1);
}

static dg_time_ms io_now(void)
{
	return uv_hrtime() / 1000000u;
}

static void run_actions(struct io *io);

/* ---- small lookups -------------------------------------------------------- */

static struct io_dn *dn_by_sid(struct io *io, uint64_t sid)
{
	for (struct hmap_node *n = hmap_first(&io->dn, hmap_hash_u64(sid)); n;
	     n = hmap_next(n)) {
		struct io_dn *d = hmap_entry(n, struct io_dn, node);
		if (d->sid == sid)
			return d;
	}
	return NULL;
}

static struct io_up *up_by_id(struct io *io, uint64_t id)
{
	for (struct hmap_node *n = hmap_first(&io->up, hmap_hash_u64(id)); n;
	     n = hmap_next(n)) {
		struct io_up *u = hmap_entry(n, struct io_up, node);
		if (u->up_id == id)
			return u;
	}
	return NULL;
}

static struct io_pending *pending_by_id(struct io *io, uint64_t id)
{
	for (struct hmap_node *n = hmap_first(&io->pending, hmap_hash_u64(id)); n;
	     n = hmap_next(n)) {
		struct io_pending *p = hmap_entry(n, struct io_pending, node);
		if (p->req_id == id)
			return p;
	}
	return NULL;
}

static int code_from_pdu(coap_pdu_code_t code)
{
	return (int)(code >> 5) * 100 + (int)(code & 0x1f);
}

static coap_pdu_code_t code_to_pdu(int code)
{
	if (code < 100) /* a method */
		return (coap_pdu_code_t)code;
	return (coap_pdu_code_t)COAP_RESPONSE_CODE(code);
}

static void peer_string(const coap_session_t *s, char *buf, size_t len)
{
	const coap_address_t *a = coap_session_get_addr_remote(s);

	if (!a || !coap_print_addr(a, (unsigned char *)buf, len))
		snprintf(buf, len, "?");
}

static enum gw_transport transport_of(const coap_session_t *s)
{
	switch (coap_session_get_proto(s)) {
	case COAP_PROTO_DTLS: return GW_TR_DTLS;
	case COAP_PROTO_TLS: return GW_TR_TLS;
	case COAP_PROTO_TCP: return GW_TR_TCP;
	default: return GW_TR_UDP;
	}
}

static void defer_release(struct io *io, coap_session_t *s)
{
	if (io->nreleases == io->releases_cap) {
		size_t ncap = io->releases_cap ? io->releases_cap * 2 : 8;
		coap_session_t **v = realloc(io->releases, ncap * sizeof(*v));
		if (!v) {
			dg_err(LOG_IO, "cannot defer a session release: out of memory");
			return;
		}
		io->releases = v;
		io->releases_cap = ncap;
	}
	io->releases[io->nreleases++] = s;
}

static void flush_releases(struct io *io)
{
	for (size_t i = 0; i < io->nreleases; i++)
		coap_session_release(io->releases[i]);
	io->nreleases = 0;
}

/* ---- downstream sessions ---------------------------------------------------- */

static struct io_dn *dn_attach(struct io *io, coap_session_t *s)
{
	struct io_dn *d = coap_session_get_app_data(s);

	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->sid = ++io->next_sid;
	d->session = s;
	if (hmap_insert(&io->dn, &d->node, hmap_hash_u64(d->sid))) {
		free(d);
		return NULL;
	}
	coap_session_set_app_data(s, d);
	return d;
}

static void dn_announce(struct io *io, struct io_dn *d)
{
	struct core_dn_info info;
	char peer[64];

	if (d->announced)
		return;
	/* Plain sessions carry no credential: lab mode attributes them to the
	 * first configured client (logged at start). */
	if (!gw_transport_secure(transport_of(d->session)) && !d->client &&
	    io->cfg->insecure_lab && io->cfg->nclients) {
		d->client = &io->cfg->clients[0];
		const char *id = d->client->name;
		ident_derive((const uint8_t *)id, strlen(id), d->cdid);
	}
	peer_string(d->session, peer, sizeof(peer));
	info.transport = (int)transport_of(d->session);
	info.client = d->client;
	info.cdid = d->cdid;
	info.peer = peer;
	d->announced = true;
	core_on_dn_session(io->core, d->sid, &info, io_now(), &io->acts);
	run_actions(io);
}

static void dn_detach(struct io *io, coap_session_t *s)
{
	struct io_dn *d = coap_session_get_app_data(s);
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	if (!d)
		return;
	coap_session_set_app_data(s, NULL);
	/* Replies still owed on this session can no longer be sent. */
	while ((n = hmap_iter_next(&io->pending, &it))) {
		struct io_pending *p = hmap_entry(n, struct io_pending, node);
		if (p->sid != d->sid)
			continue;
		hmap_remove(&io->pending, &p->node);
		coap_free_async(p->session, p->async);
		free(p);
	}
	if (d->announced) {
		core_on_dn_session_down(io->core, d->sid, io_now(), &io->acts);
		run_actions(io);
	}
	hmap_remove(&io->dn, &d->node);
	free(d);
}

static const coap_bin_const_t *psk_lookup(coap_bin_const_t *identity,
					  coap_session_t *s, void *arg)
{
	struct io *io = arg;
	const struct gw_client *cl;
	struct io_dn *d;

	if (!identity)
		return NULL;
	cl = config_client_by_psk(io->cfg, identity->s, identity->length);
	if (!cl) {
		char peer[64], id[DG_ECHO_MAX + 4];
		peer_string(s, peer, sizeof(peer));
		dg_log_limited(&io->rl_peer, io_now(), DG_LOG_WARN, LOG_IO,
			       "peer=%s psk-identity=%s: not configured; handshake refused",
			       peer, dg_echo((const char *)identity->s,
					     identity->length, id));
		if (io->metrics && (d = dn_attach(io, s)))
			d->hs_reason = "unknown_psk_identity";
		return NULL;
	}
	if (!(d = dn_attach(io, s)))
		return NULL;
	d->client = cl;
	ident_derive(identity->s, identity->length, d->cdid);
	return &io->client_keys[cl - io->cfg->clients];
}

static int cert_check(const char *cn, const uint8_t *der, size_t der_len,
		      coap_session_t *s, unsigned int depth, int validated,
		      void *arg)
{
	struct io *io = arg;
	const struct gw_client *cl;
	struct io_dn *d;
	uint8_t *spki = NULL;
	size_t spki_len = 0;

	if (!validated) {
		char peer[64], name[DG_ECHO_MAX + 4];
		peer_string(s, peer, sizeof(peer));
		dg_log_limited(&io->rl_peer, io_now(), DG_LOG_WARN, LOG_IO,
			       "peer=%s cert-name=%s: certificate did not verify; handshake refused",
			       peer, dg_echo(cn, SIZE_MAX, name));
		if (io->metrics && (d = dn_attach(io, s)))
			d->hs_reason = "bad_certificate";
		return 0;
	}
	if (depth > 0)
		return 1; /* a CA of the chain; the leaf decides */
	cl = cn ? config_client_by_cert_name(io->cfg, cn) : NULL;
	if (!cl) {
		char peer[64], name[DG_ECHO_MAX + 4];
		peer_string(s, peer, sizeof(peer));
		dg_log_limited(&io->rl_peer, io_now(), DG_LOG_WARN, LOG_IO,
			       "peer=%s cert-name=%s: not configured; handshake refused",
			       peer, dg_echo(cn, SIZE_MAX, name));
		if (io->metrics && (d = dn_attach(io, s)))
			d->hs_reason = "unknown_certificate_name";
		return 0;
	}
	if (!(d = dn_attach(io, s)))
		return 0;
	d->client = cl;
	/* cdid over the certificate's SPKI (RFC 9132 §4.4.1.2, Appendix B). */
	if (ident_spki_from_cert(der, der_len, &spki, &spki_len) == 0) {
		ident_derive(spki, spki_len, d->cdid);
		free(spki);
	}
	return 1;
}

/* ---- PDU helpers --------------------------------------------------------------- */

static void add_uint_option(coap_pdu_t *pdu, uint16_t num, uint32_t v)
{
	uint8_t buf[4];

	coap_add_option(pdu, num, coap_encode_var_safe(buf, sizeof(buf), v), buf);
}

/* Adds the options of m in ascending option-number order (RFC 7252 §3.1). */
static void add_msg_options(coap_pdu_t *pdu, const struct core_msg *m)
{
	if (m->if_match_empty)
		coap_add_option(pdu, COAP_OPTION_IF_MATCH, 0, NULL);
	if (m->has_observe)
		add_uint_option(pdu, COAP_OPTION_OBSERVE, m->observe);
	if (m->path) {
		const char *p = m->path;
		while (*p == '/')
			p++;
		while (*p) {
			const char *e = strchr(p, '/');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			coap_add_option(pdu, COAP_OPTION_URI_PATH, len,
					(const uint8_t *)p);
			p += len;
			while (*p == '/')
				p++;
		}
	}
	if (m->content_format >= 0)
		add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT,
				(uint32_t)m->content_format);
	if (m->has_max_age)
		add_uint_option(pdu, COAP_OPTION_MAXAGE, m->max_age);
	if (m->has_hop_limit)
		add_uint_option(pdu, DG_OPTION_HOP_LIMIT, m->hop_limit);
	if (m->has_size1)
		add_uint_option(pdu, COAP_OPTION_SIZE1, m->size1);
	if (m->payload_len)
		coap_add_data(pdu, m->payload_len, m->payload);
}

static coap_pdu_t *msg_pdu(coap_session_t *s, coap_pdu_type_t type,
			   const struct core_msg *m)
{
	coap_pdu_t *pdu = coap_pdu_init(type, code_to_pdu(m->code),
					coap_new_message_id(s),
					coap_session_max_pdu_size(s));

	if (!pdu)
		return NULL;
	if (!coap_add_token(pdu, m->token_len, m->token)) {
		coap_delete_pdu(pdu);
		return NULL;
	}
	add_msg_options(pdu, m);
	return pdu;
}

/* The negotiated transmission parameters (RFC 9132 §4.5) on a session,
 * once its handshake is over; ack-timeout and ack-random-factor are in
 * hundredths, libcoap takes thousandths. */
static void apply_params(coap_session_t *s, const struct model_session_params *p)
{
	if (COAP_PROTO_RELIABLE(coap_session_get_proto(s)) ||
	    coap_session_get_state(s) != COAP_SESSION_STATE_ESTABLISHED)
		return;
	if (p->max_retransmit && p->max_retransmit <= UINT16_MAX &&
	    coap_session_get_max_retransmit(s) != p->max_retransmit)
		coap_session_set_max_retransmit(s, (uint16_t)p->max_retransmit);
	coap_fixed_point_t at = { (uint16_t)(p->ack_timeout / 100),
				  (uint16_t)(p->ack_timeout % 100 * 10) };
	coap_fixed_point_t cur = coap_session_get_ack_timeout(s);
	if (at.integer_part && (cur.integer_part != at.integer_part ||
				cur.fractional_part != at.fractional_part))
		coap_session_set_ack_timeout(s, at);
	coap_fixed_point_t rf = { (uint16_t)(p->ack_random_factor / 100),
				  (uint16_t)(p->ack_random_factor % 100 * 10) };
	cur = coap_session_get_ack_random_factor(s);
	if (rf.integer_part && (cur.integer_part != rf.integer_part ||
				cur.fractional_part != rf.fractional_part))
		coap_session_set_ack_random_factor(s, rf);
}

static void apply_dn_params(struct io *io, uint64_t sid, coap_session_t *s)
{
	struct model_session_params p;

	if (core_dn_params(io->core, sid, &p) == 0)
		apply_params(s, &p);
}

/* Reliable transports have no CON/NON (RFC 8323); libcoap ignores it there. */
static coap_pdu_type_t msg_type(bool confirmable)
{
	return confirmable ? COAP_MESSAGE_CON : COAP_MESSAGE_NON;
}

/* ---- actions ---------------------------------------------------------------------- */

static void do_reply(struct io *io, struct core_action *a)
{
	struct io_pending *p = pending_by_id(io, a->req_id);

	if (!p)
		return; /* the session went away meanwhile */
	hmap_remove(&io->pending, &p->node);
	count_dn(io, p->res, p->method, a->type == CORE_ACT_REPLY ? a->msg.code : -1);
	if (a->type == CORE_ACT_REPLY) {
		metrics_observe(IO_MX(io, relay_latency), NULL,
				(double)(uv_hrtime() - p->t0) / 1e9);
		struct core_msg m = a->msg;
		apply_dn_params(io, p->sid, p->session);
		memcpy(m.token, p->token, p->token_len);
		m.token_len = p->token_len;
		/* A separate response to a CON is CON; to a NON it is NON. */
		coap_pdu_t *pdu = msg_pdu(p->session, p->type, &m);
		if (pdu && coap_send(p->session, pdu) == COAP_INVALID_MID)
			dg_debug(LOG_IO, "reply to request %" PRIu64 " not sent", p->req_id);
	}
	coap_free_async(p->session, p->async);
	free(p);
}

static void do_dn_send(struct io *io, struct core_action *a)
{
	struct io_dn *d = dn_by_sid(io, a->dn_sid);

	if (!d)
		return;
	apply_dn_params(io, d->sid, d->session);
	coap_pdu_t *pdu = msg_pdu(d->session, msg_type(a->msg.confirmable),
				  &a->msg);
	if (pdu)
		coap_send(d->session, pdu);
}

static void do_dn_close(struct io *io, struct core_action *a)
{
	struct io_dn *d = dn_by_sid(io, a->dn_sid);

	if (!d)
		return;
	coap_session_t *s = d->session;
	d->announced = false; /* the core already forgot it */
	coap_session_disconnected(s, COAP_NACK_NOT_DELIVERABLE);
}

static int resolve(const char *host, uint16_t port, enum gw_transport t,
		   coap_address_t *out)
{
	struct addrinfo hints, *res = NULL;
	char pstr[8];

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = gw_transport_reliable(t) ? SOCK_STREAM : SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(pstr, sizeof(pstr), "%u", port);
	/* Numeric first: never block the loop for an address literal. A
	 * host name is resolved synchronously here; discovery (RFC 8973)
	 * will resolve asynchronously. */
	if (getaddrinfo(host, pstr, &hints, &res) != 0) {
		hints.ai_flags = AI_NUMERICSERV;
		if (getaddrinfo(host, pstr, &hints, &res) != 0)
			return DG_EINVAL;
	}
	coap_address_init(out);
	out->size = res->ai_addrlen;
	memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static int server_name_check(const char *cn, const uint8_t *der, size_t len,
			     coap_session_t *s, unsigned int depth,
			     int validated, void *arg)
{
	/* The session's own record, not a configuration pointer given at
	 * creation: a reload may replace the configuration mid-handshake. */
	struct io_up *iu = coap_session_get_app_data(s);
	const struct gw_upstream *u = iu ? iu->cfg : NULL;

	(void)der;
	(void)len;
	(void)arg;
	if (!validated || !u)
		return 0;
	/* RFC 8973 §8.2: a discovered server is checked against its
	 * candidate's reference identifier. */
	const char *want = iu->has_target ? (iu->target.ref_id[0] ? iu->target.ref_id : NULL)
					  : u->server_name;
	if (depth > 0 || !want)
		return 1;
	/* RFC 9132 §8 / RFC 6125: the reference identifier must match. */
	if (!cn || strcasecmp(cn, want) != 0) {
		dg_warn(LOG_IO, "upstream=%s server certificate name '%s' is not '%s'",
			u->name, cn ? cn : "?", want);
		return 0;
	}
	return 1;
}

static void do_up_open(struct io *io, struct core_action *a)
{
	const struct gw_upstream *u = a->upstream;
	struct io_up *iu = up_by_id(io, a->up_id);
	coap_address_t addr;
	coap_session_t *s = NULL;
	coap_proto_t proto;

	if (!iu) {
		if (!(iu = calloc(1, sizeof(*iu))))
			goto failed;
		iu->up_id = a->up_id;
		if (hmap_insert(&io->up, &iu->node, hmap_hash_u64(iu->up_id))) {
			free(iu);
			goto failed;
		}
	}
	if (iu->session) {
		coap_session_set_app_data(iu->session, NULL);
		defer_release(io, iu->session);
		iu->session = NULL;
	}
	iu->cfg = u;
	iu->connected = false;
	iu->has_target = a->has_target;
	iu->target = a->target;
	/* A discovered upstream: the core's candidate, not the configuration. */
	const char *host = a->has_target ? a->target.address : u->address;
	uint16_t port = a->has_target ? a->target.port : u->port;
	enum gw_transport tr = a->has_target ? (enum gw_transport)a->target.transport
					     : u->transport;
	char *sni = a->has_target ? (iu->target.ref_id[0] ? iu->target.ref_id : NULL)
				  : u->server_name;
	if (!host) {
		/* Requests queue; the core opens again when discovery hands it
		 * a list, or gives up at its connection deadline. */
		dg_info(LOG_IO, "upstream=%s waiting for discovery", u->name);
		return;
	}
	if (resolve(host, port, tr, &addr)) {
		dg_err(LOG_IO, "upstream=%s cannot resolve %s", u->name, host);
		goto failed;
	}
	switch (tr) {
	case GW_TR_DTLS: proto = COAP_PROTO_DTLS; break;
	case GW_TR_TLS: proto = COAP_PROTO_TLS; break;
	case GW_TR_TCP: proto = COAP_PROTO_TCP; break;
	default: proto = COAP_PROTO_UDP; break;
	}
	if (!gw_transport_secure(tr)) {
		s = coap_new_client_session(io->cli, NULL, &addr, proto);
	} else if (u->cred.psk_identity) {
		coap_dtls_cpsk_t cpsk;
		memset(&cpsk, 0, sizeof(cpsk));
		cpsk.version = COAP_DTLS_CPSK_SETUP_VERSION;
		cpsk.client_sni = sni;
		cpsk.psk_info.identity.s = (const uint8_t *)u->cred.psk_identity;
		cpsk.psk_info.identity.length = strlen(u->cred.psk_identity);
		cpsk.psk_info.key.s = u->cred.psk_key;
		cpsk.psk_info.key.length = u->cred.psk_key_len;
		s = coap_new_client_session_psk2(io->cli, NULL, &addr, proto, &cpsk);
	} else {
		coap_dtls_pki_t pki;
		memset(&pki, 0, sizeof(pki));
		pki.version = COAP_DTLS_PKI_SETUP_VERSION;
		pki.verify_peer_cert = 1;
		pki.check_common_ca = 1;
		pki.cert_chain_validation = 1;
		pki.cert_chain_verify_depth = 3;
		pki.validate_cn_call_back = server_name_check;
		pki.cn_call_back_arg = NULL;
		pki.client_sni = sni;
		pki.pki_key.key_type = COAP_PKI_KEY_PEM;
		pki.pki_key.key.pem.ca_file = u->cred.ca;
		pki.pki_key.key.pem.public_cert = u->cred.cert;
		pki.pki_key.key.pem.private_key = u->cred.key;
		s = coap_new_client_session_pki(io->cli, NULL, &addr, proto, &pki);
	}
	if (!s) {
		dg_err(LOG_IO, "upstream=%s cannot create a session to %s:%u", u->name,
		       host, port);
		goto failed;
	}
	iu->session = s;
	coap_session_set_app_data(s, iu);
	if (proto == COAP_PROTO_DTLS)
		coap_session_set_max_retransmit(s, IO_HANDSHAKE_MAX_RETRANSMIT);
	if (!iu->on_connecting) {
		iu->on_connecting = true;
		iu->next_connecting = io->connecting;
		io->connecting = iu;
	}
	if (proto == COAP_PROTO_UDP) {
		/* No handshake: usable at once. */
		iu->connected = true;
		core_on_up_event(io->core, iu->up_id, CORE_UP_CONNECTED, io_now(),
				 &io->acts);
	}
	return;
failed:
	core_on_up_event(io->core, a->up_id, CORE_UP_FAILED, io_now(), &io->acts);
}

static void do_up_close(struct io *io, struct core_action *a)
{
	struct io_up *iu = up_by_id(io, a->up_id);

	if (!iu)
		return;
	if (iu->session) {
		coap_session_set_app_data(iu->session, NULL);
		defer_release(io, iu->session);
		iu->session = NULL;
	}
	/* A reconnection reuses the id and the slot; a final close frees it
	 * (map mode opens one upstream session per client connection). */
	if (!a->final)
		return;
	for (struct io_up **p = &io->connecting; *p; p = &(*p)->next_connecting) {
		if (*p == iu) {
			*p = iu->next_connecting;
			break;
		}
	}
	hmap_remove(&io->up, &iu->node);
	free(iu);
}

static void do_up_send(struct io *io, struct core_action *a)
{
	struct io_up *iu = up_by_id(io, a->up_id);

	if (!iu || !iu->session)
		return;
	struct model_session_params p;
	if (core_up_params(io->core, a->up_id, &p) == 0)
		apply_params(iu->session, &p);
	coap_pdu_t *pdu = msg_pdu(iu->session,
				  msg_type(a->msg.confirmable), &a->msg);
	if (!pdu || coap_send(iu->session, pdu) == COAP_INVALID_MID)
		dg_debug(LOG_IO, "upstream=%s send failed", iu->cfg ? iu->cfg->name : "-");
}

static void arm_timer(struct io *io);
static void on_kick(uv_timer_t *t);

/* Carries out the queued actions. Actions may produce more (a failed
 * upstream open fails requests), so the list is drained in order. */
static void run_actions(struct io *io)
{
	if (io->busy)
		return; /* the outer call drains what this one appended */
	if (io->acts.n && !io->in_coap)
		io->need_kick = true;
	io->busy++;
	for (size_t i = 0; i < io->acts.n; i++) {
		struct core_action *a = &io->acts.v[i];
		switch (a->type) {
		case CORE_ACT_REPLY:
		case CORE_ACT_NO_REPLY:
			do_reply(io, a);
			break;
		case CORE_ACT_DN_SEND:
			do_dn_send(io, a);
			break;
		case CORE_ACT_DN_CLOSE:
			do_dn_close(io, a);
			break;
		case CORE_ACT_UP_OPEN:
			do_up_open(io, &io->acts.v[i]);
			break;
		case CORE_ACT_UP_CLOSE:
			do_up_close(io, a);
			break;
		case CORE_ACT_UP_SEND:
			do_up_send(io, a);
			break;
		}
	}
	core_actions_clear(&io->acts);
	io->busy--;
	arm_timer(io);
}

/* ---- libcoap handlers --------------------------------------------------------------- */

struct req_buf {
	struct core_request r;
	char segs[PATH_SEGS_MAX][OPT_TEXT_MAX + 1];
	const char *segp[PATH_SEGS_MAX];
	char queries[QUERY_MAX][OPT_TEXT_MAX + 1];
	const char *qp[QUERY_MAX];
};

/* Decodes the options dotsgw cares about. Returns false when the request
 * is malformed beyond what the core can judge (too many segments). */
static bool decode_request(const coap_pdu_t *pdu, struct req_buf *b)
{
	coap_opt_iterator_t it;
	coap_opt_t *opt;
	coap_bin_const_t tok = coap_pdu_get_token(pdu);
	bool ok = true;

	memset(&b->r, 0, sizeof(b->r));
	b->r.method = (enum core_method)coap_pdu_get_code(pdu);
	b->r.confirmable = coap_pdu_get_type(pdu) == COAP_MESSAGE_CON;
	b->r.token_len = tok.length > CORE_TOKEN_MAX ? CORE_TOKEN_MAX : tok.length;
	memcpy(b->r.token, tok.s, b->r.token_len);
	coap_option_iterator_init(pdu, &it, COAP_OPT_ALL);
	while ((opt = coap_option_next(&it))) {
		size_t len = coap_opt_length(opt);
		const uint8_t *v = coap_opt_value(opt);
		switch (it.number) {
		case COAP_OPTION_URI_PATH:
			if (b->r.npath >= PATH_SEGS_MAX || len > OPT_TEXT_MAX) {
				ok = false;
				break;
			}
			memcpy(b->segs[b->r.npath], v, len);
			b->segs[b->r.npath][len] = '\0';
			/* An embedded NUL would let two paths compare equal. */
			if (strlen(b->segs[b->r.npath]) != len)
				ok = false;
			b->segp[b->r.npath] = b->segs[b->r.npath];
			b->r.npath++;
			break;
		case COAP_OPTION_URI_QUERY:
			if (b->r.nquery >= QUERY_MAX || len > OPT_TEXT_MAX) {
				ok = false;
				break;
			}
			memcpy(b->queries[b->r.nquery], v, len);
			b->queries[b->r.nquery][len] = '\0';
			if (strlen(b->queries[b->r.nquery]) != len)
				ok = false;
			b->qp[b->r.nquery] = b->queries[b->r.nquery];
			b->r.nquery++;
			break;
		case COAP_OPTION_OBSERVE:
			b->r.has_observe = true;
			b->r.observe = coap_decode_var_bytes(v, len);
			break;
		case COAP_OPTION_IF_MATCH:
			b->r.has_if_match = true;
			b->r.if_match_empty = len == 0;
			break;
		case DG_OPTION_HOP_LIMIT:
			b->r.has_hop_limit = true;
			b->r.hop_limit = len > 1 ? 256 : coap_decode_var_bytes(v, len);
			if (len == 0)
				b->r.hop_limit = 0;
			break;
		case COAP_OPTION_CONTENT_FORMAT:
			b->r.has_content_format = true;
			b->r.content_format = coap_decode_var_bytes(v, len);
			break;
		default:
			break;
		}
	}
	b->r.path = b->segp;
	b->r.query = b->qp;
	size_t blen = 0;
	const uint8_t *data = NULL;
	if (coap_get_data(pdu, &blen, &data)) {
		b->r.body = data;
		b->r.body_len = blen;
	}
	return ok;
}

static void fill_sync_response(coap_pdu_t *response, struct core_action *a)
{
	coap_pdu_set_code(response, code_to_pdu(a->msg.code));
	add_msg_options(response, &a->msg);
}

static void on_dn_request(coap_resource_t *res, coap_session_t *s,
			  const coap_pdu_t *request, const coap_string_t *query,
			  coap_pdu_t *response)
{
	struct io *io = coap_get_app_data(coap_session_get_context(s));
	struct req_buf *b;
	struct io_dn *d;

	(void)res;
	(void)query;
	if (io->stopping)
		return;
	d = dn_attach(io, s);
	b = malloc(sizeof(*b));
	if (!d || !b) {
		free(b);
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(500));
		return;
	}
	dn_announce(io, d);
	bool ok = decode_request(request, b);
	b->r.dn_sid = d->sid;
	b->r.req_id = ++io->next_req_id;
	const char *mx_res = metrics_dots_resource(b->r.path, b->r.npath);
	int mx_method = (int)b->r.method;
	uint64_t mx_t0 = io->metrics ? uv_hrtime() : 0;
	if (!ok) {
		free(b);
		count_dn(io, mx_res, mx_method, 400);
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(400));
		coap_add_data(response, 30, (const uint8_t *)"too many or too long options");
		return;
	}
	size_t first = io->acts.n;
	io->busy++; /* keep the actions until the sync reply is picked */
	core_on_dn_request(io->core, &b->r, io_now(), &io->acts);
	io->busy--;
	free(b);

	/* Answered at once: use libcoap's response (piggybacked on CON). */
	for (size_t i = first; i < io->acts.n; i++) {
		struct core_action *a = &io->acts.v[i];
		if ((a->type == CORE_ACT_REPLY || a->type == CORE_ACT_NO_REPLY) &&
		    a->req_id == io->next_req_id) {
			count_dn(io, mx_res, mx_method,
				 a->type == CORE_ACT_REPLY ? a->msg.code : -1);
			if (a->type == CORE_ACT_REPLY)
				fill_sync_response(response, a);
			a->type = CORE_ACT_NO_REPLY;
			a->req_id = 0;
			run_actions(io);
			return;
		}
	}
	/* Answered later: libcoap keeps the request and re-ACKs duplicates. */
	struct io_pending *p = calloc(1, sizeof(*p));
	coap_async_t *as = p ? coap_register_async(s, request, 0) : NULL;
	if (!p || !as) {
		free(p);
		count_dn(io, mx_res, mx_method, 503);
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(503));
		run_actions(io);
		return;
	}
	coap_bin_const_t tok = coap_pdu_get_token(request);
	p->req_id = io->next_req_id;
	p->sid = d->sid;
	p->session = s;
	p->async = as;
	p->type = coap_pdu_get_type(request) == COAP_MESSAGE_CON ?
			  COAP_MESSAGE_CON : COAP_MESSAGE_NON;
	p->token_len = tok.length > sizeof(p->token) ? sizeof(p->token) : tok.length;
	memcpy(p->token, tok.s, p->token_len);
	p->res = mx_res;
	p->method = mx_method;
	p->t0 = mx_t0;
	if (hmap_insert(&io->pending, &p->node, hmap_hash_u64(p->req_id))) {
		coap_free_async(s, as);
		free(p);
		coap_pdu_set_code(response, COAP_RESPONSE_CODE(503));
	}
	run_actions(io);
}

/* Requests an upstream server sends us (its heartbeats, RFC 9132 §4.7). */
static void on_up_request(coap_resource_t *res, coap_session_t *s,
			  const coap_pdu_t *request, const coap_string_t *query,
			  coap_pdu_t *response)
{
	struct io *io = coap_get_app_data(coap_session_get_context(s));
	struct io_up *iu = coap_session_get_app_data(s);
	struct req_buf *b = malloc(sizeof(*b));
	int code = DG_CODE_INTERNAL;

	(void)res;
	(void)query;
	if (b && iu && decode_request(request, b))
		code = core_on_up_request(io->core, iu->up_id, &b->r, io_now(),
					  &io->acts);
	free(b);
	coap_pdu_set_code(response, code_to_pdu(code));
	run_actions(io);
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t mid)
{
	struct io *io = coap_get_app_data(coap_session_get_context(s));
	coap_bin_const_t tok = coap_pdu_get_token(rcvd);
	coap_opt_iterator_t it;
	coap_opt_t *opt;

	(void)sent;
	(void)mid;
	if (coap_session_get_type(s) == COAP_SESSION_TYPE_SERVER) {
		struct io_dn *d = coap_session_get_app_data(s);
		if (d)
			core_on_dn_response(io->core, d->sid, tok.s, tok.length,
					    code_from_pdu(coap_pdu_get_code(rcvd)),
					    io_now(), &io->acts);
		run_actions(io);
		return COAP_RESPONSE_OK;
	}
	struct io_up *iu = coap_session_get_app_data(s);
	if (!iu)
		return COAP_RESPONSE_OK;
	struct core_response r;
	memset(&r, 0, sizeof(r));
	r.up_id = iu->up_id;
	r.token_len = tok.length > CORE_TOKEN_MAX ? CORE_TOKEN_MAX : tok.length;
	memcpy(r.token, tok.s, r.token_len);
	r.code = code_from_pdu(coap_pdu_get_code(rcvd));
	coap_option_iterator_init(rcvd, &it, COAP_OPT_ALL);
	while ((opt = coap_option_next(&it))) {
		uint32_t v = coap_decode_var_bytes(coap_opt_value(opt),
						   coap_opt_length(opt));
		if (it.number == COAP_OPTION_OBSERVE) {
			r.has_observe = true;
			r.observe = v;
		} else if (it.number == COAP_OPTION_MAXAGE) {
			r.has_max_age = true;
			r.max_age = v;
		} else if (it.number == COAP_OPTION_CONTENT_FORMAT) {
			r.has_content_format = true;
			r.content_format = v;
		}
	}
	size_t len = 0;
	const uint8_t *data = NULL;
	if (coap_get_data(rcvd, &len, &data)) {
		r.body = data;
		r.body_len = len;
	}
	core_on_up_response(io->core, &r, io_now(), &io->acts);
	run_actions(io);
	return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent,
		    const coap_nack_reason_t reason, const coap_mid_t mid)
{
	struct io *io = coap_get_app_data(coap_session_get_context(s));
	coap_bin_const_t tok = sent ? coap_pdu_get_token(sent) :
				      (coap_bin_const_t){ 0, NULL };

	(void)mid;
	if (coap_session_get_type(s) == COAP_SESSION_TYPE_SERVER) {
		struct io_dn *d = coap_session_get_app_data(s);
		/* An RST to a notification cancels it (RFC 7641 §3.6). */
		if (d && reason == COAP_NACK_RST)
			core_on_dn_response(io->core, d->sid, tok.s, tok.length, 0,
					    io_now(), &io->acts);
		run_actions(io);
		return;
	}
	struct io_up *iu = coap_session_get_app_data(s);
	if (!iu)
		return;
	if (reason == COAP_NACK_TOO_MANY_RETRIES || reason == COAP_NACK_TLS_FAILED ||
	    reason == COAP_NACK_NOT_DELIVERABLE)
		core_on_up_nack(io->core, iu->up_id, tok.s, tok.length, io_now(),
				&io->acts);
	run_actions(io);
}

/*
 * A downstream (D)TLS handshake that will not complete: counted once per
 * session, by the reason psk_lookup/cert_check noted, else by the event.
 * libcoap 4.3.1 raises DTLS_CLOSED (or TCP/SESSION_FAILED) when it gives
 * up on a handshake, and SERVER_SESSION_DEL for one that timed out
 * half-way, followed by a DTLS_CLOSED for the same session (hs_gone).
 */
static void count_dn_handshake(struct io *io, coap_session_t *s, coap_event_t ev)
{
	struct io_dn *d = coap_session_get_app_data(s);
	bool repeat = io->hs_gone == s && ev == COAP_EVENT_DTLS_CLOSED;
	coap_session_state_t st = coap_session_get_state(s);

	io->hs_gone = NULL;
	if (!io->metrics || repeat || (d && (d->announced || d->hs_counted)) ||
	    !gw_transport_secure(transport_of(s)) ||
	    st == COAP_SESSION_STATE_ESTABLISHED || st == COAP_SESSION_STATE_NONE)
		return;
	if (ev != COAP_EVENT_DTLS_CLOSED && ev != COAP_EVENT_DTLS_ERROR &&
	    ev != COAP_EVENT_TCP_FAILED && ev != COAP_EVENT_SESSION_FAILED &&
	    ev != COAP_EVENT_SERVER_SESSION_DEL)
		return;
	const char *why = d && d->hs_reason ? d->hs_reason :
			  ev == COAP_EVENT_SERVER_SESSION_DEL ? "timeout" :
			  ev == COAP_EVENT_DTLS_ERROR ? "dtls_error" : "closed";
	metrics_add(io->metrics->hs_failures, (const char *[]){ METRICS_DN, why }, 1);
	if (ev == COAP_EVENT_SERVER_SESSION_DEL)
		io->hs_gone = s;
	if (d)
		d->hs_counted = true;
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	struct io *io = coap_get_app_data(coap_session_get_context(s));

	if (!io)
		return 0;
	/* A DTLS session is still of type HELLO (cookie exchange) here. */
	if (ev == COAP_EVENT_SERVER_SESSION_NEW) {
		if (coap_session_get_proto(s) == COAP_PROTO_DTLS)
			coap_session_set_max_retransmit(s, IO_HANDSHAKE_MAX_RETRANSMIT);
		return 0;
	}
	if (coap_session_get_type(s) == COAP_SESSION_TYPE_SERVER) {
		count_dn_handshake(io, s, ev);
		switch (ev) {
		case COAP_EVENT_DTLS_CONNECTED: {
			struct io_dn *d = coap_session_get_app_data(s);
			if (d)
				dn_announce(io, d);
			break;
		}
		case COAP_EVENT_SERVER_SESSION_DEL:
			dn_detach(io, s);
			break;
		default:
			break;
		}
		return 0;
	}
	struct io_up *iu = coap_session_get_app_data(s);
	if (!iu)
		return 0;
	if (!iu->connected && (ev == COAP_EVENT_DTLS_ERROR || ev == COAP_EVENT_DTLS_CLOSED ||
			       ev == COAP_EVENT_TCP_FAILED || ev == COAP_EVENT_SESSION_FAILED))
		metrics_add(IO_MX(io, hs_failures), (const char *[]){ METRICS_UP,
			    ev == COAP_EVENT_DTLS_ERROR ? "dtls_error" : "closed" }, 1);
	enum core_up_event cev;
	switch (ev) {
	/*
	 * Connection is not taken from DTLS_CONNECTED/SESSION_CONNECTED:
	 * 4.3.1 raises SESSION_CONNECTED before it clears the session's
	 * "first request" flag, and any send then (through
	 * coap_session_max_pdu_size) runs a nested coap_io_process for up to
	 * 5 s, stalling the whole gateway. check_connecting() picks the
	 * session up once coap_io_process has returned.
	 */
	case COAP_EVENT_DTLS_CLOSED:
	case COAP_EVENT_TCP_CLOSED:
	case COAP_EVENT_SESSION_CLOSED:
		cev = CORE_UP_CLOSED;
		break;
	case COAP_EVENT_DTLS_ERROR:
	case COAP_EVENT_TCP_FAILED:
	case COAP_EVENT_SESSION_FAILED:
		cev = CORE_UP_FAILED;
		break;
	default:
		return 0;
	}
	core_on_up_event(io->core, iu->up_id, cev, io_now(), &io->acts);
	run_actions(io);
	return 0;
}

/* ---- loop integration --------------------------------------------------------------- */

/*
 * libcoap 4.3.1 (GnuTLS) does not raise COAP_EVENT_DTLS_CONNECTED when a
 * client handshake completes inside coap_dtls_receive(): it only marks the
 * session established. So the sessions still connecting are checked after
 * every pass; there are only ever a few.
 */
static void check_connecting(struct io *io)
{
	struct io_up **p = &io->connecting;

	while (*p) {
		struct io_up *u = *p;
		if (!u->connected && u->session &&
		    coap_session_get_state(u->session) != COAP_SESSION_STATE_ESTABLISHED) {
			p = &u->next_connecting;
			continue;
		}
		/* Established, or closed meanwhile: off the list either way. */
		*p = u->next_connecting;
		u->on_connecting = false;
		if (!u->connected && u->session) {
			u->connected = true;
			core_on_up_event(io->core, u->up_id, CORE_UP_CONNECTED,
					 io_now(), &io->acts);
		}
	}
}

/* libcoap calls made outside its own callbacks need one more pass of
 * coap_io_process to arm its timers (LIBRARY-NOTES.md). Only then: a
 * zero-delay timer re-armed on every pass never leaves libuv's timer
 * phase, and signals would never be seen. */
static void kick_if_needed(struct io *io)
{
	if (io->need_kick && !io->stopping) {
		io->need_kick = false;
		uv_timer_start(&io->kick, on_kick, 0, 0);
	}
}

static void process(struct io *io)
{
	io->in_coap = true;
	if (io->srv)
		coap_io_process(io->srv, COAP_IO_NO_WAIT);
	if (io->cli)
		coap_io_process(io->cli, COAP_IO_NO_WAIT);
	io->in_coap = false;
	flush_releases(io);
	check_connecting(io);
	run_actions(io);
	kick_if_needed(io);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	process(h->data);
}

static void on_kick(uv_timer_t *t)
{
	struct io *io = t->data;

	io->need_kick = false;
	process(io);
}

static void on_timer(uv_timer_t *t)
{
	struct io *io = t->data;

	core_on_expiry(io->core, io_now(), &io->acts);
	run_actions(io);
	kick_if_needed(io);
}

static void arm_timer(struct io *io)
{
	dg_time_ms next = core_next_expiry(io->core), now = io_now();

	if (io->stopping)
		return;
	if (next == UINT64_MAX) {
		uv_timer_stop(&io->timer);
		return;
	}
	/* At least 1 ms: a due deadline must not spin libuv's timer phase. */
	uv_timer_start(&io->timer, on_timer, next > now ? next - now : 1, 0);
}

/* ---- start and stop ---------------------------------------------------------------------- */

/* a and b are the same local address and port. */
static bool same_sockaddr(const struct sockaddr_storage *a, const coap_address_t *b)
{
	if (a->ss_family != b->addr.sa.sa_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)(const void *)a;
		return x->sin_port == b->addr.sin.sin_port &&
		       x->sin_addr.s_addr == b->addr.sin.sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)(const void *)a;
		return x->sin6_port == b->addr.sin6.sin6_port &&
		       memcmp(&x->sin6_addr, &b->addr.sin6.sin6_addr,
			      sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

/* Sets the receive buffer of one socket and says what the kernel granted. */
static void set_rcvbuf(int fd, const struct gw_listen *l, int want)
{
	int got = 0;
	socklen_t len = sizeof(got);

	/* SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)))
		dg_warn(LOG_IO, "listener %s port %u: SO_RCVBUF %d: %s",
			l->address, l->port, want, strerror(errno));
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len))
		return;
	/* Linux reports twice the size asked for (bookkeeping overhead). */
	if (got / 2 < want)
		dg_warn(LOG_IO, "listener %s port %u: receive buffer %d bytes, "
			"not %d (net.core.rmem_max limits it; datagrams may be "
			"dropped in a reconnect storm)", l->address, l->port,
			got / 2, want);
	else
		dg_debug(LOG_IO, "listener %s port %u: receive buffer %d bytes",
			 l->address, l->port, got / 2);
}

/*
 * Sizes the receive buffer of a DTLS/UDP listener: a reconnect storm
 * arrives as one burst. libcoap 4.3.1 has no call that returns an
 * endpoint's socket, so it is found among the process's descriptors by its
 * type and local address (once per listener, at start).
 */
static void listener_rcvbuf(struct io *io, const struct gw_listen *l,
			    const coap_address_t *addr)
{
	int want = (int)io->cfg->udp_rcvbuf, found = 0;
	DIR *d;
	struct dirent *e;

	if (!want || gw_transport_reliable(l->transport))
		return;
	d = opendir("/proc/self/fd");
	if (!d) {
		dg_warn(LOG_IO, "listener %s port %u: cannot size its receive "
			"buffer (/proc/self/fd: %s)", l->address, l->port,
			strerror(errno));
		return;
	}
	while ((e = readdir(d))) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int type = 0, fd;
		socklen_t tlen = sizeof(type);
		char *end;
		long v = strtol(e->d_name, &end, 10);

		if (end == e->d_name || *end || v < 0 || v > INT32_MAX ||
		    (int)v == dirfd(d))
			continue;
		fd = (int)v;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) ||
		    type != SOCK_DGRAM ||
		    getsockname(fd, (struct sockaddr *)&ss, &len) ||
		    !same_sockaddr(&ss, addr))
			continue;
		set_rcvbuf(fd, l, want);
		found++;
	}
	closedir(d);
	if (!found)
		dg_warn(LOG_IO, "listener %s port %u: socket not found, receive "
			"buffer left at the kernel's default", l->address, l->port);
}

static int add_listener(struct io *io, const struct gw_listen *l,
			coap_endpoint_t **ep)
{
	coap_address_t addr;
	coap_proto_t proto;

	if (resolve(l->address, l->port, l->transport, &addr))
		return DG_EINVAL;
	switch (l->transport) {
	case GW_TR_DTLS: proto = COAP_PROTO_DTLS; break;
	case GW_TR_TLS: proto = COAP_PROTO_TLS; break;
	case GW_TR_TCP: proto = COAP_PROTO_TCP; break;
	default: proto = COAP_PROTO_UDP; break;
	}
	if (!(*ep = coap_new_endpoint(io->srv, &addr, proto))) {
		dg_err(LOG_IO, "cannot listen on %s port %u (%s)", l->address,
		       l->port, gw_transport_name(l->transport));
		return DG_EIO;
	}
	listener_rcvbuf(io, l, &addr);
	dg_info(LOG_IO, "listening on %s port %u (%s)", l->address, l->port,
		gw_transport_name(l->transport));
	return 0;
}

/* The PSK of each configured client, in cfg->clients order (pointing into
 * cfg, which libcoap copies per session). */
static coap_bin_const_t *client_keys_build(const struct gw_config *cfg)
{
	coap_bin_const_t *keys = calloc(cfg->nclients ? cfg->nclients : 1,
					sizeof(*keys));

	for (size_t i = 0; keys && i < cfg->nclients; i++) {
		keys[i].s = cfg->clients[i].psk_key;
		keys[i].length = cfg->clients[i].psk_key_len;
	}
	return keys;
}

/* libcoap keeps the pointers given here (hint, certificate paths) and
 * uses them at each new handshake: called again with each configuration
 * a reload installs, before the old one is freed. */
static int setup_server_credentials(struct io *io)
{
	const struct gw_config *cfg = io->cfg;
	bool any_psk = false;

	for (size_t i = 0; i < cfg->nclients; i++)
		any_psk |= cfg->clients[i].psk_identity != NULL;
	if (any_psk) {
		coap_dtls_spsk_t spsk;
		memset(&spsk, 0, sizeof(spsk));
		spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
		spsk.validate_id_call_back = psk_lookup;
		spsk.id_call_back_arg = io;
		if (cfg->server_cred.psk_identity) {
			spsk.psk_info.hint.s = (const uint8_t *)cfg->server_cred.psk_identity;
			spsk.psk_info.hint.length = strlen(cfg->server_cred.psk_identity);
		}
		if (!coap_context_set_psk2(io->srv, &spsk)) {
			dg_err(LOG_IO, "cannot set up server PSK");
			return DG_EIO;
		}
	}
	if (cfg->server_cred.cert && cfg->server_cred.key) {
		coap_dtls_pki_t pki;
		memset(&pki, 0, sizeof(pki));
		pki.version = COAP_DTLS_PKI_SETUP_VERSION;
		pki.verify_peer_cert = 1;
		pki.check_common_ca = cfg->server_cred.ca != NULL;
		pki.cert_chain_validation = 1;
		pki.cert_chain_verify_depth = 3;
		pki.validate_cn_call_back = cert_check;
		pki.cn_call_back_arg = io;
		pki.pki_key.key_type = COAP_PKI_KEY_PEM;
		pki.pki_key.key.pem.ca_file = cfg->server_cred.ca;
		pki.pki_key.key.pem.public_cert = cfg->server_cred.cert;
		pki.pki_key.key.pem.private_key = cfg->server_cred.key;
		if (!coap_context_set_pki(io->srv, &pki)) {
			dg_err(LOG_IO, "cannot set up server certificate %s",
			       cfg->server_cred.cert);
			return DG_EIO;
		}
	}
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct io *io = h->data;

	io->open_handles--;
}

static coap_resource_t *catch_all(coap_method_handler_t h, bool all_methods)
{
	coap_resource_t *r = coap_resource_unknown_init2(h, 0);

	if (!r)
		return NULL;
	if (all_methods) {
		coap_register_request_handler(r, COAP_REQUEST_GET, h);
		coap_register_request_handler(r, COAP_REQUEST_DELETE, h);
		coap_register_request_handler(r, COAP_REQUEST_POST, h);
	}
	return r;
}

int io_start(uv_loop_t *loop, const struct gw_config *cfg, struct io **out)
{
	struct io *io = calloc(1, sizeof(*io));
	uint64_t seed = 0;
	int rc = DG_EIO;

	if (!io)
		return DG_ENOMEM;
	io->loop = loop;
	io->cfg = cfg;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = uv_hrtime();
	io->core = core_new(cfg, seed);
	/* Until the state store (issue 3) keeps the gateway's mid counter,
	 * seconds since 2020-09-13 keep its mids growing across restarts. */
	if (io->core)
		core_set_own_mid_base(io->core, (uint32_t)(time(NULL) - 1600000000));
	io->srv = coap_new_context(NULL);
	io->cli = coap_new_context(NULL);
	if (!io->core || !io->srv || !io->cli) {
		rc = DG_ENOMEM;
		goto fail;
	}
	coap_set_app_data(io->srv, io);
	coap_set_app_data(io->cli, io);
	coap_register_response_handler(io->srv, on_response);
	coap_register_response_handler(io->cli, on_response);
	coap_register_nack_handler(io->srv, on_nack);
	coap_register_nack_handler(io->cli, on_nack);
	coap_register_event_handler(io->srv, on_event);
	coap_register_event_handler(io->cli, on_event);
	coap_resource_t *r = catch_all(on_dn_request, true);
	if (!r)
		goto fail;
	coap_add_resource(io->srv, r);
	r = catch_all(on_up_request, false);
	if (!r)
		goto fail;
	coap_add_resource(io->cli, r);
	if (!(io->client_keys = client_keys_build(cfg)) ||
	    !(io->endpoints = calloc(cfg->nlisten ? cfg->nlisten : 1,
				     sizeof(*io->endpoints)))) {
		rc = DG_ENOMEM;
		goto fail;
	}
	if ((rc = setup_server_credentials(io)))
		goto fail;
	if (cfg->insecure_lab)
		dg_warn(LOG_IO, "insecure-lab is on: plain CoAP accepted and sent "
			"unauthenticated; plain sessions act as client '%s'. Never in production.",
			cfg->nclients ? cfg->clients[0].name : "-");
	for (size_t i = 0; i < cfg->nlisten; i++)
		if ((rc = add_listener(io, &cfg->listen[i], &io->endpoints[i])))
			goto fail;

	uv_poll_init(loop, &io->srv_poll, coap_context_get_coap_fd(io->srv));
	uv_poll_init(loop, &io->cli_poll, coap_context_get_coap_fd(io->cli));
	uv_timer_init(loop, &io->timer);
	uv_timer_init(loop, &io->kick);
	io->srv_poll.data = io->cli_poll.data = io->timer.data = io->kick.data = io;
	io->open_handles = 4;
	uv_poll_start(&io->srv_poll, UV_READABLE, on_poll);
	uv_poll_start(&io->cli_poll, UV_READABLE, on_poll);
	arm_timer(io);
	*out = io;
	return 0;
fail:
	io_free(io);
	return rc;
}

static void collect(struct metrics *reg, void *arg)
{
	struct io *io = arg;

	(void)reg;
	core_collect_metrics(io->core, io->metrics);
}

int io_set_metrics(struct io *io, struct metrics_dots *m)
{
	io->metrics = m;
	core_set_metrics(io->core, m);
	return metrics_add_collector(m->reg, collect, io);
}

/* ---- the gateway's own requests ----------------------------------------------------------- */

/* The gateway's cuid toward u, derived from the credential it presents
 * there as RFC 9132 §4.4.1.2 asks: the certificate's SPKI, or the PSK
 * identity. */
static int own_cuid(const struct gw_upstream *u, char out[IDENT_LEN + 1])
{
	gnutls_datum_t pem = { NULL, 0 }, der = { NULL, 0 };
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	int rc;

	if (u->cred.psk_identity)
		return ident_derive((const uint8_t *)u->cred.psk_identity,
				    strlen(u->cred.psk_identity), out);
	if (!u->cred.cert)
		/* Plain CoAP (lab mode): no credential; the name stands in. */
		return ident_derive((const uint8_t *)u->name, strlen(u->name), out);
	if (gnutls_load_file(u->cred.cert, &pem) < 0)
		return DG_EIO;
	rc = gnutls_pem_base64_decode2("CERTIFICATE", &pem, &der) < 0 ? DG_EINVAL :
	     ident_spki_from_cert(der.data, der.size, &spki, &spki_len);
	if (rc == 0)
		rc = ident_derive(spki, spki_len, out);
	free(spki);
	gnutls_free(der.data);
	gnutls_free(pem.data);
	return rc;
}

/*
 * The upstream an operator request is for (NULL: the only one) and the
 * gateway's cuid toward it. Returns 0, or the CoAP-style code with d set.
 */
static int own_target(const struct io *io, const char *name,
		      const struct gw_upstream **u, char cuid[IDENT_LEN + 1],
		      struct dg_diag *d)
{
	if (name)
		*u = config_upstream_by_name(io->cfg, name);
	else
		*u = io->cfg->nupstreams == 1 ? &io->cfg->upstreams[0] : NULL;
	if (!*u) {
		if (name)
			dg_diag_set(d, "no upstream named \"%s\"", name);
		else
			dg_diag_set(d, "several upstreams: name one");
		return DG_CODE_NOT_FOUND;
	}
	if (own_cuid(*u, cuid)) {
		dg_diag_set(d, "cannot derive the gateway's cuid from %s",
			    (*u)->cred.cert ? (*u)->cred.cert : (*u)->name);
		return DG_CODE_UNAVAILABLE;
	}
	return 0;
}

int io_own_request(struct io *io, const char *upstream, const json_t *body,
		   uint32_t *mid, char *cuid_out, const char **upstream_used,
		   struct dg_diag *d)
{
	const struct gw_upstream *u;
	char cuid[IDENT_LEN + 1];
	int code = own_target(io, upstream, &u, cuid, d);

	if (code)
		return code;
	code = core_own_request(io->core, u->name, cuid, body, mid, io_now(),
				&io->acts, d);
	run_actions(io);
	kick_if_needed(io);
	if (code == 0 && cuid_out)
		memcpy(cuid_out, cuid, sizeof(cuid));
	if (code == 0 && upstream_used)
		*upstream_used = u->name;
	return code;
}

int io_own_withdraw(struct io *io, const char *upstream, uint32_t mid,
		    struct dg_diag *d)
{
	const struct gw_upstream *u;
	char cuid[IDENT_LEN + 1];
	int code = own_target(io, upstream, &u, cuid, d);

	if (code)
		return code;
	code = core_own_withdraw(io->core, u->name, cuid, mid, io_now(), &io->acts, d);
	run_actions(io);
	kick_if_needed(io);
	return code;
}

/* ---- drain ----------------------------------------------------------------------------- */

int io_drain(struct io *io, bool on, size_t *notified)
{
	int rc = core_drain(io->core, on, io_now(), &io->acts, notified);

	run_actions(io);
	kick_if_needed(io);
	return rc;
}

/* ---- reload ------------------------------------------------------------------------------ */

static bool listen_same(const struct gw_listen *a, const struct gw_listen *b)
{
	return a->transport == b->transport && a->port == b->port &&
	       strcmp(a->address, b->address) == 0;
}

static const struct gw_listen *listen_find(const struct gw_config *cfg,
					   const struct gw_listen *l)
{
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (listen_same(&cfg->listen[i], l))
			return &cfg->listen[i];
	return NULL;
}

int io_reload(struct io *io, const struct gw_config *ncfg)
{
	const struct gw_config *old = io->cfg;
	coap_bin_const_t *keys = NULL;
	coap_endpoint_t **eps = NULL;
	const struct gw_client **map = NULL;
	struct core_reload_stats st;
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;
	size_t opened = 0;
	int rc = DG_ENOMEM;

	if (io->stopping)
		return DG_EINVAL;
	/* Closing a listener would free libcoap sessions that still hold
	 * references (asyncs): refused rather than risked. */
	for (size_t i = 0; i < old->nlisten; i++) {
		if (!listen_find(ncfg, &old->listen[i])) {
			dg_err(LOG_IO, "reload refused: listener %s port %u (%s) removed; "
			       "removing a listener needs a restart",
			       old->listen[i].address, old->listen[i].port,
			       gw_transport_name(old->listen[i].transport));
			return DG_EINVAL;
		}
	}
	if (!(keys = client_keys_build(ncfg)) ||
	    !(eps = calloc(ncfg->nlisten ? ncfg->nlisten : 1, sizeof(*eps))) ||
	    !(map = calloc(old->nclients ? old->nclients : 1, sizeof(*map))))
		goto fail;
	for (size_t i = 0; i < ncfg->nlisten; i++) {
		for (size_t j = 0; j < old->nlisten; j++)
			if (listen_same(&old->listen[j], &ncfg->listen[i]))
				eps[i] = io->endpoints[j];
		if (eps[i])
			continue;
		if ((rc = add_listener(io, &ncfg->listen[i], &eps[i])))
			goto fail;
		opened++;
	}
	rc = core_reconfigure(io->core, ncfg, map, io_now(), &io->acts, &st);
	if (rc)
		goto fail;
	/* From here on nothing fails: io follows the core to ncfg. */
	io->cfg = ncfg;
	free(io->client_keys);
	io->client_keys = keys;
	free(io->endpoints);
	io->endpoints = eps;
	if (setup_server_credentials(io))
		dg_err(LOG_IO, "reload: server credentials could not be set up again");
	while ((n = hmap_iter_next(&io->dn, &it))) {
		struct io_dn *d = hmap_entry(n, struct io_dn, node);
		if (d->client)
			d->client = map[d->client - old->clients];
	}
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&io->up, &it))) {
		struct io_up *iu = hmap_entry(n, struct io_up, node);
		if (iu->cfg)
			iu->cfg = config_upstream_by_name(ncfg, iu->cfg->name);
	}
	free(map);
	dg_info(LOG_IO, "reload: clients=%zu (added=%zu removed=%zu re-authenticating=%zu "
		"re-homed=%zu) upstreams=%zu listeners=%zu (opened=%zu)",
		ncfg->nclients, st.clients_added, st.clients_removed,
		st.clients_reauth, st.clients_rehomed, ncfg->nupstreams,
		ncfg->nlisten, opened);
	run_actions(io);
	kick_if_needed(io);
	return 0;
fail:
	for (size_t i = 0; eps && i < ncfg->nlisten; i++) {
		bool mine = eps[i] != NULL;
		for (size_t j = 0; mine && j < old->nlisten; j++)
			mine = eps[i] != io->endpoints[j];
		if (mine)
			coap_free_endpoint(eps[i]);
	}
	free(keys);
	free(eps);
	free(map);
	return rc;
}

void io_stop(struct io *io)
{
	if (io->stopping)
		return;
	core_shutdown(io->core, &io->acts);
	run_actions(io);
	flush_releases(io);
	io->stopping = true;
	uv_close((uv_handle_t *)&io->srv_poll, on_handle_closed);
	uv_close((uv_handle_t *)&io->cli_poll, on_handle_closed);
	uv_close((uv_handle_t *)&io->timer, on_handle_closed);
	uv_close((uv_handle_t *)&io->kick, on_handle_closed);
}

void io_free(struct io *io)
{
	struct hmap_iter it = { 0, NULL };
	struct hmap_node *n;

	if (!io)
		return;
	/* Pending asyncs and upstream sessions first, then the contexts
	 * (with their handlers detached), as LIBRARY-NOTES.md asks. */
	while ((n = hmap_iter_next(&io->pending, &it))) {
		struct io_pending *p = hmap_entry(n, struct io_pending, node);
		coap_free_async(p->session, p->async);
		free(p);
	}
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&io->up, &it))) {
		struct io_up *u = hmap_entry(n, struct io_up, node);
		if (u->session) {
			coap_session_set_app_data(u->session, NULL);
			coap_session_release(u->session);
		}
		free(u);
	}
	flush_releases(io);
	if (io->srv)
		coap_register_event_handler(io->srv, NULL);
	if (io->cli)
		coap_register_event_handler(io->cli, NULL);
	it = (struct hmap_iter){ 0, NULL };
	while ((n = hmap_iter_next(&io->dn, &it))) {
		struct io_dn *d = hmap_entry(n, struct io_dn, node);
		coap_session_set_app_data(d->session, NULL);
		free(d);
	}
	if (io->srv)
		coap_free_context(io->srv);
	if (io->cli)
		coap_free_context(io->cli);
	core_free(io->core);
	core_actions_free(&io->acts);
	hmap_free(&io->pending);
	hmap_free(&io->up);
	hmap_free(&io->dn);
	free(io->releases);
	free(io->client_keys);
	free(io->endpoints);
	free(io);
}

/* ---- introspection ---------------------------------------------------------------------------- */

struct core *io_core(struct io *io)
{
	return io->core;
}

static void tls_desc(coap_session_t *s, char *buf, size_t len)
{
	coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
	void *tls;

	buf[0] = '\0';
	if (!s || coap_session_get_state(s) != COAP_SESSION_STATE_ESTABLISHED)
		return;
	tls = coap_session_get_tls(s, &lib);
#if ENABLE_COAP_GNUTLS
	if (tls && lib == COAP_TLS_LIBRARY_GNUTLS) {
		char *d = gnutls_session_get_desc((gnutls_session_t)tls);
		if (d) {
			snprintf(buf, len, "%s", d);
			gnutls_free(d);
		}
	}
#else
	(void)tls;
#endif
}

void io_dn_tls_desc(struct io *io, uint64_t dn_sid, char *buf, size_t len)
{
	struct io_dn *d = dn_by_sid(io, dn_sid);

	tls_desc(d ? d->session : NULL, buf, len);
}

void io_up_tls_desc(struct io *io, uint64_t up_id, char *buf, size_t len)
{
	struct io_up *u = up_by_id(io, up_id);

	tls_desc(u && u->connected ? u->session : NULL, buf, len);
}

int io_upstream_retarget(struct io *io, const char *upstream,
			 const struct core_target *t, size_t n)
{
	size_t rehomed = 0;
	int rc = core_upstream_retarget(io->core, upstream, t, n, io_now(), &io->acts,
					&rehomed);

	if (rehomed)
		dg_info(LOG_IO, "upstream=%s %zu client(s) re-homed to the discovered server",
			upstream, rehomed);
	run_actions(io);
	kick_if_needed(io);
	return rc;
}
