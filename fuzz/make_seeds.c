/* make_seeds: writes the fuzzers' seed corpus, a few small valid and edge
 * inputs per target, into <dir>/<target>/<name> (dir is fuzz/corpus).
 *
 *   cmake --build build-fuzz --target make_seeds && build-fuzz/fuzz/make_seeds fuzz/corpus
 *
 * Seeds come from the real encoders, so they stay valid as the schema grows.
 * Every message target gets: empty (all defaults), typical, max (largest
 * varints, long and multibyte strings), unknown_fields (typical + fields the
 * schema lacks), truncated (typical minus its last byte), repeated_fields
 * (typical twice: the last value wins), field_zero (an overlong tag for
 * field 0, which protobuf-c accepts; see fuzz_msg.c). fuzz_frame inputs are one selector
 * byte (where the stream is split in two reads) and then a byte stream. */
#include <errno.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster/pl_busmsg.h"
#include "common/pl_buf.h"
#include "common/pl_mem.h"
#include "img_fixtures.h"
#include "proto/pl_frame.h"

static const char *root;
static char longstr[301]; /* 300 bytes: a two-byte length prefix */
static char utf8[] = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x99\x82";
static uint8_t binbody[] = {0, 1, 2, 0xff, 0, 0x80, 'h', 'i', 0};

