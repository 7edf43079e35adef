"""Command line: ``dbn compare ...`` runs a comparison study, ``dbn report DIR`` rewrites its report,
``dbn plot filters|samples|history MODEL --out PNG`` draws a saved model, ``dbn pretrain ...``
pretrains a stack of RBMs (data-parallel under ``torchrun --nproc-per-node P -m dbn pretrain``).

Parsing only: every action is a call into :mod:`dbn.harness`.

Examples
--------
>>> parser = build_parser()
>>> args = parser.parse_args(["compare", "--arms", "relu-he", "dbn", "--depths", "1", "3", "--out", "x"])
>>> args.arms, args.depths
(['relu-he', 'dbn'], [1, 3])
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from ._options import OPTIMIZERS

__all__ = ["build_parser", "main"]


def _size(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is a positive int or 'all', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"a size must be at least 2, got {value}")
    return value


def _grid(tokens: Sequence[str]) -> tuple[dict, ...]:
    """``--grid`` tokens -> tuning settings: a named grid (``quick``, ``full``), ``SOLVER:LR[,LR...]``
    (one setting per rate), or a JSON list of dicts of DBNClassifier parameters.

    Examples
    --------
    >>> for setting in _grid(["sgd:0.1,0.01", "adam:1e-3"]):
    ...     print(setting)
    {'solver': 'sgd', 'learning_rate_init': 0.1}
    {'solver': 'sgd', 'learning_rate_init': 0.01}
    {'solver': 'adam', 'learning_rate_init': 0.001}
    >>> len(_grid(["full"]))
    6
    """
    import json

    from .harness.config import GRIDS

    settings: list[dict] = []
    for token in tokens:
        if token in GRIDS:
            settings += [dict(g) for g in GRIDS[token]]
        elif token.lstrip().startswith("["):
            try:
                value = json.loads(token)
            except ValueError as exc:
                raise ValueError(f"--grid: {token!r} is not valid JSON ({exc})") from None
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"--grid: a JSON grid is a list of dicts, got {token!r}")
            settings += value
        else:
            solver, sep, rates = token.partition(":")
            if not sep or solver not in OPTIMIZERS:
                raise ValueError(
                    f"--grid: {token!r} is not a grid; give {', '.join(GRIDS)}, SOLVER:LR[,LR...] with SOLVER one "
                    f"of {', '.join(OPTIMIZERS)} (e.g. sgd:0.1,0.01 adam:0.001), or a JSON list of settings"
                )
            for rate in rates.split(","):
                try:
                    settings.append({"solver": solver, "learning_rate_init": float(rate)})
                except ValueError:
                    raise ValueError(f"--grid: {rate!r} in {token!r} is not a learning rate") from None
    return tuple(settings)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def _thread_count(text: str) -> int | str:
    """``--threads``: a positive int or ``auto``."""
    return "auto" if text == "auto" else _positive(text)


def _shown(value: object) -> str:
    """A default as the user types it: lists space-separated, ``None`` in a list as ``all``."""
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    return "all" if value is None else str(value)


class _HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default once, in the user's terms (``100 all``, ``on``), and none to
    a required option, a flag or an option whose help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if isinstance(action, argparse.BooleanOptionalAction):  # it appends "(default: True)" itself
            text = text.replace(" (default: %(default)s)", "")
            return f"{text} (default: {'on' if action.default else 'off'})"
        if (
            action.required
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
            or not action.option_strings
            or "default" in text
        ):
            return text
        return f"{text} (default: {_shown(action.default)})"


def _debug_option(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the full traceback of an error instead of a one-line message",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``dbn`` argument parser (subcommands ``compare``, ``report``, ``arms``, ``pretrain``, ``plot``).

    Examples
    --------
    >>> build_parser().parse_args(["plot", "filters", "m.dbn", "--out", "f.png"]).what
    'filters'
    """
    from .harness.config import ARMS
    from .harness.config import DIGITS_DEFAULTS as D

    parser = argparse.ArgumentParser(prog="dbn", description="torch-dbn: pretraining vs random init studies.")
    _debug_option(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: object) -> argparse.ArgumentParser:
        p = sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)  # type: ignore[arg-type]
        _debug_option(p)
        return p

    c = command("compare", help="run (or resume) a comparison study and write its report")
    c.add_argument("--dataset", default=D.dataset, help="digits, mnist or a path (.csv, .npz, .pkl.gz, IDX directory)")
    c.add_argument(
        "--arms",
        nargs="+",
        default=list(D.arms),
        choices=sorted(ARMS),
        metavar="ARM",
        help=f"arms to compare, from: {', '.join(sorted(ARMS))}",
    )
    c.add_argument("--depths", nargs="+", type=_positive, default=list(D.depths), help="numbers of hidden layers")
    c.add_argument(
        "--width", nargs="+", type=_positive, default=list(D.widths), dest="widths", help="units per hidden layer"
    )
    c.add_argument(
        "--sizes",
        nargs="+",
        type=_size,
        default=list(D.sizes),
        help="labelled training-set sizes ('all' = the whole training set)",
    )
    c.add_argument(
        "--seeds", type=_positive, default=len(D.seeds), help="number of seeds (0 .. N-1), paired across arms"
    )
    c.add_argument(
        "--folds",
        type=_positive,
        default=None,
        help="K-fold cross-validation instead of the fixed split (default: the fixed split)",
    )
    c.add_argument(
        "--unlabelled",
        action=argparse.BooleanOptionalAction,
        default=D.unlabelled,
        help="pretrain on the whole training set (--no-unlabelled: on the labelled subset only)",
    )
    c.add_argument(
        "--protocol",
        default=D.protocol,
        choices=["tuned", "shared"],
        help="tuned: each arm picks its fine-tuning setting from --grid on validation data; "
        "shared: every arm runs --solver / --learning-rate",
    )
    c.add_argument(
        "--grid",
        nargs="+",
        default=["quick"],
        metavar="SETTING",
        help="tuning grid: quick (4 settings), full (6: SGD momentum 0.9 at 0.1/0.03/0.01, Adam at "
        "3e-3/1e-3/3e-4), SOLVER:LR[,LR...] tokens, or a JSON list of DBNClassifier settings "
        "(default: quick)",
    )
    c.add_argument(
        "--monitor",
        default=D.monitor,
        choices=["valid_score", "valid_loss"],
        help="what early stopping selects the epoch on: validation accuracy (ties: loss) or loss",
    )
    c.add_argument("--epochs", type=_positive, default=D.epochs, help="maximum fine-tuning epochs")
    c.add_argument(
        "--patience",
        type=int,
        default=D.patience,
        help="early-stopping patience in epochs on the validation split (0: no early stopping)",
    )
    c.add_argument("--pretrain-epochs", type=int, default=D.pretrain_epochs, help="pretraining epochs per layer")
    c.add_argument("--batch-size", type=_positive, default=D.batch_size, help="mini-batch size")
    c.add_argument(
        "--learning-rate", type=float, default=D.learning_rate, help="fine-tuning learning rate of --protocol shared"
    )
    c.add_argument("--solver", default=D.solver, choices=OPTIMIZERS, help="fine-tuning optimiser of --protocol shared")
    c.add_argument(
        "--pretrain-learning-rate", type=float, default=D.pretrain_learning_rate, help="pretraining learning rate"
    )
    c.add_argument("--device", default=D.device, help="cpu, cuda, cuda:N or auto")
    c.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        help="exactly N threads for every fit, or 'auto': the automatic policy capped by the cores "
        "other jobs leave idle, for a busy machine (results may then depend on the load). "
        "Default: the automatic policy of dbn.threads, one thread for small products, torch's count otherwise",
    )
    c.add_argument("--out", required=True, help="output directory (resumes a study already there)")
    c.add_argument(
        "--force",
        action="store_true",
        help="run even if --out holds a study with other settings (the report then covers both)",
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--no-figures", action="store_true", help="write the report without figures")

    r = command("report", help="(re)write report.md and the figures of a study directory")
    r.add_argument("out", metavar="DIR", help="the study directory (the --out of dbn compare)")
    r.add_argument("--no-figures", action="store_true", help="write the report without figures")

    command("arms", help="list the built-in arms and their DBNClassifier parameters")

    from .distributed import add_pretrain_arguments

    add_pretrain_arguments(
        command(
            "pretrain",
            help="greedy RBM pretraining, data-parallel under torchrun "
            "(torchrun --nproc-per-node 2 -m dbn pretrain ...)",
        )
    )

    p = command("plot", help="draw a saved model's filters, samples or training history as a PNG")
    p.add_argument("what", choices=["filters", "samples", "history"], help="what to draw")
    p.add_argument("model", help="a file written by dbn.io.save or an estimator's save()")
    p.add_argument("--out", required=True, metavar="PNG", help="PNG file to write")
    p.add_argument("--n", type=_positive, default=100, help="filters or samples to draw")
    p.add_argument(
        "--image-shape",
        nargs=2,
        type=_positive,
        default=None,
        metavar=("H", "W"),
        help="image height and width (default: square)",
    )
    p.add_argument(
        "--steps", type=_positive, default=1000, metavar="N", help="Gibbs steps before each sample (samples)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Gibbs chains (samples)")
    p.add_argument("--layer", type=int, default=0, metavar="I", help="which layer's history, from 0 (stacks; history)")
    return parser


def _plot(args: argparse.Namespace) -> int:
    """``dbn plot``: load a model file and call the matching :mod:`dbn.plotting` function."""
    import torch

    from . import plotting
    from .estimators import load_any
    from .io import model_layers
    from .rbm import RBM
    from .sampling import sample_dbn

    model = load_any(args.model)
    shape = tuple(args.image_shape) if args.image_shape else None
    if args.what == "filters":
        plotting.plot_filters(model_layers(model)[0].weight, image_shape=shape, n=args.n, path=args.out)
    elif args.what == "samples":
        layers = model_layers(model)
        if not all(isinstance(layer, RBM) for layer in layers):
            raise ValueError("Samples need RBM layers (a DBN); autoencoders are not generative models.")
        g = torch.Generator(device=layers[0].weight.device).manual_seed(args.seed)
        with torch.no_grad():
            samples = sample_dbn(layers, args.n, n_steps=args.steps, generator=g)
        plotting.plot_images(samples, image_shape=shape, n=args.n, path=args.out)
    else:
        history = getattr(model, "history_", None)
        if history is None and hasattr(model, "histories"):
            history = model.histories
        if not history:
            raise ValueError(f"{args.model!r} holds no training history.")
        if isinstance(history[0], list):  # one history per layer
            if not 0 <= args.layer < len(history):
                raise ValueError(
                    f"--layer {args.layer} is out of range: {args.model!r} holds the histories of "
                    f"{len(history)} layers; use --layer 0 to {len(history) - 1}."
                )
            history = history[args.layer]
        keys = sorted(
            {
                k
                for record in history
                for k, v in record.items()
                if isinstance(v, (int, float)) and k not in ("epoch", "time", "learning_rate", "momentum")
            }
        )
        plotting.plot_history(history, keys=keys, path=args.out)
    print(args.out)
    return 0


def _report(args: argparse.Namespace) -> int:
    """``dbn report``: rewrite the report of an existing study directory (creates nothing else)."""
    from pathlib import Path

    from .harness import store, write_report

    out = Path(args.out)
    if not out.is_dir():
        what = "does not exist" if not out.exists() else "is a file, not a directory"
        raise ValueError(f"{args.out!r} {what}: give the study directory that `dbn compare --out DIR` wrote.")
    if not any((out / name).exists() for name in (store.CONFIG_JSON, store.ROWS_JSON)):
        raise ValueError(
            f"no study in {args.out!r} (no {store.CONFIG_JSON} or {store.ROWS_JSON}): run "
            f"`dbn compare --out {args.out}` first, or give the directory it wrote."
        )
    print(write_report(out, figures=not args.no_figures))
    return 0


def _run(args: argparse.Namespace) -> int:
    """Run a parsed command; errors propagate (:func:`main` turns them into one line)."""
    from . import harness

    if args.command == "arms":
        for name, params in harness.ARMS.items():
            print(f"{name}: {params}")
        return 0
    if args.command == "plot":
        return _plot(args)
    if args.command == "pretrain":
        from .distributed import run_pretrain

        return run_pretrain(args)
    if args.command == "report":
        return _report(args)
    config = harness.StudyConfig(
        dataset=args.dataset,
        arms=tuple(args.arms),
        depths=tuple(args.depths),
        widths=tuple(args.widths),
        sizes=tuple(args.sizes),
        seeds=tuple(range(args.seeds)),
        folds=args.folds,
        unlabelled=args.unlabelled,
        protocol=args.protocol,
        grid=_grid(args.grid),
        monitor=args.monitor,
        solver=args.solver,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience or None,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_learning_rate=args.pretrain_learning_rate,
        device=args.device,
    )
    from ._threads import threads

    with threads(args.threads) if args.threads else contextlib.nullcontext():  # else: the automatic policy
        results = harness.run_study(config, args.out, progress=not args.no_progress, force=args.force)
    path = harness.write_report(args.out, figures=not args.no_figures)
    print(f"{results.n_run} runs done, {results.n_skipped} already there; report: {path}")
    return 0


#: Errors whose message is meant for the user as it is; any other error is a bug, shown with its type.
_USER_ERRORS = (ValueError, TypeError, OSError, ImportError)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: the OS's words and the file for an ``OSError``, the type for a bug."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: {str(exc.filename)!r}"
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    if not isinstance(exc, _USER_ERRORS):
        text = f"{type(exc).__name__}: {text} (rerun with --debug for the traceback)"
    return " ".join(text.split())


def _interrupted(args: argparse.Namespace) -> str:
    if args.command == "compare":
        return (
            f"dbn compare: interrupted. Finished runs are saved in {args.out!r}; "
            "rerun the same command to resume from there."
        )
    if args.command == "pretrain":
        return "dbn pretrain: interrupted; nothing was saved. Rerun the command to start again."
    return f"dbn {args.command}: interrupted."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dbn`` console script and ``python -m dbn``; returns the exit status.

    An error prints one line, ``dbn COMMAND: error: ...``, to stderr and returns 1 (``--debug``:
    the exception propagates, traceback and all); Ctrl-C prints how to resume and returns 130;
    bad arguments exit with status 2 and the usage, as argparse does.

    Examples
    --------
    >>> main(["arms"])  # doctest: +ELLIPSIS
    sigmoid-normal: ...
    0
    """
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(_interrupted(args), file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"dbn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
