"""fastopt.optim.LBFGS and ConjugateGradient: parity with torch.optim.LBFGS, CG against SciPy's
evaluations, float32 and several keys, thread and SIMD identity, resume, and all-or-nothing steps.

The line-search methods' tests of inputs and state are in test_search_state.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import fastopt
import numpy as np
import pytest
from fastopt.optim import LBFGS, ConjugateGradient
from test_search_state import same_state


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    """The n-D Rosenbrock function and its gradient (the textbook's hard valley)."""
    a, b = x[:-1], x[1:]
    grad = np.zeros_like(x)
    grad[:-1] = -400 * a * (b - a * a) - 2 * (1 - a)
    grad[1:] += 200 * (b - a * a)
    return float(np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)), grad


def flat_problem(x0: np.ndarray):
    """params {"x": x0 copy} and a closure over them."""
    params = {"x": x0.copy()}

    def closure():
        loss, grad = rosenbrock(params["x"])
        return loss, {"x": grad}

    return params, closure


def start(n: int) -> np.ndarray:
    return np.linspace(-1.2, 1.0, n)


# ---- parity with torch.optim.LBFGS ----


def torch_lbfgs(x0: np.ndarray, **settings):
    """torch.optim.LBFGS on Rosenbrock from x0: (its param, the optimizer, the closure)."""
    torch = pytest.importorskip("torch")
    x = torch.tensor(x0.copy(), requires_grad=True)
    opt = torch.optim.LBFGS([x], **settings)

    def closure():
        opt.zero_grad()
        a, b = x[:-1], x[1:]
        loss = torch.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)
        loss.backward()
        return loss

    return x, opt, closure


def torch_iterates(x0: np.ndarray, steps: int, **settings) -> tuple[list[np.ndarray], list]:
    """torch.optim.LBFGS's params after each step, and its counters."""
    x, opt, closure = torch_lbfgs(x0, **settings)
    out, counters = [], []
    for _ in range(steps):
        opt.step(closure)
        out.append(x.detach().numpy().copy())
        state = opt.state[x]
        counters.append((state["n_iter"], state["func_evals"]))
    return out, counters


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("history_size", [5, 100])
def test_lbfgs_follows_torch_on_rosenbrock(line_search_fn, history_size):
    """Iterates and counters equal torch's to 1e-8 for as long as torch's own iterates are that
    stable. Rosenbrock's valley amplifies rounding: torch started one ulp away (in one element)
    leaves its own path by 1e-10 after 30-75 iterations, and summing a dot product in another
    order (fastopt sums in double in lanes, torch in BLAS's order) is such a difference. So the
    horizon is measured here, from torch against itself, and must be long enough to mean
    something (>= 25 iterations); past it both must still reach the minimum."""
    settings = dict(line_search_fn=line_search_fn, history_size=history_size, max_iter=5)
    x0 = start(100)
    nudged = x0.copy()
    nudged[3] = np.nextafter(nudged[3], 2.0)
    theirs, counters = torch_iterates(x0, 40, **settings)
    own_noise, _ = torch_iterates(nudged, 40, **settings)
    horizon = next(k for k, (a, b) in enumerate(zip(theirs, own_noise)) if relative(a, b) > 1e-10)
    assert counters[horizon - 1][0] >= 25, "too short a horizon to compare anything"
    params, closure = flat_problem(x0)
    opt = LBFGS(**settings)
    for k in range(40):
        opt.step(params, closure)
        if k < horizon:
            assert relative(theirs[k], params["x"]) <= 1e-8, k
            assert (opt.n_iter, opt.func_evals) == counters[k], k
    for _ in range(200):  # on to the minimum (x = 1), where torch ends too
        opt.step(params, closure)
    assert rosenbrock(params["x"])[0] < 1e-6 and np.max(np.abs(params["x"] - 1)) < 1e-3


