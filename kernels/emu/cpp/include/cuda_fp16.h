// cuda_fp16.h — vigil-cuda-emu's stand-in for NVIDIA's header when kernels/cuda/*.cu are
// compiled for the host: it sits first on the include path of the emulator build, so the
// kernels' `#include <cuda_fp16.h>` brings in the host definitions of the CUDA built-ins
// (see ../device_builtins.h). Never used by NVRTC, which sees NVIDIA's real header.
#pragma once
#include "../device_builtins.h"
