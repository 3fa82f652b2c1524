#include "bindings/arrays.hpp"

#include <cstring>
#include <vector>

namespace fastopt::bindings {
namespace {

using npy = py::detail::npy_api;

// Native byte order as NumPy spells it in a dtype; '=' and '|' are native too.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
constexpr char kNativeOrder = '>';
#else
constexpr char kNativeOrder = '<';
#endif

bool is_native(const py::dtype& dt) {
  const char order = dt.byteorder();
  return order == '=' || order == '|' || order == kNativeOrder;
}

bool param_dtype(const py::dtype& dt, Dtype* out) {
  if (!is_native(dt)) return false;
  switch (dt.num()) {
    case npy::NPY_FLOAT_:
      *out = Dtype::kFloat32;
      return true;
    case npy::NPY_DOUBLE_:
      *out = Dtype::kFloat64;
      return true;
    default:
      return false;
  }
}

// The same test as param_dtype, on the raw descriptor.
bool raw_dtype(PyObject* descr, Dtype* out) {
  const auto* d = py::detail::array_descriptor_proxy(descr);
  if (d->byteorder == (kNativeOrder == '<' ? '>' : '<')) return false;
  if (d->type_num == npy::NPY_FLOAT_) {
    *out = Dtype::kFloat32;
    return true;
  }
  if (d->type_num == npy::NPY_DOUBLE_) {
    *out = Dtype::kFloat64;
    return true;
  }
  return false;
}

constexpr int kLayoutFlag[] = {npy::NPY_ARRAY_C_CONTIGUOUS_, npy::NPY_ARRAY_F_CONTIGUOUS_};

bool fits(PyObject* value, const ArrayView& param, int required_flags) {
  if (!npy::get().PyArray_Check_(value)) return false;
  const auto* a = py::detail::array_proxy(value);
  Dtype dtype;
  if (!raw_dtype(a->descr, &dtype) || dtype != param.dtype || a->nd != param.ndim) return false;
  const int need =
      required_flags | npy::NPY_ARRAY_ALIGNED_ | kLayoutFlag[static_cast<int>(param.layout)];
  if ((a->flags & need) != need) return false;
  for (int d = 0; d < param.ndim; ++d)
    if (a->dimensions[d] != param.shape[d]) return false;
  if (param.size == 0) return true;
  // Same shape and dtype, both contiguous: each spans exactly size * itemsize bytes.
  const std::int64_t bytes = param.size * (param.dtype == Dtype::kFloat32 ? 4 : 8);
  return a->data + bytes <= param.data || param.data + bytes <= a->data;
}

const char* dtype_name(Dtype dt) { return dt == Dtype::kFloat32 ? "float32" : "float64"; }

std::string type_name(py::handle value) { return py::str(py::type::of(value).attr("__name__")); }

std::string describe(py::handle value) {
  if (py::isinstance<py::array>(value)) {
    return "ndarray of dtype " +
           std::string(py::str(py::reinterpret_borrow<py::array>(value).dtype()));
  }
  return type_name(value);
}

std::string shape_str(const py::array& a) {
  std::string out = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    out += std::to_string(a.shape(d)) + (a.ndim() == 1 ? "," : d + 1 < a.ndim() ? ", " : "");
  return out + ")";
}

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d)) return false;
  return true;
}

bool fits_layout(const py::array& a, Layout layout) {
  const int want =
      layout == Layout::kC ? npy::NPY_ARRAY_C_CONTIGUOUS_ : npy::NPY_ARRAY_F_CONTIGUOUS_;
  const int need = want | npy::NPY_ARRAY_ALIGNED_ | npy::NPY_ARRAY_WRITEABLE_;
  return (a.flags() & need) == need;
}

const py::object& numpy() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> storage;
  return storage.call_once_and_store_result([] { return py::module_::import("numpy"); })
      .get_stored();
}

// A copy of `value` as a contiguous array of the param's dtype and memory order.
py::array converted(py::handle value, const ParamSpan& param) {
  const char* order = param.layout == Layout::kC ? "C" : "F";
  return numpy().attr("array")(value, py::arg("dtype") = dtype_name(param.dtype),
                               py::arg("order") = order, py::arg("copy") = true);
}

// A real number that is not an array: Python int or float (not bool), or a NumPy integer or
// floating scalar. Complex and bool are excluded on purpose: they are not gradients.
bool is_real_scalar(py::handle value) {
  if (PyBool_Check(value.ptr())) return false;
  if (PyFloat_Check(value.ptr()) || PyLong_Check(value.ptr())) return true;
  if (!py::isinstance(value, numpy().attr("generic"))) return false;
  const char kind = py::str(value.attr("dtype").attr("kind")).cast<std::string>()[0];
  return kind == 'f' || kind == 'i' || kind == 'u';
}

