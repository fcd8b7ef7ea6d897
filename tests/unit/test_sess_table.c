/* The session's command table (pl_sess_int.h), without a store or a socket:
 * its rows against the protocol's list of client frames, the states that
 * take each, and what a session on a fake connection answers to a frame
 * its state does not take, by the native and by the decoded entry. */
#include <string.h>

#include "../../src/common/pl_log.h"
#include "../../src/core/pl_router.h"
#include "../../src/core/pl_sess_int.h"
#include "../../src/proto/pl_strings.h"
#include "testlib.h"

/* ---- the rows ----------------------------------------------------------- */

static int is_type(int t) {
  return protobuf_c_enum_descriptor_get_value(&parley__frame_type__descriptor, t) != NULL;
}

static void test_rows_are_the_client_frames(void) {
  for (int t = 0; t < 256; t++) {
    const pl_sess_cmd *cmd = pl_sess_cmd_of((uint8_t)t);
    CHECK_EQ_I(cmd != NULL, pl_frame_client_may_send((uint8_t)t)); /* server-only types: no row */
    if (!cmd)
      continue;
    CHECK(is_type(t));
    CHECK(cmd->name && *cmd->name);
    CHECK(cmd->fn != NULL);
    CHECK(cmd->states != 0 && (cmd->states & ~PL_SESS_ANY) == 0);
    CHECK(pl_frame_descriptor((uint8_t)t) != NULL);
    if (cmd->answer) /* an answer is a frame the server sends */
      CHECK(is_type(cmd->answer) && !pl_frame_client_may_send(cmd->answer));
  }
}

/* A row's ref is a string field of its message: field 1, as protocol.md 4
 * says (a Send's id, a Typing's to); and a request with a field 1 called
 * ref has it in its row (Devices once had not: a bad string in one was
 * answered without its ref). */
static void test_refs_are_field_one(void) {
  for (int t = 0; t < 256; t++) {
    const pl_sess_cmd *cmd = pl_sess_cmd_of((uint8_t)t);
    if (!cmd)
      continue;
    const ProtobufCFieldDescriptor *one =
        protobuf_c_message_descriptor_get_field(pl_frame_descriptor((uint8_t)t), 1);
    if (one && !strcmp(one->name, "ref"))
      CHECK(cmd->ref_off != 0);
    if (!cmd->ref_off)
      continue;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(pl_frame_descriptor((uint8_t)t), 1);
    CHECK(f != NULL);
    if (!f)
      continue;
    CHECK_EQ_U(f->offset, cmd->ref_off);
    CHECK_EQ_I(f->type, PROTOBUF_C_TYPE_STRING);
  }
}

static void test_states(void) {
  int hello = 0, auth = 0;
  for (int t = 0; t < 256; t++) {
    const pl_sess_cmd *cmd = pl_sess_cmd_of((uint8_t)t);
    if (!cmd)
      continue;
    if (cmd->states & PL_SESS_IN(PL_SESS_HELLO)) { /* before Hello: Hello alone */
      hello++;
      CHECK_EQ_I(t, PARLEY__FRAME_TYPE__FRAME_HELLO);
    }
    if (cmd->states & PL_SESS_IN(PL_SESS_AUTH)) { /* before login: no request about a user */
      auth++;
      CHECK(t == PARLEY__FRAME_TYPE__FRAME_HELLO || t == PARLEY__FRAME_TYPE__FRAME_PING ||
            t == PARLEY__FRAME_TYPE__FRAME_REGISTER || t == PARLEY__FRAME_TYPE__FRAME_LOGIN ||
            t == PARLEY__FRAME_TYPE__FRAME_RESUME);
    }
    int auth_req = t == PARLEY__FRAME_TYPE__FRAME_REGISTER || t == PARLEY__FRAME_TYPE__FRAME_LOGIN ||
                   t == PARLEY__FRAME_TYPE__FRAME_RESUME;
    CHECK_EQ_I(!(cmd->states & PL_SESS_IN(PL_SESS_READY)), auth_req); /* once in, all but these */
    if (cmd->fn == pl_sess__on_state) /* answered after a commit: it must say how */
      CHECK(cmd->reply != NULL && cmd->answer != 0 && cmd->ref_off != 0);
    else
      CHECK(!cmd->bad && !cmd->fill && !cmd->reply);
  }
  CHECK_EQ_I(hello, 1);
  CHECK_EQ_I(auth, 5);
}

/* ---- a session on a fake connection ------------------------------------- */

typedef struct fake {
  pl_conn c;
  int closed, answers, last_type, last_code, released;
} fake;

