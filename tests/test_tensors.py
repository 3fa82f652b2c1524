"""torch tensors in update() and the norms: updated in place with zero copies, the same numbers as
NumPy arrays, autograd told, and every tensor fastopt cannot use refused by name with nothing
changed (skipped when torch is not installed)."""

from __future__ import annotations

import subprocess
import sys

import fastopt
import numpy as np
import pytest
from fastopt import optim

torch = pytest.importorskip("torch")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
CASES = [("SGD", {"momentum": 0.9}), ("AdamW", {}), ("RMSprop", {"centered": True}), ("Lion", {})]


def _numpy(tensor):
    """A NumPy copy of a tensor, bfloat16 as ml_dtypes' bfloat16."""
    if tensor.dtype == torch.bfloat16:
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return tensor.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return tensor.detach().numpy().copy()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_tensor_params_match_arrays_in_place(case, dtype):
    if dtype == torch.bfloat16:
        pytest.importorskip("ml_dtypes")
    name, options = case
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (33,), (), (2, 4, 6)]
    tensors = {f"p{i}": torch.randn(s, generator=generator).to(dtype) for i, s in enumerate(shapes)}
    tensors["w"] = torch.nn.Parameter(torch.randn(7, generator=generator).to(dtype))
    arrays = {key: _numpy(t) for key, t in tensors.items()}
    pointers = {key: t.data_ptr() for key, t in tensors.items()}
    objects = dict(tensors)
    by_tensor = getattr(optim, name)(lr=0.05, **options)
    by_array = getattr(optim, name)(lr=0.05, **options)
    for _ in range(4):
        grads = {k: torch.randn(t.shape, generator=generator).to(dtype) for k, t in tensors.items()}
        by_tensor.update(tensors, grads)
        by_array.update(arrays, {key: _numpy(g) for key, g in grads.items()})
    for key, tensor in tensors.items():
        assert tensor is objects[key] and tensor.data_ptr() == pointers[key]  # in place
        np.testing.assert_array_equal(_numpy(tensor), arrays[key])
        assert not np.array_equal(_numpy(tensor).astype(np.float64), _numpy(objects[key]) * 0)
    state = by_tensor.raw_state[by_tensor._state_names[0]]
    assert all(isinstance(value, np.ndarray) for value in state.values())


def test_tensor_grads_of_any_layout_and_numpy_params():
    generator = torch.Generator().manual_seed(1)
    params = {"a": np.linspace(-1, 1, 12).reshape(3, 4), "b": np.arange(6.0)}
    expected = {key: value.copy() for key, value in params.items()}
    grad_a = torch.randn(4, 3, dtype=torch.float64, generator=generator).T  # not C-contiguous
    grad_b = torch.randn(6, dtype=torch.float32, generator=generator)  # another dtype
    optim.Adam(lr=0.1).update(params, {"a": grad_a, "b": grad_b})
    optim.Adam(lr=0.1).update(expected, {"a": grad_a.numpy(), "b": grad_b.numpy()})
    for key in params:
        np.testing.assert_array_equal(params[key], expected[key])
        assert not np.array_equal(params[key], np.linspace(-1, 1, 12).reshape(3, 4))


def test_autograd_is_told_of_the_write():
    weight = torch.nn.Parameter(torch.randn(3))
    before = weight._version
    loss = (weight * weight).sum()  # saves weight for backward
    optim.SGD(lr=0.1).update({"w": weight}, {"w": torch.ones(3)})
    assert weight._version == before + 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_skipped_update_writes_nothing_and_bumps_nothing():
    weight = torch.nn.Parameter(torch.randn(3))
    before, values = weight._version, weight.detach().clone()
    opt = optim.Adam(nonfinite="skip")
    opt.update({"w": weight}, {"w": torch.tensor([1.0, float("nan"), 0.0])})
    assert opt.skipped_updates == 1 and weight._version == before
    assert torch.equal(weight.detach(), values)


def _bad_params():
    leaf = torch.randn(4, requires_grad=True)
    return {
        "non-contiguous": (torch.randn(4, 6)[:, ::2], ValueError, "not contiguous"),
        "non-leaf": (leaf * 2, ValueError, "not a leaf"),
        "sparse": (torch.randn(4).to_sparse(), TypeError, "sparse"),
        "meta": (torch.empty(4, device="meta"), ValueError, "on meta"),
        "complex": (torch.randn(4, dtype=torch.complex64), TypeError, "dtype"),
        "int": (torch.arange(4), TypeError, "dtype"),
        "negated view": (torch._neg_view(torch.randn(4)), ValueError, "resolve_neg"),
    }


@pytest.mark.parametrize("bad", list(_bad_params()))
def test_unusable_tensor_param_is_refused_by_key_and_nothing_changes(bad):
    value, error, message = _bad_params()[bad]
    good = torch.randn(5)
    kept = good.clone()
    opt = optim.Adam(lr=0.1)
    params = {"good": good, "bad": value}
    grads = {"good": torch.ones(5), "bad": torch.ones(value.shape)}
    with pytest.raises(error, match=message) as raised:
        opt.update(params, grads)
    assert "params['bad']" in str(raised.value)
    assert torch.equal(good, kept) and opt.steps == 0 and not opt.exp_avg


@pytest.mark.parametrize(
    "grad, error, message",
    [
        (torch.ones(4).to_sparse(), TypeError, "sparse"),
        (torch.empty(4, device="meta"), ValueError, "on meta"),
        (torch.ones(4, dtype=torch.complex64), TypeError, "real numbers"),
    ],
    ids=["sparse", "meta", "complex"],
)
def test_unusable_tensor_grad_is_refused_by_key(grad, error, message):
    params = {"good": np.ones(3), "bad": np.ones(4)}
    with pytest.raises(error, match=message) as raised:
        optim.Adam().update(params, {"good": np.ones(3), "bad": grad})
    assert "grads['bad']" in str(raised.value)
    assert np.array_equal(params["good"], np.ones(3))


def test_bfloat16_tensor_without_ml_dtypes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes now fails
    weight = torch.randn(4, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"params\['w'\].*ml_dtypes"):
        optim.Adam().update({"w": weight}, {"w": torch.ones(4)})


def test_norms_and_clipping_read_tensors_in_place():
    grads = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[4.0]], dtype=torch.float64)}
    assert fastopt.global_norm(grads) == 5.0
    a = grads["a"]
    assert fastopt.clip_grad_norm(grads, 1.0) == 5.0
    assert grads["a"] is a
    np.testing.assert_allclose(a.numpy(), [3.0 / (5.0 + 1e-6), 0.0], rtol=1e-6)
    params = {"w": torch.zeros(2)}
    optim.SGD(lr=1.0, max_grad_norm=1.0).update(params, {"w": torch.tensor([6.0, 8.0])})
    np.testing.assert_allclose(params["w"].numpy(), [-0.6, -0.8], rtol=1e-6)


def test_fastopt_never_imports_torch():
    code = (
        "import sys, numpy as np, fastopt\n"
        "p = {'w': np.ones(3)}\n"
        "fastopt.optim.Adam().update(p, {'w': np.ones(3)})\n"
        "fastopt.clip_grad_norm({'w': np.ones(3)}, 1.0)\n"
        "assert 'torch' not in sys.modules, 'fastopt imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_inference_tensors_are_updated_too():
    with torch.inference_mode():
        weight = torch.ones(4)
    optim.SGD(lr=0.5).update({"w": weight}, {"w": torch.ones(4)})
    assert torch.equal(weight, torch.full((4,), 0.5))
