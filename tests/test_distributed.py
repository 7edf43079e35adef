"""Data-parallel training: 2 gloo processes on localhost against one process."""

import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dbn import distributed as D
from dbn._shard import owned_batches
from dbn.rbm import RBM, train_rbm
from dbn.stack import pretrain_stack
from dbn.training import build_mlp, fit_network

ROOT = Path(__file__).resolve().parents[1]
N, V, H = 1001, 24, 16  # an odd N: uneven shards and a short last batch


def _data():
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(N, V, generator=g) < 0.3).float()
    y = (X[:, :3].sum(dim=1) > 1).long()
    return X, y


RBM_CASES = {
    "cd1": dict(batch_size=64, learning_rate=0.1, momentum=0.5),
    "pcd": dict(
        batch_size=64,
        learning_rate=0.05,
        persistent=True,
        n_chains=30,
        k=2,
        sparsity_target=0.1,
        sparsity_cost=0.3,
        weight_decay=1e-3,
    ),
}
FIT = dict(max_iter=3, batch_size=50, learning_rate=0.1, momentum=0.9, optimizer="sgd")


def _labels(X):
    """Multi-label targets (three 0/1 labels) for the binary cross-entropy run."""
    return torch.stack([X[:, 0], X[:, 1] * X[:, 2], (X[:, 3:6].sum(dim=1) > 0).float()], dim=1)


def _single_results():
    X, y = _data()
    out = {}
    for name, opts in RBM_CASES.items():
        rbm = RBM(V, H, generator=torch.Generator().manual_seed(1))
        train_rbm(rbm, X, n_epochs=3, generator=torch.Generator().manual_seed(2), **opts)
        out[name] = rbm.state_dict()
    stack = pretrain_stack(
        X, (H, 8), n_epochs=2, propagate="samples", batch_size=50, generator=torch.Generator().manual_seed(3)
    )
    out["stack"] = stack.state_dict()
    net = build_mlp(V, (12,), 2, generator=torch.Generator().manual_seed(4))
    out["history"] = [
        r["train_loss"] for r in fit_network(net, X, y, generator=torch.Generator().manual_seed(5), **FIT)
    ]
    out["net"] = net.state_dict()
    net = build_mlp(V, (12,), 3, generator=torch.Generator().manual_seed(4))
    out["history_bce"] = [
        r["train_loss"]
        for r in fit_network(
            net, X, _labels(X), loss="binary_cross_entropy", generator=torch.Generator().manual_seed(5), **FIT
        )
    ]
    out["net_bce"] = net.state_dict()
    return out


def _worker(rank, world_size, port, path):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    X, y = _data()
    lo, hi = D.shard_bounds(N, rank, world_size)
    Xs, ys = X[lo:hi], y[lo:hi]
    out = {}
    for name, opts in RBM_CASES.items():
        rbm = RBM(V, H, generator=torch.Generator().manual_seed(1))
        D.train_rbm_distributed(rbm, Xs, n_epochs=3, generator=torch.Generator().manual_seed(2), **opts)
        out[name] = rbm.state_dict()
    stack = D.pretrain_stack_distributed(
        Xs, (H, 8), n_epochs=2, propagate="samples", batch_size=50, generator=torch.Generator().manual_seed(3)
    )
    out["stack"] = stack.state_dict()
    net = build_mlp(V, (12,), 2, generator=torch.Generator().manual_seed(4))
    out["history"] = [
        r["train_loss"] for r in D.finetune_distributed(net, Xs, ys, generator=torch.Generator().manual_seed(5), **FIT)
    ]
    out["net"] = net.state_dict()
    net = build_mlp(V, (12,), 3, generator=torch.Generator().manual_seed(4))
    out["history_bce"] = [
        r["train_loss"]
        for r in D.finetune_distributed(
            net, Xs, _labels(Xs), loss="binary_cross_entropy", generator=torch.Generator().manual_seed(5), **FIT
        )
    ]
    out["net_bce"] = net.state_dict()
    torch.save(out, f"{path}.{rank}")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dist") / "out")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, path)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [torch.load(f"{path}.{r}", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def single_results():
    return _single_results()


