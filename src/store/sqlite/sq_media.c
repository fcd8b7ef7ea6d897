/* sq_media: uploads: media rows, who may see them, quota usage, attaching
 * media to a message, and their expiry. */
#include "../../rules/pl_conv.h"
#include "../../rules/pl_quota.h"
#include "../../rules/pl_visibility.h"
#include "sq_internal.h"

/* ---- media (protocol.md 13) ---------------------------------------------------- */

static void pl__copy(char *dst, size_t cap, const unsigned char *src) {
  snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static pl_err pl__media_load(pl__sq *q, const char *id, pl_media_row *m, int *found) {
  sqlite3_stmt *st = q->st[ST_MEDIA_GET];
  pl_sq_bind_text(st, 1, id);
  pl_err e = pl_sq_row(q, st, found), ne = PL_OK;
  memset(m, 0, sizeof *m);
  if (e == PL_OK && *found) {
    snprintf(m->id, sizeof m->id, "%s", id);
    m->owner = pl_sq_col_u64(st, 0);
    pl__copy(m->blob, sizeof m->blob, sqlite3_column_text(st, 1));
    pl__copy(m->thumb, sizeof m->thumb, sqlite3_column_text(st, 2));
    pl__copy(m->type, sizeof m->type, sqlite3_column_text(st, 3));
    ne = pl_sq_seal_name(q, st, 4, id, m->name, sizeof m->name);
    m->size = pl_sq_col_u64(st, 5);
    m->thumb_size = pl_sq_col_u64(st, 6);
    m->width = (uint32_t)pl_sq_col_u64(st, 7);
    m->height = (uint32_t)pl_sq_col_u64(st, 8);
    m->thumb_width = (uint32_t)pl_sq_col_u64(st, 9);
    m->thumb_height = (uint32_t)pl_sq_col_u64(st, 10);
    m->created = pl_sq_col_u64(st, 11);
    m->expires = pl_sq_col_u64(st, 12);
  }
  sqlite3_reset(st);
  return e != PL_OK ? e : ne; /* a name that does not open is never shown as another */
}

/* Whether conv ("dm:a:b" or "g:N") is one u takes part in now: the role
 * is loaded for a group only. */
static pl_err pl__in_conv(pl__sq *q, pl__user *u, const char *conv, int *in) {
  uint64_t gid = pl_conv_gid(conv);
  int role = PL_ROLE_NONE;
  pl_err e = gid ? pl_sq_group_role(q, u, gid, &role) : PL_OK;
  *in = e == PL_OK && pl_visibility_in_conv(conv, u->name, role);
  return e;
}

/* May u see m (pl_visibility_media)? The conversations it was sent to are
 * loaded only when u did not upload it. */
static pl_err pl__media_visible(pl__sq *q, pl__user *u, const pl_media_row *m, int *ok) {
  *ok = pl_visibility_owner(m->owner, u->id);
  if (*ok)
    return PL_OK;
  sqlite3_stmt *st = q->st[ST_MEDIA_GRANTS];
  pl_sq_bind_text(st, 1, m->id);
  size_t n = 0, cap = 0;
  char **convs = NULL;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    convs = pl_sq_reserve(convs, n, &cap, sizeof *convs);
    convs[n++] = pl_sq_col_str(st, 0);
  }
  pl_err e = rc == SQLITE_DONE ? PL_OK : pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  int in = 0;
  for (size_t i = 0; i < n && e == PL_OK && !in; i++)
    e = pl__in_conv(q, u, convs[i], &in);
  *ok = pl_visibility_media(m->owner, u->id, in);
  for (size_t i = 0; i < n; i++)
    pl_free(convs[i]);
  pl_free(convs);
  return e;
}

/* SEND with in.media_id: the sender must be able to see the media
 * (uploaded it, or got it in a message: forwarding). */
