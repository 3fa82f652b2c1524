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
#include <cstring>
#include <type_traits>

#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace search {

constexpr int kLanes = 8;

// The lanes are written as GCC/Clang vectors of kPer doubles (8 / kPer of them make the 8 lanes),
// and the formulas compute kPer elements at once on vectors of T. Spelled as arrays of 8 lanes with a loop
// over them (reduce.hpp's way), GCC 12 vectorized these passes only when it knew n: called through
// the kernel table they ran at 0.8 G elements/s, in-order reductions and branches, against 4-7
// written this way. Lanes and their order are the same either way, so are the bits; IEEE
// arithmetic on a vector is that on each element. A vector is one register of the level (AVX2's
// and AVX-512's: 4 doubles, SSE2's: 2): a wider one was lowered through memory, 7-20x slower.
#if defined(__AVX__)
constexpr int kVectorBytes = 32;  // one AVX register
#else
constexpr int kVectorBytes = 16;  // one SSE2 register (a wider vector is lowered through memory)
#endif
constexpr int kPer = kVectorBytes / sizeof(double);  // lanes per vector of doubles
using Quad = double __attribute__((vector_size(kVectorBytes)));
using FloatQuad = float __attribute__((vector_size(kVectorBytes / 2)));
// The same vectors at any element alignment, for loads and stores. Typed, not memcpy: a memcpy
// store may alias anything, so the compiler reloaded every pointer after each one.
using QuadAt = double __attribute__((vector_size(kVectorBytes), aligned(alignof(double))));
using FloatQuadAt = float __attribute__((vector_size(kVectorBytes / 2), aligned(alignof(float))));
template <class T>
struct Vector;  // kPer elements of T
template <>
struct Vector<double> {
  using type = Quad;
  using at = QuadAt;
};
template <>
struct Vector<float> {
  using type = FloatQuad;
  using at = FloatQuadAt;
};

// kPer elements from p as V (a vector) or one as T; stores likewise.
template <class V, class T>
inline V load(const T* p) {
  if constexpr (std::is_same_v<V, T>) {
    return *p;
  } else {
    return *reinterpret_cast<const typename Vector<T>::at*>(p);
  }
}
template <class V, class T>
inline void store(T* p, V v) {
  if constexpr (std::is_same_v<V, T>) {
    *p = v;
  } else {
    *reinterpret_cast<typename Vector<T>::at*>(p) = v;
  }
}
// The same elements in double (exact: float widens exactly).
template <class V>
inline auto widen(V v) {
  if constexpr (std::is_same_v<V, FloatQuad>) {
    return __builtin_convertvector(v, Quad);
  } else {
    return static_cast<std::conditional_t<std::is_arithmetic_v<V>, double, Quad>>(v);
  }
}

// The running sums of one vector of kPer lanes (or of one lane, D = double), in double.
template <class D, int kDots>
struct Sums {
  D dot[2] = {}, square = {}, magnitude = {}, largest = {};
  template <class V, class T>
  void add(V value, const T* const* with, std::int64_t i) {
    const auto v = widen(value);
    for (int j = 0; j < kDots; ++j) dot[j] = dot[j] + v * widen(load<V>(with[j] + i));
    square = square + v * v;
    const D size = v < 0 ? -v : v;
    magnitude = magnitude + size;
    // One max instruction; a NaN is dropped here, and the caller makes the maximum NaN when the
    // sum of magnitudes is, which it is exactly when some element is NaN.
    largest = size > largest ? size : largest;
  }
};

// Runs the formula over [0, n) and sums, per lane (element i goes to lane i % kLanes), its value's
// dot products with the kDots vectors `with`, its square, magnitude and maximum. formula.template
// at<V>(i) computes elements i.. as V (a vector of kPer T, or one T), stores them and returns them.
// `with` may alias what it stores (a pair's dot of y with s): stores come first, and nothing is
// __restrict across them.
template <class T, int kDots, class Formula>
void accumulate(std::int64_t n, const T* const* with, const Formula& formula, SearchSums* out) {
  using V = typename Vector<T>::type;
  constexpr int kVectors = kLanes / kPer;
  Sums<Quad, kDots> part[kVectors];  // part v holds lanes v * kPer .. v * kPer + kPer - 1
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int v = 0; v < kVectors; ++v) part[v].add(formula.template at<V>(i + v * kPer), with, i + v * kPer);
  }
  Sums<double, kDots> lane[kLanes];  // the tail continues the same lanes, one element at a time
  for (int k = 0; k < kLanes; ++k) {
    const Sums<Quad, kDots>& from = part[k / kPer];
    for (int j = 0; j < kDots; ++j) lane[k].dot[j] = from.dot[j][k % kPer];
    lane[k].square = from.square[k % kPer];
    lane[k].magnitude = from.magnitude[k % kPer];
    lane[k].largest = from.largest[k % kPer];
  }
  for (int k = 0; i < n; ++i, ++k) lane[k].add(formula.template at<T>(i), with, i);
  for (int k = 0; k < kLanes; ++k) {  // the lanes in order
    for (int j = 0; j < kDots; ++j) out->dot[j] = out->dot[j] + lane[k].dot[j];
    out->square = out->square + lane[k].square;
    out->magnitude = out->magnitude + lane[k].magnitude;
    out->largest = lane[k].largest > out->largest ? lane[k].largest : out->largest;
  }
  // torch's max() propagates a NaN, and a stopping test on a NaN maximum must not pass.
  if (out->magnitude != out->magnitude) out->largest = out->magnitude;
}

