/* pl_jwt: the JSON Web Tokens push providers authenticate with, as pure
 * functions over memory: base64url, signing (RS256 for the FCM service
 * account's OAuth2 grant, ES256 for APNs' provider token) and the
 * conversion of OpenSSL's DER ECDSA signature into the raw r||s form JWS
 * wants (RFC 7518 3.4). No I/O: keys come in as PEM text. */
#ifndef PL_JWT_H
#define PL_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

typedef struct evp_pkey_st pl_jwt_key; /* OpenSSL's EVP_PKEY */

/* base64url of p (RFC 4648 5, no padding), NUL-terminated; pl_free it. */
char *pl_b64url(const void *p, size_t n);

/* A private key from PEM text (PKCS#8 "BEGIN PRIVATE KEY", as in an FCM
 * service-account file or an APNs .p8, or a traditional RSA/EC key); NULL
 * if it is none. Free with pl_jwt_key_free. */
pl_jwt_key *pl_jwt_key_from_pem(const char *pem, size_t len);
void pl_jwt_key_free(pl_jwt_key *k);

/* DER ECDSA-Sig-Value -> r||s, each left-padded to half (32 for P-256).
 * PL_ERR_INVALID_ARGUMENT if der is not one or a number does not fit. */
pl_err pl_jwt_der_to_raw(const uint8_t *der, size_t len, uint8_t *raw, size_t half);

/* header.claims.signature with alg "RS256" (an RSA key) or "ES256" (a P-256
 * key); header_json and claims_json are the JSON texts as they are to be
 * encoded. *out: pl_free it. PL_ERR_INVALID_ARGUMENT if the key does not
 * fit the algorithm or signing fails. */
pl_err pl_jwt_sign(pl_jwt_key *key, const char *alg, const char *header_json, const char *claims_json,
                   char **out);

#endif
