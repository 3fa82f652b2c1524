"""fastopt.optim.LBFGS and ConjugateGradient against torch.optim.LBFGS and scipy, in one process.

    python benchmarks/second_order.py [--quick]   (or: python benchmarks/run.py --only second_order)

1. The optimizer's own time per iteration at 10^6 params: an L2-regularised logistic regression
   on a sparse synthetic design, the same closure for every contender; each closure call is timed
   and its time subtracted, so what remains is the optimizer's work (two-loop recursion, line
   search, copies, Python). Rounds interleave the contenders; ratios are medians of per-round
   ratios (harness.Timings). Beside them, a traffic probe: torch elementwise ops that make the
   loads and stores of fastopt's fused passes with trivial arithmetic.
2. Convergence on Rosenbrock-1000 from (-1.2, 1, -1.2, 1, ...): iterations and evaluations until
   |g|_inf <= 1e-5, calling step() until it returns without iterating.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastopt  # noqa: E402
from harness import Timings  # noqa: E402
from report import Table, machine  # noqa: E402

ROWS_PER_PARAM, NONZEROS_PER_ROW = 0.02, 50  # 20,000 samples x 10^6 features: 10^6 nonzeros
GTOL = 1e-5
# Timing runs do every iteration asked for: no contender stops early on a tolerance.
NEVER_STOP = {"tolerance_grad": 0.0, "tolerance_change": 0.0}


class Logistic:
    """Summed logistic loss over a sparse design, + lam/2 |w|^2; counts its own time in `inside`.

    Features scaled from 1e-2 to 1e2 (log-uniform): ill-conditioned, so that L-BFGS is still
    making curvature pairs (y . s > 1e-10) after the 100 iterations that fill a history of 100."""

    def __init__(self, n: int, dtype, lam: float = 1e-3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        rows = max(int(n * ROWS_PER_PARAM), 64)
        self.x = scipy.sparse.random(rows, n, density=NONZEROS_PER_ROW / n, format="csr",
                                     dtype=dtype, random_state=rng)  # fmt: skip
        self.x.data[:] = rng.standard_normal(self.x.nnz)
        self.x = (self.x @ scipy.sparse.diags(10 ** rng.uniform(-2, 2, n))).astype(dtype).tocsr()
        self.xt = self.x.T.tocsr()  # X^T r as a CSR product: faster than through a CSC view
        truth = rng.standard_normal(n)
        self.y = np.sign(self.x @ truth + 0.5 * rng.standard_normal(rows)).astype(dtype)
        self.lam, self.dtype, self.n = lam, np.dtype(dtype), n
        self.inside, self.calls = 0.0, 0

    def __call__(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        margin = -self.y * (self.x @ w)
        # einsum, not w @ w: no BLAS call, whose threads would spin on the cores afterwards
        loss = np.logaddexp(0, margin).sum() + 0.5 * self.lam * float(np.einsum("i,i", w, w))
        grad = self.xt @ (-self.y * scipy.special.expit(margin)).astype(self.dtype)
        grad += self.lam * w
        self.inside += time.perf_counter() - start
        self.calls += 1
        return float(loss), grad


class FastoptLBFGS:
    """run(iters, mode, fresh): one step of `iters` iterations; fresh: a new optimizer from w0."""

    def __init__(self, problem: Logistic, history: int) -> None:
        self.problem, self.history, self.opt = problem, history, None
        self.params = {"w": np.zeros(problem.n, problem.dtype)}

    def closure(self):
        loss, grad = self.problem(self.params["w"])
        return loss, {"w": grad}

    def __call__(self, iters: int, mode, fresh: bool) -> int:
        if fresh or self.opt is None:
            self.opt = fastopt.optim.LBFGS(history_size=self.history, **NEVER_STOP)
            self.params["w"][:] = 0
        # max_eval: room for the line search, so that every contender runs all its iterations.
        self.opt.max_iter, self.opt.max_eval, self.opt.line_search_fn = iters, 4 * iters, mode
        before = self.opt.n_iter
        self.opt.step(self.params, self.closure)
        return self.opt.n_iter - before


class TorchLBFGS:
    def __init__(self, problem: Logistic, history: int) -> None:
        self.problem, self.history, self.opt = problem, history, None
        self.p = torch.nn.Parameter(torch.zeros(problem.n, dtype=_torch_dtype(problem.dtype)))
        self.view = self.p.detach().numpy()

    def closure(self):
        loss, grad = self.problem(self.view)
        self.p.grad = torch.from_numpy(grad)  # no copy: the same closure cost as fastopt's
        return loss

    def __call__(self, iters: int, mode, fresh: bool) -> int:
        if fresh or self.opt is None:
            self.opt = torch.optim.LBFGS([self.p], history_size=self.history, **NEVER_STOP)
            self.view[:] = 0
        self.opt.param_groups[0].update(max_iter=iters, max_eval=4 * iters, line_search_fn=mode)
        before = self.opt.state[self.p].get("n_iter", 0)
        self.opt.step(self.closure)
        return self.opt.state[self.p]["n_iter"] - before


def scipy_lbfgsb(problem: Logistic, history: int):
    """L-BFGS-B cannot resume its history: every run starts over from w0 (float64 only)."""
    options = {"maxcor": history, "gtol": 0.0, "ftol": 0.0}

    def run(iters: int, mode, fresh: bool) -> int:
        opts = dict(options, maxiter=iters, maxfun=4 * iters)
        x0 = np.zeros(problem.n)
        return scipy.optimize.minimize(problem, x0, jac=True, method="L-BFGS-B", options=opts).nit

    return run


def _torch_dtype(dtype) -> torch.dtype:
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def traffic_probe(n: int, history: int, dtype):
    """The loads and stores of one fixed-step fastopt iteration with a full history, as torch
    elementwise ops with trivial arithmetic (threaded like fastopt): (8m + 15) n elements."""

    def vec():
        # Zeros, written: real pages, and no denormals to slow the arithmetic.
        return torch.empty(n, dtype=_torch_dtype(dtype)).fill_(0.0)

    s, y = [vec() for _ in range(history)], [vec() for _ in range(history)]
    g, prev_g, d, x, grad_in, y_new, s_new = (vec() for _ in range(7))

    def run(iters: int, mode, fresh: bool) -> int:
        torch.sub(g, prev_g, out=y_new)  # the pair: 3 reads, 2 writes
        torch.mul(d, 0.5, out=s_new)
        torch.mul(g, s[-1], out=d)  # -g, with a dot: 2 reads, 1 write
        for j in reversed(range(history)):  # first loop: q += a y_j, dot with s_(j-1)
            d.addcmul_(y[j], s[j - 1]) if j else d.add_(y[0])
        d.mul_(y[0])  # scale by H_diag, with a dot
        for i in range(history):  # second loop: q += b s_i, dot with y_(i+1) (or g)
            d.addcmul_(s[i], y[i + 1] if i + 1 < history else g)
        x.add_(d)  # place: x += t d
        g.copy_(grad_in)  # gather the closure's grad
        return 1

    return run


def rounds(problem: Logistic, runs: dict, args: tuple, repeats: int) -> tuple[Timings, dict]:
    """Seconds per iteration outside the closure, and evaluations per iteration, per contender;
    each round times every contender once, the order rotated from round to round."""
    names = list(runs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    evals: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats + 1):  # round 0 warms up: pages touched, state made
        for name in names[r % len(names) :] + names[: r % len(names)]:
            problem.inside, problem.calls = 0.0, 0
            start = time.perf_counter()
            iters = max(runs[name](*args), 1)
            elapsed = time.perf_counter() - start
            if r:
                samples[name].append((elapsed - problem.inside) / iters)
                evals[name].append(problem.calls / iters)
    return Timings(samples), {k: float(np.median(v)) for k, v in evals.items()}


def add_row(table: Table, problem: Logistic, runs: dict, args: tuple, repeats: int, m: int):
    t, evals = rounds(problem, runs, args, repeats)
    probe = t.get("probe")
    moved = (8 * m + 15) * problem.n * problem.dtype.itemsize  # bytes of the probe's passes
    table.add(
        dtype=problem.dtype.name,
        history=m,
        line_search=args[1] or "none",
        fastopt_ms=t["fastopt"] * 1e3,
        torch_ms=t["torch"] * 1e3,
        x_torch=t.ratio("torch", "fastopt"),
        scipy_ms=t.get("scipy") and t["scipy"] * 1e3,
        x_scipy=t.ratio("scipy", "fastopt"),
        evals_per_iter="/".join(
            f"{evals[k]:.2g}" for k in ("fastopt", "torch", "scipy") if k in evals
        ),
        probe_ms=probe and probe * 1e3,
        pct_of_probe=probe and 100 / t.ratio("fastopt", "probe"),
        probe_GBps=probe and moved / probe / 1e9,
    )


def per_iteration(quick: bool, repeats: int) -> Table:
    n, iters, full = (1 << 16, 12, 20) if quick else (10**6, 30, 100)
    table = Table(
        f"L-BFGS: the optimizer's own ms per iteration (closure time subtracted), logistic "
        f"regression, {n:,} params, {fastopt.get_num_threads()} threads (torch too; BLAS 1)",
        "Medians of interleaved rounds; x_torch, x_scipy = their time / fastopt's (medians of "
        f"per-round ratios). History 10: each round runs every contender from w0 for {iters} "
        "iterations (the history fills in the first 10). History {full}: fastopt and torch "
        "filled first, then rounds of 3 iterations. evals_per_iter: fastopt/torch/scipy. "
        "probe: torch elementwise ops making the loads and stores of fastopt's fixed-step "
        "passes, (8m + 15) n elements per iteration (the least any two-loop recursion reads: "
        "the 2m history vectors twice, 4m n).".replace("{full}", str(full)),
    )
    for dtype in (np.float64, np.float32):
        problem = Logistic(n, dtype)
        for mode in (None, "strong_wolfe"):
            runs = {"fastopt": FastoptLBFGS(problem, 10), "torch": TorchLBFGS(problem, 10)}
            if dtype == np.float64 and mode:  # L-BFGS-B always searches (More-Thuente)
                runs["scipy"] = scipy_lbfgsb(problem, 10)
            if mode is None:
                runs["probe"] = traffic_probe(n, 10, dtype)
            add_row(table, problem, runs, (iters, mode, True), repeats, 10)
    problem = Logistic(n, np.float64)
    filled = {"fastopt": FastoptLBFGS(problem, full), "torch": TorchLBFGS(problem, full)}
    for contender in filled.values():
        contender(full + 2, None, True)  # fixed steps: one evaluation each
    for mode in (None, "strong_wolfe"):
        runs = dict(filled, **({"probe": traffic_probe(n, full, np.float64)} if not mode else {}))
        add_row(table, problem, runs, (3, mode, False), max(3, repeats // 2), full)
    return table


class Rosenbrock:
    """scipy's chained Rosenbrock; records the evaluations and the last gradient's |g|_inf."""

    def __init__(self) -> None:
        self.calls, self.last = 0, float("inf")

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.calls += 1
        grad = scipy.optimize.rosen_der(x)
        self.last = float(np.abs(grad).max())
        return float(scipy.optimize.rosen(x)), grad


def stepped(make, x0: np.ndarray, budget: int, **settings) -> tuple[int, int, float]:
    """step() until one returns without iterating (|g|_inf <= GTOL at its first evaluation), the
    loss stalls (no new lowest in 50 steps), or the evaluations run out; (iterations,
    evaluations, |g|_inf at the final params)."""
    f, x = Rosenbrock(), x0.copy()
    step, iterations = make(f, x, settings)  # x is updated in place
    best, since = float("inf"), 0
    while f.calls < budget and since < 50:
        before = iterations()
        loss = step()
        if iterations() == before:
            break
        best, since = (float(loss), 0) if loss < best else (best, since + 1)
    return iterations(), f.calls, float(np.abs(scipy.optimize.rosen_der(x)).max())


def fastopt_make(cls, **fixed):
    def make(f, x, settings):
        opt = cls(tolerance_grad=GTOL, **fixed, **settings)
        params = {"x": x}

        def closure():
            loss, grad = f(params["x"])
            return loss, {"x": grad}

        return lambda: opt.step(params, closure), lambda: opt.n_iter

    return make


def torch_make(**fixed):
    def make(f, x, settings):
        p = torch.nn.Parameter(torch.from_numpy(x))
        opt = torch.optim.LBFGS([p], tolerance_grad=GTOL, **fixed, **settings)

        def closure():
            loss, grad = f(p.detach().numpy())
            p.grad = torch.from_numpy(grad)
            return loss

        return lambda: opt.step(closure), lambda: opt.state[p].get("n_iter", 0)

    return make


def scipy_solve(method: str, x0: np.ndarray, budget: int, **options) -> tuple[int, int, float]:
    f = Rosenbrock()
    extra = {"maxfun": budget} if method == "L-BFGS-B" else {}
    done = scipy.optimize.minimize(
        f,
        x0.copy(),
        jac=True,
        method=method,
        options={"gtol": GTOL, "maxiter": budget, **extra, **options},
    )
    return done.nit, f.calls, float(np.abs(scipy.optimize.rosen_der(done.x)).max())


def convergence(quick: bool) -> Table:
    n, budget = (100, 20_000) if quick else (1000, 50_000)
    x0 = np.tile([-1.2, 1.0], n // 2)
    table = Table(
        f"Convergence: Rosenbrock-{n} (scipy.optimize.rosen, float64) from (-1.2, 1, ...), to "
        f"|g|_inf <= {GTOL:g}",
        "fastopt and torch: tolerance_grad=1e-5, max_iter=20, step() again until a step returns "
        "without iterating, or the loss stalls (no new lowest in 50 steps); evals count every "
        f"closure call, each step's first included; budget {budget:,} evaluations. scipy: one "
        "minimize(gtol=1e-5), its nit and our count of its calls. change: the loss-change "
        "tolerance, tolerance_change for fastopt and torch, ftol for L-BFGS-B (scipy's CG has "
        "none): the defaults (1e-9; 2.2e-9 relative) or 0. final_g_inf: at the final params.",
    )
    sw = "strong_wolfe"
    cases = [
        ("fastopt LBFGS", "none", 100, fastopt_make(fastopt.optim.LBFGS)),
        ("torch LBFGS", "none", 100, torch_make()),
        ("fastopt LBFGS", sw, 100, fastopt_make(fastopt.optim.LBFGS, line_search_fn=sw)),
        ("torch LBFGS", sw, 100, torch_make(line_search_fn=sw)),
        ("fastopt LBFGS", sw, 10, fastopt_make(fastopt.optim.LBFGS, line_search_fn=sw,
                                               history_size=10)),
        ("torch LBFGS", sw, 10, torch_make(line_search_fn=sw, history_size=10)),
        ("fastopt ConjugateGradient", sw, None, fastopt_make(fastopt.optim.ConjugateGradient)),
    ]  # fmt: skip
    for change in ("default", 0.0):
        settings = {} if change == "default" else {"tolerance_change": 0.0}
        for name, search, history, make in cases:
            iters, evals, last = stepped(make, x0, budget, **settings)
            table.add(optimizer=name, line_search=search, history=history, change=change,
                      iterations=iters, evals=evals, final_g_inf=last,
                      reached=last <= GTOL)  # fmt: skip
        ftol = {} if change == "default" else {"ftol": 0.0}
        for name, method, options in (
            ("scipy L-BFGS-B", "L-BFGS-B", {"maxcor": 10, **ftol}),
            ("scipy L-BFGS-B", "L-BFGS-B", {"maxcor": 100, **ftol}),
            ("scipy CG", "CG", {}),
        ):
            iters, evals, last = scipy_solve(method, x0, budget, **options)
            table.add(optimizer=name, line_search="own", history=options.get("maxcor"),
                      change=change, iterations=iters, evals=evals, final_g_inf=last,
                      reached=last <= GTOL)  # fmt: skip
    return table


def tables(quick: bool, repeats: int = 7) -> list[Table]:
    torch.set_num_threads(fastopt.get_num_threads())
    # OpenBLAS's threads spin for up to ~0.1 s after each call (scipy's L-BFGS-B makes BLAS
    # calls) and would slow whichever contender runs next on these 2 cores: BLAS gets 1 thread.
    with threadpool_limits(limits=1, user_api="blas"):
        return [per_iteration(quick, repeats), convergence(quick)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a check, not a result")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median)")
    args = parser.parse_args(argv)
    info = machine()
    print(
        f"benchmarks/second_order.py: {info['cpu']}, {info['cores']} cores, numpy "
        f"{info['numpy']}, scipy {scipy.__version__}, torch {info['torch']}, {info['date']}"
    )
    for table in tables(args.quick, 2 if args.quick else args.repeats):
        table.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
