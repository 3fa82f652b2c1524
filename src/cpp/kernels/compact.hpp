// int8 block quantization of compact optimizer state (state_format="int8"): 256 consecutive
// elements share one float32 absmax, and each element is stored as an 8-bit code of the dynamic
// map (quant_map.hpp, which defines the codes and their values). Dequantizing is
// value(code) * absmax.
//
// Quantizing a block, in this order (python/fastopt/_compact.py is the NumPy copy):
//   absmax = max |x| over the block; NaN if any x is NaN (so a NaN never vanishes: the whole block
//            reads back NaN; an inf does the same, as inf * 0 below). Order-free: max is exact.
//   inv    = 1 / absmax (0 when absmax is 0 or NaN; inf when absmax is subnormal), one float
//            division per block;
//   y      = x * inv, one float multiply, and its code by the float32 formulas of quant_map.hpp.
// Every step is exact integer work or one IEEE operation (no FMA: -ffp-contract=off). The scalar
// code (baseline, tails) follows quant_map.hpp's definition; the AVX2 code (encode) does the same
// float operations on the same values where they decide a code, and reaches the rest by other
// exact steps, so every level gives the same bits. No gathers: AVX2 gathers cost ~20 uops on Zen
// and were slowed further on Intel by the Downfall microcode; the map's per-level numbers fit
// 8-entry tables (one vpermps) and 16-byte ones (one vpshufb).
//
// Special y: NaN (x NaN, inf * 0, or 0 * inf when absmax is subnormal) compares false with every
// threshold, so its code is 0 (the value 0); its block's absmax is NaN unless it was 0 * inf, and
// then 0 reads back 0. inf (a subnormal absmax) is the code of 1.0, or -inf the most negative.
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

inline float float_of(u32 b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// The code of y (quant_map.hpp), as defined there: the float operations encode() does (below)
// where they decide the code.
template <bool Signed>
inline std::uint8_t code_of(float y, const QuantMap& map) {
  const float a = float_of(bits_of(y) & 0x7FFFFFFFu);
  int c = 0;  // thresholds D_0..D_6 at or below a
  for (int i = 0; i < 7; ++i) c += a >= map.threshold[i] ? 1 : 0;
  if (c == 0) return 0;  // also NaN: no threshold is <= NaN
  if (a >= map.threshold[7] && (!Signed || y > 0.0f)) return Signed ? 0x80 : 255;  // 1.0
  const int level = Signed ? c - 1 : c;
  const float t = (a - map.base[level]) * map.inv_step[level];
  const float capped = t < map.cap[level] ? t : map.cap[level];  // in [0, n - 1] (a > base)
  const int m = (1 << level) - (Signed ? 0 : 1) + static_cast<int>(capped);
  return static_cast<std::uint8_t>(Signed && y < 0.0f ? m | 0x80 : m);
}

// max |x| as float bits: for non-negative floats the integer order is the float order, and every
// NaN pattern is above inf's, so one integer max finds both the absmax and any NaN.
inline float absmax_of(const float* x, std::int64_t n) {
  std::int64_t i = 0;
  u32 largest = 0;
#if defined(__AVX2__)
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i m = _mm256_setzero_si256(), m2 = m;  // two chains: the max's latency, not its issue
  const auto magnitude = [&](std::int64_t at) {
    return _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + at)),
                            magnitude_mask);
  };
  for (; i + 16 <= n; i += 16) {
    m = _mm256_max_epu32(m, magnitude(i));
    m2 = _mm256_max_epu32(m2, magnitude(i + 8));
  }
  for (; i + 8 <= n; i += 8) m = _mm256_max_epu32(m, magnitude(i));
  m = _mm256_max_epu32(m, m2);
  alignas(32) u32 lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), m);
  for (u32 lane : lanes) largest = lane > largest ? lane : largest;
#endif
  for (; i < n; ++i) {
    const u32 magnitude = bits_of(x[i]) & 0x7FFFFFFFu;
    largest = magnitude > largest ? magnitude : largest;
  }
  return largest > 0x7F800000u ? __builtin_nanf("") : float_of(largest);
}

#if defined(__AVX2__)
// The map's tables in registers, for one block.
struct Encoder {
  __m256 inv, magnitude, limit, negative_limit, threshold, base, inv_step;
  __m256i bucket_bias, bucket, cap, offset, eight;

