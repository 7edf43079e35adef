"""The thread policy: torch's global count is restored after every fit (also after an
exception), ``dbn.threads(n)`` is honoured inside fits, small products run on one thread."""

import os

import numpy as np
import pytest
import torch

import dbn
from dbn import _threads
from dbn._threads import MIN_PARALLEL_WORK, MIN_PARALLEL_WORK_BACKPROP, batch_work, fit_threads, policy_threads
from dbn.engine import fit_loop


@pytest.fixture
def two_threads():
    """Tests run on one thread (conftest); these need torch to start from two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _data(n=60, d=8, seed=0):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def test_small_fit_runs_on_one_thread_and_restores(two_threads):
    seen = []
    rbm = dbn.RBM(8, 4, generator=torch.Generator().manual_seed(0))
    dbn.train_rbm(
        rbm,
        _data(),
        n_epochs=2,
        batch_size=10,
        generator=torch.Generator().manual_seed(1),
        callbacks=[lambda m, r: seen.append(torch.get_num_threads())],
    )
    assert seen == [1, 1]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("trainer", ["rbm", "dae", "network"])
def test_override_is_honoured_inside_every_trainer(two_threads, trainer):
    seen = []
    record = lambda *args: seen.append(torch.get_num_threads())  # noqa: E731
    g = torch.Generator().manual_seed(0)
    X = _data()
    with dbn.threads(2):
        if trainer == "rbm":
            dbn.train_rbm(dbn.RBM(8, 4, generator=g), X, n_epochs=2, batch_size=10, generator=g, callbacks=[record])
        elif trainer == "dae":
            dbn.train_autoencoder(
                dbn.DenoisingAutoencoder(8, 4, generator=g),
                X,
                n_epochs=2,
                batch_size=10,
                generator=g,
                callbacks=[record],
            )
        else:
            net = dbn.build_mlp(8, (4,), 2, generator=g)
            dbn.fit_network(net, X, (X[:, 0] > 0).long(), max_iter=2, batch_size=10, generator=g, callbacks=[record])
    assert seen == [2, 2]
    with dbn.threads(1):
        dbn.train_rbm(dbn.RBM(8, 4, generator=g), X, n_epochs=1, batch_size=10, generator=g, callbacks=[record])
        assert torch.get_num_threads() == 1
    assert seen[-1] == 1
    assert torch.get_num_threads() == 2


def test_thread_count_restored_after_an_exception(two_threads):
    def boom(epoch):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit_loop(None, range(1, 3), boom, work=10)
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"):
        with dbn.threads(1):
            fit_loop(None, range(1, 3), boom, work=10**9)
    assert torch.get_num_threads() == 2


def test_exception_in_a_callback_restores_threads(two_threads):
    def callback(model, record):
        raise KeyError("from the callback")

    g = torch.Generator().manual_seed(0)
    with pytest.raises(KeyError, match="from the callback"):
        dbn.train_rbm(dbn.RBM(8, 4, generator=g), _data(), n_epochs=2, batch_size=10, generator=g, callbacks=[callback])
    assert torch.get_num_threads() == 2


def test_large_work_keeps_the_users_count_whatever_the_load(two_threads, monkeypatch):
    assert policy_threads(MIN_PARALLEL_WORK) == 2
    assert policy_threads(MIN_PARALLEL_WORK - 1) == 1
    # the count depends on the problem alone, never on the machine's load (reproducibility)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0), raising=False)
    assert policy_threads(10**9) == 2
    with dbn.threads(1):
        assert policy_threads(10**9) == 1
    assert policy_threads(10**9, device="meta") == 2  # off the CPU the count is left alone
    with fit_threads(10**9) as n:
        assert n == torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_threads_validation_nesting_and_decorator(two_threads):
    with pytest.raises(ValueError, match="'n'"):
        dbn.threads(0)
    with dbn.threads(1):
        with dbn.threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    with dbn.threads(None):
        assert policy_threads(1) == 2  # the override keeps torch's count: no size rule

    @dbn.threads(1)
    def inside():
        return torch.get_num_threads()

    assert inside() == 1 and torch.get_num_threads() == 2


def test_batch_work():
    assert batch_work(10, dbn.RBM(64, 100)) == 64_000
    assert batch_work(5, torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))) == 5 * (12 + 8)


def test_estimators_restore_threads(two_threads):
    X = _data(40, 6).numpy().astype(np.float32)
    model = dbn.RBMTransformer(n_components=3, n_iter=2, random_state=0).fit(X)
    assert torch.get_num_threads() == 2
    model.transform(X)
    clf = dbn.DBNClassifier((4,), n_iter=1, max_iter=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    clf.predict(X)
    assert torch.get_num_threads() == 2


def test_default_policy_never_reads_the_load_without_a_probe(two_threads, monkeypatch):
    def boom():
        raise AssertionError("the load was read by a fit without a probe, outside threads('auto')")

    monkeypatch.setattr(_threads, "idle_cores", boom)
    assert policy_threads(10**9) == 2
    dbn.train_rbm(dbn.RBM(8, 4), _data(), n_epochs=2, batch_size=10, generator=torch.Generator().manual_seed(0))


def test_auto_caps_by_idle_cores_and_follows_the_load_per_epoch(two_threads, monkeypatch):
    idle = iter([1, 2, 1, 2])  # fit start, then before each of the 3 epochs
    monkeypatch.setattr(_threads, "idle_cores", lambda: next(idle))
    seen = []
    with dbn.threads("auto"):
        assert torch.get_num_threads() == 2  # "auto" leaves torch's count alone
        fit_loop(None, range(1, 4), lambda e: seen.append(torch.get_num_threads()) or {}, work=10**9)
        assert torch.get_num_threads() == 2
    assert seen == [2, 1, 2]
    assert torch.get_num_threads() == 2
    # small products stay on one thread without reading the load; so do explicit counts
    monkeypatch.setattr(_threads, "idle_cores", lambda: 2)
    with dbn.threads("auto"):
        assert policy_threads(10) == 1
        assert policy_threads(10**9) == 2
        with dbn.threads(1):
            assert policy_threads(10**9) == 1
    with pytest.raises(ValueError, match="'n'.*'auto'"):
        dbn.threads("fast")


def test_default_follows_the_load_only_where_the_probe_agrees(two_threads, monkeypatch):
    monkeypatch.setattr(_threads, "idle_cores", lambda: 1)
    probed, seen = [], []

    def same():
        probed.append(torch.get_num_threads())
        return [torch.ones(3)]

    def epoch(e):
        seen.append(torch.get_num_threads())
        return {}

    fit_loop(None, range(1, 4), epoch, work=10**9, probe=same)
    assert seen == [1, 1, 1]  # one core idle and the probe agrees: follow the load
    assert sorted(probed) == [1, 2]  # each count probed once for the whole fit
    assert torch.get_num_threads() == 2
    # a probe whose result depends on the count: the fit keeps its count
    seen.clear()
    fit_loop(None, range(1, 4), epoch, work=10**9, probe=lambda: [torch.tensor(float(torch.get_num_threads()))])
    assert seen == [2, 2, 2]
    # so does a probe whose tensors differ in shape or dtype, or that returns NaN
    for varying in (
        lambda: [torch.zeros(torch.get_num_threads())],
        lambda: [torch.zeros(2, dtype=torch.float32 if torch.get_num_threads() == 1 else torch.float64)],
        lambda: [torch.tensor(float("nan"))],
    ):
        seen.clear()
        fit_loop(None, range(1, 3), epoch, work=10**9, probe=varying)
        assert seen == [2, 2]
    # the load goes away: back to the fit's count; verdicts kept in the probe's dict
    idle = iter([1, 2, 1])
    monkeypatch.setattr(_threads, "idle_cores", lambda: next(idle))
    probed.clear()
    seen.clear()
    same.verdicts = {}  # type: ignore[attr-defined]
    fit_loop(None, range(1, 4), epoch, work=10**9, probe=same)
    assert seen == [1, 2, 1] and sorted(probed) == [1, 2] and same.verdicts == {(2, 1): True}
    probed.clear()
    monkeypatch.setattr(_threads, "idle_cores", lambda: 1)
    fit_loop(None, range(1, 2), epoch, work=10**9, probe=same)
    assert probed == []  # the kept verdict: no probe
    # small work and explicit counts never probe
    seen.clear()

    def boom():
        raise AssertionError("probed")

    fit_loop(None, range(1, 3), epoch, work=10, probe=boom)
    with dbn.threads(2):
        fit_loop(None, range(1, 3), epoch, work=10**9, probe=boom)
    assert seen == [1, 1, 2, 2]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    "n_visible, n_hidden, batch_size, persistent",
    # 784 x 10 at batch 200 rounds differently on one thread than on two on the project's
    # machine (the probe must refuse there); 64 x 200 does not
    [(64, 200, 100, False), (64, 200, 100, True), (784, 10, 200, False)],
)
def test_rbm_fit_under_load_equals_the_quiet_fit(two_threads, monkeypatch, n_visible, n_hidden, batch_size, persistent):
    """The CD trainer's probe: following the load never changes the result (whatever the
    verdict on this machine), and the probe leaves the trainer untouched."""
    X, V = _data(450, n_visible, seed=1), _data(40, n_visible, seed=2)

    def fit(idle):
        monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
        g = torch.Generator().manual_seed(0)
        rbm = dbn.RBM(n_visible, n_hidden, generator=g)
        trainer = dbn.CDTrainer(rbm, batch_size=batch_size, persistent=persistent, generator=g)
        assert trainer.batch_size * trainer.rbm.weight.numel() >= MIN_PARALLEL_WORK
        history = trainer.fit(X, 2, validation_data=V)
        return trainer, history

    quiet, quiet_history = fit(2)
    loaded, loaded_history = fit(1)
    assert all(
        torch.equal(a, b)
        for a, b in zip(quiet.rbm.state_dict().values(), loaded.rbm.state_dict().values(), strict=True)
    )
    assert [{k: v for k, v in r.items() if k != "time"} for r in quiet_history] == [
        {k: v for k, v in r.items() if k != "time"} for r in loaded_history
    ]
    # the probe runs on a scratch copy
    state = {k: v.clone() for k, v in loaded.rbm.state_dict().items()}
    generator_state, epochs = loaded.generator.get_state(), len(loaded.history)
    first = loaded._thread_probe(X, V)()
    second = loaded._thread_probe(X, V)()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(torch.equal(state[k], v) for k, v in loaded.rbm.state_dict().items())
    assert torch.equal(loaded.generator.get_state(), generator_state) and len(loaded.history) == epochs


@pytest.mark.parametrize("n_samples", [905, 910, 1037])
def test_rbm_fit_with_a_short_last_batch_follows_the_load(two_threads, monkeypatch, n_samples):
    """A last batch of 5 or 10 rows (MKL rounds such products differently on two threads)
    runs on one thread, so the probe agrees (asserted on AVX-512, where it was measured) and
    the loaded fit equals the quiet one."""
    X = _data(n_samples, 784, seed=1)

    def fit(idle):
        monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
        g = torch.Generator().manual_seed(0)
        trainer = dbn.CDTrainer(dbn.RBM(784, 500, generator=g), batch_size=100, momentum=0.5, generator=g)
        used: list[int] = []
        trainer.fit(X, 2, callbacks=[lambda model, record: used.append(torch.get_num_threads())])
        return trainer, used

    (quiet, quiet_used), (loaded, loaded_used) = fit(2), fit(1)
    assert quiet_used == [2, 2]
    assert all(
        torch.equal(a, b)
        for a, b in zip(quiet.rbm.state_dict().values(), loaded.rbm.state_dict().values(), strict=True)
    )
    assert [r["reconstruction_error"] for r in quiet.history] == [r["reconstruction_error"] for r in loaded.history]
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert loaded_used == [1, 1]


@pytest.mark.parametrize(
    "n_visible, n_hidden, batch_size, n_samples",
    # the last: an epoch's last batch of 10 rows, which the step runs on one thread
    [(64, 256, 400, 900), (784, 500, 100, 900), (784, 500, 100, 910)],
)
def test_autoencoder_fit_under_load_equals_the_quiet_fit(
    two_threads, monkeypatch, n_visible, n_hidden, batch_size, n_samples
):
    """784-500 at batch 100 rounded differently on one thread than on two before the
    autoencoder used the invariant sigmoid and row-wise loss sums; now its probe agrees
    (asserted on AVX-512, where it was measured) and the losses and weights are the same."""
    X = _data(n_samples, n_visible, seed=3)

    def fit(idle):
        monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
        g = torch.Generator().manual_seed(0)
        dae = dbn.DenoisingAutoencoder(n_visible, n_hidden, generator=g)
        assert batch_work(batch_size, dae) >= MIN_PARALLEL_WORK_BACKPROP
        used: list[int] = []
        history = dbn.train_autoencoder(
            dae,
            X,
            n_epochs=2,
            batch_size=batch_size,
            momentum=0.9,
            generator=g,
            callbacks=[lambda model, record: used.append(torch.get_num_threads())],
        )
        return dae, [r["loss"] for r in history], used

    quiet, quiet_losses, quiet_used = fit(2)
    loaded, loaded_losses, loaded_used = fit(1)
    assert quiet_used == [2, 2]
    assert quiet_losses == loaded_losses
    assert all(torch.equal(a, b) for a, b in zip(quiet.parameters(), loaded.parameters(), strict=True))
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert loaded_used == [1, 1]


def test_large_loss_sums_do_not_depend_on_the_thread_count(two_threads):
    """fit_network's mse / multi-label losses over more than torch's grain and the
    autoencoder's loss are summed by rows first: a full sum of a large tensor splits over the
    threads and rounds differently on each count (about half of random 100 x 784 tensors)."""
    from dbn.training import _loss_fn

    g = torch.Generator().manual_seed(0)
    for s in range(8):
        out, target = torch.randn(100, 784, generator=g), torch.rand(100, 784, generator=g)
        dae = dbn.DenoisingAutoencoder(784, 20, generator=torch.Generator().manual_seed(s))
        values = []
        for n in (1, 2):
            torch.set_num_threads(n)
            values.append(
                [
                    _loss_fn(name)(out, target, reduction=r)
                    for name in ("mse", "binary_cross_entropy")
                    for r in ("mean", "sum")
                ]
                + [dae._loss(target, None, corrupted=False, invariant=True)]
            )
        assert all(torch.equal(a, b) for a, b in zip(*values, strict=True))
        assert torch.allclose(values[0][0], torch.nn.functional.mse_loss(out, target))


def test_auto_counts_only_other_processes(monkeypatch, tmp_path):
    """idle_cores: runnable tasks of /proc/loadavg minus this process's running threads."""
    tasks = tmp_path / "task"
    for tid, state in ((1, "R"), (2, "R"), (3, "S")):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (py thon) {state} 1 2 3\n")
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(_threads, "_PROC_SELF_TASKS", str(tasks))
    monkeypatch.setattr(_threads, "_PROC_LOADAVG", str(loadavg))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    loadavg.write_text("0.50 0.40 0.30 2/180 4242\n")  # our two running threads only
    assert _threads.idle_cores() == 4
    loadavg.write_text("3.00 2.00 1.00 5/180 4242\n")  # three other jobs
    assert _threads.idle_cores() == 1
    loadavg.write_text("9.00 9.00 9.00 12/180 4242\n")
    assert _threads.idle_cores() == 1  # never below one
    loadavg.unlink()
    assert _threads.idle_cores() == 4  # no /proc: all the usable cores


