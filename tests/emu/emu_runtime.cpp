// Runs CUDA kernels on the CPU for tests (tests/emu/README.md). Each CUDA thread of a block is a
// fiber (ucontext) of the one host thread; a scheduler runs them round-robin until each has
// finished or waits at a barrier (__syncthreads: the block's live threads; a shuffle: the warp's
// lanes). With TP_EMU_SCHED=lowest it always runs the lowest-numbered runnable thread instead, so
// warp 0 runs as far ahead of the others as barriers let it: a warp that overwrites shared memory
// another warp has yet to read (a missing barrier at the end of a double-buffered loop) then
// shows, which round-robin order, keeping warps abreast at every shuffle, hides.
// TP_EMU_SCHED=highest is the mirror (the last warp runs ahead): a race in which a higher warp
// writes what a lower one reads shows in one of the two orders, not necessarily in both. Blocks run
// one after another, so function-static arrays serve as shared memory, and dynamic shared memory is
// filled with NaN before each block so that reading what no thread wrote shows. Deadlocks (a
// barrier some threads never reach) and shuffles over exited lanes abort with a message: on a GPU
// they are hangs or undefined behaviour.
#include <cuda_runtime.h>

#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <vector>

emu_ctx emu_cur;

namespace
{
enum { RUNNABLE, WAITING, DONE };

// A cp.async in flight: its bytes as read at issue, where they land, and its commit group.
struct AsyncCopy {
    unsigned char bytes[16];
    void *dst;
    int group;
};

struct Fiber {
    ucontext_t ctx;
    int state;
    int group; // the barrier waited at: 0 the block, 1 + w warp w
    uint3 tid;
    std::vector<AsyncCopy> copies; // cp.async not yet landed
    int committed;                 // cp.async groups committed so far
};

struct Group {
    int live;    // members not finished
    int waiting; // members at the barrier now
};

constexpr size_t kStack = 256 * 1024;
constexpr size_t kMaxSmem = 227 * 1024; // H100's opt-in maximum per block

struct Launch {
    void (*body)(void *);
    void *arg;
    dim3 grid, block;
    unsigned nt;
    std::vector<Fiber> fibers;
    std::vector<Group> groups;
    std::vector<uint64_t> slots; // shuffle exchange, one per thread
    std::vector<float> smem;
    char *stacks; // nt x kStack, malloc'd: pages are touched only as fibers use them
    size_t stack_threads;
    ucontext_t sched;
    unsigned cur;
};

Launch *g_launch;
int g_max_dynamic_smem = 48 * 1024;

void release(Launch *L, int g)
{
    L->groups[g].waiting = 0;
    for (Fiber &f : L->fibers)
        if (f.state == WAITING && f.group == g) f.state = RUNNABLE;
}

// The calling fiber waits at group g's barrier.
void wait_at(int g)
{
    Launch *L = g_launch;
    if (!L) emu_fail("barrier outside a kernel");
    Fiber &f = L->fibers[L->cur];
    Group &G = L->groups[g];
    f.state = WAITING;
    f.group = g;
    if (++G.waiting == G.live) release(L, g);
    swapcontext(&f.ctx, &L->sched);
}

void fiber_main()
{
    Launch *L = g_launch;
    L->body(L->arg);
    Fiber &f = L->fibers[L->cur];
    f.state = DONE;
    unsigned lin = L->cur;
    int groups[2] = {0, 1 + (int)(lin / 32)};
    for (int g : groups) {
        Group &G = L->groups[g];
        G.live--;
        if (G.waiting > 0 && G.waiting == G.live) release(L, g);
    }
    // returning resumes uc_link, the scheduler
}

void run_block(Launch *L, unsigned bx, unsigned by, unsigned bz)
{
    unsigned nt = L->nt, nw = (nt + 31) / 32;
    L->groups.assign(1 + nw, Group{0, 0});
    L->groups[0].live = (int)nt;
    for (unsigned w = 0; w < nw; w++)
        L->groups[1 + w].live = (int)(nt - 32 * w < 32 ? nt - 32 * w : 32);
    std::fill(L->smem.begin(), L->smem.end(), NAN);
    for (unsigned t = 0; t < nt; t++) {
        Fiber &f = L->fibers[t];
        f.state = RUNNABLE;
        f.copies.clear();
        f.committed = 0;
        f.tid = uint3{t % L->block.x, (t / L->block.x) % L->block.y, t / (L->block.x * L->block.y)};
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = L->stacks + (size_t)t * kStack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = &L->sched;
        makecontext(&f.ctx, fiber_main, 0);
    }
    emu_cur.bid = uint3{bx, by, bz};
    static const char *sched = getenv("TP_EMU_SCHED");
    static const bool lowest_first = sched && strcmp(sched, "lowest") == 0;
    static const bool highest_first = sched && strcmp(sched, "highest") == 0;
    for (;;) {
        bool ran = false;
        unsigned done = 0;
        for (unsigned k = 0; k < nt; k++) {
            const unsigned t = highest_first ? nt - 1 - k : k;
            Fiber &f = L->fibers[t];
            if (f.state == DONE) {
                done++;
                continue;
            }
            if (f.state != RUNNABLE) continue;
            L->cur = t;
            emu_cur.tid = f.tid;
            swapcontext(&L->sched, &f.ctx);
            ran = true;
            if (lowest_first || highest_first) break; /* rescan from the first in that order */
        }
        if (ran) continue;
        if (done == nt) break;
        for (unsigned t = 0; t < nt; t++)
            if (L->fibers[t].state == WAITING) {
                emu_cur.tid = L->fibers[t].tid;
                break;
            }
        emu_fail(L->groups[0].waiting > 0 ? "deadlock: __syncthreads not reached by every "
                                            "live thread of the block"
                                          : "deadlock at a warp shuffle");
    }
}
} // namespace

