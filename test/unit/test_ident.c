/* test_ident.c: identifiers derived from credentials (RFC 9132 App. B). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ident.h"

static void test_derive_psk_identity(void **state)
{
	char out[IDENT_LEN + 1];

	(void)state;
	/* Vectors computed independently (Python hashlib + base64). */
	assert_int_equal(ident_derive((const uint8_t *)"alice", 5, out), 0);
	assert_string_equal(out, "K9gGyX8OAK8aH8Myj6djqQ");
	assert_int_equal(ident_derive((const uint8_t *)"", 0, out), 0);
	assert_string_equal(out, "47DEQpj8HBSa-_TImW-5JA");
	assert_int_equal(strlen(out), IDENT_LEN);
}

static void test_base64url_tails(void **state)
{
	char out[16];
	static const uint8_t v[] = { 0xfb, 0xff, 0xfe };

	(void)state;
	ident_base64url(v, 3, out);
	assert_string_equal(out, "-__-");
	ident_base64url(v, 1, out);
	assert_string_equal(out, "-w");
	ident_base64url((const uint8_t *)"\xfb\xf0", 2, out);
	assert_string_equal(out, "-_A");
	ident_base64url(v, 0, out);
	assert_string_equal(out, "");
}

static uint8_t *slurp(const char *name, size_t *len)
{
	char path[512];
	const char *dir = getenv("DOTSGW_TEST_DATA");
	FILE *f;
	uint8_t *buf = malloc(65536);

	snprintf(path, sizeof(path), "%s/ident/%s", dir ? dir : "test/unit/data", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	*len = fread(buf, 1, 65536, f);
	fclose(f);
	return buf;
}

static void test_cert_spki_identity(void **state)
{
	size_t len, spki_len = 0, elen;
	uint8_t *der = slurp("cert.der", &len);
	uint8_t *expected = slurp("cert.expected", &elen);
	uint8_t *spki = NULL;
	char out[IDENT_LEN + 1];
	char want[IDENT_LEN + 1];
	unsigned want_len = 0;

	(void)state;
	assert_int_equal(sscanf((char *)expected, "%22s %u", want, &want_len), 2);
	assert_int_equal(ident_spki_from_cert(der, len, &spki, &spki_len), 0);
	assert_int_equal(spki_len, want_len);
	assert_int_equal(ident_derive(spki, spki_len, out), 0);
	assert_string_equal(out, want);
	free(spki);
	/* A truncated certificate is refused, nothing allocated. */
	spki = NULL;
	assert_int_equal(ident_spki_from_cert(der, len / 2, &spki, &spki_len), DG_EINVAL);
	assert_null(spki);
	free(der);
	free(expected);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_derive_psk_identity),
		cmocka_unit_test(test_base64url_tails),
		cmocka_unit_test(test_cert_spki_identity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
