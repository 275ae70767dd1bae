// TraceSession: the only code that calls ptrace() and waitpid() on tracees.
//
// Contract (DESIGN.md §1): PTRACE_SEIZE, never PTRACE_ATTACH; stops by PTRACE_INTERRUPT only;
// never PTRACE_O_EXITKILL on a process we did not start; every path out of a stop resumes the
// thread; signal-delivery-stops are re-injected; group-stops answered with PTRACE_LISTEN; every
// wait has a deadline and EINTR is retried. All calls must come from the thread that created the
// session (Linux ties a tracee to the tracer *thread*).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pmprof/error.h"
#include "pmprof/types.h"

namespace pmprof {

struct CaptureOptions {
    size_t max_stack_bytes = 64 * 1024;  // copied from sp - 128 (red zone) upwards
    std::chrono::milliseconds stop_timeout{100};  // a thread not stopped by then is skipped
    bool copy_stack = true;
    /// Resume each captured thread with PTRACE_DETACH instead of PTRACE_CONT: for one-shot
    /// snapshots, one stop per thread instead of a second one just to detach.
    bool detach = false;
};

struct SnapshotStats {
    uint64_t stop_window_ns = 0;  // first PTRACE_INTERRUPT to last resume
    size_t threads_captured = 0;
    size_t threads_skipped = 0;   // exited, zombie, or not stopped in time (D state)
};

/// Counters over the session's life, for summaries.
struct SessionCounters {
    uint64_t stops = 0;
    uint64_t signals_reinjected = 0;
    uint64_t group_stops = 0;
    uint64_t threads_added = 0;    // clone events
    uint64_t threads_exited = 0;
    uint64_t stop_timeouts = 0;
    bool exec_seen = false;        // the target called execve: its old symbols are void
};

/// How the traced process ended, once it did.
struct ExitInfo {
    bool exited = false;     // true once the thread group is gone
    bool signaled = false;
    int status = 0;          // exit code, or the signal number when signaled
};

class TraceSession {
  public:
    /// Seizes every thread of `pid` (re-listing /proc/PID/task until no new thread appears) with
    /// PTRACE_O_TRACECLONE|TRACEEXEC. Fails with a one-line explanation: no such process, zombie,
    /// pmprof itself or its parent, already traced (names the TracerPid), or no permission (says
    /// what is needed: same user or root, CAP_SYS_PTRACE, the ptrace_scope value).
    static Result<std::unique_ptr<TraceSession>> seize(pid_t pid);

    /// Forks and execs argv under trace (the child stops at its exec), seized from its first
    /// instruction; `exit_kill` sets PTRACE_O_EXITKILL (only ever for a process we started).
    static Result<std::unique_ptr<TraceSession>> launch(const std::vector<std::string>& argv,
                                                        bool exit_kill);

    TraceSession(const TraceSession&) = delete;
    TraceSession& operator=(const TraceSession&) = delete;
    /// Detaches everything (resuming every thread).
    ~TraceSession();

    pid_t pid() const;
    /// The threads currently traced, sorted.
    std::vector<pid_t> threads() const;

    /// One consistent snapshot: stops the listed threads (all when empty) together, copies the
    /// registers and the top of the stack of each, then resumes them all.
    std::vector<ThreadCapture> snapshot(const std::vector<pid_t>& tids, const CaptureOptions& opt,
                                        SnapshotStats* stats);

    /// Stops one thread, copies registers and stack top, resumes it.
    ThreadCapture capture(pid_t tid, const CaptureOptions& opt);

    /// Stops every thread, runs `fn` while they are stopped (a heap walk), resumes them whatever
    /// `fn` does (exceptions are caught and returned as the Error). Returns the stop window.
    Result<uint64_t> with_all_stopped(const std::function<void()>& fn,
                                      std::chrono::milliseconds stop_timeout);

    /// Handles pending tracee events without blocking: clone (track), exit (drop),
    /// signal-delivery (re-inject), group-stop (LISTEN), exec (flag).
    void poll_events();

    /// Resumes and detaches every thread. Idempotent. Threads that cannot be stopped to detach
    /// (D state) are released by the kernel when pmprof exits.
    void detach_all();

    bool process_exited() const;
    const ExitInfo& exit_info() const;
    const SessionCounters& counters() const;

  private:
    struct Impl;
    explicit TraceSession(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// Checks, without tracing, whether `pid` can be traced; the Error says why not.
Result<void> check_traceable(pid_t pid);

}  // namespace pmprof
