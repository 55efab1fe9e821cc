// exec_threads.cpp — the race build's executor (see exec.h): every CUDA thread of a block
// is an OS thread, `__syncthreads` is a std::barrier over the block, mma.sync two
// std::barrier phases over the warp (deposit, then collect after one lane computed), and
// blocks run one after another (`__shared__` is then a plain static, shared by the
// block's threads). Built with -fsanitize=thread, this gives ThreadSanitizer exactly the
// happens-before edges a GPU guarantees — barriers and thread start/exit — so any pair of
// accesses that only the missing barrier would have ordered is reported as a data race.
// An exited thread drops out of every barrier it would have joined (sm_70+ semantics).
#include <barrier>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "exec.h"
#include "mma.h"
#include "report.h"

namespace vigil_emu {

__thread const ThreadRegs* tls_thread = nullptr;
__thread const BlockRegs* tls_block = nullptr;

namespace {

struct WarpState {
    std::unique_ptr<std::barrier<>> bar;
    MmaTile tile;
};

struct BlockState {
    BlockRegs regs;
    std::vector<ThreadRegs> threads;
    std::unique_ptr<std::barrier<>> bar;
    std::vector<WarpState> warps;
    unsigned nthreads;
};

__thread BlockState* tls_state = nullptr;

}  // namespace

unsigned worker_count() { return 1; }

void execute(const Launch& l) {
    const unsigned n = l.block.x * l.block.y * l.block.z;
    for (unsigned bz = 0; bz < l.grid.z; ++bz)
        for (unsigned by = 0; by < l.grid.y; ++by)
            for (unsigned bx = 0; bx < l.grid.x; ++bx) {
                BlockState b;
                b.regs = BlockRegs{uint3{bx, by, bz}, l.block, l.grid};
                b.nthreads = n;
                b.threads.resize(n);
                for (unsigned t = 0; t < n; ++t)
                    b.threads[t].idx = uint3{t % l.block.x, (t / l.block.x) % l.block.y, t / (l.block.x * l.block.y)};
                b.bar = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(n));
                b.warps.resize((n + 31) / 32);
                for (unsigned w = 0; w < b.warps.size(); ++w)
                    b.warps[w].bar = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(std::min(32u, n - 32 * w)));
                std::vector<std::thread> ts;
                ts.reserve(n);
                for (unsigned t = 0; t < n; ++t)
                    ts.emplace_back([&b, &l, t] {
                        tls_state = &b;
                        tls_block = &b.regs;
                        tls_thread = &b.threads[t];
                        l.kernel->invoke(l.params);
                        // An exited thread no longer takes part in barriers.
                        b.warps[t / 32].bar->arrive_and_drop();
                        b.bar->arrive_and_drop();
                    });
                for (auto& th : ts) th.join();
            }
}

void syncthreads(const char*) { tls_state->bar->arrive_and_wait(); }

void warp_mma_m16n8k16_f16_f32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                               const char* site) {
    BlockState& s = *tls_state;
    const unsigned t = static_cast<unsigned>(tls_thread - s.threads.data()), lane = t & 31;
    WarpState& w = s.warps[t / 32];
    if (std::min(32u, s.nthreads - 32 * (t / 32)) != 32)
        fatal("mma.sync.aligned at %s: the warp of thread %u is incomplete (blockDim %u)", site, t, s.nthreads);
    mma_deposit(w.tile, lane, a, b, c);
    w.bar->arrive_and_wait();  // every lane has deposited
    if (lane == 0) mma_compute(w.tile);
    w.bar->arrive_and_wait();  // D is ready
    mma_collect(w.tile, lane, c);
    w.bar->arrive_and_wait();  // every lane has collected before the next deposit
}

}  // namespace vigil_emu
