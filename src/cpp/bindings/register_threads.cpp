// The thread count, the cores available, and testing aids for the chunk plan.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/executor.hpp"
#include "runtime/thread_pool.hpp"

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
  m.def("available_cores", &runtime::available_cores,
        "The number of cores this process may run on (its CPU affinity).");
}

}  // namespace fastopt::bindings
