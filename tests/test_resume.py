"""A resumed run ends bitwise identical to the uninterrupted run, whether it resumed mid-epoch or between epochs.

Each case trains two epochs straight through, and the same run in three pieces: killed (SIGKILL) before the 5th
of the 10 batches of epoch 0, with a checkpoint after every batch (``checkpoint.every_n_train_steps``); resumed
with ``--ckpt_path last`` to the end of epoch 0; resumed again to the end of epoch 1.
Every tensor of the final state dict and of both optimizers' states must be equal, and so must the loop, the
callbacks' and the GAN's own state (D updates, noise seed). Real runs of ``cli.py`` on tiny networks, on the
host loader and ``data.on_device``, in one process and in two (DDP on the CPU). ``configs/mnist.yaml``
covers D's dropout (the global RNG), SGD momentum and the learning-rate schedule's state; ``configs/cifar.yaml``
covers Adam and G's BatchNorm.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from tests.fake_data import write_cifar10, write_mnist
from tests.subprocesses import run_cli

ROOT = Path(__file__).resolve().parents[1]
BATCHES = 10  # per epoch and process

TINY = {
    "configs/mnist.yaml": [
        "--model.generator.init_args.hidden_dims", "[24, 24]",
        "--model.discriminator.init_args.hidden_dims", "[12, 12]",
        "--data.val_size", "40", "--trainer.callbacks+=lightning.pytorch.callbacks.LearningRateMonitor",
    ],
    "configs/cifar.yaml": [
        "--model.generator.init_args.hidden_dims", "[16, 16, 16]",
        "--model.discriminator.init_args.hidden_dims", "[16]",
        "--data.verify_checksums", "false",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory) -> dict[str, Path]:
    mnist, cifar = tmp_path_factory.mktemp("mnist"), tmp_path_factory.mktemp("cifar")
    write_mnist(mnist, n_train=40 + BATCHES * 16, n_test=16)
    write_cifar10(cifar, n_train=BATCHES * 16, n_test=16)
    return {"configs/mnist.yaml": mnist, "configs/cifar.yaml": cifar}


def fit(
    config: str, data: Path, logs: Path, devices: int, on_device: bool, *extra: str, killed: bool = False,
    every_batch: bool = True,
) -> str:  # fmt: skip
    batch = 16 // devices  # the same global batch, so one and two processes take the same number of steps
    args = ["fit", "--config", config, "--data.data_dir", str(data), "--data.batch_size", str(batch)]
    args += [*TINY[config], "--data.on_device", str(on_device).lower(), "--trainer.devices", str(devices)]
    args += ["--trainer.accelerator", "cpu", "--trainer.logger.init_args.save_dir", str(logs)]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0", *extra]
    if every_batch:
        args += ["--checkpoint.every_n_train_steps", "2"]  # after every batch (k = 1: 2 optimizer steps each)
    proc = run_cli(*args, timeout=300, env={"PYTHONWARNINGS": "ignore"})
    if killed:  # SIGKILL; in two processes rank 0 may instead fail on the socket of the rank that died first
        assert proc.returncode == -9 or (devices == 2 and proc.returncode != 0), proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def last_checkpoint(logs: Path) -> dict:
    (path,) = logs.glob("*/version_0/checkpoints/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_bitwise_equal(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(a: dict, b: dict) -> None:
    """Two checkpoints hold bitwise the same weights, optimizer states and GAN state (D updates, noise seed, RNGs)."""
    for key in ("state_dict", "optimizer_states", "gan"):
        assert_bitwise_equal(a[key], b[key], key)


CASES = [
    ("configs/mnist.yaml", 1, False),
    ("configs/mnist.yaml", 1, True),
    ("configs/mnist.yaml", 2, False),
    ("configs/cifar.yaml", 1, False),
    ("configs/cifar.yaml", 2, True),
]


@pytest.mark.parametrize(("config", "devices", "on_device"), CASES)
def test_resumed_run_is_bitwise_the_straight_run(data_dirs, tmp_path, config, devices, on_device):
    data = data_dirs[config]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    fit(config, data, straight, devices, on_device, "--trainer.max_epochs", "2")
    kill = ["--trainer.callbacks+=tests.probes.KillAt", "--trainer.callbacks.global_step", "8"]  # before batch 5
    fit(config, data, pieces, devices, on_device, "--trainer.max_epochs", "2", *kill, killed=True)
    assert last_checkpoint(pieces)["gan"]["d_updates"] == 4  # written after batch 4 of epoch 0
    stderr = fit(config, data, pieces, devices, on_device, "--trainer.max_epochs", "1", "--ckpt_path", "last")
    assert stderr.count("Resuming from ") == 1  # said once, not once per rank
    assert last_checkpoint(pieces)["gan"]["d_updates"] == BATCHES
    fit(config, data, pieces, devices, on_device, "--trainer.max_epochs", "2", "--ckpt_path", "last")

    a, b = last_checkpoint(straight), last_checkpoint(pieces)
    assert a["gan"]["d_updates"] == 2 * BATCHES and a["global_step"] == b["global_step"] == 4 * BATCHES
    assert_same_training_state(a, b)
    # The schedules' states (ExponentialDecay's step count, ...) must match too. Not compared: ModelCheckpoint's
    # (file names) and EarlyStopping's: these checkpoints are written after a batch, before the epoch-end hooks,
    # and Lightning does not rerun the epoch-end hooks of an epoch whose last batch a resumed checkpoint holds.
    skip = ("ModelCheckpoint", "EarlyStopping")
    callbacks = {key: value for key, value in a["callbacks"].items() if not key.startswith(skip)}
    assert_bitwise_equal(callbacks, {key: b["callbacks"][key] for key in callbacks}, "callbacks")


def test_resume_from_the_end_of_epoch_validation_keeps_the_epoch_means(tiny_gan, image_loader, cpu_trainer, tmp_path):
    """With validation every few epochs (``check_val_every_n_epoch`` > 1, as in configs/mnist.yaml),
    ModelCheckpoint saves at the validation's end, before ``on_train_epoch_end``; Lightning runs that hook again
    on resume. It must see the epoch's means (saved with the checkpoint), so the resumed run logs the same
    ``d/fake_epoch`` as the straight one and an ``EarlyStopping`` on ``d/won_epochs`` finds it (it raised
    "metric d/won_epochs which is not available" when the means were lost)."""

    def fit(version: str, ckpt_path: str | None = None) -> list[dict[str, str]]:
        torch.manual_seed(0)
        trainer = cpu_trainer(
            max_epochs=2,
            limit_val_batches=1.0,
            check_val_every_n_epoch=2,
            enable_checkpointing=True,
            logger=CSVLogger(tmp_path, name="logs", version=version),
            callbacks=[
                ModelCheckpoint(dirpath=tmp_path / version, save_last=True),  # written at validation's end
                EarlyStopping("d/won_epochs", mode="min", divergence_threshold=2.5, patience=10**6,
                              check_on_train_epoch_end=True),
            ],
        )  # fmt: skip
        trainer.fit(tiny_gan(), image_loader(), image_loader(shuffle=False), ckpt_path=ckpt_path, weights_only=False)
        with open(tmp_path / "logs" / version / "metrics.csv") as f:
            return [row for row in csv.DictReader(f) if row.get("d/fake_epoch")]

    straight = fit("straight")
    assert [row["epoch"] for row in straight] == ["0", "1"]
    ckpt = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * 2 * len(image_loader())  # 2 epochs × (D + G step)

    resumed = fit("resumed", ckpt_path=str(tmp_path / "straight" / "last.ckpt"))
    assert [row["epoch"] for row in resumed] == ["1"]  # only the hook that the checkpoint came before
    for name in ("d/fake_epoch", "d/real_epoch", "loss/d_epoch", "loss/g_epoch", "d/won_epochs"):
        assert float(resumed[0][name]) == pytest.approx(float(straight[1][name]), rel=1e-6), name


def test_a_checkpoint_after_every_epoch_whatever_the_validation_interval(data_dirs, tmp_path):
    """configs/mnist.yaml validates every 10 epochs; a run killed (SIGKILL) as epoch 2 starts still has the
    checkpoint of epoch 1's end, and ``--ckpt_path last`` goes on from there to where the straight run ends."""
    config, data = "configs/mnist.yaml", data_dirs["configs/mnist.yaml"]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    three = ["--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "10"]
    fit(config, data, straight, 1, False, *three, every_batch=False)
    kill = ["--trainer.callbacks+=tests.probes.KillAt", "--trainer.callbacks.global_step", str(2 * 2 * BATCHES)]
    fit(config, data, pieces, 1, False, *three, *kill, killed=True, every_batch=False)
    saved = last_checkpoint(pieces)
    assert saved["epoch"] == 1 and saved["gan"]["d_updates"] == 2 * BATCHES  # the end of epoch 1
    stderr = fit(config, data, pieces, 1, False, *three, "--ckpt_path", "last", every_batch=False)
    assert "Resuming from " in stderr
    a, b = last_checkpoint(straight), last_checkpoint(pieces)
    assert a["gan"]["d_updates"] == b["gan"]["d_updates"] == 3 * BATCHES
    assert_same_training_state(a, b)


def test_resumed_twice_from_an_epoch_end_then_mid_epoch_is_bitwise_the_straight_run(data_dirs, tmp_path):
    # Lightning 2.x does not count the epoch after an epoch-end resume as started, so a checkpoint written inside
    # it read as an epoch-end one, and the second resume trained batches again (here 48 steps for 40, before
    # checkpoints.mark_mid_epoch).
    config, data = "configs/mnist.yaml", data_dirs["configs/mnist.yaml"]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    fit(config, data, straight, 1, False, "--trainer.max_epochs", "2")
    fit(config, data, pieces, 1, False, "--trainer.max_epochs", "1")  # ends with an epoch-end checkpoint
    kill = ["--trainer.callbacks+=tests.probes.KillAt", "--trainer.callbacks.global_step", str(2 * BATCHES + 8)]
    fit(config, data, pieces, 1, False, "--trainer.max_epochs", "2", "--ckpt_path", "last", *kill, killed=True)
    assert last_checkpoint(pieces)["gan"]["d_updates"] == BATCHES + 4  # after batch 4 of epoch 1
    fit(config, data, pieces, 1, False, "--trainer.max_epochs", "2", "--ckpt_path", "last")

    a, b = last_checkpoint(straight), last_checkpoint(pieces)
    assert a["global_step"] == b["global_step"] == 4 * BATCHES
    assert_same_training_state(a, b)
