// memory.cpp — see memory.h.
#include "memory.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "types.h"
#include "fiber.h"
#include "report.h"

namespace vigil_emu {

namespace {

constexpr unsigned char kCanary = 0xCD;  // red zones
constexpr unsigned char kPoison = 0xFF;  // fresh memory
constexpr std::size_t kAlign = 256;      // CUDA's allocation alignment
constexpr std::size_t kChunk = 4096;     // records per table chunk
constexpr std::size_t kMaxChunks = 4096;

std::size_t g_page = 0;
uintptr_t g_arena_lo = 0, g_arena_hi = 0;
uintptr_t g_bump = 0;                 // end of the last allocation's pages
std::size_t g_total = 0;              // device memory the emulated device reports
std::size_t g_live = 0;               // live device bytes
uint64_t g_serial[2] = {0, 0};
std::mutex g_mu;                      // allocation and free (lookups are lock-free)
std::once_flag g_init_once;
struct sigaction g_prev_segv;

std::atomic<Allocation*> g_chunks[kMaxChunks];
std::atomic<std::size_t> g_count{0};

Allocation* rec(std::size_t i) {
    return g_chunks[i / kChunk].load(std::memory_order_acquire) + (i % kChunk);
}

std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

// Largest record index with key(i) <= p, or -1.
template <typename Key>
long search(uintptr_t p, Key key) {
    long lo = 0, hi = static_cast<long>(g_count.load(std::memory_order_acquire)) - 1, best = -1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (key(rec(static_cast<std::size_t>(mid))) <= p) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return best;
}

const char* kind_name(MemKind k) { return k == MemKind::Device ? "device" : "pinned host"; }

// ---- async-signal-safe formatting for the fault reporter ------------------------------

struct SigBuf {
    char b[1536];
    std::size_t n = 0;
    SigBuf& s(const char* t) {
        while (*t && n + 1 < sizeof b) b[n++] = *t++;
        b[n] = 0;
        return *this;
    }
    SigBuf& u(uint64_t v) {
        char t[24];
        int i = 0;
        do {
            t[i++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v && i < 23);
        while (i > 0 && n + 1 < sizeof b) b[n++] = t[--i];
        b[n] = 0;
        return *this;
    }
    SigBuf& x(uint64_t v) {
        s("0x");
        char t[20];
        int i = 0;
        do {
            t[i++] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v && i < 19);
        while (i > 0 && n + 1 < sizeof b) b[n++] = t[--i];
        b[n] = 0;
        return *this;
    }
    SigBuf& alloc(const Allocation* a) {
        s("allocation #").u(a->serial).s(" [").x(a->base).s(" + ").u(a->size).s(" bytes, ");
        s(kind_name(a->kind)).s(", ").s(a->origin).s("]");
        return *this;
    }
    SigBuf& dim(unsigned x, unsigned y, unsigned z) {
        return s("(").u(x).s(",").u(y).s(",").u(z).s(")");
    }
};

void chain_to_previous(int sig, siginfo_t* si, void* uctx) {
    if ((g_prev_segv.sa_flags & SA_SIGINFO) && g_prev_segv.sa_sigaction) {
        g_prev_segv.sa_sigaction(sig, si, uctx);
        return;
    }
    if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN) {
        g_prev_segv.sa_handler(sig);
        return;
    }
    // Default action: uninstall ourselves and return; the access faults again and the
    // process dies the ordinary way.
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
}

void on_segv(int sig, siginfo_t* si, void* uctx) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
    const bool in_arena = a >= g_arena_lo && a < g_arena_hi;
    const bool in_stack_guard = !in_arena && in_fiber_guard(a);
    if (!in_arena && !in_stack_guard) {
        chain_to_previous(sig, si, uctx);
        return;
    }
    const char* access = "access";
    uintptr_t sp = 0;
    if (uctx) {
        auto* uc = static_cast<ucontext_t*>(uctx);
#if defined(__x86_64__)
        access = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? "write" : "read";
        sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
        sp = static_cast<uintptr_t>(uc->uc_mcontext.sp);
#endif
    }
    SigBuf m;
    m.s("\nvigil-cuda-emu: ERROR: ");
    if (in_stack_guard) {
        m.s("stack overflow of an emulated CUDA thread (").u(kFiberStackBytes / 1024);
        m.s(" KiB fiber stack) at ").x(a);
    } else {
        m.s("invalid memory ").s(access).s(" at ").x(a).s(": ");
        long i = search(a, [](const Allocation* r) { return r->lo; });
        const Allocation* r = i >= 0 ? rec(static_cast<std::size_t>(i)) : nullptr;
        if (r && a < r->hi && r->freed()) {
            m.s("use after free — byte ").u(a - r->base).s(" of ").alloc(r).s(", freed by ").s(r->freed_by);
        } else if (r && a < r->hi) {
            m.s("inside ").alloc(r).s(" but not accessible");
        } else if (r && a < r->hi + g_page) {
            m.u(a - (r->base + r->size)).s(" bytes past the end of ").alloc(r);
            if (r->freed()) m.s(" (already freed by ").s(r->freed_by).s(")");
            std::size_t n = g_count.load(std::memory_order_acquire);
            if (static_cast<std::size_t>(i) + 1 < n) {
                const Allocation* nx = rec(static_cast<std::size_t>(i) + 1);
                if (nx->lo == r->hi + g_page)
                    m.s(" — or ").u(nx->base - a).s(" bytes before the start of ").alloc(nx);
            }
        } else {
            m.s("not inside any allocation");
        }
    }
    m.s("\n");
    // The faulting CUDA thread: from the header of the fiber stack it ran on.
    const FiberHeader* fh = sp ? fiber_header_at(sp) : nullptr;
    if (fh && fh->thread && fh->block) {
        m.s("vigil-cuda-emu:   by CUDA thread ").dim(fh->thread->idx.x, fh->thread->idx.y, fh->thread->idx.z);
        m.s(" of block ").dim(fh->block->idx.x, fh->block->idx.y, fh->block->idx.z).s("\n");
    }
    if (tls_op[0]) {
        m.s("vigil-cuda-emu:   while executing ").s(tls_op).s("\n");
    } else {
        m.s("vigil-cuda-emu:   in host code, not in device work (e.g. the host touching freed pinned memory)\n");
    }
    m.s("vigil-cuda-emu: aborting (a device memory error is fatal, as under compute-sanitizer)\n");
    raw_write(m.b);
    abort();
}

void init_once() {
    g_page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    // Address space for every allocation the process will ever make (never reused).
    for (std::size_t gib : {1024, 256, 64, 16}) {
        std::size_t bytes = gib << 30;
        void* m = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            g_arena_lo = reinterpret_cast<uintptr_t>(m);
            g_arena_hi = g_arena_lo + bytes;
            break;
        }
    }
    if (!g_arena_lo) fatal("cannot reserve address space for emulated device memory");
    g_bump = g_arena_lo;
    // The device reports 8 GiB, or half the host's memory when that is less.
    long pages = ::sysconf(_SC_PHYS_PAGES);
    std::size_t phys = pages > 0 ? static_cast<std::size_t>(pages) * g_page : (std::size_t(16) << 30);
    g_total = std::min<std::size_t>(std::size_t(8) << 30, phys / 2);

    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &g_prev_segv) != 0) fatal("cannot install the SIGSEGV reporter");
}

