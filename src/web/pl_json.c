#include "pl_json.h"

#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/pl_jsonu64.h"
#include "common/pl_mem.h"
#include "common/pl_utf8.h"
#include "proto/pl_frame.h"

/* ---- decoding: JSON -> a message in an arena -> protobuf bytes ---------- */

typedef struct pl__arena {
  void **blocks;
  size_t n, cap;
} pl__arena;

static void *pl__alloc(pl__arena *a, size_t n) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 16;
    a->blocks = pl_realloc(a->blocks, a->cap * sizeof *a->blocks);
  }
  return a->blocks[a->n++] = pl_calloc(1, n ? n : 1);
}

static void pl__arena_free(pl__arena *a) {
  for (size_t i = 0; i < a->n; i++)
    pl_free(a->blocks[i]);
  pl_free(a->blocks);
}

typedef struct pl__dec {
  pl__arena arena;
  char *why;
  size_t whylen;
} pl__dec;

static int pl__fail(pl__dec *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->why, d->whylen, fmt, ap);
  va_end(ap);
  return -1;
}

/* A 64-bit integer as a JSON string (protocol.md 1.2): 1 to 20 decimal
 * digits whose value fits, 0 .. 2^64 - 1; no sign, space or exponent. */
static int pl__digits(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0 || n > 20)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    unsigned digit = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - digit) / 10)
      return -1;
    v = v * 10 + digit;
  }
  *out = v;
  return 0;
}

static int pl__uint(pl__dec *d, const ProtobufCFieldDescriptor *f, json_t *v, uint64_t max, uint64_t *out) {
  if (json_is_integer(v) && json_integer_value(v) >= 0)
    *out = (uint64_t)json_integer_value(v);
  else if (!json_is_string(v) || pl__digits(json_string_value(v), json_string_length(v), out))
    return pl__fail(d, "%s: not an unsigned integer", f->name);
  if (*out > max)
    return pl__fail(d, "%s: out of range", f->name);
  return 0;
}

/* A JSON string without NUL, read as a C string (names of enums, types). */
static const char *pl__cstr(json_t *v) {
  const char *s = json_string_value(v);
  return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* s[0..n) with each lone-surrogate marker (below) as a surrogate's bytes,
 * ED A0 80: invalid UTF-8, as the escape was. Writes to out unless it is
 * NULL; returns the length. */
static size_t pl__unmark(const char *s, size_t n, uint8_t *out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int mark = s[i] == '\0' && n - i >= 4 && !memcmp(s + i + 1, "\xef\xbf\xbf", 3);
    if (out && mark)
      memcpy(out + k, "\xed\xa0\x80", 3);
    else if (out)
      out[k] = (uint8_t)s[i];
    k += mark ? 3 : 1;
    i += mark ? 3 : 0;
  }
  return k;
}

/* A string with a NUL (from \u0000, or a lone surrogate's marker) cannot
 * travel in protobuf-c's char *, which packs up to its first NUL: its exact
 * bytes go as an unknown field of the same number, which the session's check
 * of the wire bytes (pl_strings) refuses as it refuses a native client's,
 * with the same INVALID_ARGUMENT naming the field. */
static void pl__raw_string(pl__dec *d, const ProtobufCFieldDescriptor *f, char *s, size_t n,
                           ProtobufCMessage *m) {
  uint8_t *raw = pl__alloc(&d->arena, n + 10);
  size_t k = 0, len = pl__unmark(s, n, NULL);
  do { /* an unknown field's data is all but its tag: the length first */
    raw[k++] = (uint8_t)(len & 0x7F) | (len > 0x7F ? 0x80 : 0);
    len >>= 7;
  } while (len);
  k += pl__unmark(s, n, raw + k);
  s[0] = '\0'; /* the field itself stays empty */
  ProtobufCMessageUnknownField *uf = pl__alloc(&d->arena, (m->n_unknown_fields + 1) * sizeof *uf);
  if (m->n_unknown_fields)
    memcpy(uf, m->unknown_fields, m->n_unknown_fields * sizeof *uf);
  uf[m->n_unknown_fields] = (ProtobufCMessageUnknownField){
      .tag = f->id, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = k, .data = raw};
  m->unknown_fields = uf;
  m->n_unknown_fields++;
}

