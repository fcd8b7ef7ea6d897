/* cli_http: the parley CLI's HTTP side (libcurl): uploads to POST /media
 * and downloads from GET /media/ID, with the session token as a Bearer
 * token (docs/protocol.md 13). */
#ifndef CLI_HTTP_H
#define CLI_HTTP_H

#include <stddef.h>

/* A local file could not be read or written (not the server's fault). */
#define CLI_HTTP_LOCAL (-2)

/* Uploads file to base (e.g. "http://127.0.0.1:7780"). On success returns
 * 0, the media id in id (33 bytes) and the server's JSON answer in *json
 * (malloc'd). Otherwise returns the HTTP status (or -1: no answer) with the
 * reason in why. */
int cli_http_upload(const char *base, const char *token, const char *file, char id[33], char **json,
                    char *why, size_t whylen);
/* Downloads media id (its thumbnail with thumb) into the file out. Same
 * returns. */
int cli_http_fetch(const char *base, const char *token, const char *id, int thumb, const char *out, char *why,
                   size_t whylen);

#endif
