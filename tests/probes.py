"""Callbacks that tests load into real CLI runs (``--trainer.callbacks+=...``) to look inside them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch


class RankProbe(L.Callback):
    """Saves, per rank, the parameters before and after training and every noise batch the rank drew for training."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.z: list[torch.Tensor] = []
        self.initial: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.initial = {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters()}
        draw = pl_module.sample_z

        def recording(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
            z = draw(n, generator)
            if pl_module.training:
                self.z.append(z.detach().cpu().clone())
            return z

        pl_module.sample_z = recording

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        params = {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters()}
        torch.save(
            {
                "params": params,
                "initial": self.initial,
                "z": self.z,
                "world_size": trainer.world_size,
                "strategy": type(trainer.strategy).__name__,
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


class FixedShapeGenerator(torch.nn.Module):
    """A user's G that ignores the image shape it is given and always makes 1×28×28 images."""

    value_range = (-1.0, 1.0)  # tanh, applied in forward as a function: declared, since it cannot be read off a layer

    def __init__(self, latent_dim: int = 128, image_shape: tuple[int, ...] = (3, 32, 32)) -> None:
        super().__init__()
        self.net = torch.nn.Linear(latent_dim, 28 * 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z)).view(-1, 1, 28, 28)


class NaNAfterDiscriminator(torch.nn.Module):
    """A D whose logits turn NaN after ``after`` forward calls in training mode."""

    def __init__(self, image_shape: tuple[int, ...] = (3, 32, 32), after: int = 10) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(image_shape).prod()), 1))
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = self.net(x)
        return out * float("nan") if self.training and self.calls > self.after else out


class GradientProbe(L.Callback):
    """Saves, per rank, everything needed to recompute each update's gradient by hand.

    For every training step: the real batch (uint8, as the loader gave it) and every z drawn for training; for
    every optimizer step: which network steps, the state of G and D just before that step, and the gradients
    the optimizer is about to apply (after DDP's all-reduce and AMP's unscaling).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.steps: list[dict] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        draw = pl_module.sample_z

        def recording(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
            z = draw(n, generator)
            if pl_module.training:
                self.steps[-1]["z"].append(z.detach().cpu().clone())
            return z

        pl_module.sample_z = recording

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append({"batch": batch.detach().cpu().clone(), "z": [], "updates": []})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        network = "D" if params[0] is next(pl_module.D.parameters()) else "G"
        state = {
            name: {k: v.detach().cpu().clone() for k, v in getattr(pl_module, name).state_dict().items()}
            for name in ("G", "D")
        }
        grads = [p.grad.detach().cpu().clone() for p in params]
        self.steps[-1]["updates"].append({"network": network, "state": state, "grads": grads})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"steps": self.steps, "world_size": trainer.world_size}, self.out_dir / f"rank{trainer.global_rank}.pt"
        )


class KillAt(L.Callback):
    """Kills its own process with SIGKILL (as ``kill -9`` would) before the training step at ``global_step``.

    Every rank kills itself at the same step, so a multi-process run dies as a whole, as on a lost node.
    """

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.global_step:
            os.kill(os.getpid(), signal.SIGKILL)


class HangAt(L.Callback):
    """Makes rank 0 enter a barrier alone at the start of training epoch ``epoch``: a collective that one rank reaches
    and the others never do (what an evaluation run on rank 0 only used to do), so the run hangs there."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and trainer.is_global_zero:
            Path(os.environ.get("HANG_MARKER", os.devnull)).write_text("hanging")
            trainer.strategy.barrier("one rank alone")


class LinearOutputGenerator(torch.nn.Module):
    """A user's G whose last layer is Linear and which declares no value_range: its output range cannot be told."""

    def __init__(self, latent_dim: int = 128, image_shape: tuple[int, ...] = (3, 32, 32)) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = torch.nn.Linear(latent_dim, int(torch.tensor(image_shape).prod()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


class SignalAt(L.Callback):
    """Sends ``signum`` (SIGTERM) to its own process on global rank 0 once ``global_step`` is reached, as
    ``kill -TERM <pid>`` from outside would (a real signal, delivered between two training steps)."""

    def __init__(self, global_step: int, signum: int = int(signal.SIGTERM)) -> None:
        self.global_step, self.signum, self.sent = global_step, signum, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.is_global_zero and trainer.global_step >= self.global_step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class SmallFeatures(torch.nn.Module):
    """Stands in for Inception in CLI runs: uint8 (N, 3, H, W) → (features (N, 8), logits (N, 4)), fixed weights."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.features = torch.nn.Parameter(torch.randn(3 * 8 * 8, 8, generator=gen) / 14, requires_grad=False)
        self.logits = torch.nn.Parameter(torch.randn(8, 4, generator=gen), requires_grad=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        small = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 8).flatten(1)
        f = torch.tanh(small @ self.features)
        return f, f @ self.logits * 3
