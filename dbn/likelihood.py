"""Log partition functions and log-likelihoods of RBMs: exact enumeration and AIS.

The log-likelihood of a visible vector under an RBM is ``log p(v) = -F(v) - log Z``. The free
energy ``F`` is cheap (:func:`dbn.functional.free_energy`); the partition function ``Z`` is not:

* :func:`exact_log_partition` sums over every configuration of the smaller layer (tiny models,
  tests, and the hidden layer of narrow RBMs);
* :func:`ais_log_partition` estimates it by annealed importance sampling from a base-rate model
  (Salakhutdinov & Murray, "On the quantitative analysis of deep belief networks", ICML 2008),
  following their released ``RBM_AIS.m``;
* :func:`log_likelihood` turns either into per-sample log-probabilities;
* :func:`reverse_ais_log_likelihood` estimates per-sample log-probabilities directly by reverse
  annealing from the data (RAISE: Burda, Grosse & Salakhutdinov, "Accurate and conservative
  estimates of MRF log-likelihood using reverse annealing", AISTATS 2015).

The two annealed estimates err on opposite sides, so together they bracket the log-likelihood:
AIS's ``log Z`` is a stochastic lower bound on ``log Z`` (its ``Z`` is unbiased; Jensen), so the
log-likelihood ``-F(v) - log Z`` computed from it tends to be too HIGH; reverse AIS's estimate is
a stochastic lower bound on the log-likelihood of the annealing model, which approximates the RBM
and tends to be too LOW (see :func:`reverse_ais_log_likelihood`). Both become exact as the number
of inverse temperatures grows. Both use the same intermediate distributions and Gibbs transitions
(:class:`_AnnealingPath`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from . import functional as Fn
from ._random import check_generator_device
from ._validation import check_choice, check_data_tensor, check_int, check_scalar
from .units import Units, get_units

__all__ = [
    "AISResult",
    "ReverseAISResult",
    "ais_log_partition",
    "ais_schedule",
    "base_rate_bias",
    "effective_sample_size",
    "exact_log_partition",
    "log_likelihood",
    "reverse_ais_log_likelihood",
]

EnumeratedLayer = Literal["auto", "hidden", "visible"]
Schedule = Literal["paper", "linear"]

#: The paper's schedule: 0:0.001:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1.0 (steps per segment).
_PAPER_SEGMENTS: tuple[tuple[float, float, int], ...] = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
_MAX_BITS = 62  # configurations are int64 bit patterns


def _parameters(rbm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Units]:
    for name in ("weight", "visible_bias", "hidden_bias"):
        if not isinstance(getattr(rbm, name, None), torch.Tensor):
            raise TypeError(f"rbm must be a dbn.RBM (with a {name!r} tensor). Got {type(rbm).__name__}.")
    if getattr(rbm, "hidden", "bernoulli") != "bernoulli":
        raise ValueError(f"Only Bernoulli hidden units are supported. Got hidden={rbm.hidden!r}.")
    W, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    if not all(bool(torch.isfinite(p).all()) for p in (W, b, c)):
        raise ValueError("The RBM has NaN or infinite parameters; its partition function is undefined.")
    return W, b, c, get_units(getattr(rbm, "visible", "bernoulli"))


def _log_visible_integral(total_input: torch.Tensor, bias: torch.Tensor, units: Units) -> torch.Tensor:
    """``log sum_v exp(-E_v(v; b) + v . x)`` per row, with ``total_input = b + x``.

    Both unit types satisfy ``E_v(v; b) = E_v(v; 0) - v . b + E_v(0; b)``, so the sum (integral)
    is ``-sum_i free_energy_term(b_i + x_i) - E_v(0; b)``: for Bernoulli units
    ``sum_i softplus(b_i + x_i)``; for unit-variance Gaussian units
    ``sum_i [(b_i + x_i)^2 / 2 + log(2 pi) / 2] - ||b||^2 / 2``.
    """
    zero = torch.zeros_like(bias)
    return -units.free_energy_term(total_input).sum(dim=-1) - units.bias_energy(zero, bias)


def _configurations(start: int, stop: int, n_bits: int, like: torch.Tensor) -> torch.Tensor:
    """Rows ``start..stop-1`` of the table of all binary vectors of length ``n_bits`` (on device)."""
    index = torch.arange(start, stop, device=like.device, dtype=torch.int64)
    shifts = torch.arange(n_bits, device=like.device, dtype=torch.int64)
    return ((index[:, None] >> shifts) & 1).to(like.dtype)


@torch.no_grad()
def exact_log_partition(
    rbm,
    *,
    max_configurations: int = 2**20,
    batch_size: int | None = None,
    layer: EnumeratedLayer = "auto",
) -> float:
    """Exact log partition function of a (small) RBM by enumeration.

    The sum runs over every configuration of one binary layer, the other being summed or
    integrated out analytically; by default the smaller one, and always the hidden layer when
    the visible units are Gaussian. Computed in float64 on the model's device, in chunks of
    bit patterns generated there, with a streaming log-sum-exp.

    Parameters
    ----------
    rbm : RBM
        Model with Bernoulli hidden units and Bernoulli or unit-variance Gaussian visible units.
    max_configurations : int, default=2**20
        Refuse (``ValueError``) to enumerate more configurations than this.
    batch_size : int, optional
        Configurations per chunk; by default about ``2**22`` tensor entries per chunk.
    layer : {"auto", "hidden", "visible"}, default="auto"
        Which layer to enumerate. ``"visible"`` needs Bernoulli visible units.

    Returns
    -------
    float
        ``log Z``.

    Notes
    -----
    Over hidden configurations,
    ``log Z = logsumexp_h [h . c + log sum_v exp(-E_v(v; b) + v . W^T h)]`` where the inner term
    is ``sum_i softplus(b_i + (W^T h)_i)`` for Bernoulli visible units and
    ``sum_i [(b_i + (W^T h)_i)^2 - b_i^2] / 2 + n_visible log(2 pi) / 2`` for Gaussian ones
    (energy ``||v - b||^2 / 2``). Over visible configurations, ``log Z = logsumexp_v -F(v)``.

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> rbm = RBM(3, 2, weight_std=0.0)
    >>> round(exact_log_partition(rbm), 4) == round(5 * math.log(2), 4)
    True
    """
    W, b, c, units = _parameters(rbm)
    max_configurations = check_int("max_configurations", max_configurations, low=1)
    check_choice("layer", layer, ("auto", "hidden", "visible"))
    n_hidden, n_visible = W.shape
    if layer == "auto":
        layer = "hidden" if (n_hidden <= n_visible or units.name != "bernoulli") else "visible"
    if layer == "visible" and units.name != "bernoulli":
        raise ValueError(
            f"layer='visible' needs binary visible units; this RBM has visible={units.name!r}. "
            "Use layer='hidden' (or 'auto')."
        )
    n_bits = n_hidden if layer == "hidden" else n_visible
    if n_bits > _MAX_BITS or 2**n_bits > max_configurations:
        raise ValueError(
            f"Exact enumeration over the {layer} layer needs 2**{n_bits} configurations, more than "
            f"max_configurations={max_configurations}. Use ais_log_partition for models this large "
            "(or raise max_configurations if you have the time)."
        )
    W, b, c = W.double(), b.double(), c.double()
    width = max(n_visible, n_hidden)
    step = check_int("batch_size", batch_size, low=1) if batch_size is not None else max(1, 2**22 // width)
    parts = []
    for start in range(0, 2**n_bits, step):
        s = _configurations(start, min(start + step, 2**n_bits), n_bits, W)
        if layer == "hidden":
            terms = s @ c + _log_visible_integral(torch.addmm(b, s, W), b, units)
        else:
            terms = -Fn.free_energy(s, W, b, c, units)
        parts.append(torch.logsumexp(terms, dim=0))
    return float(torch.logsumexp(torch.stack(parts), dim=0))


def ais_schedule(
    n_betas: int | None = None, *, schedule: Schedule = "paper", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` for AIS.

    Parameters
    ----------
    n_betas : int, optional
        Number of inverse temperatures, endpoints included. ``None`` gives the paper's schedule
        ``0:0.001:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1.0`` (14,501 values).
    schedule : {"paper", "linear"}, default="paper"
        With ``n_betas``: ``"paper"`` keeps the paper's piecewise shape (1/29, 8/29 and 20/29 of
        the steps on [0, 0.5], [0.5, 0.9] and [0.9, 1]); ``"linear"`` spaces them evenly.

    Returns
    -------
    Tensor of shape (n_betas,)

    Examples
    --------
    >>> ais_schedule().shape
    torch.Size([14501])
    >>> ais_schedule(5, schedule="linear")
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    """
    check_choice("schedule", schedule, ("paper", "linear"))
    if n_betas is None:
        segments = _PAPER_SEGMENTS
    else:
        n_betas = check_int("n_betas", n_betas, low=2)
        n_steps = n_betas - 1
        if schedule == "linear" or n_steps < 3:
            return torch.linspace(0.0, 1.0, n_betas, dtype=dtype)
        total = sum(seg[2] for seg in _PAPER_SEGMENTS)
        first = max(1, round(n_steps * _PAPER_SEGMENTS[0][2] / total))
        second = max(1, round(n_steps * _PAPER_SEGMENTS[1][2] / total))
        third = max(1, n_steps - first - second)
        counts = (first, second, third)
        if sum(counts) != n_steps:  # tiny n_steps: take the excess from the middle segment
            counts = (first, n_steps - first - third, third)
        segments = tuple((lo, hi, k) for (lo, hi, _), k in zip(_PAPER_SEGMENTS, counts, strict=True))
    pieces = [torch.linspace(lo, hi, k + 1, dtype=torch.float64)[:-1] for lo, hi, k in segments]
    pieces.append(torch.ones(1, dtype=torch.float64))
    return torch.cat(pieces).to(dtype)


