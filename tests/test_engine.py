"""The epoch engine: one callback contract on every trainer, and the pieces plugged into it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dbn import functional as Fn
from dbn._shard import Shard
from dbn._validation import DivergenceError
from dbn.autoencoder import DenoisingAutoencoder, train_autoencoder
from dbn.distributed import train_rbm_distributed
from dbn.engine import (
    CheckpointEvery,
    DivergenceCheck,
    EarlyStopping,
    Piece,
    ProgressBar,
    fit_loop,
    indexed_callbacks,
    lr_factor,
    minibatches,
    run_callbacks,
)
from dbn.rbm import RBM, CDTrainer, train_rbm
from dbn.stack import pretrain_stack
from dbn.training import build_mlp, fit_network


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def binary():
    return (torch.rand(120, 10, generator=gen(1)) < 0.3).float()


@pytest.fixture(scope="module")
def labelled():
    X = torch.randn(90, 4, generator=gen(2))
    return X, (X[:, 0] > 0).long()


def stop_at(epoch: int, seen: list):
    """A callback that records the epochs it sees and returns True at ``epoch``."""

    def callback(model, record):
        seen.append(record["epoch"])
        return record["epoch"] == epoch

    return callback


# ---------------------------------------------------------------------------------------------
# The contract: returning True stops after that epoch, on every trainer
# ---------------------------------------------------------------------------------------------


def test_cdtrainer_fit_stops_after_the_epoch_a_callback_returns_true(binary):
    seen = []
    trainer = CDTrainer(RBM(10, 4, generator=gen()), batch_size=20, generator=gen())
    records = trainer.fit(binary, 6, callbacks=[stop_at(2, seen)])
    assert seen == [1, 2] and len(records) == 2 and trainer.epoch == 2 and len(trainer.history) == 2


def test_train_rbm_stops(binary):
    seen = []
    history = train_rbm(
        RBM(10, 4, generator=gen()), binary, n_epochs=5, batch_size=20, generator=gen(), callbacks=[stop_at(3, seen)]
    )
    assert seen == [1, 2, 3] and [r["epoch"] for r in history] == [1, 2, 3]


def test_train_rbm_distributed_stops_in_one_process(binary):
    seen = []
    history = train_rbm_distributed(
        RBM(10, 4, generator=gen()), binary, n_epochs=5, batch_size=20, generator=gen(), callbacks=[stop_at(1, seen)]
    )
    assert seen == [1] and len(history) == 1


def test_train_autoencoder_stops(binary):
    seen = []
    dae = DenoisingAutoencoder(10, 4, generator=gen())
    history = train_autoencoder(dae, binary, n_epochs=5, batch_size=20, generator=gen(), callbacks=[stop_at(2, seen)])
    assert seen == [1, 2] and len(history) == 2


@pytest.mark.parametrize("kind", ["rbm", "dae"])
def test_pretrain_stack_callback_stops_the_layer(binary, kind):
    seen = []

    def callback(i, layer, record):
        seen.append((i, record["epoch"]))
        return record["epoch"] == 2

    stack = pretrain_stack(
        binary, (6, 3), pretrain=kind, n_epochs=4, batch_size=20, generator=gen(), callbacks=[callback]
    )
    assert seen == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert [len(h) for h in stack.histories] == [2, 2]


def test_fit_network_stops(labelled):
    X, y = labelled
    seen = []
    history = fit_network(
        build_mlp(4, (5,), 2, generator=gen()), X, y, max_iter=6, generator=gen(), callbacks=[stop_at(2, seen)]
    )
    assert seen == [1, 2] and len(history) == 2 and history.stopped_early


def test_fit_network_with_early_stopping_stops_on_callback(labelled):
    X, y = labelled
    seen = []
    history = fit_network(
        build_mlp(4, (5,), 2, generator=gen()),
        X,
        y,
        max_iter=6,
        generator=gen(),
        early_stopping=True,
        n_iter_no_change=50,
        callbacks=[stop_at(3, seen)],
    )
    assert seen == [1, 2, 3] and len(history) == 3 and history.stopped_early
    assert history.best_epoch is not None


@pytest.mark.parametrize("value", [1, "yes", [0], None, False])
def test_only_true_itself_stops(labelled, value):
    X, y = labelled
    history = fit_network(
        build_mlp(4, (5,), 2, generator=gen()), X, y, max_iter=3, generator=gen(), callbacks=[lambda net, record: value]
    )
    assert len(history) == 3 and not history.stopped_early


def test_every_callback_runs_even_after_one_asks_to_stop(binary):
    late = []
    train_rbm(
        RBM(10, 4, generator=gen()),
        binary,
        n_epochs=4,
        batch_size=20,
        generator=gen(),
        callbacks=[lambda m, r: True, lambda m, r: late.append(r["epoch"])],
    )
    assert late == [1]


def test_run_callbacks_and_indexed_callbacks():
    assert run_callbacks([lambda m, r: None, lambda m, r: True], None, {}) is True
    assert run_callbacks([lambda m, r: 1], None, {}) is False
    [hook] = indexed_callbacks([lambda i, m, r: i == 3], 3)
    assert hook(None, {}) is True
    assert indexed_callbacks([], 0) == []


# ---------------------------------------------------------------------------------------------
# The loop and its pieces
# ---------------------------------------------------------------------------------------------


class Recorder(Piece):
    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def check(self, model, record):
        self.events.append(("check", record["epoch"]))

    def on_epoch_end(self, model, record, stop):
        self.events.append(("end", record["epoch"], stop))
        return record["epoch"] == self.stop_at

    def close(self):
        self.events.append(("close",))


def test_fit_loop_order_and_piece_stop():
    piece, later = Recorder(stop_at=2), Recorder()
    calls = []
    records = fit_loop(
        "m",
        range(1, 9),
        lambda e: {"epoch": e},
        callbacks=[lambda m, r: calls.append(r["epoch"])],
        pieces=[piece, later],
    )
    assert [r["epoch"] for r in records] == [1, 2] and calls == [1, 2]
    assert piece.events == [("check", 1), ("end", 1, False), ("check", 2), ("end", 2, False), ("close",)]
    assert later.events[-2:] == [("end", 2, True), ("close",)]  # later pieces see the stop


def test_fit_loop_closes_pieces_on_error():
    piece = Recorder()

    def run_epoch(epoch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fit_loop(None, range(1, 3), run_epoch, pieces=[piece])
    assert piece.events == [("close",)]


def test_fit_loop_appends_to_given_records():
    records = [{"epoch": 1}]
    out = fit_loop(None, range(2, 4), lambda e: {"epoch": e}, records=records)
    assert out is records and [r["epoch"] for r in records] == [1, 2, 3]


def test_early_stopping_restores_best_weights():
    net = nn.Linear(1, 1, bias=False)
    losses = {1: 3.0, 2: 1.0, 3: 2.0, 4: 2.5, 5: 0.1}
    best = {}

    def run_epoch(epoch):
        with torch.no_grad():
            net.weight.fill_(float(epoch))
        return {"epoch": epoch, "loss": losses[epoch]}

    stopping = EarlyStopping("loss", patience=2, tol=0.0, on_best=lambda e: best.setdefault("epochs", []).append(e))
    records = fit_loop(net, range(1, 6), run_epoch, pieces=[stopping])
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # two epochs without improvement after 2
    assert stopping.best_epoch == 2 and best["epochs"] == [1, 2]
    assert net.weight.item() == 4.0
    stopping.restore(net)
    assert net.weight.item() == 2.0


def test_early_stopping_maximises_and_tracks_without_stopping():
    stopping = EarlyStopping("score", minimize=False, patience=1, stop=False)
    scores = [0.1, 0.5, 0.4, 0.3]
    records = fit_loop(nn.Linear(1, 1), range(1, 5), lambda e: {"epoch": e, "score": scores[e - 1]}, pieces=[stopping])
    assert len(records) == 4 and stopping.best_epoch == 2 and stopping.best_state is None


def test_early_stopping_tol_counts_small_improvements_as_none():
    stopping = EarlyStopping("loss", patience=2, tol=0.5)
    losses = [1.0, 0.9, 0.8, 0.7]
    records = fit_loop(nn.Linear(1, 1), range(1, 5), lambda e: {"epoch": e, "loss": losses[e - 1]}, pieces=[stopping])
    assert len(records) == 3 and stopping.best_epoch == 3  # best still follows the raw value


def test_fit_network_early_stopping_restores_best_epoch(labelled):
    X, y = labelled
    snapshots = {}

    def keep(net, record):
        snapshots[record["epoch"]] = {k: v.clone() for k, v in net.state_dict().items()}

    net = build_mlp(4, (5,), 2, generator=gen())
    history = fit_network(
        net,
        X,
        y,
        max_iter=30,
        learning_rate=0.5,
        early_stopping=True,
        n_iter_no_change=2,
        generator=gen(),
        callbacks=[keep],
    )
    assert history.best_epoch is not None
    for name, value in net.state_dict().items():
        assert torch.equal(value, snapshots[history.best_epoch][name])


def test_lr_factor_schedules():
    assert lr_factor("constant", 0.5, 3) == 1.0
    assert lr_factor("exponential", 0.5, 3) == 0.125
    assert lr_factor("inverse", 0.5, 2) == 0.5
    assert lr_factor(lambda epoch: 10.0 * epoch, 0.0, 2) == 20.0


def test_lr_schedule_reaches_the_trainer(binary):
    trainer = CDTrainer(
        RBM(10, 4, generator=gen()),
        learning_rate=0.1,
        lr_schedule="exponential",
        lr_decay=0.5,
        batch_size=20,
        generator=gen(),
    )
    records = trainer.fit(binary, 3)
    assert [r["learning_rate"] for r in records] == pytest.approx([0.1, 0.05, 0.025])


def test_divergence_check_loss_and_parameters():
    check = DivergenceCheck("loss", lambda r: f"bad loss at {r['epoch']}", hint="lower it")
    net = nn.Linear(2, 1)
    check.check(net, {"epoch": 1, "loss": 1.0})
    with pytest.raises(DivergenceError, match="bad loss at 2"):
        check.check(net, {"epoch": 2, "loss": float("inf")})
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="'weight'.*lower it"):
        check.check(net, {"epoch": 3, "loss": 1.0})
    with pytest.raises(DivergenceError, match="'weight'"):
        DivergenceCheck(None, hint="").check(net, {"epoch": 3})


def test_divergence_stops_each_trainer(binary, labelled):
    X = binary * 1e6
    with pytest.raises(DivergenceError, match="RBM training diverged at epoch"):
        train_rbm(
            RBM(10, 4, visible="gaussian", generator=gen()),
            X,
            n_epochs=3,
            learning_rate=10.0,
            batch_size=20,
            generator=gen(),
        )
    Xl, y = labelled
    with pytest.raises(DivergenceError, match="diverged at epoch"):
        fit_network(
            build_mlp(4, (16,), 2, activation="relu", init="he", generator=gen()),
            Xl * 1e3,
            y,
            max_iter=5,
            learning_rate=1e6,
            generator=gen(),
        )
    with pytest.raises(DivergenceError, match="diverged at epoch"):
        train_autoencoder(
            DenoisingAutoencoder(10, 4, visible="gaussian", generator=gen()),
            X,
            n_epochs=3,
            learning_rate=10.0,
            batch_size=20,
            generator=gen(),
        )


def test_progress_bar_and_checkpoint_pieces():
    saved = []
    bar = ProgressBar(3, "demo", disable=True)
    fit_loop(
        None,
        range(1, 4),
        lambda e: {"epoch": e, "loss": 1.0 / e},
        callbacks=[lambda m, r: r["epoch"] == 2],
        pieces=[bar, CheckpointEvery(lambda r, s: saved.append((r["epoch"], s)))],
    )
    assert saved == [(1, False), (2, True)]


def test_verbose_progress_bar_runs(binary, labelled, capsys):
    train_rbm(RBM(10, 4, generator=gen()), binary, n_epochs=2, batch_size=20, generator=gen(), verbose=True)
    X, y = labelled
    fit_network(build_mlp(4, (5,), 2, generator=gen()), X, y, max_iter=2, generator=gen(), verbose=True)
    assert "fit_network" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Mini-batches
# ---------------------------------------------------------------------------------------------


def test_minibatches_unshuffled_are_slices():
    b = minibatches(7, 3, shuffle=False, generator=None, device=torch.device("cpu"))
    assert b.rows == [slice(0, 3), slice(3, 6), slice(6, 9)] and b.sizes == [3, 3, 1]


def test_minibatches_shuffled_is_one_randperm():
    b = minibatches(7, 3, shuffle=True, generator=gen(5), device=torch.device("cpu"))
    assert torch.equal(torch.cat(list(b.rows)), torch.randperm(7, generator=gen(5)))
    assert b.sizes == [3, 3, 1]


def test_minibatches_with_train_index():
    index = torch.tensor([9, 4, 2, 7])
    b = minibatches(4, 3, shuffle=False, generator=None, device=torch.device("cpu"), train_index=index)
    assert [r.tolist() for r in b.rows] == [[9, 4, 2], [7]]
    b = minibatches(4, 3, shuffle=True, generator=gen(1), device=torch.device("cpu"), train_index=index)
    assert torch.equal(torch.cat(list(b.rows)), index[torch.randperm(4, generator=gen(1))])


def test_minibatches_sharded_cover_the_global_batches():
    device = torch.device("cpu")
    parts = []
    for offset, n_local in ((0, 4), (4, 3)):
        shard = Shard(offset, 7, 2, lambda t: None)
        b = minibatches(7, 3, shuffle=True, generator=gen(3), device=device, shard=shard, n_local=n_local)
        assert b.sizes == [3, 3, 1]
        parts.append([(r + offset).tolist() for r in b.rows])
    order = torch.randperm(7, generator=gen(3)).tolist()
    for batch in range(3):
        assert sorted(parts[0][batch] + parts[1][batch]) == sorted(order[3 * batch : 3 * batch + 3])


# ---------------------------------------------------------------------------------------------
# The CD step against the plain statistics (functional.cd_statistics is its oracle)
# ---------------------------------------------------------------------------------------------


def test_cd_step_matches_cd_statistics(binary):
    rbm = RBM(10, 4, generator=gen())
    W0, b0, c0 = (p.detach().clone() for p in rbm.parameters())
    trainer = CDTrainer(rbm, learning_rate=0.1, generator=gen(7))
    v0 = binary[:20]
    with torch.no_grad():
        trainer.step(v0, 0.1, 0.0)
    g = gen(7)
    h0 = Fn.hidden_probs(v0, W0, c0)
    hs = Fn.sample_bernoulli(h0, g)
    vk = Fn.visible_mean(hs, W0, b0)
    hk = Fn.hidden_probs(vk, W0, c0)
    dW, db, dc = Fn.cd_statistics(v0, h0, vk, hk)
    torch.testing.assert_close(rbm.weight.detach(), W0 + 0.1 * dW)
    torch.testing.assert_close(rbm.visible_bias.detach(), b0 + 0.1 * db)
    torch.testing.assert_close(rbm.hidden_bias.detach(), c0 + 0.1 * dc)


@pytest.mark.parametrize("persistent", [False, True])
def test_reduced_step_equals_single_process_step(binary, persistent):
    """The data-parallel accumulation with an identity all-reduce gives the one-process update."""
    rbm_a, rbm_b = RBM(10, 4, generator=gen()), RBM(10, 4, generator=gen())
    opts = dict(
        learning_rate=0.1,
        k=2,
        persistent=persistent,
        momentum=0.5,
        weight_decay=1e-3,
        sparsity_target=0.1,
        sparsity_cost=0.2,
    )
    a = CDTrainer(rbm_a, generator=gen(3), **opts)
    b = CDTrainer(rbm_b, generator=gen(3), all_reduce=lambda t: None, **opts)
    with torch.no_grad():
        for start in range(0, 60, 20):
            a.step(binary[start : start + 20], 0.1, 0.5)
            b.step(binary[start : start + 20], 0.1, 0.5)
    for pa, pb in zip(rbm_a.parameters(), rbm_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


# ---------------------------------------------------------------------------------------------
# train_autoencoder: n_epochs=0 and the shared optimizer factory
# ---------------------------------------------------------------------------------------------


def test_train_autoencoder_accepts_zero_epochs(binary):
    dae = DenoisingAutoencoder(10, 4, generator=gen())
    w0 = dae.weight.detach().clone()
    assert train_autoencoder(dae, binary, n_epochs=0, generator=gen()) == []
    assert torch.equal(dae.weight, w0)


def test_train_autoencoder_adadelta_and_callable(binary):
    dae = DenoisingAutoencoder(10, 4, generator=gen())
    assert (
        len(train_autoencoder(dae, binary, n_epochs=1, optimizer="adadelta", learning_rate=1.0, generator=gen())) == 1
    )
    made = []

    def factory(params):
        made.append(1)
        return torch.optim.SGD(params, lr=0.01)

    train_autoencoder(dae, binary, n_epochs=1, optimizer=factory, momentum=0.5, generator=gen())
    assert made == [1]
    with pytest.raises(ValueError, match="momentum"):
        train_autoencoder(dae, binary, n_epochs=1, optimizer="adadelta", momentum=0.5, generator=gen())


def test_batch_rows_gathers_groups_of_batches_in_order(monkeypatch):
    from dbn import engine

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(103, 5, generator=gen)
    order = torch.randperm(103, generator=gen)
    rows = list(order.split(10))  # the last batch has 3 rows
    calls = []
    real = torch.index_select

    def counting(*args, **kwargs):
        calls.append(args[2].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "GATHER_BYTES", 25 * 5 * 4)  # two or three batches per gather
    monkeypatch.setattr(torch, "index_select", counting)
    got = [b.clone() for b in engine.batch_rows(X, rows)]
    assert [b.shape[0] for b in got] == [10] * 10 + [3]
    for b, r in zip(got, rows, strict=True):
        assert torch.equal(b, X[r])
    assert sum(calls) == 103 and max(calls) <= 25 and len(calls) < len(rows)
    # slices stay views, empty epochs yield nothing, variable lengths (shards) are kept
    views = list(engine.batch_rows(X, [slice(0, 4), slice(4, 8)]))
    assert views[0].data_ptr() == X.data_ptr() and torch.equal(views[1], X[4:8])
    assert list(engine.batch_rows(X, [])) == []
    ragged = [torch.tensor([5]), torch.tensor([], dtype=torch.long), torch.tensor([1, 2, 0])]
    assert [b.tolist() for b in engine.batch_rows(X, ragged)] == [X[r].tolist() for r in ragged]
