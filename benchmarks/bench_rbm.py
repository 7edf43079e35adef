"""Seconds per CD-1 epoch of a Bernoulli RBM against scikit-learn's BernoulliRBM, and the GEMM roofline.

In one run the script

1. measures the float32 matrix-product peak at the three CD shapes (``v @ W.T``, ``h @ W``,
   ``h.T @ v``) on torch's default path (``torch.addmm``, MKL) and on oneDNN
   (``torch.ops.mkldnn._linear_pointwise`` on dense tensors, and ``torch._C._nn.mkldnn_linear``
   on ``to_mkldnn()`` tensors), best of ``--gemm-reps`` timings;
2. times scikit-learn's ``BernoulliRBM`` for one epoch (``n_iter=1``, float32 input, same
   batch size and ``learning_rate=0.1``; it does PCD without momentum or shuffling);
3. times our CD-1 epoch: the library trainer ``dbn.rbm.CDTrainer.partial_fit`` when it
   exists, and ``cd1_epoch_reference`` (the loop below, built from :mod:`dbn._linalg`) on
   both product paths;
4. measures each implementation's peak memory above data + model in a fresh subprocess.

It prints a table (best of ``--repeats`` epochs) and never asserts timings. The shared
machine is noisy: compare figures from the same run, and prefer a quiet machine.

Examples
--------
::

    PYTHONPATH=. python benchmarks/bench_rbm.py --repeats 3
    PYTHONPATH=. python benchmarks/bench_rbm.py --threads 1 --no-memory
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from dbn._linalg import bernoulli_sample, linear, linear_t, outer_accumulate_  # noqa: E402

warnings.filterwarnings("ignore", message="TF32 acceleration")  # torch.backends.mkldnn.flags

DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist.pkl.gz"
LEARNING_RATE = 0.1
MOMENTUM = 0.5
WEIGHT_DECAY = 2e-4


# --------------------------------------------------------------------------------------------
def load_mnist(path: Path) -> np.ndarray:
    """MNIST training images, float32 of shape (50000, 784) (read by the package's safe loader)."""
    from dbn.datasets import load_mnist as load_split

    return np.ascontiguousarray(load_split(path).X_train, dtype=np.float32)


def cd1_flops(n_samples: int, n_visible: int, n_hidden: int, batch_size: int) -> float:
    """Floating-point operations of one CD-1 epoch: five (batch x n_visible x n_hidden) GEMMs."""
    n_batches = -(-n_samples // batch_size)
    return 5 * 2.0 * batch_size * n_visible * n_hidden * n_batches


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
def cd1_epoch_reference(
    X: torch.Tensor,
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    velocities: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    batch_size: int = 100,
    learning_rate: float = LEARNING_RATE,
    momentum: float = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    generator: torch.Generator,
    merged_gradient: bool = False,
) -> None:
    """One CD-1 epoch over shuffled mini-batches, in place, from :mod:`dbn._linalg`.

    ``vel = momentum * vel + lr * (dW - weight_decay * W); W += vel`` (biases: no decay),
    with ``dW = (h0p.T @ v0 - h1p.T @ v1p) / B``. The two statistics are accumulated straight
    into the velocity by GEMMs with ``beta``, so no gradient buffer exists;
    ``merged_gradient=True`` does them as one GEMM over stacked ``[h0p; h1p]`` and
    ``[v0; -v1p]`` instead. The batch is gathered by ``index_select`` into a reused buffer
    (no permuted copy of the data set).
    """
    vel_w, vel_b, vel_c = velocities
    n = X.shape[0]
    n_hidden, n_visible = weight.shape
    order = torch.randperm(n, generator=generator, device=X.device)
    kw = {"device": X.device, "dtype": X.dtype}
    if merged_gradient:
        v_stack = torch.empty(2 * batch_size, n_visible, **kw)
        h_stack = torch.empty(2 * batch_size, n_hidden, **kw)
    batch_buf = torch.empty(batch_size, n_visible, **kw)
    h0_sample = torch.empty(batch_size, n_hidden, **kw)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        m = idx.shape[0]
        if merged_gradient:
            v0 = torch.index_select(X, 0, idx, out=v_stack[:m])
        else:
            v0 = torch.index_select(X, 0, idx, out=batch_buf[:m])
        h0 = linear(v0, weight, hidden_bias, activation="sigmoid")
        hs = bernoulli_sample(h0, generator, out=h0_sample[:m])
        v1 = linear_t(hs, weight, visible_bias, activation="sigmoid")
        h1 = linear(v1, weight, hidden_bias, activation="sigmoid")
        a = learning_rate / m
        vel_b.mul_(momentum).add_(v0.sum(0) - v1.sum(0), alpha=a)
        vel_c.mul_(momentum).add_(h0.sum(0) - h1.sum(0), alpha=a)
        if merged_gradient:
            h_stack[:m].copy_(h0)
            h_stack[m : 2 * m].copy_(h1)
            torch.neg(v1, out=v_stack[m : 2 * m])
            outer_accumulate_(vel_w, h_stack[: 2 * m], v_stack[: 2 * m], alpha=a, beta=momentum)
        else:
            outer_accumulate_(vel_w, h0, v0, alpha=a, beta=momentum)
            outer_accumulate_(vel_w, h1, v1, alpha=-a)
        if weight_decay:
            vel_w.add_(weight, alpha=-learning_rate * weight_decay)
        weight.add_(vel_w)
        visible_bias.add_(vel_b)
        hidden_bias.add_(vel_c)


def _new_params(n_visible: int, n_hidden: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_hidden, n_visible, generator=g) * 0.01
    b, c = torch.zeros(n_visible), torch.zeros(n_hidden)
    vel = (torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(c))
    return w, b, c, vel, g


def _library_trainer():
    """``dbn.rbm.RBM`` and ``CDTrainer`` if the library has them, else None."""
    try:
        from dbn.rbm import RBM, CDTrainer
    except ImportError:
        return None
    return RBM, CDTrainer


def make_epoch_runner(name: str, X_np: np.ndarray, args: argparse.Namespace):
    """A zero-argument callable running one epoch of implementation ``name`` on fresh state.

    Returns ``(setup, run)``: ``setup()`` builds the model and returns the state ``run`` needs,
    so model creation is outside the timed region.
    """
    n_visible, n_hidden, bs = X_np.shape[1], args.n_hidden, args.batch_size
    if name == "sklearn":
        from sklearn.neural_network import BernoulliRBM

        def setup():
            return BernoulliRBM(
                n_components=n_hidden,
                learning_rate=LEARNING_RATE,
                batch_size=bs,
                n_iter=args.epochs,
                random_state=0,
            )

        def run(model):
            model.fit(X_np)

        return setup, run
    X = torch.from_numpy(X_np)  # shares memory with the numpy array: no copy
    if name == "library":
        RBM, CDTrainer = _library_trainer()

        def setup():
            g = torch.Generator().manual_seed(0)
            rbm = RBM(n_visible, n_hidden, generator=g)
            return CDTrainer(
                rbm,
                learning_rate=LEARNING_RATE,
                batch_size=bs,
                momentum=MOMENTUM,
                weight_decay=WEIGHT_DECAY,
                generator=g,
            )

        def run(trainer):
            for _ in range(args.epochs):
                trainer.partial_fit(X)

        return setup, run
    merged = name.endswith("merged")
    onednn = "onednn" in name

    def setup():
        return _new_params(n_visible, n_hidden, 0)

    def run(state):
        w, b, c, vel, g = state
        with torch.backends.mkldnn.flags(enabled=onednn):
            for _ in range(args.epochs):
                cd1_epoch_reference(X, w, b, c, vel, batch_size=bs, generator=g, merged_gradient=merged)

    return setup, run


# --------------------------------------------------------------------------------------------
def gemm_peaks(n_visible: int, n_hidden: int, batch: int, reps: int) -> dict[str, float]:
    """Best GFLOP/s of each product form and path at the CD shapes."""
    g = torch.Generator().manual_seed(0)
    v = torch.rand(batch, n_visible, generator=g)
    h = torch.rand(batch, n_hidden, generator=g)
    w = torch.randn(n_hidden, n_visible, generator=g) * 0.01
    b, c = torch.zeros(n_visible), torch.zeros(n_hidden)
    acc = torch.zeros(n_hidden, n_visible)
    out_h, out_v = torch.empty(batch, n_hidden), torch.empty(batch, n_visible)
    flops = 2.0 * batch * n_visible * n_hidden
    cases = {
        "default  v@W.T+c (addmm)": lambda: torch.addmm(c, v, w.t(), out=out_h),
        "default  h@W+b   (addmm)": lambda: torch.addmm(b, h, w, out=out_v),
        "default  acc+=h.T@v (addmm_)": lambda: acc.addmm_(h.t(), v),
    }
    lp = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available() and lp is not None:
        vm, hm, wm = v.to_mkldnn(), h.to_mkldnn(), w.to_mkldnn()
        wtm = w.t().contiguous().to_mkldnn()
        htm, vtm = h.t().contiguous().to_mkldnn(), v.t().contiguous().to_mkldnn()
        ml = torch._C._nn.mkldnn_linear
        cases.update(
            {
                "oneDNN   v@W.T+c (dense, fused)": lambda: lp(v, w, c, "none", [], ""),
                "oneDNN   h@W+b   (dense, W.t() view)": lambda: lp(h, w.t(), b, "none", [], ""),
                "oneDNN   h.T@v   (dense views)": lambda: lp(h.t(), v.t(), None, "none", [], ""),
                "mkldnn_linear v@W.T (mkldnn tensors)": lambda: ml(vm, wm, c),
                "mkldnn_linear h@W   (mkldnn tensors)": lambda: ml(hm, wtm, b),
                "mkldnn_linear h.T@v (mkldnn tensors)": lambda: ml(htm, vtm, None),
            }
        )
    n_inner = 50
    results = {}
    for name, fn in cases.items():
        for _ in range(10):
            fn()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(n_inner):
                fn()
            best = min(best, (time.perf_counter() - t0) / n_inner)
        results[name] = flops / best / 1e9
    return results


def time_epochs(name: str, X_np: np.ndarray, args: argparse.Namespace) -> list[float]:
    setup, run = make_epoch_runner(name, X_np, args)
    times = []
    for _ in range(args.repeats):
        state = setup()
        t0 = time.perf_counter()
        run(state)
        times.append((time.perf_counter() - t0) / args.epochs)
    return times


def memory_probe(name: str, args: argparse.Namespace) -> dict:
    """In this (fresh) process: peak RSS growth of one epoch above data + model."""
    X_np = load_mnist(Path(args.data))
    setup, run = make_epoch_runner(name, X_np, args)
    state = setup()
    base = _proc_status_kib("VmRSS")
    exact = _reset_peak_rss()
    run(state)
    peak = _proc_status_kib("VmHWM")
    if not exact:  # VmHWM could not be reset: it includes the whole start-up
        peak = max(peak, _proc_status_kib("VmRSS"))
    return {"base_mib": base / 1024, "extra_mib": (peak - base) / 1024, "exact": exact}


def _memory_in_subprocess(name: str, args: argparse.Namespace) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--memory-probe",
        name,
        "--data",
        str(args.data),
        "--n-hidden",
        str(args.n_hidden),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        "1",
        "--repeats",
        "1",
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(f"  memory probe for {name} failed: {res.stderr.strip()[-300:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_MNIST, help="mnist.pkl.gz")
    parser.add_argument("--n-hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per implementation (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--gemm-reps", type=int, default=7)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also time the reference loop on the default path and with a merged gradient GEMM",
    )
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits  # numpy's BLAS, used by scikit-learn

        threadpool_limits(args.threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args)))
        return 0

    X_np = load_mnist(args.data)
    n, n_visible = X_np.shape
    flops = cd1_flops(n, n_visible, args.n_hidden, args.batch_size)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, oneDNN "
        f"{'available' if torch.backends.mkldnn.is_available() else 'unavailable'}; data {n} x {n_visible}, "
        f"{args.n_hidden} hidden, batch {args.batch_size}: {flops / 1e9:.1f} GFLOP per CD-1 epoch"
    )

    print("\nfloat32 GEMM at the CD shapes (best of reps, GFLOP/s)")
    peaks = gemm_peaks(n_visible, args.n_hidden, args.batch_size, args.gemm_reps)
    for name, gf in peaks.items():
        print(f"  {name:40s} {gf:7.1f}")
    best_peak = max(peaks.values())
    best_default = max(v for k, v in peaks.items() if k.startswith("default"))
    print(
        f"  best measured peak {best_peak:.1f} GFLOP/s (default path {best_default:.1f}); "
        f"roofline {flops / best_peak / 1e9:.3f} s/epoch"
    )

    impls = []
    if not args.no_sklearn:
        impls.append("sklearn")
    if _library_trainer() is not None:
        impls.append("library")
    impls.append("reference-onednn")
    if args.variants:
        impls += ["reference-onednn-merged", "reference-default", "reference-default-merged"]
    labels = {
        "sklearn": "sklearn BernoulliRBM (PCD, float32)",
        "library": "dbn.rbm.CDTrainer.partial_fit",
        "reference-onednn": "cd1_epoch_reference, oneDNN",
        "reference-onednn-merged": "cd1_epoch_reference, oneDNN, merged dW",
        "reference-default": "cd1_epoch_reference, default path",
        "reference-default-merged": "cd1_epoch_reference, default, merged dW",
    }
    times = {}
    for name in impls:
        times[name] = time_epochs(name, X_np, args)
    mem = {}
    if not args.no_memory:
        for name in impls:
            mem[name] = _memory_in_subprocess(name, args)

    sk = min(times["sklearn"]) if "sklearn" in times else None
    print(f"\nCD epoch, best of {args.repeats} (all timings in brackets)")
    head = (
        f"  {'implementation':42s} {'s/epoch':>8s} {'vs sklearn':>10s} {'GFLOP/s':>8s} {'% peak':>7s} {'mem MiB':>8s}"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for name in impls:
        t = min(times[name])
        ratio = f"{sk / t:9.2f}x" if sk else "-"
        gf = flops / t / 1e9
        m = mem.get(name)
        mtxt = f"{m['extra_mib']:8.1f}" if m else "-"
        note = "" if name != "sklearn" else "  (PCD, no momentum)"
        print(
            f"  {labels[name]:42s} {t:8.3f} {ratio:>10s} {gf:8.1f} {100 * gf / best_peak:6.1f}%"
            f" {mtxt:>8s}  {[round(x, 3) for x in times[name]]}{note}"
        )
    if mem:
        base = next((m["base_mib"] for m in mem.values() if m), float("nan"))
        exact = all(m["exact"] for m in mem.values() if m)
        print(
            f"\nmem MiB: peak resident memory during one epoch minus the resident memory just before "
            f"it, with data (float32, {X_np.nbytes / 2**20:.0f} MiB) and model already allocated "
            f"(~{base:.0f} MiB RSS incl. the interpreter and torch). Each in a fresh subprocess; VmHWM "
            f"{'reset via /proc/self/clear_refs' if exact else 'NOT resettable: figures include start-up'}, "
            "read from /proc/self/status."
        )
    print("GFLOP/s counts the five CD GEMMs only; % peak is against the best GEMM figure above.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