@pytest.mark.parametrize("case", ["cd1", "pcd", "stack"])
def test_two_process_rbm_equals_one_process(two_process_results, single_results, case):
    single = single_results[case]
    r0, r1 = two_process_results
    _close(r0[case], r1[case], atol=0.0)  # every rank applies the same update
    _close(r0[case], single, atol=1e-5)


@pytest.mark.parametrize("suffix", ["", "_bce"])  # softmax cross-entropy; multi-label binary cross-entropy
def test_two_process_ddp_finetuning_equals_one_process(two_process_results, single_results, suffix):
    single = single_results
    r0, r1 = two_process_results
    _close(r0["net" + suffix], r1["net" + suffix], atol=0.0)
    _close(r0["net" + suffix], single["net" + suffix], atol=1e-4)
    assert r0["history" + suffix] == pytest.approx(single["history" + suffix], rel=1e-4)


def test_one_process_matches_plain_trainer():
    X, _ = _data()
    a, b = (RBM(V, H, generator=torch.Generator().manual_seed(1)) for _ in range(2))
    ha = train_rbm(a, X, n_epochs=2, generator=torch.Generator().manual_seed(2), **RBM_CASES["pcd"])
    hb = D.train_rbm_distributed(b, X, n_epochs=2, generator=torch.Generator().manual_seed(2), **RBM_CASES["pcd"])
    _close(a.state_dict(), b.state_dict(), atol=1e-5)
    assert hb[-1]["reconstruction_error"] == pytest.approx(ha[-1]["reconstruction_error"], rel=1e-5)
    assert hb[-1]["pseudo_likelihood"] == pytest.approx(ha[-1]["pseudo_likelihood"], rel=1e-5)


def test_owned_batches_cover_each_global_batch_once():
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    parts = [owned_batches(order, *(lo, hi - lo), 10) for lo, hi in (D.shard_bounds(103, r, 3) for r in range(3))]
    for b, size in enumerate(parts[0][2]):
        rows = torch.cat([local[b] + D.shard_bounds(103, r, 3)[0] for r, (local, _, _) in enumerate(parts)])
        pos = torch.cat([p[1][b] for p in parts])
        assert sorted(pos.tolist()) == list(range(size))
        assert torch.equal(rows[pos.argsort()], order[b * 10 : b * 10 + size])


def test_shard_bounds_partition():
    bounds = [D.shard_bounds(10, r, 4) for r in range(4)]
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_trainer_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        D.CDTrainer(RBM(3, 2), rank=2, world_size=2)


def test_torchrun_entry_point(tmp_path):
    out = tmp_path / "stack.dbn"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "dbn.distributed",
        "pretrain",
        "--dataset",
        "digits",
        "--sizes",
        "16",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "layer 2 epoch   2" in result.stdout
    from dbn.io import load

    assert load(out).sizes == (64, 16, 8)


def _check_cuda_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_cuda", ROOT / "scripts" / "check_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_check_cuda_script_exits_clearly_without_cuda(capsys):
    assert _check_cuda_main()([]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.gpu
def test_check_cuda_script_passes_on_gpu():
    assert _check_cuda_main()(["--n-samples", "2000", "--epochs", "1"]) == 0


@pytest.mark.gpu
def test_distributed_trainer_path_on_gpu_matches_cpu():
    X, _ = _data()
    cpu = RBM(V, H, generator=torch.Generator().manual_seed(1))
    gpu = RBM(V, H, generator=torch.Generator().manual_seed(1)).cuda()
    D.train_rbm_distributed(cpu, X, n_epochs=1, batch_size=64, generator=torch.Generator().manual_seed(2))
    g = torch.Generator(device="cuda").manual_seed(2)
    D.train_rbm_distributed(gpu, X.cuda(), n_epochs=1, batch_size=64, generator=g)
    assert gpu.weight.is_cuda and torch.isfinite(gpu.weight).all()
    assert (gpu.weight.cpu() - cpu.weight).abs().max() < 0.5  # different random streams, same scale
