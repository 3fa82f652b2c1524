"""Half params and grads through every optimizer, bit for bit against a composed reference.

The reference of a half-precision step is fastopt's own float32 step (itself checked against the
NumPy references in test_optim.py and test_book.py) composed with the NumPy reference of the
conversions (fastopt._reference_half):
  master      the float32 master is exactly a float32 param updated with the widened grads, and
              the half param is that value rounded to nearest even;
  nearest     widen the half param, one float32 step, round to nearest even;
  stochastic  the same, rounded with the counter-based bits of (seed, step, key, index);
  kahan       widen the param and add the compensation, one float32 step, round to nearest, and
              keep the difference (rounded) as the new compensation (0 where the param overflowed
              to inf).
"""

from __future__ import annotations

import fastopt
import numpy as np
import pytest
from conftest import BOOK, OPTIM_CASES, case_id
from fastopt import _reference_half as ref

ml_dtypes = pytest.importorskip("ml_dtypes")

FORMATS = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
MODES = {
    "master": {},
    "nearest": {"master_weights": False},
    "stochastic": {"rounding": "stochastic", "seed": 7},
    "kahan": {"compensation": True},
}
# Vector-width and block (512) edges, a 2-D Fortran-ordered one, a size that spans blocks.
SIZES = (1, 7, 8, 9, 17, 33, 511, 512, 513, 1500)
CASES = [(name, {}) for name in BOOK] + [("optim." + n, o) for n, o in OPTIM_CASES]


def make(name: str, options: dict, **extra):
    if name.startswith("optim."):
        return getattr(fastopt.optim, name[6:])(**options, **extra)
    return getattr(fastopt, name)(lr=0.01, **options, **extra)


def half_params(fmt: str, rng: np.random.Generator) -> dict:
    dtype = FORMATS[fmt]
    params = {f"a{n}": rng.standard_normal(n).astype(np.float32).astype(dtype) for n in SIZES}
    params["F"] = np.asfortranarray(rng.standard_normal((13, 7)).astype(dtype))
    return params


def bits(array: np.ndarray) -> np.ndarray:
    return array.view(np.uint16)


def widen(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)  # exact for both formats


def step_reference(mode, fmt, seed, step, ref_opt, params, compensation, grads32):
    """One step of the composed reference over half `params` (updated in place)."""
    # In the param's memory order (np.asarray and ufuncs keep it), as the kernels see it.
    wide = {k: widen(v) for k, v in params.items()}
    if mode == "kahan":
        wide = {k: v + widen(compensation[k]) for k, v in wide.items()}
    ref_opt.update(wide, grads32)
    for k, value in wide.items():
        key = ref.random_key(seed, step, k) if mode == "stochastic" else None
        rounded = ref.round_half(value, fmt, key)
        bits(params[k])[...] = rounded
        if mode == "kahan":  # what rounding lost; nothing where it overflowed to inf
            rounded = widen(params[k])
            rest = np.where(np.isinf(rounded), np.float32(0), value - rounded)
            bits(compensation[k])[...] = ref.round_half(rest, fmt)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=[n + case_id(("", o)) for n, o in CASES])
def test_half_params_match_the_composed_reference(case, fmt, mode):
    name, options = case
    rng = np.random.default_rng(3)
    params = half_params(fmt, rng)
    opt = make(name, options, **MODES[mode])
    ref_opt = make(name, options)
    if mode == "master":
        masters = {k: widen(v).copy(order="K") for k, v in params.items()}
    reference = {k: v.copy(order="K") for k, v in params.items()}
    compensation = {k: np.zeros_like(v) for k, v in params.items()}
    for step in range(1, 5):
        grads = {
            k: rng.standard_normal(v.shape).astype(np.float32).astype(v.dtype)
            for k, v in params.items()
        }
        grads32 = {k: widen(g) for k, g in grads.items()}
        opt.update(params, grads)
        if mode == "master":
            ref_opt.update(masters, grads32)
            for k in params:
                assert np.array_equal(opt.master[k], masters[k]), k
                assert np.array_equal(bits(params[k]), ref.round_half(masters[k], fmt)), k
        else:
            step_reference(mode, fmt, 7, step, ref_opt, reference, compensation, grads32)
            for k in params:
                assert np.array_equal(bits(params[k]), bits(reference[k])), (k, step)
                if mode == "kahan":
                    assert np.array_equal(
                        bits(opt.compensation_buffer[k]), bits(compensation[k])
                    ), k
        for state in opt._state_names:  # float32 states, the same as the float32 step's
            for k, value in getattr(opt, state).items():
                assert value.dtype == np.float32
                assert np.array_equal(value, getattr(ref_opt, state)[k]), (state, k)
    assert (mode == "master") == bool(opt.master)
    assert (mode == "kahan") == bool(opt.compensation_buffer)
