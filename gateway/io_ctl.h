/*
 * io_ctl.h: the control socket, the only code that touches it.
 *
 * A Unix-domain stream socket (never a network port) on the daemon's
 * libuv loop, at control.socket with control.mode and control.group
 * (config.h). Each line a client sends is one request, answered by
 * ctl_handle() (gateway/ctl.c) with one line. Several clients may be
 * connected at once; none can hold up the gateway:
 *   - a request line is at most CTL_REQUEST_MAX bytes: a longer one gets
 *     an error line and the connection is closed;
 *   - at most IO_CTL_CONN_MAX connections; one more gets an error line
 *     and is closed at once;
 *   - a client that does not read its answers stops being read once
 *     IO_CTL_QUEUE_MAX bytes wait for it, so what it can make the gateway
 *     hold is bounded;
 *   - a connection idle (no request, no answer drained) for
 *     IO_CTL_IDLE_MS is closed.
 */
#ifndef DG_IO_CTL_H
#define DG_IO_CTL_H

#include <uv.h>

#include "config.h"

#define IO_CTL_CONN_MAX 32
#define IO_CTL_QUEUE_MAX (256 * 1024)
#define IO_CTL_IDLE_MS 30000

struct io;
struct io_ctl;

/* What main.c lends the control commands. */
struct io_ctl_callbacks {
	/* Reloads the configuration: 0, or a negative DG_E* code with err
	 * (errlen > 0) saying why. NULL: "reload" is refused. */
	int (*reload)(void *arg, char *err, size_t errlen);
	/* Applies a log level to dotsgw and libcoap. NULL: dotsgw only. */
	void (*set_log_level)(void *arg, enum dg_log_level level);
	void *arg;
};

/*
 * Opens the socket of **cfgp and serves it on loop. cfgp (the address of
 * main's configuration pointer, so that the commands follow a reload),
 * io and cb must outlive the io_ctl. The socket's path, mode and group
 * are taken now: changing them needs a restart.
 *
 * A socket file left by a dead gateway is replaced; a live one (a
 * connection succeeds) is not. The directory holding the socket is
 * created (mode 0755) when missing, its parent never.
 *
 * Returns 0, DG_EEXIST (another gateway answers on that path), DG_EIO (the
 * reason was logged) or DG_ENOMEM.
 */
int io_ctl_start(uv_loop_t *loop, const struct gw_config *const *cfgp,
		 struct io *io, const struct io_ctl_callbacks *cb,
		 struct io_ctl **out);

/* Closes the listener (removing its file) and every connection; the
 * loop then runs until their handles are closed, after which
 * io_ctl_free() releases the rest. */
void io_ctl_stop(struct io_ctl *ctl);
void io_ctl_free(struct io_ctl *ctl);

#endif
