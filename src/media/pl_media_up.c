/* pl_media_up.c: the upload sink (POST /media, PATCH /media/uploads/ID):
 * the token's answer and the quota come before any byte is kept, the body is
 * spooled on the media I/O thread, the worker step (pl_media_work.c) makes
 * blobs, and MEDIA_PUT records them. Also the resumable uploads' index
 * (protocol.md 13.2.1) and their routes. */
#include "pl_media_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pl_log.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "rules/pl_bucket.h"

/* Upload bytes gather here and go to disk in one write. */
#define PL__WBUF (256u << 10)

/* A resumable upload (protocol.md 13.2.1): its bytes so far are the spool
 * file tmp/rs-<id>, its owner and length the side file tmp/rs-<id>.meta,
 * so it survives a restart; this is the in-memory index of them. */
typedef struct pl__rs {
  char id[33];
  uint64_t user, length, created;
  char name[128];
  int busy; /* a PATCH is writing to it */
} pl__rs;

/* ---- uploads ----------------------------------------------------------------- */

static json_t *pl__row_json(const pl_media_row *r) {
  return json_pack("{s:s,s:s,s:I,s:i,s:i,s:i,s:i,s:I,s:s}", "id", r->id, "type", r->type, "size",
                   (json_int_t)r->size, "width", (int)r->width, "height", (int)r->height, "thumb_width",
                   (int)r->thumb_width, "thumb_height", (int)r->thumb_height, "thumb_size",
                   (json_int_t)r->thumb_size, "name", r->name);
}

typedef struct pl__up {
  pl_http_sink sink;
  pl_media *m;
  pl_http_ex *x; /* held from open to the reply (or released at abort) */
  pl_loop *loop;
  int fd;
  char tmp[4096];
  char name[128];
  pl_bytes buf; /* read, not yet written */
  uint64_t off; /* written */
  uint64_t total;
  pl_mjob wjob, pjob; /* a spool write (m->io), the processing (m->work) */
  int werr;           /* the write's errno */
  pl_media_mreq sreq;
  int busy;   /* a write, a store request or the worker is under way */
  int auth;   /* 0: waiting (nothing is read meanwhile), 1: ok, -1: refused */
  int failed; /* an HTTP status to answer with, once the body has ended */
  int ended, aborted, replied, tries;
  uint64_t user_id, usage;
  pl_media_result res;
  pl__rs *rs;    /* a resumable upload's PATCH, once its owner is known (else a one-shot POST) */
  uint64_t base; /* its offset when this request began */
  int finished;  /* the resumable upload is done with (stored or refused for good) */
  int patch;     /* PATCH /media/uploads/<rs_id> at Upload-Offset: want */
  char rs_id[33];
  uint64_t want;
} pl__up;

static void pl__rs_release(pl_media *m, pl__rs *rs, int finished);

static void pl__up_free(pl__up *u) {
  /* what arrived before a cut stays (u->rs is set only for its owner) */
  if (u->rs && !u->finished && u->buf.len && u->fd >= 0 && !u->failed)
    if (pwrite(u->fd, u->buf.p, u->buf.len, (off_t)u->off) < 0)
      pl_warn("media: keeping a cut upload's last piece: %s", strerror(errno));
  if (u->fd >= 0)
    close(u->fd);
  if (u->rs)
    pl__rs_release(u->m, u->rs, u->finished);
  else if (*u->tmp)
    unlink(u->tmp); /* gone already if it became a blob */
  pl_bytes_free(&u->buf);
  pl_store_req_clear(&u->sreq.req);
  pl_free(u);
}

static void pl__up_reply(pl__up *u, pl_http_res *res) {
  u->replied = 1;
  if (res->status >= 400)
    atomic_fetch_add_explicit(&u->m->refused, 1, memory_order_relaxed);
  pl_http_ex_reply(u->x, res);
  pl_bytes_free(&res->body);
}

