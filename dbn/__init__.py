"""torch-dbn: greedy layer-wise pretraining of deep networks in PyTorch.

Restricted Boltzmann machines trained by contrastive divergence, deep belief networks and
stacked denoising autoencoders, export to ``torch.nn.Sequential`` for fine-tuning, and
scikit-learn estimators on top.

The estimators (the only part that imports scikit-learn) load on first use, through the
module-level ``__getattr__`` of PEP 562 (as SciPy loads its subpackages): ``import dbn.rbm``
or ``import dbn.functional`` does not import scikit-learn, ``dbn.DBNClassifier`` does.

Examples
--------
>>> import dbn
>>> dbn.RBM(4, 3)
RBM(n_visible=4, n_hidden=3, visible='bernoulli')
"""

__version__ = "0.1.0"

import importlib as _importlib

from ._threads import threads
from ._validation import DivergenceError
from .autoencoder import DenoisingAutoencoder, train_autoencoder
from .export import to_torch
from .rbm import RBM, CDTrainer, train_rbm
from .stack import LayerStack, pretrain_stack
from .training import build_mlp, fit_network

#: Public names loaded on first access, and the submodule that defines them.
_LAZY = {
    "RBMTransformer": "dbn.estimators",
    "DBNTransformer": "dbn.estimators",
    "DBNClassifier": "dbn.estimators",
    "DBNRegressor": "dbn.estimators",
}

__all__ = [
    "__version__",
    "RBM",
    "CDTrainer",
    "train_rbm",
    "DenoisingAutoencoder",
    "train_autoencoder",
    "LayerStack",
    "pretrain_stack",
    "to_torch",
    "build_mlp",
    "fit_network",
    "RBMTransformer",
    "DBNTransformer",
    "DBNClassifier",
    "DBNRegressor",
    "DivergenceError",
    "threads",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'dbn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
