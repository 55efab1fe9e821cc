// fiber.h — user-space contexts for CUDA threads: a stack of their own and a context
// switch that costs a handful of instructions (x86-64: six callee-saved registers and the
// stack pointer, hand-written; elsewhere ucontext's swapcontext, correct but slower).
//
// A fiber stack is a kFiberRegion-aligned region (types.h): a PROT_NONE guard page at the
// bottom, the FiberHeader at the top, the stack in between. Stacks are pooled process-wide
// and never unmapped, so the SIGSEGV reporter can name a CUDA-thread stack overflow and
// find the header (the faulting thread's indices) from the faulting stack pointer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "types.h"

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

/// A fiber stack: usable memory [lo, hi), guard page just below lo, header at hi.
struct FiberStack {
    char* lo = nullptr;
    char* hi = nullptr;
    FiberHeader* header = nullptr;
};

/// Usable stack per fiber, about (kernels keep small frames).
constexpr std::size_t kFiberStackBytes = kFiberRegion - 4096 - 64;

/// Take a stack from the process-wide pool (mapping a new one when it is empty).
FiberStack acquire_stack();
/// Return a stack to the pool.
void release_stack(FiberStack s);

/// Prepare `ctx` so that switching to it calls `entry(arg)` on `stack`. `entry` must never
/// return (it switches away for good instead).
void context_init(Context* ctx, FiberStack stack, void (*entry)(void*), void* arg);

#if defined(__x86_64__)
extern "C" void vigil_emu_fiber_switch(void** save_sp, void* load_sp);
/// Save the current context in `from` and resume `to`.
inline void context_switch(Context* from, Context* to) { vigil_emu_fiber_switch(&from->sp, to->sp); }
#else
/// Save the current context in `from` and resume `to`.
void context_switch(Context* from, Context* to);
#endif

/// Is `addr` in the guard page of a fiber stack? (async-signal-safe)
bool in_fiber_guard(uintptr_t addr);

/// The header of the fiber stack containing `sp`, or nullptr when `sp` is not on one.
/// (async-signal-safe)
const FiberHeader* fiber_header_at(uintptr_t sp);

}  // namespace vigil_emu
