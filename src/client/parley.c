/* libparley's public API: handle lifetime, the blocking calls (loops of
 * engine passes, see plc_engine.c), sending and accessors. */
#include <sodium.h>
#include <string.h>

#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "plc_internal.h"
#include "proto/pl_frame.h"

#define PLC_RANDOM_ID_BYTES 16

const char *parley_strerror(int code) {
  switch (code) {
  case PARLEY_OK: return "success";
  case PARLEY_E_BAD_FRAME: return "malformed frame";
  case PARLEY_E_FRAME_TOO_LARGE: return "frame too large";
  case PARLEY_E_UNKNOWN_TYPE: return "unknown frame type";
  case PARLEY_E_UNSUPPORTED_VERSION: return "unsupported protocol version";
  case PARLEY_E_HELLO_REQUIRED: return "first frame must be hello";
  case PARLEY_E_AUTH_REQUIRED: return "authentication required";
  case PARLEY_E_HEARTBEAT_TIMEOUT: return "heartbeat timeout";
  case PARLEY_E_SHUTTING_DOWN: return "server shutting down";
  case PARLEY_E_SLOW_CONSUMER: return "client does not read fast enough";
  case PARLEY_E_BAD_CREDENTIALS: return "unknown user or wrong password";
  case PARLEY_E_USER_EXISTS: return "user name already taken";
  case PARLEY_E_BAD_TOKEN: return "unknown, revoked or expired token";
  case PARLEY_E_INVALID_ARGUMENT: return "invalid argument";
  case PARLEY_E_UNKNOWN_PEER: return "unknown peer";
  case PARLEY_E_MESSAGE_TOO_LARGE: return "message too large";
  case PARLEY_E_TOO_MANY_DEVICES: return "too many devices";
  case PARLEY_E_QUEUE_FULL: return "recipient queue full";
  case PARLEY_E_ALREADY_AUTHENTICATED: return "already authenticated";
  case PARLEY_E_INTERNAL: return "internal server error";
  case PARLEY_E_BLOCKED: return "the recipient does not accept messages from you";
  case PARLEY_E_FILTERED: return "the message contains a word the server refuses";
  case PARLEY_E_NOT_MEMBER: return "no such group, or you are not a member";
  case PARLEY_E_FORBIDDEN: return "your role in the group does not allow this";
  case PARLEY_E_GROUP_FULL: return "the group is at its member limit";
  case PARLEY_E_UNKNOWN_MEDIA: return "no such media, or you may not use it";
  case PARLEY_E_RATE_LIMITED: return "too many attempts: try again later";
  case PARLEY_E_TOO_MANY_CONNECTIONS: return "too many connections";
  case PARLEY_E_NOT_ALLOWED: return "the user's privacy settings do not allow this";
  case PARLEY_E_STORAGE_FULL: return "the server's disk is full: try again later";
  case PARLEY_E_INVITE_REQUIRED: return "this server needs an invite code to sign up";
  case PARLEY_E_INVITE_INVALID: return "unknown, used up or expired invite code";
  case PARLEY_E_REGISTRATION_CLOSED: return "sign-up is closed on this server";
  case PARLEY_E_ACCOUNT_DISABLED: return "this account is disabled";
  case PARLEY_E_MAINTENANCE: return "the server is down for maintenance";
  case PARLEY_E_NO_TARGET: return "no such message in the conversation";
  case PARLEY_E_WINDOW_CLOSED: return "it is too late to change that message";
  case PARLEY_E_NOT_AUTHOR: return "only its sender may change that message";
  case PARLEY_E_CONNECT: return "cannot reach the server";
  case PARLEY_E_TIMEOUT: return "no answer in time";
  case PARLEY_E_CLOSED: return "connection closed";
  case PARLEY_E_PROTOCOL: return "unexpected data from the server";
  case PARLEY_E_STATE: return "call not valid in this state";
  case PARLEY_E_ARG: return "bad argument";
  case PARLEY_E_TLS: return "TLS failed";
  default: return code > -100 && code < 0 ? "server error" : "unknown error";
  }
}

/* ---- lifetime ----------------------------------------------------------- */

