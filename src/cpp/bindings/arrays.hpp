// Turns the Python objects of one update() into checked arrays the kernels can use.
//
// Every check here runs before anything is written, and every failure is a Python exception whose
// message names the key and says how to fix the input. The GIL is held throughout.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "kernels/table.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

enum class Layout { kC, kF };

// A param as the kernels see it.
struct ParamSpan {
  py::array array;  // the param itself, or a 0-d float64 working copy of a scalar param
  Dtype dtype;
  Layout layout;
  std::int64_t size;
  bool from_scalar;  // the dict entry is a Python/NumPy scalar, replaced after the update
};

// "params['W1']", with the key's repr.
std::string entry(const char* dict_name, py::handle key);

// ---- Fast path: predicates on NumPy's structs, no Python object created, no message built. ----

// What the kernels need to know of a param, read straight from the ndarray.
struct ArrayView {
  char* data;
  std::int64_t size;
  Dtype dtype;
  Layout layout;
  int ndim;
  const Py_intptr_t* shape;
};

// True when `value` is a param the kernels can update as it is (see check_param); fills `view`.
bool param_view(PyObject* value, ArrayView* view);

// True when `value` can be used as it is next to `param`: an ndarray of the param's dtype, shape
// and memory order, aligned, and not overlapping the param. A state must also be writeable.
bool grad_fits(PyObject* value, const ArrayView& param);
bool state_fits(PyObject* value, const ArrayView& param);

// ---- Slow path: called when a predicate above fails, to convert the input or raise. ----

// Checks params[key]: a writeable, aligned, C- or Fortran-contiguous float32/float64 ndarray in
// native byte order, or a real scalar (which gets a 0-d float64 working array).
ParamSpan check_param(py::handle key, py::handle value);
ArrayView view_of(const ParamSpan& param);

// Checks grads[key] against its param and returns an array the kernel can read alongside the param:
// the grad itself when it already has the param's dtype and layout and does not overlap the param,
// otherwise a converted copy (the documented slow path).
py::array check_grad(py::handle key, py::handle value, const ParamSpan& param);

// Returns the state array `name` (the optimizer's state number `slot`) for `key` from `states` (a
// dict), checked against the param. When the dict has no entry, returns a new array filled with
// `initial` (usually 0) and sets `*pending` so that the caller inserts it once every key has been
// validated. A state whose memory
// layout no longer fits the param (the user replaced the param with one of another memory order) is
// likewise replaced by a copy.
py::array check_state(py::handle key, py::handle states, int slot, const char* name,
                      const ParamSpan& param, double initial, bool* pending);

}  // namespace fastopt::bindings
