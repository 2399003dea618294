/*
 * io_ctl.c: the control socket on the libuv loop. See io_ctl.h.
 */
#include "io_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dotsgw_build.h"
#include "ctl.h"
#include "io_coap.h"

#define LOG_CTL "ctl"

struct ctl_conn {
	uv_pipe_t pipe;
	uv_timer_t idle;
	struct io_ctl *ctl;
	struct ctl_conn *next, *prev; /* in ctl->conns */
	int open_handles;
	bool closing;
	bool close_when_sent; /* no more requests: close once written */
	bool reading;
	size_t queued;        /* bytes written but not yet taken by the kernel */
	size_t len;
	char buf[CTL_REQUEST_MAX + 1];
};

struct ctl_write {
	uv_write_t req;
	struct ctl_conn *conn;
	size_t len;
	char *data;
};

struct io_ctl {
	uv_loop_t *loop;
	const struct gw_config *const *cfgp;
	struct io *io;
	struct io_ctl_callbacks cb;
	uv_pipe_t srv;
	bool listening;
	char *path;
	ino_t ino;           /* of the socket file we created */
	struct ctl_conn *conns;
	size_t nconns;
	dg_time_ms started;
	bool stopping;
};

static dg_time_ms ctl_now(void)
{
	return uv_hrtime() / 1000000u;
}

/* ---- connections ---------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;

	if (--c->open_handles == 0)
		free(c);
}

static void conn_close(struct ctl_conn *c)
{
	struct io_ctl *ctl = c->ctl;

	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ctl->nconns--;
	/* uv_close cancels queued writes; their callbacks still run (with
	 * UV_ECANCELED) before the pipe's close callback. */
	uv_close((uv_handle_t *)&c->pipe, conn_handle_closed);
	uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
	struct ctl_conn *c = t->data;

	dg_debug(LOG_CTL, "closing an idle control connection");
	conn_close(c);
}

static void conn_touch(struct ctl_conn *c)
{
	if (!c->closing)
		uv_timer_start(&c->idle, on_idle, IO_CTL_IDLE_MS, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct ctl_conn *c = h->data;

	(void)hint;
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct ctl_conn *c)
{
	if (!c->reading && !c->closing && !c->close_when_sent) {
		c->reading = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0;
	}
}

static void conn_read_stop(struct ctl_conn *c)
{
	if (c->reading)
		uv_read_stop((uv_stream_t *)&c->pipe);
	c->reading = false;
}

static void on_written(uv_write_t *req, int status)
{
	struct ctl_write *w = req->data;
	struct ctl_conn *c = w->conn;

	c->queued -= w->len;
	free(w->data);
	free(w);
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	conn_touch(c);
	if (c->close_when_sent) {
		if (!c->queued)
			conn_close(c);
		return;
	}
	/* Read again once the client has taken its answers. */
	if (c->queued < IO_CTL_QUEUE_MAX / 2)
		conn_read_start(c);
}

/* Sends line (taking it over) on c. */
static void conn_send(struct ctl_conn *c, char *line, size_t len)
{
	struct ctl_write *w = malloc(sizeof(*w));
	uv_buf_t b = uv_buf_init(line, (unsigned)len);

	if (!w) {
		free(line);
		conn_close(c);
		return;
	}
	w->conn = c;
	w->len = len;
	w->data = line;
	w->req.data = w;
	c->queued += len;
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written)) {
		c->queued -= len;
		free(line);
		free(w);
		conn_close(c);
		return;
	}
	/* A client that does not read its answers is not read either. */
	if (c->queued >= IO_CTL_QUEUE_MAX)
		conn_read_stop(c);
}

/* main's callbacks and io's accessors, behind the one arg of ctl_env. */
struct ctl_glue {
	struct io_ctl *ctl;
};

static void glue_tls_dn(void *arg, uint64_t sid, char *buf, size_t len)
{
	io_dn_tls_desc(((struct ctl_glue *)arg)->ctl->io, sid, buf, len);
}

static void glue_tls_up(void *arg, uint64_t id, char *buf, size_t len)
{
	io_up_tls_desc(((struct ctl_glue *)arg)->ctl->io, id, buf, len);
}

static void glue_log_level(void *arg, enum dg_log_level level)
{
	struct io_ctl *ctl = ((struct ctl_glue *)arg)->ctl;

	if (ctl->cb.set_log_level)
		ctl->cb.set_log_level(ctl->cb.arg, level);
	else
		dg_log_set_level(level);
}

static int glue_reload(void *arg, char *err, size_t errlen)
{
	struct io_ctl *ctl = ((struct ctl_glue *)arg)->ctl;

	return ctl->cb.reload(ctl->cb.arg, err, errlen);
}

static int glue_own_request(void *arg, const char *upstream, const json_t *body,
			    uint32_t *mid, char *cuid, const char **upstream_used,
			    char *err, size_t errlen)
{
	struct io_ctl *ctl = ((struct ctl_glue *)arg)->ctl;
	struct dg_diag d = { "" };
	int code = io_own_request(ctl->io, upstream, body, mid, cuid,
				  upstream_used, &d);

	snprintf(err, errlen, "%s", d.text);
	return code;
}

