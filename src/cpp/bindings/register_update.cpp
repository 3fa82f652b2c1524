// update(): one call into C++ per optimizer step, for every key of the params dict together.
//
// Phases, in this order, so that bad input changes nothing:
//   1. validate: walk the keys once with the GIL held; check every param, grad and state; convert
//      grads that need it; make (but do not insert) missing state arrays. Any error raises here.
//   1b. with nonfinite="skip" or "raise": check every grad (as converted) for inf and nan in one
//      read-only pass, unless the caller already knows them finite (their norm, taken for
//      clipping, was finite). A non-finite grad raises FloatingPointError ("raise") or returns
//      False ("skip"), here, before anything is committed.
//   2. commit: insert the new state arrays into the optimizer's state dicts.
//   3. run: with the GIL released (when the work is large enough to be worth it), run the kernels
//      on the thread pool. No Python object is touched in this phase; `keep` holds a reference to
//      every array involved, so another Python thread replacing a dict entry cannot free one.
//   4. write back the params that were scalars, as NumPy float64 scalars.
//
// The common case (every array already usable) reads NumPy's structs directly and builds no Python
// object and no string: ~50 ns a key. Anything unusual falls back to the checks in arrays.cpp,
// which convert the input or raise with a message.
//
// GIL rules: every PyObject is touched with the GIL held, in phases 1, 2 and 4. Phase 3 sees only
// raw pointers (runtime::Task) into arrays kept alive by `keep`, which is destroyed, with the GIL
// held, when update() returns or throws.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <deque>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/active_level.hpp"
#include "bindings/arrays.hpp"
#include "bindings/without_gil.hpp"
#include "runtime/executor.hpp"
#include "runtime/thread_pool.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

// Below this much work (ns) the kernels take less time than releasing and re-taking the GIL,
// and other Python threads lose nothing by waiting.
constexpr double kReleaseGilAboveNs = 5e3;

struct PendingState {
  PyObject* dict;
  PyObject* key;
  PyObject* value;  // owned by `keep`
};

struct ScalarParam {
  PyObject* key;
  PyObject* work;  // the 0-d float64 array updated in its place; owned by `keep`
};

// The per-call vectors, kept between calls so that an update allocates nothing in the common case
// (two allocations were ~5% of a 22-array update). One per thread; a re-entrant call (Python code
// run during validation, e.g. a user's __eq__, calling update() again) gets fresh vectors instead.
// Where a task came from: the key to name in an error, and the dtype of its arrays.
struct TaskOrigin {
  PyObject* key;  // owned by `keep`
  Dtype dtype;
  bool converted;  // its grad was converted or copied here: not what the caller passed
};

struct Scratch {
  std::vector<runtime::Task> tasks;
  std::vector<TaskOrigin> origins;  // one per task
  std::vector<py::object> keep;
  std::vector<runtime::Task> checks;  // the non-finite check's tasks, one per task
  std::vector<unsigned char> found;   // their results
  bool in_use = false;

  class Lease {
   public:
    Lease() : scratch_(&local()), owned_(scratch_->in_use) {
      if (owned_) {
        scratch_ = new Scratch();
      }
      scratch_->in_use = true;
    }
    ~Lease() {
      scratch_->tasks.clear();
      scratch_->origins.clear();
      scratch_->checks.clear();
      scratch_->keep.clear();  // drops the references, with the GIL held (update() holds it here)
      scratch_->in_use = false;
      if (owned_) delete scratch_;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Scratch* operator->() const { return scratch_; }

   private:
    Scratch* scratch_;
    bool owned_;
  };

 private:
  static Scratch& local() {
    // Destroyed at thread exit; its vectors are always empty between calls, so that touches no
    // Python object (and so is safe even after the interpreter has finalized).
    thread_local Scratch scratch;
    return scratch;
  }
};

// Finds params' keys in another dict (grads, a state dict) by walking it alongside params.
// Those dicts almost always hold the same keys in the same order (states are inserted in params'
// order; networks build grads in it), so the entry at the same position usually has the key: a
// pointer or string compare instead of a hash lookup (~60 instead of ~145 instructions; a third of
// the cost of a 22-array update was lookups). At the first mismatch it falls back to real lookups
// for the rest of the call. Either way the value found is dict[key], since keys are unique.
class AlignedDict {
 public:
  explicit AlignedDict(PyObject* dict) : dict_(dict) {}

