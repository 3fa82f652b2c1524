// Exponential moving average of the params (fastopt.EMA): not an optimizer, the same sweep.
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// Updated in place of the "param" operand with the live param as the "grad" operand:
// ema = ema + (1-decay)*(p - ema), torch's lerp_ form.
template <class T>
struct Ema {
  static constexpr const char* kName = "ema";
  static constexpr const char* kScalars[] = {"one_minus_decay"};
  static constexpr StateNames kStateNames{};
  static constexpr int kDivSqrt = 0;
  T one_minus_decay;
  explicit Ema(const double* s) : one_minus_decay(static_cast<T>(s[0])) {}
  void operator()(T& average, T live, T*) const {
    average = average + one_minus_decay * (live - average);
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
