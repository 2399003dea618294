#include "ident.h"

#include <stdlib.h>
#include <string.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <gnutls/abstract.h>

void ident_base64url(const uint8_t *in, size_t len, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;

	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
}

int ident_derive(const uint8_t *cred, size_t len, char out[IDENT_LEN + 1])
{
	uint8_t digest[32];

	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, cred, len, digest) < 0)
		return DG_EIO;
	/* RFC 9132 Appendix B: keep the leftmost 128 bits. */
	ident_base64url(digest, 16, out);
	return 0;
}

int ident_spki_from_cert(const uint8_t *der, size_t len, uint8_t **spki,
			 size_t *spki_len)
{
	gnutls_x509_crt_t crt = NULL;
	gnutls_pubkey_t key = NULL;
	gnutls_datum_t in = { (unsigned char *)der, (unsigned int)len };
	gnutls_datum_t outd = { NULL, 0 };
	int rc = DG_EINVAL;

	if (gnutls_x509_crt_init(&crt) < 0)
		return DG_ENOMEM;
	if (gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_DER) < 0)
		goto out;
	if (gnutls_pubkey_init(&key) < 0) {
		rc = DG_ENOMEM;
		goto out;
	}
	if (gnutls_pubkey_import_x509(key, crt, 0) < 0)
		goto out;
	if (gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &outd) < 0)
		goto out;
	*spki = malloc(outd.size);
	if (!*spki) {
		rc = DG_ENOMEM;
		goto out;
	}
	memcpy(*spki, outd.data, outd.size);
	*spki_len = outd.size;
	rc = 0;
out:
	gnutls_free(outd.data);
	if (key)
		gnutls_pubkey_deinit(key);
	gnutls_x509_crt_deinit(crt);
	return rc;
}
