"""Supervised training: the fine-tuning loop.

The same loop trains a network whose hidden layers were pretrained (and exported to an
``nn.Sequential``) and a randomly initialised one, so that the two start from the same code.

Building
    Networks are built by :mod:`dbn.network` (:func:`build_mlp`, :class:`Maxout`,
    :func:`linear_layers`, :func:`hidden_linear_layers`); the names are re-exported here.

Training
    :func:`fit_network` -> :func:`dbn.engine.fit_loop` -> ``_run_epoch`` -> ``_train_step``, as
    in skorch's ``fit_loop -> run_single_epoch -> train_step``. Batching, autograd and the
    optimizers (:func:`dbn.optim.make_optimizer`) are torch's own; the epoch adds validation,
    learning-rate schedules, L1/L2 penalties, gradient clipping, max-norm constraints and frozen
    layers, and the engine's pieces add early stopping with restoration of the best weights,
    divergence detection, the progress bar, checkpoints, callbacks and a :class:`History` of
    per-epoch records.

Inference
    :func:`predict_logits` (batched, no autograd, eval mode) and :func:`evaluate`
    (loss and score on a labelled set).

This module depends on torch and tqdm only; conversion from numpy lives in the estimators.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import _invariant as invariant
from ._checkpoint import fingerprint, load_checkpoint, plain, save_checkpoint, settings_text
from ._invariant import SequentialForward
from ._options import FIT_LR_SCHEDULES as LR_SCHEDULES
from ._options import (
    LOSSES,
    MONITORS,
    OPTIMIZERS,
    Activation,
    Init,
    Loss,
    Monitor,
    OptimizerName,
)
from ._options import FitLRSchedule as LRSchedule
from ._random import check_generator_device as _check_generator_device
from ._shard import Shard
from ._threads import MIN_PARALLEL_WORK_BACKPROP, Probe, batch_work
from ._validation import (
    DivergenceError,
    check_choice,
    check_data_tensor,
    check_int,
    check_probability,
    check_scalar,
)
from .engine import (
    CheckpointEvery,
    DivergenceCheck,
    EarlyStopping,
    Piece,
    ProgressBar,
    SchedulerStep,
    chunk_rows,
    fit_loop,
    minibatches,
    select_rows,
    sparse_buffer,
    take_rows,
)
from .network import Maxout, _layer_parameters, build_mlp, hidden_linear_layers, linear_layers, maxout_gain  # noqa: F401
from .optim import make_optimizer

__all__ = [
    "Activation",
    "Init",
    "Loss",
    "OptimizerName",
    "LRSchedule",
    "Monitor",
    "EpochCallback",
    "BatchCallback",
    "Maxout",
    "build_mlp",
    "linear_layers",
    "hidden_linear_layers",
    "History",
    "fit_network",
    "predict_logits",
    "evaluate",
    "DivergenceError",
]

#: ``callback(net, record)`` after every epoch; may add keys to ``record``; returning ``True``
#: (``is True``) stops training after this epoch: the contract of :mod:`dbn.engine`.
EpochCallback = Callable[[nn.Module, dict], Any]
#: ``callback(net, batch_record)`` after every optimizer step (gradients still in ``.grad``).
BatchCallback = Callable[[nn.Module, dict], Any]

_DIVERGENCE_HINT = "Lower the learning rate, scale or standardise the inputs, or set clip_grad_norm."


# ---------------------------------------------------------------------------------------------
# History and metrics
# ---------------------------------------------------------------------------------------------


class History(list):
    """Per-epoch records of :func:`fit_network`: a ``list`` of dicts, plus a few attributes.

    Each record has the keys

    - ``epoch`` (int, from 1);
    - ``train_loss`` : mean data loss over the epoch's mini-batches, in training mode (dropout
      on, weights moving), penalties (L1/L2) excluded;
    - ``train_score`` : the score of those same forward passes;
    - ``valid_loss``, ``valid_score`` : on the validation set in eval mode after the epoch,
      ``None`` without validation data;
    - ``learning_rate`` : the learning rate used during the epoch;
    - ``time`` : seconds spent on the epoch (training and validation);

    and whatever keys the callbacks add. The loss is ``F.cross_entropy`` (mean) for
    ``loss="cross_entropy"``, ``F.mse_loss`` (mean over samples *and* outputs) for
    ``loss="mse"`` and ``F.binary_cross_entropy_with_logits`` (mean over samples and labels)
    for ``loss="binary_cross_entropy"``. The score is the accuracy for ``"cross_entropy"``, the
    coefficient of determination R^2 (averaged uniformly over outputs, as scikit-learn's
    ``r2_score``) for ``"mse"`` and the subset accuracy (the fraction of samples whose labels are
    all right, a label being predicted where its logit is positive, as scikit-learn's
    ``accuracy_score`` on indicator matrices) for ``"binary_cross_entropy"``; :attr:`score_name`
    says which.

    Attributes
    ----------
    best_epoch : int or None
        Epoch with the best monitored quantity (validation loss or score when there is
        validation data, the training loss otherwise). With ``early_stopping`` the network
        holds this epoch's weights at the end.
    score_name : {"accuracy", "r2", "subset_accuracy"}
    monitor : str
        Key of the record that ``best_epoch`` refers to.
    stopped_early : bool
        Whether training stopped before ``max_iter`` (early stopping or a callback).

    Examples
    --------
    >>> h = History(score_name="accuracy")
    >>> h.append({"epoch": 1, "train_loss": 0.5})
    >>> h.column("train_loss")
    [0.5]
    """

    def __init__(self, *args: Any, score_name: str = "accuracy", monitor: str = "train_loss") -> None:
        super().__init__(*args)
        self.best_epoch: int | None = None
        self.score_name = score_name
        self.monitor = monitor
        self.stopped_early = False

    def column(self, key: str) -> list:
        """Values of ``key`` across epochs (``None`` where a record lacks it)."""
        return [record.get(key) for record in self]

    def __repr__(self) -> str:
        return (
            f"History({len(self)} epochs, best_epoch={self.best_epoch}, "
            f"score_name={self.score_name!r}, stopped_early={self.stopped_early})"
        )


def _r2(sse: torch.Tensor, sst: torch.Tensor) -> float:
    """Uniformly averaged R^2 from per-output SSE and SST (scikit-learn's conventions)."""
    sse = sse.double()
    sst = sst.double()
    ok = sst > 0
    r2 = torch.where(ok, 1.0 - sse / torch.where(ok, sst, torch.ones_like(sst)), (sse == 0).double())
    return float(r2.mean())


def _subset_correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Samples whose every label is right (logit > 0 against target > 0.5), as a float64 count."""
    return ((out > 0) == (y > 0.5)).all(dim=1).sum(dtype=torch.float64)


def _total_sum_squares(y: torch.Tensor) -> torch.Tensor:
    y64 = y.double()
    return ((y64 - y64.mean(dim=0)) ** 2).sum(dim=0)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _first_parameter(net: nn.Module, name: str = "net") -> nn.Parameter:
    if not isinstance(net, nn.Module):
        raise ValueError(f"The {name!r} parameter must be a torch.nn.Module. Got {type(net).__name__}.")
    p = next(net.parameters(), None)
    if p is None:
        raise ValueError(f"The {name!r} parameter has no parameters to train or evaluate.")
    return p


def _check_inputs(net: nn.Module, X: torch.Tensor, name: str = "X") -> torch.Tensor:
    X = check_data_tensor(X, name=name)
    p = _first_parameter(net)
    if X.device != p.device:
        raise ValueError(
            f"{name} is on {X.device} but the network is on {p.device}. Move one of them "
            f"(e.g. {name}.to({str(p.device)!r}))."
        )
    if X.dtype != p.dtype:
        raise ValueError(
            f"{name} has dtype {X.dtype} but the network has dtype {p.dtype}. Convert with {name}.to({p.dtype})."
        )
    first = next((m for m in net.modules() if isinstance(m, (nn.Linear, Maxout))), None)
    n_in = None if first is None else (first.linear.in_features if isinstance(first, Maxout) else first.in_features)
    if n_in is not None and X.shape[1] != n_in:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the network's first layer takes {n_in} "
            f"(shape {tuple(X.shape)} vs (n_samples, {n_in}))."
        )
    return X


def _check_targets(y: torch.Tensor, X: torch.Tensor, loss: str, name: str = "y") -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor. Got {type(y).__name__} instead.")
    if y.shape[0:1] != X.shape[0:1]:
        raise ValueError(
            f"{name} has {y.shape[0] if y.dim() else 0} samples but X has {X.shape[0]} "
            f"(shapes {tuple(y.shape)} and {tuple(X.shape)})."
        )
    if y.device != X.device:
        raise ValueError(f"{name} is on {y.device} but X is on {X.device}. Put both on the same device.")
    if loss == "cross_entropy":
        if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(
                f"With loss='cross_entropy', {name} must be a 1-D integer tensor of class indices. "
                f"Got shape {tuple(y.shape)} and dtype {y.dtype}."
            )
        y = y.long()
        if bool((y < 0).any()):
            raise ValueError(f"{name} has negative class indices; encode classes as 0 .. n_classes-1.")
    elif loss == "binary_cross_entropy":
        if y.dim() not in (1, 2) or y.is_complex():
            raise ValueError(
                f"With loss='binary_cross_entropy', {name} must be a tensor of shape (n_samples,) or "
                f"(n_samples, n_labels) of 0/1 targets. Got shape {tuple(y.shape)} and dtype {y.dtype}."
            )
        y = y.to(X.dtype)
        if not bool(((y >= 0) & (y <= 1)).all()):  # NaN fails too
            raise ValueError(
                f"With loss='binary_cross_entropy', {name} must hold targets in [0, 1] "
                "(a binary indicator matrix, one column per label)."
            )
        if y.dim() == 1:
            y = y.unsqueeze(1)
    else:
        if y.dim() not in (1, 2) or not y.is_floating_point():
            raise ValueError(
                f"With loss='mse', {name} must be a float tensor of shape (n_samples,) or "
                f"(n_samples, n_outputs). Got shape {tuple(y.shape)} and dtype {y.dtype}."
            )
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"{name} contains NaN or infinity.")
        if y.dim() == 1:
            y = y.unsqueeze(1)
        y = y.to(X.dtype)  # no copy when the dtypes already agree
    return y


def _check_output_shape(net: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str) -> None:
    """One forward pass on a single sample to check that outputs and targets fit."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(take_rows(X, slice(0, 1)))
    finally:
        net.train(was_training)
    if loss == "cross_entropy":
        if out.dim() != 2:
            raise ValueError(
                f"The network outputs shape {tuple(out.shape[1:])} per sample; cross-entropy needs "
                "a vector of class logits. Give build_mlp an 'n_outputs'."
            )
        n_classes = int(y.max()) + 1
        if out.shape[1] < n_classes:
            raise ValueError(
                f"y has class indices up to {n_classes - 1} but the network outputs only "
                f"{out.shape[1]} logits. Set n_outputs >= {n_classes}."
            )
    elif tuple(out.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"The network outputs shape {tuple(out.shape[1:])} per sample but y has "
            f"{tuple(y.shape[1:])} (y shape {tuple(y.shape)})."
        )


def _check_optional_positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    return check_scalar(name, value, low=0.0, low_inclusive=False)


def _check_callbacks(name: str, callbacks: Any) -> tuple:
    if callable(callbacks):
        callbacks = (callbacks,)
    if not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
        raise ValueError(
            f"The {name!r} parameter must be a sequence of callables f(net, record). Got {callbacks!r} instead."
        )
    return tuple(callbacks)


# ---------------------------------------------------------------------------------------------
# Optimizers and schedules
# ---------------------------------------------------------------------------------------------


def _make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    max_iter: int,
    step_size: int,
    gamma: float | None,
    lr_min: float,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if schedule == "constant":
        return None
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.1 if gamma is None else gamma)
    if schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95 if gamma is None else gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_iter, eta_min=lr_min)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@dataclass
