import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dbn import functional as Fn
from dbn._validation import DivergenceError
from dbn.rbm import RBM, CDTrainer, momentum_at, train_rbm


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data.astype(np.float32) / 16.0
    return torch.from_numpy(X)


def test_init_follows_practical_guide(digits):
    rbm = RBM(64, 500, generator=torch.Generator().manual_seed(0))
    assert rbm.weight.shape == (500, 64)
    assert rbm.weight.dtype == torch.float32
    assert abs(rbm.weight.std().item() - 0.01) < 0.001
    assert torch.all(rbm.hidden_bias == 0)
    rbm.init_visible_bias_(digits)
    p = digits.mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(rbm.visible_bias, torch.log(p / (1 - p)), atol=1e-5)


def test_module_methods_agree_with_functional(generator):
    rbm = RBM(6, 4, generator=generator, dtype=torch.float64)
    v = torch.rand(5, 6, generator=generator, dtype=torch.float64)
    h = (torch.rand(5, 4, generator=generator, dtype=torch.float64) < 0.5).double()
    assert torch.allclose(rbm.energy(v, h), Fn.energy(v, h, rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    assert torch.allclose(rbm(v), rbm.hidden_probs(v))
    assert rbm.sample_hidden(v, generator).shape == (5, 4)
    assert rbm.sample_visible(h, generator).shape == (5, 6)
    assert rbm.gibbs(v, k=3, generator=generator).shape == (5, 6)


@pytest.mark.parametrize("persistent", [False, True])
def test_training_improves_pseudo_likelihood_and_reconstruction(digits, persistent):
    g = torch.Generator().manual_seed(0)
    rbm = RBM(64, 64, generator=g)
    hist = train_rbm(rbm, digits, n_epochs=8, learning_rate=0.05, batch_size=10, persistent=persistent, generator=g)
    assert len(hist) == 8
    assert hist[-1]["reconstruction_error"] < 0.6 * hist[0]["reconstruction_error"]
    exact_before = RBM(64, 64).init_visible_bias_(digits).pseudo_likelihood(digits, exact=True).mean()
    exact_after = rbm.pseudo_likelihood(digits, exact=True).mean()
    assert exact_after > exact_before + 3


def test_same_seed_same_model(digits):
    def run():
        g = torch.Generator().manual_seed(42)
        rbm = RBM(64, 16, generator=g)
        train_rbm(
            rbm,
            digits[:300],
            n_epochs=2,
            batch_size=20,
            k=2,
            persistent=True,
            momentum="hinton",
            weight_decay=1e-4,
            sparsity_target=0.1,
            sparsity_cost=0.1,
            generator=g,
        )
        return rbm.state_dict()

    a, b = run(), run()
    for key in a:
        assert torch.equal(a[key], b[key])


def test_weight_decay_shrinks_weights(digits):
    norms = []
    for wd in (0.0, 0.05):
        g = torch.Generator().manual_seed(1)
        rbm = RBM(64, 32, generator=g)
        train_rbm(rbm, digits, n_epochs=3, learning_rate=0.05, batch_size=20, weight_decay=wd, generator=g)
        norms.append(rbm.weight.norm().item())
    assert norms[1] < 0.8 * norms[0]


def test_sparsity_target_lowers_hidden_activity(digits):
    means = []
    for cost in (0.0, 1.0):
        g = torch.Generator().manual_seed(2)
        rbm = RBM(64, 32, generator=g)
        train_rbm(
            rbm,
            digits,
            n_epochs=4,
            learning_rate=0.05,
            batch_size=20,
            sparsity_target=0.05,
            sparsity_cost=cost,
            generator=g,
        )
        means.append(rbm.hidden_probs(digits).mean().item())
    assert means[1] < means[0]
    assert means[1] < 0.2


def test_momentum_schedule():
    assert momentum_at("hinton", 4) == 0.5 and momentum_at("hinton", 5) == 0.9
    assert momentum_at((0.1, 0.7, 2), 1) == 0.1 and momentum_at((0.1, 0.7, 2), 2) == 0.7
    assert momentum_at(0.3, 10) == 0.3
    trainer = CDTrainer(RBM(3, 2), momentum="hinton")
    X = torch.rand(20, 3)
    records = trainer.fit(X, 6)
    assert [r["momentum"] for r in records] == [0.5] * 5 + [0.9]


def test_momentum_changes_the_trajectory(digits):
    weights = []
    for m in (0.0, 0.9):
        g = torch.Generator().manual_seed(3)
        rbm = RBM(64, 16, generator=g)
        train_rbm(rbm, digits[:500], n_epochs=1, learning_rate=0.01, batch_size=50, momentum=m, generator=g)
        weights.append(rbm.weight.detach().clone())
    assert not torch.allclose(weights[0], weights[1])


def test_learning_rate_schedules():
    X = torch.rand(20, 3)
    t = CDTrainer(RBM(3, 2), learning_rate=0.1, lr_schedule="exponential", lr_decay=0.5)
    lrs = [r["learning_rate"] for r in t.fit(X, 3)]
    assert lrs == pytest.approx([0.1, 0.05, 0.025])
    t = CDTrainer(RBM(3, 2), learning_rate=0.1, lr_schedule=lambda e: 1.0 / (e + 1))
    assert [r["learning_rate"] for r in t.fit(X, 2)] == pytest.approx([0.1, 0.05])


def test_partial_fit_continues_state(digits):
    g = torch.Generator().manual_seed(0)
    rbm = RBM(64, 16, generator=g)
    trainer = CDTrainer(rbm, batch_size=10, persistent=True, momentum=0.5, generator=g)
    trainer.partial_fit(digits[:100])
    chain = trainer._chain.clone()
    vel = trainer._vel_w.clone()
    trainer.partial_fit(digits[100:200])
    assert trainer.epoch == 2 and len(trainer.history) == 2
    assert not torch.equal(chain, trainer._chain)
    assert vel.abs().sum() > 0 and not torch.equal(vel, trainer._vel_w)


def test_free_energy_gap_grows_when_overfitting(digits):
    g = torch.Generator().manual_seed(0)
    train, valid = digits[:60], digits[1000:1060]
    rbm = RBM(64, 200, generator=g)
    hist = train_rbm(rbm, train, n_epochs=60, learning_rate=0.1, batch_size=10, validation_data=valid, generator=g)
    assert "free_energy_gap" in hist[0]
    assert hist[-1]["free_energy_gap"] > hist[0]["free_energy_gap"] + 1.0


def test_gaussian_visible_reconstructs_standardised_data():
    g = torch.Generator().manual_seed(0)
    # low-rank real-valued data with noise, standardised
    Z = torch.randn(2000, 5, generator=g)
    A = torch.randn(5, 20, generator=g)
    X = Z @ A + 0.1 * torch.randn(2000, 20, generator=g)
    X = (X - X.mean(0)) / X.std(0)
    rbm = RBM(20, 64, visible="gaussian", generator=g)
    hist = train_rbm(rbm, X, n_epochs=15, learning_rate=0.005, batch_size=50, momentum=0.5, generator=g)
    assert "pseudo_likelihood" not in hist[0]
    # the variance of X is 20 per sample; a useful model reconstructs much better than the mean
    assert hist[-1]["reconstruction_error"] < 0.5 * 20
    assert hist[-1]["reconstruction_error"] < 0.7 * hist[0]["reconstruction_error"]


def test_divergence_is_reported(digits):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 10, generator=g) * 1e3
    rbm = RBM(10, 20, visible="gaussian", generator=g)
    with pytest.raises(DivergenceError, match="learning rate"):
        train_rbm(rbm, X, n_epochs=20, learning_rate=10.0, batch_size=10, momentum=0.9, generator=g)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"k": 0}, "'k'"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": "fast"}, "momentum"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"sparsity_target": 1.5}, "sparsity_target"),
        ({"lr_schedule": "cyclic"}, "lr_schedule"),
    ],
)
def test_bad_trainer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CDTrainer(RBM(3, 2), **kwargs)