static void pl__up_fail(pl__up *u, int status, const char *why) {
  pl_http_res res = {0};
  pl_media_error_res(&res, status, why);
  pl__up_reply(u, &res);
}

static void pl__up_step(pl__up *u);

/* After each piece of async work: the upload goes on, or is dropped. */
static void pl__up_settle(pl__up *u) {
  if (u->busy)
    return;
  if (u->aborted || u->replied) {
    if (u->aborted && !u->replied)
      pl_http_ex_release(u->x);
    pl__up_free(u);
    return;
  }
  pl__up_step(u);
}

/* Reading goes on. The sink's callbacks may run inside the resume (the
 * rest of the body, its end): the busy mark keeps them from freeing u under
 * the caller, which settles u after. */
static void pl__up_resume(pl__up *u) {
  u->busy++;
  if (!u->ended && !u->aborted)
    pl_http_ex_resume(u->x);
  u->busy--;
}

/* On the io thread: buf goes to the spool file at off (the loop leaves
 * both alone while the write is out). */
static void pl__write_job(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, wjob));
  size_t done = 0;
  u->werr = 0;
  while (done < u->buf.len && !u->werr) {
    ssize_t n = pwrite(u->fd, u->buf.p + done, u->buf.len - done, (off_t)(u->off + done));
    if (n > 0)
      done += (size_t)n;
    else if (n == 0 || errno != EINTR)
      u->werr = n < 0 ? errno : EIO;
  }
}

static void pl__write_done(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, wjob));
  u->busy--;
  if (u->werr) {
    pl_error("media: writing an upload: %s", strerror(u->werr));
    u->failed = 503;
  } else {
    u->off += u->buf.len;
  }
  u->buf.len = 0;
  pl__up_resume(u); /* the next piece gets the refusal, if any */
  pl__up_settle(u);
}

static void pl__write(pl__up *u) {
  u->wjob.work = pl__write_job;
  u->wjob.done = pl__write_done;
  u->busy++;
  if (pl_mpool_submit(u->m->io, pl_loop_uv(u->loop), &u->wjob) != PL_OK) {
    u->busy--;
    u->failed = 503;
  }
}

static void pl__work(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, pjob));
  memset(&u->res, 0, sizeof u->res);
  u->res.row.owner = u->user_id; /* a sharded store's keys carry its bucket */
  pl_media_work_process(u->m, u->fd, u->tmp, u->off, &u->res);
}

static void pl__put_done(pl_media_mreq *r);

static void pl__work_done(pl_mjob *j) {
  pl__up *u = (pl__up *)((char *)j - offsetof(pl__up, pjob));
  u->busy--;
  if (u->aborted) {
    pl__up_settle(u);
    return;
  }
  pl_media_result *res = &u->res;
  if (res->e != PL_OK) {
    u->finished = res->e != PL_ERR_IO; /* bad bytes: start again */
    int st = res->e == PL_ERR_MEDIA_TYPE                                      ? 415
             : res->e == PL_ERR_BAD_MEDIA || res->e == PL_ERR_MEDIA_TOO_LARGE ? 422
                                                                              : 503;
    pl__up_fail(u, st, res->why ? res->why : "the file could not be stored");
    pl__up_settle(u);
    return;
  }
  /* the id: 128 random bits, so ids cannot be guessed */
  uint8_t rnd[16];
  randombytes_buf(rnd, sizeof rnd);
  pl_media_hex(rnd, sizeof rnd, res->row.id);
  if (u->m->cfg.sharded) /* its first 4 hex digits: the owner's bucket, which a link finds it by */
    pl_bucket_media_put(res->row.id, pl_bucket_of_id(u->user_id));
  snprintf(res->row.name, sizeof res->row.name, "%s", u->name);
  pl_store_req_clear(&u->sreq.req);
  memset(&u->sreq.req, 0, sizeof u->sreq.req);
  u->sreq.req.op = PL_STORE_MEDIA_PUT;
  u->sreq.req.user_id = u->user_id;
  u->sreq.req.u.media_put.in.media = &res->row;
  pthread_mutex_lock(&u->m->rs_mu); /* what the user's other unfinished uploads leave */
  u->sreq.req.u.media_put.in.quota = pl_quota_room(&u->m->quota, u->user_id, u->rs ? u->rs->length : 0);
  pthread_mutex_unlock(&u->m->rs_mu);
  u->busy++;
  pl_media_mreq_submit(u->m, &u->sreq, u->loop, pl__put_done);
}

