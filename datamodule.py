"""Data: whole image data sets held as one uint8 tensor, batched by slicing, scaled on the device.

Each DataModule exposes ``image_shape`` (C, H, W), which the CLI links into the model and its networks.
Batches are uint8 tensors (N, C, H, W); the model scales them to G's output range on the device, so no
per-image PIL transform runs and host memory holds 1 byte per pixel.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchvision
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, DistributedSampler


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


class OnDeviceBatches:
    """Minibatches of a uint8 image tensor that lives on the training device, cut there by indexing.

    No worker processes and no host copies: per epoch one index tensor is built and moved to the device, then
    every batch is ``images[index[i : i + batch_size]]`` on the device. The order and the sharding are those
    of torch's ``DistributedSampler`` (what Lightning puts into a DataLoader in multi-process runs): one
    permutation seeded by ``seed + epoch``, the same on every rank, of which rank r takes positions
    r, r + world_size, ... (padded by repetition to a multiple of world_size), so the ranks' shards are
    disjoint and together cover the data. Lightning calls ``sampler.set_epoch`` at every epoch.

    Args:
        images: uint8 tensor (N, C, H, W), already on the device.
        batch_size: images per batch.
        shuffle: a new seeded permutation every epoch (training) or the data's order (validation, test).
        drop_last: leave out the last, incomplete batch.
        num_replicas: number of processes (the world size).
        rank: this process's global rank.
        seed: seed of the permutation; must be the same on every rank.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        self.images = images
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.batch_sampler = None  # what Lightning's DataLoader checks look for
        self.sampler = DistributedSampler(
            range(len(images)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        index = torch.tensor(list(self.sampler), dtype=torch.long).to(self.images.device, non_blocking=True)
        for i in range(len(self)):
            yield self.images.index_select(0, index[i * self.batch_size : (i + 1) * self.batch_size])


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
        on_device: keep the whole data set on the training device (GPU) and cut batches there
            (:class:`OnDeviceBatches`): no workers, no host-to-device copy per batch. CIFAR-10 takes 150 MB.
            Each process holds a copy and reads its own shard, as with Lightning's DistributedSampler.
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
        on_device: bool = False,
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
        if on_device and num_workers:
            raise ValueError(
                f"data.num_workers must be 0 with data.on_device true (batches are cut on the device): {num_workers}"
            )
        self.on_device = bool(on_device)
        self._device_copies: dict[tuple[int, str], torch.Tensor] = {}
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

    def _loader(self, images: torch.Tensor, shuffle: bool, drop_last: bool) -> DataLoader | OnDeviceBatches:
        if self.on_device:
            return self._on_device_loader(images, shuffle, drop_last)
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

    def _on_device_loader(self, images: torch.Tensor, shuffle: bool, drop_last: bool) -> OnDeviceBatches:
        """The split moved (once) to the LightningModule's device, sharded like Lightning's DistributedSampler."""
        device, rank, world = torch.device("cpu"), 0, 1
        if self.trainer is not None:
            device, rank, world = self.trainer.strategy.root_device, self.trainer.global_rank, self.trainer.world_size
        key = (id(images), str(device))  # val and test may be the same tensor: one copy
        if key not in self._device_copies:
            self._device_copies[key] = images.to(device)
        # The seed Lightning gives its DistributedSampler: the same on every rank (seed_everything exports it).
        seed = int(os.getenv("PL_GLOBAL_SEED", 0))
        return OnDeviceBatches(self._device_copies[key], self.batch_size, shuffle, drop_last, world, rank, seed)

    def train_dataloader(self) -> DataLoader | OnDeviceBatches:
        # drop_last: every D update sees a full minibatch (and BatchNorm never sees a batch of one).
        return self._loader(self.train_images, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader | OnDeviceBatches:
        return self._loader(self.val_images, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader | OnDeviceBatches:
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
        on_device: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, download, val_size, num_predict, on_device)
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
        # torchvision stacks the channel-major rows of the archive into (N, 3, 32, 32) and hands out an NHWC view
        # of it: transposing back gives that array itself, so no copy is made (a copy would raise peak memory).
        return torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
