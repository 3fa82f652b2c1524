// The book's six ("Deep Learning from Scratch", common/optimizer.py): no options, no weight decay.
// Each rule is the book's NumPy line, operation for operation (python/fastopt/reference.py).
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// SGD: p = p - lr*g
template <class T>
struct Sgd {
  static constexpr const char* kName = "sgd";
  static constexpr const char* kScalars[] = {"lr"};
  static constexpr StateNames kStateNames{};
  static constexpr int kDivSqrt = 0;
  T lr;
  explicit Sgd(const double* s) : lr(static_cast<T>(s[0])) {}
  void operator()(T& p, T g, T*) const { p = p - lr * g; }
};

// Momentum: v = momentum*v - lr*g; p = p + v
template <class T>
struct Momentum {
  static constexpr const char* kName = "momentum";
  static constexpr const char* kScalars[] = {"momentum", "lr"};
  static constexpr StateNames kStateNames = StateNames{}.add("v", kSigned);
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
  // momentum_sq = momentum*momentum, lr_ahead = (1+momentum)*lr
  static constexpr const char* kScalars[] = {"momentum_sq", "lr_ahead", "momentum", "lr"};
  static constexpr StateNames kStateNames = StateNames{}.add("v", kSigned);
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
  static constexpr const char* kScalars[] = {"lr", "eps"};
  static constexpr StateNames kStateNames = StateNames{}.add("h", kUnsigned);
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
  static constexpr const char* kScalars[] = {"decay_rate", "one_minus_decay", "lr", "eps"};
  static constexpr StateNames kStateNames = StateNames{}.add("h", kUnsigned);
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
  static constexpr const char* kScalars[] = {"one_minus_beta1", "one_minus_beta2", "lr_t", "eps"};
  static constexpr StateNames kStateNames = StateNames{}.add("m", kSigned).add("v", kUnsigned);
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

}  // namespace fastopt::FASTOPT_LEVEL_NS
