import math
from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from gan_module import GAN, GANAdam, d_loss, g_loss_minimax, g_loss_non_saturating
from networks import MLPDiscriminator, MLPGenerator

SHAPE = (1, 4, 4)


# --- losses -------------------------------------------------------------------------------------------------


def test_losses_equal_hand_computed_binary_cross_entropy():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    # D ascends log D(x) + log(1 − D(G(z))): its loss is the negation, averaged over the minibatch.
    expected_d = -(math.log(sig(2.0)) + math.log(sig(-1.0))) / 2 - (math.log(1 - sig(0.5)) + math.log(1 - sig(-3))) / 2
    expected_minimax = (math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2
    expected_ns = -(math.log(sig(0.5)) + math.log(sig(-3.0))) / 2
    assert d_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    assert g_loss_minimax(fake).item() == pytest.approx(expected_minimax, rel=1e-6)
    assert g_loss_non_saturating(fake).item() == pytest.approx(expected_ns, rel=1e-6)


@pytest.mark.parametrize("loss", [g_loss_minimax, g_loss_non_saturating])
def test_generator_losses_push_d_of_g_of_z_up(loss):
    # Descending either G loss must raise D(G(z)): the gradient w.r.t. the logit is negative.
    logits = torch.tensor([[-4.0], [0.0], [3.0]], requires_grad=True)
    loss(logits).backward()
    assert (logits.grad < 0).all()


def test_minimax_saturates_where_non_saturating_does_not():
    # Sec. 3 of the paper: early on D rejects samples confidently and log(1 − D(G(z))) saturates.
    grads = {}
    for name, loss in (("minimax", g_loss_minimax), ("ns", g_loss_non_saturating)):
        logit = torch.tensor([[-10.0]], requires_grad=True)
        loss(logit).backward()
        grads[name] = logit.grad.abs().item()
    assert grads["minimax"] < 1e-3 < 0.99 < grads["ns"]


# --- Algorithm 1 --------------------------------------------------------------------------------------------


class Recording(GAN):
    """Records, for every optimizer step, which network stepped and whether the other one held gradients."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[tuple[str, bool]] = []
        self.z_drawn: list[torch.Tensor] = []
        self.real_seen: list[torch.Tensor] = []

    def _take_step(self, opt):
        name = "D" if opt.param_groups[0]["params"][0] is next(self.D.parameters()) else "G"
        other = self.G if name == "D" else self.D
        super()._take_step(opt)
        # Gradients of the other network at the moment of this update (must be none: toggling).
        self.events.append((name, any(p.grad is not None for p in other.parameters())))

    def sample_z(self, n, generator=None):
        z = super().sample_z(n, generator)
        self.z_drawn.append(z.clone())
        return z

    def training_step(self, batch, batch_idx):
        self.real_seen.append(batch.clone())
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("k", [1, 3])
def test_k_discriminator_updates_per_generator_update(k, cpu_trainer, image_loader, tiny_gan):
    model = tiny_gan(cls=Recording, k=k)
    n = 6
    cpu_trainer(max_epochs=1, limit_train_batches=n).fit(model, image_loader())
    names = [e[0] for e in model.events]
    assert names.count("D") == n and names.count("G") == n // k
    # The order of Algorithm 1: k D updates, then one G update.
    assert names == (["D"] * k + ["G"]) * (n // k)
    # Lightning's global_step counts every optimizer step.
    assert model.global_step == n + n // k
    assert model.d_updates == n
    # Toggling: no update ever ran while the other network held gradients.
    assert not any(held for _, held in model.events)
    # Adam's own step counters agree.
    opt_d, opt_g = model.optimizers()
    d_steps = {int(s["step"]) for s in opt_d.optimizer.state.values()}
    g_steps = {int(s["step"]) for s in opt_g.optimizer.state.values()}
    assert d_steps == {n} and g_steps == {n // k}


def test_every_update_draws_fresh_noise_and_every_d_update_its_own_batch(cpu_trainer, image_loader, tiny_gan):
    model = tiny_gan(cls=Recording, k=2)
    cpu_trainer(max_epochs=1, limit_train_batches=4).fit(model, image_loader())
    # 4 D updates (4 noise draws) and 2 G updates (2 draws): 6 distinct z batches.
    assert len(model.z_drawn) == 6
    flat = torch.stack([z.flatten() for z in model.z_drawn])
    assert torch.cdist(flat, flat).add(torch.eye(6) * 1e9).min() > 1.0
    batches = torch.stack([b.flatten().float() for b in model.real_seen])
    assert len(batches) == 4 and torch.cdist(batches, batches).add(torch.eye(4) * 1e9).min() > 0


def test_noise_stream_depends_on_seed_rank_and_step_only(tiny_gan):
    a, b = tiny_gan(noise_seed=7), tiny_gan(noise_seed=7)
    a.setup("fit"), b.setup("fit")
    za = a.sample_z(4, a._noise_generator(a.d_updates))
    zb = b.sample_z(4, b._noise_generator(b.d_updates))
    assert torch.equal(za, zb)  # same seed, rank and step: a resumed run continues the same stream
    b.d_updates = 1
    assert not torch.equal(za, b.sample_z(4, b._noise_generator(b.d_updates)))


def test_fixed_noise_is_saved_in_the_checkpoint(tiny_gan):
    a = tiny_gan(noise_seed=3)
    assert "fixed_z" in a.state_dict() and a.fixed_z.shape == (64, 8)
    b = tiny_gan(noise_seed=4)
    assert not torch.equal(a.fixed_z, b.fixed_z)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.fixed_z, b.fixed_z)


def test_uniform_prior_and_scaling_round_trip(tiny_gan):
    model = tiny_gan(prior="uniform")
    z = model.sample_z(1000)
    assert z.min() >= -1 and z.max() <= 1 and z.abs().mean() > 0.4
    x = torch.arange(256, dtype=torch.uint8).view(16, 1, 4, 4)
    scaled = model.to_model_range(x)
    assert scaled.min() == -1 and scaled.max() == 1
    assert torch.equal(model.to_uint8(scaled), x)


class CachedAutocast(MixedPrecision):
    """bf16 autocast with the weight cache ON (Lightning <= 2.5 and its main branch turn it on)."""

    def autocast_context_manager(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=True)


class FreshnessCheckingD(nn.Module):
    """A linear D that compares its autocast output with a fresh bf16 computation from its current weights."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(math.prod(SHAPE), 1)
        self.max_error = 0.0

    def forward(self, x):
        x = x.flatten(1)
        out = self.lin(x)
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                ref = torch.nn.functional.linear(
                    x.bfloat16(), self.lin.weight.detach().bfloat16(), self.lin.bias.detach().bfloat16()
                )
            self.max_error = max(self.max_error, (out.float() - ref.float()).abs().max().item())
        return out


def test_bf16_autocast_never_uses_stale_weights(tiny_gan, cpu_trainer, image_loader):
    # Large SGD steps make a stale cast obvious; the check runs inside Lightning's one-autocast-per-step.
    d = FreshnessCheckingD()
    model = tiny_gan(
        discriminator=d,
        k=2,
        d_optimizer=partial(torch.optim.SGD, lr=5.0),
        g_optimizer=partial(torch.optim.SGD, lr=5.0),
    )
    cpu_trainer(max_epochs=1, limit_train_batches=6, plugins=[CachedAutocast("bf16-mixed", "cpu")]).fit(
        model, image_loader()
    )
    assert model.d_updates == 6
    assert d.max_error < 0.05


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "model.k must be an integer >= 1"),
        ({"latent_dim": 0}, "model.latent_dim must be an integer >= 1"),
        ({"loss": "wasserstein"}, "model.loss must be one of"),
        ({"g_optimizer": partial(GANAdam, lr=0.0)}, "model.g_optimizer: the learning rate must be a number > 0"),
        ({"d_optimizer": partial(GANAdam, lr=-1.0)}, "model.d_optimizer"),
        ({"grad_clip_norm": 0.0}, "model.grad_clip_norm"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message, tiny_gan):
    with pytest.raises(ValueError, match=message):
        tiny_gan(**kwargs)


