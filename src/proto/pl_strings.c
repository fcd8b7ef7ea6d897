#include "pl_strings.h"

#include <stdio.h>
#include <string.h>

#include "pl_frame.h"

#define PL__MAX_DEPTH 8 /* the schema nests 2 deep; the rest is an attack */

/* The fields a person reads, with their rule and the name an Error uses.
 * Every other string field is PL_UTF8_ANY; other bytes fields are opaque. */
static const struct {
  const ProtobufCMessageDescriptor *md;
  unsigned field;
  pl_utf8_rule rule;
  const char *label;
} pl__rules[] = {
    {&parley__register__descriptor, 3, PL_UTF8_NAME, "device"},
    {&parley__login__descriptor, 3, PL_UTF8_NAME, "device"},
    {&parley__send__descriptor, 3, PL_UTF8_TEXT, "body"},
    {&parley__group_create__descriptor, 2, PL_UTF8_NAME, "group name"},
    {&parley__group_create__descriptor, 3, PL_UTF8_TEXT, "group description"},
    {&parley__group_update__descriptor, 5, PL_UTF8_NAME, "group name"},
    {&parley__group_update__descriptor, 6, PL_UTF8_TEXT, "group description"},
};

/* The rule for field f of md, or -1 for a field that is not checked. */
static int pl__rule_of(const ProtobufCMessageDescriptor *md, const ProtobufCFieldDescriptor *f,
                       const char **label) {
  *label = f->name;
  for (size_t i = 0; i < sizeof pl__rules / sizeof pl__rules[0]; i++)
    if (pl__rules[i].md == md && pl__rules[i].field == f->id) {
      *label = pl__rules[i].label;
      return (int)pl__rules[i].rule;
    }
  return f->type == PROTOBUF_C_TYPE_STRING ? (int)PL_UTF8_ANY : -1;
}

static int pl__varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64 && *i < n; shift += 7) {
    uint8_t b = p[(*i)++];
    r |= (uint64_t)(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

/* A walk: checking (the first fault goes to *fault), or repairing. */
typedef struct pl__walker {
  pl_strings_fault *fault;
  int repair; /* the bytes are the caller's to change (pl_strings_repair) */
} pl__walker;

static int pl__walk(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t n, int depth,
                    pl__walker *w);

/* Every byte of an invalid UTF-8 sequence in v[0..len) becomes '?': the
 * length stays, so no length prefix around it changes. */
static void pl__repair(uint8_t *v, size_t len) {
  uint32_t cp;
  for (size_t i = 0, k; i < len; i += k)
    if (!(k = pl_utf8_seq(v + i, len - i, &cp)))
      v[i] = '?', k = 1;
}
/* Checks one length-delimited value of field f; 1 if it holds a bad string
 * (the first one found goes to *fault), 0 if not, -1 if not protobuf. */
static int pl__value(const ProtobufCMessageDescriptor *md, const ProtobufCFieldDescriptor *f,
                     const uint8_t *v, size_t len, int depth, pl__walker *w) {
  pl_strings_fault *fault = w->fault;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    int had = fault->why != PL_UTF8_OK;
    int rc = pl__walk(f->descriptor, v, len, depth + 1, w);
    if (rc == 1 && !had) { /* name it from here down: "media.id" */
      char path[2 * sizeof fault->field];
      int k = snprintf(path, sizeof path, "%s.%s", f->name, fault->field);
      if (k > 0 && (size_t)k < sizeof fault->field)
        memcpy(fault->field, path, (size_t)k + 1);
    }
    return rc;
  }
  const char *label;
  int rule = pl__rule_of(md, f, &label);
  if (rule < 0)
    return 0;
  if (w->repair) { /* only what a protobuf decoder refuses: invalid UTF-8 */
    if (f->type == PROTOBUF_C_TYPE_STRING &&
        pl_utf8_check(v, len, PL_UTF8_ANY, NULL, NULL) == PL_UTF8_INVALID)
      pl__repair((uint8_t *)v, len); /* writable: pl_strings_repair's own buffer */
    return 0;
  }
  uint32_t cp = 0;
  pl_utf8_fault why = pl_utf8_check(v, len, (pl_utf8_rule)rule, NULL, &cp);
  if (why == PL_UTF8_OK)
    return 0;
  if (fault->why == PL_UTF8_OK) {
    fault->why = why;
    fault->cp = cp;
    snprintf(fault->field, sizeof fault->field, "%s", label);
  }
  return 1;
}

/* 1 if md's encoding p[0..n) holds a bad string, 0 if not, -1 if it is not
 * protobuf. At depth 0 it records which top-level fields hold one. */
static int pl__walk(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t n, int depth,
                    pl__walker *w) {
  size_t i = 0;
  int bad = 0;
  uint64_t key, len;
  if (depth > PL__MAX_DEPTH)
    return -1;
  while (i < n) {
    if (pl__varint(p, n, &i, &key))
      return -1;
    /* protobuf-c reads a field number as a uint32 (and skips 0 and numbers
     * it does not know): the same field here as there. */
    uint32_t num = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0: /* varint */
      if (pl__varint(p, n, &i, &len))
        return -1;
      continue;
    case 1: len = 8; break;
    case 5: len = 4; break;
    case 2:
      if (pl__varint(p, n, &i, &len) || len > n - i)
        return -1;
      break;
    default: return -1; /* groups: protobuf-c does not take them either */
    }
    if (len > n - i)
      return -1;
    const ProtobufCFieldDescriptor *f = num ? protobuf_c_message_descriptor_get_field(md, num) : NULL;
    int rc = f && (key & 7) == 2 ? pl__value(md, f, p + i, (size_t)len, depth, w) : 0;
    if (rc < 0)
      return -1;
    if (rc && depth == 0 && num < 64)
      w->fault->bad_fields |= 1ull << num;
    bad |= rc;
    i += (size_t)len;
  }
  return bad;
}

