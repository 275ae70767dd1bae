// The sampling loop's parts shared by src/sampler/loop.cpp (the loop: threads, looks, ticks, the
// end) and src/sampler/tick.cpp (what a sample is made of: stops, captures, the /proc fast path,
// unwinding, reused stacks). Not an interface: only those two files include it.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "pmprof/elf/image.h"
#include "pmprof/os/clock.h"
#include "pmprof/os/procfs.h"
#include "pmprof/os/signals.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/support/fd.h"
#include "sampler/policy.h"

namespace pmprof::sampling {

constexpr int64_t kMs = 1000000;
constexpr int64_t kSlice = 20 * kMs;            // longest wait without polling tracee events
constexpr int64_t kReloadMin = 100 * kMs;       // maps re-read at most this often...
constexpr int64_t kReloadBackoff = 1000 * kMs;  // ...and this often after a useless re-read
constexpr size_t kMaxStopsListed = 4096;        // threads listed in the stops-per-thread comment
// A running thread's state comes from /proc/.../syscall ("running"), not stat; stat, which alone
// has the thread's name, is still read at least this often for it (a rename shows that late).
constexpr int64_t kStatRefresh = 100 * kMs;

struct ThreadSlot {
    pid_t tid = 0;
    UniqueFd stat_fd, schedstat_fd, syscall_fd;
    // /proc/.../sched, cpu mode, opened at the thread's first interrupt that needs it:
    // se.exec_start (displaced_by_tracer). unavailable: ENOENT (no CONFIG_SCHED_DEBUG).
    UniqueFd sched_fd;
    bool sched_unavailable = false;
    std::string name;
    bool alive = true;
    int64_t first_seen_ns = 0;
    // This tick's observation.
    ThreadState state = ThreadState::Unknown;
    SchedStat sched;
    // cpu mode: schedstat read just before its last interrupt and, when it stopped at a system
    // call's return, inside that stop (CaptureOptions::before_interrupt, at_stop).
    SchedStat at_interrupt, at_stop;
    bool have_at_interrupt = false, have_at_stop = false;
    // se.exec_start just before the interrupt, -1 unread: equal to the tracer's own at the
    // tick's start when the thread left its cpu for the tracer (displaced_by_tracer).
    int64_t left_cpu_at_interrupt = -1;
    bool observed = false;
    // This tick's /proc/.../syscall text of a thread that ran and is blocked now: the fast path
    // unwinds from it instead of reading the file again.
    std::string observed_syscall;
    int64_t stat_read_ns = 0;  // when stat (state and name) was last read
    // The previous observation, and the last tick it showed the thread had run: a thread that
    // has not run for a while is looked at on fewer ticks (check_interval_ticks).
    bool have_seen = false;
    SchedStat last_seen;
    SchedStat first_seen;  // the first look's reading (run and wait totals at retire)
    uint64_t ran_tick = 0;
    uint64_t next_check_tick = 0;
    std::string tick_syscall;  // from a fast-path attempt that fell back to a stop
    // A capture requested and not yet reported (the thread first needs a cpu to stop on): the
    // thread is neither looked at nor sampled until it arrives, so its time is counted once.
    bool capture_outstanding = false;
    bool reported_unstoppable = false;  // named in stats_.unstoppable once
    // Wall-mode samples of an unchanged stack, added to the profile in one go (flush_reuse):
    // 1000 idle threads at 99 Hz would otherwise intern 99,000 identical samples a second.
    int64_t reuse_count = 0, reuse_weight = 0;
    // From the previous sample.
    bool have_baseline = false;
    CpuQuantum quantum;  // cpu mode: when this thread is due for a sample
    SchedStat baseline;
    int64_t last_sample_ns = 0;
    bool have_stack = false;
    RawStack stack;
    // The labels of the sample that took `stack`: its reused samples are the same moment of a
    // thread that has not run since, so they carry these, not the thread's state at the flush.
    std::vector<Label> stack_labels;
    bool have_regs = false;
    Registers regs;  // from the last real stop: seeds the /proc/.../syscall fast path
    uint64_t stops = 0, pause_ns = 0, eintr_stops = 0;
};

class Sampler {
  public:
    Sampler(TraceSession& session, const SamplerOptions& opt);
    // capture_opt_'s hooks hold `this`.
    Sampler(const Sampler&) = delete;
    Sampler& operator=(const Sampler&) = delete;
    Result<SamplerResult> run();

