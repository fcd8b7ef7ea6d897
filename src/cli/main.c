/* parley: the command-line client, a thin user of libparley.
 *
 * Every command opens one session (register, or login with user, password
 * and device), does its one thing and exits: 0 on success, else one line
 * "parley: <reason>" on stderr and a status that tells the kind of failure
 * (see usage()). Received messages are only acknowledged after they have
 * been written out, so a crash or a closed pipe means redelivery, never loss. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_http.h"
#include "cli_internal.h"
#include "cli_json.h"
#include "common/pl_buf.h"
#include "parley/parley.h"

static void usage(FILE *out) {
  fputs(
      "usage: parley [--server HOST:PORT] [--user NAME] [--password PW] [--device NAME] COMMAND\n"
      "\n"
      "commands:\n"
      "  register [--invite CODE]    create the account (and its first device); prints\n"
      "                              {\"registered\":USER,\"device\":NAME}; --invite: the code a server\n"
      "                              with sign-up by invitation asks for\n"
      "  send [--id ID] PEER TEXT    send TEXT to PEER; once the server has acked, print\n"
      "                              {\"id\":\"..\",\"conv\":\"..\",\"seq\":N,\"server_ts\":MS}\n"
      "                              (the same --id again prints the same seq: no second copy)\n"
      "  send --group GROUP TEXT     the same, to a group you are in\n"
      "  send --image FILE PEER [CAPTION]   upload FILE (JPEG, PNG, WebP, GIF; other files if the\n"
      "                              server takes them) and send it; prints the ack with \"media\":{..}\n"
      "                              (with --group GROUP instead of PEER: to a group)\n"
      "  fetch [--thumb] [--force] MEDIA_ID OUT  download an image or file you may see (or its\n"
      "                              thumbnail) into OUT, which must not exist unless --force;\n"
      "                              recv shows image messages with \"media\":{\"id\":..}\n"
      "  recv [--wait S] [--no-ack]  print each pending message as one JSON line, then acknowledge\n"
      "                              them (unless --no-ack); exit after S seconds without a\n"
      "                              message (default 1, fractions allowed):\n"
      "                              {\"type\":\"message\",\"from\":..,\"conv\":..,\"seq\":N,\"id\":..,\n"
      "                               \"text\":..,\"client_ts\":MS,\"server_ts\":MS}\n"
      "                              and for a reply, reaction, edit, delete or timer change\n"
      "                              \"act\":{\"kind\":..,\"target\":N,\"reply_to\":N,...} (protocol.md "
      "11.9)\n"
      "  chat PEER                   send each line of standard input to PEER and print incoming\n"
      "                              messages as \"sender: text\"; end of input (Ctrl-D) or /quit\n"
      "                              quits, /help lists the commands (a line starting with / is one;\n"
      "                              //text sends \"/text\"; /reply, /react, /edit, /delete act on\n"
      "                              a message; /forward [#N] USER, or --group GROUP, sends one on\n"
      "                              marked forwarded); prints PEER's presence (when PEER has\n"
      "                              you as a contact), receipts, read syncs and typing as recv does:\n"
      "                              "
      "{\"type\":\"receipt\",\"status\":\"delivered\"|\"read\",\"conv\":..,\"by\":..,\"seq\":N}\n"
      "                              {\"type\":\"read_sync\",\"conv\":..,\"seq\":N,\"unread\":N}\n"
      "                              {\"type\":\"presence\",\"user\":..,\"online\":B,\"last_seen\":MS|null}\n"
      "                              {\"type\":\"typing\",\"user\":..,\"conv\":..,\"typing\":B}\n"
      "  read PEER SEQ               mark the conversation with PEER read up to SEQ\n"
      "  presence PEER               print {\"user\":..,\"online\":B,\"last_seen\":MS|null}\n"
      "  contacts [add|remove NAME]  change and print the contact list {\"contacts\":[..]}\n"
      "  block NAME / unblock NAME   refuse (or accept again) messages from NAME\n"
      "  devices [revoke NAME]       revoke a device of yours (logs it out), and print those signed in:\n"
      "                              {\"devices\":[{\"name\":..,\"id\":N,\"created\":MS,\"last_used\":MS,\n"
      "                              \"current\":B,\"online\":B}]}\n"
      "  typing PEER                 tell PEER's devices you are typing\n"
      "  settings [--read-receipts on|off] [--last-seen everyone|contacts|nobody]\n"
      "           [--group-add everyone|contacts|nobody]   change your privacy settings (those\n"
      "                              not given stay as they are) and print them all:\n"
      "                              {\"read_receipts\":\"on\",\"last_seen\":\"contacts\",\"group_add\":..}\n"
      "                              group_add: who may add you to groups (others get exit 5)\n"
      "  group create NAME [MEMBER...]   make a group you own; print it as\n"
      "                              "
      "{\"group\":ID,\"name\":..,\"role\":..,\"members\":[{\"user\":..,\"role\":..}],..}\n"
      "  group add|remove GROUP USER add or remove a member (admins and the owner)\n"
      "  group leave GROUP           leave the group\n"
      "  group members GROUP         print the group and its members\n"
      "  group rename GROUP NAME     rename it (admins and the owner)\n"
      "  group role GROUP USER admin|member   promote or demote (the owner)\n"
      "  group list                  print {\"groups\":[..]}, the groups you are in\n"
      "  group read GROUP SEQ        mark the group read up to SEQ\n"
      "  group receipts GROUP SEQ    print how many of the others have SEQ delivered / read\n"
      "                              (and who, in small groups)\n"
      "  group typing GROUP          tell the group you are typing\n"
      "                              recv prints group messages with \"group\":ID and membership\n"
      "                              changes as {\"type\":\"group_event\",\"event\":\"added\",..}\n"
      "  push register PROVIDER TOKEN   push notifications for this device while it is offline\n"
      "                              (PROVIDER: webhook, fcm or apns, as the server enables)\n"
      "  push unregister             no more push notifications for this device\n"
      "  logout                      revoke this device's session on the server\n"
      "\n"
      "options (each may come from the environment instead; options win):\n"
      "  --server HOST:PORT   PARLEY_SERVER     default 127.0.0.1:7700; tls://HOST[:PORT] for TLS\n"
      "                                         (port 7701 by default), the certificate checked\n"
      "                                         against the system's CAs and the host name\n"
      "  --ca FILE            PARLEY_CA         with tls://: trust the CAs in FILE (PEM) instead\n"
      "  --user NAME          PARLEY_USER\n"
      "  --password PW        PARLEY_PASSWORD\n"
      "  --device NAME        PARLEY_DEVICE     default \"default\"\n"
      "  --http HOST:PORT     PARLEY_HTTP       the server's HTTP listener, for send --image and\n"
      "                                         fetch (default: the --server host, port 7780)\n"
      "  -h, --help           print this help;  --version  print the version\n"
      "Options also take the form --name=value. \"--\" ends the options (for a TEXT that\n"
      "starts with \"--\"). Text that is not valid UTF-8 is shown with U+FFFD for each bad byte.\n"
      "\n"
      "exit status: 0 success, 1 other error, 2 bad usage, 3 server unreachable or connection\n"
      "lost, 4 authentication refused, 5 refused by the server (unknown peer, blocked, filtered, ...)\n",
      out);
}

int cli_fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("parley: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return status;
}

int cli_error(const cli *o, int err, const char *peer) {
  switch (err) {
  case PARLEY_E_CONNECT: return cli_fail(CLI_EXIT_CONN, "cannot reach server %s", o->server);
  case PARLEY_E_TIMEOUT: return cli_fail(CLI_EXIT_CONN, "no answer from server %s", o->server);
  case PARLEY_E_CLOSED:
  case PARLEY_E_HEARTBEAT_TIMEOUT:
  case PARLEY_E_SLOW_CONSUMER:
  case PARLEY_E_PROTOCOL:
    return cli_fail(CLI_EXIT_CONN, "connection to server %s lost (%s)", o->server, parley_strerror(err));
  case PARLEY_E_SHUTTING_DOWN: return cli_fail(CLI_EXIT_CONN, "server %s is shutting down", o->server);
  case PARLEY_E_BAD_CREDENTIALS: return cli_fail(CLI_EXIT_AUTH, "wrong user name or password");
  case PARLEY_E_USER_EXISTS: return cli_fail(CLI_EXIT_AUTH, "user name already taken");
  case PARLEY_E_INVITE_REQUIRED:
    return cli_fail(CLI_EXIT_AUTH,
                    "this server signs up only with an invite code: parley register --invite CODE");
  case PARLEY_E_INVITE_INVALID:
  case PARLEY_E_REGISTRATION_CLOSED:
  case PARLEY_E_ACCOUNT_DISABLED: return cli_fail(CLI_EXIT_AUTH, "%s", parley_strerror(err));
  case PARLEY_E_MAINTENANCE: return cli_fail(CLI_EXIT_CONN, "server %s is down for maintenance", o->server);
  case PARLEY_E_BAD_TOKEN:
    return cli_fail(CLI_EXIT_AUTH,
                    "session ended: device '%s' logged in elsewhere (use --device NAME for a second session)",
                    o->device);
  case PARLEY_E_TOO_MANY_DEVICES: return cli_fail(CLI_EXIT_AUTH, "too many devices for user '%s'", o->user);
  case PARLEY_E_UNKNOWN_PEER: return cli_fail(CLI_EXIT_REFUSED, "unknown peer '%s'", peer ? peer : "?");
  case PARLEY_E_INVALID_ARGUMENT:
    if (peer) /* the server checks a Send's peer name and id; our ids are valid */
      return cli_fail(CLI_EXIT_REFUSED, "invalid peer name '%s'", peer);
    return cli_fail(CLI_EXIT_ERR, "%s", parley_strerror(err));
  case PARLEY_E_MESSAGE_TOO_LARGE: return cli_fail(CLI_EXIT_REFUSED, "message too large");
  case PARLEY_E_QUEUE_FULL:
    return cli_fail(CLI_EXIT_REFUSED, "'%s' has too many undelivered messages (queue full); try later",
                    peer ? peer : "?");
  case PARLEY_E_INTERNAL: return cli_fail(CLI_EXIT_ERR, "server error; try again later");
  case PARLEY_E_BLOCKED:
    return cli_fail(CLI_EXIT_REFUSED, "'%s' does not accept your messages", peer ? peer : "?");
  case PARLEY_E_FILTERED: return cli_fail(CLI_EXIT_REFUSED, "message refused: it contains a filtered word");
  case PARLEY_E_NOT_MEMBER: return cli_fail(CLI_EXIT_REFUSED, "no such group, or you are not a member");
  case PARLEY_E_FORBIDDEN: return cli_fail(CLI_EXIT_REFUSED, "your role in the group does not allow this");
  case PARLEY_E_GROUP_FULL: return cli_fail(CLI_EXIT_REFUSED, "the group is full");
  case PARLEY_E_UNKNOWN_MEDIA: return cli_fail(CLI_EXIT_REFUSED, "no such media, or you may not use it");
  case PARLEY_E_NOT_ALLOWED: /* a group add (create or add): the one asked for is not named */
    return cli_fail(CLI_EXIT_REFUSED,
                    "not allowed: the user's privacy settings refuse to be added to groups by you");
  default: return cli_fail(CLI_EXIT_ERR, "%s", parley_strerror(err));
  }
}

