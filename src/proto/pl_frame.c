#include "pl_frame.h"

#include <stdint.h>
#include <string.h>

#include "../common/pl_mem.h"

pl_err pl_frame_parse(const uint8_t *p, size_t len, uint32_t max_frame, pl_frame *f, size_t *consumed) {
  if (len < 4)
    return PL_ERR_AGAIN;
  uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
  if (n == 0)
    return PL_ERR_BAD_FRAME;
  if (n > max_frame)
    return PL_ERR_FRAME_TOO_LARGE;
  if (len - 4 < n)
    return PL_ERR_AGAIN;
  f->type = p[4];
  f->payload = p + PL_FRAME_HDR;
  f->payload_len = n - 1;
  *consumed = 4 + (size_t)n;
  return PL_OK;
}

void pl_frame_put_header(uint8_t *out, uint8_t type, size_t payload_len) {
  uint32_t n = (uint32_t)payload_len + 1;
  out[0] = (uint8_t)(n >> 24);
  out[1] = (uint8_t)(n >> 16);
  out[2] = (uint8_t)(n >> 8);
  out[3] = (uint8_t)n;
  out[4] = type;
}

const ProtobufCMessageDescriptor *pl_frame_descriptor(uint8_t type) {
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_HELLO: return &parley__hello__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_WELCOME: return &parley__welcome__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_ERROR: return &parley__error__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_REGISTER: return &parley__register__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_LOGIN: return &parley__login__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_RESUME: return &parley__resume__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_AUTH_OK: return &parley__auth_ok__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_LOGOUT: return &parley__logout__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_LOGOUT_OK: return &parley__logout_ok__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_SEND: return &parley__send__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_SEND_ACK: return &parley__send_ack__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_MESSAGE: return &parley__message__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_ACK: return &parley__ack__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_PING: return &parley__ping__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_PONG: return &parley__pong__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_MARK_READ: return &parley__mark_read__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_DONE: return &parley__done__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_RECEIPT: return &parley__receipt__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_READ_SYNC: return &parley__read_sync__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS: return &parley__settings__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS_STATE: return &parley__settings_state__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_UNREAD_GET: return &parley__unread_get__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_UNREAD: return &parley__unread__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_CONTACTS: return &parley__contacts__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_CONTACT_LIST: return &parley__contact_list__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_BLOCK: return &parley__block__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE: return &parley__presence_subscribe__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE: return &parley__presence__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET: return &parley__presence_get__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_TYPING: return &parley__typing__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_TYPING_EVENT: return &parley__typing_event__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE: return &parley__group_create__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE: return &parley__group_update__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_INFO: return &parley__group_info__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET: return &parley__group_list_get__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST: return &parley__group_list__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET: return &parley__group_receipts_get__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS: return &parley__group_receipts__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_PUSH_REGISTER: return &parley__push_register__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_DEVICES: return &parley__devices__descriptor;
  case PARLEY__FRAME_TYPE__FRAME_DEVICE_LIST: return &parley__device_list__descriptor;
  default: return NULL;
  }
}

int pl_frame_client_may_send(uint8_t type) {
  switch (type) {
  case PARLEY__FRAME_TYPE__FRAME_HELLO:
  case PARLEY__FRAME_TYPE__FRAME_REGISTER:
  case PARLEY__FRAME_TYPE__FRAME_LOGIN:
  case PARLEY__FRAME_TYPE__FRAME_RESUME:
  case PARLEY__FRAME_TYPE__FRAME_LOGOUT:
  case PARLEY__FRAME_TYPE__FRAME_SEND:
  case PARLEY__FRAME_TYPE__FRAME_ACK:
  case PARLEY__FRAME_TYPE__FRAME_PING:
  case PARLEY__FRAME_TYPE__FRAME_MARK_READ:
  case PARLEY__FRAME_TYPE__FRAME_SETTINGS:
  case PARLEY__FRAME_TYPE__FRAME_UNREAD_GET:
  case PARLEY__FRAME_TYPE__FRAME_CONTACTS:
  case PARLEY__FRAME_TYPE__FRAME_BLOCK:
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE:
  case PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET:
  case PARLEY__FRAME_TYPE__FRAME_TYPING:
  case PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE:
  case PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE:
  case PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET:
  case PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET:
  case PARLEY__FRAME_TYPE__FRAME_PUSH_REGISTER:
  case PARLEY__FRAME_TYPE__FRAME_DEVICES: return 1;
  default: return 0;
  }
}

pl_buf *pl_frame_encode(uint8_t type, const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  pl_buf *b = pl_buf_new(PL_FRAME_HDR + n);
  pl_frame_put_header(b->data, type, n);
  protobuf_c_message_pack(msg, b->data + PL_FRAME_HDR);
  return b;
}

void pl_frame_append(pl_bytes *out, uint8_t type, const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  pl_bytes_reserve(out, PL_FRAME_HDR + n);
  pl_frame_put_header(out->p + out->len, type, n);
  protobuf_c_message_pack(msg, out->p + out->len + PL_FRAME_HDR);
  out->len += PL_FRAME_HDR + n;
}

ProtobufCMessage *pl_frame_unpack(const pl_frame *f) {
  const ProtobufCMessageDescriptor *d = pl_frame_descriptor(f->type);
  if (!d)
    return NULL;
  return protobuf_c_message_unpack(d, NULL, f->payload_len, f->payload);
}

uint64_t pl_frame_gid(const char *g) {
  uint64_t v = 0;
  size_t n = g ? strlen(g) : 0;
  if (n == 0 || n > 19 || g[0] == '0')
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] < '0' || g[i] > '9')
      return 0;
    v = v * 10 + (uint64_t)(g[i] - '0'); /* 19 digits stay below 2^64 */
  }
  return v <= (uint64_t)INT64_MAX ? v : 0; /* a database's bigint */
}
