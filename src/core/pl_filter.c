#include "pl_filter.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "../common/pl_map.h"
#include "../common/pl_mem.h"

#define PL__BAD_CP 0xFFFFFFFFu /* a byte that is not valid UTF-8 */
#define PL__NONE 0xFFFFFFFFu

enum { PL__REJECT = 1, PL__MASK = 2 };

struct pl_filter {
  atomic_uint refs;
  size_t entries;
  uint32_t nnodes, cap;
  uint32_t *fail;   /* Aho-Corasick failure link */
  uint32_t *dict;   /* nearest node on the failure chain that ends an entry */
  uint32_t *outlen; /* code points of the entry ending here (0: none) */
  uint8_t *policy;  /* PL__REJECT / PL__MASK of that entry */
  uint32_t *first;  /* build only: first edge of the node */
  pl_map go;        /* (node << 21 | code point) -> child + 1 */
  /* build only: edges as a linked list per node, for the breadth-first pass */
  uint32_t *ecp, *echild, *enext;
  uint32_t nedges, ecap;
};

/* ---- UTF-8 and case folding ----------------------------------------------- */

/* Decodes one code point of p[0..len); returns the bytes used (1 for an
 * invalid byte, whose *cp is PL__BAD_CP). */
static size_t pl__utf8(const uint8_t *p, size_t len, uint32_t *cp) {
  uint32_t c = p[0];
  size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  *cp = PL__BAD_CP;
  if (n == 0 || n > len)
    return 1;
  c = n == 1 ? c : c & (0x7Fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 1;
    c = c << 6 | (p[i] & 0x3Fu);
  }
  if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 1; /* overlong, out of range, surrogate */
  *cp = c;
  return n;
}

uint32_t pl_filter_fold(uint32_t c) {
  if (c < 0x80)
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
    return c + 32;                /* Latin-1 */
  if (c >= 0x100 && c <= 0x17F) { /* Latin Extended-A */
    if (c == 0x130)
      return 'i'; /* İ: simple folding has no one-code-point form; i is closest */
    if (c == 0x178)
      return 0xFF;
    if (c == 0x17F)
      return 's';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
      return c & 1 ? c + 1 : c;
    if (c != 0x138 && c != 0x149 && c != 0x131)
      return c & 1 ? c : c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
    return c + 32; /* Greek capitals */
  if (c == 0x3C2)
    return 0x3C3; /* final sigma */
  if (c == 0x386)
    return 0x3AC;
  if (c >= 0x388 && c <= 0x38A)
    return c + 37;
  if (c == 0x38C)
    return 0x3CC;
  if (c == 0x38E || c == 0x38F)
    return c + 63;
  if (c >= 0x410 && c <= 0x42F)
    return c + 32; /* Cyrillic */
  if (c >= 0x400 && c <= 0x40F)
    return c + 80;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF))
    return c & 1 ? c : c + 1;
  if (c == 0x1E9E)
    return 0xDF; /* capital sharp s */
  return c;
}

/* ---- the automaton ----------------------------------------------------------- */

static uint64_t pl__key(uint32_t node, uint32_t cp) { return (uint64_t)node << 21 | cp; }

static uint32_t pl__goto(const pl_filter *f, uint32_t node, uint32_t cp) {
  void *v = pl_map_get((pl_map *)&f->go, pl__key(node, cp));
  return v ? (uint32_t)((uintptr_t)v - 1) : PL__NONE;
}

static uint32_t pl__new_node(pl_filter *f) {
  if (f->nnodes == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 64;
    f->fail = pl_realloc(f->fail, f->cap * sizeof *f->fail);
    f->dict = pl_realloc(f->dict, f->cap * sizeof *f->dict);
    f->outlen = pl_realloc(f->outlen, f->cap * sizeof *f->outlen);
    f->policy = pl_realloc(f->policy, f->cap * sizeof *f->policy);
    f->first = pl_realloc(f->first, f->cap * sizeof *f->first);
  }
  uint32_t n = f->nnodes++;
  f->fail[n] = 0;
  f->dict[n] = PL__NONE;
  f->outlen[n] = 0;
  f->policy[n] = 0;
  f->first[n] = PL__NONE;
  return n;
}

