/* plc_outbox: libparley's ordered list of messages the server has not yet
 * acked. Each entry keeps its encoded Send frame, so a resend after a
 * reconnect is byte for byte the original (same id, same client_ts) and the
 * server's deduplication applies.
 *
 * Entries are written in order, as far as the engine's window allows: the
 * unsent cursor marks where writing resumes. Acks come back by id in any order, so entries are also indexed
 * by a hash of the id. Two entries can share an id (the application may reuse one while the first is still
 * pending) or, very rarely, a hash: only the oldest entry of a key is in the index, the others are "unmapped"
 * and found by a linear scan, which runs only while unmapped entries exist. */
#ifndef PLC_OUTBOX_H
#define PLC_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_map.h"

#define PLC_ID_MAX 64 /* client message id bytes (the protocol's limit) */

typedef enum plc_msg_state {
  PLC_MSG_QUEUED = 0, /* to be written once the session is ready */
  PLC_MSG_SENT,       /* written on the current connection, awaiting the answer */
  PLC_MSG_RETRY,      /* refused with INTERNAL: written again at retry_at */
} plc_msg_state;

typedef struct plc_msg {
  struct plc_msg *prev, *next;
  uint64_t key; /* pl_hash_bytes(id) */
  uint8_t *frame;
  size_t frame_len;
  uint8_t state;     /* plc_msg_state */
  uint8_t mapped;    /* this entry is the index's value for key */
  uint32_t retries;  /* INTERNAL refusals so far (for the backoff) */
  uint64_t retry_at; /* monotonic ms, state PLC_MSG_RETRY */
  char id[PLC_ID_MAX + 1];
} plc_msg;

typedef struct plc_outbox {
  plc_msg *head, *tail; /* oldest first */
  plc_msg *unsent;      /* first entry not yet written on this connection; all after it are unsent too */
  size_t len;
  size_t unmapped; /* entries not in by_id (shared id or hash) */
  pl_map by_id;    /* key -> the oldest entry with that key */
} plc_outbox;

void plc_outbox_init(plc_outbox *ob);
/* Frees every entry. */
void plc_outbox_free(plc_outbox *ob);
/* Appends a new entry for id (1..PLC_ID_MAX bytes) owning frame (a pl_malloc'd
 * block of frame_len bytes). */
plc_msg *plc_outbox_add(plc_outbox *ob, const char *id, uint8_t *frame, size_t frame_len);
/* The oldest entry with this id, or NULL. */
plc_msg *plc_outbox_find(plc_outbox *ob, const char *id);
/* Unlinks m and frees it. */
void plc_outbox_remove(plc_outbox *ob, plc_msg *m);
/* After a disconnect: every entry is unsent again (QUEUED), oldest first. */
void plc_outbox_rewind(plc_outbox *ob);

#endif
