// Phases 2 to 4 of Updater.run, once validation has passed: commit the new state arrays, run the
// kernels, write back the params that were scalars.
#pragma once

#include <Python.h>

#include "bindings/plan.hpp"
#include "bindings/scratch.hpp"

namespace fastopt::bindings {

// 2. Inserts the state arrays made in validation into the optimizer's state dicts.
void commit_states(const Scratch& scratch);

// 3. Runs the planned tasks on the thread pool, with the GIL released when the work is large enough
// to be worth it. No Python object is touched while it is released: Scratch::keep holds a
// reference to every array involved, so another Python thread replacing a dict entry cannot free
// one. Keys that share memory run in params' order on one thread (aliasing.hpp); a grad whose
// conversion is deferred is converted, with the GIL held, right before its key's kernel.
void run_plan(Scratch& scratch, const Plan& plan);

// 4. Puts the params that were scalars back into `params`, as NumPy float64 scalars.
void write_back_scalars(PyObject* params, const Scratch& scratch);

// 5. With `commit` = (target dict, values dict): target.update(values), so that the caller's
// counters move in the same C call as the params (see execute.cpp). None: nothing.
// Raises TypeError unless `commit` is None, (target dict, values dict), or a list of such pairs.
void check_commit(PyObject* commit);
void commit_counters(PyObject* commit);

}  // namespace fastopt::bindings
