/*
 * io_metrics.c: HTTP server for the Prometheus endpoint. See io_metrics.h.
 *
 * A connection goes READING -> WRITING -> LINGERING -> closed:
 *   READING    bytes go to http-parser until the headers are complete
 *              (the parser is paused there: a body is never read).
 *   WRITING    one uv_write of the whole response; reading stops.
 *   LINGERING  after the write, shutdown (FIN) and read until the peer
 *              closes or IO_METRICS_LINGER_MS passed, so that bytes the
 *              client sent after its headers do not make the kernel answer
 *              with a reset that could destroy the response in flight.
 * One timer per connection enforces each phase's deadline. The request
 * deadline runs from accept and is never extended by incoming bytes.
 */
#include "io_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#define LOG_MX "metrics"
#define IM_BACKLOG 64
#define IM_READ_BUF 2048
#define IM_LINGER_BYTES 65536 /* discarded while lingering, then we give up */

enum im_state { IM_READING, IM_WRITING, IM_LINGERING, IM_CLOSING };

struct im_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_shutdown_t sd;
	http_parser parser;
	struct io_metrics *im;
	struct im_conn *next, **pprev; /* in im->conns */
	enum im_state state;
	int handles;                   /* of tcp and timer, still open */
	bool headers_done;
	size_t header_bytes, linger_bytes;
	char url[IO_METRICS_URL_MAX + 1];
	size_t url_len;
	bool url_too_long;
	char *resp;
	char rbuf[IM_READ_BUF];
};

struct io_metrics {
	uv_loop_t *loop;
	char *path; /* a copy: a reload frees the configuration */
	struct metrics *reg;
	uv_tcp_t listener;
	bool listening, stopping;
	int open_handles; /* the listener's */
	struct im_conn *conns;
	size_t nconns;
	struct metrics_family *responses, *rejected;
};

static const http_parser_settings im_settings;

/* ---- connections ------------------------------------------------------------ */

static void im_conn_handle_closed(uv_handle_t *h)
{
	struct im_conn *c = h->data;

	if (--c->handles)
		return;
	free(c->resp);
	free(c);
}

static void im_close(struct im_conn *c)
{
	if (c->state == IM_CLOSING)
		return;
	c->state = IM_CLOSING;
	if (c->pprev) {
		*c->pprev = c->next;
		if (c->next)
			c->next->pprev = c->pprev;
		c->pprev = NULL;
		c->im->nconns--;
	}
	uv_close((uv_handle_t *)&c->timer, im_conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, im_conn_handle_closed);
}

static void im_on_timeout(uv_timer_t *t)
{
	struct im_conn *c = t->data;

	if (c->state == IM_READING)
		dg_debug(LOG_MX, "request not complete within %u ms; closing",
			 IO_METRICS_REQUEST_MS);
	im_close(c);
}

static void im_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct im_conn *c = h->data;

	(void)hint;
	*buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void im_on_linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct im_conn *c = s->data;

	(void)buf;
	if (n < 0 || (c->linger_bytes += (size_t)n) > IM_LINGER_BYTES)
		im_close(c);
}

static void im_on_shutdown(uv_shutdown_t *req, int status)
{
	struct im_conn *c = req->data;

	if (c->state != IM_WRITING)
		return; /* closed meanwhile */
	if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, im_alloc,
					im_on_linger_read) < 0) {
		im_close(c);
		return;
	}
	c->state = IM_LINGERING;
	uv_timer_start(&c->timer, im_on_timeout, IO_METRICS_LINGER_MS, 0);
}

static void im_on_written(uv_write_t *req, int status)
{
	struct im_conn *c = req->data;

	if (c->state != IM_WRITING)
		return;
	if (status < 0 || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, im_on_shutdown) < 0)
		im_close(c);
}

static const char *im_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

/* Sends the whole response (headers, then body unless head_only) and
 * moves to WRITING. body may be NULL: a one-line reason is sent. */
