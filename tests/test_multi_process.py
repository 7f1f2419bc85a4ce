"""Every config in configs/, every stage, on two processes (DDP on the CPU: the code path of ``--trainer.devices 2``
on GPUs), as a user runs them: ``fit`` with validation every epoch and the config's own callbacks, then
``validate``, ``test`` and ``predict`` of its checkpoint. Each run is bounded in time (tests/subprocesses.py), so a
hang fails the test instead of stalling the suite.

Beside them: the figures of one and two processes agree (Parzen window, samples); SIGTERM stops a run on every
rank, with a checkpoint that resumes exactly; a run hung in a collective ends, by its timeout or a signal, with a
message naming the stage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.fake_data import write_cifar10, write_mnist
from tests.subprocesses import ROOT, run_cli
from tests.test_resume import assert_same_training_state

SMALL_FEATURES = json.dumps(
    {
        "class_path": "metrics.InceptionMetrics",
        "init_args": {
            "num_samples": 40, "feature_extractor": {"class_path": "tests.probes.SmallFeatures"},
            "batch_size": 16, "is_splits": 2, "kid_subsets": 5, "kid_subset_size": 20, "reference": "train",
        },
    }
)  # fmt: skip

# Tiny networks and data per config; the config's own callbacks stay. cifar.yaml enables its commented-out
# InceptionMetrics (with a small stand-in for Inception, FID against the training split's statistics, computed by
# both ranks and cached) so that FID / IS / KID run on two processes too.
CONFIGS = {
    "cifar": ["--model.generator.init_args.hidden_dims", "[16, 16, 16]",
              "--model.discriminator.init_args.hidden_dims", "[16]", "--data.verify_checksums", "false",
              "--data.batch_size", "8", f"--trainer.callbacks+={SMALL_FEATURES}"],
    "cifar_conv": ["--model.generator.init_args.base_channels", "4", "--model.discriminator.init_args.base_channels",
                   "4", "--data.verify_checksums", "false", "--data.batch_size", "8"],
    "mnist": ["--model.generator.init_args.hidden_dims", "[24, 24]",
              "--model.discriminator.init_args.hidden_dims", "[10, 10]", "--data.val_size", "40",
              "--data.batch_size", "16"],
    "paper_cifar10_fc": ["--model.generator.init_args.hidden_dims", "[16, 16]",
                         "--model.discriminator.init_args.hidden_dims", "[16, 16]", "--data.verify_checksums",
                         "false", "--data.batch_size", "8", "--data.val_size", "40"],
    "paper_cifar10_conv": ["--model.generator.init_args.hidden_dims", "[16, 100]",
                           "--model.discriminator.init_args.conv_layers",
                           "[[4, 2, 8, 4, 4, 2], [4, 2, 8, 3, 4, 2], [4, 2, 5, 3, 2, 2]]",
                           "--model.discriminator.init_args.dense", "[8, 2]", "--data.verify_checksums", "false",
                           "--data.batch_size", "8", "--data.val_size", "40"],
    "ring8": ["--data.num_train", "1024", "--data.batch_size", "64"],
    "grid25": ["--data.num_train", "1024", "--data.batch_size", "64"],
    "grid25+pack": ["--data.num_train", "1024", "--data.batch_size", "64", "--model.pack", "4"],  # PacGAN's D
}  # fmt: skip

# What a validation logs, besides D's statistics, and the figures it writes into the run folder.
EVALUATION = {
    "cifar": (["fid", "kid_mean", "is_mean"], []),
    "cifar_conv": ([], []),
    "mnist": (["parzen/ll", "parzen/ll_se", "parzen/sigma", "parzen_ema/ll"], ["parzen/curve.png"]),
    "paper_cifar10_fc": ([], []),
    "paper_cifar10_conv": ([], []),
    "ring8": (["modes/captured", "modes/high_quality", "modes/reverse_kl"], ["modes/samples.png"]),
    "grid25": (["modes/captured", "modes/high_quality", "modes/reverse_kl"], ["modes/samples.png"]),
}
EVALUATION["grid25+pack"] = EVALUATION["grid25"]
EPOCHS = 2
TIMEOUT = 240  # seconds per run: two processes start in ~15 s here; a hang fails the test after this


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    mnist, cifar = tmp_path_factory.mktemp("mnist"), tmp_path_factory.mktemp("cifar")
    write_mnist(mnist, n_train=40 + 160, n_test=32)
    write_cifar10(cifar, n_train=160, n_test=40)
    return {"cifar": cifar, "cifar_conv": cifar, "paper_cifar10_fc": cifar, "paper_cifar10_conv": cifar,
            "mnist": mnist, "ring8": None, "grid25": None, "grid25+pack": None}  # fmt: skip


def config_file(config: str) -> str:
    """The file a CONFIGS entry runs (``grid25+pack``: configs/grid25.yaml with options)."""
    return config.split("+")[0]


def args(config: str, data: dict, logs: Path, devices: int, *extra: str) -> list[str]:
    out = ["--config", f"configs/{config_file(config)}.yaml", *CONFIGS[config], "--trainer.accelerator", "cpu"]
    out += ["--trainer.devices", str(devices), "--trainer.logger.init_args.save_dir", str(logs)]
    out += ["--trainer.enable_progress_bar", "false"]
    return out + (["--data.data_dir", str(data[config])] if data[config] else []) + list(extra)


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def newest_run(logs: Path, config: str) -> Path:
    return max((logs / config).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_stage_of_every_config_on_two_processes(config, data, tmp_path):
    logs, (tags, figures) = tmp_path / "logs", EVALUATION[config]
    fit = run_cli(
        "fit", *args(config, data, logs, 2, "--trainer.max_epochs", str(EPOCHS), "--trainer.limit_train_batches",
                     "3", "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "2"),
        timeout=TIMEOUT,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = logs / config_file(config) / "version_0"
    logged = scalars(run)
    # What the one-process run logs: D's statistics, the epoch means, d/won_epochs, the config's metrics.
    for tag in ["val/d_real", "val/d_fake", "loss/d_epoch", "d/fake_epoch", "d/won_epochs", *tags]:
        assert len(logged.get(tag, [])) == EPOCHS, (tag, sorted(logged))
    for figure in figures:
        assert (run / figure).is_file(), figure
    checkpoints = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints and f"epoch={EPOCHS - 1}-step={2 * 3 * EPOCHS}.ckpt" in checkpoints
    if config == "grid25+pack":  # D was built for packs of 4 points: 8 inputs
        state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        assert state["D.net.1.linear.weight"].shape == (1000, 8)
    if config == "mnist":  # SampleVariety after every training epoch
        assert len(logged.get("samples/variety", [])) == len(logged.get("samples_ema/variety", [])) == EPOCHS
    if config == "mnist":  # ModelCheckpoint(monitor=parzen/ll) found its metric on every rank, EarlyStopping too
        assert any(name.startswith("best-epoch=") for name in checkpoints), checkpoints

    for stage in ("validate", "test"):
        proc = run_cli(stage, *args(config, data, logs, 2, "--ckpt_path", "last"), timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        for tag in tags:  # rank 0 prints the results table
            assert tag in proc.stdout, (stage, tag, proc.stdout[-2000:])
    out = tmp_path / "samples"
    proc = run_cli(
        "predict",
        *args(config, data, logs, 2, "--ckpt_path", "last", "--sampler.output_dir", str(out)),
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out / "samples.npz") as npz:
        samples = npz["images"] if "images" in npz else npz["samples"]
    expected = 2500 if config_file(config) in ("ring8", "grid25") else 64  # data.num_predict's defaults
    assert len(samples) == expected and len(np.unique(samples.reshape(expected, -1), axis=0)) == expected


def test_one_and_two_processes_give_the_same_fid_against_the_training_split(data, tmp_path):
    logs = tmp_path / "logs"
    fit = run_cli("fit", *args("cifar", data, logs, 1, "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                               "3", "--trainer.limit_val_batches", "0"), timeout=TIMEOUT)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = str(logs / "cifar" / "version_0" / "checkpoints" / "last.ckpt")
    figures = {}
    for devices in (2, 1):  # two first: the statistics are computed by both ranks, then read from the cache
        proc = run_cli("validate", *args("cifar", data, logs, devices, "--ckpt_path", ckpt), timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logged = scalars(newest_run(logs, "cifar"))
        figures[devices] = {tag: logged[tag][-1][1] for tag in ("fid", "kid_mean", "is_mean")}
    print(figures)
    for tag, value in figures[1].items():
        assert figures[2][tag] == pytest.approx(value, rel=1e-4, abs=1e-6), tag


def test_one_and_two_processes_give_the_same_figures(data, tmp_path):
    """The Parzen figure of validate and the samples of predict, on one process and on two, from one checkpoint:
    each rank generates a block of the same samples and scores a block of the images."""
    logs = tmp_path / "logs"
    fit = run_cli("fit", *args("mnist", data, logs, 1, "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                               "3", "--trainer.limit_val_batches", "0"), timeout=TIMEOUT)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = str(logs / "mnist" / "version_0" / "checkpoints" / "last.ckpt")
    figures, samples = {}, {}
    for devices in (1, 2):
        proc = run_cli("validate", *args("mnist", data, logs, devices, "--ckpt_path", ckpt), timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logged = scalars(newest_run(logs, "mnist"))
        figures[devices] = {tag: logged[tag][-1][1] for tag in ("parzen/ll", "parzen/ll_se", "parzen_ema/ll")}
        out = tmp_path / f"samples{devices}"
        proc = run_cli("predict", *args("mnist", data, logs, devices, "--ckpt_path", ckpt, "--sampler.output_dir",
                                        str(out)), timeout=TIMEOUT)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(out / "samples.npz") as npz:
            samples[devices] = npz["images"]
    print(figures)
    for tag, value in figures[1].items():
        assert figures[2][tag] == pytest.approx(value, rel=1e-5, abs=1e-4), tag
    assert np.array_equal(samples[1], samples[2])


def test_every_rank_closes_its_process_group_when_the_run_ends(data, tmp_path):
    """A gloo group left open to the interpreter's teardown can abort a finished run (SIGABRT, exit -6: seen once in
    CI after a two-process predict had written its samples); ``cli.main`` closes it. Each rank (rank 1 is started
    by Lightning from the same script) writes whether its group is still open after ``main`` returned."""
    script = tmp_path / "run_and_report.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import torch.distributed as dist\n"
        "import cli\n"
        "cli.main()\n"
        "rank = os.environ.get('LOCAL_RANK', '0')\n"
        f"open(os.path.join({str(tmp_path)!r}, f'rank{{rank}}.txt'), 'w').write(str(dist.is_initialized()))\n"
    )
    proc = run_cli("validate", *args("grid25", data, tmp_path / "logs", 2, "--trainer.limit_val_batches", "1"),
                   timeout=TIMEOUT, script=str(script))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "modes/captured" in proc.stdout  # the validation ran and printed its results
    assert {f.name: f.read_text() for f in tmp_path.glob("rank*.txt")} == {"rank0.txt": "False", "rank1.txt": "False"}


# --- stopping: a signal, a timeout ----------------------------------------------------------------------------------


def last_state(logs: Path) -> dict:
    path = logs / "cifar" / "version_0" / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)


def test_sigterm_stops_every_rank_with_a_checkpoint_that_resumes_exactly(data, tmp_path):
    """SIGTERM arrives at rank 0 between two training steps (sent to itself, as ``kill`` would): both ranks stop after
    the same batch, ``last.ckpt`` is written, and the resumed run ends bitwise where the uninterrupted one does."""
    common = ["--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = run_cli("fit", *args("cifar", data, straight, 2, *common), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    signal_at = ["--trainer.callbacks+=tests.probes.SignalAt", "--trainer.callbacks.global_step", "14"]
    proc = run_cli("fit", *args("cifar", data, stopped, 2, *common, *signal_at), timeout=TIMEOUT)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert proc.stderr.count("error: stopped by SIGTERM after fit (train)") == 1, proc.stderr[-3000:]
    assert "resume with --ckpt_path last" in proc.stderr
    assert last_state(stopped)["global_step"] == 16  # after the batch in which the signal came (k = 1: 2 steps each)
    proc = run_cli("fit", *args("cifar", data, stopped, 2, *common, "--ckpt_path", "last"), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = last_state(straight), last_state(stopped)
    assert a["global_step"] == b["global_step"] == 40
    assert_same_training_state(a, b)


def hang(data: dict, logs: Path, marker: Path, *extra: str) -> subprocess.Popen:
    """A two-process fit whose rank 0 enters a barrier alone at the start of epoch 1 (tests.probes.HangAt)."""
    cmd = [sys.executable, "cli.py", "fit", *args("cifar", data, logs, 2, "--trainer.max_epochs", "3",
           "--trainer.limit_val_batches", "0", "--trainer.callbacks+=tests.probes.HangAt", *extra)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HANG_MARKER": str(marker)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            start_new_session=True)  # fmt: skip


def ended_within(proc: subprocess.Popen, seconds: float) -> str:
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the run did not end within {seconds} s") from None
    return err


def test_a_run_hung_in_a_collective_ends_at_the_timeout_naming_the_stage(data, tmp_path):
    proc = hang(data, tmp_path / "logs", tmp_path / "marker", "--ddp_timeout", "30")
    err = ended_within(proc, TIMEOUT)
    assert proc.returncode == 1, err[-3000:]
    assert (tmp_path / "marker").is_file()  # it did hang
    assert "waited 30 s (--ddp_timeout) in a collective operation during fit (train), epoch 1" in err, err[-3000:]


def test_sigterm_ends_a_run_hung_in_a_collective_within_the_grace_period(data, tmp_path):
    marker = tmp_path / "marker"
    proc = hang(data, tmp_path / "logs", marker, "--stop.grace_s", "3")
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the run never reached the hang"
        time.sleep(0.2)
    time.sleep(2)  # both ranks now wait in collectives that never match
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # to rank 0, as `kill <pid>` or a scheduler does; it passes it on
    err = ended_within(proc, 30)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert took < 3 + 5, took
    assert "stopped by SIGTERM during fit (train), epoch 1" in err and "not stopped within 3 s" in err, err[-3000:]
    # Every process of the run is gone (rank 1 too, which rank 0 had started): give the kernel a moment to reap.
    for _ in range(50):
        listing = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(proc.pid)], capture_output=True, text=True)
        alive = [line.split()[0] for line in listing.stdout.splitlines() if not line.split()[1].startswith("Z")]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"processes of the run still alive 10 s after it ended: {alive}"
