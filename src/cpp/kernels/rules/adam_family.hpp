// Adam and its relatives: torch's Adam/AdamW, NAdam, RAdam, Adamax, and AdaBelief.
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
      StateNames{}
          .add("exp_avg", kSigned)
          .add("exp_avg_sq", kUnsigned)
          .add("max_exp_avg_sq", kRunningMax, (F & kAmsgrad) != 0);
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
  static constexpr StateNames kStateNames =
      StateNames{}.add("exp_avg", kSigned).add("exp_inf", kUnsigned);
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
  static constexpr StateNames kStateNames =
      StateNames{}.add("exp_avg", kSigned).add("exp_avg_sq", kUnsigned);
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
  static constexpr const char* kFlags[] = {"weight_decay"};
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
                                             "rect",
                                             "rectify"};
  static constexpr StateNames kStateNames =
      StateNames{}.add("exp_avg", kSigned).add("exp_avg_sq", kUnsigned);
  static constexpr int kDivSqrt = 2;
  AdamMoments<T, F> moments;
  T bias_correction1, lr, bias_correction2_sqrt, eps, rect;
  bool rectify;
  explicit TorchRadam(const double* s)
      : moments(s),
        bias_correction1(T(s[6])),
        lr(T(s[7])),
        bias_correction2_sqrt(T(s[8])),
        eps(T(s[9])),
        rect(T(s[10])),
        rectify(s[11] != 0.0) {}
  // Whether this step is rectified (rho_t > 5) is a scalar, not a kernel variant: it changes no
  // memory traffic, and the unrectified form only runs in the first few steps (5 with torch's
  // default betas). Both forms are computed and one is selected, so each is exactly torch's.
  void operator()(T& p, T g, T* s) const {
    moments.apply(p, g, s[0], s[1]);
    const T step = (s[0] / bias_correction1) * lr;
    const T rectified = (step * (bias_correction2_sqrt / (root(s[1]) + eps))) * rect;
    p = p + T(-1) * (rectify ? rectified : step);
  }
};

// AdaBelief (Zhuang et al. 2020), as adabelief-pytorch 0.2.1's AdaBelief.step() computes it:
//   p = p*decay                                   (decoupled: 1-lr*wd, fixed_decay: 1-wd, else 1)
//   g = g + wd*p                                  (weight_decay: coupled, wd != 0)
//   m = m*beta1 + (1-beta1)*g                     exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
//   r = g - m;  v = v*beta2 + ((1-beta2)*r)*r;  v = v + eps
// The package adds eps to the stored exp_avg_var in place every step (exp_avg_var.add_(eps)), so
// the state keeps it. The param step is picked per step by Python through two flags (the choice
// changes the per-element work, so it is a kernel variant, not a branch in the loop):
//   neither      p = p + (neg_step_size*m)/(sqrt(v or vmax)/sqrt(bc2) + eps)
//   rectified    p = p + (neg_step_size*m)/(sqrt(v) + eps)   (v, never vmax: the package's RAdam)
//   sgd_step     p = p + neg_step_size*m                      (degenerated_to_sgd, N_sma < 5)
//   both         no param step (degenerated_to_sgd=False with N_sma < 5); moments still updated
// amsgrad keeps vmax = max(vmax, v) in every mode, as the package does.
template <class T, unsigned F>
struct AdaBelief {
  static constexpr const char* kName = "adabelief";
  static constexpr const char* kFlags[] = {"weight_decay", "amsgrad", "rectified", "sgd_step"};
  static constexpr unsigned kAmsgrad = 1u << 1, kRectified = 1u << 2, kSgdStep = 1u << 3;
  static constexpr bool kAdaptive = (F & (kRectified | kSgdStep)) == 0;
  static constexpr bool kNoStep = (F & (kRectified | kSgdStep)) == (kRectified | kSgdStep);
  static constexpr const char* kScalars[] = {"decay",        "wd",
                                             "beta1",        "one_minus_beta1",
                                             "beta2",        "one_minus_beta2",
                                             "eps",          "bias_correction2_sqrt",
                                             "neg_step_size"};
  static constexpr StateNames kStateNames =
      StateNames{}
          .add("exp_avg", kSigned)
          .add("exp_avg_var", kUnsigned)
          .add("max_exp_avg_var", kRunningMax, (F & kAmsgrad) != 0);
  static constexpr int kDivSqrt = (F & kSgdStep) != 0 ? 0 : 2;
  T decay, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bias_correction2_sqrt,
      neg_step_size;
  explicit AdaBelief(const double* s)
      : decay(T(s[0])),
        wd(T(s[1])),
        beta1(T(s[2])),
        one_minus_beta1(T(s[3])),
        beta2(T(s[4])),
        one_minus_beta2(T(s[5])),
        eps(T(s[6])),
        bias_correction2_sqrt(T(s[7])),
        neg_step_size(T(s[8])) {}
  void operator()(T& p, T g, T* s) const {
    p = p * decay;
    if constexpr ((F & kWeightDecay) != 0) g = g + wd * p;
    T& m = s[0];
    T& v = s[1];
    m = m * beta1 + one_minus_beta1 * g;
    const T residual = g - m;
    v = v * beta2 + (one_minus_beta2 * residual) * residual;
    v = v + eps;
    if constexpr ((F & kAmsgrad) != 0) s[2] = maximum(s[2], v);
    if constexpr (kAdaptive) {
      const T second = (F & kAmsgrad) != 0 ? s[2] : v;
      const T denom = root(second) / bias_correction2_sqrt + eps;
      p = p + (neg_step_size * m) / denom;
    } else if constexpr (kNoStep) {
      // moments only
    } else if constexpr ((F & kRectified) != 0) {
      const T denom = root(v) + eps;
      p = p + (neg_step_size * m) / denom;
    } else {
      p = p + neg_step_size * m;
    }
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
