// The 8-bit dynamic quantization maps of compact optimizer state (state_format="int8").
//
// The values are those of Dettmers et al.'s dynamic data type ("8-bit Optimizers via Block-wise
// Quantization", ICLR 2022; bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7,
// total_bits=8)): decade i = 0..6 holds n evenly spaced means 10^(i-6) * (0.1 + 0.9 (2j+1)/(2n)),
// j = 0..n-1, with n = 2^i (signed) or 2^(i+1) (unsigned), their negatives for the signed map,
// then 0 and +1 (no -1): 256 values. The dense decades near 1 keep the large values of a block
// precise, the sparse ones near 1e-6 keep small values from flushing to 0.
//
// The codes are not indices of a sorted table: they are chosen so that code <-> value is a few
// float32 operations, because AVX2 gathers (the table lookups of a sorted map) are slow on Zen
// and very slow on Intel since the Downfall microcode. For a level L in 0..7 (decade i = L signed,
// i = L - 1 unsigned) and an index j in the decade:
//   signed code    bit 7 = sign, low 7 bits m: m = 0 is 0 (0x00) and 0x80 is +1.0; otherwise
//                  L = floor(log2 m), j = m - 2^L;
//   unsigned code  m: 0 is 0 and 255 is 1.0; otherwise k = m + 1, L = floor(log2 k), j = k - 2^L;
//   value          base[L] + (float(j) + 0.5f) * step[L], in float32 (one rounding per operation,
//                  no FMA), negated for a negative code: base[L] = float(10^(i-7)), the decade's
//                  start; step[L] = float(0.9 * 10^(i-6) / n) in double. value[] below is that
//                  formula, for scalar decoding and the views; the kernels compute it.
// Quantizing y = x / absmax (compact.hpp): with a = |y|, c = the number of thresholds D_0..D_6 at
// or below a (D_i: the midpoint, in double rounded to float, of the largest value below decade i
// and the least of it). c = 0 is code 0; else L follows from c, t = (a - base[L]) * inv_step[L]
// (inv_step = float(n / (0.9 * 10^(i-6))) in double), t = min(t, n - 1), j = int(t). a >= ONE (the
// midpoint of 1 and the value below it) is the code of 1.0, unless y is negative (signed map).
// python/fastopt/_compact.py is an independent NumPy implementation of the same definition.
//
// Level-independent: built once, at import; the kernels read it through Mixed (table.hpp).
#pragma once

#include <cstdint>

namespace fastopt {

// The first 2-binade bucket of enc_bucket: bits >> 24 = 52 is |y| in [2^-23, 2^-21).
inline constexpr int kQuantBucketBias = 52;

struct QuantMap {
  bool is_signed;
  float value[256];    // by code: code c dequantizes to value[c] * absmax
  float threshold[8];  // D_0 .. D_6 (ascending), then ONE
  float base[8];       // by level L (the level no code uses holds zeros)
  float step[8];       //
  float inv_step[8];   //
  float cap[8];        // n - 1, the largest index j of the level, as a float
  // The kernels' layouts of the same numbers (compact.hpp): 8 floats for one vpermps (which reads
  // the low 3 bits of an index), or 16 bytes for one vpshufb (the 128-bit halves of a ymm each
  // look up their own copy).
  // Quantizing: the count c (0..8) of thresholds D_0..D_6, ONE at or below a' (a clamped below
  // enc_limit) is c_lo + (a' >= enc_threshold[c_lo]), where c_lo = enc_bucket[(bits(a') >> 24) -
  // kQuantBucketBias] is the number of thresholds below the bucket of a' (2 binades; each bucket
  // holds at most one threshold, buckets below the table none, checked at build).
  std::uint8_t enc_bucket[16];
  float enc_threshold[8];  // D_0 .. D_6, ONE
  float enc_limit[2];      // a' = min(limit, a): 1.0, and for y < 0 (signed) the float below ONE
  // By c & 7, c = 1..7: the level's base and inv_step. [0] serves c = 0 and c = 8 (a' >= ONE):
  // base ONE and inv_step 2^20 make t < 0 for c = 0 (the code then saturates to 0) and t >= 0
  // for c = 8.
  float enc_base[8];
  float enc_inv_step[8];
  // By c, or c + 8 for a negative y (signed): cap = n - 1 and offset = the code of j = 0 (| 0x80
  // when negative); [0] and [8] have cap 0, and offset 0 and the code of 1.0.
  std::uint8_t enc_cap[16];
  std::uint8_t enc_offset[16];
  // Dequantizing, by the low 3 bits of the biased exponent of f = float(m) + 0.5 (signed) or
  // float(m) + 1.5 (unsigned), which is 127 + L: value = dec_base + (f - dec_sub) * dec_step, where
  // f - dec_sub = 2^L + j + 0.5 - 2^L is exact (signed: dec_sub is f's power of two, its bits &
  // 0xFF800000, which the kernel computes). The exponents no level uses hold the special codes:
  // m = 0 gives 0 (signed; compact.hpp makes 0x80 1.0), m = 0 gives 0 and m = 255 gives 1.0
  // (unsigned).
  float dec_sub[8];
  float dec_step[8];
  float dec_base[8];
};

// The signed map (for states of either sign: momentum, Adam's m) or the unsigned one (v, sums).
const QuantMap& quant_map(bool is_signed);

}  // namespace fastopt
