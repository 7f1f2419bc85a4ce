"""Each update order computes exactly the gradients it claims, recomputed by hand with torch.autograd.grad.

Real runs through ``cli.py`` on tiny networks (one process and two-process DDP on the CPU, 32-bit and bf16
autocast) record, per optimizer step, the weights just before it, the gradients it applies, the real batch and
every z (``tests.probes.GradientProbe``). The test rebuilds the networks from those weights and takes the
gradient of the loss the order claims:

- ``alternating`` (Algorithm 1): D's gradient of d_loss at (θd, θg); then G's gradient of G's loss against the
  D *after* its update.
- ``simultaneous`` (the authors' code): both at the same point: G's gradient against the D *before* its update.

``g_samples`` ``fresh`` draws a second z for G; ``shared`` reuses D's. Under DDP the expected gradient is the
mean of the ranks' hand-computed gradients.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from gan_module import d_loss, g_loss_non_saturating
from networks import MLPDiscriminator, SigmoidMLPGenerator
from tests.subprocesses import run_cli

LATENT, HIDDEN, STEPS = 4, 16, 3
CONFIG = f"""
seed_everything: 5
trainer:
  accelerator: cpu
  max_steps: {2 * STEPS}
  limit_val_batches: 0
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
model:
  generator:
    class_path: networks.SigmoidMLPGenerator
    init_args: {{hidden_dims: [{HIDDEN}]}}
  discriminator:
    class_path: networks.MLPDiscriminator
    init_args: {{hidden_dims: [{HIDDEN}]}}
  latent_dim: {LATENT}
  g_optimizer:
    class_path: torch.optim.SGD
    init_args: {{lr: 0.5}}
  d_optimizer:
    class_path: torch.optim.SGD
    init_args: {{lr: 0.5}}
data:
  class_path: datamodule.MNISTDataModule
  init_args: {{batch_size: 8, val_size: 16}}
"""


def record(mnist_dir: Path, out: Path, update: str, g_samples: str, devices: int, precision: str) -> list[dict]:
    config = out / "tiny.yaml"
    out.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    args = ["--config", str(config), "--data.data_dir", str(mnist_dir), "--trainer.default_root_dir", str(out)]
    args += ["--model.update", update, "--model.g_samples", g_samples, "--trainer.devices", str(devices)]
    args += ["--trainer.precision", precision, "--trainer.callbacks+=tests.probes.GradientProbe"]
    args += ["--trainer.callbacks.out_dir", str(out / "probe")]
    proc = run_cli("fit", *args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out / "probe" / f"rank{r}.pt")["steps"] for r in range(devices)]


def networks(state: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    G = SigmoidMLPGenerator(LATENT, (1, 28, 28), hidden_dims=(HIDDEN,))
    D = MLPDiscriminator((1, 28, 28), hidden_dims=(HIDDEN,))
    G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
    return G, D


def by_hand(loss_of: str, g_state: dict, d_state: dict, x: torch.Tensor | None, z: torch.Tensor, bf16: bool):
    """∇θd d_loss(D(x), D(G(z))) or ∇θg g_loss(D(G(z))), at G's weights g_state and D's weights d_state."""
    G, D = networks({"G": g_state["G"], "D": d_state["D"]})
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        if loss_of == "D":
            return torch.autograd.grad(d_loss(D(x), D(G(z).detach())), list(D.parameters()))
        return torch.autograd.grad(g_loss_non_saturating(D(G(z))), list(G.parameters()))


def mean_over_ranks(grads: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
    return [torch.stack(per_rank).mean(0) for per_rank in zip(*grads, strict=True)]


def assert_same(got: list[torch.Tensor], expected: list[torch.Tensor], bf16: bool) -> None:
    tol = {"rtol": 1e-2, "atol": 1e-4} if bf16 else {"rtol": 1e-5, "atol": 1e-7}
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **tol)


def far_apart(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    """Whether two gradients differ by far more than the tolerance of ``assert_same``."""
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b, strict=True)) > 0.05


def real(step: dict) -> torch.Tensor:
    """The step's real batch as the model saw it (GAN.to_model_range for G's range [0, 1])."""
    return step["batch"].float().mul_(1 / 255.0).add_(0.0)


def g_grads(steps: list[dict], d_state: int, bf16: bool) -> list[torch.Tensor]:
    """G's gradient at G's weights of its own update, against D's weights at update ``d_state`` (0: D's, 1: G's)."""
    return mean_over_ranks(
        [by_hand("G", s["updates"][1]["state"], s["updates"][d_state]["state"], None, s["z"][-1], bf16) for s in steps]
    )


CASES = [
    ("alternating", "fresh", 1, "32-true"),
    ("alternating", "shared", 1, "32-true"),
    ("simultaneous", "shared", 1, "32-true"),
    ("simultaneous", "fresh", 1, "32-true"),
    ("alternating", "fresh", 2, "32-true"),
    ("simultaneous", "shared", 2, "32-true"),
    ("alternating", "fresh", 1, "bf16-mixed"),
    ("simultaneous", "shared", 1, "bf16-mixed"),
    ("alternating", "fresh", 2, "bf16-mixed"),
    ("simultaneous", "shared", 2, "bf16-mixed"),
]


@pytest.mark.parametrize(("update", "g_samples", "devices", "precision"), CASES)
def test_each_update_order_applies_the_gradients_it_claims(mnist_dir, tmp_path, update, g_samples, devices, precision):
    ranks = record(mnist_dir, tmp_path, update, g_samples, devices, precision)
    bf16 = precision == "bf16-mixed"
    assert all(len(steps) == STEPS for steps in ranks)
    for t in range(STEPS):
        steps = [rank[t] for rank in ranks]
        for step in steps:
            assert [u["network"] for u in step["updates"]] == ["D", "G"]  # k = 1: one D update, then one G update
            assert len(step["z"]) == (2 if g_samples == "fresh" else 1)
            before_d, before_g = step["updates"][0]["state"], step["updates"][1]["state"]
            # G has not moved between the two gradients; D has (its step comes first in both orders).
            assert all(torch.equal(a, b) for a, b in zip(before_d["G"].values(), before_g["G"].values(), strict=True))
            assert not torch.equal(before_d["D"]["net.1.weight"], before_g["D"]["net.1.weight"])
        # D's gradient, both orders: d_loss at the weights before D's step, on this rank's x and first z.
        expected_d = mean_over_ranks(
            [by_hand("D", s["updates"][0]["state"], s["updates"][0]["state"], real(s), s["z"][0], bf16) for s in steps]
        )
        for step in steps:
            assert_same(step["updates"][0]["grads"], expected_d, bf16)

        # G's gradient: against the D after its update (alternating) or before it (simultaneous).
        after, before = (g_grads(steps, d_state, bf16) for d_state in (1, 0))
        claimed, other = (after, before) if update == "alternating" else (before, after)
        for step in steps:
            assert_same(step["updates"][1]["grads"], claimed, bf16)
        assert far_apart(claimed, other)  # the two orders are told apart by this test
    if devices == 2:  # ranks draw different z and see different real batches
        assert not torch.equal(ranks[0][0]["z"][0], ranks[1][0]["z"][0])
        assert not torch.equal(ranks[0][0]["batch"], ranks[1][0]["batch"])
