"""Measurements and statistics of the comparison study (pure functions).

Per layer of a network (Glorot & Bengio, 2010, measure both):

- the back-propagated gradient with respect to the pre-activations ``s = W h + b``,
  reported as the root-mean-square over examples of ``||d loss_i / d s_i||`` (so that it does
  not depend on the probe batch size), and its ratio to the output layer's;
- the weight gradient ``||d L / d W||_F`` of the mean loss over the probe batch;
- activation statistics of the hidden units: mean, standard deviation, 98th percentile and
  the fraction *saturated*, i.e. of (example, unit) entries where the nonlinearity's
  derivative is below 5% of its maximum (sigmoid outside about [0.013, 0.987], tanh beyond
  about +-0.975, ReLU at 0, leaky ReLU below 0; maxout units never saturate);
- the weight change from initialisation ``||W - W_0||_F`` and its ratio to ``||W_0||_F``.

Statistics over seeds: Student-t confidence intervals of means and of paired differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..network import Maxout, hidden_linear_layers, linear_layers

__all__ = [
    "layer_statistics",
    "weight_change",
    "t_interval",
    "paired_differences",
    "SATURATION_DERIVATIVE",
]

#: A unit counts as saturated where its derivative is below this fraction of the maximum.
SATURATION_DERIVATIVE = 0.05

_ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, Maxout)


def _saturated(h: torch.Tensor, kind: nn.Module | None) -> torch.Tensor:
    """Fraction of entries of ``h`` (post-activation) where the derivative is near zero."""
    if isinstance(kind, nn.Sigmoid):
        frac = (h * (1 - h) < SATURATION_DERIVATIVE * 0.25).float().mean()
    elif isinstance(kind, nn.Tanh):
        frac = (1 - h * h < SATURATION_DERIVATIVE).float().mean()
    elif isinstance(kind, nn.ReLU):
        frac = (h <= 0).float().mean()
    elif isinstance(kind, nn.LeakyReLU):
        frac = (h < 0).float().mean() if kind.negative_slope < SATURATION_DERIVATIVE else h.new_zeros(())
    else:
        frac = h.new_zeros(())
    return frac


def _upper_quantile(h: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(h, q)`` (linear interpolation, same rounding) for a high ``q``, by a
    partial selection of the top ``(1 - q) n`` entries instead of a full sort (and with no
    size limit)."""
    n = h.numel()
    rank = torch.tensor(q, dtype=h.dtype, device=h.device) * (n - 1)
    below = int(rank.floor())
    top = torch.topk(h, n - below, sorted=True).values  # descending: the last is the rank-below entry
    low = top[-1]
    high = top[-2] if n - below >= 2 else low
    return torch.lerp(low, high, rank - below)


