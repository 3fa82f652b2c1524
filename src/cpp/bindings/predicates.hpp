// The questions every part of the bindings asks of a Python value, each answered in one place:
// is it a real scalar, which Dtype a NumPy descriptor holds, how many bytes an element takes, and
// can an ndarray be used by the kernels as it is. The array tests read NumPy's structs directly:
// no Python object created, no message built (the fast path of update() and sum_of_squares).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "kernels/table.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

enum class Layout { kC, kF };

// An ndarray as the kernels see it.
struct ArrayView {
  char* data;
  std::int64_t size;
  Dtype dtype;
  Layout layout;
  int ndim;
  const Py_intptr_t* shape;
};

inline const char* dtype_name(Dtype dtype) {
  constexpr const char* kNames[kNumDtypes] = {"float32", "float64", "bfloat16", "float16"};
  return kNames[static_cast<int>(dtype)];
}

// The numpy module, imported once.
const py::object& numpy();

// True when the NumPy descriptor `descr` is float32, float64, float16 or bfloat16 (ml_dtypes's,
// recognised without importing it) in native byte order; sets `*out`.
bool dtype_of(PyObject* descr, Dtype* out);

// A real number that is not an array: Python int or float (not bool), or a NumPy integer or
// floating scalar. Complex and bool are excluded on purpose: they are not gradients.
bool is_real_scalar(PyObject* value);

// Flags an array may be asked to have besides being usable (see usable_view).
inline constexpr int kWriteable = py::detail::npy_api::NPY_ARRAY_WRITEABLE_;

// True when `value` is an ndarray the kernels can use as it is: of a dtype dtype_of knows, aligned,
// C- or Fortran-contiguous, with every flag of `required_flags`; fills `view`.
bool usable_view(PyObject* value, int required_flags, ArrayView* view);

// A param the kernels can update in place: usable and writeable.
inline bool param_view(PyObject* value, ArrayView* view) {
  return usable_view(value, kWriteable, view);
}

// True when `value` can be used as it is next to `param`: an ndarray of the param's shape and
// memory order, aligned, and not overlapping the param. A grad may be of the param's compute type
// or a half format (widened as it is read); a state must be of the compute type, and writeable.
// grad_fits sets `*dtype` to the grad's dtype when it returns true (and may write it when false).
bool grad_fits(PyObject* value, const ArrayView& param, Dtype* dtype);
bool state_fits(PyObject* value, const ArrayView& param, Dtype dtype);

// True when `a_bytes` bytes at `a` and `b_bytes` bytes at `b` share memory (contiguous arrays).
inline bool overlaps(const void* a, std::int64_t a_bytes, const void* b, std::int64_t b_bytes) {
  const auto x = reinterpret_cast<std::uintptr_t>(a);
  const auto y = reinterpret_cast<std::uintptr_t>(b);
  if (a_bytes == 0 || b_bytes == 0) return false;
  return x < y + static_cast<std::uintptr_t>(b_bytes) &&
         y < x + static_cast<std::uintptr_t>(a_bytes);
}

// The bytes an ndarray's elements span, [begin, end): strided, reversed or broadcast alike. Empty
// (begin == end) for an array of size 0 or a value that is not an ndarray.
struct ByteRange {
  std::uintptr_t begin = 0, end = 0;
};
ByteRange byte_range(PyObject* value);

}  // namespace fastopt::bindings
