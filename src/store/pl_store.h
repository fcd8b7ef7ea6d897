/* pl_store: the durable store, an asynchronous interface over a backend.
 *
 * Callers (the session layer, on loop threads) fill a pl_store_req and submit
 * it. One store thread takes every queued request, runs the whole batch in
 * one transaction on the backend and commits it once (group commit: one fsync
 * for many messages, acks and deletes), then:
 *   1. for every SEND that committed a new message, calls the deliver hook
 *      (on the store thread, in commit order: this is what keeps each
 *      device's live stream in queue order), then
 *   2. hands every request back through the post hook, in submission order,
 *      so its done callback runs on the caller's thread.
 * A request whose batch failed to commit comes back with PL_ERR_INTERNAL and
 * nothing of it was stored.
 *
 * Disk full: when a batch fails because the disk is full, the store
 * releases its disk reserve (pl_reserve), checkpoints, and runs the batch
 * again without what would grow the data: while the disk stays full, SEND
 * and MEDIA_PUT fail with PL_ERR_STORAGE_FULL (retry after
 * PL_STORE_FULL_RETRY_MS), acks, deletes, logins and the rest go through.
 * Every second it looks at the free space; once there is room on the disk it
 * holds the reserve again and takes messages, and meanwhile takes them while
 * acks have left room inside the database (docs/operations.md, "Disk full").
 *
 * The backend (SQLite now, PostgreSQL later) is a vtable (pl_store_backend);
 * nothing above this header knows which one runs. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/pl_err.h"
#include "../common/pl_hist.h"
#include "../rules/pl_acts.h"

/* What a queue entry is (messages.kind). Events share the queue, the qid
 * sequence and the Ack with messages (docs/protocol.md 11.4). */
typedef enum pl_msg_kind {
  PL_MSG_MESSAGE = 0,     /* a Message */
  PL_MSG_DELIVERED = 1,   /* Receipt RECEIPT_DELIVERED: from = the receiving user */
  PL_MSG_READ = 2,        /* Receipt RECEIPT_READ: from = the reader */
  PL_MSG_READ_SYNC = 3,   /* ReadSync: from = this user, aux = unread count */
  PL_MSG_GROUP_EVENT = 4, /* a membership change in a group's history: a
                           * Message whose body is the packed GroupEvent */
} pl_msg_kind;

/* A stored message as delivered to a device. Strings are NUL-terminated. */
typedef struct pl_msg {
  uint64_t qid;      /* a queue entry's position in its device's queue; a group entry's: see gid */
  uint64_t gid;      /* a group history entry: its group, positioned by seq (0: a queue entry) */
  int kind;          /* pl_msg_kind; events use conv, seq, from, server_ts, aux */
  uint64_t aux;      /* READ_SYNC: unread count */
  char *conv;        /* "dm:<lower name>:<higher name>" (byte order) */
  uint64_t seq;      /* gap-free position in conv, from 1 */
  char *from;        /* sender user name */
  char *from_device; /* sender device name */
  char *id;          /* sender's client message id */
  uint8_t *body;
  size_t body_len;
  uint64_t client_ts, server_ts; /* ms since the epoch */
  uint8_t *media;                /* an attachment: a packed parley Media (NULL: none) */
  size_t media_len;
  uint8_t *act; /* what it does (protocol.md 11.9): a packed parley Act (NULL: a plain message) */
  size_t act_len;
} pl_msg;

/* An uploaded file as the store keeps it (the media table, protocol.md 13).
 * Blob keys name the bytes in the blob store (pl_blob). */
typedef struct pl_media_row {
  char id[33];    /* 32 hex digits */
  uint64_t owner; /* uploader's user id */
  char blob[65];  /* the file's key: hex SHA-256 of its bytes */
  char thumb[65]; /* the thumbnail's key ("" if none) */
  char type[64];  /* MIME type sniffed from the bytes */
  char name[128]; /* file name given at upload ("" if none) */
  uint64_t size, thumb_size;
  uint32_t width, height, thumb_width, thumb_height;
  uint64_t created, expires; /* ms since the epoch */
} pl_media_row;

typedef enum pl_store_op {
  PL_STORE_REGISTER = 1,   /* create user + first device */
  PL_STORE_GET_USER,       /* read a user's password hash (for login) */
  PL_STORE_LOGIN_DEVICE,   /* create or resume a device by name, set its token */
  PL_STORE_RESUME,         /* find the device of a token */
  PL_STORE_LOGOUT,         /* revoke a device's token; its queue and push token go in the same transaction */
  PL_STORE_SEND,           /* commit a 1:1 message (dedup, seq, queue) */
  PL_STORE_FETCH,          /* read a device's queue after a qid */
  PL_STORE_ACK,            /* drop a device's queue up to a qid; delivered receipts */
  PL_STORE_MARK_READ,      /* move a user's read watermark; read receipt + read sync */
  PL_STORE_SETTINGS,       /* change / read a user's privacy settings */
  PL_STORE_UNREAD,         /* every conversation's last seq and read watermark */
  PL_STORE_CONTACTS,       /* list / add / remove a contact */
  PL_STORE_BLOCK,          /* block / unblock a user */
  PL_STORE_PRESENCE,       /* may the user see each of these users' presence? */
  PL_STORE_SEEN,           /* record a user's last-seen time */
  PL_STORE_TYPING,         /* the devices a typing event goes to (nothing written) */
  PL_STORE_GROUP_CREATE,   /* make a group: the asker owns it, in.users join it */
  PL_STORE_GROUP_UPDATE,   /* info, add, remove, leave, rename, set role (in.group_op) */
  PL_STORE_GROUP_LIST,     /* the groups the user is in */
  PL_STORE_GROUP_RECEIPTS, /* how many (and which) members have a group's seq delivered / read */
  PL_STORE_MEDIA_AUTH,     /* token -> user and device, and the user's media usage (out.usage) */
  PL_STORE_MEDIA_PUT,      /* record an upload (in.media) if the user's quota allows */
  PL_STORE_MEDIA_GET,      /* a media row (out.media), if the token's user may see it */
  PL_STORE_GROUP_DEVICES,  /* every logged-in device of a group's members (nothing written) */
  PL_STORE_DEVICES,        /* a user's signed-in devices; revoke one or all others (in.device_op) */
  /* Push notifications (u.push_*; the claim rules are below) */
  PL_STORE_PUSH_TOKEN,   /* set or remove a device's push token; removing drops its pending row */
  PL_STORE_PUSH_TOKENS,  /* every token of a signed-in device (those of signed-out devices go) */
  PL_STORE_PUSH_ENQUEUE, /* a message for these devices: a pending row per device with a token */
  PL_STORE_PUSH_CLAIM,   /* lease the due rows to one sender */
  PL_STORE_PUSH_DONE,    /* what became of claimed rows */
  PL_STORE_STATS,        /* what the store holds, counted (out.counts; no input; nothing written) */
  PL_STORE_ADMIN,        /* the operator's calls (u.admin, in.action: PL_ADMIN_*; docs/admin.md) */
} pl_store_op;

/* DEVICES: what to do before listing (the values of DevicesOp on the wire). */
enum { PL_DEVICES_LIST = 0, PL_DEVICES_REVOKE = 1, PL_DEVICES_REVOKE_OTHERS = 2 };

