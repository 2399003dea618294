/*
 * peer_common.c: helpers shared by dots-test-server and dots-test-client.
 * See peer_common.h.
 */
#include "peer_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "cbor.h"

volatile sig_atomic_t peer_stop;

static const char *peer_name;
static void (*peer_log_hook)(int level, const char *msg);

static void peer_on_signal(int sig)
{
	(void)sig;
	peer_stop = 1;
}

/* libcoap's default handler writes below LOG_CRIT to stdout, which is
 * reserved for the JSON lines the tests parse. */
static void peer_coap_log(coap_log_t level, const char *message)
{
	if (peer_log_hook)
		peer_log_hook((int)level, message);
	fprintf(stderr, "libcoap: %s", message);
	if (!*message || message[strlen(message) - 1] != '\n')
		fputc('\n', stderr);
}

void peer_init(const char *name, int coap_level)
{
	struct sigaction sa;

	peer_name = name;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = peer_on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: poll() returns EINTR and the loop sees peer_stop. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	coap_startup();
	coap_set_log_handler(peer_coap_log);
	coap_set_show_pdu_output(0);
	coap_set_log_level((coap_log_t)coap_level);
}

void peer_fini(void)
{
	coap_cleanup();
}

void peer_set_coap_log_hook(void (*hook)(int level, const char *msg))
{
	peer_log_hook = hook;
}

void peer_log(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void peer_emit(json_t *obj)
{
	char *s;

	if (!obj)
		return;
	if (peer_name)
		json_object_set_new(obj, "server", json_string(peer_name));
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!s) {
		peer_log("cannot format an output line");
		return;
	}
	/* The tests read line by line: one write per line, flushed now. */
	fputs(s, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	free(s);
}

uint64_t peer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int peer_parse_transport(const char *s, coap_proto_t *out)
{
	static const struct {
		const char *name;
		coap_proto_t proto;
	} map[] = {
		{ "dtls", COAP_PROTO_DTLS },
		{ "tls", COAP_PROTO_TLS },
		{ "udp", COAP_PROTO_UDP },
		{ "tcp", COAP_PROTO_TCP },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(s, map[i].name) == 0) {
			*out = map[i].proto;
			return 0;
		}
	}
	return -1;
}

bool peer_proto_secure(coap_proto_t proto)
{
	return proto == COAP_PROTO_DTLS || proto == COAP_PROTO_TLS;
}

static int peer_parse_port(const char *s, uint16_t *port, bool allow_zero)
{
	char *end;
	unsigned long v;

	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 5)
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535 || (v == 0 && !allow_zero))
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int peer_split_hostport(const char *s, char *host, size_t host_size,
			uint16_t *port, bool allow_zero)
{
	const char *colon, *hend, *hstart = s;

	if (*s == '[') {
		hstart = s + 1;
		hend = strchr(hstart, ']');
		if (!hend || hend[1] != ':')
			return -1;
		colon = hend + 1;
	} else {
		colon = strrchr(s, ':');
		/* A bare IPv6 address is ambiguous: require brackets. */
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -1;
		hend = colon;
	}
	if (hend == hstart || (size_t)(hend - hstart) >= host_size)
		return -1;
	memcpy(host, hstart, (size_t)(hend - hstart));
	host[hend - hstart] = '\0';
	return peer_parse_port(colon + 1, port, allow_zero);
}

bool peer_is_ip_literal(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 ||
	       inet_pton(AF_INET6, host, &a6) == 1;
}

