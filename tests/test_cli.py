"""Tests of the ``dbn`` command line (``dbn.cli.main``)."""

import json
import re
import subprocess
import sys

import pytest

from dbn import cli

TINY = [
    "--dataset",
    "digits",
    "--arms",
    "relu-he",
    "sigmoid-normal",
    "--depths",
    "1",
    "--width",
    "16",
    "--sizes",
    "60",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--pretrain-epochs",
    "1",
    "--no-progress",
]


def test_compare_runs_writes_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    grid = ["--grid", "sgd:0.1", "adam:0.003"]
    assert cli.main(["compare", *TINY, *grid, "--out", str(out)]) == 0
    # 2 arms x (2 tuning settings on seed 0 + 2 seeds with the chosen setting)
    assert "8 runs done, 0 already there" in capsys.readouterr().out
    for name in ("report.md", "rows.csv", "rows.jsonl", "runs.csv", "config.json"):
        assert (out / name).exists()
    lines = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(lines) == 8 * 2
    assert {r["arm"] for r in lines} == {"relu-he", "sigmoid-normal"}
    assert {r["setting"] for r in lines if r["stage"] == "tune"} == {"sgd lr=0.1 m=0.9", "adam lr=0.003"}
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"] == [0, 1] and config["protocol"] == "tuned" and len(config["grid"]) == 2
    assert "## Tuning" in (out / "report.md").read_text()
    # the same command again resumes: nothing run, no duplicated rows
    assert cli.main(["compare", *TINY, *grid, "--out", str(out)]) == 0
    assert "0 runs done, 8 already there" in capsys.readouterr().out
    assert len((out / "rows.jsonl").read_text().splitlines()) == 16
    assert cli.main(["report", str(out), "--no-figures"]) == 0
    assert "Figures not requested" in (out / "report.md").read_text()


def test_compare_shared_protocol_runs_one_setting(tmp_path, capsys):
    out = tmp_path / "shared"
    assert (
        cli.main(
            [
                "compare",
                *TINY,
                "--protocol",
                "shared",
                "--solver",
                "adam",
                "--learning-rate",
                "0.003",
                "--out",
                str(out),
                "--no-figures",
            ]
        )
        == 0
    )
    assert "4 runs done" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"final"} and {r["setting"] for r in rows} == {"adam lr=0.003"}
    assert "## Tuning" not in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "grid, match",
    [
        (["nope"], "is not a grid"),
        (["sgd:fast"], "is not a learning rate"),
        (["[1, 2]"], "list of dicts"),
        (['[{"hidden_layer_sizes": [3]}]'], "which a grid cannot tune"),
    ],
)
def test_bad_grid_is_one_clear_line(tmp_path, capsys, grid, match):
    assert cli.main(["compare", *TINY, "--grid", *grid, "--out", str(tmp_path / "g")]) == 1
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1 and not (tmp_path / "g").exists()


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
        ["compare", "--out", "x", "--threads", "many"],
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
    # --debug lets the exception through, traceback and all
    with pytest.raises(ValueError, match="'learning_rate'"):
        cli.main(["compare", *TINY, "--learning-rate", "-1", "--out", str(tmp_path), "--debug"])
    with pytest.raises(FileNotFoundError, match="neither a known data set"):
        cli.main(["--debug", "compare", *TINY, "--dataset", str(tmp_path / "missing.npz"), "--out", str(tmp_path)])


