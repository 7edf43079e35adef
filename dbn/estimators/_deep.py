"""The deep estimators: :class:`DBNTransformer` (greedy pretraining), and :class:`DBNClassifier`
and :class:`DBNRegressor` (pretraining or a random init, then fine-tuning).

The fitting itself is :mod:`dbn.recipe`'s, which the comparison harness calls too; this module
adds scikit-learn's parameter checks, data validation and the numpy <-> torch conversion.
"""

from __future__ import annotations

import copy
import os
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import recipe
from .._options import (
    ACTIVATIONS,
    CORRUPTIONS,
    FIT_LR_SCHEDULES,
    INITS,
    MONITORS,
    OPTIMIZERS,
    PRETRAIN_KINDS,
    PROPAGATES,
    Head,
    Loss,
    parse_layer_sizes,
)
from .._random import make_generator, resolve_device
from .._threads import batch_work, fit_threads
from .._validation import check_memory, clip_batch_size
from ..export import fold_scaling, to_torch
from ..io import _load_state
from ..network import build_mlp, linear_layers
from ..stack import LayerStack
from ..training import History, predict_logits
from ._base import (
    _MOMENTUM_CONSTRAINTS,
    _VISIBLE_AUTO_CONSTRAINT,
    _check_unit_interval,
    _json_safe,
    _LayerTransformerTags,
    _PersistenceMixin,
    _prefixed,
    _restore_stack,
    _stack_state,
    _standardisation,
    _standardise,
    _to_numpy,
    _to_tensor,
)

__all__ = ["DBNTransformer", "DBNClassifier", "DBNRegressor"]


def _checked_sizes(
    owner: str,
    params: dict,
    *,
    n_features: int,
    n_samples: int,
    n_pretrain: int,
    device: torch.device,
    itemsize: int = 4,
) -> dict:
    """``params`` with the batch sizes clipped to the data (warning as scikit-learn's MLP
    does) after refusing layer sizes whose weights would not fit in the machine's memory.

    Each layer's weights count four times: the RBM's weights and momentum, the exported
    network's weights and the optimizer's buffer.
    """
    params = dict(params)
    sizes = [n_features, *parse_layer_sizes(params["hidden_layer_sizes"])]
    n_weights = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    check_memory(
        {"hidden_layer_sizes": (4 * n_weights * itemsize, f"the weights of layers {sizes} and their training buffers")},
        device=device,
        owner=owner,
    )
    if params.get("batch_size") is not None:
        params["batch_size"] = clip_batch_size(params["batch_size"], n_samples)
    if params.get("pretrain_batch_size") is not None:
        params["pretrain_batch_size"] = clip_batch_size(params["pretrain_batch_size"], n_pretrain)
    return params


def _is_label_matrix(y) -> bool:
    """Whether ``y`` is 2-D with more than one column (multi-label targets), judged from its
    shape alone: a column vector stays single-label, as in scikit-learn's MLPClassifier."""
    shape = getattr(y, "shape", None)
    if shape is None:
        try:
            shape = np.shape(y)
        except (ValueError, TypeError):  # ragged: left to validate_data's message
            return False
    return len(shape) == 2 and shape[1] > 1


_PRETRAIN_CONSTRAINTS: dict = {
    "hidden_layer_sizes": [tuple, list, Interval(Integral, 1, None, closed="left")],
    "visible": [_VISIBLE_AUTO_CONSTRAINT],
    "n_iter": [Interval(Integral, 0, None, closed="left"), tuple, list],
    "k": [Interval(Integral, 1, None, closed="left")],
    "persistent": ["boolean"],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "sparsity_target": [Interval(Real, 0, 1, closed="neither"), None],
    "sparsity_cost": [Interval(Real, 0, None, closed="left")],
    "centered": ["boolean"],
    "sampler": [StrOptions({"gibbs", "pt"})],
    "n_temperatures": [Interval(Integral, 2, None, closed="left")],
    "corruption": [StrOptions(set(CORRUPTIONS))],
    "corruption_level": [Interval(Real, 0, None, closed="left")],
    "propagate": [StrOptions(set(PROPAGATES))],
    "random_state": ["random_state", torch.Generator],
    "verbose": ["verbose"],
    "device": [str, torch.device],
    "checkpoint_dir": [str, os.PathLike, None],
}


_AUTO_RATE = StrOptions({"auto"})


class _InputScaling:
    """Gaussian visible units see standardised data: the mean and scale are learned at fit,
    applied before the network and folded into the exported first layer."""

    visible: str
    visible_: str
    input_mean_: np.ndarray | None
    input_scale_: np.ndarray | None

    def _fit_input_scaling(self, X_source, source_tensor: torch.Tensor) -> None:
        """Set ``visible_`` (``"auto"`` resolved on the data) and the input standardisation."""
        self.visible_ = recipe.resolve_visible(self.visible, source_tensor)
        if self.visible_ == "gaussian" and getattr(self, "pretrained", None) is None:
            self.input_mean_, self.input_scale_ = _standardisation(X_source)
        else:
            self.input_mean_ = self.input_scale_ = None

    def _input_tensor(self, X, *, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
        """Validated ``X`` -> tensor, standardised when the visible units are Gaussian."""
        mean, scale = getattr(self, "input_mean_", None), getattr(self, "input_scale_", None)
        if mean is not None and scale is not None:
            dtype = dtype or torch.as_tensor(np.zeros(0, dtype=X.dtype)).dtype
            X = _standardise(X, mean, scale)
        return _to_tensor(X, device=device, dtype=dtype)

    def _scaling_state(self) -> dict:
        return {
            "visible": getattr(self, "visible_", None),
            "input_mean": _json_safe(None if self.input_mean_ is None else self.input_mean_.tolist()),
            "input_scale": _json_safe(None if self.input_scale_ is None else self.input_scale_.tolist()),
        }

    def _restore_scaling(self, fitted: dict) -> None:
        self.visible_ = fitted.get("visible", self.visible)
        mean, scale = fitted.get("input_mean"), fitted.get("input_scale")
        self.input_mean_ = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.input_scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)

    def _fold(self, net: torch.nn.Sequential, **output) -> torch.nn.Sequential:
        """``net`` taking raw inputs (and giving raw targets): :func:`dbn.export.fold_scaling`."""
        inputs = {}
        if self.input_mean_ is not None:
            inputs = {
                "input_mean": torch.as_tensor(self.input_mean_),
                "input_scale": torch.as_tensor(self.input_scale_),
            }
        return fold_scaling(net, **inputs, **output) if inputs or output else net


