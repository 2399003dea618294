/*
 * ident.h: identifiers derived from credentials (RFC 9132 §4.4.1.1 and
 * Appendix B): SHA-256 over the credential, first 16 bytes, base64url
 * without padding: always 22 characters. Used for the cdid a server-domain
 * gateway inserts and for the cuid the gateway uses as a client itself.
 */
#ifndef DG_IDENT_H
#define DG_IDENT_H

#include "dg.h"

#define IDENT_LEN 22

/* out receives IDENT_LEN characters and a NUL. Returns 0 or DG_EIO. */
int ident_derive(const uint8_t *cred, size_t len, char out[IDENT_LEN + 1]);

/*
 * Extracts the DER SubjectPublicKeyInfo of a DER X.509 certificate (the
 * input RFC 9132 recommends hashing for certificate identities).
 * On success *spki is malloc()ed. DG_EINVAL for an unparsable certificate.
 */
int ident_spki_from_cert(const uint8_t *der, size_t len, uint8_t **spki,
			 size_t *spki_len);

/* base64url without padding of len bytes; out must hold 4*len/3+3 bytes. */
void ident_base64url(const uint8_t *in, size_t len, char *out);

#endif
