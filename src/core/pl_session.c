/* pl_session: a connection's life cycle, its output and errors, the store
 * requests of its sessions, the command table every request is dispatched
 * by, and the core they share. The requests themselves are handled in
 * pl_sess_auth.c, pl_sess_msg.c, pl_sess_social.c and pl_sess_group.c
 * (pl_sess_int.h says which is where). */
#include <string.h>

#include "../common/pl_log.h"
#include "../common/pl_mem.h"
#include "../common/pl_time.h"
#include "../proto/pl_strings.h"
#include "pl_sess_int.h"

/* ---- session lifetime, output, errors ---------------------------------- */

void pl_sess__unref(pl_session *s) {
  if (--s->refs)
    return;
  pl_sess__pend_clear(s);
  pl_cursor_free(&s->cur);
  pl_free(s->user); /* and s->device, in the same block */
  pl_free(s);
}

void pl_sess__write(pl_session *s, uint8_t type, const ProtobufCMessage *m) {
  if (!s->conn)
    return;
  pl_buf *b = pl_frame_encode(type, m);
  pl_strings_repair(type, b->data + PL_FRAME_HDR, b->len - PL_FRAME_HDR); /* rows from before the check */
  pl_conn_write(s->conn, b);
  pl_buf_unref(b);
}

/* An Error frame; why, if not NULL, replaces the code's generic message
 * (say, which field is wrong and how); retry_ms goes with RATE_LIMITED. */
static void pl__error_full(pl_session *s, pl_err e, const char *ref, const char *why, uint32_t retry_ms) {
  Parley__Error m = PARLEY__ERROR__INIT;
  m.code = (Parley__ErrorCode)pl_err_to_wire(e);
  m.message = (char *)(why ? why : pl_err_msg(e));
  m.ref = (char *)(ref ? ref : "");
  m.retry_after_ms = retry_ms;
  atomic_fetch_add_explicit(&s->core->errors, 1, memory_order_relaxed);
  if (m.code >= 0 && m.code < PL_CORE_ERROR_CODES)
    atomic_fetch_add_explicit(&s->core->errors_by_code[m.code], 1, memory_order_relaxed);
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_ERROR, &m.base);
}

void pl_sess__error(pl_session *s, pl_err e, const char *ref) { pl__error_full(s, e, ref, NULL, 0); }
void pl_sess__error_retry(pl_session *s, pl_err e, const char *ref, uint32_t retry_ms) {
  pl__error_full(s, e, ref, NULL, retry_ms);
}
void pl_sess__error_why(pl_session *s, pl_err e, const char *ref, const char *why) {
  pl__error_full(s, e, ref, why, 0);
}

void pl_sess__fatal(pl_session *s, pl_err e) {
  if (!s->conn)
    return;
  char peer[PL_ADDR_STR];
  pl_info("conn %llu %s: closing: %s", (unsigned long long)s->conn->id, pl_addr_str(&s->conn->peer, peer),
          pl_err_name(e));
  pl_sess__error(s, e, NULL);
  pl_conn_close(s->conn);
}

void pl_sess__resume_reading(pl_session *s) {
  if (s->paused && s->conn && !s->moderating) {
    s->paused = 0;
    s->conn->ops->resume(s->conn);
  }
}

/* ---- store requests ----------------------------------------------------- */

pl_sess__req *pl_sess__req_new(pl_session *s, pl_store_op op, pl_conn_msg *in, pl_store_done_cb done) {
  pl_sess__req *sr = pl_calloc(1, sizeof *sr);
  sr->s = s;
  if (in) {
    sr->msg = in->msg;
    sr->release = in->release;
    sr->release_ud = in->ud;
    in->msg = NULL;
  }
  sr->req.op = op;
  sr->req.done = done;
  sr->req.origin = s->loop;
  s->refs++;
  return sr;
}

void pl_sess__req_free(pl_sess__req *sr) {
  pl_session *s = sr->s;
  pl_store_req_clear(&sr->req);
  if (sr->msg)
    sr->release(sr->msg, sr->release_ud);
  pl_free(sr->pwhash);
  pl_free(sr->masked);
  pl_free(sr->gpos);
  pl_free(sr);
  pl_sess__unref(s);
}

