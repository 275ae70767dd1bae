// Lock wait-for analysis: which glibc lock a blocked thread waits on (its futex address and its
// stack), the lock's words read with glibc 2.36 x86_64 layouts, and the wait-for graph.
//
// Layouts (checked against /usr/include/x86_64-linux-gnu/bits/struct_mutex.h, struct_rwlock.h,
// thread-shared-types.h and against the words a glibc 2.36 program writes):
//   pthread_mutex_t (40 B): int __lock 0, unsigned __count 4, int __owner 8, unsigned __nusers
//     12, int __kind 16, short __spins 20, short __elision 22, __list 24. __kind: bits 0-1 type
//     (0 normal, 1 recursive, 2 error-checking, 3 adaptive), 16 robust, 32 priority inheritance,
//     64 priority protect, 128 process-shared, 256/512 elision. Normal, recursive, error-checking
//     and adaptive mutexes store the holder's tid in __owner after taking __lock (0 free, 1
//     locked, 2 locked with waiters); robust and PI mutexes keep the holder's tid in __lock
//     itself (| 0x80000000 waiters, | 0x40000000 owner died), and __owner 0x7fffffff once a
//     thread took it with EOWNERDEAD and has not called pthread_mutex_consistent.
//   pthread_rwlock_t (56 B): unsigned __readers 0 (bit 0 write phase, bit 1 write locked, bit 2
//     readers waiting, readers << 3), __writers 4, __wrphase_futex 8, __writers_futex 12, __pad3
//     16, __pad4 20, int __cur_writer 24, int __shared 28, __rwelision 32, __pad1[7] 33, __pad2
//     40, unsigned __flags 48. Readers sleep on __wrphase_futex (or __readers when writers are
//     preferred), writers on __writers_futex or __wrphase_futex. Only a writer is recorded.
//   pthread_cond_t (48 B): waiters sleep on __g_signals[0|1] at 40/44; no owner, and the mutex
//     is not recorded. sem_t (32 B): a 64-bit word at 0, value in the low half (the futex), the
//     number of waiters in the high half.
#include "pmprof/threads/locks.h"

#include <linux/futex.h>
#include <sys/syscall.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

#include "pmprof/threads/dump.h"

