// Runs the kernel calls of one update(), split into chunks across threads.
//
// A Task is one kernel over one key's arrays. The runtime only sees tasks, never Python objects, so
// it runs with the GIL released. The work of one update() is the concatenation of its tasks'
// elements: many small arrays share a chunk, and a large array spans many chunks. Each element is
// computed by the same scalar or SIMD code whichever chunk holds it (rules are element-wise), so
// results are bit-identical for every thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/table.hpp"

namespace fastopt::runtime {

struct Task {
  KernelFn fn;
  const double* scalars;
  Operands ops;
  std::int64_t size;  // elements; 64-bit so that arrays over 2^31 elements are whole
};

// The least work, in elements, worth giving to one more thread. Waking a sleeping worker costs
// ~10 us on this kind of machine (median, condition variable round trip); 2^15 elements are
// ~15 us of Adam in cache-resident float64 and ~40 us of memory-bound float32.
inline constexpr std::int64_t kGrain = std::int64_t{1} << 15;
// From this many elements an update wakes sleeping workers even when it is not one of a run of
// back-to-back calls: ~0.2 ms of memory-bound float32, ~0.5 ms of float64 Adam, well above the
// ~0.1 ms that waking costs on a VM.
inline constexpr std::int64_t kLargeJob = std::int64_t{1} << 18;

// How many threads an update of `total` elements uses, given the thread count setting.
int threads_for(std::int64_t total, int num_threads);

// Runs every task over its whole size on up to `threads` threads.
void run_tasks(const std::vector<Task>& tasks, std::int64_t total, int threads);

}  // namespace fastopt::runtime
