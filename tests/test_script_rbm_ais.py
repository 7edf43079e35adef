"""scripts/mnist_rbm_ais.py: the binarisations and the per-epoch redraw (no MNIST needed)."""

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dbn.rbm import RBM, train_rbm

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mnist_rbm_ais.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("mnist_rbm_ais", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)

    def split(n):
        return rng.random((n, 784), dtype=np.float32) * 0.999, rng.integers(0, 10, n)

    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump((split(30), split(10), split(20)), f)
    return str(path)


def test_dynamic_uses_the_stochastic_test_set(script, fake_mnist):
    train_s, test_s, grey_s = script.load_binarized(fake_mnist, "60k", 3, "stochastic")
    train_d, test_d, grey_d = script.load_binarized(fake_mnist, "60k", 3, "dynamic")
    assert train_s.shape == (40, 784) and test_s.shape == (20, 784)
    assert torch.equal(test_s, test_d) and torch.equal(train_s, train_d) and torch.equal(grey_s, grey_d)
    assert set(torch.unique(train_s).tolist()) <= {0.0, 1.0}
    train_t, test_t, grey_t = script.load_binarized(fake_mnist, "50k", 3, "threshold")
    assert train_t.shape == (30, 784) and test_t.shape == (20, 784)
    assert torch.equal(train_t, (grey_t >= 0.5).float()) and torch.equal(grey_t, grey_s[:30])


def test_resample_each_epoch_redraws_the_training_images_in_place(script):
    grey = torch.rand(200, 20, generator=torch.Generator().manual_seed(0))
    X = torch.bernoulli(grey, generator=torch.Generator().manual_seed(1))
    first = X.clone()
    draws = []
    record = script.resample_each_epoch(X, grey, seed=2)

    def remember(rbm, rec):
        draws.append(X.clone())

    train_rbm(RBM(20, 5), X, n_epochs=3, batch_size=50, callbacks=[record, remember])
    assert len(draws) == 3
    assert not torch.equal(draws[0], first) and not torch.equal(draws[1], draws[0])
    # each draw is a fresh Bernoulli sample of the grey levels: its mean tracks theirs
    assert abs(float(draws[2].mean() - grey.mean())) < 0.05
    # the same seed redraws the same images
    Y = first.clone()
    again = script.resample_each_epoch(Y, grey, seed=2)
    again(None, {})
    assert torch.equal(Y, draws[0])


def test_resample_each_epoch_refuses_a_moved_tensor(script):
    grey = torch.rand(4, 3)
    X = torch.bernoulli(grey)
    callback = script.resample_each_epoch(X, grey, seed=0)
    X.set_(torch.zeros(4, 3))
    with pytest.raises(RuntimeError, match="in place"):
        callback(None, {})
