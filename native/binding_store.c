/* The binding's entry points for how Parallel moves results: scratch
 * directories (scratch.c), HMAC records (hmac.c) and shared-memory counters
 * (shm.c). Argument conversion only. */
#include "binding.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

/* scratchCreate(base): a new private directory inside base. */
napi_value cf__ScratchCreate(napi_env env, napi_callback_info info) {
  CF__ARGS("scratchCreate", 1);
  char *base, out[PATH_MAX];
  napi_value res;
  CF__TRY(cf__arg_string(env, cf__fn, "base", argv[0], PATH_MAX - 1, &base));
  int r = cf_scratch_create(base, out, sizeof(out));
  free(base);
  CF__ERR(r);
  CF__CHECK(napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &res));
  return res;
}

napi_value cf__ScratchOpen(napi_env env, napi_callback_info info) {
  CF__ARGS("scratchOpen", 3);
  char *dir, *name;
  bool for_write;
  CF__TRY(cf__arg_bool(env, cf__fn, "forWrite", argv[2], &for_write));
  CF__TRY(cf__arg_string(env, cf__fn, "dir", argv[0], PATH_MAX - 1, &dir));
  if (!cf__arg_string(env, cf__fn, "name", argv[1], NAME_MAX, &name)) {
    free(dir);
    return NULL;
  }
  int r = cf_scratch_open(dir, name, for_write);
  free(dir);
  free(name);
  CF__ERR(r);
  return cf__int(env, r);
}

napi_value cf__ScratchRemove(napi_env env, napi_callback_info info) {
  CF__ARGS("scratchRemove", 1);
  char* dir;
  CF__TRY(cf__arg_string(env, cf__fn, "dir", argv[0], PATH_MAX - 1, &dir));
  int r = cf_scratch_remove(dir);
  free(dir);
  CF__ERR(r);
  return cf__undefined(env);
}

/* hmac(key, data, offset?, length?): Buffer of 32 bytes over
 * data[offset, offset + length); length defaults to the rest of data. */
napi_value cf__Hmac(napi_env env, napi_callback_info info) {
  CF__ARGS("hmac", 4);
  void *key, *data, *out;
  size_t keylen, len;
  int64_t off, n;
  napi_value buf;
  CF__TRY(cf__arg_bytes(env, cf__fn, "key", argv[0], &key, &keylen));
  CF__TRY(cf__arg_bytes(env, cf__fn, "data", argv[1], &data, &len));
  /* A typed array is shorter than 2^53 bytes, so len fits the bounds. */
  CF__TRY(cf__arg_opt_int(env, cf__fn, "offset", argv[2], 0, (int64_t)len, 0, &off));
  CF__TRY(cf__arg_opt_int(env, cf__fn, "length", argv[3], 0, (int64_t)len - off,
                          (int64_t)len - off, &n));
  CF__CHECK(napi_create_buffer(env, 32, &out, &buf));
  int r = cf_hmac_sha256(key, keylen, (char*)data + off, (size_t)n, out);
  CF__ERR(r);
  return buf;
}

napi_value cf__Memeq(napi_env env, napi_callback_info info) {
  CF__ARGS("memeq", 2);
  void *a, *b;
  size_t la, lb;
  CF__TRY(cf__arg_bytes(env, cf__fn, "a", argv[0], &a, &la));
  CF__TRY(cf__arg_bytes(env, cf__fn, "b", argv[1], &b, &lb));
  return cf__bool(env, la == lb && cf_memeq(a, b, la));
}

static void cf__shm_finalize(napi_env env, void* data, void* hint) {
  cf_shm_destroy(data);
}

/* The most slots a shm array can have: its size in bytes must fit size_t. */
#define CF__SHM_MAX \
  ((int64_t)(CF_SHM_MAX_COUNT < (uint64_t)CF__SAFE_INT ? CF_SHM_MAX_COUNT : CF__SAFE_INT))

napi_value cf__ShmCreate(napi_env env, napi_callback_info info) {
  CF__ARGS("shmCreate", 1);
  int64_t count;
  cf_shm_t* shm;
  napi_value out;
  CF__TRY(cf__arg_int(env, cf__fn, "count", argv[0], 1, CF__SHM_MAX, &count));
  int r = cf_shm_create((size_t)count, &shm);
  CF__ERR(r);
  if (napi_create_external(env, shm, cf__shm_finalize, NULL, &out) != napi_ok) {
    cf_shm_destroy(shm);
    return cf__napi_fail(env);
  }
  CF__CHECK(napi_type_tag_object(env, out, &cf__shm_tag));
  return out;
}

/* A shm handle and a slot index inside it. */
static bool cf__arg_slot(napi_env env, const char* fn, napi_value* argv, cf_shm_t** shm,
                         size_t* i) {
  int64_t x;
  if (!cf__arg_handle(env, fn, "shm", argv[0], &cf__shm_tag, "shm", (void**)shm)) return false;
  if (!cf__arg_int(env, fn, "slot", argv[1], 0, (int64_t)cf_shm_count(*shm) - 1, &x)) return false;
  *i = (size_t)x;
  return true;
}

napi_value cf__ShmAdd(napi_env env, napi_callback_info info) {
  CF__ARGS("shmAdd", 3);
  size_t i;
  int64_t d;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  CF__TRY(cf__arg_int(env, cf__fn, "delta", argv[2], -CF__SAFE_INT, CF__SAFE_INT, &d));
  return cf__int(env, cf_shm_add(shm, i, d));
}

napi_value cf__ShmLoad(napi_env env, napi_callback_info info) {
  CF__ARGS("shmLoad", 2);
  size_t i;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  return cf__int(env, cf_shm_load(shm, i));
}

napi_value cf__ShmStore(napi_env env, napi_callback_info info) {
  CF__ARGS("shmStore", 3);
  size_t i;
  int64_t v;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  CF__TRY(cf__arg_int(env, cf__fn, "value", argv[2], -CF__SAFE_INT, CF__SAFE_INT, &v));
  cf_shm_store(shm, i, v);
  return cf__undefined(env);
}

/* shmClaim(shm, slot, total, divisor, maxChunk): [start, count] or null */
napi_value cf__ShmClaim(napi_env env, napi_callback_info info) {
  CF__ARGS("shmClaim", 5);
  size_t i;
  int64_t total, divisor, max_chunk, count = 0;
  cf_shm_t* shm;
  CF__TRY(cf__arg_slot(env, cf__fn, argv, &shm, &i));
  CF__TRY(cf__arg_int(env, cf__fn, "total", argv[2], 0, CF__SAFE_INT, &total));
  CF__TRY(cf__arg_int(env, cf__fn, "divisor", argv[3], 1, CF__SAFE_INT, &divisor));
  CF__TRY(cf__arg_int(env, cf__fn, "maxChunk", argv[4], 0, CF__SAFE_INT, &max_chunk));
  int64_t start = cf_shm_claim(shm, i, total, divisor, max_chunk, &count);
  if (start < 0) return cf__null(env);
  return cf__pair(env, start, count);
}
