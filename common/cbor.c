/*
 * cbor.c: schema-driven CBOR (RFC 8949) <-> JSON model codec for DOTS
 * signal-channel bodies (RFC 9132 §6). See cbor.h for the contract.
 *
 * One table describes every context (a map node and its members); both
 * directions walk it, so a key is only ever interpreted where the schema
 * puts it (cbor-keys-notes.md §3).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbor.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum cb_kind {
	CB_MAP,      /* container: members in cb_node.mem */
	CB_LIST,     /* array of cb_node.elem */
	CB_TEXT,     /* text string */
	CB_UINT,     /* unsigned integer <= cb_node.max, JSON integer */
	CB_U64,      /* unsigned 64-bit integer, JSON string */
	CB_LIFETIME, /* uint32 or -1 */
	CB_BOOL,
	CB_ENUM,     /* unsigned integer <-> label */
	CB_DEC,      /* decimal64, fraction-digits 2: tag 4 <-> "1.50" */
};

struct cb_enum {
	const char *attr;
	const char *const *labels; /* labels[v - 1] */
	int n;
};

struct cb_member;

struct cb_node {
	enum cb_kind kind;
	uint32_t max;                /* CB_UINT */
	const struct cb_enum *en;    /* CB_ENUM */
	const struct cb_node *elem;  /* CB_LIST */
	const char *ctx;             /* CB_MAP: context name in diagnostics */
	const struct cb_member *mem; /* CB_MAP */
	size_t nmem;
};

struct cb_member {
	uint32_t key;
	const char *name; /* RFC 7951 member name */
	const struct cb_node *node;
};

/* ---- Enumerations (cbor-keys-notes.md §4) ------------------------------ */

static const char *const en_status_l[] = {
	"attack-mitigation-in-progress", "attack-successfully-mitigated",
	"attack-stopped", "attack-exceeded-capability",
	"dots-client-withdrawn-mitigation", "attack-mitigation-terminated",
	"attack-mitigation-withdrawn", "attack-mitigation-signal-loss",
};
static const char *const en_cstatus_l[] = {
	"request-inactive-other-active", "request-active",
	"all-requests-inactive",
};
/* 4 is RFC 9066, 5 RFC 9244 (cbor-keys-notes.md §5.8). */
static const char *const en_ccause_l[] = {
	"overlapping-targets", "conflict-with-acceptlist", "cuid-collision",
	"request-rejected-legitimate-traffic", "overlapping-pipes",
};
static const char *const en_astatus_l[] = {
	"under-attack", "attack-successfully-mitigated",
};
static const char *const en_activation_l[] = {
	"activate-when-mitigating", "immediate", "deactivate",
};

#define EN(a, l) { a, l, (int)ARRAY_SIZE(l) }
static const struct cb_enum en_status = EN("status", en_status_l);
static const struct cb_enum en_cstatus = EN("conflict-status", en_cstatus_l);
static const struct cb_enum en_ccause = EN("conflict-cause", en_ccause_l);
static const struct cb_enum en_astatus = EN("attack-status", en_astatus_l);
static const struct cb_enum en_activation =
	EN("activation-type", en_activation_l);

static const struct cb_enum *const cb_enums[] = {
	&en_status, &en_cstatus, &en_ccause, &en_astatus, &en_activation,
};

/* ---- Schema -------------------------------------------------------------- */

static const struct cb_node n_text = { .kind = CB_TEXT };
static const struct cb_node n_u8 = { .kind = CB_UINT, .max = UINT8_MAX };
static const struct cb_node n_u16 = { .kind = CB_UINT, .max = UINT16_MAX };
static const struct cb_node n_u32 = { .kind = CB_UINT, .max = UINT32_MAX };
static const struct cb_node n_u64 = { .kind = CB_U64 };
static const struct cb_node n_lifetime = { .kind = CB_LIFETIME };
static const struct cb_node n_bool = { .kind = CB_BOOL };
static const struct cb_node n_dec = { .kind = CB_DEC };
static const struct cb_node n_status = { .kind = CB_ENUM, .en = &en_status };
static const struct cb_node n_cstatus = { .kind = CB_ENUM, .en = &en_cstatus };
static const struct cb_node n_ccause = { .kind = CB_ENUM, .en = &en_ccause };
static const struct cb_node n_astatus = { .kind = CB_ENUM, .en = &en_astatus };
static const struct cb_node n_activation = { .kind = CB_ENUM,
					     .en = &en_activation };
static const struct cb_node n_text_list = { .kind = CB_LIST, .elem = &n_text };
static const struct cb_node n_u8_list = { .kind = CB_LIST, .elem = &n_u8 };

#define MAP(c, m) { .kind = CB_MAP, .ctx = c, .mem = m, .nmem = ARRAY_SIZE(m) }
#define LIST(e) { .kind = CB_LIST, .elem = e }

static const struct cb_member m_port_range[] = {
	{ 8, "lower-port", &n_u16 },
	{ 9, "upper-port", &n_u16 },
};
static const struct cb_node n_port_range = MAP("port range", m_port_range);
static const struct cb_node n_port_ranges = LIST(&n_port_range);

static const struct cb_member m_icmp_range[] = {
	{ 32771, "lower-type", &n_u8 },
	{ 32772, "upper-type", &n_u8 },
};
static const struct cb_node n_icmp_range = MAP("icmp type range",
					       m_icmp_range);
static const struct cb_node n_icmp_ranges = LIST(&n_icmp_range);

/* RFC 9133 scope-level ACL reference. */
static const struct cb_member m_ctl_acl[] = {
	{ 23, "acl-name", &n_text },
	{ 52, "activation-type", &n_activation },
};
static const struct cb_node n_ctl_acl = MAP("acl-list entry", m_ctl_acl);
static const struct cb_node n_ctl_acls = LIST(&n_ctl_acl);

