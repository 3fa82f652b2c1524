// Element formats: how an array's elements are stored, and how element i is read into the compute
// type and written back. Rules compute in Format::Compute and never see storage: adding a format
// (bf16, fp16, 8-bit blockwise with a per-block scale) touches this file, never a rule.
//
// load and store are inline and branch-free, so the sweep's loop still vectorizes through them;
// for the native formats they are the plain array access, and the compiled loop is the one it was
// before formats existed.
//
// Compiled once per SIMD level, inside that level's namespace (see rules/common.hpp for why).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "formats.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>

#include "kernels/half.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// A format stored as a native floating-point type and computed in that same type.
template <class T>
struct NativeFormat {
  using Storage = T;  // what the array holds
  using Compute = T;  // what the rule computes in
  static Compute load(const Storage* data, std::int64_t i) { return data[i]; }
  static void store(Storage* data, std::int64_t i, Compute value) { data[i] = value; }
};

using F32 = NativeFormat<float>;
using F64 = NativeFormat<double>;

// bfloat16 bits computed in float: widened exactly, rounded to nearest even when stored. Compact
// state (state_format="bfloat16") of float32 params runs through it inside the rule's own loop:
// a shift to load, five integer operations to store, all of which vectorize, so the step stays
// one pass at 2 bytes a state element (stochastic rounding, which needs the element's index and
// key, takes the blocked sweep of mixed.hpp instead).
struct BF16 {
  using Storage = std::uint16_t;
  using Compute = float;
  static Compute load(const Storage* data, std::int64_t i) { return half::widen_bf16(data[i]); }
  static void store(Storage* data, std::int64_t i, Compute value) {
    const half::u32 b = half::bits_of(value);
    data[i] = half::round_bf16(b, half::nearest_bf16(b));
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