static int plc__flag(int v) { return v >= 0; } /* 0 = default (on), -1 = off */
static int plc__or(int v, int dflt) { return v > 0 ? v : dflt; }

parley *parley_new(const parley_options *opt) {
  if (sodium_init() < 0)
    return NULL;
  parley_options o;
  memset(&o, 0, sizeof o);
  if (opt)
    o = *opt;
  parley *c = pl_calloc(1, sizeof *c);
  c->host = pl_strdup(o.host && *o.host ? o.host : "127.0.0.1");
  c->port = o.port > 0 && o.port < 65536 ? o.port : 7700;
  c->kind = o.kind >= PARLEY_KIND_MOBILE && o.kind <= PARLEY_KIND_BOT ? o.kind : PARLEY_KIND_BOT;
  c->client_name = pl_strdup(o.client_name ? o.client_name : "libparley/" PLC_VERSION);
  c->auto_ack = plc__flag(o.auto_ack);
  c->auto_reconnect = plc__flag(o.auto_reconnect);
  c->reconnect_min_ms = plc__or(o.reconnect_min_ms, 200);
  c->reconnect_max_ms = plc__or(o.reconnect_max_ms, 10000);
  if (c->reconnect_max_ms < c->reconnect_min_ms)
    c->reconnect_max_ms = c->reconnect_min_ms;
  c->request_timeout_ms = plc__or(o.request_timeout_ms, 10000);
  c->proto = o.protocol == 1 ? 1u : PL_PROTOCOL_VERSION_MAX;
  if (o.tls) {
    c->tls_name = pl_strdup(o.tls_name && *o.tls_name ? o.tls_name : c->host);
    c->tls_ctx = plc_sock_tls_ctx(o.ca_file, c->tls_setup_err, sizeof c->tls_setup_err);
  }
  c->cb = o.cb;
  c->ud = o.ud;
  c->heartbeat_ms = 30000;
  plc_sock_init(&c->sock);
  plc_outbox_init(&c->ob);
  return c;
}

void parley_free(parley *c) {
  if (!c)
    return;
  plc_linger(c);
  plc_sock_close(&c->sock);
  plc_outbox_free(&c->ob);
  pl_bytes_free(&c->rbuf);
  pl_bytes_free(&c->wbuf);
  pl_free(c->host);
  SSL_CTX_free(c->tls_ctx);
  pl_free(c->tls_name);
  pl_free(c->client_name);
  pl_free(c->token);
  pl_free(c->user);
  pl_free(c->device);
  pl_free(c->gm);
  if (c->req_answer)
    protobuf_c_message_free_unpacked(c->req_answer, NULL);
  pl_free(c->wait_conv);
  pl_free(c);
}

/* ---- blocking calls ----------------------------------------------------- */

/* Runs the engine until the pending operation ends. The engine's phase
 * deadline (request_timeout_ms) ends it; the outer bound is only a guard. */
static int plc__wait_op(parley *c) {
  uint64_t guard = pl_mono_ms() + (uint64_t)c->request_timeout_ms + 1000;
  while (c->op != PLC_OP_NONE) {
    if (pl_mono_ms() >= guard) {
      plc_drop(c, PARLEY_E_TIMEOUT, 0);
      break;
    }
    plc_pass(c, 1000);
  }
  return c->op_err;
}

int parley_connect(parley *c) {
  if (!c)
    return PARLEY_E_ARG;
  if (c->depth || c->phase != PLC_IDLE)
    return PARLEY_E_STATE;
  c->dead = 0;
  c->resuming = 0;
  c->attempts = 0;
  c->op = PLC_OP_CONNECT;
  if (plc_start(c) != PARLEY_OK)
    return c->op_err;
  return plc__wait_op(c);
}

static int plc__auth(parley *c, uint8_t type, const ProtobufCMessage *msg) {
  if (c->depth || c->phase != PLC_OPEN)
    return PARLEY_E_STATE;
  plc_write(c, type, msg);
  c->phase = PLC_AUTHING;
  c->phase_deadline = pl_mono_ms() + (uint64_t)c->request_timeout_ms;
  c->resuming = 0;
  c->op = PLC_OP_AUTH;
  return plc__wait_op(c);
}

static char *plc__str(const char *s) { return (char *)(s ? s : ""); }

