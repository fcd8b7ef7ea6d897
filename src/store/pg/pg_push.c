/* pg_push: push tokens and pending push notifications on PostgreSQL, for
 * the PL_STORE_PUSH_* ops, with the lease and fence rules of pl_store.h
 * (the SQLite twin is sq_push.c).
 *
 *   push_tokens   device_id -> user_id, user_name, provider, token, updated
 *   push_pending  device_id -> user_id, count, first_ms, due_ms, attempts,
 *                 claim (the fence, +1 per claim), owner, sender, conv,
 *                 preview (NULL in privacy mode)
 *
 * Every node runs a push sender on the same rows: a claim takes the due
 * rows with SELECT ... FOR UPDATE SKIP LOCKED and moves their due_ms to the
 * lease's end in the same statement, so two nodes claiming at once take
 * different rows, and a row claimed and committed is not due for anyone
 * else until its lease ends. Each notification goes out from one node at a
 * time; a DONE whose claim is not the row's (a lease that ran out and was
 * taken over) changes nothing. */
#include "pg_internal.h"

/* Tokens of devices that are signed out (or gone). */
#define PL__STALE                                                                   \
  "SELECT t.device_id FROM push_tokens t LEFT JOIN devices d ON d.id = t.device_id" \
  " WHERE d.token_hash IS NULL"

/* A text column as a NUL-terminated copy; NULL stays NULL. */
static char *pl__str(const PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? NULL : pl_pg_col_str(res, row, col);
}

/* ---- tokens ------------------------------------------------------------------------ */

pl_err pl_pg_push_forget(pl__pg *g, uint64_t device) {
  pl_err e = pl_pg_q(g, NULL, "DELETE FROM push_tokens WHERE device_id = $1", "u", device);
  return e == PL_OK ? pl_pg_q(g, NULL, "DELETE FROM push_pending WHERE device_id = $1", "u", device) : e;
}

pl_err pl_pg_push_token(pl__pg *g, pl_store_req *r) {
  const pl_store_push_token_req *x = &r->u.push_token;
  if (!x->in.token || !*x->in.token)
    return pl_pg_push_forget(g, x->in.device);
  return pl_pg_q(g, NULL,
                 "INSERT INTO push_tokens(device_id, user_id, user_name, provider, token, updated)"
                 " VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT(device_id) DO UPDATE SET"
                 " user_id = EXCLUDED.user_id, user_name = EXCLUDED.user_name, provider = EXCLUDED.provider,"
                 " token = EXCLUDED.token, updated = EXCLUDED.updated",
                 "uusssu", x->in.device, x->in.user_id, x->in.user, x->in.provider, x->in.token, x->in.now);
}

pl_err pl_pg_push_tokens(pl__pg *g, pl_store_req *r) {
  pl_store_push_tokens_req *x = &r->u.push_tokens;
  PGresult *res;
  pl_err e = pl_pg_q(g, NULL, "DELETE FROM push_pending WHERE device_id IN (" PL__STALE ")", NULL);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL, "DELETE FROM push_tokens WHERE device_id IN (" PL__STALE ")", NULL);
  if (e == PL_OK)
    e = pl_pg_q(g, &res,
                "SELECT device_id, user_id, user_name, provider, token FROM push_tokens ORDER BY device_id",
                NULL);
  if (e != PL_OK)
    return e;
  int rows = PQntuples(res);
  x->out.tokens = pl_calloc((size_t)rows + 1, sizeof *x->out.tokens);
  for (int i = 0; i < rows; i++)
    x->out.tokens[x->out.ntokens++] = (pl_store_push_token){
        .device = pl_pg_col_u64(res, i, 0),
        .user_id = pl_pg_col_u64(res, i, 1),
        .user = pl_pg_col_str(res, i, 2),
        .provider = pl_pg_col_str(res, i, 3),
        .token = pl_pg_col_str(res, i, 4),
    };
  PQclear(res);
  return PL_OK;
}

