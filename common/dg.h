/*
 * dg.h: conventions shared by every dotsgw module.
 *
 * GLOSSARY (used in every file; never nghttpx's inverted meaning)
 *   downstream  the side facing DOTS clients; dotsgw is their DOTS server.
 *   upstream    the side facing DOTS servers; dotsgw is their DOTS client.
 *   dn_*, up_*  prefixes for objects that live on one side.
 *   client      a configured downstream DOTS client (identity + policy).
 *   peer        whatever is at the other end of one (D)TLS session.
 *
 * Errors: functions return 0 or a negative DG_E* code. A function that
 * fails changes nothing its caller can observe. dg_strerror() names the
 * code for logs.
 *
 * Logging: common/ never writes to stderr; it calls dg_log(), which goes
 * through the hook the daemon installs with dg_log_set_hook(). Levels:
 *   DG_LOG_ERR    the gateway cannot do something it was asked to do
 *                 (a listener failed, an upstream is unreachable).
 *   DG_LOG_WARN   a peer or the configuration did something wrong and was
 *                 refused; service continues. Rate-limited per peer.
 *   DG_LOG_INFO   a state change an operator wants to see (session up or
 *                 down, mitigation created or withdrawn). Never per packet.
 *   DG_LOG_DEBUG  per-message detail for troubleshooting.
 */
#ifndef DG_H
#define DG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum {
	DG_OK = 0,
	DG_ENOMEM = -1,   /* allocation failed */
	DG_EINVAL = -2,   /* malformed input */
	DG_ENOENT = -3,   /* no such object */
	DG_EEXIST = -4,   /* object exists already */
	DG_ERANGE = -5,   /* value out of bounds */
	DG_ETOOBIG = -6,  /* input exceeds a size limit */
	DG_EPERM = -7,    /* not allowed by policy */
	DG_EIO = -8,      /* I/O or library failure */
	DG_ECONFLICT = -9 /* conflicts with existing state */
};

const char *dg_strerror(int err);

enum dg_log_level { DG_LOG_ERR = 0, DG_LOG_WARN, DG_LOG_INFO, DG_LOG_DEBUG };

typedef void (*dg_log_hook)(enum dg_log_level level, const char *group,
			    const char *msg, void *arg);

/* Installs the sink for every log line; NULL silences logging. */
void dg_log_set_hook(dg_log_hook hook, void *arg);
/* Lines above this level are dropped before formatting. */
void dg_log_set_level(enum dg_log_level level);
enum dg_log_level dg_log_get_level(void);
/* Parses "err", "warn", "info", "debug". Returns 0 or DG_EINVAL. */
int dg_log_level_parse(const char *s, enum dg_log_level *out);
const char *dg_log_level_name(enum dg_log_level level);

void dg_log(enum dg_log_level level, const char *group, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define dg_err(g, ...) dg_log(DG_LOG_ERR, g, __VA_ARGS__)
#define dg_warn(g, ...) dg_log(DG_LOG_WARN, g, __VA_ARGS__)
#define dg_info(g, ...) dg_log(DG_LOG_INFO, g, __VA_ARGS__)
#define dg_debug(g, ...)                                       \
	do {                                                   \
		if (dg_log_get_level() >= DG_LOG_DEBUG)        \
			dg_log(DG_LOG_DEBUG, g, __VA_ARGS__);  \
	} while (0)

/*
 * A budget for log lines that peers can cause at will (refused handshakes,
 * hostile requests): at most DG_LOG_BURST lines per DG_LOG_WINDOW_MS; the
 * rest are counted, and the next line let through says how many were
 * suppressed. Under attack the log stays readable and cheap.
 */
#define DG_LOG_BURST 10
#define DG_LOG_WINDOW_MS 10000
struct dg_ratelimit {
	uint64_t start;
	unsigned n;
	unsigned long suppressed;
};
void dg_log_limited(struct dg_ratelimit *rl, uint64_t now_ms,
		    enum dg_log_level level, const char *group, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/*
 * A name that a peer or a file chose, made safe to print in a log line or
 * an error: printable ASCII only ('?' otherwise: no line breaks to forge
 * other lines, no terminal escapes), at most DG_ECHO_MAX bytes of it, then
 * "..." when cut. len bounds v (SIZE_MAX: up to its NUL). Returns buf.
 */
#define DG_ECHO_MAX 64
const char *dg_echo(const char *v, size_t len, char buf[DG_ECHO_MAX + 4]);

/* A diagnostic text for the peer (RFC 7252 §5.5.2 diagnostic payload). */
struct dg_diag {
	char text[192];
};
void dg_diag_set(struct dg_diag *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* CoAP response codes as class*100+detail (2.01 -> 201). */
enum {
	DG_CODE_CREATED = 201,
	DG_CODE_DELETED = 202,
	DG_CODE_VALID = 203,
	DG_CODE_CHANGED = 204,
	DG_CODE_CONTENT = 205,
	DG_CODE_BAD_REQUEST = 400,
	DG_CODE_UNAUTHORIZED = 401,
	DG_CODE_BAD_OPTION = 402,
	DG_CODE_FORBIDDEN = 403,
	DG_CODE_NOT_FOUND = 404,
	DG_CODE_METHOD_NOT_ALLOWED = 405,
	DG_CODE_CONFLICT = 409,
	DG_CODE_PRECONDITION_FAILED = 412,
	DG_CODE_TOO_LARGE = 413,
	DG_CODE_UNSUPPORTED_FORMAT = 415,
	DG_CODE_UNPROCESSABLE = 422,
	DG_CODE_INTERNAL = 500,
	DG_CODE_BAD_GATEWAY = 502,
	DG_CODE_UNAVAILABLE = 503,
	DG_CODE_GATEWAY_TIMEOUT = 504,
	DG_CODE_HOP_LIMIT = 508
};

/* RFC 9132 §10.4: Content-Format application/dots+cbor. */
#define DG_CONTENT_FORMAT_DOTS_CBOR 271
/* RFC 8768: Hop-Limit option number and its recommended initial value. */
#define DG_OPTION_HOP_LIMIT 16
#define DG_HOP_LIMIT_DEFAULT 16

/* Monotonic milliseconds; the daemon passes it into common/, which never
 * reads a clock itself. */
typedef uint64_t dg_time_ms;

#endif
