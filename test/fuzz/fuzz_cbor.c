/*
 * fuzz_cbor.c: libFuzzer target for the DOTS body codec and the checks
 * that run on every decoded body.
 *
 * The input is one CoAP payload. When cbor_decode() accepts it, the model
 * goes through every check a request or an answer meets in the gateway
 * (mitigation request both kinds, heartbeat, PUT /config against the
 * default limits, redirection), and then through the encoder:
 *   - a model the decoder produced must encode (cbor.h: the decoder only
 *     builds models that fit the schema);
 *   - the encoding must decode to an equal model;
 *   - and encoding that model again must give the same bytes (the encoder
 *     is canonical: definite lengths, shortest heads).
 * An input that starts with '{' (which no DOTS body does: that byte is a
 * CBOR text string, and a body is a map) is taken as the JSON text of a
 * model instead, to reach the encoder's own checks with models the
 * decoder would never build, as the core builds its own: the checks run
 * on it, and when cbor_encode() accepts it, what it wrote must decode
 * (the gateway never sends a body its own decoder refuses) and encode
 * again to the same bytes.
 * A violated property is abort()ed so that libFuzzer keeps the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cbor.h"
#include "dg.h"
#include "model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* An UBSan report must end the run, so that libFuzzer keeps the input. */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

/* The [min, max] of the configuration defaults (gateway/config.c, README):
 * what a gateway without a server.session section accepts. */
static const struct model_session_limits limits = {
	.min = { 15, 1, 1, 2, 100, 110 },
	.max = { 240, 60, 1000, 15, 3000, 400 },
};

static void fail(const char *what, const struct dg_diag *d)
{
	fprintf(stderr, "fuzz_cbor: %s%s%s\n", what, d ? ": " : "",
		d ? d->text : "");
	abort();
}

/* Model checks: only their return codes are looked at; what matters is
 * that they neither crash nor read out of bounds on any decodable body. */
static void check_model(const json_t *m)
{
	struct model_session_config cfg, before;
	struct dg_diag d = { "" };
	const char *alt = NULL;
	bool hb = false;
	int rc;

	rc = model_check_mitigation_request(m, MODEL_PUT_REQUEST, &d);
	if (rc == 0 && !model_scope_entry(m))
		fail("accepted mitigation request without a scope entry", NULL);
	if (rc == 0) {
		const json_t *e = model_scope_entry(m);
		int64_t lt = model_scope_lifetime(e);

		/* RFC 9132 §4.4.1: lifetime is -1 or positive. */
		if (lt == 0 || lt < -1)
			fail("accepted mitigation request with bad lifetime", NULL);
		(void)model_scope_trigger(e);
		if (!model_scope_same_request(e, e))
			fail("scope entry differs from itself", NULL);
		(void)model_scope_overlap(e, e, NULL);
	}
	(void)model_check_mitigation_request(m, MODEL_PUT_EFFICACY, &d);
	(void)model_check_heartbeat(m, &hb, &d);

	model_session_defaults(&cfg);
	before = cfg;
	rc = model_config_apply(m, &limits, &limits, &cfg, &d);
	/* model.h: *cfg is untouched unless 0 is returned. */
	if (rc != 0 && memcmp(&cfg, &before, sizeof(cfg)) != 0)
		fail("model_config_apply changed cfg on failure", &d);
	(void)model_config_read(m, &cfg, &d);

	rc = model_check_redirect(m, &alt, &d);
	if (rc == 0 && !alt)
		fail("accepted redirect without alt-server", NULL);
}

static void check_roundtrip(const json_t *m)
{
	struct dg_diag d = { "" };
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	json_t *back = NULL;
	int rc;

	rc = cbor_encode(m, &buf, &len, &d);
	if (rc == DG_ENOMEM)
		return;
	if (rc != 0)
		fail("decoded model does not encode", &d);
	rc = cbor_decode(buf, len, &back, &d);
	if (rc == DG_ENOMEM) {
		free(buf);
		return;
	}
	if (rc != 0)
		fail("encoding does not decode", &d);
	if (!json_equal(m, back))
		fail("re-decoded model differs", NULL);
	rc = cbor_encode(back, &buf2, &len2, &d);
	if (rc == 0 && (len2 != len || memcmp(buf, buf2, len) != 0))
		fail("encoding is not stable", NULL);
	free(buf2);
	json_decref(back);
	free(buf);
}

static void check_json_model(const uint8_t *data, size_t size)
{
	struct dg_diag d = { "" };
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	json_t *m, *back = NULL;
	int rc;

	m = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!m)
		return;
	check_model(m);
	rc = cbor_encode(m, &buf, &len, &d);
	if (rc == 0) {
		rc = cbor_decode(buf, len, &back, &d);
		if (rc == DG_EINVAL)
			fail("cbor_encode() wrote what cbor_decode() refuses", &d);
		if (rc == 0) {
			rc = cbor_encode(back, &buf2, &len2, &d);
			if (rc == DG_EINVAL)
				fail("re-decoded model does not encode", &d);
			if (rc == 0 && (len2 != len || memcmp(buf, buf2, len) != 0))
				fail("encoding is not stable", NULL);
		}
	} else if (buf || (rc == DG_EINVAL && !d.text[0])) {
		fail("failed encode left a buffer or no diagnostic", NULL);
	}
	free(buf2);
	free(buf);
	json_decref(back);
	json_decref(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Deterministic hashing: a crash must replay. */
	json_object_seed(1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dg_diag d = { "" };
	json_t *m = NULL;
	int rc;

	if (size && data[0] == '{') {
		check_json_model(data, size);
		return 0;
	}
	rc = cbor_decode(data, size, &m, &d);
	if (rc != 0) {
		if (m)
			fail("failed decode left a model", NULL);
		if (rc != DG_EINVAL && rc != DG_ENOMEM)
			fail("unexpected decode error code", &d);
		/* A refusal always says why (cbor.h). */
		if (rc == DG_EINVAL && !d.text[0])
			fail("refusal without a diagnostic", NULL);
		return 0;
	}
	if (!m)
		fail("decode succeeded without a model", NULL);
	check_model(m);
	check_roundtrip(m);
	json_decref(m);
	return 0;
}
