"""The classic 784-500-500-2000-10 network on MNIST: DBN pretraining + fine-tuning against the
same network randomly initialised, under the published protocol as far as this machine allows.

Protocol (after Hinton & Salakhutdinov 2006 and their released code, with SGD in place of
conjugate gradients, or L-BFGS in the ``dbn-lbfgs`` arm; dropout fine-tuning after Srivastava
et al. 2014):

* data: the classic 50,000 / 10,000 / 10,000 split of ``mnist.pkl.gz`` (pixels in [0, 1));
* pretraining: three RBMs 784-500, 500-500, 500-2000, CD-1, ``--pretrain-epochs`` (50) each, batch
  100, learning rate 0.1, momentum 0.5 then 0.9 after epoch 5, weight cost 2e-4, hidden
  probabilities feed the next layer (Hinton's settings);
* selection: every arm is fine-tuned on the 50,000 training images for at most ``--epochs``
  epochs with the validation error monitored after each (early stopping with patience
  ``--patience``, ``--dropout-patience`` for the dropout arm); the best validation epoch ``E``
  is the selected fine-tuning length, and its weights give the "validation-selected" test error;
* 60k: the same arm is fine-tuned again from the same starting point on all 60,000 training +
  validation images for exactly ``E`` epochs, and its test error is reported as well;
* ``--head-epochs N`` (pretrained arms): the output layer is first trained alone for ``N``
  epochs, the pretrained layers frozen (as Hinton & Salakhutdinov's code trains the top layer
  for its first 6 epochs), in both the selection and the 60k runs;
* arms: ``dbn`` (pretrained, sigmoid, plain backprop: SGD, momentum 0.9), ``dbn-dropout`` (the
  same stack, dropout fine-tuning as Srivastava et al.: keep probability 0.8 on the inputs and
  0.5 on the hidden units, momentum rising linearly from 0.5 to 0.95 over ``--momentum-epochs``,
  max-norm ``--max-norm`` on each hidden unit's incoming weights), ``relu`` (random init, He
  normal, the same selection); optional ``dbn-gentle`` (smaller learning rate ``--gentle-lr``
  and L2 ``--gentle-l2``), ``dbn-lbfgs`` (the stack fine-tuned as Hinton & Salakhutdinov's
  code does, with L-BFGS in place of their conjugate gradients: batches of ``--lbfgs-batch-size``
  (1,000), three iterations with strong-Wolfe line searches per batch, the output layer alone
  for the first ``--lbfgs-head-epochs`` (6) epochs, at most ``--lbfgs-epochs`` (200) epochs,
  patience ``--lbfgs-patience``) and ``sigmoid`` (random init, Glorot uniform).

The rising momentum is set before every optimizer step by a torch optimizer step pre-hook.
``--stack PATH`` saves the pretrained stack there (or loads it, when the file exists).

It prints test errors, epochs and wall time per phase, and writes everything to ``--out``
(JSON). Examples::

    python scripts/mnist_dbn.py --out results/mnist_dbn.json
    python scripts/mnist_dbn.py --quick          # a minute or two: checks the whole pipeline
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dbn  # noqa: E402
from dbn.datasets import load_mnist  # noqa: E402
from dbn.export import to_torch  # noqa: E402
from dbn.network import hidden_linear_layers  # noqa: E402
from dbn.stack import pretrain_stack  # noqa: E402
from dbn.training import build_mlp, evaluate, fit_network  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist.pkl.gz")
ARMS = ("dbn", "dbn-gentle", "dbn-dropout", "dbn-lbfgs", "sigmoid", "relu")
DEFAULT_ARMS = ("dbn", "dbn-dropout", "relu")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="mnist.pkl.gz or a directory of IDX files")
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=ARMS)
    p.add_argument("--sizes", nargs="+", type=int, default=[500, 500, 2000], help="hidden layer sizes")
    p.add_argument("--pretrain-epochs", type=int, default=50, help="CD-1 epochs per RBM (Hinton: 50)")
    p.add_argument("--pretrain-lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=60, help="maximum fine-tuning epochs of the selection run")
    p.add_argument("--dropout-epochs", type=int, default=None, help="maximum epochs of the dropout arm (2x)")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument(
        "--dropout-patience",
        type=int,
        default=25,
        help="patience of the dropout arm, whose validation error improves slowly (with 10 it stopped at epoch 48)",
    )
    p.add_argument("--lr", type=float, default=0.1, help="fine-tuning learning rate (sigmoid arms)")
    p.add_argument("--dropout-lr", type=float, default=0.1, help="learning rate of the dbn-dropout arm")
    p.add_argument(
        "--momentum-epochs",
        type=int,
        default=10,
        help="epochs over which the dropout arm's momentum rises from 0.5 to 0.95",
    )
    p.add_argument("--max-norm", type=float, default=3.0, help="max-norm of the dropout arm (Srivastava: 3-4)")
    p.add_argument("--relu-lr", type=float, default=0.05, help="fine-tuning learning rate of the ReLU arm")
    p.add_argument("--gentle-lr", type=float, default=0.02, help="learning rate of the dbn-gentle arm")
    p.add_argument("--gentle-l2", type=float, default=1e-5, help="L2 penalty of the dbn-gentle arm")
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="learning-rate schedule of every arm (cosine: annealed to 0 over the run's epochs)",
    )
    p.add_argument(
        "--head-epochs",
        type=int,
        default=0,
        help="pretrained arms: first train the output layer alone for N epochs, the hidden layers "
        "frozen (Hinton & Salakhutdinov's code: 6 of its 200 CG epochs), then fine-tune everything",
    )
    p.add_argument("--lbfgs-batch-size", type=int, default=1000, help="batch size of the dbn-lbfgs arm (H&S: 1000)")
    p.add_argument("--lbfgs-epochs", type=int, default=200, help="maximum epochs of the dbn-lbfgs arm (H&S: 200)")
    p.add_argument("--lbfgs-patience", type=int, default=30, help="patience of the dbn-lbfgs arm")
    p.add_argument(
        "--lbfgs-head-epochs", type=int, default=6, help="dbn-lbfgs: epochs of the output layer alone (H&S: 6)"
    )
    p.add_argument("--no-60k", dest="full", action="store_false", help="skip the 60k fine-tuning runs")
    p.add_argument("--stack", default=None, help="save the pretrained stack here, or load it if the file exists")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images only")
    p.add_argument(
        "--quick",
        "--smoke",
        dest="quick",
        action="store_true",
        help="tiny settings to check the pipeline in a minute or two",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.pretrain_epochs, args.epochs, args.train_size = [100, 100, 200], 1, 2, 3000
        args.momentum_epochs = 2
        args.lbfgs_epochs, args.lbfgs_head_epochs = 2, 1
    return args


class RisingMomentum:
    """Momentum rising linearly from ``start`` to ``end`` over ``n_epochs`` epochs, written into
    every SGD parameter group before each optimizer step (a torch optimizer step pre-hook) and
    advanced by an epoch callback."""

    def __init__(self, start: float, end: float, n_epochs: int) -> None:
        self.start, self.end, self.n_epochs, self.epoch = start, end, max(n_epochs, 1), 0

    @property
    def value(self) -> float:
        return self.start + (self.end - self.start) * min(self.epoch / self.n_epochs, 1.0)

    def pre_step(self, optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            if "momentum" in group:
                group["momentum"] = self.value

    def on_epoch(self, net, record) -> None:
        record["momentum"] = self.value
        self.epoch += 1

    def __enter__(self) -> RisingMomentum:
        self._handle = register_optimizer_step_pre_hook(self.pre_step)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def build(arm: str, stack, args: argparse.Namespace, g: torch.Generator) -> tuple[torch.nn.Module, dict]:
    """The arm's network and its fine-tuning settings."""
    settings = dict(
        lr=args.lr,
        dropout=0.0,
        input_dropout=0.0,
        l2=0.0,
        max_norm=None,
        rising_momentum=False,
        max_iter=args.epochs,
        patience=args.patience,
        optimizer="sgd",
        batch_size=args.batch_size,
    )
    if arm.startswith("dbn"):
        settings["head_epochs"] = args.head_epochs
    if arm == "dbn":
        net = to_torch(stack, head="softmax", n_outputs=10, generator=g)
    elif arm == "dbn-lbfgs":
        settings.update(
            lr=1.0,
            optimizer="lbfgs",
            batch_size=args.lbfgs_batch_size,
            head_epochs=args.lbfgs_head_epochs,
            max_iter=args.lbfgs_epochs,
            patience=args.lbfgs_patience,
        )
        net = to_torch(stack, head="softmax", n_outputs=10, generator=g)
    elif arm == "dbn-gentle":
        settings.update(lr=args.gentle_lr, l2=args.gentle_l2)
        net = to_torch(stack, head="softmax", n_outputs=10, generator=g)
    elif arm == "dbn-dropout":
        settings.update(
            lr=args.dropout_lr,
            dropout=0.5,
            input_dropout=0.2,
            max_norm=args.max_norm,
            rising_momentum=True,
            max_iter=args.dropout_epochs or 2 * args.epochs,
            patience=args.dropout_patience,
        )
        net = to_torch(stack, head="softmax", n_outputs=10, dropout=0.5, input_dropout=0.2, generator=g)
    elif arm == "sigmoid":
        net = build_mlp(784, args.sizes, 10, activation="sigmoid", init="xavier", generator=g)
    else:
        settings.update(lr=args.relu_lr)
        net = build_mlp(784, args.sizes, 10, activation="relu", init="he", generator=g)
    return net, settings


