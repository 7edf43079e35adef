"""The tuned comparison study on MNIST (50k/10k/10k): ten arms, depths 1, 3 and 5, three labelled sizes.

Usage::

    python scripts/compare_mnist.py --out mnist-study            # the full study (810 runs)
    python scripts/compare_mnist.py --out mnist-quick --quick    # a one-minute smoke version

Same harness as ``dbn compare`` (``dbn.harness``) with MNIST-sized settings: all ten arms
(``dbn compare --help`` lists them), width 500, depths 1, 3 and 5, 1,000 / 10,000 / 50,000 labels,
5 paired seeds, unlabelled pretraining on the 50,000 training images (5 epochs per layer, CD-1 for
the RBMs, masking noise 0.2 for the autoencoders; a stack is computed once per seed and shared by
the labelled sizes, the settings and the dropout twin of its arm).

Each arm's fine-tuning setting is chosen per cell on the 10,000 validation images from the four
settings of ``QUICK_GRID`` (SGD with momentum 0.9 at 0.1 and 0.03, Adam at 3e-3 and 1e-3) on the
first seed, then every seed runs with it. Budget, the same for every arm: mini-batches of 100, at
most 10 epochs and at least 1,000 updates (so 100 epochs for 1,000 labels, 10 for 10,000 and
50,000), early stopping on the validation error with patience 5. This is far below the 50-200
epochs of the published protocols: absolute errors sit above theirs, and the comparison is one of
equal budgets. Sized from measured costs on 2 quiet cores (one fine-tuning epoch on 50,000 labels:
2.1 s at depth 1, 3.1 s at depth 3, 4.5 s at depth 5) for about four hours. Interrupt at any time;
the same command resumes, tuning included. Results: docs/comparison_mnist.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dbn.harness import ARMS, StudyConfig, run_study, write_report
from dbn.harness.config import QUICK_GRID

DEFAULT_MNIST = Path(os.environ.get("DBN_MNIST", Path(__file__).resolve().parents[2] / "shared/data/mnist.pkl.gz"))

FULL = StudyConfig(
    dataset=str(DEFAULT_MNIST),
    arms=tuple(ARMS),
    depths=(1, 3, 5),
    widths=(500,),
    sizes=(1000, 10000, None),
    seeds=(0, 1, 2, 3, 4),
    unlabelled=True,
    protocol="tuned",
    grid=QUICK_GRID,
    batch_size=100,
    epochs=10,
    min_updates=1000,
    patience=5,
    pretrain_epochs=5,
    pretrain_learning_rate=0.05,
    probe_size=500,
    monitor_size=10000,
)

QUICK = FULL.replace(
    arms=("sigmoid-normal", "relu-he", "dbn"),
    depths=(1, 3),
    sizes=(1000,),
    seeds=(0, 1),
    epochs=2,
    min_updates=0,
    patience=2,
    pretrain_epochs=1,
    grid=({"solver": "sgd", "learning_rate_init": 0.1}, {"solver": "adam", "learning_rate_init": 3e-3}),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory (resumes)")
    parser.add_argument("--data", default=str(DEFAULT_MNIST), help="mnist.pkl.gz or IDX directory")
    parser.add_argument("--quick", action="store_true", help="a one-minute version (3 arms, 1000 labels, 2 seeds)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    dataset = args.data
    if Path(args.data).resolve() == DEFAULT_MNIST.resolve():
        # the rows name the data "mnist" (portable); load_mnist finds the file through $DBN_MNIST
        os.environ["DBN_MNIST"], dataset = str(DEFAULT_MNIST), "mnist"
    config = (QUICK if args.quick else FULL).replace(dataset=dataset, device=args.device)
    start = time.perf_counter()
    results = run_study(config, args.out, progress=not args.no_progress)
    path = write_report(args.out)
    print(
        f"{results.n_run} runs in {time.perf_counter() - start:.0f} s ({results.n_skipped} already there); "
        f"report: {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
