"""Restricted Boltzmann machines and their contrastive-divergence trainer.

:class:`RBM` is a ``torch.nn.Module`` holding ``weight`` ``(n_hidden, n_visible)``,
``visible_bias`` and ``hidden_bias``; its maths lives in :mod:`dbn.functional`.
:class:`CDTrainer` updates an RBM by CD-k or persistent CD (PCD) with momentum, weight decay,
a sparsity target and a learning-rate schedule, and keeps a per-epoch history;
:func:`train_rbm` is the one-call front end.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from . import functional as Fn
from ._invariant import NARROW, one_thread
from ._linalg import _product, bernoulli_sample, outer_accumulate_
from ._options import RBM_LR_SCHEDULES, RBM_SAMPLERS, RBMLRSchedule, RBMSampler, VisibleType
from ._random import make_generator, resolve_device
from ._shard import Shard
from ._validation import (
    check_choice,
    check_data_tensor,
    check_int,
    check_probability,
    check_scalar,
)
from .engine import (
    DivergenceCheck,
    ProgressBar,
    batch_rows,
    block_rows,
    column_mean,
    fit_loop,
    is_sparse,
    lr_factor,
    minibatches,
    sparse_buffer,
    take_rows,
)
from .units import get_units

__all__ = ["RBM", "CDTrainer", "train_rbm", "MomentumSchedule", "momentum_at", "centered_to_ordinary"]

HiddenType = Literal["bernoulli"]
MomentumSchedule = float | Literal["hinton"] | tuple[float, float, int]
LRSchedule = RBMLRSchedule | Callable[[int], float]

_DIVERGENCE_HINT = (
    "The learning rate is probably too high for the scale of the data: lower 'learning_rate' "
    "(and 'momentum'), and for Gaussian visible units standardise each feature to zero mean and "
    "unit variance."
)


class RBM(nn.Module):
    """Restricted Boltzmann machine with Bernoulli hidden units.

    Parameters
    ----------
    n_visible : int
        Number of visible units.
    n_hidden : int
        Number of hidden units.
    visible : {"bernoulli", "gaussian"}, default="bernoulli"
        Visible unit type: binary units for data in [0, 1], or unit-variance Gaussian units for
        standardised real-valued data.
    hidden : {"bernoulli"}, default="bernoulli"
        Hidden unit type.
    weight_std : float, default=0.01
        Standard deviation of the initial weights, drawn from N(0, weight_std^2) as in Hinton's
        practical guide. Biases start at zero.
    generator : torch.Generator, optional
        Random source of the initial weights (on ``device``).
    device, dtype : optional
        Where the parameters live and their type (float32 by default).
    centered : bool, default=False
        Train this model as a centred RBM (Montavon & Müller 2012; Melchior, Fischer & Wiskott
        2016): the default of :class:`CDTrainer`'s ``centered``. The parameters themselves are
        always those of the ordinary RBM (the centring lives in the trainer's update), so
        export, stacking, AIS and the likelihood read them unchanged.

    Attributes
    ----------
    weight : Parameter of shape (n_hidden, n_visible)
    visible_bias : Parameter of shape (n_visible,)
    hidden_bias : Parameter of shape (n_hidden,)
    centered : bool

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM(6, 4, generator=g)
    >>> v = torch.rand(5, 6, generator=g)
    >>> rbm.hidden_probs(v).shape
    torch.Size([5, 4])
    >>> rbm.free_energy(v).shape
    torch.Size([5])
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        visible: VisibleType = "bernoulli",
        hidden: HiddenType = "bernoulli",
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        centered: bool = False,
    ) -> None:
        super().__init__()
        self.centered = bool(centered)
        n_visible = check_int("n_visible", n_visible, low=1)
        n_hidden = check_int("n_hidden", n_hidden, low=1)
        self.visible = get_units(visible, parameter="visible").name
        self.hidden = check_choice("hidden", hidden, ("bernoulli",))
        weight_std = check_scalar("weight_std", weight_std, low=0.0)
        on = resolve_device(device) if device is not None else None
        dtype = dtype or torch.float32
        w = torch.randn(n_hidden, n_visible, generator=generator, device=on, dtype=dtype) * weight_std
        self.weight = nn.Parameter(w)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible, device=on, dtype=dtype))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden, device=on, dtype=dtype))

    @property
    def n_visible(self) -> int:
        """Number of visible units."""
        return self.weight.shape[1]

    @property
    def n_hidden(self) -> int:
        """Number of hidden units."""
        return self.weight.shape[0]

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, visible={self.visible!r}"

    # -- conditionals --------------------------------------------------------------------
    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h = 1 | v)``, shape ``(n_samples, n_hidden)``."""
        return Fn.hidden_probs(v, self.weight, self.hidden_bias)

    def sample_hidden(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary hidden states drawn from ``p(h | v)``."""
        return Fn.sample_hidden(v, self.weight, self.hidden_bias, generator)[0]

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """Conditional mean of the visible units given ``h``."""
        return Fn.visible_mean(h, self.weight, self.visible_bias, self.visible)

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Visible states drawn from ``p(v | h)``."""
        return Fn.sample_visible(h, self.weight, self.visible_bias, self.visible, generator)[0]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Hidden probabilities: the RBM used as a feature extractor."""
        return self.hidden_probs(v)

    def reconstruct(self, v: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction ``E[v | h = p(h | v)]`` (mean-field, no sampling)."""
        return self.visible_mean(self.hidden_probs(v))

    def gibbs(self, v: torch.Tensor, k: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Run ``k`` steps of block Gibbs sampling ``v -> h -> v`` and return the visible sample.

        Examples
        --------
        >>> rbm = RBM(6, 4, generator=torch.Generator().manual_seed(0))
        >>> rbm.gibbs(torch.zeros(3, 6), k=2, generator=torch.Generator().manual_seed(1)).shape
        torch.Size([3, 6])
        """
        k = check_int("k", k, low=1)
        for _ in range(k):
            v = self.sample_visible(self.sample_hidden(v, generator), generator)
        return v

    # -- energies and scores -------------------------------------------------------------
    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Energy ``E(v, h)`` of each configuration, shape ``(n_samples,)``."""
        return Fn.energy(v, h, self.weight, self.visible_bias, self.hidden_bias, self.visible)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """Free energy ``F(v) = -log sum_h exp(-E(v, h))``, shape ``(n_samples,)``."""
        return Fn.free_energy(v, self.weight, self.visible_bias, self.hidden_bias, self.visible)

    def pseudo_likelihood(
        self,
        v: torch.Tensor,
        *,
        exact: bool = False,
        per_unit: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Log pseudo-likelihood per sample; see :func:`dbn.functional.pseudo_likelihood`.

        Only defined for Bernoulli visible units.
        """
        if self.visible != "bernoulli":
            raise ValueError(
                "The pseudo-likelihood is defined here for Bernoulli visible units only; for "
                f"visible={self.visible!r} compare models with the free-energy gap or the reconstruction error."
            )
        return Fn.pseudo_likelihood(
            v, self.weight, self.visible_bias, self.hidden_bias, exact=exact, generator=generator, per_unit=per_unit
        )

    def log_partition(self, method: Literal["exact", "ais"] = "ais", **options) -> float:
        """Log partition function ``log Z``, exact (small models) or by AIS.

        ``options`` go to :func:`dbn.likelihood.exact_log_partition` or
        :func:`dbn.likelihood.ais_log_partition` (``n_chains``, ``n_betas``, ``base_rate``,
        ``generator``...). Returns a float; use those functions directly for AIS's interval.

        Examples
        --------
        >>> round(RBM(3, 2, weight_std=0.0).log_partition("exact"), 6)  # log 2**5
        3.465736
        """
        from . import likelihood

        check_choice("method", method, ("exact", "ais"))
        if method == "exact":
            return likelihood.exact_log_partition(self, **options)
        return likelihood.ais_log_partition(self, **options).log_z

    def log_likelihood(self, v: torch.Tensor, log_z: float) -> torch.Tensor:
        """Log-likelihood ``-F(v) - log Z`` of each sample, given ``log Z``.

        Examples
        --------
        >>> rbm = RBM(3, 2, weight_std=0.0)
        >>> round(rbm.log_likelihood(torch.ones(1, 3), rbm.log_partition("exact")).item(), 6)  # -3 log 2
        -2.079442
        """
        from . import likelihood

        return likelihood.log_likelihood(self, v, log_z)

    @torch.no_grad()
    def init_visible_bias_(self, X: torch.Tensor, eps: float = 1e-3, *, shard: Shard | None = None) -> RBM:
        """Set the visible bias from the data, in place (Hinton's practical guide).

        Bernoulli units get ``log(p / (1 - p))`` with ``p`` each unit's mean activity (clipped to
        ``[eps, 1 - eps]``); Gaussian units get the data mean. With ``shard`` (data-parallel
        runs) ``X`` is this process's shard and the mean is over all processes (one all-reduce).

        Examples
        --------
        >>> rbm = RBM(2, 3).init_visible_bias_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        >>> rbm.visible_bias[1].item()
        0.0
        """
        if shard is None:
            mean = column_mean(X).to(self.visible_bias.dtype)
        else:
            total = X.sum(dim=0, dtype=torch.float64)
            shard.all_reduce(total)
            mean = (total / shard.n_total).to(self.visible_bias.dtype)
        if self.visible == "bernoulli":
            p = mean.clamp(eps, 1 - eps)
            self.visible_bias.copy_(torch.log(p) - torch.log1p(-p))
        else:
            self.visible_bias.copy_(mean)
        return self


def centered_to_ordinary(
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    visible_offset: torch.Tensor,
    hidden_offset: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ordinary RBM ``(W, b, c)`` of a centred one, equal up to a constant energy.

    The centred energy ``-(h - lambda)^T W (v - mu) - b_c^T (v - mu) - c_c^T (h - lambda)`` is
    the ordinary ``-h^T W v - b^T v - c^T h`` with ``b = b_c - W^T lambda``, ``c = c_c - W mu``,
    plus ``b_c^T mu + c_c^T lambda - lambda^T W mu``. The inverse map is ``b_c = b + W^T lambda``,
    ``c_c = c + W mu``.

    Parameters
    ----------
    weight : Tensor of shape (n_hidden, n_visible)
    visible_bias, hidden_bias : Tensor of shape (n_visible,) and (n_hidden,)
        The centred biases ``b_c`` and ``c_c``.
    visible_offset, hidden_offset : Tensor of shape (n_visible,) and (n_hidden,)
        The offsets ``mu`` and ``lambda``.

    Returns
    -------
    weight, visible_bias, hidden_bias : Tensor
        The ordinary parameters (``weight`` is the same tensor).

    Examples
    --------
    >>> W = torch.ones(2, 3)
    >>> _, b, c = centered_to_ordinary(W, torch.zeros(3), torch.zeros(2), torch.full((3,), 0.5), torch.full((2,), 0.5))
    >>> b.tolist(), c.tolist()
    ([-1.0, -1.0, -1.0], [-1.5, -1.5])
    """
    if weight.shape != (hidden_bias.shape[0], visible_bias.shape[0]):
        raise ValueError(
            f"weight {tuple(weight.shape)} does not match the biases {tuple(visible_bias.shape)}, "
            f"{tuple(hidden_bias.shape)}."
        )
    return weight, visible_bias - hidden_offset @ weight, hidden_bias - weight @ visible_offset


@functools.lru_cache(maxsize=64)
def _cpu_scalar(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A cached 0-dim CPU tensor holding ``value``: an operator with it skips the conversion
    of a Python number to a tensor (a few microseconds per operator, which count at
    digits-sized mini-batches); the arithmetic, and so every bit, is the same."""
    return torch.tensor(value, dtype=dtype)


def _mean0(x: torch.Tensor) -> torch.Tensor:
    """``x.mean(dim=0)`` with the same bits (on the CPU ``mean`` is ``sum`` then ``div_``) and
    a third of the dispatch cost."""
    if not x.is_cpu:
        return x.mean(dim=0)
    return torch.sum(x, 0).div_(_cpu_scalar(float(x.shape[0]), x.dtype))


def _scale_(t: torch.Tensor, factor: float) -> torch.Tensor:
    """``t.mul_(factor)`` in place, bit for bit, without converting ``factor`` every call."""
    return t.mul_(_cpu_scalar(float(factor), t.dtype) if t.is_cpu else factor)


def momentum_at(momentum: MomentumSchedule, epoch: int) -> float:
    """Momentum for a 0-based ``epoch`` under a schedule.

    ``"hinton"`` is 0.5 for the first five epochs and 0.9 after; ``(start, end, switch)``
    uses ``start`` before epoch ``switch`` and ``end`` from it on; a float is constant.

    Examples
    --------
    >>> momentum_at("hinton", 0), momentum_at("hinton", 5)
    (0.5, 0.9)
    """
    if momentum == "hinton":
        return 0.5 if epoch < 5 else 0.9
    if isinstance(momentum, tuple):
        start, end, switch = momentum
        return float(start if epoch < switch else end)
    return float(momentum)


def _check_momentum(momentum) -> MomentumSchedule:
    if momentum == "hinton":
        return momentum
    if isinstance(momentum, (tuple, list)):
        if len(momentum) != 3:
            raise ValueError(
                f"The 'momentum' parameter as a schedule must be (start, end, switch_epoch). Got {momentum!r} instead."
            )
        start = check_scalar("momentum", momentum[0], low=0.0, high=1.0, high_inclusive=False)
        end = check_scalar("momentum", momentum[1], low=0.0, high=1.0, high_inclusive=False)
        return (start, end, check_int("momentum switch epoch", momentum[2], low=0))
    if isinstance(momentum, str):
        raise ValueError(f"The 'momentum' parameter must be a float in [0, 1), 'hinton' or a tuple. Got {momentum!r}.")
    return check_scalar("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)


class CDTrainer:
    """Contrastive-divergence trainer for an :class:`RBM`, with state kept across calls.

    One call of :meth:`partial_fit` is one pass over the given data in mini-batches; the
    momentum buffers, the persistent chains, the sparsity estimate and the epoch counter carry
    over, so repeated calls continue training. :meth:`fit` runs epochs on the engine
    (:func:`dbn.engine.fit_loop`): ``callback(rbm, record)`` after every epoch, and returning
    ``True`` stops training after that epoch.

    Parameters
    ----------
    rbm : RBM
        The model to train, in place.
    learning_rate : float, default=0.1
    batch_size : int, default=100
    k : int, default=1
        Gibbs steps per update (CD-k / PCD-k).
    persistent : bool, default=False
        Persistent CD (Tieleman 2008): the negative phase continues chains kept across updates.
    n_chains : int, optional
        Number of persistent chains; defaults to ``batch_size``.
    momentum : float, "hinton" or (start, end, switch_epoch), default=0.0
        Momentum of the parameter updates; ``"hinton"`` is 0.5 for five epochs then 0.9. A
        trainer with the constant 0 keeps no velocity (its updates go straight into the
        parameters, the same arithmetic with fewer passes over them).
    weight_decay : float, default=0.0
        L2 penalty on the weights (not the biases), added to the gradient as ``-weight_decay * W``.
    sparsity_target : float, optional
        Target mean activation of each hidden unit, in (0, 1). None turns the penalty off.
    sparsity_cost : float, default=0.0
        Weight of the sparsity penalty (Hinton's guide, section 11).
    sparsity_decay : float, default=0.9
        Decay of the running estimate of the hidden activations.
    lr_schedule : {"constant", "exponential", "inverse"} or callable, default="constant"
        Learning-rate factor per epoch: ``lr_decay ** epoch``, ``1 / (1 + lr_decay * epoch)``, or
        ``callable(epoch)``.
    lr_decay : float, default=0.0
    shuffle : bool, default=True
        Draw mini-batches by a random permutation each epoch.
    monitor_size : int, default=1000
        Number of samples on which the per-epoch monitors are computed.
    generator : torch.Generator, optional
        Random source (on the RBM's device).
    all_reduce : callable, optional
        Data-parallel training (see :mod:`dbn.distributed`): ``all_reduce(tensor)`` sums a
        tensor in place over the processes. :meth:`step` then computes the batch statistics of
        this process's rows into a gradient buffer, scaled by the global counts, all-reduces
        it and applies the same update on every process. Without it the statistics go straight
        into the momentum buffers (the single-process fast path).
    rank, world_size : int, default=0, 1
        This process and the number of processes; the persistent chains are split into
        ``world_size`` contiguous blocks and this process runs block ``rank``.
    centered : bool, optional
        Centred training (Montavon & Müller 2012; Melchior, Fischer & Wiskott 2016); None
        takes ``rbm.centered``. The visible offset ``mu`` is the mean of the data of the first
        :meth:`fit` call (of the first batch when :meth:`step` is called directly), the hidden
        offset ``lambda`` starts at 0.5 and follows the batch means of ``p(h | v_data)`` with
        the sliding factor ``offset_rate``. See Notes. Single process only.
    offset_rate : float, default=0.01
        Sliding factor of the hidden offset: ``lambda <- (1 - offset_rate) * lambda +
        offset_rate * mean(p(h | v_data))`` after every update.
    sampler : {"gibbs", "pt"}, default="gibbs"
        Negative-phase sampler of persistent CD: block Gibbs chains, or parallel tempering
        (``"pt"``, requires ``persistent=True`` and Bernoulli visible units): every chain runs
        at ``n_temperatures`` inverse temperatures, each of the ``k`` steps is a Gibbs sweep at
        every temperature followed by Metropolis swaps of neighbouring temperatures (even
        pairs, then odd pairs on the next step); the statistics come from the ``beta = 1`` chains.
    n_temperatures : int, default=10
        Number of inverse temperatures of parallel tempering, linear in ``[beta_min, 1]``.
    beta_min : float, default=0.0
        Lowest inverse temperature of parallel tempering, in [0, 1).

    Notes
    -----
    A centred RBM has the energy ``E(v, h) = -(h - lambda)^T W (v - mu) - b_c^T (v - mu) -
    c_c^T (h - lambda)``, the ordinary RBM with ``b = b_c - W^T lambda`` and ``c = c_c - W mu``
    up to a constant. The trainer keeps the ordinary parameters and makes the centred update
    on them: with the centred gradients ``dW = <(h - lambda)(v - mu)^T>_data - <...>_model``,
    ``db = <v>_data - <v>_model``, ``dc = <h>_data - <h>_model`` and their velocities ``u_W``,
    ``u_b``, ``u_c`` (momentum, weight decay and sparsity as usual), ``W += u_W``, ``b += u_b
    - u_W^T lambda``, ``c += u_c - u_W mu``; a change of the offsets leaves the model unchanged
    (the centred biases absorb it), so the RBM is an ordinary RBM at every moment.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = (torch.rand(200, 16, generator=g) < 0.3).float()
    >>> rbm = RBM(16, 8, generator=g)
    >>> trainer = CDTrainer(rbm, learning_rate=0.05, batch_size=20, generator=g)
    >>> record = trainer.partial_fit(X)
    >>> sorted(record)[:3]
    ['epoch', 'learning_rate', 'momentum']
    """

    def __init__(
        self,
        rbm: RBM,
        *,
        learning_rate: float = 0.1,
        batch_size: int = 100,
        k: int = 1,
        persistent: bool = False,
        n_chains: int | None = None,
        momentum: MomentumSchedule = 0.0,
        weight_decay: float = 0.0,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        sparsity_decay: float = 0.9,
        lr_schedule: LRSchedule = "constant",
        lr_decay: float = 0.0,
        shuffle: bool = True,
        monitor_size: int = 1000,
        generator: torch.Generator | None = None,
        all_reduce: Callable[[torch.Tensor], None] | None = None,
        rank: int = 0,
        world_size: int = 1,
        centered: bool | None = None,
        offset_rate: float = 0.01,
        sampler: RBMSampler = "gibbs",
        n_temperatures: int = 10,
        beta_min: float = 0.0,
    ) -> None:
        if not isinstance(rbm, RBM):
            raise TypeError(f"rbm must be a dbn.RBM. Got {type(rbm).__name__}.")
        self.rbm = rbm
        self.learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.k = check_int("k", k, low=1)
        self.persistent = bool(persistent)
        self.n_chains = self.batch_size if n_chains is None else check_int("n_chains", n_chains, low=1)
        self.momentum = _check_momentum(momentum)
        self.weight_decay = check_scalar("weight_decay", weight_decay, low=0.0)
        self.sparsity_target = (
            None
            if sparsity_target is None
            else check_probability("sparsity_target", sparsity_target, open_interval=True)
        )
        self.sparsity_cost = check_scalar("sparsity_cost", sparsity_cost, low=0.0)
        self.sparsity_decay = check_probability("sparsity_decay", sparsity_decay)
        if not callable(lr_schedule):
            check_choice("lr_schedule", lr_schedule, RBM_LR_SCHEDULES)
        self.lr_schedule = lr_schedule
        self.lr_decay = check_scalar("lr_decay", lr_decay, low=0.0)
        self.shuffle = bool(shuffle)
        self.monitor_size = check_int("monitor_size", monitor_size, low=1)
        device = rbm.weight.device
        self.generator = generator if generator is not None else make_generator(None, device)
        if self.generator.device.type != device.type:
            raise ValueError(
                f"The generator is on {self.generator.device} but the RBM is on {device}; "
                "create the generator on the model's device."
            )
        self.units = get_units(rbm.visible)
        self.epoch = 0
        self.history: list[dict] = []
        zeros = torch.zeros_like
        self._vel_w = zeros(rbm.weight)
        self._vel_vb = zeros(rbm.visible_bias)
        self._vel_hb = zeros(rbm.hidden_bias)
        self._chain: torch.Tensor | None = None  # persistent hidden states, (n_chains, n_hidden)
        self._q: torch.Tensor | None = None  # running mean hidden activation (sparsity)
        if all_reduce is not None and not callable(all_reduce):
            raise ValueError(f"The 'all_reduce' parameter must be a callable or None. Got {all_reduce!r}.")
        self.all_reduce = all_reduce
        self.world_size = check_int("world_size", world_size, low=1)
        self.rank = check_int("rank", rank, low=0)
        if self.rank >= self.world_size:
            raise ValueError(f"The 'rank' parameter must be < world_size={self.world_size}. Got {rank}.")
        self._grad: torch.Tensor | None = None  # flat statistics buffer of the all-reduce path
        self._init_extensions(centered, offset_rate, sampler, n_temperatures, beta_min)
        self._divergence: DivergenceCheck | None = None
        self._hidden_margin: float | None = None  # max min(p, 1 - p) of the last monitor's hidden probabilities

    def _init_extensions(self, centered, offset_rate, sampler, n_temperatures, beta_min) -> None:
        """Check and set the centring and parallel-tempering options."""
        self.centered = bool(self.rbm.centered if centered is None else centered)
        self.offset_rate = check_probability("offset_rate", offset_rate)
        self.sampler = check_choice("sampler", sampler, RBM_SAMPLERS)
        self.n_temperatures = check_int("n_temperatures", n_temperatures, low=2)
        self.beta_min = check_scalar("beta_min", beta_min, low=0.0, high=1.0, high_inclusive=False)
        parallel = self.all_reduce is not None or self.world_size > 1
        if parallel and (self.centered or self.sampler == "pt"):
            raise ValueError("centered=True and sampler='pt' are not supported in data-parallel training.")
        if self.sampler == "pt":
            if not self.persistent:
                raise ValueError("The 'sampler' parameter 'pt' (parallel tempering) requires persistent=True.")
            if self.units.name != "bernoulli":
                raise ValueError(
                    f"sampler='pt' supports Bernoulli visible units only. Got visible={self.units.name!r}."
                )
        W = self.rbm.weight
        self._betas = torch.linspace(1.0, self.beta_min, self.n_temperatures, device=W.device, dtype=W.dtype)
        self._pt_chain: torch.Tensor | None = None  # (n_temperatures, n_chains, n_hidden), beta = 1 first
        self._pt_steps = 0  # parity of the next swap
        self._offsets: tuple[torch.Tensor, torch.Tensor] | None = None  # (mu, lambda) of centred training
        self._ones_cache: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Training state for checkpoints: epoch, history, momentum buffers, persistent chains,
        sparsity estimate and the generator state (tensors and plain Python values only).

        Examples
        --------
        >>> trainer = CDTrainer(RBM(4, 3), generator=torch.Generator().manual_seed(0))
        >>> sorted(trainer.state_dict())[:3]
        ['chain', 'epoch', 'generator']
        """
        return {
            "epoch": self.epoch,
            "history": [dict(r) for r in self.history],
            "vel_w": self._vel_w.clone(),
            "vel_vb": self._vel_vb.clone(),
            "vel_hb": self._vel_hb.clone(),
            "chain": None if self._chain is None else self._chain.clone(),
            "q": None if self._q is None else self._q.clone(),
            "generator": self.generator.get_state(),
        } | self._extension_state()

    def _extension_state(self) -> dict:
        """The centring offsets and the tempered chains, only where they are used."""
        state: dict = {}
        if self.centered:
            state["offsets"] = None if self._offsets is None else tuple(t.clone() for t in self._offsets)
        if self.sampler == "pt":
            state["pt_chain"] = None if self._pt_chain is None else self._pt_chain.clone()
            state["pt_steps"] = self._pt_steps
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned, so training continues exactly."""
        try:
            self.epoch = int(state["epoch"])
            self.history[:] = [dict(r) for r in state["history"]]
            for name in ("vel_w", "vel_vb", "vel_hb"):
                getattr(self, f"_{name}").copy_(state[name])
            device = self.rbm.weight.device
            self._chain = None if state.get("chain") is None else state["chain"].to(device)
            self._q = None if state.get("q") is None else state["q"].to(device)
            if state.get("offsets") is not None:
                self._offsets = tuple(t.to(device) for t in state["offsets"])
            if state.get("pt_chain") is not None:
                self._pt_chain = state["pt_chain"].to(device)
                self._pt_steps = int(state.get("pt_steps", 0))
            if state.get("generator") is not None:
                self.generator.set_state(state["generator"].cpu() if device.type == "cpu" else state["generator"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise ValueError(f"Invalid CDTrainer state: {exc}") from exc

    def _visible_act(self) -> str | None:
        """The fused activation of the visible mean: ``None`` for unit types with their own mean."""
        name = self.units.name
        if name == "bernoulli":
            return "sigmoid"
        return "none" if name == "gaussian" else None

    def _visible_mean(self, h: torch.Tensor, act) -> torch.Tensor:
        rbm = self.rbm
        if act is None:
            return self.units.mean(_product(h, rbm.weight, rbm.visible_bias, "none"))
        return _product(h, rbm.weight, rbm.visible_bias, act)

    def _draw(self, own: torch.Tensor | None, total: int) -> Callable[[torch.Tensor, Callable], torch.Tensor]:
        """The sampling rule of the negative phase: ``draw(local, sample)``.

        One process (``own is None``) samples its tensor. In a data-parallel run every draw
        covers the ``total`` rows of the global batch (or all the chains), as one process would
        draw it, and this process keeps its rows ``own``.
        """
        g = self.generator
        if own is None:
            return lambda local, sample: sample(local, g)

        def draw(local: torch.Tensor, sample: Callable) -> torch.Tensor:
            full = local.new_zeros(total, local.shape[1])
            full.index_copy_(0, own, local)
            return sample(full, g).index_select(0, own)

        return draw

    def _init_chains(self, h0_probs: torch.Tensor, rows: torch.Tensor | None, n: int) -> torch.Tensor:
        """Start the persistent chains from samples of ``n_chains`` random batch rows."""
        g, device = self.generator, self.rbm.weight.device
        pick = torch.randint(0, n, (self.n_chains,), generator=g, device=device)
        if rows is None:
            return bernoulli_sample(h0_probs[pick], g)
        # the picked rows' probabilities live on the processes that own them: gather by all-reduce
        where = torch.full((n,), -1, dtype=torch.long, device=device)
        where[rows] = torch.arange(rows.shape[0], device=device)
        sel = where[pick]
        init = h0_probs.new_zeros(self.n_chains, h0_probs.shape[1])
        if h0_probs.shape[0]:
            picked = h0_probs.index_select(0, sel.clamp(min=0))
            init = torch.where((sel >= 0)[:, None], picked, init)
        if self.all_reduce is not None:
            self.all_reduce(init)
        return bernoulli_sample(init, g).index_select(0, self._own_chains())

    def _own_chains(self) -> torch.Tensor:
        chains = torch.arange(self.n_chains, device=self.rbm.weight.device)
        return torch.tensor_split(chains, self.world_size)[self.rank]

    def _negative_phase(
        self, h0_probs: torch.Tensor, rows: torch.Tensor | None = None, n: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Run the Gibbs chain; returns ``(v_model, h_model, number of model samples)``.

        ``rows`` (data-parallel runs): this process's rows of a global batch of ``n`` rows;
        every random draw covers the global batch (or all the persistent chains) and this
        process keeps its rows, so the numbers are those one process would use. Without
        ``rows`` the draws are the process's own tensors (the same draws in the same order).
        """
        if self.sampler == "pt":
            return self._tempered_phase(h0_probs)
        Wt, c = self.rbm.weight.t(), self.rbm.hidden_bias
        units, act = self.units, self._visible_act()
        n = h0_probs.shape[0] if n is None else n
        if self.persistent:
            if self._chain is None:
                self._chain = self._init_chains(h0_probs, rows, n)
            draw = self._draw(None if rows is None else self._own_chains(), self.n_chains)
            h = self._chain
            for _ in range(self.k):
                v = draw(self._visible_mean(h, act), units.sample)
                h_probs = _product(v, Wt, c, "sigmoid")
                h = draw(h_probs, bernoulli_sample)
            self._chain = h
            return v, h_probs, self.n_chains
        draw = self._draw(rows, n)
        h = draw(h0_probs, bernoulli_sample)
        for step in range(self.k):
            v = self._visible_mean(h, act)
            if step < self.k - 1:
                v = draw(v, units.sample)
                h = draw(_product(v, Wt, c, "sigmoid"), bernoulli_sample)
        # last visible update uses means, the last hidden one probabilities (Hinton's guide)
        return v, _product(v, Wt, c, "sigmoid"), n

    def step(
        self,
        v0: torch.Tensor,
        learning_rate: float,
        momentum: float,
        *,
        rows: torch.Tensor | None = None,
        n_rows: int | None = None,
    ) -> None:
        """One CD update on a mini-batch ``v0`` (in place, no autograd).

        With velocity ``u``: ``u <- momentum * u + learning_rate * (data stats - model stats
        + sparsity term - weight_decay * W)`` and ``W <- W + u`` (likewise for the biases,
        without decay).

        The statistics are accumulated by one of two rules, the only difference between one
        process and a data-parallel run: one process accumulates them straight into the
        velocity buffers (:meth:`_accumulate_velocity`); with ``all_reduce`` (or ``rows``) they
        are summed over this process's rows into a flat gradient buffer scaled by the global
        counts, all-reduced, and added to the velocities (:meth:`_reduce_statistics`).

        In a data-parallel run ``v0`` holds this process's rows of a global batch of ``n_rows``
        rows, at positions ``rows`` in it; every random draw is made for the whole global batch
        (as one process would) and this process uses its rows, so the update equals the
        single-process one up to float rounding.

        A batch of fewer than 16 rows (an epoch's last, shorter one) runs on one thread: MKL
        rounds products of 5-11 rows differently on one thread than on two, and so small a
        step gains nothing from a second one (see :mod:`dbn._invariant`).
        """
        if v0.shape[0] < NARROW and torch.get_num_threads() > 1:
            with one_thread(v0.device):
                return self._step(v0, learning_rate, momentum, rows=rows, n_rows=n_rows)
        return self._step(v0, learning_rate, momentum, rows=rows, n_rows=n_rows)

    def _step(
        self,
        v0: torch.Tensor,
        learning_rate: float,
        momentum: float,
        *,
        rows: torch.Tensor | None = None,
        n_rows: int | None = None,
    ) -> None:
        rbm = self.rbm
        W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
        if rows is None and self.world_size > 1:
            rows = torch.arange(v0.shape[0], device=W.device)
        n = v0.shape[0] if n_rows is None else int(n_rows)
        h0 = _product(v0, W.t(), c, "sigmoid")
        vk, hk, n_model = self._negative_phase(h0, rows, n)
        reduced = rows is not None or self.all_reduce is not None
        if momentum == 0.0 and self.momentum == 0.0 and not (reduced or self.centered or self._sparse):
            self._update_without_momentum(v0, h0, vk, hk, n, n_model, learning_rate)
            return
        accumulate = self._reduce_statistics if reduced else self._accumulate_velocity
        if self.centered:
            accumulate = self._centered_velocity
        v0_mean, batch_q = accumulate(v0, h0, vk, hk, n, n_model, learning_rate, momentum)
        if self._sparse and self.sparsity_target is not None:
            assert v0_mean is not None and batch_q is not None  # every rule returns them when sparse
            self._q = (
                batch_q if self._q is None else self.sparsity_decay * self._q + (1 - self.sparsity_decay) * batch_q
            )
            penalty = self.sparsity_cost * (self.sparsity_target - self._q)
            self._vel_hb.add_(penalty, alpha=learning_rate)
            self._vel_w.addr_(penalty, v0_mean, alpha=learning_rate)
        if self.weight_decay:
            self._vel_w.add_(W, alpha=-learning_rate * self.weight_decay)
        if self.centered:
            assert batch_q is not None  # the centred rule always returns it
            self._centered_update(batch_q)
            return
        W.add_(self._vel_w)
        b.add_(self._vel_vb)
        c.add_(self._vel_hb)

    def _centered_velocity(
        self, v0, h0, vk, hk, n: int, n_model: int, lr: float, momentum: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred training: ``u <- momentum * u + lr * (centred data - model statistics)`` with
        the weight statistics of ``(h - lambda)(v - mu)^T``. Returns ``(v0_mean, h0_mean)``."""
        mu, lam = self._init_offsets(v0) if self._offsets is None else self._offsets
        v0_mean, h0_mean = v0.mean(dim=0), h0.mean(dim=0)
        self._vel_vb.mul_(momentum).add_(v0_mean - vk.mean(dim=0), alpha=lr)
        self._vel_hb.mul_(momentum).add_(h0_mean - hk.mean(dim=0), alpha=lr)
        outer_accumulate_(self._vel_w, h0 - lam, v0 - mu, alpha=lr / n, beta=momentum)
        outer_accumulate_(self._vel_w, hk - lam, vk - mu, alpha=-lr / n_model)
        return v0_mean, h0_mean

    def _centered_update(self, h0_mean: torch.Tensor) -> None:
        """Apply the centred velocities to the ordinary parameters (``b += u_b - u_W^T lambda``,
        ``c += u_c - u_W mu``), then slide the hidden offset toward ``h0_mean``."""
        rbm = self.rbm
        assert self._offsets is not None  # set by _centered_velocity
        mu, lam = self._offsets
        rbm.weight.add_(self._vel_w)
        rbm.visible_bias.add_(self._vel_vb).addmv_(self._vel_w.t(), lam, alpha=-1.0)
        rbm.hidden_bias.add_(self._vel_hb).addmv_(self._vel_w, mu, alpha=-1.0)
        lam.lerp_(h0_mean, self.offset_rate)

    @property
    def offsets(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The centring offsets ``(mu, lambda)`` (None before centred training starts).

        Examples
        --------
        >>> X = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> trainer = CDTrainer(RBM(2, 1), centered=True, batch_size=2, generator=torch.Generator().manual_seed(0))
        >>> _ = trainer.partial_fit(X)
        >>> trainer.offsets[0].tolist()
        [1.0, 0.5]
        """
        return self._offsets

    def _init_offsets(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Visible offset at the mean of ``X``, hidden offset at 0.5 (set and returned)."""
        W = self.rbm.weight
        self._offsets = (X.mean(dim=0).to(W.dtype), torch.full((W.shape[0],), 0.5, device=W.device, dtype=W.dtype))
        return self._offsets

    def _tempered_phase(self, h0_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Parallel tempering: ``k`` Gibbs sweeps of the chains at every inverse temperature,
        each followed by swaps of neighbouring temperatures; returns the ``beta = 1`` chains'
        visible samples and hidden probabilities.

        The chains are one tensor ``(n_temperatures, n_chains, n_hidden)`` of hidden states;
        ``p_beta(v, h) ~ exp(-beta E(v, h))`` has the conditionals ``sigmoid(beta (W^T h + b))``
        and ``sigmoid(beta (W v + c))``. No value leaves the device.
        """
        rbm, g = self.rbm, self.generator
        W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
        betas = self._betas[:, None, None]
        if self._pt_chain is None:
            start = self._init_chains(h0_probs, None, h0_probs.shape[0])
            self._pt_chain = start.expand(self.n_temperatures, -1, -1).clone()
        h = self._pt_chain
        for _ in range(self.k):
            v = bernoulli_sample(torch.sigmoid(betas * (h @ W + b)), g)
            pre = v @ W.t() + c
            h_probs = torch.sigmoid(betas * pre)
            h = bernoulli_sample(h_probs, g)
            energy = -(h * pre).sum(dim=-1) - v @ b  # (n_temperatures, n_chains)
            v, h, h_probs = self._swap(energy, (v, h, h_probs))
        self._pt_chain = h
        return v[0], h_probs[0], self.n_chains

    def _swap(self, energy: torch.Tensor, states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Metropolis swaps between temperatures ``(i, i + 1)`` for ``i`` of this step's parity,
        accepted with probability ``min(1, exp((beta_i - beta_{i+1}) (E_i - E_{i+1})))``."""
        parity, n_temp = self._pt_steps % 2, self.n_temperatures
        self._pt_steps += 1
        if n_temp - 1 <= parity:
            return states
        lower = torch.arange(parity, n_temp - 1, 2, device=energy.device)
        upper = lower + 1
        log_ratio = (self._betas[lower] - self._betas[upper])[:, None] * (energy[lower] - energy[upper])
        u = torch.rand(log_ratio.shape, generator=self.generator, device=energy.device, dtype=energy.dtype)
        accept = torch.log(u) < log_ratio
        index = torch.arange(n_temp, device=energy.device)[:, None].expand(-1, energy.shape[1]).clone()
        index[lower] = torch.where(accept, upper[:, None], lower[:, None])
        index[upper] = torch.where(accept, lower[:, None], upper[:, None])
        return tuple(s.gather(0, index[:, :, None].expand_as(s)) for s in states)

    @property
    def _sparse(self) -> bool:
        return self.sparsity_target is not None and self.sparsity_cost > 0

    def _accumulate_velocity(
        self, v0, h0, vk, hk, n: int, n_model: int, lr: float, momentum: float
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One process: ``u <- momentum * u + lr * (data - model statistics)`` in place, every
        statistic accumulated straight into its velocity by one BLAS call per term (GEMM for the
        weights, GEMV against a vector of ones for the biases): ten operators in all, which is
        what a digits-sized mini-batch costs. Returns the batch means ``(v0_mean, h0_mean)``
        when the sparsity term needs them, else ``(None, None)``."""
        ones_n, ones_m = self._ones(n, v0), self._ones(n_model, v0)
        a, b = lr / n, -lr / n_model
        self._vel_vb.addmv_(v0.t(), ones_n, beta=momentum, alpha=a).addmv_(vk.t(), ones_m, alpha=b)
        h0t, hkt = h0.t(), hk.t()
        self._vel_hb.addmv_(h0t, ones_n, beta=momentum, alpha=a).addmv_(hkt, ones_m, alpha=b)
        outer_accumulate_(self._vel_w, h0, v0, alpha=a, beta=momentum)
        outer_accumulate_(self._vel_w, hk, vk, alpha=b)
        if not self._sparse:
            return None, None
        return _mean0(v0), _mean0(h0)

    def _update_without_momentum(self, v0, h0, vk, hk, n: int, n_model: int, lr: float) -> None:
        """A trainer without momentum (``momentum=0.0``, the scikit-learn setting) keeps no
        velocity: ``W <- (1 - lr * weight_decay) W + lr * (data - model statistics)``, every
        statistic added straight into the parameter (two GEMMs and four GEMVs; with the
        velocity there would be three more passes over the parameters per mini-batch)."""
        rbm = self.rbm
        ones_n, ones_m = self._ones(n, v0), self._ones(n_model, v0)
        a, b = lr / n, -lr / n_model
        h0t, hkt = h0.t(), hk.t()
        rbm.visible_bias.addmv_(v0.t(), ones_n, alpha=a).addmv_(vk.t(), ones_m, alpha=b)
        rbm.hidden_bias.addmv_(h0t, ones_n, alpha=a).addmv_(hkt, ones_m, alpha=b)
        W = rbm.weight
        outer_accumulate_(W, h0, v0, alpha=a, beta=1.0 - lr * self.weight_decay)
        outer_accumulate_(W, hk, vk, alpha=b)

    def _ones(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """A cached vector of ``n`` ones (the batch sums as matrix-vector products)."""
        cache = self.__dict__.setdefault("_ones_cache", {})  # trainers pickled before it existed
        ones = cache.get(n)
        if ones is None or ones.device != like.device or ones.dtype != like.dtype:
            ones = cache[n] = torch.ones(n, device=like.device, dtype=like.dtype)
        return ones

    def _reduce_statistics(
        self, v0, h0, vk, hk, n: int, n_model: int, lr: float, momentum: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data-parallel: the statistics of this process's rows, divided by the global counts,
        in one flat buffer, summed over the processes by ``all_reduce`` (so they are the global
        batch means), then added to the velocities. Returns ``(v0_mean, h0_mean)`` of the global batch."""
        W = self.rbm.weight
        n_hidden, n_visible = W.shape
        size = n_hidden * n_visible
        if self._grad is None:
            self._grad = torch.empty(size + 2 * n_visible + 2 * n_hidden, device=W.device, dtype=W.dtype)
        buf = self._grad
        grad_w = buf[:size].view(n_hidden, n_visible)
        grad_vb, v0_mean, grad_hb, batch_q = buf[size:].split((n_visible, n_visible, n_hidden, n_hidden))
        grad_w.addmm_(h0.t(), v0, beta=0.0, alpha=1.0 / n).addmm_(hk.t(), vk, alpha=-1.0 / n_model)
        torch.sum(v0, dim=0, out=v0_mean).div_(n)
        grad_vb.copy_(v0_mean).sub_(vk.sum(dim=0), alpha=1.0 / n_model)
        torch.sum(h0, dim=0, out=batch_q).div_(n)
        grad_hb.copy_(batch_q).sub_(hk.sum(dim=0), alpha=1.0 / n_model)
        if self.all_reduce is not None:
            self.all_reduce(buf)
        self._vel_vb.mul_(momentum).add_(grad_vb, alpha=lr)
        self._vel_hb.mul_(momentum).add_(grad_hb, alpha=lr)
        self._vel_w.mul_(momentum).add_(grad_w, alpha=lr)
        return v0_mean, batch_q.clone() if self._sparse else batch_q  # the buffer is reused

    # ------------------------------------------------------------------------------------
    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        W = self.rbm.weight
        X = check_data_tensor(X, n_features=self.rbm.n_visible, unit_interval=self.units.unit_interval)
        return X.to(device=W.device, dtype=W.dtype)

    def _run_epoch(self, X: torch.Tensor, validation_data: torch.Tensor | None, shard: Shard | None) -> dict:
        """One pass over ``X`` (this process's shard of it with ``shard``) in mini-batches."""
        W = self.rbm.weight
        lr = self.learning_rate * lr_factor(self.lr_schedule, self.lr_decay, self.epoch)
        mom = momentum_at(self.momentum, self.epoch)
        start_time = time.perf_counter()
        n = X.shape[0] if shard is None else shard.n_total
        batches = minibatches(
            n,
            self.batch_size,
            shuffle=self.shuffle,
            generator=self.generator,
            device=W.device,
            shard=shard,
            n_local=X.shape[0],
        )
        for v0, positions, size in zip(batch_rows(X, batches.rows), batches.positions, batches.sizes, strict=False):
            self.step(v0, lr, mom, rows=positions, n_rows=size)
        record = {
            "epoch": self.epoch + 1,
            "learning_rate": lr,
            "momentum": mom,
            "time": time.perf_counter() - start_time,
        }
        record.update(self.monitor(X, validation_data) if shard is None else self._sharded_monitor(X, shard))
        self.epoch += 1
        self.history.append(record)
        return record

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_divergence"] = None  # its message callables do not pickle; a new one starts afresh
        return state

    def _divergence_check(self) -> DivergenceCheck:
        """The trainer's one divergence piece, kept across calls so that its references (first
        reconstruction error, initial weights) are those of the first epoch ever run."""
        if self._divergence is None:
            self._divergence = DivergenceCheck(
                "reconstruction_error",
                lambda r: (
                    f"RBM training diverged at epoch {r['epoch']}: the reconstruction error is not finite. "
                    f"{_DIVERGENCE_HINT}"
                ),
                hint=_DIVERGENCE_HINT,
                parameters_first=True,
                parameter_message=lambda r, bad: (
                    f"RBM training diverged at epoch {r['epoch']}: parameters {bad} are "
                    f"NaN or infinite. {_DIVERGENCE_HINT}"
                ),
                hidden_margin=lambda _: self._hidden_margin,
                what="RBM training",
            )
        return self._divergence

    @torch.no_grad()
    def partial_fit(
        self, X: torch.Tensor, validation_data: torch.Tensor | None = None, *, shard: Shard | None = None
    ) -> dict:
        """One pass over ``X`` in mini-batches; returns and records the epoch's monitors.

        ``shard`` (data-parallel runs, :mod:`dbn.distributed`): ``X`` is this process's shard and
        the batches are its rows of the global batches (:func:`dbn.engine.minibatches`).
        Raises :class:`DivergenceError` when the parameters or the monitors are not finite.
        """
        return self.fit(X, 1, validation_data=validation_data, shard=shard)[0]

    @torch.no_grad()
    def monitor(self, X: torch.Tensor, validation_data: torch.Tensor | None = None) -> dict:
        """Monitors on a subset of ``X`` of at most ``monitor_size`` samples.

        Returns ``reconstruction_error`` (squared error of the mean-field reconstruction, summed
        over units, mean over samples), for Bernoulli visible units ``pseudo_likelihood`` (the
        stochastic one-bit estimate, per sample) and ``pseudo_likelihood_per_unit``, and with
        ``validation_data`` the ``free_energy_gap``: mean free energy of held-out data minus that
        of as many training samples. A growing gap means overfitting.
        """
        rbm = self.rbm
        m = min(self.monitor_size, X.shape[0])
        if is_sparse(X):
            rows = (
                torch.arange(m, device=X.device)
                if m == X.shape[0]
                else torch.randperm(X.shape[0], generator=self.generator, device=X.device)[:m]
            )
            return self._blockwise_monitor(X, rows, validation_data)
        sub = (
            X[:m]
            if m == X.shape[0]
            else X.index_select(0, torch.randperm(X.shape[0], generator=self.generator, device=X.device)[:m])
        )
        h = rbm.hidden_probs(sub)  # rbm.reconstruct(sub), keeping h for the saturation check
        out = {"reconstruction_error": float(Fn.reconstruction_error(sub, rbm.visible_mean(h)))}
        self._hidden_margin = float(torch.minimum(h, 1 - h).max()) if h.numel() else None
        if rbm.visible == "bernoulli":
            pl = rbm.pseudo_likelihood(sub, generator=self.generator).mean()
            out["pseudo_likelihood"] = float(pl)
            out["pseudo_likelihood_per_unit"] = float(pl) / rbm.n_visible
        if validation_data is not None:
            V = check_data_tensor(validation_data, name="validation_data", n_features=rbm.n_visible)
            V = V.to(device=X.device, dtype=X.dtype)
            mv = min(m, V.shape[0])
            gap = rbm.free_energy(V[:mv]).mean() - rbm.free_energy(sub[:mv]).mean()
            out["free_energy_gap"] = float(gap)
        return out

    @torch.no_grad()
    def _blockwise_monitor(self, X: torch.Tensor, rows: torch.Tensor, validation_data: torch.Tensor | None) -> dict:
        """:meth:`monitor` of a sparse ``X`` on its subset ``rows``, densified a block of
        :func:`dbn.engine.block_rows` rows at a time: the same random draws and per-sample values
        reduced alike (equal to the dense monitor when the subset fits in one block)."""
        rbm, m = self.rbm, rows.shape[0]
        bernoulli = rbm.visible == "bernoulli"
        units = torch.randint(0, rbm.n_visible, (m,), generator=self.generator, device=X.device) if bernoulli else None
        V = None
        if validation_data is not None:
            V = check_data_tensor(validation_data, name="validation_data", n_features=rbm.n_visible)
            V = V.to(device=X.device, dtype=X.dtype)
        mv = 0 if V is None else min(m, V.shape[0])
        errors, pls, energies, margin = [], [], [], None
        block = block_rows(X)
        buffer = sparse_buffer(X, block)
        for start in range(0, m, block):
            v = take_rows(X, rows[start : start + block], buffer)
            h = rbm.hidden_probs(v)
            errors.append(((v - rbm.visible_mean(h)) ** 2).sum(dim=1))
            block_margin = float(torch.minimum(h, 1 - h).max())
            margin = block_margin if margin is None else max(margin, block_margin)
            if units is not None:  # Bernoulli visible units
                delta = Fn._flip_free_energy_delta(
                    v, rbm.weight, rbm.visible_bias, rbm.hidden_bias, units[start : start + v.shape[0]]
                )
                pls.append(rbm.n_visible * F.logsigmoid(delta))
            if start < mv:
                energies.append(rbm.free_energy(v[: mv - start]))
        self._hidden_margin = margin
        out = {"reconstruction_error": float(torch.cat(errors).mean())}
        if bernoulli:
            pl = torch.cat(pls).mean()
            out["pseudo_likelihood"] = float(pl)
            out["pseudo_likelihood_per_unit"] = float(pl) / rbm.n_visible
        if V is not None:
            out["free_energy_gap"] = float(rbm.free_energy(V[:mv]).mean() - torch.cat(energies).mean())
        return out

    @torch.no_grad()
    def _sharded_monitor(self, X: torch.Tensor, shard: Shard) -> dict:
        """:meth:`monitor` over all processes: the same random subset and pseudo-likelihood
        units as one process, sums all-reduced."""
        rbm, g = self.rbm, self.generator
        device = X.device
        n = shard.n_total
        m = min(self.monitor_size, n)
        sub = torch.arange(n, device=device) if m == n else torch.randperm(n, generator=g, device=device)[:m]
        own = ((sub >= shard.offset) & (sub < shard.offset + X.shape[0])).nonzero().squeeze(1)
        v = X.index_select(0, sub[own] - shard.offset)
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        sums[0] = ((v - rbm.reconstruct(v)) ** 2).sum(dtype=torch.float64)
        bernoulli = rbm.visible == "bernoulli"
        if bernoulli:
            units = torch.randint(0, rbm.n_visible, (m,), generator=g, device=device).index_select(0, own)
            delta = Fn._flip_free_energy_delta(v, rbm.weight, rbm.visible_bias, rbm.hidden_bias, units)
            sums[1] = (rbm.n_visible * F.logsigmoid(delta)).sum(dtype=torch.float64)
        shard.all_reduce(sums)
        out = {"reconstruction_error": float(sums[0]) / m}
        if bernoulli:
            out["pseudo_likelihood"] = float(sums[1]) / m
            out["pseudo_likelihood_per_unit"] = out["pseudo_likelihood"] / rbm.n_visible
        return out

    @torch.no_grad()
    def fit(
        self,
        X: torch.Tensor,
        n_epochs: int,
        *,
        validation_data: torch.Tensor | None = None,
        verbose: bool = False,
        callbacks: Sequence[Callable[[RBM, dict], Any]] = (),
        description: str = "RBM",
        shard: Shard | None = None,
    ) -> list[dict]:
        """Run ``n_epochs`` passes of :meth:`partial_fit` on :func:`dbn.engine.fit_loop`;
        returns this call's records.

        ``callback(rbm, record)`` is called after every epoch; if any returns ``True``
        training stops after that epoch (the engine's contract). ``verbose`` shows a progress
        bar; ``shard`` as in :meth:`partial_fit`.
        """
        n_epochs = check_int("n_epochs", n_epochs, low=0)
        X = self._prepare(X)
        if self.centered and self._offsets is None and X.shape[0]:
            self._init_offsets(X)
        pieces: list = [self._divergence_check()]
        if verbose:
            pieces.append(ProgressBar(n_epochs, description, skip=("epoch", "momentum"), fmt=".4g", leave=False))
        return fit_loop(
            self.rbm,
            range(n_epochs),
            lambda _: self._run_epoch(X, validation_data, shard),
            callbacks=callbacks,
            pieces=pieces,
            work=self.batch_size * self.rbm.weight.numel(),
            device=self.rbm.weight.device,
            probe=self._thread_probe(X, validation_data) if self._single_process(shard) else None,
        )

    def _single_process(self, shard: Shard | None) -> bool:
        return shard is None and self.world_size == 1 and self.all_reduce is None

    def _thread_probe(self, X: torch.Tensor, validation_data: torch.Tensor | None) -> Callable[[], list]:
        """The thread policy's probe (:func:`dbn._threads.fit_threads`): a scratch copy of the
        trainer (generator, velocities and chains included) runs the first mini-batch of ``X``,
        the last, shorter one when there is one, and the monitors; returns every tensor of its
        state and the monitors' values. The trainer itself is untouched."""
        n = X.shape[0]
        size = min(self.batch_size, n)
        sizes = ([size] if n else []) + ([n % size] if n > size and n % size else [])
        lr = self.learning_rate * lr_factor(self.lr_schedule, self.lr_decay, self.epoch)
        mom = momentum_at(self.momentum, self.epoch)

        @torch.no_grad()
        def probe() -> list:
            scratch = copy.deepcopy(self, memo={id(self.history): []})
            for rows in sizes:
                scratch.step(next(iter(batch_rows(X, [slice(0, rows)]))), lr, mom)
            monitors = scratch.monitor(X, validation_data) if n else {}
            out = [*scratch.rbm.state_dict().values(), torch.tensor(list(monitors.values()), dtype=torch.float64)]
            for value in scratch.state_dict().values():
                out.extend(v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, torch.Tensor))
            return out

        # verdicts hold for later fits of the same shapes and code path (repeated partial_fit)
        key = (tuple(X.shape), None if validation_data is None else tuple(validation_data.shape), mom == 0.0)
        probe.verdicts = self.__dict__.setdefault("_thread_verdicts", {}).setdefault(key, {})  # type: ignore[attr-defined]
        return probe


def train_rbm(
    rbm: RBM,
    X: torch.Tensor,
    *,
    n_epochs: int = 10,
    validation_data: torch.Tensor | None = None,
    init_visible_bias: bool = True,
    verbose: bool = False,
    callbacks: Sequence[Callable[[RBM, dict], None]] = (),
    **trainer_options,
) -> list[dict]:
    """Train an RBM by contrastive divergence and return its per-epoch history.

    Parameters
    ----------
    rbm : RBM
        The model, trained in place.
    X : Tensor of shape (n_samples, n_visible)
        Training data (moved to the model's device and dtype; a mismatch copies it once).
    n_epochs : int, default=10
    validation_data : Tensor, optional
        Held-out data for the free-energy gap monitor.
    init_visible_bias : bool, default=True
        Set the visible bias from the data first (:meth:`RBM.init_visible_bias_`).
    verbose : bool, default=False
        Show a progress bar with the monitors.
    callbacks : sequence of callables
        Each is called as ``callback(rbm, record)`` after every epoch; if any returns ``True``
        (``is True``), training stops after that epoch (the contract of :mod:`dbn.engine`).
    **trainer_options
        Options of :class:`CDTrainer` (``learning_rate``, ``batch_size``, ``k``, ``persistent``,
        ``momentum``, ``weight_decay``, ``sparsity_target``, ``sparsity_cost``, ``generator``...).

    Returns
    -------
    list of dict
        One record per epoch: ``epoch``, ``learning_rate``, ``momentum``, ``time``,
        ``reconstruction_error``, ``pseudo_likelihood`` (Bernoulli visible units),
        ``free_energy_gap`` (with validation data).

    Raises
    ------
    DivergenceError
        When the parameters or monitors become NaN or infinite.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = (torch.rand(300, 20, generator=g) < 0.2).float()
    >>> rbm = RBM(20, 10, generator=g)
    >>> history = train_rbm(rbm, X, n_epochs=3, learning_rate=0.05, batch_size=30, generator=g)
    >>> len(history)
    3
    """
    trainer = CDTrainer(rbm, **trainer_options)
    X = check_data_tensor(X, n_features=rbm.n_visible, unit_interval=trainer.units.unit_interval)
    X = X.to(device=rbm.weight.device, dtype=rbm.weight.dtype)
    if init_visible_bias:
        rbm.init_visible_bias_(X)
    return trainer.fit(X, n_epochs, validation_data=validation_data, verbose=verbose, callbacks=callbacks)
