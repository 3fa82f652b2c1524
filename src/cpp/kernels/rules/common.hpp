// What the rules share: the rule contract, exact arithmetic helpers, and the torch family's
// gradient preparation and Adam moments.
//
// A rule is a small struct, templated on the compute type T (formats.hpp decides how elements are
// stored; a rule never sees storage). It is constructed once per kernel call from the per-step
// scalars (computed in double by the Python class) and rounds each of them once to T. Its
// operator()(p, g, s) updates one element: the param by reference, the grad by value, and its
// state elements s[0], s[1], ... in place (locals of the loop in sweep.hpp, kept in registers). It
// must be branch-free and inline so that the loop vectorizes; options are compile-time template
// flags, never a branch on data.
//
// Each rule declares the spec that Python binds to by name (bindings/register_dispatch.cpp):
//   kName        the algorithm's name;
//   kScalars     the per-step scalar names, in the order its constructor reads s[0], s[1], ...;
//   kStateNames  the state slot names for its flags, in slot order (a StateNames list);
//   kFlags       the option names, bit k = kFlags[k] (only rules with options);
//   kDivSqrt     divides and square roots per element (the costly part; it sizes the chunks).
//
// Order of operations is part of the contract: every line of every rule is the reference's NumPy
// expression (python/fastopt/reference.py), one rounding per operation, so float64 results are
// bit-identical to NumPy. Never rewrite a - b*c as a fused or re-associated form.
//
// These headers are compiled once per SIMD level, inside that level's namespace, so each level gets
// its own copy of every inline function and the linker can never merge an AVX-512 copy into the
// SSE2 build (an ODR merge of that kind would crash older CPUs with SIGILL).
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "rules/ is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstdint>

#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// The state slot names of one variant of a rule, built at compile time from its flags:
//   static constexpr StateNames kStateNames =
//       StateNames{}.add("square_avg", kUnsigned).add("grad_avg", kSigned, centered);
// A plain array, not a std container: the table rows point into it (see levels/kernel_table.cpp).
// Each state also says what it holds (a StateKind: signed, unsigned, running max), which decides
// how state_format may store it.
struct StateNames {
  const char* names[kMaxStates + 1] = {};  // + 1: never a zero-length array
  StateKind kinds[kMaxStates + 1] = {};
  int size = 0;
  constexpr StateNames add(const char* name, StateKind kind, bool on = true) const {
    StateNames out = *this;
    if (on) {
      out.names[out.size] = name;
      out.kinds[out.size++] = kind;
    }
    return out;
  }
};
inline constexpr StateKind kSigned = StateKind::kSigned;
inline constexpr StateKind kUnsigned = StateKind::kUnsigned;
inline constexpr StateKind kRunningMax = StateKind::kRunningMax;

// Number of names in a rule's kScalars. A rule without scalars lists {nullptr}: C++ has no
// zero-length arrays.
template <int N>
constexpr int count_names(const char* const (&names)[N]) {
  return names[N - 1] == nullptr ? N - 1 : N;
}

// sqrt as the builtin, not std::sqrt: std::sqrt(float) is an inline library function that could be
// emitted out of line and shared between levels; the builtin is always the instruction (we compile
// with -fno-math-errno) and is correctly rounded, like NumPy's sqrt.
inline float root(float x) { return __builtin_sqrtf(x); }
inline double root(double x) { return __builtin_sqrt(x); }

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

// The unsigned integer with the bits of T.
template <class T>
struct BitsOf;
template <>
struct BitsOf<float> {
  using type = std::uint32_t;
};
template <>
struct BitsOf<double> {
  using type = std::uint64_t;
};

