/* pb_users: the bench's user pool and its token cache.
 *
 * The bench uses users named pb0, pb1, ... (one device "default" each, all
 * with the password PB_PASSWORD); a scenario needs indices 0..n-1. Creating a
 * user costs an Argon2id hash on the server (~50 ms of CPU), so tokens are
 * cached in a text file, one "name token" line per user, and later runs
 * authenticate with Resume instead. Lines are appended with single write()
 * calls on an O_APPEND descriptor, so worker processes may add tokens
 * concurrently; the last line for a name wins when the file is read. */
#ifndef PB_USERS_H
#define PB_USERS_H

#include <stddef.h>
#include <stdint.h>

#define PB_PASSWORD "parley-bench-password"

typedef struct pb_users {
  uint32_t n;   /* indices 0..n-1 */
  char **token; /* by index; NULL if none is known */
  int fd;       /* the cache file, O_APPEND; -1 if it could not be opened */
  char path[600];
} pb_users;

/* Opens (creating) the cache at path and loads the tokens of users 0..n-1.
 * Returns NULL if the file cannot be opened. */
pb_users *pb_users_open(const char *path, uint32_t n);
void pb_users_close(pb_users *u);

/* The user name of index i ("pb<i>"). */
void pb_users_name(uint32_t i, char *out, size_t outlen);
/* --names mixed: pb_users_name gives pb<i>x<8 hex digits> (before any fork). */
void pb_users_mixed(int on);
/* The cached token of index i, or NULL. */
const char *pb_users_token(const pb_users *u, uint32_t i);
/* Records a new token for index i (in memory and in the file). */
void pb_users_set_token(pb_users *u, uint32_t i, const char *token);
/* How many of users [from, to) have no token. */
uint32_t pb_users_missing(const pb_users *u, uint32_t from, uint32_t to);

#endif
