/* pl_sess_int: what the session's files share; not for use outside them
 * and their unit test.
 *
 *   pl_session.c      life cycle, output and errors, store requests, the
 *                     command table and dispatch, the core
 *   pl_sess_auth.c    Register, Login, Resume (throttling, Argon2id)
 *   pl_sess_msg.c     the delivery cursor, Send, Ack, Typing
 *   pl_sess_social.c  conversation state, contacts, blocks, presence,
 *                     settings, devices, push tokens, Logout
 *   pl_sess_group.c   group requests and their answers
 *
 * A frame type's row in the command table (pl_sess_cmd) says all the
 * session decides about it: the states that take it, its handler, where its
 * ref is, what it answers, and for the requests answered after a store
 * commit, the store op with the steps around it. Adding a frame type is
 * adding a row. */
#ifndef PL_SESS_INT_H
#define PL_SESS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "../push/pl_hook.h"
#include "pl_auth.h"
#include "pl_cursor.h"
#include "pl_filter.h"
#include "pl_presence.h"
#include "pl_rules.h"
#include "pl_session.h"
#include "pl_throttle.h"
#include "pl_workers.h"

#define PL_SESS_MAX_PEND 4096 /* pushes held while a fetch is in flight */
#define PL_SESS_MAX_ID 64     /* client message id and ref bytes */

struct pl_core {
  pl_core_config cfg;
  pl_store *store;
  pl_router *router; /* cfg.router: the server's */
  pl_push *push;     /* NULL: push notifications are off */
  pl_presence *presence;
  pthread_mutex_t filter_mu; /* guards filter (the pointer, not its use) */
  pl_filter *filter;
  pl_conn_handler handler;
  atomic_uint_fast64_t conns_open, conns_ws, conns_lp, conns_total, frames_in, messages_out, sends, errors;
  atomic_uint_fast64_t errors_by_code[PL_CORE_ERROR_CODES];
  pl_hist *delivery; /* per loop: commit -> the push on the connection's loop, us */
  int nloops;
  pl_router_sink sink;
  pl_rules_limiter *send_limit;        /* Sends per user (protocol.md 10.7) */
  pl_rules_queue queue_rule;           /* a sender's share of a device queue */
  pl_throttle *throttle;               /* login throttling and hashing holds, all loops */
  pl_workers *hashers;                 /* Argon2id runs here, not on libuv's shared pool */
  atomic_uint_fast32_t hash_ms;        /* how long the last Argon2id run took */
  atomic_uint_fast64_t login_failures; /* wrong passwords and bad tokens */
  atomic_int draining;                 /* new sign-ins get MAINTENANCE (pl_core_set_draining) */
  /* the before-send webhook (pl_core_set_moderation; NULL pool: off) */
  pl_hook_config hook;
  pl_workers *moderators;
  atomic_uint_fast64_t hook_calls, hook_rejects, hook_masks, hook_errors;
};

/* HELLO --Hello--> AUTH --Register/Login/Resume--> READY (pl_session.h). */
typedef enum pl_sess_state { PL_SESS_HELLO, PL_SESS_AUTH, PL_SESS_READY } pl_sess_state;
#define PL_SESS_IN(st) (1u << (st)) /* a state's bit in pl_sess_cmd.states */
#define PL_SESS_ANY (PL_SESS_IN(PL_SESS_HELLO) | PL_SESS_IN(PL_SESS_AUTH) | PL_SESS_IN(PL_SESS_READY))

/* A push held while a fetch is in flight (pl_sess_msg.c; the cursor,
 * pl_cursor.h, says which). */
typedef struct pl_sess__pend {
  struct pl_sess__pend *next;
  uint64_t gid, pos; /* its stream and position there (pl_cursor.h) */
  pl_buf *frame;
} pl_sess__pend;

/* One per connection, so its size is a product figure (docs/architecture.md,
 * "What a connection costs"): fields are ordered so that there are no holes,
 * and test_idle_memory holds it under a bound. */
