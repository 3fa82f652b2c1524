#include "bindings/execute.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/aliasing.hpp"
#include "bindings/arrays.hpp"
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

namespace {

// Runs tasks [from, to) whole, in order, on the calling thread.
void run_tasks_in_order(const Scratch& scratch, const Plan& plan, std::size_t from,
                        std::size_t to) {
  std::int64_t elements = 0;
  for (std::size_t t = from; t < to; ++t) elements += scratch.tasks[t].size;
  const double work_ns = plan.total > 0 ? plan.work_ns * elements / plan.total : 0;
  run_released_if_large(work_ns, [&] { runtime::run_in_order(scratch.tasks, from, to); });
}

// Key after key, converting each deferred grad at its key's turn: it then reads what the keys
// before it wrote. The conversion cannot fail but for MemoryError: validation converted the same
// source already (its shape and dtype do not change in between; only its values do).
void run_converting_in_order(Scratch& scratch, const Plan& plan, const Aliasing& aliasing) {
  std::size_t next = 0;  // the first task not yet run
  for (std::size_t index : aliasing.deferred) {
    const ConvertedGrad& grad = scratch.converted_grads[index];
    run_tasks_in_order(scratch, plan, next, grad.task);
    runtime::Task& task = scratch.tasks[grad.task];
    const ParamSpan param{py::reinterpret_borrow<py::array>(grad.param),
                          scratch.origins[grad.task].dtype, grad.layout, task.size, false};
    scratch.keep.push_back(copy_grad(grad.source, param));
    task.ops.grad = py::detail::array_proxy(scratch.keep.back().ptr())->data;
    next = grad.task;
  }
  run_tasks_in_order(scratch, plan, next, scratch.tasks.size());
}

}  // namespace

void run_plan(Scratch& scratch, const Plan& plan) {
  const int wanted = runtime::threads_for(plan.work_ns, runtime::num_threads());
  bool in_order = false;
  // A converted grad (a copy, the slow path) may be deferred to its key's turn: then no Job, since
  // converting runs Python code.
  if (!scratch.converted_grads.empty()) {
    const Aliasing aliasing = find_aliasing(scratch, wanted > 1);
    if (!aliasing.deferred.empty()) return run_converting_in_order(scratch, plan, aliasing);
    in_order = aliasing.in_order;
  }
  // The pool decides first how many threads really run: when the job will run alone, it takes
  // the one-thread path, paying nothing for the checks that only several threads need.
  runtime::Job job(in_order ? 1 : wanted, plan.work_ns, plan.kernel);
  if (job.threads() > 1 && scratch.converted_grads.empty())
    in_order = find_aliasing(scratch, true).in_order;
  run_released_if_large(plan.work_ns, [&] {
    if (in_order) {
      runtime::run_in_order(scratch.tasks, 0, scratch.tasks.size());
    } else {
      runtime::run_tasks(scratch.tasks, plan.total, job);
    }
  });
}

void write_back_scalars(PyObject* params, const Scratch& scratch) {
  for (const ScalarParam& scalar : scratch.scalar_params) {
    py::object result = py::reinterpret_borrow<py::array>(scalar.work)[py::tuple()];
    // Into the dict's own storage, for a subclass too: a subclass's __setitem__ is Python code
    // that could raise (or let a signal handler run) after the kernels have written, leaving the
    // update half done.
    const int failed = PyDict_SetItem(params, scalar.key, result.ptr());
    if (failed != 0) throw py::error_already_set();
  }
}

namespace {

bool is_pair(PyObject* item) {
  return PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2 &&
         PyDict_Check(PyTuple_GET_ITEM(item, 0)) && PyDict_Check(PyTuple_GET_ITEM(item, 1));
}

void commit_pair(PyObject* pair) {
  if (PyDict_Update(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) != 0) {
    throw py::error_already_set();
  }
}

}  // namespace

void check_commit(PyObject* commit) {
  if (commit == Py_None || is_pair(commit)) return;
  if (PyList_CheckExact(commit)) {
    bool all_pairs = true;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(commit); ++i)
      all_pairs = all_pairs && is_pair(PyList_GET_ITEM(commit, i));
    if (all_pairs) return;
  }
  throw py::type_error("commit must be None, (target dict, values dict), or a list of such pairs");
}

void commit_counters(PyObject* commit) {
  if (commit == Py_None) return;
  // (target, values): target.update(values), in C, before run() returns. A signal handler that
  // raises (Ctrl-C, SIGALRM) runs only when Python code runs again, which is after this: so the
  // step count moves with the params, and an interrupt can never leave params updated with the
  // counters behind. A list of pairs (fastopt.torch: the optimizer's count and each param's
  // "step") is committed the same way; check_commit checked it before anything was written, and
  // a dict's update of exact dicts runs no Python code.
  if (!PyList_CheckExact(commit)) return commit_pair(commit);
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(commit); ++i) commit_pair(PyList_GET_ITEM(commit, i));
}

}  // namespace fastopt::bindings
