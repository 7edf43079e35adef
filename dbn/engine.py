"""The epoch engine that every trainer runs on.

:func:`fit_loop` is the one loop over epochs (skorch's ``fit_loop``): it asks the trainer for
one epoch's record (a dict), hands it to the plugged-in pieces and the user's callbacks, and
stops when one of them asks. The trainers supply only their epoch: the RBM's CD/PCD pass
(:class:`dbn.rbm.CDTrainer`), the denoising autoencoder's pass
(:func:`dbn.autoencoder.train_autoencoder`) and the supervised pass
(:func:`dbn.training.fit_network`), sharded or not (:mod:`dbn.distributed`).

The callback contract
    A callback is called as ``callback(model, record)`` after every epoch, once the record is
    complete (:func:`dbn.stack.pretrain_stack` calls ``callback(layer_index, layer, record)``).
    It may add keys to ``record``. Every callback is called; if any returns ``True`` (the
    object ``True``: ``is True``, not merely a truthy value) training stops after that epoch.
    Any other return value, ``None`` included, lets training go on.

The pieces
    Small objects with hooks, run in the order given after the callbacks (a piece that checks
    the record, such as :class:`DivergenceCheck`, runs before them):

    * :class:`DivergenceCheck` raises :class:`dbn.DivergenceError` on a non-finite loss or
      parameter, and on runaway training (the loss or the weights grown by orders of magnitude,
      every hidden unit saturated);
    * :class:`EarlyStopping` follows a monitored record key, remembers the best epoch (and
      its weights) and stops after ``patience`` epochs without improvement;
    * :class:`ProgressBar` (tqdm) and :class:`PrintProgress` (one line per epoch) report;
    * :class:`CheckpointEvery` hands the training state to a saver after every epoch;
    * :class:`SchedulerStep` steps a torch learning-rate scheduler after every epoch (fine-tuning)
      and :func:`lr_factor` is the RBM's per-epoch learning-rate schedule.

    A piece implements any of ``start(model)`` (before the first epoch), ``check(model, record)``
    (before the callbacks), ``on_epoch_end(model, record, stop) -> bool | None`` (after them;
    returning ``True`` stops) and ``close()`` (always, at the end).

Mini-batches
    :func:`minibatches` draws one epoch's visiting order on the device (a ``torch.randperm``
    of the samples, of an optional training index, or of the global index space of a
    data-parallel run, keeping this process's rows: :func:`dbn._shard.owned_batches`) and cuts
    it into batches. Everything per batch stays in the trainers' tight inner loops; the engine
    works per epoch, with no host synchronisation of its own.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, NamedTuple, NoReturn

import torch
from torch import nn

from ._shard import Shard, owned_batches
from ._threads import MIN_PARALLEL_WORK, Probe, fit_threads, refresh_threads
from ._validation import DivergenceError, check_finite_parameters

__all__ = [
    "fit_loop",
    "run_callbacks",
    "indexed_callbacks",
    "Piece",
    "DivergenceCheck",
    "EarlyStopping",
    "ProgressBar",
    "PrintProgress",
    "CheckpointEvery",
    "SchedulerStep",
    "lr_factor",
    "Batches",
    "minibatches",
    "take_rows",
    "batch_rows",
    "is_sparse",
    "row_blocks",
    "map_rows",
    "block_rows",
    "select_rows",
    "chunk_rows",
    "sparse_buffer",
    "column_mean",
]

Callback = Callable[[Any, dict], Any]


def run_callbacks(callbacks: Iterable[Callback], model: Any, record: dict) -> bool:
    """Call every callback as ``callback(model, record)``; ``True`` if any returned ``True``.

    Examples
    --------
    >>> run_callbacks([lambda m, r: None, lambda m, r: True], None, {})
    True
    >>> run_callbacks([lambda m, r: 1], None, {})  # truthy is not True
    False
    """
    stop = False
    for callback in callbacks:
        if callback(model, record) is True:
            stop = True
    return stop


def indexed_callbacks(callbacks: Sequence[Callable[[int, Any, dict], Any]], index: int) -> list[Callback]:
    """Adapt ``callback(index, model, record)`` callbacks (the stacks' form) to the engine's
    ``(model, record)`` form, keeping the contract: ``True`` from any of them stops.

    Examples
    --------
    >>> seen = []
    >>> [hook] = indexed_callbacks([lambda i, m, r: seen.append(i)], 2)
    >>> hook(None, {}), seen
    (False, [2])
    """
    if not callbacks:
        return []

    def hook(model: Any, record: dict) -> bool:
        return any([callback(index, model, record) is True for callback in callbacks])

    return [hook]


class Piece:
    """Base class of the pieces plugged into :func:`fit_loop`; every hook is optional.

    Examples
    --------
    >>> Piece().on_epoch_end(None, {}, False) is None
    True
    """

    def start(self, model: Any) -> None:
        """Before the first epoch (e.g. to take reference values)."""

    def check(self, model: Any, record: dict) -> None:
        """Before the callbacks: inspect the record (may raise)."""

    def on_epoch_end(self, model: Any, record: dict, stop: bool) -> bool | None:
        """After the callbacks; ``stop`` says whether training stops after this epoch.
        Return ``True`` to stop."""
        return None

    def close(self) -> None:
        """At the end of training, also after an exception."""


def fit_loop(
    model: Any,
    epochs: Iterable[int],
    run_epoch: Callable[[int], dict],
    *,
    callbacks: Sequence[Callback] = (),
    pieces: Sequence[Piece] = (),
    records: list | None = None,
    work: int | None = None,
    device: torch.device | str | None = None,
    min_work: int = MIN_PARALLEL_WORK,
    probe: Probe | None = None,
) -> list:
    """Run ``run_epoch(epoch)`` for each epoch; the one epoch loop of the package.

    After each epoch the record goes, in this order, to every piece's ``check``, to the
    callbacks (the contract in the module docstring: returning ``True`` stops) and to every
    piece's ``on_epoch_end`` (which sees whether training stops and may stop it too). Every
    piece is closed at the end, also when an epoch raises.

    The whole loop (epochs, callbacks and pieces) runs under the package's thread policy
    (:func:`dbn._threads.fit_threads`): one thread when ``work`` is small, torch's count
    otherwise, exactly ``n`` inside ``dbn.threads(n)``, and inside ``dbn.threads("auto")``
    capped before every epoch by the cores other jobs leave idle (by default too, when a
    ``probe`` shows the capped count gives the same result); torch's thread count is restored
    afterwards, also when an epoch raises.

    Parameters
    ----------
    model : object
        What the callbacks and pieces receive first (the module being trained).
    epochs : iterable of int
        Epoch numbers (from 1 by convention).
    run_epoch : callable
        ``run_epoch(epoch) -> record``: one pass over the data.
    callbacks : sequence of callables, default=()
        ``callback(model, record)``.
    pieces : sequence of Piece, default=()
    records : list, optional
        Where the records are appended (a history that may already hold earlier epochs);
        a new list by default.
    work : int, optional
        Size of one mini-batch's products, ``batch_size * sum of the weight matrices' sizes``
        (:func:`dbn._threads.batch_work`), for the thread policy; None: no size rule.
    device : torch.device, optional
        The model's device (the policy leaves the thread count alone off the CPU).
    min_work : int, default=MIN_PARALLEL_WORK
        The trainer's crossover for the thread policy (less ``work`` runs on one thread).
    probe : callable, optional
        ``probe() -> tensors``: one step (and monitors) on a scratch copy of the trainer; the
        thread policy may follow the machine's load when its results on two thread counts are
        equal bit for bit (:func:`dbn._threads.fit_threads`). It must not touch the trainer.

    Returns
    -------
    list
        ``records``, with this call's records appended.

    Examples
    --------
    >>> fit_loop(None, range(1, 6), lambda e: {"epoch": e}, callbacks=[lambda m, r: r["epoch"] == 2])
    [{'epoch': 1}, {'epoch': 2}]
    """
    records = [] if records is None else records
    with fit_threads(work, device, min_work, probe):
        refresh = functools.partial(refresh_threads, work, device, min_work)
        _run_epochs(model, epochs, run_epoch, callbacks, pieces, records, refresh)
    return records


def _run_epochs(
    model: Any,
    epochs: Iterable[int],
    run_epoch: Callable[[int], dict],
    callbacks: Sequence[Callback],
    pieces: Sequence[Piece],
    records: list,
    before_epoch: Callable[[], None],
) -> None:
    try:
        for piece in pieces:
            piece.start(model)
        for epoch in epochs:
            before_epoch()
            record = run_epoch(epoch)
            records.append(record)
            for piece in pieces:
                piece.check(model, record)
            stop = run_callbacks(callbacks, model, record)
            for piece in pieces:
                if piece.on_epoch_end(model, record, stop) is True:
                    stop = True
            if stop:
                break
    finally:
        for piece in pieces:
            piece.close()


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


class DivergenceCheck(Piece):
    """Raise :class:`dbn.DivergenceError` when training runs away, not only on NaN/inf.

    After every epoch the piece checks, in this order:

    1. the parameters and the monitored loss are finite (as before);
    2. *runaway loss*: ``record[growth_key]`` (the loss by default) exceeds
       ``LOSS_GROWTH`` times its first value (floored at ``LOSS_FLOOR``);
    3. *runaway weights*: the root mean square of all the parameters exceeds
       ``WEIGHT_GROWTH`` times its value before the first epoch (floored at ``WEIGHT_FLOOR``,
       so that tiny or all-zero initialisations are not compared with zero);
    4. *saturation*: ``hidden_margin(model)``, the largest distance of a hidden probability
       from 0 or 1 on the monitor subset, is below ``SATURATION_EPS`` (every hidden unit is
       stuck at 0 or 1 for every sample: the features carry no information), when it was not
       so at first (before training, or after the first epoch where that is the first look).

    The references (first loss, initial size) are taken once and kept on the piece, so a
    trainer that keeps its piece across calls (:meth:`dbn.CDTrainer.partial_fit`) compares
    with the first epoch it ever ran. The errors name the learning rate and what to do.

    How the thresholds were chosen: the ratios were logged on normal runs (the default test
    suite; 91 of the 160 runs of the default digits study ``python -m dbn compare --dataset
    digits``; two-epoch runs of ``scripts/mnist_dbn.py --train-size 10000`` and
    ``scripts/mnist_rbm_ais.py --train-size 10000``). Largest weight-RMS growth: 78 (test
    suite, fine-tuning at a high learning rate), 31 (study), 4.2 (MNIST); largest loss growth
    of a run that is not diverging: 1.07 (RBM), 1 (DAE), 324 (study fine-tuning);
    smallest saturation margin: 1e-3 (MNIST RBM, 500 hidden units). The thresholds sit two or
    more orders of magnitude beyond: ``WEIGHT_GROWTH = 1e4``, ``LOSS_GROWTH = 1e5``,
    ``SATURATION_EPS = 1e-6``. The runaway examples of issue 15 (learning rates of 1e6) grow
    the weights 2e6- to 2e9-fold in their first epoch.

    Parameters
    ----------
    loss_key : str or None
        Record key of the monitored loss (``None``: parameters only).
    message : callable, optional
        ``message(record) -> str``, the error for a non-finite loss.
    hint : str
        What to do, appended to the error for a non-finite parameter.
    parameters_first : bool, default=False
        Check the parameters before the loss (the RBM reports the parameters first).
    module : callable, optional
        ``module(model) -> nn.Module`` whose parameters are checked; the model itself by default.
    parameter_message : callable, optional
        ``parameter_message(record, names) -> str``; by default
        :func:`dbn._validation.check_finite_parameters`' message for the first bad parameter.
    growth_key : str or None, optional
        Record key followed for runaway growth; ``loss_key`` by default.
    hidden_margin : callable, optional
        ``hidden_margin(model) -> float or None``: ``max min(p, 1 - p)`` over the hidden
        probabilities of the monitor subset (``None``: not available this epoch).
    learning_rate : float, optional
        Named in the errors; by default ``record["learning_rate"]`` when the record has it.
    what : str, default="Training"
        How the errors start ("RBM training", ...).

    Examples
    --------
    >>> check = DivergenceCheck("loss", lambda r: "diverged", hint="")
    >>> check.check(nn.Linear(2, 2), {"epoch": 1, "loss": 0.5})
    >>> check.check(nn.Linear(2, 2), {"epoch": 1, "loss": float("nan")})
    Traceback (most recent call last):
    ...
    dbn._validation.DivergenceError: diverged
    >>> check.check(nn.Linear(2, 2), {"epoch": 2, "loss": 5e6})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dbn._validation.DivergenceError: Training diverged at epoch 2: loss grew from 0.5 to 5e+06 ...
    """

    #: The loss may grow at most this factor over its first value.
    LOSS_GROWTH = 1e5
    #: First losses below this count as this (a near-zero first loss is no scale).
    LOSS_FLOOR = 1e-2
    #: The parameters' RMS may grow at most this factor over its initial value.
    WEIGHT_GROWTH = 1e4
    #: Initial RMS below this counts as this (zero or tiny initialisations).
    WEIGHT_FLOOR = 1e-2
    #: Every hidden probability within this of 0 or 1 is saturation.
    SATURATION_EPS = 1e-6

    def __init__(
        self,
        loss_key: str | None,
        message: Callable[[dict], str] | None = None,
        *,
        hint: str,
        parameters_first: bool = False,
        module: Callable[[Any], nn.Module] | None = None,
        parameter_message: Callable[[dict, list[str]], str] | None = None,
        growth_key: str | None = None,
        hidden_margin: Callable[[Any], float | None] | None = None,
        learning_rate: float | None = None,
        what: str = "Training",
    ) -> None:
        self.loss_key = loss_key
        self.message = message
        self.hint = hint
        self.parameters_first = parameters_first
        self.module = module
        self.parameter_message = parameter_message
        self.growth_key = loss_key if growth_key is None else growth_key
        self.hidden_margin = hidden_margin
        self.learning_rate = learning_rate
        self.what = what
        self.first_loss: float | None = None
        self.initial_rms: float | None = None
        self.first_margin: float | None = None

    def _module(self, model: Any) -> nn.Module:
        return model if self.module is None else self.module(model)

    def _check_parameters(self, model: Any, record: dict) -> None:
        module = self._module(model)
        if self.parameter_message is None:
            check_finite_parameters(module, where=f"epoch {record['epoch']}", hint=self.hint)
            return
        bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise DivergenceError(self.parameter_message(record, bad))

    def start(self, model: Any) -> None:
        if self.initial_rms is None:
            self.initial_rms = _parameter_rms(self._module(model))
        if self.first_margin is None and self.hidden_margin is not None:
            self.first_margin = self.hidden_margin(model)

    def check(self, model: Any, record: dict) -> None:
        if self.parameters_first:
            self._check_parameters(model, record)
        if self.loss_key is not None and not math.isfinite(record[self.loss_key]):
            if self.message is None:
                self._fail(record, f"{self.loss_key} is {record[self.loss_key]}")
            raise DivergenceError(self.message(record))
        if not self.parameters_first:
            self._check_parameters(model, record)
        self._check_runaway(model, record)

    def _fail(self, record: dict, what: str) -> NoReturn:
        lr = self.learning_rate if self.learning_rate is not None else record.get("learning_rate")
        at = "" if lr is None else f" with learning_rate={lr:g}"
        raise DivergenceError(f"{self.what} diverged at epoch {record['epoch']}: {what}{at}. {self.hint}")

    def _check_runaway(self, model: Any, record: dict) -> None:
        value = None if self.growth_key is None else record.get(self.growth_key)
        if value is not None:
            if self.first_loss is None:
                self.first_loss = float(value)
            reference = max(abs(self.first_loss), self.LOSS_FLOOR)
            if value > self.LOSS_GROWTH * reference:
                self._fail(
                    record,
                    f"{self.growth_key} grew from {self.first_loss:.4g} to {value:.4g} "
                    f"(over {self.LOSS_GROWTH:g} times its first value)",
                )
        rms = _parameter_rms(self._module(model))
        if self.initial_rms is None:
            self.initial_rms = rms
        if rms > self.WEIGHT_GROWTH * max(self.initial_rms, self.WEIGHT_FLOOR):
            self._fail(
                record,
                f"the weights grew from RMS {self.initial_rms:.3g} to {rms:.3g} (over {self.WEIGHT_GROWTH:g}-fold)",
            )
        margin = None if self.hidden_margin is None else self.hidden_margin(model)
        if self.first_margin is None:
            self.first_margin = margin
        # saturated from the start (e.g. unscaled data) is the data's scale, not runaway training
        if margin is not None and self.first_margin is not None and margin < self.SATURATION_EPS <= self.first_margin:
            self._fail(
                record,
                f"every hidden unit is saturated (all hidden probabilities within {margin:.2g} "
                "of 0 or 1 on the monitored samples)",
            )


def _parameter_rms(module: nn.Module) -> float:
    """Root mean square of all the floating-point parameters of ``module`` (in float64)."""
    total, count = None, 0
    for p in module.parameters():
        if p.is_floating_point() and p.numel():
            sq = torch.linalg.vector_norm(p.detach(), dtype=torch.float64).square()
            total = sq if total is None else total + sq
            count += p.numel()
    return 0.0 if total is None else math.sqrt(float(total) / count)


class EarlyStopping(Piece):
    """Follow ``record[monitor]``, remember the best epoch, stop without improvement.

    The best value is the lowest (``minimize=True``) seen so far; an epoch that improves on it
    by more than ``tol`` resets the patience counter. With ``stop=True`` training stops once
    ``patience`` epochs in a row did not, and :meth:`restore` puts back the weights of the best
    epoch (a deep copy of the state dict taken when it was reached). With ``stop=False`` it
    only tracks ``best_epoch``.

    Parameters
    ----------
    monitor : str
        Record key.
    minimize : bool, default=True
    patience : int, default=10
    tol : float, default=1e-4
    stop : bool, default=True
    on_best : callable, optional
        ``on_best(epoch)`` when a new best is reached (e.g. to set ``History.best_epoch``).
    tie_break : str, optional
        A second record key, always minimised, that decides between epochs of equal
        ``monitor`` (e.g. the validation loss behind the validation accuracy): an epoch that
        equals the best ``monitor`` value and lowers ``tie_break`` becomes the best, and by
        more than ``tol`` it resets the patience too, so that training goes on through a plateau
        of the error while the loss still falls.

    Examples
    --------
    >>> net = nn.Linear(1, 1)
    >>> es = EarlyStopping("loss", patience=2)
    >>> losses = [3.0, 1.0, 2.0, 2.0, 0.5]
    >>> fit_loop(net, range(1, 6), lambda e: {"epoch": e, "loss": losses[e - 1]}, pieces=[es])[-1]
    {'epoch': 4, 'loss': 2.0}
    >>> es.best_epoch
    2
    """

    def __init__(
        self,
        monitor: str,
        *,
        minimize: bool = True,
        patience: int = 10,
        tol: float = 1e-4,
        stop: bool = True,
        on_best: Callable[[int], None] | None = None,
        tie_break: str | None = None,
    ) -> None:
        self.monitor = monitor
        self.tie_break = tie_break
        self.best_tie = math.inf
        self.sign = 1.0 if minimize else -1.0
        self.patience = patience
        self.tol = tol
        self.stop = stop
        self.on_best = on_best
        self.best_value = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_no_change = 0

    def on_epoch_end(self, model: nn.Module, record: dict, stop: bool) -> bool:
        value = self.sign * record[self.monitor]
        tie = math.inf if self.tie_break is None or record.get(self.tie_break) is None else record[self.tie_break]
        ties = value == self.best_value
        if value < self.best_value - self.tol or (ties and tie < self.best_tie - self.tol):
            self.epochs_no_change = 0
        else:
            self.epochs_no_change += 1
        if value < self.best_value or (ties and tie < self.best_tie):
            self.best_value, self.best_tie = value, tie
            self.best_epoch = record["epoch"]
            if self.on_best is not None:
                self.on_best(record["epoch"])
            if self.stop:
                self.best_state = copy.deepcopy(model.state_dict())
        return self.stop and self.epochs_no_change >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (nothing without ``stop`` or a best)."""
        if self.stop and self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state(self) -> dict:
        """What a checkpoint keeps: best value and weights, patience counter."""
        return {
            "best_value": self.best_value,
            "best_state": self.best_state,
            "epochs_no_change": self.epochs_no_change,
            "best_tie": self.best_tie,
        }

    def load_state(
        self, best_value: float, best_state: dict | None, epochs_no_change: int, best_tie: float = math.inf
    ) -> None:
        """Restore what :meth:`state` returned."""
        self.best_value, self.best_state, self.epochs_no_change = best_value, best_state, epochs_no_change
        self.best_tie = best_tie


class ProgressBar(Piece):
    """A tqdm bar over epochs, showing the record's numbers (``disable`` for none at all).

    Parameters
    ----------
    total : int
    description : str
    skip : tuple of str, default=("epoch",)
        Record keys not shown.
    refresh : bool, default=True
        Redraw when the numbers change (``False``: at the next update).
    fmt : str or None, default=None
        Format of the numbers (``None`` passes them to tqdm as they are).
    leave : bool, default=True
    disable : bool, default=False
    floats_only : bool, default=False
        Show only the float entries.

    Examples
    --------
    >>> bar = ProgressBar(2, "demo", disable=True)
    >>> bar.on_epoch_end(None, {"epoch": 1, "loss": 0.5}, False); bar.close()
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        skip: tuple[str, ...] = ("epoch",),
        refresh: bool = True,
        fmt: str | None = None,
        leave: bool = True,
        disable: bool = False,
        floats_only: bool = False,
    ) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=description, unit="epoch", leave=leave, disable=disable)
        self.skip, self.refresh, self.fmt, self.disable, self.floats_only = skip, refresh, fmt, disable, floats_only

    def on_epoch_end(self, model: Any, record: dict, stop: bool) -> None:
        self.bar.update(1)
        if not self.disable:
            shown = {
                k: (v if self.fmt is None else format(v, self.fmt))
                for k, v in record.items()
                if k not in self.skip and (not self.floats_only or isinstance(v, float))
            }
            self.bar.set_postfix(shown, refresh=self.refresh)

    def close(self) -> None:
        self.bar.close()


class PrintProgress(Piece):
    """Print one line per epoch, ``line(record)``.

    Examples
    --------
    >>> PrintProgress(lambda r: f"epoch {r['epoch']}").on_epoch_end(None, {"epoch": 1}, False)
    epoch 1
    """

    def __init__(self, line: Callable[[dict], str]) -> None:
        self.line = line

    def on_epoch_end(self, model: Any, record: dict, stop: bool) -> None:
        print(self.line(record))


class CheckpointEvery(Piece):
    """After every epoch, ``save(record, stop)`` (the trainer builds its state there).

    Examples
    --------
    >>> saved = []
    >>> CheckpointEvery(lambda r, stop: saved.append((r["epoch"], stop))).on_epoch_end(None, {"epoch": 1}, True)
    >>> saved
    [(1, True)]
    """

    def __init__(self, save: Callable[[dict, bool], Any]) -> None:
        self.save = save

    def on_epoch_end(self, model: Any, record: dict, stop: bool) -> None:
        self.save(record, stop)


class SchedulerStep(Piece):
    """Step a ``torch.optim.lr_scheduler`` after every epoch (before the pieces after it, such
    as a checkpoint, see the new rate).

    Examples
    --------
    >>> opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    >>> piece = SchedulerStep(torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    >>> opt.step()  # an epoch's optimizer steps come before the scheduler's
    >>> piece.on_epoch_end(None, {"epoch": 1}, False); opt.param_groups[0]["lr"]
    0.5
    """

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler

    def on_epoch_end(self, model: Any, record: dict, stop: bool) -> None:
        self.scheduler.step()


def lr_factor(schedule: str | Callable[[int], float], decay: float, epoch: int) -> float:
    """Learning-rate factor of a 0-based ``epoch`` under the RBM schedules.

    ``"constant"`` is 1, ``"exponential"`` is ``decay ** epoch``, ``"inverse"`` is
    ``1 / (1 + decay * epoch)`` and a callable gives ``schedule(epoch)``.

    Examples
    --------
    >>> lr_factor("exponential", 0.5, 2), lr_factor("inverse", 1.0, 1)
    (0.25, 0.5)
    """
    if callable(schedule):
        return float(schedule(epoch))
    if schedule == "exponential":
        return decay**epoch
    if schedule == "inverse":
        return 1.0 / (1.0 + decay * epoch)
    return 1.0


# ---------------------------------------------------------------------------------------------
# Mini-batches
# ---------------------------------------------------------------------------------------------


class Batches(NamedTuple):
    """One epoch's mini-batches, as three parallel sequences.

    ``rows``: what to index the (local) data with, a ``slice`` (no copy) or an index tensor;
    ``positions``: in a data-parallel run, where those rows sit in the global batch (``None``
    otherwise); ``sizes``: the global batch sizes.
    """

    rows: Sequence[slice | torch.Tensor]
    positions: Iterable[torch.Tensor | None]
    sizes: Sequence[int]


def minibatches(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    device: torch.device,
    train_index: torch.Tensor | None = None,
    shard: Shard | None = None,
    n_local: int | None = None,
) -> Batches:
    """One epoch's mini-batches, drawn on the device (one ``torch.randperm`` when shuffling).

    Parameters
    ----------
    n : int
        Number of samples to visit (the length of ``train_index`` when given; the global
        number of samples with ``shard``).
    batch_size : int
    shuffle : bool
        Visit the samples in a new random order (``torch.randperm(n, generator=generator)``).
    generator : torch.Generator or None
    device : torch.device
    train_index : Tensor, optional
        Visit only these rows of the data (in this order without shuffling).
    shard : Shard, optional
        Data-parallel run: the order covers the global index space and this process keeps
        the rows it owns, ``n_local`` rows from ``shard.offset`` (:func:`dbn._shard.owned_batches`,
        one host synchronisation per epoch).
    n_local : int, optional
        With ``shard``: the number of rows this process holds.

    Returns
    -------
    Batches

    Examples
    --------
    >>> b = minibatches(5, 2, shuffle=False, generator=None, device=torch.device("cpu"))
    >>> b.rows, b.sizes
    ([slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)], [2, 2, 1])
    """
    if shard is not None:
        if n_local is None:
            raise ValueError("minibatches(shard=...) needs n_local, the number of rows this process holds.")
        order = torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n, device=device)
        local, positions, sizes = owned_batches(order, shard.offset, n_local, batch_size)
        return Batches(local, positions, sizes)
    starts = range(0, n, batch_size)
    sizes = [min(batch_size, n - s) for s in starts]
    if shuffle:
        order = torch.randperm(n, generator=generator, device=device)
        if train_index is not None:
            order = train_index[order]
    elif train_index is not None:
        order = train_index
    else:
        return Batches([slice(s, s + batch_size) for s in starts], repeat(None), sizes)
    return Batches(order.split(batch_size), repeat(None), sizes)


def take_rows(X: torch.Tensor, rows: slice | torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """``X[rows]``: a view for a slice; for an index tensor a gather, into ``buffer`` when given.

    A sparse CSR ``X`` (:func:`is_sparse`) gives the dense rows, built from its non-zeros only
    (the one place where sparse data is densified, one mini-batch at a time).

    Examples
    --------
    >>> take_rows(torch.arange(6.0).view(3, 2), torch.tensor([2, 0]))
    tensor([[4., 5.],
            [0., 1.]])
    """
    if is_sparse(X):
        return _csr_rows(X, rows, buffer)
    if isinstance(rows, slice):
        return X[rows]
    if buffer is None:
        return X.index_select(0, rows)
    return torch.index_select(X, 0, rows, out=buffer[: rows.shape[0]])


#: Rows gathered by one ``index_select`` in :func:`batch_rows`: enough consecutive mini-batches
#: to fill about this many bytes (one gather per group instead of one per batch).
GATHER_BYTES = 2**20


def batch_rows(X: torch.Tensor, rows: Sequence[slice | torch.Tensor]) -> Iterator[torch.Tensor]:
    """The rows of ``X`` of every mini-batch in ``rows`` (:attr:`Batches.rows`), in order.

    Slices give views. Index tensors (shuffled batches) are gathered a group of consecutive
    batches at a time, about :data:`GATHER_BYTES` bytes, into one reused buffer, and each batch
    is a view of it: one gather per group, which matters when a step costs ~100 us
    (digits-sized batches). A yielded batch is overwritten once the next group is gathered, so
    use it before asking for the next one (as a training loop does). Sparse CSR rows are
    densified one batch at a time (:func:`take_rows`).

    Examples
    --------
    >>> X = torch.arange(8.0).view(4, 2)
    >>> [b.tolist() for b in batch_rows(X, [torch.tensor([3, 0]), torch.tensor([1])])]
    [[[6.0, 7.0], [0.0, 1.0]], [[2.0, 3.0]]]
    """
    if not len(rows):
        return
    if is_sparse(X) or isinstance(rows[0], slice):
        buffer = sparse_buffer(X, max(_n_rows(r, X.shape[0]) for r in rows))
        for r in rows:
            yield take_rows(X, r, buffer)
        return
    index_rows: list[torch.Tensor] = list(rows)  # type: ignore[arg-type]  # not slices (checked above)
    lengths = [int(r.shape[0]) for r in index_rows]
    row_bytes = max(X.shape[1], 1) * X.element_size()
    group_rows = max(max(lengths), GATHER_BYTES // row_bytes)
    buffer = X.new_empty((min(group_rows, sum(lengths)), X.shape[1]))
    start = 0
    while start < len(rows):
        stop, total = start, 0
        while stop < len(rows) and (stop == start or total + lengths[stop] <= group_rows):
            total += lengths[stop]
            stop += 1
        index = index_rows[start] if stop == start + 1 else torch.cat(index_rows[start:stop])
        chunk = torch.index_select(X, 0, index, out=buffer[:total])
        yield from chunk.split(lengths[start:stop]) if stop > start + 1 else (chunk,)
        start = stop


def _n_rows(rows: slice | torch.Tensor, n: int) -> int:
    if isinstance(rows, slice):
        return len(range(*rows.indices(n)))
    return int(rows.shape[0])


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is a sparse CSR tensor (sparse data kept sparse, densified per batch).

    Examples
    --------
    >>> is_sparse(torch.zeros(2, 2)), is_sparse(torch.zeros(2, 2).to_sparse_csr())
    (False, True)
    """
    return isinstance(X, torch.Tensor) and X.layout == torch.sparse_csr


def _csr_entries(X: torch.Tensor, rows: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of the CSR tensor ``X``'s rows ``rows``: ``(counts per row, row of each entry (0..m-1),
    position of each entry in X's values)``."""
    crow = X.crow_indices()
    if isinstance(rows, slice):
        rows = torch.arange(*rows.indices(X.shape[0]), device=crow.device)
    starts = crow[rows]
    counts = crow[rows + 1] - starts
    total = int(counts.sum())
    row_of = torch.repeat_interleave(torch.arange(rows.shape[0], device=crow.device), counts, output_size=total)
    first = (torch.cumsum(counts, 0) - counts)[row_of]
    return counts, row_of, torch.arange(total, device=crow.device) - first + starts[row_of]


def _csr_rows(X: torch.Tensor, rows: slice | torch.Tensor, buffer: torch.Tensor | None) -> torch.Tensor:
    """The dense rows ``rows`` of the CSR tensor ``X`` (canonical: no duplicate entries)."""
    counts, row_of, position = _csr_entries(X, rows)
    m, val = counts.shape[0], X.values()
    if buffer is None:
        out = torch.zeros(m, X.shape[1], dtype=val.dtype, device=val.device)
    else:
        out = buffer[:m].zero_()
    out[row_of, X.col_indices()[position]] = val[position]
    return out


def select_rows(X: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``X[rows]`` that keeps a sparse CSR ``X`` sparse (e.g. a validation split).

    Examples
    --------
    >>> X = torch.eye(3)
    >>> torch.equal(select_rows(X.to_sparse_csr(), torch.tensor([2, 0])).to_dense(), X[[2, 0]])
    True
    """
    if not is_sparse(X):
        return X[rows]
    counts, _, position = _csr_entries(X, rows)
    crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow,
            X.col_indices()[position],
            X.values()[position],
            size=(rows.shape[0], X.shape[1]),
            check_invariants=False,
        )


def chunk_rows(X: torch.Tensor, batch_size: int) -> int:
    """Rows per inference chunk: ``batch_size``; for sparse ``X`` at most :func:`block_rows`.

    Examples
    --------
    >>> chunk_rows(torch.zeros(1, 2**20), 4096), chunk_rows(torch.zeros(1, 2**20).to_sparse_csr(), 4096)
    (4096, 1)
    """
    return min(batch_size, block_rows(X)) if is_sparse(X) else batch_size


def row_blocks(X: torch.Tensor, block: int) -> Iterable[torch.Tensor]:
    """Consecutive dense blocks of at most ``block`` rows of ``X`` (a sparse ``X`` densified
    one block at a time, into one reused buffer: use each block before taking the next).

    Examples
    --------
    >>> [b.shape[0] for b in row_blocks(torch.zeros(5, 2).to_sparse_csr(), 2)]
    [2, 2, 1]
    """
    buffer = sparse_buffer(X, block)
    for start in range(0, X.shape[0], block):
        yield take_rows(X, slice(start, start + block), buffer)


def sparse_buffer(X: torch.Tensor, rows: int) -> torch.Tensor | None:
    """One reused dense buffer of ``rows`` rows for the blocks of a sparse ``X`` (``None`` for
    dense ``X``). Reusing it keeps the heap from fragmenting over many blocks.

    Examples
    --------
    >>> sparse_buffer(torch.zeros(5, 3), 2) is None, sparse_buffer(torch.zeros(5, 3).to_sparse_csr(), 2).shape
    (True, torch.Size([2, 3]))
    """
    if not is_sparse(X):
        return None
    return torch.empty(min(rows, X.shape[0]), X.shape[1], dtype=X.dtype, device=X.device)


#: Bytes of one dense block of sparse data (densified a block at a time outside training).
BLOCK_BYTES = 4 * 2**20


def block_rows(X: torch.Tensor) -> int:
    """Rows of ``X`` in one block of :data:`BLOCK_BYTES` bytes of dense input (at least one).

    Examples
    --------
    >>> block_rows(torch.zeros(3, 2**18))  # 1 MiB rows
    4
    """
    return max(1, BLOCK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))


def map_rows(fn: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """``fn(X)`` row-wise: one call for dense ``X``; a sparse ``X`` is densified one block of
    :func:`block_rows` rows at a time and the results concatenated.

    Sparse data that fits in one block gives the dense result bit for bit; larger sparse data
    may differ from it by the float rounding of the blocked matrix products.

    Examples
    --------
    >>> X = torch.eye(3)
    >>> torch.equal(map_rows(lambda v: 2 * v, X.to_sparse_csr()), 2 * X)
    True
    """
    if not is_sparse(X):
        return fn(X)
    return torch.cat([fn(b) for b in row_blocks(X, block_rows(X))])


def column_mean(X: torch.Tensor) -> torch.Tensor:
    """``X.mean(dim=0)``; for sparse ``X`` the sum of dense blocks' sums over ``n`` (equal to the
    dense mean whenever the sums are exact, e.g. for binary data).

    Examples
    --------
    >>> column_mean(torch.tensor([[1.0, 0.0], [0.0, 0.0]]).to_sparse_csr())
    tensor([0.5000, 0.0000])
    """
    if not is_sparse(X):
        return X.mean(dim=0)
    total = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)
    for b in row_blocks(X, block_rows(X)):
        total += b.sum(dim=0)
    return total / X.shape[0]
