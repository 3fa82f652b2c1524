// Running C++ with the GIL released, safely even while the interpreter shuts down.
#pragma once

#include <Python.h>

#include <chrono>
#include <exception>
#include <thread>

namespace fastopt::bindings {

// Runs fn() with the GIL released. Not pybind11's gil_scoped_release: its destructor re-takes the
// GIL, and when the interpreter is finalizing that makes CPython end a daemon thread with
// pthread_exit, whose forced unwinding through a (noexcept) destructor calls std::terminate: a
// daemon thread updating at exit crashed the process ("terminate called without an active
// exception"). Here the GIL is re-taken in ordinary code, and a thread that finds the interpreter
// finalizing parks instead: the process is exiting, and it ends the thread.
template <class F>
void without_gil(F&& fn) {
  PyThreadState* state = PyEval_SaveThread();
  std::exception_ptr error;  // rethrown only once the GIL is held again
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
#if PY_VERSION_HEX >= 0x030D0000
  const bool finalizing = Py_IsFinalizing();
#else
  const bool finalizing = _Py_IsFinalizing();
#endif
  while (finalizing) std::this_thread::sleep_for(std::chrono::seconds(1));
  PyEval_RestoreThread(state);
  if (error) std::rethrow_exception(error);
}

// Below this much work (ns) the kernels take less time than releasing and re-taking the GIL,
// and other Python threads lose nothing by waiting.
inline constexpr double kReleaseGilAboveNs = 5e3;

// Runs `work` with the GIL released when it is long enough that other Python threads gain.
template <class Work>
void run_released_if_large(double work_ns, Work&& work) {
  if (work_ns > kReleaseGilAboveNs) {
    without_gil(work);
  } else {
    work();
  }
}

}  // namespace fastopt::bindings
