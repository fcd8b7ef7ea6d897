#include "pl_busmsg.h"

#include <string.h>

static const char *const pl__names[PL_BUSMSG_TYPE_MAX + 1] = {
    "?",    "ALIVE",  "HINT",    "GHINT",   "FRAME",  "GFRAME", "ATTACH", "DETACH",
    "KICK", "ONLINE", "OFFLINE", "GCHANGE", "FORGET", "SEEN",   "STATE"};

const char *pl_busmsg_type_name(unsigned type) { return type <= PL_BUSMSG_TYPE_MAX ? pl__names[type] : "?"; }

static int pl__valid(const pl_busmsg *m) {
  return m->type >= 1 && m->type <= PL_BUSMSG_TYPE_MAX && m->node_len <= PL_BUSMSG_MAX_NODE &&
         m->nids <= PL_BUSMSG_MAX_IDS && m->plen <= PL_BUSMSG_MAX_PAYLOAD && (m->nids == 0 || m->ids) &&
         (m->plen == 0 || m->payload) && (m->node_len == 0 || m->node);
}

size_t pl_busmsg_size(const pl_busmsg *m) {
  if (!pl__valid(m))
    return 0;
  return PL_BUSMSG_HEADER + (size_t)m->node_len + 8u * m->nids + m->plen;
}

static uint8_t *pl__put64(uint8_t *o, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    o[i] = (uint8_t)v;
  return o + 8;
}
static uint8_t *pl__put32(uint8_t *o, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8)
    o[i] = (uint8_t)v;
  return o + 4;
}
static uint64_t pl__get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}
static uint32_t pl__get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

pl_err pl_busmsg_encode(const pl_busmsg *m, uint8_t *out, size_t cap, size_t *n) {
  size_t need = pl_busmsg_size(m);
  if (!need)
    return PL_ERR_INVALID_ARGUMENT;
  if (cap < need)
    return PL_ERR_NOMEM;
  uint8_t *o = out;
  *o++ = 'P';
  *o++ = 'B';
  *o++ = PL_BUSMSG_VERSION;
  *o++ = m->type;
  *o++ = m->node_len;
  if (m->node_len)
    memcpy(o, m->node, m->node_len);
  o += m->node_len;
  o = pl__put64(o, m->incarnation);
  o = pl__put64(o, m->a);
  o = pl__put64(o, m->b);
  o = pl__put32(o, m->nids);
  for (uint32_t i = 0; i < m->nids; i++)
    o = pl__put64(o, m->ids[i]);
  o = pl__put32(o, m->plen);
  if (m->plen)
    memcpy(o, m->payload, m->plen);
  *n = need;
  return PL_OK;
}

/* Reads the message in named steps; each checks what it reads against end. */
pl_err pl_busmsg_decode(const uint8_t *p, size_t len, pl_busmsg *m) {
  const uint8_t *end = p + len;
  memset(m, 0, sizeof *m);
  if (len < PL_BUSMSG_HEADER || p[0] != 'P' || p[1] != 'B' || p[2] != PL_BUSMSG_VERSION)
    return PL_ERR_BAD_FRAME;
  m->type = p[3];
  m->node_len = p[4];
  if (m->type < 1 || m->type > PL_BUSMSG_TYPE_MAX || m->node_len > PL_BUSMSG_MAX_NODE ||
      (size_t)(end - p) < PL_BUSMSG_HEADER + (size_t)m->node_len)
    return PL_ERR_BAD_FRAME;
  p += 5;
  m->node = (const char *)p;
  p += m->node_len;
  m->incarnation = pl__get64(p);
  m->a = pl__get64(p + 8);
  m->b = pl__get64(p + 16);
  m->nids = pl__get32(p + 24);
  p += 28;
  /* 4 bytes of plen follow the ids: the header's size counted them already */
  if (m->nids > PL_BUSMSG_MAX_IDS || (size_t)(end - p) < 8u * (size_t)m->nids + 4u)
    return PL_ERR_BAD_FRAME;
  m->ids_be = p;
  p += 8u * (size_t)m->nids;
  m->plen = pl__get32(p);
  p += 4;
  if (m->plen > PL_BUSMSG_MAX_PAYLOAD || (size_t)(end - p) != m->plen)
    return PL_ERR_BAD_FRAME;
  m->payload = m->plen ? p : NULL;
  if (!m->nids)
    m->ids_be = NULL;
  return PL_OK;
}

uint64_t pl_busmsg_id(const pl_busmsg *m, uint32_t i) {
  if (m->ids_be)
    return pl__get64(m->ids_be + 8u * i);
  return m->ids ? m->ids[i] : 0;
}