static int glue_own_withdraw(void *arg, const char *upstream, uint32_t mid,
			     char *err, size_t errlen)
{
	struct io_ctl *ctl = ((struct ctl_glue *)arg)->ctl;
	struct dg_diag d = { "" };
	int code = io_own_withdraw(ctl->io, upstream, mid, &d);

	snprintf(err, errlen, "%s", d.text);
	return code;
}

static int glue_drain(void *arg, bool on, size_t *notified)
{
	return io_drain(((struct ctl_glue *)arg)->ctl->io, on, notified);
}

static void conn_request(struct ctl_conn *c, const char *req, size_t len)
{
	struct io_ctl *ctl = c->ctl;
	struct ctl_glue glue = { ctl };
	struct ctl_env env = {
		.core = io_core(ctl->io),
		.cfg = *ctl->cfgp,
		.version = DOTSGW_VERSION,
		.now = ctl_now(),
		.started = ctl->started,
		.wall_now = (int64_t)time(NULL),
		.dn_tls = glue_tls_dn,
		.up_tls = glue_tls_up,
		.set_log_level = glue_log_level,
		.reload = ctl->cb.reload ? glue_reload : NULL,
		.own_request = glue_own_request,
		.own_withdraw = glue_own_withdraw,
		.drain = glue_drain,
		.arg = &glue,
	};
	size_t out_len = 0;
	char *out;

	if (len && req[len - 1] == '\r')
		len--;
	if (!len)
		return; /* blank lines are not requests */
	out = ctl_handle(&env, req, len, &out_len);
	if (!out) {
		dg_err(LOG_CTL, "cannot answer a control request: out of memory");
		conn_close(c);
		return;
	}
	conn_send(c, out, out_len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *c = s->data;
	size_t start, scanned;
	char *nl;

	(void)buf;
	if (nread < 0) {
		/* EOF: the client may still read what it asked for. */
		conn_read_stop(c);
		c->close_when_sent = true;
		if (nread != UV_EOF || !c->queued)
			conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	conn_touch(c);
	scanned = c->len;
	c->len += (size_t)nread;
	start = 0;
	while (!c->closing && !c->close_when_sent &&
	       (nl = memchr(c->buf + scanned, '\n', c->len - scanned))) {
		size_t end = (size_t)(nl - c->buf);
		conn_request(c, c->buf + start, end - start);
		start = scanned = end + 1;
	}
	if (c->closing)
		return;
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	if (c->len > CTL_REQUEST_MAX) {
		char why[64], *line;
		size_t n = 0;

		snprintf(why, sizeof(why), "request longer than %d bytes: closing",
			 CTL_REQUEST_MAX);
		line = ctl_error_line(why, &n);
		dg_warn(LOG_CTL, "control request longer than %d bytes: connection closed",
			CTL_REQUEST_MAX);
		conn_read_stop(c);
		c->close_when_sent = true;
		if (line)
			conn_send(c, line, n);
		else
			conn_close(c);
	}
}

/* ---- the listener ------------------------------------------------------------------- */

static void refused_closed(uv_handle_t *h)
{
	free(h);
}

static void on_connection(uv_stream_t *srv, int status)
{
	struct io_ctl *ctl = srv->data;
	struct ctl_conn *c;

	if (status < 0) {
		dg_warn(LOG_CTL, "control socket: %s", uv_strerror(status));
		return;
	}
	if (ctl->nconns >= IO_CTL_CONN_MAX) {
		/* Accepted only to be told why, then closed at once. */
		uv_pipe_t *p = malloc(sizeof(*p));
		size_t n = 0;
		char *line;

		if (!p || uv_pipe_init(ctl->loop, p, 0)) {
			free(p);
			return;
		}
		if (uv_accept(srv, (uv_stream_t *)p) == 0 &&
		    (line = ctl_error_line("too many control connections", &n))) {
			uv_buf_t b = uv_buf_init(line, (unsigned)n);
			uv_try_write((uv_stream_t *)p, &b, 1);
			free(line);
		}
		dg_warn(LOG_CTL, "control connection refused: %d already open",
			IO_CTL_CONN_MAX);
		uv_close((uv_handle_t *)p, refused_closed);
		return;
	}
	if (!(c = calloc(1, sizeof(*c))))
		return;
	c->ctl = ctl;
	uv_pipe_init(ctl->loop, &c->pipe, 0);
	uv_timer_init(ctl->loop, &c->idle);
	c->pipe.data = c->idle.data = c;
	c->open_handles = 2;
	c->next = ctl->conns;
	if (ctl->conns)
		ctl->conns->prev = c;
	ctl->conns = c;
	ctl->nconns++;
	if (uv_accept(srv, (uv_stream_t *)&c->pipe)) {
		conn_close(c);
		return;
	}
	conn_touch(c);
	conn_read_start(c);
	if (!c->reading)
		conn_close(c);
}

/* Creates the directory that holds path when it is missing (its parent
 * must exist): systemd's RuntimeDirectory does this in production. */
static int make_dir_of(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno != ENOENT || (mkdir(dir, 0755) != 0 && errno != EEXIST))
		return -errno;
	return 0;
}

/* 0: nothing at path (any stale socket removed); DG_EEXIST: a gateway
 * answers there; DG_EIO: something else is in the way (logged). */
static int clear_stale(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : DG_EIO;
	if (!S_ISSOCK(st.st_mode)) {
		dg_err(LOG_CTL, "control socket %s: exists and is not a socket; not replaced",
		       path);
		return DG_EIO;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return DG_EIO;
	/* A Unix stream connect answers at once: accepted or refused. */
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0)
		return DG_EEXIST;
	if (errno != ECONNREFUSED) {
		dg_err(LOG_CTL, "control socket %s: %s", path, strerror(errno));
		return DG_EIO;
	}
	if (unlink(path) != 0 && errno != ENOENT)
		return DG_EIO;
	dg_info(LOG_CTL, "control socket %s: removed a stale socket", path);
	return 0;
}

static int ctl_listen(struct io_ctl *ctl, const struct gw_config *cfg)
{
	const char *path = cfg->control_socket;
	struct stat st;
	mode_t old;
	int rc;

	if ((rc = make_dir_of(path))) {
		dg_err(LOG_CTL, "control socket %s: cannot create its directory: %s",
		       path, strerror(-rc));
		return DG_EIO;
	}
	if ((rc = clear_stale(path))) {
		if (rc == DG_EEXIST)
			dg_err(LOG_CTL, "control socket %s: another process answers on it",
			       path);
		return rc;
	}
	if ((rc = uv_pipe_init(ctl->loop, &ctl->srv, 0)))
		return DG_EIO;
	ctl->srv.data = ctl;
	ctl->listening = true;
	/* Created with the configured mode from the start, never wider
	 * (the process is single-threaded here, so umask is ours). */
	old = umask(~(mode_t)cfg->control_mode & 0777);
	rc = uv_pipe_bind(&ctl->srv, path);
	umask(old);
	if (rc) {
		dg_err(LOG_CTL, "control socket %s: %s", path, uv_strerror(rc));
		return DG_EIO;
	}
	if (!(ctl->path = strdup(path)))
		return DG_ENOMEM;
	if (lstat(path, &st) == 0)
		ctl->ino = st.st_ino;
	if (cfg->control_gid >= 0 && chown(path, (uid_t)-1, (gid_t)cfg->control_gid) != 0) {
		dg_err(LOG_CTL, "control socket %s: cannot give it group %ld: %s", path,
		       cfg->control_gid, strerror(errno));
		return DG_EIO;
	}
	if (chmod(path, (mode_t)cfg->control_mode) != 0) {
		dg_err(LOG_CTL, "control socket %s: chmod: %s", path, strerror(errno));
		return DG_EIO;
	}
	/* Room for a burst of clients beyond those served. */
	if ((rc = uv_listen((uv_stream_t *)&ctl->srv, 128, on_connection))) {
		dg_err(LOG_CTL, "control socket %s: listen: %s", path, uv_strerror(rc));
		return DG_EIO;
	}
	dg_info(LOG_CTL, "control socket %s mode %04o", path, (unsigned)cfg->control_mode);
	return 0;
}

int io_ctl_start(uv_loop_t *loop, const struct gw_config *const *cfgp,
		 struct io *io, const struct io_ctl_callbacks *cb,
		 struct io_ctl **out)
{
	struct io_ctl *ctl = calloc(1, sizeof(*ctl));
	int rc;

	*out = NULL;
	if (!ctl)
		return DG_ENOMEM;
	ctl->loop = loop;
	ctl->cfgp = cfgp;
	ctl->io = io;
	if (cb)
		ctl->cb = *cb;
	ctl->started = ctl_now();
	rc = ctl_listen(ctl, *cfgp);
	if (rc) {
		/* The listener handle, if any, closes on the loop. */
		io_ctl_stop(ctl);
		*out = ctl;
		return rc;
	}
	*out = ctl;
	return 0;
}

static void srv_closed(uv_handle_t *h)
{
	(void)h;
}

void io_ctl_stop(struct io_ctl *ctl)
{
	struct stat st;

	if (!ctl || ctl->stopping)
		return;
	ctl->stopping = true;
	while (ctl->conns)
		conn_close(ctl->conns);
	if (ctl->listening)
		uv_close((uv_handle_t *)&ctl->srv, srv_closed);
	/* Only our own file: another gateway may have taken the path since. */
	if (ctl->path && lstat(ctl->path, &st) == 0 && st.st_ino == ctl->ino)
		unlink(ctl->path);
}

void io_ctl_free(struct io_ctl *ctl)
{
	if (!ctl)
		return;
	free(ctl->path);
	free(ctl);
}
