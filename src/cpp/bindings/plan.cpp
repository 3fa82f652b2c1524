// The common case (every array already usable) reads NumPy's structs directly and builds no Python
// object and no string: ~50 ns a key. Anything unusual falls back to the checks in arrays.cpp,
// which convert the input or raise with a message.
#include "bindings/plan.hpp"

#include <array>
#include <cstring>
#include <string>

#include "bindings/aliasing.hpp"
#include "bindings/aligned_dict.hpp"
#include "bindings/arrays.hpp"
#include "bindings/half_state.hpp"
#include "bindings/predicates.hpp"
#include "bindings/random_key.hpp"
#include "bindings/tensors.hpp"
#include "kernels/quant_map.hpp"
#include "runtime/executor.hpp"

namespace fastopt::bindings {
namespace {

[[noreturn]] void missing_grad(PyObject* key) {
  throw py::key_error("grads has no entry for key " + std::string(py::repr(key)) +
                      "; every key of params needs a gradient.");
}

PyObject* lookup_grad(PyObject* grads, AlignedDict* grads_dict, PyObject* key,
                      std::vector<py::object>& keep) {
  if (grads_dict != nullptr) {
    PyObject* found = grads_dict->find(key);  // borrowed: owned from here on
    if (found == nullptr) missing_grad(key);
    keep.push_back(py::reinterpret_borrow<py::object>(found));
    return found;
  }
  PyObject* found = PyObject_GetItem(grads, key);  // a new reference: owned by `keep`
  if (found != nullptr) {
    keep.push_back(py::reinterpret_steal<py::object>(found));
    return found;
  }
  if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_IndexError)) {
    // Not a mapping keyed like params (a list, say): say so, naming the key, instead of
    // Python's "list indices must be integers".
    py::error_already_set error;
    throw py::type_error("grads[" + std::string(py::repr(key)) + "] could not be read (" +
                         std::string(py::str(error.value())) + "): grads must be a mapping, " +
                         "such as a dict, keyed like params; got " +
                         std::string(py::str(py::type::of(grads).attr("__name__"))));
  }
  if (!PyErr_ExceptionMatches(PyExc_KeyError)) throw py::error_already_set();
  PyErr_Clear();
  missing_grad(key);
}

// A grad that is a torch tensor is read through its NumPy view (no copy), from here on exactly as
// an ndarray grad is: its fit, its conversion, its aliasing.
PyObject* grad_array(PyObject* key, PyObject* grad, std::vector<py::object>& keep) {
  if (py::detail::npy_api::get().PyArray_Check_(grad)) return grad;
  py::object view = tensor_view(grad, "grads", key, false);
  if (!view) return grad;
  keep.push_back(std::move(view));
  return keep.back().ptr();
}

// check_grad, with a conversion that overflows (a Python int of 10**400) named by its key.
py::array checked_grad(PyObject* key, PyObject* grad, const ParamSpan& param) {
  try {
    return check_grad(key, grad, param);
  } catch (py::error_already_set& error) {
    if (!error.matches(PyExc_OverflowError)) throw;
    const std::string message = entry("grads", key) + " does not fit in " +
                                dtype_name(compute_of(param.dtype)) + " (" +
                                std::string(py::str(error.value())) + ")";
    PyErr_SetString(PyExc_OverflowError, message.c_str());
    throw py::error_already_set();
  }
}

// For the slow paths, which check and convert against the param.
ParamSpan span_of(PyObject* param_array, const ArrayView& param) {
  return ParamSpan{py::reinterpret_borrow<py::array>(param_array), param.dtype, param.layout,
                   param.size, false};
}

// Plans one key at a time, in params' order.
class Planner {
 public:
  Planner(const PlanRequest& request, Scratch& scratch)
      : request_(request),
        scratch_(scratch),
        row_(request.table->rows[request.kernel]),
        grads_aligned_(request.grads) {
    // Only an exact dict is read through its storage; any other mapping (a dict subclass that
    // overrides __getitem__, say a loss-scaling wrapper) is read through __getitem__, so the step
    // reads the values the norm under max_grad_norm read.
    grads_dict_ = PyDict_CheckExact(request.grads) ? &grads_aligned_ : nullptr;
    for (int s = 0; s < row_.num_states; ++s) state_dicts_[s] = AlignedDict(request.state_dicts[s]);
  }

  void add_key(PyObject* key, PyObject* value);
  const Plan& plan() const { return plan_; }

