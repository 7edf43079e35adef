"""torch-dbn: greedy layer-wise pretraining of deep networks in PyTorch.

Restricted Boltzmann machines trained by contrastive divergence, deep belief networks and
stacked denoising autoencoders, export to ``torch.nn.Sequential`` for fine-tuning, and
scikit-learn estimators on top.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
