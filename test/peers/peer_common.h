/*
 * peer_common.h: code shared by the DOTS test peers (dots-test-server,
 * dots-test-client).
 *
 * The peers are test tools, not part of dotsgw: they drive the gateway
 * from integration tests and the demo. Their contract with the tests is
 * their stdout: one JSON object per line, flushed after every line.
 * Everything else (libcoap's log, our diagnostics) goes to stderr.
 * stdout is blocking on purpose (no line is ever dropped): whoever starts
 * a peer must keep reading its stdout (or send it to a file), or the peer
 * stalls once the pipe is full and stops answering.
 *
 * Both peers run one single-threaded loop: peer_wait() sleeps in poll()
 * on libcoap's epoll fd (readable for socket I/O and for libcoap's own
 * timers) and optionally on stdin, then the caller runs
 * coap_io_process(ctx, COAP_IO_NO_WAIT) and its own timers.
 */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>
#include <jansson.h>

/* Set by SIGINT/SIGTERM; every loop of the peers checks it. */
extern volatile sig_atomic_t peer_stop;

/* Longest host name or address we accept on the command line. */
#define PEER_HOST_MAX 256
/* Longest credential string (PSK identity, key) we accept. */
#define PEER_CRED_MAX 256

/* Credentials from the command line (pointers into argv). */
struct peer_creds {
	const char *psk_id;  /* PSK identity (both peers) */
	const char *psk_key; /* PSK, used as raw bytes like coap-client -k */
	const char *cert;    /* PEM certificate file */
	const char *key;     /* PEM private key file */
	const char *ca;      /* PEM CA file: the only trust anchor */
};

/* Installs the SIGINT/SIGTERM handlers (setting peer_stop), ignores
 * SIGPIPE, routes libcoap's log to stderr at `coap_level` (LOG_* from
 * syslog.h) and remembers `name` (may be NULL), which peer_emit() adds
 * to every line as "server". Call once, before coap_new_context(). */
void peer_init(const char *name, int coap_level);

/* Undoes peer_init() (coap_cleanup()). */
void peer_fini(void);

/* An extra sink for libcoap's log lines, called before they are printed
 * (the server uses it to see RSTs, which libcoap 4.3.1 reports nowhere
 * else for NON messages). NULL removes it. */
void peer_set_coap_log_hook(void (*hook)(int level, const char *msg));

/* Our own diagnostics: stderr, prefixed by the program name. */
void peer_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints `obj` as one compact JSON line on stdout and flushes. Steals the
 * reference. A NULL obj (an allocation failed while building it) prints
 * nothing. */
void peer_emit(json_t *obj);

/* Monotonic milliseconds. */
uint64_t peer_now_ms(void);

/* "dtls", "tls" (RFC 9132 §4.3) and the plain "udp", "tcp" (handy with
 * a packet capture) -> COAP_PROTO_*. Returns 0 or -1. */
int peer_parse_transport(const char *s, coap_proto_t *out);

/* True for the transports that carry (D)TLS. */
bool peer_proto_secure(coap_proto_t proto);

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port. The port must be
 * 0..65535 (0 only when allow_zero). Returns 0 or -1. */
int peer_split_hostport(const char *s, char *host, size_t host_size,
			uint16_t *port, bool allow_zero);

/* Resolves host:port (numeric addresses and names) into a coap address;
 * `passive` for a listening address. Returns 0 or -1. */
int peer_resolve(const char *host, uint16_t port, bool passive,
		 coap_proto_t proto, coap_address_t *out);

/* True when the string is a numeric IPv4 or IPv6 address. */
bool peer_is_ip_literal(const char *host);

/* Checks the credential options against the transport: PSK or X.509
 * (cert+key+ca) for dtls/tls, nothing for udp/tcp. Returns 0 or -1 after
 * logging why. */
int peer_check_creds(const struct peer_creds *c, coap_proto_t proto);

/* "2.05" from a CoAP code; buf must hold 8 bytes. */
const char *peer_code_str(coap_pdu_code_t code, char *buf);

/* Parses "2.05" or "205" into a CoAP code (class 2..5). Returns 0 or -1. */
int peer_parse_code(const char *s, coap_pdu_code_t *out);

/* Bytes from the wire as a JSON string: as is when they are valid UTF-8,
 * else with every byte outside printable ASCII written as \xNN. NULL on
 * ENOMEM. */
json_t *peer_safe_string(const uint8_t *buf, size_t len);

/* Lower-case hex of a buffer as a new JSON string (NULL on ENOMEM). */
json_t *peer_hex_json(const uint8_t *buf, size_t len);

/* Decodes hex (whitespace allowed between bytes) into a malloc()ed
 * buffer. Returns 0 or -1 (odd digit count, bad digit, ENOMEM). An empty
 * string gives *out = NULL, *len = 0. */
int peer_hex_decode(const char *s, uint8_t **out, size_t *len);

/* Value of an unsigned integer option (Observe, Max-Age, Content-Format,
 * Hop-Limit); -1 when absent or longer than 4 bytes. */
int64_t peer_opt_uint(const coap_pdu_t *pdu, coap_option_num_t num);

/* True when the option is present (any length). */
bool peer_opt_present(const coap_pdu_t *pdu, coap_option_num_t num);

/*
 * Describes a payload into `ev`: "body" (the decoded DOTS model, or null),
 * "diagnostic" (text of a non-CBOR payload of a 4.xx/5.xx message, or
 * null) and, when the payload is neither, "raw_hex" and "decode_error".
 * `cf` is the Content-Format (-1 absent), `code_class` 2..5 for
 * responses, 0 for requests. Returns 0 or -1 (ENOMEM).
 */
int peer_describe_payload(json_t *ev, const uint8_t *data, size_t len,
			  int64_t cf, int code_class);

/* The CN of a DER certificate's subject (not the SAN libcoap prefers).
 * Returns 0 or -1. */
int peer_cert_cn(const uint8_t *der, size_t der_len, char *buf,
		 size_t size);

/* Adds one unsigned option, shortest encoding (RFC 7252 §3.2). */
int peer_add_uint_option(coap_pdu_t *pdu, coap_option_num_t num,
			 uint32_t value);

/*
 * Sleeps until libcoap has work (its epoll fd is readable), stdin is
 * readable (when *stdin_ready is not NULL; set to true then), a signal
 * arrives, or timeout_ms passes. Never blocks for more than timeout_ms.
 * Falls back to coap_io_process(ctx, timeout) when libcoap was built
 * without epoll. The caller then runs coap_io_process(ctx,
 * COAP_IO_NO_WAIT).
 */
void peer_wait(coap_context_t *ctx, uint32_t timeout_ms, bool *stdin_ready);

#endif
