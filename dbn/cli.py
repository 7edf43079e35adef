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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``dbn`` argument parser (subcommands ``compare``, ``report``, ``arms``, ``pretrain``, ``plot``).

    Examples
    --------
    >>> build_parser().parse_args(["plot", "filters", "m.dbn", "--out", "f.png"]).what
    'filters'
    """
    from .harness.config import ARMS, DIGITS_DEFAULTS as D

    parser = argparse.ArgumentParser(prog="dbn", description="torch-dbn: pretraining vs random init studies.")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compare", help="run (or resume) a comparison study and write its report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--dataset", default=D.dataset, help="digits, mnist or a path (.pkl.gz, IDX directory, .npz)")
    c.add_argument("--arms", nargs="+", default=list(D.arms), choices=sorted(ARMS), metavar="ARM",
                   help=f"arms to compare, from {sorted(ARMS)}")
    c.add_argument("--depths", nargs="+", type=_positive, default=list(D.depths), help="numbers of hidden layers")
    c.add_argument("--width", nargs="+", type=_positive, default=list(D.widths), dest="widths",
                   help="units per hidden layer")
    c.add_argument("--sizes", nargs="+", type=_size, default=list(D.sizes),
                   help="labelled training-set sizes ('all' = the whole training set)")
    c.add_argument("--seeds", type=_positive, default=len(D.seeds), help="number of seeds (0 .. N-1), paired across arms")
    c.add_argument("--folds", type=_positive, default=None, help="K-fold cross-validation instead of the fixed split")
    c.add_argument("--unlabelled", action=argparse.BooleanOptionalAction, default=D.unlabelled,
                   help="pretrain on the whole training set (--no-unlabelled: on the labelled subset only)")
    c.add_argument("--epochs", type=_positive, default=D.epochs, help="maximum fine-tuning epochs")
    c.add_argument("--patience", type=int, default=D.patience,
                   help="early-stopping patience in epochs on the validation split (0: no early stopping)")
    c.add_argument("--pretrain-epochs", type=int, default=D.pretrain_epochs, help="pretraining epochs per layer")
    c.add_argument("--batch-size", type=_positive, default=D.batch_size)
    c.add_argument("--learning-rate", type=float, default=D.learning_rate, help="fine-tuning learning rate")
    c.add_argument("--solver", default=D.solver, choices=OPTIMIZERS)
    c.add_argument("--pretrain-learning-rate", type=float, default=D.pretrain_learning_rate)
    c.add_argument("--device", default=D.device, help="cpu, cuda, cuda:N or auto")
    c.add_argument("--threads", type=_positive, default=None, help="torch.set_num_threads (default: torch's)")
    c.add_argument("--out", required=True, help="output directory (resumes a study already there)")
    c.add_argument("--force", action="store_true",
                   help="run even if --out holds a study with other settings (the report then covers both)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--no-figures", action="store_true", help="write the report without figures")

    r = sub.add_parser("report", help="(re)write report.md and the figures of a study directory")
    r.add_argument("out", help="the study directory")
    r.add_argument("--no-figures", action="store_true")

    sub.add_parser("arms", help="list the built-in arms and their DBNClassifier parameters")

    from .distributed import add_pretrain_arguments

    add_pretrain_arguments(sub.add_parser(
        "pretrain", help="greedy RBM pretraining, data-parallel under torchrun "
        "(torchrun --nproc-per-node 2 -m dbn pretrain ...)"))

    p = sub.add_parser("plot", help="draw a saved model's filters, samples or training history as a PNG",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("what", choices=["filters", "samples", "history"])
    p.add_argument("model", help="a file written by dbn.io.save or an estimator's save()")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--n", type=_positive, default=100, help="filters or samples to draw")
    p.add_argument("--image-shape", nargs=2, type=_positive, default=None, metavar=("H", "W"),
                   help="image height and width (default: square)")
    p.add_argument("--steps", type=_positive, default=1000, help="Gibbs steps before each sample (samples)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Gibbs chains (samples)")
    p.add_argument("--layer", type=int, default=0, help="which layer's history (stacks; history)")
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
            history = history[args.layer]
        keys = sorted({k for record in history for k, v in record.items()
                       if isinstance(v, (int, float)) and k not in ("epoch", "time", "learning_rate", "momentum")})
        plotting.plot_history(history, keys=keys, path=args.out)
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dbn`` console script and ``python -m dbn``; returns the exit status.

    Examples
    --------
    >>> main(["arms"])  # doctest: +ELLIPSIS
    sigmoid-normal: ...
    0
    """
    args = build_parser().parse_args(argv)
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
        print(harness.write_report(args.out, figures=not args.no_figures))
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = harness.StudyConfig(
        dataset=args.dataset, arms=tuple(args.arms), depths=tuple(args.depths), widths=tuple(args.widths),
        sizes=tuple(args.sizes), seeds=tuple(range(args.seeds)), folds=args.folds, unlabelled=args.unlabelled,
        solver=args.solver, learning_rate=args.learning_rate, batch_size=args.batch_size, epochs=args.epochs,
        patience=args.patience or None, pretrain_epochs=args.pretrain_epochs,
        pretrain_learning_rate=args.pretrain_learning_rate, device=args.device,
    )
    results = harness.run_study(config, args.out, progress=not args.no_progress, force=args.force)
    path = harness.write_report(args.out, figures=not args.no_figures)
    print(f"{results.n_run} runs done, {results.n_skipped} already there; report: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