struct AltStack {
    void* mem = nullptr;
    std::size_t size = 0;
    ~AltStack() {
        if (!mem) return;
        stack_t off;
        std::memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        sigaltstack(&off, nullptr);
        ::munmap(mem, size);
    }
};
thread_local AltStack t_altstack;

}  // namespace

void memory_init() { std::call_once(g_init_once, init_once); }

std::size_t device_total_bytes() {
    memory_init();
    return g_total;
}

std::size_t device_live_bytes() {
    std::lock_guard<std::mutex> g(g_mu);
    return g_live;
}

void* allocate(std::size_t bytes, MemKind kind, const char* origin) {
    memory_init();
    if (bytes == 0) return nullptr;
    std::lock_guard<std::mutex> g(g_mu);
    if (kind == MemKind::Device && (bytes > g_total || g_live > g_total - bytes)) return nullptr;
    const std::size_t rounded = round_up(bytes, kAlign);
    const std::size_t pages = round_up(rounded, g_page);
    const uintptr_t lo = g_bump + g_page;  // one guard page before
    const uintptr_t hi = lo + pages;
    if (hi + g_page > g_arena_hi || hi < lo) return nullptr;
    std::size_t n = g_count.load(std::memory_order_relaxed);
    if (n / kChunk >= kMaxChunks) return nullptr;
    if (!g_chunks[n / kChunk].load(std::memory_order_relaxed)) {
        auto* chunk = static_cast<Allocation*>(std::calloc(kChunk, sizeof(Allocation)));
        if (!chunk) return nullptr;
        g_chunks[n / kChunk].store(chunk, std::memory_order_release);
    }
    if (::mprotect(reinterpret_cast<void*>(lo), pages, PROT_READ | PROT_WRITE) != 0) return nullptr;
    g_bump = hi;
    const uintptr_t base = hi - rounded;
    std::memset(reinterpret_cast<void*>(lo), kCanary, base - lo);
    std::memset(reinterpret_cast<void*>(base), kPoison, bytes);
    std::memset(reinterpret_cast<void*>(base + bytes), kCanary, hi - (base + bytes));
    Allocation* r = rec(n);
    r->lo = lo;
    r->hi = hi;
    r->base = base;
    r->size = bytes;
    r->kind = kind;
    r->serial = ++g_serial[static_cast<int>(kind)];
    std::snprintf(r->origin, sizeof r->origin, "%s", origin);
    r->freed_by[0] = 0;
    r->freed_flag = 0;
    g_count.store(n + 1, std::memory_order_release);
    if (kind == MemKind::Device) g_live += bytes;
    return reinterpret_cast<void*>(base);
}

