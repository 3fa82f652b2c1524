// The arrays a half param keeps beside its rule's states (issue 14): its fp32 master copy
// (opt.master), or its Kahan compensation (opt.compensation_buffer), or neither.
#pragma once

#include <pybind11/pybind11.h>

#include "bindings/arrays.hpp"
#include "bindings/plan.hpp"
#include "bindings/scratch.hpp"

namespace fastopt::bindings {

// Checks or makes (pending until validation passes) the master and compensation of the half param
// `key` that the settings call for, and points `mixed` at them; they sit at state slots
// `first_slot` and `first_slot + 1` in the page (arrays.cpp). One the settings do not call for, or
// one missing while the key already has state (a checkpoint saved without it), raises ValueError
// naming the key: either would silently change the numbers.
void half_arrays(PyObject* key, const Precision& precision, int first_slot, const ArrayView& param,
                 const ParamSpan& span, bool had_state, Scratch& scratch, Mixed* mixed);

// A param that is not half has no master and no compensation: one left from when it was half (the
// user replaced it with a float32 array) would be used again, stale, if it became half again, so it
// raises ValueError naming the key.
void no_half_arrays(PyObject* key, const Precision& precision, Dtype dtype);

}  // namespace fastopt::bindings
