"""The speed options: the on-device data path, torch.compile, fused/foreach Adam, channels_last.

Behaviour only; speed is measured by benchmarks/speed.py, never here.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from datamodule import CIFAR10DataModule, SeededBatches, TensorRows, _identity
from gan_module import GAN, GANAdam

SHAPE = (3, 32, 32)


def _numbered_images(n: int) -> torch.Tensor:
    """n uint8 images (N, 1, 2, 2) whose first two pixels spell the image's index."""
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) // 256
    images[:, 0, 0, 1] = torch.arange(n) % 256
    return images


def _ids(batch: torch.Tensor) -> list[int]:
    return (batch[:, 0, 0, 0].long() * 256 + batch[:, 0, 0, 1].long()).tolist()


@pytest.fixture
def cifar_gan(tiny_gan):
    """``cifar_gan(**options)``: a tiny MLP GAN on 3×32×32 images."""
    return lambda **kwargs: tiny_gan(
        shape=SHAPE, latent_dim=16, g_hidden=(8, 8, 8, 8), d_hidden=(8, 8, 8), noise_seed=0, **kwargs
    )


@pytest.fixture
def fit(cpu_trainer):
    """``fit(model, data, batches, **trainer_options)``: one epoch of ``batches`` training batches."""

    def run(model: L.LightningModule, data: L.LightningDataModule, batches: int | float = 3, **kwargs) -> L.Trainer:
        trainer = cpu_trainer(max_epochs=1, limit_train_batches=batches, **kwargs)
        trainer.fit(model, datamodule=data)
        return trainer

    return run


def _data(cifar_dir: Path, **kwargs: object) -> CIFAR10DataModule:
    return CIFAR10DataModule(str(cifar_dir), batch_size=16, download=False, verify_checksums=False, **kwargs)


