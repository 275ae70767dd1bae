// No stop outlives pmprof's interest in a thread. A thread in D state (a vfork
// parent, tests/targets/ptrace_target.cpp --dstate-ms) costs one --stop-timeout wait in every
// verb and is never left in a ptrace-stop when its D state ends, also under `serve`; and tracing
// ends without one more stop per thread, so a thread blocked in epoll_wait, semop, sigtimedwait
// or recv with SO_RCVTIMEO (tests/targets/eintr_target.cpp) sees at most one EINTR per stop
// pmprof reports for it.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "../support/harness.h"
#include "pmprof/os/procfs.h"
#include "pmprof/output/pprof.h"
#include "pmprof/sampler/perf.h"

using namespace pmprof::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

/// The first group of `pattern` in `text`, or "" when it does not match.
std::string capture_group(const std::string& text, const char* pattern) {
    std::smatch m;
    return std::regex_search(text, m, std::regex(pattern)) ? m[1].str() : std::string();
}

/// A ptrace_target whose vforker thread sits `dstate_ms` in D state per vfork, and its tid.
struct DstateTarget {
    std::unique_ptr<Target> target;
    pid_t dtid = 0;
};

DstateTarget start_dstate(int dstate_ms) {
    DstateTarget d;
    d.target = Target::start({target_bin("ptrace_target", true), "--dstate-ms",
                              std::to_string(dstate_ms), "--threads", "2"});
    d.dtid = std::stoi(parse_fields(d.target->ready_line()).at("dstate"));
    return d;
}

/// Waits for the next "vfork K" line: the vforker enters a fresh D state right after it.
void wait_fresh_dstate(DstateTarget& d) {
    for (int i = 0; i < 20; ++i) {
        const std::string line = d.target->read_line(15s);
        REQUIRE(!line.empty());
        if (line.rfind("vfork ", 0) != 0) continue;
        const auto deadline = Clock::now() + 2s;
        while (Clock::now() < deadline) {
            auto st = pmprof::read_task_stat(d.target->pid(), d.dtid);
            if (st.ok() && st->state == pmprof::ThreadState::DiskSleep) return;
            std::this_thread::sleep_for(1ms);
        }
    }
    FAIL("the vforker did not enter D state");
}

