"""The original GAN (Goodfellow et al. 2014) as a LightningModule with manual optimization.

Run it through the CLI::

    python cli.py fit --config configs/cifar.yaml

``training_step`` is the paper's Algorithm 1 (``update: alternating``, the default): one call is one D update on
one real minibatch and fresh noise; every ``k``-th call is followed, in the same call, by one G update on fresh
noise against the D just updated. So after N training steps D has been updated N times and G N // k times, and
Lightning's ``global_step`` (which counts every ``optimizer.step()``) is N + N // k. ``update: simultaneous`` is the
authors' own pylearn2 step instead (``configs/mnist.yaml``): both gradients at the same point, then both steps.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric

from checkpoints import mark_mid_epoch, restore_rng_states, rng_states
from checks import check_ints
from networks import CompileMode, check_pair, output_range, pack_samples, speed_up

Loss = Literal["non_saturating", "minimax"]
Prior = Literal["normal", "uniform", "uniform_unit_variance"]
Update = Literal["alternating", "simultaneous"]
GSamples = Literal["fresh", "shared"]
FakePass = Literal["fresh", "shared"]
# Mean D(G(z)) over an epoch below this: D rejects (nearly) every sample and G's gradient has all but vanished.
D_WON_BELOW = 1e-3

# --- The losses (Eq. 1 of the paper, split into D's and G's part). All take logits. -----------------------


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss: −[log D(x) + log(1 − D(G(z)))], the negated objective D ascends in Algorithm 1."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    return real + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def g_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's loss of Eq. 1 as written: log(1 − D(G(z))), which G descends in Algorithm 1."""
    return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def g_loss_non_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The paper's practical variant (Sec. 3): G maximises log D(G(z)), i.e. minimises −log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


G_LOSSES = {"non_saturating": g_loss_non_saturating, "minimax": g_loss_minimax}


