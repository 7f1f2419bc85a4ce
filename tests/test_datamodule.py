import pickle
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from datamodule import CIFAR10DataModule, CIFAR100DataModule, DataError
from tests.fake_data import write_cifar100


def test_cifar10_is_read_as_uint8_nchw_in_the_original_layout(cifar_dir):
    dm = CIFAR10DataModule(str(cifar_dir), batch_size=16, verify_checksums=False, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.image_shape == (3, 32, 32)
    assert dm.train_images.dtype == torch.uint8 and dm.train_images.shape == (320, 3, 32, 32)
    # Each pickle row is 1024 red, 1024 green, 1024 blue values, row-major: channel-major NCHW.
    with open(cifar_dir / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][0]
    assert np.array_equal(dm.train_images[0].numpy().reshape(-1), row)
    # Validation falls back to the test split; the test split is the test batch.
    assert torch.equal(dm.val_images, dm.test_images) and len(dm.test_images) == 64
    batch = next(iter(dm.train_dataloader()))
    assert batch.dtype == torch.uint8 and batch.shape == (16, 3, 32, 32)
    assert len(dm.train_dataloader()) == 320 // 16  # drop_last: every D update gets a full minibatch


def test_val_size_holds_out_the_end_of_the_train_split(cifar_dir):
    dm = CIFAR10DataModule(str(cifar_dir), val_size=50, verify_checksums=False, download=False)
    dm.setup("fit")
    full = CIFAR10DataModule(str(cifar_dir), verify_checksums=False, download=False)
    full.setup("fit")
    assert len(dm.train_images) == 270 and torch.equal(dm.val_images, full.train_images[270:])


def test_checksums_are_verified_by_default(cifar_dir):
    dm = CIFAR10DataModule(str(cifar_dir), download=False)
    # Random pixels: every batch file fails the archive's md5 sums, and the message names them.
    with pytest.raises(DataError, match="is damaged: data_batch_1, .*test_batch missing or failing its md5 check"):
        dm.prepare_data()


def test_missing_data_and_failed_download_give_one_clear_message(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # torchvision's download goes through it
    dm = CIFAR10DataModule(str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    assert "the download failed" in msg and "no network" in msg
    assert "cifar-10-python.tar.gz" in msg and f"tar -xzf cifar-10-python.tar.gz -C {tmp_path / 'nowhere'}" in msg


def test_bad_options_are_refused(cifar_dir):
    with pytest.raises(ValueError, match="data.batch_size must be an integer >= 1"):
        CIFAR10DataModule(str(cifar_dir), batch_size=0)
    dm = CIFAR10DataModule(str(cifar_dir), batch_size=512, verify_checksums=False, download=False)
    with pytest.raises(DataError, match="data.batch_size=512 is larger than the 320 training images"):
        dm.setup("fit")


# --- CIFAR-100: the same family, its own archive -----------------------------------------------------------------


def test_cifar100_is_read_from_its_original_layout(tmp_path):
    written = write_cifar100(tmp_path, n_train=120, n_test=30)
    dm = CIFAR100DataModule(str(tmp_path), batch_size=16, verify_checksums=False, download=False, val_size=20)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.image_shape == (3, 32, 32) and dm.name == "CIFAR-100"
    assert dm.train_images.dtype == torch.uint8 and dm.train_images.shape == (100, 3, 32, 32)
    assert np.array_equal(dm.train_images.reshape(100, -1).numpy(), written["train"][:100])  # channel-major rows
    assert np.array_equal(dm.val_images.reshape(20, -1).numpy(), written["train"][100:])
    assert np.array_equal(dm.test_images.reshape(30, -1).numpy(), written["test"])
    with pytest.raises(DataError, match="CIFAR-100 in .*cifar-100-python is damaged: train, test missing or failing"):
        CIFAR100DataModule(str(tmp_path), download=False).prepare_data()  # random pixels: md5 sums fail


def test_cifar100_offline_message_names_its_archive(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as err:
        CIFAR100DataModule(str(tmp_path / "nowhere")).prepare_data()
    msg = str(err.value)
    assert msg.startswith(f"CIFAR-100 was not found in {tmp_path / 'nowhere' / 'cifar-100-python'} and the download")
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in msg
    assert f"tar -xzf cifar-100-python.tar.gz -C {tmp_path / 'nowhere'}" in msg


def test_cifar100_trains_through_the_cli(tmp_path):
    from tests.subprocesses import run_cli

    write_cifar100(tmp_path / "data", n_train=64, n_test=16)
    args = ["fit", "--config", "configs/cifar.yaml", "--data", "datamodule.CIFAR100DataModule"]
    args += ["--data.data_dir", str(tmp_path / "data"), "--data.verify_checksums", "false", "--data.batch_size", "8"]
    args += ["--model.generator.init_args.hidden_dims", "[16]", "--model.discriminator.init_args.hidden_dims", "[16]"]
    args += ["--trainer.max_steps", "4", "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]
    args += ["--trainer.enable_progress_bar", "false"]
    proc = run_cli(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "logs" / "cifar" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    config = (tmp_path / "logs" / "cifar" / "version_0" / "config.yaml").read_text()
    assert "class_path: datamodule.CIFAR100DataModule" in config