def layer_statistics(net: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> list[dict[str, float]]:
    """Per-layer gradient, activation and scale statistics of ``net`` on a probe batch.

    The network runs in eval mode (dropout off, batch norm on its running statistics; the
    mode is restored) under the cross-entropy loss of its logits. Parameters' ``.grad`` are not
    touched: the gradients come from ``torch.autograd.grad``.

    Parameters
    ----------
    net : nn.Sequential
        ``Linear``/``Maxout`` blocks with their activations, ending in an output ``Linear``
        (as built by :func:`dbn.training.build_mlp` or :func:`dbn.export.to_torch`).
    X : Tensor of shape (n_samples, n_features)
    y : Tensor of shape (n_samples,)
        Class indices.

    Returns
    -------
    list of dict
        One dict per linear layer, bottom first, the output layer last, with keys
        ``grad_s`` (RMS over examples of the per-example ``||d loss / d s||``),
        ``grad_s_ratio`` (``grad_s`` over the output layer's), ``grad_w`` (Frobenius norm of
        the weight gradient of the mean loss), ``weight_norm`` and, for hidden layers,
        ``act_mean``, ``act_std``, ``act_p98`` and ``act_saturated``.

    Examples
    --------
    >>> from dbn.network import build_mlp
    >>> net = build_mlp(4, (3, 3), 2, generator=torch.Generator().manual_seed(0))
    >>> stats = layer_statistics(net, torch.rand(8, 4), torch.tensor([0, 1] * 4))
    >>> len(stats), sorted(stats[0])[:3], stats[-1]["grad_s_ratio"]
    (3, ['act_mean', 'act_p98', 'act_saturated'], 1.0)
    """
    if not isinstance(net, nn.Sequential):
        raise ValueError(f"The 'net' parameter must be an nn.Sequential. Got {type(net).__name__}.")
    linears = linear_layers(net)
    n_hidden = len(hidden_linear_layers(net))
    if not linears or n_hidden == len(linears):
        raise ValueError("The network must end in an output nn.Linear producing class logits.")
    pre: dict[int, torch.Tensor] = {}
    handles = [lin.register_forward_hook(lambda m, i, o, k=k: pre.__setitem__(k, o)) for k, lin in enumerate(linears)]
    # walk the Sequential to find each hidden layer's output (after its activation)
    starts = {id(m) for m in linears} | {id(m) for m in net if isinstance(m, Maxout)}
    acts: list[torch.Tensor] = []
    kinds: list[nn.Module | None] = []
    was_training = net.training
    # layers frozen by fine-tuning (freeze_epochs) are measured too: grad on for the measurement
    frozen = [lin.weight for lin in linears if not lin.weight.requires_grad]
    net.eval()
    try:
        for w in frozen:
            w.requires_grad_(True)
        with torch.enable_grad():
            x = X
            block = -1
            for module in net:
                x = module(x)
                if id(module) in starts:
                    block += 1
                    if block < n_hidden:
                        acts.append(x)
                        kinds.append(module if isinstance(module, Maxout) else None)
                elif 0 <= block < n_hidden and not isinstance(module, nn.Dropout):
                    acts[block] = x
                    if isinstance(module, _ACTIVATIONS):
                        kinds[block] = module
            loss = F.cross_entropy(x, y)
            pre_list = [pre[k] for k in range(len(linears))]
            weights = [lin.weight for lin in linears]
            grads = torch.autograd.grad(loss, pre_list + weights)
    finally:
        for w in frozen:
            w.requires_grad_(False)
        for handle in handles:
            handle.remove()
        net.train(was_training)
    n = X.shape[0]
    g_s = [float(g.norm()) * math.sqrt(n) for g in grads[: len(linears)]]
    g_w = [float(g.norm()) for g in grads[len(linears) :]]
    top = g_s[-1]
    out: list[dict[str, float]] = []
    for k, lin in enumerate(linears):
        rec = {
            "grad_s": g_s[k],
            "grad_s_ratio": g_s[k] / top if top > 0 else math.nan,
            "grad_w": g_w[k],
            "weight_norm": float(lin.weight.detach().norm()),
        }
        if k < n_hidden:
            h = acts[k].detach().flatten()
            rec.update(
                act_mean=float(h.mean()),
                act_std=float(h.std()) if h.numel() > 1 else 0.0,
                act_p98=float(_upper_quantile(h.float(), 0.98)),
                act_saturated=float(_saturated(h, kinds[k])),
            )
        out.append(rec)
    return out


def weight_change(net: nn.Module, initial: Sequence[torch.Tensor]) -> list[tuple[float, float]]:
    """``(||W - W_0||_F, ||W - W_0||_F / ||W_0||_F)`` per linear layer, bottom first.

    Examples
    --------
    >>> lin = nn.Linear(2, 2)
    >>> w0 = [lin.weight.detach().clone()]
    >>> weight_change(nn.Sequential(lin), w0)[0][0]
    0.0
    """
    layers = linear_layers(net)
    if len(layers) != len(initial):
        raise ValueError(f"'initial' has {len(initial)} weights but the network {len(layers)} linear layers.")
    out = []
    with torch.no_grad():
        for lin, w0 in zip(layers, initial, strict=True):
            d = float((lin.weight - w0).norm())
            n0 = float(w0.norm())
            out.append((d, d / n0 if n0 > 0 else math.nan))
    return out


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean and two-sided Student-t confidence interval of the mean.

    ``mean +- t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation; NaN values are dropped; with fewer than two values the bounds are NaN.

    Returns
    -------
    dict
        ``mean``, ``low``, ``high``, ``half_width``, ``std``, ``n``.

    Examples
    --------
    >>> ci = t_interval([1.0, 2.0, 3.0])
    >>> ci["mean"], round(ci["half_width"], 4)
    (2.0, 2.4841)
    """
    from scipy import stats

    a = np.asarray(values, dtype=np.float64).ravel()
    a = a[~np.isnan(a)]
    n = int(a.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "half_width": math.nan, "std": math.nan, "n": 0}
    mean = float(a.mean())
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "half_width": math.nan, "std": math.nan, "n": n}
    std = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "half_width": half, "std": std, "n": n}


def paired_differences(a: dict[Any, float], b: dict[Any, float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and t-interval of ``a[k] - b[k]`` over the keys (e.g. seeds) present in both.

    Examples
    --------
    >>> d = paired_differences({0: 0.10, 1: 0.12, 2: 0.11}, {0: 0.05, 1: 0.06, 2: 0.07})
    >>> round(d["mean"], 3), d["n"], d["low"] > 0
    (0.05, 3, True)
    """
    keys = sorted(set(a) & set(b), key=repr)
    diffs = [a[k] - b[k] for k in keys]
    return t_interval(diffs, confidence)
