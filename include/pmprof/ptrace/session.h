// TraceSession: the only code that calls ptrace() and waitpid() on tracees.
//
// Contract (docs/design.md §1): PTRACE_SEIZE, never PTRACE_ATTACH; stops by PTRACE_INTERRUPT only;
// never PTRACE_O_EXITKILL on a process we did not start; every path out of a stop resumes the
// thread; signal-delivery-stops are re-injected; group-stops answered with PTRACE_LISTEN; every
// wait has a deadline and EINTR is retried. All calls must come from the thread that created the
// session (Linux ties a tracee to the tracer *thread*). The verbs create their sessions inside
// run_on_tracer_thread(): when that thread exits, the kernel detaches every thread still traced
// without stopping it, which is how tracing ends without one more stop per thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pmprof/support/error.h"
#include "pmprof/support/types.h"

namespace pmprof {

struct CaptureOptions {
    size_t max_stack_bytes = 64 * 1024;           // copied from sp - 128 (red zone) upwards
    std::chrono::milliseconds stop_timeout{100};  // a thread not stopped by then is skipped
    bool copy_stack = true;
    /// Resume each captured thread with PTRACE_DETACH instead of PTRACE_CONT: for one-shot
    /// snapshots, one stop per thread instead of a second one just to detach.
    bool detach = false;
    /// Resume (or detach) each thread as soon as its copy is taken, instead of holding every
    /// thread until the last one has stopped. The threads are still interrupted together, so
    /// they stop at about the same moment, but one thread's pause is then only its own copy:
    /// it does not include the wait for a sibling that first needs a cpu to stop on.
    bool release_each = false;
    /// With release_each: at most this many threads interrupted and not yet released at a time
    /// (the next ones as those are copied), each given stop_timeout from its own interrupt. A
    /// thread's stop then lasts its own copy plus those of at most this many siblings, whatever
    /// the thread count: interrupted all at once, 4000 threads waited up to half a second for
    /// the tracer to reach them. 0: all at once.
    size_t max_in_flight = 64;
    /// request_captures: called with the thread's tid on the tracer thread just before its
    /// PTRACE_INTERRUPT (also for a group-stopped thread, which the interrupt re-traps; not for
    /// one a stop round holds, copied without an interrupt), and with its capture inside the
    /// stop, after the copy and before the resume: for readings of the thread as the interrupt
    /// found it and as it stopped (the cpu-mode sampler's schedstat). Each must be quick: the
    /// second one is part of the thread's pause. Empty: nothing.
    std::function<void(pid_t)> before_interrupt;
    std::function<void(const ThreadCapture&)> at_stop;
};

struct SnapshotStats {
    uint64_t stop_window_ns = 0;   // first PTRACE_INTERRUPT to last resume
    uint64_t longest_stop_ns = 0;  // the longest one thread stayed stopped (seen stopped→resume)
    size_t threads_captured = 0;
    size_t threads_skipped = 0;  // exited, zombie, or not stopped in time (D state)
    // Why the skipped ones were: exited before their stop; not stopped within stop_timeout
    // (D state); left unstopped because a stop was requested (^C); the rest could not be read.
    size_t threads_exited = 0, threads_timed_out = 0, threads_abandoned = 0;
    size_t max_in_flight = 0;  // the most threads interrupted and not yet resumed at once
};

/// Counters over the session's life, for summaries.
struct SessionCounters {
    uint64_t stops = 0;
    uint64_t signals_reinjected = 0;
    uint64_t group_stops = 0;
    uint64_t threads_added = 0;  // clone events
    uint64_t threads_exited = 0;
    uint64_t stop_timeouts = 0;
    uint64_t eintr_stops = 0;  // stops that made a blocked system call fail with EINTR
    // Asynchronous captures: the most threads interrupted and not yet copied at one time.
    uint64_t captures_peak_in_flight = 0;
    bool exec_seen = false;  // the target called execve: its old symbols are void
};

/// How the traced process ended, once it did.
struct ExitInfo {
    bool exited = false;  // true once the thread group is gone
    bool signaled = false;
    int status = 0;  // exit code, or the signal number when signaled
};

class TraceSession {
  public:
    /// Seizes every thread of `pid` (re-listing /proc/PID/task until no new thread appears) with
    /// PTRACE_O_TRACECLONE|TRACEEXEC. Fails with a one-line explanation: no such process, zombie,
    /// pmprof itself or its parent, already traced (names the TracerPid), or no permission (says
    /// what is needed: same user or root, CAP_SYS_PTRACE, the ptrace_scope value).
    /// With `want`, only the threads it accepts are seized (the others are never touched, not
    /// even to detach them); threads they create are still traced (PTRACE_O_TRACECLONE).
    static Result<std::unique_ptr<TraceSession>>
    seize(pid_t pid, const std::function<bool(pid_t)>& want = nullptr);

    /// Forks and execs argv under trace (the child stops at its exec), seized from its first
    /// instruction; `exit_kill` sets PTRACE_O_EXITKILL (only ever for a process we started).
    /// `hold_at_exec`: the child is left in its exec stop, its first instruction not yet run,
    /// until release_exec_hold() (or the session's end, or the tracer thread's exit): what
    /// must be in place before the program runs (perf events its children inherit) is set up
    /// meanwhile.
    static Result<std::unique_ptr<TraceSession>> launch(const std::vector<std::string>& argv,
                                                        bool exit_kill, bool hold_at_exec = false);
    /// Resumes a child launch() held at its exec. No-op when none is held.
    void release_exec_hold();

    TraceSession(const TraceSession&) = delete;
    TraceSession& operator=(const TraceSession&) = delete;
    /// Detaches everything (resuming every thread).
    ~TraceSession();

