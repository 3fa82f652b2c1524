#include "runtime/executor.hpp"

#include <algorithm>
#include <cmath>

#include "runtime/thread_pool.hpp"

namespace fastopt::runtime {
namespace {

// Chunks per thread: enough that a thread slowed by the rest of the machine hands work to the
// others, few enough that each chunk is a long stream for the hardware prefetchers.
constexpr std::int64_t kChunksPerThread = 4;
// Chunk sizes are a multiple of this many elements, so chunk edges fall on cache-line multiples
// within a task that starts on one, and threads rarely share a line.
constexpr std::int64_t kChunkQuantum = 64;
// Streaming from L2 at ~100 GB/s.
constexpr double kNsPerByte = 0.01;

}  // namespace

double ns_per_element(const KernelRow& row, Dtype dtype) {
  const Dtype compute = compute_of(dtype);
  const int streams = 3 + 2 * row.num_states;  // read p, g, states; write p, states
  return static_cast<double>(streams * bytes_of(compute)) * kNsPerByte +
         row.div_sqrt * (compute == Dtype::kFloat32 ? 0.25 : 0.6);
}

double ns_per_read(Dtype dtype) { return static_cast<double>(bytes_of(dtype)) * kNsPerByte; }

int threads_for(double work_ns, int num_threads) {
  const double most = std::floor(work_ns / kGrainNs);
  return static_cast<int>(std::max(1.0, std::min<double>(num_threads, most)));
}

std::int64_t chunk_size(std::int64_t total, int threads) {
  std::int64_t chunk = (total + threads * kChunksPerThread - 1) / (threads * kChunksPerThread);
  return (chunk + kChunkQuantum - 1) / kChunkQuantum * kChunkQuantum;
}

void run_in_order(const std::vector<Task>& tasks, std::size_t from, std::size_t to) {
  for (std::size_t t = from; t < to; ++t)
    tasks[t].fn(tasks[t].scalars, tasks[t].ops, 0, tasks[t].size);
}

void run_tasks(const std::vector<Task>& tasks, std::int64_t total, Job& job) {
  const int threads = job.threads();
  if (threads <= 1) return run_in_order(tasks, 0, tasks.size());
  std::vector<std::int64_t> starts(tasks.size() + 1, 0);
  for (std::size_t t = 0; t < tasks.size(); ++t) starts[t + 1] = starts[t] + tasks[t].size;
  const std::int64_t chunk = chunk_size(total, threads);
  const std::int64_t num_chunks = (total + chunk - 1) / chunk;
  auto run_chunk = [&](std::int64_t c) {
    pieces_of_chunk(starts, total, chunk, c, [&](const Piece& piece) {
      const Task& task = tasks[piece.task];
      task.fn(task.scalars, task.ops, piece.from, piece.to);
    });
  };
  job.run(num_chunks, ChunkFn(run_chunk));
}

void run_tasks(const std::vector<Task>& tasks, std::int64_t total, int threads, double work_ns,
               int kind) {
  Job job(threads, work_ns, kind);
  run_tasks(tasks, total, job);
}

}  // namespace fastopt::runtime
