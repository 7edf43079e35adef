"""Log partition functions and log-likelihoods of RBMs: exact enumeration and AIS.

The log-likelihood of a visible vector under an RBM is ``log p(v) = -F(v) - log Z``. The free
energy ``F`` is cheap (:func:`dbn.functional.free_energy`); the partition function ``Z`` is not:

* :func:`exact_log_partition` sums over every configuration of the smaller layer (tiny models,
  tests, and the hidden layer of narrow RBMs);
* :func:`ais_log_partition` estimates it by annealed importance sampling from a base-rate model
  (Salakhutdinov & Murray, "On the quantitative analysis of deep belief networks", ICML 2008),
  following their released ``RBM_AIS.m``;
* :func:`log_likelihood` turns either into per-sample log-probabilities.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from . import functional as Fn
from ._validation import check_choice, check_data_tensor, check_int, check_scalar
from .units import Units, get_units

__all__ = [
    "AISResult",
    "exact_log_partition",
    "ais_log_partition",
    "ais_schedule",
    "base_rate_bias",
    "log_likelihood",
]

EnumeratedLayer = Literal["auto", "hidden", "visible"]
Schedule = Literal["paper", "linear"]

#: The paper's schedule: 0:0.001:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1.0 (steps per segment).
_PAPER_SEGMENTS = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
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
        segments = tuple((lo, hi, k) for (lo, hi, _), k in zip(_PAPER_SEGMENTS, counts))
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


@dataclass(frozen=True)
class AISResult:
    """Result of :func:`ais_log_partition`.

    Attributes
    ----------
    log_z : float
        The AIS estimate ``log Z_base + log mean_i w_i``.
    log_z_low, log_z_high : float
        ``log Z_base + log(mean w -/+ 3 * std(w) / sqrt(n_chains))`` (sample std with ``n - 1``),
        the interval of Salakhutdinov & Murray's ``RBM_AIS.m``: three standard errors of the
        importance weights, on the Z scale, mapped to log Z. ``log_z_low`` is ``-inf`` when the
        lower end is not positive. It reflects the spread of the weights only; with too few
        intermediate distributions the weights' variance is underestimated and so is the interval.
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

    Notes
    -----
    The base model A has zero weights and visible bias ``a``; the target B is the RBM
    ``(W, b, c)``. The intermediate distributions interpolate the energies
    (Salakhutdinov & Murray, eq. 13 and ``RBM_AIS.m``)::

        p_k(v) ∝ exp(-(1 - β_k) E_v(v; a) - β_k E_v(v; b)) prod_j (1 + exp(β_k (c_j + W_j v)))

    i.e. an RBM with weights ``β W``, hidden bias ``β c`` and visible bias ``(1 - β) a + β b``;
    each transition is one block Gibbs sweep ``v -> h -> v`` of that RBM, which leaves
    ``p_k`` invariant. At ``β = 0`` it is the base model times ``2^n_hidden`` free hidden units,
    so ``log Z_0 = log Z_A + n_hidden log 2`` with ``log Z_A = sum_i softplus(a_i)``
    (Bernoulli) or ``n_visible log(2 pi) / 2`` (Gaussian). Each run starts from an exact sample
    of ``p_0`` and accumulates ``log w = sum_k [log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1})]``,
    each term evaluated at one state in float64 so that large free energies cancel exactly;
    ``log Z ≈ log Z_0 + log mean(w)``. The estimate of ``Z`` is unbiased, so that of ``log Z``
    tends to be low (Jensen), never high on average.

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM(8, 4, weight_std=0.5, generator=g)
    >>> result = ais_log_partition(rbm, n_chains=50, n_betas=500, generator=g)
    >>> abs(result.log_z - exact_log_partition(rbm)) < 0.05
    True
    """
    W, b, c, units = _parameters(rbm)
    n_chains = check_int("n_chains", n_chains, low=2)
    if betas is None:
        betas = ais_schedule(n_betas, schedule=schedule)
    else:
        if not isinstance(betas, torch.Tensor) or betas.dim() != 1 or betas.shape[0] < 2:
            raise ValueError("betas must be a 1-D tensor of at least 2 inverse temperatures from 0 to 1.")
        betas = betas.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(betas).all()) or betas[0] != 0 or betas[-1] != 1 or bool((betas.diff() < 0).any()):
            raise ValueError(
                f"betas must increase from 0 to 1; got a schedule from {float(betas[0])} to {float(betas[-1])}"
                " that is not non-decreasing or has the wrong endpoints."
            )
    beta_list = betas.tolist()
    a = _resolve_base(base_rate, b, units)
    if generator is not None and generator.device.type != W.device.type:
        raise ValueError(
            f"The generator is on {generator.device} but the RBM is on {W.device}; create it on the model's device."
        )
    n_hidden, n_visible = W.shape
    start_time = time.perf_counter()

    Wt = W.t()
    a64, b64 = a.double(), b.double()
    log_z_base = float(_log_visible_integral(a64, a64, units)) + n_hidden * math.log(2.0)

    def state_terms(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v64 = v.double()
        bias_gap = units.bias_energy(v64, a64) - units.bias_energy(v64, b64)  # E_v(v; a) - E_v(v; b)
        return torch.addmm(c, v, Wt).double(), bias_gap

    v = units.sample(units.mean(a.expand(n_chains, n_visible)), generator)
    x, bias_gap = state_terms(v)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=W.device)
    prev = beta_list[0]
    last = len(beta_list) - 1
    for k in range(1, last + 1):
        beta = beta_list[k]
        # log p*_k(v) - log p*_{k-1}(v) at the current state
        log_w += (beta - prev) * bias_gap + (F.softplus(beta * x) - F.softplus(prev * x)).sum(dim=1)
        if k < last:
            h = Fn.sample_bernoulli(torch.sigmoid(beta * x).to(W.dtype), generator)
            mixed_bias = torch.lerp(a, b, beta)
            v = units.sample(units.mean(torch.addmm(mixed_bias, h, W, alpha=beta)), generator)
            x, bias_gap = state_terms(v)
        prev = beta

    shift = log_w.max()
    w = torch.exp(log_w - shift)
    mean_w = w.mean()
    stderr = w.std() / math.sqrt(n_chains)
    if not bool(torch.isfinite(log_w).all()):
        raise ValueError(
            "AIS produced non-finite importance weights: the model's parameters are too large for the "
            f"annealing chain in {W.dtype} (largest |weight| {float(W.abs().max()):.3g}). Check the model for "
            "divergence, or use exact_log_partition for a small model."
        )
    log_mean = float(torch.log(mean_w) + shift)
    high = float(torch.log(mean_w + 3 * stderr) + shift)
    low_arg = mean_w - 3 * stderr
    low = float(torch.log(low_arg) + shift) if float(low_arg) > 0 else -math.inf
    elapsed = time.perf_counter() - start_time
    return AISResult(
        log_z=log_z_base + log_mean,
        log_z_low=log_z_base + low,
        log_z_high=log_z_base + high,
        log_weights=log_w,
        log_z_base=log_z_base,
        n_chains=n_chains,
        n_betas=len(beta_list),
        time=elapsed,
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
