/* parley-store-bench: the store alone, without sockets or event loops.
 *
 * Drives pl_store (the real group-commit thread and SQLite backend) the way
 * the server does in the `pairs` scenario: P senders each keep W sends in
 * flight to their own receiver, and each receiver acks what it got, in the
 * same batches. It reports the store thread's CPU per message (utime+stime
 * from /proc), messages per second and commits per second, so a change to
 * the store can be measured in isolation and with little noise.
 *
 *   parley-store-bench [--pairs P] [--window W] [--messages M] [--process]
 *                      [--dir DIR] [--size BYTES] [--hex-ids] [--stored-receipts]
 *
 * Every device counts as connected, as in `pairs` (the server's router says
 * so through the online hook): delivered receipts are pushed, not stored.
 * --stored-receipts: no device is connected, so each Ack stores a receipt
 * for the sender, who acks it in the next round (the offline-sender path;
 * the bench measured this by default from 03287bd to a85d2d5).
 * --hex-ids: client ids of 32 hex digits, as libparley makes them (else
 * "m<n>"), so the dedup records have the size they have in production.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pl_fs.h"
#include "common/pl_mem.h"
#include "common/pl_time.h"
#include "store/pl_store.h"

typedef struct sb_pair {
  uint64_t sender_uid, sender_dev, recv_uid, recv_dev;
  uint64_t receipt_qid, receipt_acked; /* delivered receipts queued for the sender */
  char sender[32], receiver[32];
  uint64_t next_id, acked_upto, max_qid;
} sb_pair;

typedef struct sb {
  pl_store *store;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t pending;
  sb_pair *pairs;
  size_t npairs;
  uint8_t *body;
  size_t body_len;
  int hex_ids;
} sb;

typedef struct sb_req {
  pl_store_req r;
  sb *b;
  sb_pair *p;
  char id[40];
} sb_req;

/* The store thread's utime+stime in clock ticks. */
static long sb_store_ticks(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  long ticks = -1;
  while (d && (e = readdir(d))) {
    char path[300], comm[64] = "", stat[1024];
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    if (!fgets(comm, sizeof comm, f))
      comm[0] = 0;
    fclose(f);
    if (strncmp(comm, "pl-store", 8) != 0)
      continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
    f = fopen(path, "r");
    if (f && fgets(stat, sizeof stat, f)) {
      char *p = strrchr(stat, ')');
      unsigned long ut = 0, st = 0;
      /* fields after ")": state(3) ... utime(14) stime(15) */
      if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        ticks = (long)(ut + st);
    }
    if (f)
      fclose(f);
  }
  if (d)
    closedir(d);
  return ticks;
}

/* Bytes this process wrote through write(2) and friends (/proc/self/io). */
static unsigned long long sb_wchar(void) {
  FILE *f = fopen("/proc/self/io", "r");
  char line[128];
  unsigned long long v = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "wchar: %llu", &v) == 1)
      break;
  if (f)
    fclose(f);
  return v;
}

static int sb_online(void *ud, uint64_t device) {
  (void)ud;
  (void)device;
  return 1;
}

static void sb_done(pl_store_req *r) {
  sb_req *q = (sb_req *)r;
  sb *b = q->b;
  if (r->status != PL_OK) {
    fprintf(stderr, "store-bench: request op %d failed: %s\n", r->op, pl_err_name(r->status));
    exit(1);
  }
  pthread_mutex_lock(&b->mu);
  if (r->op == PL_STORE_SEND && r->u.send.out.msg.qid > q->p->max_qid)
    q->p->max_qid = r->u.send.out.msg.qid;
  for (size_t i = 0; i < r->nevents; i++)
    if (r->events[i].msg.qid > q->p->receipt_qid)
      q->p->receipt_qid = r->events[i].msg.qid;
  b->pending--;
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
  pl_store_req_clear(r);
  pl_free(q);
}

static sb_req *sb_new(sb *b, sb_pair *p, pl_store_op op) {
  sb_req *q = pl_calloc(1, sizeof *q);
  q->b = b;
  q->p = p;
  q->r.op = op;
  q->r.done = sb_done;
  return q;
}

static void sb_submit(sb *b, sb_req *q) {
  pthread_mutex_lock(&b->mu);
  b->pending++;
  pthread_mutex_unlock(&b->mu);
  pl_store_submit(b->store, &q->r);
}

static void sb_wait(sb *b, size_t upto) {
  pthread_mutex_lock(&b->mu);
  while (b->pending > upto)
    pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
}

static void sb_setup(sb *b) {
  for (size_t i = 0; i < b->npairs; i++) {
    sb_pair *p = &b->pairs[i];
    snprintf(p->sender, sizeof p->sender, "sbs%zu", i);
    snprintf(p->receiver, sizeof p->receiver, "sbr%zu", i);
    for (int k = 0; k < 2; k++) {
      pl_store_req r = {0};
      r.op = PL_STORE_REGISTER;
      r.u.reg.in.user = k ? p->receiver : p->sender;
      r.u.reg.in.device = "d";
      r.u.reg.in.pwhash = "x";
      r.u.reg.in.token_hash[0] = (uint8_t)k;
      memcpy(r.u.reg.in.token_hash + 1, &i, sizeof i);
      if (pl_store_call(b->store, &r) != PL_OK || r.status != PL_OK) {
        fprintf(stderr, "store-bench: register failed: %s\n", pl_err_name(r.status));
        exit(1);
      }
      if (k) {
        p->recv_uid = r.u.reg.out.user_id;
        p->recv_dev = r.u.reg.out.device_id;
      } else {
        p->sender_uid = r.u.reg.out.user_id;
        p->sender_dev = r.u.reg.out.device_id;
      }
      pl_store_req_clear(&r);
    }
  }
}

