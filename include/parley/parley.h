/* libparley: the C client library for the Parley messaging server.
 *
 * One parley handle is one device's connection to a server. The library is
 * single-threaded and event driven like mosquitto's client: it owns one
 * non-blocking socket and does its work inside parley_run(), which the
 * application calls in its loop (or blocks in, with a timeout). Callbacks run
 * inside parley_run() (and inside the blocking calls below) on the caller's
 * thread.
 *
 * Reliability: parley_send() puts the message in an outbox and returns at
 * once. The outbox survives reconnects: every unacked message is re-sent,
 * with the same client id, after each reconnect until the server acks it
 * (the server deduplicates, so this never makes a second copy). A message is
 * reported exactly once, through on_ack or on_send_error.
 *
 * Reception: messages arrive through on_message, each stream in its order:
 * the device's queue (1:1 messages, by qid) and each group (by seq; protocol
 * version 2, the default). The library drops anything it already handed to
 * the application during this handle's life (by position in its stream), so
 * a redelivery after a reconnect is never shown twice. With auto_ack on (the
 * default) it acknowledges each delivered message after on_message returns,
 * batched into one Ack per parley_run() pass.
 *
 * Reconnect: after an authenticated connection drops, the library reconnects
 * with exponential backoff and full jitter (reconnect_min_ms doubling up to
 * reconnect_max_ms) and resumes with its session token (no password needed).
 *
 * Errors: functions return PARLEY_OK (0) or a negative code. Codes -1..-99
 * are the server's protocol error codes negated (docs/protocol.md, "Error
 * codes"); -100 and below are local. parley_strerror() names them all.
 */
#ifndef PARLEY_H
#define PARLEY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PARLEY_OK 0
/* Server error codes (negated protocol ErrorCode). */
#define PARLEY_E_BAD_FRAME (-1)
#define PARLEY_E_FRAME_TOO_LARGE (-2)
#define PARLEY_E_UNKNOWN_TYPE (-3)
#define PARLEY_E_UNSUPPORTED_VERSION (-4)
#define PARLEY_E_HELLO_REQUIRED (-5)
#define PARLEY_E_AUTH_REQUIRED (-6)
#define PARLEY_E_HEARTBEAT_TIMEOUT (-7)
#define PARLEY_E_SHUTTING_DOWN (-8)
#define PARLEY_E_SLOW_CONSUMER (-9)
#define PARLEY_E_BAD_CREDENTIALS (-20)
#define PARLEY_E_USER_EXISTS (-21)
#define PARLEY_E_BAD_TOKEN (-22)
#define PARLEY_E_INVALID_ARGUMENT (-23)
#define PARLEY_E_UNKNOWN_PEER (-24)
#define PARLEY_E_MESSAGE_TOO_LARGE (-25)
#define PARLEY_E_TOO_MANY_DEVICES (-26)
#define PARLEY_E_QUEUE_FULL (-27)
#define PARLEY_E_ALREADY_AUTHENTICATED (-28)
#define PARLEY_E_INTERNAL (-29)
#define PARLEY_E_BLOCKED (-30)              /* the recipient blocked you: not stored */
#define PARLEY_E_FILTERED (-31)             /* the text has a word the server refuses: not stored */
#define PARLEY_E_NOT_MEMBER (-32)           /* no such group, or you are not in it */
#define PARLEY_E_FORBIDDEN (-33)            /* your role in the group does not allow this */
#define PARLEY_E_GROUP_FULL (-34)           /* the group is at its member limit */
#define PARLEY_E_UNKNOWN_MEDIA (-35)        /* no such upload, or you may not use it */
#define PARLEY_E_RATE_LIMITED (-36)         /* too many attempts or sends: retry later */
#define PARLEY_E_TOO_MANY_CONNECTIONS (-37) /* the server's connection cap is reached */
#define PARLEY_E_NOT_ALLOWED (-38)          /* the other user's privacy settings forbid it */
#define PARLEY_E_STORAGE_FULL (-39)         /* the server's disk is full: not stored, retry later */
#define PARLEY_E_INVITE_REQUIRED (-40)      /* the server signs up only with an invite code */
#define PARLEY_E_INVITE_INVALID (-41)       /* the invite code is unknown, used up or expired */
#define PARLEY_E_REGISTRATION_CLOSED (-42)  /* the server's operator creates every account */
#define PARLEY_E_ACCOUNT_DISABLED (-43)     /* the operator disabled this account */
#define PARLEY_E_MAINTENANCE (-44)          /* the server is down for maintenance: try another or later */
#define PARLEY_E_NO_TARGET (-45)            /* an action's target (or a reply's quote) is no message */
#define PARLEY_E_WINDOW_CLOSED (-46)        /* too late to edit or delete that message */
#define PARLEY_E_NOT_AUTHOR (-47)           /* only its sender (a group admin: delete) may do that */
/* Local error codes. */
#define PARLEY_E_CONNECT (-100)  /* cannot reach the server */
#define PARLEY_E_TIMEOUT (-101)  /* no answer in time */
#define PARLEY_E_CLOSED (-102)   /* the connection closed */
#define PARLEY_E_PROTOCOL (-103) /* the server sent something we cannot parse */
#define PARLEY_E_STATE (-104)    /* call not valid now (e.g. send before auth) */
#define PARLEY_E_ARG (-105)      /* bad argument to a library call */
#define PARLEY_E_TLS                                                        \
  (-106) /* TLS failed: the certificate is not trusted or does not name the \
            host, or the handshake broke; parley_tls_error() says which */

