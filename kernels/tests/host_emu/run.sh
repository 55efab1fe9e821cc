#!/bin/sh
# Host emulation of the CUDA kernels (no GPU, no CUDA toolkit): see emu.cpp.
# Usage: kernels/tests/host_emu/run.sh   (needs g++ >= 12 for C++20 <barrier> and _Float16)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/vigil-host-emu
mkdir -p "$out"
for arch in 800 750; do
    g++ -std=c++20 -O1 -pthread -fno-strict-aliasing -w -D__CUDA_ARCH__=$arch \
        -I "$here/include" -I "$here/../../cuda" "$here/emu.cpp" -o "$out/emu_$arch"
    "$out/emu_$arch"
done
