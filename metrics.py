"""Evaluation metrics: pure functions that tests check against known answers, and the Lightning Callbacks
that compute them on samples of G at the end of validation and test epochs (enable them in a config's
``trainer.callbacks``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchvision
from lightning.pytorch.loggers import TensorBoardLogger

# --- Mode coverage on 2-D mixtures ---------------------------------------------------------------------------


def mode_coverage(
    samples: torch.Tensor, centers: torch.Tensor, std: float, threshold: float = 3.0
) -> dict[str, float | int | torch.Tensor]:
    """The mode-collapse metrics of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018).

    Every sample is assigned to its nearest mode centre (Euclidean distance; all modes share one isotropic
    ``std``, so this is also the nearest mode in Mahalanobis distance).

    - A sample is **high-quality** when its distance to that nearest centre is below ``threshold * std``
      (strictly, as in PacGAN's code).
    - A mode is **captured** when at least one high-quality sample is assigned to it.
    - **Reverse KL**: let ``p_j`` be the fraction of the high-quality samples assigned to mode j (the mode
      histogram, normalised) and ``u_j = 1/K`` the uniform weight of the K modes of the data. Then
      ``reverse_kl = KL(p || u) = Σ_j p_j log(p_j / u_j) = log K − H(p)`` in nats, with ``0 log 0 = 0``: an
      empty mode adds nothing to the sum (it is still penalised, since the mass of p sits on fewer modes).
      It is 0 when the high-quality samples spread evenly over all modes and log K when they all fall on
      one mode. With no high-quality sample at all p is undefined and ``reverse_kl`` is NaN.

    Args:
        samples: points (N, D), N >= 1.
        centers: mode centres (K, D).
        std: the modes' standard deviation (per coordinate), > 0.
        threshold: the high-quality radius in standard deviations (3 in VEEGAN/PacGAN), > 0.

    Returns:
        A dict with ``captured`` (int, modes captured), ``high_quality`` (float, fraction of the samples that
        are high-quality, in [0, 1]), ``reverse_kl`` (float, nats) and ``counts`` (int64 tensor (K,),
        high-quality samples per mode).
    """
    if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"samples (N, D) and centers (K, D) must have the same D, got {tuple(samples.shape)} and "
            f"{tuple(centers.shape)}"
        )
    if len(samples) == 0 or len(centers) == 0:
        raise ValueError("mode_coverage needs at least one sample and one mode centre")
    if not std > 0 or not threshold > 0:
        raise ValueError(f"std and threshold must be > 0, got std={std}, threshold={threshold}")
    x = samples.detach().to("cpu", torch.float64)
    c = centers.detach().to("cpu", torch.float64)
    distance, nearest = torch.cdist(x, c).min(dim=1)
    high_quality = distance < threshold * std  # NaN samples compare False: never high-quality
    k = len(c)
    counts = torch.bincount(nearest[high_quality], minlength=k)
    total = int(counts.sum())
    if total == 0:
        reverse_kl = math.nan
    else:
        p = counts[counts > 0].double() / total
        reverse_kl = float((p * (p * k).log()).sum())
    return {
        "captured": int((counts > 0).sum()),
        "high_quality": float(high_quality.double().mean()),
        "reverse_kl": reverse_kl,
        "counts": counts,
    }


def scatter_image(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    threshold: float = 3.0,
    size: int = 512,
    extent: float | None = None,
) -> torch.Tensor:
    """A scatter plot of 2-D samples over the mode centres, drawn with torch (no plotting library needed).

    Samples are dark dots (darker where they pile up), each mode is a red circle of radius
    ``threshold * std`` (the high-quality region) around a red centre pixel; grey axes cross at the origin.
    Samples outside the square [−extent, extent]² are not drawn.

    Args:
        samples: points (N, 2).
        centers: mode centres (K, 2).
        std: the modes' standard deviation.
        threshold: radius of the drawn circles in standard deviations.
        size: the picture is size × size pixels.
        extent: half-width of the drawn square in data units; None: 1.25 × the largest |coordinate| of a
            centre plus 10 std.

    Returns:
        A float RGB image (3, size, size) in [0, 1], y upwards.
    """
    if samples.ndim != 2 or samples.shape[1] != 2 or centers.ndim != 2 or centers.shape[1] != 2:
        raise ValueError("scatter_image draws 2-D points: samples (N, 2) and centers (K, 2)")
    c = centers.detach().to("cpu", torch.float64)
    if extent is None:
        extent = 1.25 * float(c.abs().max()) + 10 * std
    scale = size / (2 * extent)  # pixels per data unit

    def to_pixels(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        col = ((points[:, 0] + extent) * scale).floor().long()
        row = ((extent - points[:, 1]) * scale).floor().long()  # y up
        return row, col

    image = torch.ones(3, size, size)
    # Axes through the origin.
    origin = int(extent * scale)
    image[:, origin, :] = image[:, :, origin] = 0.85
    # Samples: count per pixel, dilate to 3×3 dots, shade (1 sample: mid grey-blue, 4+: dark).
    x = samples.detach().to("cpu", torch.float64)
    x = x[torch.isfinite(x).all(dim=1)]
    row, col = to_pixels(x)
    inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
    counts = torch.bincount(row[inside] * size + col[inside], minlength=size * size).view(1, 1, size, size)
    density = torch.nn.functional.max_pool2d(counts.float(), 3, stride=1, padding=1)[0, 0]
    shade = (density / 4).clamp(max=1.0) * 0.55 + (density > 0) * 0.35
    for channel, ink in enumerate((0.05, 0.1, 0.35)):  # dark blue
        image[channel] = image[channel] * (1 - shade) + ink * shade
    # Modes: a circle of radius threshold·std around each centre, and its centre pixel.
    ys = extent - (torch.arange(size, dtype=torch.float64) + 0.5) / scale
    xs = (torch.arange(size, dtype=torch.float64) + 0.5) / scale - extent
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).view(-1, 2)  # pixel centres, row-major
    distance = torch.cdist(grid, c).min(dim=1).values.view(size, size)
    ring = (distance - threshold * std).abs() < 0.75 / scale
    row, col = to_pixels(c)
    dot = torch.zeros(size, size, dtype=torch.bool)
    ok = (row >= 0) & (row < size) & (col >= 0) & (col < size)
    dot[row[ok], col[ok]] = True
    for channel, ink in enumerate((0.85, 0.1, 0.1)):  # red
        image[channel][ring | dot] = ink
    return image


def _tensorboard(trainer: L.Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def _log_step(trainer: L.Trainer) -> int:
    """The step that ``LightningModule.log`` writes figures at (training batches so far, not optimizer steps)."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))


class ModeCoverage(L.Callback):
    """Mode coverage of G on a 2-D mixture, at the end of every validation and test epoch.

    Draws ``num_samples`` samples with ``pl_module.sample``, reads the mixture's ``centers`` and ``std`` from
    ``trainer.datamodule`` (e.g. ``datamodule.ToyMixtureDataModule``) and, on global rank zero, logs
    ``modes/captured``, ``modes/high_quality`` (a fraction) and ``modes/reverse_kl`` (see
    :func:`mode_coverage`), adds the scatter picture (:func:`scatter_image`) to TensorBoard as
    ``modes/samples`` and writes it as ``modes/<stage>_step<global step>.png`` in the run's log directory.
    The sanity-check validation before training is skipped. When ``fit`` stops where no validation ran
    (``max_steps`` in the middle of an epoch), the final G is evaluated once more at the end of training and
    the three figures go straight to the loggers (``self.log`` is not allowed in ``on_train_end``).

    Args:
        num_samples: samples per evaluation (2,500 in VEEGAN and PacGAN).
        threshold: high-quality radius in standard deviations (3 in VEEGAN and PacGAN).
        seed: seed of the evaluation noise, the same z every time so that epochs compare; None: fresh noise.
        image_size: side of the scatter picture in pixels; 0 turns the picture off.
    """

    def __init__(self, num_samples: int = 2500, threshold: float = 3.0, seed: int | None = 0, image_size: int = 512):
        super().__init__()
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"ModeCoverage.num_samples must be an integer >= 1, got {num_samples!r}")
        if not threshold > 0:
            raise ValueError(f"ModeCoverage.threshold must be > 0, got {threshold!r}")
        if not isinstance(image_size, int) or image_size < 0:
            raise ValueError(f"ModeCoverage.image_size must be an integer >= 0, got {image_size!r}")
        self.num_samples = num_samples
        self.threshold = threshold
        self.seed = seed
        self.image_size = image_size
        self._stale = False  # G was trained after the last evaluation

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is None or not hasattr(data, "centers") or not hasattr(data, "std"):
            raise ValueError(
                "ModeCoverage needs a datamodule with mode `centers` and `std` (datamodule.ToyMixtureDataModule), "
                f"got {type(data).__name__}"
            )

    def _evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, via_loggers: bool = False
    ) -> dict[str, Any] | None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return None
        step = _log_step(trainer)
        self._stale = False
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        samples = pl_module.sample(self.num_samples, generator).reshape(self.num_samples, -1).cpu()
        data = trainer.datamodule
        result = mode_coverage(samples, data.centers, data.std, self.threshold)
        figures = {f"modes/{name}": float(result[name]) for name in ("captured", "high_quality", "reverse_kl")}
        if via_loggers:
            for logger in trainer.loggers:
                logger.log_metrics(figures, step=step)
        else:
            for name, value in figures.items():
                pl_module.log(name, value, rank_zero_only=True)
        if self.image_size:
            image = scatter_image(samples, data.centers, data.std, self.threshold, self.image_size)
            logger = _tensorboard(trainer)
            if logger is not None:
                logger.experiment.add_image("modes/samples", image, global_step=step)
            if trainer.log_dir is not None:
                path = Path(trainer.log_dir) / "modes" / f"{stage}_step{step:07d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                torchvision.utils.save_image(image, path)
        return result

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluate(trainer, pl_module, "test")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._stale = True  # (an epoch-end validation runs after this hook, in the same loop iteration)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stale:
            self._evaluate(trainer, pl_module, "end", via_loggers=True)
