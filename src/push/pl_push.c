#include "pl_push.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "parley.pb-c.h"

#include "../common/pl_buf.h"
#include "../common/pl_log.h"
#include "../common/pl_map.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "../rules/pl_acts.h"

#define PL__NPROV 3
#define PL__PREVIEW 256  /* message bytes kept for the notification text */
#define PL__POLL_MS 1000 /* longest sleep: rows another node left, the pending gauge */

static const pl_pushp *const pl__provs[PL__NPROV] = {&pl_pushp_webhook, &pl_pushp_fcm, &pl_pushp_apns};

/* A device's token as this node last knew it (under mu): the store
 * thread's filter, so that a message to a device without a token costs a
 * hash lookup and no store request. The store's push_tokens is the truth
 * the claim reads. */
typedef struct pl__tok {
  uint64_t user_id;
  int prov;
  char *user, *token;
} pl__tok;

/* A store request the push service submits without waiting (PUSH_TOKEN,
 * GROUP_DEVICES then PUSH_ENQUEUE), with the strings it borrows. */
typedef struct pl__sub {
  pl_store_req req;
  pl_push *p;
  uint64_t *devices;
  size_t ndevices;
  uint64_t skip;                     /* GROUP_DEVICES: the sending device */
  char *sender, *from, *conv, *text; /* ENQUEUE (from, conv, text NULL in privacy mode) */
  size_t text_len;
  char *user, *provider, *token; /* PUSH_TOKEN */
} pl__sub;

/* One request in flight (push thread). */
typedef struct pl__job {
  pl_push *p;
  CURL *h;
  struct curl_slist *hdrs;
  pl_pushp_req req;
  pl_bytes ans;
  uint64_t device, count, claim;
  uint32_t attempts;
  int prov;
  char *token; /* the one sent to: an invalid answer forgets only this one */
} pl__job;

struct pl_push {
  pl_push_config cfg;
  char owner[128];      /* this node's name in the claims it takes */
  void *pst[PL__NPROV]; /* provider state; NULL: that provider is off */
  CURLM *multi;
  pthread_t thread;
  int started;
  pthread_mutex_t mu; /* guards tokens, stop */
  pl_map tokens;      /* device -> pl__tok */
  int stop;
  pl_map jobs; /* device -> pl__job (push thread) */
  size_t njobs;
  pl_store_push_result *results; /* outcomes not yet written (push thread) */
  size_t nresults, results_cap;
  char **result_tokens; /* BAD_TOKEN results' tokens, owned */
  uint64_t next_due;    /* the last claim's answer (push thread) */
  uint64_t last_claim;  /* when it was asked (push thread) */
  atomic_int kick;      /* claim at the next turn: a row was added or changed */
  uint64_t rng;         /* backoff jitter (push thread) */
  atomic_uint_fast64_t sent, retried, failed, invalid, pending, ntokens;
};

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

static void pl__wake(pl_push *p) {
  if (p->multi)
    curl_multi_wakeup(p->multi);
}

/* The tokens into memory (before the thread starts). Tokens of a provider
 * that is off now stay in the store, unused, until it is on again. */
static pl_err pl__load_tokens(pl_push *p, char *why, size_t whylen) {
  pl_store_req r = {.op = PL_STORE_PUSH_TOKENS};
  pl_err e = pl_store_call(p->cfg.store, &r);
  if (e != PL_OK) {
    snprintf(why, whylen, "cannot read the push tokens from the store: %s", pl_err_msg(e));
    return e;
  }
  for (size_t i = 0; i < r.u.push_tokens.out.ntokens; i++) {
    const pl_store_push_token *s = &r.u.push_tokens.out.tokens[i];
    int prov = pl__prov_index(s->provider);
    if (prov < 0 || !p->pst[prov])
      continue;
    pl__tok *t = pl_calloc(1, sizeof *t);
    *t = (pl__tok){
        .user_id = s->user_id, .prov = prov, .user = pl_strdup(s->user), .token = pl_strdup(s->token)};
    pl__tok_free(pl_map_put(&p->tokens, s->device, t));
  }
  atomic_store(&p->ntokens, p->tokens.len);
  pl_store_req_clear(&r);
  return PL_OK;
}

