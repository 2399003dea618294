/*
 * io_coap.h: the only place dotsgw touches libcoap, sockets and the clock.
 *
 * Two libcoap contexts share one libuv loop: the server context holds the
 * downstream endpoints (DTLS/TLS, plain only in lab mode) and the client
 * context the upstream sessions. They are separate because a libcoap
 * context keeps one set of PSK/PKI credentials, and a client PKI session
 * would overwrite the server's certificate (LIBRARY-NOTES.md).
 *
 * Every libcoap callback becomes one core_on_*() call; the actions the
 * core returns are carried out at once, except session releases, which
 * wait until coap_io_process() has returned (releasing inside a libcoap
 * callback crashes 4.3.1).
 */
#ifndef DG_IO_COAP_H
#define DG_IO_COAP_H

#include <uv.h>

#include <jansson.h>

#include "config.h"

struct io;

/*
 * Creates both contexts, opens every configured listener and starts
 * watching them on loop. Returns 0, DG_EIO (a listener or credential
 * could not be set up: the reason was logged) or DG_ENOMEM.
 */
int io_start(uv_loop_t *loop, const struct gw_config *cfg, struct io **out);

/*
 * Moves a running gateway to ncfg, which must outlive io (the caller
 * frees the previous configuration once this returned 0). New listeners
 * open; the core follows (core_reconfigure: revoked clients' sessions
 * close, changed upstreams re-home their mitigations); new handshakes use
 * ncfg's credentials; established sessions stay. Returns 0, or DG_EINVAL
 * (a listener was removed: needs a restart; logged), DG_EIO (a new
 * listener could not open; logged) or DG_ENOMEM, with nothing changed.
 */
int io_reload(struct io *io, const struct gw_config *ncfg);

/*
 * An operator's mitigation request sent upstream as the gateway's own
 * (core_own_request), to upstream (NULL: the only one) with the gateway's
 * cuid for it (written to cuid_out, IDENT_LEN + 1 bytes, if not NULL).
 * Returns 0 with *mid set, or a CoAP-style code with d saying why.
 */
int io_own_request(struct io *io, const char *upstream, const json_t *body,
		   uint32_t *mid, char *cuid_out, const char **upstream_used,
		   struct dg_diag *d);
int io_own_withdraw(struct io *io, const char *upstream, uint32_t mid,
		    struct dg_diag *d);

/* Drain on or off (core_drain): clients are redirected to the configured
 * alternate. Returns 0 or DG_EINVAL (no alternate configured). */
int io_drain(struct io *io, bool on, size_t *notified);

/* Closes every session and handle; the loop then runs until empty, after
 * which io_free() releases the rest. */
/* Counts into m from now on and registers the collector of its gauges
 * (m->reg must hold m's families; m must outlive io). Returns 0 or what
 * metrics_add_collector() returns. */
struct metrics_dots;
int io_set_metrics(struct io *io, struct metrics_dots *m);

void io_stop(struct io *io);
void io_free(struct io *io);

/* ---- introspection for the control socket (gateway/io_ctl.c) ------------ */

struct core;

/* The core io drives, for read-only introspection between events. */
struct core *io_core(struct io *io);

/*
 * Writes into buf (len > 0) a description of the (D)TLS parameters of a
 * downstream or upstream session as the TLS library names them, e.g.
 * "(DTLS1.2)-(ECDHE-PSK-SECP256R1)-(AES-128-GCM)" with GnuTLS; "" when the
 * session is plain, not (yet) established, unknown, or the library
 * (OpenSSL flavour) is not asked.
 */
void io_dn_tls_desc(struct io *io, uint64_t dn_sid, char *buf, size_t len);
void io_up_tls_desc(struct io *io, uint64_t up_id, char *buf, size_t len);

/* A discovered upstream's ordered candidates (gateway/io_disc.c), handed
 * to the core (core_upstream_retarget); its actions are carried out. */
struct core_target;
int io_upstream_retarget(struct io *io, const char *upstream,
			 const struct core_target *t, size_t n);

#endif