static void pl__start_work(pl__up *u) {
  u->pjob.work = pl__work;
  u->pjob.done = pl__work_done;
  u->busy++;
  if (pl_mpool_submit(u->m->work, pl_loop_uv(u->loop), &u->pjob) != PL_OK) {
    u->busy--;
    pl__up_fail(u, 503, "busy");
  }
}

static void pl__put_done(pl_media_mreq *r) {
  pl__up *u = (pl__up *)((char *)r - offsetof(pl__up, sreq));
  pl_err st = r->req.status;
  u->busy--;
  if (u->aborted) {
    pl__up_settle(u);
    return;
  }
  if (st == PL_ERR_AGAIN && u->tries++ < 2) { /* the sweep took the bytes meanwhile: store them again */
    pl__start_work(u);
    return;
  }
  if (st == PL_OK) {
    u->finished = 1;
    atomic_fetch_add_explicit(&u->m->uploads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->m->upload_bytes, u->res.row.size, memory_order_relaxed);
    pl_http_res res = {0};
    pl_media_json_res(&res, 201, pl__row_json(&u->res.row));
    pl__up_reply(u, &res);
  } else {
    pl__up_fail(u, st == PL_ERR_QUOTA ? 413 : 503, st == PL_ERR_QUOTA ? "quota exceeded" : "try again later");
  }
  pl__up_settle(u);
}

/* A one-shot upload that would take the user past the quota, counting what
 * unfinished uploads reserve (a PATCH fills its own reservation). */
static int pl__up_over_quota(pl__up *u) {
  if (u->patch)
    return 0;
  pthread_mutex_lock(&u->m->rs_mu);
  pl_err e = pl_quota_check(&u->m->quota, u->user_id, u->usage, u->total);
  pthread_mutex_unlock(&u->m->rs_mu);
  return e != PL_OK;
}

static int pl__disk_full(pl_media *m);

/* What to do next, when nothing is under way. */
static void pl__up_step(pl__up *u) {
  if (u->auth == 0)
    return; /* the token's answer comes */
  if (!u->failed && u->auth < 0)
    u->failed = 401;
  if (!u->failed && pl__up_over_quota(u))
    u->failed = 413;
  if (!u->failed && u->buf.len && pl__disk_full(u->m))
    u->failed = 503; /* the room the store freed is for acks, not for this file */
  if (!u->ended)
    return; /* more body comes (or the connection closes on the refusal) */
  if (u->failed) {
    pl__up_fail(u, u->failed,
                u->failed == 401   ? "bad token"
                : u->failed == 413 ? "quota exceeded"
                : u->failed == 404 ? "no such upload"
                                   : "try again later");
    pl__up_settle(u);
  } else if (u->buf.len) {
    pl__write(u);
  } else if (u->rs && u->off < u->rs->length) { /* a piece of a resumable upload */
    pl_http_res res = {.status = 204};
    char extra[96];
    snprintf(extra, sizeof extra, "Upload-Offset: %llu\r\nTus-Resumable: 1.0.0\r\n",
             (unsigned long long)u->off);
    res.extra = extra;
    pl__up_reply(u, &res);
    pl__up_settle(u);
  } else {
    pl__start_work(u);
  }
}

static int pl__up_claim(pl__up *u);

/* The token's answer. Only now, and only for the owner, does the upload
 * touch a file: a refused request changes nothing on disk. */
