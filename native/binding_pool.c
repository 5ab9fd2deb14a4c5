/* The binding's entry points for the fork repair's record in the parent
 * (waiters.c), for the test-only parked thread (testhooks.c) and for the
 * test-only holder of Node's options lock (locks.c). */
#include "binding.h"

#include <stdio.h>

const napi_type_tag cf__park_tag = {0x636f77666f726b00ULL, 0x7061726b00000001ULL};

/* forkCensusPasses(): in a parent, how many passes its last fork's census of
 * the other threads took; 1 means it did not wait. */
napi_value cf__ForkCensusPasses(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_fork_census_passes());
}

/* forkPoolLocated(): in a parent, whether its last fork found Node's V8
 * worker pool to empty in the child: 1, 0 (not yet), or a negative errno. */
napi_value cf__ForkPoolLocated(napi_env env, napi_callback_info info) {
  return cf__int(env, cf_fork_pool_located());
}

static void cf__park_finalize(napi_env env, void* data, void* hint) {
  cf_test_park_free(data);
}

/* testPark(kind): [handle, word] for a thread parked on the first word of a
 * page after a PROT_NONE (0) or unmapped (1) page; word is "0x..." as in
 * /proc/self/task/<tid>/syscall. */
napi_value cf__TestPark(napi_env env, napi_callback_info info) {
  CF__ARGS("testPark", 1);
  int64_t kind;
  CF__TRY(cf__arg_int(env, cf__fn, "kind", argv[0], CF_TEST_PARK_PROT_NONE, CF_TEST_PARK_HOLE, &kind));
  cf_test_park_t* p;
  uintptr_t word;
  int r = cf_test_park((int)kind, &p, &word);
  CF__ERR(r);
  char hex[32];
  snprintf(hex, sizeof(hex), "0x%lx", (unsigned long)word);
  napi_value out, handle;
  if (napi_create_external(env, p, cf__park_finalize, NULL, &handle) != napi_ok) {
    cf_test_unpark(p);
    cf_test_park_free(p);
    return cf__napi_fail(env);
  }
  CF__CHECK(napi_type_tag_object(env, handle, &cf__park_tag));
  CF__CHECK(napi_create_array_with_length(env, 2, &out));
  if (!cf__set(env, out, 0, handle) || !cf__set(env, out, 1, cf__str(env, hex))) return cf__napi_fail(env);
  return out;
}

/* testUnpark(handle): wakes and joins that thread, and unmaps its pages;
 * EINVAL if it was unparked already. */
napi_value cf__TestUnpark(napi_env env, napi_callback_info info) {
  CF__ARGS("testUnpark", 1);
  void* p;
  CF__TRY(cf__arg_handle(env, cf__fn, "handle", argv[0], &cf__park_tag, "park", &p));
  int r = cf_test_unpark(p);
  CF__ERR(r);
  return cf__undefined(env);
}

/* testHoldOptionsLock(ms): a thread holds Node's options lock for ms, as a
 * parent's starting Worker does; returns once it holds it. ENOENT where this
 * Node's lock cannot be found. */
napi_value cf__TestHoldOptionsLock(napi_env env, napi_callback_info info) {
  CF__ARGS("testHoldOptionsLock", 1);
  int64_t ms;
  CF__TRY(cf__arg_int(env, cf__fn, "ms", argv[0], 1, 60000, &ms));
  CF__ERR(cf_test_hold_options_lock((int)ms));
  return cf__undefined(env);
}

/* testTaskHold(us, untilWaited): a libuv threadpool task holds a lock while
 * it spins for us microseconds, or until a fork's census has waited for it;
 * returns once it holds the lock. */
napi_value cf__TestTaskHold(napi_env env, napi_callback_info info) {
  CF__ARGS("testTaskHold", 2);
  int64_t us;
  bool until_waited;
  uv_loop_t* loop;
  CF__TRY(cf__arg_int(env, cf__fn, "us", argv[0], 1, 10 * 1000 * 1000, &us));
  CF__TRY(cf__arg_bool(env, cf__fn, "untilWaited", argv[1], &until_waited));
  CF__CHECK(napi_get_uv_event_loop(env, &loop));
  CF__ERR(cf_test_task_hold(loop, (int)us, until_waited));
  return cf__undefined(env);
}

/* testTaskLockHeld(): whether that task's lock is held (in a child: was held at the fork). */
napi_value cf__TestTaskLockHeld(napi_env env, napi_callback_info info) {
  return cf__bool(env, cf_test_task_lock_held());
}

/* testTaskNoticed(): whether that task saw the fork's census wait for it (in a child: before the fork). */
napi_value cf__TestTaskNoticed(napi_env env, napi_callback_info info) {
  return cf__bool(env, cf_test_task_noticed());
}
