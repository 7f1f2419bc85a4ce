#!/usr/bin/env bash
# Everything a CPU cannot show, in one run on one GPU of about GPU_BUDGET_S seconds (default 480):
#   bash benchmarks/gpu.sh [OUT_DIR] [MNIST_DIR]   (OUT_DIR default: $OUT, else benchmarks/results; MNIST_DIR: data)
# 1. speed (benchmarks/speed.py): Just4GAN's MLP GAN (configs/cifar.yaml, batch 64, k = 1) on a fake
#    CIFAR-10-shaped folder, the project (default, on_device, on_device + no per-step logging, + compile) against
#    the plain loop and the torchvision-DataLoader loop, with peak GPU memory; alone on the GPU;
# 2. the 16-bit paths (benchmarks/precision.py): 400 steps of configs/cifar.yaml and configs/cifar_conv.yaml at
#    32-true, 16-mixed (cifar.yaml also with grad_clip_norm) and bf16-mixed, beside 3.;
# 3. configs/mnist.yaml (the paper's MNIST recipe, G's rate doubled) for as many epochs as the budget leaves (--trainer.max_time;
#    the config's own length is 300 epochs), then `test` of its best (else last) checkpoint: Table 1's Parzen
#    figure on the test images.
# Writes machine.txt, speed_cuda.json, speed_ways.log, precision.json, precision_samples.png, mnist_fit.log,
# mnist_test.log and mnist_logs.tar.gz (the MNIST run's TensorBoard events, no checkpoints) to OUT_DIR: 8 files.
# On the lent GPU machines, `python` must be the one on PATH (/opt/torch/.venv/bin/python, a venv: a symlink to it
# loses its packages) and jsonargparse travels as wheels: docs/performance.md, "GPU", has the exact call.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-benchmarks/results}}"
mnist="${2:-data}"
budget="${GPU_BUDGET_S:-480}"
work="$(mktemp -d)"  # logs and checkpoints, outside OUT_DIR
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
  lscpu | grep -m1 'Model name' || true
  nproc
} | tee "$out/machine.txt"

# 1. GANAdam is fused by default. 50 warm-up steps (CUDA start-up, compilation), then 3 windows of 100 steps.
FAST="--data.on_device true --model.log_every_step false"
# Each way's figures go to speed_ways.log as soon as it is measured (the JSON summary only at the end).
timeout $((budget / 2)) python benchmarks/speed.py --device "${GPU_SH_DEVICE:-cuda}" --steps 100 --repeats 3 --warmup 50 \
  --c-workers 4 --variant "--data.on_device true" --variant "$FAST" --variant "$FAST --model.compile true" \
  2>"$out/speed_ways.log" | tee "$out/speed_cuda.json"
grep '^{"way"' "$out/speed_ways.log"

# 3. in the background: the rest of the budget, less a minute for `test` and packing.
left=$((budget - SECONDS - 60))
max_time="$(printf '00:00:%02d:%02d' $((left / 60)) $((left % 60)))"  # DD:HH:MM:SS, each two digits
echo "mnist: --trainer.max_time $max_time"
python cli.py fit --config configs/mnist.yaml --data.data_dir "$mnist" $FAST --trainer.enable_progress_bar false \
  --trainer.max_time "$max_time" --trainer.logger.init_args.save_dir "$work/logs" >"$out/mnist_fit.log" 2>&1 &
mnist_pid=$!

# 2. beside it.
timeout $((left - 10)) python benchmarks/precision.py --mnist_dir "$mnist" --steps "${PRECISION_STEPS:-400}" --out "$work/precision" \
  | tee "$out/precision.json"
cp "$work/precision/precision_samples.png" "$out/" 2>/dev/null

wait $mnist_pid
echo "mnist fit exit $?"; tail -n 5 "$out/mnist_fit.log"
ckpts="$work/logs/mnist/version_0/checkpoints"
ckpt="$(ls -t "$ckpts"/best-*.ckpt 2>/dev/null | head -n 1)"
ckpt="${ckpt:-$ckpts/last.ckpt}"
echo "mnist test: $ckpt"
timeout 60 python cli.py test --config configs/mnist.yaml --data.data_dir "$mnist" --data.on_device true \
  --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir "$work/logs" --ckpt_path "$ckpt" \
  2>&1 | tee "$out/mnist_test.log"
tar czf "$out/mnist_logs.tar.gz" --exclude='*.ckpt' -C "$work/logs" mnist
rm -rf "$work"
echo "gpu.sh done in ${SECONDS} s"