int parley_register_invite(parley *c, const char *user, const char *password, const char *device,
                           const char *invite) {
  if (!c || !user || !password)
    return PARLEY_E_ARG;
  Parley__Register r = PARLEY__REGISTER__INIT;
  r.user = plc__str(user);
  r.password = plc__str(password);
  r.device = plc__str(device);
  r.invite = plc__str(invite);
  return plc__auth(c, PARLEY__FRAME_TYPE__FRAME_REGISTER, &r.base);
}

int parley_register(parley *c, const char *user, const char *password, const char *device) {
  return parley_register_invite(c, user, password, device, NULL);
}

int parley_login(parley *c, const char *user, const char *password, const char *device) {
  if (!c || !user || !password)
    return PARLEY_E_ARG;
  Parley__Login r = PARLEY__LOGIN__INIT;
  r.user = plc__str(user);
  r.password = plc__str(password);
  r.device = plc__str(device);
  return plc__auth(c, PARLEY__FRAME_TYPE__FRAME_LOGIN, &r.base);
}

int parley_resume(parley *c, const char *token) {
  if (!c || !token || !*token)
    return PARLEY_E_ARG;
  Parley__Resume r = PARLEY__RESUME__INIT;
  r.token = plc__str(token);
  return plc__auth(c, PARLEY__FRAME_TYPE__FRAME_RESUME, &r.base);
}

int parley_logout(parley *c) {
  if (!c)
    return PARLEY_E_ARG;
  if (c->depth || c->phase != PLC_READY)
    return PARLEY_E_STATE;
  Parley__Logout m = PARLEY__LOGOUT__INIT;
  plc_write(c, PARLEY__FRAME_TYPE__FRAME_LOGOUT, &m.base);
  c->phase = PLC_LOGOUT;
  c->phase_deadline = pl_mono_ms() + (uint64_t)c->request_timeout_ms;
  c->op = PLC_OP_LOGOUT;
  return plc__wait_op(c);
}

/* ---- accessors ---------------------------------------------------------- */

const char *parley_token(const parley *c) { return c ? c->token : NULL; }
const char *parley_user(const parley *c) { return c ? c->user : NULL; }
const char *parley_device(const parley *c) { return c ? c->device : NULL; }
uint32_t parley_retry_after_ms(const parley *c) { return c ? c->retry_after_ms : 0; }
parley_state parley_get_state(const parley *c) { return c ? plc_state(c) : PARLEY_STATE_DISCONNECTED; }
size_t parley_outbox_len(const parley *c) { return c ? c->ob.len : 0; }
int64_t parley_clock_offset(const parley *c) { return c ? c->clock_offset : 0; }
uint32_t parley_heartbeat_ms(const parley *c) { return c ? c->heartbeat_ms : 0; }
int parley_fd(const parley *c) { return c ? c->sock.fd : -1; }

const char *parley_tls_error(const parley *c) {
  if (!c || !c->tls_name)
    return "";
  return c->tls_ctx ? c->sock.tls_err : c->tls_setup_err;
}

uint64_t parley_server_now(const parley *c) {
  int64_t now = (int64_t)pl_now_ms() + (c ? c->clock_offset : 0);
  return now > 0 ? (uint64_t)now : 0;
}

/* ---- sending and receiving ---------------------------------------------- */

static void plc__random_id(char out[PLC_ID_MAX + 1]) {
  unsigned char rnd[PLC_RANDOM_ID_BYTES];
  randombytes_buf(rnd, sizeof rnd);
  sodium_bin2hex(out, PLC_ID_MAX + 1, rnd, sizeof rnd);
}

