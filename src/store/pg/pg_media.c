/* pg_media: uploads on PostgreSQL: media rows, who may see them (grants),
 * quota usage, attaching media to a message, and their expiry. The rules
 * are pl_visibility's and pl_quota's, as on SQLite (sq_media.c).
 *
 * The bytes are in the same database (blobs, blob_chunks: the media
 * layer's pl_blob_pg writes and reads them). This file only decides, in the
 * transactions that record and expire uploads, whether a blob is there and
 * when one goes, so that across nodes a blob is removed exactly once and
 * never under an upload being recorded (docs/architecture.md 17).
 *
 * A sharded store keeps an upload, its grants and its bytes on its owner's
 * shard (the id's first four hex digits are the owner's bucket): whoever
 * attaches or downloads it reads it there, through the link to that shard
 * (pl_pg_home_of_media), and a send's grant is written there before the
 * send commits (docs/scaling.md 2, "Attachments"). */
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

/* An error of a read on at: g's own (returned: g's transaction failed),
 * or another shard's (kept in *away: the request fails, retryable, and
 * g's transaction goes on). */
static pl_err pl__on(const pl__pg *g, const pl__pg *at, pl_err e, pl_err *away) {
  if (e == PL_OK || at == g)
    return e;
  *away = e;
  return PL_OK;
}

/* Whether conv ("dm:a:b" or "g:N") is one u takes part in now: the role
 * is read for a group only, on the group's shard (g: the asker's store). */
static pl_err pl__in_conv(pl__pg *g, const pl_pg_user *u, const char *conv, int *in, pl_err *away) {
  uint64_t gid = pl_conv_gid(conv);
  int role = PL_ROLE_NONE;
  pl_err e = PL_OK;
  *in = 0;
  if (gid) {
    pl__pg *h = pl_pg_home(g, gid);
    if (!h) {
      *away = PL_ERR_STORE;
      return PL_OK;
    }
    if ((e = pl__on(g, h, pl_pg_group_role(h, gid, u->id, &role), away)) != PL_OK || *away != PL_OK)
      return e;
  }
  *in = pl_visibility_in_conv(conv, u->name, role);
  return PL_OK;
}

/* May user u see m (pl_visibility_media)? The conversations it was sent
 * to are read (on mg, the upload's store) only when u did not upload it. */
static pl_err pl__media_visible(pl__pg *g, pl__pg *mg, const pl_pg_user *u, const pl_media_row *m, int *ok,
                                pl_err *away) {
  PGresult *res = NULL;
  *ok = pl_visibility_owner(m->owner, u->id);
  if (*ok)
    return PL_OK;
  pl_err e =
      pl__on(g, mg, pl_pg_q(mg, &res, "SELECT conv FROM media_grants WHERE media = $1", "s", m->id), away);
  int in = 0;
  for (int i = 0; e == PL_OK && *away == PL_OK && i < PQntuples(res) && !in; i++)
    e = pl__in_conv(g, u, PQgetvalue(res, i, 0), &in, away);
  PQclear(res);
  *ok = pl_visibility_media(m->owner, u->id, in);
  return e;
}

/* The upload's row (*found) and whether u may see it (*ok), read on its
 * owner's shard; *away: a read on another shard failed. */
static pl_err pl__media_find(pl__pg *g, const pl_pg_user *u, const char *id, pl_media_row *m, int *found,
                             int *ok, pl_err *away) {
  pl__pg *mg = pl_pg_home_of_media(g, id);
  *found = *ok = 0;
  *away = PL_OK;
  memset(m, 0, sizeof *m);
  if (!mg) {
    *away = PL_ERR_STORE;
    return PL_OK;
  }
  pl_err e = pl__on(g, mg, pl__media_load(mg, id, m, found), away);
  if (e == PL_OK && *away == PL_OK && *found && u)
    e = pl__media_visible(g, mg, u, m, ok, away);
  return e;
}