void pl_sess__submit(pl_sess__req *sr) { pl_store_submit(sr->s->core->store, &sr->req); }

static void pl__sreq_task(pl_task *t) {
  pl_sess__req *sr = (pl_sess__req *)t;
  sr->req.done(&sr->req);
}

static void pl__store_post(void *ud, void *origin, pl_store_req *req) {
  (void)ud;
  pl_sess__req *sr = PL_SESS__REQ(req);
  sr->task.fn = pl__sreq_task;
  /* A loop closes its mailbox only after the store thread has stopped, so a
   * refused post is a synchronous SHUTTING_DOWN answer to a submit made on
   * that very loop (say, the last-seen write of a connection closed by the
   * shutdown): complete it here, or its session is never released. */
  if (pl_loop_post(origin, &sr->task) != PL_OK)
    sr->task.fn(&sr->task);
}

static void pl__store_deliver(void *ud, const pl_msg *m, const uint64_t *devices, size_t n) {
  pl_core *core = ud;
  core->router->ops->deliver(core->router, m, devices, n);
  pl_push_queued(core->push, m, devices, n); /* the offline ones with a token */
}

static void pl__store_deliver_group(void *ud, const pl_msg *m, uint64_t gid, uint64_t skip) {
  pl_core *core = ud;
  core->router->ops->deliver_group(core->router, m, gid, skip);
  pl_push_group(core->push, m, gid, skip);
}

static void pl__store_group_change(void *ud, const pl_group_change *c) {
  pl_core *core = ud;
  core->router->ops->group_change(core->router, c);
}

static void pl__store_device_groups(void *ud, uint64_t device, const uint64_t *gids, size_t n) {
  pl_core *core = ud;
  core->router->ops->device_groups(core->router, device, gids, n);
}

static void pl__store_deliver_end(void *ud) {
  pl_core *core = ud;
  core->router->ops->deliver_end(core->router);
}

/* ---- Hello and Ping ------------------------------------------------------ */

static int pl__on_ping(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  const Parley__Ping *p = (const Parley__Ping *)in->msg;
  Parley__Pong m = PARLEY__PONG__INIT;
  m.client_ts = p->client_ts;
  m.server_ts = pl_now_ms();
  pl_sess__write(s, cmd->answer, &m.base);
  pl_sess__check(s);
  return 0;
}

static int pl__on_hello(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  const Parley__Hello *h = (const Parley__Hello *)in->msg;
  if (s->state != PL_SESS_HELLO) { /* a second Hello: an error, not a violation */
    pl_sess__error(s, PL_ERR_INVALID_ARGUMENT, NULL);
    return 0;
  }
  if (h->version < PL_PROTOCOL_VERSION || h->version > PL_PROTOCOL_VERSION_MAX) {
    pl_sess__fatal(s, PL_ERR_UNSUPPORTED_VERSION);
    return 0;
  }
  const pl_core_config *cfg = &s->core->cfg;
  s->kind = h->kind <= 4 ? (uint8_t)h->kind : 0;
  s->proto = (uint8_t)h->version;
  /* A backend with gap-free per-device positions (PostgreSQL) makes the
   * queue's stream exact in both protocols: there a protocol 1 session gets
   * group entries live only (qid 0), so its stream 0 holds queue positions
   * alone. It must be exact: with several writers, another node's commit
   * (qid N, told by a hint that may be late or lost) and this node's next
   * one (N+1, pushed here) show only as a gap, and a cursor that wrote N+1
   * had skipped N for good (cluster_fault_pgfail lost three acked messages
   * that way). */
  s->cur.queue_exact = pl_store_queue_exact(s->core->store);
  s->state = PL_SESS_AUTH;
  uint32_t hb = cfg->heartbeat_ms[s->kind];
  s->conn->deadline_ms = 0;
  s->conn->idle_timeout_ms = hb + hb / 2; /* grace: half an interval */
  Parley__Welcome w = PARLEY__WELCOME__INIT;
  w.version = s->proto;
  w.server_ts = pl_now_ms();
  w.heartbeat_ms = hb;
  w.max_frame = cfg->max_frame;
  w.max_message = cfg->max_message;
  w.server_name = "parleyd/0.1";
  pl_sess__write(s, cmd->answer, &w.base);
  return 0;
}

