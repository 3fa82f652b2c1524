"""The contenders: fastopt, its memory-traffic ceiling, fastopt.reference, and torch.optim.

Each factory takes the params' shapes, a dtype and a book optimizer name, builds its own params
and grads (the same values for all), and returns a zero-argument callable that makes one update.
"""

from __future__ import annotations

from collections.abc import Callable

import fastopt
import numpy as np
from fastopt import reference
from fastopt._probe import MemoryTrafficProbe

try:
    import torch
except ImportError:  # torch is optional: its columns appear only when it is installed
    torch = None

NUM_STATES = {"SGD": 0, "Momentum": 1, "Nesterov": 1, "AdaGrad": 1, "RMSprop": 1, "Adam": 2}

# The torch.optim counterpart of each book optimizer: the same memory traffic and, apart from
# Nesterov's form and torch's first-step momentum, the same math.
TORCH_EQUIVALENT = {
    "SGD": ("SGD", {"lr": 0.01}),
    "Momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "Nesterov": ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "AdaGrad": ("Adagrad", {"lr": 0.01}),
    "RMSprop": ("RMSprop", {"lr": 0.01, "alpha": 0.99}),
    "Adam": ("Adam", {"lr": 0.001}),
}

Step = Callable[[], None]


def arrays(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def traffic_bytes(shapes, dtype, optimizer: str) -> int:
    """The bytes an update must move: read param, grad and every state; write param and states."""
    k = NUM_STATES[optimizer]
    elements = sum(int(np.prod(shape)) for shape in shapes)
    return elements * np.dtype(dtype).itemsize * ((2 + k) + (1 + k))


# Every contender alternates between two sets of gradients. With one gradient repeated for
# thousands of steps, Adam's m converges to g until g - m is subnormal, and each subnormal
# operation costs a microcode assist of ~100 cycles: a benchmark artefact (training never repeats a
# gradient) that made Adam 2x slower after ~7000 calls, in NumPy and torch as in fastopt.
GRAD_SEEDS = (2, 3)


def _numpy_step(make_optimizer, shapes, dtype) -> Step:
    params = dict(enumerate(arrays(shapes, dtype, 1)))
    grads = [dict(enumerate(arrays(shapes, dtype, seed))) for seed in GRAD_SEEDS]
    opt = make_optimizer()
    calls = [0]

    def step() -> None:
        calls[0] += 1
        opt.update(params, grads[calls[0] & 1])

    return step


def optim_steps(shapes, dtype, name: str) -> dict[str, Step]:
    """fastopt.optim.<name> with default options, its ceiling, its NumPy reference, and torch."""
    fast = fastopt.optim.__dict__[name]
    found: dict[str, Step | None] = {"fastopt": _numpy_step(fast, shapes, dtype)}
    num_states = _default_states(fast)
    found["ceiling"] = _numpy_step(lambda: MemoryTrafficProbe(num_states), shapes, dtype)
    found["reference"] = _numpy_step(reference.optim.__dict__[name], shapes, dtype)
    if torch is not None and hasattr(torch.optim, name):
        for mode in ("fused", "foreach"):
            found[f"torch {mode}"] = torch_step(shapes, dtype, name, mode, native=True)
    return {k: v for k, v in found.items() if v is not None}


def _default_states(cls) -> int:
    """How many state arrays the class uses with its default options."""
    opt = cls()
    opt.update({0: np.zeros(1)}, {0: np.zeros(1)})
    return len(opt._state_names)


def fastopt_step(shapes, dtype, optimizer: str, **options) -> Step:
    return _numpy_step(lambda: getattr(fastopt, optimizer)(**options), shapes, dtype)


def ceiling_step(shapes, dtype, optimizer: str) -> Step:
    return _numpy_step(lambda: MemoryTrafficProbe(NUM_STATES[optimizer]), shapes, dtype)


def reference_step(shapes, dtype, optimizer: str) -> Step:
    return _numpy_step(getattr(reference, optimizer), shapes, dtype)


def torch_step(
    shapes, dtype, optimizer: str, mode: str, native: bool = False, check_finite: bool = False
) -> Step | None:
    """torch.optim with fused=True or foreach=True; None when torch or that mode is missing.

    `optimizer` is a book name (mapped to its torch counterpart) or, with native=True, a
    torch.optim name used as it is, with its default options. check_finite=True skips the step
    when a grad holds inf or nan the way torch.amp.GradScaler does: one fused check-and-unscale
    pass over the grads (torch._amp_foreach_non_finite_check_and_unscale_, unscaling by 1).
    """
    if torch is None:
        return None
    name, kwargs = (optimizer, {}) if native else TORCH_EQUIVALENT[optimizer]
    tensors = [torch.from_numpy(a).requires_grad_() for a in arrays(shapes, dtype, 1)]
    grads = [[torch.from_numpy(g) for g in arrays(shapes, dtype, seed)] for seed in GRAD_SEEDS]
    for tensor, grad in zip(tensors, grads[0]):
        tensor.grad = grad
    try:
        opt = getattr(torch.optim, name)(tensors, **kwargs, **{mode: True})
        opt.step()
    except (RuntimeError, TypeError, ValueError):  # e.g. no fused CPU kernel for this algorithm
        return None
    calls = [0]
    found_inf, inv_scale = torch.zeros(1), torch.ones(1)

    def step() -> None:
        calls[0] += 1
        for tensor, grad in zip(tensors, grads[calls[0] & 1]):
            tensor.grad = grad
        if check_finite:
            torch._amp_foreach_non_finite_check_and_unscale_(
                grads[calls[0] & 1], found_inf, inv_scale
            )
            if found_inf.item():
                return
        opt.step()

    return step


def contenders(shapes, dtype, optimizer: str, peers: bool = True) -> dict[str, Step]:
    """Every available contender for one workload, fastopt first."""
    found: dict[str, Step | None] = {
        "fastopt": fastopt_step(shapes, dtype, optimizer),
        "ceiling": ceiling_step(shapes, dtype, optimizer),
    }
    if peers:
        found["reference"] = reference_step(shapes, dtype, optimizer)
        found["torch fused"] = torch_step(shapes, dtype, optimizer, "fused")
        found["torch foreach"] = torch_step(shapes, dtype, optimizer, "foreach")
    return {name: step for name, step in found.items() if step is not None}


def with_threads(step: Step, count: int) -> Step:
    """`step` run with `count` threads in fastopt and in torch alike."""

    def run() -> None:
        with threads(count):
            step()

    return run


class threads:
    """Use `count` threads in fastopt and torch for a block."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __enter__(self) -> None:
        self._fastopt = fastopt.num_threads(self.count)
        self._fastopt.__enter__()
        if torch is not None:
            self._torch = torch.get_num_threads()
            torch.set_num_threads(self.count)

    def __exit__(self, *exc) -> None:
        self._fastopt.__exit__(*exc)
        if torch is not None:
            torch.set_num_threads(self._torch)
