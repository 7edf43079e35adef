"""Denoising autoencoders (Vincent et al., 2008) and their training loop.

A :class:`DenoisingAutoencoder` corrupts its input, encodes it with sigmoid hidden units,
decodes the code and is trained to reconstruct the *clean* input. Its parameters are named
like the RBM's (``weight`` of shape ``(n_hidden, n_visible)``, ``hidden_bias``,
``visible_bias``), so a trained encoder exports to ``nn.Linear`` + ``nn.Sigmoid`` exactly as
an RBM does. :func:`train_autoencoder` trains one with a torch optimizer over minibatches.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._invariant import NARROW, one_thread
from ._invariant import linear as invariant_linear
from ._invariant import sigmoid as invariant_sigmoid
from ._options import CORRUPTIONS, OPTIMIZERS, VISIBLE_TYPES, CorruptionName, OptimizerName
from ._options import VisibleType as AEVisibleName
from ._random import make_generator, resolve_device
from ._threads import MIN_PARALLEL_WORK_BACKPROP, batch_work
from ._validation import check_choice, check_data_tensor, check_int, check_scalar
from .engine import (
    CheckpointEvery,
    DivergenceCheck,
    Piece,
    PrintProgress,
    block_rows,
    fit_loop,
    minibatches,
    sparse_buffer,
    take_rows,
)
from .optim import MOMENTUM_OPTIMIZERS, make_optimizer

__all__ = [
    "DenoisingAutoencoder",
    "train_autoencoder",
    "corrupt",
    "CorruptionName",
    "AEVisibleName",
    "OptimizerName",
]

_CORRUPTIONS = CORRUPTIONS
_VISIBLE = VISIBLE_TYPES

_DIVERGENCE_HINT = (
    "Lower the learning rate, scale the data (to [0, 1] for visible='bernoulli', standardise "
    "it for visible='gaussian'), or use optimizer='adam'."
)


def _check_corruption_level(corruption: str, level: Any) -> float:
    if corruption == "gaussian":
        return check_scalar("corruption_level", level, low=0.0)
    return check_scalar("corruption_level", level, low=0.0, high=1.0)


def corrupt(
    x: torch.Tensor,
    corruption: CorruptionName = "mask",
    level: float = 0.2,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Corrupt a batch for a denoising autoencoder (returns a new tensor).

    Parameters
    ----------
    x : Tensor of shape (n_samples, n_features)
        Clean inputs.
    corruption : {"mask", "gaussian", "salt_pepper"}, default="mask"
        * ``"mask"``: each value is set to 0 with probability ``level`` (masking noise);
        * ``"salt_pepper"``: each value is, with probability ``level``, replaced by 0 or 1
          with equal probability;
        * ``"gaussian"``: ``x + level * N(0, 1)`` noise (``level`` is the noise std).
    level : float, default=0.2
        Fraction of values corrupted (in [0, 1]) or the Gaussian std (>= 0).
    generator : torch.Generator or None, default=None
        Source of randomness, on ``x``'s device; ``None`` uses torch's default generator.

    Returns
    -------
    Tensor of the same shape, device and dtype as ``x``

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> xc = corrupt(torch.ones(1000, 10), "mask", 0.3, generator=g)
    >>> round(float((xc == 0).float().mean()), 1)
    0.3
    """
    check_choice("corruption", corruption, _CORRUPTIONS)
    level = _check_corruption_level(corruption, level)
    if level == 0.0:
        return x.clone()
    if corruption == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + level * noise
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    hit = u < level
    if corruption == "mask":
        return x.masked_fill(hit, 0.0)
    # salt and pepper: among the hit values, u / level is uniform on [0, 1) -> 0 or 1 by halves
    salt = (u < 0.5 * level).to(x.dtype)
    return torch.where(hit, salt, x)


