// ThreadDump: one consistent snapshot of every thread, unwound and symbolized, plus grouping of
// identical stacks. What `pmprof stacks` prints.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "pmprof/profile/profile.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/error.h"
#include "pmprof/support/types.h"
#include "pmprof/symbolize/symbolize.h"
#include "pmprof/threads/locks.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {

struct ThreadEntry {
    pid_t tid = 0;
    std::string name;
    ThreadState state = ThreadState::Unknown;  // as read before the stop
    long syscall_nr = -1;                      // -1: not in a syscall, or running
    std::string syscall;                       // its name, "" when none
    std::array<uint64_t, 6> syscall_args{};    // as /proc/.../syscall gave them (nr >= 0)
    std::string wchan;
    bool captured = false;
    std::string error;  // why not captured
    // The blocked call our stop made fail with EINTR ("epoll_wait"), "" when none.
    std::string eintr_syscall;
    RawStack stack;
    std::vector<SymbolizedPc> frames;        // parallel to stack.frames
    Registers regs;                          // as captured (valid when captured)
    LockWait lock;                           // kind None: not waiting on a futex
    std::vector<std::string> kernel_frames;  // /proc/.../stack, innermost first (root only)
    std::string restarts;                    // restart_syscall: the syscall it restarts
};

struct ThreadDump {
    pid_t pid = 0;
    std::string command;
    int64_t time_nanos = 0;
    std::vector<ThreadEntry> threads;
    SnapshotStats stats;
    size_t unwind_failures = 0;   // stacks that did not reach their root
    uint64_t wall_ns = 0;         // pmprof's whole time for the snapshot
    std::vector<MemoryMap> maps;  // the maps snapshot the stacks belong to
    LockGraph locks;              // deadlock cycles and wait chains
    bool target_exited = false;   // the process was gone right after the snapshot
};

struct DumpOptions {
    UnwinderKind unwinder = UnwinderKind::Dwfl;
    size_t max_depth = 256;
    SymbolizeOptions symbolize;
    std::vector<std::string> thread_filter;  // tids or names; empty: every thread
    CaptureOptions capture;
    /// Hold every thread until the last one has stopped: one instant for all of them, at the
    /// cost of a longer stop for each (a thread waits for the slowest to get a cpu). Default:
    /// interrupted together, each detached right after its own copy.
    bool consistent = false;
    bool locks = true;          // lock wait-for analysis (reads a few words per blocked thread)
    bool kernel_stacks = true;  // /proc/.../stack of blocked threads when readable (root)
    /// A session that traces the process already (serve: the running profile's), used on its
    /// tracer thread instead of seizing; its threads are resumed, not detached.
    TraceSession* session = nullptr;
};

/// Seizes `pid`, snapshots its threads (stopped together, only copies inside the stop),
/// detaches, then unwinds and symbolizes. Fatal problems (cannot attach) come back as an Error.
Result<ThreadDump> take_thread_dump(pid_t pid, const DumpOptions& opt);

/// Threads with identical stacks (same frames by pc) grouped; groups ordered by size, then tid.
std::vector<std::vector<size_t>> group_threads(const ThreadDump& dump);

/// A threads/count profile (like Go's goroutine profile) with thread_name, tid, state labels.
Profile thread_dump_to_profile(const ThreadDump& dump);

}  // namespace pmprof
