#!/usr/bin/env python3
"""A/B of two `fixture_bench` builds by CPU time per frame, for machines too busy for
wall-clock numbers (other builds on the same cores).

For each binary, model and configuration it runs `perf stat -e task-clock fixture_bench ...`
twice, with a short and a long round count, and takes CPU ms per frame = (task-clock
difference) / (rounds difference x streams): model load and warm-up cancel, and time spent
descheduled is not counted. Binaries alternate run by run; medians over `--reps` runs are
printed at the end, with min and max.

usage: python3 benches/ab_cpu_time.py --a OLD/fixture_bench --b NEW/fixture_bench [--reps 8]
       e.g. A = a build of main (`git worktree add --detach /tmp/base main` and
       `cargo build --release -p vigil-examples --target-dir /tmp/base-target`),
       B = target/release/fixture_bench
needs: perf (task-clock only: works without hardware counters), VIGIL_SHARED or ../shared
"""
import argparse, json, os, statistics, subprocess

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("VIGIL_SHARED", os.path.join(root, "..", "shared"))
ap = argparse.ArgumentParser()
ap.add_argument("--a", required=True, help="fixture_bench before (e.g. built from main)")
ap.add_argument("--b", default=os.path.join(root, "target/release/fixture_bench"), help="fixture_bench after")
ap.add_argument("--reps", type=int, default=8)
a = ap.parse_args()

models = {
    "full variant": ("models/movinet_a0_stream_cattle7_dynamic.tflite", "fixtures/cattle7__carving_ice_172.safetensors"),
    "int8 K600": ("models/movinet_a0_stream_k600_int8.tflite", "fixtures/k600__arm_wrestling_5fps.safetensors"),
}
# (streams, threads, short rounds, long rounds)
configs = [(1, 1, 20, 320), (16, 2, 4, 44)]


def task_clock_ms(binary, model, fixture, streams, threads, rounds):
    p = subprocess.run(
        ["perf", "stat", "-x,", "-e", "task-clock", binary, model, fixture,
         "--streams", str(streams), "--threads", str(threads), "--rounds", str(rounds)],
        capture_output=True, text=True, check=True)
    line = next(l for l in p.stderr.splitlines() if "task-clock" in l)
    json.loads(p.stdout.strip().splitlines()[-1])  # the run completed and reported
    return float(line.split(",")[0])


results = {}
for rep in range(a.reps):
    for streams, threads, short, long in configs:
        for name, (m, f) in models.items():
            m, f = os.path.join(shared, m), os.path.join(shared, f)
            for label, binary in (("A", a.a), ("B", a.b)):
                t0 = task_clock_ms(binary, m, f, streams, threads, short)
                t1 = task_clock_ms(binary, m, f, streams, threads, long)
                ms = (t1 - t0) / ((long - short) * streams)
                results.setdefault((name, streams, threads, label), []).append(ms)
                print(f"run {rep}: {name}, {streams} streams, {threads} threads, {label}: {ms:.3f} CPU ms/frame", flush=True)

print("\nmedian CPU ms per frame (min-max):")
for name in models:
    for streams, threads, _, _ in configs:
        row = []
        for label in ("A", "B"):
            v = results[(name, streams, threads, label)]
            row.append(f"{label} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})")
        va = statistics.median(results[(name, streams, threads, "A")])
        vb = statistics.median(results[(name, streams, threads, "B")])
        print(f"  {name}, {streams} streams, {threads} threads: {'  '.join(row)}  B/A {vb / va - 1:+.1%}")