static void fake_write(pl_conn *c, pl_buf *b) {
  fake *f = (fake *)c;
  pl_frame fr;
  size_t used;
  f->answers++;
  f->last_type = -1;
  f->last_code = -1;
  if (pl_frame_parse(b->data, b->len, UINT32_MAX, &fr, &used) != PL_OK)
    return;
  f->last_type = fr.type;
  if (fr.type == PARLEY__FRAME_TYPE__FRAME_ERROR) {
    Parley__Error *e = (Parley__Error *)pl_frame_unpack(&fr);
    f->last_code = e ? (int)e->code : -2;
    if (e)
      protobuf_c_message_free_unpacked(&e->base, NULL);
  }
}
static void fake_close(pl_conn *c) { ((fake *)c)->closed = 1; }
static void fake_nop(pl_conn *c) { (void)c; }
static const pl_transport_ops fake_ops = {.name = "fake",
                                          .kind = PL_CONN_TCP,
                                          .write = fake_write,
                                          .close = fake_close,
                                          .pause = fake_nop,
                                          .resume = fake_nop};

static pl_core *core_new(pl_router **r) {
  pl_core_config cfg;
  pl_core_config_defaults(&cfg);
  cfg.argon2_threads = 1;
  cfg.router = *r = pl_router_local_new(1);
  return pl_core_new(&cfg, 1);
}

static void open_fake(pl_core *core, fake *f) {
  memset(f, 0, sizeof *f);
  f->c.ops = &fake_ops;
  f->c.h = pl_core_handler(core);
  f->c.peer = (pl_addr){.ip = {127, 0, 0, 1}, .port = 1, .family = 4}; /* 127.0.0.1:1 */
  f->c.h->on_open(&f->c, f->c.h->ud);
}

static void close_fake(fake *f) { f->c.h->on_close(&f->c, f->c.h->ud); }

/* An empty frame of type t (every field its zero value). */
static void frame_in(fake *f, uint8_t t) {
  static const uint8_t none[1];
  pl_frame fr = {.type = t, .payload = none, .payload_len = 0};
  f->c.h->on_frame(&f->c, &fr, f->c.h->ud);
}

static void hello(fake *f) {
  Parley__Hello h = PARLEY__HELLO__INIT;
  h.version = PL_PROTOCOL_VERSION;
  pl_buf *b = pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_HELLO, &h.base);
  pl_frame fr;
  size_t used;
  CHECK_EQ_I(pl_frame_parse(b->data, b->len, UINT32_MAX, &fr, &used), PL_OK);
  f->c.h->on_frame(&f->c, &fr, f->c.h->ud);
  pl_buf_unref(b);
  CHECK_EQ_I(f->last_type, PARLEY__FRAME_TYPE__FRAME_WELCOME);
}

static int wire_code(pl_err e) { return pl_err_to_wire(e); }

static void test_refused_by_state(void) {
  pl_router *r;
  pl_core *core = core_new(&r);
  fake f;
  for (int t = 1; t < 256; t++) {
    const pl_sess_cmd *cmd = pl_sess_cmd_of((uint8_t)t);
    if (t == PARLEY__FRAME_TYPE__FRAME_HELLO)
      continue;
    open_fake(core, &f); /* before Hello: the connection ends */
    frame_in(&f, (uint8_t)t);
    CHECK_EQ_I(f.last_code, wire_code(cmd ? PL_ERR_HELLO_REQUIRED : PL_ERR_UNKNOWN_TYPE));
    CHECK(f.closed);
    close_fake(&f);
    if (cmd && (cmd->states & PL_SESS_IN(PL_SESS_AUTH)))
      continue;          /* taken before login: answered by the store or the hashers */
    open_fake(core, &f); /* after Hello, before login: the connection ends too */
    hello(&f);
    frame_in(&f, (uint8_t)t);
    CHECK_EQ_I(f.last_code, wire_code(cmd ? PL_ERR_AUTH_REQUIRED : PL_ERR_UNKNOWN_TYPE));
    CHECK(f.closed);
    close_fake(&f);
  }
  open_fake(core, &f); /* a second Hello is an error, not the end */
  hello(&f);
  frame_in(&f, PARLEY__FRAME_TYPE__FRAME_HELLO);
  CHECK_EQ_I(f.last_code, wire_code(PL_ERR_INVALID_ARGUMENT));
  CHECK(!f.closed);
  frame_in(&f, PARLEY__FRAME_TYPE__FRAME_PING); /* Ping is taken before login */
  CHECK_EQ_I(f.last_type, PARLEY__FRAME_TYPE__FRAME_PONG);
  close_fake(&f);
  pl_core_free(core);
  r->ops->free(r);
}

/* ---- the decoded entry -------------------------------------------------- */

static void release_count(ProtobufCMessage *m, void *ud) {
  ((fake *)ud)->released++;
  protobuf_c_message_free_unpacked(m, NULL);
}

static void message_in(fake *f, uint8_t t, ProtobufCMessage *m) {
  pl_conn_msg in = {.type = t, .msg = m, .release = release_count, .ud = f};
  f->c.h->on_message(&f->c, &in, f->c.h->ud);
}

/* A message of type t, as a gateway would hand it (heap, freed by release). */
static ProtobufCMessage *empty_msg(uint8_t t) {
  const ProtobufCMessageDescriptor *md = pl_frame_descriptor(t);
  return protobuf_c_message_unpack(md, NULL, 0, (const uint8_t *)"");
}