typedef struct pl_session {
  pl_core *core;
  pl_conn *conn; /* NULL once the connection is gone */
  pl_loop *loop;
  uint32_t refs;      /* 1 for the connection + 1 per request in flight */
  uint32_t inflight;  /* sends awaiting commit */
  uint32_t fetch_gen; /* fetches submitted: only the latest one's page counts */
  uint8_t state : 4;  /* pl_sess_state */
  uint8_t kind : 4;   /* the Hello's client kind (0..4) */
  uint8_t proto;      /* the Hello's version: 2 makes each group a stream of its own */
  uint8_t paused, ack_busy;
  uint8_t moderating; /* a Send is with the moderation webhook: read nothing more until it is back */
  uint8_t partial; /* the last page left some groups unread (a shard away): fetch again at the idle check */
  uint64_t user_id, device_id;
  char *user, *device;         /* one block: device points into user's (pl_sess__set_names) */
  uint64_t typing_at;          /* when the last typing-on event went (rate limit) */
  uint64_t ack_want, ack_done; /* cumulative acks: asked for / committed */
  pl_cursor cur;               /* the delivery cursor: cur.last_sent is the queue's highest qid written */
  uint64_t checked_at;         /* when the idle check last asked the router (pl_sess__check) */
  pl_sess__pend *pend, *pend_tail;
} pl_session;

typedef struct pl_sess_cmd pl_sess_cmd;

/* A store request of a session; it also keeps the request message whose
 * strings it borrows, so nothing is copied on the send path. */
typedef struct pl_sess__req {
  pl_task task;
  pl_store_req req;
  pl_session *s;
  ProtobufCMessage *msg; /* given back with release (pl_conn_msg) */
  void (*release)(ProtobufCMessage *msg, void *ud);
  void *release_ud;
  const pl_sess_cmd *cmd; /* the request's row (store-answered requests) */
  char *pwhash;
  uint64_t uid;        /* login: the user found by GET_USER */
  int disabled;        /* login: ... is banned (said after the password checked out) */
  uint32_t gen;        /* a fetch: its number (pl_session.fetch_gen) */
  pl_store_gpos *gpos; /* a fetch's gafter, an ack's gacks (protocol 2) */
  char token[PL_AUTH_TOKEN_MAX];
  uint8_t *masked;   /* Send: the body with filtered words masked */
  pl_act act;        /* Send: its act (strings point into msg) */
  uint32_t retry_ms; /* an auth step refused with RATE_LIMITED: its retry_after_ms */
} pl_sess__req;

#define PL_SESS__REQ(r) ((pl_sess__req *)((char *)(r)-offsetof(pl_sess__req, req)))

