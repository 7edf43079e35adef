"""Export of pretrained layers into a plain ``torch.nn.Sequential``.

The exported network depends on PyTorch alone: ``nn.Linear`` layers carrying the stack's
weights exactly (no transpose: both use ``(out_features, in_features)``), each followed by
``nn.Sigmoid``, and optionally an output layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ._validation import check_choice, check_int, check_scalar
from .autoencoder import DenoisingAutoencoder
from .rbm import RBM
from .stack import LayerStack

__all__ = ["to_torch", "fold_scaling", "Head"]

Head = Literal["softmax", "linear"]


def to_torch(
    layers: LayerStack | Sequence[RBM | DenoisingAutoencoder],
    *,
    head: Head | None = None,
    n_outputs: int | None = None,
    head_std: float = 0.01,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Copy pretrained layers into a ``torch.nn.Sequential`` ready for fine-tuning.

    Parameters
    ----------
    layers : LayerStack or sequence of RBM / DenoisingAutoencoder
        The pretrained stack, bottom layer first.
    head : {"softmax", "linear"} or None, default=None
        Output layer: ``"softmax"`` adds an ``nn.Linear`` producing class logits (the softmax
        itself lives in the loss, ``nn.CrossEntropyLoss``, as is usual in PyTorch);
        ``"linear"`` adds an ``nn.Linear`` regression output. None exports the feature
        extractor alone.
    n_outputs : int, optional
        Width of the head (number of classes or targets); required with ``head``.
    head_std : float, default=0.01
        The head's weights are drawn from N(0, head_std^2); its bias is zero.
    dropout : float, default=0.0
        If positive, an ``nn.Dropout(dropout)`` follows each hidden ``Sigmoid`` (for dropout
        fine-tuning; inactive in eval mode, so activations are unchanged at inference).
    input_dropout : float, default=0.0
        If positive, an ``nn.Dropout(input_dropout)`` comes first.
    generator : torch.Generator, optional
        Random source for the head's weights (the only freshly initialised layer). Without
        one, the head is drawn from a fresh ``torch.Generator`` with PyTorch's default seed,
        so the result is deterministic. Either way the global RNG is never touched: the layers
        are allocated uninitialised (``nn.utils.skip_init``) before their weights are written.

    Returns
    -------
    nn.Sequential
        ``[Dropout], Linear, Sigmoid, [Dropout], ..., [Linear]`` with copies of the weights,
        on the stack's device and dtype, in training mode.

    Examples
    --------
    >>> from dbn import RBM
    >>> net = to_torch([RBM(8, 6), RBM(6, 4)], head="softmax", n_outputs=3)
    >>> net
    Sequential(
      (0): Linear(in_features=8, out_features=6, bias=True)
      (1): Sigmoid()
      (2): Linear(in_features=6, out_features=4, bias=True)
      (3): Sigmoid()
      (4): Linear(in_features=4, out_features=3, bias=True)
    )
    """
    stack = layers if isinstance(layers, LayerStack) else LayerStack(list(layers))
    if head is not None:
        check_choice("head", head, ("softmax", "linear"))
        if n_outputs is None:
            raise ValueError(f"The 'n_outputs' parameter is required with head={head!r}.")
        n_outputs = check_int("n_outputs", n_outputs, low=1)
    head_std = check_scalar("head_std", head_std, low=0.0)
    dropout = check_scalar("dropout", dropout, low=0.0, high=1.0, high_inclusive=False)
    input_dropout = check_scalar("input_dropout", input_dropout, low=0.0, high=1.0, high_inclusive=False)
    modules: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout else []
    for layer in stack.layers:
        w = layer.weight
        linear = nn.utils.skip_init(nn.Linear, layer.n_visible, layer.n_hidden, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(layer.hidden_bias)
        modules += [linear, nn.Sigmoid()]
        if dropout:
            modules.append(nn.Dropout(dropout))
    if head is not None:
        w = stack._layer_list()[-1].weight
        if generator is None:
            generator = torch.Generator(device=w.device)  # fresh, default seed: never the global RNG
        out = nn.utils.skip_init(nn.Linear, stack.sizes[-1], n_outputs, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            noise = torch.randn(out.weight.shape, generator=generator, device=w.device, dtype=w.dtype)
            out.weight.copy_(noise * head_std)
            out.bias.zero_()
        modules.append(out)
    return nn.Sequential(*modules)


def fold_scaling(
    net: nn.Sequential,
    *,
    input_mean: torch.Tensor | None = None,
    input_scale: torch.Tensor | None = None,
    output_mean: torch.Tensor | None = None,
    output_scale: torch.Tensor | None = None,
) -> nn.Sequential:
    """A copy of ``net`` with input standardisation and output un-standardisation folded in.

    If ``net`` was trained on ``z = (x - input_mean) / input_scale`` to predict
    ``(y - output_mean) / output_scale``, the returned network maps raw ``x`` to raw ``y``:
    the first ``nn.Linear`` becomes ``W / input_scale`` with bias ``b - W @ (input_mean /
    input_scale)``, and the last ``nn.Linear`` is scaled by ``output_scale`` and shifted by
    ``output_mean``. Layers between them are untouched (an input ``nn.Dropout`` before the
    first ``Linear`` then drops raw inputs: the same network at inference, in eval mode).

    Parameters
    ----------
    net : nn.Sequential
        A network whose first and last weight layers are ``nn.Linear``.
    input_mean, input_scale : Tensor of shape (in_features,), optional
        Both or neither.
    output_mean, output_scale : Tensor of shape (out_features,), optional
        Both or neither.

    Returns
    -------
    nn.Sequential
        A deep copy; ``net`` is left unchanged.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1))
    >>> mean, scale = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5])
    >>> raw = fold_scaling(net, input_mean=mean, input_scale=scale)
    >>> x = torch.randn(4, 2)
    >>> torch.allclose(raw(x), net((x - mean) / scale), atol=1e-6)
    True
    """
    import copy

    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("fold_scaling needs a network with nn.Linear layers.")
    for name, pair in (("input", (input_mean, input_scale)), ("output", (output_mean, output_scale))):
        if (pair[0] is None) != (pair[1] is None):
            raise ValueError(f"Pass both {name}_mean and {name}_scale, or neither.")
    net = copy.deepcopy(net)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        if input_mean is not None and input_scale is not None:
            first = linears[0]
            w = first.weight
            mean, scale = (t.to(device=w.device, dtype=w.dtype) for t in (input_mean, input_scale))
            first.bias.sub_(w @ (mean / scale))
            w.div_(scale)
        if output_mean is not None and output_scale is not None:
            last = linears[-1]
            w = last.weight
            mean, scale = (t.to(device=w.device, dtype=w.dtype) for t in (output_mean, output_scale))
            w.mul_(scale[:, None])
            last.bias.mul_(scale).add_(mean)
    return net
