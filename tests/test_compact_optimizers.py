"""Compact state (state_format) through every stateful optimizer, bit for bit against a composed
reference: fastopt's own native step (checked against the NumPy references elsewhere) started
from the compact state's values, with its new states then stored by the NumPy reference of the
formats (fastopt._compact, fastopt._reference_half):
  int8       quantized in blocks of 256 (codes and absmaxes compared);
  bfloat16   rounded to nearest even, or stochastically with the state's own key.
Params are float32, float64 and bfloat16 with master weights (the master is the float32 param).
"""

from __future__ import annotations

import fastopt
import numpy as np
import pytest
from conftest import BOOK, OPTIM_CASES, case_id
from fastopt import _compact
from fastopt import _reference_half as ref

STATEFUL = [(n, {}) for n in BOOK if n != "SGD"] + [
    ("optim." + n, o) for n, o in OPTIM_CASES if n != "SGD" or "momentum" in o
]
# Block (256) and vector edges, one array of several blocks, a Fortran-ordered 2-D one.
SIZES = (1, 7, 255, 256, 257, 700, 4095, 4096, 4097)
MODES = {
    "int8": {"state_format": "int8", "compact_min_size": 0},
    "int8-threshold": {"state_format": "int8"},  # arrays under 4096 keep float state
    "bfloat16": {"state_format": "bfloat16"},
    "bfloat16-stochastic": {"state_format": "bfloat16", "rounding": "stochastic", "seed": 5},
}
PARAMS = ("float32", "float64", "bfloat16")


def make(name: str, options: dict, **extra):
    if name.startswith("optim."):
        return getattr(fastopt.optim, name[6:])(**options, **extra)
    return getattr(fastopt, name)(lr=0.01, **options, **extra)


def param_dtype(name: str):
    if name == "bfloat16":
        return pytest.importorskip("ml_dtypes").bfloat16
    return np.dtype(name)


def format_of(opt, state: str, size: int) -> str | None:
    kind = type(opt)._rule.state_kinds[state]
    return _compact.format_for(opt.state_format, kind, size, opt.compact_min_size)


def stored(values: np.ndarray, fmt: str, signed: bool, key: int | None):
    """The raw arrays the reference stores `values` as: (codes, absmax) or bfloat16 bits."""
    if fmt == "int8":
        return _compact.quantize(values, signed)
    return ref.round_half(values.astype(np.float32), "bfloat16", key), None


def fresh_values(opt, ref_opt, fmt, compute, shape, order):
    """The values a new compact state holds: the rule's initial value, stored compactly."""
    initial = np.full(shape, type(opt).first_state_value(opt), np.float32, order=order)
    raw, absmax = stored(initial, fmt, True, None)
    return _compact.values_of(raw, absmax, True).astype(compute)


# rounding="stochastic" means half params without masters (test_half_*): not with bfloat16 params.
COMBINATIONS = [
    (mode, dtype)
    for mode in MODES
    for dtype in PARAMS
    if not (dtype == "bfloat16" and mode == "bfloat16-stochastic")
]


@pytest.mark.parametrize("mode, dtype", COMBINATIONS)
@pytest.mark.parametrize("case", STATEFUL, ids=[n + case_id(("", o)) for n, o in STATEFUL])
def test_compact_state_matches_the_composed_reference(case, mode, dtype):
    half = dtype == "bfloat16"
    name, options = case
    rng = np.random.default_rng(11)
    dt = param_dtype(dtype)
    compute = np.float64 if dtype == "float64" else np.float32
    params = {f"a{n}": rng.standard_normal(n).astype(np.float32).astype(dt) for n in SIZES}
    params["F"] = np.asfortranarray(rng.standard_normal((9, 31)).astype(np.float32).astype(dt))
    opt = make(name, options, **MODES[mode])
    ref_opt = make(name, options)
    names = opt._rule.variant(type(opt).kernel_options(opt, opt._state))[1]
    kinds = type(opt)._rule.state_kinds
    fmt = MODES[mode]["state_format"]
    # The reference updates compute-type params: the masters of bfloat16 ones.
    ref_params = {k: np.asarray(v, compute).copy(order="K") for k, v in params.items()}
    for step in range(1, 5):
        grads = {
            k: rng.standard_normal(v.shape).astype(np.float32).astype(dt) for k, v in params.items()
        }
        # The reference's states: the compact state's values (or, at a key's first update, a new
        # compact state's).
        for state in names:
            for k, p in ref_params.items():
                if k in opt.raw_state[state]:
                    values = getattr(opt, state)[k].astype(compute)
                elif format_of(opt, state, p.size) is not None:
                    order = "F" if k == "F" else "C"
                    values = fresh_values(opt, ref_opt, fmt, compute, p.shape, order)
                else:
                    continue
                getattr(ref_opt, state)[k] = values.copy(order="K")
        opt.update(params, grads)
        ref_opt.update(ref_params, {k: np.asarray(g, compute) for k, g in grads.items()})
        for k, p in params.items():
            if half:
                assert np.array_equal(opt.master[k], ref_params[k]), (k, step)
            else:
                assert np.array_equal(p, ref_params[k]), (k, step)
        stochastic = mode == "bfloat16-stochastic"
        for slot, state in enumerate(names):
            signed = kinds[state] == "signed"
            for k in params:
                raw = opt.raw_state[state][k]
                expected = getattr(ref_opt, state)[k]
                if format_of(opt, state, raw.size) is None:
                    assert raw.dtype == compute and np.array_equal(raw, expected), (state, k)
                    continue
                key = _compact.state_key(ref.random_key(5, step, k), slot) if stochastic else None
                codes, absmax = stored(expected, fmt, signed, key)
                assert np.array_equal(raw, codes), (state, k, step)
                if fmt == "int8":
                    found = opt.raw_state[state + _compact.ABSMAX][k]
                    assert np.array_equal(found, absmax), (state, k, step)