def finetune(net, X, y, settings: dict, args, g: torch.Generator, *, max_iter: int, validation=None):
    """Fine-tune ``net``; with ``validation`` early stopping on the validation error restores the
    best epoch's weights, without it exactly ``max_iter`` epochs run."""
    momentum = RisingMomentum(0.5, 0.95, args.momentum_epochs) if settings["rising_momentum"] else None
    early = (
        dict(
            early_stopping=True,
            validation_data=validation,
            n_iter_no_change=settings["patience"],
            monitor="valid_score",
        )
        if validation is not None
        else {}
    )
    head = settings.get("head_epochs", 0)
    if head:  # the output layer alone first, on the same settings, without early stopping
        with RisingMomentum(0.5, 0.5, 1) if momentum is not None else contextlib.nullcontext():
            fit_network(
                net,
                X,
                y,
                optimizer=settings["optimizer"],
                learning_rate=settings["lr"],
                momentum=0.9,
                weight_decay=settings["l2"],
                batch_size=settings["batch_size"],
                max_norm=settings["max_norm"],
                max_iter=head,
                freeze=range(len(hidden_linear_layers(net))),
                generator=g,
                verbose=True,
            )
    with momentum if momentum is not None else contextlib.nullcontext():
        return fit_network(
            net,
            X,
            y,
            optimizer=settings["optimizer"],
            learning_rate=settings["lr"],
            momentum=0.9,
            weight_decay=settings["l2"],
            batch_size=settings["batch_size"],
            lr_schedule=None if args.schedule == "constant" else "cosine",
            max_norm=settings["max_norm"],
            max_iter=max_iter,
            generator=g,
            verbose=True,
            callbacks=() if momentum is None else (momentum.on_epoch,),
            **early,
        )


