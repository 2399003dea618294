/*
 * io_coap.c: libcoap <-> libuv glue and the translation between CoAP PDUs
 * and core events/actions. See io_coap.h.
 */
#include "io_coap.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <coap3/coap.h>

#include "../common/core.h"
#include "../common/hmap.h"
#include "../common/ident.h"

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
};

struct io_up {
	struct hmap_node node; /* io->up by up_id */
	struct io_up *next_connecting; /* in io->connecting while !connected */
	bool on_connecting;
	uint64_t up_id;
	coap_session_t *session;
	const struct gw_upstream *cfg;
	bool connected;
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
	bool stopping;
	int busy;       /* nesting depth of action execution */
	bool in_coap;   /* inside coap_io_process() */
	bool need_kick; /* libcoap was called from outside its loop */
};

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
		dg_warn(LOG_IO, "PSK identity not configured; handshake refused");
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
		dg_warn(LOG_IO, "certificate '%s' did not verify; handshake refused",
			cn ? cn : "?");
		return 0;
	}
	if (depth > 0)
		return 1; /* a CA of the chain; the leaf decides */
	cl = cn ? config_client_by_cert_name(io->cfg, cn) : NULL;
	if (!cl) {
		dg_warn(LOG_IO, "certificate name '%s' not configured; handshake refused",
			cn ? cn : "?");
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
	if (a->type == CORE_ACT_REPLY) {
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
	const struct gw_upstream *u = arg;

	(void)der;
	(void)len;
	(void)s;
	if (!validated)
		return 0;
	if (depth > 0 || !u->server_name)
		return 1;
	/* RFC 9132 §8 / RFC 6125: the reference identifier must match. */
	if (!cn || strcasecmp(cn, u->server_name) != 0) {
		dg_warn(LOG_IO, "[%s] server certificate name '%s' is not '%s'",
			u->name, cn ? cn : "?", u->server_name);
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
		iu->cfg = u;
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
	iu->connected = false;
	if (resolve(u->address, u->port, u->transport, &addr)) {
		dg_err(LOG_IO, "[%s] cannot resolve %s", u->name, u->address);
		goto failed;
	}
	switch (u->transport) {
	case GW_TR_DTLS: proto = COAP_PROTO_DTLS; break;
	case GW_TR_TLS: proto = COAP_PROTO_TLS; break;
	case GW_TR_TCP: proto = COAP_PROTO_TCP; break;
	default: proto = COAP_PROTO_UDP; break;
	}
	if (!gw_transport_secure(u->transport)) {
		s = coap_new_client_session(io->cli, NULL, &addr, proto);
	} else if (u->cred.psk_identity) {
		coap_dtls_cpsk_t cpsk;
		memset(&cpsk, 0, sizeof(cpsk));
		cpsk.version = COAP_DTLS_CPSK_SETUP_VERSION;
		cpsk.client_sni = u->server_name;
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
		pki.cn_call_back_arg = (void *)u;
		pki.client_sni = u->server_name;
		pki.pki_key.key_type = COAP_PKI_KEY_PEM;
		pki.pki_key.key.pem.ca_file = u->cred.ca;
		pki.pki_key.key.pem.public_cert = u->cred.cert;
		pki.pki_key.key.pem.private_key = u->cred.key;
		s = coap_new_client_session_pki(io->cli, NULL, &addr, proto, &pki);
	}
	if (!s) {
		dg_err(LOG_IO, "[%s] cannot create a session to %s:%u", u->name,
		       u->address, u->port);
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
		dg_debug(LOG_IO, "[%s] send failed", iu->cfg->name);
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
	if (!ok) {
		free(b);
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

static int add_listener(struct io *io, const struct gw_listen *l)
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
	if (!coap_new_endpoint(io->srv, &addr, proto)) {
		dg_err(LOG_IO, "cannot listen on %s port %u (%s)", l->address,
		       l->port, gw_transport_name(l->transport));
		return DG_EIO;
	}
	dg_info(LOG_IO, "listening on %s port %u (%s)", l->address, l->port,
		gw_transport_name(l->transport));
	return 0;
}

static int setup_server_credentials(struct io *io)
{
	const struct gw_config *cfg = io->cfg;
	bool any_psk = false;

	io->client_keys = calloc(cfg->nclients ? cfg->nclients : 1,
				 sizeof(*io->client_keys));
	if (!io->client_keys)
		return DG_ENOMEM;
	for (size_t i = 0; i < cfg->nclients; i++) {
		io->client_keys[i].s = cfg->clients[i].psk_key;
		io->client_keys[i].length = cfg->clients[i].psk_key_len;
		any_psk |= cfg->clients[i].psk_identity != NULL;
	}
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
	if ((rc = setup_server_credentials(io)))
		goto fail;
	if (cfg->insecure_lab)
		dg_warn(LOG_IO, "insecure-lab is on: plain CoAP accepted and sent "
			"unauthenticated; plain sessions act as client '%s'. Never in production.",
			cfg->nclients ? cfg->clients[0].name : "-");
	for (size_t i = 0; i < cfg->nlisten; i++)
		if ((rc = add_listener(io, &cfg->listen[i])))
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
	free(io);
}
