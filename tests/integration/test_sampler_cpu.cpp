// `pmprof attach -m cpu --backend ptrace` at 999 Hz against tests/targets/split_target.cpp (tracer
// cpu): a busy thread's state comes from /proc/.../syscall ("running") rather than stat, so its
// samples must still carry its name and state R; the blocked threads must never be stopped
// (no EINTR); and a thread is sampled once per 1/rate of its cpu time (as perf -F counts), not
// once per tick in which it ran. And the labels of the samples the sampler takes without a stop
// (reused and merged samples), in wall mode, against the same target.
#include <catch2/catch.hpp>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <string>
#include <thread>

#include "../support/harness.h"
#include "pmprof/output/pprof.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

std::string label(const pmprof::Sample& s, const std::string& key) {
    for (const pmprof::Label& l : s.labels)
        if (l.key == key) return l.str;
    return {};
}

}  // namespace

TEST_CASE("attach -m cpu at 999 Hz: busy threads named and running, blocked ones never stopped",
          "[integration][sampler]") {
    // 4 busy threads on a 2-cpu machine: each runs about half of every tick, which is what the
    // one-sample-per-cpu-quantum rule is about.
    auto target = Target::start({target_bin("split_target", true), "--busy", "4", "--idle", "2"});
    const std::string out = temp_path("cpu999.pb.gz");
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "3s", "-r",
                       "999", "-m", "cpu", "--backend", "ptrace", "-o", out});
    INFO("pmprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(left_running(target->pid()) == "");

    auto p = pmprof::decode_pprof(slurp(out));
    REQUIRE(p.ok());
    REQUIRE(p->sample_types.size() == 2);  // samples/count, cpu/nanoseconds
    const int64_t quantum_ns = static_cast<int64_t>(1e9 / 999);
    std::map<std::string, int64_t> busy_samples;
    int64_t count = 0, cpu_ns = 0;
    for (const pmprof::Sample& s : p->samples) {
        const std::string name = label(s, "thread_name");
        INFO("thread " << name << " state " << label(s, "state"));
        CHECK_FALSE(name.empty());
        if (name.rfind("busy-", 0) == 0) {
            busy_samples[name] += s.values[0];
            CHECK(label(s, "state") == "running");
        }
        count += s.values[0];
        cpu_ns += s.values[1];
    }
    // One sample per quantum of cpu time: a busy thread gets about half a quantum per tick
    // here, so one sample per tick it ran would make this about 2.
    const double per_quantum =
        static_cast<double>(count) * static_cast<double>(quantum_ns) / static_cast<double>(cpu_ns);
    INFO("samples per quantum of cpu time: " << per_quantum);
    CHECK(per_quantum > 0.8);
    CHECK(per_quantum < 1.2);
    CHECK(busy_samples.size() == 4);  // every busy thread, by its own name
    for (const auto& [name, n] : busy_samples) {
        INFO(name);
        CHECK(n >= 50);
    }

    // Blocked threads were never interrupted: their calls saw no EINTR (docs/facts.md: epoll_wait
    // would, after any stop; detaching takes none of a thread that never ran).
    auto c = try_counts(*target);
    REQUIRE_FALSE(c.empty());
    CHECK(c["read_eintr"] == 0);
    CHECK(c["sleep_eintr"] == 0);
    CHECK(c["futex_eintr"] == 0);
    CHECK(c["epoll_eintr"] <= 1);
}

TEST_CASE("attach -m wall: reused samples keep the labels of the moment they repeat",
          "[integration][sampler]") {
    // The napper sleeps 150 ms (its sleeping stack is reused tick after tick, merged into one
    // sample), then works 75 ms (stopped and sampled as running). The merged samples are flushed
    // when the running sample comes: they must still say "sleeping" in nanosleep, not take the
    // state the thread has at the flush.
    auto target = Target::start(
        {target_bin("split_target", true), "--busy", "1", "--idle", "1", "--nap-ms", "150"});
    const std::string out = temp_path("wall-nap.pb.gz");
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "2s", "-r",
                       "99", "-m", "wall", "-o", out});
    INFO("pmprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(left_running(target->pid()) == "");

    auto p = pmprof::decode_pprof(slurp(out));
    REQUIRE(p.ok());
    int64_t napper_running = 0, napper_sleeping_merged = 0;
    for (const pmprof::Sample& s : p->samples) {
        const std::string state = label(s, "state"), syscall = label(s, "syscall");
        INFO("thread " << label(s, "thread_name") << " state " << state << " syscall " << syscall
                       << " count " << s.values[0]);
        // A running thread is not in a system call: a syscall label means a blocked moment.
        if (state == "running") CHECK(syscall.empty());
        if (label(s, "thread_name") != "napper") continue;
        if (state == "running") napper_running += s.values[0];
        if (state == "sleeping" && s.values[0] > 1) napper_sleeping_merged += s.values[0];
    }
    CHECK(napper_running > 0);          // the napper was seen working...
    CHECK(napper_sleeping_merged > 0);  // ...and its sleeps were reused and merged
}
