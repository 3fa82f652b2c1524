"""fastopt.optim against torch.optim itself (skipped when torch is not installed).

Every class, every option alone and in combination, float32 and float64, 30 steps with fresh
gradients, several arrays of awkward sizes; params and every state tensor torch keeps are compared.
Tolerances, from the issue: float64 rtol 1e-10, float32 rtol 1e-4. torch's own kernels may fuse a
multiply-add (one rounding where fastopt makes two), which is why this is not bit-exact; fastopt's
bit-exact oracle is fastopt.reference (tests/test_optim.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OPTIM_CASES, OPTIM_SHAPES, case_id
from fastopt import optim
from fastopt._settings import COMMON_OPTIONS
from test_optim import SIGNATURES

torch = pytest.importorskip("torch")

STEPS = 30
# Values are O(1); an atol far below them only excuses results that are 0 on one side and a few
# ulps of rounding noise on the other (e.g. a momentum buffer that cancels to ~1e-17).
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-13), np.float32: dict(rtol=1e-4, atol=1e-6)}


@pytest.mark.parametrize(
    "dtype, torch_dtype",
    [(np.float32, torch.float32), (np.float64, torch.float64)],
    ids=["float32", "float64"],
    indirect=["torch_dtype"],
)
@pytest.mark.parametrize(
    "case", [c for c in OPTIM_CASES if hasattr(torch.optim, c[0])], ids=case_id
)
def test_matches_torch(case, dtype, torch_dtype, rng):
    name, options = case
    params = {i: rng.standard_normal(s).astype(dtype) for i, s in enumerate(OPTIM_SHAPES)}
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in params.values()]
    fast = getattr(optim, name)(**options)
    theirs = getattr(torch.optim, name)(tensors, foreach=False, **options)
    for _ in range(STEPS):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        fast.update(params, grads)
        for tensor, grad in zip(tensors, grads.values()):
            tensor.grad = torch.tensor(grad)
        theirs.step()

    tolerance = TOLERANCE[dtype]
    for key, tensor in zip(params, tensors):
        np.testing.assert_allclose(params[key], tensor.detach().numpy(), **tolerance)
        state = theirs.state[tensor]
        assert int(state.get("step", STEPS)) == fast.steps == STEPS
        compared = 0
        for state_name, value in state.items():
            if state_name == "step":
                continue
            if state_name == "mu_product":
                np.testing.assert_allclose(fast.mu_product, float(value), **tolerance)
            else:
                mine = getattr(fast, state_name)[key]
                np.testing.assert_allclose(mine, value.numpy(), err_msg=state_name, **tolerance)
            compared += 1
        kept = [s for s in fast._state_names if getattr(fast, s)]  # the option's states
        assert compared == len(kept) + (name == "NAdam")


@pytest.mark.parametrize("name", [name for name in SIGNATURES if name != "Lion"])
def test_signatures_are_torchs(name):
    """The same names, defaults and order as torch (maximize etc. may be keyword-only here)."""
    import inspect

    dropped = {"self", "params", "foreach", "fused", "capturable", "differentiable"}
    theirs = [
        (p.name, p.default)
        for p in inspect.signature(getattr(torch.optim, name).__init__).parameters.values()
        if p.name not in dropped
    ]
    mine = [
        (p.name, p.default)
        for p in inspect.signature(getattr(optim, name)).parameters.values()
        if p.name not in COMMON_OPTIONS  # fastopt's own options, on every optimizer
    ]
    assert dict(mine) == dict(theirs)
    positional = [
        n for n, _ in mine[: len(mine)] if n not in ("maximize", "decoupled_weight_decay")
    ]
    assert positional == [n for n, _ in theirs if n in positional]
