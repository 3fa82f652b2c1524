#include "kernels/quant_map.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace fastopt {
namespace {

// 10^(i-7) and 10^(i-6) for the seven decades, as double literals (correctly rounded: no pow()
// to differ); _compact.py uses the same literals.
constexpr double kStart[7] = {1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};
constexpr double kDecade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
constexpr float kInf = __builtin_huge_valf();

std::uint32_t bits_of(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

float float_of(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

void check(bool ok, const char* what) {
  if (!ok) throw std::logic_error(std::string("quant_map: ") + what);
}

int floor_log2(int k) {
  int level = 0;
  while ((2 << level) <= k) ++level;
  return level;
}

// The low 3 bits of f's biased exponent: the vpermps index of the decoding tables.
int exponent_index(float f) { return static_cast<int>((bits_of(f) >> 23) & 7); }

// The value of index j of level L, in float32 (the build has no FMA contraction).
float value_of(const QuantMap& map, int level, int j) {
  return map.base[level] + (static_cast<float>(j) + 0.5f) * map.step[level];
}

QuantMap build(bool is_signed) {
  QuantMap map{};
  map.is_signed = is_signed;
  const int first = is_signed ? 0 : 1;  // the level of decade 0
  for (int i = 0; i < 7; ++i) {
    const int level = first + i;
    const int n = is_signed ? 1 << i : 1 << (i + 1);
    map.base[level] = static_cast<float>(kStart[i]);
    map.step[level] = static_cast<float>(0.9 * kDecade[i] / n);
    map.inv_step[level] = static_cast<float>(n / (0.9 * kDecade[i]));
    map.cap[level] = static_cast<float>(n - 1);
  }
  const bool signed_map = is_signed;
  for (int code = 0; code < 256; ++code) {
    const int m = signed_map ? code & 0x7F : code;
    const bool one = signed_map ? code == 0x80 : code == 255;
    float v = 0.0f;
    if (one) {
      v = 1.0f;
    } else if (m != 0) {
      const int k = signed_map ? m : m + 1;
      const int level = floor_log2(k);
      v = value_of(map, level, k - (1 << level));
      if (signed_map && (code & 0x80) != 0) v = -v;
    }
    map.value[code] = v;
  }

  // Thresholds: midpoints in double of float values, rounded to float.
  for (int i = 0; i < 7; ++i) {
    const int level = first + i;
    const double least = value_of(map, level, 0);
    const double below =
        i == 0 ? 0.0 : value_of(map, level - 1, static_cast<int>(map.cap[level - 1]));
    map.threshold[i] = static_cast<float>((below + least) / 2);
  }
  map.threshold[7] = static_cast<float>(
      (double(value_of(map, first + 6, static_cast<int>(map.cap[first + 6]))) + 1.0) / 2);

  // Quantizing: by the bucket, then by the count c.
  for (int i = 0; i < 8; ++i) map.enc_threshold[i] = map.threshold[i];
  for (int k = 0; k < 16; ++k) {
    const std::uint32_t start = static_cast<std::uint32_t>(kQuantBucketBias + k) << 24;
    int below = 0, inside = 0;
    for (int i = 0; i < 8; ++i) {
      const std::uint32_t d = bits_of(map.threshold[i]);
      below += d < start ? 1 : 0;
      inside += (d >> 24) == (start >> 24) ? 1 : 0;
    }
    check(inside <= 1, "a bucket holds two thresholds");
    map.enc_bucket[k] = static_cast<std::uint8_t>(below);
  }
  check(map.enc_bucket[0] == 0, "a threshold below the bucket table");
  check((bits_of(1.0f) >> 24) < kQuantBucketBias + 16, "1.0 beyond the bucket table");
  map.enc_limit[0] = 1.0f;
  map.enc_limit[1] = signed_map ? __builtin_nextafterf(map.threshold[7], 0.0f) : 1.0f;
  map.enc_base[0] = map.threshold[7];
  map.enc_inv_step[0] = 1048576.0f;  // 2^20
  map.enc_offset[8] = signed_map ? 0x80 : 255;
  for (int c = 1; c < 8; ++c) {
    const int level = c - 1 + first;
    map.enc_base[c] = map.base[level];
    map.enc_inv_step[c] = map.inv_step[level];
    map.enc_cap[c] = map.enc_cap[c + 8] = static_cast<std::uint8_t>(map.cap[level]);
    map.enc_offset[c] = static_cast<std::uint8_t>((1 << level) - (signed_map ? 0 : 1));
    map.enc_offset[c + 8] = static_cast<std::uint8_t>(map.enc_offset[c] | (signed_map ? 0x80 : 0));
  }
  // c = 0 (a' < D_0): t = (a' - ONE) * 2^20 < -2^19, far from int's limits: negative even
  // after + offset (at most 255).
  check((map.threshold[0] - map.enc_base[0]) * map.enc_inv_step[0] <= -256.0f, "c = 0 is not < 0");

  // Dequantizing, by the exponent of f = float(m) + 0.5 (signed) or + 1.5 (unsigned), 2^L + j + 0.5
  // for a regular code. The special codes take an exponent no level uses: signed m = 0 (f = 0.5,
  // both 0 and 1.0: compact.hpp picks 1.0 for 0x80), unsigned m = 0 and 255 (f = 1.5 and 256.5).
  const float shift = signed_map ? 0.5f : 1.5f;
  bool used[8] = {};
  for (int i = 0; i < 7; ++i) {
    const int level = first + i;
    const int e = exponent_index(static_cast<float>(1 << level) + 0.5f);
    check(!used[e], "two levels share a decoding entry");
    used[e] = true;
    map.dec_sub[e] = static_cast<float>(1 << level);
    map.dec_step[e] = map.step[level];
    map.dec_base[e] = map.base[level];
  }
  const int special = exponent_index(0.0f + shift);
  check(!used[special], "a level holds the special codes' decoding entry");
  map.dec_sub[special] = shift;  // f - dec_sub = 0 for m = 0: the value 0 + 0 * step = +0
  if (!signed_map) {
    // m = 255: f - dec_sub = 255, and 255 * step must round to exactly 1.0.
    check(exponent_index(255.0f + shift) == special, "unsigned 1.0 is not in the special entry");
    float step = static_cast<float>(1.0 / 255);
    while (255.0f * step < 1.0f) step = __builtin_nextafterf(step, 1.0f);
    while (255.0f * step > 1.0f) step = __builtin_nextafterf(step, 0.0f);
    check(255.0f * step == 1.0f, "no float step makes 255 * step == 1");
    map.dec_step[special] = step;
  }

  // The invariants compact.hpp relies on.
  for (int i = 0; i + 1 < 8; ++i) check(map.threshold[i] < map.threshold[i + 1], "thresholds");
  for (int c = 1; c < 8; ++c) {
    // a >= D_(c-1) > base: a - base >= 0, so t >= 0 and int(t) is defined.
    check(map.threshold[c - 1] > map.enc_base[c], "a threshold below its decade's start");
  }
  // Every a >= the negative limit (just below ONE) reaches t >= n - 1 in the last level (t is
  // monotone in a): so clamping a there, and ONE's code for a positive y, change no code.
  const float t_limit = (map.enc_limit[1] - map.enc_base[7]) * map.enc_inv_step[7];
  check(t_limit >= map.cap[first + 6], "the last level's top index below ONE");
  check(map.enc_offset[7] + map.enc_cap[7] == (signed_map ? 127 : 254), "the top code");
  // The decoding tables give value[] for every code (compact.hpp's AVX2 decode, in scalar).
  for (int code = 0; code < 256; ++code) {
    const int m = signed_map ? code & 0x7F : code;
    const float f = static_cast<float>(m) + shift;
    const int e = exponent_index(f);
    // Signed: f's power of two (its bits & 0xFF800000) stands for dec_sub.
    const float sub = signed_map ? float_of(bits_of(f) & 0xFF800000u) : map.dec_sub[e];
    float v = map.dec_base[e] + (f - sub) * map.dec_step[e];
    if (signed_map && (code & 0x80) != 0) v = code == 0x80 ? 1.0f : -v;
    check(bits_of(v) == bits_of(map.value[code]), "the decoding tables differ from value[]");
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