  // dict[key], or nullptr (with no Python error set) when absent; raises on a lookup error.
  PyObject* find(PyObject* key) {
    if (aligned_) {
      PyObject* k;
      PyObject* v;
      if (PyDict_Next(dict_, &position_, &k, &v) && same_key(k, key)) return v;
      aligned_ = false;
    }
    PyObject* found = PyDict_GetItemWithError(dict_, key);
    if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
    return found;
  }

 private:
  // Equal keys that can be compared without running Python code: the same object, or equal
  // exact str (the usual 'W1'). Anything else counts as a mismatch, answered by a real lookup.
  static bool same_key(PyObject* a, PyObject* b) {
    if (a == b) return true;
    return PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b) &&
           PyObject_Hash(a) == PyObject_Hash(b) && PyUnicode_Compare(a, b) == 0;
  }

  PyObject* dict_;
  Py_ssize_t position_ = 0;
  bool aligned_ = true;
};

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
  if (!PyErr_ExceptionMatches(PyExc_KeyError)) throw py::error_already_set();
  PyErr_Clear();
  missing_grad(key);
}

// The optimizer's state dict `name`, from its instance __dict__.
PyObject* state_dict(PyObject* owner, PyObject* name) {
  PyObject* found = PyDict_GetItemWithError(owner, name);
  if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
  if (found == nullptr || !PyDict_Check(found)) {
    throw py::type_error("the optimizer's state '" + py::cast<std::string>(name) +
                         "' must be a dict; assign {} to reset it.");
  }
  return found;
}

