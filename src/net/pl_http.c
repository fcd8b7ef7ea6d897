#include "pl_http.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "pl_mqttgw.h"
#include "web/pl_json.h"
#include "web/pl_ws.h"

/* A client that pipelines requests without reading the answers is cut here
 * (without limits; with them, at their output budget). */
#define PL__MAX_PENDING_OUT (4u << 20)
/* Pipelined requests wait while this much of the answers waits (a session's
 * connection uses its lag mark instead). */
#define PL__HTTP_MARK (256u << 10)
/* A file body is read this much at a time, as the socket takes it. */
#define PL__FILE_CHUNK (256u << 10)

typedef struct pl_http_conn pl_http_conn;

struct pl_http_listener {
  uv_tcp_t tcp;
  pl_loop *loop;
  const pl_conn_handler *h;
  pl_http_config cfg;
  pl_http_conn *conns;
  size_t count, websockets;
  uint64_t warned_ms; /* last "cannot accept" warning */
  int closing;
};

struct pl_http_conn {
  pl_conn c; /* first: once upgraded, the session sees a pl_conn */
  pl_stream s;
  pl_http_listener *lst;
  pl_httpreq req;     /* HTTP mode */
  pl_ws *ws;          /* WebSocket mode */
  pl_mqttgw *gw;      /* MQTT over WebSocket (/mqtt): binary messages carry its bytes */
  pl_bytes rbuf;      /* input that waits while a request is held */
  pl_http_ex *ex;     /* the held request, if any */
  pl_http_sink *sink; /* the request whose body streams into a sink */
  pl_http_ex *sx;     /* and its exchange */
  int file_fd;        /* a file body being sent (-1: none) */
  uint64_t file_off, file_left;
  uint64_t req_since;
  uint8_t session, json, paused;
  uint8_t spaused; /* the session paused its WebSocket */
  uint8_t cutting; /* the session is answering a cut: its one frame passes */
  uint8_t counted; /* admitted by the limits: leaves them when closed */
  uint8_t spare;   /* let in past the caps: /healthz and /metrics only */
  uint8_t listed;  /* in the listener's list */
  pl_http_conn *prev, *next;
};

struct pl_http_ex {
  pl_task task; /* the reply, run on the connection's loop */
  atomic_int refs;
  pl_loop *loop;
  uint64_t peer;    /* the connection's key in the limits */
  pl_http_conn *hc; /* NULL once the connection is gone (its loop only) */
  int keep, head;
  pl_http_res res;
  char *extra; /* the reply's own copy of res.extra */
};

static pl_http_conn *pl__hc(pl_stream *s) { return (pl_http_conn *)((char *)s - offsetof(pl_http_conn, s)); }

/* ---- output ---------------------------------------------------------- */

static void pl__hard_close(pl_http_conn *hc);

/* What the connection's buffers hold, for the server-wide bound. */
static void pl_http__account(pl_http_conn *hc) {
  pl_conn *c = &hc->c;
  if (c->limits)
    pl_limits_account(c->limits, &c->mem_counted,
                      hc->s.dead
                          ? 0
                          : c->out_bytes + hc->rbuf.cap + hc->req.req.body.cap +
                                (hc->ws ? pl_ws_buffered(hc->ws) : 0) +
                                (hc->gw ? pl_mqttgw_buffered(hc->gw) + pl_mqttgw_held_bytes(hc->gw) : 0));
}

static void pl__update_out(pl_http_conn *hc) {
  hc->c.out_bytes = hc->s.out_bytes + (hc->ws ? pl_ws_output(hc->ws)->len : 0);
  pl_http__account(hc);
}

/* Reading stops until the output drains (pl_http__check_drain restarts it). */
static void pl_http__hold_reading(pl_http_conn *hc) {
  hc->c.out_held = 1;
  hc->c.progress_ms = pl_mono_ms();
  pl_stream_read_stop(&hc->s);
}

static void pl__ws_go(pl_http_conn *hc);
static void pl__unstall(pl_http_conn *hc);

static void pl_http__check_drain(pl_http_conn *hc) {
  pl_conn *c = &hc->c;
  if (hc->session && c->want_drain && c->out_bytes <= c->drain_mark / 2 && !hc->s.closing) {
    c->want_drain = 0;
    c->h->on_drain(c, c->h->ud);
  }
  if (c->out_held && pl_conn_out_drained(c) && !hc->s.closing) {
    c->out_held = 0;
    c->last_rx_ms = pl_mono_ms(); /* its silence was ours */
    if (hc->ws)
      pl__ws_go(hc);
    else if (!hc->ex && hc->file_fd < 0 && !hc->paused)
      pl__unstall(hc);
  }
}

static int pl__done_writing(const pl_http_conn *hc) {
  return hc->file_fd < 0 && pl_stream_idle(&hc->s) && (!hc->ws || !pl_ws_output(hc->ws)->len);
}

static void pl__file_done(pl_http_conn *hc);
static void pl__mark(pl_http_conn *hc) { pl_stream_mark(&hc->s); }