namespace pmprof {
namespace {

constexpr long kSysFutex = SYS_futex;
constexpr long kSysRestart = SYS_restart_syscall;
constexpr size_t kMaxLockFrames = 12;  // the blocking lock function is near the top

constexpr uint32_t kFutexOwnerDied = 0x40000000u;
constexpr uint32_t kFutexTidMask = 0x3fffffffu;
constexpr int kMutexInconsistent = INT_MAX;
constexpr int kMutexNotRecoverable = INT_MAX - 1;

constexpr int kKindTypeMask = 3, kKindRobust = 16, kKindPi = 32, kKindPp = 64, kKindPshared = 128,
              kKindKnownBits = 0x3ff;

constexpr uint32_t kRwWrPhase = 1, kRwWrLocked = 2, kRwReaderShift = 3;

struct GlibcMutex {
    int32_t lock;
    uint32_t count;
    int32_t owner;
    uint32_t nusers;
    int32_t kind;
    int16_t spins, elision;
    uint64_t list_prev, list_next;
};
static_assert(sizeof(GlibcMutex) == 40);

struct GlibcRwlock {
    uint32_t readers, writers, wrphase_futex, writers_futex, pad3, pad4;
    int32_t cur_writer, shared;
    int8_t rwelision;
    uint8_t pad1[7];
    uint64_t pad2;
    uint32_t flags;
    uint32_t tail_pad;
};
static_assert(sizeof(GlibcRwlock) == 56);

/// "___pthread_mutex_lock" and "__GI___pthread_mutex_lock" -> "pthread_mutex_lock".
std::string_view plain_name(std::string_view f) {
    while (!f.empty() && f.front() == '_') f.remove_prefix(1);
    if (f.starts_with("GI_")) f.remove_prefix(3);
    while (!f.empty() && f.front() == '_') f.remove_prefix(1);
    return f;
}

bool starts_any(std::string_view f, std::initializer_list<std::string_view> prefixes) {
    for (std::string_view p : prefixes)
        if (f.starts_with(p)) return true;
    return false;
}

/// The lock kind a function of glibc's lock API stands for; None for any other function.
LockKind kind_of_function(std::string_view function) {
    std::string_view f = plain_name(function);
    if (starts_any(f, {"pthread_mutex_lock", "pthread_mutex_timedlock", "pthread_mutex_clocklock",
                       "pthread_mutex_cond_lock", "mtx_lock", "mtx_timedlock"}))
        return LockKind::Mutex;
    if (starts_any(f, {"pthread_rwlock_rdlock", "pthread_rwlock_timedrdlock",
                       "pthread_rwlock_clockrdlock"}))
        return LockKind::RwLockRead;
    if (starts_any(f, {"pthread_rwlock_wrlock", "pthread_rwlock_timedwrlock",
                       "pthread_rwlock_clockwrlock"}))
        return LockKind::RwLockWrite;
    if (starts_any(f, {"pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_clockwait",
                       "cnd_wait", "cnd_timedwait"}))
        return LockKind::CondVar;
    if (starts_any(f,
                   {"new_sem_wait", "sem_wait", "sem_timedwait", "sem_clockwait", "old_sem_wait"}))
        return LockKind::Semaphore;
    if (f.starts_with("lll_lock_wait")) return LockKind::LowLevel;
    return LockKind::None;
}

}  // namespace

const char* lock_kind_name(LockKind k) {
    switch (k) {
    case LockKind::None:
        return "none";
    case LockKind::Mutex:
        return "mutex";
    case LockKind::RwLockRead:
        return "rwlock (read)";
    case LockKind::RwLockWrite:
        return "rwlock (write)";
    case LockKind::CondVar:
        return "condition variable";
    case LockKind::Semaphore:
        return "semaphore";
    case LockKind::LowLevel:
        return "glibc internal lock";
    case LockKind::Futex:
        return "futex";
    }
    return "?";
}

LockWait identify_lock_wait(const ThreadEntry& t) {
    LockWait w;
    if (t.state == ThreadState::Running || t.syscall_nr < 0) return w;
    uint64_t futex = 0;
    if (t.syscall_nr == kSysFutex) {
        futex = t.syscall_args[0];
        w.futex_op = static_cast<int>(t.syscall_args[1] & FUTEX_CMD_MASK);
        // Wakes, requeues and the like are not waits.
        switch (w.futex_op) {
        case FUTEX_WAIT:
        case FUTEX_WAIT_BITSET:
        case FUTEX_LOCK_PI:
        case FUTEX_LOCK_PI2:
        case FUTEX_WAIT_REQUEUE_PI:
            break;
        default:
            return w;
        }
    } else if (t.syscall_nr == kSysRestart && t.captured) {
        // A timed futex wait restarted after a stop keeps no arguments in /proc; the captured
        // registers still hold the first one.
        futex = t.regs.dwarf[Registers::kArg0];
    } else {
        return w;
    }
    LockKind kind = LockKind::None;
    size_t seen = 0;
    for (const SymbolizedPc& pc : t.frames) {
        for (const SourceFrame& f : pc.frames) {
            LockKind k = kind_of_function(f.function.empty() ? f.mangled : f.function);
            if (k == LockKind::None) continue;
            // __lll_lock_wait under pthread_mutex_lock is the mutex's own wait.
            if (kind == LockKind::None || (kind == LockKind::LowLevel && k == LockKind::Mutex))
                kind = k;
            if (k != LockKind::LowLevel) goto found;
        }
        if (++seen >= kMaxLockFrames) break;
    }
found:
    if (kind == LockKind::None) {
        if (t.syscall_nr == kSysRestart) return w;  // not a futex wait pmprof can name
        kind = LockKind::Futex;
        if (!t.captured) w.note = "no stack was captured to tell what it is";
    }
    w.kind = kind;
    w.futex = futex;
    // Mutexes, low-level locks and semaphores sleep on their first word; rwlocks and condition
    // variables on an inner one (resolved by read_lock_state or the covering symbol).
    if (kind == LockKind::Mutex || kind == LockKind::LowLevel || kind == LockKind::Semaphore ||
        kind == LockKind::Futex)
        w.address = futex;
    return w;
}

namespace {

std::string mutex_type(int kind) {
    static const char* const kTypes[] = {"normal", "recursive", "error-checking", "adaptive"};
    std::string s = kTypes[kind & kKindTypeMask];
    if (kind & kKindRobust) s += ", robust";
    if (kind & kKindPi) s += ", priority-inheritance";
    if (kind & kKindPp) s += ", priority-protect";
    if ((kind & kKindPshared) && !(kind & kKindRobust)) s += ", process-shared";
    return s;
}

void read_mutex(LockWait& w, MemoryReader& mem) {
    GlibcMutex m{};
    if (!mem.read_value(w.address, &m)) {
        w.note = "its memory is unreadable";
        return;
    }
    if ((m.kind & ~kKindKnownBits) != 0) {
        w.note = "does not look like a glibc 2.36 pthread_mutex_t";
        return;
    }
    w.read = true;
    w.type = mutex_type(m.kind);
    const auto lock = static_cast<uint32_t>(m.lock);
    if (m.kind & (kKindRobust | kKindPi)) {
        // The holder's tid is the lock word itself.
        w.owner = static_cast<pid_t>(lock & kFutexTidMask);
        if (lock & kFutexOwnerDied) {
            w.owner_died = true;
            w.note = "its owner died holding it (FUTEX_OWNER_DIED)";
        }
        if (m.owner == kMutexInconsistent) {
            w.owner_died = true;
            w.note = "its previous owner died; the holder took it with EOWNERDEAD and has not "
                     "made it consistent";
        } else if (m.owner == kMutexNotRecoverable) {
            w.note = "not recoverable (unlocked without pthread_mutex_consistent)";
        }
    } else if (lock != 0) {
        if (m.owner > 0)
            w.owner = m.owner;
        else
            w.note = "locked, owner not recorded";
    }
    // Free when read: released since the snapshot (the waiter is being woken).
    w.released = (m.kind & (kKindRobust | kKindPi))
                     ? (lock & (kFutexTidMask | kFutexOwnerDied)) == 0
                     : lock == 0;
    if ((m.kind & kKindTypeMask) == 1 && w.owner != 0) w.count = m.count;
}

bool plausible_rwlock(const GlibcRwlock& r) {
    if (r.pad3 != 0 || r.pad4 != 0 || r.pad2 != 0 || r.rwelision != 0) return false;
    for (uint8_t b : r.pad1)
        if (b != 0) return false;
    return r.shared >= 0 && r.shared <= 1 && r.flags <= 2 && r.cur_writer >= 0;
}

void read_rwlock(LockWait& w, MemoryReader& mem) {
    GlibcRwlock r{};
    if (w.address == 0) {
        // The futex word is __wrphase_futex (8) or, for a writer, __writers_futex (12); a
        // reader of a writer-preferring lock sleeps on __readers (0). The layout's zero
        // padding and small fields tell the right start.
        const uint64_t offsets_read[] = {8, 0};
        const uint64_t offsets_write[] = {12, 8};
        for (uint64_t off : w.kind == LockKind::RwLockRead ? offsets_read : offsets_write) {
            GlibcRwlock cand{};
            if (w.futex >= off && mem.read_value(w.futex - off, &cand) && plausible_rwlock(cand)) {
                w.address = w.futex - off;
                break;
            }
        }
        if (w.address == 0) {
            w.note = "does not look like a glibc 2.36 pthread_rwlock_t";
            return;
        }
    }
    if (!mem.read_value(w.address, &r) || !plausible_rwlock(r)) {
        w.note = "does not look like a glibc 2.36 pthread_rwlock_t";
        return;
    }
    w.read = true;
    static const char* const kFlags[] = {"prefer-reader", "prefer-writer",
                                         "prefer-writer-nonrecursive"};
    w.type = kFlags[r.flags];
    if (r.shared) w.type += ", process-shared";
    const bool write_phase = r.readers & kRwWrPhase;
    const bool write_locked = r.readers & kRwWrLocked;
    if (write_phase && write_locked && r.cur_writer > 0) {
        w.owner = r.cur_writer;
    } else if (!write_phase) {
        w.readers = r.readers >> kRwReaderShift;
        if (w.readers == 0 && !write_locked) w.released = true;
    } else if (!write_locked) {
        w.released = true;
    }
}

void read_semaphore(LockWait& w, MemoryReader& mem) {
    uint64_t data = 0;
    if (!mem.read_value(w.address, &data)) {
        w.note = "its memory is unreadable";
        return;
    }
    w.read = true;
    w.count = static_cast<uint32_t>(data);
    w.waiters = static_cast<uint32_t>(data >> 32);
    if (w.count > 0) w.released = true;
}

void read_low_level(LockWait& w, MemoryReader& mem) {
    int32_t word = 0;
    if (!mem.read_value(w.address, &word)) return;
    w.read = true;
    if (word == 0) w.released = true;
}

}  // namespace

void read_lock_state(LockWait& w, MemoryReader& mem) {
    switch (w.kind) {
    case LockKind::Mutex:
        read_mutex(w, mem);
        break;
    case LockKind::RwLockRead:
    case LockKind::RwLockWrite:
        read_rwlock(w, mem);
        break;
    case LockKind::Semaphore:
        read_semaphore(w, mem);
        break;
    case LockKind::LowLevel:
        read_low_level(w, mem);
        break;
    case LockKind::CondVar:
        // No state worth reading: glibc records neither an owner nor the mutex.
        if (w.address == 0) w.address = w.futex;
        break;
    case LockKind::Futex:
    case LockKind::None:
        break;
    }
}

LockGraph build_lock_graph(const std::vector<ThreadEntry>& threads) {
    LockGraph g;
    std::map<pid_t, pid_t> waits_for;  // waiter -> holder, both threads of the dump
    std::set<pid_t> present;
    for (const ThreadEntry& t : threads) present.insert(t.tid);
    for (const ThreadEntry& t : threads)
        if (t.lock.owner != 0 && !t.lock.released && present.contains(t.lock.owner))
            waits_for[t.tid] = t.lock.owner;

    // Every node has at most one successor: walk each path once, colouring visited nodes.
    std::map<pid_t, int> state;  // 0 new, 1 on the current path, 2 done
    std::set<pid_t> in_cycle;
    for (const auto& [start, next_unused] : waits_for) {
        (void)next_unused;
        std::vector<pid_t> path;
        pid_t cur = start;
        while (true) {
            int& s = state[cur];
            if (s == 2) break;
            if (s == 1) {  // back on the current path: a new cycle starting at cur
                auto from = std::find(path.begin(), path.end(), cur);
                LockCycle c{std::vector<pid_t>(from, path.end())};
                std::rotate(c.threads.begin(), std::min_element(c.threads.begin(), c.threads.end()),
                            c.threads.end());
                for (pid_t tid : c.threads) in_cycle.insert(tid);
                g.cycles.push_back(std::move(c));
                break;
            }
            s = 1;
            path.push_back(cur);
            auto it = waits_for.find(cur);
            if (it == waits_for.end()) break;
            cur = it->second;
        }
        for (pid_t tid : path) state[tid] = 2;
    }
    std::sort(g.cycles.begin(), g.cycles.end(),
              [](const LockCycle& a, const LockCycle& b) { return a.threads < b.threads; });

    // Chains: from every waiter nobody waits for (outside cycles) to the end of its path.
    std::set<pid_t> waited_on;
    for (const auto& [waiter, holder] : waits_for) waited_on.insert(holder);
    std::map<pid_t, std::pair<uint64_t, LockKind>> lock_of;
    for (const ThreadEntry& t : threads)
        lock_of[t.tid] = {t.lock.address ? t.lock.address : t.lock.futex, t.lock.kind};
    // Merged when the heads wait for the same lock and the rest of the path is the same.
    std::map<std::pair<std::pair<uint64_t, LockKind>, std::vector<pid_t>>, LockChain> by_tail;
    for (const auto& [head, holder] : waits_for) {
        if (in_cycle.contains(head) || waited_on.contains(head)) continue;
        std::vector<pid_t> path{head};
        bool cycle_end = false;
        pid_t cur = holder;
        while (true) {
            path.push_back(cur);
            if (in_cycle.contains(cur)) {
                cycle_end = true;
                break;
            }
            auto it = waits_for.find(cur);
            if (it == waits_for.end()) break;
            cur = it->second;
        }
        std::vector<pid_t> tail(path.begin() + 1, path.end());
        LockChain& c = by_tail[{lock_of[head], tail}];
        if (c.threads.empty()) {
            c.threads = path;
            c.ends_in_cycle = cycle_end;
        }
        c.heads.push_back(head);
    }
    for (auto& [tail, chain] : by_tail) g.chains.push_back(std::move(chain));
    return g;
}

}  // namespace pmprof