class _StepConfig:
    """What one training step needs beyond the batch."""

    loss: Loss
    params: list[nn.Parameter]
    l1: float
    l1_weights: list[nn.Parameter]
    clip_grad_norm: float | None
    max_norm: float | None
    max_norm_weights: list[torch.Tensor]
    # the network's thread-count-invariant forward (dbn._invariant), set by fit_network for
    # CPU fits that may run on several threads; None: ``net(x)``
    forward: SequentialForward | None = None
    # optimizers that re-evaluate the loss (L-BFGS) step with a closure whose loss carries the
    # L2 and L1 penalties (``weight_decay / 2 * ||w||^2 + l1 * |w|`` over ``l1_weights``), so
    # that the line search sees the objective whose gradient it follows
    closure: bool = False
    weight_decay: float = 0.0


def _loss_fn(loss: str) -> Callable[..., torch.Tensor]:
    if loss == "cross_entropy":
        return F.cross_entropy  # its reduction is over one value per sample: a short sum
    # log-sum-exp form for binary cross-entropy: stable for any logit
    base = F.binary_cross_entropy_with_logits if loss == "binary_cross_entropy" else F.mse_loss

    def loss_fn(out: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if out.dim() != 2 or out.numel() <= invariant.GRAIN or out.shape != target.shape:
            return base(out, target, reduction=reduction)
        # row sums first: torch's sum of a large tensor splits it over the threads and rounds
        # differently on each count, a row sum does not (dbn._invariant)
        total = base(out, target, reduction="none").sum(dim=1).sum()
        return total if reduction == "sum" else total / out.numel()

    return loss_fn


def _train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    X_batch: torch.Tensor,
    y_batch: torch.Tensor,
    cfg: _StepConfig,
    sum_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: forward, loss, backward, L1 subgradient, clipping, step, max-norm.

    With ``sum_scale`` (data-parallel runs) the loss is the sum over the batch times
    ``sum_scale`` instead of the mean. With ``cfg.closure`` (L-BFGS) the optimizer evaluates
    the loss as often as its line searches need. Returns the detached loss and outputs of the
    step's first evaluation, at the parameters it started from (no host synchronisation).
    """
    if not cfg.closure:
        loss, out = _loss_and_gradient(net, optimizer, X_batch, y_batch, cfg, sum_scale)
        optimizer.step()
    else:
        first: list[tuple[torch.Tensor, torch.Tensor]] = []

        def closure() -> float:  # the line search reads the objective on the host anyway
            loss, out = _loss_and_gradient(net, optimizer, X_batch, y_batch, cfg, sum_scale)
            if not first:
                first.append((loss, out))
            return float(loss + _penalty(cfg) if cfg.l1 or cfg.weight_decay else loss)

        optimizer.step(closure)
        loss, out = first[0]
    if cfg.max_norm is not None:
        with torch.no_grad():
            for weight in cfg.max_norm_weights:
                weight.renorm_(2, 0, cfg.max_norm)
    return loss.detach(), out.detach()


def _loss_and_gradient(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    X_batch: torch.Tensor,
    y_batch: torch.Tensor,
    cfg: _StepConfig,
    sum_scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, loss, backward, the penalties' gradients and clipping; returns the (data)
    loss and the outputs."""
    optimizer.zero_grad(set_to_none=True)
    out = net(X_batch) if cfg.forward is None else cfg.forward(X_batch)
    if sum_scale is None:
        loss = _loss_fn(cfg.loss)(out, y_batch)
    else:
        loss = _loss_fn(cfg.loss)(out, y_batch, reduction="sum") * sum_scale
    loss.backward()
    if cfg.l1 > 0:
        for w in cfg.l1_weights:
            if w.grad is not None:
                w.grad.add_(torch.sign(w.detach()), alpha=cfg.l1)
    if cfg.closure and cfg.weight_decay > 0:  # the other optimizers add it themselves
        for w in cfg.l1_weights:
            if w.grad is not None:
                w.grad.add_(w.detach(), alpha=cfg.weight_decay)
    if cfg.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(cfg.params, cfg.clip_grad_norm)
    return loss.detach(), out.detach()


@torch.no_grad()
def _penalty(cfg: _StepConfig) -> torch.Tensor | float:
    """``weight_decay / 2 * sum ||w||^2 + l1 * sum |w|`` over the decayed weights."""
    total: torch.Tensor | float = 0.0
    for w in cfg.l1_weights:
        total = total + cfg.weight_decay / 2 * w.pow(2).sum() + cfg.l1 * w.abs().sum()
    return total


def _run_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    train_index: torch.Tensor | None,
    train_sst: torch.Tensor | None,
    cfg: _StepConfig,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
    epoch: int,
    batch_callbacks: tuple,
    shard: Shard | None = None,
) -> tuple[float, float]:
    """One pass over the training samples; returns (mean loss, score) of the batches.

    With ``shard`` (data-parallel runs) this process trains on its rows of every global batch
    (see :mod:`dbn._shard`): the gradient of ``sum(loss over owned rows) * world_size /
    global_batch_size`` averaged by DistributedDataParallel over the processes is the gradient
    of the global batch's mean loss, and the epoch's sums are all-reduced.
    """
    n = X.shape[0] if train_index is None else train_index.shape[0]
    if shard is not None:
        n = shard.n_total
    batches = minibatches(
        n,
        batch_size,
        shuffle=shuffle,
        generator=generator,
        device=X.device,
        train_index=train_index,
        shard=shard,
        n_local=X.shape[0],
    )
    cross_entropy = cfg.loss == "cross_entropy"
    multilabel = cfg.loss == "binary_cross_entropy"
    per_output = 1 if cross_entropy else y.shape[1]
    world = 1 if shard is None else shard.world_size
    loss_sum = torch.zeros((), device=X.device, dtype=torch.float64)
    stat = torch.zeros(() if cross_entropy or multilabel else y.shape[1], device=X.device, dtype=torch.float64)
    buffer = sparse_buffer(X, batch_size)  # a sparse X is densified one batch at a time, into it
    for b, (rows, size) in enumerate(zip(batches.rows, batches.sizes, strict=True)):
        X_batch, y_batch = take_rows(X, rows, buffer), y[rows]
        scale = None if shard is None else world / (size * per_output)
        loss, out = _train_step(net, optimizer, X_batch, y_batch, cfg, sum_scale=scale)
        loss_sum += loss * (size if shard is None else size / world)  # this process's summed loss
        if cross_entropy:
            stat += (out.argmax(dim=1) == y_batch).sum()
        elif multilabel:
            stat += _subset_correct(out, y_batch)
        else:
            stat += ((out - y_batch) ** 2).sum(dim=0, dtype=torch.float64)
        if batch_callbacks:
            record = {"epoch": epoch, "batch": b, "batch_size": X_batch.shape[0], "loss": loss}
            for callback in batch_callbacks:
                callback(net, record)
    if shard is not None:
        totals = torch.cat([loss_sum.view(1), stat.view(-1)])
        shard.all_reduce(totals)
        loss_sum, stat = totals[0], totals[1:] if per_output > 1 and not multilabel else totals[1]
    return _epoch_result(optimizer, cfg, loss_sum, stat, n, train_sst, epoch)


