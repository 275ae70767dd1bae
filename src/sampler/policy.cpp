// The sampler's pure decisions (src/sampler/policy.h).
#include "sampler/policy.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace pmprof {

Result<SampleMode> parse_sample_mode(std::string_view name) {
    if (name == "wall") return SampleMode::Wall;
    if (name == "cpu") return SampleMode::Cpu;
    return Error{"unknown sampling mode '" + std::string(name) + "' (expected wall or cpu)"};
}

bool is_blocked_state(ThreadState s) {
    switch (s) {
    case ThreadState::Sleeping:
    case ThreadState::DiskSleep:
    case ThreadState::Stopped:
    case ThreadState::TracingStop:
    case ThreadState::Idle:
        return true;
    default:
        return false;
    }
}

bool has_not_run(const SchedStat& now, const SchedStat& baseline) {
    return now.run_ns == baseline.run_ns && now.timeslices == baseline.timeslices;
}

SampleAction choose_action(SampleMode mode, const ThreadObservation& obs) {
    if (obs.state == ThreadState::Zombie || obs.state == ThreadState::Dead)
        return SampleAction::Skip;
    const bool blocked = is_blocked_state(obs.state);
    const bool idle_since = obs.have_baseline && has_not_run(obs.sched, obs.baseline);
    if (mode == SampleMode::Cpu) {
        // cpu mode weights a sample by the cpu time since the previous one: without a baseline
        // there is no weight, and a thread that did not run has nothing to report.
        if (!obs.have_baseline || idle_since) return SampleAction::Skip;
        // Found blocked, the thread is not on a cpu: its stack says where it waits, not where
        // its cpu time went.
        return blocked ? SampleAction::OffCpu : SampleAction::Stop;
    }
    // Not having run since the last sample is enough, blocked or not: a runnable thread still
    // waiting for a cpu has not executed a user instruction since then either.
    if (idle_since && obs.have_stack) return SampleAction::Reuse;
    return blocked ? SampleAction::TryFastPath : SampleAction::Stop;
}

uint64_t check_interval_ticks(uint64_t idle_ticks, int64_t interval_ns, uint64_t spread_key) {
    constexpr int64_t kShortCapNs = 100'000'000;
    constexpr int64_t kLongCapNs = 250'000'000;
    constexpr int64_t kLongDivisor = 8;  // past 0.8 s idle: 1/8 of the idle time, up to 250 ms
    const int64_t interval = std::max<int64_t>(1, interval_ns);
    // Idle times past the last cap's reach all give the same gap: bounded, so no overflow.
    const auto max_ticks = static_cast<uint64_t>(kLongCapNs * kLongDivisor / interval + 1);
    const int64_t idle_ns = static_cast<int64_t>(std::min(idle_ticks, max_ticks)) * interval;
    const int64_t gap_ns =
        std::max(std::min(idle_ns, kShortCapNs), std::min(idle_ns / kLongDivisor, kLongCapNs));
    // Rounded down: a gap is never longer than the documented bound.
    auto ticks = static_cast<uint64_t>(std::max<int64_t>(1, gap_ns / interval));
    if (ticks >= 4) {
        // splitmix64 of the tid and the idle time: a different offset at each look, so phases
        // that start equal (every thread seen idle at the first tick) drift apart.
        uint64_t z = spread_key * 0x9E3779B97F4A7C15u + idle_ticks;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        z ^= z >> 31;
        ticks -= z % (ticks / 4 + 1);
    }
    return ticks;
}

size_t PauseHistogram::bucket_of(uint64_t ns) {
    if (ns < kLinear) return static_cast<size_t>(ns);
    const int msb = 63 - std::countl_zero(ns);  // >= 7
    const int shift = msb - 6;                  // keeps 7 significant bits: 64..127
    const uint64_t sub = (ns >> shift) - kSubBuckets;
    return kLinear + static_cast<size_t>(shift - 1) * kSubBuckets + static_cast<size_t>(sub);
}

uint64_t PauseHistogram::bucket_value(size_t b) {
    if (b < kLinear) return b;
    const size_t k = b - kLinear;
    const int shift = static_cast<int>(k / kSubBuckets) + 1;
    const uint64_t lower = (k % kSubBuckets + kSubBuckets) << shift;
    return lower + (uint64_t{1} << shift) / 2;
}

void PauseHistogram::add(uint64_t ns) {
    ++counts_[bucket_of(ns)];
    ++count_;
    total_ += ns;
    max_ = std::max(max_, ns);
}

uint64_t PauseHistogram::quantile(double q) const {
    if (count_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    // The smallest value with at least ceil(q * count) values at or below it.
    const auto rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
    uint64_t seen = 0;
    for (size_t b = 0; b < kBuckets; ++b) {
        seen += counts_[b];
        if (seen >= rank) return std::min(bucket_value(b), max_);
    }
    return max_;
}

PauseBudget::PauseBudget(int64_t nominal_interval_ns, double max_fraction)
    : nominal_ns_(std::max<int64_t>(1, nominal_interval_ns)), max_fraction_(max_fraction) {}

void PauseBudget::record_stop(uint64_t pause_ns) {
    const auto p = static_cast<double>(pause_ns);
    if (!seeded_) {
        ewma_ns_ = p;
        seeded_ = true;
        return;
    }
    // alpha 0.1, one stop counted as at most 10x the average: a single outlier (the tracer
    // preempted between a stop and its resume) moves the average less than 2x, while a lasting
    // slowdown still raises it ~1.9x per stop. At 999 Hz one 2 ms outlier would otherwise lower
    // the rate for dozens of ticks.
    ewma_ns_ += 0.1 * (std::min(p, 10 * ewma_ns_) - ewma_ns_);
}

int64_t PauseBudget::next_interval_ns() const {
    if (max_fraction_ <= 0 || !seeded_) return nominal_ns_;
    const double nominal = static_cast<double>(nominal_ns_);
    const double needed =
        std::max(ewma_ns_ / max_fraction_, nominal * worst_fraction_ / max_fraction_);
    if (needed <= nominal) return nominal_ns_;
    lowered_ = true;
    return static_cast<int64_t>(std::min(needed, 10e9));  // never slower than one tick per 10 s
}

int64_t cpu_since(const SchedStat& now, const SchedStat& baseline) {
    return static_cast<int64_t>(now.run_ns - std::min(now.run_ns, baseline.run_ns));
}

bool CpuQuantum::due(int64_t cpu_ns, int64_t quantum_ns) const {
    return cpu_ns + carry_ns >= quantum_ns / 2;
}

void CpuQuantum::sampled(int64_t cpu_ns, int64_t quantum_ns) {
    // A thread is sampled at most once a tick, so one that runs whole ticks longer than a
    // quantum (999 Hz ticks stretched by the machine's load) falls behind: up to 4 quanta of
    // credit are kept and spent on ticks in which it ran less. Bounded both ways, so a sample
    // taken off the schedule (after a long gap in which the thread was not looked at) neither
    // owes nor earns more than that.
    carry_ns = std::clamp(carry_ns + cpu_ns - quantum_ns, -quantum_ns, 4 * quantum_ns);
}

}  // namespace pmprof
