"""Does every draw of the MNIST recipe train? Each draw (a seed) is ``--config`` (``configs/mnist.yaml``; the
authors' recipe as they ran it: ``configs/mnist_authors.yaml``) for ``--epochs`` epochs without validation; per draw
it records the mean D(G(z)) of every epoch (``d/fake_epoch``), whether it **dipped** (an epoch below ``--dip``,
0.01) and whether it **died** (the config's EarlyStopping ended it: 3 epochs in a row with mean D(G(z)) < 1e-3,
``d/won_epochs``), and the **variety** of the final G's samples (and its EMA's: ``benchmarks.runs.variety``,
``metrics.SampleVariety``'s figure); a draw whose G is below ``--collapsed_below`` (0.7)
**collapsed**, whatever D's output says.

Resumable: every finished draw is one JSON line in ``SAVE_DIR/draws.jsonl``; a second call skips the draws found
there. Prints a Markdown table of every draw found and one JSON summary line.

    OMP_NUM_THREADS=1 python benchmarks/mnist_draws.py --data_dir ../shared/data/mnist --seeds 100-119 \\
        --epochs 15 --save_dir runs/mnist_draws

The seed sets ``seed_everything``: G's and D's initial weights, the noise, the dropout masks and the batch order
(on the CPU, ``--data.on_device true`` cuts the same seeded order). Arguments after ``--`` go to cli.py (e.g.
``-- --model.prior normal`` to try a change).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.runs import fit, machine, scalars, variety  # noqa: E402


def seed_list(text: str) -> list[int]:
    """``100-119`` or ``1,5,9`` (or a mix) as a list of ints."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        out += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return out


def run_draw(seed: int, args: argparse.Namespace) -> dict:
    extra = ["--data.data_dir", args.data_dir, "--trainer.max_epochs", str(args.epochs)]
    extra += ["--trainer.limit_val_batches", "0", *args.extra]
    run, seconds = fit(args.config, seed, Path(args.save_dir), f"seed{seed}", extra)
    logged = scalars(run, ("d/fake_epoch", "d/won_epochs"))
    d_fake = [round(value, 5) for _, value in logged["d/fake_epoch"]]
    won = [value for _, value in logged["d/won_epochs"]]
    return {
        "seed": seed, "epochs": len(d_fake), "d_fake": d_fake, "dipped": min(d_fake) < args.dip,
        "died": len(d_fake) < args.epochs or max(won) >= 3, "seconds": round(seconds),
    }  # fmt: skip


def final_variety(save_dir: Path, seed: int, real: Any) -> dict[str, float]:
    """``variety`` of the draw's final G itself and of its EMA (from its newest last.ckpt; NaN when there is none)."""
    from gan_module import GAN

    found = sorted((save_dir / f"seed{seed}").glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return {"variety": math.nan, "variety_ema": math.nan}
    model = GAN.load_from_checkpoint(found[-1], map_location="cpu")
    ema = variety(model, real, ema=True) if model.G_ema is not None else math.nan
    return {"variety": round(variety(model, real), 4), "variety_ema": round(ema, 4)}


def training_images(data_dir: str) -> Any:
    from datamodule import MNISTDataModule

    data = MNISTDataModule(data_dir, download=False, val_size=0)  # the first images: the same with any val_size
    data.setup("fit")
    return data.train_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument("--data_dir", required=True, help="MNIST in torchvision's layout (DIR/MNIST/raw)")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("100-119"), help="e.g. 100-119 or 1,5,9")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dip", type=float, default=0.01, help="an epoch with mean D(G(z)) below this is a dip")
    parser.add_argument(
        "--collapsed_below", type=float, default=0.7, help="a draw whose final G's variety is below this collapsed"
    )
    parser.add_argument("--save_dir", required=True, help="the runs' logs and draws.jsonl (kept: resumable)")
    parser.add_argument("--report", action="store_true", help="only print what draws.jsonl holds, train nothing")
    parser.add_argument("extra", nargs="*", help="after --: extra cli.py arguments")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    record = Path(args.save_dir) / "draws.jsonl"
    record.parent.mkdir(parents=True, exist_ok=True)
    done = (
        {json.loads(line)["seed"]: json.loads(line) for line in record.read_text().splitlines()}
        if record.exists()
        else {}
    )
    start, real = time.perf_counter(), training_images(args.data_dir)
    for seed in args.seeds:
        if seed in done or args.report:
            continue
        result = {**run_draw(seed, args), **final_variety(Path(args.save_dir), seed, real)}
        done[seed] = result
        with open(record, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"seed {seed}: {json.dumps(result)}", file=sys.stderr, flush=True)
    rows = [done[s] for s in args.seeds if s in done]
    for r in rows:  # draws recorded before the variety was: from their checkpoints now
        if "variety" not in r:
            r.update(final_variety(Path(args.save_dir), r["seed"], real))
        r["collapsed"] = not r["variety"] >= args.collapsed_below
    print("| seed | epochs | min mean D(G(z)) (epoch) | last | dipped | died | variety: G, EMA | collapsed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        low = min(range(len(r["d_fake"])), key=r["d_fake"].__getitem__)
        print(f"| {r['seed']} | {r['epochs']} | {r['d_fake'][low]:.4f} ({low}) | {r['d_fake'][-1]:.3f} | "
              f"{'yes' if r['dipped'] else 'no'} | {'yes' if r['died'] else 'no'} | {r['variety']:.2f}, "
              f"{r['variety_ema']:.2f} | {'yes' if r['collapsed'] else 'no'} |")  # fmt: skip
    summary = {
        "config": args.config, "extra": args.extra, "epochs": args.epochs, "draws": len(rows),
        "dipped": sum(r["dipped"] for r in rows), "died": sum(r["died"] for r in rows),
        "collapsed": sum(r["collapsed"] for r in rows), "collapsed_below": args.collapsed_below,
        "seconds_this_call": round(time.perf_counter() - start), "machine": machine(),
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