def _epoch_result(
    optimizer: torch.optim.Optimizer,
    cfg: _StepConfig,
    loss_sum: torch.Tensor,
    stat: torch.Tensor,
    n: int,
    train_sst: torch.Tensor | None,
    epoch: int,
) -> tuple[float, float]:
    mean_loss = float(loss_sum) / n
    if not math.isfinite(mean_loss):
        lr = optimizer.param_groups[0]["lr"]
        raise DivergenceError(
            f"Training diverged at epoch {epoch}: the training loss is {mean_loss} "
            f"(learning rate {lr:g}). {_DIVERGENCE_HINT}"
        )
    if cfg.loss in ("cross_entropy", "binary_cross_entropy"):
        return mean_loss, float(stat) / n
    assert train_sst is not None
    return mean_loss, _r2(stat, train_sst)


def fit_network(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: Loss = "cross_entropy",
    optimizer: OptimizerName = "sgd",
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    max_iter: int = 50,
    batch_size: int = 100,
    lr_schedule: LRSchedule | None = None,
    lr_step_size: int = 10,
    lr_gamma: float | None = None,
    lr_min: float = 0.0,
    clip_grad_norm: float | None = None,
    max_norm: float | None = None,
    freeze: Sequence[int] = (),
    early_stopping: bool = False,
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    validation_fraction: float = 0.1,
    monitor: Monitor = "valid_loss",
    n_iter_no_change: int = 10,
    tol: float = 1e-4,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    callbacks: Sequence[EpochCallback] = (),
    batch_callbacks: Sequence[BatchCallback] = (),
    eval_batch_size: int = 1000,
    verbose: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    shard: Shard | None = None,
) -> History:
    """Train ``net`` in place by mini-batch gradient descent on a supervised loss.

    Used both to fine-tune a pretrained network and to train a randomly initialised one.
    ``X`` and ``y`` are tensors already on the network's device; batches are drawn by
    indexing them with a ``torch.randperm`` (no copy of the dataset per epoch).

    Parameters
    ----------
    net : nn.Module
        The network, mapping ``(batch, n_features)`` to logits (cross-entropy and binary
        cross-entropy) or predictions (mse). It is trained in place and left in training mode.
    X : Tensor of shape (n_samples, n_features)
        Float inputs, same device and dtype as ``net``.
    y : Tensor
        Class indices of shape (n_samples,), any integer dtype, for ``loss="cross_entropy"``;
        float targets of shape (n_samples,) or (n_samples, n_outputs) for ``loss="mse"``
        (a 1-D ``y`` needs a network with one output); targets in [0, 1] of shape
        (n_samples, n_labels), any real or bool dtype (a binary indicator matrix: multi-label
        classification), for ``loss="binary_cross_entropy"``.
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}, default="cross_entropy"
        ``F.cross_entropy`` on logits (no softmax in the network), ``F.mse_loss`` (mean over
        samples and outputs) or ``F.binary_cross_entropy_with_logits`` (one independent
        sigmoid per output, on logits: no sigmoid in the network; mean over samples and
        labels).
    optimizer : {"sgd", "adam", "rmsprop", "adagrad", "adadelta", "lbfgs"}, default="sgd"
        The ``torch.optim`` class with its default settings apart from ``lr`` (Adadelta is
        usually run with ``learning_rate=1.0``). ``"lbfgs"``: ``torch.optim.LBFGS`` taking a
        few iterations with strong-Wolfe line searches per mini-batch
        (:func:`dbn.optim.make_optimizer`), as Hinton and Salakhutdinov (2006) fine-tuned
        with conjugate gradients on batches of 1,000; usually run with
        ``learning_rate=1.0`` and large batches. Its line searches evaluate the loss several
        times per batch on the same rows, with the L2 and L1 penalties included; with
        dropout every evaluation draws its own mask.
    learning_rate : float, default=0.01
        Initial learning rate.
    momentum : float, default=0.9
        Momentum in [0, 1) for ``"sgd"`` and ``"rmsprop"`` (ignored by the other optimizers).
    nesterov : bool, default=False
        Nesterov momentum for ``"sgd"`` (needs ``momentum > 0``).
    weight_decay : float, default=0.0
        L2 penalty on the weights of the linear layers (not biases, not batch-norm
        parameters), torch's convention: ``weight_decay * w`` is added to the gradient, i.e.
        the penalty is ``weight_decay / 2 * ||w||^2``. Coupled L2 for every optimizer
        (``Adam``, not ``AdamW``).
    l1 : float, default=0.0
        L1 penalty ``l1 * |w|`` on the same weights, applied as the subgradient
        ``l1 * sign(w)`` added to the gradient.
    max_iter : int, default=50
        Maximum number of epochs.
    batch_size : int, default=100
        Mini-batch size; clipped to the number of training samples. The last batch of an
        epoch may be smaller.
    lr_schedule : {"constant", "step", "exponential", "cosine"} or None, default=None
        Per-epoch schedule: ``None``/``"constant"``; ``"step"`` multiplies the rate by
        ``lr_gamma`` (default 0.1) every ``lr_step_size`` epochs; ``"exponential"`` by
        ``lr_gamma`` (default 0.95) every epoch; ``"cosine"`` anneals from ``learning_rate`` to
        ``lr_min`` over ``max_iter`` epochs.
    lr_step_size : int, default=10
    lr_gamma : float or None, default=None
    lr_min : float, default=0.0
    clip_grad_norm : float or None, default=None
        Clip the global gradient norm (``nn.utils.clip_grad_norm_``) of each step.
    max_norm : float or None, default=None
        Max-norm constraint (Srivastava et al., 2014): after each step, each hidden unit's
        incoming weight vector (a row of every hidden ``Linear.weight``) is rescaled to norm
        at most ``max_norm``. The output layer is not constrained.
    freeze : sequence of int, default=()
        Indices into :func:`linear_layers` (negative allowed, ``-1`` is the output layer) of
        layers not to train: their linear map and the batch-norm after it keep their
        parameters (batch-norm running statistics still update). For the protocol "first
        train only the softmax layer", call ``fit_network`` with
        ``freeze=range(len(hidden_linear_layers(net)))`` and a few epochs, then again without.
    early_stopping : bool, default=False
        Stop when ``monitor`` has not improved by more than ``tol`` for ``n_iter_no_change``
        epochs, and restore the weights of the best epoch (a deep copy of the state dict).
    validation_data : (X_val, y_val) or None, default=None
        Held-out tensors; evaluated after every epoch when given, with or without early
        stopping. Without it, ``early_stopping=True`` holds out ``validation_fraction`` of
        ``X`` (a random split drawn with ``generator``, not stratified).
    validation_fraction : float, default=0.1
        In (0, 1).
    monitor : {"valid_loss", "valid_score"}, default="valid_loss"
        What early stopping and ``History.best_epoch`` follow (lower loss, higher score). With
        the score, the loss breaks ties: an epoch of equal score and lower loss is better, and
        one that lowers the loss by more than ``tol`` at the best score resets the patience
        (training goes on while the error sits on a plateau and the loss still falls).
    n_iter_no_change : int, default=10
        Patience in epochs.
    tol : float, default=1e-4
        Minimum improvement that resets the patience.
    shuffle : bool, default=True
        Reshuffle the training samples every epoch.
    generator : torch.Generator or None, default=None
        Source of all randomness: validation split, shuffling and, through a forked global
        RNG seeded from it, dropout (``nn.Dropout`` takes no generator; the global RNG is
        restored afterwards). It must live on the data's device. ``None`` uses torch's
        global RNG.
    callbacks : sequence of callables, default=()
        ``callback(net, record)`` after every epoch, once the record is complete and before the
        early-stopping decision. It may add keys to ``record``; returning ``True`` (the object
        ``True``: a truthy value such as ``1`` does not stop) stops training after this epoch,
        the contract of every trainer (:mod:`dbn.engine`). The gradients of the epoch's last batch are still in
        ``.grad``.
    batch_callbacks : sequence of callables, default=()
        ``callback(net, batch_record)`` after every optimizer step, with the gradients of the
        batch still in ``.grad`` (after the L1 term and clipping, as the step used them).
        ``batch_record`` has ``epoch``, ``batch`` (from 0), ``batch_size`` and ``loss``
        (a 0-d tensor on the device; call ``float`` only if you need it, it synchronises).
    eval_batch_size : int, default=1000
        Batch size for validation.
    verbose : bool, default=False
        Show a tqdm progress bar over epochs with the latest metrics.
    checkpoint_dir : str or path-like or None, default=None
        Directory for a checkpoint written atomically after every epoch: the network, optimizer
        and scheduler states, the history, the best state and early-stopping counters, the
        generator state and the state of the forked global RNG used by dropout. It records the
        settings and fingerprints (hashes of the bytes) of ``X``, ``y``, ``validation_data`` and
        the network's starting weights. When it holds a checkpoint of a run with the same
        settings on the same inputs, training resumes after the last saved epoch and ends
        exactly as an uninterrupted run would on the CPU (the checkpoint's generator state
        replaces ``generator``'s; the callbacks only see the epochs run in this call). A larger
        ``max_iter`` continues a finished run (except with ``lr_schedule="cosine"``). Other
        inputs or settings raise ``ValueError`` naming what differs. In a data-parallel run
        give each process its own directory.
    shard : dbn._shard.Shard or None, default=None
        Data-parallel training (see :mod:`dbn.distributed`): ``X`` and ``y`` are this process's
        contiguous shard of the data and ``net`` is wrapped in ``DistributedDataParallel``.
        Every process visits the same global permutation in global batches of ``batch_size``
        and trains on the rows of each batch it owns; the loss is scaled so that DDP's gradient
        average is the global batch mean. Reported losses and scores are over all processes.
        Needs ``validation_data`` for early stopping; no frozen layers.

    Returns
    -------
    History
        One record per epoch completed; see :class:`History`.

    Raises
    ------
    ValueError
        For a bad argument, naming the parameter.
    DivergenceError
        When the training loss or a parameter becomes NaN or infinite.

    Notes
    -----
    The fit runs under the package's thread policy (:class:`dbn.threads`): one thread for
    small networks and batches, torch's count otherwise, fewer where other processes hold
    cores and a probe step on a scratch copy shows the smaller count gives the same result
    bit for bit. For that, a plain ``nn.Sequential`` on the CPU that may use several threads
    is run with its ``nn.Sigmoid`` layers, its ``nn.Linear`` layers of fewer than 16 outputs
    and every layer on batches of fewer than 16 rows in forms that round alike on any thread
    count (the same values up to rounding); its hooks, if any, disable this.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(200, 2, generator=g)
    >>> y = (X[:, 0] > 0).long()
    >>> net = build_mlp(2, (8,), 2, activation="tanh", init="xavier", generator=g)
    >>> history = fit_network(net, X, y, optimizer="adam", learning_rate=0.05, max_iter=20,
    ...                       batch_size=50, generator=g)
    >>> len(history), history[-1]["train_loss"] < history[0]["train_loss"]
    (20, True)
    >>> history[-1]["train_score"] > 0.9
    True
    """
    opts = _check_options(
        loss=loss,
        optimizer=optimizer,
        learning_rate=learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        l1=l1,
        max_iter=max_iter,
        batch_size=batch_size,
        lr_schedule=lr_schedule,
        lr_step_size=lr_step_size,
        lr_gamma=lr_gamma,
        lr_min=lr_min,
        clip_grad_norm=clip_grad_norm,
        max_norm=max_norm,
        early_stopping=early_stopping,
        validation_fraction=validation_fraction,
        monitor=monitor,
        n_iter_no_change=n_iter_no_change,
        tol=tol,
        shuffle=shuffle,
        callbacks=callbacks,
        batch_callbacks=batch_callbacks,
        eval_batch_size=eval_batch_size,
    )
    data = _check_data(
        net, X, y, opts, generator=generator, validation_data=validation_data, freeze=freeze, shard=shard
    )
    X, y = data.X, data.y
    batch_size = min(opts.batch_size, data.n_train)
    params = _parameter_groups(net, data.layers, data.frozen, opts)
    work = batch_work(batch_size, net)
    if X.device.type == "cpu" and shard is None and torch.get_num_threads() > 1 and work >= MIN_PARALLEL_WORK_BACKPROP:
        # may run on several threads and, under load, on fewer: use the forms whose result
        # does not depend on the count (dbn._invariant), so that the probe can agree
        params.step.forward = SequentialForward.of(net)
    opt = make_optimizer(
        opts.optimizer, params.groups, learning_rate=opts.learning_rate, momentum=opts.momentum, nesterov=opts.nesterov
    )
    scheduler = _make_scheduler(
        opt, opts.schedule, max_iter=opts.max_iter, step_size=opts.lr_step_size, gamma=opts.lr_gamma, lr_min=opts.lr_min
    )
    monitor_key = (
        opts.monitor if data.has_validation else ("train_loss" if opts.monitor == "valid_loss" else "train_score")
    )
    score_name = {"cross_entropy": "accuracy", "binary_cross_entropy": "subset_accuracy"}.get(opts.loss, "r2")
    history = History(score_name=score_name, monitor=monitor_key)
    stopping = EarlyStopping(
        monitor_key,
        minimize=monitor_key.endswith("loss"),
        patience=opts.n_iter_no_change,
        tol=opts.tol,
        stop=opts.early_stopping,
        on_best=lambda epoch: setattr(history, "best_epoch", epoch),
        tie_break=None if monitor_key.endswith("loss") else monitor_key.replace("score", "loss"),
    )
    settings = ckpt = None
    if checkpoint_dir is not None:
        settings = _checkpoint_settings(
            opts, data, net, batch_size=batch_size, freeze=data.frozen, shard=shard, validation_data=validation_data
        )
        ckpt = load_checkpoint(checkpoint_dir, "fit_network", settings, extend=_extend_max_iter(opts))

    run_epoch = _epoch_runner(net, opt, data, params.step, opts, batch_size, generator, shard)

    def pieces() -> list[Piece]:
        save = None
        if settings is not None and checkpoint_dir is not None:

            def save(record: dict, stop: bool) -> None:
                state = _fit_state(record["epoch"], stop, net, opt, scheduler, history, stopping, generator, X.device)
                save_checkpoint(checkpoint_dir, "fit_network", settings, state)

        return _fit_pieces(stopping, history, opts.max_iter, verbose, scheduler, save)

    previous_requires_grad = {id(p): p.requires_grad for p in net.parameters()}
    for p in net.parameters():
        if id(p) in params.frozen_ids:
            p.requires_grad_(False)
    net.train()
    try:
        with _forked_rng(generator, X.device):
            first_epoch, finished = 1, False
            if ckpt is not None:
                first_epoch, finished = _restore_fit_state(
                    ckpt, net, opt, scheduler, history, stopping, generator, X.device
                )
            epochs = range(first_epoch, opts.max_iter + 1) if not finished else range(0)
            fit_loop(
                net,
                epochs,
                run_epoch,
                callbacks=opts.callbacks,
                pieces=pieces(),
                records=history,
                work=work,
                device=X.device,
                min_work=MIN_PARALLEL_WORK_BACKPROP,
                probe=None if shard is not None else _thread_probe(net, opt, params.step, data, batch_size, opts),
            )
    finally:
        for p in net.parameters():
            p.requires_grad_(previous_requires_grad.get(id(p), True))
    stopping.restore(net)
    return history


