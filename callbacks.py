"""Training schedules of the paper's MNIST run as Lightning Callbacks (pylearn2's extensions, re-expressed).

The authors trained with pylearn2 (``mnist.yaml`` in github.com/goodfeli/adversarial). Three of its pieces act
on the optimizers or the initial weights, not on the GAN's algorithm, so they are callbacks here and
``gan_module.py`` stays Algorithm 1 only:

- :class:`MomentumRamp` – ``MomentumAdjustor(start=1, saturate=250, final_momentum=.7)``: momentum rises
  linearly from 0.5 to 0.7 over the first 250 epochs.
- :class:`ExponentialDecay` – ``ExponentialDecay(decay_factor=1.000004, min_lr=1e-6)``: the learning rate is
  divided by ``decay_factor`` after every update.
- :class:`SigmoidBiasFromMarginals` – ``init_sigmoid_bias_from_marginals``: G's output bias starts at the
  logit of the mean training image.

And :class:`LinearDecay`, a linear fall of the learning rate to the end of training (the mode lab's configs).

Enable them in a config under ``trainer.callbacks`` (see ``configs/mnist.yaml``).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from checks import check_int


def _param_groups(trainer: L.Trainer) -> list[dict[str, Any]]:
    return [group for opt in trainer.optimizers for group in opt.param_groups]


class MomentumRamp(Callback):
    """Momentum rising linearly from ``start`` to ``end`` over the first ``epochs`` epochs, then held.

    Sets the ``momentum`` of every parameter group of every optimizer (SGD's momentum; both G's and D's)
    before every training step: epoch e (0-based) trains with
    ``start + (end − start) · min(e / (epochs − 1), 1)``. With (0.5, 0.7, 250) this is exactly pylearn2's
    ``MomentumAdjustor(start=1, saturate=250, final_momentum=0.7)`` on ``Momentum(init_momentum=0.5)`` as the
    authors' ``mnist.yaml`` uses it: 0.5 in the first epoch, 0.7 from the 250th on. The value depends on the
    epoch only, so a resumed run continues the schedule. Logged as ``momentum``.

    Args:
        start: momentum in the first epoch, in [0, 1).
        end: momentum from epoch ``epochs`` on, in [0, 1).
        epochs: epochs until ``end`` is reached (>= 1).
    """

    def __init__(self, start: float = 0.5, end: float = 0.7, epochs: int = 250) -> None:
        for name, value in (("start", start), ("end", end)):
            if not 0 <= value < 1:
                raise ValueError(f"MomentumRamp.{name} must be in [0, 1), got {value}")
        check_int("MomentumRamp.epochs", epochs, 1)
        self.start, self.end, self.epochs = float(start), float(end), epochs

    def momentum(self, epoch: int) -> float:
        """The momentum of 0-based epoch ``epoch``."""
        alpha = 1.0 if self.epochs == 1 else min(epoch / (self.epochs - 1), 1.0)
        return self.start + (self.end - self.start) * alpha

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for opt in trainer.optimizers:
            if any("momentum" not in group for group in opt.param_groups):
                raise ValueError(
                    f"MomentumRamp sets the optimizers' momentum, but {type(opt).__name__} has none: use "
                    "torch.optim.SGD for model.g_optimizer and model.d_optimizer, or remove MomentumRamp"
                )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Set before every step, not once per epoch: Lightning skips on_train_epoch_start for the epoch that a
        # run resumed from a mid-epoch checkpoint goes on with (and, after the epoch's last batch, the next one).
        momentum = self.momentum(trainer.current_epoch)
        for group in _param_groups(trainer):
            group["momentum"] = momentum


class ExponentialDecay(Callback):
    """Learning rate divided by ``decay_factor`` after every training step, never below ``min_lr``.

    pylearn2's ``ExponentialDecay``, as in the authors' ``mnist.yaml`` (``decay_factor=1.000004``,
    ``min_lr=1e-6``): the t-th training step (0-based) runs with ``max(lr_0 / decay_factor^t, min_lr)``, for
    every parameter group of both optimizers; lr_0 is each group's configured learning rate. One step is one
    ``training_step`` (one D update, and the G update when one is due), which is one SGD update of both
    networks in the authors' code (k = 1). The step count is saved in the checkpoint. Lightning's
    ``LearningRateMonitor`` logs the rates.

    Args:
        decay_factor: divisor per step, >= 1.
        min_lr: lower bound of the learning rate, >= 0.
    """

    def __init__(self, decay_factor: float = 1.000004, min_lr: float = 1e-6) -> None:
        if not decay_factor >= 1:
            raise ValueError(f"ExponentialDecay.decay_factor must be >= 1, got {decay_factor}")
        if not min_lr >= 0:
            raise ValueError(f"ExponentialDecay.min_lr must be >= 0, got {min_lr}")
        self.decay_factor, self.min_lr = float(decay_factor), float(min_lr)
        self.steps = 0

    def lr(self, lr_0: float, step: int) -> float:
        """The learning rate of 0-based training step ``step`` for initial rate ``lr_0``."""
        return max(lr_0 * math.exp(-step * math.log(self.decay_factor)), self.min_lr)  # no overflow for long runs

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        for group in _param_groups(trainer):
            group.setdefault("initial_lr", group["lr"])  # lr_0, saved with the optimizer's state
            group["lr"] = self.lr(group["initial_lr"], self.steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])


class LinearDecay(Callback):
    """Learning rate held at lr_0 until epoch ``start``, then falling linearly to ``end_factor · lr_0`` at epoch
    ``end`` (and held there): training settles instead of stopping wherever the last update left it.

    Both optimizers, every parameter group, set before every training step from the fractional epoch
    e + i / (batches per epoch), so a resumed run continues the schedule. Written here because torch's schedulers
    count steps, and Lightning steps a manual-optimization module's schedulers only when told.

    Args:
        start: epoch (fractional allowed) at which the decay begins, >= 0.
        end: epoch at which it reaches ``end_factor``, > start (e.g. the config's max_epochs).
        end_factor: the final fraction of lr_0, in [0, 1].
    """

    def __init__(self, start: float, end: float, end_factor: float = 0.0) -> None:
        if not 0 <= start < end:
            raise ValueError(f"LinearDecay needs 0 <= start < end, got start={start}, end={end}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearDecay.end_factor must be in [0, 1], got {end_factor}")
        self.start, self.end, self.end_factor = float(start), float(end), float(end_factor)

    def factor(self, epoch: float) -> float:
        """The fraction of lr_0 at fractional epoch ``epoch``."""
        progress = min(max((epoch - self.start) / (self.end - self.start), 0.0), 1.0)
        return 1.0 - (1.0 - self.end_factor) * progress

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        factor = self.factor(trainer.current_epoch + batch_idx / max(trainer.num_training_batches, 1))
        for group in _param_groups(trainer):
            group.setdefault("initial_lr", group["lr"])  # lr_0, saved with the optimizer's state
            group["lr"] = group["initial_lr"] * factor


class SigmoidBiasFromMarginals(Callback):
    """G's output bias set to logit(mean training image) before training (pylearn2's
    ``init_sigmoid_bias_from_marginals``, applied to G's sigmoid output layer in the authors' ``mnist.yaml``).

    Runs in ``setup("fit")``, after the data are loaded and before a checkpoint is restored, so a resumed run
    keeps its trained bias. Needs a generator with ``init_output_bias(mean_image)`` (such as
    ``networks.SigmoidMLPGenerator``) and a DataModule with uint8 ``train_images``.

    Args:
        eps: the mean pixel is clipped to [eps, 1 − eps] before the logit (pylearn2's
            ``init_sigmoid_bias_from_array``: 1e-7).
    """

    def __init__(self, eps: float = 1e-7) -> None:
        if not 0 < eps < 0.5:
            raise ValueError(f"SigmoidBiasFromMarginals.eps must be in (0, 0.5), got {eps}")
        self.eps = eps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        generator = getattr(pl_module, "G", None)
        if not hasattr(generator, "init_output_bias"):
            raise ValueError(
                f"SigmoidBiasFromMarginals needs a generator with init_output_bias(), got "
                f"{type(generator).__name__}: use networks.SigmoidMLPGenerator or remove the callback"
            )
        images = getattr(trainer.datamodule, "train_images", None)
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise ValueError("SigmoidBiasFromMarginals needs a DataModule with uint8 train_images (N, C, H, W)")
        mean = images.double().mean(dim=0).div_(255.0)  # per-pixel mean in [0, 1]
        generator.init_output_bias(mean, eps=self.eps)
