"""Train 500-hidden-unit RBMs on binarised MNIST (CD-1, CD-k, PCD, centred PCD, PCD with
parallel tempering) and estimate their test log-likelihood from both sides: AIS (a stochastic
upper bound on the average log-likelihood) and reverse AIS (RAISE, a stochastic lower bound, on
a subset of the test rows), beside the published figures.

Protocol:

* data: ``mnist.pkl.gz``; binarised stochastically (each pixel is 1 with probability equal to its
  grey level, drawn once with ``--binarize-seed``), as in Salakhutdinov & Murray 2008
  (``--binarize threshold``: pixel >= 0.5, as PyDeep's tutorial loads it; a different, easier
  dataset, so its figures compare only with PyDeep's; ``--binarize dynamic``: the same test set
  as ``stochastic``, but the training images are binarised afresh before every epoch, so the
  model never sees the same binary sample twice: a regulariser, not a different test problem);
  training on the 60,000 training + validation images (``--train-set 50k``: the 50,000 only), as
  PyDeep's tutorial; the AIS base rate is fitted to the training images;
* arms (``--arms``): ``cd1`` (CD-1), ``cdk`` (CD-``--cd-k``), ``pcd`` (PCD-1), ``pcd-centered``
  (centred PCD-1, offsets at the data mean and a running mean of the hidden probabilities,
  Melchior et al. 2016), ``pcd-pt`` (PCD with parallel tempering, ``--temperatures`` inverse
  temperatures linear in ``[--beta-min, 1]``), ``pcd-pt-centered`` (both); every arm starts
  from the same initial weights;
* CD arms: learning rate ``--learning-rate``, momentum 0.5 then 0.9 (Hinton), weight cost 2e-4;
  PCD arms: PyDeep's settings by default (learning rate ``--pcd-learning-rate`` 0.01, no
  momentum, no weight cost, ``--chains`` persistent chains = the batch size 100);
* AIS: ``--ais-chains`` runs over ``--ais-betas`` inverse temperatures (default: the paper's
  14,501-step schedule); reverse AIS on the first ``--raise-rows`` test rows with
  ``--raise-betas`` temperatures (it costs about 60 ms per temperature per 1000 rows on one
  core), reported beside forward AIS on the same rows.

Outputs ``results.json`` and ``results.md`` under ``--out``. Examples::

    python scripts/mnist_rbm_ais.py --quick --out /tmp/rbm_ais_quick      # a minute or two
    python scripts/mnist_rbm_ais.py --epochs 100 --arms pcd pcd-centered --out docs/results/mnist_rbm_ais
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dbn.datasets import load_mnist  # noqa: E402
from dbn.likelihood import ais_log_partition, log_likelihood, reverse_ais_log_likelihood  # noqa: E402
from dbn.rbm import RBM, train_rbm  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist.pkl.gz")
ARMS = ("cd1", "cdk", "pcd", "pcd-centered", "pcd-pt", "pcd-pt-centered")
DEFAULT_ARMS = ("cd1", "cdk", "pcd", "pcd-centered", "pcd-pt")

#: Published average test log-probabilities of 500-hidden RBMs on binarised MNIST (nats), with
#: their source (marks as in ANCHORS.md: (P) primary, (S) secondary, (M) commonly quoted).
#: Salakhutdinov & Murray binarise stochastically; PyDeep's ``load_mnist(path, True)``
#: thresholds at 0.5 (compare with ``--binarize threshold``).
PUBLISHED = (
    ("CD-25, Salakhutdinov & Murray 2008 (S)", -86.34, None),
    ("CD-3, Salakhutdinov & Murray 2008 (M)", -105.50, None),
    ("CD-1, Salakhutdinov & Murray 2008 (M)", -125.53, None),
    ("centred PCD-1, 200 epochs, PyDeep tutorial, MNIST thresholded at 0.5 (P)", -84.86, -96.61),
    ("plain PCD-1, 200 epochs, PyDeep tutorial, MNIST thresholded at 0.5 (P)", -130.81, -130.43),
)


def load_binarized(
    path: str, train_set: str, seed: int, how: str = "stochastic"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary training and test images and the training grey levels; ``dynamic`` gives the
    ``stochastic`` images (resample the training ones with :func:`resample_each_epoch`)."""
    split = load_mnist(path)  # reads arrays only
    x_train = torch.from_numpy(split.X_train)
    if train_set == "60k":
        x_train = torch.cat([x_train, torch.from_numpy(split.X_valid)])
    x_test = torch.from_numpy(split.X_test)
    if how == "threshold":  # PyDeep's io.load_mnist(path, True): pixel >= 0.5
        return (x_train >= 0.5).float(), (x_test >= 0.5).float(), x_train
    g = torch.Generator().manual_seed(seed)
    train = (torch.rand(x_train.shape, generator=g) < x_train).float()
    test = (torch.rand(x_test.shape, generator=g) < x_test).float()
    return train, test, x_train