pl_err pl_pg_media_for_send(pl__pg *g, pl_store_req *r, const pl_pg_user *me, uint8_t **att, size_t *len) {
  pl_media_row m;
  int found = 0, ok = 0;
  pl_err away = PL_OK;
  *att = NULL;
  *len = 0;
  pl_err e = me ? pl__media_find(g, me, r->u.send.in.media_id, &m, &found, &ok, &away) : PL_OK;
  if (e != PL_OK)
    return e;
  if (away != PL_OK) { /* its shard away: this send fails (retryable), not its batch */
    r->status = away;
    return PL_OK;
  }
  if ((r->status = pl_visibility_attach(found, ok)) != PL_OK)
    return PL_OK;
  pl_store_media_pack(&m, att, len);
  return PL_OK;
}

/* After a send carrying it: the conversation may fetch it, and it lives a
 * TTL past this message (the message row already names it). */
static void pl__grant_add(pl__pg *g, pl_pg_pipe *p, const char *media_id, const char *conv) {
  pl_pg_pipe_add(p, "INSERT INTO media_grants(media, conv) VALUES($1, $2) ON CONFLICT DO NOTHING", "ss",
                 media_id, conv);
  pl_pg_pipe_add(p, "UPDATE media SET expires = greatest(expires, $2) WHERE id = $1", "su", media_id,
                 pl_pg_clamp(pl_retention_media_expires(g->media_ttl_ms, pl_now_ms())));
}

void pl_pg_media_grant_add(pl__pg *g, pl_pg_pipe *p, const char *media_id, const char *conv) {
  if (pl_pg_home_of_media_is(g, media_id))
    pl__grant_add(g, p, media_id, conv);
}

/* The grant on the upload's shard when that is another: committed there
 * first, so that no one ever holds a message whose attachment it may not
 * fetch yet. A send that fails after it leaves a grant to a conversation
 * its sender takes part in and meant to share the upload with. Copies of
 * the message on other shards name the upload (messages.media_id there);
 * the upload outlives them: its expiry moves a media TTL (never shorter
 * than a message's) past this send. */
pl_err pl_pg_media_grant_away(pl__pg *g, const char *media_id, const char *conv) {
  if (pl_pg_home_of_media_is(g, media_id))
    return PL_OK;
  pl__pg *mg = pl_pg_home_of_media(g, media_id);
  if (!mg)
    return PL_ERR_STORE;
  pl_pg_pipe p;
  pl_pg_pipe_begin(&p, mg); /* one implicit transaction: both statements or none */
  pl__grant_add(g, &p, media_id, conv);
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
  /* a sweep (of any node) may have dropped these bytes since the uploader
   * found them: their rows, locked until this commits, say (pl__blob_lock) */
  uint64_t have = 0, want = *m->thumb && strcmp(m->thumb, m->blob) ? 2 : 1;
  e = pl_pg_u64(g, &have,
                "SELECT count(*) FROM (SELECT key FROM blobs WHERE key IN ($1, $2) ORDER BY key FOR SHARE) k",
                "ss", m->blob, m->thumb);
  if (e != PL_OK)
    return e;
  if (have != want) {
    r->status = PL_ERR_AGAIN;
    return PL_OK;
  }
  uint64_t now = pl_now_ms();
  e = pl_pg_q(g, NULL,
              "INSERT INTO media(id, owner, blob, thumb, type, name, size, thumb_size, width, height,"
              " thumb_width, thumb_height, created, expires)"
              " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
              "sussssuuuuuuuu", m->id, r->user_id, m->blob, m->thumb, m->type, m->name, m->size,
              m->thumb_size, (uint64_t)m->width, (uint64_t)m->height, (uint64_t)m->thumb_width,
              (uint64_t)m->thumb_height, now, pl_pg_clamp(pl_retention_media_expires(g->media_ttl_ms, now)));
  if (e == PL_OK)
    r->u.media_put.out.usage += m->size + m->thumb_size;
  return e;
}

