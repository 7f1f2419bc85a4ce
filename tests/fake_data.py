"""Small data sets written in their original on-disk formats, for tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, n_train: int = 320, n_test: int = 64, seed: int = 0) -> Path:
    """A tiny ``cifar-10-batches-py`` folder laid out like the real archive.

    The 5 train batches, the test batch and batches.meta as protocol-2 pickles with str keys (what the
    archive's Python 2 pickles load as with latin1); uint8 rows of 3072 = 3×32×32, channel-major.
    Random pixels, so the md5 sums do not match: load with ``verify_checksums=False``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = n_train // 5

    def dump(name: str, n: int) -> None:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        batch = {
            "batch_label": name,
            "labels": rng.integers(0, 10, n).tolist(),
            "data": data,
            "filenames": [f"{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", per_batch)
    dump("test_batch", n_test)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch}, f, protocol=2)
    return Path(root)