def test_generator_that_does_not_fit_the_data_is_refused(tiny_gan):
    g = MLPGenerator(8, (3, 32, 32), hidden_dims=(16,))
    with pytest.raises(ValueError, match=r"makes images of shape \(3, 32, 32\).*shape \(1, 4, 4\)"):
        tiny_gan(generator=g)
    d = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(ValueError, match="one logit per image"):
        tiny_gan(discriminator=d)


class NaNAfter(MLPDiscriminator):
    def __init__(self, after: int):
        super().__init__(SHAPE, hidden_dims=(16,))
        self.calls, self.after = 0, after

    def forward(self, x):
        self.calls += self.training
        out = super().forward(x)
        return out * float("nan") if self.training and self.calls > self.after else out


def test_non_finite_loss_stops_before_the_step_and_names_it(tiny_gan, cpu_trainer, image_loader):
    # At k = 1, D runs 3× per training step (real and fake for D's update, fake for G's); global_step counts 2.
    model = tiny_gan(discriminator=NaNAfter(after=9))  # the 10th call: D's update in the 4th training step
    with pytest.raises(FloatingPointError, match=r"loss/d became nan .* at global step 6 \(epoch 0, after 3 D upd"):
        cpu_trainer(max_epochs=1, limit_train_batches=6).fit(model, image_loader())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update was never applied


