// Private to the ptrace module (src/ptrace*.cpp): the per-thread trace state machine, the event
// dispatcher and the stop rounds shared by snapshot(), with_all_stopped() and
// detach_all(). Nothing here may be included from another module.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include "pmprof/os/clock.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/fd.h"
#include "pmprof/support/types.h"

namespace pmprof {

using SteadyClock = std::chrono::steady_clock;

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

/// The session's state. TraceSession::Impl is private, so the module's helpers work on this base.
struct SessionCore {
    pid_t pid = 0;
    pid_t tracer_tid = 0;       // the thread that seized: the only one ptrace answers (ptrace(2))
    bool launched = false;      // we forked it: we are its parent as well as its tracer
    bool detaching = false;     // detach_all started: every stop is answered with PTRACE_DETACH
    bool hold_at_exec = false;  // launch(): leave the child in its exec stop
    bool exec_held = false;     // it is there, until release_exec_hold()
    bool detached = false;      // nothing left traced
    using ThreadMap = std::map<pid_t, TracedThread>;
    ThreadMap threads;  // ordered: threads() is sorted
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
    // dispatch()'s phases, in its order:
    /// The entry of `tid`, added (foreign when not in the thread group) for a thread whose first
    /// stop came before its parent's clone event.
    ThreadMap::iterator find_or_adopt(pid_t tid);
    /// An exit status: ends its capture, erases `it`, and marks the process gone once the
    /// leader's exit arrives (or the last thread of a zombie leader's group exits).
    void drop_exited(ThreadMap::iterator it, int status);
    /// A ptrace-stop: the thread becomes Trapped with what the stop says (group-stop, a signal to
    /// re-inject, a new thread to track, an exec that voids the maps). Resumes nothing.
    void enter_stop(pid_t tid, TracedThread& t, int status);
    /// Answers a Trapped thread: completes an outstanding capture, then detaches it (a foreign
    /// clone, or detach_all under way; the entry is erased) or resumes it unless want_stop.
    void answer_stop(pid_t tid, TracedThread& t);
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
    // tid -> when its PTRACE_INTERRUPT was sent; 0 while it waits in capture_queue.
    std::map<pid_t, uint64_t> outstanding;
    std::deque<pid_t> capture_queue;       // requested, not interrupted yet (the window is full)
    std::vector<pid_t> capture_window;     // interrupted, not stopped, younger than stop_timeout
    std::vector<ThreadCapture> completed;  // until take_captures()
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
    /// Interrupts queued captures while fewer than async_opt.max_in_flight are in the window.
    /// A capture leaves the window when its thread stops, exits, or has not stopped within
    /// stop_timeout (then it stays outstanding: its late stop is still copied and resumed).
    void refill_captures();
    /// Interrupts one requested thread (or copies it at once when it is already Trapped).
    void send_capture(pid_t tid);
    /// Reaps the stops of the window's threads one waitpid each, refilling as they are copied,
    /// until the window is empty or none of its threads has stopped. waitid(P_ALL) walks every
    /// traced thread in the kernel (32 us a call at 4000 threads): per stop, that would be paid
    /// by every thread stopped behind it.
    void pump_captures();
};

struct TraceSession::Impl : SessionCore {};

/// One round of stopping a set of threads together (docs/design.md §1: every path out of a stop
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
        bool sent = false;          // interrupted (or found Trapped): no longer queued
        bool held = false;          // Stopped, counted in the window until released
        uint64_t deadline_ns = 0;   // windowed: when it times out (0: the round's deadline)
        bool extended = false;      // found runnable at its timeout: given more time once
    };

    /// Sends PTRACE_INTERRUPT to the listed threads (threads already Trapped count at once):
    /// to all of them now, or with `max_in_flight`, to at most that many at a time, the next
    /// ones as earlier members stop and are released or give up. A round with a window must
    /// release each member in on_stopped, and then gives each member `member_timeout` from its
    /// own interrupt (0: only wait()'s deadline). At thousands of threads this is what keeps
    /// each thread's stop short: interrupted all at once, the last ones to be copied waited for
    /// the tracer to copy every thread before them (docs/design.md, the stop window).
    StopRound(SessionCore& impl, const std::vector<pid_t>& tids, size_t max_in_flight = SIZE_MAX,
              std::chrono::nanoseconds member_timeout = std::chrono::nanoseconds{0});
    ~StopRound();
    StopRound(const StopRound&) = delete;
    StopRound& operator=(const StopRound&) = delete;

    /// Waits until every member stopped, exited, timed out, or `deadline`; `on_stopped(i)` runs
    /// as member i stops (copy registers there, nothing slow). Members not stopped in time are
    /// TimedOut: their late stop is resumed by the dispatcher whenever it arrives.
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
    /// The most members that were interrupted and not yet released at one time.
    size_t peak_in_flight() const { return peak_in_flight_; }

  private:
    /// Interrupts member i (or takes it as it is when already Trapped).
    void send(size_t i);
    /// Sends to queued members while fewer than max_in_flight_ are in flight or held.
    void refill();
    /// Reaps the events of the members in flight (and of anything else waitable).
    void poll();
    /// Pending member i after the events were drained: Stopped, Exited, or still Pending.
    void settle(size_t i, uint64_t seen_ns);
    void give_up(Member& m, Outcome why);
    /// Member m reached its deadline still Pending: more time when runnable, else TimedOut.
    void expire(Member& m);
    SessionCore& impl_;
    std::vector<Member> members_;
    std::vector<size_t> in_flight_;  // sent, still Pending
    size_t next_unsent_ = 0;         // members_[next_unsent_..] not interrupted yet
    size_t held_ = 0;                // Stopped and not released
    size_t max_in_flight_ = SIZE_MAX;
    uint64_t member_timeout_ns_ = 0;
    size_t peak_in_flight_ = 0;
    uint64_t first_interrupt_ns_ = 0;
    uint64_t last_resume_ns_ = 0;
    bool resumed_ = false;
};

/// PTRACE_SEIZE of `pid` refused with `err` (EPERM, or ENOSYS from a seccomp filter): the error
/// with why and what would allow it (src/os/access.cpp). In src/ptrace/probe.cpp.
Error permission_error(pid_t pid, int err);

/// Converts PTRACE_GETREGS output of `tid` to DWARF order; false (errno set) on failure. With
/// `eintr_syscall`: the system call the stop made fail with EINTR (orig_rax when rax is -EINTR),
/// else -1. With `broken_syscall`: the system call the stop broke, failed with EINTR or to be
/// restarted after the resume (rax -ERESTART*), else -1. With `in_syscall`: orig_rax, the call
/// the thread stopped in (at its return), -1 for a stop in user code.
bool read_registers(pid_t tid, Registers* regs, long* eintr_syscall = nullptr,
                    long* broken_syscall = nullptr, long* in_syscall = nullptr);

/// True on a run_on_tracer_thread() thread: its exit detaches what is still traced, so
/// detach_all() need not stop anything (src/ptrace/tracer_thread.cpp).
bool tracer_thread_exits();
/// detach_all() there: detaches the threads in a ptrace-stop, leaves the others to the exit.
void detach_stopped(SessionCore& d);

}  // namespace pmprof
