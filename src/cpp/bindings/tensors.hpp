// torch tensors in update(): their NumPy views, made by fastopt._tensors (which the norms in
// fastopt.clip use too).
//
// Called only on the slow paths (a value that is not an ndarray), so the common case pays nothing;
// torch itself is never imported by fastopt.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

namespace fastopt::bindings {

namespace py = pybind11;

// The zero-copy NumPy view of `value` when it is a CPU tensor (fastopt._tensors.as_array), or a
// null object when it is not a tensor. Raises, naming dict_name[key], for a tensor fastopt cannot
// use (another device, sparse; as a param: not contiguous, or a non-leaf that requires grad).
py::object tensor_view(py::handle value, const char* dict_name, py::handle key, bool writes);

// Bumps the autograd version counters of the param tensors an update wrote (fastopt._tensors
// .written), as torch's own in-place ops do.
void mark_written(const std::vector<py::object>& tensors);

}  // namespace fastopt::bindings