/* Returns a short message for any code above; never NULL. */
const char *parley_strerror(int code);

typedef struct parley parley;

typedef enum parley_kind {
  PARLEY_KIND_MOBILE = 1,
  PARLEY_KIND_WEB = 2,
  PARLEY_KIND_IOT = 3,
  PARLEY_KIND_BOT = 4,
} parley_kind;

/* Group roles and membership events (docs/protocol.md 11.8). */
#define PARLEY_ROLE_NONE 0
#define PARLEY_ROLE_MEMBER 1
#define PARLEY_ROLE_ADMIN 2
#define PARLEY_ROLE_OWNER 3
#define PARLEY_GE_CREATED 1 /* actor made the group (name) */
#define PARLEY_GE_ADDED 2   /* actor added user */
#define PARLEY_GE_REMOVED 3 /* actor removed user */
#define PARLEY_GE_LEFT 4    /* user left */
#define PARLEY_GE_RENAMED 5 /* actor renamed the group to name */
#define PARLEY_GE_ROLE 6    /* actor gave user role */

typedef struct parley_group_event {
  int type; /* PARLEY_GE_* */
  const char *actor, *user, *name;
  int role;
} parley_group_event;

/* An attachment: an upload the server stored (docs/protocol.md 13). Fetch
 * it over HTTP: GET /media/<id> (and /media/<id>/thumb) with the session
 * token as a Bearer token. */
typedef struct parley_media {
  const char *id;   /* 32 hex digits */
  const char *type; /* MIME type the server sniffed, e.g. "image/jpeg" */
  uint64_t size;
  uint32_t width, height;             /* as displayed; 0 for plain files */
  uint32_t thumb_width, thumb_height; /* 0: no thumbnail */
  uint64_t thumb_size;
  const char *name; /* file name given at upload, or "" */
} parley_media;

/* What a message does besides carrying text (docs/protocol.md 11.9): each
 * action is a message of its own in the conversation, acting on an earlier
 * one by its seq. */