def test_lbfgs_state_follows_torch():
    """Not only the params: the history, direction and scalars equal torch's state."""
    x0 = start(30)
    x, theirs, torch_closure = torch_lbfgs(
        x0, history_size=4, max_iter=7, line_search_fn="strong_wolfe"
    )
    params, closure = flat_problem(x0)
    ours = LBFGS(history_size=4, max_iter=7, line_search_fn="strong_wolfe")
    for _ in range(2):
        theirs.step(torch_closure)
        ours.step(params, closure)
    state = theirs.state[x]
    mine = ours.state_dict()
    assert len(state["old_dirs"]) == 4 == len(mine["counters"]["rho"])
    for name in ("old_dirs", "old_stps"):
        want = np.stack([v.numpy() for v in state[name]])
        assert relative(want, mine["state"][name]["x"]) < 1e-10, name
    assert relative(state["d"].numpy(), mine["state"]["d"]["x"]) < 1e-10
    assert relative(state["prev_flat_grad"].numpy(), mine["state"]["prev_flat_grad"]["x"]) < 1e-10
    for name, value in (("t", state["t"]), ("H_diag", state["H_diag"])):
        assert abs(float(value) - mine["counters"][name]) <= 1e-10 * abs(float(value)), name
    assert np.allclose([float(r) for r in state["ro"]], mine["counters"]["rho"], rtol=1e-10)


def test_lbfgs_several_keys_follow_torch():
    """Keys of several shapes, C and Fortran order, a 0-d array and a Python float: one vector,
    as torch's list of tensors is."""
    torch = pytest.importorskip("torch")
    x0 = start(31)
    shapes = [(3, 4), (5, 2), (), (1,), (8,)]  # sizes 12, 10, 1, 1, 8 = 32 - the float
    params = {
        "a": np.asfortranarray(x0[:12].reshape(3, 4)),
        "b": x0[12:22].reshape(5, 2).copy(),
        "c": np.array(x0[22]),
        "s": float(x0[23]),
        "e": x0[24:].copy(),
    }
    tensors = [torch.tensor(np.ascontiguousarray(v, dtype=np.float64), requires_grad=True)
               for v in params.values()]  # fmt: skip
    theirs = torch.optim.LBFGS(tensors, max_iter=6, line_search_fn="strong_wolfe")

    def torch_closure():
        theirs.zero_grad()
        x = torch.cat([t.reshape(-1) for t in tensors])
        a, b = x[:-1], x[1:]
        loss = torch.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)
        loss.backward()
        return loss

    def closure():
        x = np.concatenate([np.ravel(v) for v in params.values()])
        loss, grad = rosenbrock(x)
        cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
        pieces = np.split(grad, cuts)
        grads = {k: p.reshape(np.shape(v)) for (k, v), p in zip(params.items(), pieces)}
        grads["s"] = float(grads["s"])
        return loss, grads

    ours = LBFGS(max_iter=6, line_search_fn="strong_wolfe")
    for _ in range(3):
        theirs.step(torch_closure)
        ours.step(params, closure)
        want = torch.cat([t.detach().reshape(-1) for t in tensors]).numpy()
        got = np.concatenate([np.ravel(v) for v in params.values()])
        assert relative(want, got) < 1e-8
    assert type(params["s"]) is float and params["a"].flags.f_contiguous
    state = theirs.state[tensors[0]]
    assert (ours.n_iter, ours.func_evals) == (state["n_iter"], state["func_evals"])
    assert ours.n_iter > 12  # not stopped early


def test_lbfgs_float32_follows_float64():
    """float32 params: the iterates follow the float64 run to float32's precision early on, and
    the vectors are kept in float32 (half the memory)."""
    x0 = start(20)
    p64, c64 = flat_problem(x0)
    p32 = {"x": x0.astype(np.float32)}

    def c32():
        loss, grad = rosenbrock(p32["x"].astype(np.float64))
        return loss, {"x": grad.astype(np.float32)}

    o64, o32 = LBFGS(max_iter=4), LBFGS(max_iter=4)
    o64.step(p64, c64)
    o32.step(p32, c32)
    assert p32["x"].dtype == np.float32
    assert relative(p64["x"], p32["x"].astype(np.float64)) < 1e-4
    assert o32._search.dtype == "float32"
    assert o32.state_dict()["state"]["d"]["x"].dtype == np.float32
    for _ in range(100):
        o32.step(p32, c32)
    assert np.max(np.abs(p32["x"] - 1)) < 1e-3


