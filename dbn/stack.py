"""Greedy layer-wise pretraining: a stack of RBMs (a deep belief network) or of denoising
autoencoders (a stacked denoising autoencoder).

Each layer is trained on the previous layer's outputs: hidden probabilities by default,
or binary samples of them. The layer outputs are computed once per layer, in batches, on
the device; nothing is copied per epoch. No scikit-learn here: see :mod:`dbn.estimators`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import torch
from torch import nn

from ._checkpoint import fingerprint, load_checkpoint, plain, save_checkpoint, settings_text
from ._linalg import bernoulli_sample
from ._options import PRETRAIN_KINDS, PROPAGATES, CorruptionName, PretrainKind, Propagate, VisibleType
from ._random import make_generator
from ._shard import Shard
from ._validation import check_choice, check_data_tensor, check_int, per_layer
from .autoencoder import DenoisingAutoencoder, train_autoencoder
from .engine import chunk_rows, indexed_callbacks, sparse_buffer, take_rows
from .rbm import RBM, CDTrainer

__all__ = ["LayerStack", "pretrain_stack", "kind_options", "PretrainKind", "Propagate"]

Layer = RBM | DenoisingAutoencoder

_RBM_OPTIONS = (
    "learning_rate",
    "batch_size",
    "k",
    "persistent",
    "momentum",
    "weight_decay",
    "sparsity_target",
    "sparsity_cost",
    "shuffle",
    "centered",
    "sampler",
    "n_temperatures",
)
_DAE_OPTIONS = ("learning_rate", "batch_size", "momentum", "weight_decay", "shuffle", "optimizer")


class LayerStack(nn.Module):
    """An ordered stack of pretrained layers (RBMs or denoising autoencoders).

    Each layer maps its input to hidden probabilities ``sigmoid(x @ W.T + c)``; the stack's
    forward pass applies them in turn.

    Parameters
    ----------
    layers : sequence of RBM or DenoisingAutoencoder
        Layers whose sizes chain (``layers[i].n_hidden == layers[i + 1].n_visible``).

    Attributes
    ----------
    layers : nn.ModuleList
    histories : list of list of dict
        Per-layer training histories (empty lists for layers passed in already trained).

    Examples
    --------
    >>> stack = LayerStack([RBM(8, 6), RBM(6, 4)])
    >>> stack(torch.rand(3, 8)).shape
    torch.Size([3, 4])
    >>> stack.sizes
    (8, 6, 4)
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("A LayerStack needs at least one layer.")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (RBM, DenoisingAutoencoder)):
                raise TypeError(f"Layer {i} must be a dbn.RBM or dbn.DenoisingAutoencoder; got {type(layer).__name__}.")
            if i and layer.n_visible != layers[i - 1].n_hidden:
                raise ValueError(
                    f"Layer {i} has {layer.n_visible} visible units but layer {i - 1} has "
                    f"{layers[i - 1].n_hidden} hidden units; the sizes must chain."
                )
        self.layers = nn.ModuleList(layers)
        self.histories: list[list[dict]] = [[] for _ in layers]

    def _layer_list(self) -> list[Layer]:
        """The layers as a list (typed: ``nn.ModuleList`` items are typed as plain modules)."""
        return cast("list[Layer]", list(self.layers))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths from the input to the top: ``(n_visible, n_hidden_1, ...)``."""
        layers = self._layer_list()
        return (layers[0].n_visible, *(layer.n_hidden for layer in layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._layer_list():
            x = layer.hidden_probs(x)
        return x

    @torch.no_grad()
    def transform(self, x: torch.Tensor, *, n_layers: int | None = None, batch_size: int = 4096) -> torch.Tensor:
        """Features of ``x`` after ``n_layers`` layers (all by default), computed in batches.

        Examples
        --------
        >>> stack = LayerStack([RBM(8, 6), RBM(6, 4)])
        >>> stack.transform(torch.rand(3, 8), n_layers=1).shape
        torch.Size([3, 6])
        """
        n_layers = len(self.layers) if n_layers is None else check_int("n_layers", n_layers, low=0)
        return _propagate(x, self._layer_list()[:n_layers], batch_size=batch_size)


@torch.no_grad()
def _propagate(
    x: torch.Tensor,
    layers: Sequence[Layer],
    *,
    batch_size: int = 4096,
    samples: bool = False,
    generator: torch.Generator | None = None,
    shard: Shard | None = None,
) -> torch.Tensor:
    """Hidden probabilities (or binary samples of them) of ``x`` through ``layers``, in chunks.

    With ``shard`` (data-parallel stacking, :mod:`dbn.distributed`), ``x`` is this process's
    rows of the whole data: the chunks are the whole data's, each chunk's random draw covers
    all its rows as one process draws it, and this process keeps its rows (the same numbers).
    """
    lo = 0 if shard is None else shard.offset
    total = x.shape[0] if shard is None else shard.n_total
    batch_size = chunk_rows(x, batch_size)  # a sparse x is densified one chunk at a time, into one buffer
    buffer = sparse_buffer(x, batch_size)
    for layer in layers:
        out = torch.empty(x.shape[0], layer.n_hidden, device=x.device, dtype=x.dtype)
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            a, b = max(start, lo), min(stop, lo + x.shape[0])  # this process's rows of the chunk
            if a >= b and not samples:
                continue
            probs = layer.hidden_probs(take_rows(x, slice(a - lo, max(a, b) - lo), buffer))
            if samples:
                probs = _sample_rows(probs, generator, a - start, stop - start)
            out[a - lo : max(a, b) - lo] = probs
        x = out
    return x


def _sample_rows(probs: torch.Tensor, generator: torch.Generator | None, first: int, total: int) -> torch.Tensor:
    """Rows ``first ..`` of a Bernoulli draw made for ``total`` rows (all of them: ``probs`` itself)."""
    if first == 0 and total == probs.shape[0]:
        return bernoulli_sample(probs, generator)
    full = probs.new_zeros(total, probs.shape[1])
    full[first : first + probs.shape[0]] = probs
    return bernoulli_sample(full, generator)[first : first + probs.shape[0]]


def kind_options(
    pretrain: PretrainKind,
    *,
    momentum,
    k: int = 1,
    persistent: bool = False,
    sparsity_target: float | None = None,
    sparsity_cost: float = 0.0,
    corruption: str = "mask",
    corruption_level: float = 0.2,
    centered: bool = False,
    sampler: str = "gibbs",
    n_temperatures: int = 10,
) -> dict:
    """The layer-type-specific options of :func:`pretrain_stack` from estimator-style settings.

    RBMs take ``k``, ``persistent``, the momentum schedule and the sparsity settings, and
    ``centered``, ``sampler`` and ``n_temperatures`` where they differ from the defaults;
    autoencoders take the corruption settings and an SGD momentum, for which the RBM schedule
    name ``"hinton"`` means its final value, 0.9.

    Examples
    --------
    >>> kind_options("dae", momentum="hinton", corruption_level=0.3)
    {'corruption': 'mask', 'corruption_level': 0.3, 'momentum': 0.9}
    """
    if pretrain == "rbm":
        options = dict(
            k=k, persistent=persistent, momentum=momentum, sparsity_target=sparsity_target, sparsity_cost=sparsity_cost
        )
        if centered:
            options["centered"] = True
        if sampler != "gibbs":
            options.update(sampler=sampler, n_temperatures=n_temperatures)
        return options
    return dict(
        corruption=corruption, corruption_level=corruption_level, momentum=0.9 if momentum == "hinton" else momentum
    )


def pretrain_stack(
    X: torch.Tensor,
    hidden_layer_sizes: Sequence[int],
    *,
    pretrain: PretrainKind = "rbm",
    visible: Literal["bernoulli", "gaussian"] = "bernoulli",
    n_epochs: int | Sequence[int] = 10,
    propagate: Propagate = "probs",
    generator: torch.Generator | None = None,
    validation_data: torch.Tensor | None = None,
    verbose: bool = False,
    callbacks: Sequence[Callable[[int, nn.Module, dict], Any]] = (),
    corruption: str | Sequence[str] = "mask",
    corruption_level: float | Sequence[float] = 0.2,
    checkpoint_dir: str | os.PathLike | None = None,
    **layer_options,
) -> LayerStack:
    """Greedy layer-wise pretraining of a stack of RBMs (DBN) or denoising autoencoders (SdA).

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        Training data, on the device where the stack should live; its dtype is the stack's.
    hidden_layer_sizes : sequence of int
        Width of each hidden layer, from the bottom up.
    pretrain : {"rbm", "dae"}, default="rbm"
        Layer type.
    visible : {"bernoulli", "gaussian"}, default="bernoulli"
        Visible units of the first layer (upper layers see probabilities in [0, 1]).
    n_epochs : int or sequence of int, default=10
        Epochs per layer.
    propagate : {"probs", "samples"}, default="probs"
        What the next layer is trained on: hidden probabilities, or binary samples of them.
    generator : torch.Generator, optional
        Random source (on X's device) for initialisation, batches and sampling.
    validation_data : Tensor, optional
        Held-out data, propagated alongside, for the RBMs' free-energy gap monitor.
    verbose : bool, default=False
        Progress bars per layer.
    callbacks : sequence of callables
        Called as ``callback(layer_index, layer, record)`` after every epoch of every layer;
        returning ``True`` (``is True``, the contract of :mod:`dbn.engine`) stops the training
        of that layer after this epoch, and pretraining goes on with the next layer.
    corruption, corruption_level : str / float or per-layer sequences
        Denoising autoencoder corruption (``pretrain="dae"`` only).
    checkpoint_dir : str or path-like, optional
        Directory for a checkpoint written atomically after every epoch of every layer (the
        finished layers, the current layer with its trainer state, the generator state). It
        records the settings and a fingerprint of ``X`` and ``validation_data`` (a hash of
        their bytes). When it already holds a checkpoint of a run with the same settings on
        the same data, training resumes after the last saved epoch (the inputs of the current
        layer are recomputed from the finished layers), and the result equals an uninterrupted
        run's exactly on the CPU. The checkpoint's generator state replaces ``generator``'s. A
        checkpoint on other data or with other settings raises ``ValueError`` naming the
        inputs or settings that differ; a finished run's checkpoint returns the finished stack,
        and more ``n_epochs`` for the last layer trained (or for layers not begun) continue it.
    **layer_options
        Per-layer training options, each a single value or one value per layer:
        for RBMs ``learning_rate``, ``batch_size``, ``k``, ``persistent``, ``momentum``,
        ``weight_decay``, ``sparsity_target``, ``sparsity_cost``, ``shuffle``, ``centered``,
        ``sampler``, ``n_temperatures`` (see :class:`dbn.rbm.CDTrainer`); for
        autoencoders ``learning_rate``, ``batch_size``, ``momentum``, ``weight_decay``,
        ``shuffle``, ``optimizer``.

    Returns
    -------
    LayerStack
        The trained layers, with per-layer histories in ``.histories``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X = (torch.rand(200, 16, generator=g) < 0.3).float()
    >>> stack = pretrain_stack(X, (12, 8), n_epochs=2, learning_rate=0.05, batch_size=20, generator=g)
    >>> stack.sizes, len(stack.histories[1])
    ((16, 12, 8), 2)
    """
    pretrain = check_choice("pretrain", pretrain, PRETRAIN_KINDS)
    propagate = check_choice("propagate", propagate, PROPAGATES)
    sizes = [check_int("hidden_layer_sizes", s, low=1) for s in hidden_layer_sizes]
    if not sizes:
        raise ValueError("The 'hidden_layer_sizes' parameter must name at least one layer.")
    allowed = _RBM_OPTIONS if pretrain == "rbm" else _DAE_OPTIONS
    unknown = sorted(set(layer_options) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown options for pretrain={pretrain!r}: {unknown}. Valid options: {list(allowed)}.")
    X = check_data_tensor(X, unit_interval=visible == "bernoulli")
    n_layers = len(sizes)
    epochs = [check_int("n_epochs", e, low=0) for e in per_layer("n_epochs", n_epochs, n_layers)]
    options = {name: per_layer(name, value, n_layers) for name, value in layer_options.items()}
    corruptions = per_layer("corruption", corruption, n_layers)
    levels = per_layer("corruption_level", corruption_level, n_layers)
    generator = generator if generator is not None else make_generator(None, X.device)
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = _StackCheckpoint(
            checkpoint_dir,
            {
                "pretrain": pretrain,
                "visible": visible,
                "hidden_layer_sizes": sizes,
                "n_epochs": epochs,
                "propagate": propagate,
                **options,
                "corruption": corruptions if pretrain == "dae" else None,
                "corruption_level": levels if pretrain == "dae" else None,
                "X": fingerprint(X),
                "validation_data": fingerprint(validation_data),
                "device": str(X.device),
            },
            generator,
        )
    return _pretrain_layers(
        X,
        sizes,
        pretrain=pretrain,
        visible=visible,
        epochs=epochs,
        options=options,
        corruptions=corruptions,
        levels=levels,
        propagate=propagate,
        generator=generator,
        validation_data=validation_data,
        verbose=verbose,
        callbacks=callbacks,
        ckpt=ckpt,
    )


def _pretrain_layers(
    X: torch.Tensor,
    sizes: Sequence[int],
    *,
    pretrain: str,
    visible: VisibleType,
    epochs: Sequence[int],
    options: dict[str, list],
    corruptions: Sequence[CorruptionName | None],
    levels: Sequence[float | None],
    propagate: str,
    generator: torch.Generator,
    validation_data: torch.Tensor | None = None,
    verbose: bool = False,
    callbacks: Sequence[Callable[[int, nn.Module, dict], Any]] = (),
    ckpt: _StackCheckpoint | None = None,
    shard: Shard | None = None,
) -> LayerStack:
    """The greedy loop of :func:`pretrain_stack` on checked, per-layer arguments.

    Also the loop of :func:`dbn.distributed.pretrain_stack_distributed`: with ``shard``
    (RBMs only) ``X`` is this process's shard, the visible biases and the CD statistics are
    all-reduced, and the propagation draws as one process would.
    """
    n_layers = len(sizes)
    layers: list[Layer] = []
    histories: list[list[dict]] = []
    # generator state before each finished layer's outputs were propagated (samples replay)
    propagate_states: list[torch.Tensor] = []
    saved: dict[str, Any] = {}  # the checkpointed state, when resuming
    resume_layer = -1
    if ckpt is not None:
        ckpt.layers, ckpt.histories, ckpt.propagate_states = layers, histories, propagate_states
        if ckpt.state is not None:
            saved = ckpt.state
            resume_layer = _check_resume_layer(saved, n_layers)
    inputs, valid = X, validation_data
    for i, n_hidden in enumerate(sizes):
        units = visible if i == 0 else "bernoulli"
        layer = _new_layer(pretrain, inputs, n_hidden, units, corruptions[i], levels[i], generator, shard)
        if i < resume_layer:  # finished before the interruption: restore, no training
            _load_layer(layer, saved["finished"][i])
            history = [dict(r) for r in saved["histories"][i]]
        else:
            state = None
            if i == resume_layer:
                _load_layer(layer, saved["current"])
                state = saved["trainer"]
                generator.set_state(saved["generator"])
            history = _train_layer(
                layer,
                inputs,
                i,
                n_layers,
                n_epochs=epochs[i],
                options={name: v[i] for name, v in options.items()},
                generator=generator,
                validation_data=valid,
                verbose=verbose,
                callbacks=indexed_callbacks(callbacks, i),
                state=state,
                ckpt=ckpt,
                shard=shard,
            )
        layers.append(layer)
        histories.append(history)
        if i < n_layers - 1:
            if i < resume_layer:
                generator.set_state(saved["propagate_generator"][i])
            else:
                propagate_states.append(generator.get_state())
            inputs = _propagate(inputs, [layer], samples=propagate == "samples", generator=generator, shard=shard)
            if valid is not None:
                valid = _propagate(valid, [layer])
        if i < resume_layer:
            propagate_states[:] = [s.clone() for s in saved["propagate_generator"][: i + 1]]
    stack = LayerStack(layers)
    stack.histories = histories
    return stack


def _new_layer(
    pretrain: str,
    inputs: torch.Tensor,
    n_hidden: int,
    units: VisibleType,
    corruption: CorruptionName | None,
    level: float | None,
    generator: torch.Generator,
    shard: Shard | None = None,
) -> Layer:
    """A fresh layer on ``inputs``' device and dtype (an RBM's visible bias set from the data)."""
    if pretrain == "rbm":
        layer = RBM(
            inputs.shape[1], n_hidden, visible=units, generator=generator, device=inputs.device, dtype=inputs.dtype
        )
        layer.init_visible_bias_(inputs, shard=shard)
        return layer
    if shard is not None:
        raise ValueError("Data-parallel pretraining trains RBMs only; use pretrain='rbm'.")
    if corruption is None or level is None:  # the RBM-only callers pass None
        raise ValueError("A denoising autoencoder layer needs a corruption and a corruption level.")
    return DenoisingAutoencoder(
        inputs.shape[1],
        n_hidden,
        visible=units,
        corruption=corruption,
        corruption_level=level,
        generator=generator,
        device=inputs.device,
        dtype=inputs.dtype,
    )


def _train_layer(
    layer: Layer,
    inputs: torch.Tensor,
    i: int,
    n_layers: int,
    *,
    n_epochs: int,
    options: dict,
    generator: torch.Generator,
    validation_data: torch.Tensor | None,
    verbose: bool,
    callbacks: list,
    state: dict | None,
    ckpt: _StackCheckpoint | None,
    shard: Shard | None = None,
) -> list[dict]:
    """Train layer ``i`` (resumed from a trainer ``state``) on the engine; returns its history."""
    if isinstance(layer, RBM):
        if shard is not None:  # data-parallel: the CD step's reduction hook is the all-reduce
            options = dict(options, all_reduce=shard.all_reduce, rank=shard.rank, world_size=shard.world_size)
        trainer = CDTrainer(layer, generator=generator, **options)
        if state is not None:
            trainer.load_state_dict(state)
        hooks = list(callbacks)
        if ckpt is not None:
            hooks.append(lambda layer, record: ckpt.save(i, layer, trainer.state_dict()))
        trainer.fit(
            inputs,
            max(0, n_epochs - trainer.epoch),
            validation_data=validation_data,
            verbose=verbose,
            callbacks=hooks,
            description=f"RBM layer {i + 1}/{n_layers}",
            shard=shard,
        )
        return trainer.history
    checkpoint = None if ckpt is None else (lambda st: ckpt.save(i, layer, st))
    return train_autoencoder(
        layer,
        inputs,
        n_epochs=n_epochs,
        generator=generator,
        verbose=verbose,
        callbacks=callbacks,
        state=state,
        checkpoint=checkpoint,
        **options,
    )


class _StackCheckpoint:
    """The pretraining checkpoint of :func:`pretrain_stack`: the saved state (``None`` when
    there is none) and the saver, which writes the finished layers, the current layer with
    its trainer state and the generator state."""

    def __init__(
        self,
        directory: str | os.PathLike,
        settings: dict,
        generator: torch.Generator,
    ) -> None:
        self.directory = directory
        self.settings = settings_text(settings)
        self.generator = generator
        # the run's lists, bound by _pretrain_layers
        self.layers: list[Layer] = []
        self.histories: list[list[dict]] = []
        self.propagate_states: list[torch.Tensor] = []
        epochs = settings["n_epochs"]
        self.state = load_checkpoint(
            directory,
            "pretrain_stack",
            self.settings,
            extend={"n_epochs": lambda saved, state: _epochs_extend(saved, epochs, state)},
        )

    def save(self, i: int, layer: Layer, trainer_state: dict) -> None:
        save_checkpoint(
            self.directory,
            "pretrain_stack",
            self.settings,
            {
                "layer": i,
                "finished": [dict(done.state_dict()) for done in self.layers],
                "histories": [[plain(r) for r in h] for h in self.histories],
                "propagate_generator": self.propagate_states,
                "current": dict(layer.state_dict()),
                "trainer": trainer_state,
                "generator": self.generator.get_state(),
            },
        )


def _epochs_extend(saved: Any, epochs: Sequence[int], state: dict) -> str | None:
    """Whether a pretraining checkpoint saved with ``n_epochs=saved`` can go on with ``epochs``
    (``None``), or why not: the finished layers must have had the same epochs, the current one
    at most ``epochs`` of its layer."""
    try:
        i, done = int(state["layer"]), int(state["trainer"]["epoch"])
        if not isinstance(saved, list) or len(saved) != len(epochs):
            return "another number of layers"
    except (KeyError, TypeError, ValueError):
        return "the checkpoint is damaged"
    if list(saved[:i]) != list(epochs[:i]):
        return (
            f"layers 1..{i} are finished with n_epochs {list(saved[:i])}; other epochs for finished layers "
            "need a fresh start"
        )
    if epochs[i] < done:
        return f"layer {i + 1} has already trained {done} epochs"
    return None


def _check_resume_layer(ckpt: dict, n_layers: int) -> int:
    try:
        i = int(ckpt["layer"])
        lengths = {len(ckpt["finished"]), len(ckpt["histories"]), len(ckpt["propagate_generator"])}
        if not 0 <= i < n_layers or lengths != {i}:
            raise ValueError(f"layer index {i} does not fit {len(ckpt['finished'])} finished layers")
        for key in ("propagate_generator", "current", "trainer", "generator"):
            ckpt[key]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"The pretraining checkpoint is damaged ({exc}). Delete the checkpoint directory to start over."
        ) from exc
    return i


def _load_layer(layer: nn.Module, state: dict) -> None:
    try:
        layer.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"The pretraining checkpoint does not fit the layers being trained ({exc}). Delete the checkpoint "
            "directory to start over, or use another 'checkpoint_dir'."
        ) from exc
