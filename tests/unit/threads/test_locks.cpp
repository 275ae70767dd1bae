// Lock analysis on synthetic threads and memory: the wait-for graph, glibc layouts, the kernel
// stack parser and the progress verdicts.
#include <sys/syscall.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "pmprof/cli/watch.h"
#include "pmprof/threads/dump.h"
#include "pmprof/threads/kernel_stack.h"
#include "pmprof/threads/locks.h"

using namespace pmprof;

namespace {

ThreadEntry waiter(pid_t tid, pid_t owner, uint64_t lock) {
    ThreadEntry t;
    t.tid = tid;
    t.lock.kind = LockKind::Mutex;
    t.lock.address = t.lock.futex = lock;
    t.lock.owner = owner;
    return t;
}

ThreadEntry idle(pid_t tid) {
    ThreadEntry t;
    t.tid = tid;
    return t;
}

template <typename T> std::vector<uint8_t> bytes(const T& v) {
    std::vector<uint8_t> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    return b;
}

/// read_lock_state on a wait of `kind` on `futex`, with `words` mapped at `at`. A mutex's
/// address is its futex word; an rwlock's is left for read_lock_state to find from the futex.
LockWait read_lock_at(LockKind kind, uint64_t at, uint64_t futex,
                      const std::vector<uint8_t>& words) {
    FakeMemory mem;
    mem.add(at, words);
    LockWait w;
    w.kind = kind;
    w.futex = futex;
    if (kind == LockKind::Mutex) w.address = futex;
    read_lock_state(w, mem);
    return w;
}

ThreadEntry in_futex(const char* function, uint64_t futex, int op = 0) {
    ThreadEntry t;
    t.tid = 10;
    t.state = ThreadState::Sleeping;
    t.syscall_nr = SYS_futex;
    t.syscall_args = {futex, static_cast<uint64_t>(op | 128), 0, 0, 0, 0};
    SymbolizedPc pc;
    pc.frames.push_back({"__futex_abstimed_wait_common", "", "", 0, 0, false});
    t.frames.push_back(pc);
    SymbolizedPc lock;
    lock.frames.push_back({function, "", "", 0, 0, false});
    t.frames.push_back(lock);
    return t;
}

}  // namespace

TEST_CASE("lock graph: cycles, chains merged by tail, no cycle through a released lock",
          "[unit][locks]") {
    std::vector<ThreadEntry> ts{waiter(1, 2, 0x10), waiter(2, 3, 0x20), waiter(3, 1, 0x30),
                                waiter(4, 5, 0x40), waiter(6, 5, 0x40), idle(5),
                                waiter(7, 2, 0x20), waiter(8, 9, 0x50)};
    ts.push_back(waiter(9, 8, 0x60));
    ts.back().lock.released = true;  // 9 -> 8 no longer holds: no cycle 8 <-> 9
    LockGraph g = build_lock_graph(ts);
    REQUIRE(g.cycles.size() == 1);
    CHECK(g.cycles[0].threads == std::vector<pid_t>{1, 2, 3});
    REQUIRE(g.chains.size() == 3);
    bool merged = false, into_cycle = false;
    for (const LockChain& c : g.chains) {
        if (c.threads.back() == 5) {
            merged = c.heads == std::vector<pid_t>{4, 6};
            CHECK_FALSE(c.ends_in_cycle);
        }
        if (c.heads == std::vector<pid_t>{7}) into_cycle = c.ends_in_cycle;
    }
    CHECK(merged);
    CHECK(into_cycle);
}

TEST_CASE("lock graph: a thread waiting for itself is a one-thread cycle", "[unit][locks]") {
    LockGraph g = build_lock_graph({waiter(5, 5, 0x10)});
    REQUIRE(g.cycles.size() == 1);
    CHECK(g.cycles[0].threads == std::vector<pid_t>{5});
}

