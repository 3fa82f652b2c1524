"""fastopt.optim.AdaBelief against the authors' own code, adabelief-pytorch 0.2.1 (when installed):
every option, float64 with torch's default dtype float64, 30 steps, params and every state."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from conftest import OPTIM_CASES, OPTIM_SHAPES, case_id
from fastopt import optim

torch = pytest.importorskip("torch")
adabelief_pytorch = pytest.importorskip("adabelief_pytorch")

STEPS = 30
CASES = [case for case in OPTIM_CASES if case[0] == "AdaBelief"]


@pytest.fixture
def float64_default():
    # The package keeps nothing in the default dtype, but torch's scalar arithmetic on a float64
    # tensor is float64 either way; set it as the torch parity tests do.
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_the_authors_package(case, float64_default, rng):
    _, options = case
    params = {i: rng.standard_normal(s) for i, s in enumerate(OPTIM_SHAPES)}
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in params.values()]
    fast = optim.AdaBelief(**options)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its settings
        theirs = adabelief_pytorch.AdaBelief(tensors, print_change_log=False, **options)
    for _ in range(STEPS):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        fast.update(params, grads)
        for tensor, grad in zip(tensors, grads.values()):
            tensor.grad = torch.tensor(grad)
        theirs.step()
    tolerance = dict(rtol=1e-10, atol=1e-12)
    for key, tensor in zip(params, tensors):
        np.testing.assert_allclose(params[key], tensor.detach().numpy(), **tolerance)
        state = theirs.state[tensor]
        assert state["step"] == fast.steps == STEPS
        for name in ("exp_avg", "exp_avg_var", "max_exp_avg_var"):
            if name in state:
                mine = getattr(fast, name)[key]
                np.testing.assert_allclose(mine, state[name].numpy(), err_msg=name, **tolerance)
            else:
                assert key not in getattr(fast, name)