/* To peer, or to a group when group is set (then peer is NULL). */
static int plc__send(parley *c, const char *id, const char *peer, const char *group, const char *media_id,
                     const parley_act *act, const void *body, size_t len, char *id_out, plc_msg **out) {
  const char *to = group ? group : peer;
  if (!c || !to || !*to || (len && !body))
    return PARLEY_E_ARG;
  char idbuf[PLC_ID_MAX + 1];
  if (id) {
    size_t n = strlen(id);
    if (n == 0 || n > PLC_ID_MAX)
      return PARLEY_E_ARG;
    memcpy(idbuf, id, n + 1);
  } else {
    plc__random_id(idbuf);
  }
  if (!c->token)
    return PARLEY_E_STATE; /* never authenticated, logged out, or the token was refused */
  if (c->max_message && len > c->max_message)
    return PARLEY_E_MESSAGE_TOO_LARGE;
  Parley__Send s = PARLEY__SEND__INIT;
  s.id = idbuf;
  s.to = (char *)(group ? "" : peer);
  s.group = (char *)(group ? group : "");
  s.body.data = (uint8_t *)body;
  s.body.len = len;
  s.client_ts = parley_server_now(c);
  Parley__Media media = PARLEY__MEDIA__INIT;
  if (media_id) {
    media.id = (char *)media_id;
    s.media = &media;
  }
  Parley__Act pa = PARLEY__ACT__INIT;
  if (act) {
    pa.kind = (Parley__ActKind)act->kind;
    pa.target = act->target;
    pa.reply_to = act->reply_to;
    pa.forwarded = act->forwarded != 0;
    pa.timer_s = act->timer_s;
    pa.target_conv = (char *)(act->target_conv ? act->target_conv : "");
    s.act = &pa;
  }
  pl_bytes frame = {0};
  pl_frame_append(&frame, PARLEY__FRAME_TYPE__FRAME_SEND, &s.base);
  plc_msg *m = plc_outbox_add(&c->ob, idbuf, frame.p, frame.len);
  plc_pump(c);
  if (id_out)
    memcpy(id_out, idbuf, strlen(idbuf) + 1);
  if (out)
    *out = m;
  return PARLEY_OK;
}

int parley_send(parley *c, const char *id, const char *peer, const void *body, size_t len, char *id_out) {
  return plc__send(c, id, peer, NULL, NULL, NULL, body, len, id_out, NULL);
}

int parley_send_group(parley *c, const char *id, const char *group, const void *body, size_t len,
                      char *id_out) {
  return plc__send(c, id, NULL, group ? group : "", NULL, NULL, body, len, id_out, NULL);
}

static int plc__send_wait(parley *c, const char *id, const char *peer, const char *group,
                          const char *media_id, const parley_act *act, const void *body, size_t len,
                          parley_send_ack *ack, int timeout_ms) {
  if (c && c->depth)
    return PARLEY_E_STATE;
  plc_msg *m;
  int rc = plc__send(c, id, peer, group, media_id, act, body, len, NULL, &m);
  if (rc != PARLEY_OK)
    return rc;
  uint64_t deadline = pl_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : c->request_timeout_ms);
  c->wait_msg = m;
  c->wait_done = 0;
  rc = PARLEY_E_TIMEOUT;
  for (uint64_t now = pl_mono_ms(); !c->wait_done && now < deadline; now = pl_mono_ms()) {
    int down = plc_pass(c, (int)(deadline - now));
    if (down && !c->wait_done) {
      rc = down;
      break;
    }
  }
  if (!c->wait_done) {
    c->wait_msg = NULL; /* stays in the outbox; its outcome goes to the callbacks */
    return rc;
  }
  if (c->wait_err)
    return c->wait_err;
  if (ack)
    *ack = c->wait_ack;
  return PARLEY_OK;
}

int parley_send_wait(parley *c, const char *id, const char *peer, const void *body, size_t len,
                     parley_send_ack *ack, int timeout_ms) {
  return plc__send_wait(c, id, peer, NULL, NULL, NULL, body, len, ack, timeout_ms);
}

int parley_send_media_wait(parley *c, const char *id, const char *peer, const char *group,
                           const char *media_id, const void *caption, size_t len, parley_send_ack *ack,
                           int timeout_ms) {
  if (!media_id || !*media_id)
    return PARLEY_E_ARG;
  return plc__send_wait(c, id, peer,
                        peer    ? NULL
                        : group ? group
                                : "",
                        media_id, NULL, caption, len, ack, timeout_ms);
}

int parley_send_group_wait(parley *c, const char *id, const char *group, const void *body, size_t len,
                           parley_send_ack *ack, int timeout_ms) {
  return plc__send_wait(c, id, NULL, group ? group : "", NULL, NULL, body, len, ack, timeout_ms);
}

