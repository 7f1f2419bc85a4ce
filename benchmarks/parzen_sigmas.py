"""How much of a validation Parzen figure is the choice of σ: the figure of G (and of its EMA) at every σ of the grid.

    python benchmarks/parzen_sigmas.py CKPT [CKPT ...] --data_dir DIR [--data fashion_mnist] [--val_size 10000]

The callback ``metrics.ParzenWindow`` (Table 1's protocol) picks σ from the grid by the first ``--num_val``
validation images and reports the log-likelihood of all of them at that σ; the grid is coarse (10 values log-spaced
over 0.1–1, the authors'), so a checkpoint's figure can step by a few nats when the choice flips. This script scores
each checkpoint's G as the callback does (its ``--num_samples`` samples from the fixed ``--seed``, the validation
split of the data: train[-val_size:]) and prints, per checkpoint and model, one JSON line: the checkpoint's epoch
(counted from 0, as in its file name), the σ the callback would choose, the figure it would log (``chosen_ll``, the
same as the run's ``parzen/ll`` at that checkpoint) and the figure at every σ over all the validation images
(``ll``). The defaults are ParzenWindow's. Written here because the figure at σ values the protocol did not choose
is what no library reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodule import FashionMNISTDataModule, MNISTDataModule  # noqa: E402
from gan_module import GAN  # noqa: E402
from metrics import DEFAULT_SIGMAS, _parzen_ll_multi, generate  # noqa: E402

DATA = {"mnist": MNISTDataModule, "fashion_mnist": FashionMNISTDataModule}


def score(model: GAN, val: torch.Tensor, num_samples: int, num_val: int, seed: int, ema: bool) -> dict:
    """The protocol's figures at every σ for the validation images ``val`` (uint8, (N, C, H, W))."""
    with torch.no_grad():
        samples = generate(model, num_samples, 1000, seed, quantize=False, ema=ema)
    samples = samples.reshape(num_samples, -1).float()
    ll = _parzen_ll_multi(samples, val.reshape(len(val), -1).float() / 255, DEFAULT_SIGMAS, 100)  # (N, S)
    chosen = int(ll[:num_val].mean(0).argmax())  # as ParzenWindow: σ by the first num_val images
    means = ll.mean(0)
    return {
        "chosen_sigma": round(DEFAULT_SIGMAS[chosen], 4),
        "chosen_ll": round(float(means[chosen]), 2),
        "ll": {f"{sigma:.4f}": round(float(value), 2) for sigma, value in zip(DEFAULT_SIGMAS, means, strict=True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--data_dir", required=True, help="the data's folder, as --data.data_dir of the run")
    parser.add_argument("--data", choices=sorted(DATA), default="mnist")
    parser.add_argument("--val_size", type=int, default=10000, help="as --data.val_size of the run")
    parser.add_argument("--num_samples", type=int, default=10000, help="ParzenWindow.num_samples")
    parser.add_argument("--num_val", type=int, default=1000, help="ParzenWindow.num_val: the images that choose σ")
    parser.add_argument("--seed", type=int, default=0, help="ParzenWindow.seed")
    args = parser.parse_args()
    for name in ("val_size", "num_samples", "num_val"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    missing = [str(path) for path in args.checkpoints if not path.is_file()]
    if missing:
        parser.error(f"no such checkpoint: {', '.join(missing)}")
    data = DATA[args.data](data_dir=args.data_dir, val_size=args.val_size, download=False)
    data.setup("fit")
    for path in args.checkpoints:
        model = GAN.load_from_checkpoint(path, map_location="cpu").eval()
        epoch = torch.load(path, map_location="cpu", weights_only=False)["epoch"]
        for ema in (False, True) if model.G_ema is not None else (False,):
            figures = score(model, data.val_images, args.num_samples, args.num_val, args.seed, ema)
            print(json.dumps({"checkpoint": str(path), "epoch": epoch, "model": "EMA" if ema else "G", **figures}))


if __name__ == "__main__":
    main()
