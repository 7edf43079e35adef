"""Multi-label classification (a binary indicator matrix as y), as MLPClassifier supports it,
and multi-output regression."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_multilabel_classification
from sklearn.metrics import accuracy_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils import estimator_checks

from dbn import DBNClassifier, DBNRegressor
from dbn.network import build_mlp
from dbn.training import evaluate, fit_network


@pytest.fixture(scope="module")
def multilabel():
    X, Y = make_multilabel_classification(600, 20, n_classes=4, n_labels=2, random_state=0)
    X = MinMaxScaler().fit_transform(X).astype(np.float32)
    return X[:400], Y[:400], X[400:], Y[400:]


def _small(**kw):
    return DBNClassifier((32,), **{"n_iter": 5, "max_iter": 50, "learning_rate_init": 0.01, "random_state": 0, **kw})


@pytest.mark.parametrize("params", [{"pretrain": "rbm"}, {"pretrain": None, "activation": "relu", "init": "he"}])
def test_learns_label_sets_as_mlp_does(multilabel, params):
    Xtr, Ytr, Xte, Yte = multilabel
    rows, counts = np.unique(Ytr, axis=0, return_counts=True)
    baseline = (Yte == rows[counts.argmax()]).all(axis=1).mean()  # the most frequent label set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP's ConvergenceWarning
        mlp = MLPClassifier((32,), max_iter=50, learning_rate_init=0.01, random_state=0).fit(Xtr, Ytr)
    clf = _small(**params).fit(Xtr, Ytr)
    score = clf.score(Xte, Yte)
    assert score == accuracy_score(Yte, clf.predict(Xte))  # subset accuracy
    assert score > baseline + 0.25, (score, baseline)
    assert score > mlp.score(Xte, Yte) - 0.1, (score, mlp.score(Xte, Yte))
    assert clf.history_.score_name == "subset_accuracy"


def test_output_shapes_dtypes_and_classes(multilabel):
    Xtr, Ytr, Xte, _ = multilabel
    clf = _small(pretrain=None, max_iter=3).fit(Xtr, Ytr)
    proba = clf.predict_proba(Xte)
    pred = clf.predict(Xte)
    assert proba.shape == pred.shape == (len(Xte), 4)
    assert proba.dtype == np.float64 and pred.dtype == Ytr.dtype
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(Ytr.dtype))
    np.testing.assert_allclose(clf.predict_log_proba(Xte), np.log(proba), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clf.classes_, np.arange(4))
    # bool and float indicator matrices, sparse ones too; predictions keep the targets' dtype
    assert clf.fit(Xtr, Ytr.astype(bool)).predict(Xte).dtype == bool
    assert clf.fit(Xtr, sp.csr_matrix(Ytr.astype(float))).predict(Xte).dtype == np.float64


def test_export_gives_logits(multilabel):
    Xtr, Ytr, Xte, _ = multilabel
    clf = _small(n_iter=2, max_iter=3).fit(Xtr, Ytr)
    with torch.no_grad():
        out = clf.to_torch().eval()(torch.as_tensor(Xte))
    np.testing.assert_allclose(torch.sigmoid(out).numpy(), clf.predict_proba(Xte), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(multilabel, tmp_path):
    Xtr, Ytr, Xte, _ = multilabel
    clf = _small(n_iter=2, max_iter=3).fit(Xtr, Ytr.astype(bool))
    loaded = DBNClassifier.load(clf.save(tmp_path / "clf.dbn"))
    np.testing.assert_array_equal(loaded.predict_proba(Xte), clf.predict_proba(Xte))
    np.testing.assert_array_equal(loaded.predict(Xte), clf.predict(Xte))
    assert loaded.predict(Xte).dtype == bool
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    loaded.partial_fit(Xtr, Ytr)  # it trains on as a multi-label model
    assert loaded.n_iter_ == clf.n_iter_ + 1


def test_partial_fit_and_warm_start(multilabel):
    Xtr, Ytr, Xte, Yte = multilabel
    clf = DBNClassifier((32,), pretrain=None, learning_rate_init=0.01, random_state=0)
    clf.partial_fit(Xtr[:200], Ytr[:200])  # no 'classes' needed: the columns are the labels
    for _ in range(20):
        clf.partial_fit(Xtr, Ytr)
    assert clf.n_iter_ == 21 and clf.score(Xte, Yte) > 0.3
    DBNClassifier((8,), pretrain=None, max_iter=1).partial_fit(Xtr, Ytr, classes=range(4))
    with pytest.raises(ValueError, match=r"'classes' must be None or range\(4\)"):
        DBNClassifier((8,), pretrain=None, max_iter=1).partial_fit(Xtr, Ytr, classes=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="fitted on 4 labels; y has 3"):
        clf.partial_fit(Xtr, Ytr[:, :3])
    with pytest.raises(ValueError, match="fitted on multi-label y but this y is single-label"):
        clf.partial_fit(Xtr, Ytr[:, 0])
    warm = _small(pretrain=None, max_iter=2, warm_start=True).fit(Xtr, Ytr)
    assert warm.fit(Xtr, Ytr).n_iter_ == 4
    with pytest.raises(ValueError, match="fitted on multi-label y but this y is single-label"):
        warm.fit(Xtr, Ytr[:, 0])
    # a new fit (warm_start=False) may change the kind of target; a refused y changes nothing
    model = _small(pretrain=None, max_iter=2).fit(Xtr, Ytr)
    before = model.predict_proba(Xte)
    for bad in (Ytr * 2, Xtr[:, 0]):
        with pytest.raises(ValueError):
            model.fit(Xtr, bad)
        np.testing.assert_array_equal(model.predict_proba(Xte), before)
    single = model.fit(Xtr, Ytr[:, 0])
    assert single.predict(Xte).shape == (len(Xte),) and single.predict_proba(Xte).shape == (len(Xte), 2)
    assert single.fit(Xtr, Ytr).predict(Xte).shape == Yte.shape


def test_early_stopping_watches_subset_accuracy(multilabel):
    Xtr, Ytr, _, _ = multilabel
    clf = _small(pretrain=None, max_iter=200, early_stopping=True, n_iter_no_change=3).fit(Xtr, Ytr)
    assert clf.n_iter_ < 200
    scores = clf.history_.column("valid_score")
    assert clf.history_.best_epoch is not None and all(0 <= s <= 1 for s in scores)
    # the validation score is the subset accuracy on 40 held-out samples: a multiple of 1/40
    assert all(abs(s * 40 - round(s * 40)) < 1e-9 for s in scores)


@pytest.mark.parametrize(
    "Y, match",
    [
        (np.c_[np.arange(40) % 3, np.arange(40) % 2], "multiclass-multioutput is not supported"),
        (np.c_[np.arange(40) % 2, np.arange(40) % 2] * 2 - 1, r"y has the values \[-1, 1\]"),
        (np.random.RandomState(0).rand(40, 2), "Unknown label type"),
    ],
)
def test_bad_label_matrices_raise(Y, match):
    X = np.random.RandomState(0).rand(40, 3)
    with pytest.raises(ValueError, match=match) as info:
        DBNClassifier((4,), pretrain=None, max_iter=1).fit(X, Y)
    if "Unknown" not in match:
        assert "MultiOutputClassifier" in str(info.value) and "MultiLabelBinarizer" in str(info.value)


def test_column_vector_stays_single_label():
    X = np.random.RandomState(0).rand(40, 3)
    y = (np.arange(40) % 3).reshape(-1, 1)
    with pytest.warns(Warning, match="column-vector y"):
        clf = DBNClassifier((4,), pretrain=None, max_iter=1, random_state=0).fit(X, y)
    assert clf.predict(X).shape == (40,) and clf.predict_proba(X).shape == (40, 3)


_MULTILABEL_CHECKS = [
    getattr(estimator_checks, name)
    for name in dir(estimator_checks)
    if name.startswith("check_classifiers_multilabel_")
]


@pytest.mark.skipif(not _MULTILABEL_CHECKS, reason="this scikit-learn has no multi-label checks")
@pytest.mark.parametrize("check", _MULTILABEL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("params", [{}, {"pretrain": None, "activation": "relu", "init": "he"}])
def test_sklearn_multilabel_checks(check, params):
    check("DBNClassifier", DBNClassifier((8,), n_iter=2, max_iter=20, random_state=0, **params))


def test_fit_network_binary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 4, generator=g)
    Y = torch.stack([X[:, 0] > 0.5, X[:, 1] + X[:, 2] > 1.0], dim=1).float()
    net = build_mlp(4, (16,), 2, activation="relu", init="he", generator=g)
    history = fit_network(
        net,
        X,
        Y,
        loss="binary_cross_entropy",
        optimizer="adam",
        learning_rate=0.02,
        max_iter=40,
        batch_size=50,
        generator=g,
    )
    loss, score = evaluate(net, X, Y, loss="binary_cross_entropy")
    with torch.no_grad():
        out = net.eval()(X)
    assert loss == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(out, Y)), rel=1e-5)
    assert score == float(((out > 0) == (Y > 0.5)).all(dim=1).double().mean()) and score > 0.9
    assert history.score_name == "subset_accuracy" and history[-1]["train_loss"] < history[0]["train_loss"]
    # stable on extreme logits: the loss stays finite where a sigmoid would saturate to 0 or 1
    big = build_mlp(4, (), 2, generator=g)
    with torch.no_grad():
        big[0].weight.fill_(1e4)
    assert np.isfinite(evaluate(big, X, 1 - (X[:, :2] > 0).float(), loss="binary_cross_entropy")[0])
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
        fit_network(net, X, Y * 2, loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="per sample but y has"):
        fit_network(net, X, Y[:, :1], loss="binary_cross_entropy")


def test_regressor_multioutput_save_partial_fit_and_export(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(200, 4)
    Y = np.c_[X.sum(1), 10 * (X[:, 0] - X[:, 1])]
    reg = DBNRegressor(
        (16,), pretrain=None, activation="relu", init="he", max_iter=20, learning_rate_init=0.01, random_state=0
    ).fit(X, Y)
    assert reg.predict(X).shape == (200, 2) and reg.score(X, Y) > 0.8
    with torch.no_grad():
        np.testing.assert_allclose(
            reg.to_torch()(torch.as_tensor(X, dtype=torch.float32)).numpy(), reg.predict(X), rtol=1e-4, atol=1e-4
        )
    loaded = DBNRegressor.load(reg.save(tmp_path / "reg.dbn"))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.partial_fit(X, Y).n_iter_ == 21
    with pytest.raises(ValueError, match="fitted on 2 targets; y has 1"):
        loaded.partial_fit(X, Y[:, 0])
