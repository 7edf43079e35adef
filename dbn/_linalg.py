"""Fast matrix-product and sampling primitives for the contrastive-divergence inner loop.

On the CPU, in float32, PyTorch's default matrix product goes to MKL, which on this
project's AMD machines runs its AVX2 kernels. oneDNN (shipped inside PyTorch) runs AVX-512
kernels and can fuse the bias and the logistic sigmoid into the product. The functions here
use oneDNN (``torch.ops.mkldnn._linear_pointwise`` on ordinary dense tensors, so there is no
conversion to or from ``torch._mkldnn`` tensors and no cached copy of the weight to refresh)
when it applies and the product is large enough to pay for it, and fall back to
``torch.addmm`` / ``torch.sigmoid`` otherwise (CUDA, float64, oneDNN unavailable or disabled,
autograd needed, empty inputs, small products).

oneDNN's operator costs 20-40 us per call before any arithmetic; MKL's ``addmm`` and an
in-place sigmoid cost a few. Measured on the project's 2-core AMD EPYC (one thread, best of 5,
``batch x n_in x n_out``): addmm + sigmoid took 0.38x oneDNN's time at 20 x 64 x 100
(scikit-learn's digits gallery), 0.70x at 100 x 100 x 100, 0.92-0.94x at 4-5e6, about 1.0x at
7.8e6 and oneDNN won from 9e6 up (1.07x faster at MNIST's 100 x 784 x 500); on the Intel Xeon
the two were within 5% of each other from 1e6 up. oneDNN also computes every output element
the same way on any thread count, which MKL does not (on the Intel machine MKL's forward
products of 20 x 784 x 100 and 200 x 64 x 100 differed on one and two threads), so
:data:`ONEDNN_MIN_WORK` is the size from which a CD product may run on several threads
(``dbn._threads.MIN_PARALLEL_WORK``): smaller ones run on one thread, in MKL.

The gradient products ``a.T @ b`` accumulate straight into the momentum buffer with
``Tensor.addmm_`` (MKL): measured on the 2-core machine they run as fast as oneDNN does at
that shape, and oneDNN would need transposed copies of both operands.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "Activation",
    "onednn_applies",
    "ONEDNN_MIN_WORK",
    "linear",
    "linear_t",
    "outer_accumulate_",
    "bernoulli_sample",
]

Activation = Literal["none", "sigmoid"]
_ACTIVATIONS = ("none", "sigmoid")


def _onednn_op():
    ops = getattr(torch.ops, "mkldnn", None)
    if ops is None:
        return None
    try:
        return ops._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_LINEAR_POINTWISE = _onednn_op()

#: ``batch * n_in * n_out`` from which the oneDNN product is used (smaller ones go to MKL's
#: ``addmm``, whose per-call cost is lower; see the module docstring). Equal to
#: ``dbn._threads.MIN_PARALLEL_WORK``: every product that may run on several threads is oneDNN's.
ONEDNN_MIN_WORK = 1_000_000
_MKLDNN_BUILT = _LINEAR_POINTWISE is not None and torch.backends.mkldnn.is_available()
_FLOAT32 = torch.float32
_STRIDED = torch.strided


def onednn_applies(*tensors: torch.Tensor | None) -> bool:
    """Whether the oneDNN fast path applies to these tensors.

    It does when oneDNN is built in and enabled, every tensor is a non-empty, strided CPU
    float32 tensor, and no autograd graph is needed (the fused oneDNN operator has no
    backward). ``None`` entries (a missing bias) are ignored.

    Parameters
    ----------
    *tensors : torch.Tensor or None
        The operands of the product.

    Returns
    -------
    bool

    Examples
    --------
    >>> onednn_applies(torch.ones(2, 3, dtype=torch.float64))
    False
    """
    # called for every product of the training loops: the cheapest checks (~1 us in all)
    if not (_MKLDNN_BUILT and torch._C._get_mkldnn_enabled()):
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if (
            not t.is_cpu
            or t.dtype is not _FLOAT32
            or t.layout is not _STRIDED
            or t.numel() == 0
            or (grad and t.requires_grad)
        ):
            return False
    return True


def _check_activation(activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"The 'activation' parameter must be one of {_ACTIVATIONS}. Got {activation!r} instead.")


def _check_linear_shapes(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> None:
    # ``w`` is in nn.Linear layout here: (n_out, n_in); the product is x @ w.T.
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"Cannot multiply x of shape {tuple(x.shape)} with a weight of shape "
            f"{tuple(w.shape)}: x must be 2-D with {w.shape[1] if w.dim() == 2 else '?'} columns."
        )
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != w.shape[0]):
        raise ValueError(f"bias must have shape ({w.shape[0]},) to match the output; got {tuple(bias.shape)}.")


def _linear(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str,
    out: torch.Tensor | None,
) -> torch.Tensor:
    # unchecked: the training loops call this with shapes they built; the public functions check
    if x.shape[0] * w.shape[0] * w.shape[1] >= ONEDNN_MIN_WORK and onednn_applies(x, w, bias, out):
        # oneDNN reads a strided bias wrongly (silently): hand it a contiguous one.
        b = None if bias is None else bias.contiguous()
        y = _LINEAR_POINTWISE(x, w, b, activation, [], "")
        if out is None:
            return y
        return out.copy_(y)
    if bias is None:
        y = torch.mm(x, w.t(), out=out) if out is not None else torch.mm(x, w.t())
    elif out is not None:
        y = torch.addmm(bias, x, w.t(), out=out)
    else:
        y = torch.addmm(bias, x, w.t())
    if activation == "sigmoid":
        y = y.sigmoid_() if (out is not None or not y.requires_grad) else torch.sigmoid(y)
    return y


def _product(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """Unchecked ``activation(x @ wt + bias)`` for the training loops, ``wt`` of shape
    ``(n_in, n_out)`` as it lies (the visible-to-hidden product passes ``W.t()``, the
    hidden-to-visible one ``W`` itself): no transposed view is made on the small-product path."""
    if x.shape[0] * wt.shape[0] * wt.shape[1] >= ONEDNN_MIN_WORK:
        w = wt.t()
        if onednn_applies(x, w, bias):
            # oneDNN reads a strided bias wrongly (silently): hand it a contiguous one.
            return _LINEAR_POINTWISE(x, w, None if bias is None else bias.contiguous(), activation, [], "")
    y = torch.mm(x, wt) if bias is None else torch.addmm(bias, x, wt)
    if activation == "sigmoid":
        y = torch.sigmoid(y) if y.requires_grad else y.sigmoid_()
    return y


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: Activation = "none",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``activation(x @ weight.T + bias)``: visible-to-hidden, like ``nn.functional.linear``.

    Parameters
    ----------
    x : Tensor of shape (n_samples, n_in)
        Any strides.
    weight : Tensor of shape (n_out, n_in)
        Any strides (a transposed view is fine).
    bias : Tensor of shape (n_out,), default=None
    activation : {"none", "sigmoid"}, default="none"
        Fused into the product on the oneDNN path.
    out : Tensor of shape (n_samples, n_out), default=None
        Where to write the result. On the oneDNN path the product is computed into a new
        tensor and copied (oneDNN has no ``out=``), so pass ``out`` only where the result
        must live in a given buffer.

    Returns
    -------
    Tensor of shape (n_samples, n_out)

    Examples
    --------
    >>> x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
    >>> linear(x, w, b)
    tensor([[3., 3., 3., 3.],
            [3., 3., 3., 3.]])
    >>> linear(x, w, b - 3.0, activation="sigmoid")
    tensor([[0.5000, 0.5000, 0.5000, 0.5000],
            [0.5000, 0.5000, 0.5000, 0.5000]])
    """
    _check_activation(activation)
    _check_linear_shapes(x, weight, bias)
    return _linear(x, weight, bias, activation, out)


