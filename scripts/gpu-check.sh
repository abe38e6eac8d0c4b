#!/usr/bin/env bash
# The GPU check, in one run: correctness and speed of the CUDA build on the machine it runs on,
# beside the official PyTorch network timed in the same run. Nothing is built here: the binary
# comes prebuilt (`cargo build --release -p dipbench --features cuda`). Run from the repository
# root.
#
#   scripts/gpu-check.sh BIN GOLDEN GUIDED_DIFFUSION [OUT]
#
#   BIN               the dipbench binary built with --features cuda
#   GOLDEN            the golden-fixture folder (unet_tiny.pt, unet_tiny_io.safetensors,
#                     unet_ffhq_goldenfill_io.safetensors are the files read)
#   GUIDED_DIFFUSION  a checkout of openai/guided-diffusion, for the PyTorch reference
#                     (skipped when `python3 -c "import torch"` fails or sees no GPU)
#   OUT               where the results go (default $OUT, else gpu-check-out)
#
# Environment:
#   GPU_CHECK_BUDGET  seconds the whole check may take (default 480). The steps run in the
#                     order below, most important first; 10 s of it are kept for the last
#                     summary, a step is skipped when less than 30 s of the rest is left, and
#                     each step's own limit is cut to what is left.
#   GPU_CHECK_PACK    a .tar.gz path, rewritten after every step with everything in OUT except
#                     the compiled kernels (the autotune results, kernels/autotune, are in it:
#                     small, and what a card's first run spends its minutes on; for machines
#                     that hand back few files, the last complete step is in it even when the
#                     check is killed).
#   FUSION_BIN        a second binary built with --features cuda,fusion: the A/B of burn's
#                     kernel fusion (golden verify and the UNet forward / DPS step at batch 1 and 8).
#   DIPBENCH_KERNEL_CACHE  the autotune and compiled-kernel cache (default OUT/kernels): carry it
#                     to the next run of the same card to skip tuning. On a cold cache the first
#                     two steps are mostly tuning (an H200 spent over 300 s on the float32 shapes
#                     of the golden checks and the FFHQ UNet at batch 1), hence their longer
#                     limits; give a cold card a budget of 900 s or more.
#
# Writes OUT/summary.json (every figure below), OUT/status.txt (each step's exit code, or
# `skipped`) and the raw reports beside them:
#   verify_{f32,bf16,f16}.log    `model verify` on CUDA (f32 at the TF32 bound 5e-3; half
#                                precision by a short sampler run's PSNR vs float32)
#   unet_b{1,8}_{f32,bf16}.json  `bench unet`: forward and DPS step, FFHQ, with PyTorch (f32)
#   unet_b8_f16.json             the same in f16 beside guided-diffusion's fp16 mode
#   sampler_b{1,8}.json          `bench sampler`: DPS step, DAPS level (5 ODE forwards + Langevin)
#   ldm_unet_b1_f32.json         `bench unet --config ffhq256-ldm` with PyTorch's LDM UNet
#   ldm_sampler_b{1,4}.json      `bench sampler --config ffhq256-ldm`: LatentDAPS level
#   fusion_*                     the same with FUSION_BIN, when given
#   smoke-latent/, smoke_latent_check.log   the latent smoke experiment on CUDA vs its baseline
#   nvidia-smi.txt, env.txt      the card, driver and settings
set -uo pipefail

BIN=${1:?usage: gpu-check.sh BIN GOLDEN GUIDED_DIFFUSION [OUT]}
GOLDEN=${2:?golden folder}
GD=${3:?guided-diffusion checkout}
OUT=${4:-${OUT:-gpu-check-out}}
BUDGET=${GPU_CHECK_BUDGET:-480}
PACK=${GPU_CHECK_PACK:-}
FUSION=${FUSION_BIN:-}
mkdir -p "$OUT"
export DIPBENCH_KERNEL_CACHE="${DIPBENCH_KERNEL_CACHE:-$OUT/kernels}"
mkdir -p "$DIPBENCH_KERNEL_CACHE"
start=$SECONDS

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
{
    echo "binary: $BIN"
    "$BIN" --version
    [ -n "$FUSION" ] && { echo "fusion binary: $FUSION"; "$FUSION" --version; }
    echo "kernel cache: $DIPBENCH_KERNEL_CACHE"
    echo "budget: $BUDGET s"
    echo "CUDA libraries the loader sees:"
    ldconfig -p | grep -E 'libcuda\.so|libnvrtc\.so' || echo "  (none: set LD_LIBRARY_PATH to the folder of libnvrtc.so.13)"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
    date -u
} > "$OUT/env.txt" 2>&1

torch=()
if python3 -c "import torch; assert torch.cuda.is_available()" 2> /dev/null; then
    torch=(--torch python3 --guided-diffusion "$GD")
fi