pl_err pl_pg_media_get(pl__pg *g, pl_store_req *r) {
  pl_store_media_get_req *x = &r->u.media_get;
  pl_pg_user *u = NULL;
  int found = 0, ok = 0;
  pl_err e = PL_OK;
  if (!x->in.any_user) {
    e = pl_pg_acct_token(g, r, x->in.token_hash, &x->out.user_id, &x->out.device_id, &x->out.user,
                         &x->out.device);
    if (e != PL_OK || r->status != PL_OK)
      return e;
    e = pl_pg_user_get(g, x->out.user_id, &u);
  }
  pl_err away = PL_OK;
  if (e == PL_OK)
    e = pl__media_find(g, u, x->in.media_id, &x->out.media, &found, &ok, &away);
  if (x->in.any_user)
    ok = 1; /* the server's own read (a signed link, a push's preview) */
  pl_pg_user_free(u);
  if (e == PL_OK) /* the upload's shard away: this download fails (retryable) */
    r->status = away != PL_OK ? away : pl_visibility_download(found, ok);
  return e;
}

static int pl__keycmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Removes blob key if no upload names it any more. The blob's row is locked
 * first, and only then are the uploads counted (a new statement: it sees
 * what committed while it waited): an upload being recorded holds the row
 * FOR SHARE (pl_pg_media_put), so either it committed first and is counted,
 * or it finds the blob gone and stores the bytes again. Two sweeps that
 * each dropped an upload of the same blob take the lock in turn: the
 * second counts after the first's commit, so exactly one removes it. */
static pl_err pl__blob_drop(pl__pg *g, const char *key, int *dropped) {
  uint64_t there = 0, used = 0;
  *dropped = 0;
  pl_err e = pl_pg_u64(g, &there, "SELECT count(*) FROM (SELECT 1 FROM blobs WHERE key = $1 FOR UPDATE) b",
                       "s", key);
  if (e == PL_OK && there)
    e = pl_pg_u64(g, &used, "SELECT count(*) FROM media WHERE blob = $1 OR thumb = $1", "s", key);
  if (e != PL_OK || !there || used)
    return e; /* none (another node's sweep took it), or in use */
  e = pl_pg_q(g, NULL, "DELETE FROM blob_chunks WHERE key = $1", "s", key);
  if (e == PL_OK)
    e = pl_pg_q(g, NULL, "DELETE FROM blobs WHERE key = $1", "s", key);
  *dropped = e == PL_OK;
  return e;
}

/* The blobs (blob, thumb) of res's deleted uploads that no upload names
 * any more go, locked in key order, as uploads lock theirs, so two
 * transactions never wait on each other in a circle; *blobs: how many.
 * Clears res. */
static pl_err pl__blobs_drop(pl__pg *g, PGresult *res, int *blobs) {
  pl_err e = PL_OK;
  int n = PQntuples(res), nk = 0;
  char **keys = pl_malloc((size_t)(2 * n + 1) * sizeof *keys);
  *blobs = 0;
  for (int i = 0; i < 2 * n; i++)
    if (*PQgetvalue(res, i / 2, i % 2))
      keys[nk++] = PQgetvalue(res, i / 2, i % 2);
  qsort(keys, (size_t)nk, sizeof *keys, pl__keycmp);
  for (int i = 0; i < nk && e == PL_OK; i++) {
    int dropped = 0;
    if (i == 0 || strcmp(keys[i], keys[i - 1]))
      e = pl__blob_drop(g, keys[i], &dropped);
    *blobs += dropped;
  }
  pl_free(keys);
  PQclear(res);
  return e;
}

/* Inside the sweep: uploads past their TTL that no stored message carries
 * go with their grants, and the blobs no upload names any more with them,
 * in this transaction (pl__blobs_drop). */
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
  int n = PQntuples(res), blobs = 0;
  e = pl__blobs_drop(g, res, &blobs);
  if (e == PL_OK && n)
    pl_info("store: %d expired upload(s) deleted, %d blob(s) with them", n, blobs);
  return e;
}

pl_err pl_pg_media_drop_owner(pl__pg *g, uint64_t uid) {
  PGresult *res;
  pl_err e = pl_pg_q(g, &res,
                     "WITH x AS (DELETE FROM media WHERE owner = $1 RETURNING id, blob, thumb),"
                     " gr AS (DELETE FROM media_grants WHERE media IN (SELECT id FROM x))"
                     " SELECT blob, thumb FROM x",
                     "u", uid);
  int blobs = 0;
  return e == PL_OK ? pl__blobs_drop(g, res, &blobs) : e;
}