def _thread_probe(
    net: nn.Module, opt: torch.optim.Optimizer, cfg: _StepConfig, data: _Data, batch_size: int, opts: _Options
) -> Probe:
    """The thread policy's probe (:func:`dbn._threads.fit_threads`) for :func:`fit_network`.

    Scratch copies of the network, its optimizer and the step's settings take a step on the
    first ``batch_size`` training rows and one on the last, shorter batch when there is one,
    then run the validation pass on the first evaluation batch and the last, shorter one;
    returns the losses, outputs, parameters and the optimizer's state. The global random
    state (dropout's) is restored afterwards, so the fit and both runs of the probe draw the
    same masks; the originals are untouched.
    """
    n = data.n_train
    sizes = [batch_size] + ([n % batch_size] if n > batch_size and n % batch_size else [])
    evals: list[slice] = []
    if data.X_val is not None:
        n_val, size = data.X_val.shape[0], chunk_rows(data.X_val, opts.eval_batch_size)
        evals = [slice(0, size)] + ([slice(n_val - n_val % size, n_val)] if n_val > size and n_val % size else [])

    def rows(size: int) -> torch.Tensor | slice:
        return slice(0, size) if data.train_index is None else data.train_index[:size]

    def probe() -> list[torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            model, optimizer, step = copy.deepcopy((net, opt, cfg))
            if isinstance(optimizer, torch.optim.LBFGS):
                # a copied optimizer keeps its groups and state only; LBFGS also caches its
                # parameter list at construction
                optimizer._params, optimizer._numel_cache = optimizer.param_groups[0]["params"], None
            forward = model if step.forward is None else step.forward
            out: list[torch.Tensor] = []
            with torch.enable_grad():
                for size in sizes:
                    r = rows(size)
                    X_batch = take_rows(data.X, r, sparse_buffer(data.X, size))
                    out.extend(_train_step(model, optimizer, X_batch, data.y[r], step))
            if data.X_val is not None:
                model.eval()
                with torch.no_grad():
                    for part in evals:
                        out.append(forward(take_rows(data.X_val, part, sparse_buffer(data.X_val, part.stop))))
        out.extend(p.detach() for p in model.parameters())
        out.extend(t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor))
        return out

    return probe