/// Watches `tid` for `span`: "" when it was never in a ptrace-stop (t) traced by anyone.
std::string never_left_stopped(pid_t pid, pid_t tid, std::chrono::milliseconds span) {
    const auto deadline = Clock::now() + span;
    while (Clock::now() < deadline) {
        auto st = pmprof::read_task_status(pid, tid);
        if (st.ok() && st->state == pmprof::ThreadState::TracingStop)
            return "tid " + std::to_string(tid) + " in state t, TracerPid " +
                   std::to_string(st->tracer_pid);
        std::this_thread::sleep_for(5ms);
    }
    return "";
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

TEST_CASE("a thread in D state costs one --stop-timeout wait and is never left stopped",
          "[integration][stops]") {
    // One D state of 6 s covers all three verbs; each used to wait 3 s, twice, to detach it.
    auto d = start_dstate(6000);
    const pid_t pid = d.target->pid();
    wait_fresh_dstate(d);
    const std::string named = "(vforker) not stopped within 50 ms: state D";
    struct Verb {
        std::vector<std::string> args;
        double max_s;
    };
    const std::string out = temp_path("dstate.pb.gz");
    for (const Verb& v :
         {Verb{{"stacks", "--stop-timeout", "50"}, 2.0},
          Verb{{"attach", "-d", "1s", "--stop-timeout", "50", "-m", "wall", "-o", out}, 3.0},
          Verb{{"heap", "--stop-timeout", "50"}, 2.0}}) {
        std::vector<std::string> argv = {pmprof_bin()};
        argv.insert(argv.end(), v.args.begin(), v.args.end());
        argv.push_back(std::to_string(pid));
        const auto t0 = Clock::now();
        RunResult r = run(argv, 30s);
        const double took = seconds_since(t0);
        INFO(v.args[0] << " took " << took << " s; stderr: " << r.err);
        CHECK(r.exit_code >= 0);
        CHECK(r.exit_code <= 1);
        CHECK(took < v.max_s);
        CHECK(r.err.find(named) != std::string::npos);
        CHECK(r.err.find("wchan") != std::string::npos);
    }
    // The D state ends within the 6 s: the interrupt pmprof sent must not become a stop.
    REQUIRE(never_left_stopped(pid, d.dtid, 6500ms) == "");
    REQUIRE(left_running(pid) == "");
}

TEST_CASE("EINTR-prone blocked threads see at most one EINTR per stop pmprof reports",
          "[integration][stops]") {
    const int semid = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    REQUIRE(semid >= 0);
    struct SemGuard {
        int id;
        ~SemGuard() { semctl(id, 0, IPC_RMID); }
    } guard{semid};
    auto target =
        Target::start({target_bin("eintr_target", true), "--semid", std::to_string(semid)});
    const pid_t pid = target->pid();
    auto f = parse_fields(target->ready_line());
    const std::vector<std::string> kinds = {"epoll", "semop", "sigwait", "recv"};
    std::map<std::string, pid_t> tid;
    for (const std::string& k : kinds) tid[k] = std::stoi(f.at(k));
    std::map<std::string, long> seen;  // EINTRs so far, per thread
    auto counts = [&] {
        auto c = try_counts(*target);
        REQUIRE(c.size() == kinds.size());
        return c;
    };

    SECTION("stacks stops each thread once and detaches it in that stop") {
        RunResult r = run({pmprof_bin(), "stacks", std::to_string(pid)});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        auto c = counts();
        for (const std::string& k : kinds) CHECK(c[k] <= 1);
        // The summary names the threads the stop made fail with EINTR.
        CHECK(r.err.find("blocked in a call that the stop made fail with EINTR") !=
              std::string::npos);
        CHECK(r.err.find("blk-epoll (" + std::to_string(tid["epoll"]) + ", epoll_wait)") !=
              std::string::npos);
        // --thread: the others are never stopped, so never see EINTR.
        RunResult one = run({pmprof_bin(), "stacks", std::to_string(pid), "--thread", "blk-epoll"});
        REQUIRE(one.exit_code == 0);
        auto c2 = counts();
        CHECK(c2["epoll"] <= c["epoll"] + 1);
        for (const char* k : {"semop", "sigwait", "recv"}) CHECK(c2[k] == c[k]);
    }
    SECTION("attach: EINTRs per thread at most its stops in the profile") {
        const std::string out = temp_path("eintr.pb.gz");
        RunResult r = run({pmprof_bin(), "attach", std::to_string(pid), "-d", "1s", "-r", "20",
                           "-o", out, "-m", "wall", "-v"});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        auto c = counts();
        auto p = pmprof::decode_pprof(slurp(out));
        REQUIRE(p.ok());
        std::string stops;
        for (const std::string& cm : p->comments)
            if (cm.rfind("pmprof stops per thread", 0) == 0) stops = cm;
        INFO(stops);
        for (const std::string& k : kinds) {
            long n = 0;
            const auto at = stops.find(" " + std::to_string(tid[k]) + ":");
            if (at != std::string::npos) n = std::stol(stops.substr(stops.find(':', at + 1) + 1));
            INFO(k << ": " << c[k] << " EINTR, " << n << " stops");
            CHECK(c[k] <= n);
        }
    }
    SECTION("cpu mode at 999 Hz: the perf backend makes no call fail; ptrace's count beside it") {
        // The perf backend stops nothing, so not one EINTR; the ptrace backend stops only threads
        // found on a cpu, which these never are. Wall mode stops each of them for its first
        // stack: the reference that shows the target counts an EINTR when there is one.
        auto attach = [&](const std::string& mode, const std::string& backend) {
            const std::string out = temp_path("eintr-" + mode + backend + ".pb.gz");
            std::vector<std::string> argv = {pmprof_bin(), "attach", std::to_string(pid), "-m",
                                             mode};
            argv.insert(argv.end(), {"-d", "1s", "-r", "999", "-o", out});
            if (!backend.empty()) argv.insert(argv.end(), {"--backend", backend});
            RunResult r = run(argv);
            INFO(mode << " " << backend << ": " << r.err);
            // These threads use no cpu: a cpu-mode profile of them is empty (exit 1, said so).
            const bool empty =
                r.exit_code == 1 && r.err.find("no samples were taken") != std::string::npos;
            REQUIRE((r.exit_code == 0 || empty));
            return counts();
        };
        auto before = counts();
        if (pmprof::probe_perf_access(pid).allowed) {
            auto c = attach("cpu", "perf");
            for (const std::string& k : kinds) {
                INFO(k);
                CHECK(c[k] == before[k]);
            }
            before = c;
        } else {
            WARN("perf_event_open not allowed here: " << pmprof::probe_perf_access(pid).why);
        }
        auto ptrace_cpu = attach("cpu", "ptrace");
        for (const std::string& k : kinds) {
            INFO(k << ": ptrace cpu mode " << ptrace_cpu[k] - before[k] << " EINTR");
            CHECK(ptrace_cpu[k] == before[k]);
        }
        auto wall = attach("wall", "");
        long wall_eintr = 0;
        for (const std::string& k : kinds) wall_eintr += wall[k] - ptrace_cpu[k];
        CHECK(wall_eintr > 0);
    }
    SECTION("heap stops each thread once, detaching included") {
        RunResult r = run({pmprof_bin(), "heap", std::to_string(pid), "--no-reach"});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        auto c = counts();
        for (const std::string& k : kinds) CHECK(c[k] <= 1);
    }
    REQUIRE(left_running(pid) == "");
}

namespace {

/// The numbers of `pmprof stacks`'s summary line: threads, longest stop (us), not captured.
struct StacksSummary {
    long threads = -1, longest_us = -1, window_us = -1, not_captured = -1;
};

StacksSummary parse_stacks_summary(const std::string& err) {
    StacksSummary s;
    const auto at = err.find(" threads, target stopped ");
    if (at == std::string::npos) return s;
    const auto line_start = err.rfind('\n', at);
    const size_t from = line_start == std::string::npos ? 0 : line_start + 1;
    const std::string line = err.substr(from, err.find('\n', at) - from);
    std::sscanf(line.c_str() + line.find_first_of("0123456789"),
                "%ld threads, target stopped %ld us at most per thread (%ld us", &s.threads,
                &s.longest_us, &s.window_us);
    const auto nc = line.find(" not captured");
    if (nc != std::string::npos) s.not_captured = std::stol(line.substr(line.rfind(' ', nc - 1)));
    return s;
}

}  // namespace

TEST_CASE("stacks of 2000 threads: every thread captured, none stopped long",
          "[integration][stops][scale]") {
    // Interrupted all at once, the last of 4000 threads waited half a second for the tracer to
    // copy every one before it; in windows of 64 each waits for at most 63 siblings' copies.
    auto target = Target::start({target_bin("stacks_target", true), "--threads", "2000"},
                                std::chrono::seconds(60));
    const pid_t pid = target->pid();
    RunResult r = run({pmprof_bin(), "stacks", "-o", "/dev/null", std::to_string(pid)});
    INFO(r.err.substr(r.err.size() > 3000 ? r.err.size() - 3000 : 0));
    REQUIRE(r.exit_code == 0);
    const StacksSummary s = parse_stacks_summary(r.err);
    CHECK(s.threads >= 2000);
    CHECK(s.not_captured == 0);
    // The goal is 10 ms; a shared, loaded 2-core machine preempts the tracer now and then even
    // at realtime priority (other realtime tracers), so the test allows 25 ms. All at once,
    // this was 100-500 ms at 2000 threads.
    CHECK(s.longest_us >= 0);
    CHECK(s.longest_us < 25000);
    REQUIRE(left_running(pid) == "");
}

TEST_CASE("attach of 2000 threads: every thread sampled, at most a window interrupted at once",
          "[integration][stops][scale]") {
    // The sampler's first tick has to stop every thread (none has a stack yet). Interrupted all
    // at once, the last of them stayed stopped until the tracer had copied every one before it
    // (a stop latency median of 270 ms at 4000 threads); a window of 64 bounds that queue.
    auto target = Target::start({target_bin("stacks_target", true), "--threads", "2000"},
                                std::chrono::seconds(60));
    const pid_t pid = target->pid();
    RunResult r = run({pmprof_bin(), "-v", "attach", "-m", "wall", "-d", "1s", "--no-progress",
                       "-o", "/dev/null", std::to_string(pid)});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const std::string threads = capture_group(r.err, R"(samples from (\d+) threads)");
    REQUIRE(!threads.empty());
    CHECK(std::stoi(threads) >= 2000);
    const std::string window = capture_group(r.err, R"(at most (\d+) threads interrupted at once)");
    REQUIRE(!window.empty());
    CHECK(std::stoi(window) >= 1);
    CHECK(std::stoi(window) <= 64);
    CHECK(r.err.find(" 0 threads not captured") != std::string::npos);
    REQUIRE(left_running(pid) == "");
}

TEST_CASE("heap: --max-stop ends a long walk with a partial snapshot that says why",
          "[integration][stops][heap]") {
    auto target = Target::start({target_bin("heap_leaks", true), "64"}, std::chrono::seconds(60));
    const pid_t pid = target->pid();
    RunResult r = run(
        {pmprof_bin(), "heap", "--no-reach", "--max-stop", "1", "-f", "json", std::to_string(pid)});
    INFO(r.err);
    CHECK(r.exit_code == 1);  // partial
    CHECK(r.err.find("walk ended at --max-stop 1 ms") != std::string::npos);
    CHECK(r.out.find("\"partial\": true") != std::string::npos);
    // Without the cap the same heap is walked whole.
    RunResult whole = run(
        {pmprof_bin(), "heap", "--no-reach", "--max-stop", "0", "-f", "json", std::to_string(pid)});
    INFO(whole.err);
    CHECK(whole.exit_code == 0);
    CHECK(whole.err.find("walk ended at") == std::string::npos);
    REQUIRE(left_running(pid) == "");
}

TEST_CASE("heap: SIGTERM during the walk ends pmprof fast, the target detached and running",
          "[integration][stops][heap]") {
    // About 300 MB of small chunks: a walk of a few hundred ms.
    auto target = Target::start({target_bin("heap_leaks", true), "300"}, std::chrono::seconds(120));
    const pid_t pid = target->pid();
    std::atomic<int64_t> sent_ns{0}, resumed_ns{0};
    std::atomic<bool> done{false};
    std::thread killer([&] {
        // The walk's stop: the main thread in t, traced by pmprof's tracer thread; a signal to
        // that tid goes to the whole pmprof process.
        while (!done) {
            auto st = pmprof::read_task_status(pid, pid);
            if (st.ok() && st->state == pmprof::ThreadState::TracingStop && st->tracer_pid > 0) {
                std::this_thread::sleep_for(20ms);
                sent_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              Clock::now().time_since_epoch())
                              .count();
                ::kill(st->tracer_pid, SIGTERM);
                // Released when the main thread leaves its ptrace-stop.
                for (;;) {
                    auto now = pmprof::read_task_status(pid, pid);
                    if (!now.ok() || now->state != pmprof::ThreadState::TracingStop) break;
                    std::this_thread::sleep_for(100us);
                }
                resumed_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 Clock::now().time_since_epoch())
                                 .count();
                return;
            }
            std::this_thread::sleep_for(200us);
        }
    });
    RunResult r =
        run({pmprof_bin(), "heap", "--max-stop", "0", "-o", "/dev/null", std::to_string(pid)});
    const int64_t end_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count();
    done = true;
    killer.join();
    INFO(r.err);
    REQUIRE(sent_ns != 0);
    const double resumed_ms = static_cast<double>(resumed_ns - sent_ns) / 1e6;
    const double took_ms = static_cast<double>(end_ns - sent_ns) / 1e6;
    INFO("target resumed " << resumed_ms << " ms, pmprof ended " << took_ms << " ms after SIGTERM");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("abandoned: walk stopped by SIGTERM") != std::string::npos);
    CHECK(resumed_ns != 0);
    CHECK(resumed_ms < 100);
    // pmprof itself then frees its copy of the heap (hundreds of MB: tens of ms, more on a
    // loaded machine) before it exits; without the cut it walked on for seconds.
    CHECK(took_ms < 1000);
    REQUIRE(left_running(pid, {}, 1000ms) == "");
}
