/*
 * ctl.c: the control commands. See ctl.h for the protocol.
 *
 * Everything a request names is hostile: the line may be any bytes, names
 * are echoed back only after cleaning, and nothing here changes the core.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../common/core.h"
#include "config.h"

#define CTL_ECHO_MAX DG_ECHO_MAX

struct ctl_cmd {
	const char *name;
	const char *const *args; /* members allowed besides "cmd" */
	json_t *(*run)(const struct ctl_env *env, const json_t *req, char *err,
		       size_t errlen);
};

/* ---- helpers ---------------------------------------------------------------------- */

/* A JSON string of s; bytes that are not printable ASCII become '?' when
 * s is not valid UTF-8 (jansson refuses it), so that nothing is lost. */
static json_t *jstr(const char *s)
{
	json_t *j;
	char *c;

	if (!s)
		return json_null();
	if ((j = json_string(s)))
		return j;
	if (!(c = strdup(s)))
		return NULL;
	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	j = json_string(c);
	free(c);
	return j;
}

static const char *echo(const char *v, char buf[CTL_ECHO_MAX + 4])
{
	return dg_echo(v, SIZE_MAX, buf);
}

static const char *transport_name(int t)
{
	switch (t) {
	case CORE_TR_DTLS: return "dtls";
	case CORE_TR_TLS: return "tls";
	case CORE_TR_UDP: return "udp";
	case CORE_TR_TCP: return "tcp";
	}
	return "?";
}

static uint64_t secs(dg_time_ms ms)
{
	return ms / 1000u;
}

/* The wall-clock time of monotonic instant t, ISO 8601 UTC. */
static json_t *wall_time(const struct ctl_env *env, dg_time_ms t)
{
	char buf[32];
	struct tm tm;
	time_t w;

	if (t > env->now)
		t = env->now;
	w = (time_t)(env->wall_now - (int64_t)secs(env->now - t));
	if (!gmtime_r(&w, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return json_null();
	return json_string(buf);
}

/* Sorts the objects of arr in place. */
static void sort_array(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr);
	json_t **v;

	if (n < 2 || !(v = malloc(n * sizeof(*v))))
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), cmp);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

static int cmp_str_member(const json_t *a, const json_t *b, const char *k)
{
	const char *x = json_string_value(json_object_get(a, k));
	const char *y = json_string_value(json_object_get(b, k));

	return strcmp(x ? x : "", y ? y : "");
}

static int cmp_int_member(const json_t *a, const json_t *b, const char *k)
{
	json_int_t x = json_integer_value(json_object_get(a, k));
	json_int_t y = json_integer_value(json_object_get(b, k));

	return x < y ? -1 : x > y;
}

/* ---- status ---------------------------------------------------------------------- */

static json_t *cmd_status(const struct ctl_env *env, const json_t *req,
			  char *err, size_t errlen)
{
	struct core_stats st;

	(void)req;
	(void)err;
	(void)errlen;
	core_get_stats(env->core, &st);
	return json_pack("{s:s, s:s?, s:I, s:s, s:b, s:s, s:{s:I, s:I, s:I},"
			 " s:I, s:I, s:I, s:I, s:I}",
			 "version", env->version ? env->version : "?",
			 "id", env->cfg->id,
			 "uptime", (json_int_t)secs(env->now - env->started),
			 "mode", "map",
			 "server-domain", env->cfg->server_domain,
			 "log-level", dg_log_level_name(dg_log_get_level()),
			 "sessions",
			 "downstream", (json_int_t)st.dn_sessions,
			 "upstream", (json_int_t)st.up_sessions,
			 "upstream-ready", (json_int_t)st.up_ready,
			 "mitigations", (json_int_t)st.mitigations,
			 "observers", (json_int_t)st.dn_observers,
			 "pending-upstream-requests", (json_int_t)st.up_pending,
			 "clients", (json_int_t)env->cfg->nclients,
			 "upstreams", (json_int_t)env->cfg->nupstreams);
}

/* ---- sessions -------------------------------------------------------------------- */

