// Unit tests of the sampler's pure parts: the per-thread decision, the pause budget, the pause
// histogram, and the summary text.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "pmprof/output/summary.h"
#include "pmprof/sampler/sampler.h"
#include "pmprof/support/log.h"
#include "sampler/policy.h"

using namespace pmprof;

namespace {

ThreadObservation obs(ThreadState state, SchedStat now, bool baseline, SchedStat base, bool stack) {
    return ThreadObservation{state, now, baseline, base, stack};
}

}  // namespace

TEST_CASE("choose_action: wall mode reuses only threads that have not run", "[unit][sampler]") {
    const SchedStat a{1000, 5, 10}, b{2000, 5, 11};
    // Blocked, same run time and timeslices, stack kept: no stop.
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Sleeping, a, true, a, true)) ==
          SampleAction::Reuse);
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::DiskSleep, a, true, a, true)) ==
          SampleAction::Reuse);
    // It ran since: try /proc/.../syscall first.
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Sleeping, b, true, a, true)) ==
          SampleAction::TryFastPath);
    // No stack yet, or no baseline: nothing to reuse.
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Sleeping, a, true, a, false)) ==
          SampleAction::TryFastPath);
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Sleeping, a, false, {}, true)) ==
          SampleAction::TryFastPath);
    // Running (it ran since): the stack changes under us; only a stop gives it.
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Running, b, true, a, true)) ==
          SampleAction::Stop);
    // Runnable but not on a cpu since the last sample: it has not moved, reuse its stack.
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Running, a, true, a, true)) ==
          SampleAction::Reuse);
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Running, a, true, a, false)) ==
          SampleAction::Stop);
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Zombie, a, true, a, true)) ==
          SampleAction::Skip);
    // Only timeslices changed (a very short run): not reused.
    const SchedStat c{1000, 5, 12};
    CHECK(choose_action(SampleMode::Wall, obs(ThreadState::Sleeping, c, true, a, true)) ==
          SampleAction::TryFastPath);
}

TEST_CASE("choose_action: cpu mode samples only threads that ran", "[unit][sampler]") {
    const SchedStat a{1000, 5, 10}, b{2000, 5, 11};
    CHECK(choose_action(SampleMode::Cpu, obs(ThreadState::Running, b, false, {}, false)) ==
          SampleAction::Skip);  // no baseline: no weight yet
    CHECK(choose_action(SampleMode::Cpu, obs(ThreadState::Sleeping, a, true, a, true)) ==
          SampleAction::Skip);  // idle: absent from cpu profiles
    CHECK(choose_action(SampleMode::Cpu, obs(ThreadState::Running, b, true, a, true)) ==
          SampleAction::Stop);
    // Ran, but blocked now: not on a cpu, so no sample (its cpu time goes to its pool).
    CHECK(choose_action(SampleMode::Cpu, obs(ThreadState::Sleeping, b, true, a, true)) ==
          SampleAction::OffCpu);
}

TEST_CASE("is_blocked_state and has_not_run", "[unit][sampler]") {
    CHECK(is_blocked_state(ThreadState::Sleeping));
    CHECK(is_blocked_state(ThreadState::TracingStop));
    CHECK_FALSE(is_blocked_state(ThreadState::Running));
    CHECK_FALSE(is_blocked_state(ThreadState::Unknown));
    CHECK(has_not_run({5, 1, 2}, {5, 9, 2}));  // waiting time may change without running
    CHECK_FALSE(has_not_run({6, 1, 2}, {5, 1, 2}));
}

TEST_CASE("parse_sample_mode", "[unit][sampler]") {
    REQUIRE(parse_sample_mode("wall").ok());
    CHECK(*parse_sample_mode("wall") == SampleMode::Wall);
    CHECK(*parse_sample_mode("cpu") == SampleMode::Cpu);
    auto bad = parse_sample_mode("CPU ");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("wall or cpu") != std::string::npos);
}

TEST_CASE("PauseHistogram: exact small values, ~1.6% above, exact max", "[unit][sampler]") {
    PauseHistogram h;
    CHECK(h.quantile(0.5) == 0);
    for (uint64_t v = 1; v <= 100; ++v) h.add(v);
    CHECK(h.count() == 100);
    CHECK(h.quantile(0.5) == 50);
    CHECK(h.quantile(0.99) == 99);
    CHECK(h.quantile(1.0) == 100);
    CHECK(h.max() == 100);
    CHECK(h.total() == 5050);

    PauseHistogram big;
    std::mt19937_64 rng(42);
    std::vector<uint64_t> values;
    for (int i = 0; i < 10000; ++i) {
        uint64_t v = 1000 + rng() % 10'000'000;  // 1 us .. 10 ms
        values.push_back(v);
        big.add(v);
    }
    big.add(uint64_t{1} << 62);  // an absurd outlier must not break the buckets
    values.push_back(uint64_t{1} << 62);
    std::sort(values.begin(), values.end());
    for (double q : {0.5, 0.9, 0.99}) {
        const auto exact =
            static_cast<double>(values[static_cast<size_t>(std::ceil(q * values.size())) - 1]);
        const auto approx = static_cast<double>(big.quantile(q));
        CHECK(std::abs(approx - exact) / exact < 0.02);
    }
    CHECK(big.max() == uint64_t{1} << 62);
}

