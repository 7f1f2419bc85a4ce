"""How fast a packed D learns the fine structure of a 2-D mixture: D alone, against a fixed stand-in for G.

PacGAN's packing (``--model.pack m``) gives D m samples at once. With the grid recipe as it is, ``--model.pack 4``
did not train (docs/mode-lab.md). This script asks the question D faces once G has found the coarse layout of
the data: real points of the mixture against **the same mixture blurred** (each point plus Gaussian noise of std
``--blur``: the right modes, not yet sharp). D is the config's D (``model.discriminator``, built for packs of m
points as the CLI builds it), trained alone with the config's D optimiser (``gan_module.GANAdam`` with the
config's ``model.d_optimizer`` arguments; ``--lr`` overrides the rate), the paper's D loss, ``--batch`` points
of each kind per step (``batch / m`` packs, as in the module). G is not trained: the figure is how many steps D
needs, not what a GAN does with it.

    python benchmarks/packed_d.py --config configs/grid25.yaml --packs 1 2 4 --blur 0.3 --steps 10000

Prints, per pack size, mean D(real) / D(fake) over each window of ``--every`` steps, the first window where they
differ by at least ``--margin`` ("separates"), and one JSON line per pack size.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_module import GANAdam  # noqa: E402
from mode_lab import ToyDiscriminator, ToyMixtureDataModule  # noqa: E402
from networks import pack_samples  # noqa: E402


def config_d(config: Path) -> tuple[dict, str, dict]:
    """The config's D arguments (its ``init_args``), its mixture and its D optimiser's arguments."""
    cfg = yaml.safe_load(config.read_text())
    model = cfg["model"]
    if not model["discriminator"]["class_path"].endswith("ToyDiscriminator"):
        raise SystemExit(f"--config {config}: model.discriminator must be mode_lab.ToyDiscriminator")
    d_args = dict(model["discriminator"].get("init_args", {}))
    mixture = cfg["data"].get("init_args", {}).get("mixture", "ring")
    d_optimizer = model.get("d_optimizer", {})
    if not d_optimizer.get("class_path", "gan_module.GANAdam").endswith("GANAdam"):
        raise SystemExit(f"--config {config}: model.d_optimizer must be gan_module.GANAdam")
    return d_args, mixture, dict(d_optimizer.get("init_args", {}))


def train_d(
    d_args: dict, mixture: str, pack: int, blur: float, opt_args: dict, steps: int, every: int, batch: int, seed: int
) -> list[tuple[float, float]]:
    """D(real) and D(fake) (window means over ``every`` steps) of D trained alone, packs of ``pack`` points."""
    sample = ToyMixtureDataModule(mixture).sample_points
    torch.manual_seed(seed)
    points = torch.Generator().manual_seed(seed + 1)
    D = ToyDiscriminator((2 * pack,), **d_args)
    # unfused unless the config says otherwise (torch's own Adam; the module's fused step agrees up to float rounding)
    opt = GANAdam(D.parameters(), **{"fused": False, **opt_args})

    windows, total = [], torch.zeros(2)
    for step in range(1, steps + 1):
        real = sample(batch, points)
        fake = sample(batch, points) + blur * torch.randn(batch, 2, generator=points)
        on_real, on_fake = D(pack_samples(real, pack)), D(pack_samples(fake, pack))
        loss = F.softplus(-on_real).mean() + F.softplus(on_fake).mean()  # −log D(x) − log(1 − D(G(z)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += torch.stack([torch.sigmoid(on_real).mean(), torch.sigmoid(on_fake).mean()]).detach()
        if step % every == 0:
            windows.append((total[0].item() / every, total[1].item() / every))
            total.zero_()
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/grid25.yaml"))
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4], help="pack sizes m to try")
    parser.add_argument("--blur", type=float, default=0.3, help="std of the noise on the fake points")
    parser.add_argument("--lr", type=float, default=None, help="D's Adam rate (default: the config's)")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000, help="steps per reported window")
    parser.add_argument("--batch", type=int, default=256, help="points of each kind per step")
    parser.add_argument("--margin", type=float, default=0.1, help="D(real) − D(fake) that counts as separated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("steps", "every", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.steps % args.every:
        parser.error(f"--every {args.every} must divide --steps {args.steps}")
    if any(m < 1 or args.batch % m for m in args.packs):
        parser.error(f"every pack size in --packs must be >= 1 and divide --batch {args.batch}")
    d_args, mixture, opt_args = config_d(args.config)
    if args.lr is not None:
        opt_args["lr"] = args.lr
    lr = opt_args.setdefault("lr", inspect.signature(GANAdam).parameters["lr"].default)  # the rate D trains at
    print(f"{mixture}, fake = mixture + N(0, {args.blur}²), D of {args.config}, Adam lr {lr}, batch {args.batch}\n")
    print("| pack | " + " | ".join(f"step {(i + 1) * args.every}" for i in range(args.steps // args.every)) + " |")
    print("|---" * (1 + args.steps // args.every) + "|")
    results = []
    for m in args.packs:
        start = time.perf_counter()
        windows = train_d(d_args, mixture, m, args.blur, opt_args, args.steps, args.every, args.batch, args.seed)
        apart = [i for i, (r, f) in enumerate(windows) if r - f >= args.margin]
        result = {
            "pack": m, "blur": args.blur, "lr": lr, "batch": args.batch, "seed": args.seed,
            "windows": [[round(r, 3), round(f, 3)] for r, f in windows],
            "separates_at": (apart[0] + 1) * args.every if apart else None,
            "seconds": round(time.perf_counter() - start, 1),
        }  # fmt: skip
        results.append(result)
        print(f"| {m} | " + " | ".join(f"{r:.2f} / {f:.2f}" for r, f in windows) + " |", flush=True)
    print()
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
