// Private to the ptrace module (src/ptrace*.cpp): the per-thread trace state machine, the event
// dispatcher and the stop rounds shared by snapshot(), with_all_stopped() and
// detach_all(). Nothing here may be included from another module.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "pmprof/support/fd.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/types.h"

namespace pmprof {

using SteadyClock = std::chrono::steady_clock;

/// Nanoseconds on CLOCK_MONOTONIC (what SnapshotStats and pause_ns are measured in).
uint64_t monotonic_ns();

/// Where a traced thread is, as far as the tracer knows (ptrace(2) "Stopped states").
enum class TraceState {
    Running,    // not in a ptrace-stop (or its stop has not been reaped by waitpid yet)
    Trapped,    // in a ptrace-stop we reaped and have not resumed: we must resume it
    Listening,  // in a group-stop, resumed with PTRACE_LISTEN: stopped, but not ours to resume
    Gone,       // left the thread group (exec de-thread): only waiting to be reaped
};

struct TracedThread {
    TraceState state = TraceState::Running;
    int pending_signal = 0;       // signal-delivery-stop: re-injected by the resume
    bool group_stop = false;      // Trapped in a group-stop: resume with PTRACE_LISTEN
    bool interrupt_sent = false;  // a PTRACE_INTERRUPT whose stop has not been reported yet
    bool want_stop = false;       // a stop round holds this thread: keep it Trapped
    bool foreign = false;         // a non-thread clone child (another process): detach it
    bool released = false;        // detached: to be dropped (never waitpid it again)
};

/// Blocks SIGCHLD in the calling thread for the duration of a wait, so that a stop reported
/// while it waits stays pending for wait_for_event's sigtimedwait (with the default disposition
/// an unblocked SIGCHLD is discarded), and restores the previous mask.
class SigchldBlock {
  public:
    SigchldBlock();
    ~SigchldBlock();
    SigchldBlock(const SigchldBlock&) = delete;
    SigchldBlock& operator=(const SigchldBlock&) = delete;

  private:
    bool was_blocked_ = false;
};

/// The session's state. TraceSession::Impl is private, so the module's helpers work on this base.
struct SessionCore {
    pid_t pid = 0;
    pid_t tracer_tid = 0;    // the thread that seized: the only one ptrace answers (ptrace(2))
    bool launched = false;   // we forked it: we are its parent as well as its tracer
    bool detaching = false;  // detach_all started: every stop is answered with PTRACE_DETACH
    bool detached = false;   // nothing left traced
    std::map<pid_t, TracedThread> threads;  // ordered: threads() is sorted
    ExitInfo exit;
    SessionCounters counters;
    std::vector<MemoryMap> maps;  // /proc/PID/maps, read before stopping (never during)

    // ---- events (src/ptrace/events.cpp) ----
    /// Reaps at most one pending event of `tid` without blocking; true when one was handled.
    bool poll_one(pid_t tid);
    /// Handles every pending event of every tracee without blocking.
    void poll_all();
    /// Applies one waitpid status of `tid` to the state machine and resumes the thread unless
    /// a stop round wants it held (want_stop).
    void dispatch(pid_t tid, int status);
    /// Resumes a Trapped thread: PTRACE_LISTEN for a group-stop, else PTRACE_CONT re-injecting
    /// its pending signal. No-op in any other state.
    void resume(pid_t tid, TracedThread& t);
    /// PTRACE_DETACH of a Trapped thread, re-injecting its pending signal (0 for a group-stop:
    /// the thread then stays stopped with its process); marks it released.
    void detach_now(pid_t tid, TracedThread& t);
    /// Erases the released threads.
    void drop_detached();
    /// Sleeps until a child event may be pending (SIGCHLD), `deadline`, or at most `cap`.
    void wait_for_event(SteadyClock::time_point deadline, std::chrono::microseconds cap);
    /// False (and a warning naming `what`) when called from another thread than the tracer.
    bool on_tracer_thread(const char* what) const;
    /// Starts tracking a thread reported by PTRACE_EVENT_CLONE (GETEVENTMSG).
    void track_clone(pid_t child);
    /// Marks the process gone (every thread dropped) with what is known about how it ended.
    void note_exit(int status);
    void refresh_maps();
    const MemoryMap* map_containing(uint64_t address) const;