  private:
    Result<void> open_image();
    void sync_threads(int64_t now);
    /// `for_tick`: a cpu-mode thread not due for a sample (CpuQuantum) is not sampled this tick,
    /// so its state is not read either.
    void observe(ThreadSlot& t, bool for_tick = false);
    void tick(int64_t now);
    /// Counts a tick whose work outlasted the interval, and says once when that lowers the rate.
    void note_tick_cost(int64_t tick_ns, int64_t interval_ns);
    /// Samples `t` without stopping it when it can; false when it needs a stop this tick.
    bool sample_without_stop(ThreadSlot& t, int64_t now);
    int64_t sample_weight(const ThreadSlot& t, int64_t now) const;
    bool try_fast_path(ThreadSlot& t, std::string* syscall, RawStack* out);
    void capture_group(const std::vector<ThreadSlot*>& group, int64_t now);
    void collect_captures(int64_t now);
    /// Names the threads whose capture is outstanding for longer than --stop-timeout.
    void note_unstoppable(int64_t now);
    void record_capture(ThreadSlot& t, const ThreadCapture& cap, int64_t now);
    RawStack unwind_capture(const ThreadCapture& cap);
    bool maybe_reload_image();
    void install_image(std::unique_ptr<ProcessImage> image);
    void add_sample(ThreadSlot& t, const RawStack& stack, const std::string& syscall,
                    int64_t weight, int64_t now);
    void add_reuse(ThreadSlot& t, int64_t weight, int64_t now);
    /// cpu mode: `t` is not on a cpu (blocked, or waiting for one at a syscall return): its cpu
    /// time since its last sample goes to its pool instead of a sample.
    void charge_off_cpu(ThreadSlot& t, int64_t weight);
    /// cpu mode: the stop of `t` (seen R) landed at a syscall return it waited at, not ran at.
    bool waited_at_syscall_return(const ThreadSlot& t, const ThreadCapture& cap);
    /// True when the instruction before `pc` is `syscall` (cached per pc).
    bool is_syscall_return(uint64_t pc);
    /// cpu mode: `t` left its cpu for the tracer itself, at this tick's start (its se.exec_start
    /// just before the interrupt is the tracer's own).
    bool displaced_by_tracer(const ThreadSlot& t) const;
    /// cpu mode, at the end: each thread's samples scaled so that they add up to its measured
    /// cpu time (the pool shared out in proportion; docs/cpu-mode.md).
    void share_out_pools(Profile& profile) const;
    /// The thread's time on a cpu and waiting for one while watched, into the stats.
    void add_sched_totals(const ThreadSlot& t);
    void note_unwinder_stats();
    void follow_exec();
    void flush_reuse(ThreadSlot& t);
    void retire(ThreadSlot& t, int64_t now);
    double worst_pause_fraction(int64_t now) const;
    void wait_until(int64_t deadline);
    void show_progress(int64_t now, bool last);
    SamplerResult finish(SamplerEnd end, std::string message);

    TraceSession& session_;
    const SamplerOptions& opt_;
    CaptureOptions capture_opt_;  // opt_.capture, with the schedstat readings in cpu mode
    const pid_t pid_;
    const int64_t nominal_ns_;
    ProcessMemory memory_;
    std::unique_ptr<ProcessImage> image_;
    std::string comm_;  // the program's name (comm label), read with each image
    std::unique_ptr<Unwinder> unwinder_;
    std::unique_ptr<Symbolizer> root_symbols_;  // function names only, for the root check
    ProfileBuilder builder_;
    std::map<pid_t, ThreadSlot> threads_;
    ThreadCapture fast_cap_;  // try_fast_path's copy: its stack buffer is allocated (zeroed) once
    // SIGCHLD blocked in the tracer thread while sampling, so the wait between ticks wakes as
    // soon as a tracee reports an event (a signal to re-inject must not wait a whole tick) and
    // otherwise sleeps. Other signals (SIGINT) still interrupt the wait: they are installed
    // without SA_RESTART (include/pmprof/os/signals.h).
    SignalBlock waiter_{SIGCHLD};
    PauseBudget budget_;
    PauseHistogram pauses_;
    PauseHistogram stop_waits_;  // PTRACE_INTERRUPT to the stop: time the thread ran or waited
    SamplerStats stats_;
    std::vector<std::pair<pid_t, uint64_t>> retired_stops_, retired_eintr_;
    std::map<pid_t, int64_t> off_cpu_ns_;  // cpu mode: per thread, cpu time with no sample
    // cpu mode: /proc/thread-self/sched of the thread that runs the ticks (opened at the first
    // tick, on that thread) and its se.exec_start at this tick's start, -1 unread: when the
    // tracer last got a cpu.
    UniqueFd tracer_sched_fd_;
    int64_t tracer_on_cpu_since_ = -1;
    bool tracer_sched_unavailable_ = false;
    std::map<uint64_t, bool> syscall_sites_;  // pc -> the instruction before it is `syscall`
    int64_t start_ns_ = 0, start_realtime_ns_ = 0, next_reload_ns_ = 0, next_progress_ns_ = 0;
    rusage usage_start_{};
    uint64_t tick_no_ = 0;
    std::vector<Profile> before_exec_;  // one profile per program the target ran before this one
    uint64_t synced_added_ = 0, synced_exited_ = 0;  // session counters at the last sync
    bool announced_lowering_ = false;
    bool announced_slow_ticks_ = false;
    uint64_t tick_total_ns_ = 0;
    bool first_sync_ = true;  // threads present at the start get a cpu baseline, not a sample
};

}  // namespace pmprof::sampling
