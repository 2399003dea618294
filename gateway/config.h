/*
 * config.h: the dotsgw configuration (libconfig syntax), loaded and
 * validated as a whole before anything uses it.
 *
 * Every key is described by one row of the table in config.c (path, type,
 * bounds or enum, default). Unknown keys are errors. Each error is
 * reported as "FILE:LINE: KEY: reason"; config_load() collects them all
 * rather than stopping at the first one.
 *
 * File shape (complete samples are in config/):
 *
 *   gateway = {
 *     mode = "map";                 # only "map" exists so far
 *     server-domain = false;        # insert cdid upstream (RFC 9132 §4.4.1.2)
 *     insecure-lab = false;         # allow plain coap/coap+tcp: lab only
 *     log-level = "info";           # err | warn | info | debug
 *     hop-limit = 16;               # RFC 8768 initial Hop-Limit, 1..255
 *     max-body = 8192;              # bytes; larger request bodies get 4.13
 *     request-timeout = 20;         # s an upstream has to answer a relayed request
 *     id = "dotsgw.example";        # names this gateway in 5.08 diagnostics
 *   };
 *   server = {                      # the downstream (server) half
 *     listen = ( { transport = "dtls"; address = "::"; port = 4646; }, ... );
 *                                   # transport: dtls | tls | udp | tcp
 *     psk-hint = "dotsgw";
 *     udp-receive-buffer = 4194304; # bytes per DTLS/UDP listener (0: kernel default)
 *     cert = "/etc/dotsgw/server.pem"; key = "..."; ca = "...";
 *     session = {                   # what the gateway accepts from clients
 *       heartbeat-interval = [15, 30, 240];   # [min, default, max]
 *       missing-hb-allowed = [3, 15, 30]; (same shape for every parameter)
 *       probing-rate = [...]; max-retransmit = [...];
 *       ack-timeout = [1.0, 2.0, 30.0]; ack-random-factor = [1.1, 1.5, 4.0];
 *     };
 *   };
 *   clients = (                     # downstream DOTS clients
 *     { name = "alice";
 *       psk-identity = "alice"; psk-key = "secret";  # or:
 *       cert-name = "alice.example";                  # CN/SAN of a CA-verified cert
 *       upstream = "provider";
 *       allowed-prefixes = [ "203.0.113.0/24" ];
 *       allowed-fqdns = [ "example.com" ];
 *       allowed-uris = [ "https://example.com/" ];
 *       allowed-ports = [ "0-65535" ];
 *       allow-aliases = false; }
 *   );
 *   upstreams = (                   # DOTS servers
 *     { name = "provider"; address = "192.0.2.1"; port = 4646;
 *       transport = "dtls";
 *       psk-identity = "gw"; psk-key = "secret";     # or:
 *       cert = "..."; key = "..."; ca = "..."; server-name = "dots.example";
 *       heartbeat-interval = 30; missing-hb-allowed = 5;
 *       reconnect-min = 60; reconnect-max = 300; }
 *   );
 *   metrics = {                     # Prometheus text endpoint (HTTP, no auth)
 *     enabled = false; address = "127.0.0.1"; port = 9646; path = "/metrics";
 *   };
 *   control = {                     # the control socket (gateway/io_ctl.c, dotsctl)
 *     socket = "/run/dotsgw/control.sock";  # absolute path of a Unix stream socket
 *     mode = "0660";                # its permission bits, octal
 *     group = "dotsgw";             # its group (name or number); default: ours
 *   };
 */
#ifndef DG_CONFIG_H
#define DG_CONFIG_H

#include "../common/dg.h"
#include "../common/model.h"

enum gw_transport { GW_TR_DTLS, GW_TR_TLS, GW_TR_UDP, GW_TR_TCP };
const char *gw_transport_name(enum gw_transport t);
static inline bool gw_transport_reliable(enum gw_transport t)
{
	return t == GW_TR_TLS || t == GW_TR_TCP;
}
static inline bool gw_transport_secure(enum gw_transport t)
{
	return t == GW_TR_DTLS || t == GW_TR_TLS;
}

enum gw_mode { GW_MODE_MAP };

struct gw_listen {
	enum gw_transport transport;
	char *address; /* numeric IPv4 or IPv6 */
	uint16_t port;
	int line;
};

/* Client or upstream credentials: PSK and/or X.509 files. */
struct gw_cred {
	char *psk_identity;
	uint8_t *psk_key; size_t psk_key_len; /* raw bytes of the configured string */
	char *cert, *key, *ca; /* PEM file paths */
};

struct gw_upstream;

struct gw_client {
	char *name;
	char *psk_identity; uint8_t *psk_key; size_t psk_key_len;
	char *cert_name;       /* matched against CN or a DNS SAN */
	char *upstream_name;
	struct gw_upstream *upstream; /* resolved at load time */
	struct model_scope_policy scope;
	int line;
};

