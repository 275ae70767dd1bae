// heap --sites pieces that need no target: Go's sample scaling, the byte counts of
// --sample-rate, the call-stack rule that matches returns to entries by stack pointer, and the
// overhead guard's estimate and decision.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "cli/heap_sites.h"
#include "pmprof/support/error.h"
#include "sites/guard.h"
#include "sites/recorder.h"

using namespace pmprof;

TEST_CASE("sites: Go's scaling of a sample by 1 / (1 - exp(-size/rate))", "[unit][sites]") {
    CHECK(sites::sample_scale(100, 1) == 1);  // rate 1: every allocation
    CHECK(sites::sample_scale(512 * 1024, 512 * 1024) == Approx(1 / (1 - std::exp(-1.0))));
    CHECK(sites::sample_scale(64, 512 * 1024) == Approx(512.0 * 1024 / 64).epsilon(0.001));
    CHECK(sites::sample_scale(64u << 20, 512 * 1024) == Approx(1));
}

TEST_CASE("sites: exponential spacing and the scale estimate bytes without bias", "[unit][sites]") {
    // The recorder's scheme, simulated: 200000 allocations of 4 KiB at 512 KiB.
    std::mt19937_64 rng(42);
    std::exponential_distribution<double> gap(1.0 / (512 * 1024));
    double until = gap(rng), estimate = 0;
    const uint64_t size = 4096, n = 200000;
    for (uint64_t i = 0; i < n; ++i) {
        until -= static_cast<double>(size);
        if (until <= 0) {
            until = gap(rng);
            estimate += static_cast<double>(size) * sites::sample_scale(size, 512 * 1024);
        }
    }
    CHECK(estimate == Approx(static_cast<double>(n * size)).epsilon(0.05));
}

TEST_CASE("sites: --sample-rate byte counts", "[unit][sites]") {
    CHECK(parse_byte_count("524288") == 524288);
    CHECK(parse_byte_count("512KiB") == 524288);
    CHECK(parse_byte_count("512k") == 524288);
    CHECK(parse_byte_count("5MiB") == 5u << 20);
    CHECK(parse_byte_count("1") == 1);
    CHECK_THROWS_AS(parse_byte_count("0"), FatalError);
    CHECK_THROWS_AS(parse_byte_count("12parsecs"), FatalError);
    CHECK_THROWS_AS(parse_byte_count("lots"), FatalError);
}

TEST_CASE("sites: calls below a new entry's sp or past the stale time are finished",
          "[unit][sites]") {
    using Call = std::pair<uint64_t, uint64_t>;  // (entry sp, time)
    auto sp_of = [](const Call& c) { return c.first; };
    auto time_of = [](const Call& c) { return c.second; };
    std::vector<Call> calls{{0x1000, 10}, {0x0f00, 20}};  // realloc, then malloc inside it
    // A return of the inner call (sp = its entry sp + 8) leaves the outer in progress.
    CHECK(sites::drop_finished(calls, 0x0f08 - 9, 0, sp_of, time_of) == 0);
    calls.pop_back();
    // A new entry from the same frame as the outer (its return was lost): the outer is done.
    CHECK(sites::drop_finished(calls, 0x1000, 30, sp_of, time_of) == 1);
    CHECK(calls.empty());
    // Deeper entry long after: the stale outer is dropped too.
    calls = {{0x1000, 10}};
    CHECK(sites::drop_finished(calls, 0x0800, 10 + sites::kStale + 1, sp_of, time_of) == 1);
    // Deeper entry soon after: nested, the outer stays.
    calls = {{0x1000, 10}};
    CHECK(sites::drop_finished(calls, 0x0800, 20, sp_of, time_of) == 0);
}

namespace {
constexpr uint64_t kMsNs = 1'000'000;
// A reading `t_ms` into the window: the target's cpu and kernel time so far, and probe hits.
sites::CostReading at(int64_t t_ms, uint64_t cpu_ms, uint64_t sys_ms, uint64_t hits) {
    return {t_ms * static_cast<int64_t>(kMsNs), cpu_ms * kMsNs, sys_ms * kMsNs, hits};
}
}  // namespace

