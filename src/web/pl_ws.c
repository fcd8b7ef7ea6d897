#include "pl_ws.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <wslay/wslay.h>

#include "common/pl_mem.h"

typedef struct pl__held {
  struct pl__held *next;
  int text;
  size_t n;
  uint8_t p[];
} pl__held;

struct pl_ws {
  wslay_event_context_ptr ctx;
  const pl_ws_handler *h;
  void *ud;
  pl_bytes in; /* received, not yet taken by wslay */
  size_t in_off;
  pl_bytes out;                /* frames to write */
  pl__held *held, **held_tail; /* messages wslay parsed while paused */
  int paused, failed, in_recv, bad_close;
  int data_frame;               /* the frame being received carries message data */
  size_t msg_bytes, held_bytes; /* of a message wslay is gathering; of held messages */
  uint16_t close_code;          /* a close asked for, queued once the data before it is out */
  char close_reason[124];
};

static ssize_t pl__recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
  (void)flags;
  pl_ws *w = ud;
  size_t have = w->in.len - w->in_off;
  if (w->paused || !have) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = have < len ? have : len;
  memcpy(buf, w->in.p + w->in_off, n);
  w->in_off += n;
  return (ssize_t)n;
}

static ssize_t pl__send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                           void *ud) {
  (void)ctx;
  (void)flags;
  pl_ws *w = ud;
  pl_bytes_append(&w->out, data, len); /* the socket side bounds what a connection queues */
  return (ssize_t)len;
}

static void pl__hold(pl_ws *w, int text, const uint8_t *p, size_t n) {
  pl__held *m = pl_malloc(sizeof *m + n);
  m->next = NULL;
  m->text = text;
  m->n = n;
  if (n)
    memcpy(m->p, p, n);
  w->held_bytes += n;
  *w->held_tail = m;
  w->held_tail = &m->next;
}

static void pl__msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *ud) {
  (void)ctx;
  pl_ws *w = ud;
  if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME)
    return; /* ping, pong and close are wslay's */
  int text = a->opcode == WSLAY_TEXT_FRAME;
  w->msg_bytes = 0;
  if (w->paused || w->held)
    pl__hold(w, text, a->msg, a->msg_length);
  else if (w->h->on_message(w->ud, text, a->msg, a->msg_length))
    w->paused = 1;
}

/* A close body of one byte cannot hold a code (RFC 6455 5.5.1): wslay would
 * answer it as a close without one; it is a protocol error. */
static void pl__frame_start_cb(wslay_event_context_ptr ctx,
                               const struct wslay_event_on_frame_recv_start_arg *a, void *ud) {
  (void)ctx;
  pl_ws *w = ud;
  if (a->opcode == WSLAY_CONNECTION_CLOSE && a->payload_length == 1)
    w->bad_close = 1;
  w->data_frame = !(a->opcode & 8);
}

/* wslay gathers a message's fragments as they arrive: counted, so the
 * server can bound what unfinished messages hold. */
static void pl__chunk_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *a,
                         void *ud) {
  (void)ctx;
  pl_ws *w = ud;
  if (w->data_frame)
    w->msg_bytes += a->data_length;
}

pl_ws *pl_ws_new(size_t max_message, const pl_ws_handler *h, void *ud) {
  static const struct wslay_event_callbacks cbs = {.recv_callback = pl__recv_cb,
                                                   .send_callback = pl__send_cb,
                                                   .on_frame_recv_start_callback = pl__frame_start_cb,
                                                   .on_frame_recv_chunk_callback = pl__chunk_cb,
                                                   .on_msg_recv_callback = pl__msg_cb};
  pl_ws *w = pl_calloc(1, sizeof *w);
  w->h = h;
  w->ud = ud;
  w->held_tail = &w->held;
  if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0) {
    pl_free(w);
    return NULL;
  }
  wslay_event_config_set_max_recv_msg_length(w->ctx, max_message);
  return w;
}

void pl_ws_free(pl_ws *w) {
  if (!w)
    return;
  wslay_event_context_free(w->ctx);
  while (w->held) {
    pl__held *m = w->held;
    w->held = m->next;
    pl_free(m);
  }
  pl_bytes_free(&w->in);
  pl_bytes_free(&w->out);
  pl_free(w);
}

/* Turns queued messages into frame bytes; not while wslay is inside
 * wslay_event_recv (a handler may send from there): pl__pump does it after. */