/* One row of the command table, indexed by frame type. */
struct pl_sess_cmd {
  const char *name; /* logs and the unit test */
  uint8_t states;   /* PL_SESS_IN bits: the states in which it is a request */
  uint8_t answer;   /* the frame type a success answers with (0: none) */
  uint16_t ref_off; /* offset of its ref (a Send's id) in the message; 0: it has none */
  /* Takes the request in a state that allows it; returns 1 to pause reading.
   * To keep in->msg past the return, move it into a store request
   * (pl_sess__req_new); what is left is released after the call. */
  int (*fn)(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
  /* Requests answered after a store commit (fn = pl_sess__on_state): */
  pl_store_op op;
  int (*bad)(const ProtobufCMessage *msg);                         /* malformed: INVALID_ARGUMENT */
  void (*fill)(pl_store_req *r, ProtobufCMessage *msg);            /* the inputs (borrowed) */
  void (*reply)(pl_session *s, const char *ref, pl_sess__req *sr); /* after a commit that went well */
};

/* The row of a frame type; NULL for a type clients may not send. */
const pl_sess_cmd *pl_sess_cmd_of(uint8_t type);
/* The ref of a request (its row says where; "" if it has none). */
const char *pl_sess__ref(const pl_sess_cmd *cmd, const ProtobufCMessage *msg);

/* ---- pl_session.c ---- */
void pl_sess__unref(pl_session *s);
void pl_sess__write(pl_session *s, uint8_t type, const ProtobufCMessage *m);
/* An Error frame: why (if not NULL) replaces the code's generic message;
 * retry_ms goes with RATE_LIMITED. */
void pl_sess__error(pl_session *s, pl_err e, const char *ref);
void pl_sess__error_retry(pl_session *s, pl_err e, const char *ref, uint32_t retry_ms);
void pl_sess__error_why(pl_session *s, pl_err e, const char *ref, const char *why);
/* A protocol violation: answer with the code, then close. */
void pl_sess__fatal(pl_session *s, pl_err e);
void pl_sess__resume_reading(pl_session *s);
/* A store request; in (may be NULL) moves into it: in->msg is NULL after. */
pl_sess__req *pl_sess__req_new(pl_session *s, pl_store_op op, pl_conn_msg *in, pl_store_done_cb done);
void pl_sess__req_free(pl_sess__req *sr);
void pl_sess__submit(pl_sess__req *sr);
/* The device left (once per authenticated connection, while s->conn is set). */
void pl_sess__gone(pl_session *s);
/* A group id on the wire: its decimal number, 1 .. 2^63-1; 0 if malformed. */
int pl_sess__bad_name(const char *u);
/* A Done answer with ref (the reply of requests that answer nothing else). */
void pl_sess__reply_done(pl_session *s, const char *ref, pl_sess__req *sr);

/* ---- pl_sess_auth.c ---- */
int pl_sess__on_register(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_login(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_resume(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);

/* ---- pl_sess_msg.c ---- */
void pl_sess__pend_clear(pl_session *s);
void pl_sess__start_sync(pl_session *s);
/* The cursor's idle check (a client Ping): recovers a lost push that no
 * later push showed as a gap (architecture.md §5). */
void pl_sess__check(pl_session *s);
/* Attaches to the router (the caller fetches next, pl_sess__start_sync). */
void pl_sess__attach(pl_session *s);
/* Detached: pushes no longer count. */
void pl_sess__off(pl_session *s);
void pl_sess__push(void *ep, uint64_t qid, uint64_t gid, uint64_t seq, uint64_t hint,
                   pl_buf *frame); /* router sink */
void pl_sess__kick(void *ep);      /* router sink */
void pl_sess__fetch(void *ep);     /* router sink */
int pl_sess__on_send(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_ack(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_typing(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);

/* ---- pl_sess_social.c ---- */
/* Validated here, answered after the commit by cmd->reply (or an Error). */
int pl_sess__on_state(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_devices(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_push_register(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__on_logout(pl_session *s, const pl_sess_cmd *cmd, pl_conn_msg *in);
int pl_sess__mark_read_bad(const ProtobufCMessage *msg);
void pl_sess__mark_read_fill(pl_store_req *r, ProtobufCMessage *msg);
int pl_sess__settings_bad(const ProtobufCMessage *msg);
void pl_sess__settings_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__settings_reply(pl_session *s, const char *ref, pl_sess__req *sr);
void pl_sess__unread_reply(pl_session *s, const char *ref, pl_sess__req *sr);
int pl_sess__contacts_bad(const ProtobufCMessage *msg);
void pl_sess__contacts_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__contacts_reply(pl_session *s, const char *ref, pl_sess__req *sr);
int pl_sess__block_bad(const ProtobufCMessage *msg);
void pl_sess__block_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__block_reply(pl_session *s, const char *ref, pl_sess__req *sr);
int pl_sess__presence_sub_bad(const ProtobufCMessage *msg);
void pl_sess__presence_sub_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__presence_sub_reply(pl_session *s, const char *ref, pl_sess__req *sr);
int pl_sess__presence_get_bad(const ProtobufCMessage *msg);
void pl_sess__presence_get_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__presence_get_reply(pl_session *s, const char *ref, pl_sess__req *sr);

/* ---- pl_sess_group.c ---- */
int pl_sess__group_create_bad(const ProtobufCMessage *msg);
void pl_sess__group_create_fill(pl_store_req *r, ProtobufCMessage *msg);
int pl_sess__group_update_bad(const ProtobufCMessage *msg);
void pl_sess__group_update_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__group_reply(pl_session *s, const char *ref, pl_sess__req *sr);
void pl_sess__group_list_reply(pl_session *s, const char *ref, pl_sess__req *sr);
int pl_sess__group_receipts_bad(const ProtobufCMessage *msg);
void pl_sess__group_receipts_fill(pl_store_req *r, ProtobufCMessage *msg);
void pl_sess__group_receipts_reply(pl_session *s, const char *ref, pl_sess__req *sr);

#endif
