/* pb_prepare: creating the users a scenario needs, before anything is
 * measured. Users without a cached token are registered over `parallel`
 * connections at once (each costs an Argon2id hash on the server); their
 * tokens go to the cache, so the next run of any scenario resumes instead. */
#ifndef PB_PREPARE_H
#define PB_PREPARE_H

#include <netinet/in.h>
#include <stdint.h>

#include "pb_opts.h"
#include "pb_users.h"

/* Registers the users of [0, n) that have no token. Sets *created. Returns 0,
 * or -1 if some could not be created (the reason is printed). */
int pb_prepare_users(const pb_opts *o, const struct sockaddr_in *server, pb_users *u, uint32_t n,
                     uint32_t parallel, uint32_t *created);

#endif