void pl_sess__reply_done(pl_session *s, const char *ref, pl_sess__req *sr) {
  (void)sr;
  Parley__Done d = PARLEY__DONE__INIT;
  d.ref = (char *)ref;
  pl_sess__write(s, PARLEY__FRAME_TYPE__FRAME_DONE, &d.base);
}

/* ---- the command table -------------------------------------------------- */

#define T(x) PARLEY__FRAME_TYPE__FRAME_##x
#define REF(type, field) ((uint16_t)offsetof(type, field))
#define READY PL_SESS_IN(PL_SESS_READY)
#define AUTH PL_SESS_IN(PL_SESS_AUTH)
/* A request answered after a store commit: its op and the steps around it. */
#define STATE(nm, ans, ref, op_, bad_, fill_, reply_)                                                  \
  {                                                                                                    \
    .name = nm, .states = READY, .answer = T(ans), .ref_off = ref, .fn = pl_sess__on_state, .op = op_, \
    .bad = bad_, .fill = fill_, .reply = reply_                                                        \
  }

/* Every frame type a client may send (protocol.md 3), and nothing else: a
 * type without a row is UNKNOWN_TYPE. The states say where each is a
 * request; elsewhere the session's state answers (pl__refusal). The ref
 * is field 1 (protocol.md 4): Hello, Ping, Ack, the auth requests and
 * Logout have none. */
static const pl_sess_cmd pl__cmds[256] = {
    [T(HELLO)] = {.name = "hello", .states = PL_SESS_ANY, .answer = T(WELCOME), .fn = pl__on_hello},
    [T(REGISTER)] = {.name = "register", .states = AUTH, .answer = T(AUTH_OK), .fn = pl_sess__on_register},
    [T(LOGIN)] = {.name = "login", .states = AUTH, .answer = T(AUTH_OK), .fn = pl_sess__on_login},
    [T(RESUME)] = {.name = "resume", .states = AUTH, .answer = T(AUTH_OK), .fn = pl_sess__on_resume},
    [T(PING)] = {.name = "ping", .states = AUTH | READY, .answer = T(PONG), .fn = pl__on_ping},
    [T(LOGOUT)] = {.name = "logout", .states = READY, .answer = T(LOGOUT_OK), .fn = pl_sess__on_logout},
    [T(SEND)] = {.name = "send",
                 .states = READY,
                 .answer = T(SEND_ACK),
                 .ref_off = REF(Parley__Send, id),
                 .fn = pl_sess__on_send},
    [T(ACK)] = {.name = "ack", .states = READY, .fn = pl_sess__on_ack},
    [T(TYPING)] = {.name = "typing",
                   .states = READY,
                   .ref_off = REF(Parley__Typing, to),
                   .fn = pl_sess__on_typing},
    [T(PUSH_REGISTER)] = {.name = "push_register",
                          .states = READY,
                          .answer = T(DONE),
                          .ref_off = REF(Parley__PushRegister, ref),
                          .fn = pl_sess__on_push_register},
    [T(DEVICES)] = {.name = "devices",
                    .states = READY,
                    .answer = T(DEVICE_LIST),
                    .ref_off = REF(Parley__Devices, ref),
                    .fn = pl_sess__on_devices},
    [T(MARK_READ)] = STATE("mark_read", DONE, REF(Parley__MarkRead, ref), PL_STORE_MARK_READ,
                           pl_sess__mark_read_bad, pl_sess__mark_read_fill, pl_sess__reply_done),
    [T(SETTINGS)] = STATE("settings", SETTINGS_STATE, REF(Parley__Settings, ref), PL_STORE_SETTINGS,
                          pl_sess__settings_bad, pl_sess__settings_fill, pl_sess__settings_reply),
    [T(UNREAD_GET)] = STATE("unread_get", UNREAD, REF(Parley__UnreadGet, ref), PL_STORE_UNREAD, NULL, NULL,
                            pl_sess__unread_reply),
    [T(CONTACTS)] = STATE("contacts", CONTACT_LIST, REF(Parley__Contacts, ref), PL_STORE_CONTACTS,
                          pl_sess__contacts_bad, pl_sess__contacts_fill, pl_sess__contacts_reply),
    [T(BLOCK)] = STATE("block", DONE, REF(Parley__Block, ref), PL_STORE_BLOCK, pl_sess__block_bad,
                       pl_sess__block_fill, pl_sess__block_reply),
    /* Done, then the state of every user asked for */
    [T(PRESENCE_SUBSCRIBE)] =
        STATE("presence_subscribe", DONE, REF(Parley__PresenceSubscribe, ref), PL_STORE_PRESENCE,
              pl_sess__presence_sub_bad, pl_sess__presence_sub_fill, pl_sess__presence_sub_reply),
    [T(PRESENCE_GET)] =
        STATE("presence_get", PRESENCE, REF(Parley__PresenceGet, ref), PL_STORE_PRESENCE,
              pl_sess__presence_get_bad, pl_sess__presence_get_fill, pl_sess__presence_get_reply),
    [T(GROUP_CREATE)] =
        STATE("group_create", GROUP_INFO, REF(Parley__GroupCreate, ref), PL_STORE_GROUP_CREATE,
              pl_sess__group_create_bad, pl_sess__group_create_fill, pl_sess__group_reply),
    [T(GROUP_UPDATE)] =
        STATE("group_update", GROUP_INFO, REF(Parley__GroupUpdate, ref), PL_STORE_GROUP_UPDATE,
              pl_sess__group_update_bad, pl_sess__group_update_fill, pl_sess__group_reply),
    [T(GROUP_LIST_GET)] = STATE("group_list_get", GROUP_LIST, REF(Parley__GroupListGet, ref),
                                PL_STORE_GROUP_LIST, NULL, NULL, pl_sess__group_list_reply),
    [T(GROUP_RECEIPTS_GET)] = STATE("group_receipts_get", GROUP_RECEIPTS, REF(Parley__GroupReceiptsGet, ref),
                                    PL_STORE_GROUP_RECEIPTS, pl_sess__group_receipts_bad,
                                    pl_sess__group_receipts_fill, pl_sess__group_receipts_reply),
};

