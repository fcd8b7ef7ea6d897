/* pg_media: uploads on PostgreSQL (not yet: an attachment is refused). */
#include "pg_internal.h"

pl_err pl_pg_media_for_send(pl__pg *g, pl_store_req *r, uint8_t **att, size_t *len) {
  (void)g;
  *att = NULL;
  *len = 0;
  r->status = PL_ERR_UNKNOWN_MEDIA;
  return PL_OK;
}

pl_err pl_pg_media_grant(pl__pg *g, const char *media_id, const char *conv) {
  (void)g, (void)media_id, (void)conv;
  return PL_OK;
}
