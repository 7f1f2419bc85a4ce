"""Mode coverage of a 2-D mixture config over N seeds: mean ± standard error of the three metrics.

Each seed is one ``python cli.py fit --config CONFIG`` in a subprocess, with ``seed_everything`` and the data's
``seed`` set to the seed; the figures are the last ``modes/*`` values the run wrote to TensorBoard (the
evaluation of the final G by ``metrics.ModeCoverage``). Prints a Markdown table and one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/mode_seeds.py --config configs/ring8.yaml --seeds 5
    OMP_NUM_THREADS=1 python benchmarks/mode_seeds.py --config configs/grid25.yaml --seeds 5 --jobs 2

Arguments after ``--`` go to cli.py unchanged (e.g. ``-- --trainer.max_epochs 5``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("modes/captured", "modes/high_quality", "modes/reverse_kl")


def last_values(run_dir: Path) -> dict[str, float]:
    """The last logged value of each mode metric in a TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    missing = [tag for tag in METRICS if tag not in events.Tags()["scalars"]]
    if missing:
        raise RuntimeError(f"{run_dir} has no {missing}: is metrics.ModeCoverage in the config's callbacks?")
    return {tag: max(events.Scalars(tag), key=lambda e: (e.step, e.wall_time)).value for tag in METRICS}


def run_seed(config: str, seed: int, save_dir: Path, extra: list[str]) -> dict[str, float]:
    name = f"seed{seed}"
    cmd = [sys.executable, "cli.py", "fit", "--config", config, "--seed_everything", str(seed)]
    cmd += ["--data.init_args.seed", str(seed), "--trainer.enable_progress_bar", "false"]
    cmd += ["--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", name, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{' '.join(cmd)}\n{done.stderr[-3000:]}")
    (run,) = sorted((save_dir / name).glob("version_*"))[-1:]
    result = last_values(run)
    result["seconds"] = seconds
    print(f"seed {seed}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / √n; 0 for one value; NaN in, NaN out)."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a 2-D mixture config, e.g. configs/ring8.yaml")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0 .. seeds−1)")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each with OMP_NUM_THREADS threads)")
    parser.add_argument("--save_dir", default=None, help="TensorBoard logs of the runs (default: a temp folder)")
    parser.add_argument("extra", nargs="*", help="after --: extra cli.py arguments")
    args = parser.parse_args()
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    save_dir = Path(args.save_dir or tempfile.mkdtemp(prefix="mode_seeds_"))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: run_seed(args.config, s, save_dir, args.extra), seeds))
    wall = time.perf_counter() - start

    summary = {tag: mean_se([r[tag] for r in results]) for tag in (*METRICS, "seconds")}
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    cpu = platform.processor() or platform.machine()
    print(
        f"\n{args.config}, {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {args.jobs} at a time, "
        f"OMP_NUM_THREADS={threads}, {os.cpu_count()} CPUs ({cpu}), wall {wall:.0f} s\n"
    )
    print("| seed | modes captured | high-quality samples | reverse KL | seconds |")
    print("|---|---|---|---|---|")
    for seed, r in zip(seeds, results, strict=True):
        print(
            f"| {seed} | {r['modes/captured']:.0f} | {100 * r['modes/high_quality']:.1f} % | "
            f"{r['modes/reverse_kl']:.3f} | {r['seconds']:.0f} |"
        )
    (c, c_se), (h, h_se), (k, k_se), (s, s_se) = (summary[t] for t in (*METRICS, "seconds"))
    print(
        f"| mean ± s.e. | {c:.1f} ± {c_se:.1f} | {100 * h:.1f} ± {100 * h_se:.1f} % | {k:.3f} ± {k_se:.3f} | "
        f"{s:.0f} ± {s_se:.0f} |\n"
    )
    record = {
        "config": args.config,
        "seeds": seeds,
        "extra": args.extra,
        "wall_seconds": round(wall, 1),
        "per_seed": [{"seed": seed, **r} for seed, r in zip(seeds, results, strict=True)],
        "mean": {tag: m for tag, (m, _) in summary.items()},
        "standard_error": {tag: se for tag, (_, se) in summary.items()},
        "save_dir": str(save_dir),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
