"""Seconds per training step of a config, as a user runs it (``cli.py fit``), on CIFAR-10-shaped random images.

    OMP_NUM_THREADS=1 python benchmarks/step_time.py --config configs/paper_cifar10_fc.yaml --steps 20

Writes a fake ``cifar-10-batches-py`` folder (random pixels: the time of a step does not depend on them), runs
``--warmup`` untimed then ``--steps`` timed training steps (no validation) with a clock callback, and prints one JSON
line: the median wall and CPU seconds per training step (one D and one G update for k = 1), the epoch they make
for the config's batch size and split, G's and D's parameter counts and the peak resident memory. On a CPU shared
with other jobs wall time swings with their load and CPU time barely does. Arguments after ``--`` go to cli.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Clock(L.Callback):
    """Records wall and process CPU time at the start of every training batch, and the networks' sizes."""

    def __init__(self, out: str) -> None:
        self.out, self.ticks = Path(out), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ticks.append((time.perf_counter(), time.process_time()))

    def on_train_end(self, trainer, pl_module) -> None:
        sizes = {name: sum(p.numel() for p in getattr(pl_module, name).parameters()) for name in ("G", "D")}
        batch = getattr(trainer.datamodule, "batch_size", None)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.out.write_text(json.dumps({"ticks": self.ticks, "params": sizes, "batch_size": batch,
                                        "peak_rss_mb": round(peak_mb)}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--train_images", type=int, default=40000, help="training images an epoch goes through")
    parser.add_argument("extra", nargs="*", help="after --: extra cli.py arguments")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.fake_data import write_cifar10

    with tempfile.TemporaryDirectory() as tmp:
        n = max(2560, 200 * (args.steps + args.warmup + 2))
        write_cifar10(Path(tmp) / "data", n_train=n - n % 5, n_test=10)
        clock = Path(tmp) / "clock.json"
        cmd = [sys.executable, "cli.py", "fit", "--config", args.config, "--data.data_dir", str(Path(tmp) / "data")]
        cmd += ["--data.verify_checksums", "false", "--data.val_size", "0", "--trainer.limit_val_batches", "0"]
        cmd += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(args.warmup + args.steps + 1)]
        cmd += ["--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(Path(tmp) / "l")]
        cmd += ["--trainer.callbacks+=benchmarks.step_time.Clock", "--trainer.callbacks.out", str(clock), *args.extra]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the run failed:\n{done.stderr[-3000:]}")
        record = json.loads(clock.read_text())
    ticks = record["ticks"][args.warmup :]
    wall = statistics.median(b[0] - a[0] for a, b in zip(ticks, ticks[1:], strict=False))
    cpu = statistics.median(b[1] - a[1] for a, b in zip(ticks, ticks[1:], strict=False))
    batch = record["batch_size"]
    steps_per_epoch = args.train_images // batch if batch else None
    print(json.dumps({
        "config": args.config, "extra": args.extra, "timed_steps": len(ticks) - 1, "batch_size": batch,
        "sec_per_step": round(wall, 4), "cpu_sec_per_step": round(cpu, 4),
        "epoch_min": round(steps_per_epoch * wall / 60, 1) if steps_per_epoch else None,
        "params": record["params"], "peak_rss_mb": record["peak_rss_mb"],
        "threads": env["OMP_NUM_THREADS"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