static void pl__auth_done(pl_media_mreq *r) {
  pl__up *u = (pl__up *)((char *)r - offsetof(pl__up, sreq));
  u->busy--;
  u->user_id = r->req.u.media_auth.out.user_id;
  u->usage = r->req.u.media_auth.out.usage;
  if (r->req.status == PL_ERR_BAD_TOKEN)
    u->failed = 401;
  else if (r->req.status != PL_OK)
    u->failed = 503;
  else /* also when the client has gone: a PATCH keeps what arrived (pl__up_free) */
    u->failed = pl__up_claim(u);
  u->auth = u->failed ? -1 : 1;
  pl__up_resume(u);
  pl__up_settle(u);
}

/* A refusal while the body comes: the connection answers it and closes
 * (no reply of ours follows, so it is counted here). */
static int pl__up_refuse(pl__up *u, int status) {
  atomic_fetch_add_explicit(&u->m->refused, 1, memory_order_relaxed);
  return status;
}

static int pl__up_data(pl_http_sink *s, const uint8_t *p, size_t n) {
  pl__up *u = (pl__up *)s;
  if (u->auth < 0 || u->failed)
    return pl__up_refuse(u, u->failed ? u->failed : 401);
  u->total += n;
  /* the first piece waits in memory, and nothing more is read, until the token's answer */
  if (u->auth == 0) {
    pl_bytes_append(&u->buf, p, n);
    return 1;
  }
  if (pl__up_over_quota(u))
    return pl__up_refuse(u, 413);
  pl_bytes_append(&u->buf, p, n);
  if (u->buf.len < PL__WBUF)
    return 0;
  /* The disk filled while the body came: the store gave its reserve back
   * so that acks and deletes work, and this upload must not eat it. */
  if (pl__disk_full(u->m))
    return pl__up_refuse(u, 503);
  pl__write(u);
  return u->failed ? pl__up_refuse(u, u->failed) : 1; /* read on when the write is done */
}

static void pl__up_end(pl_http_sink *s, const pl_http_req *req, pl_http_res *res, pl_http_ex *x) {
  (void)req;
  (void)x;
  pl__up *u = (pl__up *)s;
  u->ended = 1;
  res->status = 0; /* answered when processed (u->x is held) */
  pl__up_settle(u);
}

static void pl__up_abort(pl_http_sink *s) {
  pl__up *u = (pl__up *)s;
  u->aborted = 1;
  pl__up_settle(u);
}

/* ---- resumable uploads (protocol.md 13.2.1) ---------------------------------------- */

#define PL__RS_MAX_AGE_MS (24ull * 3600 * 1000) /* an unfinished resumable upload is dropped after this */

static uint64_t pl__rs_key(const char *id) {
  char k[17];
  memcpy(k, id, 16);
  k[16] = '\0';
  return strtoull(k, NULL, 16) | 1; /* never 0 */
}

static void pl__rs_path(const pl_media *m, const char *id, const char *suffix, char *out, size_t cap) {
  snprintf(out, cap, "%s/rs-%s%s", m->blob->ops->spool(m->blob), id, suffix);
}

/* The upload's record (all are in memory from the start). Under rs_mu. */
static pl__rs *pl__rs_find(pl_media *m, const char *id) {
  pl__rs *rs = pl_map_get(&m->rs, pl__rs_key(id));
  return rs && !strcmp(rs->id, id) ? rs : NULL;
}

/* An unfinished upload from its side file, at start-up: it enters the
 * index and its reservation the quota's ledger. */
