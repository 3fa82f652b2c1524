#include "bindings/compact_state.hpp"

#include <cstring>
#include <string>
#include <vector>

#include "kernels/quant_map.hpp"

namespace fastopt::bindings {
namespace {

using npy = py::detail::npy_api;

constexpr int kLayoutFlag[] = {npy::NPY_ARRAY_C_CONTIGUOUS_, npy::NPY_ARRAY_F_CONTIGUOUS_};
constexpr int kNpyUByte = 2, kNpyUShort = 4;  // NumPy's type numbers, fixed by its C API

const char* format_name(StateFormat format) {
  return format == StateFormat::kInt8 ? "int8" : "bfloat16";
}

// `value` is an ndarray of NumPy type `type_num` in native order, shaped like `shape` (ndim dims),
// with the flags in `need` (plus aligned).
bool raw_fits(PyObject* value, int type_num, int ndim, const Py_intptr_t* shape, int need) {
  if (!npy::get().PyArray_Check_(value)) return false;
  const auto* a = py::detail::array_proxy(value);
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  if (d->type_num != type_num || d->byteorder == '>' || a->nd != ndim) return false;
  need |= npy::NPY_ARRAY_ALIGNED_ | kWriteable;
  if ((a->flags & need) != need) return false;
  for (int k = 0; k < ndim; ++k)
    if (a->dimensions[k] != shape[k]) return false;
  return true;
}

PyObject* lookup(PyObject* dict, PyObject* key) {
  PyObject* found = PyDict_GetItemWithError(dict, key);
  if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return found;
}

[[noreturn]] void does_not_fit(PyObject* key, const CompactSlot& slot, const std::string& what,
                               PyObject* found) {
  const std::string name = slot.spec.name;
  const std::string expected =
      slot.format == StateFormat::kInt8
          ? "a writeable uint8 array of codes shaped and ordered like the param, with a float32 "
            "array of ceil(size/256) absmaxes in '" +
                name + "_absmax'"
          : "a writeable uint16 array of bfloat16 bits shaped and ordered like the param";
  throw py::value_error(
      "state '" + what + "' of " + entry("params", key) + " is " +
      std::string(py::str(py::repr(py::handle(found).attr("__class__")))) +
      (npy::get().PyArray_Check_(found)
           ? " of dtype " + std::string(py::str(py::handle(found).attr("dtype"))) + " and shape " +
                 std::string(py::str(py::handle(found).attr("shape")))
           : std::string()) +
      ", but state_format='" + format_name(slot.format) + "' keeps it as " + expected +
      " (state_format changed after the key's first update, or a checkpoint of another format?). "
      "Load a checkpoint saved with this state_format, or delete the key's state to start "
      "afresh.");
}

// A new compact state holding `initial` everywhere, and its absmaxes (int8).
py::array fresh_state(const CompactSlot& slot, const ParamSpan& param, const KernelTable& table,
                      py::object* absmax_array) {
  const float initial = static_cast<float>(slot.spec.initial);
  if (slot.format == StateFormat::kBFloat16) {
    py::array out = zeros_like(param, slot.spec.slot, py::dtype("uint16"));
    std::uint16_t bits = 0;
    table.round[0](&initial, &bits, 1, Rounding::kNearest, 0, 0);
    auto* data = static_cast<std::uint16_t*>(out.mutable_data());
    for (std::int64_t i = 0; i < param.size; ++i) data[i] = bits;
    return out;
  }
  py::array out = zeros_like(param, slot.spec.slot, py::dtype("uint8"));
  std::uint8_t code = 0;
  float absmax = 0.0f;
  table.quantize(&initial, &code, &absmax, 1, quant_map(slot.kind == StateKind::kSigned));
  std::memset(out.mutable_data(), code, static_cast<std::size_t>(param.size));
  py::array_t<float> scales(absmax_count(param.size));
  float* s = scales.mutable_data();
  for (std::int64_t b = 0; b < absmax_count(param.size); ++b) s[b] = absmax;
  *absmax_array = scales;
  return out;
}

// A state that fits but for its memory order (the param was replaced by one in the other order):
// moved to the param's order (fastopt._compact.relayout), and inserted at commit, as a float state
// is copied then.
void* moved_state(PyObject* key, const CompactSlot& slot, const ParamSpan& param, PyObject* found,
                  PyObject* scales, Scratch& scratch, float** absmax, bool* had_state) {
  const py::tuple moved =
      py::module_::import("fastopt._compact")
          .attr("relayout")(py::handle(found), scales == nullptr ? py::none() : py::handle(scales),
                            slot.kind == StateKind::kSigned, param.layout == Layout::kF);
  std::vector<py::object>& keep = scratch.keep;
  keep.push_back(moved[0]);
  scratch.pending.push_back({slot.dict, key, keep.back().ptr()});
  void* data = py::detail::array_proxy(keep.back().ptr())->data;
  if (scales != nullptr) {
    keep.push_back(moved[1]);
    scratch.pending.push_back({slot.absmax_dict, key, keep.back().ptr()});
    *absmax = reinterpret_cast<float*>(py::detail::array_proxy(keep.back().ptr())->data);
  }
  *had_state = true;
  return data;
}

}  // namespace

StateFormat format_for(const CompactOptions& options, StateKind kind, std::int64_t size) {
  if (options.format != StateFormat::kInt8) return options.format;
  if (kind == StateKind::kRunningMax || size < options.min_size) return StateFormat::kNative;
  return StateFormat::kInt8;
}

std::int64_t state_bytes(StateFormat format, Dtype param_dtype, std::int64_t size) {
  switch (format) {
    case StateFormat::kInt8:
      return size;
    case StateFormat::kBFloat16:
      return 2 * size;
    default:
      return size * bytes_of(compute_of(param_dtype));
  }
}

void* compact_state(PyObject* key, const CompactSlot& slot, const ParamSpan& param,
                    const KernelTable& table, Scratch& scratch, float** absmax, bool* had_state) {
  const bool int8 = slot.format == StateFormat::kInt8;
  const auto* p = py::detail::array_proxy(param.array.ptr());
  PyObject* found = lookup(slot.dict, key);
  PyObject* scales = int8 ? lookup(slot.absmax_dict, key) : nullptr;
  std::vector<py::object>& keep = scratch.keep;
  if (found == nullptr && scales == nullptr) {
    py::object absmax_array;
    keep.push_back(fresh_state(slot, param, table, &absmax_array));
    scratch.pending.push_back({slot.dict, key, keep.back().ptr()});
    if (int8) {
      keep.push_back(absmax_array);
      scratch.pending.push_back({slot.absmax_dict, key, absmax_array.ptr()});
      *absmax = reinterpret_cast<float*>(py::detail::array_proxy(absmax_array.ptr())->data);
      return py::detail::array_proxy(keep[keep.size() - 2].ptr())->data;
    }
    return py::detail::array_proxy(keep.back().ptr())->data;
  }
  const std::string name = slot.spec.name;
  if (found == nullptr) does_not_fit(key, slot, name, Py_None);
  const int layout = kLayoutFlag[static_cast<int>(param.layout)];
  const int type = int8 ? kNpyUByte : kNpyUShort;
  const int other = kLayoutFlag[1 - static_cast<int>(param.layout)];
  if (!raw_fits(found, type, p->nd, p->dimensions, layout)) {
    const Py_intptr_t count = absmax_count(param.size);
    if (!raw_fits(found, type, p->nd, p->dimensions, other) ||
        (int8 && (scales == nullptr || !raw_fits(scales, npy::NPY_FLOAT_, 1, &count, 0))))
      does_not_fit(key, slot, name, found == nullptr ? Py_None : found);
    return moved_state(key, slot, param, found, scales, scratch, absmax, had_state);
  }
  void* data = py::detail::array_proxy(found)->data;
  if (overlaps(data, state_bytes(slot.format, param.dtype, param.size), p->data,
               param.size * bytes_of(param.dtype))) {
    throw py::value_error("state '" + name + "' of " + entry("params", key) +
                          " shares memory with the param; each state needs memory of its own.");
  }
  keep.push_back(py::reinterpret_borrow<py::object>(found));
  if (int8) {
    const Py_intptr_t count = absmax_count(param.size);
    if (scales == nullptr || !raw_fits(scales, npy::NPY_FLOAT_, 1, &count, 0))
      does_not_fit(key, slot, name + "_absmax", scales == nullptr ? Py_None : scales);
    keep.push_back(py::reinterpret_borrow<py::object>(scales));
    *absmax = reinterpret_cast<float*>(py::detail::array_proxy(scales)->data);
  }
  *had_state = true;
  return data;
}

}  // namespace fastopt::bindings