/* A position in one group's history: (group, seq). A device's stream is
 * its queue (positions: qid) and the histories of its groups (positions:
 * seq), each in its own commit order; protocol version 2 acknowledges each
 * apart (docs/architecture.md 4). Arrays of them are sorted by gid. */
typedef struct pl_store_gpos {
  uint64_t gid, seq;
} pl_store_gpos;

/* A signed-in device (DEVICES). */
typedef struct pl_device_row {
  uint64_t id, created, used_at; /* ms since the epoch */
  char *name;
} pl_device_row;

/* STATS: rows the store holds now, for /metrics. Each is counted when
 * asked (a scan per figure on SQLite), so it is for a scrape interval, not
 * for every request. */
typedef struct pl_store_counts {
  uint64_t users;
  uint64_t devices;       /* signed in: holding a token (expired ones too, until revoked or signed out) */
  uint64_t messages;      /* 1:1 messages kept (until every target device acked, or the TTL) */
  uint64_t message_queue; /* queue entries of those messages (one per target device) */
  uint64_t events;        /* receipts and read syncs kept for offline devices (pl_msg_kind) */
  uint64_t queue;         /* every queue entry: messages' and events' */
  uint64_t group_history; /* group messages and membership events kept (stored once per group) */
  uint64_t groups;        /* groups made (a group is never deleted) */
  uint64_t members;       /* active group memberships (role > 0) */
  uint64_t dedup;         /* dedup records: accepted client ids kept for retries (TTL) */
  uint64_t media;         /* uploads recorded */
  uint64_t outbox;        /* copies owed to other shards, not made yet (a sharded store; else 0) */
} pl_store_counts;

/* Group roles and operations: the values of GroupRole / GroupOp on the wire. */
enum { PL_ROLE_NONE = 0, PL_ROLE_MEMBER = 1, PL_ROLE_ADMIN = 2, PL_ROLE_OWNER = 3 };
enum {
  PL_GROUP_INFO = 0,
  PL_GROUP_ADD = 1,
  PL_GROUP_REMOVE = 2,
  PL_GROUP_LEAVE = 3,
  PL_GROUP_RENAME = 4,
  PL_GROUP_SET_ROLE = 5,
};

typedef struct pl_group_member {
  char *user;
  int role;
} pl_group_member;

/* A group as a member sees it (GROUP_*: members only for CREATE/UPDATE). */
typedef struct pl_group_info {
  uint64_t gid;
  char *name, *description;
  int my_role;
  uint64_t member_count, last_seq;
  pl_group_member *members; /* sorted by name */
  size_t nmembers;
} pl_group_info;

/* Devices that start or stop receiving a group's live messages. */
typedef struct pl_group_change {
  uint64_t gid;
  uint64_t *devices;
  size_t n;
  int join; /* 1: applied before the request's events; 0: after them */
} pl_group_change;

/* PRESENCE: what the asking user may see of one user. */
typedef struct pl_presence_view {
  char *user;
  uint64_t uid;     /* 0: no such user */
  int visible;      /* the user has the asker as a contact and did not block them */
  int seen_visible; /* last-seen time visible to the asker (settings) */
  uint64_t last_seen;
} pl_presence_view;

/* A new queue entry a request made, with the devices it was queued for. */
typedef struct pl_store_event {
  pl_msg msg;
  uint64_t *targets;
  size_t ntargets;
  uint64_t *qids; /* each target's own qid (queue_exact backends), or NULL: msg.qid */
  uint64_t group; /* a group's history entry: to its members' devices, not targets */
} pl_store_event;

/* UNREAD: one conversation of the user. */
typedef struct pl_conv_state {
  char *conv;
  uint64_t last_seq, read_seq;
  uint64_t peer_delivered, peer_read; /* the other user's watermarks (read: 0 if receipts off) */
} pl_conv_state;

/* Pending push notifications: one row per device (a burst of messages to
 * an offline device collapses into it: count grows, the newest message's
 * sender, conversation and preview replace the older ones').
 *
 * Claim rules, the same for every backend, so that with several nodes on
 * one database each notification is sent by one node at a time:
 *   - CLAIM takes rows whose due_ms <= now, oldest due first, and in the
 *     same transaction moves each one's due_ms to now + lease_ms, sets its
 *     owner and increments its claim number (the fence). Two claimers never
 *     get the same row while its lease runs (SQLite: one writer; PostgreSQL:
 *     SELECT ... FOR UPDATE SKIP LOCKED in the claiming transaction).
 *   - A claimer that dies before DONE leaves the row leased; when the lease
 *     ends it is due again and the next CLAIM (any node) sends it again: at
 *     least once to the provider, with the same collapse id, so the phone
 *     shows it once.
 *   - DONE names each row's claim number: a result for a lease that ended
 *     and was taken by another claimer changes nothing (that one answers
 *     for it). Messages that came while a row was out (count above the
 *     claimed count) stay pending in a new window.
 *   - Removing a token (logout, revoke, unregister, or the provider saying
 *     it is invalid) removes the device's pending row with it. */
typedef struct pl_store_push_token {
  uint64_t device, user_id;
  char *user, *provider, *token;
} pl_store_push_token;

/* A claimed row (CLAIM), with the device's token as the claim found it. */
typedef struct pl_store_push_row {
  uint64_t device, user_id;
  uint64_t count;    /* messages it stands for, as claimed (DONE gives it back) */
  uint64_t first_ms; /* when its burst began */
  uint64_t claim;    /* the fence: DONE gives it back */
  uint32_t attempts; /* failed attempts before this one */
  char *user, *provider, *token;
  char *from, *conv; /* NULL in privacy mode */
  char *text;        /* the preview (NUL-terminated; text_len bytes), NULL if none */
  size_t text_len;
} pl_store_push_row;

enum {
  PL_PUSH_DONE_SENT = 1,  /* the provider took it, or refused it for good: the row's messages are done */
  PL_PUSH_DONE_LATER,     /* retry: due again at due_ms, after attempts failures */
  PL_PUSH_DONE_DROP,      /* no need or no way to send it (came online, gave up): the row goes */
  PL_PUSH_DONE_BAD_TOKEN, /* the provider disowns token: it goes (if still the device's) with the row */
  PL_PUSH_DONE_RELEASE,   /* not sent (stopping): due at once for the next claimer */
};

/* What became of one claimed row (DONE). */
typedef struct pl_store_push_result {
  uint64_t device, claim, count; /* as CLAIM returned them */
  int outcome;                   /* PL_PUSH_DONE_* */
  uint32_t attempts;             /* LATER */
  uint64_t due_ms;               /* LATER */
  const char *token;             /* BAD_TOKEN: the token that was sent to */
} pl_store_push_result;

typedef struct pl_store_req pl_store_req;
typedef void (*pl_store_done_cb)(pl_store_req *req);

#define PL_TOKEN_HASH_LEN 32
/* What a Send refused with STORAGE_FULL is told to wait (Error.retry_after_ms). */
#define PL_STORE_FULL_RETRY_MS 5000u

