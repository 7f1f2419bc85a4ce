"""End to end through cli.py and configs/mnist.yaml on a tiny MNIST folder in the original format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cli

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_fit_and_test_with_the_paper_config(mnist_dir: Path, tmp_path: Path) -> None:
    data, logs = mnist_dir, tmp_path / "logs"  # data/MNIST/raw/*.gz, torchvision's layout
    common = [
        "--config", "configs/mnist.yaml", "--data.data_dir", str(data), "--data.val_size", "100",
        "--trainer.accelerator", "cpu", "--trainer.logger.init_args.save_dir", str(logs),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    fit = ["--trainer.max_steps", "4", "--trainer.log_every_n_steps", "1", "--trainer.check_val_every_n_epoch", "1"]
    _cli("fit", *common, *fit)
    run = logs / "mnist" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/d", "loss/g", "d/real", "d/fake", "lr-SGD-momentum", "val/d_real"} <= scalars
    assert "samples" in events.Tags()["images"]

    assert {"parzen/ll", "parzen/ll_se", "parzen/sigma"} <= scalars  # validation during fit
    assert "parzen/curve" in events.Tags()["images"] and (run / "parzen" / "curve.png").stat().st_size > 1000

    result = _cli("test", *common, "--ckpt_path", "last")
    assert "test/d_real" in result.stdout and "parzen/ll" in result.stdout  # Table 1's number on the test set


def test_fashion_mnist_switch_keeps_the_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the config's relative paths
    monkeypatch.setattr(sys, "argv", ["cli.py"])
    with pytest.raises(SystemExit):
        cli.main(
            [
                "fit", "--config", "configs/mnist.yaml", "--data", "datamodule.FashionMNISTDataModule",
                "--data.data_dir", str(tmp_path), "--print_config",
            ]
        )  # fmt: skip
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["class_path"] == "datamodule.FashionMNISTDataModule"
    assert config["data"]["init_args"]["data_dir"] == str(tmp_path)
    assert config["data"]["init_args"]["val_size"] == 10000 and config["data"]["init_args"]["batch_size"] == 100
    assert config["model"]["g_optimizer"]["init_args"] == {**config["model"]["g_optimizer"]["init_args"], "lr": 0.2}
    assert [c["class_path"] for c in config["trainer"]["callbacks"]][:4] == [
        "callbacks.MomentumRamp",
        "callbacks.ExponentialDecay",
        "callbacks.SigmoidBiasFromMarginals",
        "metrics.ParzenWindow",
    ]


@pytest.mark.parametrize(
    ("config", "data", "shape"),
    [
        ("configs/cifar_conv.yaml", "datamodule.CIFAR10DataModule", (3, 32, 32)),
        ("configs/cifar_conv.yaml", "datamodule.FashionMNISTDataModule", (1, 28, 28)),
        ("configs/mnist.yaml", "datamodule.MNISTDataModule", (1, 28, 28)),
    ],
)
def test_configs_build_their_networks_for_the_data(
    config: str, data: str, shape: tuple[int, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["cli.py"])
    args = ["--config", config, "--data", data, "--data.data_dir", str(tmp_path)]
    built = cli.GANCLI(args=[*args, "--trainer.logger.init_args.save_dir", str(tmp_path)], run=False)
    model = built.model
    assert model.image_shape == shape  # linked from the data into the model and both networks
    images = model.sample(3)
    assert images.shape == (3, *shape) and images.dtype == torch.uint8
    with torch.no_grad():
        assert model.D(model.to_model_range(images)).shape == (3, 1)


def test_default_mnist_config_is_the_authors_recipe_but_for_g_learning_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/mnist.yaml is configs/mnist_authors.yaml with G's rate doubled: every other resolved setting is equal."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["cli.py"])
    resolved = {}
    for name in ("mnist", "mnist_authors"):
        with pytest.raises(SystemExit):
            cli.main(["fit", "--config", f"configs/{name}.yaml", "--data.data_dir", str(tmp_path), "--print_config"])
        resolved[name] = yaml.safe_load(capsys.readouterr().out)
    ours, theirs = resolved["mnist"], resolved["mnist_authors"]
    assert ours["model"]["g_optimizer"]["init_args"]["lr"] == 0.2
    assert theirs["model"]["g_optimizer"]["init_args"]["lr"] == 0.1  # their mnist.yaml's learning_rate
    assert theirs["trainer"]["logger"]["init_args"]["name"] == "mnist_authors"  # runs of the two kept apart
    for config in (ours, theirs):
        config["model"]["g_optimizer"]["init_args"].pop("lr")
        config["trainer"]["logger"]["init_args"].pop("name")
    assert ours == theirs