/* The next piece of a file body, once the output before it is out. */
static void pl__file_fill(pl_http_conn *hc) {
  if (hc->file_fd < 0 || !pl_stream_idle(&hc->s))
    return;
  size_t want = hc->file_left < PL__FILE_CHUNK ? (size_t)hc->file_left : PL__FILE_CHUNK;
  if (want) {
    pl_buf *b = pl_buf_new(want);
    ssize_t r = pread(hc->file_fd, b->data, want, (off_t)hc->file_off);
    if (r <= 0) { /* the file shrank or broke: the answer cannot be finished */
      pl_buf_unref(b);
      pl_warn("http: reading a file body: %s", r < 0 ? strerror(errno) : "unexpected end");
      pl__hard_close(hc);
      return;
    }
    b->len = (uint32_t)r;
    pl_stream_write(&hc->s, b);
    pl_buf_unref(b);
    hc->file_off += (uint64_t)r;
    hc->file_left -= (uint64_t)r;
  }
  if (!hc->file_left)
    pl__file_done(hc);
}

/* Before the stream writes: the next piece of a file; WebSocket frames
 * made since (they follow any HTTP bytes). */
static void pl__on_fill(pl_stream *s) {
  pl_http_conn *hc = pl__hc(s);
  pl__file_fill(hc);
  if (s->dead || !hc->ws)
    return;
  pl_bytes *wo = pl_ws_output(hc->ws);
  if (wo->len) {
    pl_stream_write_bytes(s, wo->p, wo->len);
    wo->len = 0;
    if (wo->cap > 65536)
      pl_bytes_free(wo); /* a burst does not pin its buffer */
  }
}

static void pl_http__on_written(pl_stream *s) {
  pl_http_conn *hc = pl__hc(s);
  hc->c.progress_ms = s->progress_ms;
  if (hc->file_fd >= 0 && pl_stream_idle(s))
    pl__mark(hc); /* the next piece */
  pl__update_out(hc);
  pl_http__check_drain(hc);
  /* The answers are out: a FIN, then input is dropped until the peer
   * closes (or the close grace ends). */
  if (s->closing && !s->dead && pl__done_writing(hc) && (!hc->ws || pl_ws_finished(hc->ws)))
    pl_stream_fin(s, 0);
}

/* ---- closing --------------------------------------------------------- */

static void pl__ex_unref(pl_http_ex *x) {
  if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1) {
    if (x->res.has_file) /* a reply nobody took */
      close(x->res.file_fd);
    pl_bytes_free(&x->res.body);
    pl_free(x->extra);
    pl_free(x);
  }
}

static void pl_http__on_closing(pl_stream *s) {
  pl_http_conn *hc = pl__hc(s);
  if (hc->listed && hc->session && hc->c.h->on_closing)
    hc->c.h->on_closing(&hc->c, hc->c.h->ud);
}

static void pl_http__on_closed(pl_stream *s) {
  pl_http_conn *hc = pl__hc(s);
  pl_http_listener *l = hc->lst;
  if (!hc->listed) { /* the accept failed */
    pl_free(hc);
    return;
  }
  if (hc->prev)
    hc->prev->next = hc->next;
  else
    l->conns = hc->next;
  if (hc->next)
    hc->next->prev = hc->prev;
  l->count--;
  if (hc->ws)
    l->websockets--;
  if (hc->session)
    hc->c.h->on_close(&hc->c, hc->c.h->ud);
  pl_http__account(hc);
  if (hc->counted)
    pl_limits_leave(hc->c.limits, hc->c.ip_key);
  if (hc->spare)
    pl_limits_spare_done(hc->c.limits);
  if (hc->ex) { /* a reply still to come finds nobody */
    hc->ex->hc = NULL;
    pl__ex_unref(hc->ex);
  }
  if (hc->sink) /* an upload cut short */
    hc->sink->ops->abort(hc->sink);
  if (hc->sx) {
    hc->sx->hc = NULL;
    pl__ex_unref(hc->sx);
  }
  if (hc->file_fd >= 0)
    close(hc->file_fd);
  pl_bytes_free(&hc->rbuf);
  pl_ws_free(hc->ws);
  pl_mqttgw_free(hc->gw);
  pl_httpreq_free(&hc->req);
  pl_free(hc);
}

static void pl__hard_close(pl_http_conn *hc) { pl_stream_abort(&hc->s); }

/* Stops reading; closes once the output is written. */
static void pl__finish(pl_http_conn *hc) { pl_stream_closing(&hc->s); }

/* ---- the WebSocket transport (what the session sees) ----------------- */

static void pl__ws_close(pl_conn *c);

/* The transport ends a session that does not read (or one past the memory
 * bound): the session answers why, and that one frame is queued whatever
 * the budget; then the WebSocket closes. */
static void pl_http__cut(pl_http_conn *hc, pl_err why) {
  if (hc->s.closing)
    return;
  if (hc->c.limits)
    pl_limits_count_cut(hc->c.limits, why);
  if (hc->session) {
    hc->cutting = 1;
    hc->c.h->on_bad_input(&hc->c, why, hc->c.h->ud);
    hc->cutting = 0;
  }
  if (hc->ws)
    pl__ws_close(&hc->c);
  else
    pl__finish(hc);
}

