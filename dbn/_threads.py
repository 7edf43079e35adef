"""The thread policy of every fit and transform: small products on one thread (no collapse on
a busy machine), an explicit override, an opt-in cap by the idle cores, and torch's global
setting restored afterwards.

Why
    PyTorch runs each operator on ``torch.get_num_threads()`` OpenMP threads, which meet at a
    barrier at the end of every parallel operator. A mini-batch step is a few dozen small
    operators, so on a machine where another job holds a core one of our threads waits for a
    scheduler time slice at nearly every barrier: on the project's 2-core machine beside one
    ``python -c "while True: pass"`` a digits-sized fit ran 10-40 times slower on two threads
    than on one. And products too small to split gain nothing from a second thread anyway.

The policy (:func:`policy_threads`)
    * inside :class:`threads` with a count (the user's explicit choice) that count, as it is;
    * a mini-batch whose products are smaller than the trainer's crossover
      (``batch_size * sum of the weight matrices' sizes``, about half the flops of one
      forward-and-backward pass, below :data:`MIN_PARALLEL_WORK` for CD/PCD and
      :data:`MIN_PARALLEL_WORK_BACKPROP` for fine-tuning and the denoising autoencoder) runs
      on one thread;
    * otherwise torch's current count, capped before every epoch by the cores no other
      process is running on (:func:`idle_cores`): inside ``threads("auto")`` always, and by
      default where the fit's probe shows the smaller count gives the same result (below).

    By default the count depends on the problem's size, and on the machine's load only where
    following the load cannot change the result: some torch operators round differently on
    one thread than on two (the weight gradient of a 10-unit output layer, whose small
    products MKL splits along the batch; ``torch.sigmoid`` where a thread's chunk of the
    tensor does not end on a multiple of the vector step; products of batches of 5-11 rows;
    CD steps of 784 x 10 RBMs: measured on this project's machine), so a load-dependent count
    could make a fit's result depend on what else the machine was doing. A trainer may hand
    the policy a *probe* (a function that runs its first mini-batch step and monitors on a
    scratch copy and returns the resulting tensors): the CD/PCD trainer, the denoising
    autoencoder and ``fit_network`` do. Fine-tuning runs a plain ``nn.Sequential``'s sigmoid
    layers, its narrow output layer and batches of fewer than 16 rows in forms whose result
    does not depend on the count (:mod:`dbn._invariant`), the autoencoder its sigmoid, and
    the CD step batches of fewer than 16 rows on one thread, so that the probes can agree.
    When, before an epoch, other jobs hold some of the cores, the policy runs the probe on the
    fit's count and on the count the idle cores allow, and uses the smaller count only if the
    two results are equal bit for bit
    (verdicts are kept for the rest of the fit; a quiet machine never runs the probe). Fits
    without a probe, or whose probe differs, keep their count. ``threads("auto")`` follows the
    load always, for users on a busy machine who prefer speed to bit-reproducibility.

    The crossovers, measured on the project's machine (2-core AMD EPYC with AVX-512 under KVM,
    torch 2.13, quiet, best of 3, ``benchmarks/bench_speed.py --parts crossover``, 30 Nov
    2026): two threads' speed-up per CD-1 step was 0.83x at ``batch * n_visible * n_hidden`` =
    6.4e4 (scikit-learn's gallery protocol), 0.99-1.01x at 6.4e5, 1.12-1.14x at 1.3e6, 1.44x at
    6.6e6, 1.50x at 1.6e7 and 1.78-1.81x at MNIST's 3.9e7: :data:`MIN_PARALLEL_WORK` = 1e6.
    Per epoch of ``fit_network`` it was 0.89x at 1.9e5, 0.91x at 8.5e5, 1.02-1.06x at 1.7e6,
    0.97-0.99x at 2.4e6, 1.37-1.39x at 2.7e7 and 1.65x at 1.7e8 (784-500-500-2000-10), with the
    denoising autoencoder alike (1.03-1.04x at 2e6, 1.45-1.49x at 2e7): a back-propagation step
    runs several small operators per product, so :data:`MIN_PARALLEL_WORK_BACKPROP` = 5e6. Every
    net of the README's digits study (64-128-...-10, batch 20) lies below it. Beside one busy
    process two threads lost to one at every size (0.42-0.78x per CD step).

Where
    :func:`dbn.engine.fit_loop` applies it once per fit and refreshes it before every epoch
    inside ``threads("auto")`` (so every trainer uses it: CD/PCD, the denoising autoencoder,
    fine-tuning, sharded or not); the estimators apply it around their transform and predict
    paths; the harness and the CLI run through them (the CLI's ``--threads N|auto`` is a
    :class:`threads` override). Nothing runs per mini-batch, and torch's global setting is put
    back when the fit ends, also after an exception.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from ._validation import check_int

__all__ = [
    "threads",
    "policy_threads",
    "fit_threads",
    "refresh_threads",
    "idle_cores",
    "Probe",
    "batch_work",
    "MIN_PARALLEL_WORK",
    "MIN_PARALLEL_WORK_BACKPROP",
]

#: ``batch_size * (weight sizes)`` below which a CD/PCD mini-batch runs on one thread (see the
#: module docstring for the measurement).
MIN_PARALLEL_WORK = 1_000_000

#: The same for the back-propagation trainers (fine-tuning and the denoising autoencoder),
#: whose steps run several times as many small operators per product.
MIN_PARALLEL_WORK_BACKPROP = 5_000_000

#: The user's choice: None (the automatic size rule), a count, or "auto" (the size rule capped
#: by the idle cores).
_Choice = int | Literal["auto"] | None
_OVERRIDE: contextvars.ContextVar[tuple[_Choice]] = contextvars.ContextVar("dbn_threads", default=(None,))
#: A fit's probe: runs a scratch copy of one step (and its monitors) and returns the tensors
#: the step produced; equal tensors on two thread counts mean the count cannot change the fit.
Probe = Callable[[], Sequence[torch.Tensor]]
_PROC_LOADAVG = "/proc/loadavg"
_PROC_SELF_TASKS = "/proc/self/task"


def idle_cores(samples: int = 5, interval: float = 0.001) -> int:
    """Cores this process may use minus the tasks of *other* processes running now.

    Reads the count of runnable tasks from ``/proc/loadavg`` and subtracts this process's own
    running threads (``/proc/self/task/*/stat``, so that our own worker threads, which may
    still be spinning after a parallel region, do not count as a competing job). Takes the
    most idle of ``samples`` readings ``interval`` seconds apart: a single reading sees a
    process that runs for an instant (a shell command, a monitor) in about 1 to 4 in 100 reads
    on the project's machine, and would cost a whole epoch a core; a CPU-bound job is seen in
    every reading. Where those files do not exist, all the usable cores. At least 1.

    Parameters
    ----------
    samples : int, default=5
        Readings to take.
    interval : float, default=0.001
        Seconds between readings.

    Examples
    --------
    >>> 1 <= idle_cores() <= (os.cpu_count() or 1)
    True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    best = 1
    for i in range(max(int(samples), 1)):
        if i:
            time.sleep(interval)
        idle = _idle_once(cores)
        if idle is None:
            return cores
        best = max(best, idle)
        if best >= cores:
            break
    return best


def _idle_once(cores: int) -> int | None:
    """One reading of :func:`idle_cores`; None where ``/proc`` cannot be read."""
    try:
        with open(_PROC_LOADAVG) as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir(_PROC_SELF_TASKS):
            try:
                with open(os.path.join(_PROC_SELF_TASKS, task, "stat")) as f:
                    own += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):  # the thread ended meanwhile
                continue
    except (OSError, ValueError, IndexError):
        return None
    return max(1, min(cores, cores - (running - max(own, 1))))


class threads(contextlib.ContextDecorator):
    """Run the enclosed fits on exactly ``n`` threads, as ``threadpoolctl.threadpool_limits``.

    Inside the block torch uses ``n`` intra-op threads and the package's automatic policy
    (one thread for small products) is off: the count is what you asked for. The previous
    ``torch.get_num_threads()`` is restored on exit, also after an exception. ``n=None`` keeps
    torch's current count but still turns the automatic policy off. Works as a decorator too.

    ``n="auto"`` keeps the automatic size rule and caps each fit's count, at every epoch, by
    the cores no other job is running on (:func:`idle_cores`): the choice for a busy machine,
    where threads that wait for each other on cores another job holds make a fit several times
    slower. The price is reproducibility: some torch operators round differently on one thread
    than on two, so a fit's result may then depend on what else the machine was doing. (Without
    an override, a fit follows the load only where its probe shows that the result stays the
    same bit for bit: see the module's documentation.)

    Parameters
    ----------
    n : int, "auto" or None
        Number of threads (>= 1), "auto", or None.

    Examples
    --------
    >>> import torch, dbn
    >>> before = torch.get_num_threads()
    >>> with dbn.threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    >>> with dbn.threads("auto"):
    ...     policy_threads(10**9) <= before
    True
    """

    def __init__(self, n: int | Literal["auto"] | None) -> None:
        if isinstance(n, str):
            if n != "auto":
                raise ValueError(f"The 'n' parameter must be an int >= 1, 'auto' or None. Got {n!r}.")
            self.n: _Choice = "auto"
        else:
            self.n = None if n is None else check_int("n", n, low=1)
        self._saved: list[tuple[int, contextvars.Token]] = []

    def __enter__(self) -> threads:
        previous = torch.get_num_threads()
        if self.n == "auto":
            choice: _Choice = "auto"
        else:
            choice = previous if self.n is None else self.n
            if choice != previous:
                torch.set_num_threads(choice)
        self._saved.append((previous, _OVERRIDE.set((choice,))))
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


def _size_rule(work: int | None, min_work: int, ceiling: int) -> int:
    return 1 if ceiling == 1 or (work is not None and work < min_work) else ceiling


def policy_threads(
    work: int | None, device: torch.device | str | None = None, min_work: int = MIN_PARALLEL_WORK
) -> int:
    """Number of threads for products of ``work`` per mini-batch (see the module docstring).

    Parameters
    ----------
    work : int or None
        ``batch_size * sum of the weight matrices' sizes`` (:func:`batch_work`); None: no
        size rule (torch's count, or the override).
    device : torch.device, optional
        Non-CPU devices keep torch's count (their host threads only launch kernels).
    min_work : int, default=MIN_PARALLEL_WORK
        The trainer's crossover: less work per mini-batch runs on one thread
        (:data:`MIN_PARALLEL_WORK` for CD, :data:`MIN_PARALLEL_WORK_BACKPROP` for the
        back-propagation trainers).

    Examples
    --------
    >>> policy_threads(1000)
    1
    >>> with threads(2):
    ...     policy_threads(1000)
    2
    """
    (override,) = _OVERRIDE.get()
    current = torch.get_num_threads()
    if isinstance(override, int):
        return override
    if device is not None and torch.device(device).type != "cpu":
        return current
    n = _size_rule(work, min_work, current)
    if override == "auto" and n > 1:
        n = min(n, idle_cores())
    return n


def refresh_threads(
    work: int | None, device: torch.device | str | None = None, min_work: int = MIN_PARALLEL_WORK
) -> None:
    """Inside a :func:`fit_threads` block, follow the machine's load where the policy allows.

    Inside ``dbn.threads("auto")`` sets the count to the size rule capped by
    :func:`idle_cores`, below the count torch had when the fit started. By default (no
    override) does the same only for a fit with a probe, and only when the probe gives the
    same tensors on the smaller count as on the fit's own (:class:`_LoadFollower`); otherwise
    the fit's count stays. Inside ``dbn.threads(n)`` it does nothing. The epoch loop calls it
    before every epoch, so that a long fit follows the load.

    Examples
    --------
    >>> with threads("auto"), fit_threads(10**9) as n:
    ...     refresh_threads(10**9)
    ...     1 <= torch.get_num_threads() <= max(n, 1)
    True
    """
    (override,) = _OVERRIDE.get()
    ceiling = _FIT_CEILING.get()
    if isinstance(override, int) or ceiling is None:
        return
    if device is not None and torch.device(device).type != "cpu":
        return
    if override == "auto":
        n = _size_rule(work, min_work, ceiling)
        if n > 1:
            n = min(n, idle_cores())
    else:
        follower = _FOLLOWER.get()
        if follower is None:
            return
        n = follower.count
        if n > 1:
            idle = min(n, idle_cores())
            if idle < n and follower.allows(idle):
                n = idle
    if n != torch.get_num_threads():
        torch.set_num_threads(n)


class _LoadFollower:
    """The thread counts a fit may use without changing its result, found by its probe.

    ``count`` is the fit's own count (the size rule's); :meth:`allows` runs the probe on
    ``count`` threads (once) and on the asked count (once per count) and says whether the two
    results are equal bit for bit.
    """

    def __init__(self, probe: Probe, count: int) -> None:
        self.probe, self.count = probe, count
        self.reference: list[torch.Tensor] | None = None
        # a probe may carry a dict in which verdicts outlive the fit (keyed by both counts)
        self.verdicts: dict[tuple[int, int], bool] = getattr(probe, "verdicts", {})

    def _run(self, n: int) -> list[torch.Tensor]:
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return [t.detach().clone() for t in self.probe()]
        finally:
            torch.set_num_threads(previous)

    def allows(self, n: int) -> bool:
        if n == self.count:
            return True
        key = (self.count, n)
        if key not in self.verdicts:
            if self.reference is None:
                self.reference = self._run(self.count)
            result = self._run(n)
            self.verdicts[key] = len(result) == len(self.reference) and all(
                a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
                for a, b in zip(result, self.reference, strict=True)
            )
        return self.verdicts[key]


_FIT_CEILING: contextvars.ContextVar[int | None] = contextvars.ContextVar("dbn_fit_ceiling", default=None)
_FOLLOWER: contextvars.ContextVar[_LoadFollower | None] = contextvars.ContextVar("dbn_follower", default=None)


@contextlib.contextmanager
def fit_threads(
    work: int | None,
    device: torch.device | str | None = None,
    min_work: int = MIN_PARALLEL_WORK,
    probe: Probe | None = None,
) -> Iterator[int]:
    """Run the block on :func:`policy_threads` threads and restore torch's count afterwards.

    ``probe`` (optional): the fit's :data:`Probe`; with it, and without an override, the
    block's :func:`refresh_threads` calls may lower the count where other jobs hold cores
    and the probe shows that the lower count gives the same result.

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
    n = policy_threads(work, device, min_work)
    if n != previous:
        torch.set_num_threads(n)
    (override,) = _OVERRIDE.get()
    cpu = device is None or torch.device(device).type == "cpu"
    follower = _LoadFollower(probe, n) if probe is not None and override is None and cpu and n > 1 else None
    token = _FIT_CEILING.set(previous)
    follower_token = _FOLLOWER.set(follower)
    try:
        yield n
    finally:
        _FOLLOWER.reset(follower_token)
        _FIT_CEILING.reset(token)
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
