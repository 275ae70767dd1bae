// cpu mode says where cpu time went, for each backend, against
// tests/targets/cpu_target.cpp: a thread found blocked gets no cpu weight, one woken and waiting
// for a cpu is not charged at its wake-up point, and the perf backend stops nothing. Directions
// with wide margins only, never timings (docs/cpu-mode.md has the estimators).
#include <catch2/catch.hpp>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>

#include "../support/harness.h"
#include "pmprof/output/pprof.h"
#include "pmprof/sampler/perf.h"

using namespace pmprof::test;

namespace {

std::string label(const pmprof::Sample& s, const std::string& key) {
    for (const pmprof::Label& l : s.labels)
        if (l.key == key) return l.str;
    return {};
}

/// Cpu nanoseconds of thread `thread` (all of them when empty), and of those the part whose
/// stack holds a function whose name contains `fn`.
std::pair<int64_t, int64_t> cpu_in(const pmprof::Profile& p, const std::string& thread,
                                   const std::string& fn) {
    int64_t all = 0, in = 0;
    for (const pmprof::Sample& s : p.samples) {
        if (!thread.empty() && label(s, "thread_name").rfind(thread, 0) != 0) continue;
        all += s.values[1];
        bool found = false;
        for (uint64_t id : s.location_ids) {
            const pmprof::Location* loc = p.location(id);
            if (loc == nullptr) continue;
            for (const pmprof::Line& l : loc->lines) {
                const pmprof::Function* f = p.function(l.function_id);
                if (f != nullptr && f->name.find(fn) != std::string::npos) found = true;
            }
        }
        if (found) in += s.values[1];
    }
    return {all, in};
}

bool access_path_missing(const char* path) { return access(path, X_OK) != 0; }

double share(const std::pair<int64_t, int64_t>& v) {
    return v.first > 0 ? static_cast<double>(v.second) / static_cast<double>(v.first) : 0.0;
}

/// The backends this machine can run: ptrace always, perf when the kernel allows it.
std::vector<std::string> backends() {
    std::vector<std::string> b{"ptrace"};
    if (pmprof::probe_perf_access(getpid()).allowed) b.push_back("perf");
    return b;
}

pmprof::Profile profile_of(const Target& target, const std::string& backend,
                           const std::string& name, const std::string& rate = "199") {
    const std::string out = temp_path(name + "-" + backend + ".pb.gz");
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target.pid()), "-d", "3s", "-m",
                       "cpu", "-r", rate, "--backend", backend, "-o", out});
    INFO("pmprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("backend: " + backend) != std::string::npos);
    CHECK(left_running(target.pid()) == "");
    auto p = pmprof::decode_pprof(slurp(out));
    REQUIRE(p.ok());
    REQUIRE(p->sample_types.size() == 2);
    return std::move(*p);
}

}  // namespace

TEST_CASE("cpu mode: a thread that computes 8 ms and sleeps 2 ms is charged to its compute",
          "[integration][sampler][shares]") {
    auto target = Target::start({target_bin("cpu_target", false), "--case", "bursty"});
    for (const std::string& backend : backends()) {
        INFO("backend " << backend);
        pmprof::Profile p = profile_of(*target, backend, "bursty");
        const auto compute = cpu_in(p, "burst", "burst_compute");
        const auto sleep = cpu_in(p, "burst", "nanosleep");
        INFO("burst_compute " << share(compute) * 100 << "% of " << compute.first / 1000000
                              << " ms; nanosleep " << share(sleep) * 100 << "%");
        CHECK(compute.first > 0);
        // perf: ~99 %; the old tick weighting put the cpu before each sleep on nanosleep
        // (a tick finds the thread asleep one time in five: ~20 %).
        CHECK(share(compute) >= 0.85);
        CHECK(share(sleep) <= 0.10);
    }
}

