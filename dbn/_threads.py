"""The thread policy of every fit and transform: small products on one thread (no collapse on
a busy machine), an explicit override, and torch's global setting restored afterwards.

Why
    PyTorch runs each operator on ``torch.get_num_threads()`` OpenMP threads, which meet at a
    barrier at the end of every parallel operator. A mini-batch step is a few dozen small
    operators, so on a machine where another job holds a core one of our threads waits for a
    scheduler time slice at nearly every barrier: on the project's 2-core machine beside one
    ``python -c "while True: pass"`` a digits-sized fit ran 10-40 times slower on two threads
    than on one. And products too small to split gain nothing from a second thread anyway.

The policy (:func:`policy_threads`)
    * inside :class:`threads` (the user's explicit choice) the given count, as it is;
    * a mini-batch whose products are smaller than :data:`MIN_PARALLEL_WORK`
      (``batch_size * sum of the weight matrices' sizes``, about half the flops of one
      forward-and-backward pass) runs on one thread;
    * otherwise torch's current count.

    The count depends on the problem's size only, never on the machine's load: some torch
    operators (the reductions of back-propagation, for instance) round differently on one
    thread than on two, so a load-dependent count would make a fit's result depend on what else
    the machine was doing. On a busy machine use ``dbn.threads(1)`` for large problems too.

    Measured on the project's machine (2-core AMD EPYC under KVM, torch 2.13, one CD-1 step of
    :class:`dbn.rbm.CDTrainer`, best of 2-3, ``benchmarks/bench_speed.py --parts crossover``),
    on 30 Nov 2026 while other jobs kept the load average at 6-15: two threads were *slower*
    than one at every size, 0.05x at ``batch * n_visible * n_hidden`` = 6.4e4 (digits), 0.74x
    at 6.4e5, 0.05-0.25x from 6.6e6 to 1e8 (MNIST-sized); which is why the cap by idle cores
    exists. A quiet machine could not be had for the crossover itself, so 5e5 is a choice, not
    a measurement: it keeps digits-sized steps (6.4e4) on one thread and leaves MNIST-sized
    ones (3.9e7, whose quiet-machine figures in the README were measured on two threads) on
    torch's count. Re-run the crossover part on a quiet machine to refine it.

    An earlier version also capped the count by the idle cores read from ``/proc/loadavg``;
    it was dropped because it made results depend on the machine's load (see above).

Where
    :func:`dbn.engine.fit_loop` applies it once per fit (so every trainer uses it: CD/PCD,
    the denoising autoencoder, fine-tuning, sharded or not); the estimators apply it around
    their transform and predict paths; the harness and the CLI run through them (the CLI's
    ``--threads`` is an explicit :class:`threads` override). Nothing runs per mini-batch, and
    torch's global setting is put back when the fit ends, also after an exception.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ._validation import check_int

__all__ = ["threads", "policy_threads", "fit_threads", "batch_work", "MIN_PARALLEL_WORK"]

#: ``batch_size * (weight sizes)`` below which a mini-batch runs on one thread (see the
#: module docstring for the measurement).
MIN_PARALLEL_WORK = 500_000

_OVERRIDE: contextvars.ContextVar[int | None] = contextvars.ContextVar("dbn_threads", default=None)


class threads(contextlib.ContextDecorator):
    """Run the enclosed fits on exactly ``n`` threads, as ``threadpoolctl.threadpool_limits``.

    Inside the block torch uses ``n`` intra-op threads and the package's automatic policy
    (one thread for small products) is off: the count is what you
    asked for. The previous ``torch.get_num_threads()`` is restored on exit, also after an
    exception. ``n=None`` keeps torch's current count but still turns the automatic policy off.
    Works as a decorator too.

    Parameters
    ----------
    n : int or None
        Number of threads (>= 1).

    Examples
    --------
    >>> import torch, dbn
    >>> before = torch.get_num_threads()
    >>> with dbn.threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """

    def __init__(self, n: int | None) -> None:
        self.n = None if n is None else check_int("n", n, low=1)
        self._saved: list[tuple[int, contextvars.Token]] = []

    def __enter__(self) -> threads:
        previous = torch.get_num_threads()
        n = previous if self.n is None else self.n
        if n != previous:
            torch.set_num_threads(n)
        self._saved.append((previous, _OVERRIDE.set(n)))
        return self

    def __exit__(self, *exc) -> None:
        previous, token = self._saved.pop()
        _OVERRIDE.reset(token)
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def batch_work(batch_size: int, modules: nn.Module | Iterable[torch.Tensor]) -> int:
    """``batch_size`` times the total size of the matrices (2-D parameters) of ``modules``.

    Examples
    --------
    >>> batch_work(10, nn.Linear(64, 100))
    64000
    """
    params = modules.parameters() if isinstance(modules, nn.Module) else modules
    return int(batch_size) * sum(p.numel() for p in params if p.dim() == 2)


def policy_threads(work: int | None, device: torch.device | str | None = None) -> int:
    """Number of threads for products of ``work`` per mini-batch (see the module docstring).

    Parameters
    ----------
    work : int or None
        ``batch_size * sum of the weight matrices' sizes`` (:func:`batch_work`); None: no
        size rule (torch's count, or the override).
    device : torch.device, optional
        Non-CPU devices keep torch's count (their host threads only launch kernels).

    Examples
    --------
    >>> policy_threads(1000)
    1
    >>> with threads(2):
    ...     policy_threads(1000)
    2
    """
    override = _OVERRIDE.get()
    current = torch.get_num_threads()
    if override is not None:
        return override
    if device is not None and torch.device(device).type != "cpu":
        return current
    if current == 1 or (work is not None and work < MIN_PARALLEL_WORK):
        return 1
    return current


@contextlib.contextmanager
def fit_threads(work: int | None, device: torch.device | str | None = None) -> Iterator[int]:
    """Run the block on :func:`policy_threads` threads and restore torch's count afterwards.

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> with fit_threads(10) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
    >>> torch.get_num_threads() == before
    True
    """
    previous = torch.get_num_threads()
    n = policy_threads(work, device)
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
