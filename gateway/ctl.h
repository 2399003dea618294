/*
 * ctl.h: the control protocol of dotsgw (dotsctl <-> the daemon), sans I/O.
 *
 * gateway/io_ctl.c owns the Unix socket and hands each request line to
 * ctl_handle(), which answers from the core's read-only introspection
 * (core_foreach_*), the configuration and the callbacks in struct ctl_env.
 * ctl never touches a socket or a clock: the times come in the env.
 *
 * Protocol: one JSON object per line each way, UTF-8, at most
 * CTL_REQUEST_MAX bytes per request (newline excluded). A request names
 * its command in "cmd"; other members are the command's arguments, and an
 * unknown member is an error. Every answer is one object with "ok":
 *
 *   {"cmd":"status"}                          counts, version, uptime
 *   {"cmd":"sessions"[,"side":"downstream"|"upstream"]}
 *   {"cmd":"mitigations"[,"client":NAME]}
 *   {"cmd":"mitigation","client":NAME,"mid":N[,"cuid":CUID]}
 *   {"cmd":"log-level","level":"err"|"warn"|"info"|"debug"}
 *   {"cmd":"reload"}
 *   {"cmd":"request"|"withdraw"|"drain",...}  not implemented yet
 *
 *   -> {"ok":true,...}  or  {"ok":false,"error":"why"}
 *
 * Commands not implemented yet answer exactly CTL_ERR_NOT_IMPLEMENTED as
 * their error, which dotsctl maps to its own exit status. Answers list
 * objects in a stable order (sessions by side then id, mitigations by
 * client, cuid, mid) so that two calls can be compared.
 */
#ifndef DG_CTL_H
#define DG_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../common/dg.h"

struct core;
struct gw_config;

#define CTL_REQUEST_MAX 4096
#define CTL_ERR_NOT_IMPLEMENTED "not implemented yet"

struct ctl_env {
	const struct core *core;
	const struct gw_config *cfg;
	const char *version;
	dg_time_ms now;      /* monotonic, the clock the core is given */
	dg_time_ms started;  /* monotonic time the gateway started */
	int64_t wall_now;    /* Unix time (s), to print "established" times */
	/* Optional: a session's (D)TLS description (io_*_tls_desc). */
	void (*dn_tls)(void *arg, uint64_t dn_sid, char *buf, size_t len);
	void (*up_tls)(void *arg, uint64_t up_id, char *buf, size_t len);
	/* Optional: applies a log level everywhere (libcoap too); when NULL
	 * ctl calls dg_log_set_level() itself. */
	void (*set_log_level)(void *arg, enum dg_log_level level);
	/* Optional: reloads the configuration. Returns 0, or a negative
	 * DG_E* code with err (errlen > 0) saying why. It may replace the
	 * core and the configuration: ctl touches neither after calling it. */
	int (*reload)(void *arg, char *err, size_t errlen);
	/* Optional: an operator's mitigation request sent upstream as the
	 * gateway's own (io_own_request): 0 with *mid, cuid (IDENT_LEN + 1
	 * bytes) and *upstream_used set, else a CoAP-style code with err. */
	int (*own_request)(void *arg, const char *upstream, const json_t *body,
			   uint32_t *mid, char *cuid, const char **upstream_used,
			   char *err, size_t errlen);
	int (*own_withdraw)(void *arg, const char *upstream, uint32_t mid,
			    char *err, size_t errlen);
	/* Optional: drain on/off (io_drain): 0 or a negative DG_E* code. */
	int (*drain)(void *arg, bool on, size_t *notified);
	void *arg;
};

/*
 * Answers the request req[0..len) (one line without its newline; it need
 * not be NUL-terminated, and may be anything at all). Returns the answer
 * as a malloc'd, NUL-terminated line ending in '\n', its length (newline
 * included) in *out_len; NULL only when out of memory.
 */
char *ctl_handle(const struct ctl_env *env, const char *req, size_t len,
		 size_t *out_len);

/* The answer to a request longer than CTL_REQUEST_MAX, for io_ctl, which
 * cannot hand it over whole. Same ownership as ctl_handle(). */
char *ctl_error_line(const char *error, size_t *out_len);

#endif
