// The vector passes of the line-search methods (L-BFGS, nonlinear conjugate gradients): each
// writes one flat vector (or a param) element by element and, in the same pass, sums what the
// method needs next of the value it wrote: dot products with up to two other vectors, its own sum
// of squares, its largest and summed magnitude. One pass per formula of the textbook's two-loop
// recursion (Nocedal & Wright, Algorithm 7.4) instead of one for the axpy and another for the dot
// product after it: the next dot reads the vector while it is still in registers.
//
// Results must not depend on the SIMD level or the thread count. The bindings cut the vectors
// into pieces fixed by the data alone, and within a piece element i goes to partial sum i % kLanes,
// in double; the lanes and then the pieces are added in a fixed order. Compiled without fast-math
// and without contraction, a vectorized loop keeps exactly this order, so every level gives the
// same bits (as reduce.hpp's norms).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "search.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>

#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace search {

constexpr int kLanes = 8;

// The larger of a running maximum and |v|, NaN-sticky: torch's max() propagates a NaN, and a
// stopping test on a NaN maximum must not pass.
inline double max_magnitude(double running, double v) {
  const double magnitude = v < 0 ? -v : v;
  return (running != running || magnitude <= running) ? running : magnitude;
}

// Runs value(i) for i in [0, n) (it writes element i and returns it) and sums, per lane, the
// value's dot products with the kDots vectors `with`, its square, magnitude and running maximum.
// `with` may alias what value(i) writes (a pair's dot of y with s): no __restrict on it.
template <class T, int kDots, class Value>
void accumulate(std::int64_t n, const T* const* with, Value&& value, SearchSums* sums) {
  double dot[2][kLanes] = {};
  double square[kLanes] = {}, magnitude[kLanes] = {}, largest[kLanes] = {};
  auto lane = [&](std::int64_t i, int k) {
    const double v = static_cast<double>(value(i));
    for (int j = 0; j < kDots; ++j) dot[j][k] = dot[j][k] + v * static_cast<double>(with[j][i]);
    square[k] = square[k] + v * v;
    magnitude[k] = magnitude[k] + (v < 0 ? -v : v);
    largest[k] = max_magnitude(largest[k], v);
  };
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) lane(i + k, k);
  }
  for (int k = 0; i < n; ++i, ++k) lane(i, k);  // the tail continues the same lanes
  for (int k = 0; k < kLanes; ++k) {
    for (int j = 0; j < kDots; ++j) sums->dot[j] = sums->dot[j] + dot[j][k];
    sums->square = sums->square + square[k];
    sums->magnitude = sums->magnitude + magnitude[k];
    sums->largest = max_magnitude(sums->largest, largest[k]);
  }
}

template <class T, class Value>
void accumulate_with(const SearchPass& p, std::int64_t n, Value&& value, SearchSums* sums) {
  const T* with[2] = {static_cast<const T*>(p.with[0]), static_cast<const T*>(p.with[1])};
  switch (p.num_with) {
    case 0:
      return accumulate<T, 0>(n, with, value, sums);
    case 1:
      return accumulate<T, 1>(n, with, value, sums);
    default:
      return accumulate<T, 2>(n, with, value, sums);
  }
}

// The passes over flat vectors of the compute type T (see SearchOp for each formula). Scalars
// (alpha, beta) are rounded to T once, as the optimizers' kernels do with theirs.
template <class T>
void flat_pass(const SearchPass& p, std::int64_t n, SearchSums* sums) {
  T* __restrict out = static_cast<T*>(p.out);
  const T* __restrict a = static_cast<const T*>(p.a);
  const T* __restrict b = static_cast<const T*>(p.b);
  const T alpha = static_cast<T>(p.alpha), beta = static_cast<T>(p.beta);
  switch (p.op) {
    case SearchOp::kNegate:  // out = -a
      return accumulate_with<T>(p, n, [&](std::int64_t i) { return out[i] = -a[i]; }, sums);
    case SearchOp::kNegatePlus:  // out = -a + beta * b
      return accumulate_with<T>(
          p, n, [&](std::int64_t i) { return out[i] = -a[i] + beta * b[i]; }, sums);
    case SearchOp::kAxpy:  // out = out + alpha * a
      return accumulate_with<T>(
          p, n, [&](std::int64_t i) { return out[i] = out[i] + alpha * a[i]; }, sums);
    case SearchOp::kScale:  // out = out * alpha
      return accumulate_with<T>(p, n, [&](std::int64_t i) { return out[i] = out[i] * alpha; }, sums);
    case SearchOp::kPair: {  // out = a - b (y = g - prev g), out2 = alpha * c (s = t d)
      // with[0] is out2 (the sum y . s): no __restrict on out2, so its store is seen by that read.
      T* out2 = static_cast<T*>(p.out2);
      const T* __restrict c = static_cast<const T*>(p.c);
      return accumulate_with<T>(
          p, n,
          [&](std::int64_t i) {
            out2[i] = c[i] * alpha;
            return out[i] = a[i] - b[i];
          },
          sums);
    }
    default:
      return;
  }
}

// The passes between a param or grad of storage dtype S and flat vectors of T.
template <class T, class S>
void io_pass(const SearchPass& p, std::int64_t n, SearchSums* sums) {
  const T alpha = static_cast<T>(p.alpha);
  switch (p.op) {
    case SearchOp::kGather: {  // out (flat) = a (a grad or param, converted to T)
      T* __restrict out = static_cast<T*>(p.out);
      const S* __restrict a = static_cast<const S*>(p.a);
      return accumulate_with<T>(
          p, n, [&](std::int64_t i) { return out[i] = static_cast<T>(a[i]); }, sums);
    }
    case SearchOp::kPlace: {  // out (param) = a + alpha * b, in T; a flat, or null for out itself
      S* __restrict out = static_cast<S*>(p.out);
      const T* __restrict a = static_cast<const T*>(p.a);
      const T* __restrict b = static_cast<const T*>(p.b);
      if (b == nullptr) {
        for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<S>(a[i]);
      } else if (a == nullptr) {
        for (std::int64_t i = 0; i < n; ++i)
          out[i] = static_cast<S>(static_cast<T>(out[i]) + alpha * b[i]);
      } else {
        for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<S>(a[i] + alpha * b[i]);
      }
      return;
    }
    default:
      return;
  }
}

template <class T>
void pass(const SearchPass& p, std::int64_t n, SearchSums* sums) {
  if (p.op == SearchOp::kGather || p.op == SearchOp::kPlace) {
    if (p.io == Dtype::kFloat32) return io_pass<T, float>(p, n, sums);
    return io_pass<T, double>(p, n, sums);
  }
  flat_pass<T>(p, n, sums);
}

}  // namespace search
}  // namespace fastopt::FASTOPT_LEVEL_NS
