"""Speed where users run it: small data, a busy machine, and the MNIST roofline, in one run.

Every part runs twice, on the machine as it is ("quiet") and beside one competing CPU-bound
process (``python -c "while True: pass"``, started here and stopped after the "loaded" half),
and prints ratios measured in the same run. Implementations are interleaved (A, B, A, B...)
and the best of ``--repeats`` kept. The package runs under its automatic thread policy
(:mod:`dbn._threads`) unless ``--threads`` is given. Nothing is asserted: this is a report.

Parts (``--parts``, default ``gallery mnist finetune``):

``gallery``
    scikit-learn's "RBM features for digit classification" protocol: the nudged digits
    (load_digits / 16, shifted one pixel in four directions with ``scipy.ndimage.convolve``:
    8,985 x 64), 100 components, batch 10, 10 epochs, learning_rate 0.06, random_state 0;
    ``dbn.RBMTransformer.fit`` against ``sklearn.neural_network.BernoulliRBM.fit``.
``mnist``
    one CD-1 epoch of ``dbn.rbm.CDTrainer`` (50,000 x 784 -> 500, batch 100, lr 0.1, momentum
    0.5, weight decay 2e-4) against one ``BernoulliRBM`` epoch, and as a percentage of the best
    measured float32 GEMM peak at the CD shapes (``benchmarks/bench_rbm.py``'s paths: MKL
    ``addmm``, oneDNN on dense tensors, oneDNN on ``to_mkldnn()`` tensors). Skipped without
    ``--mnist`` file.
``finetune``
    one epoch of ``dbn.fit_network`` against the bare PyTorch loop of
    ``benchmarks/bench_finetune.py`` (784-500-500-2000-10 on MNIST's first ``--finetune-samples``
    rows, digits without MNIST).
``study``
    wall time of the default digits study, ``python -m dbn compare --dataset digits`` (minutes;
    only when asked).
``crossover``
    two threads' speed-up over one per CD-1 step over a range of ``batch * n_visible *
    n_hidden``, and per epoch of ``fit_network`` and ``train_autoencoder`` over a range of
    ``batch * weight sizes``: where a second thread starts to pay (the measurements behind
    ``dbn._threads.MIN_PARALLEL_WORK`` and ``MIN_PARALLEL_WORK_BACKPROP``).

``profile``
    microseconds per operation of one CD-1 step at MNIST's size (the products, the sampling,
    the passes over the weights), on the threads the policy gives it; and the step's five
    products run back to back with nothing else, as a percentage of the best measured product
    peak: the ceiling of the epoch's % of peak, whatever the rest of the step costs.

With ``--auto`` a third half runs beside the competing process inside ``dbn.threads("auto")``
(the study with ``--threads auto``): the automatic policy capped by the idle cores.

Examples
--------
::

    PYTHONPATH=. python benchmarks/bench_speed.py --quick
    PYTHONPATH=. python benchmarks/bench_speed.py --parts gallery mnist --repeats 3
    PYTHONPATH=. python benchmarks/bench_speed.py --parts study --no-loaded
    PYTHONPATH=. python benchmarks/bench_speed.py --parts gallery mnist finetune study --auto
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import dbn  # noqa: E402
from dbn._threads import batch_work, fit_threads, threads  # noqa: E402

DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist.pkl.gz"


def load() -> str:
    """The 1-minute load average and the cores, for the record."""
    try:
        return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    except OSError:  # pragma: no cover
        return f"{os.cpu_count()} cores"


@contextlib.contextmanager
def competing_process(on: bool):
    """One CPU-bound busy loop in a subprocess while the block runs (when ``on``)."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def interleaved(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each runner over ``repeats`` rounds, in alternating order."""
    best = {k: float("inf") for k in runners}
    for r in range(repeats):
        for key in list(runners) if r % 2 == 0 else list(reversed(runners)):
            t0 = time.perf_counter()
            runners[key]()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------------------------
def nudged_digits() -> np.ndarray:
    """The gallery's data: digits / 16 and its four one-pixel shifts, float32 (8985, 64)."""
    from scipy.ndimage import convolve
    from sklearn.datasets import load_digits

    X = np.asarray(load_digits().data, dtype=np.float32) / 16.0
    directions = [
        [[0, 1, 0], [0, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 1, 0]],
    ]

    def shift(x, w):
        return convolve(x.reshape((8, 8)), mode="constant", weights=np.asarray(w)).ravel()

    shifted = [np.apply_along_axis(shift, 1, X, w) for w in directions]
    return np.ascontiguousarray(np.concatenate([X] + shifted), dtype=np.float32)


