"""Crash-safe checkpoints, options that are never silently replaced, and one-line errors for damaged files.

(Exact resume is tests/test_resume.py.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cli
from checkpoints import PARTIAL, read_checkpoint
from tests.fake_data import write_cifar10, write_mnist

ROOT = Path(__file__).resolve().parents[1]


def args_for(cifar_dir: Path, logs: Path, *extra: str) -> list[str]:
    return [
        "--config", "configs/cifar.yaml", "--data.data_dir", str(cifar_dir), "--data.verify_checksums", "false",
        "--data.batch_size", "16", "--trainer.limit_train_batches", "10",  # 10 batches an epoch
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(logs),
        "--model.generator.init_args.hidden_dims", "[16, 16, 16]",
        "--model.discriminator.init_args.hidden_dims", "[16]",
        *extra,
    ]  # fmt: skip


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def checkpoints_of(logs: Path) -> Path:
    return logs / "cifar" / "version_0" / "checkpoints"


# --- kill -9 at any moment, during checkpoint writes too ------------------------------------------------------


def test_kill_9_anywhere_never_leaves_a_bad_checkpoint_and_resume_always_works(cifar_dir, tmp_path):
    # A 3 M-parameter D (36 MB with Adam's state) written after every batch: most of the time goes to writing,
    # and TMPDIR on another file system (tmpfs), as on cluster nodes with a local /tmp.
    tmpdir = Path("/dev/shm") / f"gan-test-{os.getpid()}" if Path("/dev/shm").is_dir() else tmp_path / "tmp"
    tmpdir.mkdir()
    logs, folder = tmp_path / "logs", checkpoints_of(tmp_path / "logs")
    args = args_for(cifar_dir, logs, "--model.discriminator.init_args.hidden_dims", "[1024]")
    args += ["--checkpoint.every_n_train_steps", "2", "--trainer.max_epochs", "3"]
    env = {"TMPDIR": str(tmpdir)}
    rng = random.Random(0)
    mid_write = 0
    for attempt in range(8):
        resume = ["--ckpt_path", "last"] if attempt else []
        before = read_checkpoint(folder / "last.ckpt")["global_step"] if attempt else -1
        proc = subprocess.Popen(
            [sys.executable, "cli.py", "fit", *args, *resume], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        if attempt % 2 == 0:  # the moment a checkpoint is being written (once there is a last.ckpt to resume)
            while proc.poll() is None and time.monotonic() < deadline:
                if (folder / "last.ckpt").is_file() and list(folder.glob(f".*{PARTIAL}")):
                    break
                time.sleep(0.001)
        else:  # some time after this run's first checkpoint
            while proc.poll() is None and time.monotonic() < deadline:
                if folder.is_dir() and (folder / "last.ckpt").is_file():
                    if read_checkpoint(folder / "last.ckpt")["global_step"] > before:
                        break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, f"attempt {attempt} ended before it was killed: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_write += bool(list(folder.glob(f".*{PARTIAL}")))
        # Whatever moment it died at, every checkpoint file on disk is complete ...
        for path in folder.glob("*.ckpt"):
            read_checkpoint(path)
        # ... and nothing was written to TMPDIR.
        assert not list(tmpdir.iterdir())
    assert mid_write >= 3  # the test did kill writers in the middle of a write

    done = run("fit", *args, "--ckpt_path", "last", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_checkpoint(folder / "last.ckpt")["global_step"] == 3 * 10 * 2  # 3 epochs of 10 batches, k = 1
    assert not list(folder.glob(f".*{PARTIAL}"))  # the killed writers' partial files were cleaned up
    tmpdir.rmdir()


def test_resume_skips_an_unreadable_last_checkpoint_and_names_it(cifar_dir, tmp_path):
    logs = tmp_path / "logs"
    assert run("fit", *args_for(cifar_dir, logs, "--trainer.max_epochs", "1")).returncode == 0
    last = checkpoints_of(logs) / "last.ckpt"
    os.utime(checkpoints_of(logs) / "epoch=0-step=20.ckpt", (time.time() - 60,) * 2)
    last.write_bytes(b"")  # what a crash during a non-atomic write leaves
    proc = run("fit", *args_for(cifar_dir, logs, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Warning: skipping {last} is empty (0 bytes): a write was cut off; renamed to last.ckpt.unreadable" in (
        proc.stderr
    )
    assert f"Resuming from {checkpoints_of(logs) / 'epoch=0-step=20.ckpt'}" in proc.stderr
    assert read_checkpoint(last)["global_step"] == 40  # trained on from epoch 0's checkpoint to the end of epoch 1


# --- options given on the command line win over the checkpoint's, for `last` and a path alike -------------------


@pytest.mark.parametrize("how", ["last", "path"])
def test_options_given_with_a_checkpoint_are_honoured(cifar_dir, tmp_path, how):
    logs = tmp_path / "logs"
    assert run("fit", *args_for(cifar_dir, logs, "--trainer.max_epochs", "1")).returncode == 0
    ckpt = "last" if how == "last" else str(checkpoints_of(logs) / "last.ckpt")
    extra = ["--trainer.max_epochs", "2", "--ckpt_path", ckpt, "--model.k", "2", "--model.loss", "minimax"]
    proc = run("fit", *args_for(cifar_dir, logs, *extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Note: options differ from the checkpoint's, this run uses the given ones: model.k=1 (here 2)" in proc.stderr
    resumed = read_checkpoint(checkpoints_of(logs) / "last.ckpt")
    assert resumed["hyper_parameters"]["k"] == 2 and resumed["hyper_parameters"]["loss"] == "minimax"
    assert resumed["gan"]["d_updates"] == 20 and resumed["global_step"] == 20 + 15  # epoch 1: 10 D, 5 G updates
    config = (logs / "cifar" / "version_0" / "config.yaml").read_text()
    assert "k: 2" in config and "loss: minimax" in config


def test_an_option_that_cannot_load_the_checkpoint_is_refused_in_one_line(cifar_dir, tmp_path, capsys):
    logs = tmp_path / "logs"
    assert run("fit", *args_for(cifar_dir, logs, "--trainer.max_steps", "2")).returncode == 0
    path = checkpoints_of(logs) / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", *args_for(cifar_dir, logs, "--ckpt_path", str(path), "--model.latent_dim", "100")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: --ckpt_path {path} does not fit the model these options build")
    assert "model.latent_dim=128 (here 100)" in err


# --- damaged files and bad values: one line naming the file or option, exit 2, nothing written ----------------


def _damaged(kind: str, root: Path) -> tuple[list[str], str]:
    """Arguments for a run on a damaged input, and the start of the one line it must end with."""
    logs = root / "logs"
    if kind in ("cifar_truncated", "cifar_random"):
        data = write_cifar10(root / "cifar", n_train=160, n_test=16)
        batch = data / "cifar-10-batches-py" / "data_batch_3"
        batch.write_bytes(batch.read_bytes()[:5000] if kind == "cifar_truncated" else random.Random(0).randbytes(5000))
        return args_for(data, logs), f"error: {batch} is unreadable ("
    if kind == "mnist_truncated":
        write_mnist(root / "mnist", n_train=300, n_test=50)
        gz = root / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
        gz.write_bytes(gz.read_bytes()[:3000])
        args = ["--config", "configs/mnist.yaml", "--data.data_dir", str(root / "mnist"), "--data.val_size", "100"]
        return [*args, "--trainer.logger.init_args.save_dir", str(logs)], f"error: {gz} is unreadable (EOFError"
    data = write_cifar10(root / "cifar", n_train=160, n_test=16)
    if kind in ("checkpoint_half", "checkpoint_empty", "checkpoint_missing"):
        path = root / "run.ckpt"
        if kind == "checkpoint_half":
            torch.save({"state_dict": {"w": torch.zeros(10000)}}, path)
            path.write_bytes(path.read_bytes()[:20000])
            expected = f"error: --ckpt_path: {path} is not a readable checkpoint"
        elif kind == "checkpoint_empty":
            path.write_bytes(b"")
            expected = f"error: --ckpt_path: {path} is empty (0 bytes)"
        else:
            expected = f"error: --ckpt_path: {path} does not exist"
        return args_for(data, logs, "--ckpt_path", str(path)), expected
    if kind == "yaml_syntax":
        bad = root / "bad.yaml"
        bad.write_text("trainer:\n  max_epochs: [1\n")
        return [*args_for(data, logs), "--config", str(bad)], f"error: {bad} is not valid YAML: "
    assert kind == "batch_size_0"
    return args_for(data, logs, "--data.batch_size", "0"), "error: data.batch_size must be an integer >= 1, got 0"


@pytest.mark.parametrize(
    "kind",
    [
        "cifar_truncated", "cifar_random", "mnist_truncated", "checkpoint_half", "checkpoint_empty",
        "checkpoint_missing", "yaml_syntax", "batch_size_0",
    ],
)  # fmt: skip
def test_damaged_input_is_one_line_with_exit_code_2_and_nothing_written(kind, tmp_path):
    args, expected = _damaged(kind, tmp_path)
    proc = run("fit", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(expected), lines[-1]
    assert "Traceback" not in proc.stderr and sum(line.startswith("error:") for line in lines) == 1
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())  # no empty version_N
