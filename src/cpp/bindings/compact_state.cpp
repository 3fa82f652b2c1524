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

[[noreturn]] void does_not_fit(PyObject* key, const CompactSlot& slot, PyObject* found,
                               std::int64_t size) {
  const std::string name = slot.spec.name;
  const std::string expected =
      slot.format == StateFormat::kInt8
          ? "a writeable uint8 array of codes shaped and ordered like the param, with a float32 "
            "array of ceil(size/256) absmaxes in '" +
                name + "_absmax'"
          : "a writeable uint16 array of bfloat16 bits shaped and ordered like the param";
  std::string what = "missing";
  if (found != nullptr) {
    what = std::string(py::str(py::type::of(found).attr("__name__")));
    if (npy::get().PyArray_Check_(found)) {
      what += " of dtype " + std::string(py::str(py::handle(found).attr("dtype"))) + " and shape " +
              std::string(py::str(py::handle(found).attr("shape")));
    }
  }
  throw py::value_error(
      "state '" + name + "' of " + entry("params", key) + " (" + std::to_string(size) +
      " elements) is " + what + ", but state_format='" + format_name(slot.format) +
      "' keeps it as " + expected +
      " (state_format changed after the key's first update, or a checkpoint of another format?). "
      "Load a checkpoint saved with this state_format, or delete the key's state to start "
      "afresh.");
}