/* One round: every pair sends w messages and acks what came back last round. */
static void sb_round(sb *b, size_t w) {
  for (size_t i = 0; i < b->npairs; i++) {
    sb_pair *p = &b->pairs[i];
    for (size_t k = 0; k < w; k++) {
      sb_req *q = sb_new(b, p, PL_STORE_SEND);
      if (b->hex_ids) /* sender index and counter, spread over 32 digits */
        snprintf(q->id, sizeof q->id, "%016llx%016llx", (unsigned long long)i * 0x9E3779B97F4A7C15ull,
                 (unsigned long long)++p->next_id * 0xC2B2AE3D27D4EB4Full);
      else
        snprintf(q->id, sizeof q->id, "m%llu", (unsigned long long)++p->next_id);
      q->r.user_id = p->sender_uid;
      q->r.device_id = p->sender_dev;
      q->r.u.send.in.device_name = "d";
      q->r.u.send.in.peer = p->receiver;
      q->r.u.send.in.client_id = q->id;
      q->r.u.send.in.body = b->body;
      q->r.u.send.in.body_len = b->body_len;
      q->r.u.send.in.client_ts = pl_now_ms();
      sb_submit(b, q);
    }
    if (p->max_qid > p->acked_upto) {
      sb_req *q = sb_new(b, p, PL_STORE_ACK);
      q->r.device_id = p->recv_dev;
      q->r.user_id = p->recv_uid; /* delivered receipts, as the server asks */
      q->r.u.ack.in.upto = p->max_qid;
      p->acked_upto = p->max_qid;
      sb_submit(b, q);
    }
    if (p->receipt_qid > p->receipt_acked) { /* the sender acks its receipts */
      sb_req *q = sb_new(b, p, PL_STORE_ACK);
      q->r.device_id = p->sender_dev;
      q->r.user_id = p->sender_uid;
      q->r.u.ack.in.upto = p->receipt_qid;
      p->receipt_acked = p->receipt_qid;
      sb_submit(b, q);
    }
  }
}

int main(int argc, char **argv) {
  size_t pairs = 100, window = 16, messages = 500000, size = 100;
  int durable = 1, hex_ids = 0, stored_receipts = 0;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--process"))
      durable = 0;
    else if (!strcmp(a, "--hex-ids"))
      hex_ids = 1;
    else if (!strcmp(a, "--stored-receipts"))
      stored_receipts = 1;
    else if (v && !strcmp(a, "--pairs"))
      pairs = strtoul(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--window"))
      window = strtoul(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--messages"))
      messages = strtoul(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--size"))
      size = strtoul(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--dir"))
      dir = argv[++i];
    else {
      fprintf(stderr, "usage: parley-store-bench [--pairs P] [--window W] [--messages M] [--size B]"
                      " [--process] [--dir DIR] [--hex-ids] [--stored-receipts]\n");
      return 2;
    }
  }
  char tmp[] = "/tmp/parley-store-bench-XXXXXX";
  if (!dir && !(dir = mkdtemp(tmp))) {
    perror("mkdtemp");
    return 1;
  }
  pl_store_config cfg = {.dir = dir, .durable = durable, .ttl_ms = 72ull * 3600 * 1000};
  sb b = {.npairs = pairs, .body_len = size, .hex_ids = hex_ids};
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  b.pairs = pl_calloc(pairs, sizeof *b.pairs);
  b.body = pl_malloc(size ? size : 1);
  memset(b.body, 'x', size);
  pl_store_hooks hooks = {.online = stored_receipts ? NULL : sb_online};
  if (pl_store_open(&b.store, &pl_store_sqlite, &cfg, &hooks) != PL_OK) {
    fprintf(stderr, "store-bench: cannot open the store in %s\n", dir);
    return 1;
  }
  sb_setup(&b);
  pl_store_stats s0, s1;
  pl_store_get_stats(b.store, &s0);
  long t0 = sb_store_ticks();
  unsigned long long wb0 = sb_wchar();
  uint64_t w0 = pl_mono_us();
  size_t sent = 0;
  /* Keep about two rounds in flight, as connections keep windows open. */
  while (sent < messages) {
    sb_round(&b, window);
    sent += pairs * window;
    sb_wait(&b, pairs * window);
  }
  sb_wait(&b, 0);
  sb_round(&b, 0); /* the last acks */
  sb_wait(&b, 0);
  uint64_t us = pl_mono_us() - w0;
  long t1 = sb_store_ticks();
  unsigned long long wb = sb_wchar() - wb0;
  pl_store_get_stats(b.store, &s1);
  double cpu_us = (double)(t1 - t0) * 1e6 / (double)sysconf(_SC_CLK_TCK);
  uint64_t commits = s1.commits - s0.commits;
  printf("{\"stored_receipts\":%d,\"pairs\":%zu,\"window\":%zu,\"messages\":%zu,\"durable\":%d,\"msgs_per_"
         "s\":%.0f,"
         "\"store_cpu_us_per_msg\":%.2f,\"commits\":%llu,\"msgs_per_commit\":%.1f,"
         "\"written_bytes_per_msg\":%.0f}\n",
         stored_receipts, pairs, window, sent, durable, (double)sent * 1e6 / (double)us,
         cpu_us / (double)sent, (unsigned long long)commits, commits ? (double)sent / (double)commits : 0.0,
         (double)wb / (double)sent);
  pl_store_close(b.store);
  if (dir == tmp) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
      fprintf(stderr, "store-bench: could not remove %s\n", tmp);
  }
  return 0;
}