static void die(const char *what, const char *path) {
  fprintf(stderr, "make_seeds: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void put(const char *target, const char *name, const uint8_t *p, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root, target);
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    die("mkdir", path);
  snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
    die("write", path);
}

static uint8_t *pack(const void *msg, size_t *n) {
  *n = protobuf_c_message_get_packed_size(msg);
  uint8_t *p = pl_malloc(*n + 1);
  protobuf_c_message_pack(msg, p);
  return p;
}

static void put_msg(const char *target, const char *name, const void *msg) {
  size_t n;
  uint8_t *p = pack(msg, &n);
  put(target, name, p, n);
  pl_free(p);
}

/* Field 15 varint 7, field 16 length-delimited "xyz", field 17 fixed64, field 18 fixed32. */
static const uint8_t unknown_fields[] = {0x78, 0x07, 0x82, 0x01, 0x03, 'x', 'y',  'z',  0x89, 0x01, 1, 2,
                                         3,    4,    5,    6,    7,    8,   0x95, 0x01, 1,    2,    3, 4};

/* Field 0, varint 5, with its tag in two bytes. */
static const uint8_t field_zero[] = {0x80, 0x00, 0x05};

static void put_variants(const char *target, const void *typical, const void *max) {
  size_t n;
  uint8_t *p = pack(typical, &n);
  put(target, "empty", NULL, 0);
  put(target, "typical", p, n);
  put_msg(target, "max", max);

  pl_bytes b = {0};
  pl_bytes_append(&b, p, n);
  pl_bytes_append(&b, unknown_fields, sizeof unknown_fields);
  put(target, "unknown_fields", b.p, b.len);
  b.len = 0;
  if (n > 1)
    put(target, "truncated", p, n - 1);
  pl_bytes_append(&b, p, n);
  pl_bytes_append(&b, p, n);
  put(target, "repeated_fields", b.p, b.len);
  put(target, "field_zero", field_zero, sizeof field_zero);
  pl_bytes_free(&b);
  pl_free(p);
}

static void messages(void) {
  Parley__Hello hello = PARLEY__HELLO__INIT, hello_max = PARLEY__HELLO__INIT;
  hello.version = 1;
  hello.kind = PARLEY__CLIENT_KIND__KIND_MOBILE;
  hello.client_name = "parley-cli/0.1";
  hello_max.version = UINT32_MAX;
  hello_max.kind = (Parley__ClientKind)99; /* unknown enum values are kept in proto3 */
  hello_max.client_name = longstr;
  put_variants("fuzz_msg_hello", &hello, &hello_max);

  Parley__Register reg = PARLEY__REGISTER__INIT, reg_max = PARLEY__REGISTER__INIT;
  reg.user = "alice";
  reg.password = "correct horse";
  reg.device = "phone";
  reg_max.user = utf8;
  reg_max.password = longstr;
  reg_max.device = longstr;
  put_variants("fuzz_msg_register", &reg, &reg_max);

  Parley__Login login = PARLEY__LOGIN__INIT, login_max = PARLEY__LOGIN__INIT;
  login.user = "bob";
  login.password = "hunter22";
  login.device = "laptop";
  login_max.user = longstr;
  login_max.password = utf8;
  login_max.device = longstr;
  put_variants("fuzz_msg_login", &login, &login_max);

  Parley__Resume resume = PARLEY__RESUME__INIT, resume_max = PARLEY__RESUME__INIT;
  resume.token = "3q2+7wAAAAEAAAAAAAAAAQ";
  resume_max.token = longstr;
  put_variants("fuzz_msg_resume", &resume, &resume_max);

  /* Logout has no fields: typical and max are both empty. */
  Parley__Logout logout = PARLEY__LOGOUT__INIT;
  put_variants("fuzz_msg_logout", &logout, &logout);

  Parley__Send send = PARLEY__SEND__INIT, send_max = PARLEY__SEND__INIT;
  send.id = "m-0001";
  send.to = "bob";
  send.body = (ProtobufCBinaryData){.len = 5, .data = (uint8_t *)"hello"};
  send.client_ts = 1700000000000ull;
  send_max.id = longstr;
  send_max.to = utf8;
  send_max.body = (ProtobufCBinaryData){.len = sizeof binbody, .data = binbody};
  send_max.client_ts = UINT64_MAX;
  send_max.group = "17";
  Parley__Media media_ref = PARLEY__MEDIA__INIT;
  media_ref.id = "4ea1b5b8ebb9c2371708c4b71432b6b2";
  media_ref.type = utf8;
  media_ref.size = UINT64_MAX;
  media_ref.width = media_ref.height = media_ref.thumb_width = media_ref.thumb_height = UINT32_MAX;
  media_ref.name = longstr;
  send_max.media = &media_ref;
  put_variants("fuzz_msg_send", &send, &send_max);

  /* Send.act (protocol.md 11.9): a reaction, and every field at its largest */
  Parley__Act act = PARLEY__ACT__INIT, act_max = PARLEY__ACT__INIT;
  act.kind = PARLEY__ACT_KIND__ACT_REACTION;
  act.target = 3;
  act_max.kind = PARLEY__ACT_KIND__ACT_DELETE_FOR_ME;
  act_max.target = act_max.reply_to = act_max.vanish_at = UINT64_MAX;
  act_max.forwarded = 1;
  act_max.timer_s = UINT32_MAX;
  act_max.target_conv = utf8;
  put_variants("fuzz_msg_act", &act, &act_max);
  Parley__Send send_act = send, send_act_max = send_max;
  send_act.body = (ProtobufCBinaryData){.len = 4, .data = (uint8_t *)"\xf0\x9f\x91\x8d"};
  send_act.act = &act;
  send_act_max.act = &act_max;
  put_msg("fuzz_msg_send", "act_typical", &send_act);
  put_msg("fuzz_msg_send", "act_max", &send_act_max);

  Parley__PushRegister preg = PARLEY__PUSH_REGISTER__INIT, preg_max = PARLEY__PUSH_REGISTER__INIT;
  preg.ref = "p1";
  preg.provider = "fcm";
  preg.token = "dGVzdC10b2tlbg";
  preg_max.ref = longstr;
  preg_max.provider = utf8;
  preg_max.token = longstr;
  put_variants("fuzz_msg_push_register", &preg, &preg_max);
  Parley__Media media_small = PARLEY__MEDIA__INIT;
  media_small.id = "4ea1b5b8ebb9c2371708c4b71432b6b2";
  media_small.type = "image/jpeg";
  media_small.size = 5409;
  media_small.width = 640;
  media_small.height = 480;
  put_variants("fuzz_msg_media", &media_small, &media_ref);

  Parley__Ack ack = PARLEY__ACK__INIT, ack_max = PARLEY__ACK__INIT;
  ack.upto = 42;
  ack_max.upto = UINT64_MAX;
  put_variants("fuzz_msg_ack", &ack, &ack_max);

  Parley__Ping ping = PARLEY__PING__INIT, ping_max = PARLEY__PING__INIT;
  ping.client_ts = 1700000000123ull;
  ping_max.client_ts = UINT64_MAX;
  put_variants("fuzz_msg_ping", &ping, &ping_max);

  Parley__MarkRead mr = PARLEY__MARK_READ__INIT, mr_max = PARLEY__MARK_READ__INIT;
  mr.ref = "r1";
  mr.peer = "bob";
  mr.seq = 7;
  mr_max.ref = longstr;
  mr_max.peer = utf8;
  mr_max.seq = UINT64_MAX;
  mr_max.group = "17";
  put_variants("fuzz_msg_mark_read", &mr, &mr_max);

  Parley__Settings set = PARLEY__SETTINGS__INIT, set_max = PARLEY__SETTINGS__INIT;
  set.ref = "s1";
  set.read_receipts = PARLEY__TOGGLE__TOGGLE_OFF;
  set.group_add = PARLEY__GROUP_ADD__GROUP_ADD_CONTACTS;
  set_max.ref = longstr;
  set_max.read_receipts = (Parley__Toggle)INT32_MAX;
  set_max.group_add = (Parley__GroupAdd)INT32_MAX;
  put_variants("fuzz_msg_settings", &set, &set_max);

  Parley__UnreadGet ug = PARLEY__UNREAD_GET__INIT, ug_max = PARLEY__UNREAD_GET__INIT;
  ug.ref = "u1";
  ug_max.ref = longstr;
  put_variants("fuzz_msg_unread_get", &ug, &ug_max);

  Parley__Done done = PARLEY__DONE__INIT, done_max = PARLEY__DONE__INIT;
  done.ref = "r1";
  done_max.ref = longstr;
  put_variants("fuzz_msg_done", &done, &done_max);

  Parley__Receipt rc = PARLEY__RECEIPT__INIT, rc_max = PARLEY__RECEIPT__INIT;
  rc.qid = 12;
  rc.conv = "dm:alice:bob";
  rc.by = "bob";
  rc.status = PARLEY__RECEIPT_STATUS__RECEIPT_READ;
  rc.seq = 3;
  rc.server_ts = 1700000000789ull;
  rc_max.qid = UINT64_MAX;
  rc_max.conv = longstr;
  rc_max.by = utf8;
  rc_max.status = (Parley__ReceiptStatus)INT32_MAX;
  rc_max.seq = UINT64_MAX;
  rc_max.server_ts = UINT64_MAX;
  put_variants("fuzz_msg_receipt", &rc, &rc_max);

  Parley__ReadSync rs = PARLEY__READ_SYNC__INIT, rs_max = PARLEY__READ_SYNC__INIT;
  rs.qid = 13;
  rs.conv = "dm:alice:bob";
  rs.seq = 3;
  rs.unread = 2;
  rs.server_ts = 1700000000790ull;
  rs_max.qid = UINT64_MAX;
  rs_max.conv = longstr;
  rs_max.seq = UINT64_MAX;
  rs_max.unread = UINT64_MAX;
  rs_max.server_ts = UINT64_MAX;
  put_variants("fuzz_msg_read_sync", &rs, &rs_max);

  Parley__SettingsState ss = PARLEY__SETTINGS_STATE__INIT, ss_max = PARLEY__SETTINGS_STATE__INIT;
  ss.ref = "s1";
  ss.group_add = PARLEY__GROUP_ADD__GROUP_ADD_NOBODY;
  ss_max.ref = longstr;
  ss_max.read_receipts = 1;
  ss_max.group_add = (Parley__GroupAdd)INT32_MAX;
  put_variants("fuzz_msg_settings_state", &ss, &ss_max);

  Parley__ConvState cs = PARLEY__CONV_STATE__INIT, *csp[2] = {&cs, &cs};
  cs.conv = "dm:alice:bob";
  cs.last_seq = 9;
  cs.read_seq = 4;
  cs.unread = 5;
  Parley__Unread un = PARLEY__UNREAD__INIT, un_max = PARLEY__UNREAD__INIT;
  un.ref = "u1";
  un.n_convs = 1;
  un.convs = csp;
  un_max.ref = longstr;
  un_max.n_convs = 2;
  un_max.convs = csp;
  put_variants("fuzz_msg_unread", &un, &un_max);

  char *names[3] = {"alice", "bob", longstr};
  Parley__Contacts ct = PARLEY__CONTACTS__INIT, ct_max = PARLEY__CONTACTS__INIT;
  ct.ref = "c";
  ct.op = PARLEY__CONTACT_OP__CONTACT_ADD;
  ct.user = "bob";
  ct_max.ref = longstr;
  ct_max.op = (Parley__ContactOp)INT32_MAX;
  ct_max.user = utf8;
  put_variants("fuzz_msg_contacts", &ct, &ct_max);

  Parley__ContactList cl = PARLEY__CONTACT_LIST__INIT, cl_max = PARLEY__CONTACT_LIST__INIT;
  cl.ref = "c";
  cl.n_users = 2;
  cl.users = names;
  cl_max.ref = longstr;
  cl_max.n_users = 3;
  cl_max.users = names;
  put_variants("fuzz_msg_contact_list", &cl, &cl_max);

  Parley__Devices dv = PARLEY__DEVICES__INIT, dv_max = PARLEY__DEVICES__INIT;
  dv.ref = "d1";
  dv.op = PARLEY__DEVICES_OP__DEVICES_REVOKE;
  dv.device = "laptop";
  dv_max.ref = longstr;
  dv_max.op = (Parley__DevicesOp)INT32_MAX;
  dv_max.device = utf8;
  put_variants("fuzz_msg_devices", &dv, &dv_max);

  Parley__DeviceInfo di = PARLEY__DEVICE_INFO__INIT, di_max = PARLEY__DEVICE_INFO__INIT;
  di.name = "phone";
  di.device_id = 7;
  di.created = 1700000000000ull;
  di.last_used = 1700000500000ull;
  di.current = 1;
  di.online = 1;
  di_max.name = utf8;
  di_max.device_id = di_max.created = di_max.last_used = UINT64_MAX;
  Parley__DeviceInfo *dis[] = {&di, &di_max};
  Parley__DeviceList dl = PARLEY__DEVICE_LIST__INIT, dl_max = PARLEY__DEVICE_LIST__INIT;
  dl.ref = "d1";
  dl.n_devices = 1;
  dl.devices = dis;
  dl.n_revoked = 1;
  dl.revoked = names;
  dl_max.ref = longstr;
  dl_max.n_devices = 2;
  dl_max.devices = dis;
  dl_max.n_revoked = 3;
  dl_max.revoked = names;
  put_variants("fuzz_msg_device_list", &dl, &dl_max);

  Parley__Block bl = PARLEY__BLOCK__INIT, bl_max = PARLEY__BLOCK__INIT;
  bl.ref = "b";
  bl.user = "bob";
  bl.blocked = 1;
  bl_max.ref = longstr;
  bl_max.user = utf8;
  bl_max.blocked = 1;
  put_variants("fuzz_msg_block", &bl, &bl_max);

  Parley__PresenceSubscribe ps = PARLEY__PRESENCE_SUBSCRIBE__INIT, ps_max = PARLEY__PRESENCE_SUBSCRIBE__INIT;
  ps.ref = "p";
  ps.n_users = 2;
  ps.users = names;
  ps_max.ref = longstr;
  ps_max.n_users = 3;
  ps_max.users = names;
  put_variants("fuzz_msg_presence_subscribe", &ps, &ps_max);

  Parley__PresenceGet pg = PARLEY__PRESENCE_GET__INIT, pg_max = PARLEY__PRESENCE_GET__INIT;
  pg.ref = "g";
  pg.user = "bob";
  pg_max.ref = longstr;
  pg_max.user = utf8;
  put_variants("fuzz_msg_presence_get", &pg, &pg_max);

  Parley__Presence pr = PARLEY__PRESENCE__INIT, pr_max = PARLEY__PRESENCE__INIT;
  pr.user = "bob";
  pr.visible = 1;
  pr.last_seen = 1700000000999ull;
  pr_max.ref = longstr;
  pr_max.user = utf8;
  pr_max.visible = 1;
  pr_max.online = 1;
  pr_max.last_seen = UINT64_MAX;
  put_variants("fuzz_msg_presence", &pr, &pr_max);

  Parley__Typing ty = PARLEY__TYPING__INIT, ty_max = PARLEY__TYPING__INIT;
  ty.to = "bob";
  ty.typing = 1;
  ty_max.to = utf8;
  ty_max.typing = 1;
  ty_max.group = longstr;
  put_variants("fuzz_msg_typing", &ty, &ty_max);

  Parley__TypingEvent te = PARLEY__TYPING_EVENT__INIT, te_max = PARLEY__TYPING_EVENT__INIT;
  te.from = "alice";
  te.conv = "dm:alice:bob";
  te.typing = 1;
  te.expires_ms = 6000;
  te_max.from = utf8;
  te_max.conv = longstr;
  te_max.typing = 1;
  te_max.expires_ms = UINT32_MAX;
  put_variants("fuzz_msg_typing_event", &te, &te_max);

  char *members[] = {"bob", "carol", utf8};
  Parley__GroupCreate gc = PARLEY__GROUP_CREATE__INIT, gc_max = PARLEY__GROUP_CREATE__INIT;
  gc.ref = "c1";
  gc.name = "team";
  gc.n_members = 2;
  gc.members = members;
  gc_max.ref = longstr;
  gc_max.name = utf8;
  gc_max.description = longstr;
  gc_max.n_members = 3;
  gc_max.members = members;
  put_variants("fuzz_msg_group_create", &gc, &gc_max);

  Parley__GroupUpdate gu = PARLEY__GROUP_UPDATE__INIT, gu_max = PARLEY__GROUP_UPDATE__INIT;
  gu.ref = "u1";
  gu.group = "17";
  gu.op = PARLEY__GROUP_OP__GROUP_ADD;
  gu.user = "dave";
  gu_max.ref = longstr;
  gu_max.group = longstr;
  gu_max.op = PARLEY__GROUP_OP__GROUP_SET_ROLE;
  gu_max.user = utf8;
  gu_max.name = utf8;
  gu_max.description = longstr;
  gu_max.role = PARLEY__GROUP_ROLE__ROLE_OWNER;
  put_variants("fuzz_msg_group_update", &gu, &gu_max);

  Parley__GroupListGet glg = PARLEY__GROUP_LIST_GET__INIT, glg_max = PARLEY__GROUP_LIST_GET__INIT;
  glg.ref = "l1";
  glg_max.ref = longstr;
  put_variants("fuzz_msg_group_list_get", &glg, &glg_max);

  Parley__GroupMember gm1 = PARLEY__GROUP_MEMBER__INIT, gm2 = PARLEY__GROUP_MEMBER__INIT;
  gm1.user = "alice";
  gm1.role = PARLEY__GROUP_ROLE__ROLE_OWNER;
  gm2.user = utf8;
  gm2.role = PARLEY__GROUP_ROLE__ROLE_MEMBER;
  Parley__GroupMember *gms[] = {&gm1, &gm2};
  Parley__GroupInfo gi = PARLEY__GROUP_INFO__INIT, gi_max = PARLEY__GROUP_INFO__INIT;
  gi.ref = "c1";
  gi.group = "17";
  gi.name = "team";
  gi.my_role = PARLEY__GROUP_ROLE__ROLE_OWNER;
  gi.member_count = 2;
  gi.last_seq = 3;
  gi.n_members = 2;
  gi.members = gms;
  gi_max.ref = longstr;
  gi_max.group = longstr;
  gi_max.name = utf8;
  gi_max.description = longstr;
  gi_max.my_role = PARLEY__GROUP_ROLE__ROLE_ADMIN;
  gi_max.member_count = UINT64_MAX;
  gi_max.last_seq = UINT64_MAX;
  gi_max.n_members = 2;
  gi_max.members = gms;
  put_variants("fuzz_msg_group_info", &gi, &gi_max);

  Parley__GroupInfo *gis[] = {&gi, &gi_max};
  Parley__GroupList gl = PARLEY__GROUP_LIST__INIT, gl_max = PARLEY__GROUP_LIST__INIT;
  gl.ref = "l1";
  gl.n_groups = 1;
  gl.groups = gis;
  gl_max.ref = longstr;
  gl_max.n_groups = 2;
  gl_max.groups = gis;
  put_variants("fuzz_msg_group_list", &gl, &gl_max);

  Parley__GroupReceiptsGet grg = PARLEY__GROUP_RECEIPTS_GET__INIT, grg_max = PARLEY__GROUP_RECEIPTS_GET__INIT;
  grg.ref = "r1";
  grg.group = "17";
  grg.seq = 4;
  grg_max.ref = longstr;
  grg_max.group = utf8;
  grg_max.seq = UINT64_MAX;
  put_variants("fuzz_msg_group_receipts_get", &grg, &grg_max);

  char *rnames[] = {"alice", utf8, longstr};
  Parley__GroupReceipts gre = PARLEY__GROUP_RECEIPTS__INIT, gre_max = PARLEY__GROUP_RECEIPTS__INIT;
  gre.ref = "r1";
  gre.group = "17";
  gre.seq = 4;
  gre.members = 2;
  gre.delivered = 1;
  gre_max.ref = longstr;
  gre_max.group = utf8;
  gre_max.seq = UINT64_MAX;
  gre_max.members = UINT64_MAX;
  gre_max.delivered = UINT64_MAX;
  gre_max.read = UINT64_MAX;
  gre_max.detailed = 1;
  gre_max.n_delivered_by = 3;
  gre_max.delivered_by = rnames;
  gre_max.n_read_by = 2;
  gre_max.read_by = rnames;
  put_variants("fuzz_msg_group_receipts", &gre, &gre_max);

  Parley__Welcome wel = PARLEY__WELCOME__INIT, wel_max = PARLEY__WELCOME__INIT;
  wel.version = 1;
  wel.server_ts = 1700000000456ull;
  wel.heartbeat_ms = 30000;
  wel.max_frame = 1u << 20;
  wel.max_message = 65536;
  wel.server_name = "parleyd/0.1";
  wel_max.version = UINT32_MAX;
  wel_max.server_ts = UINT64_MAX;
  wel_max.heartbeat_ms = UINT32_MAX;
  wel_max.max_frame = UINT32_MAX;
  wel_max.max_message = UINT32_MAX;
  wel_max.server_name = longstr;
  put_variants("fuzz_msg_welcome", &wel, &wel_max);

  Parley__Error err = PARLEY__ERROR__INIT, err_max = PARLEY__ERROR__INIT;
  err.code = PARLEY__ERROR_CODE__ERR_UNKNOWN_PEER;
  err.message = "unknown peer";
  err.ref = "m-0001";
  err_max.code = (Parley__ErrorCode)100000;
  err_max.message = utf8;
  err_max.ref = longstr;
  put_variants("fuzz_msg_error", &err, &err_max);

  Parley__AuthOk auth = PARLEY__AUTH_OK__INIT, auth_max = PARLEY__AUTH_OK__INIT;
  auth.user = "alice";
  auth.device = "phone";
  auth.device_id = 7;
  auth.token = "3q2+7wAAAAEAAAAAAAAAAQ";
  auth.created = 1;
  auth_max.user = utf8;
  auth_max.device = longstr;
  auth_max.device_id = UINT64_MAX;
  auth_max.token = longstr;
  auth_max.created = 1;
  put_variants("fuzz_msg_auth_ok", &auth, &auth_max);

  Parley__SendAck sack = PARLEY__SEND_ACK__INIT, sack_max = PARLEY__SEND_ACK__INIT;
  sack.id = "m-0001";
  sack.conv = "dm:alice:bob";
  sack.seq = 1;
  sack.server_ts = 1700000000789ull;
  sack_max.id = longstr;
  sack_max.conv = utf8;
  sack_max.seq = UINT64_MAX;
  sack_max.server_ts = UINT64_MAX;
  sack_max.duplicate = 1;
  put_variants("fuzz_msg_send_ack", &sack, &sack_max);

  Parley__Message msg = PARLEY__MESSAGE__INIT, msg_max = PARLEY__MESSAGE__INIT;
  msg.qid = 9;
  msg.conv = "dm:alice:bob";
  msg.seq = 3;
  msg.from = "alice";
  msg.from_device = "phone";
  msg.id = "m-0001";
  msg.body = (ProtobufCBinaryData){.len = 5, .data = (uint8_t *)"hello"};
  msg.client_ts = 1700000000000ull;
  msg.server_ts = 1700000000789ull;
  msg_max.qid = UINT64_MAX;
  msg_max.conv = longstr;
  msg_max.seq = UINT64_MAX;
  msg_max.from = utf8;
  msg_max.from_device = longstr;
  msg_max.id = longstr;
  msg_max.body = (ProtobufCBinaryData){.len = sizeof binbody, .data = binbody};
  msg_max.client_ts = UINT64_MAX;
  msg_max.server_ts = UINT64_MAX;
  Parley__GroupEvent gev = PARLEY__GROUP_EVENT__INIT;
  gev.type = PARLEY__GROUP_EVENT_TYPE__GE_ROLE;
  gev.actor = "alice";
  gev.user = utf8;
  gev.name = longstr;
  gev.role = PARLEY__GROUP_ROLE__ROLE_ADMIN;
  msg_max.group = longstr; /* a group message with an event: every field set */
  msg_max.event = &gev;
  put_variants("fuzz_msg_message", &msg, &msg_max);

  Parley__Pong pong = PARLEY__PONG__INIT, pong_max = PARLEY__PONG__INIT;
  pong.client_ts = 1700000000123ull;
  pong.server_ts = 1700000000124ull;
  pong_max.client_ts = UINT64_MAX;
  pong_max.server_ts = UINT64_MAX;
  put_variants("fuzz_msg_pong", &pong, &pong_max);
}

/* Writes a fuzz_frame input: the selector byte, then the stream. */
static void put_stream(const char *name, uint8_t selector, const pl_bytes *s) {
  pl_bytes b = {0};
  pl_bytes_append(&b, &selector, 1);
  pl_bytes_append(&b, s->p, s->len);
  put("fuzz_frame", name, b.p, b.len);
  pl_bytes_free(&b);
}

static void raw_frame(pl_bytes *s, uint32_t length, uint8_t type, const void *payload, size_t n) {
  uint8_t h[5] = {(uint8_t)(length >> 24), (uint8_t)(length >> 16), (uint8_t)(length >> 8), (uint8_t)length,
                  type};
  pl_bytes_append(s, h, sizeof h);
  pl_bytes_append(s, payload, n);
}

static void frames(void) {
  Parley__Hello hello = PARLEY__HELLO__INIT;
  hello.version = 1;
  hello.kind = PARLEY__CLIENT_KIND__KIND_BOT;
  hello.client_name = "seed";
  Parley__Register reg = PARLEY__REGISTER__INIT;
  reg.user = "alice";
  reg.password = "correct horse";
  Parley__Send send = PARLEY__SEND__INIT;
  send.id = "m-1";
  send.to = "bob";
  send.body = (ProtobufCBinaryData){.len = 2, .data = (uint8_t *)"hi"};
  Parley__Ack ack = PARLEY__ACK__INIT;
  ack.upto = 5;
  Parley__Ping ping = PARLEY__PING__INIT;
  ping.client_ts = 12345;
  Parley__Logout logout = PARLEY__LOGOUT__INIT;
  pl_bytes s = {0};

  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_HELLO, &hello.base);
  put_stream("hello", 0x80, &s);

  /* A whole session, split in the middle of a frame. */
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_REGISTER, &reg.base);
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_SEND, &send.base);
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_ACK, &ack.base);
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_LOGOUT, &logout.base);
  put_stream("session", 0x55, &s);
  /* The same, split inside the first header. */
  put_stream("session_split_header", 0x01, &s);

  /* Ends halfway through a frame: the tail stays buffered. */
  s.len = 0;
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_HELLO, &hello.base);
  size_t whole = s.len;
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_SEND, &send.base);
  s.len = whole + (s.len - whole) / 2;
  put_stream("partial", 0xc0, &s);

  /* Every type, each with an empty payload (all fields default). */
  s.len = 0;
  for (unsigned t = 0; t <= 16; t++)
    raw_frame(&s, 1, (uint8_t)t, NULL, 0);
  put_stream("every_type_empty", 0x20, &s);

  /* Framing errors, after a good frame. */
  s.len = 0;
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
  whole = s.len;
  raw_frame(&s, 0, 0, NULL, 0);
  put_stream("zero_length", 0x80, &s);
  s.len = whole;
  raw_frame(&s, (1u << 20) + 1, PARLEY__FRAME_TYPE__FRAME_SEND, "x", 1);
  put_stream("too_large", 0x80, &s);
  s.len = whole;
  raw_frame(&s, UINT32_MAX, PARLEY__FRAME_TYPE__FRAME_SEND, NULL, 0);
  put_stream("length_max", 0x80, &s);
  /* Exactly the limit: a valid prefix for a frame that never completes. */
  s.len = whole;
  raw_frame(&s, 1u << 20, PARLEY__FRAME_TYPE__FRAME_SEND, "\x0a\x01", 2);
  put_stream("length_at_limit", 0x80, &s);

  /* Unknown type, and a payload that is not protobuf for its type. */
  s.len = 0;
  raw_frame(&s, 4, 0x63, "abc", 3);
  raw_frame(&s, 3, PARLEY__FRAME_TYPE__FRAME_SEND, "\xff\xff", 2);
  raw_frame(&s, 3, PARLEY__FRAME_TYPE__FRAME_HELLO, "\x1a\x05", 2); /* string longer than the payload */
  pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
  put_stream("bad_payloads", 0x30, &s);

  /* Many small frames back to back. */
  s.len = 0;
  for (int i = 0; i < 64; i++)
    pl_frame_append(&s, PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
  put_stream("many_pings", 0x7f, &s);

  s.len = 0;
  put_stream("empty_stream", 0x00, &s);
  pl_bytes_free(&s);
}

