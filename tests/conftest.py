import os
from pathlib import Path

import pytest
import torch

MNIST_PATH = Path(
    os.environ.get("DBN_MNIST", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist.pkl.gz")
)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Small test problems gain nothing from intra-op threads, and threads spin badly when the
# machine is shared; one thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)

try:  # the same for numpy's/scipy's BLAS used by scikit-learn
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
except ImportError:  # pragma: no cover
    pass
