/*
 * io_metrics.h: the Prometheus endpoint, the only code touching its socket.
 *
 * A plain HTTP/1.x listener on the daemon's libuv loop. GET (or HEAD) of
 * the configured path answers the registry's text rendering
 * (text/plain; version=0.0.4); any other path is 404, any other method
 * 405. One request per connection (Connection: close).
 *
 * Every client is hostile: the request line and headers are bounded
 * (IO_METRICS_HEADER_MAX bytes, else 431; a target longer than
 * IO_METRICS_URL_MAX gets 414), the whole request must arrive within
 * IO_METRICS_REQUEST_MS of the connection (slow loris), the response must
 * be taken within IO_METRICS_WRITE_MS, and at most IO_METRICS_CONN_MAX
 * connections are open at once (more are answered 503 and closed). None
 * of this costs the relay more than the parsing of a few kilobytes.
 */
#ifndef DG_IO_METRICS_H
#define DG_IO_METRICS_H

#include <uv.h>

#include "config.h"
#include "../common/metrics.h"

#define IO_METRICS_CONN_MAX 16
#define IO_METRICS_HEADER_MAX 8192
#define IO_METRICS_URL_MAX 1024
#define IO_METRICS_REQUEST_MS 5000
#define IO_METRICS_WRITE_MS 10000
#define IO_METRICS_LINGER_MS 1000

struct io_metrics;

/*
 * Listens on cfg->address:cfg->port and serves reg (which must outlive
 * the endpoint) at cfg->path, which is copied: a reload that changes cfg
 * takes effect at the next start. Registers its own counters in reg. Returns 0, DG_EIO
 * (cannot listen: logged) or DG_ENOMEM.
 */
int io_metrics_start(uv_loop_t *loop, const struct gw_metrics *cfg,
		     struct metrics *reg, struct io_metrics **out);

/* Closes the listener and every connection; the loop then runs until
 * their handles are closed, after which io_metrics_free() releases the
 * rest. Both accept NULL. */
void io_metrics_stop(struct io_metrics *im);
void io_metrics_free(struct io_metrics *im);

#endif