/* ---- command line ------------------------------------------------------- */

static int cli_parse_server(cli *o) {
  const char *s = o->server;
  const char *port = NULL;
  o->tls = !strncmp(s, "tls://", 6);
  if (o->tls)
    s += 6;
  else if (!strncmp(s, "tcp://", 6))
    s += 6;
  size_t hostlen;
  if (s[0] == '[') { /* [v6]:port */
    const char *end = strchr(s, ']');
    if (!end || (end[1] && end[1] != ':'))
      return -1;
    hostlen = (size_t)(end - s - 1);
    s++;
    port = end[1] ? end + 2 : NULL;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon && strchr(s, ':') == colon) { /* one colon: host:port */
      hostlen = (size_t)(colon - s);
      port = colon + 1;
    } else { /* a bare host, or an IPv6 address without brackets */
      hostlen = strlen(s);
    }
  }
  if (hostlen == 0 || hostlen >= sizeof o->host)
    return -1;
  memcpy(o->host, s, hostlen);
  o->host[hostlen] = '\0';
  o->port = o->tls ? 7701 : 7700;
  if (port) {
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 1 || p > 65535)
      return -1;
    o->port = (int)p;
  }
  return 0;
}

/* Options that take a value, and where each is stored. */
static const char **cli_option(cli *o, const char *name) {
  if (!strcmp(name, "server"))
    return &o->server;
  if (!strcmp(name, "user"))
    return &o->user;
  if (!strcmp(name, "ca"))
    return &o->ca;
  if (!strcmp(name, "password"))
    return &o->password;
  if (!strcmp(name, "device"))
    return &o->device;
  if (!strcmp(name, "id"))
    return &o->id;
  if (!strcmp(name, "wait"))
    return &o->wait;
  if (!strcmp(name, "group"))
    return &o->group;
  if (!strcmp(name, "image"))
    return &o->image;
  if (!strcmp(name, "invite"))
    return &o->invite;
  if (!strcmp(name, "http"))
    return &o->http;
  if (!strcmp(name, "read-receipts"))
    return &o->read_receipts;
  if (!strcmp(name, "last-seen"))
    return &o->last_seen;
  if (!strcmp(name, "group-add"))
    return &o->group_add;
  return NULL;
}

