#!/usr/bin/env bash
# The main job on a shared clip: set up, build, and classify arm_wrestling.mp4 frame by
# frame with the official MoViNet-A0-Stream Kinetics-600 model (JSON lines on stdout).
#   scripts/demo.sh                                   # the shared arm-wrestling clip
#   scripts/demo.sh my_clip.mp4 --top 1               # another clip (relative to where you are)
#   scripts/demo.sh --top 1 --fps native              # the shared clip, with vigil options
# A first argument that does not start with `-` is the clip; the rest go to `vigil classify`.
set -euo pipefail
here=$(pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
clip=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  case "$1" in
    /*|*://*|test:*|gst:*) clip=$1 ;;
    *) clip="$here/$1" ;;
  esac
  shift
fi
cd "$root"
bash scripts/setup.sh >&2
source target/vigil-env.sh
clip=${clip:-$VIGIL_SHARED/clips/arm_wrestling.mp4}
exec cargo run --release -q -- classify "$clip" \
  --model "$VIGIL_SHARED/models/movinet_a0_stream_k600_int8.tflite" \
  --labels "$VIGIL_SHARED/models/kinetics600_labels.txt" "$@"
