// torch.optim's per-coordinate adaptive rates without a first moment: Adagrad, RMSprop, Adadelta.
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// Adagrad. neg_clr = -lr/(1+(step-1)*lr_decay). State `sum` starts at initial_accumulator_value
// (the bindings fill new state arrays with the optimizer's initial state value).
template <class T, unsigned F>
struct TorchAdagrad {
  static constexpr const char* kName = "torch_adagrad";
  static constexpr const char* kFlags[] = {"weight_decay"};
  static constexpr const char* kScalars[] = {"maximize", "wd", "eps", "neg_clr"};
  static constexpr StateNames kStateNames = StateNames{}.add("sum", kUnsigned);
  static constexpr int kDivSqrt = 2;
  SignFlip<T> maximize;
  T wd, eps, neg_clr;
  explicit TorchAdagrad(const double* s)
      : maximize(s[0]), wd(T(s[1])), eps(T(s[2])), neg_clr(T(s[3])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, maximize, wd);
    T& sum = s[0];
    sum = sum + (T(1) * g) * g;
    p = p + (neg_clr * g) / (root(sum) + eps);
  }
};

// RMSprop. States: square_avg, then grad_avg if centered, then momentum_buffer if momentum.
template <class T, unsigned F>
struct TorchRmsprop {
  static constexpr const char* kName = "torch_rmsprop";
  static constexpr const char* kFlags[] = {"weight_decay", "centered", "momentum"};
  static constexpr unsigned kCentered = 1u << 1, kMomentum = 1u << 2;
  static constexpr const char* kScalars[] = {"maximize", "wd",       "alpha", "one_minus_alpha",
                                             "eps",      "momentum", "neg_lr"};
  static constexpr StateNames kStateNames =
      StateNames{}
          .add("square_avg", kUnsigned)
          .add("grad_avg", kSigned, (F & kCentered) != 0)
          .add("momentum_buffer", kSigned, (F & kMomentum) != 0);
  static constexpr int kCenteredSlot = 1;
  static constexpr int kMomentumSlot = (F & kCentered) ? 2 : 1;
  static constexpr int kDivSqrt = 2;
  SignFlip<T> maximize;
  T wd, alpha, one_minus_alpha, eps, momentum, neg_lr;
  explicit TorchRmsprop(const double* s)
      : maximize(s[0]),
        wd(T(s[1])),
        alpha(T(s[2])),
        one_minus_alpha(T(s[3])),
        eps(T(s[4])),
        momentum(T(s[5])),
        neg_lr(T(s[6])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, maximize, wd);
    T& square_avg = s[0];
    square_avg = square_avg * alpha + (one_minus_alpha * g) * g;
    T avg;
    if constexpr ((F & kCentered) != 0) {
      T& grad_avg = s[kCenteredSlot];
      grad_avg = grad_avg + one_minus_alpha * (g - grad_avg);
      avg = root(square_avg + (T(-1) * grad_avg) * grad_avg);
    } else {
      avg = root(square_avg);
    }
    avg = avg + eps;
    if constexpr ((F & kMomentum) != 0) {
      T& buf = s[kMomentumSlot];
      buf = buf * momentum + (T(1) * g) / avg;
      p = p + neg_lr * buf;
    } else {
      p = p + (neg_lr * g) / avg;
    }
  }
};

// Adadelta.
template <class T, unsigned F>
struct TorchAdadelta {
  static constexpr const char* kName = "torch_adadelta";
  static constexpr const char* kFlags[] = {"weight_decay"};
  static constexpr const char* kScalars[] = {"maximize",      "wd",  "rho",
                                             "one_minus_rho", "eps", "neg_lr"};
  static constexpr StateNames kStateNames =
      StateNames{}.add("square_avg", kUnsigned).add("acc_delta", kUnsigned);
  static constexpr int kDivSqrt = 3;
  SignFlip<T> maximize;
  T wd, rho, one_minus_rho, eps, neg_lr;
  explicit TorchAdadelta(const double* s)
      : maximize(s[0]),
        wd(T(s[1])),
        rho(T(s[2])),
        one_minus_rho(T(s[3])),
        eps(T(s[4])),
        neg_lr(T(s[5])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, maximize, wd);
    T& square_avg = s[0];
    T& acc_delta = s[1];
    square_avg = square_avg * rho + (one_minus_rho * g) * g;
    const T std_dev = root(square_avg + eps);
    const T delta = (root(acc_delta + eps) / std_dev) * g;
    acc_delta = acc_delta * rho + (one_minus_rho * delta) * delta;
    p = p + neg_lr * delta;
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
