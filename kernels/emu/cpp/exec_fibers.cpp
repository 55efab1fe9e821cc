// exec_fibers.cpp — the emulated driver's executor: CUDA threads on fibers (see exec.h).
//
// Per block, on one OS thread (a Worker):
// - A fiber takes the block's next unstarted thread, runs it, and when the thread
//   returns takes the next one, so a block whose threads never wait runs on one fiber,
//   one plain call per thread.
// - A thread that reaches `__syncthreads` or a warp collective (mma.sync) suspends its
//   fiber; the scheduler then starts another fiber on the next unstarted thread. When
//   every thread that has not exited has arrived, the barrier releases them (in thread
//   order) and the last one to arrive goes on without a switch. A warp collective
//   completes when its 32 lanes have arrived: the last lane computes the whole warp's
//   result from the fragments all lanes deposited, then every lane reads its part.
// - A divergent barrier (threads of one block waiting at different `__syncthreads`), a
//   collective on an incomplete warp, a lane exiting while its warp waits, and a block
//   in which every remaining thread waits for something that cannot happen (deadlock)
//   are fatal, with the places named.
// Blocks are independent: a pool of worker threads (worker_count(), the calling thread
// included) claims them from an atomic counter.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "exec.h"
#include "fiber.h"
#include "memory.h"
#include "mma.h"
#include "report.h"

namespace vigil_emu {

// Declared for the race executor's built-ins; the fiber executor uses fiber_header().
__thread const ThreadRegs* tls_thread = nullptr;
__thread const BlockRegs* tls_block = nullptr;

namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kMaxWarps = kMaxThreads / 32;

struct Worker;

struct Fiber {
    Context ctx;
    FiberStack stack;  // its header tells the running kernel code which thread it is
    Worker* worker = nullptr;
    int tid = -1;  // the CUDA thread it runs, -1 while parked
};

/// A warp's state for collectives, and the mma fragment exchange.
struct Warp {
    unsigned lanes = 0;    // threads of the block in this warp
    unsigned exited = 0;
    unsigned arrived = 0;  // lanes waiting at the current collective
    const char* site = nullptr;
    Fiber* waiting[32];
    MmaTile tile;
};

struct Worker {
    Context sched;
    std::vector<std::unique_ptr<Fiber>> owned;
    std::vector<Fiber*> parked;
    Fiber* cur = nullptr;
    const Launch* launch = nullptr;
    BlockRegs regs{};
    ThreadRegs tregs[kMaxThreads];
    unsigned nthreads = 0, next_tid = 0, exited = 0, live = 0;
    // block barrier
    Fiber* bar_wait[kMaxThreads];
    unsigned bar_n = 0;
    const char* bar_site = nullptr;
    int bar_first_tid = -1;
    Warp warps[kMaxWarps];
    // fibers ready to resume, FIFO
    Fiber* ready[kMaxThreads];
    unsigned ready_head = 0, ready_count = 0;