TEST_CASE("cpu mode: a loopback server's cpu is in its work, not in recv",
          "[integration][sampler][shares]") {
    auto target = Target::start({target_bin("cpu_target", false), "--case", "server"});
    std::map<std::string, std::pair<double, double>> shares;  // backend -> server, client work
    for (const std::string& backend : backends()) {
        INFO("backend " << backend);
        pmprof::Profile p = profile_of(*target, backend, "server");
        const auto work = cpu_in(p, "server", "server_work");
        const auto client = cpu_in(p, "client", "client_work");
        INFO("server_work " << share(work) * 100 << "% of the server thread, client_work "
                            << share(client) * 100 << "% of the client thread");
        CHECK(work.first > 0);
        // The case runs in two states, set before any profiler attaches (perf alone sees it):
        // one where server_work is 70-75 % of the server thread and client_work 25-45 % of
        // the client's, and a kernel-heavy one where send and recv take two thirds of the cpu
        // and the perf backend read 35 % and 16.5 % (docs/cpu-mode.md). Floors below both.
        CHECK(share(work) >= 0.25);
        CHECK(share(client) >= 0.10);
        shares[backend] = {share(work), share(client)};
    }
    // What this guards against is a thread's wait in recv charged as cpu, which swamps its
    // work: against the kernel's own sampling of the same target, in the same state, the
    // ptrace backend's work shares are not far below (0.92 and 0.99 of perf's in the
    // kernel-heavy state; 0.74 the lowest in the runs of docs/cpu-mode.md).
    if (shares.contains("perf")) {
        CHECK(shares["ptrace"].first >= 0.5 * shares["perf"].first);
        CHECK(shares["ptrace"].second >= 0.5 * shares["perf"].second);
    }
}

TEST_CASE("cpu mode, ptrace: a thread whose cpu the tracer takes keeps its system call time",
          "[integration][sampler][shares]") {
    // The server and its client on one cpu, and pmprof on the same one: every look of the tick
    // begins by taking the cpu from the thread on it, at a timer tick in user code or, in a
    // send or recv, at the call's exit. Pooling those returns as waits (the rule before the
    // tracer's own arrival was told apart) left the calls 0.1-1.1 % of the cpu, user code the
    // rest; perf on the same run: 14-17 % (docs/cpu-mode.md, error (e)).
    if (access("/proc/thread-self/sched", R_OK) != 0) {
        WARN("no /proc/PID/sched (kernel without CONFIG_SCHED_DEBUG): the rule is the old one");
        return;
    }
    if (run({"taskset", "-c", "0", "true"}).exit_code != 0) {
        WARN("no taskset (util-linux): nothing to pin with");
        return;
    }
    const std::string cpu = std::to_string(sched_getcpu());
    auto target =
        Target::start({"taskset", "-c", cpu, target_bin("cpu_target", false), "--case", "server"});
    const std::string out = temp_path("pinned-server.pb.gz");
    RunResult r =
        run({"taskset", "-c", cpu, pmprof_bin(), "-v", "attach", std::to_string(target->pid()),
             "-d", "3s", "-m", "cpu", "-r", "499", "--backend", "ptrace", "-o", out});
    INFO("pmprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(left_running(target->pid()) == "");
    auto p = pmprof::decode_pprof(slurp(out));
    REQUIRE(p.ok());
    const auto send = cpu_in(*p, "", "send");
    const auto recv = cpu_in(*p, "", "recv");
    INFO("send " << share(send) * 100 << "%, recv " << share(recv) * 100 << "% of all cpu");
    CHECK(send.first > 0);
    // The mechanism itself: stops found where pmprof had taken the thread's cpu.
    const std::string key = " found it where pmprof had taken its cpu";
    const size_t at = r.err.find(key);
    REQUIRE(at != std::string::npos);
    const size_t num = r.err.rfind(' ', at - 1);
    CHECK(std::stoll(r.err.substr(num + 1, at - num - 1)) > 0);
    // 10.4 % in the run that added the test; 0.3-1.1 % without the displacement test.
    CHECK(share(send) + share(recv) >= 0.03);
}

TEST_CASE("cpu mode: more busy threads than cpus keep their 70/30 split",
          "[integration][sampler][shares]") {
    auto target = Target::start({target_bin("cpu_target", false), "--case", "oversub"});
    for (const std::string& backend : backends()) {
        INFO("backend " << backend);
        pmprof::Profile p = profile_of(*target, backend, "oversub");
        const auto seventy = cpu_in(p, "spin-", "over_seventy");
        const auto thirty = cpu_in(p, "spin-", "over_thirty");
        const double split =
            static_cast<double>(seventy.second) /
            static_cast<double>(std::max<int64_t>(1, seventy.second + thirty.second));
        INFO("over_seventy " << split * 100 << "% of the two");
        CHECK(split >= 0.55);
        CHECK(split <= 0.85);
    }
}

TEST_CASE("cpu mode, perf backend: nothing is stopped, so no blocked call sees EINTR",
          "[integration][sampler][shares]") {
    if (!pmprof::probe_perf_access(getpid()).allowed) {
        WARN("perf_event_open not allowed here: " << pmprof::probe_perf_access(getpid()).why);
        return;
    }
    auto target = Target::start({target_bin("split_target", true), "--busy", "2", "--idle", "2"});
    const std::string out = temp_path("perf-eintr.pb.gz");
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "2s", "-r",
                       "999", "-m", "cpu", "--backend", "perf", "-o", out});
    INFO("pmprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("no thread stopped") != std::string::npos);
    CHECK(tracer_pid(target->pid()) == 0);
    auto p = pmprof::decode_pprof(slurp(out));
    REQUIRE(p.ok());
    std::map<std::string, int64_t> by_thread;
    for (const pmprof::Sample& s : p->samples) {
        by_thread[label(s, "thread_name")] += s.values[0];
        CHECK(label(s, "state") == "running");
    }
    CHECK(by_thread.size() >= 2);  // both busy threads, by name
    auto c = try_counts(*target);
    REQUIRE_FALSE(c.empty());
    CHECK(c["read_eintr"] == 0);
    CHECK(c["sleep_eintr"] == 0);
    CHECK(c["futex_eintr"] == 0);
    CHECK(c["epoll_eintr"] == 0);
}