class GANAdam(torch.optim.Adam):
    """Adam with the GAN defaults of Radford et al. (lr 2e-4, betas (0.5, 0.999)), as Just4GAN's recipe uses it.

    With ``foreach`` and ``fused`` both unset, the fused implementation is used where torch has it (CPU, CUDA):
    on a CPU a step of the CIFAR-10 MLP GAN takes 30 % less time than with torch's per-tensor default
    (benchmarks/speed.py), and the updates agree up to float rounding. ``fused: false`` gives torch's own choice.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if fused is None and foreach is None:  # fused where every parameter is a float tensor on a CPU or GPU
            params = list(params)
            tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
            on_cpu_or_gpu = all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
            fused = (bool(tensors) and on_cpu_or_gpu) or None
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, fused=fused)


class GAN(L.LightningModule):
    """G and D trained by Algorithm 1 of Goodfellow et al. (2014), or by the authors' simultaneous step.

    Args:
        generator: G, maps z of shape (N, latent_dim) to images of shape (N, *image_shape).
        discriminator: D, maps images to one logit each, shape (N, 1).
        latent_dim: size of z (linked into the generator by the CLI).
        image_shape: shape of one image (C, H, W), linked from the data by the CLI.
        k: D updates per G update (Algorithm 1's k), >= 1.
        update: ``alternating``: Algorithm 1 as written, k D steps, then G's gradient against the D just updated.
            ``simultaneous``: the authors' pylearn2 code (AdversaryCost2), D's and G's gradients both taken at
            the same point, then one step of each (k must be 1).
        g_samples: G's noise: ``fresh`` draws a new minibatch of z (Algorithm 1), ``shared`` reuses the z of the
            D update just before (the authors' code). None follows ``update``: fresh / shared.
        fake_pass: in the simultaneous step with shared samples, G's objective takes D's output on the samples
            from ``shared``: the same pass as D's objective, one set of dropout masks (the authors'
            AdversaryCost2, whose ``y_hat0`` serves both objectives), or ``fresh``: a second pass with new masks.
            None follows ``update``: shared for simultaneous, fresh for alternating (where D has changed in
            between, so no pass can be shared).
        pack: PacGAN's packing (Lin et al. 2018), not in the paper: D judges m samples at once, all real or all fake,
            concatenated along their first axis (an image's channels, a point's coordinates), so a minibatch of N
            gives D N/m inputs, each with one label. It penalises a G whose samples look alike: a pack of
            near-copies is unlike a pack of data. D must take the packed shape (m·C, H, W); the CLI builds it so.
            1 (the default): the paper's D, one sample per judgement. m must divide the training batch size.
        loss: G's loss: ``non_saturating`` (maximise log D(G(z)), the paper's advice in Sec. 3) or ``minimax``
            (minimise log(1 − D(G(z))), Eq. 1 as written).
        prior: the noise prior p_z: ``normal`` N(0, I), ``uniform`` U(−1, 1)^latent_dim, or
            ``uniform_unit_variance`` U(−√3, √3)^latent_dim (the authors' ``noise: uniform``, Generator.get_noise).
        g_optimizer: G's optimizer (default Adam, lr 2e-4, betas (0.5, 0.999)).
        d_optimizer: D's optimizer (default Adam, lr 2e-4, betas (0.5, 0.999)).
        grad_clip_norm: clip each network's gradient norm to this value before its step (None: off).
        noise_seed: base seed of the training noise: rank r draws from seed (noise_seed, r, D update), so ranks
            draw different z and a resume continues the same stream. None: from ``seed_everything``'s seed.
        grid_size: the fixed-noise image grid is grid_size × grid_size samples, logged once per epoch.
        ema_decay: keep an exponential moving average of G (weights and BatchNorm statistics), updated after
            every G update: G_ema ← ema_decay · G_ema + (1 − ema_decay) · G. Samples, grids, predict and the
            metrics then come from it. In (0, 1), e.g. 0.999; None (the default): off.
        compile: compile G's and D's forward with ``torch.compile`` (``networks.speed_up``).
        compile_mode: ``torch.compile``'s mode; ``reduce-overhead`` adds CUDA graphs (GPU only, untested).
        channels_last: convolution weights and image batches in channels-last order (GPUs with tensor cores).
        log_every_step: pass the per-step scalars to ``self.log`` at every step (the progress bar shows each).
            False: only on the steps where the logger writes them (``trainer.log_every_n_steps``): the same
            TensorBoard values, without Lightning's logging overhead on the other steps.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (3, 32, 32),
        k: int = 1,
        update: Update = "alternating",
        g_samples: GSamples | None = None,
        fake_pass: FakePass | None = None,
        pack: int = 1,
        loss: Loss = "non_saturating",
        prior: Prior = "normal",
        g_optimizer: OptimizerCallable = GANAdam,
        d_optimizer: OptimizerCallable = GANAdam,
        grad_clip_norm: float | None = None,
        noise_seed: int | None = None,
        grid_size: int = 8,
        ema_decay: float | None = None,
        compile: bool = False,
        compile_mode: CompileMode = "default",
        channels_last: bool = False,
        log_every_step: bool = True,
    ) -> None:
        super().__init__()
        _check_arguments(k, latent_dim, grid_size, update, g_samples, loss, prior, grad_clip_norm, ema_decay)
        check_ints("model.", 1, pack=pack)
        g_samples = g_samples or ("fresh" if update == "alternating" else "shared")
        fake_pass = _check_fake_pass(fake_pass, update, g_samples)
        _check_optimizer("g_optimizer", g_optimizer)
        _check_optimizer("d_optimizer", d_optimizer)
        # Through the CLI, Lightning saves the networks' config (class_path + init_args), which is what
        # load_from_checkpoint needs; built in Python, the modules themselves are already in the state dict.
        self.save_hyperparameters(ignore=None if _from_cli() else ["generator", "discriminator"])
        self.automatic_optimization = False  # two optimizers, stepped by hand in the order of the update rule
        self.G, self.D = generator, discriminator
        self.latent_dim, self.image_shape = latent_dim, tuple(int(s) for s in image_shape)
        self.k, self.update, self.prior = k, update, prior
        self.g_samples, self.fake_pass, self.pack = g_samples, fake_pass, pack
        self.g_loss_fn = G_LOSSES[loss]
        self.g_optimizer, self.d_optimizer, self.grad_clip_norm = g_optimizer, d_optimizer, grad_clip_norm
        # G's output range, to which the uint8 images are scaled (declared by G or read off its last layer), unless
        # G maps pixels itself (from_pixels / to_pixels: the authors' CIFAR-10 G lives in GCN space); points (the
        # mode lab's 2-D data) are floats that D sees as they are.
        self.pixel_map = hasattr(generator, "from_pixels") and hasattr(generator, "to_pixels")
        needs_range = len(self.image_shape) == 3 and not self.pixel_map
        self.value_range = output_range(generator) if needs_range else None
        check_pair(generator, discriminator, latent_dim, self.image_shape, pack)
        self.G_ema: AveragedModel | None = None  # a submodule: checkpoints save it, a resume restores it
        if ema_decay is not None:
            self.G_ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.G_ema.requires_grad_(False)  # averaged, never trained (nor seen by DDP)
        self.channels_last, self.log_every_step = channels_last, log_every_step
        speed_up([self.G, self.D], compile, compile_mode, channels_last)
        # The grid's fixed noise: a buffer, so a resumed run keeps drawing the same grid.
        fixed = torch.Generator().manual_seed(0 if noise_seed is None else noise_seed)
        self.register_buffer("fixed_z", self._draw_z(grid_size * grid_size, fixed, "cpu"))
        self.noise_seed = noise_seed
        self.d_updates = 0  # D updates so far: Algorithm 1's step counter (saved in the checkpoint)
        self.d_won_epochs = 0  # epochs in a row with mean D(G(z)) < D_WON_BELOW (saved in the checkpoint)
        self._warned_d_won, self._z_gen = False, None
        self.epoch_means = EpochMeans("loss_d", "loss_g", "d_real", "d_fake")

    # --- Algorithm 1 and the authors' step ----------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()
        x = self._memory_format(self.to_model_range(self._images(batch)))  # a minibatch {x(1), ..., x(m)} ~ p_data
        m = x.shape[0]
        gen = self._noise_generator(self.d_updates)
        z = self.sample_z(m, gen)  # a minibatch {z(1), ..., z(m)} ~ p_z
        shared = self.g_samples == "shared"  # G's update reuses D's z (the authors' code) or draws its own
        g_due = (self.d_updates + 1) % self.k == 0

        if self.update == "alternating":
            # Algorithm 1, inner loop (one of its k steps): update D by ascending
            # ∇θd 1/m Σ [log D(x(i)) + log(1 − D(G(z(i))))]  (we descend the negation, d_loss).
            with self.toggled_optimizer(opt_d):  # only D's parameters require grad: G(z) builds no graph
                real_logits, fake_logits = self.judge(x), self.judge(self.G(z))
                loss_d = d_loss(real_logits, fake_logits)
                self._backward("loss/d", opt_d, loss_d)
                self._take_step(opt_d)
            if g_due:
                # Algorithm 1, outer step: sample {z(1), ..., z(m)} ~ p_z and update G by descending
                # ∇θg 1/m Σ log(1 − D(G(z(i))))  (minimax), or ascending log D(G(z(i))) (non_saturating, Sec. 3),
                # against the D just updated.
                with self.toggled_optimizer(opt_g):  # only G's parameters require grad: D gets no gradient
                    loss_g = self.g_loss_fn(self.judge(self.G(z if shared else self.sample_z(m, gen))))
                    self._backward("loss/g", opt_g, loss_g)
                    self._take_step(opt_g)
        else:
            # The authors' pylearn2 step (AdversaryCost2, k = 1): both gradients of Eq. 1 taken at the same
            # point (θd, θg), then one step of each. D's gradient is the one of Algorithm 1's inner loop, G's
            # the one of its outer step, but against the D *before* this step's update.
            fake = self.G(z) if shared else None  # with G's graph: G's loss below goes through these samples
            with self.toggled_optimizer(opt_d):
                real_logits = self.judge(x)
                before_fakes = _rng_state(self.device)  # the state D's dropout masks on the samples are drawn from
                fake_logits = self.judge(fake.detach() if shared else self.G(z))
                loss_d = d_loss(real_logits, fake_logits)
                self._backward("loss/d", opt_d, loss_d)
            with self.toggled_optimizer(opt_g):  # D is frozen: its gradient stays the one of loss_d
                if self.fake_pass == "shared":
                    # AdversaryCost2's one pass: D's output on the samples (y_hat0) in G's objective too. Run again
                    # from the same RNG state, so with the same dropout masks: the same logits, now with G's graph
                    # (one pass cannot carry both gradients through DDP: each backward must reach one network only).
                    _set_rng_state(self.device, before_fakes)
                loss_g = self.g_loss_fn(self.judge(fake if shared else self.G(self.sample_z(m, gen))))
                self._backward("loss/g", opt_g, loss_g)
            # Both steps at the point both gradients were taken. Under 16-mixed both backward passes used the same
            # loss scale: the GradScaler must not change it between the two steps (one update per training step).
            with _one_scale_update(self._grad_scaler()):
                self._take_step(opt_d)
            self._take_step(opt_g)
        self.d_updates += 1
        if g_due and self.G_ema is not None:
            self.G_ema.update_parameters(self.G)  # the EMA of G follows every G update
        self._log_step(loss_d, real_logits, fake_logits, loss_g if g_due else None)

    def judge(self, x: torch.Tensor) -> torch.Tensor:
        """D's logits on a minibatch: one per sample, or with ``pack`` m one per pack of m consecutive samples."""
        return self.D(pack_samples(x, self.pack)) if self.pack > 1 else self.D(x)

    def _backward(self, name: str, opt: Any, loss: torch.Tensor) -> None:
        """Check the loss, then fill the gradients of ``opt``'s network (the only one requiring grad)."""
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self.trainer.world_size > 1:  # all ranks stop together, or the others would wait in the all-reduce
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise FloatingPointError(
                f"{name} became {loss.detach().float().item()} on rank {self.global_rank} (or another rank) "
                f"at global step {self.global_step} (epoch {self.current_epoch}, after {self.d_updates} D updates); "
                f"training stopped before this update, so the weights were never updated with it and "
                f"{_last_good_checkpoint(self.trainer)}. Lower the learning rates or set model.grad_clip_norm."
            )
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)

    def _take_step(self, opt: Any) -> None:
        opt.step()  # clipping, if on, happens in on_before_optimizer_step (after AMP's unscaling)
        opt.zero_grad(set_to_none=True)  # no gradient of this network outlives its own update
        # A forward later in this training_step must see the new weights, not autocast's cached casts of the
        # old ones (Lightning runs the whole step in one autocast context).
        torch.clear_autocast_cache()

    def _grad_scaler(self) -> torch.amp.GradScaler | None:
        """16-mixed's GradScaler (one for both optimizers), None under any other precision."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called inside opt.step(), after 16-bit AMP has unscaled the gradients: where clipping sees their true norm.
        # Not Lightning's clip_gradients: under either mixed precision it refuses a fused optimizer (GANAdam's
        # default), which unscales inside its own step. Such an optimizer's gradients are unscaled here first
        # (16-mixed only; GradScaler.step then leaves them as they are), and torch's clip_grad_norm_ clips them.
        if self.grad_clip_norm is not None:
            scaler = self._grad_scaler()
            if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
                scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip_norm)

    # --- logging --------------------------------------------------------------------------------------------

    def _log_step(self, loss_d: torch.Tensor, real_logits: Any, fake_logits: Any, loss_g: Any) -> None:
        stats = {
            "loss/d": loss_d.detach(),
            "d/real": torch.sigmoid(real_logits.detach().float()).mean(),
            "d/fake": torch.sigmoid(fake_logits.detach().float()).mean(),
        }
        if loss_g is not None:
            stats["loss/g"] = loss_g.detach()
        self.epoch_means.update({name.replace("/", "_"): value for name, value in stats.items()})
        # Lightning writes step metrics after the steps where (batches before + 1), i.e. d_updates after this
        # step's D update, is a multiple of log_every_n_steps (both are restored on a resume).
        every = self.trainer.log_every_n_steps
        if self.log_every_step or (every > 0 and self.d_updates % every == 0):
            self.log_dict(stats, prog_bar=True, on_step=True, on_epoch=False)
            scaler = self._grad_scaler()
            if scaler is not None:
                # Its scale halves after a step with inf/NaN gradients (that step is skipped) and doubles after
                # growth_interval good steps: a few early halvings are normal; one at every log means no step counts.
                self.log("amp/scale", scaler.get_scale(), on_step=True, on_epoch=False)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.epoch_means.restore(self.current_epoch)  # after a resume mid-epoch

    def on_train_epoch_end(self) -> None:
        self.epoch_means.restore(self.current_epoch)  # after a resume from the validation at this epoch's end
        means = self.epoch_means.compute_and_reset()  # over all steps and ranks
        for name, value in means.items():
            # over all ranks already (torchmetrics): the same on every rank, kept exactly by a max "sync"
            self.log(name.replace("_", "/", 1) + "_epoch", value, sync_dist=True, reduce_fx="max")
        self._watch_for_d_winning(means)
        self.log_image_grid()

    def _watch_for_d_winning(self, means: dict[str, torch.Tensor]) -> None:
        """Count the epochs in a row in which D rejected (nearly) every sample (d/won_epochs); say so once.

        Logged at every epoch end, also one without steps (limit_train_batches 0), so that an EarlyStopping
        on it always finds it; such an epoch leaves the count as it was.
        """
        if "d_fake" in means:
            self.d_won_epochs = self.d_won_epochs + 1 if means["d_fake"] < D_WON_BELOW else 0
        self.log("d/won_epochs", float(self.d_won_epochs), sync_dist=True, reduce_fx="max")
        if self.d_won_epochs and "d_fake" in means and not self._warned_d_won:
            self._warned_d_won = True
            rank_zero_warn(_d_won_message(self.current_epoch, {k: float(v) for k, v in means.items()}))

    @rank_zero_only
    def log_image_grid(self, tag: str = "samples") -> None:
        """The fixed-noise grid, against the epoch (global_step shifts with k), to TensorBoard."""
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is not None and self.is_image:
            grid = torchvision.utils.make_grid(self.generate(self.fixed_z).cpu(), nrow=self.hparams.grid_size)
            logger.experiment.add_image(tag, grid, global_step=self.current_epoch)

    # --- noise and samples ------------------------------------------------------------------------------------

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n noise vectors z ~ p_z on the module's device."""
        return self._draw_z(n, generator, self.device)

    def _draw_z(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        if self.prior == "normal":
            return torch.randn(n, self.latent_dim, generator=generator, device=device)
        half_width = math.sqrt(3) if self.prior == "uniform_unit_variance" else 1.0
        return (torch.rand(n, self.latent_dim, generator=generator, device=device) * 2 - 1) * half_width

    def _noise_generator(self, *key: Any, per_rank: bool = True) -> torch.Generator:
        """A generator seeded by (noise_seed, rank, *key): training keys it by the D update, evaluation by
        (stage, batch), so neither ever moves the global RNG that D's dropout draws from. ``per_rank=False``
        leaves the rank out: every process draws the same stream."""
        if self._z_gen is None or self._z_gen.device != self.device:
            self._z_gen = torch.Generator(device=self.device)
        rank = (self.global_rank,) if per_rank else ()
        text = "/".join(str(part) for part in (self.noise_seed, *rank, *key)).encode()
        return self._z_gen.manual_seed(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1)

    def to_model_range(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 images in [0, 255] → floats in G's output range, or G's own ``from_pixels`` (per batch, on the
        device)."""
        if batch.dtype != torch.uint8:  # points (the mode lab's), or images already scaled
            return batch
        if self.pixel_map:
            return self.G.from_pixels(batch)
        lo, hi = self.value_range
        return batch.float().mul_((hi - lo) / 255.0).add_(lo)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Samples of G → images as floats in [0, 1]: the inverse of ``to_model_range``'s scaling, or G's own
        ``to_pixels`` (GCN space cannot be inverted: see ``networks.GCNSpace``)."""
        if self.pixel_map:
            return self.G.to_pixels(x)
        lo, hi = self.value_range
        return ((x.float() - lo) / (hi - lo)).clamp_(0, 1)

    def to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Samples of G → uint8 images in [0, 255] (``to_unit``, rounded)."""
        return self.to_unit(x).mul_(255.0).round_().to(torch.uint8)

    @torch.no_grad()
    def as_shown(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Real uint8 images as G's samples are shown: unchanged, except for a G in GCN space (``to_pixels`` of
        ``from_pixels``: mean and contrast normalised away), so that an image metric compares like with like."""
        if not self.pixel_map:
            return images
        return torch.cat(
            [self.to_uint8(self.G.from_pixels(images[i : i + batch_size].to(self.device))).to(images.device)
             for i in range(0, len(images), batch_size)]
        )  # fmt: skip

    @property
    def is_image(self) -> bool:
        return len(self.image_shape) == 3

    @torch.no_grad()
    def generate(self, z: torch.Tensor, quantize: bool = True, ema: bool = True) -> torch.Tensor:
        """G(z) in eval mode, in data space: uint8 images (N, C, H, W) for image data, floats otherwise.

        G is the EMA of G when ``model.ema_decay`` is set (``ema=False``: the trained G itself).
        ``quantize=False`` returns images as floats in [0, 1] instead (G's output rescaled, not rounded to 8 bits).
        """
        G = self.G_ema.module if ema and self.G_ema is not None else self.G
        was_training = G.training
        out = G.eval()(z.to(self.device))
        G.train(was_training)
        if not self.is_image:
            return out.float()
        return self.to_uint8(out) if quantize else self.to_unit(out)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n fresh samples of G (see ``generate``), z ~ p_z."""
        return self.generate(self.sample_z(n, generator))

    # --- validation / test: D on held-out real images and on fresh samples; predict: samples --------------------

    def _eval_step(self, batch: Any, batch_idx: int, stage: str) -> None:
        x = self._memory_format(self.to_model_range(self._images(batch)))
        x = x[: x.shape[0] - x.shape[0] % self.pack]  # whole packs (a last, smaller batch may not divide)
        if x.shape[0] == 0:
            return
        fake = self.G(self.sample_z(x.shape[0], self._noise_generator(stage, batch_idx)))
        real_logits, fake_logits = self.judge(x), self.judge(fake)
        stats = {
            f"{stage}/loss_d": d_loss(real_logits, fake_logits),
            f"{stage}/d_real": torch.sigmoid(real_logits.float()).mean(),
            f"{stage}/d_fake": torch.sigmoid(fake_logits.float()).mean(),
        }
        self.log_dict(stats, on_epoch=True, sync_dist=True, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_predict_epoch_start(self) -> None:
        # Every sample's z, drawn at once from a generator keyed by the noise seed alone (not the rank): sample i
        # is G(z_i) however many processes share the indices (predict_step picks its own).
        n = len(self.trainer.predict_dataloaders.dataset)
        self._predict_z = self.sample_z(n, self._noise_generator("predict", per_rank=False))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """``batch`` is a tensor of sample indices; returns their uint8 samples (N, C, H, W): sample i is G(z_i)."""
        return self.generate(self._predict_z[self._images(batch).to(self._predict_z.device)])

    # --- set-up and checkpoints -----------------------------------------------------------------------------------

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.d_optimizer(self.D.parameters()), self.g_optimizer(self.G.parameters())]  # (opt_d, opt_g)

    def setup(self, stage: str) -> None:
        if self.noise_seed is None:  # the same on every rank when seed_everything is set (the global RNG is)
            self.noise_seed = int(torch.randint(0, 2**62, (1,)).item())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = {"d_updates": self.d_updates, "noise_seed": self.noise_seed, "d_won_epochs": self.d_won_epochs}
        state["epoch_means"] = self.epoch_means.saved(checkpoint["epoch"])
        checkpoint["gan"] = {**state, "rng": rng_states(self)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        mark_mid_epoch(checkpoint)  # before Lightning loads its loops from it
        state = checkpoint.get("gan", {})
        self.d_updates, self.d_won_epochs = int(state.get("d_updates", 0)), int(state.get("d_won_epochs", 0))
        self.noise_seed = state.get("noise_seed", self.noise_seed)
        if "rng" in state:
            restore_rng_states(self, state["rng"])
        self.epoch_means.load(state.get("epoch_means"))
        _match_ema_state(checkpoint.get("state_dict", {}), self.G_ema is not None)

    @staticmethod
    def _images(batch: Any) -> torch.Tensor:
        return batch[0] if isinstance(batch, (list, tuple)) else batch

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images in channels-last order when ``channels_last`` is on (4-D tensors only)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


# --- Helpers of the module above --------------------------------------------------------------------------------


class EpochMeans(nn.Module):
    """Epoch means of the step statistics, over all steps and ranks (torchmetrics syncs them), and their way
    through a checkpoint.

    A checkpoint holds the means so far (sums and weights; under DDP rank 0's, which every rank resumes from).
    ``restore`` gives them back at the first hook after a resume, if training goes on in the checkpoint's epoch:
    after a checkpoint written mid-epoch, or by the validation at the epoch's end (validation every few epochs),
    which comes before on_train_epoch_end, a hook Lightning then runs on resume; without the means it would log
    nothing, d/won_epochs included. Not after a checkpoint written after an epoch's last batch: Lightning goes on
    with the next epoch and skips that hook. Exact: the sums are merged into empty metrics.
    """

    def __init__(self, *names: str) -> None:
        super().__init__()
        # nan_strategy "disable": losses are checked finite before each step, and MeanMetric's own NaN check
        # would cost a host-device synchronisation per update on a GPU.
        self.metrics = nn.ModuleDict({name: MeanMetric(nan_strategy="disable") for name in names})
        self._from_checkpoint: tuple[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] | None = None

    def update(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.metrics[name].update(value)

    def compute_and_reset(self) -> dict[str, torch.Tensor]:
        means = {name: metric.compute() for name, metric in self.metrics.items() if metric.update_called}
        for metric in self.metrics.values():
            metric.reset()
        return means

    def saved(self, epoch: int) -> tuple[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        sums = {n: (m.mean_value.cpu(), m.weight.cpu()) for n, m in self.metrics.items() if m.update_called}
        return epoch, sums

    def load(self, saved: tuple[int, dict] | None) -> None:
        self._from_checkpoint = saved

    def restore(self, current_epoch: int) -> None:
        if self._from_checkpoint is None:
            return
        (epoch, sums), self._from_checkpoint = self._from_checkpoint, None
        for name, metric in self.metrics.items():
            metric.reset()
            if epoch == current_epoch and name in sums:
                metric.update(torch.empty(0, device=metric.device))  # no values: only marks it as updated
                total, weight = (t.to(metric.device) for t in sums[name])
                metric.merge_state({"mean_value": total, "weight": weight})


def _check_arguments(
    k: int, latent_dim: int, grid_size: int, update: str, g_samples: str | None, loss: str, prior: str,
    grad_clip_norm: float | None, ema_decay: float | None,
) -> None:  # fmt: skip
    check_ints("model.", 1, k=k, latent_dim=latent_dim, grid_size=grid_size)
    if update not in Update.__args__:
        raise ValueError(f"model.update must be one of {list(Update.__args__)}, got {update!r}")
    if update == "simultaneous" and k != 1:
        raise ValueError(
            f"model.k must be 1 with model.update simultaneous (one step updates D and G once each), got {k}; "
            "use model.update alternating for k > 1"
        )
    if g_samples not in (None, *GSamples.__args__):
        raise ValueError(f"model.g_samples must be one of {list(GSamples.__args__)} or null, got {g_samples!r}")
    if loss not in G_LOSSES:
        raise ValueError(f"model.loss must be one of {sorted(G_LOSSES)}, got {loss!r}")
    if prior not in Prior.__args__:
        raise ValueError(f"model.prior must be one of {list(Prior.__args__)}, got {prior!r}")
    if grad_clip_norm is not None and not grad_clip_norm > 0:
        raise ValueError(f"model.grad_clip_norm must be > 0 or null, got {grad_clip_norm}")
    if ema_decay is not None and not 0 < ema_decay < 1:
        raise ValueError(f"model.ema_decay must be in (0, 1) (e.g. 0.999) or null for off, got {ema_decay}")


def _check_fake_pass(fake_pass: str | None, update: str, g_samples: str) -> str:
    """``fake_pass`` resolved (None follows ``update``), or a one-line refusal of a combination that cannot be."""
    if fake_pass not in (None, *FakePass.__args__):
        raise ValueError(f"model.fake_pass must be one of {list(FakePass.__args__)} or null, got {fake_pass!r}")
    if fake_pass is None:
        return "shared" if update == "simultaneous" and g_samples == "shared" else "fresh"
    if fake_pass == "shared" and not (update == "simultaneous" and g_samples == "shared"):
        raise ValueError(
            "model.fake_pass shared (G's objective from D's own pass on the samples) needs model.update simultaneous "
            f"and model.g_samples shared, got update {update!r} and g_samples {g_samples!r}"
        )
    return fake_pass


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global RNG state that dropout draws from on ``device`` (the CPU's, and the GPU's on a GPU)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@contextmanager
def _one_scale_update(scaler: torch.amp.GradScaler | None) -> Iterator[None]:
    """Steps inside do not update the GradScaler's scale; the next step outside does, once, from the inf/NaN checks
    of every optimizer stepped since the last update (``GradScaler.update`` reads them all)."""
    if scaler is None:
        yield
        return
    scaler.update = lambda new_scale=None: None  # an instance attribute, over the method
    try:
        yield
    finally:
        del scaler.update


def _check_optimizer(name: str, factory: OptimizerCallable) -> None:
    """Build the optimizer once on a dummy parameter so that a bad learning rate fails before training."""
    try:
        opt = factory([nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        raise ValueError(f"model.{name}: {err}") from err
    for group in opt.param_groups:
        lr = group.get("lr")
        if lr is None or not math.isfinite(float(lr)) or float(lr) <= 0:
            raise ValueError(f"model.{name}: the learning rate must be a number > 0, got {lr}")


def _from_cli() -> bool:
    """Whether LightningCLI is instantiating this module (it hands the config over as hyperparameters)."""
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # a Lightning without it: keep the modules out of the hyperparameters
        return False
    return _given_hyperparameters.get() is not None


def _d_won_message(epoch: int, means: dict[str, float]) -> str:
    return (
        f"D has won: in epoch {epoch} the mean D(G(z)) was {means['d_fake']:.1e} (< {D_WON_BELOW:g}) against a mean "
        f"D(x) of {means['d_real']:.3f}, and G's mean loss was {means.get('loss_g', math.nan):.2f}. G learns next "
        "to nothing from such a D and its samples have likely collapsed (see the `samples` grid); a run that stays "
        "like this for a few epochs does not recover. EarlyStopping on d/won_epochs (the count of such epochs in a "
        "row) ends such runs (README, 'A run that has died')."
    )


def _last_good_checkpoint(trainer: L.Trainer) -> str:
    """Where the last good weights are, in words, for the non-finite-loss message."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    if path and Path(path).is_file():
        return f"the last checkpoint written, {path}, holds the last good ones"
    return "no checkpoint had been written yet"


def _match_ema_state(state_dict: dict[str, Any], want_ema: bool) -> None:
    """Let checkpoints with and without an EMA of G load into a model with and without one (in place)."""
    has_ema = any(key.startswith("G_ema.") for key in state_dict)
    if want_ema and not has_ema:
        # Trained without EMA: the average starts from the checkpoint's G (n_averaged 0: the next update copies).
        for key in [k for k in state_dict if k.startswith("G.")]:
            state_dict["G_ema.module." + key[2:]] = state_dict[key].clone()
        state_dict["G_ema.n_averaged"] = torch.tensor(0, dtype=torch.long)
    elif has_ema and not want_ema:
        for key in [k for k in state_dict if k.startswith("G_ema.")]:
            del state_dict[key]
        rank_zero_warn("The checkpoint holds an EMA of G, unused here: set --model.ema_decay to use it.")