/* ---- requests from other threads ------------------------------------------ */

static void pl__sub_free(pl__sub *u) {
  pl_store_req_clear(&u->req);
  pl_free(u->devices);
  pl_free(u->sender);
  pl_free(u->from);
  pl_free(u->conv);
  pl_free(u->text);
  pl_free(u->user);
  pl_free(u->provider);
  pl_free(u->token);
  pl_free(u);
}

static void pl__sub_done(pl_store_req *req) {
  pl__sub *u = req->data;
  if (req->status != PL_OK)
    pl_warn("push: a store request (op %d) failed: %s", (int)req->op, pl_err_name(req->status));
  else if (req->op == PL_STORE_PUSH_ENQUEUE && req->u.push_enqueue.out.enqueued) {
    atomic_store(&u->p->kick, 1); /* a new row: the thread learns when it falls due */
    pl__wake(u->p);
  }
  pl__sub_free(u);
}

/* Submitted with no origin: done runs on the store thread. */
static void pl__sub_submit(pl__sub *u, pl_store_op op, pl_store_done_cb done) {
  u->req.op = op;
  u->req.done = done;
  u->req.origin = NULL;
  u->req.data = u;
  pl_store_submit(u->p->cfg.store, &u->req);
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

/* The in-memory set and the store request for a token set or removed. */
static void pl__token_submit(pl_push *p, uint64_t device, uint64_t user_id, const char *user, int prov,
                             const char *token) {
  pl__sub *u = pl_calloc(1, sizeof *u);
  u->p = p;
  u->req.u.push_token.in.device = device;
  u->req.u.push_token.in.now = pl_now_ms();
  if (token) {
    u->user = pl_strdup(user);
    u->provider = pl_strdup(pl__provs[prov]->name);
    u->token = pl_strdup(token);
    u->req.u.push_token.in.user_id = user_id;
  }
  u->req.u.push_token.in.user = u->user;
  u->req.u.push_token.in.provider = u->provider;
  u->req.u.push_token.in.token = u->token;
  pl__sub_submit(u, PL_STORE_PUSH_TOKEN, pl__sub_done);
}

pl_err pl_push_register(pl_push *p, uint64_t device, uint64_t user_id, const char *user, const char *provider,
                        const char *token) {
  int set = token && *token, prov = pl__prov_index(provider);
  if (!p || (set && (prov < 0 || !p->pst[prov] || !pl__token_ok(token) || !user || !user_id)))
    return PL_ERR_INVALID_ARGUMENT;
  pl__tok *t = NULL;
  if (set) {
    t = pl_calloc(1, sizeof *t);
    *t = (pl__tok){.user_id = user_id, .prov = prov, .user = pl_strdup(user), .token = pl_strdup(token)};
  }
  /* Under mu: two registrations of one device reach the store in the order
   * the map saw them. */
  pthread_mutex_lock(&p->mu);
  pl__tok *old = t ? pl_map_put(&p->tokens, device, t) : pl_map_del(&p->tokens, device);
  atomic_store(&p->ntokens, p->tokens.len);
  pl__token_submit(p, device, user_id, user, prov, set ? token : NULL);
  pthread_mutex_unlock(&p->mu);
  pl__tok_free(old);
  return PL_OK;
}

void pl_push_forget(pl_push *p, uint64_t device) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  pl__tok *old = pl_map_del(&p->tokens, device);
  atomic_store(&p->ntokens, p->tokens.len);
  pthread_mutex_unlock(&p->mu);
  pl__tok_free(old);
}

/* Only what a person reads: messages, not receipts, read syncs or
 * membership events, nor actions on earlier messages (pl_acts_notifies). */
static int pl__visible(const pl_msg *m) {
  if (m->kind != PL_MSG_MESSAGE)
    return 0;
  if (!m->act_len)
    return 1;
  Parley__Act *a = parley__act__unpack(NULL, m->act_len, m->act);
  int kind = a ? (int)a->kind : PL_ACT_NONE;
  if (a)
    parley__act__free_unpacked(a, NULL);
  return pl_acts_notifies(kind);
}