def base_rate_bias(X: torch.Tensor, *, visible: str | Units = "bernoulli", eps: float = 1e-3) -> torch.Tensor:
    """Visible bias of the base-rate model: the zero-weight RBM that fits the data marginals.

    Bernoulli units get ``log(p / (1 - p))`` with ``p`` the mean of each column clipped to
    ``[eps, 1 - eps]``; Gaussian (unit-variance) units get the column means.

    Examples
    --------
    >>> base_rate_bias(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([ 0.0000, -6.9068])
    """
    units = get_units(visible)
    eps = check_scalar("eps", eps, low=0.0, high=0.5, low_inclusive=False, high_inclusive=False)
    X = check_data_tensor(X, name="base_rate", unit_interval=units.unit_interval)
    mean = X.mean(dim=0)
    if units.name == "bernoulli":
        p = mean.clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p)
    return mean


#: Fewer effective chains than this make the weights' spread, and any interval built on it,
#: too uncertain to trust.
_MIN_ESS = 10.0
#: A log-space half-width (three standard errors) above this many nats means the mean weight's
#: relative standard error exceeds 1/3: the point where the old Z-scale interval
#: ``log(mean -/+ 3 stderr)`` reached ``log 0 = -inf``.
_MAX_HALF_WIDTH = 1.0


