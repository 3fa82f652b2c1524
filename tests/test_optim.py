"""fastopt.optim against fastopt.reference.optim (NumPy, from torch's formulas): no torch needed.

Every class, every option alone and in combination, float32 and float64, 30 steps of fresh
gradients, several arrays of awkward sizes. Params and every state array are compared.
"""

from __future__ import annotations

import fastopt
import numpy as np
import pytest
from conftest import (
    DTYPES,
    F32_TOL,
    OPTIM_CASES,
    OPTIM_SHAPES,
    case_id,
)
from fastopt import optim, reference

STEPS = 30


def run_pair(name, options, dtype, rng, steps=STEPS):
    fast, ref = getattr(optim, name)(**options), getattr(reference.optim, name)(**options)
    params = {i: rng.standard_normal(s).astype(dtype) for i, s in enumerate(OPTIM_SHAPES)}
    params_ref = {k: v.copy() for k, v in params.items()}
    for _ in range(steps):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        fast.update(params, grads)
        ref.update(params_ref, grads)
    return fast, ref, params, params_ref


def assert_agree(name, fast, ref, params, params_ref, dtype):
    # float64: the kernels apply the reference's operations in its order, so they agree bit for
    # bit (stronger than the rtol 1e-10 asked of torch parity). float32: the rtol 1e-4.
    def same(a, b):
        if dtype == np.float64:
            assert np.array_equal(a, b), np.max(np.abs(a - b))
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=F32_TOL["atol"])

    for key in params:
        same(params[key], params_ref[key])
    for state in ref._state_names:
        assert getattr(fast, state).keys() == getattr(ref, state).keys(), state
        for key in getattr(fast, state):
            same(getattr(fast, state)[key], getattr(ref, state)[key])
    assert fast.steps == ref.steps
    if name == "NAdam":
        assert fast.mu_product == ref.mu_product


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", OPTIM_CASES, ids=case_id)
def test_matches_reference(case, dtype, rng):
    name, options = case
    fast, ref, params, params_ref = run_pair(name, options, dtype, rng)
    assert_agree(name, fast, ref, params, params_ref, dtype)


def test_lion_follows_its_formula(rng):
    """One step by hand: c = b1*m + (1-b1)*g; p = p*(1-lr*wd) - lr*sign(c); m = b2*m + (1-b2)*g."""
    lr, (b1, b2), wd = 0.1, (0.8, 0.95), 0.5
    p0, m0 = rng.standard_normal(9), rng.standard_normal(9)
    g = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 1e-30, -1e-30, 0.0])
    m0[0] = m0[1] = m0[8] = 0.0  # c = 0 exactly: sign 0, the param only decays
    opt = fastopt.Lion(lr=lr, betas=(b1, b2), weight_decay=wd)
    opt.exp_avg["w"] = m0.copy()
    params = {"w": p0.copy()}
    opt.update(params, {"w": g})
    c = b1 * m0 + (1 - b1) * g
    assert np.array_equal(params["w"], p0 * (1 - lr * wd) - lr * np.sign(c))
    assert np.array_equal(opt.exp_avg["w"], b2 * m0 + (1 - b2) * g)
    assert params["w"][0] == p0[0] * (1 - lr * wd)


def test_top_level_exports_the_new_algorithms():
    for name in ("AdamW", "Adamax", "NAdam", "RAdam", "Adadelta", "Lion"):
        assert getattr(fastopt, name) is getattr(optim, name)
    # The book's classes keep the book's math under the book's names.
    assert fastopt.Adam is not optim.Adam and fastopt.SGD is not optim.SGD


# torch 2.13's signatures without params/foreach/fused/capturable/differentiable, as
# (name, default, keyword-only). tests/test_optim_torch.py checks these against torch itself.
SIGNATURES = {
    "SGD": "lr=0.001 momentum=0 dampening=0 weight_decay=0 nesterov=False *maximize=False",
    "Adam": "lr=0.001 betas=(0.9, 0.999) eps=1e-08 weight_decay=0 amsgrad=False *maximize=False "
    "*decoupled_weight_decay=False",
    "AdamW": "lr=0.001 betas=(0.9, 0.999) eps=1e-08 weight_decay=0.01 amsgrad=False "
    "*maximize=False",
    "Adagrad": "lr=0.01 lr_decay=0 weight_decay=0 initial_accumulator_value=0 eps=1e-10 "
    "*maximize=False",
    "RMSprop": "lr=0.01 alpha=0.99 eps=1e-08 weight_decay=0 momentum=0 centered=False "
    "*maximize=False",
    "Adadelta": "lr=1.0 rho=0.9 eps=1e-06 weight_decay=0 *maximize=False",
    "Adamax": "lr=0.002 betas=(0.9, 0.999) eps=1e-08 weight_decay=0 *maximize=False",
    "NAdam": "lr=0.002 betas=(0.9, 0.999) eps=1e-08 weight_decay=0 momentum_decay=0.004 "
    "*decoupled_weight_decay=False *maximize=False",
    "RAdam": "lr=0.001 betas=(0.9, 0.999) eps=1e-08 weight_decay=0 *decoupled_weight_decay=False "
    "*maximize=False",
    "Lion": "lr=0.0001 betas=(0.9, 0.99) weight_decay=0.0 *maximize=False",
}


