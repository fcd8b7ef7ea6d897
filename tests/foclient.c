#include "foclient.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parley.pb-c.h"
#include "testlib.h"

enum {
  FC_MESSAGE = PARLEY__FRAME_TYPE__FRAME_MESSAGE,
  FC_ERROR = PARLEY__FRAME_TYPE__FRAME_ERROR,
  FC_ACKED = PARLEY__FRAME_TYPE__FRAME_SEND_ACK,
  FC_PONG = PARLEY__FRAME_TYPE__FRAME_PONG,
};

void fc_dm(char *out, size_t cap, const char *a, const char *b) {
  snprintf(out, cap, "dm:%s:%s", strcmp(a, b) < 0 ? a : b, strcmp(a, b) < 0 ? b : a);
}

static void fc__drop(void *m) {
  if (m)
    protobuf_c_message_free_unpacked(m, NULL);
}

/* Gives up the connection (kept as stale_fd when asked, for a silent node). */
static void fc__lost(fc_client *c, int silent) {
  if (c->fd >= 0) {
    if (silent && c->keep_stale && c->stale_fd < 0)
      c->stale_fd = c->fd;
    else
      close(c->fd);
  }
  c->fd = -1;
  c->lost_at = tl_now_ms();
}

/* Reads one frame; a Message is recorded and acked at once (as an app that
 * shows it does), a SendAck recorded whichever Send it answers. Returns the frame's type (m: the frame) or 0
 * on EOF or silence past timeout_ms. */
static int fc__read(fc_client *c, int timeout_ms, void **m) {
  int t = tl_recv_frame(c->fd, timeout_ms, m);
  if (t == FC_ACKED) {
    const Parley__SendAck *a = *m;
    lg_acked(c->lg, c->user, a->id, a->conv, a->seq);
  }
  if (t == FC_MESSAGE) {
    const Parley__Message *msg = *m;
    lg_shown(c->lg, c->device, msg->conv, msg->seq, msg->from, msg->id, msg->qid);
    if (msg->qid > c->upto) {
      Parley__Ack a = PARLEY__ACK__INIT;
      a.upto = c->upto = msg->qid;
      tl_send_frame(c->fd, PARLEY__FRAME_TYPE__FRAME_ACK, &a); /* a write error shows on the next read */
    }
  }
  return t < 0 ? 0 : t;
}

/* Waits for a frame of type want; Messages (recorded) and others on the
 * way are dropped. Returns it, or NULL on EOF or silence. */
static void *fc__await(fc_client *c, int want) {
  uint64_t until = tl_now_ms() + (uint64_t)c->silence_ms;
  for (;;) {
    int left = (int)(until - tl_now_ms());
    void *m = NULL;
    int t = left > 0 ? fc__read(c, left, &m) : 0;
    if (t == want || t == FC_ERROR || t == 0)
      return t ? m : NULL;
    fc__drop(m);
  }
}

/* Hello and Resume (or Register) on node i: 0, or -1 with nothing open. A
 * refusal other than a bad token (the database in failover, a node shutting
 * down) is worth another try. */
static int fc__open(fc_client *c, int i, int reg) {
  c->fd = tl_connect(c->ports[i]);
  if (c->fd < 0)
    return -1;
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = 1;
  h.kind = PARLEY__CLIENT_KIND__KIND_MOBILE;
  Parley__Resume r = PARLEY__RESUME__INIT;
  r.token = c->token;
  Parley__Register g = PARLEY__REGISTER__INIT;
  g.user = c->user;
  g.password = "secret-pass";
  g.device = "phone";
  void *w = NULL, *ok = NULL;
  int rc = -1;
  if (tl_send_frame(c->fd, PARLEY__FRAME_TYPE__FRAME_HELLO, &h) != 0 ||
      !(w = fc__await(c, PARLEY__FRAME_TYPE__FRAME_WELCOME)) ||
      ((ProtobufCMessage *)w)->descriptor != &parley__welcome__descriptor)
    goto out;
  if (reg ? tl_send_frame(c->fd, PARLEY__FRAME_TYPE__FRAME_REGISTER, &g)
          : tl_send_frame(c->fd, PARLEY__FRAME_TYPE__FRAME_RESUME, &r))
    goto out;
  ok = fc__await(c, PARLEY__FRAME_TYPE__FRAME_AUTH_OK);
  if (ok && ((ProtobufCMessage *)ok)->descriptor == &parley__error__descriptor) {
    int code = (int)((Parley__Error *)ok)->code;
    if (code == PARLEY__ERROR_CODE__ERR_BAD_TOKEN || code == PARLEY__ERROR_CODE__ERR_USER_EXISTS)
      tl__fail(__FILE__, __LINE__, "%s: %s refused: %s", c->device, reg ? "Register" : "Resume",
               ((Parley__Error *)ok)->message);
    goto out;
  }
  if (!ok)
    goto out;
  if (reg)
    snprintf(c->token, sizeof c->token, "%s", ((Parley__AuthOk *)ok)->token);
  c->node = i;
  rc = 0;
out:
  fc__drop(w);
  fc__drop(ok);
  if (rc) {
    close(c->fd);
    c->fd = -1;
  }
  return rc;
}

/* Resumes on the next node that answers (its own first, then the others
 * in turn): what an app behind a load balancer gets. */
