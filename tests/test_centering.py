"""Centred RBMs: the conversion to an ordinary RBM, the centred update and its training gain."""

from __future__ import annotations

import itertools

import pytest
import torch

from dbn.likelihood import exact_log_partition
from dbn.rbm import RBM, CDTrainer, centered_to_ordinary, train_rbm


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _centered_model(seed: int = 0, n_visible: int = 5, n_hidden: int = 3):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_hidden, n_visible, generator=g, dtype=torch.float64)
    b = torch.randn(n_visible, generator=g, dtype=torch.float64)
    c = torch.randn(n_hidden, generator=g, dtype=torch.float64)
    mu = torch.rand(n_visible, generator=g, dtype=torch.float64)
    lam = torch.rand(n_hidden, generator=g, dtype=torch.float64)
    return W, b, c, mu, lam


def _centered_energy(v, h, W, b, c, mu, lam):
    return -(((h - lam) @ W) * (v - mu)).sum(-1) - (v - mu) @ b - (h - lam) @ c


def _ordinary_rbm(W, b, c) -> RBM:
    rbm = RBM(W.shape[1], W.shape[0], dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.copy_(W), rbm.visible_bias.copy_(b), rbm.hidden_bias.copy_(c)
    return rbm


def test_conversion_preserves_energies_and_log_partition():
    W, b, c, mu, lam = _centered_model()
    rbm = _ordinary_rbm(*centered_to_ordinary(W, b, c, mu, lam))
    V, H = _states(5), _states(3)
    v = V.repeat_interleave(H.shape[0], 0)
    h = H.repeat(V.shape[0], 1)
    shift = _centered_energy(v, h, W, b, c, mu, lam) - rbm.energy(v, h)
    constant = b @ mu + c @ lam - lam @ W @ mu
    torch.testing.assert_close(shift, constant.expand_as(shift))
    # free energies: the centred one by summing over all hidden states
    centred_free = -torch.logsumexp(-_centered_energy(v, h, W, b, c, mu, lam).view(V.shape[0], -1), dim=1)
    torch.testing.assert_close(centred_free - rbm.free_energy(V), constant.expand(V.shape[0]))
    centred_log_z = torch.logsumexp(-_centered_energy(v, h, W, b, c, mu, lam), dim=0)
    assert centred_log_z.item() == pytest.approx(exact_log_partition(rbm) - constant.item(), abs=1e-9)


def test_conversion_checks_shapes():
    with pytest.raises(ValueError, match="does not match"):
        centered_to_ordinary(torch.ones(2, 3), torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(2))


def test_centered_step_is_the_centred_update_in_ordinary_coordinates():
    """One centred step equals the update made in centred coordinates, then converted back."""
    g = torch.Generator().manual_seed(1)
    rbm = RBM(6, 4, generator=g, weight_std=0.5, dtype=torch.float64)
    with torch.no_grad():
        rbm.visible_bias.normal_(generator=g), rbm.hidden_bias.normal_(generator=g)
    X = (torch.rand(8, 6, generator=g, dtype=torch.float64) < 0.7).double()
    vk = (torch.rand(5, 6, generator=g, dtype=torch.float64) < 0.5).double()
    hk = torch.rand(5, 4, generator=g, dtype=torch.float64)
    trainer = CDTrainer(rbm, centered=True, learning_rate=0.3, offset_rate=0.1, generator=g)
    trainer._init_offsets(X)
    mu, lam = (t.clone() for t in trainer.offsets)
    trainer._negative_phase = lambda h0, rows=None, n=None: (vk, hk, 5)
    W0, b0, c0 = (p.detach().clone() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    h0 = torch.sigmoid(X @ W0.t() + c0)
    # reference: centred coordinates, PyDeep-style gradient, then back
    bc, cc = b0 + lam @ W0, c0 + W0 @ mu
    dW = (h0 - lam).t() @ (X - mu) / 8 - (hk - lam).t() @ (vk - mu) / 5
    W1 = W0 + 0.3 * dW
    bc1 = bc + 0.3 * (X.mean(0) - vk.mean(0))
    cc1 = cc + 0.3 * (h0.mean(0) - hk.mean(0))
    expected = centered_to_ordinary(W1, bc1, cc1, mu, lam)
    with torch.no_grad():
        trainer.step(X, 0.3, 0.0)
    for got, want in zip((rbm.weight, rbm.visible_bias, rbm.hidden_bias), expected, strict=True):
        torch.testing.assert_close(got.detach(), want)
    torch.testing.assert_close(trainer.offsets[1], 0.9 * lam + 0.1 * h0.mean(0))
    torch.testing.assert_close(trainer.offsets[0], mu)


def test_rbm_flag_is_the_trainer_default_and_state_round_trips():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(40, 6, generator=g) < 0.3).float()
    rbm = RBM(6, 3, centered=True, generator=g)
    trainer = CDTrainer(rbm, batch_size=10, generator=g)
    assert trainer.centered and trainer.offsets is None
    trainer.partial_fit(X)
    torch.testing.assert_close(trainer.offsets[0], X.mean(0))
    state = trainer.state_dict()
    other = CDTrainer(RBM(6, 3), centered=True, generator=torch.Generator().manual_seed(0))
    other.load_state_dict(state)
    torch.testing.assert_close(other.offsets[1], trainer.offsets[1])
    assert not CDTrainer(RBM(6, 3, centered=True), centered=False).centered
    assert "offsets" not in CDTrainer(RBM(6, 3)).state_dict()


def test_centered_rejects_data_parallel():
    with pytest.raises(ValueError, match="data-parallel"):
        CDTrainer(RBM(4, 2), centered=True, world_size=2)


def _bars_and_stripes(seed: int, n: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, 2, (n, 3), generator=g).float()
    horizontal = (torch.rand(n, generator=g) < 0.5)[:, None, None]
    img = torch.where(horizontal, rows[:, :, None].expand(n, 3, 3), rows[:, None, :].expand(n, 3, 3)).reshape(n, 9)
    X = torch.where(torch.rand(n, 9, generator=g) < 0.05, 1 - img, img)
    return 1 - X if seed % 2 == 0 else X  # flipped on even seeds: centring is invariant to the flip


def test_centered_pcd_beats_plain_pcd_in_exact_log_likelihood():
    gains = []
    for seed in range(3):
        X = _bars_and_stripes(seed)
        lls = []
        for centered in (False, True):
            g = torch.Generator().manual_seed(seed)
            rbm = RBM(9, 6, generator=g)
            train_rbm(
                rbm,
                X,
                n_epochs=20,
                learning_rate=0.1,
                batch_size=20,
                persistent=True,
                momentum=0.5,
                centered=centered,
                generator=g,
            )
            lls.append((-rbm.free_energy(X) - exact_log_partition(rbm)).mean().item())
        gains.append(lls[1] - lls[0])
    assert min(gains) > -0.05, gains
    assert sum(gains) / len(gains) > 0.05, gains


def test_options_pass_through_stack_and_estimators():
    import numpy as np

    from dbn import DBNClassifier, RBMTransformer
    from dbn.stack import kind_options, pretrain_stack

    assert "centered" not in kind_options("rbm", momentum=0.5)
    assert kind_options("rbm", momentum=0.5, centered=True, sampler="pt", n_temperatures=3)["n_temperatures"] == 3
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(60, 8, generator=g) < 0.3).float()

    def weights(**options):
        stack = pretrain_stack(
            X, (4,), n_epochs=1, batch_size=10, generator=torch.Generator().manual_seed(0), **options
        )
        return stack.layers[0].weight.detach()

    plain = weights()
    assert not torch.equal(plain, weights(centered=True))
    assert not torch.equal(weights(persistent=True), weights(persistent=True, sampler="pt", n_temperatures=3))
    Xn = X.numpy().astype(np.float64)
    a = RBMTransformer(4, n_iter=2, random_state=0).fit(Xn).components_
    b = RBMTransformer(4, n_iter=2, random_state=0, centered=True).fit(Xn).components_
    c = RBMTransformer(4, n_iter=2, random_state=0, sampler="pt", n_temperatures=3).fit(Xn).components_
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    y = (Xn[:, 0] > 0).astype(int)
    clf = DBNClassifier(
        (4,), n_iter=1, max_iter=1, centered=True, persistent=True, sampler="pt", n_temperatures=3, random_state=0
    ).fit(Xn, y)
    assert clf.predict(Xn).shape == (60,)
    with pytest.raises(ValueError, match="sampler"):
        RBMTransformer(4, sampler="metropolis").fit(Xn)
