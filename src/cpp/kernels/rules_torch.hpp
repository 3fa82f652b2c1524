// The torch.optim family and Lion: one struct per algorithm, each with compile-time option flags.
//
// Each rule follows torch 2.13's single-tensor implementation (torch/optim/<name>.py, the
// `_single_tensor_*` functions) operation by operation, with torch's in-place ops spelled out:
//   a.add_(b, alpha=c)         ->  a + c*b
//   a.addcmul_(b, c, value=v)  ->  a + (v*b)*c
//   a.addcdiv_(b, c, value=v)  ->  a + (v*b)/c
//   a.lerp_(b, w)              ->  a + w*(b - a)       (torch's form for w < 0.5)
// Per-step scalars (bias corrections, NAdam's mu products, RAdam's rectification, the decayed lr)
// are computed once per update() in double by the Python class (fastopt/optim.py) and passed in the
// order each rule lists.
//
// Options are template flags: `F` is a bitmask whose bit k is the option named kFlags[k]. Every
// rule lists "maximize" and "weight_decay" first (bits 0 and 1), so the shared gradient preparation
// below serves all of them. "weight_decay" means torch's L2 form, g + wd*p; the decoupled form
// (p *= 1 - lr*wd) is its own flag. Every combination is compiled (kernel_table.cpp) and Python
// picks one per update(), so the hot loop never branches on an option.
//
// Compiled once per SIMD level, inside that level's namespace (see rules.hpp).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "rules_torch.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include "kernels/rules.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

inline constexpr unsigned kMaximize = 1u << 0;
inline constexpr unsigned kWeightDecay = 1u << 1;  // L2: g = g + wd*p

// The gradient as every torch rule first prepares it: negated for maximize, plus wd*p for L2.
template <unsigned F, class T>
inline T prepared_grad(T g, T p, T weight_decay) {
  if constexpr ((F & kMaximize) != 0) g = -g;
  if constexpr ((F & kWeightDecay) != 0) g = g + weight_decay * p;
  return g;
}

// torch.maximum: NaN in either operand propagates. Every comparison is made unconditionally, so
// the ternaries are plain selects (blends): under -ftrapping-math GCC will not vectorize a
// comparison that the source makes only on some paths.
template <class T>
inline T maximum(T a, T b) {
  const bool a_larger = a > b;
  const bool a_nan = a != a;
  const bool b_nan = b != b;
  const T larger = a_larger ? a : b;
  return a_nan ? a : (b_nan ? b : larger);
}

inline constexpr unsigned kDecoupled = 1u << 2;  // Adam, NAdam, RAdam: p = p*(1 - lr*wd)

// What Adam, NAdam and RAdam share: weight decay (coupled or decoupled) and the two moments,
//   m = m + (1-beta1)*(g - m)       torch: exp_avg.lerp_(grad, 1 - beta1)
//   v = v*beta2 + ((1-beta2)*g)*g   torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
// from their first five scalars: wd, 1-lr*wd, 1-beta1, beta2, 1-beta2.
template <class T, unsigned F>
struct AdamMoments {
  T wd, decay, one_minus_beta1, beta2, one_minus_beta2;
  explicit AdamMoments(const double* s)
      : wd(T(s[0])),
        decay(T(s[1])),
        one_minus_beta1(T(s[2])),
        beta2(T(s[3])),
        one_minus_beta2(T(s[4])) {}
  // Decays p, prepares g, and updates m and v; returns the prepared gradient.
  T apply(T& p, T g, T& m, T& v) const {
    if constexpr ((F & kDecoupled) != 0) p = p * decay;
    g = prepared_grad<F>(g, p, wd);
    m = m + one_minus_beta1 * (g - m);
    v = v * beta2 + (one_minus_beta2 * g) * g;
    return g;
  }
};

