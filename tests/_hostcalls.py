"""Counting device-to-host reads on tensors, shared by the tests that check for per-batch or
per-temperature host synchronisation (tests/test_device_sync.py, tests/test_likelihood.py)."""

from __future__ import annotations

import collections
import contextlib

import torch

HOST_CALLS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def count_host_calls():
    counts: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_CALLS}

    def counting(name, method):
        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name, method in originals.items():
        setattr(torch.Tensor, name, counting(name, method))
    try:
        yield counts
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