// maximize as a per-step scalar, not a kernel variant: the sign bit to XOR into every gradient.
// Flipping the sign bit is exactly what -g does to every value (zeros, infinities and NaN
// included), so maximize=1 reproduces torch's `grad = -grad` bit for bit, and maximize=0 XORs 0,
// which leaves g untouched. One XOR per element (a vxorps) in a memory-bound loop costs nothing,
// and it halves the torch family's kernel count.
template <class T>
class SignFlip {
 public:
  using Bits = typename BitsOf<T>::type;
  explicit SignFlip(double maximize)
      : mask_(maximize != 0.0 ? Bits(1) << (8 * sizeof(T) - 1) : Bits(0)) {}
  T operator()(T g) const {
    Bits bits;
    __builtin_memcpy(&bits, &g, sizeof(T));  // the builtin: never an out-of-line call
    bits ^= mask_;
    __builtin_memcpy(&g, &bits, sizeof(T));
    return g;
  }

 private:
  Bits mask_;
};

// The torch family (sgd.hpp, adam_family.hpp, adaptive.hpp, lion.hpp) follows torch 2.13's
// single-tensor implementation (torch/optim/<name>.py, the `_single_tensor_*` functions) operation
// by operation, with torch's in-place ops spelled out:
//   a.add_(b, alpha=c)         ->  a + c*b
//   a.addcmul_(b, c, value=v)  ->  a + (v*b)*c
//   a.addcdiv_(b, c, value=v)  ->  a + (v*b)/c
//   a.lerp_(b, w)              ->  a + w*(b - a)       (torch's form for w < 0.5)
// Per-step scalars (bias corrections, NAdam's mu products, RAdam's rectification, the decayed lr)
// are computed once per update() in double by the Python class and passed in kScalars order.
// Options are template flags: `F` is a bitmask whose bit k is the option named kFlags[k]. Every
// combination is compiled (levels/kernel_table.cpp) and Python picks one per update(), so the hot
// loop never branches on an option. Only options that change the number of states or the
// per-element work are flags; maximize and decoupled weight decay are scalars.

// Coupled (L2) weight decay, g = g + wd*p, stays a compile-time flag, unlike decoupled decay: with
// wd = 0 as a scalar, an infinite p would give 0*inf = nan and change g. Decoupled decay p*decay
// has no such case (decay = 1 when off, and p*1 == p for every p), so it is a scalar.
inline constexpr unsigned kWeightDecay = 1u << 0;  // bit 0 of every rule with the L2 flag

// The gradient as every torch rule first prepares it: negated for maximize, plus wd*p for L2.
template <unsigned F, class T>
inline T prepared_grad(T g, T p, const SignFlip<T>& maximize, T weight_decay) {
  g = maximize(g);
  if constexpr ((F & kWeightDecay) != 0) g = g + weight_decay * p;
  return g;
}

// What Adam, NAdam and RAdam share: weight decay (coupled or decoupled) and the two moments,
//   p = p*decay                     torch: param.mul_(1 - lr*wd) (decay = 1 when not decoupled)
//   m = m + (1-beta1)*(g - m)       torch: exp_avg.lerp_(grad, 1 - beta1)
//   v = v*beta2 + ((1-beta2)*g)*g   torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
// from their first six scalars: maximize, wd, decay, 1-beta1, beta2, 1-beta2.
template <class T, unsigned F>
struct AdamMoments {
  static constexpr int kNumScalars = 6;
  SignFlip<T> maximize;
  T wd, decay, one_minus_beta1, beta2, one_minus_beta2;
  explicit AdamMoments(const double* s)
      : maximize(s[0]),
        wd(T(s[1])),
        decay(T(s[2])),
        one_minus_beta1(T(s[3])),
        beta2(T(s[4])),
        one_minus_beta2(T(s[5])) {}
  // Decays p, prepares g, and updates m and v; returns the prepared gradient.
  T apply(T& p, T g, T& m, T& v) const {
    p = p * decay;
    g = prepared_grad<F>(g, p, maximize, wd);
    m = m + one_minus_beta1 * (g - m);
    v = v * beta2 + (one_minus_beta2 * g) * g;
    return g;
  }
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
