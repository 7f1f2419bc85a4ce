"""Data: whole image data sets held as one uint8 tensor, batched by slicing, scaled on the device.

Each DataModule exposes ``image_shape`` (C, H, W), which the CLI links into the model and its networks.
Batches are uint8 tensors (N, C, H, W); the model scales them to G's output range on the device, so no
per-image PIL transform runs and host memory holds 1 byte per pixel.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torchvision
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.datasets.utils import check_integrity
from torchvision.transforms.v2 import functional as TF

from checks import check_ints


class DataError(RuntimeError):
    """The data set is missing (and could not be downloaded) or does not fit the options."""


class TensorRows(Dataset):
    """The rows of an in-memory tensor (images (N, C, H, W), or points). ``__getitems__`` fetches a batch at once."""

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


class SeededBatches:
    """Minibatches of a uint8 image tensor in a seeded order that a checkpoint resumes batch for batch.

    The order and the sharding are those of torch's ``DistributedSampler`` (what Lightning puts into a
    DataLoader in multi-process runs): one permutation seeded by ``seed + epoch``, the same on every rank, of
    which rank r takes positions r, r + world_size, ... (padded by repetition to a multiple of world_size), so
    the ranks' shards are disjoint and together cover the data. Lightning calls ``sampler.set_epoch`` at every
    epoch. The order depends on nothing else (not on the global RNG), so it is the same after a resume.

    It is also what Lightning calls a stateful loader: a checkpoint saves ``state_dict()`` (the epoch and the
    batches handed out in it) and a resumed run loads it, so a run resumed in the middle of an epoch goes on
    with the next batch of that epoch instead of starting it over. Lightning takes no batch ahead from a loader
    with a length, so the batches handed out are the batches trained on when the checkpoint is written.

    Batches are cut by indexing the tensor where it lives (on the GPU with ``data.on_device``), or, with
    ``num_workers`` > 0, fetched by a DataLoader's worker processes (started anew every epoch).

    Args:
        images: uint8 tensor (N, C, H, W).
        batch_size: images per batch.
        shuffle: a new seeded permutation every epoch (training) or the data's order (validation, test).
        drop_last: leave out the last, incomplete batch.
        num_replicas: number of processes (the world size).
        rank: this process's global rank.
        seed: seed of the permutation; must be the same on every rank.
        num_workers: DataLoader worker processes (0: cut the batches in this process).
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
        num_workers: int = 0,
    ) -> None:
        self.images = images
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.batch_sampler = None  # what Lightning's DataLoader checks look for
        self.sampler = DistributedSampler(
            range(len(images)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self._handed_out = (0, 0)  # (epoch, batches of it handed out so far)
        self._resume_at: tuple[int, int] | None = None  # from a checkpoint: (epoch, batches to skip)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        epoch, start = self.sampler.epoch, 0
        if self._resume_at is not None:
            start = self._resume_at[1] if self._resume_at[0] == epoch else 0
            self._resume_at = None
        index = torch.tensor(list(self.sampler), dtype=torch.long)
        spans = [index[i * self.batch_size : (i + 1) * self.batch_size] for i in range(start, len(self))]
        if self.num_workers:
            batches: Iterator[torch.Tensor] = iter(
                DataLoader(
                    TensorRows(self.images),
                    batch_sampler=[span.tolist() for span in spans],
                    num_workers=self.num_workers,
                    collate_fn=_identity,
                    pin_memory=torch.cuda.is_available(),
                )
            )
        else:
            batches = (self.images.index_select(0, span.to(self.images.device, non_blocking=True)) for span in spans)
        for done, batch in enumerate(batches, start=start + 1):
            self._handed_out = (epoch, done)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._handed_out
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (int(state["epoch"]), int(state["batches"]))


def seeded_loader(
    trainer: L.Trainer | None, data: torch.Tensor, batch_size: int, shuffle: bool, num_workers: int = 0
) -> SeededBatches:
    """:class:`SeededBatches` for this process: rank and world size from the trainer, and the seed Lightning gives
    its DistributedSampler (``seed_everything`` exports it as ``PL_GLOBAL_SEED``, the same on every rank). With
    ``shuffle`` (training) the last incomplete batch is dropped: every D update sees a full minibatch."""
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
    seed = int(os.getenv("PL_GLOBAL_SEED", 0))
    return SeededBatches(data, batch_size, shuffle, shuffle, world, rank, seed, num_workers)


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
            (:class:`SeededBatches`): no workers, no host-to-device copy per batch. CIFAR-10 takes 150 MB.
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
        check_ints("data.", 1, batch_size=batch_size, num_predict=num_predict)
        check_ints("data.", 0, num_workers=num_workers, val_size=val_size)
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
        """Where the data set was looked for (completed by "and the download failed ...")."""
        return f"{self.name} was not found in {self.data_dir}"

    def _offline_hint(self) -> str:
        """How to place the data set by hand on a machine without network."""
        return f"Place the data set in {self.data_dir} or point --data.data_dir at it."

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
            raise DataError(f"{self._missing_message()} and {reason}. {self._offline_hint()}")

    def setup(self, stage: str) -> None:
        if stage == "predict":
            return
        if self.train_images is None and stage == "fit":
            train = self._load(train=True)
            if self.val_size >= len(train):
                raise DataError(f"data.val_size={self.val_size} leaves no training images (the split has {len(train)})")
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
            raise DataError(
                f"data.batch_size={self.batch_size} is larger than the {len(self.train_images)} training images"
            )

    def full_train_split(self) -> torch.Tensor:
        """The whole training split, the held-out validation images included (what FID against the training set
        uses: all 50,000 images of CIFAR-10)."""
        if self.train_images is not None and not self.val_size:
            return self.train_images
        if self.train_images is not None and self.val_images is not None:
            return torch.cat([self.train_images, self.val_images])
        return self._load(train=True)

    def _loader(self, images: torch.Tensor, shuffle: bool) -> DataLoader | SeededBatches:
        """Training (``shuffle``) and on-device loaders are :class:`SeededBatches`; evaluation on the host is a
        plain DataLoader in the data's order (Lightning shards it in multi-process runs)."""
        if not (shuffle or self.on_device):
            return DataLoader(
                TensorRows(images),
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                collate_fn=_identity,
                pin_memory=torch.cuda.is_available(),
            )
        if self.on_device:
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            key = (id(images), str(device))  # val and test may be the same tensor: one copy
            if key not in self._device_copies:
                self._device_copies[key] = images.to(device)
            images = self._device_copies[key]
        return seeded_loader(self.trainer, images, self.batch_size, shuffle, self.num_workers)

    def train_dataloader(self) -> SeededBatches:
        return self._loader(self.train_images, shuffle=True)

    def val_dataloader(self) -> DataLoader | SeededBatches:
        return self._loader(self.val_images, shuffle=False)

    def test_dataloader(self) -> DataLoader | SeededBatches:
        return self._loader(self.test_images, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(NoiseIndices(self.num_predict), batch_size=self.batch_size, collate_fn=_identity)


class _Verifiable:
    """torchvision's CIFAR-10 / CIFAR-100 readers with their md5 check switchable (hand-made test folders have other
    sums). Mixed in before the torchvision class."""

    def __init__(self, root: str, train: bool, download: bool, verify: bool) -> None:
        self.verify = verify  # read by _check_integrity, which torchvision's __init__ calls
        super().__init__(root, train=train, download=download)

    def _check_integrity(self) -> bool:
        return super()._check_integrity() if self.verify else _cifar_present(type(self), Path(self.root), False)

    def _load_meta(self) -> None:
        if self.verify:
            return super()._load_meta()
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class _CIFAR10(_Verifiable, torchvision.datasets.CIFAR10):
    pass


class _CIFAR100(_Verifiable, torchvision.datasets.CIFAR100):
    pass


def _cifar_present(dataset: type, root: Path, verify: bool) -> bool:
    """Whether every batch file of the archive is in ``root/<its folder>`` (and passes its md5)."""
    folder = root / dataset.base_folder
    files = dataset.train_list + dataset.test_list
    return all(check_integrity(str(folder / name), md5 if verify else None) for name, md5 in files)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (50,000 train, 10,000 test 32×32 colour images), read by torchvision.

    The archive is downloaded and its md5 verified by torchvision into ``data_dir``; offline, place
    ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) in ``data_dir``
    extracted, so that ``data_dir/cifar-10-batches-py/data_batch_1`` exists.

    Args:
        data_dir: see :class:`ImageDataModule`; batch_size: 64, Just4GAN's.
        verify_checksums: check the md5 of every batch file (turn off only for hand-made test data).
        **kwargs: the other arguments of :class:`ImageDataModule`.
    """

    image_shape = (3, 32, 32)
    name = "CIFAR-10"
    dataset: type = _CIFAR10  # torchvision's reader, with the md5 check switchable

    def __init__(
        self, data_dir: str = "data", batch_size: int = 64, verify_checksums: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(data_dir, batch_size, **kwargs)
        self.verify_checksums = verify_checksums

    @property
    def _folder(self) -> Path:
        return Path(self.data_dir) / self.dataset.base_folder

    def _is_present(self) -> bool:
        return _cifar_present(self.dataset, self.data_dir, self.verify_checksums)

    def _download(self) -> None:
        self.dataset(str(self.data_dir), train=True, download=True, verify=self.verify_checksums)

    def _unreadable_file(self, train: bool) -> Path:
        """The first batch file of the split that does not unpickle (the folder if each one does)."""
        for name, _ in self.dataset.train_list if train else self.dataset.test_list:
            try:
                with open(self._folder / name, "rb") as f:
                    pickle.load(f, encoding="latin1")
            except Exception:
                return self._folder / name
        return self._folder

    def _missing_message(self) -> str:
        if self._folder.is_dir() and self.verify_checksums:
            names = self.dataset.train_list + self.dataset.test_list
            bad = [name for name, md5 in names if not check_integrity(str(self._folder / name), md5)]
            if bad:
                return f"{self.name} in {self._folder} is damaged: {', '.join(bad)} missing or failing its md5 check"
        return f"{self.name} was not found in {self._folder}"

    def _offline_hint(self) -> str:
        archive = self.dataset.filename
        return (
            f"To train offline, download {self.dataset.url} on a machine with network and extract it there: "
            f"tar -xzf {archive} -C {self.data_dir} (or point --data.data_dir at the folder that holds "
            f"{self.dataset.base_folder})."
        )

    def _load(self, train: bool) -> torch.Tensor:
        try:
            ds = self.dataset(str(self.data_dir), train=train, download=False, verify=self.verify_checksums)
        except (pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError) as err:
            raise DataError(
                f"{self._unreadable_file(train)} is unreadable ({type(err).__name__}: {err}). Delete the folder and "
                f"extract {self.dataset.filename} again: tar -xzf {self.dataset.filename} -C {self.data_dir}"
            ) from err
        # torchvision stacks the channel-major rows of the archive into (N, 3, 32, 32) and hands out an NHWC view
        # of it: transposing back gives that array itself, so no copy is made (a copy would raise peak memory).
        return torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (50,000 train, 10,000 test 32×32 colour images of 100 classes), read by torchvision, like
    :class:`CIFAR10DataModule` (one of the four data sets Just4GAN trains on; the labels are not used).

    Offline, extract ``cifar-100-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz) in
    ``data_dir``, so that ``data_dir/cifar-100-python/train`` exists.
    """

    name = "CIFAR-100"
    dataset = _CIFAR100


# --- MNIST and Fashion-MNIST (the paper's Table 1 data set, and a real data set installable offline) -----------


def read_idx_images(path: str | Path) -> torch.Tensor:
    """The images of an IDX file (the MNIST format: big-endian header, then uint8 pixels) as uint8 (N, H, W).

    Reads the extracted file or the original ``.gz`` alike (the format torchvision's MNIST reads), without
    writing anything next to it, so read-only folders such as ``/usr/share/datasets/fashion-mnist`` work.

    Args:
        path: an ``*-images-idx3-ubyte`` file, optionally gzip-compressed (``.gz``).

    Returns:
        The images, uint8, shape (N, H, W).
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # a cut-off or damaged .gz
        raise ValueError(f"{path} is unreadable ({type(err).__name__}: {err})") from err
    magic, n, h, w = struct.unpack(">4I", data[:16]) if len(data) >= 16 else (0, 0, 0, 0)
    if magic != 2051 or len(data) != 16 + n * h * w:  # 0x00000803: unsigned bytes, 3 dimensions
        raise ValueError(f"{path} is not an IDX image file (magic {magic}, {len(data)} bytes for {n}×{h}×{w})")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=16).view(n, h, w)


class MNISTDataModule(ImageDataModule):
    """MNIST (60,000 train, 10,000 test 28×28 grey images) with the paper's split.

    As in the authors' ``mnist.yaml``: train on train[0:50000], validate on train[50000:60000]
    (``val_size=10000``), test on the 10,000 test images. Only the images are read (a GAN needs no labels).

    Where the files are looked for, in this order (the first folder that holds both image files wins):

    1. ``data_dir/MNIST/raw/`` – torchvision's layout, what ``torchvision.datasets.MNIST(data_dir,
       download=True)`` (and ``data.download``) writes;
    2. ``data_dir/`` itself – a folder that directly holds the original files.

    Each of ``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte`` may be extracted or the original
    ``.gz``. The download goes through torchvision (its mirrors and md5 checks) into layout 1.

    Args:
        data_dir: the folder described above.
        batch_size: images per minibatch (100 in the paper).
        val_size: hold out the last ``val_size`` training images for validation (10,000 in the paper).
        **kwargs: the other arguments of :class:`ImageDataModule`.
    """

    image_shape = (1, 28, 28)
    name = "MNIST"
    torchvision_class: type[torchvision.datasets.MNIST] = torchvision.datasets.MNIST
    files = {True: "train-images-idx3-ubyte", False: "t10k-images-idx3-ubyte"}  # train=True / False
    offline_hint = ""

    def __init__(self, data_dir: str = "data", batch_size: int = 100, val_size: int = 10000, **kwargs: Any) -> None:
        super().__init__(data_dir, batch_size, val_size=val_size, **kwargs)

    def _folders(self) -> list[Path]:
        return [self.data_dir / self.torchvision_class.__name__ / "raw", self.data_dir]

    def _find(self, folder: Path, name: str) -> Path | None:
        return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)

    def _raw_dir(self) -> Path | None:
        """The first folder that holds both image files, or None."""
        return next((d for d in self._folders() if all(self._find(d, f) for f in self.files.values())), None)

    def _is_present(self) -> bool:
        return self._raw_dir() is not None

    def _download(self) -> None:
        self.torchvision_class(str(self.data_dir), train=True, download=True)

    def _missing_message(self) -> str:
        a, b = self._folders()
        names = " and ".join(f"{f}[.gz]" for f in self.files.values())
        return f"{self.name} was not found: looked for {names} in {a} (torchvision's layout) and in {b}"

    def _offline_hint(self) -> str:
        a, b = self._folders()
        return (
            f"{self.offline_hint}To train offline: on a machine with network, torchvision.datasets."
            f"{self.torchvision_class.__name__}('{self.data_dir}', download=True) writes {a}; copy that folder here, "
            f"or copy the original .gz files (from {' or '.join(self.torchvision_class.mirrors)}) into {a} or {b} "
            "(or point --data.data_dir at the folder that holds them)."
        )

    def _load(self, train: bool) -> torch.Tensor:
        folder = self._raw_dir()
        if folder is None:
            raise DataError(f"{self._missing_message()}. {self._offline_hint()}")
        try:
            images = read_idx_images(self._find(folder, self.files[train]))
        except ValueError as err:
            raise DataError(f"{err}: delete it and download again, or copy the original file there") from err
        if tuple(images.shape[1:]) != self.image_shape[1:]:
            raise DataError(f"{self.name} images must be 28×28, {folder} holds {tuple(images.shape[1:])}")
        return images.unsqueeze(1).contiguous()  # (N, 1, 28, 28)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al. 2017): MNIST's format and sizes, 10 classes of clothing, the same split.

    Looked for in ``data_dir/FashionMNIST/raw/`` (torchvision's layout) or directly in ``data_dir``, so
    Debian's package works as it is: ``apt-get install dataset-fashion-mnist`` puts the four original
    ``.gz`` files in ``/usr/share/datasets/fashion-mnist``; use ``--data.data_dir
    /usr/share/datasets/fashion-mnist`` (read in place, nothing is written there). Arguments as
    :class:`MNISTDataModule`.
    """

    name = "Fashion-MNIST"
    torchvision_class = torchvision.datasets.FashionMNIST
    offline_hint = (
        "On Debian: apt-get install dataset-fashion-mnist, then --data.data_dir /usr/share/datasets/fashion-mnist. "
    )


# --- A folder of the user's own images ----------------------------------------------------------------------


class ImageFolderDataModule(ImageDataModule):
    """The user's own images: every image file under ``data_dir`` (sub-folders included), decoded and resized
    once at load to ``image_size``, held as uint8 like the other data sets.

    Files are read by torchvision (``torchvision.io.decode_image``: PNG, JPEG, GIF, WebP, ...), sorted by path,
    converted to RGB (``channels=3``) or grey (``channels=1``) and resized with antialiasing; with ``crop``
    the shorter side is scaled to fit and the centre cut out, so the aspect ratio is kept. There is no test
    split unless ``test_dir`` names one: then ``test`` (and, with ``val_size=0``, validation) use the
    training images.

    Args:
        data_dir: folder of training images.
        image_size: H×W after resizing: one int (square) or [H, W].
        channels: 3 (RGB) or 1 (grey).
        crop: keep the aspect ratio (scale, then centre-crop) instead of stretching.
        test_dir: optional folder of test images.
        batch_size: images per minibatch.
        **kwargs: the other arguments of :class:`ImageDataModule` (``val_size`` holds out the last images in
            path order).
    """

    extensions = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
    name = "image folder"

    def __init__(
        self,
        data_dir: str = "data",
        image_size: int | tuple[int, int] = 64,
        channels: int = 3,
        crop: bool = True,
        test_dir: str | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir, batch_size, download=False, **kwargs)  # nothing to download
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"data.image_size must be an integer >= 1 or [H, W], got {image_size!r}")
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        self.image_size, self.channels, self.crop = size, channels, crop
        self.test_dir = Path(os.path.expanduser(test_dir)) if test_dir else None
        self.image_shape = (channels, *size)
        self._cache: dict[Path, torch.Tensor] = {}

    def _files(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in self.extensions and p.is_file())

    def _is_present(self) -> bool:
        return bool(self._files(self.data_dir)) and (self.test_dir is None or bool(self._files(self.test_dir)))

    def prepare_data(self) -> None:
        if self._predicting() or self._is_present():
            return
        folder = self.data_dir if not self._files(self.data_dir) else self.test_dir
        raise DataError(
            f"No images ({', '.join(self.extensions)}) were found under {folder}: put the images there "
            "(sub-folders are searched too) or point --data.data_dir (--data.test_dir) at the folder that holds them."
        )

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        h, w = self.image_size
        if not self.crop:
            return TF.resize(image, [h, w], antialias=True)
        scale = max(h / image.shape[-2], w / image.shape[-1])
        size = [max(h, round(image.shape[-2] * scale)), max(w, round(image.shape[-1] * scale))]
        return TF.center_crop(TF.resize(image, size, antialias=True), [h, w])

    def _read_folder(self, folder: Path) -> torch.Tensor:
        if folder not in self._cache:
            mode = torchvision.io.ImageReadMode.RGB if self.channels == 3 else torchvision.io.ImageReadMode.GRAY
            images = []
            for path in self._files(folder):
                try:
                    image = torchvision.io.decode_image(str(path), mode=mode, apply_exif_orientation=True)
                except Exception as err:
                    raise DataError(f"cannot decode the image {path}: {err}") from err
                images.append(self._resize(image[0] if image.ndim == 4 else image))  # an animation: its first frame
            if not images:
                raise DataError(f"No images ({', '.join(self.extensions)}) were found under {folder}")
            self._cache[folder] = torch.stack(images).contiguous()  # (N, C, H, W) uint8
        return self._cache[folder]

    def _load(self, train: bool) -> torch.Tensor:
        return self._read_folder(self.data_dir if train or self.test_dir is None else self.test_dir)