static void pl__ws_write(pl_conn *c, pl_buf *b) {
  pl_http_conn *hc = (pl_http_conn *)c;
  if (hc->s.closing)
    return;
  if (!hc->cutting && pl_conn_over_budget(c)) {
    pl_http__cut(hc, PL_ERR_SLOW_CONSUMER);
    return;
  }
  if (hc->gw) {
    pl_mqttgw_output(hc->gw, b); /* written as MQTT (pl__ws_gw_write) */
  } else if (hc->json) {
    pl_bytes t = {0};
    if (pl_json_from_frame(b->data, b->len, &t) == PL_OK)
      pl_ws_send(hc->ws, 1, t.p, t.len);
    pl_bytes_free(&t);
  } else {
    pl_ws_send(hc->ws, 0, b->data, b->len);
  }
  pl__update_out(hc);
  pl__mark(hc);
}

static void pl__ws_gw_write(void *ud, const uint8_t *p, size_t n) {
  pl_http_conn *hc = ud;
  if (!hc->s.closing)
    pl_ws_send(hc->ws, 0, p, n);
}

static const pl_mqttgw_io pl__ws_gw_io = {.write = pl__ws_gw_write};

/* MQTT over WebSocket: the gateway handles what is whole. Returns 1 when
 * reading stops (the session's pause, a login, a full output). */
static int pl__ws_gw_run(pl_http_conn *hc) {
  int r = pl_mqttgw_run(hc->gw);
  if (r == PL_MQTTGW_PAUSE && !hc->s.closing) {
    hc->spaused = 1;
    pl_stream_read_stop(&hc->s);
  } else if (r == PL_MQTTGW_HOLD) {
    pl_http__hold_reading(hc);
  }
  return r != PL_MQTTGW_MORE;
}

static void pl__ws_close(pl_conn *c) {
  pl_http_conn *hc = (pl_http_conn *)c;
  if (hc->s.closing)
    return;
  if (hc->gw)
    pl_mqttgw_closing(hc->gw); /* an MQTT 5 client is told why */
  pl_ws_close(hc->ws, PL_WS_NORMAL, "");
  pl__finish(hc);
}

static void pl__ws_pause(pl_conn *c) {
  pl_http_conn *hc = (pl_http_conn *)c;
  if (hc->s.closing)
    return;
  hc->spaused = 1;
  pl_ws_pause(hc->ws);
  pl_stream_read_stop(&hc->s);
}

static void pl__ws_result(pl_http_conn *hc, pl_err e) {
  if (e != PL_OK)
    pl__finish(hc); /* a close frame is on its way, or the peer is gone */
  pl__mark(hc);
}

/* Messages and reading go on, unless the session paused them or the
 * output is over its mark. */
static void pl__ws_go(pl_http_conn *hc) {
  if (hc->s.closing || hc->spaused || hc->c.out_held)
    return;
  if (hc->gw && pl__ws_gw_run(hc)) /* what waits in the gateway first */
    return;
  pl__ws_result(hc, pl_ws_resume(hc->ws));
  if (!hc->s.closing && !hc->spaused && !hc->c.out_held)
    pl_stream_read_start(&hc->s);
}

static void pl__ws_resume(pl_conn *c) {
  pl_http_conn *hc = (pl_http_conn *)c;
  if (hc->s.closing)
    return;
  hc->spaused = 0;
  pl__ws_go(hc);
}

static const pl_transport_ops pl__ws_ops = {
    .name = "ws",
    .kind = PL_CONN_WS,
    .write = pl__ws_write,
    .close = pl__ws_close,
    .pause = pl__ws_pause,
    .resume = pl__ws_resume,
};

static void pl__json_release(ProtobufCMessage *msg, void *ud) {
  (void)msg;
  pl_json_msg_free(ud);
}

/* pl_json_to_msgs' callback: the one message of a text message. */
static void pl__json_take(uint8_t type, ProtobufCMessage *msg, pl_json_msg *owner, void *ud) {
  *(pl_conn_msg *)ud = (pl_conn_msg){.type = type, .msg = msg, .release = pl__json_release, .ud = owner};
}

/* A JSON text message goes to the session as the message it stands for
 * (on_message), not encoded to protobuf only to be decoded again. Returns
 * the session's pause, or -1 for text that is not a frame (answered). */
static int pl__ws_json(pl_http_conn *hc, const uint8_t *p, size_t n) {
  pl_conn *c = &hc->c;
  char why[160] = "";
  pl_conn_msg m = {0};
  pl_err e = pl_json_to_msgs((const char *)p, n, 0, pl__json_take, &m, why, sizeof why);
  if (e != PL_OK) {
    pl_debug("conn %llu: JSON refused: %s", (unsigned long long)c->id, why);
    c->h->on_bad_input(c, e, c->h->ud);
    return -1;
  }
  if (1 + protobuf_c_message_get_packed_size(m.msg) > c->max_frame) { /* as its native frame would be */
    m.release(m.msg, m.ud);
    c->h->on_bad_input(c, PL_ERR_FRAME_TOO_LARGE, c->h->ud);
    return 1;
  }
  return c->h->on_message(c, &m, c->h->ud);
}

