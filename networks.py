"""Generator and discriminator architectures: plain ``nn.Module``s, no Lightning.

Every generator takes ``latent_dim`` and ``image_shape`` and maps ``z`` of shape ``(N, latent_dim)`` to
images of shape ``(N, *image_shape)``. Every discriminator takes ``image_shape`` and returns one **logit**
per image, shape ``(N, 1)``: the sigmoid lives in the loss (binary cross-entropy with logits), which is
numerically stable and safe under 16-bit autocast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import torch
from torch import nn

from checks import positive_ints

Init = Literal["default", "normal", "xavier"]
OutActivation = Literal["tanh", "sigmoid"]
# G's output range per output activation; the GAN module scales the uint8 data to it (``GAN.to_model_range``).
VALUE_RANGES: dict[str, tuple[float, float]] = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}


def _generator_widths(
    latent_dim: int, image_shape: Sequence[int], hidden_dims: Sequence[int]
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """An MLP generator's checked (latent_dim, image_shape, layer widths from z through the hidden layers)."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    widths = (int(latent_dim), *positive_ints("hidden_dims", hidden_dims))
    return int(latent_dim), positive_ints("image_shape", image_shape), widths


_RELU = partial(nn.ReLU, inplace=True)


def fully_connected(
    widths: Sequence[int],
    activation: Callable[[], nn.Module] = _RELU,
    norm: Callable[[int], nn.Module] | None = None,
    norm_from: int = 0,
    bias: bool = True,
) -> list[nn.Module]:
    """Linear layers between consecutive ``widths``, each followed by ``norm`` (from layer ``norm_from`` on) and
    ``activation``: the hidden part of every MLP here."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(w_in, w_out, bias=bias))
        if norm is not None and i >= norm_from:
            layers.append(norm(w_out))
        layers.append(activation())
    return layers


def init_weights(module: nn.Module, init: Init, std: float = 0.02) -> None:
    """Re-initialise the Linear/Conv weights of ``module`` in place.

    Args:
        module: the network.
        init: ``default`` keeps PyTorch's initialisation (Kaiming-uniform); ``normal`` draws weights from
            N(0, std²) (the DCGAN recipe); ``xavier`` uses Xavier-uniform. Biases are zeroed for the last two.
        std: standard deviation for ``normal``.
    """
    if init == "default":
        return
    if init not in ("normal", "xavier"):
        raise ValueError(f"init must be one of 'default', 'normal', 'xavier', got {init!r}")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if init == "normal":
                nn.init.normal_(m.weight, 0.0, std)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and init == "normal":
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def _out_activation(name: OutActivation) -> nn.Module:
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"out_activation must be 'tanh' or 'sigmoid', got {name!r}")


class MLPGenerator(nn.Module):
    """Just4GAN's fully connected G (xxy-im/Just4GAN, the CIFAR-10 write-up this project started from):
    z → 256 → 512 → 1024 → 2048 → prod(image_shape).

    ReLU after every hidden layer, BatchNorm on every hidden layer but the first, Tanh (images in [−1, 1])
    or Sigmoid (images in [0, 1]) at the output.

    Args:
        latent_dim: size of z.
        image_shape: (C, H, W) of the images to produce (linked from the data by the CLI).
        hidden_dims: widths of the hidden layers.
        init: weight initialisation, see :func:`init_weights`.
        out_activation: ``tanh`` for data in [−1, 1], ``sigmoid`` for data in [0, 1].
    """

    def __init__(
        self,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (3, 32, 32),
        hidden_dims: Sequence[int] = (256, 512, 1024, 2048),
        init: Init = "default",
        out_activation: OutActivation = "tanh",
    ) -> None:
        super().__init__()
        self.latent_dim, self.image_shape, widths = _generator_widths(latent_dim, image_shape, hidden_dims)
        # Just4GAN: BatchNorm on every hidden layer but the first.
        hidden = fully_connected(widths, norm=nn.BatchNorm1d, norm_from=1)
        self.net = nn.Sequential(
            *hidden, nn.Linear(widths[-1], math.prod(self.image_shape)), _out_activation(out_activation)
        )
        # The range of G's images: the GAN module scales the real data to it.
        self.value_range = (-1.0, 1.0) if out_activation == "tanh" else (0.0, 1.0)
        init_weights(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """Just4GAN's fully connected D: prod(image_shape) → 1024 → 512 → 256 → 1 logit, ReLU between.

    Args:
        image_shape: (C, H, W) of the input images (linked from the data by the CLI).
        hidden_dims: widths of the hidden layers.
        init: weight initialisation, see :func:`init_weights`.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        hidden_dims: Sequence[int] = (1024, 512, 256),
        init: Init = "default",
    ) -> None:
        super().__init__()
        self.image_shape = positive_ints("image_shape", image_shape)
        widths = (math.prod(self.image_shape), *positive_ints("hidden_dims", hidden_dims))
        # A logit at the end: no Sigmoid (see the module docstring).
        self.net = nn.Sequential(nn.Flatten(), *fully_connected(widths), nn.Linear(widths[-1], 1))
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def output_range(generator: nn.Module) -> tuple[float, float]:
    """The range of G's output, to which the GAN scales its uint8 images: G's own ``value_range`` when it declares
    one, else read off its last layer (``nn.Tanh`` → (−1, 1), ``nn.Sigmoid`` → (0, 1)).

    "Last" is the last leaf module in registration order, which is where every network in this file (and most
    ``nn.Sequential`` stacks) puts its output activation. A G whose range cannot be told that way (a linear output,
    an activation applied in ``forward`` as a function) is refused in one line rather than given [−1, 1] silently.

    Raises:
        ValueError: the range cannot be told, or the declared one is not two numbers lo < hi.
    """
    name = type(generator).__name__
    declared = getattr(generator, "value_range", None)
    if declared is not None:
        try:
            lo, hi = (float(v) for v in declared)
        except (TypeError, ValueError):
            lo, hi = math.nan, math.nan
        if not lo < hi:
            raise ValueError(f"model.generator: {name}.value_range must be two numbers lo < hi, got {declared!r}")
        return lo, hi
    leaves = [m for m in generator.modules() if next(m.children(), None) is None]
    last = leaves[-1] if leaves else None
    for activation, name_of_range in ((nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid")):
        if isinstance(last, activation):
            return VALUE_RANGES[name_of_range]
    raise ValueError(
        f"model.generator: cannot tell the range of {name}'s output (its last layer is "
        f"{type(last).__name__ if last is not None else 'none'}, not Tanh or Sigmoid), to which the images would be "
        f"scaled; give {name} an attribute value_range, e.g. value_range = (-1.0, 1.0) for outputs in [−1, 1]"
    )


# --- The paper's networks (Goodfellow et al. 2014, Sec. 5, and the authors' pylearn2 configs) ---------------


def init_uniform(module: nn.Module, irange: float | None) -> None:
    """pylearn2's initialisation: weights from U(−irange, irange), biases zero (None keeps PyTorch's).

    Args:
        module: the network; its Linear and (transposed) convolution layers are re-initialised.
        irange: half-width of the uniform distribution, > 0, or None.
    """
    if irange is None:
        return
    if not irange > 0:
        raise ValueError(f"irange must be > 0 or null, got {irange}")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.uniform_(m.weight, -irange, irange)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SigmoidMLPGenerator(nn.Module):
    """The paper's MNIST G: z (100) → 1200 ReLU → 1200 ReLU → 784 sigmoid, no BatchNorm.

    Sec. 5 of the paper: "The generator nets used a mixture of rectifier linear activations and sigmoid
    activations"; the sizes, the sigmoid output (pixels in [0, 1]) and ``irange`` 0.05 are those of the
    authors' ``mnist.yaml`` (github.com/goodfeli/adversarial). Its samples lie in [0, 1], so
    ``value_range`` is (0, 1) and the data are scaled to [0, 1].

    Args:
        latent_dim: size of z (100 in the paper).
        image_shape: (C, H, W) of the images to produce (linked from the data by the CLI).
        hidden_dims: widths of the ReLU hidden layers.
        irange: weights from U(−irange, irange), biases zero (pylearn2's init); None keeps PyTorch's default.
    """

    value_range: tuple[float, float] = VALUE_RANGES["sigmoid"]

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden_dims: Sequence[int] = (1200, 1200),
        irange: float | None = 0.05,
    ) -> None:
        super().__init__()
        self.latent_dim, self.image_shape, widths = _generator_widths(latent_dim, image_shape, hidden_dims)
        hidden = fully_connected(widths)
        self.net = nn.Sequential(*hidden, nn.Linear(widths[-1], math.prod(self.image_shape)), nn.Sigmoid())
        init_uniform(self, irange)

    @property
    def out(self) -> nn.Linear:
        """The output layer (before the sigmoid)."""
        return self.net[-2]

    @torch.no_grad()
    def init_output_bias(self, mean_image: torch.Tensor, eps: float = 1e-7) -> None:
        """Set the output bias to logit(mean pixel), so that G starts at the data's mean image.

        pylearn2's ``init_sigmoid_bias_from_marginals``, which the authors' ``mnist.yaml`` applies to G's
        output layer: the per-pixel mean of the training images in [0, 1], clipped to [eps, 1 − eps].

        Args:
            mean_image: per-pixel mean of the training images in [0, 1], any shape with prod(image_shape) values.
            eps: clipping of the mean away from 0 and 1.
        """
        p = mean_image.detach().reshape(-1).to(self.out.bias).clamp(eps, 1 - eps)
        self.out.bias.copy_(torch.log(p / (1 - p)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): ``units`` outputs, each the max over ``pieces`` linear pieces.

    Args:
        in_features: input width.
        units: output width.
        pieces: linear pieces per unit.
    """

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=-1)


class MaxoutDiscriminator(nn.Module):
    """The paper's MNIST D: two maxout layers (240 units × 5 pieces), then one logit; dropout on every input.

    Sec. 5 of the paper: "the discriminator net used maxout activations. Dropout was applied in training the
    discriminator net." The authors' ``mnist.yaml``: maxout h0, h1 of 240 units × 5 pieces, ``irange`` 0.005,
    dropout on each layer's input with include probability 0.8 for the image and 0.5 for the hidden layers
    (scaled by 1/p, i.e. inverted dropout, which is what ``nn.Dropout`` does). The output is a logit: the
    sigmoid lives in the loss. Dropout is active whenever D is in train mode, i.e. in both the D and the
    G update, as in the authors' code.

    Args:
        image_shape: (C, H, W) of the input images (linked from the data by the CLI).
        hidden_dims: units of the maxout layers.
        pieces: pieces per maxout layer (one entry per layer).
        input_dropout: drop probability on D's input (1 − 0.8 in the paper).
        hidden_dropout: drop probability on the input of every later layer, the logit layer included (1 − 0.5).
        irange: weights from U(−irange, irange), biases zero; None keeps PyTorch's default.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden_dims: Sequence[int] = (240, 240),
        pieces: Sequence[int] = (5, 5),
        input_dropout: float = 0.2,
        hidden_dropout: float = 0.5,
        irange: float | None = 0.005,
    ) -> None:
        super().__init__()
        self.image_shape = positive_ints("image_shape", image_shape)
        hidden = positive_ints("hidden_dims", hidden_dims)
        pieces = positive_ints("pieces", pieces)
        if len(pieces) != len(hidden):
            raise ValueError(f"pieces needs one entry per hidden layer ({len(hidden)}), got {list(pieces)}")
        for name, p in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout)):
            if not 0 <= p < 1:
                raise ValueError(f"{name} is a drop probability in [0, 1), got {p}")
        widths = (math.prod(self.image_shape), *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers += [nn.Dropout(input_dropout if i == 0 else hidden_dropout), Maxout(w_in, w_out, pieces[i])]
        layers += [nn.Dropout(hidden_dropout), nn.Linear(widths[-1], 1)]  # a logit: no Sigmoid
        self.net = nn.Sequential(*layers)
        init_uniform(self, irange)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _dcgan_levels(image_shape: tuple[int, ...], who: str) -> tuple[int, int]:
    """(number of ×2 resolution steps, start size) for a square image: 32 → (3, 4), 28 → (2, 7), 64 → (4, 4)."""
    if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
        raise ValueError(f"{who} needs square images (C, H, H), got image_shape {list(image_shape)}")
    size, levels = image_shape[1], 0
    while size % 2 == 0 and size // 2 >= 4:
        size, levels = size // 2, levels + 1
    if levels == 0:
        raise ValueError(f"{who} needs H = s·2^n with n >= 1 and s >= 4 (e.g. 28, 32, 64), got H = {image_shape[1]}")
    return levels, size


class DCGANGenerator(nn.Module):
    """A convolutional G: z → Linear → (C·2^(n−1), s, s) → n transposed convolutions (×2 each) → image.

    The paper's CIFAR-10 experiments (Sec. 5, Fig. 2 c–d) used "a convolutional discriminator and
    'deconvolutional' generator". The authors' ``cifar10_convolutional.yaml`` had a one-off design (two
    8000-unit dense layers, then a single stride-3 transposed convolution); this class is the standard form
    of that idea by Radford et al. (DCGAN, 2016): 4×4 transposed convolutions of stride 2 that double the
    resolution, BatchNorm and ReLU between, Tanh (or Sigmoid) out. 32×32 images start from 4×4 (3 steps),
    28×28 from 7×7 (2 steps); any channel count.

    Args:
        latent_dim: size of z.
        image_shape: (C, H, H) of the images to produce (linked from the data by the CLI).
        base_channels: channels before the last layer; each earlier layer doubles them.
        out_activation: ``tanh`` for data in [−1, 1], ``sigmoid`` for data in [0, 1].
        init: weight initialisation, see :func:`init_weights` (``normal``: N(0, 0.02²), the DCGAN recipe).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: Sequence[int] = (3, 32, 32),
        base_channels: int = 64,
        out_activation: OutActivation = "tanh",
        init: Init = "normal",
    ) -> None:
        super().__init__()
        if latent_dim < 1 or base_channels < 1:
            raise ValueError(f"latent_dim and base_channels must be >= 1, got {latent_dim}, {base_channels}")
        self.latent_dim = int(latent_dim)
        self.image_shape = positive_ints("image_shape", image_shape)
        levels, size = _dcgan_levels(self.image_shape, "DCGANGenerator")
        channels = [base_channels * 2 ** (levels - 1 - i) for i in range(levels)]  # e.g. 256, 128, 64
        self.start_shape = (channels[0], size, size)
        self.project = nn.Sequential(
            nn.Linear(self.latent_dim, math.prod(self.start_shape), bias=False),
            nn.Unflatten(1, self.start_shape),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),  # ×2 resolution
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [
            nn.ConvTranspose2d(channels[-1], self.image_shape[0], 4, stride=2, padding=1),
            _out_activation(out_activation),
        ]
        self.net = nn.Sequential(*layers)
        self.value_range = VALUE_RANGES[out_activation]
        init_weights(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z))


class DCGANDiscriminator(nn.Module):
    """A convolutional D: n strided 4×4 convolutions (÷2 each) → (C·2^(n−1), s, s) → one logit.

    The mirror of :class:`DCGANGenerator` (Radford et al. 2016), standing in for the paper's convolutional
    D (Sec. 5; the authors used maxout convolutions): LeakyReLU(0.2), BatchNorm on all but the first
    convolution, a linear logit at the end (no Sigmoid: it lives in the loss).

    Args:
        image_shape: (C, H, H) of the input images (linked from the data by the CLI).
        base_channels: channels of the first convolution; each later one doubles them.
        batch_norm: BatchNorm after the convolutions but the first.
        init: weight initialisation, see :func:`init_weights`.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        base_channels: int = 64,
        batch_norm: bool = True,
        init: Init = "normal",
    ) -> None:
        super().__init__()
        if base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        self.image_shape = positive_ints("image_shape", image_shape)
        levels, size = _dcgan_levels(self.image_shape, "DCGANDiscriminator")
        channels = [self.image_shape[0]] + [base_channels * 2**i for i in range(levels)]  # e.g. 3, 64, 128, 256
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not (batch_norm and i > 0)))
            if batch_norm and i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Flatten(), nn.Linear(channels[-1] * size * size, 1)]  # a logit
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- Checks and speed switches the GAN module applies to any G and D ---------------------------------------------

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def pack_samples(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN's packing (``model.pack``): N samples (N, C, ...) → N/m packs (N/m, m·C, ...), samples i·m .. i·m + m − 1
    in pack i, concatenated along the first axis after the batch (an image's channels, a point's coordinates)."""
    n = x.shape[0]
    if n % m:
        raise ValueError(f"model.pack={m} packs {m} samples into each input of D, but a minibatch has {n} samples")
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:])


@torch.no_grad()
def check_pair(G: nn.Module, D: nn.Module, latent_dim: int, image_shape: tuple[int, ...], pack: int = 1) -> None:
    """Refuse a G that does not map z (N, latent_dim) to images (N, *image_shape) or a D that does not return one
    logit per image (per pack of ``pack`` images, see ``pack_samples``), with a message that says
    which; both run once in eval mode on two samples (two packs)."""
    modes = G.training, D.training
    G.eval(), D.eval()
    try:
        x = G(torch.zeros(2 * pack, latent_dim))
    except Exception as err:
        raise ValueError(f"model.generator fails on z of shape ({2 * pack}, {latent_dim}): {err}") from err
    finally:
        G.train(modes[0])
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"model.generator makes images of shape {tuple(x.shape[1:])}, but the data's images have shape "
            f"{tuple(image_shape)}: choose a generator for this image shape"
        )
    x = pack_samples(x, pack)  # two packs (pack 1: the two images as they are)
    try:
        y = D(x)
    except Exception as err:
        if pack == 1:
            raise
        raise ValueError(
            f"model.discriminator fails on packs of {pack} samples, shape {tuple(x.shape[1:])}: with "
            f"model.pack={pack} D must be built for that shape (the CLI builds it so): {err}"
        ) from err
    finally:
        D.train(modes[1])
    if tuple(y.shape) not in ((2,), (2, 1)):
        raise ValueError(f"model.discriminator must return one logit per image, got shape {tuple(y.shape)}")


def speed_up(networks: Sequence[nn.Module], compile: bool, mode: CompileMode, channels_last: bool) -> None:
    """How the networks run, never what they compute: channels-last weights, ``torch.compile``.

    ``channels_last`` stores 4-D (convolution) weights in channels-last order (faster on GPUs with tensor cores;
    Linear layers have no such layout). ``compile`` compiles each network's forward in place
    (``nn.Module.compile``), so state-dict keys and checkpoints stay those of the plain networks.
    """
    if mode not in CompileMode.__args__:
        raise ValueError(f"model.compile_mode must be one of {list(CompileMode.__args__)}, got {mode!r}")
    for net in networks:
        if channels_last:
            for p in net.parameters():
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
        if compile:
            net.compile(mode=mode)


# --- The paper's CIFAR-10 networks (the authors' cifar10_fully_connected.yaml, cifar10_convolutional.yaml) ----------


def global_contrast_normalize(images: torch.Tensor, scale: float = 55.0, min_divisor: float = 1e-8) -> torch.Tensor:
    """pylearn2's ``global_contrast_normalize`` (the authors' CIFAR-10 data, ``gcn: 55.``): each image minus its
    own mean, then scaled to L2 norm ``scale`` (an image whose norm is below ``min_divisor`` is only centred).

    Args:
        images: (N, ...) pixels, any range (uint8 included); the result is float32 of the same shape.
    """
    x = images.float().flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True) / scale
    return (x / torch.where(norm < min_divisor, torch.ones_like(norm), norm)).view(images.shape)


class GCNSpace:
    """A mixin for a G whose samples live in global-contrast-normalised space (the authors' CIFAR-10 G has a linear
    output there): the GAN feeds D the real images normalised the same way (``from_pixels``) and shows G's samples
    as pixels with ``to_pixels``, the authors' viewer (pylearn2's CIFAR-10 ``adjust_for_viewer``): each image divided
    by its largest absolute value, [−1, 1] → [0, 1]. GCN discards every image's mean brightness and contrast, so
    shown samples are grey-centred and stretched to full contrast: compare them with real images shown the same
    way (``to_pixels(from_pixels(x))``), not with the raw pixels."""

    gcn_scale: float = 55.0

    def from_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return global_contrast_normalize(images, self.gcn_scale)

    @staticmethod
    def to_pixels(samples: torch.Tensor) -> torch.Tensor:
        flat = samples.float().flatten(1)
        flat = flat / flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        return ((flat + 1) / 2).clamp_(0, 1).view(samples.shape)


class PaperCIFAR10Generator(GCNSpace, nn.Module):
    """The authors' CIFAR-10 G: z(100) → 8000 ReLU → 8000 sigmoid → the image in GCN space, linear output.

    ``output="linear"`` (cifar10_fully_connected.yaml): a linear layer to 3072 (``irange`` 0.05, 0.05, 0.5); about
    89.4 M parameters. ``output="deconv"`` (cifar10_convolutional.yaml): the 8000 sigmoid units reshaped to
    80 × 10 × 10, then one 5 × 5 transposed convolution with stride 3 to 3 channels (pylearn2's ``Deconv``:
    output (10 − 1)·3 + 5 = 32, no padding) and an untied bias (one per output pixel and channel), ``irange``
    0.05 everywhere. Weights U(−irange, irange), biases zero (pylearn2).

    Args:
        latent_dim: size of z (100).
        image_shape: (3, 32, 32) (linked from the data by the CLI).
        output: ``linear`` or ``deconv`` (see above).
        hidden_dims: the ReLU layer's and the sigmoid layer's widths (8000, 8000; 80·10·10 for ``deconv``).
        irange: the hidden layers' irange, and the output layer's.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: Sequence[int] = (3, 32, 32),
        output: Literal["linear", "deconv"] = "linear",
        hidden_dims: Sequence[int] = (8000, 8000),
        irange: Sequence[float] = (0.05, 0.5),
    ) -> None:
        super().__init__()
        self.latent_dim, self.image_shape = latent_dim, positive_ints("image_shape", image_shape)
        relu_dim, sigmoid_dim = positive_ints("hidden_dims", hidden_dims)[:2]
        hidden_irange, out_irange = (float(r) for r in irange)
        self.hidden = nn.Sequential(
            nn.Linear(latent_dim, relu_dim), nn.ReLU(), nn.Linear(relu_dim, sigmoid_dim), nn.Sigmoid()
        )
        init_uniform(self.hidden, hidden_irange)
        c, h, w = self.image_shape
        if output == "linear":
            self.out: nn.Module = nn.Linear(sigmoid_dim, c * h * w)
        elif output == "deconv":
            side = (h - 5) // 3 + 1  # (side − 1)·3 + 5 = h
            channels = sigmoid_dim // (side * side)
            if h != w or (side - 1) * 3 + 5 != h or channels * side * side != sigmoid_dim:
                raise ValueError(
                    f"output deconv needs square images of side 3·(s − 1) + 5 (32: s = 10) and hidden_dims[1] a "
                    f"multiple of s² ({side}² here), got image_shape {list(self.image_shape)}, hidden_dims "
                    f"{[relu_dim, sigmoid_dim]}"
                )
            self.out = nn.Sequential(
                nn.Unflatten(1, (channels, side, side)),
                nn.ConvTranspose2d(channels, c, 5, stride=3, bias=False),
                UntiedBias((c, h, w)),
            )
        else:
            raise ValueError(f"output must be 'linear' or 'deconv', got {output!r}")
        init_uniform(self.out, out_irange)
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z)).view(z.shape[0], *self.image_shape)


