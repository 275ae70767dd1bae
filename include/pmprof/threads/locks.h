// Lock wait-for analysis of a thread dump: for each thread blocked in a futex, which glibc lock
// it waits on (from the futex address of /proc/PID/task/TID/syscall and its stack), the lock's
// state read from target memory with glibc 2.36 x86_64 layouts (read-only, after the threads
// run again), the owner glibc records, the lock's name, and the deadlock cycles and chains of
// the wait-for graph.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pmprof/ptrace/memory.h"
#include "pmprof/support/types.h"

namespace pmprof {

struct ThreadEntry;
struct ThreadDump;
class ProcessImage;

enum class LockKind {
    None,
    Mutex,        // pthread_mutex_t (std::mutex, std::recursive_mutex, std::timed_mutex)
    RwLockRead,   // pthread_rwlock_rdlock (std::shared_mutex::lock_shared)
    RwLockWrite,  // pthread_rwlock_wrlock (std::shared_mutex::lock)
    CondVar,      // pthread_cond_*wait (std::condition_variable)
    Semaphore,    // sem_wait
    LowLevel,     // glibc's internal lll lock (__lll_lock_wait without a pthread_mutex frame)
    Futex,        // a futex wait pmprof does not recognize (custom locks, std::atomic::wait)
};

/// "mutex", "rwlock (read)", "condition variable", ...
const char* lock_kind_name(LockKind k);

/// What one blocked thread waits on, and what the lock's memory said when read.
struct LockWait {
    LockKind kind = LockKind::None;
    uint64_t futex = 0;    // the futex word the thread sleeps on
    uint64_t address = 0;  // the lock object's first byte (the futex word for cond/futex)
    int futex_op = -1;     // FUTEX_* command (private/clock bits removed), -1 unknown
    std::string name;      // "g_accounts_lock", "g_locks+0x28", "stack of thread 12", "heap"
    std::string type;      // mutex: "normal", "recursive", "error-checking", "adaptive" [+
                           // ", robust"][+ ", priority-inheritance"]; rwlock: "prefer-reader"...
    bool read = false;     // the lock's memory was read
    pid_t owner = 0;       // the thread glibc records as holder; 0: none recorded
    bool owner_exited = false;  // no such thread any more: the lock was leaked
    bool owner_died = false;    // robust: FUTEX_OWNER_DIED set, or state not made consistent
    pid_t owner_process = 0;    // owner is a thread of another process (process-shared)
    unsigned readers = 0;       // rwlock: readers holding it (glibc does not record which)
    unsigned count = 0;         // recursive mutex: times the owner holds it; sem: value
    unsigned waiters = 0;       // semaphore: waiters glibc counts
    bool released = false;      // free when read: it changed since the snapshot
    std::string note;           // anything else worth a word
};

/// Which lock a thread waits on, from its syscall (futex, or restart_syscall with the capture's
/// registers) and its symbolized stack; kind None when it does not wait on a futex. Pure.
LockWait identify_lock_wait(const ThreadEntry& t);

/// Reads the lock's words at w.address with glibc 2.36 x86_64 layouts and fills owner, type,
/// readers, count. Never writes. Pure given `mem`.
void read_lock_state(LockWait& w, MemoryReader& mem);

/// One cycle of the wait-for graph: threads[i] waits for a lock held by threads[i + 1] (the
/// last by threads[0]). Ordered starting at its lowest tid.
struct LockCycle {
    std::vector<pid_t> threads;
};

/// A wait-for path that is not a cycle: threads[0] waits for a lock held by threads[1], ...;
/// the last thread waits on no lock with a known owner (blocked in I/O, sleeping, running), or
/// is part of a cycle (ends_in_cycle). Chains sharing their tail are merged: `heads` are all the
/// threads that wait for threads[1]'s lock through the same path.
struct LockChain {
    std::vector<pid_t> heads;
    std::vector<pid_t> threads;  // threads[0] == heads[0]
    bool ends_in_cycle = false;
};

struct LockGraph {
    std::vector<LockCycle> cycles;
    std::vector<LockChain> chains;
    bool deadlock() const { return !cycles.empty(); }
};

/// The wait-for graph of a dump whose locks were read. Pure.
LockGraph build_lock_graph(const std::vector<ThreadEntry>& threads);

/// Fills every blocked thread's `lock` (identify, read, name) and dump.locks. Runs after the
/// threads were detached; only reads target memory.
void analyze_locks(ThreadDump& dump, ProcessImage& image, MemoryReader& mem);

/// "mutex 0x5581c0a4e040 (g_accounts_lock, normal)".
std::string describe_lock(const LockWait& w);
/// The lock line of a thread: "waiting for mutex ... held by thread 12 "w1", which is ...".
std::string describe_wait(const ThreadDump& dump, const ThreadEntry& t);
/// One line on a thread: "sleeping in read at holder_reads (locks_target.cpp:42)".
std::string describe_activity(const ThreadEntry& t);
/// The "Deadlock"/"Lock chain" section printed before the stacks; "" when there is none.
std::string format_lock_graph_text(const ThreadDump& dump);

}  // namespace pmprof
