"""Helpers of the benchmark scripts: run ``cli.py fit`` in a subprocess and read back what it logged."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def fit(config: str, seed: int, save_dir: Path, name: str, extra: list[str]) -> tuple[Path, float]:
    """``python cli.py fit --config CONFIG`` with ``seed_everything`` = seed, logged to save_dir/name.

    Returns the run folder (``save_dir/name/version_N``) and the wall seconds. The run gets
    ``OMP_NUM_THREADS`` from the environment (1 when unset).
    """
    cmd = [sys.executable, "cli.py", "fit", "--config", config, "--seed_everything", str(seed)]
    cmd += ["--trainer.enable_progress_bar", "false"]
    cmd += ["--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", name, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{' '.join(cmd)}\n{done.stderr[-3000:]}")
    return sorted((Path(save_dir) / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1], seconds


def scalars(run_dir: Path, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """Every (step, value) a TensorBoard run folder holds for each tag, in step order (the last write of a step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    missing = [tag for tag in tags if tag not in events.Tags()["scalars"]]
    if missing:
        raise RuntimeError(f"{run_dir} has no {missing}: is the callback that logs them in the config?")
    out = {}
    for tag in tags:
        by_step: dict[int, float] = {}
        for event in sorted(events.Scalars(tag), key=lambda e: e.wall_time):
            by_step[event.step] = event.value
        out[tag] = sorted(by_step.items())
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / √n; 0 for one value; NaN in, NaN out)."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def variety(model: Any, real: Any, n: int = 1000, ema: bool = False) -> float:
    """Mean pairwise distance of n samples of the trained G (``ema=True``: its EMA, which lags it early in training)
    over that of n real uint8 images, pixels in [0, 1]: ~1 for varied digits, ~0 for one repeated image
    (``metrics.SampleVariety``'s figure, from a checkpoint)."""
    import torch

    from metrics import mean_pairwise_distance

    samples = model.generate(model.sample_z(n, torch.Generator().manual_seed(0)), quantize=False, ema=ema)
    return mean_pairwise_distance(samples) / mean_pairwise_distance(real[:n].float() / 255)


def machine() -> str:
    """The machine in words, for the figures' captions."""
    cpu = platform.processor() or platform.machine()
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    return f"{os.cpu_count()} CPUs ({cpu}), OMP_NUM_THREADS={threads}"
