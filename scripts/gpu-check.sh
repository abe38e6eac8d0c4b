#!/usr/bin/env bash
# The GPU check, in one run: correctness and speed of the CUDA build on the machine it runs on,
# beside the official PyTorch network timed in the same run. Nothing is built here: the binary
# comes prebuilt (`cargo build --release -p dipbench --features cuda`). About 8 minutes on an H200 (run from the repository root).
#
#   scripts/gpu-check.sh BIN GOLDEN GUIDED_DIFFUSION OUT
#
#   BIN               the dipbench binary built with --features cuda
#   GOLDEN            the golden-fixture folder (unet_tiny.pt, unet_*_io.safetensors, ...)
#   GUIDED_DIFFUSION  a checkout of openai/guided-diffusion, for the PyTorch reference
#                     (skipped when `python3 -c "import torch"` fails)
#   OUT               where the results go (default $OUT, else gpu-check-out)
#
# Writes OUT/summary.json (every figure below) and the raw reports beside it:
#   verify_{f32,bf16,f16}.txt    `model verify` on CUDA (f32 at the TF32 bound 5e-3; half
#                                precision by a short sampler run's PSNR vs float32)
#   unet_b{1,8}_{f32,bf16}.json  `bench unet`: forward and DPS step, FFHQ, with PyTorch (f32)
#   unet_b8_f16.json             the same in f16 beside guided-diffusion's fp16 mode
#   sampler_b{1,8}.json          `bench sampler`: DPS step, DAPS level (5 ODE forwards + Langevin)
#   ldm_unet_b1_f32.json         `bench unet --config ffhq256-ldm` with PyTorch's LDM UNet
#   ldm_sampler_b{1,4}.json      `bench sampler --config ffhq256-ldm`: LatentDAPS level
#   smoke-latent/, smoke_latent_check.log   the latent smoke experiment on CUDA vs its baseline
#   kernels/                     the autotune results and compiled kernels of this run: carry
#                                them to the next run (DIPBENCH_KERNEL_CACHE) to skip tuning
#   nvidia-smi.txt, env.txt      the card, driver and settings
set -uo pipefail

BIN=${1:?usage: gpu-check.sh BIN GOLDEN GUIDED_DIFFUSION [OUT]}
GOLDEN=${2:?golden folder}
GD=${3:?guided-diffusion checkout}
OUT=${4:-${OUT:-gpu-check-out}}
mkdir -p "$OUT"
export DIPBENCH_KERNEL_CACHE="${DIPBENCH_KERNEL_CACHE:-$OUT/kernels}"
mkdir -p "$DIPBENCH_KERNEL_CACHE"

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
{ echo "binary: $BIN"; "$BIN" --version; echo "kernel cache: $DIPBENCH_KERNEL_CACHE"; date -u; } > "$OUT/env.txt" 2>&1

torch=()
if python3 -c "import torch; assert torch.cuda.is_available()" 2> /dev/null; then
    torch=(--torch python3 --guided-diffusion "$GD")
fi

run() { # name, timeout, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 20 "$OUT/$name.log"
    echo "$name $rc" >> "$OUT/status.txt"
}

: > "$OUT/status.txt"
for p in f32 bf16 f16; do
    run "verify_$p" 120 "$BIN" model verify --golden "$GOLDEN" --device cuda --precision "$p"
    cp "$OUT/verify_$p.log" "$OUT/verify_$p.txt"
done
for b in 1 8; do
    run "unet_b${b}_f32" 180 "$BIN" bench unet --device cuda --batch "$b" --warmup 2 --repeats 10 "${torch[@]}" --json "$OUT/unet_b${b}_f32.json"
    run "unet_b${b}_bf16" 120 "$BIN" bench unet --device cuda --batch "$b" --precision bf16 --warmup 2 --repeats 10 --json "$OUT/unet_b${b}_bf16.json"
done
run unet_b8_f16 150 "$BIN" bench unet --device cuda --batch 8 --precision f16 --warmup 2 --repeats 10 "${torch[@]}" --json "$OUT/unet_b8_f16.json"
for b in 1 8; do
    run "sampler_b$b" 150 "$BIN" bench sampler --device cuda --batch "$b" --warmup 2 --repeats 5 --json "$OUT/sampler_b$b.json"
done
# The latent prior: the LDM UNet beside PyTorch's, a LatentDAPS level (ODE + HMC through the
# decoder) beside the pixel UNet, and the latent smoke experiment on CUDA against its CPU
# baseline (the check's tolerances; TF32 may move the untrained tiny model's numbers).
run ldm_unet_b1_f32 180 "$BIN" bench unet --config ffhq256-ldm --device cuda --batch 1 --warmup 2 --repeats 10 "${torch[@]}" --json "$OUT/ldm_unet_b1_f32.json"
for b in 1 4; do
    run "ldm_sampler_b$b" 180 "$BIN" bench sampler --config ffhq256-ldm --device cuda --batch "$b" --warmup 1 --repeats 3 --json "$OUT/ldm_sampler_b$b.json"
done
run smoke_latent 240 "$BIN" run experiments/smoke-latent.toml --device cuda --out "$OUT/smoke-latent" --no-progress
run smoke_latent_check 30 "$BIN" check "$OUT/smoke-latent" --against results/baselines/smoke-latent --rel 0.05 --tol 1e-3

python3 - "$OUT" << 'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
summary = {"status": dict(l.split() for l in (out / "status.txt").read_text().splitlines() if l.strip())}
for f in sorted(out.glob("*.json")):
    if f.name != "summary.json":
        summary[f.stem] = json.loads(f.read_text())
for f in sorted(out.glob("verify_*.txt")):
    summary[f.stem] = f.read_text().splitlines()
(out / "summary.json").write_text(json.dumps(summary, indent=1))
PY
echo "results in $OUT (summary.json); kernel cache in $DIPBENCH_KERNEL_CACHE"
