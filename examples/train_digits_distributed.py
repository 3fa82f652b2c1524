"""Train the demo's digits network data-parallel, with the optimizer state sharded over MPI.

    pip install ".[mpi,demo]"
    mpiexec -n 2 python examples/train_digits_distributed.py

Every process computes the gradients of its share of each batch of 32; fastopt.distributed.Sharded
averages them, updates this process's 1/N of the params and Adam state, and all-gathers the params.
Process 0 then trains the same network on one process with the same batches and prints both test
accuracies: they match (the average of the shares' gradients is the batch's gradient, to rounding).
"""

from __future__ import annotations

import argparse

import numpy as np
from fastopt import optim
from fastopt.demo.digits import BATCH, accuracy, load, loss_and_grads, network
from fastopt.distributed import Sharded
from mpi4py import MPI


def train(data, epochs: int, seed: int, comm) -> tuple[dict, float]:
    """Data-parallel over `comm` (one process when comm.size is 1): the params and final loss."""
    x_train, y_train, _, _ = data
    rank, ranks = comm.Get_rank(), comm.Get_size()
    params = network(seed)
    opt = Sharded(optim.Adam(lr=1e-3), comm)
    rng = np.random.default_rng(seed)  # the same batches on every process
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for first in range(0, len(order), BATCH):
            batch = order[first : first + BATCH]
            share = batch[rank::ranks]
            loss, grads = loss_and_grads(params, x_train[share], y_train[share])
            # The mean over the share, weighted so that the average over the processes is the
            # mean over the batch (a factor of 1 when the batch divides evenly).
            weight = len(share) * ranks / len(batch)
            if weight != 1.0:
                grads = {key: value * weight for key, value in grads.items()}
            opt.update(params, grads)
    return params, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    data = load(args.seed)
    x_test, y_test = data[2], data[3]
    params, _ = train(data, args.epochs, args.seed, comm)
    if comm.Get_rank() != 0:
        return
    single, _ = train(data, args.epochs, args.seed, MPI.COMM_SELF)
    gap = max(float(np.max(np.abs(params[k] - single[k]))) for k in params)
    print(f"{comm.Get_size()} processes: test accuracy {accuracy(params, x_test, y_test):.3f}")
    print(f"1 process, same batches: test accuracy {accuracy(single, x_test, y_test):.3f}")
    print(f"largest difference of a param: {gap:.1e}")


if __name__ == "__main__":
    main()