static int pl__message(pl__dec *d, const ProtobufCMessageDescriptor *md, json_t *obj, void *msg, int depth);

/* Writes one value of field f of message m at slot. */
static int pl__value(pl__dec *d, const ProtobufCFieldDescriptor *f, json_t *v, void *slot,
                     ProtobufCMessage *m, int depth) {
  uint64_t u;
  switch (f->type) {
  case PROTOBUF_C_TYPE_UINT32:
    if (pl__uint(d, f, v, UINT32_MAX, &u))
      return -1;
    *(uint32_t *)slot = (uint32_t)u;
    return 0;
  case PROTOBUF_C_TYPE_UINT64:
    if (pl__uint(d, f, v, UINT64_MAX, &u))
      return -1;
    *(uint64_t *)slot = u;
    return 0;
  case PROTOBUF_C_TYPE_BOOL:
    if (!json_is_boolean(v))
      return pl__fail(d, "%s: not true or false", f->name);
    *(protobuf_c_boolean *)slot = json_is_true(v);
    return 0;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *ev = NULL;
    if (pl__cstr(v))
      ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, pl__cstr(v));
    else if (json_is_integer(v) && json_integer_value(v) >= INT32_MIN && json_integer_value(v) <= INT32_MAX)
      ev = protobuf_c_enum_descriptor_get_value(f->descriptor, (int)json_integer_value(v));
    if (!ev)
      return pl__fail(d, "%s: not one of its names", f->name);
    *(int *)slot = ev->value;
    return 0;
  }
  case PROTOBUF_C_TYPE_STRING: {
    if (!json_is_string(v))
      return pl__fail(d, "%s: not a string", f->name);
    size_t n = json_string_length(v);
    char *s = pl__alloc(&d->arena, n + 1);
    memcpy(s, json_string_value(v), n);
    if (memchr(s, '\0', n))
      pl__raw_string(d, f, s, n, m);
    *(char **)slot = s;
    return 0;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    if (!json_is_string(v))
      return pl__fail(d, "%s: not a base64 string", f->name);
    size_t n = json_string_length(v), got = 0;
    uint8_t *p = pl__alloc(&d->arena, n / 4 * 3 + 3);
    if (sodium_base642bin(p, n / 4 * 3 + 3, json_string_value(v), n, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
      return pl__fail(d, "%s: not base64", f->name);
    ((ProtobufCBinaryData *)slot)->data = p;
    ((ProtobufCBinaryData *)slot)->len = got;
    return 0;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessageDescriptor *sub = f->descriptor;
    if (!json_is_object(v))
      return pl__fail(d, "%s: not an object", f->name);
    void *m = pl__alloc(&d->arena, sub->sizeof_message);
    protobuf_c_message_init(sub, m);
    *(void **)slot = m;
    return pl__message(d, sub, v, m, depth + 1);
  }
  default: return pl__fail(d, "%s: a type this binding does not carry", f->name);
  }
}

static size_t pl__elem_size(const ProtobufCFieldDescriptor *f) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_UINT64: return sizeof(uint64_t);
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  default: return sizeof(uint32_t); /* uint32, enum */
  }
}

static int pl__message(pl__dec *d, const ProtobufCMessageDescriptor *md, json_t *obj, void *msg, int depth) {
  if (depth > 8)
    return pl__fail(d, "nested too deep");
  for (unsigned i = 0; i < md->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &md->fields[i];
    json_t *v = json_object_get(obj, f->name);
    if (!v || json_is_null(v))
      continue; /* absent: the zero value */
    void *slot = (char *)msg + f->offset;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
      if (pl__value(d, f, v, slot, msg, depth))
        return -1;
      continue;
    }
    if (!json_is_array(v))
      return pl__fail(d, "%s: not an array", f->name);
    size_t n = json_array_size(v), es = pl__elem_size(f);
    char *arr = pl__alloc(&d->arena, n * es);
    for (size_t k = 0; k < n; k++)
      if (pl__value(d, f, json_array_get(v, k), arr + k * es, msg, depth))
        return -1;
    *(size_t *)((char *)msg + f->quantifier_offset) = n;
    *(void **)slot = arr;
  }
  return 0;
}

