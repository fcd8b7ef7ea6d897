/* rawcl: a minimal raw-socket client for integration tests: every frame is
 * built and checked by hand, so the tests pin the wire protocol itself. */
#ifndef RAWCL_H
#define RAWCL_H

#include <stdint.h>

#include "parley.pb-c.h"
#include "testlib.h"

/* The protocol version rc_open speaks: PARLEY_TEST_PROTO, else 1. */
unsigned rc_proto(void);
/* Connects and does Hello/Welcome (kind: Parley__ClientKind). Fails the test on error. */
int rc_open(int port, int kind);
/* The same, speaking protocol version (1 or 2). */
int rc_open_v(int port, int kind, unsigned version);
/* Register or login (frame type 4 or 5); returns 0 and copies the token, or the Error code. */
int rc_auth(int fd, int type, const char *user, const char *pw, const char *device, char token[128]);
/* Resume; returns 0 or the Error code. */
int rc_resume(int fd, const char *token);
/* Writes a Send frame (does not wait). */
void rc_send(int fd, const char *id, const char *to, const char *body);
/* Waits for the next frame of the given type, skipping Pongs; returns the unpacked message or NULL. */
void *rc_expect(int fd, int type, int timeout_ms);
/* Sends and waits for the SendAck; returns its seq (0 if an Error came: *err gets the code). */
uint64_t rc_send_wait(int fd, const char *id, const char *to, const char *body, int *err);
/* An UnreadGet answered: the node's store runs requests in order, so every
 * one this session submitted before (its first fetch after sign-in, say)
 * has completed. */
void rc_store_barrier(int fd);
/* Collects up to max Messages (stops after timeout_ms of silence); returns the count. */
size_t rc_collect(int fd, Parley__Message **out, size_t max, int timeout_ms);
void rc_free_msgs(Parley__Message **m, size_t n);
void rc_ack(int fd, uint64_t upto);
/* Acks a group entry received: by its qid in protocol 1 (one stream), by
 * its group and seq in protocol 2 (Ack.groups: a stream per group). */
void rc_ack_entry(int fd, uint64_t qid, const char *group, uint64_t seq);
/* Acks, then waits for the answer to a Ping (frames before it are dropped):
 * the server has read the Ack and handed it to the store before anything
 * asked after this returns, on any connection (the store runs requests in
 * order). Not that it is committed: a test that needs that waits for it. */
void rc_ack_sync(int fd, uint64_t upto);
/* A new connection of a new user (password "secret-pass", device "phone"),
 * and one resuming a token; each fails the test if it cannot. */
int rc_register(int port, const char *user, char token[128]);
int rc_back(int port, const char *token);
/* Block (on) or unblock user; waits for the Done. */
void rc_block(int fd, const char *user, int on);

#endif
