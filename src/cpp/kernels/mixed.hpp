// The blocked sweep: a rule over operands that are not all stored in its compute type.
//
// Half grads and half params are widened a block at a time into buffers that stay in L1, the
// rule's own kernel (sweep.hpp, the same code as for float32 arrays) runs over the block, and the
// half param is written back rounded. Each array element is still read once from memory and
// written at most once: one pass over memory, as for native arrays. The block buffers add only L1
// traffic, which a memory-bound step hides (docs/performance.md, "Mixed precision").
//
// Why blocks and not a format per operand inside the per-element loop: that makes a kernel per
// (param format, grad format, rounding) for every row and level, ~30 times today's 500, and GCC 12
// does not vectorize float16 conversions inside such a loop (it emits one vcvtph2ps per element).
// Here every row keeps its two kernels, and the conversions are a handful of block functions.
//
// The operands (Operands, and its Mixed):
//   grad         stored as grad_dtype: the compute type, or a half format (widened).
//   master       fp32 master weights: the rule updates them in place, and the half param is
//                written from them, rounded to nearest even.
//   param        without a master, a half param is widened, plus its Kahan compensation when
//                there is one, updated, and rounded (nearest or stochastic); the compensation
//                keeps what the rounding lost.
//   states       the compute type, or compact (state_format): bfloat16 bits, widened and rounded
//                back like a half param without a master; or int8 codes, dequantized a block of
//                256 at a time and quantized again after the rule (compact.hpp). No float copy
//                of a compact state ever exists beyond the block in L1.
//
// Compiled once per SIMD level (see rules/common.hpp for why it lives in the level's namespace).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "mixed.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>

#include "kernels/compact.hpp"
#include "kernels/half.hpp"
#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace detail {

// Elements per block: 2 KiB buffers of float, well inside L1 beside the streams passing through.
constexpr std::int64_t kMixedBlock = 512;
constexpr float kInf = __builtin_huge_valf();

// Where a block of the grad is read from: the array itself, or `buffer` holding it widened.
template <class T>
const T* grad_block(const Operands& ops, std::int64_t b, std::int64_t n, T* buffer) {
  const Mixed& m = *ops.mixed;
  if (m.grad_dtype == Dtype::kFloat32 || m.grad_dtype == Dtype::kFloat64)
    return static_cast<const T*>(ops.grad) + b;  // the compute type (the bindings ensure it)
  const std::int64_t size = static_cast<std::int64_t>(sizeof(std::uint16_t));
  const void* src = static_cast<const char*>(ops.grad) + b * size;
  if constexpr (sizeof(T) == 4) {
    half::widen_block(m.grad_dtype, src, buffer, n);
  } else {
    float wide[kMixedBlock];
    half::widen_block(m.grad_dtype, src, wide, n);
    for (std::int64_t i = 0; i < n; ++i) buffer[i] = wide[i];  // exact
  }
  return buffer;
}

// A half param with no master: widened into `p`, with its compensation added (exact unless the
// two are 2^24 apart, and the same sum at every level).
inline void load_half_param(const Operands& ops, std::int64_t b, std::int64_t n, float* p,
                            float* c) {
  const Mixed& m = *ops.mixed;
  half::widen_block(m.param_dtype, static_cast<const std::uint16_t*>(ops.param) + b, p, n);
  if (m.compensation == nullptr) return;
  half::widen_block(m.param_dtype, static_cast<const std::uint16_t*>(m.compensation) + b, c, n);
  for (std::int64_t i = 0; i < n; ++i) p[i] = p[i] + c[i];
}

// Writes the updated `p` back to the half param; with compensation, keeps p - rounded(p) (exact:
// the two are within a factor of two of each other) in the compensation buffer, rounded. Where the
// param rounded to inf (an overflow) the compensation is 0: p - inf is -inf, and the next step's
// inf + -inf would make the param NaN for good.
inline void store_half_param(const Operands& ops, std::int64_t b, std::int64_t n, const float* p,
                             float* c) {
  const Mixed& m = *ops.mixed;
  std::uint16_t* param = static_cast<std::uint16_t*>(ops.param) + b;
  half::round_block(m.param_dtype, p, param, n, m.rounding, m.random_key, b);
  if (m.compensation == nullptr) return;
  half::widen_block(m.param_dtype, param, c, n);
  for (std::int64_t i = 0; i < n; ++i) {
    const float rest = p[i] - c[i];
    c[i] = (c[i] == kInf || c[i] == -kInf) ? 0.0f : rest;
  }
  half::round_block(m.param_dtype, c, static_cast<std::uint16_t*>(m.compensation) + b, n,
                    Rounding::kNearest, 0, 0);
}

// The stochastic-rounding key of bfloat16 state `slot`: its own bits, apart from the param's.
inline std::uint32_t state_key(std::uint32_t random_key, int slot) {
  return half::mix32(random_key ^ (0x9E3779B9u * static_cast<std::uint32_t>(slot + 1)));
}

