"""Building plain PyTorch networks: :func:`build_mlp`, :class:`Maxout` and the helpers that find
a network's affine layers (:func:`linear_layers`, :func:`hidden_linear_layers`) whatever the
extras (dropout, batch norm) around them.

The networks are ``nn.Sequential`` of standard torch modules, so a fine-tuned model is a
plain PyTorch model. Training lives in :mod:`dbn.training`.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._options import ACTIVATIONS, INITS, Activation, Init
from ._random import check_generator_device, resolve_device
from ._validation import check_choice, check_int, check_probability, per_layer

__all__ = ["Maxout", "build_mlp", "linear_layers", "hidden_linear_layers", "maxout_gain"]

_LEAKY_SLOPE = 0.01
_NORMAL_INIT_STD = 0.01
# ---------------------------------------------------------------------------------------------
# Building networks
# ---------------------------------------------------------------------------------------------


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al., 2013): the maximum of ``pieces`` affine functions.

    ``y_j = max_k (W x + b)_{j * pieces + k}`` for ``k = 0 .. pieces - 1``: one ``nn.Linear``
    with ``out_features * pieces`` outputs, whose rows ``j * pieces`` to
    ``(j + 1) * pieces - 1`` are the pieces of unit ``j``, followed by a max over the pieces.

    Parameters
    ----------
    in_features : int
        Size of each input sample.
    out_features : int
        Number of maxout units.
    pieces : int, default=2
        Number of affine pieces per unit (at least 1; ``pieces=1`` is a plain linear layer).
    bias : bool, default=True
        Whether the inner linear layer has a bias.
    device, dtype : optional
        Passed to the inner ``nn.Linear``.

    Attributes
    ----------
    linear : nn.Linear
        The affine map, ``weight`` of shape ``(out_features * pieces, in_features)``.

    Examples
    --------
    >>> m = Maxout(3, 2, pieces=4)
    >>> m.linear.weight.shape
    torch.Size([8, 3])
    >>> m(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pieces: int = 2,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features, low=1)
        self.pieces = check_int("pieces", pieces, low=1)
        self.linear = nn.Linear(
            self.in_features, self.out_features * self.pieces, bias=bias, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return z.view(*z.shape[:-1], self.out_features, self.pieces).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"


def _activation_module(activation: str) -> nn.Module:
    if activation == "sigmoid":
        return nn.Sigmoid()
    if activation == "tanh":
        return nn.Tanh()
    if activation == "relu":
        return nn.ReLU()
    return nn.LeakyReLU(_LEAKY_SLOPE)


@functools.cache
def maxout_gain(pieces: int) -> float:
    """Gain that keeps the second moment of a maxout layer's output equal to its input's.

    For ``z`` with i.i.d. N(0, s^2) pieces, ``E[max_k z_k ^ 2] = m_k s^2`` where ``m_k`` is the
    second moment of the maximum of ``k`` standard normals (``m_1 = m_2 = 1``: with two pieces
    ``max^2 + min^2 = z_1^2 + z_2^2``, and max and min are symmetric). The gain is
    ``1 / sqrt(m_k)``. (A ReLU's ``sqrt(2)`` would double the second moment at every layer.)

    Examples
    --------
    >>> round(maxout_gain(2), 4), round(maxout_gain(4), 3) < 1
    (1.0, True)
    """
    pieces = check_int("pieces", pieces, low=1)
    # E[M^2] = int x^2 k phi(x) Phi(x)^(k-1) dx, by the midpoint rule on [-12, 12]
    h, total = 1e-3, 0.0
    for i in range(24_000):
        x = -12.0 + (i + 0.5) * h
        phi = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        total += x * x * pieces * phi * (0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))) ** (pieces - 1)
    return 1.0 / math.sqrt(total * h)


def _gain(activation: str | None, pieces: int) -> float:
    """The init gain of a layer followed by ``activation`` (``None``: a linear output layer)."""
    if activation is None:
        return 1.0
    if activation == "maxout":
        return maxout_gain(pieces)
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", _LEAKY_SLOPE)
    return nn.init.calculate_gain(activation)  # type: ignore[arg-type]


def _init_linear_(
    layer: nn.Linear,
    init: str,
    activation: str | None,
    generator: torch.Generator | None,
    pieces: int = 2,
) -> None:
    """Initialise ``layer`` in place; ``activation=None`` means a linear (output) layer."""
    with torch.no_grad():
        if init == "normal":
            nn.init.normal_(layer.weight, 0.0, _NORMAL_INIT_STD, generator=generator)
        elif init == "xavier":
            nn.init.xavier_uniform_(layer.weight, gain=_gain(activation, pieces), generator=generator)
        else:  # He et al.: N(0, gain^2 / fan_in), as nn.init.kaiming_normal_ in fan-in mode
            std = _gain(activation, pieces) / math.sqrt(layer.weight.shape[1])
            nn.init.normal_(layer.weight, 0.0, std, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()


def build_mlp(
    n_inputs: int,
    hidden_layer_sizes: Sequence[int] = (100,),
    n_outputs: int | None = None,
    *,
    activation: Activation = "sigmoid",
    init: Init = "normal",
    dropout: float | Sequence[float] = 0.0,
    input_dropout: float = 0.0,
    batch_norm: bool = False,
    maxout_pieces: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """Build a feed-forward network as an ``nn.Sequential`` of plain torch modules.

    Layer order, for each hidden layer ``i`` (bracketed modules only when enabled)::

        [Dropout(input_dropout)]            # once, before the first layer
        Linear  | Maxout                    # the affine map of layer i
        [BatchNorm1d]
        Sigmoid | Tanh | ReLU | LeakyReLU   # absent for maxout (the max is the nonlinearity)
        [Dropout(dropout[i])]

    then, when ``n_outputs`` is given, a final ``Linear`` to ``n_outputs`` *without* softmax:
    the losses of :func:`fit_network` take logits. Use :func:`linear_layers` or
    :func:`hidden_linear_layers` rather than positions to find the affine layers.

    Parameters
    ----------
    n_inputs : int
        Number of input features.
    hidden_layer_sizes : sequence of int, default=(100,)
        Units per hidden layer; may be empty (a linear model) when ``n_outputs`` is given.
    n_outputs : int or None, default=None
        Width of the output layer; ``None`` builds the hidden layers only (a feature extractor).
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "maxout"}, default="sigmoid"
        Hidden nonlinearity; ``"leaky_relu"`` has negative slope 0.01.
    init : {"normal", "xavier", "he"}, default="normal"
        Weight initialisation; biases start at zero in every scheme.

        - ``"normal"``: N(0, 0.01^2), as in Hinton's RBM and fine-tuning code.
        - ``"xavier"``: Glorot & Bengio's U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))``
          with ``gain = nn.init.calculate_gain(activation)`` (1 for sigmoid, 5/3 for tanh).
        - ``"he"``: He et al.'s N(0, gain^2 / fan_in) (``kaiming_normal_``, fan-in mode), with
          the activation's gain (sqrt(2) for relu; for maxout :func:`maxout_gain`, 1 with two
          pieces, which keeps the second moment of the activations constant across layers).

        The output layer uses the same scheme with the gain of a linear layer (1).
    dropout : float or sequence of float, default=0.0
        Dropout probability after each hidden layer (one value, or one per hidden layer).
    input_dropout : float, default=0.0
        Dropout probability on the inputs.
    batch_norm : bool, default=False
        Insert ``BatchNorm1d`` after each hidden affine map.
    maxout_pieces : int, default=2
        Pieces per maxout unit (``activation="maxout"`` only).
    generator : torch.Generator or None, default=None
        Source of the initial weights (on ``device``); ``None`` uses torch's global generator.
    device, dtype : optional
        Device and dtype of the parameters (default: CPU, torch's default dtype, float32).

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> net = build_mlp(4, (3,), 2, activation="relu", init="he",
    ...                 generator=torch.Generator().manual_seed(0))
    >>> net
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): ReLU()
      (2): Linear(in_features=3, out_features=2, bias=True)
    )
    >>> net(torch.zeros(5, 4)).shape
    torch.Size([5, 2])
    """
    n_inputs = check_int("n_inputs", n_inputs, low=1)
    if isinstance(hidden_layer_sizes, numbers.Integral) and not isinstance(hidden_layer_sizes, bool):
        hidden_layer_sizes = (int(hidden_layer_sizes),)
    if not isinstance(hidden_layer_sizes, Sequence) or isinstance(hidden_layer_sizes, str):
        raise ValueError(
            "The 'hidden_layer_sizes' parameter must be a sequence of positive ints such as "
            f"(500, 500). Got {hidden_layer_sizes!r} instead."
        )
    sizes = [check_int("hidden_layer_sizes", s, low=1) for s in hidden_layer_sizes]
    if n_outputs is not None:
        n_outputs = check_int("n_outputs", n_outputs, low=1)
    elif not sizes:
        raise ValueError(
            "The network would be empty: give at least one hidden layer in 'hidden_layer_sizes' or set 'n_outputs'."
        )
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("init", init, INITS)
    dropouts = [check_probability("dropout", p) for p in per_layer("dropout", dropout, len(sizes))]
    if any(p >= 1.0 for p in dropouts):
        raise ValueError("The 'dropout' parameter must be in [0, 1). Got 1.0, which drops every unit.")
    input_dropout = check_probability("input_dropout", input_dropout)
    if input_dropout >= 1.0:
        raise ValueError("The 'input_dropout' parameter must be in [0, 1). Got 1.0.")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"The 'batch_norm' parameter must be a bool. Got {batch_norm!r} instead.")
    maxout_pieces = check_int("maxout_pieces", maxout_pieces, low=1)
    # skip_init: no default initialisation, which would draw from the global RNG.
    dev = resolve_device(device)
    factory: dict[str, Any] = {"device": dev, "dtype": dtype}
    check_generator_device(generator, dev)

    modules: list[nn.Module] = []
    if input_dropout > 0:
        modules.append(nn.Dropout(input_dropout))
    fan_in = n_inputs
    for size, p in zip(sizes, dropouts, strict=True):
        if activation == "maxout":
            layer: nn.Module = nn.utils.skip_init(Maxout, fan_in, size, maxout_pieces, **factory)
            _init_linear_(layer.linear, init, activation, generator, maxout_pieces)  # type: ignore[arg-type]
        else:
            layer = nn.utils.skip_init(nn.Linear, fan_in, size, **factory)
            _init_linear_(layer, init, activation, generator)  # type: ignore[arg-type]
        modules.append(layer)
        if batch_norm:
            modules.append(nn.BatchNorm1d(size, **factory))
        if activation != "maxout":
            modules.append(_activation_module(activation))
        if p > 0:
            modules.append(nn.Dropout(p))
        fan_in = size
    if n_outputs is not None:
        out = nn.utils.skip_init(nn.Linear, fan_in, n_outputs, **factory)
        _init_linear_(out, init, None, generator)
        modules.append(out)
    return nn.Sequential(*modules)


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    """All ``nn.Linear`` layers of ``net`` in forward (registration) order, output layer included.

    A :class:`Maxout` layer contributes its inner ``linear``.

    Examples
    --------
    >>> net = build_mlp(4, (3, 3), 2, activation="maxout")
    >>> [tuple(layer.weight.shape) for layer in linear_layers(net)]
    [(6, 4), (6, 3), (2, 3)]
    """
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def _has_output_layer(net: nn.Module) -> bool:
    children = list(net.children())
    return bool(children) and isinstance(children[-1], nn.Linear)


def hidden_linear_layers(net: nn.Module) -> list[nn.Linear]:
    """The affine maps of the hidden layers: :func:`linear_layers` minus the output layer.

    The output layer is the last top-level module when it is an ``nn.Linear`` (as built by
    :func:`build_mlp` with ``n_outputs`` set); a network ending in an activation has no output
    layer and all its linear layers are hidden. For :class:`Maxout` the inner ``linear``
    is returned.

    Examples
    --------
    >>> net = build_mlp(4, (3, 5), 2)
    >>> [layer.out_features for layer in hidden_linear_layers(net)]
    [3, 5]
    >>> [layer.out_features for layer in hidden_linear_layers(build_mlp(4, (3, 5)))]
    [3, 5]
    """
    layers = linear_layers(net)
    return layers[:-1] if _has_output_layer(net) else layers


def _layer_parameters(net: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters of each layer, layer ``i`` starting at ``linear_layers(net)[i]``.

    A layer owns its linear map and the parametrised modules after it (batch norm) up to the
    next linear map; parameters before the first linear map belong to no layer.
    """
    blocks: list[list[nn.Parameter]] = []
    for module in net.modules():
        if isinstance(module, nn.Linear):
            blocks.append([])
        if blocks and not list(module.children()):
            blocks[-1].extend(module.parameters(recurse=False))
    return blocks
