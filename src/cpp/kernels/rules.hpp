// One small struct per algorithm: its per-step scalars and its per-element rule.
//
// A rule is constructed once per kernel call from the per-step scalars (computed in double by the
// Python class) and rounds each of them once to T. Its operator()(p, g, s) updates one element: the
// param by reference, the grad by value, and its state elements s[0], s[1], ... in place (locals of
// the loop in sweep.hpp, kept in registers). It must be branch-free and inline so that the loop
// vectorizes; options are compile-time template flags (rules_torch.hpp), never a branch on data.
//
// Order of operations is part of the contract: every line below is the reference's NumPy expression
// (python/fastopt/reference.py), one rounding per operation, so float64 results are bit-identical
// to NumPy. Never rewrite a - b*c as a fused or re-associated form.
//
// This header is compiled once per SIMD level, inside that level's namespace, so each level gets
// its own copy of every inline function and the linker can never merge an AVX-512 copy into the
// SSE2 build (an ODR merge of that kind would crash older CPUs with SIGILL).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "rules.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// sqrt as the builtin, not std::sqrt: std::sqrt(float) is an inline library function that could be
// emitted out of line and shared between levels; the builtin is always the instruction (we compile
// with -fno-math-errno) and is correctly rounded, like NumPy's sqrt.
inline float root(float x) { return __builtin_sqrtf(x); }
inline double root(double x) { return __builtin_sqrt(x); }

// SGD: p = p - lr*g
template <class T>
struct Sgd {
  static constexpr const char* kName = "sgd";
  static constexpr int kStates = 0;
  static constexpr int kScalars = 1;  // lr
  static constexpr int kDivSqrt = 0;  // divides and square roots per element (for the grain)
  T lr;
  explicit Sgd(const double* s) : lr(static_cast<T>(s[0])) {}
  void operator()(T& p, T g, T*) const { p = p - lr * g; }
};

// Momentum: v = momentum*v - lr*g; p = p + v
template <class T>
struct Momentum {
  static constexpr const char* kName = "momentum";
  static constexpr int kStates = 1;   // v
  static constexpr int kScalars = 2;  // momentum, lr
  static constexpr int kDivSqrt = 0;
  T momentum, lr;
  explicit Momentum(const double* s) : momentum(static_cast<T>(s[0])), lr(static_cast<T>(s[1])) {}
  void operator()(T& p, T g, T* s) const {
    T& v = s[0];
    v = momentum * v - lr * g;
    p = p + v;
  }
};

// Nesterov, in the book's order: the param step uses the OLD v.
//   p = p + (momentum*momentum)*v; p = p - ((1+momentum)*lr)*g; v = momentum*v; v = v - lr*g
template <class T>
struct Nesterov {
  static constexpr const char* kName = "nesterov";
  static constexpr int kStates = 1;   // v
  static constexpr int kScalars = 4;  // momentum*momentum, (1+momentum)*lr, momentum, lr
  static constexpr int kDivSqrt = 0;
  T momentum_sq, lr_ahead, momentum, lr;
  explicit Nesterov(const double* s)
      : momentum_sq(static_cast<T>(s[0])),
        lr_ahead(static_cast<T>(s[1])),
        momentum(static_cast<T>(s[2])),
        lr(static_cast<T>(s[3])) {}
  void operator()(T& p, T g, T* s) const {
    T& v = s[0];
    p = p + momentum_sq * v;
    p = p - lr_ahead * g;
    v = momentum * v;
    v = v - lr * g;
  }
};

// AdaGrad: h = h + g*g; p = p - (lr*g)/(sqrt(h)+eps)
template <class T>
struct AdaGrad {
  static constexpr const char* kName = "adagrad";
  static constexpr int kStates = 1;   // h
  static constexpr int kScalars = 2;  // lr, eps
  static constexpr int kDivSqrt = 2;
  T lr, eps;
  explicit AdaGrad(const double* s) : lr(static_cast<T>(s[0])), eps(static_cast<T>(s[1])) {}
  void operator()(T& p, T g, T* s) const {
    T& h = s[0];
    h = h + g * g;
    p = p - (lr * g) / (root(h) + eps);
  }
};

