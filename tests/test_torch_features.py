"""fastopt.torch as a torch.optim.Optimizer: constructor, groups, closure, fastopt's options, half
params, compact state, checkpoints, and every error with nothing changed (skipped without torch)."""

from __future__ import annotations

import copy
import inspect
import io

import numpy as np
import pytest
from fastopt import optim

torch = pytest.importorskip("torch")
import fastopt.torch as fastopt_torch  # noqa: E402 (after torch is known to be there)

TORCH_NAMES = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam", "RAdam"]


def params_of(seed=0, dtype=torch.float32, shapes=((6, 5), (300,), (4,))):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator).to(dtype).requires_grad_() for s in shapes]


def set_grads(params, generator, dtype=None):
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator).to(dtype or p.dtype)


def started(cls, seed, dtype=torch.float32, **options):
    """(params, optimizer, generator) after one step with fresh grads."""
    params = params_of(dtype=dtype)
    opt = cls(params, **options)
    generator = torch.Generator().manual_seed(seed)
    set_grads(params, generator)
    opt.step()
    return params, opt, generator


def twin_grads(ours, theirs, generator):
    """The same fresh grads for two copies of the params."""
    for mine, other in zip(ours, theirs):
        mine.grad = torch.randn(mine.shape, generator=generator, dtype=mine.dtype)
        other.grad = mine.grad.clone()


def snapshot(opt, params):
    return copy.deepcopy(([p.detach().clone() for p in params], opt.state_dict()))


def assert_unchanged(before, opt, params):
    values, state = before
    for p, value in zip(params, values):
        assert torch.equal(p.detach(), value)
    now = opt.state_dict()
    assert now["param_groups"] == state["param_groups"]
    assert now["state"].keys() == state["state"].keys()
    for index, entry in state["state"].items():
        for name, value in entry.items():
            assert torch.equal(now["state"][index][name], value), (index, name)


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_constructor_is_torchs_plus_fastopts_options(name):
    ours = inspect.signature(getattr(fastopt_torch, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for arg, parameter in theirs.items():
        assert ours[arg].default == parameter.default and ours[arg].kind == parameter.kind
    extra = list(ours)[len(theirs) :]
    assert "max_grad_norm" in extra and "state_format" in extra and "per_key" not in extra
    assert all(ours[arg].kind == inspect.Parameter.KEYWORD_ONLY for arg in extra)
    opt = getattr(fastopt_torch, name)(params_of())
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.defaults == getattr(torch.optim, name)(params_of()).defaults


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"lr": -1.0}, ValueError),
        ({"betas": (1.5, 0.9)}, ValueError),
        ({"eps": -1e-8}, ValueError),
        ({"capturable": True}, ValueError),
        ({"differentiable": True}, ValueError),
        ({"state_format": "int4"}, ValueError),
    ],
    ids=["lr", "betas", "eps", "capturable", "differentiable", "state_format"],
)
def test_bad_constructor_arguments_raise_as_torch_does(kwargs, error):
    with pytest.raises(error):
        fastopt_torch.AdamW(params_of(), **kwargs)
    if not {"state_format", "capturable", "differentiable"} & kwargs.keys():
        with pytest.raises(error):
            torch.optim.AdamW(params_of(), **kwargs)


def test_foreach_and_fused_are_accepted_and_the_step_is_the_same():
    results = []
    for flags in ({}, {"foreach": True}, {"fused": True}):
        params = params_of()
        opt = fastopt_torch.Adam(params, lr=0.1, **flags)
        set_grads(params, torch.Generator().manual_seed(1))
        opt.step()
        results.append(params[0].detach().clone())
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_add_param_group_checks_the_group_and_keeps_nothing_on_error():
    params = params_of()
    opt = fastopt_torch.SGD(params[:2], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"param_groups\[1\].*lr"):
        opt.add_param_group({"params": params[2:], "lr": -0.5})
    with pytest.raises(ValueError, match=r"param_groups\[1\] keeps the states"):
        opt.add_param_group({"params": params[2:], "momentum": 0.0})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": params[2:], "lr": 0.5})
    set_grads(params, torch.Generator().manual_seed(2))
    before = params[2].detach().clone()
    grad = params[2].grad.clone()
    opt.step()
    torch.testing.assert_close(params[2].detach(), before - 0.5 * grad)


