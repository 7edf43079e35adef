import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dbn.autoencoder import DenoisingAutoencoder
from dbn.rbm import RBM
from dbn.stack import LayerStack, pretrain_stack


@pytest.fixture(scope="module")
def digits():
    return torch.from_numpy((load_digits().data / 16.0).astype(np.float32))


@pytest.mark.parametrize("kind", ["rbm", "dae"])
def test_greedy_stack_trains_each_layer_on_the_previous_outputs(digits, kind):
    g = torch.Generator().manual_seed(0)
    seen = []
    stack = pretrain_stack(
        digits,
        (32, 16, 8),
        pretrain=kind,
        n_epochs=(3, 2, 2),
        learning_rate=0.05,
        batch_size=20,
        generator=g,
        callbacks=[lambda i, layer, rec: seen.append(i)],
    )
    assert stack.sizes == (64, 32, 16, 8)
    assert [len(h) for h in stack.histories] == [3, 2, 2]
    assert seen == [0, 0, 0, 1, 1, 2, 2]
    cls = RBM if kind == "rbm" else DenoisingAutoencoder
    assert all(isinstance(layer, cls) for layer in stack.layers)
    # layer 2's data-driven visible bias init saw layer 1's hidden probabilities
    if kind == "rbm":
        h1 = stack.layers[0].hidden_probs(digits).detach()
        p = h1.mean(0).clamp(1e-3, 1 - 1e-3)
        # the bias was set from h1 before training, then trained: it must still correlate strongly
        corr = np.corrcoef(torch.log(p / (1 - p)).numpy(), stack.layers[1].visible_bias.detach().numpy())[0, 1]
        assert corr > 0.8
    # every layer learned something
    key = "reconstruction_error" if kind == "rbm" else "loss"
    assert stack.histories[0][-1][key] < stack.histories[0][0][key]
    out = stack.transform(digits)
    assert out.shape == (len(digits), 8) and torch.all((out >= 0) & (out <= 1))


def test_per_layer_settings_and_broadcasting(digits):
    g = torch.Generator().manual_seed(1)
    stack = pretrain_stack(
        digits[:200], (10, 6), n_epochs=1, learning_rate=(0.1, 0.01), batch_size=50, k=(1, 2), generator=g
    )
    assert stack.sizes == (64, 10, 6)
    with pytest.raises(ValueError, match="3 entries but there are 2 layers"):
        pretrain_stack(digits[:50], (10, 6), n_epochs=1, learning_rate=(0.1, 0.1, 0.1), generator=g)


def test_same_seed_same_stack(digits):
    def run():
        g = torch.Generator().manual_seed(5)
        return pretrain_stack(digits[:300], (12, 6), n_epochs=2, batch_size=30, propagate="samples", generator=g)

    a, b = run(), run()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_sampled_propagation_differs_from_probabilities(digits):
    stacks = [
        pretrain_stack(
            digits[:300], (12, 6), n_epochs=2, batch_size=30, propagate=p, generator=torch.Generator().manual_seed(5)
        )
        for p in ("probs", "samples")
    ]
    assert torch.equal(stacks[0].layers[0].weight, stacks[1].layers[0].weight)
    assert not torch.equal(stacks[0].layers[1].weight, stacks[1].layers[1].weight)


def test_gaussian_first_layer_then_bernoulli():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 10, generator=g)
    stack = pretrain_stack(X, (8, 4), visible="gaussian", n_epochs=2, learning_rate=0.01, batch_size=30, generator=g)
    assert stack.layers[0].visible == "gaussian" and stack.layers[1].visible == "bernoulli"


def test_validation_data_gives_free_energy_gap_per_layer(digits):
    stack = pretrain_stack(
        digits[:500],
        (16, 8),
        n_epochs=2,
        batch_size=50,
        validation_data=digits[500:700],
        generator=torch.Generator().manual_seed(0),
    )
    assert all("free_energy_gap" in h[-1] for h in stack.histories)


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="pretrain"):
        pretrain_stack(digits, (4,), pretrain="vae")
    with pytest.raises(ValueError, match="Unknown options"):
        pretrain_stack(digits, (4,), pretrain="dae", k=3)
    with pytest.raises(ValueError, match="at least one"):
        pretrain_stack(digits, ())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pretrain_stack(digits * 3, (4,))
    with pytest.raises(ValueError, match="must chain"):
        LayerStack([RBM(8, 6), RBM(5, 4)])
