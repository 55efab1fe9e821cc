#!/usr/bin/env python3
"""Side by side on this machine, in one run: TFLite (ai-edge-litert) on the official file
and on its float32 rewrite, OpenVINO, and Vigil's CPU backend (fp32, and bf16 where the
CPU has AVX-512 BF16) on both shared MoViNet stream models, fed the same fixture frames
with their 43 state tensors carried from frame to frame.

Engines, per model:
  - "TFLite int8" (K600) / "TFLite dyn-range" (full variant): the official file as
    shipped: the K600 export runs in int8 arithmetic (XNNPACK, VNNI where the CPU has it),
    the full variant's dynamic-range export with int8 weights and float activations;
  - "TFLite float": the same graph rewritten to float32 by ../shared/reference/floatify.py
    (this is the float oracle's model);
  - "OpenVINO": PyPI `openvino` reading the official .tflite;
  - "Vigil fp32", "Vigil bf16" (target/release/fixture_bench).
For each: batch-1 ms/frame at 1 thread and at all threads, as wall time AND as CPU time of
the process (all its threads) per frame — on a machine shared with other jobs, CPU time
does not count time spent descheduled, so it is the number to compare under load; plus
Vigil's multi-stream throughput (N streams batched, all threads) and accuracy against the
fixture's float oracle (top-1 agreement, worst relative L2 per frame).
Engines are measured in alternation, --rounds times, and each number is the median of its
rounds, so a neighbour's burst of load touches every engine alike. The 1-minute load
average is sampled after every round. Prints the machine (CPU model, AVX-512 features), a
markdown table per model, the ratios issue 10 asks for, and one JSON line with every number.

usage: python3 benches/side_by_side.py [--rounds 7] [--streams 16] [--threads 0] [--models k600,cattle7]
needs: the bench Python packages — `bash scripts/setup.sh --bench` installs them into
       target/vigil-venv (pip install ai-edge-litert==2.3.0 openvino==2026.4.1 numpy
       safetensors flatbuffers); run with target/vigil-venv/bin/python;
       `cargo build --release -p vigil-examples --bin fixture_bench`
"""
import argparse, datetime, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time

import numpy as np
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("VIGIL_SHARED", os.path.join(root, "..", "shared"))
# key -> (model, fixture, label of TFLite on the official file)
MODELS = {
    "k600": ("models/movinet_a0_stream_k600_int8.tflite", "fixtures/k600__carving_ice_172.safetensors", "TFLite int8"),
    "cattle7": ("models/movinet_a0_stream_cattle7_dynamic.tflite", "fixtures/cattle7__carving_ice_172.safetensors",
                "TFLite dyn-range"),
}
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=7, help="alternating rounds; each number is the median")
ap.add_argument("--streams", type=int, default=16, help="Vigil streams for the throughput run")
ap.add_argument("--threads", type=int, default=0, help="threads for the all-threads runs (0 = all cores)")
ap.add_argument("--models", default="k600,cattle7")
ap.add_argument("--bin", default=os.path.join(root, "target/release/fixture_bench"))
a = ap.parse_args()
cores = os.cpu_count() or 1
threads = a.threads or cores
if not os.path.exists(a.bin):
    sys.exit(f"{a.bin} not found: run `cargo build --release -p vigil-examples --bin fixture_bench` first")
