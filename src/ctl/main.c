/* parleyctl: the operator's command, a thin layer over parleyd's admin API
 * (docs/admin.md). Each command is one HTTP call; the answer is printed as
 * JSON lines (one line per row of a list) when standard output is not a
 * terminal or with --json, and as a table on a terminal.
 *
 * Exit status: 0 done, 1 refused (the answer says why), 2 bad usage,
 * 3 parleyd unreachable, 4 no or wrong admin token (or the API is off). */
#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CTL_OK = 0, CTL_REFUSED = 1, CTL_USAGE = 2, CTL_CONN = 3, CTL_AUTH = 4 };

typedef struct ctl {
  const char *url, *token, *password;
  int json, close;
  char *argv[16];
  int argc;
  const char *opt_q, *opt_after, *opt_limit, *opt_uses, *opt_expires, *opt_code;
} ctl;

static const char pl__usage[] =
    "usage: parleyctl [--url URL] [--token TOKEN] [--json] COMMAND\n"
    "\n"
    "  --url URL      parleyd's HTTP listener (default $PARLEY_ADMIN_URL or http://127.0.0.1:7780)\n"
    "  --token TOKEN  an admin token (default $PARLEY_ADMIN_TOKEN; make one with\n"
    "                 parleyd admin-token create NAME --data DIR)\n"
    "  --json         JSON lines even on a terminal (the default elsewhere)\n"
    "\n"
    "commands:\n"
    "  users [--query TEXT] [--after NAME] [--limit N]   list users (by name, paged)\n"
    "  user show NAME                 devices (queue depth each), groups, media usage\n"
    "  user create NAME [--password PW]   (PW also from $PARLEY_PASSWORD)\n"
    "  user password NAME [--password PW] set a new password; every device is signed out\n"
    "  user disable NAME | user enable NAME   ban: connections closed, logins refused\n"
    "  user delete NAME               the user and everything of theirs\n"
    "  user revoke NAME [DEVICE]      sign out one device, or all\n"
    "  groups [--after ID] [--limit N] | group show ID | group remove ID USER\n"
    "  invite create [--uses N] [--expires SECONDS] [--code CODE] | invites | invite delete CODE\n"
    "  stats | queues [--limit N]     server figures; the deepest device queues\n"
    "  filter reload                  reload --filter-words\n"
    "  drain on [--close] | drain off refuse new sign-ins (MAINTENANCE), /healthz 503;\n"
    "                                 --close: and close every client session now\n"
    "  backup                         an online copy of the database into DATA/backups/\n"
    "\n"
    "exit status: 0 done, 1 refused, 2 bad usage, 3 parleyd unreachable, 4 no or wrong admin token\n";

static int pl__fail(int status, const char *what) {
  fprintf(stderr, "parleyctl: %s\n", what);
  return status;
}

/* ---- HTTP ---------------------------------------------------------------- */

static size_t pl__gather(char *p, size_t size, size_t n, void *ud) {
  json_t *buf = ud; /* a string being appended to */
  size_t len = strlen(json_string_value(buf));
  char *all = malloc(len + size * n + 1);
  if (!all)
    return 0;
  memcpy(all, json_string_value(buf), len);
  memcpy(all + len, p, size * n);
  all[len + size * n] = '\0';
  json_string_set(buf, all);
  free(all);
  return size * n;
}

/* One call: *answer gets the parsed body; the HTTP status, or -1 if
 * parleyd could not be reached. */
static long pl__call(const ctl *c, const char *method, const char *path, json_t *body, json_t **answer) {
  char url[2048], auth[600];
  snprintf(url, sizeof url, "%s%s", c->url, path);
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token ? c->token : "");
  CURL *h = curl_easy_init();
  struct curl_slist *hd = curl_slist_append(NULL, auth);
  hd = curl_slist_append(hd, "Content-Type: application/json");
  json_t *buf = json_string("");
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  long status = -1;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, pl__gather);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, buf);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L); /* a backup of a large database takes a while */
  if (text)
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
  else if (!strcmp(method, "POST"))
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
  CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  else
    fprintf(stderr, "parleyctl: cannot reach %s: %s\n", c->url, curl_easy_strerror(rc));
  *answer = rc == CURLE_OK ? json_loads(json_string_value(buf), 0, NULL) : NULL;
  free(text);
  json_decref(buf);
  curl_slist_free_all(hd);
  curl_easy_cleanup(h);
  return status;
}

