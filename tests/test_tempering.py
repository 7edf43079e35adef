"""Parallel tempering as the negative-phase sampler of persistent CD."""

from __future__ import annotations

import itertools

import pytest
import torch

from dbn.rbm import RBM, CDTrainer, train_rbm


def _tiny_rbm(weight_std: float) -> RBM:
    g = torch.Generator().manual_seed(0)
    rbm = RBM(4, 3, generator=g, weight_std=weight_std)
    with torch.no_grad():
        rbm.visible_bias.normal_(generator=g), rbm.hidden_bias.normal_(generator=g)
    return rbm


@pytest.mark.parametrize("weight_std", [1.5, 3.0])
def test_stationary_distribution_matches_enumeration(weight_std):
    """The beta = 1 chains, run without parameter updates, sample the RBM's p(v)."""
    rbm = _tiny_rbm(weight_std)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))
    p = torch.softmax(-rbm.free_energy(states).detach(), dim=0)
    trainer = CDTrainer(
        rbm, persistent=True, sampler="pt", n_temperatures=4, n_chains=200, generator=torch.Generator().manual_seed(1)
    )
    code = torch.tensor([8.0, 4.0, 2.0, 1.0])
    counts = torch.zeros(16)
    with torch.no_grad():
        for step in range(250):
            v, h_probs, n = trainer._negative_phase(torch.full((10, 3), 0.5))
            if step >= 50:
                counts += torch.bincount((v @ code).long(), minlength=16)
    assert n == 200 and h_probs.shape == (200, 3)
    total_variation = 0.5 * (p - counts / counts.sum()).abs().sum().item()
    assert total_variation < 0.03, total_variation  # a wrong swap rule gives ~0.3


def test_swaps_move_states_between_temperatures():
    rbm = _tiny_rbm(1.0)
    trainer = CDTrainer(
        rbm, persistent=True, sampler="pt", n_temperatures=3, n_chains=50, generator=torch.Generator().manual_seed(0)
    )
    energy = torch.zeros(3, 50)  # equal energies: every swap is accepted
    states = torch.arange(3.0)[:, None, None].expand(3, 50, 2)
    (even,) = trainer._swap(energy, (states,))
    assert even[:, :, 0][:, 0].tolist() == [1.0, 0.0, 2.0]  # pair (0, 1)
    (odd,) = trainer._swap(energy, (states,))
    assert odd[:, :, 0][:, 0].tolist() == [0.0, 2.0, 1.0]  # then pair (1, 2)
    assert trainer.state_dict()["pt_steps"] == 2


def test_pt_training_runs_and_checkpoints():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(60, 8, generator=g) < 0.3).float()
    rbm = RBM(8, 4, generator=g)
    history = train_rbm(
        rbm, X, n_epochs=2, batch_size=10, persistent=True, sampler="pt", n_temperatures=3, k=2, generator=g
    )
    assert len(history) == 2 and torch.isfinite(rbm.weight).all()
    trainer = CDTrainer(rbm, persistent=True, sampler="pt", n_temperatures=3, batch_size=10, generator=g)
    trainer.partial_fit(X)
    state = trainer.state_dict()
    assert state["pt_chain"].shape == (3, 10, 4)
    other = CDTrainer(rbm, persistent=True, sampler="pt", n_temperatures=3, batch_size=10, generator=g)
    other.load_state_dict(state)
    torch.testing.assert_close(other._pt_chain, trainer._pt_chain)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(sampler="pt"), "requires persistent=True"),
        (dict(sampler="mcmc", persistent=True), "sampler"),
        (dict(sampler="pt", persistent=True, n_temperatures=1), "n_temperatures"),
        (dict(sampler="pt", persistent=True, beta_min=1.0), "beta_min"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ValueError, match=match):
        CDTrainer(RBM(4, 2), **options)


def test_pt_rejects_gaussian_visible_units():
    with pytest.raises(ValueError, match="Bernoulli"):
        CDTrainer(RBM(4, 2, visible="gaussian"), persistent=True, sampler="pt")
