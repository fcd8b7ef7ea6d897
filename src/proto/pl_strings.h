/* pl_strings: every string of a client frame checked on its wire bytes,
 * before the session reads any of it.
 *
 * protobuf-c unpacks a string field into a NUL-terminated char * and drops
 * its length, so an embedded NUL ("alice\0x") is invisible once unpacked:
 * the check must walk the raw payload. It is guided by the message's
 * descriptor, so every string field of every frame (and of its
 * sub-messages) is covered without a line per field; a small table names
 * the fields a person reads and their stricter rule (pl_utf8.h), and the
 * one bytes field that carries text (Send.body). Pure, over (pointer,
 * length); fuzzed (fuzz/fuzz_strings.c). */
#ifndef PL_STRINGS_H
#define PL_STRINGS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"
#include "../common/pl_utf8.h"
#include "parley.pb-c.h"

typedef struct pl_strings_fault {
  char field[48];      /* what the client calls it: "device", "group name", "media.id" */
  pl_utf8_fault why;   /* the first fault found */
  uint32_t cp;         /* its code point (but for PL_UTF8_INVALID) */
  uint64_t bad_fields; /* bit n: top-level field n (< 64) holds a bad string */
} pl_strings_fault;

/* PL_OK: every string of the payload of a frame of this type follows its
 * rule (also for a type with no descriptor: nothing to check).
 * PL_ERR_INVALID_ARGUMENT: one does not; *fault says the first, and which
 * top-level fields hold one (so a caller knows whether field 1, the
 * request's id or ref, can be echoed).
 * PL_ERR_BAD_FRAME: the payload is not well-formed protobuf. */
pl_err pl_strings_check(uint8_t type, const uint8_t *p, size_t len, pl_strings_fault *fault);

/* The same check on a message a gateway decoded itself (pl_conn_msg): its
 * string fields by their C strings, and each length-delimited unknown field
 * by its bytes as the field of that number (where a decoder puts a string
 * that holds a NUL, which a char * cannot carry: pl_json does). Never
 * PL_ERR_BAD_FRAME but for an unknown field that is not protobuf. */
pl_err pl_strings_check_msg(const ProtobufCMessage *m, pl_strings_fault *fault);

/* For what the server sends: every string field of an encoded payload that
 * is not UTF-8 has each byte of its bad sequences replaced by '?', in place
 * (lengths do not change). A row stored before strings were checked (a
 * device name, a client id) then still makes a frame a standard protobuf
 * library decodes. Controls are left as they are. */
void pl_strings_repair(uint8_t type, uint8_t *p, size_t len);

/* "device: not valid UTF-8", "group name: control character U+001B". */
void pl_strings_describe(const pl_strings_fault *fault, char *out, size_t cap);

#endif