int peer_resolve(const char *host, uint16_t port, bool passive,
		 coap_proto_t proto, coap_address_t *out)
{
	struct addrinfo hints, *res = NULL;
	char service[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = (proto == COAP_PROTO_UDP ||
			     proto == COAP_PROTO_DTLS) ? SOCK_DGRAM :
							 SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc) {
		peer_log("cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	if (res->ai_addrlen > sizeof(out->addr)) {
		freeaddrinfo(res);
		return -1;
	}
	coap_address_init(out);
	out->size = res->ai_addrlen;
	memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int peer_check_creds(const struct peer_creds *c, coap_proto_t proto)
{
	bool psk = c->psk_id || c->psk_key;
	bool pki = c->cert || c->key || c->ca;

	if (!peer_proto_secure(proto)) {
		if (psk || pki)
			peer_log("credentials given for a plain transport");
		return psk || pki ? -1 : 0;
	}
	if (psk == pki) {
		peer_log("dtls/tls need either --psk-id/--psk-key or "
			 "--cert/--key/--ca");
		return -1;
	}
	if (psk && (!c->psk_id || !c->psk_key || !*c->psk_id ||
		    !*c->psk_key || strlen(c->psk_id) > PEER_CRED_MAX ||
		    strlen(c->psk_key) > PEER_CRED_MAX)) {
		peer_log("PSK needs a non-empty --psk-id and --psk-key "
			 "(at most %d bytes each)", PEER_CRED_MAX);
		return -1;
	}
	if (pki && (!c->cert || !c->key || !c->ca)) {
		peer_log("X.509 needs --cert, --key and --ca");
		return -1;
	}
	/* libcoap reads the files only at the first handshake: fail now. */
	if (pki && (access(c->cert, R_OK) || access(c->key, R_OK) ||
		    access(c->ca, R_OK))) {
		peer_log("cannot read --cert, --key or --ca: %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

const char *peer_code_str(coap_pdu_code_t code, char *buf)
{
	snprintf(buf, 8, "%u.%02u", ((unsigned)code >> 5) & 7,
		 (unsigned)code & 0x1f);
	return buf;
}

int peer_parse_code(const char *s, coap_pdu_code_t *out)
{
	unsigned cls, detail;
	char tail;

	if (strlen(s) == 4 && s[1] == '.') {
		if (sscanf(s, "%1u.%2u%c", &cls, &detail, &tail) != 2)
			return -1;
	} else if (strlen(s) == 3 && strspn(s, "0123456789") == 3) {
		cls = (unsigned)(s[0] - '0');
		detail = (unsigned)((s[1] - '0') * 10 + (s[2] - '0'));
	} else {
		return -1;
	}
	if (cls < 2 || cls > 5 || detail > 31)
		return -1;
	*out = (coap_pdu_code_t)(cls << 5 | detail);
	return 0;
}

json_t *peer_safe_string(const uint8_t *buf, size_t len)
{
	json_t *j = json_stringn((const char *)buf, len);
	char *s;
	size_t n = 0;

	if (j || len > SIZE_MAX / 4 - 1)
		return j;
	s = malloc(4 * len + 1);
	if (!s)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] >= 0x20 && buf[i] < 0x7f)
			s[n++] = (char)buf[i];
		else
			n += (size_t)sprintf(s + n, "\\x%02x", buf[i]);
	}
	j = json_stringn(s, n);
	free(s);
	return j;
}

json_t *peer_hex_json(const uint8_t *buf, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	json_t *j;
	char *s;

	s = malloc(2 * len + 1);
	if (!s)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		s[2 * i] = digits[buf[i] >> 4];
		s[2 * i + 1] = digits[buf[i] & 15];
	}
	s[2 * len] = '\0';
	j = json_stringn(s, 2 * len);
	free(s);
	return j;
}

static int peer_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int peer_hex_decode(const char *s, uint8_t **out, size_t *len)
{
	size_t n = 0, cap = strlen(s) / 2;
	uint8_t *buf = NULL;
	int hi, lo;

	*out = NULL;
	*len = 0;
	if (cap) {
		buf = malloc(cap);
		if (!buf)
			return -1;
	}
	while (*s) {
		if (*s == ' ' || *s == '\t' || *s == '\n') {
			s++;
			continue;
		}
		hi = peer_hex_digit(s[0]);
		lo = hi < 0 ? -1 : peer_hex_digit(s[1]);
		if (lo < 0 || n >= cap) {
			free(buf);
			return -1;
		}
		buf[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	if (!n) {
		free(buf);
		return 0;
	}
	*out = buf;
	*len = n;
	return 0;
}

int64_t peer_opt_uint(const coap_pdu_t *pdu, coap_option_num_t num)
{
	coap_opt_iterator_t it;
	coap_opt_t *opt;

	opt = coap_check_option(pdu, num, &it);
	if (!opt || coap_opt_length(opt) > 4)
		return -1;
	return (int64_t)coap_decode_var_bytes(coap_opt_value(opt),
					      coap_opt_length(opt));
}

bool peer_opt_present(const coap_pdu_t *pdu, coap_option_num_t num)
{
	coap_opt_iterator_t it;

	return coap_check_option(pdu, num, &it) != NULL;
}

/* A diagnostic payload is UTF-8 text (RFC 7252 §5.5.2); jansson refuses
 * invalid UTF-8, which then falls back to hex. */
static json_t *peer_text_json(const uint8_t *data, size_t len)
{
	return json_stringn((const char *)data, len);
}

int peer_describe_payload(json_t *ev, const uint8_t *data, size_t len,
			  int64_t cf, int code_class)
{
	struct dg_diag diag = { "" };
	json_t *body = NULL, *text = NULL;
	bool want_text;
	int rc = DG_EINVAL;

	if (!len) {
		if (json_object_set_new(ev, "body", json_null()) ||
		    json_object_set_new(ev, "diagnostic", json_null()))
			return -1;
		return 0;
	}
	/* Errors carry plain text unless a CBOR body is specified (RFC 9132
	 * §9: 4.09, 5.03); a Content-Format says which. */
	want_text = cf == 0 || (cf < 0 && code_class >= 4);
	if (want_text)
		text = peer_text_json(data, len);
	if (!text) {
		if (cf < 0 || cf == DG_CONTENT_FORMAT_DOTS_CBOR || cf == 60)
			rc = cbor_decode(data, len, &body, &diag);
		else
			dg_diag_set(&diag, "content-format %lld is not "
				    "application/dots+cbor", (long long)cf);
	}
	if (json_object_set_new(ev, "body", body ? body : json_null()) ||
	    json_object_set_new(ev, "diagnostic", text ? text : json_null()))
		return -1;
	if (!body && !text) {
		if (rc == DG_ENOMEM)
			return -1;
		if (json_object_set_new(ev, "raw_hex",
					peer_hex_json(data, len)) ||
		    json_object_set_new(ev, "decode_error",
					json_string(diag.text)))
			return -1;
	}
	return 0;
}

int peer_cert_cn(const uint8_t *der, size_t der_len, char *buf, size_t size)
{
	gnutls_x509_crt_t crt;
	gnutls_datum_t d;
	size_t n = size;
	int rc;

	if (!der || !der_len || der_len > UINT32_MAX || !size)
		return -1;
	if (gnutls_x509_crt_init(&crt) < 0)
		return -1;
	d.data = (unsigned char *)der;
	d.size = (unsigned int)der_len;
	rc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER);
	if (rc >= 0)
		rc = gnutls_x509_crt_get_dn_by_oid(crt,
						   GNUTLS_OID_X520_COMMON_NAME,
						   0, 0, buf, &n);
	gnutls_x509_crt_deinit(crt);
	if (rc < 0)
		return -1;
	buf[size - 1] = '\0';
	return 0;
}

int peer_add_uint_option(coap_pdu_t *pdu, coap_option_num_t num,
			 uint32_t value)
{
	uint8_t buf[4];
	unsigned len = coap_encode_var_safe(buf, sizeof(buf), value);

	return coap_add_option(pdu, num, len, buf) ? 0 : -1;
}

void peer_wait(coap_context_t *ctx, uint32_t timeout_ms, bool *stdin_ready)
{
	struct pollfd p[2];
	nfds_t n = 0;
	int fd = coap_context_get_coap_fd(ctx);

	if (stdin_ready)
		*stdin_ready = false;
	if (fd < 0) {
		/* No epoll in this libcoap build: let it wait itself, and
		 * only peek at stdin afterwards (the timeout stays short). */
		coap_io_process(ctx, timeout_ms ? timeout_ms : 1);
		timeout_ms = 0;
	} else {
		p[n].fd = fd;
		p[n].events = POLLIN;
		p[n++].revents = 0;
	}
	if (stdin_ready) {
		p[n].fd = 0;
		p[n].events = POLLIN;
		p[n++].revents = 0;
	}
	if (!n)
		return;
	if (poll(p, n, (int)timeout_ms) > 0 && stdin_ready &&
	    (p[n - 1].revents & (POLLIN | POLLHUP | POLLERR)))
		*stdin_ready = true;
}
