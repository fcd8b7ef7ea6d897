/* pl_err: the one error type of the code base.
 *
 * Internal functions return pl_err (0 = success, negative = failure). The
 * values that cross the wire are the protocol's ErrorCode numbers (see
 * proto/parley.proto); internal-only failures sit below -1000 so the two
 * never collide. One X-macro table gives every code its name and message. */
#ifndef PL_ERR_H
#define PL_ERR_H

/* name, value, wire (1 = this is a protocol ErrorCode), message */
#define PL_ERR_MAP(X)                                                       \
  X(OK, 0, 0, "success")                                                    \
  X(BAD_FRAME, -1, 1, "malformed frame")                                    \
  X(FRAME_TOO_LARGE, -2, 1, "frame too large")                              \
  X(UNKNOWN_TYPE, -3, 1, "unknown frame type")                              \
  X(UNSUPPORTED_VERSION, -4, 1, "unsupported protocol version")             \
  X(HELLO_REQUIRED, -5, 1, "first frame must be hello")                     \
  X(AUTH_REQUIRED, -6, 1, "authentication required")                        \
  X(HEARTBEAT_TIMEOUT, -7, 1, "heartbeat timeout")                          \
  X(SHUTTING_DOWN, -8, 1, "server shutting down")                           \
  X(SLOW_CONSUMER, -9, 1, "client does not read fast enough")               \
  X(BAD_CREDENTIALS, -20, 1, "unknown user or wrong password")              \
  X(USER_EXISTS, -21, 1, "user name already taken")                         \
  X(BAD_TOKEN, -22, 1, "unknown, revoked or expired token")                 \
  X(INVALID_ARGUMENT, -23, 1, "invalid argument")                           \
  X(UNKNOWN_PEER, -24, 1, "unknown peer")                                   \
  X(MESSAGE_TOO_LARGE, -25, 1, "message too large")                         \
  X(TOO_MANY_DEVICES, -26, 1, "too many devices")                           \
  X(QUEUE_FULL, -27, 1, "recipient queue full")                             \
  X(ALREADY_AUTHENTICATED, -28, 1, "already authenticated")                 \
  X(INTERNAL, -29, 1, "internal error")                                     \
  X(BLOCKED, -30, 1, "the recipient does not accept messages from you")     \
  X(FILTERED, -31, 1, "the message contains a word this server refuses")    \
  X(NOT_MEMBER, -32, 1, "no such group, or you are not a member")           \
  X(FORBIDDEN, -33, 1, "your role in the group does not allow this")        \
  X(GROUP_FULL, -34, 1, "the group is at its member limit")                 \
  X(UNKNOWN_MEDIA, -35, 1, "no such media, or you may not use it")          \
  X(RATE_LIMITED, -36, 1, "too many attempts: try again later")             \
  X(TOO_MANY_CONNECTIONS, -37, 1, "too many connections")                   \
  X(NOT_ALLOWED, -38, 1, "the user's privacy settings do not allow this")   \
  X(STORAGE_FULL, -39, 1, "the server's disk is full: try again later")     \
  X(INVITE_REQUIRED, -40, 1, "this server needs an invite code to sign up") \
  X(INVITE_INVALID, -41, 1, "unknown, used up or expired invite code")      \
  X(REGISTRATION_CLOSED, -42, 1, "sign-up is closed on this server")        \
  X(ACCOUNT_DISABLED, -43, 1, "this account is disabled")                   \
  X(MAINTENANCE, -44, 1, "the server is down for maintenance")              \
  X(NO_TARGET, -45, 1, "no such message in the conversation")               \
  X(WINDOW_CLOSED, -46, 1, "it is too late to change that message")         \
  X(NOT_AUTHOR, -47, 1, "only its sender may change that message")          \
  X(AGAIN, -1001, 0, "need more data")                                      \
  X(NOMEM, -1002, 0, "out of memory")                                       \
  X(IO, -1003, 0, "i/o error")                                              \
  X(STORE, -1004, 0, "storage error")                                       \
  X(CONFIG, -1005, 0, "bad configuration")                                  \
  X(NOT_FOUND, -1006, 0, "not found")                                       \
  X(CLOSED, -1007, 0, "connection closed")                                  \
  X(TIMEOUT, -1008, 0, "timed out")                                         \
  X(BAD_MEDIA, -1009, 0, "malformed or truncated image")                    \
  X(MEDIA_TOO_LARGE, -1010, 0, "image too large (size or frames)")          \
  X(MEDIA_TYPE, -1011, 0, "not an image of a supported type")               \
  X(QUOTA, -1012, 0, "media quota exceeded")                                \
  X(MOVED, -1013, 0, "a shard refused a write for an older bucket map")

typedef enum pl_err {
#define PL__ERR_ENUM(name, val, wire, msg) PL_ERR_##name = (val),
  PL_ERR_MAP(PL__ERR_ENUM)
#undef PL__ERR_ENUM
} pl_err;

#define PL_OK PL_ERR_OK

/* Short upper-case name ("BAD_FRAME"); "UNKNOWN" for values not in the table. */
const char *pl_err_name(pl_err e);
/* Human readable message. */
const char *pl_err_msg(pl_err e);
/* The protocol ErrorCode for e (its absolute value), or 29 (INTERNAL) for internal-only codes. */
unsigned pl_err_to_wire(pl_err e);
/* The pl_err for a protocol ErrorCode; PL_ERR_INTERNAL if unknown. */
pl_err pl_err_from_wire(unsigned code);

#endif