/* ---- output -------------------------------------------------------------- */

static void pl__scalar(FILE *f, json_t *v, int width) {
  char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
  fprintf(f, "%-*s", width, json_is_string(v) ? json_string_value(v) : s ? s : "");
  free(s);
}

/* A list as a table: a column per scalar field of the first row. */
static void pl__table(json_t *rows) {
  json_t *first = json_array_get(rows, 0), *v;
  const char *k;
  size_t i;
  if (!first) {
    printf("(none)\n");
    return;
  }
  json_object_foreach(first, k, v) if (!json_is_object(v) && !json_is_array(v)) printf("%-16s", k);
  printf("\n");
  json_array_foreach(rows, i, first) {
    json_object_foreach(first, k, v) if (!json_is_object(v) && !json_is_array(v)) pl__scalar(stdout, v, 16);
    printf("\n");
  }
}

/* One object on a terminal: "key  value" lines, lists as tables under their key. */
static void pl__object(json_t *o) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) if (!json_is_array(v)) {
    printf("%-16s", k);
    pl__scalar(stdout, v, 0);
    printf("\n");
  }
  json_object_foreach(o, k, v) if (json_is_array(v)) {
    printf("\n%s:\n", k);
    pl__table(v);
  }
}

/* The answer as JSON lines: a list answer ({"users":[..],"next":..}) one
 * row per line, anything else as one line. */
static void pl__lines(json_t *a) {
  const char *k;
  json_t *v, *row;
  size_t i, lists = 0;
  json_object_foreach(a, k, v) lists += json_is_array(v);
  if (lists == 1 && json_object_size(a) <= 2 && !json_object_get(a, "store")) {
    json_object_foreach(a, k, v) if (json_is_array(v)) json_array_foreach(v, i, row) {
      char *s = json_dumps(row, JSON_COMPACT);
      printf("%s\n", s);
      free(s);
    }
    return;
  }
  char *s = json_dumps(a, JSON_COMPACT);
  printf("%s\n", s);
  free(s);
}

static int pl__show(const ctl *c, long status, json_t *a) {
  if (status < 0)
    return CTL_CONN;
  if (status >= 300) {
    json_t *m = json_object_get(a, "message");
    fprintf(stderr, "parleyctl: %ld %s\n", status, json_is_string(m) ? json_string_value(m) : "error");
    return status == 401 || (status == 404 && json_is_string(json_object_get(a, "error")) &&
                             !strcmp(json_string_value(json_object_get(a, "error")), "ADMIN_OFF"))
               ? CTL_AUTH
               : CTL_REFUSED;
  }
  if (!json_is_object(a))
    return CTL_OK;
  if (c->json) {
    pl__lines(a);
    return CTL_OK;
  }
  const char *k;
  json_t *v;
  size_t lists = 0;
  json_object_foreach(a, k, v) lists += json_is_array(v);
  json_t *next = json_object_get(a, "next");
  if (lists == 1 && json_object_size(a) <= 2 && !json_object_get(a, "store")) {
    json_object_foreach(a, k, v) if (json_is_array(v)) pl__table(v);
    if (next && !json_is_null(next)) {
      printf("(more: --after ");
      pl__scalar(stdout, next, 0);
      printf(")\n");
    }
  } else {
    pl__object(a);
  }
  return CTL_OK;
}

/* ---- commands -------------------------------------------------------------- */

/* path + "?k=v&..." of the options given. */
static void pl__query(char *out, size_t n, const char *path, const char *const *kv) {
  size_t len = (size_t)snprintf(out, n, "%s", path);
  char sep = '?';
  for (; kv[0]; kv += 2)
    if (kv[1] && len < n) {
      char *e = curl_easy_escape(NULL, kv[1], 0);
      len += (size_t)snprintf(out + len, n - len, "%c%s=%s", sep, kv[0], e ? e : "");
      curl_free(e);
      sep = '&';
    }
}

