// The sampler's pure decisions (sampler_policy.h).
#include "sampler_policy.h"

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
        return blocked ? SampleAction::TryFastPath : SampleAction::Stop;
    }
    // Not having run since the last sample is enough, blocked or not: a runnable thread still
    // waiting for a cpu has not executed a user instruction since then either.
    if (idle_since && obs.have_stack) return SampleAction::Reuse;
    return blocked ? SampleAction::TryFastPath : SampleAction::Stop;
}

uint64_t check_interval_ticks(uint32_t idle_streak, int64_t interval_ns) {
    // Reached after 1 + 2 + 2*4 = 11 ticks of idleness.
    uint64_t ticks = 1;
    if (idle_streak >= 4)
        ticks = 8;
    else if (idle_streak >= 2)
        ticks = 4;
    else if (idle_streak >= 1)
        ticks = 2;
    constexpr int64_t kMaxGapNs = 100'000'000;
    const auto cap =
        static_cast<uint64_t>(std::max<int64_t>(1, kMaxGapNs / std::max<int64_t>(1, interval_ns)));
    return std::min(ticks, cap);
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

}  // namespace pmprof
