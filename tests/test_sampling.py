import pytest
import torch

from dbn.rbm import RBM, train_rbm
from dbn.sampling import sample_dbn, sample_rbm

PATTERNS = torch.tensor(
    [
        [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1],
    ],
    dtype=torch.float32,
)


@pytest.fixture(scope="module")
def pattern_rbm():
    g = torch.Generator().manual_seed(0)
    X = PATTERNS[torch.randint(0, 2, (600,), generator=g)]
    X[:200] = PATTERNS[0]  # unequal frequencies: 2/3 of pattern 0 on average
    rbm = RBM(12, 8, generator=g)
    train_rbm(rbm, X, n_epochs=30, learning_rate=0.1, batch_size=20, persistent=True, generator=g)
    return rbm, X


def pattern_fractions(S):
    """Fraction of rows equal to each pattern."""
    return (torch.cdist(S, PATTERNS, p=1) == 0).float().mean(0)


def test_samples_resemble_the_training_patterns(pattern_rbm):
    rbm, X = pattern_rbm
    g = torch.Generator().manual_seed(1)
    S = sample_rbm(rbm, 400, n_steps=200, generator=g, return_means=False)
    assert S.shape == (400, 12)
    assert set(S.unique().tolist()) <= {0.0, 1.0}
    # almost every sample is one of the two patterns, and both appear
    fractions = pattern_fractions(S)
    assert float(fractions.sum()) > 0.85 and float(fractions.min()) > 0.2
    # the per-unit activities roughly match the data's (mode weights are learnt only roughly)
    torch.testing.assert_close(S.mean(0), X.mean(0), atol=0.15, rtol=0)
    # the conditional means are probabilities with the same picture
    M = sample_rbm(rbm, 400, n_steps=200, generator=g)
    assert float(M.min()) >= 0 and float(M.max()) <= 1
    torch.testing.assert_close(M.mean(0), X.mean(0), atol=0.15, rtol=0)


def test_sample_marginals_match_exact_enumeration():
    g = torch.Generator().manual_seed(5)
    rbm = RBM(10, 6, weight_std=1.0, generator=g)
    with torch.no_grad():
        rbm.visible_bias.normal_(0.0, 1.0, generator=g)
        rbm.hidden_bias.normal_(0.0, 1.0, generator=g)
    V = ((torch.arange(2**10)[:, None] >> torch.arange(10)) & 1).float()
    p = torch.softmax(-rbm.free_energy(V).detach().double(), dim=0)
    exact_mean = (p[:, None] * V.double()).sum(0).float()
    S = sample_rbm(rbm, 4000, n_steps=50, generator=g, return_means=False)
    # 4000 independent chains: standard error <= 0.008 per unit
    torch.testing.assert_close(S.mean(0), exact_mean, atol=0.035, rtol=0)
    # thinned samples from fewer, longer chains estimate the same marginals
    T = sample_rbm(rbm, 4000, n_steps=50, n_samples_per_chain=20, thin=5, generator=g, return_means=False)
    torch.testing.assert_close(T.mean(0), exact_mean, atol=0.05, rtol=0)


def test_chains_thinning_and_ordering(pattern_rbm):
    rbm, X = pattern_rbm
    g = torch.Generator().manual_seed(2)
    S = sample_rbm(rbm, 10, n_steps=5, n_samples_per_chain=4, thin=3, generator=g)
    assert S.shape == (10, 12)  # 3 chains x 4 samples, trimmed to 10
    # chains started from given states with no burn-in yield those states first
    init = PATTERNS.repeat(3, 1)
    S = sample_rbm(rbm, 6, n_steps=0, init=init, generator=torch.Generator().manual_seed(3))
    assert torch.equal(S, init)
    S = sample_rbm(rbm, 12, n_steps=0, n_samples_per_chain=2, init=init, generator=torch.Generator().manual_seed(3))
    assert torch.equal(S[0::2], init) and not torch.equal(S[1::2], init)
    D = sample_rbm(rbm, 6, n_steps=3, init="data", data=X, generator=torch.Generator().manual_seed(3))
    assert D.shape == (6, 12)


def test_same_seed_same_samples(pattern_rbm):
    rbm, _ = pattern_rbm
    a = sample_rbm(rbm, 20, n_steps=30, n_samples_per_chain=2, generator=torch.Generator().manual_seed(7))
    b = sample_rbm(rbm, 20, n_steps=30, n_samples_per_chain=2, generator=torch.Generator().manual_seed(7))
    c = sample_rbm(rbm, 20, n_steps=30, n_samples_per_chain=2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gaussian_rbm_samples():
    g = torch.Generator().manual_seed(0)
    rbm = RBM(5, 3, visible="gaussian", weight_std=0.0, generator=g)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5]))
    S = sample_rbm(rbm, 4000, n_steps=2, generator=g, return_means=False)
    torch.testing.assert_close(S.mean(0), rbm.visible_bias.detach(), atol=0.08, rtol=0)
    torch.testing.assert_close(S.std(0), torch.ones(5), atol=0.08, rtol=0)


def test_sample_dbn_generates_through_the_stack(pattern_rbm):
    rbm, X = pattern_rbm
    g = torch.Generator().manual_seed(4)
    top = RBM(8, 6, generator=g)
    H = rbm.hidden_probs(X)
    train_rbm(top, H, n_epochs=30, learning_rate=0.1, batch_size=20, persistent=True, generator=g)
    S = sample_dbn([rbm, top], 300, n_steps=200, generator=g)
    assert S.shape == (300, 12)
    assert float(S.min()) >= 0 and float(S.max()) <= 1
    binary = sample_dbn([rbm, top], 300, n_steps=200, generator=g, return_means=False)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    fractions = pattern_fractions(binary)
    assert float(fractions.sum()) > 0.8 and float(fractions.min()) > 0.2
    # the mean-field images are close to the patterns too
    assert float(torch.cdist(S, PATTERNS, p=1).min(1).values.median()) < 1.0
    # a one-layer DBN is the RBM itself (same random stream)
    a = sample_dbn([rbm], 5, n_steps=10, generator=torch.Generator().manual_seed(1))
    b = sample_rbm(rbm, 5, n_steps=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    started = sample_dbn([rbm, top], 4, n_steps=2, init="data", data=X, generator=g)
    assert started.shape == (4, 12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 3, "n_steps": -1}, "n_steps"),
        ({"n_samples": 3, "thin": 0}, "thin"),
        ({"n_samples": 3, "n_samples_per_chain": 0}, "n_samples_per_chain"),
        ({"n_samples": 3, "init": "zeros"}, "init"),
        ({"n_samples": 3, "init": "data"}, "data"),
        ({"n_samples": 3, "init": torch.zeros(2, 4)}, "init"),
        ({"n_samples": 3, "init": torch.zeros(3, 5)}, "features"),
    ],
)
def test_sample_rbm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_rbm(RBM(4, 2), **kwargs)


def test_sample_dbn_bad_arguments():
    with pytest.raises(ValueError, match="hidden units"):
        sample_dbn([RBM(6, 4), RBM(5, 2)], 3)
    with pytest.raises(ValueError, match="empty"):
        sample_dbn([], 3)
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        sample_dbn([RBM(6, 4), "top"], 3)
