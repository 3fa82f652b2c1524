// Updater.run's phases, in this order, so that bad input changes nothing:
//   1. validate (plan.cpp): walk the keys once with the GIL held; check every param, grad and
//      state; convert grads that need it; make (but do not insert) missing state arrays. Any error
//      raises here.
//   1b. non-finite (nonfinite.cpp): with nonfinite="skip" or "raise", check every grad (as
//      converted) for inf and nan in one read-only pass, unless the caller already knows them
//      finite (their norm, taken for clipping, was finite). A non-finite grad raises
//      FloatingPointError ("raise") or returns False ("skip"), here, before anything is committed.
//   With check_only (fastopt.distributed: every process validates its shard before any writes),
//   run() returns here: the new state arrays of phase 1 are dropped, nothing is written.
//   2. commit: insert the new state arrays into the optimizer's state dicts.
//   3. run: with the GIL released (when the work is large enough to be worth it), run the kernels
//      on the thread pool.
//   4. write back the params that were scalars, as NumPy float64 scalars.
//   5. commit the caller's counters (its step count), in the same C call as the params.
//   6. mark the params that are torch tensors as written (autograd's version counters).
//
// GIL rules: every PyObject is touched with the GIL held, in phases 1, 2 and 4. Phase 3 (and the
// check of 1b) sees only raw pointers (runtime::Task) into arrays kept alive by Scratch::keep,
// which is cleared, with the GIL held, when run() returns or throws.
#include "bindings/updater.hpp"

#include <new>

#include "bindings/active_level.hpp"
#include "bindings/execute.hpp"
#include "bindings/plan.hpp"
#include "bindings/tensors.hpp"
#include "bindings/scratch.hpp"