def effective_sample_size(log_weights: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Effective sample size of importance weights given by their logarithms.

    ``ESS = (sum_i w_i)^2 / sum_i w_i^2 = exp(2 logsumexp(log w) - logsumexp(2 log w))`` (Kish),
    computed in log space so that weights spanning hundreds of nats neither overflow nor
    underflow. For ``n`` weights it lies in ``[1, n]``: ``n`` when they are all equal, close to 1
    when a single weight dominates.

    Parameters
    ----------
    log_weights : Tensor of shape (..., n, ...)
        Log importance weights, floating point. ``-inf`` entries (zero weights) are allowed as
        long as each estimate has a finite one.
    dim : int, default=-1
        The dimension that holds the weights of one estimate.

    Returns
    -------
    Tensor
        ``log_weights`` reduced over ``dim`` (0-d for a 1-D input), clamped to ``[1, n]``
        against rounding.

    Examples
    --------
    >>> effective_sample_size(torch.zeros(4, dtype=torch.float64))
    tensor(4., dtype=torch.float64)
    >>> float(effective_sample_size(torch.tensor([0.0, -60.0, -60.0]))) < 1.0001
    True
    >>> effective_sample_size(torch.log(torch.tensor([[1.0, 1.0], [1.0, 0.0]])), dim=1)
    tensor([2., 1.])
    """
    if not isinstance(log_weights, torch.Tensor) or not log_weights.is_floating_point():
        raise TypeError(f"log_weights must be a floating-point tensor. Got {type(log_weights).__name__}.")
    if log_weights.dim() == 0 or log_weights.shape[dim] == 0:
        raise ValueError(
            f"log_weights needs at least one weight along dim={dim}; got shape {tuple(log_weights.shape)}."
        )
    n = log_weights.shape[dim]
    log_ess = 2 * torch.logsumexp(log_weights, dim=dim) - torch.logsumexp(2 * log_weights, dim=dim)
    return torch.exp(log_ess).clamp(1.0, float(n))


def _log_mean_interval(log_weights: torch.Tensor, *, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log mean w``, the half-width of its 3-standard-error interval in log space, and the ESS.

    Delta method: ``Var(log mean w) ~ Var(mean w) / mean(w)^2 = s^2 / (n mean(w)^2)`` with the
    ``n - 1`` sample variance ``s^2``, which in terms of the ESS is ``(n / ESS - 1) / (n - 1)``.
    Finite whenever the weights are; zero for equal weights.
    """
    n = log_weights.shape[dim]
    log_mean = torch.logsumexp(log_weights, dim=dim) - math.log(n)
    ess = effective_sample_size(log_weights, dim=dim)
    relative_var = (n / ess - 1).clamp(min=0) / (n - 1) if n > 1 else torch.full_like(ess, math.inf)
    return log_mean, 3 * relative_var.sqrt(), ess


@dataclass(frozen=True)
class AISResult:
    """Result of :func:`ais_log_partition`.

    Attributes
    ----------
    log_z : float
        The AIS estimate ``log Z_base + log mean_i w_i``. A stochastic lower bound on ``log Z``
        (its ``Z`` is unbiased, so by Jensen ``E[log Z_hat] <= log Z``; by Markov's inequality it
        exceeds ``log Z`` by ``t`` nats with probability at most ``exp(-t)``), so the
        log-likelihood computed from it is a stochastic upper bound.
    log_z_low, log_z_high : float
        ``log_z -/+ 3 sigma``, with ``sigma^2 = (n / ESS - 1) / (n - 1)`` the delta-method
        variance of ``log mean w`` (the squared relative standard error of the mean weight, with
        the ``n - 1`` sample variance), computed in log space: finite whenever the estimate is.
        It reflects the spread of the weights only; with too few intermediate distributions that
        spread, and the interval, are underestimated. Check :attr:`reliable`. (It replaces
        ``RBM_AIS.m``'s ``log(mean w -/+ 3 stderr)``, which agrees to first order but whose lower
        end is ``-inf`` as soon as ``3 stderr >= mean w``.)
    log_weights : Tensor of shape (n_chains,)
        The log importance weights (float64), ``log Z_B - log Z_base`` in expectation of ``w``.
    log_z_base : float
        Log partition function of the starting distribution (base rate RBM and hidden units).
    n_chains, n_betas : int
        Number of AIS runs and of inverse temperatures (endpoints included).
    time : float
        Wall-clock seconds the annealing took.

    Examples
    --------
    >>> r = AISResult(1.0, 0.9, 1.1, torch.zeros(2), 0.5, 2, 10, 0.01)
    >>> round(r.log_z_high - r.log_z_low, 6)
    0.2
    >>> r.ess
    2.0
    >>> r.reliable
    False
    """

    log_z: float
    log_z_low: float
    log_z_high: float
    log_weights: torch.Tensor
    log_z_base: float
    n_chains: int
    n_betas: int
    time: float

    def __float__(self) -> float:
        return self.log_z

    @property
    def ess(self) -> float:
        """Effective sample size of the importance weights, in ``[1, n_chains]``.

        ``exp(2 logsumexp(log w) - logsumexp(2 log w))``; see :func:`effective_sample_size`.
        """
        return float(effective_sample_size(self.log_weights))

    @property
    def reliable(self) -> bool:
        """Whether the weights are even enough for the interval to be trusted.

        False when the effective sample size is under 10 (too few effective chains to estimate
        the weights' spread; so never with fewer than 10 chains), or when the interval's
        half-width exceeds 1 nat (the mean weight's relative standard error above 1/3, where a
        ``mean -/+ 3 stderr`` interval on the ``Z`` scale would reach zero). :attr:`message`
        then says what to do.
        """
        half_width = max(self.log_z_high - self.log_z, self.log_z - self.log_z_low)
        return self.ess >= _MIN_ESS and half_width <= _MAX_HALF_WIDTH

    @property
    def message(self) -> str:
        """A one-line verdict on the interval, with advice when it is not :attr:`reliable`."""
        ess = self.ess
        if self.reliable:
            return f"AIS interval usable: effective sample size {ess:.1f} of {self.n_chains} chains."
        return (
            f"AIS importance weights too uneven for a trustworthy interval: effective sample size {ess:.1f} "
            f"of {self.n_chains} chains, log Z +/- {self.log_z_high - self.log_z:.2f} nats (3 standard errors). "
            f"Use more chains (n_chains) or more inverse temperatures (n_betas, now {self.n_betas}), or fit "
            "the base rate to the training data (base_rate=X)."
        )


def _resolve_base(base_rate, b: torch.Tensor, units: Units) -> torch.Tensor:
    if base_rate is None:
        return torch.zeros_like(b)
    if not isinstance(base_rate, torch.Tensor):
        raise TypeError(
            "base_rate must be None, a data tensor (n_samples, n_visible) or a visible-bias tensor "
            f"(n_visible,). Got {type(base_rate).__name__}."
        )
    if base_rate.dim() == 2:
        if base_rate.shape[1] != b.shape[0]:
            raise ValueError(
                f"base_rate has {base_rate.shape[1]} features but the RBM has {b.shape[0]} visible units "
                f"(shape {tuple(base_rate.shape)} vs (n_samples, {b.shape[0]}))."
            )
        return base_rate_bias(base_rate, visible=units).to(device=b.device, dtype=b.dtype)
    if base_rate.dim() != 1 or base_rate.shape[0] != b.shape[0]:
        raise ValueError(
            f"base_rate as a visible bias must have shape ({b.shape[0]},); got {tuple(base_rate.shape)}. "
            "Pass the training data as a 2-D tensor to fit the base rate from it."
        )
    if not bool(torch.isfinite(base_rate).all()):
        raise ValueError("base_rate contains NaN or infinity.")
    return base_rate.to(device=b.device, dtype=b.dtype)


def _resolve_betas(n_betas: int | None, betas: torch.Tensor | None, schedule: Schedule) -> list[float]:
    """The inverse temperatures as Python floats (no per-temperature host reads later)."""
    if betas is None:
        return ais_schedule(n_betas, schedule=schedule).tolist()
    if not isinstance(betas, torch.Tensor) or betas.dim() != 1 or betas.shape[0] < 2:
        raise ValueError("betas must be a 1-D tensor of at least 2 inverse temperatures from 0 to 1.")
    betas = betas.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(betas).all()) or betas[0] != 0 or betas[-1] != 1 or bool((betas.diff() < 0).any()):
        raise ValueError(
            f"betas must increase from 0 to 1; got a schedule from {float(betas[0])} to {float(betas[-1])}"
            " that is not non-decreasing or has the wrong endpoints."
        )
    return betas.tolist()


