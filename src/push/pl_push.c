#include "pl_push.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "parley.pb-c.h"

#include "../common/pl_buf.h"
#include "../common/pl_log.h"
#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"

#define PL__NPROV 3
#define PL__PREVIEW 256 /* message bytes kept for the notification text */

static const pl_pushp *const pl__provs[PL__NPROV] = {&pl_pushp_webhook, &pl_pushp_fcm, &pl_pushp_apns};

/* A device's token (in memory, under mu: the store thread's lookup). */
typedef struct pl__tok {
  uint64_t user_id;
  int prov;
  char *user, *token;
} pl__tok;

enum { EV_MSG, EV_GROUP, EV_TOKEN };

/* What other threads hand the push thread. */
typedef struct pl__ev {
  struct pl__ev *next;
  int kind;
  uint64_t device, user_id, gid, skip;
  int prov;                 /* EV_TOKEN */
  char *user, *token;       /* EV_TOKEN (token NULL: removed) */
  char *conv, *from, *text; /* EV_MSG, EV_GROUP (NULL in privacy mode) */
  size_t text_len;
} pl__ev;

/* One request in flight (push thread). */
typedef struct pl__job {
  pl_push *p;
  CURL *h;
  struct curl_slist *hdrs;
  pl_pushp_req req;
  pl_bytes ans;
  uint64_t device, count;
  uint32_t attempts;
  int prov;
  char *token; /* the one sent to: an invalid answer forgets only this one */
} pl__job;