/* RFC 9132 conflict-scope ACL reference. */
static const struct cb_member m_cs_acl[] = {
	{ 23, "acl-name", &n_text },
	{ 24, "acl-type", &n_text },
};
static const struct cb_node n_cs_acl = MAP("conflict acl-list entry",
					   m_cs_acl);
static const struct cb_node n_cs_acls = LIST(&n_cs_acl);

static const struct cb_member m_conflict_scope[] = {
	{ 5, "mid", &n_u32 },
	{ 6, "target-prefix", &n_text_list },
	{ 7, "target-port-range", &n_port_ranges },
	{ 10, "target-protocol", &n_u8_list },
	{ 11, "target-fqdn", &n_text_list },
	{ 12, "target-uri", &n_text_list },
	{ 13, "alias-name", &n_text_list },
	{ 22, "acl-list", &n_cs_acls },
};
static const struct cb_node n_conflict_scope = MAP("conflict-scope",
						   m_conflict_scope);

static const struct cb_member m_conflict_info[] = {
	{ 18, "conflict-status", &n_cstatus },
	{ 19, "conflict-cause", &n_ccause },
	{ 20, "retry-timer", &n_u32 },
	{ 21, "conflict-scope", &n_conflict_scope },
};
static const struct cb_node n_conflict_info = MAP("conflict-information",
						  m_conflict_info);

static const struct cb_member m_scope_entry[] = {
	{ 5, "mid", &n_u32 },
	{ 6, "target-prefix", &n_text_list },
	{ 7, "target-port-range", &n_port_ranges },
	{ 10, "target-protocol", &n_u8_list },
	{ 11, "target-fqdn", &n_text_list },
	{ 12, "target-uri", &n_text_list },
	{ 13, "alias-name", &n_text_list },
	{ 14, "lifetime", &n_lifetime },
	{ 15, "mitigation-start", &n_u64 },
	{ 16, "status", &n_status },
	{ 17, "conflict-information", &n_conflict_info },
	{ 25, "bytes-dropped", &n_u64 },
	{ 26, "bps-dropped", &n_u64 },
	{ 27, "pkts-dropped", &n_u64 },
	{ 28, "pps-dropped", &n_u64 },
	{ 29, "attack-status", &n_astatus },
	{ 45, "trigger-mitigation", &n_bool },
	{ 53, "ietf-dots-signal-control:acl-list", &n_ctl_acls },
	{ 32768, "ietf-dots-call-home:source-prefix", &n_text_list },
	{ 32769, "ietf-dots-call-home:source-port-range", &n_port_ranges },
	{ 32770, "ietf-dots-call-home:source-icmp-type-range", &n_icmp_ranges },
};
/* Duplicate detection keeps one bit per member of a context. */
_Static_assert(ARRAY_SIZE(m_scope_entry) <= 64, "seen mask too small");
static const struct cb_node n_scope_entry = MAP("scope entry", m_scope_entry);
static const struct cb_node n_scope_list = LIST(&n_scope_entry);

static const struct cb_member m_mitigation[] = {
	{ 2, "scope", &n_scope_list },
};
static const struct cb_node n_mitigation = MAP("mitigation-scope",
					       m_mitigation);

static const struct cb_member m_param[] = {
	{ 34, "max-value", &n_u32 },
	{ 35, "min-value", &n_u32 },
	{ 36, "current-value", &n_u32 },
};
static const struct cb_node n_param = MAP("parameter", m_param);

static const struct cb_member m_dparam[] = {
	{ 41, "max-value-decimal", &n_dec },
	{ 42, "min-value-decimal", &n_dec },
	{ 43, "current-value-decimal", &n_dec },
};
static const struct cb_node n_dparam = MAP("decimal parameter", m_dparam);

static const struct cb_member m_config_set[] = {
	{ 33, "heartbeat-interval", &n_param },
	{ 37, "missing-hb-allowed", &n_param },
	{ 38, "max-retransmit", &n_param },
	{ 39, "ack-timeout", &n_dparam },
	{ 40, "ack-random-factor", &n_dparam },
	{ 50, "probing-rate", &n_param },
};
static const struct cb_node n_config_set = MAP("config set", m_config_set);

static const struct cb_member m_config[] = {
	{ 32, "mitigating-config", &n_config_set },
	{ 44, "idle-config", &n_config_set },
};
static const struct cb_node n_config = MAP("signal-config", m_config);

static const struct cb_member m_redirect[] = {
	{ 47, "alt-server", &n_text },
	{ 48, "alt-server-record", &n_text_list },
};
static const struct cb_node n_redirect = MAP("redirected-signal", m_redirect);

static const struct cb_member m_heartbeat[] = {
	{ 51, "peer-hb-status", &n_bool },
};
static const struct cb_node n_heartbeat = MAP("heartbeat", m_heartbeat);

static const struct cb_member m_top[] = {
	{ 1, CBOR_MSG_MITIGATION, &n_mitigation },
	{ 30, CBOR_MSG_CONFIG, &n_config },
	{ 46, CBOR_MSG_REDIRECT, &n_redirect },
	{ 49, CBOR_MSG_HEARTBEAT, &n_heartbeat },
};
static const struct cb_node n_top = MAP("top level", m_top);

/* Every context, to name a known key found in the wrong one. */
static const struct cb_node *const cb_contexts[] = {
	&n_top, &n_mitigation, &n_scope_entry, &n_port_range, &n_icmp_range,
	&n_ctl_acl, &n_cs_acl, &n_conflict_info, &n_conflict_scope,
	&n_config, &n_config_set, &n_param, &n_dparam, &n_redirect,
	&n_heartbeat,
};

