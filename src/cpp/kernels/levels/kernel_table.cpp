// The kernel table of one SIMD level. CMake compiles this one file once per level, each time with
// that level's -march flags and FASTOPT_LEVEL_NS set to the level's name (baseline, avx2, avx512),
// so the levels share every line of source and differ in instruction set only.
#include "kernels/rules.hpp"
#include "kernels/sweep.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace {

// One row per algorithm. Adding an algorithm: a rule in rules.hpp, a row here.
constexpr KernelRow kRows[] = {
    row<Sgd>(), row<Momentum>(), row<Nesterov>(), row<AdaGrad>(), row<RmsProp>(), row<Adam>(),
    // Benchmark helpers: the memory-traffic ceiling for rules with 0 to 3 state arrays.
    row<Traffic<0>::Rule>(), row<Traffic<1>::Rule>(), row<Traffic<2>::Rule>(),
    row<Traffic<3>::Rule>(),
};

}  // namespace

KernelTable kernel_table() { return {kRows, static_cast<int>(sizeof(kRows) / sizeof(kRows[0]))}; }

}  // namespace fastopt::FASTOPT_LEVEL_NS