def test_zero_grad_and_closure():
    params = params_of()
    opt = fastopt_torch.Adam(params, lr=0.1)
    target = torch.ones(4)

    def closure():
        opt.zero_grad()
        assert torch.is_grad_enabled()
        loss = ((params[2] - target) ** 2).sum()
        loss.backward()
        return loss

    first = opt.step(closure)
    assert params[0].grad is None and params[2].grad is not None  # only params[2] had a grad
    assert opt.state[params[0]] == {} and float(opt.state[params[2]]["step"]) == 1.0
    assert opt.step(closure).item() < first.item()


def test_named_params_are_accepted():
    model = torch.nn.Linear(3, 2)
    opt = fastopt_torch.AdamW(model.named_parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    weight = model.weight.detach().clone()
    opt.step()
    assert not torch.equal(model.weight.detach(), weight)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]


def test_lion_and_adabelief_match_their_engines_with_groups():
    """Lion and AdaBelief have no torch.optim class: fastopt.optim's (checked against the
    reference and the authors' package elsewhere) with per_key for the second group."""
    for name, group in (("Lion", {"lr": 3e-4, "betas": (0.8, 0.95)}), ("AdaBelief", {"lr": 3e-3})):
        params = params_of(dtype=torch.float64)
        arrays = {i: p.detach().numpy().copy() for i, p in enumerate(params)}
        fast = getattr(fastopt_torch, name)(
            [{"params": params[:2]}, {"params": params[2:], **group}]
        )
        engine = getattr(optim, name)(per_key={2: group})
        generator = torch.Generator().manual_seed(4)
        for _ in range(20):
            set_grads(params, generator)
            fast.step()
            engine.update(arrays, {i: p.grad.numpy() for i, p in enumerate(params)})
        for i, p in enumerate(params):
            np.testing.assert_array_equal(p.detach().numpy(), arrays[i])


def test_adabelief_matches_the_authors_package_with_groups():
    adabelief_pytorch = pytest.importorskip("adabelief_pytorch")
    ours, theirs = params_of(dtype=torch.float64), params_of(dtype=torch.float64)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 3e-3}]  # noqa: E731
    fast = fastopt_torch.AdaBelief(groups(ours), lr=1e-3)
    reference = adabelief_pytorch.AdaBelief(groups(theirs), lr=1e-3, print_change_log=False)
    generator = torch.Generator().manual_seed(5)
    for _ in range(20):
        twin_grads(ours, theirs, generator)
        fast.step()
        reference.step()
    for mine, other in zip(ours, theirs):
        np.testing.assert_allclose(mine.detach().numpy(), other.detach().numpy(), rtol=1e-10)


def test_max_grad_norm_is_torchs_clip_then_step():
    ours, theirs = params_of(dtype=torch.float64), params_of(dtype=torch.float64)
    fast = fastopt_torch.AdamW(ours, lr=0.05, max_grad_norm=0.5)
    reference = torch.optim.AdamW(theirs, lr=0.05, foreach=False)
    generator = torch.Generator().manual_seed(6)
    for _ in range(20):
        twin_grads(ours, theirs, generator)
        fast.step()
        norm = torch.nn.utils.clip_grad_norm_(theirs, 0.5, foreach=False)
        reference.step()
        assert fast.last_grad_norm == pytest.approx(float(norm), rel=1e-12)
    for mine, other in zip(ours, theirs):
        np.testing.assert_allclose(mine.detach().numpy(), other.detach().numpy(), rtol=1e-10)


def test_nonfinite_skip_and_raise_change_nothing():
    params, skip, generator = started(fastopt_torch.Adam, 7, lr=0.1, nonfinite="skip")
    before = snapshot(skip, params)
    set_grads(params, generator)
    params[1].grad[17] = float("nan")
    skip.step()
    assert skip.skipped_updates == 1
    assert_unchanged(before, skip, params)
    raising = fastopt_torch.Adam(params, lr=0.1, nonfinite="raise")
    with pytest.raises(FloatingPointError, match=r"grads\[1\]"):
        raising.step()
    assert raising.state_dict()["state"] == {}


