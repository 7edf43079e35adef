"""Checkpoints and resume: pretraining, fine-tuning and the estimators, killed and resumed."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dbn._checkpoint import load_checkpoint, settings_text
from dbn.stack import pretrain_stack
from dbn.training import build_mlp, fit_network

ROOT = Path(__file__).resolve().parents[1]


class Interrupt(Exception):
    pass


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _data(n=240, d=16):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, d, generator=g) < 0.3).float()


@pytest.mark.parametrize(
    "pretrain, propagate, options",
    [
        ("rbm", "samples", {"persistent": True, "sparsity_target": 0.1, "sparsity_cost": 0.1}),
        ("rbm", "probs", {"momentum": "hinton"}),
        ("dae", "samples", {"momentum": 0.5}),
        ("rbm", "probs", {"persistent": True, "centered": True, "sampler": "pt", "n_temperatures": 3}),
    ],
)
def test_pretrain_stack_resumes_exactly(tmp_path, pretrain, propagate, options):
    X = _data()
    kwargs = dict(
        pretrain=pretrain, propagate=propagate, n_epochs=(3, 3, 2), learning_rate=0.05, batch_size=32, **options
    )
    ref = pretrain_stack(X, (12, 8, 6), generator=torch.Generator().manual_seed(1), **kwargs)
    trained = []

    def stop_mid_layer_2(i, layer, record):
        trained.append((i, record["epoch"]))
        if (i, record["epoch"]) == (1, 2):
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain_stack(
            X,
            (12, 8, 6),
            generator=torch.Generator().manual_seed(1),
            checkpoint_dir=tmp_path,
            callbacks=[stop_mid_layer_2],
            **kwargs,
        )
    resumed_epochs = []
    # another seed: the checkpoint's generator state wins
    res = pretrain_stack(
        X,
        (12, 8, 6),
        generator=torch.Generator().manual_seed(99),
        checkpoint_dir=tmp_path,
        callbacks=[lambda i, layer, r: resumed_epochs.append((i, r["epoch"]))],
        **kwargs,
    )
    assert resumed_epochs[0] == (1, 2)  # the interrupted epoch is redone, nothing before it
    assert trained[:-1] + resumed_epochs == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    assert _equal_states(ref.state_dict(), res.state_dict())
    assert [len(h) for h in res.histories] == [3, 3, 2]
    strip = lambda hs: [[{k: v for k, v in r.items() if k != "time"} for r in h] for h in hs]  # noqa: E731
    assert strip(res.histories) == strip(ref.histories)
    # a finished checkpoint gives the finished stack without training
    again = []
    done = pretrain_stack(X, (12, 8, 6), checkpoint_dir=tmp_path, callbacks=[lambda *a: again.append(a)], **kwargs)
    assert again == [] and _equal_states(done.state_dict(), ref.state_dict())


def test_pretrain_checkpoint_with_other_settings_is_refused(tmp_path):
    X = _data()
    pretrain_stack(X, (6,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)
    with pytest.raises(
        ValueError,
        match=r"other settings: hidden_layer_sizes \(saved \[6\], now \[7\]\)\. "
        "Use another 'checkpoint_dir'",
    ):
        pretrain_stack(X, (7,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other inputs: X differs"):
        pretrain_stack(X[:100], (6,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)
    # same shape and dtype, other bytes: refused too (the checkpoint hashes the data)
    with pytest.raises(ValueError, match="other inputs: X differs"):
        pretrain_stack(X.flip(0), (6,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)


def test_corrupt_checkpoint_raises_clear_error(tmp_path):
    X = _data()
    pretrain_stack(X, (6,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match="corrupt.*Delete it"):
        pretrain_stack(X, (6,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt"):
        fit_network(build_mlp(16, (4,), 2), X, torch.zeros(240, dtype=torch.long), checkpoint_dir=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        pretrain_stack(X, (6,), n_epochs=1, checkpoint_dir=tmp_path / "file")


def test_checkpoint_refuses_code_in_pickles(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "checkpoint.pt", "wb") as f:
        pickle.dump({"format": "torch-dbn-checkpoint", "state": Evil()}, f, protocol=2)
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path, "fit_network", settings_text({}))


@pytest.mark.parametrize(
    "options",
    [
        dict(optimizer="adam", lr_schedule="cosine", early_stopping=True, n_iter_no_change=2, tol=0.02),
        dict(optimizer="sgd", lr_schedule="step", lr_step_size=2, momentum=0.9, nesterov=True),
        # L-BFGS: its curvature pairs are part of the optimizer state
        dict(optimizer="lbfgs", learning_rate=0.5, weight_decay=1e-3),
    ],
)
def test_fit_network_resumes_exactly(tmp_path, options):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 6, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    kwargs = {"max_iter": 7, "batch_size": 32, "learning_rate": 0.05, **options}

    def run(directory=None, stop_at=None, seed=1):
        gen = torch.Generator().manual_seed(seed)
        net = build_mlp(6, (16,), 2, dropout=0.3, generator=gen)  # dropout: the forked global RNG matters
        seen = []

        def callback(net, record):
            seen.append(record["epoch"])
            if record["epoch"] == stop_at:
                raise Interrupt

        history = fit_network(net, X, y, generator=gen, checkpoint_dir=directory, callbacks=[callback], **kwargs)
        return net, history, seen

    ref, ref_history, _ = run()
    assert len(ref_history) > 3
    with pytest.raises(Interrupt):
        run(tmp_path, stop_at=3)
    net, history, seen = run(tmp_path)
    assert seen[0] == 3  # epochs 1-2 came from the checkpoint
    assert _equal_states(ref.state_dict(), net.state_dict())
    assert [r["train_loss"] for r in history] == [r["train_loss"] for r in ref_history]
    assert (history.best_epoch, history.stopped_early) == (ref_history.best_epoch, ref_history.stopped_early)
    net, _, seen = run(tmp_path)
    assert seen == [] and _equal_states(ref.state_dict(), net.state_dict())


def test_estimator_checkpoint_resume(tmp_path, monkeypatch):
    import dbn.training as training
    from dbn import DBNClassifier

    rng = np.random.RandomState(0)
    X = (rng.rand(200, 12) < 0.4).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0.5).astype(int)
    params = dict(hidden_layer_sizes=(10, 6), n_iter=2, max_iter=5, batch_size=20, freeze_epochs=1, random_state=0)
    ref = DBNClassifier(**params).fit(X, y)
    original = training._run_epoch

    def failing(*args, **kwargs):
        if kwargs["epoch"] == 3:
            raise Interrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", failing)
    with pytest.raises(Interrupt):
        DBNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    monkeypatch.setattr(training, "_run_epoch", original)
    (run_dir,) = tmp_path.iterdir()  # the fit's state, keyed by its fingerprint
    assert run_dir.name.startswith("fit-")
    assert sorted(p.name for p in run_dir.iterdir()) == ["finetune", "finetune_freeze", "pretrain"]
    model = DBNClassifier(**params, checkpoint_dir=str(tmp_path)).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), ref.predict_proba(X))
    assert len(model.history_) == len(ref.history_) == 6
    # more epochs continue the finished run: as an uninterrupted max_iter=8 run, 3 epochs trained
    ref8 = DBNClassifier(**{**params, "max_iter": 8}).fit(X, y)
    seen = []
    more = DBNClassifier(
        **{**params, "max_iter": 8}, checkpoint_dir=tmp_path, callbacks=[lambda net, r: seen.append(r["epoch"])]
    ).fit(X, y)
    assert seen == [6, 7, 8] and len(more.history_) == 9
    np.testing.assert_array_equal(more.predict_proba(X), ref8.predict_proba(X))
    with pytest.raises(ValueError, match=r"other settings: max_iter \(saved 8, now 6: 8 epochs are already trained\)"):
        DBNClassifier(**{**params, "max_iter": 6}, checkpoint_dir=tmp_path).fit(X, y)
    assert len(list(tmp_path.iterdir())) == 1


_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from dbn.stack import pretrain_stack
    torch.set_num_threads(1)
    ckpt, log, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(400, 20, generator=g) < 0.3).float()

    def record(i, layer, rec):
        with open(log, "a") as f:
            f.write(f"{i} {rec['epoch']}\\n")
        time.sleep(delay)

    stack = pretrain_stack(X, (16, 12), n_epochs=(4, 6), persistent=True, batch_size=25, learning_rate=0.05,
                           generator=torch.Generator().manual_seed(1), callbacks=[record],
                           checkpoint_dir=None if ckpt == "-" else ckpt)
    torch.save(stack.state_dict(), out)
""")