[[noreturn]] void bad_absmax(PyObject* key, const CompactSlot& slot, PyObject* found,
                             std::int64_t count) {
  const std::string name = std::string(slot.spec.name) + "_absmax";
  std::string what = "missing";
  if (found != nullptr) what = std::string(py::repr(py::type::of(found).attr("__name__")));
  if (found != nullptr && npy::get().PyArray_Check_(found)) {
    what = "of dtype " + std::string(py::str(py::handle(found).attr("dtype"))) + " and shape " +
           std::string(py::str(py::handle(found).attr("shape")));
  }
  throw py::value_error("the absmaxes of " + entry("params", key) + "'s int8 state '" +
                        slot.spec.name + "' (opt.raw_state['" + name + "']) are " + what +
                        ", but must be a writeable, C-contiguous float32 array of " +
                        std::to_string(count) +
                        " values, one per block of 256, in memory of their own. Delete the "
                        "key's state to start afresh, or load a checkpoint that holds them.");
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

// bfloat16 bits that fit but for their memory order (the param was replaced by one in the other
// order): copied into the param's order and inserted at commit, as a float state is copied then.
void* moved_bits(PyObject* key, const CompactSlot& slot, const ParamSpan& param, PyObject* found,
                 Scratch& scratch) {
  py::object moved = numpy().attr("array")(
      py::handle(found), py::arg("order") = param.layout == Layout::kF ? "F" : "C");
  scratch.keep.push_back(moved);
  scratch.pending.push_back({slot.dict, key, moved.ptr()});
  return py::detail::array_proxy(moved.ptr())->data;
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
  if (found == nullptr) {
    // New (an absmax without codes is what an interrupted commit leaves: replaced). The absmaxes
    // are inserted before the codes, so codes never exist without them (execute.cpp commits in
    // order, and a signal can stop it half way).
    py::object absmax_array;
    py::object codes = fresh_state(slot, param, table, &absmax_array);
    if (int8) {
      keep.push_back(absmax_array);
      scratch.pending.push_back({slot.absmax_dict, key, absmax_array.ptr()});
      *absmax = reinterpret_cast<float*>(py::detail::array_proxy(absmax_array.ptr())->data);
    }
    keep.push_back(codes);
    scratch.pending.push_back({slot.dict, key, codes.ptr()});
    return py::detail::array_proxy(codes.ptr())->data;
  }
  const int type = int8 ? kNpyUByte : kNpyUShort;
  const int layout = kLayoutFlag[static_cast<int>(param.layout)];
  const int other = kLayoutFlag[1 - static_cast<int>(param.layout)];
  const std::int64_t param_bytes = param.size * bytes_of(param.dtype);
  void* data = nullptr;
  if (raw_fits(found, type, p->nd, p->dimensions, layout)) {
    data = py::detail::array_proxy(found)->data;
    keep.push_back(py::reinterpret_borrow<py::object>(found));
  } else if (!int8 && raw_fits(found, type, p->nd, p->dimensions, other)) {
    data = moved_bits(key, slot, param, found, scratch);
  } else if (int8 && raw_fits(found, type, p->nd, p->dimensions, other)) {
    // int8 blocks are 256 elements in memory order, so codes in the other order cannot be read
    // with their absmaxes, and whether the param or the codes changed order is not knowable.
    throw py::value_error(entry("params", key) + " is " +
                          (param.layout == Layout::kF ? "Fortran" : "C") +
                          "-ordered but its int8 state '" + slot.spec.name +
                          "' was stored in the other memory order: int8 blocks follow memory "
                          "order, so the state cannot follow the param. Give the param its old "
                          "order, or delete the key's state to start afresh.");
  } else {
    does_not_fit(key, slot, found, param.size);
  }
  if (overlaps(data, state_bytes(slot.format, param.dtype, param.size), p->data, param_bytes)) {
    throw py::value_error("state '" + std::string(slot.spec.name) + "' of " + entry("params", key) +
                          " shares memory with the param; each state needs memory of its own.");
  }
  if (int8) {
    const Py_intptr_t count = absmax_count(param.size);
    if (scales == nullptr ||
        !raw_fits(scales, npy::NPY_FLOAT_, 1, &count, npy::NPY_ARRAY_C_CONTIGUOUS_)) {
      bad_absmax(key, slot, scales, count);
    }
    const void* scale_data = py::detail::array_proxy(scales)->data;
    if (overlaps(scale_data, 4 * count, p->data, param_bytes) ||
        overlaps(scale_data, 4 * count, data, param.size)) {
      throw py::value_error("the absmaxes of " + entry("params", key) + "'s int8 state '" +
                            slot.spec.name +
                            "' share memory with the param or the codes; each needs memory of "
                            "its own.");
    }
    keep.push_back(py::reinterpret_borrow<py::object>(scales));
    *absmax = reinterpret_cast<float*>(py::detail::array_proxy(scales)->data);
  }
  *had_state = true;
  return data;
}

void check_absmax_overlaps(PyObject* key, const runtime::Task& task, const Mixed& mixed,
                           const KernelRow& row, Dtype param_dtype) {
  const std::int64_t size = task.size;
  for (int s = 0; s < row.num_states; ++s) {
    if (mixed.state_format[s] != StateFormat::kInt8) continue;
    const std::int64_t bytes = 4 * absmax_count(size);
    bool shared =
        mixed.master != nullptr && overlaps(mixed.absmax[s], bytes, mixed.master, 4 * size);
    shared = shared ||
             (mixed.compensation != nullptr &&
              overlaps(mixed.absmax[s], bytes, mixed.compensation, size * bytes_of(param_dtype)));
    for (int t = 0; t < row.num_states; ++t) {
      if (t == s) continue;
      shared = shared || overlaps(mixed.absmax[s], bytes, task.ops.state[t],
                                  state_bytes(mixed.state_format[t], param_dtype, size));
      shared =
          shared || (mixed.state_format[t] == StateFormat::kInt8 &&
                     overlaps(mixed.absmax[s], bytes, mixed.absmax[t], 4 * absmax_count(size)));
    }
    if (shared) {
      throw py::value_error("the absmaxes of " + entry("params", key) + "'s int8 state '" +
                            row.state_names[s] +
                            "' share memory with another of its arrays; each needs memory of "
                            "its own.");
    }
  }
}

}  // namespace fastopt::bindings
