// The kernel table of one SIMD level. CMake compiles this one file once per level, each time with
// that level's -march flags and FASTOPT_LEVEL_NS set to the level's name (baseline, avx2, avx512),
// so the levels share every line of source and differ in instruction set only.
//
// No std:: container here: its out-of-line member functions would be emitted in every level and
// merged by the linker, so one level's instructions could end up running on a CPU without them.
// For the same reason the rules' names are constexpr arrays of const char* (rules/common.hpp), and
// the rows point into them.
#include "kernels/compact.hpp"
#include "kernels/mixed.hpp"
#include "kernels/reduce.hpp"
#include "kernels/rules/adam_family.hpp"
#include "kernels/rules/adaptive.hpp"
#include "kernels/rules/book.hpp"
#include "kernels/rules/ema.hpp"
#include "kernels/rules/lion.hpp"
#include "kernels/rules/sgd.hpp"
#include "kernels/rules/traffic.hpp"
#include "kernels/search.hpp"
#include "kernels/sweep.hpp"

namespace fastopt::FASTOPT_LEVEL_NS {
namespace {

constexpr int kCapacity = 96;

struct Table {
  KernelRow rows[kCapacity];
  int count = 0;

  Table() {
    // One line per algorithm. Adding an algorithm: a rule in rules/, a line here.
    // The book's six (rules/book.hpp), and fastopt.EMA.
    rows[count++] = row<Sgd>();
    rows[count++] = row<Momentum>();
    rows[count++] = row<Nesterov>();
    rows[count++] = row<AdaGrad>();
    rows[count++] = row<RmsProp>();
    rows[count++] = row<Adam>();
    rows[count++] = row<Ema>();
    // The torch.optim family, AdaBelief and Lion, every combination of options.
    add_variants<TorchSgd>(rows, &count, kCapacity);
    add_variants<TorchAdam>(rows, &count, kCapacity);
    add_variants<TorchAdagrad>(rows, &count, kCapacity);
    add_variants<TorchRmsprop>(rows, &count, kCapacity);
    add_variants<TorchAdadelta>(rows, &count, kCapacity);
    add_variants<TorchAdamax>(rows, &count, kCapacity);
    add_variants<TorchNadam>(rows, &count, kCapacity);
    add_variants<TorchRadam>(rows, &count, kCapacity);
    add_variants<AdaBelief>(rows, &count, kCapacity);
    rows[count++] = row<Lion>();
    // Benchmark helpers: the memory-traffic ceiling for rules with 0 to 3 state arrays.
    rows[count++] = row<Traffic<0>::Rule>();
    rows[count++] = row<Traffic<1>::Rule>();
    rows[count++] = row<Traffic<2>::Rule>();
    rows[count++] = row<Traffic<3>::Rule>();
  }
};

template <Dtype D>
void widen(const std::uint16_t* src, float* out, std::int64_t n) {
  half::widen_block(D, src, out, n);
}

template <Dtype D>
void round(const float* src, std::uint16_t* out, std::int64_t n, Rounding rounding,
           std::uint32_t random_key, std::int64_t index0) {
  half::round_block(D, src, out, n, rounding, random_key, index0);
}

}  // namespace

KernelTable kernel_table() {
  static const Table table;  // built once, at import, before any thread can use it
  using D = Dtype;
  return {table.rows,
          table.count,
          {&sum_of_squares<D::kFloat32>, &sum_of_squares<D::kFloat64>,
           &sum_of_squares<D::kBFloat16>, &sum_of_squares<D::kFloat16>},
          {&flag_nonfinite<D::kFloat32>, &flag_nonfinite<D::kFloat64>,
           &flag_nonfinite<D::kBFloat16>, &flag_nonfinite<D::kFloat16>},
          {&sweep_mixed<float>, &sweep_mixed<double>},
          {&widen<D::kBFloat16>, &widen<D::kFloat16>},
          {&round<D::kBFloat16>, &round<D::kFloat16>},
          &compact::quantize,
          &compact::dequantize,
          {&search::pass<float>, &search::pass<double>}};
}

}  // namespace fastopt::FASTOPT_LEVEL_NS