def test_pretraining_survives_kill_9(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ckpt, log = tmp_path / "ckpt", tmp_path / "log.txt"

    def run(*args):
        return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, timeout=120, check=True)

    run("-", tmp_path / "ref_log.txt", tmp_path / "ref.pt", 0)
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(log), str(tmp_path / "x.pt"), "0.3"], env=env)
    settings = None
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            path = ckpt / "checkpoint.pt"
            if path.exists():
                state = torch.load(path, weights_only=True)["state"]
                settings = True
                if state["layer"] == 1 and state["trainer"]["epoch"] >= 2:
                    break
            assert proc.poll() is None, "the training finished before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert settings and proc.returncode == -signal.SIGKILL
    state = torch.load(ckpt / "checkpoint.pt", weights_only=True)["state"]
    layer, epoch = state["layer"], state["trainer"]["epoch"]
    assert layer == 1 and 2 <= epoch < 6
    before = log.read_text().split("\n")
    run(ckpt, log, tmp_path / "resumed.pt", 0)
    lines = log.read_text().split()
    epochs = [(int(a), int(b)) for a, b in zip(lines[::2], lines[1::2], strict=False)]
    killed_part = len([line for line in before if line])
    resumed = epochs[killed_part:]
    assert resumed[0] == (1, epoch + 1)  # no finished epoch is trained again
    assert resumed[-1] == (1, 6) and len(resumed) == 6 - epoch
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    assert _equal_states(ref, torch.load(tmp_path / "resumed.pt", weights_only=True))