int parley_send_act(parley *c, const char *id, const char *peer, const char *group, const parley_act *act,
                    const void *body, size_t len, char *id_out) {
  if (!act || act->vanish_at)
    return PARLEY_E_ARG;
  return plc__send(c, id, peer, peer ? NULL : group ? group : "", NULL, act, body, len, id_out, NULL);
}

int parley_send_act_wait(parley *c, const char *id, const char *peer, const char *group,
                         const parley_act *act, const void *body, size_t len, parley_send_ack *ack,
                         int timeout_ms) {
  if (!act || act->vanish_at)
    return PARLEY_E_ARG;
  return plc__send_wait(c, id, peer, peer ? NULL : group ? group : "", NULL, act, body, len, ack, timeout_ms);
}

int parley_forward(parley *c, const char *id, const char *peer, const char *group, const char *media_id,
                   const void *body, size_t len, char *id_out) {
  parley_act act = {.kind = PARLEY_ACT_NONE, .forwarded = 1};
  return plc__send(c, id, peer, peer ? NULL : group ? group : "", media_id && *media_id ? media_id : NULL, &act,
                   body, len, id_out, NULL);
}

/* ---- requests with a ref ---------------------------------------------- */

/* Writes a request frame whose ref field the caller set to c->req_ref, and
 * runs the engine until its answer (Done, Error, or an answer frame kept in
 * *answer, which the caller frees). */
static int plc__request(parley *c, uint8_t type, const ProtobufCMessage *msg, ProtobufCMessage **answer,
                        int timeout_ms) {
  if (answer)
    *answer = NULL;
  uint64_t deadline = pl_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : c->request_timeout_ms);
  c->req_done = 0;
  c->req_answer = NULL;
  plc_write(c, type, msg);
  int rc = PARLEY_E_TIMEOUT;
  for (uint64_t now = pl_mono_ms(); !c->req_done && now < deadline; now = pl_mono_ms()) {
    int down = plc_pass(c, (int)(deadline - now));
    if (down && !c->req_done) {
      rc = down;
      break;
    }
  }
  if (!c->req_done) {
    c->req_ref[0] = 0; /* a late answer is ignored */
    return c->phase < PLC_READY && rc == PARLEY_E_TIMEOUT ? PARLEY_E_CLOSED : rc;
  }
  if (answer)
    *answer = c->req_answer;
  else if (c->req_answer)
    protobuf_c_message_free_unpacked(c->req_answer, NULL);
  c->req_answer = NULL;
  return c->req_err;
}

/* A fresh ref for the next request; PARLEY_E_STATE if one cannot run now. */
static int plc__req_begin(parley *c) {
  if (!c)
    return PARLEY_E_ARG;
  if (c->depth || c->phase != PLC_READY)
    return PARLEY_E_STATE;
  /* '~' cannot start a ref libparley makes for messages: no mix-up with ids. */
  snprintf(c->req_ref, sizeof c->req_ref, "~req-%u", ++c->req_seq);
  return PARLEY_OK;
}

int parley_mark_read_wait(parley *c, const char *peer, uint64_t seq, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !peer)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__MarkRead m = PARLEY__MARK_READ__INIT;
  m.ref = c->req_ref;
  m.peer = (char *)peer;
  m.seq = seq;
  return plc__request(c, PARLEY__FRAME_TYPE__FRAME_MARK_READ, &m.base, NULL, timeout_ms);
}

void parley_free_names(char **names) {
  for (size_t i = 0; names && names[i]; i++)
    pl_free(names[i]);
  pl_free(names);
}

int parley_contacts_wait(parley *c, int op, const char *user, char ***names, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || op < 0 || op > 2 || (op && !user))
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__Contacts m = PARLEY__CONTACTS__INIT;
  ProtobufCMessage *ans;
  m.ref = c->req_ref;
  m.op = (Parley__ContactOp)op;
  m.user = (char *)(user ? user : "");
  rc = plc__request(c, PARLEY__FRAME_TYPE__FRAME_CONTACTS, &m.base, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans && names) {
    Parley__ContactList *l = (Parley__ContactList *)ans;
    *names = pl_calloc(l->n_users + 1, sizeof **names);
    for (size_t i = 0; i < l->n_users; i++)
      (*names)[i] = pl_strdup(l->users[i]);
  }
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

