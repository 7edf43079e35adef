import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from dbn.export import to_torch
from dbn.stack import pretrain_stack


@pytest.fixture(scope="module")
def stacks():
    X = torch.from_numpy((load_digits().data / 16.0).astype(np.float32))
    out = {}
    for kind in ("rbm", "dae"):
        out[kind] = pretrain_stack(
            X[:500], (20, 10), pretrain=kind, n_epochs=2, batch_size=50, generator=torch.Generator().manual_seed(0)
        )
    return X, out


@pytest.mark.parametrize("kind", ["rbm", "dae"])
def test_exported_activations_equal_stack_transform(stacks, kind):
    X, all_stacks = stacks
    stack = all_stacks[kind]
    net = to_torch(stack)
    with torch.no_grad():
        assert torch.equal(net(X), stack.transform(X))
        assert torch.equal(net[:2](X), stack.transform(X, n_layers=1))
    for linear, layer in zip([m for m in net if isinstance(m, nn.Linear)], stack.layers, strict=True):
        assert torch.equal(linear.weight, layer.weight) and torch.equal(linear.bias, layer.hidden_bias)
        assert linear.weight.data_ptr() != layer.weight.data_ptr()  # a copy: fine-tuning leaves the stack alone


def test_heads(stacks):
    X, all_stacks = stacks
    g = torch.Generator().manual_seed(0)
    clf = to_torch(all_stacks["rbm"], head="softmax", n_outputs=10, generator=g)
    assert clf(X).shape == (len(X), 10)
    assert abs(clf[-1].weight.std().item() - 0.01) < 0.003 and torch.all(clf[-1].bias == 0)
    reg = to_torch(list(all_stacks["rbm"].layers), head="linear", n_outputs=1)
    assert reg(X).shape == (len(X), 1)
    with pytest.raises(ValueError, match="n_outputs"):
        to_torch(all_stacks["rbm"], head="softmax")
    with pytest.raises(ValueError, match="head"):
        to_torch(all_stacks["rbm"], head="sigmoid", n_outputs=2)


def test_export_needs_nothing_from_this_package(stacks, tmp_path):
    X, all_stacks = stacks
    net = to_torch(all_stacks["dae"], head="softmax", n_outputs=10)
    assert all(type(m).__module__.startswith("torch.") for m in net.modules())
    # loads under weights_only into a plain Sequential
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    fresh = nn.Sequential(nn.Linear(64, 20), nn.Sigmoid(), nn.Linear(20, 10), nn.Sigmoid(), nn.Linear(10, 10))
    fresh.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(X), net(X))
    assert b"dbn" not in pickle.dumps(net)


@pytest.mark.parametrize("seeded", [True, False])
def test_to_torch_leaves_the_global_rng_alone(stacks, seeded):
    """Layers are allocated uninitialised; the head comes from ``generator`` (or a fresh default one)."""
    _, all_stacks = stacks
    before = torch.get_rng_state()
    g = torch.Generator().manual_seed(3) if seeded else None
    net = to_torch(all_stacks["rbm"], head="softmax", n_outputs=10, dropout=0.1, generator=g)
    assert torch.equal(torch.get_rng_state(), before)
    # the head is drawn from the generator exactly as N(0, head_std^2), bias zero
    source = torch.Generator().manual_seed(3) if seeded else torch.Generator()
    expected = torch.randn((10, 10), generator=source) * 0.01
    assert torch.equal(net[-1].weight.detach(), expected) and torch.all(net[-1].bias == 0)
    # without a generator the result is deterministic
    if not seeded:
        again = to_torch(all_stacks["rbm"], head="softmax", n_outputs=10, dropout=0.1)
        assert torch.equal(again[-1].weight, net[-1].weight)
