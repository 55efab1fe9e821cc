#!/usr/bin/env bash
# Run COMMAND with the EMULATED CUDA driver (vigil-cuda-emu: kernels/cuda/*.cu executed on
# the CPU behind a libcuda.so built from kernels/emu) — never a GPU, never a GPU number.
#
#   scripts/emulated-gpu.sh COMMAND [ARGS...]
#   scripts/emulated-gpu.sh target/release/vigil classify FIXTURE --model MODEL --device cuda --logits
#
# Builds the emulator if it is stale (cargo, then g++ into target/vigil-cuda-emu/), puts
# the directory holding its libcuda.so / libcuda.so.1 first on LD_LIBRARY_PATH (so it wins
# over any real driver for COMMAND) and execs COMMAND. NVRTC still compiles the kernels for
# real: the environment of scripts/setup.sh (target/vigil-env.sh) is sourced when present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ]; then
  echo "usage: scripts/emulated-gpu.sh COMMAND [ARGS...]" >&2
  exit 2
fi
if [ -f "$root/target/vigil-env.sh" ]; then
  # shellcheck source=/dev/null
  . "$root/target/vigil-env.sh"
fi
libdir=$(cargo run --quiet --release --manifest-path "$root/Cargo.toml" -p vigil-cuda-emu --bin vigil-cuda-emu -- lib-dir)
echo "emulated-gpu: CUDA driver = vigil-cuda-emu, a CPU EMULATION (not a GPU; timings are not GPU measurements) — $libdir" >&2
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
