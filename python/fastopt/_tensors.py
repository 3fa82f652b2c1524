"""torch tensors as NumPy views: how update(), the norms and fastopt.torch read and write them.

torch is never imported here. A tensor can only exist once the user has imported torch, so
``sys.modules`` answers whether a value can be one; without torch every call is a dict lookup.

A tensor's NumPy view shares its memory (``Tensor.numpy()``, zero copies): the kernels write the
tensor itself. bfloat16 has no NumPy dtype of its own; its view is ml_dtypes' bfloat16 over the
same 16-bit words (``tensor.view(torch.int16)``, as the compiled core recognises bfloat16 arrays).

The compiled core calls ``as_array`` only on its slow path (a value that is not an ndarray), so
updates of NumPy arrays pay nothing for this module.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np


def torch_module() -> Any:
    """torch, when the user has imported it; None otherwise (it is never imported here)."""
    return sys.modules.get("torch")


def is_tensor(value: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(value, torch.Tensor)


def as_array(value: Any, dict_name: str, key: Hashable, writes: bool) -> np.ndarray | None:
    """A NumPy view of the CPU tensor ``value`` (no copy), or None when it is not a tensor.

    ``writes``: the view will be written (a param): then a non-leaf tensor that requires grad and
    a tensor that is not contiguous in either memory order are refused, as torch.optim would
    never write them in place. The messages name ``dict_name[key]``; nothing is changed.
    """
    torch = torch_module()
    if torch is None or not isinstance(value, torch.Tensor):
        return None
    if not value.requires_grad:
        # The common case in one call (~2 us, most of this function's time): Tensor.numpy()
        # refuses what fastopt refuses too (another device, sparse, bfloat16, no NumPy dtype),
        # and the checks below then say why.
        try:
            array = value.numpy()
        except (TypeError, RuntimeError):
            array = None
        if array is not None and (
            not writes or array.flags.c_contiguous or array.flags.f_contiguous
        ):
            return array
    return _checked_view(value, torch, f"{dict_name}[{key!r}]", writes)


def _checked_view(value: Any, torch: Any, where: str, writes: bool) -> np.ndarray:
    """as_array's slow path: every check, with its message, then the view."""
    if value.device.type != "cpu":
        raise ValueError(
            f"{where} is a tensor on {value.device}; fastopt's step runs over CPU memory. Keep "
            "the optimizer's params and grads on the CPU, or use torch.optim on that device."
        )
    if value.layout != torch.strided:
        raise TypeError(
            f"{where} is a {value.layout} tensor; fastopt updates dense (torch.strided) tensors "
            "only. Convert the grad with .to_dense(), or use torch.optim.SparseAdam for sparse "
            "embeddings."
        )
    if writes and value.requires_grad and not value.is_leaf:
        raise ValueError(
            f"{where} requires grad and is not a leaf (it was computed from other tensors): "
            "writing it in place would corrupt the graph autograd recorded. Pass the leaf "
            "parameter itself (the nn.Parameter), as torch.optim takes it."
        )
    if value.is_neg() or value.is_conj():
        raise ValueError(
            f"{where} is a lazily negated or conjugated view (its memory holds other values); "
            "pass .resolve_neg() / .resolve_conj() of it, or the tensor it views."
        )
    tensor = value.detach()
    if tensor.dtype == torch.bfloat16:
        array = _bfloat16_view(tensor, torch, where)
    else:
        try:
            array = tensor.numpy()
        except (TypeError, RuntimeError) as error:  # complex32, float8, quantized, ...
            raise TypeError(
                f"{where} is a tensor of {tensor.dtype}, which has no NumPy dtype ({error}); "
                "fastopt takes float32, float64, float16 and bfloat16 tensors."
            ) from None
    if writes and not (array.flags.c_contiguous or array.flags.f_contiguous):
        raise ValueError(
            f"{where} is not contiguous (strides {tuple(value.stride())} for shape "
            f"{tuple(value.shape)}); fastopt updates params in place over contiguous memory. "
            "Make the parameter itself contiguous (p.data = p.data.contiguous()) before the "
            "optimizer takes it."
        )
    return array


def _bfloat16_view(tensor: Any, torch: Any, where: str) -> np.ndarray:
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(
            f"{where} is a torch.bfloat16 tensor: NumPy needs ml_dtypes for bfloat16 "
            "(pip install ml_dtypes, or fastopt's extra: pip install 'fastopt[bf16]')."
        ) from None
    return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)


def written(tensors: Iterable[Any]) -> None:
    """Tell autograd that these tensors were changed in place (their version counters), as
    torch.optim's in-place ops do: a graph that saved one of them for backward then raises
    instead of using new values silently."""
    torch = torch_module()
    if torch is None:
        return
    tensors = list(tensors)
    try:
        torch.autograd.graph.increment_version(tensors)  # a list at once, where torch takes one
    except (TypeError, RuntimeError):  # one at a time; an inference tensor keeps no counter
        for tensor in tensors:
            if not tensor.is_inference():
                torch.autograd.graph.increment_version(tensor)
