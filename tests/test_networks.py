import math

import pytest
import torch
from torch import nn

from networks import MLPDiscriminator, MLPGenerator


def test_mlp_generator_is_the_seeds_architecture():
    g = MLPGenerator(latent_dim=128, image_shape=(3, 32, 32))
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (128, 256),
        (256, 512),
        (512, 1024),
        (1024, 2048),
        (2048, 3072),
    ]
    # BatchNorm on every hidden layer but the first, Tanh at the output.
    assert [m.num_features for m in g.modules() if isinstance(m, nn.BatchNorm1d)] == [512, 1024, 2048]
    assert isinstance(g.net[-1], nn.Tanh)
    assert g.value_range == (-1.0, 1.0)


def test_mlp_discriminator_is_the_seeds_architecture_and_returns_logits():
    d = MLPDiscriminator(image_shape=(3, 32, 32))
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3072, 1024), (1024, 512), (512, 256), (256, 1)]
    assert isinstance(d.net[-1], nn.Linear)  # a logit, no Sigmoid
    with torch.no_grad():
        d.net[-1].bias.fill_(10.0)  # a logit can leave [0, 1]; a probability could not
        out = d(torch.zeros(4, 3, 32, 32))
    assert out.shape == (4, 1)
    assert (out > 1).all()


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (2,)])
def test_shapes_follow_image_shape(shape):
    g, d = MLPGenerator(16, shape, hidden_dims=(8, 8)), MLPDiscriminator(shape, hidden_dims=(8,))
    x = g(torch.randn(5, 16))
    assert x.shape == (5, *shape)
    assert x.abs().max() <= 1
    assert d(x).shape == (5, 1)


def test_sigmoid_output_range():
    g = MLPGenerator(8, (1, 4, 4), hidden_dims=(8, 8), out_activation="sigmoid")
    x = g(torch.randn(3, 8))
    assert g.value_range == (0.0, 1.0)
    assert x.min() >= 0 and x.max() <= 1


def test_init_options():
    torch.manual_seed(0)
    g = MLPGenerator(64, (3, 32, 32), init="normal")
    w = g.net[0].weight
    assert abs(w.std().item() - 0.02) < 0.002 and g.net[0].bias.abs().max() == 0
    d = MLPDiscriminator((3, 32, 32), init="xavier")
    w = d.net[1].weight
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    with pytest.raises(ValueError, match="init must be one of"):
        MLPDiscriminator((3, 32, 32), init="kaiming")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        MLPGenerator(0)
    with pytest.raises(ValueError, match="hidden_dims"):
        MLPDiscriminator((3, 32, 32), hidden_dims=(0,))
