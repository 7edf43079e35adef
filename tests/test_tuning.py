"""The tuned comparison: each arm's fine-tuning setting chosen on validation data, same grid and budget."""

import json
import math

import pytest
import torch

from dbn import DBNClassifier
from dbn.engine import EarlyStopping, fit_loop
from dbn.harness import StudyConfig, run_study, runner, write_report
from dbn.harness.config import ARMS, DEFAULT_GRID, GRIDS, QUICK_GRID, arm_params, setting_label
from dbn.harness.runner import choose_settings, load_rows
from dbn.harness.tuning import Choice, TuningResult, choose_setting, tuning_results

#: A grid whose answer is known: a learning rate too small to move the weights in two epochs, one
#: that trains, and one so large that training diverges to NaN.
KNOWN = (
    {"solver": "sgd", "learning_rate_init": 1e-7, "momentum": 0.0},
    {"solver": "adam", "learning_rate_init": 1e-2},
    {"solver": "sgd", "learning_rate_init": 1e4, "momentum": 0.9},
)
SMALL = dict(
    dataset="digits",
    depths=(1,),
    widths=(16,),
    sizes=(120,),
    seeds=(0, 1),
    epochs=3,
    patience=3,
    pretrain_epochs=1,
    batch_size=20,
    probe_size=50,
    unlabelled=True,
)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    cfg = StudyConfig(arms=("relu-he", "dbn", "dbn-dropout"), grid=KNOWN, **SMALL)
    return cfg, out, run_study(cfg, out, progress=False)


# ---------------------------------------------------------------------------------------------
# the choice itself
# ---------------------------------------------------------------------------------------------


def _r(setting, err, loss=1.0, init=0.9, diverged=False):
    return TuningResult(setting, err, loss, init, diverged, 1.0)


def test_choose_setting_rules():
    # lowest validation error wins
    assert choose_setting([_r("a", 0.2), _r("b", 0.1), _r("c", 0.3)]).setting == "b"
    # ties: the lower validation loss, then the earlier setting of the grid
    assert choose_setting([_r("a", 0.1, 0.5), _r("b", 0.1, 0.4)]).setting == "b"
    assert choose_setting([_r("a", 0.1, 0.4), _r("b", 0.1, 0.4)]).setting == "a"
    # a setting that diverged is not chosen while another did not, however good its best epoch
    assert choose_setting([_r("nan", 0.01, diverged=True), _r("ok", 0.3)]) == Choice("ok", "ok", "")
    # every setting diverged, or none got below 90% of the error at initialisation: reported
    failed = choose_setting([_r("a", 0.5, diverged=True), _r("b", 0.4, diverged=True)])
    assert failed.status == "diverged" and failed.setting == "b" and "all 2 settings" in failed.reason
    chance = choose_setting([_r("a", 0.89, init=0.9), _r("b", 0.9, init=0.9)])
    assert chance.status == "chance" and chance.setting == "a" and "89.00%" in chance.reason
    with pytest.raises(ValueError, match="at least one"):
        choose_setting([])


def test_selection_picks_the_known_best_setting(tuned):
    cfg, out, res = tuned
    chosen = choose_settings(cfg, cfg.cells()[0], res.rows)
    assert chosen == dict.fromkeys(cfg.arms, "adam lr=0.01")
    results = tuning_results(res.rows)
    by_setting = {}
    for r in results.values():
        by_setting.setdefault(r.setting, []).append(r)
    assert all(r.diverged for r in by_setting["sgd lr=10000 m=0.9"])
    assert all(not r.trained for r in by_setting["sgd lr=1e-07 m=0"])
    assert tuning_results([r for r in res.rows if r["arm"] == "relu-he"]) and all(
        r.trained for k, r in results.items() if "|relu-he|" in k and r.setting == "adam lr=0.01"
    )
    # the final runs use the chosen setting, every seed
    finals = {(r["arm"], r["seed"]): r["setting"] for r in res.rows if r["stage"] == "final"}
    assert finals == {(a, s): "adam lr=0.01" for a in cfg.arms for s in cfg.seeds}


