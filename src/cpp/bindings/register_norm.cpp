// sum_of_squares(arrays): the deterministic sum behind fastopt.clip_grad_norm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <vector>

#include "bindings/active_level.hpp"
#include "bindings/predicates.hpp"
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

// The sum of squares of every element of `arrays`, in double. Chunks of kNormChunk elements are
// summed in parallel and then added in order, so the result has the same bits for every thread
// count and SIMD level. The items are real arrays or scalars (fastopt.clip has checked their
// types); native float32/float64 arrays, contiguous and aligned, are read in place, anything
// else is first converted to float64. The common case is decided here from NumPy's structs:
// deciding it in Python cost ~0.8 us an array, 20 us for a network of 22 small arrays.
double sum_of_squares(py::sequence arrays) {
  std::vector<py::array> keep;
  std::vector<Chunk> chunks;
  std::int64_t elements = 0;
  for (py::handle item : arrays) {
    ArrayView view;
    if (usable_view(item.ptr(), 0, &view)) {  // native float32/float64, contiguous, aligned
      keep.push_back(py::reinterpret_borrow<py::array>(item));
    } else {
      // The converting constructor, not array_t::ensure: ensure clears the Python error of a
      // failed conversion (10**400 overflows), which must reach the caller as it is.
      keep.push_back(py::array_t<double, py::array::c_style | py::array::forcecast>(
          py::reinterpret_borrow<py::object>(item)));
      const bool usable = usable_view(keep.back().ptr(), 0, &view);
      (void)usable;  // a new C-contiguous float64 array, usable by construction
    }
    elements += view.size;
    for (std::int64_t begin = 0; begin < view.size; begin += kNormChunk) {
      chunks.push_back({view.data, view.dtype, begin, std::min(view.size, begin + kNormChunk)});
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
    // ~0.3 ns an element (a read and a multiply-add in double); from the real element count:
    // counting every chunk as full woke a helper thread for 22 arrays of 8 elements (3 us, not 1).
    const double work_ns = static_cast<double>(elements) * 0.3;
    const int threads = runtime::threads_for(work_ns, runtime::num_threads());
    runtime::parallel_for(static_cast<std::int64_t>(chunks.size()), threads,
                          runtime::ChunkFn(run_chunk), work_ns, runtime::kJobNorm);
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
