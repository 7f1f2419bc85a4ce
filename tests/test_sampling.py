"""Sampling without the data set: ``interpolate``, ``SampleWriter`` and ``python cli.py predict`` end to end
(after a short ``fit`` and a ``test`` with the Parzen-window callback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

from gan_module import GAN
from networks import MLPDiscriminator, MLPGenerator
from sampling import SampleWriter, interpolate
from tests.fake_data import write_cifar10

ROOT = Path(__file__).resolve().parents[1]


def test_interpolate_is_linear_between_the_ends() -> None:
    z0, z1 = torch.randn(3, 5), torch.randn(3, 5)
    z = interpolate(z0, z1, steps=4).reshape(3, 4, 5)
    torch.testing.assert_close(z[:, 0], z0)
    torch.testing.assert_close(z[:, -1], z1)
    torch.testing.assert_close(z[:, 1], z0 + (z1 - z0) / 3)
    torch.testing.assert_close(z[:, 2], z0 + 2 * (z1 - z0) / 3)


def test_sample_writer_files_hold_g_samples_and_interpolation_rows(tmp_path: Path) -> None:
    shape = (3, 8, 8)
    torch.manual_seed(0)
    model = GAN(
        MLPGenerator(latent_dim=4, image_shape=shape, hidden_dims=(8, 8)),
        MLPDiscriminator(image_shape=shape, hidden_dims=(8,)),
        latent_dim=4,
        image_shape=shape,
        grid_size=2,
    )
    writer = SampleWriter(output_dir=str(tmp_path / "out"), nrow=5, num_rows=3, interpolation_steps=4, seed=7)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    torch.manual_seed(1)
    predictions = trainer.predict(model, DataLoader(torch.arange(10), batch_size=4))
    samples = torch.cat(predictions)

    images = np.load(tmp_path / "out" / "samples.npz")["images"]
    assert images.dtype == np.uint8 and images.shape == (10, 8, 8, 3)
    np.testing.assert_array_equal(images, samples.permute(0, 2, 3, 1).numpy())

    grid = torchvision.io.read_image(str(tmp_path / "out" / "samples.png"))
    assert tuple(grid.shape) == (3, 2 * 10 + 2, 5 * 10 + 2)  # 2 rows of 5, 2-pixel padding

    # interpolation.png: row i is G along the line between the i-th random pair of z (the writer's seed)
    ends = model.sample_z(6, torch.Generator().manual_seed(7))
    expected = model.generate(interpolate(ends[:3], ends[3:], 4))
    expected = torchvision.utils.make_grid(expected.float() / 255, nrow=4, padding=2)
    expected = expected.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # what save_image stores
    assert torch.equal(torchvision.io.read_image(str(tmp_path / "out" / "interpolation.png")), expected)


@pytest.mark.parametrize("kwargs", [{"num_rows": 0}, {"interpolation_steps": 1}, {"nrow": 0}])
def test_sample_writer_refuses_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="sampler."):
        SampleWriter(**kwargs)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_predict_writes_the_three_files_without_the_data_set(tmp_path: Path) -> None:
    data, logs, out = write_cifar10(tmp_path / "data", n_train=160, n_test=32), tmp_path / "logs", tmp_path / "out"
    small = [
        "--model.generator.init_args.hidden_dims",
        "[16, 16]",
        "--model.discriminator.init_args.hidden_dims",
        "[16]",
    ]
    run_cli(
        "fit", "--config", "configs/cifar.yaml", "--data.data_dir", str(data), "--data.verify_checksums", "false",
        "--trainer.logger.init_args.save_dir", str(logs), "--trainer.max_steps", "4", "--trainer.accelerator", "cpu",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", "--model.ema_decay", "0.9",
        *small,
    )  # fmt: skip
    (checkpoint,) = logs.glob("cifar/version_0/checkpoints/last.ckpt")

    # `test` with the Parzen-window callback added on the command line prints the paper's figure
    result = run_cli(
        "test", "--config", "configs/cifar.yaml", "--ckpt_path", str(checkpoint), "--data.data_dir", str(data),
        "--data.verify_checksums", "false", "--trainer.logger.init_args.save_dir", str(logs),
        "--trainer.accelerator", "cpu", "--model.ema_decay", "0.9", "--trainer.callbacks+=metrics.ParzenWindow",
        "--trainer.callbacks.num_samples", "100", "--trainer.callbacks.num_val", "16", *small,
    )  # fmt: skip
    for name in ("parzen/ll", "parzen/ll_se", "parzen/sigma"):
        assert name in result.stdout
    assert any(k.startswith("G_ema.") for k in torch.load(checkpoint, weights_only=False)["state_dict"])
    shutil.rmtree(data)  # predict must need neither the data set nor its download

    run_cli(
        "predict", "--config", "configs/cifar.yaml", "--ckpt_path", str(checkpoint), "--data.data_dir", str(data),
        "--trainer.logger.init_args.save_dir", str(logs), "--trainer.accelerator", "cpu", "--model.ema_decay", "0.9",
        "--data.num_predict", "30", "--sampler.output_dir", str(out), "--sampler.num_rows", "3",
        "--sampler.interpolation_steps", "5", *small,
    )  # fmt: skip
    assert not data.exists()
    images = np.load(out / "samples.npz")["images"]
    assert images.dtype == np.uint8 and images.shape == (30, 32, 32, 3)
    assert images.std() > 0  # G's samples, not a blank array
    grid = torchvision.io.read_image(str(out / "samples.png"))
    assert tuple(grid.shape) == (3, 5 * 34 + 2, 6 * 34 + 2)  # 30 samples: 5 rows of 6 (ceil(sqrt(30)))
    interpolation = torchvision.io.read_image(str(out / "interpolation.png"))
    assert tuple(interpolation.shape) == (3, 3 * 34 + 2, 5 * 34 + 2)