/* ---- the web: HTTP requests and WebSocket frames (byte 0: piece size) ---- */

static void put_web(const char *target, const char *name, uint8_t piece, const void *p, size_t n) {
  pl_bytes b = {0};
  pl_bytes_append(&b, &piece, 1);
  pl_bytes_append(&b, p, n);
  put(target, name, b.p, b.len);
  pl_bytes_free(&b);
}

/* A masked client frame (mask 0x11223344). */
static void ws_frame(pl_bytes *out, uint8_t b0, const void *p, size_t n) {
  static const uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
  uint8_t h[8] = {b0};
  size_t hl = 2;
  if (n < 126) {
    h[1] = (uint8_t)(0x80 | n);
  } else {
    h[1] = 0x80 | 126;
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
    hl = 4;
  }
  pl_bytes_append(out, h, hl);
  pl_bytes_append(out, mask, 4);
  for (size_t i = 0; i < n; i++) {
    uint8_t c = ((const uint8_t *)p)[i] ^ mask[i % 4];
    pl_bytes_append(out, &c, 1);
  }
}

static void web(void) {
  static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char pipelined[] =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char post[] = "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             "Content-Length: 27\r\n\r\n{\"user\":\"a\",\"password\":\"b\"}";
  static const char chunked[] =
      "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  static const char upgrade[] =
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: chat, parley.proto.v1\r\n\r\n";
  static const char http10[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  static const char folded[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: a,\r\n upgrade\r\nX: y\r\n\r\n";
  static const char bad[] = "GET / HTTP/9.9\r\n\r\nHELLO\r\n";
  static const char upload[] = "POST /media?name=a.jpg HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n4\r\n\xff\xd8\xff\xe0\r\n0\r\n\r\n";
  static const char range[] =
      "GET /media/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: x\r\n"
      "Range: bytes=0-9\r\nIf-Range: \"e\"\r\n\r\nGET /m HTTP/1.1\r\nRange: bytes=-5\r\n\r\n";
  put_web("fuzz_http", "upload", 9, upload, sizeof upload - 1);
  put_web("fuzz_http", "range", 17, range, sizeof range - 1);
  put_web("fuzz_http", "get", 64, get, sizeof get - 1);
  put_web("fuzz_http", "get_bytewise", 0, get, sizeof get - 1);
  put_web("fuzz_http", "pipelined", 7, pipelined, sizeof pipelined - 1);
  put_web("fuzz_http", "post_json", 13, post, sizeof post - 1);
  put_web("fuzz_http", "chunked", 5, chunked, sizeof chunked - 1);
  put_web("fuzz_http", "upgrade", 31, upgrade, sizeof upgrade - 1);
  put_web("fuzz_http", "http10", 63, http10, sizeof http10 - 1);
  put_web("fuzz_http", "folded", 2, folded, sizeof folded - 1);
  put_web("fuzz_http", "bad_version", 63, bad, sizeof bad - 1);

  pl_bytes s = {0}, native = {0};
  Parley__Ping ping = PARLEY__PING__INIT;
  ping.client_ts = 1234567;
  pl_frame_append(&native, PARLEY__FRAME_TYPE__FRAME_PING, &ping.base);
  ws_frame(&s, 0x82, native.p, native.len);
  put_web("fuzz_ws", "native_ping", 63, s.p, s.len);
  s.len = 0;
  ws_frame(&s, 0x02, native.p, 2); /* fragments, a ping between them */
  ws_frame(&s, 0x89, "hi", 2);
  ws_frame(&s, 0x80, native.p + 2, native.len - 2);
  ws_frame(&s, 0x81, "{\"t\":\"caf\xc3\xa9\"}", 14);
  put_web("fuzz_ws", "fragments", 3, s.p, s.len);
  s.len = 0;
  ws_frame(&s, 0x81, "ok \xc3\x28", 5);
  put_web("fuzz_ws", "bad_utf8", 63, s.p, s.len);
  s.len = 0;
  ws_frame(&s, 0x88,
           "\x03\xe8"
           "bye",
           5);
  put_web("fuzz_ws", "close", 63, s.p, s.len);
  s.len = 0;
  uint8_t big[300];
  memset(big, 'b', sizeof big);
  ws_frame(&s, 0x82, big, sizeof big);
  ws_frame(&s, 0x8a, "", 0);
  uint8_t unmasked[] = {0x82, 0x02, 0x00, 0x00};
  pl_bytes_append(&s, unmasked, sizeof unmasked);
  put_web("fuzz_ws", "big_then_unmasked", 17, s.p, s.len);
  pl_bytes_free(&s);
  pl_bytes_free(&native);

  static const char *const json[][2] = {
      {"hello", "{\"type\":\"hello\",\"version\":1,\"kind\":\"KIND_WEB\",\"client_name\":\"web/1\"}"},
      {"send", "{\"type\":\"send\",\"id\":\"c1\",\"to\":\"bob\",\"body\":\"aOKAmWxsbw==\",\"client_ts\":"
               "\"1763900000123\"}"},
      {"send_act", "{\"type\":\"send\",\"id\":\"c2\",\"to\":\"bob\",\"body\":\"8J+RjQ==\","
                   "\"act\":{\"kind\":\"ACT_REACTION\",\"target\":3}}"},
      {"message_act", "{\"type\":\"message\",\"seq\":4,\"act\":{\"kind\":4,\"timer_s\":86400,"
                      "\"vanish_at\":\"18446744073709551615\"}}"},
      {"ack", "{\"type\":\"ack\",\"upto\":18446744073709551615}"},
      {"group_create",
       "{\"type\":\"group_create\",\"ref\":\"r\",\"name\":\"team\",\"users\":[\"bob\",\"carol\"]}"},
      {"message", "{\"type\":\"message\",\"qid\":9,\"event\":{\"type\":1,\"user\":\"bob\"},\"body\":null}"},
      {"settings", "{\"type\":\"settings\",\"ref\":\"s\",\"group_add\":\"GROUP_ADD_CONTACTS\"}"},
      {"bad", "{\"type\":\"send\",\"id\":5,\"type\":\"ack\"}"},
      {"unknown", "[{\"type\":\"nope\"}, 1.5e300, \"\\u0000\"]"},
      {"strings", "{\"type\":\"register\",\"user\":\"al\\u0000x\",\"device\":\"\\ud800\\udc00\\udbff\\\"\"}"},
      {"uint64_max", "{\"type\":\"ping\",\"client_ts\":\"18446744073709551615\"}"},
  };
  for (size_t i = 0; i < sizeof json / sizeof json[0]; i++)
    put("fuzz_json", json[i][0], (const uint8_t *)json[i][1], strlen(json[i][1]));
}

/* fuzz_strings: a type byte, then a payload; good strings and each kind of
 * bad one, at the top and in a sub-message (protocol.md 4, "Strings"). A
 * variant replaces the first bytes equal to `mark` by as many of `with`. */
typedef struct strings_variant {
  const char *name, *mark, *with;
} strings_variant;

static void put_strings(uint8_t type, const void *msg, const strings_variant *v, size_t nv) {
  size_t n;
  uint8_t *p = pack(msg, &n);
  for (size_t i = 0; i < nv; i++) {
    pl_bytes b = {0};
    pl_bytes_append(&b, &type, 1);
    pl_bytes_append(&b, p, n);
    uint8_t *at = v[i].mark ? memmem(b.p + 1, n, v[i].mark, strlen(v[i].mark)) : NULL;
    if (at)
      memcpy(at, v[i].with, strlen(v[i].mark));
    put("fuzz_strings", v[i].name, b.p, b.len);
    pl_bytes_free(&b);
  }
  pl_free(p);
}

static void strings(void) {
  static const strings_variant reg_v[] = {
      {"register_good", NULL, NULL},
      {"register_nul", "XYZ", "\0x\0"},
      {"device_surrogate", "XYZ", "\xed\xa0\x80"},
      {"device_overlong", "XYZ", "\xc0\xaf!"},
      {"device_bidi", "XYZ", "\xe2\x80\xae"},
  };
  static const strings_variant send_v[] = {
      {"send_good", NULL, NULL},          {"send_id_nul", "-", "\0"},      {"send_body_esc", "QQ", "\x1b["},
      {"send_body_c1", "QQ", "\xc2\x9b"}, {"send_media_bad", "W", "\xff"},
  };
  static const strings_variant group_v[] = {
      {"group_good", NULL, NULL},
      {"group_newline", "Z", "\n"},
      {"group_member_bad", "carol", "ca\xf4\x90l"},
  };
  Parley__Register r = PARLEY__REGISTER__INIT;
  r.user = "alice";
  r.password = "pass word \x1b ok";
  r.device = "t\xc3\xa9l\xc3\xa9phone XYZ";
  put_strings(PARLEY__FRAME_TYPE__FRAME_REGISTER, &r, reg_v, sizeof reg_v / sizeof reg_v[0]);
  Parley__Media md = PARLEY__MEDIA__INIT;
  md.id = "0123456789abcdef0123456789abcdeW";
  Parley__Send snd = PARLEY__SEND__INIT;
  snd.id = "same-one";
  snd.to = "bob";
  static const char body[] = "two\nlines\tQQ";
  snd.body = (ProtobufCBinaryData){.data = (uint8_t *)body, .len = sizeof body - 1};
  snd.media = &md;
  put_strings(PARLEY__FRAME_TYPE__FRAME_SEND, &snd, send_v, sizeof send_v / sizeof send_v[0]);
  Parley__GroupCreate g = PARLEY__GROUP_CREATE__INIT;
  char *members[] = {"bob", "carol"};
  g.ref = "r1";
  g.name = "team Z";
  g.description = "line\nline";
  g.n_members = 2;
  g.members = members;
  put_strings(PARLEY__FRAME_TYPE__FRAME_GROUP_CREATE, &g, group_v, sizeof group_v / sizeof group_v[0]);
  static const uint8_t field_zero[] = {PARLEY__FRAME_TYPE__FRAME_LOGIN, 0x80, 0x00,
                                       0x06}; /* protobuf-c skips it */
  put("fuzz_strings", "field_zero", field_zero, sizeof field_zero);
}

/* fuzz_img: each fixture of tests/img_fixtures.c (metadata planted), and the
 * GIF with its last byte (the trailer) cut off. */
static void images(void) {
  static const struct {
    const char *name;
    void (*make)(pl_bytes *out, int variant);
    int variant;
  } imgs[] = {{"jpeg", fx_jpeg, 0},
              {"jpeg_progressive", fx_jpeg, 1},
              {"webp_lossy", fx_webp, 0},
              {"webp_lossless", fx_webp, 1}};
  pl_bytes b = {0};
  for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++, b.len = 0) {
    imgs[i].make(&b, imgs[i].variant);
    put("fuzz_img", imgs[i].name, b.p, b.len);
  }
  static const struct {
    const char *name;
    void (*make)(pl_bytes *out);
  } more[] = {{"png", fx_png}, {"apng", fx_apng}, {"webp_anim", fx_webp_anim}, {"gif", fx_gif}};
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++, b.len = 0) {
    more[i].make(&b);
    put("fuzz_img", more[i].name, b.p, b.len);
  }
  fx_gif(&b);
  put("fuzz_img", "gif_truncated", b.p, b.len - 1);
  pl_bytes_free(&b);
}

/* fuzz_push: byte 0 the parser, 2 bytes of status, the body. */
static void push_seed(const char *name, uint8_t which, unsigned status, const char *body) {
  uint8_t buf[1024];
  size_t n = strlen(body);
  buf[0] = which;
  buf[1] = (uint8_t)(status >> 8);
  buf[2] = (uint8_t)status;
  memcpy(buf + 3, body, n);
  put("fuzz_push", name, buf, n + 3);
}

static void push(void) {
  push_seed("fcm_unregistered", 0, 404,
            "{\"error\":{\"code\":404,\"status\":\"NOT_FOUND\",\"details\":[{\"@type\":"
            "\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"UNREGISTERED\"}]}}");
  push_seed("fcm_invalid", 0, 400, "{\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\"}}");
  push_seed("apns_gone", 1, 410, "{\"reason\":\"Unregistered\",\"timestamp\":1700000000000}");
  push_seed("apns_bad", 1, 400, "{\"reason\":\"BadDeviceToken\"}");
  push_seed("webhook", 2, 503, "");
  push_seed("creds", 3, 0,
            "{\"type\":\"service_account\",\"project_id\":\"p\",\"client_email\":\"a@p.iam\","
            "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAA==\\n-----END PRIVATE KEY-----\\n\","
            "\"token_uri\":\"https://oauth2.googleapis.com/token\"}");
  push_seed("token", 4, 200, "{\"access_token\":\"ya29.x\",\"expires_in\":3599,\"token_type\":\"Bearer\"}");
  static const uint8_t der[] = {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02};
  uint8_t b[16] = {5, 0, 0};
  memcpy(b + 3, der, sizeof der);
  put("fuzz_push", "der", b, sizeof der + 3);
  push_seed("hook_allow", 6, 200, "{\"action\":\"allow\"}");
  push_seed("hook_mask", 6, 200, "{\"action\":\"mask\",\"text\":\"oh **** it\"}");
  push_seed("hook_reject", 6, 200, "{\"action\":\"reject\"}");
}

/* fuzz_tls: real ClientHellos (TLS 1.3, and 1.2 at most) from OpenSSL's
 * client, whole and in small pieces, and what a confused client sends. */
static void put_hello(const char *name, uint8_t piece, int max_version) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL *ssl = SSL_new(ctx);
  BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, r, w);
  SSL_set_tlsext_host_name(ssl, "localhost");
  SSL_connect(ssl); /* writes the ClientHello, then waits for the server */
  char *p;
  long n = BIO_get_mem_data(w, &p);
  uint8_t *seed = pl_malloc((size_t)n + 1);
  seed[0] = piece;
  memcpy(seed + 1, p, (size_t)n);
  put("fuzz_tls", name, seed, (size_t)n + 1);
  pl_free(seed);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}

