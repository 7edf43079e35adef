import math

import pytest
import torch

from dbn import functional as Fn
from dbn.likelihood import (
    AISResult,
    ais_log_partition,
    ais_schedule,
    base_rate_bias,
    exact_log_partition,
    log_likelihood,
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
    result = ais_log_partition(rbm, n_chains=10, n_betas=50, base_rate=rbm.visible_bias.detach(),
                               generator=torch.Generator().manual_seed(0))
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
    explicit = ais_log_partition(rbm, n_chains=20, betas=ais_schedule(300), base_rate=X,
                                 generator=torch.Generator().manual_seed(5))
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
