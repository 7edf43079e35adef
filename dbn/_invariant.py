"""Thread-count-invariant forms of the few network operations whose result depends on
torch's thread count (so that the thread policy may follow the machine's load without
changing a fit's result, :mod:`dbn._threads`) or a sample's result on the batch around it
(so that a prediction does not depend on how the data were batched).

Two kinds of operations of a sigmoid network's forward and back-propagation pass round
differently on one thread than on two, or for a batch than for one of its rows (measured
with torch 2.13 on the project's AMD EPYC and Intel Xeon machines, both with AVX-512; every
other operation of the step, the optimizers' included, was equal bit for bit):

* ``torch.sigmoid``: ATen splits an elementwise operator over the threads in equal chunks of
  the flattened tensor and runs each chunk's vectorised loop with a scalar tail, and the
  scalar sigmoid rounds differently from the vectorised one. A chunk border that is not a
  multiple of the vector step moves a few elements into a scalar tail (100 x 500 on two
  threads: 2 of 50,000 elements differ), and the tensor's own tail depends on its size.
  :func:`sigmoid` runs ``torch.sigmoid`` and then recomputes the few scalar elements by the
  vectorised loop; its backward (ATen's ``sigmoid_backward``, pure arithmetic) is invariant.
* the matrix products: MKL splits some along their inner dimension on several threads (on the
  AMD machine the weight gradient of a layer of 5-11 outputs and the products of batches of
  5-11 rows; on the Intel machine about a third of the forward and input-gradient products
  tried) and picks its kernels by the row count. :func:`linear` runs the forward and
  input-gradient products in oneDNN, which is invariant in both, and the weight gradient in
  MKL, on one thread for narrow layers and short batches.

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

from . import _linalg

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
    """``torch.sigmoid(x)`` with every element computed by the vectorised loop (CPU): the same
    bits on any thread count, and for an element whatever the tensor around it.

    ``torch.sigmoid`` runs first, on torch's threads; then the elements that took the scalar
    path are computed again, on one thread, by the vectorised one: every thread chunk's tail
    (a slice of at most 64 elements starting on a multiple of :data:`VECTOR_STEP` around each
    chunk's end, which then runs vectorised up to the same element as the whole tensor does on
    one thread) and the tensor's own last ``numel % VECTOR_STEP`` elements (through a zero-padded
    block of :data:`VECTOR_STEP`). They are written into the result in place of autograd's
    record (``.data``), which the backward, ATen's ``sigmoid_backward`` of the result, then
    reads: it is invariant, so the gradient is too.

    Examples
    --------
    >>> x = torch.randn(7, 5)
    >>> torch.equal(sigmoid(x)[3], sigmoid(x[3:4])[0])
    True
    >>> torch.allclose(sigmoid(x), torch.sigmoid(x))
    True
    """
    y = torch.sigmoid(x)
    if y.device.type != "cpu" or not (x.is_contiguous() and y.is_contiguous()):
        return y
    n, threads, step = y.numel(), torch.get_num_threads(), VECTOR_STEP
    flat_x, flat_y = x.detach().view(-1), y.data.view(-1)
    if threads > 1 and n > GRAIN:
        for end in [*_chunk_borders(n, threads), n]:  # every chunk's end, the last one's too
            start, stop = max(0, (end - step + 1) // step * step), min(-(-end // step) * step, n)
            torch.sigmoid(flat_x[start:stop], out=flat_y[start:stop])
    tail = n % step
    if tail:  # the scalar tail of the one-thread loop, computed vectorised in a padded block
        start = n - tail
        block = flat_x.new_zeros(step)
        block[:tail] = flat_x[start:]
        flat_y[start:] = torch.sigmoid(block)[:tail]
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


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` by oneDNN; a one-row ``x`` is computed as two rows (oneDNN
    takes another path for a single row, which rounds differently)."""
    op = _linalg._LINEAR_POINTWISE
    if x.shape[0] == 1:
        return op(x.expand(2, -1).contiguous(), weight, bias, "none", [], "")[:1]
    return op(x, weight, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if _linalg.onednn_applies(x, weight, bias):
            return _onednn_linear(x, weight, bias)
        if x.shape[0] < NARROW:
            with one_thread(x.device):
                return F.linear(x, weight, bias)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        narrow = min(grad.shape) < NARROW  # few rows or few outputs
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if _linalg.onednn_applies(grad, weight):
                grad_x = _onednn_linear(grad, weight.t(), None)
            else:
                with one_thread(grad.device) if narrow else contextlib.nullcontext():
                    grad_x = grad @ weight
        if ctx.needs_input_grad[1]:
            with one_thread(grad.device) if narrow else contextlib.nullcontext():
                grad_w = grad.t() @ x
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose result does not depend on the thread count, nor a row's on the
    number of rows (2-D ``x``; CPU float32 with oneDNN).

    The forward and the input-gradient products run in oneDNN (``_linear_pointwise`` on the
    dense tensors), which computes each output element the same way on any thread count and
    for any number of rows from two up (a single row is computed as two). MKL, torch's default
    for ``F.linear``, does neither: it splits some products along their inner dimension on
    several threads and picks its kernels by the row count. On the project's Intel Xeon
    (AVX-512, torch 2.13) 125 of 360 shapes (batch 10-200, 20-784 inputs, 5-2000 outputs) gave
    different bits on one and two threads for a forward or input-gradient product with MKL and
    none with oneDNN; a row's forward result differed between a batch of 50 rows and the row
    alone at 35 of 35 shapes with MKL and at none with oneDNN from two rows up. The weight
    gradient ``grad.T @ x`` stays with MKL, which was invariant at every one of those shapes,
    on one thread for layers of fewer than :data:`NARROW` outputs and batches of fewer rows
    (which MKL splits along the batch on the project's AMD EPYC; so small a product gains
    nothing from a second thread). Without oneDNN (CUDA, float64, oneDNN disabled) the
    products are MKL's, the narrow and short ones on one thread.

    Examples
    --------
    >>> x, w = torch.randn(4, 3), torch.randn(2, 3, requires_grad=True)
    >>> linear(x, w).sum().backward()
    >>> torch.allclose(w.grad, torch.ones(4, 2).t() @ x)
    True
    >>> torch.equal(linear(x[:1], w.detach()), linear(x, w.detach())[:1])
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
    ``nn.Sigmoid`` layers and :func:`linear` for its ``nn.Linear`` layers; every other layer is
    called as the ``nn.Sequential`` calls it. On the CPU in float32 a sigmoid or ReLU network's
    outputs then do not depend on the thread count, nor a sample's on the batch around it.

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
            elif kind is nn.Linear and isinstance(layer, nn.Linear):
                x = linear(x, layer.weight, layer.bias)
            else:
                x = layer(x)
        return x