/* ---- one request type per operation ------------------------------------------
 *
 * A pl_store_req is a small common header (op, done, status, ...) and a union
 * u with one member per op, named after the op in lower case:
 *
 *     req->op = PL_STORE_SEND;   req->u.send.in.body = ...;   req->u.send.out.seq
 *
 * Each member has an in (what the caller gives; strings and arrays are
 * borrowed from it until done runs) and an out (what the store answers; owned
 * by the request, freed by pl_store_req_clear according to op). Only the
 * member of req->op may be used: filling another one writes over it. The
 * table of ops (pl_store_op_get) gives each op's name, whether it writes and
 * how its out is freed. A few ops share a member where their fields are the
 * same: LOGOUT uses u.ack (it acks the device's whole queue before its token
 * goes). PL_STORE_REGISTER's member is u.reg (register is a C keyword),
 * LOGIN_DEVICE's u.login. Who asks (user_id, device_id) is in the common
 * header, not in each in. */

/* REGISTER: create a user and its first device. */
typedef struct pl_store_register_req {
  struct {
    const char *user;                      /* new user's name */
    const char *device;                    /* first device's name */
    const char *pwhash;                    /* Argon2id string (crypto_pwhash_str) */
    uint8_t token_hash[PL_TOKEN_HASH_LEN]; /* the device's token, hashed */
    const char *invite;                    /* an invite code to use up (NULL: none asked) */
  } in;
  struct {
    uint64_t user_id, device_id; /* the new user and device */
  } out;
} pl_store_register_req;

/* GET_USER: a user's password hash, for login. */
typedef struct pl_store_get_user_req {
  struct {
    const char *user; /* user name */
  } in;
  struct {
    uint64_t user_id; /* 0: no such user */
    char *pwhash;     /* the stored Argon2id string */
    int disabled;     /* the operator's ban: said only after the password checked out */
  } out;
} pl_store_get_user_req;

/* LOGIN_DEVICE: create or resume a device by name and set its token. */
typedef struct pl_store_login_req {
  struct {
    const char *device;                    /* device name */
    uint8_t token_hash[PL_TOKEN_HASH_LEN]; /* its new token, hashed */
  } in;
  struct {
    uint64_t user_id, device_id;
    int created; /* a new device was made */
  } out;
} pl_store_login_req;

/* RESUME: the device of a token (a good token's last use becomes now). */
typedef struct pl_store_resume_req {
  struct {
    uint8_t token_hash[PL_TOKEN_HASH_LEN];
  } in;
  struct {
    uint64_t user_id, device_id;
    char *user;   /* user name */
    char *device; /* device name */
  } out;
} pl_store_resume_req;

/* ACK: drop a device's queue up to a qid; delivered receipts go out as
 * events (req->user_id 0: none). LOGOUT uses it too, with no input: the
 * asking device's token and whole queue go. */
typedef struct pl_store_ack_req {
  struct {
    uint64_t upto; /* qid acked, inclusive (LOGOUT: all; streams 0: group entries too) */
    /* 0 (protocol 1): one stream in qid order. 1 (protocol 2): the queue
     * and each group are streams of their own: upto covers the queue;
     * group entries go by seq (gacks). */
    int streams;
    const pl_store_gpos *gacks; /* streams 1: per group, every entry up to seq is received */
    size_t ngacks;
  } in;
  struct {
    uint64_t removed; /* queue entries removed */
  } out;
} pl_store_ack_req;

/* SEND: commit a message (dedup, seq, queue), 1:1 or to a group. */
typedef struct pl_store_send_req {
  struct {
    const char *device_name; /* sending device's name */
    const char *peer;        /* recipient user name (1:1) */
    uint64_t group;          /* or a group (peer unused) */
    const char *client_id;   /* sender's message id (dedup) */
    const uint8_t *body;
    size_t body_len;
    uint64_t client_ts;
    const char *media_id; /* an attachment (NULL: none) */
    const pl_act *act;    /* a reply, reaction, edit, ... (NULL: a plain message); pl_acts_check passed */
  } in;
  struct {
    char *conv;              /* the conversation */
    uint64_t seq, server_ts; /* its place in conv */
    int duplicate;           /* client_id was committed before (msg is empty) */
    pl_msg msg;              /* the committed message */
    uint64_t *targets;       /* 1:1: devices it was queued for */
    size_t ntargets;
    /* A backend that allocates queue positions per device (queue_exact):
     * each target's own qid, parallel to targets (msg.qid is then unused);
     * NULL: msg.qid for every target. */
    uint64_t *qids;
    uint64_t group;     /* the group it went to (deliver to its members) */
    uint64_t vanish_at; /* disappearing messages: when it vanishes (0: never) */
  } out;
} pl_store_send_req;

/* FETCH: read a device's queue after a qid. A backend that several nodes
 * share answers BAD_TOKEN (status) for a device that is signed out: a
 * session whose revocation was announced while its node was cut off from
 * the others (the kick lost on the bus) closes at its next fetch, which
 * the bus's reconnection brings about. */
typedef struct pl_store_fetch_req {
  struct {
    uint64_t after; /* queue entries with qid > after (streams 0: group entries too) */
    uint32_t limit; /* at most this many (0 = 256) */
    /* and about this many bytes (0 = 1 MiB): a page stops after the entry
     * that passes it (so one entry larger than it still comes) */
    uint32_t max_bytes;
    /* 0 (protocol 1): one stream in qid order. 1 (protocol 2): the queue
     * and each group are streams of their own: after covers the queue;
     * group entries go by seq (gafter). */
    int streams;
    const pl_store_gpos *gafter; /* streams 1: per group, the highest seq written on this
                                  * connection (fetch after it; unlisted: after the stored cursor) */
    size_t ngafter;
  } in;
  struct {
    pl_msg *msgs; /* in qid order */
    size_t nmsgs;
    int more; /* more messages remain after these */
    /* Some of what the device may be owed was not read: a shard holding
     * its groups (or their memberships) was away (a sharded store). The
     * page is good; the session fetches again at its next idle check. */
    int partial;
    uint64_t *gids; /* the groups the device receives (active ones) */
    size_t ngids;
  } out;
} pl_store_fetch_req;

/* MARK_READ: move a user's read watermark; a read receipt and a read sync
 * go out as events. */
typedef struct pl_store_mark_read_req {
  struct {
    const char *peer; /* the other user (1:1) */
    uint64_t group;   /* or a group (peer unused) */
    uint64_t upto;    /* seq read, inclusive */
  } in;
} pl_store_mark_read_req;

/* SETTINGS: change and read a user's privacy settings. */
typedef struct pl_store_settings_req {
  struct {
    int read_receipts; /* 0 unchanged, 1 on, 2 off */
    int last_seen;     /* 0 unchanged, else PL_LAST_SEEN_* */
    int group_add;     /* 0 unchanged, else PL_GROUP_ADD_* (pl_rules.h: 1..3) */
  } in;
  struct {
    int read_receipts; /* after the change: 1 on, 2 off */
    int last_seen;     /* PL_LAST_SEEN_* */
    int group_add;     /* who may add the user to groups (1..3) */
  } out;
} pl_store_settings_req;

/* UNREAD: every conversation's last seq and read watermark. */
typedef struct pl_store_unread_req {
  struct {
    pl_conv_state *convs;
    size_t nconvs;
  } out;
} pl_store_unread_req;