#undef STATE
#undef AUTH
#undef READY
#undef REF
#undef T

const pl_sess_cmd *pl_sess_cmd_of(uint8_t type) { return pl__cmds[type].fn ? &pl__cmds[type] : NULL; }

const char *pl_sess__ref(const pl_sess_cmd *cmd, const ProtobufCMessage *msg) {
  if (!cmd->ref_off)
    return "";
  const char *ref = *(const char *const *)((const char *)msg + cmd->ref_off);
  return ref ? ref : "";
}

/* ---- dispatch ----------------------------------------------------------- */

/* What a request is answered with in a state that does not take it: before
 * Hello and before authentication the connection ends; once authenticated,
 * an auth request is only refused. */
static const struct {
  pl_err err;
  int fatal;
} pl__refusal[] = {
    [PL_SESS_HELLO] = {PL_ERR_HELLO_REQUIRED, 1},
    [PL_SESS_AUTH] = {PL_ERR_AUTH_REQUIRED, 1},
    [PL_SESS_READY] = {PL_ERR_ALREADY_AUTHENTICATED, 0},
};

static void pl__release(pl_conn_msg *in) {
  if (in->msg)
    in->release(in->msg, in->ud);
  in->msg = NULL;
}

/* Runs the request's handler if the state takes it, or refuses it; in is
 * released unless the handler moved it into a store request. Returns 1 to
 * pause reading. */
static int pl__dispatch(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in) {
  int pause = 0;
  if (cmd->states & PL_SESS_IN(s->state))
    pause = cmd->fn(s, cmd, in);
  else if (pl__refusal[s->state].fatal)
    pl_sess__fatal(s, pl__refusal[s->state].err);
  else
    pl_sess__error(s, pl__refusal[s->state].err, NULL);
  pl__release(in);
  return pause;
}

/* A bad string is INVALID_ARGUMENT naming the field, with the request's id
 * or ref when that field itself is good; nothing is done. */
static void pl__bad_string(pl_session *s, const pl_sess_cmd *cmd, const ProtobufCMessage *msg,
                           const pl_strings_fault *bad) {
  char why[128];
  pl_strings_describe(bad, why, sizeof why);
  const char *ref = pl_sess__ref(cmd, msg);
  if (bad->bad_fields & 2u || strlen(ref) > PL_SESS_MAX_ID)
    ref = NULL;
  pl_sess__error_why(s, PL_ERR_INVALID_ARGUMENT, ref, why);
}