enum {
  PARLEY_ACT_NONE = 0,          /* a plain message: maybe a reply (reply_to) or forwarded */
  PARLEY_ACT_REACTION = 1,      /* body: the reaction ("" removes mine) to target */
  PARLEY_ACT_EDIT = 2,          /* body: the new text of target */
  PARLEY_ACT_DELETE = 3,        /* delete target for everyone */
  PARLEY_ACT_TIMER = 4,         /* disappearing messages: timer_s (0, 86400, 604800, 7776000) */
  PARLEY_ACT_DELETE_FOR_ME = 5, /* to myself: hide target of target_conv on my devices */
};

typedef struct parley_act {
  int kind;                /* PARLEY_ACT_* */
  uint64_t target;         /* REACTION, EDIT, DELETE, DELETE_FOR_ME: the seq acted on */
  uint64_t reply_to;       /* NONE: the quoted message's seq (0: not a reply) */
  int forwarded;           /* NONE: the body was forwarded */
  uint32_t timer_s;        /* TIMER */
  const char *target_conv; /* DELETE_FOR_ME (NULL or "" otherwise) */
  uint64_t vanish_at;      /* received only: ms since the epoch when to drop the message (0: never) */
} parley_act;

/* A received message. Every pointer is valid only during the callback. */
typedef struct parley_message {
  uint64_t qid;            /* server message id, increasing in this device's queue */
  const char *conv;        /* conversation id, e.g. "dm:alice:bob" */
  uint64_t seq;            /* position in the conversation, gap-free from 1 */
  const char *from;        /* sender user name */
  const char *from_device; /* sender device name */
  const char *id;          /* sender's client message id */
  const uint8_t *body;     /* message bytes (text is UTF-8, not NUL-terminated) */
  size_t body_len;
  uint64_t client_ts;              /* sender's (corrected) clock, ms since the epoch */
  uint64_t server_ts;              /* server clock at commit, ms since the epoch */
  const char *group;               /* a group message: the group id ("" for 1:1) */
  const parley_group_event *event; /* a membership event of the group (body empty), or NULL */
  const parley_media *media;       /* an image or file (body is its caption), or NULL */
  const parley_act *act;           /* what it does (docs/protocol.md 11.9), or NULL: a plain message */
} parley_message;

/* The server's ack of a sent message. Pointers valid during the callback. */
typedef struct parley_send_ack {
  const char *id; /* the client message id */
  const char *conv;
  uint64_t seq;
  uint64_t server_ts;
  int duplicate; /* the server had committed this id before */
} parley_send_ack;

/* Conversation events (docs/protocol.md 11.4-11.7). Pointers are valid
 * during the callback only. Queued events (qid > 0: the device was offline
 * when they were made) are filtered and acknowledged like messages; live
 * ones have qid 0. */
typedef enum parley_event_type {
  PARLEY_EV_RECEIPT = 1,   /* user's devices got (status 1) / user read (2) conv up to seq */
  PARLEY_EV_READ_SYNC = 2, /* another device of yours read conv up to seq; unread left */
  PARLEY_EV_PRESENCE = 3,  /* user is online or not (visible 0: you may not see) */
  PARLEY_EV_TYPING = 4,    /* user types in conv (typing 0: stopped) */
} parley_event_type;

#define PARLEY_RECEIPT_DELIVERED 1
#define PARLEY_RECEIPT_READ 2

typedef struct parley_event {
  parley_event_type type;
  uint64_t qid;
  const char *conv; /* RECEIPT, READ_SYNC, TYPING */
  const char *user; /* RECEIPT: by; PRESENCE: whose; TYPING: from */
  int status;       /* RECEIPT: PARLEY_RECEIPT_* */
  uint64_t seq;     /* RECEIPT, READ_SYNC: watermark */
  uint64_t unread;  /* READ_SYNC */
  int visible, online;
  uint64_t last_seen;  /* PRESENCE: ms since the epoch, 0 if hidden or online */
  int typing;          /* TYPING */
  uint32_t expires_ms; /* TYPING: treat as stopped after this long */
  uint64_t server_ts;
} parley_event;

/* A user's presence as parley_presence_wait reports it. */
typedef struct parley_presence {
  int visible, online;
  uint64_t last_seen;
} parley_presence;

