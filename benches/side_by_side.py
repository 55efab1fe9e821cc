#!/usr/bin/env python3
"""Side by side on this machine, in one run: TFLite (ai-edge-litert from PyPI) and Vigil's
CPU backend on the same MoViNet stream model and the same fixture frames.

Measures
  1. batch-1, single-thread latency per frame (TFLite interpreter vs Vigil, 1 thread each);
  2. Vigil's aggregate multi-stream throughput (N streams batched, T threads) against
     TFLite's single-stream throughput per core.
and prints one table plus the ratios, then a JSON line with every number.

usage: python3 benches/side_by_side.py [--model M] [--fixture F] [--streams 16] [--threads 0]
needs: pip install ai-edge-litert numpy safetensors; cargo build --release -p vigil-examples
"""
import argparse, json, os, subprocess, sys, time

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("VIGIL_SHARED", os.path.join(root, "..", "shared"))
ap = argparse.ArgumentParser()
ap.add_argument("--model", default=os.path.join(shared, "models/movinet_a0_stream_cattle7_dynamic.tflite"))
ap.add_argument("--fixture", default=os.path.join(shared, "fixtures/cattle7__carving_ice_172.safetensors"))
ap.add_argument("--streams", type=int, default=16)
ap.add_argument("--threads", type=int, default=0, help="Vigil threads for the multi-stream run (0 = all cores)")
ap.add_argument("--repeat", type=int, default=3, help="passes over the fixture per measurement")
ap.add_argument("--bin", default=os.path.join(root, "target/release/fixture_bench"))
a = ap.parse_args()
cores = os.cpu_count() or 1
threads = a.threads or cores

frames = load_file(a.fixture)["frames"]

def tflite_ms_per_frame():
    it = Interpreter(model_path=a.model, num_threads=1)
    r = it.get_signature_runner(list(it.get_signature_list().keys())[0])
    ins = r.get_input_details()
    img = [n for n in ins if n.endswith("image")][0]
    st = {n: np.zeros(d["shape"], d["dtype"]) for n, d in ins.items() if n != img}
    inputs = [(f.astype(np.float32) / 255.0)[None, None] for f in frames]
    for f in inputs[:3]:  # warm-up
        o = r(**st, **{img: f})
    best = None
    for _ in range(a.repeat):
        st = {n: np.zeros(d["shape"], d["dtype"]) for n, d in ins.items() if n != img}
        t0 = time.perf_counter()
        for f in inputs:
            o = r(**st, **{img: f})
            st = {n: o[n] for n in st}
        ms = (time.perf_counter() - t0) * 1e3 / len(inputs)
        best = ms if best is None else min(best, ms)
    return best

def vigil(streams, threads):
    best = None
    for _ in range(a.repeat):
        out = subprocess.run([a.bin, a.model, a.fixture, "--streams", str(streams), "--threads", str(threads)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        best = r if best is None or r["frames_per_s"] > best["frames_per_s"] else best
    return best

if not os.path.exists(a.bin):
    sys.exit(f"{a.bin} not found: run `cargo build --release -p vigil-examples` first")
tfl = tflite_ms_per_frame()
v1 = vigil(1, 1)
vn = vigil(a.streams, threads)
tfl_fps_core = 1e3 / tfl
v_fps_core = vn["frames_per_s"] / threads
print(f"model    {os.path.basename(a.model)}   frames {len(frames)}   cores {cores}")
print(f"{'':38}{'TFLite':>10}{'Vigil':>10}{'ratio':>8}")
print(f"{'batch-1 latency, 1 thread (ms/frame)':38}{tfl:10.2f}{v1['ms_per_frame']:10.2f}{tfl / v1['ms_per_frame']:7.2f}x")
print(f"{f'throughput per core (frames/s)':38}{tfl_fps_core:10.1f}{v_fps_core:10.1f}{v_fps_core / tfl_fps_core:7.2f}x"
      f"   (Vigil: {a.streams} streams, {threads} threads, {vn['frames_per_s']:.1f} frames/s total)")
print(json.dumps({"model": os.path.basename(a.model), "cores": cores, "tflite_ms_per_frame": round(tfl, 3),
                  "vigil_ms_per_frame_1t": v1["ms_per_frame"], "latency_speedup": round(tfl / v1["ms_per_frame"], 2),
                  "vigil_streams": a.streams, "vigil_threads": threads, "vigil_frames_per_s": vn["frames_per_s"],
                  "throughput_per_core_ratio": round(v_fps_core / tfl_fps_core, 2)}))