struct walk {
	const struct ctl_env *env;
	json_t *arr;
	const char *client;
	bool has_mid;
	uint32_t mid;
	const char *cuid;
	bool nomem;
};

static void walk_add(struct walk *w, json_t *o)
{
	if (!o || json_array_append_new(w->arr, o))
		w->nomem = true;
}

static bool add_dn(const struct core_dn_view *v, void *arg)
{
	struct walk *w = arg;
	char tls[192] = "";
	json_t *o;

	if (w->env->dn_tls)
		w->env->dn_tls(w->env->arg, v->sid, tls, sizeof(tls));
	o = json_pack("{s:s, s:I, s:o, s:o, s:o, s:s, s:o, s:s, s:I, s:I, s:I,"
		      " s:I, s:o, s:I}",
		      "side", "downstream",
		      "id", (json_int_t)v->sid,
		      "peer", jstr(v->peer),
		      "client", jstr(v->client),
		      "cdid", v->cdid && v->cdid[0] ? jstr(v->cdid) : json_null(),
		      "transport", transport_name(v->transport),
		      "cipher", tls[0] ? jstr(tls) : json_null(),
		      "state", "established",
		      "heartbeat-interval", (json_int_t)v->heartbeat_interval,
		      "heartbeats-missed", (json_int_t)v->missed_hb,
		      "missing-hb-allowed", (json_int_t)v->missing_hb_allowed,
		      "observers", (json_int_t)v->observers,
		      "established", wall_time(w->env, v->since),
		      "age", (json_int_t)secs(w->env->now - v->since));
	walk_add(w, o);
	return !w->nomem;
}

static bool add_up(const struct core_up_view *v, void *arg)
{
	struct walk *w = arg;
	const struct gw_upstream *u = v->upstream;
	char tls[192] = "", peer[300];
	json_t *o;

	if (v->ready && w->env->up_tls)
		w->env->up_tls(w->env->arg, v->id, tls, sizeof(tls));
	/* A discovered upstream's session shows its candidate (RFC 8973). */
	const char *host = v->target ? v->target->address : u->address ? u->address : "-";
	unsigned port = v->target ? v->target->port : u->port;
	/* Bracket IPv6 literals so that the port stays readable. */
	snprintf(peer, sizeof(peer), strchr(host, ':') ? "[%s]:%u" : "%s:%u",
		 host, port);
	o = json_pack("{s:s, s:I, s:o, s:o, s:o, s:s, s:o, s:s, s:I, s:I, s:I,"
		      " s:I, s:o, s:o, s:o}",
		      "side", "upstream",
		      "id", (json_int_t)v->id,
		      "peer", jstr(peer),
		      "upstream", jstr(u->name),
		      "client", jstr(v->client),
		      "transport", gw_transport_name(v->target ? (enum gw_transport)v->target->transport
							     : u->transport),
		      "cipher", tls[0] ? jstr(tls) : json_null(),
		      "state", v->state,
		      "heartbeat-interval", (json_int_t)v->heartbeat_interval,
		      "heartbeats-missed", (json_int_t)v->missed_hb,
		      "missing-hb-allowed", (json_int_t)v->missing_hb_allowed,
		      "pending", (json_int_t)v->pending,
		      "established", v->ready ? wall_time(w->env, v->since) : json_null(),
		      "age", v->ready ? json_integer((json_int_t)secs(w->env->now - v->since)) :
					json_null(),
		      "reconnect-in", !strcmp(v->state, "backoff") ?
			      json_integer(v->reconnect_at > w->env->now ?
					   (json_int_t)((v->reconnect_at - w->env->now + 999) / 1000) : 0) :
			      json_null());
	walk_add(w, o);
	return !w->nomem;
}

static int cmp_session(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int r = cmp_str_member(x, y, "side");

	/* "downstream" < "upstream": downstream first. */
	return r ? r : cmp_int_member(x, y, "id");
}