/* CONTACTS: list, add or remove a contact. */
typedef struct pl_store_contacts_req {
  struct {
    int contact_op;   /* 0 list, 1 add, 2 remove */
    const char *peer; /* add, remove: the contact */
  } in;
  struct {
    char **names; /* the list after the change, sorted */
    size_t nnames;
    uint64_t peer_id; /* the contact added or removed */
  } out;
} pl_store_contacts_req;

/* BLOCK: block or unblock a user. */
typedef struct pl_store_block_req {
  struct {
    const char *peer; /* the user blocked or unblocked */
    int blocked;      /* 1 block, 0 unblock */
  } in;
  struct {
    uint64_t peer_id; /* the other user */
  } out;
} pl_store_block_req;

/* PRESENCE: may the user see each of these users' presence? */
typedef struct pl_store_presence_req {
  struct {
    const char *const *users; /* the users asked about */
    size_t nusers;
  } in;
  struct {
    pl_presence_view *views; /* in the order asked */
    size_t nviews;
  } out;
} pl_store_presence_req;

/* SEEN: record a user's last-seen time (nothing out). */
typedef struct pl_store_seen_req {
  struct {
    uint64_t at; /* ms since the epoch */
  } in;
} pl_store_seen_req;

/* TYPING: the devices a typing event goes to (nothing written). */
typedef struct pl_store_typing_req {
  struct {
    const char *peer; /* 1:1: the other user */
    uint64_t group;   /* or a group (peer unused) */
  } in;
  struct {
    char *conv;        /* the conversation (a group's too) */
    uint64_t *targets; /* 1:1: the peer's devices; in a group the devices NOT to tell
                        * (members who blocked the typist) */
    size_t ntargets;
    uint64_t group; /* a group small enough for typing events: tell its members */
  } out;
} pl_store_typing_req;

/* GROUP_CREATE: make a group; the asker owns it, in.users join it. */
typedef struct pl_store_group_create_req {
  struct {
    const char *const *users; /* members to add */
    size_t nusers;
    const char *name, *description;
  } in;
  struct {
    pl_group_info info; /* the new group, with its members */
  } out;
} pl_store_group_create_req;

/* GROUP_UPDATE: info, add, remove, leave, rename, set role. */
typedef struct pl_store_group_update_req {
  struct {
    uint64_t group;
    int group_op;                   /* PL_GROUP_* */
    const char *peer;               /* ADD, REMOVE, SET_ROLE: the member */
    int role;                       /* SET_ROLE */
    const char *name, *description; /* RENAME */
  } in;
  struct {
    pl_group_info info; /* the group after it, with its members */
  } out;
} pl_store_group_update_req;

/* GROUP_LIST: the groups the user is in. */
typedef struct pl_store_group_list_req {
  struct {
    pl_group_info *groups; /* by gid, no members */
    size_t ngroups;
  } out;
} pl_store_group_list_req;

/* GROUP_RECEIPTS: how many (and which) members have a group's seq
 * delivered / read. */
typedef struct pl_store_group_receipts_req {
  struct {
    uint64_t group;
    uint64_t upto; /* the seq asked about */
  } in;
  struct {
    uint64_t members, delivered, read; /* other members, and how many of them */
    int detailed;                      /* names follow */
    char **names;                      /* delivered by, sorted */
    size_t nnames;
    char **read_by; /* sorted */
    size_t nread_by;
  } out;
} pl_store_group_receipts_req;

/* GROUP_DEVICES: every logged-in device of a group's members (nothing
 * written). */
typedef struct pl_store_group_devices_req {
  struct {
    uint64_t group;
  } in;
  struct {
    uint64_t *targets;
    size_t ntargets;
  } out;
} pl_store_group_devices_req;

/* MEDIA_AUTH: token -> user and device, and the user's media usage. */
typedef struct pl_store_media_auth_req {
  struct {
    uint8_t token_hash[PL_TOKEN_HASH_LEN];
  } in;
  struct {
    uint64_t user_id, device_id;
    char *user, *device; /* names */
    uint64_t usage;      /* bytes the user's media take */
  } out;
} pl_store_media_auth_req;

/* MEDIA_PUT: record an upload if the user's quota allows. */
typedef struct pl_store_media_put_req {
  struct {
    const pl_media_row *media; /* the row (owner = user_id) */
    uint64_t quota;            /* the user's limit in bytes (0: none) */
  } in;
  struct {
    uint64_t usage; /* bytes the user's media take (with it, if recorded) */
  } out;
} pl_store_media_put_req;

/* MEDIA_GET: a media row, if the token's user may see it. */
typedef struct pl_store_media_get_req {
  struct {
    uint8_t token_hash[PL_TOKEN_HASH_LEN]; /* unless any_user */
    const char *media_id;
    int any_user; /* no token, no access check (a signed link was checked) */
  } in;
  struct {
    uint64_t user_id, device_id; /* the token's */
    char *user, *device;
    pl_media_row media;
  } out;
} pl_store_media_get_req;

/* DEVICES: a user's signed-in devices; revoke one or all others first. */
typedef struct pl_store_devices_req {
  struct {
    int device_op;    /* PL_DEVICES_* */
    const char *name; /* REVOKE: the device's name */
  } in;
  struct {
    pl_device_row *devices; /* signed in after the request, by id */
    size_t ndevices;
    uint64_t *targets; /* revoked devices' ids ... */
    size_t ntargets;
    char **names; /* ... and names */
    size_t nnames;
  } out;
} pl_store_devices_req;

/* PUSH_TOKEN: set or remove a device's push token; removing drops its
 * pending row. */
typedef struct pl_store_push_token_req {
  struct {
    uint64_t now; /* ms since the epoch */
    uint64_t device, user_id;
    const char *user, *provider;
    const char *token; /* NULL or "": remove */
  } in;
} pl_store_push_token_req;

/* PUSH_TOKENS: every token of a signed-in device (those of signed-out
 * devices go). */
typedef struct pl_store_push_tokens_req {
  struct {
    pl_store_push_token *tokens;
    size_t ntokens;
  } out;
} pl_store_push_tokens_req;

/* PUSH_ENQUEUE: a message for these devices: a pending row per device with
 * a token. */
typedef struct pl_store_push_enqueue_req {
  struct {
    uint64_t now;
    const uint64_t *devices; /* devices without a token are skipped */
    size_t ndevices;
    const char *sender;             /* its user's own devices are skipped */
    const char *from, *conv, *text; /* NULL in privacy mode; text: text_len bytes */
    size_t text_len;
    uint64_t window_ms; /* a new row is due this long after it opens */
  } in;
  struct {
    uint64_t enqueued; /* devices that got a row or a message more in one */
  } out;
} pl_store_push_enqueue_req;

/* PUSH_CLAIM: lease the due rows to one sender. */
typedef struct pl_store_push_claim_req {
  struct {
    uint64_t now;
    const char *owner; /* who leases (a node name) */
    uint64_t lease_ms;
    uint32_t limit; /* at most this many rows */
  } in;
  struct {
    pl_store_push_row *rows; /* in due order */
    size_t nrows;
    uint64_t pending;  /* rows left after it (claimed ones included) */
    uint64_t next_due; /* when the next row falls due (0: no row) */
  } out;
} pl_store_push_claim_req;

/* PUSH_DONE: what became of claimed rows. */
typedef struct pl_store_push_done_req {
  struct {
    uint64_t now;
    uint64_t window_ms; /* messages that came meanwhile: due this long after now */
    const pl_store_push_result *results;
    size_t nresults;
  } in;
} pl_store_push_done_req;

