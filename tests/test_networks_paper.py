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
