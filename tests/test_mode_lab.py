"""The mode-collapse lab: 2-D mixtures, toy networks, mode-coverage metrics and the ring8 config end to end."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scipy.stats import entropy

from mode_lab import (
    ModeCoverage,
    ToyDiscriminator,
    ToyGenerator,
    ToyMixtureDataModule,
    mixture_centers,
    mode_coverage,
    scatter_figure,
)

ROOT = Path(__file__).resolve().parents[1]


# --- data ----------------------------------------------------------------------------------------------------


def test_ring_has_eight_distinct_evenly_spaced_modes_on_the_unit_circle():
    centers, std = mixture_centers("ring")
    assert centers.shape == (8, 2) and std == 0.01
    assert torch.allclose(centers.norm(dim=1), torch.ones(8), atol=1e-6)
    angles = torch.atan2(centers[:, 1].double(), centers[:, 0].double()).remainder(2 * math.pi)
    gaps = torch.diff(torch.sort(angles).values, append=torch.tensor([2 * math.pi + angles.min()]))
    assert torch.allclose(gaps, torch.full((8,), 2 * math.pi / 8, dtype=torch.float64), atol=1e-6)
    assert torch.cdist(centers, centers).add(torch.eye(8) * 10).min() > 0.7  # no repeated mode


def test_grid_has_25_modes_on_the_lattice():
    centers, std = mixture_centers("grid")
    assert std == 0.05
    expected = {(float(x), float(y)) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert {tuple(c.tolist()) for c in centers} == expected and len(centers) == 25


@pytest.mark.parametrize("mixture", ["ring", "grid"])
def test_datamodule_points_are_seeded_float_and_near_their_modes(mixture):
    dm = ToyMixtureDataModule(mixture=mixture, num_train=4000, num_val=50, batch_size=100, seed=3)
    dm.setup("fit")
    assert dm.image_shape == (2,) and dm.train_points.shape == (4000, 2)
    assert dm.train_points.dtype == torch.float32
    distance, nearest = torch.cdist(dm.train_points, dm.centers).min(dim=1)
    assert distance.max() < 6 * dm.std  # Gaussian noise of std `std` around a centre
    assert 0.5 * dm.std < distance.mean() < 2 * dm.std  # E|N(0, σ²I₂)| = σ·√(π/2) ≈ 1.25σ
    counts = torch.bincount(nearest, minlength=len(dm.centers)).float()
    assert counts.min() > 0.5 * counts.mean()  # modes equally likely
    again = ToyMixtureDataModule(mixture=mixture, num_train=4000, num_val=50, batch_size=100, seed=3)
    again.setup("fit")
    assert torch.equal(again.train_points, dm.train_points)
    other = ToyMixtureDataModule(mixture=mixture, num_train=4000, num_val=50, batch_size=100, seed=4)
    other.setup("fit")
    assert not torch.equal(other.train_points, dm.train_points)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (100, 2) and batch.dtype == torch.float32
    assert len(dm.val_dataloader()) == 1


def test_datamodule_rejects_bad_options():
    with pytest.raises(ValueError, match="data.mixture"):
        ToyMixtureDataModule(mixture="spiral")
    with pytest.raises(ValueError, match="data.batch_size"):
        ToyMixtureDataModule(batch_size=0)
    with pytest.raises(ValueError, match="data.batch_size=500 is larger than data.num_train=100"):
        ToyMixtureDataModule(batch_size=500, num_train=100)


# --- networks ------------------------------------------------------------------------------------------------


def test_toy_networks_shapes_and_linear_output():
    g = ToyGenerator(latent_dim=3, image_shape=(2,), hidden_dims=(16, 16))
    d = ToyDiscriminator(image_shape=(2,), hidden_dims=(16, 16))
    x = g(torch.randn(5, 3))
    assert x.shape == (5, 2) and d(x).shape == (5, 1)
    with torch.no_grad():
        g.net[-1].bias.fill_(7.0)
        g.net[-1].weight.zero_()
    assert torch.allclose(g(torch.randn(4, 3)), torch.full((4, 2), 7.0))  # no Tanh: unbounded data
    torch.manual_seed(0)
    g4, d4 = ToyGenerator(latent_dim=3, hidden_dims=(8,), scale=4.0), ToyDiscriminator(hidden_dims=(8,), scale=4.0)
    g1, d1 = ToyGenerator(latent_dim=3, hidden_dims=(8,)), ToyDiscriminator(hidden_dims=(8,))
    g1.load_state_dict(g4.state_dict()), d1.load_state_dict(d4.state_dict())
    z, x = torch.randn(6, 3), torch.randn(6, 2)
    assert torch.allclose(g4(z), 4 * g1(z)) and torch.allclose(d4(4 * x), d1(x))  # works at unit scale
    maxout = ToyDiscriminator(hidden_dims=(8,), maxout_pieces=5)
    assert maxout(torch.randn(3, 2)).shape == (3, 1)
    assert maxout.net[1].linear.out_features == 40
    with pytest.raises(ValueError, match="maxout_pieces"):
        ToyDiscriminator(maxout_pieces=0)


# --- metrics -------------------------------------------------------------------------------------------------

RING, RING_STD = mixture_centers("ring")


def test_all_samples_on_the_modes():
    samples = RING.repeat(10, 1)  # every mode 10 times
    result = mode_coverage(samples, RING, RING_STD)
    assert result["captured"] == 8 and result["high_quality"] == 1.0
    assert result["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert result["counts"].tolist() == [10] * 8


def test_half_the_modes():
    samples = RING[::2].repeat(5, 1) + 0.5 * RING_STD  # modes 0, 2, 4, 6, each 5 times, 0.71 std off
    result = mode_coverage(samples, RING, RING_STD)
    assert result["captured"] == 4 and result["high_quality"] == 1.0
    assert result["reverse_kl"] == pytest.approx(math.log(2))  # p = 1/4 on 4 of 8 modes: Σ ¼ log(¼·8)
    assert result["counts"].tolist() == [5, 0] * 4


def test_points_far_from_every_mode():
    samples = torch.tensor([[0.0, 0.0], [10.0, -3.0], [0.5, 0.5]])
    result = mode_coverage(samples, RING, RING_STD)
    assert result["captured"] == 0 and result["high_quality"] == 0.0
    assert math.isnan(result["reverse_kl"])


def test_threshold_is_three_standard_deviations_of_the_nearest_mode():
    inside = RING[1] + torch.tensor([0.0, 2.9 * RING_STD])
    outside = RING[1] + torch.tensor([3.1 * RING_STD, 0.0])
    result = mode_coverage(torch.stack([inside, outside]), RING, RING_STD)
    assert result["high_quality"] == 0.5 and result["counts"][1] == 1
    assert mode_coverage(outside[None], RING, RING_STD, threshold=3.2)["high_quality"] == 1.0


def test_reverse_kl_by_hand():
    # 3 high-quality samples on mode 0, 1 on mode 5, 4 far away: p = (3/4, 1/4) over K = 8 modes.
    samples = torch.cat([RING[[0, 0, 0, 5]], torch.full((4, 2), 3.0)])
    result = mode_coverage(samples, RING, RING_STD)
    by_hand = 0.75 * math.log(0.75 * 8) + 0.25 * math.log(0.25 * 8)
    assert result["reverse_kl"] == pytest.approx(by_hand)
    assert result["captured"] == 2 and result["high_quality"] == 0.5


def test_reverse_kl_matches_scipy_on_random_grid_samples():
    centers, std = mixture_centers("grid")
    gen = torch.Generator().manual_seed(0)
    modes = torch.randint(0, 12, (3000,), generator=gen)  # only 12 of 25 modes, unevenly by chance
    samples = centers[modes] + 2 * std * torch.randn(3000, 2, generator=gen)
    result = mode_coverage(samples, centers, std)
    distance = torch.cdist(samples.double(), centers.double())
    good = distance.min(dim=1).values < 3 * std
    p = torch.bincount(distance.argmin(dim=1)[good], minlength=25).double()
    assert result["reverse_kl"] == pytest.approx(entropy(p.numpy(), [1 / 25] * 25))
    assert result["high_quality"] == pytest.approx(good.double().mean().item())
    assert result["captured"] == 12


def test_mode_coverage_rejects_bad_input():
    with pytest.raises(ValueError, match="same D"):
        mode_coverage(torch.zeros(4, 3), RING, RING_STD)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(torch.zeros(4, 2), RING, 0.0)


def test_scatter_figure_draws_the_samples_and_each_modes_high_quality_disc():
    samples = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    figure = scatter_figure(samples, RING, RING_STD, title="ring")
    (axes,) = figure.axes
    assert axes.collections[0].get_offsets().tolist() == samples.tolist()
    circles = axes.patches
    assert len(circles) == 8 and all(c.get_radius() == pytest.approx(3 * RING_STD) for c in circles)
    assert sorted(tuple(round(v, 6) for v in c.center) for c in circles) == sorted(
        tuple(round(v, 6) for v in row) for row in RING.tolist()
    )
    assert axes.get_title() == "ring" and axes.get_xlim()[1] == pytest.approx(1.25 + 0.1)


def test_mode_coverage_callback_rejects_bad_options():
    with pytest.raises(ValueError, match="num_samples"):
        ModeCoverage(num_samples=0)


# --- end to end through cli.py -------------------------------------------------------------------------------


def test_ring8_config_logs_the_three_metrics_and_a_picture(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cmd = [sys.executable, "cli.py", "fit", "--config", "configs/ring8.yaml", "--trainer.max_steps", "20"]
    cmd += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "ring8").glob("version_*")
    events = EventAccumulator(str(run))
    events.Reload()
    for tag in ("modes/captured", "modes/high_quality", "modes/reverse_kl"):
        assert tag in events.Tags()["scalars"], events.Tags()["scalars"]
    captured = events.Scalars("modes/captured")[-1].value
    assert 0 <= captured <= 8 and captured == int(captured)
    assert 0 <= events.Scalars("modes/high_quality")[-1].value <= 1
    assert "modes/samples" in events.Tags()["images"]
    assert (run / "modes" / "samples.png").stat().st_size > 1000
