"""The line-search methods' state and inputs: bit-exact resume (state_dict, fastopt.save, copies),
steps that are all or nothing when the closure raises or returns bad grads, and clear errors."""

from __future__ import annotations

import copy
import pickle

import fastopt
import numpy as np
import pytest
from fastopt.optim import LBFGS, ConjugateGradient

KINDS = [
    (LBFGS, {"history_size": 3, "max_iter": 4}),
    (LBFGS, {"history_size": 3, "max_iter": 4, "line_search_fn": "strong_wolfe"}),
    (ConjugateGradient, {"max_iter": 4}),
    (ConjugateGradient, {"max_iter": 4, "beta": "fletcher_reeves"}),
]


def model():
    """Params of every kind a step takes (Fortran order, 0-d, a Python float, float32 beside
    float64) and a closure: a sum of Rosenbrock terms over them all, as one vector."""
    rng = np.random.default_rng(2)
    params = {
        "w": np.asfortranarray(rng.uniform(-1.5, 1.5, (3, 4))),
        "b": rng.uniform(-1.5, 1.5, 5).astype(np.float32),
        "z": np.array(0.3),
        "s": -0.7,
    }

    def closure():
        x = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in params.values()])
        a, b = x[:-1], x[1:]
        grad = np.zeros_like(x)
        grad[:-1] = -400 * a * (b - a * a) - 2 * (1 - a)
        grad[1:] += 200 * (b - a * a)
        out, at = {}, 0
        for key, value in params.items():
            size = np.size(value)
            piece = grad[at : at + size].reshape(np.shape(value))
            out[key] = float(piece) if key == "s" else piece.astype(np.asarray(value).dtype)
            at += size
        return float(np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)), out

    return params, closure


def snapshot(params):
    return {k: np.array(v, copy=True) for k, v in params.items()}