/* What the notification may say of m: nothing that names anyone or says
 * anything in privacy mode. */
static pl__sub *pl__msg_sub(pl_push *p, const pl_msg *m) {
  pl__sub *u = pl_calloc(1, sizeof *u);
  u->p = p;
  u->sender = pl_strdup(m->from); /* their own devices get a copy, not a notification */
  if (p->cfg.privacy)
    return u;
  u->conv = pl_strdup(m->conv);
  u->from = pl_strdup(m->from);
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
  u->text_len = klen + blen;
  u->text = pl_malloc(u->text_len + 1);
  if (what)
    snprintf(u->text, klen + 1, "%s%s", what, m->body_len ? ": " : "");
  memcpy(u->text + klen, m->body ? (const char *)m->body : "", blen);
  u->text[u->text_len] = '\0';
  return u;
}

/* May device get a notification of a message from sender? It has a token
 * here, is not the sender's, and is offline. */
static int pl__wants(pl_push *p, uint64_t device, const char *sender) {
  pthread_mutex_lock(&p->mu);
  pl__tok *t = pl_map_get(&p->tokens, device);
  int mine = t && sender && !strcmp(t->user, sender);
  pthread_mutex_unlock(&p->mu);
  return t && !mine && !p->cfg.online(p->cfg.online_ud, device);
}

/* The devices of list that want a notification of a message from sender
 * (pl_free it); NULL if none. */
static uint64_t *pl__wanted(pl_push *p, const uint64_t *list, size_t n, uint64_t skip, const char *sender,
                            size_t *nout) {
  uint64_t *out = NULL;
  *nout = 0;
  for (size_t i = 0; i < n; i++) {
    if (list[i] == skip || !pl__wants(p, list[i], sender))
      continue;
    if (!out)
      out = pl_malloc((n - i) * sizeof *out);
    out[(*nout)++] = list[i];
  }
  return out;
}

/* u's message for these devices (u takes them): ENQUEUE. Store thread. */
static void pl__enqueue(pl__sub *u, uint64_t *devices, size_t n) {
  pl_push *p = u->p;
  u->devices = devices;
  u->ndevices = n;
  /* (u->req held GROUP_DEVICES for a group: cleared before its in is reused) */
  pl_store_req_clear(&u->req);
  pl_store_push_enqueue_req *x = &u->req.u.push_enqueue;
  x->in.devices = u->devices;
  x->in.ndevices = u->ndevices;
  x->in.sender = u->sender;
  x->in.from = u->from;
  x->in.conv = u->conv;
  x->in.text = u->text;
  x->in.text_len = u->text_len;
  x->in.now = pl_now_ms();
  x->in.window_ms = p->cfg.window_ms;
  pl__sub_submit(u, PL_STORE_PUSH_ENQUEUE, pl__sub_done);
}

void pl_push_queued(pl_push *p, const pl_msg *m, const uint64_t *devices, size_t n) {
  if (!p || !pl__visible(m) || !atomic_load_explicit(&p->ntokens, memory_order_relaxed))
    return;
  size_t k;
  uint64_t *want = pl__wanted(p, devices, n, 0, m->from, &k);
  if (want) /* the message is copied only for a device that wants it */
    pl__enqueue(pl__msg_sub(p, m), want, k);
}

/* The group's devices came back (store thread): those that want it. */
static void pl__group_done(pl_store_req *req) {
  pl__sub *u = req->data;
  if (req->status != PL_OK) {
    pl_warn("push: group %llu: cannot list its devices: %s",
            (unsigned long long)req->u.group_devices.in.group, pl_err_name(req->status));
    pl__sub_free(u);
    return;
  }
  size_t k;
  uint64_t *want = pl__wanted(u->p, req->u.group_devices.out.targets, req->u.group_devices.out.ntargets,
                              u->skip, u->sender, &k);
  if (want)
    pl__enqueue(u, want, k);
  else
    pl__sub_free(u);
}

