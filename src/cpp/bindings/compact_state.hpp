// Compact optimizer state (the state_format option): which states of a key are stored compactly,
// and the checks of their arrays. Kernels: kernels/compact.hpp and kernels/mixed.hpp.
//
// A compact state of a key is stored in the key's entry of its state dict, as
//   bfloat16   a uint16 array of the param's shape and memory order (the bits);
//   int8       a uint8 array of codes, likewise, and a float32 array of ceil(size / 256) absmaxes
//              in the dict "<name>_absmax" (blocks of 256 elements in memory order).
// A state stays in the compute type when the format is None, when the state is a running max and
// the format int8 (table.hpp: StateKind), and, for int8, in arrays under compact_min_size elements
// (as bitsandbytes does: there the absmax and the dispatch cost more than the codes save).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/arrays.hpp"
#include "bindings/scratch.hpp"
#include "kernels/table.hpp"

namespace fastopt::bindings {

struct CompactOptions {
  StateFormat format = StateFormat::kNative;
  std::int64_t min_size = 4096;  // int8 only
};

// How state `kind` of a param of `size` elements is stored.
StateFormat format_for(const CompactOptions& options, StateKind kind, std::int64_t size);

// Bytes a state array of a task spans: for the aliasing checks.
std::int64_t state_bytes(StateFormat format, Dtype param_dtype, std::int64_t size);
inline std::int64_t absmax_count(std::int64_t size) {
  return (size + kQuantBlock - 1) / kQuantBlock;
}

// What a compact state array of one key must be, and where its parts go.
struct CompactSlot {
  StateFormat format;
  StateKind kind;
  PyObject* dict;         // the state's {key: array}
  PyObject* absmax_dict;  // "<name>_absmax" (int8), else nullptr
  const StateSpec& spec;  // name, slot, initial value
};

// Returns the data of a compact state of `key`, checked, or made (inserted at commit, like every
// new state) and, for int8, sets *absmax to its absmaxes. Raises ValueError naming the key when
// an array there does not fit (another format, shape, size or flags: state_format changed after
// the key's first update, or a checkpoint of another format), when int8 codes are in the other
// memory order than the param (their blocks would not match their absmaxes), and when absmaxes
// overlap the param or their codes. bfloat16 bits in the other order are copied into the param's.
void* compact_state(PyObject* key, const CompactSlot& slot, const ParamSpan& param,
                    const KernelTable& table, Scratch& scratch, float** absmax, bool* had_state);

// Raises ValueError naming the key when an int8 state's absmaxes share memory with another array
// of the same key (another state, its absmaxes, the master or the compensation): the kernels would
// write one over the other, differently for each thread count. compact_state() has compared them
// with the param and their own codes.
void check_absmax_overlaps(PyObject* key, const runtime::Task& task, const Mixed& mixed,
                           const KernelRow& row, Dtype param_dtype);

}  // namespace fastopt::bindings