class DenoisingAutoencoder(nn.Module):
    """A one-hidden-layer denoising autoencoder with sigmoid hidden units.

    Parameters
    ----------
    n_visible : int
        Number of input (visible) units.
    n_hidden : int
        Number of hidden units.
    tied : bool, default=True
        Decode with ``weight.T`` (tied weights, as in the Theano SdA tutorial). ``False``
        adds a separate ``decoder_weight`` of shape ``(n_visible, n_hidden)``.
    corruption : {"mask", "gaussian", "salt_pepper"}, default="mask"
        Corruption applied to the input during training; see :func:`corrupt`.
    corruption_level : float, default=0.2
        Fraction of inputs corrupted (``"mask"``, ``"salt_pepper"``; in [0, 1]) or the std
        of the Gaussian noise (``"gaussian"``; >= 0). ``0`` gives a plain autoencoder.
    visible : {"bernoulli", "gaussian"}, default="bernoulli"
        ``"bernoulli"``: sigmoid decoder and binary cross-entropy; inputs must lie in
        [0, 1]. ``"gaussian"``: linear decoder and squared error, for standardised data.
    device : str, torch.device or None, default=None
        Device of the parameters (CPU when ``None``).
    dtype : torch.dtype or None, default=None
        Floating dtype of the parameters (``torch.float32`` when ``None``).
    generator : torch.Generator or None, default=None
        Randomness of the weight initialisation; ``None`` uses torch's default generator.

    Attributes
    ----------
    weight : Parameter of shape (n_hidden, n_visible)
        Encoder weight (like ``nn.Linear.weight`` of the visible-to-hidden map).
    hidden_bias : Parameter of shape (n_hidden,)
    visible_bias : Parameter of shape (n_visible,)
        Decoder bias.
    decoder_weight : Parameter of shape (n_visible, n_hidden)
        Only when ``tied=False``.

    Notes
    -----
    With corruption ``q``, the loss for a batch of ``n`` samples is

    .. math:: L = \\frac{1}{n} \\sum_i \\ell\\big(x_i, g(f(\\tilde x_i))\\big),
              \\quad \\tilde x_i \\sim q(\\cdot \\mid x_i),

    with ``f(x) = sigmoid(W x + c)``, ``g(h) = s(W' h + b)`` (``W' = W^T`` when tied) and
    ``ell`` the cross-entropy summed over features (``s`` = sigmoid, computed stably from
    the logits) or the squared error summed over features (``s`` = identity). Weights start
    as ``U(-r, r)``, ``r = 4 sqrt(6 / (n_visible + n_hidden))`` (Glorot for sigmoid units,
    as in the Theano SdA tutorial), biases at zero.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> dae = DenoisingAutoencoder(64, 16, generator=g)
    >>> x = torch.rand(5, 64, generator=g)
    >>> dae.encode(x).shape, dae(x).shape
    (torch.Size([5, 16]), torch.Size([5, 64]))
    >>> sorted(name for name, _ in dae.named_parameters())
    ['hidden_bias', 'visible_bias', 'weight']
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        tied: bool = True,
        corruption: CorruptionName = "mask",
        corruption_level: float = 0.2,
        visible: AEVisibleName = "bernoulli",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_visible = check_int("n_visible", n_visible, low=1)
        self.n_hidden = check_int("n_hidden", n_hidden, low=1)
        if not isinstance(tied, (bool, np.bool_)):
            raise ValueError(f"The 'tied' parameter must be a bool. Got {tied!r} instead.")
        self.tied = bool(tied)
        self.corruption = check_choice("corruption", corruption, _CORRUPTIONS)
        self.corruption_level = _check_corruption_level(corruption, corruption_level)
        self.visible = check_choice("visible", visible, _VISIBLE)
        dtype = torch.float32 if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"The 'dtype' parameter must be a floating torch.dtype. Got {dtype!r} instead.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"The 'generator' parameter must be a torch.Generator or None. Got {generator!r} instead.")
        on = resolve_device(device)
        self.weight = nn.Parameter(torch.empty(self.n_hidden, self.n_visible, device=on, dtype=dtype))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_hidden, device=on, dtype=dtype))
        self.visible_bias = nn.Parameter(torch.zeros(self.n_visible, device=on, dtype=dtype))
        if self.tied:
            self.register_parameter("decoder_weight", None)
        else:
            self.decoder_weight = nn.Parameter(torch.empty(self.n_visible, self.n_hidden, device=on, dtype=dtype))
        self.reset_parameters(generator=generator)

    def reset_parameters(self, *, generator: torch.Generator | None = None) -> None:
        """Re-draw the weights from ``U(-r, r)``, ``r = 4 sqrt(6 / (n_visible + n_hidden))``,
        and zero the biases.

        Examples
        --------
        >>> dae = DenoisingAutoencoder(4, 2)
        >>> dae.reset_parameters(generator=torch.Generator().manual_seed(0))
        >>> bool(dae.weight.abs().max() <= 4 * (6 / 6) ** 0.5)
        True
        """
        bound = 4.0 * math.sqrt(6.0 / (self.n_visible + self.n_hidden))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            if self.decoder_weight is not None:
                self.decoder_weight.uniform_(-bound, bound, generator=generator)
            self.hidden_bias.zero_()
            self.visible_bias.zero_()

    def extra_repr(self) -> str:
        return (
            f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, tied={self.tied}, "
            f"corruption={self.corruption!r}, corruption_level={self.corruption_level}, "
            f"visible={self.visible!r}"
        )

    # -- maths --------------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor, n_features: int, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor. Got {type(x).__name__} instead.")
        if x.dim() != 2 or x.shape[1] != n_features:
            raise ValueError(f"{name} must have shape (n_samples, {n_features}); got shape {tuple(x.shape)}.")

    def _decoder_matrix(self) -> torch.Tensor:
        # (n_visible, n_hidden) as F.linear expects
        return self.weight.t() if self.decoder_weight is None else self.decoder_weight

    def hidden_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation of the hidden units, ``x @ weight.T + hidden_bias``.

        Examples
        --------
        >>> DenoisingAutoencoder(3, 2).hidden_input(torch.zeros(1, 3))
        tensor([[0., 0.]], grad_fn=<AddmmBackward0>)
        """
        self._check_input(x, self.n_visible, "x")
        return F.linear(x, self.weight, self.hidden_bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code: ``sigmoid(x @ weight.T + hidden_bias)`` of shape (n_samples, n_hidden).

        Examples
        --------
        >>> DenoisingAutoencoder(3, 2).encode(torch.zeros(1, 3))
        tensor([[0.5000, 0.5000]], grad_fn=<SigmoidBackward0>)
        """
        return torch.sigmoid(self.hidden_input(x))

    def hidden_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`encode`, named like the RBM's method (for stacking and export).

        Examples
        --------
        >>> dae = DenoisingAutoencoder(3, 2)
        >>> bool(torch.equal(dae.hidden_probs(torch.ones(1, 3)), dae.encode(torch.ones(1, 3))))
        True
        """
        return self.encode(x)

    def visible_input(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-activation of the decoder, ``h @ W' + visible_bias`` (logits when Bernoulli).

        Examples
        --------
        >>> DenoisingAutoencoder(3, 2).visible_input(torch.zeros(1, 2))
        tensor([[0., 0., 0.]], grad_fn=<AddmmBackward0>)
        """
        self._check_input(h, self.n_hidden, "h")
        return F.linear(h, self._decoder_matrix(), self.visible_bias)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Reconstruction from a code: sigmoid (Bernoulli) or identity (Gaussian) of the
        decoder's pre-activation.

        Examples
        --------
        >>> DenoisingAutoencoder(3, 2).decode(torch.zeros(1, 2))
        tensor([[0.5000, 0.5000, 0.5000]], grad_fn=<SigmoidBackward0>)
        """
        a = self.visible_input(h)
        return torch.sigmoid(a) if self.visible == "bernoulli" else a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` without corruption, ``decode(encode(x))``.

        Examples
        --------
        >>> DenoisingAutoencoder(3, 2)(torch.zeros(4, 3)).shape
        torch.Size([4, 3])
        """
        return self.decode(self.encode(x))

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt ``x`` with this model's ``corruption`` and ``corruption_level``.

        See :func:`corrupt`.

        Examples
        --------
        >>> dae = DenoisingAutoencoder(10, 2, corruption="mask", corruption_level=0.5)
        >>> xc = dae.corrupt(torch.ones(3, 10), torch.Generator().manual_seed(0))
        >>> set(xc.unique().tolist()) <= {0.0, 1.0}
        True
        """
        return corrupt(x, self.corruption, self.corruption_level, generator=generator)

    def _loss(
        self, x: torch.Tensor, generator: torch.Generator | None, corrupted: bool = True, invariant: bool = False
    ) -> torch.Tensor:
        # no data checks here: the training loop checks the whole data set once
        x_tilde = self.corrupt(x, generator) if corrupted and self.corruption_level > 0 else x
        # the sigmoid whose bits do not depend on the thread count (dbn._invariant), and with
        # ``invariant`` the products too (a fit that may run on several threads), so that the
        # thread policy's probe can agree
        product = invariant_linear if invariant else F.linear
        a = product(
            invariant_sigmoid(product(x_tilde, self.weight, self.hidden_bias)),
            self._decoder_matrix(),
            self.visible_bias,
        )
        # row sums first: torch's sum of a large tensor rounds differently on each thread count
        if self.visible == "bernoulli":
            total = F.binary_cross_entropy_with_logits(a, x, reduction="none").sum(dim=1).sum()
        else:
            total = F.mse_loss(a, x, reduction="none").sum(dim=1).sum()
        return total / x.shape[0]

    def reconstruction_loss(
        self, x: torch.Tensor, generator: torch.Generator | None = None, *, corrupt: bool = True
    ) -> torch.Tensor:
        """Mean over samples of the reconstruction loss of the corrupted input vs the clean one.

        Parameters
        ----------
        x : Tensor of shape (n_samples, n_visible)
            Clean inputs, in [0, 1] when ``visible="bernoulli"``.
        generator : torch.Generator or None, default=None
            Randomness of the corruption (torch's default generator when ``None``).
        corrupt : bool, default=True
            ``False`` measures the plain reconstruction ``forward(x)`` instead.

        Returns
        -------
        Tensor
            A scalar: the cross-entropy (Bernoulli) or squared error (Gaussian), summed over
            features and averaged over samples. Differentiable.

        Examples
        --------
        >>> dae = DenoisingAutoencoder(4, 3)
        >>> with torch.no_grad():
        ...     _ = dae.weight.zero_()
        >>> loss = dae.reconstruction_loss(torch.zeros(2, 4), corrupt=False)
        >>> round(loss.item(), 4)  # all reconstructions are 0.5: 4 log 2 per sample
        2.7726
        """
        check_data_tensor(x, name="x", n_features=self.n_visible, unit_interval=self.visible == "bernoulli")
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            raise ValueError(
                f"x has dtype {x.dtype} on {x.device} but the model has dtype {self.weight.dtype} "
                f"on {self.weight.device}; convert it with x.to(device, dtype)."
            )
        return self._loss(x, generator, corrupted=corrupt)


def train_autoencoder(
    dae: DenoisingAutoencoder,
    X: torch.Tensor | np.ndarray,
    *,
    n_epochs: int = 10,
    batch_size: int = 100,
    learning_rate: float = 0.1,
    optimizer: OptimizerName | Callable[..., torch.optim.Optimizer] = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    shuffle: bool = True,
    generator: torch.Generator | int | None = None,
    verbose: bool = False,
    callbacks: Sequence[Callable[[DenoisingAutoencoder, dict], Any]] = (),
    state: dict | None = None,
    checkpoint: Callable[[dict], Any] | None = None,
) -> list[dict]:
    """Train a denoising autoencoder by minibatch gradient descent on its reconstruction loss.

    Parameters
    ----------
    dae : DenoisingAutoencoder
        The model, trained in place.
    X : Tensor or ndarray of shape (n_samples, n_visible)
        Training data (in [0, 1] for ``visible="bernoulli"``). A tensor must be on the
        model's device; a numpy array, or a tensor of another floating dtype, is converted
        once to the model's device and dtype.
    n_epochs : int, default=10
        Passes over the data (0 trains nothing and returns the history so far).
    batch_size : int, default=100
        Minibatch size (the last batch may be smaller).
    learning_rate : float, default=0.1
        Step size of the optimizer.
    optimizer : {"sgd", "adam", "rmsprop", "adagrad", "adadelta"} or callable, default="sgd"
        A torch optimizer by name (:func:`dbn.optim.make_optimizer`, shared with
        :func:`dbn.training.fit_network`), or a callable ``params -> torch.optim.Optimizer``
        (then ``learning_rate``, ``momentum`` and ``weight_decay`` are ignored). Not
        ``"lbfgs"``: each evaluation of the loss draws a new corruption.
    momentum : float, default=0.0
        Momentum of ``"sgd"`` / ``"rmsprop"``; a nonzero value with another named optimizer
        raises ``ValueError``.
    weight_decay : float, default=0.0
        L2 penalty coefficient, passed to the optimizer (applies to biases too).
    shuffle : bool, default=True
        Visit the samples in a new random order each epoch (``torch.randperm`` on the device).
    generator : torch.Generator, int or None, default=None
        Randomness of shuffling and corruption; an int seeds a new generator, ``None`` draws
        a seed from numpy's global state. The same seed gives the same weights on the CPU.
    verbose : bool, default=False
        Print one line per epoch.
    callbacks : sequence of callables, default=()
        Each is called as ``callback(dae, record)`` after every epoch; if any returns
        ``True`` (``is True``), training stops after that epoch (the contract of
        :mod:`dbn.engine`).
    state : dict or None, default=None
        Resume from a training state passed earlier to ``checkpoint`` (with the model's
        parameters restored by the caller): the optimizer state, the generator state, the
        history and the number of epochs done are restored and training goes on from the next
        epoch, exactly as if it had not been interrupted (on the CPU).
    checkpoint : callable or None, default=None
        Called as ``checkpoint(state)`` after every epoch with the training state: a dict of
        tensors and plain values (``epoch``, ``history``, ``optimizer``, ``generator``,
        ``stopped``) to save and later pass back as ``state``.

    Returns
    -------
    list of dict
        One record per epoch: ``{"epoch": int (from 1), "loss": float (mean training loss
        over the epoch's batches, weighted by batch size, on corrupted inputs),
        "time": float (seconds)}``.

    Raises
    ------
    DivergenceError
        If the loss or a parameter becomes NaN or infinite.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = (torch.rand(200, 20, generator=g) < 0.3).float()
    >>> dae = DenoisingAutoencoder(20, 8, generator=g)
    >>> history = train_autoencoder(dae, X, n_epochs=3, batch_size=20, generator=g)
    >>> [record["epoch"] for record in history]
    [1, 2, 3]
    """
    if not isinstance(dae, DenoisingAutoencoder):
        raise TypeError(f"dae must be a DenoisingAutoencoder. Got {type(dae).__name__} instead.")
    n_epochs = check_int("n_epochs", n_epochs, low=0)
    batch_size = check_int("batch_size", batch_size, low=1)
    learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    momentum = check_scalar("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
    weight_decay = check_scalar("weight_decay", weight_decay, low=0.0)
    if not all(callable(cb) for cb in callbacks):
        raise ValueError("The 'callbacks' parameter must be a sequence of callables (dae, record) -> bool.")
    X = _training_tensor(dae, X)
    gen = make_generator(generator, X.device)
    if not callable(optimizer):
        check_choice("optimizer", optimizer, OPTIMIZERS)
        if optimizer == "lbfgs":
            raise ValueError(
                "train_autoencoder does not support optimizer='lbfgs' (each evaluation of its "
                "loss draws a new corruption); choose 'sgd', 'adam', 'rmsprop', 'adagrad' or 'adadelta'."
            )
        if momentum != 0.0 and optimizer not in MOMENTUM_OPTIMIZERS:
            raise ValueError(
                f"The 'momentum' parameter only applies to optimizer='sgd' or 'rmsprop'; got "
                f"momentum={momentum} with optimizer={optimizer!r}. Set momentum=0.0."
            )
    opt = make_optimizer(
        optimizer, list(dae.parameters()), learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay
    )
    history, first = _resume(state, opt, gen, n_epochs)
    work = batch_work(min(batch_size, max(X.shape[0], 1)), dae)
    # a fit that may run on several threads, and under load on fewer, uses the products whose
    # result does not depend on the count (dbn._invariant); small fits stay with F.linear,
    # whose per-call cost is lower
    invariant = X.device.type == "cpu" and torch.get_num_threads() > 1 and work >= MIN_PARALLEL_WORK_BACKPROP

    def run_epoch(epoch: int) -> dict:
        start = time.perf_counter()
        batches = minibatches(X.shape[0], batch_size, shuffle=shuffle, generator=gen, device=X.device)
        total = torch.zeros((), device=X.device, dtype=X.dtype)
        buffer = sparse_buffer(X, batch_size)  # a sparse X is densified one batch at a time, into it
        for rows in batches.rows:
            xb = take_rows(X, rows, buffer)
            total += _train_step(dae, opt, xb, gen, invariant) * xb.shape[0]
        mean_loss = float(total) / X.shape[0]  # one host sync per epoch
        return {"epoch": epoch, "loss": mean_loss, "time": time.perf_counter() - start}

    pieces: list[Piece] = [
        DivergenceCheck(
            "loss",
            lambda r: (
                f"Training diverged at epoch {r['epoch']}: the reconstruction loss is {r['loss']}. {_DIVERGENCE_HINT}"
            ),
            hint=_DIVERGENCE_HINT,
            learning_rate=learning_rate,
            hidden_margin=lambda model: _hidden_margin(model, X),
            what="Denoising autoencoder training",
        )
    ]
    if verbose:
        pieces.append(
            PrintProgress(
                lambda r: f"[DenoisingAutoencoder] epoch {r['epoch']:3d}  loss {r['loss']:.4f}  time {r['time']:.2f}s"
            )
        )
    if checkpoint is not None:
        pieces.append(
            CheckpointEvery(
                lambda record, stop: checkpoint(
                    {
                        "epoch": record["epoch"],
                        "history": [dict(r) for r in history],
                        "optimizer": opt.state_dict(),
                        "generator": gen.get_state(),
                        "stopped": stop,
                    }
                )
            )
        )
    dae.train()
    return fit_loop(
        dae,
        range(first, n_epochs + 1),
        run_epoch,
        callbacks=callbacks,
        pieces=pieces,
        records=history,
        work=batch_work(batch_size, dae),
        device=X.device,
        min_work=MIN_PARALLEL_WORK_BACKPROP,
        probe=_thread_probe(dae, opt, gen, X, batch_size, invariant),
    )


def _train_step(
    dae: DenoisingAutoencoder,
    opt: torch.optim.Optimizer,
    xb: torch.Tensor,
    gen: torch.Generator,
    invariant: bool = False,
) -> torch.Tensor:
    """One optimizer step on the batch ``xb``; returns the detached loss. ``invariant``: the
    products of :func:`dbn._invariant.linear`. A batch of fewer than 16 rows (an epoch's last,
    shorter one) runs on one thread: MKL rounds products of 5-11 rows differently on one
    thread than on two (:mod:`dbn._invariant`)."""
    with one_thread(xb.device) if xb.shape[0] < NARROW else contextlib.nullcontext():
        loss = dae._loss(xb, gen, invariant=invariant)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.detach()


def _thread_probe(
    dae: DenoisingAutoencoder,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    X: torch.Tensor,
    batch_size: int,
    invariant: bool = False,
) -> Callable[[], list]:
    """The thread policy's probe (:func:`dbn._threads.fit_threads`): scratch copies of the
    autoencoder, its optimizer and its generator take the first mini-batch step and the last,
    shorter one when there is one; returns the losses, the parameters and the optimizer's
    state. The originals are untouched."""
    n = X.shape[0]
    size = min(batch_size, n)
    sizes = ([size] if n else []) + ([n % size] if n > size and n % size else [])

    def probe() -> list:
        model, optimizer, g = copy.deepcopy((dae, opt, gen))
        out: list = []
        with torch.enable_grad():
            for rows in sizes:
                xb = take_rows(X, slice(0, rows), sparse_buffer(X, rows))
                out.append(_train_step(model, optimizer, xb, g, invariant))
        out.extend(p.detach() for p in model.parameters())
        out.extend(t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor))
        return out

    return probe


@torch.no_grad()
def _hidden_margin(dae: DenoisingAutoencoder, X: torch.Tensor, monitor_size: int = 1000) -> float | None:
    """``max min(p, 1 - p)`` of the codes of the first ``monitor_size`` samples (the
    saturation check of :class:`dbn.engine.DivergenceCheck`; no random numbers drawn)."""
    m, block, margin = min(monitor_size, X.shape[0]), block_rows(X), None
    buffer = sparse_buffer(X, block)
    for start in range(0, m, block):
        h = dae.encode(take_rows(X, slice(start, min(start + block, m)), buffer))
        if h.numel():
            margin = max(float(torch.minimum(h, 1 - h).max()), -1.0 if margin is None else margin)
    return margin


def _training_tensor(dae: DenoisingAutoencoder, X: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``X`` checked and on the model's device and dtype (a numpy array is converted once)."""
    device, dtype = dae.weight.device, dae.weight.dtype
    if isinstance(X, np.ndarray):
        X = torch.as_tensor(X, dtype=dtype, device=device)  # the one numpy -> torch crossing
    elif isinstance(X, torch.Tensor):
        if X.device != device:
            raise ValueError(
                f"X is on {X.device} but the model is on {device}; move one of them "
                "(e.g. X.to(device)) before training."
            )
        if X.is_floating_point() and X.dtype != dtype:
            X = X.to(dtype)
    else:
        raise TypeError(f"X must be a torch.Tensor or numpy array. Got {type(X).__name__} instead.")
    check_data_tensor(X, n_features=dae.n_visible, unit_interval=dae.visible == "bernoulli")
    return X


def _resume(
    state: dict | None, opt: torch.optim.Optimizer, gen: torch.Generator, n_epochs: int
) -> tuple[list[dict], int]:
    """``(history, first epoch)`` of a run resumed from ``state`` (a fresh run without one)."""
    if state is None:
        return [], 1
    try:
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        history = [dict(r) for r in state["history"]]
        first = n_epochs + 1 if state.get("stopped") else int(state["epoch"]) + 1
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"Invalid autoencoder training state: {exc}") from exc
    return history, first
