// The one loop that applies a rule over [begin, end) of a set of arrays.
//
// Compiled once per SIMD level (see rules/common.hpp for why it lives in the level's namespace).
// Every operand is read and written through its element format (formats.hpp); the rule sees only
// the compute type. The loop is plain C++ that GCC and Clang vectorize: __restrict tells them the
// param, grad and state arrays never overlap (the bindings guarantee it, copying a grad that
// overlaps its param), and the rule is held by value so its scalars are loop invariants in
// registers rather than loads that a store might alias. Each element of every array is read once
// and written at most once: one pass, no temporaries.
#pragma once

#ifndef FASTOPT_LEVEL_NS
#error "sweep.hpp is compiled once per SIMD level: include it only from kernels/levels/"
#endif

#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/formats.hpp"
#include "kernels/table.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace detail {

// Loads every operand of element i into locals, applies the rule to the locals, then stores them.
// Spelling the one read and the one write out (rather than handing the rule references into the
// arrays) keeps all intermediates in registers whatever the compiler concludes about aliasing:
// GCC 12 ignores __restrict on a parameter pack, and with references it re-read m after storing v
// and split the loads and stores of arrays that sit at the same offset in their 4 KiB pages, which
// ran Adam at half the memory bandwidth.
template <class Rule, class Param, class Grad, class State, std::size_t... I, class... States>
inline void sweep_loop(const Rule rule, const typename Param::Compute grad_scale, std::int64_t n,
                       std::index_sequence<I...>, typename Param::Storage* __restrict param,
                       const typename Grad::Storage* __restrict grad, States* __restrict... state) {
  using T = typename Param::Compute;
  for (std::int64_t i = 0; i < n; ++i) {
    T p = Param::load(param, i);
    T s[sizeof...(States) + 1] = {State::load(state, i)..., T(0)};  // + 1: none for SGD
    rule(p, T(Grad::load(grad, i)) * grad_scale, s);
    Param::store(param, i, p);
    (State::store(state, i, s[I]), ...);
  }
}

template <class Rule, class Param, class Grad, class State, std::size_t... I>
inline void sweep_operands(const Rule& rule, const Operands& ops, std::int64_t begin,
                           std::int64_t end, std::index_sequence<I...> states) {
  using T = typename Param::Compute;
  sweep_loop<Rule, Param, Grad, State>(
      rule, static_cast<T>(ops.grad_scale), end - begin, states,
      static_cast<typename Param::Storage*>(ops.param) + begin,
      static_cast<const typename Grad::Storage*>(ops.grad) + begin,
      (static_cast<typename State::Storage*>(ops.state[I]) + begin)...);
}

}  // namespace detail

// A KernelFn for Rule over arrays in these formats. Today one format serves all the operands of a
// call (the param's dtype: the bindings convert grads to it); the template keeps them apart so
// that low-precision params with float32 states need no new loop.
template <template <class> class Rule, class Param, class Grad = Param, class State = Param>
void sweep(const double* scalars, const Operands& ops, std::int64_t begin, std::int64_t end) {
  using R = Rule<typename Param::Compute>;
  const R rule(scalars);
  detail::sweep_operands<R, Param, Grad, State>(rule, ops, begin, end,
                                                std::make_index_sequence<R::kStateNames.size>{});
}

// The table row of a rule: its name, spec (flags, scalar and state names), operand counts and its
// kernel for each param dtype.
template <template <class> class Rule>
constexpr KernelRow row(unsigned variant = 0, const char* const* flag_names = nullptr,
                        int num_flags = 0) {
  using R = Rule<float>;
  static_assert(R::kStateNames.size <= kMaxStates, "raise kMaxStates");
  static_assert(count_names(R::kScalars) <= kMaxScalars, "raise kMaxScalars");
  return {R::kName,
          variant,
          flag_names,
          num_flags,
          R::kStateNames.size,
          count_names(R::kScalars),
          R::kDivSqrt,
          R::kScalars,
          R::kStateNames.names,
          R::kStateNames.kinds,
          {&sweep<Rule, F32>, &sweep<Rule, F64>},
          &sweep<Rule, F32, F32, BF16>};
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
