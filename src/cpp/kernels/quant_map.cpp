#include "kernels/quant_map.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace fastopt {
namespace {

// 10^(i-6) for the seven decades, as double literals (correctly rounded: no pow() to differ).
constexpr double kDecade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};

std::uint32_t bits_of(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

int bucket_of(float magnitude) {
  std::uint32_t b = bits_of(magnitude);
  b = b < kQuantOneBits ? b : kQuantOneBits;
  return b <= kQuantBucketBase
             ? 0
             : static_cast<int>((b - kQuantBucketBase) >> (23 - kQuantBucketBits));
}

QuantMap build(bool is_signed) {
  QuantMap map{};
  int count = 0;
  for (int i = 0; i < 7; ++i) {
    const int n = is_signed ? 1 << i : 1 << (i + 1);
    for (int j = 0; j < n; ++j) {
      // The midpoint of [0.1 + 0.9 j/n, 0.1 + 0.9 (j+1)/n], in this order of operations
      // (_compact.py's dynamic_map does the same).
      const double mean = 0.9 * (2 * j + 1) / (2 * n) + 0.1;
      map.value[count++] = static_cast<float>(kDecade[i] * mean);
      if (is_signed) map.value[count++] = static_cast<float>(-(kDecade[i] * mean));
    }
  }
  map.value[count++] = 0.0f;
  map.value[count++] = 1.0f;
  if (count != 256) throw std::logic_error("quant_map: the dynamic map must have 256 values");
  std::sort(map.value, map.value + 256);
  for (int c = 0; c < 255; ++c)
    map.threshold[c] = static_cast<float>((double(map.value[c]) + double(map.value[c + 1])) / 2);
  map.threshold[255] = __builtin_huge_valf();
  // first[]: for a bucket of |y| in [lo, hi), the thresholds below it are those < lo (y >= 0) or
  // <= -hi (y < 0); y then needs one comparison with the next threshold (see the header).
  for (int sign = 0; sign < 2; ++sign) {
    int seen[kQuantBuckets] = {};
    for (int c = 0; c < 255; ++c) {
      const float t = map.threshold[c];
      if ((t < 0.0f) != (sign == 1) || t == 0.0f) continue;
      const int b = bucket_of(t < 0 ? -t : t);
      if (++seen[b] > 1) throw std::logic_error("quant_map: a bucket holds two thresholds");
    }
    for (int b = 0; b < kQuantBuckets; ++b) {
      int below = 0;
      for (int c = 0; c < 255; ++c) {
        const float t = map.threshold[c];
        const float m = t < 0 ? -t : t;
        // A threshold lies below the bucket's values if it is on the far side of them:
        // for y >= 0, t < 0 or bucket_of(t) < b; for y < 0, t < 0 and bucket_of(|t|) > b.
        below += sign == 0 ? (t < 0.0f || bucket_of(m) < b) : (t < 0.0f && bucket_of(m) > b);
      }
      map.first[sign * kQuantBuckets + b] = static_cast<std::uint8_t>(below);
    }
  }
  return map;
}

}  // namespace

const QuantMap& quant_map(bool is_signed) {
  static const QuantMap kSigned = build(true);
  static const QuantMap kUnsigned = build(false);
  return is_signed ? kSigned : kUnsigned;
}

}  // namespace fastopt