/* One WebSocket message = one native frame (protocol.md, WebSocket binding). */
static int pl__ws_message(void *ud, int text, const uint8_t *p, size_t n) {
  pl_http_conn *hc = ud;
  pl_conn *c = &hc->c;
  if (hc->s.closing)
    return 1;
  if (text != hc->json) { /* MQTT too is binary */
    pl_ws_close(hc->ws, PL_WS_UNSUPPORTED,
                text ? "text messages need the JSON subprotocol"
                     : "binary messages need the proto subprotocol");
    pl__finish(hc);
    return 1;
  }
  if (hc->gw) {
    pl_mqttgw_push(hc->gw, p, n);
    pl__update_out(hc);
    return pl__ws_gw_run(hc);
  }
  int pause = 1;
  if (text) {
    if ((pause = pl__ws_json(hc, p, n)) < 0)
      return 1;
  } else {
    pl_frame f;
    size_t used = 0;
    pl_err rc = pl_frame_parse(p, n, c->max_frame, &f, &used);
    if (rc == PL_OK && used != n)
      rc = PL_ERR_BAD_FRAME; /* one frame per message, nothing after it */
    if (rc == PL_ERR_AGAIN)
      rc = PL_ERR_BAD_FRAME;
    if (rc != PL_OK)
      c->h->on_bad_input(c, rc, c->h->ud);
    else
      pause = c->h->on_frame(c, &f, c->h->ud); /* the session copies what it keeps */
  }
  if (pause && !hc->s.closing) { /* the socket waits too: nothing piles up in pl_ws */
    hc->spaused = 1;
    pl_stream_read_stop(&hc->s);
  }
  pl__update_out(hc);
  if (!hc->s.closing && pl_conn_out_full(c)) {
    pl_http__hold_reading(hc);
    pause = 1;
  }
  return pause;
}

static const pl_ws_handler pl__ws_handler = {.on_message = pl__ws_message};

/* ---- HTTP ------------------------------------------------------------ */