static json_t *cmd_sessions(const struct ctl_env *env, const json_t *req,
			    char *err, size_t errlen)
{
	const json_t *side = json_object_get(req, "side");
	const char *s = side ? json_string_value(side) : NULL;
	struct walk w = { .env = env };
	json_t *rsp;

	if (side && (!s || (strcmp(s, "downstream") && strcmp(s, "upstream")))) {
		snprintf(err, errlen, "side must be \"downstream\" or \"upstream\"");
		return NULL;
	}
	if (!(w.arr = json_array()))
		return NULL;
	if (!s || !strcmp(s, "downstream"))
		core_foreach_dn_session(env->core, env->now, add_dn, &w);
	if (!w.nomem && (!s || !strcmp(s, "upstream")))
		core_foreach_up_session(env->core, add_up, &w);
	if (w.nomem) {
		json_decref(w.arr);
		return NULL;
	}
	sort_array(w.arr, cmp_session);
	rsp = json_object();
	if (!rsp || json_object_set_new(rsp, "sessions", w.arr)) {
		json_decref(rsp);
		return NULL;
	}
	return rsp;
}

/* ---- mitigations ------------------------------------------------------------------ */

static bool add_mitig(const struct core_mitig_view *v, void *arg)
{
	struct walk *w = arg;
	json_t *metrics, *scope, *o;
	const char *key;
	json_t *val;

	if (w->has_mid && v->mid != w->mid)
		return true;
	if (w->cuid && strcmp(w->cuid, v->cuid) != 0)
		return true;
	/* metrics: the last status notification's counters (RFC 9132
	 * §4.4.2), everything the upstream reported but the status itself. */
	metrics = json_object();
	json_object_foreach((json_t *)v->status, key, val)
		if (metrics && strcmp(key, "status") != 0)
			json_object_set(metrics, key, val);
	scope = v->scope ? json_deep_copy(v->scope) : json_object();
	if (scope)
		json_object_del(scope, "lifetime");
	o = json_pack("{s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:b, s:o, s:o}",
		      "client", jstr(v->client),
		      "cuid", jstr(v->cuid),
		      "mid", (json_int_t)v->mid,
		      "cdid", jstr(v->cdid),
		      "upstream", jstr(v->upstream ? v->upstream->name : NULL),
		      "upstream-session", v->up_id ? json_integer((json_int_t)v->up_id) :
						     json_null(),
		      "upstream-cuid", jstr(v->up_cuid),
		      "upstream-mid", (json_int_t)v->up_mid,
		      "status", jstr(json_string_value(json_object_get(v->status, "status"))),
		      "lifetime", (json_int_t)v->lifetime_left,
		      "observed", v->observed,
		      "metrics", metrics,
		      "scope", scope);
	walk_add(w, o);
	return !w->nomem;
}

static int cmp_mitig(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int r = cmp_str_member(x, y, "client");

	if (!r)
		r = cmp_str_member(x, y, "cuid");
	return r ? r : cmp_int_member(x, y, "mid");
}

/* A configured client, or "gateway:UPSTREAM", the gateway's own requests
 * to that upstream (core_own_request). */
static bool client_known(const struct gw_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nclients; i++)
		if (strcmp(cfg->clients[i].name, name) == 0)
			return true;
	if (strncmp(name, "gateway:", 8) == 0)
		for (size_t i = 0; i < cfg->nupstreams; i++)
			if (strcmp(cfg->upstreams[i].name, name + 8) == 0)
				return true;
	return false;
}