def test_a_bad_grad_raises_naming_its_key_and_changes_nothing():
    """torch itself refuses grads of another shape, dtype or device; a sparse one gets here."""
    params, opt, generator = started(fastopt_torch.RAdam, 8, lr=0.1)
    before = snapshot(opt, params)
    set_grads(params, generator)
    params[2].grad = params[2].grad.to_sparse()
    with pytest.raises(TypeError, match=r"grads\[2\] is a torch.sparse_coo tensor"):
        opt.step()
    assert_unchanged(before, opt, params)
    params[2].grad = torch.randn(8, generator=generator)[::2]  # strided: read through a copy
    opt.step()
    assert float(opt.state[params[2]]["step"]) == 2.0


def test_a_param_fastopt_cannot_write_is_refused_by_key():
    meta = torch.empty(4, device="meta", requires_grad=True)
    good = params_of()[0]
    opt = fastopt_torch.SGD([good, meta], lr=0.1)
    good.grad = torch.ones_like(good)
    meta.grad = torch.ones(4, device="meta")
    before = good.detach().clone()
    with pytest.raises(ValueError, match=r"params\[1\] is a tensor on meta"):
        opt.step()
    assert torch.equal(good.detach(), before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_params_keep_float32_masters_as_the_engine_does(dtype):
    if dtype == torch.bfloat16:
        pytest.importorskip("ml_dtypes")
    params = params_of(dtype=dtype)
    views = {i: p.detach().view(torch.int16).numpy().copy() for i, p in enumerate(params)}
    arrays = {i: p.detach().float().numpy().copy() for i, p in enumerate(params)}
    half = {i: torch.from_numpy(views[i]).view(dtype) for i in views}
    fast = fastopt_torch.AdamW(params, lr=0.01)
    engine = optim.AdamW(lr=0.01)
    generator = torch.Generator().manual_seed(9)
    for _ in range(10):
        set_grads(params, generator)
        fast.step()
        engine.update(half, {i: p.grad for i, p in enumerate(params)})
    for i, p in enumerate(params):
        assert torch.equal(p.detach(), half[i])
        master = fast.state[p]["master"]
        assert master.dtype == torch.float32
        np.testing.assert_array_equal(master.numpy(), engine.master[i])
        assert not np.array_equal(master.numpy(), arrays[i])


@pytest.mark.parametrize("state_format, raw", [("bfloat16", torch.bfloat16), ("int8", torch.uint8)])
def test_compact_state_resumes_exactly(state_format, raw):
    options = dict(lr=0.01, state_format=state_format, compact_min_size=256)
    generator = torch.Generator().manual_seed(10)
    grads = [[torch.randn(p.shape, generator=generator) for p in params_of()] for _ in range(12)]
    whole, halves = params_of(), params_of()
    straight = fastopt_torch.Adam(whole, **options)
    first = fastopt_torch.Adam(halves, **options)
    for step, step_grads in enumerate(grads):
        for p, q, g in zip(whole, halves, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
        straight.step()
        if step < 6:
            first.step()
        elif step == 6:
            saved = io.BytesIO()
            torch.save(first.state_dict(), saved)
            saved.seek(0)
            second = fastopt_torch.Adam(halves, **options)
            second.load_state_dict(torch.load(saved))
        if step >= 6:
            second.step()
    state = straight.state[whole[1]]
    suffix = "_int8" if state_format == "int8" else ""  # codes never pass for torch's values
    assert state["exp_avg" + suffix].dtype == raw and state["exp_avg_sq" + suffix].dtype == raw
    assert ("exp_avg_absmax" in state) == (state_format == "int8")
    for p, q in zip(whole, halves):
        assert torch.equal(p.detach(), q.detach())


def test_state_tensors_share_the_engines_memory():
    params = params_of()
    opt = fastopt_torch.Adam(params, lr=0.1)
    pointer = params[0].data_ptr()
    set_grads(params, torch.Generator().manual_seed(11))
    opt.step()
    assert params[0].data_ptr() == pointer
    shown = opt.state[params[0]]["exp_avg"]
    engine_array = opt._engine.raw_state["exp_avg"][0]
    assert shown.data_ptr() == engine_array.ctypes.data
    opt.step()
    np.testing.assert_array_equal(shown.numpy(), engine_array)


def test_a_reassigned_param_is_updated_in_its_new_memory():
    params = params_of()
    opt = fastopt_torch.SGD(params, lr=0.5)
    set_grads(params, torch.Generator().manual_seed(12))
    opt.step()
    params[0].data = torch.zeros(6, 5)
    params[0].grad = torch.ones(6, 5)
    opt.step()
    assert torch.equal(params[0].detach(), torch.full((6, 5), -0.5))


def test_pickled_optimizer_continues_the_same():
    """torch.save(optimizer) pickles its params and state together: the copy steps its own."""
    params, opt, generator = started(fastopt_torch.NAdam, 13, lr=0.05)
    saved = io.BytesIO()
    torch.save(opt, saved)
    saved.seek(0)
    copied = torch.load(saved, weights_only=False)
    twins = copied.param_groups[0]["params"]
    for _ in range(5):
        set_grads(params, generator)
        for p, q in zip(params, twins):
            q.grad = p.grad.clone()
        opt.step()
        copied.step()
    for p, q in zip(params, twins):
        assert torch.equal(p.detach(), q.detach()) and p.data_ptr() != q.data_ptr()
        assert copied.state[q]["exp_avg"].data_ptr() != opt.state[p]["exp_avg"].data_ptr()
        assert torch.equal(copied.state[q]["mu_product"], opt.state[p]["mu_product"])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0], params=[])), "groups"),
        (lambda sd: sd["param_groups"][0]["params"].pop(), "size"),
        (lambda sd: sd["state"][1].update(exp_avg=torch.zeros(7)), "shape"),
        (lambda sd: sd["state"][0].update(step=torch.tensor(-1.0)), "step"),
        (lambda sd: sd["state"][0].update(exp_avg="zeros"), "tensor"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), "lr"),
        (lambda sd: sd["state"][1].pop("exp_avg_sq"), "exp_avg_sq"),
        (lambda sd: sd["state"][0].pop("step"), "step"),
        (
            lambda sd: sd["state"][0].update(step=torch.tensor(2.0**60, dtype=torch.float64)),
            "2\\*\\*53",
        ),
        (lambda sd: sd["param_groups"][0].update(amsgrad=True), "max_exp_avg_sq"),
        (
            lambda sd: sd["state"][1].update(exp_avg=torch.zeros(5), exp_avg_sq=torch.zeros(5)),
            "shape \\(5,\\) but its param has shape \\(300,\\)",
        ),  # fmt: skip
        (lambda sd: sd["param_groups"][0].update(capturable=True), "capturable"),
    ],
    ids=[
        "groups",
        "group size",
        "shape",
        "step",
        "not a tensor",
        "lr",
        "missing state",
        "missing step",
        "huge step",
        "amsgrad without its state",
        "states of another shape",
        "capturable",
    ],
)
def test_bad_state_dict_raises_and_changes_nothing(corrupt, message):
    params, opt, _ = started(fastopt_torch.Adam, 14, lr=0.1)
    bad = copy.deepcopy(opt.state_dict())
    corrupt(bad)
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(bad)
    assert_unchanged(before, opt, params)
    opt.step()  # still steps


