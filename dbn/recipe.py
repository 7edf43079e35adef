"""The deep-network recipe: build -> pretrain -> export -> fine-tune, written once.

:class:`dbn.DBNClassifier`, :class:`dbn.DBNRegressor` and the comparison harness
(:mod:`dbn.harness`) all fit their networks through these functions, so that "the study
measures the estimator" follows from the code:

1. :func:`build_network` pretrains a stack greedily (:func:`pretrain`, RBMs or denoising
   autoencoders) and exports it with an output layer (:func:`dbn.export.to_torch`), or builds
   a randomly initialised network (:func:`dbn.network.build_mlp`);
2. :func:`finetune` trains it with :func:`dbn.training.fit_network`, first the output layer
   alone for ``freeze_epochs`` epochs when the network was pretrained (Hinton & Salakhutdinov),
   then the whole network; the two phases make one history, numbered 1, 2, ... throughout;
3. :func:`fit` runs both and times them.

Settings come as a mapping of :class:`dbn.DBNClassifier`'s parameter names (``params``;
every name the step reads must be present: pass ``estimator.get_params()``). The harness's
two differences from the estimator are parameters here: the generator of fine-tuning may
differ from that of initialisation and pretraining (``fit_generator``), and early stopping may
watch a given validation set (``validation_data``) instead of a fraction of the training data.

Callbacks follow :func:`dbn.training.fit_network`'s contract: ``callback(network, record)``
once per fine-tuning epoch (the ``freeze_epochs`` phase included), after the record is
complete; it may add keys to ``record``; returning ``True`` stops training after that epoch.
During the second phase the records a callback receives are numbered from 1 again; the
history is renumbered once the phase ends.

This module imports neither scikit-learn nor numpy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._checkpoint import fingerprint
from ._options import Loss, parse_layer_sizes
from .export import to_torch
from .network import build_mlp, linear_layers
from .stack import LayerStack, kind_options, pretrain_stack
from .training import History, fit_network

__all__ = [
    "pretrain",
    "build_network",
    "finetune_options",
    "finetune",
    "fit",
    "run_directory",
    "RecipeFit",
    "resolve_visible",
    "resolve_pretrain_learning_rate",
    "AUTO_PRETRAIN_LEARNING_RATES",
]

EpochCallback = Callable[[nn.Module, dict], Any]

#: ``pretrain_learning_rate="auto"``: the rate of a layer by its visible units. Gaussian visible
#: units on standardised data need a rate one or two orders of magnitude below binary units'
#: (Hinton, "A practical guide to training RBMs", section 13.2); the layers above are binary.
AUTO_PRETRAIN_LEARNING_RATES: dict[str, float] = {"bernoulli": 0.1, "gaussian": 0.01}


def resolve_visible(visible: str, X: torch.Tensor) -> str:
    """``"auto"`` -> ``"bernoulli"`` for data in [0, 1], ``"gaussian"`` otherwise; others unchanged.

    Examples
    --------
    >>> resolve_visible("auto", torch.rand(5, 2)), resolve_visible("auto", torch.randn(5, 2) - 2)
    ('bernoulli', 'gaussian')
    """
    if visible != "auto":
        return visible
    if X.layout != torch.strided:  # sparse: the stored values (the implicit zeros are in [0, 1])
        X = X.values()
    return "bernoulli" if not X.numel() or bool((X.min() >= 0) & (X.max() <= 1)) else "gaussian"


def resolve_pretrain_learning_rate(learning_rate: Any, visible: str, n_layers: int) -> Any:
    """``"auto"`` -> one rate per layer from :data:`AUTO_PRETRAIN_LEARNING_RATES`; others unchanged.

    Examples
    --------
    >>> resolve_pretrain_learning_rate("auto", "gaussian", 2), resolve_pretrain_learning_rate(0.05, "gaussian", 2)
    ((0.01, 0.1), 0.05)
    """
    if learning_rate != "auto":
        return learning_rate
    rates = AUTO_PRETRAIN_LEARNING_RATES
    return tuple(rates[visible] if i == 0 else rates["bernoulli"] for i in range(n_layers))


def _subdir(checkpoint_dir: str | os.PathLike | None, name: str) -> str | None:
    """``checkpoint_dir/name``, or None without checkpoints."""
    return None if checkpoint_dir is None else os.path.join(os.fspath(checkpoint_dir), name)


# settings that do not change a fit's result, or that extend it (max_iter: more fine-tuning
# epochs continue a saved run), or that enter the key another way (random_state: the generators'
# states; pretrained: the stack's weights)
_UNKEYED = frozenset({"max_iter", "verbose", "checkpoint_dir", "callbacks", "random_state", "pretrained"})


def run_directory(
    checkpoint_dir: str | os.PathLike | None,
    kind: str,
    params: Mapping[str, Any],
    **inputs: Any,
) -> str | None:
    """The subdirectory of ``checkpoint_dir`` that holds the state of one fit, keyed by its
    fingerprint, so that fits on other data or with other settings (cross-validation folds,
    grid-search candidates) sharing ``checkpoint_dir`` never read each other's state.

    The key hashes ``params`` (except ``max_iter``, so that a larger ``max_iter`` continues a
    saved run unless ``lr_schedule="cosine"``, and except settings with no effect on the
    result) and every input in ``inputs``: data tensors (their bytes), generators (their
    states), stacks (their weights).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> a = run_directory("ck", "fit", {"n_iter": 2, "max_iter": 5}, X=torch.zeros(3, 2), generator=g)
    >>> b = run_directory("ck", "fit", {"n_iter": 2, "max_iter": 9}, X=torch.zeros(3, 2), generator=g)
    >>> c = run_directory("ck", "fit", {"n_iter": 2, "max_iter": 5}, X=torch.ones(3, 2), generator=g)
    >>> a == b, a == c, a.startswith(os.path.join("ck", "fit-"))
    (True, False, True)
    >>> run_directory(None, "fit", {}) is None
    True
    """
    if checkpoint_dir is None:
        return None
    unkeyed = _UNKEYED if params.get("lr_schedule") != "cosine" else _UNKEYED - {"max_iter"}
    settings = {k: v for k, v in params.items() if k not in unkeyed}
    parts: dict[str, Any] = {"settings": settings}
    for name, value in inputs.items():
        if isinstance(value, torch.Generator):
            value = value.get_state()
        elif isinstance(value, nn.Module):
            value = dict(value.state_dict())
        parts[name] = value
    return os.path.join(os.fspath(checkpoint_dir), f"{kind}-{fingerprint(parts)[:20]}")


def pretrain(
    params: Mapping[str, Any],
    X: torch.Tensor,
    *,
    generator: torch.Generator,
    checkpoint_dir: str | os.PathLike | None = None,
) -> LayerStack:
    """Greedy layer-wise pretraining with an estimator's pretraining settings.

    Parameters
    ----------
    params : mapping
        Reads ``hidden_layer_sizes``, ``pretrain``, ``visible`` ("auto" resolved by
        :func:`resolve_visible`), ``n_iter``, ``propagate``, ``verbose``,
        ``pretrain_learning_rate`` ("auto" resolved by :func:`resolve_pretrain_learning_rate`),
        ``pretrain_batch_size`` (None: ``batch_size``),
        ``weight_decay``, ``pretrain_momentum``, ``k``, ``persistent``, ``sparsity_target``,
        ``sparsity_cost``, ``corruption`` and ``corruption_level``; ``centered``, ``sampler``
        and ``n_temperatures`` where present.
    X : Tensor of shape (n_samples, n_features)
    generator : torch.Generator
    checkpoint_dir : path, optional
        Per-epoch checkpoints go to its ``pretrain`` subdirectory.

    Returns
    -------
    LayerStack

    Examples
    --------
    >>> from dbn import DBNClassifier
    >>> p = DBNClassifier((4,), n_iter=1).get_params()
    >>> pretrain(p, torch.rand(20, 6), generator=torch.Generator().manual_seed(0)).sizes
    (6, 4)
    """
    kind = params["pretrain"]
    sizes = parse_layer_sizes(params["hidden_layer_sizes"])
    visible = resolve_visible(params["visible"], X)
    learning_rate = resolve_pretrain_learning_rate(params["pretrain_learning_rate"], visible, len(sizes))
    common = dict(
        pretrain=kind,
        visible=visible,
        n_epochs=params["n_iter"],
        propagate=params["propagate"],
        generator=generator,
        verbose=bool(params["verbose"]),
        learning_rate=learning_rate,
        batch_size=params["pretrain_batch_size"] or params["batch_size"],
        weight_decay=params["weight_decay"],
        checkpoint_dir=_subdir(checkpoint_dir, "pretrain"),
    )
    extra = kind_options(
        kind,
        momentum=params["pretrain_momentum"],
        k=params["k"],
        persistent=params["persistent"],
        sparsity_target=params["sparsity_target"],
        sparsity_cost=params["sparsity_cost"],
        corruption=params["corruption"],
        corruption_level=params["corruption_level"],
        centered=params.get("centered", False),
        sampler=params.get("sampler", "gibbs"),
        n_temperatures=params.get("n_temperatures", 10),
    )
    return pretrain_stack(X, sizes, **common, **extra)


def build_network(
    params: Mapping[str, Any],
    X: torch.Tensor,
    n_outputs: int,
    *,
    generator: torch.Generator,
    loss: Loss = "cross_entropy",
    X_pretrain: torch.Tensor | None = None,
    stack: LayerStack | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> tuple[nn.Sequential, LayerStack | None]:
    """The network to fine-tune: a pretrained stack with an output layer, or a random init.

    Parameters
    ----------
    params : mapping
        Estimator settings: ``pretrain`` (None for a random init), the pretraining settings of
        :func:`pretrain`, ``activation``, ``init``, ``dropout``, ``input_dropout``,
        ``batch_norm`` and ``maxout_pieces``.
    X : Tensor of shape (n_samples, n_features)
        Labelled inputs (float32 on the target device); the network takes their device and dtype.
    n_outputs : int
        Classes (``loss="cross_entropy"``), targets (``loss="mse"``) or labels
        (``loss="binary_cross_entropy"``).
    generator : torch.Generator
        Source of the initial weights, the output layer and pretraining's randomness.
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}, default="cross_entropy"
        Chooses the head: class logits, a linear regression output, or one logit per label
        (an ``nn.Linear`` in every case; the loss applies the softmax or sigmoids).
    X_pretrain : Tensor, optional
        Data for greedy pretraining; defaults to ``X``.
    stack : LayerStack, optional
        Layers pretrained elsewhere, used instead of pretraining.
    checkpoint_dir : path, optional
        Pretraining checkpoints (see :func:`pretrain`).

    Returns
    -------
    net : nn.Sequential
    stack : LayerStack or None
        The pretrained layers (None for a random init).

    Examples
    --------
    >>> from dbn import DBNClassifier
    >>> p = DBNClassifier((5,), pretrain=None).get_params()
    >>> net, stack = build_network(p, torch.rand(10, 3), 2, generator=torch.Generator().manual_seed(0))
    >>> net[0], stack
    (Linear(in_features=3, out_features=5, bias=True), None)
    """
    if stack is None and params["pretrain"] is None:
        net = build_mlp(
            X.shape[1],
            parse_layer_sizes(params["hidden_layer_sizes"]),
            n_outputs,
            activation=params["activation"],
            init=params["init"],
            dropout=params["dropout"],
            input_dropout=params["input_dropout"],
            batch_norm=params["batch_norm"],
            maxout_pieces=params["maxout_pieces"],
            generator=generator,
            device=X.device,
            dtype=X.dtype,
        )
        return net, None
    if params["activation"] != "sigmoid" or params["batch_norm"]:
        raise ValueError(
            "Pretrained layers are sigmoid layers: use activation='sigmoid' and batch_norm=False "
            "with pretrain='rbm'/'dae' or 'pretrained', or set pretrain=None for a random-init network."
        )
    if stack is None:
        stack = pretrain(
            params, X if X_pretrain is None else X_pretrain, generator=generator, checkpoint_dir=checkpoint_dir
        )
    net = to_torch(
        stack,
        head="softmax" if loss == "cross_entropy" else "linear",
        n_outputs=n_outputs,
        dropout=params["dropout"],
        input_dropout=params["input_dropout"],
        generator=generator,
    )
    return net.to(device=X.device, dtype=X.dtype), stack


def finetune_options(params: Mapping[str, Any], *, loss: Loss, generator: torch.Generator) -> dict[str, Any]:
    """:func:`dbn.training.fit_network`'s options from estimator settings (MLPClassifier's names).

    ``solver`` -> ``optimizer``, ``learning_rate_init`` -> ``learning_rate``, ``alpha`` ->
    ``weight_decay``; ``momentum`` reaches SGD and RMSprop only, Nesterov momentum SGD only.

    Examples
    --------
    >>> from dbn import DBNClassifier
    >>> o = finetune_options(DBNClassifier(solver="adam").get_params(), loss="mse", generator=None)
    >>> o["optimizer"], o["momentum"], o["max_iter"]
    ('adam', 0.0, 200)
    """
    solver = params["solver"]
    return dict(
        loss=loss,
        optimizer=solver,
        learning_rate=params["learning_rate_init"],
        momentum=params["momentum"] if solver in ("sgd", "rmsprop") else 0.0,
        nesterov=params["nesterovs_momentum"] and solver == "sgd",
        weight_decay=params["alpha"],
        l1=params["l1"],
        max_iter=params["max_iter"],
        batch_size=params["batch_size"],
        lr_schedule=params["lr_schedule"],
        clip_grad_norm=params["clip_grad_norm"],
        max_norm=params["max_norm"],
        early_stopping=params["early_stopping"],
        validation_fraction=params["validation_fraction"],
        n_iter_no_change=params["n_iter_no_change"],
        monitor=params["monitor"],
        tol=params["tol"],
        shuffle=params["shuffle"],
        generator=generator,
        verbose=bool(params["verbose"]),
    )


def finetune(
    net: nn.Sequential,
    params: Mapping[str, Any],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    pretrained: bool,
    loss: Loss = "cross_entropy",
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
) -> History:
    """Fine-tune ``net`` in place: ``freeze_epochs`` on the output layer alone, then all layers.

    The output-layer phase runs only for a ``pretrained`` network. The returned history holds
    both phases, epochs numbered 1, 2, ... throughout, and ``best_epoch`` in that numbering.

    Parameters
    ----------
    net : nn.Sequential
    params : mapping
        Estimator settings (see :func:`finetune_options`, plus ``freeze_epochs``).
    X, y : Tensor
    generator : torch.Generator
        Mini-batch order, dropout, the validation split.
    pretrained : bool
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}, default="cross_entropy"
    validation_data : (Tensor, Tensor), optional
        Early stopping watches this set instead of ``validation_fraction`` of ``X``.
    callbacks : sequence of callables, default=()
        ``callback(net, record)`` once per epoch of both phases; returning ``True`` stops the phase.
    checkpoint_dir : path, optional
        Checkpoints in the ``finetune_freeze`` and ``finetune`` subdirectories.

    Returns
    -------
    History

    Examples
    --------
    >>> from dbn import DBNClassifier
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.rand(40, 3, generator=g), torch.arange(40) % 2
    >>> p = DBNClassifier((4,), pretrain=None, max_iter=3, batch_size=10).get_params()
    >>> net, _ = build_network(p, X, 2, generator=g)
    >>> [r["epoch"] for r in finetune(net, p, X, y, generator=g, pretrained=False)]
    [1, 2, 3]
    """
    options = dict(
        finetune_options(params, loss=loss, generator=generator),
        validation_data=validation_data,
        callbacks=tuple(callbacks),
    )
    frozen: list[dict] = []
    if params["freeze_epochs"] and pretrained:
        # Hinton & Salakhutdinov: the first epochs train only the output layer
        n_linear = len(linear_layers(net))
        frozen = fit_network(
            net,
            X,
            y,
            **{**options, "max_iter": params["freeze_epochs"]},
            freeze=tuple(range(n_linear - 1)),
            checkpoint_dir=_subdir(checkpoint_dir, "finetune_freeze"),
        )
    history = fit_network(net, X, y, **options, freeze=(), checkpoint_dir=_subdir(checkpoint_dir, "finetune"))
    if frozen:
        offset = len(frozen)
        for record in history:
            record["epoch"] += offset
        if history.best_epoch is not None:
            history.best_epoch += offset
        history[:0] = frozen
    return history


@dataclass
class RecipeFit:
    """What :func:`fit` returns: the fitted network and its records.

    Attributes
    ----------
    network : nn.Sequential
        The fine-tuned network (outputs logits or regression values).
    stack : LayerStack or None
        The pretrained layers, before fine-tuning (None for a random init).
    history : History
        Fine-tuning records, one per epoch.
    pretrain_time, finetune_time : float
        Seconds spent building (pretraining included) and fine-tuning, the callbacks' own
        time left out.
    """

    network: nn.Sequential
    stack: LayerStack | None
    history: History
    pretrain_time: float
    finetune_time: float


def _timed(callbacks: Sequence[EpochCallback], spent: list[float]) -> list[EpochCallback]:
    """The callbacks, each adding its running time to ``spent[0]``."""
    if not isinstance(callbacks, (list, tuple)) or not all(callable(cb) for cb in callbacks):
        raise ValueError(
            "The 'callbacks' parameter must be a list or tuple of callables callback(network, record). "
            f"Got {callbacks!r} instead."
        )

    def wrap(cb: EpochCallback) -> EpochCallback:
        def wrapper(net: nn.Module, record: dict) -> Any:
            t0 = time.perf_counter()
            try:
                return cb(net, record)
            finally:
                spent[0] += time.perf_counter() - t0

        return wrapper

    return [wrap(cb) for cb in callbacks]


def fit(
    params: Mapping[str, Any],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    n_outputs: int,
    generator: torch.Generator,
    loss: Loss = "cross_entropy",
    X_pretrain: torch.Tensor | None = None,
    stack: LayerStack | None = None,
    fit_generator: torch.Generator | None = None,
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
) -> RecipeFit:
    """Build (pretraining included), export and fine-tune: the whole recipe.

    Parameters
    ----------
    params : mapping
        Estimator settings (:class:`dbn.DBNClassifier`'s parameter names).
    X, y : Tensor
        Labelled data on the target device (``X`` float32).
    n_outputs : int
    generator : torch.Generator
        Initialisation and pretraining; also fine-tuning unless ``fit_generator`` is given.
    loss, X_pretrain, stack
        See :func:`build_network`.
    checkpoint_dir : path, optional
        The fit's checkpoints go to a subdirectory keyed by its fingerprint
        (:func:`run_directory`): ``pretrain``, ``finetune_freeze`` and ``finetune`` in it.
    fit_generator : torch.Generator, optional
        A separate source for fine-tuning (the harness's, so that the arms of a seed visit the
        same mini-batches whatever their pretraining consumed).
    validation_data, callbacks
        See :func:`finetune`.

    Returns
    -------
    RecipeFit

    Examples
    --------
    >>> from dbn import DBNClassifier
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.rand(40, 3, generator=g), torch.arange(40) % 2
    >>> p = DBNClassifier((4,), n_iter=1, max_iter=2, batch_size=10).get_params()
    >>> result = fit(p, X, y, n_outputs=2, generator=g)
    >>> result.stack.sizes, len(result.history)
    ((3, 4), 2)
    """
    # "auto" units resolved first, so that a caller passing them resolved keys the same fit
    params = {**params, "visible": resolve_visible(params["visible"], X if X_pretrain is None else X_pretrain)}
    checkpoint_dir = run_directory(
        checkpoint_dir,
        "fit",
        params,
        loss=loss,
        n_outputs=n_outputs,
        X=X,
        y=y,
        X_pretrain=X_pretrain,
        stack=stack,
        generator=generator,
        fit_generator=fit_generator,
        validation_data=validation_data,
    )
    start = time.perf_counter()
    net, stack = build_network(
        params,
        X,
        n_outputs,
        generator=generator,
        loss=loss,
        X_pretrain=X_pretrain,
        stack=stack,
        checkpoint_dir=checkpoint_dir,
    )
    pretrain_time = time.perf_counter() - start
    spent = [0.0]
    start = time.perf_counter()
    history = finetune(
        net,
        params,
        X,
        y,
        generator=fit_generator or generator,
        pretrained=stack is not None,
        loss=loss,
        validation_data=validation_data,
        callbacks=_timed(callbacks, spent),
        checkpoint_dir=checkpoint_dir,
    )
    finetune_time = time.perf_counter() - start - spent[0]
    return RecipeFit(net, stack, history, pretrain_time, finetune_time)