floatify = os.path.join(shared, "reference", "floatify.py")
if not os.path.exists(floatify):
    sys.exit(f"{floatify} not found: set VIGIL_SHARED to the shared data directory")


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
    """ai-edge-litert's interpreter (XNNPACK). The 43 states are carried tensor to tensor
    through views of the interpreter's own buffers (state output -> state input after each
    invoke): the signature runner's per-call dicts of 44 arrays cost more Python time per
    frame than the int8 model's whole invoke (measured 3.1 vs 1.4 CPU ms/frame), which
    would be counted as TFLite's."""

    def __init__(self, model, threads):
        from ai_edge_litert.interpreter import Interpreter

        # tensor indices by signature name, from a second interpreter (a signature runner
        # keeps references that forbid raw buffer access on its own)
        sig = Interpreter(model_path=model)
        r = sig.get_signature_runner(list(sig.get_signature_list().keys())[0])
        ins, outs = r.get_input_details(), r.get_output_details()
        self.it = Interpreter(model_path=model, num_threads=threads)
        self.it.allocate_tensors()
        img = [n for n in ins if n.endswith("image")][0]
        self.img = ins[img]["index"]
        self.logits = self.it.tensor(next(d["index"] for n, d in outs.items() if n not in ins))
        self.states = [(self.it.tensor(outs[n]["index"]), self.it.tensor(d["index"]))
                       for n, d in ins.items() if n != img]

    def run(self, inputs):
        for _, dst in self.states:
            dst()[...] = 0
        out = []
        for f in inputs:
            self.it.set_tensor(self.img, f)
            self.it.invoke()
            for src, dst in self.states:
                dst()[...] = src()
            out.append(self.logits().reshape(-1).copy())
        return np.array(out)


class OpenVINO:
    """OpenVINO reading the same .tflite; its 43 state outputs are matched to the inputs
    through the TFLite signature (output tensors are named StatefulPartitionedCall:N) and
    copied output -> input in the infer request's own tensors after each frame."""

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

        img = [n for n in sig_in if n.endswith("image")][0]
        self.img = port(cm.inputs, sig_in[img])
        self.logits = port(cm.outputs, next(t for n, t in sig_out.items() if n not in sig_in))
        self.states = [(port(cm.outputs, sig_out[n]), port(cm.inputs, t)) for n, t in sig_in.items() if n != img]
        self.req = cm.create_infer_request()

    def run(self, inputs):
        req = self.req
        for _, dst in self.states:
            req.get_tensor(dst).data[...] = 0
        out = []
        for f in inputs:
            req.get_tensor(self.img).data[...] = f
            req.infer()
            for src, dst in self.states:
                req.get_tensor(dst).data[...] = req.get_tensor(src).data
            out.append(req.get_tensor(self.logits).data.reshape(-1).copy())
        return np.array(out)


def vigil(model, fixture, precision, streams, threads, accuracy=False):
    cmd = [a.bin, str(model), str(fixture), "--streams", str(streams), "--threads", str(threads),
           "--precision", precision]
    if accuracy:
        cmd.append("--accuracy")
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RUST_BACKTRACE": "0"})
    if p.returncode != 0:
        why = [l for l in p.stderr.splitlines() if l.startswith("Error")] or [f"exit {p.returncode}"]
        return None, why[0]
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def timed(engine, inputs):
    """(wall ms, process CPU ms) per frame over the whole fixture."""
    t0, c0 = time.perf_counter(), time.process_time()
    engine.run(inputs)
    n = len(inputs)
    return (time.perf_counter() - t0) * 1e3 / n, (time.process_time() - c0) * 1e3 / n


def vigil_timed(model, fixture, precision, streams, threads):
    r = vigil(model, fixture, precision, streams, threads)[0]
    return r["ms_per_frame"], r["cpu_ms_per_frame"]


def fmt_load(v):
    return " ".join(f"{x:.2f}" for x in v)


cpu_model, cpu_flags = cpu_info()
load_before = os.getloadavg()
print(f"machine  {cpu_model}, {cores} cores; {' '.join(cpu_flags)}")
print(f"date     {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}   "
      f"load average before {fmt_load(load_before)}")
