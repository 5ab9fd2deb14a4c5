{
  "targets": [
    {
      "target_name": "cowfork",
      "sources": [
        "native/binding.c",
        "native/binding_args.c",
        "native/binding_watch.c",
        "native/binding_pool.c",
        "native/binding_inspect.c",
        "native/binding_store.c",
        "native/fork.c",
        "native/fd.c",
        "native/dofork.c",
        "native/bench.c",
        "native/random.c",
        "native/waiters.c",
        "native/immediates.c",
        "native/loop.c",
        "native/watchers.c",
        "native/symbols.c",
        "native/peek.c",
        "native/testhooks.c",
        "native/testtask.c",
        "native/silence.c",
        "native/inspect.c",
        "native/settle.c",
        "native/procfs.c",
        "native/locks.c",
        "native/wait.c",
        "native/poll.c",
        "native/scratch.c",
        "native/hmac.c",
        "native/shm.c",
        "native/listen.c"
      ],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      "xcode_settings": {
        "OTHER_CFLAGS": ["-std=gnu11", "-Wall", "-Wno-unused-parameter"],
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      }
    }
  ]
}