def _epoch_runner(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    data: _Data,
    cfg: _StepConfig,
    opts: _Options,
    batch_size: int,
    generator: torch.Generator | None,
    shard: Shard | None,
) -> Callable[[int], dict]:
    """``run_epoch(epoch) -> record`` of :func:`fit_network`: train, then validate."""

    def run_epoch(epoch: int) -> dict:
        start = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        train_loss, train_score = _run_epoch(
            net,
            opt,
            data.X,
            data.y,
            train_index=data.train_index,
            train_sst=data.train_sst,
            cfg=cfg,
            batch_size=batch_size,
            shuffle=opts.shuffle,
            generator=generator,
            epoch=epoch,
            batch_callbacks=opts.batch_callbacks,
            shard=shard,
        )
        valid_loss = valid_score = None
        if data.X_val is not None and data.y_val is not None:
            valid_loss, valid_score = _evaluate(
                net, data.X_val, data.y_val, opts.loss, chunk_rows(data.X_val, opts.eval_batch_size), cfg.forward
            )
        return {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_score": train_score,
            "valid_loss": valid_loss,
            "valid_score": valid_score,
            "learning_rate": lr,
            "time": time.perf_counter() - start,
        }

    return run_epoch


def _fit_pieces(
    stopping: EarlyStopping,
    history: History,
    max_iter: int,
    verbose: bool,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    save: Callable[[dict, bool], None] | None,
) -> list[Piece]:
    """The engine pieces of :func:`fit_network`, in order: divergence check (before the
    callbacks), learning-rate schedule, early stopping, progress bar, ``History.stopped_early``,
    checkpoint."""
    # the non-finite loss is caught in _epoch_result; its runaway growth here
    pieces: list[Piece] = [DivergenceCheck(None, hint=_DIVERGENCE_HINT, growth_key="train_loss", what="Fine-tuning")]
    if scheduler is not None:
        pieces.append(SchedulerStep(scheduler))
    pieces += [
        stopping,
        ProgressBar(max_iter, "fit_network", refresh=False, disable=not verbose, floats_only=True),
        _MarkStopped(history, max_iter),
    ]
    if save is not None:
        pieces.append(CheckpointEvery(save))
    return pieces