/* Returns -1 to run, else the exit status (help, version, usage error). */
static int cli_parse(cli *o, int argc, char **argv) {
  int opts_done = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!opts_done && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
      usage(stdout);
      return CLI_EXIT_OK;
    }
    if (!opts_done && !strcmp(a, "--version")) {
      printf("parley %s\n", CLI_VERSION);
      return CLI_EXIT_OK;
    }
    if (!opts_done && !strcmp(a, "--")) {
      opts_done = 1;
    } else if (!opts_done && !strcmp(a, "--no-ack")) {
      o->no_ack = 1;
    } else if (!opts_done && !strcmp(a, "--thumb")) {
      o->thumb = 1;
    } else if (!opts_done && !strcmp(a, "--force")) {
      o->force = 1;
    } else if (!opts_done && a[0] == '-' && a[1] == '-') {
      char name[32];
      const char *eq = strchr(a + 2, '=');
      size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
      snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), a + 2);
      const char **slot = cli_option(o, name);
      if (!slot)
        return cli_fail(CLI_EXIT_USAGE, "unknown option '%s' (see parley --help)", a);
      if (eq)
        *slot = eq + 1;
      else if (i + 1 < argc)
        *slot = argv[++i];
      else
        return cli_fail(CLI_EXIT_USAGE, "option '%s' needs a value", a);
    } else if (!o->cmd) {
      o->cmd = a;
    } else if (o->npos < CLI_MAX_POS) {
      o->pos[o->npos++] = a;
    } else {
      return cli_fail(CLI_EXIT_USAGE, "too many arguments (see parley --help)");
    }
  }
  return -1;
}

static const char *cli_env(const char *flag, const char *name, const char *dflt) {
  if (flag)
    return flag;
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}

