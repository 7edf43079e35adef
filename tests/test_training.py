"""Tests of dbn.training: network building, the fine-tuning loop and inference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dbn._validation import DivergenceError
from dbn.training import (
    History,
    Maxout,
    build_mlp,
    evaluate,
    fit_network,
    hidden_linear_layers,
    linear_layers,
    predict_logits,
)

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "maxout")
INITS = ("normal", "xavier", "he")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "lbfgs")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(n: int = 300, n_features: int = 5, n_classes: int = 3, seed: int = 0, noise: float = 0.5):
    """Gaussian blobs around random centres: an easy classification problem."""
    g = gen(seed)
    centres = 3 * torch.randn(n_classes, n_features, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    X = centres[y] + noise * torch.randn(n, n_features, generator=g)
    return X, y


def flat_params(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("init", INITS)
def test_build_mlp_shapes(activation, init):
    net = build_mlp(7, (6, 5), 3, activation=activation, init=init, generator=gen())
    assert isinstance(net, nn.Sequential)
    assert net(torch.randn(4, 7)).shape == (4, 3)
    hidden = hidden_linear_layers(net)
    pieces = 2 if activation == "maxout" else 1
    assert [tuple(layer.weight.shape) for layer in hidden] == [(6 * pieces, 7), (5 * pieces, 6)]
    assert linear_layers(net)[-1] is net[-1]
    assert tuple(net[-1].weight.shape) == (3, 5)
    for layer in linear_layers(net):
        assert torch.all(layer.bias == 0)
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_build_mlp_layer_order_with_extras():
    net = build_mlp(4, (3, 2), 2, activation="relu", dropout=(0.5, 0.25), input_dropout=0.2, batch_norm=True)
    types = [type(m) for m in net]
    assert types == [
        nn.Dropout,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    assert [net[0].p, net[4].p, net[8].p] == [0.2, 0.5, 0.25]
    maxout = build_mlp(4, (3,), None, activation="maxout", maxout_pieces=3)
    assert [type(m) for m in maxout] == [Maxout]
    # No output layer: every linear layer is hidden.
    assert hidden_linear_layers(maxout) == [maxout[0].linear]


def test_build_mlp_without_hidden_layers_is_linear_model():
    net = build_mlp(4, (), 3)
    assert [type(m) for m in net] == [nn.Linear]
    assert hidden_linear_layers(net) == []


def test_init_statistics():
    fan_in, fan_out = 400, 300
    normal = build_mlp(fan_in, (fan_out,), init="normal", generator=gen())[0].weight
    assert abs(normal.std().item() - 0.01) < 0.0005
    assert abs(normal.mean().item()) < 0.0005

    he = build_mlp(fan_in, (fan_out,), activation="relu", init="he", generator=gen())[0].weight
    assert abs(he.std().item() - math.sqrt(2 / fan_in)) < 0.03 * math.sqrt(2 / fan_in)

    for activation, gain in (("sigmoid", 1.0), ("tanh", 5 / 3)):
        w = build_mlp(fan_in, (fan_out,), activation=activation, init="xavier", generator=gen())[0].weight
        bound = gain * math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.99 * bound
        assert abs(w.std().item() - bound / math.sqrt(3)) < 0.03 * bound

    # The output layer of "he" uses the gain of a linear layer: std = sqrt(1 / fan_in).
    out = build_mlp(fan_in, (), fan_out, activation="relu", init="he", generator=gen())[-1].weight
    assert abs(out.std().item() - math.sqrt(1 / fan_in)) < 0.03 * math.sqrt(1 / fan_in)


def test_init_uses_generator():
    a = build_mlp(5, (4, 3), 2, init="xavier", generator=gen(1))
    b = build_mlp(5, (4, 3), 2, init="xavier", generator=gen(1))
    c = build_mlp(5, (4, 3), 2, init="xavier", generator=gen(2))
    assert torch.equal(flat_params(a), flat_params(b))
    assert not torch.equal(flat_params(a), flat_params(c))


def test_maxout_is_max_over_pieces():
    m = Maxout(4, 3, pieces=5)
    x = torch.randn(6, 4, generator=gen())
    z = x @ m.linear.weight.T + m.linear.bias  # (6, 15)
    expected = torch.stack([z[:, j * 5 : (j + 1) * 5].max(dim=1).values for j in range(3)], dim=1)
    torch.testing.assert_close(m(x), expected)
    single = Maxout(4, 3, pieces=1)
    torch.testing.assert_close(single(x), single.linear(x))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"activation": "softplus"}, "activation"),
        ({"init": "uniform"}, "init"),
        ({"dropout": 1.5}, "dropout"),
        ({"dropout": (0.1, 0.2, 0.3)}, "dropout"),
        ({"input_dropout": -0.1}, "input_dropout"),
        ({"maxout_pieces": 0}, "maxout_pieces"),
        ({"hidden_layer_sizes": (3, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": "10"}, "hidden_layer_sizes"),
        ({"n_outputs": 0}, "n_outputs"),
    ],
)
def test_build_mlp_bad_arguments(kwargs, name):
    args = {"hidden_layer_sizes": (3, 2), "n_outputs": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        build_mlp(4, **args)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_decreases_loss(optimizer):
    X, y = blobs()
    net = build_mlp(5, (16,), 3, activation="tanh", init="xavier", generator=gen())
    lr = {"sgd": 0.05, "adam": 0.01, "rmsprop": 0.01, "adagrad": 0.05, "adadelta": 1.0, "lbfgs": 1.0}[optimizer]
    history = fit_network(
        net,
        X,
        y,
        optimizer=optimizer,
        learning_rate=lr,
        max_iter=15,
        batch_size=32,
        generator=gen(),
    )
    losses = history.column("train_loss")
    assert len(history) == 15
    assert losses[-1] < 0.5 * losses[0]
    assert history[-1]["train_score"] > 0.9
    assert history.score_name == "accuracy"


def test_lbfgs_line_searches_one_batch_and_reports_the_loss_before_the_step():
    X, y = blobs(n=64)
    net = build_mlp(5, (8,), 3, activation="tanh", init="xavier", generator=gen())
    with torch.no_grad():
        before = nn.functional.cross_entropy(net(X), y).item()
    history = fit_network(net, X, y, optimizer="lbfgs", learning_rate=1.0, max_iter=1, batch_size=64, generator=gen())
    with torch.no_grad():
        after = nn.functional.cross_entropy(net(X), y).item()
    assert history[0]["train_loss"] == pytest.approx(before, rel=1e-5)  # the first evaluation's loss
    assert after < 0.7 * before  # three line-searched iterations on the one batch


def test_lbfgs_is_reproducible_and_its_penalties_shrink_the_weights():
    X, y = blobs()

    def fit(**kw):
        net = build_mlp(5, (16,), 3, activation="sigmoid", init="xavier", generator=gen())
        fit_network(net, X, y, optimizer="lbfgs", learning_rate=1.0, max_iter=4, batch_size=100, generator=gen(), **kw)
        return flat_params(net)

    plain = fit()
    assert torch.equal(plain, fit())
    assert fit(weight_decay=0.1).norm() < 0.8 * plain.norm()  # the L2 term is in the line search's loss
    assert fit(l1=0.01).abs().sum() < 0.8 * plain.abs().sum()


def test_lbfgs_penalty_enters_the_objective_and_its_gradient():
    from dbn.training import _loss_and_gradient, _penalty, _StepConfig

    X, y = blobs(n=20)
    net = build_mlp(5, (4,), 3, activation="tanh", init="xavier", generator=gen())
    weights = [m.weight for m in linear_layers(net)]
    cfg = _StepConfig(
        "cross_entropy", list(net.parameters()), 0.01, weights, None, None, [], closure=True, weight_decay=0.3
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss, _ = _loss_and_gradient(net, opt, X, y, cfg, None)
    grads = [w.grad.clone() for w in weights]
    objective = nn.functional.cross_entropy(net(X), y) + sum(
        0.15 * w.pow(2).sum() + 0.01 * w.abs().sum() for w in weights
    )
    expected = torch.autograd.grad(objective, weights)
    assert (loss + _penalty(cfg)).item() == pytest.approx(objective.item(), rel=1e-6)
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_lbfgs_refuses_what_it_cannot_do():
    from dbn._shard import Shard
    from dbn.autoencoder import DenoisingAutoencoder, train_autoencoder
    from dbn.optim import make_optimizer

    with pytest.raises(ValueError, match="weight_decay=0"):
        make_optimizer("lbfgs", nn.Linear(2, 1).parameters(), learning_rate=1.0, weight_decay=0.1)
    with pytest.raises(ValueError, match="lbfgs"):
        train_autoencoder(DenoisingAutoencoder(4, 2, generator=gen()), torch.rand(10, 4), optimizer="lbfgs")
    X, y = blobs(n=20)
    net = build_mlp(5, (4,), 3, generator=gen())
    with pytest.raises(ValueError, match="shard"):
        fit_network(net, X, y, optimizer="lbfgs", shard=Shard(0, 20, 1, lambda t: None), validation_data=(X, y))


def test_sgd_nesterov_and_no_shuffle_train():
    X, y = blobs()
    net = build_mlp(5, (16,), 3, activation="relu", init="he", generator=gen())
    h = fit_network(net, X, y, learning_rate=0.05, nesterov=True, shuffle=False, max_iter=10, generator=gen())
    assert h[-1]["train_loss"] < h[0]["train_loss"]


def test_digits_end_to_end():
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    X = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y), generator=gen())
    train, test = perm[:1400], perm[1400:]
    net = build_mlp(64, (100,), 10, activation="relu", init="he", generator=gen())
    history = fit_network(
        net,
        X[train],
        y[train],
        optimizer="adam",
        learning_rate=1e-3,
        max_iter=30,
        batch_size=50,
        validation_data=(X[test], y[test]),
        generator=gen(),
    )
    loss, accuracy = evaluate(net, X[test], y[test])
    assert accuracy > 0.93
    assert loss == pytest.approx(history[-1]["valid_loss"])
    assert accuracy == pytest.approx(history[-1]["valid_score"])
    predicted = predict_logits(net, X[test], batch_size=97).argmax(dim=1)
    assert (predicted == y[test]).float().mean().item() == pytest.approx(accuracy)


def _noisy_problem(seed=0):
    """Few samples, many features, labels half noise: validation loss rises as it overfits."""
    g = gen(seed)
    X = torch.randn(120, 30, generator=g)
    y = ((X[:, 0] + 1.5 * torch.randn(120, generator=g)) > 0).long()
    return X[:60], y[:60], X[60:], y[60:]


def test_early_stopping_stops_and_restores_best_weights():
    X, y, X_val, y_val = _noisy_problem()
    net = build_mlp(30, (200,), 2, activation="relu", init="he", generator=gen())
    history = fit_network(
        net,
        X,
        y,
        optimizer="adam",
        learning_rate=0.01,
        max_iter=200,
        batch_size=20,
        early_stopping=True,
        validation_data=(X_val, y_val),
        n_iter_no_change=5,
        generator=gen(),
    )
    assert history.stopped_early
    assert len(history) < 200
    losses = history.column("valid_loss")
    best = history.best_epoch
    assert best is not None and best < len(history)
    assert losses[best - 1] == min(losses)
    assert len(history) - best >= 5  # patience ran out after the best epoch
    loss, score = evaluate(net, X_val, y_val)
    assert loss == pytest.approx(losses[best - 1], rel=1e-6)
    assert score == pytest.approx(history[best - 1]["valid_score"])
    assert loss < losses[-1]


def test_without_early_stopping_last_weights_are_kept():
    X, y, X_val, y_val = _noisy_problem()
    net = build_mlp(30, (200,), 2, activation="relu", init="he", generator=gen())
    history = fit_network(
        net,
        X,
        y,
        optimizer="adam",
        learning_rate=0.01,
        max_iter=25,
        batch_size=20,
        validation_data=(X_val, y_val),
        generator=gen(),
    )
    assert len(history) == 25 and not history.stopped_early
    assert history.monitor == "valid_loss"
    assert evaluate(net, X_val, y_val)[0] == pytest.approx(history[-1]["valid_loss"], rel=1e-6)


def test_early_stopping_with_validation_fraction():
    X, y = blobs(200)
    net = build_mlp(5, (8,), 3, generator=gen())
    history = fit_network(
        net,
        X,
        y,
        learning_rate=0.1,
        max_iter=200,
        early_stopping=True,
        validation_fraction=0.25,
        monitor="valid_score",
        n_iter_no_change=3,
        generator=gen(),
    )
    assert history[0]["valid_score"] is not None
    assert history.monitor == "valid_score"
    assert len(history) < 200
    scores = history.column("valid_score")
    assert scores[history.best_epoch - 1] == max(scores)


def test_dropout_only_in_training_mode():
    X, _ = blobs(50)
    net = build_mlp(5, (64,), 3, dropout=0.5, input_dropout=0.2, generator=gen())
    net.train()
    a = predict_logits(net, X)
    b = predict_logits(net, X)
    torch.testing.assert_close(a, b)
    assert net.training  # mode restored
    with torch.no_grad():
        c = net(X)
    assert not torch.allclose(a, c)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(X), a)
    evaluate(net, X, torch.zeros(50, dtype=torch.long))
    assert not net.training


def _weight_norms(net, p):
    return sum(layer.weight.detach().norm(p=p).item() for layer in linear_layers(net))


@pytest.mark.parametrize("penalty, p", [("weight_decay", 2), ("l1", 1)])
def test_penalties_shrink_weights(penalty, p):
    X, y = blobs()
    nets = [build_mlp(5, (32,), 3, generator=gen()) for _ in range(2)]
    biases_before = nets[1][0].bias.detach().clone()
    fit_network(nets[0], X, y, learning_rate=0.1, max_iter=10, generator=gen())
    fit_network(nets[1], X, y, learning_rate=0.1, max_iter=10, generator=gen(), **{penalty: 0.05})
    assert _weight_norms(nets[1], p) < 0.8 * _weight_norms(nets[0], p)
    assert not torch.equal(nets[1][0].bias, biases_before)  # biases still train


def test_clip_grad_norm_bounds_every_step():
    X, y = blobs()
    net = build_mlp(5, (32,), 3, generator=gen())
    norms = []

    def record_norm(net, record):
        norms.append(torch.cat([p.grad.flatten() for p in net.parameters()]).norm().item())
        assert set(record) == {"epoch", "batch", "batch_size", "loss"}

    fit_network(
        net,
        X,
        y,
        learning_rate=1.0,
        max_iter=3,
        batch_size=30,
        clip_grad_norm=0.05,
        batch_callbacks=(record_norm,),
        generator=gen(),
    )
    assert len(norms) == 3 * 10
    assert max(norms) <= 0.05 * (1 + 1e-4)
    # Without clipping the same problem has larger gradients.
    norms.clear()
    fit_network(
        build_mlp(5, (32,), 3, generator=gen()),
        X,
        y,
        learning_rate=1.0,
        max_iter=1,
        batch_size=30,
        batch_callbacks=(record_norm,),
        generator=gen(),
    )
    assert max(norms) > 0.05


def test_max_norm_constraint_holds():
    X, y = blobs()
    net = build_mlp(5, (32, 16), 3, activation="relu", init="he", generator=gen())
    fit_network(net, X, y, optimizer="sgd", learning_rate=0.5, max_iter=5, max_norm=0.3, generator=gen())
    for layer in hidden_linear_layers(net):
        assert layer.weight.norm(dim=1).max().item() <= 0.3 + 1e-5
    assert net[-1].weight.norm(dim=1).max().item() > 0.3  # the output layer is free


def test_freeze_keeps_layers_unchanged():
    X, y = blobs()
    net = build_mlp(5, (8, 8), 3, batch_norm=True, generator=gen())
    before = [p.detach().clone() for p in net.parameters()]
    fit_network(net, X, y, learning_rate=0.1, max_iter=3, freeze=(0, 1), generator=gen())
    after = list(net.parameters())
    # Parameters in order: linear0 (w, b), bn0 (w, b), linear1 (w, b), bn1 (w, b), out (w, b).
    for i in range(8):
        assert torch.equal(before[i], after[i])
    assert not torch.equal(before[8], after[8]) and not torch.equal(before[9], after[9])
    assert all(p.requires_grad for p in net.parameters())
    # Negative indices: -1 is the output layer.
    fit_network(net, X, y, learning_rate=0.1, max_iter=1, freeze=(-1,), generator=gen())
    assert torch.equal(after[8].detach(), net[-1].weight.detach())
    assert not torch.equal(before[0], net[0].weight.detach())


def test_same_generator_gives_identical_training():
    X, y = blobs()

    def run(seed):
        net = build_mlp(5, (16, 16), 3, dropout=0.3, input_dropout=0.1, generator=gen(0))
        history = fit_network(net, X, y, learning_rate=0.1, max_iter=3, early_stopping=True, generator=gen(seed))
        return flat_params(net), history.column("train_loss")

    state = torch.get_rng_state()
    w1, l1 = run(1)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    w2, l2 = run(1)
    w3, _ = run(2)
    assert torch.equal(w1, w2) and l1 == l2
    assert not torch.equal(w1, w3)


def test_divergence_raises():
    X, y = blobs()
    net = build_mlp(5, (16,), 3, activation="relu", init="he", generator=gen())
    with pytest.raises(DivergenceError, match="learning rate"):
        fit_network(net, 1e3 * X, y, learning_rate=1e6, max_iter=5, generator=gen())


def test_mse_regression():
    g = gen()
    X = torch.randn(400, 4, generator=g)
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 1.0], [2.0, 0.3]])
    Y = torch.tanh(X @ w) + 0.05 * torch.randn(400, 2, generator=g)
    net = build_mlp(4, (32,), 2, activation="tanh", init="xavier", generator=gen())
    history = fit_network(
        net,
        X,
        Y,
        loss="mse",
        optimizer="adam",
        learning_rate=0.01,
        max_iter=40,
        batch_size=40,
        validation_data=(X[:100], Y[:100]),
        generator=gen(),
    )
    assert history.score_name == "r2"
    assert history[-1]["train_loss"] < 0.1 * history[0]["train_loss"]
    assert history[-1]["valid_score"] > 0.95
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    pred = predict_logits(net, X[:100]).numpy()
    assert history[-1]["valid_score"] == pytest.approx(sklearn_metrics.r2_score(Y[:100].numpy(), pred), abs=1e-5)
    assert history[-1]["valid_loss"] == pytest.approx(
        sklearn_metrics.mean_squared_error(Y[:100].numpy(), pred), rel=1e-4
    )

    # A 1-D target with a single-output network.
    net1 = build_mlp(4, (16,), 1, activation="tanh", init="xavier", generator=gen())
    h1 = fit_network(
        net1,
        X,
        Y[:, 0],
        loss="mse",
        optimizer="adam",
        learning_rate=0.01,
        max_iter=20,
        batch_size=40,
        generator=gen(),
    )
    assert h1[-1]["train_score"] > 0.8


@pytest.mark.parametrize(
    "schedule, kwargs, expected",
    [
        ("step", {"lr_step_size": 2, "lr_gamma": 0.5}, [0.4, 0.4, 0.2, 0.2, 0.1]),
        ("exponential", {"lr_gamma": 0.5}, [0.4, 0.2, 0.1, 0.05, 0.025]),
        ("constant", {}, [0.4] * 5),
        (None, {}, [0.4] * 5),
    ],
)
def test_lr_schedules(schedule, kwargs, expected):
    X, y = blobs(60)
    net = build_mlp(5, (4,), 3, generator=gen())
    h = fit_network(net, X, y, learning_rate=0.4, max_iter=5, lr_schedule=schedule, generator=gen(), **kwargs)
    assert h.column("learning_rate") == pytest.approx(expected)


def test_cosine_schedule_anneals_to_lr_min():
    X, y = blobs(60)
    net = build_mlp(5, (4,), 3, generator=gen())
    h = fit_network(net, X, y, learning_rate=0.4, max_iter=4, lr_schedule="cosine", lr_min=0.0, generator=gen())
    lrs = h.column("learning_rate")
    assert lrs[0] == pytest.approx(0.4) and lrs == sorted(lrs, reverse=True)
    assert lrs[2] == pytest.approx(0.2)


def test_callbacks_add_keys_and_stop():
    X, y = blobs(60)
    net = build_mlp(5, (4,), 3, generator=gen())
    seen = []

    def log(net, record):
        record["weight_norm"] = net[0].weight.norm().item()
        seen.append(record["epoch"])

    def stop_at_3(net, record):
        return record["epoch"] == 3

    history = fit_network(net, X, y, max_iter=10, callbacks=(log, stop_at_3), generator=gen())
    assert seen == [1, 2, 3] and len(history) == 3 and history.stopped_early
    assert history.column("weight_norm")[-1] == pytest.approx(net[0].weight.norm().item())
    assert set(history[0]) >= {
        "epoch",
        "train_loss",
        "train_score",
        "valid_loss",
        "valid_score",
        "learning_rate",
        "time",
    }
    assert history[0]["valid_loss"] is None and history[0]["time"] > 0
    assert isinstance(history, History) and isinstance(history, list)
    assert history.best_epoch == 1 + history.column("train_loss").index(min(history.column("train_loss")))


def test_verbose_progress_bar(capsys):
    X, y = blobs(60)
    fit_network(build_mlp(5, (4,), 3, generator=gen()), X, y, max_iter=2, verbose=True, generator=gen())
    assert "epoch" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"loss": "hinge"}, "loss"),
        ({"optimizer": "newton"}, "optimizer"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"l1": -0.1}, "l1"),
        ({"max_iter": 0}, "max_iter"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"lr_gamma": 2.0}, "lr_gamma"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm"),
        ({"max_norm": -1.0}, "max_norm"),
        ({"freeze": (5,)}, "freeze"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_data": (torch.zeros(3, 5),)}, "validation_data"),
        ({"monitor": "accuracy"}, "monitor"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"tol": -1.0}, "tol"),
        ({"callbacks": (1,)}, "callbacks"),
        ({"batch_callbacks": "x"}, "batch_callbacks"),
        ({"generator": 0}, "generator"),
        ({"freeze": (0, 1)}, "frozen"),
    ],
)
def test_fit_network_bad_arguments(kwargs, name):
    X, y = blobs(30)
    net = build_mlp(5, (4,), 3, generator=gen())
    args = {"max_iter": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        fit_network(net, X, y, **args)


def test_fit_network_bad_data():
    X, y = blobs(30)
    net = build_mlp(5, (4,), 3, generator=gen())
    with pytest.raises(ValueError, match="logits"):
        fit_network(net, X, y + 5, max_iter=1)
    with pytest.raises(ValueError, match="class indices"):
        fit_network(net, X, y.float(), max_iter=1)
    with pytest.raises(ValueError, match="samples"):
        fit_network(net, X, y[:10], max_iter=1)
    with pytest.raises(ValueError, match="dtype"):
        fit_network(net, X.double(), y, max_iter=1)
    with pytest.raises(ValueError, match="features"):
        fit_network(net, X, y, validation_data=(X[:, :4], y), max_iter=1)
    with pytest.raises(ValueError, match="NaN"):
        fit_network(net, torch.full((30, 5), float("nan")), y, max_iter=1)
    with pytest.raises(ValueError, match="per sample"):
        fit_network(net, X, torch.zeros(30), loss="mse", max_iter=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_is_reproducible():
    X, y = blobs()
    X, y = X.cuda(), y.cuda()

    def run():
        g = torch.Generator(device="cuda").manual_seed(0)
        net = build_mlp(5, (16,), 3, dropout=0.2, generator=g, device="cuda")
        fit_network(net, X, y, learning_rate=0.1, max_iter=3, generator=g)
        return flat_params(net)

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="generator"):
        fit_network(build_mlp(5, (4,), 3, device="cuda"), X, y, generator=gen())


@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_maxout_he_init_keeps_the_second_moment(pieces):
    """He init for maxout uses maxout_gain, not ReLU's sqrt(2) (which doubles E[h^2] per layer)."""
    from dbn.training import maxout_gain

    z = torch.randn(pieces, 400_000, generator=torch.Generator().manual_seed(0))
    assert abs(z.amax(dim=0).pow(2).mean().item() * maxout_gain(pieces) ** 2 - 1.0) < 0.01
    net = build_mlp(
        400,
        (400,) * 5,
        None,
        activation="maxout",
        init="he",
        maxout_pieces=pieces,
        generator=torch.Generator().manual_seed(1),
    )
    h = torch.randn(2000, 400, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for layer in net:
            h = layer(h)
    assert 0.7 < h.pow(2).mean().item() < 1.3
