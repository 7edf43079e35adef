"""Thread-count-invariant forms of the few fine-tuning operations whose result depends on
torch's thread count, so that the thread policy may follow the machine's load without
changing a fit's result (:mod:`dbn._threads`).

Two operations of a sigmoid network's back-propagation step round differently on one thread
than on two (measured on the project's machine, torch 2.13, MKL; every other operation of the
step, the optimizers' included, was equal bit for bit):

* ``torch.sigmoid``: ATen splits an elementwise operator over the threads in equal chunks of
  the flattened tensor and runs each chunk's vectorised loop with a scalar tail, and the
  scalar sigmoid rounds differently from the vectorised one. A chunk border that is not a
  multiple of the vector step moves a few elements into a scalar tail (100 x 500 on two
  threads: 2 of 50,000 elements differ). :func:`sigmoid` runs the operator on a prefix whose
  chunk borders fall on multiples of :data:`VECTOR_STEP` and on the short rest, so the same
  elements take the scalar path on any thread count (on one thread it equals
  ``torch.sigmoid`` bit for bit); its backward is ATen's ``sigmoid_backward``, which is
  invariant.
* the weight gradient ``grad_out.T @ x`` of a layer with a few outputs (5, 9, 10 or 11
  here), which MKL splits along the batch: :func:`linear` computes it as ``(x.T @ grad_out).T``,
  invariant at every shape measured, for layers with fewer than :data:`NARROW` outputs.

:class:`SequentialForward` is ``nn.Sequential.forward`` with those two substitutions. The
fine-tuning probe (``dbn.training``) still checks every fit's first step on both counts;
these forms only make that check pass where it otherwise would not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: ATen's grain for elementwise operators (``at::internal::GRAIN_SIZE``): a tensor with at
#: most this many elements runs on one thread.
GRAIN = 32768

#: Elements per iteration of ATen's widest vectorised loop (two AVX-512 float vectors).
VECTOR_STEP = 32

#: Layers with fewer outputs than this get the invariant weight-gradient form.
NARROW = 16


def aligned_prefix(n: int, threads: int) -> int:
    """The longest prefix of ``n`` elements whose ATen chunks on ``threads`` threads all end
    on a multiple of :data:`VECTOR_STEP`.

    Examples
    --------
    >>> aligned_prefix(50_000, 2), aligned_prefix(50_000, 1)
    (49984, 49984)
    """
    m = n - n % VECTOR_STEP
    while True:
        chunks = max(1, min(threads, -(-m // GRAIN)))  # ATen: min(threads, ceil(m / grain))
        aligned = m - m % (VECTOR_STEP * chunks)
        if aligned == m:
            return m
        m = aligned


class _Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        y = torch.empty_like(x)
        flat_x, flat_y = x.view(-1), y.view(-1)
        m = aligned_prefix(flat_x.numel(), torch.get_num_threads())
        torch.sigmoid(flat_x[:m], out=flat_y[:m])
        if m < flat_x.numel():
            torch.sigmoid(flat_x[m:], out=flat_y[m:])
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.sigmoid_backward(grad, y)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``torch.sigmoid(x)`` with the same bits on any thread count (CPU float tensors).

    Examples
    --------
    >>> x = torch.randn(100, 500)
    >>> torch.equal(sigmoid(x), torch.sigmoid(x)) or torch.get_num_threads() > 1
    True
    """
    if x.device.type != "cpu" or x.numel() <= GRAIN:
        return torch.sigmoid(x)
    return _Sigmoid.apply(x)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_w = (x.t() @ grad).t() if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose weight gradient is computed as ``(x.T @ grad).T`` (2-D ``x``).

    Examples
    --------
    >>> x, w = torch.randn(4, 3), torch.randn(2, 3, requires_grad=True)
    >>> linear(x, w).sum().backward()
    >>> torch.allclose(w.grad, torch.ones(4, 2).t() @ x)
    True
    """
    if x.dim() != 2:
        return F.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as m

    return bool(
        m._global_forward_hooks
        or m._global_forward_pre_hooks
        or m._global_backward_hooks
        or m._global_backward_pre_hooks
        or getattr(m, "_global_forward_hooks_always_called", None)
    )


class SequentialForward:
    """The forward pass of a plain ``nn.Sequential`` with :func:`sigmoid` for its
    ``nn.Sigmoid`` layers and :func:`linear` for its ``nn.Linear`` layers of fewer than
    :data:`NARROW` outputs; every other layer is called as the ``nn.Sequential`` calls it.

    Use :meth:`of` to build one: it returns ``None`` for anything but an ``nn.Sequential``
    (subclasses have their own forward) or when hooks are registered (they would be skipped).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2))
    >>> x = torch.randn(5, 3)
    >>> torch.allclose(SequentialForward.of(net)(x), net(x))
    True
    """

    def __init__(self, net: nn.Sequential) -> None:
        self.net = net

    @classmethod
    def of(cls, net: nn.Module) -> SequentialForward | None:
        if type(net) is not nn.Sequential or _global_hooks() or any(_has_hooks(m) for m in net.modules()):
            return None
        return cls(net)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:  # its current layers, as nn.Sequential.forward
            kind = type(layer)
            if kind is nn.Sigmoid:
                x = sigmoid(x)
            elif kind is nn.Linear and isinstance(layer, nn.Linear) and layer.out_features < NARROW:
                x = linear(x, layer.weight, layer.bias)
            else:
                x = layer(x)
        return x