static void tls(void) {
  put_hello("hello13", 255, TLS1_3_VERSION);
  put_hello("hello13_pieces", 1, TLS1_3_VERSION);
  put_hello("hello12", 255, TLS1_2_VERSION);
  static const char http[] = "\xffGET / HTTP/1.1\r\nHost: x\r\n\r\n";
  put("fuzz_tls", "http_instead", (const uint8_t *)http, sizeof http - 1);
  static const uint8_t partial[] = {0x00, 0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00};
  put("fuzz_tls", "partial_record", partial, sizeof partial);
}

/* fuzz_proxy: PROXY v2 headers as haproxy sends them, and near misses. */
static void proxy(void) {
  static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  uint8_t v4[16 + 12 + 5], v6[16 + 36], local[16], tlv[16 + 12 + 7], bad[16];
  memcpy(v4, sig, 12);
  v4[12] = 0x21, v4[13] = 0x11, v4[14] = 0, v4[15] = 12;
  const uint8_t a4[12] = {203, 0, 113, 7, 10, 0, 0, 1, 0xd4, 0x31, 0x1e, 0x15};
  memcpy(v4 + 16, a4, 12);
  memcpy(v4 + 28, "\x16\x03\x01\x00\x05", 5); /* the start of what follows it */
  put("fuzz_proxy", "v4_then_data", v4, sizeof v4);
  memcpy(v6, sig, 12);
  v6[12] = 0x21, v6[13] = 0x21, v6[14] = 0, v6[15] = 36;
  for (int i = 0; i < 36; i++)
    v6[16 + i] = (uint8_t)(0x20 + i);
  put("fuzz_proxy", "v6", v6, sizeof v6);
  memcpy(local, sig, 12);
  local[12] = 0x20, local[13] = 0x00, local[14] = 0, local[15] = 0;
  put("fuzz_proxy", "local", local, sizeof local);
  memcpy(tlv, v4, 28);
  tlv[15] = 19;
  memcpy(tlv + 28,
         "\x04\x00\x04"
         "abcd",
         7); /* a TLV (PP2_TYPE_NOOP) */
  put("fuzz_proxy", "v4_tlv", tlv, sizeof tlv);
  memcpy(bad, local, 16);
  bad[12] = 0x11; /* version 1 in the binary form */
  put("fuzz_proxy", "bad_version", bad, sizeof bad);
  put("fuzz_proxy", "v1_text", (const uint8_t *)"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 32);
  put("fuzz_proxy", "truncated", v4, 20);
}

/* fuzz_mqtt: a version byte (bit 0: MQTT 5; bits 1-7: max packet size / 16),
 * then packets as paho and mosquitto send them, and the malformed ones the
 * integration test sends. */
static void mqtt_put(const char *name, uint8_t sel, const char *pkts, size_t n) {
  uint8_t b[512];
  b[0] = sel;
  memcpy(b + 1, pkts, n);
  put("fuzz_mqtt", name, b, n + 1);
}
#define MQTT_SEED(name, sel, lit) mqtt_put(name, sel, lit, sizeof(lit) - 1)

static void mqtt(void) {
  MQTT_SEED("connect311_session", 0,
            "\x10\x1b\x00\x04MQTT\x04\xc2\x00\x3c\x00\x04"
            "dev1\x00\x05"
            "alice\x00\x02pw"
            "\x82\x0e\x00\x02\x00\x03"
            "a/#\x01\x00\x03+/b\x02"
            "\x32\x09\x00\x03"
            "a/b\x00\x07hi"
            "\x40\x02\x00\x07\xc0\x00\xe0\x00");
  MQTT_SEED("connect5_will_props", 1,
            "\x10\x2f\x00\x04MQTT\x05\x8e\x00\x1e\x08\x11\x00\x00\x0e\x10\x21\x00\x0a\x00\x05"
            "phone\x05\x18\x00\x00\x00\x05\x00\x03w/x\x00\x03"
            "bye\x00\x03"
            "bob"
            "\x30\x06\x00\x00\x03\x23\x00\x01");
  MQTT_SEED("publish5_user_props", 1,
            "\x32\x17\x00\x01t\x00\x01\x0e"
            "\x26\x00\x01k\x00\x01v"
            "\x26\x00\x01x\x00\x01y"
            "hey"
            "\x40\x09\x00\x09\x87\x05\x1f\x00\x02no"
            "\x62\x02\x00\x01\x90\x05\x00\x03\x00\x01\x87\xf0\x00");
  MQTT_SEED("subscribe5_opts", 1,
            "\x82\x0d\x00\x02\x02\x0b\x05\x00\x01"
            "a\x2c\x00\x01"
            "b\x00"
            "\xa2\x07\x00\x03\x00\x00\x02"
            "a/\xb0\x04\x00\x03\x00\x11");
  MQTT_SEED("bad_length", 0, "\x30\xff\xff\xff\xff\x01");
  MQTT_SEED("bad_utf8", 0, "\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\x61\xff");
  MQTT_SEED("bad_version", 0, "\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00");
  MQTT_SEED("bad_flags", 0, "\xc1\x00\x80\x06\x00\x01\x00\x01\x61\x01");
  MQTT_SEED("oversize", 0x10, "\x30\x80\x01");
}

/* fuzz_busmsg: one message of each kind a node sends, and near misses. */
static void busmsg_put(const char *name, const pl_busmsg *m, size_t cut) {
  uint8_t buf[512];
  size_t n = 0;
  if (pl_busmsg_encode(m, buf, sizeof buf, &n) != PL_OK)
    die("pl_busmsg_encode", name);
  put("fuzz_busmsg", name, buf, n - cut);
}

static void busmsgs(void) {
  static const uint64_t devs[] = {3, 4, 1u << 20};
  static const uint8_t typing[] = {0, 0, 0, 4, 40, 8, 1, 16, 1}; /* a frame header and a few bytes */
  pl_busmsg m = {.node_len = 9, .node = "host:7700", .incarnation = 1765000000000ull};
  for (unsigned t = 1; t <= PL_BUSMSG_TYPE_MAX; t++) {
    m.type = (uint8_t)t;
    m.a = t == PL_BUSMSG_ALIVE ? 2000 : 77;
    m.b = t == PL_BUSMSG_ATTACH || t == PL_BUSMSG_OFFLINE ? 1765000000500ull : t == PL_BUSMSG_GCHANGE;
    int with_ids =
        t == PL_BUSMSG_HINT || t == PL_BUSMSG_FRAME || t == PL_BUSMSG_GFRAME || t == PL_BUSMSG_GCHANGE;
    m.nids = with_ids ? 3 : 0;
    m.ids = with_ids ? devs : NULL;
    int with_payload =
        t == PL_BUSMSG_FRAME || t == PL_BUSMSG_GFRAME || t == PL_BUSMSG_ONLINE || t == PL_BUSMSG_STATE;
    m.payload = t == PL_BUSMSG_ONLINE  ? (const uint8_t *)"alice"
                : t == PL_BUSMSG_STATE ? (const uint8_t *)"host:7701"
                                       : typing;
    m.plen = !with_payload ? 0 : t == PL_BUSMSG_ONLINE ? 5 : t == PL_BUSMSG_STATE ? 9 : sizeof typing;
    if (!with_payload)
      m.payload = NULL;
    char name[32];
    snprintf(name, sizeof name, "%s", pl_busmsg_type_name(t));
    for (char *p = name; *p; p++)
      *p = (char)(*p - 'A' + 'a');
    busmsg_put(name, &m, 0);
  }
  m.type = PL_BUSMSG_HINT;
  m.nids = 3;
  m.ids = devs;
  m.plen = 0;
  m.payload = NULL;
  busmsg_put("hint_truncated", &m, 5);
}

/* fuzz_seal: key files as `parleyd key` writes them, the other forms it
 * reads, and near misses. */
static void seals(void) {
  static const char *const files[][2] = {
      {"one", "# parleyd key file\n1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"},
      {"two", "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
              "2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n"},
      {"bare_hex", "A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF\r\n"},
      {"tab_crlf", "255\t000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n\n"},
      {"dup_id", "3 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
                 "3 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"},
      {"short_key", "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e\n"},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    put("fuzz_seal", files[i][0], (const uint8_t *)files[i][1], strlen(files[i][1]));
  uint8_t raw[32];
  for (int i = 0; i < 32; i++)
    raw[i] = (uint8_t)(i * 37 + 1);
  put("fuzz_seal", "raw32", raw, sizeof raw);
}

/* fuzz_ids: group ids at their bounds, tokens, media ids and names. */
static void ids(void) {
  static const char *const seeds[][2] = {
      {"gid_1", "1"},
      {"gid_18", "999999999999999999"},
      {"gid_max", "9223372036854775807"},
      {"gid_past_max", "9223372036854775808"},
      {"gid_20", "10000000000000000000"},
      {"gid_lead0", "012"},
      {"token", "OQfT2pM4s8Yk1cQxw0Y9lQp2nN6v7mZ0aBcDeFgHiJk"},
      {"token_short", "OQf"},
      {"token_bad", "OQ+T"},
      {"media", "3907ceaa3d2743ec561dfef9c959d990"},
      {"media_upper", "3907CEAA3D2743EC561DFEF9C959D990"},
      {"name", "Alice"},
  };
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
    put("fuzz_ids", seeds[i][0], (const uint8_t *)seeds[i][1], strlen(seeds[i][1]));
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds CORPUS_DIR   (e.g. fuzz/corpus)\n");
    return 2;
  }
  root = argv[1];
  if (mkdir(root, 0755) != 0 && errno != EEXIST)
    die("mkdir", root);
  memset(longstr, 'z', sizeof longstr - 1);
  messages();
  strings();
  frames();
  web();
  push();
  images();
  tls();
  proxy();
  mqtt();
  busmsgs();
  seals();
  ids();
  return pl_mem_used() == 0 ? 0 : 1;
}