static void im_respond(struct im_conn *c, int status, const char *body,
		       size_t body_len, bool head_only)
{
	char head[256], code[8];
	const char *type = "text/plain; charset=utf-8";
	int n;

	if (status == 200) {
		/* The version parameter names the format (exposition 0.0.4). */
		type = "text/plain; version=0.0.4; charset=utf-8";
	} else if (!body) {
		body = im_reason(status);
		body_len = strlen(body);
	}
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "%s"
		     "Connection: close\r\n\r\n",
		     status, im_reason(status), type, body_len + (status == 200 ? 0 : 1),
		     status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head)) {
		im_close(c);
		return;
	}
	size_t blen = head_only ? 0 : body_len + (status == 200 ? 0 : 1);
	c->resp = malloc((size_t)n + blen + 1);
	if (!c->resp) {
		im_close(c);
		return;
	}
	memcpy(c->resp, head, (size_t)n);
	if (blen) {
		memcpy(c->resp + n, body, body_len);
		if (status != 200)
			c->resp[n + body_len] = '\n';
	}
	snprintf(code, sizeof(code), "%d", status);
	metrics_add(c->im->responses, (const char *[]){ code }, 1);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->state = IM_WRITING;
	uv_buf_t b = uv_buf_init(c->resp, (unsigned)((size_t)n + blen));
	c->wr.data = c;
	c->sd.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, im_on_written) < 0) {
		im_close(c);
		return;
	}
	uv_timer_start(&c->timer, im_on_timeout, IO_METRICS_WRITE_MS, 0);
}

/* The headers are complete: answer from the method and the target. */
static void im_dispatch(struct im_conn *c)
{
	const char *path = c->im->path;
	struct http_parser_url u;
	bool head = c->parser.method == HTTP_HEAD;
	char *text = NULL;
	size_t len = 0;

	if (c->url_too_long) {
		im_respond(c, 414, NULL, 0, false);
		return;
	}
	http_parser_url_init(&u);
	if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
	    !(u.field_set & (1 << UF_PATH))) {
		im_respond(c, 400, NULL, 0, false);
		return;
	}
	/* The query, if any, is ignored. */
	if (u.field_data[UF_PATH].len != strlen(path) ||
	    memcmp(c->url + u.field_data[UF_PATH].off, path,
		   u.field_data[UF_PATH].len) != 0) {
		im_respond(c, 404, NULL, 0, false);
		return;
	}
	if (c->parser.method != HTTP_GET && !head) {
		im_respond(c, 405, NULL, 0, false);
		return;
	}
	if (metrics_render(c->im->reg, &text, &len)) {
		im_respond(c, 500, NULL, 0, false);
		return;
	}
	im_respond(c, 200, text, len, head);
	free(text);
}

static int im_on_url(http_parser *p, const char *at, size_t len)
{
	struct im_conn *c = p->data;

	if (c->url_too_long || len > IO_METRICS_URL_MAX - c->url_len) {
		c->url_too_long = true;
		return 0;
	}
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	c->url[c->url_len] = '\0';
	return 0;
}

static int im_on_headers_complete(http_parser *p)
{
	struct im_conn *c = p->data;

	c->headers_done = true;
	/* Stop here: a body, or a second request, is never parsed. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings im_settings = {
	.on_url = im_on_url,
	.on_headers_complete = im_on_headers_complete,
};

static void im_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct im_conn *c = s->data;
	size_t take;

	if (c->state != IM_READING)
		return;
	if (n < 0) {
		im_close(c); /* EOF or error before a complete request */
		return;
	}
	if (n == 0)
		return;
	/* Never hand the parser more than the header budget. */
	take = (size_t)n;
	if (take > IO_METRICS_HEADER_MAX - c->header_bytes)
		take = IO_METRICS_HEADER_MAX - c->header_bytes;
	http_parser_execute(&c->parser, &im_settings, buf->base, take);
	c->header_bytes += take;
	if (c->headers_done) {
		im_dispatch(c);
		return;
	}
	if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
		dg_debug(LOG_MX, "bad request: %s",
			 http_errno_name(HTTP_PARSER_ERRNO(&c->parser)));
		im_respond(c, 400, NULL, 0, false);
		return;
	}
	if (c->header_bytes >= IO_METRICS_HEADER_MAX)
		im_respond(c, 431, NULL, 0, false);
}

static void im_reject(struct io_metrics *im, struct im_conn *c)
{
	static const char busy[] =
		"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
		"Connection: close\r\n\r\n";
	uv_buf_t b = uv_buf_init((char *)busy, sizeof(busy) - 1);

	/* Best effort, never queued: a full connection table must not
	 * cost memory per refused client. */
	uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	metrics_add(im->rejected, NULL, 1);
	im_close(c);
}

