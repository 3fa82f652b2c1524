#include "bindings/half_state.hpp"

#include <string>
#include <vector>

#include "bindings/predicates.hpp"

namespace fastopt::bindings {
namespace {

// What every extra array of one key is checked against.
struct Extra {
  PyObject* key;
  const ArrayView& param;
  const ParamSpan& span;
  bool had_state;
  Scratch& scratch;
};

// The array `spec.name` of `key` in `dict` when `wanted`, checked or made (pending); nullptr when
// not wanted and absent.
void* extra_state(const Extra& extra, PyObject* dict, bool wanted, const StateSpec& spec) {
  PyObject* key = extra.key;
  const ArrayView& param = extra.param;
  PyObject* found = dict == nullptr ? nullptr : PyDict_GetItemWithError(dict, key);
  if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
  const std::string name = spec.name;
  const std::string attribute =
      "opt." + std::string(spec.from_param ? "master" : "compensation_buffer");
  if (!wanted) {
    if (found == nullptr) return nullptr;
    throw py::value_error(entry("params", key) + " has a " + name + " in " + attribute +
                          " but the optimizer's settings keep none (master_weights, rounding, "
                          "compensation changed since it was made?). Delete " +
                          attribute +
                          "[key] to update the param without it, or restore the settings.");
  }
  if (dict == nullptr) throw py::type_error("the optimizer's state '" + name + "' must be a dict");
  if (found == nullptr && extra.had_state) {
    throw py::value_error(
        entry("params", key) + " is " + dtype_name(param.dtype) + " and its settings keep a " +
        name + ", but it has optimizer state and no " + name + " (a checkpoint saved without it, " +
        "or settings changed after its first update). Load a checkpoint that holds " + attribute +
        ", or delete this key's state to start afresh.");
  }
  std::vector<py::object>& keep = extra.scratch.keep;
  if (found != nullptr && state_fits(found, param, spec.dtype)) {
    keep.push_back(py::reinterpret_borrow<py::object>(found));
  } else {
    bool is_new = false;
    keep.push_back(check_state(key, dict, spec, extra.span, &is_new));
    if (is_new) extra.scratch.pending.push_back({dict, key, keep.back().ptr()});
  }
  return py::detail::array_proxy(keep.back().ptr())->data;
}

}  // namespace

void half_arrays(PyObject* key, const Precision& precision, int first_slot, const ArrayView& param,
                 const ParamSpan& span, bool had_state, Scratch& scratch, Mixed* mixed) {
  const StateSpec master{"master", first_slot, Dtype::kFloat32, 0.0, true};
  const StateSpec compensation{"compensation", first_slot + 1, param.dtype, 0.0, false};
  const Extra extra{key, param, span, had_state, scratch};
  mixed->master = extra_state(extra, precision.masters, precision.master, master);
  mixed->compensation =
      extra_state(extra, precision.compensations, precision.compensation, compensation);
}

void no_half_arrays(PyObject* key, const Precision& precision, Dtype dtype) {
  for (PyObject* dict : {precision.masters, precision.compensations}) {
    if (dict == nullptr || PyDict_GET_SIZE(dict) == 0) continue;
    PyObject* found = PyDict_GetItemWithError(dict, key);
    if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
    if (found == nullptr) continue;
    const std::string name = dict == precision.masters ? "master" : "compensation_buffer";
    throw py::value_error(entry("params", key) + " is " + dtype_name(dtype) + " but opt." + name +
                          " holds an array for it, made when it was a half param. Delete "
                          "opt." +
                          name + "[key] (and the key's state, to start afresh).");
  }
}

}  // namespace fastopt::bindings
