/* pl_admin_int.h: what pl_admin.c (routes, tokens, the request's life) and
 * pl_admin_json.c (the answers) share. */
#ifndef PL_ADMIN_INT_H
#define PL_ADMIN_INT_H

#include <jansson.h>
#include <uv.h>

#include "core/pl_auth.h"
#include "pl_admin.h"
#include "pl_admin_tok.h"

struct pl_admin {
  pl_admin_config cfg;
};

/* One admin call waiting for the store (and first, maybe, for a hash). */
typedef struct pl_admin_call {
  pl_store_req req;
  uv_work_t work;
  pl_admin *a;
  pl_http_ex *x;
  char who[PL_ADMIN_NAME_MAX]; /* the token's name */
  char peer[64];               /* the caller's address */
  char what[200];              /* "METHOD /path", for the log */
  char user[64], device[80], query[64], after[64], code[80], path[600];
  char *password; /* to hash before the store runs (wiped after) */
  char pwhash[PL_AUTH_HASH_MAX];
  int status; /* the HTTP status answered */
} pl_admin_call;

/* The answer to a finished call (req.status PL_OK or a refusal). */
json_t *pl_admin_json_answer(const pl_admin_call *c, int *status);
/* {"users":..}, {"groups":..}: one row each. */
json_t *pl_admin_json_user(const pl_admin_user *u);
/* The server's own figures for /admin/stats, beside the store's. */
json_t *pl_admin_json_stats(const pl_admin *a, const pl_store_admin_req *s);
/* j (consumed) as res's JSON body with status. */
void pl_admin_json_res(pl_http_res *res, int status, json_t *j);
/* {"error": code, "message": why, "status": status}. */
void pl_admin_error_res(pl_http_res *res, int status, const char *code, const char *why);

#endif
