#!/usr/bin/env bash
# Proves "any reference file the generator makes passes `vigil classify REF --clip DIR`":
# regenerates the tiny CLIP/X-CLIP fixtures with another seed, other prompts (capitals,
# punctuation, accents, one longer than 77 tokens) and other frames, then runs
# pipelines/tests/clip_reference.rs on them (relative L2 <= 1e-4 through the real binary).
#
# Needs what ../shared/reference/gen_clip_fixtures.py lists: ffmpeg (apt) and PyPI torch
# 2.15.0, transformers 5.23.0, safetensors 0.8.0, numpy 2.4.6, pillow 13.0.0, ftfy, regex,
# installed into target/clip-ref-venv (several GB: torch), and the open_clip_torch 3.3.0
# wheel for the BPE file. Usage: scripts/clip_reference_check.sh [SEED]   (default 77)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seed="${1:-77}"
shared="${VIGIL_SHARED:-$root/../shared}"
out="$root/target/clip-ref/seed$seed"
venv="${CLIP_REF_VENV:-$root/target/clip-ref-venv}"
command -v ffmpeg >/dev/null || { echo "clip_reference_check: install ffmpeg (apt-get install ffmpeg)" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check torch==2.15.0 transformers==5.23.0 \
    safetensors==0.8.0 numpy==2.4.6 pillow==13.0.0 ftfy regex
fi
mkdir -p "$out"
wheel="$root/target/clip-ref/open_clip_torch-3.3.0-py3-none-any.whl"
[ -f "$wheel" ] || "$venv/bin/pip" download -q --no-deps open_clip_torch==3.3.0 -d "$root/target/clip-ref"
cat > "$out/../prompts.txt" <<'EOF'
# other prompts than the shared fixtures: capitals, punctuation, accents, one > 77 tokens
A man climbing over a FENCE at night!
someone lying on the floor, not moving
two people fighting in a parking lot...
an empty corridor
café terrace — people drinking coffee
a tree swaying in the wind on a calm sunny afternoon while a small bird sits on one of the branches and the leaves move slowly back and forth in the breeze, filmed from a fixed security camera mounted high on a wall across the street
EOF
cat > "$out/../frames.json" <<'EOF'
{"size": [320, 240],
 "clip": [{"file": "tree_idle.mp4", "frames": [5, 300]},
          {"file": "carving_ice_360.mp4", "frames": [10]},
          {"file": "arm_wrestling.mp4", "frames": [130]}],
 "xclip": [{"file": "tree_idle.mp4", "frames": [0, 40, 80, 120, 160, 200, 240, 280]},
           {"file": "carving_ice_360.mp4", "frames": [3, 27, 51, 75, 99, 123, 147, 171]},
           {"file": "street_pedestrians.mp4", "frames": [10, 110, 210, 310, 410, 510, 610, 710]}]}
EOF
"$venv/bin/python" "$shared/reference/gen_clip_fixtures.py" --out "$out" --seed "$seed" \
  --prompts "$out/../prompts.txt" --frames "$out/../frames.json" --clips-dir "$shared/clips" \
  --bpe "$wheel" > "$out.log"
VIGIL_CLIP_REFERENCE_DIRS="$out" cargo test -p vigil-pipelines --test clip_reference \
  more_generator_outputs_match_when_given -- --nocapture