def test_every_arm_gets_the_same_grid_and_budget(tuned):
    cfg, _, res = tuned
    tune = [r for r in res.rows if r["stage"] == "tune" and r["epoch"] == 0]
    labels = [setting_label(cfg._effective(g)) for g in KNOWN]
    for arm in cfg.arms:
        assert [r["setting"] for r in tune if r["arm"] == arm] == labels  # every setting, in grid order, once
        assert {r["seed"] for r in tune if r["arm"] == arm} == {cfg.seeds[0]}
    assert all(r["n_epochs"] <= cfg.epochs for r in res.rows)
    budget = (
        "max_iter",
        "n_iter_no_change",
        "early_stopping",
        "monitor",
        "tol",
        "batch_size",
        "n_iter",
        "pretrain_learning_rate",
        "pretrain_batch_size",
    )
    for spec in cfg.tuning_specs(cfg.cells()[0]):
        p = arm_params(cfg, spec)
        assert {k: p[k] for k in budget} == {
            "max_iter": 3,
            "n_iter_no_change": 3,
            "early_stopping": True,
            "monitor": "valid_score",
            "tol": 1e-4,
            "batch_size": 20,
            "n_iter": 1,
            "pretrain_learning_rate": 0.05,
            "pretrain_batch_size": 20,
        }
        # the setting wins over the arm's and the study's values; the arm keeps the rest
        assert p["solver"] == next(g for g in KNOWN if setting_label(cfg._effective(g)) == spec.setting)["solver"]
        assert p.get("dropout", 0.0) == ARMS[spec.arm].get("dropout", 0.0)
    assert cfg.n_runs() == len(res.rows) // (cfg.epochs + 1) or cfg.n_runs() == len({r["run_key"] for r in res.rows})


def test_tuning_runs_never_look_at_the_test_set_and_match_the_final_run(tuned):
    cfg, _, res = tuned
    tune = [r for r in res.rows if r["stage"] == "tune"]
    assert tune and not any("test_error" in r or "grad_s_L1" in r for r in tune)
    # the tuning run of the chosen setting and the final run of the same seed are the same fit
    for arm in cfg.arms:
        t = [r for r in tune if r["arm"] == arm and r["setting"] == "adam lr=0.01"]
        f = [r for r in res.rows if r["stage"] == "final" and r["arm"] == arm and r["seed"] == cfg.seeds[0]]
        assert [r["valid_loss"] for r in t] == [r["valid_loss"] for r in f]
        assert [r["selected"] for r in t] == [r["selected"] for r in f]


def test_pretraining_is_shared_by_the_settings_and_by_arms_that_pretrain_alike(tuned):
    _, _, res = tuned
    first = [r for r in res.rows if r["epoch"] == 0 and r["pretrained"]]
    computed = [r for r in first if not r["pretrain_cached"]]
    # one stack per seed: dbn's first tuning run (seed 0) and dbn's first final run of seed 1
    assert [(r["arm"], r["seed"]) for r in computed] == [("dbn", 0), ("dbn", 1)]
    # dbn-dropout reuses dbn's stack: same network before fine-tuning (dropout has no weights)
    pairs = {}
    for r in first:
        if r["stage"] == "final":
            pairs.setdefault(r["seed"], {})[r["arm"]] = r
    for arms in pairs.values():
        assert arms["dbn"]["valid_loss"] == arms["dbn-dropout"]["valid_loss"]


def test_report_shows_the_choice_every_setting_and_the_cost(tuned):
    _, out, _ = tuned
    text = write_report(out, figures=False).read_text()
    assert "## Tuning" in text and "## Against the literature" in text
    table = text.split("## Tuning")[1].split("\n## ")[0]
    for label in ("sgd lr=1e-07 m=0", "adam lr=0.01", "sgd lr=10000 m=0.9"):
        assert label in table
    assert "(NaN)" in table and "**" in table and "tuning (s)" in table
    assert "Tuning took" in table and "of the study's fine-tuning time" in table
    # the analysis covers the final runs only
    runs = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    n_final = len({r["run_key"] for r in runs if r["stage"] == "final"})
    assert f"{n_final} runs;" in text


def test_an_arm_failing_under_every_setting_is_reported(tmp_path):
    grid = ({"solver": "sgd", "learning_rate_init": 1e-9}, {"solver": "sgd", "learning_rate_init": 2e-9})
    cfg = StudyConfig(arms=("relu-he",), grid=grid, **{**SMALL, "seeds": (0,), "epochs": 2})
    run_study(cfg, tmp_path, progress=False)
    text = write_report(tmp_path, figures=False).read_text()
    assert "Failed under every setting" in text and "relu-he at depth 1" in text


# ---------------------------------------------------------------------------------------------
# resume and the shared protocol
# ---------------------------------------------------------------------------------------------