/* Checks the command line as a whole; returns -1 if fine, else the exit status. */
static int cli_check(cli *o) {
  if (!o->cmd) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  o->server = cli_env(o->server, "PARLEY_SERVER", "127.0.0.1:7700");
  o->user = cli_env(o->user, "PARLEY_USER", NULL);
  o->password = cli_env(o->password, "PARLEY_PASSWORD", NULL);
  o->device = cli_env(o->device, "PARLEY_DEVICE", "default");
  if (cli_parse_server(o) != 0)
    return cli_fail(CLI_EXIT_USAGE, "bad server address '%s' (want HOST:PORT or tls://HOST:PORT)", o->server);
  o->ca = cli_env(o->ca, "PARLEY_CA", NULL);
  if (o->ca && !o->tls)
    return cli_fail(CLI_EXIT_USAGE, "--ca is for a tls:// server");
  static const struct {
    const char *cmd;
    int npos;
    const char *args;
  } cmds[] = {{"register", 0, ""},
              {"send", 2, " PEER TEXT"},
              {"recv", 0, ""},
              {"chat", 1, " PEER"},
              {"logout", 0, ""},
              {"read", 2, " PEER SEQ"},
              {"presence", 1, " PEER"},
              {"block", 1, " NAME"},
              {"unblock", 1, " NAME"},
              {"typing", 1, " PEER"},
              {"fetch", 2, " [--thumb] [--force] MEDIA_ID OUT"},
              {"contacts", -1, " [add|remove NAME]"},
              {"group", -2, " create|add|remove|leave|members|rename|role|list ..."},
              {"push", -2, " register PROVIDER TOKEN | unregister"},
              {"devices", -1, " [revoke NAME]"},
              {"settings", 0, CLI_SETTINGS_ARGS}};
  size_t k = 0;
  while (k < sizeof cmds / sizeof cmds[0] && strcmp(cmds[k].cmd, o->cmd) != 0)
    k++;
  if (k == sizeof cmds / sizeof cmds[0])
    return cli_fail(CLI_EXIT_USAGE, "unknown command '%s' (see parley --help)", o->cmd);
  int want = cmds[k].npos;
  if (o->group && !strcmp(o->cmd, "send"))
    want = 1; /* send --group GROUP TEXT */
  if (o->image && !strcmp(o->cmd, "send") && o->npos == want - 1)
    want--; /* the caption is optional */
  if (want == -2 ? o->npos < 1 : want < 0 ? (o->npos != 0 && o->npos != 2) : o->npos != want)
    return cli_fail(CLI_EXIT_USAGE, "usage: parley %s%s", o->cmd,
                    o->group && want == 1 ? " --group GROUP TEXT" : cmds[k].args);
  if (o->id && strcmp(o->cmd, "send") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--id is an option of 'send'");
  if (o->group && strcmp(o->cmd, "send") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--group is an option of 'send'");
  if (o->image && strcmp(o->cmd, "send") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--image is an option of 'send'");
  if ((o->thumb || o->force) && strcmp(o->cmd, "fetch") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--thumb and --force are options of 'fetch'");
  if (o->invite && strcmp(o->cmd, "register") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--invite is an option of 'register'");
  if ((o->read_receipts || o->last_seen || o->group_add) && strcmp(o->cmd, "settings") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--read-receipts, --last-seen and --group-add are options of 'settings'");
  o->http = cli_env(o->http, "PARLEY_HTTP", NULL);
  if (o->http)
    snprintf(o->http_base, sizeof o->http_base, "http://%s", o->http);
  else
    snprintf(o->http_base, sizeof o->http_base, strchr(o->host, ':') ? "http://[%s]:7780" : "http://%s:7780",
             o->host);
  if ((o->wait || o->no_ack) && strcmp(o->cmd, "recv") != 0)
    return cli_fail(CLI_EXIT_USAGE, "--wait and --no-ack are options of 'recv'");
  if (o->id && (!*o->id || strlen(o->id) > 64))
    return cli_fail(CLI_EXIT_USAGE, "--id must be 1 to 64 bytes");
  if (!o->user)
    return cli_fail(CLI_EXIT_USAGE, "no user name (use --user or PARLEY_USER)");
  if (!o->password)
    return cli_fail(CLI_EXIT_USAGE, "no password (use --password or PARLEY_PASSWORD)");
  return -1;
}

/* ---- sessions ----------------------------------------------------------- */

static parley *cli_new(const cli *o, const parley_callbacks *cb, void *ud) {
  parley_options opt;
  memset(&opt, 0, sizeof opt);
  opt.host = o->host;
  opt.port = o->port;
  opt.kind = PARLEY_KIND_BOT;
  opt.client_name = "parley-cli/" CLI_VERSION;
  /* Never ack behind the user's back: a command only acks what it printed. */
  opt.auto_ack = -1;
  opt.request_timeout_ms = CLI_TIMEOUT_MS;
  opt.tls = o->tls;
  opt.ca_file = o->ca;
  if (cb)
    opt.cb = *cb;
  opt.ud = ud;
  return parley_new(&opt);
}

int cli_open(const cli *o, parley **pc, const parley_callbacks *cb, void *ud, int do_register) {
  parley *c = cli_new(o, cb, ud);
  if (!c)
    return cli_fail(CLI_EXIT_ERR, "cannot initialise the client library");
  int rc = parley_connect(c);
  if (rc == PARLEY_OK)
    rc = do_register ? parley_register_invite(c, o->user, o->password, o->device, o->invite)
                     : parley_login(c, o->user, o->password, o->device);
  if (rc == PARLEY_E_TLS) {
    int st = cli_fail(CLI_EXIT_CONN, "TLS with server %s failed: %s", o->server, parley_tls_error(c));
    parley_free(c);
    return st;
  }
  if (rc == PARLEY_E_INVALID_ARGUMENT) {
    parley_free(c);
    return cli_fail(CLI_EXIT_AUTH, "invalid user name, password or device (user: 1-32 of a-z 0-9 _ . -; "
                                   "password: 8-1024 bytes; device: 1-64 bytes)");
  }
  if (rc != PARLEY_OK) {
    parley_free(c);
    return cli_error(o, rc, NULL);
  }
  *pc = c;
  return 0;
}

int cli_print(pl_bytes *out) {
  if (out->len && fwrite(out->p, 1, out->len, stdout) != out->len)
    return -1;
  out->len = 0;
  return fflush(stdout) == 0 ? 0 : -1;
}

/* ---- register, logout, send --------------------------------------------- */

/* Says what was made: a script reads the line, a person sees it worked. */
static int cmd_register(const cli *o) {
  parley *c;
  int rc = cli_open(o, &c, NULL, NULL, 1);
  if (rc)
    return rc;
  pl_bytes out = {0};
  pl_bytes_append(&out, "{\"registered\":", 14);
  cli_json_cstr(&out, o->user);
  pl_bytes_append(&out, ",\"device\":", 10);
  cli_json_cstr(&out, o->device && *o->device ? o->device : "default");
  pl_bytes_append(&out, "}\n", 2);
  rc = cli_print(&out) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERR;
  pl_bytes_free(&out);
  parley_free(c);
  return rc;
}

static int cmd_logout(const cli *o) {
  parley *c;
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  rc = parley_logout(c);
  parley_free(c);
  return rc == PARLEY_OK ? CLI_EXIT_OK : cli_error(o, rc, NULL);
}

/* send --image: the upload first (its id goes into the message). */
static int cmd_send_image(const cli *o, parley *c, const char *peer, const char *caption,
                          parley_send_ack *ack, char **media_json) {
  char id[33], why[300];
  int st = cli_http_upload(o->http_base, parley_token(c), o->image, id, media_json, why, sizeof why);
  if (st != 0)
    return cli_fail(st == 413 || st == 415 || st == 422 ? CLI_EXIT_REFUSED
                    : st == 401                         ? CLI_EXIT_AUTH
                    : st == CLI_HTTP_LOCAL              ? CLI_EXIT_ERR
                                                        : CLI_EXIT_CONN,
                    "upload of %s refused: %s", o->image, why);
  size_t len = caption ? strlen(caption) : 0;
  int rc = parley_send_media_wait(c, o->id, o->group ? NULL : peer, o->group, id, caption ? caption : "", len,
                                  ack, CLI_TIMEOUT_MS);
  return rc == PARLEY_OK ? 0 : cli_error(o, rc, peer);
}

static int cmd_send(const cli *o) {
  const char *peer = o->group ? o->group : o->pos[0], *text = o->pos[o->group ? 0 : 1];
  parley *c;
  /* a missing file is the user's to fix, not a server that cannot be reached */
  if (o->image && access(o->image, R_OK) != 0)
    return cli_fail(CLI_EXIT_ERR, "cannot read %s: %s", o->image, strerror(errno));
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  parley_send_ack ack;
  if (o->image) {
    char *media = NULL;
    int status = cmd_send_image(o, c, peer, text, &ack, &media);
    if (status == 0) {
      pl_bytes out = {0};
      cli_json_send_ack(&out, &ack);
      if (out.len >= 2) { /* {...,"media":{...}}\n */
        out.len -= 2;
        pl_bytes_append(&out, ",\"media\":", 9);
        pl_bytes_append(&out, media, strlen(media) - (media[strlen(media) - 1] == '\n'));
        pl_bytes_append(&out, "}\n", 2);
      }
      if (cli_print(&out) != 0)
        status = cli_fail(CLI_EXIT_ERR, "cannot write to standard output");
      pl_bytes_free(&out);
    }
    free(media);
    parley_free(c);
    return status;
  }
  if (o->group)
    rc = parley_send_group_wait(c, o->id, o->group, text, strlen(text), &ack, CLI_TIMEOUT_MS);
  else
    rc = parley_send_wait(c, o->id, peer, text, strlen(text), &ack, CLI_TIMEOUT_MS);
  int status = CLI_EXIT_OK;
  if (rc != PARLEY_OK) {
    status = cli_error(o, rc, peer);
  } else {
    pl_bytes out = {0};
    cli_json_send_ack(&out, &ack);
    if (cli_print(&out) != 0)
      status = cli_fail(CLI_EXIT_ERR, "cannot write to standard output");
    pl_bytes_free(&out);
  }
  parley_free(c);
  return status;
}

/* fetch MEDIA_ID OUT */
static int cmd_fetch(const cli *o) {
  parley *c;
  /* never over a file the user has (a photo of the same name) unless told */
  if (!o->force && access(o->pos[1], F_OK) == 0)
    return cli_fail(CLI_EXIT_ERR, "%s exists: give another name, or --force to overwrite it", o->pos[1]);
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  char why[300];
  int st = cli_http_fetch(o->http_base, parley_token(c), o->pos[0], o->thumb, o->pos[1], why, sizeof why);
  parley_free(c);
  if (st == 0)
    return CLI_EXIT_OK;
  return cli_fail(st == 403 || st == 404           ? CLI_EXIT_REFUSED
                  : st == 401                      ? CLI_EXIT_AUTH
                  : st > 0 || st == CLI_HTTP_LOCAL ? CLI_EXIT_ERR
                                                   : CLI_EXIT_CONN,
                  "cannot fetch %s: %s", o->pos[0], why);
}

/* ---- read, presence, contacts, block, typing ---------------------------- */

/* Prints a finished line; the exit status. */
static int cli_done(parley *c, pl_bytes *out) {
  int status = cli_print(out) == 0 ? CLI_EXIT_OK : cli_fail(CLI_EXIT_ERR, "cannot write to standard output");
  pl_bytes_free(out);
  parley_free(c);
  return status;
}

static int cmd_state(const cli *o) {
  const char *name = o->npos ? o->pos[o->npos == 2 && !strcmp(o->cmd, "contacts") ? 1 : 0] : NULL;
  pl_bytes out = {0};
  parley *c;
  char **names = NULL;
  int rc = 0;
  uint64_t seq = 0;
  if (!strcmp(o->cmd, "read")) {
    char *end;
    seq = strtoull(o->pos[1], &end, 10);
    if (end == o->pos[1] || *end)
      return cli_fail(CLI_EXIT_USAGE, "SEQ must be a number, not '%s'", o->pos[1]);
  }
  int op = 0;
  if (!strcmp(o->cmd, "contacts") && o->npos) {
    op = !strcmp(o->pos[0], "add") ? 1 : !strcmp(o->pos[0], "remove") ? 2 : -1;
    if (op < 0)
      return cli_fail(CLI_EXIT_USAGE, "usage: parley contacts [add|remove NAME]");
  }
  if ((rc = cli_open(o, &c, NULL, NULL, 0)) != 0)
    return rc;
  if (!strcmp(o->cmd, "read")) {
    rc = parley_mark_read_wait(c, name, seq, CLI_TIMEOUT_MS);
    pl_bytes_append(&out, "{\"ok\":true}\n", 12);
  } else if (!strcmp(o->cmd, "presence")) {
    parley_presence p = {0};
    rc = parley_presence_wait(c, name, &p, CLI_TIMEOUT_MS);
    cli_json_presence(&out, name, p.online, p.last_seen);
  } else if (!strcmp(o->cmd, "block") || !strcmp(o->cmd, "unblock")) {
    rc = parley_block_wait(c, name, o->cmd[0] == 'b', CLI_TIMEOUT_MS);
    pl_bytes_append(&out, "{\"ok\":true}\n", 12);
  } else if (!strcmp(o->cmd, "typing")) {
    rc = parley_typing(c, name, 1); /* sent when the handle closes, below */
    pl_bytes_append(&out, "{\"ok\":true}\n", 12);
  } else {
    rc = parley_contacts_wait(c, op, name, &names, CLI_TIMEOUT_MS);
    pl_bytes_append(&out, "{\"contacts\":[", 13);
    for (size_t i = 0; names && names[i]; i++) {
      if (i)
        pl_bytes_append(&out, ",", 1);
      cli_json_cstr(&out, names[i]);
    }
    pl_bytes_append(&out, "]}\n", 3);
    parley_free_names(names);
  }
  if (rc != PARLEY_OK) {
    pl_bytes_free(&out);
    parley_free(c);
    return cli_error(o, rc, name);
  }
  return cli_done(c, &out);
}

/* ---- push ----------------------------------------------------------------- */

/* push register PROVIDER TOKEN | push unregister (an empty token). */
static int cmd_push(const cli *o) {
  int reg = !strcmp(o->pos[0], "register");
  if (reg ? o->npos != 3 : strcmp(o->pos[0], "unregister") != 0 || o->npos != 1)
    return cli_fail(CLI_EXIT_USAGE, "usage: parley push register PROVIDER TOKEN | parley push unregister");
  parley *c;
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  rc = parley_push_register_wait(c, reg ? o->pos[1] : "", reg ? o->pos[2] : "", CLI_TIMEOUT_MS);
  if (rc != PARLEY_OK) {
    parley_free(c);
    return cli_error(o, rc, NULL);
  }
  pl_bytes out = {0};
  pl_bytes_append(&out, "{\"ok\":true}\n", 12);
  return cli_done(c, &out);
}

/* ---- devices -------------------------------------------------------------- */

/* devices [revoke NAME]: {"devices":[{"name":..,"id":N,..}]} after the revocation. */
static int cmd_devices(const cli *o) {
  if (o->npos && strcmp(o->pos[0], "revoke") != 0)
    return cli_fail(CLI_EXIT_USAGE, "usage: parley devices [revoke NAME]");
  parley *c;
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  parley_device_info *d = NULL;
  size_t n = 0;
  rc = parley_devices_wait(c, o->npos ? PARLEY_DEVICES_REVOKE : PARLEY_DEVICES_LIST,
                           o->npos ? o->pos[1] : NULL, &d, &n, CLI_TIMEOUT_MS);
  if (rc != PARLEY_OK) {
    parley_free(c);
    return cli_error(o, rc, NULL);
  }
  pl_bytes out = {0};
  char num[160];
  pl_bytes_append(&out, "{\"devices\":[", 12);
  for (size_t i = 0; i < n; i++) {
    pl_bytes_append(&out, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
    cli_json_cstr(&out, d[i].name);
    int k = snprintf(
        num, sizeof num, ",\"id\":%llu,\"created\":%llu,\"last_used\":%llu,\"current\":%s,\"online\":%s}",
        (unsigned long long)d[i].id, (unsigned long long)d[i].created, (unsigned long long)d[i].last_used,
        d[i].current ? "true" : "false", d[i].online ? "true" : "false");
    pl_bytes_append(&out, num, (size_t)k);
  }
  pl_bytes_append(&out, "]}\n", 3);
  parley_devices_free(d, n);
  return cli_done(c, &out);
}

/* ---- settings ------------------------------------------------------------- */

/* Each setting's words, in the order of its PARLEY_* values from 1. */
static const char *const cli_rr_words[] = {"on", "off", NULL};
static const char *const cli_who_words[] = {"everyone", "contacts", "nobody", NULL};

/* The value of word v in words (1..n); PARLEY_UNCHANGED for no v; -1 if unknown. */
static int cli_setting(const char *v, const char *const *words) {
  if (!v)
    return PARLEY_UNCHANGED;
  for (int i = 0; words[i]; i++)
    if (!strcmp(words[i], v))
      return i + 1;
  return -1;
}

/* settings [--read-receipts on|off] [--last-seen ..] [--group-add ..]:
 * {"read_receipts":"on","last_seen":"contacts","group_add":"everyone"} after the change. */
static int cmd_settings(const cli *o) {
  parley_settings ch = {.read_receipts = cli_setting(o->read_receipts, cli_rr_words),
                        .last_seen = cli_setting(o->last_seen, cli_who_words),
                        .group_add = cli_setting(o->group_add, cli_who_words)};
  if (ch.read_receipts < 0 || ch.last_seen < 0 || ch.group_add < 0)
    return cli_fail(CLI_EXIT_USAGE, "usage: parley settings%s", CLI_SETTINGS_ARGS);
  parley *c;
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  parley_settings now;
  rc = parley_settings_wait(c, &ch, &now, CLI_TIMEOUT_MS);
  if (rc != PARLEY_OK) {
    parley_free(c);
    return cli_error(o, rc, NULL);
  }
  pl_bytes out = {0};
  char line[160];
  int n =
      snprintf(line, sizeof line, "{\"read_receipts\":\"%s\",\"last_seen\":\"%s\",\"group_add\":\"%s\"}\n",
               now.read_receipts == PARLEY_READ_RECEIPTS_OFF ? "off" : "on",
               now.last_seen >= 1 && now.last_seen <= 3 ? cli_who_words[now.last_seen - 1] : "?",
               now.group_add >= 1 && now.group_add <= 3 ? cli_who_words[now.group_add - 1] : "?");
  pl_bytes_append(&out, line, (size_t)n);
  return cli_done(c, &out);
}

/* ---- group ---------------------------------------------------------------- */

typedef struct cli_gcmd {
  const char *name;
  int op, npos; /* arguments after the subcommand; -1: one or more */
  const char *args;
} cli_gcmd;

static const cli_gcmd cli_gcmds[] = {
    {"create", -1, -1, " NAME [MEMBER...]"},
    {"add", PARLEY_GROUP_ADD, 2, " GROUP USER"},
    {"remove", PARLEY_GROUP_REMOVE, 2, " GROUP USER"},
    {"leave", PARLEY_GROUP_LEAVE, 1, " GROUP"},
    {"members", PARLEY_GROUP_INFO, 1, " GROUP"},
    {"rename", PARLEY_GROUP_RENAME, 2, " GROUP NAME"},
    {"role", PARLEY_GROUP_SET_ROLE, 3, " GROUP USER admin|member"},
    {"list", -2, 0, ""},
    {"receipts", -3, 2, " GROUP SEQ"},
    {"read", -4, 2, " GROUP SEQ"},
    {"typing", -5, 1, " GROUP"},
};

/* SEQ of group receipts / read; 0 and a message if it is not a number. */
static int cli_seq(const char *v, uint64_t *seq) {
  char *end;
  *seq = strtoull(v, &end, 10);
  return end != v && !*end;
}

/* {"group":..,"seq":N,"members":N,"delivered":N,"read":N[,"delivered_by":[..],"read_by":[..]]} */
static void cli_json_receipts(pl_bytes *out, const char *group, uint64_t seq,
                              const parley_group_receipts *r) {
  char num[160];
  pl_bytes_append(out, "{\"group\":", 9);
  cli_json_cstr(out, group);
  int n = snprintf(num, sizeof num, ",\"seq\":%llu,\"members\":%llu,\"delivered\":%llu,\"read\":%llu",
                   (unsigned long long)seq, (unsigned long long)r->members, (unsigned long long)r->delivered,
                   (unsigned long long)r->read);
  pl_bytes_append(out, num, (size_t)n);
  for (int k = 0; r->detailed && k < 2; k++) {
    char **names = k ? r->read_by : r->delivered_by;
    pl_bytes_append(out, k ? ",\"read_by\":[" : ",\"delivered_by\":[", k ? 12 : 17);
    for (size_t i = 0; names && names[i]; i++) {
      if (i)
        pl_bytes_append(out, ",", 1);
      cli_json_cstr(out, names[i]);
    }
    pl_bytes_append(out, "]", 1);
  }
  pl_bytes_append(out, "}\n", 2);
}

/* Runs the group subcommand g; fills out with the JSON line. */
static int cli_group_run(parley *c, const cli *o, const cli_gcmd *g, pl_bytes *out) {
  const char *const *args = o->pos + 1;
  parley_group grp;
  int rc;
  memset(&grp, 0, sizeof grp);
  if (g->op == -2) {
    parley_group *gs = NULL;
    size_t n = 0;
    rc = parley_group_list_wait(c, &gs, &n, CLI_TIMEOUT_MS);
    pl_bytes_append(out, "{\"groups\":[", 11);
    for (size_t i = 0; rc == PARLEY_OK && i < n; i++) {
      if (i)
        pl_bytes_append(out, ",", 1);
      cli_json_group(out, &gs[i], 0);
    }
    pl_bytes_append(out, "]}\n", 3);
    parley_groups_free(gs, n);
    return rc;
  }
  if (g->op <= -3) {
    uint64_t seq = 0;
    if (g->op != -5 && !cli_seq(args[1], &seq))
      return PARLEY_E_ARG;
    if (g->op == -5) {
      rc = parley_group_typing(c, args[0], 1); /* written when the handle closes */
      pl_bytes_append(out, "{\"ok\":true}\n", 12);
    } else if (g->op == -4) {
      rc = parley_group_mark_read_wait(c, args[0], seq, CLI_TIMEOUT_MS);
      pl_bytes_append(out, "{\"ok\":true}\n", 12);
    } else {
      parley_group_receipts r;
      rc = parley_group_receipts_wait(c, args[0], seq, &r, CLI_TIMEOUT_MS);
      if (rc == PARLEY_OK)
        cli_json_receipts(out, args[0], seq, &r);
      parley_group_receipts_clear(&r);
    }
    return rc;
  }
  if (g->op == -1) {
    rc = parley_group_create_wait(c, args[0], "", args + 1, (size_t)(o->npos - 2), &grp, CLI_TIMEOUT_MS);
  } else {
    int role = g->op == PARLEY_GROUP_SET_ROLE
                   ? (!strcmp(args[2], "admin") ? PARLEY_ROLE_ADMIN : PARLEY_ROLE_MEMBER)
                   : 0;
    const char *user =
        g->op == PARLEY_GROUP_ADD || g->op == PARLEY_GROUP_REMOVE || g->op == PARLEY_GROUP_SET_ROLE ? args[1]
                                                                                                    : NULL;
    const char *name = g->op == PARLEY_GROUP_RENAME ? args[1] : NULL;
    rc = parley_group_update_wait(c, args[0], g->op, user, name, "", role, &grp, CLI_TIMEOUT_MS);
  }
  cli_json_group(out, &grp, g->op != PARLEY_GROUP_LEAVE);
  pl_bytes_append(out, "\n", 1);
  parley_group_clear(&grp);
  return rc;
}

static int cmd_group(const cli *o) {
  const cli_gcmd *g = NULL;
  for (size_t i = 0; i < sizeof cli_gcmds / sizeof cli_gcmds[0]; i++)
    if (!strcmp(cli_gcmds[i].name, o->pos[0]))
      g = &cli_gcmds[i];
  if (!g)
    return cli_fail(CLI_EXIT_USAGE, "unknown group command '%s' (see parley --help)", o->pos[0]);
  int n = o->npos - 1;
  if (g->npos < 0 ? n < 1 : n != g->npos)
    return cli_fail(CLI_EXIT_USAGE, "usage: parley group %s%s", g->name, g->args);
  if (g->op == PARLEY_GROUP_SET_ROLE && strcmp(o->pos[3], "admin") != 0 && strcmp(o->pos[3], "member") != 0)
    return cli_fail(CLI_EXIT_USAGE, "usage: parley group role GROUP USER admin|member");
  uint64_t seq;
  if ((g->op == -3 || g->op == -4) && !cli_seq(o->pos[2], &seq))
    return cli_fail(CLI_EXIT_USAGE, "SEQ must be a number, not '%s'", o->pos[2]);
  parley *c;
  int rc = cli_open(o, &c, NULL, NULL, 0);
  if (rc)
    return rc;
  pl_bytes out = {0};
  rc = cli_group_run(c, o, g, &out);
  if (rc != PARLEY_OK) {
    pl_bytes_free(&out);
    parley_free(c);
    return cli_error(o, rc, g->op == -1 ? NULL : o->pos[1]);
  }
  return cli_done(c, &out);
}

int main(int argc, char **argv) {
  cli o = {0};
  int status = cli_parse(&o, argc, argv);
  if (status >= 0)
    return status;
  if ((status = cli_check(&o)) >= 0)
    return status;
  if (!strcmp(o.cmd, "register"))
    return cmd_register(&o);
  if (!strcmp(o.cmd, "send"))
    return cmd_send(&o);
  if (!strcmp(o.cmd, "recv"))
    return cmd_recv(&o);
  if (!strcmp(o.cmd, "fetch"))
    return cmd_fetch(&o);
  if (!strcmp(o.cmd, "read") || !strcmp(o.cmd, "presence") || !strcmp(o.cmd, "contacts") ||
      !strcmp(o.cmd, "block") || !strcmp(o.cmd, "unblock") || !strcmp(o.cmd, "typing"))
    return cmd_state(&o);
  if (!strcmp(o.cmd, "chat"))
    return cmd_chat(&o);
  if (!strcmp(o.cmd, "group"))
    return cmd_group(&o);
  if (!strcmp(o.cmd, "push"))
    return cmd_push(&o);
  if (!strcmp(o.cmd, "devices"))
    return cmd_devices(&o);
  if (!strcmp(o.cmd, "settings"))
    return cmd_settings(&o);
  return cmd_logout(&o);
}