// The value new state arrays start at: the optimizer's `_initial_state_value` if it has one
// (torch's Adagrad initial_accumulator_value), else 0. Read only when a state is made, never per
// call.
double initial_state_value(PyObject* owner) {
  PyObject* value = PyDict_GetItemString(owner, "_initial_state_value");
  if (value == nullptr) return 0.0;
  const double result = PyFloat_AsDouble(value);
  if (result == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return result;
}

// Reads a tuple of per-step scalars into `out`; `expected` is the kernel's count.
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

// update()'s nonfinite argument: what to do about inf or nan in a grad. kKnownFinite may be added
// to skip or raise when the caller has already seen every grad finite (their norm was finite):
// then only grads converted here (a float64 1e39 becomes inf in float32) need the check.
enum Nonfinite : long { kPropagate = 0, kSkip = 1, kRaise = 2, kKnownFinite = 4 };

// Runs `work` with the GIL released when it is long enough that other Python threads gain.
template <class Work>
void run_released_if_large(double work_ns, Work&& work) {
  if (work_ns > kReleaseGilAboveNs) {
    without_gil(work);
  } else {
    work();
  }
}

// The first task (in params' order) whose grad holds inf or nan, or -1; with only_converted, among
// the tasks whose grad was converted here (the others are known finite). One read-only pass over
// those grads, split across threads like the update itself; each task's answer is exact whatever
// the split, so the task found is the same for every thread count and SIMD level.
std::int64_t first_nonfinite(const KernelTable& table, Scratch& scratch, bool only_converted) {
  const std::size_t n = scratch.tasks.size();
  scratch.found.assign(n, 0);
  scratch.checks.clear();
  std::int64_t total = 0;
  double work_ns = 0;
  for (std::size_t t = 0; t < n; ++t) {
    const runtime::Task& task = scratch.tasks[t];
    const TaskOrigin& origin = scratch.origins[t];
    const std::int64_t size = only_converted && !origin.converted ? 0 : task.size;
    runtime::Task check{table.flag_nonfinite[static_cast<int>(origin.dtype)],
                        nullptr,
                        {nullptr, task.ops.grad, {&scratch.found[t], nullptr, nullptr}, 1.0},
                        size};
    scratch.checks.push_back(check);
    total += size;
    work_ns += static_cast<double>(size) * runtime::ns_per_read(origin.dtype);
  }
  if (total == 0) return -1;
  const int threads = runtime::threads_for(work_ns, runtime::num_threads());
  run_released_if_large(work_ns, [&] {
    runtime::run_tasks(scratch.checks, total, threads, work_ns >= runtime::kLargeJobNs);
  });
  for (std::size_t t = 0; t < n; ++t) {
    if (scratch.found[t]) return static_cast<std::int64_t>(t);
  }
  return -1;
}

template <class T>
std::string describe_nonfinite(const T* x, std::int64_t size) {
  std::int64_t nans = 0, infs = 0;
  for (std::int64_t i = 0; i < size; ++i) {
    nans += std::isnan(x[i]);
    infs += std::isinf(x[i]);
  }
  return std::to_string(nans) + " nan and " + std::to_string(infs) + " inf among " +
         std::to_string(size) + " elements";
}

[[noreturn]] void raise_nonfinite(const runtime::Task& task, const TaskOrigin& origin) {
  const std::string counts =
      origin.dtype == Dtype::kFloat32
          ? describe_nonfinite(static_cast<const float*>(task.ops.grad), task.size)
          : describe_nonfinite(static_cast<const double*>(task.ops.grad), task.size);
  PyErr_SetString(PyExc_FloatingPointError,
                  ("grads[" + std::string(py::repr(origin.key)) + "] is not finite (" + counts +
                   "); nothing was updated (nonfinite='raise')")
                      .c_str());
  throw py::error_already_set();
}

// True if a key's param overlaps another key's param or grad: tied weights (one array under two
// keys), or a view of one param given as another key's grad. The book updates keys one after the
// other, so each key sees the previous keys' writes; split across threads those writes would race
// and the result would depend on timing. Such updates run on one thread, in params' order, which
// gives the book's numbers. Only asked when more than one thread would run (jobs of 40 us or more),
// so the sort costs nothing that matters. (A key's grad overlapping its own param was copied in
// validation.)
bool one_writes_anothers_memory(const std::vector<runtime::Task>& tasks,
                                const std::vector<TaskOrigin>& origins) {
  struct Range {
    std::uintptr_t begin, end;
    std::size_t task;
  };
  auto range = [&](const void* data, std::size_t t) {
    const auto begin = reinterpret_cast<std::uintptr_t>(data);
    const std::int64_t bytes = origins[t].dtype == Dtype::kFloat32 ? 4 : 8;
    return Range{begin, begin + static_cast<std::uintptr_t>(tasks[t].size * bytes), t};
  };
  std::vector<Range> params;
  params.reserve(tasks.size());
  for (std::size_t t = 0; t < tasks.size(); ++t) params.push_back(range(tasks[t].ops.param, t));
  std::sort(params.begin(), params.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < params.size(); ++i) {
    if (params[i].begin < params[i - 1].end) return true;  // sorted and so far disjoint
  }
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const Range grad = range(tasks[t].ops.grad, t);
    // The params are disjoint and sorted, so those that overlap the grad are the run just before
    // the first param starting at or after its end.
    auto it = std::lower_bound(params.begin(), params.end(), grad.end,
                               [](const Range& r, std::uintptr_t end) { return r.begin < end; });
    while (it != params.begin()) {
      --it;
      if (it->end <= grad.begin) break;
      if (it->task != t) return true;
    }
  }
  return false;
}

