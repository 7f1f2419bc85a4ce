"""MNIST and Fashion-MNIST DataModules on tiny folders in the original IDX format, and on the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from datamodule import DataError, FashionMNISTDataModule, ImageFolderDataModule, MNISTDataModule, read_idx_images
from tests.fake_data import write_mnist

FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (.ci/run installs it)


@pytest.mark.parametrize("compressed", [True, False])
def test_read_idx_images(tmp_path: Path, compressed: bool) -> None:
    written = write_mnist(tmp_path, n_train=5, n_test=3, layout="flat", compressed=compressed)
    name = "t10k-images-idx3-ubyte" + (".gz" if compressed else "")
    images = read_idx_images(tmp_path / name)
    assert images.dtype == torch.uint8 and images.shape == (3, 28, 28)
    assert np.array_equal(images.numpy(), written["test"])
    with pytest.raises(ValueError, match="not an IDX image file"):
        read_idx_images(tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if compressed else "")))


@pytest.mark.parametrize(
    ("cls", "layout", "compressed"),
    [
        (MNISTDataModule, "torchvision", True),
        (MNISTDataModule, "torchvision", False),
        (FashionMNISTDataModule, "torchvision", True),
        (FashionMNISTDataModule, "flat", True),
        (MNISTDataModule, "flat", False),
    ],
)
def test_layouts_and_split(tmp_path: Path, cls, layout: str, compressed: bool) -> None:
    folder = cls.torchvision_class.__name__
    written = write_mnist(tmp_path, n_train=120, n_test=30, layout=layout, folder=folder, compressed=compressed)
    dm = cls(str(tmp_path), batch_size=10, download=False, val_size=20)
    assert dm.image_shape == (1, 28, 28)
    dm.prepare_data()
    dm.setup("fit")
    # The paper's split, scaled down: train[0:n−val], validation train[n−val:n], the test file for test.
    assert dm.train_images.shape == (100, 1, 28, 28) and dm.train_images.dtype == torch.uint8
    assert np.array_equal(dm.train_images[:, 0].numpy(), written["train"][:100])
    assert np.array_equal(dm.val_images[:, 0].numpy(), written["train"][100:])
    assert np.array_equal(dm.test_images[:, 0].numpy(), written["test"])
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (10, 1, 28, 28) and batch.dtype == torch.uint8


def test_paper_split_by_default() -> None:
    dm = MNISTDataModule()
    assert (dm.val_size, dm.batch_size) == (10000, 100)


def test_torchvision_reads_the_same_folder(tmp_path: Path) -> None:
    """The torchvision layout is torchvision's own: its MNIST class reads the same images."""
    write_mnist(tmp_path, n_train=40, n_test=10, compressed=False)
    dm = MNISTDataModule(str(tmp_path), batch_size=10, download=False, val_size=0)
    dm.setup("fit")
    reference = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False).data
    assert torch.equal(dm.train_images[:, 0], reference)


def test_torchvision_layout_wins_over_flat(tmp_path: Path) -> None:
    nested = write_mnist(tmp_path, n_train=20, n_test=10, seed=1)
    write_mnist(tmp_path, n_train=20, n_test=10, layout="flat", seed=2)
    dm = MNISTDataModule(str(tmp_path), batch_size=10, download=False, val_size=0)
    dm.setup("fit")
    assert np.array_equal(dm.train_images[:, 0].numpy(), nested["train"])


@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule])
def test_offline_error_names_the_folder(tmp_path: Path, cls) -> None:
    (tmp_path / "only-train").mkdir()
    write_mnist(tmp_path / "only-train", n_train=10, n_test=0, layout="flat")
    (tmp_path / "only-train" / "t10k-images-idx3-ubyte.gz").unlink()  # half a data set is not a data set
    dm = cls(str(tmp_path / "only-train"), download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    message = str(err.value)
    raw = tmp_path / "only-train" / cls.torchvision_class.__name__ / "raw"
    assert str(raw) in message and "t10k-images-idx3-ubyte[.gz]" in message
    assert "data.download is false" in message and "--data.data_dir" in message
    if cls is FashionMNISTDataModule:
        assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt-get install)")
def test_real_fashion_mnist_from_debian_package() -> None:
    dm = FashionMNISTDataModule(str(FASHION), download=False)
    dm.prepare_data()
    train, test = dm._load(train=True), dm._load(train=False)
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == torch.uint8 and 0 < train.float().mean() < 255
    dm.setup("fit")
    assert (len(dm.train_images), len(dm.val_images), len(dm.test_images)) == (50000, 10000, 10000)


def _write_image(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.io.write_png(image, str(path))


def test_image_folder_resizes_once_and_keeps_uint8(tmp_path: Path) -> None:
    # Solid colours survive any resize exactly; sizes and aspect ratios differ; sub-folders are searched.
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)]
    sizes = [(40, 40), (20, 50), (64, 16), (33, 33)]
    for i, (colour, (h, w)) in enumerate(zip(colours, sizes, strict=True)):
        image = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).contiguous()
        _write_image(tmp_path / "imgs" / f"sub{i % 2}" / f"{i}.png", image)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=[12, 16], batch_size=2, val_size=1)
    assert dm.image_shape == (3, 12, 16)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_images.dtype == torch.uint8 and dm.train_images.shape == (3, 3, 12, 16)
    order = [0, 2, 1, 3]  # path order: sub0/0.png, sub0/2.png, sub1/1.png, sub1/3.png
    expected = torch.tensor([colours[i] for i in order], dtype=torch.uint8).view(4, 3, 1, 1).expand(4, 3, 12, 16)
    assert torch.equal(torch.cat([dm.train_images, dm.val_images]), expected)
    assert torch.equal(dm.test_images, torch.cat([dm.train_images, dm.val_images]))  # no test_dir


def test_image_folder_crop_keeps_the_centre_and_grey(tmp_path: Path) -> None:
    image = torch.zeros(3, 10, 30, dtype=torch.uint8)
    image[:, :, 10:20] = 200  # a bright centre third between dark sides
    _write_image(tmp_path / "a.png", image)
    cropped = ImageFolderDataModule(str(tmp_path), image_size=10, channels=1, batch_size=1)
    cropped.setup("fit")
    assert cropped.train_images.shape == (1, 1, 10, 10) and (cropped.train_images == 200).all()
    stretched = ImageFolderDataModule(str(tmp_path), image_size=10, crop=False, batch_size=1)
    stretched.setup("fit")
    assert stretched.train_images[0, :, :, 0].max() < 100  # the dark sides are squeezed in


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"No images .* under {tmp_path}"):
        ImageFolderDataModule(str(tmp_path)).prepare_data()
    with pytest.raises(ValueError, match="data.channels"):
        ImageFolderDataModule(str(tmp_path), channels=2)
    with pytest.raises(ValueError, match="data.image_size"):
        ImageFolderDataModule(str(tmp_path), image_size=[0, 4])