# ---- conjugate gradients ----


def scipy_cg_evaluations(x0: np.ndarray) -> int:
    optimize = pytest.importorskip("scipy.optimize")
    done = optimize.minimize(
        lambda x: rosenbrock(x)[0], x0, jac=lambda x: rosenbrock(x)[1], method="CG",
        options={"gtol": 1e-5, "norm": np.inf, "maxiter": 100_000},
    )  # fmt: skip
    assert np.max(np.abs(done.jac)) <= 1e-5
    return int(done.nfev)


@pytest.mark.parametrize("beta", ["polak_ribiere", "fletcher_reeves"])
@pytest.mark.parametrize("seed", [None, 0, 1])
def test_cg_reaches_the_target_within_scipy_budget(beta, seed):
    """Rosenbrock-50 to |g|_inf <= 1e-5 within 1.5x the evaluations of SciPy's CG, counting
    every closure call (each step's first one too), with the default 20 iterations a step."""
    x0 = start(50) if seed is None else np.random.default_rng(seed).uniform(-2, 2, 50)
    budget = 1.5 * scipy_cg_evaluations(x0)
    params, closure = flat_problem(x0)
    calls = 0

    def counted():
        nonlocal calls
        calls += 1
        return closure()

    opt = ConjugateGradient(beta=beta, tolerance_grad=1e-5)
    while np.max(np.abs(rosenbrock(params["x"])[1])) > 1e-5:
        opt.step(params, counted)
        assert calls <= budget
    assert calls == opt.func_evals


def test_cg_minimizes_a_quadratic_in_n_iterations():
    """The textbook's point: on a convex quadratic, n conjugate directions reach the minimum in
    n dimensions (the strong-Wolfe cubic step is exact on a quadratic)."""
    rng = np.random.default_rng(3)
    n = 12
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(np.geomspace(1, 100, n)) @ q.T
    b = rng.standard_normal(n)
    params = {"x": np.zeros(n)}

    def closure():
        x = params["x"]
        return 0.5 * x @ a @ x - b @ x, {"x": a @ x - b}

    opt = ConjugateGradient(max_iter=n, max_eval=3 * n, tolerance_grad=0)
    opt.step(params, closure)
    assert opt.n_iter == n
    # Exact in exact arithmetic; rounding at condition 100 leaves ~1e-7 (steepest descent's n
    # steps would leave ~0.1).
    assert np.max(np.abs(params["x"] - np.linalg.solve(a, b))) < 1e-6


# ---- identical results for every thread count and SIMD level ----

IDENTITY_N = 300_007  # several pieces of 8192 a pass, an odd tail: two threads really split it


def quartic(params):
    """A cheap smooth closure over two keys (float64 and float32)."""

    def closure():
        x, y = params["x"], params["y"]
        loss = float(np.sum(x**4) / 4 - np.sum(x) + np.sum(np.square(y, dtype=np.float64)))
        return loss, {"x": x**3 - 1, "y": 2 * y}

    return closure


def identity_run(cls, **settings) -> dict:
    rng = np.random.default_rng(5)
    params = {
        "x": rng.standard_normal(IDENTITY_N),
        "y": rng.standard_normal(999).astype(np.float32),
    }
    opt = cls(max_iter=6, **settings)
    for _ in range(2):
        opt.step(params, quartic(params))
    state = opt.state_dict()
    return {"params": params, "state": state["state"], "counters": state["counters"]}


CASES = [(LBFGS, {}), (LBFGS, {"line_search_fn": "strong_wolfe", "history_size": 3}),
         (ConjugateGradient, {}), (ConjugateGradient, {"beta": "fletcher_reeves"})]  # fmt: skip


