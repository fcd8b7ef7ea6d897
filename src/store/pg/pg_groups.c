/* pg_groups: groups on PostgreSQL (not yet: the ops answer
 * INVALID_ARGUMENT and a device has no group streams). */
#include "pg_internal.h"

pl_err pl_pg_group_send(pl__pg *g, pl_store_req *r, const uint8_t *att, size_t att_len) {
  (void)g, (void)att, (void)att_len;
  r->status = PL_ERR_NOT_MEMBER;
  return PL_OK;
}

pl_err pl_pg_group_fetch(pl__pg *g, pl_store_req *r, uint32_t limit, size_t max_bytes) {
  (void)g, (void)r, (void)limit, (void)max_bytes;
  return PL_OK;
}

pl_err pl_pg_group_ack(pl__pg *g, pl_store_req *r) {
  (void)g, (void)r;
  return PL_OK;
}

pl_err pl_pg_group_mark_read(pl__pg *g, pl_store_req *r) {
  (void)g;
  r->status = PL_ERR_NOT_MEMBER;
  return PL_OK;
}

pl_err pl_pg_group_unread(pl__pg *g, pl_store_req *r) {
  (void)g, (void)r;
  return PL_OK;
}

pl_err pl_pg_group_typing(pl__pg *g, pl_store_req *r) {
  (void)g;
  r->status = PL_ERR_NOT_MEMBER;
  return PL_OK;
}

pl_err pl_pg_group_stats(pl__pg *g, pl_store_counts *c) {
  (void)g, (void)c;
  return PL_OK;
}
