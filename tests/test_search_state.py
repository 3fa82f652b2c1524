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


def test_a_loaded_state_shows_the_settings_of_now():
    """Before the next step places a loaded state, state_dict() shows the settings as they are
    (an lr set after the load), not those of the file."""
    params, closure = model()
    opt = LBFGS(max_iter=3)
    opt.step(params, closure)
    other = LBFGS()
    other.load_state_dict(opt.state_dict())
    other.lr = 0.25
    shown = other.state_dict()
    assert shown["hyperparameters"]["lr"] == 0.25
    assert same_state(shown["state"], opt.state_dict()["state"])