@pytest.mark.parametrize("cls, settings", CASES)
def test_threads_give_identical_bits(cls, settings):
    fastopt._core._force_sharing(1)  # every job of 2 threads is really shared
    before = fastopt.get_num_threads()
    try:
        fastopt.set_num_threads(1)
        one = identity_run(cls, **settings)
        fastopt.set_num_threads(2)
        helped = fastopt._core._chunks_run_by_helpers()
        two = identity_run(cls, **settings)
        assert fastopt._core._chunks_run_by_helpers() > helped  # a helper thread took part
    finally:
        fastopt.set_num_threads(before)
        fastopt._core._force_sharing(-1)
    assert same_state(one, two)
    assert one["counters"]["n_iter"] >= 4  # several iterations, each several passes


LEVEL_WORKLOAD = """
import sys, numpy as np, fastopt
sys.path.insert(0, TESTS)
from test_search import CASES, identity_run
out = {"level": np.array(fastopt.simd_level())}
for case, (cls, settings) in enumerate(CASES):
    run = identity_run(cls, **settings)
    for key, value in run["params"].items():
        out[f"{case}-p-{key}"] = value
    for name, per_key in run["state"].items():
        for key, value in per_key.items():
            out[f"{case}-{name}-{key}"] = value
np.savez(sys.argv[1], **out)
"""


def test_simd_levels_give_identical_bits(tmp_path):
    """Every level this CPU runs gives the bits of the baseline level (dot products in lanes of
    8 in double, in the same order at every vector width)."""
    tests = os.path.dirname(os.path.abspath(__file__))
    script = LEVEL_WORKLOAD.replace("TESTS", repr(tests))
    results = {}
    for level in fastopt._core.available_simd_levels():
        out = tmp_path / f"{level}.npz"
        env = dict(os.environ, FASTOPT_SIMD=level)
        done = subprocess.run([sys.executable, "-c", script, str(out)], env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        results[level] = dict(np.load(out))
        assert str(results[level].pop("level")) == level
    assert len(results) >= 2 or fastopt._core.available_simd_levels() == ["baseline"]
    base = results.pop("baseline")
    for level, result in results.items():
        assert result.keys() == base.keys()
        for name in base:
            assert np.array_equal(result[name], base[name]), (level, name)


def test_torch_parity_has_no_warnings():
    """The parity tests' torch closures raise no warnings (the suite turns them into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_iterates(start(5), 1, max_iter=2)


def test_an_inf_gradient_in_the_line_search_follows_torch():
    """An inf in one gradient of a line search (then NaN params): the search's choices follow
    torch's to the end of the step, NaN step included. Ordering a bracket by min and max instead
    of torch's <= picked another point once a NaN took part."""
    torch = pytest.importorskip("torch")
    a, b = np.diag(np.linspace(1, 10, 7)), np.arange(7.0)

    def evaluate(x, calls):
        calls.append(1)
        grad = a @ x - b
        if len(calls) == 5:
            grad[3] = np.inf
        return 0.5 * x @ a @ x - b @ x, grad

    ours_calls, theirs_calls = [], []
    params = {"w": np.ones(7)}
    ours = LBFGS(max_iter=6, line_search_fn="strong_wolfe")
    ours.step(
        params, lambda: (lambda r: (r[0], {"w": r[1]}))(evaluate(params["w"].copy(), ours_calls))
    )
    x = torch.ones(7, dtype=torch.float64, requires_grad=True)
    theirs = torch.optim.LBFGS([x], max_iter=6, line_search_fn="strong_wolfe")

    def closure():
        theirs.zero_grad()
        loss, grad = evaluate(x.detach().numpy().copy(), theirs_calls)
        x.grad = torch.from_numpy(grad)
        return torch.tensor(loss)

    theirs.step(closure)
    assert len(ours_calls) == len(theirs_calls) > 5
    assert np.array_equal(np.isnan(params["w"]), np.isnan(x.detach().numpy()))
    assert np.isnan(ours.t) == bool(torch.isnan(torch.as_tensor(theirs.state[x]["t"])))
