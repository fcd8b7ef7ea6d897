#include "ledger.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LG_NAME 64

typedef struct lg_try {
  char sender[LG_NAME], id[LG_NAME];
  unsigned n;
} lg_try;

/* one message as someone saw it: an ack (device empty) or a showing */
typedef struct lg_ent {
  char device[LG_NAME], conv[LG_NAME], from[LG_NAME], id[LG_NAME];
  uint64_t seq, qid;
  int redelivered; /* a qid this device was shown before: the client drops it */
} lg_ent;

typedef struct lg_exp {
  char device[LG_NAME], conv[LG_NAME], not_from[LG_NAME];
} lg_exp;

#define LG_VEC(T)  \
  struct {         \
    T *v;          \
    size_t n, cap; \
  }

struct lg_ledger {
  LG_VEC(lg_try) tries;
  LG_VEC(lg_ent) acks;
  LG_VEC(lg_ent) shown;
  LG_VEC(lg_exp) exps;
};

/* Room for one more element of vec (aborts on OOM: a test's bookkeeping). */
#define LG_PUSH(vec)                                                                            \
  (((vec).n == (vec).cap ? lg__grow((void **)&(vec).v, &(vec).cap, sizeof *(vec).v) : (void)0), \
   memset(&(vec).v[(vec).n], 0, sizeof *(vec).v), &(vec).v[(vec).n++])

static void lg__grow(void **v, size_t *cap, size_t size) {
  size_t ncap = *cap ? *cap * 2 : 64;
  void *p = realloc(*v, ncap * size);
  if (!p)
    abort();
  *v = p;
  *cap = ncap;
}

static void lg__copy(char dst[LG_NAME], const char *src) { snprintf(dst, LG_NAME, "%s", src ? src : ""); }

lg_ledger *lg_new(void) {
  lg_ledger *lg = calloc(1, sizeof *lg);
  if (!lg)
    abort();
  return lg;
}

void lg_free(lg_ledger *lg) {
  if (!lg)
    return;
  free(lg->tries.v);
  free(lg->acks.v);
  free(lg->shown.v);
  free(lg->exps.v);
  free(lg);
}

void lg_tried(lg_ledger *lg, const char *sender, const char *id) {
  for (size_t i = 0; i < lg->tries.n; i++)
    if (!strcmp(lg->tries.v[i].sender, sender) && !strcmp(lg->tries.v[i].id, id)) {
      lg->tries.v[i].n++;
      return;
    }
  lg_try *t = LG_PUSH(lg->tries);
  lg__copy(t->sender, sender);
  lg__copy(t->id, id);
  t->n = 1;
}

void lg_acked(lg_ledger *lg, const char *sender, const char *id, const char *conv, uint64_t seq) {
  lg_ent *e = LG_PUSH(lg->acks);
  lg__copy(e->from, sender);
  lg__copy(e->id, id);
  lg__copy(e->conv, conv);
  e->seq = seq;
}

void lg_shown(lg_ledger *lg, const char *device, const char *conv, uint64_t seq, const char *from,
              const char *id, uint64_t qid) {
  int again = 0;
  for (size_t i = 0; i < lg->shown.n && !again; i++)
    again = lg->shown.v[i].qid == qid && !strcmp(lg->shown.v[i].device, device);
  lg_ent *e = LG_PUSH(lg->shown);
  lg__copy(e->device, device);
  lg__copy(e->conv, conv);
  lg__copy(e->from, from);
  lg__copy(e->id, id);
  e->seq = seq;
  e->qid = qid;
  e->redelivered = again;
}

void lg_expect(lg_ledger *lg, const char *device, const char *conv, const char *not_from) {
  lg_exp *x = LG_PUSH(lg->exps);
  lg__copy(x->device, device);
  lg__copy(x->conv, conv);
  lg__copy(x->not_from, not_from);
}

static int lg__same_msg(const lg_ent *a, const lg_ent *b) {
  return a->seq == b->seq && !strcmp(a->conv, b->conv) && !strcmp(a->from, b->from) && !strcmp(a->id, b->id);
}

static int lg__was_shown(const lg_ledger *lg, const char *device, const lg_ent *ack) {
  for (size_t i = 0; i < lg->shown.n; i++) {
    const lg_ent *s = &lg->shown.v[i];
    if (!s->redelivered && !strcmp(s->device, device) && lg__same_msg(s, ack))
      return 1;
  }
  return 0;
}

/* Calls out(lg, exp, ack) for each acked message an expecting device lacks. */
static size_t lg__each_missing(const lg_ledger *lg, void (*out)(void *, const lg_exp *, const lg_ent *),
                               void *arg) {
  size_t missing = 0;
  for (size_t x = 0; x < lg->exps.n; x++) {
    const lg_exp *e = &lg->exps.v[x];
    for (size_t a = 0; a < lg->acks.n; a++) {
      const lg_ent *k = &lg->acks.v[a];
      if (strcmp(k->conv, e->conv) || !strcmp(k->from, e->not_from) || lg__was_shown(lg, e->device, k))
        continue;
      missing++;
      if (out)
        out(arg, e, k);
    }
  }
  return missing;
}

size_t lg_missing(const lg_ledger *lg) { return lg__each_missing(lg, NULL, NULL); }

size_t lg_acked_count(const lg_ledger *lg) { return lg->acks.n; }

size_t lg_retried_count(const lg_ledger *lg) {
  size_t n = 0;
  for (size_t i = 0; i < lg->tries.n; i++)
    n += lg->tries.v[i].n > 1;
  return n;
}