static void fc__reconnect(fc_client *c, uint64_t deadline) {
  for (int k = 1;; k++) {
    int i = (c->node + k) % c->nports;
    if (fc__open(c, i, 0) == 0)
      break;
    if (tl_now_ms() > deadline)
      tl__fail(__FILE__, __LINE__, "%s found no node to resume on", c->device);
    if (k % c->nports == 0)
      usleep(100 * 1000); /* a round of every node refused: a client's backoff */
  }
  c->reconnects++;
  uint64_t gap = tl_now_ms() - c->lost_at;
  if (gap > c->worst_gap)
    c->worst_gap = gap;
}

void fc_register(fc_client *c, lg_ledger *lg, const char *user, const int *ports, int nports, int node,
                 int silence_ms) {
  memset(c, 0, sizeof *c);
  snprintf(c->user, sizeof c->user, "%s", user);
  snprintf(c->device, sizeof c->device, "%s/phone", user);
  memcpy(c->ports, ports, (size_t)nports * sizeof *ports);
  c->nports = nports;
  c->silence_ms = silence_ms;
  c->stale_fd = -1;
  c->lg = lg;
  if (fc__open(c, node, 1) != 0)
    tl__fail(__FILE__, __LINE__, "%s could not register on node %d", c->device, node);
}

static int fc__retryable(int code) {
  return code == PARLEY__ERROR_CODE__ERR_INTERNAL || code == PARLEY__ERROR_CODE__ERR_RATE_LIMITED ||
         code == PARLEY__ERROR_CODE__ERR_STORAGE_FULL || code == PARLEY__ERROR_CODE__ERR_SHUTTING_DOWN;
}

/* One try on the current connection: the seq, 0 for "try again" (after
 * failing over when the node is gone). */
static uint64_t fc__try(fc_client *c, const Parley__Send *s, uint64_t deadline) {
  lg_tried(c->lg, c->user, s->id);
  if (tl_send_frame(c->fd, PARLEY__FRAME_TYPE__FRAME_SEND, s) != 0) {
    fc__lost(c, 0);
    return 0;
  }
  for (;;) {
    void *m = fc__await(c, FC_ACKED);
    if (!m) {
      fc__lost(c, 1); /* closed, or silent: an unknown outcome, sent again elsewhere */
      return 0;
    }
    if (((ProtobufCMessage *)m)->descriptor == &parley__send_ack__descriptor) {
      const Parley__SendAck *a = m;
      uint64_t seq = strcmp(a->id, s->id) ? 0 : a->seq; /* recorded by fc__read */
      fc__drop(m);
      if (seq)
        return seq;
      continue;
    }
    const Parley__Error *e = m;
    int code = (int)e->code, mine = !strcmp(e->ref, s->id);
    if (!fc__retryable(code) && mine)
      tl__fail(__FILE__, __LINE__, "%s: Send %s refused with %d (%s)", c->device, s->id, code, e->message);
    int closing = !e->ref[0] &&
                  (code == PARLEY__ERROR_CODE__ERR_SHUTTING_DOWN || code == PARLEY__ERROR_CODE__ERR_INTERNAL);
    fc__drop(m);
    if (!mine && !closing) /* an answer to an earlier Send, or something else */
      continue;
    if (closing) /* the node is closing this connection */
      fc__lost(c, 0);
    if (tl_now_ms() > deadline)
      tl__fail(__FILE__, __LINE__, "%s: Send %s not acked in time (last error %d)", c->device, s->id, code);
    usleep(100 * 1000); /* the client's retry backoff */
    return 0;
  }
}

uint64_t fc_send(fc_client *c, const char *id, const char *to, const char *body, uint64_t deadline) {
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = (char *)id;
  s.to = (char *)to;
  s.body.data = (uint8_t *)body;
  s.body.len = strlen(body);
  s.client_ts = tl_now_ms();
  for (;;) {
    if (c->fd < 0)
      fc__reconnect(c, deadline);
    uint64_t seq = fc__try(c, &s, deadline);
    if (seq)
      return seq;
    if (tl_now_ms() > deadline)
      tl__fail(__FILE__, __LINE__, "%s: Send %s not acked in time", c->device, id);
  }
}

void fc_pump(fc_client *c, int ms) {
  uint64_t deadline = tl_now_ms() + 60000;
  if (c->fd < 0)
    fc__reconnect(c, deadline);
  for (uint64_t until = tl_now_ms() + (uint64_t)ms;;) {
    int left = (int)(until - tl_now_ms());
    void *m = NULL;
    int t = left > 0 ? fc__read(c, left, &m) : 0;
    fc__drop(m);
    if (t == 0)
      break;
  }
  Parley__Ping p = PARLEY__PING__INIT;
  p.client_ts = tl_now_ms();
  void *pong = tl_send_frame(c->fd, PARLEY__FRAME_TYPE__FRAME_PING, &p) == 0 ? fc__await(c, FC_PONG) : NULL;
  int alive = pong && ((ProtobufCMessage *)pong)->descriptor == &parley__pong__descriptor;
  fc__drop(pong);
  if (!alive) {
    fc__lost(c, 1);
    fc__reconnect(c, deadline);
  }
}

void fc_settle(fc_client *const *cs, int n, uint64_t deadline) {
  const lg_ledger *lg = cs[0]->lg;
  while (lg_missing(lg) > 0) {
    if (tl_now_ms() > deadline) {
      char report[2048];
      lg_check(lg, report, sizeof report);
      tl__fail(__FILE__, __LINE__, "%zu acked messages still missing:\n%s", lg_missing(lg), report);
    }
    for (int i = 0; i < n; i++)
      fc_pump(cs[i], 50);
  }
}

void fc_close(fc_client *c) {
  if (c->fd >= 0)
    close(c->fd);
  if (c->stale_fd >= 0)
    close(c->stale_fd);
  c->fd = c->stale_fd = -1;
}