const void* data_begin(const py::array& a) { return a.data(); }
const void* data_end(const py::array& a) { return static_cast<const char*>(a.data()) + a.nbytes(); }

bool overlaps(const py::array& a, const py::array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  return data_begin(a) < data_end(b) && data_begin(b) < data_end(a);
}

std::vector<py::ssize_t> contiguous_strides(const py::array& like, Layout layout) {
  const py::ssize_t ndim = like.ndim();
  std::vector<py::ssize_t> strides(static_cast<std::size_t>(ndim));
  py::ssize_t stride = like.itemsize();
  for (py::ssize_t k = 0; k < ndim; ++k) {
    const py::ssize_t d = layout == Layout::kC ? ndim - 1 - k : k;
    strides[static_cast<std::size_t>(d)] = stride;
    stride *= like.shape(d);
  }
  return strides;
}

// State arrays of at least this size are placed at a chosen offset within a 4 KiB page.
constexpr std::int64_t kStaggerBytes = 64 * 1024;
constexpr std::int64_t kPage = 4096;
// Each state k sits (k + 1) * kStaggerStep bytes past its param's offset in a page. Large NumPy
// arrays all start at the same offset in a page (mmap plus malloc's header), so a param and states
// allocated plainly stream through the same cache sets in lockstep and evict each other's
// prefetched lines: Adam on 2^24 float32 ran at 24 ms so, and at 14 ms with its states staggered
// (torch's fused Adam, whose allocator happens to offset its states, at 17 ms). The step is a
// multiple of 64, so the states keep the param's alignment within a cache line, and after the
// loop's alignment peel their vector accesses are as aligned as the param's.
constexpr std::int64_t kStaggerStep = 17 * 64;

py::array zeros_like(const ParamSpan& param, int slot) {
  const py::array& p = param.array;
  const std::vector<py::ssize_t> shape(p.shape(), p.shape() + p.ndim());
  const std::vector<py::ssize_t> strides = contiguous_strides(p, param.layout);
  const std::int64_t nbytes = param.size * p.itemsize();
  if (nbytes < kStaggerBytes) {
    py::array out(p.dtype(), shape, strides);
    std::memset(out.mutable_data(), 0, static_cast<std::size_t>(out.nbytes()));
    return out;
  }
  py::array_t<std::uint8_t> buffer(nbytes + kPage);
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.mutable_data());
  const auto target =
      (reinterpret_cast<std::uintptr_t>(p.data()) + (slot + 1) * kStaggerStep) % kPage;
  std::uint8_t* start = buffer.mutable_data() + (target - base % kPage + kPage) % kPage;
  std::memset(start, 0, static_cast<std::size_t>(nbytes));
  return py::array(p.dtype(), shape, strides, start, buffer);  // a view that keeps `buffer` alive
}

}  // namespace

