"""Saving and loading without running code from the file.

A model file is one ``torch.save`` archive holding a plain dictionary::

    {"format": "torch-dbn", "format_version": 1, "dbn_version": "...",
     "kind": "<what was saved>", "config": "<JSON text>", "tensors": {name: Tensor}}

It is read back with ``torch.load(..., weights_only=True)``, which only rebuilds tensors and
plain containers: no class or function named in the file is ever imported or called. Settings
travel as JSON text. Writes are atomic (temporary file, ``fsync``, rename), so a crash never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from ._checkpoint import _atomic_write, describe_file
from .autoencoder import DenoisingAutoencoder
from .rbm import RBM
from .stack import LayerStack

__all__ = [
    "FORMAT_VERSION",
    "save",
    "load",
    "model_layers",
    "write_archive",
    "read_archive",
    "layer_config",
    "layer_from_config",
]

FORMAT = "torch-dbn"
FORMAT_VERSION = 1


def write_archive(path: str | os.PathLike, kind: str, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write a model archive atomically; ``config`` must be JSON-serialisable.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.dbn")
    >>> _ = write_archive(path, "demo", {"a": 1}, {"w": torch.ones(2)})
    >>> read_archive(path, kind="demo")[0]
    {'a': 1}
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dbn_version": __version__,
        "kind": kind,
        "config": json.dumps(config),
        "tensors": {name: t.detach().cpu().contiguous() for name, t in tensors.items()},
    }
    _atomic_write(Path(path), lambda f: torch.save(payload, f))
    return Path(path)


def read_archive(
    path: str | os.PathLike, *, kind: str | tuple[str, ...] | None = None, map_location: Any = "cpu"
) -> tuple[dict, dict[str, torch.Tensor], str]:
    """Read a model archive safely; returns ``(config, tensors, kind)``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is truncated or corrupt, is not a torch-dbn model file, comes from a newer
        format version, or holds another kind of object than ``kind``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.dbn")
    >>> _ = write_archive(path, "demo", {"n": 2}, {"w": torch.zeros(2)})
    >>> config, tensors, kind = read_archive(path)
    >>> config, kind, tensors["w"].shape
    ({'n': 2}, 'demo', torch.Size([2]))
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model file at {str(path)!r}.")
    try:
        with warnings.catch_warnings():  # torch's own advice ("weights_only=False", pickle protocol) is not ours
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # corrupt zip, truncated file, a pickle with code in it, ...
        raise ValueError(
            f"{str(path)!r} is not a torch-dbn model file: it looks like {describe_file(path)}. Save models with "
            "dbn.io.save or the estimators' save method."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a torch-dbn model file: it is a torch.save file of plain tensors and containers "
            "without the 'format': 'torch-dbn' header. Save models with dbn.io.save or the estimators' save method."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} is not a torch-dbn model file this version can read: it is written in model-file format "
            f"version {version!r}, newer than this torch-dbn ({__version__}) reads (up to {FORMAT_VERSION}). "
            "Upgrade torch-dbn to load it."
        )
    found = payload.get("kind")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and found not in kinds:
        raise ValueError(f"{str(path)!r} holds a {found!r}, not one of {list(kinds)}.")
    if not isinstance(found, str):
        raise ValueError(f"{str(path)!r} is a damaged torch-dbn model file: it names no kind of object.")
    try:
        config = json.loads(payload["config"])
        tensors = dict(payload["tensors"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is a damaged torch-dbn model file: {exc}") from exc
    return config, tensors, found


def layer_config(layer: nn.Module) -> dict:
    """JSON description of an RBM or denoising autoencoder (its constructor arguments).

    Examples
    --------
    >>> layer_config(RBM(4, 3))
    {'type': 'rbm', 'n_visible': 4, 'n_hidden': 3, 'visible': 'bernoulli', 'dtype': 'float32'}
    """
    dtype = str(layer.weight.dtype).replace("torch.", "")
    if isinstance(layer, RBM):
        config = {
            "type": "rbm",
            "n_visible": layer.n_visible,
            "n_hidden": layer.n_hidden,
            "visible": layer.visible,
            "dtype": dtype,
        }
        if layer.centered:  # only when set, so that files of ordinary RBMs stay as they were
            config["centered"] = True
        return config
    if isinstance(layer, DenoisingAutoencoder):
        return {
            "type": "dae",
            "n_visible": layer.n_visible,
            "n_hidden": layer.n_hidden,
            "visible": layer.visible,
            "tied": layer.tied,
            "corruption": layer.corruption,
            "corruption_level": layer.corruption_level,
            "dtype": dtype,
        }
    raise TypeError(f"Cannot describe a {type(layer).__name__}; expected dbn.RBM or dbn.DenoisingAutoencoder.")


def layer_from_config(
    config: dict, device=None, *, stored_weight: torch.Tensor | None = None
) -> RBM | DenoisingAutoencoder:
    """Rebuild an (untrained) layer from :func:`layer_config`'s description.

    ``stored_weight``, the weight the file holds for it, is checked against the described
    sizes before anything is allocated, so a damaged description cannot ask for huge tensors.

    Examples
    --------
    >>> rbm = RBM(4, 3)
    >>> layer_from_config(layer_config(rbm), stored_weight=rbm.weight)
    RBM(n_visible=4, n_hidden=3, visible='bernoulli')
    """
    try:
        kind = config["type"]
        if stored_weight is None or tuple(stored_weight.shape) != (config["n_hidden"], config["n_visible"]):
            raise ValueError(
                f"Damaged model file: a layer described as {config.get('n_visible')}x{config.get('n_hidden')} "
                f"holds a weight of shape {None if stored_weight is None else tuple(stored_weight.shape)}."
            )
        dtype = getattr(torch, config.get("dtype", "float32"))
        if kind == "rbm":
            return RBM(
                config["n_visible"],
                config["n_hidden"],
                visible=config["visible"],
                device=device,
                dtype=dtype,
                centered=bool(config.get("centered", False)),
            )
        if kind == "dae":
            return DenoisingAutoencoder(
                config["n_visible"],
                config["n_hidden"],
                visible=config["visible"],
                tied=config["tied"],
                corruption=config["corruption"],
                corruption_level=config["corruption_level"],
                device=device,
                dtype=dtype,
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"Damaged layer description {config!r}: {exc}") from exc
    raise ValueError(f"Unknown layer type {kind!r} in a model file.")


def _load_state(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"The model file's tensors do not fit the model it describes: {exc}") from exc


def save(obj: RBM | DenoisingAutoencoder | LayerStack, path: str | os.PathLike) -> Path:
    """Save an RBM, a denoising autoencoder or a layer stack.

    Estimators have their own ``save`` method (see :mod:`dbn.estimators`, whose
    :func:`~dbn.estimators.load_any` reads estimator files too).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "rbm.dbn")
    >>> rbm = RBM(6, 4)
    >>> _ = save(rbm, path)
    >>> bool(torch.equal(load(path).weight, rbm.weight))
    True
    """
    if isinstance(obj, LayerStack):
        config = {"layers": [layer_config(layer) for layer in obj.layers], "histories": obj.histories}
        return write_archive(path, "LayerStack", config, dict(obj.state_dict()))
    if isinstance(obj, (RBM, DenoisingAutoencoder)):
        return write_archive(path, type(obj).__name__, layer_config(obj), dict(obj.state_dict()))
    raise TypeError(f"dbn.io.save takes an RBM, DenoisingAutoencoder or LayerStack; got {type(obj).__name__}.")


def load(path: str | os.PathLike, *, device=None) -> RBM | DenoisingAutoencoder | LayerStack:
    """Load what :func:`save` wrote, onto ``device`` (CPU by default).

    Examples
    --------
    >>> import tempfile, os
    >>> path = save(LayerStack([RBM(6, 4), RBM(4, 2)]), os.path.join(tempfile.mkdtemp(), "s.dbn"))
    >>> load(path).sizes
    (6, 4, 2)
    """
    config, tensors, kind = read_archive(path, kind=("RBM", "DenoisingAutoencoder", "LayerStack"))
    try:
        if kind == "LayerStack":
            stack = LayerStack(
                [
                    layer_from_config(c, device, stored_weight=tensors.get(f"layers.{i}.weight"))
                    for i, c in enumerate(config["layers"])
                ]
            )
            _load_state(stack, tensors, "")
            stack.histories = config.get("histories", [[] for _ in stack.layers])
            return stack
        layer = layer_from_config(config, device, stored_weight=tensors.get("weight"))
        _load_state(layer, tensors, "")
        return layer
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{str(path)!r} is a damaged torch-dbn model file: {exc!r}") from exc


def model_layers(model) -> list[RBM | DenoisingAutoencoder]:
    """The pretrained layers (RBMs / autoencoders) inside a module, stack or fitted estimator.

    Examples
    --------
    >>> [type(m).__name__ for m in model_layers(LayerStack([RBM(4, 3), RBM(3, 2)]))]
    ['RBM', 'RBM']
    """
    if isinstance(model, (RBM, DenoisingAutoencoder)):
        return [model]
    if isinstance(model, LayerStack):
        return model._layer_list()
    if getattr(model, "rbm_", None) is not None:
        return [model.rbm_]
    if getattr(model, "stack_", None) is not None:
        return list(model.stack_.layers)
    raise ValueError(f"{type(model).__name__} holds no pretrained RBM or autoencoder layers.")
