#!/usr/bin/env python3
"""Side by side on this machine, in one run: ONNX Runtime and Vigil's CPU backend on the
CLIP ViT-B/32 image encoder (openai/clip-vit-base-patch32 geometry: width 768, 12 layers,
12 heads, MLP 3072, patch 32, 224 px, projection 512), both with random weights — speed
does not depend on the values.

ONNX Runtime runs transformers' CLIPVisionModelWithProjection exported by torch.onnx
(opset 17, dynamic batch; ORT_ENABLE_ALL graph optimisations, which fuse attention,
LayerNorm and GELU). Vigil runs `clip_bench` (examples/src/bin/clip_bench.rs). The two
are ALTERNATED round by round so that load from other processes on a shared machine hits
both alike; each measurement is the median call time over --seconds, and the table gives
the median over rounds with the min..max spread.

Measures
  1. batch-1 latency, 1 thread: ms per frame;
  2. throughput on 2 threads with a batch of --batch frames (frames from several streams
     encoded together): frames/s.

usage: python3 benches/clip_side_by_side.py [--rounds 3] [--seconds 4] [--batch 8]
needs: pip install torch transformers onnx onnxruntime onnxscript numpy
       cargo build --release -p vigil-examples --bin clip_bench
"""
import argparse, json, os, platform, statistics, subprocess, sys, time

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=4.0)
ap.add_argument("--batch", type=int, default=8, help="frames per call in the 2-thread run")
ap.add_argument("--threads", type=int, default=2, help="threads of the throughput run")
ap.add_argument("--onnx", default=os.path.join(root, "target/clip-bench/clip_vit_b32_vision.onnx"))
ap.add_argument("--bin", default=os.path.join(root, "target/release/clip_bench"))
a = ap.parse_args()


def export(path):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig()).eval()  # defaults = ViT-B/32
    x = torch.randn(1, 3, 224, 224)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                          opset_version=17, dynamo=False)


if not os.path.exists(a.onnx):
    export(a.onnx)

import onnxruntime as ort


def ort_session(threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])


def time_ort(threads, batch):
    s = ort_session(threads)
    x = np.random.default_rng(0).uniform(-2, 2, (batch, 3, 224, 224)).astype(np.float32)
    for _ in range(2):
        s.run(None, {"pixel_values": x})
    times, t_end, cpu0 = [], time.perf_counter() + a.seconds, time.process_time()
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        s.run(None, {"pixel_values": x})
        times.append((time.perf_counter() - t0) * 1e3)
    cpu = (time.process_time() - cpu0) * 1e3 / (len(times) * batch)
    return statistics.median(times), cpu


def time_vigil(threads, batch):
    out = subprocess.run([a.bin, "--threads", str(threads), "--batch", str(batch), "--seconds", str(a.seconds)],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["ms_per_batch_median"], r["cpu_ms_per_frame"]


runs = {k: [] for k in ("ort_1t", "vigil_1t", "ort_nt", "vigil_nt")}
cpu = {k: [] for k in runs}
for r in range(a.rounds):
    # alternate which engine goes first
    order = [("ort", time_ort), ("vigil", time_vigil)]
    if r % 2:
        order.reverse()
    for key, threads, batch in (("1t", 1, 1), ("nt", a.threads, a.batch)):
        for name, fn in order:
            wall, c = fn(threads, batch)
            runs[f"{name}_{key}"].append(wall)
            cpu[f"{name}_{key}"].append(c)
    print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in runs.items()), file=sys.stderr, flush=True)


def summary(key, per):
    v = [x / per for x in runs[key]]
    return statistics.median(v), min(v), max(v)


c1 = {k: statistics.median(v) for k, v in cpu.items()}
o1, v1 = summary("ort_1t", 1), summary("vigil_1t", 1)
on, vn = summary("ort_nt", a.batch), summary("vigil_nt", a.batch)
fps = lambda ms: 1e3 / ms
print(f"\nCLIP ViT-B/32 image encoder, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
      f"onnxruntime {ort.__version__}, {a.rounds} alternating rounds of {a.seconds:.0f} s")
print(f"| measure | ONNX Runtime | Vigil | Vigil / ORT |")
print(f"|---|---|---|---|")
print(f"| batch 1, 1 thread: ms/frame (median, min..max) | {o1[0]:.1f} ({o1[1]:.1f}..{o1[2]:.1f}) | "
      f"{v1[0]:.1f} ({v1[1]:.1f}..{v1[2]:.1f}) | {o1[0] / v1[0]:.2f}x |")
print(f"| batch {a.batch}, {a.threads} threads: frames/s (median, min..max) | {fps(on[0]):.1f} ({fps(on[2]):.1f}..{fps(on[1]):.1f}) | "
      f"{fps(vn[0]):.1f} ({fps(vn[2]):.1f}..{fps(vn[1]):.1f}) | {on[0] / vn[0]:.2f}x |")
print(f"| CPU time per frame, batch 1, 1 thread (median) | {c1['ort_1t']:.1f} ms | {c1['vigil_1t']:.1f} ms | "
      f"{c1['ort_1t'] / c1['vigil_1t']:.2f}x |")
print(f"| CPU time per frame, batch {a.batch}, {a.threads} threads (median) | {c1['ort_nt']:.1f} ms | "
      f"{c1['vigil_nt']:.1f} ms | {c1['ort_nt'] / c1['vigil_nt']:.2f}x |")
print(f"load average at the end: {os.getloadavg()}")
print(json.dumps({"cpu_ms_per_frame": cpu, "ort_version": ort.__version__, "batch": a.batch, "threads": a.threads, "rounds": a.rounds,
                  "ms_per_frame": {k: [x / (1 if k.endswith("1t") else a.batch) for x in v] for k, v in runs.items()}}))
