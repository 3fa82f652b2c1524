// torch.optim.SGD, with optional (Nesterov) momentum.
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// On the first step momentum_coef = 0 and grad_coef = 1, so buf = 0*buf + 1*g = g: torch's
// `buf = grad.clone()`.
template <class T, unsigned F>
struct TorchSgd {
  static constexpr const char* kName = "torch_sgd";
  static constexpr const char* kFlags[] = {"weight_decay", "momentum", "nesterov"};
  static constexpr unsigned kMomentum = 1u << 1, kNesterov = 1u << 2;
  static constexpr const char* kScalars[] = {"maximize",  "wd",       "momentum_coef",
                                             "grad_coef", "momentum", "neg_lr"};
  static constexpr StateNames kStateNames =
      StateNames{}.add("momentum_buffer", kSigned, (F & kMomentum) != 0);
  static constexpr int kDivSqrt = 0;
  SignFlip<T> maximize;
  T wd, momentum_coef, grad_coef, momentum, neg_lr;
  explicit TorchSgd(const double* s)
      : maximize(s[0]),
        wd(T(s[1])),
        momentum_coef(T(s[2])),
        grad_coef(T(s[3])),
        momentum(T(s[4])),
        neg_lr(T(s[5])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, maximize, wd);
    if constexpr ((F & kMomentum) != 0) {
      T& buf = s[0];
      buf = buf * momentum_coef + grad_coef * g;
      if constexpr ((F & kNesterov) != 0) {
        g = g + momentum * buf;
      } else {
        g = buf;
      }
    }
    p = p + neg_lr * g;
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
