"""The classic 784-500-500-2000-10 network on MNIST: DBN pretraining + fine-tuning against the
same network randomly initialised (sigmoid and ReLU).

Protocol (after Hinton & Salakhutdinov 2006 and their released code, with SGD in place of
conjugate gradients):

* data: the classic 50,000 / 10,000 / 10,000 split of ``mnist.pkl.gz`` (pixels in [0, 1));
* pretraining: three RBMs 784-500, 500-500, 500-2000, CD-1, ``--pretrain-epochs`` each, batch
  100, learning rate 0.1, momentum 0.5 then 0.9 after epoch 5, weight cost 2e-4, hidden
  probabilities feed the next layer;
* fine-tuning (every arm alike): SGD with momentum 0.9, batch 100, ``--epochs`` epochs at most,
  early stopping on the validation set (patience ``--patience``), the best validation epoch's
  weights restored, then the test error measured once;
* arms: ``dbn`` (pretrained, sigmoid), ``dbn-gentle`` (the same stack fine-tuned with a smaller
  learning rate, ``--gentle-lr``, and a small L2 penalty, ``--gentle-l2``), ``dbn-dropout`` (the
  same stack fine-tuned with dropout 0.5 on hidden and 0.2 on input units), ``sigmoid`` (random
  init, Glorot uniform), ``relu`` (random init, He normal).

``--stack PATH`` saves the pretrained stack there (or loads it, when the file exists), so that
further fine-tuning arms can reuse one pretraining.

It prints test error, epochs and wall time per phase, and writes everything to ``--out``
(JSON). Example::

    python scripts/mnist_dbn.py --out results/mnist_dbn.json
    python scripts/mnist_dbn.py --smoke          # a two-minute check of the whole pipeline
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

import dbn  # noqa: E402
from dbn.datasets import load_mnist  # noqa: E402
from dbn.export import to_torch  # noqa: E402
from dbn.stack import pretrain_stack  # noqa: E402
from dbn.training import build_mlp, evaluate, fit_network  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist.pkl.gz")
ARMS = ("dbn", "dbn-gentle", "dbn-dropout", "sigmoid", "relu")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="mnist.pkl.gz or a directory of IDX files")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--sizes", nargs="+", type=int, default=[500, 500, 2000], help="hidden layer sizes")
    p.add_argument("--pretrain-epochs", type=int, default=20, help="CD-1 epochs per RBM (Hinton: 50)")
    p.add_argument("--pretrain-lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=60, help="maximum fine-tuning epochs")
    p.add_argument("--dropout-epochs", type=int, default=None, help="maximum epochs of the dropout arm")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.1, help="fine-tuning learning rate (sigmoid arms)")
    p.add_argument("--relu-lr", type=float, default=0.05, help="fine-tuning learning rate of the ReLU arm")
    p.add_argument("--gentle-lr", type=float, default=0.02, help="learning rate of the dbn-gentle arm")
    p.add_argument("--gentle-l2", type=float, default=1e-5, help="L2 penalty of the dbn-gentle arm")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning-rate schedule of every arm (cosine: annealed to 0 over the maximum epochs)")
    p.add_argument("--stack", default=None, help="save the pretrained stack here, or load it if the file exists")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images only")
    p.add_argument("--smoke", action="store_true", help="tiny settings to check the pipeline")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.pretrain_epochs, args.epochs, args.train_size = [100, 100, 200], 1, 2, 5000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    split = load_mnist(args.data)
    load_time = time.perf_counter() - t0
    n = args.train_size or len(split.X_train)
    X = torch.from_numpy(split.X_train[:n])
    y = torch.from_numpy(split.y_train[:n])
    Xva, yva = torch.from_numpy(split.X_valid), torch.from_numpy(split.y_valid)
    Xte, yte = torch.from_numpy(split.X_test), torch.from_numpy(split.y_test)
    print(f"MNIST: train {tuple(X.shape)}, valid {tuple(Xva.shape)}, test {tuple(Xte.shape)} "
          f"(loaded in {load_time:.1f} s); torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {"settings": vars(args), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "dbn": dbn.__version__, "threads": torch.get_num_threads(), "arms": {}}

    stack = None
    pretrain_time = 0.0
    if any(a.startswith("dbn") for a in args.arms) and args.stack and os.path.exists(args.stack):
        from dbn.io import load

        stack = load(args.stack)
        pretrain_time = sum(r["time"] for h in stack.histories for r in h)
        print(f"loaded the pretrained stack {stack.sizes} from {args.stack} (pretraining took {pretrain_time:.0f} s)")
        results["pretraining"] = {"seconds": pretrain_time, "loaded_from": args.stack, "histories": stack.histories}
    elif any(a.startswith("dbn") for a in args.arms):
        t0 = time.perf_counter()
        stack = pretrain_stack(
            X, args.sizes, pretrain="rbm", n_epochs=args.pretrain_epochs, learning_rate=args.pretrain_lr,
            batch_size=args.batch_size, momentum="hinton", weight_decay=2e-4,
            generator=torch.Generator().manual_seed(args.seed), verbose=True,
        )
        pretrain_time = time.perf_counter() - t0
        per_layer = [sum(r["time"] for r in h) for h in stack.histories]
        print(f"pretraining {len(args.sizes)} RBMs x {args.pretrain_epochs} epochs: {pretrain_time:.0f} s "
              f"(per layer {', '.join(f'{t:.0f}' for t in per_layer)} s); final reconstruction errors "
              + ", ".join(f"{h[-1]['reconstruction_error']:.2f}" for h in stack.histories if h))
        results["pretraining"] = {"seconds": pretrain_time, "seconds_per_layer": per_layer,
                                  "histories": stack.histories}
        if args.stack:
            from dbn.io import save

            save(stack, args.stack)

    for arm in args.arms:
        g = torch.Generator().manual_seed(args.seed + 1)
        lr, dropout, input_dropout, max_iter, l2 = args.lr, 0.0, 0.0, args.epochs, 0.0
        if arm == "dbn":
            net = to_torch(stack, head="softmax", n_outputs=10, generator=g)
        elif arm == "dbn-gentle":
            lr, l2 = args.gentle_lr, args.gentle_l2
            net = to_torch(stack, head="softmax", n_outputs=10, generator=g)
        elif arm == "dbn-dropout":
            dropout, input_dropout = 0.5, 0.2
            max_iter = args.dropout_epochs or 2 * args.epochs
            net = to_torch(stack, head="softmax", n_outputs=10, dropout=dropout, input_dropout=input_dropout,
                           generator=g)
        elif arm == "sigmoid":
            net = build_mlp(784, args.sizes, 10, activation="sigmoid", init="xavier", generator=g)
        else:
            lr = args.relu_lr
            net = build_mlp(784, args.sizes, 10, activation="relu", init="he", generator=g)
        t0 = time.perf_counter()
        history = fit_network(
            net, X, y, optimizer="sgd", learning_rate=lr, momentum=0.9, weight_decay=l2, batch_size=args.batch_size,
            lr_schedule=None if args.schedule == "constant" else "cosine",
            max_iter=max_iter, early_stopping=True, validation_data=(Xva, yva), n_iter_no_change=args.patience,
            monitor="valid_score", generator=g, verbose=True,
        )
        finetune_time = time.perf_counter() - t0
        _, test_acc = evaluate(net, Xte, yte)
        _, train_acc = evaluate(net, X, y)
        best = history[history.best_epoch - 1]
        row = {
            "test_error_percent": 100 * (1 - test_acc),
            "valid_error_percent": 100 * (1 - best["valid_score"]),
            "train_error_percent": 100 * (1 - train_acc),
            "best_epoch": history.best_epoch,
            "epochs_run": len(history),
            "finetune_seconds": finetune_time,
            "seconds_per_epoch": finetune_time / len(history),
            "pretrain_seconds": pretrain_time if arm.startswith("dbn") else 0.0,
            "learning_rate": lr, "schedule": args.schedule, "weight_decay": l2, "dropout": dropout, "input_dropout": input_dropout,
            "history": list(history),
        }
        results["arms"][arm] = row
        print(f"{arm}: {row['test_error_percent']:.2f}% test error", flush=True)
        print(f"{arm:12s} test error {row['test_error_percent']:.2f}%  valid {row['valid_error_percent']:.2f}%  "
              f"train {row['train_error_percent']:.2f}%  best epoch {history.best_epoch}/{len(history)}  "
              f"fine-tuning {finetune_time:.0f} s ({row['seconds_per_epoch']:.1f} s/epoch)")
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    total = sum(r["finetune_seconds"] for r in results["arms"].values()) + pretrain_time
    print(f"total {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