int parley_devices_wait(parley *c, int op, const char *device, parley_device_info **out, size_t *n,
                        int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || op < 0 || op > 2 || (op == PARLEY_DEVICES_REVOKE && !device))
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__Devices m = PARLEY__DEVICES__INIT;
  ProtobufCMessage *ans;
  m.ref = c->req_ref;
  m.op = (Parley__DevicesOp)op;
  m.device = (char *)(device ? device : "");
  rc = plc__request(c, PARLEY__FRAME_TYPE__FRAME_DEVICES, &m.base, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans && out && n) {
    const Parley__DeviceList *l = (const Parley__DeviceList *)ans;
    *out = pl_calloc(l->n_devices ? l->n_devices : 1, sizeof **out);
    *n = l->n_devices;
    for (size_t i = 0; i < l->n_devices; i++) {
      const Parley__DeviceInfo *d = l->devices[i];
      (*out)[i] = (parley_device_info){.name = pl_strdup(d->name),
                                       .id = d->device_id,
                                       .created = d->created,
                                       .last_used = d->last_used,
                                       .current = d->current,
                                       .online = d->online};
    }
  }
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

void parley_devices_free(parley_device_info *d, size_t n) {
  for (size_t i = 0; d && i < n; i++)
    pl_free(d[i].name);
  pl_free(d);
}

int parley_settings_wait(parley *c, const parley_settings *change, parley_settings *out, int timeout_ms) {
  static const parley_settings none;
  const parley_settings *ch = change ? change : &none;
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || ch->read_receipts < 0 || ch->read_receipts > PARLEY_READ_RECEIPTS_OFF ||
      ch->last_seen < 0 || ch->last_seen > PARLEY_LAST_SEEN_NOBODY || ch->group_add < 0 ||
      ch->group_add > PARLEY_GROUP_ADD_NOBODY)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__Settings m = PARLEY__SETTINGS__INIT;
  ProtobufCMessage *ans;
  m.ref = c->req_ref;
  m.read_receipts = (Parley__Toggle)ch->read_receipts; /* the same numbers as the protocol's */
  m.last_seen = (Parley__LastSeen)ch->last_seen;
  m.group_add = (Parley__GroupAdd)ch->group_add;
  rc = plc__request(c, PARLEY__FRAME_TYPE__FRAME_SETTINGS, &m.base, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans && out) {
    const Parley__SettingsState *st = (const Parley__SettingsState *)ans;
    *out = (parley_settings){.read_receipts =
                                 st->read_receipts ? PARLEY_READ_RECEIPTS_ON : PARLEY_READ_RECEIPTS_OFF,
                             .last_seen = (int)st->last_seen,
                             .group_add = (int)st->group_add};
  }
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

int parley_block_wait(parley *c, const char *user, int blocked, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !user)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__Block m = PARLEY__BLOCK__INIT;
  m.ref = c->req_ref;
  m.user = (char *)user;
  m.blocked = blocked != 0;
  return plc__request(c, PARLEY__FRAME_TYPE__FRAME_BLOCK, &m.base, NULL, timeout_ms);
}

int parley_push_register_wait(parley *c, const char *provider, const char *token, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !provider)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__PushRegister m = PARLEY__PUSH_REGISTER__INIT;
  m.ref = c->req_ref;
  m.provider = (char *)provider;
  m.token = (char *)(token ? token : "");
  return plc__request(c, PARLEY__FRAME_TYPE__FRAME_PUSH_REGISTER, &m.base, NULL, timeout_ms);
}

int parley_presence_wait(parley *c, const char *user, parley_presence *out, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !user)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__PresenceGet m = PARLEY__PRESENCE_GET__INIT;
  ProtobufCMessage *ans;
  m.ref = c->req_ref;
  m.user = (char *)user;
  rc = plc__request(c, PARLEY__FRAME_TYPE__FRAME_PRESENCE_GET, &m.base, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans && out) {
    const Parley__Presence *p = (const Parley__Presence *)ans;
    out->visible = p->visible;
    out->online = p->online;
    out->last_seen = p->last_seen;
  }
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

