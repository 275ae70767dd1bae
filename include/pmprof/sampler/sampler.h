// The sampling profiler's tick loop (docs/design.md §1.2-4): per tick, read every thread's state
// from /proc; reuse the stack of a thread that has not run since its previous sample; try a blocked
// thread from /proc/.../syscall without stopping it; stop only the rest, one thread at a time,
// copying registers and stack top; unwind after the resume; intern the raw stack. Symbolization
// runs once, at the end.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pmprof/profile/profile.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/support/error.h"
#include "pmprof/symbolize/symbolize.h"
#include "pmprof/unwind/unwind.h"

namespace pmprof {

/// wall: every thread at every tick, running or blocked (weight: wall time since its previous
/// sample). cpu: only threads that ran, weighted by their cpu time since the previous sample.
enum class SampleMode { Wall, Cpu };

/// Parses "wall" / "cpu".
Result<SampleMode> parse_sample_mode(std::string_view name);

/// Who samples cpu mode (include/pmprof/sampler/perf.h): the kernel's task-clock events (perf,
/// nothing stopped) or PTRACE_INTERRUPT ticks; auto takes perf when the kernel allows it. Wall
/// mode is always ptrace.
enum class CpuBackend { Auto, Ptrace, Perf };

struct SamplerOptions {
    SampleMode mode = SampleMode::Wall;
    double rate_hz = 99;
    int64_t duration_ns = 0;                 // 0: until the target exits or a stop is requested
    double max_pause_fraction = 0.05;        // per thread: time stopped / wall time, upper bound
    std::vector<std::string> thread_filter;  // tids or names; empty: every thread
    UnwinderKind unwinder = UnwinderKind::Dwfl;
    size_t max_depth = 256;
    CaptureOptions capture;
    SymbolizeOptions symbolize;
    CpuBackend backend = CpuBackend::Ptrace;  // run_sampler is the ptrace backend itself
    bool kernel_frames = false;               // perf backend: kernel frames on top (--kernel)
    bool progress = false;                    // one-line progress display on stderr
    std::string command_line;                 // for the profile comment
    /// Follow the target's child processes (fork, vfork, clone without CLONE_THREAD) as they
    /// appear, each symbolized from its own maps (docs/design.md §4.7).
    bool subprocesses = false;
    /// Every sample carries `pid` and `comm` labels (several processes in one profile).
    bool process_labels = false;
    /// Polled with stop_requested(): ends this run alone (one process of a tree).
    std::function<bool()> stop;
    /// Called on the tracer thread between ticks (at least every 20 ms) with the session: serve
    /// answers a thread dump from it while a profile runs.
    std::function<void(TraceSession&)> between_ticks;
};

/// Why the loop ended.
enum class SamplerEnd { Duration, StopRequested, TargetExited };

struct SamplerStats {
    SampleMode mode = SampleMode::Wall;
    std::string backend = "ptrace";  // "ptrace" or "perf"
    std::string backend_reason;      // why that backend ran (auto's choice, a limit)
    // cpu mode, ptrace: samples dropped because the thread was blocked, or stopped at a syscall
    // return after waiting for a cpu there (woken or preempted: not cpu time).
    uint64_t not_on_cpu = 0;
    // cpu mode, ptrace: stops at a syscall return after the thread had left its cpu for the
    // tracer itself, sampled (they ran there when the tick began).
    uint64_t displaced_by_tracer = 0;
    // ptrace: the sampled threads' time on a cpu and waiting for one (schedstat, first look to
    // last): wait / (run + wait) bounds the share of cpu samples found at a wake-up point.
    uint64_t threads_run_ns = 0, threads_wait_ns = 0;
    uint64_t perf_lost = 0;         // perf: samples the kernel dropped (ring buffer full)
    uint64_t perf_throttled = 0;    // perf: throttle records (perf_event_max_sample_rate)
    uint64_t perf_no_user = 0;      // perf: samples without user registers (not unwound)
    uint64_t perf_loop_cpu_ns = 0;  // perf: pmprof's cpu after the events were opened
    uint64_t ticks = 0;
    uint64_t samples = 0;           // thread-samples added to the profile
    uint64_t stops = 0;             // thread stops (capture()) by the sampler
    uint64_t stops_avoided = 0;     // samples taken without a stop (reuse + /proc fast path)
    uint64_t reused = 0;            // of which: thread had not run, previous stack reused
    uint64_t fast_path = 0;         // of which: blocked thread unwound from /proc/.../syscall
    uint64_t capture_failures = 0;  // stops that copied nothing (exited, not stopped in time)
    uint64_t unwind_failures = 0;   // stacks that did not reach their root
    uint64_t unwinds = 0, unwinds_cached = 0;  // stacks unwound; of which by cached CFI rules
    uint64_t threads_seen = 0;
    uint64_t image_reloads = 0;     // maps changed (dlopen, early start of `record`)
    uint64_t execs = 0;             // execve calls followed (each program symbolized with its own)
    uint64_t processes = 0;         // processes sampled (more than 1 with several pids or a tree)
    uint64_t processes_missed = 0;  // children seen that could not be sampled (gone, not allowed)
    uint64_t wall_ns = 0;           // sampling time
    double requested_rate_hz = 0;
    double effective_rate_hz = 0;  // ticks / wall time
    bool rate_lowered = false;     // the pause budget lowered the rate
    // Ticks whose own work (looking at every thread, the stops, the unwinding) took longer
    // than the interval: with thousands of threads these, not the budget, lower the rate.
    uint64_t ticks_late = 0;
    uint64_t tick_mean_ns = 0, tick_max_ns = 0;                        // one tick's work
    uint64_t pause_median_ns = 0, pause_p99_ns = 0, pause_max_ns = 0;  // per thread stop
    // PTRACE_INTERRUPT to the stop being reported: the thread was running, or runnable and
    // waiting for a cpu (not a pause: the stop itself starts only then).
    uint64_t stop_wait_median_ns = 0, stop_wait_p99_ns = 0;
    // The most threads interrupted and not yet copied at one time (CaptureOptions::
    // max_in_flight): what bounds how long a stopped thread waits for the tracer to reach it.
    uint64_t max_in_flight = 0;
    double max_thread_pause_fraction = 0;  // the most-stopped thread: stopped time / wall time
    uint64_t cpu_user_ns = 0, cpu_system_ns = 0;               // pmprof's own cpu during sampling
    std::vector<std::pair<pid_t, uint64_t>> stops_per_thread;  // tid, stops (threads with any)
    uint64_t stops_per_thread_omitted = 0;  // threads with stops left out of that list (bound)
    // Stops that made a blocked call fail with EINTR (epoll_wait, sigtimedwait, semop, recv with
    // SO_RCVTIMEO: the program sees them), and per thread (tid, such stops), bounded as above.
    uint64_t eintr_stops = 0;
    std::vector<std::pair<pid_t, uint64_t>> eintr_per_thread;
    // Threads whose stop did not come within --stop-timeout (D state: a vfork parent), by name
    // with state and wchan; their capture arrives when they leave the kernel, or is cancelled.
    std::vector<std::string> unstoppable;
};

struct SamplerResult {
    Profile profile;
    SamplerStats stats;
    SamplerEnd end = SamplerEnd::Duration;
    ExitInfo exit;            // valid when end == TargetExited
    std::string end_message;  // "duration reached", "target exited with status 3", ...
};

/// Samples the process of `session` (created by the calling thread, which must stay the only one
/// using it) until the duration ends, stop_requested(), the target exits or execs. Detaches the
/// session before it returns: the profile is symbolized while late stops are detached
/// (TraceSession::detach_during). Returns an Error only when nothing could be sampled
/// (no thread matches the filter, the image cannot be opened).
Result<SamplerResult> run_sampler(TraceSession& session, const SamplerOptions& opt);

/// Seizes `pid` from a tracer thread of its own (run_on_tracer_thread), samples it with
/// run_sampler and detaches; that thread's exit releases, without a stop, whatever is still
/// traced. The seize's Error (no such process, no permission) is returned as any other.
Result<SamplerResult> sample_process(pid_t pid, const SamplerOptions& opt);

/// Several processes with the ptrace backend (docs/design.md §4.7): each of `pids`, and with
/// opt.subprocesses every descendant found while the run lasts (polled from
/// /proc/PID/task/TID/children), is seized and sampled on a tracer thread of its own, with its
/// own maps and symbols, until it exits or the run ends (the duration, a stop request, or every
/// one of `pids` gone). `launched`: the session of the process `record` started (pids = {its
/// pid}), traced and sampled by the calling thread; the run ends with it. One profile, every
/// sample labelled with `pid` and `comm`; the counters added up; the first process's end.
Result<SamplerResult> run_tree_sampler(const std::vector<pid_t>& pids, const SamplerOptions& opt,
                                       TraceSession* launched = nullptr);

/// The end of every backend's run, once r.profile (the program sampled last) and r.stats are
/// set: the profiles of the programs an execve replaced (`before_exec`, oldest first) merged in,
/// the last program's binary kept as the first mapping (pprof's convention), then the sample
/// type, start time, duration, `command_line` and the statistics as comments.
void finish_sampler_profile(SamplerResult& r, const std::vector<Profile>& before_exec,
                            const std::string& sample_type, int64_t start_realtime_ns,
                            const std::string& command_line);

/// The statistics as profile comments: one summary line, one line of stops per thread.
std::vector<std::string> format_sampler_comments(const SamplerResult& result);
/// "pmprof backend: NAME (why); ..." — which backend ran, why, and what it dropped.
std::string backend_line(const SamplerStats& stats);

}  // namespace pmprof