static void pl__pb_release(ProtobufCMessage *msg, void *ud) {
  (void)ud;
  protobuf_c_message_free_unpacked(msg, NULL);
}

/* A native frame. Its strings are checked on the wire bytes (protobuf-c
 * hides an embedded NUL once unpacked), only where the state takes it (the
 * state's answer comes first). */
static int pl__on_frame(pl_conn *c, const pl_frame *f, void *ud) {
  pl_core *core = ud;
  pl_session *s = c->session;
  atomic_fetch_add_explicit(&core->frames_in, 1, memory_order_relaxed);
  const pl_sess_cmd *cmd = pl_sess_cmd_of(f->type);
  if (!cmd) {
    pl_sess__fatal(s, PL_ERR_UNKNOWN_TYPE);
    return 0;
  }
  pl_conn_msg in = {.type = f->type, .msg = pl_frame_unpack(f), .release = pl__pb_release};
  if (!in.msg) {
    pl_sess__fatal(s, PL_ERR_BAD_FRAME);
    return 0;
  }
  pl_strings_fault bad;
  pl_err e = cmd->states & PL_SESS_IN(s->state) ? pl_strings_check(f->type, f->payload, f->payload_len, &bad)
                                                : PL_OK;
  if (e == PL_ERR_BAD_FRAME) /* what protobuf-c took must walk too (fuzz_strings) */
    pl_sess__fatal(s, e);
  else if (e != PL_OK)
    pl__bad_string(s, cmd, in.msg, &bad);
  if (e != PL_OK) {
    pl__release(&in);
    return 0;
  }
  return pl__dispatch(s, cmd, &in);
}

/* A request a gateway decoded (pl_conn.h): the same steps as a frame's, with
 * the strings checked on the message (a string with a NUL travels in it as
 * an unknown field of its number, which the check refuses). */
static int pl__on_message(pl_conn *c, const pl_conn_msg *m, void *ud) {
  pl_core *core = ud;
  pl_session *s = c->session;
  pl_conn_msg in = *m;
  atomic_fetch_add_explicit(&core->frames_in, 1, memory_order_relaxed);
  const pl_sess_cmd *cmd = pl_sess_cmd_of(in.type);
  pl_strings_fault bad;
  pl_err e = PL_OK;
  if (!cmd)
    e = PL_ERR_UNKNOWN_TYPE;
  else if (in.msg->descriptor != pl_frame_descriptor(in.type))
    e = PL_ERR_BAD_FRAME;
  else if (cmd->states & PL_SESS_IN(s->state))
    e = pl_strings_check_msg(in.msg, &bad);
  if (e == PL_ERR_INVALID_ARGUMENT)
    pl__bad_string(s, cmd, in.msg, &bad);
  else if (e != PL_OK)
    pl_sess__fatal(s, e);
  if (e != PL_OK) {
    pl__release(&in);
    return 0;
  }
  return pl__dispatch(s, cmd, &in);
}

/* ---- the rest of the handler the transports call ------------------------ */

/* The open-connections gauge of c's transport (NULL: tcp, the rest). */
static atomic_uint_fast64_t *pl__transport_count(pl_core *core, const pl_conn *c) {
  switch (c->ops->kind) {
  case PL_CONN_WS: return &core->conns_ws;
  case PL_CONN_LP: return &core->conns_lp;
  default: return NULL;
  }
}

static void pl__on_open(pl_conn *c, void *ud) {
  pl_core *core = ud;
  pl_session *s = pl_calloc(1, sizeof *s);
  s->core = core;
  s->conn = c;
  s->loop = c->loop;
  pl_cursor_init(&s->cur, PL_SESS_MAX_PEND);
  s->refs = 1;
  c->session = s;
  /* A fixed deadline, not an idle timeout: trickling bytes does not extend it. */
  c->deadline_ms = pl_mono_ms() + core->cfg.hello_timeout_ms;
  if (core->cfg.auth_timeout_ms)
    c->auth_deadline_ms = pl_mono_ms() + core->cfg.auth_timeout_ms;
  c->drain_mark = core->cfg.out_high;
  atomic_fetch_add_explicit(&core->conns_open, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&core->conns_total, 1, memory_order_relaxed);
  atomic_uint_fast64_t *by_transport = pl__transport_count(core, c);
  if (by_transport)
    atomic_fetch_add_explicit(by_transport, 1, memory_order_relaxed);
  char peer[PL_ADDR_STR];
  pl_debug("conn %llu %s: open (%s)", (unsigned long long)c->id, pl_addr_str(&c->peer, peer), c->ops->name);
}