static const char *pl__password(const ctl *c) {
  return c->password ? c->password : getenv("PARLEY_PASSWORD");
}

static int pl__user(const ctl *c, char *path, size_t n, json_t **body, const char **method) {
  const char *sub = c->argv[1], *name = c->argv[2];
  if (c->argc < 3)
    return pl__fail(CTL_USAGE,
                    "usage: parleyctl user show|create|password|disable|enable|delete|revoke NAME");
  snprintf(path, n, "/admin/users/%s", name);
  *method = "POST";
  if (!strcmp(sub, "show") && c->argc == 3)
    *method = "GET";
  else if (!strcmp(sub, "delete") && c->argc == 3)
    *method = "DELETE";
  else if ((!strcmp(sub, "disable") || !strcmp(sub, "enable")) && c->argc == 3)
    snprintf(path, n, "/admin/users/%s/%s", name, sub);
  else if (!strcmp(sub, "revoke") && c->argc <= 4) {
    snprintf(path, n, "/admin/users/%s/revoke", name);
    *body = c->argc == 4 ? json_pack("{s:s}", "device", c->argv[3]) : json_object();
  } else if ((!strcmp(sub, "create") || !strcmp(sub, "password")) && c->argc == 3) {
    if (!pl__password(c))
      return pl__fail(CTL_USAGE, "give the password with --password PW or $PARLEY_PASSWORD");
    if (!strcmp(sub, "create")) {
      snprintf(path, n, "/admin/users");
      *body = json_pack("{s:s,s:s}", "user", name, "password", pl__password(c));
    } else {
      snprintf(path, n, "/admin/users/%s/password", name);
      *body = json_pack("{s:s}", "password", pl__password(c));
    }
  } else
    return pl__fail(CTL_USAGE, "unknown user command (see parleyctl --help)");
  return -1;
}

static int pl__invite(const ctl *c, char *path, size_t n, json_t **body, const char **method) {
  if (c->argc == 2 && !strcmp(c->argv[1], "create")) {
    *method = "POST";
    snprintf(path, n, "/admin/invites");
    *body = json_object();
    if (c->opt_uses)
      json_object_set_new(*body, "uses", json_integer(atoll(c->opt_uses)));
    if (c->opt_expires)
      json_object_set_new(*body, "expires_in", json_integer(atoll(c->opt_expires)));
    if (c->opt_code)
      json_object_set_new(*body, "code", json_string(c->opt_code));
    return -1;
  }
  if (c->argc == 3 && !strcmp(c->argv[1], "delete")) {
    *method = "DELETE";
    snprintf(path, n, "/admin/invites/%s", c->argv[2]);
    return -1;
  }
  return pl__fail(CTL_USAGE,
                  "usage: parleyctl invite create [--uses N] [--expires S] [--code C] | invite delete CODE");
}

