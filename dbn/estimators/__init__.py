"""scikit-learn estimators: the only part of the package that imports scikit-learn.

Split as scikit-learn splits ``sklearn/neural_network/``: ``_base`` (the numpy <-> torch
boundary, persistence, tags, shared constraints), ``_rbm`` (:class:`RBMTransformer`) and
``_deep`` (:class:`DBNTransformer`, :class:`DBNClassifier`, :class:`DBNRegressor`). The deep
estimators fit through :mod:`dbn.recipe`. :func:`load_any` reads any torch-dbn file, estimators
included (:mod:`dbn.io` reads the modules and stacks).
"""

from __future__ import annotations

import os

from ..io import load, read_archive
from ._deep import DBNClassifier, DBNRegressor, DBNTransformer
from ._rbm import RBMTransformer

__all__ = ["RBMTransformer", "DBNTransformer", "DBNClassifier", "DBNRegressor", "load_any"]

_ESTIMATORS = {cls.__name__: cls for cls in (RBMTransformer, DBNTransformer, DBNClassifier, DBNRegressor)}


def load_any(path: str | os.PathLike, *, device=None):
    """Load any torch-dbn file: a module or stack saved by :func:`dbn.io.save`, or an estimator
    saved by its ``save``.

    Parameters
    ----------
    path : str or path-like
    device : str, optional
        Where to put the model (see :func:`dbn.io.load` and the estimators' ``load``).

    Returns
    -------
    RBM, DenoisingAutoencoder, LayerStack or estimator

    Examples
    --------
    >>> import tempfile, os
    >>> from dbn import RBM
    >>> from dbn.io import save
    >>> path = os.path.join(tempfile.mkdtemp(), "rbm.dbn")
    >>> type(load_any(save(RBM(4, 2), path))).__name__
    'RBM'
    """
    _, _, kind = read_archive(path)
    if kind in _ESTIMATORS:
        return _ESTIMATORS[kind].load(path, device=device)
    return load(path, device=device)
