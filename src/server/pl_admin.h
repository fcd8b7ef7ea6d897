/* pl_admin: the admin API under /admin/ on the HTTP listeners (docs/admin.md).
 *
 * Every call needs "Authorization: Bearer <admin token>" (pl_admin_tok: made
 * by parleyd admin-token; a user's session token is never one), and every
 * call is logged with the token's name, the address, what was asked and the
 * answer's status. Work that touches the store goes through the store's
 * ADMIN op (the store thread, never the loop); password hashes are made on
 * libuv's pool. The answer is sent from the store thread
 * (pl_http_ex_reply may be called from any thread). */
#ifndef PL_ADMIN_H
#define PL_ADMIN_H

#include <stdint.h>

#include "core/pl_session.h"
#include "net/pl_http.h"
#include "store/pl_store.h"

typedef struct pl_admin_config {
  const char *data; /* the data dir: admin-tokens, backups/ */
  pl_store *store;
  pl_core *core;
  uint32_t argon2_ops, argon2_mem_kib; /* for passwords the operator sets */
  /* Reloads the word list (--filter-words): its entries, or -1 with why. */
  long (*reload_filter)(void *ud, char *why, size_t n);
  /* Closes every client session (they are told SHUTTING_DOWN), any thread. */
  void (*close_sessions)(void *ud);
  void *ud;
  const char *version;
  uint64_t started_ms;
  int signup; /* pl_signup_mode, shown in stats */
} pl_admin_config;

typedef struct pl_admin pl_admin;

pl_admin *pl_admin_new(const pl_admin_config *cfg);
void pl_admin_free(pl_admin *a);

/* Answers path (the URL without its query) if it is /admin or under it:
 * 1 (res filled, or x held), else 0. */
int pl_admin_route(pl_admin *a, const pl_http_req *req, const char *path, pl_http_res *res, pl_http_ex *x);

#endif