 private:
  ArrayView param_of(PyObject* key, PyObject* value, PyObject** param_array);
  const KernelRow* use_own_settings(PyObject* key, Dtype compute, runtime::Task* task);
  void* state_of(int slot, PyObject* key, const ArrayView& param, PyObject* param_array,
                 bool* had_state, Mixed* mixed);
  void choose_kernel(PyObject* key, const KernelRow& row, Dtype param_dtype, Dtype grad_dtype,
                     Mixed* mixed, runtime::Task* task);
  void note_source(PyObject* source, PyObject* param_array, Layout layout);

  const PlanRequest& request_;
  Scratch& scratch_;
  const KernelRow& row_;
  AlignedDict grads_aligned_;
  AlignedDict* grads_dict_;
  std::array<AlignedDict, kMaxStates> state_dicts_;
  Plan plan_;
};

void Planner::add_key(PyObject* key, PyObject* value) {
  std::vector<py::object>& keep = scratch_.keep;
  // The key and value are owned by Scratch::items (make_plan); everything obtained below is owned
  // the moment it is obtained: any lookup may run Python code (a key's __eq__, a mapping's
  // __getitem__) that drops the dict's reference to it, and the write-back after the kernels,
  // which ran without the GIL, uses the key again.
  PyObject* grad = grad_array(key, lookup_grad(request_.grads, grads_dict_, key, keep), keep);
  PyObject* param_array = value;
  const ArrayView param = param_of(key, value, &param_array);
  const Dtype compute = compute_of(param.dtype);
  runtime::Task task{row_.fn[static_cast<int>(compute)], request_.scalars, {}, param.size};
  const KernelRow* row = &row_;
  if (request_.per_key != nullptr) row = use_own_settings(key, compute, &task);
  task.ops.grad_scale = request_.grad_scale;
  task.ops.param = param.data;

  PyObject* const source = grad;
  Dtype grad_dtype = compute;
  bool grad_converted = !grad_fits(grad, param, &grad_dtype);
  if (grad_converted) {
    keep.push_back(checked_grad(key, grad, span_of(param_array, param)));  // raises, or converts
    grad = keep.back().ptr();
    grad_dtype = compute;
  }
  task.ops.grad = py::detail::array_proxy(grad)->data;
  bool had_state = false;
  Mixed mixed;
  for (int s = 0; s < row_.num_states; ++s)
    task.ops.state[s] = state_of(s, key, param, param_array, &had_state, &mixed);
  if (is_half(param.dtype)) {
    half_arrays(key, *request_.precision, row_.num_states, param, span_of(param_array, param),
                had_state, scratch_, &mixed);
  } else {
    no_half_arrays(key, *request_.precision, param.dtype);  // two size tests without masters
  }
  if (!grad_converted && grad_shares_a_state(task, mixed, row_, param, grad_dtype)) {
    // The key's own state as its grad (opt.h["w"]): the kernel writes the state while it reads
    // the grad, so the grad is copied first, as one that overlaps the param is: the book's result
    // reads the grad as it was before the key's update, at every thread count and SIMD level.
    keep.push_back(copy_grad(source, span_of(param_array, param)));
    task.ops.grad = py::detail::array_proxy(keep.back().ptr())->data;
    grad_converted = true;
    grad_dtype = compute;
  }
  choose_kernel(key, *row, param.dtype, grad_dtype, &mixed, &task);
  plan_.converted = plan_.converted || grad_converted;
  if (param.size > 0) {
    if (grad_converted) note_source(source, param_array, param.layout);
    scratch_.tasks.push_back(task);
    scratch_.origins.push_back(
        {key, param.dtype, grad_dtype, grad_converted, task.fn == row->bf16_states});
    plan_.total += param.size;
    plan_.work_ns += static_cast<double>(param.size) * runtime::ns_per_element(row_, param.dtype);
  }
}

// The param's view; a param that is not usable as it is goes through check_param, which raises
// or makes a scalar's working array (then *param_array is that array).
ArrayView Planner::param_of(PyObject* key, PyObject* value, PyObject** param_array) {
  ArrayView param;
  if (param_view(value, &param)) return param;
  if (py::object view = tensor_view(value, "params", key, true)) {
    // A torch tensor: updated through its NumPy view, and marked as written after the update.
    scratch_.tensors.push_back(py::reinterpret_borrow<py::object>(value));
    scratch_.keep.push_back(view);
    *param_array = view.ptr();
    if (param_view(*param_array, &param)) return param;
    value = *param_array;  // not usable as it is: check_param says why
  }
  ParamSpan span = check_param(key, value);
  *param_array = span.array.ptr();
  scratch_.keep.push_back(span.array);
  if (span.from_scalar) scratch_.scalar_params.push_back({key, *param_array});
  return view_of(span);
}