// RMSprop: h = h*decay_rate; h = h + ((1-decay_rate)*g)*g; p = p - (lr*g)/(sqrt(h)+eps)
template <class T>
struct RmsProp {
  static constexpr const char* kName = "rmsprop";
  static constexpr int kStates = 1;   // h
  static constexpr int kScalars = 4;  // decay_rate, 1-decay_rate, lr, eps
  static constexpr int kDivSqrt = 2;
  T decay_rate, one_minus_decay, lr, eps;
  explicit RmsProp(const double* s)
      : decay_rate(static_cast<T>(s[0])),
        one_minus_decay(static_cast<T>(s[1])),
        lr(static_cast<T>(s[2])),
        eps(static_cast<T>(s[3])) {}
  void operator()(T& p, T g, T* s) const {
    T& h = s[0];
    h = h * decay_rate;
    h = h + (one_minus_decay * g) * g;
    p = p - (lr * g) / (root(h) + eps);
  }
};

// Adam (the book's form; lr_t carries both bias corrections):
//   m = m + (1-beta1)*(g-m); v = v + (1-beta2)*(g*g-v); p = p - (lr_t*m)/(sqrt(v)+eps)
template <class T>
struct Adam {
  static constexpr const char* kName = "adam";
  static constexpr int kStates = 2;   // m, v
  static constexpr int kScalars = 4;  // 1-beta1, 1-beta2, lr_t, eps
  static constexpr int kDivSqrt = 2;
  T one_minus_beta1, one_minus_beta2, lr_t, eps;
  explicit Adam(const double* s)
      : one_minus_beta1(static_cast<T>(s[0])),
        one_minus_beta2(static_cast<T>(s[1])),
        lr_t(static_cast<T>(s[2])),
        eps(static_cast<T>(s[3])) {}
  void operator()(T& p, T g, T* s) const {
    T& m = s[0];
    T& v = s[1];
    m = m + one_minus_beta1 * (g - m);
    v = v + one_minus_beta2 * (g * g - v);
    p = p - (lr_t * m) / (root(v) + eps);
  }
};

// Exponential moving average of the params (fastopt.EMA), updated in place of the "param" operand
// with the live param as the "grad" operand: ema = ema + (1-decay)*(p - ema), torch's lerp_ form.
template <class T>
struct Ema {
  static constexpr const char* kName = "ema";
  static constexpr int kStates = 0;
  static constexpr int kScalars = 1;  // 1-decay
  static constexpr int kDivSqrt = 0;
  T one_minus_decay;
  explicit Ema(const double* s) : one_minus_decay(static_cast<T>(s[0])) {}
  void operator()(T& average, T live, T*) const {
    average = average + one_minus_decay * (live - average);
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS

namespace fastopt::FASTOPT_LEVEL_NS {

// Memory-traffic probes: a benchmark helper, not an optimizer. Traffic<K> makes exactly the loads
// and stores of a rule with K state arrays (read p, g and every state; write p and every state)
// with trivial arithmetic, through the same sweep, chunking and threads as the real rules. Its
// speed is the ceiling those rules can reach on this machine: benchmarks/ report each rule as a
// ratio of the probe with the same K (Adam: K = 2).
template <int K>
struct Traffic {
  template <class T>
  struct Rule {
    static constexpr const char* kName = K == 0   ? "traffic0"
                                         : K == 1 ? "traffic1"
                                         : K == 2 ? "traffic2"
                                                  : "traffic3";
    static constexpr int kStates = K;
    static constexpr int kScalars = 0;
    static constexpr int kDivSqrt = 0;
    explicit Rule(const double*) {}
    void operator()(T& p, T g, T* s) const {
      p = p + g;
      for (int k = 0; k < K; ++k) s[k] = s[k] + g;  // unrolled: K is a constant
    }
  };
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