def pretrain(args, X, results: dict):
    """Load or pretrain the stack; returns ``(stack, seconds)``."""
    if args.stack and os.path.exists(args.stack):
        from dbn.io import load

        stack = load(args.stack)
        seconds = sum(r["time"] for h in stack.histories for r in h)
        print(f"loaded the pretrained stack {stack.sizes} from {args.stack} (pretraining took {seconds:.0f} s)")
        results["pretraining"] = {"seconds": seconds, "loaded_from": args.stack, "histories": stack.histories}
        return stack, seconds
    t0 = time.perf_counter()
    stack = pretrain_stack(
        X,
        args.sizes,
        pretrain="rbm",
        n_epochs=args.pretrain_epochs,
        learning_rate=args.pretrain_lr,
        batch_size=args.batch_size,
        momentum="hinton",
        weight_decay=2e-4,
        generator=torch.Generator().manual_seed(args.seed),
        verbose=True,
    )
    seconds = time.perf_counter() - t0
    per_layer = [sum(r["time"] for r in h) for h in stack.histories]
    print(
        f"pretraining {len(args.sizes)} RBMs x {args.pretrain_epochs} epochs: {seconds:.0f} s "
        f"(per layer {', '.join(f'{t:.0f}' for t in per_layer)} s); final reconstruction errors "
        + ", ".join(f"{h[-1]['reconstruction_error']:.2f}" for h in stack.histories if h)
    )
    results["pretraining"] = {"seconds": seconds, "seconds_per_layer": per_layer, "histories": stack.histories}
    if args.stack:
        from dbn.io import save

        save(stack, args.stack)
    return stack, seconds