#define PL__SQL(X)                                                                                     \
  X(TOK_PUT, "INSERT OR REPLACE INTO tokens(device_id, user_id, user, provider, token, updated)"       \
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                                                        \
  X(TOK_DEL, "DELETE FROM tokens WHERE device_id = ?1")                                                \
  X(TOK_DEL_IF, "DELETE FROM tokens WHERE device_id = ?1 AND token = ?2")                              \
  X(PEND_ADD,                                                                                          \
    "INSERT INTO pending(device_id, user_id, count, first_ms, next_ms, attempts, sender, conv,"        \
    " preview) VALUES(?1, ?2, 1, ?3, ?4, 0, ?5, ?6, ?7) ON CONFLICT(device_id) DO UPDATE SET"          \
    " count = count + 1, sender = excluded.sender, conv = excluded.conv, preview = excluded.preview")  \
  X(PEND_DUE, "SELECT device_id, user_id, count, attempts, sender, conv, preview FROM pending"         \
              " WHERE next_ms <= ?1 ORDER BY next_ms LIMIT ?2")                                        \
  X(PEND_DEL, "DELETE FROM pending WHERE device_id = ?1")                                              \
  X(PEND_DONE, "DELETE FROM pending WHERE device_id = ?1 AND count <= ?2")                             \
  /* messages that came while the request was out: a new window for them */                            \
  X(PEND_REST, "UPDATE pending SET count = count - ?2, first_ms = ?3, next_ms = ?3 + ?4, attempts = 0" \
               " WHERE device_id = ?1")                                                                \
  X(PEND_NEXT, "UPDATE pending SET next_ms = ?2, attempts = ?3 WHERE device_id = ?1")                  \
  X(PEND_MIN, "SELECT min(next_ms) FROM pending")                                                      \
  X(PEND_COUNT, "SELECT count(*) FROM pending")

enum {
#define PL__SQL_ENUM(name, sql) ST_##name,
  PL__SQL(PL__SQL_ENUM)
#undef PL__SQL_ENUM
      ST__COUNT
};

static const char *const pl__sql[] = {
#define PL__SQL_TEXT(name, sql) sql,
    PL__SQL(PL__SQL_TEXT)
#undef PL__SQL_TEXT
};

static const char pl__schema[] =
    "CREATE TABLE IF NOT EXISTS tokens(device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    " user TEXT NOT NULL, provider TEXT NOT NULL, token TEXT NOT NULL, updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS pending(device_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    " count INTEGER NOT NULL, first_ms INTEGER NOT NULL, next_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, sender TEXT, conv TEXT, preview BLOB);"
    "CREATE INDEX IF NOT EXISTS pending_next ON pending(next_ms);";

struct pl_push {
  pl_push_config cfg;
  void *pst[PL__NPROV]; /* provider state; NULL: that provider is off */
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT];
  CURLM *multi;
  pthread_t thread;
  int started;
  pthread_mutex_t mu; /* guards tokens, head/tail, stop */
  pl_map tokens;      /* device -> pl__tok */
  pl__ev *head, *tail;
  int stop;
  pl_map jobs; /* device -> pl__job (push thread) */
  size_t njobs;
  uint64_t rng; /* backoff jitter (push thread) */
  atomic_uint_fast64_t sent, retried, failed, invalid, pending, ntokens;
};

/* ---- push.db ------------------------------------------------------------ */

static void pl__bind_u64(sqlite3_stmt *st, int i, uint64_t v) { sqlite3_bind_int64(st, i, (sqlite3_int64)v); }

static void pl__bind_str(sqlite3_stmt *st, int i, const char *s) {
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

/* Runs a statement that returns no rows (bound already); resets it. */
static int pl__run(pl_push *p, int which) {
  sqlite3_stmt *st = p->st[which];
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) {
    pl_warn("push.db: %s", sqlite3_errmsg(p->db));
    return -1;
  }
  return sqlite3_changes(p->db);
}

static uint64_t pl__one(pl_push *p, int which) {
  sqlite3_stmt *st = p->st[which];
  uint64_t v = sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  return v;
}

static void pl__exec(pl_push *p, const char *sql) {
  if (sqlite3_exec(p->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    pl_warn("push.db: %s: %s", sql, sqlite3_errmsg(p->db));
}

static void pl__pend_del(pl_push *p, uint64_t device) {
  pl__bind_u64(p->st[ST_PEND_DEL], 1, device);
  pl__run(p, ST_PEND_DEL);
}

static pl_err pl__db_open(pl_push *p, char *why, size_t whylen) {
  char path[600];
  snprintf(path, sizeof path, "%s/push.db", p->cfg.dir);
  if (sqlite3_open_v2(path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
          SQLITE_OK ||
      sqlite3_exec(p->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(p->db, p->cfg.durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
                   NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(p->db, pl__schema, NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(why, whylen, "%s: %s", path, p->db ? sqlite3_errmsg(p->db) : "cannot open");
    return PL_ERR_STORE;
  }
  for (int i = 0; i < ST__COUNT; i++)
    if (sqlite3_prepare_v3(p->db, pl__sql[i], -1, SQLITE_PREPARE_PERSISTENT, &p->st[i], NULL) != SQLITE_OK) {
      snprintf(why, whylen, "push.db: %s", sqlite3_errmsg(p->db));
      return PL_ERR_STORE;
    }
  return PL_OK;
}

static int pl__prov_index(const char *name) {
  for (int i = 0; name && i < PL__NPROV; i++)
    if (!strcmp(pl__provs[i]->name, name))
      return i;
  return -1;
}

static void pl__tok_free(pl__tok *t) {
  if (!t)
    return;
  pl_free(t->user);
  pl_free(t->token);
  pl_free(t);
}

/* The tokens into memory (before the thread starts). Tokens of a provider
 * that is off now stay in push.db, unused, until it is on again. */
static pl_err pl__load_tokens(pl_push *p) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(p->db, "SELECT device_id, user_id, user, provider, token FROM tokens", -1, &st,
                         NULL) != SQLITE_OK)
    return PL_ERR_STORE;
  while (sqlite3_step(st) == SQLITE_ROW) {
    int prov = pl__prov_index((const char *)sqlite3_column_text(st, 3));
    if (prov < 0 || !p->pst[prov])
      continue;
    pl__tok *t = pl_calloc(1, sizeof *t);
    t->user_id = (uint64_t)sqlite3_column_int64(st, 1);
    t->prov = prov;
    t->user = pl_strdup((const char *)sqlite3_column_text(st, 2));
    t->token = pl_strdup((const char *)sqlite3_column_text(st, 4));
    pl_map_put(&p->tokens, (uint64_t)sqlite3_column_int64(st, 0), t);
  }
  sqlite3_finalize(st);
  atomic_store(&p->ntokens, p->tokens.len);
  return PL_OK;
}

/* ---- events from other threads ------------------------------------------ */

static void pl__ev_free(pl__ev *e) {
  pl_free(e->user);
  pl_free(e->token);
  pl_free(e->conv);
  pl_free(e->from);
  pl_free(e->text);
  pl_free(e);
}

/* mu held. */
static void pl__enqueue(pl_push *p, pl__ev *e) {
  e->next = NULL;
  if (p->tail)
    p->tail->next = e;
  else
    p->head = e;
  p->tail = e;
}

static void pl__wake(pl_push *p) {
  if (p->multi)
    curl_multi_wakeup(p->multi);
}

int pl_push_provider_on(const pl_push *p, const char *provider) {
  int i = pl__prov_index(provider);
  return p && i >= 0 && p->pst[i] != NULL;
}

/* Printable ASCII without the characters a URL path or a header could
 * misread (APNs puts the token in the path). */
static int pl__token_ok(const char *t) {
  size_t n = strlen(t);
  if (n > PL_PUSH_MAX_TOKEN)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (t[i] <= ' ' || t[i] > '~' || strchr("/?#%\"\\", t[i]))
      return 0;
  return 1;
}

pl_err pl_push_register(pl_push *p, uint64_t device, uint64_t user_id, const char *user, const char *provider,
                        const char *token) {
  int set = token && *token, prov = pl__prov_index(provider);
  if (!p || (set && (prov < 0 || !p->pst[prov] || !pl__token_ok(token) || !user)))
    return PL_ERR_INVALID_ARGUMENT;
  pl__ev *e = pl_calloc(1, sizeof *e);
  e->kind = EV_TOKEN;
  e->device = device;
  e->user_id = user_id;
  e->prov = prov;
  pl__tok *t = NULL;
  if (set) {
    e->user = pl_strdup(user);
    e->token = pl_strdup(token);
    t = pl_calloc(1, sizeof *t);
    *t = (pl__tok){.user_id = user_id, .prov = prov, .user = pl_strdup(user), .token = pl_strdup(token)};
  }
  pthread_mutex_lock(&p->mu);
  pl__tok *old = t ? pl_map_put(&p->tokens, device, t) : pl_map_del(&p->tokens, device);
  atomic_store(&p->ntokens, p->tokens.len);
  pl__enqueue(p, e);
  pthread_mutex_unlock(&p->mu);
  pl__tok_free(old);
  pl__wake(p);
  return PL_OK;
}

/* Only what a person reads: messages, not receipts, read syncs or
 * membership events. */
static int pl__visible(const pl_msg *m) { return m->kind == PL_MSG_MESSAGE; }

static pl__ev *pl__msg_ev(const pl_push *p, int kind, const pl_msg *m) {
  pl__ev *e = pl_calloc(1, sizeof *e);
  e->kind = kind;
  if (p->cfg.privacy) /* nothing that names anyone or says anything is kept */
    return e;
  e->conv = pl_strdup(m->conv);
  e->from = pl_strdup(m->from);
  /* an attachment shows as what it is, then its caption (protocol.md 13) */
  const char *what = NULL;
  if (m->media_len) {
    Parley__Media *md = parley__media__unpack(NULL, m->media_len, m->media);
    what = md && !strncmp(md->type, "image/", 6) ? "\xf0\x9f\x93\xb7 Photo" : "\xf0\x9f\x93\x8e File";
    if (md)
      parley__media__free_unpacked(md, NULL);
  }
  size_t klen = what ? strlen(what) + (m->body_len ? 2 : 0) : 0;
  size_t blen = m->body_len < PL__PREVIEW ? m->body_len : PL__PREVIEW;
  e->text_len = klen + blen;
  e->text = pl_malloc(e->text_len + 1);
  if (what)
    snprintf(e->text, klen + 1, "%s%s", what, m->body_len ? ": " : "");
  memcpy(e->text + klen, m->body ? (const char *)m->body : "", blen);
  e->text[e->text_len] = '\0';
  return e;
}

void pl_push_queued(pl_push *p, const pl_msg *m, const uint64_t *devices, size_t n) {
  if (!p || !pl__visible(m) || !atomic_load_explicit(&p->ntokens, memory_order_relaxed))
    return;
  for (size_t i = 0; i < n; i++) {
    pthread_mutex_lock(&p->mu);
    pl__tok *t = pl_map_get(&p->tokens, devices[i]);
    /* the sender's own other devices get a copy, not a notification */
    uint64_t uid = t && strcmp(t->user, m->from) != 0 ? t->user_id : 0;
    pthread_mutex_unlock(&p->mu);
    if (!uid || p->cfg.online(p->cfg.online_ud, devices[i]))
      continue;
    pl__ev *e = pl__msg_ev(p, EV_MSG, m);
    e->device = devices[i];
    e->user_id = uid;
    pthread_mutex_lock(&p->mu);
    pl__enqueue(p, e);
    pthread_mutex_unlock(&p->mu);
    pl__wake(p);
  }
}

void pl_push_group(pl_push *p, const pl_msg *m, uint64_t gid, uint64_t skip) {
  if (!p || !pl__visible(m) || !atomic_load_explicit(&p->ntokens, memory_order_relaxed))
    return;
  pl__ev *e = pl__msg_ev(p, EV_GROUP, m); /* members are looked up on the push thread */
  e->gid = gid;
  e->skip = skip;
  if (p->cfg.privacy) /* the sender's name is still needed to skip their devices */
    e->user = pl_strdup(m->from);
  pthread_mutex_lock(&p->mu);
  pl__enqueue(p, e);
  pthread_mutex_unlock(&p->mu);
  pl__wake(p);
}

/* ---- the push thread: writing events ------------------------------------ */

static void pl__pend_add(pl_push *p, const pl__ev *e, uint64_t device, uint64_t user_id, uint64_t now) {
  sqlite3_stmt *st = p->st[ST_PEND_ADD];
  pl__bind_u64(st, 1, device);
  pl__bind_u64(st, 2, user_id);
  pl__bind_u64(st, 3, now);
  pl__bind_u64(st, 4, now + p->cfg.window_ms);
  pl__bind_str(st, 5, e->from);
  pl__bind_str(st, 6, e->conv);
  if (e->text)
    sqlite3_bind_blob(st, 7, e->text, (int)e->text_len, SQLITE_STATIC);
  pl__run(p, ST_PEND_ADD);
}

static void pl__token_write(pl_push *p, const pl__ev *e, uint64_t now) {
  sqlite3_stmt *st = p->st[e->token ? ST_TOK_PUT : ST_TOK_DEL];
  pl__bind_u64(st, 1, e->device);
  if (!e->token) {
    pl__run(p, ST_TOK_DEL);
    pl__pend_del(p, e->device);
    return;
  }
  pl__bind_u64(st, 2, e->user_id);
  pl__bind_str(st, 3, e->user);
  pl__bind_str(st, 4, pl__provs[e->prov]->name);
  pl__bind_str(st, 5, e->token);
  pl__bind_u64(st, 6, now);
  pl__run(p, ST_TOK_PUT);
}

/* A group message: its members' offline devices with a token, but the
 * sender's (the store call runs here, off the delivery path). */
static void pl__group_write(pl_push *p, const pl__ev *e, uint64_t now) {
  pl_store_req r = {.op = PL_STORE_GROUP_DEVICES};
  const char *sender = e->from ? e->from : e->user;
  r.in.group = e->gid;
  if (pl_store_call(p->cfg.store, &r) != PL_OK) {
    pl_warn("push: group %llu: cannot list its devices", (unsigned long long)e->gid);
    return;
  }
  for (size_t i = 0; i < r.out.ntargets; i++) {
    uint64_t dev = r.out.targets[i];
    pthread_mutex_lock(&p->mu);
    pl__tok *t = dev != e->skip ? pl_map_get(&p->tokens, dev) : NULL;
    uint64_t uid = t && sender && strcmp(t->user, sender) != 0 ? t->user_id : 0;
    pthread_mutex_unlock(&p->mu);
    if (uid && !p->cfg.online(p->cfg.online_ud, dev))
      pl__pend_add(p, e, dev, uid, now);
  }
  pl_store_req_clear(&r);
}

/* One transaction for the whole batch (group commit). */
static void pl__write_events(pl_push *p, pl__ev *list) {
  uint64_t now = pl_now_ms();
  pl__exec(p, "BEGIN IMMEDIATE");
  for (pl__ev *e = list; e; e = e->next) {
    if (e->kind == EV_TOKEN)
      pl__token_write(p, e, now);
    else if (e->kind == EV_GROUP)
      pl__group_write(p, e, now);
    else
      pl__pend_add(p, e, e->device, e->user_id, now);
  }
  pl__exec(p, "COMMIT");
  while (list) {
    pl__ev *next = list->next;
    pl__ev_free(list);
    list = next;
  }
}

/* ---- the push thread: sending ------------------------------------------- */

/* The badge: the user's unread messages over every conversation, as
 * UnreadGet reports them (protocol.md 13.3); count if the store fails. */
static uint64_t pl__badge(pl_push *p, uint64_t user_id, uint64_t count) {
  pl_store_req r = {.op = PL_STORE_UNREAD};
  uint64_t sum = 0;
  r.in.user_id = user_id;
  if (pl_store_call(p->cfg.store, &r) != PL_OK)
    return count;
  for (size_t i = 0; i < r.out.nconvs; i++)
    if (r.out.convs[i].last_seq > r.out.convs[i].read_seq)
      sum += r.out.convs[i].last_seq - r.out.convs[i].read_seq;
  pl_store_req_clear(&r);
  return sum > count ? sum : count;
}

/* The longest prefix of s that is whole UTF-8 characters, if s (cut at
 * PL__PREVIEW bytes, so its last character may be cut) is UTF-8 at all;
 * else 0 (the notification then has no text). */
static size_t pl__utf8_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t k = s[i] < 0x80             ? 1
               : (s[i] & 0xe0) == 0xc0 ? 2
               : (s[i] & 0xf0) == 0xe0 ? 3
               : (s[i] & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (!k || (k == 2 && s[i] < 0xc2))
      return 0;
    if (i + k > n)
      return n >= PL__PREVIEW ? i : 0;
    for (size_t j = 1; j < k; j++)
      if ((s[i + j] & 0xc0) != 0x80)
        return 0;
    i += k;
  }
  return i;
}

static uint64_t pl__backoff(pl_push *p, uint32_t attempts) {
  uint64_t d = p->cfg.backoff_ms;
  for (uint32_t i = 1; i < attempts && d < p->cfg.backoff_max_ms; i++)
    d *= 2;
  if (d > p->cfg.backoff_max_ms)
    d = p->cfg.backoff_max_ms;
  p->rng ^= p->rng << 13; /* xorshift: jitter spreads retries of a provider outage */
  p->rng ^= p->rng >> 7;
  p->rng ^= p->rng << 17;
  return d / 2 + p->rng % (d / 2 + 1);
}

static void pl__job_free(pl__job *j) {
  curl_slist_free_all(j->hdrs);
  curl_easy_cleanup(j->h);
  pl_pushp_req_clear(&j->req);
  pl_bytes_free(&j->ans);
  pl_free(j->token);
  pl_free(j);
}

static void pl__retry_later(pl_push *p, uint64_t device, uint32_t attempts, uint64_t delay_ms) {
  if (attempts >= p->cfg.max_attempts) {
    atomic_fetch_add(&p->failed, 1);
    pl_warn("push: device %llu: giving up after %u attempts", (unsigned long long)device, attempts);
    pl__pend_del(p, device);
    return;
  }
  atomic_fetch_add(&p->retried, 1);
  pl__bind_u64(p->st[ST_PEND_NEXT], 1, device);
  pl__bind_u64(p->st[ST_PEND_NEXT], 2, pl_now_ms() + delay_ms);
  pl__bind_u64(p->st[ST_PEND_NEXT], 3, attempts);
  pl__run(p, ST_PEND_NEXT);
}

/* A due row, as read from PEND_DUE. */
typedef struct pl__due {
  uint64_t device, user_id, count;
  uint32_t attempts;
  char *from, *conv, *text;
} pl__due;

/* The easy handle for a built request. */
static void pl__job_start(pl_push *p, pl__job *j) {
  j->h = curl_easy_init();
  for (int i = 0; i < j->req.nheaders; i++)
    j->hdrs = curl_slist_append(j->hdrs, j->req.headers[i]);
  j->hdrs = curl_slist_append(j->hdrs, "Expect:"); /* no 100-continue round trip */
  curl_easy_setopt(j->h, CURLOPT_URL, j->req.url);
  curl_easy_setopt(j->h, CURLOPT_POSTFIELDS, j->req.body);
  curl_easy_setopt(j->h, CURLOPT_HTTPHEADER, j->hdrs);
  curl_easy_setopt(j->h, CURLOPT_TIMEOUT_MS, (long)p->cfg.timeout_ms);
  curl_easy_setopt(j->h, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(p->cfg.timeout_ms < 5000 ? p->cfg.timeout_ms : 5000));
  curl_easy_setopt(j->h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(j->h, CURLOPT_WRITEFUNCTION, pl_pushp_collect);
  curl_easy_setopt(j->h, CURLOPT_WRITEDATA, &j->ans);
  curl_easy_setopt(j->h, CURLOPT_PRIVATE, j);
  curl_easy_setopt(j->h, CURLOPT_USERAGENT, "parleyd/0.1");
  if (j->req.http2)
    curl_easy_setopt(j->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_multi_add_handle(p->multi, j->h);
  pl_map_put(&p->jobs, j->device, j);
  p->njobs++;
  /* A lease: while the request is out the row is not due; if parleyd dies
   * meanwhile, the row is sent again after it. */
  pl__bind_u64(p->st[ST_PEND_NEXT], 1, j->device);
  pl__bind_u64(p->st[ST_PEND_NEXT], 2, pl_now_ms() + 2ull * p->cfg.timeout_ms + 1000);
  pl__bind_u64(p->st[ST_PEND_NEXT], 3, j->attempts);
  pl__run(p, ST_PEND_NEXT);
}

static void pl__send(pl_push *p, pl__due *d, uint64_t now) {
  if (p->cfg.online(p->cfg.online_ud, d->device)) { /* it has the messages now */
    pl__pend_del(p, d->device);
    return;
  }
  pl__job *j = pl_calloc(1, sizeof *j);
  pthread_mutex_lock(&p->mu);
  pl__tok *t = pl_map_get(&p->tokens, d->device);
  char *user = t ? pl_strdup(t->user) : NULL;
  j->token = t ? pl_strdup(t->token) : NULL;
  j->prov = t ? t->prov : 0;
  pthread_mutex_unlock(&p->mu);
  if (!j->token) { /* unregistered meanwhile */
    pl__pend_del(p, d->device);
    pl__job_free(j);
    pl_free(user);
    return;
  }
  j->p = p;
  j->device = d->device;
  j->count = d->count;
  j->attempts = d->attempts;
  size_t tlen = d->text ? pl__utf8_prefix((const uint8_t *)d->text, strlen(d->text)) : 0;
  if (d->text)
    d->text[tlen] = '\0';
  pl_push_note n = {.token = j->token,
                    .user = user,
                    .device = d->device,
                    .count = d->count,
                    .badge = pl__badge(p, d->user_id, d->count),
                    .conv = d->conv,
                    .from = d->from,
                    .text = tlen ? d->text : NULL};
  pl_err e = pl__provs[j->prov]->build(p->pst[j->prov], &n, now, &j->req);
  pl_free(user);
  if (e != PL_OK) {
    pl__retry_later(p, d->device, d->attempts + 1, pl__backoff(p, d->attempts + 1));
    pl__job_free(j);
    return;
  }
  pl__job_start(p, j);
}

static char *pl__col_dup(sqlite3_stmt *st, int i) {
  const char *s = (const char *)sqlite3_column_blob(st, i);
  return s ? pl_strndup(s, (size_t)sqlite3_column_bytes(st, i)) : NULL;
}

/* Starts the notifications that are due, as many as may be in flight. */
static void pl__start_due(pl_push *p) {
  uint64_t now = pl_now_ms();
  size_t room = p->cfg.max_inflight > p->njobs ? p->cfg.max_inflight - p->njobs : 0, n = 0;
  if (!room)
    return;
  pl__due *due = pl_calloc(room, sizeof *due);
  sqlite3_stmt *st = p->st[ST_PEND_DUE];
  pl__bind_u64(st, 1, now);
  pl__bind_u64(st, 2, room);
  while (n < room && sqlite3_step(st) == SQLITE_ROW) {
    due[n] = (pl__due){.device = (uint64_t)sqlite3_column_int64(st, 0),
                       .user_id = (uint64_t)sqlite3_column_int64(st, 1),
                       .count = (uint64_t)sqlite3_column_int64(st, 2),
                       .attempts = (uint32_t)sqlite3_column_int(st, 3),
                       .from = pl__col_dup(st, 4),
                       .conv = pl__col_dup(st, 5),
                       .text = pl__col_dup(st, 6)};
    if (!pl_map_get(&p->jobs, due[n].device)) {
      n++;
      continue;
    }
    pl_free(due[n].from);
    pl_free(due[n].conv);
    pl_free(due[n].text);
  }
  sqlite3_reset(st);
  if (n)
    pl__exec(p, "BEGIN IMMEDIATE");
  for (size_t i = 0; i < n; i++) {
    pl__send(p, &due[i], now);
    pl_free(due[i].from);
    pl_free(due[i].conv);
    pl_free(due[i].text);
  }
  if (n)
    pl__exec(p, "COMMIT");
  pl_free(due);
}

static void pl__forget_token(pl_push *p, const pl__job *j) {
  atomic_fetch_add(&p->invalid, 1);
  pl_info("push: device %llu: %s disowns its token; forgotten", (unsigned long long)j->device,
          pl__provs[j->prov]->name);
  pthread_mutex_lock(&p->mu);
  pl__tok *t = pl_map_get(&p->tokens, j->device);
  if (t && !strcmp(t->token, j->token)) /* not if it registered a new one meanwhile */
    pl__tok_free(pl_map_del(&p->tokens, j->device));
  atomic_store(&p->ntokens, p->tokens.len);
  pthread_mutex_unlock(&p->mu);
  pl__bind_u64(p->st[ST_TOK_DEL_IF], 1, j->device);
  pl__bind_str(p->st[ST_TOK_DEL_IF], 2, j->token);
  pl__run(p, ST_TOK_DEL_IF);
  pl__pend_del(p, j->device);
}

/* The notification went (or was refused for good): its messages are done;
 * ones that came while it was out get a window of their own. */
static void pl__done(pl_push *p, const pl__job *j) {
  pl__bind_u64(p->st[ST_PEND_DONE], 1, j->device);
  pl__bind_u64(p->st[ST_PEND_DONE], 2, j->count);
  if (pl__run(p, ST_PEND_DONE) != 0)
    return;
  sqlite3_stmt *st = p->st[ST_PEND_REST];
  pl__bind_u64(st, 1, j->device);
  pl__bind_u64(st, 2, j->count);
  pl__bind_u64(st, 3, pl_now_ms());
  pl__bind_u64(st, 4, p->cfg.window_ms);
  pl__run(p, ST_PEND_REST);
}

static void pl__finish(pl_push *p, pl__job *j, CURLcode rc) {
  long status = 0;
  curl_off_t retry_after = 0;
  if (rc == CURLE_OK)
    curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(j->h, CURLINFO_RETRY_AFTER, &retry_after);
  pl_push_verdict v =
      pl__provs[j->prov]->classify(p->pst[j->prov], status, (const char *)j->ans.p, j->ans.len);
  pl_debug("push: device %llu via %s: HTTP %ld (%s)", (unsigned long long)j->device, pl__provs[j->prov]->name,
           status, curl_easy_strerror(rc));
  switch (v) {
  case PL_PUSH_OK:
    atomic_fetch_add(&p->sent, 1);
    pl__done(p, j);
    break;
  case PL_PUSH_RETRY: {
    uint64_t d = pl__backoff(p, j->attempts + 1), ra = (uint64_t)retry_after * 1000u;
    pl__retry_later(p, j->device, j->attempts + 1, ra > d && ra <= p->cfg.backoff_max_ms ? ra : d);
    break;
  }
  case PL_PUSH_INVALID_TOKEN: pl__forget_token(p, j); break;
  case PL_PUSH_FAIL:
    atomic_fetch_add(&p->failed, 1);
    pl_warn("push: device %llu: %s refused the notification (HTTP %ld); dropped",
            (unsigned long long)j->device, pl__provs[j->prov]->name, status);
    pl__done(p, j);
    break;
  }
}

/* Collects the finished requests. */
static void pl__reap(pl_push *p) {
  CURLMsg *m;
  int left, began = 0;
  while ((m = curl_multi_info_read(p->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    pl__job *j;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
    CURLcode rc = m->data.result;
    curl_multi_remove_handle(p->multi, j->h);
    pl_map_del(&p->jobs, j->device);
    p->njobs--;
    if (!began++)
      pl__exec(p, "BEGIN IMMEDIATE");
    pl__finish(p, j, rc);
    pl__job_free(j);
  }
  if (began)
    pl__exec(p, "COMMIT");
}

/* How long the thread may sleep: until the next row is due, at most 1 s. */
static int pl__wait_ms(pl_push *p) {
  uint64_t next = pl__one(p, ST_PEND_MIN), now = pl_now_ms();
  if (!next || p->njobs >= p->cfg.max_inflight)
    return 1000;
  return next <= now ? 0 : next - now > 1000 ? 1000 : (int)(next - now);
}

/* Stopping: requests in flight are abandoned, their rows due at once
 * after the restart (the provider may have shown them: at least once). */
static void pl__abandon(pl_push *p) {
  uint64_t k;
  void *v;
  pl__exec(p, "BEGIN IMMEDIATE");
  for (size_t it = 0; pl_map_next(&p->jobs, &it, &k, &v);) {
    pl__job *j = v;
    curl_multi_remove_handle(p->multi, j->h);
    pl__bind_u64(p->st[ST_PEND_NEXT], 1, j->device);
    pl__bind_u64(p->st[ST_PEND_NEXT], 2, 0);
    pl__bind_u64(p->st[ST_PEND_NEXT], 3, j->attempts);
    pl__run(p, ST_PEND_NEXT);
    pl__job_free(j);
  }
  pl__exec(p, "COMMIT");
  pl_map_free(&p->jobs);
  p->njobs = 0;
}

static void *pl__main(void *arg) {
  pl_push *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    pl__ev *list = p->head;
    int stop = p->stop;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    if (list)
      pl__write_events(p, list);
    if (stop)
      break;
    pl__start_due(p);
    int running;
    curl_multi_perform(p->multi, &running);
    pl__reap(p);
    atomic_store(&p->pending, pl__one(p, ST_PEND_COUNT));
    curl_multi_poll(p->multi, NULL, 0, pl__wait_ms(p), NULL);
  }
  pl__abandon(p);
  return NULL;
}

/* ---- lifetime ------------------------------------------------------------ */

pl_err pl_push_global_init(void) {
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? PL_OK : PL_ERR_IO;
}
void pl_push_global_cleanup(void) { curl_global_cleanup(); }

/* Starts the providers that are configured; PL_ERR_NOT_FOUND if none is. */
static pl_err pl__providers(pl_push *p, char *why, size_t whylen) {
  pl_err any = PL_ERR_NOT_FOUND;
  pl_pushp_config pc = p->cfg.providers;
  pc.timeout_ms = p->cfg.timeout_ms;
  for (int i = 0; i < PL__NPROV; i++) {
    pl_err e = pl__provs[i]->init(&p->pst[i], &pc, why, whylen);
    if (e == PL_ERR_NOT_FOUND)
      continue;
    if (e != PL_OK)
      return e;
    any = PL_OK;
  }
  return any;
}

pl_err pl_push_open(pl_push **out, const pl_push_config *cfg, char *why, size_t whylen) {
  pl_push *p = pl_calloc(1, sizeof *p);
  p->cfg = *cfg;
  p->rng = pl_mono_us() | 1;
  pthread_mutex_init(&p->mu, NULL);
  pl_map_init(&p->tokens);
  pl_map_init(&p->jobs);
  *out = NULL;
  pl_err e = pl__providers(p, why, whylen);
  if (e == PL_OK)
    e = pl__db_open(p, why, whylen);
  if (e == PL_OK)
    e = pl__load_tokens(p);
  if (e == PL_OK && !(p->multi = curl_multi_init()))
    e = PL_ERR_IO;
  if (e == PL_OK && pthread_create(&p->thread, NULL, pl__main, p) != 0)
    e = PL_ERR_IO;
  if (e != PL_OK) {
    pl_push_free(p);
    return e == PL_ERR_NOT_FOUND ? PL_OK : e;
  }
  p->started = 1;
  *out = p;
  return PL_OK;
}

void pl_push_stop(pl_push *p) {
  if (!p || !p->started)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_mutex_unlock(&p->mu);
  curl_multi_wakeup(p->multi);
  pthread_join(p->thread, NULL);
  p->started = 0;
}

void pl_push_free(pl_push *p) {
  if (!p)
    return;
  pl_push_stop(p);
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&p->tokens, &it, &k, &v);)
    pl__tok_free(v);
  pl_map_free(&p->tokens);
  pl_map_free(&p->jobs);
  while (p->head) { /* queued after the stop (none in parleyd: the store stops first) */
    pl__ev *e = p->head;
    p->head = e->next;
    pl__ev_free(e);
  }
  for (int i = 0; i < ST__COUNT; i++)
    sqlite3_finalize(p->st[i]);
  sqlite3_close(p->db);
  if (p->multi)
    curl_multi_cleanup(p->multi);
  for (int i = 0; i < PL__NPROV; i++)
    if (p->pst[i])
      pl__provs[i]->free(p->pst[i]);
  pthread_mutex_destroy(&p->mu);
  pl_free(p);
}

void pl_push_get_stats(pl_push *p, pl_push_stats *st) {
  memset(st, 0, sizeof *st);
  if (!p)
    return;
  st->sent = atomic_load(&p->sent);
  st->retried = atomic_load(&p->retried);
  st->failed = atomic_load(&p->failed);
  st->invalid = atomic_load(&p->invalid);
  st->pending = atomic_load(&p->pending);
  st->tokens = atomic_load(&p->ntokens);
}
