// The half-precision element formats: bfloat16 and IEEE float16, stored as 16-bit patterns and
// computed in float. Widening is exact; narrowing rounds once, to nearest even or stochastically.
//
// Every level gives the same bits. bfloat16 is integer code at every level (AVX2 has no bfloat16
// instructions; the shifts, adds and selects below vectorize). float16 uses F16C's vcvtph2ps and
// vcvtps2ph where the level has it (avx2, avx512) and the integer code below at baseline, which
// does what those instructions do, NaN payloads included: a NaN stays NaN with its sign and is
// made quiet, inf and overflow give inf, subnormals are kept (tests/test_half.py compares the
// levels on every float16 and on millions of float32 patterns).
//
// Stochastic rounding adds random bits below the kept ones and truncates, so a value rounds up
// with probability equal to its distance from the value below, in units of the last place. The
// bits are a hash of (random_key, element index): counter-based, so every thread count and level
// draws the same bits for the same element. python/fastopt/_reference_half.py is the NumPy copy.
//
// Compiled once per SIMD level (see rules/common.hpp for why it lives in the level's namespace).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "half.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace half {

using u16 = std::uint16_t;
using u32 = std::uint32_t;

inline u32 bits_of(float x) {
  u32 b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
inline float float_of(u32 b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// ---- the random bits ----

// murmur3's 32-bit finalizer: every input bit affects every output bit (32-bit multiplies, which
// vectorize at every level).
inline u32 mix32(u32 x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  x ^= x >> 16;
  return x;
}
// The key of the elements whose index has these high 32 bits (arrays past 2^32 elements).
inline u32 block_key(u32 random_key, std::int64_t index) {
  return random_key ^ (static_cast<u32>(static_cast<std::uint64_t>(index) >> 32) * 0x27D4EB2Fu);
}
// The 32 random bits of the element whose index has these low 32 bits.
inline u32 element_bits(u32 key, u32 index_low) { return mix32((index_low * 0x9E3779B1u) ^ key); }

// ---- bfloat16: the high half of a float ----

inline float widen_bf16(u16 h) { return float_of(static_cast<u32>(h) << 16); }

// `addend` goes below the 16 kept bits, then they are kept: 0x7FFF plus the kept lowest bit
// rounds to nearest even; 16 random bits round stochastically. A carry out of the significand
// moves the exponent up, and from the largest finite value to inf, as rounding should.
inline u16 round_bf16(u32 b, u32 addend) {
  const bool nan = (b & 0x7FFFFFFFu) > 0x7F800000u;
  const u32 rounded = (b + addend) >> 16;
  return static_cast<u16>(nan ? (b >> 16) | 0x0040u : rounded);  // a NaN made quiet
}
inline u32 nearest_bf16(u32 b) { return 0x7FFFu + ((b >> 16) & 1u); }

// ---- float16: 5 exponent bits, 10 significand bits ----

inline float widen_f16_bits(u16 h) {
  const u32 sign = static_cast<u32>(h & 0x8000u) << 16;
  const u32 e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  const u32 normal = sign | ((e + 112u) << 23) | (m << 13);
  const u32 special = sign | 0x7F800000u | (m << 13) | (m != 0 ? 0x400000u : 0u);  // quiet NaN
  const u32 subnormal = sign | bits_of(static_cast<float>(static_cast<int>(m)) * 0x1p-24f);
  return float_of(e == 0 ? subnormal : e == 31 ? special : normal);
}

// Rounds float bits `b` to float16. A normal result drops 13 significand bits of the float
// rebased to float16's exponent; a subnormal one (below 2^-14) drops 126 - e bits of the full
// significand. `random` (stochastic) or the round-to-nearest-even addend goes below the kept bits.
// Stochastic rounding treats magnitudes below 2^-32 as zero (a chance under 2^-8 of rounding up
// to the smallest subnormal is lost).
inline u16 round_f16(u32 b, bool stochastic, u32 random) {
  const u32 sign = (b >> 16) & 0x8000u;
  const u32 a = b & 0x7FFFFFFFu;
  const u32 e = a >> 23;
  const bool normal = e >= 113u;
  const u32 value = normal ? a - 0x38000000u : (a & 0x7FFFFFu) | 0x800000u;
  const u32 wide = normal ? 13u : 126u - e;  // e <= 112 here, so no wrap
  const u32 shift = wide > 31u ? 31u : wide;
  const u32 nearest = (1u << (shift - 1)) - 1u + ((value >> shift) & 1u);
  const u32 addend = stochastic ? random & ((1u << shift) - 1u) : nearest;
  u32 h = (value + addend) >> shift;
  h = h > 0x7C00u ? 0x7C00u : h;  // overflow, and inf, give inf
  h = wide > 31u ? 0u : h;
  h = a > 0x7F800000u ? 0x7E00u | ((a >> 13) & 0x3FFu) : h;  // a NaN made quiet, its payload kept
  return static_cast<u16>(sign | h);
}

// ---- whole blocks: the sweep's and the bindings' entry points ----

inline void widen_bf16_block(const u16* __restrict src, float* __restrict out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = widen_bf16(src[i]);
}

inline void widen_f16_block(const u16* __restrict src, float* __restrict out, std::int64_t n) {
  std::int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) out[i] = widen_f16_bits(src[i]);
}

// Elements index0 .. index0 + n - 1 of one array; the caller never lets a block cross a multiple
// of 2^32 (mixed.hpp), so the high half of the index is one key for the whole block.
inline void round_bf16_block(const float* __restrict src, u16* __restrict out, std::int64_t n,
                             Rounding rounding, u32 random_key, std::int64_t index0) {
  if (rounding == Rounding::kNearest) {
    for (std::int64_t i = 0; i < n; ++i) {
      const u32 b = bits_of(src[i]);
      out[i] = round_bf16(b, nearest_bf16(b));
    }
    return;
  }
  const u32 key = block_key(random_key, index0);
  const u32 low = static_cast<u32>(index0);
  for (std::int64_t i = 0; i < n; ++i) {
    const u32 random = element_bits(key, low + static_cast<u32>(i));
    out[i] = round_bf16(bits_of(src[i]), random & 0xFFFFu);
  }
}

inline void round_f16_block(const float* __restrict src, u16* __restrict out, std::int64_t n,
                            Rounding rounding, u32 random_key, std::int64_t index0) {
  std::int64_t i = 0;
  if (rounding == Rounding::kNearest) {
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
      const __m256 x = _mm256_loadu_ps(src + i);
      const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
#endif
    for (; i < n; ++i) out[i] = round_f16(bits_of(src[i]), false, 0);
    return;
  }
  const u32 key = block_key(random_key, index0);
  const u32 low = static_cast<u32>(index0);
  for (; i < n; ++i)
    out[i] = round_f16(bits_of(src[i]), true, element_bits(key, low + static_cast<u32>(i)));
}

// For KernelTable::widen and ::round: [bfloat16, float16].
inline void widen_block(Dtype dtype, const void* src, float* out, std::int64_t n) {
  const u16* bits = static_cast<const u16*>(src);
  if (dtype == Dtype::kBFloat16) {
    widen_bf16_block(bits, out, n);
  } else {
    widen_f16_block(bits, out, n);
  }
}

inline void round_block(Dtype dtype, const float* src, void* out, std::int64_t n, Rounding rounding,
                        u32 random_key, std::int64_t index0) {
  u16* bits = static_cast<u16*>(out);
  if (dtype == Dtype::kBFloat16) {
    round_bf16_block(src, bits, n, rounding, random_key, index0);
  } else {
    round_f16_block(src, bits, n, rounding, random_key, index0);
  }
}

}  // namespace half
}  // namespace fastopt::FASTOPT_LEVEL_NS
