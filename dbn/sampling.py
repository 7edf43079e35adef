"""Drawing samples from trained models: parallel Gibbs chains in an RBM, and the DBN's
generative pass (Gibbs in the top RBM, then one top-down pass through the lower layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from . import functional as Fn
from ._validation import check_data_tensor, check_int
from .units import get_units

__all__ = ["sample_rbm", "sample_dbn"]

InitName = Literal["random", "data"]


def _check_rbm(rbm, name: str = "rbm") -> None:
    for attr in ("weight", "visible_bias", "hidden_bias"):
        if not isinstance(getattr(rbm, attr, None), torch.Tensor):
            raise TypeError(f"{name} must be a dbn.RBM (with a {attr!r} tensor). Got {type(rbm).__name__}.")


def _initial_states(
    rbm, n_chains: int, init, data: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    W = rbm.weight
    n_visible = W.shape[1]
    units = get_units(getattr(rbm, "visible", "bernoulli"))
    if init is None:
        init = "data" if data is not None else "random"
    if isinstance(init, torch.Tensor):
        init = check_data_tensor(init, name="init", n_features=n_visible)
        if init.shape[0] != n_chains:
            raise ValueError(
                f"init has {init.shape[0]} rows but {n_chains} chains are run "
                f"(ceil(n_samples / n_samples_per_chain)); give one starting state per chain."
            )
        return init.detach().to(device=W.device, dtype=W.dtype)
    if init == "random":
        shape = (n_chains, n_visible)
        if units.name == "bernoulli":
            return Fn.sample_bernoulli(torch.full(shape, 0.5, device=W.device, dtype=W.dtype), generator)
        return torch.randn(shape, generator=generator, device=W.device, dtype=W.dtype)
    if init == "data":
        if data is None:
            raise ValueError("init='data' needs the 'data' argument (the training data to start the chains from).")
        data = check_data_tensor(data, name="data", n_features=n_visible)
        rows = torch.randint(0, data.shape[0], (n_chains,), generator=generator, device=data.device)
        return data[rows].to(device=W.device, dtype=W.dtype)
    raise ValueError(f"The 'init' parameter must be 'random', 'data', a tensor or None. Got {init!r} instead.")


@torch.no_grad()
def sample_rbm(
    rbm,
    n_samples: int,
    *,
    n_steps: int = 1000,
    n_samples_per_chain: int = 1,
    thin: int = 1,
    init: torch.Tensor | InitName | None = None,
    data: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_means: bool = True,
) -> torch.Tensor:
    """Draw visible samples from an RBM with block Gibbs chains run in parallel.

    ``ceil(n_samples / n_samples_per_chain)`` chains run side by side; each does ``n_steps``
    burn-in sweeps ``v -> h -> v``, then yields one sample, then one more every ``thin`` sweeps
    until it has given ``n_samples_per_chain``.

    Parameters
    ----------
    rbm : RBM
    n_samples : int
        Number of samples returned.
    n_steps : int, default=1000
        Burn-in sweeps before the first sample of each chain.
    n_samples_per_chain : int, default=1
        Samples taken from each chain (fewer chains, correlated samples).
    thin : int, default=1
        Sweeps between successive samples of a chain.
    init : Tensor, {"random", "data"} or None, default=None
        Starting visible states: a tensor of shape (n_chains, n_visible); ``"random"`` (uniform
        binary states, or N(0, 1) for Gaussian units); ``"data"`` (random rows of ``data``).
        ``None`` means ``"data"`` when ``data`` is given and ``"random"`` otherwise.
    data : Tensor of shape (n, n_visible), optional
        Data to start from with ``init="data"``.
    generator : torch.Generator, optional
        Random source, on the model's device.
    return_means : bool, default=True
        Return the conditional means ``E[v | h]`` of the last sweep (smoother images) rather
        than the sampled states.

    Returns
    -------
    Tensor of shape (n_samples, n_visible)
        Samples ordered chain by chain: rows ``i * n_samples_per_chain + t`` come from chain ``i``.

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM(6, 4, generator=g)
    >>> sample_rbm(rbm, 10, n_steps=20, generator=g).shape
    torch.Size([10, 6])
    """
    _check_rbm(rbm)
    n_samples = check_int("n_samples", n_samples, low=1)
    n_steps = check_int("n_steps", n_steps, low=0)
    per_chain = check_int("n_samples_per_chain", n_samples_per_chain, low=1)
    thin = check_int("thin", thin, low=1)
    W, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    units = get_units(getattr(rbm, "visible", "bernoulli"))
    if generator is not None and generator.device.type != W.device.type:
        raise ValueError(
            f"The generator is on {generator.device} but the RBM is on {W.device}; create it on the model's device."
        )
    n_chains = math.ceil(n_samples / per_chain)
    v = _initial_states(rbm, n_chains, init, data, generator)
    mean = v
    Wt = W.t()

    def sweep(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = Fn.sample_bernoulli(torch.sigmoid(torch.addmm(c, v, Wt)), generator)
        m = units.mean(torch.addmm(b, h, W))
        return units.sample(m, generator), m

    for _ in range(n_steps):
        v, mean = sweep(v)
    taken = []
    for t in range(per_chain):
        if t > 0:
            for _ in range(thin):
                v, mean = sweep(v)
        taken.append(mean if return_means else v)
    out = torch.stack(taken, dim=1).reshape(n_chains * per_chain, -1)
    return out[:n_samples]


@torch.no_grad()
def sample_dbn(
    layers: Sequence,
    n_samples: int,
    *,
    n_steps: int = 1000,
    n_samples_per_chain: int = 1,
    thin: int = 1,
    init: torch.Tensor | InitName | None = None,
    data: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_means: bool = True,
) -> torch.Tensor:
    """Generate samples from a deep belief network given as a list of RBMs (bottom first).

    The DBN's generative model: Gibbs sampling in the top RBM (an undirected associative
    memory over the top two layers) gives binary states of the penultimate layer, which are
    then passed down once through the directed lower layers, ``x_{l-1} = E[x_{l-1} | x_l]``,
    with each lower layer's ``visible_mean`` (a mean-field top-down pass; the last one gives
    the data-space means).

    Parameters
    ----------
    layers : sequence of RBM
        The stack, bottom layer first; ``layers[i].n_hidden == layers[i + 1].n_visible``.
    n_samples : int
    n_steps, n_samples_per_chain, thin, generator
        As in :func:`sample_rbm`, for the chains in the top RBM.
    init : Tensor, {"random", "data"} or None, default=None
        Starting states of the top RBM's visible layer (the penultimate layer).
    data : Tensor, optional
        Data in the input space for ``init="data"``: propagated up through the lower layers
        (hidden probabilities) to start the top chains.
    return_means : bool, default=True
        Return the bottom layer's conditional means; False samples the bottom visible units too.

    Returns
    -------
    Tensor of shape (n_samples, layers[0].n_visible)

    Examples
    --------
    >>> from dbn.rbm import RBM
    >>> g = torch.Generator().manual_seed(0)
    >>> layers = [RBM(8, 6, generator=g), RBM(6, 4, generator=g)]
    >>> sample_dbn(layers, 5, n_steps=10, generator=g).shape
    torch.Size([5, 8])
    """
    if isinstance(layers, torch.nn.Module) and not isinstance(layers, (torch.nn.ModuleList, torch.nn.Sequential)):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: give the DBN's RBMs, bottom layer first.")
    for i, layer in enumerate(layers):
        _check_rbm(layer, name=f"layers[{i}]")
    for i in range(len(layers) - 1):
        if layers[i].weight.shape[0] != layers[i + 1].weight.shape[1]:
            raise ValueError(
                f"layers[{i}] has {layers[i].weight.shape[0]} hidden units but layers[{i + 1}] has "
                f"{layers[i + 1].weight.shape[1]} visible units; the stack must be given bottom first "
                "with matching sizes."
            )
    if data is not None:
        data = check_data_tensor(data, name="data", n_features=layers[0].weight.shape[1])
        for layer in layers[:-1]:
            data = Fn.hidden_probs(data.to(layer.weight), layer.weight.detach(), layer.hidden_bias.detach())
    x = sample_rbm(
        layers[-1],
        n_samples,
        n_steps=n_steps,
        n_samples_per_chain=n_samples_per_chain,
        thin=thin,
        init=init,
        data=data,
        generator=generator,
        return_means=return_means and len(layers) == 1,
    )
    for i, layer in enumerate(reversed(layers[:-1])):
        W, b = layer.weight.detach(), layer.visible_bias.detach()
        visible = getattr(layer, "visible", "bernoulli")
        x = Fn.visible_mean(x.to(W), W, b, visible)
        if i == len(layers) - 2 and not return_means:
            x = get_units(visible).sample(x, generator)
    return x