def test_resume_mid_tuning_makes_the_same_choice_and_results(tmp_path, monkeypatch, tuned):
    cfg, _, whole = tuned
    calls = []
    real = runner.run_one

    def flaky(config, spec, data, *rest):
        calls.append(spec.key)
        if len(calls) == 4:  # during the second arm's tuning
            raise KeyboardInterrupt
        return real(config, spec, data, *rest)

    monkeypatch.setattr(runner, "run_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, tmp_path, progress=False)
    stored = load_rows(tmp_path)
    assert len({r["run_key"] for r in stored}) == 3 and {r["stage"] for r in stored} == {"tune"}
    assert (tmp_path / "rows.csv").exists()  # written on the way out
    monkeypatch.setattr(runner, "run_one", real)
    res = run_study(cfg, tmp_path, progress=False)
    assert res.n_skipped == 3 and res.n_run == cfg.n_runs() - 3
    key = lambda r: (r["run_key"], r["epoch"])  # noqa: E731
    a = {key(r): r["valid_loss"] for r in whole.rows}
    b = {key(r): r["valid_loss"] for r in res.rows}
    assert a == b


#: Rows of the old single-protocol harness (SGD, momentum 0.9, learning rate 0.1, early stopping
#: on the validation loss) for this study, recorded before the tuned protocol existed.
OLD_SHARED = {
    "relu-he": (
        [0.8690807799442897, 0.7994428969359332, 0.7270194986072424, 0.5069637883008357],
        [2.37734137641059, 2.252264404296875, 2.0960261027018228, 1.827852545844184],
        3,
    ),
    "dbn": (
        [0.8997214484679665, 0.9025069637883009, 0.8997214484679665, 0.8997214484679665],
        [2.302746073404948, 2.303214518229167, 2.304822964138455, 2.30479736328125],
        1,
    ),
}


def test_shared_protocol_gives_the_single_protocol_results(tmp_path):
    cfg = StudyConfig(
        dataset="digits",
        arms=("relu-he", "dbn"),
        depths=(1,),
        widths=(16,),
        sizes=(80,),
        seeds=(0,),
        epochs=3,
        pretrain_epochs=1,
        batch_size=20,
        probe_size=50,
        unlabelled=False,
        protocol="shared",
        monitor="valid_loss",
    )
    assert list(cfg.settings()) == ["sgd lr=0.1 m=0.9"] and cfg.n_runs() == 2
    res = run_study(cfg, tmp_path, progress=False)
    for arm, (test_errors, valid_losses, selected) in OLD_SHARED.items():
        rows = [r for r in res.rows if r["arm"] == arm]
        assert [r["test_error"] for r in rows] == pytest.approx(test_errors, abs=1e-12)
        assert [r["valid_loss"] for r in rows] == pytest.approx(valid_losses, rel=1e-4)
        assert [r["epoch"] for r in rows if r["selected"]] == [selected]
        assert {r["stage"] for r in rows} == {"final"}


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def test_grid_validation_and_labels():
    assert len(DEFAULT_GRID) == 6 and len(QUICK_GRID) == 4 and set(GRIDS) == {"quick", "full"}
    assert {g["solver"] for g in DEFAULT_GRID} == {"sgd", "adam"}
    with pytest.raises(ValueError, match="cannot tune"):
        StudyConfig(grid=[{"hidden_layer_sizes": (3,)}])
    with pytest.raises(ValueError, match="same setting twice"):
        StudyConfig(grid=[{"solver": "adam"}, {"solver": "adam", "learning_rate_init": 0.1}])
    with pytest.raises(ValueError, match="non-empty"):
        StudyConfig(grid=[])
    with pytest.raises(ValueError, match="'protocol'"):
        StudyConfig(protocol="best")
    with pytest.raises(ValueError, match="learning_rate_init"):
        StudyConfig(grid=[{"solver": "sgd", "learning_rate_init": -1}])
    cfg = StudyConfig(grid=[{"solver": "sgd", "learning_rate_init": 0.1, "dropout": 0.5}])
    assert list(cfg.settings()) == ["sgd lr=0.1 m=0.9 dropout=0.5"]
    assert StudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # the run hash follows the setting: a different setting is a different run
    assert cfg.protocol_hash("dbn") != StudyConfig().protocol_hash("dbn")
    assert StudyConfig().protocol_hash("dbn", "sgd lr=0.1 m=0.9") != StudyConfig().protocol_hash("dbn", "adam lr=0.001")


def test_early_stopping_on_the_error_breaks_ties_with_the_loss():
    # the error sits on a plateau while the loss falls: training goes on, and the best epoch is the
    # one of lowest loss among those of best error
    records = [(0.9, 2.3), (0.9, 2.2), (0.9, 2.1), (0.5, 1.5), (0.5, 1.4), (0.5, 1.6), (0.6, 1.3), (0.5, 1.7)]
    es = EarlyStopping("valid_score", minimize=False, patience=2, tie_break="valid_loss")
    out = fit_loop(
        torch.nn.Linear(1, 1),
        range(1, 9),
        lambda e: {"epoch": e, "valid_score": 1 - records[e - 1][0], "valid_loss": records[e - 1][1]},
        pieces=[es],
    )
    assert es.best_epoch == 5 and out[-1]["epoch"] == 7
    plain = EarlyStopping("valid_score", minimize=False, patience=2)
    fit_loop(
        torch.nn.Linear(1, 1),
        range(1, 9),
        lambda e: {"epoch": e, "valid_score": 1 - records[e - 1][0], "valid_loss": records[e - 1][1]},
        pieces=[plain],
    )
    assert plain.best_epoch == 1  # without the tie-break, the plateau stops training at epoch 3
    assert math.isinf(EarlyStopping("x").best_tie)


def test_classifier_early_stopping_follows_the_validation_score(digits_small):
    X, y = digits_small
    kw = dict(hidden_layer_sizes=(16,), pretrain=None, early_stopping=True, max_iter=15, random_state=0)
    by_score = DBNClassifier(**kw).fit(X, y)
    by_loss = DBNClassifier(monitor="valid_loss", **kw).fit(X, y)
    assert by_score.history_.monitor == "valid_score" and by_loss.history_.monitor == "valid_loss"
    best = by_score.history_[by_score.history_.best_epoch - 1]
    assert best["valid_score"] == max(r["valid_score"] for r in by_score.history_)
    with pytest.raises(ValueError, match="monitor"):
        DBNClassifier(monitor="accuracy", **kw).fit(X, y)


@pytest.fixture(scope="module")
def digits_small():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16.0).astype("float32"), y[:400]


