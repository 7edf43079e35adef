"""Pure tensor maths of restricted Boltzmann machines.

Conventions: ``weight`` has shape ``(n_hidden, n_visible)`` (like ``nn.Linear.weight`` of the
visible-to-hidden map), ``visible_bias`` ``(n_visible,)``, ``hidden_bias`` ``(n_hidden,)``;
data are ``(n_samples, n_visible)`` tensors. Every function follows its inputs' device and
dtype, and every random function takes an explicit ``generator``.

The energy of a joint configuration is

.. math:: E(v, h) = E_v(v; b) - h^\\top c - h^\\top W v

where ``E_v`` is ``-v^T b`` for Bernoulli visible units and ``||v - b||^2 / 2`` for Gaussian
ones, and the free energy sums the (Bernoulli) hidden units out:
``F(v) = E_v(v; b) - sum_j softplus(c_j + W_j v)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._linalg import bernoulli_sample
from .units import Units, get_units

__all__ = [
    "hidden_input",
    "hidden_probs",
    "visible_input",
    "visible_mean",
    "sample_bernoulli",
    "sample_hidden",
    "sample_visible",
    "energy",
    "free_energy",
    "cd_statistics",
    "reconstruction_error",
    "pseudo_likelihood",
]


def _check_dtype(x: torch.Tensor, weight: torch.Tensor, what: str) -> None:
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{what} has dtype {x.dtype} but weight has dtype {weight.dtype}; convert it with {what}.to(weight.dtype)."
        )


def _check_shapes(v: torch.Tensor, weight: torch.Tensor, what: str = "v") -> None:
    if v.dim() != 2 or weight.dim() != 2 or v.shape[1] != weight.shape[1]:
        raise ValueError(
            f"{what} must have shape (n_samples, {weight.shape[1]}) to match weight of shape "
            f"{tuple(weight.shape)}; got {what} of shape {tuple(v.shape)}."
        )
    _check_dtype(v, weight, what)


def hidden_input(v: torch.Tensor, weight: torch.Tensor, hidden_bias: torch.Tensor) -> torch.Tensor:
    """Total input to the hidden units, ``v @ weight.T + hidden_bias``.

    Examples
    --------
    >>> hidden_input(torch.ones(1, 2), torch.ones(3, 2), torch.zeros(3))
    tensor([[2., 2., 2.]])
    """
    _check_shapes(v, weight)
    return torch.addmm(hidden_bias, v, weight.t())


def hidden_probs(v: torch.Tensor, weight: torch.Tensor, hidden_bias: torch.Tensor) -> torch.Tensor:
    """Conditional probabilities ``p(h_j = 1 | v) = sigmoid(c_j + W_j v)``.

    Examples
    --------
    >>> hidden_probs(torch.zeros(1, 2), torch.ones(3, 2), torch.zeros(3))
    tensor([[0.5000, 0.5000, 0.5000]])
    """
    return torch.sigmoid(hidden_input(v, weight, hidden_bias))


def visible_input(h: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor) -> torch.Tensor:
    """Total input to the visible units, ``h @ weight + visible_bias``.

    Examples
    --------
    >>> visible_input(torch.ones(1, 3), torch.ones(3, 2), torch.zeros(2))
    tensor([[3., 3.]])
    """
    if h.dim() != 2 or h.shape[1] != weight.shape[0]:
        raise ValueError(
            f"h must have shape (n_samples, {weight.shape[0]}) to match weight of shape "
            f"{tuple(weight.shape)}; got h of shape {tuple(h.shape)}."
        )
    _check_dtype(h, weight, "h")
    return torch.addmm(visible_bias, h, weight)


def visible_mean(
    h: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, visible: str | Units = "bernoulli"
) -> torch.Tensor:
    """Conditional mean of the visible units given the hidden ones.

    Probabilities ``sigmoid(b + W^T h)`` for Bernoulli units, ``b + W^T h`` for Gaussian ones.

    Examples
    --------
    >>> visible_mean(torch.zeros(1, 3), torch.ones(3, 2), torch.ones(2), "gaussian")
    tensor([[1., 1.]])
    """
    return get_units(visible).mean(visible_input(h, weight, visible_bias))


def sample_bernoulli(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary samples with the given probabilities (uniform draw and compare).

    The package's one Bernoulli primitive is :func:`dbn._linalg.bernoulli_sample`
    (``torch.rand(probs.shape, generator=generator) < probs``); this is its public name.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> sample_bernoulli(torch.tensor([0.0, 1.0]), g)
    tensor([0., 1.])
    """
    return bernoulli_sample(probs, generator)


