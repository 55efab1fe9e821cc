// kernels.cpp — the SAME kernels/cuda/*.cu sources NVRTC compiles, compiled for the host
// (include/cuda_fp16.h supplies the device built-ins, -D__CUDA_ARCH__=800 selects the
// tensor-core path), and the registry of their trampolines (registry.h).
//
// The two generated files come from the builder (kernels/emu/src/build.rs), which scans
// kernels/cuda for `extern "C" __global__` definitions: kernel_sources.inc `#include`s
// every .cu file, kernel_list.inc has one VIGIL_EMU_KERNEL(name) per kernel. A kernel added
// to a .cu file is therefore registered without touching the emulator.
#include <cuda_fp16.h>

#include "kernel_sources.inc"

#include <cstring>

#include "registry.h"

namespace vigil_emu {

const KernelEntry kKernelRegistry[] = {
#include "kernel_list.inc"
};
const unsigned kKernelRegistrySize = sizeof(kKernelRegistry) / sizeof(kKernelRegistry[0]);

const KernelEntry* find_kernel(const char* name) {
    for (unsigned i = 0; i < kKernelRegistrySize; ++i)
        if (std::strcmp(kKernelRegistry[i].name, name) == 0) return &kKernelRegistry[i];
    return nullptr;
}

}  // namespace vigil_emu