typedef enum parley_state {
  PARLEY_STATE_DISCONNECTED = 0,
  PARLEY_STATE_CONNECTED = 1,     /* hello done, not authenticated */
  PARLEY_STATE_AUTHENTICATED = 2, /* ready: sends flow, messages arrive */
} parley_state;

typedef struct parley_callbacks {
  /* A message arrived. */
  void (*on_message)(parley *c, const parley_message *m, void *ud);
  /* A sent message was committed by the server. */
  void (*on_ack)(parley *c, const parley_send_ack *a, void *ud);
  /* A sent message was refused for good (code: UNKNOWN_PEER, MESSAGE_TOO_LARGE,
   * INVALID_ARGUMENT, QUEUE_FULL...). It is removed from the outbox. */
  void (*on_send_error)(parley *c, const char *id, int code, const char *message, void *ud);
  /* The connection state changed; err is the reason for a disconnect (or 0). */
  void (*on_state)(parley *c, parley_state state, int err, void *ud);
  /* A receipt, read sync, presence or typing event. */
  void (*on_event)(parley *c, const parley_event *e, void *ud);
} parley_callbacks;

typedef struct parley_options {
  const char *host;        /* default "127.0.0.1" */
  int port;                /* default 7700 */
  parley_kind kind;        /* default PARLEY_KIND_BOT */
  const char *client_name; /* sent in Hello; default "libparley/<version>" */
  int auto_ack;            /* default 1 (see above); set -1 for "off" */
  int auto_reconnect;      /* default 1; set -1 for "off" */
  int reconnect_min_ms;    /* default 200 */
  int reconnect_max_ms;    /* default 10000 */
  int request_timeout_ms;  /* blocking calls' timeout; default 10000 */
  int protocol;            /* protocol version: 0 = 2 (the newest); 1 for an old single-node server */
  /* TLS (docs/protocol.md 1, "TLS"): the server's certificate is verified
   * against ca_file (PEM) or, when NULL, the system's CAs, and must name
   * tls_name (default: host). */
  int tls;              /* 1: connect over TLS (parleyd --listen-tls); default 0 */
  const char *ca_file;  /* default NULL: the system's CAs */
  const char *tls_name; /* default NULL: host */
  parley_callbacks cb;
  void *ud; /* passed to every callback */
} parley_options;

/* Creates a handle (not connected). opt may be NULL for all defaults; it is
 * copied (strings too). Never returns NULL except on out of memory. */
parley *parley_new(const parley_options *opt);
/* Closes the connection and frees the handle and its outbox. */
void parley_free(parley *c);

/* Connects and exchanges Hello/Welcome (blocking, up to request_timeout_ms). */
int parley_connect(parley *c);

/* Blocking authentication calls on a connected handle. On success the handle
 * is AUTHENTICATED and parley_token() returns the session token. */
int parley_register(parley *c, const char *user, const char *password, const char *device);
/* parley_register with an invite code (a server with --registration invite;
 * NULL or "": none). PARLEY_E_INVITE_REQUIRED, _INVITE_INVALID or
 * _REGISTRATION_CLOSED when the server refuses the sign-up. */
int parley_register_invite(parley *c, const char *user, const char *password, const char *device,
                           const char *invite);
int parley_login(parley *c, const char *user, const char *password, const char *device);
int parley_resume(parley *c, const char *token);
/* Revokes the token on the server and closes (blocking). */
int parley_logout(parley *c);

/* The session token (NULL before auth); owned by the handle. */
const char *parley_token(const parley *c);
const char *parley_user(const parley *c);
const char *parley_device(const parley *c);
/* After PARLEY_E_RATE_LIMITED (a throttled Register, Login or Resume,
 * docs/protocol.md 7.6): the ms the server asked to wait before trying again
 * (the engine's own reconnect waits at least this long). 0 otherwise. */
uint32_t parley_retry_after_ms(const parley *c);
parley_state parley_get_state(const parley *c);