def run_arm(arm, stack, data: dict, args, pretrain_seconds: float) -> dict:
    """Selection on the validation set, then (unless ``--no-60k``) the 60k run of the selected length."""
    X, y, Xva, yva, Xte, yte = (data[k] for k in ("X", "y", "Xva", "yva", "Xte", "yte"))
    net, settings = build(arm, stack, args, torch.Generator().manual_seed(args.seed + 1))
    t0 = time.perf_counter()
    history = finetune(
        net,
        X,
        y,
        settings,
        args,
        torch.Generator().manual_seed(args.seed + 1),
        max_iter=settings["max_iter"],
        validation=(Xva, yva),
    )
    select_seconds = time.perf_counter() - t0
    best = history[history.best_epoch - 1]
    row = {
        "selected_epochs": history.best_epoch,
        "epochs_run": len(history),
        "test_error_percent": 100 * (1 - evaluate(net, Xte, yte)[1]),
        "valid_error_percent": 100 * (1 - best["valid_score"]),
        "train_error_percent": 100 * (1 - evaluate(net, X, y)[1]),
        "finetune_seconds": select_seconds,
        "seconds_per_epoch": select_seconds / len(history),
        "pretrain_seconds": pretrain_seconds if arm.startswith("dbn") else 0.0,
        "settings": settings,
        "schedule": args.schedule,
        "history": list(history),
    }
    print(
        f"{arm:12s} validation-selected: test error {row['test_error_percent']:.2f}%  valid "
        f"{row['valid_error_percent']:.2f}%  best epoch {history.best_epoch}/{len(history)}  "
        f"({select_seconds:.0f} s, {row['seconds_per_epoch']:.1f} s/epoch)",
        flush=True,
    )
    if args.full:
        net, settings = build(arm, stack, args, torch.Generator().manual_seed(args.seed + 1))
        X60, y60 = torch.cat([X, Xva]), torch.cat([y, yva])
        t0 = time.perf_counter()
        finetune(
            net, X60, y60, settings, args, torch.Generator().manual_seed(args.seed + 1), max_iter=history.best_epoch
        )
        row["full_seconds"] = time.perf_counter() - t0
        row["full_test_error_percent"] = 100 * (1 - evaluate(net, Xte, yte)[1])
        row["full_train_size"] = X60.shape[0]
        print(
            f"{arm:12s} {X60.shape[0]} images x {history.best_epoch} epochs: test error "
            f"{row['full_test_error_percent']:.2f}% ({row['full_seconds']:.0f} s)",
            flush=True,
        )
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    split = load_mnist(args.data)
    load_time = time.perf_counter() - t0
    n = args.train_size or len(split.X_train)
    nv = args.train_size or len(split.X_valid)
    data = {
        "X": torch.from_numpy(split.X_train[:n]),
        "y": torch.from_numpy(split.y_train[:n]),
        "Xva": torch.from_numpy(split.X_valid[:nv]),
        "yva": torch.from_numpy(split.y_valid[:nv]),
        "Xte": torch.from_numpy(split.X_test),
        "yte": torch.from_numpy(split.y_test),
    }
    print(
        f"MNIST: train {tuple(data['X'].shape)}, valid {tuple(data['Xva'].shape)}, test {tuple(data['Xte'].shape)} "
        f"(loaded in {load_time:.1f} s); torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    results = {
        "settings": vars(args),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "dbn": dbn.__version__,
        "threads": torch.get_num_threads(),
        "arms": {},
    }
    stack, pretrain_seconds = None, 0.0
    if any(a.startswith("dbn") for a in args.arms):
        stack, pretrain_seconds = pretrain(args, data["X"], results)
    for arm in args.arms:
        results["arms"][arm] = run_arm(arm, stack, data, args, pretrain_seconds)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1, default=str)
    total = pretrain_seconds + sum(r["finetune_seconds"] + r.get("full_seconds", 0.0) for r in results["arms"].values())
    print("arm           selected epochs  valid-selected test  60k test")
    for arm, r in results["arms"].items():
        full = f"{r['full_test_error_percent']:.2f}%" if "full_test_error_percent" in r else "-"
        print(f"{arm:12s}  {r['selected_epochs']:>15d}  {r['test_error_percent']:>18.2f}%  {full}")
    print(f"total {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