class _MarkStopped(Piece):
    """Sets ``History.stopped_early`` when training stops before ``max_iter``."""

    def __init__(self, history: History, max_iter: int) -> None:
        self.history, self.max_iter = history, max_iter

    def on_epoch_end(self, model: nn.Module, record: dict, stop: bool) -> None:
        if stop:
            self.history.stopped_early = record["epoch"] < self.max_iter


@contextlib.contextmanager
def _forked_rng(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Fork the global RNG of ``device`` and seed it from ``generator`` (nothing without one).

    Dropout draws from the global RNG; forking it and seeding it from the generator makes the
    run reproducible from ``generator`` and leaves the caller's global RNG state untouched.
    """
    if generator is None:
        yield
        return
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:
        fork = torch.random.fork_rng(devices=[device], device_type=device.type)
    with fork:
        seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
        torch.manual_seed(int(seed))
        yield


@dataclass
class _Options:
    """The checked scalar options of :func:`fit_network`."""

    loss: Loss
    optimizer: OptimizerName
    learning_rate: float
    momentum: float
    nesterov: bool
    weight_decay: float
    l1: float
    max_iter: int
    batch_size: int
    eval_batch_size: int
    schedule: LRSchedule
    lr_step_size: int
    lr_gamma: float | None
    lr_min: float
    clip_grad_norm: float | None
    max_norm: float | None
    early_stopping: bool
    validation_fraction: float
    monitor: Monitor
    n_iter_no_change: int
    tol: float
    shuffle: bool
    callbacks: tuple
    batch_callbacks: tuple


def _check_bool(name: str, value: Any, suffix: str = " instead") -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"The {name!r} parameter must be a bool. Got {value!r}{suffix}.")
    return value


def _check_options(**kw: Any) -> _Options:
    """Check :func:`fit_network`'s scalar options, in the order of its signature."""
    loss = check_choice("loss", kw["loss"], LOSSES)
    optimizer = check_choice("optimizer", kw["optimizer"], OPTIMIZERS)
    learning_rate = check_scalar("learning_rate", kw["learning_rate"], low=0.0, low_inclusive=False)
    momentum = check_scalar("momentum", kw["momentum"], low=0.0, high=1.0, high_inclusive=False)
    nesterov = _check_bool("nesterov", kw["nesterov"])
    if nesterov and (optimizer != "sgd" or momentum == 0):
        raise ValueError(
            "The 'nesterov' parameter needs optimizer='sgd' and momentum > 0. "
            f"Got optimizer={optimizer!r}, momentum={momentum}."
        )
    weight_decay = check_scalar("weight_decay", kw["weight_decay"], low=0.0)
    l1 = check_scalar("l1", kw["l1"], low=0.0)
    max_iter = check_int("max_iter", kw["max_iter"], low=1)
    batch_size = check_int("batch_size", kw["batch_size"], low=1)
    eval_batch_size = check_int("eval_batch_size", kw["eval_batch_size"], low=1)
    lr_schedule = kw["lr_schedule"]
    schedule = "constant" if lr_schedule is None else check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    lr_step_size = check_int("lr_step_size", kw["lr_step_size"], low=1)
    lr_gamma = kw["lr_gamma"]
    if lr_gamma is not None:
        lr_gamma = check_scalar("lr_gamma", lr_gamma, low=0.0, high=1.0, low_inclusive=False)
    lr_min = check_scalar("lr_min", kw["lr_min"], low=0.0)
    clip_grad_norm = _check_optional_positive("clip_grad_norm", kw["clip_grad_norm"])
    max_norm = _check_optional_positive("max_norm", kw["max_norm"])
    early_stopping = _check_bool("early_stopping", kw["early_stopping"], suffix="")
    validation_fraction = check_probability("validation_fraction", kw["validation_fraction"], open_interval=True)
    monitor = check_choice("monitor", kw["monitor"], MONITORS)
    n_iter_no_change = check_int("n_iter_no_change", kw["n_iter_no_change"], low=1)
    tol = check_scalar("tol", kw["tol"], low=0.0)
    shuffle = _check_bool("shuffle", kw["shuffle"])
    return _Options(
        loss,
        optimizer,
        learning_rate,
        momentum,
        nesterov,
        weight_decay,
        l1,
        max_iter,
        batch_size,
        eval_batch_size,
        schedule,
        lr_step_size,
        lr_gamma,
        lr_min,
        clip_grad_norm,
        max_norm,
        early_stopping,
        validation_fraction,
        monitor,
        n_iter_no_change,
        tol,
        shuffle,
        _check_callbacks("callbacks", kw["callbacks"]),
        _check_callbacks("batch_callbacks", kw["batch_callbacks"]),
    )


@dataclass
class _Data:
    """The checked training data of :func:`fit_network` and its validation split."""

    X: torch.Tensor
    y: torch.Tensor
    layers: list[nn.Linear]
    frozen: set[int]
    X_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    train_index: torch.Tensor | None = None
    train_sst: torch.Tensor | None = None
    n_train: int = 0

    @property
    def has_validation(self) -> bool:
        return self.X_val is not None


def _check_freeze(freeze: Any, n_layers: int) -> set[int]:
    if isinstance(freeze, numbers.Integral):
        freeze = (int(freeze),)
    if not isinstance(freeze, (Sequence, range)) or isinstance(freeze, str):
        raise ValueError(f"The 'freeze' parameter must be a sequence of layer indices. Got {freeze!r}.")
    frozen: set[int] = set()
    for i in freeze:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not -n_layers <= int(i) < n_layers:
            raise ValueError(
                f"The 'freeze' parameter has index {i!r}, but the network has {n_layers} linear "
                f"layers (valid indices {-n_layers} .. {n_layers - 1})."
            )
        frozen.add(int(i) % n_layers)
    return frozen


def _check_validation_data(net: nn.Module, validation_data: Any, X: torch.Tensor, y: torch.Tensor, loss: str):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError(
            "The 'validation_data' parameter must be a pair (X_val, y_val) of tensors. "
            f"Got {type(validation_data).__name__}."
        )
    X_val = _check_inputs(net, validation_data[0], name="X_val")
    y_val = _check_targets(validation_data[1], X_val, loss, name="y_val")
    if X_val.shape[1] != X.shape[1]:
        raise ValueError(
            f"X_val has {X_val.shape[1]} features but X has {X.shape[1]} "
            f"(shapes {tuple(X_val.shape)} and {tuple(X.shape)})."
        )
    if y_val.shape[1:] != y.shape[1:]:
        raise ValueError(f"y_val has shape {tuple(y_val.shape)} but y has {tuple(y.shape)}.")
    return X_val, y_val


def _check_data(
    net: nn.Module,
    X: Any,
    y: Any,
    opts: _Options,
    *,
    generator: torch.Generator | None,
    validation_data: Any,
    freeze: Any,
    shard: Shard | None,
) -> _Data:
    """Check the data, the frozen layers and the shard; draw the validation split."""
    X = _check_inputs(net, X)
    y = _check_targets(y, X, opts.loss)
    _check_generator_device(generator, X.device)
    layers = linear_layers(net)
    data = _Data(X, y, layers, _check_freeze(freeze, len(layers)))
    if validation_data is not None:
        data.X_val, data.y_val = _check_validation_data(net, validation_data, X, y, opts.loss)
    _check_output_shape(net, X, y, opts.loss)
    if data.X_val is not None and data.y_val is not None:
        _check_output_shape(net, data.X_val, data.y_val, opts.loss)
    if shard is not None:
        if not isinstance(shard, Shard):
            raise ValueError(f"The 'shard' parameter must be a dbn._shard.Shard or None. Got {shard!r}.")
        if opts.early_stopping and validation_data is None:
            raise ValueError("Data-parallel training (shard) needs validation_data for early stopping.")
        if data.frozen:
            raise ValueError("Data-parallel training (shard) does not support frozen layers; set freeze=().")
        if opts.optimizer == "lbfgs":
            raise ValueError(
                "Data-parallel training (shard) does not support optimizer='lbfgs' (each process's "
                "line search would see its own rows' loss); choose a first-order optimizer."
            )
    if opts.early_stopping and validation_data is None:
        _split_validation(data, opts.validation_fraction, generator)
    data.n_train = (
        shard.n_total if shard is not None else (X.shape[0] if data.train_index is None else data.train_index.shape[0])
    )
    if opts.loss == "mse" and shard is not None:
        moments = torch.cat([y.sum(dim=0), (y * y).sum(dim=0)]).double()
        shard.all_reduce(moments)
        s1, s2 = moments.chunk(2)
        data.train_sst = (s2 - s1 * s1 / shard.n_total).clamp(min=0.0)
    elif opts.loss == "mse":
        data.train_sst = _total_sum_squares(y if data.train_index is None else y[data.train_index])
    return data


def _split_validation(data: _Data, validation_fraction: float, generator: torch.Generator | None) -> None:
    """Hold out ``validation_fraction`` of the samples (a random split drawn with ``generator``)."""
    n = data.X.shape[0]
    n_val = max(1, int(round(validation_fraction * n)))
    if n - n_val < 1:
        raise ValueError(
            f"validation_fraction={validation_fraction} leaves no training samples out of {n}. "
            "Lower it or pass validation_data."
        )
    perm = torch.randperm(n, generator=generator, device=data.X.device)
    val_index, data.train_index = perm[:n_val], perm[n_val:]
    data.X_val, data.y_val = select_rows(data.X, val_index), data.y[val_index]


@dataclass
class _Parameters:
    """Trainable parameters of :func:`fit_network`: optimizer groups and the step's settings."""

    groups: list[dict]
    frozen_ids: set[int]
    step: _StepConfig


def _parameter_groups(net: nn.Module, layers: list[nn.Linear], frozen: set[int], opts: _Options) -> _Parameters:
    """Weights of the linear layers (decayed, L1, max-norm) and the other trainable parameters."""
    blocks = _layer_parameters(net)
    frozen_ids = {id(p) for i in frozen for p in blocks[i]}
    trainable = [p for p in net.parameters() if p.requires_grad and id(p) not in frozen_ids]
    if not trainable:
        raise ValueError("Every parameter is frozen: nothing to train. Freeze fewer layers.")
    linear_weights = {id(layer.weight) for layer in layers}
    decayed = [p for p in trainable if id(p) in linear_weights]
    others = [p for p in trainable if id(p) not in linear_weights]
    closure = opts.optimizer == "lbfgs"  # no weight decay of its own: the step adds it
    decay = 0.0 if closure else opts.weight_decay
    groups = [{"params": decayed, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
    trainable_ids = {id(p) for p in trainable}
    step = _StepConfig(
        loss=opts.loss,
        params=trainable,
        l1=opts.l1,
        l1_weights=decayed,
        clip_grad_norm=opts.clip_grad_norm,
        max_norm=opts.max_norm,
        max_norm_weights=[layer.weight for layer in hidden_linear_layers(net) if id(layer.weight) in trainable_ids],
        closure=closure,
        weight_decay=opts.weight_decay if closure else 0.0,
    )
    return _Parameters([g for g in groups if g["params"]], frozen_ids, step)


def _checkpoint_settings(
    opts: _Options,
    data: _Data,
    net: nn.Module,
    *,
    batch_size: int,
    freeze: set[int],
    shard: Shard | None,
    validation_data: Any,
) -> str:
    """What a fine-tuning checkpoint must agree on to be resumed: the settings, and
    fingerprints of the data and of the network's starting weights."""
    return settings_text(
        {
            "loss": opts.loss,
            "optimizer": opts.optimizer,
            "learning_rate": opts.learning_rate,
            "momentum": opts.momentum,
            "nesterov": opts.nesterov,
            "weight_decay": opts.weight_decay,
            "l1": opts.l1,
            "max_iter": opts.max_iter,
            "batch_size": batch_size,
            "lr_schedule": opts.schedule,
            "lr_step_size": opts.lr_step_size,
            "lr_gamma": opts.lr_gamma,
            "lr_min": opts.lr_min,
            "clip_grad_norm": opts.clip_grad_norm,
            "max_norm": opts.max_norm,
            "freeze": sorted(freeze),
            "early_stopping": opts.early_stopping,
            "validation_fraction": opts.validation_fraction,
            "monitor": opts.monitor,
            "n_iter_no_change": opts.n_iter_no_change,
            "tol": opts.tol,
            "shuffle": opts.shuffle,
            "X": fingerprint(data.X),
            "y": fingerprint(data.y),
            "validation_data": None if validation_data is None else fingerprint((data.X_val, data.y_val)),
            "network": [[name, list(p.shape)] for name, p in net.state_dict().items()],
            "initial_network": fingerprint(dict(net.state_dict())),
            "device": str(data.X.device),
            "shard": None if shard is None else [shard.offset, shard.n_total, shard.world_size],
        }
    )


def _extend_max_iter(opts: _Options) -> dict:
    """``max_iter`` may grow over a checkpoint's (training goes on), except under the cosine
    schedule, whose rates depend on it."""
    if opts.schedule == "cosine":
        return {}

    def check(saved: Any, state: dict) -> str | None:
        done = state.get("epoch") if isinstance(state, dict) else None
        if isinstance(done, int) and done > opts.max_iter:
            return f"{done} epochs are already trained"
        return None

    return {"max_iter": check}


def _fit_state(
    epoch: int,
    stop: bool,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    history: History,
    stopping: EarlyStopping,
    generator: torch.Generator | None,
    device: torch.device,
) -> dict:
    """Everything :func:`fit_network` needs to resume after ``epoch``."""
    rng = None
    if generator is not None:  # the forked global RNG that drives dropout
        rng = torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device)
    return {
        "epoch": epoch,
        "stopped": stop,
        "net": dict(net.state_dict()),
        "optimizer": opt.state_dict(),
        "scheduler": None if scheduler is None else plain(scheduler.state_dict()),
        "history": [plain(r) for r in history],
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        **stopping.state(),
        "generator": None if generator is None else generator.get_state(),
        "rng": rng,
    }


def _restore_fit_state(
    state: dict,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    history: History,
    stopping: EarlyStopping,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[int, bool]:
    """Restore what :func:`_fit_state` saved; returns ``(first epoch to run, whether finished)``."""
    try:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        history[:] = [dict(r) for r in state["history"]]
        history.best_epoch = stopping.best_epoch = state["best_epoch"]
        history.stopped_early = bool(state["stopped_early"])
        if generator is not None:
            generator.set_state(state["generator"])
            if device.type == "cpu":
                torch.set_rng_state(state["rng"])
            else:
                torch.cuda.set_rng_state(state["rng"], device)
        best_state = state["best_state"]
        if best_state is not None:
            best_state = {k: v.to(device) for k, v in best_state.items()}
        stopping.load_state(
            float(state["best_value"]),
            best_state,
            int(state["epochs_no_change"]),
            float(state.get("best_tie", math.inf)),
        )
        return int(state["epoch"]) + 1, bool(state["stopped"])
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"The fine-tuning checkpoint does not fit this run ({type(exc).__name__}: {exc}). Delete the "
            "checkpoint directory to start over, or use another 'checkpoint_dir'."
        ) from exc


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def predict_logits(net: nn.Module, X: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Outputs of ``net`` on ``X`` in eval mode, in batches, without autograd.

    The network's training/eval mode is restored afterwards. On the CPU a plain
    ``nn.Sequential`` (without hooks) runs its ``nn.Linear`` layers through oneDNN and its
    ``nn.Sigmoid`` layers through the vectorised loop only (:mod:`dbn._invariant`): in float32
    a sample's output is then the same, bit for bit, whatever the batch it comes in and the
    thread count (within float32 rounding of ``net(X)``).

    Parameters
    ----------
    net : nn.Module
    X : Tensor of shape (n_samples, n_features)
        On the network's device and dtype.
    batch_size : int, default=1000

    Returns
    -------
    Tensor of shape (n_samples, n_outputs)
        Logits for a classifier (apply ``softmax`` for probabilities).

    Examples
    --------
    >>> net = build_mlp(3, (4,), 2, dropout=0.5)
    >>> out = predict_logits(net, torch.ones(10, 3), batch_size=4)
    >>> out.shape, bool(torch.allclose(out, predict_logits(net, torch.ones(10, 3))))
    (torch.Size([10, 2]), True)
    >>> X = torch.randn(7, 3)
    >>> torch.equal(predict_logits(net, X)[4], predict_logits(net, X[4:5])[0])
    True
    """
    X = _check_inputs(net, X)
    batch_size = chunk_rows(X, check_int("batch_size", batch_size, low=1))
    # on the CPU a plain nn.Sequential runs its linear and sigmoid layers in the forms whose
    # result does not depend on the thread count, nor a sample's on the batch (dbn._invariant)
    forward = (SequentialForward.of(net) if X.device.type == "cpu" else None) or net
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            buffer = sparse_buffer(X, batch_size)
            outputs = [
                forward(take_rows(X, slice(s, s + batch_size), buffer)) for s in range(0, X.shape[0], batch_size)
            ]
    finally:
        net.train(was_training)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def evaluate(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: Loss = "cross_entropy",
    batch_size: int = 1000,
) -> tuple[float, float]:
    """Mean loss and score of ``net`` on ``(X, y)`` in eval mode, in batches, without autograd.

    The score is the accuracy for ``loss="cross_entropy"``, R^2 (uniform average over
    outputs) for ``loss="mse"`` and the subset accuracy for ``loss="binary_cross_entropy"``;
    the losses are those of :func:`fit_network`.

    Parameters
    ----------
    net : nn.Module
    X : Tensor of shape (n_samples, n_features)
    y : Tensor
        As in :func:`fit_network`.
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}, default="cross_entropy"
    batch_size : int, default=1000

    Returns
    -------
    loss : float
    score : float

    Examples
    --------
    >>> net = build_mlp(2, (), 2)
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.eye(2))
    >>> evaluate(net, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))[1]
    1.0

    Multi-label targets (one sigmoid per output; the score is the subset accuracy):

    >>> Y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> evaluate(net, torch.tensor([[1.0, -1.0], [1.0, 1.0]]), Y, loss="binary_cross_entropy")[1]
    1.0
    """
    check_choice("loss", loss, LOSSES)
    X = _check_inputs(net, X)
    y = _check_targets(y, X, loss)
    return _evaluate(net, X, y, loss, chunk_rows(X, check_int("batch_size", batch_size, low=1)))


def _evaluate(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str,
    batch_size: int,
    forward: SequentialForward | None = None,
) -> tuple[float, float]:
    """:func:`evaluate` on checked inputs, with ``forward`` (default ``net``) for the passes."""
    was_training = net.training
    net.eval()
    loss_fn = _loss_fn(loss)
    loss_sum = torch.zeros((), device=X.device, dtype=torch.float64)
    stat: torch.Tensor | None = None
    buffer = sparse_buffer(X, batch_size)
    try:
        with torch.no_grad():
            for s in range(0, X.shape[0], batch_size):
                X_batch, y_batch = take_rows(X, slice(s, s + batch_size), buffer), y[s : s + batch_size]
                out = net(X_batch) if forward is None else forward(X_batch)
                if loss != "cross_entropy" and out.shape != y_batch.shape:
                    raise ValueError(
                        f"The network outputs shape {tuple(out.shape[1:])} per sample but y has "
                        f"{tuple(y_batch.shape[1:])}."
                    )
                loss_sum += loss_fn(out, y_batch, reduction="sum") / (1 if loss == "cross_entropy" else out.shape[1])
                if loss == "cross_entropy":
                    part = (out.argmax(dim=1) == y_batch).sum(dtype=torch.float64)
                elif loss == "binary_cross_entropy":
                    part = _subset_correct(out, y_batch)
                else:
                    part = ((out - y_batch) ** 2).sum(dim=0, dtype=torch.float64)
                stat = part if stat is None else stat + part
    finally:
        net.train(was_training)
    n = X.shape[0]
    assert stat is not None
    mean_loss = float(loss_sum) / n
    score = float(stat) / n if loss != "mse" else _r2(stat, _total_sum_squares(y))
    return mean_loss, score
