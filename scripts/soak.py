#!/usr/bin/env python3
"""Soak and outage run of `vigil watch` (issue 8 acceptance), standard library only.

Runs a fast live source (`test:`, every frame at its native rate) and one RTSP camera
(`rtsp_camera` example: a live H.264 pattern from gst-rtsp-server on 127.0.0.1) for
--minutes, kills the camera for --outage seconds at --outage-at, and prints a markdown
report: RSS over time, frames and drops per stream, the status lines seen, and how long
the camera took to be reported lost and to recover.

    cargo build --release -p vigil-pipelines --example rtsp_camera
    python3 scripts/soak.py --model ../shared/models/movinet_a0_stream_k600_int8.tflite
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def start_camera(exe, port):
    p = subprocess.Popen([exe, "--port", str(port), "--mount", "cam"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 15
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("the RTSP camera did not start")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vigil", default=os.path.join(root, "target/release/vigil"))
    ap.add_argument("--camera", default=os.path.join(root, "target/release/examples/rtsp_camera"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--outage-at", type=float, default=120, help="seconds into the run")
    ap.add_argument("--outage", type=float, default=20, help="seconds the camera is down")
    ap.add_argument("--fast", default="test:pattern=ball,fps=60,width=320,height=240")
    args = ap.parse_args()

    port = free_port()
    cam = start_camera(args.camera, port)
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'model = "{os.path.abspath(args.model)}"\n'
              f'[[stream]]\nname = "fast"\nuri = "{args.fast}"\nfps = "native"\n'
              f'[[stream]]\nname = "cam"\nuri = "rtsp://127.0.0.1:{port}/cam"\n')
    cfg.close()
    cmd = [args.vigil, "watch", "--config", cfg.name, "--format", "jsonl", "--stats-interval", "10"]
    t0 = time.time()
    v = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []  # (t, record)
    stderr = []

    def read_out():
        for line in v.stdout:
            try:
                lines.append((time.time() - t0, json.loads(line)))
            except ValueError:
                pass

    def read_err():
        for line in v.stderr:
            stderr.append(line.rstrip())

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()

    rss = []
    killed_at = restarted_at = None
    end = args.minutes * 60
    while time.time() - t0 < end:
        t = time.time() - t0
        if killed_at is None and t >= args.outage_at:
            cam.kill()
            cam.wait()
            killed_at = t
        if killed_at is not None and restarted_at is None and t >= args.outage_at + args.outage:
            cam = start_camera(args.camera, port)
            restarted_at = time.time() - t0
        if not rss or t - rss[-1][0] >= 5:
            rss.append((t, rss_kb(v.pid)))
        if v.poll() is not None:
            break
        time.sleep(0.2)
    v.send_signal(signal.SIGINT)
    code = v.wait(timeout=60)
    time.sleep(0.5)
    cam.kill()
    os.unlink(cfg.name)

    status = [(t, r) for t, r in lines if "status" in r and "stats" not in r]
    stats = [(t, r) for t, r in lines if r.get("stats")]
    finals = [r for _, r in lines if r.get("final")]
    ends = [(t, r) for t, r in lines if r.get("event") == "end" and r.get("reason") == "stream lost"]
    cam_frames = [t for t, r in lines if r.get("stream") == "cam" and "seq" in r]
    lost = next((t for t, r in status if r["stream"] == "cam" and r["status"] == "reconnecting"
                 and killed_at is not None and t >= killed_at), None)
    back = next((t for t, r in status if r["stream"] == "cam" and r["status"] == "connected"
                 and restarted_at is not None and t >= restarted_at), None)
    first_label = next((t for t in cam_frames if restarted_at is not None and t >= restarted_at), None)

    print(f"command: `{' '.join(cmd)}` (config: fast = `{args.fast}` at its native rate; "
          f"cam = rtsp_camera example, live 640x480 15 fps H.264, fed at 5 fps)")
    print(f"exit status after SIGINT: {code}; run {lines[-1][0] if lines else 0:.0f} s\n")
    print("| t (s) | RSS (MiB) |\n|---|---|")
    for t, kb in rss:
        if kb is not None and (int(t) % 30 < 5 or t == rss[-1][0]):
            print(f"| {t:.0f} | {kb / 1024:.1f} |")
    print()
    print("| stream | frames | dropped | reconnects (last stats) |\n|---|---|---|---|")
    last_stats = {r["stream"]: r for _, r in stats}
    for f in finals:
        s = last_stats.get(f["stream"], {})
        print(f"| {f['stream']} | {f['frames']} | {f['dropped']} | {s.get('reconnects', '-')} |")
    print()
    if killed_at is not None:
        print(f"- camera killed at {killed_at:.1f} s, restarted at {restarted_at:.1f} s")
        print(f"- `reconnecting` status {lost - killed_at:.2f} s after the kill" if lost else "- no `reconnecting` status")
        print(f"- `connected` status {back - restarted_at:.2f} s after the restart" if back else "- no `connected` status after the restart")
        print(f"- first camera label {first_label - restarted_at:.2f} s after the restart" if first_label else "- no camera label after the restart")
        print(f"- events closed with reason `stream lost`: {len(ends)}")
    print("\nstatus lines seen:\n```")
    for t, r in status:
        rr = {k: r[k] for k in ("stream", "status", "reason", "frames", "dropped", "reconnects") if k in r}
        print(f"{t:7.1f} s {json.dumps(rr, ensure_ascii=False)}")
    print("```")
    print("\ndrops per stats interval (fast stream):",
          ", ".join(str(r["dropped_since"]) for _, r in stats if r["stream"] == "fast"))
    warnings = [l for l in stderr if l.strip()]
    print(f"\nstderr: {len(warnings)} lines" + (f"; first: `{warnings[0][:160]}`" if warnings else ""))


if __name__ == "__main__":
    main()