size_t lg_redelivered_count(const lg_ledger *lg) {
  size_t n = 0;
  for (size_t i = 0; i < lg->shown.n; i++)
    n += (size_t)lg->shown.v[i].redelivered;
  return n;
}

/* --- checks ---------------------------------------------------------------- */

typedef struct lg_rep {
  char *buf;
  size_t cap, len, n;
} lg_rep;

static void lg__bad(lg_rep *r, const char *fmt, ...) {
  r->n++;
  if (r->n > 8 || r->len + 1 >= r->cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap);
  va_end(ap);
  if (w > 0)
    r->len = r->len + (size_t)w < r->cap ? r->len + (size_t)w : r->cap - 1;
  if (r->len + 2 < r->cap) {
    r->buf[r->len++] = '\n';
    r->buf[r->len] = 0;
  }
}

static void lg__lost(void *arg, const lg_exp *e, const lg_ent *k) {
  lg__bad(arg, "acked lost: %s's %s (%s seq %llu) never shown on %s", k->from, k->id, k->conv,
          (unsigned long long)k->seq, e->device);
}

/* Redelivered qids name the message first shown under them. */
static void lg__check_qids(const lg_ledger *lg, lg_rep *r) {
  for (size_t i = 0; i < lg->shown.n; i++) {
    const lg_ent *s = &lg->shown.v[i];
    for (size_t j = 0; s->redelivered && j < i; j++) {
      const lg_ent *f = &lg->shown.v[j];
      if (!f->redelivered && f->qid == s->qid && !strcmp(f->device, s->device) && !lg__same_msg(f, s))
        lg__bad(r, "qid %llu on %s named %s seq %llu, then %s seq %llu", (unsigned long long)s->qid,
                s->device, f->id, (unsigned long long)f->seq, s->id, (unsigned long long)s->seq);
    }
  }
}

/* After the qid filter: nothing twice; qids and each conversation's seqs rise. */
static void lg__check_device_stream(const lg_ledger *lg, lg_rep *r) {
  for (size_t i = 0; i < lg->shown.n; i++) {
    const lg_ent *s = &lg->shown.v[i];
    if (s->redelivered)
      continue;
    for (size_t j = 0; j < i; j++) {
      const lg_ent *f = &lg->shown.v[j];
      if (f->redelivered || strcmp(f->device, s->device))
        continue;
      if ((!strcmp(f->conv, s->conv) && f->seq == s->seq) ||
          (!strcmp(f->from, s->from) && !strcmp(f->id, s->id)))
        lg__bad(r, "shown twice on %s: %s %s seq %llu (qids %llu, %llu)", s->device, s->from, s->id,
                (unsigned long long)s->seq, (unsigned long long)f->qid, (unsigned long long)s->qid);
      else if (f->qid >= s->qid)
        lg__bad(r, "out of order on %s: qid %llu after %llu", s->device, (unsigned long long)s->qid,
                (unsigned long long)f->qid);
      else if (!strcmp(f->conv, s->conv) && f->seq > s->seq)
        lg__bad(r, "out of order on %s: %s seq %llu after %llu", s->device, s->conv,
                (unsigned long long)s->seq, (unsigned long long)f->seq);
    }
  }
}

static int lg__by_conv_seq(const void *a, const void *b) {
  const lg_ent *x = a, *y = b;
  int c = strcmp(x->conv, y->conv);
  return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Acks and showings together: each conversation's seqs are 1..max, each
 * seq one message, each (sender, id) one seq. */
static void lg__check_convs(const lg_ledger *lg, lg_rep *r) {
  size_t n = 0;
  lg_ent *all = malloc((lg->acks.n + lg->shown.n + 1) * sizeof *all);
  if (!all)
    abort();
  for (size_t i = 0; i < lg->acks.n; i++)
    all[n++] = lg->acks.v[i];
  for (size_t i = 0; i < lg->shown.n; i++)
    if (!lg->shown.v[i].redelivered)
      all[n++] = lg->shown.v[i];
  qsort(all, n, sizeof *all, lg__by_conv_seq);
  for (size_t i = 0; i < n; i++) {
    int first = i == 0 || strcmp(all[i - 1].conv, all[i].conv);
    uint64_t want = first ? 1 : all[i - 1].seq + 1;
    if (!first && all[i - 1].seq == all[i].seq) {
      if (strcmp(all[i - 1].from, all[i].from) || strcmp(all[i - 1].id, all[i].id))
        lg__bad(r, "%s seq %llu is two messages: %s's %s and %s's %s", all[i].conv,
                (unsigned long long)all[i].seq, all[i - 1].from, all[i - 1].id, all[i].from, all[i].id);
      continue;
    }
    if (all[i].seq != want)
      lg__bad(r, "%s has a gap: seq %llu follows %llu", all[i].conv, (unsigned long long)all[i].seq,
              (unsigned long long)want - 1);
    for (size_t j = 0; j < i; j++)
      if (!strcmp(all[j].conv, all[i].conv) && all[j].seq != all[i].seq &&
          !strcmp(all[j].from, all[i].from) && !strcmp(all[j].id, all[i].id))
        lg__bad(r, "%s's %s stored twice in %s: seq %llu and %llu", all[i].from, all[i].id, all[i].conv,
                (unsigned long long)all[j].seq, (unsigned long long)all[i].seq);
  }
  free(all);
}

size_t lg_check(const lg_ledger *lg, char *report, size_t cap) {
  lg_rep r = {.buf = report, .cap = cap};
  if (cap)
    report[0] = 0;
  lg__each_missing(lg, lg__lost, &r);
  lg__check_qids(lg, &r);
  lg__check_device_stream(lg, &r);
  lg__check_convs(lg, &r);
  return r.n;
}