// Scalars: wd, momentum_coef, grad_coef, momentum, -lr. On the first step momentum_coef = 0 and
// grad_coef = 1, so buf = 0*buf + 1*g = g: torch's `buf = grad.clone()`.
template <class T, unsigned F>
struct TorchSgd {
  static constexpr const char* kName = "torch_sgd";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay", "momentum", "nesterov"};
  static constexpr unsigned kMomentum = 1u << 2, kNesterov = 1u << 3;
  static constexpr int kStates = (F & kMomentum) ? 1 : 0;  // momentum_buffer
  static constexpr int kScalars = 5;
  static constexpr int kDivSqrt = 0;
  T wd, momentum_coef, grad_coef, momentum, neg_lr;
  explicit TorchSgd(const double* s)
      : wd(T(s[0])),
        momentum_coef(T(s[1])),
        grad_coef(T(s[2])),
        momentum(T(s[3])),
        neg_lr(T(s[4])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, wd);
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

// Adam and AdamW (= Adam with decoupled weight decay).
// Scalars: wd, 1-lr*wd, 1-beta1, beta2, 1-beta2, sqrt(1-beta2**step), eps, -lr/(1-beta1**step).
template <class T, unsigned F>
struct TorchAdam {
  static constexpr const char* kName = "torch_adam";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay", "decoupled_weight_decay",
                                           "amsgrad"};
  static constexpr unsigned kAmsgrad = 1u << 3;
  static constexpr int kStates = (F & kAmsgrad) ? 3 : 2;  // exp_avg, exp_avg_sq, max_exp_avg_sq
  static constexpr int kScalars = 8;
  static constexpr int kDivSqrt = 2;
  AdamMoments<T, F> moments;
  T bias_correction2_sqrt, eps, neg_step_size;
  explicit TorchAdam(const double* s)
      : moments(s), bias_correction2_sqrt(T(s[5])), eps(T(s[6])), neg_step_size(T(s[7])) {}
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

// Adagrad. Scalars: wd, eps, -lr/(1+(step-1)*lr_decay). State `sum` starts at
// initial_accumulator_value (the bindings fill new state arrays with the optimizer's
// `_initial_state_value`).
template <class T, unsigned F>
struct TorchAdagrad {
  static constexpr const char* kName = "torch_adagrad";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay"};
  static constexpr int kStates = 1;  // sum
  static constexpr int kScalars = 3;
  static constexpr int kDivSqrt = 2;
  T wd, eps, neg_clr;
  explicit TorchAdagrad(const double* s) : wd(T(s[0])), eps(T(s[1])), neg_clr(T(s[2])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, wd);
    T& sum = s[0];
    sum = sum + (T(1) * g) * g;
    p = p + (neg_clr * g) / (root(sum) + eps);
  }
};

// RMSprop. Scalars: wd, alpha, 1-alpha, eps, momentum, -lr.
// States: square_avg, then grad_avg if centered, then momentum_buffer if momentum.
template <class T, unsigned F>
struct TorchRmsprop {
  static constexpr const char* kName = "torch_rmsprop";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay", "centered", "momentum"};
  static constexpr unsigned kCentered = 1u << 2, kMomentum = 1u << 3;
  static constexpr int kCenteredSlot = 1;
  static constexpr int kMomentumSlot = (F & kCentered) ? 2 : 1;
  static constexpr int kStates = 1 + ((F & kCentered) ? 1 : 0) + ((F & kMomentum) ? 1 : 0);
  static constexpr int kScalars = 6;
  static constexpr int kDivSqrt = 2;
  T wd, alpha, one_minus_alpha, eps, momentum, neg_lr;
  explicit TorchRmsprop(const double* s)
      : wd(T(s[0])),
        alpha(T(s[1])),
        one_minus_alpha(T(s[2])),
        eps(T(s[3])),
        momentum(T(s[4])),
        neg_lr(T(s[5])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, wd);
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

// Adadelta. Scalars: wd, rho, 1-rho, eps, -lr. States: square_avg, acc_delta.
template <class T, unsigned F>
struct TorchAdadelta {
  static constexpr const char* kName = "torch_adadelta";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay"};
  static constexpr int kStates = 2;
  static constexpr int kScalars = 5;
  static constexpr int kDivSqrt = 3;
  T wd, rho, one_minus_rho, eps, neg_lr;
  explicit TorchAdadelta(const double* s)
      : wd(T(s[0])), rho(T(s[1])), one_minus_rho(T(s[2])), eps(T(s[3])), neg_lr(T(s[4])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, wd);
    T& square_avg = s[0];
    T& acc_delta = s[1];
    square_avg = square_avg * rho + (one_minus_rho * g) * g;
    const T std_dev = root(square_avg + eps);
    const T delta = (root(acc_delta + eps) / std_dev) * g;
    acc_delta = acc_delta * rho + (one_minus_rho * delta) * delta;
    p = p + neg_lr * delta;
  }
};