# --- the on-device data path ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world"), [(96, 1), (96, 2), (96, 3), (101, 2), (101, 4)])
def test_on_device_shards_are_disjoint_and_cover_the_data(n: int, world: int) -> None:
    images = _numbered_images(n)
    shards = []
    for rank in range(world):
        loader = SeededBatches(images, 8, shuffle=True, drop_last=False, num_replicas=world, rank=rank, seed=3)
        shards.append([i for batch in loader for i in _ids(batch)])
    assert all(len(s) == -(-n // world) for s in shards)  # equal shares, padded like DistributedSampler
    everything = [i for s in shards for i in s]
    assert set(everything) == set(range(n))  # together the ranks cover the data set
    assert len(everything) - len(set(everything)) == (-n) % world  # the only repeats are the padding
    for a in range(world):
        for b in range(a + 1, world):
            overlap = set(shards[a]) & set(shards[b])
            assert len(overlap) <= (-n) % world, (a, b, overlap)
    if n % world == 0:
        assert len(set(everything)) == len(everything)  # disjoint


@pytest.mark.parametrize(("shuffle", "drop_last"), [(True, True), (False, False)])
def test_on_device_batches_equal_a_dataloader_with_distributed_sampler(shuffle: bool, drop_last: bool) -> None:
    images = _numbered_images(150)
    for rank in range(2):
        ours = SeededBatches(images, 16, shuffle, drop_last, num_replicas=2, rank=rank, seed=7)
        sampler = DistributedSampler(range(150), num_replicas=2, rank=rank, shuffle=shuffle, seed=7)
        plain = DataLoader(TensorRows(images), 16, sampler=sampler, drop_last=drop_last, collate_fn=_identity)
        orders = []
        for epoch in range(2):
            ours.sampler.set_epoch(epoch)  # what Lightning calls at every epoch
            sampler.set_epoch(epoch)
            got, want = list(ours), list(plain)
            assert len(got) == len(want) == len(ours)
            for a, b in zip(got, want, strict=True):
                assert torch.equal(a, b)
            orders.append([i for batch in got for i in _ids(batch)])
        assert (orders[0] != orders[1]) == shuffle  # a new permutation per epoch only when shuffling


def test_on_device_loader_takes_rank_world_size_and_device_from_the_trainer(cifar_dir: Path) -> None:
    data = _data(cifar_dir, on_device=True)
    data.setup("fit")
    data.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cpu")), global_rank=1, world_size=2
    )
    train = data.train_dataloader()
    assert isinstance(train, SeededBatches)
    assert (train.sampler.rank, train.sampler.num_replicas, train.sampler.shuffle) == (1, 2, True)
    assert len(train) == 320 // 2 // 16
    val = data.val_dataloader()
    assert not val.sampler.shuffle and not val.drop_last
    # The same content as the host copy, moved once: val and test (the same split here) share one device copy.
    assert data.test_dataloader().images is val.images
    assert torch.equal(val.images, data.test_images)


def test_cifar_images_are_the_archive_rows_in_nchw(cifar_dir: Path) -> None:
    import pickle

    with open(cifar_dir / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        rows = pickle.load(f, encoding="latin1")["data"]  # (n, 3072) uint8, channel-major
    images = _data(cifar_dir)._load(train=True)
    assert images.shape == (320, 3, 32, 32) and images.is_contiguous() and images.dtype == torch.uint8
    assert torch.equal(images[: len(rows)].reshape(len(rows), -1), torch.from_numpy(rows))


def test_on_device_refuses_worker_processes(cifar_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.num_workers must be 0 with data\.on_device"):
        _data(cifar_dir, on_device=True, num_workers=2)


def test_on_device_trains_and_sees_the_whole_epoch(cifar_dir: Path, cifar_gan, fit) -> None:
    seen: list[str] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
            assert batch.dtype == torch.uint8 and batch.device == pl_module.device
            seen.extend(hashlib.md5(img.numpy().tobytes()).hexdigest() for img in batch)

    model, data = cifar_gan(), _data(cifar_dir, on_device=True)
    trainer = fit(model, data, batches=1.0, callbacks=[Record()])
    assert isinstance(trainer.train_dataloader, SeededBatches)
    assert model.d_updates == 320 // 16
    everything = {hashlib.md5(img.numpy().tobytes()).hexdigest() for img in data.train_images}
    assert len(seen) == len(set(seen)) == 320 and set(seen) == everything


class _WriteImageHashes(L.Callback):
    """Writes the md5 of every training image a rank sees to rank<r>.txt (works across spawned processes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as f:
            f.writelines(hashlib.md5(img.numpy().tobytes()).hexdigest() + "\n" for img in batch)


def test_on_device_two_processes_read_disjoint_shards(cifar_dir: Path, tmp_path: Path, cifar_gan, fit) -> None:
    from lightning.pytorch.strategies import DDPStrategy

    model, data = cifar_gan(), _data(cifar_dir, on_device=True)
    strategy = DDPStrategy(start_method="spawn", find_unused_parameters=True)  # what cli.py picks, spawned
    fit(model, data, batches=1.0, devices=2, strategy=strategy, callbacks=[_WriteImageHashes(tmp_path)])
    shards = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert [len(s) for s in shards] == [160, 160]  # 320 images, batch 16: 10 batches per rank
    assert not set(shards[0]) & set(shards[1])
    data.setup("fit")  # the spawned processes loaded their own copies
    everything = {hashlib.md5(img.numpy().tobytes()).hexdigest() for img in data.train_images}
    assert set(shards[0]) | set(shards[1]) == everything


# --- torch.compile, fused / foreach Adam, channels_last -------------------------------------------------------


def _compile_works() -> bool:
    try:
        return bool(torch.compile(lambda x: x * 2)(torch.ones(2)).sum() == 4)
    except Exception:  # no C++ compiler, an unsupported platform
        return False


@pytest.mark.skipif(not _compile_works(), reason="torch.compile cannot run on this CPU build")
def test_compile_trains_and_keeps_checkpoint_keys(cifar_dir: Path, cifar_gan, fit) -> None:
    torch.manual_seed(0)
    model = cifar_gan(compile=True)
    plain_keys = set(cifar_gan().state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, _data(cifar_dir), batches=2)
    assert model.d_updates == 2
    assert set(model.state_dict()) == plain_keys  # nn.Module.compile: no "_orig_mod." in the keys
    assert not torch.equal(before["G.net.0.weight"], model.G.net[0].weight)
    assert not torch.equal(before["D.net.1.weight"], model.D.net[1].weight)


def test_bad_compile_mode_is_refused(cifar_gan) -> None:
    with pytest.raises(ValueError, match=r"model\.compile_mode must be one of"):
        cifar_gan(compile_mode="fastest")


def test_gan_adam_is_fused_by_default_on_cpu() -> None:
    params = list(nn.Linear(3, 2).parameters())
    assert GANAdam(params).defaults["fused"] is True
    assert GANAdam([{"params": params}]).defaults["fused"] is True
    assert GANAdam(params, fused=False).defaults["fused"] is False  # the user's choice wins
    assert GANAdam(params, foreach=True).defaults["fused"] is None
    assert GANAdam([torch.zeros(2, dtype=torch.long)]).defaults["fused"] is None  # no fused kernel: torch decides


@pytest.mark.parametrize("option", [{}, {"fused": True}, {"foreach": True}])
def test_fused_and_foreach_adam_train_like_the_per_tensor_loop(cifar_dir: Path, option: dict, cifar_gan, fit) -> None:
    params = []
    for opt in ({"fused": False, "foreach": False}, option):  # torch's per-tensor loop, then the option
        torch.manual_seed(0)
        factory = partial(GANAdam, **opt)
        model = cifar_gan(g_optimizer=factory, d_optimizer=factory)
        L.seed_everything(0)
        trainer = fit(model, _data(cifar_dir), batches=3)
        assert model.d_updates == 3
        assert trainer.optimizers[0].defaults["fused"] == opt.get("fused", None if opt.get("foreach") else True)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(params[0], torch.cat([p.detach().flatten() for p in cifar_gan().parameters()]))
    # Same updates up to float rounding: Adam's first steps move a weight by about lr = 2e-4, and a rounding
    # difference in a near-zero gradient can flip part of one step, so compare against a fraction of lr.
    diff = (params[1] - params[0]).abs()
    assert diff.max() < 1e-4 and (diff > 1e-6).float().mean() < 0.01


class _ConvG(nn.Module):
    def __init__(self, latent_dim: int = 16, image_shape: tuple = SHAPE) -> None:
        super().__init__()
        self.fc = nn.Linear(latent_dim, 8 * 8 * 8)
        self.up = nn.Sequential(nn.ConvTranspose2d(8, 3, 4, stride=4), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(z).view(-1, 8, 8, 8))


class _ConvD(nn.Module):
    def __init__(self, image_shape: tuple = SHAPE) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_channels_last_converts_only_4d_weights_and_trains_the_same(cifar_dir: Path, fit) -> None:
    params = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = GAN(_ConvG(), _ConvD(), latent_dim=16, image_shape=SHAPE, noise_seed=0, channels_last=channels_last)
        four_d = [p for p in model.parameters() if p.dim() == 4]
        assert len(four_d) == 2
        for p in four_d:
            assert p.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert all(p.is_contiguous() for p in model.parameters() if p.dim() != 4)
        L.seed_everything(0)
        fit(model, _data(cifar_dir), batches=2)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(params[1], params[0], rtol=1e-4, atol=1e-5)


# --- per-step logging only on the logger's steps --------------------------------------------------------------


def test_log_every_step_false_writes_the_same_tensorboard_scalars(
    cifar_dir: Path, tmp_path: Path, cifar_gan, fit
) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = []
    for every in (True, False):
        logger = TensorBoardLogger(str(tmp_path), name=f"every_{every}")
        L.seed_everything(0)
        model = cifar_gan(log_every_step=every)
        fit(model, _data(cifar_dir), batches=7, logger=logger, log_every_n_steps=3)
        events = EventAccumulator(logger.log_dir)
        events.Reload()
        tags = ("loss/d", "loss/g", "d/real", "d/fake")
        scalars.append({tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags})
    assert all(len(values) == 2 for values in scalars[0].values())  # 7 batches, written after the 3rd and 6th
    assert scalars[1] == scalars[0]
