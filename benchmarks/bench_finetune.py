"""Seconds per epoch of ``dbn.training.fit_network`` against a bare PyTorch training loop.

Both train copies of the same network (default 784-500-500-2000-10, sigmoid, N(0, 0.01)
init) with SGD + momentum, the same batch size and the same ``torch.randperm`` shuffling
from identically seeded generators, so that they do the same arithmetic; the script also
prints how far apart the final weights are. The overhead of ``fit_network`` (argument checks,
running training metrics, the per-epoch divergence check, the history) is the ratio.

Data: MNIST from ``../shared/data/mnist.pkl.gz`` (relative to the repository) when present,
otherwise scikit-learn's digits (64 features; the input width follows the data).

Examples
--------
::

    # from the repository root (or after ``pip install -e .``, without PYTHONPATH)
    PYTHONPATH=. python benchmarks/bench_finetune.py --epochs 2 --repeats 3 --n-samples 10000
    PYTHONPATH=. python benchmarks/bench_finetune.py --hidden 100 100 --data digits
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dbn.training import build_mlp, fit_network

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.pkl.gz"


def load_data(kind: str, path: Path, n_samples: int | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Training inputs and labels as tensors, and a description of what was loaded."""
    if kind in ("auto", "mnist") and path.exists():
        from dbn.datasets import load_mnist

        split = load_mnist(path)  # the package's safe loader: arrays only
        X, y = split.X_train, split.y_train
        name = f"MNIST ({path})"
    elif kind == "mnist":
        raise SystemExit(f"MNIST file not found: {path}")
    else:
        from sklearn.datasets import load_digits

        data = load_digits()
        X, y = data.data / 16.0, data.target
        name = "scikit-learn digits"
    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    return X.contiguous(), y.contiguous(), name


def bare_loop(net, X, y, *, epochs, batch_size, lr, momentum, seed):
    """The reference: the shortest correct PyTorch loop doing the same work."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator(device=X.device).manual_seed(seed)
    # fit_network draws one seed for dropout from its generator first; do the same so that
    # the permutations (and hence the weights) match.
    torch.randint(0, 2**62, (1,), generator=g, device=X.device)
    n = X.shape[0]
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g, device=X.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(X[idx]), y[idx])
            loss.backward()
            opt.step()
    return float(loss.detach())


def ours(net, X, y, *, epochs, batch_size, lr, momentum, seed):
    g = torch.Generator(device=X.device).manual_seed(seed)
    history = fit_network(
        net,
        X,
        y,
        optimizer="sgd",
        learning_rate=lr,
        momentum=momentum,
        max_iter=epochs,
        batch_size=batch_size,
        generator=g,
    )
    return history[-1]["train_loss"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("auto", "mnist", "digits"), default="auto")
    parser.add_argument("--mnist-path", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--n-samples", type=int, default=None, help="use the first N training samples")
    parser.add_argument("--hidden", type=int, nargs="*", default=[500, 500, 2000])
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    X, y, name = load_data(args.data, args.mnist_path, args.n_samples)
    X, y = X.to(device), y.to(device)
    n_classes = int(y.max()) + 1
    init_gen = torch.Generator(device=device).manual_seed(args.seed)
    net0 = build_mlp(
        X.shape[1],
        tuple(args.hidden),
        n_classes,
        activation=args.activation,
        init="normal",
        generator=init_gen,
        device=device,
    )
    arch = "-".join(str(s) for s in (X.shape[1], *args.hidden, n_classes))
    print(
        f"data: {name}, {X.shape[0]} samples; net {arch} {args.activation}; device {device}, "
        f"{torch.get_num_threads()} threads; batch {args.batch_size}, SGD lr {args.lr} "
        f"momentum {args.momentum}; {args.epochs} epochs x {args.repeats} repeats"
    )

    runners = {"bare": bare_loop, "fit_network": ours}
    times: dict[str, list[float]] = {k: [] for k in runners}
    final: dict[str, torch.nn.Module] = {}
    # Warm-up (allocator, first-call costs) on one epoch, not timed.
    for fn in runners.values():
        fn(
            copy.deepcopy(net0),
            X,
            y,
            epochs=1,
            batch_size=args.batch_size,
            lr=args.lr,
            momentum=args.momentum,
            seed=args.seed,
        )
    for r in range(args.repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for key in order:
            net = copy.deepcopy(net0)
            synchronize(device)
            t0 = time.perf_counter()
            runners[key](
                net,
                X,
                y,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                momentum=args.momentum,
                seed=args.seed,
            )
            synchronize(device)
            times[key].append((time.perf_counter() - t0) / args.epochs)
            final[key] = net

    diff = max(
        (a - b).abs().max().item()
        for a, b in zip(final["bare"].parameters(), final["fit_network"].parameters(), strict=True)
    )
    for key, ts in times.items():
        print(
            f"{key:>12}: median {statistics.median(ts):.3f} s/epoch, "
            f"min {min(ts):.3f}  (all: {', '.join(f'{t:.3f}' for t in ts)})"
        )
    ratio = statistics.median(times["fit_network"]) / statistics.median(times["bare"])
    ratio_min = min(times["fit_network"]) / min(times["bare"])
    print(f"ratio fit_network / bare: {ratio:.3f} (medians), {ratio_min:.3f} (minima); target <= 1.2")
    print(f"max |weight difference| after training: {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
