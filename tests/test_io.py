import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dbn import RBM, DBNClassifier, DBNRegressor, DBNTransformer, RBMTransformer
from dbn.autoencoder import DenoisingAutoencoder
from dbn.estimators import load_any
from dbn.io import FORMAT_VERSION, load, read_archive, save, write_archive
from dbn.stack import pretrain_stack


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def test_modules_round_trip(tmp_path, data):
    X, _ = data
    Xt = torch.from_numpy(X[:200])
    for obj in (RBM(64, 8, visible="gaussian"), DenoisingAutoencoder(64, 8, tied=False, corruption="gaussian")):
        path = save(obj, tmp_path / "m.dbn")
        loaded = load(path)
        assert type(loaded) is type(obj)
        for a, b in zip(obj.state_dict().values(), loaded.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    stack = pretrain_stack(Xt, (16, 8), n_epochs=1, batch_size=50, generator=torch.Generator().manual_seed(0))
    loaded = load(save(stack, tmp_path / "s.dbn"))
    assert torch.equal(loaded.transform(Xt), stack.transform(Xt))
    assert loaded.histories == stack.histories


@pytest.mark.parametrize(
    "make",
    [
        lambda: RBMTransformer(n_components=8, n_iter=2, random_state=0, momentum=0.5),
        lambda: DBNTransformer((8, 4), pretrain="dae", n_iter=1, random_state=0),
        lambda: DBNClassifier((8,), n_iter=1, max_iter=3, dropout=0.1, random_state=0),
        lambda: DBNClassifier((8,), pretrain=None, activation="maxout", batch_norm=True, max_iter=3, random_state=0),
    ],
)
def test_estimators_round_trip(tmp_path, data, make):
    X, y = data
    est = make().fit(X[:300], y[:300])
    path = est.save(tmp_path / "est.dbn")
    loaded = type(est).load(path)
    assert loaded.get_params() == est.get_params() or "pretrained" in est.get_params()
    method = "transform" if hasattr(est, "transform") else "predict_proba"
    np.testing.assert_array_equal(getattr(loaded, method)(X[300:400]), getattr(est, method)(X[300:400]))
    if hasattr(est, "classes_"):
        np.testing.assert_array_equal(loaded.classes_, est.classes_)
        assert list(loaded.history_) == list(est.history_)


def test_regressor_round_trip(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(100, 3)
    reg = DBNRegressor((4,), pretrain=None, max_iter=2, random_state=0).fit(X, X.sum(1))
    loaded = DBNRegressor.load(reg.save(tmp_path / "r.dbn"))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.predict(X).ndim == 1


def test_rbm_transformer_resumes_training_exactly(tmp_path, data):
    X, _ = data
    a = RBMTransformer(n_components=8, random_state=0, momentum=0.5)
    a.partial_fit(X[:500])
    b = RBMTransformer.load(a.save(tmp_path / "a.dbn"))
    a.partial_fit(X[500:1000])
    b.partial_fit(X[500:1000])
    np.testing.assert_array_equal(a.components_, b.components_)
    assert len(b.history_) == 2


def test_loading_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.dbn"
    torch.save({"format": "torch-dbn", "format_version": 1, "kind": "RBM", "config": "{}", "tensors": Evil()}, path)
    with pytest.raises(
        ValueError,
        match="not a torch-dbn model file: it looks like a torch.save file whose contents are not plain tensors",
    ):
        load(path)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError, match="not a torch-dbn model file: it looks like a Python pickle"):
        load(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_corrupt_truncated_foreign_and_future_files(tmp_path):
    path = save(RBM(4, 3), tmp_path / "ok.dbn")
    raw = path.read_bytes()
    (tmp_path / "trunc.dbn").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a torch-dbn model file: it looks like a damaged or truncated zip"):
        load(tmp_path / "trunc.dbn")
    (tmp_path / "garbage.dbn").write_bytes(b"\x00not a model" * 10)
    with pytest.raises(ValueError, match="not a torch-dbn model file: it looks like bytes of no known format"):
        load(tmp_path / "garbage.dbn")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a torch-dbn model file"):
        load(tmp_path / "foreign.pt")
    write_archive(tmp_path / "future.dbn", "RBM", {}, {})
    payload = torch.load(tmp_path / "future.dbn", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.dbn")
    with pytest.raises(ValueError, match="Upgrade torch-dbn"):
        load(tmp_path / "future.dbn")
    with pytest.raises(ValueError, match="holds a 'RBM'"):
        DBNClassifier.load(path)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.dbn")
    assert zipfile.is_zipfile(path)  # a standard torch archive


def test_write_is_atomic(tmp_path, monkeypatch):
    path = save(RBM(4, 3), tmp_path / "m.dbn")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        save(RBM(4, 3), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.dbn"]  # no temp file left behind
    _ = read_archive(path)


def test_saved_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save(RBM(4, 3), tmp_path / "m.dbn")
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_load_any_lives_with_the_estimators(tmp_path, data):
    """``load_any`` reads module and estimator files; :mod:`dbn.io` itself never imports the estimators."""
    import dbn.io
    from dbn.estimators import load_any

    X, _ = data
    rbm = RBM(64, 4)
    assert torch.equal(load_any(save(rbm, tmp_path / "rbm.dbn")).weight, rbm.weight)
    est = RBMTransformer(n_components=4, n_iter=1, random_state=0).fit(X[:100])
    loaded = load_any(est.save(tmp_path / "est.dbn"))
    assert type(loaded) is RBMTransformer
    np.testing.assert_array_equal(loaded.transform(X[:10]), est.transform(X[:10]))
    assert not hasattr(dbn.io, "load_any")


# -- loading messages of our own (issue 15) ----------------------------------------------------


def _load_quietly(loader, path):
    """The ValueError message of ``loader(path)``, checking that no warning leaked."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as info:
            loader(path)
    assert [str(w.message) for w in caught] == []
    message = str(info.value)
    assert "weights_only" not in message and "Re-running" not in message
    return message


@pytest.mark.parametrize("loader", [load, DBNClassifier.load, load_any])
def test_non_model_files_get_our_own_messages(tmp_path, loader):
    import joblib

    joblib.dump({"model": [1, 2, 3]}, tmp_path / "model.joblib")
    message = _load_quietly(loader, tmp_path / "model.joblib")
    assert message.endswith(
        "is not a torch-dbn model file: it looks like a Python pickle (as written by joblib.dump or pickle.dump): "
        "use joblib.load on it only if you trust its source. Save models with dbn.io.save or the estimators' "
        "save method."
    )
    joblib.dump({"model": 1}, tmp_path / "model.gz", compress=3)
    assert "it looks like compressed data" in _load_quietly(loader, tmp_path / "model.gz")
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(300))
    assert "it looks like bytes of no known format" in _load_quietly(loader, tmp_path / "random.bin")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert "it looks like a text file" in _load_quietly(loader, tmp_path / "notes.txt")
    (tmp_path / "empty.dbn").write_bytes(b"")
    assert "it looks like an empty file" in _load_quietly(loader, tmp_path / "empty.dbn")
    write_archive(tmp_path / "future.dbn", "RBM", {}, {})
    payload = torch.load(tmp_path / "future.dbn", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.dbn")
    assert f"format version {FORMAT_VERSION + 1}, newer than this torch-dbn" in _load_quietly(
        loader, tmp_path / "future.dbn"
    )


def test_checkpoint_of_another_kind_of_file_is_described(tmp_path):
    import joblib

    from dbn.stack import pretrain_stack

    joblib.dump({"state": 1}, tmp_path / "checkpoint.pt")
    message = _load_quietly(lambda d: pretrain_stack(torch.rand(20, 4), (3,), n_epochs=1, checkpoint_dir=d), tmp_path)
    assert "is corrupt or unreadable (a Python pickle (as written by joblib.dump" in message


def test_save_keeps_the_centred_flag(tmp_path):
    from dbn import io
    from dbn.rbm import RBM
    from dbn.stack import LayerStack

    rbm = RBM(5, 3, centered=True)
    assert io.load(io.save(rbm, tmp_path / "c.dbn")).centered is True
    assert io.load(io.save(RBM(5, 3), tmp_path / "o.dbn")).centered is False
    stack = io.load(io.save(LayerStack([RBM(5, 3, centered=True), RBM(3, 2)]), tmp_path / "s.dbn"))
    assert [layer.centered for layer in stack.layers] == [True, False]