/* The members are looked up in a request of their own, queued behind the
 * commit that made the message (the store thread must not wait). */
void pl_push_group(pl_push *p, const pl_msg *m, uint64_t gid, uint64_t skip) {
  if (!p || !pl__visible(m) || !atomic_load_explicit(&p->ntokens, memory_order_relaxed))
    return;
  pl__sub *u = pl__msg_sub(p, m);
  u->skip = skip;
  u->req.u.group_devices.in.group = gid;
  pl__sub_submit(u, PL_STORE_GROUP_DEVICES, pl__group_done);
}

/* ---- the push thread: outcomes ------------------------------------------- */

/* Kept until pl__flush writes them all in one request. */
static void pl__outcome(pl_push *p, const pl_store_push_result *x) {
  if (p->nresults == p->results_cap) {
    p->results_cap = p->results_cap ? p->results_cap * 2 : 64;
    p->results = pl_realloc(p->results, p->results_cap * sizeof *p->results);
    p->result_tokens = pl_realloc(p->result_tokens, p->results_cap * sizeof *p->result_tokens);
  }
  p->result_tokens[p->nresults] = x->token ? pl_strdup(x->token) : NULL;
  p->results[p->nresults] = *x;
  p->results[p->nresults].token = p->result_tokens[p->nresults];
  p->nresults++;
}

static void pl__flush(pl_push *p) {
  if (!p->nresults)
    return;
  pl_store_req r = {.op = PL_STORE_PUSH_DONE};
  r.u.push_done.in.results = p->results;
  r.u.push_done.in.nresults = p->nresults;
  r.u.push_done.in.now = pl_now_ms();
  r.u.push_done.in.window_ms = p->cfg.window_ms;
  pl_err e = pl_store_call(p->cfg.store, &r);
  if (e != PL_OK) /* the leases end and the rows are sent again: at least once */
    pl_warn("push: cannot record %zu outcomes: %s", p->nresults, pl_err_name(e));
  pl_store_req_clear(&r);
  for (size_t i = 0; i < p->nresults; i++)
    pl_free(p->result_tokens[i]);
  p->nresults = 0;
  atomic_store(&p->kick, 1); /* rows went or fell due at another time */
}

/* ---- the push thread: sending ------------------------------------------- */

/* The badge: the user's unread messages over every conversation, as
 * UnreadGet reports them (protocol.md 13.3); count if the store fails. */
static uint64_t pl__badge(pl_push *p, uint64_t user_id, uint64_t count) {
  pl_store_req r = {.op = PL_STORE_UNREAD};
  uint64_t sum = 0;
  r.user_id = user_id;
  if (pl_store_call(p->cfg.store, &r) != PL_OK)
    return count;
  for (size_t i = 0; i < r.u.unread.out.nconvs; i++)
    if (r.u.unread.out.convs[i].last_seq > r.u.unread.out.convs[i].read_seq)
      sum += r.u.unread.out.convs[i].last_seq - r.u.unread.out.convs[i].read_seq;
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

/* A lease is the time a request may take, twice, and a second: a request
 * ends (curl's timeout) well before its row may go to another claimer. */
static uint64_t pl__lease_ms(const pl_push *p) { return 2ull * p->cfg.timeout_ms + 1000; }

static void pl__result(pl_push *p, uint64_t device, uint64_t claim, uint64_t count, int outcome) {
  pl_store_push_result x = {.device = device, .claim = claim, .count = count, .outcome = outcome};
  pl__outcome(p, &x);
}

static void pl__retry_later(pl_push *p, uint64_t device, uint64_t claim, uint32_t attempts,
                            uint64_t delay_ms) {
  if (attempts >= p->cfg.max_attempts) {
    atomic_fetch_add(&p->failed, 1);
    pl_warn("push: device %llu: giving up after %u attempts", (unsigned long long)device, attempts);
    pl__result(p, device, claim, 0, PL_PUSH_DONE_DROP);
    return;
  }
  atomic_fetch_add(&p->retried, 1);
  pl_store_push_result x = {.device = device,
                            .claim = claim,
                            .outcome = PL_PUSH_DONE_LATER,
                            .attempts = attempts,
                            .due_ms = pl_now_ms() + delay_ms};
  pl__outcome(p, &x);
}

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
}

