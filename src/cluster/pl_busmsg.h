/* pl_busmsg: the messages nodes exchange over the cluster bus (NATS).
 *
 * A pure codec over (pointer, length): no I/O, no allocation on decode.
 * Every message has one layout, so the codec stays small and one fuzzer
 * covers every type:
 *
 *   "PB" u8 version(1) u8 type
 *   u8 node_len, node bytes (1..PL_BUSMSG_MAX_NODE)   the sender's --node
 *   u64 incarnation                                  the sender's start (ms): a restart is a new node
 *   u64 a, u64 b                                     two numbers whose meaning the type gives
 *   u32 nids, nids x u64                             a list of ids (devices, mostly)
 *   u32 plen, plen bytes                             a payload (an encoded client frame, a name)
 *
 * All integers big-endian. A message is exactly this long: trailing bytes
 * are an error. Bus messages come from other nodes of one's own cluster,
 * but a broken or hostile peer on the bus must not crash a node, so every
 * length is checked against the input and a cap. */
#ifndef PL_BUSMSG_H
#define PL_BUSMSG_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"

#define PL_BUSMSG_VERSION 1
#define PL_BUSMSG_MAX_NODE 63
#define PL_BUSMSG_MAX_IDS 65536u
#define PL_BUSMSG_MAX_PAYLOAD (1u << 20)
#define PL_BUSMSG_HEADER 37 /* every fixed field with node_len 0 */

typedef enum pl_busmsg_type {
  PL_BUSMSG_ALIVE = 1,    /* every 2 s: a = interval ms */
  PL_BUSMSG_HINT = 2,     /* ids: devices with something new in their queue */
  PL_BUSMSG_GHINT = 3,    /* a: group with a new history entry (b: its seq) */
  PL_BUSMSG_FRAME = 4,    /* ids: devices; payload: an ephemeral frame (typing) */
  PL_BUSMSG_GFRAME = 5,   /* a: group; ids: devices to skip; payload: a frame */
  PL_BUSMSG_ATTACH = 6,   /* a: device now served by the sender, b: since (unix ms) */
  PL_BUSMSG_DETACH = 7,   /* a: device no longer served by the sender */
  PL_BUSMSG_KICK = 8,     /* a: device whose connection must close (revoked) */
  PL_BUSMSG_ONLINE = 9,   /* a: user with a device on the sender; payload: its name */
  PL_BUSMSG_OFFLINE = 10, /* a: user with no device left on the sender; b: last seen (unix ms) */
  PL_BUSMSG_GCHANGE = 11, /* a: group; b: 1 joined, 0 left; ids: the devices */
  PL_BUSMSG_FORGET = 12,  /* a: user that b may no longer see (block, contact removed) */
  PL_BUSMSG_SEEN = 13,    /* a: user; b: 1 if its last-seen time is visible (a setting) */
  PL_BUSMSG_STATE = 14,   /* ask every node to send ATTACH/ONLINE for what it serves */
  PL_BUSMSG_TYPE_MAX = 14
} pl_busmsg_type;

typedef struct pl_busmsg {
  uint8_t type;
  uint8_t node_len;
  const char *node; /* not NUL-terminated after decode */
  uint64_t incarnation;
  uint64_t a, b;
  uint32_t nids;
  const uint64_t *ids;   /* encode: the ids */
  const uint8_t *ids_be; /* decode: nids big-endian u64s inside the input (pl_busmsg_id) */
  uint32_t plen;
  const uint8_t *payload;
} pl_busmsg;

/* The encoded size of m (0 if a field is over its cap). */
size_t pl_busmsg_size(const pl_busmsg *m);
/* Encodes m into out (cap bytes); *n gets the length. PL_ERR_INVALID_ARGUMENT
 * if a field is over its cap or the type unknown, PL_ERR_NOMEM if cap is short. */
pl_err pl_busmsg_encode(const pl_busmsg *m, uint8_t *out, size_t cap, size_t *n);
/* Decodes p[0..len) into *m, whose pointers then point into p.
 * PL_ERR_BAD_FRAME if it is not exactly one well-formed message. */
pl_err pl_busmsg_decode(const uint8_t *p, size_t len, pl_busmsg *m);
/* The i-th id of a decoded message. */
uint64_t pl_busmsg_id(const pl_busmsg *m, uint32_t i);
/* "ALIVE", "HINT"...; "?" for an unknown type. */
const char *pl_busmsg_type_name(unsigned type);

#endif