# -- checkpoints bound to their inputs (issue 15) --------------------------------------------


def test_fingerprint_hashes_bytes_in_chunks_without_copying(monkeypatch):
    import dbn._checkpoint as ck
    from dbn._checkpoint import fingerprint

    X = torch.rand(500, 7, generator=torch.Generator().manual_seed(0))
    whole = fingerprint(X)
    monkeypatch.setattr(ck, "_CHUNK_BYTES", 64)  # many small chunks: same hash
    assert fingerprint(X) == whole == fingerprint(X.numpy()) == fingerprint(X.t().contiguous().t())
    assert fingerprint(X.flip(0)) != whole
    X2 = X.clone()
    X2[499, 6] += 1e-6
    assert fingerprint(X2) != whole
    assert fingerprint(X.double()) != whole and fingerprint(X.reshape(7, 500)) != whole
    # sparse data are hashed without densifying, alike in every layout
    import scipy.sparse as sp

    S = sp.random(300, 50, density=0.05, format="csr", random_state=0, dtype=np.float32)
    assert fingerprint(S) == fingerprint(S.tocsc()) != fingerprint(S.multiply(2).tocsr())
    with warnings.catch_warnings():  # torch: "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore")
        T = torch.sparse_csr_tensor(
            torch.as_tensor(S.indptr),
            torch.as_tensor(S.indices),
            torch.as_tensor(S.data),
            size=S.shape,
            check_invariants=True,
        )
    assert fingerprint(T) == fingerprint(T.to_sparse_coo()) != fingerprint(T.to_dense())


def test_issue_example_other_data_same_directory_fits_its_own_data(tmp_path):
    from sklearn.datasets import load_digits

    from dbn import DBNClassifier

    X, y = load_digits(return_X_y=True)
    X = (X[:400] / 16.0).astype(np.float32)
    y = y[:400]
    kw = dict(hidden_layer_sizes=(16,), n_iter=1, max_iter=2, batch_size=50, random_state=0)
    a = DBNClassifier(**kw, checkpoint_dir=tmp_path).fit(X, y)
    b = DBNClassifier(**kw, checkpoint_dir=tmp_path).fit(X[::-1], (y[::-1] + 1) % 10)
    b_ref = DBNClassifier(**kw).fit(X[::-1], (y[::-1] + 1) % 10)
    assert not np.array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(b.predict_proba(X), b_ref.predict_proba(X))
    assert len(list(tmp_path.iterdir())) == 2


