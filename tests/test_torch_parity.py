"""fastopt.torch against torch.optim itself: every class and option, with param groups, over 24
steps (skipped when torch is not installed).

Each case runs three params in two groups (the second with its own lr and weight decay, plus an
option of its own where the class has one), with fresh gradients each step, and one param without
a grad on some steps (torch then skips it, so its per-param step falls behind the others'). Params
and every state tensor torch keeps (``step`` included) are compared. Tolerances, from the issue:
float64 rtol 1e-10, float32 rtol 1e-4 (torch's kernels may fuse a multiply-add where fastopt
rounds twice; fastopt's bit-exact oracle is fastopt.reference, tests/test_optim.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import OPTIM_CASES, case_id

torch = pytest.importorskip("torch")
import fastopt.torch as fastopt_torch  # noqa: E402 (after torch is known to be there)

STEPS = 24
SHAPES = [(5, 3), (33,), (2, 4, 17)]
TOLERANCE = {
    torch.float64: dict(rtol=1e-10, atol=1e-13),
    torch.float32: dict(rtol=1e-4, atol=1e-6),
}
# A second group's own settings: lr and weight decay always, and an option where the class has one.
GROUP_OPTIONS = {
    "SGD": {},  # dampening is added below where the case has momentum (it then keeps a buffer)
    "Adam": {"betas": (0.8, 0.99), "eps": 1e-6},
    "AdamW": {"betas": (0.8, 0.99)},
    "Adagrad": {"lr_decay": 0.01},
    "RMSprop": {"alpha": 0.9},
    "Adadelta": {"rho": 0.8},
    "Adamax": {"betas": (0.8, 0.99)},
    "NAdam": {"momentum_decay": 0.01, "betas": (0.85, 0.99)},
    "RAdam": {"betas": (0.8, 0.99)},
}
TORCH_CASES = [c for c in OPTIM_CASES if c[0] in GROUP_OPTIONS]


def make_params(dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator, dtype=dtype).requires_grad_() for s in SHAPES]


def groups_of(params, name, options):
    second = {"lr": 0.03, "weight_decay": 0.05, **GROUP_OPTIONS[name]}
    if name == "SGD" and options.get("momentum") and not options.get("nesterov"):
        second["dampening"] = 0.1  # torch: Nesterov momentum requires zero dampening
    return [{"params": params[:2]}, {"params": params[2:], **second}]


def run_both(name, options, dtype, steps=STEPS, seed=1):
    """(fastopt.torch optimizer, its params, torch optimizer, its params) after `steps` steps."""
    ours, theirs = make_params(dtype), make_params(dtype)
    fast = getattr(fastopt_torch, name)(groups_of(ours, name, options), lr=0.01, **options)
    reference = getattr(torch.optim, name)(
        groups_of(theirs, name, options), lr=0.01, foreach=False, **options
    )
    step_both(fast, ours, reference, theirs, dtype, steps, seed)
    return fast, ours, reference, theirs


def step_both(fast, ours, reference, theirs, dtype, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for mine, other in zip(ours, theirs):
            grad = torch.randn(mine.shape, generator=generator, dtype=dtype)
            mine.grad, other.grad = grad.clone(), grad.clone()
        if step % 5 == 2:  # the middle param sits this step out
            ours[1].grad = theirs[1].grad = None
        fast.step()
        reference.step()


def assert_same_state(fast, ours, reference, theirs, dtype):
    tolerance = TOLERANCE[dtype]
    for mine, other, start in zip(ours, theirs, make_params(dtype)):
        np.testing.assert_allclose(mine.detach().numpy(), other.detach().numpy(), **tolerance)
        assert not torch.equal(mine, start)  # it moved
    for mine, other in zip(ours, theirs):
        expected = reference.state[other]
        found = fast.state[mine]
        for name, value in expected.items():
            if value is None:  # torch's SGD without momentum keeps momentum_buffer=None
                continue
            if name == "step" and isinstance(reference, torch.optim.SGD):
                continue  # torch's SGD keeps no step: one loaded from fastopt.torch stands still
            np.testing.assert_allclose(
                found[name].numpy(), value.numpy(), err_msg=name, **tolerance
            )


@pytest.mark.parametrize(
    "torch_dtype", [torch.float32, torch.float64], ids=["float32", "float64"], indirect=True
)
@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_matches_torch_with_param_groups(case, torch_dtype):
    name, options = case
    fast, ours, reference, theirs = run_both(name, options, torch_dtype)
    assert_same_state(fast, ours, reference, theirs, torch_dtype)
    assert fast.state[ours[1]]["step"] < fast.state[ours[0]]["step"] or name == "SGD"


@pytest.mark.parametrize("name", list(GROUP_OPTIONS))
def test_state_dict_from_torch_continues_the_same(name, torch_dtype):
    """torch.optim.X's state dict loads into fastopt.torch.X, which continues the same."""
    options = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    _, _, reference, theirs = run_both(name, options, torch.float64, steps=7)
    ours = [p.detach().clone().requires_grad_() for p in theirs]
    fast = getattr(fastopt_torch, name)(groups_of(ours, name, options), lr=0.5, **options)
    fast.load_state_dict(reference.state_dict())
    assert fast.param_groups[0]["lr"] == 0.01  # the checkpoint's settings
    step_both(fast, ours, reference, theirs, torch.float64, 9, seed=2)
    assert_same_state(fast, ours, reference, theirs, torch.float64)


