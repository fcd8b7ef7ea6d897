/* pl_admin_tok: the operator's tokens for the admin API (docs/admin.md).
 *
 * They live in DATA/admin-tokens (0600), one per line: "NAME HASH CREATED",
 * HASH the hex BLAKE2b-256 of the token, never the token itself: the file
 * read by someone else gives no way in. A token is "padm_" and 43 base64url
 * characters (32 random bytes), so it can never be a user's session token,
 * and it is shown once, when made. The file is read at each admin call, so
 * a token made or revoked while parleyd runs counts at once; no token in it
 * means the admin API is off. */
#ifndef PL_ADMIN_TOK_H
#define PL_ADMIN_TOK_H

#include <stddef.h>

#define PL_ADMIN_TOK_PREFIX "padm_"
#define PL_ADMIN_NAME_MAX 64

/* What the file says of token: 1 and its name in who if it is one of them;
 * 0 if not; -1 if the file holds no token (the API is off). */
int pl_admin_tok_check(const char *dir, const char *token, char who[PL_ADMIN_NAME_MAX]);

/* parleyd admin-token create NAME | list | revoke NAME [--data DIR]
 * [--config FILE]: argv[0] is "admin-token". The exit status. */
int pl_admin_tok_main(int argc, char **argv);

#endif