int parley_subscribe_wait(parley *c, const char *const *users, size_t n, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || (n && !users))
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__PresenceSubscribe m = PARLEY__PRESENCE_SUBSCRIBE__INIT;
  m.ref = c->req_ref;
  m.n_users = n;
  m.users = (char **)users;
  return plc__request(c, PARLEY__FRAME_TYPE__FRAME_PRESENCE_SUBSCRIBE, &m.base, NULL, timeout_ms);
}

/* ---- groups ---------------------------------------------------------- */

void parley_group_clear(parley_group *g) {
  if (!g)
    return;
  pl_free(g->id);
  pl_free(g->name);
  pl_free(g->description);
  for (size_t i = 0; i < g->nmembers; i++)
    pl_free(g->members[i].user);
  pl_free(g->members);
  memset(g, 0, sizeof *g);
}

void parley_groups_free(parley_group *g, size_t n) {
  for (size_t i = 0; g && i < n; i++)
    parley_group_clear(&g[i]);
  pl_free(g);
}

static void plc__group_copy(parley_group *out, const Parley__GroupInfo *gi) {
  memset(out, 0, sizeof *out);
  out->id = pl_strdup(gi->group);
  out->name = pl_strdup(gi->name);
  out->description = pl_strdup(gi->description);
  out->my_role = (int)gi->my_role;
  out->member_count = gi->member_count;
  out->last_seq = gi->last_seq;
  out->nmembers = gi->n_members;
  out->members = pl_calloc(gi->n_members ? gi->n_members : 1, sizeof *out->members);
  for (size_t i = 0; i < gi->n_members; i++) {
    out->members[i].user = pl_strdup(gi->members[i]->user);
    out->members[i].role = (int)gi->members[i]->role;
  }
}

/* A request answered by GroupInfo, copied to out (if not NULL). */
static int plc__group_request(parley *c, uint8_t type, const ProtobufCMessage *m, parley_group *out,
                              int timeout_ms) {
  ProtobufCMessage *ans;
  int rc = plc__request(c, type, m, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans && out)
    plc__group_copy(out, (const Parley__GroupInfo *)ans);
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

int parley_group_create_wait(parley *c, const char *name, const char *description, const char *const *members,
                             size_t n, parley_group *out, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !name || (n && !members))
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__GroupCreate m = PARLEY__GROUP_CREATE__INIT;
  m.ref = c->req_ref;
  m.name = (char *)name;
  m.description = (char *)(description ? description : "");
  m.members = (char **)members;
  m.n_members = n;
  return plc__group_request(c, PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &m.base, out, timeout_ms);
}

int parley_group_update_wait(parley *c, const char *group, int op, const char *user, const char *name,
                             const char *description, int role, parley_group *out, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !group || op < PARLEY_GROUP_INFO || op > PARLEY_GROUP_SET_ROLE)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__GroupUpdate m = PARLEY__GROUP_UPDATE__INIT;
  m.ref = c->req_ref;
  m.group = (char *)group;
  m.op = (Parley__GroupOp)op;
  m.user = (char *)(user ? user : "");
  m.name = (char *)(name ? name : "");
  m.description = (char *)(description ? description : "");
  m.role = (Parley__GroupRole)role;
  return plc__group_request(c, PARLEY__FRAME_TYPE__FRAME_GROUP_UPDATE, &m.base, out, timeout_ms);
}

int parley_group_list_wait(parley *c, parley_group **out, size_t *n, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !out || !n)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__GroupListGet m = PARLEY__GROUP_LIST_GET__INIT;
  ProtobufCMessage *ans;
  m.ref = c->req_ref;
  *out = NULL;
  *n = 0;
  rc = plc__request(c, PARLEY__FRAME_TYPE__FRAME_GROUP_LIST_GET, &m.base, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans) {
    const Parley__GroupList *l = (const Parley__GroupList *)ans;
    *out = pl_calloc(l->n_groups ? l->n_groups : 1, sizeof **out);
    *n = l->n_groups;
    for (size_t i = 0; i < l->n_groups; i++)
      plc__group_copy(&(*out)[i], l->groups[i]);
  }
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