static void pl__rs_load(pl_media *m, const char *id) {
  char path[4200], name[128] = "";
  unsigned long long user, length, created;
  pl__rs_path(m, id, ".meta", path, sizeof path);
  FILE *f = fopen(path, "r");
  if (!f || pl__rs_find(m, id)) {
    if (f)
      fclose(f);
    return;
  }
  int n = fscanf(f, "%llu %llu %llu %127s", &user, &length, &created, name);
  fclose(f);
  if (n < 3)
    return;
  pl__rs *rs = pl_calloc(1, sizeof *rs);
  snprintf(rs->id, sizeof rs->id, "%s", id);
  rs->user = user;
  rs->length = length;
  rs->created = created;
  snprintf(rs->name, sizeof rs->name, "%s", strcmp(name, "-") ? name : "");
  pl_map_put(&m->rs, pl__rs_key(id), rs);
  pl_quota_add(&m->quota, rs->user, rs->length);
}

static void pl__rs_forget(pl_media *m, pl__rs *rs) {
  char path[4200];
  pl__rs_path(m, rs->id, "", path, sizeof path);
  unlink(path);
  pl__rs_path(m, rs->id, ".meta", path, sizeof path);
  unlink(path);
  pl_quota_release(&m->quota, rs->user, rs->length);
  pl_map_del(&m->rs, pl__rs_key(rs->id));
  pl_free(rs);
}

static void pl__rs_release(pl_media *m, pl__rs *rs, int finished) {
  pthread_mutex_lock(&m->rs_mu);
  rs->busy = 0;
  if (finished)
    pl__rs_forget(m, rs);
  pthread_mutex_unlock(&m->rs_mu);
}

/* Unfinished uploads older than a day go (looked for at most hourly, on
 * the next creation; their side files tell their age). With load, the side
 * files found enter the index first (at start-up). Under rs_mu. */
static void pl__rs_sweep(pl_media *m, int load) {
  uint64_t now = pl_now_ms();
  if (!load && now - m->rs_swept < 3600u * 1000u)
    return;
  m->rs_swept = now;
  DIR *d = opendir(m->blob->ops->spool(m->blob));
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (strncmp(e->d_name, "rs-", 3) || n != 3 + 32 + 5 || strcmp(e->d_name + 35, ".meta"))
      continue;
    char id[33];
    memcpy(id, e->d_name + 3, 32);
    id[32] = '\0';
    if (load)
      pl__rs_load(m, id);
    pl__rs *rs = pl__rs_find(m, id);
    if (rs && !rs->busy && now - rs->created > PL__RS_MAX_AGE_MS)
      pl__rs_forget(m, rs);
  }
  if (d)
    closedir(d);
}

/* POST /media/uploads and HEAD|GET /media/uploads/ID: a request that waits
 * for the token's answer. */
typedef struct pl__rq {
  pl_media_mreq sreq;
  pl_media *m;
  pl_http_ex *x;
  uint64_t length;
  char id[33], name[128];
  int create, del;
} pl__rq;

static void pl__rs_answer(pl_http_res *res, int status, const pl__rs *rs, uint64_t offset) {
  static _Thread_local char extra[320]; /* pl_http_ex_reply copies it */
  int n = status == 201 ? snprintf(extra, sizeof extra, "Location: /media/uploads/%s\r\n", rs->id) : 0;
  snprintf(
      extra + n, sizeof extra - (size_t)n,
      "Upload-Offset: %llu\r\nUpload-Length: %llu\r\nTus-Resumable: 1.0.0\r\nCache-Control: no-store\r\n",
      (unsigned long long)offset, (unsigned long long)rs->length);
  pl_media_json_res(res, status,
                    json_pack("{s:s,s:I,s:I}", "upload", rs->id, "offset", (json_int_t)offset, "length",
                              (json_int_t)rs->length));
  res->extra = extra;
}