TEST_CASE("sites: the probes' cost is the larger of hits x 1 us and the extra kernel time",
          "[unit][sites]") {
    // 10 % kernel without probes. 1 s: 500 ms cpu, 100 ms of it kernel, 1000 hits: the kernel
    // time is the usual share (50 ms) + 50 ms, more than the hits' 1 ms.
    auto e = sites::estimate_cost(at(0, 0, 0, 0), at(1000, 500, 100, 1000), 0.1);
    CHECK(e.from_kernel_time);
    CHECK(e.cost_ns == Approx(50.0 * kMsNs));
    CHECK(e.share == Approx(0.1));
    // Kernel time under 20 ms is tick noise: only the hits count (5000 x 1 us = 5 ms of 200).
    e = sites::estimate_cost(at(0, 0, 0, 0), at(1000, 200, 15, 5000), 0.0);
    CHECK_FALSE(e.from_kernel_time);
    CHECK(e.cost_ns == Approx(5.0 * kMsNs));
    CHECK(e.share == Approx(0.025));
    // Never more than the cpu time itself (a machine where a hit is cheaper than 1 us).
    e = sites::estimate_cost(at(0, 0, 0, 0), at(1000, 10, 0, 50000), 0.0);
    CHECK(e.share == Approx(1.0));
    // A malloc loop: nearly all kernel time.
    e = sites::estimate_cost(at(0, 0, 0, 0), at(300, 290, 285, 30000), 0.02);
    CHECK(e.share > 0.9);
}

TEST_CASE("sites: the overhead guard ends the window once the last second is over budget",
          "[unit][sites]") {
    // A malloc-heavy target: 98 % kernel time from the first reading on. Not judged before
    // 200 ms; ended at the first judgement.
    sites::OverheadGuard heavy(0.05, 0.01);
    CHECK_FALSE(heavy.over(at(100, 95, 93, 10000)));
    CHECK(heavy.over(at(200, 190, 186, 20000)));
    CHECK(heavy.last().share > 0.9);

    // A steady target under budget (2 % from hits, kernel share as usual) is never ended, and
    // then a burst of allocations late in a long window is seen within the span.
    sites::OverheadGuard steady(0.05, 0.2);
    uint64_t cpu = 0, sys = 0, hits = 0;
    int64_t t = 0;
    for (; t < 30000; t += 100) {
        // 300 ms cpu/s, 20 % kernel as without probes, 6000 hits/s: 6 ms = 2 %
        cpu += 30;
        sys += 6;
        hits += 600;
        CHECK_FALSE(steady.over(at(t + 100, cpu, sys, hits)));
    }
    CHECK(steady.last().share == Approx(0.02).epsilon(0.01));
    bool ended = false;
    for (int i = 0; i < 10 && !ended; ++i) {
        t += 100;
        // A burst: 50000 hits/s, twice the usual kernel time (the traps)
        cpu += 30;
        sys += 12;
        hits += 5000;
        ended = steady.over(at(t, cpu, sys, hits));
    }
    CHECK(ended);
    CHECK(steady.last().span_ns == Approx(1e9));  // judged over the last second only
    CHECK(steady.whole().share < steady.last().share);

    // The same burst with no limit (100 %) never ends the window.
    sites::OverheadGuard unlimited(1.0, 0.01);
    CHECK_FALSE(unlimited.over(at(500, 490, 480, 100000)));
    CHECK(unlimited.last().share > 0.9);

    // A nearly idle target (under 5 ms of cpu in the span) is not judged: the probes cannot
    // cost it more than that.
    sites::OverheadGuard idle(0.05, 0.0);
    CHECK_FALSE(idle.over(at(1000, 3, 1, 2000)));
}
