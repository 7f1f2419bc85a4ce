"""The paper's networks: the MNIST sigmoid G, the maxout D, and the convolutional (DCGAN) G and D."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import networks
from gan_module import GAN

SHAPES = [(1, 28, 28), (3, 32, 32)]


def _make(kind: str, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    if kind == "paper":
        return (
            networks.SigmoidMLPGenerator(8, shape, hidden_dims=(32, 32)),
            networks.MaxoutDiscriminator(shape, hidden_dims=(16, 16), pieces=(3, 3)),
        )
    return networks.DCGANGenerator(8, shape, base_channels=4), networks.DCGANDiscriminator(shape, base_channels=4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["paper", "dcgan"])
def test_output_shapes_and_logits(kind: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    g, d = _make(kind, shape)
    x = g(torch.randn(5, 8))
    assert x.shape == (5, *shape)
    lo, hi = g.value_range
    assert lo <= x.min() and x.max() <= hi
    d.eval()
    last = [m for m in d.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(5.0)  # a logit is unbounded: a probability could never exceed 1
        assert d(x).shape == (5, 1) and (d(x) > 1).all()
        last.bias.fill_(-5.0)
        assert (d(x) < 0).all()


def test_value_range_follows_the_output_activation() -> None:
    assert networks.SigmoidMLPGenerator().value_range == (0.0, 1.0)
    assert networks.MLPGenerator(out_activation="sigmoid").value_range == (0.0, 1.0)
    assert networks.MLPGenerator(out_activation="tanh").value_range == (-1.0, 1.0)
    assert networks.DCGANGenerator(4, (1, 28, 28), 4, out_activation="sigmoid").value_range == (0.0, 1.0)
    assert networks.DCGANGenerator(4, (1, 28, 28), 4).value_range == (-1.0, 1.0)
    # The GAN module reads it: uint8 data are scaled to [0, 1] for the sigmoid G.
    gan = GAN(networks.SigmoidMLPGenerator(4, (1, 28, 28), (8,)), networks.MaxoutDiscriminator(), latent_dim=4,
              image_shape=(1, 28, 28))  # fmt: skip
    batch = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    assert torch.allclose(gan.to_model_range(batch).flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_paper_sizes() -> None:
    g, d = networks.SigmoidMLPGenerator(), networks.MaxoutDiscriminator()
    assert [(m.in_features, m.out_features) for m in g.modules() if isinstance(m, nn.Linear)] == [
        (100, 1200),
        (1200, 1200),
        (1200, 784),
    ]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in g.modules())
    assert [(m.units, m.pieces) for m in d.modules() if isinstance(m, networks.Maxout)] == [(240, 5), (240, 5)]
    assert [m.p for m in d.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]  # keep 0.8, then 0.5
    assert max(p.abs().max().item() for p in d.parameters()) <= 0.005  # irange .005
    assert max(p.abs().max().item() for p in g.parameters()) <= 0.05


def test_maxout_is_the_max_over_pieces() -> None:
    torch.manual_seed(0)
    layer = networks.Maxout(6, units=4, pieces=3)
    x = torch.randn(7, 6)
    pre = x @ layer.linear.weight.T + layer.linear.bias  # (7, 12): unit j owns columns 3j, 3j+1, 3j+2
    expected = torch.stack([pre[:, 3 * j : 3 * j + 3].max(dim=1).values for j in range(4)], dim=1)
    assert torch.allclose(layer(x), expected)


def test_maxout_discriminator_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    d = networks.MaxoutDiscriminator((1, 28, 28), hidden_dims=(32, 32), pieces=(2, 2), irange=None)
    x = torch.rand(16, 1, 28, 28)
    d.train()
    assert not torch.allclose(d(x), d(x))
    d.eval()
    assert torch.equal(d(x), d(x))


def test_output_bias_from_marginals() -> None:
    g = networks.SigmoidMLPGenerator(4, (1, 2, 2), hidden_dims=(8,))
    mean = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 2, 2)
    g.init_output_bias(mean, eps=1e-3)
    with torch.no_grad():
        g.out.weight.zero_()  # then G(z) = sigmoid(bias) for every z
    expected = torch.tensor([1e-3, 0.25, 0.5, 1 - 1e-3]).view(1, 1, 2, 2).expand(3, 1, 2, 2)
    assert torch.allclose(g(torch.randn(3, 4)), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: networks.DCGANGenerator(8, (3, 27, 27)), "e.g. 28, 32, 64"),
        (lambda: networks.DCGANDiscriminator((3, 32, 28)), "square"),
        (lambda: networks.MaxoutDiscriminator(pieces=(5,)), "one entry per hidden layer"),
        (lambda: networks.MaxoutDiscriminator(input_dropout=1.0), "drop probability"),
        (lambda: networks.SigmoidMLPGenerator(irange=0.0), "irange"),
    ],
)
def test_bad_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# --- the authors' CIFAR-10 networks (cifar10_fully_connected.yaml, cifar10_convolutional.yaml) --------------------


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_cifar10_networks_have_the_authors_sizes() -> None:
    g_fc, d_fc = (
        networks.PaperCIFAR10Generator(output="linear"),
        networks.MaxoutDiscriminator((3, 32, 32), (1600, 1600)),
    )
    # z 100 → 8000 → 8000 → 3072 and 3072 → maxout 1600×5 → maxout 1600×5 → 1, with biases
    assert _count(g_fc) == 100 * 8000 + 8000 + 8000 * 8000 + 8000 + 8000 * 3072 + 3072 == 89_395_072
    assert _count(d_fc) == 3072 * 8000 + 8000 + 1600 * 8000 + 8000 + 1600 + 1 == 37_393_601
    g_conv, d_conv = networks.PaperCIFAR10Generator(output="deconv"), networks.MaxoutConvDiscriminator()
    deconv = next(m for m in g_conv.modules() if isinstance(m, nn.ConvTranspose2d))
    assert (deconv.in_channels, deconv.out_channels, deconv.kernel_size, deconv.stride) == (80, 3, (5, 5), (3, 3))
    bias = next(m for m in g_conv.modules() if isinstance(m, networks.UntiedBias)).bias
    assert bias.shape == (3, 32, 32) and deconv.bias is None  # untied: one bias per output pixel and channel
    z = torch.randn(2, 100)
    assert g_fc(z).shape == g_conv(z).shape == (2, 3, 32, 32)
    # D's maps: 32 + 2·4 − 8 + 1 = 33 → pool 4/2 (cuda-convnet: over the border) 16 → 15 → 7 → 9 → 5
    x, sizes = torch.zeros(1, 3, 32, 32), []
    for layer in d_conv.features:
        x = layer(x)
        if isinstance(layer, networks.MaxoutConv):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(32, 16, 16), (32, 7, 7), (192, 5, 5)]
    assert d_conv(torch.zeros(3, 3, 32, 32)).shape == (3, 1)
    # pylearn2's initialisation: U(−irange, irange) weights, zero biases
    assert g_fc.out.weight.abs().max() <= 0.5 and g_fc.out.weight.abs().max() > 0.45
    assert g_fc.hidden[0].weight.abs().max() <= 0.05 and not g_fc.hidden[0].bias.any()
    assert all(m.weight.abs().max() <= 0.005 for m in d_conv.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_global_contrast_normalisation_is_pylearn2s() -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[0] = 7  # a flat image: its norm is 0, it is only centred (pylearn2's min_divisor)
    gcn = networks.global_contrast_normalize(images, 55.0)
    x = images.double().flatten(1).numpy()
    x = x - x.mean(axis=1, keepdims=True)  # pylearn2: subtract the mean, divide by sqrt(sum x²) / scale
    norms = (x**2).sum(axis=1, keepdims=True) ** 0.5 / 55.0
    norms[norms < 1e-8] = 1.0
    assert torch.allclose(gcn.flatten(1).double(), torch.from_numpy(x / norms), atol=1e-4)
    assert torch.allclose(gcn[1:].flatten(1).norm(dim=1), torch.full((5,), 55.0), rtol=1e-5)
    assert not gcn[0].any()


def test_a_gan_with_the_paper_cifar10_generator_works_in_gcn_space() -> None:
    torch.manual_seed(0)
    g = networks.PaperCIFAR10Generator(8, hidden_dims=(16, 100), output="deconv")
    model = GAN(g, networks.MaxoutDiscriminator((3, 32, 32), (8, 8), (2, 2)), latent_dim=8, image_shape=(3, 32, 32))
    assert model.value_range is None and model.pixel_map  # no range to scale to: G maps pixels itself
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(model.to_model_range(images), networks.global_contrast_normalize(images))
    samples = model.generate(model.sample_z(5))  # shown the authors' way: each image stretched to [0, 255]
    assert samples.dtype == torch.uint8 and samples.shape == (5, 3, 32, 32)
    flat = samples.flatten(1).int()
    assert bool(((flat.min(1).values == 0) | (flat.max(1).values == 255)).all())  # full contrast, per image
    shown = model.as_shown(images)  # real images through the same mapping, for image metrics
    assert torch.equal(shown, model.to_uint8(networks.global_contrast_normalize(images)))
