"""Tests of the comparison harness: measurements, statistics, storage/resume, report and findings."""

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from dbn import DBNClassifier, cli
from dbn._random import make_generator
from dbn.datasets import load_dataset
from dbn.harness import (
    ARMS,
    StudyConfig,
    findings,
    report,
    run_study,
    runner,
    summarise_runs,
    write_report,
)
from dbn.harness import figures as figs
from dbn.harness.metrics import (
    layer_statistics,
    paired_differences,
    t_interval,
    weight_change,
)
from dbn.harness.runner import ResultStore, fit_arm, load_rows, prepare_data
from dbn.training import build_mlp, linear_layers

TINY = dict(
    dataset="digits",
    arms=("relu-he", "dbn"),
    depths=(1, 2),
    widths=(16,),
    sizes=(80,),
    seeds=(0, 1),
    epochs=2,
    pretrain_epochs=1,
    batch_size=20,
    probe_size=50,
    unlabelled=False,
    protocol="shared",
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cfg = StudyConfig(**TINY)
    res = run_study(cfg, out, progress=False)
    return cfg, out, res


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[0.1, 0.12, 0.09], [1.0, 2.0, 4.0, 8.0, 3.5], [5.0, 5.5]])
def test_t_interval_matches_scipy(values):
    ci = t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert ci["mean"] == pytest.approx(np.mean(values))
    assert ci["low"] == pytest.approx(low)
    assert ci["high"] == pytest.approx(high)
    assert ci["n"] == len(values)


def test_t_interval_degenerate_cases():
    assert math.isnan(t_interval([0.3])["low"]) and t_interval([0.3])["mean"] == 0.3
    assert t_interval([])["n"] == 0
    assert t_interval([1.0, float("nan"), 3.0])["n"] == 2


def test_paired_differences_pairs_by_key():
    a = {0: 0.30, 1: 0.50, 2: 0.40, 3: 9.0}
    b = {0: 0.20, 1: 0.45, 2: 0.28}  # key 3 has no partner and is ignored
    d = paired_differences(a, b)
    diffs = [0.10, 0.05, 0.12]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(np.mean(diffs))
    assert (d["low"], d["high"]) == (pytest.approx(low), pytest.approx(high))
    # pairing removes the between-seed variance that an unpaired interval would include
    assert d["half_width"] < t_interval([a[k] for k in b])["half_width"]


# ---------------------------------------------------------------------------------------------
# gradient and activation measurements vs manual autograd
# ---------------------------------------------------------------------------------------------


def _manual_statistics(net, X, y):
    """Per-example loop with retain_grad on the pre-activations of a plain Sequential."""
    net.eval()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    per_example = [[] for _ in linears]
    for i in range(X.shape[0]):
        x, pres = X[i : i + 1], []
        for m in net:
            x = m(x)
            if isinstance(m, torch.nn.Linear):
                x.retain_grad()
                pres.append(x)
        F.cross_entropy(x, y[i : i + 1]).backward()
        for k, s in enumerate(pres):
            per_example[k].append(float(s.grad.norm()) ** 2)
    grad_s = [math.sqrt(np.mean(v)) for v in per_example]
    net.zero_grad()
    F.cross_entropy(net(X), y).backward()
    grad_w = [float(lin.weight.grad.norm()) for lin in linears]
    net.zero_grad()
    with torch.no_grad():
        h, acts = X, []
        for m in net:
            h = m(h)
            if isinstance(m, (torch.nn.Sigmoid, torch.nn.ReLU)):
                acts.append(h.flatten())
    return grad_s, grad_w, acts


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_layer_statistics_match_manual_autograd(activation):
    g = torch.Generator().manual_seed(0)
    net = build_mlp(5, (7, 6, 4), 3, activation=activation, init="xavier", generator=g)
    X = torch.rand(12, 5, generator=g) * 4 - 2
    y = torch.randint(0, 3, (12,), generator=g)
    got = layer_statistics(net, X, y)
    grad_s, grad_w, acts = _manual_statistics(net, X, y)
    assert len(got) == 4
    for k in range(4):
        assert got[k]["grad_s"] == pytest.approx(grad_s[k], rel=1e-5)
        assert got[k]["grad_w"] == pytest.approx(grad_w[k], rel=1e-5)
        assert got[k]["grad_s_ratio"] == pytest.approx(grad_s[k] / grad_s[-1], rel=1e-5)
    for k, h in enumerate(acts):
        assert got[k]["act_mean"] == pytest.approx(float(h.mean()), abs=1e-6)
        assert got[k]["act_std"] == pytest.approx(float(h.std()), abs=1e-6)
        assert got[k]["act_p98"] == pytest.approx(float(np.quantile(h.numpy(), 0.98)), abs=1e-5)
        if activation == "relu":
            expected = float((h <= 0).float().mean())
        else:
            expected = float((h * (1 - h) < 0.05 * 0.25).float().mean())
        assert got[k]["act_saturated"] == pytest.approx(expected)
    assert all(p.grad is None for p in net.parameters())  # .grad left alone


