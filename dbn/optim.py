"""The one optimizer factory of the package (fine-tuning and autoencoder training).

Examples
--------
>>> from torch import nn
>>> type(make_optimizer("adadelta", nn.Linear(2, 1).parameters(), learning_rate=1.0)).__name__
'Adadelta'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._options import OPTIMIZERS, OptimizerName
from ._validation import check_choice

__all__ = ["make_optimizer", "MOMENTUM_OPTIMIZERS", "OptimizerName", "OPTIMIZERS", "LBFGS_ITERATIONS", "LBFGS_HISTORY"]

#: the optimizers that take a ``momentum``
MOMENTUM_OPTIMIZERS: tuple[str, ...] = ("sgd", "rmsprop")
#: ``"lbfgs"``: iterations (each with a strong-Wolfe line search) per mini-batch, as Hinton and
#: Salakhutdinov (2006) ran three line searches of conjugate gradients per mini-batch
LBFGS_ITERATIONS = 3
#: ``"lbfgs"``: curvature pairs kept (two parameter-sized vectors each)
LBFGS_HISTORY = 10


def make_optimizer(
    name: OptimizerName | Callable[..., torch.optim.Optimizer],
    params: Iterable[Any],
    *,
    learning_rate: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer by name, with its default settings apart from these.

    Parameters
    ----------
    name : {"sgd", "adam", "rmsprop", "adagrad", "adadelta", "lbfgs"} or callable
        The optimizer, or a callable ``params -> Optimizer`` (then the other settings are
        ignored). ``"lbfgs"`` is ``torch.optim.LBFGS`` with :data:`LBFGS_ITERATIONS`
        iterations per step, each with a strong-Wolfe line search, and :data:`LBFGS_HISTORY`
        curvature pairs; its ``step`` needs a closure that re-evaluates the loss, and it has
        no weight decay of its own (put the penalty in the closure's loss), so every group
        must have ``weight_decay=0``. Its learning rate is the line search's first step
        (``1.0`` is usual).
    params : iterable of Parameter or of param-group dicts
        Param groups may set their own ``weight_decay``.
    learning_rate : float
    momentum : float, default=0.0
        For ``"sgd"`` and ``"rmsprop"`` (see :data:`MOMENTUM_OPTIMIZERS`); ignored by the others.
    nesterov : bool, default=False
        For ``"sgd"``.
    weight_decay : float, default=0.0
        Default L2 coefficient (torch's coupled weight decay) of the groups that set none.

    Returns
    -------
    torch.optim.Optimizer

    Examples
    --------
    >>> from torch import nn
    >>> opt = make_optimizer("sgd", nn.Linear(2, 1).parameters(), learning_rate=0.1, momentum=0.9)
    >>> opt.defaults["momentum"]
    0.9
    """
    if callable(name):
        return name(params)
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "lbfgs":
        return _lbfgs(params, learning_rate, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.Adadelta(params, lr=learning_rate, weight_decay=weight_decay)


def _lbfgs(params: Iterable[Any], learning_rate: float, weight_decay: float) -> torch.optim.LBFGS:
    """``torch.optim.LBFGS`` over every parameter of ``params`` (it takes one group)."""
    groups = list(params)
    if weight_decay or any(isinstance(g, dict) and g.get("weight_decay", 0.0) for g in groups):
        raise ValueError(
            "optimizer='lbfgs' has no weight decay of its own: add the L2 penalty to the loss "
            "of its closure and pass weight_decay=0 (fit_network does this for you)."
        )
    flat = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    return torch.optim.LBFGS(
        flat, lr=learning_rate, max_iter=LBFGS_ITERATIONS, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe"
    )