class ClipRecording(GAN):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norms: list[float] = []

    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clip_norm_clips_each_update(clip, precision, cpu_trainer, image_loader, tiny_gan):
    # Mixed precision with GANAdam's default fused step: Lightning's own clip_gradients refuses that pair. 16-mixed
    # for real on a CPU: float16 autocast and a CPU GradScaler (Lightning makes a CUDA one only), whose scaled
    # gradients the fused step would unscale itself, after clipping.
    model = tiny_gan(cls=ClipRecording, grad_clip_norm=clip)
    assert model.configure_optimizers()[0].defaults["fused"]
    if precision == "16-mixed":
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        plugins = [MixedPrecision("16-mixed", "cpu", scaler)]
        trainer = cpu_trainer(max_epochs=1, limit_train_batches=3, log_every_n_steps=1, plugins=plugins)
    else:
        trainer = cpu_trainer(max_epochs=1, limit_train_batches=3, log_every_n_steps=1, precision=precision)
    trainer.fit(model, image_loader())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if precision == "16-mixed":  # the scaler's scale is logged beside the losses (amp/scale)
        assert trainer.callback_metrics["amp/scale"].item() == scaler.get_scale()
    else:
        assert "amp/scale" not in trainer.callback_metrics
    assert len(model.norms) == 6  # 3 D and 3 G updates, each seen just before its step
    if clip is None:
        assert max(model.norms) > 1e-2
    else:
        assert max(model.norms) <= clip * 1.001


# --- update orders (the gradients themselves: tests/test_update_order.py) ----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"update": "simultaneous", "k": 2}, "model.k must be 1 with model.update simultaneous"),
        ({"update": "interleaved"}, "model.update must be one of"),
        ({"g_samples": "reused"}, "model.g_samples must be one of"),
    ],
)
def test_bad_update_options_are_refused(kwargs, message, tiny_gan):
    with pytest.raises(ValueError, match=message):
        tiny_gan(**kwargs)


@pytest.mark.parametrize(
    ("update", "g_samples", "expected"),
    [("alternating", None, "fresh"), ("simultaneous", None, "shared"), ("simultaneous", "fresh", "fresh")],
)
def test_g_samples_follow_the_update_order_unless_given(update, g_samples, expected, tiny_gan):
    assert tiny_gan(update=update, g_samples=g_samples).g_samples == expected


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_one_training_step_is_one_update_of_each_network_in_both_orders(update, cpu_trainer, image_loader, tiny_gan):
    model = tiny_gan(cls=Recording, update=update)
    cpu_trainer(max_epochs=1, limit_train_batches=4).fit(model, image_loader())
    assert [e[0] for e in model.events] == ["D", "G"] * 4
    assert model.global_step == 8 and model.d_updates == 4
    # Simultaneous: D's step happens while G holds its gradient (taken at the same point); never the reverse.
    assert [held for name, held in model.events if name == "G"] == [False] * 4
    assert [held for name, held in model.events if name == "D"] == [update == "simultaneous"] * 4
    assert len(model.z_drawn) == (8 if update == "alternating" else 4)  # fresh z for G, or D's z reused