static void pl__flush(pl_ws *w) {
  if (w->in_recv || w->failed)
    return;
  if (wslay_event_send(w->ctx) != 0)
    w->failed = 1;
  /* wslay sends control frames before queued data: a close asked for after
   * a message (an Error, say) is queued only once that message is out. */
  if (w->close_code && !w->failed && !wslay_event_want_write(w->ctx)) {
    uint16_t code = w->close_code;
    w->close_code = 0;
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)w->close_reason, strlen(w->close_reason));
    if (wslay_event_send(w->ctx) != 0)
      w->failed = 1;
  }
}

/* wslay answers a broken frame header with a close that has no code; RFC
 * 6455 7.4.1 says 1002, so that close is written here instead. */
static void pl__protocol_error(pl_ws *w, int rc) {
  static const uint8_t proto[] = {0x88, 0x02, 0x03, 0xea}, internal[] = {0x88, 0x02, 0x03, 0xf3};
  if (!wslay_event_get_close_sent(w->ctx))
    pl_bytes_append(&w->out, rc == WSLAY_ERR_NOMEM ? internal : proto, 4);
  wslay_event_shutdown_write(w->ctx);
  w->failed = 1;
}

/* Hands wslay what has arrived, then drops what it took. */
static pl_err pl__pump(pl_ws *w) {
  if (!w->paused && !w->failed && wslay_event_get_read_enabled(w->ctx)) {
    w->in_recv = 1;
    int rc = wslay_event_recv(w->ctx);
    w->in_recv = 0;
    if (rc != 0 || w->bad_close)
      pl__protocol_error(w, rc);
  }
  if (w->in_off == w->in.len) {
    pl_bytes_free(&w->in); /* an idle connection keeps no input buffer */
    w->in_off = 0;
  } else if (w->in_off > 4096) {
    pl_bytes_consume(&w->in, w->in_off);
    w->in_off = 0;
  }
  pl__flush(w);
  return w->failed || !wslay_event_get_read_enabled(w->ctx) ? PL_ERR_CLOSED : PL_OK;
}

pl_err pl_ws_input(pl_ws *w, const uint8_t *p, size_t n) {
  if (n)
    pl_bytes_append(&w->in, p, n);
  return pl__pump(w);
}

void pl_ws_pause(pl_ws *w) { w->paused = 1; }

pl_err pl_ws_resume(pl_ws *w) {
  w->paused = 0;
  while (w->held && !w->paused) {
    pl__held *m = w->held;
    w->held = m->next;
    w->held_bytes -= m->n;
    if (!w->held)
      w->held_tail = &w->held;
    if (w->h->on_message(w->ud, m->text, m->p, m->n))
      w->paused = 1;
    pl_free(m);
  }
  return pl__pump(w);
}

void pl_ws_send(pl_ws *w, int text, const uint8_t *p, size_t n) {
  struct wslay_event_msg m = {
      .opcode = text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME, .msg = p, .msg_length = n};
  if (wslay_event_queue_msg(w->ctx, &m) == 0)
    pl__flush(w);
}

void pl_ws_close(pl_ws *w, uint16_t code, const char *reason) {
  if (!w->close_code && !wslay_event_get_close_sent(w->ctx)) {
    w->close_code = code;
    snprintf(w->close_reason, sizeof w->close_reason, "%s", reason ? reason : "");
  }
  wslay_event_shutdown_read(w->ctx); /* nothing more is read once we close */
  pl__flush(w);
}

pl_bytes *pl_ws_output(pl_ws *w) { return &w->out; }

size_t pl_ws_buffered(const pl_ws *w) { return w->in.cap + w->msg_bytes + w->held_bytes; }

int pl_ws_finished(const pl_ws *w) {
  return w->failed || wslay_event_get_close_sent(w->ctx) ||
         (!wslay_event_get_read_enabled(w->ctx) && !wslay_event_want_write(w->ctx) && !w->close_code);
}

uint16_t pl_ws_peer_code(const pl_ws *w) {
  return wslay_event_get_close_received(w->ctx) ? wslay_event_get_status_code_received(w->ctx) : 0;
}

void pl_ws_accept_key(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE], in[64 + sizeof guid];
  unsigned int mdlen = 0;
  if (key_len > 64)
    key_len = 64; /* a real key is 24 characters; the handshake checks it */
  memcpy(in, key, key_len);
  memcpy(in + key_len, guid, sizeof guid - 1);
  EVP_Digest(in, key_len + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL);
  sodium_bin2base64(out, 29, md, 20, sodium_base64_VARIANT_ORIGINAL);
}
