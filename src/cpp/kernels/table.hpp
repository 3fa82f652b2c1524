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

// How an array's elements are stored. The first two are also the compute types: a rule runs in
// float or double. The half formats (bfloat16, IEEE float16) are storage only: they compute in
// float32, widened on load and rounded on store (kernels/half.hpp).
enum class Dtype : int { kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2, kFloat16 = 3 };
inline constexpr int kNumDtypes = 4;
inline constexpr int kNumComputes = 2;  // float32, float64: the rows' kernels

inline constexpr bool is_half(Dtype dtype) { return static_cast<int>(dtype) >= 2; }
// The type a param of this dtype is computed in, and its states are stored in.
inline constexpr Dtype compute_of(Dtype dtype) { return is_half(dtype) ? Dtype::kFloat32 : dtype; }
inline constexpr std::int64_t bytes_of(Dtype dtype) {
  return dtype == Dtype::kFloat64 ? 8 : dtype == Dtype::kFloat32 ? 4 : 2;
}

// How a half param is written when it has no master copy, and a bfloat16 state (mixed.hpp).
enum class Rounding : unsigned char { kNearest = 0, kStochastic = 1 };

// What a rule's state holds, which decides how it may be stored compactly (state_format):
//   kSigned      either sign (momentum, Adam's m): int8 codes of the signed map, or bfloat16;
//   kUnsigned    never negative (v, sums of squares): the unsigned map, twice as fine, or bfloat16;
//   kRunningMax  a running maximum (AMSGrad's): bfloat16 keeps it monotone (rounding a max of a
//                representable value never goes below it), but int8 would not, since requantizing
//                a block to a new absmax can lower an element; it stays in the compute type then.
enum class StateKind : unsigned char { kSigned = 0, kUnsigned = 1, kRunningMax = 2 };

// How one state array of a task is stored: the compute type, bfloat16 bits, or int8 codes of a
// dynamic map with one float32 absmax per kQuantBlock elements (kernels/compact.hpp).
enum class StateFormat : unsigned char { kNative = 0, kBFloat16 = 1, kInt8 = 2 };
// int8 blocks: 256 consecutive elements in memory order, as in Dettmers et al. and bitsandbytes.
inline constexpr std::int64_t kQuantBlock = 256;
struct QuantMap;

struct Operands;
// Applies a rule to elements [begin, end) of the operands.
using KernelFn = void (*)(const double* scalars, const Operands& ops, std::int64_t begin,
                          std::int64_t end);

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
  // What the blocked sweep (KernelTable::mixed) needs of a task with a half operand; nullptr for
  // a native one, which so pays nothing for it (the bindings keep the Mixed at a stable address).
  const struct Mixed* mixed = nullptr;
};

// A task's half-precision part, read only by the blocked sweep (mixed.hpp).
struct Mixed {
  KernelFn rule = nullptr;              // the compute type's kernel, run a block at a time
  Dtype param_dtype = Dtype::kFloat32;  // how Operands::param is stored
  Dtype grad_dtype = Dtype::kFloat32;   // how Operands::grad is stored
  void* master = nullptr;               // fp32 copy the rule updates; the param is written from it
  void* compensation = nullptr;         // Kahan buffer, stored like the param; no master then
  Rounding rounding = Rounding::kNearest;  // how the param is written when there is no master
  std::uint32_t random_key = 0;            // stochastic rounding: hash of (seed, step, key)
  // Compact states: how each is stored; for int8, its map and its absmax per block. A task with
  // int8 states works in whole blocks: a piece [begin, end) covers the blocks that start in it,
  // up to `size`, so no block is ever split between threads (mixed.hpp).
  StateFormat state_format[kMaxStates] = {};
  const QuantMap* quant_map[kMaxStates] = {};
  float* absmax[kMaxStates] = {};
  bool any_int8 = false;
  std::int64_t size = 0;  // the task's elements
};

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
  const StateKind* state_kinds;  // this variant's, in slot order
  KernelFn fn[kNumComputes];     // indexed by the compute Dtype (compute_of the param's)
  // float32 param and grad with bfloat16 states rounded to nearest: formats.hpp's BF16, fused.
  KernelFn bf16_states;
};

// Sum of squares of elements [begin, end) of one array, in double (see reduce.hpp).
using SumSquaresFn = double (*)(const void* data, std::int64_t begin, std::int64_t end);

// Norms are summed over chunks of this many elements of one array, then the chunks in order:
// fixed by the data, so the same bits for every thread count.
inline constexpr std::int64_t kNormChunk = 8192;

// The level's conversions of half formats, for the tests and the bindings' slow paths:
// widen n elements of `src` (bfloat16 or float16 bits) into float; round n floats into bits,
// to nearest even or stochastically with the bits of element index0 + i under `random_key`.
using WidenFn = void (*)(const std::uint16_t* src, float* out, std::int64_t n);
using RoundFn = void (*)(const float* src, std::uint16_t* out, std::int64_t n, Rounding rounding,
                         std::uint32_t random_key, std::int64_t index0);
// The level's int8 block quantization (kernels/compact.hpp), for the tests and for new states:
// n <= kQuantBlock floats into codes and their block's absmax, and back.
using QuantizeFn = void (*)(const float* src, std::uint8_t* codes, float* absmax, std::int64_t n,
                            const QuantMap& map);
using DequantizeFn = void (*)(const std::uint8_t* codes, float absmax, float* out, std::int64_t n,
                              const QuantMap& map);

// The line-search methods' passes (kernels/search.hpp): each writes one vector and sums what the
// method needs next of what it wrote. Flat vectors are of the compute type; a param or grad (`io`)
// may be float32 in a float64 search.
enum class SearchOp : unsigned char {
  kNegate,      // out = -a
  kNegatePlus,  // out = -a + beta * b
  kAxpy,        // out = out + alpha * a
  kScale,       // out = alpha * out
  kPair,        // out = a - b, out2 = alpha * c
  kGather,      // out = a, read from an io array
  kPlace,       // io out = a + alpha * b (a null: out itself; b null: out = a); no sums
};
struct SearchPass {
  SearchOp op;
  Dtype io;  // the io array's storage (kGather, kPlace): float32 or float64
  void* out;
  void* out2;
  const void* a;
  const void* b;
  const void* c;
  const void* with[2];  // the written vector's dot products are taken with these
  int num_with;
  double alpha, beta;
};
// What a pass sums of the values it writes, in double.
struct SearchSums {
  double dot[2] = {0, 0};  // with SearchPass::with[0], [1]
  double square = 0;       // its sum of squares
  double magnitude = 0;    // its sum of |value|
  double largest = 0;      // its largest |value|, NaN if any value is NaN
};
// Runs a pass over n elements from the pass's pointers, adding into *sums.
using SearchFn = void (*)(const SearchPass& pass, std::int64_t n, SearchSums* sums);

struct KernelTable {
  const KernelRow* rows;
  int size;
  SumSquaresFn sum_squares[kNumDtypes];
  // Reads ops.grad only; sets *ops.nonfinite_found = 1 if an element is inf or nan.
  KernelFn flag_nonfinite[kNumDtypes];
  // The blocked sweep of each compute type: runs ops.mixed->rule over blocks whose half operands
  // are widened into buffers in L1, and writes the half param back rounded (mixed.hpp).
  KernelFn mixed[kNumComputes];
  WidenFn widen[2];  // [bfloat16, float16]
  RoundFn round[2];
  QuantizeFn quantize;
  DequantizeFn dequantize;
  SearchFn search[kNumComputes];  // by the search's compute type
};

}  // namespace fastopt