static void pl__on_bad_input(pl_conn *c, pl_err why, void *ud) {
  (void)ud;
  if (why == PL_ERR_TOO_MANY_CONNECTIONS) { /* refusals come in floods: counted, not logged */
    pl_sess__error(c->session, why, NULL);
    pl_conn_close(c);
    return;
  }
  pl_sess__fatal(c->session, why);
}

static void pl__on_idle(pl_conn *c, void *ud) {
  (void)ud;
  pl_session *s = c->session;
  pl_err why = PL_ERR_HEARTBEAT_TIMEOUT;
  if (s->state == PL_SESS_HELLO)
    why = PL_ERR_HELLO_REQUIRED;
  else if (s->state == PL_SESS_AUTH && c->auth_deadline_ms && pl_mono_ms() > c->auth_deadline_ms)
    why = PL_ERR_AUTH_REQUIRED; /* not authenticated within --auth-timeout */
  pl_sess__fatal(s, why);
}

static void pl__on_shutdown(pl_conn *c, void *ud) {
  (void)ud;
  pl_sess__error(c->session, PL_ERR_SHUTTING_DOWN, NULL);
  pl_conn_close(c);
}

static void pl__on_drain(pl_conn *c, void *ud) {
  (void)ud;
  pl_session *s = c->session;
  if (s->state == PL_SESS_READY && pl_cursor_drained(&s->cur) == PL_CURSOR_FETCH)
    pl_sess__start_sync(s);
}

static void pl__seen_done(pl_store_req *req) { pl_sess__req_free(PL_SESS__REQ(req)); }

/* The device left: it follows no one, its user may go offline, and the
 * time is its user's last seen (stored; a failure only loses that time).
 * Once per authenticated connection, while s->conn is set. */
void pl_sess__gone(pl_session *s) {
  uint64_t now = pl_now_ms();
  pl_presence_unsubscribe(s->core->presence, s->device_id, s->conn->id);
  pl_presence_offline(s->core->presence, s->user_id, s->loop, now);
  pl_sess__req *sr = pl_sess__req_new(s, PL_STORE_SEEN, NULL, pl__seen_done);
  sr->req.user_id = s->user_id;
  sr->req.u.seen.in.at = now;
  pl_sess__submit(sr);
}

/* Closing has begun: the device stops being a live destination now. The
 * peer may see the socket closed before on_close (one loop pass later), and
 * a live-only event decided meanwhile (a ReadSync from another device: qid
 * 0 for an online device) would go to a connection that never delivers it;
 * detached, it is queued for the device's next session instead. */
static void pl__on_closing(pl_conn *c, void *ud) {
  pl_core *core = ud;
  pl_session *s = c->session;
  if (s && s->state == PL_SESS_READY) {
    core->router->ops->detach(core->router, s->device_id, s->loop, s);
    pl_sess__off(s);
  }
}

static void pl__on_close(pl_conn *c, void *ud) {
  pl_core *core = ud;
  pl_session *s = c->session;
  if (s->state == PL_SESS_READY) {
    /* Again after on_closing: a sign-in that completed after closing began
     * attached the device anew. The router drops only this endpoint, so a
     * repeat costs one lookup per connection. */
    core->router->ops->detach(core->router, s->device_id, s->loop, s);
    pl_sess__gone(s);
    char peer[PL_ADDR_STR];
    pl_info("conn %llu %s: %s@%s disconnected", (unsigned long long)c->id, pl_addr_str(&c->peer, peer),
            s->user, s->device);
  }
  s->conn = NULL;
  pl_sess__off(s);
  atomic_fetch_sub_explicit(&core->conns_open, 1, memory_order_relaxed);
  atomic_uint_fast64_t *by_transport = pl__transport_count(core, c);
  if (by_transport)
    atomic_fetch_sub_explicit(by_transport, 1, memory_order_relaxed);
  pl_sess__unref(s);
}