/* Registered keys that never belong in a body. */
static const struct {
	uint32_t key;
	const char *name;
	const char *why;
} cb_forbidden[] = {
	{ 3, "cdid", "RFC 9132 §4.4.1.2" },
	{ 4, "cuid", "RFC 9132 §4.4.1.1" },
	{ 31, "sid", "RFC 9132 Appendix A" },
};

static const struct cb_member *cb_member_by_key(const struct cb_node *map,
						uint64_t key, size_t *idx)
{
	for (size_t i = 0; i < map->nmem; i++) {
		if (map->mem[i].key == key) {
			*idx = i;
			return &map->mem[i];
		}
	}
	return NULL;
}

static const struct cb_member *cb_member_by_name(const struct cb_node *map,
						 const char *name)
{
	for (size_t i = 0; i < map->nmem; i++)
		if (strcmp(map->mem[i].name, name) == 0)
			return &map->mem[i];
	return NULL;
}

static const char *cb_known_key_name(uint64_t key)
{
	size_t idx;

	for (size_t i = 0; i < ARRAY_SIZE(cb_contexts); i++) {
		const struct cb_member *m =
			cb_member_by_key(cb_contexts[i], key, &idx);
		if (m)
			return m->name;
	}
	return NULL;
}

/* RFC 9132 §6 / §10.6.1.1: 1-127 and 256-16383 must be understood. */
static bool cb_key_required(uint64_t key)
{
	return key <= 127 || (key >= 256 && key <= 16383); /* 0: reserved */
}

/* ---- Enum helpers (public) ------------------------------------------------ */

static const struct cb_enum *cb_enum_find(const char *attr)
{
	if (!attr)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(cb_enums); i++)
		if (strcmp(cb_enums[i]->attr, attr) == 0)
			return cb_enums[i];
	return NULL;
}

static int cb_enum_lookup(const struct cb_enum *en, const char *label)
{
	for (int i = 0; i < en->n; i++)
		if (strcmp(en->labels[i], label) == 0)
			return i + 1;
	return -1;
}

int cbor_enum_value(const char *attr, const char *label)
{
	const struct cb_enum *en = cb_enum_find(attr);

	if (!en || !label)
		return -1;
	return cb_enum_lookup(en, label);
}

const char *cbor_enum_label(const char *attr, int value)
{
	const struct cb_enum *en = cb_enum_find(attr);

	if (!en || value < 1 || value > en->n)
		return NULL;
	return en->labels[value - 1];
}

/* ---- Diagnostics path ------------------------------------------------------ */

/*
 * Where the walk is: a stack of member names and array indices, turned
 * into text only when a diagnostic needs it (formatting it at every step
 * cost more than the decoding itself). A segment prints as at least two
 * characters ("[0]", ".x"), so segments past CB_PATH_SEGS could only fall
 * beyond the 127 characters the text keeps: they are counted, not stored.
 */
#define CB_PATH_SEGS 64

struct cb_seg {
	const char *name; /* a member, or NULL for an array index */
	uint64_t index;
};

struct cb_path {
	struct cb_seg v[CB_PATH_SEGS];
	size_t n;
};

struct cb_text {
	char s[128];
	size_t len;
};

