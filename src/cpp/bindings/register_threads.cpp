// The thread count, the cores available, and testing aids for the chunk plan.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/executor.hpp"
#include "runtime/sharing_policy.hpp"
#include "runtime/thread_pool.hpp"

// The thread count as plain C symbols, for threadpoolctl: it finds a library's thread pool by
// looking up such symbols in the loaded shared object (python/fastopt/_threadpoolctl.py). The
// rest of the module keeps hidden visibility.
extern "C" {
__attribute__((visibility("default"))) int fastopt_get_num_threads(void) {
  return fastopt::runtime::num_threads();
}
__attribute__((visibility("default"))) void fastopt_set_num_threads(int threads) {
  fastopt::runtime::set_num_threads(threads);  // clamps to >= 1
}
}

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

// Testing aid: how Updater.run would split tasks of these sizes (no memory is touched).
py::tuple chunk_plan(const std::vector<std::int64_t>& sizes, int threads) {
  std::vector<std::int64_t> starts(sizes.size() + 1, 0);
  for (std::size_t t = 0; t < sizes.size(); ++t) starts[t + 1] = starts[t] + sizes[t];
  const std::int64_t total = starts.back();
  const std::int64_t chunk = runtime::chunk_size(total, threads);
  std::vector<std::tuple<std::int64_t, std::size_t, std::int64_t, std::int64_t>> plan;
  for (std::int64_t c = 0; c * chunk < total; ++c) {
    runtime::pieces_of_chunk(starts, total, chunk, c, [&](const runtime::Piece& piece) {
      plan.emplace_back(c, piece.task, piece.from, piece.to);
    });
  }
  return py::make_tuple(chunk, plan);
}

}  // namespace

void register_threads(py::module_& m) {
  m.def(
      "set_num_threads",
      [](int threads) {
        if (threads < 1)
          throw py::value_error("the thread count must be >= 1; got " + std::to_string(threads));
        runtime::set_num_threads(threads);
      },
      py::arg("threads"), "Set the number of threads update() may use (process-wide).");
  m.def("get_num_threads", &runtime::num_threads, "The number of threads update() may use.");
  m.def("_chunk_plan", &chunk_plan, py::arg("sizes"), py::arg("threads"),
        "Testing aid: (chunk size, [(chunk, task, from, to)]) for tasks of these sizes.");
  m.def("_chunks_run_by_helpers", &runtime::chunks_run_by_helpers,
        "Testing aid: chunks run by helper threads since the process started.");
  m.def("_force_sharing", &runtime::force_sharing, py::arg("mode"),
        "Testing aid: 1 shares every job of 2+ threads, 0 none, -1 lets the pool's policy decide.");
  m.def(
      "_sharing_decisions",
      [](const std::vector<std::tuple<double, double, double, int>>& jobs) {
        auto policy = std::make_unique<runtime::SharingPolicy>();
        std::vector<bool> decisions;
        for (const auto& [work_ns, shared_seconds, alone_seconds, kind] : jobs) {
          const bool shared = policy->share(work_ns, kind);
          policy->record(work_ns, kind, shared, shared ? shared_seconds : alone_seconds);
          decisions.push_back(shared);
        }
        return decisions;
      },
      py::arg("jobs"),
      "Testing aid: a fresh sharing policy's decisions for jobs (work_ns, seconds if shared, "
      "seconds if alone, kind), each recorded as the policy chose to run it.");
  m.def("available_cores", &runtime::available_cores,
        "The number of cores this process may run on (its CPU affinity).");
}

}  // namespace fastopt::bindings