FreeStatus release(uintptr_t p, MemKind kind, const char* by) {
    memory_init();
    std::lock_guard<std::mutex> g(g_mu);
    long i = search(p, [](const Allocation* r) { return r->base; });
    if (i < 0) return FreeStatus::NotAllocated;
    Allocation* r = rec(static_cast<std::size_t>(i));
    if (p >= r->base + r->size && !(r->size == 0 && p == r->base)) return FreeStatus::NotAllocated;
    if (p != r->base) return FreeStatus::NotBase;
    if (r->kind != kind) return FreeStatus::WrongKind;
    if (r->freed()) return FreeStatus::AlreadyFreed;
    void* pages = reinterpret_cast<void*>(r->lo);
    const std::size_t len = r->hi - r->lo;
    ::madvise(pages, len, MADV_DONTNEED);
    if (::mprotect(pages, len, PROT_NONE) != 0) fatal("cannot protect freed memory");
    std::snprintf(r->freed_by, sizeof r->freed_by, "%s", by);
    __atomic_store_n(&r->freed_flag, 1, __ATOMIC_RELEASE);
    if (kind == MemKind::Device) g_live -= r->size;
    return FreeStatus::Ok;
}

const Allocation* find_allocation(uintptr_t p) {
    long i = search(p, [](const Allocation* r) { return r->lo; });
    if (i < 0) return nullptr;
    const Allocation* r = rec(static_cast<std::size_t>(i));
    return p < r->hi + g_page ? r : nullptr;
}

const Allocation* find_live(uintptr_t p) {
    long i = search(p, [](const Allocation* r) { return r->base; });
    if (i < 0) return nullptr;
    const Allocation* r = rec(static_cast<std::size_t>(i));
    if (r->freed() || p > r->base + r->size) return nullptr;
    return r;
}