/* "send_ack" -> FRAME_SEND_ACK's number, or -1. */
static int pl__type_of(const char *name) {
  char up[64] = "FRAME_";
  size_t n = strlen(name);
  if (n == 0 || n > sizeof up - 7)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (!islower((unsigned char)name[i]) && name[i] != '_')
      return -1;
    up[6 + i] = (char)toupper((unsigned char)name[i]);
  }
  up[6 + n] = '\0';
  const ProtobufCEnumValue *ev =
      protobuf_c_enum_descriptor_get_value_by_name(&parley__frame_type__descriptor, up);
  return ev && ev->value > 0 && ev->value < 256 ? ev->value : -1;
}

/* One JSON object -> its message, in d's arena, and its frame type. */
static pl_err pl__obj_to_msg(pl__dec *d, json_t *root, uint8_t *type, ProtobufCMessage **out) {
  json_t *t = json_object_get(root, "type");
  if (!json_is_object(root) || !pl__cstr(t)) {
    pl__fail(d, "not an object with a string \"type\"");
    return PL_ERR_BAD_FRAME;
  }
  int ty = pl__type_of(json_string_value(t));
  const ProtobufCMessageDescriptor *md = ty > 0 ? pl_frame_descriptor((uint8_t)ty) : NULL;
  if (!md) {
    pl__fail(d, "unknown type \"%s\"", json_string_value(t));
    return PL_ERR_UNKNOWN_TYPE;
  }
  void *msg = pl__alloc(&d->arena, md->sizeof_message);
  protobuf_c_message_init(md, msg);
  if (pl__message(d, md, root, msg, 0) != 0)
    return PL_ERR_BAD_FRAME;
  *type = (uint8_t)ty;
  *out = msg;
  return PL_OK;
}

/* One JSON object -> one native frame appended to out. */
static pl_err pl__obj_to_frame(pl__dec *d, json_t *root, pl_bytes *out) {
  uint8_t type;
  ProtobufCMessage *msg;
  pl_err e = pl__obj_to_msg(d, root, &type, &msg);
  if (e != PL_OK)
    return e;
  size_t n = protobuf_c_message_get_packed_size(msg);
  pl_bytes_reserve(out, PL_FRAME_HDR + n);
  pl_frame_put_header(out->p + out->len, type, n);
  protobuf_c_message_pack(msg, out->p + out->len + PL_FRAME_HDR);
  out->len += PL_FRAME_HDR + n;
  return PL_OK;
}

/* Four hex digits at p (n bytes available): their value, or -1. */
static long pl__hex4(const char *p, size_t n) {
  long v = 0;
  for (size_t i = 0; i < 4; i++) {
    int c = i < n ? (unsigned char)p[i] : 0, x = isdigit(c)    ? c - '0'
                                                 : isxdigit(c) ? (tolower(c) - 'a' + 10)
                                                               : -1;
    if (x < 0)
      return -1;
    v = v * 16 + x;
  }
  return v;
}

/* 1 if the escape \uXXXX at t[i] (a surrogate) starts a valid pair. */
static int pl__pair_at(const char *t, size_t n, size_t i) {
  long hi = pl__hex4(t + i + 2, n - i - 2);
  if (hi > 0xDBFF || n - i < 12 || t[i + 6] != '\\' || t[i + 7] != 'u')
    return 0;
  long lo = pl__hex4(t + i + 8, n - i - 8);
  return lo >= 0xDC00 && lo <= 0xDFFF;
}

/* jansson takes a lone surrogate escape (\ud800) for a syntax error, which
 * would end the session (BAD_FRAME) where a native client's lone surrogate
 * (bytes ED A0 80) is a request error (INVALID_ARGUMENT). Each becomes
 * \u0000\uffff, a marker no good string holds (it has a NUL), turned into a
 * surrogate's bytes when the string is packed (pl__raw_string). */