def test_nadam_state_dict_without_mu_product_is_refused():
    params, opt, _ = started(fastopt_torch.NAdam, 15, lr=0.1)
    bad = copy.deepcopy(opt.state_dict())
    del bad["state"][2]["mu_product"]
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"state\[2\] has no \['mu_product'\]"):
        opt.load_state_dict(bad)
    assert_unchanged(before, opt, params)


def test_int8_codes_never_pass_for_values():
    """Under torch's names torch.optim would read int8 codes as float values without a word."""
    params, opt, _ = started(fastopt_torch.Adam, 16, lr=0.1, state_format="int8",
                             compact_min_size=256)  # fmt: skip
    saved = copy.deepcopy(opt.state_dict())
    assert saved["state"][1]["exp_avg_int8"].dtype == torch.uint8
    assert "exp_avg" not in saved["state"][1] and "exp_avg_absmax" in saved["state"][1]
    theirs = [p.detach().clone().requires_grad_() for p in params]
    reference = torch.optim.Adam(theirs, lr=0.1, foreach=False)
    reference.load_state_dict(copy.deepcopy(saved))
    for p in theirs:
        p.grad = torch.ones_like(p)
    with pytest.raises(KeyError, match="exp_avg"):
        reference.step()
    other = fastopt_torch.Adam(params, lr=0.1, state_format="bfloat16", compact_min_size=256)
    with pytest.raises(ValueError, match=r"state\[1\]\['exp_avg_int8'\] holds int8 codes"):
        other.load_state_dict(copy.deepcopy(saved))
    assert other.state_dict()["state"] == {}


