"""Train 500-hidden-unit RBMs on binarised MNIST with CD-1 and PCD and measure their test
log-likelihood with AIS, next to Salakhutdinov & Murray (ICML 2008).

Binarisation: stochastic, as in Salakhutdinov & Murray: each pixel is set to 1 with
probability equal to its grey level, drawn once with ``--binarize-seed`` (``--binarize
threshold`` uses ``x > 0.5`` instead). Training uses the 50,000 training images, the AIS base
rate is fitted to them, and the log-likelihood is averaged over the 10,000 test images.

Example::

    python scripts/mnist_rbm_ais.py --epochs 10 --out results/mnist_rbm_ais.json
    python scripts/mnist_rbm_ais.py --smoke   # a fast check of the whole pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dbn.datasets import load_mnist as load_mnist_split  # noqa: E402
from dbn.likelihood import ais_log_partition, log_likelihood  # noqa: E402
from dbn.rbm import RBM, train_rbm  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist.pkl.gz")

#: Salakhutdinov & Murray 2008, average test log-probability of RBMs with 500 hidden units
#: (marks: (M) the commonly quoted figure, (S) taken from a secondary source).
PUBLISHED = {"CD-1": (-125.53, "M"), "CD-3": (-105.50, "M"), "CD-25": (-86.34, "S")}


def load_mnist(path: str, binarize: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    split = load_mnist_split(path)  # reads arrays only: the unpickler refuses any other object
    x_train, x_test = torch.from_numpy(split.X_train), torch.from_numpy(split.X_test)
    if binarize == "threshold":
        return (x_train > 0.5).float(), (x_test > 0.5).float()
    g = torch.Generator().manual_seed(seed)
    return (
        (torch.rand(x_train.shape, generator=g) < x_train).float(),
        (torch.rand(x_test.shape, generator=g) < x_test).float(),
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="path of mnist.pkl.gz")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per model (default 20)")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--learning-rate", type=float, default=0.05, help="CD-1 learning rate")
    p.add_argument("--pcd-learning-rate", type=float, default=0.02,
                   help="PCD initial learning rate, decayed linearly towards 0 (Tieleman 2008)")
    p.add_argument("--weight-decay", type=float, default=2e-4)
    p.add_argument("--methods", nargs="+", default=["CD-1", "PCD"], choices=["CD-1", "CD-3", "CD-25", "PCD"])
    p.add_argument("--chains", type=int, default=100, help="AIS runs (default 100, as in the paper)")
    p.add_argument("--betas", type=int, default=None,
                   help="AIS inverse temperatures; default: the paper's 14,501-step schedule")
    p.add_argument("--binarize", choices=["stochastic", "threshold"], default="stochastic")
    p.add_argument("--binarize-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    p.add_argument("--smoke", action="store_true",
                   help="fast check: 1 epoch on 5000 images, 50 hidden units, 500 betas, 20 chains")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs, args.hidden, args.betas, args.chains, args.train_size = 1, 50, 500, 20, 5000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, X_test = load_mnist(args.data, args.binarize, args.binarize_seed)
    if args.train_size:
        X = X[: args.train_size]
    print(f"MNIST binarised ({args.binarize}): train {tuple(X.shape)}, test {tuple(X_test.shape)}")
    results = {
        "settings": {k: v for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "published": {k: {"test_log_likelihood": v, "mark": m} for k, (v, m) in PUBLISHED.items()},
        "models": {},
    }
    for method in args.methods:
        g = torch.Generator().manual_seed(args.seed)
        rbm = RBM(X.shape[1], args.hidden, generator=g)
        persistent = method == "PCD"
        k = 1 if persistent else int(method.split("-")[1])
        n_epochs = args.epochs
        options = dict(
            n_epochs=n_epochs, batch_size=args.batch_size, k=k, persistent=persistent,
            momentum="hinton", weight_decay=args.weight_decay, generator=g,
        )
        if persistent:
            options.update(learning_rate=args.pcd_learning_rate,
                           lr_schedule=lambda epoch: 1.0 - epoch / n_epochs)
        else:
            options.update(learning_rate=args.learning_rate)
        t0 = time.perf_counter()
        history = train_rbm(rbm, X, validation_data=X_test[:1000], **options)
        train_time = time.perf_counter() - t0
        ais = ais_log_partition(rbm, n_chains=args.chains, n_betas=args.betas, base_rate=X, generator=g)
        test_ll = float(log_likelihood(rbm, X_test, ais).mean())
        train_ll = float(log_likelihood(rbm, X[:10000], ais).mean())
        # the interval of log Z maps to the average log-likelihood reversed
        ll_low, ll_high = test_ll - (ais.log_z_high - ais.log_z), test_ll + (ais.log_z - ais.log_z_low)
        published = PUBLISHED.get(method)
        ref = f"published {published[0]:.2f} ({published[1]})" if published else "published: not in that table"
        print(
            f"{method:6s} {n_epochs} epochs ({train_time:.0f} s): test log-lik {test_ll:.2f} nats "
            f"[{ll_low:.2f}, {ll_high:.2f}], train {train_ll:.2f}; {ref}\n"
            f"       AIS log Z = {ais.log_z:.3f} [{ais.log_z_low:.3f}, {ais.log_z_high:.3f}], "
            f"{ais.n_chains} chains x {ais.n_betas} betas in {ais.time:.1f} s"
        )
        results["models"][method] = {
            "epochs": n_epochs,
            "train_time_s": train_time,
            "test_log_likelihood": test_ll,
            "test_log_likelihood_interval": [ll_low, ll_high],
            "train_log_likelihood_10k": train_ll,
            "log_z": ais.log_z,
            "log_z_interval": [ais.log_z_low, ais.log_z_high],
            "ais_chains": ais.n_chains,
            "ais_betas": ais.n_betas,
            "ais_time_s": ais.time,
            "final_epoch": {k: v for k, v in history[-1].items()},
        }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2, default=str)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
