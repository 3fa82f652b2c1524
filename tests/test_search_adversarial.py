"""The line-search methods: the adversarial passes' findings, each a test that failed before its
fix (issue 18). The helpers are test_search_state.py's."""

from __future__ import annotations

import copy

import fastopt
import numpy as np
import pytest
from fastopt.optim import LBFGS, ConjugateGradient
from test_search_state import KINDS, model, model_closure, same_params, same_state, snapshot

# ---- the adversarial pass's findings (each failed before its fix) ----


@pytest.mark.parametrize("call", ["step", "reset", "load_state_dict", "state_dict"])
@pytest.mark.parametrize("cls, settings", KINDS[:3])
def test_the_closure_cannot_reenter_its_step(cls, settings, call):
    """A closure that steps, resets, loads or shows its own optimizer would change (or see half
    of) the vectors the running step holds: refused, and the step undone as for any error."""
    params, closure = model()
    opt = cls(**settings)
    opt.step(params, closure)
    before, state = snapshot(params), opt.state_dict()
    calls = 0

    def reentrant():
        nonlocal calls
        calls += 1
        if calls == 2:
            args = {"step": (params, closure), "load_state_dict": (state,)}.get(call, ())
            getattr(opt, call)(*args)
        return closure()

    with pytest.raises(RuntimeError, match=rf"{call}\(\) was called from inside the closure"):
        opt.step(params, reentrant)
    assert same_params(params, before) and same_state(opt.state_dict(), state)
    opt.step(params, closure)  # and it still works


def test_a_lowered_history_size_trims_the_history():
    """torch keeps a history longer than a lowered history_size (its test is ==); here the oldest
    pairs go, so memory stays bounded and the state stays loadable."""
    params, closure = model()
    opt = LBFGS(history_size=10, max_iter=10, line_search_fn="strong_wolfe")
    opt.step(params, closure)
    assert len(opt.rho) > 3
    opt.history_size = 3
    for _ in range(3):
        opt.step(params, closure)
        assert len(opt.rho) <= 3 and len(opt.old_dirs) == len(opt.old_stps) == len(opt.rho)
    copy.deepcopy(opt).step(snapshot(params) | {"s": float(params["s"])}, closure)


def test_slots_are_not_capped_by_a_small_limit():
    """history_size 1000+ needs thousands of slots while a step runs."""
    search = fastopt._core.Search("float64", [3])
    search.gather(20_000, [np.arange(3.0)], [])
    assert search.slots == 20_001 and search.allocated_bytes == 24


def test_cubic_minimum_computes_as_torch_tensors_do():
    """A collapsed bracket or an overflow gives inf or NaN (and the midpoint), not a Python
    ZeroDivisionError or OverflowError: torch's 0-d tensors carry on there, so must we."""
    from fastopt.optim._line_search import cubic_minimum

    assert cubic_minimum(1.0, 2.0, -1.0, 1.0, 2.0, -1.0, bounds=(0.0, 1.0)) == 0.5
    torch = pytest.importorskip("torch")
    from torch.optim.lbfgs import _cubic_interpolate

    cases = [(0.0, 1.0, -1.0, 1.0, 0.5, 0.1), (0.0, 1.0, -1e200, 2.0, 3.0, 1e200),
             (1.0, 2.0, -3.0, 0.5, 2.5, 1.0), (0.0, 1.0, -1.0, 1.0, 1e308, 1e300)]  # fmt: skip
    for case in cases:
        theirs = float(_cubic_interpolate(*(torch.tensor(v, dtype=torch.float64) for v in case)))
        ours = cubic_minimum(*case)
        assert ours == theirs or (np.isnan(ours) and np.isnan(theirs)), case


def test_zero_tolerances_run_on():
    """tolerance_change=0 lets the line search's bracket collapse to a point: it carries on."""
    params = {"x": np.linspace(-1.2, 1.0, 30)}

    def closure():
        x = params["x"]
        a, b = x[:-1], x[1:]
        grad = np.zeros_like(x)
        grad[:-1] = -400 * a * (b - a * a) - 2 * (1 - a)
        grad[1:] += 200 * (b - a * a)
        return float(np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)), {"x": grad}

    opt = LBFGS(tolerance_grad=0, tolerance_change=0, history_size=5, line_search_fn="strong_wolfe")
    for _ in range(40):
        opt.step(params, closure)
    assert np.max(np.abs(params["x"] - 1)) < 1e-6


@pytest.mark.parametrize("cls", [LBFGS, ConjugateGradient])
def test_max_eval_none_is_the_default_budget(cls):
    params, closure = model()
    opt, twin = cls(max_iter=8), cls(max_iter=8)
    opt.max_eval = None  # torch's default, max_iter * 5 // 4 = 10
    twin_params = snapshot(params) | {"s": float(params["s"])}
    opt.step(params, closure)
    twin.step(twin_params, model_closure(twin_params))
    assert same_params(params, twin_params) and opt.func_evals == twin.func_evals


@pytest.mark.parametrize(
    "cls, counter, value, message",
    [(LBFGS, "t", None, "finite t"), (LBFGS, "H_diag", 0.0, "H_diag > 0"),
     (LBFGS, "rho", [-1.0], "rho"), (ConjugateGradient, "grad_square", -1.0, "grad_square")],
)  # fmt: skip
def test_counters_a_step_cannot_use_are_refused(cls, counter, value, message):
    params, closure = model()
    opt = cls(max_iter=3)
    opt.step(params, closure)
    state = opt.state_dict()
    bad = copy.deepcopy(state)
    bad["counters"][counter] = value
    if counter == "rho":
        for name in ("old_dirs", "old_stps"):
            bad["state"][name] = {k: v[:1] for k, v in bad["state"][name].items()}
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(bad)
    assert same_state(opt.state_dict(), state)