static void pl__rs_create(pl__rq *q, pl_http_res *res) {
  pl_media *m = q->m;
  const pl_store_req *r = &q->sreq.req;
  if (q->length > m->cfg.max_upload) {
    pl_media_error_res(res, 413, "Content Too Large");
    return;
  }
  /* Its length is reserved against the quota until it is finished,
   * deleted or expired (security finding 8). The record goes into the
   * index first, busy (a PATCH meanwhile gets 409, the sweep leaves it
   * alone), under an id no other record has. */
  pthread_mutex_lock(&m->rs_mu);
  pl__rs_sweep(m, 0);
  pl_err e = pl_quota_reserve(&m->quota, r->u.media_auth.out.user_id, r->u.media_auth.out.usage, q->length);
  if (e != PL_OK) {
    pthread_mutex_unlock(&m->rs_mu);
    if (e == PL_ERR_QUOTA)
      pl_media_error_res(res, 413, "quota exceeded");
    else
      pl_media_error_res(res, 429, "too many unfinished uploads");
    return;
  }
  pl__rs *rs = pl_calloc(1, sizeof *rs);
  rs->user = r->u.media_auth.out.user_id;
  rs->length = q->length;
  rs->created = pl_now_ms();
  rs->busy = 1;
  snprintf(rs->name, sizeof rs->name, "%s", q->name);
  do {
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    pl_media_hex(rnd, sizeof rnd, rs->id);
  } while (pl_map_get(&m->rs, pl__rs_key(rs->id)));
  pl_map_put(&m->rs, pl__rs_key(rs->id), rs);
  pthread_mutex_unlock(&m->rs_mu);
  char path[4200];
  pl__rs_path(m, rs->id, ".meta", path, sizeof path);
  FILE *f = fopen(path, "w");
  int ok =
      f && fprintf(f, "%llu %llu %llu %s\n", (unsigned long long)rs->user, (unsigned long long)rs->length,
                   (unsigned long long)rs->created, *rs->name ? rs->name : "-") > 0;
  ok = f && fclose(f) == 0 && ok;
  pl__rs_path(m, rs->id, "", path, sizeof path);
  int fd = ok ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
  if (fd >= 0)
    close(fd);
  else
    pl_error("media: cannot make a resumable upload's files in %s", m->blob->ops->spool(m->blob));
  pl__rs copy = *rs;
  pl__rs_release(m, rs, fd < 0); /* not busy any more; on failure, forgotten with its files */
  if (fd < 0) {
    pl_media_error_res(res, 503, "try again later");
    return;
  }
  pl__rs_answer(res, 201, &copy, 0);
}

static void pl__rs_state(pl__rq *q, pl_http_res *res) {
  pl_media *m = q->m;
  char path[4200];
  struct stat st;
  pthread_mutex_lock(&m->rs_mu);
  pl__rs *rs = pl__rs_find(m, q->id);
  if (!rs || rs->user != q->sreq.req.u.media_auth.out.user_id) {
    pthread_mutex_unlock(&m->rs_mu);
    pl_media_error_res(res, 404, "no such upload");
    return;
  }
  if (q->del) { /* its bytes and its reservation go (tus termination) */
    int busy = rs->busy;
    if (!busy)
      pl__rs_forget(m, rs);
    pthread_mutex_unlock(&m->rs_mu);
    if (busy)
      pl_media_error_res(res, 409, "a PATCH of this upload is running");
    else
      *res = (pl_http_res){.status = 204, .extra = "Tus-Resumable: 1.0.0\r\n"};
    return;
  }
  pl__rs_path(m, rs->id, "", path, sizeof path);
  uint64_t off = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
  pl__rs copy = *rs;
  pthread_mutex_unlock(&m->rs_mu);
  pl__rs_answer(res, 200, &copy, off);
}

static void pl__rq_done(pl_media_mreq *r) {
  pl__rq *q = (pl__rq *)r;
  pl_http_res res = {0};
  if (r->req.status == PL_ERR_BAD_TOKEN)
    pl_media_error_res(&res, 401, "bad token");
  else if (r->req.status != PL_OK)
    pl_media_error_res(&res, 503, "try again later");
  else if (q->create)
    pl__rs_create(q, &res);
  else
    pl__rs_state(q, &res);
  pl_http_ex_reply(q->x, &res);
  pl_store_req_clear(&q->sreq.req);
  pl_free(q);
}