class WinningD(nn.Module):
    """A D that is certain every image is fake: D(G(z)) = sigmoid(−20) ≈ 2e-9."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(-20.0))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 1) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_a_run_where_d_has_won_says_so_once(tiny_gan, cpu_trainer, image_loader):
    model = tiny_gan(discriminator=WinningD(), d_optimizer=partial(torch.optim.SGD, lr=1e-9))
    with pytest.warns(UserWarning, match=r"D has won: in epoch 0 the mean D\(G\(z\)\) was 2\.1e-09") as caught:
        cpu_trainer(max_epochs=3, limit_train_batches=2).fit(model, image_loader())
    assert sum("D has won" in str(w.message) for w in caught) == 1  # once, not every epoch
    assert model.current_epoch == 3  # a warning only: without EarlyStopping the run goes on


def stop_after_3_dead_epochs():
    """The EarlyStopping of configs/mnist.yaml."""
    from lightning.pytorch.callbacks import EarlyStopping

    return EarlyStopping(
        monitor="d/won_epochs", mode="min", divergence_threshold=2.5, patience=10**6, check_on_train_epoch_end=True
    )


def test_early_stopping_on_d_won_epochs_ends_a_run_where_d_has_won_for_3_epochs(tiny_gan, cpu_trainer, image_loader):
    stop = stop_after_3_dead_epochs()
    model = tiny_gan(discriminator=WinningD(), d_optimizer=partial(torch.optim.SGD, lr=1e-9))
    with pytest.warns(UserWarning, match="D has won"):
        cpu_trainer(max_epochs=10, limit_train_batches=2, callbacks=[stop]).fit(model, image_loader())
    assert stop.stopped_epoch == 2 and model.current_epoch == 3 and model.d_won_epochs == 3
    # A healthy run (D(G(z)) near 0.5) is not stopped, and its count stays 0.
    stop = stop_after_3_dead_epochs()
    model = tiny_gan()
    cpu_trainer(max_epochs=4, limit_train_batches=2, callbacks=[stop]).fit(model, image_loader())
    assert stop.stopped_epoch == 0 and model.current_epoch == 4 and model.d_won_epochs == 0


class WinsOnlyInEpoch(WinningD):
    """A D that rejects every sample in one epoch only (as a run that dips and recovers)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs, self.epoch = epochs, 0

    def forward(self, x):
        return super().forward(x) + (0 if self.epoch in self.epochs else 20.0)