static void pl__mark_surrogates(const char *t, size_t n, pl_bytes *out) {
  size_t from = 0;
  int in_str = 0;
  for (size_t i = 0; i < n; i++) {
    if (t[i] == '"' || !in_str) {
      in_str ^= t[i] == '"';
      continue;
    }
    if (t[i] != '\\' || i + 1 >= n || t[i + 1] != 'u') {
      i += t[i] == '\\'; /* an escaped character, '"' or '\\' included */
      continue;
    }
    long u = pl__hex4(t + i + 2, n - i - 2);
    if (u >= 0xD800 && u <= 0xDFFF && !pl__pair_at(t, n, i)) {
      pl_bytes_append(out, t + from, i - from);
      pl_bytes_append(out, "\\u0000\\uffff", 12);
      from = i + 6;
    }
    i += u >= 0xD800 && u <= 0xDBFF && pl__pair_at(t, n, i) ? 11 : u >= 0 ? 5 : 1;
  }
  if (out->len)
    pl_bytes_append(out, t + from, n - from);
}

json_t *pl_json_load(const char *text, size_t len, size_t flags, json_error_t *err) {
  pl_bytes marked = {0};
  pl__mark_surrogates(text, len, &marked);
  json_t *root = marked.len ? json_loadb((const char *)marked.p, marked.len, flags | JSON_ALLOW_NUL, err)
                            : json_loadb(text, len, flags | JSON_ALLOW_NUL, err);
  pl_bytes_free(&marked);
  return root;
}

pl_err pl_json_to_frame(const char *text, size_t len, pl_bytes *out, char *why, size_t whylen) {
  pl__dec d = {.why = why, .whylen = whylen};
  json_error_t jerr;
  pl_err e = PL_ERR_BAD_FRAME;
  json_t *root = pl_json_load(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    pl__fail(&d, "not JSON: %s (at %d)", jerr.text, jerr.position);
  else
    e = pl__obj_to_frame(&d, root, out);
  json_decref(root);
  pl__arena_free(&d.arena);
  return e;
}

/* A decoded message owns the arena its fields live in. */
struct pl_json_msg {
  pl__arena arena;
};

void pl_json_msg_free(pl_json_msg *owner) {
  if (!owner)
    return;
  pl__arena_free(&owner->arena);
  pl_free(owner);
}

/* One object of root (an array's element, or root itself) to each. */
static pl_err pl__give(json_t *obj, pl_json_each_cb each, void *ud, char *why, size_t whylen) {
  pl__dec d = {.why = why, .whylen = whylen};
  uint8_t type;
  ProtobufCMessage *msg = NULL;
  pl_err e = pl__obj_to_msg(&d, obj, &type, &msg);
  if (e != PL_OK) {
    pl__arena_free(&d.arena);
    return e;
  }
  pl_json_msg *owner = pl_malloc(sizeof *owner);
  owner->arena = d.arena;
  each(type, msg, owner, ud);
  return PL_OK;
}

pl_err pl_json_obj_to_msg(json_t *obj, pl_json_each_cb each, void *ud, char *why, size_t whylen) {
  return pl__give(obj, each, ud, why, whylen);
}

pl_err pl_json_to_msgs(const char *text, size_t len, int many, pl_json_each_cb each, void *ud, char *why,
                       size_t whylen) {
  json_error_t jerr;
  pl_err e = PL_OK;
  json_t *root = pl_json_load(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(why, whylen, "not JSON: %s (at %d)", jerr.text, jerr.position);
    return PL_ERR_BAD_FRAME;
  }
  if (!many || !json_is_array(root))
    e = pl__give(root, each, ud, why, whylen);
  else
    for (size_t i = 0, n = json_array_size(root); i < n && e == PL_OK; i++)
      e = pl__give(json_array_get(root, i), each, ud, why, whylen);
  json_decref(root);
  return e;
}

/* ---- encoding: protobuf -> JSON ------------------------------------------ */

/* Strings on the wire are meant to be UTF-8, but a native client may have
 * sent anything: invalid bytes become U+FFFD so the text frame stays valid. */
static json_t *pl__string(const char *s) {
  size_t n = strlen(s);
  json_t *j = json_stringn(s, n);
  if (j)
    return j;
  pl_bytes b = {0};
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = pl_utf8_seq((const uint8_t *)s + i, n - i, &cp);
    if (k)
      pl_bytes_append(&b, s + i, k);
    else
      pl_bytes_append(&b, "\xef\xbf\xbd", 3);
    i += k ? k : 1;
  }
  j = json_stringn((const char *)b.p, b.len);
  pl_bytes_free(&b);
  return j;
}

