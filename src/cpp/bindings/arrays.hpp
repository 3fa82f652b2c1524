// Turns the Python objects of one update() into checked arrays the kernels can use.
//
// Every check here runs before anything is written, and every failure is a Python exception whose
// message names the key and says how to fix the input. The GIL is held throughout.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings/predicates.hpp"
#include "kernels/table.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

// A param as the kernels see it.
struct ParamSpan {
  py::array array;  // the param itself, or a 0-d float64 working copy of a scalar param
  Dtype dtype;
  Layout layout;
  std::int64_t size;
  bool from_scalar;  // the dict entry is a Python/NumPy scalar, replaced after the update
};

// A zero array of the param's shape and memory order, of `dtype`, placed at state `slot`'s offset
// within a page when it is large (arrays.cpp: kStaggerStep).
py::array zeros_like(const ParamSpan& param, int slot, py::dtype dtype);

// "params['W1']", with the key's repr.
std::string entry(const char* dict_name, py::handle key);

// ---- Called when a predicate of predicates.hpp fails, to convert the input or raise. ----

// Checks params[key]: a writeable, aligned, C- or Fortran-contiguous float32/float64 ndarray in
// native byte order, or a real scalar (which gets a 0-d float64 working array).
ParamSpan check_param(py::handle key, py::handle value);
ArrayView view_of(const ParamSpan& param);

// Checks grads[key] against its param and returns an array the kernel can read alongside the param:
// the grad itself when it already has the param's dtype and layout and does not overlap the param,
// otherwise a converted copy (the documented slow path).
py::array check_grad(py::handle key, py::handle value, const ParamSpan& param);

// A copy of a grad that check_grad accepted, in the param's dtype and memory order: for a grad
// that shares memory with one of its key's states, and for a conversion deferred to the key's turn
// (aliasing.hpp). Raises nothing but MemoryError: check_grad has checked `value` already.
py::array copy_grad(py::handle value, const ParamSpan& param);

// What a state array of one key must be: the rule's state number `slot`, or an array the mixed
// precision keeps beside the rule's (the fp32 master copy of a half param, which starts as the
// param's values; its Kahan compensation, stored like the param).
struct StateSpec {
  const char* name;  // for messages
  int slot;          // where in a 4 KiB page a new one starts (arrays.cpp, kStaggerStep)
  Dtype dtype;       // the param's compute type, or its own for a compensation
  double initial;    // what a new one is filled with...
  bool from_param;   // ...unless it starts as a copy of the param
};

// Returns the state array `spec.name` for `key` from `states` (a dict), checked against the param.
// When the dict has no entry, returns a new array (see StateSpec) and sets `*pending` so that the
// caller inserts it once every key has been validated. A state whose memory layout no longer fits
// the param (the user replaced the param with one of another memory order) is likewise replaced
// by a copy.
py::array check_state(py::handle key, py::handle states, const StateSpec& spec,
                      const ParamSpan& param, bool* pending);

}  // namespace fastopt::bindings