static void im_on_connection(uv_stream_t *server, int status)
{
	struct io_metrics *im = server->data;
	struct im_conn *c;

	if (status < 0 || im->stopping) {
		dg_debug(LOG_MX, "accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return; /* the pending connection waits in the backlog */
	c->im = im;
	c->state = IM_READING;
	uv_tcp_init(im->loop, &c->tcp);
	uv_timer_init(im->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		im_close(c);
		return;
	}
	if (im->nconns >= IO_METRICS_CONN_MAX) {
		im_reject(im, c);
		return;
	}
	c->next = im->conns;
	if (im->conns)
		im->conns->pprev = &c->next;
	c->pprev = &im->conns;
	im->conns = c;
	im->nconns++;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, im_alloc, im_on_read) < 0) {
		im_close(c);
		return;
	}
	uv_timer_start(&c->timer, im_on_timeout, IO_METRICS_REQUEST_MS, 0);
}

/* ---- start and stop ------------------------------------------------------------ */

static bool im_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static void im_listener_closed(uv_handle_t *h)
{
	struct io_metrics *im = h->data;

	im->open_handles--;
}

int io_metrics_start(uv_loop_t *loop, const struct gw_metrics *cfg,
		     struct metrics *reg, struct io_metrics **out)
{
	struct io_metrics *im = calloc(1, sizeof(*im));
	struct sockaddr_storage ss;
	int rc;

	*out = NULL;
	if (!im)
		return DG_ENOMEM;
	im->loop = loop;
	im->reg = reg;
	im->path = strdup(cfg->path);
	im->responses = metrics_register(reg, METRICS_COUNTER,
		"dotsgw_metrics_http_responses_total",
		"Answers of the metrics endpoint by HTTP status code.",
		(const char *const[]){ "code", NULL }, NULL, 0);
	im->rejected = metrics_register(reg, METRICS_COUNTER,
		"dotsgw_metrics_http_rejected_connections_total",
		"Connections to the metrics endpoint refused because too many were open.",
		NULL, NULL, 0);
	if (!im->path || !im->responses || !im->rejected) {
		free(im->path);
		free(im);
		return DG_ENOMEM;
	}
	memset(&ss, 0, sizeof(ss));
	if (uv_ip4_addr(cfg->address, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(cfg->address, cfg->port, (struct sockaddr_in6 *)&ss) != 0) {
		dg_err(LOG_MX, "bad metrics address %s", cfg->address);
		free(im->path);
		free(im);
		return DG_EIO;
	}
	uv_tcp_init(loop, &im->listener);
	im->listener.data = im;
	im->open_handles = 1;
	rc = uv_tcp_bind(&im->listener, (const struct sockaddr *)&ss,
			 ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&im->listener, IM_BACKLOG, im_on_connection);
	if (rc < 0) {
		dg_err(LOG_MX, "cannot listen on %s port %u (metrics): %s",
		       cfg->address, cfg->port, uv_strerror(rc));
		im->stopping = true;
		uv_close((uv_handle_t *)&im->listener, im_listener_closed);
		/* Freed once the loop has closed the handle: io_metrics_free. */
		*out = im;
		return DG_EIO;
	}
	im->listening = true;
	dg_info(LOG_MX, "metrics on http://%s%s%s:%u%s", ss.ss_family == AF_INET6 ? "[" : "",
		cfg->address, ss.ss_family == AF_INET6 ? "]" : "", cfg->port, cfg->path);
	if (!im_loopback(&ss))
		dg_warn(LOG_MX, "metrics listen on %s, not loopback: the endpoint has no authentication",
			cfg->address);
	*out = im;
	return 0;
}

void io_metrics_stop(struct io_metrics *im)
{
	if (!im || im->stopping)
		return;
	im->stopping = true;
	while (im->conns)
		im_close(im->conns);
	uv_close((uv_handle_t *)&im->listener, im_listener_closed);
}

void io_metrics_free(struct io_metrics *im)
{
	if (!im)
		return;
	if (im->open_handles || im->conns)
		dg_err(LOG_MX, "freed with handles still open");
	free(im->path);
	free(im);
}
