"""Tests of dbn.autoencoder: corruption, the model's maths and the training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dbn._validation import DivergenceError
from dbn.autoencoder import DenoisingAutoencoder, corrupt, train_autoencoder
from dbn.datasets import load_digits


def value(t: torch.Tensor) -> float:
    return float(t.detach())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    X, _ = load_digits()
    return torch.from_numpy(X)


# -- corruption --------------------------------------------------------------------------------


def test_mask_zeroes_level_fraction_and_keeps_the_rest():
    x = torch.rand(400, 250, generator=gen(1)) * 0.9 + 0.1  # no zeros in the clean data
    xc = corrupt(x, "mask", 0.3, generator=gen(2))
    zeroed = xc == 0
    assert abs(float(zeroed.float().mean()) - 0.3) < 0.01
    assert torch.equal(xc[~zeroed], x[~zeroed])
    assert xc.shape == x.shape and xc.dtype == x.dtype


def test_salt_pepper_sets_level_fraction_to_zero_or_one():
    x = torch.full((400, 250), 0.5)
    xc = corrupt(x, "salt_pepper", 0.4, generator=gen(3))
    changed = xc != 0.5
    assert abs(float(changed.float().mean()) - 0.4) < 0.01
    assert set(xc[changed].unique().tolist()) == {0.0, 1.0}
    # salt and pepper in equal shares
    assert abs(float((xc == 1).float().mean()) - 0.2) < 0.01
    assert abs(float((xc == 0).float().mean()) - 0.2) < 0.01


def test_gaussian_adds_noise_with_std_level():
    x = torch.rand(500, 200, generator=gen(4))
    noise = corrupt(x, "gaussian", 0.7, generator=gen(5)) - x
    assert abs(float(noise.mean())) < 0.01
    assert abs(float(noise.std()) - 0.7) < 0.01


@pytest.mark.parametrize("kind", ["mask", "gaussian", "salt_pepper"])
def test_corruption_deterministic_with_same_generator(kind):
    x = torch.rand(20, 30, generator=gen(0))
    a = corrupt(x, kind, 0.25, generator=gen(7))
    b = corrupt(x, kind, 0.25, generator=gen(7))
    c = corrupt(x, kind, 0.25, generator=gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(corrupt(x, kind, 0.0, generator=gen(7)), x)


def test_corruption_does_not_modify_input():
    x = torch.rand(10, 10, generator=gen(0))
    before = x.clone()
    DenoisingAutoencoder(10, 3, corruption_level=0.9).corrupt(x, gen(1))
    assert torch.equal(x, before)


# -- parameters and maths ----------------------------------------------------------------------


def test_tied_vs_untied_parameters():
    tied = DenoisingAutoencoder(12, 5, generator=gen(0))
    assert {n: tuple(p.shape) for n, p in tied.named_parameters()} == {
        "weight": (5, 12),
        "hidden_bias": (5,),
        "visible_bias": (12,),
    }
    assert tied.decoder_weight is None
    untied = DenoisingAutoencoder(12, 5, tied=False, generator=gen(0))
    shapes = {n: tuple(p.shape) for n, p in untied.named_parameters()}
    assert shapes["decoder_weight"] == (12, 5) and len(shapes) == 4
    assert not torch.equal(untied.decoder_weight, untied.weight.t())
    assert all(p.dtype == torch.float32 for p in untied.parameters())


def test_init_range_and_reproducibility():
    a = DenoisingAutoencoder(30, 20, tied=False, generator=gen(3))
    b = DenoisingAutoencoder(30, 20, tied=False, generator=gen(3))
    bound = 4 * math.sqrt(6 / 50)
    assert value(a.weight.abs().max()) <= bound and value(a.weight.abs().max()) > 0.9 * bound
    assert torch.equal(a.weight, b.weight) and torch.equal(a.decoder_weight, b.decoder_weight)
    assert not bool(a.hidden_bias.any()) and not bool(a.visible_bias.any())
    assert DenoisingAutoencoder(3, 2, dtype=torch.float64).weight.dtype == torch.float64


def test_encode_decode_match_manual_formulas():
    dae = DenoisingAutoencoder(6, 4, tied=True, generator=gen(0))
    with torch.no_grad():
        dae.hidden_bias.normal_(generator=gen(1))
        dae.visible_bias.normal_(generator=gen(2))
    x = torch.rand(3, 6, generator=gen(3))
    W, c, b = dae.weight, dae.hidden_bias, dae.visible_bias
    h = torch.sigmoid(x @ W.T + c)
    torch.testing.assert_close(dae.encode(x), h)
    torch.testing.assert_close(dae.hidden_probs(x), h)
    torch.testing.assert_close(dae(x), torch.sigmoid(h @ W + b))
    g = DenoisingAutoencoder(6, 4, tied=False, visible="gaussian", generator=gen(0))
    torch.testing.assert_close(g(x), g.encode(x) @ g.decoder_weight.T + g.visible_bias)


def test_reconstruction_loss_bernoulli_is_summed_bce_averaged_over_samples():
    dae = DenoisingAutoencoder(8, 3, generator=gen(0))
    x = torch.rand(5, 8, generator=gen(1))
    z = dae(x)
    manual = -(x * torch.log(z) + (1 - x) * torch.log(1 - z)).sum(1).mean()
    torch.testing.assert_close(dae.reconstruction_loss(x, corrupt=False), manual)
    # with corruption: the clean x is the target, the corrupted x the input
    loss = dae.reconstruction_loss(x, gen(9))
    x_tilde = dae.corrupt(x, gen(9))
    z_t = dae(x_tilde)
    manual_t = -(x * torch.log(z_t) + (1 - x) * torch.log(1 - z_t)).sum(1).mean()
    torch.testing.assert_close(loss, manual_t)


def test_reconstruction_loss_is_stable_for_saturated_units():
    dae = DenoisingAutoencoder(4, 2, corruption_level=0.0)
    with torch.no_grad():
        dae.weight.fill_(0.0)
        dae.visible_bias.fill_(200.0)  # sigmoid(200) == 1 in float32
    loss = dae.reconstruction_loss(torch.zeros(2, 4))
    assert math.isfinite(value(loss)) and abs(value(loss) - 4 * 200) < 1e-3


def test_reconstruction_loss_gaussian_is_summed_squared_error():
    dae = DenoisingAutoencoder(8, 3, visible="gaussian", generator=gen(0))
    x = torch.randn(5, 8, generator=gen(1))
    manual = ((dae(x) - x) ** 2).sum(1).mean()
    torch.testing.assert_close(dae.reconstruction_loss(x, corrupt=False), manual)


def test_gradients_flow_to_all_parameters():
    dae = DenoisingAutoencoder(8, 3, tied=False, generator=gen(0))
    dae.reconstruction_loss(torch.rand(4, 8, generator=gen(1)), gen(2)).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in dae.parameters())


# -- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_training_decreases_reconstruction_loss_on_digits(digits, tied):
    dae = DenoisingAutoencoder(64, 32, tied=tied, corruption_level=0.2, generator=gen(0))
    before = value(dae.reconstruction_loss(digits, corrupt=False))
    history = train_autoencoder(dae, digits, n_epochs=5, batch_size=25, learning_rate=0.1, generator=gen(1))
    after = value(dae.reconstruction_loss(digits, corrupt=False))
    assert [r["epoch"] for r in history] == list(range(1, 6))
    assert all(set(r) == {"epoch", "loss", "time"} for r in history)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert after < 0.7 * before


def test_same_seed_same_weights(digits):
    def run(seed):
        dae = DenoisingAutoencoder(64, 16, tied=False, corruption="salt_pepper", generator=gen(seed))
        hist = train_autoencoder(dae, digits[:300], n_epochs=2, batch_size=25, generator=seed)
        return dae, hist

    a, ha = run(5)
    b, hb = run(5)
    c, _ = run(6)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.weight, c.weight)
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]


def test_gaussian_visible_reconstructs_standardised_data():
    # 12-D data on a 3-D linear subspace plus small noise, standardised per feature
    g = gen(11)
    Z = torch.randn(600, 3, generator=g)
    X = Z @ torch.randn(3, 12, generator=g) + 0.1 * torch.randn(600, 12, generator=g)
    X = (X - X.mean(0)) / X.std(0)
    total_variance = float(X.var(0, unbiased=False).sum())  # loss of predicting the mean
    dae = DenoisingAutoencoder(
        12, 16, visible="gaussian", corruption="gaussian", corruption_level=0.1, generator=gen(12)
    )
    train_autoencoder(dae, X, n_epochs=15, batch_size=50, learning_rate=0.01, optimizer="adam", generator=gen(13))
    loss = value(dae.reconstruction_loss(X, corrupt=False))
    assert loss < 0.15 * total_variance


def test_train_accepts_numpy_and_other_optimizers(digits):
    X = digits[:200].numpy()
    for opt, mom in (("sgd", 0.9), ("adam", 0.0), ("rmsprop", 0.0), ("adagrad", 0.0)):
        dae = DenoisingAutoencoder(64, 8, generator=gen(0))
        w0 = dae.weight.detach().clone()
        lr = 0.1 if opt in ("sgd", "adagrad") else 0.01
        hist = train_autoencoder(dae, X, n_epochs=1, learning_rate=lr, optimizer=opt, momentum=mom, generator=0)
        assert math.isfinite(hist[0]["loss"]) and not torch.equal(dae.weight, w0)
    dae = DenoisingAutoencoder(64, 8, generator=gen(0))
    w0 = dae.weight.detach().clone()
    train_autoencoder(dae, X, n_epochs=1, optimizer=lambda params: torch.optim.SGD(params, lr=0.5), generator=0)
    assert not torch.equal(dae.weight, w0)


def test_callbacks_receive_records_and_can_stop(digits):
    seen = []

    def cb(model, record):
        seen.append((model, record["epoch"]))
        return record["epoch"] == 2

    dae = DenoisingAutoencoder(64, 8, generator=gen(0))
    hist = train_autoencoder(dae, digits[:100], n_epochs=5, callbacks=(cb,), generator=0)
    assert len(hist) == 2 and seen == [(dae, 1), (dae, 2)]


def test_verbose_prints(digits, capsys):
    dae = DenoisingAutoencoder(64, 8, generator=gen(0))
    train_autoencoder(dae, digits[:100], n_epochs=2, verbose=True, shuffle=False, generator=0)
    assert capsys.readouterr().out.count("epoch") == 2


def test_divergence_raises_with_hint():
    X = torch.randn(200, 10, generator=gen(0)) * 100
    dae = DenoisingAutoencoder(10, 5, visible="gaussian", generator=gen(1))
    with pytest.raises(DivergenceError, match="learning rate"):
        train_autoencoder(dae, X, n_epochs=50, learning_rate=10.0, generator=gen(2))


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_visible": 0}, "n_visible"),
        ({"n_hidden": 2.5}, "n_hidden"),
        ({"corruption": "dropout"}, "corruption"),
        ({"corruption_level": 1.5}, "corruption_level"),
        ({"corruption_level": -0.1, "corruption": "gaussian"}, "corruption_level"),
        ({"visible": "poisson"}, "visible"),
        ({"tied": "yes"}, "tied"),
        ({"dtype": torch.int64}, "dtype"),
        ({"generator": 3}, "generator"),
    ],
)
def test_bad_model_parameters_raise(kwargs, match):
    params = {"n_visible": 4, "n_hidden": 2, **kwargs}
    n_visible, n_hidden = params.pop("n_visible"), params.pop("n_hidden")
    with pytest.raises(ValueError, match=match):
        DenoisingAutoencoder(n_visible, n_hidden, **params)


def test_gaussian_corruption_level_may_exceed_one():
    dae = DenoisingAutoencoder(4, 2, corruption="gaussian", corruption_level=2.0)
    assert dae.corruption_level == 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_epochs": -1}, "n_epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"optimizer": "newton"}, "optimizer"),
        ({"optimizer": "adam", "momentum": 0.5}, "momentum"),
        ({"callbacks": (1,)}, "callbacks"),
        ({"generator": "seed"}, "random_state"),
    ],
)
def test_bad_training_parameters_raise(kwargs, match):
    dae = DenoisingAutoencoder(4, 2)
    with pytest.raises(ValueError, match=match):
        train_autoencoder(dae, torch.rand(10, 4), **kwargs)


def test_bad_data_raises():
    dae = DenoisingAutoencoder(4, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_autoencoder(dae, torch.rand(10, 4) * 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dae.reconstruction_loss(-torch.rand(3, 4))
    with pytest.raises(ValueError, match="features"):
        train_autoencoder(dae, torch.rand(10, 5))
    with pytest.raises(ValueError, match="NaN"):
        train_autoencoder(dae, torch.full((3, 4), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        dae.encode(torch.rand(3, 5))
    with pytest.raises(ValueError, match="shape"):
        dae.decode(torch.rand(3, 4))
    with pytest.raises(ValueError, match="dtype"):
        dae.reconstruction_loss(torch.rand(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="corruption"):
        corrupt(torch.rand(2, 2), "blur", 0.1)
    # Gaussian visible units accept any real data
    g = DenoisingAutoencoder(4, 2, visible="gaussian")
    Xg = np.random.default_rng(0).normal(size=(10, 4)) * 3
    assert math.isfinite(train_autoencoder(g, Xg, generator=0)[0]["loss"])


def test_training_does_not_copy_or_modify_float32_data(digits):
    X = digits[:100].clone()
    before = X.clone()
    dae = DenoisingAutoencoder(64, 8, corruption="mask", corruption_level=0.5, generator=gen(0))
    train_autoencoder(dae, X, n_epochs=1, generator=0)
    assert torch.equal(X, before)


def test_uses_bce_with_logits_reference():
    # the loss equals torch's BCE-with-logits on the decoder's pre-activation
    dae = DenoisingAutoencoder(5, 3, generator=gen(0))
    x = torch.rand(4, 5, generator=gen(1))
    logits = dae.visible_input(dae.encode(x))
    ref = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
    torch.testing.assert_close(dae.reconstruction_loss(x, corrupt=False), ref)
