"""EMA of G (``--model.ema_decay``): the average, its use for sampling, and its checkpoint round-trip."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from gan_module import GAN

SHAPE = (1, 4, 4)


@pytest.fixture
def make_gan(tiny_gan):
    """``make_gan(ema_decay, k, seed)``: the EMA tests' GAN, with BatchNorm in G, so its buffers are averaged too."""

    def make(ema_decay: float | None = 0.9, k: int = 1, seed: int = 0) -> GAN:
        return tiny_gan(
            latent_dim=3, g_hidden=(8, 8), d_hidden=(8,), noise_seed=1, grid_size=2, ema_decay=ema_decay, k=k, seed=seed
        )

    return make


def float_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and floating-point buffers (BatchNorm's num_batches_tracked is an integer count)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


class RecordG(L.Callback):
    """G's weights after every training step in which G was updated."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.d_updates % pl_module.k == 0:
            self.states.append(float_state(pl_module.G))


def hand_ema(states: list[dict[str, torch.Tensor]], decay: float, start: dict | None = None) -> dict:
    """W_1 = G after its first update (or ``start`` when resuming); W_t = decay W_{t−1} + (1 − decay) G_t."""
    ema = None if start is None else {k: v.clone() for k, v in start.items()}
    for state in states:
        ema = (
            {k: v.clone() for k, v in state.items()}
            if ema is None
            else {k: decay * ema[k] + (1 - decay) * state[k] for k in ema}
        )
    return ema


def assert_state_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("k", [1, 2])
def test_ema_equals_hand_computed_average_after_g_steps(k: int, cpu_trainer, image_loader, make_gan) -> None:
    decay, batches = 0.8, 6
    model, record = make_gan(ema_decay=decay, k=k), RecordG()
    cpu_trainer(max_steps=batches + batches // k, callbacks=[record]).fit(model, image_loader(shuffle=False))
    assert len(record.states) == batches // k  # updated after G steps only, not after D steps
    assert int(model.G_ema.n_averaged) == batches // k
    assert_state_close(float_state(model.G_ema.module), hand_ema(record.states, decay))
    # ... and it is not just G's current weights
    assert not torch.allclose(model.G_ema.module.net[0].weight, model.G.net[0].weight)


def test_samples_come_from_the_ema(cpu_trainer, image_loader, make_gan) -> None:
    model = make_gan(ema_decay=0.5)
    cpu_trainer(max_steps=8).fit(model, image_loader(shuffle=False))
    z = torch.randn(5, 3)
    model.G_ema.module.eval(), model.G.eval()
    with torch.no_grad():
        expected, from_g = model.to_uint8(model.G_ema.module(z)), model.to_uint8(model.G(z))
        unit = (model.G_ema.module(z) + 1) / 2  # Tanh output → [0, 1]
    assert torch.equal(model.generate(z), expected)
    assert not torch.equal(model.generate(z), from_g)
    torch.testing.assert_close(model.generate(z, quantize=False), unit)


def test_ema_checkpoint_round_trip_and_resume(tmp_path: Path, cpu_trainer, image_loader, make_gan) -> None:
    decay = 0.7
    first = make_gan(ema_decay=decay)
    t1 = cpu_trainer(max_steps=2 * 3)  # k = 1: 3 training steps of one D and one G update each
    t1.fit(first, image_loader(shuffle=False))
    path = tmp_path / "ema.ckpt"
    t1.save_checkpoint(path)
    saved = float_state(first.G_ema.module)
    assert any(key.startswith("G_ema.module.") for key in torch.load(path, weights_only=False)["state_dict"])

    # Resume in a fresh model with other initial weights: the EMA is restored and continues from where it was.
    resumed, record = make_gan(ema_decay=decay, seed=99), RecordG()
    assert not torch.allclose(resumed.G_ema.module.net[0].weight, saved["net.0.weight"])
    cpu_trainer(max_steps=2 * 5, callbacks=[record]).fit(
        resumed, image_loader(shuffle=False), ckpt_path=path, weights_only=False
    )  # hparams hold the modules
    assert len(record.states) == 2 and int(resumed.G_ema.n_averaged) == 5
    assert_state_close(float_state(resumed.G_ema.module), hand_ema(record.states, decay, start=saved))


def test_checkpoint_without_ema_starts_the_average_from_g(tmp_path: Path, cpu_trainer, image_loader, make_gan) -> None:
    plain = make_gan(ema_decay=None)
    t = cpu_trainer(max_steps=4)
    t.fit(plain, image_loader(shuffle=False))
    path = tmp_path / "plain.ckpt"
    t.save_checkpoint(path)
    with_ema = make_gan(ema_decay=0.9, seed=5)
    checkpoint = torch.load(path, weights_only=False)
    with_ema.on_load_checkpoint(checkpoint)
    with_ema.load_state_dict(checkpoint["state_dict"])  # strict: every key present
    assert_state_close(float_state(with_ema.G_ema.module), float_state(plain.G))
    assert int(with_ema.G_ema.n_averaged) == 0  # the next G update copies G, then averaging goes on

    # and the other way: an EMA checkpoint loads into a model without EMA (G's own weights), with a warning
    ema_ckpt_model = make_gan(ema_decay=0.9)
    t2 = cpu_trainer(max_steps=4)
    t2.fit(ema_ckpt_model, image_loader(shuffle=False))
    t2.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    no_ema = make_gan(ema_decay=None, seed=7)
    with pytest.warns(UserWarning, match="ema_decay"):
        no_ema.on_load_checkpoint(checkpoint)
    no_ema.load_state_dict(checkpoint["state_dict"])
    assert_state_close(float_state(no_ema.G), float_state(ema_ckpt_model.G))


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_bad_ema_decay_is_refused(decay: float, make_gan) -> None:
    with pytest.raises(ValueError, match=r"model.ema_decay must be in \(0, 1\)"):
        make_gan(ema_decay=decay)


def test_ema_is_off_by_default(make_gan) -> None:
    model = make_gan(ema_decay=None)
    assert model.G_ema is None
    assert not any(key.startswith("G_ema") for key in model.state_dict())