// Returns false when the update was skipped (nonfinite="skip" and a grad held inf or nan).
bool update(int kernel, py::handle params, py::handle grads, py::handle owner,
            py::handle state_names, py::handle scalars, double grad_scale, py::handle per_key,
            long nonfinite) {
  if (!PyTuple_Check(state_names.ptr()) || !PyTuple_Check(scalars.ptr())) {
    throw py::type_error("internal error: state_names and scalars must be tuples");
  }
  const KernelTable table = active_level().table();
  if (kernel < 0 || kernel >= table.size) throw py::value_error("unknown kernel index");
  const KernelRow& row = table.rows[kernel];
  const int num_states = row.num_states;
  if (PyTuple_GET_SIZE(state_names.ptr()) != num_states ||
      PyTuple_GET_SIZE(scalars.ptr()) != row.num_scalars || !PyDict_Check(owner.ptr())) {
    throw py::value_error(std::string("internal error: kernel '") + row.name + "' takes " +
                          std::to_string(num_states) + " state names and " +
                          std::to_string(row.num_scalars) + " scalars");
  }
  if (!PyDict_Check(params.ptr())) {
    throw py::type_error("params must be a dict mapping keys to arrays; got " +
                         std::string(py::str(py::type::of(params).attr("__name__"))));
  }
  std::array<double, kMaxScalars> scalar_values{};
  read_scalars(scalars.ptr(), row.num_scalars, scalar_values.data());
  // per_key: None, or {key: (kernel index, scalars)} for keys with their own settings (another
  // variant of the same kernel: the same states and scalar count). Their scalars live here, at
  // stable addresses, for the tasks to point at.
  const bool has_per_key = !per_key.is_none();
  if (has_per_key && !PyDict_Check(per_key.ptr())) throw py::type_error("per_key must be a dict");
  std::deque<std::array<double, kMaxScalars>> per_key_scalars;
  // Owned: user code run during validation (a key's __eq__, say) could reassign opt.v = {}.
  std::array<py::object, kMaxStates> state_owners;
  std::array<PyObject*, kMaxStates> states{};
  std::array<AlignedDict, kMaxStates> state_dicts{AlignedDict(nullptr), AlignedDict(nullptr),
                                                  AlignedDict(nullptr)};
  for (int s = 0; s < num_states; ++s) {
    state_owners[s] = py::reinterpret_borrow<py::object>(
        state_dict(owner.ptr(), PyTuple_GET_ITEM(state_names.ptr(), s)));
    states[s] = state_owners[s].ptr();
    state_dicts[s] = AlignedDict(states[s]);
  }
  AlignedDict grads_aligned(grads.ptr());
  AlignedDict* grads_dict = PyDict_Check(grads.ptr()) ? &grads_aligned : nullptr;

  // 1. validate
  const Py_ssize_t num_keys = PyDict_Size(params.ptr());
  Scratch::Lease lease;
  std::vector<runtime::Task>& tasks = lease->tasks;
  std::vector<py::object>& keep = lease->keep;
  tasks.reserve(static_cast<std::size_t>(num_keys));
  keep.reserve(static_cast<std::size_t>(num_keys) * (2 + num_states));
  std::vector<PendingState> pending;
  std::vector<ScalarParam> scalar_params;
  std::vector<TaskOrigin>& origins = lease->origins;
  std::int64_t total = 0;
  double work_ns = 0;
  bool converted = false;  // some grad was converted or copied here

  PyObject* key;
  PyObject* value;
  Py_ssize_t position = 0;
  while (PyDict_Next(params.ptr(), &position, &key, &value)) {
    // Own every object the moment it is obtained: any lookup below may run Python code (a key's
    // __eq__, a mapping's __getitem__) that drops the dict's reference to it, and the write-back
    // after the kernels, which ran without the GIL, uses the key again.
    keep.push_back(py::reinterpret_borrow<py::object>(key));
    keep.push_back(py::reinterpret_borrow<py::object>(value));
    PyObject* grad = lookup_grad(grads.ptr(), grads_dict, key, keep);
    ArrayView param;
    PyObject* param_array = value;
    if (!param_view(value, &param)) {
      ParamSpan span = check_param(key, value);  // raises, or makes a scalar's working array
      param = view_of(span);
      param_array = span.array.ptr();
      keep.push_back(span.array);
      if (span.from_scalar) scalar_params.push_back({key, param_array});
    }
    // For the slow paths below, which check and convert against the param.
    auto span = [&] {
      return ParamSpan{py::reinterpret_borrow<py::array>(param_array), param.dtype, param.layout,
                       param.size, false};
    };
    runtime::Task task{row.fn[static_cast<int>(param.dtype)], scalar_values.data(), {}, param.size};
    if (has_per_key) {
      PyObject* own = PyDict_GetItemWithError(per_key.ptr(), key);
      if (own == nullptr && PyErr_Occurred()) throw py::error_already_set();
      if (own != nullptr) {
        if (!PyTuple_Check(own) || PyTuple_GET_SIZE(own) != 2) {
          throw py::type_error("per_key values must be (kernel index, scalars)");
        }
        const long index = PyLong_AsLong(PyTuple_GET_ITEM(own, 0));
        if (index < 0 || index >= table.size || table.rows[index].num_states != num_states ||
            table.rows[index].num_scalars != row.num_scalars) {
          throw py::value_error("internal error: a per-key kernel must keep the same state");
        }
        per_key_scalars.emplace_back();
        read_scalars(PyTuple_GET_ITEM(own, 1), row.num_scalars, per_key_scalars.back().data());
        task.fn = table.rows[index].fn[static_cast<int>(param.dtype)];
        task.scalars = per_key_scalars.back().data();
      }
    }
    task.ops.grad_scale = grad_scale;
    task.ops.param = param.data;

    const bool grad_converted = !grad_fits(grad, param);
    if (grad_converted) {
      keep.push_back(check_grad(key, grad, span()));  // raises, or converts
      grad = keep.back().ptr();
      converted = true;
    }
    task.ops.grad = py::detail::array_proxy(grad)->data;

    for (int s = 0; s < num_states; ++s) {
      PyObject* state = state_dicts[s].find(key);  // borrowed; owned below before any Python runs
      if (state != nullptr && state_fits(state, param)) {
        keep.push_back(py::reinterpret_borrow<py::object>(state));
      } else {
        bool is_new = false;
        keep.push_back(check_state(key, states[s], s,
                                   PyUnicode_AsUTF8(PyTuple_GET_ITEM(state_names.ptr(), s)), span(),
                                   initial_state_value(owner.ptr()), &is_new));
        if (is_new) pending.push_back({states[s], key, keep.back().ptr()});
      }
      task.ops.state[s] = py::detail::array_proxy(keep.back().ptr())->data;
    }
    if (param.size > 0) {
      tasks.push_back(task);
      origins.push_back({key, param.dtype, grad_converted});
      total += param.size;
      work_ns += static_cast<double>(param.size) * runtime::ns_per_element(row, param.dtype);
    }
  }

  // 1b. non-finite grads
  const long mode = nonfinite & ~kKnownFinite;
  const bool known_finite = nonfinite & kKnownFinite;
  if (mode != kPropagate && (converted || !known_finite)) {
    const std::int64_t bad = first_nonfinite(table, *lease.operator->(), known_finite);
    if (bad >= 0) {
      if (mode == kRaise) raise_nonfinite(tasks[bad], origins[bad]);
      return false;
    }
  }

  // 2. commit
  for (const PendingState& state : pending) {
    if (PyDict_SetItem(state.dict, state.key, state.value) != 0) throw py::error_already_set();
  }

  // 3. run
  int threads = runtime::threads_for(work_ns, runtime::num_threads());
  if (threads > 1 && one_writes_anothers_memory(tasks, origins)) threads = 1;
  const bool large = work_ns >= runtime::kLargeJobNs;
  run_released_if_large(work_ns, [&] { runtime::run_tasks(tasks, total, threads, large); });

  // 4. write back scalar params
  for (const ScalarParam& scalar : scalar_params) {
    py::object result = py::reinterpret_borrow<py::array>(scalar.work)[py::tuple()];
    if (PyDict_SetItem(params.ptr(), scalar.key, result.ptr()) != 0) throw py::error_already_set();
  }
  return true;
}