class DBNTransformer(
    _InputScaling,
    _PersistenceMixin,
    _LayerTransformerTags,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Unsupervised deep feature extractor: a greedily pretrained stack of RBMs or autoencoders.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256, 256)
        Width of each layer, bottom up.
    pretrain : {"rbm", "dae"}, default="rbm"
        Stack RBMs (a deep belief network) or denoising autoencoders (an SdA).
    visible : {"auto", "bernoulli", "gaussian"}, default="auto"
        Visible units of the first layer. ``"auto"``: Bernoulli units for data in [0, 1],
        Gaussian ones otherwise (the choice is in ``visible_``). Gaussian units see the data
        standardised (``input_mean_``, ``input_scale_``, learned at fit); :meth:`to_torch`
        folds the standardisation into the first layer, so the export takes raw inputs.
    n_iter : int or tuple of int, default=10
        Training epochs per layer.
    learning_rate : float, tuple of float or "auto", default="auto"
        ``"auto"``: 0.1 per layer, 0.01 for a first layer of Gaussian visible units
        (:data:`dbn.recipe.AUTO_PRETRAIN_LEARNING_RATES`).
    batch_size : int, default=100
    k : int, default=1
        Gibbs steps of CD-k / PCD-k (RBMs).
    persistent : bool, default=False
        Persistent CD (RBMs).
    momentum : float or "hinton", default="hinton"
        RBMs: momentum schedule (``"hinton"``: 0.5 then 0.9 after five epochs); autoencoders:
        SGD momentum (``"hinton"`` means 0.9).
    weight_decay : float, default=2e-4
        L2 weight cost (Hinton's code uses 2e-4).
    sparsity_target : float or None, default=None
    sparsity_cost : float, default=0.0
    centered : bool, default=False
        Centred RBM training (see :class:`dbn.rbm.CDTrainer`); the layers stay ordinary RBMs.
    sampler : {"gibbs", "pt"}, default="gibbs"
        Negative-phase sampler of persistent CD; ``"pt"`` (parallel tempering) needs
        ``persistent=True``.
    n_temperatures : int, default=10
        Inverse temperatures of parallel tempering.
    corruption : {"mask", "gaussian", "salt_pepper"}, default="mask"
        Denoising autoencoders: input corruption.
    corruption_level : float, default=0.2
    propagate : {"probs", "samples"}, default="probs"
        What each layer passes up to train the next one.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    device : str, default="cpu"
    checkpoint_dir : str, path-like or None, default=None
        Directory for per-epoch checkpoints of the pretraining. Each fit keeps its state in a
        subdirectory named by a fingerprint of its data (a hash of the bytes of ``X``), its
        settings and its ``random_state`` (:func:`dbn.recipe.run_directory`), so clones that
        share the directory in cross-validation or a grid search never read each other's
        state; a rerun of ``fit`` on the same data with the same settings and an int
        ``random_state`` resumes where an interrupted one stopped (with ``random_state=None``
        every fit starts afresh). See :func:`dbn.stack.pretrain_stack`.

    Attributes
    ----------
    stack_ : dbn.stack.LayerStack
        The trained layers (on standardised data for Gaussian visible units).
    history_ : list of list of dict
        Per-layer, per-epoch training monitors.
    visible_ : {"bernoulli", "gaussian"}
        The first layer's visible units.
    input_mean_, input_scale_ : ndarray of shape (n_features,) or None
        The standardisation of Gaussian visible units (None for Bernoulli units).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from dbn import DBNTransformer
    >>> X = np.random.RandomState(0).rand(50, 8).astype(np.float32)
    >>> model = DBNTransformer(hidden_layer_sizes=(6, 3), n_iter=2, random_state=0).fit(X)
    >>> model.transform(X).shape
    (50, 3)
    >>> model.to_torch()[0]
    Linear(in_features=8, out_features=6, bias=True)
    """

    _parameter_constraints: dict = {
        **_PRETRAIN_CONSTRAINTS,
        "pretrain": [StrOptions(set(PRETRAIN_KINDS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), tuple, list, _AUTO_RATE],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "momentum": _MOMENTUM_CONSTRAINTS,
    }

    def __init__(
        self,
        hidden_layer_sizes=(256, 256),
        *,
        pretrain: str = "rbm",
        visible: str = "auto",
        n_iter=10,
        learning_rate="auto",
        batch_size: int = 100,
        k: int = 1,
        persistent: bool = False,
        momentum="hinton",
        weight_decay: float = 2e-4,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        centered: bool = False,
        sampler: str = "gibbs",
        n_temperatures: int = 10,
        corruption: str = "mask",
        corruption_level: float = 0.2,
        propagate: str = "probs",
        random_state=None,
        verbose: int = 0,
        device: str = "cpu",
        checkpoint_dir=None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.pretrain = pretrain
        self.visible = visible
        self.n_iter = n_iter
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.k = k
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.centered = centered
        self.sampler = sampler
        self.n_temperatures = n_temperatures
        self.corruption = corruption
        self.corruption_level = corruption_level
        self.propagate = propagate
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.checkpoint_dir = checkpoint_dir

    @property
    def _n_features_out(self) -> int:
        return self.stack_.sizes[-1]

    def fit(self, X, y=None):
        """Pretrain the stack greedily on ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : DBNTransformer
        """
        self._validate_params()
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float64, np.float32))
        _check_unit_interval(X, self.visible, type(self).__name__)
        device = resolve_device(self.device)
        params = {
            **self.get_params(deep=False),
            "pretrain_learning_rate": self.learning_rate,
            "pretrain_batch_size": self.batch_size,
            "pretrain_momentum": self.momentum,
        }
        params = _checked_sizes(
            type(self).__name__,
            params,
            n_features=X.shape[1],
            n_samples=X.shape[0],
            n_pretrain=X.shape[0],
            device=device,
            itemsize=X.dtype.itemsize,
        )
        Xt = _to_tensor(X, device=device)
        self._fit_input_scaling(X, Xt)
        if self.input_mean_ is not None:
            Xt = self._input_tensor(X, device=device, dtype=Xt.dtype)
        params["visible"] = self.visible_
        generator = make_generator(self.random_state, device)
        checkpoint_dir = recipe.run_directory(self.checkpoint_dir, "pretrain", params, X=Xt, generator=generator)
        self.stack_ = recipe.pretrain(params, Xt, generator=generator, checkpoint_dir=checkpoint_dir)
        self.history_ = self.stack_.histories
        return self

    def _fitted_state(self):
        layers, tensors = _stack_state(self.stack_)
        return {"layers": layers, "history": _json_safe(self.history_), **self._scaling_state()}, tensors

    def _restore_fitted(self, fitted, tensors, device):
        self.stack_ = _restore_stack(fitted["layers"], fitted["history"], tensors, device)
        self.history_ = self.stack_.histories
        self._restore_scaling(fitted)

    @torch.no_grad()
    def transform(self, X):
        """Top-layer features (hidden probabilities of the last layer).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, hidden_layer_sizes[-1])
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float64, np.float32), reset=False)
        _check_unit_interval(X, self.visible, type(self).__name__)
        dtype = self.stack_.layers[0].weight.dtype
        Xt = self._input_tensor(X, device=resolve_device(self.device), dtype=dtype)
        with fit_threads(batch_work(Xt.shape[0], self.stack_), Xt.device):
            return _to_numpy(self.stack_.transform(Xt))

    def to_torch(self, *, head: Head | None = None, n_outputs: int | None = None, **kwargs) -> torch.nn.Sequential:
        """Export the pretrained stack as a ``torch.nn.Sequential``; see :func:`dbn.export.to_torch`.

        The export takes raw inputs: a standardisation of Gaussian visible units is folded
        into its first layer (:func:`dbn.export.fold_scaling`).
        """
        check_is_fitted(self)
        return self._fold(to_torch(self.stack_, head=head, n_outputs=n_outputs, **kwargs))


