/* pl_mpool: media's own worker threads (security finding 5). */
#include <pthread.h>
#include <stdatomic.h>

#include "media/pl_mpool.h"
#include "testlib.h"

typedef struct job {
  pl_mjob j;
  int n;
  pthread_t worker;
} job;

static pthread_t loop_thread;
static atomic_int worked, order_ok, last; /* order: meaningful with one worker */
static int done;

static void work(pl_mjob *j) {
  job *x = (job *)j;
  x->worker = pthread_self();
  if (atomic_exchange(&last, x->n) != x->n - 1)
    atomic_store(&order_ok, 0);
  atomic_fetch_add(&worked, 1);
}

static void finished(pl_mjob *j) {
  job *x = (job *)j;
  CHECK(pthread_equal(pthread_self(), loop_thread)); /* done runs on the loop */
  CHECK(!pthread_equal(x->worker, loop_thread));     /* work did not */
  done++;
}

/* Every job runs once, off the loop, and is done on the loop; uv_run
 * returns only when all are done (a job out keeps its loop alive). */
static void run_jobs(unsigned threads, int fifo) {
  enum { N = 200 };
  static job jobs[N];
  uv_loop_t loop;
  pl_mpool *p = NULL;
  uv_loop_init(&loop);
  loop_thread = pthread_self();
  atomic_store(&worked, 0);
  done = 0;
  atomic_store(&order_ok, 1);
  atomic_store(&last, 0);
  CHECK_EQ_I(pl_mpool_new(threads, "test", NULL, &p), PL_OK);
  for (int i = 0; i < N; i++) {
    jobs[i] = (job){.j = {.work = work, .done = finished}, .n = i + 1};
    CHECK_EQ_I(pl_mpool_submit(p, &loop, &jobs[i].j), PL_OK);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_I(done, N);
  CHECK_EQ_I(atomic_load(&worked), N);
  if (fifo)
    CHECK(atomic_load(&order_ok)); /* one worker: run in the order submitted */
  pl_mpool_free(p);
  CHECK_EQ_I(uv_loop_close(&loop), 0);
}

static void test_one_worker_in_order(void) { run_jobs(1, 1); }
static void test_several_workers(void) { run_jobs(4, 0); }

static void test_free_idle_pool(void) {
  pl_mpool *p = NULL;
  CHECK_EQ_I(pl_mpool_new(3, "idle", NULL, &p), PL_OK);
  pl_mpool_free(p);
}

int main(void) {
  RUN(test_one_worker_in_order);
  RUN(test_several_workers);
  RUN(test_free_idle_pool);
  return tl_summary();
}
