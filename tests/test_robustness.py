"""Hostile but legal use: user code run in the middle of update(), other threads changing the
dicts while the kernels run, and an OS that refuses threads. Each case runs in a subprocess, so a
crash fails the test instead of killing the test run; PYTHONMALLOC=debug makes a use-after-free
crash rather than pass by luck."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

KEY_WITH_HOOK = """
import numpy as np, fastopt

class Key:
    # A key whose __eq__ runs user code once: dict lookups in update() call it.
    def __init__(self, name, hook=None):
        self.name, self.hook = name, hook
    def __hash__(self):
        return hash(self.name)
    def __eq__(self, other):
        if self.hook:
            hook, self.hook = self.hook, None
            hook()
        return isinstance(other, Key) and self.name == other.name
"""


def run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONMALLOC="debug", **(env or {}))
    script = KEY_WITH_HOOK + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], env=full_env, capture_output=True, text=True, timeout=120
    )


def test_update_reentered_from_a_keys_eq():
    # The inner update replaces the scalar param; the outer one must not use the freed float.
    done = run("""
        import sys
        opt = fastopt.SGD(lr=0.1)
        params = {Key("a"): float(sys.argv.count("x") + 4.5)}  # made at run time: owned by params
        def again():
            opt.update(params, {Key("a"): 1.0})
        opt.update(params, {Key("a", hook=again): 1.0})
        print(float(list(params.values())[0]))
    """)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) in (4.3, 4.4)  # one or both updates applied, never garbage


def test_state_dict_replaced_during_validation():
    done = run("""
        opt = fastopt.Momentum()
        params = {Key("a"): np.zeros(8)}
        def reset():
            opt.v = {}   # the book's way to reset state, from user code mid-update
        opt.update(params, {Key("a", hook=reset): np.ones(8)})
        print(len(opt.v))
    """)
    assert done.returncode == 0, done.stderr


def test_params_cleared_by_another_thread_while_the_kernels_run():
    done = run("""
        import threading, time
        fastopt.set_num_threads(1)
        opt = fastopt.SGD(lr=0.1)
        big, g = np.zeros(20_000_000), np.ones(20_000_000)
        for trial in range(3):
            name = "".join(["sca", "lar", str(trial)])   # a str owned by params alone
            params = {"big": big, name: trial + 0.5}
            grads = {"big": g, "".join(["sca", "lar", str(trial)]): 1.0}
            del name
            meddler = threading.Thread(target=lambda: (time.sleep(0.003), params.clear()))
            meddler.start()
            opt.update(params, grads)
            meddler.join()
        print("ok")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the shim")
def test_os_refusing_threads_falls_back_to_the_calling_thread(tmp_path):
    shim_c, shim = tmp_path / "nothreads.c", tmp_path / "nothreads.so"
    shim_c.write_text(
        textwrap.dedent("""
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <errno.h>
        #include <pthread.h>
        #include <stdlib.h>
        typedef int (*create_fn)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
        int pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
          if (getenv("REFUSE_THREADS")) return EAGAIN;
          return ((create_fn)dlsym(RTLD_NEXT, "pthread_create"))(t, a, f, arg);
        }
    """)
    )
    built = subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(shim), str(shim_c), "-ldl"],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    done = run(
        """
        import os
        os.environ["REFUSE_THREADS"] = "1"   # after numpy's BLAS has started its own threads
        fastopt.set_num_threads(4)
        p, g = np.zeros(4_000_000), np.ones(4_000_000)
        fastopt.SGD(lr=0.1).update({"w": p}, {"w": g})
        assert np.all(p == -0.1)
        print("ok")
    """,
        # Appended, so a sanitizer runtime preloaded by tools/sanitize.sh stays first.
        env={"LD_PRELOAD": ":".join(filter(None, [os.environ.get("LD_PRELOAD"), str(shim)]))},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
