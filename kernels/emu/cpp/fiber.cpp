// fiber.cpp — see fiber.h.
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "report.h"

#if defined(__x86_64__)
// void vigil_emu_fiber_switch(void** save_sp, void* load_sp)
// Saves the callee-saved registers of the System V ABI on the current stack, stores the
// stack pointer in *save_sp, switches to load_sp and restores the same registers from
// there. MXCSR and the x87 control word are not switched: no kernel changes them.
asm(R"(
    .text
    .p2align 4
    .globl vigil_emu_fiber_switch
    .hidden vigil_emu_fiber_switch
    .type vigil_emu_fiber_switch, @function
vigil_emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size vigil_emu_fiber_switch, .-vigil_emu_fiber_switch

    .p2align 4
    .globl vigil_emu_fiber_start
    .hidden vigil_emu_fiber_start
    .type vigil_emu_fiber_start, @function
vigil_emu_fiber_start:
    movq %r12, %rdi
    andq $-16, %rsp
    callq *%r13
    ud2
    .size vigil_emu_fiber_start, .-vigil_emu_fiber_start
)");
extern "C" void vigil_emu_fiber_start();
#endif

namespace vigil_emu {

namespace {

std::size_t page_size() {
    static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return p;
}

// Every fiber stack region ever mapped (their bases): append-only, read by the signal
// handler.
constexpr std::size_t kMaxStacks = 1 << 16;
std::atomic<uintptr_t> g_regions[kMaxStacks];
std::atomic<std::size_t> g_num_regions{0};

std::mutex g_pool_mu;
std::vector<FiberStack>& pool() {
    static std::vector<FiberStack>* p = new std::vector<FiberStack>();  // never destroyed
    return *p;
}

}  // namespace

FiberStack acquire_stack() {
    {
        std::lock_guard<std::mutex> g(g_pool_mu);
        if (!pool().empty()) {
            FiberStack s = pool().back();
            pool().pop_back();
            return s;
        }
    }
    const std::size_t ps = page_size();
    // Map twice the region and keep the aligned part.
    void* m = ::mmap(nullptr, 2 * kFiberRegion, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fatal("cannot map a fiber stack");
    const uintptr_t raw = reinterpret_cast<uintptr_t>(m);
    const uintptr_t base = (raw + kFiberRegion - 1) & ~(kFiberRegion - 1);
    if (base > raw) ::munmap(m, base - raw);
    if (raw + 2 * kFiberRegion > base + kFiberRegion)
        ::munmap(reinterpret_cast<void*>(base + kFiberRegion), raw + 2 * kFiberRegion - (base + kFiberRegion));
    char* lo = reinterpret_cast<char*>(base);
    if (::mprotect(lo, ps, PROT_NONE) != 0) fatal("cannot protect a fiber stack guard page");
    auto* header = reinterpret_cast<FiberHeader*>(base + kFiberRegion - sizeof(FiberHeader));
    *header = FiberHeader{nullptr, nullptr, nullptr};
    std::lock_guard<std::mutex> g(g_pool_mu);
    std::size_t i = g_num_regions.load(std::memory_order_relaxed);
    if (i < kMaxStacks) {
        g_regions[i].store(base, std::memory_order_relaxed);
        g_num_regions.store(i + 1, std::memory_order_release);
    }
    // Stacks all start at the same offset of equally aligned regions, so their hot top lines
    // would fall in the same L1 sets (a block's 128 threads thrash an 8-way cache): start
    // each one a different number of cache lines below its header.
    const uintptr_t color = (i * 7 % 64) * 64;
    char* hi = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(header) & ~uintptr_t(63)) - color);
    return FiberStack{lo + ps, hi, header};
}

void release_stack(FiberStack s) {
    std::lock_guard<std::mutex> g(g_pool_mu);
    pool().push_back(s);
}

namespace {
bool is_region(uintptr_t base) {
    const std::size_t n = g_num_regions.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i)
        if (g_regions[i].load(std::memory_order_relaxed) == base) return true;
    return false;
}
}  // namespace

bool in_fiber_guard(uintptr_t addr) {
    const uintptr_t base = addr & ~(kFiberRegion - 1);
    return addr - base < page_size() && is_region(base);
}

const FiberHeader* fiber_header_at(uintptr_t sp) {
    const uintptr_t base = sp & ~(kFiberRegion - 1);
    if (!is_region(base)) return nullptr;
    return reinterpret_cast<const FiberHeader*>(base + kFiberRegion - sizeof(FiberHeader));
}

#if defined(__x86_64__)

void context_init(Context* ctx, FiberStack stack, void (*entry)(void*), void* arg) {
    // Initial frame, popped by vigil_emu_fiber_switch: r15 r14 r13 r12 rbx rbp, then `ret`
    // into vigil_emu_fiber_start, which calls entry(arg) (r13 = entry, r12 = arg) on a
    // 16-byte aligned stack.
    uintptr_t top = reinterpret_cast<uintptr_t>(stack.hi) & ~uintptr_t(15);
    auto* sp = reinterpret_cast<uintptr_t*>(top);
    *--sp = 0;                                                      // alignment slot
    *--sp = reinterpret_cast<uintptr_t>(&vigil_emu_fiber_start);    // ret target
    *--sp = 0;                                                      // rbp
    *--sp = 0;                                                      // rbx
    *--sp = reinterpret_cast<uintptr_t>(arg);                       // r12
    *--sp = reinterpret_cast<uintptr_t>(entry);                     // r13
    *--sp = 0;                                                      // r14
    *--sp = 0;                                                      // r15
    ctx->sp = sp;
}

#else

namespace {
// makecontext passes int arguments only: split the two pointers into 32-bit halves.
void start_trampoline(unsigned e_hi, unsigned e_lo, unsigned a_hi, unsigned a_lo) {
    auto entry = reinterpret_cast<void (*)(void*)>((uintptr_t(e_hi) << 32) | e_lo);
    auto arg = reinterpret_cast<void*>((uintptr_t(a_hi) << 32) | a_lo);
    entry(arg);
    fatal("a fiber entry returned");
}
}  // namespace

void context_init(Context* ctx, FiberStack stack, void (*entry)(void*), void* arg) {
    if (::getcontext(&ctx->uc) != 0) fatal("getcontext failed");
    ctx->uc.uc_stack.ss_sp = stack.lo;
    ctx->uc.uc_stack.ss_size = static_cast<std::size_t>(stack.hi - stack.lo);
    ctx->uc.uc_link = nullptr;
    uintptr_t e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
    ::makecontext(&ctx->uc, reinterpret_cast<void (*)()>(&start_trampoline), 4,
                  unsigned(e >> 32), unsigned(e), unsigned(a >> 32), unsigned(a));
}

void context_switch(Context* from, Context* to) {
    if (::swapcontext(&from->uc, &to->uc) != 0) fatal("swapcontext failed");
}

#endif

}  // namespace vigil_emu
