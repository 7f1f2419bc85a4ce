"""The mode-collapse lab: the paper's GAN on 2-D Gaussian mixtures whose modes are all known.

Everything the lab needs beside the GAN module, in one place: the mixtures (:class:`ToyMixtureDataModule`),
small fully connected G and D (:class:`ToyGenerator`, :class:`ToyDiscriminator`), the standard mode-coverage
metric (:func:`mode_coverage`) and its callback with a scatter plot (:class:`ModeCoverage`). The core files
(``gan_module.py``, ``datamodule.py``, ``networks.py``, ``metrics.py``) never import this module.

    python cli.py fit --config configs/ring8.yaml        # 8 modes on a ring
    python cli.py fit --config configs/grid25.yaml       # 25 modes on a grid
    python benchmarks/mode_seeds.py --config configs/ring8.yaml --seeds 10 --jobs 2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from checks import check_ints, positive_ints
from datamodule import NoiseIndices, SeededBatches, _identity, seeded_loader
from metrics import EvaluationCallback, gather_rows, generate, log_figure, log_step
from networks import Init, Maxout, fully_connected, init_weights

Mixture = Literal["ring", "grid"]

# --- Data -----------------------------------------------------------------------------------------------------


def mixture_centers(mixture: Mixture) -> tuple[torch.Tensor, float]:
    """The mode centres (K, 2) and the per-coordinate standard deviation of a named mixture.

    - ``ring``: 8 modes evenly spaced on the unit circle, centre i at angle 2πi/8 (i = 0..7), std 0.01.
    - ``grid``: 25 modes at {−4, −2, 0, 2, 4}², std 0.05.
    """
    if mixture == "ring":
        # 2πi/8 for i = 0..7: eight distinct angles. (linspace(0, 2π, 8) would put the 8th mode on the 1st.)
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01
    if mixture == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"data.mixture must be 'ring' or 'grid', got {mixture!r}")


class ToyMixtureDataModule(L.LightningDataModule):
    """Points of a 2-D mixture of equally weighted isotropic Gaussians (see :func:`mixture_centers`).

    The two standard mode-collapse benchmarks (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018). Batches
    are float32 tensors (N, 2), passed to D unscaled (G has a linear output), in the seeded, resumable order of
    ``datamodule.SeededBatches``. :class:`ModeCoverage` reads ``centers`` and ``std``; it scores samples of G, so
    the validation and test sets are small (they only feed the module's D-on-real statistics).

    Args:
        mixture: ``ring`` (8 modes) or ``grid`` (25 modes).
        batch_size: points per minibatch.
        num_train: training points (100,000 in PacGAN).
        num_val: points of the validation set and, separately drawn, of the test set.
        seed: seed of the points (train, validation and test are drawn from three streams of this seed).
        num_predict: samples that ``predict`` generates.
    """

    def __init__(
        self,
        mixture: Mixture = "ring",
        batch_size: int = 256,
        num_train: int = 100_000,
        num_val: int = 1_000,
        seed: int = 0,
        num_predict: int = 2_500,
    ) -> None:
        super().__init__()
        check_ints("data.", 1, batch_size=batch_size, num_train=num_train, num_val=num_val, num_predict=num_predict)
        check_ints("data.", 0, seed=seed)
        if batch_size > num_train:
            raise ValueError(f"data.batch_size={batch_size} is larger than data.num_train={num_train}")
        self.centers, self.std = mixture_centers(mixture)
        self.mixture, self.batch_size, self.num_train, self.num_val = mixture, batch_size, num_train, num_val
        self.seed, self.num_predict = seed, num_predict
        self.image_shape = (2,)
        self.train_points: torch.Tensor | None = None
        self.val_points: torch.Tensor | None = None
        self.test_points: torch.Tensor | None = None

    def sample_points(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n points of the mixture: a mode drawn uniformly, plus isotropic Gaussian noise of std ``std``."""
        modes = torch.randint(len(self.centers), (n,), generator=generator)
        return self.centers[modes] + self.std * torch.randn(n, 2, generator=generator)

    def setup(self, stage: str) -> None:
        if self.train_points is not None:
            return
        # Three streams of one seed, so the training points do not depend on num_val and vice versa.
        streams = [torch.Generator().manual_seed(self.seed * 3 + i) for i in range(3)]
        self.train_points = self.sample_points(self.num_train, streams[0])
        self.val_points = self.sample_points(self.num_val, streams[1])
        self.test_points = self.sample_points(self.num_val, streams[2])

    def train_dataloader(self) -> SeededBatches:
        return seeded_loader(self.trainer, self.train_points, self.batch_size, shuffle=True)

    def val_dataloader(self) -> SeededBatches:
        return seeded_loader(self.trainer, self.val_points, self.batch_size, shuffle=False)

    def test_dataloader(self) -> SeededBatches:
        return seeded_loader(self.trainer, self.test_points, self.batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(NoiseIndices(self.num_predict), batch_size=self.batch_size, collate_fn=_identity)


# --- Networks -------------------------------------------------------------------------------------------------


class ToyGenerator(nn.Module):
    """G for 2-D points: z → hidden ReLU layers → a **linear** output (the data is not bounded: no Tanh).

    The shape of the generator of the PacGAN/VEEGAN 2-D experiments (fully connected ReLU layers, linear output),
    narrower so that training fits a small CPU budget.

    Args:
        latent_dim: size of z.
        image_shape: shape of one data point, ``(2,)`` (linked from the data by the CLI).
        hidden_dims: widths of the hidden layers.
        batch_norm: BatchNorm before every hidden ReLU (as in PacGAN's generator). Off by default: with it,
            ring8 (ReLU D) kept about 40 % of its samples high-quality after 3,900 steps against 94 % without
            (one seed each). A plausible cause: G samples in eval mode, where the running statistics lag the
            weights, and the ring's modes are only 0.01 wide.
        scale: a fixed factor on the output: G learns the data divided by ``scale`` (set it, and D's ``scale``,
            to the data's extent, e.g. 4 for the grid, so that both networks work at unit scale).
        init: weight initialisation, see ``networks.init_weights``.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        image_shape: Sequence[int] = (2,),
        hidden_dims: Sequence[int] = (256, 256, 256),
        batch_norm: bool = False,
        scale: float = 1.0,
        init: Init = "default",
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.latent_dim, self.image_shape, self.scale = latent_dim, positive_ints("image_shape", image_shape), scale
        widths = (latent_dim, *positive_ints("hidden_dims", hidden_dims))
        norm = nn.BatchNorm1d if batch_norm else None
        layers = fully_connected(widths, nn.ReLU, norm=norm, bias=not batch_norm)  # BatchNorm's shift is the bias
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], math.prod(self.image_shape)))
        init_weights(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.net(z) * self.scale).view(z.shape[0], *self.image_shape)


class ToyDiscriminator(nn.Module):
    """D for 2-D points: hidden ReLU (or maxout) layers → one logit.

    Args:
        image_shape: shape of one data point, ``(2,)`` (linked from the data by the CLI).
        hidden_dims: widths of the hidden layers.
        maxout_pieces: 1 for ReLU units; > 1 for maxout units with that many pieces (PacGAN's D: 5).
        scale: D sees its input divided by this fixed factor (the data's extent; see ``ToyGenerator``).
        init: weight initialisation, see ``networks.init_weights``.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (2,),
        hidden_dims: Sequence[int] = (256, 256, 256),
        maxout_pieces: int = 1,
        scale: float = 1.0,
        init: Init = "default",
    ) -> None:
        super().__init__()
        check_ints("", 1, maxout_pieces=maxout_pieces)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.image_shape, self.scale = positive_ints("image_shape", image_shape), float(scale)
        widths = (math.prod(self.image_shape), *positive_ints("hidden_dims", hidden_dims))
        if maxout_pieces > 1:
            layers = [Maxout(a, b, maxout_pieces) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        else:
            layers = fully_connected(widths, nn.ReLU)
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(widths[-1], 1))  # a logit
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / self.scale)


# --- The metric -----------------------------------------------------------------------------------------------


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


def scatter_figure(
    samples: torch.Tensor, centers: torch.Tensor, std: float, threshold: float = 3.0, title: str = ""
) -> Any:
    """A matplotlib figure: the samples as dots over the modes, each mode's high-quality disc drawn as a circle."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    x, c = samples.detach().cpu().double(), centers.detach().cpu().double()
    extent = 1.25 * float(c.abs().max()) + 10 * std
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color="#1f3f8f", linewidths=0)
    for cx, cy in c.tolist():
        axes.add_patch(Circle((cx, cy), threshold * std, fill=False, color="#d62728", linewidth=0.8))
    axes.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal", title=title)
    axes.axhline(0, color="0.85", linewidth=0.5, zorder=0)
    axes.axvline(0, color="0.85", linewidth=0.5, zorder=0)
    return figure


# --- The callback ---------------------------------------------------------------------------------------------


class ModeCoverage(EvaluationCallback):
    """Mode coverage of G on a 2-D mixture, at the end of every validation and test epoch.

    Scores ``num_samples`` samples of G (``pl_module.sample``) against the mixture's ``centers`` and ``std``
    (from ``trainer.datamodule``, a :class:`ToyMixtureDataModule`) and logs ``modes/captured``,
    ``modes/high_quality`` (a fraction) and ``modes/reverse_kl`` (see :func:`mode_coverage`), with the scatter
    plot ``modes/samples`` (TensorBoard and ``modes/samples.png`` in the run folder). When ``fit`` ends where no
    validation ran (``max_steps`` in the middle of an epoch), the final G is scored once more at the end.

    Args:
        num_samples: samples per evaluation (2,500 in VEEGAN and PacGAN).
        threshold: high-quality radius in standard deviations (3 in VEEGAN and PacGAN).
        seed: seed of the evaluation noise, the same z every time so that epochs compare; None: fresh noise.
        plot: log the scatter plot.
    """

    def __init__(self, num_samples: int = 2500, threshold: float = 3.0, seed: int | None = 0, plot: bool = True):
        super().__init__()
        check_ints("ModeCoverage.", 1, num_samples=num_samples)
        if not threshold > 0:
            raise ValueError(f"ModeCoverage.threshold must be > 0, got {threshold!r}")
        self.num_samples, self.threshold, self.seed, self.plot = num_samples, threshold, seed, plot
        self._stale = False  # G was trained after the last evaluation

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is None or not hasattr(data, "centers") or not hasattr(data, "std"):
            raise ValueError(
                "ModeCoverage needs a datamodule with mode `centers` and `std` (mode_lab.ToyMixtureDataModule), "
                f"got {type(data).__name__}"
            )

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict[str, float]:
        self._stale = False
        # Each rank generates its block of the samples (one block on one process: the same z as before DDP
        # sharing), every rank scores them all: the same figures everywhere.
        samples = generate(pl_module, self.num_samples, self.num_samples, self.seed)
        samples = gather_rows(trainer, samples.reshape(samples.shape[0], -1)).cpu()
        data = trainer.datamodule
        result = mode_coverage(samples, data.centers, data.std, self.threshold)
        figures = {f"modes/{name}": float(result[name]) for name in ("captured", "high_quality", "reverse_kl")}
        if self.plot:
            title = (
                f"{stage}, epoch {trainer.current_epoch}: {result['captured']}/{len(data.centers)} modes, "
                f"{100 * result['high_quality']:.1f} % high-quality"
            )
            draw = partial(scatter_figure, samples, data.centers, data.std, self.threshold, title)
            log_figure(trainer, "modes/samples", draw, log_step(trainer))
        return figures

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._stale = True  # (an epoch-end validation runs after this hook, in the same loop iteration)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stale:  # the same on every rank: every rank evaluates (collectives), rank 0's loggers write
            figures = self.evaluate_keeping_rng(trainer, pl_module, "end")  # self.log is not allowed here
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.log_metrics(figures, step=log_step(trainer))