/* ---- pending notifications ------------------------------------------------------------ */

/* One statement for all the devices: a row for each with a token that is
 * not one of the sender's own, or a message more in the row it has. */
pl_err pl_pg_push_enqueue(pl__pg *g, pl_store_req *r) {
  pl_store_push_enqueue_req *x = &r->u.push_enqueue;
  PGresult *res;
  if (!x->in.ndevices)
    return PL_OK;
  char *arr = pl_pg_array(x->in.devices, x->in.ndevices);
  pl_err e = pl_pg_q(
      g, &res,
      "INSERT INTO push_pending(device_id, user_id, count, first_ms, due_ms, attempts, sender, conv, preview)"
      " SELECT device_id, user_id, 1, $2, $3, 0, $4, $5, $6 FROM push_tokens"
      " WHERE device_id = ANY($1::bigint[]) AND user_name IS DISTINCT FROM $7"
      " ON CONFLICT(device_id) DO UPDATE SET count = push_pending.count + 1,"
      " sender = EXCLUDED.sender, conv = EXCLUDED.conv, preview = EXCLUDED.preview",
      "suussbs", arr, x->in.now, x->in.now + x->in.window_ms, x->in.from, x->in.conv,
      (const void *)x->in.text, x->in.text ? x->in.text_len : 0, x->in.sender);
  pl_free(arr);
  if (e == PL_OK)
    x->out.enqueued = strtoull(PQcmdTuples(res), NULL, 10);
  PQclear(res);
  return e;
}

static void pl__claim_row(const PGresult *res, int i, pl_store_push_row *w) {
  w->device = pl_pg_col_u64(res, i, 0);
  w->user_id = pl_pg_col_u64(res, i, 1);
  w->count = pl_pg_col_u64(res, i, 2);
  w->first_ms = pl_pg_col_u64(res, i, 3);
  w->claim = pl_pg_col_u64(res, i, 4); /* after this claim's +1 */
  w->attempts = (uint32_t)pl_pg_col_u64(res, i, 5);
  w->user = pl__str(res, i, 6);
  w->provider = pl__str(res, i, 7);
  w->token = pl__str(res, i, 8);
  w->from = pl__str(res, i, 9);
  w->conv = pl__str(res, i, 10);
  size_t n = 0;
  uint8_t *b = pl_pg_col_bytes(res, i, 11, &n);
  if (b) { /* the preview as a NUL-terminated string */
    w->text = pl_strndup((const char *)b, n);
    w->text_len = n;
  }
  pl_free(b);
}

/* Leases the due rows (claim rules: pl_store.h) and reads what is left. */
pl_err pl_pg_push_claim(pl__pg *g, pl_store_req *r) {
  pl_store_push_claim_req *x = &r->u.push_claim;
  PGresult *res = NULL;
  pl_err e = PL_OK;
  if (x->in.limit)
    e = pl_pg_q(
        g, &res,
        "WITH due AS (SELECT p.device_id, p.due_ms AS was FROM push_pending p JOIN push_tokens t ON "
        "t.device_id = p.device_id"
        " WHERE p.due_ms <= $1 ORDER BY p.due_ms LIMIT $2 FOR UPDATE OF p SKIP LOCKED),"
        " c AS (UPDATE push_pending p SET due_ms = $3, owner = $4, claim = p.claim + 1 FROM due"
        " WHERE p.device_id = due.device_id RETURNING p.*)"
        " SELECT c.device_id, c.user_id, c.count, c.first_ms, c.claim, c.attempts, t.user_name,"
        " t.provider, t.token, c.sender, c.conv, c.preview FROM c JOIN push_tokens t"
        " ON t.device_id = c.device_id JOIN due ON due.device_id = c.device_id ORDER BY due.was, c.device_id",
        "uuus", pl_pg_clamp(x->in.now), (uint64_t)x->in.limit, pl_pg_clamp(x->in.now + x->in.lease_ms),
        x->in.owner);
  if (e != PL_OK)
    return e;
  int rows = res ? PQntuples(res) : 0;
  x->out.rows = pl_calloc((size_t)rows + 1, sizeof *x->out.rows);
  for (int i = 0; i < rows && x->out.nrows < x->in.limit; i++)
    pl__claim_row(res, i, &x->out.rows[x->out.nrows++]);
  PQclear(res);
  e = pl_pg_q(g, &res, "SELECT count(*), min(due_ms) FROM push_pending", NULL);
  if (e == PL_OK) {
    x->out.pending = pl_pg_col_u64(res, 0, 0);
    x->out.next_due = pl_pg_col_u64(res, 0, 1);
  }
  PQclear(res);
  return e;
}