pl_err pl_sq_media_for_send(pl__sq *q, pl_store_req *r, uint8_t **att, size_t *len) {
  pl__user *me = NULL;
  pl_media_row m;
  int found = 0, ok = 0;
  pl_err e = pl_sq_acct_user_get(q, r->user_id, &me);
  if (e == PL_OK && me)
    e = pl__media_load(q, r->u.send.in.media_id, &m, &found);
  if (e == PL_OK && found)
    e = pl__media_visible(q, me, &m, &ok);
  if (e != PL_OK)
    return e;
  if ((r->status = pl_visibility_attach(found, ok)) != PL_OK)
    return PL_OK;
  pl_store_media_pack(&m, att, len);
  return PL_OK;
}

/* After a send with an attachment committed its row: the row carries it,
 * the conversation may fetch it, and it lives a TTL past this message. */
pl_err pl_sq_media_attach(pl__sq *q, pl_store_req *r, uint8_t **att, size_t len) {
  pl_err e = PL_OK;
  if (r->u.send.out.msg.qid) {
    sqlite3_stmt *st = q->st[ST_MEDIA_ATTACH];
    pl_sq_bind_u64(st, 1, r->u.send.out.msg.qid);
    pl_sq_bind_text(st, 2, r->u.send.in.media_id);
    const pl_msg *m = &r->u.send.out.msg;
    pl_sq_seal_bind(q, st, 3, 'm', m->conv, m->seq, m->server_ts, *att, len);
    e = pl_sq_run(q, st);
  }
  if (e == PL_OK) {
    sqlite3_stmt *st = q->st[ST_MEDIA_GRANT];
    pl_sq_bind_text(st, 1, r->u.send.in.media_id);
    pl_sq_bind_text(st, 2, r->u.send.out.conv);
    e = pl_sq_run(q, st);
  }
  if (e == PL_OK) {
    sqlite3_stmt *st = q->st[ST_MEDIA_TOUCH];
    pl_sq_bind_text(st, 1, r->u.send.in.media_id);
    pl_sq_bind_u64(st, 2, pl_retention_media_expires(q->media_ttl_ms, pl_now_ms()));
    e = pl_sq_run(q, st);
  }
  if (e == PL_OK) {
    r->u.send.out.msg.media = *att;
    r->u.send.out.msg.media_len = len;
    *att = NULL;
  }
  return e;
}

static pl_err pl__media_usage(pl__sq *q, uint64_t uid, uint64_t *usage) {
  return pl_sq_u64_query(q, ST_MEDIA_USAGE, uid, 0, 0, usage);
}

pl_err pl_sq_media_auth(pl__sq *q, pl_store_req *r) {
  pl_store_media_auth_req *x = &r->u.media_auth;
  pl_err e = pl_sq_acct_token(q, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                              &x->out.device);
  if (e == PL_OK && r->status == PL_OK)
    e = pl__media_usage(q, r->u.media_auth.out.user_id, &r->u.media_auth.out.usage);
  return e;
}

pl_err pl_sq_media_put(pl__sq *q, pl_store_req *r) {
  const pl_media_row *m = r->u.media_put.in.media;
  pl_err e = pl__media_usage(q, r->user_id, &r->u.media_put.out.usage);
  if (e != PL_OK)
    return e;
  /* in.quota is the room the upload path left this upload (pl_quota_room);
   * the usage is the one at this commit */
  if (!pl_quota_fits(r->u.media_put.in.quota, r->u.media_put.out.usage, 0, m->size + m->thumb_size)) {
    r->status = PL_ERR_QUOTA;
    return PL_OK;
  }
  /* the sweep may have dropped these bytes since the uploader found them */
  if (q->blob_exists &&
      (!q->blob_exists(q->blob_ud, m->blob) || (*m->thumb && !q->blob_exists(q->blob_ud, m->thumb)))) {
    r->status = PL_ERR_AGAIN;
    return PL_OK;
  }
  uint64_t now = pl_now_ms();
  sqlite3_stmt *st = q->st[ST_MEDIA_INSERT];
  pl_sq_bind_text(st, 1, m->id);
  pl_sq_bind_u64(st, 2, r->user_id);
  pl_sq_bind_text(st, 3, m->blob);
  pl_sq_bind_text(st, 4, m->thumb);
  pl_sq_bind_text(st, 5, m->type);
  pl_sq_seal_bind_name(q, st, 6, m->id, m->name);
  pl_sq_bind_u64(st, 7, m->size);
  pl_sq_bind_u64(st, 8, m->thumb_size);
  pl_sq_bind_u64(st, 9, m->width);
  pl_sq_bind_u64(st, 10, m->height);
  pl_sq_bind_u64(st, 11, m->thumb_width);
  pl_sq_bind_u64(st, 12, m->thumb_height);
  pl_sq_bind_u64(st, 13, now);
  pl_sq_bind_u64(st, 14, pl_retention_media_expires(q->media_ttl_ms, now));
  e = pl_sq_run(q, st);
  if (e == PL_OK)
    r->u.media_put.out.usage += m->size + m->thumb_size;
  return e;
}

