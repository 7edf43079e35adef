"""Data-parallel sharding shared by the distributed RBM trainer and :func:`dbn.training.fit_network`.

The rule (see :mod:`dbn.distributed`): the ``n_total`` samples are split into contiguous shards,
one per process; process ``r`` holds rows ``offset .. offset + n_local - 1`` only. Every process
draws the same permutation of the *global* index space from the shared-seed generator and
cuts it into the same global mini-batches as one process would; from each global batch a process
takes the rows it owns (possibly none). Statistics are summed over the owned rows, scaled by the
global batch size and all-reduced, which gives exactly the single-process batch means (up to
float rounding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Shard", "owned_batches"]


@dataclass(frozen=True)
class Shard:
    """This process's share of a data-parallel run.

    Parameters
    ----------
    offset : int
        Global index of the first row this process holds.
    n_total : int
        Number of rows over all processes.
    world_size : int
        Number of processes.
    all_reduce : callable
        ``all_reduce(tensor)``: in-place SUM over the processes (identity for one process).
    rank : int, default=0
        This process's index (the persistent chains of an RBM are split by it).

    Examples
    --------
    >>> Shard(0, 10, 1, lambda t: None).n_total
    10
    """

    offset: int
    n_total: int
    world_size: int
    all_reduce: Callable[[torch.Tensor], None]
    rank: int = 0


def owned_batches(
    order: torch.Tensor, offset: int, n_local: int, batch_size: int
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], list[int]]:
    """Split a global visiting order into this process's part of every global mini-batch.

    Parameters
    ----------
    order : Tensor of shape (n_total,)
        Global sample indices in visiting order (a permutation, or ``arange`` without shuffling).
    offset, n_local : int
        This process owns global rows ``offset .. offset + n_local - 1``.
    batch_size : int
        Global mini-batch size.

    Returns
    -------
    local : tuple of Tensor
        Per global batch, the local row indices (into this process's shard) it owns.
    positions : tuple of Tensor
        Per global batch, the positions of those rows inside the global batch.
    sizes : list of int
        Size of each global batch.

    Examples
    --------
    >>> local, pos, sizes = owned_batches(torch.tensor([3, 0, 2, 1]), 2, 2, 3)
    >>> [t.tolist() for t in local], [t.tolist() for t in pos], sizes
    ([[1, 0], []], [[0, 2], []], [3, 1])
    """
    n = order.shape[0]
    n_batches = -(-n // batch_size)
    mine = ((order >= offset) & (order < offset + n_local)).nonzero().squeeze(1)
    batch_of = torch.div(mine, batch_size, rounding_mode="floor")
    counts = torch.bincount(batch_of, minlength=n_batches).tolist()  # one host sync per epoch
    local = (order[mine] - offset).split(counts)
    positions = (mine - batch_of * batch_size).split(counts)
    sizes = [min(batch_size, n - b * batch_size) for b in range(n_batches)]
    return local, positions, sizes
