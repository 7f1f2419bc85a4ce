#!/usr/bin/env bash
# GPU figures for the README's Performance section; about 5 minutes on one H100.
#   bash benchmarks/gpu.sh [OUT_DIR]        (default: $OUT, else benchmarks/results)
# Trains Just4GAN's MLP GAN (configs/cifar.yaml, batch 64, k = 1) on a fake CIFAR-10-shaped folder the three
# ways of benchmarks/speed.py, plus the project with the speed options, and writes one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$out"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
  lscpu | grep -m1 'Model name' || true
  nproc
} | tee "$out/machine.txt"
# GANAdam is fused by default; "fused false" gives torch's own choice (foreach on CUDA), for comparison.
UNFUSED="--model.d_optimizer gan_module.GANAdam --model.d_optimizer.fused false"
UNFUSED="$UNFUSED --model.g_optimizer gan_module.GANAdam --model.g_optimizer.fused false"
FAST="--data.on_device true --model.log_every_step false"
# 50 warm-up steps (CUDA start-up, compilation), then 5 windows of 100 steps: 550 steps, inside one epoch.
timeout 540 python benchmarks/speed.py --device cuda --steps 100 --repeats 5 --warmup 50 --c-workers 4 \
  --variant "--data.on_device true" \
  --variant "$FAST" \
  --variant "$FAST --trainer.enable_progress_bar false" \
  --variant "$FAST $UNFUSED" \
  --variant "$FAST --model.compile true" \
  | tee "$out/speed_cuda.json"
