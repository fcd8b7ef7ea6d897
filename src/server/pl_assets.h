/* pl_assets: the browser client's files, compiled into parleyd from web/
 * (cmake/embed_web.cmake). The table ends with an entry whose path is NULL. */
#ifndef PL_ASSETS_H
#define PL_ASSETS_H

#include <stddef.h>

typedef struct pl_asset {
  const char *path; /* "/app.js" */
  const char *type; /* Content-Type */
  const unsigned char *data;
  size_t len;
  const char *etag; /* quoted MD5 of the content */
} pl_asset;

extern const pl_asset pl_assets[];

#endif
