#include "pl_json.h"

#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/pl_mem.h"
#include "proto/pl_frame.h"

/* 64-bit integers above this go out as strings (JavaScript numbers are exact
 * up to 2^53 - 1); both forms are read. */
#define PL__MAX_SAFE 9007199254740991ULL

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

static int pl__uint(pl__dec *d, const ProtobufCFieldDescriptor *f, json_t *v, uint64_t max, uint64_t *out) {
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (uint64_t)json_integer_value(v);
  } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 20) {
    const char *s = json_string_value(v);
    uint64_t n = 0;
    for (; *s; s++) {
      if (!isdigit((unsigned char)*s) || n > (UINT64_MAX - 9) / 10)
        return pl__fail(d, "%s: not an unsigned integer", f->name);
      n = n * 10 + (uint64_t)(*s - '0');
    }
    *out = n;
  } else {
    return pl__fail(d, "%s: not an unsigned integer", f->name);
  }
  if (*out > max)
    return pl__fail(d, "%s: out of range", f->name);
  return 0;
}

static int pl__message(pl__dec *d, const ProtobufCMessageDescriptor *md, json_t *obj, void *msg, int depth);

/* Writes one value of field f at slot. */
static int pl__value(pl__dec *d, const ProtobufCFieldDescriptor *f, json_t *v, void *slot, int depth) {
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
    if (json_is_string(v))
      ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, json_string_value(v));
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
      return pl__fail(d, "%s: contains NUL", f->name);
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
      if (pl__value(d, f, v, slot, depth))
        return -1;
      continue;
    }
    if (!json_is_array(v))
      return pl__fail(d, "%s: not an array", f->name);
    size_t n = json_array_size(v), es = pl__elem_size(f);
    char *arr = pl__alloc(&d->arena, n * es);
    for (size_t k = 0; k < n; k++)
      if (pl__value(d, f, json_array_get(v, k), arr + k * es, depth))
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

/* One JSON object -> one native frame appended to out. */
static pl_err pl__obj_to_frame(pl__dec *d, json_t *root, pl_bytes *out) {
  json_t *t = json_object_get(root, "type");
  if (!json_is_object(root) || !json_is_string(t)) {
    pl__fail(d, "not an object with a string \"type\"");
    return PL_ERR_BAD_FRAME;
  }
  int type = pl__type_of(json_string_value(t));
  const ProtobufCMessageDescriptor *md = type > 0 ? pl_frame_descriptor((uint8_t)type) : NULL;
  if (!md) {
    pl__fail(d, "unknown type \"%s\"", json_string_value(t));
    return PL_ERR_UNKNOWN_TYPE;
  }
  void *msg = pl__alloc(&d->arena, md->sizeof_message);
  protobuf_c_message_init(md, msg);
  if (pl__message(d, md, root, msg, 0) != 0)
    return PL_ERR_BAD_FRAME;
  size_t n = protobuf_c_message_get_packed_size(msg);
  pl_bytes_reserve(out, PL_FRAME_HDR + n);
  pl_frame_put_header(out->p + out->len, (uint8_t)type, n);
  protobuf_c_message_pack(msg, out->p + out->len + PL_FRAME_HDR);
  out->len += PL_FRAME_HDR + n;
  return PL_OK;
}

static pl_err pl__to_frames(const char *text, size_t len, int many, pl_bytes *out, char *why, size_t whylen) {
  pl__dec d = {.why = why, .whylen = whylen};
  json_error_t jerr;
  pl_err e = PL_ERR_BAD_FRAME;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    pl__fail(&d, "not JSON: %s (at %d)", jerr.text, jerr.position);
  else if (!many || !json_is_array(root))
    e = pl__obj_to_frame(&d, root, out);
  else
    for (size_t i = 0, n = json_array_size(root); i < n; i++) {
      size_t before = out->len;
      if ((e = pl__obj_to_frame(&d, json_array_get(root, i), out)) != PL_OK) {
        out->len = before; /* the frames before the bad one stand */
        break;
      }
      e = PL_OK;
    }
  if (many && root && json_is_array(root) && json_array_size(root) == 0)
    e = PL_OK;
  json_decref(root);
  pl__arena_free(&d.arena);
  return e;
}

pl_err pl_json_to_frame(const char *text, size_t len, pl_bytes *out, char *why, size_t whylen) {
  return pl__to_frames(text, len, 0, out, why, whylen);
}

pl_err pl_json_to_frames(const char *text, size_t len, pl_bytes *out, char *why, size_t whylen) {
  return pl__to_frames(text, len, 1, out, why, whylen);
}

/* ---- encoding: protobuf -> JSON ------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), 0 if none. */
static size_t pl__utf8_len(const uint8_t *p, size_t n) {
  uint8_t c = p[0], lo = 0x80, hi = 0xBF;
  size_t len;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else
    return 0;
  if (n < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t k = 2; k < len; k++)
    if (p[k] < 0x80 || p[k] > 0xBF)
      return 0;
  return len;
}

/* Strings on the wire are meant to be UTF-8, but a native client may have
 * sent anything: invalid bytes become U+FFFD so the text frame stays valid. */
static json_t *pl__string(const char *s) {
  size_t n = strlen(s);
  json_t *j = json_stringn(s, n);
  if (j)
    return j;
  pl_bytes b = {0};
  for (size_t i = 0; i < n;) {
    size_t k = pl__utf8_len((const uint8_t *)s + i, n - i);
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
    if (v <= PL__MAX_SAFE)
      return json_integer((json_int_t)v);
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_string(buf);
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
