"""Small data sets written in their original on-disk formats, for tests."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, n_train: int = 320, n_test: int = 64, seed: int = 0) -> Path:
    """A tiny ``cifar-10-batches-py`` folder of random pixels and labels (:func:`write_cifar10_archive`).

    Random pixels, so the md5 sums do not match: load with ``verify_checksums=False``."""
    rng = np.random.default_rng(seed)
    parts = [(rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, n)) for n in [n_train // 5] * 5]
    test_rows = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    train_rows, train_labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return write_cifar10_archive(root, train_rows, test_rows, train_labels, rng.integers(0, 10, n_test))


def write_cifar10_archive(
    root: Path,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    train_labels: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
) -> Path:
    """Given uint8 rows of 3072 = 3×32×32 (channel-major), a ``cifar-10-batches-py`` folder laid out like the real
    archive: the rows split into the 5 train batches, the test batch and batches.meta, as protocol-2 pickles with
    str keys (what the archive's Python 2 pickles load as with latin1). Labels default to 0."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, rows: np.ndarray, labels: np.ndarray | None) -> None:
        labels = np.zeros(len(rows), dtype=np.int64) if labels is None else labels
        batch = {
            "batch_label": name,
            "labels": [int(label) for label in labels],
            "data": rows,
            "filenames": [f"{i}.png" for i in range(len(rows))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    labels = [None] * 5 if train_labels is None else np.array_split(train_labels, 5)
    for i, (rows, part_labels) in enumerate(zip(np.array_split(train_rows, 5), labels, strict=True), start=1):
        dump(f"data_batch_{i}", rows, part_labels)
    dump("test_batch", test_rows, test_labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_NAMES, "num_cases_per_batch": len(train_rows) // 5}, f, protocol=2)
    return Path(root)


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny ``cifar-100-python`` folder laid out like the real archive: ``train``, ``test`` and ``meta`` as
    protocol-2 pickles (``data`` rows of 3072 channel-major uint8, ``fine_labels``, ``coarse_labels``,
    ``filenames``; the meta's ``fine_label_names`` and ``coarse_label_names``). Random pixels: the md5 sums do not
    match. Returns the rows written, ``{"train": (n_train, 3072), "test": (n_test, 3072)}``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        entry = {
            "filenames": [f"{i}.png" for i in range(n)],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            "data": rows,
        }
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[split] = rows
    meta = {
        "fine_label_names": [f"class{i}" for i in range(100)],
        "coarse_label_names": [f"super{i}" for i in range(20)],
    }
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return written


def _idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format of the MNIST files: magic 0x0000080D (D = ndim), sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(
    root: Path,
    n_train: int = 300,
    n_test: int = 50,
    layout: str = "torchvision",
    folder: str = "MNIST",
    compressed: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A tiny MNIST-format data set: the four original files, random 28×28 uint8 images and labels.

    Args:
        root: where to write.
        n_train: training images (the real files have 60,000).
        n_test: test images (10,000 in the real files).
        layout: ``torchvision`` writes ``root/<folder>/raw/`` (torchvision's layout); ``flat`` writes the files
            directly into ``root`` (like Debian's /usr/share/datasets/fashion-mnist).
        folder: ``MNIST`` or ``FashionMNIST`` (torchvision's class names), for the torchvision layout.
        compressed: write the original ``.gz`` files; otherwise the extracted ones, as torchvision leaves them.
        seed: random seed.

    Returns:
        ``{"train": images (n_train, 28, 28), "test": images (n_test, 28, 28)}`` as written.
    """
    rng = np.random.default_rng(seed)
    out = Path(root) / folder / "raw" if layout == "torchvision" else Path(root)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = _idx_bytes(array)
            if compressed:
                with gzip.open(out / f"{name}.gz", "wb", compresslevel=1) as f:
                    f.write(data)
            else:
                (out / name).write_bytes(data)
        written[split] = images
    return written