/* STATS: what the store holds, counted (no input; nothing written). */
typedef struct pl_store_stats_req {
  struct {
    pl_store_counts counts;
  } out;
} pl_store_stats_req;

/* ADMIN: what the operator asks (docs/admin.md). The rules of each action
 * are the same for every backend; the backend only stores and loads. */
typedef enum pl_admin_action {
  PL_ADMIN_USERS = 1,  /* users whose name contains in.query, by name after in.after (paged) */
  PL_ADMIN_USER,       /* one user: out.users[0], devices, groups, media usage */
  PL_ADMIN_CREATE,     /* a user with in.pwhash and no device */
  PL_ADMIN_PASSWORD,   /* set in.pwhash; every device is signed out (out.kicked) */
  PL_ADMIN_DISABLE,    /* no login or resume; every device is signed out (out.kicked) */
  PL_ADMIN_ENABLE,     /* undoes DISABLE */
  PL_ADMIN_DELETE,     /* the user and everything of theirs: devices, queues, groups, media */
  PL_ADMIN_REVOKE,     /* sign out in.device (NULL: every device) (out.kicked) */
  PL_ADMIN_GROUPS,     /* groups by gid after in.after_id (paged) */
  PL_ADMIN_GROUP,      /* one group (in.group): out.groups[0] and its members */
  PL_ADMIN_REMOVE,     /* take in.user out of in.group (as if they left) */
  PL_ADMIN_INVITE,     /* record invite in.code: in.uses, in.expires */
  PL_ADMIN_INVITES,    /* the invites not used up or expired */
  PL_ADMIN_INVITE_DEL, /* forget invite in.code */
  PL_ADMIN_TOP_QUEUES, /* the in.limit deepest device queues (out.devices, with user names) */
  PL_ADMIN_STATS,      /* out.counts, the deepest queues (as TOP_QUEUES), db and media bytes */
  PL_ADMIN_BACKUP,     /* not a store op: pl_store_backup, on a worker thread (kept for the API's answers) */
  /* Not the operator's: a sign-up on another shard than the invites'
   * (pl_store_shard.c) takes a use of in.code there first (INVITE_INVALID
   * if none is left), and gives it back if the sign-up then fails. */
  PL_ADMIN_INVITE_TAKE,
  PL_ADMIN_INVITE_GIVE,
  /* Not the operator's either: in.user, a user of another shard, leaves
   * every group of this shard as by its own Leave (a DELETE on the user's
   * shard runs it on every other shard first, pl_store_shard.c). */
  PL_ADMIN_LEAVE_GROUPS,
  /* ... and in.user's groups of this shard into out.groups (USER on the
   * user's shard gathers them from every other shard). */
  PL_ADMIN_USER_GROUPS,
  PL_ADMIN_NACTIONS
} pl_admin_action;

typedef struct pl_admin_user {
  uint64_t id, created, last_seen;
  char *name;
  int disabled;
  uint64_t devices; /* signed in */
} pl_admin_user;

typedef struct pl_admin_device {
  uint64_t id, created, used_at;
  uint64_t queued; /* entries in its queue */
  char *name, *user;
  int signed_in;
} pl_admin_device;

typedef struct pl_admin_invite {
  char *code;
  uint64_t uses_left, expires, created; /* expires: ms since the epoch, 0 never */
} pl_admin_invite;

typedef struct pl_store_admin_req {
  struct {
    int action;         /* pl_admin_action */
    const char *user;   /* the user acted on */
    const char *query;  /* USERS: part of the name ("" or NULL: all) */
    const char *after;  /* USERS: names after this one */
    uint64_t after_id;  /* GROUPS: gids after this one */
    uint32_t limit;     /* USERS, GROUPS, TOP_QUEUES: at most this many (0: 100) */
    uint64_t group;     /* GROUP, REMOVE */
    const char *by;     /* REMOVE: the operator (admin token name), the event's actor "admin:<by>" */
    const char *device; /* REVOKE: one device (NULL: all) */
    const char *pwhash; /* CREATE, PASSWORD: Argon2id string */
    const char *code;   /* INVITE, INVITE_DEL */
    const char *path;   /* BACKUP: a file that does not exist yet */
    uint64_t uses;      /* INVITE: registrations it allows */
    uint64_t expires;   /* INVITE: ms since the epoch (0: never) */
  } in;
  struct {
    pl_admin_user *users;
    size_t nusers;
    pl_admin_device *devices; /* USER: every device; TOP_QUEUES: the deepest */
    size_t ndevices;
    pl_group_info *groups; /* USER: its groups (my_role: its role); GROUP(S) */
    size_t ngroups;
    pl_admin_invite *invites;
    size_t ninvites;
    uint64_t media_count, media_bytes; /* USER; STATS: all uploads */
    pl_store_counts counts;            /* STATS */
    uint64_t db_bytes;                 /* STATS, BACKUP: the database's size */
    uint64_t *kicked;                  /* devices signed out: their connections close */
    size_t nkicked;
    int more; /* USERS, GROUPS: another page follows */
  } out;
} pl_store_admin_req;

struct pl_store_req {
  pl_store_op op;
  pl_store_done_cb done; /* called once with the result (see post hook) */
  void *origin;          /* passed to the post hook: which thread to run done on */
  void *data;            /* the caller's */
  pl_err status;         /* result: PL_OK or the reason */

  /* Who asks: the signed-in user and device the request is for (most ops;
   * 0 where an op has none). LOGIN_DEVICE: the user logging in; ACK: 0
   * user_id sends no delivered receipts. */
  uint64_t user_id, device_id;

  /* RESUME, MEDIA_AUTH, MEDIA_GET, DEVICES: tokens last used before
   * used_after or issued before issued_after have expired (set by
   * pl_store_submit from the config's token lifetimes). */
  uint64_t token_used_after, token_issued_after;

  /* RESUME, MEDIA_AUTH, MEDIA_GET with a token: 1 + the bucket the token
   * carries (pl_bucket_token_get), which names the shard to ask when the
   * store is sharded; 0: none given (shard 0). */
  uint32_t route;

  /* Store-private, sharded: 1 + the bucket map's epoch when the request was
   * routed to its shard (0: not routed by the map). The store thread routes
   * it again if the map moved on before it ran (pl_store.c, pl__reroute). */
  uint64_t routed_at;

  /* What any op may leave for the store thread to deliver after its commit
   * (owned by the request): new queue entries (ACK: delivered receipts;
   * MARK_READ: a read receipt and a read sync; GROUP_*: membership events)
   * and changes to groups' live audiences. */
  pl_store_event *events;
  size_t nevents;
  pl_group_change *changes;
  size_t nchanges, changes_cap;

  pl_store_req *next; /* store-private queue link */
  int out_op;         /* store-private: the op out's outputs are of (0: op; -1: none) */

