"""Peak memory of ``RBMTransformer.fit`` and ``transform`` on sparse vs dense input.

The data is issue 15's example: a 3,000 x 20,000 CSR matrix with about 30,000 non-zeros (uniform
in (0, 1), float64, 0.4 MB of non-zeros; 480 MB when dense). Sparse input stays sparse: the
trainers densify it one mini-batch at a time (:func:`dbn.engine.take_rows`).

How it is measured: each case runs in a fresh Python subprocess (so no earlier allocation is
reused), builds the data, imports everything and fits a tiny warm-up model; then it records
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak resident memory so far),
runs ``fit`` (and then ``transform``) and reports how far the peak rose. The figure is the
peak above data + libraries + model: what the call itself needed. On the CPU torch allocates
from the process heap, so its tensors are included; dense input includes the dense copy
the caller hands in (built before the baseline); its baseline shows that copy.

Examples
--------
::

    PYTHONPATH=. python benchmarks/bench_sparse.py
    PYTHONPATH=. python benchmarks/bench_sparse.py --n-features 5000 --n-components 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys
import numpy as np, scipy.sparse as sp
import dbn

n, d, nnz, k, kind, step = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                            sys.argv[5], sys.argv[6])
rng = np.random.RandomState(0)  # entries drawn directly (sp.random would allocate n * d indices)
X = sp.csr_matrix((rng.uniform(size=nnz), (rng.randint(n, size=nnz), rng.randint(d, size=nnz))), shape=(n, d))
X.sum_duplicates()
X.data = np.minimum(X.data, 1.0)
if kind == "dense":
    X = X.toarray()
dbn.RBMTransformer(n_components=2, n_iter=1, random_state=0).fit(X[:20])  # warm-up: imports, kernels

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

model = dbn.RBMTransformer(n_components=k, n_iter=1, random_state=0)
if step == "transform":
    model.fit(X[:100])  # a small fit, so that its peak stays below transform's
before = peak()
model.fit(X) if step == "fit" else model.transform(X)
print(json.dumps({"baseline": before, "delta": peak() - before}))
"""


def measure(kind: str, step: str, args: argparse.Namespace) -> tuple[float, float]:
    """``(baseline, rise)`` in MB: the peak memory before ``step`` ("fit" or "transform") on
    ``kind`` input (data, libraries, warm-up) and how far ``step`` raised it, in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(args.n_samples),
            str(args.n_features),
            str(args.nnz),
            str(args.n_components),
            kind,
            step,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["baseline"] / 2**20, result["delta"] / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-samples", type=int, default=3000)
    p.add_argument("--n-features", type=int, default=20000)
    p.add_argument("--nnz", type=int, default=30000)
    p.add_argument("--n-components", type=int, default=8)
    p.add_argument("--kinds", nargs="+", default=["sparse", "dense"], choices=["sparse", "dense"])
    args = p.parse_args(argv)
    print(
        f"RBMTransformer(n_components={args.n_components}, n_iter=1) on {args.n_samples} x {args.n_features}, "
        f"{args.nnz} non-zeros (float64)"
    )
    for kind in args.kinds:
        for step in ("fit", "transform"):
            baseline, rise = measure(kind, step, args)
            print(f"  {kind:6s} {step:9s} peak memory {baseline:8.1f} MB before, +{rise:7.1f} MB during")
    return 0


if __name__ == "__main__":
    sys.exit(main())
