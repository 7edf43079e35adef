"""The RBM estimator: :class:`RBMTransformer`, a drop-in for ``sklearn.neural_network.BernoulliRBM``."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._options import RBMSampler, VisibleType
from .._random import make_generator, resolve_device
from .._threads import batch_work, fit_threads
from .._validation import check_memory, clip_batch_size
from ..engine import is_sparse, map_rows
from ..io import _load_state, layer_config, layer_from_config
from ..likelihood import ais_log_partition, exact_log_partition
from ..rbm import RBM, CDTrainer
from ..sampling import sample_rbm
from ._base import (
    _MOMENTUM_CONSTRAINTS,
    _VISIBLE_CONSTRAINT,
    _check_unit_interval,
    _json_safe,
    _LayerTransformerTags,
    _PersistenceMixin,
    _prefixed,
    _to_numpy,
    _to_tensor,
)

__all__ = ["RBMTransformer"]


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
    centered : bool, default=False
        Centred training (Montavon & Müller 2012; Melchior et al. 2016): offsets at the data
        mean and a running mean of the hidden probabilities; the fitted ``rbm_`` is an ordinary
        RBM. See :class:`dbn.rbm.CDTrainer`.
    sampler : {"gibbs", "pt"}, default="gibbs"
        Negative-phase sampler of persistent CD; ``"pt"`` is parallel tempering.
    n_temperatures : int, default=10
        Inverse temperatures of parallel tempering (``sampler="pt"``).
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
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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
        "visible": [_VISIBLE_CONSTRAINT],
        "k": [Interval(Integral, 1, None, closed="left")],
        "persistent": ["boolean"],
        "momentum": _MOMENTUM_CONSTRAINTS,
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "sparsity_target": [Interval(Real, 0, 1, closed="neither"), None],
        "sparsity_cost": [Interval(Real, 0, None, closed="left")],
        "centered": ["boolean"],
        "sampler": [StrOptions({"gibbs", "pt"})],
        "n_temperatures": [Interval(Integral, 2, None, closed="left")],
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
        visible: VisibleType = "bernoulli",
        k: int = 1,
        persistent: bool = True,
        momentum=0.0,
        weight_decay: float = 0.0,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        centered: bool = False,
        sampler: RBMSampler = "gibbs",
        n_temperatures: int = 10,
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
        self.centered = centered
        self.sampler = sampler
        self.n_temperatures = n_temperatures
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
        X = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float64, np.float32), reset=reset)
        _check_unit_interval(X, self.visible, type(self).__name__)
        return X

    def _initialise(self, X, Xt: torch.Tensor) -> None:
        device = resolve_device(self.device)
        batch_size = clip_batch_size(self.batch_size, X.shape[0])
        itemsize = Xt.dtype.itemsize
        check_memory(
            {
                "n_components": (
                    2 * self.n_components * X.shape[1] * itemsize,
                    f"the weights and their momentum ({self.n_components} x {X.shape[1]} {Xt.dtype})",
                ),
                "batch_size": (
                    batch_size * (self.n_components + X.shape[1]) * itemsize,
                    "a mini-batch and the persistent chains",
                ),
            },
            device=device,
            owner=type(self).__name__,
        )
        self._generator = make_generator(self.random_state, device)
        self.rbm_ = RBM(
            X.shape[1],
            self.n_components,
            visible=self.visible,
            generator=self._generator,
            device=device,
            dtype=Xt.dtype,
        )
        self.rbm_.init_visible_bias_(Xt)
        self._initialise_trainer(device, batch_size)

    def _initialise_trainer(self, device, batch_size: int | None = None) -> None:
        if not hasattr(self, "_generator"):
            self._generator = make_generator(self.random_state, device)
        self._trainer = CDTrainer(
            self.rbm_,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size if batch_size is None else batch_size,
            k=self.k,
            persistent=self.persistent,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            sparsity_target=self.sparsity_target,
            sparsity_cost=self.sparsity_cost,
            centered=self.centered,
            sampler=self.sampler,
            n_temperatures=self.n_temperatures,
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
        state = self._trainer.state_dict()
        tensors = _prefixed("rbm", self.rbm_)
        tensors.update({f"trainer.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
        fitted = {"rbm": layer_config(self.rbm_), "epoch": state["epoch"], "history": _json_safe(state["history"])}
        return fitted, tensors

    def _restore_fitted(self, fitted, tensors, device):
        rbm = layer_from_config(fitted["rbm"], device, stored_weight=tensors.get("rbm.weight"))
        _load_state(rbm, tensors, "rbm.")
        self.rbm_ = rbm
        # the trainer resumes where it stopped: momentum, persistent chains, sparsity estimate, RNG
        self._initialise_trainer(device)
        state = {k[len("trainer.") :]: v for k, v in tensors.items() if k.startswith("trainer.")}
        state.update(epoch=fitted["epoch"], history=fitted["history"])
        if device.type != "cpu":
            state["generator"] = None  # a CPU generator state does not transfer to another device
        self._trainer.load_state_dict(state)

    # -- inference -----------------------------------------------------------------------------
    def _check_input(self, X, *, dense: bool = True) -> torch.Tensor:
        """Checked input as a tensor; sparse input stays sparse only with ``dense=False``."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        Xt = self._tensor(X)
        return Xt.to_dense() if dense and is_sparse(Xt) else Xt

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
        Xt = self._check_input(X, dense=False)  # checks that the model is fitted before touching rbm_
        with fit_threads(batch_work(Xt.shape[0], self.rbm_), Xt.device):
            return _to_numpy(map_rows(self.rbm_.hidden_probs, Xt))

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
    def score(
        self,
        X,
        y=None,
        *,
        method: str = "pseudo_likelihood",
        log_z: float | None = None,
        n_chains: int = 100,
        n_betas: int | None = None,
    ):
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
        Xt = self._check_input(X)
        if log_z is None:
            if min(self.rbm_.n_visible, self.rbm_.n_hidden) <= 20 or (
                self.rbm_.visible == "gaussian" and self.rbm_.n_hidden <= 20
            ):
                log_z = exact_log_partition(self.rbm_)
            else:
                result = ais_log_partition(
                    self.rbm_,
                    n_chains=n_chains,
                    n_betas=n_betas,
                    base_rate=Xt,
                    generator=make_generator(self.random_state, Xt.device),
                )
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
        g = self._generator if random_state is None else make_generator(random_state, self.rbm_.weight.device)
        return _to_numpy(sample_rbm(self.rbm_, n_samples, n_steps=n_steps, generator=g))