summarize() {
    python3 - "$OUT" << 'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
status = {}
for line in (out / "status.txt").read_text().splitlines():
    parts = line.split()
    if len(parts) >= 2:
        status[parts[0]] = " ".join(parts[1:])
summary = {"status": status}
for f in sorted(out.glob("*.json")):
    if f.name != "summary.json":
        try:
            summary[f.stem] = json.loads(f.read_text())
        except ValueError as e:
            summary[f.stem] = f"unreadable: {e}"
for f in sorted(out.glob("*verify_*.log")):
    summary[f.stem] = f.read_text().splitlines()[-20:]
(out / "summary.json").write_text(json.dumps(summary, indent=1))
PY
    if [ -n "$PACK" ]; then
        tar -czf "$PACK.tmp" --exclude=./kernels/cuda --exclude="./$(basename "$PACK")" --exclude="./$(basename "$PACK").tmp" -C "$OUT" . && mv "$PACK.tmp" "$PACK"
    fi
}

run() { # name, limit in seconds, command...
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - start) - 10))
    if [ "$left" -lt 30 ]; then
        echo "== $name: skipped (${left} s left)"
        echo "$name skipped" >> "$OUT/status.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit} s, $((SECONDS - start)) s in)"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "$name $rc $((SECONDS - t0))s" >> "$OUT/status.txt"
    summarize
}

: > "$OUT/status.txt"
# Most important first: fidelity, then the speed targets at batch 1 and 8, then half precision,
# the fusion A/B and the latent prior.
run verify_f32 240 "$BIN" model verify --golden "$GOLDEN" --device cuda --precision f32
run unet_b1_f32 240 "$BIN" bench unet --device cuda --batch 1 --warmup 2 --repeats 10 ${torch[@]+"${torch[@]}"} --json "$OUT/unet_b1_f32.json"
run sampler_b1 120 "$BIN" bench sampler --device cuda --batch 1 --warmup 1 --repeats 5 --json "$OUT/sampler_b1.json"
run unet_b8_f32 150 "$BIN" bench unet --device cuda --batch 8 --warmup 2 --repeats 10 ${torch[@]+"${torch[@]}"} --json "$OUT/unet_b8_f32.json"
run sampler_b8 150 "$BIN" bench sampler --device cuda --batch 8 --warmup 1 --repeats 5 --json "$OUT/sampler_b8.json"
run unet_b8_bf16 120 "$BIN" bench unet --device cuda --batch 8 --precision bf16 --warmup 2 --repeats 10 --json "$OUT/unet_b8_bf16.json"
run verify_bf16 90 "$BIN" model verify --golden "$GOLDEN" --device cuda --precision bf16
if [ -n "$FUSION" ]; then
    run fusion_verify_f32 120 "$FUSION" model verify --golden "$GOLDEN" --device cuda --precision f32
    run fusion_unet_b1_f32 120 "$FUSION" bench unet --device cuda --batch 1 --warmup 2 --repeats 10 --json "$OUT/fusion_unet_b1_f32.json"
    run fusion_unet_b8_f32 120 "$FUSION" bench unet --device cuda --batch 8 --warmup 2 --repeats 10 --json "$OUT/fusion_unet_b8_f32.json"
fi
# The latent prior: the LDM UNet beside PyTorch's, a LatentDAPS level (ODE + HMC through the
# decoder) beside the pixel UNet, and the latent smoke experiment on CUDA against its CPU
# baseline (the check's tolerances; TF32 may move the untrained tiny model's numbers).
run ldm_unet_b1_f32 120 "$BIN" bench unet --config ffhq256-ldm --device cuda --batch 1 --warmup 2 --repeats 10 ${torch[@]+"${torch[@]}"} --json "$OUT/ldm_unet_b1_f32.json"
run ldm_sampler_b1 120 "$BIN" bench sampler --config ffhq256-ldm --device cuda --batch 1 --warmup 1 --repeats 3 --json "$OUT/ldm_sampler_b1.json"
run smoke_latent 150 "$BIN" run experiments/smoke-latent.toml --device cuda --out "$OUT/smoke-latent" --no-progress
run smoke_latent_check 30 "$BIN" check "$OUT/smoke-latent" --against results/baselines/smoke-latent --rel 0.05 --tol 1e-3
run unet_b1_bf16 90 "$BIN" bench unet --device cuda --batch 1 --precision bf16 --warmup 2 --repeats 10 --json "$OUT/unet_b1_bf16.json"
run unet_b8_f16 120 "$BIN" bench unet --device cuda --batch 8 --precision f16 --warmup 2 --repeats 10 ${torch[@]+"${torch[@]}"} --json "$OUT/unet_b8_f16.json"
run verify_f16 90 "$BIN" model verify --golden "$GOLDEN" --device cuda --precision f16
run ldm_sampler_b4 120 "$BIN" bench sampler --config ffhq256-ldm --device cuda --batch 4 --warmup 1 --repeats 3 --json "$OUT/ldm_sampler_b4.json"

summarize
echo "results in $OUT (summary.json), $((SECONDS - start)) s; kernel cache in $DIPBENCH_KERNEL_CACHE"
