#include "io_dhcp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Events come in bursts (temp file written, renamed): read once after. */
#define IOD_DEBOUNCE_MS 50

struct iod_source {
	char fname[DHCP_DOTS_IFNAME_SIZE + 4];
	char ifname[DHCP_DOTS_IFNAME_SIZE];
	enum dhcp_dots_family family;
	struct dhcp_dots_cand *cands;	/* malloc()ed; NULL when n == 0 */
	size_t n;
	uint64_t rejected_hash;		/* content last warned about, 0: none */
	bool seen;			/* found in the current read */
};

struct io_dhcp {
	uv_loop_t *loop;
	uv_fs_event_t fsev;
	uv_timer_t debounce, rescan;
	char dir[PATH_MAX];
	unsigned rescan_ms;
	io_dhcp_cb cb;
	void *arg;
	bool watching, delivered, stopping, too_many_warned, untrusted_warned;
	int open_handles;
	struct iod_source src[IO_DHCP_MAX_SOURCES];
	size_t n_src;
	struct dhcp_dots_cand *list;	/* the list last delivered */
	size_t n_list;
	/* Scratch space for one file, kept off the stack. */
	char text[DHCP_STATE_MAX + 1];
	struct dhcp_state st;
	struct dhcp_dots_cand cands[DHCP_DOTS_MAX_ADDRS];
};

static void on_debounce(uv_timer_t *t);
static void on_rescan(uv_timer_t *t);

/* FNV-1a: only to tell a rejected file's content from the last one. */
static uint64_t iod_hash(const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
	return h ? h : 1;
}

static int iod_mkdirs(const char *dir)
{
	char tmp[PATH_MAX];
	size_t len = strlen(dir);

	memcpy(tmp, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		tmp[i] = dir[i];
	}
	return 0;
}