bool param_view(PyObject* value, ArrayView* view) {
  if (!npy::get().PyArray_Check_(value)) return false;
  const auto* a = py::detail::array_proxy(value);
  if (!raw_dtype(a->descr, &view->dtype)) return false;
  const int flags = a->flags;
  if ((flags & (npy::NPY_ARRAY_WRITEABLE_ | npy::NPY_ARRAY_ALIGNED_)) !=
      (npy::NPY_ARRAY_WRITEABLE_ | npy::NPY_ARRAY_ALIGNED_)) {
    return false;
  }
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

bool grad_fits(PyObject* value, const ArrayView& param) { return fits(value, param, 0); }

bool state_fits(PyObject* value, const ArrayView& param) {
  return fits(value, param, npy::NPY_ARRAY_WRITEABLE_);
}

ArrayView view_of(const ParamSpan& param) {
  ArrayView view;
  const bool ok = param_view(param.array.ptr(), &view);
  (void)ok;  // check_param returned it, so it is a usable param by construction
  return view;
}

std::string entry(const char* dict_name, py::handle key) {
  return std::string(dict_name) + "[" + std::string(py::repr(key)) + "]";
}

ParamSpan check_param(py::handle key, py::handle value) {
  if (!py::isinstance<py::array>(value)) {
    if (is_real_scalar(value)) {
      // A scalar cannot change in place; update a 0-d float64 copy and put the result back as a
      // NumPy float64 scalar, which is what the book's classes leave in the dict.
      py::array work = numpy().attr("array")(value, py::arg("dtype") = "float64");
      return {std::move(work), Dtype::kFloat64, Layout::kC, 1, true};
    }
    throw py::type_error(entry("params", key) +
                         " must be a numpy.ndarray of float32 or float64 (or a real scalar); got " +
                         describe(value));
  }
  auto array = py::reinterpret_borrow<py::array>(value);
  Dtype dtype;
  if (!param_dtype(array.dtype(), &dtype)) {
    throw py::type_error(entry("params", key) +
                         " must have dtype float32 or float64 in native byte order; got " +
                         describe(value) + ". Convert it once, e.g. params[key] = params[key]" +
                         ".astype(np.float64), and use that array in your model.");
  }
  if (!array.writeable()) {
    throw py::value_error(entry("params", key) +
                          " is read-only; fastopt updates params in place, so store a writeable "
                          "array there (for example params[key] = params[key].copy()).");
  }
  const int flags = array.flags();
  Layout layout;
  if (flags & npy::NPY_ARRAY_C_CONTIGUOUS_) {
    layout = Layout::kC;
  } else if (flags & npy::NPY_ARRAY_F_CONTIGUOUS_) {
    layout = Layout::kF;
  } else {
    throw py::value_error(entry("params", key) +
                          " is not contiguous (a strided view?); fastopt updates params in place "
                          "over contiguous memory, so store np.ascontiguousarray(...) of it in "
                          "params and use that same array in your model.");
  }
  if (!(flags & npy::NPY_ARRAY_ALIGNED_)) {
    throw py::value_error(entry("params", key) +
                          " is not aligned to its element size; store an aligned copy there "
                          "(for example params[key] = params[key].copy()).");
  }
  const auto size = static_cast<std::int64_t>(array.size());  // before the move below
  return {std::move(array), dtype, layout, size, false};
}

py::array check_grad(py::handle key, py::handle value, const ParamSpan& param) {
  if (py::isinstance<py::array>(value)) {
    auto grad = py::reinterpret_borrow<py::array>(value);
    const char kind = grad.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u') {
      throw py::type_error(entry("grads", key) + " has dtype " +
                           std::string(py::str(grad.dtype())) +
                           "; a gradient must be real numbers (floating point or integer).");
    }
    if (!same_shape(grad, param.array)) {
      throw py::value_error(entry("grads", key) + " has shape " + shape_str(grad) + " but " +
                            entry("params", key) + " has shape " + shape_str(param.array) +
                            "; they must be equal.");
    }
    Dtype dtype;
    const bool direct =
        param_dtype(grad.dtype(), &dtype) && dtype == param.dtype &&
        (grad.flags() & npy::NPY_ARRAY_ALIGNED_) &&
        (grad.flags() & (param.layout == Layout::kC ? npy::NPY_ARRAY_C_CONTIGUOUS_
                                                    : npy::NPY_ARRAY_F_CONTIGUOUS_));
    // A grad that overlaps its param (even the very same array) is copied first: the kernel reads
    // the grad while it writes the param, and the book's result uses the grad as it was.
    if (direct && !overlaps(grad, param.array)) return grad;
    return converted(grad, param);
  }
  if (is_real_scalar(value)) {
    if (param.array.ndim() != 0) {
      throw py::value_error(entry("grads", key) + " is a scalar but " + entry("params", key) +
                            " has shape " + shape_str(param.array) + "; they must be equal.");
    }
    return converted(value, param);
  }
  throw py::type_error(
      entry("grads", key) +
      " must be a numpy.ndarray or a real number (floating point or integer); got " +
      describe(value));
}

py::array check_state(py::handle key, py::handle states, int slot, const char* name,
                      const ParamSpan& param, double initial, bool* pending) {
  *pending = false;
  PyObject* found = PyDict_GetItemWithError(states.ptr(), key.ptr());
  if (found == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    *pending = true;
    py::array fresh = zeros_like(param, slot);
    if (initial != 0.0) fresh.attr("fill")(initial);
    return fresh;
  }
  if (!py::isinstance<py::array>(found)) {
    throw py::type_error("state '" + std::string(name) + "' of " + entry("params", key) +
                         " must be a numpy.ndarray; got " + describe(found) +
                         ". Delete the entry to start this key's state afresh.");
  }
  auto state = py::reinterpret_borrow<py::array>(found);
  if (!same_shape(state, param.array)) {
    throw py::value_error(entry("params", key) + " has shape " + shape_str(param.array) +
                          " but its state '" + name + "' was created for shape " +
                          shape_str(state) +
                          ": the param changed shape since its first update. Delete this key's "
                          "state (or use a new optimizer) to start it afresh.");
  }
  Dtype dtype;
  if (!param_dtype(state.dtype(), &dtype) || dtype != param.dtype) {
    throw py::value_error(entry("params", key) + " has dtype " + dtype_name(param.dtype) +
                          " but its state '" + name + "' has dtype " +
                          std::string(py::str(state.dtype())) +
                          ": the param changed dtype since its first update. Delete this key's "
                          "state (or use a new optimizer) to start it afresh.");
  }
  if (fits_layout(state, param.layout) && !overlaps(state, param.array)) return state;
  *pending = true;
  return converted(state, param);
}

}  // namespace fastopt::bindings
