// fiber.h — user-space contexts for CUDA threads: a stack of their own and a context
// switch that costs a handful of instructions (x86-64: six callee-saved registers and the
// stack pointer, hand-written; elsewhere ucontext's swapcontext, correct but slower).
//
// Fiber stacks come from mmap with a PROT_NONE guard page below, are pooled process-wide
// and never unmapped, so the SIGSEGV reporter can name a CUDA-thread stack overflow.
#pragma once

#include <cstddef>
#include <cstdint>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace vigil_emu {

/// A suspended execution context.
struct Context {
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
};

/// A fiber stack: usable memory [lo, hi), guard page just below lo.
struct FiberStack {
    char* lo = nullptr;
    char* hi = nullptr;
};

/// Bytes of usable stack per fiber (kernels keep small frames; 64 KiB leaves ample room).
constexpr std::size_t kFiberStackBytes = 64 * 1024;

/// Take a stack from the process-wide pool (mapping a new one when it is empty).
FiberStack acquire_stack();
/// Return a stack to the pool.
void release_stack(FiberStack s);

/// Prepare `ctx` so that switching to it calls `entry(arg)` on `stack`. `entry` must never
/// return (it switches away for good instead).
void context_init(Context* ctx, FiberStack stack, void (*entry)(void*), void* arg);

/// Save the current context in `from` and resume `to`.
void context_switch(Context* from, Context* to);

/// Is `addr` in the guard page of a fiber stack? (async-signal-safe)
bool in_fiber_guard(uintptr_t addr);

}  // namespace vigil_emu
