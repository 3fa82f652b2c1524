#include "bindings/nonfinite.hpp"

#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/without_gil.hpp"
#include "runtime/thread_pool.hpp"

namespace fastopt::bindings {
namespace {

constexpr const char* kNames[] = {"propagate", "skip", "raise"};

// Counts by the bits: an exponent of all ones is inf with a zero significand, nan otherwise.
template <class U, int kMantissa>
std::string describe_nonfinite(const void* data, std::int64_t size) {
  constexpr U kSignificand = static_cast<U>((U(1) << kMantissa) - 1u);
  constexpr U kExponent = static_cast<U>(static_cast<U>(~U(0)) >> 1 & ~kSignificand);
  const U* x = static_cast<const U*>(data);
  std::int64_t nans = 0, infs = 0;
  for (std::int64_t i = 0; i < size; ++i) {
    if ((x[i] & kExponent) != kExponent) continue;
    ++((x[i] & kSignificand) != 0 ? nans : infs);
  }
  return std::to_string(nans) + " nan and " + std::to_string(infs) + " inf among " +
         std::to_string(size) + " elements";
}

}  // namespace

bool parse_nonfinite(const std::string& name, Nonfinite* out) {
  for (int mode = 0; mode < 3; ++mode) {
    if (name == kNames[mode]) {
      *out = static_cast<Nonfinite>(mode);
      return true;
    }
  }
  return false;
}

const char* nonfinite_name(Nonfinite mode) { return kNames[static_cast<int>(mode)]; }

// One read-only pass over the grads, split across threads like the update itself; each task's
// answer is exact whatever the split, so the task found is the same for every thread count and
// SIMD level. Each check writes its own byte of scratch.found (Operands::nonfinite_found).
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
    runtime::Task check{
        table.flag_nonfinite[static_cast<int>(origin.grad_dtype)], nullptr, {}, size};
    check.ops.grad = task.ops.grad;
    check.ops.grad_scale = 1.0;
    check.ops.nonfinite_found = &scratch.found[t];
    scratch.checks.push_back(check);
    total += size;
    work_ns += static_cast<double>(size) * runtime::ns_per_read(origin.grad_dtype);
  }
  if (total == 0) return -1;
  const int threads = runtime::threads_for(work_ns, runtime::num_threads());
  run_released_if_large(work_ns, [&] {
    runtime::run_tasks(scratch.checks, total, threads, work_ns, runtime::kJobNonfiniteCheck);
  });
  for (std::size_t t = 0; t < n; ++t) {
    if (scratch.found[t]) return static_cast<std::int64_t>(t);
  }
  return -1;
}

void raise_nonfinite(const Scratch& scratch, std::int64_t t) {
  const runtime::Task& task = scratch.tasks[static_cast<std::size_t>(t)];
  const TaskOrigin& origin = scratch.origins[static_cast<std::size_t>(t)];
  using Describe = std::string (*)(const void*, std::int64_t);
  constexpr Describe kDescribe[kNumDtypes] = {
      &describe_nonfinite<std::uint32_t, 23>, &describe_nonfinite<std::uint64_t, 52>,
      &describe_nonfinite<std::uint16_t, 7>, &describe_nonfinite<std::uint16_t, 10>};
  const std::string counts =
      kDescribe[static_cast<int>(origin.grad_dtype)](task.ops.grad, task.size);
  PyErr_SetString(PyExc_FloatingPointError,
                  ("grads[" + std::string(pybind11::repr(origin.key)) + "] is not finite (" +
                   counts + "); nothing was updated (nonfinite='raise')")
                      .c_str());
  throw pybind11::error_already_set();
}

}  // namespace fastopt::bindings