// The kernel a task runs: the row's own (native arrays), its bf16_states kernel (float32 param and
// grad, every state bfloat16 rounded to nearest: formats.hpp), or the blocked sweep over the row's
// kernel (half params or grads, int8 or stochastically rounded states: kernels/mixed.hpp).
void Planner::choose_kernel(PyObject* key, const KernelRow& row, Dtype param_dtype,
                            Dtype grad_dtype, Mixed* mixed, runtime::Task* task) {
  const Dtype compute = compute_of(param_dtype);
  bool compact = false, all_bf16 = row.num_states > 0;
  for (int s = 0; s < row.num_states; ++s) {
    compact |= mixed->state_format[s] != StateFormat::kNative;
    all_bf16 &= mixed->state_format[s] == StateFormat::kBFloat16;
  }
  if (mixed->any_int8) check_absmax_overlaps(key, *task, *mixed, row, param_dtype);
  const Precision& precision = *request_.precision;
  if (all_bf16 && param_dtype == Dtype::kFloat32 && grad_dtype == compute &&
      precision.rounding == Rounding::kNearest) {
    task->fn = row.bf16_states;
  } else if (is_half(param_dtype) || grad_dtype != compute || compact) {
    mixed->rule = task->fn;
    mixed->param_dtype = param_dtype;
    mixed->grad_dtype = grad_dtype;
    mixed->size = task->size;
    mixed->rounding = precision.rounding;
    if (precision.rounding == Rounding::kStochastic)
      mixed->random_key = random_key(precision.seed, precision.step, key);
    scratch_.mixed.push_back(*mixed);
    task->fn = request_.table->mixed[static_cast<int>(compute)];
    task->ops.mixed = &scratch_.mixed.back();
  }
}

// Records where a converted grad came from, for the task about to be added (aliasing.hpp).
void Planner::note_source(PyObject* source, PyObject* param_array, Layout layout) {
  const ByteRange bytes = byte_range(source);
  if (bytes.begin == bytes.end) return;  // a scalar: no memory anyone writes
  scratch_.converted_grads.push_back({scratch_.tasks.size(), source, param_array, layout, bytes});
}

// A per-key kernel must be a variant of the same rule keeping the same states: it reads the same
// state arrays and the same number of scalars.
static bool same_rule_and_states(const KernelRow& a, const KernelRow& b) {
  if (std::strcmp(a.name, b.name) != 0 || a.num_states != b.num_states ||
      a.num_scalars != b.num_scalars) {
    return false;
  }
  for (int s = 0; s < a.num_states; ++s) {
    if (std::strcmp(a.state_names[s], b.state_names[s]) != 0) return false;
  }
  return true;
}