/* ---- the core ----------------------------------------------------------- */

void pl_core_config_defaults(pl_core_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->heartbeat_ms[0] = 30000; /* unknown */
  cfg->heartbeat_ms[1] = 30000; /* mobile */
  cfg->heartbeat_ms[2] = 15000; /* web */
  cfg->heartbeat_ms[3] = 60000; /* iot */
  cfg->heartbeat_ms[4] = 30000; /* bot */
  cfg->hello_timeout_ms = 10000;
  cfg->auth_timeout_ms = 30000;
  cfg->max_frame = 1u << 20;
  cfg->max_message = 64u * 1024u;
  cfg->fetch_batch = 512;
  cfg->max_inflight = 1024;
  cfg->out_high = 256u * 1024u;
  cfg->presence_grace_ms = 5000;
  cfg->typing_interval_ms = 1000;
  cfg->send_rate = 50;
  cfg->send_burst = 500;
  cfg->max_queue = 100000;
  cfg->max_queue_share = 50;
  cfg->auth = (pl_auth_limits){.rate = 10,
                               .burst = 20,
                               .register_per_hour = 20,
                               .account_address = {5, 1000, 900000},
                               .account = {50, 1000, 60000},
                               .address = {30, 1000, 900000}};
  cfg->argon2_threads = 2;
  cfg->argon2_per_address = 2;
  cfg->argon2_queue = 64;
}

pl_core *pl_core_new(const pl_core_config *cfg, int nloops) {
  if (!cfg->router)
    return NULL;
  pl_core *core = pl_calloc(1, sizeof *core);
  core->cfg = *cfg;
  core->nloops = nloops;
  core->delivery = pl_calloc((size_t)nloops, sizeof *core->delivery);
  for (int i = 0; i < nloops; i++)
    pl_hist_init(&core->delivery[i], pl_hist_us_bounds, pl_hist_us_n);
  core->sink = (pl_router_sink){
      .push = pl_sess__push, .kick = pl_sess__kick, .fetch = pl_sess__fetch, .delivery = core->delivery};
  core->router = cfg->router;
  core->router->sink = core->sink;
  core->presence = pl_presence_new(core->router, cfg->presence_grace_ms);
  core->send_limit = pl_rules_limiter_new(&(pl_rules_rate){.rate = cfg->send_rate, .burst = cfg->send_burst});
  core->queue_rule = (pl_rules_queue){.max_queue = cfg->max_queue, .share_pct = cfg->max_queue_share};
  core->throttle = pl_throttle_new(65536);
  core->hashers = pl_workers_new(cfg->argon2_threads, cfg->argon2_queue);
  pthread_mutex_init(&core->filter_mu, NULL);
  core->handler = (pl_conn_handler){
      .on_open = pl__on_open,
      .on_frame = pl__on_frame,
      .on_message = pl__on_message,
      .on_bad_input = pl__on_bad_input,
      .on_idle = pl__on_idle,
      .on_drain = pl__on_drain,
      .on_shutdown = pl__on_shutdown,
      .on_closing = pl__on_closing,
      .on_close = pl__on_close,
      .ud = core,
  };
  return core;
}

/* The store asks the rules (pl_rules) through these. */
static pl_err pl__queue_admit(void *ud, uint64_t queued, int own, pl_err (*count)(void *, uint64_t *),
                              void *arg) {
  return pl_rules_queue_admit(&((pl_core *)ud)->queue_rule, queued, own, count, arg);
}

static pl_err pl__may_add(void *ud, int setting, int contact) {
  (void)ud;
  return pl_rules_may_add(setting, contact);
}

/* A move (a sharded store): the devices of the buckets moved read their
 * queues, where the mover may have queued copies. */
static void pl__store_moved(void *ud, const uint64_t *bits) {
  pl_router *r = ((pl_core *)ud)->router;
  if (r->ops->hint_buckets)
    r->ops->hint_buckets(r, bits);
}