// update() as a plain METH_FASTCALL function: pybind11's general dispatcher (overload resolution,
// argument casters, keyword handling) costs ~0.2 us a call, 5% of the 4 us budget of a
// 22-array update, for a function that only ever takes six positional handles.
PyObject* update_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  try {
    if (nargs < 6 || nargs > 9) throw py::type_error("update() takes 6 to 9 positional arguments");
    const long kernel = PyLong_AsLong(args[0]);
    if (kernel == -1 && PyErr_Occurred()) throw py::error_already_set();
    const double grad_scale = nargs >= 7 ? PyFloat_AsDouble(args[6]) : 1.0;
    if (grad_scale == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    const long nonfinite = nargs >= 9 ? PyLong_AsLong(args[8]) : kPropagate;
    if (nonfinite == -1 && PyErr_Occurred()) throw py::error_already_set();
    if ((nonfinite & ~kKnownFinite) < kPropagate || (nonfinite & ~kKnownFinite) > kRaise) {
      throw py::value_error("internal error: nonfinite must be 0, 1 or 2, plus 4");
    }
    const bool applied = update(static_cast<int>(kernel), args[1], args[2], args[3], args[4],
                                args[5], grad_scale, nargs >= 8 ? args[7] : Py_None, nonfinite);
    return py::bool_(applied).release().ptr();
  } catch (py::error_already_set& error) {
    error.restore();
  } catch (const py::builtin_exception& error) {
    error.set_error();
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
  }
  return nullptr;
}

