// update(): one call into C++ per optimizer step, for every key of the params dict together.
//
// Phases, in this order, so that bad input changes nothing:
//   1. validate: walk the keys once with the GIL held; check every param, grad and state; convert
//      grads that need it; make (but do not insert) missing state arrays. Any error raises here.
//   2. commit: insert the new state arrays into the optimizer's state dicts.
//   3. run: release the GIL and run the kernels. No Python object is touched in this phase; the
//      plan holds references that keep every array alive until it is destroyed, with the GIL held.
//   4. write back the params that were scalars, as NumPy float64 scalars.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>
#include <vector>

#include "bindings/active_level.hpp"
#include "bindings/arrays.hpp"
#include "runtime/executor.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

struct KeyPlan {
  py::object key;
  ParamSpan param;
  py::array grad;
  std::array<py::array, kMaxStates> state;
  std::array<bool, kMaxStates> state_pending{};
};

py::handle lookup_grad(py::handle grads, py::handle key) {
  PyObject* found = nullptr;
  if (PyDict_Check(grads.ptr())) {
    found = PyDict_GetItemWithError(grads.ptr(), key.ptr());  // borrowed
    if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
    if (found != nullptr) return found;
  } else {
    found = PyObject_GetItem(grads.ptr(), key.ptr());  // new reference
    if (found != nullptr) {
      Py_DECREF(found);  // the mapping keeps it alive while we hold the GIL and don't mutate it
      return found;
    }
    if (!PyErr_ExceptionMatches(PyExc_KeyError)) throw py::error_already_set();
    PyErr_Clear();
  }
  throw py::key_error("grads has no entry for key " + std::string(py::repr(key)) +
                      "; every key of params needs a gradient.");
}

void update(int kernel, py::handle params, py::handle grads, py::tuple states,
            py::tuple state_names, py::tuple scalars) {
  const KernelTable table = active_level().table();
  if (kernel < 0 || kernel >= table.size) throw py::value_error("unknown kernel index");
  const KernelRow& row = table.rows[kernel];
  if (static_cast<int>(py::len(states)) != row.num_states ||
      static_cast<int>(py::len(state_names)) != row.num_states ||
      static_cast<int>(py::len(scalars)) != row.num_scalars) {
    throw py::value_error(std::string("internal error: kernel '") + row.name + "' takes " +
                          std::to_string(row.num_states) + " state dicts and " +
                          std::to_string(row.num_scalars) + " scalars");
  }
  if (!PyDict_Check(params.ptr())) {
    throw py::type_error("params must be a dict mapping keys to arrays; got " +
                         std::string(py::str(py::type::of(params).attr("__name__"))));
  }
  std::array<double, kMaxScalars> scalar_values{};
  for (int s = 0; s < row.num_scalars; ++s) scalar_values[s] = py::cast<double>(scalars[s]);
  std::array<std::string, kMaxStates> names;
  for (int s = 0; s < row.num_states; ++s) {
    if (!PyDict_Check(states[s].ptr())) {
      throw py::type_error("the optimizer's state '" + py::cast<std::string>(state_names[s]) +
                           "' must be a dict; assign {} to reset it.");
    }
    names[s] = py::cast<std::string>(state_names[s]);
  }

  // 1. validate
  std::vector<KeyPlan> plan;
  plan.reserve(static_cast<std::size_t>(PyDict_Size(params.ptr())));
  for (auto item : py::reinterpret_borrow<py::dict>(params)) {
    KeyPlan key_plan;
    key_plan.key = py::reinterpret_borrow<py::object>(item.first);
    py::handle grad = lookup_grad(grads, item.first);
    key_plan.param = check_param(item.first, item.second);
    key_plan.grad = check_grad(item.first, grad, key_plan.param);
    for (int s = 0; s < row.num_states; ++s) {
      bool pending = false;
      key_plan.state[s] =
          check_state(item.first, states[s], names[s].c_str(), key_plan.param, &pending);
      key_plan.state_pending[s] = pending;
    }
    plan.push_back(std::move(key_plan));
  }

  // 2. commit
  std::vector<runtime::Task> tasks;
  tasks.reserve(plan.size());
  for (KeyPlan& key_plan : plan) {
    for (int s = 0; s < row.num_states; ++s)
      if (key_plan.state_pending[s]) states[s][key_plan.key] = key_plan.state[s];
    if (key_plan.param.size == 0) continue;
    runtime::Task task{row.fn[static_cast<int>(key_plan.param.dtype)],
                       scalar_values.data(),
                       {},
                       key_plan.param.size};
    task.ops.param = key_plan.param.array.mutable_data();
    task.ops.grad = key_plan.grad.data();
    for (int s = 0; s < row.num_states; ++s) task.ops.state[s] = key_plan.state[s].mutable_data();
    tasks.push_back(task);
  }

  // 3. run
  {
    py::gil_scoped_release release;
    runtime::run_tasks(tasks);
  }

  // 4. write back scalar params
  for (const KeyPlan& key_plan : plan) {
    if (key_plan.param.from_scalar) {
      PyDict_SetItem(params.ptr(), key_plan.key.ptr(), key_plan.param.array[py::tuple()].ptr());
    }
  }
}

}  // namespace

void register_update(py::module_& m) {
  m.def("update", &update, py::arg("kernel"), py::arg("params"), py::arg("grads"),
        py::arg("states"), py::arg("state_names"), py::arg("scalars"),
        "Apply kernel `kernel` to every key of `params` in place; see fastopt.optimizers.");
}

}  // namespace fastopt::bindings
