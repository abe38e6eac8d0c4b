#!/usr/bin/env python3
"""The PyTorch side of `dipbench bench unet --torch PYTHON` (and `bench sampler`): times the
official guided-diffusion `UNetModel` on the same machine, in the same run as dipbench's port.

dipbench writes this file to a temporary folder and runs it; it is not meant to be called by hand,
but it can be:

    python3 torch_unet_bench.py --guided-diffusion DIR --config '{"image_size": 256, ...}' \
        --threads 2 --batch 1 --warmup 1 --reps 5 [--fp16] [--device cpu|cuda] --json out.json

DIR is a checkout of openai/guided-diffusion (the folder holding the `guided_diffusion`
package). --config is dipbench's `UnetConfig` as JSON, so that both sides build the same
network. Timed, each as median and min over --reps runs after --warmup untimed runs:
  forward   m(x, t) under no_grad;
  dps_step  m(x, t), loss = ||eps - x||^2, gradient w.r.t. x only (weights frozen).
Attention's gradient checkpointing (hard-wired in guided-diffusion) is bypassed: dipbench
does not recompute either. Writes one JSON object.
"""
import argparse
import json
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--guided-diffusion", required=True)
ap.add_argument("--config", required=True)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--device", default="cpu")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--fp16", action="store_true")
ap.add_argument("--json", required=True)
args = ap.parse_args()

sys.path.insert(0, os.path.abspath(args.guided_diffusion))
import torch  # noqa: E402

if args.threads > 0:
    torch.set_num_threads(args.threads)
import guided_diffusion.nn as gd_nn  # noqa: E402
import guided_diffusion.unet as gd_unet  # noqa: E402


def no_checkpoint(func, inputs, params, flag):
    return func(*inputs)


gd_nn.checkpoint = no_checkpoint
gd_unet.checkpoint = no_checkpoint

c = json.loads(args.config)
size = c["image_size"]
model = gd_unet.UNetModel(
    image_size=size,
    in_channels=c["in_channels"],
    model_channels=c["model_channels"],
    out_channels=c["out_channels"],
    num_res_blocks=c["num_res_blocks"],
    attention_resolutions=tuple(c["attention_ds"]),
    dropout=0.0,
    channel_mult=tuple(c["channel_mult"]),
    num_classes=None,
    use_checkpoint=False,
    use_fp16=args.fp16,
    num_heads=c["num_heads"],
    num_head_channels=c["num_head_channels"] if c["num_head_channels"] > 0 else -1,
    num_heads_upsample=-1,
    use_scale_shift_norm=c["use_scale_shift_norm"],
    resblock_updown=c["resblock_updown"],
    use_new_attention_order=False,
)
if args.fp16:
    model.convert_to_fp16()
device = torch.device(args.device)
model = model.to(device).eval()
for p in model.parameters():
    p.requires_grad_(False)
gen = torch.Generator().manual_seed(0)
x = torch.randn(args.batch, c["in_channels"], size, size, generator=gen).to(device)
t = torch.full((args.batch,), 500, dtype=torch.long, device=device)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward():
    with torch.no_grad():
        model(x, t)


def dps_step():
    xi = x.detach().clone().requires_grad_(True)
    eps = model(xi, t)[:, : c["in_channels"]]
    loss = (eps.float() - x).pow(2).sum()
    torch.autograd.grad(loss, xi)


out = {
    "torch": torch.__version__,
    "device": args.device,
    "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
    "threads": torch.get_num_threads(),
    "batch": args.batch,
    "fp16": args.fp16,
    "params": sum(p.numel() for p in model.parameters()),
    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
}
for name, f in (("forward", forward), ("dps_step", dps_step)):
    for _ in range(args.warmup):
        f()
        sync()
    samples = []
    for _ in range(args.reps):
        sync()
        start = time.perf_counter()
        f()
        sync()
        samples.append(time.perf_counter() - start)
    out[name] = {"min": min(samples), "median": statistics.median(samples), "samples": samples}
with open(args.json, "w") as fh:
    json.dump(out, fh, indent=1)
print(json.dumps({k: out[k] for k in ("torch", "device_name", "threads", "batch")}))
