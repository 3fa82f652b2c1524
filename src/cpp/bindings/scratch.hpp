// The per-call working memory of Updater.run, kept between calls.
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <deque>
#include <vector>

#include "bindings/predicates.hpp"
#include "kernels/table.hpp"
#include "runtime/executor.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

// Where a task came from: the key to name in an error, and how its arrays are stored.
struct TaskOrigin {
  PyObject* key;     // owned by `keep`
  Dtype dtype;       // the param's (its states are compute_of(dtype))
  Dtype grad_dtype;  // the grad's, as the kernel reads it
  bool converted;    // its grad was converted or copied here: not what the caller passed
  bool bf16_states;  // every state is bfloat16 bits, with no Mixed (the row's bf16_states kernel)
};

// A grad that validation converted (or copied) from an ndarray: where its source lies, so that
// the conversion can be done again at its key's turn when earlier keys write there (aliasing.hpp).
struct ConvertedGrad {
  std::size_t task;
  PyObject* source;  // the grad as passed; owned by `keep`
  PyObject* param;   // the param's array (a scalar param's working array); owned by `keep`
  Layout layout;     // the param's memory order
  ByteRange bytes;   // the source's memory
};

// A state array made in validation, inserted into its state dict only at commit.
struct PendingState {
  PyObject* dict;
  PyObject* key;
  PyObject* value;  // owned by `keep`
};

// A param that was a scalar: its 0-d float64 working array, put back into params at the end.
struct ScalarParam {
  PyObject* key;
  PyObject* work;  // owned by `keep`
};

// The per-call vectors, kept between calls so that an update allocates nothing in the common case
// (two allocations were ~5% of a 22-array update). One per thread; a re-entrant call (Python code
// run during validation, e.g. a user's __eq__, calling run() again) gets fresh vectors instead.
struct Scratch {
  std::vector<runtime::Task> tasks;
  std::vector<TaskOrigin> origins;  // one per task
  std::vector<py::object> keep;     // a reference to every object a task or an entry points at
  std::vector<py::object> items;    // params' keys and values, taken before planning
  std::vector<PendingState> pending;
  std::vector<ConvertedGrad> converted_grads;  // in task order
  std::vector<ScalarParam> scalar_params;
  std::vector<py::object> tensors;  // params that are torch tensors: written, so marked after
  // The scalars of keys with settings of their own; a deque, so the tasks' pointers stay valid.
  std::deque<std::array<double, kMaxScalars>> per_key_scalars;
  // The half-precision part of the tasks that have one (Operands::mixed); a deque, likewise.
  std::deque<Mixed> mixed;
  std::vector<runtime::Task> checks;  // the non-finite check's tasks, one per task
  std::vector<unsigned char> found;   // their results
  bool in_use = false;

  class Lease {
   public:
    Lease() : scratch_(&local()), owned_(scratch_->in_use) {
      if (owned_) scratch_ = new Scratch();
      scratch_->in_use = true;
    }
    ~Lease() {
      scratch_->tasks.clear();
      scratch_->origins.clear();
      scratch_->pending.clear();
      scratch_->converted_grads.clear();
      scratch_->scalar_params.clear();
      scratch_->tensors.clear();
      scratch_->per_key_scalars.clear();
      scratch_->mixed.clear();
      scratch_->checks.clear();
      scratch_->keep.clear();  // drops the references, with the GIL held (run() holds it here)
      scratch_->items.clear();
      scratch_->in_use = false;
      if (owned_) delete scratch_;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Scratch& operator*() const { return *scratch_; }
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

}  // namespace fastopt::bindings