/* POST /media/uploads (Upload-Length), HEAD|GET and DELETE /media/uploads/ID. */
int pl_media_up_route(pl_media *m, const pl_http_req *req, const char *path, pl_http_res *res,
                      pl_http_ex *x) {
  const char *rest = path + strlen("/media/uploads");
  int create = !*rest && !strcmp(req->method, "POST");
  int del = *rest == '/' && pl_media_id_valid(rest + 1, strlen(rest + 1)) && !strcmp(req->method, "DELETE");
  int state = *rest == '/' && pl_media_id_valid(rest + 1, strlen(rest + 1)) &&
              (!strcmp(req->method, "HEAD") || !strcmp(req->method, "GET") || del);
  if (!create && !state) {
    pl_media_error_res(res, *rest && *rest != '/' ? 404 : 405,
                       *rest && *rest != '/' ? "Not Found" : "method not allowed");
    return 1;
  }
  pl__rq *q = pl_calloc(1, sizeof *q);
  char *end = NULL;
  const char *len = req->hdr[PL_H_UPLOAD_LENGTH];
  q->length = len ? strtoull(len, &end, 10) : 0;
  if (create && (!len || !*len || *end || *len == '-')) {
    pl_free(q);
    pl_media_error_res(res, 400, "Upload-Length is needed");
    return 1;
  }
  if (!pl_media_bearer(req, q->sreq.req.u.media_auth.in.token_hash, &q->sreq.req.route)) {
    pl_free(q);
    pl_media_error_res(res, 401, "a token is needed");
    return 1;
  }
  q->m = m;
  q->x = x;
  q->create = create;
  q->del = del;
  if (state)
    memcpy(q->id, rest + 1, 32);
  if (pl_media_query(req->url, "name", q->name, sizeof q->name))
    pl_media_clean_name(q->name);
  q->sreq.req.op = PL_STORE_MEDIA_AUTH;
  pl_http_ex_hold(x);
  res->status = 0;
  pl_media_mreq_submit(m, &q->sreq, pl_http_ex_loop(x), pl__rq_done);
  return 1;
}

/* PATCH /media/uploads/ID by user at Upload-Offset want: the upload, now
 * busy with this request, and its offset; or NULL and the status. */
static pl__rs *pl__rs_patch(pl_media *m, const char *id, uint64_t user, uint64_t want, uint64_t *off,
                            int *status) {
  char path[4200];
  struct stat st;
  pthread_mutex_lock(&m->rs_mu);
  pl__rs *rs = pl__rs_find(m, id);
  if (rs) {
    pl__rs_path(m, id, "", path, sizeof path);
    *off = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
  }
  if (!rs || rs->user != user)
    *status = 404;                   /* someone else's upload: as if there were none */
  else if (rs->busy || want != *off) /* another PATCH writes, or the client is behind */
    *status = 409;
  else
    rs->busy = 1;
  pthread_mutex_unlock(&m->rs_mu);
  return *status ? NULL : rs;
}

static const pl_http_sink_ops pl__up_ops = {.data = pl__up_data, .end = pl__up_end, .abort = pl__up_abort};

/* Once the token is good: the spool file of the upload, a new one or the
 * resumable upload's (if it is the user's, free, and at the offset the
 * client gave). 0, or the HTTP status to refuse with. */