def part_gallery(args) -> dict[str, float]:
    from sklearn.neural_network import BernoulliRBM

    X = nudged_digits()
    opts = {"n_components": 100, "learning_rate": 0.06, "batch_size": 10, "n_iter": 10, "random_state": 0}
    best = interleaved(
        {
            "RBMTransformer.fit": lambda: dbn.RBMTransformer(**opts).fit(X),
            "BernoulliRBM.fit": lambda: BernoulliRBM(**opts).fit(X),
        },
        args.repeats,
    )
    best["ratio"] = best["BernoulliRBM.fit"] / best["RBMTransformer.fit"]
    return best


def part_mnist(args) -> dict[str, float] | None:
    if not args.mnist.exists():
        print(f"  (no MNIST file at {args.mnist}: skipped)")
        return None
    import bench_rbm
    from sklearn.neural_network import BernoulliRBM

    X_np = bench_rbm.load_mnist(args.mnist)[: args.mnist_samples]
    X = torch.from_numpy(X_np)
    n, n_visible = X_np.shape
    flops = bench_rbm.cd1_flops(n, n_visible, 500, 100)

    def ours():
        g = torch.Generator().manual_seed(0)
        trainer = dbn.CDTrainer(
            dbn.RBM(n_visible, 500, generator=g),
            learning_rate=0.1,
            batch_size=100,
            momentum=0.5,
            weight_decay=2e-4,
            generator=g,
        )
        trainer.partial_fit(X)

    def sklearn():
        BernoulliRBM(n_components=500, learning_rate=0.1, batch_size=100, n_iter=1, random_state=0).fit(X_np)

    best = interleaved({"CD-1 epoch": ours, "BernoulliRBM epoch": sklearn}, args.repeats)
    with fit_threads(100 * n_visible * 500):  # the peak on the threads the epoch runs on
        peaks = bench_rbm.gemm_peaks(n_visible, 500, 100, 3 if args.quick else 7)
    best_peak = max(peaks.values())
    best["ratio"] = best["BernoulliRBM epoch"] / best["CD-1 epoch"]
    best["GFLOP/s"] = flops / best["CD-1 epoch"] / 1e9
    best["peak GFLOP/s"] = best_peak
    best["% of peak"] = 100 * best["GFLOP/s"] / best_peak
    best["peak path"] = max(peaks, key=peaks.get)
    return best


def part_finetune(args) -> dict[str, float]:
    import copy

    import bench_finetune

    X, y, _ = bench_finetune.load_data("auto", args.mnist, args.finetune_samples)
    hidden = (500, 500, 2000) if X.shape[1] == 784 else (100, 100)
    net0 = dbn.build_mlp(
        X.shape[1], hidden, int(y.max()) + 1, init="normal", generator=torch.Generator().manual_seed(0)
    )
    kw = {"epochs": 1, "batch_size": 100, "lr": 0.1, "momentum": 0.9, "seed": 0}

    def bare():  # on the threads fit_network's policy picks, so that only the overhead differs
        with fit_threads(batch_work(100, net0)):
            bench_finetune.bare_loop(copy.deepcopy(net0), X, y, **kw)

    best = interleaved(
        {
            "fit_network epoch": lambda: bench_finetune.ours(copy.deepcopy(net0), X, y, **kw),
            "bare loop epoch": bare,
        },
        args.repeats,
    )
    best["ratio fit_network / bare"] = best["fit_network epoch"] / best["bare loop epoch"]
    return best


def part_study(args) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "dbn",
            "compare",
            "--dataset",
            "digits",
            "--out",
            out,
            "--no-progress",
            "--no-figures",
        ]
        if args.study_threads:
            cmd += ["--threads", str(args.study_threads)]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return {"digits study wall time": time.perf_counter() - t0}