def test_a_copy_can_take_new_groups():
    params, opt, _ = started(fastopt_torch.AdamW, 17, lr=0.1)
    copied = copy.deepcopy(opt)
    copied.add_param_group({"params": [torch.zeros(3, requires_grad=True)], "lr": 0.5})
    with pytest.raises(ValueError, match="keeps the states"):
        sgd = fastopt_torch.SGD(params[:1], momentum=0.9)
        sgd.add_param_group({"params": params[1:], "momentum": 0.0})


def test_a_param_twice_in_a_group_is_refused():
    weight = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="more than once"), pytest.warns(UserWarning):
        fastopt_torch.Adam([weight, weight])


def test_two_threads_stepping_one_optimizer_count_every_step():
    import threading

    weight = torch.zeros(100_000, requires_grad=True)
    weight.grad = torch.ones_like(weight)
    opt = fastopt_torch.Adam([weight], lr=0.1)
    workers = [threading.Thread(target=lambda: [opt.step() for _ in range(100)]) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert float(opt.state[weight]["step"]) == 200 == opt._engine.steps


def test_torch_state_loads_into_int8_quantized():
    params = params_of()
    theirs = torch.optim.AdamW([p.detach().clone().requires_grad_() for p in params], lr=0.01)
    twin_grads(params, theirs.param_groups[0]["params"], torch.Generator().manual_seed(18))
    theirs.step()
    ours = fastopt_torch.AdamW(params, lr=0.01, state_format="int8", compact_min_size=256)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    values = ours._engine.exp_avg[1]  # dequantized: within a code's step of torch's
    expected = theirs.state[theirs.param_groups[0]["params"][1]]["exp_avg"].numpy()
    assert ours.state[params[1]]["exp_avg_int8"].dtype == torch.uint8
    np.testing.assert_allclose(values, expected, atol=0.02 * np.abs(expected).max())
    assert not np.array_equal(values, expected * 0)


def test_an_entry_only_looked_at_is_no_state():
    params = params_of()
    opt = fastopt_torch.AdamW(params, lr=0.1)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert opt.state[params[1]] == {}  # torch's defaultdict makes an empty entry
    for _ in range(2):
        opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert "step" not in opt.state_dict()["state"].get(1, {})


def test_nadam_resumes_bit_exactly():
    """mu_product is shown in float64, as the engine keeps it: a save and load changes no bit."""
    straight, first, generator = started(fastopt_torch.NAdam, 19, torch.float64, lr=0.05)
    resumed, second, _ = started(fastopt_torch.NAdam, 19, torch.float64, lr=0.05)
    second.load_state_dict(copy.deepcopy(second.state_dict()))
    for _ in range(3):
        twin_grads(straight, resumed, generator)
        first.step()
        second.step()
    for p, q in zip(straight, resumed):
        assert torch.equal(p.detach(), q.detach())


def test_a_copy_taken_while_another_thread_steps_is_consistent():
    import threading

    weight = torch.zeros(200_000, requires_grad=True)
    weight.grad = torch.ones_like(weight)
    opt = fastopt_torch.Adam([weight], lr=0.1)
    opt.step()
    done = threading.Event()

    def stepping():
        while not done.is_set():
            opt.step()

    worker = threading.Thread(target=stepping)
    worker.start()
    try:
        copies = [copy.deepcopy(opt) for _ in range(10)]
    finally:
        done.set()
        worker.join()
    for other in copies:
        steps = other._steps[0]
        assert steps == other._engine.steps == float(other.state[other._params[0]]["step"])
        # exp_avg after `steps` steps of the constant grad 1: 1 - 0.9**steps
        expected = np.float32(1 - 0.9**steps)
        np.testing.assert_allclose(other.state[other._params[0]]["exp_avg"][:3], expected, 1e-5)