pl_err pl_sq_media_get(pl__sq *q, pl_store_req *r) {
  pl__user *u = NULL;
  int found = 0, ok = 1;
  pl_err e = PL_OK;
  if (!r->u.media_get.in.any_user) {
    pl_store_media_get_req *x = &r->u.media_get;
    e = pl_sq_acct_token(q, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                         &x->out.device);
    if (e != PL_OK || r->status != PL_OK)
      return e;
    e = pl_sq_acct_user_get(q, r->u.media_get.out.user_id, &u);
  }
  if (e == PL_OK)
    e = pl__media_load(q, r->u.media_get.in.media_id, &r->u.media_get.out.media, &found);
  if (e == PL_OK && found && u)
    e = pl__media_visible(q, u, &r->u.media_get.out.media, &ok);
  if (e == PL_OK)
    r->status = pl_visibility_download(found, ok);
  return e;
}

static void pl__gone_add(pl__sq *q, const char *key) {
  if (!*key)
    return;
  for (size_t i = 0; i < q->ngone; i++)
    if (!strcmp(q->gone[i], key))
      return;
  q->gone = pl_sq_reserve(q->gone, q->ngone, &q->gone_cap, sizeof *q->gone);
  q->gone[q->ngone++] = pl_strdup(key);
}

pl_err pl_sq_media_drop_blob(pl__sq *q, const char *key) {
  int used = 0;
  sqlite3_stmt *u = q->st[ST_BLOB_USED];
  pl_sq_bind_text(u, 1, key);
  pl_err e = pl_sq_row(q, u, &used);
  sqlite3_reset(u);
  if (e == PL_OK && !used)
    pl__gone_add(q, key);
  return e;
}

void pl_sq_media_gone_clear(pl__sq *q) {
  for (size_t i = 0; i < q->ngone; i++)
    pl_free(q->gone[i]);
  q->ngone = 0;
}

/* Inside the sweep: uploads past their TTL that no stored message carries
 * go, and so do the blobs no upload names any more (after the commit). */
pl_err pl_sq_media_expire(pl__sq *q, uint64_t now) {
  sqlite3_stmt *st = q->st[ST_MEDIA_EXPIRED];
  pl_err e = PL_OK;
  size_t n = 0, cap = 0;
  char **rows = NULL; /* id, blob, thumb triples */
  int rc;
  pl_sq_bind_u64(st, 1, pl_sq_clamp(now));
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rows = pl_sq_reserve(rows, n, &cap, 3 * sizeof *rows);
    for (int k = 0; k < 3; k++)
      rows[3 * n + (size_t)k] = pl_sq_col_str(st, k);
    n++;
  }
  if (rc != SQLITE_DONE)
    e = pl_sq_sql_err(q, st, rc);
  sqlite3_reset(st);
  for (size_t i = 0; i < n && e == PL_OK; i++) {
    e = pl_sq_run_text(q, ST_MEDIA_GRANTS_DEL, rows[3 * i]);
    if (e == PL_OK)
      e = pl_sq_run_text(q, ST_MEDIA_DEL, rows[3 * i]);
  }
  for (size_t i = 0; i < 2 * n && e == PL_OK; i++)
    e = pl_sq_media_drop_blob(q, rows[3 * (i / 2) + 1 + i % 2]);
  for (size_t i = 0; i < 3 * n; i++)
    pl_free(rows[i]);
  pl_free(rows);
  if (e == PL_OK && n)
    pl_info("store: %zu expired upload(s) deleted", n);
  return e;
}
