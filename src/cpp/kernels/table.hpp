// The kernel table: the only thing the bindings and the runtime know about algorithms.
//
// Pure C++17. This header is level-independent (no SIMD code in it), so it is safe to include from
// any translation unit.
#pragma once

#include <cstdint>

namespace fastopt {

// Most state arrays any rule keeps per param (e.g. exp_avg, exp_avg_sq, max_exp_avg_sq).
inline constexpr int kMaxStates = 3;
// Most per-step scalars any rule takes. Scalars always travel as double; each kernel rounds them
// once to the array's dtype before its loop.
inline constexpr int kMaxScalars = 12;

enum class Dtype : int { kFloat32 = 0, kFloat64 = 1 };
inline constexpr int kNumDtypes = 2;

// The arrays one kernel call works on. All share one dtype, one shape and one memory order, so the
// element at linear offset i of each belongs to the same logical index.
struct Operands {
  void* param;
  const void* grad;
  void* state[kMaxStates];
  // Every gradient element is multiplied by this (rounded to the dtype) as it is read: fused
  // gradient clipping. 1 when not clipping, and g*1 == g exactly, so results are unchanged.
  double grad_scale;
  // The non-finite check's output (KernelTable::flag_nonfinite), its own byte; no rule reads it.
  unsigned char* nonfinite_found;
};

// Applies a rule to elements [begin, end) of the operands.
using KernelFn = void (*)(const double* scalars, const Operands& ops, std::int64_t begin,
                          std::int64_t end);

struct KernelRow {
  const char* name;
  unsigned variant;  // the rule's option flags: bit k set = option flag_names[k] on
  const char* const* flag_names;
  int num_flags;
  int num_states;
  int num_scalars;
  int div_sqrt;  // divides and square roots per element: the costly part of a rule
  // The spec Python binds to by name: the per-step scalars in the order the kernel reads them
  // (num_scalars of them, the same for every variant of a rule), and this variant's state slots
  // (num_states of them). Both point into the rule's static constexpr lists.
  const char* const* scalar_names;
  const char* const* state_names;
  KernelFn fn[kNumDtypes];  // indexed by the param's Dtype
};

// Sum of squares of elements [begin, end) of one array, in double (see reduce.hpp).
using SumSquaresFn = double (*)(const void* data, std::int64_t begin, std::int64_t end);

// Norms are summed over chunks of this many elements of one array, then the chunks in order:
// fixed by the data, so the same bits for every thread count.
inline constexpr std::int64_t kNormChunk = 8192;

struct KernelTable {
  const KernelRow* rows;
  int size;
  SumSquaresFn sum_squares[kNumDtypes];
  // Reads ops.grad only; sets *ops.nonfinite_found = 1 if an element is inf or nan.
  KernelFn flag_nonfinite[kNumDtypes];
};

}  // namespace fastopt