tmp = tempfile.mkdtemp(prefix="side_by_side_")
results, load_samples = {}, []
try:
    for key in a.models.split(","):
        model_rel, fixture_rel, tfl_label = MODELS[key]
        model, fixture = os.path.join(shared, model_rel), os.path.join(shared, fixture_rel)
        float_model = os.path.join(tmp, key + "_float.tflite")
        subprocess.run([sys.executable, floatify, model, float_model], check=True, capture_output=True)
        fx = load_file(fixture)
        frames, oracle = fx["frames"], fx["logits.float_oracle"]
        inputs = [(f.astype(np.float32) / 255.0)[None, None] for f in frames]
        engines = {}  # label -> {"1t"|"nt": fn -> (wall, cpu) ms/frame, "tput": fn -> frames/s}
        acc = {}
        for label, cls, path in ((tfl_label, TFLite, model), ("TFLite float", TFLite, float_model),
                                 ("OpenVINO", OpenVINO, model)):
            e1, en = cls(path, 1), cls(path, threads)
            acc[label] = accuracy(e1.run(inputs), oracle)  # also the warm-up
            en.run(inputs[:3])
            engines[label] = {"1t": lambda e=e1: timed(e, inputs), "nt": lambda e=en: timed(e, inputs)}
        skipped = {}
        for prec in ("fp32", "bf16"):
            label = f"Vigil {prec}"
            r, err = vigil(model, fixture, prec, 1, 1, accuracy=True)
            if r is None:
                skipped[label] = err
                continue
            acc[label] = (r["top1_agreement"], r["worst_rel_l2"])
            engines[label] = {
                "1t": lambda p=prec: vigil_timed(model, fixture, p, 1, 1),
                "nt": lambda p=prec: vigil_timed(model, fixture, p, 1, threads),
                "tput": lambda p=prec: vigil(model, fixture, p, a.streams, threads)[0]["frames_per_s"],
            }
        samples = {label: {k: [] for k in fns} for label, fns in engines.items()}
        for _ in range(a.rounds):
            for label, fns in engines.items():
                for k, fn in fns.items():
                    samples[label][k].append(fn())
            load_samples.append(os.getloadavg()[0])
        med = {}
        for label, ks in samples.items():
            med[label] = {}
            for k, v in ks.items():
                if k == "tput":
                    med[label][k] = statistics.median(v)
                else:
                    med[label][k] = statistics.median(w for w, _ in v)
                    med[label][k + "_cpu"] = statistics.median(c for _, c in v)
        results[key] = {"model": os.path.basename(model), "fixture": os.path.basename(fixture),
                        "frames": len(frames), "median": med, "samples": samples,
                        "accuracy": {k: {"top1_agreement": v[0], "worst_rel_l2": v[1]} for k, v in acc.items()},
                        "skipped": skipped}
        print(f"\n{os.path.basename(model)} on {os.path.basename(fixture)} ({len(frames)} frames), "
              f"median of {a.rounds} alternating rounds; ms/frame as wall / CPU time")
        print(f"| engine | 1 thread ms/frame (wall / CPU) | 1 thread frames/s (wall / CPU) "
              f"| {threads} threads ms/frame (wall / CPU) | {threads} threads, {a.streams} streams frames/s "
              f"| top-1 agreement with float oracle | worst rel L2 |")
        print("|---|---|---|---|---|---|---|")
        for label, m in med.items():
            tput = f"{m['tput']:.0f}" if "tput" in m else "—"
            print(f"| {label} | {m['1t']:.2f} / {m['1t_cpu']:.2f} | {1e3 / m['1t']:.0f} / {1e3 / m['1t_cpu']:.0f} "
                  f"| {m['nt']:.2f} / {m['nt_cpu']:.2f} | {tput} | {100 * acc[label][0]:.1f}% | {acc[label][1]:.2e} |")
        for label, why in skipped.items():
            print(f"| {label} | skipped: {why} | | | | | |")
        print("ratios at 1 thread (speed-up = other's ms/frame / Vigil's; wall, CPU time):")
        for label in med:
            if not label.startswith("Vigil"):
                continue
            for other in (tfl_label, "TFLite float", "OpenVINO"):
                w = med[other]["1t"] / med[label]["1t"]
                c = med[other]["1t_cpu"] / med[label]["1t_cpu"]
                print(f"  {label} vs {other}: {w:.2f}x wall, {c:.2f}x CPU time")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
load_after = os.getloadavg()
print(f"\nload average after {fmt_load(load_after)}; 1-minute load after each round: min "
      f"{min(load_samples):.2f}, median {statistics.median(load_samples):.2f}, max {max(load_samples):.2f}")
print(json.dumps({"cpu": cpu_model, "cores": cores, "flags": cpu_flags,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                  "load_before": load_before, "load_after": load_after, "load_per_round": load_samples,
                  "threads": threads, "streams": a.streams, "rounds": a.rounds, "results": results}))
