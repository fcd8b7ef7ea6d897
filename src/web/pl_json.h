/* pl_json: the JSON encoding of native frames (protocol.md 1.2), for
 * WebSocket text messages. A pure codec over (pointer, length), built on the
 * protobuf descriptors, so every frame type has its JSON form without a
 * line written for it:
 *
 *   {"type":"send","id":"m1","to":"bob","body":"aGk=","client_ts":1700000000000}
 *
 * "type" is the FrameType name in lower case without FRAME_; the other keys
 * are the message's field names. The session layer never sees JSON: text in
 * becomes the decoded message the session takes (pl_json_to_msgs, for its
 * decoded entry) or a native frame; a native frame out becomes text. */
#ifndef PL_JSON_H
#define PL_JSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pl_buf.h"
#include "common/pl_err.h"

/* A JSON object -> one native frame (header + payload) appended to out (the
 * fuzzer's round trip; the gateways use pl_json_to_msgs).
 * PL_ERR_BAD_FRAME (not JSON, not an object, a field of the wrong kind; why
 * says which) or PL_ERR_UNKNOWN_TYPE (no such "type"). */
pl_err pl_json_to_frame(const char *text, size_t len, pl_bytes *out, char *why, size_t whylen);

/* A decoded message and the memory its fields live in. */
typedef struct pl_json_msg pl_json_msg;
void pl_json_msg_free(pl_json_msg *owner);

/* Called with each message decoded, of frame type type; owner is the
 * callee's to free (pl_json_msg_free frees msg with it). */
typedef void (*pl_json_each_cb)(uint8_t type, ProtobufCMessage *msg, pl_json_msg *owner, void *ud);

/* A JSON object (or, with many, an array of them) -> the messages they stand
 * for, given to each in order, without encoding them to protobuf. A string
 * with a NUL (from \u0000 or a lone surrogate) travels as an unknown field
 * of its number with its exact bytes, for the session's check of strings
 * (pl_strings_check_msg) to refuse. Errors as pl_json_to_frame; the
 * messages before a bad one have been given. */
pl_err pl_json_to_msgs(const char *text, size_t len, int many, pl_json_each_cb each, void *ud, char *why,
                       size_t whylen);

/* One JSON object already parsed by pl_json_load (or built of strings it
 * would have made) -> the message it stands for, given to each, as
 * pl_json_to_msgs does for one; obj stays the caller's. Saves a gateway
 * that builds requests as objects the dump and parse of their text. */
pl_err pl_json_obj_to_msg(json_t *obj, pl_json_each_cb each, void *ud, char *why, size_t whylen);

/* json_loadb for text from clients: a \u0000 is kept (JSON_ALLOW_NUL) and a
 * lone surrogate escape becomes a marker, so that a bad string reaches the
 * session, which refuses it with INVALID_ARGUMENT as it does a native
 * client's (protocol.md 4, "Strings"), instead of failing the whole parse. */
json_t *pl_json_load(const char *text, size_t len, size_t flags, json_error_t *err);

/* One native frame (header + payload) -> a JSON object appended to out.
 * Zero values are left out, as proto3's JSON mapping does. */
pl_err pl_json_from_frame(const uint8_t *frame, size_t len, pl_bytes *out);

#endif
