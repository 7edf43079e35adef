"""Argument checks shared by the functional code, the modules and the trainers.

Each check raises ``ValueError`` (or ``TypeError``) with a message that names the
parameter, what it must be and what was given, in scikit-learn's message shape.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import torch

__all__ = [
    "check_choice",
    "check_scalar",
    "check_int",
    "check_probability",
    "check_data_tensor",
    "check_finite_parameters",
    "per_layer",
    "DivergenceError",
    "machine_memory",
    "check_memory",
    "clip_batch_size",
]


class DivergenceError(FloatingPointError, ValueError):
    """Raised when training produces NaN or infinite values.

    It subclasses both ``FloatingPointError`` and ``ValueError`` so that callers can catch
    it either way.

    Examples
    --------
    >>> issubclass(DivergenceError, ValueError)
    True
    """


_Choice = TypeVar("_Choice", bound=str)


def check_choice(name: str, value: Any, choices: Sequence[_Choice]) -> _Choice:
    """Check that ``value`` is one of ``choices`` (typed as the choices' ``Literal`` alias).

    Examples
    --------
    >>> check_choice("visible", "gaussian", ("bernoulli", "gaussian"))
    'gaussian'
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"The {name!r} parameter must be one of {tuple(choices)}. Got {value!r} instead.")
    return cast(_Choice, value)


def check_scalar(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a finite real number in the given interval.

    Examples
    --------
    >>> check_scalar("learning_rate", 0.1, low=0, low_inclusive=False)
    0.1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"The {name!r} parameter must be a finite real number. Got {value!r} instead.")
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    opening = "[" if low_inclusive and low is not None else "("
    closing = "]" if high_inclusive and high is not None else ")"
    interval = f"{opening}{lo}, {hi}{closing}"
    number = float(value)  # the value returned, and the one checked against the bounds
    bad_low = low is not None and (number < low or (number == low and not low_inclusive))
    bad_high = high is not None and (number > high or (number == high and not high_inclusive))
    if bad_low or bad_high:
        raise ValueError(f"The {name!r} parameter must be a float in {interval}. Got {value!r} instead.")
    return number


def check_int(name: str, value: Any, *, low: int | None = None) -> int:
    """Check that ``value`` is an integer no smaller than ``low``.

    Examples
    --------
    >>> check_int("k", 1, low=1)
    1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"The {name!r} parameter must be an int. Got {value!r} instead.")
    if low is not None and value < low:
        raise ValueError(f"The {name!r} parameter must be an int in the range [{low}, inf). Got {value!r} instead.")
    return int(value)


def check_probability(name: str, value: Any, *, open_interval: bool = False) -> float:
    """Check that ``value`` lies in [0, 1] (or (0, 1) when ``open_interval``).

    Examples
    --------
    >>> check_probability("sparsity_target", 0.1, open_interval=True)
    0.1
    """
    return check_scalar(
        name, value, low=0.0, high=1.0, low_inclusive=not open_interval, high_inclusive=not open_interval
    )


def check_data_tensor(
    X: torch.Tensor, *, name: str = "X", n_features: int | None = None, unit_interval: bool = False
) -> torch.Tensor:
    """Check a 2-D float data tensor: non-empty, finite, right width, optionally in [0, 1].

    Examples
    --------
    >>> check_data_tensor(torch.zeros(2, 3), n_features=3).shape
    torch.Size([2, 3])
    """
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor. Got {type(X).__name__} instead.")
    if X.dim() != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_samples, n_features). Got shape {tuple(X.shape)}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(X.shape)}. At least one sample and one feature are required.")
    if not X.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor. Got dtype {X.dtype}.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but the model expects {n_features} "
            f"(shape {tuple(X.shape)} vs (n_samples, {n_features}))."
        )
    # one pass, no temporary of the data's size: min and max propagate NaN and expose +-inf
    values = X.detach().values() if X.layout == torch.sparse_csr else X.detach()  # sparse: its non-zeros
    lo, hi = (float(t) for t in torch.aminmax(values)) if values.numel() else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinity. Remove or impute those values first.")
    if unit_interval and (lo < 0 or hi > 1):
        raise ValueError(
            f"{name} has values outside [0, 1] (min {lo:.4g}, max {hi:.4g}), which Bernoulli visible units "
            "cannot model. Scale the data to [0, 1] (e.g. MinMaxScaler) or use visible='gaussian' on "
            "standardised data."
        )
    return X


def check_finite_parameters(module: torch.nn.Module, *, where: str, hint: str) -> None:
    """Raise :class:`DivergenceError` if any parameter of ``module`` is NaN or infinite.

    Examples
    --------
    >>> check_finite_parameters(torch.nn.Linear(2, 2), where="epoch 1", hint="")
    """
    for pname, p in module.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise DivergenceError(
                f"Training diverged at {where}: parameter {pname!r} has NaN or infinite values. {hint}"
            )


def per_layer(name: str, value: Any, n_layers: int) -> list:
    """Broadcast a single setting to ``n_layers`` layers, or check a per-layer sequence.

    Examples
    --------
    >>> per_layer("learning_rate", 0.1, 3)
    [0.1, 0.1, 0.1]
    >>> per_layer("learning_rate", (0.1, 0.05), 2)
    [0.1, 0.05]
    """
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ValueError(
                f"The {name!r} parameter has {len(value)} entries but there are {n_layers} layers. "
                "Give one value per layer or a single value for all."
            )
        return list(value)
    return [value] * n_layers


def machine_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes the machine has for tensors on ``device``: the CUDA device's total memory, else
    the total RAM (``psutil`` when installed, else ``os.sysconf``); ``None`` when unknown.

    Examples
    --------
    >>> machine_memory("cpu") > 0
    True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needs: dict[str, tuple[int, str]], *, device: torch.device | str, owner: str) -> None:
    """Refuse sizes whose tensors would not fit in the machine's memory, before allocating.

    ``needs`` maps a parameter name to ``(bytes, what)``: the bytes its setting makes the
    model allocate and a description (e.g. ``"the weights (10 x 64 float32)"``). A
    ``ValueError`` names the first parameter whose bytes, or the total, exceed
    :func:`machine_memory`.

    Examples
    --------
    >>> check_memory({"n_components": (8 * 10**15, "the weights")}, device="cpu", owner="RBMTransformer")
    Traceback (most recent call last):
    ...
    ValueError: The 'n_components' parameter of RBMTransformer needs 8000000000000000 bytes ...
    """
    available = machine_memory(device)
    if available is None:
        return
    total = sum(n for n, _ in needs.values())
    for name, (n_bytes, what) in sorted(needs.items(), key=lambda item: -item[1][0]):
        if n_bytes > available or total > available:
            raise ValueError(
                f"The {name!r} parameter of {owner} needs {n_bytes} bytes for {what} "
                f"({total} bytes in all), more than the {available} bytes of memory of {torch.device(device)}. "
                f"Lower {name!r}."
            )


def clip_batch_size(batch_size: int, n_samples: int) -> int:
    """``batch_size`` clipped to ``[1, n_samples]``, warning as scikit-learn's MLP does.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     clip_batch_size(500, 300), len(caught)
    (300, 1)
    """
    if batch_size > n_samples or batch_size < 1:
        warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
    return int(min(max(batch_size, 1), max(n_samples, 1)))
