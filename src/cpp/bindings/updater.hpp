// _core.Updater: what is fixed per optimizer (its kernel, state names, initial state value and
// non-finite mode), checked once, and run(): one call into C++ per optimizer step, for every key of
// the params dict together.
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <string>

#include "bindings/compact_state.hpp"
#include "bindings/nonfinite.hpp"
#include "kernels/table.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

// One call's arguments, as run() receives them (borrowed).
struct RunArgs {
  PyObject* params;
  PyObject* grads;
  PyObject* states;   // {state name: {key: ndarray}}
  PyObject* scalars;  // a tuple
  double grad_scale;
  bool known_finite;   // the caller proved every grad finite (their norm was finite)
  PyObject* per_key;   // None or {key: (kernel index, scalars)}
  PyObject* commit;    // None or (target dict, values dict), applied after the kernels
  std::uint64_t step;  // the step being made (stochastic rounding's counter)
  bool check_only;     // validate (phases 1 and 1b) and return: nothing is made or written
};

// How half params are updated: Updater's keyword options, checked.
struct HalfOptions {
  bool master_weights = true;
  bool compensation = false;
  Rounding rounding = Rounding::kNearest;
  std::uint64_t seed = 0;
};

class Updater {
 public:
  // Raises ValueError for an unknown kernel, a wrong number of state names or an unknown mode,
  // TypeError when state_names is not a tuple of str.
  Updater(int kernel, py::object state_names, double initial_state, const std::string& nonfinite,
          const HalfOptions& half = {}, const CompactOptions& compact = {});

  int kernel() const { return kernel_; }
  const py::tuple& state_names() const { return state_names_; }
  double initial_state() const { return initial_state_; }
  const char* nonfinite() const { return nonfinite_name(nonfinite_); }
  const HalfOptions& half() const { return half_; }
  const CompactOptions& compact() const { return compact_; }

  // Returns false when the update was skipped (nonfinite="skip" and a grad held inf or nan).
  bool run(const RunArgs& args) const;

 private:
  int num_states() const { return table_.rows[kernel_].num_states; }
  void state_dicts(PyObject* states, std::array<py::object, kMaxStates>* dicts) const;

  KernelTable table_;  // the active level's, fixed for the process
  int kernel_;
  py::tuple state_names_;  // interned str, so that dict lookups compare pointers
  std::array<std::string, kMaxStates> state_name_strings_;  // for messages
  double initial_state_;
  Nonfinite nonfinite_;
  HalfOptions half_;
  std::array<py::str, 2> half_names_;  // "master", "compensation": interned, for the lookups
  CompactOptions compact_;
  std::array<py::str, kMaxStates> absmax_names_;  // "<state name>_absmax", interned
};

void register_updater(py::module_& m);

}  // namespace fastopt::bindings
