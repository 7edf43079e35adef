import io

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from dbn import RBM, RBMTransformer

# Checks whose generated data lie outside [0, 1]: Bernoulli visible units reject such data with a
# ValueError by design (the Gaussian instance runs every one of these checks). Negative data are
# refused in scikit-learn's words ("Negative values in data"), so check_positive_only_tag_during_fit passes.
_OUT_OF_RANGE = (
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_estimators_dtypes",
    "check_pipeline_consistency",
    "check_estimators_pickle",
    "check_estimators_pickle(readonly_memmap=True)",
    "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array",
)


def _expected_failures(estimator):
    if estimator.visible == "bernoulli":
        return {name: "check data lie outside [0, 1], which Bernoulli visible units reject" for name in _OUT_OF_RANGE}
    return {}


@parametrize_with_checks(
    [
        RBMTransformer(n_components=8, n_iter=3, random_state=0, visible="gaussian", learning_rate=0.01),
        RBMTransformer(n_components=8, n_iter=3, random_state=0),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target


def test_transform_matches_sklearn_with_same_weights(digits):
    X, _ = digits
    ref = BernoulliRBM(n_components=32, n_iter=2, random_state=0).fit(X)
    ours = RBMTransformer(n_components=32, n_iter=0, random_state=0).fit(X)
    ours.components_ = ref.components_
    ours.intercept_hidden_ = ref.intercept_hidden_
    ours.intercept_visible_ = ref.intercept_visible_
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-5, atol=1e-6)
    # sklearn's free energy equals ours
    v = X[:50]
    np.testing.assert_allclose(
        ours.rbm_.free_energy(torch.from_numpy(v)).detach().numpy(), ref._free_energy(v), rtol=1e-4, atol=1e-4
    )


def _exact_pl(components, hidden, visible, X):
    W, c, b = (torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (components, hidden, visible))
    rbm = RBM(W.shape[1], W.shape[0], dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.copy_(W), rbm.hidden_bias.copy_(c), rbm.visible_bias.copy_(b)
        return rbm.pseudo_likelihood(torch.as_tensor(X, dtype=torch.float64), exact=True).mean().item()


def test_pseudo_likelihood_at_least_as_good_as_sklearn(digits):
    # scikit-learn's own RBM test settings: 64 hidden, lr 0.1, batch 10, 7 epochs, PCD-1
    X, _ = digits
    X = X.astype(np.float64)
    ours, theirs = [], []
    for seed in range(3):
        ref = BernoulliRBM(n_components=64, learning_rate=0.1, batch_size=10, n_iter=7, random_state=seed).fit(X)
        est = RBMTransformer(n_components=64, learning_rate=0.1, batch_size=10, n_iter=7, random_state=seed).fit(X)
        theirs.append(_exact_pl(ref.components_, ref.intercept_hidden_, ref.intercept_visible_, X))
        ours.append(est.score_samples(X, exact=True).mean())
    assert np.mean(ours) >= np.mean(theirs), (ours, theirs)


def test_dtypes_are_preserved(digits):
    X, _ = digits
    for dtype in (np.float32, np.float64):
        est = RBMTransformer(n_components=4, n_iter=1, random_state=0).fit(X.astype(dtype))
        assert est.transform(X.astype(dtype)).dtype == dtype
        assert est.components_.dtype == dtype
    est = RBMTransformer(n_components=4, n_iter=1, random_state=0).fit((X > 0.5).astype(np.int64))
    assert est.transform(X).dtype == np.float64


def test_sparse_and_dense_give_the_same_model(digits):
    X, _ = digits
    Xb = (X[:200] > 0.5).astype(np.float64)
    dense = RBMTransformer(n_components=8, n_iter=2, random_state=1).fit(Xb)
    sparse = RBMTransformer(n_components=8, n_iter=2, random_state=1).fit(sp.csr_matrix(Xb))
    np.testing.assert_array_equal(dense.components_, sparse.components_)
    np.testing.assert_allclose(sparse.transform(sp.csr_matrix(Xb)), dense.transform(Xb))


def test_dataframe_feature_names(digits):
    pd = pytest.importorskip("pandas")
    X, _ = digits
    df = pd.DataFrame(X[:100], columns=[f"px{i}" for i in range(64)])
    est = RBMTransformer(n_components=3, n_iter=1, random_state=0).fit(df)
    assert list(est.feature_names_in_) == list(df.columns)
    assert list(est.get_feature_names_out()) == ["rbmtransformer0", "rbmtransformer1", "rbmtransformer2"]
    with pytest.raises(ValueError, match="feature names"):
        est.transform(df.rename(columns={"px0": "other"}))


def test_same_seed_same_result(digits):
    X, _ = digits
    a = RBMTransformer(n_components=16, n_iter=2, random_state=7, momentum="hinton").fit(X)
    b = RBMTransformer(n_components=16, n_iter=2, random_state=7, momentum="hinton").fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


def test_partial_fit_batches_and_returns_self(digits):
    X, _ = digits
    est = RBMTransformer(n_components=16, batch_size=10, random_state=0)
    assert est.partial_fit(X[:500]) is est
    assert est.partial_fit(X[500:1000]) is est
    assert len(est.history_) == 2
    single = BernoulliRBM(n_components=16, batch_size=10, random_state=0)
    assert single.partial_fit(X[:500]) is None  # the behaviour users complain about
    # one partial_fit call is one mini-batch pass: the same model as fit with n_iter=1
    one_pass = RBMTransformer(n_components=16, batch_size=10, n_iter=1, random_state=0).fit(X[:500])
    partial = RBMTransformer(n_components=16, batch_size=10, random_state=0).partial_fit(X[:500])
    np.testing.assert_array_equal(partial.components_, one_pass.components_)
    full_batch = RBMTransformer(n_components=16, batch_size=500, random_state=0).partial_fit(X[:500])
    assert not np.allclose(partial.components_, full_batch.components_)


def test_exact_and_per_unit_scores(digits):
    X, _ = digits
    est = RBMTransformer(n_components=16, n_iter=3, random_state=0).fit(X)
    exact = est.score_samples(X, exact=True)
    np.testing.assert_allclose(est.score_samples(X, exact=True, per_unit=True), exact / 64, rtol=1e-6)
    np.testing.assert_array_equal(exact, est.score_samples(X, exact=True))  # deterministic
    stochastic = est.score_samples(np.repeat(X[:5], 2000, axis=0)).reshape(5, 2000).mean(1)
    np.testing.assert_allclose(stochastic, exact[:5], rtol=0.1)


def test_history_monitors(digits):
    X, _ = digits
    est = RBMTransformer(n_components=32, n_iter=5, random_state=0, persistent=False, momentum=0.5).fit(X)
    assert len(est.history_) == 5
    keys = {"epoch", "reconstruction_error", "pseudo_likelihood", "pseudo_likelihood_per_unit", "time"}
    assert keys <= set(est.history_[0])
    assert est.history_[-1]["reconstruction_error"] < est.history_[0]["reconstruction_error"]


def test_pipeline_and_grid_search(digits):
    X, y = digits
    pipe = Pipeline(
        [
            ("rbm", RBMTransformer(n_components=100, n_iter=10, learning_rate=0.06, random_state=0)),
            ("clf", LogisticRegression(C=100, max_iter=1000)),
        ]
    )
    pipe.fit(X[:1200], y[:1200])
    assert pipe.score(X[1200:], y[1200:]) > 0.85
    pipe.set_params(rbm__n_iter=2, clf__C=1.0, clf__max_iter=200)
    grid = GridSearchCV(pipe, {"rbm__n_components": [8, 32]}, cv=2).fit(X[:600], y[:600])
    assert grid.best_params_["rbm__n_components"] in (8, 32)
    assert hasattr(grid.best_estimator_.named_steps["rbm"], "components_")


def test_joblib_round_trip(digits):
    X, _ = digits
    est = RBMTransformer(n_components=8, n_iter=1, random_state=0).fit(X)
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    loaded.partial_fit(X[:100])  # training state survives pickling


def test_gibbs_and_sample(digits):
    X, _ = digits
    est = RBMTransformer(n_components=32, n_iter=3, random_state=0).fit((X > 0.5).astype(np.float32))
    v = est.gibbs(X[:10])
    assert v.shape == (10, 64) and set(np.unique(v)) <= {0.0, 1.0}
    s = est.sample(6, n_steps=50, random_state=0)
    assert s.shape == (6, 64) and np.all((s >= 0) & (s <= 1))
    np.testing.assert_array_equal(s, est.sample(6, n_steps=50, random_state=0))


def test_gaussian_visible_units():
    rng = np.random.RandomState(0)
    X = rng.randn(500, 10) @ rng.randn(10, 10)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    est = RBMTransformer(
        n_components=32,
        visible="gaussian",
        learning_rate=0.005,
        n_iter=10,
        batch_size=20,
        persistent=False,
        random_state=0,
    ).fit(X)
    assert est.history_[-1]["reconstruction_error"] < est.history_[0]["reconstruction_error"]
    assert np.all(np.isfinite(est.score_samples(X)))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, np.inf]]), "infinity|NaN"),
        (np.array([[0.5, 2.0]]), r"\[0, 1\]"),
        (np.array([[-0.5, 0.2]]), r"\[0, 1\]"),
        (np.zeros((0, 3)), "0 sample"),
        (np.zeros(3), "2D array"),
    ],
)
def test_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        RBMTransformer(n_iter=1).fit(X)


