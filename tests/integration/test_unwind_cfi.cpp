// The default unwinder (rules cached per pc, src/unwind_cfi*.cpp) against libdwfl's own walk on
// real captures (TraceSession snapshots) of the test targets, fp and nofp builds: deep recursion,
// a qsort comparator called through libc, a signal handler, code without CFI, a garbage sp. Every
// stack must come back identical (frames, exact flags, truncation and its reason), and the
// stacks that need nothing but simple rules must really be walked from the cache.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../support/harness.h"
#include "pmprof/elf/image.h"
#include "pmprof/os/procfs.h"
#include "pmprof/ptrace/memory.h"
#include "pmprof/ptrace/session.h"
#include "pmprof/unwind/unwind.h"
#include "unwind/walk.h"

using namespace pmprof;
namespace t = pmprof::test;

namespace {

constexpr size_t kMaxDepth = 128;

/// A target, one snapshot of all its threads (the session detached again), and its image.
struct Snapshot {
    std::unique_ptr<t::Target> target;
    std::vector<ThreadCapture> captures;
    std::unique_ptr<ProcessImage> image;
};

Snapshot snapshot_of(const std::vector<std::string>& argv) {
    Snapshot s;
    s.target = t::Target::start(argv);
    REQUIRE(s.target != nullptr);
    {
        auto session = TraceSession::seize(s.target->pid());
        REQUIRE(session.ok());
        s.captures = (*session)->snapshot({}, CaptureOptions{}, nullptr);
    }
    REQUIRE(t::left_running(s.target->pid()) == "");
    auto maps = read_maps(s.target->pid());
    REQUIRE(maps.ok());
    auto image = ProcessImage::open(s.target->pid(), *maps);
    REQUIRE(image.ok());
    s.image = std::move(*image);
    return s;
}

std::string describe(const RawStack& s) {
    std::string out;
    for (const RawFrame& f : s.frames) out += fmt::format("{:#x}{} ", f.pc, f.exact ? "!" : "");
    return out + (s.truncated ? "truncated: " + s.stop_reason : "complete");
}

/// Unwinds `c` with both; checks they agree; true when the cached walk alone produced it.
bool unwind_both(Unwinder& cached, Unwinder& dwfl, const ThreadCapture& c, size_t max_depth) {
    const uint64_t walks_before = cached.stats().cached_walks;
    RawStack want = dwfl.unwind(c, max_depth);
    RawStack got = cached.unwind(c, max_depth);
    INFO("tid " << c.tid << " max_depth " << max_depth << "\n  libdwfl: " << describe(want)
                << "\n  cached:  " << describe(got));
    CHECK(got.frames == want.frames);
    CHECK(got.truncated == want.truncated);
    CHECK(got.stop_reason == want.stop_reason);
    return cached.stats().cached_walks > walks_before;
}

/// Variants of one capture that end a walk early or send it astray.
std::vector<ThreadCapture> damaged(const ThreadCapture& c) {
    std::vector<ThreadCapture> out;
    ThreadCapture cut = c;
    cut.stack.bytes.resize(std::min<size_t>(cut.stack.bytes.size(), 128 + 64));
    out.push_back(cut);
    ThreadCapture noise = c;
    std::mt19937_64 rng(static_cast<uint64_t>(c.tid));
    for (size_t i = 256; i < noise.stack.bytes.size(); ++i)
        noise.stack.bytes[i] = static_cast<uint8_t>(rng());
    out.push_back(noise);
    return out;
}

/// Compares every capture of `s` (as is, cut at depth 3, damaged); returns the tids the cached
/// walk handled alone in the first pass.
std::set<pid_t> compare_all(Snapshot& s, Unwinder& cached) {
    ProcessMemory memory(s.target->pid());
    auto dwfl = make_dwfl_unwinder(*s.image, memory);
    std::set<pid_t> cached_tids;
    for (const ThreadCapture& c : s.captures) {
        if (!c.ok) continue;
        if (unwind_both(cached, *dwfl, c, kMaxDepth)) cached_tids.insert(c.tid);
        unwind_both(cached, *dwfl, c, 3);
        for (const ThreadCapture& d : damaged(c)) unwind_both(cached, *dwfl, d, kMaxDepth);
    }
    return cached_tids;
}

}  // namespace