/* The walk of a decoded message: the same rules as on the wire, in the
 * order its encoding would have (known fields, then unknown ones). */
static int pl__walk_msg(const ProtobufCMessage *m, int depth, pl__walker *w);

/* One value of field f of message md: a string or bytes as its bytes, a
 * sub-message by its own walk (named from here down, as pl__value does). */
static int pl__msg_value(const ProtobufCMessageDescriptor *md, const ProtobufCFieldDescriptor *f,
                         const void *slot, int depth, pl__walker *w) {
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    const char *v = *(char *const *)slot;
    return v ? pl__value(md, f, (const uint8_t *)v, strlen(v), depth, w) : 0;
  }
  if (f->type == PROTOBUF_C_TYPE_BYTES) {
    const ProtobufCBinaryData *b = slot;
    return pl__value(md, f, b->data, b->len, depth, w);
  }
  if (f->type != PROTOBUF_C_TYPE_MESSAGE) /* numbers hold no strings */
    return 0;
  const ProtobufCMessage *sub = *(ProtobufCMessage *const *)slot;
  if (!sub)
    return 0;
  pl_strings_fault *fault = w->fault;
  int had = fault->why != PL_UTF8_OK;
  int rc = pl__walk_msg(sub, depth + 1, w);
  if (rc == 1 && !had) {
    char path[2 * sizeof fault->field];
    int k = snprintf(path, sizeof path, "%s.%s", f->name, fault->field);
    if (k > 0 && (size_t)k < sizeof fault->field)
      memcpy(fault->field, path, (size_t)k + 1);
  }
  return rc;
}

/* Records a bad top-level field number (bit n of bad_fields). */
static int pl__mark(pl__walker *w, int depth, uint32_t num, int rc) {
  if (rc == 1 && depth == 0 && num < 64)
    w->fault->bad_fields |= 1ull << num;
  return rc;
}

static int pl__walk_msg(const ProtobufCMessage *m, int depth, pl__walker *w) {
  const ProtobufCMessageDescriptor *md = m->descriptor;
  int bad = 0, rc;
  if (depth > PL__MAX_DEPTH)
    return -1;
  for (unsigned i = 0; i < md->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &md->fields[i];
    const char *slot = (const char *)m + f->offset;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
      if ((rc = pl__mark(w, depth, f->id, pl__msg_value(md, f, slot, depth, w))) < 0)
        return -1;
      bad |= rc;
      continue;
    }
    size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
    size_t es = f->type == PROTOBUF_C_TYPE_BYTES ? sizeof(ProtobufCBinaryData) : sizeof(void *);
    const char *arr = *(char *const *)slot;
    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_BYTES &&
        f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue; /* numbers hold no strings */
    for (size_t k = 0; k < n; k++) {
      if ((rc = pl__mark(w, depth, f->id, pl__msg_value(md, f, arr + k * es, depth, w))) < 0)
        return -1;
      bad |= rc;
    }
  }
  for (size_t i = 0; i < m->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &m->unknown_fields[i];
    const ProtobufCFieldDescriptor *f = u->tag ? protobuf_c_message_descriptor_get_field(md, u->tag) : NULL;
    size_t at = 0;
    uint64_t len;
    if (!f || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
      continue;
    /* the data of an unknown field is all but its tag: the length first */
    if (pl__varint(u->data, u->len, &at, &len) || len != u->len - at)
      return -1;
    if ((rc = pl__mark(w, depth, u->tag, pl__value(md, f, u->data + at, (size_t)len, depth, w))) < 0)
      return -1;
    bad |= rc;
  }
  return bad;
}

pl_err pl_strings_check_msg(const ProtobufCMessage *m, pl_strings_fault *fault) {
  memset(fault, 0, sizeof *fault);
  pl__walker w = {.fault = fault};
  int rc = pl__walk_msg(m, 0, &w);
  return rc < 0 ? PL_ERR_BAD_FRAME : rc ? PL_ERR_INVALID_ARGUMENT : PL_OK;
}

pl_err pl_strings_check(uint8_t type, const uint8_t *p, size_t len, pl_strings_fault *fault) {
  memset(fault, 0, sizeof *fault);
  const ProtobufCMessageDescriptor *md = pl_frame_descriptor(type);
  if (!md)
    return PL_OK;
  pl__walker w = {.fault = fault};
  int rc = pl__walk(md, p, len, 0, &w);
  return rc < 0 ? PL_ERR_BAD_FRAME : rc ? PL_ERR_INVALID_ARGUMENT : PL_OK;
}

void pl_strings_repair(uint8_t type, uint8_t *p, size_t len) {
  pl_strings_fault unused;
  pl__walker w = {.fault = &unused, .repair = 1};
  const ProtobufCMessageDescriptor *md = pl_frame_descriptor(type);
  memset(&unused, 0, sizeof unused);
  if (md)
    pl__walk(md, p, len, 0, &w);
}

void pl_strings_describe(const pl_strings_fault *fault, char *out, size_t cap) {
  const char *why = pl_utf8_fault_msg(fault->why);
  if (fault->why == PL_UTF8_INVALID || fault->why == PL_UTF8_NUL)
    snprintf(out, cap, "%s: %s", fault->field, why);
  else
    snprintf(out, cap, "%s: %s U+%04X", fault->field, why, (unsigned)fault->cp);
}