TEST_CASE("--backend: wall mode refuses perf; a bad name is a usage error",
          "[integration][sampler][shares]") {
    auto target = Target::start({target_bin("cpu_target", false), "--case", "bursty"});
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "1s", "-m",
                       "wall", "--backend", "perf", "-o", temp_path("wall-perf.pb.gz")});
    CHECK(r.exit_code == 64);  // a usage error, found before anything is traced
    CHECK(r.err.find("--mode cpu") != std::string::npos);
    CHECK(left_running(target->pid()) == "");
    RunResult bad =
        run({pmprof_bin(), "attach", std::to_string(target->pid()), "--backend", "dtrace"});
    CHECK(bad.exit_code == 64);
}

TEST_CASE("cpu mode, perf backend, unprivileged: user-space time only; another user's process "
          "refused in one line",
          "[integration][sampler][shares]") {
    const pmprof::PerfAccess access = pmprof::probe_perf_access(getpid());
    if (geteuid() != 0 || access.paranoid != 2 || access_path_missing("/usr/bin/setpriv")) {
        WARN("needs root to switch to uid 65534, and kernel.perf_event_paranoid = 2");
        return;
    }
    const std::vector<std::string> nobody = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                             "--clear-groups"};
    std::vector<std::string> argv = nobody;
    argv.insert(argv.end(), {target_bin("cpu_target", false), "--case", "bursty"});
    auto target = Target::start(argv);
    std::vector<std::string> pm = nobody;
    pm.insert(pm.end(), {pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "2s", "-m",
                         "cpu", "-r", "199", "--backend", "perf", "-f", "pprof", "-o", "-"});
    RunResult r = run(pm);
    INFO("pmprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("user-space time only") != std::string::npos);
    auto p = pmprof::decode_pprof(r.out);
    REQUIRE(p.ok());
    CHECK(share(cpu_in(*p, "burst", "burst_compute")) >= 0.90);

    // This test process runs as root: not nobody's to sample.
    std::vector<std::string> other = nobody;
    other.insert(other.end(), {pmprof_bin(), "attach", std::to_string(getpid()), "-d", "1s", "-m",
                               "cpu", "--backend", "perf", "-o", "-"});
    RunResult refused = run(other);
    INFO("refused: " << refused.err);
    CHECK(refused.exit_code == 2);
    CHECK(refused.err.find("runs as uid 0") != std::string::npos);
    CHECK(refused.err.find("CAP_PERFMON") != std::string::npos);
    CHECK(std::count(refused.err.begin(), refused.err.end(), '\n') == 1);
}

TEST_CASE("cpu mode, perf backend: an execve is followed, the old program keeps its symbols",
          "[integration][sampler][shares]") {
    if (!pmprof::probe_perf_access(getpid()).allowed) return;
    // split_target works for 1 s, then execs /bin/sleep 30.
    auto target =
        Target::start({target_bin("split_target", false), "--busy", "1", "--exec-after", "1"});
    const std::string out = temp_path("perf-exec.pb.gz");
    RunResult r = run({pmprof_bin(), "attach", std::to_string(target->pid()), "-d", "2500ms", "-m",
                       "cpu", "--backend", "perf", "-o", out});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.err.find("execve") != std::string::npos);
    auto p = pmprof::decode_pprof(slurp(out));
    REQUIRE(p.ok());
    CHECK(cpu_in(*p, "", "work_seventy").second > 0);
    CHECK(tracer_pid(target->pid()) == 0);
}