/* Queues a message for peer (a user name). id may be NULL: the library makes
 * a random one. The id used is copied to id_out (at least 65 bytes) if not
 * NULL. Returns at once; the result arrives through on_ack/on_send_error.
 * client_ts is taken from parley_server_now() (the corrected clock). */
int parley_send(parley *c, const char *id, const char *peer, const void *body, size_t len, char *id_out);

/* Sends and waits for the server's ack (runs parley_run meanwhile). On
 * PARLEY_OK fills *ack (its strings valid until the next call on c). */
int parley_send_wait(parley *c, const char *id, const char *peer, const void *body, size_t len,
                     parley_send_ack *ack, int timeout_ms);

/* The same for a group (its id): only members may send; your own devices,
 * this one included, receive the message too (docs/protocol.md 11.8). */
int parley_send_group(parley *c, const char *id, const char *group, const void *body, size_t len,
                      char *id_out);
int parley_send_group_wait(parley *c, const char *id, const char *group, const void *body, size_t len,
                           parley_send_ack *ack, int timeout_ms);

/* The same with an attachment: media_id from the upload's answer (POST
 * /media, docs/protocol.md 13); body is its caption (may be empty). To a
 * user (peer) or, with peer NULL, to group. */
int parley_send_media_wait(parley *c, const char *id, const char *peer, const char *group,
                           const char *media_id, const void *caption, size_t len, parley_send_ack *ack,
                           int timeout_ms);

/* A message with an action (docs/protocol.md 11.9): a reply, forward,
 * reaction, edit, delete or timer change, to peer or (peer NULL) group.
 * Delivered, retried and deduplicated like any message. The server refuses
 * with NO_TARGET, WINDOW_CLOSED, NOT_AUTHOR, FORBIDDEN (a group member's
 * timer), FILTERED, BLOCKED or INVALID_ARGUMENT (fields that do not fit the
 * kind); act->vanish_at must be 0. */
int parley_send_act(parley *c, const char *id, const char *peer, const char *group, const parley_act *act,
                    const void *body, size_t len, char *id_out);
int parley_send_act_wait(parley *c, const char *id, const char *peer, const char *group,
                         const parley_act *act, const void *body, size_t len, parley_send_ack *ack,
                         int timeout_ms);

/* Forwards body (and, with media_id not NULL or "", the attachment of that
 * id, one this user sent or received) to peer or (peer NULL) group, marked
 * forwarded (docs/protocol.md 11.9): parley_send_act with a forwarded act
 * that can carry media. Returns at once, like parley_send. */
int parley_forward(parley *c, const char *id, const char *peer, const char *group, const char *media_id,
                   const void *body, size_t len, char *id_out);

/* Acknowledges every delivered queue entry with qid <= upto (for auto_ack
 * off). In protocol 2 group messages are not covered: use parley_ack_message. */
int parley_ack(parley *c, uint64_t upto);
/* Acknowledges m and everything before it in its stream (its group's
 * history by seq, or the device's queue by qid); for auto_ack off. */
int parley_ack_message(parley *c, const parley_message *m);
/* Acknowledges everything delivered to the application so far, in every
 * stream (for auto_ack off: call it once what was delivered is safe). */
int parley_ack_delivered(parley *c);

/* Requests on an authenticated handle that block (running parley_run) until
 * the server answers or timeout_ms (<= 0: request_timeout_ms) passes. They
 * return PARLEY_OK or a negative code (the server's Error, or a local one). */

/* Marks the conversation with peer read up to seq. */
int parley_mark_read_wait(parley *c, const char *peer, uint64_t seq, int timeout_ms);
/* Contacts: op 0 list, 1 add user, 2 remove user. *names (sorted, NULL
 * terminated; free with parley_free_names) gets the list after the request. */