class EpochCounter(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        pl_module.D.epoch = trainer.current_epoch


def test_a_dip_shorter_than_3_epochs_warns_but_is_not_stopped(tiny_gan, cpu_trainer, image_loader):
    stop = stop_after_3_dead_epochs()
    model = tiny_gan(discriminator=WinsOnlyInEpoch({1, 2}), d_optimizer=partial(torch.optim.SGD, lr=1e-9))
    with pytest.warns(UserWarning, match="D has won: in epoch 1"):
        cpu_trainer(max_epochs=5, limit_train_batches=2, callbacks=[stop, EpochCounter()]).fit(model, image_loader())
    assert stop.stopped_epoch == 0 and model.current_epoch == 5 and model.d_won_epochs == 0


# --- 16-mixed with the simultaneous step: one loss scale for both gradients, one scale update per step -----------


class GradRecording(GAN):
    """Records each optimizer's gradients as the step sees them (after AMP's unscaling), and the GradScaler's scale."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grads: list[tuple[str, list[torch.Tensor]]] = []

    def on_before_optimizer_step(self, optimizer):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        network = "D" if params[0] is next(self.D.parameters()) else "G"
        self.grads.append((network, [p.grad.detach().float().clone() for p in params]))


def test_16_mixed_simultaneous_step_unscales_both_gradients_with_their_own_scale(cpu_trainer, image_loader, tiny_gan):
    # A GradScaler that doubles its scale after every good step: updated between D's and G's step (as after every
    # optimizer step), G's gradient, computed at the old scale, would be unscaled by the new one (0.5x).
    sgd = partial(torch.optim.SGD, lr=0.01)
    runs = {}
    for precision in ("32-true", "16-mixed"):
        model = tiny_gan(cls=GradRecording, update="simultaneous", g_optimizer=sgd, d_optimizer=sgd, seed=0)
        if precision == "16-mixed":
            scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
            plugins = [MixedPrecision("16-mixed", "cpu", scaler)]
            trainer = cpu_trainer(max_epochs=1, limit_train_batches=2, plugins=plugins)
        else:
            trainer = cpu_trainer(max_epochs=1, limit_train_batches=2)
        torch.manual_seed(1)
        trainer.fit(model, image_loader(shuffle=False))
        runs[precision] = model.grads
    first, half = runs["32-true"][:2], runs["16-mixed"][:2]  # the first step's D and G gradients
    for (net, fp32), (net16, fp16) in zip(first, half, strict=True):
        assert net == net16
        ratio = torch.cat([g.flatten() for g in fp16]).norm() / torch.cat([g.flatten() for g in fp32]).norm()
        assert ratio == pytest.approx(1.0, abs=0.02), f"{net}: the applied gradient is {ratio:.3f}x the fp32 one"
    assert scaler.get_scale() == 1024.0 * 2**2  # one update per training step: 2 steps, 2 doublings (not 4)


# --- G's output range: declared or read off its last layer, refused when it cannot be told -------------------------


def test_output_range_is_declared_or_read_off_the_last_layer(tiny_gan):
    from networks import output_range
    from tests.probes import LinearOutputGenerator

    assert tiny_gan(out="tanh").value_range == (-1.0, 1.0) and tiny_gan(out="sigmoid").value_range == (0.0, 1.0)
    assert output_range(nn.Sequential(nn.Linear(8, 16), nn.Sigmoid())) == (0.0, 1.0)  # a user's G: no attribute
    assert output_range(nn.Sequential(nn.Linear(8, 16), nn.Tanh())) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="cannot tell the range of LinearOutputGenerator's output.*value_range"):
        tiny_gan(generator=LinearOutputGenerator(8, (1, 4, 4)))
    bad = LinearOutputGenerator(8, (1, 4, 4))
    bad.value_range = (1.0, -1.0)
    with pytest.raises(ValueError, match="value_range must be two numbers lo < hi"):
        tiny_gan(generator=bad)


def test_data_follow_a_sigmoid_generator_without_value_range(tiny_gan):
    class SigmoidG(nn.Module):  # a user's network: no value_range attribute, a Sigmoid at the end
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Sigmoid())

        def forward(self, z):
            return self.net(z).view(-1, 1, 4, 4)

    model = tiny_gan(generator=SigmoidG())
    images = torch.tensor([[0, 255]], dtype=torch.uint8)
    assert model.to_model_range(images).tolist() == [[0.0, 1.0]]  # [0, 1], not [-1, 1]


# --- the authors' simultaneous step: one pass of D over the samples, their noise -----------------------------------


class FakeLogitsRecording(GAN):
    """Records D's output on the samples in D's objective and in G's (the simultaneous step calls D on them twice)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fake_logits: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []

    def setup(self, stage):
        super().setup(stage)
        d = self.D

        def record(module, args, output):
            if module.training and args[0].shape[0] > 0:
                self.inputs.append(args[0].detach().clone())
                self.fake_logits.append(output.detach().clone())

        d.register_forward_hook(record)


@pytest.mark.parametrize("fake_pass", ["shared", "fresh"])
def test_fake_pass_shared_gives_g_the_logits_of_ds_own_pass(fake_pass, cpu_trainer, image_loader, tiny_gan):
    from networks import MaxoutDiscriminator

    d = MaxoutDiscriminator((1, 4, 4), hidden_dims=(10, 10), pieces=(2, 2))  # with dropout: masks decide the logits
    model = tiny_gan(cls=FakeLogitsRecording, discriminator=d, update="simultaneous", fake_pass=fake_pass, seed=0)
    cpu_trainer(max_epochs=1, limit_train_batches=2).fit(model, image_loader(shuffle=False))
    # D is called on the real batch, the samples for D, the samples for G: per step calls 1 and 2 are on the samples.
    for step in range(2):
        _, for_d, for_g = model.fake_logits[3 * step : 3 * step + 3]
        assert torch.equal(model.inputs[3 * step + 1], model.inputs[3 * step + 2])  # the same samples (shared z)
        assert torch.equal(for_d, for_g) == (fake_pass == "shared")


def test_fake_pass_shared_needs_the_simultaneous_step(tiny_gan):
    assert tiny_gan(update="simultaneous").fake_pass == "shared" and tiny_gan().fake_pass == "fresh"
    with pytest.raises(ValueError, match="model.fake_pass shared .* needs model.update simultaneous"):
        tiny_gan(fake_pass="shared")
    with pytest.raises(ValueError, match="and model.g_samples shared"):
        tiny_gan(update="simultaneous", g_samples="fresh", fake_pass="shared")


def test_uniform_unit_variance_prior_is_the_authors_noise(tiny_gan):
    z = tiny_gan(prior="uniform_unit_variance", latent_dim=100).sample_z(20000, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 3**0.5 and z.abs().max() > 1.7  # U(−√3, √3)
    assert z.var().item() == pytest.approx(1.0, abs=0.01) and z.mean().item() == pytest.approx(0.0, abs=0.01)


# --- PacGAN's packing (--model.pack) ---------------------------------------------------------------------------


def test_pack_samples_puts_consecutive_samples_side_by_side():
    from networks import pack_samples

    points = torch.arange(12.0).reshape(6, 2)  # six 2-D points
    assert torch.equal(pack_samples(points, 3), torch.tensor([[0.0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]))
    images = torch.randn(4, 3, 2, 2)
    packed = pack_samples(images, 2)
    assert packed.shape == (2, 6, 2, 2)
    assert torch.equal(packed[1, :3], images[2]) and torch.equal(packed[1, 3:], images[3])  # channels: image by image
    assert torch.equal(pack_samples(images, 1), images)
    with pytest.raises(ValueError, match="model.pack=2 packs 2 samples into each input of D, but a minibatch has 5"):
        pack_samples(torch.zeros(5, 2), 2)


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_packed_d_judges_each_pack_once_with_one_label(update, cpu_trainer, image_loader, tiny_gan):
    d = MLPDiscriminator((2, *SHAPE[1:]), hidden_dims=(16,))  # built for packs of 2 images of 1 channel
    model = tiny_gan(cls=FakeLogitsRecording, discriminator=d, update=update, pack=2, seed=0)
    cpu_trainer(max_epochs=1, limit_train_batches=2).fit(model, image_loader(batch_size=8, shuffle=False))
    assert len(model.inputs) == 6 and all(x.shape == (4, 2, 4, 4) for x in model.inputs)  # 8 images → 4 packs
    # D's loss is the paper's, over packs: a pack of real images labelled 1, a pack of samples 0.
    real = model.to_model_range(next(iter(image_loader(batch_size=8, shuffle=False))))
    assert torch.equal(model.inputs[0], real.reshape(4, 2, 4, 4))


def test_pack_needs_a_d_for_the_packed_shape(tiny_gan):
    with pytest.raises(ValueError, match=r"model.pack=2 D must be built for that shape"):
        tiny_gan(pack=2)  # D built for one image of 1 channel
    with pytest.raises(ValueError, match="model.pack must be an integer >= 1"):
        tiny_gan(pack=0)
