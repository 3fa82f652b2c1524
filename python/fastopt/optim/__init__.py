"""torch.optim's algorithms, with torch's names, signatures and math, on fastopt's fused kernels.

Each class takes the keyword names and defaults of ``torch.optim.<Name>`` in torch 2.13 (without
``params``, ``foreach``, ``fused``, ``capturable`` and ``differentiable``) and follows torch's
single-tensor update formulas, option by option; ``Lion`` (not in torch) follows Chen et al. 2023
and ``AdaBelief`` the authors' adabelief-pytorch 0.2.1. They keep the dict-based
``update(params, grads)`` API of fastopt's book classes, and their state lives in dicts keyed like
params, under torch's state names (``opt.exp_avg["W1"]``).

Every option is fused into the one pass per array. Options that change the number of state arrays
(amsgrad, momentum, centered) or the per-element work (L2 weight decay, RAdam's rectification) are
compile-time variants of the kernel; maximize and decoupled weight decay are per-step scalars.

One difference from torch: the step count is per optimizer (``opt.steps``), not per parameter, so a
key first seen after some steps gets the optimizer's bias corrections (and, for SGD with
dampening, a momentum buffer that starts from 0 instead of from its first gradient).
"""

from __future__ import annotations

from .._base import Optimizer as Optimizer  # the base class, for isinstance checks
from .adabelief import AdaBelief
from .adam import Adam, Adamax, AdamW
from .adaptive import Adadelta, Adagrad, RMSprop
from .cg import ConjugateGradient
from .lbfgs import LBFGS
from .lion import Lion
from .nadam_radam import NAdam, RAdam
from .sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "Lion",
    "AdaBelief",
    "LBFGS",
    "ConjugateGradient",
]

# The public home of every class (its repr, its checkpoint kind "fastopt.optim.Adam"), whichever
# file it is written in.
for _name in __all__:
    globals()[_name].__module__ = __name__
