// exec.h — running one kernel launch on the host: the grid's blocks, each block's threads,
// barriers and warp collectives.
//
// Two implementations share this interface:
// - exec_fibers.cpp (the emulated driver): every CUDA thread runs on a fiber (a small
//   stack and a hand-written context switch), all threads of a block on one OS thread;
//   a thread runs until it exits or waits at `__syncthreads` / a warp collective, and a
//   fiber whose thread exits takes the block's next thread, so a kernel without barriers
//   costs one function call per thread. Independent blocks run on a pool of worker
//   threads (one per core, VIGIL_EMU_THREADS to override).
// - exec_threads.cpp (the race build under ThreadSanitizer): one OS thread per CUDA
//   thread, barriers are std::barrier, blocks one after another — so TSan sees exactly
//   the happens-before edges a GPU guarantees and reports any access pair a missing
//   barrier leaves unordered.
#pragma once

#include "registry.h"
#include "types.h"

namespace vigil_emu {

/// One kernel launch, fully validated by the caller (limits, parameters).
struct Launch {
    const KernelEntry* kernel;
    const unsigned char* params;  ///< packed parameter buffer, kernel->param_bytes long
    dim3 grid;
    dim3 block;
    const char* what;  ///< for reports, e.g. "kernel pointwise_f16 (launch #12)"
};

/// Run every block of `l` to completion. Errors in the kernel (divergent barrier,
/// deadlock, incomplete warp in a collective) are fatal: reported, then abort().
void execute(const Launch& l);

/// Worker threads `execute` uses (including the calling thread).
unsigned worker_count();

}  // namespace vigil_emu
