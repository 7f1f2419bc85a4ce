"""Mode coverage of a 2-D mixture config over N seeds: every seed, the worst seed and the mean.

Each seed is one ``python cli.py fit --config CONFIG`` in a subprocess, with ``seed_everything`` and the data's
``seed`` set to the seed and ``OMP_NUM_THREADS`` = ``--threads``; the figures are the last ``modes/*`` values the
run logged (the final G, scored by ``mode_lab.ModeCoverage``). The swing column is the range (min–max) of
``modes/high_quality`` over the last ``--last`` validations, which is how much the figure moves as training ends.
Prints a Markdown table and one JSON line.

    python benchmarks/mode_seeds.py --config configs/ring8.yaml --seeds 10 --threads 1 --jobs 2
    python benchmarks/mode_seeds.py --config configs/grid25.yaml --seeds 10 --threads 2 --jobs 1

Arguments after ``--`` go to cli.py unchanged (e.g. ``-- --trainer.max_epochs 5``). With ``--save_dir`` the study
resumes: run the same command again and seeds already done are read back, a stopped seed goes on from its last.ckpt
(seconds then count the last part only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.runs import fit, machine, mean_se, scalars  # noqa: E402

METRICS = ("modes/captured", "modes/high_quality", "modes/reverse_kl")


def run_seed(config: str, seed: int, save_dir: Path, last: int, extra: list[str]) -> dict[str, float]:
    """One seed's run and figures. Resumable: a seed whose figures are in ``save_dir/seed<S>/result.json`` is not
    run again; a run that was stopped goes on from its last.ckpt (``--ckpt_path last``, exact)."""
    done = save_dir / f"seed{seed}" / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        print(f"seed {seed} (done before): {json.dumps(result)}", file=sys.stderr, flush=True)
        return result
    resume = ["--ckpt_path", "last"] if any((save_dir / f"seed{seed}").glob("version_*/checkpoints/last.ckpt")) else []
    run, seconds = fit(config, seed, save_dir, f"seed{seed}", ["--data.init_args.seed", str(seed), *extra, *resume])
    logged = scalars(run, METRICS)
    result: dict[str, float] = {tag: values[-1][1] for tag, values in logged.items()}
    tail = [value for _, value in logged["modes/high_quality"][-last:]]
    result.update(swing_min=min(tail), swing_max=max(tail), seconds=seconds, resumed=bool(resume))
    done.write_text(json.dumps(result))
    print(f"seed {seed}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a 2-D mixture config, e.g. configs/ring8.yaml")
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (first_seed .. first_seed + seeds − 1)")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--last", type=int, default=5, help="validations the swing column looks at")
    parser.add_argument("--save_dir", default=None, help="TensorBoard logs of the runs (default: a temp folder)")
    parser.add_argument("extra", nargs="*", help="after --: extra cli.py arguments")
    args = parser.parse_args()
    if min(args.seeds, args.jobs, args.threads, args.last) < 1:
        parser.error("--seeds, --jobs, --threads and --last must be >= 1")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    save_dir = Path(args.save_dir or tempfile.mkdtemp(prefix="mode_seeds_"))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: run_seed(args.config, s, save_dir, args.last, args.extra), seeds))
    wall = time.perf_counter() - start

    print(f"\n{args.config}, seeds {seeds[0]}..{seeds[-1]}, {args.jobs} at a time, {machine()}, wall {wall:.0f} s\n")
    print(f"| seed | modes | high-quality | reverse KL | high-quality over the last {args.last} validations | s |")
    print("|---|---|---|---|---|---|")
    for seed, r in zip(seeds, results, strict=True):
        print(
            f"| {seed} | {r['modes/captured']:.0f} | {100 * r['modes/high_quality']:.1f} % | "
            f"{r['modes/reverse_kl']:.3f} | {100 * r['swing_min']:.1f}–{100 * r['swing_max']:.1f} % | "
            f"{r['seconds']:.0f} |"
        )
    summary = {tag: mean_se([r[tag] for r in results]) for tag in (*METRICS, "seconds")}
    worst = {
        "modes/captured": min(r["modes/captured"] for r in results),
        "modes/high_quality": min(r["modes/high_quality"] for r in results),
        "modes/reverse_kl": max(r["modes/reverse_kl"] for r in results),
    }
    (c, c_se), (h, h_se), (k, k_se) = (summary[t] for t in METRICS)
    print(
        f"| worst seed | {worst['modes/captured']:.0f} | {100 * worst['modes/high_quality']:.1f} % | "
        f"{worst['modes/reverse_kl']:.3f} | | |"
    )
    print(f"| mean ± s.e. | {c:.2f} ± {c_se:.2f} | {100 * h:.1f} ± {100 * h_se:.1f} % | {k:.3f} ± {k_se:.3f} | | |\n")
    record = {
        "config": args.config,
        "seeds": seeds,
        "threads": args.threads,
        "extra": args.extra,
        "wall_seconds": round(wall, 1),
        "per_seed": [{"seed": seed, **r} for seed, r in zip(seeds, results, strict=True)],
        "worst": worst,
        "mean": {tag: m for tag, (m, _) in summary.items()},
        "standard_error": {tag: se for tag, (_, se) in summary.items()},
        "save_dir": str(save_dir),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
