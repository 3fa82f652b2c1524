// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"; not in torch).
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

//   c = beta1*m + (1-beta1)*g;  p = p*decay - lr*sign(c);  m = beta2*m + (1-beta2)*g
// with decay = 1 - lr*wd. Weight decay is decoupled and needs no flag: with wd = 0 the factor is
// exactly 1. No flags at all: maximize is a scalar (common.hpp).
template <class T>
struct Lion {
  static constexpr const char* kName = "lion";
  static constexpr const char* kScalars[] = {
      "maximize", "decay", "lr", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2"};
  static constexpr StateNames kStateNames = StateNames{}.add("exp_avg", kSigned);
  static constexpr int kDivSqrt = 0;
  SignFlip<T> maximize;
  T decay, lr, beta1, one_minus_beta1, beta2, one_minus_beta2;
  explicit Lion(const double* s)
      : maximize(s[0]),
        decay(T(s[1])),
        lr(T(s[2])),
        beta1(T(s[3])),
        one_minus_beta1(T(s[4])),
        beta2(T(s[5])),
        one_minus_beta2(T(s[6])) {}
  void operator()(T& p, T g, T* s) const {
    g = maximize(g);
    T& m = s[0];
    const T c = beta1 * m + one_minus_beta1 * g;
    // np.sign: +1, -1, and c itself for zero (keeping its sign) and NaN. Written as arithmetic
    // plus one select: GCC 12 vectorizes this form and not the nested-ternary ones.
    const T unit = T(c > T(0)) - T(c < T(0));
    const T sign = (c == T(0) || c != c) ? c : unit;
    p = p * decay - lr * sign;
    m = beta2 * m + one_minus_beta2 * g;
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
