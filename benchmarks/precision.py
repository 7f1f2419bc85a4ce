"""The 16-bit paths for real: a few hundred steps of the CIFAR-10 configs at each precision, side by side.

    python benchmarks/precision.py --mnist_dir ../shared/data/mnist --steps 400 --out precision_out
    python benchmarks/precision.py --mnist_dir DIR --runs cifar:32-true cifar:bf16-mixed   # what a CPU can do

Each run is ``cli.py fit --config configs/CONFIG.yaml --trainer.precision P`` (``:clip`` adds
``--model.grad_clip_norm 1.0``) for ``--steps`` training steps from the same seed, on one CIFAR-10-shaped data
set: real MNIST digits written as a ``cifar-10-batches-py`` folder (28×28 grey padded to 32×32, copied to 3
channels), so that a few hundred steps give samples one can compare by eye; CIFAR-10 itself cannot be downloaded
where this was written. Per run it prints one JSON line:

- ``finite``: every logged loss/d and loss/g is finite; ``loss_d``, ``loss_g``, ``d_real``, ``d_fake``: means
  over the last quarter of the logged steps;
- ``scale``: for 16-mixed, the GradScaler's scale (``amp/scale``, logged by gan_module.py every
  ``--log_every`` steps): first, min, max, last and how many times it changed;
- ``sample_mean`` / ``sample_std``: pixel statistics of the fixed-noise sample grid after the last step, and of
  the data (``data_mean`` / ``data_std``), in [0, 1].

It also writes ``OUT/precision_samples.png``: the runs' sample grids side by side, to look at.
16-mixed needs a CUDA GPU; bf16-mixed runs on a CPU too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.runs import ROOT, fit, scalars  # noqa: E402
from datamodule import read_idx_images  # noqa: E402
from tests.fake_data import write_cifar10_archive  # noqa: E402

DEFAULT_RUNS = [
    "cifar:32-true",
    "cifar:16-mixed",
    "cifar:16-mixed:clip",
    "cifar:bf16-mixed",
    "cifar_conv:32-true",
    "cifar_conv:16-mixed",
    "cifar_conv:bf16-mixed",
]
LOSSES = ("loss/d", "loss/g", "d/real", "d/fake")


def mnist_as_cifar(mnist_dir: Path, root: Path, n_train: int) -> tuple[Path, float, float]:
    """Write the first n_train MNIST train digits as CIFAR-10's python archive (padded to 32×32, 3 channels)."""
    raw = next((d for d in (mnist_dir / "MNIST" / "raw", mnist_dir) if any(d.glob("train-images-idx3-ubyte*"))), None)
    if raw is None:
        raise SystemExit(f"--mnist_dir {mnist_dir}: no train-images-idx3-ubyte(.gz) in it or in its MNIST/raw")
    digits = read_idx_images(next(raw.glob("train-images-idx3-ubyte*")))[:n_train].numpy()
    images = np.repeat(np.pad(digits, ((0, 0), (2, 2), (2, 2)))[:, None], 3, axis=1).reshape(len(digits), 3072)
    write_cifar10_archive(root, images, images[:64])
    return root, float(images.mean() / 255), float(images.std() / 255)


def last_grid(run_dir: Path) -> np.ndarray:
    """The last ``samples`` image the run logged, as an H×W×3 uint8 array."""
    import io

    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return np.asarray(Image.open(io.BytesIO(events.Images("samples")[-1].encoded_image_string)).convert("RGB"))


def summarize(run_dir: Path, precision: str, grid: np.ndarray) -> dict:
    """The JSON figures of one run (module docstring); ``grid``: its last sample grid (``last_grid``)."""
    series = scalars(run_dir, LOSSES)
    out: dict = {"logged_steps": len(series["loss/d"])}
    out["finite"] = all(math.isfinite(v) for tag in ("loss/d", "loss/g") for _, v in series[tag])
    for tag in LOSSES:
        values = [v for _, v in series[tag]]
        out[tag.replace("/", "_")] = round(float(np.mean(values[-max(1, len(values) // 4) :])), 4)
    if precision == "16-mixed":
        try:
            scale = [v for _, v in scalars(run_dir, ("amp/scale",))["amp/scale"]]
        except RuntimeError:  # no GradScaler: Lightning runs 16-mixed as bf16 on a CPU
            out["scale"] = None
        else:
            changes = sum(a != b for a, b in zip(scale[:-1], scale[1:], strict=True))
            out["scale"] = {"first": scale[0], "min": min(scale), "max": max(scale), "last": scale[-1]}
            out["scale"]["changes"] = changes
    grid = grid.astype(np.float64) / 255
    out["sample_mean"], out["sample_std"] = round(float(grid.mean()), 4), round(float(grid.std()), 4)
    return out


def save_figure(grids: list[tuple[str, np.ndarray]], steps: int, path: Path) -> None:
    """The runs' sample grids side by side, titled by run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.6), squeeze=False)
    for ax, (spec, grid) in zip(axes[0], grids, strict=True):
        ax.imshow(grid)
        ax.set_title(spec, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"fixed-noise samples after {steps} steps, seed 1234 (MNIST written as CIFAR-10)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist_dir", type=Path, required=True, help="MNIST in torchvision's layout (or its raw/)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of each run")
    parser.add_argument("--log_every", type=int, default=10, help="trainer.log_every_n_steps of each run")
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="CONFIG:PRECISION[:clip] ...")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/precision"))
    args = parser.parse_args()
    args.out = args.out.resolve()
    data_root, data_mean, data_std = mnist_as_cifar(args.mnist_dir.resolve(), args.out / "data", 60_000)
    print(json.dumps({"data": "MNIST as CIFAR-10", "data_mean": round(data_mean, 4), "data_std": round(data_std, 4)}))
    grids = []
    for spec in args.runs:
        config, precision, *flags = spec.split(":")
        extra = ["--data.data_dir", str(data_root), "--data.verify_checksums", "false", "--data.download", "false"]
        extra += [
            "--trainer.precision",
            precision,
            "--trainer.max_epochs",
            "1",
            "--trainer.log_every_n_steps",
            str(args.log_every),
        ]
        extra += ["--trainer.limit_train_batches", str(args.steps), "--trainer.limit_val_batches", "0"]
        if "clip" in flags:
            extra += ["--model.grad_clip_norm", "1.0"]
        name = spec.replace(":", "_")
        try:
            run_dir, seconds = fit(str(ROOT / "configs" / f"{config}.yaml"), 1234, args.out / "logs", name, extra)
        except RuntimeError as error:  # one failing path must not hide the others' figures
            print(json.dumps({"run": spec, "error": str(error)[-1500:]}), flush=True)
            continue
        grid = last_grid(run_dir)
        result = {"run": spec, "seconds": round(seconds, 1), **summarize(run_dir, precision, grid)}
        print(json.dumps(result), flush=True)
        grids.append((spec, grid))
        save_figure(grids, args.steps, args.out / "precision_samples.png")  # after each run: a timeout keeps it


if __name__ == "__main__":
    main()
