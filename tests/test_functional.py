import itertools
import math

import pytest
import torch

from dbn import functional as Fn


def all_binary(n, dtype=torch.float64):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def tiny_params(n_visible=4, n_hidden=3, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_hidden, n_visible, generator=g, dtype=torch.float64) * scale
    b = torch.randn(n_visible, generator=g, dtype=torch.float64)
    c = torch.randn(n_hidden, generator=g, dtype=torch.float64)
    return W, b, c


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_free_energy_equals_enumeration_over_hidden(seed):
    W, b, c = tiny_params(seed=seed)
    V = all_binary(4)
    H = all_binary(3)
    # -log sum_h exp(-E(v, h)) by brute force
    E = torch.stack([Fn.energy(V, h.expand(len(V), -1), W, b, c) for h in H], dim=1)
    brute = -torch.logsumexp(-E, dim=1)
    assert torch.allclose(Fn.free_energy(V, W, b, c), brute, atol=1e-10)


def test_gaussian_free_energy_integrates_hidden():
    W, b, c = tiny_params(seed=3)
    v = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    H = all_binary(3)
    E = torch.stack([Fn.energy(v, h.expand(5, -1), W, b, c, "gaussian") for h in H], dim=1)
    brute = -torch.logsumexp(-E, dim=1)
    assert torch.allclose(Fn.free_energy(v, W, b, c, "gaussian"), brute, atol=1e-10)


def test_conditionals_match_joint_distribution():
    W, b, c = tiny_params(seed=4)
    V, H = all_binary(4), all_binary(3)
    E = torch.stack([Fn.energy(V, h.expand(len(V), -1), W, b, c) for h in H], dim=1)  # (16, 8)
    joint = torch.softmax(-E.flatten(), dim=0).reshape(E.shape)
    p_h_given_v = joint / joint.sum(dim=1, keepdim=True)
    expected_h = p_h_given_v @ H  # E[h | v]
    assert torch.allclose(Fn.hidden_probs(V, W, c), expected_h, atol=1e-10)
    p_v_given_h = joint / joint.sum(dim=0, keepdim=True)
    expected_v = p_v_given_h.t() @ V
    assert torch.allclose(Fn.visible_mean(H, W, b), expected_v, atol=1e-10)


def test_cd_statistics_match_autograd_of_free_energy_difference():
    # Theano tutorial's oracle: the CD gradient is -grad(mean F(v_data) - mean F(v_model)),
    # model samples held fixed, with h = p(h|v).
    W, b, c = tiny_params(n_visible=6, n_hidden=5, seed=5)
    g = torch.Generator().manual_seed(0)
    v_data = (torch.rand(7, 6, generator=g, dtype=torch.float64) < 0.5).double()
    v_model = (torch.rand(9, 6, generator=g, dtype=torch.float64) < 0.5).double()
    Wr, br, cr = (t.clone().requires_grad_(True) for t in (W, b, c))
    cost = Fn.free_energy(v_data, Wr, br, cr).mean() - Fn.free_energy(v_model, Wr, br, cr).mean()
    gW, gb, gc = torch.autograd.grad(cost, (Wr, br, cr))
    dW, db, dc = Fn.cd_statistics(v_data, Fn.hidden_probs(v_data, W, c), v_model, Fn.hidden_probs(v_model, W, c))
    assert torch.allclose(dW, -gW, atol=1e-12)
    assert torch.allclose(db, -gb, atol=1e-12)
    assert torch.allclose(dc, -gc, atol=1e-12)


def test_cd_statistics_equal_exact_gradient_in_expectation():
    # with exact model expectations, the statistics are the true log-likelihood gradient
    W, b, c = tiny_params(n_visible=4, n_hidden=3, seed=6, scale=0.5)
    V = all_binary(4)
    data = V[[1, 5, 10, 15, 15]]
    logp_model = -Fn.free_energy(V, W, b, c)
    p_model = torch.softmax(logp_model, dim=0)
    Wr, br, cr = (t.clone().requires_grad_(True) for t in (W, b, c))
    log_z = torch.logsumexp(-Fn.free_energy(V, Wr, br, cr), dim=0)
    ll = (-Fn.free_energy(data, Wr, br, cr) - log_z).mean()
    gW, gb, gc = torch.autograd.grad(ll, (Wr, br, cr))
    h_model = Fn.hidden_probs(V, W, c)
    model_W = (h_model * p_model[:, None]).t() @ V
    dW = Fn.hidden_probs(data, W, c).t() @ data / len(data) - model_W
    assert torch.allclose(dW, gW, atol=1e-12)
    assert torch.allclose(data.mean(0) - p_model @ V, gb, atol=1e-12)


def test_exact_pseudo_likelihood_matches_definition():
    W, b, c = tiny_params(n_visible=5, n_hidden=4, seed=7)
    V = all_binary(5)
    F0 = Fn.free_energy(V, W, b, c)
    expected = torch.zeros(len(V), dtype=torch.float64)
    for i in range(5):
        Vf = V.clone()
        Vf[:, i] = 1 - Vf[:, i]
        expected += torch.nn.functional.logsigmoid(Fn.free_energy(Vf, W, b, c) - F0)
    got = Fn.pseudo_likelihood(V, W, b, c, exact=True, chunk_elements=40)  # forces chunking
    assert torch.allclose(got, expected, atol=1e-10)
    assert torch.allclose(Fn.pseudo_likelihood(V, W, b, c, exact=True, per_unit=True), expected / 5, atol=1e-10)


def test_stochastic_pseudo_likelihood_is_unbiased_for_exact():
    W, b, c = tiny_params(n_visible=5, n_hidden=4, seed=8)
    v = all_binary(5)[[3, 17, 30]]
    exact = Fn.pseudo_likelihood(v, W, b, c, exact=True)
    g = torch.Generator().manual_seed(0)
    reps = v.repeat(4000, 1)
    est = Fn.pseudo_likelihood(reps, W, b, c, generator=g).reshape(4000, 3).mean(0)
    assert torch.allclose(est, exact, rtol=0.05)


def test_sample_bernoulli_frequency_and_determinism():
    p = torch.tensor([0.1, 0.5, 0.9]).expand(20000, 3)
    s1 = Fn.sample_bernoulli(p, torch.Generator().manual_seed(3))
    s2 = Fn.sample_bernoulli(p, torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    assert set(s1.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(s1.mean(0), torch.tensor([0.1, 0.5, 0.9]), atol=0.02)


def test_gaussian_sampling_mean_and_variance():
    W, b, c = tiny_params(seed=9)
    h = torch.ones(20000, 3, dtype=torch.float64)
    v, mean = Fn.sample_visible(h, W, b, "gaussian", torch.Generator().manual_seed(0))
    assert torch.allclose(mean[0], b + W.sum(0))
    assert torch.allclose(v.mean(0), mean[0], atol=0.05)
    assert torch.allclose(v.var(0), torch.ones(4, dtype=torch.float64), atol=0.05)


def test_shape_mismatch_message_names_both_shapes():
    W = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 5\)"):
        Fn.hidden_probs(torch.zeros(2, 5), W, torch.zeros(3))
    with pytest.raises(ValueError, match="h must have shape"):
        Fn.visible_mean(torch.zeros(2, 4), W, torch.zeros(4))


def test_reconstruction_error_definition():
    a = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert math.isclose(float(Fn.reconstruction_error(a, b)), (1 + 2) / 2)
