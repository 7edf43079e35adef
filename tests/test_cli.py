"""Tests of the ``dbn`` command line (``dbn.cli.main``)."""

import json
import subprocess
import sys

import pytest

from dbn import cli

TINY = ["--dataset", "digits", "--arms", "relu-he", "sigmoid-normal", "--depths", "1", "--width", "16",
        "--sizes", "60", "--seeds", "2", "--epochs", "1", "--pretrain-epochs", "1", "--no-progress"]


def test_compare_runs_writes_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    assert cli.main(["compare", *TINY, "--out", str(out)]) == 0
    assert "4 runs done, 0 already there" in capsys.readouterr().out
    for name in ("report.md", "rows.csv", "rows.jsonl", "runs.csv", "config.json"):
        assert (out / name).exists()
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 2
    assert {json.loads(line)["arm"] for line in lines} == {"relu-he", "sigmoid-normal"}
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1]
    # the same command again resumes: nothing run, no duplicated rows
    assert cli.main(["compare", *TINY, "--out", str(out)]) == 0
    assert "0 runs done, 4 already there" in capsys.readouterr().out
    assert len((out / "rows.jsonl").read_text().splitlines()) == 8
    assert cli.main(["report", str(out), "--no-figures"]) == 0
    assert "Figures not requested" in (out / "report.md").read_text()


def test_arms_subcommand(capsys):
    assert cli.main(["arms"]) == 0
    text = capsys.readouterr().out
    assert "dbn: {'pretrain': 'rbm'" in text and "relu-he-batchnorm" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--out", "x", "--arms", "nope"],
        ["compare", "--out", "x", "--depths", "0"],
        ["compare", "--out", "x", "--sizes", "ten"],
        ["compare", "--out", "x", "--sizes", "1"],
        ["compare", "--out", "x", "--seeds", "-1"],
        ["compare", "--arms", "dbn"],  # --out is required
        [],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: dbn" in capsys.readouterr().err


def test_bad_values_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'learning_rate'"):
        cli.main(["compare", *TINY, "--learning-rate", "-1", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="neither a known data set"):
        cli.main(["compare", *TINY, "--dataset", str(tmp_path / "missing.npz"), "--out", str(tmp_path)])


def test_python_dash_m_dbn():
    proc = subprocess.run([sys.executable, "-m", "dbn", "compare", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for flag in ("--arms", "--depths", "--sizes", "--seeds", "--unlabelled", "--folds", "--device", "--out"):
        assert flag in proc.stdout


def test_plot_commands(tmp_path):
    pytest.importorskip("matplotlib")
    import numpy as np
    from matplotlib.image import imread

    from dbn import DBNClassifier, DBNTransformer, RBMTransformer, cli
    from dbn.datasets import load_digits
    from dbn.io import save

    X, y = load_digits()
    rbm = RBMTransformer(n_components=16, n_iter=2, random_state=0).fit(X)
    dbn_t = DBNTransformer((16, 8), n_iter=2, random_state=0).fit(X)
    clf = DBNClassifier((16,), pretrain="dae", n_iter=1, max_iter=2, random_state=0).fit(X[:300], y[:300])
    files = {"rbm": rbm.save(tmp_path / "rbm.dbn"), "stack": save(dbn_t.stack_, tmp_path / "stack.dbn"),
             "dbn": dbn_t.save(tmp_path / "dbn.dbn"), "clf": clf.save(tmp_path / "clf.dbn")}
    runs = [("filters", "rbm"), ("samples", "rbm"), ("history", "rbm"), ("filters", "stack"), ("samples", "dbn"),
            ("history", "dbn"), ("filters", "clf"), ("history", "clf")]
    for what, model in runs:
        out = tmp_path / f"{what}-{model}.png"
        assert cli.main(["plot", what, str(files[model]), "--out", str(out), "--n", "16", "--steps", "20"]) == 0
        image = imread(out)
        assert image.ndim == 3 and image.shape[0] > 50 and np.ptp(image[..., :3]) > 0
    with pytest.raises(ValueError, match="not generative"):
        cli.main(["plot", "samples", str(files["clf"]), "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit):
        cli.main(["plot", "weights", str(files["rbm"]), "--out", str(tmp_path / "x.png")])


def test_pretrain_command_saves_a_stack(tmp_path):
    from dbn.io import load

    out = tmp_path / "stack.dbn"
    assert cli.main(["pretrain", "--dataset", "digits", "--sizes", "16", "8", "--epochs", "1", "--out", str(out),
                     "--quiet"]) == 0
    assert load(out).sizes == (64, 16, 8)
