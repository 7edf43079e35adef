"""Checkpoints and resume: pretraining, fine-tuning and the estimators, killed and resumed."""

import os
import signal
import subprocess
import sys
import textwrap
import time
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
    [("rbm", "samples", {"persistent": True, "sparsity_target": 0.1, "sparsity_cost": 0.1}),
     ("rbm", "probs", {"momentum": "hinton"}), ("dae", "samples", {"momentum": 0.5}),
     ("rbm", "probs", {"persistent": True, "centered": True, "sampler": "pt", "n_temperatures": 3})],
)
def test_pretrain_stack_resumes_exactly(tmp_path, pretrain, propagate, options):
    X = _data()
    kwargs = dict(pretrain=pretrain, propagate=propagate, n_epochs=(3, 3, 2), learning_rate=0.05, batch_size=32,
                  **options)
    ref = pretrain_stack(X, (12, 8, 6), generator=torch.Generator().manual_seed(1), **kwargs)
    trained = []

    def stop_mid_layer_2(i, layer, record):
        trained.append((i, record["epoch"]))
        if (i, record["epoch"]) == (1, 2):
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain_stack(X, (12, 8, 6), generator=torch.Generator().manual_seed(1), checkpoint_dir=tmp_path,
                       callbacks=[stop_mid_layer_2], **kwargs)
    resumed_epochs = []
    # another seed: the checkpoint's generator state wins
    res = pretrain_stack(X, (12, 8, 6), generator=torch.Generator().manual_seed(99), checkpoint_dir=tmp_path,
                         callbacks=[lambda i, layer, r: resumed_epochs.append((i, r["epoch"]))], **kwargs)
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
    with pytest.raises(ValueError, match="other settings.*another 'checkpoint_dir'"):
        pretrain_stack(X, (7,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        pretrain_stack(X[:100], (6,), n_epochs=1, batch_size=40, checkpoint_dir=tmp_path)


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


@pytest.mark.parametrize("options", [
    dict(optimizer="adam", lr_schedule="cosine", early_stopping=True, n_iter_no_change=2, tol=0.02),
    dict(optimizer="sgd", lr_schedule="step", lr_step_size=2, momentum=0.9, nesterov=True),
])
def test_fit_network_resumes_exactly(tmp_path, options):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 6, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    kwargs = dict(max_iter=7, batch_size=32, learning_rate=0.05, **options)

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
    from dbn import DBNClassifier
    import dbn.training as training

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetune", "finetune_freeze", "pretrain"]
    model = DBNClassifier(**params, checkpoint_dir=str(tmp_path)).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), ref.predict_proba(X))
    assert len(model.history_) == len(ref.history_) == 6
    with pytest.raises(ValueError, match="other settings"):
        DBNClassifier(**{**params, "max_iter": 6}, checkpoint_dir=tmp_path).fit(X, y)


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
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(log), str(tmp_path / "x.pt"), "0.3"],
                            env=env)
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
    epochs = [(int(a), int(b)) for a, b in zip(lines[::2], lines[1::2])]
    killed_part = len([line for line in before if line])
    resumed = epochs[killed_part:]
    assert resumed[0] == (1, epoch + 1)  # no finished epoch is trained again
    assert resumed[-1] == (1, 6) and len(resumed) == 6 - epoch
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    assert _equal_states(ref, torch.load(tmp_path / "resumed.pt", weights_only=True))
