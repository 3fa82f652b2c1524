// Memory-traffic probes: a benchmark helper, not an optimizer.
#pragma once

#include "kernels/rules/common.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {

// Traffic<K> makes exactly the loads and stores of a rule with K state arrays (read p, g and every
// state; write p and every state) with trivial arithmetic, through the same sweep, chunking and
// threads as the real rules. Its speed is the ceiling those rules can reach on this machine:
// benchmarks/ report each rule as a ratio of the probe with the same K (Adam: K = 2).
template <int K>
struct Traffic {
  template <class T>
  struct Rule {
    static constexpr const char* kName = K == 0   ? "traffic0"
                                         : K == 1 ? "traffic1"
                                         : K == 2 ? "traffic2"
                                                  : "traffic3";
    static constexpr const char* kScalars[] = {nullptr};  // none
    static constexpr StateNames kStateNames =
        StateNames{}.add("s0", kSigned, K > 0).add("s1", kSigned, K > 1).add("s2", kSigned, K > 2);
    static constexpr int kDivSqrt = 0;
    explicit Rule(const double*) {}
    void operator()(T& p, T g, T* s) const {
      p = p + g;
      for (int k = 0; k < K; ++k) s[k] = s[k] + g;  // unrolled: K is a constant
    }
  };
};

}  // namespace fastopt::FASTOPT_LEVEL_NS