def test_min_updates_gives_small_labelled_sets_more_epochs():
    from dbn.datasets import load_dataset

    cfg = StudyConfig(
        arms=("relu-he",),
        depths=(1,),
        widths=(8,),
        sizes=(60,),
        seeds=(0,),
        epochs=1,
        patience=None,
        batch_size=20,
        min_updates=12,
        protocol="shared",
    )
    assert cfg.epoch_budget(60) == 4 and cfg.epoch_budget(1000) == 1
    rows = runner.run_one(cfg, cfg.run_specs()[0], runner.prepare_data(load_dataset("digits"), size=60, seed=0))
    assert rows[-1]["epoch"] == 4 and rows[0]["n_epochs"] == 4
    assert cfg.protocol_hash("relu-he") != cfg.replace(min_updates=0).protocol_hash("relu-he")


def test_report_does_not_call_an_interrupted_tuning_failed():
    from dbn.harness.report import _tuning_section, _tuning_summary

    def rows(arm, depth, settings, error):
        return [
            {"run_key": f"{arm}{depth}{s}", "stage": "tune", "setting": s, "arm": arm, "dataset": "d",
             "depth": depth, "width": 8, "size": 100, "epoch": e, "selected": e == 1,
             "valid_error": error if e else 0.9, "valid_loss": 1.0, "diverged": False, "finetune_time": 0.5}
            for s in settings for e in (0, 1)
        ]  # fmt: skip

    done = rows("a", 1, ["lr1", "lr2"], 0.2)
    # the next cell's tuning was interrupted after one setting, which left the net at chance
    running = rows("a", 2, ["lr1"], 0.9)
    summary = " ".join(_tuning_summary(done + running))
    assert "Failed under every setting" not in summary
    assert "in progress" in summary and "(1 of 2 settings)" in summary
    section = "\n".join(_tuning_section(done + running, []))
    assert "Failed under every setting" not in section and "in progress" in section
    # once every setting was tried at chance, the failure is reported
    failed = rows("a", 2, ["lr1", "lr2"], 0.9)
    assert "Failed under every setting" in " ".join(_tuning_summary(done + failed))
