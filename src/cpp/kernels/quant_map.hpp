// The 8-bit dynamic quantization maps of compact optimizer state (state_format="int8").
//
// The map is Dettmers et al.'s dynamic data type ("8-bit Optimizers via Block-wise Quantization",
// ICLR 2022; bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)): seven
// decades 1e-6 .. 1e0, decade i holding 2^i (signed) or 2^(i+1) (unsigned) evenly spaced values
// of [0.1, 1) * 10^(i-6), their negatives for the signed map, then 0 and 1. Values of a block are
// stored as the code of the nearest map value of x / absmax; the dense decades near 1 keep the
// large values of a block precise, the sparse ones near 1e-6 keep small values from flushing to 0.
//
// Our values are computed in double from the formula (not with torch's float32 linspace), so they
// can differ from bitsandbytes' in the last bit of a float; tests/test_compact_formats.py compares
// the two maps. python/fastopt/_compact.py computes the same values the same way.
//
// Quantizing is a search of the sorted midpoints (`threshold`): the code of y is the number of
// thresholds below y (ties go to the lower code). The search is two table reads: `first`, indexed
// by the sign and the top bits of |y|'s float pattern (a bucket), gives the number of thresholds
// below the bucket, and one comparison with the next threshold finishes it. That is exact because
// no bucket holds two thresholds (checked when the map is built: buckets are 2^-8 of a binade
// wide, thresholds at least 0.7% apart).
//
// Level-independent: built once, at import; the kernels read it through Mixed (table.hpp).
#pragma once

#include <cstdint>

namespace fastopt {

// Buckets: |y| in [2^-24, 1] by exponent and the top 8 mantissa bits, plus bucket 0 for
// everything below 2^-24 (no threshold is that small: the least is ~2.7e-7).
inline constexpr int kQuantBucketBits = 8;
inline constexpr std::uint32_t kQuantBucketBase = 103u << 23;  // the float bits of 2^-24
inline constexpr std::uint32_t kQuantOneBits = 127u << 23;     // the float bits of 1.0
inline constexpr int kQuantBuckets =
    static_cast<int>((kQuantOneBits - kQuantBucketBase) >> (23 - kQuantBucketBits)) + 1;

struct QuantMap {
  float value[256];      // ascending: code c dequantizes to value[c] * absmax
  float threshold[256];  // [c] = the midpoint of value[c] and value[c + 1]; [255] = +inf
  // [sign * kQuantBuckets + bucket]: the thresholds below the bucket (+ 3 bytes, so that a 4-byte
  // gather of the last entry stays inside the table).
  std::uint8_t first[2 * kQuantBuckets + 3];
};

// The signed map (for states of either sign: momentum, Adam's m) or the unsigned one (v, sums).
const QuantMap& quant_map(bool is_signed);

}  // namespace fastopt
