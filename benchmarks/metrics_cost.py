"""What the evaluation callbacks cost: prints one JSON line of figures.

    python benchmarks/metrics_cost.py [--device cpu|cuda] [--inception-images 64] [--weights PATH]

- Parzen window (metrics.ParzenWindow's protocol at MNIST size): 10,000 samples of 784 pixels, σ chosen
  over 10 candidates on 1,000 validation points, then the log-likelihood of 10,000 test points.
- Inception features (metrics.InceptionMetrics): one Inception-v3 pass over ``--inception-images`` 28×28
  images (repeated to 3 channels, resized to 299 inside), the figure per image, and the time for one
  evaluation of 10,000 samples against 10,000 real images *extrapolated* from it (features dominate: FID/IS/KID
  on the features take well under a second). Without ``--weights`` the network has random weights
  (they cannot be downloaded everywhere); the cost is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics import DEFAULT_SIGMAS, InceptionFeatures, parzen_log_likelihood, select_sigma  # noqa: E402


def random_inception() -> InceptionFeatures:
    """torchmetrics' Inception with random weights (nothing downloaded)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    cls = fidelity.FeatureExtractorInceptionV3
    with (
        mock.patch.object(fidelity, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(cls, "load_state_dict", lambda self, *a, **k: None),
    ):
        return InceptionFeatures()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--inception-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--weights", default=None, help="Inception weights file (default: random weights)")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
    }

    samples = torch.rand(args.samples, 784, generator=gen).to(device)
    val = torch.rand(1000, 784, generator=gen)
    test = torch.rand(args.test, 784, generator=gen)
    start = time.perf_counter()
    sigma, _ = select_sigma(samples, val, DEFAULT_SIGMAS, batch_size=args.batch_size)
    mid = time.perf_counter()
    parzen_log_likelihood(samples, test, sigma, batch_size=args.batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    out["parzen"] = {
        "samples": args.samples,
        "val": 1000,
        "test": args.test,
        "select_sigma_s": round(mid - start, 2),
        "test_ll_s": round(end - mid, 2),
    }

    extractor = (InceptionFeatures(args.weights) if args.weights else random_inception()).to(device)
    images = torch.randint(0, 256, (args.inception_images, 3, 28, 28), dtype=torch.uint8, generator=gen)
    with torch.no_grad():
        extractor(images[:2].to(device))  # warm-up
        start = time.perf_counter()
        for i in range(0, len(images), args.batch_size):
            extractor(images[i : i + args.batch_size].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    per_image = seconds / len(images)
    out["inception"] = {
        "images": len(images),
        "seconds": round(seconds, 2),
        "images_per_s": round(1 / per_image, 2),
        "extrapolated_10k_samples_s": round(10000 * per_image, 1),
        "extrapolated_10k_samples_plus_10k_real_once_s": round(20000 * per_image, 1),
        "weights": "file" if args.weights else "random",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
