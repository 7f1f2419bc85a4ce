"""The benchmark and report scripts that CI does not otherwise run (their figures come from a GPU or from long
runs): each way they measure still runs, on this CPU, at a tiny size. Their figures are not checked against
targets, only that every way produced them, and, where a script recomputes what a run logged, that the two agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_speed_script_measures_the_project_the_plain_loop_and_the_dataloader_loop() -> None:
    proc = run_script(
        "benchmarks/speed.py", "--overhead", "--n-images", "640", "--steps", "2", "--repeats", "1", "--warmup", "1",
        "--c-workers", "0", "--variant", "--data.on_device true",
    )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for way in ("a", "b", "c", "a2"):
        assert "error" not in result[way], result[way]
        assert result[way]["sec_per_step"] > 0 and result[way]["images_per_sec"] > 0
    assert result["a2"]["args"] == "--data.on_device true"
    assert {"a/b", "a/c", "a2/b", "a2/c"} <= set(result["ratios"])
    # One line per way on stderr as it is measured: what a run cut short by a time limit keeps.
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"way"')]
    assert [line["way"] for line in lines] == ["a", "b", "c", "a2"]


def test_precision_script_reports_each_run_and_draws_the_samples(mnist_dir: Path, tmp_path: Path) -> None:
    proc = run_script(
        "benchmarks/precision.py", "--mnist_dir", str(mnist_dir), "--steps", "4", "--log_every", "1",
        "--runs", "cifar:32-true", "cifar:bf16-mixed:clip", "--out", str(tmp_path),
    )  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["data"] == "MNIST as CIFAR-10" and 0 < lines[0]["data_mean"] < 1
    runs = {line["run"]: line for line in lines[1:]}
    assert set(runs) == {"cifar:32-true", "cifar:bf16-mixed:clip"}
    for run in runs.values():
        assert "error" not in run, run
        assert run["finite"] is True and run["logged_steps"] == 4
        assert 0 < run["sample_mean"] < 1 and run["sample_std"] > 0
    assert (tmp_path / "precision_samples.png").stat().st_size > 0


def test_mnist_draws_records_each_draw_and_resumes(mnist_dir: Path, tmp_path: Path) -> None:
    args = ["benchmarks/mnist_draws.py", "--data_dir", str(mnist_dir), "--seeds", "3,4", "--epochs", "2"]
    args += ["--save_dir", str(tmp_path), "--", "--model.generator.init_args.hidden_dims", "[16]"]
    args += [
        "--model.discriminator.init_args.hidden_dims",
        "[8, 8]",
        "--data.val_size",
        "40",
        "--data.batch_size",
        "64",
    ]
    first = json.loads(run_script(*args).stdout.strip().splitlines()[-1])
    assert first["draws"] == 2 and 0 <= first["dipped"] <= 2 and 0 <= first["died"] <= 2
    lines = [json.loads(line) for line in (tmp_path / "draws.jsonl").read_text().splitlines()]
    assert [line["seed"] for line in lines] == [3, 4]
    assert all(len(line["d_fake"]) == line["epochs"] <= 2 for line in lines)
    assert all(line["dipped"] == (min(line["d_fake"]) < 0.01) for line in lines)
    assert all(0 <= line["variety"] < 5 and 0 <= line["variety_ema"] < 5 for line in lines)  # from each last.ckpt
    assert first["collapsed"] == sum(line["variety"] < 0.7 for line in lines)
    again = run_script(*args)  # every draw recorded: nothing is trained again
    assert "seed 3:" not in again.stderr and json.loads(again.stdout.strip().splitlines()[-1])["draws"] == 2


def test_step_time_script_times_a_config_as_users_run_it() -> None:
    args = ["benchmarks/step_time.py", "--config", "configs/cifar.yaml", "--steps", "3", "--warmup", "1", "--"]
    args += ["--model.generator.init_args.hidden_dims", "[16]", "--model.discriminator.init_args.hidden_dims", "[16]"]
    result = json.loads(run_script(*args).stdout.strip().splitlines()[-1])
    assert result["timed_steps"] == 3 and result["batch_size"] == 64
    assert result["sec_per_step"] > 0 and result["cpu_sec_per_step"] > 0 and result["peak_rss_mb"] > 0
    assert result["params"]["G"] == 128 * 16 + 16 + 16 * 3072 + 3072  # Linear, then the output layer


def test_mode_seeds_records_each_seed_and_resumes_a_stopped_one(tmp_path: Path) -> None:
    def study(epochs: int) -> tuple[dict, str]:
        args = ["benchmarks/mode_seeds.py", "--config", "configs/grid25.yaml", "--first_seed", "7", "--seeds", "2"]
        args += ["--save_dir", str(tmp_path), "--last", "2", "--", "--trainer.max_epochs", str(epochs)]
        args += ["--data.num_train", "512", "--data.batch_size", "64", "--model.pack", "2"]
        proc = run_script(*args)
        return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr

    first, _ = study(1)
    assert [row["seed"] for row in first["per_seed"]] == [7, 8]
    assert all(0 <= row["modes/captured"] <= 25 for row in first["per_seed"])
    again, log = study(1)  # both seeds recorded: read back, nothing trained
    assert "seed 7 (done before)" in log and again["per_seed"] == first["per_seed"]
    # Seed 8 as if it had been stopped after its first epoch: its figures forgotten, its last.ckpt kept. Asked for
    # two epochs, it goes on from that checkpoint in the same run folder.
    (tmp_path / "seed8" / "result.json").unlink()
    longer, _ = study(2)
    seed8 = longer["per_seed"][1]
    assert seed8["resumed"] and not longer["per_seed"][0].get("resumed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (tmp_path / "seed8").glob("version_*")
    events = EventAccumulator(str(run))
    events.Reload()
    assert len(events.Scalars("modes/captured")) == 2  # epoch 0 before the stop, epoch 1 after it
    assert events.Scalars("modes/captured")[-1].value == seed8["modes/captured"]


def test_lost_mode_script_reads_every_epochs_checkpoint(tmp_path: Path) -> None:
    fit = [sys.executable, "cli.py", "fit", "--config", "configs/grid25.yaml", "--trainer.max_epochs", "2"]
    fit += ["--data.num_train", "512", "--data.batch_size", "64", "--checkpoint.every_n_epochs", "1"]
    fit += ["--checkpoint.save_top_k", "-1", "--trainer.logger.init_args.save_dir", str(tmp_path)]
    done = subprocess.run(fit, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figure = tmp_path / "lost.png"
    proc = run_script("benchmarks/lost_mode.py", str(tmp_path / "grid25" / "version_0"), "--figure", str(figure))
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [row["epoch"] for row in rows] == [0, 1]
    lost = rows[-1]["lost"]  # the modes the final G leaves with fewer than 10 high-quality samples
    assert rows[-1]["in_lost"] < 10 * len(lost) and rows[-1]["captured"] <= 25
    assert all(row["lost"] == lost and len(row["on_the_way"]) == 5 for row in rows)
    if lost:
        assert all(0 <= row["d_lost"] <= 1 and 0 <= row["d_held"] <= 1 for row in rows)
    assert figure.stat().st_size > 10_000


def test_packed_d_script_trains_the_configs_d_on_packs_and_reports_when_it_separates() -> None:
    proc = run_script(
        "benchmarks/packed_d.py", "--config", "configs/grid25.yaml", "--packs", "1", "2", "--blur", "4.0",
        "--steps", "300", "--every", "100", "--batch", "64", "--margin", "0.05",
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [row["pack"] for row in rows] == [1, 2] and all(row["lr"] == 4e-4 for row in rows)  # the config's rate
    for row in rows:
        assert len(row["windows"]) == 3
        real, fake = row["windows"][-1]
        assert 0 < fake < real < 1 and real - fake > 0.05  # a broad blur is easy: D learns it, packed or not
        first = next(i for i, (r, f) in enumerate(row["windows"]) if r - f >= 0.05)
        assert row["separates_at"] == (first + 1) * 100
    bad = subprocess.run(
        [sys.executable, "benchmarks/packed_d.py", "--packs", "3", "--batch", "64"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "--packs must be >= 1 and divide --batch 64" in bad.stderr


def _logged_run(folder: Path, offset: float) -> Path:
    """A run's event files as Lightning writes them: ``epoch`` at the step of each epoch metric, validated every
    2 epochs, in two files as a resumed run leaves them (the second repeats the last step of the first)."""
    from torch.utils.tensorboard import SummaryWriter

    for epochs in (range(0, 4), range(3, 6)):
        writer = SummaryWriter(str(folder))
        for epoch in epochs:
            step = 10 * (epoch + 1) - 1
            writer.add_scalar("epoch", epoch, step)
            if epoch % 2 == 1:
                writer.add_scalar("parzen/ll", offset + epoch, step)
                writer.add_scalar("parzen_ema/ll", offset + 100 + epoch, step)
        writer.close()
    return folder


def test_report_script_plots_several_tags_of_several_runs_by_epoch(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import by_epoch, curves

    a, b = _logged_run(tmp_path / "a", 0.0), _logged_run(tmp_path / "b", 50.0)
    assert by_epoch(curves(b), "parzen/ll") == [(2, 51.0), (4, 53.0), (6, 55.0)]  # epochs trained, once each
    out = tmp_path / "both.png"
    proc = run_script(
        "benchmarks/report.py", str(a), str(b), "--tag", "parzen/ll", "parzen_ema/ll", "--names", "A", "B",
        "--out", str(out),
    )  # fmt: skip
    assert proc.stdout.strip() == str(out) and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for extra, message in (
        (["--tag", "parzen/ll", "--names", "A"], "--names needs one label per run: 2 runs, 1 names"),
        (["--tag", "modes/captured"], "--tag modes/captured: not logged in"),
    ):
        bad = subprocess.run(
            [sys.executable, "benchmarks/report.py", str(a), str(b), *extra, "--out", str(tmp_path / "x.png")],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_compare_runs_script_finds_the_one_value_that_differs_and_reads_a_resumed_run_by_its_last_values(
    tmp_path: Path,
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    def run(name: str, *pieces: list[tuple[str, float, int]]) -> Path:
        for piece in pieces:  # one events file per piece, as a run resumed from last.ckpt leaves them
            writer = SummaryWriter(str(tmp_path / name))
            for tag, value, step in piece:
                writer.add_scalar(tag, value, step)
            writer.close()
        return tmp_path / name

    loss = [("loss/d", 1.0 + step / 8, step) for step in range(8)]
    whole = [*loss, ("modes/captured", 8.0, 7)]
    stale = [("loss/d", 99.0, step) for step in (4, 5)]  # logged before the stop, logged again after the resume
    changed = [(tag, value + (1e-6 if step == 6 else 0.0), step) for tag, value, step in whole]

    def compare(a: Path, b: Path) -> tuple[int, dict]:
        proc = subprocess.run([sys.executable, "benchmarks/compare_runs.py", str(a), str(b)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        return proc.returncode, json.loads(proc.stdout)

    a = run("a", whole)
    rc, same = compare(a, run("b", whole))
    assert rc == 0 and same["same"] and same["values_compared"] == 9 and same["different"] == 0
    rc, resumed = compare(a, run("resumed", loss[:4] + stale, loss[4:] + whole[8:]))
    assert rc == 0 and resumed["same"] and resumed["values_compared"] == 9
    rc, off = compare(a, run("changed", changed))
    assert rc == 1 and not off["same"] and off["different"] == 1 and off["first_different"][:2] == ["loss/d", 6]
    rc, short = compare(a, run("short", whole[:-1]))
    assert rc == 1 and short["tags_in_one_run_only"] == ["modes/captured"] and short["different"] == 0
    rc, fewer = compare(a, run("fewer", whole[:7] + whole[8:]))
    assert rc == 1 and fewer["steps_in_one_run_only"] == 1 and fewer["different"] == 0
    bad = subprocess.run([sys.executable, "benchmarks/compare_runs.py", str(a), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "no TensorBoard event files" in bad.stderr


def test_parzen_sigmas_script_reproduces_the_logged_figure_and_scores_every_sigma(
    mnist_dir: Path, tmp_path: Path
) -> None:
    fit = [sys.executable, "cli.py", "fit", "--config", "configs/mnist.yaml", "--data.data_dir", str(mnist_dir)]
    fit += ["--data.val_size", "100", "--trainer.max_steps", "4", "--trainer.check_val_every_n_epoch", "1"]
    fit += ["--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path)]
    done = subprocess.run(fit, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = tmp_path / "mnist" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    (history,) = [v["history"] for k, v in state["callbacks"].items() if k.startswith("ParzenWindow")]
    proc = run_script("benchmarks/parzen_sigmas.py", str(last), "--data_dir", str(mnist_dir), "--val_size", "100")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["model"] for row in rows] == ["G", "EMA"] and all(row["epoch"] == state["epoch"] for row in rows)
    for row, logged in zip(rows, ("parzen/ll", "parzen_ema/ll"), strict=True):
        assert row["chosen_sigma"] == round(history[-1][logged.replace("/ll", "/sigma")], 4)
        assert abs(row["chosen_ll"] - history[-1][logged]) < 0.01  # the figure the run logged at this checkpoint
        assert len(row["ll"]) == 10 and row["ll"][f"{row['chosen_sigma']:.4f}"] == row["chosen_ll"]
        assert len(set(row["ll"].values())) == 10  # a figure per σ, not one repeated
    bad = subprocess.run(
        [sys.executable, "benchmarks/parzen_sigmas.py", str(tmp_path / "none.ckpt"), "--data_dir", str(mnist_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "no such checkpoint: " in bad.stderr