/* A claimed row: its request goes out, or its outcome is known at once. */
static void pl__send(pl_push *p, pl_store_push_row *w, uint64_t now) {
  int prov = pl__prov_index(w->provider);
  if (pl_map_get(&p->jobs, w->device)) { /* cannot be while leases outlast requests; be safe */
    pl_store_push_result x = {.device = w->device,
                              .claim = w->claim,
                              .outcome = PL_PUSH_DONE_LATER,
                              .attempts = w->attempts,
                              .due_ms = now + 1000};
    pl__outcome(p, &x);
    return;
  }
  /* online: it has the messages now; a provider that is off here: no way */
  if (p->cfg.online(p->cfg.online_ud, w->device) || prov < 0 || !p->pst[prov]) {
    pl__result(p, w->device, w->claim, w->count, PL_PUSH_DONE_DROP);
    return;
  }
  size_t tlen = w->text ? pl__utf8_prefix((const uint8_t *)w->text, w->text_len) : 0;
  if (w->text)
    w->text[tlen] = '\0';
  pl_push_note n = {.token = w->token,
                    .user = w->user,
                    .device = w->device,
                    .count = w->count,
                    .badge = pl__badge(p, w->user_id, w->count),
                    .conv = w->conv,
                    .from = w->from,
                    .text = tlen ? w->text : NULL};
  pl__job *j = pl_calloc(1, sizeof *j);
  *j = (pl__job){.p = p,
                 .device = w->device,
                 .count = w->count,
                 .claim = w->claim,
                 .attempts = w->attempts,
                 .prov = prov,
                 .token = pl_strdup(w->token)};
  if (pl__provs[prov]->build(p->pst[prov], &n, now, &j->req) != PL_OK) {
    pl__retry_later(p, w->device, w->claim, w->attempts + 1, pl__backoff(p, w->attempts + 1));
    pl__job_free(j);
    return;
  }
  pl__job_start(p, j);
}

/* Claims the rows that are due, as many as may be in flight, and starts
 * them. The claim also says how many rows wait and when the next falls due. */
static void pl__start_due(pl_push *p) {
  size_t room = p->cfg.max_inflight > p->njobs ? p->cfg.max_inflight - p->njobs : 0;
  uint64_t now = pl_now_ms();
  /* a store request only when something may be due (polling aside) */
  if (!room || (!atomic_exchange(&p->kick, 0) && now - p->last_claim < PL__POLL_MS &&
                (!p->next_due || p->next_due > now)))
    return;
  p->last_claim = now;
  pl_store_req r = {.op = PL_STORE_PUSH_CLAIM};
  r.u.push_claim.in.now = now;
  r.u.push_claim.in.owner = p->owner;
  r.u.push_claim.in.lease_ms = pl__lease_ms(p);
  r.u.push_claim.in.limit = (uint32_t)(room < 4096 ? room : 4096);
  if (pl_store_call(p->cfg.store, &r) != PL_OK) {
    p->next_due = 0;
    pl_store_req_clear(&r);
    return;
  }
  atomic_store(&p->pending, r.u.push_claim.out.pending);
  p->next_due = r.u.push_claim.out.next_due;
  for (size_t i = 0; i < r.u.push_claim.out.nrows; i++)
    pl__send(p, &r.u.push_claim.out.rows[i], r.u.push_claim.in.now);
  pl_store_req_clear(&r);
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
  pl_store_push_result x = {.device = j->device,
                            .claim = j->claim,
                            .count = j->count,
                            .outcome = PL_PUSH_DONE_BAD_TOKEN,
                            .token = j->token};
  pl__outcome(p, &x);
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
    pl__result(p, j->device, j->claim, j->count, PL_PUSH_DONE_SENT);
    break;
  case PL_PUSH_RETRY: {
    uint64_t d = pl__backoff(p, j->attempts + 1), ra = (uint64_t)retry_after * 1000u;
    pl__retry_later(p, j->device, j->claim, j->attempts + 1, ra > d && ra <= p->cfg.backoff_max_ms ? ra : d);
    break;
  }
  case PL_PUSH_INVALID_TOKEN: pl__forget_token(p, j); break;
  case PL_PUSH_FAIL:
    atomic_fetch_add(&p->failed, 1);
    pl_warn("push: device %llu: %s refused the notification (HTTP %ld); dropped",
            (unsigned long long)j->device, pl__provs[j->prov]->name, status);
    /* its messages are done with; later ones get a window of their own */
    pl__result(p, j->device, j->claim, j->count, PL_PUSH_DONE_SENT);
    break;
  }
}

