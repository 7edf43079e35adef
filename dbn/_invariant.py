"""Thread-count-invariant forms of the few fine-tuning operations whose result depends on
torch's thread count, so that the thread policy may follow the machine's load without
changing a fit's result (:mod:`dbn._threads`).

Two kinds of operations of a sigmoid network's back-propagation step round differently on
one thread than on two (measured on the project's machine, torch 2.13, MKL; every other operation of the
step, the optimizers' included, was equal bit for bit):

* ``torch.sigmoid``: ATen splits an elementwise operator over the threads in equal chunks of
  the flattened tensor and runs each chunk's vectorised loop with a scalar tail, and the
  scalar sigmoid rounds differently from the vectorised one. A chunk border that is not a
  multiple of the vector step moves a few elements into a scalar tail (100 x 500 on two
  threads: 2 of 50,000 elements differ). :func:`sigmoid` runs ``torch.sigmoid`` and then
  recomputes, on one thread, the few elements around each chunk's end, so that every element
  takes the path it takes on one thread; its backward (ATen's ``sigmoid_backward``, pure
  arithmetic) is invariant.
* the products of a layer with a few outputs (the weight gradient ``grad_out.T @ x`` of
  5-11 outputs here, which MKL splits along the batch) and of a batch of a few rows (the
  forward and input-gradient products of 5, 6, 7, 9, 10 or 11 rows: the last, shorter batch
  of an epoch): :func:`linear` runs them on one thread, which costs nothing at these sizes.

:class:`SequentialForward` is ``nn.Sequential.forward`` with those two substitutions. The
fine-tuning probe (``dbn.training``) still checks every fit's first step on both counts;
these forms only make that check pass where it otherwise would not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: ATen's grain for elementwise operators (``at::internal::GRAIN_SIZE``): a tensor with at
#: most this many elements runs on one thread.
GRAIN = 32768

#: Elements per iteration of ATen's widest vectorised loop (two AVX-512 float vectors).
VECTOR_STEP = 32

#: Layers with fewer outputs than this, and batches with fewer rows, get :func:`linear`.
NARROW = 16


def _chunk_borders(n: int, threads: int) -> list[int]:
    """Where ATen's ``parallel_for`` splits ``n`` elements with the elementwise grain."""
    chunks = max(1, min(threads, -(-n // GRAIN)))  # min(threads, ceil(n / grain))
    size = -(-n // chunks)
    return [k * size for k in range(1, chunks) if k * size < n]


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``torch.sigmoid(x)`` with the bits it has on one thread, on any thread count (CPU).

    ``torch.sigmoid`` runs first, on torch's threads; then the few elements whose path
    (vectorised or scalar) differs from the one-thread layout are computed again on one
    thread: every chunk's tail (a slice of at most 64 elements starting on a multiple of
    :data:`VECTOR_STEP` around each chunk's end). They
    are written into the result in place of autograd's record (``.data``), which the backward,
    ATen's ``sigmoid_backward`` of the result, then reads: it is invariant, so the gradient
    is too.

    Examples
    --------
    >>> x = torch.randn(100, 500)
    >>> torch.equal(sigmoid(x), torch.sigmoid(x)) or torch.get_num_threads() > 1
    True
    """
    y = torch.sigmoid(x)
    n, threads = y.numel(), torch.get_num_threads()
    if threads == 1 or n <= GRAIN or y.device.type != "cpu" or not (x.is_contiguous() and y.is_contiguous()):
        return y
    flat_x, flat_y = x.detach().view(-1), y.data.view(-1)
    step = VECTOR_STEP
    # every chunk's scalar tail starts at most step - 1 elements before the chunk's end; a
    # slice starting on a multiple of step runs vectorised up to the same element as the
    # whole tensor does on one thread, so recomputing it gives the one-thread bits
    for end in [*_chunk_borders(n, threads), n]:
        start, stop = max(0, (end - step + 1) // step * step), min(-(-end // step) * step, n)
        torch.sigmoid(flat_x[start:stop], out=flat_y[start:stop])
    return y


@contextlib.contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Torch's operators on one thread inside the block (CPU), the count restored after."""
    threads = torch.get_num_threads()
    if threads > 1 and device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if x.shape[0] < NARROW:
            with one_thread(x.device):
                return F.linear(x, weight, bias)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        with one_thread(grad.device):
            grad_x = grad @ weight if ctx.needs_input_grad[0] else None
            grad_w = grad.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose backward products run on one thread, and its forward too for
    batches of fewer than :data:`NARROW` rows (2-D ``x``; CPU).

    For layers of a few outputs, and for batches of a few rows, these products are too small
    to gain from more threads (on the project's machine a 100 x 2000 -> 10 layer's backward
    took 136 us on two threads and 129 us on one), and MKL splits them along the inner
    dimension on several: ``grad.T @ x`` of 5-11 outputs, and the forward and input-gradient
    products of batches of 5, 6, 7, 9, 10 or 11 rows, rounded differently on one thread than
    on two.

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
    :data:`NARROW` outputs (all of them on batches of fewer rows); every other layer is called
    as the ``nn.Sequential`` calls it.

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
            elif kind is nn.Linear and isinstance(layer, nn.Linear) and min(layer.out_features, len(x)) < NARROW:
                x = linear(x, layer.weight, layer.bias)
            else:
                x = layer(x)
        return x