def part_crossover(args) -> dict[str, float]:
    """Two threads' speed-up per CD-1 step, and per epoch of the back-propagation trainers."""
    shapes = [(10, 64, 100), (100, 64, 100), (20, 256, 256), (100, 256, 256), (100, 784, 200), (100, 784, 500)]
    if args.quick:
        shapes = shapes[::2]
    out = {}
    for bs, nv, nh in shapes:
        g = torch.Generator().manual_seed(0)
        trainer = dbn.CDTrainer(dbn.RBM(nv, nh, generator=g), batch_size=bs, momentum=0.5, generator=g)
        v = torch.rand(bs, nv, generator=g)
        n = max(10, int(3e8 / (bs * nv * nh * 10)))
        if args.quick:
            n = max(5, n // 4)

        def steps(n_threads, n=n, trainer=trainer, v=v):
            def run():
                with threads(n_threads), torch.no_grad():
                    for _ in range(n):
                        trainer.step(v, 0.01, 0.5)

            return run

        best = interleaved({"1": steps(1), "2": steps(2)}, args.repeats)
        out[f"CD work {bs * nv * nh:.2e} ({bs}x{nv}x{nh}): 2 threads speed-up"] = best["1"] / best["2"]
    # fine-tuning (fit_network) and the denoising autoencoder: one epoch of ~2e9 flops or 200 batches
    nets = [(20, 64, (128,)), (20, 64, (128, 128, 128)), (100, 64, (100, 100)), (20, 784, (128, 128))]
    nets += [(100, 784, (256, 256)), (100, 784, (500, 500)), (100, 784, (500, 500, 2000))]
    if args.quick:
        nets = nets[::2]
    for bs, n_in, hidden in nets:
        g = torch.Generator().manual_seed(0)
        net = dbn.build_mlp(n_in, hidden, 10, generator=g)
        work = batch_work(bs, net)
        rows = int(min(20_000, max(200 * bs, 2e9 / (6 * work / bs))))
        X, y = torch.rand(rows, n_in, generator=g), torch.randint(0, 10, (rows,), generator=g)
        dae = dbn.DenoisingAutoencoder(n_in, hidden[0], generator=g)

        def fine_tune(n_threads, net=net, X=X, y=y, bs=bs):
            def run():
                with threads(n_threads):
                    dbn.fit_network(net, X, y, max_iter=1, batch_size=bs, generator=torch.Generator().manual_seed(0))

            return run

        def autoencoder(n_threads, dae=dae, X=X, bs=bs):
            def run():
                with threads(n_threads):
                    dbn.train_autoencoder(dae, X, n_epochs=1, batch_size=bs, generator=0)

            return run

        best = interleaved({"1": fine_tune(1), "2": fine_tune(2)}, args.repeats)
        name = f"{n_in}-{'-'.join(map(str, hidden))}-10 b{bs}"
        out[f"fine-tuning work {work:.2e} ({name}): 2 threads speed-up"] = best["1"] / best["2"]
        best = interleaved({"1": autoencoder(1), "2": autoencoder(2)}, args.repeats)
        key = f"DAE work {batch_work(bs, dae):.2e} ({n_in}-{hidden[0]} b{bs}): 2 threads speed-up"
        out[key] = best["1"] / best["2"]
    return out


def part_profile(args) -> dict[str, float]:
    """Microseconds per operation of one CD-1 step at MNIST's size (batch 100, 784 -> 500)."""
    import bench_rbm

    from dbn._linalg import _product, bernoulli_sample

    g = torch.Generator().manual_seed(0)
    B, nv, nh = 100, 784, 500
    trainer = dbn.CDTrainer(dbn.RBM(nv, nh, generator=g), batch_size=B, momentum=0.5, weight_decay=2e-4, generator=g)
    W, b, c = trainer.rbm.weight, trainer.rbm.visible_bias, trainer.rbm.hidden_bias
    v, h, vel = (torch.rand(B, nv, generator=g) < 0.13).float(), torch.rand(B, nh, generator=g), torch.zeros_like(W)
    n = 50 if args.quick else 200
    vel_stats = torch.zeros_like(W)

    def products_only():  # the step's five products back to back, nothing else: its ceiling
        h0 = _product(v, W.t(), c, "sigmoid")
        vk = _product(h0, W, b, "sigmoid")
        hk = _product(vk, W.t(), c, "sigmoid")
        vel_stats.addmm_(h0.t(), v, beta=0.5, alpha=1e-6).addmm_(hk.t(), vk, alpha=-1e-6)

    ops = {
        "whole CD-1 step": lambda: trainer.step(v, 0.01, 0.5),
        "the step's five products alone": products_only,
        "product v -> h with sigmoid": lambda: _product(v, W.t(), c, "sigmoid"),
        "product h -> v with sigmoid": lambda: _product(h, W, b, "sigmoid"),
        "weight statistics (addmm_ into the velocity)": lambda: vel.addmm_(h.t(), v, beta=0.5, alpha=0.01),
        "hidden samples (uniform draws and compare)": lambda: bernoulli_sample(h, g),
        "W += velocity": lambda: W.add_(vel, alpha=0.0),
        "velocity -= decay * W": lambda: vel.add_(W, alpha=-1e-9),
    }
    out = {}
    with fit_threads(B * nv * nh), torch.no_grad():
        for key, op in ops.items():
            best = float("inf")
            for _ in range(args.repeats + 2):
                t0 = time.perf_counter()
                for _ in range(n):
                    op()
                best = min(best, time.perf_counter() - t0)
            out[f"{key} (us)"] = best / n * 1e6
    flops = 2 * B * nv * nh
    for key in list(out):
        if "product" in key or "statistics" in key or "step" in key:
            per_call = 5 * flops if "step" in key else flops
            out[key.replace("(us)", "(GFLOP/s)")] = per_call / out[key] / 1e3
    with fit_threads(B * nv * nh):
        peak = max(bench_rbm.gemm_peaks(nv, nh, B, 3 if args.quick else 7).values())
    out["best measured product peak (GFLOP/s)"] = peak
    for key in ("whole CD-1 step", "the step's five products alone"):
        out[f"{key} (% of peak)"] = 100 * out[f"{key} (GFLOP/s)"] / peak
    return out


PARTS = {
    "gallery": part_gallery,
    "mnist": part_mnist,
    "finetune": part_finetune,
    "study": part_study,
    "crossover": part_crossover,
    "profile": part_profile,
}


def _show(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _count(text: str) -> int | str:
    return text if text == "auto" else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=tuple(PARTS), default=["gallery", "mnist", "finetune"])
    parser.add_argument("--study", action="store_true", help="add the digits study (minutes)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per implementation, best kept")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 10,000 MNIST rows, fewer shapes")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--mnist-samples", type=int, default=50_000)
    parser.add_argument("--finetune-samples", type=int, default=10_000)
    parser.add_argument(
        "--threads", type=_count, default=None, help="dbn.threads(N) for the package's fits (N or 'auto')"
    )
    parser.add_argument("--auto", action="store_true", help="add a loaded half inside dbn.threads('auto')")
    parser.add_argument("--no-loaded", action="store_true", help="skip the half beside a competing process")
    parser.add_argument("--no-quiet", action="store_true", help="skip the quiet half")
    args = parser.parse_args(argv)
    if args.study and "study" not in args.parts:
        args.parts.append("study")
    if args.quick:
        args.repeats, args.mnist_samples, args.finetune_samples = 1, 10_000, 2_000
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads by default, "
        f"{f'dbn.threads({args.threads!r})' if args.threads else 'automatic thread policy'}; {load()}"
    )
    halves = [h for h, skip in (("quiet", args.no_quiet), ("loaded", args.no_loaded)) if not skip]
    if args.auto:
        halves.append("loaded-auto")
    results: dict[str, dict[str, dict]] = {}
    for half in halves:
        choice = "auto" if half == "loaded-auto" else args.threads
        args.study_threads = choice
        with threads(choice) if choice else contextlib.nullcontext(), competing_process(half != "quiet"):
            what = "one competing CPU-bound process, " if half != "quiet" else ""
            what += 'dbn.threads("auto"), ' if half == "loaded-auto" else ""
            print(f"\n== {half} ({what}{load()})")
            for part in args.parts:
                t0 = time.perf_counter()
                res = PARTS[part](args)
                if res is None:
                    continue
                results.setdefault(part, {})[half] = res
                print(f"  {part} ({time.perf_counter() - t0:.0f} s, {load()})")
                for key, value in res.items():
                    print(f"    {key:55s} {_show(value)}")
    for loaded_half in ("loaded", "loaded-auto"):
        if "quiet" not in halves or loaded_half not in halves:
            continue
        print(f"\n== slow-down, {loaded_half} / quiet time (a fair share of 2 cores is 2x)")
        for part, by_half in results.items():
            if part == "crossover" or "quiet" not in by_half or loaded_half not in by_half:
                continue
            for key, quiet in by_half["quiet"].items():
                loaded = by_half[loaded_half][key]
                if (
                    isinstance(quiet, float)
                    and ("fit" in key or "epoch" in key or "wall" in key)
                    and "ratio" not in key
                ):
                    print(f"    {part}: {key:45s} {loaded / quiet:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