    // ---- asynchronous captures (src/ptrace/capture.cpp) ----
    std::map<pid_t, uint64_t> outstanding;  // tid -> when its PTRACE_INTERRUPT was sent
    std::vector<ThreadCapture> completed;   // until take_captures()
    CaptureOptions async_opt;
    std::vector<uint8_t> scratch;  // the stack copy lands here inside the stop
    size_t scratch_used = 0;
    uint64_t copy_seen_ns = 0;
    bool copy_pending = false;  // completed.back() still needs its bytes and its pause
    /// Called by dispatch() for a stopped thread with a capture outstanding: copies registers
    /// and stack top into `scratch` (the dispatcher resumes it right after).
    void complete_capture(pid_t tid);
    /// After that resume: the pause, and the bytes moved out of `scratch`.
    void finish_capture();
    /// Ends an outstanding capture without a copy ("exited").
    void fail_capture(pid_t tid, const char* why);
};

struct TraceSession::Impl : SessionCore {};

/// One round of stopping a set of threads together (DESIGN.md §1: every path out of a stop
/// resumes). The destructor resumes whatever is still held, so an exception or an early return
/// cannot leave a thread stopped.
class StopRound {
  public:
    // Abandoned: the user asked pmprof to stop (stop_requested()) before the thread stopped.
    enum class Outcome { Pending, Stopped, Exited, TimedOut, Abandoned, NotTraced };
    struct Member {
        pid_t tid = 0;
        Outcome outcome = Outcome::Pending;
        uint64_t interrupt_ns = 0;  // when PTRACE_INTERRUPT was sent
        uint64_t stopped_ns = 0;    // when the tracer first saw it stopped (waitpid reaped it)
        uint64_t resume_ns = 0;     // when it was resumed
        bool released = false;      // resumed (or detached) by release() inside the round
    };

    /// Sends PTRACE_INTERRUPT to each listed thread (threads already Trapped count at once).
    StopRound(SessionCore& impl, const std::vector<pid_t>& tids);
    ~StopRound();
    StopRound(const StopRound&) = delete;
    StopRound& operator=(const StopRound&) = delete;

    /// Waits until every member stopped, exited, or `deadline`; `on_stopped(i)` runs as member
    /// i stops (copy registers there, nothing slow). Members not stopped by then are TimedOut:
    /// their late stop is resumed by the dispatcher whenever it arrives.
    /// `honor_stop_request`: a ^C (stop_requested()) ends the wait early.
    void wait(SteadyClock::time_point deadline, const std::function<void(size_t)>& on_stopped,
              bool honor_stop_request = true);
    /// Resumes every member still held (by PTRACE_DETACH when `detach`). Idempotent.
    void resume_all(bool detach = false);
    /// Resumes (or detaches) member i now, from inside on_stopped: the other members are still
    /// being waited for, and this one need not wait with them.
    void release(size_t i, bool detach);

    std::vector<Member>& members() { return members_; }
    uint64_t first_interrupt_ns() const { return first_interrupt_ns_; }
    uint64_t last_resume_ns() const { return last_resume_ns_; }

  private:
    /// Pending member i after the events were drained: Stopped, Exited, or still Pending.
    void settle(size_t i, uint64_t seen_ns);
    SessionCore& impl_;
    std::vector<Member> members_;
    uint64_t first_interrupt_ns_ = 0;
    uint64_t last_resume_ns_ = 0;
    bool resumed_ = false;
};

/// PTRACE_SEIZE of `pid` refused with `err` (EPERM, or ENOSYS from a seccomp filter): the error
/// with why and what would allow it (src/os/access.cpp). In src/ptrace/probe.cpp.
Error permission_error(pid_t pid, int err);

/// Converts PTRACE_GETREGS output of `tid` to DWARF order; false (errno set) on failure. With
/// `eintr_syscall`: the system call the stop made fail with EINTR (orig_rax when rax is -EINTR),
/// else -1.
bool read_registers(pid_t tid, Registers* regs, long* eintr_syscall = nullptr);

/// True on a run_on_tracer_thread() thread: its exit detaches what is still traced, so
/// detach_all() need not stop anything (src/ptrace/tracer_thread.cpp).
bool tracer_thread_exits();
/// detach_all() there: detaches the threads in a ptrace-stop, leaves the others to the exit.
void detach_stopped(SessionCore& d);

}  // namespace pmprof