  union {
    pl_store_register_req reg;
    pl_store_get_user_req get_user;
    pl_store_login_req login;
    pl_store_resume_req resume;
    pl_store_ack_req ack; /* ACK and LOGOUT */
    pl_store_send_req send;
    pl_store_fetch_req fetch;
    pl_store_mark_read_req mark_read;
    pl_store_settings_req settings;
    pl_store_unread_req unread;
    pl_store_contacts_req contacts;
    pl_store_block_req block;
    pl_store_presence_req presence;
    pl_store_seen_req seen;
    pl_store_typing_req typing;
    pl_store_group_create_req group_create;
    pl_store_group_update_req group_update;
    pl_store_group_list_req group_list;
    pl_store_group_receipts_req group_receipts;
    pl_store_group_devices_req group_devices;
    pl_store_media_auth_req media_auth;
    pl_store_media_put_req media_put;
    pl_store_media_get_req media_get;
    pl_store_devices_req devices;
    pl_store_push_token_req push_token;
    pl_store_push_tokens_req push_tokens;
    pl_store_push_enqueue_req push_enqueue;
    pl_store_push_claim_req push_claim;
    pl_store_push_done_req push_done;
    pl_store_stats_req stats;
    pl_store_admin_req admin;
  } u;
};

/* The table of ops: what the store knows of each, whatever the backend. */
typedef struct pl_store_op_info {
  const char *name; /* for logs and metrics: "send", "fetch", ... */
  /* It may write. Read-only ops (GET_USER, TYPING, GROUP_DEVICES, STATS,
   * ...) still run in the batch's transaction. */
  int writes;
  /* It adds data (a message, an upload): refused with STORAGE_FULL while
   * the disk is full (the rest still runs then). */
  int grows;
  /* Frees what the op's out holds (the common events and changes are freed
   * by pl_store_req_clear). */
  void (*clear)(pl_store_req *req);
} pl_store_op_info;

/* The first and last ops (the table covers every op between). */
#define PL_STORE_OP_FIRST PL_STORE_REGISTER
#define PL_STORE_OP_LAST PL_STORE_ADMIN

/* The entry of op; NULL if op is not one. */
const pl_store_op_info *pl_store_op_get(int op);
/* Its name, or "unknown". */
const char *pl_store_op_name(int op);

/* Frees what the request's out holds (pl_store_op_get(op)->clear, for the
 * op the store last ran it as) and the events and changes, and zeroes them;
 * in is left alone. A request reused for another op: clear it, then set op
 * and the new in (its fields lie over the old op's). */
void pl_store_req_clear(pl_store_req *req);
/* pl_store_req_clear, then zeroes the out of req->op (where the last op's
 * in may lie) and marks it as op's: pl_store_submit starts with it. */
void pl_store_req_out_begin(pl_store_req *req);
void pl_msg_clear(pl_msg *m);
/* For backends: appends an event (a receipt, a read sync, ...) to r->events
 * for the deliver hook, taking t over; returns it (qids left NULL). */
pl_store_event *pl_store_event_add(pl_store_req *r, uint64_t qid, int kind, const char *conv, uint64_t seq,
                                   const char *by, uint64_t aux, uint64_t now, uint64_t *t, size_t n);
/* Is r a plain SEND (no attachment; no message action, or a plain reply or
 * forward)? PostgreSQL's batch pipeline takes these (pg_batch.c). */
int pl_store_send_plain(const pl_store_req *r);
/* For backends: a committed SEND's out.msg from its in and out (conv, seq,
 * server_ts set; qid is the caller's). */
void pl_store_send_fill_msg(pl_store_req *r, const char *from);
/* For backends: DEVICES by the rules of pl_devices: list fills
 * out.devices (signed in, by id); the devices the op revokes are each
 * logged out through logout (a LOGOUT request for the device) and named in
 * out.targets and out.names; then the list again. */
pl_err pl_store_devices_run(pl_store_req *r, void *be, pl_err (*list)(void *be, pl_store_req *r),
                            pl_err (*logout)(void *be, pl_store_req *lo));
/* For backends, the admin op (PL_STORE_ADMIN): what each action does, and
 * in which order, is the same on every backend (pl_store_admin_account);
 * a backend gives the loads and stores it is made of. */
typedef struct pl_store_admin_ops {
  /* in.user as out.users[0], its row locked for the transaction if lock
   * (a change follows); NOT_FOUND (r->status) if there is none */
  pl_err (*user_load)(void *be, pl_store_req *r, int lock);
  /* appends uid's devices (all, signed in or not) to out.devices */
  pl_err (*devices)(void *be, pl_store_req *r, uint64_t uid);
  /* uid's groups (its role as my_role) into out.groups */
  pl_err (*groups)(void *be, pl_store_req *r, uint64_t uid);
  /* uid's uploads: out.media_count, out.media_bytes */
  pl_err (*media)(void *be, pl_store_req *r, uint64_t uid);
  /* a LOGOUT request (the user's own sign-out of a device) */
  pl_err (*logout)(void *be, pl_store_req *lo);
  /* a GROUP_UPDATE request (a Leave on the user's behalf) */
  pl_err (*group_update)(void *be, pl_store_req *sub);
  /* PASSWORD (in.pwhash), DISABLE, ENABLE: uid's row */
  pl_err (*set)(void *be, pl_store_req *r, uint64_t uid);
  /* DELETE's last step: uid's uploads (their files after the commit) and
   * every row that is the user's alone, the user's own last */
  pl_err (*drop)(void *be, uint64_t uid);
  /* the other actions (USERS, CREATE, GROUPS, GROUP, REMOVE, INVITE,
   * INVITES, INVITE_DEL, TOP_QUEUES, STATS), each a load or a store */
  pl_err (*action[PL_ADMIN_NACTIONS])(void *be, pl_store_req *r);
} pl_store_admin_ops;
/* The admin op through ops. USER, PASSWORD, DISABLE, ENABLE, REVOKE and
 * DELETE are made of ops' steps here: signing out is the user's own
 * logout of each signed-in device (out.kicked: their connections close),
 * a deleted user leaves each group as by its own Leave (an heir if it
 * owned one; the events are r's). An action with no step:
 * INVALID_ARGUMENT. */
pl_err pl_store_admin_run(pl_store_req *r, void *be, const pl_store_admin_ops *ops);
/* uid leaves gid as by its own Leave (an heir if it owned the group), on
 * r's behalf (the events are r's). */
pl_err pl_store_admin_leave(pl_store_req *r, void *be, const pl_store_admin_ops *ops, uint64_t uid,
                            uint64_t gid);
/* in.limit as a page size (0: 100; at most 1000). */
uint32_t pl_store_admin_limit(const pl_store_req *r);
/* For backends: the packed parley.Act a message carries (protocol.md
 * 11.9): what the client sent (a, may be NULL) and when it vanishes; NULL
 * with *len 0 when there is nothing to say. pl_free it. */
uint8_t *pl_store_act_pack(const pl_act *a, uint64_t vanish_at, size_t *len);
/* For backends: an upload as a Message's attachment (packed parley.Media;
 * pl_free *out). */
void pl_store_media_pack(const pl_media_row *m, uint8_t **out, size_t *len);
void pl_group_info_clear(pl_group_info *g);

/* Who may see a user's last-seen time (users.last_seen_vis). */
enum { PL_LAST_SEEN_EVERYONE = 1, PL_LAST_SEEN_CONTACTS = 2, PL_LAST_SEEN_NOBODY = 3 };
/* Who may add a user to groups (Settings.group_add; 0 stored: never set = everyone). */
enum { PL_GROUP_ADD_EVERYONE = 1, PL_GROUP_ADD_CONTACTS = 2, PL_GROUP_ADD_NOBODY = 3 };