/* Outside the anonymous namespace: cuda_runtime.h declares it for checks in kernel code. */
[[noreturn]] void emu_fail(const char *what)
{
    Launch *L = g_launch;
    fprintf(stderr,
            "CUDA emulation: %s (block %u,%u,%u thread %u,%u,%u of grid %ux%ux%u, block "
            "%ux%ux%u)\n",
            what, emu_cur.bid.x, emu_cur.bid.y, emu_cur.bid.z, emu_cur.tid.x, emu_cur.tid.y,
            emu_cur.tid.z, L ? L->grid.x : 0, L ? L->grid.y : 0, L ? L->grid.z : 0,
            L ? L->block.x : 0, L ? L->block.y : 0, L ? L->block.z : 0);
    abort();
}

extern "C" {

const char *cudaGetErrorString(cudaError_t e)
{
    return e == cudaSuccess ? "no error" : e == cudaErrorNotReady ? "not ready" : "emulated error";
}
cudaError_t cudaGetLastError(void)
{
    return cudaSuccess;
}
cudaError_t cudaPeekAtLastError(void)
{
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t st)
{
    (void)kind, (void)st;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t st)
{
    (void)st;
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t emu_set_max_dynamic_smem(int bytes)
{
    if (bytes < 0 || (size_t)bytes > kMaxSmem) return cudaErrorInvalidValue;
    g_max_dynamic_smem = bytes;
    return cudaSuccess;
}

void __syncthreads(void)
{
    wait_at(0);
}

unsigned emu_lane(void)
{
    return g_launch->cur % 32;
}

void *emu_lane_slot(unsigned lane)
{
    Launch *L = g_launch;
    unsigned base = L->cur / 32 * 32;
    if (lane >= 32 || base + lane >= L->nt) emu_fail("shuffle from a lane outside the block");
    return &L->slots[base + lane];
}

void emu_warp_sync(unsigned mask)
{
    Launch *L = g_launch;
    unsigned w = L->cur / 32;
    // Every lane the mask names must exist and still run (lanes of a warp that has exited
    // cannot take part: undefined behaviour on a GPU).
    unsigned exists = L->nt - 32 * w >= 32 ? 0xffffffffu : (1u << (L->nt - 32 * w)) - 1;
    if (mask & ~exists) emu_fail("shuffle whose mask names lanes that do not exist");
    if (L->groups[1 + w].live != __builtin_popcount(mask))
        emu_fail("shuffle whose mask names lanes that have exited");
    wait_at(1 + (int)w);
}

/* A cp.async lands at the issuing thread's wait_group by default: the latest a GPU may land it,
 * so a tile read before its wait shows. TP_EMU_CP_ASYNC=early lands it at issue, the earliest:
 * with a warp run ahead (TP_EMU_SCHED), a copy into a buffer other warps are still reading (a
 * missing barrier before a double buffer is refilled) then corrupts what they read. */
void emu_cp_async16(void *dst, const void *src, int src_bytes)
{
    static const char *mode = getenv("TP_EMU_CP_ASYNC");
    static const bool early = mode && strcmp(mode, "early") == 0;
    if (early) {
        if (src_bytes)
            memcpy(dst, src, 16);
        else
            memset(dst, 0, 16);
        return;
    }
    Fiber &f = g_launch->fibers[g_launch->cur];
    AsyncCopy c;
    if (src_bytes)
        memcpy(c.bytes, src, 16);
    else
        memset(c.bytes, 0, 16);
    c.dst = dst;
    c.group = f.committed; // the group the next commit closes
    f.copies.push_back(c);
}

void emu_cp_async_commit(void)
{
    g_launch->fibers[g_launch->cur].committed++;
}

void emu_cp_async_wait(int n)
{
    Fiber &f = g_launch->fibers[g_launch->cur];
    std::vector<AsyncCopy> left;
    for (const AsyncCopy &c : f.copies)
        if (c.group < f.committed - n)
            memcpy(c.dst, c.bytes, 16);
        else
            left.push_back(c);
    f.copies.swap(left);
}

void *emu_dynamic_smem(void)
{
    /* 128-byte aligned, as a GPU's shared memory window is. */
    uintptr_t p = (uintptr_t)g_launch->smem.data();
    return (void *)((p + 127) & ~(uintptr_t)127);
}

void emu_run(void (*body)(void *), void *arg, dim3 grid, dim3 block, size_t smem)
{
    unsigned nt = block.x * block.y * block.z;
    if (nt == 0 || nt > 1024) {
        fprintf(stderr, "CUDA emulation: block of %u threads (1..1024)\n", nt);
        abort();
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "CUDA emulation: grid %ux%ux%u outside CUDA's limits\n", grid.x, grid.y,
                grid.z);
        abort();
    }
    if (smem > 48 * 1024 && (int)smem > g_max_dynamic_smem) {
        fprintf(stderr,
                "CUDA emulation: %zu bytes of dynamic shared memory without opting in "
                "(cudaFuncSetAttribute gave %d)\n",
                smem, g_max_dynamic_smem);
        abort();
    }
    static Launch L; // reused: stacks are allocated once
    L.body = body;
    L.arg = arg;
    L.grid = grid;
    L.block = block;
    L.nt = nt;
    L.fibers.resize(nt);
    L.slots.assign(nt, 0);
    L.smem.assign(smem / sizeof(float) + 32, NAN);
    if (L.stack_threads < nt) {
        free(L.stacks);
        L.stacks = (char *)malloc((size_t)nt * kStack);
        if (!L.stacks) {
            fprintf(stderr, "CUDA emulation: no memory for %u fiber stacks\n", nt);
            abort();
        }
        L.stack_threads = nt;
    }
    emu_cur.bdim = block;
    emu_cur.gdim = grid;
    g_launch = &L;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++)
                run_block(&L, x, y, z);
    g_launch = nullptr;
    g_max_dynamic_smem = 48 * 1024;
}
}
