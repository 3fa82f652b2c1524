// The one loop that applies a rule over [begin, end) of a set of arrays.
//
// Compiled once per SIMD level (see rules.hpp for why it lives in the level's namespace). The loop
// is plain C++ that GCC and Clang vectorize: __restrict tells them the param, grad and state arrays
// never overlap (the bindings guarantee it, copying a grad that overlaps its param), and the rule
// is held by value so its scalars are loop invariants in registers rather than loads that a store
// might alias. Each element of every array is read once and written at most once: one pass, no
// temporaries.
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "sweep.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace detail {

// Loads every operand of element i into locals, applies the rule to the locals, then stores them.
// Spelling the one read and the one write out (rather than handing the rule references into the
// arrays) keeps all intermediates in registers whatever the compiler concludes about aliasing:
// GCC 12 ignores __restrict on a parameter pack, and with references it re-read m after storing v
// and split the loads and stores of arrays that sit at the same offset in their 4 KiB pages, which
// ran Adam at half the memory bandwidth.
template <class Rule, class T, std::size_t... I, class... State>
inline void sweep_loop(const Rule rule, const T grad_scale, std::int64_t n,
                       std::index_sequence<I...>, T* __restrict param, const T* __restrict grad,
                       State* __restrict... state) {
  for (std::int64_t i = 0; i < n; ++i) {
    T p = param[i];
    T s[sizeof...(State) + 1] = {state[i]..., T(0)};  // + 1: no zero-length array for SGD
    rule(p, grad[i] * grad_scale, s);
    param[i] = p;
    ((state[i] = s[I]), ...);
  }
}

template <class Rule, class T, std::size_t... I>
inline void sweep_operands(const Rule& rule, const Operands& ops, std::int64_t begin,
                           std::int64_t end, std::index_sequence<I...> states) {
  sweep_loop(rule, static_cast<T>(ops.grad_scale), end - begin, states,
             static_cast<T*>(ops.param) + begin, static_cast<const T*>(ops.grad) + begin,
             (static_cast<T*>(ops.state[I]) + begin)...);
}

}  // namespace detail

// A KernelFn for Rule<T>.
template <template <class> class Rule, class T>
void sweep(const double* scalars, const Operands& ops, std::int64_t begin, std::int64_t end) {
  const Rule<T> rule(scalars);
  detail::sweep_operands<Rule<T>, T>(rule, ops, begin, end,
                                     std::make_index_sequence<Rule<T>::kStates>{});
}

// The table row of a rule: its name, option flags, operand counts and its kernel for each dtype.
template <template <class> class Rule>
constexpr KernelRow row(unsigned variant = 0, const char* const* flag_names = nullptr,
                        int num_flags = 0) {
  static_assert(Rule<float>::kStates <= kMaxStates, "raise kMaxStates");
  static_assert(Rule<float>::kScalars <= kMaxScalars, "raise kMaxScalars");
  return {Rule<float>::kName,
          variant,
          flag_names,
          num_flags,
          Rule<float>::kStates,
          Rule<float>::kScalars,
          Rule<float>::kDivSqrt,
          {&sweep<Rule, float>, &sweep<Rule, double>}};
}

// A rule with option flags, Rule<T, Flags>, seen as a rule of T alone for one value of Flags.
template <template <class, unsigned> class Rule, unsigned Flags>
struct WithFlags {
  template <class T>
  using type = Rule<T, Flags>;
};

// Appends one row per combination of the rule's flags (2^number of flags rows).
template <template <class, unsigned> class Rule, unsigned... Flags>
void add_variants(KernelRow* rows, int* count, std::integer_sequence<unsigned, Flags...>) {
  constexpr int kNumFlags = sizeof(Rule<float, 0>::kFlags) / sizeof(Rule<float, 0>::kFlags[0]);
  ((rows[(*count)++] =
        row<WithFlags<Rule, Flags>::template type>(Flags, Rule<float, 0>::kFlags, kNumFlags)),
   ...);
}

template <template <class, unsigned> class Rule>
void add_variants(KernelRow* rows, int* count, int capacity) {
  constexpr unsigned kNumFlags = sizeof(Rule<float, 0>::kFlags) / sizeof(Rule<float, 0>::kFlags[0]);
  if (*count + (1 << kNumFlags) > capacity) __builtin_trap();  // raise the table's capacity
  add_variants<Rule>(rows, count, std::make_integer_sequence<unsigned, 1u << kNumFlags>{});
}

}  // namespace fastopt::FASTOPT_LEVEL_NS
