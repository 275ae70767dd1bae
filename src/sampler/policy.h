// The sampler's decisions, kept free of I/O so they can be unit-tested: what to do with a thread
// this tick, how long the next tick waits under the pause budget, and pause percentiles in
// constant memory (a one-hour run at 999 Hz makes millions of stops).
#pragma once

#include <array>
#include <cstdint>

#include "pmprof/os/procfs.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/support/types.h"

namespace pmprof {

/// What one thread needs this tick.
enum class SampleAction {
    Skip,         // no sample: gone, or (cpu mode) did not run / no baseline yet
    Reuse,        // has not run since the previous sample: same stack, no stop
    TryFastPath,  // blocked: unwind from /proc/.../syscall sp/pc without stopping, else Stop
    OffCpu,       // cpu mode, blocked: no sample; its cpu time goes to the thread's pool
                  // (docs/cpu-mode.md), shared out over its on-cpu samples at the end
    Stop,         // running (or unknown): PTRACE_INTERRUPT, copy, resume
};

/// What is known about a thread at the start of a tick.
struct ThreadObservation {
    ThreadState state = ThreadState::Unknown;
    SchedStat sched;             // now
    bool have_baseline = false;  // `baseline` was read at this thread's previous sample
    SchedStat baseline;
    bool have_stack = false;  // a stack from an earlier sample is kept
};

/// True for states in which the thread cannot be executing user code: S, D, T, t, I.
bool is_blocked_state(ThreadState s);
/// True when the thread has not been on a cpu since `baseline` (same run time, same timeslices).
bool has_not_run(const SchedStat& now, const SchedStat& baseline);
/// Nanoseconds on a cpu between two readings (0 if `now` is older, as after a tid was reused).
int64_t cpu_since(const SchedStat& now, const SchedStat& baseline);
/// docs/design.md §1.3: reuse what has not run, try blocked threads without a stop, stop the rest.
SampleAction choose_action(SampleMode mode, const ThreadObservation& obs);

/// How many ticks pass before a thread is looked at again (its schedstat read), given how many
/// ticks ago it was last seen to have run (`idle_ticks`, 0: it ran since its previous look):
/// reading /proc for 1000 idle threads every tick costs the target more than sampling them does
/// (1000 idle threads at 99 Hz). The gap follows the time the thread has been idle, not
/// a count of looks, so it is the same in milliseconds at any rate:
///   - as long as it has been idle, at most 100 ms: a thread that blocks briefly is looked at
///     again soon (after 1, 1, 2, 4, 8 ticks at 99 Hz), one idle for a while every 100 ms;
///   - after 0.8 s of idleness, 1/8 of the idle time, at most 250 ms: a wake-up is noticed
///     within 12.5 % of the sleep before it and never later than 250 ms. Threads parked for
///     seconds (thread pools) then cost 4 reads a second instead of 12 (125 at 999 Hz).
/// Accounting stays whole: a thread that ran while not looked at is charged at its next look.
/// cpu mode: all its cpu time since its last sample, to the stack it has then (a thread that
/// woke and kept running: its running stack). wall mode: the ticks until that look are counted
/// with the stack it slept in, so up to one gap of a long sleeper's wake-up (<= 250 ms) is
/// charged there. Never less than one tick.
/// `spread_key` (the tid) shortens gaps of 4 ticks or more by a pseudo-random 0..25 %, so that
/// threads that went idle together (all of them, at attach) are not all read on the same tick.
uint64_t check_interval_ticks(uint64_t idle_ticks, int64_t interval_ns, uint64_t spread_key);

/// cpu mode's rate, as perf -F counts it: one sample per `quantum_ns` (1/rate) of a thread's cpu
/// time, not one per tick in which it ran at all (4 busy threads on 2 cpus run in nearly every
/// tick: twice the stops for the same cpu time). A thread is sampled on a tick when its cpu time
/// since its previous sample plus its carry reaches half a quantum; the sample weighs that cpu
/// time, and the carry keeps the difference from a whole quantum (-1 to +4 quanta). Rounding to
/// the nearest quantum this way, the samples of a thread stay within one of (its cpu time /
/// quantum) however its cpu time falls into ticks; a plain "at least one quantum" test
/// undershot by up to half (a thread with 0.55 quanta per tick sampled every third tick), and
/// a carry of at most one quantum by a fifth at 999 Hz (measured: 790 samples per cpu-second).
struct CpuQuantum {
    int64_t carry_ns = 0;
    /// True when a thread with `cpu_ns` since its previous sample is due for one.
    bool due(int64_t cpu_ns, int64_t quantum_ns) const;
    /// Records that a sample weighing `cpu_ns` was taken.
    void sampled(int64_t cpu_ns, int64_t quantum_ns);
};

/// Log-linear histogram of pause durations: exact below 128 ns, then 64 buckets per power of two
/// (under 1.6 % error), so percentiles cost 30 KiB whatever the run length.
class PauseHistogram {
  public:
    void add(uint64_t ns);
    uint64_t count() const { return count_; }
    uint64_t max() const { return max_; }
    uint64_t total() const { return total_; }
    /// The value at quantile q (0..1), the bucket's midpoint; 0 when empty.
    uint64_t quantile(double q) const;

  private:
    static constexpr size_t kLinear = 128;
    static constexpr size_t kSubBuckets = 64;
    static constexpr size_t kBuckets = kLinear + 57 * kSubBuckets;
    static size_t bucket_of(uint64_t ns);
    static uint64_t bucket_value(size_t b);
    std::array<uint64_t, kBuckets> counts_{};
    uint64_t count_ = 0, max_ = 0, total_ = 0;
};

/// Keeps each thread's stopped time under `max_fraction` of wall time: a thread is stopped at most
/// once per tick, so its stopped fraction is (pause per stop) / (tick interval). The interval is
/// stretched to ewma(pause) / max_fraction when the nominal rate would exceed that.
class PauseBudget {
  public:
    PauseBudget(int64_t nominal_interval_ns, double max_fraction);
    void record_stop(uint64_t pause_ns);
    /// The most-stopped thread's stopped time / its lifetime so far. The ewma misjudges
    /// heavy-tailed pauses (a loaded machine: median 0.1 ms, p99 40 ms), so the interval is also
    /// stretched in proportion while the measured fraction is over budget.
    void observe_worst_fraction(double fraction) { worst_fraction_ = fraction; }
    /// The wait before the next tick: the nominal interval, or longer to respect the budget.
    int64_t next_interval_ns() const;
    /// True once the budget made an interval longer than the nominal one.
    bool lowered() const { return lowered_; }
    double ewma_pause_ns() const { return ewma_ns_; }

  private:
    int64_t nominal_ns_;
    double max_fraction_;
    double ewma_ns_ = 0;
    double worst_fraction_ = 0;
    bool seeded_ = false;
    mutable bool lowered_ = false;
};

}  // namespace pmprof