def signature_of(cls) -> str:
    """The signature as text, without the options every fastopt optimizer has (COMMON_OPTIONS)."""
    import inspect

    from fastopt._settings import COMMON_OPTIONS

    words = []
    for p in inspect.signature(cls).parameters.values():
        if p.name in COMMON_OPTIONS:
            continue
        star = "*" if p.kind == p.KEYWORD_ONLY else ""
        words.append(f"{star}{p.name}={p.default!r}")
    return " ".join(words)


@pytest.mark.parametrize("name", SIGNATURES)
def test_signatures(name):
    assert signature_of(getattr(optim, name)) == SIGNATURES[name]
    assert signature_of(getattr(reference.optim, name)) == SIGNATURES[name]


@pytest.mark.parametrize(
    "name, options, argument",
    [
        ("Adam", {"betas": (0.9, 1.0)}, "betas"),
        ("Adam", {"betas": (-0.1, 0.9)}, "betas"),
        ("Adam", {"lr": -1.0}, "lr"),
        ("Adam", {"eps": -1e-8}, "eps"),
        ("SGD", {"weight_decay": -0.1}, "weight_decay"),
        ("SGD", {"momentum": -0.5}, "momentum"),
        ("SGD", {"nesterov": True}, "nesterov"),
        ("Adagrad", {"lr_decay": -1.0}, "lr_decay"),
        ("Adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
        ("RMSprop", {"alpha": -0.5}, "alpha"),
        ("Adadelta", {"rho": 1.5}, "rho"),
        ("NAdam", {"momentum_decay": -1.0}, "momentum_decay"),
        ("Lion", {"betas": (1.0, 0.9)}, "betas"),
    ],
)
def test_bad_hyperparameters(name, options, argument):
    with pytest.raises(ValueError, match=argument):
        getattr(optim, name)(**options)


@pytest.mark.parametrize("bad", [(0.9,), "0.9", 0.9])
def test_betas_must_be_a_pair(bad):
    with pytest.raises(TypeError, match="betas"):
        optim.Adam(betas=bad)


def test_options_changed_between_updates_take_effect(rng):
    """Switching amsgrad or weight decay on later picks another kernel variant, as in torch."""
    fast, ref = optim.Adam(), reference.optim.Adam()
    params = {"w": rng.standard_normal(50)}
    params_ref = {"w": params["w"].copy()}
    for step in range(10):
        if step == 4:
            fast.amsgrad = ref.amsgrad = True
            fast.weight_decay = ref.weight_decay = 0.1
        grads = {"w": rng.standard_normal(50)}
        fast.update(params, grads)
        ref.update(params_ref, grads)
    assert np.array_equal(params["w"], params_ref["w"])
    assert set(fast.max_exp_avg_sq) == {"w"}


@pytest.mark.parametrize("name", ["Adam", "RMSprop", "NAdam", "Adagrad", "Lion"])
def test_bad_input_changes_nothing(name, rng):
    """The same all-or-nothing validation as the book's classes, step count and mu_product too."""
    import copy

    options = {"RMSprop": {"centered": True, "momentum": 0.9}, "Adam": {"amsgrad": True}}.get(
        name, {}
    )
    opt = getattr(optim, name)(**options)
    params = {"a": rng.standard_normal(5), "b": rng.standard_normal((2, 3))}
    opt.update(params, {k: rng.standard_normal(v.shape) for k, v in params.items()})
    params["c"] = rng.standard_normal(4)
    grads = {
        "a": rng.standard_normal(5),
        "b": rng.standard_normal((3, 2)),
        "c": rng.standard_normal(4),
    }
    before = copy.deepcopy((params, opt.state_dict()["state"], opt.state_dict()["counters"]))
    with pytest.raises(ValueError, match=r"'b'.*\(3, 2\).*\(2, 3\)"):
        opt.update(params, grads)
    after = (params, opt.state_dict()["state"], opt.state_dict()["counters"])
    for key in before[0]:
        assert np.array_equal(before[0][key], after[0][key])
    for state in before[1]:
        assert before[1][state].keys() == after[1][state].keys()  # no state made for 'c'
        for key in before[1][state]:
            assert np.array_equal(before[1][state][key], after[1][state][key])
    assert after[2]["steps"] == before[2]["steps"] == 1
    assert after[2].get("mu_product") == before[2].get("mu_product")