def same_params(a, b) -> bool:
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def same_state(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("cls, settings", KINDS)
@pytest.mark.parametrize("how", ["state_dict", "file", "deepcopy", "pickle"])
def test_resume_is_bit_exact(cls, settings, how, tmp_path):
    params, closure = model()
    opt = cls(**settings)
    for _ in range(3):
        opt.step(params, closure)
    assert opt.n_iter > 0
    saved_params = snapshot(params)
    if how == "state_dict":
        other = cls()
        other.load_state_dict(opt.state_dict())
    elif how == "file":
        fastopt.save(tmp_path / "c.npz", opt, params)
        other = cls()
    elif how == "deepcopy":
        other = copy.deepcopy(opt)
    else:
        other = pickle.loads(pickle.dumps(opt))
    expected = []
    for _ in range(3):
        opt.step(params, closure)
        expected.append(snapshot(params))
    if how == "file":
        for key, value in saved_params.items():  # scribble, then let load restore them
            params[key] = value * 0 + 5 if key == "s" else value
        fastopt.load(tmp_path / "c.npz", other, params)
        assert same_params(params, saved_params)
    else:
        params.clear()
        params.update({k: (float(v) if k == "s" else v) for k, v in saved_params.items()})
    for step in range(3):
        other.step(params, closure)
        assert same_params(params, expected[step]), step
    assert same_state(other.state_dict(), opt.state_dict())
    assert repr(other) == repr(opt)


class Boom(Exception):
    pass


def failing(closure, at: int, how: str):
    calls = 0

    def wrapped():
        nonlocal calls
        calls += 1
        if calls < at:
            return closure()
        loss, grads = closure()
        if how == "raise":
            raise Boom("in the closure")
        if how == "missing":
            grads.pop("b")
        elif how == "shape":
            grads["w"] = grads["w"].T
        elif how == "loss":
            return "not a number", grads
        elif how == "pair":
            return loss
        return loss, grads

    return wrapped


ERRORS = {"raise": Boom, "missing": KeyError, "shape": ValueError, "loss": ValueError,
          "pair": TypeError}  # fmt: skip


@pytest.mark.parametrize("cls, settings", KINDS)
@pytest.mark.parametrize("how", list(ERRORS))
@pytest.mark.parametrize("at", [1, 2, 4])
def test_a_failing_closure_changes_nothing(cls, settings, how, at):
    """The closure fails on its first call, in the first iteration, or in a later one (line
    search included): params and state are as before the step, and the step can be retried."""
    params, closure = model()
    opt, twin = cls(**settings), cls(**settings)
    for _ in range(2):
        opt.step(params, closure)
    twin.load_state_dict(opt.state_dict())
    before, state = snapshot(params), opt.state_dict()
    with pytest.raises(ERRORS[how]):
        opt.step(params, failing(closure, at, how))
    assert same_params(params, before) and type(params["s"]) is float
    assert same_state(opt.state_dict(), state)
    opt.step(params, closure)  # the retry is the step a twin that never failed takes
    twin_params = {k: (float(v) if k == "s" else v.copy(order="K")) for k, v in before.items()}
    twin.step(twin_params, model_closure(twin_params))
    assert same_params(params, twin_params) and same_state(opt.state_dict(), twin.state_dict())


def model_closure(params):
    """model()'s closure over other params of the same keys."""
    own, closure = model()

    def wrapped():
        own.update(params)  # the closure reads own: let it read these
        return closure()

    return wrapped


def test_errors_name_the_key_and_change_nothing():
    params, closure = model()
    opt = LBFGS(max_iter=3)
    opt.step(params, closure)
    state, before = opt.state_dict(), snapshot(params)
    with pytest.raises(ValueError, match=r"params\['w'\] was float64\(3, 4\)"):
        opt.step({**params, "w": params["w"][:2].copy()}, closure)
    with pytest.raises(ValueError, match=r"lack \['z'\]"):
        opt.step({k: v for k, v in params.items() if k != "z"}, closure)
    with pytest.raises(TypeError, match=r"params\['h'\] is float16"):
        opt.step({"h": np.zeros(3, np.float16)}, closure)
    shared = np.zeros(6)
    with pytest.raises(ValueError, match="share memory"):
        LBFGS().step({"a": shared[:4], "b": shared[2:]}, closure)
    with pytest.raises(TypeError, match="closure must be callable"):
        opt.step(params, None)
    assert same_params(params, before) and same_state(opt.state_dict(), state)
    opt.reset()  # then other params are welcome
    small = {"x": np.array([0.5, 0.5])}
    opt.step(small, lambda: (float(np.sum(small["x"] ** 2)), {"x": 2 * small["x"]}))
    assert np.max(np.abs(small["x"])) < 1e-6


@pytest.mark.parametrize(
    "name, value",
    [("max_iter", 0), ("history_size", 0), ("max_eval", -1), ("lr", -1.0), ("lr", float("nan")),
     ("line_search_fn", "armijo"), ("tolerance_grad", -1e-3), ("max_iter", 2.5)],
)  # fmt: skip
def test_bad_settings_are_refused(name, value):
    with pytest.raises((ValueError, TypeError), match=name):
        LBFGS(**{name: value})


def test_cg_settings_are_checked():
    with pytest.raises(ValueError, match="beta"):
        ConjugateGradient(beta="hestenes")
    with pytest.raises(ValueError, match="restart"):
        ConjugateGradient(restart=0)


def test_a_bad_state_is_refused_whole():
    params, closure = model()
    opt = LBFGS(history_size=3, max_iter=4)
    for _ in range(2):
        opt.step(params, closure)
    good = opt.state_dict()
    bad_cases = []
    wrong_kind = copy.deepcopy(good)
    wrong_kind["kind"] = "fastopt.optim.ConjugateGradient"
    bad_cases.append((wrong_kind, "not 'fastopt.optim.LBFGS'"))
    short_rho = copy.deepcopy(good)
    short_rho["counters"]["rho"] = short_rho["counters"]["rho"][:-1]
    bad_cases.append((short_rho, "pairs; rho holds"))
    mixed = copy.deepcopy(good)
    mixed["state"]["d"]["w"] = mixed["state"]["d"]["w"].astype(np.float32)
    bad_cases.append((mixed, "mix dtypes"))
    setting = copy.deepcopy(good)
    setting["hyperparameters"]["history_size"] = 0
    bad_cases.append((setting, "history_size"))
    counter = copy.deepcopy(good)
    counter["counters"]["n_iter"] = -1
    bad_cases.append((counter, "n_iter"))
    for bad, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(bad)
        assert same_state(opt.state_dict(), good)


def test_a_loaded_state_must_fit_the_params():
    """Checked at the next step, the first to see params: a mismatch raises there, changes
    nothing, and the state stays loaded for the right params."""
    params, closure = model()
    opt = LBFGS(max_iter=3)
    opt.step(params, closure)
    other = LBFGS()
    other.load_state_dict(opt.state_dict())
    wrong = {**params, "w": np.zeros((4, 3), order="F")}
    with pytest.raises(ValueError, match=r"state\['d'\]\['w'\] is float64\(3, 4\)"):
        other.step(wrong, closure)
    assert np.array_equal(wrong["w"], np.zeros((4, 3)))
    before = snapshot(params)
    opt.step(params, closure)
    mine = {k: (float(v) if k == "s" else v.copy(order="K")) for k, v in before.items()}
    other.step(mine, model_closure(mine))
    assert same_params(params, mine)


def test_empty_params_and_a_converged_start():
    opt = LBFGS()
    assert opt.step({}, lambda: (1.5, {})) == 1.5
    params = {"x": np.ones(3)}
    loss = opt.step(params, lambda: (0.0, {"x": np.zeros(3)}))  # |g| = 0: nothing to do
    assert loss == 0.0 and opt.n_iter == 0 and opt.func_evals == 2


def test_torch_tensors_are_updated_in_place():
    """torch CPU tensors as params (zero-copy views) and grads: the same bits as NumPy arrays,
    in the tensors' own memory, with autograd's version bumped."""
    torch = pytest.importorskip("torch")
    params, closure = model()
    tensors = {
        k: (v if k == "s" else torch.from_numpy(np.array(v, copy=True))) for k, v in params.items()
    }
    memory = {k: v.data_ptr() for k, v in tensors.items() if k != "s"}
    versions = {k: v._version for k, v in tensors.items() if k != "s"}

    def torch_closure():
        params.update({k: (v if k == "s" else v.numpy()) for k, v in tensors.items()})
        loss, grads = closure()
        return loss, {
            k: (g if k == "s" else torch.from_numpy(np.array(g))) for k, g in grads.items()
        }

    arrays, array_closure = model()
    mine, theirs = (LBFGS(max_iter=3, line_search_fn="strong_wolfe") for _ in range(2))
    for _ in range(2):
        mine.step(tensors, torch_closure)
        theirs.step(arrays, array_closure)
    for key, value in tensors.items():
        if key == "s":
            assert value == arrays["s"]
        else:
            assert np.array_equal(value.numpy(), arrays[key]) and value.data_ptr() == memory[key]
            assert value._version > versions[key]


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