    pid_t pid() const;
    /// The threads currently traced, sorted.
    std::vector<pid_t> threads() const;
    /// The /proc/PID/maps the last snapshot() or capture read before its stops (empty before).
    const std::vector<MemoryMap>& maps() const;

    /// One consistent snapshot: stops the listed threads (all when empty) together, copies the
    /// registers and the top of the stack of each, then resumes them all.
    std::vector<ThreadCapture> snapshot(const std::vector<pid_t>& tids, const CaptureOptions& opt,
                                        SnapshotStats* stats);

    /// Asynchronous captures, for the sampler: sends PTRACE_INTERRUPT to each listed thread
    /// that has no capture outstanding, at most opt.max_in_flight at a time (the next ones from
    /// this call, wait_captures and poll_events as earlier ones are copied, or when one has not
    /// stopped within opt.stop_timeout). Whenever its stop is reported (in this call, in
    /// wait_captures, poll_events, or any later call) the thread's registers and stack top are
    /// copied and it is resumed at once: no thread is ever held waiting for another, and a
    /// thread that first needs a cpu to stop on (a busy machine) is captured when it gets one.
    void request_captures(const std::vector<pid_t>& tids, const CaptureOptions& opt);
    /// Handles events until no capture is outstanding, the timeout, or a stop request.
    void wait_captures(std::chrono::nanoseconds timeout);
    /// The captures completed so far (ok, or !ok with why: exited, not traced), oldest first.
    /// pause_ns is 0 (the copy is the whole pause); stop_wait_ns is interrupt to stop.
    std::vector<ThreadCapture> take_captures();
    size_t captures_outstanding() const;
    /// When the outstanding capture of `tid` was interrupted (monotonic ns); 0 while it still
    /// waits for room in the window (CaptureOptions::max_in_flight), or when none is outstanding.
    int64_t capture_sent_ns(pid_t tid) const;

    /// Stops every thread, runs `fn` while they are stopped (a heap walk), resumes them whatever
    /// `fn` does (exceptions are caught and returned as the Error). `fn` gets the registers of
    /// every thread from this stop (copy_stack off: `ok` with an empty stack copy, or !ok with
    /// the reason). Returns the stop window.
    Result<uint64_t>
    with_all_stopped(const std::function<void(const std::vector<ThreadCapture>&)>& fn,
                     std::chrono::milliseconds stop_timeout);

    /// Handles pending tracee events without blocking: clone (track), exit (drop),
    /// signal-delivery (re-inject), group-stop (LISTEN), exec (flag).
    void poll_events();
    /// Copies and resumes the threads of the capture window that have stopped, and interrupts
    /// the next queued ones: one waitpid per window member, nothing when no capture is in
    /// flight. For long loops of the tracer (a tick over thousands of threads), so a stopped
    /// thread does not wait for the loop to end.
    void service_captures();

    /// Resumes and detaches every thread. Idempotent. On a run_on_tracer_thread() thread no
    /// thread is stopped for it: those in a ptrace-stop are detached at once, the others when
    /// the tracer thread exits (a pending PTRACE_INTERRUPT is cancelled then). Elsewhere each
    /// running thread is interrupted to be detached (PTRACE_DETACH needs a stop), and one that
    /// does not stop in time (D state) is released by the kernel when pmprof exits.
    void detach_all();

    /// Detaches every thread as detach_all() does and runs `work` (symbolization: no ptrace) on
    /// a helper thread meanwhile, answering every stop that still arrives (a thread leaving D
    /// state with our interrupt pending) with PTRACE_DETACH, so no thread waits stopped for the
    /// work to end. Exceptions from `work` are rethrown.
    void detach_during(const std::function<void()>& work);

    /// Clears counters().exec_seen once the caller has dealt with the new program.
    void acknowledge_exec();

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

/// Runs `fn` on a new thread and returns once that thread has exited, rethrowing what `fn`
/// threw. Sessions created inside `fn` are traced by that thread; its exit detaches, without a
/// stop, every thread still traced (kernel exit_ptrace -> __ptrace_unlink: pending interrupts
/// are cancelled, a thread in a ptrace-stop is woken with its pending signal). Nothing can be
/// left stopped or traced by pmprof after it returns.
void run_on_tracer_thread(const std::function<void()>& fn);

/// "tid 42 (vforker) <what>: state D (disk sleep), wchan wait_for_vfork_done": a thread that
/// did not stop, by name, with why it may not have, read from /proc without touching it.
std::string describe_unstoppable(pid_t pid, pid_t tid, const std::string& what);

/// Checks that `pid` can really be traced, stopping nothing: check_traceable, then a
/// PTRACE_SEIZE of its threads from a short-lived thread whose exit detaches them (the kernel
/// detaches the tracees of an exiting tracer without a stop). The Error is the one a seize
/// would give (permission, seccomp, another tracer). For `serve`'s start-up.
Result<void> probe_traceable(pid_t pid);

/// Whether pmprof may call ptrace at all (a seccomp filter on pmprof denies it): a request on
/// pmprof's own pid, which it never traces, answers ESRCH when the call is allowed. 0 when
/// allowed, else the errno the filter gives (EPERM, ENOSYS). Touches no other process.
int probe_ptrace_syscall();

/// Copies up to `len` bytes at `address` of thread `tid`, which must be in a ptrace-stop of
/// the calling thread, with PTRACE_PEEKDATA (a word per call). Bytes copied; 0 with errno set
/// when none (src/ptrace/peek.cpp; used by src/ptrace/memory.cpp as its last resort).
size_t peek_memory(pid_t tid, uint64_t address, void* out, size_t len);

}  // namespace pmprof