TEST_CASE("cached unwind equals libdwfl: stacks_target", "[integration][unwind]") {
    const bool fp = GENERATE(true, false);
    INFO((fp ? "-fp" : "-nofp"));
    Snapshot s = snapshot_of({t::target_bin("stacks_target", fp)});
    auto tids = t::parse_fields(s.target->ready_line());
    ProcessMemory memory(s.target->pid());
    auto cached = make_unwinder(UnwinderKind::Dwfl, *s.image, memory);
    std::set<pid_t> by_cache = compare_all(s, *cached);

    // Deep recursion, a comparator called by qsort, plain blocking calls and a busy leaf need
    // nothing but simple rules; a signal handler's stack needs libdwfl (__restore_rt).
    for (const char* name : {"recurser", "sorter", "reader", "condwait", "spinner", "worker-1"}) {
        INFO(name);
        REQUIRE(tids.count(name));
        CHECK(by_cache.count(std::stoi(tids[name])));
    }
    REQUIRE(tids.count("sighandler"));
    CHECK_FALSE(by_cache.count(std::stoi(tids["sighandler"])));
    const UnwindStats first = cached->stats();
    CHECK(first.fallback_rule > 0);
    CHECK(first.rules_not_simple > 0);

    // A second pass over the same stacks finds every rule in the cache.
    for (const ThreadCapture& c : s.captures)
        if (c.ok) cached->unwind(c, kMaxDepth);
    const UnwindStats second = cached->stats();
    CHECK(second.rule_misses == first.rule_misses);
    CHECK(second.rule_hits > first.rule_hits);
    CHECK(second.cached_walks > first.cached_walks);
}

TEST_CASE("cached unwind equals libdwfl: signal frame, code without CFI, garbage sp",
          "[integration][unwind]") {
    const bool fp = GENERATE(true, false);
    const std::string target =
        GENERATE(std::string("unwind_target"), std::string("garbage_target"));
    INFO(target << (fp ? "-fp" : "-nofp"));
    Snapshot s = snapshot_of({t::target_bin(target, fp)});
    ProcessMemory memory(s.target->pid());
    auto cached = make_unwinder(UnwinderKind::Dwfl, *s.image, memory);
    compare_all(s, *cached);
    // unwind_target's one thread is inside a signal handler; garbage_target has a thread in code
    // without CFI and one with sp 0x1000: libdwfl's walk decides those.
    CHECK(cached->stats().fallbacks > 0);
}

TEST_CASE("cached unwind equals libdwfl on running threads stopped anywhere",
          "[integration][unwind]") {
    // Busy threads stopped at arbitrary instructions: prologues and epilogues (rules change
    // per instruction), leaf loops, libc.
    const bool fp = GENERATE(true, false);
    INFO((fp ? "-fp" : "-nofp"));
    auto target =
        t::Target::start({t::target_bin("split_target", fp), "--busy", "2", "--idle", "1"});
    REQUIRE(target != nullptr);
    std::vector<ThreadCapture> captures;
    {
        auto session = TraceSession::seize(target->pid());
        REQUIRE(session.ok());
        for (int i = 0; i < 100; ++i) {
            auto caps = (*session)->snapshot({}, CaptureOptions{}, nullptr);
            captures.insert(captures.end(), caps.begin(), caps.end());
        }
    }
    REQUIRE(t::left_running(target->pid()) == "");
    auto maps = read_maps(target->pid());
    REQUIRE(maps.ok());
    auto image = ProcessImage::open(target->pid(), *maps);
    REQUIRE(image.ok());
    ProcessMemory memory(target->pid());
    auto dwfl = make_dwfl_unwinder(**image, memory);
    auto cached = make_unwinder(UnwinderKind::Dwfl, **image, memory);
    size_t compared = 0, by_cache = 0;
    for (const ThreadCapture& c : captures) {
        if (!c.ok) continue;
        ++compared;
        by_cache += unwind_both(*cached, *dwfl, c, kMaxDepth);
    }
    // 8 threads (main, 2 busy, 1 idle, epoll, read, sleep, futex) x 100 snapshots.
    CHECK(compared >= 600);
    CHECK(by_cache * 10 >= compared * 9);
    std::fprintf(stderr, "cached unwind: %s split_target: %zu of %zu stacks from cached rules\n",
                 fp ? "fp" : "nofp", by_cache, compared);
}

TEST_CASE("cached unwind cost against libdwfl's walk", "[integration][unwind][cost]") {
    auto cpu_us = [] {
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
    };
    for (bool fp : {true, false}) {
        Snapshot s = snapshot_of({t::target_bin("stacks_target", fp)});
        const pid_t recurser = std::stoi(t::parse_fields(s.target->ready_line())["recurser"]);
        const ThreadCapture* c = nullptr;
        for (const ThreadCapture& x : s.captures)
            if (x.tid == recurser && x.ok) c = &x;
        REQUIRE(c != nullptr);
        ProcessMemory memory(s.target->pid());
        double per_stack[2] = {0, 0};
        size_t frames = 0;
        for (int cached : {0, 1}) {
            auto u = cached ? make_unwinder(UnwinderKind::Dwfl, *s.image, memory)
                            : make_dwfl_unwinder(*s.image, memory);
            frames = u->unwind(*c, kMaxDepth).frames.size();  // warms the CFI caches
            constexpr int kRuns = 500;
            const double t0 = cpu_us();
            for (int i = 0; i < kRuns; ++i) u->unwind(*c, kMaxDepth);
            per_stack[cached] = (cpu_us() - t0) / kRuns;
        }
        std::fprintf(stderr, "cost: %s recurser (%zu frames): libdwfl %.2f us/stack, cached %.2f\n",
                     fp ? "fp" : "nofp", frames, per_stack[0], per_stack[1]);
        CHECK(frames > 20);
        CHECK(per_stack[1] < per_stack[0]);
    }
}