static size_t path_add(struct cb_text *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends to the text, up to its size. */
static size_t path_add(struct cb_text *p, const char *fmt, ...)
{
	size_t old = p->len;
	va_list ap;
	int n;

	if (p->len >= sizeof(p->s) - 1)
		return old;
	va_start(ap, fmt);
	n = vsnprintf(p->s + p->len, sizeof(p->s) - p->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		p->len += (size_t)n;
	if (p->len > sizeof(p->s) - 1)
		p->len = sizeof(p->s) - 1;
	return old;
}

/* Pushes a segment; returns the depth to restore with path_pop(). */
static size_t path_push(struct cb_path *p, const char *name, uint64_t index)
{
	size_t old = p->n;

	if (p->n < CB_PATH_SEGS)
		p->v[p->n] = (struct cb_seg){ name, index };
	p->n++;
	return old;
}

static size_t path_member(struct cb_path *p, const char *name)
{
	return path_push(p, name, 0);
}

static size_t path_index(struct cb_path *p, uint64_t index)
{
	return path_push(p, NULL, index);
}

static void path_pop(struct cb_path *p, size_t old)
{
	p->n = old;
}

/* Member names appear without their module prefix to keep diagnostics
 * short: "mitigation-scope.scope[0].lifetime". */
static void path_text(const struct cb_path *p, struct cb_text *t)
{
	size_t n = p->n < CB_PATH_SEGS ? p->n : CB_PATH_SEGS;

	t->len = 0;
	t->s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *name = p->v[i].name, *colon;

		if (!name) {
			path_add(t, "[%" PRIu64 "]", p->v[i].index);
			continue;
		}
		colon = strchr(name, ':');
		path_add(t, "%s%s", t->len ? "." : "", colon ? colon + 1 : name);
	}
}

static void cb_fail(struct dg_diag *diag, const struct cb_path *p,
		    const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static void cb_fail(struct dg_diag *diag, const struct cb_path *p,
		    const char *fmt, va_list ap)
{
	char msg[sizeof(diag->text)];
	struct cb_text t;

	if (!diag)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	path_text(p, &t);
	dg_diag_set(diag, "%s: %s", t.len ? t.s : "top level", msg);
}

/* Returns 0, 1 when s is not valid UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), 2 when it is but contains NUL. */
static int cb_text_check(const uint8_t *s, size_t n)
{
	bool nul = false;
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		uint32_t cp, min;
		size_t need;

		if (c < 0x80) {
			nul |= c == 0;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 1;
		}
		if (n - i - 1 < need)
			return 1;
		for (size_t j = 1; j <= need; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 1;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 1;
		i += need + 1;
	}
	return nul ? 2 : 0;
}

/* ---- Decoder ---------------------------------------------------------------- */

enum { MT_UINT, MT_NINT, MT_BYTES, MT_TEXT, MT_ARRAY, MT_MAP, MT_TAG,
       MT_SIMPLE };

struct rd {
	const uint8_t *buf;
	size_t len, pos;
	int depth;
	struct dg_diag *diag;
	struct cb_path path;
};

struct rd_head {
	size_t off;   /* where the head starts */
	int major;
	int ai;       /* additional information (low 5 bits) */
	uint64_t val; /* argument; 0 when indefinite */
	bool indef;   /* ai 31: indefinite length, or break for major 7 */
};

static int rd_fail(struct rd *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int rd_fail(struct rd *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cb_fail(r->diag, &r->path, fmt, ap);
	va_end(ap);
	return DG_EINVAL;
}

/* Not well-formed CBOR (RFC 8949 §3): reported by offset, not path. */
static int rd_malformed(struct rd *r, size_t off, const char *what)
{
	dg_diag_set(r->diag, "offset %zu: %s", off, what);
	return DG_EINVAL;
}

static size_t rd_left(const struct rd *r)
{
	return r->len - r->pos;
}

static int rd_head(struct rd *r, struct rd_head *h)
{
	size_t n;
	uint8_t b;

	h->off = r->pos;
	if (rd_left(r) < 1)
		return rd_malformed(r, r->pos, "truncated CBOR");
	b = r->buf[r->pos++];
	h->major = b >> 5;
	h->ai = b & 0x1f;
	h->val = 0;
	h->indef = false;
	if (h->ai < 24) {
		h->val = (uint64_t)h->ai;
		return 0;
	}
	if (h->ai == 31) {
		/* RFC 8949 §3.2: no indefinite integers or tags. */
		if (h->major == MT_UINT || h->major == MT_NINT ||
		    h->major == MT_TAG)
			return rd_malformed(r, h->off,
					    "indefinite length not allowed");
		h->indef = true;
		return 0;
	}
	if (h->ai > 27)
		return rd_malformed(r, h->off, "reserved additional information");
	n = (size_t)1 << (h->ai - 24);
	if (rd_left(r) < n)
		return rd_malformed(r, h->off, "truncated CBOR");
	for (size_t i = 0; i < n; i++)
		h->val = h->val << 8 | r->buf[r->pos++];
	/* RFC 8949 §3.3: one-byte simple values below 32 are not well-formed. */
	if (h->major == MT_SIMPLE && h->ai == 24 && h->val < 32)
		return rd_malformed(r, h->off, "invalid simple value");
	return 0;
}

static const char *rd_type_name(const struct rd_head *h)
{
	static const char *const names[] = {
		"unsigned integer", "negative integer", "byte string",
		"text string", "array", "map", "tag",
	};

	if (h->major != MT_SIMPLE)
		return names[h->major];
	if (h->indef)
		return "break";
	switch (h->ai) {
	case 20:
	case 21:
		return "boolean";
	case 22:
		return "null";
	case 23:
		return "undefined";
	case 25:
	case 26:
	case 27:
		return "float";
	default:
		return "simple value";
	}
}

static int rd_type_error(struct rd *r, const char *expected,
			 const struct rd_head *h)
{
	if (h->major == MT_TAG)
		return rd_fail(r, "expected %s, got tag %" PRIu64, expected,
			       h->val);
	return rd_fail(r, "expected %s, got %s", expected, rd_type_name(h));
}

/* Enters an array or map whose head h was read: checks the nesting depth
 * and bounds the count by the bytes left, before anyone allocates for it.
 * On success the caller leaves with r->depth--. */
static int rd_open(struct rd *r, const struct rd_head *h)
{
	if (r->depth >= CBOR_MAX_DEPTH)
		return rd_malformed(r, h->off, "nesting too deep");
	/* Every item takes at least one byte; a map entry two. */
	if (!h->indef && (h->val > rd_left(r) ||
			  (h->major == MT_MAP && h->val > rd_left(r) / 2)))
		return rd_malformed(r, h->off, "declared length exceeds input");
	r->depth++;
	return 0;
}

static int rd_container(struct rd *r, int major, const char *expected,
			struct rd_head *h)
{
	int rc = rd_head(r, h);

	if (rc)
		return rc;
	if (h->major != major)
		return rd_type_error(r, expected, h);
	return rd_open(r, h);
}

/* Loop control for a container: sets *more unless the (definite) count is
 * exhausted or the (indefinite) break code comes next, which it consumes. */
static int rd_next(struct rd *r, const struct rd_head *h, uint64_t i,
		   bool *more)
{
	if (!h->indef) {
		*more = i < h->val;
		return 0;
	}
	if (rd_left(r) < 1)
		return rd_malformed(r, r->pos, "truncated CBOR");
	*more = r->buf[r->pos] != 0xff;
	if (!*more)
		r->pos++;
	return 0;
}

/* Takes the bytes of one definite string (or chunk) whose head h was read.
 * Each text chunk must be valid UTF-8 by itself (RFC 8949 §3.2.3). */
static int rd_chunk(struct rd *r, const struct rd_head *h, const uint8_t **p,
		    size_t *n)
{
	if (h->val > rd_left(r))
		return rd_malformed(r, h->off, "declared length exceeds input");
	*p = r->buf + r->pos;
	*n = (size_t)h->val;
	r->pos += *n;
	if (h->major == MT_TEXT && cb_text_check(*p, *n) == 1)
		return rd_malformed(r, h->off, "invalid UTF-8 in text string");
	return 0;
}

/* Reads the string whose head h was read, copying its bytes to dst unless
 * NULL; *total is its length. Indefinite strings are definite chunks of
 * the same major type up to a break (RFC 8949 §3.2.3). */
static int rd_string_chunks(struct rd *r, const struct rd_head *h,
			    uint8_t *dst, size_t *total)
{
	struct rd_head c;
	const uint8_t *p;
	size_t n;
	int rc;

	*total = 0;
	if (!h->indef) {
		rc = rd_chunk(r, h, &p, &n);
		if (rc)
			return rc;
		if (dst)
			memcpy(dst, p, n);
		*total = n;
		return 0;
	}
	for (;;) {
		if (rd_left(r) < 1)
			return rd_malformed(r, r->pos, "truncated CBOR");
		if (r->buf[r->pos] == 0xff) {
			r->pos++;
			return 0;
		}
		rc = rd_head(r, &c);
		if (rc)
			return rc;
		if (c.major != h->major || c.indef)
			return rd_malformed(r, c.off, "bad indefinite string chunk");
		rc = rd_chunk(r, &c, &p, &n);
		if (rc)
			return rc;
		if (dst)
			memcpy(dst + *total, p, n);
		*total += n;
	}
}

/* Skips one well-formed item of any type (a comprehension-optional
 * attribute we do not interpret, RFC 9132 §6). */
static int rd_skip(struct rd *r)
{
	struct rd_head h;
	size_t n;
	bool more;
	int rc = rd_head(r, &h);

	if (rc)
		return rc;
	switch (h.major) {
	case MT_BYTES:
	case MT_TEXT:
		return rd_string_chunks(r, &h, NULL, &n);
	case MT_ARRAY:
	case MT_MAP:
		rc = rd_open(r, &h);
		if (rc)
			return rc;
		for (uint64_t i = 0; !rc; i++) {
			rc = rd_next(r, &h, i, &more);
			if (rc || !more)
				break;
			rc = rd_skip(r);
			if (!rc && h.major == MT_MAP)
				rc = rd_skip(r);
		}
		r->depth--;
		return rc;
	case MT_TAG:
		/* A chain of tags nests like containers do. */
		if (++r->depth > CBOR_MAX_DEPTH)
			return rd_malformed(r, h.off, "nesting too deep");
		rc = rd_skip(r);
		r->depth--;
		return rc;
	case MT_SIMPLE:
		if (h.indef)
			return rd_malformed(r, h.off, "unexpected break");
		return 0;
	default:
		return 0;
	}
}

static int rd_value(struct rd *r, const struct cb_node *node, json_t **out);

static int rd_text(struct rd *r, json_t **out)
{
	struct rd_head h;
	size_t start, total;
	uint8_t *tmp = NULL;
	const uint8_t *s;
	int rc = rd_head(r, &h);

	if (rc)
		return rc;
	if (h.major != MT_TEXT)
		return rd_type_error(r, "text string", &h);
	start = r->pos;
	rc = rd_string_chunks(r, &h, NULL, &total);
	if (rc)
		return rc;
	s = r->buf + start;
	if (h.indef) {
		/* Second pass to join the chunks, now that the total is
		 * known (and bounded by the input). It cannot fail. */
		tmp = malloc(total ? total : 1);
		if (!tmp)
			return DG_ENOMEM;
		r->pos = start;
		(void)rd_string_chunks(r, &h, tmp, &total);
		s = tmp;
	}
	if (cb_text_check(s, total) == 2)
		rc = rd_fail(r, "text string contains NUL");
	else if (!(*out = json_stringn_nocheck((const char *)s, total)))
		rc = DG_ENOMEM;
	free(tmp);
	return rc;
}

/* A CBOR integer (major 0 or 1) that fits int64_t. */
static int rd_int64(struct rd *r, int64_t *v)
{
	struct rd_head h;
	int rc = rd_head(r, &h);

	if (rc)
		return rc;
	if (h.major != MT_UINT && h.major != MT_NINT)
		return rd_type_error(r, "integer", &h);
	if (h.val > INT64_MAX)
		return rd_fail(r, "integer out of range");
	*v = h.major == MT_UINT ? (int64_t)h.val : -(int64_t)h.val - 1;
	return 0;
}

/* Turns m * 10^e into hundredths, if exact. */
static int cb_dec_scale(int64_t m, int64_t e, int64_t *hundredths)
{
	if (m == 0) {
		*hundredths = 0;
		return 0;
	}
	/* |m| < 10^19: beyond these exponents the value cannot fit or
	 * cannot be exact. */
	if (e > 20 || e < -40)
		return -1;
	for (e += 2; e > 0; e--)
		if (__builtin_mul_overflow(m, 10, &m))
			return -1;
	for (; e < 0; e++) {
		if (m % 10)
			return -1;
		m /= 10;
	}
	*hundredths = m;
	return 0;
}

static int cb_dec_format(int64_t h, json_t **out)
{
	uint64_t u = h < 0 ? 0 - (uint64_t)h : (uint64_t)h;
	char s[32];

	snprintf(s, sizeof(s), "%s%" PRIu64 ".%02u", h < 0 ? "-" : "",
		 u / 100, (unsigned)(u % 100));
	*out = json_string(s);
	return *out ? 0 : DG_ENOMEM;
}

/* RFC 8949 §3.4.4 decimal fraction: tag 4 [exponent, mantissa]. */
static int rd_decimal(struct rd *r, json_t **out)
{
	struct rd_head h, a;
	int64_t e, m, hundredths;
	bool more;
	int rc = rd_head(r, &h);

	if (rc)
		return rc;
	if (h.major != MT_TAG || h.val != 4)
		return rd_type_error(r, "decimal fraction (tag 4)", &h);
	rc = rd_container(r, MT_ARRAY, "array [exponent, mantissa]", &a);
	if (rc)
		return rc;
	if (!a.indef && a.val != 2)
		rc = rd_fail(r, "decimal fraction must have 2 elements");
	if (!rc)
		rc = rd_int64(r, &e);
	if (!rc)
		rc = rd_int64(r, &m);
	if (!rc)
		rc = rd_next(r, &a, 2, &more);
	if (!rc && more)
		rc = rd_fail(r, "decimal fraction must have 2 elements");
	r->depth--;
	if (rc)
		return rc;
	if (cb_dec_scale(m, e, &hundredths))
		return rd_fail(r, "decimal %" PRId64 "e%" PRId64
			       " not representable with 2 fraction digits",
			       m, e);
	return cb_dec_format(hundredths, out);
}

static int rd_scalar(struct rd *r, const struct cb_node *node, json_t **out)
{
	struct rd_head h;
	char s[24];
	int rc = rd_head(r, &h);

	if (rc)
		return rc;
	switch (node->kind) {
	case CB_BOOL:
		if (h.major != MT_SIMPLE || (h.ai != 20 && h.ai != 21))
			return rd_type_error(r, "boolean", &h);
		*out = json_boolean(h.ai == 21);
		break;
	case CB_LIFETIME:
		/* RFC 9132 §4.4.1.1: -1 (0x20) means indefinite; it is the
		 * only negative value. */
		if (h.major == MT_NINT && h.val == 0) {
			*out = json_integer(-1);
			break;
		}
		if (h.major == MT_NINT)
			return rd_fail(r, "negative value other than -1");
		if (h.major != MT_UINT)
			return rd_type_error(r, "integer", &h);
		if (h.val > UINT32_MAX)
			return rd_fail(r, "value %" PRIu64 " out of range",
				       h.val);
		*out = json_integer((json_int_t)h.val);
		break;
	case CB_UINT:
	case CB_U64:
	case CB_ENUM:
		if (h.major != MT_UINT)
			return rd_type_error(r, "unsigned integer", &h);
		if (node->kind == CB_U64) {
			snprintf(s, sizeof(s), "%" PRIu64, h.val);
			*out = json_string(s);
		} else if (node->kind == CB_ENUM) {
			if (h.val < 1 || h.val > (uint64_t)node->en->n)
				return rd_fail(r, "value %" PRIu64
					       " has no label", h.val);
			*out = json_string(node->en->labels[h.val - 1]);
		} else {
			if (h.val > node->max)
				return rd_fail(r, "value %" PRIu64
					       " out of range (max %" PRIu32
					       ")", h.val, node->max);
			*out = json_integer((json_int_t)h.val);
		}
		break;
	default:
		return DG_EINVAL;
	}
	return *out ? 0 : DG_ENOMEM;
}

static int rd_list(struct rd *r, const struct cb_node *node, json_t **out)
{
	struct rd_head h;
	json_t *arr = NULL, *v;
	size_t old;
	bool more;
	int rc = rd_container(r, MT_ARRAY, "array", &h);

	if (rc)
		return rc;
	arr = json_array();
	if (!arr)
		rc = DG_ENOMEM;
	for (uint64_t i = 0; !rc; i++) {
		rc = rd_next(r, &h, i, &more);
		if (rc || !more)
			break;
		old = path_index(&r->path, i);
		rc = rd_value(r, node->elem, &v);
		path_pop(&r->path, old);
		if (!rc && json_array_append_new(arr, v))
			rc = DG_ENOMEM;
	}
	r->depth--;
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

static int cb_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Handles a key the context does not have: an error unless it is an
 * unknown comprehension-optional key, which is skipped (RFC 9132 §6). */
static int rd_foreign_key(struct rd *r, const struct cb_node *map,
			  uint64_t key)
{
	const char *name;

	for (size_t i = 0; i < ARRAY_SIZE(cb_forbidden); i++)
		if (cb_forbidden[i].key == key)
			return rd_fail(r, "key %" PRIu64 " (%s) is never "
				       "allowed in a body (%s)", key,
				       cb_forbidden[i].name,
				       cb_forbidden[i].why);
	name = cb_known_key_name(key);
	if (name)
		return rd_fail(r, "key %" PRIu64 " (%s) not allowed in %s",
			       key, name, map->ctx);
	if (cb_key_required(key))
		return rd_fail(r, "key %" PRIu64 ": unknown comprehension-"
			       "required attribute in %s", key, map->ctx);
	return rd_skip(r);
}

static int rd_map(struct rd *r, const struct cb_node *node, json_t **out)
{
	const struct cb_member *m;
	struct rd_head h, k;
	json_t *obj = NULL, *v;
	uint64_t seen = 0, *skipped = NULL, *tmp;
	size_t nskipped = 0, cap = 0, idx, old;
	bool more;
	int rc = rd_container(r, MT_MAP, "map", &h);

	if (rc)
		return rc;
	obj = json_object();
	if (!obj)
		rc = DG_ENOMEM;
	for (uint64_t i = 0; !rc; i++) {
		rc = rd_next(r, &h, i, &more);
		if (rc || !more)
			break;
		rc = rd_head(r, &k);
		if (rc)
			break;
		/* RFC 9132 §6: keys are integers from the registry. */
		if (k.major != MT_UINT) {
			rc = rd_fail(r, "map key must be an unsigned integer, "
				     "got %s", rd_type_name(&k));
			break;
		}
		m = cb_member_by_key(node, k.val, &idx);
		if (!m) {
			if (nskipped == cap) {
				cap = cap ? 2 * cap : 8;
				tmp = realloc(skipped, cap * sizeof(*skipped));
				if (!tmp) {
					rc = DG_ENOMEM;
					break;
				}
				skipped = tmp;
			}
			skipped[nskipped++] = k.val;
			rc = rd_foreign_key(r, node, k.val);
			continue;
		}
		/* RFC 8949 §5.6: duplicate keys make the map invalid. */
		if (seen & (UINT64_C(1) << idx)) {
			rc = rd_fail(r, "duplicate key %" PRIu32 " (%s)", m->key,
				     m->name);
			break;
		}
		seen |= UINT64_C(1) << idx;
		old = path_member(&r->path, m->name);
		rc = rd_value(r, m->node, &v);
		path_pop(&r->path, old);
		if (!rc && json_object_set_new_nocheck(obj, m->name, v))
			rc = DG_ENOMEM;
	}
	r->depth--;
	if (!rc && nskipped > 1) {
		qsort(skipped, nskipped, sizeof(*skipped), cb_u64_cmp);
		for (size_t i = 1; i < nskipped && !rc; i++)
			if (skipped[i] == skipped[i - 1])
				rc = rd_fail(r, "duplicate key %" PRIu64,
					     skipped[i]);
	}
	free(skipped);
	if (rc) {
		json_decref(obj);
		return rc;
	}
	*out = obj;
	return 0;
}

static int rd_value(struct rd *r, const struct cb_node *node, json_t **out)
{
	*out = NULL;
	switch (node->kind) {
	case CB_MAP:
		return rd_map(r, node, out);
	case CB_LIST:
		return rd_list(r, node, out);
	case CB_TEXT:
		return rd_text(r, out);
	case CB_DEC:
		return rd_decimal(r, out);
	default:
		return rd_scalar(r, node, out);
	}
}

int cbor_decode(const uint8_t *buf, size_t len, json_t **out,
		struct dg_diag *diag)
{
	struct rd r = { .buf = buf, .len = buf ? len : 0, .diag = diag };
	json_t *top;
	size_t n;
	int rc;

	*out = NULL;
	rc = rd_value(&r, &n_top, &top);
	if (rc)
		return rc;
	if (r.pos != r.len) {
		json_decref(top);
		return rd_malformed(&r, r.pos, "trailing bytes after CBOR item");
	}
	/* cbor-keys-notes.md §3: one key naming the message type. */
	n = json_object_size(top);
	if (n != 1) {
		json_decref(top);
		return rd_fail(&r, "expected exactly one message type, got %zu",
			       n);
	}
	*out = top;
	return 0;
}

/* ---- Encoder ------------------------------------------------------------------ */

struct wr {
	uint8_t *buf;
	size_t len, cap;
	bool nomem;
	struct dg_diag *diag;
	struct cb_path path;
};

static int wr_fail(struct wr *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int wr_fail(struct wr *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cb_fail(w->diag, &w->path, fmt, ap);
	va_end(ap);
	return DG_EINVAL;
}

/* Allocation failure is sticky and checked once, by cbor_encode(). */
static void wr_bytes(struct wr *w, const void *p, size_t n)
{
	uint8_t *nb;
	size_t cap;

	if (w->nomem)
		return;
	if (n > w->cap - w->len) {
		cap = w->cap ? w->cap : 64;
		while (n > cap - w->len) {
			if (cap > SIZE_MAX / 2) {
				w->nomem = true;
				return;
			}
			cap *= 2;
		}
		nb = realloc(w->buf, cap);
		if (!nb) {
			w->nomem = true;
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

/* Shortest head for the argument (RFC 8949 §4.2.1). */
static void wr_head(struct wr *w, int major, uint64_t v)
{
	uint8_t b[9];
	size_t n;

	if (v < 24) {
		b[0] = (uint8_t)(major << 5 | (int)v);
		n = 1;
	} else {
		int ai = v <= UINT8_MAX ? 24 : v <= UINT16_MAX ? 25 :
			 v <= UINT32_MAX ? 26 : 27;

		n = (size_t)1 << (ai - 24);
		b[0] = (uint8_t)(major << 5 | ai);
		for (size_t i = 0; i < n; i++)
			b[n - i] = (uint8_t)(v >> (8 * i));
		n++;
	}
	wr_bytes(w, b, n);
}

static void wr_int(struct wr *w, int64_t v)
{
	if (v >= 0)
		wr_head(w, MT_UINT, (uint64_t)v);
	else
		wr_head(w, MT_NINT, (uint64_t)(-(v + 1)));
}

static const char *wr_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "real";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

static int wr_type_error(struct wr *w, const char *expected, const json_t *v)
{
	return wr_fail(w, "expected %s, got %s", expected, wr_type_name(v));
}

/* A uint64 leaf given as decimal digits (RFC 7951 §6.1) or an integer. */
static int wr_u64(struct wr *w, const json_t *v)
{
	const char *s;
	uint64_t u = 0;

	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		wr_head(w, MT_UINT, (uint64_t)json_integer_value(v));
		return 0;
	}
	if (!json_is_string(v))
		return wr_type_error(w, "unsigned integer string", v);
	s = json_string_value(v);
	if (!*s || (s[0] == '0' && s[1]) ||
	    strspn(s, "0123456789") != json_string_length(v))
		return wr_fail(w, "invalid uint64 \"%.40s\"", s);
	for (; *s; s++)
		if (__builtin_mul_overflow(u, 10, &u) ||
		    __builtin_add_overflow(u, (uint64_t)(*s - '0'), &u))
			return wr_fail(w, "uint64 out of range");
	wr_head(w, MT_UINT, u);
	return 0;
}

/* "-12.3", "2", "1.50": at most 2 fraction digits, to hundredths. */
static int cb_dec_parse(const char *s, size_t len, int64_t *out)
{
	const char *end = s + len;
	bool neg = *s == '-';
	uint64_t u = 0, max = (uint64_t)INT64_MAX + neg;
	int frac = -1;

	if (neg)
		s++;
	if (s == end || *s < '0' || *s > '9')
		return -1;
	for (; s < end; s++) {
		if (*s == '.' && frac < 0) {
			frac = 0;
			if (s + 1 == end)
				return -1;
			continue;
		}
		if (*s < '0' || *s > '9' || frac == 2)
			return -1;
		if (frac >= 0)
			frac++;
		if (u > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		u = u * 10 + (uint64_t)(*s - '0');
	}
	for (frac = frac < 0 ? 0 : frac; frac < 2; frac++) {
		if (u > max / 10)
			return -1;
		u *= 10;
	}
	*out = neg && u ? -(int64_t)(u - 1) - 1 : (int64_t)u;
	return 0;
}

static int wr_decimal(struct wr *w, const json_t *v)
{
	int64_t h;

	if (json_is_string(v)) {
		if (cb_dec_parse(json_string_value(v), json_string_length(v),
				 &h))
			return wr_fail(w, "invalid decimal \"%.40s\" (need at "
				       "most 2 fraction digits)",
				       json_string_value(v));
	} else if (json_is_integer(v)) {
		if (__builtin_mul_overflow(json_integer_value(v), 100, &h))
			return wr_fail(w, "decimal out of range");
	} else if (json_is_real(v)) {
		double x = json_real_value(v) * 100;
		double r;

		/* 9.2e16 stays below INT64_MAX and is exact in a double. */
		if (!(x > -9.2e16 && x < 9.2e16))
			return wr_fail(w, "decimal out of range");
		h = (int64_t)(x < 0 ? x - 0.5 : x + 0.5);
		r = x - (double)h;
		if (r > 1e-6 || r < -1e-6)
			return wr_fail(w, "decimal not representable with 2 "
				       "fraction digits");
	} else {
		return wr_type_error(w, "decimal", v);
	}
	/* RFC 9132 §6: decimal64 is tag 4 [-2, hundredths]. */
	wr_head(w, MT_TAG, 4);
	wr_head(w, MT_ARRAY, 2);
	wr_int(w, -2);
	wr_int(w, h);
	return 0;
}

static int wr_scalar(struct wr *w, const struct cb_node *node, const json_t *v)
{
	json_int_t i = json_integer_value(v);
	const char *s;
	size_t n;
	int e;

	switch (node->kind) {
	case CB_TEXT:
		if (!json_is_string(v))
			return wr_type_error(w, "string", v);
		s = json_string_value(v);
		n = json_string_length(v);
		if (cb_text_check((const uint8_t *)s, n))
			return wr_fail(w, "string contains NUL or invalid UTF-8");
		wr_head(w, MT_TEXT, n);
		wr_bytes(w, s, n);
		return 0;
	case CB_BOOL:
		if (!json_is_boolean(v))
			return wr_type_error(w, "boolean", v);
		wr_head(w, MT_SIMPLE, json_is_true(v) ? 21 : 20);
		return 0;
	case CB_LIFETIME:
		if (!json_is_integer(v))
			return wr_type_error(w, "integer", v);
		if (i < -1 || i > (json_int_t)UINT32_MAX)
			return wr_fail(w, "value %" JSON_INTEGER_FORMAT
				       " out of range", i);
		wr_int(w, i);
		return 0;
	case CB_UINT:
		if (!json_is_integer(v))
			return wr_type_error(w, "integer", v);
		if (i < 0 || i > (json_int_t)node->max)
			return wr_fail(w, "value %" JSON_INTEGER_FORMAT
				       " out of range", i);
		wr_head(w, MT_UINT, (uint64_t)i);
		return 0;
	case CB_ENUM:
		if (json_is_string(v)) {
			e = cb_enum_lookup(node->en, json_string_value(v));
			if (e < 0)
				return wr_fail(w, "unknown label \"%.40s\"",
					       json_string_value(v));
		} else if (json_is_integer(v)) {
			if (i < 1 || i > node->en->n)
				return wr_fail(w, "value %" JSON_INTEGER_FORMAT
					       " has no label", i);
			e = (int)i;
		} else {
			return wr_type_error(w, "enumeration label", v);
		}
		wr_head(w, MT_UINT, (uint64_t)e);
		return 0;
	case CB_U64:
		return wr_u64(w, v);
	case CB_DEC:
		return wr_decimal(w, v);
	default:
		return DG_EINVAL;
	}
}

static int wr_value(struct wr *w, const struct cb_node *node, const json_t *v)
{
	const struct cb_member *m;
	const char *name;
	json_t *item;
	size_t i, old;
	int rc;

	switch (node->kind) {
	case CB_MAP:
		if (!json_is_object(v))
			return wr_type_error(w, "object", v);
		wr_head(w, MT_MAP, json_object_size(v));
		/* jansson iterates in insertion order: the model's order. */
		json_object_foreach((json_t *)v, name, item) {
			m = cb_member_by_name(node, name);
			if (!m)
				return wr_fail(w, "member \"%.60s\" not allowed "
					       "in %s", name, node->ctx);
			wr_head(w, MT_UINT, m->key);
			old = path_member(&w->path, m->name);
			rc = wr_value(w, m->node, item);
			path_pop(&w->path, old);
			if (rc)
				return rc;
		}
		return 0;
	case CB_LIST:
		if (!json_is_array(v))
			return wr_type_error(w, "array", v);
		wr_head(w, MT_ARRAY, json_array_size(v));
		json_array_foreach(v, i, item) {
			old = path_index(&w->path, i);
			rc = wr_value(w, node->elem, item);
			path_pop(&w->path, old);
			if (rc)
				return rc;
		}
		return 0;
	default:
		return wr_scalar(w, node, v);
	}
}

int cbor_encode(const json_t *model, uint8_t **buf, size_t *len,
		struct dg_diag *diag)
{
	struct wr w = { .diag = diag };
	int rc;

	*buf = NULL;
	*len = 0;
	if (!model)
		return wr_fail(&w, "no model");
	if (json_is_object(model) && json_object_size(model) != 1)
		rc = wr_fail(&w, "expected exactly one message type, got %zu",
			     json_object_size(model));
	else
		rc = wr_value(&w, &n_top, model);
	if (!rc && w.nomem)
		rc = DG_ENOMEM;
	if (rc) {
		free(w.buf);
		return rc;
	}
	*buf = w.buf;
	*len = w.len;
	return 0;
}
