"""Unit types of a restricted Boltzmann machine.

Each unit type is a small stateless object that knows, for a layer of units with bias ``b``
and total input ``x`` from the other layer:

* ``mean(x)`` - the conditional mean of the units given their total input;
* ``sample(mean, generator)`` - a sample from that conditional;
* ``bias_energy(v, b)`` - the unit's own term of the energy ``E(v, h)``;
* ``free_energy_term(x)`` - ``-log sum_u exp(u * x)`` over the unit's states, used when the
  layer is summed (integrated) out.

New unit types subclass :class:`Units` and are registered in :data:`UNIT_TYPES`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ._linalg import bernoulli_sample

__all__ = ["Units", "BernoulliUnits", "GaussianUnits", "UNIT_TYPES", "get_units", "UnitName"]

UnitName = Literal["bernoulli", "gaussian"]


class Units:
    """Base class of a unit type; see the module docstring for the contract.

    Examples
    --------
    >>> get_units("bernoulli").name
    'bernoulli'
    """

    name: str = ""
    #: whether data for this layer must lie in [0, 1]
    unit_interval: bool = False

    def mean(self, total_input: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def bias_energy(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def free_energy_term(self, total_input: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BernoulliUnits(Units):
    """Binary units with states {0, 1}: ``p(u=1 | x) = sigmoid(x)``.

    Examples
    --------
    >>> BernoulliUnits().mean(torch.zeros(2))
    tensor([0.5000, 0.5000])
    """

    name = "bernoulli"
    unit_interval = True

    def mean(self, total_input: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(total_input)

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # the package's one Bernoulli primitive: uniform + compare (``torch.rand(...) < mean``)
        return bernoulli_sample(mean, generator)

    def bias_energy(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return -(x @ bias)

    def free_energy_term(self, total_input: torch.Tensor) -> torch.Tensor:
        # -log(1 + exp(x)), stable
        return -F.softplus(total_input)


class GaussianUnits(Units):
    """Real-valued units with unit variance: ``p(u | x) = N(x, 1)``.

    The energy term is ``||u - b||^2 / 2``, so the conditional mean is ``b + W^T h``. Use it for
    standardised (zero mean, unit variance) real-valued data.

    Examples
    --------
    >>> GaussianUnits().mean(torch.tensor([1.5]))
    tensor([1.5000])
    """

    name = "gaussian"
    unit_interval = False

    def mean(self, total_input: torch.Tensor) -> torch.Tensor:
        return total_input

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + noise

    def bias_energy(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x - bias) ** 2).sum(dim=-1)

    def free_energy_term(self, total_input: torch.Tensor) -> torch.Tensor:
        # -log of the Gaussian integral over u of exp(u x - u^2/2)
        return -(0.5 * total_input**2 + 0.5 * math.log(2 * math.pi))


UNIT_TYPES: dict[str, Units] = {"bernoulli": BernoulliUnits(), "gaussian": GaussianUnits()}


def get_units(name: str | Units, *, parameter: str = "visible") -> Units:
    """Look up a unit type by name (or return a :class:`Units` instance unchanged).

    Examples
    --------
    >>> get_units("gaussian")
    GaussianUnits()
    """
    if isinstance(name, Units):
        return name
    try:
        return UNIT_TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"The {parameter!r} parameter must be one of {tuple(UNIT_TYPES)}. Got {name!r} instead."
        ) from None