// A compact state's elements [b, b + n) into `out` as the compute type.
template <class T>
void load_state(const Mixed& m, int slot, const void* data, std::int64_t b, std::int64_t n,
                T* out) {
  float wide[kMixedBlock];
  float* f = sizeof(T) == 4 ? reinterpret_cast<float*>(out) : wide;
  if (m.state_format[slot] == StateFormat::kBFloat16) {
    half::widen_block(Dtype::kBFloat16, static_cast<const std::uint16_t*>(data) + b, f, n);
  } else {
    const std::uint8_t* codes = static_cast<const std::uint8_t*>(data) + b;
    for (std::int64_t q = 0; q < n; q += kQuantBlock) {
      const std::int64_t len = n - q < kQuantBlock ? n - q : kQuantBlock;
      compact::dequantize(codes + q, m.absmax[slot][(b + q) / kQuantBlock], f + q, len,
                          *m.quant_map[slot]);
    }
  }
  if constexpr (sizeof(T) == 8)
    for (std::int64_t i = 0; i < n; ++i) out[i] = wide[i];  // exact
}

// `in` (the rule's result) back into the compact state: a double is rounded to float first.
template <class T>
void store_state(const Mixed& m, int slot, void* data, std::int64_t b, std::int64_t n,
                 const T* in) {
  float narrow[kMixedBlock];
  const float* f = reinterpret_cast<const float*>(in);
  if constexpr (sizeof(T) == 8) {
    for (std::int64_t i = 0; i < n; ++i) narrow[i] = static_cast<float>(in[i]);
    f = narrow;
  }
  if (m.state_format[slot] == StateFormat::kBFloat16) {
    half::round_block(Dtype::kBFloat16, f, static_cast<std::uint16_t*>(data) + b, n, m.rounding,
                      state_key(m.random_key, slot), b);
    return;
  }
  std::uint8_t* codes = static_cast<std::uint8_t*>(data) + b;
  for (std::int64_t q = 0; q < n; q += kQuantBlock) {
    const std::int64_t len = n - q < kQuantBlock ? n - q : kQuantBlock;
    compact::quantize(f + q, codes + q, &m.absmax[slot][(b + q) / kQuantBlock], len,
                      *m.quant_map[slot]);
  }
}

inline std::int64_t whole_blocks(std::int64_t i) {
  return (i + kQuantBlock - 1) / kQuantBlock * kQuantBlock;
}

}  // namespace detail

// KernelTable::mixed[compute]: ops.mixed->rule over elements [begin, end), a block at a time.
template <class T>
void sweep_mixed(const double* scalars, const Operands& ops, std::int64_t begin, std::int64_t end) {
  alignas(64) T g[detail::kMixedBlock];
  alignas(64) float p[detail::kMixedBlock];
  alignas(64) float c[detail::kMixedBlock];
  alignas(64) T states[kMaxStates][detail::kMixedBlock];
  const Mixed& m = *ops.mixed;
  const bool half_param = is_half(m.param_dtype);
  if (m.any_int8) {
    // Whole int8 blocks: this piece covers the blocks that start in [begin, end). The pieces of a
    // task cover [0, size) once, so each block is done once, by one thread, at any thread count.
    begin = detail::whole_blocks(begin);
    end = detail::whole_blocks(end) < m.size ? detail::whole_blocks(end) : m.size;
  }
  for (std::int64_t b = begin; b < end;) {
    // A block never crosses a multiple of 2^32 elements (half::block_key).
    const std::int64_t wrap = ((b >> 32) + 1) << 32;
    std::int64_t stop = end - b < detail::kMixedBlock ? end : b + detail::kMixedBlock;
    stop = stop < wrap ? stop : wrap;
    const std::int64_t n = stop - b;
    Operands block = ops;
    block.grad = detail::grad_block<T>(ops, b, n, g);
    for (int s = 0; s < kMaxStates; ++s) {
      if (ops.state[s] == nullptr) continue;
      if (m.state_format[s] == StateFormat::kNative) {
        block.state[s] = static_cast<T*>(ops.state[s]) + b;
      } else {
        detail::load_state(m, s, ops.state[s], b, n, states[s]);
        block.state[s] = states[s];
      }
    }
    if (!half_param) {
      block.param = static_cast<T*>(ops.param) + b;
    } else if (m.master != nullptr) {
      block.param = static_cast<float*>(m.master) + b;
    } else {
      detail::load_half_param(ops, b, n, p, c);
      block.param = p;
    }
    m.rule(scalars, block, 0, n);
    if (half_param && m.master != nullptr) {
      half::round_block(m.param_dtype, static_cast<const float*>(block.param),
                        static_cast<std::uint16_t*>(ops.param) + b, n, Rounding::kNearest, 0, 0);
    } else if (half_param) {
      detail::store_half_param(ops, b, n, p, c);
    }
    for (int s = 0; s < kMaxStates; ++s)
      if (ops.state[s] != nullptr && m.state_format[s] != StateFormat::kNative)
        detail::store_state(m, s, ops.state[s], b, n, states[s]);
    b = stop;
  }
}

}  // namespace fastopt::FASTOPT_LEVEL_NS
