// memory.h — "device" and pinned host memory with sanitizer-style checks.
//
// Layout. One big PROT_NONE reservation (the arena) is carved by a bump pointer that only
// moves forward: every allocation gets its own pages, a PROT_NONE guard page before
// them, and its bytes placed at the END of its pages (start rounded down to 256 bytes,
// CUDA's alignment), so an access running past the 256-byte-rounded end faults in the
// next guard page at once. The few bytes between the requested size and the page edges
// (the red zones) hold a canary that is verified after every kernel that was handed a
// pointer into the allocation, which catches smaller overruns. Freed allocations are
// decommitted and made PROT_NONE and their addresses are never handed out again, so a
// use after free faults too. New memory is filled with 0xFF (NaN in f16/f32, huge
// indices in integers) instead of the zeros a fresh mapping would give, so a missing
// memset shows up as a wrong result.
//
// A fault in the arena (or in a fiber stack's guard page) is reported by a SIGSEGV
// handler that names the allocation, how far outside it the access was, read or write,
// the kernel, block and thread — then the process aborts. Other faults go to the handler
// that was installed before (Rust's stack-overflow handler, or the default action).
//
// The allocation table is append-only and sorted by address (bump allocation), so
// lookups are lock-free binary searches that the signal handler can use too.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vigil_emu {

enum class MemKind : uint8_t { Device = 0, PinnedHost = 1 };

/// One allocation, live or freed (records are never removed). Every field but freed_flag is
/// written before the record is published (the table count, release/acquire) and never
/// changes; freed_by is written before freed_flag is set.
struct Allocation {
    uintptr_t lo, hi;    ///< its read-write pages [lo, hi) while live
    uintptr_t base;      ///< what the caller got
    std::size_t size;    ///< bytes the caller asked for
    MemKind kind;
    uint64_t serial;     ///< 1, 2, 3... per kind, in allocation order
    char origin[32];     ///< the API call that made it, e.g. "cuMemAllocAsync"
    char freed_by[48];   ///< the call that freed it ("" while live)
    int freed_flag;      ///< 0 live, 1 freed: written under the table lock, read anywhere
                         ///< through freed() (an atomic access)

    /// Has it been freed? (acquire: freed_by is complete when this says yes)
    bool freed() const { return __atomic_load_n(&freed_flag, __ATOMIC_ACQUIRE) != 0; }
};

/// Reserve the arena and install the SIGSEGV reporter. Idempotent.
void memory_init();

/// Bytes the emulated device reports as its memory (the budget for live device bytes).
std::size_t device_total_bytes();
/// Live device bytes.
std::size_t device_live_bytes();

/// Allocate `bytes` (> 0). Returns nullptr when the device budget or the arena is
/// exhausted.
void* allocate(std::size_t bytes, MemKind kind, const char* origin);

enum class FreeStatus { Ok, NotAllocated, NotBase, AlreadyFreed, WrongKind };

/// Free the allocation starting at `p`: decommit, PROT_NONE, never reused.
FreeStatus release(uintptr_t p, MemKind kind, const char* by);

/// The allocation whose pages (or the guard page just after them) contain `p`, live or
/// freed; nullptr if none. Lock-free.
const Allocation* find_allocation(uintptr_t p);

/// Is [p, p + n) inside one live allocation of `kind`? (n == 0: p inside or one past the
/// end). On failure `why` describes the range and the nearest allocation.
bool check_range(uintptr_t p, std::size_t n, MemKind kind, const Allocation** out, char* why,
                 std::size_t why_len);

/// The live allocation of any kind containing p (or one past its end), or nullptr.
const Allocation* find_live(uintptr_t p);

/// Verify the red-zone canaries of `a`; fatal (naming `what`) when something wrote there.
void verify_redzones(const Allocation* a, const char* what);

/// "allocation #12 [0x7f..+4096 bytes, device, cuMemAllocAsync]" (+ ", freed by ...").
void describe(const Allocation* a, char* buf, std::size_t len);

/// Make sure this thread has an alternate signal stack (to report fiber stack overflows).
void ensure_altstack();

}  // namespace vigil_emu