// Adamax. Scalars: wd, 1-beta1, beta2, eps, -lr/(1-beta1**step). States: exp_avg, exp_inf.
template <class T, unsigned F>
struct TorchAdamax {
  static constexpr const char* kName = "torch_adamax";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay"};
  static constexpr int kStates = 2;
  static constexpr int kScalars = 5;
  static constexpr int kDivSqrt = 1;
  T wd, one_minus_beta1, beta2, eps, neg_clr;
  explicit TorchAdamax(const double* s)
      : wd(T(s[0])), one_minus_beta1(T(s[1])), beta2(T(s[2])), eps(T(s[3])), neg_clr(T(s[4])) {}
  void operator()(T& p, T g, T* s) const {
    g = prepared_grad<F>(g, p, wd);
    T& m = s[0];
    T& u = s[1];
    m = m + one_minus_beta1 * (g - m);
    const T magnitude = g < T(0) ? -g : g;  // |g|, keeping NaN
    u = maximum(u * beta2, magnitude + eps);
    p = p + (neg_clr * m) / u;
  }
};

// NAdam. Scalars: wd, 1-lr*wd, 1-beta1, beta2, 1-beta2, 1-beta2**step, eps,
// -lr*(1-mu)/(1-mu_product), -lr*mu_next/(1-mu_product*mu_next). States: exp_avg, exp_avg_sq.
template <class T, unsigned F>
struct TorchNadam {
  static constexpr const char* kName = "torch_nadam";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay", "decoupled_weight_decay"};
  static constexpr int kStates = 2;
  static constexpr int kScalars = 9;
  static constexpr int kDivSqrt = 3;
  AdamMoments<T, F> moments;
  T bias_correction2, eps, grad_coef, avg_coef;
  explicit TorchNadam(const double* s)
      : moments(s),
        bias_correction2(T(s[5])),
        eps(T(s[6])),
        grad_coef(T(s[7])),
        avg_coef(T(s[8])) {}
  void operator()(T& p, T g, T* s) const {
    g = moments.apply(p, g, s[0], s[1]);
    const T denom = root(s[1] / bias_correction2) + eps;
    p = p + (grad_coef * g) / denom;
    p = p + (avg_coef * s[0]) / denom;
  }
};

// RAdam. Scalars: wd, 1-lr*wd, 1-beta1, beta2, 1-beta2, 1-beta1**step, lr,
// sqrt(1-beta2**step), eps, rect. The `rectify` flag is chosen per step (rho_t > 5).
template <class T, unsigned F>
struct TorchRadam {
  static constexpr const char* kName = "torch_radam";
  static constexpr const char* kFlags[] = {"maximize", "weight_decay", "decoupled_weight_decay",
                                           "rectify"};
  static constexpr unsigned kRectify = 1u << 3;
  static constexpr int kStates = 2;
  static constexpr int kScalars = 10;
  static constexpr int kDivSqrt = (F & kRectify) ? 2 : 1;
  AdamMoments<T, F> moments;
  T bias_correction1, lr, bias_correction2_sqrt, eps, rect;
  explicit TorchRadam(const double* s)
      : moments(s),
        bias_correction1(T(s[5])),
        lr(T(s[6])),
        bias_correction2_sqrt(T(s[7])),
        eps(T(s[8])),
        rect(T(s[9])) {}
  void operator()(T& p, T g, T* s) const {
    moments.apply(p, g, s[0], s[1]);
    T step = (s[0] / bias_correction1) * lr;
    if constexpr ((F & kRectify) != 0) {
      step = (step * (bias_correction2_sqrt / (root(s[1]) + eps))) * rect;
    }
    p = p + T(-1) * step;
  }
};

// Lion (Chen et al. 2023; not in torch). Scalars: 1-lr*wd, lr, beta1, 1-beta1, beta2, 1-beta2.
//   c = beta1*m + (1-beta1)*g;  p = p*(1 - lr*wd) - lr*sign(c);  m = beta2*m + (1-beta2)*g
// Weight decay is decoupled and needs no flag: with wd = 0 the factor is exactly 1.
template <class T, unsigned F>
struct Lion {
  static constexpr const char* kName = "lion";
  static constexpr const char* kFlags[] = {"maximize"};
  static constexpr int kStates = 1;  // exp_avg
  static constexpr int kScalars = 6;
  static constexpr int kDivSqrt = 0;
  T decay, lr, beta1, one_minus_beta1, beta2, one_minus_beta2;
  explicit Lion(const double* s)
      : decay(T(s[0])),
        lr(T(s[1])),
        beta1(T(s[2])),
        one_minus_beta1(T(s[3])),
        beta2(T(s[4])),
        one_minus_beta2(T(s[5])) {}
  void operator()(T& p, T g, T* s) const {
    if constexpr ((F & kMaximize) != 0) g = -g;
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
