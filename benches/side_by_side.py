#!/usr/bin/env python3
"""Side by side on this machine, in one run: TFLite (ai-edge-litert), OpenVINO and Vigil's
CPU backend (fp32, and bf16 where the CPU has AVX-512 BF16) on both shared MoViNet stream
models, fed the same fixture frames with their state carried from frame to frame.

For each model and engine:
  - batch-1 latency, 1 thread and all threads (ms/frame over the whole fixture);
  - Vigil's multi-stream throughput (N streams batched, all threads);
  - accuracy against the fixture's float oracle: top-1 agreement and worst relative L2
    per frame (TFLite runs the int8 K600 export in int8 arithmetic; OpenVINO and Vigil
    compute in float, Vigil bf16 rounds the 1x1 GEMMs' inputs to bf16).
Engines are measured in alternation, --rounds times, and each number is the median of its
rounds, so a neighbour's burst of load touches every engine alike. Prints the machine
(CPU model, AVX-512 features, load average before and after), a markdown table, the
ratios the CPU issue asks for, and one JSON line with every number.

usage: python3 benches/side_by_side.py [--rounds 5] [--streams 16] [--threads 0] [--models k600,cattle7]
needs: target/vigil-venv with ai-edge-litert, openvino, numpy, safetensors (pip);
       cargo build --release -p vigil-examples
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, time

import numpy as np
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("VIGIL_SHARED", os.path.join(root, "..", "shared"))
MODELS = {
    "k600": ("models/movinet_a0_stream_k600_int8.tflite", "fixtures/k600__carving_ice_172.safetensors"),
    "cattle7": ("models/movinet_a0_stream_cattle7_dynamic.tflite", "fixtures/cattle7__carving_ice_172.safetensors"),
}
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=5, help="alternating rounds; each number is the median")
ap.add_argument("--streams", type=int, default=16, help="Vigil streams for the throughput run")
ap.add_argument("--threads", type=int, default=0, help="threads for the all-threads runs (0 = all cores)")
ap.add_argument("--models", default="k600,cattle7")
ap.add_argument("--bin", default=os.path.join(root, "target/release/fixture_bench"))
a = ap.parse_args()
cores = os.cpu_count() or 1
threads = a.threads or cores
if not os.path.exists(a.bin):
    sys.exit(f"{a.bin} not found: run `cargo build --release -p vigil-examples` first")


def cpu_info():
    """CPU model name and its AVX2/FMA/AVX-512 feature flags, from /proc/cpuinfo."""
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not flags:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, sorted(f for f in flags if f.startswith("avx512") or f in ("avx2", "fma"))


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def accuracy(logits, oracle):
    agree = float(np.mean(logits.argmax(1) == oracle.argmax(1)))
    return agree, max(rel_l2(g, o) for g, o in zip(logits, oracle))


class TFLite:
    """ai-edge-litert's interpreter (XNNPACK), signature runner, states carried by name."""

    name = "TFLite"

    def __init__(self, model, threads):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=model, num_threads=threads)
        self.r = self.it.get_signature_runner(list(self.it.get_signature_list().keys())[0])
        self.ins = self.r.get_input_details()
        self.img = [n for n in self.ins if n.endswith("image")][0]
        self.logits = [n for n in self.r.get_output_details() if n not in self.ins][0]

    def run(self, inputs):
        st = {n: np.zeros(d["shape"], d["dtype"]) for n, d in self.ins.items() if n != self.img}
        out = []
        for f in inputs:
            o = self.r(**st, **{self.img: f})
            st = {n: o[n] for n in st}
            out.append(o[self.logits].reshape(-1).copy())
        return np.array(out)


class OpenVINO:
    """OpenVINO reading the same .tflite; its 43 state outputs are matched to the inputs
    through the TFLite signature (output tensors are named StatefulPartitionedCall:N)."""

    name = "OpenVINO"

    def __init__(self, model, threads):
        import openvino as ov
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=model)
        r = it.get_signature_runner(list(it.get_signature_list().keys())[0])
        tensor = {d["index"]: d["name"] for d in it.get_input_details() + it.get_output_details()}
        sig_in = {n: tensor[d["index"]] for n, d in r.get_input_details().items()}
        sig_out = {n: tensor[d["index"]] for n, d in r.get_output_details().items()}
        core = ov.Core()
        cm = core.compile_model(core.read_model(model), "CPU",
                                {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})

        def port(ports, name):
            return next(p for p in ports if name in p.get_names())

        self.img = [n for n in sig_in if n.endswith("image")][0]
        self.inp = {n: port(cm.inputs, t) for n, t in sig_in.items()}
        self.out = {n: port(cm.outputs, t) for n, t in sig_out.items()}
        self.logits = [n for n in sig_out if n not in sig_in][0]
        self.req = cm.create_infer_request()

    def run(self, inputs):
        st = {n: np.zeros(p.get_partial_shape().to_shape(), p.get_element_type().to_dtype())
              for n, p in self.inp.items() if n != self.img}
        out = []
        for f in inputs:
            feed = {self.inp[n]: v for n, v in st.items()}
            feed[self.inp[self.img]] = f
            res = self.req.infer(feed)
            st = {n: res[self.out[n]] for n in st}
            out.append(res[self.out[self.logits]].reshape(-1).copy())
        return np.array(out)


