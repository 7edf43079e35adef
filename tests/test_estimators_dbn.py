import io

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from dbn import RBM, DBNClassifier, DBNRegressor, DBNTransformer


@parametrize_with_checks(
    [
        DBNTransformer((6, 4), visible="gaussian", n_iter=2, learning_rate=0.01, random_state=0),
        DBNTransformer((6, 4), pretrain="dae", visible="gaussian", n_iter=2, learning_rate=0.01, random_state=0),
        DBNClassifier(
            (8,),
            pretrain=None,
            activation="relu",
            init="he",
            max_iter=20,
            learning_rate_init=0.05,
            solver="sgd",
            random_state=0,
        ),
        DBNClassifier(
            (8,),
            visible="gaussian",
            n_iter=2,
            pretrain_learning_rate=0.01,
            max_iter=30,
            solver="sgd",
            learning_rate_init=0.1,
            random_state=0,
        ),
        DBNRegressor(
            (8,),
            pretrain=None,
            activation="relu",
            init="he",
            solver="adam",
            max_iter=50,
            learning_rate_init=0.01,
            random_state=0,
        ),
        DBNRegressor(
            (8,),
            pretrain="dae",
            visible="gaussian",
            n_iter=2,
            pretrain_learning_rate=0.01,
            max_iter=50,
            learning_rate_init=0.01,
            random_state=0,
        ),
        # the defaults a user gets (visible="auto", Adam), at a small size
        DBNTransformer((6, 4), n_iter=2, random_state=0),
        DBNClassifier((8,), n_iter=2, random_state=0),
        DBNRegressor((8,), n_iter=2, random_state=0),
        DBNClassifier((8,), pretrain="dae", n_iter=2, random_state=0),
        # L-BFGS fine-tuning (a closure per step)
        DBNClassifier((8,), n_iter=2, solver="lbfgs", learning_rate_init=1.0, max_iter=10, random_state=0),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:1300], y[:1300], X[1300:], y[1300:]


@pytest.mark.parametrize("pretrain", ["rbm", "dae"])
def test_end_to_end_pretrain_export_finetune(digits, pretrain):
    Xtr, ytr, Xte, yte = digits
    clf = DBNClassifier(
        (100, 100),
        pretrain=pretrain,
        n_iter=5,
        pretrain_learning_rate=0.05,
        max_iter=30,
        learning_rate_init=0.1,
        solver="sgd",
        batch_size=20,
        random_state=0,
    ).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.9
    assert len(clf.pretrain_history_) == 2 and len(clf.pretrain_history_[0]) == 5
    assert clf.history_[-1]["train_loss"] < clf.history_[0]["train_loss"]
    net = clf.to_torch()
    assert isinstance(net, torch.nn.Sequential)
    probs = torch.softmax(net.eval()(torch.from_numpy(Xte)), 1).detach().numpy()
    np.testing.assert_allclose(probs, clf.predict_proba(Xte), rtol=1e-5, atol=1e-6)
    # fine-tuning changed the exported copy, not the pretrained stack
    assert not torch.equal(net[0].weight, clf.stack_.layers[0].weight)


def test_random_init_relu_and_pretrained_sigmoid_are_one_estimator(digits):
    Xtr, ytr, Xte, yte = digits
    relu = DBNClassifier(
        (64,),
        pretrain=None,
        activation="relu",
        init="he",
        max_iter=20,
        learning_rate_init=0.05,
        solver="sgd",
        random_state=0,
    ).fit(Xtr, ytr)
    assert relu.stack_ is None and relu.pretrain_history_ == []
    assert isinstance(relu.network_[1], torch.nn.ReLU)
    assert relu.score(Xte, yte) > 0.9


def test_lbfgs_fine_tuning_of_a_pretrained_net(digits):
    Xtr, ytr, Xte, yte = digits
    params = dict(n_iter=20, pretrain_learning_rate=0.05, max_iter=15, batch_size=650, random_state=0)
    clf = DBNClassifier((100,), solver="lbfgs", learning_rate_init=1.0, **params).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.9
    losses = [r["train_loss"] for r in clf.history_]
    assert losses[-1] < 0.2 * losses[0]
    again = DBNClassifier((100,), solver="lbfgs", learning_rate_init=1.0, **params).fit(Xtr, ytr)
    np.testing.assert_array_equal(clf.predict_proba(Xte), again.predict_proba(Xte))


def test_transformer_transform_equals_exported_network(digits):
    Xtr, *_ = digits
    tr = DBNTransformer((32, 16), n_iter=2, random_state=0).fit(Xtr)
    with torch.no_grad():
        np.testing.assert_array_equal(tr.to_torch()(torch.from_numpy(Xtr)).numpy(), tr.transform(Xtr))
    assert tr.get_feature_names_out().shape == (16,)


def test_finetune_a_stack_pretrained_elsewhere(digits):
    Xtr, ytr, Xte, yte = digits
    unlabelled = Xtr[:1000]
    tr = DBNTransformer((48,), n_iter=3, random_state=1).fit(unlabelled)
    before = tr.stack_.layers[0].weight.detach().clone()
    clf = DBNClassifier(
        pretrained=tr, max_iter=30, batch_size=10, solver="sgd", learning_rate_init=0.1, random_state=0
    ).fit(Xtr[1000:], ytr[1000:])
    assert clf.stack_ is tr.stack_
    assert torch.equal(tr.stack_.layers[0].weight, before)  # the user's stack is left untouched
    assert clf.score(Xte, yte) > 0.8
    # a list of layers works too
    layers = [RBM(64, 20), RBM(20, 10)]
    clf = DBNClassifier(pretrained=layers, max_iter=2, random_state=0).fit(Xtr[:200], ytr[:200])
    assert clf.network_[0].out_features == 20
    with pytest.raises(ValueError, match="expects 10 input features"):
        DBNClassifier(pretrained=[RBM(10, 4)], max_iter=1).fit(Xtr[:50], ytr[:50])


def test_pretraining_on_other_data(digits):
    Xtr, ytr, *_ = digits
    other = np.zeros_like(Xtr[:200])
    other[:, :32] = 1.0
    clf = DBNClassifier((8,), n_iter=0, max_iter=1, random_state=0).fit(Xtr[:100], ytr[:100], X_pretrain=other)
    vb = clf.stack_.layers[0].visible_bias.detach().numpy()
    assert np.all(vb[:32] > 5) and np.all(vb[32:] < -5)  # visible bias set from X_pretrain's marginals


def test_freeze_epochs_train_only_the_output_layer_first(digits):
    Xtr, ytr, *_ = digits
    clf = DBNClassifier((16,), n_iter=1, freeze_epochs=3, max_iter=2, random_state=0).fit(Xtr[:300], ytr[:300])
    assert len(clf.history_) == 5


def test_same_seed_same_model_and_string_labels(digits):
    Xtr, ytr, *_ = digits
    labels = np.array(list("abcdefghij"))[ytr[:300]]
    a = DBNClassifier((16,), n_iter=2, max_iter=3, dropout=0.2, random_state=3).fit(Xtr[:300], labels)
    b = DBNClassifier((16,), n_iter=2, max_iter=3, dropout=0.2, random_state=3).fit(Xtr[:300], labels)
    for pa, pb in zip(a.network_.parameters(), b.network_.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert set(a.predict(Xtr[:50])) <= set("abcdefghij")
    assert a.predict_proba(Xtr[:5]).shape == (5, 10)


def test_early_stopping_restores_best(digits):
    Xtr, ytr, *_ = digits
    clf = DBNClassifier(
        (32,),
        pretrain=None,
        activation="relu",
        init="he",
        max_iter=200,
        early_stopping=True,
        n_iter_no_change=3,
        learning_rate_init=0.5,
        solver="sgd",
        random_state=0,
    ).fit(Xtr, ytr)
    assert clf.n_iter_ < 200
    assert clf.history_.best_epoch is not None


def test_regressor_multioutput():
    rng = np.random.RandomState(0)
    X = rng.rand(400, 5).astype(np.float32)
    Y = np.c_[X.sum(1), X[:, 0] - X[:, 1]]
    reg = DBNRegressor((32,), n_iter=2, max_iter=100, learning_rate_init=0.05, solver="sgd", random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (400, 2)
    assert reg.score(X, Y) > 0.8


def test_pipeline_grid_search_and_joblib(digits):
    Xtr, ytr, Xte, yte = digits
    pipe = make_pipeline(
        StandardScaler(),
        DBNClassifier((16,), visible="gaussian", n_iter=1, pretrain_learning_rate=0.01, max_iter=5, random_state=0),
    )
    grid = GridSearchCV(pipe, {"dbnclassifier__pretrain": ["rbm", None]}, cv=2).fit(Xtr[:400], ytr[:400])
    assert grid.best_params_["dbnclassifier__pretrain"] in ("rbm", None)
    buf = io.BytesIO()
    joblib.dump(grid.best_estimator_, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).predict(Xte), grid.best_estimator_.predict(Xte))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"activation": "relu"}, "sigmoid"),
        ({"pretrain": "rbm", "batch_norm": True}, "sigmoid"),
        ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes"),
        ({"solver": "newton"}, "'solver' parameter"),
        ({"dropout": 1.0}, "'dropout' parameter"),
    ],
)
def test_bad_parameters(digits, params, match):
    Xtr, ytr, *_ = digits
    with pytest.raises(ValueError, match=match):
        DBNClassifier(**{"hidden_layer_sizes": (8,), "n_iter": 1, "max_iter": 1, **params}).fit(Xtr[:50], ytr[:50])


def test_bernoulli_pretraining_rejects_unscaled_data(digits):
    Xtr, ytr, *_ = digits
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DBNClassifier((8,), visible="bernoulli", n_iter=1, max_iter=1).fit(Xtr[:50] * 16, ytr[:50])
    # random init does not care about the range
    DBNClassifier((8,), pretrain=None, visible="bernoulli", max_iter=1).fit(Xtr[:50] * 16, ytr[:50])
    # visible="auto" (the default) picks Gaussian units for such data
    assert DBNClassifier((8,), n_iter=1, max_iter=1).fit(Xtr[:50] * 16, ytr[:50]).visible_ == "gaussian"


def test_convergence_warning_when_early_stopping_never_triggers(digits):
    from sklearn.exceptions import ConvergenceWarning

    Xtr, ytr, *_ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=2 reached"):
        DBNClassifier((8,), pretrain=None, max_iter=2, early_stopping=True, random_state=0).fit(Xtr[:200], ytr[:200])
