"""The one recipe (build -> pretrain -> export -> fine-tune) behind the estimators and the harness,
and the estimators' ``callbacks`` parameter."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from dbn import DBNClassifier, DBNRegressor, recipe
from dbn._random import make_generator
from dbn.datasets import load_dataset
from dbn.harness import runner
from dbn.harness.config import StudyConfig
from dbn.harness.runner import fit_arm


@pytest.fixture(scope="module")
def digits():
    split = load_dataset("digits")
    return split.X_train[:150].astype(np.float32), split.y_train[:150]


def _same_networks(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb, rtol=0, atol=0)


def _record(r):
    return {k: v for k, v in r.items() if k != "time"}


# ---------------------------------------------------------------------------------------------
# one code path for the estimator and the harness
# ---------------------------------------------------------------------------------------------


def test_estimator_and_harness_both_call_the_recipe(digits, monkeypatch):
    X, y = digits
    calls = []
    real = recipe.fit

    def spy(*args, **kwargs):
        calls.append(kwargs.get("fit_generator"))
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe, "fit", spy)
    params = {"hidden_layer_sizes": (8,), "n_iter": 1, "max_iter": 2, "batch_size": 25}
    DBNClassifier(**params, random_state=0).fit(X, y)
    fit_arm(params, torch.as_tensor(X), torch.as_tensor(y), n_classes=10, generator=make_generator(0, "cpu"))
    assert len(calls) == 2


@pytest.mark.parametrize("pretrain", ["rbm", None])
def test_freeze_epochs_identical_in_estimator_and_harness(digits, pretrain):
    """``freeze_epochs`` renumbers the history and ``best_epoch`` in both (the harness did not)."""
    X, y = digits
    params = {
        "hidden_layer_sizes": (12, 8),
        "pretrain": pretrain,
        "n_iter": 1,
        "max_iter": 4,
        "batch_size": 25,
        "freeze_epochs": 2,
        "early_stopping": True,
        "n_iter_no_change": 2,
    }
    if pretrain is None:
        params.update(activation="relu", init="he")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = DBNClassifier(**params, random_state=0).fit(X, y)
    fit = fit_arm(params, torch.as_tensor(X), torch.as_tensor(y), n_classes=10, generator=make_generator(0, "cpu"))
    _same_networks(est.network_, fit.network)
    assert [_record(r) for r in est.history_] == [_record(r) for r in fit.history]
    assert est.history_.best_epoch == fit.history.best_epoch
    n = len(est.history_)
    assert [r["epoch"] for r in fit.history] == list(range(1, n + 1))
    if pretrain == "rbm":
        assert n > 4  # the two output-layer epochs come first
        assert fit.history.best_epoch is not None and 1 <= fit.history.best_epoch <= n
    else:
        assert n <= 4  # no output-layer phase for a random init


def test_run_one_rows_follow_the_renumbered_best_epoch():
    """An arm with freeze_epochs selects the row of the epoch early stopping kept."""
    cfg = StudyConfig(
        arms=("dbn-freeze",),
        depths=(1,),
        widths=(8,),
        sizes=(60,),
        seeds=(0,),
        epochs=4,
        pretrain_epochs=1,
        patience=1,
        extra_arms={"dbn-freeze": {"pretrain": "rbm", "freeze_epochs": 2}},
        protocol="shared",
        monitor="valid_loss",
    )
    data = runner.prepare_data(load_dataset("digits"), size=60, seed=0)
    rows = runner.run_one(cfg, cfg.run_specs()[0], data)
    assert [r["epoch"] for r in rows] == list(range(len(rows)))
    best = rows[0]["best_epoch"]
    selected = [r["epoch"] for r in rows if r["selected"]]
    assert selected == [best] and best > 2  # an epoch of the second phase, in the rows' numbering
    second_phase = [r for r in rows if r["epoch"] > 2]
    assert min(second_phase, key=lambda r: r["valid_loss"])["epoch"] == best


def test_recipe_imports_no_sklearn():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(recipe))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(name.startswith(("sklearn", "numpy")) for name in names)


# ---------------------------------------------------------------------------------------------
# callbacks=[...]
# ---------------------------------------------------------------------------------------------


def _noop(net, record):
    return None


@parametrize_with_checks(
    [
        DBNClassifier(
            (8,),
            pretrain=None,
            activation="relu",
            init="he",
            max_iter=20,
            learning_rate_init=0.05,
            solver="sgd",
            random_state=0,
            callbacks=[_noop],
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
            callbacks=(_noop,),
        ),
    ]
)
def test_sklearn_compatible_with_callbacks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("freeze_epochs", [0, 2])
def test_callbacks_called_once_per_finetuning_epoch(digits, freeze_epochs):
    X, y = digits
    seen = []

    def cb(net, record):
        assert isinstance(net, torch.nn.Sequential)
        seen.append(record)

    clf = DBNClassifier(
        (8,), n_iter=1, max_iter=3, batch_size=25, freeze_epochs=freeze_epochs, random_state=0, callbacks=[cb]
    ).fit(X, y)
    assert clf.n_iter_ == 3 + freeze_epochs
    assert len(seen) == clf.n_iter_
    assert all(a is b for a, b in zip(seen, clf.history_, strict=True))  # the records themselves
    assert [r["epoch"] for r in clf.history_] == list(range(1, clf.n_iter_ + 1))


def test_callbacks_do_not_change_the_fit(digits):
    X, y = digits
    a = DBNClassifier((8,), n_iter=1, max_iter=3, batch_size=25, random_state=0).fit(X, y)
    b = DBNClassifier((8,), n_iter=1, max_iter=3, batch_size=25, random_state=0, callbacks=[_noop]).fit(X, y)
    _same_networks(a.network_, b.network_)


def test_callback_returning_true_stops(digits):
    X, y = digits

    def stop_at_two(net, record):
        return record["epoch"] == 2

    clf = DBNRegressor(
        (8,),
        pretrain=None,
        activation="relu",
        init="he",
        max_iter=10,
        learning_rate_init=0.01,
        random_state=0,
        callbacks=[stop_at_two],
    ).fit(X, y.astype(np.float32))
    assert clf.n_iter_ == 2 and clf.history_.stopped_early


def test_callbacks_clone_gridsearch_and_save(digits, tmp_path):
    X, y = digits
    calls = []

    def cb(net, record):
        calls.append(record["epoch"])

    clf = DBNClassifier(
        (8,), pretrain=None, activation="relu", init="he", max_iter=2, batch_size=25, random_state=0, callbacks=[cb]
    )
    assert clone(clf).get_params()["callbacks"] == [cb]
    grid = GridSearchCV(clf, {"learning_rate_init": [0.01, 0.1]}, cv=2).fit(X, y)
    assert len(calls) == 2 * 2 * 2 + 2  # 2 settings x 2 folds x 2 epochs, then the refit
    path = grid.best_estimator_.save(tmp_path / "clf.dbn")
    loaded = DBNClassifier.load(path)
    assert loaded.callbacks is None  # callbacks are code: not stored
    np.testing.assert_array_equal(loaded.predict_proba(X), grid.best_estimator_.predict_proba(X))


def test_invalid_callbacks(digits):
    X, y = digits
    with pytest.raises(ValueError, match="callbacks"):
        DBNClassifier((8,), pretrain=None, max_iter=1, callbacks="print").fit(X, y)
    with pytest.raises(ValueError, match="callbacks"):
        DBNClassifier((8,), pretrain=None, max_iter=1, callbacks=[1]).fit(X, y)


def test_fit_arm_checkpoints_like_the_estimator(digits, tmp_path):
    X, y = digits
    params = {"hidden_layer_sizes": (8,), "n_iter": 1, "max_iter": 2, "batch_size": 25, "freeze_epochs": 1}
    fit = fit_arm(
        params,
        torch.as_tensor(X),
        torch.as_tensor(y),
        n_classes=10,
        generator=make_generator(0, "cpu"),
        checkpoint_dir=tmp_path / "arm",
    )
    est = DBNClassifier(**params, random_state=0, checkpoint_dir=tmp_path / "est").fit(X, y)
    found = lambda d: sorted(p.relative_to(d).parent.as_posix() for p in d.rglob("checkpoint.pt"))  # noqa: E731
    (key,) = {path.split("/")[0] for path in found(tmp_path / "est")}  # one fit, keyed by its fingerprint
    assert key.startswith("fit-")
    assert (
        found(tmp_path / "arm")
        == found(tmp_path / "est")
        == [f"{key}/finetune", f"{key}/finetune_freeze", f"{key}/pretrain"]
    )
    _same_networks(est.network_, fit.network)
