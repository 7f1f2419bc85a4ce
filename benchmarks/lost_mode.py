"""Why a lost mode of the 2-D grid does not come back: D's output over it and G's pull towards it, epoch by epoch.

Reads a mode-lab run that kept a checkpoint after every epoch::

    python cli.py fit --config configs/grid25.yaml --seed_everything 11 --checkpoint.every_n_epochs 1 \\
        --checkpoint.save_top_k -1 --trainer.logger.init_args.save_dir runs/lost
    python benchmarks/lost_mode.py runs/lost/grid25/version_0 --figure docs/mode_lab_lost_mode_seed11.png

The **lost modes** are those the final G leaves (almost) empty (fewer than ``--empty`` of its high-quality samples,
as ModeCoverage scores them: the same 2,500 z of seed 0). For every checkpoint it prints:

- ``lr``: D's learning rate at that point (the config's LinearDecay);
- ``lost``: the high-quality samples of G in the lost modes, and the modes captured in all;
- ``D(lost)`` / ``D(held)``: D's mean output (a probability) on real points of the lost modes and of the others;
- ``near``: G's samples within half the mode spacing of a lost mode's centre (1 on the grid);
- ``pull``: on the samples of the lost modes' neighbours (one mode spacing away: 2 in x or y on the grid), the
  component towards the lost mode of the direction the non-saturating loss moves them, ``∇x log D(x)`` (a sample's
  share of G's gradient, before it goes back through G), mean over those samples; ``|∇|``: the mean norm of that
  vector;
- ``D on the way``: D's output at 0, ¼, ½, ¾ and all of the way from a neighbour's centre to the lost centre
  (mean over the neighbour/lost pairs).

Prints a Markdown table and one JSON line per checkpoint. ``--figure``: D's output over the plane with G's samples
at three epochs (``--epochs``; default: the first with a lost mode empty, the last at full rate, the last).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_module import GAN  # noqa: E402
from metrics import generate  # noqa: E402
from mode_lab import mixture_centers, mode_coverage  # noqa: E402


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (run / "checkpoints").glob("epoch=*-step=*.ckpt"):
        found.append((int(re.match(r"epoch=(\d+)-", path.name).group(1)), path))
    return sorted(found)


def load(path: Path) -> tuple[GAN, float]:
    model = GAN.load_from_checkpoint(path, map_location="cpu").eval()
    state = torch.load(path, map_location="cpu", weights_only=False)
    return model, float(state["optimizer_states"][0]["param_groups"][0]["lr"])


def d_prob(model: GAN, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(model.judge(x)).flatten()


def spacing(centers: torch.Tensor) -> float:
    """The distance between neighbouring modes (2 on the grid)."""
    d = torch.cdist(centers.double(), centers.double())
    return float(d[d > 0].min())


def neighbours(centers: torch.Tensor, lost: list[int]) -> list[tuple[int, int]]:
    """(neighbour, lost) pairs: modes one spacing apart, the neighbour itself not lost."""
    d, step = torch.cdist(centers.double(), centers.double()), spacing(centers)
    return [(i, j) for j in lost for i in range(len(centers)) if i not in lost and abs(float(d[i, j]) - step) < 1e-6]


def measure(model: GAN, centers: torch.Tensor, std: float, lost: list[int], samples: torch.Tensor) -> dict:
    result = mode_coverage(samples, centers, std)
    counts = result["counts"]
    held = [i for i in range(len(centers)) if i not in lost]
    gen = torch.Generator().manual_seed(1)
    per_mode = centers.repeat_interleave(200, 0) + std * torch.randn(200 * len(centers), 2, generator=gen)
    p_real = d_prob(model, per_mode).view(len(centers), 200).mean(1)
    distance, nearest = torch.cdist(samples.double(), centers.double()).min(1)
    radius = spacing(centers) / 2
    near = int((torch.cdist(samples.double(), centers[lost].double()).min(1).values < radius).sum()) if lost else 0
    pairs = neighbours(centers, lost)
    pulls, norms = [], []
    x = samples.clone().requires_grad_(True)
    log_d = torch.nn.functional.logsigmoid(model.judge(x)).sum()
    (direction,) = torch.autograd.grad(log_d, x)  # where the non-saturating loss moves each sample
    for i, j in pairs:
        mine = (nearest == i) & (distance < 3 * std)
        if mine.any():
            towards = (centers[j] - centers[i]) / (centers[j] - centers[i]).norm()
            pulls.append(float((direction[mine] @ towards).mean()))
            norms.append(float(direction[mine].norm(dim=1).mean()))
    way = torch.stack([centers[i] + t * (centers[j] - centers[i]) for i, j in pairs for t in (0, 0.25, 0.5, 0.75, 1)])
    on_the_way = d_prob(model, way).view(len(pairs), 5).mean(0) if pairs else torch.full((5,), float("nan"))
    return {
        "captured": result["captured"],
        "high_quality": result["high_quality"],
        "reverse_kl": result["reverse_kl"],
        "lost": centers[lost].tolist(),
        "in_lost": int(counts[lost].sum()) if lost else 0,
        "d_lost": float(p_real[lost].mean()) if lost else float("nan"),
        "d_held": float(p_real[held].mean()),
        "near": near,
        "pull": sum(pulls) / len(pulls) if pulls else float("nan"),
        "grad_norm": sum(norms) / len(norms) if norms else float("nan"),
        "on_the_way": [round(float(v), 3) for v in on_the_way],
    }


def figure(models: list[tuple[int, GAN, torch.Tensor]], centers: torch.Tensor, lost: list[int], out: Path) -> None:
    from matplotlib.figure import Figure

    axis = torch.linspace(-5.5, 5.5, 221)
    grid = torch.cartesian_prod(axis, axis)  # (x, y) pairs, x slowest
    fig = Figure(figsize=(4.2 * len(models), 4.4), layout="constrained")
    for ax, (epoch, model, samples) in zip(fig.subplots(1, len(models)), models, strict=True):
        prob = d_prob(model, grid).view(len(axis), len(axis)).T  # rows: y, columns: x
        image = ax.imshow(prob, origin="lower", extent=(-5.5, 5.5, -5.5, 5.5), cmap="RdBu_r", vmin=0, vmax=1)
        ax.scatter(samples[:, 0], samples[:, 1], s=1, color="k", alpha=0.5, linewidths=0)
        ax.scatter(centers[lost, 0], centers[lost, 1], s=60, facecolors="none", edgecolors="#ffbf00", linewidths=1.5)
        ax.set(title=f"epoch {epoch}", aspect="equal")
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="D(x)")
    fig.suptitle("D's output (red: real) and G's samples (black); lost modes circled")
    fig.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="run folder (version_N) with a checkpoint per epoch")
    parser.add_argument("--empty", type=int, default=10, help="a mode with fewer high-quality samples is lost")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of D's output and G's samples")
    parser.add_argument("--epochs", type=int, nargs="*", default=None, help="the figure's epochs")
    args = parser.parse_args()
    found = checkpoints(args.run)
    if not found:
        parser.error(f"no epoch=*-step=*.ckpt in {args.run / 'checkpoints'}")
    models = {}
    for epoch, path in found:
        model, lr = load(path)
        samples = generate(model, 2500, 2500, 0)
        models[epoch] = (model, lr, samples)
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    centers, std = mixture_centers(config["data"]["init_args"]["mixture"])
    final = mode_coverage(models[found[-1][0]][2], centers, std)["counts"]
    lost = [i for i in range(len(centers)) if int(final[i]) < args.empty]
    print(f"lost modes (fewer than {args.empty} high-quality samples at the end): {centers[lost].tolist()}\n")
    print(
        "| epoch | lr of D | captured | high-quality | reverse KL | in lost modes | D(lost) | D(held) | near | pull |"
        " mean ∇ norm | D on the way, 0 → ¼ → ½ → ¾ → 1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for epoch, (model, lr, samples) in models.items():
        row = {"epoch": epoch, "lr": lr, **measure(model, centers, std, lost, samples)}
        rows.append(row)
        print(
            f"| {epoch} | {lr:.2e} | {row['captured']} | {100 * row['high_quality']:.1f} % | {row['reverse_kl']:.3f} | "
            f"{row['in_lost']} | {row['d_lost']:.3f} | {row['d_held']:.3f} | {row['near']} | {row['pull']:.3f} | "
            f"{row['grad_norm']:.3f} | {' → '.join(f'{v:.2f}' for v in row['on_the_way'])} |"
        )
    for row in rows:
        print(json.dumps(row))
    if args.figure is not None:
        epochs = args.epochs
        if not epochs:
            first = next((r["epoch"] for r in rows if r["in_lost"] < args.empty), rows[0]["epoch"])
            full = max((r["epoch"] for r in rows if r["lr"] >= 0.999 * rows[0]["lr"]), default=rows[0]["epoch"])
            epochs = sorted({first, full, rows[-1]["epoch"]})
        figure([(e, models[e][0], models[e][2]) for e in epochs], centers, lost, args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