int parley_contacts_wait(parley *c, int op, const char *user, char ***names, int timeout_ms);
void parley_free_names(char **names);
/* Blocks (blocked 1) or unblocks (0) user. */
int parley_block_wait(parley *c, const char *user, int blocked, int timeout_ms);
/* Registers this device for push notifications while it is offline
 * (docs/protocol.md 13): provider "webhook", "fcm" or "apns" (one the server
 * enabled), token the provider's device token (at most 4096 bytes). A NULL
 * or empty token unregisters the device. PARLEY_E_ARG (locally) for a
 * missing provider; the server answers INVALID_ARGUMENT for a provider it
 * does not run or a token too long. */
int parley_push_register_wait(parley *c, const char *provider, const char *token, int timeout_ms);
/* This user's signed-in devices (docs/protocol.md, "Devices"). */
typedef struct parley_device_info {
  char *name;
  uint64_t id;
  uint64_t created, last_used; /* ms since the epoch: first login; last login or resume */
  int current;                 /* the device of this handle */
  int online;                  /* connected now */
} parley_device_info;

#define PARLEY_DEVICES_LIST 0
#define PARLEY_DEVICES_REVOKE 1        /* the device named device (not this one: use parley_logout) */
#define PARLEY_DEVICES_REVOKE_OTHERS 2 /* every device but this one */

/* Does op, then lists the devices still signed in: *out (*n entries, oldest
 * first; may be NULL) is freed with parley_devices_free. A revoked device is
 * logged out: its token stops working, its queue is dropped and its
 * connection closed. INVALID_ARGUMENT for an unknown name or this device's. */
int parley_devices_wait(parley *c, int op, const char *device, parley_device_info **out, size_t *n,
                        int timeout_ms);
void parley_devices_free(parley_device_info *d, size_t n);
/* The privacy settings (docs/protocol.md, "Settings", and 11.4, 11.6, 11.8).
 * In a change, PARLEY_UNCHANGED (0) leaves a field as it is; in an answer
 * every field holds the setting now (never 0). */
#define PARLEY_UNCHANGED 0
#define PARLEY_READ_RECEIPTS_ON 1   /* the default */
#define PARLEY_READ_RECEIPTS_OFF 2  /* send none, and receive none (11.4) */
#define PARLEY_LAST_SEEN_EVERYONE 1 /* every user you did not block */
#define PARLEY_LAST_SEEN_CONTACTS 2 /* users in your contact list (the default) */
#define PARLEY_LAST_SEEN_NOBODY 3
#define PARLEY_GROUP_ADD_EVERYONE 1 /* any user you did not block (the default) */
#define PARLEY_GROUP_ADD_CONTACTS 2 /* users in your contact list */
#define PARLEY_GROUP_ADD_NOBODY 3   /* nobody: others get PARLEY_E_NOT_ALLOWED */

typedef struct parley_settings {
  int read_receipts; /* PARLEY_READ_RECEIPTS_*: whether your reads are reported and others' shown */
  int last_seen;     /* PARLEY_LAST_SEEN_*: who sees your last-seen time */
  int group_add;     /* PARLEY_GROUP_ADD_*: who may add you to a group (create or add) */
} parley_settings;

/* Applies change (NULL, or all fields PARLEY_UNCHANGED: only reads), then
 * fills *out (if not NULL) with the settings now. Nothing is allocated.
 * PARLEY_E_ARG (locally, nothing sent) for a field out of the ranges above;
 * the server answers INVALID_ARGUMENT for one it does not know, and a
 * refused change changes no field. */
int parley_settings_wait(parley *c, const parley_settings *change, parley_settings *out, int timeout_ms);
/* One user's presence now. */
int parley_presence_wait(parley *c, const char *user, parley_presence *out, int timeout_ms);
/* Follows these users' presence (replaces the set): PARLEY_EV_PRESENCE events. */
int parley_subscribe_wait(parley *c, const char *const *users, size_t n, int timeout_ms);
/* Groups (docs/protocol.md 11.8). A parley_group is filled by the calls
 * below and owns its strings: release it with parley_group_clear. */