int parley_group_mark_read_wait(parley *c, const char *group, uint64_t seq, int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !group)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__MarkRead m = PARLEY__MARK_READ__INIT;
  m.ref = c->req_ref;
  m.group = (char *)group;
  m.seq = seq;
  return plc__request(c, PARLEY__FRAME_TYPE__FRAME_MARK_READ, &m.base, NULL, timeout_ms);
}

static char **plc__names(char **v, size_t n) {
  char **out = pl_calloc(n + 1, sizeof *out);
  for (size_t i = 0; i < n; i++)
    out[i] = pl_strdup(v[i]);
  return out;
}

int parley_group_receipts_wait(parley *c, const char *group, uint64_t seq, parley_group_receipts *out,
                               int timeout_ms) {
  int rc = plc__req_begin(c);
  if (rc != PARLEY_OK || !group || !out)
    return rc != PARLEY_OK ? rc : PARLEY_E_ARG;
  Parley__GroupReceiptsGet m = PARLEY__GROUP_RECEIPTS_GET__INIT;
  ProtobufCMessage *ans;
  memset(out, 0, sizeof *out);
  m.ref = c->req_ref;
  m.group = (char *)group;
  m.seq = seq;
  rc = plc__request(c, PARLEY__FRAME_TYPE__FRAME_GROUP_RECEIPTS_GET, &m.base, &ans, timeout_ms);
  if (rc == PARLEY_OK && ans) {
    const Parley__GroupReceipts *g = (const Parley__GroupReceipts *)ans;
    out->members = g->members;
    out->delivered = g->delivered;
    out->read = g->read;
    out->detailed = g->detailed;
    out->delivered_by = plc__names(g->delivered_by, g->n_delivered_by);
    out->read_by = plc__names(g->read_by, g->n_read_by);
  }
  if (ans)
    protobuf_c_message_free_unpacked(ans, NULL);
  return rc;
}

void parley_group_receipts_clear(parley_group_receipts *r) {
  if (!r)
    return;
  parley_free_names(r->delivered_by);
  parley_free_names(r->read_by);
  memset(r, 0, sizeof *r);
}

static int plc__typing(parley *c, const char *peer, const char *group, int typing) {
  if (!c || (!peer && !group))
    return PARLEY_E_ARG;
  if (c->phase != PLC_READY)
    return PARLEY_E_STATE;
  Parley__Typing m = PARLEY__TYPING__INIT;
  m.to = (char *)(peer ? peer : "");
  m.group = (char *)(group ? group : "");
  m.typing = typing != 0;
  plc_write(c, PARLEY__FRAME_TYPE__FRAME_TYPING, &m.base);
  return PARLEY_OK;
}

int parley_typing(parley *c, const char *peer, int typing) { return plc__typing(c, peer, NULL, typing); }

int parley_group_typing(parley *c, const char *group, int typing) {
  return plc__typing(c, NULL, group, typing);
}

int parley_ack(parley *c, uint64_t upto) {
  if (!c)
    return PARLEY_E_ARG;
  if (upto > c->ack_upto)
    c->ack_upto = upto;
  return PARLEY_OK;
}

int parley_ack_delivered(parley *c) {
  if (!c)
    return PARLEY_E_ARG;
  if (c->last_qid > c->ack_upto)
    c->ack_upto = c->last_qid;
  for (size_t i = 0; i < c->ngm; i++)
    if (c->gm[i].last > c->gm[i].ack_upto)
      c->gm[i].ack_upto = c->gm[i].last;
  return PARLEY_OK;
}

int parley_ack_message(parley *c, const parley_message *m) {
  if (!c || !m)
    return PARLEY_E_ARG;
  uint64_t gid = c->proto >= 2 && m->group ? pl_frame_gid(m->group) : 0;
  if (!gid)
    return parley_ack(c, m->qid);
  plc_gmark *g = plc_gmark_get(c, gid, 0);
  if (g && m->seq > g->ack_upto)
    g->ack_upto = m->seq;
  return PARLEY_OK;
}

int parley_run(parley *c, int timeout_ms) {
  if (!c)
    return PARLEY_E_ARG;
  if (c->depth)
    return PARLEY_E_STATE;
  return plc_pass(c, timeout_ms);
}
