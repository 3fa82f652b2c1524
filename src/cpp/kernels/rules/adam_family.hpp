// Adam and its relatives: torch's Adam/AdamW, NAdam, RAdam, Adamax.
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// Adam and AdamW (= Adam with decoupled weight decay: decay = 1-lr*wd, else 1).
// bias_correction2_sqrt = sqrt(1-beta2**step), neg_step_size = -lr/(1-beta1**step).
template <class T, unsigned F>
struct TorchAdam {
  static constexpr const char* kName = "torch_adam";
  static constexpr const char* kFlags[] = {"weight_decay", "amsgrad"};
  static constexpr unsigned kAmsgrad = 1u << 1;
  static constexpr const char* kScalars[] = {"maximize",
                                             "wd",
                                             "decay",
                                             "one_minus_beta1",
                                             "beta2",
                                             "one_minus_beta2",
                                             "bias_correction2_sqrt",
                                             "eps",
                                             "neg_step_size"};
  static constexpr StateNames kStateNames =
      StateNames{}.add("exp_avg").add("exp_avg_sq").add("max_exp_avg_sq", (F & kAmsgrad) != 0);
  static constexpr int kDivSqrt = 2;
  AdamMoments<T, F> moments;
  T bias_correction2_sqrt, eps, neg_step_size;
  explicit TorchAdam(const double* s)
      : moments(s), bias_correction2_sqrt(T(s[6])), eps(T(s[7])), neg_step_size(T(s[8])) {}
  void operator()(T& p, T g, T* s) const {
    moments.apply(p, g, s[0], s[1]);
    T second = s[1];
    if constexpr ((F & kAmsgrad) != 0) {
      s[2] = maximum(s[2], s[1]);
      second = s[2];
    }
    const T denom = root(second) / bias_correction2_sqrt + eps;
    p = p + (neg_step_size * s[0]) / denom;
  }
};

// Adamax. neg_clr = -lr/(1-beta1**step).
template <class T, unsigned F>
struct TorchAdamax {
  static constexpr const char* kName = "torch_adamax";
  static constexpr const char* kFlags[] = {"weight_decay"};
  static constexpr const char* kScalars[] = {"maximize", "wd",  "one_minus_beta1",
                                             "beta2",    "eps", "neg_clr"};
  static constexpr StateNames kStateNames = StateNames{}.add("exp_avg").add("exp_inf");
  static constexpr int kDivSqrt = 1;
  SignFlip<T> maximize;
  T wd, one_minus_beta1, beta2, eps, neg_clr;
  explicit TorchAdamax(const double* s)
      : maximize(s[0]),
        wd(T(s[1])),
        one_minus_beta1(T(s[2])),
        beta2(T(s[3])),
        eps(T(s[4])),
        neg_clr(T(s[5])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, maximize, wd);
    T& m = s[0];
    T& u = s[1];
    m = m + one_minus_beta1 * (g - m);
    const T magnitude = g < T(0) ? -g : g;  // |g|, keeping NaN
    u = maximum(u * beta2, magnitude + eps);
    p = p + (neg_clr * m) / u;
  }
};

// NAdam. bias_correction2 = 1-beta2**step, grad_coef = -lr*(1-mu)/(1-mu_product),
// avg_coef = -lr*mu_next/(1-mu_product*mu_next).
template <class T, unsigned F>
struct TorchNadam {
  static constexpr const char* kName = "torch_nadam";
  static constexpr const char* kFlags[] = {"weight_decay"};
  static constexpr const char* kScalars[] = {
      "maximize",         "wd",  "decay",     "one_minus_beta1", "beta2", "one_minus_beta2",
      "bias_correction2", "eps", "grad_coef", "avg_coef"};
  static constexpr StateNames kStateNames = StateNames{}.add("exp_avg").add("exp_avg_sq");
  static constexpr int kDivSqrt = 3;
  AdamMoments<T, F> moments;
  T bias_correction2, eps, grad_coef, avg_coef;
  explicit TorchNadam(const double* s)
      : moments(s),
        bias_correction2(T(s[6])),
        eps(T(s[7])),
        grad_coef(T(s[8])),
        avg_coef(T(s[9])) {}
  void operator()(T& p, T g, T* s) const {
    g = moments.apply(p, g, s[0], s[1]);
    const T denom = root(s[1] / bias_correction2) + eps;
    p = p + (grad_coef * g) / denom;
    p = p + (avg_coef * s[0]) / denom;
  }
};

// RAdam. bias_correction1 = 1-beta1**step, bias_correction2_sqrt = sqrt(1-beta2**step). The
// `rectify` flag is chosen per step (rho_t > 5): it changes the per-element work, so it stays a
// kernel variant rather than a branch in the loop.
template <class T, unsigned F>
struct TorchRadam {
  static constexpr const char* kName = "torch_radam";
  static constexpr const char* kFlags[] = {"weight_decay", "rectify"};
  static constexpr unsigned kRectify = 1u << 1;
  static constexpr const char* kScalars[] = {"maximize",
                                             "wd",
                                             "decay",
                                             "one_minus_beta1",
                                             "beta2",
                                             "one_minus_beta2",
                                             "bias_correction1",
                                             "lr",
                                             "bias_correction2_sqrt",
                                             "eps",
                                             "rect"};
  static constexpr StateNames kStateNames = StateNames{}.add("exp_avg").add("exp_avg_sq");
  static constexpr int kDivSqrt = (F & kRectify) ? 2 : 1;
  AdamMoments<T, F> moments;
  T bias_correction1, lr, bias_correction2_sqrt, eps, rect;
  explicit TorchRadam(const double* s)
      : moments(s),
        bias_correction1(T(s[6])),
        lr(T(s[7])),
        bias_correction2_sqrt(T(s[8])),
        eps(T(s[9])),
        rect(T(s[10])) {}
  void operator()(T& p, T g, T* s) const {
    moments.apply(p, g, s[0], s[1]);
    T step = (s[0] / bias_correction1) * lr;
    if constexpr ((F & kRectify) != 0) {
      step = (step * (bias_correction2_sqrt / (root(s[1]) + eps))) * rect;
    }
    p = p + T(-1) * step;
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
