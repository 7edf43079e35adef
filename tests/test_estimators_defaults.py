"""Out-of-the-box behaviour of the DBN estimators: visible="auto" and the internal scalings,
scikit-learn's conventions (partial_fit, warm_start, its messages) and the defaults table."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.preprocessing import StandardScaler

from dbn import DBNClassifier, DBNRegressor, DBNTransformer


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def _raw(net, X):
    with torch.no_grad():
        return net.eval()(torch.as_tensor(X, dtype=next(net.parameters()).dtype)).numpy()


def test_auto_picks_bernoulli_for_unit_interval_data():
    X, y = load_digits(return_X_y=True)
    clf = DBNClassifier((16,), n_iter=1, max_iter=2, random_state=0).fit(X[:200] / 16, y[:200])
    assert clf.visible_ == "bernoulli"
    assert clf.input_mean_ is None and clf.input_scale_ is None
    assert clf.stack_.layers[0].visible == "bernoulli"


def test_auto_picks_and_standardises_gaussian(iris):
    X, y = iris
    clf = DBNClassifier((16,), n_iter=1, max_iter=2, random_state=0).fit(X, y)
    assert clf.visible_ == "gaussian" and clf.stack_.layers[0].visible == "gaussian"
    scaler = StandardScaler().fit(X)
    np.testing.assert_allclose(clf.input_mean_, scaler.mean_)
    np.testing.assert_allclose(clf.input_scale_, scaler.scale_)
    # the RBM saw standardised data: its visible biases sit near the (zero) means
    assert np.abs(clf.stack_.layers[0].visible_bias.detach().numpy()).max() < 0.5
    tr = DBNTransformer((4,), n_iter=1, random_state=0).fit(X)
    assert tr.visible_ == "gaussian"
    np.testing.assert_allclose(tr.input_mean_, scaler.mean_)


def test_explicit_bernoulli_keeps_refusing_data_outside_unit_interval(iris):
    X, y = iris
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DBNClassifier((4,), visible="bernoulli", n_iter=1, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="Negative values in data"):
        DBNClassifier((4,), visible="bernoulli", n_iter=1, max_iter=1).fit(X - 10, y)


def test_export_of_standardised_gaussian_stack_takes_raw_inputs(iris):
    X, y = iris
    clf = DBNClassifier((16, 8), n_iter=2, max_iter=20, random_state=0).fit(X, y)
    probs = torch.softmax(torch.as_tensor(_raw(clf.to_torch(), X)), 1).numpy()
    np.testing.assert_allclose(probs, clf.predict_proba(X), rtol=1e-4, atol=1e-5)
    tr = DBNTransformer((6, 3), n_iter=2, random_state=0).fit(X)
    np.testing.assert_allclose(_raw(tr.to_torch(), X), tr.transform(X), rtol=1e-4, atol=1e-5)


def test_regressor_standardises_targets(iris):
    X, _ = iris
    y = 1000.0 + 250.0 * X[:, 2]  # far from unit scale
    reg = DBNRegressor((16,), n_iter=2, max_iter=50, random_state=0).fit(X, y)
    assert reg.target_mean_ == pytest.approx([y.mean()]) and reg.target_scale_ == pytest.approx([y.std()])
    assert reg.score(X, y) > 0.8
    np.testing.assert_allclose(_raw(reg.to_torch(), X).ravel(), reg.predict(X), rtol=1e-4)


def test_save_load_keeps_the_scalings(iris, tmp_path):
    X, _ = iris
    y = 10 * X[:, :2]
    reg = DBNRegressor((8,), n_iter=1, max_iter=3, random_state=0).fit(X, y)
    back = DBNRegressor.load(reg.save(tmp_path / "reg.dbn"))
    assert back.visible_ == "gaussian"
    np.testing.assert_allclose(back.predict(X), reg.predict(X), rtol=1e-6)


def test_partial_fit_one_epoch_per_call(iris):
    X, y = iris
    clf = DBNClassifier((8,), n_iter=1, random_state=0)
    with pytest.raises(ValueError, match="'classes'"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:75], y[:75], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1, 2]
    clf.partial_fit(X[75:], y[75:])
    assert clf.n_iter_ == 2 and [r["epoch"] for r in clf.history_] == [1, 2]
    with pytest.raises(ValueError, match=r"labels \[7\] not in classes_"):
        clf.partial_fit(X[:5], np.full(5, 7))
    reg = DBNRegressor((8,), n_iter=1, random_state=0).partial_fit(X, X[:, 0])
    before = reg.predict(X)
    reg.partial_fit(X, X[:, 0])
    assert reg.n_iter_ == 2 and not np.array_equal(before, reg.predict(X))


def test_warm_start_continues_fine_tuning(iris):
    X, y = iris
    clf = DBNClassifier((8,), n_iter=1, max_iter=3, warm_start=True, random_state=0).fit(X, y)
    stack = clf.stack_
    clf.fit(X, y)
    assert clf.n_iter_ == 6 and clf.stack_ is stack  # no second pretraining
    cold = DBNClassifier((8,), n_iter=1, max_iter=3, random_state=0).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 3


def test_sample_weight_error_names_the_public_class(iris):
    X, y = iris
    with pytest.raises(TypeError, match=r"DBNClassifier\.fit\(\) got an unexpected keyword argument 'sample_weight'"):
        DBNClassifier((4,), n_iter=1, max_iter=1).fit(X, y, sample_weight=np.ones(len(y)))
    with pytest.raises(TypeError, match=r"DBNRegressor\.fit\(\)"):
        DBNRegressor((4,), n_iter=1, max_iter=1).fit(X, y, sample_weight=np.ones(len(y)))


def test_scikit_learn_messages(iris):
    X, y = iris
    with pytest.raises(ValueError, match="Unknown label type"):
        DBNClassifier((4,), visible="bernoulli", n_iter=1, max_iter=1).fit(X, y + 0.5)
    # one sample and one feature work (tests/test_hostile.py), as check_fit2d_1sample/_1feature accept
    DBNClassifier((4,), n_iter=1, max_iter=1).fit(X[:1], y[:1])
    DBNClassifier((4,), n_iter=1, max_iter=1).fit(X[:, :1], y)


@pytest.mark.slow
def test_defaults_benchmark_runs_reduced(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_defaults.py"
    spec = importlib.util.spec_from_file_location("bench_defaults", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--datasets", "iris", "diabetes"]) == 0
    out = capsys.readouterr().out
    assert "| iris | accuracy |" in out and "| diabetes | R^2 |" in out
