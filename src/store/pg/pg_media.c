/* pg_media: uploads on PostgreSQL: media rows, who may see them (grants),
 * quota usage, attaching media to a message, and their expiry. The rules
 * are pl_visibility's and pl_quota's, as on SQLite (sq_media.c).
 *
 * The bytes stay in the blob store the media layer writes (pl_blob, under
 * --data/media): every node that serves an upload must reach the same
 * directory. docs/architecture.md 17 says what a cluster needs. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_quota.h"
#include "../../rules/pl_visibility.h"
#include "pg_internal.h"

#define PL__MEDIA_COLS                                                                                   \
  "owner, blob, thumb, type, name, size, thumb_size, width, height, thumb_width, thumb_height, created," \
  " expires"

static void pl__copy(char *dst, size_t cap, const PGresult *res, int col) {
  snprintf(dst, cap, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

static pl_err pl__media_load(pl__pg *g, const char *id, pl_media_row *m, int *found) {
  PGresult *res;
  memset(m, 0, sizeof *m);
  pl_err e = pl_pg_q(g, &res, "SELECT " PL__MEDIA_COLS " FROM media WHERE id = $1", "s", id);
  *found = e == PL_OK && PQntuples(res) > 0;
  if (*found) {
    snprintf(m->id, sizeof m->id, "%s", id);
    m->owner = pl_pg_col_u64(res, 0, 0);
    pl__copy(m->blob, sizeof m->blob, res, 1);
    pl__copy(m->thumb, sizeof m->thumb, res, 2);
    pl__copy(m->type, sizeof m->type, res, 3);
    pl__copy(m->name, sizeof m->name, res, 4);
    m->size = pl_pg_col_u64(res, 0, 5);
    m->thumb_size = pl_pg_col_u64(res, 0, 6);
    m->width = (uint32_t)pl_pg_col_u64(res, 0, 7);
    m->height = (uint32_t)pl_pg_col_u64(res, 0, 8);
    m->thumb_width = (uint32_t)pl_pg_col_u64(res, 0, 9);
    m->thumb_height = (uint32_t)pl_pg_col_u64(res, 0, 10);
    m->created = pl_pg_col_u64(res, 0, 11);
    m->expires = pl_pg_col_u64(res, 0, 12);
  }
  PQclear(res);
  return e;
}

/* Whether conv ("dm:a:b" or "g:N") is one u takes part in now: the role
 * is read for a group only. */
static pl_err pl__in_conv(pl__pg *g, const pl_pg_user *u, const char *conv, int *in) {
  uint64_t gid = pl_conv_gid(conv);
  int role = PL_ROLE_NONE;
  pl_err e = gid ? pl_pg_group_role(g, gid, u->id, &role) : PL_OK;
  *in = e == PL_OK && pl_visibility_in_conv(conv, u->name, role);
  return e;
}

/* May user u see m (pl_visibility_media)? The conversations it was sent
 * to are read only when u did not upload it. */
static pl_err pl__media_visible(pl__pg *g, const pl_pg_user *u, const pl_media_row *m, int *ok) {
  PGresult *res;
  *ok = pl_visibility_owner(m->owner, u->id);
  if (*ok)
    return PL_OK;
  pl_err e = pl_pg_q(g, &res, "SELECT conv FROM media_grants WHERE media = $1", "s", m->id);
  int in = 0;
  for (int i = 0; e == PL_OK && i < PQntuples(res) && !in; i++)
    e = pl__in_conv(g, u, PQgetvalue(res, i, 0), &in);
  PQclear(res);
  *ok = pl_visibility_media(m->owner, u->id, in);
  return e;
}

/* SEND with in.media_id: the sender must be able to see the media
 * (uploaded it, or got it in a message: forwarding). */
pl_err pl_pg_media_for_send(pl__pg *g, pl_store_req *r, uint8_t **att, size_t *len) {
  pl_pg_user *me = NULL;
  pl_media_row m;
  int found = 0, ok = 0;
  *att = NULL;
  *len = 0;
  pl_err e = pl_pg_user_get(g, r->user_id, &me);
  if (e == PL_OK && me)
    e = pl__media_load(g, r->u.send.in.media_id, &m, &found);
  if (e == PL_OK && found)
    e = pl__media_visible(g, me, &m, &ok);
  pl_pg_user_free(me);
  if (e != PL_OK)
    return e;
  if ((r->status = pl_visibility_attach(found, ok)) != PL_OK)
    return PL_OK;
  pl_store_media_pack(&m, att, len);
  return PL_OK;
}

/* After a send carrying it: the conversation may fetch it, and it lives a
 * TTL past this message (the message row already names it). */
pl_err pl_pg_media_grant(pl__pg *g, const char *media_id, const char *conv) {
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, g);
  pl_pg_pipe_add(&p, "INSERT INTO media_grants(media, conv) VALUES($1, $2) ON CONFLICT DO NOTHING", "ss",
                 media_id, conv);
  pl_pg_pipe_add(&p, "UPDATE media SET expires = greatest(expires, $2) WHERE id = $1", "su", media_id,
                 pl_pg_clamp(pl_retention_media_expires(g->media_ttl_ms, pl_now_ms())));
  pl_err e = pl_pg_pipe_end(&p);
  pl_pg_pipe_clear(&p);
  return e;
}

static pl_err pl__usage(pl__pg *g, uint64_t uid, uint64_t *usage) {
  return pl_pg_u64(g, usage, "SELECT COALESCE(sum(size + thumb_size), 0) FROM media WHERE owner = $1", "u",
                   uid);
}