/* The call a command line makes: -1 and method, path, body; else an exit status. */
static int pl__route(const ctl *c, char *path, size_t n, json_t **body, const char **method) {
  const char *cmd = c->argv[0];
  *method = "GET";
  if (!strcmp(cmd, "users") && c->argc == 1) {
    const char *kv[] = {"q", c->opt_q, "after", c->opt_after, "limit", c->opt_limit, NULL};
    pl__query(path, n, "/admin/users", kv);
  } else if (!strcmp(cmd, "user"))
    return pl__user(c, path, n, body, method);
  else if (!strcmp(cmd, "groups") && c->argc == 1) {
    const char *kv[] = {"after", c->opt_after, "limit", c->opt_limit, NULL};
    pl__query(path, n, "/admin/groups", kv);
  } else if (!strcmp(cmd, "group") && c->argc == 3 && !strcmp(c->argv[1], "show"))
    snprintf(path, n, "/admin/groups/%s", c->argv[2]);
  else if (!strcmp(cmd, "group") && c->argc == 4 && !strcmp(c->argv[1], "remove")) {
    *method = "DELETE";
    snprintf(path, n, "/admin/groups/%s/members/%s", c->argv[2], c->argv[3]);
  } else if (!strcmp(cmd, "invite"))
    return pl__invite(c, path, n, body, method);
  else if (!strcmp(cmd, "invites") && c->argc == 1)
    snprintf(path, n, "/admin/invites");
  else if (!strcmp(cmd, "stats") && c->argc == 1)
    snprintf(path, n, "/admin/stats");
  else if (!strcmp(cmd, "queues") && c->argc == 1) {
    const char *kv[] = {"limit", c->opt_limit, NULL};
    pl__query(path, n, "/admin/queues", kv);
  } else if (!strcmp(cmd, "filter") && c->argc == 2 && !strcmp(c->argv[1], "reload")) {
    *method = "POST";
    snprintf(path, n, "/admin/filter/reload");
  } else if (!strcmp(cmd, "drain") && c->argc == 2 &&
             (!strcmp(c->argv[1], "on") || !strcmp(c->argv[1], "off"))) {
    *method = "POST";
    snprintf(path, n, "/admin/drain");
    *body = json_pack("{s:b,s:b}", "on", !strcmp(c->argv[1], "on"), "close", c->close);
  } else if (!strcmp(cmd, "backup") && c->argc == 1) {
    *method = "POST";
    snprintf(path, n, "/admin/backup");
  } else
    return pl__fail(CTL_USAGE, "unknown command or wrong arguments (see parleyctl --help)");
  return -1;
}

/* Options anywhere on the line; the rest are the command's words. */
static int pl__args(ctl *c, int argc, char **argv) {
  static const struct {
    const char *name;
    size_t off;
  } opts[] = {{"--url", offsetof(ctl, url)},           {"--token", offsetof(ctl, token)},
              {"--password", offsetof(ctl, password)}, {"--query", offsetof(ctl, opt_q)},
              {"--after", offsetof(ctl, opt_after)},   {"--limit", offsetof(ctl, opt_limit)},
              {"--uses", offsetof(ctl, opt_uses)},     {"--expires", offsetof(ctl, opt_expires)},
              {"--code", offsetof(ctl, opt_code)}};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    size_t k = 0;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(pl__usage, stdout);
      return CTL_OK;
    }
    if (!strcmp(a, "--json") || !strcmp(a, "--close")) {
      *(a[2] == 'j' ? &c->json : &c->close) = 1;
      continue;
    }
    while (k < sizeof opts / sizeof opts[0] && strcmp(a, opts[k].name))
      k++;
    if (k < sizeof opts / sizeof opts[0]) {
      if (i + 1 >= argc)
        return pl__fail(CTL_USAGE, "an option needs a value (see parleyctl --help)");
      *(const char **)((char *)c + opts[k].off) = argv[++i];
    } else if (!strncmp(a, "--", 2) || c->argc == 16) {
      return pl__fail(CTL_USAGE, "unknown option or too many words (see parleyctl --help)");
    } else {
      c->argv[c->argc++] = argv[i];
    }
  }
  return c->argc ? -1 : pl__fail(CTL_USAGE, "no command (see parleyctl --help)");
}

int main(int argc, char **argv) {
  ctl c = {.url = getenv("PARLEY_ADMIN_URL"), .token = getenv("PARLEY_ADMIN_TOKEN")};
  int rc = pl__args(&c, argc, argv);
  if (rc >= 0)
    return rc;
  if (!c.url || !*c.url)
    c.url = "http://127.0.0.1:7780";
  c.json |= !isatty(STDOUT_FILENO);
  if (!c.token || !*c.token)
    return pl__fail(CTL_AUTH,
                    "no admin token: --token or $PARLEY_ADMIN_TOKEN (parleyd admin-token create NAME)");
  char path[1024];
  json_t *body = NULL, *answer = NULL;
  const char *method;
  if ((rc = pl__route(&c, path, sizeof path, &body, &method)) >= 0)
    return rc;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  long status = pl__call(&c, method, path, body, &answer);
  rc = pl__show(&c, status, answer);
  json_decref(body);
  json_decref(answer);
  curl_global_cleanup();
  return rc;
}
