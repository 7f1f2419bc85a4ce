"""Speed of Just4GAN's MLP GAN (configs/cifar.yaml: batch 64, k = 1) trained three ways on one machine.

    python benchmarks/speed.py --device cpu --steps 50 --repeats 3
    python benchmarks/speed.py --device cuda --steps 200 --repeats 5 --variant "--data.on_device true"

(a)  the project: ``cli.py`` with ``configs/cifar.yaml`` (Lightning, TensorBoard logging, progress bar and
     checkpoint callback as a user runs it), on a CIFAR-10 folder;
(b)  a plain PyTorch loop with the same networks, losses, optimizers and algorithm (Algorithm 1, k = 1) on the
     same in-memory uint8 tensor, batches gathered on the host and moved to the device;
(c)  the usual loop: torchvision's ``CIFAR10`` data set with ``ToTensor``/``Normalize`` per image through a
     ``DataLoader`` (``--c-workers`` worker processes), then the same training step as (b).

Each way runs in its own subprocess (so peak memory is its own): ``--warmup`` steps (start-up, first
allocations, compilation) are not timed, then ``--repeats`` windows of ``--steps`` steps each are timed with a
device synchronisation at the window edges only. Figures per way:

- ``sec_per_step``: median over the windows of wall time per step; ``images_per_sec`` = 64 / sec_per_step;
  ``epoch_s`` = 781 steps × sec_per_step (a CIFAR-10 epoch of training steps, no validation);
- ``cpu_sec_per_step``: CPU time per step of the process and its DataLoader workers. On a CPU shared with
  other jobs wall time swings with their load and CPU time barely does: the steadier figure there;
- ``peak_rss_mb``: the process's peak resident memory; ``peak_rss_workers_mb``: the sum of the DataLoader
  workers' peaks; on CUDA ``peak_cuda_mb`` (``torch.cuda.max_memory_allocated``);
- ``ratios``: a/b and a/c of both times (< 1: the project is faster).

``--variant "ARGS"`` adds a project run with extra CLI arguments (repeatable), e.g.
``--variant "--data.on_device true" --variant "--model.compile true"``.

Without ``--data-dir`` a CIFAR-10-shaped folder of random images (``--n-images``, default 50,000 like
CIFAR-10's train split, so the timed steps stay inside one epoch) is written to a temporary folder; all
three ways read the same files. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

BATCH, LATENT, SEED = 64, 128, 1234  # configs/cifar.yaml
G_HIDDEN, D_HIDDEN = [256, 512, 1024, 2048], [1024, 512, 256]  # Just4GAN's widths (networks.py defaults)
TINY = 16  # --overhead: every hidden layer this wide, so a step is mostly the loop's own overhead
CIFAR10_TRAIN = 50_000


class WindowTimer:
    """Counts steps; after ``warmup`` steps records a timestamp every ``steps`` steps (synchronising the device)."""

    def __init__(self, warmup: int, steps: int, repeats: int, device: torch.device) -> None:
        self.warmup, self.steps, self.repeats, self.device = warmup, steps, repeats, device
        self.count = 0
        self.marks: list[float] = []
        self.cpu_marks: list[float] = []
        self.memory: dict[str, float] = {}

    def tick(self) -> bool:
        """Call after every training step; returns True when the last window has ended."""
        self.count += 1
        if self.count >= self.warmup and (self.count - self.warmup) % self.steps == 0:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(_cpu_seconds())
            if len(self.marks) > self.repeats:
                self.memory = _memory(self.device)  # while the DataLoader workers are still alive
        return len(self.marks) > self.repeats

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps * self.repeats

    def seconds_per_step(self) -> list[float]:
        return [(b - a) / self.steps for a, b in zip(self.marks[:-1], self.marks[1:], strict=False)]

    def result(self) -> dict[str, Any]:
        cpu = [(b - a) / self.steps for a, b in zip(self.cpu_marks[:-1], self.cpu_marks[1:], strict=False)]
        return {"times": self.seconds_per_step(), "cpu_times": cpu, **self.memory}


def _cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers), from /proc on Linux.

    On a CPU shared with other jobs, wall time per step swings with their load; CPU time spent on the step
    barely does, so it is the steadier figure for comparing the three ways there."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid; then utime, stime are fields 11, 12 after the name
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process, and summed over its live child processes (DataLoader workers)."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    workers = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(os.getpid()) and "VmHWM" in fields:
            workers += int(fields["VmHWM"].split()[0]) / 1024  # peak RSS of that worker, kB
    if workers:
        out["peak_rss_workers_mb"] = workers
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# --- (a) the project -----------------------------------------------------------------------------------------


def run_project(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    from lightning.pytorch.callbacks import Callback

    from cli import GANCLI

    device = torch.device(args.device)
    timer = WindowTimer(args.warmup, args.steps, args.repeats, device)

    class StepTimer(Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if timer.tick():
                trainer.should_stop = True

    log_dir = tempfile.mkdtemp(prefix="speed_logs_")
    cli_args = [
        "--config",
        str(ROOT / "configs" / "cifar.yaml"),
        "--data.data_dir",
        args.data_dir,
        "--trainer.accelerator",
        "gpu" if device.type == "cuda" else "cpu",
        "--trainer.devices",
        "1",
        "--trainer.logger.init_args.save_dir",
        log_dir,
        *(["--data.verify_checksums", "false"] if args.fake else []),
        *(["--model.generator.init_args.hidden_dims", json.dumps(_widths(args)[0])] if args.overhead else []),
        *(["--model.discriminator.init_args.hidden_dims", json.dumps(_widths(args)[1])] if args.overhead else []),
        *extra,
    ]
    cli = GANCLI(args=cli_args, run=False)
    cli.trainer.callbacks.append(StepTimer())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if len(timer.marks) <= args.repeats:
        raise RuntimeError(f"the project stopped after {timer.count} steps, before {timer.total_steps}")
    return timer.result()


# --- (b) and (c): plain PyTorch loops ------------------------------------------------------------------------


def _widths(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    return ([TINY] * len(G_HIDDEN), [TINY] * len(D_HIDDEN)) if args.overhead else (G_HIDDEN, D_HIDDEN)


def _plain_setup(args: argparse.Namespace, device: torch.device) -> Any:
    from gan_module import GANAdam, d_loss, g_loss_non_saturating
    from networks import MLPDiscriminator, MLPGenerator

    torch.manual_seed(SEED)
    g_widths, d_widths = _widths(args)
    G = MLPGenerator(LATENT, (3, 32, 32), hidden_dims=g_widths).to(device)
    D = MLPDiscriminator((3, 32, 32), hidden_dims=d_widths).to(device)
    opt_g, opt_d = GANAdam(G.parameters()), GANAdam(D.parameters())

    def train_step(x: torch.Tensor) -> None:
        """Algorithm 1 with k = 1: one D update on the real batch x and fresh z, then one G update on fresh z."""
        m = x.shape[0]
        with torch.no_grad():
            fake = G(torch.randn(m, LATENT, device=device))
        loss_d = d_loss(D(x), D(fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)  # G's update leaves no gradient in D
        loss_g = g_loss_non_saturating(D(G(torch.randn(m, LATENT, device=device))))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)

    return train_step


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    """(b): batches sliced from the in-memory uint8 tensor, scaled to [−1, 1] on the device."""
    from datamodule import CIFAR10DataModule

    device = torch.device(args.device)
    images = CIFAR10DataModule(args.data_dir, verify_checksums=not args.fake)._load(train=True)
    train_step = _plain_setup(args, device)
    timer = WindowTimer(args.warmup, args.steps, args.repeats, device)
    done = False
    while not done:
        perm = torch.randperm(len(images))
        for i in range(len(images) // BATCH):
            x = images[perm[i * BATCH : (i + 1) * BATCH]].to(device, non_blocking=True)
            train_step(x.float().mul_(2 / 255).sub_(1))
            if done := timer.tick():
                break
    return timer.result()


def run_torchvision(args: argparse.Namespace) -> dict[str, Any]:
    """(c): torchvision CIFAR10 + ToTensor + Normalize per image + DataLoader, as in the PyTorch tutorials."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    device = torch.device(args.device)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    from datamodule import _CIFAR10  # torchvision's CIFAR10, its md5 check off for the fake folder

    dataset = _CIFAR10(args.data_dir, train=True, download=False, verify=not args.fake)
    dataset.transform = transform  # applied per image in __getitem__, as in the tutorials
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=args.c_workers,
        pin_memory=device.type == "cuda",
    )
    train_step = _plain_setup(args, device)
    timer = WindowTimer(args.warmup, args.steps, args.repeats, device)
    done = False
    while not done:
        for x, _ in loader:
            train_step(x.to(device, non_blocking=True))
            if done := timer.tick():
                break
    return timer.result()


