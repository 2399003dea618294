/*
 * cbor.h: DOTS signal-channel bodies, CBOR <-> JSON model.
 *
 * The model is the RFC 7951 JSON encoding of the RFC 9132 YANG structures,
 * held in jansson:
 *   - the top level is an object with exactly one member whose name is the
 *     module-qualified message type ("ietf-dots-signal-channel:
 *     mitigation-scope", "...:signal-config", "...:redirected-signal",
 *     "...:heartbeat");
 *   - enumerations are their label strings ("attack-mitigation-in-progress");
 *   - uint64 leaves (mitigation-start, bytes-dropped, ...) and decimal64
 *     leaves (*-value-decimal, fraction-digits 2: "1.50") are strings;
 *   - other integers are JSON integers; lifetime may be -1;
 *   - booleans are JSON true/false.
 *
 * The codec is schema-driven: each CBOR key is looked up in the context of
 * its parent (cbor-keys-notes.md §3: e.g. key 22 is acl-list inside
 * conflict-scope, 53 is ietf-dots-signal-control:acl-list inside a scope
 * entry), so a known key in the wrong place is an error, not a guess.
 *
 * Decoding (cbor_decode) rejects, with a diagnostic text a client can act
 * on: malformed or truncated CBOR, trailing bytes, nesting deeper than
 * CBOR_MAX_DEPTH, duplicate map keys, non-integer map keys, unknown
 * comprehension-required keys (1-127, 256-16383; RFC 9132 §6), known keys
 * in a context where they are not allowed, values of the wrong CBOR type,
 * enum values with no label, decimal fractions that are not exactly
 * representable with 2 fraction digits, and cuid/cdid/sid (keys 3, 4, 31)
 * anywhere in a body (RFC 9132 §4.4.1.1, §4.4.1.2). Unknown
 * comprehension-optional keys are skipped (§6). mid (5) is accepted only
 * where the schema allows it (inside a scope entry of a response, inside
 * conflict-scope): whether a *request* may carry it is model.c's business.
 *
 * Encoding (cbor_encode) writes definite lengths, the shortest integer
 * heads, members in the model's order, and decimal64 as tag 4 [-2, m].
 * So a canonical input decodes and re-encodes byte for byte.
 */
#ifndef DG_CBOR_H
#define DG_CBOR_H

#include <jansson.h>

#include "dg.h"

#define CBOR_MAX_DEPTH 16

/* The top-level member names (message types). */
#define CBOR_MSG_MITIGATION "ietf-dots-signal-channel:mitigation-scope"
#define CBOR_MSG_CONFIG "ietf-dots-signal-channel:signal-config"
#define CBOR_MSG_REDIRECT "ietf-dots-signal-channel:redirected-signal"
#define CBOR_MSG_HEARTBEAT "ietf-dots-signal-channel:heartbeat"

/*
 * Decodes one DOTS body. On success *out is a new reference the caller
 * must json_decref(). On failure *out is NULL, diag (if not NULL) says
 * what is wrong and where ("scope[0]: key 99: unknown comprehension-
 * required attribute"), and the return is DG_EINVAL (bad input) or
 * DG_ENOMEM.
 */
int cbor_decode(const uint8_t *buf, size_t len, json_t **out,
		struct dg_diag *diag);

/*
 * Encodes a model object. On success *buf is malloc()ed (caller frees) and
 * *len its size. Fails with DG_EINVAL (model does not fit the schema;
 * diag says where) or DG_ENOMEM. Nothing is allocated on failure.
 */
int cbor_encode(const json_t *model, uint8_t **buf, size_t *len,
		struct dg_diag *diag);

/* Enum helpers used by model.c and core.c: label <-> value for the DOTS
 * enumerations. `attr` is the leaf name: "status", "conflict-status",
 * "conflict-cause", "attack-status", "activation-type". Return the value,
 * or -1 when unknown. */
int cbor_enum_value(const char *attr, const char *label);
const char *cbor_enum_label(const char *attr, int value);

#endif