TEST_CASE("PauseBudget lowers the rate only when pauses would exceed the budget",
          "[unit][sampler]") {
    const int64_t nominal = 10'000'000;  // 100 Hz
    PauseBudget fresh(nominal, 0.05);
    CHECK(fresh.next_interval_ns() == nominal);
    CHECK_FALSE(fresh.lowered());

    PauseBudget cheap(nominal, 0.05);
    for (int i = 0; i < 50; ++i) cheap.record_stop(100'000);  // 100 us: 1% at 100 Hz
    CHECK(cheap.next_interval_ns() == nominal);
    CHECK_FALSE(cheap.lowered());

    PauseBudget costly(nominal, 0.05);
    for (int i = 0; i < 50; ++i) costly.record_stop(1'000'000);  // 1 ms: 10% at 100 Hz
    const int64_t stretched = costly.next_interval_ns();
    CHECK(stretched == Approx(20'000'000).epsilon(0.01));  // 1 ms / 5% = 20 ms: 50 Hz
    CHECK(costly.lowered());

    // One outlier counts as at most 10x the average: it moves the average less than 2x.
    PauseBudget outlier(nominal, 0.05);
    for (int i = 0; i < 50; ++i) outlier.record_stop(100'000);
    outlier.record_stop(10'000'000);
    CHECK(outlier.ewma_pause_ns() == Approx(190'000).epsilon(0.01));
    CHECK(outlier.next_interval_ns() == nominal);
    // A lasting slowdown still gets through within a few dozen stops.
    for (int i = 0; i < 30; ++i) outlier.record_stop(10'000'000);
    CHECK(outlier.ewma_pause_ns() > 5'000'000);
    CHECK(outlier.lowered() == (outlier.next_interval_ns() > nominal));
    CHECK(outlier.next_interval_ns() > nominal);

    // Cheap on average but the most-stopped thread is over budget (heavy-tailed pauses): the
    // interval grows in proportion.
    PauseBudget over(nominal, 0.05);
    over.record_stop(100'000);
    over.observe_worst_fraction(0.10);
    CHECK(over.next_interval_ns() == Approx(20'000'000).epsilon(0.01));
    CHECK(over.lowered());
    over.observe_worst_fraction(0.04);
    CHECK(over.next_interval_ns() == nominal);

    PauseBudget unlimited(nominal, 0);
    unlimited.record_stop(1'000'000'000);
    CHECK(unlimited.next_interval_ns() == nominal);
}

TEST_CASE("sampler summary and comments carry the statistics and the top table",
          "[unit][sampler]") {
    SamplerResult r;
    r.end_message = "duration reached";
    r.stats.mode = SampleMode::Cpu;
    r.stats.samples = 1234;
    r.stats.threads_seen = 7;
    r.stats.wall_ns = 2'000'000'000;
    r.stats.requested_rate_hz = 99;
    r.stats.effective_rate_hz = 98.5;
    r.stats.stops = 300;
    r.stats.stops_avoided = 900;
    r.stats.reused = 800;
    r.stats.fast_path = 100;
    r.stats.pause_median_ns = 120'000;
    r.stats.pause_p99_ns = 450'000;
    r.stats.pause_max_ns = 900'000;
    r.stats.stops_per_thread = {{41, 3}, {42, 297}};
    r.profile.sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    r.profile.default_sample_type = "cpu";
    r.profile.functions = {{1, "hot_function", "_Z12hot_functionv", "a.cpp", 3}};
    r.profile.locations = {{1, 0, 0x1000, {{1, 4}}}};
    r.profile.samples = {{{1}, {10, 1000}, {}}};

    const std::string summary = format_sampler_summary(r);
    CHECK(summary.find("duration reached") != std::string::npos);
    CHECK(summary.find("1234 samples from 7 threads") != std::string::npos);
    CHECK(summary.find("cpu mode") != std::string::npos);
    CHECK(summary.find("median 120 us, p99 450 us, max 900 us") != std::string::npos);
    CHECK(summary.find("stops avoided: 900") != std::string::npos);
    CHECK(summary.find("hot_function") != std::string::npos);  // the top table
    CHECK(summary.find("flat%") != std::string::npos);

    CHECK(summary.find("backend: ptrace") != std::string::npos);
    CHECK(summary.find("run-queue wait") != std::string::npos);  // the ptrace estimator's bound

    // By default one line (what attach and record print), with the file written.
    const std::string line = format_sampler_line(r, "out.pb.gz");
    CHECK(line ==
          "pmprof: 1234 samples from 7 threads in 2.0 s at 98.5 Hz (cpu mode); backend: ptrace, "
          "target pause p99 450 us; duration reached; wrote out.pb.gz\n");
    r.stats.capture_failures = 2;
    r.stats.execs = 1;
    const std::string events = format_sampler_line(r, "");
    CHECK(events.find("450 us, 2 threads not captured; duration reached\n") != std::string::npos);
    CHECK(events.find("\npmprof: the target called execve 1 time(s)") != std::string::npos);
    r.stats.capture_failures = 0;
    r.stats.execs = 0;

    // The profile's comments: short by default (go tool pprof prints them in every header) ...
    const std::vector<std::string> brief = format_sampler_comments(r);
    REQUIRE(brief.size() == 2);
    CHECK(brief[0] ==
          "pmprof sampler: cpu mode, 98.5 Hz (99 requested), 1234 samples, 7 threads, 300 stops, "
          "pause p99 450 us; duration reached");
    CHECK(brief[1] == "pmprof backend: ptrace");
    // ... every figure with -v.
    const LogLevel level = log_level();
    set_log_level(LogLevel::Info);
    const std::vector<std::string> comments = format_sampler_comments(r);
    set_log_level(level);
    REQUIRE(comments.size() == 3);
    CHECK(comments[0].find("mode cpu") != std::string::npos);
    CHECK(comments[1].rfind("pmprof backend: ptrace", 0) == 0);
    CHECK(comments[2] == "pmprof stops per thread (tid:stops): 41:3 42:297");

    // The perf backend stops nothing: no pause figures, what it lost instead.
    r.stats.backend = "perf";
    r.stats.backend_reason = "auto: perf_event_open allowed (root)";
    r.stats.stops = 0;
    r.stats.perf_lost = 5;
    r.stats.perf_loop_cpu_ns = 1234 * 8000;
    const std::string perf = format_sampler_summary(r);
    CHECK(perf.find("backend: perf (auto: perf_event_open allowed (root)); no thread stopped; 5 "
                    "samples lost") != std::string::npos);
    CHECK(perf.find("pause per thread-sample") == std::string::npos);
    CHECK(perf.find("stops avoided") == std::string::npos);
    CHECK(perf.find("8.0 us") != std::string::npos);  // tracer cpu per sample
    CHECK(format_sampler_line(r, "").find(
              "backend: perf (auto: perf_event_open allowed (root)), no thread stopped; ") !=
          std::string::npos);
    CHECK(format_sampler_comments(r)[0].find("7 threads, no thread stopped; ") !=
          std::string::npos);
}

TEST_CASE("the summary says when slow ticks lowered the rate, and only then", "[unit][sampler]") {
    SamplerResult r;
    r.end_message = "duration reached";
    r.stats.wall_ns = 3'000'000'000;
    r.stats.requested_rate_hz = 99;
    r.stats.ticks = 40;
    r.stats.effective_rate_hz = 13.3;
    // 4000 threads: 30 of 40 ticks outlasted the 10 ms interval, 70 ms each on average.
    r.stats.ticks_late = 30;
    r.stats.tick_mean_ns = 70'000'000;
    r.stats.tick_max_ns = 2'000'000'000;
    const std::string slow = format_sampler_summary(r);
    CHECK(slow.find("13.3 Hz effective, lowered by slow ticks: 30 of 40 late, mean 70.0 ms, "
                    "longest 2000 ms)") != std::string::npos);
    r.stats.rate_lowered = true;
    CHECK(format_sampler_summary(r).find("lowered by the pause budget and by slow ticks") !=
          std::string::npos);
    // A few late ticks on a loaded machine (their work 1 ms each) are not why the rate is low.
    r.stats.rate_lowered = false;
    r.stats.ticks = 250;
    r.stats.effective_rate_hz = 83;
    r.stats.ticks_late = 3;
    r.stats.tick_mean_ns = 1'000'000;
    CHECK(format_sampler_summary(r).find("slow ticks") == std::string::npos);
    // The profile's comments carry the late ticks whenever there were any.
    bool commented = false;
    for (const std::string& c : format_sampler_comments(r))
        commented = commented ||
                    c.find("3 of 250 ticks took longer than the interval") != std::string::npos;
    CHECK(commented);
}
