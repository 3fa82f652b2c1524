// Reductions: the sum of squares behind a gradient norm, in an order fixed by the data alone.
//
// A norm must have the same bits for every thread count and SIMD level. So the sum is taken over
// chunks of a fixed size (kNormChunk elements of one array; the runtime sums the chunks' results
// in order), and within a chunk element i always goes to partial sum i % kLanes, in double. The
// partial sums are added in a fixed order at the end. Compiled without fast-math, any
// vectorization the compiler does must keep exactly this order, so every level gives the same bits.
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "reduce.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>

namespace fastopt::FASTOPT_LEVEL_NS {

template <class T>
double sum_of_squares(const void* data, std::int64_t begin, std::int64_t end) {
  constexpr int kLanes = 8;
  const T* __restrict x = static_cast<const T*>(data) + begin;
  const std::int64_t n = end - begin;
  double lane[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double v = static_cast<double>(x[i + k]);
      lane[k] = lane[k] + v * v;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {  // the tail continues the same lanes
    const double v = static_cast<double>(x[i]);
    lane[k] = lane[k] + v * v;
  }
  double total = 0;
  for (int k = 0; k < kLanes; ++k) total = total + lane[k];
  return total;
}

}  // namespace fastopt::FASTOPT_LEVEL_NS