class _DeepNetwork(_InputScaling, _PersistenceMixin, BaseEstimator):
    """Shared machinery of :class:`DBNClassifier` and :class:`DBNRegressor`."""

    _loss: Loss = "cross_entropy"

    _parameter_constraints: dict = {
        **_PRETRAIN_CONSTRAINTS,
        "pretrain": [StrOptions(set(PRETRAIN_KINDS)), None],
        "pretrained": [None, list, tuple, BaseEstimator, torch.nn.Module],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "init": [StrOptions(set(INITS))],
        "pretrain_learning_rate": [Interval(Real, 0, None, closed="neither"), tuple, list, _AUTO_RATE],
        "pretrain_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "pretrain_momentum": _MOMENTUM_CONSTRAINTS,
        "solver": [StrOptions(set(OPTIMIZERS))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions(set(FIT_LR_SCHEDULES)), None],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "maxout_pieces": [Interval(Integral, 2, None, closed="left")],
        "clip_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "max_norm": [Interval(Real, 0, None, closed="neither"), None],
        "freeze_epochs": [Interval(Integral, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "monitor": [StrOptions(set(MONITORS))],
        "tol": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "warm_start": ["boolean"],
        "callbacks": [list, tuple, None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(256, 256),
        *,
        pretrain: str | None = "rbm",
        pretrained=None,
        activation: str = "sigmoid",
        init: str = "normal",
        visible: str = "auto",
        n_iter=20,
        pretrain_learning_rate="auto",
        pretrain_batch_size: int | None = None,
        k: int = 1,
        persistent: bool = False,
        pretrain_momentum="hinton",
        weight_decay: float = 2e-4,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        centered: bool = False,
        sampler: str = "gibbs",
        n_temperatures: int = 10,
        corruption: str = "mask",
        corruption_level: float = 0.2,
        propagate: str = "probs",
        solver: str = "adam",
        learning_rate_init: float = 0.001,
        lr_schedule: str | None = None,
        momentum: float = 0.9,
        nesterovs_momentum: bool = False,
        alpha: float = 1e-5,
        l1: float = 0.0,
        batch_size: int = 32,
        max_iter: int = 200,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
        maxout_pieces: int = 2,
        clip_grad_norm: float | None = None,
        max_norm: float | None = None,
        freeze_epochs: int = 0,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        monitor: str = "valid_score",
        tol: float = 1e-4,
        shuffle: bool = True,
        warm_start: bool = False,
        random_state=None,
        verbose: int = 0,
        device: str = "cpu",
        checkpoint_dir=None,
        callbacks=None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.pretrain = pretrain
        self.pretrained = pretrained
        self.activation = activation
        self.init = init
        self.visible = visible
        self.n_iter = n_iter
        self.pretrain_learning_rate = pretrain_learning_rate
        self.pretrain_batch_size = pretrain_batch_size
        self.k = k
        self.persistent = persistent
        self.pretrain_momentum = pretrain_momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.centered = centered
        self.sampler = sampler
        self.n_temperatures = n_temperatures
        self.corruption = corruption
        self.corruption_level = corruption_level
        self.propagate = propagate
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.alpha = alpha
        self.l1 = l1
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.batch_norm = batch_norm
        self.maxout_pieces = maxout_pieces
        self.clip_grad_norm = clip_grad_norm
        self.max_norm = max_norm
        self.freeze_epochs = freeze_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.monitor = monitor
        self.tol = tol
        self.shuffle = shuffle
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.callbacks = callbacks

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = self._uses_bernoulli_visible()
        return tags

    def _uses_bernoulli_visible(self) -> bool:
        return self.pretrain is not None and self.pretrained is None and self.visible == "bernoulli"

    # -- hooks for the subclasses ---------------------------------------------------------------
    def _encode_targets(self, y, *, reset: bool, classes=None):  # pragma: no cover - abstract
        """Targets as the network trains on them, and the number of outputs; ``reset`` learns
        the encoding (classes, target scaling), otherwise the fitted one is applied."""
        raise NotImplementedError

    def _output_scaling(self) -> dict:
        """What :func:`dbn.export.fold_scaling` folds into the output layer (the regressor's
        target scaling)."""
        return {}

    # -- fitting --------------------------------------------------------------------------------
    def _validate_X(self, X, *, reset: bool):
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float32, np.float64), reset=reset)
        if self._uses_bernoulli_visible():
            _check_unit_interval(X, self.visible, type(self).__name__)
        return X

    def _pretrained_stack(self, n_features: int):
        source = self.pretrained
        if isinstance(source, DBNTransformer):
            check_is_fitted(source)
            stack = source.stack_
        elif isinstance(source, LayerStack):
            stack = source
        else:
            stack = LayerStack(list(source))
        if stack.sizes[0] != n_features:
            raise ValueError(f"The 'pretrained' stack expects {stack.sizes[0]} input features but X has {n_features}.")
        return stack

    def _fit(self, X, y, *, X_pretrain=None):
        """Pretrain (unless ``pretrain=None``), export and fine-tune on ``(X, y)``.

        The steps are :func:`dbn.recipe.fit`'s (the comparison harness runs the same code);
        ``callbacks`` are called once per fine-tuning epoch. With ``warm_start=True`` and a
        fitted model, fine-tuning continues from it instead (no pretraining; ``history_`` and
        ``n_iter_`` continue).
        """
        self._validate_params()
        warm = self.warm_start and hasattr(self, "network_")
        X, y = self._validate_Xy(X, y, reset=not warm)
        if warm:
            self._finetune_more(X, y, {})
            return self
        return self._fit_new(X, y, X_pretrain=X_pretrain)

    def _validate_Xy(self, X, y, *, reset: bool):
        return validate_data(
            self,
            X,
            y,
            accept_sparse=("csr", "csc", "coo"),
            dtype=(np.float32, np.float64),
            multi_output=self._loss == "mse",
            y_numeric=self._loss == "mse",
            reset=reset,
        )

    def _fit_new(self, X, y, *, X_pretrain=None, classes=None, overrides=None):
        """A model from scratch: pretraining (or a random init), export and fine-tuning."""
        yt_np, n_outputs = self._encode_targets(y, reset=True, classes=classes)  # label errors first
        if self._uses_bernoulli_visible():
            _check_unit_interval(X, self.visible, type(self).__name__)
        device = resolve_device(self.device)
        Xp_np = None if X_pretrain is None else self._validate_X(X_pretrain, reset=False)
        params = _checked_sizes(
            type(self).__name__,
            {**self.get_params(deep=False), **(overrides or {})},
            n_features=X.shape[1],
            n_samples=X.shape[0],
            device=device,
            n_pretrain=X.shape[0] if Xp_np is None else Xp_np.shape[0],
        )
        source = X if Xp_np is None else Xp_np
        self._fit_input_scaling(source, _to_tensor(source, device=device, dtype=torch.float32))
        Xt = self._input_tensor(X, device=device, dtype=torch.float32)
        yt = torch.as_tensor(yt_np, device=device)
        Xp = None if Xp_np is None else self._input_tensor(Xp_np, device=device, dtype=torch.float32)
        stack = None if self.pretrained is None else self._pretrained_stack(Xt.shape[1])
        generator = make_generator(self.random_state, device)
        result = recipe.fit(
            {**params, "visible": self.visible_},
            Xt,
            yt,
            n_outputs=n_outputs,
            generator=generator,
            loss=self._loss,
            X_pretrain=Xp,
            stack=stack,
            callbacks=self.callbacks or (),
            checkpoint_dir=self.checkpoint_dir,
        )
        self._rng_state = generator.get_state()
        self.network_, self.stack_, self.history_ = result.network, result.stack, result.history
        self.pretrain_history_ = [] if result.stack is None else result.stack.histories
        self.pretrain_time_, self.finetune_time_ = result.pretrain_time, result.finetune_time
        self.n_iter_ = len(self.history_)
        self._warn_if_not_converged(self.history_, overrides)
        return self

    def _finetune_more(self, X, y, overrides: dict):
        """Continue fine-tuning the fitted network (``warm_start``, ``partial_fit``)."""
        yt_np, _ = self._encode_targets(y, reset=False)
        device = resolve_device(self.device)
        generator = make_generator(self.random_state, device)
        if getattr(self, "_rng_state", None) is not None and device.type == "cpu":
            generator.set_state(self._rng_state)  # successive calls visit new mini-batch orders
        params = {**self.get_params(deep=False), "visible": self.visible_, "freeze_epochs": 0, **overrides}
        Xt = self._input_tensor(X, device=device, dtype=torch.float32)
        history = recipe.finetune(
            self.network_,
            params,
            Xt,
            torch.as_tensor(yt_np, device=device),
            generator=generator,
            pretrained=False,
            loss=self._loss,
            callbacks=self.callbacks or (),
        )
        self._rng_state = generator.get_state()
        offset = len(self.history_)
        for record in history:
            record["epoch"] += offset
        if history.best_epoch is not None:
            self.history_.best_epoch = history.best_epoch + offset
        self.history_.extend(history)
        self.history_.stopped_early = history.stopped_early
        self.n_iter_ = len(self.history_)
        self._warn_if_not_converged(history, overrides)
        return self

    def _warn_if_not_converged(self, history, overrides) -> None:
        if {**self.get_params(deep=False), **(overrides or {})}["early_stopping"] and not history.stopped_early:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} reached before the validation score "
                f"stopped improving for n_iter_no_change={self.n_iter_no_change} epochs; consider a larger max_iter.",
                ConvergenceWarning,
            )

    #: One pass of fine-tuning, as :meth:`sklearn.neural_network.MLPClassifier.partial_fit`.
    _PARTIAL_FIT = {"max_iter": 1, "early_stopping": False, "freeze_epochs": 0}

    def _partial_fit(self, X, y, classes=None):
        first = not hasattr(self, "network_")
        if first:
            self._validate_params()
        X, y = self._validate_Xy(X, y, reset=first)
        if first:
            return self._fit_new(X, y, classes=classes, overrides=self._PARTIAL_FIT)
        return self._finetune_more(X, y, self._PARTIAL_FIT)

    def _fitted_state(self):
        fitted = {
            "n_outputs": linear_layers(self.network_)[-1].out_features,
            "history": _json_safe(list(self.history_)),
            "history_attrs": _json_safe(
                {k: getattr(self.history_, k) for k in ("best_epoch", "score_name", "monitor", "stopped_early")}
            ),
            "pretrain_history": _json_safe(self.pretrain_history_),
            "pretrain_time": self.pretrain_time_,
            "finetune_time": self.finetune_time_,
            "n_iter": self.n_iter_,
            "classes": _json_safe(self.classes_.tolist()) if hasattr(self, "classes_") else None,
            "y_1d": getattr(self, "_y_1d", None),
            "loss": self._loss,
            "label_dtype": getattr(self, "_label_dtype", None),
            "target_mean": _json_safe(getattr(self, "target_mean_", np.zeros(0)).tolist()),
            "target_scale": _json_safe(getattr(self, "target_scale_", np.zeros(0)).tolist()),
            "layers": None,
            **self._scaling_state(),
        }
        tensors = _prefixed("network", self.network_)
        if self.stack_ is not None:
            fitted["layers"], stack_tensors = _stack_state(self.stack_)
            tensors.update(stack_tensors)
        return fitted, tensors

    def _restore_fitted(self, fitted, tensors, device):
        self.pretrained = None
        n_outputs = fitted["n_outputs"]
        if fitted.get("loss") == "binary_cross_entropy" and isinstance(self, ClassifierMixin):  # multi-label
            self._loss, self._label_dtype = fitted["loss"], np.dtype(fitted["label_dtype"]).str
        if fitted["layers"] is not None:
            self.stack_ = _restore_stack(fitted["layers"], fitted["pretrain_history"], tensors, device)
            net = to_torch(
                self.stack_,
                head="softmax" if self._loss == "cross_entropy" else "linear",
                n_outputs=n_outputs,
                dropout=self.dropout,
                input_dropout=self.input_dropout,
            )
        else:
            self.stack_ = None
            # check the described sizes against the stored weights before allocating anything
            sizes = [self.n_features_in_, *parse_layer_sizes(self.hidden_layer_sizes), n_outputs]
            pieces = self.maxout_pieces if self.activation == "maxout" else 1
            expected = sum(
                a * b * (pieces if i < len(sizes) - 2 else 1)
                for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False))
            )
            stored = sum(t.numel() for k, t in tensors.items() if k.startswith("network.") and t.dim() == 2)
            if expected != stored:
                raise ValueError(
                    f"Damaged model file: the settings describe {expected} weights but the file holds {stored}."
                )
            net = build_mlp(
                self.n_features_in_,
                parse_layer_sizes(self.hidden_layer_sizes),
                n_outputs,
                activation=self.activation,
                init=self.init,
                dropout=self.dropout,
                input_dropout=self.input_dropout,
                batch_norm=self.batch_norm,
                maxout_pieces=self.maxout_pieces,
                device=device,
            )
        _load_state(net, {k: v.to(device) for k, v in tensors.items()}, "network.")
        self.network_ = net.to(device)
        attrs = fitted["history_attrs"]
        self.history_ = History(fitted["history"], score_name=attrs["score_name"], monitor=attrs["monitor"])
        self.history_.best_epoch = attrs["best_epoch"]
        self.history_.stopped_early = attrs["stopped_early"]
        self.pretrain_history_ = fitted["pretrain_history"]
        self.pretrain_time_, self.finetune_time_ = fitted["pretrain_time"], fitted["finetune_time"]
        self.n_iter_ = fitted["n_iter"]
        if fitted["classes"] is not None:
            self.classes_ = np.asarray(fitted["classes"])
        if fitted["y_1d"] is not None:
            self._y_1d = fitted["y_1d"]
        if fitted.get("target_mean"):
            self.target_mean_ = np.asarray(fitted["target_mean"], dtype=np.float64)
            self.target_scale_ = np.asarray(fitted["target_scale"], dtype=np.float64)
        self._restore_scaling(fitted)

    def _forward(self, X) -> torch.Tensor:
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        Xt = self._input_tensor(X, device=resolve_device(self.device), dtype=torch.float32)
        with fit_threads(batch_work(min(Xt.shape[0], 1000), self.network_), Xt.device):  # predict_logits' batches
            return predict_logits(self.network_, Xt)

    def to_torch(self) -> torch.nn.Sequential:
        """The fine-tuned network, a plain ``torch.nn.Sequential`` (a deep copy) taking raw inputs.

        The standardisation of Gaussian visible units (and the regressor's target scaling)
        is folded into the first (and last) layer: :func:`dbn.export.fold_scaling`. The
        classifier's network outputs logits: ``torch.softmax(out, dim=1)`` gives the class
        probabilities, and for a multi-label classifier ``torch.sigmoid(out)`` the probability
        of each label (a label is predicted where it exceeds 0.5).
        """
        check_is_fitted(self)
        return self._fold(copy.deepcopy(self.network_), **self._output_scaling())