def sample_hidden(
    v: torch.Tensor, weight: torch.Tensor, hidden_bias: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample binary hidden states given ``v``; returns ``(samples, probabilities)``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> h, p = sample_hidden(torch.zeros(4, 2), torch.zeros(3, 2), torch.zeros(3), g)
    >>> h.shape, p.shape
    (torch.Size([4, 3]), torch.Size([4, 3]))
    """
    probs = hidden_probs(v, weight, hidden_bias)
    return sample_bernoulli(probs, generator), probs


def sample_visible(
    h: torch.Tensor,
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    visible: str | Units = "bernoulli",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample visible states given ``h``; returns ``(samples, conditional means)``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> v, m = sample_visible(torch.zeros(4, 3), torch.zeros(3, 2), torch.zeros(2), "gaussian", g)
    >>> v.shape
    torch.Size([4, 2])
    """
    units = get_units(visible)
    mean = units.mean(visible_input(h, weight, visible_bias))
    return units.sample(mean, generator), mean


def energy(
    v: torch.Tensor,
    h: torch.Tensor,
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    visible: str | Units = "bernoulli",
) -> torch.Tensor:
    """Energy ``E(v, h)`` of each joint configuration, shape ``(n_samples,)``.

    Examples
    --------
    >>> energy(torch.ones(1, 2), torch.ones(1, 3), torch.ones(3, 2), torch.zeros(2), torch.zeros(3))
    tensor([-6.])
    """
    _check_shapes(v, weight)
    units = get_units(visible)
    interaction = (hidden_input(v, weight, torch.zeros_like(hidden_bias)) * h).sum(dim=1)
    return units.bias_energy(v, visible_bias) - h @ hidden_bias - interaction


def free_energy(
    v: torch.Tensor,
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    visible: str | Units = "bernoulli",
) -> torch.Tensor:
    """Free energy ``F(v) = -log sum_h exp(-E(v, h))`` with Bernoulli hidden units.

    Computed stably with ``softplus``; shape ``(n_samples,)``.

    Examples
    --------
    >>> free_energy(torch.zeros(1, 2), torch.zeros(3, 2), torch.zeros(2), torch.zeros(3))
    tensor([-2.0794])
    """
    _check_shapes(v, weight)
    units = get_units(visible)
    return units.bias_energy(v, visible_bias) - F.softplus(hidden_input(v, weight, hidden_bias)).sum(dim=1)


def cd_statistics(
    v_data: torch.Tensor, h_data: torch.Tensor, v_model: torch.Tensor, h_model: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contrastive-divergence estimate of the log-likelihood gradient.

    Returns ``(d_weight, d_visible_bias, d_hidden_bias)``: data statistics minus model statistics,
    each averaged over its own batch (the two batches may differ in size, as with persistent
    chains). This is the ascent direction; it equals minus the gradient of
    ``mean F(v_data) - mean F(v_model)`` with the model samples held fixed (for Bernoulli
    visible units and ``h = p(h | v)``).

    This is the test oracle of the trainer's update: :meth:`dbn.rbm.CDTrainer.step` computes the
    same statistics fused into its momentum buffers (one GEMM each, no temporaries), and the
    tests check it against this plain form.

    Examples
    --------
    >>> v = torch.ones(2, 3); h = torch.ones(2, 4)
    >>> dW, db, dc = cd_statistics(v, h, v, h)
    >>> float(dW.abs().sum())
    0.0
    """
    for v, h, which in ((v_data, h_data, "data"), (v_model, h_model, "model")):
        if v.dim() != 2 or h.dim() != 2 or v.shape[0] != h.shape[0] or v.shape[0] == 0:
            raise ValueError(
                f"v_{which} and h_{which} must be non-empty 2-D tensors with the same number of rows; got "
                f"shapes {tuple(v.shape)} and {tuple(h.shape)}."
            )
    if v_data.shape[1] != v_model.shape[1] or h_data.shape[1] != h_model.shape[1]:
        raise ValueError(
            "The data and model statistics must have the same widths; got visible shapes "
            f"{tuple(v_data.shape)} vs {tuple(v_model.shape)} and hidden shapes {tuple(h_data.shape)} vs "
            f"{tuple(h_model.shape)}."
        )
    n_data, n_model = v_data.shape[0], v_model.shape[0]
    d_weight = h_data.t() @ v_data / n_data - h_model.t() @ v_model / n_model
    d_visible = v_data.mean(dim=0) - v_model.mean(dim=0)
    d_hidden = h_data.mean(dim=0) - h_model.mean(dim=0)
    return d_weight, d_visible, d_hidden


def reconstruction_error(v: torch.Tensor, v_reconstructed: torch.Tensor) -> torch.Tensor:
    """Mean over samples of the squared reconstruction error summed over units.

    Examples
    --------
    >>> reconstruction_error(torch.zeros(2, 3), torch.ones(2, 3))
    tensor(3.)
    """
    if v.shape != v_reconstructed.shape:
        raise ValueError(
            f"v and v_reconstructed must have the same shape; got {tuple(v.shape)} and {tuple(v_reconstructed.shape)}."
        )
    return ((v - v_reconstructed) ** 2).sum(dim=1).mean()


def _flip_free_energy_delta(
    v: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """``F(v with bit index[n] flipped) - F(v)`` for each sample n (Bernoulli visible units)."""
    rows = torch.arange(v.shape[0], device=v.device)
    vi = v[rows, index]
    d = 1.0 - 2.0 * vi  # change of v_i when flipped
    pre = hidden_input(v, weight, hidden_bias)
    pre_flipped = pre + d[:, None] * weight[:, index].t()
    return -d * visible_bias[index] - (F.softplus(pre_flipped) - F.softplus(pre)).sum(dim=1)


def pseudo_likelihood(
    v: torch.Tensor,
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    *,
    exact: bool = False,
    generator: torch.Generator | None = None,
    per_unit: bool = False,
    chunk_elements: int = 2**24,
) -> torch.Tensor:
    """Log pseudo-likelihood of each sample under a Bernoulli-visible RBM.

    ``log PL(v) = sum_i log p(v_i | v_{-i}) = sum_i log sigmoid(F(v^{(i)}) - F(v))`` where
    ``v^{(i)}`` is ``v`` with unit ``i`` flipped.

    Parameters
    ----------
    v : Tensor of shape (n_samples, n_visible)
        Visible vectors in [0, 1].
    weight, visible_bias, hidden_bias : Tensor
        The RBM's parameters.
    exact : bool, default=False
        If False, the stochastic estimate used by scikit-learn: one random unit per sample,
        scaled by ``n_visible``. If True, the exact sum over all units (deterministic,
        vectorised over units in chunks of at most ``chunk_elements`` entries).
    generator : torch.Generator, optional
        Random source for the stochastic estimate.
    per_unit : bool, default=False
        Divide by ``n_visible`` so the figure compares across input sizes.
    chunk_elements : int, default=2**24
        Memory bound of the exact computation, in tensor entries.

    Returns
    -------
    Tensor of shape (n_samples,)

    Examples
    --------
    >>> W = torch.zeros(3, 4); b = torch.zeros(4); c = torch.zeros(3)
    >>> pseudo_likelihood(torch.ones(2, 4), W, b, c, exact=True)
    tensor([-2.7726, -2.7726])
    """
    _check_shapes(v, weight)
    n, n_visible = v.shape
    if not exact:
        index = torch.randint(0, n_visible, (n,), generator=generator, device=v.device)
        result = n_visible * F.logsigmoid(_flip_free_energy_delta(v, weight, visible_bias, hidden_bias, index))
    else:
        n_hidden = weight.shape[0]
        step = max(1, chunk_elements // max(1, n_visible * n_hidden))
        wt = weight.t()  # (n_visible, n_hidden)
        parts = []
        for start in range(0, n, step):
            vb = v[start : start + step]
            d = 1.0 - 2.0 * vb  # (m, n_visible)
            pre = hidden_input(vb, weight, hidden_bias)  # (m, n_hidden)
            sp = F.softplus(pre).sum(dim=1)  # (m,)
            pre_flipped = pre[:, None, :] + d[:, :, None] * wt[None, :, :]  # (m, n_visible, n_hidden)
            delta = -d * visible_bias - (F.softplus(pre_flipped).sum(dim=2) - sp[:, None])
            parts.append(F.logsigmoid(delta).sum(dim=1))
        result = torch.cat(parts)
    return result / n_visible if per_unit else result
