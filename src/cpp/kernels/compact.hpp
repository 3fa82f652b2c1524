// int8 block quantization of compact optimizer state (state_format="int8"): 256 consecutive
// elements share one float32 absmax, and each element is stored as the 8-bit code of the map value
// (quant_map.hpp) nearest to x / absmax. Dequantizing is value[code] * absmax.
//
// Quantizing a block, in this order (python/fastopt/_compact.py is the NumPy copy):
//   absmax = max |x| over the block; NaN if any x is NaN (so a NaN never vanishes: the whole block
//            reads back NaN; an inf does the same, as inf * 0 below). Order-free: max is exact.
//   inv    = 1 / absmax (0 when absmax is 0 or NaN), one float division per block;
//   y      = x * inv, one float multiply, and the code is the number of thresholds below y, found
//            with two table reads (quant_map.hpp).
// Every step is exact integer work or one IEEE operation, so the scalar code (baseline) and the
// AVX2 gathers give the same bits.
//
// The absmax must be known before a value is quantized, so a block is read twice; the sweep
// (mixed.hpp) does both passes over the 512-element buffer the rule just wrote, still in L1, so
// memory sees each code once (docs/performance.md, "Compact state").
//
// Compiled once per SIMD level (see rules/common.hpp for why it lives in the level's namespace).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "compact.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/quant_map.hpp"
#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace compact {

using u32 = std::uint32_t;

inline u32 bits_of(float x) {
  u32 b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// The code of y (quant_map.hpp): bucket by sign and the top bits of |y|, then one comparison.
inline std::uint8_t code_of(float y, const QuantMap& map) {
  const u32 bits = bits_of(y);
  u32 magnitude = bits & 0x7FFFFFFFu;
  magnitude = magnitude < kQuantOneBits ? magnitude : kQuantOneBits;  // NaN and y > 1: the top
  magnitude = magnitude > kQuantBucketBase ? magnitude : kQuantBucketBase;
  const u32 bucket = ((magnitude - kQuantBucketBase) >> (23 - kQuantBucketBits)) +
                     ((bits >> 31) != 0 ? static_cast<u32>(kQuantBuckets) : 0u);
  const int first = map.first[bucket];
  return static_cast<std::uint8_t>(first + (map.threshold[first] < y ? 1 : 0));
}

inline float absmax_of(const float* x, std::int64_t n) {
  std::int64_t i = 0;
  float largest = 0.0f;
  bool nan = false;
#if defined(__AVX2__)
  const __m256 magnitude_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 m = _mm256_setzero_ps();
  __m256 unordered = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    m = _mm256_max_ps(_mm256_and_ps(v, magnitude_mask), m);  // a NaN lane keeps m (2nd operand)
    unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  for (float lane : lanes) largest = lane > largest ? lane : largest;
  nan = _mm256_movemask_ps(unordered) != 0;
#endif
  for (; i < n; ++i) {
    const float a = x[i] < 0.0f ? -x[i] : x[i];
    largest = a > largest ? a : largest;
    nan = nan || x[i] != x[i];
  }
  return nan ? __builtin_nanf("") : largest;
}

// QuantizeFn: n <= kQuantBlock floats into codes and one absmax.
inline void quantize(const float* x, std::uint8_t* codes, float* absmax, std::int64_t n,
                     const QuantMap& map) {
  const float largest = absmax_of(x, n);
  *absmax = largest;
  const float inv = largest > 0.0f ? 1.0f / largest : 0.0f;  // NaN > 0 is false
  std::int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i one = _mm256_set1_epi32(static_cast<int>(kQuantOneBits));
  const __m256i base = _mm256_set1_epi32(static_cast<int>(kQuantBucketBase));
  const __m256i negative_offset = _mm256_set1_epi32(kQuantBuckets);
  const __m256i low_byte = _mm256_set1_epi32(0xFF);
  // Byte 0 of each 32-bit lane to the lane's low 4 bytes (per 128-bit half).
  const __m256i pick =
      _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                       -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const int* first = reinterpret_cast<const int*>(map.first);  // 4-byte reads of a byte table
  for (; i + 8 <= n; i += 8) {
    const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    const __m256i bits = _mm256_castps_si256(y);
    __m256i magnitude = _mm256_min_epu32(_mm256_and_si256(bits, magnitude_mask), one);
    magnitude = _mm256_max_epu32(magnitude, base);
    __m256i bucket = _mm256_srli_epi32(_mm256_sub_epi32(magnitude, base), 23 - kQuantBucketBits);
    bucket =
        _mm256_add_epi32(bucket, _mm256_and_si256(_mm256_srai_epi32(bits, 31), negative_offset));
    const __m256i below = _mm256_and_si256(_mm256_i32gather_epi32(first, bucket, 1), low_byte);
    const __m256 next = _mm256_i32gather_ps(map.threshold, below, 4);
    // (next < y) is all ones (-1) where the code is one more.
    const __m256i code =
        _mm256_sub_epi32(below, _mm256_castps_si256(_mm256_cmp_ps(next, y, _CMP_LT_OQ)));
    const __m256i packed = _mm256_shuffle_epi8(code, pick);
    const u32 low = static_cast<u32>(_mm_cvtsi128_si32(_mm256_castsi256_si128(packed)));
    const u32 high = static_cast<u32>(_mm_cvtsi128_si32(_mm256_extracti128_si256(packed, 1)));
    std::memcpy(codes + i, &low, 4);
    std::memcpy(codes + i + 4, &high, 4);
  }
#endif
  for (; i < n; ++i) codes[i] = code_of(x[i] * inv, map);
}

// DequantizeFn: value[code] * absmax.
inline void dequantize(const std::uint8_t* codes, float absmax, float* out, std::int64_t n,
                       const QuantMap& map) {
  std::int64_t i = 0;
#if defined(__AVX2__)
  const __m256 scale = _mm256_set1_ps(absmax);
  for (; i + 8 <= n; i += 8) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i));
    const __m256 v = _mm256_i32gather_ps(map.value, _mm256_cvtepu8_epi32(bytes), 4);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(v, scale));
  }
#endif
  for (; i < n; ++i) out[i] = map.value[codes[i]] * absmax;
}

}  // namespace compact
}  // namespace fastopt::FASTOPT_LEVEL_NS