/* The provider took it: the row goes, unless messages came while it was
 * out, which then get a window of their own. */
static pl_err pl__sent(pl__pg *g, const pl_store_push_result *x, uint64_t now, uint64_t window) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res, "DELETE FROM push_pending WHERE device_id = $1 AND claim = $2 AND count <= $3",
                     "uuu", x->device, x->claim, x->count);
  int gone = e == PL_OK && strtoull(PQcmdTuples(res), NULL, 10) > 0;
  PQclear(res);
  if (e != PL_OK || gone)
    return e;
  return pl_pg_q(g, NULL,
                 "UPDATE push_pending SET count = count - $3, first_ms = $4, due_ms = $4 + $5, attempts = 0,"
                 " owner = NULL WHERE device_id = $1 AND claim = $2 AND count > $3",
                 "uuuuu", x->device, x->claim, x->count, now, window);
}

#define PL__RELEASE "UPDATE push_pending SET due_ms = 0, owner = NULL WHERE device_id = $1 AND claim = $2"

/* The provider disowns the token it was sent to: it goes, and the row with
 * it; unless the device registered another meanwhile, which gets the row. */
static pl_err pl__bad_token(pl__pg *g, const pl_store_push_result *x) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res, "DELETE FROM push_tokens WHERE device_id = $1 AND token = $2", "us", x->device,
                     x->token);
  int gone = e == PL_OK && strtoull(PQcmdTuples(res), NULL, 10) > 0;
  PQclear(res);
  if (e != PL_OK)
    return e;
  return gone ? pl_pg_q(g, NULL, "DELETE FROM push_pending WHERE device_id = $1", "u", x->device)
              : pl_pg_q(g, NULL, PL__RELEASE, "uu", x->device, x->claim);
}

static pl_err pl__result(pl__pg *g, const pl_store_req *r, const pl_store_push_result *x) {
  switch (x->outcome) {
  case PL_PUSH_DONE_SENT: return pl__sent(g, x, r->u.push_done.in.now, r->u.push_done.in.window_ms);
  case PL_PUSH_DONE_LATER:
    return pl_pg_q(g, NULL,
                   "UPDATE push_pending SET due_ms = $3, attempts = $4, owner = NULL"
                   " WHERE device_id = $1 AND claim = $2",
                   "uuuu", x->device, x->claim, pl_pg_clamp(x->due_ms), (uint64_t)x->attempts);
  case PL_PUSH_DONE_DROP:
    return pl_pg_q(g, NULL, "DELETE FROM push_pending WHERE device_id = $1 AND claim = $2", "uu", x->device,
                   x->claim);
  case PL_PUSH_DONE_BAD_TOKEN: return pl__bad_token(g, x);
  case PL_PUSH_DONE_RELEASE: return pl_pg_q(g, NULL, PL__RELEASE, "uu", x->device, x->claim);
  }
  return PL_OK; /* unreachable: pl_store_req_valid checks outcomes */
}

pl_err pl_pg_push_done(pl__pg *g, pl_store_req *r) {
  pl_err e = PL_OK;
  for (size_t i = 0; e == PL_OK && i < r->u.push_done.in.nresults; i++)
    e = pl__result(g, r, &r->u.push_done.in.results[i]);
  return e;
}