  Encoder(const QuantMap& map, float scale)
      : inv(_mm256_set1_ps(scale)),
        magnitude(_mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))),
        limit(_mm256_set1_ps(map.enc_limit[0])),
        negative_limit(_mm256_set1_ps(map.enc_limit[1])),
        threshold(_mm256_loadu_ps(map.enc_threshold)),
        base(_mm256_loadu_ps(map.enc_base)),
        inv_step(_mm256_loadu_ps(map.enc_inv_step)),
        bucket_bias(_mm256_set1_epi32(kQuantBucketBias << 24)),
        bucket(bytes_of(map.enc_bucket)),
        cap(bytes_of(map.enc_cap)),
        offset(bytes_of(map.enc_offset)),
        eight(_mm256_set1_epi32(8)) {}

  // 16 bytes in both 128-bit halves, for vpshufb.
  static __m256i bytes_of(const std::uint8_t* table) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table)));
  }
};

inline __m256i as_int(__m256 v) { return _mm256_castps_si256(v); }

// code_of for 8 lanes, as int32 lanes that the saturating packs (encode_block) turn into the
// codes: the same float operations on the same values where they decide a code, and exact
// integer work elsewhere. Fewer uops than code_of's way (Zen 3 runs ~2.5 of these per cycle, a
// vpermps ~1): the count c by one vpshufb and one compare, ONE as an 8th threshold, the sign as
// c + 8, and the special codes from the tables (quant_map.hpp):
// - a' = min(limit, a) is a for a < limit, and NaN for NaN. limit is 1.0, or for a negative y
//   of the signed map the float below ONE: every a from there up has t >= n - 1 in the last
//   level (checked at build), so the code is the same, and a negative y never reaches ONE.
// - c = 0: t = (a' - ONE) * 2^20 < 0, so the lane is negative, and packus saturates it to 0.
// - j = min(int(t), n - 1) is int(min(t, n - 1)) for t >= 0.
// - NaN y: t is NaN and int(t) INT_MIN (cvttps2dq's "indefinite"), negative after + offset, so
//   packus makes 0: code_of's code for NaN (no threshold is <= NaN).
template <bool Signed>
inline __m256i encode(__m256 x, const Encoder& e) {
  const __m256 y = _mm256_mul_ps(x, e.inv);
  __m256 limit = e.limit;
  if (Signed) limit = _mm256_blendv_ps(limit, e.negative_limit, y);      // by y's sign bit
  const __m256 a = _mm256_min_ps(limit, _mm256_and_ps(y, e.magnitude));  // (limit < a) ? limit : a
  // Buckets below the table wrap to bytes >= 0x80, which vpshufb reads as 0; bytes 1..3 of the
  // index are 0, and enc_bucket[0] = 0, so the lane holds c_lo.
  const __m256i bucket = _mm256_srli_epi32(_mm256_sub_epi32(as_int(a), e.bucket_bias), 24);
  __m256i below = _mm256_shuffle_epi8(e.bucket, bucket);
  if (Signed)
    below = _mm256_add_epi32(below, _mm256_and_si256(_mm256_srai_epi32(as_int(y), 31), e.eight));
  const __m256 next = _mm256_permutevar8x32_ps(e.threshold, below);
  const __m256i c = _mm256_sub_epi32(below, as_int(_mm256_cmp_ps(a, next, _CMP_GE_OQ)));
  const __m256 t = _mm256_mul_ps(_mm256_sub_ps(a, _mm256_permutevar8x32_ps(e.base, c)),
                                 _mm256_permutevar8x32_ps(e.inv_step, c));
  const __m256i j = _mm256_min_epi32(_mm256_cvttps_epi32(t), _mm256_shuffle_epi8(e.cap, c));
  return _mm256_add_epi32(j, _mm256_shuffle_epi8(e.offset, c));
}

