"""Callbacks that tests load into real CLI runs (``--trainer.callbacks+=...``) to look inside them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch


class RankProbe(L.Callback):
    """Saves, per rank, the parameters after training and every noise batch the rank drew for training."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.z: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
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
                "z": self.z,
                "world_size": trainer.world_size,
                "strategy": type(trainer.strategy).__name__,
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


class FixedShapeGenerator(torch.nn.Module):
    """A user's G that ignores the image shape it is given and always makes 1×28×28 images."""

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