PyMethodDef g_update_def = {
    "update", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&update_fastcall)),
    METH_FASTCALL,
    "update($module, kernel, params, grads, owner, state_names, scalars, grad_scale=1.0, "
    "per_key=None, nonfinite=0, /)"
    "\n--\n\n"
    "Apply kernel `kernel` to every key of `params` in place. The state dicts are the entries "
    "`state_names` of the dict `owner` (the optimizer's __dict__); see fastopt.optimizers. "
    "nonfinite: 0 propagate, 1 skip, 2 raise, plus 4 if the grads are known finite. Returns "
    "False if the update was skipped, else True."};

}  // namespace

void register_update(py::module_& m) {
  m.add_object("update", py::reinterpret_steal<py::object>(
                             PyCFunction_NewEx(&g_update_def, m.ptr(), m.attr("__name__").ptr())));
  m.def(
      "set_num_threads",
      [](int threads) {
        if (threads < 1)
          throw py::value_error("the thread count must be >= 1; got " + std::to_string(threads));
        runtime::set_num_threads(threads);
      },
      py::arg("threads"), "Set the number of threads update() may use (process-wide).");
  m.def("get_num_threads", &runtime::num_threads, "The number of threads update() may use.");
  m.def(
      "_chunk_plan",
      [](const std::vector<std::int64_t>& sizes, int threads) {
        // Testing aid: how update() would split tasks of these sizes (no memory is touched).
        std::vector<std::int64_t> starts(sizes.size() + 1, 0);
        for (std::size_t t = 0; t < sizes.size(); ++t) starts[t + 1] = starts[t] + sizes[t];
        const std::int64_t total = starts.back();
        const std::int64_t chunk = runtime::chunk_size(total, threads);
        std::vector<std::tuple<std::int64_t, std::size_t, std::int64_t, std::int64_t>> plan;
        for (std::int64_t c = 0; c * chunk < total; ++c) {
          runtime::pieces_of_chunk(starts, total, chunk, c, [&](const runtime::Piece& piece) {
            plan.emplace_back(c, piece.task, piece.from, piece.to);
          });
        }
        return py::make_tuple(chunk, plan);
      },
      py::arg("sizes"), py::arg("threads"),
      "Testing aid: (chunk size, [(chunk, task, from, to)]) for tasks of these sizes.");
  m.def("_chunks_run_by_helpers", &runtime::chunks_run_by_helpers,
        "Testing aid: chunks run by helper threads since the process started.");
  m.def("available_cores", &runtime::available_cores,
        "The number of cores this process may run on (its CPU affinity).");
}

}  // namespace fastopt::bindings
