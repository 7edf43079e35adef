"""Smoke example run by CI against the installed wheel: every public part imports and works.

Run it from outside the source tree: ``python scripts/smoke.py``.
"""

import pathlib
import tempfile

import torch

import dbn
from dbn import DBNClassifier, DBNTransformer, RBMTransformer
from dbn.datasets import load_digits

assert "site-packages" in dbn.__file__, f"imported the source tree, not the wheel: {dbn.__file__}"
assert (pathlib.Path(dbn.__file__).parent / "py.typed").exists(), "py.typed missing from the wheel"

X, y = load_digits()
rbm = RBMTransformer(n_components=32, n_iter=2, random_state=0).fit(X)
assert rbm.transform(X).shape == (len(X), 32)
stack = DBNTransformer((32, 16), n_iter=1, random_state=0).fit(X)
net = stack.to_torch(head="softmax", n_outputs=10)
assert isinstance(net, torch.nn.Sequential)
clf = DBNClassifier((32,), n_iter=2, random_state=0).fit(X[:1000], y[:1000])  # default fine-tuning
accuracy = clf.score(X[1000:], y[1000:])
print(f"dbn {dbn.__version__}: DBNClassifier digits accuracy {accuracy:.3f}")
assert accuracy > 0.8
with tempfile.TemporaryDirectory() as tmp:
    from dbn import cli

    code = cli.main(
        [
            "compare",
            "--dataset",
            "digits",
            "--arms",
            "relu-he",
            "dbn",
            "--depths",
            "1",
            "--sizes",
            "200",
            "--seeds",
            "1",
            "--width",
            "16",
            "--epochs",
            "1",
            "--pretrain-epochs",
            "1",
            "--out",
            tmp,
        ]
    )
    assert code == 0 and (pathlib.Path(tmp) / "report.md").exists()
print("smoke OK")