void pl_core_store_hooks(pl_core *core, pl_store_hooks *hooks) {
  hooks->post = pl__store_post;
  hooks->deliver = pl__store_deliver;
  hooks->deliver_end = pl__store_deliver_end;
  hooks->online = pl_core_online;
  hooks->deliver_group = pl__store_deliver_group;
  hooks->group_change = pl__store_group_change;
  hooks->device_groups = pl__store_device_groups;
  hooks->moved = pl__store_moved;
  hooks->ud = core;
  hooks->rules = (pl_store_rules){.queue_admit = pl__queue_admit,
                                  .may_add = pl__may_add,
                                  .group_history = pl_rules_sender_cap(&core->queue_rule),
                                  .ud = core};
}

void pl_core_set_store(pl_core *core, pl_store *store) { core->store = store; }
void pl_core_set_push(pl_core *core, pl_push *push) { core->push = push; }

int pl_core_online(void *core, uint64_t device) {
  pl_router *r = ((pl_core *)core)->router;
  return r->ops->is_online(r, device);
}
const pl_conn_handler *pl_core_handler(pl_core *core) { return &core->handler; }
pl_presence *pl_core_presence(pl_core *core) { return core->presence; }

pl_router *pl_core_router(pl_core *core) { return core->router; }

void pl_core_set_filter(pl_core *core, pl_filter *f) {
  pthread_mutex_lock(&core->filter_mu);
  pl_filter *old = core->filter;
  core->filter = f;
  pthread_mutex_unlock(&core->filter_mu);
  pl_filter_unref(old);
}

void pl_core_set_draining(pl_core *core, int on) {
  atomic_store_explicit(&core->draining, on ? 1 : 0, memory_order_relaxed);
}

void pl_core_set_moderation(pl_core *core, const pl_hook_config *cfg, unsigned threads) {
  core->hook = *cfg;
  /* a queue bound: past it a Send skips the hook (pl__moderate) rather than wait without end */
  core->moderators = pl_workers_new(threads ? threads : 4, 4096);
}

void pl_core_kick(pl_core *core, uint64_t device) { core->router->ops->kick(core->router, device); }

void pl_core_free(pl_core *core) {
  pl_filter_unref(core->filter);
  pthread_mutex_destroy(&core->filter_mu);
  pl_workers_free(core->hashers);
  if (core->moderators)
    pl_workers_free(core->moderators);
  pl_throttle_free(core->throttle);
  pl_presence_free(core->presence);
  pl_rules_limiter_free(core->send_limit);
  pl_free(core->delivery);
  pl_free(core);
}

void pl_core_get_stats(pl_core *core, pl_core_stats *st) {
  st->conns_open = atomic_load_explicit(&core->conns_open, memory_order_relaxed);
  st->conns_ws = atomic_load_explicit(&core->conns_ws, memory_order_relaxed);
  st->conns_lp = atomic_load_explicit(&core->conns_lp, memory_order_relaxed);
  for (int i = 0; i < PL_CORE_ERROR_CODES; i++)
    st->errors_by_code[i] = atomic_load_explicit(&core->errors_by_code[i], memory_order_relaxed);
  st->delivery = core->delivery;
  st->ndelivery = (size_t)core->nloops;
  st->conns_total = atomic_load_explicit(&core->conns_total, memory_order_relaxed);
  st->frames_in = atomic_load_explicit(&core->frames_in, memory_order_relaxed);
  st->messages_out = atomic_load_explicit(&core->messages_out, memory_order_relaxed);
  st->sends = atomic_load_explicit(&core->sends, memory_order_relaxed);
  st->errors = atomic_load_explicit(&core->errors, memory_order_relaxed);
  st->login_failures = atomic_load_explicit(&core->login_failures, memory_order_relaxed);
  st->draining = atomic_load_explicit(&core->draining, memory_order_relaxed);
  st->hook_calls = atomic_load_explicit(&core->hook_calls, memory_order_relaxed);
  st->hook_rejects = atomic_load_explicit(&core->hook_rejects, memory_order_relaxed);
  st->hook_masks = atomic_load_explicit(&core->hook_masks, memory_order_relaxed);
  st->hook_errors = atomic_load_explicit(&core->hook_errors, memory_order_relaxed);
  pl_presence_online_count(core->presence, &st->online_users, &st->online_devices);
}
