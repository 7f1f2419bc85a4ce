"""What the tests share: a tiny GAN, an in-memory image loader, a quiet CPU trainer, fake data folders.

The first three are factories (fixtures that return a function), so each test builds what it needs with its own
arguments: ``tiny_gan(ema_decay=0.9)``, ``image_loader(shuffle=False)``, ``cpu_trainer(max_steps=6)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from datamodule import TensorRows, _identity
from gan_module import GAN
from networks import MLPDiscriminator, MLPGenerator
from tests.fake_data import write_cifar10, write_mnist

SHAPE = (1, 4, 4)


def _tiny_gan(
    shape: Sequence[int] = SHAPE,
    latent_dim: int = 8,
    g_hidden: Sequence[int] = (16, 16),
    d_hidden: Sequence[int] = (16,),
    out: str = "tanh",
    seed: int | None = None,
    cls: type[GAN] = GAN,
    **kwargs: Any,
) -> GAN:
    if seed is not None:
        torch.manual_seed(seed)
    # max(…, 1): a bad latent_dim must reach GAN's own check, not fail in the generator first.
    g = kwargs.pop("generator", None) or MLPGenerator(max(latent_dim, 1), shape, g_hidden, out_activation=out)
    d = kwargs.pop("discriminator", None) or MLPDiscriminator(shape, hidden_dims=d_hidden)
    return cls(g, d, latent_dim=latent_dim, image_shape=shape, **kwargs)


def _image_loader(
    n: int = 64, shape: Sequence[int] = SHAPE, batch_size: int = 8, shuffle: bool = True, seed: int = 0
) -> DataLoader:
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorRows(images), batch_size=batch_size, shuffle=shuffle, drop_last=True, collate_fn=_identity)


def _cpu_trainer(**kwargs: Any) -> L.Trainer:
    quiet = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    return L.Trainer(**{**quiet, **kwargs})


@pytest.fixture
def tiny_gan() -> Callable[..., GAN]:
    """``tiny_gan(**options)``: a GAN (or ``cls=`` a subclass) of small MLPs (Just4GAN's G and D) on 1×4×4 images;
    other options go to the GAN."""
    return _tiny_gan


@pytest.fixture
def image_loader() -> Callable[..., DataLoader]:
    """``image_loader(n, shape, batch_size, shuffle, seed)``: random uint8 images in a DataLoader."""
    return _image_loader


@pytest.fixture
def cpu_trainer(tmp_path: Path) -> Callable[..., L.Trainer]:
    """``cpu_trainer(**trainer_options)``: one CPU process, no logger, checkpoint, bars or validation."""
    return lambda **kwargs: _cpu_trainer(default_root_dir=tmp_path, **kwargs)


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``cifar-10-batches-py`` folder of 320 train and 64 test random images (verify_checksums false)."""
    return write_cifar10(tmp_path_factory.mktemp("cifar"), n_train=320, n_test=64)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-layout MNIST folder of 300 train and 50 test random images."""
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, n_train=300, n_test=50)
    return root
