"""The training loops never pull a value to the host once per mini-batch.

On CUDA every ``.item()``, ``float(t)``, ``bool(t)`` (an ``if`` on a tensor), ``.cpu()``,
``.tolist()`` or ``.numpy()`` is a device-to-host copy that stalls the GPU queue. This machine
has no GPU, so the property is checked on CPU: these calls are counted while each path trains on
10 and then on 40 mini-batches per epoch, and the counts must not grow with the number of
batches (per-epoch monitoring and divergence checks are allowed; per-batch ones are not). AIS is
checked the same way against the number of inverse temperatures.
"""

from __future__ import annotations

import pytest
import torch
from _hostcalls import count_host_calls

from dbn.autoencoder import DenoisingAutoencoder, train_autoencoder
from dbn.likelihood import ais_log_partition
from dbn.rbm import RBM, train_rbm
from dbn.stack import pretrain_stack
from dbn.training import build_mlp, fit_network


def test_counter_sees_host_calls():
    t = torch.ones(3)
    with count_host_calls() as counts:
        t.sum().item()
        if t.all():
            float(t[0])
    assert counts == {"item": 1, "__bool__": 1, "__float__": 1}
    assert torch.Tensor.item is not None and t.sum().item() == 3.0  # restored


def _data(n: int):
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(n, 20, generator=g) < 0.3).float()
    y = (X[:, 0] > 0).long()
    return X, y


PATHS = {
    "rbm-cd": lambda X, y, g: train_rbm(RBM(20, 8, generator=g), X, n_epochs=2, batch_size=10, generator=g),
    "rbm-pcd": lambda X, y, g: train_rbm(
        RBM(20, 8, generator=g), X, n_epochs=2, batch_size=10, persistent=True, generator=g
    ),
    "rbm-pt": lambda X, y, g: train_rbm(
        RBM(20, 8, generator=g),
        X,
        n_epochs=2,
        batch_size=10,
        persistent=True,
        sampler="pt",
        n_temperatures=4,
        k=2,
        generator=g,
    ),
    "rbm-centered": lambda X, y, g: train_rbm(
        RBM(20, 8, generator=g), X, n_epochs=2, batch_size=10, persistent=True, centered=True, generator=g
    ),
    "rbm-gaussian": lambda X, y, g: train_rbm(
        RBM(20, 8, visible="gaussian", generator=g), X, n_epochs=2, batch_size=10, learning_rate=0.01, generator=g
    ),
    "dae": lambda X, y, g: train_autoencoder(
        DenoisingAutoencoder(20, 8, generator=g), X, n_epochs=2, batch_size=10, generator=g
    ),
    "stack": lambda X, y, g: pretrain_stack(X, (8, 6), n_epochs=2, batch_size=10, generator=g),
    "fine-tune": lambda X, y, g: fit_network(
        build_mlp(20, (8,), 2, generator=g), X, y, max_iter=2, batch_size=10, generator=g
    ),
    "fine-tune-early-stopping": lambda X, y, g: fit_network(
        build_mlp(20, (8,), 2, dropout=0.2, generator=g),
        X,
        y,
        max_iter=2,
        batch_size=10,
        early_stopping=True,
        clip_grad_norm=1.0,
        max_norm=3.0,
        generator=g,
    ),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_no_host_sync_per_batch(path):
    counts = []
    for n in (100, 400):  # 10 and 40 mini-batches per epoch
        X, y = _data(n)
        with count_host_calls() as c:
            PATHS[path](X, y, torch.Generator().manual_seed(1))
        counts.append(sum(c.values()))
    assert counts[0] == counts[1], f"{path}: host calls grow with the number of batches: {counts}"
    assert counts[0] < 60  # a handful per epoch, not per batch


def test_ais_no_host_sync_per_temperature():
    counts = []
    for n_betas in (100, 400):
        g = torch.Generator().manual_seed(0)
        with count_host_calls() as c:
            ais_log_partition(RBM(20, 8, generator=g), n_chains=10, n_betas=n_betas, generator=g)
        counts.append(sum(c.values()))
    assert counts[0] == counts[1] < 30


def test_a_per_batch_host_call_is_caught():
    """Negative control: a batch callback that reads the loss with ``.item()`` is detected."""
    counts = []
    for n in (100, 400):
        X, y = _data(n)
        g = torch.Generator().manual_seed(1)
        with count_host_calls() as c:
            fit_network(
                build_mlp(20, (8,), 2, generator=g),
                X,
                y,
                max_iter=2,
                batch_size=10,
                generator=g,
                batch_callbacks=[lambda net, info: float(info["loss"])],
            )
        counts.append(sum(c.values()))
    assert counts[1] - counts[0] == 2 * 30  # one per extra batch, two epochs
