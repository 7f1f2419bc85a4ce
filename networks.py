"""Generator and discriminator architectures: plain ``nn.Module``s, no Lightning.

Every generator takes ``latent_dim`` and ``image_shape`` and maps ``z`` of shape ``(N, latent_dim)`` to
images of shape ``(N, *image_shape)``. Every discriminator takes ``image_shape`` and returns one **logit**
per image, shape ``(N, 1)``: the sigmoid lives in the loss (binary cross-entropy with logits), which is
numerically stable and safe under 16-bit autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Init = Literal["default", "normal", "xavier"]
OutActivation = Literal["tanh", "sigmoid"]


def _check_positive(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {list(values)}")
    return values


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
    """The seed's fully connected G: z → 256 → 512 → 1024 → 2048 → prod(image_shape).

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
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.image_shape = _check_positive("image_shape", image_shape)
        widths = (self.latent_dim, *_check_positive("hidden_dims", hidden_dims))
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(w_in, w_out))
            if i > 0:  # the seed: no BatchNorm on the first hidden layer
                layers.append(nn.BatchNorm1d(w_out))
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.Linear(widths[-1], math.prod(self.image_shape)), _out_activation(out_activation)]
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """The seed's fully connected D: prod(image_shape) → 1024 → 512 → 256 → 1 logit, ReLU between.

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
        self.image_shape = _check_positive("image_shape", image_shape)
        widths = (math.prod(self.image_shape), *_check_positive("hidden_dims", hidden_dims))
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], 1))  # a logit: no Sigmoid (see the module docstring)
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- 2-D toy networks (the mode-collapse lab on Gaussian mixtures) --------------------------------------------


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): the max over ``pieces`` linear maps of the input."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (-1, self.pieces)).amax(-1)


class ToyGenerator(nn.Module):
    """G for low-dimensional data (2-D mixtures): z → hidden ReLU layers → a **linear** output of image_shape.

    The shape of the generator of the PacGAN/VEEGAN 2-D experiments (fully connected ReLU layers with
    BatchNorm, linear output, here narrower so that training fits a small CPU budget); the data is not
    bounded, so there is no Tanh.

    Args:
        latent_dim: size of z.
        image_shape: shape of one data point, ``(2,)`` for 2-D mixtures (linked from the data by the CLI).
        hidden_dims: widths of the hidden layers.
        batch_norm: BatchNorm before every hidden ReLU (as in PacGAN's generator). Off by default: with it,
            ring8 (ReLU D) kept about 40 % of its samples high-quality after 3,900 steps against 94 % without
            (one seed each). A plausible cause: G samples in eval mode, where the running statistics lag the
            weights, and the ring's modes are only 0.01 wide.
        scale: a fixed factor on the output: G learns the data divided by ``scale`` (set it, and D's ``scale``,
            to the data's extent, e.g. 4 for the grid, so that both networks work at unit scale).
        init: weight initialisation, see :func:`init_weights`.
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
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.latent_dim = int(latent_dim)
        self.image_shape = _check_positive("image_shape", image_shape)
        widths = (self.latent_dim, *_check_positive("hidden_dims", hidden_dims))
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers.append(nn.Linear(w_in, w_out, bias=not batch_norm))  # BatchNorm's shift replaces the bias
            if batch_norm:
                layers.append(nn.BatchNorm1d(w_out))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(widths[-1], math.prod(self.image_shape)))  # linear: unbounded data
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.net(z) * self.scale).view(z.shape[0], *self.image_shape)


class ToyDiscriminator(nn.Module):
    """D for low-dimensional data: hidden ReLU (or maxout) layers → one logit.

    Args:
        image_shape: shape of one data point, ``(2,)`` for 2-D mixtures (linked from the data by the CLI).
        hidden_dims: widths of the hidden layers.
        maxout_pieces: 1 for ReLU units; > 1 for maxout units with that many pieces (PacGAN's D: 5).
        scale: D sees its input divided by this fixed factor (the data's extent; see ``ToyGenerator``).
        init: weight initialisation, see :func:`init_weights`.
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
        if not isinstance(maxout_pieces, int) or maxout_pieces < 1:
            raise ValueError(f"maxout_pieces must be an integer >= 1, got {maxout_pieces!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.image_shape = _check_positive("image_shape", image_shape)
        widths = (math.prod(self.image_shape), *_check_positive("hidden_dims", hidden_dims))
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            if maxout_pieces > 1:
                layers.append(Maxout(w_in, w_out, maxout_pieces))
            else:
                layers += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], 1))  # a logit
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / self.scale)
