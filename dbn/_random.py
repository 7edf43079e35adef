"""Randomness and device resolution: ``random_state`` -> ``torch.Generator``.

Library code never seeds torch globally. Every sampling or initialisation call takes a
``generator`` made here, living on the same device as the tensors it samples.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["resolve_device", "make_generator", "spawn_seed", "check_generator_device"]

_MAX_SEED = 2**63 - 1


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a device setting into a ``torch.device``, checking that it is usable.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"cpu"`` for the CPU, ``"cuda"`` / ``"cuda:N"`` for a GPU, ``"auto"``
        for CUDA when available and the CPU otherwise.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> resolve_device(None)
    device(type='cpu')
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"The 'device' parameter must be 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device. Got {device!r} instead."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter is {device!r} but CUDA is not available on this machine. "
            "Use device='cpu' (or 'auto')."
        )
    return dev


def spawn_seed(random_state) -> int:
    """Draw one integer seed from ``random_state`` (None, int, RandomState or Generator).

    ``None`` draws from numpy's global random state, like scikit-learn does, so that
    ``np.random.seed`` makes runs repeatable.

    Examples
    --------
    >>> spawn_seed(3) == spawn_seed(3)
    True
    """
    if isinstance(random_state, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=random_state).item())
    if random_state is None or random_state is np.random:
        return int(np.random.mtrand._rand.randint(0, 2**62, dtype=np.int64))
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"The 'random_state' parameter must be a non-negative int. Got {random_state}.")
        return int(random_state) % _MAX_SEED
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**62, dtype=np.int64))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**62))
    raise ValueError(
        "The 'random_state' parameter must be None, an int, a numpy RandomState or Generator, "
        f"or a torch.Generator. Got {random_state!r} instead."
    )


def make_generator(random_state=None, device: str | torch.device | None = None) -> torch.Generator:
    """Make a ``torch.Generator`` on ``device`` seeded from ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy RandomState/Generator or torch.Generator
        Where the seed comes from. A ``torch.Generator`` on the right device is returned as is.
    device : str, torch.device or None
        Device of the generator; it must match the device of the tensors it samples.

    Returns
    -------
    torch.Generator

    Examples
    --------
    >>> g = make_generator(0)
    >>> a = torch.rand(3, generator=g)
    >>> b = torch.rand(3, generator=make_generator(0))
    >>> bool(torch.equal(a, b))
    True
    """
    dev = resolve_device(device)
    if isinstance(random_state, torch.Generator) and random_state.device.type == dev.type:
        return random_state
    gen = torch.Generator(device=dev)
    gen.manual_seed(spawn_seed(random_state))
    return gen


def check_generator_device(generator: torch.Generator | None, device: torch.device) -> None:
    """Raise ``ValueError`` unless ``generator`` is None or a ``torch.Generator`` on ``device``'s type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"The 'generator' parameter must be a torch.Generator or None. Got {type(generator).__name__}."
        )
    if generator.device.type != device.type:
        raise ValueError(
            f"The 'generator' parameter lives on {generator.device} but the data is on {device}. "
            f"Make it with torch.Generator(device={str(device)!r}) (or dbn._random.make_generator)."
        )