TEST_CASE("identify: the lock function on the stack decides the kind", "[unit][locks]") {
    CHECK(identify_lock_wait(in_futex("___pthread_mutex_lock", 0x1000)).kind == LockKind::Mutex);
    CHECK(identify_lock_wait(in_futex("__GI___lll_lock_wait", 0x1000)).kind == LockKind::LowLevel);
    CHECK(identify_lock_wait(in_futex("___pthread_rwlock_rdlock", 0x1008)).kind ==
          LockKind::RwLockRead);
    CHECK(identify_lock_wait(in_futex("__pthread_cond_wait_common", 0x1028)).kind ==
          LockKind::CondVar);
    CHECK(identify_lock_wait(in_futex("__new_sem_wait_slow64", 0x1000)).kind ==
          LockKind::Semaphore);
    CHECK(identify_lock_wait(in_futex("my_spinlock", 0x1000)).kind == LockKind::Futex);
    CHECK(identify_lock_wait(in_futex("___pthread_mutex_lock", 0x1000, 1 /* FUTEX_WAKE */)).kind ==
          LockKind::None);
    ThreadEntry reading = in_futex("___pthread_mutex_lock", 0x1000);
    reading.syscall_nr = SYS_read;
    CHECK(identify_lock_wait(reading).kind == LockKind::None);
    LockWait m = identify_lock_wait(in_futex("___pthread_mutex_lock", 0x1000));
    CHECK(m.address == 0x1000);
}

TEST_CASE("read_lock_state: glibc 2.36 mutex and rwlock words", "[unit][locks]") {
    struct {
        int32_t lock;
        uint32_t count;
        int32_t owner;
        uint32_t nusers;
        int32_t kind;
        int16_t spins, elision;
        uint64_t prev, next;
    } m{2, 3, 4242, 1, 1, 0, 0, 0, 0};
    LockWait w = read_lock_at(LockKind::Mutex, 0x1000, 0x1000, bytes(m));
    CHECK(w.owner == 4242);
    CHECK(w.type == "recursive");
    CHECK(w.count == 3);
    CHECK_FALSE(w.released);

    // Robust: the tid is the lock word; __owner INT_MAX after EOWNERDEAD.
    m = {static_cast<int32_t>(0x80000000u | 77), 0, 0x7fffffff, 1, 144, 0, 0, 0, 0};
    LockWait r = read_lock_at(LockKind::Mutex, 0x2000, 0x2000, bytes(m));
    CHECK(r.owner == 77);
    CHECK(r.owner_died);
    CHECK(r.type == "normal, robust");

    // rwlock held for writing by 99; a second writer sleeps on __writers_futex (+12).
    const uint32_t rw[14] = {3, 0, 1, 3, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0};
    LockWait wr = read_lock_at(LockKind::RwLockWrite, 0x3000, 0x300c, bytes(rw));
    CHECK(wr.address == 0x3000);
    CHECK(wr.owner == 99);
    LockWait rd = read_lock_at(LockKind::RwLockRead, 0x3000, 0x3008, bytes(rw));
    CHECK(rd.address == 0x3000);
    CHECK(rd.owner == 99);
}

TEST_CASE("kernel stack: parsed without the syscall entry", "[unit][locks]") {
    auto f = parse_kernel_stack("[<0>] futex_wait_queue+0x60/0xa0\n[<0>] futex_wait+0x175/0x260\n"
                                "[<0>] do_syscall_64+0x5b/0x80\n"
                                "[<0>] entry_SYSCALL_64_after_hwframe+0x63/0xcd\n");
    CHECK(f == std::vector<std::string>{"futex_wait_queue+0x60/0xa0", "futex_wait+0x175/0x260"});
    ThreadEntry t;
    t.kernel_frames = {"hrtimer_nanosleep_restart+0x10/0x20"};
    CHECK(restarted_syscall(t) == "clock_nanosleep");
}

TEST_CASE("progress verdicts: stuck, spinning, progressing", "[unit][locks]") {
    ThreadEntry a;
    a.tid = 3;
    a.captured = true;
    a.stack.frames = {{0x10, true}, {0x20, false}};
    SymbolizedPc pc;
    pc.frames.push_back({"spin", "", "", 0, 0, false});
    a.frames = {pc, pc};
    ThreadEntry b = a;
    b.stack.frames[0].pc = 0x14;  // moved within the same function
    CHECK(judge_progress({&a, &a, &a}, 0, 1, 0, 2, 2'000'000'000).verdict == Progress::Stuck);
    CHECK(judge_progress({&a, &b, &a}, 900'000'000, 0, 40, 2, 2'000'000'000).verdict ==
          Progress::Spinning);
    CHECK(judge_progress({&a, &b, &a}, 900'000'000, 300, 40, 2, 2'000'000'000).verdict ==
          Progress::Progressing);
    CHECK(judge_progress({&a, &a}, 50'000'000, 0, 0, 1, 1'000'000'000).verdict ==
          Progress::Spinning);
}