def test_bad_parameters_and_wrong_width(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="'learning_rate' parameter of RBMTransformer must be"):
        RBMTransformer(learning_rate=-1).fit(X)
    with pytest.raises(ValueError, match="'visible' parameter"):
        RBMTransformer(visible="poisson").fit(X)
    with pytest.raises(ValueError, match="'device'"):
        RBMTransformer(device="tpu:0", n_iter=1).fit(X)
    est = RBMTransformer(n_components=4, n_iter=1).fit(X)
    with pytest.raises(ValueError, match="64 features"):
        est.transform(X[:, :10])


def test_score_methods(digits):
    X, _ = digits
    Xb = (X > 0.5).astype(np.float32)
    small = RBMTransformer(n_components=12, n_iter=3, random_state=0).fit(Xb)
    # exact log Z for a 12-hidden-unit model; the log-likelihood is below the pseudo-likelihood's bound 0
    ll = small.score(Xb, method="log_likelihood")
    assert -64 * np.log(2) < ll < 0
    exact = small.score_samples(Xb, exact=True).mean()
    assert small.score(Xb, method="exact_pseudo_likelihood") == pytest.approx(exact)
    from dbn.likelihood import exact_log_partition

    log_z = exact_log_partition(small.rbm_)
    assert small.score(Xb, method="log_likelihood", log_z=log_z) == pytest.approx(ll)
    big = RBMTransformer(n_components=32, n_iter=2, random_state=0).fit(Xb)
    ais_ll = big.score(Xb[:200], method="log_likelihood", n_chains=16, n_betas=500)
    assert np.isfinite(ais_ll) and hasattr(big, "log_z_")
    with pytest.raises(ValueError, match="'method'"):
        big.score(Xb, method="likelihood")
