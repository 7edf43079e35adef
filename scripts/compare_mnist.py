"""The comparison study on MNIST (50k/10k/10k), sized for about an hour on two CPU cores.

Usage::

    python scripts/compare_mnist.py --out mnist-study            # the full study
    python scripts/compare_mnist.py --out mnist-quick --quick    # a few-minute smoke version

Same harness and protocol as ``dbn compare`` (``dbn.harness``), with MNIST-sized settings:
784-wide inputs, arms sigmoid-normal / relu-he / dbn / sda, width 500, depths 1 and 3,
1000 / 10000 / 50000 labels, 2 seeds (48 runs), SGD with momentum (lr 0.1, batch 100), at most
10 fine-tuning epochs with early stopping (patience 5) on the 10k validation images, 3
pretraining epochs per layer on all 50k training images (semi-supervised). Measured with
``--quick`` on the shared 2-core machine (load average 4-5): 450 s for 12 runs, of which
58 s per DBN run of pretraining (1 epoch per layer); extrapolated, the full study takes
about 1 to 1.5 hours on a quiet machine, more under load (pretraining dominates; it is
repeated for every labelled size although, with ``unlabelled=True``, it is the same stack). Ten epochs is far from the 50-200 of the published protocols: absolute
errors sit above ANCHORS.md's, and the comparison is one of equal (small) budgets. Interrupt
at any time; running the same command again resumes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dbn.harness import StudyConfig, run_study, write_report

DEFAULT_MNIST = Path(os.environ.get("DBN_MNIST", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist.pkl.gz"))

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
    config = (QUICK if args.quick else FULL).replace(dataset=args.data, device=args.device)
    start = time.perf_counter()
    results = run_study(config, args.out)
    path = write_report(args.out)
    print(f"{results.n_run} runs in {time.perf_counter() - start:.0f} s ({results.n_skipped} already there); report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