def vigil(model, fixture, precision, streams, threads, accuracy=False):
    cmd = [a.bin, model, fixture, "--streams", str(streams), "--threads", str(threads)]
    if precision != "fp32":
        cmd += ["--precision", precision]
    if accuracy:
        cmd.append("--accuracy")
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RUST_BACKTRACE": "0"})
    if p.returncode != 0:
        why = [l for l in p.stderr.splitlines() if l.startswith("Error")] or [f"exit {p.returncode}"]
        return None, why[0]
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def timed(engine, inputs):
    t0 = time.perf_counter()
    engine.run(inputs)
    return (time.perf_counter() - t0) * 1e3 / len(inputs)


cpu_model, cpu_flags = cpu_info()
load_before = os.getloadavg()
print(f"machine  {cpu_model}, {cores} cores; {' '.join(cpu_flags)}")
print(f"date     {datetime.date.today().isoformat()}   load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
results = {}
for key in a.models.split(","):
    model_rel, fixture_rel = MODELS[key]
    model, fixture = os.path.join(shared, model_rel), os.path.join(shared, fixture_rel)
    fx = load_file(fixture)
    frames, oracle = fx["frames"], fx["logits.float_oracle"]
    inputs = [(f.astype(np.float32) / 255.0)[None, None] for f in frames]
    engines = {}  # label -> {"1t": fn, "nt": fn} returning ms/frame
    acc = {}
    for cls in (TFLite, OpenVINO):
        e1, en = cls(model, 1), cls(model, threads)
        acc[cls.name] = accuracy(e1.run(inputs), oracle)  # also the warm-up
        en.run(inputs[:3])
        engines[cls.name] = {"1t": lambda e=e1: timed(e, inputs), "nt": lambda e=en: timed(e, inputs)}
    skipped = {}
    for prec in ("fp32", "bf16"):
        label = f"Vigil {prec}"
        r, err = vigil(model, fixture, prec, 1, 1, accuracy=True)
        if r is None:
            skipped[label] = err
            continue
        acc[label] = (r["top1_agreement"], r["worst_rel_l2"])
        engines[label] = {
            "1t": lambda p=prec: vigil(model, fixture, p, 1, 1)[0]["ms_per_frame"],
            "nt": lambda p=prec: vigil(model, fixture, p, 1, threads)[0]["ms_per_frame"],
            "tput": lambda p=prec: vigil(model, fixture, p, a.streams, threads)[0]["frames_per_s"],
        }
    samples = {label: {k: [] for k in fns} for label, fns in engines.items()}
    for _ in range(a.rounds):
        for label, fns in engines.items():
            for k, fn in fns.items():
                samples[label][k].append(fn())
    med = {label: {k: statistics.median(v) for k, v in ks.items()} for label, ks in samples.items()}
    results[key] = {"model": os.path.basename(model), "fixture": os.path.basename(fixture),
                    "frames": len(frames), "median": med, "samples": samples,
                    "accuracy": {k: {"top1_agreement": v[0], "worst_rel_l2": v[1]} for k, v in acc.items()},
                    "skipped": skipped}
    print(f"\n{os.path.basename(model)} on {os.path.basename(fixture)} ({len(frames)} frames), "
          f"median of {a.rounds} alternating rounds")
    print(f"| engine | 1 thread ms/frame | {threads} threads ms/frame | {threads} threads, {a.streams} streams frames/s "
          f"| top-1 agreement with float oracle | worst rel L2 |")
    print("|---|---|---|---|---|---|")
    for label, m in med.items():
        tput = f"{m['tput']:.0f}" if "tput" in m else "—"
        print(f"| {label} | {m['1t']:.2f} | {m['nt']:.2f} | {tput} | {100 * acc[label][0]:.1f}% | {acc[label][1]:.2e} |")
    for label, why in skipped.items():
        print(f"| {label} | skipped: {why} | | | | |")
    base = med["TFLite"]["1t"]
    for label in med:
        if label.startswith("Vigil"):
            print(f"{label} vs TFLite, 1 thread: {base / med[label]['1t']:.2f}x;  vs OpenVINO: "
                  f"{med['OpenVINO']['1t'] / med[label]['1t']:.2f}x")
load_after = os.getloadavg()
print(f"\nload average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
print(json.dumps({"cpu": cpu_model, "cores": cores, "flags": cpu_flags, "date": datetime.date.today().isoformat(),
                  "load_before": load_before, "load_after": load_after, "threads": threads,
                  "streams": a.streams, "rounds": a.rounds, "results": results}))