def test_cross_validation_with_shared_checkpoint_dir_scores_as_without(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import KFold, cross_val_score

    from dbn import DBNClassifier

    X, y = load_digits(return_X_y=True)
    X = (X[:450] / 16.0).astype(np.float32)
    y = y[:450]
    kw = dict(hidden_layer_sizes=(16,), n_iter=1, max_iter=2, batch_size=50, random_state=0)
    cv = KFold(3, shuffle=True, random_state=0)
    plain = cross_val_score(DBNClassifier(**kw), X, y, cv=cv)
    ckpt = cross_val_score(DBNClassifier(**kw, checkpoint_dir=tmp_path), X, y, cv=cv)
    np.testing.assert_array_equal(ckpt, plain)
    again = cross_val_score(DBNClassifier(**kw, checkpoint_dir=tmp_path), X, y, cv=cv)  # resumed: finished runs
    np.testing.assert_array_equal(again, plain)
    assert len(list(tmp_path.iterdir())) == 3


def test_fit_network_names_the_differing_settings_and_inputs(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(120, 5, generator=g)
    y = (X[:, 0] > 0.5).long()

    def run(X=X, y=y, seed=0, **kwargs):
        net = build_mlp(5, (4,), 2, generator=torch.Generator().manual_seed(seed))
        options = dict(max_iter=2, batch_size=30, learning_rate=0.1, generator=torch.Generator().manual_seed(1))
        return fit_network(net, X, y, checkpoint_dir=tmp_path, **{**options, **kwargs})

    run()
    with pytest.raises(ValueError) as info:
        run(learning_rate=0.2, batch_size=20)
    message = str(info.value)
    assert "other settings: batch_size (saved 30, now 20), learning_rate (saved 0.1, now 0.2)." in message
    assert "Use another 'checkpoint_dir', or delete this one to start afresh." in message
    assert len(message) < 400
    with pytest.raises(ValueError, match="other inputs: y differs"):
        run(y=1 - y)
    with pytest.raises(ValueError, match="other inputs: initial_network differs"):
        run(seed=5)
    with pytest.raises(ValueError, match="other inputs: X, y differ"):
        run(X=X.flip(0), y=y.flip(0))
    with pytest.raises(ValueError, match=r"max_iter \(saved 2, now 1: 2 epochs are already trained\)"):
        run(max_iter=1)
    with pytest.raises(ValueError, match=r"other settings: lr_schedule .*, max_iter \(saved 2, now 3\)"):
        run(max_iter=3, lr_schedule="cosine")


def test_pretrain_stack_more_epochs_continue(tmp_path):
    X = _data()
    kwargs = dict(learning_rate=0.05, batch_size=40)
    ref = pretrain_stack(X, (8, 6), n_epochs=(2, 4), generator=torch.Generator().manual_seed(1), **kwargs)
    pretrain_stack(
        X, (8, 6), n_epochs=(2, 3), generator=torch.Generator().manual_seed(1), checkpoint_dir=tmp_path, **kwargs
    )
    seen = []
    more = pretrain_stack(
        X,
        (8, 6),
        n_epochs=(2, 4),
        checkpoint_dir=tmp_path,
        callbacks=[lambda i, layer, r: seen.append((i, r["epoch"]))],
        **kwargs,
    )
    assert seen == [(1, 4)] and _equal_states(more.state_dict(), ref.state_dict())
    with pytest.raises(ValueError, match=r"n_epochs \(saved \[2, 4\], now \[3, 4\]: layers 1..1 are finished"):
        pretrain_stack(X, (8, 6), n_epochs=(3, 4), checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="layer 2 has already trained 4 epochs"):
        pretrain_stack(X, (8, 6), n_epochs=(2, 2), checkpoint_dir=tmp_path, **kwargs)


def test_old_checkpoint_format_is_refused(tmp_path):
    from dbn._checkpoint import CHECKPOINT_NAME

    torch.save(
        {"format": "torch-dbn-checkpoint", "version": 1, "kind": "pretrain_stack", "settings": "{}", "state": {}},
        tmp_path / CHECKPOINT_NAME,
    )
    with pytest.raises(ValueError, match=r"an older format \(version 1"):
        pretrain_stack(_data(), (6,), n_epochs=1, checkpoint_dir=tmp_path)
