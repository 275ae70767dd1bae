// Unit tests of the idle back-off (check_interval_ticks): how often a thread that has
// not run is looked at, that the gap stays within its documented bound at any rate, and that
// 1000 threads idle since the same tick are not all read on the same ticks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "sampler/policy.h"

using namespace pmprof;

namespace {

constexpr int64_t kMsNs = 1'000'000;

/// The documented bound on the gap after `idle_ns` of idleness (before the spreading).
int64_t bound_ns(int64_t idle_ns) {
    return std::max(std::min(idle_ns, 100 * kMsNs), std::min(idle_ns / 8, 250 * kMsNs));
}

}  // namespace

TEST_CASE("check_interval_ticks: a thread that ran is looked at on the next tick",
          "[unit][sampler]") {
    for (int64_t hz : {1, 20, 99, 999, 10000}) {
        CAPTURE(hz);
        CHECK(check_interval_ticks(0, 1'000'000'000 / hz, 7) == 1);
    }
}

TEST_CASE("check_interval_ticks: the early ramp at 99 Hz", "[unit][sampler]") {
    const int64_t hz99 = 1'000'000'000 / 99;
    // As long as it has been idle, at least one tick; no spreading below 4 ticks.
    CHECK(check_interval_ticks(1, hz99, 7) == 1);
    CHECK(check_interval_ticks(2, hz99, 7) == 2);
    CHECK(check_interval_ticks(3, hz99, 7) == 3);
    const uint64_t at_4 = check_interval_ticks(4, hz99, 7);
    CHECK(at_4 >= 3);
    CHECK(at_4 <= 4);
    // Idle 0.5 s: 100 ms is 9 ticks; spreading takes off at most 25 %.
    const uint64_t at_half_s = check_interval_ticks(50, hz99, 7);
    CHECK(at_half_s <= 9);
    CHECK(at_half_s >= 7);
}

TEST_CASE("check_interval_ticks: within 100 ms until 0.8 s idle, then 1/8 of it, up to 250 ms",
          "[unit][sampler]") {
    for (int64_t hz : {20, 99, 999}) {
        const int64_t interval = 1'000'000'000 / hz;
        for (uint64_t idle = 0; idle * static_cast<uint64_t>(interval) < 20'000'000'000u;
             idle += 1 + idle / 16) {
            for (uint64_t key : {1u, 4242u, 31337u}) {
                CAPTURE(hz, idle, key);
                const int64_t idle_ns = static_cast<int64_t>(idle) * interval;
                const auto gap = static_cast<int64_t>(check_interval_ticks(idle, interval, key));
                REQUIRE(gap >= 1);
                // Never longer than the bound (a tick when the bound is shorter than one).
                CHECK(gap * interval <= std::max(interval, bound_ns(idle_ns)));
                if (idle_ns < 800 * kMsNs) CHECK(gap * interval <= std::max(interval, 100 * kMsNs));
                CHECK(gap * interval <= std::max(interval, 250 * kMsNs));
                // Spreading shortens by at most 25 %, so the saving is kept.
                const int64_t unspread = std::max<int64_t>(1, bound_ns(idle_ns) / interval);
                CHECK(gap * 4 >= unspread * 3);
            }
        }
    }
    // Parked for a minute, at 99 Hz: 250 ms is 24 ticks (18 to 24 with the spreading).
    const int64_t hz99 = 1'000'000'000 / 99;
    const uint64_t parked = check_interval_ticks(99 * 60, hz99, 7);
    CHECK(parked >= 18);
    CHECK(parked <= 24);
    // The same in milliseconds at 999 Hz: 249 ticks minus at most 25 %.
    const uint64_t parked999 = check_interval_ticks(999 * 60, 1'000'000'000 / 999, 7);
    CHECK(parked999 >= 187);
    CHECK(parked999 <= 249);
    // A tick longer than any gap: every tick.
    CHECK(check_interval_ticks(1000, 1'000'000'000, 7) == 1);
    // An idle time whose product with the interval would overflow.
    CHECK(check_interval_ticks(UINT64_MAX, hz99, 7) <= 24);
}

TEST_CASE("check_interval_ticks: 1000 threads idle since attach are read evenly, and rarely",
          "[unit][sampler]") {
    // The sampler's schedule (Sampler::observe): each thread looked at on tick 1, found idle
    // from then on, next look `check_interval_ticks` ticks later. 99 Hz for 10 s.
    const int64_t hz99 = 1'000'000'000 / 99;
    const uint64_t ticks = 990;
    std::vector<uint64_t> next(1000, 1), reads(ticks + 1, 0);
    for (uint64_t tick = 1; tick <= ticks; ++tick) {
        for (size_t tid = 0; tid < next.size(); ++tid) {
            if (next[tid] != tick) continue;
            ++reads[tick];
            next[tid] = tick + check_interval_ticks(tick - 1, hz99, 1000 + tid);
        }
    }
    // After the first second, window by window (the gaps keep growing): the previous policy
    // read all 1000 at once on every 8th tick, 125 a tick on average.
    uint64_t total = 0;
    for (uint64_t from = 100; from + 100 <= ticks; from += 100) {
        CAPTURE(from);
        const auto begin = reads.begin() + static_cast<std::ptrdiff_t>(from);
        const uint64_t sum = std::accumulate(begin, begin + 100, uint64_t{0});
        const uint64_t worst = *std::max_element(begin, begin + 100);
        CHECK(worst * 100 < sum * 5 / 2);  // no tick above 2.5x its window's mean
        total += sum;
    }
    CHECK(total < 800 * 60);  // under 60 reads a tick on average (about 50 here)
}

namespace {

/// One thread's cpu time tick by tick (`ran(tick)` ns) through a CpuQuantum, as the sampler
/// feeds it: what it ran since its last sample, then the sample when due.
struct QuantumRun {
    int64_t samples = 0, total = 0, weights = 0, pending = 0;
    double expected(int64_t q) const { return static_cast<double>(total) / static_cast<double>(q); }
};

template <typename Ran> QuantumRun run_quantum(int ticks, int64_t q, Ran ran) {
    CpuQuantum quantum;
    QuantumRun r;
    for (int tick = 0; tick < ticks; ++tick) {
        const int64_t ns = ran(tick);
        r.pending += ns;
        r.total += ns;
        if (quantum.due(r.pending, q)) {
            quantum.sampled(r.pending, q);
            ++r.samples;
            r.weights += r.pending;
            r.pending = 0;
        }
    }
    return r;
}

}  // namespace

TEST_CASE("CpuQuantum: samples track cpu time / quantum however it falls into ticks",
          "[unit][sampler]") {
    const int64_t q = 1'000'000;  // 999 Hz, about
    // Share of a cpu per tick (in quanta): a busy thread on a shared cpu gets about half.
    for (double share : {0.3, 0.5, 0.55, 0.7, 0.95, 1.0}) {
        CAPTURE(share);
        const auto per_tick = static_cast<int64_t>(share * static_cast<double>(q));
        const QuantumRun r = run_quantum(10000, q, [&](int) { return per_tick; });
        CHECK(std::abs(static_cast<double>(r.samples) - r.expected(q)) <= 1.0);
        CHECK(r.weights + r.pending == r.total);  // every nanosecond weighs one sample or the next
    }
}

TEST_CASE("CpuQuantum: uneven ticks, a thread first idle then busy", "[unit][sampler]") {
    const int64_t q = 10'000'000;  // 99 Hz, about
    uint64_t lcg = 12345;
    const QuantumRun r = run_quantum(20000, q, [&](int tick) {
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        // Idle (a few microseconds a tick) for the first quarter, then 0..1 quantum a tick.
        return tick < 5000 ? int64_t{5'000} : static_cast<int64_t>((lcg >> 33) % q);
    });
    CHECK(std::abs(static_cast<double>(r.samples) - r.expected(q)) <= 1.0);
    // The plain "one quantum at least" test this replaced took about 2/3 of them here.
    CHECK(static_cast<double>(r.samples) > 0.9 * r.expected(q));
}

TEST_CASE("CpuQuantum: a thread running whole ticks longer than a quantum catches up",
          "[unit][sampler]") {
    // A thread that runs 10 whole ticks of 1.4 quanta (ticks stretched by load), then 8 ticks
    // of 0.1 (sharing its cpu): at most one sample a tick, so the credit built while it runs
    // long is spent when it runs a little. A carry capped at one quantum gave 0.81 of the rate.
    const int64_t q = 1'000'000;
    const QuantumRun r = run_quantum(
        18000, q, [](int tick) { return tick % 18 < 10 ? int64_t{1'400'000} : int64_t{100'000}; });
    CHECK(static_cast<double>(r.samples) > 0.95 * r.expected(q));
    CHECK(static_cast<double>(r.samples) < 1.05 * r.expected(q));
}