/* The product's rules the store asks (src/core/pl_rules, given by the core
 * through the hooks; a NULL function: no such rule). Store thread. */
typedef struct pl_store_rules {
  /* May one more message from a sender join a device queue holding queued
   * entries? own: a device of the sender. count(arg, &mine) gives how many
   * of them are from that sender (loaded only if the rule calls it). PL_OK,
   * PL_ERR_QUEUE_FULL or count's error. */
  pl_err (*queue_admit)(void *ud, uint64_t queued, int own, pl_err (*count)(void *arg, uint64_t *mine),
                        void *arg);
  /* May a user whose Settings.group_add is setting (0: never set) be added
   * to a group by someone in (contact = 1) or not in their contacts? */
  pl_err (*may_add)(void *ud, int setting, int contact);
  uint64_t group_history; /* entries of a group's history kept (0: no bound); the oldest go */
  void *ud;
} pl_store_rules;

typedef struct pl_store_config {
  const char *dir;          /* data directory; the backend keeps its files there */
  int durable;              /* 1: a commit survives power loss (fsync); 0: process crash only */
  uint64_t ttl_ms;          /* message and dedup time-to-live */
  uint32_t max_devices;     /* per user */
  uint32_t max_queue;       /* queued messages per device */
  uint32_t max_group;       /* members per group (0: 100,000) */
  uint32_t group_detail;    /* groups up to this size: receipts name members, and senders get live updates */
  uint32_t max_batch;       /* requests per transaction */
  uint32_t page_cache_kib;  /* the backend's page cache (0: 2,048 KiB); a fixed amount, whatever the load */
  uint32_t sweep_ms;        /* how often expired messages are deleted */
  uint32_t flush_chunk;     /* cached writes per transaction at the sweep (0: 2,048) */
  uint32_t commit_delay_us; /* under load, commits start at most this often (0: no pacing) */
  int (*online)(void *ud, uint64_t device); /* set by pl_store_open from the hooks */
  void *online_ud;
  uint64_t media_ttl_ms;  /* an upload outlives its last message by this (0: ttl_ms) */
  uint64_t token_idle_ms; /* a token unused this long stops working (0: never) */
  uint64_t token_max_ms;  /* a token this old stops working (0: never) */
  /* Called on the store thread right after the commit that dropped the
   * last row naming a blob key (so an upload that finds the bytes present
   * and records them in a later transaction sees them gone and rewrites them). */
  void (*blob_gone)(void *ud, const char *key);
  void *blob_ud;
  /* Called on the store thread inside MEDIA_PUT: 1 if the blob exists. */
  int (*blob_exists)(void *ud, const char *key);
  pl_store_rules rules;  /* set by pl_store_open from the hooks */
  uint64_t disk_reserve; /* bytes held back in <dir>/reserve for a full disk (0: none) */
  pl_acts_cfg acts;      /* edit and delete windows, the disappearing test setting */
  const char *conninfo;  /* PostgreSQL: the libpq connection string or URI (--store) */
  const char *node;      /* this server's name (push leases); NULL: none given */
  /* Sharding (docs/scaling.md): this store is shard `shard` of `nshards`
   * (0 of 0 or 1: unsharded). A sharded backend gives new ids their bucket
   * (pl_bucket.h) and refuses a database that was another shard. */
  unsigned shard, nshards;
  /* Every shard's connection string, [nshards] (NULL: unsharded): a send
   * between users of two shards copies its message to the other shard
   * (docs/scaling.md 2), on a connection of this store's own. */
  const char *const *shard_conninfo;
  /* Sharded: the node's map of moved buckets (pl_shardmap.h), shared by
   * every shard's store, the router and the blob store; NULL: none moved. */
  struct pl_shardmap *shardmap;
  /* Encryption at rest (pl_seal, --key-file): the ring, which may be
   * replaced while the store runs (rotation); NULL: stored plain. A backend
   * that cannot seal refuses to open with one. */
  struct pl_seal_ref *seal;
} pl_store_config;

/* Encryption at rest, for /metrics: the key new records get (0: none),
 * finished re-encryption passes, one running, and the rows per key id the
 * last finished pass left (every row it saw ends under the current key). */
typedef struct pl_store_seal_stats {
  uint8_t kid;
  int running;
  uint64_t passes;
  uint64_t rows[256];
} pl_store_seal_stats;

/* The backend vtable. All calls happen on the store thread, except open and
 * close (on the thread that opens/closes the store). */
typedef struct pl_store_backend {
  const char *name;
  /* 1: a device's queue positions (qids) are gap-free, allocated per device
   * in the transaction that queues for it (what several writers need: the
   * delivery cursor then writes a queue entry only at its next position,
   * pl_cursor.h). 0: they only rise in the device's commit order, which one
   * writer guarantees (SQLite: one AUTOINCREMENT counter, its file lock
   * serializing every transaction). */
  int queue_exact;
  pl_err (*open)(void **be, const pl_store_config *cfg);
  void (*close)(void *be);
  pl_err (*begin)(void *be);
  /* Runs one request inside the open transaction; sets req->status and out.
   * Returns PL_OK unless the transaction itself is broken (then the whole
   * batch is rolled back and every request fails with PL_ERR_INTERNAL). */
  pl_err (*exec)(void *be, pl_store_req *req);
  /* Optional: runs every request of the batch (linked by next) whose
   * status is PL_OK, in order, inside the open transaction, with the
   * results exec would give one by one; a server backend sends them in
   * pipeline mode (a batch: a few round trips, not a few per request). Its
   * writes may be read only at commit, so a request's out is complete
   * after commit. Returns as exec does. */
  pl_err (*exec_batch)(void *be, pl_store_req *batch);
  pl_err (*commit)(void *be);
  /* Undo the transaction and forget any cache that may hold its effects. */
  void (*rollback)(void *be);
  /* Inside a transaction: delete messages and dedup entries past their TTL. */
  pl_err (*expire)(void *be, uint64_t now_ms, uint64_t *deleted);
  /* Optional, between transactions, about once a second: finish the work
   * that crashed or failed nodes left between two shards (a sharded
   * store's outbox, docs/scaling.md 2); what it queues for devices goes to
   * deliver(ud, m, targets, qids, n), as a commit's messages do. */
  void (*relay)(void *be,
                void (*deliver)(void *ud, const pl_msg *m, const uint64_t *t, const uint64_t *qids, size_t n),
                void *ud);
  /* Optional: how many cached writes wait (may over-count), and inside a
   * transaction, write up to max of them. The sweep writes them a chunk per
   * transaction, with queued requests served between chunks, before expire. */
  size_t (*backlog)(void *be);
  pl_err (*flush)(void *be, size_t max);
  /* Optional, between transactions: write the journal into the database
   * and give the journal's space back (the store calls it while the disk
   * is full). A transaction that fails because the disk is full must fail
   * with PL_ERR_STORAGE_FULL (exec, commit). */
  pl_err (*checkpoint)(void *be);
  /* Optional, between transactions: bytes free inside the database (pages
   * it reuses before its files grow). */
  uint64_t (*free_bytes)(void *be);
  /* Optional, any thread: 1 while the backend cannot reach its database
   * (a server: batches fail with INTERNAL, a retryable error, until it is
   * back). begin, exec and commit return PL_ERR_AGAIN for a transaction
   * the database aborted for a conflict (serialization failure, deadlock):
   * the store runs the batch again. */
  int (*down)(void *be);
  /* Optional, any thread: round trips to the database so far (a statement,
   * or a pipeline's sync however many statements it carried; per commit in
   * /metrics). */
  uint64_t (*round_trips)(void *be);
  /* Optional, any thread: writes a shard's fence refused so far (a move:
   * this node routed by an older bucket map), whatever made them: a
   * batch, a copy to another shard, the sweep, a write through a link. */
  uint64_t (*fenced)(void *be);
  /* Optional, any thread: copies made on other shards so far (a sharded
   * store's outbox rows), and how many of them the relay's sweep made. */
  void (*relayed)(void *be, uint64_t *copies, uint64_t *swept);
  /* Optional, any thread: encryption at rest (zeros if absent). */
  void (*seal_stats)(void *be, pl_store_seal_stats *out);
  /* Optional, on a thread of the caller's (never the store thread, which
   * goes on serving): a consistent online copy of the database in dir into
   * the new file to, its size in *bytes; USER_EXISTS if to exists. */
  pl_err (*backup)(const char *dir, const char *to, uint64_t *bytes);
  /* Without backup: what the operator uses instead (the admin API's
   * answer to POST /admin/backup). */
  const char *backup_instead;
} pl_store_backend;