/* Optional string argument k; false (err set) when present but no string. */
static bool opt_string(const json_t *req, const char *k, const char **out,
		       char *err, size_t errlen)
{
	const json_t *v = json_object_get(req, k);

	*out = NULL;
	if (!v)
		return true;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s must be a string", k);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

static json_t *list_mitigations(const struct ctl_env *env, struct walk *w)
{
	json_t *rsp;

	if (!(w->arr = json_array()))
		return NULL;
	core_foreach_mitigation(env->core, w->client, env->now, add_mitig, w);
	if (w->nomem) {
		json_decref(w->arr);
		return NULL;
	}
	sort_array(w->arr, cmp_mitig);
	rsp = json_object();
	if (!rsp || json_object_set_new(rsp, "mitigations", w->arr)) {
		json_decref(rsp);
		return NULL;
	}
	return rsp;
}

static json_t *cmd_mitigations(const struct ctl_env *env, const json_t *req,
			       char *err, size_t errlen)
{
	struct walk w = { .env = env };
	char e[CTL_ECHO_MAX + 4];

	if (!opt_string(req, "client", &w.client, err, errlen))
		return NULL;
	if (w.client && !client_known(env->cfg, w.client)) {
		snprintf(err, errlen, "no client named \"%s\"", echo(w.client, e));
		return NULL;
	}
	return list_mitigations(env, &w);
}

static json_t *cmd_mitigation(const struct ctl_env *env, const json_t *req,
			      char *err, size_t errlen)
{
	const json_t *mid = json_object_get(req, "mid");
	struct walk w = { .env = env, .has_mid = true };
	char e[CTL_ECHO_MAX + 4];
	json_t *rsp;

	if (!opt_string(req, "client", &w.client, err, errlen) ||
	    !opt_string(req, "cuid", &w.cuid, err, errlen))
		return NULL;
	if (!w.client) {
		snprintf(err, errlen, "client is required");
		return NULL;
	}
	/* mid is a uint32 (RFC 9132 §5.3). */
	if (!json_is_integer(mid) || json_integer_value(mid) < 0 ||
	    json_integer_value(mid) > UINT32_MAX) {
		snprintf(err, errlen, "mid must be an integer 0..4294967295");
		return NULL;
	}
	w.mid = (uint32_t)json_integer_value(mid);
	if (!client_known(env->cfg, w.client)) {
		snprintf(err, errlen, "no client named \"%s\"", echo(w.client, e));
		return NULL;
	}
	rsp = list_mitigations(env, &w);
	if (rsp && !json_array_size(json_object_get(rsp, "mitigations"))) {
		json_decref(rsp);
		snprintf(err, errlen, "client %s has no mitigation with mid %" PRIu32,
			 echo(w.client, e), w.mid);
		return NULL;
	}
	return rsp;
}

/* ---- log-level, reload, later commands ---------------------------------------- */

static json_t *cmd_log_level(const struct ctl_env *env, const json_t *req,
			     char *err, size_t errlen)
{
	const char *s = json_string_value(json_object_get(req, "level"));
	enum dg_log_level prev = dg_log_get_level(), lvl;
	char e[CTL_ECHO_MAX + 4];

	if (!s) {
		snprintf(err, errlen, "level is required: err, warn, info or debug");
		return NULL;
	}
	if (dg_log_level_parse(s, &lvl)) {
		snprintf(err, errlen, "unknown level \"%s\": err, warn, info or debug",
			 echo(s, e));
		return NULL;
	}
	/* On record at info under whichever level shows it. */
	if (lvl < DG_LOG_INFO)
		dg_info("ctl", "log level %s -> %s (control socket)",
			dg_log_level_name(prev), dg_log_level_name(lvl));
	if (env->set_log_level)
		env->set_log_level(env->arg, lvl);
	else
		dg_log_set_level(lvl);
	if (lvl >= DG_LOG_INFO)
		dg_info("ctl", "log level %s -> %s (control socket)",
			dg_log_level_name(prev), dg_log_level_name(lvl));
	return json_pack("{s:s, s:s}", "log-level", dg_log_level_name(lvl),
			 "previous", dg_log_level_name(prev));
}

static json_t *cmd_reload(const struct ctl_env *env, const json_t *req,
			  char *err, size_t errlen)
{
	char why[512] = "";
	int rc;

	(void)req;
	if (!env->reload) {
		snprintf(err, errlen, "reload is not available");
		return NULL;
	}
	rc = env->reload(env->arg, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "reload failed: %s", why[0] ? why : dg_strerror(rc));
		return NULL;
	}
	return json_pack("{s:s}", "reloaded", "configuration");
}