class UntiedBias(nn.Module):
    """A bias per output element (pylearn2's ``tied_b: 0``): (N, *shape) + b, b zero at first."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class MaxoutConv(nn.Module):
    """pylearn2's ``MaxoutConvC01B``: a convolution (stride 1, zero padding ``pad``) to ``channels × pieces`` maps,
    the max over each unit's ``pieces`` maps, then cuda-convnet's max pooling (``pool`` window, ``stride``; its
    windows run over the border, as ``ceil_mode=True`` does). A bias per map (``tied_b: 1``)."""

    def __init__(self, in_channels: int, channels: int, pieces: int, kernel: int, pad: int, pool: int, stride: int):
        super().__init__()
        self.channels, self.pieces = channels, pieces
        self.conv = nn.Conv2d(in_channels, channels * pieces, kernel, padding=pad)
        self.pool = nn.MaxPool2d(pool, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = y.view(y.shape[0], self.channels, self.pieces, *y.shape[2:]).amax(dim=2)
        return self.pool(y)


class MaxoutConvDiscriminator(nn.Module):
    """The authors' convolutional CIFAR-10 D (cifar10_convolutional.yaml): three maxout convolution layers, one
    maxout layer of 500 units × 5 pieces, one logit; dropout on every layer's input (keep 0.8 on the image, 0.5
    after; inverted, as ``nn.Dropout``), weights U(−0.005, 0.005), biases zero.

    The default layers: 32 × 2 pieces, kernel 8, pad 4, pool 4 stride 2 (32 → 33 → 16); 32 × 2, kernel 8, pad 3,
    pool 4/2 (16 → 15 → 7); 192 × 2, kernel 5, pad 3, pool 2/2 (7 → 9 → 5); then 192 · 5 · 5 = 4800 → maxout 500 × 5.

    Args:
        image_shape: (C, H, W) of the input (linked from the data by the CLI).
        conv_layers: one ``[channels, pieces, kernel, pad, pool, pool_stride]`` per convolution layer.
        dense: ``[units, pieces]`` of the maxout layer before the logit.
        input_dropout: drop probability on the image (1 − 0.8).
        hidden_dropout: drop probability on the input of every later layer (1 − 0.5).
        irange: weights from U(−irange, irange), biases zero.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        conv_layers: Sequence[Sequence[int]] = ((32, 2, 8, 4, 4, 2), (32, 2, 8, 3, 4, 2), (192, 2, 5, 3, 2, 2)),
        dense: Sequence[int] = (500, 5),
        input_dropout: float = 0.2,
        hidden_dropout: float = 0.5,
        irange: float | None = 0.005,
    ) -> None:
        super().__init__()
        self.image_shape = positive_ints("image_shape", image_shape)
        if not 0 <= input_dropout < 1:
            raise ValueError(f"input_dropout is a drop probability in [0, 1), got {input_dropout}")
        layers: list[nn.Module] = []
        channels = self.image_shape[0]
        for i, spec in enumerate(conv_layers):
            if len(spec) != 6:
                raise ValueError(
                    f"conv_layers[{i}] must be [channels, pieces, kernel, pad, pool, pool_stride], got {spec}"
                )
            out, pieces, kernel, pad, pool, stride = (int(v) for v in spec)
            layers += [nn.Dropout(input_dropout if i == 0 else hidden_dropout)]
            layers += [MaxoutConv(channels, out, pieces, kernel, pad, pool, stride)]
            channels = out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            maps = tuple(self.features.eval()(torch.zeros(1, *self.image_shape)).shape[1:])
        self.features.train()
        units, pieces = positive_ints("dense", dense)
        # The rest is the fully connected maxout D on the maps: dropout, maxout units × pieces, dropout, a logit.
        self.head = MaxoutDiscriminator(maps, [units], [pieces], hidden_dropout, hidden_dropout, irange)
        init_uniform(self.features, irange)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