# --- driver ---------------------------------------------------------------------------------------------------


def _summary(raw: dict[str, Any]) -> dict[str, Any]:
    sec = statistics.median(raw["times"])
    out = {
        "sec_per_step": sec,
        "sec_per_step_quartiles": [round(q, 6) for q in statistics.quantiles(raw["times"], n=4)]
        if len(raw["times"]) > 1
        else raw["times"],
        "images_per_sec": BATCH / sec,
        "epoch_s": CIFAR10_TRAIN // BATCH * sec,
        "cpu_sec_per_step": statistics.median(raw["cpu_times"]),
    }
    out.update({k: round(v, 1) for k, v in raw.items() if k not in ("times", "cpu_times")})
    return out


def _child(args: argparse.Namespace, way: str, extra: str = "") -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", way, f"--extra={extra}", *sys.argv[1:]]
    if args.fake:
        cmd += ["--data-dir", args.data_dir, "--fake"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{way} {extra} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (the median is reported)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--data-dir", default=None, help="a folder holding cifar-10-batches-py (default: fake)")
    parser.add_argument("--n-images", type=int, default=CIFAR10_TRAIN, help="size of the fake train split")
    parser.add_argument("--c-workers", type=int, default=2, help="DataLoader workers of (c) (tutorial: 2)")
    parser.add_argument("--variant", action="append", default=[], help="extra cli.py args for another (a) run")
    parser.add_argument("--overhead", action="store_true", help=f"hidden widths {TINY}: per-step overhead only")
    parser.add_argument("--ways", default="a,b,c", help="which of a, b, c to run")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="", help=argparse.SUPPRESS)
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    for name in ("steps", "repeats", "n_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first step includes start-up)")

    if args.worker:  # one way, in this (child) process
        run = {"a": lambda: run_project(args, shlex.split(args.extra)), "b": lambda: run_plain(args)}
        run["c"] = lambda: run_torchvision(args)
        print(json.dumps(run[args.worker]()))
        return

    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    tmp = None
    if args.data_dir is None:
        from tests.fake_data import write_cifar10

        tmp = tempfile.TemporaryDirectory(prefix="speed_cifar_")
        args.data_dir, args.fake = str(write_cifar10(Path(tmp.name), n_train=args.n_images, n_test=10_000)), True
    results: dict[str, Any] = {}
    runs = [(way, way, "") for way in ways]
    if "a" in ways:
        runs += [(f"a{i}", "a", extra) for i, extra in enumerate(args.variant, start=2)]
    for name, way, extra in runs:
        try:
            results[name] = ({"args": extra} if extra else {}) | _summary(_child(args, way, extra))
        except RuntimeError as error:  # one broken way must not hide the others' figures
            results[name] = {"error": str(error)}
        # One line per way as soon as it is measured, so that a run cut short by a time limit keeps its figures.
        print(json.dumps({"way": name, **results[name]}), file=sys.stderr, flush=True)
    ratios = {}
    for name in [n for n in results if n.startswith("a") and "error" not in results[n]]:
        for ref in ("b", "c"):
            if ref in results and "error" not in results[ref]:
                ratios[f"{name}/{ref}"] = results[name]["sec_per_step"] / results[ref]["sec_per_step"]
                cpu = results[name]["cpu_sec_per_step"] / results[ref]["cpu_sec_per_step"]
                ratios[f"{name}/{ref} (cpu time)"] = cpu
    info = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": BATCH,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "data": args.data_dir if not args.fake else f"fake CIFAR-10 ({args.n_images} random images)",
        "c_workers": args.c_workers,
        "networks": f"MLP, hidden widths {TINY} (--overhead)" if args.overhead else "MLP, Just4GAN's widths",
    }
    print(json.dumps({**info, **results, "ratios": ratios}))
    if tmp is not None:
        tmp.cleanup()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"cpu ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
