"""Data-parallel training on ``torch.distributed`` (gloo on the CPU, NCCL on CUDA).

Launch with ``torchrun``::

    torchrun --nproc-per-node 2 -m dbn.distributed pretrain --dataset digits --sizes 500 500 \\
        --epochs 5 --batch-size 100 --out stack.dbn

The design, chosen so that ``P`` processes give the result of one process with the same global
mini-batch size and seed (up to float rounding):

* **Shards.** The ``N`` training rows are split into ``P`` contiguous shards
  (``torch.tensor_split`` sizes); process ``r`` holds only its shard.
* **Batches.** Every process draws the same permutation of the global index space ``0 .. N-1``
  from the shared-seed generator and cuts it into the global batches of one process. From
  each global batch a process takes the rows it owns (a varying number, possibly none); the
  split costs one host synchronisation per epoch (:func:`dbn._shard.owned_batches`).
* **RBM epochs** are :meth:`dbn.rbm.CDTrainer.fit` with a :class:`dbn._shard.Shard` (the same
  engine, batches and CD step as one process; the all-reduce is the step's reduction hook).
* **RBM statistics.** :meth:`dbn.rbm.CDTrainer.step` sums the CD statistics over the owned rows,
  scales them by the global counts and all-reduces (SUM) one flat buffer; every process then
  applies the same momentum / decay / sparsity update, so the parameters stay identical.
* **Randomness.** Every random draw is made for the whole global batch (or all the persistent
  chains) from the shared generator, exactly as one process draws it, and each process uses its
  rows. This costs ``P`` times the (cheap) uniform draws, not the matrix products.
* **Stacking** is :mod:`dbn.stack`'s own greedy loop and propagation, given a
  :class:`dbn._shard.Shard` (:func:`pretrain_stack_distributed`).
* **Persistent chains** are split into ``P`` contiguous blocks; the chain initialisation
  gathers the picked rows' hidden probabilities with one all-reduce.
* **Monitors** (reconstruction error, pseudo-likelihood) use the same random subset and unit
  indices as one process and all-reduce their sums.
* **Fine-tuning** wraps the network in ``DistributedDataParallel``;
  :func:`dbn.training.fit_network` with a :class:`dbn._shard.Shard` visits the same global
  batches and scales each process's summed loss by ``P / global batch size``, so DDP's gradient
  average is the global batch mean: equal to one process up to float rounding (without
  dropout, whose masks come from each process's RNG).

Python API: :func:`init_distributed`, :func:`shard_bounds`, :func:`train_rbm_distributed`,
:func:`pretrain_stack_distributed`, :func:`finetune_distributed`; the command line is :func:`main`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from ._options import PROPAGATES
from ._random import make_generator, resolve_device
from ._shard import Shard
from ._validation import check_choice, check_data_tensor, check_int, per_layer
from .rbm import RBM, CDTrainer
from .stack import LayerStack, _pretrain_layers

__all__ = [
    "init_distributed",
    "world",
    "all_reduce_sum",
    "shard_bounds",
    "train_rbm_distributed",
    "pretrain_stack_distributed",
    "finetune_distributed",
    "main",
]

Backend = Literal["gloo", "nccl"]


def init_distributed(backend: Backend | None = None) -> tuple[int, int]:
    """Join the process group described by ``torchrun``'s environment; returns ``(rank, world_size)``.

    Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) nothing is initialised and the
    result is ``(0, 1)``: the functions here then run as one process. The backend defaults to
    NCCL when CUDA is available and gloo otherwise; with NCCL the process's GPU is
    ``cuda:LOCAL_RANK``.

    Examples
    --------
    >>> init_distributed() if "WORLD_SIZE" not in os.environ else (0, 1)
    (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    check_choice("backend", backend, ("gloo", "nccl"))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group.

    Examples
    --------
    >>> world() if not dist.is_initialized() else (0, 1)
    (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(tensor: torch.Tensor) -> None:
    """In-place SUM over the processes (nothing to do for one process).

    Examples
    --------
    >>> t = torch.ones(2); all_reduce_sum(t); t
    tensor([1., 1.])
    """
    if world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def shard_bounds(n_total: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of process ``rank``'s contiguous shard of ``n_total`` rows
    (``torch.tensor_split`` sizes: the first ``n_total % world_size`` shards get one more).

    Examples
    --------
    >>> [shard_bounds(10, r, 3) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    base, extra = divmod(n_total, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def _global_layout(n_local: int, device: torch.device) -> tuple[int, int]:
    """``(offset, n_total)`` from every process's shard size (one all-reduce)."""
    rank, size = world()
    sizes = torch.zeros(size, dtype=torch.float64, device=device)
    sizes[rank] = n_local
    all_reduce_sum(sizes)
    counts = [int(c) for c in sizes.tolist()]
    return sum(counts[:rank]), sum(counts)


def _make_shard(X: torch.Tensor) -> Shard:
    offset, n_total = _global_layout(X.shape[0], X.device)
    rank, size = world()
    return Shard(offset, n_total, size, all_reduce_sum, rank)


def train_rbm_distributed(
    rbm: RBM,
    X: torch.Tensor,
    *,
    n_epochs: int = 10,
    init_visible_bias: bool = True,
    callbacks: Sequence[Callable[[RBM, dict], None]] = (),
    **trainer_options,
) -> list[dict]:
    """Train an RBM by CD / PCD, data-parallel over the process group; returns the history.

    Every process calls it with the same ``rbm`` (same initial weights), its contiguous shard
    ``X`` of the data (in rank order) and the same options, including a generator with the same
    seed. The result equals :func:`dbn.rbm.train_rbm` on the whole data in one process with the
    same ``batch_size`` (the global mini-batch) and seed, up to float rounding; see the module
    notes. Outside a process group it runs as one process.

    Parameters
    ----------
    rbm : RBM
        The model, trained in place (identically on every process).
    X : Tensor of shape (n_local, n_visible)
        This process's shard, on the model's device.
    n_epochs : int, default=10
    init_visible_bias : bool, default=True
        Set the visible bias from the mean of the whole data (one all-reduce).
    callbacks : sequence of callables
        ``callback(rbm, record)`` after every epoch, on every process; returning ``True``
        stops training after that epoch (:mod:`dbn.engine`; return the same on every process).
    **trainer_options
        Options of :class:`dbn.rbm.CDTrainer` (``learning_rate``, ``batch_size``, ``k``,
        ``persistent``, ``momentum``, ``generator``...).

    Returns
    -------
    list of dict
        One record per epoch, with the monitors over the whole data.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = (torch.rand(200, 12, generator=g) < 0.3).float()
    >>> rbm = RBM(12, 6, generator=g)
    >>> len(train_rbm_distributed(rbm, X, n_epochs=2, batch_size=20, learning_rate=0.05, generator=g))
    2
    """
    n_epochs = check_int("n_epochs", n_epochs, low=0)
    for name in ("all_reduce", "rank", "world_size"):
        if name in trainer_options:
            raise ValueError(f"The {name!r} option is set by train_rbm_distributed; leave it out.")
    rank, size = world()
    trainer = CDTrainer(rbm, all_reduce=all_reduce_sum, rank=rank, world_size=size, **trainer_options)
    X = check_data_tensor(X, n_features=rbm.n_visible, unit_interval=trainer.units.unit_interval)
    X = X.to(device=rbm.weight.device, dtype=rbm.weight.dtype)
    shard = _make_shard(X)
    if init_visible_bias:
        rbm.init_visible_bias_(X, shard=shard)
    trainer.fit(X, n_epochs, callbacks=callbacks, shard=shard)
    return trainer.history


def pretrain_stack_distributed(
    X: torch.Tensor,
    hidden_layer_sizes: Sequence[int],
    *,
    visible: Literal["bernoulli", "gaussian"] = "bernoulli",
    n_epochs: int | Sequence[int] = 10,
    propagate: Literal["probs", "samples"] = "probs",
    generator: torch.Generator | None = None,
    callbacks: Sequence[Callable[[int, nn.Module, dict], object]] = (),
    **layer_options,
) -> LayerStack:
    """Greedy RBM pretraining (a DBN), data-parallel; every process gets the same stack.

    The data-parallel twin of :func:`dbn.stack.pretrain_stack` with ``pretrain="rbm"``: each
    process passes its contiguous shard ``X`` and a generator with the same seed, and the
    stack equals the one-process result with the same global ``batch_size`` up to float
    rounding. Options as in :func:`dbn.stack.pretrain_stack` (one value or one per layer).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = (torch.rand(120, 10, generator=g) < 0.3).float()
    >>> pretrain_stack_distributed(X, (8, 4), n_epochs=1, batch_size=20, generator=g).sizes
    (10, 8, 4)
    """
    propagate = check_choice("propagate", propagate, PROPAGATES)
    sizes = [check_int("hidden_layer_sizes", s, low=1) for s in hidden_layer_sizes]
    if not sizes:
        raise ValueError("The 'hidden_layer_sizes' parameter must name at least one layer.")
    for name in ("all_reduce", "rank", "world_size"):
        if name in layer_options:
            raise ValueError(f"The {name!r} option is set by pretrain_stack_distributed; leave it out.")
    X = check_data_tensor(X, unit_interval=visible == "bernoulli")
    n_layers = len(sizes)
    epochs = [check_int("n_epochs", e, low=0) for e in per_layer("n_epochs", n_epochs, n_layers)]
    options = {name: per_layer(name, value, n_layers) for name, value in layer_options.items()}
    generator = generator if generator is not None else make_generator(None, X.device)
    return _pretrain_layers(
        X,
        sizes,
        pretrain="rbm",
        visible=visible,
        epochs=epochs,
        options=options,
        corruptions=[None] * n_layers,
        levels=[None] * n_layers,
        propagate=propagate,
        generator=generator,
        callbacks=callbacks,
        shard=_make_shard(X),
    )


def finetune_distributed(net: nn.Module, X: torch.Tensor, y: torch.Tensor, **fit_options):
    """Fine-tune ``net`` with ``DistributedDataParallel`` on this process's shard ``(X, y)``.

    Every process passes the same initial ``net``, its contiguous shard and the same options
    (a generator with the same seed). Calls :func:`dbn.training.fit_network` with a
    :class:`dbn._shard.Shard`; the result equals one process with the same global
    ``batch_size`` up to float rounding (without dropout). Returns the
    :class:`dbn.training.History`; ``net`` holds the trained weights.

    Examples
    --------
    >>> from dbn.training import build_mlp
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(60, 3, generator=g); y = (X[:, 0] > 0).long()
    >>> len(finetune_distributed(build_mlp(3, (4,), 2, generator=g), X, y, max_iter=2, generator=g))
    2
    """
    from .training import fit_network

    if "shard" in fit_options:
        raise ValueError("The 'shard' option is set by finetune_distributed; leave it out.")
    shard = _make_shard(X)
    model = net
    if shard.world_size > 1:
        device = next(net.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)
    return fit_network(model, X, y, shard=shard, **fit_options)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _load_features(dataset: str):
    from .datasets import load_dataset

    if dataset.endswith(".npy"):
        import numpy as np

        return np.load(dataset, mmap_mode="r")  # each process reads only its shard's rows
    return load_dataset(dataset).X_train


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``torchrun --nproc-per-node P -m dbn.distributed pretrain ...``.

    ``pretrain`` trains a stack of RBMs data-parallel on the training part of ``--dataset``
    (``digits``, ``mnist``, a ``.pkl.gz`` / ``.npz`` file as :func:`dbn.datasets.load_dataset`
    reads it, or a ``.npy`` array of features), prints each epoch's time and monitors from rank 0,
    and saves the stack with :func:`dbn.io.save` from rank 0. Runs as one process without
    ``torchrun``.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "s.dbn")
    >>> main(["pretrain", "--dataset", "digits", "--sizes", "8", "--epochs", "1", "--out", out, "--quiet"])
    0
    """
    parser = argparse.ArgumentParser(prog="python -m dbn.distributed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_pretrain_arguments(sub.add_parser("pretrain", help="data-parallel greedy RBM pretraining"))
    return run_pretrain(parser.parse_args(argv))


def add_pretrain_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of the ``pretrain`` command (shared by ``dbn pretrain`` and ``-m dbn.distributed``)."""
    p.add_argument("--dataset", required=True, help="digits, mnist, or a path (.csv, .npz, .pkl.gz, .npy)")
    p.add_argument("--sizes", type=int, nargs="+", required=True, help="hidden layer sizes")
    p.add_argument("--epochs", type=int, default=5, help="epochs per layer")
    p.add_argument("--batch-size", type=int, default=100, help="global mini-batch size")
    p.add_argument("--learning-rate", type=float, default=0.1, help="CD learning rate")
    p.add_argument("--momentum", type=float, default=0.5, help="momentum of the CD updates")
    p.add_argument("--weight-decay", type=float, default=2e-4, help="L2 weight decay")
    p.add_argument("--k", type=int, default=1, help="Gibbs steps per CD update (CD-k)")
    p.add_argument("--persistent", action="store_true", help="persistent chains (PCD) instead of CD")
    p.add_argument(
        "--max-samples", type=int, default=None, help="use the first N training samples (default: all of them)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed shared by every process")
    p.add_argument("--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK per process) or auto")
    p.add_argument(
        "--backend",
        choices=("gloo", "nccl"),
        default=None,
        help="torch.distributed backend (default: nccl on CUDA, gloo on the CPU)",
    )
    p.add_argument("--out", default=None, help="where rank 0 saves the stack (dbn.io.save; default: not saved)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p


def run_pretrain(args: argparse.Namespace) -> int:
    """Run the ``pretrain`` command on parsed arguments (one process, or one rank under torchrun)."""

    device = resolve_device(args.device)
    rank, size = init_distributed(args.backend if args.backend else ("nccl" if device.type == "cuda" else "gloo"))
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    features = _load_features(args.dataset)
    n_total = features.shape[0] if args.max_samples is None else min(args.max_samples, features.shape[0])
    lo, hi = shard_bounds(n_total, rank, size)
    X = torch.as_tensor(features[lo:hi].astype("float32"), device=device)
    generator = make_generator(args.seed, device)

    def report(i: int, layer: nn.Module, record: dict) -> None:
        if rank == 0 and not args.quiet:
            print(
                f"layer {i + 1} epoch {record['epoch']:3d}  time {record['time']:.3f}s  "
                f"recon {record['reconstruction_error']:.4f}",
                flush=True,
            )

    start = time.perf_counter()
    stack = pretrain_stack_distributed(
        X,
        args.sizes,
        n_epochs=args.epochs,
        generator=generator,
        callbacks=[report],
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        k=args.k,
        persistent=args.persistent,
    )
    if rank == 0:
        if not args.quiet:
            print(f"{size} process(es), {n_total} samples, total {time.perf_counter() - start:.2f}s", flush=True)
        if args.out:
            from .io import save

            save(stack.to("cpu"), args.out)
    if size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover - run through torchrun
    sys.exit(main())