namespace fastopt::bindings {

Updater::Updater(int kernel, py::object state_names, double initial_state,
                 const std::string& nonfinite, const HalfOptions& half,
                 const CompactOptions& compact)
    : table_(active_level().table()),
      kernel_(kernel),
      initial_state_(initial_state),
      half_(half),
      compact_(compact) {
  for (int i = 0; i < 2; ++i) {
    PyObject* name = PyUnicode_InternFromString(i == 0 ? "master" : "compensation");
    if (name == nullptr) throw py::error_already_set();
    half_names_[i] = py::reinterpret_steal<py::str>(name);
  }
  if (half.master_weights && (half.compensation || half.rounding != Rounding::kNearest)) {
    throw py::value_error(
        "master_weights=True writes half params rounded to nearest from their master copy: "
        "rounding='stochastic' and compensation=True are for master_weights=False");
  }
  if (kernel < 0 || kernel >= table_.size) {
    throw py::value_error("unknown kernel index " + std::to_string(kernel) +
                          "; the kernel table has " + std::to_string(table_.size) +
                          " rows (see _core.algorithms())");
  }
  if (!PyTuple_Check(state_names.ptr())) {
    throw py::type_error("state_names must be a tuple of str");
  }
  const KernelRow& row = table_.rows[kernel];
  const Py_ssize_t count = PyTuple_GET_SIZE(state_names.ptr());
  if (count != row.num_states) {
    throw py::value_error("kernel " + std::to_string(kernel) + " ('" + row.name + "') keeps " +
                          std::to_string(row.num_states) + " state arrays; got " +
                          std::to_string(count) + " state names");
  }
  state_names_ = py::tuple(count);
  for (Py_ssize_t s = 0; s < count; ++s) {
    PyObject* name = PyTuple_GET_ITEM(state_names.ptr(), s);
    if (!PyUnicode_Check(name)) throw py::type_error("state_names must be a tuple of str");
    PyObject* interned = PyUnicode_FromObject(name);  // an exact str, for interning
    if (interned == nullptr) throw py::error_already_set();
    PyUnicode_InternInPlace(&interned);
    state_names_[s] = py::reinterpret_steal<py::str>(interned);
    state_name_strings_[s] = py::cast<std::string>(state_names_[s]);
    PyObject* absmax = PyUnicode_InternFromString((state_name_strings_[s] + "_absmax").c_str());
    if (absmax == nullptr) throw py::error_already_set();
    absmax_names_[s] = py::reinterpret_steal<py::str>(absmax);
    for (Py_ssize_t t = 0; t < s; ++t) {
      if (state_name_strings_[t] == state_name_strings_[s]) {
        throw py::value_error("state_names has '" + state_name_strings_[s] +
                              "' twice; each state needs a name of its own");
      }
    }
  }
  if (!parse_nonfinite(nonfinite, &nonfinite_)) {
    throw py::value_error("nonfinite must be 'propagate', 'skip' or 'raise'; got '" + nonfinite +
                          "'");
  }
}

// The state dicts, owned: user code run during validation (a key's __eq__, say) could reassign
// opt.v = {}.
void Updater::state_dicts(PyObject* states, std::array<py::object, kMaxStates>* dicts) const {
  if (num_states() > 0 && !PyDict_Check(states)) {
    throw py::type_error("states must be a dict mapping state names to dicts");
  }
  for (int s = 0; s < num_states(); ++s) {
    PyObject* found = PyDict_GetItemWithError(states, PyTuple_GET_ITEM(state_names_.ptr(), s));
    if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
    if (found == nullptr || !PyDict_Check(found)) {
      throw py::type_error("the optimizer's state '" + state_name_strings_[s] +
                           "' must be a dict; assign {} to reset it.");
    }
    (*dicts)[s] = py::reinterpret_borrow<py::object>(found);
  }
}

namespace {

// states[name], owned (user code run during validation could replace it), or None when the caller
// keeps no such dict (EMA's updater): then a half param that needs one raises TypeError.
// `name` is interned (Updater's constructor), so the lookup compares pointers and allocates
// nothing.
py::object half_dict(PyObject* states, const py::str& name) {
  if (!PyDict_Check(states)) return py::none();
  PyObject* found = PyDict_GetItemWithError(states, name.ptr());  // borrowed
  if (found == nullptr && PyErr_Occurred()) throw py::error_already_set();
  if (found == nullptr) return py::none();
  if (!PyDict_Check(found)) {
    throw py::type_error("the optimizer's state '" + std::string(name) +
                         "' must be a dict; assign {} to reset it.");
  }
  return py::reinterpret_borrow<py::object>(found);
}

}  // namespace

bool Updater::run(const RunArgs& args) const {
  const KernelRow& row = table_.rows[kernel_];
  if (!PyDict_Check(args.params)) {
    throw py::type_error("params must be a dict mapping keys to arrays; got " +
                         std::string(py::str(py::type::of(args.params).attr("__name__"))));
  }
  std::array<double, kMaxScalars> scalars{};
  read_scalars(args.scalars, row.num_scalars, scalars.data());
  check_commit(args.commit);
  const bool has_per_key = args.per_key != Py_None;
  if (has_per_key && !PyDict_Check(args.per_key)) throw py::type_error("per_key must be a dict");
  std::array<py::object, kMaxStates> owned_dicts;
  state_dicts(args.states, &owned_dicts);
  std::array<PyObject*, kMaxStates> dicts{};
  for (int s = 0; s < row.num_states; ++s) dicts[s] = owned_dicts[s].ptr();

  Precision precision{half_.master_weights,
                      half_.compensation,
                      half_.rounding,
                      half_.seed,
                      args.step,
                      nullptr,
                      nullptr};
  const py::object masters = half_dict(args.states, half_names_[0]);
  const py::object compensations = half_dict(args.states, half_names_[1]);
  precision.masters = masters.is_none() ? nullptr : masters.ptr();
  precision.compensations = compensations.is_none() ? nullptr : compensations.ptr();
  precision.compact = compact_;
  std::array<py::object, kMaxStates> absmax_dicts;
  if (compact_.format == StateFormat::kInt8) {
    for (int s = 0; s < row.num_states; ++s) {
      absmax_dicts[s] = half_dict(args.states, absmax_names_[s]);
      precision.absmax[s] = absmax_dicts[s].is_none() ? nullptr : absmax_dicts[s].ptr();
    }
  }
  Scratch::Lease scratch;
  // 1. validate
  const PlanRequest request{&table_,
                            kernel_,
                            args.params,
                            args.grads,
                            has_per_key ? args.per_key : nullptr,
                            scalars.data(),
                            args.grad_scale,
                            dicts.data(),
                            state_name_strings_.data(),
                            initial_state_,
                            &precision};
  const Plan plan = make_plan(request, *scratch);
  // 1b. non-finite grads
  if (nonfinite_ != Nonfinite::kPropagate && (plan.converted || !args.known_finite)) {
    const std::int64_t bad = first_nonfinite(table_, *scratch, args.known_finite);
    if (bad >= 0) {
      if (nonfinite_ == Nonfinite::kRaise) raise_nonfinite(*scratch, bad);
      return false;
    }
  }
  if (args.check_only) return true;
  commit_states(*scratch);                    // 2.
  run_plan(*scratch, plan);                   // 3.
  write_back_scalars(args.params, *scratch);  // 4.
  commit_counters(args.commit);               // 5.
  mark_written(scratch->tensors);             // 6. autograd's version counters
  return true;
}

namespace {

// Updater.run as a METH_FASTCALL method: pybind11's general dispatcher (overload resolution,
// argument casters, keyword handling) costs ~0.2 us a call, 5% of the 4 us budget of a 22-array
// update, for a method that only ever takes positional arguments.
// The Updater inside `self`, or TypeError when its __init__ never ran (Updater.__new__(Updater),
// or a subclass whose __init__ does not call it): its fields would be uninitialised memory.
const Updater& constructed(PyObject* self) {
  auto holder = reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder();
  if (!holder.holder_constructed()) throw py::type_error("Updater.__init__ was not called");
  return *holder.value_ptr<Updater>();
}

PyObject* run_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  try {
    if (nargs < 4 || nargs > 10) {
      throw py::type_error("Updater.run() takes 4 to 10 positional arguments (" +
                           std::to_string(nargs) + " given)");
    }
    // The method descriptor has checked that self is an Updater (or a subclass).
    const Updater& updater = constructed(self);
    const double grad_scale = nargs >= 5 ? PyFloat_AsDouble(args[4]) : 1.0;
    if (grad_scale == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    const int known_finite = nargs >= 6 ? PyObject_IsTrue(args[5]) : 0;
    if (known_finite < 0) throw py::error_already_set();
    const unsigned long long step = nargs >= 9 ? PyLong_AsUnsignedLongLong(args[8]) : 0;
    if (step == static_cast<unsigned long long>(-1) && PyErr_Occurred())
      throw py::error_already_set();
    const int check_only = nargs >= 10 ? PyObject_IsTrue(args[9]) : 0;
    if (check_only < 0) throw py::error_already_set();
    const RunArgs run_args{args[0],
                           args[1],
                           args[2],
                           args[3],
                           grad_scale,
                           known_finite != 0,
                           nargs >= 7 ? args[6] : Py_None,
                           nargs >= 8 ? args[7] : Py_None,
                           step,
                           check_only != 0};
    const bool applied = updater.run(run_args);
    return py::bool_(applied).release().ptr();
  } catch (py::error_already_set& error) {
    error.restore();
  } catch (const py::builtin_exception& error) {
    error.set_error();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();  // MemoryError, as pybind11's own dispatcher would raise
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
  }
  return nullptr;
}

PyMethodDef g_run_def = {
    "run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&run_fastcall)),
    METH_FASTCALL,
    "run($self, params, grads, states, scalars, grad_scale=1.0, known_finite=False, per_key=None, "
    "commit=None, step=0, check_only=False, /)"
    "\n--\n\n"
    "Apply the kernel to every key of `params` in place. `states` maps each state name to that "
    "state's {key: ndarray} dict; missing state arrays are created. `scalars` are the kernel's "
    "per-step scalars; `per_key` is None or {key: (kernel index, scalars)}. known_finite: the "
    "caller proved every grad finite. commit: None, (target dict, values dict) or a list of such pairs, applied as "
    "target.update(values) after the kernels, before returning (so that a signal handler cannot "
    "run between the params' update and the caller's counters). step: the step being made, the "
    "counter of stochastic rounding. check_only: validate (and check for non-finite grads) and "
    "return, making and writing nothing. `states` may also hold 'master' and 'compensation' dicts, "
    "the arrays half params keep (see the options). Returns False if the update was "
    "skipped "
    "(nonfinite='skip' and a grad held inf or nan), else True."};

CompactOptions compact_options(const py::object& state_format, std::int64_t min_size) {
  CompactOptions options;
  options.min_size = min_size;
  if (min_size < 0) throw py::value_error("compact_min_size must be >= 0");
  if (state_format.is_none()) return options;
  const std::string name = py::str(state_format);
  if (name == "bfloat16") {
    options.format = StateFormat::kBFloat16;
  } else if (name == "int8") {
    options.format = StateFormat::kInt8;
  } else {
    throw py::value_error("state_format must be None, 'bfloat16' or 'int8'; got " +
                          std::string(py::repr(state_format)));
  }
  return options;
}

}  // namespace

void register_updater(py::module_& m) {
  // The plain `type` as metaclass: pybind11's own adds nothing used here (static properties),
  // and with it the class matches its stub (stubtest checks the metaclass).
  py::class_<Updater> cls(m, "Updater", py::metaclass(reinterpret_cast<PyObject*>(&PyType_Type)),
                          "The update engine of one optimizer: its kernel (an index into the "
                          "kernel table), the names of its states, the value new state arrays "
                          "start at, and what to do with non-finite grads.");
  cls.def(py::init([](int kernel, py::object state_names, double initial_state,
                      const std::string& nonfinite, bool master_weights,
                      const std::string& rounding, bool compensation, std::uint64_t seed,
                      py::object state_format, std::int64_t compact_min_size) {
            HalfOptions half{master_weights, compensation, Rounding::kNearest, seed};
            if (rounding == "stochastic") {
              half.rounding = Rounding::kStochastic;
            } else if (rounding != "nearest") {
              throw py::value_error("rounding must be 'nearest' or 'stochastic'; got '" + rounding +
                                    "'");
            }
            return Updater(kernel, std::move(state_names), initial_state, nonfinite, half,
                           compact_options(state_format, compact_min_size));
          }),
          py::arg("kernel"), py::arg("state_names"), py::kw_only(), py::arg("initial_state") = 0.0,
          py::arg("nonfinite") = "propagate", py::arg("master_weights") = true,
          py::arg("rounding") = "nearest", py::arg("compensation") = false, py::arg("seed") = 0,
          py::arg("state_format") = py::none(), py::arg("compact_min_size") = 4096)
      // Every accessor goes through constructed(): an instance whose __init__ never ran raises
      // TypeError instead of reading uninitialised memory.
      .def_property_readonly("kernel", [](py::handle u) { return constructed(u.ptr()).kernel(); })
      .def_property_readonly("state_names",
                             [](py::handle u) { return constructed(u.ptr()).state_names(); })
      .def_property_readonly("initial_state",
                             [](py::handle u) { return constructed(u.ptr()).initial_state(); })
      .def_property_readonly("nonfinite",
                             [](py::handle u) { return constructed(u.ptr()).nonfinite(); })
      // Immutable, so a copy is the object itself (as for a tuple): optimizers holding one can be
      // copied with copy.copy and copy.deepcopy.
      .def("__copy__",
           [](py::object self) {
             constructed(self.ptr());
             return self;
           })
      .def(
          "__deepcopy__",
          [](py::object self, py::object /*memo*/) {
            constructed(self.ptr());
            return self;
          },
          py::arg("memo"))
      .def("__repr__", [](py::handle self) {
        const Updater& u = constructed(self.ptr());
        return "Updater(" + std::to_string(u.kernel()) + ", " +
               std::string(py::repr(u.state_names())) +
               ", initial_state=" + std::string(py::repr(py::float_(u.initial_state()))) +
               ", nonfinite='" + u.nonfinite() + "')";
      });
  PyObject* run = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &g_run_def);
  if (run == nullptr) throw py::error_already_set();
  cls.attr("run") = py::reinterpret_steal<py::object>(run);
}

}  // namespace fastopt::bindings