/* Collects the finished requests. */
static void pl__reap(pl_push *p) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(p->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    pl__job *j;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
    CURLcode rc = m->data.result;
    curl_multi_remove_handle(p->multi, j->h);
    pl_map_del(&p->jobs, j->device);
    p->njobs--;
    pl__finish(p, j, rc);
    pl__job_free(j);
  }
}

/* How long the thread may sleep: until the next row is due, at most
 * PL__POLL_MS (rows another node enqueued or left are found by polling;
 * this node's own enqueues wake it). */
static int pl__wait_ms(pl_push *p) {
  uint64_t now = pl_now_ms();
  if (atomic_load(&p->kick) && p->njobs < p->cfg.max_inflight)
    return 0;
  if (!p->next_due || p->njobs >= p->cfg.max_inflight)
    return PL__POLL_MS;
  return p->next_due <= now ? 0 : p->next_due - now > PL__POLL_MS ? PL__POLL_MS : (int)(p->next_due - now);
}

/* Stopping: requests in flight are abandoned, their rows released to be
 * due at once for the next claimer (the provider may have shown them: at
 * least once). If the store is already stopped, their leases end instead. */
static void pl__abandon(pl_push *p) {
  uint64_t k;
  void *v;
  for (size_t it = 0; pl_map_next(&p->jobs, &it, &k, &v);) {
    pl__job *j = v;
    curl_multi_remove_handle(p->multi, j->h);
    pl__result(p, j->device, j->claim, j->count, PL_PUSH_DONE_RELEASE);
    pl__job_free(j);
  }
  pl__flush(p);
  pl_map_free(&p->jobs);
  p->njobs = 0;
}

static void *pl__main(void *arg) {
  pl_push *p = arg;
  pthread_setname_np(pthread_self(), "pl-push");
  for (;;) {
    pthread_mutex_lock(&p->mu);
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop)
      break;
    pl__start_due(p);
    pl__flush(p); /* the outcomes known without a request */
    int running;
    curl_multi_perform(p->multi, &running);
    pl__reap(p);
    pl__flush(p);
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

/* The claims' owner: the configured node name, else host name and pid. */
static void pl__owner(pl_push *p) {
  char host[64] = "";
  if (p->cfg.node && *p->cfg.node) {
    snprintf(p->owner, sizeof p->owner, "%s", p->cfg.node);
    return;
  }
  if (gethostname(host, sizeof host - 1) != 0)
    snprintf(host, sizeof host, "parleyd");
  snprintf(p->owner, sizeof p->owner, "%s/%ld", host, (long)getpid());
}

pl_err pl_push_open(pl_push **out, const pl_push_config *cfg, char *why, size_t whylen) {
  pl_push *p = pl_calloc(1, sizeof *p);
  p->cfg = *cfg;
  p->rng = pl_mono_us() | 1;
  pl__owner(p);
  pthread_mutex_init(&p->mu, NULL);
  pl_map_init(&p->tokens);
  pl_map_init(&p->jobs);
  *out = NULL;
  pl_err e = pl__providers(p, why, whylen);
  if (e == PL_OK && !cfg->store) {
    snprintf(why, whylen, "push needs the store");
    e = PL_ERR_CONFIG;
  }
  if (e == PL_OK)
    e = pl__load_tokens(p, why, whylen);
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
  pl_free(p->results);
  pl_free(p->result_tokens);
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
