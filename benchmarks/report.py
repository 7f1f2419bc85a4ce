"""Plots of logged curves for a report: a run's losses, D's outputs and Parzen figure, or one tag across runs.

    python benchmarks/report.py lightning_logs/mnist/version_0 [--out DIR]
    python benchmarks/report.py RUN [RUN ...] --tag modes/high_quality --out seeds.png [--label-from 2]
    python benchmarks/report.py RUN_A RUN_B --tag parzen/ll parzen_ema/ll --names "lr 0.2" "lr 0.1" --out both.png

The first form reads the run's TensorBoard event files and writes ``losses.png``, ``d_outputs.png`` and, where
the run logged ``parzen/ll``, ``parzen.png`` (with ``parzen_ema/ll`` when an EMA of G was scored) into ``--out``
(default: the run folder). The second plots each ``--tag`` against the epoch for every run given, one line per run
and tag, labelled by ``--names`` (one per run) or the run's path (its last ``--label-from`` parts), followed by the
tag when there are several. Prints the paths written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        by_step = {e.step: e.value for e in sorted(events.Scalars(tag), key=lambda e: e.wall_time)}
        out[tag] = sorted(by_step.items())
    return out


def by_epoch(logged: dict[str, list[tuple[int, float]]], tag: str) -> list[tuple[int, float]]:
    """A tag's values against the epochs trained (Lightning logs ``epoch`` at the step of every epoch metric)."""
    epoch_of = dict(logged.get("epoch", []))
    return [(int(epoch_of.get(step, i)) + 1, value) for i, (step, value) in enumerate(logged[tag])]


def plot(path: Path, series: dict[str, list[tuple[int, float]]], xlabel: str, ylabel: str, log: bool = False) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for label, points in series.items():
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 40 else None,
                  markersize=3, label=label)  # fmt: skip
    if log:
        axes.set_yscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders: lightning_logs/<name>/version_N")
    parser.add_argument("--out", type=Path, default=None, help="where the PNGs go (default: the run folder)")
    parser.add_argument("--tag", nargs="+", default=None, help="plot these tags for every run into the file --out")
    parser.add_argument("--names", nargs="+", default=None, help="with --tag: one label per run, in order")
    parser.add_argument("--label-from", type=int, default=2, help="path parts of a run that label its line")
    args = parser.parse_args()
    if args.tag:
        if args.out is None:
            parser.error("--tag needs --out FILE.png")
        if args.names is not None and len(args.names) != len(args.runs):
            parser.error(f"--names needs one label per run: {len(args.runs)} runs, {len(args.names)} names")
        names = args.names or ["/".join(run.parts[-args.label_from :]) for run in args.runs]
        series = {}
        for name, run in zip(names, args.runs, strict=True):
            logged = curves(run)
            for tag in args.tag:
                if tag not in logged:
                    parser.error(f"--tag {tag}: not logged in {run} (it has: {', '.join(sorted(logged))})")
                series[name if len(args.tag) == 1 else f"{name}: {tag}"] = by_epoch(logged, tag)
        print(plot(args.out, series, "epochs trained", ", ".join(args.tag)))
        return
    if args.names is not None:
        parser.error("--names goes with --tag")
    if len(args.runs) != 1:
        parser.error("one run, or several with --tag")
    out = args.out or args.runs[0]
    out.mkdir(parents=True, exist_ok=True)
    logged = curves(args.runs[0])

    written = []
    losses = {tag: by_epoch(logged, tag) for tag in ("loss/d_epoch", "loss/g_epoch") if tag in logged}
    if losses:
        written.append(plot(out / "losses.png", losses, "epochs trained", "epoch mean of the loss"))
    outputs = {tag: by_epoch(logged, tag) for tag in ("d/real_epoch", "d/fake_epoch") if tag in logged}
    if outputs:
        written.append(plot(out / "d_outputs.png", outputs, "epochs trained", "epoch mean of D's output", log=True))
    parzen = {tag: by_epoch(logged, tag) for tag in ("parzen/ll", "parzen_ema/ll") if tag in logged}
    if parzen:
        written.append(plot(out / "parzen.png", parzen, "epochs trained", "Parzen log-likelihood, validation (nats)"))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
