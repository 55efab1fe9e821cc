#!/usr/bin/env bash
# The main job on a shared clip: set up, build, and classify arm_wrestling.mp4 frame by
# frame with the official MoViNet-A0-Stream Kinetics-600 model (JSON lines on stdout).
# Any arguments replace the clip, e.g. scripts/demo.sh ../shared/clips/carving_ice_172.mp4
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh >&2
source target/vigil-env.sh
clip=${1:-$VIGIL_SHARED/clips/arm_wrestling.mp4}
[ $# -gt 0 ] && shift
exec cargo run --release -q -- classify "$clip" \
  --model "$VIGIL_SHARED/models/movinet_a0_stream_k600_int8.tflite" \
  --labels "$VIGIL_SHARED/models/kinetics600_labels.txt" "$@"