static uint32_t pl__child(pl_filter *f, uint32_t node, uint32_t cp) {
  uint32_t c = pl__goto(f, node, cp);
  if (c != PL__NONE)
    return c;
  c = pl__new_node(f);
  pl_map_put(&f->go, pl__key(node, cp), (void *)(uintptr_t)(c + 1));
  if (f->nedges == f->ecap) {
    f->ecap = f->ecap ? f->ecap * 2 : 64;
    f->ecp = pl_realloc(f->ecp, f->ecap * sizeof *f->ecp);
    f->echild = pl_realloc(f->echild, f->ecap * sizeof *f->echild);
    f->enext = pl_realloc(f->enext, f->ecap * sizeof *f->enext);
  }
  f->ecp[f->nedges] = cp;
  f->echild[f->nedges] = c;
  f->enext[f->nedges] = f->first[node];
  f->first[node] = f->nedges++;
  return c;
}

/* Adds one entry (valid UTF-8, not empty); reject wins over mask. */
static void pl__insert(pl_filter *f, const uint8_t *p, size_t len, int policy) {
  uint32_t node = 0, ncp = 0, cp;
  for (size_t i = 0; i < len; ncp++) {
    i += pl__utf8(p + i, len - i, &cp);
    node = pl__child(f, node, pl_filter_fold(cp));
  }
  if (f->outlen[node] == 0)
    f->entries++;
  f->outlen[node] = ncp;
  if (f->policy[node] != PL__REJECT)
    f->policy[node] = (uint8_t)policy;
}

/* Failure and dictionary links, breadth first (a queue of node ids). */
static void pl__link(pl_filter *f) {
  uint32_t *queue = pl_malloc(f->nnodes * sizeof *queue);
  size_t head = 0, tail = 0;
  queue[tail++] = 0;
  while (head < tail) {
    uint32_t u = queue[head++];
    for (uint32_t e = f->first[u]; e != PL__NONE; e = f->enext[e]) {
      uint32_t v = f->echild[e], cp = f->ecp[e], fl = 0;
      if (u != 0) {
        uint32_t s = f->fail[u], t;
        while ((t = pl__goto(f, s, cp)) == PL__NONE && s != 0)
          s = f->fail[s];
        fl = t != PL__NONE ? t : 0;
      }
      f->fail[v] = fl;
      f->dict[v] = f->outlen[fl] ? fl : f->dict[fl];
      queue[tail++] = v;
    }
  }
  pl_free(queue);
  /* The edge lists only served this pass. */
  pl_free(f->first);
  pl_free(f->ecp);
  pl_free(f->echild);
  pl_free(f->enext);
  f->first = f->ecp = f->echild = f->enext = NULL;
}

/* ---- parsing a list ------------------------------------------------------------ */

static int pl__valid_utf8(const uint8_t *p, size_t len) {
  uint32_t cp;
  for (size_t i = 0; i < len;) {
    i += pl__utf8(p + i, len - i, &cp);
    if (cp == PL__BAD_CP)
      return 0;
  }
  return 1;
}

static void pl__trim(const char **p, size_t *n) {
  while (*n && (**p == ' ' || **p == '\t'))
    (*p)++, (*n)--;
  while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
    (*n)--;
}

/* One line (without its newline); "" when fine, else the reason. */
static const char *pl__line(pl_filter *f, const char *p, size_t n) {
  if (n && p[n - 1] == '\r')
    n--;
  if (n > PL_FILTER_MAX_LINE)
    return "line too long";
  if (memchr(p, 0, n))
    return "NUL byte";
  const char *w = p, *tab = memchr(p, '\t', n), *all = p;
  size_t wn = tab ? (size_t)(tab - p) : n, alln = n;
  pl__trim(&all, &alln);
  if (alln == 0 || p[0] == '#')
    return ""; /* blank, or a comment */
  pl__trim(&w, &wn);
  int policy = PL__REJECT;
  if (tab) {
    const char *pol = tab + 1;
    size_t pn = n - (size_t)(pol - p);
    pl__trim(&pol, &pn);
    if (pn == 6 && !memcmp(pol, "reject", 6))
      policy = PL__REJECT;
    else if (pn == 4 && !memcmp(pol, "mask", 4))
      policy = PL__MASK;
    else if (pn != 0)
      return "unknown policy (want reject or mask)";
    if (wn == 0)
      return "empty entry before the policy";
  }
  if (!pl__valid_utf8((const uint8_t *)w, wn))
    return "not valid UTF-8";
  if (f->entries >= PL_FILTER_MAX_ENTRIES)
    return "too many entries";
  pl__insert(f, (const uint8_t *)w, wn, policy);
  return "";
}

