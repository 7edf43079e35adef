import dataclasses
import math

import pytest
import torch
from _hostcalls import count_host_calls

from dbn import functional as Fn
from dbn.likelihood import (
    AISResult,
    ReverseAISResult,
    ais_log_partition,
    ais_schedule,
    base_rate_bias,
    effective_sample_size,
    exact_log_partition,
    log_likelihood,
    reverse_ais_log_likelihood,
)
from dbn.rbm import RBM, train_rbm


def random_rbm(n_visible, n_hidden, *, weight_std=0.5, visible_mean=0.0, seed=0, visible="bernoulli"):
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden, weight_std=weight_std, visible=visible, generator=g)
    with torch.no_grad():
        rbm.visible_bias.normal_(visible_mean, 1.0, generator=g)
        rbm.hidden_bias.normal_(0.0, 1.0, generator=g)
    return rbm


def all_binary(n):
    index = torch.arange(2**n)
    return ((index[:, None] >> torch.arange(n)) & 1).double()


def brute_force_log_z(rbm):
    """log sum over every (v, h) of exp(-E(v, h)) with functional.energy."""
    W, b, c = (p.detach().double() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    V, H = all_binary(rbm.n_visible), all_binary(rbm.n_hidden)
    v = V.repeat_interleave(H.shape[0], dim=0)
    h = H.repeat(V.shape[0], 1)
    return float(torch.logsumexp(-Fn.energy(v, h, W, b, c), dim=0))


# -- exact enumeration ------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 4), (4, 6), (7, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_log_partition_matches_brute_force_over_both_layers(shape, seed):
    rbm = random_rbm(*shape, weight_std=1.0, seed=seed)
    expected = brute_force_log_z(rbm)
    assert exact_log_partition(rbm) == pytest.approx(expected, abs=1e-9)
    assert exact_log_partition(rbm, layer="hidden") == pytest.approx(expected, abs=1e-9)
    assert exact_log_partition(rbm, layer="visible") == pytest.approx(expected, abs=1e-9)


def test_enumeration_over_visible_and_hidden_agree_in_chunks():
    rbm = random_rbm(13, 11, weight_std=0.8, seed=3)
    by_hidden = exact_log_partition(rbm, layer="hidden", batch_size=100)
    by_visible = exact_log_partition(rbm, layer="visible", batch_size=333)
    assert by_hidden == pytest.approx(by_visible, abs=1e-8)
    assert exact_log_partition(rbm) == pytest.approx(by_hidden, abs=1e-8)


def test_exact_log_partition_is_stable_for_large_parameters():
    rbm = random_rbm(10, 8, weight_std=20.0, seed=4)
    log_z = exact_log_partition(rbm)
    assert math.isfinite(log_z)
    assert log_z == pytest.approx(brute_force_log_z(rbm), rel=1e-12)


def test_gaussian_exact_log_partition_matches_quadrature():
    rbm = random_rbm(2, 3, weight_std=0.7, seed=5, visible="gaussian")
    W, b, c = (p.detach().double() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    step = 0.04
    grid = torch.arange(-14.0, 14.0, step, dtype=torch.float64)
    v = torch.cartesian_prod(grid, grid)
    quadrature = float(torch.logsumexp(-Fn.free_energy(v, W, b, c, "gaussian"), dim=0)) + 2 * math.log(step)
    assert exact_log_partition(rbm) == pytest.approx(quadrature, abs=1e-6)


def test_uniform_rbm_log_likelihood_is_minus_n_visible_log_2():
    rbm = RBM(9, 4, weight_std=0.0)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(17, 9, generator=g).round()
    ll = log_likelihood(rbm, X, exact_log_partition(rbm))
    assert ll.shape == (17,)
    torch.testing.assert_close(ll, torch.full((17,), -9 * math.log(2.0), dtype=torch.float64))


def test_log_likelihood_is_a_normalised_distribution():
    rbm = random_rbm(6, 5, seed=6)
    log_z = exact_log_partition(rbm)
    ll = log_likelihood(rbm, all_binary(6).float(), log_z)
    assert float(torch.logsumexp(ll, dim=0)) == pytest.approx(0.0, abs=1e-9)
    # accepts log Z as a 0-d tensor too
    as_tensor = torch.tensor(log_z, dtype=torch.float64)
    torch.testing.assert_close(log_likelihood(rbm, all_binary(6).float(), as_tensor), ll)


def test_exact_log_partition_refuses_too_many_configurations():
    rbm = RBM(30, 25)
    with pytest.raises(ValueError, match="max_configurations"):
        exact_log_partition(rbm)
    with pytest.raises(ValueError, match="max_configurations"):
        exact_log_partition(RBM(8, 6), max_configurations=10)
    with pytest.raises(ValueError, match="layer"):
        exact_log_partition(RBM(3, 2, visible="gaussian"), layer="visible")
    with pytest.raises(ValueError, match="layer"):
        exact_log_partition(RBM(3, 2), layer="both")


# -- AIS ---------------------------------------------------------------------------------
def test_paper_schedule():
    betas = ais_schedule()
    assert betas.shape == (14501,)
    assert betas[0] == 0 and betas[-1] == 1
    assert bool((betas.diff() > 0).all())
    assert betas.diff()[0] == pytest.approx(1e-3) and betas.diff()[-1] == pytest.approx(1e-5)
    assert float((betas <= 0.5).sum()) == 501
    scaled = ais_schedule(2901)
    assert scaled.shape == (2901,) and scaled[0] == 0 and scaled[-1] == 1
    assert bool((scaled.diff() > 0).all())
    assert int((scaled <= 0.5).sum()) == 101  # the paper's 1/29 of the steps
    assert ais_schedule(4, schedule="linear").tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def check_ais_against_exact(rbm, base_rate, seeds, n_betas, max_error):
    exact = exact_log_partition(rbm)
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        result = ais_log_partition(rbm, n_chains=100, n_betas=n_betas, base_rate=base_rate, generator=g)
        assert result.log_z_low <= exact <= result.log_z_high, (seed, exact, result)
        assert abs(result.log_z - exact) < max_error
        assert result.log_z_high - result.log_z_low < 10 * max_error  # an honest, not a vacuous interval


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ais_matches_exact_on_random_rbms(seed):
    rbm = random_rbm(20, 12, weight_std=0.5, seed=seed)
    check_ais_against_exact(rbm, rbm.visible_bias.detach(), seeds=(10 + seed, 20 + seed), n_betas=2000, max_error=0.06)


def test_ais_matches_exact_on_wide_rbm():
    rbm = random_rbm(784, 15, weight_std=0.1, visible_mean=-2.0, seed=7)
    check_ais_against_exact(rbm, rbm.visible_bias.detach(), seeds=(0,), n_betas=1500, max_error=0.1)


def test_ais_matches_exact_on_rbm_trained_on_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    g = torch.Generator().manual_seed(0)
    X = torch.tensor(datasets.load_digits().data / 16.0, dtype=torch.float32)
    X = (torch.rand(X.shape, generator=g) < X).float()  # stochastic binarisation
    rbm = RBM(64, 15, generator=g)
    train_rbm(rbm, X, n_epochs=15, learning_rate=0.05, batch_size=20, persistent=True, generator=g)
    assert rbm.weight.std() > 0.2  # a trained, not a near-uniform, model
    check_ais_against_exact(rbm, X, seeds=(0, 1), n_betas=2000, max_error=0.1)
    # and the test log-likelihood through either log Z agrees
    result = ais_log_partition(rbm, n_chains=100, n_betas=2000, base_rate=X, generator=g)
    exact = log_likelihood(rbm, X, exact_log_partition(rbm)).mean()
    assert float(log_likelihood(rbm, X, result).mean()) == pytest.approx(float(exact), abs=0.1)


def test_ais_gaussian_visible_matches_exact():
    rbm = random_rbm(6, 8, weight_std=0.3, seed=8, visible="gaussian")
    check_ais_against_exact(rbm, rbm.visible_bias.detach(), seeds=(0, 1), n_betas=2000, max_error=0.06)


def test_ais_is_exact_for_a_zero_weight_rbm_equal_to_its_base():
    rbm = RBM(10, 4, weight_std=0.0)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.linspace(-2, 2, 10))
    result = ais_log_partition(
        rbm, n_chains=10, n_betas=50, base_rate=rbm.visible_bias.detach(), generator=torch.Generator().manual_seed(0)
    )
    assert result.log_z == pytest.approx(exact_log_partition(rbm), abs=1e-9)
    assert float(result.log_weights.abs().max()) < 1e-9


def test_ais_result_fields_and_determinism():
    rbm = random_rbm(12, 6, seed=9)
    X = (torch.rand(50, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    runs = [
        ais_log_partition(rbm, n_chains=20, n_betas=300, base_rate=X, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    a, b = runs
    assert isinstance(a, AISResult)
    assert a.log_z == b.log_z and torch.equal(a.log_weights, b.log_weights)
    assert a.n_chains == 20 and a.n_betas == 300 and a.log_weights.shape == (20,)
    assert a.log_weights.dtype == torch.float64
    assert a.log_z_low <= a.log_z <= a.log_z_high and a.time > 0
    assert float(a) == a.log_z
    assert a.log_z == pytest.approx(a.log_z_base + float(torch.logsumexp(a.log_weights, 0)) - math.log(20))
    with pytest.raises(AttributeError):
        a.log_z = 0.0  # frozen
    c = ais_log_partition(rbm, n_chains=20, n_betas=300, base_rate=X, generator=torch.Generator().manual_seed(6))
    assert c.log_z != a.log_z
    explicit = ais_log_partition(
        rbm, n_chains=20, betas=ais_schedule(300), base_rate=X, generator=torch.Generator().manual_seed(5)
    )
    assert explicit.log_z == a.log_z


def test_base_rate_bias():
    X = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    bias = base_rate_bias(X, eps=0.01)
    assert bias[2] == pytest.approx(0.0, abs=1e-6)
    assert bias[1] == pytest.approx(math.log(0.01 / 0.99))
    assert bias[0] == pytest.approx(math.log(0.99 / 0.01))
    torch.testing.assert_close(base_rate_bias(X, visible="gaussian"), X.mean(0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_chains": 1}, "n_chains"),
        ({"n_betas": 1}, "n_betas"),
        ({"schedule": "cosine"}, "schedule"),
        ({"betas": torch.tensor([0.0, 0.7, 0.5, 1.0])}, "betas"),
        ({"betas": torch.tensor([0.1, 1.0])}, "betas"),
        ({"base_rate": torch.zeros(3, 5)}, "base_rate"),
        ({"base_rate": torch.zeros(7)}, "base_rate"),
        ({"base_rate": torch.full((4, 6), 2.0)}, r"\[0, 1\]"),
    ],
)
def test_ais_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ais_log_partition(RBM(6, 3), **kwargs)


def test_log_likelihood_bad_arguments():
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match="features"):
        log_likelihood(rbm, torch.zeros(2, 5), 1.0)
    with pytest.raises(ValueError, match="log_z"):
        log_likelihood(rbm, torch.zeros(2, 4), float("nan"))
    with pytest.raises(ValueError, match="log_z"):
        log_likelihood(rbm, torch.zeros(2, 4), torch.zeros(2))
    with torch.no_grad():
        rbm.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        exact_log_partition(rbm)


# -- exact samples of small models (the reverse-AIS bound is a theorem for model samples) ---------
def model_samples(rbm, n, generator):
    """``n`` exact samples of the visible units, by enumeration."""
    if rbm.visible == "bernoulli":
        V = all_binary(rbm.n_visible).float()
        log_p = log_likelihood(rbm, V, exact_log_partition(rbm))
        return V[torch.multinomial(log_p.exp(), n, replacement=True, generator=generator)]
    # Gaussian visible units: h from its exact marginal, then v ~ N(b + W^T h, I)
    W, b, c = (p.detach().double() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    H = all_binary(rbm.n_hidden)
    mean = b + H @ W
    h = torch.multinomial(torch.softmax(H @ c + 0.5 * (mean**2).sum(1), 0), n, replacement=True, generator=generator)
    return (mean[h] + torch.randn(n, rbm.n_visible, generator=generator, dtype=torch.float64)).float()


def test_model_samples_follow_the_model():
    rbm = random_rbm(3, 4, weight_std=1.0, seed=11)
    X = model_samples(rbm, 20000, torch.Generator().manual_seed(0))
    V = all_binary(3).float()
    p = log_likelihood(rbm, V, exact_log_partition(rbm)).exp()
    counts = (X[:, None, :] == V[None]).all(-1).double().mean(0)
    torch.testing.assert_close(counts, p, atol=0.015, rtol=0)


# -- effective sample size and the AIS interval in log space --------------------------------------
def test_effective_sample_size():
    assert float(effective_sample_size(torch.zeros(7, dtype=torch.float64))) == pytest.approx(7, abs=1e-9)
    # only the weights' ratios matter: shifting the logs by 1000 neither overflows nor changes it
    log_w = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    ess = float(effective_sample_size(log_w))
    assert 1 <= ess <= 50
    assert float(effective_sample_size(log_w + 1000)) == pytest.approx(ess, rel=1e-9)
    w = torch.exp(log_w)
    assert ess == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), rel=1e-9)
    assert float(effective_sample_size(torch.tensor([0.0, -80.0, -80.0, -math.inf]))) == pytest.approx(1.0)
    per_row = effective_sample_size(torch.stack([torch.zeros(4), torch.tensor([0.0, 0.0, -math.inf, -math.inf])]))
    torch.testing.assert_close(per_row, torch.tensor([4.0, 2.0]))
    assert effective_sample_size(torch.zeros(3, 5), dim=0).shape == (5,)
    with pytest.raises(ValueError, match="at least one"):
        effective_sample_size(torch.zeros(0))
    with pytest.raises(TypeError, match="floating"):
        effective_sample_size(torch.zeros(3, dtype=torch.int64))


def test_ais_ess_and_log_space_interval():
    rbm = random_rbm(12, 6, seed=9)
    result = ais_log_partition(rbm, n_chains=50, n_betas=300, generator=torch.Generator().manual_seed(0))
    assert 1 <= result.ess <= 50
    assert result.ess == pytest.approx(float(effective_sample_size(result.log_weights)))
    # the delta method: Var(log mean w) = (n / ESS - 1) / (n - 1), three standard errors each side
    half = 3 * math.sqrt((50 / result.ess - 1) / 49)
    assert result.log_z_high - result.log_z == pytest.approx(half, rel=1e-9)
    assert result.log_z - result.log_z_low == pytest.approx(half, rel=1e-9)
    # to first order it is the Z-scale interval log(mean w -/+ 3 stderr) of RBM_AIS.m
    w = torch.exp(result.log_weights - result.log_weights.max())
    rel_stderr = float(w.std() / w.mean()) / math.sqrt(50)
    assert half == pytest.approx(3 * rel_stderr, rel=1e-9)
    assert result.reliable and "usable" in result.message


def test_ais_equal_weights_give_full_ess_and_a_zero_width_interval():
    rbm = RBM(10, 4, weight_std=0.0)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.linspace(-2, 2, 10))
    result = ais_log_partition(
        rbm, n_chains=16, n_betas=20, base_rate=rbm.visible_bias.detach(), generator=torch.Generator().manual_seed(0)
    )
    assert result.ess == pytest.approx(16, abs=1e-9)
    assert result.log_z_high - result.log_z_low == pytest.approx(0.0, abs=1e-6)
    assert result.reliable


def test_ais_interval_stays_finite_and_flags_uneven_weights():
    """Two temperatures on a sharp model: the Z-scale interval's lower end would be log(<= 0) = -inf."""
    rbm = random_rbm(12, 6, weight_std=3.0, seed=1)
    result = ais_log_partition(rbm, n_chains=100, n_betas=2, generator=torch.Generator().manual_seed(0))
    w = torch.exp(result.log_weights - result.log_weights.max())
    assert float(w.mean() - 3 * w.std() / math.sqrt(100)) <= 0  # where the old interval gave -inf
    assert math.isfinite(result.log_z_low) and math.isfinite(result.log_z_high)
    assert result.log_z_low < result.log_z < result.log_z_high
    assert result.ess < 10
    assert not result.reliable
    assert "n_chains" in result.message and "n_betas" in result.message and f"{result.ess:.1f}" in result.message
    # the same model with a proper schedule is fine
    good = ais_log_partition(rbm, n_chains=100, n_betas=2000, generator=torch.Generator().manual_seed(0))
    assert good.reliable and good.log_z_low <= exact_log_partition(rbm) <= good.log_z_high


# -- reverse AIS ----------------------------------------------------------------------------------
def annealing_model_log_probs(rbm, betas):
    """log p_ann(v) of every visible vector, exactly: the uniform base pushed through one Gibbs
    kernel T_k(v' | v) = sum_h p_k(h | v) p_k(v' | h) per inverse temperature after the first."""
    W, b, c = (p.detach().double() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    V, H = all_binary(rbm.n_visible), all_binary(rbm.n_hidden)

    def bernoulli_table(probs, states):  # probs (m, d), states (s, d) -> (m, s)
        return (probs[:, None, :] * states[None] + (1 - probs[:, None, :]) * (1 - states[None])).prod(-1)

    p = torch.full((V.shape[0],), 1.0 / V.shape[0], dtype=torch.float64)
    for beta in betas[1:]:
        hidden_given_visible = bernoulli_table(torch.sigmoid(beta * (V @ W.t() + c)), H)
        visible_given_hidden = bernoulli_table(torch.sigmoid(beta * b + beta * H @ W), V)
        p = p @ (hidden_given_visible @ visible_given_hidden)
    return p.log()


def test_reverse_ais_is_unbiased_for_the_annealing_model():
    """E[w] = p_ann(v) exactly, whatever the schedule: checked against p_ann by enumeration on a
    schedule so coarse that p_ann differs from the RBM by up to a nat."""
    rbm = random_rbm(4, 3, weight_std=2.0, seed=3)
    betas = [0.0, 0.3, 0.7, 1.0]
    log_p_ann = annealing_model_log_probs(rbm, betas)
    V = all_binary(4).float()
    log_p = log_likelihood(rbm, V, exact_log_partition(rbm))
    assert float((log_p_ann - log_p).abs().max()) > 0.5  # a visibly different model
    result = reverse_ais_log_likelihood(
        rbm, V, betas=torch.tensor(betas), n_chains=20000, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(result.values, log_p_ann, atol=0.04, rtol=0)
    # and the forward sampler's output distribution is that same p_ann (a sanity check of the oracle)
    assert float(torch.logsumexp(log_p_ann, 0)) == pytest.approx(0.0, abs=1e-12)
    assert float((log_p.exp() * (log_p - log_p_ann)).sum()) > 0  # KL(p || p_ann) > 0


def test_reverse_ais_is_exact_for_a_zero_weight_rbm_equal_to_its_base():
    rbm = RBM(10, 4, weight_std=0.0)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.linspace(-2, 2, 10))
        rbm.hidden_bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    X = (torch.rand(30, 10, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    result = reverse_ais_log_likelihood(
        rbm, X, n_betas=50, n_chains=8, base_rate=rbm.visible_bias.detach(), generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(result.values, log_likelihood(rbm, X, exact_log_partition(rbm)), atol=1e-9, rtol=0)
    torch.testing.assert_close(result.ess, torch.full((30,), 8.0, dtype=torch.float64))


def forward_single_run_log_likelihood(rbm, X, log_z, ais):
    """Mean over AIS runs of one chain each of the test log-likelihood ``-F(v) - log Z_run``."""
    mean_free = float(log_likelihood(rbm, X, log_z).mean()) + log_z
    return mean_free - (ais.log_z_base + float(ais.log_weights.mean()))


@pytest.mark.parametrize(
    "visible, shape, weight_std, tolerance",
    [
        ("bernoulli", (12, 6), 2.0, 0.05),
        ("gaussian", (6, 8), 0.5, 0.08),
    ],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_forward_and_reverse_ais_bracket_the_exact_log_likelihood(visible, shape, weight_std, tolerance, seed):
    """Forward AIS errs high, reverse AIS low: with 10 temperatures each single-chain estimate is
    off by about a nat, averaged here over 2000 runs / 500 rows (standard errors about 0.05), so a
    0.3-nat margin is safe; with 1000 temperatures both agree with the exact value."""
    rbm = random_rbm(*shape, weight_std=weight_std, seed=seed, visible=visible)
    g = torch.Generator().manual_seed(seed)
    X = model_samples(rbm, 500, g)  # for model samples the reverse bound is a theorem
    log_z = exact_log_partition(rbm)
    exact = float(log_likelihood(rbm, X, log_z).mean())

    coarse = ais_log_partition(rbm, n_chains=2000, n_betas=10, schedule="linear", generator=g)
    reverse = reverse_ais_log_likelihood(rbm, X, n_betas=10, schedule="linear", generator=g)
    assert forward_single_run_log_likelihood(rbm, X, log_z, coarse) > exact + 0.3
    assert reverse.mean < exact - 0.3

    fine = ais_log_partition(rbm, n_chains=100, n_betas=1000, schedule="linear", generator=g)
    reverse = reverse_ais_log_likelihood(rbm, X, n_betas=1000, schedule="linear", generator=g)
    assert float(log_likelihood(rbm, X, fine).mean()) == pytest.approx(exact, abs=tolerance)
    assert reverse.mean == pytest.approx(exact, abs=tolerance)


@pytest.mark.slow
def test_ais_and_reverse_ais_agree_on_an_rbm_trained_on_digits():
    """On held-out data of a trained model, with the paper's schedule shape (no theorem for the
    reverse side here: p_ann is only in practice worse than p on data)."""
    datasets = pytest.importorskip("sklearn.datasets")
    g = torch.Generator().manual_seed(0)
    X = torch.tensor(datasets.load_digits().data / 16.0, dtype=torch.float32)
    X = (torch.rand(X.shape, generator=g) < X).float()
    train, test = X[:1400], X[1400:]
    rbm = RBM(64, 15, generator=g)
    train_rbm(rbm, train, n_epochs=15, learning_rate=0.05, batch_size=20, persistent=True, generator=g)
    exact = float(log_likelihood(rbm, test, exact_log_partition(rbm)).mean())
    ais = ais_log_partition(rbm, n_chains=200, n_betas=3000, base_rate=train, generator=g)
    reverse = reverse_ais_log_likelihood(rbm, test, n_betas=3000, n_chains=4, base_rate=train, generator=g)
    assert ais.reliable
    assert float(log_likelihood(rbm, test, ais).mean()) == pytest.approx(exact, abs=0.1)
    assert reverse.mean == pytest.approx(exact, abs=0.1)


def test_reverse_ais_result_fields_and_determinism():
    rbm = random_rbm(12, 6, seed=9)
    X = (torch.rand(25, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()

    def run(seed, **kwargs):
        return reverse_ais_log_likelihood(
            rbm, X, n_betas=200, n_chains=6, base_rate=X, generator=torch.Generator().manual_seed(seed), **kwargs
        )

    a, b = run(5), run(5)
    assert isinstance(a, ReverseAISResult)
    assert a.mean == b.mean and torch.equal(a.log_weights, b.log_weights)
    assert a.values.shape == (25,) and a.values.dtype == torch.float64
    assert a.log_weights.shape == (25, 6) and a.ess.shape == (25,)
    assert a.n_chains == 6 and a.n_betas == 200 and a.time > 0
    torch.testing.assert_close(a.values, torch.logsumexp(a.log_weights, 1) - math.log(6))
    assert a.mean == pytest.approx(float(a.values.mean())) and float(a) == a.mean
    assert bool(((a.ess >= 1) & (a.ess <= 6)).all())
    assert a.std_error == pytest.approx(float(a.values.std()) / 5)
    assert math.isfinite(a.mean_low) and a.mean_low < a.mean < a.mean_high
    assert a.mean_high - a.mean == pytest.approx(3 * a.std_error)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.mean = 0.0
    assert run(6).mean != a.mean
    explicit = reverse_ais_log_likelihood(
        rbm, X, betas=ais_schedule(200), n_chains=6, base_rate=X, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(explicit.log_weights, a.log_weights)
    # in batches: the same shapes and the same estimate up to Monte Carlo noise
    batched = run(5, batch_size=7)
    assert batched.values.shape == (25,) and not torch.equal(batched.log_weights, a.log_weights)
    assert batched.mean == pytest.approx(a.mean, abs=0.3)
    single = reverse_ais_log_likelihood(rbm, X[:1], n_betas=20, generator=torch.Generator().manual_seed(0))
    assert single.n_chains == 1 and math.isnan(single.std_error) and float(single.ess) == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_chains": 0}, "n_chains"),
        ({"n_betas": 1}, "n_betas"),
        ({"batch_size": 0}, "batch_size"),
        ({"schedule": "cosine"}, "schedule"),
        ({"betas": torch.tensor([1.0, 0.0])}, "betas"),
        ({"base_rate": torch.zeros(7)}, "base_rate"),
    ],
)
def test_reverse_ais_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reverse_ais_log_likelihood(RBM(6, 3), torch.zeros(4, 6), **kwargs)


def test_reverse_ais_bad_data():
    rbm = RBM(6, 3)
    with pytest.raises(ValueError, match="features"):
        reverse_ais_log_likelihood(rbm, torch.zeros(4, 5), n_betas=10)
    with pytest.raises(ValueError, match="binary"):
        reverse_ais_log_likelihood(rbm, torch.full((4, 6), 0.5), n_betas=10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reverse_ais_log_likelihood(rbm, torch.full((4, 6), 2.0), n_betas=10)
    # real-valued data is fine for Gaussian visible units
    gaussian = RBM(6, 3, visible="gaussian")
    assert reverse_ais_log_likelihood(gaussian, torch.full((4, 6), 0.5), n_betas=10).values.shape == (4,)


# -- no host reads per temperature ----------------------------------------------------------------
def test_reverse_ais_no_host_sync_per_temperature():
    X = (torch.rand(12, 20, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    counts = []
    for n_betas, batch_size in ((100, None), (400, None), (400, 4)):
        g = torch.Generator().manual_seed(0)
        rbm = RBM(20, 8, generator=g)
        with count_host_calls() as c:
            reverse_ais_log_likelihood(
                rbm, X, n_betas=n_betas, n_chains=3, base_rate=X, batch_size=batch_size, generator=g
            )
        counts.append(sum(c.values()))
    assert 0 < counts[0] == counts[1] < 30  # the counter sees the final reads, none per temperature
    assert counts[2] == counts[1]  # nor per batch
