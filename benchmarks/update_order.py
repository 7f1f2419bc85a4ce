"""Which difference between Algorithm 1 and the authors' code decides collapse on MNIST: the order or the samples?

Runs ``configs/mnist_authors.yaml`` (the authors' hyperparameters; ``--config`` another) for every (update,
g_samples) variant and seed, without validation, and prints per run the mean D(G(z)) of each epoch
(``d/fake_epoch``) and, from the final G, the variety of its samples: the mean pairwise L2 distance of 1,000 samples
divided by that of 1,000 MNIST test images (1 = as varied as the data, 0 = one image). One JSON line at the end
holds everything.

    OMP_NUM_THREADS=1 python benchmarks/update_order.py --data_dir ../shared/data/mnist --seeds 1234 0 7 \\
        --epochs 10 --jobs 2

Variants (``--variants``, default all four): ``alternating/fresh`` (Algorithm 1 as written), ``alternating/shared``
(Algorithm 1's order, G reusing D's samples), ``simultaneous/shared`` (the authors' pylearn2 step),
``simultaneous/fresh`` (the authors' order with fresh noise for G). Arguments after ``--`` go to cli.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.runs import fit, machine, scalars, variety  # noqa: E402
from gan_module import GAN  # noqa: E402

VARIANTS = ("alternating/fresh", "alternating/shared", "simultaneous/shared", "simultaneous/fresh")
TAGS = ("d/fake_epoch", "d/real_epoch", "loss/g_epoch")


def run(variant: str, seed: int, args: argparse.Namespace, real: torch.Tensor) -> dict:
    update, samples = variant.split("/")
    extra = ["--data.data_dir", args.data_dir, "--trainer.max_epochs", str(args.epochs)]
    extra += ["--trainer.limit_val_batches", "0", "--model.update", update, "--model.g_samples", samples]
    run_dir, seconds = fit(args.config, seed, args.save_dir, f"{update}_{samples}_seed{seed}", extra + args.extra)
    logged = scalars(run_dir, TAGS)
    last = run_dir / "checkpoints" / "last.ckpt"
    result = {
        "variant": variant,
        "seed": seed,
        **{tag: [round(v, 5) for _, v in logged[tag]] for tag in TAGS},
        "variety": round(variety(GAN.load_from_checkpoint(last, map_location="cpu"), real), 4),
        "seconds": round(seconds),
        "run_dir": str(run_dir),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, help="MNIST in torchvision's layout (DIR/MNIST/raw)")
    parser.add_argument("--config", default="configs/mnist_authors.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234, 0, 7])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each with OMP_NUM_THREADS threads)")
    parser.add_argument("--save_dir", type=Path, default=None, help="TensorBoard logs (default: a temp folder)")
    parser.add_argument("extra", nargs="*", help="after --: extra cli.py arguments")
    args = parser.parse_args()
    args.save_dir = args.save_dir or Path(tempfile.mkdtemp(prefix="update_order_"))

    from datamodule import MNISTDataModule

    data = MNISTDataModule(args.data_dir)
    data.setup("test")
    real = data.test_images
    jobs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(*job, args, real), jobs))
    wall = time.perf_counter() - start

    print(f"\n{args.config}, {args.epochs} epochs, {machine()}, {args.jobs} at a time, wall {wall:.0f} s\n")
    print(f"| variant | seed | mean D(G(z)) per epoch (d/fake_epoch, epochs 0..{args.epochs - 1}) | variety |")
    print("|---|---|---|---|")
    for r in results:
        trajectory = ", ".join(f"{v:.3f}" for v in r["d/fake_epoch"])
        print(f"| {r['variant']} | {r['seed']} | {trajectory} | {r['variety']:.2f} |")
    print(json.dumps({"config": args.config, "epochs": args.epochs, "extra": args.extra, "runs": results}))


if __name__ == "__main__":
    main()