static json_t *pl__to_json(const ProtobufCMessage *m);

/* One value, or NULL for a zero one (left out). */
static json_t *pl__out_value(const ProtobufCFieldDescriptor *f, const void *slot, int always) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_UINT32: {
    uint32_t v = *(const uint32_t *)slot;
    return v || always ? json_integer(v) : NULL;
  }
  case PROTOBUF_C_TYPE_UINT64: {
    uint64_t v = *(const uint64_t *)slot;
    if (!v && !always)
      return NULL;
    return pl_json_u64(v); /* a string above 2^53 - 1; both forms are read */
  }
  case PROTOBUF_C_TYPE_BOOL:
    return *(const protobuf_c_boolean *)slot || always ? json_boolean(*(const protobuf_c_boolean *)slot)
                                                       : NULL;
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)slot;
    if (!v && !always)
      return NULL;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
    return ev ? json_string(ev->name) : json_integer(v);
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)slot;
    return s && (*s || always) ? pl__string(s) : NULL;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *b = slot;
    if (!b->len && !always)
      return NULL;
    size_t cap = sodium_base64_ENCODED_LEN(b->len, sodium_base64_VARIANT_ORIGINAL);
    char *s = pl_malloc(cap);
    sodium_bin2base64(s, cap, b->data, b->len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(s);
    pl_free(s);
    return j;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sub = *(ProtobufCMessage *const *)slot;
    return sub ? pl__to_json(sub) : always ? json_object() : NULL;
  }
  default: return NULL;
  }
}

static json_t *pl__to_json(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *md = m->descriptor;
  json_t *o = json_object();
  for (unsigned i = 0; i < md->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &md->fields[i];
    const char *slot = (const char *)m + f->offset;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
      json_t *v = pl__out_value(f, slot, 0);
      if (v)
        json_object_set_new(o, f->name, v);
      continue;
    }
    size_t n = *(const size_t *)((const char *)m + f->quantifier_offset), es = pl__elem_size(f);
    if (!n)
      continue;
    json_t *a = json_array();
    const char *arr = *(char *const *)slot;
    for (size_t k = 0; k < n; k++) {
      json_t *v = pl__out_value(f, arr + k * es, 1);
      json_array_append_new(a, v ? v : json_null());
    }
    json_object_set_new(o, f->name, a);
  }
  return o;
}

pl_err pl_json_from_frame(const uint8_t *frame, size_t len, pl_bytes *out) {
  pl_frame f;
  size_t used;
  if (pl_frame_parse(frame, len, UINT32_MAX, &f, &used) != PL_OK || used != len)
    return PL_ERR_BAD_FRAME;
  const ProtobufCEnumValue *tv =
      protobuf_c_enum_descriptor_get_value(&parley__frame_type__descriptor, f.type);
  ProtobufCMessage *m = tv ? pl_frame_unpack(&f) : NULL;
  if (!m)
    return PL_ERR_BAD_FRAME;
  char type[64];
  size_t k = 0;
  for (const char *s = tv->name + 6; *s && k < sizeof type - 1; s++) /* past FRAME_ */
    type[k++] = (char)tolower((unsigned char)*s);
  type[k] = '\0';
  json_t *o = json_object(), *fields = pl__to_json(m);
  json_object_set_new(o, "type", json_string(type)); /* first, for readers of logs */
  json_object_update(o, fields);
  json_decref(fields);
  size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
  pl_bytes_reserve(out, n);
  out->len += json_dumpb(o, (char *)out->p + out->len, n, JSON_COMPACT);
  json_decref(o);
  protobuf_c_message_free_unpacked(m, NULL);
  return PL_OK;
}