static void test_decoded_entry(void) {
  pl_router *r;
  pl_core *core = core_new(&r);
  fake f;
  open_fake(core, &f); /* before Hello, as a frame would be */
  message_in(&f, PARLEY__FRAME_TYPE__FRAME_SEND, empty_msg(PARLEY__FRAME_TYPE__FRAME_SEND));
  CHECK_EQ_I(f.last_code, wire_code(PL_ERR_HELLO_REQUIRED));
  CHECK(f.closed);
  CHECK_EQ_I(f.released, 1);
  close_fake(&f);
  open_fake(core, &f); /* a server's frame type */
  message_in(&f, PARLEY__FRAME_TYPE__FRAME_WELCOME, empty_msg(PARLEY__FRAME_TYPE__FRAME_WELCOME));
  CHECK_EQ_I(f.last_code, wire_code(PL_ERR_UNKNOWN_TYPE));
  CHECK_EQ_I(f.released, 1);
  close_fake(&f);
  open_fake(core, &f); /* a message that is not of its type */
  message_in(&f, PARLEY__FRAME_TYPE__FRAME_PING, empty_msg(PARLEY__FRAME_TYPE__FRAME_SEND));
  CHECK_EQ_I(f.last_code, wire_code(PL_ERR_BAD_FRAME));
  CHECK_EQ_I(f.released, 1);
  close_fake(&f);
  open_fake(core, &f); /* a bad string: INVALID_ARGUMENT, and the session goes on */
  Parley__Hello *h = (Parley__Hello *)empty_msg(PARLEY__FRAME_TYPE__FRAME_HELLO);
  h->version = PL_PROTOCOL_VERSION;
  h->client_name = strdup("x\xed\xa0\x80"); /* a surrogate */
  message_in(&f, PARLEY__FRAME_TYPE__FRAME_HELLO, &h->base);
  CHECK_EQ_I(f.last_code, wire_code(PL_ERR_INVALID_ARGUMENT));
  CHECK(!f.closed);
  Parley__Hello *ok = (Parley__Hello *)empty_msg(PARLEY__FRAME_TYPE__FRAME_HELLO);
  ok->version = PL_PROTOCOL_VERSION;
  message_in(&f, PARLEY__FRAME_TYPE__FRAME_HELLO, &ok->base);
  CHECK_EQ_I(f.last_type, PARLEY__FRAME_TYPE__FRAME_WELCOME);
  CHECK_EQ_I(f.released, 2);
  close_fake(&f);
  pl_core_free(core);
  r->ops->free(r);
}

/* pl_strings_check_msg finds what pl_strings_check finds on the encoding,
 * a NUL carried as an unknown field (pl_json's way) included. */
static void test_strings_on_messages(void) {
  Parley__Send m = PARLEY__SEND__INIT;
  Parley__Media media = PARLEY__MEDIA__INIT;
  pl_strings_fault a, b;
  m.id = "m1";
  m.to = "bob";
  m.body.data = (uint8_t *)"hi\t";
  m.body.len = 3;
  CHECK_EQ_I(pl_strings_check_msg(&m.base, &a), PL_OK);
  m.body.data = (uint8_t *)"\xed\xa0\x80";
  pl_buf *buf = pl_frame_encode(PARLEY__FRAME_TYPE__FRAME_SEND, &m.base);
  CHECK_EQ_I(
      pl_strings_check(PARLEY__FRAME_TYPE__FRAME_SEND, buf->data + PL_FRAME_HDR, buf->len - PL_FRAME_HDR, &b),
      PL_ERR_INVALID_ARGUMENT);
  pl_buf_unref(buf);
  CHECK_EQ_I(pl_strings_check_msg(&m.base, &a), PL_ERR_INVALID_ARGUMENT);
  CHECK_STR(a.field, b.field);
  CHECK_EQ_I(a.why, b.why);
  CHECK_EQ_U(a.bad_fields, b.bad_fields);
  m.body.len = 0;
  media.id = "";
  m.media = &media;
  /* media.id = "a\0b": the field left empty, its bytes an unknown field 1 */
  uint8_t raw[] = {3, 'a', 0, 'b'};
  ProtobufCMessageUnknownField uf = {
      .tag = 1, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = 4, .data = raw};
  media.base.n_unknown_fields = 1;
  media.base.unknown_fields = &uf;
  CHECK_EQ_I(pl_strings_check_msg(&m.base, &a), PL_ERR_INVALID_ARGUMENT);
  CHECK_STR(a.field, "media.id");
  CHECK_EQ_I(a.why, PL_UTF8_NUL);
  CHECK(!(a.bad_fields & 2u)); /* the id can be echoed */
  uf.len = 3;                  /* a length that does not match: not protobuf */
  CHECK_EQ_I(pl_strings_check_msg(&m.base, &a), PL_ERR_BAD_FRAME);
}

int main(void) {
  pl_log_set_level(PL_LOG_WARN); /* each refusal logs a line */
  RUN(test_rows_are_the_client_frames);
  RUN(test_refs_are_field_one);
  RUN(test_states);
  RUN(test_refused_by_state);
  RUN(test_decoded_entry);
  RUN(test_strings_on_messages);
  return tl_summary();
}
