#include "dg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static dg_log_hook log_hook;
static void *log_hook_arg;
static enum dg_log_level log_level = DG_LOG_INFO;

const char *dg_strerror(int err)
{
	switch (err) {
	case DG_OK: return "success";
	case DG_ENOMEM: return "out of memory";
	case DG_EINVAL: return "invalid input";
	case DG_ENOENT: return "not found";
	case DG_EEXIST: return "already exists";
	case DG_ERANGE: return "out of range";
	case DG_ETOOBIG: return "too big";
	case DG_EPERM: return "not permitted";
	case DG_EIO: return "I/O error";
	case DG_ECONFLICT: return "conflict";
	}
	return "unknown error";
}

void dg_log_set_hook(dg_log_hook hook, void *arg)
{
	log_hook = hook;
	log_hook_arg = arg;
}

void dg_log_set_level(enum dg_log_level level)
{
	log_level = level;
}

enum dg_log_level dg_log_get_level(void)
{
	return log_level;
}

static const char *const level_names[] = { "err", "warn", "info", "debug" };

const char *dg_log_level_name(enum dg_log_level level)
{
	if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[level];
	return "?";
}

int dg_log_level_parse(const char *s, enum dg_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum dg_log_level)i;
			return 0;
		}
	}
	return DG_EINVAL;
}

void dg_log(enum dg_log_level level, const char *group, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!log_hook || level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_hook(level, group, buf, log_hook_arg);
}

void dg_diag_set(struct dg_diag *d, const char *fmt, ...)
{
	va_list ap;

	if (!d)
		return;
	va_start(ap, fmt);
	vsnprintf(d->text, sizeof(d->text), fmt, ap);
	va_end(ap);
}

void dg_log_limited(struct dg_ratelimit *rl, uint64_t now_ms,
		    enum dg_log_level level, const char *group, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (level > log_level || !log_hook)
		return;
	/* A window opens at the first line after a quiet one. */
	if (!rl->n || now_ms - rl->start >= DG_LOG_WINDOW_MS || now_ms < rl->start) {
		rl->start = now_ms;
		rl->n = 0;
	}
	if (rl->n >= DG_LOG_BURST) {
		rl->suppressed++;
		return;
	}
	rl->n++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rl->suppressed) {
		dg_log(level, group, "%s (%lu similar lines suppressed)", msg,
		       rl->suppressed);
		rl->suppressed = 0;
	} else {
		dg_log(level, group, "%s", msg);
	}
}

const char *dg_echo(const char *v, size_t len, char buf[DG_ECHO_MAX + 4])
{
	size_t i;

	if (!v)
		return "?";
	for (i = 0; i < len && v[i] && i < DG_ECHO_MAX; i++)
		buf[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	if (i < len && v[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}