    Worker() { ensure_altstack(); }
    ~Worker() {
        for (auto& f : owned) release_stack(f->stack);
    }
    void push_ready(Fiber* f) {
        ready[(ready_head + ready_count) % kMaxThreads] = f;
        ++ready_count;
    }
    Fiber* pop_ready() {
        Fiber* f = ready[ready_head];
        ready_head = (ready_head + 1) % kMaxThreads;
        --ready_count;
        return f;
    }
};

__thread Worker* tls_worker = nullptr;
thread_local std::unique_ptr<Worker> t_worker_owner;

Worker* this_worker() {
    if (!tls_worker) {
        t_worker_owner = std::make_unique<Worker>();
        tls_worker = t_worker_owner.get();
    }
    return tls_worker;
}

void describe_thread(const Worker* w, int tid, char* buf, std::size_t n) {
    const uint3 t = w->tregs[tid].idx;
    std::snprintf(buf, n, "thread (%u,%u,%u) of block (%u,%u,%u)", t.x, t.y, t.z, w->regs.idx.x,
                  w->regs.idx.y, w->regs.idx.z);
}

Fiber* take_fiber(Worker* w);

/// Switch from `self` (blocked, or parked with nothing left to start) straight to the next
/// runnable fiber: one released from a barrier or collective, else a fiber for the next
/// unstarted thread, else the scheduler (the block is done, or deadlocked). Returns when
/// someone switches back to `self`.
void switch_away(Worker* w, Fiber* self) {
    Fiber* next = nullptr;
    if (w->ready_count) {
        next = w->pop_ready();
    } else if (w->next_tid < w->nthreads) {
        next = take_fiber(w);
        ++w->live;
    }
    if (next) {
        w->cur = next;
        context_switch(&self->ctx, &next->ctx);
    } else {
        context_switch(&self->ctx, &w->sched);
    }
}

/// Block the running CUDA thread until a barrier or collective releases it.
void suspend(Worker* w, Fiber* self) { switch_away(w, self); }

void release_barrier(Worker* w, Fiber* except) {
    for (unsigned i = 0; i < w->bar_n; ++i)
        if (w->bar_wait[i] != except) w->push_ready(w->bar_wait[i]);
    w->bar_n = 0;
    w->bar_site = nullptr;
    w->bar_first_tid = -1;
}

void thread_exited(Worker* w, Fiber* self) {
    const unsigned t = static_cast<unsigned>(self->tid);
    ++w->exited;
    Warp& wp = w->warps[t / 32];
    ++wp.exited;
    if (wp.arrived > 0) {
        char who[96];
        describe_thread(w, self->tid, who, sizeof who);
        fatal("%s exited while %u lanes of its warp wait at the warp collective at %s "
              "(mma.sync needs every lane of the warp)",
              who, wp.arrived, wp.site);
    }
    // Exited threads no longer count for __syncthreads (sm_70+ semantics).
    if (w->bar_n > 0 && w->bar_n + w->exited == w->nthreads) release_barrier(w, nullptr);
}

void fiber_main(void* arg) {
    Fiber* self = static_cast<Fiber*>(arg);
    Worker* w = self->worker;
    for (;;) {
        while (w->next_tid < w->nthreads) {
            const unsigned t = w->next_tid++;
            self->tid = static_cast<int>(t);
            self->stack.header->thread = &w->tregs[t];
            w->launch->kernel->invoke(w->launch->params);
            thread_exited(w, self);
        }
        // No thread left to start in this block: park until the next block needs a fiber.
        self->tid = -1;
        self->stack.header->thread = nullptr;
        --w->live;
        w->parked.push_back(self);
        switch_away(w, self);
    }
}

Fiber* take_fiber(Worker* w) {
    if (!w->parked.empty()) {
        Fiber* f = w->parked.back();
        w->parked.pop_back();
        return f;
    }
    auto f = std::make_unique<Fiber>();
    f->worker = w;
    f->stack = acquire_stack();
    f->stack.header->fiber = f.get();
    f->stack.header->block = &w->regs;
    context_init(&f->ctx, f->stack, &fiber_main, f.get());
    Fiber* raw = f.get();
    w->owned.push_back(std::move(f));
    return raw;
}

[[noreturn]] void deadlock(Worker* w) {
    char msg[1536];
    int n = std::snprintf(msg, sizeof msg,
                          "deadlock in block (%u,%u,%u): %u of %u threads exited, %u wait at "
                          "__syncthreads%s%s",
                          w->regs.idx.x, w->regs.idx.y, w->regs.idx.z, w->exited, w->nthreads,
                          w->bar_n, w->bar_n ? " at " : "", w->bar_n ? w->bar_site : "");
    for (unsigned i = 0; i < (w->nthreads + 31) / 32 && n > 0 && n < static_cast<int>(sizeof msg); ++i)
        if (w->warps[i].arrived)
            n += std::snprintf(msg + n, sizeof msg - n, "; warp %u: %u lanes wait at the collective at %s", i,
                               w->warps[i].arrived, w->warps[i].site);
    fatal("%s (a barrier or warp collective that not every thread reaches)", msg);
}

void run_block(Worker* w, uint3 bidx) {
    w->regs.idx = bidx;
    w->next_tid = 0;
    w->exited = 0;
    w->live = 0;
    w->bar_n = 0;
    w->bar_site = nullptr;
    w->ready_head = w->ready_count = 0;
    for (unsigned i = 0; i < (w->nthreads + 31) / 32; ++i) {
        Warp& wp = w->warps[i];
        wp.lanes = std::min(32u, w->nthreads - 32 * i);
        wp.exited = wp.arrived = 0;
        wp.site = nullptr;
    }
    // Fibers hand over to each other directly (switch_away); control comes back here only
    // when nothing is runnable: every thread has exited, or the rest wait forever.
    Fiber* first = take_fiber(w);
    ++w->live;
    w->cur = first;
    context_switch(&w->sched, &first->ctx);
    if (w->live != 0 || w->ready_count || w->next_tid < w->nthreads) deadlock(w);
    w->cur = nullptr;
}

void prepare(Worker* w, const Launch& l) {
    w->launch = &l;
    w->regs.dim = l.block;
    w->regs.grid = l.grid;
    w->nthreads = l.block.x * l.block.y * l.block.z;
    for (unsigned t = 0; t < w->nthreads; ++t)
        w->tregs[t].idx = uint3{t % l.block.x, (t / l.block.x) % l.block.y, t / (l.block.x * l.block.y)};
}

uint3 block_index(const Launch& l, uint64_t i) {
    return uint3{static_cast<unsigned>(i % l.grid.x), static_cast<unsigned>((i / l.grid.x) % l.grid.y),
                 static_cast<unsigned>(i / (uint64_t(l.grid.x) * l.grid.y))};
}

/// The block-worker pool: helpers wait for a launch, claim blocks, report back.
class Pool {
public:
    explicit Pool(unsigned helpers) {
        for (unsigned i = 0; i < helpers; ++i) threads_.emplace_back([this] { helper(); });
    }
    // Helpers live as long as the process; the pool is never destroyed (see pool()).