// per_key: {key: (kernel index, scalars)} for keys with settings of their own (another variant of
// the same kernel: the same states and scalar count). Their scalars live in Scratch, at stable
// addresses, for the tasks to point at.
const KernelRow* Planner::use_own_settings(PyObject* key, Dtype compute, runtime::Task* task) {
  PyObject* own = PyDict_GetItemWithError(request_.per_key, key);
  if (own == nullptr && PyErr_Occurred()) throw py::error_already_set();
  if (own == nullptr) return &row_;
  if (!PyTuple_Check(own) || PyTuple_GET_SIZE(own) != 2) {
    throw py::type_error("per_key values must be (kernel index, scalars)");
  }
  const KernelTable& table = *request_.table;
  const long index = PyLong_AsLong(PyTuple_GET_ITEM(own, 0));
  if (index == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (index < 0 || index >= table.size || !same_rule_and_states(table.rows[index], row_)) {
    throw py::value_error(
        "per_key: kernel " + std::to_string(index) + " for " + entry("params", key) +
        " is not a variant of the same rule with the same states as kernel '" + row_.name + "'");
  }
  scratch_.per_key_scalars.emplace_back();
  read_scalars(PyTuple_GET_ITEM(own, 1), row_.num_scalars, scratch_.per_key_scalars.back().data());
  task->fn = table.rows[index].fn[static_cast<int>(compute)];
  task->scalars = scratch_.per_key_scalars.back().data();
  return &table.rows[index];
}

// The data of state `slot` for `key`: the existing array when it fits, else one check_state
// returns (raises, converts, or makes a new one, inserted only at commit).
void* Planner::state_of(int slot, PyObject* key, const ArrayView& param, PyObject* param_array,
                        bool* had_state, Mixed* mixed) {
  std::vector<py::object>& keep = scratch_.keep;
  const Precision& precision = *request_.precision;
  const StateKind kind = row_.state_kinds[slot];
  const StateFormat format = format_for(precision.compact, kind, param.size);
  if (format != StateFormat::kNative) {
    const StateSpec spec{request_.state_names[slot].c_str(), slot, compute_of(param.dtype),
                         request_.initial_state, false};
    const bool int8 = format == StateFormat::kInt8;
    if (int8 && precision.absmax[slot] == nullptr) {
      throw py::type_error("the optimizer's state '" + request_.state_names[slot] +
                           "_absmax' must be a dict; assign {} to reset it.");
    }
    const CompactSlot compact{format, kind, request_.state_dicts[slot],
                              int8 ? precision.absmax[slot] : nullptr, spec};
    mixed->state_format[slot] = format;
    if (int8) {
      mixed->quant_map[slot] = &quant_map(kind == StateKind::kSigned);
      mixed->any_int8 = true;
    }
    return compact_state(key, compact, span_of(param_array, param), *request_.table, scratch_,
                         &mixed->absmax[slot], had_state);
  }
  PyObject* state = state_dicts_[slot].find(key);  // borrowed; owned below before any Python runs
  if (state != nullptr && state_fits(state, param, compute_of(param.dtype))) {
    keep.push_back(py::reinterpret_borrow<py::object>(state));
    *had_state = true;
  } else {
    bool is_new = false;
    PyObject* dict = request_.state_dicts[slot];
    const StateSpec spec{request_.state_names[slot].c_str(), slot, compute_of(param.dtype),
                         request_.initial_state, false};
    keep.push_back(check_state(key, dict, spec, span_of(param_array, param), &is_new));
    if (is_new) {
      scratch_.pending.push_back({dict, key, keep.back().ptr()});
    } else {
      *had_state = true;
    }
  }
  return py::detail::array_proxy(keep.back().ptr())->data;
}

}  // namespace

void read_scalars(PyObject* tuple, int expected, double* out) {
  if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != expected) {
    throw py::value_error("internal error: a kernel takes " + std::to_string(expected) +
                          " scalars");
  }
  for (int s = 0; s < expected; ++s) {
    out[s] = PyFloat_AsDouble(PyTuple_GET_ITEM(tuple, s));
    if (out[s] == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  }
}

Plan make_plan(const PlanRequest& request, Scratch& scratch) {
  const Py_ssize_t num_keys = PyDict_Size(request.params);
  const int num_states = request.table->rows[request.kernel].num_states;
  scratch.tasks.reserve(static_cast<std::size_t>(num_keys));
  scratch.keep.reserve(static_cast<std::size_t>(num_keys) * (2 + num_states));
  Planner planner(request, scratch);
  // Every key and value is taken (and owned) before any is planned: planning runs user code (a
  // key's __eq__ during lookups, a mapping's __getitem__) that may change params, and a dict
  // changed while it is walked would have keys skipped or seen twice.
  std::vector<py::object>& items = scratch.items;
  items.clear();
  if (PyDict_CheckExact(request.params)) {
    PyObject* key;
    PyObject* value;
    Py_ssize_t position = 0;
    while (PyDict_Next(request.params, &position, &key, &value)) {
      items.push_back(py::reinterpret_borrow<py::object>(key));
      items.push_back(py::reinterpret_borrow<py::object>(value));
    }
  } else {
    // A dict subclass: its own iteration and __getitem__, as Python code would see it.
    for (py::handle key : py::reinterpret_borrow<py::object>(request.params)) {
      PyObject* value = PyObject_GetItem(request.params, key.ptr());
      if (value == nullptr) throw py::error_already_set();
      items.push_back(py::reinterpret_borrow<py::object>(key));
      items.push_back(py::reinterpret_steal<py::object>(value));
    }
  }
  for (std::size_t i = 0; i < items.size(); i += 2)
    planner.add_key(items[i].ptr(), items[i + 1].ptr());
  for (const runtime::Task& task : scratch.tasks) {
    if (task.ops.mixed != nullptr && task.ops.mixed->master != nullptr) {
      check_tied_masters(scratch);
      break;
    }
  }
  Plan plan = planner.plan();
  plan.kernel = request.kernel;
  return plan;
}

}  // namespace fastopt::bindings