typedef struct parley_group_member {
  char *user;
  int role; /* PARLEY_ROLE_* */
} parley_group_member;

typedef struct parley_group {
  char *id, *name, *description;
  int my_role; /* PARLEY_ROLE_NONE after leaving or being removed */
  uint64_t member_count, last_seq;
  parley_group_member *members; /* sorted by name; none from parley_group_list_wait */
  size_t nmembers;
} parley_group;

#define PARLEY_GROUP_INFO 0
#define PARLEY_GROUP_ADD 1      /* user (admins and the owner) */
#define PARLEY_GROUP_REMOVE 2   /* user (admins: members only; the owner: anyone) */
#define PARLEY_GROUP_LEAVE 3    /* yourself */
#define PARLEY_GROUP_RENAME 4   /* name, description (admins and the owner) */
#define PARLEY_GROUP_SET_ROLE 5 /* user to role ADMIN or MEMBER (the owner) */

void parley_group_clear(parley_group *g);
/* Makes a group you own with these members; out (may be NULL) gets it. */
int parley_group_create_wait(parley *c, const char *name, const char *description, const char *const *members,
                             size_t n, parley_group *out, int timeout_ms);
/* One PARLEY_GROUP_* operation; out (may be NULL) gets the group after it. */
int parley_group_update_wait(parley *c, const char *group, int op, const char *user, const char *name,
                             const char *description, int role, parley_group *out, int timeout_ms);
/* The groups you are in, by id: *out (n entries) is freed with parley_groups_free. */
int parley_group_list_wait(parley *c, parley_group **out, size_t *n, int timeout_ms);
void parley_groups_free(parley_group *g, size_t n);
/* Marks the group read up to seq (your other devices get a read sync). */
int parley_group_mark_read_wait(parley *c, const char *group, uint64_t seq, int timeout_ms);
/* Who of the other members has seq delivered / read: counts always, names
 * (NULL terminated, sorted; parley_group_receipts_clear) when detailed. */
typedef struct parley_group_receipts {
  uint64_t members, delivered, read;
  int detailed;
  char **delivered_by, **read_by;
} parley_group_receipts;
int parley_group_receipts_wait(parley *c, const char *group, uint64_t seq, parley_group_receipts *out,
                               int timeout_ms);
void parley_group_receipts_clear(parley_group_receipts *r);
/* Typing in a group (not sent on in large groups); no answer. */
int parley_group_typing(parley *c, const char *group, int typing);

/* Tells peer's devices that you type (typing 1) or stopped (0); no answer. */
int parley_typing(parley *c, const char *peer, int typing);

/* Does all pending work: reads and dispatches frames, flushes the outbox and
 * acks, sends heartbeats, reconnects. Waits up to timeout_ms for the socket
 * (0 = don't wait). Returns PARLEY_OK, or a negative code if the connection
 * is down and will not come back (auto_reconnect off, or bad token). */
int parley_run(parley *c, int timeout_ms);

/* Messages in the outbox not yet acked. */
size_t parley_outbox_len(const parley *c);

/* Server clock minus local clock, ms (from Welcome and each Pong, using the
 * round trip's midpoint). */
int64_t parley_clock_offset(const parley *c);
/* Local clock corrected by the offset: the server's now, ms since the epoch. */
uint64_t parley_server_now(const parley *c);
/* Heartbeat interval the server asked for, ms. */
uint32_t parley_heartbeat_ms(const parley *c);

/* The socket (for the application's own poll loop), or -1. With TLS,
 * bytes may wait decrypted inside the library: call parley_run with a zero
 * timeout after each wake-up rather than relying on the socket alone. */
int parley_fd(const parley *c);
/* Why the last connect failed with PARLEY_E_TLS, for a person ("" if it
 * did not). Valid until the next connect. */
const char *parley_tls_error(const parley *c);

#ifdef __cplusplus
}
#endif
#endif
