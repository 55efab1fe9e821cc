#!/usr/bin/env bash
# Installs what Vigil needs to build and test on Debian 12 (idempotent, quick when done):
#   - GStreamer 1.22 dev packages, plugins and gst-rtsp-server (apt)
#   - for `vigil serve` and its tests: libsqlite3-dev, mosquitto (a real MQTT broker the
#     tests start on 127.0.0.1), chromium + chromium-driver (the page's browser test)
#   - schemathesis from PyPI (checks the serve API against its OpenAPI description)
#   - g++ (apt; g++ 12 brings ThreadSanitizer's libtsan2): the tests build the emulated
#     CUDA driver (kernels/emu) from source and run the GPU tests on it
#   - NVRTC + CUDA runtime headers from PyPI wheels (kernels compile at run time with
#     NVRTC; no GPU or CUDA toolkit needed to check that they compile)
# and writes target/vigil-env.sh, which the other scripts source.
# `scripts/setup.sh --bench` also installs the side-by-side benchmarks' engines into
# target/vigil-env's venv (benches/side_by_side.py: TFLite via ai-edge-litert, OpenVINO,
# numpy, safetensors, flatbuffers — pinned below); CI does not need them.
set -euo pipefail
bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    *) echo "setup: unknown option $arg — use --bench or nothing" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

apt_pkgs=(pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp
  libsqlite3-dev mosquitto mosquitto-clients chromium chromium-driver g++ libtsan2)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

venv="$root/target/vigil-venv"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$root/target"
  python3 -m venv "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -d "$site/nvidia/cuda_nvrtc/lib" ] || [ ! -d "$site/nvidia/cuda_runtime/include" ]; then
  echo "setup: installing NVRTC wheels"
  "$venv/bin/pip" install -q --disable-pip-version-check nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79
fi
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "setup: installing schemathesis"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check schemathesis==4.32.5
fi
if [ "$bench" = 1 ]; then
  echo "setup: installing the side-by-side benchmarks' Python packages"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    ai-edge-litert==2.3.0 openvino==2026.4.1 numpy safetensors flatbuffers
fi
cat > "$root/target/vigil-env.sh" <<ENV
# written by scripts/setup.sh
export LD_LIBRARY_PATH="$site/nvidia/cuda_nvrtc/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export VIGIL_CUDA_INCLUDE="$site/nvidia/cuda_runtime/include"
export VIGIL_SHARED="\${VIGIL_SHARED:-$(cd "$root/.." && pwd)/shared}"
ENV
echo "setup: ok (environment in target/vigil-env.sh)"