template <class T, class Formula>
void accumulate_with(const SearchPass& p, std::int64_t n, const Formula& formula,
                     SearchSums* sums) {
  const T* with[2] = {static_cast<const T*>(p.with[0]), static_cast<const T*>(p.with[1])};
  switch (p.num_with) {
    case 0:
      return accumulate<T, 0>(n, with, formula, sums);
    case 1:
      return accumulate<T, 1>(n, with, formula, sums);
    default:
      return accumulate<T, 2>(n, with, formula, sums);
  }
}

// The formulas (see SearchOp). Each holds its pointers and its scalars rounded to T once, as the
// optimizers' kernels do with theirs; at<V>(i) is elements i.. as V, stored and returned.
template <class T>
struct Negate {  // out = -a
  T* out;
  const T* a;
  template <class V>
  V at(std::int64_t i) const {
    const V v = -load<V>(a + i);
    store(out + i, v);
    return v;
  }
};
template <class T>
struct NegatePlus {  // out = -a + beta * b
  T* out;
  const T *a, *b;
  T beta;
  template <class V>
  V at(std::int64_t i) const {
    const V v = -load<V>(a + i) + beta * load<V>(b + i);
    store(out + i, v);
    return v;
  }
};
template <class T>
struct Axpy {  // out = out + alpha * a
  T* out;
  const T* a;
  T alpha;
  template <class V>
  V at(std::int64_t i) const {
    const V v = load<V>(out + i) + alpha * load<V>(a + i);
    store(out + i, v);
    return v;
  }
};
template <class T>
struct Scale {  // out = out * alpha
  T* out;
  T alpha;
  template <class V>
  V at(std::int64_t i) const {
    const V v = load<V>(out + i) * alpha;
    store(out + i, v);
    return v;
  }
};
template <class T>
struct Pair {  // out = a - b (y = g - prev g), out2 = c * alpha (s = t d)
  T *out, *out2;
  const T *a, *b, *c;
  T alpha;
  template <class V>
  V at(std::int64_t i) const {
    store(out2 + i, load<V>(c + i) * alpha);
    const V v = load<V>(a + i) - load<V>(b + i);
    store(out + i, v);
    return v;
  }
};
template <class T, class S>
struct Gather {  // out (flat, T) = a (a grad or param stored as S), converted
  T* out;
  const S* a;
  template <class V>
  V at(std::int64_t i) const {
    V v;
    if constexpr (std::is_same_v<T, S>) {
      v = load<V>(a + i);
    } else if constexpr (std::is_arithmetic_v<V>) {
      v = static_cast<T>(a[i]);
    } else {  // float grads of a float64 search (widened exactly)
      v = __builtin_convertvector(load<typename Vector<S>::type>(a + i), V);
    }
    store(out + i, v);
    return v;
  }
};

// The passes over flat vectors of the compute type T.
template <class T>
void flat_pass(const SearchPass& p, std::int64_t n, SearchSums* sums) {
  T* out = static_cast<T*>(p.out);
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  const T alpha = static_cast<T>(p.alpha), beta = static_cast<T>(p.beta);
  switch (p.op) {
    case SearchOp::kNegate:
      return accumulate_with<T>(p, n, Negate<T>{out, a}, sums);
    case SearchOp::kNegatePlus:
      return accumulate_with<T>(p, n, NegatePlus<T>{out, a, b, beta}, sums);
    case SearchOp::kAxpy:
      return accumulate_with<T>(p, n, Axpy<T>{out, a, alpha}, sums);
    case SearchOp::kScale:
      return accumulate_with<T>(p, n, Scale<T>{out, alpha}, sums);
    case SearchOp::kPair:
      return accumulate_with<T>(
          p, n, Pair<T>{out, static_cast<T*>(p.out2), a, b, static_cast<const T*>(p.c), alpha},
          sums);
    default:
      return;
  }
}

// The passes between a param or grad of storage dtype S and flat vectors of T.
template <class T, class S>
void io_pass(const SearchPass& p, std::int64_t n, SearchSums* sums) {
  const T alpha = static_cast<T>(p.alpha);
  switch (p.op) {
    case SearchOp::kGather:
      return accumulate_with<T>(
          p, n, Gather<T, S>{static_cast<T*>(p.out), static_cast<const S*>(p.a)}, sums);
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