    void run(const Launch& l) {
        const uint64_t total = uint64_t(l.grid.x) * l.grid.y * l.grid.z;
        Worker* w = this_worker();
        prepare(w, l);
        if (total == 1 || threads_.empty()) {
            for (uint64_t i = 0; i < total; ++i) run_block(w, block_index(l, i));
            return;
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            job_ = &l;
            total_ = total;
            next_.store(0, std::memory_order_relaxed);
            busy_ = static_cast<unsigned>(threads_.size());
            std::snprintf(op_, sizeof op_, "%s", tls_op);
            ++gen_;
        }
        cv_.notify_all();
        claim(w, l);
        std::unique_lock<std::mutex> g(mu_);
        done_.wait(g, [this] { return busy_ == 0; });
        job_ = nullptr;
    }

    unsigned size() const { return static_cast<unsigned>(threads_.size()) + 1; }

private:
    void claim(Worker* w, const Launch& l) {
        for (;;) {
            const uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
            if (i >= total_) break;
            run_block(w, block_index(l, i));
        }
    }

    void helper() {
        uint64_t seen = 0;
        Worker* w = this_worker();
        for (;;) {
            const Launch* l;
            {
                std::unique_lock<std::mutex> g(mu_);
                cv_.wait(g, [&] { return gen_ != seen; });
                seen = gen_;
                l = job_;
                std::snprintf(tls_op, sizeof tls_op, "%.200s (on an emulator worker thread)", op_);
            }
            prepare(w, *l);
            claim(w, *l);
            tls_op[0] = 0;
            {
                std::lock_guard<std::mutex> g(mu_);
                if (--busy_ == 0) done_.notify_one();
            }
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_, done_;
    const Launch* job_ = nullptr;
    uint64_t gen_ = 0;
    uint64_t total_ = 0;
    std::atomic<uint64_t> next_{0};
    unsigned busy_ = 0;
    char op_[256] = "";
};

unsigned configured_workers() {
    if (const char* e = std::getenv("VIGIL_EMU_THREADS")) {
        long v = std::strtol(e, nullptr, 10);
        if (v >= 1 && v <= 256) return static_cast<unsigned>(v);
    }
    unsigned hc = std::thread::hardware_concurrency();
    return std::clamp(hc, 1u, 64u);
}

Pool& pool() {
    // Leaked on purpose: helper threads outlive static destruction at exit.
    static Pool* p = new Pool(configured_workers() - 1);
    return *p;
}

}  // namespace

unsigned worker_count() { return pool().size(); }

void execute(const Launch& l) { pool().run(l); }

namespace {
/// The fiber running the calling kernel code (found from its stack, see types.h).
Fiber* running_fiber() { return static_cast<Fiber*>(fiber_header()->fiber); }
}  // namespace

void syncthreads(const char* site) {
    Fiber* self = running_fiber();
    Worker* w = self->worker;
    if (w->bar_n == 0) {
        w->bar_site = site;
        w->bar_first_tid = self->tid;
    } else if (site != w->bar_site && std::strcmp(site, w->bar_site) != 0) {
        char a[96], b[96];
        describe_thread(w, w->bar_first_tid, a, sizeof a);
        describe_thread(w, self->tid, b, sizeof b);
        fatal("divergent __syncthreads: %s waits at %s while %s reached %s "
              "(every thread of a block must reach the same barrier)",
              a, w->bar_site, b, site);
    }
    w->bar_wait[w->bar_n++] = self;
    if (w->bar_n + w->exited == w->nthreads) {
        release_barrier(w, self);  // the last to arrive goes on
        return;
    }
    suspend(w, self);
}

void warp_mma_m16n8k16_f16_f32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                               const char* site) {
    Fiber* self = running_fiber();
    Worker* w = self->worker;
    const unsigned t = static_cast<unsigned>(self->tid), lane = t & 31;
    Warp& wp = w->warps[t / 32];
    if (wp.lanes != 32 || wp.exited) {
        char who[96];
        describe_thread(w, self->tid, who, sizeof who);
        fatal("mma.sync.aligned at %s by %s: its warp has %u of 32 lanes running (blockDim "
              "(%u,%u,%u)); the instruction needs the whole warp",
              site, who, wp.lanes - wp.exited, w->regs.dim.x, w->regs.dim.y, w->regs.dim.z);
    }
    if (wp.arrived == 0) {
        wp.site = site;
    } else if (site != wp.site && std::strcmp(site, wp.site) != 0) {
        fatal("divergent warp collective: lanes of warp %u wait at %s, lane %u reached %s", t / 32,
              wp.site, lane, site);
    }
    mma_deposit(wp.tile, lane, a, b, c);
    wp.waiting[wp.arrived++] = self;
    if (wp.arrived == 32) {
        mma_compute(wp.tile);
        // The warp's lanes run next (front of the queue, in arrival order), so a warp goes
        // through its run of mma.sync before other warps resume: 32 stacks stay hot in the
        // cache instead of the block's whole set of threads.
        unsigned head = w->ready_head;
        for (unsigned i = 32; i-- > 0;)
            if (wp.waiting[i] != self) {
                head = (head + kMaxThreads - 1) % kMaxThreads;
                w->ready[head] = wp.waiting[i];
            }
        w->ready_head = head;
        w->ready_count += 31;
        wp.arrived = 0;
        wp.site = nullptr;
    } else {
        suspend(w, self);
    }
    mma_collect(wp.tile, lane, c);
}

}  // namespace vigil_emu