def test_idle_cores_ignores_a_process_seen_for_an_instant(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    readings = iter([1, 1, 2, 1])
    monkeypatch.setattr(_threads, "_idle_once", lambda cores: next(readings))
    assert _threads.idle_cores(samples=4, interval=0.0) == 2  # the most idle reading
    readings = iter([1, 1, 1, 1])
    assert _threads.idle_cores(samples=4, interval=0.0) == 1  # a job seen in every reading
    readings = iter([1, 2])
    assert _threads.idle_cores(samples=1, interval=0.0) == 1
    readings = iter([None])
    assert _threads.idle_cores(samples=3, interval=0.0) == 2  # no /proc: all the usable cores


def test_backprop_trainers_have_their_own_crossover(two_threads, monkeypatch):
    """A work between the two crossovers: two threads for CD, one for back-propagation."""
    monkeypatch.setattr(_threads, "idle_cores", lambda: 2)  # a quiet machine
    assert MIN_PARALLEL_WORK < MIN_PARALLEL_WORK_BACKPROP
    n_in, n_hidden, batch = 64, 256, 100  # 1.6e6
    assert MIN_PARALLEL_WORK <= batch * n_in * n_hidden < MIN_PARALLEL_WORK_BACKPROP
    X = _data(200, n_in)
    g = torch.Generator().manual_seed(0)
    seen = {}
    record = lambda key: lambda *args: seen.setdefault(key, torch.get_num_threads())  # noqa: E731
    dbn.train_rbm(dbn.RBM(n_in, n_hidden), X, n_epochs=1, batch_size=batch, generator=g, callbacks=[record("cd")])
    dae = dbn.DenoisingAutoencoder(n_in, n_hidden, generator=g)
    dbn.train_autoencoder(dae, X, n_epochs=1, batch_size=batch, generator=g, callbacks=[record("dae")])
    net = torch.nn.Sequential(torch.nn.Linear(n_in, n_hidden), torch.nn.Sigmoid(), torch.nn.Linear(n_hidden, 2))
    y = (X[:, 0] > 0).long()
    dbn.fit_network(net, X, y, max_iter=1, batch_size=batch, generator=g, callbacks=[record("fit")])
    assert seen == {"cd": 2, "dae": 1, "fit": 1}
    assert torch.get_num_threads() == 2


def test_invariant_sigmoid_is_the_vectorised_sigmoid_on_any_thread_count(two_threads):
    """dbn._invariant.sigmoid has, for every element, the bits of torch.sigmoid's vectorised
    loop on one thread (a zero-padded tensor of a multiple of 32 elements), on 1-4 threads
    (chunk borders off the vector step are where torch's own differ), forward and backward,
    and within 2 ulp of torch.sigmoid itself."""
    from dbn._invariant import VECTOR_STEP, sigmoid

    for shape in [(100, 500), (200, 500), (37, 1001), (100, 2000), (1000, 100), (10, 64), (3, 33000), (7, 5)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 4
        torch.set_num_threads(1)
        n_elements = x.numel()
        padded = torch.zeros(-(-n_elements // VECTOR_STEP) * VECTOR_STEP)
        padded[:n_elements] = x.view(-1)
        reference = torch.sigmoid(padded)[:n_elements].view(shape)
        assert torch.allclose(reference, torch.sigmoid(x), rtol=3e-7, atol=0)
        for n in (1, 2, 3, 4):
            torch.set_num_threads(n)
            leaf = x.clone().requires_grad_(True)
            y = sigmoid(leaf)
            y.backward(torch.ones_like(y))
            assert torch.equal(y.detach(), reference), (shape, n)
            assert torch.equal(leaf.grad, reference * (1 - reference)), (shape, n)


def test_invariant_linear_gradients_match_autograd():
    from dbn._invariant import linear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, requires_grad=True)
    w = torch.randn(3, 5, generator=g, requires_grad=True)
    b = torch.randn(3, generator=g, requires_grad=True)
    upstream = torch.randn(7, 3, generator=g)
    linear(x, w, b).backward(upstream)
    ours = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    torch.nn.functional.linear(x, w, b).backward(upstream)
    assert all(torch.allclose(a, t.grad, atol=1e-6) for a, t in zip(ours, (x, w, b), strict=True))
    assert ours[1].shape == w.shape


@pytest.mark.parametrize("shape", [(5, 3), (100, 784), (64, 500), (20, 2000)])
def test_invariant_linear_products_do_not_depend_on_threads_or_rows(two_threads, shape):
    """dbn._invariant.linear: the forward and both gradients have the same bits on 1 and 2
    threads, and a row's forward result is the same in any batch of 1-100 rows (MKL's
    F.linear does neither on the project's Intel machine)."""
    from dbn._invariant import linear

    n_in, n_out = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, n_in, generator=g)
    w = (torch.randn(n_out, n_in, generator=g) * 0.1).requires_grad_(True)
    b = torch.randn(n_out, generator=g).requires_grad_(True)
    upstream = torch.randn(100, n_out, generator=g)
    runs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        leaf = x.clone().requires_grad_(True)
        w.grad = b.grad = None
        out = linear(leaf, w, b)
        out.backward(upstream)
        runs.append([out.detach(), leaf.grad, w.grad.clone(), b.grad.clone()])
    assert all(torch.equal(p, q) for p, q in zip(*runs, strict=True))
    with torch.no_grad():
        full = linear(x, w, b)
        for start, rows in ((0, 1), (3, 1), (10, 2), (17, 7), (40, 33)):
            assert torch.equal(linear(x[start : start + rows], w, b), full[start : start + rows]), (start, rows)
    assert torch.allclose(full, torch.nn.functional.linear(x, w, b), atol=1e-5)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_predictions_do_not_depend_on_the_batch(activation):
    """predict_logits (every estimator's predict) gives a sample the same output, bit for bit,
    alone, in a small batch or in the whole set (scikit-learn's subset-invariance check asks
    for 1e-7, which float32 products with MKL's row-dependent kernels missed by 2e-6)."""
    from dbn.training import predict_logits

    net = dbn.build_mlp(
        13,
        (50, 30),
        3,
        activation=activation,
        init="he" if activation == "relu" else "xavier",
        generator=torch.Generator().manual_seed(0),
    )
    X = torch.randn(40, 13, generator=torch.Generator().manual_seed(1))
    full = predict_logits(net, X)
    alone = torch.cat([predict_logits(net, X[i : i + 1]) for i in range(40)])
    assert torch.equal(full, alone)
    assert torch.equal(predict_logits(net, X, batch_size=7), full)
    with torch.no_grad():
        assert torch.allclose(full, net(X), atol=1e-5)


def test_sequential_forward_only_for_plain_sequentials_without_hooks():
    from dbn._invariant import SequentialForward

    net = dbn.build_mlp(6, (40,), 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 6)
    forward = SequentialForward.of(net)
    assert forward is not None and torch.allclose(forward(x), net(x))
    assert SequentialForward.of(torch.nn.Linear(6, 3)) is None
    handle = net[0].register_forward_hook(lambda module, inputs, output: output * 2)
    assert SequentialForward.of(net) is None  # the hook would be skipped
    handle.remove()
    assert SequentialForward.of(net) is not None


@pytest.mark.parametrize(
    "case",
    [
        {"hidden": (500,), "kw": {}},
        {"hidden": (500,), "dropout": 0.5, "kw": {"max_norm": 3.0}},
        # a validation split: the epoch's last batch has 45 rows, the validation pass 105
        {"hidden": (300,), "n": 1050, "kw": {"early_stopping": True, "validation_fraction": 0.1}},
        # last batch of 10 rows (MKL's small-row products differ on two threads)
        {"hidden": (300,), "n": 910, "kw": {}},
        # mse over 400 outputs: a loss summed over more than torch's grain
        {"hidden": (300,), "outputs": 400, "kw": {"loss": "mse", "optimizer": "adam", "learning_rate": 1e-3}},
        # L-BFGS: the probe steps a copied optimizer with its closure
        {"hidden": (500,), "kw": {"optimizer": "lbfgs", "learning_rate": 1.0, "weight_decay": 1e-4}},
    ],
    ids=["sigmoid", "dropout", "validation-split", "batch-of-10", "mse-400", "lbfgs"],
)
def test_fine_tuning_under_load_equals_the_quiet_fit(two_threads, monkeypatch, case):
    """fit_network's probe: following the load never changes the result. A 500-unit sigmoid
    layer at batch 100, a 10-unit output layer and batches of a few rows are the cases that
    round differently on one thread than on two with torch's own forms; with the invariant
    ones the probe agrees (asserted on AVX-512, where it was measured) and the loaded fit
    runs on one thread."""
    g = torch.Generator().manual_seed(0)
    n, n_out = case.get("n", 1000), case.get("outputs", 10)
    X = torch.rand(n, 784, generator=g)
    y = torch.rand(n, n_out, generator=g) if n_out != 10 else torch.randint(0, 10, (n,), generator=g)

    def fit(idle):
        monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
        net = dbn.build_mlp(
            784, case["hidden"], n_out, dropout=case.get("dropout", 0.0), generator=torch.Generator().manual_seed(0)
        )
        assert batch_work(100, net) >= MIN_PARALLEL_WORK_BACKPROP
        used: list[int] = []
        history = dbn.fit_network(
            net,
            X,
            y,
            max_iter=2,
            batch_size=100,
            generator=torch.Generator().manual_seed(1),
            callbacks=[lambda model, record: used.append(torch.get_num_threads())],
            **{"learning_rate": 0.1, **case["kw"]},
        )
        return net, [{k: v for k, v in r.items() if k != "time"} for r in history], used

    quiet, quiet_history, quiet_used = fit(2)
    loaded, loaded_history, loaded_used = fit(1)
    assert quiet_used == [2, 2]
    assert all(
        torch.equal(a, b) for a, b in zip(quiet.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    assert quiet_history == loaded_history
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert loaded_used == [1, 1]


def test_fine_tuning_probe_leaves_the_fit_untouched(two_threads, monkeypatch):
    """The probe fit_network hands the thread policy runs on scratch copies: the network, the
    optimizer and the global random state (dropout's) are as before, and two runs agree."""
    from dbn import training

    checked = []

    def fit_loop(net, epochs, run_epoch, *, probe, **kw):
        before = {k: v.clone() for k, v in net.state_dict().items()}
        rng = torch.get_rng_state()
        first, second = probe(), probe()
        n_params = len(list(net.parameters()))
        # (loss, output) of a full and a last short batch, two validation outputs, the
        # parameters and the momentum buffers
        assert len(first) == 2 * 2 + 2 + 2 * n_params
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
        assert torch.equal(torch.get_rng_state(), rng)
        checked.append(True)
        return real(net, epochs, run_epoch, probe=probe, **kw)

    real = training.fit_loop
    monkeypatch.setattr(training, "fit_loop", fit_loop)
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(250, 64, generator=g), torch.randint(0, 3, (250,), generator=g)
    net = dbn.build_mlp(64, (32,), 3, dropout=0.5, generator=torch.Generator().manual_seed(0))
    X_val, y_val = torch.rand(50, 64, generator=g), torch.randint(0, 3, (50,), generator=g)
    dbn.fit_network(net, X, y, max_iter=1, batch_size=100, validation_data=(X_val, y_val), eval_batch_size=20)
    assert checked == [True]


def test_products_that_may_run_on_two_threads_are_onednns():
    from dbn._linalg import ONEDNN_MIN_WORK

    assert ONEDNN_MIN_WORK == MIN_PARALLEL_WORK


@pytest.mark.parametrize(("n_visible", "n_hidden", "batch"), [(784, 100, 20), (64, 100, 200), (100, 100, 100)])
@pytest.mark.parametrize("momentum", [0.5, 0.0])
def test_cd_fits_above_the_crossover_do_not_depend_on_the_thread_count(
    two_threads, n_visible, n_hidden, batch, momentum
):
    """CD epochs of sizes that run on two threads give the same weights on one: their forward
    products are oneDNN's and the weight statistics accumulate with MKL's alpha = beta = 1
    (on the project's Intel machine MKL's addmm_ with other scalars, and its forward products
    at these sizes, differed on one and two threads)."""
    assert batch * n_visible * n_hidden >= MIN_PARALLEL_WORK
    X = (torch.rand(300, n_visible, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    weights = []
    for n in (1, 2):
        with dbn.threads(n):
            rbm = dbn.RBM(n_visible, n_hidden, generator=torch.Generator().manual_seed(0))
            dbn.train_rbm(
                rbm, X, n_epochs=1, batch_size=batch, momentum=momentum, generator=torch.Generator().manual_seed(1)
            )
        weights.append([p.detach().clone() for p in rbm.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_outer_accumulate_matches_the_formula():
    from dbn._linalg import outer_accumulate_

    g = torch.Generator().manual_seed(0)
    acc, a, b = torch.randn(5, 7, generator=g), torch.randn(4, 5, generator=g), torch.randn(4, 7, generator=g)
    for alpha, beta in ((1.0, 1.0), (0.25, 0.5), (-0.1, 1.0), (2.0, 0.0)):
        expected = beta * acc + alpha * a.t() @ b
        assert torch.allclose(outer_accumulate_(acc.clone(), a, b, alpha=alpha, beta=beta), expected, atol=1e-6)
    nan = torch.full((5, 7), float("nan"))
    assert torch.isfinite(outer_accumulate_(nan, a, b, beta=0.0)).all()  # beta = 0 overwrites, as BLAS does
    # above the crossover: the scalars applied outside the product
    acc, a, b = (
        torch.randn(500, 784, generator=g),
        torch.randn(100, 500, generator=g),
        torch.randn(100, 784, generator=g),
    )
    for alpha, beta in ((0.25, 0.5), (-0.1, 1.0), (2.0, 0.0)):
        expected = beta * acc + alpha * a.t() @ b
        assert torch.allclose(outer_accumulate_(acc.clone(), a, b, alpha=alpha, beta=beta), expected, atol=1e-4)
    nan = torch.full((500, 784), float("nan"))
    assert torch.isfinite(outer_accumulate_(nan, a, b, beta=0.0)).all()