/* Reads one state file into buf; the file must be a regular one. */
static int iod_slurp(struct io_dhcp *w, const char *name, char *buf, size_t *len)
{
	int dfd, fd;
	struct stat st;
	ssize_t r;
	size_t got = 0;

	dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	/* O_NOFOLLOW, O_NONBLOCK: never a symlink's target or a FIFO. */
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	close(dfd);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	while (got <= DHCP_STATE_MAX) {
		r = read(fd, buf + got, DHCP_STATE_MAX + 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return 0;
}

static struct iod_source *iod_find(struct io_dhcp *w, const char *fname)
{
	for (size_t i = 0; i < w->n_src; i++)
		if (strcmp(w->src[i].fname, fname) == 0)
			return &w->src[i];
	return NULL;
}

/* Parses one file into its source; on rejection the source is unchanged. */
static void iod_read_file(struct io_dhcp *w, const char *fname, const char *ifname,
			  enum dhcp_dots_family family)
{
	char *text = w->text;
	struct dhcp_state *st = &w->st;
	struct dhcp_dots_cand *cands = w->cands;
	struct iod_source *s = iod_find(w, fname);
	struct dhcp_dots_info info;
	struct dg_diag why;
	size_t len = 0, n = 0;
	uint64_t h;
	int rc;

	if (!s) {
		if (w->n_src == IO_DHCP_MAX_SOURCES) {
			if (!w->too_many_warned)
				dg_warn("dhcp", "%s: more than %d state files, %s ignored",
					w->dir, IO_DHCP_MAX_SOURCES, fname);
			w->too_many_warned = true;
			return;
		}
		s = &w->src[w->n_src++];
		memset(s, 0, sizeof(*s));
		strcpy(s->fname, fname);
		strcpy(s->ifname, ifname);
		s->family = family;
	}
	s->seen = true;
	rc = iod_slurp(w, fname, text, &len);
	if (rc == -ENOENT)
		return;		/* renamed away between readdir and open */
	if (rc < 0) {
		dg_diag_set(&why, "cannot read: %s", strerror(-rc));
		h = iod_hash(why.text, strlen(why.text));
		goto reject;
	}
	h = iod_hash(text, len);
	rc = dhcp_state_parse(text, len, st, &why);
	if (rc == 0 && (strcmp(st->ifname, ifname) != 0 || st->family != family)) {
		dg_diag_set(&why, "interface or family differs from the file name");
		rc = DG_EINVAL;
	}
	if (rc == 0)
		rc = dhcp_state_candidates(st, &info, cands, DHCP_DOTS_MAX_ADDRS, &n, &why);
	if (rc < 0)
		goto reject;
	if (n != s->n || (n && memcmp(cands, s->cands, n * sizeof(cands[0])) != 0)) {
		struct dhcp_dots_cand *copy = NULL;

		if (n) {
			copy = malloc(n * sizeof(cands[0]));
			if (!copy) {
				dg_err("dhcp", "%s/%s: out of memory", w->dir, fname);
				return;
			}
			memcpy(copy, cands, n * sizeof(cands[0]));
		}
		free(s->cands);
		s->cands = copy;
		s->n = n;
		dg_info("dhcp", "%s/%s: %zu candidate(s)%s%s, %u address(es) discarded",
			w->dir, fname, n, info.has_name ? ", reference identifier " : "",
			info.has_name ? info.name : "", info.n_discarded);
	}
	s->rejected_hash = 0;
	return;
reject:
	if (s->rejected_hash != h)
		dg_warn("dhcp", "%s/%s: rejected: %s", w->dir, fname, why.text);
	s->rejected_hash = h;
}

static int iod_cmp(const void *a, const void *b)
{
	const struct iod_source *x = a, *y = b;
	int c = strcmp(x->ifname, y->ifname);

	if (c)
		return c;
	return (int)y->family - (int)x->family;	/* v6 first */
}

/* Builds the merged list; delivers it when it changed (or never was). */
static void iod_merge(struct io_dhcp *w)
{
	struct dhcp_dots_cand *list = NULL;
	size_t n = 0, total = 0;
	int64_t now = (int64_t)time(NULL);

	qsort(w->src, w->n_src, sizeof(w->src[0]), iod_cmp);
	for (size_t i = 0; i < w->n_src; i++)
		total += w->src[i].n;
	if (total) {
		list = malloc(total * sizeof(*list));
		if (!list) {
			dg_err("dhcp", "out of memory merging %zu candidates", total);
			return;
		}
	}
	for (size_t i = 0; i < w->n_src; i++)
		for (size_t j = 0; j < w->src[i].n; j++)
			if (w->src[i].cands[j].expires > now)	/* RFC 8973 §4 */
				list[n++] = w->src[i].cands[j];
	if (w->delivered && n == w->n_list &&
	    (n == 0 || memcmp(list, w->list, n * sizeof(*list)) == 0)) {
		free(list);
		return;
	}
	free(w->list);
	w->list = list;
	w->n_list = n;
	w->delivered = true;
	w->cb(w->list, w->n_list, w->arg);
}

/* The re-read timer also fires at the next expiry, so that expired
 * candidates leave the list on time. */
static void iod_arm_rescan(struct io_dhcp *w)
{
	int64_t now = (int64_t)time(NULL), next = INT64_MAX;
	uint64_t ms = w->rescan_ms;

	for (size_t i = 0; i < w->n_src; i++)
		for (size_t j = 0; j < w->src[i].n; j++)
			if (w->src[i].cands[j].expires > now &&
			    w->src[i].cands[j].expires < next)
				next = w->src[i].cands[j].expires;
	if (next != INT64_MAX && (uint64_t)(next - now) * 1000 < ms)
		ms = (uint64_t)(next - now) * 1000;
	uv_timer_start(&w->rescan, on_rescan, ms, 0);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events,
			int status)
{
	struct io_dhcp *w = h->data;

	if (status < 0) {
		dg_warn("dhcp", "%s: watch failed: %s; re-reading every %u ms",
			w->dir, uv_strerror(status), w->rescan_ms);
		uv_fs_event_stop(&w->fsev);
		w->watching = false;
		return;
	}
	uv_timer_start(&w->debounce, on_debounce, IOD_DEBOUNCE_MS, 0);
}

static void iod_watch(struct io_dhcp *w)
{
	int rc;

	if (w->watching)
		return;
	rc = uv_fs_event_start(&w->fsev, on_fs_event, w->dir, 0);
	if (rc < 0) {
		dg_warn("dhcp", "%s: cannot watch: %s; re-reading every %u ms",
			w->dir, uv_strerror(rc), w->rescan_ms);
		return;
	}
	w->watching = true;
}

/*
 * Whoever can write the directory chooses our DOTS servers: it must be
 * owned by root or by us and writable by nobody else. An untrusted
 * directory counts as empty (warned about once per change).
 */
static bool iod_trusted(struct io_dhcp *w)
{
	struct stat st;
	const char *why = NULL;

	if (lstat(w->dir, &st) < 0)
		why = errno == ENOENT ? NULL : strerror(errno);
	else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		why = "owned by another user";
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		why = "writable by group or others";
	if (why && !w->untrusted_warned)
		dg_warn("dhcp", "%s: ignored: %s", w->dir, why);
	w->untrusted_warned = why != NULL;
	return why == NULL;
}

static void iod_read_dir(struct io_dhcp *w)
{
	DIR *d;
	struct dirent *e;
	size_t kept = 0;

	for (size_t i = 0; i < w->n_src; i++)
		w->src[i].seen = false;
	d = iod_trusted(w) ? opendir(w->dir) : NULL;
	if (d) {
		while ((e = readdir(d)) != NULL) {
			char ifname[DHCP_DOTS_IFNAME_SIZE];
			enum dhcp_dots_family fam;

			if (dhcp_state_filename(e->d_name, ifname, &fam) < 0)
				continue;	/* temp files, anything else */
			iod_read_file(w, e->d_name, ifname, fam);
		}
		closedir(d);
	}
	/* A removed file removes its source (the hook's EXPIRE, RELEASE). */
	for (size_t i = 0; i < w->n_src; i++) {
		if (w->src[i].seen) {
			w->src[kept++] = w->src[i];
			continue;
		}
		dg_info("dhcp", "%s/%s: gone", w->dir, w->src[i].fname);
		free(w->src[i].cands);
	}
	w->n_src = kept;
	iod_merge(w);
}

static void iod_pass(struct io_dhcp *w)
{
	if (w->stopping)
		return;
	iod_watch(w);
	iod_read_dir(w);
	if (!w->stopping)
		iod_arm_rescan(w);
}

static void on_debounce(uv_timer_t *t)
{
	iod_pass(t->data);
}

static void on_rescan(uv_timer_t *t)
{
	iod_pass(t->data);
}

void io_dhcp_rescan(struct io_dhcp *w)
{
	iod_pass(w);
}

int io_dhcp_start(uv_loop_t *loop, const struct io_dhcp_opts *opts,
		  struct io_dhcp **out)
{
	const char *dir = opts->dir ? opts->dir : IO_DHCP_DEFAULT_DIR;
	struct io_dhcp *w;
	int rc;

	if (!opts->cb || strlen(dir) == 0 || strlen(dir) >= PATH_MAX)
		return DG_EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return DG_ENOMEM;
	w->loop = loop;
	strcpy(w->dir, dir);
	w->rescan_ms = opts->rescan_ms ? opts->rescan_ms : IO_DHCP_DEFAULT_RESCAN_MS;
	w->cb = opts->cb;
	w->arg = opts->arg;
	rc = iod_mkdirs(w->dir);
	if (rc < 0)
		dg_warn("dhcp", "%s: cannot create: %s", w->dir, strerror(-rc));
	if (uv_fs_event_init(loop, &w->fsev) < 0) {
		free(w);
		return DG_EIO;
	}
	uv_timer_init(loop, &w->debounce);
	uv_timer_init(loop, &w->rescan);
	w->fsev.data = w->debounce.data = w->rescan.data = w;
	w->open_handles = 3;
	iod_watch(w);
	/* First read from the loop, never from inside this call. */
	uv_timer_start(&w->debounce, on_debounce, 0, 0);
	*out = w;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct io_dhcp *w = h->data;

	if (--w->open_handles)
		return;
	for (size_t i = 0; i < w->n_src; i++)
		free(w->src[i].cands);
	free(w->list);
	free(w);
}

void io_dhcp_stop(struct io_dhcp *w)
{
	if (!w || w->stopping)
		return;
	w->stopping = true;
	uv_close((uv_handle_t *)&w->fsev, on_closed);
	uv_close((uv_handle_t *)&w->debounce, on_closed);
	uv_close((uv_handle_t *)&w->rescan, on_closed);
}
