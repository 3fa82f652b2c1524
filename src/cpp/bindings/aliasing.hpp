// Keys that share memory: tied weights, overlapping views, a param or a state of one key given as
// another key's grad (or param).
#pragma once

#include <cstddef>
#include <vector>

#include "bindings/predicates.hpp"
#include "bindings/scratch.hpp"

namespace fastopt::bindings {

// What an update must do so that keys sharing memory get the book's numbers: keys updated one
// after the other in params' order, each reading what the keys before it wrote, and each reading
// its grad as it is at its turn (a grad overlapping its own key's param or states was copied in
// validation, so it reads as it was before the key's update).
struct Aliasing {
  // Run on one thread, key after key: one key writes memory another key reads or writes. Split
  // across threads those accesses would race, and the result would depend on timing.
  bool in_order = false;
  // Indices into Scratch::converted_grads of the grads to convert again right before their key's
  // kernel: their source overlaps memory another key writes. Validation converted them already,
  // but before the keys ahead of theirs were updated; a later key's writes are harmless (the copy
  // is taken first) but are included to keep the test simple. Not empty implies in_order.
  std::vector<std::size_t> deferred;
};

// The written memory of every key (its param and its states) against the read memory of the
// others (their grads, params and states) and the sources of converted grads. O(n log n) in the
// number of arrays. With several_threads false only the converted grads are examined: on one
// thread the tasks run whole and in order already.
Aliasing find_aliasing(const Scratch& scratch, bool several_threads);

// Raises ValueError, naming both keys, when a half param with a master copy shares memory with
// another key's arrays (tied half weights): each key updates its own master and writes the param
// from it, so the keys would overwrite each other's updates instead of adding to them. Called
// in validation, before anything is written, when some task has a master.
void check_tied_masters(const Scratch& scratch);

// True when a task's grad (as the caller passed it) shares memory with one of its own key's
// states, absmaxes, master or compensation (opt.h["w"] as grads["w"]): the kernel would write what
// it reads, so the caller copies the grad first. A grad that fits has the param's size, so this is
// a comparison of ranges per array.
bool grad_shares_a_state(const runtime::Task& task, const Mixed& mixed, const KernelRow& row,
                         const ArrayView& param, Dtype grad_dtype);

}  // namespace fastopt::bindings
