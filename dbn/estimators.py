"""scikit-learn estimators.

This is the only module of the core that imports scikit-learn, and the one place where data
cross between numpy/scipy/pandas and torch.
"""

from __future__ import annotations

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

from ._random import make_generator, resolve_device
from .rbm import RBM, CDTrainer

__all__ = ["RBMTransformer", "DBNTransformer", "DBNClassifier", "DBNRegressor"]


# -- the numpy <-> torch boundary --------------------------------------------------------------
def _to_tensor(X, *, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Validated numpy/scipy array -> tensor on ``device`` (no copy for dense CPU input)."""
    if sp.issparse(X):
        X = X.toarray()
    with warnings.catch_warnings():
        # read-only arrays (e.g. memory-mapped by joblib) are never written to here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.as_tensor(np.ascontiguousarray(X))
    return t.to(device=device, dtype=dtype or t.dtype)


def _to_numpy(t: torch.Tensor, dtype=None) -> np.ndarray:
    out = t.detach().cpu().numpy()
    return out if dtype is None else out.astype(dtype, copy=False)


def _check_unit_interval(X, visible: str, estimator: str) -> None:
    if visible != "bernoulli":
        return
    data = X.data if sp.issparse(X) else X
    if data.size and (data.min() < 0 or data.max() > 1):
        raise ValueError(
            f"{estimator} with visible='bernoulli' needs X in [0, 1]; got values in "
            f"[{data.min():.4g}, {data.max():.4g}]. Scale X (e.g. sklearn.preprocessing.MinMaxScaler) "
            "or use visible='gaussian' on standardised data."
        )


# -- saving and loading: JSON settings + tensors, read with weights_only=True ----------------------
def _json_safe(value):
    if isinstance(value, (tuple, list)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.device):
        return str(value)
    return None  # RandomState/Generator instances and fitted objects are not stored


def _from_json_param(name: str, value):
    return tuple(value) if isinstance(value, list) else value


class _PersistenceMixin:
    """``save(path)`` / ``load(path)`` in a format that runs no code on load (see :mod:`dbn.io`)."""

    def _fitted_state(self) -> tuple[dict, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restore_fitted(self, config: dict, tensors: dict, device) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path) -> "Path":
        """Save the fitted estimator to ``path`` (settings as JSON, weights as tensors).

        Loading never runs code from the file (``torch.load(weights_only=True)``); the file
        carries a format version. Writes are atomic.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        pathlib.Path
        """
        from .io import write_archive

        check_is_fitted(self)
        fitted, tensors = self._fitted_state()
        config = {"class": type(self).__name__, "params": _json_safe(self.get_params(deep=False)),
                  "n_features_in_": int(self.n_features_in_),
                  "feature_names_in_": _json_safe(list(getattr(self, "feature_names_in_", []))) or None,
                  "fitted": fitted}
        return write_archive(path, type(self).__name__, config, tensors)

    @classmethod
    def load(cls, path, *, device=None):
        """Load an estimator saved by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        device : str, optional
            Where to put the model; defaults to the saved ``device`` setting if usable, else the CPU.

        Returns
        -------
        estimator

        Raises
        ------
        ValueError
            For a corrupt, truncated or foreign file, a newer format version, or a file holding
            another estimator class.
        """
        from .io import read_archive

        config, tensors, _ = read_archive(path, kind=cls.__name__)
        try:
            params = {k: _from_json_param(k, v) for k, v in config["params"].items()}
            if device is not None:
                params["device"] = device
            elif params.get("device", "cpu") != "cpu" and not torch.cuda.is_available():
                params["device"] = "cpu"
            est = cls(**params)
            est.n_features_in_ = int(config["n_features_in_"])
            if config.get("feature_names_in_"):
                est.feature_names_in_ = np.asarray(config["feature_names_in_"], dtype=object)
            est._restore_fitted(config["fitted"], tensors, resolve_device(est.device))
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"{str(path)!r} is a damaged {cls.__name__} model file: {exc!r}") from exc
        return est


def _prefixed(prefix: str, module: torch.nn.Module) -> dict:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _stack_state(stack) -> tuple[list, dict]:
    from .io import layer_config

    return [layer_config(layer) for layer in stack.layers], _prefixed("stack", stack)


def _restore_stack(layer_configs: list, histories, tensors: dict, device):
    from .io import _load_state, layer_from_config
    from .stack import LayerStack

    stack = LayerStack([layer_from_config(c, device, stored_weight=tensors.get(f"stack.layers.{i}.weight"))
                        for i, c in enumerate(layer_configs)])
    _load_state(stack, {k: v.to(device) for k, v in tensors.items()}, "stack.")
    stack.histories = histories
    return stack



class _ParameterView:
    """Fitted attribute mapping to a parameter of ``rbm_``: read as numpy, assignment copies in."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return _to_numpy(getattr(obj.rbm_, self.name))  # AttributeError while unfitted

    def __set__(self, obj, value) -> None:
        with torch.no_grad():
            getattr(obj.rbm_, self.name).copy_(torch.as_tensor(np.asarray(value)))


class _LayerTransformerTags:
    """Tags shared by the unsupervised transformers: sparse input, dtype kept, and
    non-negative data required by Bernoulli visible units."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = self.visible == "bernoulli"
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


_MOMENTUM_CONSTRAINTS = [Interval(Real, 0, 1, closed="left"), StrOptions({"hinton"}), tuple]


class RBMTransformer(
    _PersistenceMixin, _LayerTransformerTags, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Restricted Boltzmann machine feature extractor, trained by contrastive divergence.

    A drop-in replacement for :class:`sklearn.neural_network.BernoulliRBM` (same parameter
    names and meanings, same fitted attributes) that runs on PyTorch (CPU or CUDA) and adds
    Gaussian visible units, CD-k and PCD-k, momentum, weight decay, a sparsity target,
    shuffled mini-batches, per-epoch monitoring and an exact pseudo-likelihood.

    Parameters
    ----------
    n_components : int, default=256
        Number of hidden units.
    learning_rate : float, default=0.1
        Learning rate of the weight updates.
    batch_size : int, default=10
        Examples per mini-batch.
    n_iter : int, default=10
        Number of epochs (passes over the training set).
    verbose : int, default=0
        Show a progress bar with the per-epoch monitors.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, mini-batch order and sampling (through one
        ``torch.Generator``). An int gives the same model on every CPU run.
    visible : {"bernoulli", "gaussian"}, default="bernoulli"
        Visible units: binary for data in [0, 1], unit-variance Gaussian for standardised data.
    k : int, default=1
        Gibbs steps per update.
    persistent : bool, default=True
        Persistent CD (as ``BernoulliRBM``) if True, plain CD-k if False.
    momentum : float, "hinton" or (start, end, switch_epoch), default=0.0
        Momentum of the updates; ``"hinton"`` is 0.5 for five epochs, then 0.9.
    weight_decay : float, default=0.0
        L2 penalty on the weights (Hinton's "weight cost"; 2e-4 in his code).
    sparsity_target : float or None, default=None
        Target mean activation of the hidden units; None disables the sparsity penalty.
    sparsity_cost : float, default=0.0
        Strength of the sparsity penalty.
    shuffle : bool, default=True
        Visit mini-batches in a new random order every epoch.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Weight matrix (a numpy view of ``rbm_.weight`` on the CPU).
    intercept_hidden_ : ndarray of shape (n_components,)
    intercept_visible_ : ndarray of shape (n_features,)
    rbm_ : dbn.RBM
        The fitted PyTorch module.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when X has feature names that are all strings.
    history_ : list of dict
        Per-epoch monitors: ``reconstruction_error``, ``pseudo_likelihood`` (stochastic, per
        sample), ``pseudo_likelihood_per_unit``, ``time``, ``learning_rate``, ``momentum``.

    See Also
    --------
    dbn.RBM : the underlying module.
    dbn.rbm.train_rbm : the training function.

    Notes
    -----
    Float32 input trains a float32 model (about twice as fast as float64); float64 input a
    float64 model; integer input becomes float64. Outputs keep the model's dtype. Sparse input
    is densified once.

    Examples
    --------
    >>> import numpy as np
    >>> from dbn import RBMTransformer
    >>> X = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float32)
    >>> model = RBMTransformer(n_components=2, n_iter=5, random_state=0).fit(X)
    >>> model.transform(X).shape
    (4, 2)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state", torch.Generator],
        "visible": [StrOptions({"bernoulli", "gaussian"})],
        "k": [Interval(Integral, 1, None, closed="left")],
        "persistent": ["boolean"],
        "momentum": _MOMENTUM_CONSTRAINTS,
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "sparsity_target": [Interval(Real, 0, 1, closed="neither"), None],
        "sparsity_cost": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "device": [str, torch.device],
    }

    def __init__(
        self,
        n_components: int = 256,
        *,
        learning_rate: float = 0.1,
        batch_size: int = 10,
        n_iter: int = 10,
        verbose: int = 0,
        random_state=None,
        visible: str = "bernoulli",
        k: int = 1,
        persistent: bool = True,
        momentum=0.0,
        weight_decay: float = 0.0,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        shuffle: bool = True,
        device: str = "cpu",
    ) -> None:
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.visible = visible
        self.k = k
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.shuffle = shuffle
        self.device = device

    # -- fitted views ------------------------------------------------------------------------
    # numpy views of the fitted module's parameters, readable and writable like BernoulliRBM's
    components_ = _ParameterView("weight")
    intercept_hidden_ = _ParameterView("hidden_bias")
    intercept_visible_ = _ParameterView("visible_bias")

    @property
    def _n_features_out(self) -> int:
        return self.rbm_.n_hidden

    # -- fitting -------------------------------------------------------------------------------
    def _validate(self, X, *, reset: bool):
        X = validate_data(
            self, X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float64, np.float32), reset=reset
        )
        _check_unit_interval(X, self.visible, type(self).__name__)
        return X

    def _initialise(self, X, Xt: torch.Tensor) -> None:
        device = resolve_device(self.device)
        self._generator = make_generator(self.random_state, device)
        self.rbm_ = RBM(
            X.shape[1], self.n_components, visible=self.visible, generator=self._generator,
            device=device, dtype=Xt.dtype,
        )
        self.rbm_.init_visible_bias_(Xt)
        self._initialise_trainer(device)

    def _initialise_trainer(self, device) -> None:
        if not hasattr(self, "_generator"):
            self._generator = make_generator(self.random_state, device)
        self._trainer = CDTrainer(
            self.rbm_,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            k=self.k,
            persistent=self.persistent,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            sparsity_target=self.sparsity_target,
            sparsity_cost=self.sparsity_cost,
            shuffle=self.shuffle,
            generator=self._generator,
        )
        self.history_ = self._trainer.history

    def _tensor(self, X) -> torch.Tensor:
        dtype = self.rbm_.weight.dtype if hasattr(self, "rbm_") else None
        return _to_tensor(X, device=resolve_device(self.device), dtype=dtype)

    def fit(self, X, y=None):
        """Fit the model to ``X`` by contrastive divergence.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data, in [0, 1] for Bernoulli visible units.
        y : Ignored

        Returns
        -------
        self : RBMTransformer
        """
        self._validate_params()
        X = self._validate(X, reset=True)
        Xt = _to_tensor(X, device=resolve_device(self.device))
        self._initialise(X, Xt)
        self._trainer.fit(Xt, self.n_iter, verbose=bool(self.verbose), description=type(self).__name__)
        return self

    def partial_fit(self, X, y=None):
        """Train on ``X`` for one pass in mini-batches of ``batch_size``, keeping all state.

        Unlike ``BernoulliRBM.partial_fit`` this splits ``X`` into mini-batches, continues the
        momentum and persistent chains across calls, and returns ``self``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : RBMTransformer
        """
        first = not hasattr(self, "rbm_")
        if first:
            self._validate_params()
        X = self._validate(X, reset=first)
        if first:
            Xt = _to_tensor(X, device=resolve_device(self.device))
            self._initialise(X, Xt)
        else:
            Xt = self._tensor(X)
        self._trainer.partial_fit(Xt)
        return self


    # -- persistence ---------------------------------------------------------------------------
    def _fitted_state(self):
        from .io import layer_config

        state = self._trainer.state_dict()
        tensors = _prefixed("rbm", self.rbm_)
        tensors.update({f"trainer.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
        fitted = {"rbm": layer_config(self.rbm_), "epoch": state["epoch"], "history": _json_safe(state["history"])}
        return fitted, tensors

    def _restore_fitted(self, fitted, tensors, device):
        from .io import _load_state, layer_from_config

        rbm = layer_from_config(fitted["rbm"], device, stored_weight=tensors.get("rbm.weight"))
        _load_state(rbm, tensors, "rbm.")
        self.rbm_ = rbm
        # the trainer resumes where it stopped: momentum, persistent chains, sparsity estimate, RNG
        self._initialise_trainer(device)
        state = {k[len("trainer."):]: v for k, v in tensors.items() if k.startswith("trainer.")}
        state.update(epoch=fitted["epoch"], history=fitted["history"])
        if device.type != "cpu":
            state["generator"] = None  # a CPU generator state does not transfer to another device
        self._trainer.load_state_dict(state)

    # -- inference -----------------------------------------------------------------------------
    def _check_input(self, X) -> torch.Tensor:
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return self._tensor(X)

    @torch.no_grad()
    def transform(self, X):
        """Hidden-unit probabilities ``p(h = 1 | v)``: the learned features.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        h : ndarray of shape (n_samples, n_components)
        """
        Xt = self._check_input(X)  # checks that the model is fitted before touching rbm_
        return _to_numpy(self.rbm_.hidden_probs(Xt))

    @torch.no_grad()
    def gibbs(self, v):
        """One Gibbs step ``v -> h -> v`` from ``v``; returns the visible sample.

        Parameters
        ----------
        v : array-like of shape (n_samples, n_features)

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
        """
        vt = self._check_input(v)
        return _to_numpy(self.rbm_.gibbs(vt, 1, self._generator))

    @torch.no_grad()
    def score_samples(self, X, *, exact: bool = False, per_unit: bool = False):
        """Log pseudo-likelihood of each sample (Bernoulli visible units).

        For Gaussian visible units the pseudo-likelihood has no closed form; the score is then
        the unnormalised log-density ``-F(v)`` (the log-likelihood up to the constant ``log Z``),
        which ranks samples within one model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        exact : bool, default=False
            False: ``BernoulliRBM``'s stochastic estimate (one random unit flipped per sample,
            scaled by ``n_features``), drawn from ``random_state``. True: the exact sum over all
            units, deterministic.
        per_unit : bool, default=False
            Divide by ``n_features`` so that scores compare across input sizes.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        Xt = self._check_input(X)
        if self.rbm_.visible != "bernoulli":
            scores = -self.rbm_.free_energy(Xt)
            return _to_numpy(scores / Xt.shape[1] if per_unit else scores)
        g = make_generator(self.random_state, Xt.device)
        return _to_numpy(self.rbm_.pseudo_likelihood(Xt, exact=exact, per_unit=per_unit, generator=g))

    @torch.no_grad()
    def score(self, X, y=None, *, method: str = "pseudo_likelihood", log_z: float | None = None,
              n_chains: int = 100, n_betas: int | None = None):
        """Mean score of the samples in ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : Ignored
        method : {"pseudo_likelihood", "exact_pseudo_likelihood", "log_likelihood"}, default="pseudo_likelihood"
            The cheap stochastic pseudo-likelihood (as ``score_samples``), its exact version, or
            the log-likelihood ``-F(v) - log Z``. For the last, ``log Z`` is computed exactly when
            the smaller layer has at most 20 units, by annealed importance sampling otherwise
            (``n_chains`` runs, ``n_betas`` temperatures, the base rate fitted to ``X``), unless
            ``log_z`` is given. The AIS estimate is cached in ``log_z_``.
        log_z : float, optional
            A known log partition function.

        Returns
        -------
        float
        """
        if method == "pseudo_likelihood":
            return float(np.mean(self.score_samples(X)))
        if method == "exact_pseudo_likelihood":
            return float(np.mean(self.score_samples(X, exact=True)))
        if method != "log_likelihood":
            raise ValueError(
                "The 'method' parameter must be one of ('pseudo_likelihood', 'exact_pseudo_likelihood', "
                f"'log_likelihood'). Got {method!r} instead."
            )
        from .likelihood import ais_log_partition, exact_log_partition

        Xt = self._check_input(X)
        if log_z is None:
            if min(self.rbm_.n_visible, self.rbm_.n_hidden) <= 20 or (
                self.rbm_.visible == "gaussian" and self.rbm_.n_hidden <= 20
            ):
                log_z = exact_log_partition(self.rbm_)
            else:
                result = ais_log_partition(self.rbm_, n_chains=n_chains, n_betas=n_betas, base_rate=Xt,
                                           generator=make_generator(self.random_state, Xt.device))
                self.log_z_ = result
                log_z = result.log_z
        return float(self.rbm_.log_likelihood(Xt, log_z).mean())

    @torch.no_grad()
    def sample(self, n_samples: int = 1, *, n_steps: int = 1000, random_state=None):
        """Draw samples from the model by block Gibbs sampling.

        ``n_samples`` independent chains start from random binary (or standard normal) vectors
        and run ``n_steps`` Gibbs steps; the final visible conditional means are returned.

        Parameters
        ----------
        n_samples : int, default=1
        n_steps : int, default=1000
        random_state : int, RandomState instance or None
            Seed of the chains; defaults to the estimator's generator.

        Returns
        -------
        samples : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        from .sampling import sample_rbm

        g = self._generator if random_state is None else make_generator(random_state, self.rbm_.weight.device)
        return _to_numpy(sample_rbm(self.rbm_, n_samples, n_steps=n_steps, generator=g))


# ==============================================================================================
# Deep networks: greedy pretraining, export and fine-tuning
# ==============================================================================================

_PRETRAIN_CONSTRAINTS: dict = {
    "hidden_layer_sizes": [tuple, list, Interval(Integral, 1, None, closed="left")],
    "visible": [StrOptions({"bernoulli", "gaussian"})],
    "n_iter": [Interval(Integral, 0, None, closed="left"), tuple, list],
    "k": [Interval(Integral, 1, None, closed="left")],
    "persistent": ["boolean"],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "sparsity_target": [Interval(Real, 0, 1, closed="neither"), None],
    "sparsity_cost": [Interval(Real, 0, None, closed="left")],
    "corruption": [StrOptions({"mask", "gaussian", "salt_pepper"})],
    "corruption_level": [Interval(Real, 0, None, closed="left")],
    "propagate": [StrOptions({"probs", "samples"})],
    "random_state": ["random_state", torch.Generator],
    "verbose": ["verbose"],
    "device": [str, torch.device],
    "checkpoint_dir": [str, os.PathLike, None],
}


def _checkpoint_subdir(est, name: str):
    """``checkpoint_dir/name``, or None without checkpoints."""
    directory = getattr(est, "checkpoint_dir", None)
    return None if directory is None else os.path.join(os.fspath(directory), name)


def _layer_sizes(sizes) -> tuple[int, ...]:
    sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in sizes):
        raise ValueError(
            f"The 'hidden_layer_sizes' parameter must be a non-empty sequence of positive ints. Got {sizes!r}."
        )
    return tuple(int(s) for s in sizes)


def _pretrain(est, Xt: torch.Tensor, generator: torch.Generator, *, learning_rate, batch_size, momentum):
    """Greedy pretraining with the estimator's pretraining parameters."""
    from .stack import kind_options, pretrain_stack

    kind = getattr(est, "pretrain", "rbm")
    common = dict(
        pretrain=kind, visible=est.visible, n_epochs=est.n_iter, propagate=est.propagate, generator=generator,
        verbose=bool(est.verbose), learning_rate=learning_rate, batch_size=batch_size, weight_decay=est.weight_decay,
        checkpoint_dir=_checkpoint_subdir(est, "pretrain"),
    )
    extra = kind_options(kind, momentum=momentum, k=est.k, persistent=est.persistent,
                         sparsity_target=est.sparsity_target, sparsity_cost=est.sparsity_cost,
                         corruption=est.corruption, corruption_level=est.corruption_level)
    return pretrain_stack(Xt, _layer_sizes(est.hidden_layer_sizes), **common, **extra)