/* RFC 8973 §4: discovery on the operator's request, besides the TTLs. */
static json_t *cmd_discover(const struct ctl_env *env, const json_t *req,
			    char *err, size_t errlen)
{
	(void)req;
	if (!env->discover) {
		snprintf(err, errlen, "discover is not available");
		return NULL;
	}
	return json_pack("{s:I}", "upstreams", (json_int_t)env->discover(env->arg));
}

/* ---- the gateway's own requests, drain --------------------------------------------- */

/* An optional upstream name: absent, or a string. */
static bool upstream_arg(const json_t *req, const char **name, char *err,
			 size_t errlen)
{
	const json_t *u = json_object_get(req, "upstream");

	*name = json_string_value(u);
	if (u && !*name) {
		snprintf(err, errlen, "upstream must be a name");
		return false;
	}
	return true;
}

static json_t *cmd_request(const struct ctl_env *env, const json_t *req,
			   char *err, size_t errlen)
{
	const json_t *body = json_object_get(req, "body");
	const char *up, *used = NULL;
	char why[256] = "", cuid[64] = "";
	uint32_t mid = 0;
	int code;

	if (!upstream_arg(req, &up, err, errlen))
		return NULL;
	if (!json_is_object(body)) {
		snprintf(err, errlen, "body is required: a mitigation request "
			 "({\"ietf-dots-signal-channel:mitigation-scope\":{\"scope\":[...]}})");
		return NULL;
	}
	if (!env->own_request) {
		snprintf(err, errlen, "operator requests are not available");
		return NULL;
	}
	code = env->own_request(env->arg, up, body, &mid, cuid, &used, why, sizeof(why));
	if (code) {
		snprintf(err, errlen, "%d.%02d %s", code / 100, code % 100, why);
		return NULL;
	}
	return json_pack("{s:s, s:s, s:I}", "upstream", used ? used : "",
			 "cuid", cuid, "mid", (json_int_t)mid);
}

static json_t *cmd_withdraw(const struct ctl_env *env, const json_t *req,
			    char *err, size_t errlen)
{
	const json_t *jmid = json_object_get(req, "mid");
	char why[256] = "";
	const char *up;
	int code;

	if (!upstream_arg(req, &up, err, errlen))
		return NULL;
	if (!json_is_integer(jmid) || json_integer_value(jmid) < 0 ||
	    json_integer_value(jmid) > UINT32_MAX) {
		snprintf(err, errlen, "mid is required: 0..4294967295");
		return NULL;
	}
	if (!env->own_withdraw) {
		snprintf(err, errlen, "operator requests are not available");
		return NULL;
	}
	code = env->own_withdraw(env->arg, up, (uint32_t)json_integer_value(jmid),
				 why, sizeof(why));
	if (code) {
		snprintf(err, errlen, "%d.%02d %s", code / 100, code % 100, why);
		return NULL;
	}
	return json_pack("{s:I, s:s}", "mid", json_integer_value(jmid),
			 "withdrawal", "sent");
}

static json_t *cmd_drain(const struct ctl_env *env, const json_t *req,
			 char *err, size_t errlen)
{
	const json_t *off = json_object_get(req, "off");
	size_t told = 0;

	if (off && !json_is_boolean(off)) {
		snprintf(err, errlen, "off must be true or false");
		return NULL;
	}
	if (!env->drain) {
		snprintf(err, errlen, "drain is not available");
		return NULL;
	}
	if (env->drain(env->arg, !json_is_true(off), &told)) {
		snprintf(err, errlen, "no server.drain alternate is configured");
		return NULL;
	}
	return json_pack("{s:b, s:I}", "draining", !json_is_true(off),
			 "observations-redirected", (json_int_t)told);
}

static const char *const no_args[] = { NULL };
static const char *const sessions_args[] = { "side", NULL };
static const char *const mitigations_args[] = { "client", NULL };
static const char *const mitigation_args[] = { "client", "mid", "cuid", NULL };
static const char *const log_level_args[] = { "level", NULL };
static const char *const request_args[] = { "upstream", "body", NULL };
static const char *const withdraw_args[] = { "upstream", "mid", NULL };
static const char *const drain_args[] = { "off", NULL };

