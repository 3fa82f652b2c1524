// sum_of_squares(arrays): the deterministic sum behind fastopt.clip_grad_norm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "bindings/active_level.hpp"
#include "bindings/arrays.hpp"
#include "bindings/without_gil.hpp"
#include "runtime/executor.hpp"
#include "runtime/thread_pool.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

struct Chunk {
  const void* data;
  Dtype dtype;
  std::int64_t begin, end;
};

// The sum of squares of every element of `arrays` (a sequence of C- or Fortran-contiguous
// float32/float64 arrays; the caller has converted anything else), in double. Chunks of
// kNormChunk elements are summed in parallel and then added in order, so the result has the same
// bits for every thread count and SIMD level.
double sum_of_squares(py::sequence arrays) {
  std::vector<py::array> keep;
  std::vector<Chunk> chunks;
  for (py::handle item : arrays) {
    // The caller (fastopt.clip) passes native float32/float64 arrays, contiguous and aligned,
    // converting anything else first.
    if (!py::isinstance<py::array>(item)) throw py::type_error("sum_of_squares takes ndarrays");
    auto array = py::reinterpret_borrow<py::array>(item);
    const int num = array.dtype().num();
    const bool native = array.dtype().byteorder() != '>';
    const int flags = array.flags();
    constexpr int kContiguous =
        py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_F_CONTIGUOUS_;
    if ((num != py::detail::npy_api::NPY_FLOAT_ && num != py::detail::npy_api::NPY_DOUBLE_) ||
        !native || !(flags & kContiguous) || !(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
      throw py::type_error("sum_of_squares takes contiguous, aligned float32/float64 arrays");
    }
    keep.push_back(array);
    const Dtype dtype = num == py::detail::npy_api::NPY_FLOAT_ ? Dtype::kFloat32 : Dtype::kFloat64;
    const auto size = static_cast<std::int64_t>(array.size());
    for (std::int64_t begin = 0; begin < size; begin += kNormChunk) {
      chunks.push_back({array.data(), dtype, begin, std::min(size, begin + kNormChunk)});
    }
  }
  std::vector<double> sums(chunks.size(), 0.0);
  const KernelTable table = active_level().table();
  without_gil([&] {
    auto run_chunk = [&](std::int64_t c) {
      const Chunk& chunk = chunks[static_cast<std::size_t>(c)];
      sums[static_cast<std::size_t>(c)] =
          table.sum_squares[static_cast<int>(chunk.dtype)](chunk.data, chunk.begin, chunk.end);
    };
    const std::int64_t total = static_cast<std::int64_t>(chunks.size()) * kNormChunk;
    const int threads =
        runtime::threads_for(static_cast<double>(total) * 0.3, runtime::num_threads());
    runtime::parallel_for(static_cast<std::int64_t>(chunks.size()), threads,
                          runtime::ChunkFn(run_chunk), false);
  });
  double total = 0;
  for (const double sum : sums) total = total + sum;  // in order: the same bits every time
  return total;
}

}  // namespace

void register_norm(py::module_& m) {
  m.def("sum_of_squares", &sum_of_squares, py::arg("arrays"),
        "The sum of squares of all elements of the arrays, in double, with the same bits for "
        "every thread count and SIMD level.");
}

}  // namespace fastopt::bindings
