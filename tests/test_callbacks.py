"""The pylearn2 schedules of the paper's MNIST run: momentum ramp, exponential lr decay, output bias init."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

import networks
from callbacks import ExponentialDecay, LinearDecay, MomentumRamp, SigmoidBiasFromMarginals
from datamodule import MNISTDataModule
from gan_module import GAN
from tests.fake_data import write_mnist


def test_momentum_ramp_matches_pylearn2_momentum_adjustor() -> None:
    # pylearn2's MomentumAdjustor(start=1, saturate=250, final_momentum=.7) on init_momentum .5: its counter is
    # 1 during the first epoch and e + 1 during epoch e, alpha = (count − start) / (saturate − start).
    ramp = MomentumRamp(0.5, 0.7, 250)
    for epoch in (0, 1, 100, 248, 249, 250, 1000):
        alpha = min(max((epoch + 1 - 1) / (250 - 1), 0.0), 1.0)
        assert ramp.momentum(epoch) == pytest.approx(0.5 * (1 - alpha) + 0.7 * alpha)
    assert ramp.momentum(0) == 0.5 and ramp.momentum(249) == pytest.approx(0.7)


def test_exponential_decay_formula() -> None:
    decay = ExponentialDecay(decay_factor=1.000004, min_lr=1e-6)
    assert decay.lr(0.1, 0) == 0.1
    assert decay.lr(0.1, 50000) == pytest.approx(0.1 * 1.000004**-50000)  # ≈ 0.1 · e^−0.2 after 100 epochs
    assert decay.lr(0.1, 10**9) == 1e-6


class _Probe(L.Callback):
    """Records (epoch, [(lr, momentum) of every param group]) after each training step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[tuple[float, float]]]] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        groups = [g for opt in trainer.optimizers for g in opt.param_groups]
        self.seen.append((trainer.current_epoch, [(g["lr"], g["momentum"]) for g in groups]))


def _fit(root: Path, callbacks: list, optimizer=None, ckpt_path: str | None = None, epochs: int = 3) -> L.Trainer:
    torch.manual_seed(0)
    dm = MNISTDataModule(str(root), batch_size=10, download=False, val_size=0)
    optimizer = optimizer or partial(torch.optim.SGD, lr=0.1, momentum=0.5)
    model = GAN(
        networks.SigmoidMLPGenerator(4, (1, 28, 28), hidden_dims=(8,)),
        networks.MaxoutDiscriminator((1, 28, 28), hidden_dims=(4,), pieces=(2,)),
        latent_dim=4,
        image_shape=(1, 28, 28),
        g_optimizer=optimizer,
        d_optimizer=optimizer,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=str(root),
    )
    trainer.fit(model, dm, ckpt_path=ckpt_path, weights_only=False)  # the test pickles nn.Modules in hparams
    return trainer


def test_schedules_drive_both_optimizers_and_survive_a_resume(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=40, n_test=10)
    probe = _Probe()
    _fit(tmp_path, [MomentumRamp(0.5, 0.7, epochs=3), ExponentialDecay(2.0, min_lr=0.01), probe])
    # 3 epochs × 2 steps; both optimizers (D then G) get the same schedule.
    expected_momentum = [0.5, 0.5, 0.6, 0.6, 0.7, 0.7]
    expected_lr = [max(0.1 / 2**t, 0.01) for t in range(6)]  # 0.1, 0.05, 0.025, 0.0125, 0.01, 0.01
    assert [epoch for epoch, _ in probe.seen] == [0, 0, 1, 1, 2, 2]
    for (_, groups), lr, momentum in zip(probe.seen, expected_lr, expected_momentum, strict=True):
        assert len(groups) == 2
        assert all(g == pytest.approx((lr, momentum)) for g in groups)

    # Resume after 2 epochs: the decay continues from step 4 and the ramp from epoch 2.
    ckpt = tmp_path / "two.ckpt"
    trainer = _fit(tmp_path, [MomentumRamp(0.5, 0.7, epochs=5), ExponentialDecay(1.5, min_lr=0.0)], epochs=2)
    trainer.save_checkpoint(ckpt)
    probe = _Probe()
    _fit(
        tmp_path,
        [MomentumRamp(0.5, 0.7, epochs=5), ExponentialDecay(1.5, min_lr=0.0), probe],
        ckpt_path=str(ckpt),
        epochs=3,
    )
    assert [epoch for epoch, _ in probe.seen] == [2, 2]
    assert probe.seen[0][1][0] == pytest.approx((0.1 / 1.5**4, 0.6))


def test_linear_decay_holds_then_falls_to_the_end_factor_by_fractional_epoch(tmp_path: Path) -> None:
    decay = LinearDecay(start=1, end=3, end_factor=0.1)
    assert [decay.factor(e) for e in (0.0, 1.0, 2.0, 3.0, 9.0)] == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])
    write_mnist(tmp_path, n_train=40, n_test=10)
    probe = _Probe()
    _fit(tmp_path, [LinearDecay(start=1, end=3), probe], epochs=3)  # 2 batches an epoch: epochs 0, 0.5, 1, ...
    expected = [0.1 * f for f in (1.0, 1.0, 1.0, 0.75, 0.5, 0.25)]
    assert [groups[0][0] for _, groups in probe.seen] == pytest.approx(expected)
    assert all(len({g[0] for g in groups}) == 1 for _, groups in probe.seen)  # D's and G's alike


def test_momentum_ramp_refuses_optimizers_without_momentum(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=40, n_test=10)
    with pytest.raises(ValueError, match="use torch.optim.SGD"):
        _fit(tmp_path, [MomentumRamp()], optimizer=partial(torch.optim.Adam, lr=1e-3), epochs=1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MomentumRamp(start=1.0), "MomentumRamp.start"),
        (lambda: MomentumRamp(epochs=0), "MomentumRamp.epochs"),
        (lambda: ExponentialDecay(decay_factor=0.5), "decay_factor"),
        (lambda: SigmoidBiasFromMarginals(eps=0.0), "eps"),
        (lambda: LinearDecay(start=5, end=5), "start < end"),
        (lambda: LinearDecay(start=0, end=5, end_factor=2.0), "end_factor"),
    ],
)
def test_bad_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_sigmoid_bias_from_marginals(tmp_path: Path) -> None:
    written = write_mnist(tmp_path, n_train=30, n_test=10)
    dm = MNISTDataModule(str(tmp_path), batch_size=10, download=False, val_size=10)
    dm.setup("fit")
    g = networks.SigmoidMLPGenerator(4, (1, 28, 28), hidden_dims=(8,))
    module = SimpleNamespace(G=g)
    SigmoidBiasFromMarginals(eps=1e-3).setup(SimpleNamespace(datamodule=dm), module, "fit")
    mean = torch.from_numpy(written["train"][:20]).double().mean(0).flatten() / 255  # the training part only
    p = mean.clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(g.out.bias.double(), torch.log(p / (1 - p)), atol=1e-5)
    with pytest.raises(ValueError, match="init_output_bias"):
        SigmoidBiasFromMarginals().setup(
            SimpleNamespace(datamodule=dm), SimpleNamespace(G=torch.nn.Linear(2, 2)), "fit"
        )
