/* pl_frame: the native wire framing, a pure codec over (pointer, length).
 *
 *   u32 length (big endian) | u8 type | payload (length - 1 bytes)
 *
 * length counts the type byte and the payload, so it is at least 1. The
 * payload is the protobuf encoding of the message named by type
 * (parley.FrameType). No I/O and no globals here: it is unit tested and
 * fuzzed on its own. */
#ifndef PL_FRAME_H
#define PL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_buf.h"
#include "../common/pl_err.h"
#include "parley.pb-c.h"

#define PL_FRAME_HDR 5u
#define PL_PROTOCOL_VERSION 1u
/* The newest version the server speaks: 2 positions group entries by
 * (group, seq) and acknowledges each group apart (protocol.md 10.3). */
#define PL_PROTOCOL_VERSION_MAX 2u

typedef struct pl_frame {
  uint8_t type;
  const uint8_t *payload; /* points into the parsed input */
  size_t payload_len;
} pl_frame;

/* Parses one frame from p[0..len). On PL_OK fills *f and *consumed (header +
 * payload). PL_ERR_AGAIN: fewer bytes than a whole frame (nothing consumed).
 * PL_ERR_FRAME_TOO_LARGE: the length prefix exceeds max_frame.
 * PL_ERR_BAD_FRAME: the length prefix is 0. The type is not checked here. */
pl_err pl_frame_parse(const uint8_t *p, size_t len, uint32_t max_frame, pl_frame *f, size_t *consumed);

/* Writes the 5-byte header for a payload of payload_len bytes. */
void pl_frame_put_header(uint8_t *out, uint8_t type, size_t payload_len);

/* The protobuf descriptor for a frame type, or NULL if the type is unknown. */
const ProtobufCMessageDescriptor *pl_frame_descriptor(uint8_t type);

/* 1 if clients may send this type to the server. */
int pl_frame_client_may_send(uint8_t type);

/* Encodes msg as a frame of the given type into a new buffer (refcount 1). */
pl_buf *pl_frame_encode(uint8_t type, const ProtobufCMessage *msg);

/* A group id as frames carry it (Send.group, Message.group, GroupAck.group
 * ...): a decimal number from 1 to 2^63 - 1 (a sharded store's ids carry
 * their bucket in bits 48 and up: 19 digits), no leading zero. Its number,
 * or 0 if g is not one (NULL included). Server and client parse it alike. */
uint64_t pl_frame_gid(const char *g);

/* Encodes msg as a frame appended to out (for single-owner output). */
void pl_frame_append(pl_bytes *out, uint8_t type, const ProtobufCMessage *msg);

/* Decodes a frame's payload with the descriptor of its type. Returns NULL on
 * malformed protobuf or unknown type. Free with protobuf_c_message_free_unpacked(m, NULL). */
ProtobufCMessage *pl_frame_unpack(const pl_frame *f);

#endif
