// Runs the kernel calls of one update().
//
// A Task is one kernel over one key's arrays. The runtime only sees tasks, never Python objects, so
// it can run with the GIL released. This is the serial executor; the thread pool (chunking large
// arrays, batching small ones) replaces run_tasks without changing Task.
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

inline void run_tasks(const std::vector<Task>& tasks) {
  for (const Task& task : tasks) task.fn(task.scalars, task.ops, 0, task.size);
}

}  // namespace fastopt::runtime
