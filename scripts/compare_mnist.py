"""The comparison study on MNIST (50k/10k/10k), sized for about an hour on two CPU cores.

Usage::

    python scripts/compare_mnist.py --out mnist-study            # the full study (120 runs)
    python scripts/compare_mnist.py --out mnist-quick --quick    # a 30-second smoke version

Same harness and protocol as ``dbn compare`` (``dbn.harness``), with MNIST-sized settings:
784-wide inputs, arms sigmoid-normal / relu-he / dbn / sda, width 500, depths 1 and 3,
1000 / 10000 / 50000 labels, 5 seeds (120 runs), SGD with momentum (lr 0.1, batch 100), at most
30 fine-tuning epochs with early stopping (patience 10) on the 10k validation images, 10
pretraining epochs per layer on all 50k training images (semi-supervised; each stack is
computed once and shared by the three labelled sizes). Measured on a quiet 2-core machine:
52 minutes (pretraining 8 min, fine-tuning 34 min, per-epoch measurements the rest); the
``--quick`` version 30 s. Thirty epochs is below the 50-200 of the published protocols:
absolute errors sit above the published ones, and the comparison is one of equal budgets. Interrupt
at any time; running the same command again resumes. Results: docs/comparison_mnist.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dbn.harness import StudyConfig, run_study, write_report

DEFAULT_MNIST = Path(os.environ.get("DBN_MNIST", Path(__file__).resolve().parents[2] / "shared/data/mnist.pkl.gz"))

FULL = StudyConfig(
    dataset=str(DEFAULT_MNIST),
    arms=("sigmoid-normal", "relu-he", "dbn", "sda"),
    depths=(1, 3),
    widths=(500,),
    sizes=(1000, 10000, None),
    seeds=(0, 1, 2, 3, 4),
    unlabelled=True,
    solver="sgd",
    learning_rate=0.1,
    momentum=0.9,
    batch_size=100,
    epochs=30,
    patience=10,
    pretrain_epochs=10,
    pretrain_learning_rate=0.05,
    probe_size=500,
    monitor_size=10000,
)

QUICK = FULL.replace(arms=("sigmoid-normal", "relu-he", "dbn"), depths=(1, 3), sizes=(1000,), seeds=(0, 1),
                     epochs=5, patience=5, pretrain_epochs=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory (resumes)")
    parser.add_argument("--data", default=str(DEFAULT_MNIST), help="mnist.pkl.gz or IDX directory")
    parser.add_argument("--quick", action="store_true", help="a few-minute version (3 arms, 1000 labels, 2 seeds)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    dataset = args.data
    if Path(args.data).resolve() == DEFAULT_MNIST.resolve():
        # the rows name the data "mnist" (portable); load_mnist finds the file through $DBN_MNIST
        os.environ["DBN_MNIST"], dataset = str(DEFAULT_MNIST), "mnist"
    config = (QUICK if args.quick else FULL).replace(dataset=dataset, device=args.device)
    start = time.perf_counter()
    results = run_study(config, args.out)
    path = write_report(args.out)
    print(f"{results.n_run} runs in {time.perf_counter() - start:.0f} s ({results.n_skipped} already there); report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