def _one_line_error(argv, capsys, match):
    """``cli.main(argv)`` fails with status 1 and one line on stderr that contains ``match``."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dbn {argv[0]}: error: "), err
    assert "Traceback" not in err
    assert match in err, err
    return err


def test_errors_are_one_line(tmp_path, capsys):
    _one_line_error(["compare", *TINY, "--learning-rate", "-1", "--out", str(tmp_path)], capsys, "'learning_rate'")
    _one_line_error(
        ["compare", *TINY, "--dataset", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "s")],
        capsys,
        "neither a known data set",
    )
    tour = tmp_path / "tour.py"
    tour.write_text("print(1)\n")
    _one_line_error(["report", str(tour)], capsys, "is a file, not a directory")
    _one_line_error(
        ["plot", "filters", str(tmp_path / "missing.dbn"), "--out", str(tmp_path / "f.png")], capsys, "missing.dbn"
    )


def test_plot_history_layer_out_of_range(tmp_path, capsys):
    from dbn import pretrain_stack
    from dbn.io import save

    stack = pretrain_stack(__import__("torch").rand(20, 6), [4, 3], n_epochs=1)
    path = save(stack, tmp_path / "stack.dbn")
    _one_line_error(
        ["plot", "history", str(path), "--layer", "5", "--out", str(tmp_path / "h.png")],
        capsys,
        "--layer 5 is out of range",
    )
    with pytest.raises(ValueError, match="use --layer 0 to 1"):
        cli.main(["plot", "history", str(path), "--layer", "5", "--out", str(tmp_path / "h.png"), "--debug"])


def test_report_without_a_study_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "typo"
    _one_line_error(["report", str(missing)], capsys, "does not exist")
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(["report", str(empty)], capsys, "no study in")
    assert list(empty.iterdir()) == []


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import dbn.harness

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dbn.harness, "run_study", interrupted)
    assert cli.main(["compare", *TINY, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rerun the same command to resume" in err and "Traceback" not in err
    with pytest.raises(KeyboardInterrupt):
        cli.main(["compare", *TINY, "--out", str(tmp_path), "--debug"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("0.1,0.2\n0.3,0.4,1\n", "ragged rows: line 2 has 3 values"),
        ("0.1,0.2,0\n0.3,abc,1\n", "line 2, column 2: 'abc' is not a number"),
        ("0.1,0.2,0.5\n0.3,0.4,0.25\n", "labels missing"),
        ("a,b\n0.1,0.2\n", "has no label column"),
        ("0.1\n0.2\n", "single column"),
        ("", "is empty"),
    ],
)
def test_data_file_errors_say_what_is_wrong(tmp_path, capsys, text, match):
    data = tmp_path / "data.csv"
    data.write_text(text)
    _one_line_error(["compare", *TINY, "--dataset", str(data), "--out", str(tmp_path / "s")], capsys, match)


def test_help_shows_each_default_once_in_user_terms(capsys):
    for argv in (["compare"], ["pretrain"], ["plot"], ["report"], []):
        with pytest.raises(SystemExit) as exc:
            cli.main([*argv, "--help"])
        assert exc.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text and "(default: False)" not in text, argv
        assert "(default: True)" not in text and "(default: [" not in text and "(default: (" not in text, argv
        if argv == ["compare"]:
            assert (
                "--sizes SIZES [SIZES ...] labelled training-set sizes ('all' = the whole training set) "
                "(default: 100 all)" in text
            )
            assert "(default: on)" in text  # --unlabelled
            assert "torch's) (default" not in text and text.count("(default: cpu)") == 1
            out = text.split("--out OUT", 1)[1].split("--", 1)[0]
            assert "default" not in out  # required
        if argv == ["pretrain"]:
            assert "(default: 0.1)" in text and "(default: 5)" in text


def test_every_option_has_help():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, (name, action.option_strings or action.dest)


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
    files = {
        "rbm": rbm.save(tmp_path / "rbm.dbn"),
        "stack": save(dbn_t.stack_, tmp_path / "stack.dbn"),
        "dbn": dbn_t.save(tmp_path / "dbn.dbn"),
        "clf": clf.save(tmp_path / "clf.dbn"),
    }
    runs = [
        ("filters", "rbm"),
        ("samples", "rbm"),
        ("history", "rbm"),
        ("filters", "stack"),
        ("samples", "dbn"),
        ("history", "dbn"),
        ("filters", "clf"),
        ("history", "clf"),
    ]
    for what, model in runs:
        out = tmp_path / f"{what}-{model}.png"
        assert cli.main(["plot", what, str(files[model]), "--out", str(out), "--n", "16", "--steps", "20"]) == 0
        image = imread(out)
        assert image.ndim == 3 and image.shape[0] > 50 and np.ptp(image[..., :3]) > 0
    with pytest.raises(ValueError, match="not generative"):
        cli.main(["plot", "samples", str(files["clf"]), "--out", str(tmp_path / "x.png"), "--debug"])
    assert cli.main(["plot", "samples", str(files["clf"]), "--out", str(tmp_path / "x.png")]) == 1
    with pytest.raises(SystemExit):
        cli.main(["plot", "weights", str(files["rbm"]), "--out", str(tmp_path / "x.png")])


def test_pretrain_command_saves_a_stack(tmp_path):
    from dbn.io import load

    out = tmp_path / "stack.dbn"
    assert (
        cli.main(
            ["pretrain", "--dataset", "digits", "--sizes", "16", "8", "--epochs", "1", "--out", str(out), "--quiet"]
        )
        == 0
    )
    assert load(out).sizes == (64, 16, 8)


def test_threads_option_accepts_a_count_or_auto():
    parser = cli.build_parser()
    assert parser.parse_args(["compare", "--out", "x", "--threads", "auto"]).threads == "auto"
    assert parser.parse_args(["compare", "--out", "x", "--threads", "3"]).threads == 3
    assert parser.parse_args(["compare", "--out", "x"]).threads is None
