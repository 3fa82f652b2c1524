// Phase 1 of Updater.run: walk params' keys once, with the GIL held, and turn them into tasks.
//
// Every param, grad and state is checked; grads that need it are converted; missing state arrays
// are made but not inserted (Scratch::pending). Any error raises here, before anything is written.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings/compact_state.hpp"
#include "bindings/scratch.hpp"
#include "kernels/table.hpp"

namespace fastopt::bindings {

// How half params are updated (Updater's options), and the dicts of the arrays that keeps.
struct Precision {
  bool master = true;         // keep an fp32 master copy of each half param
  bool compensation = false;  // keep a Kahan compensation buffer (no master then)
  Rounding rounding = Rounding::kNearest;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;             // the step being made: stochastic rounding's counter
  PyObject* masters = nullptr;        // {key: float32 array}, or nullptr when none is needed
  PyObject* compensations = nullptr;  // {key: array like the param}
  CompactOptions compact;             // how the rule's states are stored (state_format)
  PyObject* absmax[kMaxStates] = {};  // int8: each state's "<name>_absmax" dict
};

// What one run is asked to do: the Updater's fixed part and the call's arguments, checked.
struct PlanRequest {
  const KernelTable* table;
  int kernel;
  PyObject* params;   // a dict
  PyObject* grads;    // any mapping
  PyObject* per_key;  // nullptr, or {key: (kernel index, scalars)}
  const double* scalars;
  double grad_scale;
  PyObject* const* state_dicts;    // the row's num_states dicts
  const std::string* state_names;  // their names, for messages
  double initial_state;            // what new state arrays are filled with
  const Precision* precision;
};

// The totals of the tasks planned into Scratch::tasks.
struct Plan {
  std::int64_t total = 0;  // elements
  double work_ns = 0;      // estimated time on one thread
  bool converted = false;  // some grad was converted or copied here
  int kernel = 0;          // the request's kernel: the kind of job, for the pool's policy
};

// Reads a tuple of per-step scalars into `out`; `expected` is the kernel's count.
void read_scalars(PyObject* tuple, int expected, double* out);

Plan make_plan(const PlanRequest& request, Scratch& scratch);

}  // namespace fastopt::bindings