class _AnnealingPath:
    """The intermediate RBMs between a base-rate model (``β = 0``) and the target (``β = 1``).

    Written once for AIS and reverse AIS. With the base model's visible bias ``a`` and the
    target ``(W, b, c)`` (Salakhutdinov & Murray, eq. 13 and ``RBM_AIS.m``)::

        p*_β(v) = exp(-(1 - β) E_v(v; a) - β E_v(v; b)) prod_j (1 + exp(β (c_j + W_j v)))

    i.e. the RBM with weights ``β W``, hidden bias ``β c`` and visible bias ``(1 - β) a + β b``.
    :meth:`log_ratio` gives ``log p*_β(v) - log p*_β'(v)`` at a state (float64, so that large
    free energies cancel exactly); :meth:`sweep` is one block Gibbs sweep ``v -> h -> v`` of the
    RBM at ``β``, which leaves ``p_β`` invariant and is reversible with respect to it. At
    ``β = 0`` the distribution is the base model times ``2^n_hidden`` free hidden units, so
    ``log Z_0 = log Z_A + n_hidden log 2`` (:attr:`log_z_base`).
    """

    def __init__(self, rbm, base_rate: torch.Tensor | None, generator: torch.Generator | None) -> None:
        W, b, c, units = _parameters(rbm)
        a = _resolve_base(base_rate, b, units)
        check_generator_device(generator, W.device)
        self.W, self.Wt, self.a, self.b, self.c, self.units = W, W.t(), a, b, c, units
        self.a64, self.b64 = a.double(), b.double()
        self.log_z_base = float(_log_visible_integral(self.a64, self.a64, units)) + W.shape[0] * math.log(2.0)

    def sample_base(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` exact samples of the base model's visible units."""
        return self.units.sample(self.units.mean(self.a.expand(n, self.W.shape[1])), generator)

    def state_terms(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`log_ratio` and :meth:`sweep` need of a state: ``c + W v`` and ``E_v(v; a) - E_v(v; b)``."""
        v64 = v.double()
        bias_gap = self.units.bias_energy(v64, self.a64) - self.units.bias_energy(v64, self.b64)
        return torch.addmm(self.c, v, self.Wt).double(), bias_gap

    @staticmethod
    def log_ratio(terms: tuple[torch.Tensor, torch.Tensor], beta: float, prev: float) -> torch.Tensor:
        """``log p*_beta(v) - log p*_prev(v)`` per state, from :meth:`state_terms`."""
        x, bias_gap = terms
        return (beta - prev) * bias_gap + (F.softplus(beta * x) - F.softplus(prev * x)).sum(dim=1)

    def sweep(
        self, terms: tuple[torch.Tensor, torch.Tensor], beta: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One Gibbs sweep ``v -> h -> v`` at ``beta`` from the state whose :meth:`state_terms` are given."""
        h = Fn.sample_bernoulli(torch.sigmoid(beta * terms[0]).to(self.W.dtype), generator)
        mixed_bias = torch.lerp(self.a, self.b, beta)
        return self.units.sample(self.units.mean(torch.addmm(mixed_bias, h, self.W, alpha=beta)), generator)


def _check_finite_weights(log_w: torch.Tensor, W: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(log_w).all()):
        raise ValueError(
            f"{what} produced non-finite importance weights: the model's parameters are too large for the "
            f"annealing chain in {W.dtype} (largest |weight| {float(W.abs().max()):.3g}). Check the model for "
            "divergence, or use exact_log_partition for a small model."
        )


@torch.no_grad()
def ais_log_partition(
    rbm,
    *,
    n_chains: int = 100,
    n_betas: int | None = None,
    betas: torch.Tensor | None = None,
    schedule: Schedule = "paper",
    base_rate: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AISResult:
    """Estimate ``log Z`` of an RBM by annealed importance sampling (AIS).

    Parameters
    ----------
    rbm : RBM
        Model with Bernoulli hidden units and Bernoulli or unit-variance Gaussian visible units.
    n_chains : int, default=100
        Number of independent AIS runs, simulated in parallel.
    n_betas : int, optional
        Number of inverse temperatures (endpoints included). ``None`` uses the paper's 14,501;
        otherwise see ``schedule``.
    betas : Tensor of shape (n_betas,), optional
        An explicit increasing schedule from 0 to 1; overrides ``n_betas`` and ``schedule``.
    schedule : {"paper", "linear"}, default="paper"
        Shape of the schedule when ``n_betas`` is given; see :func:`ais_schedule`.
    base_rate : Tensor, optional
        The starting model's visible bias ``(n_visible,)``, or data ``(n_samples, n_visible)`` to
        fit it from (:func:`base_rate_bias`). ``None`` starts from the uniform distribution
        (Bernoulli) or ``N(0, I)`` (Gaussian). Fitting it to the training data makes AIS much
        more accurate.
    generator : torch.Generator, optional
        Random source, on the model's device.

    Returns
    -------
    AISResult
        The estimate, its interval (in log space, always finite), the weights, their effective
        sample size (``.ess``) and whether they are even enough to trust (``.reliable``).

    Notes
    -----
    The intermediate distributions and transitions are those of :class:`_AnnealingPath`
    (shared with :func:`reverse_ais_log_likelihood`). Each run starts from an exact sample of
    ``p_0`` and accumulates ``log w = sum_k [log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1})]``, each
    term evaluated at one state in float64 so that large free energies cancel exactly;
    ``log Z ≈ log Z_0 + log mean(w)``. The estimate of ``Z`` is unbiased, so that of ``log Z``
    tends to be low (Jensen), never high on average: the log-likelihood ``-F(v) - log Z``
    computed from it is a stochastic UPPER bound. :func:`reverse_ais_log_likelihood` errs on
    the other side. The loop over temperatures reads nothing back to the host.

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM(8, 4, weight_std=0.5, generator=g)
    >>> result = ais_log_partition(rbm, n_chains=50, n_betas=500, generator=g)
    >>> abs(result.log_z - exact_log_partition(rbm)) < 0.05
    True
    >>> result.log_z_low < result.log_z < result.log_z_high, result.reliable
    (True, True)
    """
    n_chains = check_int("n_chains", n_chains, low=2)
    beta_list = _resolve_betas(n_betas, betas, schedule)
    path = _AnnealingPath(rbm, base_rate, generator)
    start_time = time.perf_counter()

    v = path.sample_base(n_chains, generator)
    terms = path.state_terms(v)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=path.W.device)
    last = len(beta_list) - 1
    for k in range(1, last + 1):
        beta, prev = beta_list[k], beta_list[k - 1]
        log_w += path.log_ratio(terms, beta, prev)  # log p*_k(v) - log p*_{k-1}(v) at the current state
        if k < last:
            terms = path.state_terms(path.sweep(terms, beta, generator))

    _check_finite_weights(log_w, path.W, "AIS")
    log_mean, half_width, _ = (float(t) for t in _log_mean_interval(log_w))
    log_z = path.log_z_base + log_mean
    return AISResult(
        log_z=log_z,
        log_z_low=log_z - half_width,
        log_z_high=log_z + half_width,
        log_weights=log_w,
        log_z_base=path.log_z_base,
        n_chains=n_chains,
        n_betas=len(beta_list),
        time=time.perf_counter() - start_time,
    )


@torch.no_grad()
def log_likelihood(rbm, X: torch.Tensor, log_z: float | AISResult | torch.Tensor) -> torch.Tensor:
    """Log-probability (density for Gaussian visible units) of each row of ``X``.

    ``log p(v) = -F(v) - log Z``, with the free energy computed in float64.

    Parameters
    ----------
    rbm : RBM
    X : Tensor of shape (n_samples, n_visible)
    log_z : float, 0-d Tensor or AISResult
        The log partition function (:func:`exact_log_partition` or :func:`ais_log_partition`).

    Returns
    -------
    Tensor of shape (n_samples,), float64, on the model's device

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> rbm = RBM(4, 3, weight_std=0.0)
    >>> log_likelihood(rbm, torch.ones(2, 4), exact_log_partition(rbm))
    tensor([-2.7726, -2.7726], dtype=torch.float64)
    """
    W, b, c, units = _parameters(rbm)
    if isinstance(log_z, AISResult):
        log_z = log_z.log_z
    elif isinstance(log_z, torch.Tensor):
        if log_z.numel() != 1:
            raise ValueError(f"log_z must be a scalar; got a tensor of shape {tuple(log_z.shape)}.")
        log_z = float(log_z)
    log_z = check_scalar("log_z", log_z)
    X = check_data_tensor(X, n_features=W.shape[1], unit_interval=units.unit_interval)
    X = X.to(device=W.device, dtype=torch.float64)
    return -Fn.free_energy(X, W.double(), b.double(), c.double(), units) - log_z


@dataclass(frozen=True)
class ReverseAISResult:
    """Result of :func:`reverse_ais_log_likelihood`.

    Attributes
    ----------
    mean : float
        Average estimated log-likelihood over the rows of ``X`` (nats): a stochastic lower bound
        in the sense of :func:`reverse_ais_log_likelihood`.
    values : Tensor of shape (n_samples,)
        Per-row estimates ``log mean_chains w`` (float64, on the model's device).
    log_weights : Tensor of shape (n_samples, n_chains)
        Per-chain log weights ``log w``; ``E[w] = p_ann(v)``, the annealing model's probability.
    ess : Tensor of shape (n_samples,)
        Effective sample size of each row's weights, in ``[1, n_chains]``.
    std_error : float
        Standard error of :attr:`mean` as an estimate of the expected log-likelihood:
        ``std(values) / sqrt(n_samples)`` (``n - 1`` in the variance). The rows' estimates are
        independent, so it covers the Monte Carlo noise and the spread of ``log p(v)`` across
        the rows together (the latter usually dominates); NaN for a single row. Not comparable
        with :class:`AISResult`'s interval, which covers the noise in ``log Z`` only.
    mean_low, mean_high : float
        ``mean -/+ 3 std_error``.
    log_z_base : float
        Log partition function of the base distribution (``β = 0``).
    n_chains, n_betas : int
        Chains per row and inverse temperatures (endpoints included).
    time : float
        Wall-clock seconds the annealing took.

    Examples
    --------
    >>> r = ReverseAISResult(-5.0, torch.tensor([-4.0, -6.0]), torch.zeros(2, 1), torch.ones(2), 1.0,
    ...                      -8.0, -2.0, 3.0, 1, 10, 0.01)
    >>> float(r), r.mean_high - r.mean_low
    (-5.0, 6.0)
    """

    mean: float
    values: torch.Tensor
    log_weights: torch.Tensor
    ess: torch.Tensor
    std_error: float
    mean_low: float
    mean_high: float
    log_z_base: float
    n_chains: int
    n_betas: int
    time: float

    def __float__(self) -> float:
        return self.mean


def _reverse_anneal(
    path: _AnnealingPath, X: torch.Tensor, n_chains: int, beta_list: list[float], generator: torch.Generator | None
) -> torch.Tensor:
    """Log weights ``(n_rows, n_chains)`` of reverse AIS from the rows of ``X`` (see the caller's Notes)."""
    W = path.W
    top = -Fn.free_energy(X.double(), W.double(), path.b64, path.c.double(), path.units)  # log p*_1(v) = -F(v)
    log_w = (top - path.log_z_base).repeat_interleave(n_chains)
    terms = path.state_terms(X.repeat_interleave(n_chains, dim=0))  # chains of a row are adjacent
    for k in range(len(beta_list) - 1, 0, -1):
        beta, prev = beta_list[k], beta_list[k - 1]
        terms = path.state_terms(path.sweep(terms, beta, generator))  # x_{k-1} ~ T_k(. | x_k)
        log_w -= path.log_ratio(terms, beta, prev)  # + log p*_{k-1}(x_{k-1}) - log p*_k(x_{k-1})
    return log_w.view(X.shape[0], n_chains)


@torch.no_grad()
def reverse_ais_log_likelihood(
    rbm,
    X: torch.Tensor,
    *,
    n_betas: int | None = None,
    betas: torch.Tensor | None = None,
    schedule: Schedule = "paper",
    n_chains: int = 1,
    base_rate: torch.Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> ReverseAISResult:
    """Estimate the log-likelihood of each row of ``X`` by reverse annealing (RAISE).

    The Reverse AIS Estimator of Burda, Grosse & Salakhutdinov (AISTATS 2015): chains start at
    the data, each test vector with its hidden units sampled from the model's posterior, and are
    annealed from the model (``β = 1``) down to the base-rate model (``β = 0``) through the same
    intermediate distributions and Gibbs transitions as :func:`ais_log_partition`.

    Parameters
    ----------
    rbm : RBM
        Model with Bernoulli hidden units and Bernoulli or unit-variance Gaussian visible units.
    X : Tensor of shape (n_samples, n_visible)
        The (test) vectors; binary for Bernoulli visible units.
    n_betas : int, optional
        Number of inverse temperatures (endpoints included); ``None`` uses the paper's 14,501.
        See :func:`ais_schedule`.
    betas : Tensor of shape (n_betas,), optional
        An explicit increasing schedule from 0 to 1 (traversed from 1 down to 0); overrides
        ``n_betas`` and ``schedule``.
    schedule : {"paper", "linear"}, default="paper"
        Shape of the schedule when ``n_betas`` is given.
    n_chains : int, default=1
        Independent reverse chains per row. One is unbiased in ``w`` already; more tighten each
        row's estimate (``log mean w`` over the chains) and make ``ess`` informative, at
        proportional cost.
    base_rate : Tensor, optional
        The base model's visible bias, or data to fit it from, as in :func:`ais_log_partition`.
        Pass the training data (not ``X``) for an honest test estimate.
    batch_size : int, optional
        Rows annealed together (each with its ``n_chains`` chains); all of them by default.
        Bounds the memory; the random stream, hence the exact values, depend on it.
    generator : torch.Generator, optional
        Random source, on the model's device.

    Returns
    -------
    ReverseAISResult
        ``.mean`` (average over the rows), per-row ``.values``, the weights and their ESS, and a
        standard error.

    Notes
    -----
    The annealing model ``p_ann`` is the forward AIS sampler viewed as a generative model:
    ``x_0 ~ p_0``, ``x_k ~ T_k(. | x_{k-1})`` for ``k = 1..K`` (``T_k`` one Gibbs sweep at
    ``β_k``), output ``x_K``. Reverse AIS estimates ``p_ann(v)`` by importance sampling with the
    reversed chain as proposal: ``x_K = v``, ``x_{k-1} ~ T_k(. | x_k)`` for ``k = K..1`` (Gibbs
    sweeps are reversible), and ::

        log w = log p*_K(v) - log Z_0 + sum_{k=1..K} [log p*_{k-1}(x_{k-1}) - log p*_k(x_{k-1})]

    with ``log p*_K(v) = -F(v)``. The first sweep, at ``β = 1``, samples the hidden units from
    the posterior ``p(h | v)``. ``E[w] = p_ann(v)`` exactly, so the directions are:

    * per row, ``E[log mean w] <= log p_ann(v)`` (Jensen): a stochastic lower bound on the
      annealing model's log-likelihood, and ``P(estimate > log p_ann(v) + t) <= exp(-t)``;
    * ``p_ann`` tends to the RBM's ``p`` as the schedule is refined, so the estimate tends to
      ``log p(v)`` from below; with a coarse schedule ``p_ann`` is a blurred RBM that is in
      practice worse on data than ``p`` (Burda et al.). For vectors drawn from the RBM itself
      this is a theorem: ``E_p[log p_ann] = E_p[log p] - KL(p || p_ann) <= E_p[log p]``;
    * forward AIS errs on the other side: its ``log Z`` is stochastically low, so
      ``-F(v) - log Z_AIS`` is stochastically HIGH.

    Together the two estimates bracket the log-likelihood (forward AIS above, reverse AIS
    below); when they disagree by more than their noise, neither has converged: use more
    inverse temperatures. The loop over temperatures reads nothing back to the host; all rows
    and chains of a batch are one tensor.

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM(8, 4, weight_std=0.5, generator=g)
    >>> X = (torch.rand(20, 8, generator=g) < 0.5).float()
    >>> exact = float(log_likelihood(rbm, X, exact_log_partition(rbm)).mean())
    >>> result = reverse_ais_log_likelihood(rbm, X, n_betas=500, n_chains=10, generator=g)
    >>> result.values.shape, result.log_weights.shape
    (torch.Size([20]), torch.Size([20, 10]))
    >>> abs(result.mean - exact) < 0.05
    True
    """
    n_chains = check_int("n_chains", n_chains, low=1)
    beta_list = _resolve_betas(n_betas, betas, schedule)
    path = _AnnealingPath(rbm, base_rate, generator)
    W, units = path.W, path.units
    X = check_data_tensor(X, n_features=W.shape[1], unit_interval=units.unit_interval)
    if units.name == "bernoulli" and bool(((X != 0) & (X != 1)).any()):
        raise ValueError(
            "X must be binary (0/1) for an RBM with Bernoulli visible units: reverse AIS starts its chains at "
            "the data. Binarise it first (e.g. stochastically, (torch.rand(X.shape) < X).float())."
        )
    n_samples = X.shape[0]
    step = check_int("batch_size", batch_size, low=1) if batch_size is not None else n_samples
    start_time = time.perf_counter()

    X = X.detach().to(device=W.device, dtype=W.dtype)
    log_w = torch.cat(
        [_reverse_anneal(path, X[i : i + step], n_chains, beta_list, generator) for i in range(0, n_samples, step)]
    )
    _check_finite_weights(log_w, W, "Reverse AIS")
    values, _, ess = _log_mean_interval(log_w, dim=1)
    mean = float(values.mean())
    std_error = float(values.std() / math.sqrt(n_samples)) if n_samples > 1 else math.nan
    return ReverseAISResult(
        mean=mean,
        values=values,
        log_weights=log_w,
        ess=ess,
        std_error=std_error,
        mean_low=mean - 3 * std_error,
        mean_high=mean + 3 * std_error,
        log_z_base=path.log_z_base,
        n_chains=n_chains,
        n_betas=len(beta_list),
        time=time.perf_counter() - start_time,
    )