extern const pl_store_backend pl_store_pg;
/* The backend a --store value names: PostgreSQL for a libpq URI
 * (postgres:// or postgresql://) or key=value string, else SQLite. */
const pl_store_backend *pl_store_backend_for(const char *store);

extern const pl_store_backend pl_store_sqlite;

typedef struct pl_store pl_store;

/* Runs req->done on the thread that origin stands for. With origin == NULL
 * the store thread calls done itself. */
typedef void (*pl_store_post_fn)(void *ud, void *origin, pl_store_req *req);
/* Called on the store thread after commit for each new message. */
typedef void (*pl_store_deliver_fn)(void *ud, const pl_msg *m, const uint64_t *devices, size_t n);

typedef struct pl_store_hooks {
  pl_store_post_fn post;
  pl_store_deliver_fn deliver;
  /* Optional: called on the store thread after the last deliver of a
   * commit, before any post (lets the router hand a commit's pushes to each
   * loop in one go). */
  void (*deliver_end)(void *ud);
  /* Optional, any thread: is device connected now? Receipts and read syncs
   * for connected devices are pushed without being stored (protocol.md
   * 11.4: a missed one is recovered from UnreadGet's watermarks). */
  int (*online)(void *ud, uint64_t device);
  /* Called on the store thread in commit order, for groups:
   * deliver_group sends a group message to the member devices that are
   * connected, except skip (the sending device); group_change adds devices to
   * or removes them from a group's live audience; device_groups replaces
   * the groups a device receives (after each of its fetches). */
  void (*deliver_group)(void *ud, const pl_msg *m, uint64_t group, uint64_t skip);
  void (*group_change)(void *ud, const pl_group_change *c);
  void (*device_groups)(void *ud, uint64_t device, const uint64_t *gids, size_t n);
  /* Optional, sharded, on a store thread: the node took a map that moved
   * buckets (bits: a bit per bucket, pl_shardmap_changed). Their devices'
   * queues may hold what no commit of this node delivered (the copies the
   * mover made), so those connected read them again. */
  void (*moved)(void *ud, const uint64_t *bits);
  void *ud;
  pl_store_rules rules; /* optional: the product's rules (their own ud) */
} pl_store_hooks;

/* Opens the backend and starts the store thread. */
pl_err pl_store_open(pl_store **out, const pl_store_backend *be, const pl_store_config *cfg,
                     const pl_store_hooks *hooks);
/* Sharding (docs/scaling.md 7, step 1): n stores opened on n databases
 * (cfg.shard 0 .. n-1 of cfg.nshards n) are linked into one: a request
 * submitted to any of them runs on the shard of the user it concerns
 * (pl_route_shard), and those that concern every shard (counts, the
 * operator's lists, the push sender's claims) run on each, their answers
 * merged. stores[0] then stands for all: stop, close and the stats of it
 * cover every shard. The array is copied. */
void pl_store_link(pl_store **stores, unsigned n);
/* Queues a request (any thread). After pl_store_close starts, fails the
 * request with PL_ERR_SHUTTING_DOWN through the normal done path, except
 * one submitted on the store thread (by a hook or a done callback with no
 * origin) while it drains: that one still runs before the thread exits. */
void pl_store_submit(pl_store *s, pl_store_req *req);
/* Submits and waits; done is not called (for start-up, tools and tests). */
pl_err pl_store_call(pl_store *s, pl_store_req *req);
/* Runs the TTL sweep now and waits (tests). */
pl_err pl_store_expire_now(pl_store *s, uint64_t now_ms, uint64_t *deleted);
/* Finishes and commits every queued request, stops the thread and closes the
 * backend. The handle stays valid: later submissions fail with
 * PL_ERR_SHUTTING_DOWN through the normal done path (loops that are still
 * reading may submit until they close). Idempotent. */
void pl_store_stop(pl_store *s);
/* pl_store_stop, then frees the handle (no thread may use it afterwards). */
void pl_store_close(pl_store *s);

/* Counters for metrics and benchmarks. */
typedef struct pl_store_stats {
  uint64_t commits, requests, messages, fails;
  uint64_t commit_us_total;                /* time spent in commit() */
  uint64_t queued;                         /* requests waiting for the store thread now */
  const pl_hist *commit_hist, *batch_hist; /* us per commit, requests per transaction (live) */
  int disk_full;                           /* new messages refused: the disk is full (the reserve is out) */
  int write_failing;                       /* the last transaction of requests failed */
  pl_err write_err;                        /* ... with this */
  uint64_t disk_full_total;                /* times the disk filled */
  uint64_t disk_avail, disk_needed;        /* free bytes at the last look while full; bytes awaited */
  uint64_t db_free;                        /* ... and free inside the database then */
  int reserve_held;                        /* the reserve is held (or there is none) */
  int backend_down;                        /* the backend cannot reach its database now */
  uint64_t retries;                        /* batches run again after a conflict */
  uint64_t splits;                         /* batches run in parts, their retries spent */
  uint64_t fenced;                         /* writes refused for an older bucket map (a move) */
  uint64_t round_trips;                    /* statements sent to a database server (0: embedded) */
  uint64_t relay_copies, relay_swept;      /* copies made on other shards; of them by the sweep */
} pl_store_stats;
void pl_store_get_stats(pl_store *s, pl_store_stats *st);
void pl_store_get_seal_stats(pl_store *s, pl_store_seal_stats *st);
/* The backend's backup (a blocking call: run it on a worker thread);
 * PL_ERR_CONFIG if the backend has none (PostgreSQL: pg_dump). */
pl_err pl_store_backup(pl_store *s, const char *to, uint64_t *bytes);
/* NULL if the backend makes backups (pl_store_backup); else what to use
 * instead, for the operator. */
const char *pl_store_backup_instead(const pl_store *s);
/* The backend's queue_exact (0 for a NULL store). */
int pl_store_queue_exact(const pl_store *s);

#endif
