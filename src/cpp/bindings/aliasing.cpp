#include "bindings/aliasing.hpp"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "bindings/compact_state.hpp"
#include "bindings/predicates.hpp"

namespace fastopt::bindings {
namespace {

constexpr std::size_t kSeveralKeys = std::numeric_limits<std::size_t>::max();

// A stretch of memory written by one key's arrays (its param and states), or by several keys'.
struct Written {
  std::uintptr_t begin, end;
  std::size_t task;  // kSeveralKeys: arrays of two or more keys overlap here
};

Written bytes_range(const void* data, std::int64_t bytes, std::size_t task) {
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  return {begin, begin + static_cast<std::uintptr_t>(bytes), task};
}

Written range_of(const void* data, std::int64_t size, Dtype dtype, std::size_t task) {
  return bytes_range(data, size * bytes_of(dtype), task);
}

bool has_master(const runtime::Task& task) {
  return task.ops.mixed != nullptr && task.ops.mixed->master != nullptr;
}

// Every written range of every task, sorted by where it begins.
std::vector<Written> sorted_ranges(const Scratch& scratch) {
  std::vector<Written> ranges;
  for (std::size_t t = 0; t < scratch.tasks.size(); ++t) {
    const runtime::Task& task = scratch.tasks[t];
    const Dtype dtype = scratch.origins[t].dtype;
    ranges.push_back(range_of(task.ops.param, task.size, dtype, t));
    const Mixed* mixed = task.ops.mixed;
    // A task without a Mixed stores its states natively, but for the bf16_states kernel's: half
    // the bytes of float32 ones (sized as float32, the range ran past the array into other keys').
    const StateFormat unmixed =
        scratch.origins[t].bf16_states ? StateFormat::kBFloat16 : StateFormat::kNative;
    for (int s = 0; s < kMaxStates; ++s) {
      const void* state = task.ops.state[s];
      if (state == nullptr) continue;
      const StateFormat format = mixed != nullptr ? mixed->state_format[s] : unmixed;
      ranges.push_back(bytes_range(state, state_bytes(format, dtype, task.size), t));
      if (format == StateFormat::kInt8)
        ranges.push_back(bytes_range(mixed->absmax[s], 4 * absmax_count(task.size), t));
    }
    if (task.ops.mixed != nullptr && task.ops.mixed->master != nullptr)
      ranges.push_back(range_of(task.ops.mixed->master, task.size, Dtype::kFloat32, t));
    if (task.ops.mixed != nullptr && task.ops.mixed->compensation != nullptr)
      ranges.push_back(range_of(task.ops.mixed->compensation, task.size, dtype, t));
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Written& a, const Written& b) { return a.begin < b.begin; });
  return ranges;
}

// The union of every task's written arrays: sorted, disjoint stretches, each marked with the one
// task that writes it or kSeveralKeys.
std::vector<Written> written_memory(const Scratch& scratch) {
  const std::vector<Written> ranges = sorted_ranges(scratch);
  std::vector<Written> merged;
  for (const Written& r : ranges) {
    if (merged.empty() || r.begin >= merged.back().end) {
      merged.push_back(r);
      continue;
    }
    Written& last = merged.back();
    last.end = std::max(last.end, r.end);
    if (last.task != r.task) last.task = kSeveralKeys;
  }
  return merged;
}

// True when [begin, end) overlaps memory that a task other than `task` writes.
bool touches_another_key(const std::vector<Written>& written, std::uintptr_t begin,
                         std::uintptr_t end, std::size_t task) {
  auto it = std::upper_bound(written.begin(), written.end(), begin,
                             [](std::uintptr_t at, const Written& w) { return at < w.end; });
  for (; it != written.end() && it->begin < end; ++it) {
    if (it->task != task) return true;
  }
  return false;
}

}  // namespace

void check_tied_masters(const Scratch& scratch) {
  const std::vector<Written> ranges = sorted_ranges(scratch);
  const Written* reach = nullptr;  // the range reaching furthest so far
  for (const Written& r : ranges) {
    if (reach != nullptr && r.begin < reach->end && r.task != reach->task &&
        (has_master(scratch.tasks[r.task]) || has_master(scratch.tasks[reach->task]))) {
      const std::size_t first = std::min(r.task, reach->task),
                        second = std::max(r.task, reach->task);
      const std::size_t half = has_master(scratch.tasks[first]) ? first : second;
      throw pybind11::value_error(
          "params[" + std::string(pybind11::repr(scratch.origins[first].key)) + "] and params[" +
          std::string(pybind11::repr(scratch.origins[second].key)) + "] share memory, and params[" +
          std::string(pybind11::repr(scratch.origins[half].key)) + "] is " +
          dtype_name(scratch.origins[half].dtype) +
          " with master weights: each key keeps its own float32 master and writes the param "
          "from it, so tied keys would overwrite each other's updates. Give the tied array one "
          "key, or use master_weights=False (with rounding='stochastic' or compensation=True).");
    }
    if (reach == nullptr || r.end > reach->end) reach = &r;
  }
}

Aliasing find_aliasing(const Scratch& scratch, bool several_threads) {
  Aliasing found;
  const std::vector<Written> written = written_memory(scratch);
  for (std::size_t c = 0; c < scratch.converted_grads.size(); ++c) {
    const ConvertedGrad& grad = scratch.converted_grads[c];
    if (touches_another_key(written, grad.bytes.begin, grad.bytes.end, grad.task))
      found.deferred.push_back(c);
  }
  found.in_order = !found.deferred.empty();
  if (found.in_order || !several_threads) return found;
  for (const Written& w : written) {
    if (w.task == kSeveralKeys) {
      found.in_order = true;
      return found;
    }
  }
  // The grads as the kernels read them. None overlaps its own key's param or states (validation
  // copied those), so any overlap with written memory is with another key's.
  for (std::size_t t = 0; t < scratch.tasks.size(); ++t) {
    const runtime::Task& task = scratch.tasks[t];
    const Written grad = range_of(task.ops.grad, task.size, scratch.origins[t].grad_dtype, t);
    if (touches_another_key(written, grad.begin, grad.end, t)) {
      found.in_order = true;
      return found;
    }
  }
  return found;
}

bool grad_shares_a_state(const runtime::Task& task, const Mixed& mixed, const KernelRow& row,
                         const ArrayView& param, Dtype grad_dtype) {
  const std::int64_t grad_bytes = param.size * bytes_of(grad_dtype);
  for (int s = 0; s < row.num_states; ++s) {
    const StateFormat format = mixed.state_format[s];
    if (overlaps(task.ops.grad, grad_bytes, task.ops.state[s],
                 state_bytes(format, param.dtype, param.size)) ||
        (format == StateFormat::kInt8 &&
         overlaps(task.ops.grad, grad_bytes, mixed.absmax[s], 4 * absmax_count(param.size)))) {
      return true;
    }
  }
  return (mixed.master != nullptr &&
          overlaps(task.ops.grad, grad_bytes, mixed.master, param.size * 4)) ||
         (mixed.compensation != nullptr && overlaps(task.ops.grad, grad_bytes, mixed.compensation,
                                                    param.size * bytes_of(param.dtype)));
}

}  // namespace fastopt::bindings