def test_bad_data_and_module_arguments():
    with pytest.raises(ValueError, match="visible"):
        RBM(3, 2, visible="poisson")
    with pytest.raises(ValueError, match="n_hidden"):
        RBM(3, 0)
    rbm = RBM(3, 2)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        train_rbm(rbm, torch.tensor([[0.0, 2.0, 0.5]]), n_epochs=1)
    with pytest.raises(ValueError, match="3 features|expects 3"):
        train_rbm(rbm, torch.rand(4, 5), n_epochs=1)
    with pytest.raises(ValueError, match="NaN"):
        train_rbm(rbm, torch.tensor([[0.0, float("nan"), 0.5]]), n_epochs=1)
    with pytest.raises(ValueError, match="empty"):
        train_rbm(rbm, torch.zeros(0, 3), n_epochs=1)
    with pytest.raises(ValueError, match="Bernoulli"):
        RBM(3, 2, visible="gaussian").pseudo_likelihood(torch.zeros(1, 3))


def test_double_precision_model_trains_in_double(digits):
    rbm = RBM(64, 8, dtype=torch.float64)
    train_rbm(rbm, digits[:100], n_epochs=1, batch_size=10)
    assert rbm.weight.dtype == torch.float64
    assert math.isfinite(rbm.weight.sum().item())


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_fast_update_equals_the_reference_formula(visible):
    # CDTrainer.step (fused oneDNN/addmm path) against the update written out with the
    # functional maths and the same random numbers
    g0 = torch.Generator().manual_seed(0)
    rbm = RBM(30, 20, visible=visible, generator=g0, weight_std=0.1)
    ref = {k: v.detach().clone() for k, v in rbm.state_dict().items()}
    X = torch.rand(16, 30, generator=g0)
    lr, mom, wd, target, cost = 0.05, 0.6, 0.01, 0.1, 0.3
    trainer = CDTrainer(
        rbm,
        learning_rate=lr,
        batch_size=8,
        momentum=mom,
        weight_decay=wd,
        sparsity_target=target,
        sparsity_cost=cost,
        shuffle=False,
        generator=torch.Generator().manual_seed(7),
    )
    trainer.partial_fit(X)

    g = torch.Generator().manual_seed(7)
    W, b, c = ref["weight"], ref["visible_bias"], ref["hidden_bias"]
    vel = [torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)]
    q = None
    for v0 in (X[:8], X[8:]):
        h0 = Fn.hidden_probs(v0, W, c)
        hs = (torch.rand(h0.shape, generator=g) < h0).float()
        v1 = Fn.visible_mean(hs, W, b, visible)
        h1 = Fn.hidden_probs(v1, W, c)
        dW, db, dc = Fn.cd_statistics(v0, h0, v1, h1)
        q = h0.mean(0) if q is None else 0.9 * q + 0.1 * h0.mean(0)
        pen = cost * (target - q)
        grads = [dW + torch.outer(pen, v0.mean(0)) - wd * W, db, dc + pen]
        for i, (param, grad) in enumerate(zip((W, b, c), grads, strict=True)):
            vel[i] = mom * vel[i] + lr * grad
            param += vel[i]
    assert torch.allclose(rbm.weight, W, atol=1e-6)
    assert torch.allclose(rbm.visible_bias, b, atol=1e-6)
    assert torch.allclose(rbm.hidden_bias, c, atol=1e-6)