// Bytes 0..3 of lanes 0 and 4 of a vector of packed bytes, side by side (the lane order).
inline __m256i gather_dwords(__m256i packed) {
  return _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
#endif

template <bool Signed>
inline void encode_block(const float* x, std::uint8_t* codes, std::int64_t n, float inv,
                         const QuantMap& map) {
  std::int64_t i = 0;
#if defined(__AVX2__)
  const Encoder e(map, inv);
  for (; i + 32 <= n; i += 32) {
    const __m256i c0 = encode<Signed>(_mm256_loadu_ps(x + i), e);
    const __m256i c1 = encode<Signed>(_mm256_loadu_ps(x + i + 8), e);
    const __m256i c2 = encode<Signed>(_mm256_loadu_ps(x + i + 16), e);
    const __m256i c3 = encode<Signed>(_mm256_loadu_ps(x + i + 24), e);
    // Codes are 0..255: the saturating packs are exact; they interleave the 128-bit halves, and
    // the dword permute puts the 4-byte groups back in order.
    const __m256i bytes =
        _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), gather_dwords(bytes));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256i c = encode<Signed>(_mm256_loadu_ps(x + i), e);
    const __m256i words = _mm256_packus_epi32(c, c);
    const __m256i bytes = gather_dwords(_mm256_packus_epi16(words, words));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm256_castsi256_si128(bytes));
  }
#endif
  for (; i < n; ++i) codes[i] = code_of<Signed>(x[i] * inv, map);
}

// QuantizeFn: n <= kQuantBlock floats into codes and one absmax.
inline void quantize(const float* x, std::uint8_t* codes, float* absmax, std::int64_t n,
                     const QuantMap& map) {
  const float largest = absmax_of(x, n);
  *absmax = largest;
  const float inv = largest > 0.0f ? 1.0f / largest : 0.0f;  // NaN > 0 is false
  if (map.is_signed)
    encode_block<true>(x, codes, n, inv, map);
  else
    encode_block<false>(x, codes, n, inv, map);
}

// DequantizeFn: value(code) * absmax. The scalar code reads value[] (built with the same formula);
// the AVX2 code computes it (quant_map.hpp, the dec_* tables), with no gather.
inline void dequantize(const std::uint8_t* codes, float absmax, float* out, std::int64_t n,
                       const QuantMap& map) {
  std::int64_t i = 0;
#if defined(__AVX2__)
  const __m256 scale = _mm256_set1_ps(absmax);
  const __m256 step = _mm256_loadu_ps(map.dec_step);
  const __m256 base = _mm256_loadu_ps(map.dec_base);
  if (map.is_signed) {
    const __m256i low7 = _mm256_set1_epi32(0x7F);
    const __m256i sign_bit = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    const __m256i plus_one = _mm256_set1_epi32(-128);  // code 0x80, sign-extended
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 exponent = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0xFF800000u)));
    for (; i + 8 <= n; i += 8) {
      // Sign-extended: bit 31 is the code's sign, the low 7 bits are m.
      const __m256i code =
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      const __m256 f = _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_and_si256(code, low7)), half);
      const __m256i e = _mm256_srli_epi32(_mm256_castps_si256(f), 23);  // vpermps reads 3 bits
      // f's power of two (its exponent alone) is dec_sub: 2^L, or 0.5 for m = 0 (f - 0.5 = 0).
      const __m256 power = _mm256_and_ps(f, exponent);
      __m256 v =
          _mm256_add_ps(_mm256_permutevar8x32_ps(base, e),
                        _mm256_mul_ps(_mm256_sub_ps(f, power), _mm256_permutevar8x32_ps(step, e)));
      // The sign on the value, not on absmax: a NaN absmax then gives the same NaN bits as
      // value[] * absmax.
      v = _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_and_si256(code, sign_bit)));
      v = _mm256_blendv_ps(v, one, _mm256_castsi256_ps(_mm256_cmpeq_epi32(code, plus_one)));
      _mm256_storeu_ps(out + i, _mm256_mul_ps(v, scale));
    }
  } else {
    const __m256 sub = _mm256_loadu_ps(map.dec_sub);
    const __m256 one_and_half = _mm256_set1_ps(1.5f);
    for (; i + 8 <= n; i += 8) {
      const __m256i code =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      const __m256 f = _mm256_add_ps(_mm256_cvtepi32_ps(code), one_and_half);
      const __m256i e = _mm256_srli_epi32(_mm256_castps_si256(f), 23);
      const __m256 v =
          _mm256_add_ps(_mm256_permutevar8x32_ps(base, e),
                        _mm256_mul_ps(_mm256_sub_ps(f, _mm256_permutevar8x32_ps(sub, e)),
                                      _mm256_permutevar8x32_ps(step, e)));
      _mm256_storeu_ps(out + i, _mm256_mul_ps(v, scale));
    }
  }
#endif
  for (; i < n; ++i) out[i] = map.value[codes[i]] * absmax;
}

}  // namespace compact
}  // namespace fastopt::FASTOPT_LEVEL_NS
