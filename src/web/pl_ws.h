/* pl_ws: the server side of one WebSocket connection (RFC 6455) as a codec:
 * bytes in, whole messages out; messages in, bytes out. No sockets here, so
 * the fuzzer and the unit tests drive it exactly as the server does.
 *
 * wslay does the frame work: masking (a client frame without a mask is a
 * protocol error), fragments joined into one message, control frames between
 * fragments, ping -> pong, the closing handshake, close code checks, UTF-8 of
 * text messages and the size limit, each answered with the close code the RFC
 * gives (1002, 1007, 1009). */
#ifndef PL_WS_H
#define PL_WS_H

#include <stddef.h>
#include <stdint.h>

#include "common/pl_buf.h"
#include "common/pl_err.h"

typedef struct pl_ws pl_ws;

typedef struct pl_ws_handler {
  /* One whole message (a text one is valid UTF-8). Return 0 to go on, 1 to
   * pause: no message is delivered until pl_ws_resume. */
  int (*on_message)(void *ud, int text, const uint8_t *p, size_t n);
} pl_ws_handler;

/* Status codes of the close frames the server sends (RFC 6455 7.4.1). */
#define PL_WS_NORMAL 1000
#define PL_WS_GOING_AWAY 1001
#define PL_WS_PROTOCOL_ERROR 1002
#define PL_WS_UNSUPPORTED 1003
#define PL_WS_BAD_DATA 1007
#define PL_WS_POLICY 1008
#define PL_WS_TOO_BIG 1009
#define PL_WS_INTERNAL 1011

pl_ws *pl_ws_new(size_t max_message, const pl_ws_handler *h, void *ud);
void pl_ws_free(pl_ws *w);

/* Takes received bytes (kept while paused). Returns PL_OK, or PL_ERR_CLOSED
 * once nothing more will be read: the closing handshake was done or the
 * peer broke the protocol (the close frame saying so is in the output). */
pl_err pl_ws_input(pl_ws *w, const uint8_t *p, size_t n);
void pl_ws_pause(pl_ws *w);
/* Delivers what arrived while paused; the same results as pl_ws_input. */
pl_err pl_ws_resume(pl_ws *w);

/* Queues one message (text must be UTF-8: the caller makes it). */
void pl_ws_send(pl_ws *w, int text, const uint8_t *p, size_t n);
/* Starts the closing handshake (nothing is sent after it). */
void pl_ws_close(pl_ws *w, uint16_t code, const char *reason);

/* The bytes to write to the socket; the caller consumes what it wrote. */
pl_bytes *pl_ws_output(pl_ws *w);
/* Input bytes held: received but not yet parsed, a message being gathered,
 * and messages held while paused. */
size_t pl_ws_buffered(const pl_ws *w);
/* 1 once the socket can be closed after the output is written. */
int pl_ws_finished(const pl_ws *w);
/* The close code the peer sent (0 if none yet). */
uint16_t pl_ws_peer_code(const pl_ws *w);

/* The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 4.2.2):
 * base64(SHA-1(key + GUID)), 28 characters and a NUL. */
void pl_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
