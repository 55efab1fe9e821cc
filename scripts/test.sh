#!/usr/bin/env bash
# The whole test suite: set up, then every crate's tests (GPU tests skip with a notice
# when no GPU is present; the NVRTC compile test runs everywhere).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
source target/vigil-env.sh
cargo test --workspace "$@"
