// Stochastic rounding's key for one array at one step (kernels/half.hpp draws an element's bits
// from it and the element's index).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

namespace fastopt::bindings {

// A hash of (seed, step, the key's repr). The repr, not Python's hash(), which is salted per
// process for str: the same key draws the same bits in every run. Runs the key's __repr__.
std::uint32_t random_key(std::uint64_t seed, std::uint64_t step, PyObject* key);

}  // namespace fastopt::bindings