def linear_t(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: Activation = "none",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``activation(h @ weight + bias)``: hidden-to-visible with the same ``weight``.

    ``weight`` keeps the RBM layout ``(n_hidden, n_visible)``; no transposed copy is made.

    Parameters
    ----------
    h : Tensor of shape (n_samples, n_hidden)
    weight : Tensor of shape (n_hidden, n_visible)
    bias : Tensor of shape (n_visible,), default=None
    activation : {"none", "sigmoid"}, default="none"
    out : Tensor of shape (n_samples, n_visible), default=None
        See :func:`linear`.

    Returns
    -------
    Tensor of shape (n_samples, n_visible)

    Examples
    --------
    >>> h, w = torch.ones(2, 4), torch.ones(4, 3)
    >>> linear_t(h, w, torch.ones(3))
    tensor([[5., 5., 5.],
            [5., 5., 5.]])
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D; got shape {tuple(weight.shape)}.")
    _check_activation(activation)
    _check_linear_shapes(h, weight.t(), bias)
    return _linear(h, weight.t(), bias, activation, out)


def outer_accumulate_(
    acc: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> torch.Tensor:
    """In place ``acc = beta * acc + alpha * a.T @ b`` (one GEMM into ``acc``).

    This is the CD statistic ``h.T @ v`` summed over a batch, accumulated straight into a
    weight-shaped buffer (the gradient or the momentum buffer). From :data:`ONEDNN_MIN_WORK`
    up (products that may run on several threads) ``beta`` is applied by an in-place ``mul_``
    and ``alpha`` to the smaller operand (a batch-sized temporary), and the product
    accumulates with MKL's ``alpha = beta = 1``: with other scalars MKL rounds the product
    differently on one thread than on two at about 60% of the CD shapes tried on the project's
    Intel machine, with these at none, so the result does not depend on the thread count
    (:mod:`dbn._threads` may then follow the machine's load); nor is it slower there (the
    scaling inside the GEMM cost more than the separate pass at MNIST's 100 x 784 x 500).
    Smaller products, which run on one thread, keep the single ``addmm_``.

    Parameters
    ----------
    acc : Tensor of shape (n_a, n_b)
        Updated in place.
    a : Tensor of shape (n_samples, n_a)
    b : Tensor of shape (n_samples, n_b)
    alpha, beta : float, default=1.0

    Returns
    -------
    Tensor
        ``acc``.

    Examples
    --------
    >>> acc = torch.ones(2, 3)
    >>> outer_accumulate_(acc, torch.ones(4, 2), torch.ones(4, 3), alpha=0.5, beta=2.0)
    tensor([[4., 4., 4.],
            [4., 4., 4.]])
    """
    sa, sb = a.shape, b.shape  # read once: this runs twice per CD step, often on tiny batches
    if len(sa) != 2 or len(sb) != 2 or sa[0] != sb[0] or acc.shape != (sa[1], sb[1]):
        raise ValueError(
            f"outer_accumulate_ needs a (n, p), b (n, q) and acc (p, q); got a "
            f"{tuple(sa)}, b {tuple(sb)}, acc {tuple(acc.shape)}."
        )
    if sa[0] * sa[1] * sb[1] < ONEDNN_MIN_WORK:  # one thread: the fewest operators
        return acc.addmm_(a.t(), b, beta=beta, alpha=alpha)
    if beta == 0.0:
        acc.zero_()
    elif beta != 1.0:
        acc.mul_(beta)
    if alpha != 1.0:
        if sa[1] <= sb[1]:
            a = a * alpha
        else:
            b = b * alpha
    return acc.addmm_(a.t(), b)


def bernoulli_sample(
    probs: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary samples ``u < probs`` with ``u ~ U[0, 1)``; faster than ``torch.bernoulli``.

    Draws exactly ``torch.rand(probs.shape, generator=generator)`` and compares, so the
    result is reproducible from the generator's state and the same as that expression.

    Parameters
    ----------
    probs : Tensor
        Probabilities in [0, 1].
    generator : torch.Generator, default=None
        On ``probs``' device. ``None`` uses torch's default generator.
    out : Tensor, default=None
        Same shape, device and dtype as ``probs``, and not overlapping it; reused as the
        uniform buffer, so no temporary is allocated.

    Returns
    -------
    Tensor
        0/1 values in ``probs``' dtype.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> bernoulli_sample(torch.tensor([0.0, 1.0, 0.0]), g)
    tensor([0., 1., 0.])
    """
    if out is None:
        out = torch.empty_like(probs, memory_format=torch.contiguous_format)
    elif out.shape != probs.shape or out.dtype != probs.dtype or out.device != probs.device:
        raise ValueError(
            f"out must match probs (shape {tuple(probs.shape)}, {probs.dtype}, {probs.device}); "
            f"got shape {tuple(out.shape)}, {out.dtype}, {out.device}."
        )
    out.uniform_(generator=generator)
    return torch.lt(out, probs, out=out)