class DBNTransformer(
    _PersistenceMixin, _LayerTransformerTags, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Unsupervised deep feature extractor: a greedily pretrained stack of RBMs or autoencoders.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256, 256)
        Width of each layer, bottom up.
    pretrain : {"rbm", "dae"}, default="rbm"
        Stack RBMs (a deep belief network) or denoising autoencoders (an SdA).
    visible : {"bernoulli", "gaussian"}, default="bernoulli"
        Visible units of the first layer.
    n_iter : int or tuple of int, default=10
        Training epochs per layer.
    learning_rate : float, default=0.1
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
    corruption : {"mask", "gaussian", "salt_pepper"}, default="mask"
        Denoising autoencoders: input corruption.
    corruption_level : float, default=0.2
    propagate : {"probs", "samples"}, default="probs"
        What each layer passes up to train the next one.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    device : str, default="cpu"
    checkpoint_dir : str, path-like or None, default=None
        Directory for per-epoch checkpoints of the pretraining (subdirectory ``pretrain``);
        a rerun of ``fit`` with the same settings resumes where an interrupted one stopped.
        See :func:`dbn.stack.pretrain_stack`.

    Attributes
    ----------
    stack_ : dbn.stack.LayerStack
        The trained layers.
    history_ : list of list of dict
        Per-layer, per-epoch training monitors.
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
        "pretrain": [StrOptions({"rbm", "dae"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), tuple, list],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "momentum": _MOMENTUM_CONSTRAINTS,
    }

    def __init__(
        self,
        hidden_layer_sizes=(256, 256),
        *,
        pretrain: str = "rbm",
        visible: str = "bernoulli",
        n_iter=10,
        learning_rate=0.1,
        batch_size: int = 100,
        k: int = 1,
        persistent: bool = False,
        momentum="hinton",
        weight_decay: float = 2e-4,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
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
        Xt = _to_tensor(X, device=device)
        generator = make_generator(self.random_state, device)
        self.stack_ = _pretrain(self, Xt, generator, learning_rate=self.learning_rate, batch_size=self.batch_size,
                                momentum=self.momentum)
        self.history_ = self.stack_.histories
        return self

    def _fitted_state(self):
        layers, tensors = _stack_state(self.stack_)
        return {"layers": layers, "history": _json_safe(self.history_)}, tensors

    def _restore_fitted(self, fitted, tensors, device):
        self.stack_ = _restore_stack(fitted["layers"], fitted["history"], tensors, device)
        self.history_ = self.stack_.histories

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
        return _to_numpy(self.stack_.transform(_to_tensor(X, device=resolve_device(self.device), dtype=dtype)))

    def to_torch(self, *, head: str | None = None, n_outputs: int | None = None, **kwargs) -> torch.nn.Sequential:
        """Export the pretrained stack as a ``torch.nn.Sequential``; see :func:`dbn.export.to_torch`."""
        from .export import to_torch

        check_is_fitted(self)
        return to_torch(self.stack_, head=head, n_outputs=n_outputs, **kwargs)


class _DeepNetwork(_PersistenceMixin, BaseEstimator):
    """Shared machinery of :class:`DBNClassifier` and :class:`DBNRegressor`."""

    _loss = "cross_entropy"

    _parameter_constraints: dict = {
        **_PRETRAIN_CONSTRAINTS,
        "pretrain": [StrOptions({"rbm", "dae"}), None],
        "pretrained": [None, list, tuple, BaseEstimator, torch.nn.Module],
        "activation": [StrOptions({"sigmoid", "tanh", "relu", "leaky_relu", "maxout"})],
        "init": [StrOptions({"normal", "xavier", "he"})],
        "pretrain_learning_rate": [Interval(Real, 0, None, closed="neither"), tuple, list],
        "pretrain_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "pretrain_momentum": _MOMENTUM_CONSTRAINTS,
        "solver": [StrOptions({"sgd", "adam", "rmsprop", "adagrad", "adadelta"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"constant", "step", "exponential", "cosine"}), None],
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
        "tol": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(256, 256),
        *,
        pretrain: str | None = "rbm",
        pretrained=None,
        activation: str = "sigmoid",
        init: str = "normal",
        visible: str = "bernoulli",
        n_iter=10,
        pretrain_learning_rate=0.1,
        pretrain_batch_size: int | None = None,
        k: int = 1,
        persistent: bool = False,
        pretrain_momentum="hinton",
        weight_decay: float = 2e-4,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        corruption: str = "mask",
        corruption_level: float = 0.2,
        propagate: str = "probs",
        solver: str = "sgd",
        learning_rate_init: float = 0.1,
        lr_schedule: str | None = None,
        momentum: float = 0.9,
        nesterovs_momentum: bool = False,
        alpha: float = 0.0,
        l1: float = 0.0,
        batch_size: int = 100,
        max_iter: int = 50,
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
        tol: float = 1e-4,
        shuffle: bool = True,
        random_state=None,
        verbose: int = 0,
        device: str = "cpu",
        checkpoint_dir=None,
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
        self.tol = tol
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.checkpoint_dir = checkpoint_dir

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = self._uses_bernoulli_visible()
        return tags

    def _uses_bernoulli_visible(self) -> bool:
        return self.pretrain is not None and self.pretrained is None and self.visible == "bernoulli"

    # -- hooks for the subclasses ---------------------------------------------------------------
    def _encode_targets(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- fitting --------------------------------------------------------------------------------
    def _validate_X(self, X, *, reset: bool):
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float32, np.float64), reset=reset)
        if self._uses_bernoulli_visible():
            _check_unit_interval(X, self.visible, type(self).__name__)
        return X

    def _pretrained_stack(self, n_features: int):
        from .stack import LayerStack

        source = self.pretrained
        if isinstance(source, DBNTransformer):
            check_is_fitted(source)
            stack = source.stack_
        elif isinstance(source, LayerStack):
            stack = source
        else:
            stack = LayerStack(list(source))
        if stack.sizes[0] != n_features:
            raise ValueError(
                f"The 'pretrained' stack expects {stack.sizes[0]} input features but X has {n_features}."
            )
        return stack

    def _build_network(self, Xt, Xp, n_outputs: int, generator: torch.Generator) -> torch.nn.Sequential:
        from .export import to_torch
        from .training import build_mlp

        if self.pretrained is not None or self.pretrain is not None:
            if self.activation != "sigmoid" or self.batch_norm:
                raise ValueError(
                    "Pretrained layers are sigmoid layers: use activation='sigmoid' and batch_norm=False "
                    "with pretrain='rbm'/'dae' or 'pretrained', or set pretrain=None for a random-init network."
                )
            if self.pretrained is not None:
                stack = self._pretrained_stack(Xt.shape[1])
            else:
                batch = self.pretrain_batch_size or self.batch_size
                stack = _pretrain(self, Xp, generator, learning_rate=self.pretrain_learning_rate, batch_size=batch,
                                  momentum=self.pretrain_momentum)
            self.stack_ = stack
            self.pretrain_history_ = stack.histories
            net = to_torch(stack, head="softmax" if self._loss == "cross_entropy" else "linear", n_outputs=n_outputs,
                           dropout=self.dropout, input_dropout=self.input_dropout, generator=generator)
            return net.to(device=Xt.device, dtype=Xt.dtype)
        self.stack_ = None
        self.pretrain_history_ = []
        return build_mlp(
            Xt.shape[1], _layer_sizes(self.hidden_layer_sizes), n_outputs, activation=self.activation, init=self.init,
            dropout=self.dropout, input_dropout=self.input_dropout, batch_norm=self.batch_norm,
            maxout_pieces=self.maxout_pieces, generator=generator, device=Xt.device, dtype=Xt.dtype,
        )

    def fit(self, X, y, *, X_pretrain=None):
        """Pretrain (unless ``pretrain=None``), export and fine-tune on ``(X, y)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        X_pretrain : {array-like, sparse matrix} of shape (n_unlabelled, n_features), optional
            Data for the unsupervised pretraining (e.g. a larger unlabelled set, or another
            dataset); defaults to ``X``.

        Returns
        -------
        self
        """
        import time

        from .training import fit_network

        self._validate_params()
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc", "coo"), dtype=(np.float32, np.float64),
            multi_output=self._loss == "mse", y_numeric=self._loss == "mse",
        )
        if self._uses_bernoulli_visible():
            _check_unit_interval(X, self.visible, type(self).__name__)
        yt_np, n_outputs = self._encode_targets(y)
        device = resolve_device(self.device)
        Xt = _to_tensor(X, device=device, dtype=torch.float32)
        yt = torch.as_tensor(yt_np, device=device)
        if X_pretrain is None:
            Xp = Xt
        else:
            Xp_np = self._validate_X(X_pretrain, reset=False)
            Xp = _to_tensor(Xp_np, device=device, dtype=torch.float32)
        generator = make_generator(self.random_state, device)
        start = time.perf_counter()
        self.network_ = self._build_network(Xt, Xp, n_outputs, generator)
        self.pretrain_time_ = time.perf_counter() - start
        freeze = ()
        if self.freeze_epochs and self.stack_ is not None:
            # Hinton & Salakhutdinov: the first epochs train only the output layer
            from .training import linear_layers

            n_linear = len(linear_layers(self.network_))
            freeze_history = fit_network(
                self.network_, Xt, yt, **self._fit_options(generator, max_iter=self.freeze_epochs,
                                                          freeze=tuple(range(n_linear - 1)),
                                                          checkpoint="finetune_freeze")
            )
        else:
            freeze_history = []
        start = time.perf_counter()
        self.history_ = fit_network(self.network_, Xt, yt, **self._fit_options(generator, freeze=freeze))
        self.finetune_time_ = time.perf_counter() - start
        if freeze_history:
            offset = len(freeze_history)
            for record in self.history_:
                record["epoch"] += offset
            if self.history_.best_epoch is not None:
                self.history_.best_epoch += offset
            self.history_[:0] = freeze_history
        self.n_iter_ = len(self.history_)
        if self.early_stopping and not self.history_.stopped_early:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} reached before the validation score "
                f"stopped improving for n_iter_no_change={self.n_iter_no_change} epochs; consider a larger max_iter.",
                ConvergenceWarning,
            )
        return self

    def _fit_options(self, generator, *, max_iter=None, freeze=(), checkpoint="finetune"):
        return dict(
            loss=self._loss, optimizer=self.solver, learning_rate=self.learning_rate_init,
            momentum=self.momentum if self.solver in ("sgd", "rmsprop") else 0.0,
            nesterov=self.nesterovs_momentum and self.solver == "sgd", weight_decay=self.alpha, l1=self.l1,
            max_iter=max_iter or self.max_iter, batch_size=self.batch_size, lr_schedule=self.lr_schedule,
            clip_grad_norm=self.clip_grad_norm, max_norm=self.max_norm, freeze=freeze,
            early_stopping=self.early_stopping, validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change, tol=self.tol, shuffle=self.shuffle, generator=generator,
            verbose=bool(self.verbose), checkpoint_dir=_checkpoint_subdir(self, checkpoint),
        )

    def _fitted_state(self):
        from .training import linear_layers

        fitted = {
            "n_outputs": linear_layers(self.network_)[-1].out_features,
            "history": _json_safe(list(self.history_)),
            "history_attrs": _json_safe({k: getattr(self.history_, k) for k in
                                         ("best_epoch", "score_name", "monitor", "stopped_early")}),
            "pretrain_history": _json_safe(self.pretrain_history_),
            "pretrain_time": self.pretrain_time_, "finetune_time": self.finetune_time_, "n_iter": self.n_iter_,
            "classes": _json_safe(self.classes_.tolist()) if hasattr(self, "classes_") else None,
            "y_1d": getattr(self, "_y_1d", None),
            "layers": None,
        }
        tensors = _prefixed("network", self.network_)
        if self.stack_ is not None:
            fitted["layers"], stack_tensors = _stack_state(self.stack_)
            tensors.update(stack_tensors)
        return fitted, tensors

    def _restore_fitted(self, fitted, tensors, device):
        from .export import to_torch
        from .io import _load_state
        from .training import History, build_mlp

        self.pretrained = None
        n_outputs = fitted["n_outputs"]
        if fitted["layers"] is not None:
            self.stack_ = _restore_stack(fitted["layers"], fitted["pretrain_history"], tensors, device)
            net = to_torch(self.stack_, head="softmax" if self._loss == "cross_entropy" else "linear",
                           n_outputs=n_outputs, dropout=self.dropout, input_dropout=self.input_dropout)
        else:
            self.stack_ = None
            # check the described sizes against the stored weights before allocating anything
            sizes = [self.n_features_in_, *_layer_sizes(self.hidden_layer_sizes), n_outputs]
            pieces = self.maxout_pieces if self.activation == "maxout" else 1
            expected = sum(a * b * (pieces if i < len(sizes) - 2 else 1) for i, (a, b) in enumerate(zip(sizes, sizes[1:])))
            stored = sum(t.numel() for k, t in tensors.items() if k.startswith("network.") and t.dim() == 2)
            if expected != stored:
                raise ValueError(
                    f"Damaged model file: the settings describe {expected} weights but the file holds {stored}."
                )
            net = build_mlp(
                self.n_features_in_, _layer_sizes(self.hidden_layer_sizes), n_outputs, activation=self.activation,
                init=self.init, dropout=self.dropout, input_dropout=self.input_dropout, batch_norm=self.batch_norm,
                maxout_pieces=self.maxout_pieces, device=device,
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

    def _forward(self, X) -> torch.Tensor:
        from .training import predict_logits

        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return predict_logits(self.network_, _to_tensor(X, device=resolve_device(self.device), dtype=torch.float32))

    def to_torch(self) -> torch.nn.Sequential:
        """The fine-tuned network, a plain ``torch.nn.Sequential`` (a deep copy)."""
        import copy

        check_is_fitted(self)
        return copy.deepcopy(self.network_)


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
    visible : {"bernoulli", "gaussian"}, default="bernoulli"
        First-layer visible units for pretraining.
    n_iter : int or tuple of int, default=10
        Pretraining epochs per layer.
    pretrain_learning_rate : float or tuple, default=0.1
    pretrain_batch_size : int or None, default=None
        Defaults to ``batch_size``.
    k, persistent, pretrain_momentum, weight_decay, sparsity_target, sparsity_cost
        RBM training options (see :class:`RBMTransformer`); ``pretrain_momentum`` defaults to
        ``"hinton"`` and ``weight_decay`` to 2e-4.
    corruption, corruption_level
        Denoising-autoencoder options.
    propagate : {"probs", "samples"}, default="probs"
    solver : {"sgd", "adam", "rmsprop", "adagrad", "adadelta"}, default="sgd"
    learning_rate_init : float, default=0.1
    lr_schedule : {"constant", "step", "exponential", "cosine"} or None, default=None
    momentum : float, default=0.9
        SGD / RMSprop momentum.
    nesterovs_momentum : bool, default=False
    alpha : float, default=0.0
        L2 penalty of fine-tuning.
    l1 : float, default=0.0
        L1 penalty of fine-tuning.
    batch_size : int, default=100
    max_iter : int, default=50
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
    tol : float, default=1e-4
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    device : str, default="cpu"
    checkpoint_dir : str, path-like or None, default=None
        Directory for per-epoch checkpoints: pretraining in ``pretrain``, fine-tuning in
        ``finetune`` (and ``finetune_freeze`` for the ``freeze_epochs`` phase). A rerun of
        ``fit`` with the same settings resumes where an interrupted one stopped and, with an
        int ``random_state`` on the CPU, ends with the same model as an uninterrupted run.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
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
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from dbn import DBNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = DBNClassifier((32,), n_iter=2, max_iter=5, random_state=0).fit(X[:500] / 16, y[:500])
    >>> clf.predict(X[:3] / 16).shape
    (3,)
    """

    _loss = "cross_entropy"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def _encode_targets(self, y):
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return encoded.astype(np.int64), len(self.classes_)

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's outputs).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return _to_numpy(torch.softmax(self._forward(X), dim=1)).astype(np.float64)

    def predict_log_proba(self, X):
        """Log class probabilities."""
        return _to_numpy(torch.log_softmax(self._forward(X), dim=1)).astype(np.float64)

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        logits = self._forward(X)  # checks that the model is fitted
        return self.classes_[_to_numpy(logits.argmax(dim=1))]


class DBNRegressor(RegressorMixin, _DeepNetwork):
    """Deep network regressor: greedy pretraining (or random init), then fine-tuning on squared error.

    Takes the parameters of :class:`DBNClassifier`; the output layer is linear and the loss
    the mean squared error. Targets of shape ``(n_samples,)`` or ``(n_samples, n_targets)``.

    Attributes
    ----------
    network_ : torch.nn.Sequential
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

    _loss = "mse"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y):
        y = np.asarray(y, dtype=np.float32)
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        self._y_1d = y2.shape[1] == 1  # like MLPRegressor: one target -> predictions of shape (n,)
        return y2, y2.shape[1]

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        out = _to_numpy(self._forward(X)).astype(np.float64)
        return out.ravel() if self._y_1d else out
