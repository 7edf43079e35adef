"""scikit-learn estimators.

This is the only module of the core that imports scikit-learn, and the one place where data
cross between numpy/scipy/pandas and torch.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._random import make_generator, resolve_device
from .rbm import RBM, CDTrainer

__all__ = ["RBMTransformer"]


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


_MOMENTUM_CONSTRAINTS = [Interval(Real, 0, 1, closed="left"), StrOptions({"hinton"}), tuple]


class RBMTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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

    # -- tags and fitted views ---------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = self.visible == "bernoulli"
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def components_(self) -> np.ndarray:
        return _to_numpy(self.rbm_.weight)

    @components_.setter
    def components_(self, value) -> None:
        with torch.no_grad():
            self.rbm_.weight.copy_(torch.as_tensor(np.asarray(value)))

    @property
    def intercept_hidden_(self) -> np.ndarray:
        return _to_numpy(self.rbm_.hidden_bias)

    @intercept_hidden_.setter
    def intercept_hidden_(self, value) -> None:
        with torch.no_grad():
            self.rbm_.hidden_bias.copy_(torch.as_tensor(np.asarray(value)))

    @property
    def intercept_visible_(self) -> np.ndarray:
        return _to_numpy(self.rbm_.visible_bias)

    @intercept_visible_.setter
    def intercept_visible_(self, value) -> None:
        with torch.no_grad():
            self.rbm_.visible_bias.copy_(torch.as_tensor(np.asarray(value)))

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
        return _to_numpy(self.rbm_.hidden_probs(self._check_input(X)))

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
        return _to_numpy(self.rbm_.gibbs(self._check_input(v), 1, self._generator))

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