const char *pl_http_reason(int status) {
  switch (status) {
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 206: return "Partial Content";
  case 304: return "Not Modified";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

/* The head, then the body (none for HEAD, whose Content-Length is still
 * the body's). A file body is read as the socket drains (pl__file_fill). */
static void pl__respond(pl_http_conn *hc, const pl_http_res *res, int keep_alive, int head_only) {
  char head[1024];
  uint64_t len = res->has_file ? res->file_len : res->static_body ? res->static_len : res->body.len;
  int n = snprintf(
      head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %llu\r\n%s%s\r\n",
      res->status, pl_http_reason(res->status), res->type ? res->type : "text/plain; charset=utf-8",
      (unsigned long long)len, keep_alive ? "" : "Connection: close\r\n", res->extra ? res->extra : "");
  pl_stream_write_bytes(&hc->s, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
  if (res->has_file) {
    if (head_only || !res->file_len) {
      close(res->file_fd);
    } else {
      hc->file_fd = res->file_fd;
      hc->file_off = res->file_off;
      hc->file_left = res->file_len;
    }
  } else if (head_only) {
    /* nothing */
  } else if (res->static_body) {
    pl_stream_write_bytes(&hc->s, res->static_body, res->static_len);
  } else {
    pl_stream_write_bytes(&hc->s, res->body.p, res->body.len);
  }
  pl__mark(hc);
}

/* An error answer in the API's JSON shape; the connection closes after it. */
static void pl__fail(pl_http_conn *hc, int status, const char *extra) {
  pl_http_res res = {.status = status, .type = "application/json", .extra = extra};
  char body[160];
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":%d}\n", pl_http_reason(status), status);
  pl_bytes_append(&res.body, body, (size_t)n);
  pl__respond(hc, &res, 0, 0);
  pl_bytes_free(&res.body);
  pl__finish(hc);
}

/* RFC 6455 4.2.1: what makes a valid opening handshake. */
static int pl__ws_valid(const pl_http_req *q, int *status) {
  *status = 400;
  const char *key = q->hdr[PL_H_WS_KEY], *ver = q->hdr[PL_H_WS_VERSION];
  unsigned char raw[32];
  size_t rawlen = 0;
  if (strcmp(q->method, "GET") || q->http_minor < 1 || !q->hdr[PL_H_HOST] ||
      !pl_http_has_token(q->hdr[PL_H_UPGRADE], "websocket") ||
      !pl_http_has_token(q->hdr[PL_H_CONNECTION], "upgrade") || !key || strlen(key) != 24 ||
      sodium_base642bin(raw, sizeof raw, key, 24, NULL, &rawlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      rawlen != 16)
    return 0;
  if (!ver || strcmp(ver, "13")) {
    *status = 426;
    return 0;
  }
  return 1;
}

/* The first subprotocol offered that we speak: 1 binary, 2 JSON, 0 none
 * (at /mqtt: 3 for "mqtt", the one MQTT over WebSocket names). */
static int pl__pick_proto(const char *offered, int mqtt) {
  if (mqtt)
    return pl_http_has_token(offered, PL_WS_PROTO_MQTT) ? 3 : 0;
  const char *b = offered ? strstr(offered, PL_WS_PROTO_BINARY) : NULL;
  const char *j = offered ? strstr(offered, PL_WS_PROTO_JSON) : NULL;
  b = pl_http_has_token(offered, PL_WS_PROTO_BINARY) ? b : NULL;
  j = pl_http_has_token(offered, PL_WS_PROTO_JSON) ? j : NULL;
  if (b && (!j || b < j))
    return 1;
  return j ? 2 : 0;
}

static void pl__upgrade(pl_http_conn *hc, const uint8_t *rest, size_t n, int mqtt) {
  const pl_http_req *q = &hc->req.req;
  pl_http_listener *l = hc->lst;
  int status;
  if (!pl__ws_valid(q, &status)) {
    pl__fail(hc, status, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
    return;
  }
  char accept[29];
  pl_ws_accept_key(q->hdr[PL_H_WS_KEY], 24, accept);
  int proto = pl__pick_proto(q->hdr[PL_H_WS_PROTOCOL], mqtt);
  char head[256];
  int len = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                     accept,
                     proto == 1   ? "Sec-WebSocket-Protocol: " PL_WS_PROTO_BINARY "\r\n"
                     : proto == 2 ? "Sec-WebSocket-Protocol: " PL_WS_PROTO_JSON "\r\n"
                     : proto == 3 ? "Sec-WebSocket-Protocol: " PL_WS_PROTO_MQTT "\r\n"
                                  : "");
  pl_stream_write_bytes(&hc->s, head, (size_t)len);
  pl_httpreq_free(&hc->req);
  hc->json = proto == 2;
  /* JSON carries bodies in base64 (4/3) and names every field */
  size_t max_msg = hc->json || mqtt ? (size_t)hc->c.max_frame * 2 + 4096 : (size_t)hc->c.max_frame + 4;
  if (mqtt)
    hc->gw = pl_mqttgw_new(&hc->c, &pl__ws_gw_io, hc, 0);
  hc->ws = pl_ws_new(max_msg, &pl__ws_handler, hc);
  l->websockets++;
  hc->c.ops = &pl__ws_ops;
  hc->session = 1;
  hc->c.h->on_open(&hc->c, hc->c.h->ud);
  pl__mark(hc);
  if (!hc->s.closing)
    pl__ws_result(hc, pl_ws_input(hc->ws, rest, n));
}

/* One whole request: answer it (or upgrade). Returns 1 if the connection
 * stays HTTP and may read the next request. */
static void pl__http_input(pl_http_conn *hc, const uint8_t *p, size_t n);

/* Writes an answer; 1 if the connection goes on to the next request now,
 * 0 if it closes or waits for a file body to go out first (pl__file_done). */
static int pl__answer(pl_http_conn *hc, pl_http_res *res, int keep, int head) {
  keep = keep && !hc->lst->closing && !hc->spare;
  pl__respond(hc, res, keep, head);
  size_t budget = hc->c.limits ? pl_limits_cfg(hc->c.limits)->max_output : PL__MAX_PENDING_OUT;
  if (!keep || hc->s.out_bytes > budget) {
    pl__finish(hc);
    return 0;
  }
  pl_httpreq_next(&hc->req);
  return hc->file_fd < 0;
}

/* Reading stops (a held request, a paused upload, a file body going out);
 * what was read past the request waits in rbuf. */
static void pl__stall(pl_http_conn *hc, const uint8_t *rest, size_t n) {
  pl_stream_read_stop(&hc->s);
  if (n)
    pl_bytes_append(&hc->rbuf, rest, n);
}

static void pl__sink_end(pl_http_conn *hc);

/* Reading goes on: first what waited. */
static void pl__unstall(pl_http_conn *hc) {
  if (hc->s.closing || hc->s.dead || hc->c.out_held)
    return;
  pl_stream_read_start(&hc->s);
  if (hc->sink && hc->req.complete) { /* the body ended while the sink was busy */
    pl__sink_end(hc);
    if (hc->ex || hc->s.closing || hc->file_fd >= 0)
      return;
  }
  pl_bytes rest = hc->rbuf;
  memset(&hc->rbuf, 0, sizeof hc->rbuf);
  pl__http_input(hc, rest.p, rest.len);
  pl_bytes_free(&rest);
}

static void pl__file_done(pl_http_conn *hc) {
  close(hc->file_fd);
  hc->file_fd = -1;
  if (!hc->ex && !hc->paused)
    pl__unstall(hc);
}

void pl_http_ex_hold(pl_http_ex *x) { atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed); }

pl_loop *pl_http_ex_loop(const pl_http_ex *x) { return x->loop; }
pl_addr pl_http_ex_peer(const pl_http_ex *x) { return x->hc ? x->hc->c.peer : (pl_addr){0}; }

uint64_t pl_http_ex_peer_key(const pl_http_ex *x) { return x->peer; }

/* On the connection's loop: the held answer goes out, then what waited. */
static void pl__ex_run(pl_task *t) {
  pl_http_ex *x = (pl_http_ex *)t;
  pl_http_conn *hc = x->hc;
  if (hc && !hc->s.dead) {
    hc->ex = NULL;
    x->hc = NULL;
    int go = pl__answer(hc, &x->res, x->keep, x->head);
    x->res.has_file = 0; /* the connection has it */
    if (go && !hc->s.closing)
      pl__unstall(hc);
    pl__ex_unref(x); /* the connection's reference */
  }
  pl__ex_unref(x); /* the route's */
}

void pl_http_ex_release(pl_http_ex *x) { pl__ex_unref(x); }

void pl_http_ex_resume(pl_http_ex *x) {
  pl_http_conn *hc = x->hc;
  if (!hc || hc->s.dead || !hc->paused)
    return;
  hc->paused = 0;
  pl__unstall(hc);
}

void pl_http_ex_reply(pl_http_ex *x, pl_http_res *res) {
  x->res = *res;
  memset(&res->body, 0, sizeof res->body);
  if (res->extra) /* the caller's buffer may be reused before the reply runs */
    x->res.extra = x->extra = pl_strdup(res->extra);
  res->has_file = 0;
  x->task.fn = pl__ex_run;
  if (pl_loop_post(x->loop, &x->task) != PL_OK)
    pl__ex_unref(x); /* the loop is closing: its connections go with it */
}

static pl_http_ex *pl__ex_new(pl_http_conn *hc) {
  const pl_http_req *q = &hc->req.req;
  pl_http_ex *x = pl_calloc(1, sizeof *x);
  atomic_init(&x->refs, 1);
  x->loop = hc->c.loop;
  x->peer = hc->c.ip_key;
  x->hc = hc;
  x->keep = q->keep_alive;
  x->head = !strcmp(q->method, "HEAD");
  return x;
}

/* After a route or a sink's end: answer now, or wait for the held reply.
 * Returns 1 if the next request may be read now. */
static int pl__settle(pl_http_conn *hc, pl_http_ex *x, pl_http_res *res, const uint8_t *rest, size_t n) {
  if (res->status == 0) { /* held: the reply comes through x */
    hc->ex = x;
    pl__stall(hc, rest, n);
    return 2;
  }
  x->hc = NULL;
  int keep = x->keep, head = x->head;
  pl__ex_unref(x);
  int go = pl__answer(hc, res, keep, head);
  pl_bytes_free(&res->body);
  if (!go && !hc->s.closing)
    pl__stall(hc, rest, n); /* a file body goes out first */
  return go;
}

static int pl__request(pl_http_conn *hc, const uint8_t *rest, size_t n) {
  const pl_http_req *q = &hc->req.req;
  char path[PL_HTTP_MAX_URL + 1];
  size_t pl = strcspn(q->url, "?");
  memcpy(path, q->url, pl);
  path[pl] = '\0';
  if (hc->spare && strcmp(path, "/healthz") && strcmp(path, "/metrics")) {
    pl__fail(hc, 503, "Retry-After: 5\r\n"); /* past the caps: only the probes are served */
    return 0;
  }
  if (q->upgrade) {
    if (!strcmp(path, "/ws") || !strcmp(path, "/mqtt"))
      pl__upgrade(hc, rest, n, !strcmp(path, "/mqtt"));
    else
      pl__fail(hc, 404, NULL);
    return 0;
  }
  pl_http_res res = {.status = 404};
  pl_http_ex *x = hc->sx;
  if (x) { /* a streamed body ended */
    pl_http_sink *s = hc->sink;
    hc->sink = NULL;
    hc->sx = NULL;
    s->ops->end(s, q, &res, x);
  } else {
    x = pl__ex_new(hc);
    hc->lst->cfg.route(hc->lst->cfg.route_ud, q, &res, x);
  }
  return pl__settle(hc, x, &res, rest, n);
}

static void pl__sink_end(pl_http_conn *hc) {
  hc->req_since = 0;
  pl__request(hc, NULL, 0); /* what follows is in rbuf already */
}

/* A request's head is in: does a route want its body as a stream? */
static int pl__on_head(void *ud, pl_httpreq *r) {
  pl_http_conn *hc = ud;
  const pl_http_config *cfg = &hc->lst->cfg;
  if (!cfg->open || r->req.upgrade)
    return 0;
  pl_http_ex *x = pl__ex_new(hc);
  uint64_t limit = 0;
  int status = 0;
  pl_http_sink *s = cfg->open(cfg->route_ud, &r->req, x, &limit, &status);
  if (!s) {
    x->hc = NULL;
    pl__ex_unref(x);
    return status;
  }
  hc->sink = s;
  hc->sx = x;
  r->stream = 1;
  r->max_body = limit;
  return 0;
}

/* Hands a streamed body's new bytes to its sink; 0 to go on. */
static int pl__sink_data(pl_http_conn *hc, const uint8_t *rest, size_t n) {
  pl_bytes *b = &hc->req.req.body;
  hc->req_since = pl_mono_ms(); /* a slow upload lives while it moves */
  int rc = hc->sink->ops->data(hc->sink, b->p, b->len);
  b->len = 0;
  if (rc >= 400) {
    pl__fail(hc, rc, NULL);
    return 1;
  }
  if (rc == 1) {
    hc->paused = 1;
    pl__stall(hc, rest, n);
    return 1;
  }
  return 0;
}

static void pl__http_input(pl_http_conn *hc, const uint8_t *p, size_t n) {
  while (n && !hc->s.closing && !hc->ws) {
    if (!hc->req_since)
      hc->req_since = pl_mono_ms();
    int st;
    size_t used = pl_httpreq_feed(&hc->req, p, n, &st);
    p += used;
    n -= used;
    if (hc->sink && hc->req.req.body.len && st < 400 && pl__sink_data(hc, p, n))
      return; /* refused, or paused (a finished body is seen at resume) */
    if (st == 0 && used == 0)
      break;
    if (st >= 400) {
      pl__fail(hc, st, NULL);
      return;
    }
    if (st == 1) {
      hc->req_since = 0;
      if (pl__request(hc, p, n) != 1)
        return; /* closing, upgraded, or held (the rest is kept) */
      pl__update_out(hc);
      if (pl_conn_out_full(&hc->c)) { /* pipelined requests wait for the answers to go */
        pl_http__hold_reading(hc);
        pl__stall(hc, p, n);
        return;
      }
    }
  }
}

/* ---- input ----------------------------------------------------------- */

static void pl_http__on_eof(pl_stream *s) {
  pl_http_conn *hc = pl__hc(s);
  if (!hc->ws)
    pl__finish(hc); /* answers already queued still go out */
  else
    pl__hard_close(hc);
}

static void pl_http__on_data(pl_stream *s, const uint8_t *p, size_t n) {
  pl_http_conn *hc = pl__hc(s);
  if (s->closing)
    return;
  hc->c.last_rx_ms = pl_mono_ms();
  if (hc->ws)
    pl__ws_result(hc, pl_ws_input(hc->ws, p, n));
  else
    pl__http_input(hc, p, n);
  if (s->dead)
    return;
  pl__update_out(hc); /* WebSocket pongs are answers too */
  if (hc->ws && !s->closing && !hc->c.out_held && pl_conn_out_full(&hc->c))
    pl_http__hold_reading(hc);
  /* A big message in the making holds memory as its bytes arrive: none
   * more while all connections together hold too much. */
  if (hc->ws && pl_ws_buffered(hc->ws) > PL_LOOP_RBUF && hc->c.limits && pl_limits_memory_over(hc->c.limits))
    pl_http__cut(hc, PL_ERR_TOO_MANY_CONNECTIONS);
}

static int pl__admit(pl_http_conn *hc, pl_limits *lim, const struct sockaddr *sa);

/* A PROXY v2 header named the client: admitted by its address, or gone. */
static void pl_http__on_peer(pl_stream *s, const struct sockaddr *sa) {
  pl_http_conn *hc = pl__hc(s);
  if (sa)
    pl_addr_set(&hc->c.peer, sa);
  char peer[PL_ADDR_STR];
  pl_debug("http conn %llu: %s through a proxy", (unsigned long long)hc->c.id,
           pl_addr_str(&hc->c.peer, peer));
  if (!pl__admit(hc, hc->c.limits, sa))
    pl__hard_close(hc);
}

static const pl_stream_cbs pl__http_cbs = {
    .on_data = pl_http__on_data,
    .on_eof = pl_http__on_eof,
    .on_fill = pl__on_fill,
    .on_written = pl_http__on_written,
    .on_closing = pl_http__on_closing,
    .on_closed = pl_http__on_closed,
    .on_peer = pl_http__on_peer,
};

/* ---- listener -------------------------------------------------------- */

/* Past the caps, a connection may still ask for /healthz or /metrics while
 * the reserve lasts; 0 if it must go at once. */
static int pl__admit(pl_http_conn *hc, pl_limits *lim, const struct sockaddr *sa) {
  hc->c.limits = lim;
  hc->c.ip_key = sa ? pl_limits_key(sa) : pl_tcp_peer_key(&hc->s.tcp);
  if (!lim)
    return 1;
  hc->counted = pl_limits_admit(lim, hc->c.ip_key) == PL_OK;
  hc->spare = !hc->counted && pl_limits_spare(lim);
  return hc->counted || hc->spare;
}

static void pl_http__on_connection(uv_stream_t *server, int status) {
  pl_http_listener *l = server->data;
  if (status < 0)
    pl_tcp_accept_failed(&l->warned_ms, status);
  if (status < 0 || l->closing)
    return;
  pl_http_conn *hc = pl_calloc(1, sizeof *hc);
  hc->lst = l;
  hc->file_fd = -1;
  const pl_stream_type *type = l->cfg.tcp.type ? l->cfg.tcp.type : &pl_stream_plain;
  if (pl_stream_accept(&hc->s, server, l->loop, type, l->cfg.tcp.type_arg, l->cfg.tcp.proxy, &pl__http_cbs) !=
      0)
    return; /* closing: on_closed frees it */
  /* Behind a proxy the socket's address is the proxy's: admitted once the
   * header says whose the connection is (pl_http__on_peer). */
  if (l->cfg.tcp.proxy)
    hc->c.limits = l->cfg.tcp.limits;
  else if (!pl__admit(hc, l->cfg.tcp.limits, NULL)) {
    pl_stream_abort(&hc->s);
    return;
  }
  hc->c.drain_mark = PL__HTTP_MARK;
  hc->c.h = l->h;
  hc->c.loop = l->loop;
  hc->c.max_frame = l->cfg.tcp.max_frame;
  hc->c.last_rx_ms = pl_mono_ms();
  hc->c.id = pl_conn_new_id();
  pl_httpreq_init(&hc->req, l->cfg.max_head, l->cfg.max_body);
  hc->req.on_head = pl__on_head;
  hc->req.ud = hc;
  pl_addr_of_peer(&hc->c.peer, &hc->s.tcp);
  hc->listed = 1;
  hc->next = l->conns;
  if (l->conns)
    l->conns->prev = hc;
  l->conns = hc;
  l->count++;
  pl_stream_read_start(&hc->s);
}

pl_err pl_http_listen(pl_loop *loop, const pl_http_config *cfg, const pl_conn_handler *h,
                      pl_http_listener **out) {
  pl_http_listener *l = pl_calloc(1, sizeof *l);
  l->loop = loop;
  l->h = h;
  l->cfg = *cfg;
  if (!l->cfg.max_head)
    l->cfg.max_head = 16384;
  if (!l->cfg.max_body)
    l->cfg.max_body = 1u << 20;
  if (!l->cfg.request_timeout_ms)
    l->cfg.request_timeout_ms = 10000;
  if (!l->cfg.keepalive_ms)
    l->cfg.keepalive_ms = 60000;
  l->tcp.data = l;
  pl_err e = pl_tcp_open_listener(loop, &l->tcp, &cfg->tcp, pl_http__on_connection);
  if (e == PL_OK)
    *out = l;
  return e;
}

static void pl_http__listener_closed(uv_handle_t *h) {
  pl_http_listener *l = h->data;
  l->closing = 2;
}

void pl_http_listener_close(pl_http_listener *l) {
  if (l->closing)
    return;
  l->closing = 1;
  uv_close((uv_handle_t *)&l->tcp, pl_http__listener_closed);
}

void pl_http_listener_free(pl_http_listener *l) { pl_free(l); }

void pl_http_abort_all(pl_http_listener *l) {
  for (pl_http_conn *hc = l->conns; hc; hc = hc->next)
    pl__hard_close(hc);
}

void pl_http_close_all(pl_http_listener *l) {
  for (pl_http_conn *hc = l->conns; hc; hc = hc->next) {
    if (hc->s.closing)
      continue;
    if (hc->session && hc->c.h->on_shutdown)
      hc->c.h->on_shutdown(&hc->c, hc->c.h->ud);
    if (hc->ws && !hc->s.closing)
      pl_ws_close(hc->ws, PL_WS_GOING_AWAY, "server shutting down");
    pl__finish(hc);
  }
}

void pl_http_close_sessions(pl_http_listener *l) {
  for (pl_http_conn *hc = l->conns; hc; hc = hc->next) {
    if (hc->s.closing || !hc->ws)
      continue;
    if (hc->session && hc->c.h->on_shutdown)
      hc->c.h->on_shutdown(&hc->c, hc->c.h->ud);
    pl_ws_close(hc->ws, PL_WS_GOING_AWAY, "server going down for maintenance");
    pl__finish(hc);
  }
}

int pl_http_port(const pl_http_listener *l) { return pl_tcp_handle_port(&l->tcp); }

size_t pl_http_count(const pl_http_listener *l, size_t *websockets) {
  if (websockets)
    *websockets = l->websockets;
  return l->count;
}

void pl_http_sweep(pl_http_listener *l, uint64_t now) {
  pl_http_conn *next;
  for (pl_http_conn *hc = l->conns; hc; hc = next) {
    next = hc->next;
    pl_conn *c = &hc->c;
    if (pl_stream_sweep(&hc->s, now) || hc->s.closing) {
      /* cut, or closing within its grace */
    } else if (pl_conn_stuck(c, now)) {
      pl_http__cut(hc, PL_ERR_SLOW_CONSUMER);
    } else if (hc->ws) {
      if (pl_conn_idle_due(c, now))
        c->h->on_idle(c, c->h->ud);
    } else if (hc->req_since && now - hc->req_since > l->cfg.request_timeout_ms) {
      pl__fail(hc, 408, NULL);
    } else if (!hc->req_since && now - c->last_rx_ms > l->cfg.keepalive_ms) {
      pl__finish(hc);
    }
  }
}
