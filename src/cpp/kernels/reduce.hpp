// Reductions: the sum of squares behind a gradient norm, in an order fixed by the data alone; and
// the check for non-finite gradients behind every optimizer's nonfinite="skip" | "raise".
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
#include <cstring>
#include <type_traits>

#include "kernels/half.hpp"
#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// How the reductions read each storage format: its bits, its significand's width, and its value
// as a double (exact for every format).
template <Dtype D>
struct Stored {
  using Storage =
      std::conditional_t<D == Dtype::kFloat32, float,
                         std::conditional_t<D == Dtype::kFloat64, double, std::uint16_t>>;
  using Bits =
      std::conditional_t<sizeof(Storage) == 2, std::uint16_t,
                         std::conditional_t<sizeof(Storage) == 4, std::uint32_t, std::uint64_t>>;
  static constexpr int kMantissa = D == Dtype::kFloat32    ? 23
                                   : D == Dtype::kFloat64  ? 52
                                   : D == Dtype::kBFloat16 ? 7
                                                           : 10;
  static double value(Storage x) {
    if constexpr (D == Dtype::kBFloat16) {
      return half::widen_bf16(x);
    } else if constexpr (D == Dtype::kFloat16) {
      return half::widen_f16_bits(x);
    } else {
      return x;
    }
  }
};

template <Dtype D>
double sum_of_squares(const void* data, std::int64_t begin, std::int64_t end) {
  using F = Stored<D>;
  constexpr int kLanes = 8;
  const typename F::Storage* __restrict x = static_cast<const typename F::Storage*>(data) + begin;
  const std::int64_t n = end - begin;
  double lane[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double v = F::value(x[i + k]);
      lane[k] = lane[k] + v * v;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {  // the tail continues the same lanes
    const double v = F::value(x[i]);
    lane[k] = lane[k] + v * v;
  }
  double total = 0;
  for (int k = 0; k < kLanes; ++k) total = total + lane[k];
  return total;
}

// A KernelFn that reads grad elements [begin, end) and sets *ops.nonfinite_found (a byte) to 1 if
// any is inf or nan. It only reads (one stream), writes nothing else, and its answer does not
// depend on how the elements are split into chunks, so it is deterministic across thread counts.
//
// The test is on the bits, not on floating-point compares: an element is non-finite exactly when
// its exponent field is all ones, and then adding one unit of the lowest exponent bit to that field
// carries into the sign bit. So OR-ing (bits & exponent) + lowest-exponent-bit over a block and
// testing the sign bit of the result needs only and, add and or: no compare, no floating-point
// exception flag, and 64-bit lanes vectorize even at the baseline level (SSE2 has no 64-bit
// compare). The loop stops at the first block holding a non-finite value.
template <Dtype D>
void flag_nonfinite(const double* /*scalars*/, const Operands& ops, std::int64_t begin,
                    std::int64_t end) {
  using T = typename Stored<D>::Storage;
  using U = typename Stored<D>::Bits;
  constexpr int kBits = 8 * sizeof(T);
  constexpr int kMantissa = Stored<D>::kMantissa;
  // Built in U: uint16_t operands promote to int, whose ~0 >> 1 would keep the sign bit.
  constexpr U kAllOnes = static_cast<U>(~U(0));
  constexpr U kLowestExponentBit = static_cast<U>(U(1) << kMantissa);
  constexpr U kExponent = static_cast<U>((kAllOnes >> 1) & ~(kLowestExponentBit - 1u));
  constexpr std::int64_t kBlock = 2048;  // elements between early-exit tests: 8-16 KiB, in L1
  const T* __restrict x = static_cast<const T*>(ops.grad);
  // Has the sign bit set exactly when element i is inf or nan.
  auto marked = [x](std::int64_t i) {
    U bits;
    std::memcpy(&bits, x + i, sizeof bits);
    return static_cast<U>((bits & kExponent) + kLowestExponentBit);
  };
  for (std::int64_t start = begin; start < end; start += kBlock) {
    const std::int64_t stop = end - start < kBlock ? end : start + kBlock;
    // Sixteen independent lanes (several vector registers at every level), so the loop is not one
    // chain of dependent ORs: from L1 that ran at 50 GB/s here, this at ~90.
    constexpr int kLanes = 16;
    U lane[kLanes] = {};
    std::int64_t i = start;
    for (; i + kLanes <= stop; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) lane[k] |= marked(i + k);
    }
    U any = 0;
    for (; i < stop; ++i) any |= marked(i);
    for (int k = 0; k < kLanes; ++k) any |= lane[k];
    if (any >> (kBits - 1)) {
      // Several chunks may find one at once: a relaxed atomic store of the same value (the
      // GCC/Clang builtin: std::atomic_ref is C++20).
      __atomic_store_n(ops.nonfinite_found, 1, __ATOMIC_RELAXED);
      return;
    }
  }
}

}  // namespace fastopt::FASTOPT_LEVEL_NS