pl_err pl_pg_media_auth(pl__pg *g, pl_store_req *r) {
  pl_store_media_auth_req *x = &r->u.media_auth;
  pl_err e = pl_pg_acct_token(g, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                              &x->out.device);
  return e == PL_OK && r->status == PL_OK ? pl__usage(g, x->out.user_id, &x->out.usage) : e;
}

/* The user's uploads row lock is its users row: two uploads of one user on
 * two nodes take it in turn, so the quota sees both. */
pl_err pl_pg_media_put(pl__pg *g, pl_store_req *r) {
  const pl_media_row *m = r->u.media_put.in.media;
  pl_err e = pl_pg_q(g, NULL, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", "u", r->user_id);
  if (e == PL_OK)
    e = pl__usage(g, r->user_id, &r->u.media_put.out.usage);
  if (e != PL_OK)
    return e;
  /* in.quota is the room the upload path left this upload (pl_quota_room);
   * the usage is the one at this commit */
  if (!pl_quota_fits(r->u.media_put.in.quota, r->u.media_put.out.usage, 0, m->size + m->thumb_size)) {
    r->status = PL_ERR_QUOTA;
    return PL_OK;
  }
  /* the sweep may have dropped these bytes since the uploader found them */
  if (g->blob_exists &&
      (!g->blob_exists(g->blob_ud, m->blob) || (*m->thumb && !g->blob_exists(g->blob_ud, m->thumb)))) {
    r->status = PL_ERR_AGAIN;
    return PL_OK;
  }
  uint64_t now = pl_now_ms();
  e = pl_pg_q(g, NULL,
              "INSERT INTO media(id, owner, blob, thumb, type, name, size, thumb_size, width, height,"
              " thumb_width, thumb_height, created, expires)"
              " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
              "susssuuuuuuuuu", m->id, r->user_id, m->blob, m->thumb, m->type, m->name, m->size,
              m->thumb_size, (uint64_t)m->width, (uint64_t)m->height, (uint64_t)m->thumb_width,
              (uint64_t)m->thumb_height, now, pl_pg_clamp(pl_retention_media_expires(g->media_ttl_ms, now)));
  if (e == PL_OK)
    r->u.media_put.out.usage += m->size + m->thumb_size;
  return e;
}

pl_err pl_pg_media_get(pl__pg *g, pl_store_req *r) {
  pl_store_media_get_req *x = &r->u.media_get;
  pl_pg_user *u = NULL;
  int found = 0, ok = 1;
  pl_err e = PL_OK;
  if (!x->in.any_user) {
    e = pl_pg_acct_token(g, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                         &x->out.device);
    if (e != PL_OK || r->status != PL_OK)
      return e;
    e = pl_pg_user_get(g, x->out.user_id, &u);
  }
  if (e == PL_OK)
    e = pl__media_load(g, x->in.media_id, &x->out.media, &found);
  if (e == PL_OK && found && u)
    e = pl__media_visible(g, u, &x->out.media, &ok);
  pl_pg_user_free(u);
  if (e == PL_OK)
    r->status = pl_visibility_download(found, ok);
  return e;
}

static void pl__gone_add(pl__pg *g, const char *key) {
  if (!*key)
    return;
  for (size_t i = 0; i < g->ngone; i++)
    if (!strcmp(g->gone[i], key))
      return;
  g->gone = pl_pg_reserve(g->gone, g->ngone, &g->gone_cap, sizeof *g->gone);
  g->gone[g->ngone++] = pl_strdup(key);
}

/* The blobs (blob, thumb) of res's deleted uploads that no upload names
 * any more: told to blob_gone after the commit. Clears res. */
static pl_err pl__gone_unused(pl__pg *g, PGresult *res) {
  pl_err e = PL_OK;
  int n = PQntuples(res);
  for (int i = 0; i < 2 * n && e == PL_OK; i++) {
    const char *key = PQgetvalue(res, i / 2, i % 2);
    uint64_t used = 0;
    if (!*key)
      continue;
    e = pl_pg_u64(g, &used, "SELECT count(*) FROM media WHERE blob = $1 OR thumb = $1", "s", key);
    if (e == PL_OK && !used)
      pl__gone_add(g, key);
  }
  PQclear(res);
  return e;
}

/* Inside the sweep: uploads past their TTL that no stored message carries
 * go with their grants, and the blobs no upload names any more are told
 * to blob_gone after the commit. */
pl_err pl_pg_media_expire(pl__pg *g, uint64_t now) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "WITH x AS (SELECT id FROM media WHERE expires <= $1 AND NOT EXISTS"
                     " (SELECT 1 FROM messages WHERE media_id = media.id) LIMIT 256 FOR UPDATE SKIP LOCKED),"
                     " gr AS (DELETE FROM media_grants WHERE media IN (SELECT id FROM x))"
                     " DELETE FROM media WHERE id IN (SELECT id FROM x) RETURNING blob, thumb",
                     "u", pl_pg_clamp(now));
  if (e != PL_OK)
    return e;
  int n = PQntuples(res);
  e = pl__gone_unused(g, res);
  if (e == PL_OK && n)
    pl_info("store: %d expired upload(s) deleted", n);
  return e;
}

pl_err pl_pg_media_drop_owner(pl__pg *g, uint64_t uid) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "WITH x AS (DELETE FROM media WHERE owner = $1 RETURNING id, blob, thumb),"
                     " gr AS (DELETE FROM media_grants WHERE media IN (SELECT id FROM x))"
                     " SELECT blob, thumb FROM x",
                     "u", uid);
  return e == PL_OK ? pl__gone_unused(g, res) : e;
}