class DBNClassifier(ClassifierMixin, _DeepNetwork):
    """Deep network classifier: greedy pretraining (or random init), then backprop fine-tuning.

    A pretrained sigmoid DBN and a random-init ReLU network are the same estimator with
    different parameters (``pretrain="rbm"`` vs ``pretrain=None, activation="relu",
    init="he"``). Fine-tuning parameter names follow :class:`sklearn.neural_network.MLPClassifier`
    where the meaning is the same (``solver``, ``learning_rate_init``, ``alpha`` = L2 penalty,
    ``batch_size``, ``max_iter`` = fine-tuning epochs, ``momentum``, ``nesterovs_momentum``,
    ``early_stopping``, ``validation_fraction``, ``n_iter_no_change``, ``tol``, ``shuffle``);
    pretraining parameters follow :class:`RBMTransformer` (``n_iter`` = epochs per layer,
    ``weight_decay`` = the RBMs' weight cost).

    Multi-label classification works as in MLPClassifier: a ``y`` of shape
    ``(n_samples, n_labels)`` holding a binary indicator matrix gives the network one sigmoid
    output per label, trained on the mean binary cross-entropy (computed on the logits, so it
    is stable); :meth:`predict` returns the indicator matrix of the labels whose probability
    exceeds 0.5, :meth:`predict_proba` each label's probability, ``classes_`` is
    ``arange(n_labels)``, and :meth:`score` and early stopping's validation score are the
    subset accuracy (the fraction of samples whose labels are all right). Multiclass-multioutput
    targets (a 2-D ``y`` with other values than 0 and 1) are refused.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256, 256)
    pretrain : {"rbm", "dae"} or None, default="rbm"
        Layer-wise pretraining by RBMs (a DBN), denoising autoencoders, or none (random init).
    pretrained : DBNTransformer, LayerStack or list of layers, optional
        Fine-tune layers pretrained elsewhere (e.g. on another dataset) instead of pretraining.
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "maxout"}, default="sigmoid"
        Hidden units of a random-init network (pretrained networks are sigmoid).
    init : {"normal", "xavier", "he"}, default="normal"
        Random initialisation: N(0, 0.01), Glorot uniform, He normal.
    visible : {"auto", "bernoulli", "gaussian"}, default="auto"
        First-layer visible units for pretraining. ``"auto"``: Bernoulli units for data in
        [0, 1], Gaussian ones otherwise (the choice is in ``visible_``). Gaussian units (and a
        random-init network's inputs when they are not in [0, 1]) see the data standardised
        (``input_mean_``, ``input_scale_``, learned at fit, applied at predict and folded into
        the first layer of :meth:`to_torch`), so any real-valued data works unscaled.
    n_iter : int or tuple of int, default=20
        Pretraining epochs per layer (20 beat 10 on digits in ``benchmarks/bench_defaults.py``).
    pretrain_learning_rate : float, tuple or "auto", default="auto"
        ``"auto"``: 0.1 per layer, 0.01 for a first layer of Gaussian visible units (stable on
        unit-variance data; Hinton's guide): :data:`dbn.recipe.AUTO_PRETRAIN_LEARNING_RATES`.
    pretrain_batch_size : int or None, default=None
        Defaults to ``batch_size``.
    k, persistent, pretrain_momentum, weight_decay, sparsity_target, sparsity_cost, centered, sampler, n_temperatures
        RBM training options (see :class:`RBMTransformer`); ``pretrain_momentum`` defaults to
        ``"hinton"`` and ``weight_decay`` to 2e-4.
    corruption, corruption_level
        Denoising-autoencoder options.
    propagate : {"probs", "samples"}, default="probs"
    solver : {"sgd", "adam", "rmsprop", "adagrad", "adadelta", "lbfgs"}, default="adam"
        ``"lbfgs"`` (a few L-BFGS iterations with line searches per mini-batch, see
        :func:`dbn.fit_network`) wants ``learning_rate_init=1.0`` and large batches.
        The defaults (Adam at 1e-3, mini-batches of 32, 200 epochs) were chosen from
        ``benchmarks/bench_defaults.py``: at least as accurate as scikit-learn's
        ``MLPClassifier()`` on digits, iris, wine and breast cancer.
    learning_rate_init : float, default=0.001
    lr_schedule : {"constant", "step", "exponential", "cosine"} or None, default=None
    momentum : float, default=0.9
        SGD / RMSprop momentum.
    nesterovs_momentum : bool, default=False
    alpha : float, default=1e-5
        L2 penalty of fine-tuning. The small default (scikit-learn's MLPs use 1e-4) was chosen
        with ``benchmarks/bench_defaults.py``: 1e-5 kept every dataset of its table at or above
        ``MLPClassifier()`` / ``MLPRegressor()``, 0 missed breast cancer and 1e-4 digits.
    l1 : float, default=0.0
        L1 penalty of fine-tuning.
    batch_size : int, default=32
        Mini-batch size of fine-tuning (and of pretraining unless ``pretrain_batch_size``).
    max_iter : int, default=200
        Fine-tuning epochs.
    dropout, input_dropout : float, default=0.0
        Dropout on hidden layers and on the input during fine-tuning.
    batch_norm : bool, default=False
        Batch normalisation after each hidden linear layer (random-init networks).
    maxout_pieces : int, default=2
    clip_grad_norm, max_norm : float or None
        Gradient-norm clipping; max-norm constraint on hidden weights.
    freeze_epochs : int, default=0
        Epochs that first train only the output layer of a pretrained network.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop after ``n_iter_no_change``
        epochs without improvement, restoring the best weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    monitor : {"valid_score", "valid_loss"}, default="valid_score"
        What early stopping watches on the held-out data: the score (accuracy for the
        classifier, R^2 for the regressor, as scikit-learn's MLP estimators) or the loss.
        With the score, the loss breaks ties (training goes on while the score sits on a
        plateau and the loss still falls). ``history_.best_epoch`` follows the same quantity.
    tol : float, default=1e-4
    shuffle : bool, default=True
    warm_start : bool, default=False
        A second :meth:`fit` continues fine-tuning the fitted network for ``max_iter`` epochs
        (no new pretraining; ``history_`` and ``n_iter_`` continue), as MLPClassifier's.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    device : str, default="cpu"
    checkpoint_dir : str, path-like or None, default=None
        Directory for per-epoch checkpoints. Each fit keeps its state in a subdirectory named
        by a fingerprint of its data (a hash of the bytes of ``X``, ``y`` and ``X_pretrain``),
        its settings and its ``random_state`` (:func:`dbn.recipe.run_directory`): pretraining
        in ``pretrain``, fine-tuning in ``finetune`` (and ``finetune_freeze`` for the
        ``freeze_epochs`` phase). Clones that share the directory in cross-validation or a
        grid search therefore never read each other's state. A rerun of ``fit`` on the same
        data with the same settings and an int ``random_state`` resumes where an interrupted
        one stopped and, on the CPU, ends with the same model as an uninterrupted run (with
        ``random_state=None`` every fit starts afresh). Fits that differ only in ``max_iter``
        share their state: a larger ``max_iter`` continues a finished run for the extra
        epochs (except with ``lr_schedule="cosine"``, whose rates depend on it), a smaller
        one than already trained raises ``ValueError``.
    callbacks : list of callables or None, default=None
        Called as ``callback(network, record)`` once per fine-tuning epoch (the
        ``freeze_epochs`` epochs included), with the fine-tuned ``torch.nn.Module`` and that
        epoch's record (the dict that lands in ``history_``; a callback may add keys to it).
        Returning ``True`` stops fine-tuning after that epoch. This is the contract of
        :func:`dbn.training.fit_network`'s ``callbacks``. Like any parameter, ``clone`` (and so
        ``GridSearchCV``) deep-copies them: a stateful callback object records into its copy.
        ``save`` does not store them: a loaded estimator has ``callbacks=None``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels; ``arange(n_labels)`` (the columns of ``y``) for a multi-label model.
    network_ : torch.nn.Sequential
        The fine-tuned network (outputs logits).
    stack_ : LayerStack or None
        The pretrained layers (before fine-tuning); None for random init.
    history_ : dbn.training.History
        Fine-tuning records per epoch.
    pretrain_history_ : list of list of dict
    pretrain_time_, finetune_time_ : float
        Seconds spent pretraining (and building) and fine-tuning.
    n_iter_ : int
        Fine-tuning epochs run.
    visible_ : {"bernoulli", "gaussian"}
        The input's unit type (``visible`` with "auto" resolved).
    input_mean_, input_scale_ : ndarray of shape (n_features,) or None
        The input standardisation (None when the inputs are used as they are).
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from dbn import DBNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = DBNClassifier((32,), n_iter=2, max_iter=5, random_state=0).fit(X[:500] / 16, y[:500])
    >>> clf.predict(X[:3] / 16).shape
    (3,)

    A callback sees every fine-tuning epoch's record; returning True stops:

    >>> losses = []
    >>> def watch(network, record):
    ...     losses.append(record["train_loss"])
    ...     return record["epoch"] == 3
    >>> clf = DBNClassifier((32,), n_iter=2, max_iter=5, random_state=0, callbacks=[watch])
    >>> len(losses), clf.fit(X[:500] / 16, y[:500]).n_iter_, len(losses)
    (0, 3, 3)
    """

    #: Softmax cross-entropy; a fit on multi-label y sets the instance's to "binary_cross_entropy"
    #: (one sigmoid per label) in :meth:`_encode_targets`.
    _loss: Loss = "cross_entropy"

    @property
    def _multilabel(self) -> bool:
        return self._loss == "binary_cross_entropy"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True
        return tags

    def _validate_Xy(self, X, y, *, reset: bool):
        """As the base class for 1-D ``y``; a 2-D ``y`` of several columns is multi-label."""
        multilabel = _is_label_matrix(y)
        if not reset and multilabel != self._multilabel:
            fitted, given = ("single-label", "multi-label") if multilabel else ("multi-label", "single-label")
            raise ValueError(
                f"{type(self).__name__} was fitted on {fitted} y but this y is {given}; "
                "fit a new model (warm_start=False) to change the kind of target."
            )
        if not multilabel:
            X, y = super()._validate_Xy(X, y, reset=reset)
        else:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse=("csr", "csc", "coo"),
                dtype=(np.float32, np.float64),
                multi_output=True,
                reset=reset,
            )
            y = self._check_indicator(y.toarray() if sp.issparse(y) else y)
        return X, y

    def _check_indicator(self, y):
        """``y`` if it is a binary indicator matrix, else a ValueError naming the fix."""
        from sklearn.utils.multiclass import (
            check_classification_targets,
            type_of_target,
        )

        check_classification_targets(y)  # "Unknown label type" for continuous targets
        kind = type_of_target(y)
        values = np.unique(y).tolist()
        if kind != "multilabel-indicator" or not set(values) <= {0, 1}:
            what = f"{kind} is not supported" if kind != "multilabel-indicator" else f"y has the values {values}"
            raise ValueError(
                f"{type(self).__name__} takes a 2-D y only as a binary indicator matrix (multi-label "
                f"classification: 0 or 1 for each label); {what}. Turn label sets into an indicator "
                "matrix with sklearn.preprocessing.MultiLabelBinarizer, or fit one classifier per output "
                "with sklearn.multioutput.MultiOutputClassifier."
            )
        return y

    def _encode_indicator(self, y, *, reset: bool, classes=None):
        """Multi-label targets: a binary indicator matrix -> float 0/1 targets, one output per label."""
        n_labels = y.shape[1]
        if reset:
            if classes is not None and not np.array_equal(np.asarray(classes), np.arange(n_labels)):
                raise ValueError(
                    f"{type(self).__name__}: with multi-label y, 'classes' must be None or "
                    f"range({n_labels}) (the label columns). Got {np.asarray(classes).tolist()}."
                )
            self.classes_ = np.arange(n_labels)  # as MLPClassifier's (its LabelBinarizer's)
            self._label_dtype, self._loss = y.dtype.str, "binary_cross_entropy"
        elif n_labels != len(self.classes_):
            raise ValueError(f"{type(self).__name__} was fitted on {len(self.classes_)} labels; y has {n_labels}.")
        return y.astype(np.float32), n_labels

    def _encode_targets(self, y, *, reset: bool, classes=None):
        from sklearn.utils.multiclass import check_classification_targets

        if y.ndim == 2:  # _validate_Xy leaves only multi-label y 2-D
            return self._encode_indicator(y, reset=reset, classes=classes)
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else classes)
            self._loss = "cross_entropy"  # once y is accepted (a refused y leaves a fitted model as it was)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"{type(self).__name__}: y has labels {unknown.tolist()} not in classes_ "
                f"{self.classes_.tolist()}; pass every class in 'classes' on the first partial_fit call."
            )
        return np.searchsorted(self.classes_, y).astype(np.int64), len(self.classes_)

    def fit(self, X, y, *, X_pretrain=None):
        """Pretrain (unless ``pretrain=None``), export and fine-tune on ``(X, y)``.

        The steps are :func:`dbn.recipe.fit`'s (the comparison harness runs the same code);
        ``callbacks`` are called once per fine-tuning epoch. With ``warm_start=True`` and a
        fitted model, fine-tuning continues from the fitted network for ``max_iter`` epochs
        (no pretraining; ``history_`` and ``n_iter_`` continue; the classes must be known).
        ``sample_weight`` is not supported.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or {array-like, sparse matrix} of shape (n_samples, n_labels)
            Class labels, or a binary indicator matrix for multi-label classification (one
            sigmoid output per label, trained on the binary cross-entropy, as MLPClassifier's).
        X_pretrain : {array-like, sparse matrix} of shape (n_unlabelled, n_features), optional
            Data for the unsupervised pretraining (e.g. a larger unlabelled set, or another
            dataset); defaults to ``X``.

        Returns
        -------
        self : DBNClassifier
        """
        return self._fit(X, y, X_pretrain=X_pretrain)

    def partial_fit(self, X, y, classes=None):
        """One epoch of fine-tuning on ``(X, y)``, as :meth:`sklearn.neural_network.MLPClassifier.partial_fit`.

        The first call builds the network as :meth:`fit` does (pretraining on this ``X``
        included) and needs ``classes`` (except for multi-label ``y``); later calls continue
        fine-tuning.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a binary indicator matrix (multi-label).
        classes : array-like of shape (n_classes,), optional
            Every class of the problem; required on the first call. With multi-label ``y``
            it may be omitted (the labels are the columns of ``y``: ``range(n_labels)``).

        Returns
        -------
        self : DBNClassifier

        Examples
        --------
        >>> import numpy as np
        >>> from dbn import DBNClassifier
        >>> X = np.random.RandomState(0).rand(60, 4)
        >>> y = (X[:, 0] > 0.5).astype(int)
        >>> clf = DBNClassifier((8,), n_iter=1, random_state=0)
        >>> clf.partial_fit(X[:30], y[:30], classes=[0, 1]).partial_fit(X[30:], y[30:]).n_iter_
        2
        """
        if not hasattr(self, "network_") and classes is None and not _is_label_matrix(y):
            raise ValueError(f"{type(self).__name__}.partial_fit needs 'classes' on its first call.")
        return self._partial_fit(X, y, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's outputs), or for a multi-label model
        each label's probability (a sigmoid per output; the rows need not sum to 1).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or (n_samples, n_labels)
        """
        logits = self._forward(X)
        if self._multilabel:
            return _to_numpy(torch.sigmoid(logits)).astype(np.float64)
        return _to_numpy(torch.softmax(logits, dim=1)).astype(np.float64)

    def predict_log_proba(self, X):
        """Log class probabilities (of each label for a multi-label model)."""
        logits = self._forward(X)
        if self._multilabel:
            return _to_numpy(torch.nn.functional.logsigmoid(logits)).astype(np.float64)
        return _to_numpy(torch.log_softmax(logits, dim=1)).astype(np.float64)

    def predict(self, X):
        """Predicted class labels, or for a multi-label model the indicator matrix of the
        labels whose probability exceeds 0.5 (in the dtype of the ``y`` it was fitted on).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)

        Examples
        --------
        >>> import numpy as np
        >>> from dbn import DBNClassifier
        >>> X = np.random.RandomState(0).rand(60, 4)
        >>> Y = np.c_[X[:, 0] > 0.5, X[:, 1] > 0.5].astype(int)  # two labels per sample
        >>> clf = DBNClassifier((8,), n_iter=1, max_iter=5, random_state=0).fit(X, Y)
        >>> clf.predict(X[:3]).shape, clf.predict_proba(X[:3]).shape, clf.classes_
        ((3, 2), (3, 2), array([0, 1]))
        """
        logits = self._forward(X)  # checks that the model is fitted
        if self._multilabel:
            return (_to_numpy(torch.sigmoid(logits)).astype(np.float64) > 0.5).astype(self._label_dtype)
        return self.classes_[_to_numpy(logits.argmax(dim=1))]


class DBNRegressor(RegressorMixin, _DeepNetwork):
    """Deep network regressor: greedy pretraining (or random init), then fine-tuning on squared error.

    Takes the parameters of :class:`DBNClassifier`; the output layer is linear and the loss
    the mean squared error. Targets of shape ``(n_samples,)`` or ``(n_samples, n_targets)``,
    standardised internally (``target_mean_``, ``target_scale_``; :meth:`predict` and
    :meth:`to_torch` give raw targets), so defaults work on targets of any scale.

    Attributes
    ----------
    target_mean_, target_scale_ : ndarray of shape (n_targets,)
    visible_, input_mean_, input_scale_
        As :class:`DBNClassifier`'s.
    network_ : torch.nn.Sequential
        Predicts standardised targets from standardised inputs (see :meth:`to_torch`).
    stack_ : LayerStack or None
    history_ : dbn.training.History
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from dbn import DBNRegressor
    >>> X = np.random.RandomState(0).rand(200, 4)
    >>> y = X.sum(axis=1)
    >>> reg = DBNRegressor((16,), pretrain=None, activation="relu", init="he", max_iter=20,
    ...                    learning_rate_init=0.01, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    _loss: Loss = "mse"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y, *, reset: bool, classes=None):
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if reset:
            self._y_1d = y2.shape[1] == 1  # like MLPRegressor: one target -> predictions of shape (n,)
            self.target_mean_, self.target_scale_ = _standardisation(y2)
        elif y2.shape[1] != self.target_mean_.shape[0]:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.target_mean_.shape[0]} targets; y has {y2.shape[1]}."
            )
        return ((y2 - self.target_mean_) / self.target_scale_).astype(np.float32), y2.shape[1]

    def _output_scaling(self) -> dict:
        return {"output_mean": torch.as_tensor(self.target_mean_), "output_scale": torch.as_tensor(self.target_scale_)}

    def fit(self, X, y, *, X_pretrain=None):
        """Pretrain (unless ``pretrain=None``), export and fine-tune on ``(X, y)``.

        As :meth:`DBNClassifier.fit`; the network learns the standardised targets
        (``target_mean_``, ``target_scale_``), and :meth:`predict` and :meth:`to_torch`
        give them back on their own scale. ``sample_weight`` is not supported.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        X_pretrain : {array-like, sparse matrix} of shape (n_unlabelled, n_features), optional

        Returns
        -------
        self : DBNRegressor
        """
        return self._fit(X, y, X_pretrain=X_pretrain)

    def partial_fit(self, X, y):
        """One epoch of fine-tuning on ``(X, y)``, as :meth:`sklearn.neural_network.MLPRegressor.partial_fit`.

        The first call builds the network as :meth:`fit` does (pretraining and the target
        scaling learned on this batch); later calls continue fine-tuning.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self : DBNRegressor

        Examples
        --------
        >>> import numpy as np
        >>> from dbn import DBNRegressor
        >>> X = np.random.RandomState(0).rand(60, 4)
        >>> reg = DBNRegressor((8,), n_iter=1, random_state=0).partial_fit(X, X.sum(1))
        >>> reg.partial_fit(X, X.sum(1)).n_iter_
        2
        """
        return self._partial_fit(X, y)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        out = _to_numpy(self._forward(X)).astype(np.float64) * self.target_scale_ + self.target_mean_
        return out.ravel() if self._y_1d else out
