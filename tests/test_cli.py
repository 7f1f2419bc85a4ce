"""End to end, the way a user runs it: ``python cli.py ... --config configs/cifar.yaml`` on a CIFAR-10 folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cli
from tests.subprocesses import run_cli

ROOT = Path(__file__).resolve().parents[1]


def base_args(cifar_dir, logs, *extra):
    return [
        "--config",
        str(ROOT / "configs" / "cifar.yaml"),
        "--data.data_dir",
        str(cifar_dir),
        "--data.verify_checksums",
        "false",  # random pixels: the md5 of the real archive cannot match
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(logs),
        *extra,
    ]


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_fit_logs_checkpoints_and_resumes(cifar_dir, tmp_path):
    logs = tmp_path / "logs"
    proc = run_cli("fit", *base_args(cifar_dir, logs, "--trainer.max_steps", "20", "--trainer.log_every_n_steps", "1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = logs / "cifar" / "version_0"
    acc = events(run_dir)
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/d", "loss/g", "d/real", "d/fake"} <= scalars
    assert {"loss/d_epoch", "loss/g_epoch", "d/real_epoch", "d/fake_epoch"} <= scalars
    assert [e.step for e in acc.Scalars("loss/d")] == list(range(10))  # one point per training batch
    images = acc.Images("samples")
    assert images and images[0].width == images[0].height == 8 * 32 + 9 * 2  # an 8×8 grid with padding
    assert [e.step for e in images] == list(range(len(images)))  # logged against the epoch
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 20 and ckpt["gan"]["d_updates"] == 10  # k = 1: 2 optimizer steps per D update
    assert (run_dir / "config.yaml").exists() and (run_dir / "hparams.yaml").exists()

    resume = ("--trainer.max_steps", "30", "--trainer.log_every_n_steps", "1", "--ckpt_path", "last")
    proc = run_cli("fit", *base_args(cifar_dir, logs, *resume))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Resuming from {last.relative_to(ROOT) if last.is_relative_to(ROOT) else last}" in proc.stderr
    assert not (logs / "cifar" / "version_1").exists()  # the resumed run logs into the run it continues
    resumed = torch.load(last, weights_only=False)
    assert resumed["global_step"] == 30 and resumed["gan"]["d_updates"] == 15
    assert torch.equal(resumed["state_dict"]["fixed_z"], ckpt["state_dict"]["fixed_z"])  # same grid noise
    # TensorBoard's x-axis for step scalars is Lightning's count of training batches (D updates here),
    # and the resumed run continues it: 5 more points, after the first run's 10.
    steps = [e.step for e in events(run_dir).Scalars("loss/d")]
    assert sorted(steps)[:10] == list(range(10)) and len([s for s in steps if s >= 10]) == 5


def test_bf16_mixed_precision_run(cifar_dir, tmp_path):
    logs = tmp_path / "logs"
    proc = run_cli(
        "fit",
        *base_args(cifar_dir, logs, "--trainer.max_steps", "8", "--trainer.precision", "bf16-mixed"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(logs / "cifar" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 8
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    config = (logs / "cifar" / "version_0" / "config.yaml").read_text()
    assert "precision: bf16-mixed" in config


def test_two_processes_keep_equal_weights_and_draw_different_noise(cifar_dir, tmp_path):
    logs, probe = tmp_path / "logs", tmp_path / "probe"
    callback = json.dumps({"class_path": "tests.probes.RankProbe", "init_args": {"out_dir": str(probe)}})
    proc = run_cli(
        "fit",
        *base_args(
            cifar_dir, logs, "--trainer.max_steps", "10", "--trainer.devices", "2", f"--trainer.callbacks+={callback}"
        ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(probe / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["strategy"] == "DDPStrategy"
    # Gradients were averaged across ranks: both networks stay identical on both ranks ...
    assert r0["params"].keys() == r1["params"].keys()
    assert any(name.startswith("G.") for name in r0["params"]) and any(n.startswith("D.") for n in r0["params"])
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name
    # ... and moved from where they started (the check above is not vacuous).
    assert r0["initial"].keys() == r0["params"].keys()
    for name, value in r0["params"].items():
        assert not torch.equal(value, r0["initial"][name]), f"{name} never moved"
    assert (
        torch.load(logs / "cifar" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 10
    )
    # Same global seed, yet each rank drew its own noise for every update.
    assert len(r0["z"]) == len(r1["z"]) == 10  # 5 D updates + 5 G updates per rank
    for z0, z1 in zip(r0["z"], r1["z"], strict=True):
        assert not torch.allclose(z0, z1)


# --- bad input: one clear message, before training ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.k", "0"], "model.k must be an integer >= 1, got 0"),
        (["--model.latent_dim", "0"], "latent_dim must be >= 1"),
        (["--model.g_optimizer.lr", "0"], "model.g_optimizer: the learning rate must be a number > 0, got 0.0"),
        (["--model.d_optimizer.lr", "-0.1"], "model.d_optimizer"),
        (["--model.loss", "hinge"], "model.loss"),
        (["--model.kk", "2"], "unrecognized arguments: --model.kk"),
        (["--trainer.strategy", "ddp"], "trainer.strategy='ddp' fails with the GAN's manual optimization"),
        (["--trainer.gradient_clip_val", "1"], "use --model.grad_clip_norm instead"),
        (["--trainer.accumulate_grad_batches", "2"], "trainer.accumulate_grad_batches must be 1"),
        (["--model.generator", "tests.probes.FixedShapeGenerator"], "makes images of shape (1, 28, 28)"),
        (["--model.generator", "tests.probes.LinearOutputGenerator"], "cannot tell the range of LinearOutputGenerator"),
        (["--ddp_timeout", "0"], "ddp_timeout must be a number of seconds > 0, got 0.0"),
        (["--stop.grace_s", "-1"], "stop.grace_s must be > 0, got -1.0"),
        (["--model.fake_pass", "shared"], "model.fake_pass shared (G's objective from D's own pass on the samples)"),
        (["--model.pack", "3"], "model.pack=3 must divide data.batch_size=64"),
        (["--model.pack", "0"], "model.pack must be an integer >= 1 (1: the paper's D), got 0"),
    ],
)
def test_bad_input_is_refused_before_training(cifar_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", *base_args(cifar_dir, tmp_path / "logs", "--trainer.max_steps", "2", *extra)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "logs" / "cifar" / "version_0" / "checkpoints").exists()  # nothing trained


def test_missing_data_is_one_line(tmp_path):
    proc = run_cli("fit", *base_args(tmp_path / "empty", tmp_path / "logs", "--data.download", "false"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: CIFAR-10 was not found in")
    assert "Traceback" not in proc.stderr


def test_resume_without_a_run_says_so(cifar_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", *base_args(cifar_dir, tmp_path / "logs", "--ckpt_path", "last")])
    assert "--ckpt_path last: no readable checkpoint under" in capsys.readouterr().err


def test_a_loss_that_goes_nan_stops_the_run_and_keeps_the_last_good_checkpoint(cifar_dir, tmp_path):
    logs = tmp_path / "logs"
    proc = run_cli(
        "fit",
        *base_args(
            cifar_dir,
            logs,
            "--model.discriminator",
            "tests.probes.NaNAfterDiscriminator",
            "--model.discriminator.init_args.after",
            "40",
            "--checkpoint.every_n_train_steps",
            "4",
        ),
    )
    assert proc.returncode == 2
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: loss/d became nan")
    assert "at global step 26 (epoch 2, after 13 D updates)" in last_line
    assert f"the last checkpoint written, {logs / 'cifar' / 'version_0' / 'checkpoints'}" in last_line
    ckpt = torch.load(logs / "cifar" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 24  # the last checkpoint before the failure ...
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())  # ... is good


def test_a_nan_before_any_checkpoint_says_that_none_was_written(cifar_dir, tmp_path):
    args = ["--model.discriminator", "tests.probes.NaNAfterDiscriminator", "--model.discriminator.init_args.after", "4"]
    proc = run_cli("fit", *base_args(cifar_dir, tmp_path / "logs", *args))
    assert proc.returncode == 2
    last_line = proc.stderr.strip().splitlines()[-1]
    assert "at global step 2 " in last_line and "no checkpoint had been written yet" in last_line
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


def test_clipping_under_16_bit_amp_does_not_use_fused_adam(cifar_dir, tmp_path):
    # Fused Adam unscales inside its step, too late for clipping; the CLI picks foreach Adam for this case.
    args = base_args(cifar_dir, tmp_path / "logs", "--model.grad_clip_norm", "1.0")
    fp32 = cli.GANCLI(args=args, run=False)
    assert fp32.model.configure_optimizers()[0].defaults["fused"]  # the default where torch has it
    fp16 = cli.GANCLI(args=[*args, "--trainer.precision", "16-mixed"], run=False)
    opt_d, opt_g = fp16.model.configure_optimizers()
    assert not opt_d.defaults["fused"] and opt_d.defaults["foreach"] and opt_g.defaults["foreach"]


@pytest.mark.parametrize("config", sorted(path.name for path in (ROOT / "configs").glob("*.yaml")))
def test_every_config_parses_with_its_class_paths(config):
    """Every config's class paths import and its values pass the parser's checks: a class moved to another
    module without its configs updated fails here (``print_config`` resolves each ``class_path``)."""
    cmd = [sys.executable, "cli.py", "fit", "--config", f"configs/{config}", "--print_config"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    parsed = yaml.safe_load(out.stdout)
    assert parsed["model"]["generator"]["class_path"] and parsed["model"]["discriminator"]["class_path"]
