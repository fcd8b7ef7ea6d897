#include "plc_outbox.h"

#include <string.h>

#include "common/pl_mem.h"

void plc_outbox_init(plc_outbox *ob) {
  memset(ob, 0, sizeof *ob);
  pl_map_init(&ob->by_id);
}

void plc_outbox_free(plc_outbox *ob) {
  plc_msg *m = ob->head;
  while (m) {
    plc_msg *next = m->next;
    pl_free(m->frame);
    pl_free(m);
    m = next;
  }
  pl_map_free(&ob->by_id);
  plc_outbox_init(ob);
}

plc_msg *plc_outbox_add(plc_outbox *ob, const char *id, uint8_t *frame, size_t frame_len) {
  size_t idlen = strlen(id);
  plc_msg *m = pl_calloc(1, sizeof *m);
  memcpy(m->id, id, idlen < PLC_ID_MAX ? idlen : PLC_ID_MAX);
  m->key = pl_hash_bytes(m->id, strlen(m->id));
  m->frame = frame;
  m->frame_len = frame_len;
  m->prev = ob->tail;
  if (ob->tail)
    ob->tail->next = m;
  else
    ob->head = m;
  ob->tail = m;
  ob->len++;
  if (!ob->unsent)
    ob->unsent = m;
  if (pl_map_get(&ob->by_id, m->key)) {
    ob->unmapped++;
  } else {
    pl_map_put(&ob->by_id, m->key, m);
    m->mapped = 1;
  }
  return m;
}

plc_msg *plc_outbox_find(plc_outbox *ob, const char *id) {
  plc_msg *m = pl_map_get(&ob->by_id, pl_hash_bytes(id, strlen(id)));
  if (m && strcmp(m->id, id) == 0)
    return m;
  if (!ob->unmapped)
    return NULL;
  for (m = ob->head; m; m = m->next)
    if (strcmp(m->id, id) == 0)
      return m;
  return NULL;
}

void plc_outbox_remove(plc_outbox *ob, plc_msg *m) {
  if (ob->unsent == m)
    ob->unsent = m->next;
  if (m->prev)
    m->prev->next = m->next;
  else
    ob->head = m->next;
  if (m->next)
    m->next->prev = m->prev;
  else
    ob->tail = m->prev;
  ob->len--;
  if (m->mapped) {
    pl_map_del(&ob->by_id, m->key);
    /* Hand the key to the next entry that has it, if any is waiting. */
    for (plc_msg *o = ob->unmapped ? m->next : NULL; o; o = o->next) {
      if (!o->mapped && o->key == m->key) {
        pl_map_put(&ob->by_id, o->key, o);
        o->mapped = 1;
        ob->unmapped--;
        break;
      }
    }
  } else {
    ob->unmapped--;
  }
  pl_free(m->frame);
  pl_free(m);
  if (!ob->len) /* the index only grows: give a burst's worth back */
    pl_map_free(&ob->by_id);
}

void plc_outbox_rewind(plc_outbox *ob) {
  for (plc_msg *m = ob->head; m; m = m->next)
    m->state = PLC_MSG_QUEUED;
  ob->unsent = ob->head;
}