@pytest.mark.parametrize("persistent", [False, True])
def test_update_without_momentum_equals_the_velocity_update(digits, persistent):
    """momentum=0.0 takes the velocity-free path; a (0, 0, 0) schedule the velocity one."""
    models = []
    for momentum in (0.0, (0.0, 0.0, 0)):
        g = torch.Generator().manual_seed(3)
        rbm = RBM(64, 16, generator=g)
        trainer = CDTrainer(
            rbm,
            learning_rate=0.05,
            batch_size=20,
            momentum=momentum,
            weight_decay=1e-3,
            persistent=persistent,
            generator=g,
        )
        trainer.partial_fit(digits[:200])
        trainer.partial_fit(digits[:200])
        models.append(rbm)
        if momentum == 0.0:
            assert not trainer._vel_w.any()  # no velocity is kept
    fast, reference = models
    assert torch.allclose(fast.weight, reference.weight, atol=1e-5)
    assert torch.allclose(fast.visible_bias, reference.visible_bias, atol=1e-5)
    assert torch.allclose(fast.hidden_bias, reference.hidden_bias, atol=1e-5)
    assert not torch.equal(fast.weight, RBM(64, 16, generator=torch.Generator().manual_seed(3)).weight)


def test_training_on_another_rbms_features_is_warning_free():
    """Features computed with grad enabled (``hidden_probs`` of a module) are valid input."""
    import warnings

    g = torch.Generator().manual_seed(0)
    lower, upper = RBM(12, 8, generator=g), RBM(8, 4, generator=g)
    H = lower.hidden_probs((torch.rand(40, 12, generator=g) < 0.5).float())
    assert H.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_rbm(upper, H, n_epochs=1, batch_size=10, generator=g)
    assert not upper.weight.grad_fn and upper.weight.grad is None