pl_err pl_filter_parse(const char *text, size_t len, pl_filter **out, char *why, size_t whylen) {
  pl_filter *f = pl_calloc(1, sizeof *f);
  atomic_init(&f->refs, 1);
  pl__new_node(f); /* the root */
  size_t lineno = 0;
  *out = NULL;
  for (size_t i = 0; i < len;) {
    const char *nl = memchr(text + i, '\n', len - i);
    size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
    const char *bad = pl__line(f, text + i, n);
    lineno++;
    if (*bad) {
      if (why && whylen)
        snprintf(why, whylen, "line %zu: %s", lineno, bad);
      pl_filter_unref(f);
      return PL_ERR_CONFIG;
    }
    i += n + (nl ? 1 : 0);
  }
  pl__link(f);
  *out = f;
  return PL_OK;
}

pl_err pl_filter_load(const char *path, pl_filter **out, char *why, size_t whylen) {
  FILE *fp = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0;
  pl_err e = PL_ERR_CONFIG;
  *out = NULL;
  if (!fp) {
    snprintf(why, whylen, "cannot open %s", path);
    return PL_ERR_CONFIG;
  }
  buf = pl_malloc(PL_FILTER_MAX_FILE + 1);
  n = fread(buf, 1, PL_FILTER_MAX_FILE + 1, fp);
  if (ferror(fp))
    snprintf(why, whylen, "cannot read %s", path);
  else if (n > PL_FILTER_MAX_FILE)
    snprintf(why, whylen, "%s is larger than %u bytes", path, PL_FILTER_MAX_FILE);
  else
    e = pl_filter_parse(buf, n, out, why, whylen);
  fclose(fp);
  pl_free(buf);
  return e;
}

/* ---- checking a message ------------------------------------------------------ */

typedef struct pl__hit {
  uint32_t end, len; /* last code point index, length in code points */
} pl__hit;

/* The masked copy: every code point inside a hit becomes '*'. */
static void pl__mask(const uint8_t *text, size_t len, const pl__hit *hits, size_t nhits, uint8_t **out,
                     size_t *out_len) {
  uint32_t ncp = hits[nhits - 1].end + 1, cp; /* hits are in end order */
  uint8_t *masked = pl_calloc(ncp, 1);
  for (size_t k = 0; k < nhits; k++)
    memset(masked + (hits[k].end + 1 - hits[k].len), 1, hits[k].len);
  uint8_t *o = pl_malloc(len ? len : 1);
  size_t n = 0, idx = 0;
  for (size_t i = 0; i < len; idx++) {
    size_t used = pl__utf8(text + i, len - i, &cp);
    if (idx < ncp && masked[idx]) {
      o[n++] = '*';
    } else {
      memcpy(o + n, text + i, used);
      n += used;
    }
    i += used;
  }
  pl_free(masked);
  *out = o;
  *out_len = n;
}

pl_filter_result pl_filter_check(const pl_filter *f, const uint8_t *text, size_t len, uint8_t **out,
                                 size_t *out_len) {
  pl__hit *hits = NULL;
  size_t nhits = 0, cap = 0;
  uint32_t state = 0, cp, idx = 0;
  *out = NULL;
  *out_len = 0;
  if (!f || f->entries == 0)
    return PL_FILTER_PASS;
  for (size_t i = 0; i < len; idx++) {
    i += pl__utf8(text + i, len - i, &cp);
    if (cp == PL__BAD_CP) {
      state = 0; /* nothing matches across a bad byte */
      continue;
    }
    cp = pl_filter_fold(cp);
    uint32_t t;
    while ((t = pl__goto(f, state, cp)) == PL__NONE && state != 0)
      state = f->fail[state];
    state = t != PL__NONE ? t : 0;
    for (uint32_t n = f->outlen[state] ? state : f->dict[state]; n != PL__NONE; n = f->dict[n]) {
      if (f->policy[n] == PL__REJECT) {
        pl_free(hits);
        return PL_FILTER_REJECT;
      }
      if (nhits == cap) {
        cap = cap ? cap * 2 : 8;
        hits = pl_realloc(hits, cap * sizeof *hits);
      }
      hits[nhits++] = (pl__hit){idx, f->outlen[n]};
    }
  }
  if (!nhits)
    return PL_FILTER_PASS;
  pl__mask(text, len, hits, nhits, out, out_len);
  pl_free(hits);
  return PL_FILTER_MASKED;
}

size_t pl_filter_count(const pl_filter *f) { return f ? f->entries : 0; }

pl_filter *pl_filter_ref(pl_filter *f) {
  if (f)
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

void pl_filter_unref(pl_filter *f) {
  if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
    return;
  pl_map_free(&f->go);
  pl_free(f->fail);
  pl_free(f->dict);
  pl_free(f->outlen);
  pl_free(f->policy);
  pl_free(f->first);
  pl_free(f->ecp);
  pl_free(f->echild);
  pl_free(f->enext);
  pl_free(f);
}
