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
#include "runtime/thread_pool.hpp"

namespace fastopt::runtime {

struct Task {
  KernelFn fn;
  const double* scalars;
  Operands ops;
  std::int64_t size;  // elements; 64-bit so that arrays over 2^31 elements are whole
};

// How long a task takes, roughly, in nanoseconds per element: its memory traffic plus its divides
// and square roots, the two things that bound these kernels (docs/performance.md). Measured on one
// core of the development machine (AVX2), in L2: ~100 GB/s streaming, and a divide or square root
// every ~0.25 ns in float32 and ~0.6 ns in float64. It only decides how many threads to use, never
// what is computed.
double ns_per_element(const KernelRow& row, Dtype dtype);
// The same for a pass that only reads one array (the non-finite check).
double ns_per_read(Dtype dtype);

// The least work worth giving to one more thread. A helper that is awake (calls back to back)
// joins within a microsecond or two and a chunk hand-off costs about as much; 20 us keeps that
// overhead near 10%.
inline constexpr double kGrainNs = 20e3;

// How many threads an update of `work_ns` nanoseconds uses, given the thread count setting.
int threads_for(double work_ns, int num_threads);

// The part of one task a chunk covers: elements [from, to) of task `task`.
struct Piece {
  std::size_t task;
  std::int64_t from, to;
};

// How update() splits tasks of these sizes into chunks for `threads` threads: the chunk size, and
// for each chunk the pieces of tasks it covers, in order. All arithmetic is 64-bit: arrays of more
// than 2^31 elements are split whole (tested with such sizes, without allocating them).
std::int64_t chunk_size(std::int64_t total, int threads);
template <class Visit>
void pieces_of_chunk(const std::vector<std::int64_t>& starts, std::int64_t total,
                     std::int64_t chunk, std::int64_t c, Visit&& visit);

// Runs tasks [from, to) whole, in order, on the calling thread.
void run_in_order(const std::vector<Task>& tasks, std::size_t from, std::size_t to);

// Runs every task over its whole size on the job's threads: whole and in order when it has one.
void run_tasks(const std::vector<Task>& tasks, std::int64_t total, Job& job);
// The same in a Job of its own (see Job for `threads`, `work_ns` and `kind`).
void run_tasks(const std::vector<Task>& tasks, std::int64_t total, int threads, double work_ns,
               int kind);

// starts[t] is where task t begins in the concatenation of all tasks (starts.back() == total).
template <class Visit>
void pieces_of_chunk(const std::vector<std::int64_t>& starts, std::int64_t total,
                     std::int64_t chunk, std::int64_t c, Visit&& visit) {
  const std::int64_t begin = c * chunk;
  const std::int64_t end = begin + chunk < total ? begin + chunk : total;
  // The last task that starts at or before `begin`.
  std::size_t t = 0, hi = starts.size() - 1;
  while (t + 1 < hi) {
    const std::size_t mid = (t + hi) / 2;
    if (starts[mid] <= begin)
      t = mid;
    else
      hi = mid;
  }
  for (; t + 1 < starts.size() && starts[t] < end; ++t) {
    const std::int64_t from = (begin > starts[t] ? begin : starts[t]) - starts[t];
    const std::int64_t to = (end < starts[t + 1] ? end : starts[t + 1]) - starts[t];
    if (from < to) visit(Piece{t, from, to});
  }
}

}  // namespace fastopt::runtime