static int pl__up_claim(pl__up *u) {
  pl_media *m = u->m;
  if (u->patch) {
    int status = 0;
    if (!(u->rs = pl__rs_patch(m, u->rs_id, u->user_id, u->want, &u->off, &status)))
      return status;
    u->base = u->off;
    pl__rs_path(m, u->rs->id, "", u->tmp, sizeof u->tmp);
    u->fd = open(u->tmp, O_RDWR | O_CLOEXEC);
    snprintf(u->name, sizeof u->name, "%s", u->rs->name);
  } else {
    snprintf(u->tmp, sizeof u->tmp, "%s/up-XXXXXX", m->blob->ops->spool(m->blob));
    if ((u->fd = mkstemp(u->tmp)) < 0)
      *u->tmp = '\0';
  }
  if (u->fd >= 0)
    return 0;
  pl_error("media: cannot open a spool file in %s: %s", m->blob->ops->spool(m->blob), strerror(errno));
  return 503;
}

/* The body a PATCH may carry: what its upload lacks past the offset given
 * (any upload's: the owner is not known yet, and the answer says nothing). */
static uint64_t pl__rs_left(pl_media *m, const char *id, uint64_t want) {
  pthread_mutex_lock(&m->rs_mu);
  const pl__rs *rs = pl__rs_find(m, id);
  uint64_t left = rs && want <= rs->length ? rs->length - want : m->cfg.max_upload;
  pthread_mutex_unlock(&m->rs_mu);
  return left;
}

/* While the disk is full (the store gave its reserve back), an upload's
 * bytes would eat the room left for acks: refused before any is read. */
static int pl__disk_full(pl_media *m) {
  pl_store_stats st;
  if (!m->store)
    return 0;
  pl_store_get_stats(m->store, &st);
  return st.disk_full;
}

pl_http_sink *pl_media_upload(pl_media *m, const pl_http_req *req, pl_http_ex *x, uint64_t *limit,
                              int *status) {
  size_t plen = strcspn(req->url, "?");
  static const char up[] = "/media/uploads/";
  int patch = !strcmp(req->method, "PATCH") && plen == sizeof up - 1 + 32 &&
              !strncmp(req->url, up, sizeof up - 1) && pl_media_id_valid(req->url + sizeof up - 1, 32);
  if (!patch && (strcmp(req->method, "POST") || plen != 6 || strncmp(req->url, "/media", 6)))
    return NULL;
  uint8_t th[PL_TOKEN_HASH_LEN];
  uint32_t route = 0;
  if (!pl_media_bearer(req, th, &route) || pl__disk_full(m)) {
    *status = pl__disk_full(m) ? 503 : 401;
    atomic_fetch_add_explicit(&m->refused, 1, memory_order_relaxed);
    return NULL;
  }
  const char *o = req->hdr[PL_H_UPLOAD_OFFSET];
  char *end = NULL;
  uint64_t want = o ? strtoull(o, &end, 10) : 0;
  if (patch && (!o || !*o || *end || *o == '-')) {
    *status = 400;
    return NULL;
  }
  /* Nothing is claimed or opened before the token's answer (auth_done);
   * the body waits meanwhile. */
  pl__up *u = pl_calloc(1, sizeof *u);
  u->sink.ops = &pl__up_ops;
  u->m = m;
  u->x = x;
  u->loop = pl_http_ex_loop(x);
  u->fd = -1;
  u->patch = patch;
  u->want = want;
  if (patch)
    memcpy(u->rs_id, req->url + sizeof up - 1, 32);
  else if (pl_media_query(req->url, "name", u->name, sizeof u->name))
    pl_media_clean_name(u->name);
  *limit = patch ? pl__rs_left(m, u->rs_id, want) : m->cfg.max_upload;
  pl_http_ex_hold(x);
  memcpy(u->sreq.req.u.media_auth.in.token_hash, th, sizeof th);
  u->sreq.req.op = PL_STORE_MEDIA_AUTH;
  u->sreq.req.route = route;
  u->busy++;
  pl_media_mreq_submit(m, &u->sreq, u->loop, pl__auth_done); /* may answer at once (shutdown) */
  return &u->sink;
}

void pl_media_up_load(pl_media *m) {
  pthread_mutex_lock(&m->rs_mu);
  pl__rs_sweep(m, 1);
  pthread_mutex_unlock(&m->rs_mu);
}
