#include "bindings/execute.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/aliasing.hpp"
#include "bindings/without_gil.hpp"
#include "runtime/executor.hpp"
#include "runtime/thread_pool.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

void commit_states(const Scratch& scratch) {
  for (const PendingState& state : scratch.pending) {
    if (PyDict_SetItem(state.dict, state.key, state.value) != 0) throw py::error_already_set();
  }
}

void run_plan(const Scratch& scratch, const Plan& plan) {
  int threads = runtime::threads_for(plan.work_ns, runtime::num_threads());
  if (threads > 1 && one_writes_anothers_memory(scratch.tasks, scratch.origins)) threads = 1;
  const bool large = plan.work_ns >= runtime::kLargeJobNs;
  run_released_if_large(plan.work_ns,
                        [&] { runtime::run_tasks(scratch.tasks, plan.total, threads, large); });
}

void write_back_scalars(PyObject* params, const Scratch& scratch) {
  for (const ScalarParam& scalar : scratch.scalar_params) {
    py::object result = py::reinterpret_borrow<py::array>(scalar.work)[py::tuple()];
    // A dict subclass gets its own __setitem__, as it gave its own __getitem__ in planning.
    const int failed = PyDict_CheckExact(params)
                           ? PyDict_SetItem(params, scalar.key, result.ptr())
                           : PyObject_SetItem(params, scalar.key, result.ptr());
    if (failed != 0) throw py::error_already_set();
  }
}

void commit_counters(PyObject* commit) {
  if (commit == Py_None) return;
  // (target, values): target.update(values), in C, before run() returns. A signal handler that
  // raises (Ctrl-C, SIGALRM) runs only when Python code runs again, which is after this: so the
  // step count moves with the params, and an interrupt can never leave params updated with the
  // counters behind.
  PyObject* target = PyTuple_GET_ITEM(commit, 0);
  PyObject* values = PyTuple_GET_ITEM(commit, 1);
  if (PyDict_Update(target, values) != 0) throw py::error_already_set();
}

}  // namespace fastopt::bindings
