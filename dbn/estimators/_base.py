"""The estimators' shared base: the numpy <-> torch boundary, persistence, tags and constraints.

Data cross between numpy/scipy/pandas and torch here only (:func:`_to_tensor`,
:func:`_to_numpy`); the persistence mixin gives every estimator ``save``/``load`` in the
format of :mod:`dbn.io` (JSON settings and tensors, read with ``weights_only=True``).
"""

from __future__ import annotations

import warnings
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._options import VISIBLE_TYPES
from .._random import resolve_device
from ..io import _load_state, layer_config, layer_from_config, read_archive, write_archive
from ..stack import LayerStack

#: Parameters that :meth:`_PersistenceMixin.save` does not store (code, not settings); a
#: loaded estimator gets their defaults.
_NOT_PERSISTED = ("callbacks",)


# -- the numpy <-> torch boundary --------------------------------------------------------------
def _to_tensor(X, *, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Validated numpy/scipy array -> tensor on ``device`` (no copy for dense CPU input).

    A scipy sparse matrix becomes a torch sparse CSR tensor (its non-zeros only, never
    densified as a whole): the trainers and the inference paths densify it one mini-batch at a
    time (:func:`dbn.engine.take_rows`).
    """
    if sp.issparse(X):
        return _to_sparse_tensor(X, device=device, dtype=dtype)
    with warnings.catch_warnings():
        # read-only arrays (e.g. memory-mapped by joblib) are never written to here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.as_tensor(np.ascontiguousarray(X))
    return t.to(device=device, dtype=dtype or t.dtype)


def _to_sparse_tensor(X, *, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """scipy sparse matrix -> canonical torch sparse CSR tensor (sorted, no duplicate entries)."""
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    values = torch.as_tensor(X.data)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        t = torch.sparse_csr_tensor(
            torch.as_tensor(X.indptr, dtype=torch.int64),
            torch.as_tensor(X.indices, dtype=torch.int64),
            values,
            size=X.shape,
            check_invariants=True,
        )
        return t.to(device=device, dtype=dtype or values.dtype)


def _to_numpy(t: torch.Tensor, dtype=None) -> np.ndarray:
    out = t.detach().cpu().numpy()
    return out if dtype is None else out.astype(dtype, copy=False)


def _check_unit_interval(X, visible: str, estimator: str) -> None:
    if visible != "bernoulli":
        return
    data = X.data if sp.issparse(X) else X
    if data.size and (data.min() < 0 or data.max() > 1):
        # scikit-learn's wording for negative input comes first (check_positive_only_tag_during_fit)
        lead = f"Negative values in data passed to {estimator}: " if data.min() < 0 else ""
        raise ValueError(
            f"{lead}{estimator} with visible='bernoulli' needs X in [0, 1]; got values in "
            f"[{data.min():.4g}, {data.max():.4g}]. Scale X (e.g. sklearn.preprocessing.MinMaxScaler) "
            "or use visible='auto' or 'gaussian' (standardised internally)."
        )


def _standardisation(X) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales of ``X`` as :class:`sklearn.preprocessing.StandardScaler` has them
    (a constant column gets scale 1), in float64."""
    if sp.issparse(X):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, scale


def _standardise(X, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(X - mean) / scale`` as a dense float64 array (sparse input is densified)."""
    if sp.issparse(X):
        X = X.toarray()
    return (np.asarray(X, dtype=np.float64) - mean) / scale


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

    n_features_in_: int

    if TYPE_CHECKING:  # every estimator using the mixin also inherits sklearn's BaseEstimator

        def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def _fitted_state(self) -> tuple[dict, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restore_fitted(self, config: dict, tensors: dict, device) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path) -> Path:
        """Save the fitted estimator to ``path`` (settings as JSON, weights as tensors).

        Loading never runs code from the file (``torch.load(weights_only=True)``); the file
        carries a format version. Writes are atomic. Callables among the parameters
        (``callbacks``) are not stored: the loaded estimator has their defaults.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        pathlib.Path
        """
        check_is_fitted(self)
        fitted, tensors = self._fitted_state()
        params = {k: (None if k in _NOT_PERSISTED else v) for k, v in self.get_params(deep=False).items()}
        config = {
            "class": type(self).__name__,
            "params": _json_safe(params),
            "n_features_in_": int(self.n_features_in_),
            "feature_names_in_": _json_safe(list(getattr(self, "feature_names_in_", []))) or None,
            "fitted": fitted,
        }
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
    return [layer_config(layer) for layer in stack.layers], _prefixed("stack", stack)


def _restore_stack(layer_configs: list, histories, tensors: dict, device):
    stack = LayerStack(
        [
            layer_from_config(c, device, stored_weight=tensors.get(f"stack.layers.{i}.weight"))
            for i, c in enumerate(layer_configs)
        ]
    )
    _load_state(stack, {k: v.to(device) for k, v in tensors.items()}, "stack.")
    stack.histories = histories
    return stack


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

_VISIBLE_CONSTRAINT = StrOptions(set(VISIBLE_TYPES))

#: The deep estimators' ``visible``: the unit types, or "auto" (chosen from the data's range).
_VISIBLE_AUTO_CONSTRAINT = StrOptions({"auto", *VISIBLE_TYPES})
