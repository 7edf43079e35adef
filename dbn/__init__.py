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
from .estimators import RBMTransformer
from .rbm import RBM, CDTrainer, train_rbm

__all__ = ["__version__", "RBM", "CDTrainer", "train_rbm", "RBMTransformer", "DivergenceError"]