/* upstreams[].discovery: RFC 8973 discovery of the upstream's servers. */
struct gw_discovery {
	bool enabled;          /* the group is present */
	char *domain;          /* S-NAPTR/DNS-SD; reference identifier (§8.2) */
	bool dhcp;             /* the DHCP hooks' state directory (§5) */
	char *dhcp_dir;
	bool dns;              /* S-NAPTR, then DNS-SD (§6, §7) */
	char *resolver;        /* "IP", "IP:PORT", "[IPv6]:PORT"; NULL: system's */
	char **transports; size_t ntransports;
	unsigned transport_mask; /* GW_DISC_UDP | GW_DISC_TCP */
	uint32_t ttl_min;      /* s, floor of DNS TTLs */
};
#define GW_DISC_UDP 1u     /* signal.udp: DTLS (udp when plain) */
#define GW_DISC_TCP 2u     /* signal.tcp: TLS (tcp when plain) */

struct gw_upstream {
	char *name;
	char *address;         /* numeric IP or host name; NULL: discovered only */
	uint16_t port;
	enum gw_transport transport;
	struct gw_cred cred;
	char *server_name;     /* expected certificate name, SNI */
	uint32_t heartbeat_interval; /* s, asked for in PUT /config */
	uint32_t missing_hb_allowed;
	uint32_t reconnect_min, reconnect_max; /* s, backoff bounds */
	struct gw_discovery discovery;
	int line;
};

/* The Prometheus endpoint: plain HTTP without authentication, so
 * loopback unless the operator says otherwise. */
struct gw_metrics {
	bool enabled;
	char *address; /* numeric IPv4 or IPv6 */
	uint16_t port;
	char *path;    /* "/metrics": an absolute path, no query */
};

struct gw_config {
	char *path;
	enum gw_mode mode;
	bool server_domain;
	bool insecure_lab;
	enum dg_log_level log_level;
	uint32_t hop_limit;
	uint32_t max_body;
	uint32_t request_timeout; /* s */
	char *id;

	struct gw_listen *listen; size_t nlisten;
	struct gw_cred server_cred; /* psk_identity = hint; cert/key/ca */
	uint32_t udp_rcvbuf; /* bytes of SO_RCVBUF for DTLS/UDP listeners; 0: kernel's */
	struct model_session_limits session_mitigating, session_idle;
	struct model_session_config session_default;

	/* server.drain: where a drain redirects clients (RFC 9132 §4.6). */
	struct gw_drain {
		char *alternate;          /* alt-server; NULL: drain refused */
		char **addresses; size_t naddresses; /* alt-server-record */
		uint32_t ttl;             /* Max-Age of the redirection, s */
	} drain;
	struct gw_client *clients; size_t nclients;
	struct gw_upstream *upstreams; size_t nupstreams;

	struct gw_metrics metrics;

	/* The control socket. control_explicit: control.socket was set, so
	 * failing to open it is fatal; the default path is best effort. */
	char *control_socket;
	char *control_mode_text;  /* as configured, e.g. "0660" */
	uint32_t control_mode;    /* permission bits parsed from it */
	char *control_group;      /* as configured, or NULL */
	long control_gid;         /* resolved group, -1: leave as created */
	bool control_explicit;
	/* The clients with a PSK identity sorted by it, for
	 * config_client_by_psk (built by config_load; NULL: linear search). */
	const struct gw_client **psk_index; size_t npsk_index;
};

/*
 * Loads and validates path. On success returns 0 and *out (free with
 * config_free). On failure returns DG_EINVAL (or DG_ENOMEM / DG_EIO when
 * the file cannot be read), *out is NULL, and every error found has been
 * passed to report() as "FILE:LINE: KEY: reason" (one call per error).
 * Cross-checks: clients refer to existing upstreams, names are unique,
 * each client has exactly one of PSK or cert-name, PSK identities and
 * cert-names are unique, plain transports need gateway.insecure-lab,
 * secure listeners need credentials (PSK clients or server cert+key),
 * every [min, default, max] is ordered, prefixes are canonical.
 */
typedef void (*config_report_fn)(const char *line, void *arg);
int config_load(const char *path, struct gw_config **out,
		config_report_fn report, void *arg);
void config_free(struct gw_config *cfg);

const struct gw_client *config_client_by_psk(const struct gw_config *cfg,
					     const uint8_t *id, size_t len);
const struct gw_client *config_client_by_cert_name(const struct gw_config *cfg,
						   const char *name);
const struct gw_upstream *config_upstream_by_name(const struct gw_config *cfg,
						  const char *name);

#endif
