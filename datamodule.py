"""Data: whole image data sets held as one uint8 tensor, batched by slicing, scaled on the device.

Each DataModule exposes ``image_shape`` (C, H, W), which the CLI links into the model and its networks.
Batches are uint8 tensors (N, C, H, W); the model scales them to G's output range on the device, so no
per-image PIL transform runs and host memory holds 1 byte per pixel.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torchvision
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset


class UInt8Images(Dataset):
    """An in-memory uint8 image tensor (N, C, H, W). ``__getitems__`` fetches a whole batch with one index."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(indices)]


class NoiseIndices(Dataset):
    """Indices 0..n−1: what ``predict`` iterates over. Sampling needs no data set."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.as_tensor(indices)


def _identity(batch: torch.Tensor) -> torch.Tensor:  # the batch is already a tensor (see __getitems__)
    return batch


class ImageDataModule(L.LightningDataModule):
    """Base of the image data sets: uint8 in memory, slicing loaders, the offline error.

    Subclasses set ``image_shape`` and implement ``_download`` and ``_load(train)``.

    Args:
        data_dir: folder that holds (or will hold, after the download) the data set.
        batch_size: images per minibatch (per process in multi-GPU runs).
        num_workers: DataLoader worker processes. 0 (the default) is fastest here: a batch is one slice of
            an in-memory tensor, so workers only add inter-process copies.
        download: download the data set when it is missing (in ``prepare_data``, once per node).
        val_size: hold out the last ``val_size`` training images for validation; 0 validates on the test split.
        num_predict: samples that ``predict`` generates.
    """

    image_shape: tuple[int, int, int] = (3, 32, 32)
    name: str = "images"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        num_workers: int = 0,
        download: bool = True,
        val_size: int = 0,
        num_predict: int = 64,
    ) -> None:
        super().__init__()
        for key, value, low in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("val_size", val_size, 0),
            ("num_predict", num_predict, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"data.{key} must be an integer >= {low}, got {value!r}")
        self.data_dir = Path(os.path.expanduser(data_dir))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.download = download
        self.val_size = val_size
        self.num_predict = num_predict
        self.image_shape = tuple(self.image_shape)
        self.train_images: torch.Tensor | None = None
        self.val_images: torch.Tensor | None = None
        self.test_images: torch.Tensor | None = None

    # --- to be provided by each data set ------------------------------------------------------------------

    def _is_present(self) -> bool:
        raise NotImplementedError

    def _download(self) -> None:
        raise NotImplementedError

    def _load(self, train: bool) -> torch.Tensor:
        """The split as a uint8 tensor (N, C, H, W)."""
        raise NotImplementedError

    def _missing_message(self) -> str:
        return f"{self.name} was not found in {self.data_dir}"

    # --- LightningDataModule --------------------------------------------------------------------------------

    def _predicting(self) -> bool:
        return self.trainer is not None and self.trainer.state.fn == TrainerFn.PREDICTING

    def prepare_data(self) -> None:
        if self._predicting() or self._is_present():
            return  # sampling needs no data; a present data set needs no download
        error: Exception | None = None
        if self.download:
            try:
                self._download()
            except Exception as err:  # no network, a firewall, a cluster node offline
                error = err
        if not self._is_present():
            reason = f"the download failed ({type(error).__name__}: {error})" if error else "data.download is false"
            raise RuntimeError(f"{self._missing_message()} and {reason}.")

    def setup(self, stage: str) -> None:
        if stage == "predict":
            return
        if self.train_images is None and stage == "fit":
            train = self._load(train=True)
            if self.val_size >= len(train):
                raise ValueError(
                    f"data.val_size={self.val_size} leaves no training images (the split has {len(train)})"
                )
            if self.val_size:
                self.train_images, self.val_images = train[: -self.val_size], train[-self.val_size :]
            else:
                self.train_images = train
        if self.test_images is None:
            self.test_images = self._load(train=False)
        if self.val_images is None:
            if self.val_size:
                self.val_images = self._load(train=True)[-self.val_size :]
            else:
                self.val_images = self.test_images
        if stage == "fit" and len(self.train_images) < self.batch_size:
            raise ValueError(
                f"data.batch_size={self.batch_size} is larger than the {len(self.train_images)} training images"
            )

    def _loader(self, images: torch.Tensor, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            UInt8Images(images),
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_identity,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        # drop_last: every D update sees a full minibatch (and BatchNorm never sees a batch of one).
        return self._loader(self.train_images, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_images, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_images, shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(NoiseIndices(self.num_predict), batch_size=self.batch_size, collate_fn=_identity)


class _TorchvisionCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 with the md5 check optional (tests write small fake batches)."""

    verify = True

    def _check_integrity(self) -> bool:
        if self.verify:
            return super()._check_integrity()
        root = Path(self.root) / self.base_folder
        return all((root / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        if self.verify:
            return super()._load_meta()
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (50,000 train, 10,000 test 32×32 colour images), read by torchvision.

    The archive is downloaded and its md5 verified by torchvision into ``data_dir``; offline, place
    ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) in ``data_dir``
    extracted, so that ``data_dir/cifar-10-batches-py/data_batch_1`` exists.

    Args:
        verify_checksums: check the md5 of every batch file (turn off only for hand-made test data).
    """

    image_shape = (3, 32, 32)
    name = "CIFAR-10"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        num_workers: int = 0,
        download: bool = True,
        val_size: int = 0,
        num_predict: int = 64,
        verify_checksums: bool = True,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, download, val_size, num_predict)
        self.verify_checksums = verify_checksums

    def _dataset_class(self) -> type[_TorchvisionCIFAR10]:
        return type("CIFAR10", (_TorchvisionCIFAR10,), {"verify": self.verify_checksums})

    def _is_present(self) -> bool:
        probe = self._dataset_class().__new__(self._dataset_class())
        probe.root = str(self.data_dir)
        return probe._check_integrity()

    def _download(self) -> None:
        self._dataset_class()(str(self.data_dir), train=True, download=True)

    def _missing_message(self) -> str:
        return (
            f"CIFAR-10 was not found in {self.data_dir / 'cifar-10-batches-py'} (or failed its md5 check). "
            f"Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz on a machine with network and "
            f"extract it into {self.data_dir} (tar -xzf cifar-10-python.tar.gz -C {self.data_dir}), "
            f"or point --data.data_dir at the folder that holds cifar-10-batches-py,"
        )

    def _load(self, train: bool) -> torch.Tensor:
        ds = self._dataset_class()(str(self.data_dir), train=train, download=False)
        return torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # NHWC → NCHW


# --- 2-D Gaussian mixtures (the mode-collapse lab) ------------------------------------------------------------


class ToyMixtureDataModule(L.LightningDataModule):
    """Points of a 2-D mixture of equally weighted isotropic Gaussians whose modes are all known.

    The two standard mode-collapse benchmarks (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018):

    - ``ring``: 8 modes evenly spaced on the unit circle, centre i at angle 2πi/8 (i = 0..7), std 0.01.
    - ``grid``: 25 modes at {−4, −2, 0, 2, 4}², std 0.05.

    Batches are float32 tensors (N, 2), passed to D unscaled (G has a linear output). The metrics of
    ``metrics.ModeCoverage`` read ``centers`` and ``std``; they use samples of G, so the validation and test
    sets are small (they only feed the module's D-on-real statistics).

    Args:
        mixture: ``ring`` (8 modes) or ``grid`` (25 modes).
        batch_size: points per minibatch.
        num_train: training points (100,000 in PacGAN).
        num_val: points of the validation set and, separately drawn, of the test set.
        seed: seed of the points (train, validation and test are drawn from three streams of this seed).
        num_predict: samples that ``predict`` generates.
    """

    def __init__(
        self,
        mixture: Literal["ring", "grid"] = "ring",
        batch_size: int = 256,
        num_train: int = 100_000,
        num_val: int = 1_000,
        seed: int = 0,
        num_predict: int = 2_500,
    ) -> None:
        super().__init__()
        if mixture not in ("ring", "grid"):
            raise ValueError(f"data.mixture must be 'ring' or 'grid', got {mixture!r}")
        for key, value, low in (
            ("batch_size", batch_size, 1),
            ("num_train", num_train, 1),
            ("num_val", num_val, 1),
            ("num_predict", num_predict, 1),
            ("seed", seed, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"data.{key} must be an integer >= {low}, got {value!r}")
        if batch_size > num_train:
            raise ValueError(f"data.batch_size={batch_size} is larger than data.num_train={num_train}")
        self.mixture = mixture
        self.batch_size = batch_size
        self.num_train = num_train
        self.num_val = num_val
        self.seed = seed
        self.num_predict = num_predict
        self.image_shape = (2,)
        self.centers, self.std = mixture_centers(mixture)
        self.train_points: torch.Tensor | None = None
        self.val_points: torch.Tensor | None = None
        self.test_points: torch.Tensor | None = None

    def sample_points(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n points of the mixture: a mode drawn uniformly, plus isotropic Gaussian noise of std ``std``."""
        modes = torch.randint(len(self.centers), (n,), generator=generator)
        return self.centers[modes] + self.std * torch.randn(n, 2, generator=generator)

    def setup(self, stage: str) -> None:
        if self.train_points is not None:
            return
        # Three streams of one seed, so the training points do not depend on num_val and vice versa.
        streams = [torch.Generator().manual_seed(self.seed * 3 + i) for i in range(3)]
        self.train_points = self.sample_points(self.num_train, streams[0])
        self.val_points = self.sample_points(self.num_val, streams[1])
        self.test_points = self.sample_points(self.num_val, streams[2])

    def _loader(self, points: torch.Tensor, shuffle: bool, drop_last: bool) -> DataLoader:
        # UInt8Images indexes any in-memory tensor: one slice per batch, no per-point collation.
        return DataLoader(
            UInt8Images(points), batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last, collate_fn=_identity
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_points, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_points, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_points, shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(NoiseIndices(self.num_predict), batch_size=self.batch_size, collate_fn=_identity)


def mixture_centers(mixture: Literal["ring", "grid"]) -> tuple[torch.Tensor, float]:
    """The mode centres (K, 2) and the per-coordinate standard deviation of a named mixture.

    Args:
        mixture: ``ring`` or ``grid`` (see :class:`ToyMixtureDataModule`).

    Returns:
        (centers, std).
    """
    if mixture == "ring":
        # 2πi/8 for i = 0..7: eight distinct angles. (linspace(0, 2π, 8) would put the 8th mode on the 1st.)
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01
    if mixture == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"data.mixture must be 'ring' or 'grid', got {mixture!r}")
