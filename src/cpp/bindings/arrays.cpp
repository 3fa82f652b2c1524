#include "bindings/arrays.hpp"

#include <cstring>
#include <vector>

namespace fastopt::bindings {
namespace {

using npy = py::detail::npy_api;

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

// A copy of `value` as a contiguous array of `dtype` (the param's compute type unless given) in the
// param's memory order.
py::array converted(py::handle value, const ParamSpan& param, py::object dtype = py::none()) {
  const char* order = param.layout == Layout::kC ? "C" : "F";
  if (dtype.is_none()) dtype = py::str(dtype_name(compute_of(param.dtype)));
  return numpy().attr("array")(value, py::arg("dtype") = dtype, py::arg("order") = order,
                               py::arg("copy") = true);
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

}  // namespace

py::array zeros_like(const ParamSpan& param, int slot, py::dtype dtype) {
  const py::array& p = param.array;
  const std::vector<py::ssize_t> shape(p.shape(), p.shape() + p.ndim());
  std::vector<py::ssize_t> strides = contiguous_strides(p, param.layout);
  for (py::ssize_t& stride : strides) stride = stride / p.itemsize() * dtype.itemsize();
  const std::int64_t nbytes = param.size * dtype.itemsize();
  if (nbytes < kStaggerBytes) {
    py::array out(dtype, shape, strides);
    std::memset(out.mutable_data(), 0, static_cast<std::size_t>(out.nbytes()));
    return out;
  }
  py::array_t<std::uint8_t> buffer(nbytes + kPage);
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.mutable_data());
  auto target = (reinterpret_cast<std::uintptr_t>(p.data()) + (slot + 1) * kStaggerStep) % kPage;
  // A half param may be aligned to 2 bytes only: its float32 states must still be aligned to 4.
  target -= target % static_cast<std::uintptr_t>(dtype.itemsize());
  std::uint8_t* start = buffer.mutable_data() + (target - base % kPage + kPage) % kPage;
  std::memset(start, 0, static_cast<std::size_t>(nbytes));
  return py::array(dtype, shape, strides, start, buffer);  // a view that keeps `buffer` alive
}

namespace {

py::dtype compute_dtype(const ParamSpan& param) {
  return py::dtype(std::string(dtype_name(compute_of(param.dtype))));
}

}  // namespace

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
    if (is_real_scalar(value.ptr())) {
      // A scalar cannot change in place; update a 0-d float64 copy and put the result back as a
      // NumPy float64 scalar, which is what the book's classes leave in the dict.
      py::array work = numpy().attr("array")(value, py::arg("dtype") = "float64");
      return {std::move(work), Dtype::kFloat64, Layout::kC, 1, true};
    }
    throw py::type_error(entry("params", key) +
                         " must be a numpy.ndarray of float32, float64, float16 or bfloat16 (or a "
                         "real scalar); got " +
                         describe(value));
  }
  auto array = py::reinterpret_borrow<py::array>(value);
  Dtype dtype;
  if (!dtype_of(array.dtype().ptr(), &dtype)) {
    throw py::type_error(entry("params", key) +
                         " must have dtype float32, float64, float16 or bfloat16 (ml_dtypes) in "
                         "native byte order; got " +
                         describe(value) + ". Convert it once, e.g. params[key] = params[key]" +
                         ".astype(np.float32), and use that array in your model.");
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
    Dtype known;
    if (kind != 'f' && kind != 'i' && kind != 'u' && !dtype_of(grad.dtype().ptr(), &known)) {
      throw py::type_error(entry("grads", key) + " has dtype " +
                           std::string(py::str(grad.dtype())) +
                           "; a gradient must be real numbers (floating point or integer).");
    }
    if (!same_shape(grad, param.array)) {
      throw py::value_error(entry("grads", key) + " has shape " + shape_str(grad) + " but " +
                            entry("params", key) + " has shape " + shape_str(param.array) +
                            "; they must be equal.");
    }
    // A grad that overlaps its param (even the very same array) is copied first: the kernel reads
    // the grad while it writes the param, and the book's result uses the grad as it was.
    Dtype dtype;
    if (grad_fits(value.ptr(), view_of(param), &dtype)) return grad;
    return converted(grad, param);
  }
  if (is_real_scalar(value.ptr())) {
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

py::array copy_grad(py::handle value, const ParamSpan& param) { return converted(value, param); }

py::array check_state(py::handle key, py::handle states, const StateSpec& spec,
                      const ParamSpan& param, bool* pending) {
  *pending = false;
  // The state's dtype as NumPy knows it: the param's own for a half one (its compensation).
  const py::dtype dtype = spec.dtype == param.dtype
                              ? py::reinterpret_borrow<py::dtype>(param.array.dtype())
                              : py::dtype(std::string(dtype_name(spec.dtype)));
  PyObject* found = PyDict_GetItemWithError(states.ptr(), key.ptr());
  if (found == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    *pending = true;
    py::array fresh = zeros_like(param, spec.slot, dtype);
    if (spec.from_param) {
      numpy().attr("copyto")(fresh, param.array);  // widening: exact
    } else if (spec.initial != 0.0) {
      fresh.attr("fill")(spec.initial);
    }
    return fresh;
  }
  const std::string name = spec.name;
  if (!py::isinstance<py::array>(found)) {
    throw py::type_error("state '" + name + "' of " + entry("params", key) +
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
  Dtype found_dtype;
  if (!dtype_of(state.dtype().ptr(), &found_dtype) || found_dtype != spec.dtype) {
    throw py::value_error(entry("params", key) + " has dtype " + dtype_name(param.dtype) +
                          " but its state '" + name + "' has dtype " +
                          std::string(py::str(state.dtype())) + " (not " + dtype_name(spec.dtype) +
                          "): the param changed dtype since its first update. Delete this key's "
                          "state (or use a new optimizer) to start it afresh.");
  }
  if (state_fits(found, view_of(param), spec.dtype)) return state;
  *pending = true;
  return converted(state, param, dtype);
}

}  // namespace fastopt::bindings
