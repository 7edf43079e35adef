"""torch-dbn: greedy layer-wise pretraining of deep networks in PyTorch.

Restricted Boltzmann machines trained by contrastive divergence, deep belief networks and
stacked denoising autoencoders, export to ``torch.nn.Sequential`` for fine-tuning, and
scikit-learn estimators on top.

Examples
--------
>>> import dbn
>>> dbn.RBM(4, 3)
RBM(n_visible=4, n_hidden=3, visible='bernoulli')
"""

__version__ = "0.1.0"

from ._validation import DivergenceError
from .autoencoder import DenoisingAutoencoder, train_autoencoder
from .estimators import DBNClassifier, DBNRegressor, DBNTransformer, RBMTransformer
from .export import to_torch
from .rbm import RBM, CDTrainer, train_rbm
from .stack import LayerStack, pretrain_stack
from .training import build_mlp, fit_network

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
]