static const struct ctl_cmd ctl_cmds[] = {
	{ "status", no_args, cmd_status },
	{ "sessions", sessions_args, cmd_sessions },
	{ "mitigations", mitigations_args, cmd_mitigations },
	{ "mitigation", mitigation_args, cmd_mitigation },
	{ "log-level", log_level_args, cmd_log_level },
	{ "reload", no_args, cmd_reload },
	{ "discover", no_args, cmd_discover },
	{ "request", request_args, cmd_request },
	{ "withdraw", withdraw_args, cmd_withdraw },
	{ "drain", drain_args, cmd_drain },
};

/* ---- entry point ---------------------------------------------------------------------- */

static char *line_of(json_t *rsp, size_t *out_len)
{
	char *text = rsp ? json_dumps(rsp, JSON_COMPACT) : NULL;
	size_t n;
	char *line;

	if (!text)
		return NULL;
	n = strlen(text);
	line = realloc(text, n + 2);
	if (!line) {
		free(text);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*out_len = n + 1;
	return line;
}

char *ctl_error_line(const char *error, size_t *out_len)
{
	json_t *rsp = json_pack("{s:b, s:o}", "ok", 0, "error", jstr(error));
	char *line = line_of(rsp, out_len);

	json_decref(rsp);
	return line;
}

static const struct ctl_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (strcmp(ctl_cmds[i].name, name) == 0)
			return &ctl_cmds[i];
	return NULL;
}

/* NULL when every member of req is "cmd" or one of args (args NULL: any). */
static const char *unknown_member(const json_t *req, const char *const *args)
{
	const char *key;
	json_t *v;

	if (!args)
		return NULL;
	json_object_foreach((json_t *)req, key, v) {
		size_t i;
		if (strcmp(key, "cmd") == 0)
			continue;
		for (i = 0; args[i] && strcmp(args[i], key) != 0; i++)
			;
		if (!args[i])
			return key;
	}
	return NULL;
}

char *ctl_handle(const struct ctl_env *env, const char *req, size_t len,
		 size_t *out_len)
{
	char err[600] = "", e[CTL_ECHO_MAX + 4];
	const struct ctl_cmd *cmd = NULL;
	json_t *j = NULL, *rsp = NULL, *out;
	json_error_t jerr;
	const char *name, *bad;
	char *line;

	if (len > CTL_REQUEST_MAX) {
		snprintf(err, sizeof(err), "request longer than %d bytes", CTL_REQUEST_MAX);
		goto refuse;
	}
	j = json_loadb(req, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		snprintf(err, sizeof(err), "not JSON: %s", jerr.text);
		goto refuse;
	}
	if (!json_is_object(j)) {
		snprintf(err, sizeof(err), "a request is a JSON object");
		goto refuse;
	}
	name = json_string_value(json_object_get(j, "cmd"));
	if (!name) {
		snprintf(err, sizeof(err), "cmd is required (a string)");
		goto refuse;
	}
	cmd = find_cmd(name);
	if (!cmd) {
		snprintf(err, sizeof(err), "unknown command \"%s\"", echo(name, e));
		goto refuse;
	}
	if ((bad = unknown_member(j, cmd->args))) {
		snprintf(err, sizeof(err), "%s: unknown argument \"%s\"", cmd->name,
			 echo(bad, e));
		goto refuse;
	}
	rsp = cmd->run(env, j, err, sizeof(err));
	if (!rsp) {
		if (!err[0])
			goto nomem;
		goto refuse;
	}
	/* "ok" first: jansson keeps insertion order. */
	out = json_pack("{s:b}", "ok", 1);
	if (!out || json_object_update(out, rsp)) {
		json_decref(out);
		goto nomem;
	}
	json_decref(j);
	json_decref(rsp);
	line = line_of(out, out_len);
	json_decref(out);
	return line;
nomem:
	snprintf(err, sizeof(err), "out of memory");
refuse:
	json_decref(j);
	json_decref(rsp);
	return ctl_error_line(err, out_len);
}
