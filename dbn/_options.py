"""Every option list of the package, defined once.

Each option is a ``Literal`` alias (for type hints and the documentation) and a tuple derived
from it with :func:`typing.get_args` (for validation and error messages). Modules import both
from here instead of spelling the choices again.

Examples
--------
>>> from dbn._options import OPTIMIZERS
>>> OPTIMIZERS
('sgd', 'adam', 'rmsprop', 'adagrad', 'adadelta', 'lbfgs')
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Literal, get_args

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "Init",
    "INITS",
    "Loss",
    "LOSSES",
    "OptimizerName",
    "OPTIMIZERS",
    "FitLRSchedule",
    "FIT_LR_SCHEDULES",
    "Monitor",
    "MONITORS",
    "VisibleType",
    "VISIBLE_TYPES",
    "PretrainKind",
    "PRETRAIN_KINDS",
    "Propagate",
    "PROPAGATES",
    "CorruptionName",
    "CORRUPTIONS",
    "Head",
    "HEADS",
    "RBMLRSchedule",
    "RBM_LR_SCHEDULES",
    "parse_layer_sizes",
    "RBMSampler",
    "RBM_SAMPLERS",
]

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "maxout"]
Init = Literal["normal", "xavier", "he"]
Loss = Literal["cross_entropy", "mse", "binary_cross_entropy"]
OptimizerName = Literal["sgd", "adam", "rmsprop", "adagrad", "adadelta", "lbfgs"]
FitLRSchedule = Literal["constant", "step", "exponential", "cosine"]
Monitor = Literal["valid_loss", "valid_score"]
VisibleType = Literal["bernoulli", "gaussian"]
PretrainKind = Literal["rbm", "dae"]
Propagate = Literal["probs", "samples"]
CorruptionName = Literal["mask", "gaussian", "salt_pepper"]
Head = Literal["softmax", "linear"]
RBMLRSchedule = Literal["constant", "exponential", "inverse"]
RBMSampler = Literal["gibbs", "pt"]

ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)
INITS: tuple[Init, ...] = get_args(Init)
LOSSES: tuple[Loss, ...] = get_args(Loss)
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)
FIT_LR_SCHEDULES: tuple[FitLRSchedule, ...] = get_args(FitLRSchedule)
MONITORS: tuple[Monitor, ...] = get_args(Monitor)
VISIBLE_TYPES: tuple[VisibleType, ...] = get_args(VisibleType)
PRETRAIN_KINDS: tuple[PretrainKind, ...] = get_args(PretrainKind)
PROPAGATES: tuple[Propagate, ...] = get_args(Propagate)
CORRUPTIONS: tuple[CorruptionName, ...] = get_args(CorruptionName)
HEADS: tuple[Head, ...] = get_args(Head)
RBM_LR_SCHEDULES: tuple[RBMLRSchedule, ...] = get_args(RBMLRSchedule)
RBM_SAMPLERS: tuple[RBMSampler, ...] = get_args(RBMSampler)


def parse_layer_sizes(sizes: Any, name: str = "hidden_layer_sizes") -> tuple[int, ...]:
    """Hidden-layer sizes as a tuple of positive ints (an int is one layer).

    Raises ``ValueError`` naming the parameter for an empty sequence, a non-integer, a bool or
    a size below 1.

    Examples
    --------
    >>> parse_layer_sizes(5), parse_layer_sizes([3, 2])
    ((5,), (3, 2))
    """
    try:
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
    except TypeError:
        sizes = None
    if not sizes or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in sizes):
        raise ValueError(f"The {name!r} parameter must be a non-empty sequence of positive ints. Got {sizes!r}.")
    return tuple(int(s) for s in sizes)