@pytest.mark.parametrize("name", list(GROUP_OPTIONS))
def test_state_dict_into_torch_continues_the_same(name, torch_dtype):
    """fastopt.torch.X's state dict loads into torch.optim.X, which continues with its numbers."""
    options = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    # Two steps: the first group's two params still share a step count (a cohort), whose step
    # tensors torch must get one per param.
    fast, ours, _, _ = run_both(name, options, torch.float64, steps=2)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    reference = getattr(torch.optim, name)(
        groups_of(theirs, name, options), lr=0.5, foreach=False, **options
    )
    # A copy, as torch.save/torch.load make: state_dict() shares the optimizer's memory, as torch's
    # own does, and torch's load keeps tensors that need no cast.
    reference.load_state_dict(copy.deepcopy(fast.state_dict()))
    step_both(fast, ours, reference, theirs, torch.float64, 9, seed=2)
    assert_same_state(fast, ours, reference, theirs, torch.float64)


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[0.05, 0.1], total_steps=30
    ),
    "ReduceLROnPlateau": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=1
    ),
}


@pytest.mark.parametrize("optimizer", ["AdamW", "SGD", "RMSprop"])
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_torch_schedulers_drive_it_unchanged(scheduler, optimizer, torch_dtype):
    """OneCycleLR also cycles betas (Adam) or momentum (SGD, RMSprop) in the groups."""
    options = {"momentum": 0.9} if optimizer in ("SGD", "RMSprop") else {}
    ours, theirs = make_params(torch.float64), make_params(torch.float64)
    fast = getattr(fastopt_torch, optimizer)(
        groups_of(ours, optimizer, options), lr=0.01, **options
    )
    reference = getattr(torch.optim, optimizer)(
        groups_of(theirs, optimizer, options), lr=0.01, foreach=False, **options
    )
    schedules = [SCHEDULERS[scheduler](fast), SCHEDULERS[scheduler](reference)]
    generator = torch.Generator().manual_seed(3)
    for step in range(20):
        for mine, other in zip(ours, theirs):
            mine.grad = torch.randn(mine.shape, generator=generator)
            other.grad = mine.grad.clone()
        fast.step()
        reference.step()
        for schedule in schedules:
            if scheduler == "ReduceLROnPlateau":
                schedule.step(1.0 if step < 3 else 2.0)  # a plateau: the rate halves
            else:
                schedule.step()
    assert fast.param_groups[1]["lr"] == reference.param_groups[1]["lr"] != 0.03
    assert_same_state(fast, ours, reference, theirs, torch.float64)