def resample_each_epoch(X: torch.Tensor, grey: torch.Tensor, seed: int):
    """A :func:`dbn.rbm.train_rbm` callback that redraws the binary training images ``X`` in
    place from their grey levels after every epoch (the trainer reads ``X`` itself: float32 on
    the model's device is used without a copy, which the callback checks)."""
    g = torch.Generator(device=X.device).manual_seed(seed)
    pointer = X.data_ptr()

    def callback(rbm: RBM, record: dict) -> None:
        if X.data_ptr() != pointer:
            raise RuntimeError("the training tensor moved; dynamic binarisation cannot update it in place")
        torch.bernoulli(grey, generator=g, out=X)

    return callback


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="path of mnist.pkl.gz")
    p.add_argument("--out", default=None, help="directory for results.json and results.md")
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=ARMS)
    p.add_argument("--epochs", type=int, default=50, help="training epochs per arm (PyDeep: 200)")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--train-set", choices=["60k", "50k"], default="60k")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    p.add_argument("--learning-rate", type=float, default=0.05, help="learning rate of the CD arms")
    p.add_argument("--cd-k", type=int, default=10, help="k of the cdk arm")
    p.add_argument("--pcd-learning-rate", type=float, default=0.01, help="learning rate of the PCD arms")
    p.add_argument("--pcd-momentum", type=float, default=0.0)
    p.add_argument("--pcd-weight-decay", type=float, default=0.0)
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "linear"],
        default="constant",
        help="learning rate of every arm: constant, or decaying linearly to 0 over the epochs (Tieleman 2008)",
    )
    p.add_argument("--chains", type=int, default=None, help="persistent chains (default: the batch size)")
    p.add_argument("--offset-rate", type=float, default=0.01, help="sliding factor of the hidden offset")
    p.add_argument("--temperatures", type=int, default=10, help="inverse temperatures of the PT arms")
    p.add_argument("--beta-min", type=float, default=0.0, help="lowest inverse temperature of the PT arms")
    p.add_argument("--ais-chains", type=int, default=100)
    p.add_argument("--ais-betas", type=int, default=None, help="default: the paper's 14,501 temperatures")
    p.add_argument("--raise-rows", type=int, default=1000, help="test rows for reverse AIS (0: skip it)")
    p.add_argument("--raise-betas", type=int, default=3000)
    p.add_argument("--binarize-seed", type=int, default=0)
    p.add_argument(
        "--binarize",
        choices=("stochastic", "threshold", "dynamic"),
        default="stochastic",
        help="stochastic (Salakhutdinov & Murray 2008) or a 0.5 threshold (PyDeep's tutorial); "
        "the two give different datasets, so compare figures only within one; dynamic: the "
        "stochastic test set, training images binarised afresh every epoch",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--quick",
        action="store_true",
        help="pipeline check in a minute or two: 5000 images, 100 hidden units, 2 epochs, small AIS",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.train_size, args.hidden, args.epochs, args.cd_k, args.temperatures = 5000, 100, 2, 3, 4
        args.ais_chains, args.ais_betas, args.raise_rows, args.raise_betas = 20, 500, 100, 300
    return args


def _linear_decay(epoch: int, n_epochs: int) -> float:
    return 1.0 - epoch / n_epochs


def arm_options(arm: str, args: argparse.Namespace, g: torch.Generator) -> dict:
    """The :func:`dbn.rbm.train_rbm` options of one arm."""
    common: dict = dict(n_epochs=args.epochs, batch_size=args.batch_size, generator=g)
    if args.lr_schedule == "linear":  # factor 1 - epoch / epochs: the last epoch runs at 1/epochs
        common["lr_schedule"] = functools.partial(_linear_decay, n_epochs=args.epochs)
    if arm in ("cd1", "cdk"):
        return dict(
            common,
            k=1 if arm == "cd1" else args.cd_k,
            learning_rate=args.learning_rate,
            momentum="hinton",
            weight_decay=2e-4,
        )
    options = dict(
        common,
        persistent=True,
        n_chains=args.chains,
        learning_rate=args.pcd_learning_rate,
        momentum=args.pcd_momentum,
        weight_decay=args.pcd_weight_decay,
    )
    if "centered" in arm:
        options.update(centered=True, offset_rate=args.offset_rate)
    if "-pt" in arm:
        options.update(sampler="pt", n_temperatures=args.temperatures, beta_min=args.beta_min)
    return options


def evaluate(rbm: RBM, X: torch.Tensor, X_test: torch.Tensor, args, g: torch.Generator) -> dict:
    """Forward AIS on all test rows, reverse AIS on the first ``--raise-rows``."""
    ais = ais_log_partition(rbm, n_chains=args.ais_chains, n_betas=args.ais_betas, base_rate=X, generator=g)
    test_ll = log_likelihood(rbm, X_test, ais)
    row = {
        "ais_test": float(test_ll.mean()),
        # log Z's interval maps to the average log-likelihood reversed
        "ais_test_interval": [
            float(test_ll.mean()) - (ais.log_z_high - ais.log_z),
            float(test_ll.mean()) + (ais.log_z - ais.log_z_low),
        ],
        "ais_train_10k": float(log_likelihood(rbm, X[:10000], ais).mean()),
        "log_z": ais.log_z,
        "log_z_interval": [ais.log_z_low, ais.log_z_high],
        "ais_ess": ais.ess,
        "ais_reliable": ais.reliable,
        "ais_message": ais.message,
        "ais_chains": ais.n_chains,
        "ais_betas": ais.n_betas,
        "ais_seconds": ais.time,
    }
    m = min(args.raise_rows, X_test.shape[0])
    if m:
        raise_ = reverse_ais_log_likelihood(
            rbm, X_test[:m], n_betas=args.raise_betas, base_rate=X, generator=g, batch_size=500
        )
        row.update(
            raise_rows=m,
            raise_test=raise_.mean,
            raise_std_error=raise_.std_error,
            raise_betas=raise_.n_betas,
            raise_seconds=raise_.time,
            ais_test_same_rows=float(test_ll[:m].mean()),
        )
    return row


def markdown(results: dict) -> str:
    lines = [
        "| arm | epochs | train s | AIS test (nats) [interval] | AIS ESS | reverse AIS (rows) +/- se | AIS same rows |"
        " AIS train 10k |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in results["arms"].items():
        lo, hi = r["ais_test_interval"]
        rev = f"{r['raise_test']:.2f} ({r['raise_rows']}) +/- {r['raise_std_error']:.2f}" if "raise_test" in r else "-"
        same = f"{r['ais_test_same_rows']:.2f}" if "raise_test" in r else "-"
        lines.append(
            f"| {arm} | {r['epochs']} | {r['train_seconds']:.0f} | {r['ais_test']:.2f} [{lo:.2f}, {hi:.2f}]"
            f"{'' if r['ais_reliable'] else ' (unreliable)'} | {r['ais_ess']:.1f} | {rev} | {same} |"
            f" {r['ais_train_10k']:.2f} |"
        )
    lines += [
        "",
        "Published (500 hidden units, binarised MNIST test set):",
        "",
        "| model | AIS test (nats) | reverse AIS |",
        "|---|---|---|",
    ]
    for name, ais, rev in PUBLISHED:
        lines.append(f"| {name} | {ais:.2f} | {'-' if rev is None else f'{rev:.2f}'} |")
    s = results["settings"]
    lines += [
        "",
        f"Settings: {s['hidden']} hidden, {s['epochs']} epochs, batch {s['batch_size']}, train set "
        f"{s['train_set']}{'' if not s['train_size'] else ' first ' + str(s['train_size'])}; binarised "
        f"{s.get('binarize', 'stochastic')}; learning rate "
        f"{s.get('lr_schedule', 'constant')}; AIS "
        f"{s['ais_chains']} chains; reverse AIS {s['raise_betas']} temperatures. Machine: {results['machine']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, X_test, grey_train = load_binarized(args.data, args.train_set, args.binarize_seed, args.binarize)
    grey = grey_train if args.binarize == "dynamic" else None
    del grey_train
    if args.train_size:
        X = X[: args.train_size]
        grey = None if grey is None else grey[: args.train_size]
    print(
        f"MNIST binarised ({args.binarize}): train {tuple(X.shape)}, test {tuple(X_test.shape)}; "
        f"reverse AIS ~{0.06 * args.raise_betas * min(args.raise_rows, 10000) / 1000:.0f} s per arm on one core"
    )
    results = {
        "settings": dict(vars(args)),
        "machine": f"{platform.platform()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "published": [{"model": n, "ais": a, "reverse_ais": r} for n, a, r in PUBLISHED],
        "arms": {},
    }
    for arm in args.arms:
        g = torch.Generator().manual_seed(args.seed)
        rbm = RBM(X.shape[1], args.hidden, generator=g)
        t0 = time.perf_counter()
        callbacks = [] if grey is None else [resample_each_epoch(X, grey, args.binarize_seed + 1)]
        history = train_rbm(rbm, X, validation_data=X_test[:1000], callbacks=callbacks, **arm_options(arm, args, g))
        train_time = time.perf_counter() - t0
        row = {"epochs": len(history), "train_seconds": train_time, "final_epoch": dict(history[-1])}
        row.update(evaluate(rbm, X, X_test, args, g))
        results["arms"][arm] = row
        rev = (
            f", reverse AIS {row['raise_test']:.2f} on {row['raise_rows']} rows (AIS {row['ais_test_same_rows']:.2f})"
            if "raise_test" in row
            else ""
        )
        print(
            f"{arm:16s} {len(history)} epochs in {train_time:.0f} s: AIS test {row['ais_test']:.2f} nats "
            f"[{row['ais_test_interval'][0]:.2f}, {row['ais_test_interval'][1]:.2f}]{rev}; {row['ais_message']}",
            flush=True,
        )
        if args.out:
            write(results, args.out)
    if args.out:
        print(f"wrote {args.out}/results.json and results.md")
    print(markdown(results))
    return 0


def write(results: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(results))


if __name__ == "__main__":
    raise SystemExit(main())
