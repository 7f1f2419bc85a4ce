"""Sampling without the data set: ``python cli.py predict --config C --ckpt_path P`` writes the samples.

``cli.py`` adds :class:`SampleWriter` (a Lightning ``BasePredictionWriter``) as ``--sampler.*`` to every
subcommand; only ``predict`` calls it. ``predict`` iterates over ``data.num_predict`` noise indices (the
DataModule neither downloads nor loads anything for it), ``GAN.predict_step`` turns them into uint8 samples of
G (its EMA when ``model.ema_decay`` is set), and the writer saves, into ``--sampler.output_dir``:

- ``samples.npz``: ``images``, uint8 (N, H, W, C) (``samples``, float (N, ...), for non-image data);
- ``samples.png``: the samples as a grid;
- ``interpolation.png``: ``num_rows`` rows, each G along the straight line between two random z
  (``interpolation_steps`` images from one end to the other), like Figure 3 of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torchvision
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from checks import check_int, check_ints
from metrics import gather_rows


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Points on the straight lines from each ``z0[i]`` to ``z1[i]``, ends included.

    Args:
        z0: start points (R, latent_dim).
        z1: end points (R, latent_dim).
        steps: points per line (>= 2).

    Returns:
        (R * steps, latent_dim), row-major: line i is rows i * steps ... (i + 1) * steps − 1.
    """
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype)[None, :, None]
    return torch.lerp(z0[:, None], z1[:, None], t).reshape(-1, z0.shape[-1])


class SampleWriter(BasePredictionWriter):
    """Writes ``samples.npz``, ``samples.png`` and ``interpolation.png`` at the end of ``predict``.

    Args:
        output_dir: folder for the three files (created if missing).
        nrow: images per row of ``samples.png`` (None: a square-ish grid).
        num_rows: rows of ``interpolation.png``, each between its own random pair of z.
        interpolation_steps: images per row of ``interpolation.png`` (>= 2, both ends included).
        seed: seed of the interpolation's end points (None: the global RNG, set by ``seed_everything``).
    """

    def __init__(
        self,
        output_dir: str = "samples",
        nrow: int | None = None,
        num_rows: int = 8,
        interpolation_steps: int = 10,
        seed: int | None = None,
    ) -> None:
        super().__init__(write_interval="epoch")
        check_ints("sampler.", 1, num_rows=num_rows)
        check_ints("sampler.", 2, interpolation_steps=interpolation_steps)
        check_int("sampler.nrow", nrow, 1, none_ok=True)
        self.output_dir = Path(output_dir).expanduser()
        self.nrow, self.num_rows, self.steps, self.seed = nrow, num_rows, interpolation_steps, seed

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        # One prediction dataloader gives a list of batches, several give a list of lists.
        batches = [b for p in predictions for b in (p if isinstance(p, (list, tuple)) else [p])]
        samples = torch.cat([b.cpu() for b in batches])
        if trainer.world_size > 1:  # every rank predicted its share of the indices: gather them, in index order
            # batch_indices: per dataloader, per batch, the sample indices (Lightning's predict loop records them)
            indices = torch.as_tensor([int(i) for loader in batch_indices for b in loader for i in b], dtype=torch.long)
            if len(indices) != len(samples):
                raise RuntimeError(f"SampleWriter: {len(samples)} samples but {len(indices)} indices on this rank")
            # every rank's share, then in index order (Lightning's predict sampler deals the indices round-robin)
            samples = gather_rows(trainer, samples)[gather_rows(trainer, indices).argsort()]
        if not trainer.is_global_zero:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if samples.dtype != torch.uint8 or samples.dim() != 4:  # non-image data, e.g. 2-D points
            np.savez_compressed(self.output_dir / "samples.npz", samples=samples.float().numpy())
            rank_zero_info(f"Wrote {len(samples)} samples to {self.output_dir / 'samples.npz'}")
            return

        np.savez_compressed(self.output_dir / "samples.npz", images=samples.permute(0, 2, 3, 1).contiguous().numpy())
        nrow = self.nrow or math.ceil(math.sqrt(len(samples)))
        torchvision.utils.save_image(samples.float() / 255, self.output_dir / "samples.png", nrow=nrow, padding=2)

        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        ends = pl_module.sample_z(2 * self.num_rows, gen)  # random pairs (z0, z1) ~ p_z
        z = interpolate(ends[: self.num_rows], ends[self.num_rows :], self.steps)
        images = pl_module.generate(z).cpu()
        torchvision.utils.save_image(
            images.float() / 255, self.output_dir / "interpolation.png", nrow=self.steps, padding=2
        )
        rank_zero_info(
            f"Wrote {len(samples)} samples to {self.output_dir}: samples.npz, samples.png, interpolation.png"
        )
