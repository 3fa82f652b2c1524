"""Drop-in torch.optim optimizers on fastopt's fused kernels: ``from fastopt.torch import AdamW``.

Each class is a ``torch.optim.Optimizer`` with torch's constructor (names, defaults, checks),
param groups, ``add_param_group``, ``zero_grad``, ``step(closure=None)``, lr schedulers, and
``state_dict()`` / ``load_state_dict()`` in torch's format, interchangeable with torch.optim's
own class. Its step is one fused call of the fastopt.optim class of the same name over every
param of every group, in place, for CPU tensors of float32, float64, float16 and bfloat16 (half
params keep float32 master weights; bfloat16 needs ml_dtypes). fastopt's options are keywords:
``max_grad_norm``, ``nonfinite``, ``state_format``, ``compact_min_size``, ``master_weights``,
``rounding``, ``compensation``, ``seed``.

Not supported: tensors on another device (CUDA, MPS, meta), sparse grads, ``capturable=True`` and
``differentiable=True``. ``foreach`` and ``fused`` are accepted and ignored: the step is always
fused. Importing this module imports torch; ``import fastopt`` never does.
"""

from __future__ import annotations

from .. import optim
from ._optimizer import Optimizer


class SGD(Optimizer):
    engine = optim.SGD
    keeps_step = False


class Adam(Optimizer):
    engine = optim.Adam


class AdamW(Optimizer):
    engine = optim.AdamW


class Adagrad(Optimizer):
    engine = optim.Adagrad


class RMSprop(Optimizer):
    engine = optim.RMSprop


class Adadelta(Optimizer):
    engine = optim.Adadelta


class Adamax(Optimizer):
    engine = optim.Adamax


class NAdam(Optimizer):
    engine = optim.NAdam


class RAdam(Optimizer):
    engine = optim.RAdam


class Lion(Optimizer):
    engine = optim.Lion


class AdaBelief(Optimizer):
    engine = optim.AdaBelief


# The update(params, grads) family; the line-search methods (LBFGS, ConjugateGradient) take a
# closure and have no adapter here.
_ENGINES = [name for name in optim.__all__ if issubclass(getattr(optim, name), optim.Optimizer)]
__all__ = ["Optimizer", *_ENGINES]

for _name in _ENGINES:
    _cls = globals()[_name]
    _cls.__doc__ = f"{_cls.engine.__doc__}\n\n    A torch.optim.Optimizer: see fastopt.torch."
