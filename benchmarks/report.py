"""Plots of a run's logged curves for a report: the losses, D's outputs, and the Parzen figure when logged.

    python benchmarks/report.py lightning_logs/mnist/version_0 [--out DIR]

Reads the run's TensorBoard event files and writes ``losses.png``, ``d_outputs.png`` and, where the run logged
``parzen/ll``, ``parzen.png`` (with ``parzen_raw/ll`` when an EMA of G was compared) into ``--out`` (default: the
run folder). Prints the paths.
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
    parser.add_argument("run", type=Path, help="a run folder: lightning_logs/<name>/version_N")
    parser.add_argument("--out", type=Path, default=None, help="where the PNGs go (default: the run folder)")
    args = parser.parse_args()
    out = args.out or args.run
    out.mkdir(parents=True, exist_ok=True)
    logged = curves(args.run)
    epoch_of = dict(logged.get("epoch", []))  # the step → epoch Lightning logs beside every epoch metric

    def by_epoch(tag: str) -> list[tuple[int, float]]:
        return [(int(epoch_of.get(step, i)) + 1, value) for i, (step, value) in enumerate(logged[tag])]

    written = []
    losses = {tag: by_epoch(tag) for tag in ("loss/d_epoch", "loss/g_epoch") if tag in logged}
    if losses:
        written.append(plot(out / "losses.png", losses, "epochs trained", "epoch mean of the loss"))
    outputs = {tag: by_epoch(tag) for tag in ("d/real_epoch", "d/fake_epoch") if tag in logged}
    if outputs:
        written.append(plot(out / "d_outputs.png", outputs, "epochs trained", "epoch mean of D's output", log=True))
    parzen = {tag: by_epoch(tag) for tag in ("parzen/ll", "parzen_raw/ll") if tag in logged}
    if parzen:
        written.append(plot(out / "parzen.png", parzen, "epochs trained", "Parzen log-likelihood, validation (nats)"))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
