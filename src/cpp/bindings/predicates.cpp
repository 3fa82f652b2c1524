#include "bindings/predicates.hpp"

#include <cstring>
#include <string>

namespace fastopt::bindings {
namespace {

using npy = py::detail::npy_api;

// Native byte order as NumPy spells it in a dtype; '=' and '|' are native too.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
constexpr char kForeignOrder = '<';
#else
constexpr char kForeignOrder = '>';
#endif

constexpr int kLayoutFlag[] = {npy::NPY_ARRAY_C_CONTIGUOUS_, npy::NPY_ARRAY_F_CONTIGUOUS_};

// Whether `value` can be read (a grad: `state` false) or read and written (a state) as it is,
// beside `param`: of dtype `wanted` (a grad may also be a half format: the blocked sweep widens
// it), the param's shape and memory order, aligned, and not overlapping the param.
bool fits(PyObject* value, const ArrayView& param, bool state, Dtype wanted, Dtype* found) {
  if (!npy::get().PyArray_Check_(value)) return false;
  const auto* a = py::detail::array_proxy(value);
  Dtype& dtype = *found;
  if (!dtype_of(a->descr, &dtype) || a->nd != param.ndim) return false;
  if (dtype != wanted && (state || !is_half(dtype))) return false;
  const int need = (state ? kWriteable : 0) | npy::NPY_ARRAY_ALIGNED_ |
                   kLayoutFlag[static_cast<int>(param.layout)];
  if ((a->flags & need) != need) return false;
  for (int d = 0; d < param.ndim; ++d)
    if (a->dimensions[d] != param.shape[d]) return false;
  return !overlaps(a->data, param.size * bytes_of(dtype), param.data,
                   param.size * bytes_of(param.dtype));
}

// The scalar type of ml_dtypes.bfloat16 once seen (its dtype number depends on import order, so
// it is recognised by its kind, character and name, and then by this pointer). Read and written
// with the GIL held.
PyObject* g_bfloat16_type = nullptr;

bool is_bfloat16(const py::detail::PyArrayDescr_Proxy* d) {
  if (d->typeobj == g_bfloat16_type) return true;
  if (g_bfloat16_type != nullptr || d->kind != 'V' || d->type != 'E') return false;
  const char* name = reinterpret_cast<PyTypeObject*>(d->typeobj)->tp_name;
  if (std::strcmp(name, "ml_dtypes.bfloat16") != 0 && std::strcmp(name, "bfloat16") != 0)
    return false;
  g_bfloat16_type = d->typeobj;
  return true;
}

// NumPy's type number of float16 (NPY_HALF), fixed by NumPy's C API.
constexpr int kNpyHalf = 23;

}  // namespace

const py::object& numpy() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
  return storage.call_once_and_store_result([] { return py::module_::import("numpy"); })
      .get_stored();
}

bool dtype_of(PyObject* descr, Dtype* out) {
  const auto* d = py::detail::array_descriptor_proxy(descr);
  if (d->byteorder == kForeignOrder) return false;
  if (d->type_num == npy::NPY_FLOAT_) {
    *out = Dtype::kFloat32;
    return true;
  }
  if (d->type_num == npy::NPY_DOUBLE_) {
    *out = Dtype::kFloat64;
    return true;
  }
  if (d->type_num == kNpyHalf) {
    *out = Dtype::kFloat16;
    return true;
  }
  if (is_bfloat16(d)) {
    *out = Dtype::kBFloat16;
    return true;
  }
  return false;
}

bool is_real_scalar(PyObject* value) {
  if (PyBool_Check(value)) return false;
  if (PyFloat_Check(value) || PyLong_Check(value)) return true;
  const py::handle handle(value);
  if (!py::isinstance(handle, numpy().attr("generic"))) return false;
  const py::object dtype = handle.attr("dtype");
  const char kind = py::str(dtype.attr("kind")).cast<std::string>()[0];
  Dtype half;
  return kind == 'f' || kind == 'i' || kind == 'u' || dtype_of(dtype.ptr(), &half);
}

bool usable_view(PyObject* value, int required_flags, ArrayView* view) {
  if (!npy::get().PyArray_Check_(value)) return false;
  const auto* a = py::detail::array_proxy(value);
  if (!dtype_of(a->descr, &view->dtype)) return false;
  const int flags = a->flags;
  const int need = required_flags | npy::NPY_ARRAY_ALIGNED_;
  if ((flags & need) != need) return false;
  if (flags & npy::NPY_ARRAY_C_CONTIGUOUS_) {
    view->layout = Layout::kC;
  } else if (flags & npy::NPY_ARRAY_F_CONTIGUOUS_) {
    view->layout = Layout::kF;
  } else {
    return false;
  }
  std::int64_t size = 1;
  for (int d = 0; d < a->nd; ++d) size *= a->dimensions[d];
  view->data = a->data;
  view->size = size;
  view->ndim = a->nd;
  view->shape = a->dimensions;
  return true;
}

bool grad_fits(PyObject* value, const ArrayView& param, Dtype* dtype) {
  return fits(value, param, false, compute_of(param.dtype), dtype);
}

ByteRange byte_range(PyObject* value) {
  if (!npy::get().PyArray_Check_(value)) return {};
  const auto* a = py::detail::array_proxy(value);
  // dtype::itemsize reads the descriptor of NumPy 1 and 2 alike (their structs differ).
  std::intptr_t low = 0, high = py::reinterpret_borrow<py::dtype>(a->descr).itemsize();
  for (int d = 0; d < a->nd; ++d) {
    if (a->dimensions[d] == 0) return {};
    const std::intptr_t reach = a->strides[d] * (a->dimensions[d] - 1);
    (reach < 0 ? low : high) += reach;
  }
  const auto data = reinterpret_cast<std::uintptr_t>(a->data);
  return {data + static_cast<std::uintptr_t>(low), data + static_cast<std::uintptr_t>(high)};
}

bool state_fits(PyObject* value, const ArrayView& param, Dtype dtype) {
  Dtype found;
  return fits(value, param, true, dtype, &found);
}

}  // namespace fastopt::bindings