def test_layer_statistics_saturation_and_modes():
    # huge weights saturate every sigmoid unit; dropout/batch norm nets are measured in eval mode
    net = build_mlp(3, (4,), 2, activation="sigmoid", dropout=0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        linear_layers(net)[0].weight.fill_(50.0)
    net.train()
    X = torch.ones(6, 3)
    y = torch.zeros(6, dtype=torch.long)
    a = layer_statistics(net, X, y)
    b = layer_statistics(net, X, y)
    assert a == b  # dropout off: deterministic
    assert a[0]["act_saturated"] == 1.0
    assert net.training  # mode restored
    bn = build_mlp(
        3, (4, 4), 2, activation="relu", init="he", batch_norm=True, generator=torch.Generator().manual_seed(0)
    )
    mx = build_mlp(3, (4,), 2, activation="maxout", generator=torch.Generator().manual_seed(0))
    assert len(layer_statistics(bn, torch.rand(8, 3), torch.zeros(8, dtype=torch.long))) == 3
    assert layer_statistics(mx, torch.rand(8, 3), torch.zeros(8, dtype=torch.long))[0]["act_saturated"] == 0.0


def test_weight_change():
    net = build_mlp(3, (4,), 2, generator=torch.Generator().manual_seed(0))
    w0 = [lin.weight.detach().clone() for lin in linear_layers(net)]
    with torch.no_grad():
        linear_layers(net)[0].weight.add_(1.0)
    (d0, r0), (d1, _) = weight_change(net, w0)
    assert d0 == pytest.approx(math.sqrt(12)) and r0 == pytest.approx(d0 / float(w0[0].norm()))
    assert d1 == 0.0


# ---------------------------------------------------------------------------------------------
# the runner reproduces DBNClassifier.fit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arm", ["relu-he-batchnorm", "dbn", "sda"])
def test_fit_arm_reproduces_the_estimator(arm):
    split = load_dataset("digits")
    X, y = split.X_train[:150], split.y_train[:150]
    params = {**ARMS[arm], "hidden_layer_sizes": (12, 8), "n_iter": 2, "max_iter": 3, "batch_size": 25}
    est = DBNClassifier(**params, random_state=0).fit(X, y)
    fit = fit_arm(params, torch.as_tensor(X), torch.as_tensor(y), n_classes=10, generator=make_generator(0, "cpu"))
    for a, b in zip(est.network_.state_dict().values(), fit.network.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["train_loss"] for r in est.history_] == [r["train_loss"] for r in fit.history]


def test_prepare_data_nested_stratified_subsets():
    split = load_dataset("digits")
    small = prepare_data(split, size=50, seed=3)
    large = prepare_data(split, size=200, seed=3)
    torch.testing.assert_close(large.X[:50], small.X)
    counts = torch.bincount(small.y, minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6
    other = prepare_data(split, size=50, seed=4)
    assert not torch.equal(other.X, small.X)
    semi = prepare_data(split, size=50, seed=3, unlabelled=True)
    assert semi.X_pretrain.shape[0] == split.X_train.shape[0]
    folds = [prepare_data(split, size="all", seed=0, fold=f, folds=3) for f in range(3)]
    n_pool = split.X_train.shape[0] + split.X_valid.shape[0]
    assert sum(f.X_valid.shape[0] for f in folds) == n_pool
    assert all(f.X.shape[0] + f.X_valid.shape[0] == n_pool for f in folds)
    with pytest.raises(ValueError, match="exceeds"):
        prepare_data(split, size=10**6, seed=0)


# ---------------------------------------------------------------------------------------------
# end to end: rows, resume, report
# ---------------------------------------------------------------------------------------------


def test_rows_written_with_expected_columns(study):
    cfg, out, res = study
    n_runs = len(cfg.run_specs())
    assert res.n_run == n_runs == 8
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == n_runs * (cfg.epochs + 1) == len(res.rows)
    import csv

    with open(out / "rows.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows)
    expected = {
        "run_key",
        "arm",
        "depth",
        "width",
        "size",
        "seed",
        "fold",
        "protocol",
        "epoch",
        "train_loss",
        "train_error",
        "valid_loss",
        "valid_error",
        "test_loss",
        "test_error",
        "pretrain_time",
        "finetune_time",
        "grad_s_L1",
        "grad_s_ratio_L1",
        "grad_w_L1",
        "act_mean_L1",
        "act_std_L1",
        "act_p98_L1",
        "act_saturated_L1",
        "wchange_L1",
        "grad_s_out",
        "grad_s_L2",
        "selected",
    }
    assert expected <= set(csv_rows[0])
    for r in rows:
        assert 0 <= r["test_error"] <= 1 and r["train_loss"] > 0
        assert ("grad_s_L2" in r) == (r["depth"] == 2)
        assert r["pretrained"] == (r["arm"] == "dbn")
    for key in {r["run_key"] for r in rows}:
        group = [r for r in rows if r["run_key"] == key]
        assert [r["epoch"] for r in group] == [0, 1, 2]
        assert sum(r["selected"] for r in group) == 1
        assert group[0]["wchange_L1"] == 0.0
    dbn_rows = [r for r in rows if r["arm"] == "dbn"]
    assert all(r["pretrain_time"] > 0 and r["n_pretrain"] == 80 for r in dbn_rows)


def test_same_seed_same_numbers_and_paired_batches(study, tmp_path):
    cfg, out, res = study
    spec = cfg.run_specs()[0]
    data = prepare_data(load_dataset("digits"), size=80, seed=spec.seed, probe_size=50)
    rows = runner.run_one(cfg, spec, data)
    stored = [r for r in res.rows if r["run_key"] == spec.key]
    for a, b in zip(rows, stored, strict=True):
        for k in ("train_loss", "test_loss", "grad_s_L1", "act_mean_L1"):
            assert a[k] == pytest.approx(b[k], rel=1e-6)
    # the fine-tuning generator depends on the seed only: every arm sees the same batches
    orders = []
    for arm in ("relu-he", "dbn"):
        seen = []
        fit_arm(
            {**ARMS[arm], "hidden_layer_sizes": (8,), "n_iter": 1, "max_iter": 2, "batch_size": 20},
            data.X,
            data.y,
            n_classes=10,
            generator=torch.Generator().manual_seed(data.init_seed),
            fit_generator=torch.Generator().manual_seed(data.fit_seed),
            callbacks=[lambda net, rec, seen=seen: seen.append(float(rec["train_loss"]))],
        )
        g = torch.Generator().manual_seed(data.fit_seed)
        torch.randint(0, 2**62, (1,), generator=g)
        orders.append(torch.randperm(80, generator=g))
        assert len(seen) == 2
    assert torch.equal(orders[0], orders[1])


def test_resume_skips_finished_runs_and_never_duplicates(study, tmp_path):
    cfg, out, _ = study
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(out, work)
    again = run_study(cfg, work, progress=False)
    assert again.n_run == 0 and again.n_skipped == 8
    lines = (work / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 8 * 3
    # an interruption mid-write: the last run's rows partly lost and a cut line
    last_key = json.loads(lines[-1])["run_key"]
    (work / "rows.jsonl").write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:20])
    store = ResultStore(work)
    assert last_key not in store.finished_keys() and len(store.finished_keys()) == 7
    resumed = run_study(cfg, work, progress=False)
    assert resumed.n_run == 1
    rows = load_rows(work)
    assert len(rows) == 24 and len({(r["run_key"], r["epoch"]) for r in rows}) == 24
    assert len((work / "rows.csv").read_text().strip().splitlines()) == 25


def test_interrupted_study_resumes(tmp_path, monkeypatch):
    cfg = StudyConfig(**{**TINY, "depths": (1,), "epochs": 1})
    calls = []
    interrupt = True
    real = runner.run_one

    def flaky(config, spec, data, *rest):
        calls.append(spec.key)
        if len(calls) == 3 and interrupt:
            raise RuntimeError("interrupted")  # e.g. the machine stops during the third run
        return real(config, spec, data, *rest)

    monkeypatch.setattr(runner, "run_one", flaky)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_study(cfg, tmp_path, progress=False)
    assert len({r["run_key"] for r in load_rows(tmp_path)}) == 2
    calls.clear()
    interrupt = False
    res = run_study(cfg, tmp_path, progress=False)
    assert res.n_run == 2 and len(calls) == 2
    assert len({r["run_key"] for r in res.rows}) == 4 and len(res.rows) == 8
    # a changed protocol is a different study: refused in the same directory unless forced, and
    # then its runs are not skipped
    other = cfg.replace(learning_rate=0.05, arms=("relu-he",), seeds=(0,))
    with pytest.raises(ValueError, match=r"holds a study with other settings: arms \(saved \["):
        run_study(other, tmp_path, progress=False)
    res2 = run_study(other, tmp_path, progress=False, force=True)
    assert res2.n_run == 1


def test_report_and_figures(study, tmp_path):
    cfg, out, _ = study
    path = write_report(out)
    text = path.read_text()
    for section in (
        "## Test error",
        "## Paired differences",
        "## Findings",
        "Vanishing gradients",
        "Overfitting / regularisation",
        "Optimisation",
    ):
        assert section in text
    assert "labelled subset only" in text
    assert (out / "runs.csv").exists()
    if figs.matplotlib_available():
        for name in (
            "learning_curves.png",
            "gradient_norms.png",
            "error_vs_depth.png",
            "error_vs_size.png",
            "train_vs_test.png",
        ):
            assert (out / name).stat().st_size > 1000
            assert f"]({name})" in text


def test_report_without_matplotlib(study, tmp_path, monkeypatch):
    import shutil

    cfg, out, _ = study
    work = tmp_path / "nomatplotlib"
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("*.png"))
    monkeypatch.setattr(figs, "matplotlib_available", lambda: False)
    text = write_report(work).read_text()
    assert "matplotlib is not installed" in text
    assert not list(work.glob("*.png"))


def test_no_matplotlib_at_import():
    code = "import sys, dbn.harness, dbn.cli; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# findings from synthetic tables
# ---------------------------------------------------------------------------------------------


def _synthetic(arm_values, *, size=100, depth=3, n_seeds=5, noise=0.002, **extra):
    rng = np.random.default_rng(0)
    runs = []
    for arm, (test, train) in arm_values.items():
        for s in range(n_seeds):
            e = noise * rng.standard_normal()
            runs.append(
                {
                    "arm": arm,
                    "pretrained": arm in ("dbn", "sda"),
                    "dataset": "d",
                    "depth": depth,
                    "width": 8,
                    "size": size,
                    "seed": s,
                    "fold": 0,
                    "test_error": test + e,
                    "train_error": train + e / 2,
                    "min_train_loss": 0.1 + train + e,
                    "gap": test - train + e / 2,
                    **extra.get(arm, {}),
                }
            )
    return runs


def test_findings_when_pretraining_clearly_regularises():
    runs = _synthetic({"sigmoid-normal": (0.20, 0.01), "dbn": (0.10, 0.01)})
    f = findings(runs)
    sentence = f["regularisation"][0]
    assert "supports the regulariser reading" in sentence
    by_seed = {a: {r["seed"]: r["test_error"] for r in runs if r["arm"] == a} for a in ("dbn", "sigmoid-normal")}
    d = paired_differences(by_seed["dbn"], by_seed["sigmoid-normal"])
    assert -0.11 < d["mean"] < -0.09
    assert (
        f"test error {100 * d['mean']:+.2f} pp [95% CI {100 * d['low']:+.2f}, {100 * d['high']:+.2f}], n=5" in sentence
    )
    assert "inconclusive" in f["optimisation"][0]  # same training loss
    assert "lowest mean test error dbn" in f["arms"][0] and "(worse)" in f["arms"][0]


def test_findings_optimisation_and_harm():
    runs = _synthetic({"sigmoid-normal": (0.20, 0.10), "dbn": (0.10, 0.01)})
    f = findings(runs)
    assert "supports the optimisation reading" in f["optimisation"][0]
    assert "optimisation as much as with regularisation" in f["regularisation"][0]
    hurt = findings(_synthetic({"sigmoid-normal": (0.10, 0.01), "dbn": (0.20, 0.01)}))
    assert "hurt" in hurt["regularisation"][0]


def test_findings_inconclusive_when_intervals_overlap():
    runs = _synthetic({"sigmoid-normal": (0.15, 0.01), "dbn": (0.149, 0.01)}, noise=0.02)
    f = findings(runs)
    assert "inconclusive" in f["regularisation"][0]
    assert "(inconclusive)" in f["arms"][0]
    one_seed = findings(_synthetic({"sigmoid-normal": (0.2, 0.0), "dbn": (0.1, 0.0)}, n_seeds=1))
    assert "inconclusive" in one_seed["regularisation"][0] and "no interval" in one_seed["regularisation"][0]


def test_findings_against_modern_random_init():
    # relu-he fits the training set better (lower loss) but tests worse: the regulariser reading
    extra = {"sigmoid-normal": {"test_loss": 0.5}, "relu-he": {"test_loss": 0.4}, "dbn": {"test_loss": 0.3}}
    runs = _synthetic({"sigmoid-normal": (0.20, 0.05), "relu-he": (0.12, 0.0), "dbn": (0.10, 0.05)}, **extra)
    f = findings(runs)
    assert all("sigmoid-normal" not in s for s in f["modern"])  # the baseline has its own sections
    (sentence,) = f["modern"]
    assert sentence.startswith("**dbn vs relu-he, depth 3, width 8, 100 labels**")
    assert "still helps, as a regulariser" in sentence and "relu-he reached a lower training loss" in sentence
    assert "test loss -0.100 [95% CI" in sentence
    worse = findings(_synthetic({"sigmoid-normal": (0.2, 0.0), "relu-he": (0.05, 0.0), "dbn": (0.10, 0.0)}, **extra))[
        "modern"
    ][0]
    assert "**relu-he is better** here" in worse
    tie = findings(
        _synthetic({"sigmoid-normal": (0.2, 0.0), "relu-he": (0.10, 0.0), "dbn": (0.10, 0.0)}, noise=0.02, **extra)
    )["modern"][0]
    assert "inconclusive" in tie


def test_findings_vanishing_gradients_and_size_trend():
    grads = {
        "sigmoid-normal": {
            "init_grad_shrink": -3.0,
            "init_wgrad_shrink": -0.5,
            "init_grad_ratio_bottom": -5.0,
            "init_saturated_top": 0.0,
        },
        "dbn": {
            "init_grad_shrink": -0.5,
            "init_wgrad_shrink": 0.0,
            "init_grad_ratio_bottom": -1.5,
            "init_saturated_top": 0.1,
        },
    }
    runs = (
        _synthetic({"sigmoid-normal": (0.60, 0.5), "dbn": (0.20, 0.0)}, size=100, depth=3, **grads)
        + _synthetic({"sigmoid-normal": (0.10, 0.0), "dbn": (0.09, 0.0)}, size="all", depth=3, **grads)
        + _synthetic({"sigmoid-normal": (0.15, 0.0), "dbn": (0.16, 0.0)}, size=100, depth=1, **grads)
    )
    f = findings(runs)
    text = "\n".join(f["vanishing_gradients"])
    assert (
        "sigmoid-normal, depth 3, width 8, 100 labels, at initialisation**: "
        "log10(||dL/ds|| bottom / top hidden layer) = -3.00"
    ) in text
    assert "shrinks toward the input" in text and "depth **hurt**" in text
    assert "pretraining starts with a **larger** bottom-layer gradient" in text
    trend = [s for s in f["regularisation"] if "minus (difference at all labels)" in s]
    assert trend and "larger with fewer labels" in trend[0]
    shallow = findings(_synthetic({"sigmoid-normal": (0.2, 0.0), "dbn": (0.1, 0.0)}, depth=1))
    assert "one hidden layer" in shallow["vanishing_gradients"][0]


def test_summarise_runs_on_study(study):
    _, _, res = study
    runs = summarise_runs(res.rows)
    assert len(runs) == 8
    for r in runs:
        assert r["gap"] == pytest.approx(r["test_error"] - r["train_error"])
        assert r["min_train_loss_epoch"] in (0, 1, 2)
        if r["depth"] == 1:
            assert r["init_grad_shrink"] == 0.0


# ---------------------------------------------------------------------------------------------
# configuration errors
# ---------------------------------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ValueError, match="Unknown arm 'nope'"):
        StudyConfig(arms=("nope",))
    with pytest.raises(ValueError, match="protocol parameters"):
        StudyConfig(arms=("mine",), extra_arms={"mine": {"pretrain": None, "max_iter": 5}})
    with pytest.raises(ValueError, match="'depths'"):
        StudyConfig(depths=(0,))
    with pytest.raises(ValueError, match="'learning_rate'"):
        StudyConfig(learning_rate=-1.0)
    cfg = StudyConfig(
        arms=("mine", "relu-he"),
        extra_arms={"mine": {"pretrain": None, "activation": "tanh", "init": "xavier"}},
        sizes=[50],
        seeds=[0],
    )
    assert [s.arm for s in cfg.replace(protocol="shared").run_specs()][:2] == ["mine", "relu-he"]
    assert StudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.protocol_hash("relu-he") != cfg.replace(epochs=3).protocol_hash("relu-he")


def test_pretrained_stacks_are_shared_across_labelled_sizes(tmp_path):
    from dbn.harness import StudyConfig, run_study

    common = dict(
        dataset="digits",
        arms=("dbn",),
        depths=(1,),
        widths=(16,),
        seeds=(0,),
        epochs=2,
        pretrain_epochs=1,
        unlabelled=True,
        protocol="shared",
    )
    both = run_study(StudyConfig(sizes=(60, 120), **common), tmp_path / "both", progress=False)
    alone = run_study(StudyConfig(sizes=(120,), **common), tmp_path / "alone", progress=False)
    rows_both = [r for r in both.rows if r["size"] == 120]
    assert [r["pretrain_cached"] for r in both.rows if r["epoch"] == 0] == [False, True]
    for a, b in zip(rows_both, alone.rows, strict=True):
        for key in ("test_error", "train_loss", "valid_loss"):
            assert a[key] == b[key]
    # the report counts the shared stack's time once
    from dbn.harness.report import write_report

    text = write_report(tmp_path / "both", figures=False).read_text()
    first = next(r for r in both.rows if r["epoch"] == 0)
    assert f"pretraining {first['pretrain_time']:.1f} s (1 stack, reused by 1 further run:" in text


def test_negligible_differences_are_not_findings():
    from dbn.harness.report import findings

    # both arms on the same plateau: a 1e-5-nat difference with a tiny interval is no evidence
    def runs_at(error):
        return [
            {
                "arm": a,
                "pretrained": a == "dbn",
                "dataset": "d",
                "depth": 3,
                "width": 8,
                "size": 100,
                "seed": s,
                "fold": 0,
                "test_error": error,
                "train_error": error,
                "gap": 0.0,
                "min_train_loss": 2.302 + (1e-5 if a == "sigmoid-normal" else 0.0) + 1e-7 * s,
            }
            for a in ("sigmoid-normal", "dbn")
            for s in range(3)
        ]

    sentence = findings(runs_at(0.4))["optimisation"][0]
    assert "inconclusive" in sentence and "supports" not in sentence
    # stuck at chance (90% training error), the baseline is named as such and not compared with
    (sentence,) = findings(runs_at(0.9))["optimisation"]
    assert "sigmoid-normal did not train" in sentence and "supports" not in sentence


# ---------------------------------------------------------------------------------------------
# the report's summary, arms at chance, figures
# ---------------------------------------------------------------------------------------------


def _with_chance_baseline():
    """sigmoid-normal stuck at its initial (chance) error with 100 labels, trained with all labels."""
    chance = {"init_train_error": 0.9, "min_train_error": 0.9}
    trained = {"init_train_error": 0.9, "min_train_error": 0.0}
    runs = _synthetic(
        {"sigmoid-normal": (0.90, 0.9), "dbn": (0.20, 0.0)},
        size=100,
        depth=3,
        **{"sigmoid-normal": chance, "dbn": trained},
    ) + _synthetic(
        {"sigmoid-normal": (0.10, 0.0), "dbn": (0.09, 0.0)},
        size="all",
        depth=3,
        **{"sigmoid-normal": trained, "dbn": trained},
    )
    return runs


def test_an_arm_at_chance_is_never_a_baseline():
    runs = _with_chance_baseline()
    f = findings(runs)
    text = "\n".join(f["regularisation"] + f["optimisation"])
    assert "**sigmoid-normal did not train at depth 3, width 8, 100 labels**" in text
    assert "no better than at initialisation" in text
    assert "dbn vs sigmoid-normal, depth 3, width 8, 100 labels" not in text  # no comparison with it there
    assert "dbn vs sigmoid-normal, depth 3, width 8, all labels" in text  # where it trained, it is compared
    assert not any("minus (difference at" in s for s in f["regularisation"])  # no trend from one trained cell
    assert "did not train: at chance" in next(s for s in f["arms"] if "100 labels" in s)
    summary = "\n".join(report.summary(runs))
    assert (
        "**Did not train** (at chance; never used as a baseline): sigmoid-normal at depth 3, width 8, 100 labels"
        in summary
    )
    assert "better test error in 1 of 1 comparisons" in summary  # the chance cell is not counted
    # a modern arm at chance is not a baseline either
    modern = [dict(r, arm="relu-he") for r in runs if r["arm"] == "sigmoid-normal"]
    assert not any("dbn vs relu-he, depth 3, width 8, 100 labels" in s for s in findings(runs + modern)["modern"])


def test_summary_states_a_verdict_per_hypothesis():
    grads = {"sigmoid-normal": {"init_grad_shrink": -3.0}, "dbn": {"init_grad_shrink": -0.1}}
    runs = _synthetic({"sigmoid-normal": (0.30, 0.2), "dbn": (0.10, 0.0)}, depth=3, **grads) + _synthetic(
        {"sigmoid-normal": (0.12, 0.05), "dbn": (0.11, 0.0)}, depth=1, **grads
    )
    lines = report.summary(runs)
    assert [s.split(":")[0] for s in lines] == [
        "**Overfitting / regulariser",
        "**Vanishing gradients",
        "**Optimisation",
    ]
    assert lines[0].startswith("**Overfitting / regulariser: not supported.**") and "`train_vs_test.png`" in lines[0]
    assert lines[1].startswith("**Vanishing gradients: supported for sigmoid-normal.**")
    assert lines[2].startswith("**Optimisation: supported.**") and "`learning_curves.png`" in lines[2]


def test_report_summary_first_and_no_figure_references_without_figures(study, tmp_path):
    import shutil

    _, out, _ = study
    work = tmp_path / "nofigures"
    shutil.copytree(out, work, ignore=shutil.ignore_patterns("*.png"))
    text = write_report(work, figures=False).read_text()
    assert text.index("## Summary") < text.index("## Setup") < text.index("## Findings")
    assert "**Overfitting / regulariser: " in text and "**Optimisation: " in text
    assert ".png" not in text and "Figures not requested" in text
    if figs.matplotlib_available():
        drawn = write_report(work).read_text()
        assert "(figure `train_vs_test.png`)" in drawn.split("## Setup")[0]


def test_figures_leave_out_diverged_arms_and_clip_axes(tmp_path):
    pytest.importorskip("matplotlib")
    rows, runs = [], []
    for arm, diverged in (("relu-he", False), ("maxout-dropout", True)):
        for seed in range(2):
            key = f"{arm}-{seed}"
            runs.append(
                {
                    "run_key": key,
                    "arm": arm,
                    "depth": 1,
                    "width": 8,
                    "size": 100,
                    "seed": seed,
                    "n_train": 100,
                    "test_error": 0.1,
                    "gap": 0.05,
                }
            )
            for epoch in range(20):
                loss = math.nan if diverged else 1.0 / (epoch + 1)
                test_loss = 1e4 if (seed == 1 and epoch == 19) else 1.2 / (epoch + 1)
                nan = diverged and epoch > 0  # a diverged run's epoch 0 (initialisation) is finite
                rows.append(
                    {
                        "run_key": key,
                        "arm": arm,
                        "depth": 1,
                        "width": 8,
                        "size": 100,
                        "epoch": epoch,
                        "selected": epoch == 2,
                        "train_error": math.nan if nan else 0.1,
                        "valid_error": math.nan if nan else 0.1,
                        "test_error": math.nan if nan else 0.1,
                        "train_loss": loss,
                        "test_loss": math.nan if diverged else test_loss,
                    }
                )
    captions = figs.make_figures(rows, runs, tmp_path)
    left_out = "Left out, no finite error after initialisation (diverged): maxout-dropout."
    assert left_out in captions["learning_curves.png"]
    assert "not shown" in captions["train_vs_test.png"]


def test_figures_of_an_unfinished_study_use_the_largest_size_each_depth_has(tmp_path):
    # depth 1 finished with 100 and 1000 labels, depth 2 only with 100: the deepest figures must
    # show depth 2 at 100 labels, not an empty (depth 2, 1000) cell called "diverged"
    pytest.importorskip("matplotlib")
    from dbn.harness.figures import _largest_size

    rows, runs = [], []
    for depth, size in ((1, 100), (1, 1000), (2, 100)):
        for seed in range(2):
            key = f"d{depth}-n{size}-{seed}"
            common = {"run_key": key, "arm": "relu-he", "depth": depth, "width": 8, "size": size}
            runs.append({**common, "seed": seed, "n_train": size, "test_error": 0.1, "gap": 0.05})
            for epoch in range(4):
                errors = {"train_error": 0.1, "valid_error": 0.1, "test_error": 0.1}
                losses = {"train_loss": 1.0 / (epoch + 1), "test_loss": 1.2 / (epoch + 1)}
                rows.append({**common, "epoch": epoch, "selected": epoch == 3, **errors, **losses})
    assert _largest_size(runs, 1) == 1000 and _largest_size(runs, 2) == 100
    captions = figs.make_figures(rows, runs, tmp_path)
    assert "Left out" not in captions["learning_curves.png"]
    assert "depth 2, 100 labels" in captions["learning_curves.png"]


# -- portable results (issue 15) ---------------------------------------------------------------


def test_study_resumed_from_a_copied_directory_skips_finished_runs(tmp_path, monkeypatch):
    import shutil

    from dbn.datasets import load_dataset
    from dbn.harness.store import dataset_hash

    cfg = StudyConfig(**{**TINY, "depths": (1,), "epochs": 1, "seeds": (0,)})
    first = run_study(cfg, tmp_path / "a", progress=False)
    assert first.n_run == 2
    rows = load_rows(tmp_path / "a")
    assert {r["dataset"] for r in rows} == {"digits"}
    assert {r["dataset_hash"] for r in rows} == {dataset_hash(load_dataset("digits"))}
    shutil.copytree(tmp_path / "a", tmp_path / "moved" / "b")
    shutil.rmtree(tmp_path / "a")
    calls = []
    monkeypatch.setattr(runner, "run_one", lambda *a: calls.append(a) or [])
    again = run_study(cfg, tmp_path / "moved" / "b", progress=False)
    assert again.n_run == 0 and again.n_skipped == 2 and calls == []
    # one more seed: only its runs are run, the copied ones are kept
    monkeypatch.undo()
    more = run_study(cfg.replace(seeds=(0, 1)), tmp_path / "moved" / "b", progress=False, force=True)
    assert more.n_run == 2 and more.n_skipped == 2


def test_study_on_a_data_file_records_a_relative_path_and_resumes_when_moved_with_it(tmp_path):
    import shutil

    from dbn.datasets import load_dataset

    split = load_dataset("digits")
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    np.savez(
        project / "data" / "d.npz",
        X_train=split.X_train,
        y_train=split.y_train,
        X_valid=split.X_valid,
        y_valid=split.y_valid,
        X_test=split.X_test,
        y_test=split.y_test,
    )
    cfg = StudyConfig(
        **{
            **TINY,
            "dataset": str(project / "data" / "d.npz"),
            "arms": ("relu-he",),
            "depths": (1,),
            "epochs": 1,
            "seeds": (0,),
        }
    )
    out = project / "study"
    run_study(cfg, out, progress=False)
    (row,) = [r for r in load_rows(out) if r["epoch"] == 0]
    assert row["dataset"] == "../data/d.npz" and row["run_key"].startswith("../data/d.npz|relu-he|")
    assert json.loads((out / "config.json").read_text())["dataset"] == "../data/d.npz"
    assert str(tmp_path) not in (out / "rows.csv").read_text()
    shutil.copytree(project, tmp_path / "clone")
    res = run_study(
        cfg.replace(dataset=str(tmp_path / "clone" / "data" / "d.npz")), tmp_path / "clone" / "study", progress=False
    )
    assert res.n_run == 0 and res.n_skipped == 1
    # the same name with other contents is refused
    np.savez(
        tmp_path / "clone" / "data" / "d.npz",
        X_train=split.X_train[:-1],
        y_train=split.y_train[:-1],
        X_valid=split.X_valid,
        y_valid=split.y_valid,
        X_test=split.X_test,
        y_test=split.y_test,
    )
    with pytest.raises(ValueError, match="has other contents"):
        run_study(
            cfg.replace(dataset=str(tmp_path / "clone" / "data" / "d.npz"), seeds=(0, 1)),
            tmp_path / "clone" / "study",
            progress=False,
            force=True,
        )


def test_failed_start_leaves_nothing_behind(tmp_path, capsys):
    cfg = StudyConfig(**{**TINY, "dataset": str(tmp_path / "missing.npz"), "depths": (1,), "epochs": 1})
    with pytest.raises(FileNotFoundError):
        run_study(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    status = cli.main(
        [
            "compare",
            "--dataset",
            str(tmp_path / "nope.npz"),
            "--arms",
            "relu-he",
            "--depths",
            "1",
            "--out",
            str(tmp_path / "out2"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and "nope.npz" in err and len(err.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "out2").exists()


def test_cli_refuses_an_out_directory_with_other_settings_unless_forced(tmp_path, capsys):
    args = [
        "compare",
        "--arms",
        "relu-he",
        "--depths",
        "1",
        "--width",
        "8",
        "--sizes",
        "60",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--no-figures",
    ]
    assert cli.main(args) == 0
    assert cli.main(args) == 0  # same settings: resumed (nothing to do)
    capsys.readouterr()
    assert cli.main([*args[:-5], "2", *args[-4:]]) == 1
    assert re.search(r"other settings: epochs \(saved 1, now 2\)\. Use another output", capsys.readouterr().err)
    with pytest.raises(ValueError, match=r"other settings: epochs \(saved 1, now 2\)"):  # --debug: the exception
        cli.main(["--debug", *args[:-5], "2", *args[-4:]])
    assert cli.main([*args[:-5], "2", *args[-4:], "--force"]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 2


def test_migrate_study_rewrites_absolute_paths_and_keys(tmp_path):
    import csv

    from dbn.harness.store import migrate_study

    cfg = StudyConfig(**{**TINY, "arms": ("relu-he",), "depths": (1,), "epochs": 1, "seeds": (0,)})
    run_study(cfg, tmp_path, progress=False)
    write_report(tmp_path, figures=False)
    # make it look like a study written before results were portable
    old = "/old/machine/data/digits.pkl.gz"
    rows = load_rows(tmp_path)
    legacy = [
        {
            **{k: v for k, v in r.items() if k != "dataset_hash"},
            "dataset": old,
            "run_key": r["run_key"].replace("digits|", old + "|", 1),
        }
        for r in rows
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in legacy))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "dataset": old}))
    runs_text = (tmp_path / "runs.csv").read_text()
    (tmp_path / "runs.csv").write_text(runs_text.replace("digits|", old + "|").replace(",digits,", f",{old},"))
    changed = migrate_study(tmp_path, "digits", content_hash=rows[0]["dataset_hash"])
    assert changed == {"config.json": 1, "rows.jsonl": len(rows), "rows.csv": len(rows), "runs.csv": 1}
    assert load_rows(tmp_path) == rows
    assert (tmp_path / "runs.csv").read_text() == runs_text
    assert old not in (tmp_path / "rows.csv").read_text()
    with open(tmp_path / "runs.csv", newline="") as f:
        assert next(csv.DictReader(f))["dataset"] == "digits"
    assert run_study(cfg, tmp_path, progress=False).n_run == 0  # the migrated study resumes


def test_literature_trend_reads_the_whole_sequence_and_compares_with_the_expected_direction():
    from dbn.harness.report import _trend

    def e(mean, half=0.1):
        return {"mean": mean, "low": mean - half, "high": mean + half}

    assert _trend([e(-0.5), e(0.4), e(1.3)], "grows") == "grows: **agrees** with it"
    assert _trend([e(-0.5), e(-0.6), e(-0.1)], "shrinks") == "grows, not monotone: **disagrees** with it"
    assert _trend([e(-0.6), e(0.1), e(-0.03)], "grows") == "grows, not monotone: **agrees** with it"
    assert _trend([e(0.4), e(0.35)], "shrinks") == "shrinks, within the intervals: inconclusive"
    assert _trend([e(0.4), {"mean": 0.2}], "shrinks").endswith("inconclusive")