void describe(const Allocation* a, char* buf, std::size_t len) {
    std::snprintf(buf, len, "allocation #%llu [%#llx + %zu bytes, %s, %s%s%s]",
                  static_cast<unsigned long long>(a->serial), static_cast<unsigned long long>(a->base),
                  a->size, kind_name(a->kind), a->origin, a->freed() ? ", freed by " : "",
                  a->freed() ? a->freed_by : "");
}

bool check_range(uintptr_t p, std::size_t n, MemKind kind, const Allocation** out, char* why,
                 std::size_t why_len) {
    if (out) *out = nullptr;
    if (why_len) why[0] = 0;
    long i = search(p, [](const Allocation* r) { return r->base; });
    const Allocation* r = i >= 0 ? rec(static_cast<std::size_t>(i)) : nullptr;
    char d[256] = "";
    if (!r || p > r->base + r->size) {
        const Allocation* near = r;
        std::size_t cnt = g_count.load(std::memory_order_acquire);
        if (static_cast<std::size_t>(i + 1) < cnt) {
            const Allocation* nx = rec(static_cast<std::size_t>(i + 1));
            if (!near || nx->base - p < p - (near->base + near->size)) near = nx;
        }
        if (near) describe(near, d, sizeof d);
        std::snprintf(why, why_len, "%#llx%s is not inside any %s allocation%s%s",
                      static_cast<unsigned long long>(p), n ? (" + " + std::to_string(n) + " bytes").c_str() : "",
                      kind_name(kind), near ? "; nearest: " : "", d);
        return false;
    }
    describe(r, d, sizeof d);
    if (r->freed()) {
        std::snprintf(why, why_len, "%#llx%s is in freed %s (use after free)", static_cast<unsigned long long>(p),
                      n ? (" + " + std::to_string(n) + " bytes").c_str() : "", d);
        return false;
    }
    if (r->kind != kind) {
        std::snprintf(why, why_len, "%#llx is in %s, not %s memory", static_cast<unsigned long long>(p),
                      d, kind_name(kind));
        return false;
    }
    if (n > r->base + r->size - p) {
        std::snprintf(why, why_len, "%#llx + %zu bytes overruns %s by %zu bytes",
                      static_cast<unsigned long long>(p), n, d,
                      static_cast<std::size_t>(p + n - (r->base + r->size)));
        return false;
    }
    if (out) *out = r;
    return true;
}

void verify_redzones(const Allocation* a, const char* what) {
    if (a->freed()) return;
    const auto* lo = reinterpret_cast<const unsigned char*>(a->lo);
    const auto* base = reinterpret_cast<const unsigned char*>(a->base);
    const auto* end = base + a->size;
    const auto* hi = reinterpret_cast<const unsigned char*>(a->hi);
    const unsigned char* last = nullptr;  // the furthest corrupted byte after the end
    for (const unsigned char* p = end; p < hi; ++p)
        if (*p != kCanary) last = p;
    const unsigned char* first = nullptr;  // the furthest corrupted byte before the start
    for (const unsigned char* p = base; p > lo;)
        if (*--p != kCanary) first = p;
    if (!last && !first) return;
    char d[256];
    describe(a, d, sizeof d);
    if (last)
        fatal("%s wrote up to %zu bytes past the end of %s (found in its red zone after the kernel)", what,
              static_cast<std::size_t>(last - end) + 1, d);
    fatal("%s wrote up to %zu bytes before the start of %s (found in its red zone after the kernel)", what,
          static_cast<std::size_t>(base - first), d);
}

void ensure_altstack() {
    if (t_altstack.mem) return;
    stack_t cur;
    if (sigaltstack(nullptr, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return;  // one exists
    const std::size_t size = 64 * 1024;
    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    stack_t ss;
    std::memset(&ss, 0, sizeof ss);
    ss.ss_sp = m;
    ss.ss_size = size;
    if (sigaltstack(&ss, nullptr) != 0) {
        ::munmap(m, size);
        return;
    }
    t_altstack.mem = m;
    t_altstack.size = size;
}

}  // namespace vigil_emu
