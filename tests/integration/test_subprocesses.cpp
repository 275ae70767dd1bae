// Process trees and several pids (docs/design.md §4.7) against tests/targets/tree_target.cpp:
// `record --subprocesses` of a shell pipeline names both children's hot functions, `attach
// --subprocesses` of a master that forked workers shows every worker under its own pid label,
// in cpu mode (the perf backend as root: inherit) and wall mode (ptrace: the polled tree);
// `attach -p A,B`; `stacks` and `top` with --subprocesses; `record` without it says so when
// the children did the work. Every process is left running and untraced.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

/// `pmprof report FILE --top 0` with `--tagfocus TAG` when given: the functions of the samples
/// whose label matches.
std::string report_top(const std::string& file, const std::string& tag = "") {
    std::vector<std::string> argv{pmprof_bin(), "report", file, "--top", "0"};
    if (!tag.empty()) argv.insert(argv.end(), {"--tagfocus", tag});
    RunResult r = run(argv);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
}

bool has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

/// The master's pid and its workers' from "ready MASTER W1 W2 ...".
std::vector<pid_t> ready_pids(const std::string& line) {
    std::istringstream in(line);
    std::string word;
    in >> word;
    std::vector<pid_t> out;
    for (pid_t p; in >> p;) out.push_back(p);
    return out;
}

/// The shell forks both at once: with the perf backend the events are opened before the
/// command's first instruction (docs/design.md §4.7), so even its first children carry them.
std::string pipeline() {
    const std::string bin = target_bin("tree_target", true);
    return bin + " alpha 2 | " + bin + " beta 2";
}

void check_left_running(const std::vector<pid_t>& pids) {
    for (pid_t p : pids) {
        INFO("pid " << p);
        CHECK(left_running(p) == "");
    }
}

}  // namespace

TEST_CASE("record --subprocesses: both children of a pipeline, each with its own symbols",
          "[integration][subprocesses]") {
    // cpu mode: the perf backend as root (inherit), ptrace otherwise; wall: the polled tree.
    for (const char* mode : {"cpu", "wall"}) {
        INFO("mode " << mode);
        const std::string out = temp_path(std::string("pipe-") + mode + ".pb.gz");
        RunResult r = run({pmprof_bin(), "record", "--subprocesses", "-m", mode, "-o", out, "--",
                           "/bin/sh", "-c", pipeline()});
        INFO(r.err);
        CHECK(r.exit_code == 0);
        const std::string all = report_top(out);
        CHECK(has(all, "alpha_burn"));
        CHECK(has(all, "beta_burn"));
        // Labelled by process: the children's program name, never the shell's.
        const std::string children = report_top(out, "comm=tree_target");
        CHECK(has(children, "alpha_burn"));
        CHECK(has(children, "beta_burn"));
        CHECK_FALSE(has(report_top(out, "comm=^sh$"), "alpha_burn"));
        CHECK_FALSE(has(r.err, "add --subprocesses"));
    }
}

TEST_CASE("record without --subprocesses says the children did the work",
          "[integration][subprocesses]") {
    const std::string out = temp_path("pipe-plain.pb.gz");
    RunResult r = run({pmprof_bin(), "record", "-o", out, "--", "/bin/sh", "-c", pipeline()});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(has(r.err, "add --subprocesses"));
    // The shell alone: its children's functions are not in the profile.
    RunResult top = run({pmprof_bin(), "report", out, "--top", "0"});
    CHECK_FALSE(has(top.out, "alpha_burn"));

    // A command that does its own work gets no such warning.
    RunResult own = run({pmprof_bin(), "record", "-o", temp_path("own.pb.gz"), "--",
                         target_bin("tree_target", true), "alpha", "1"});
    INFO(own.err);
    CHECK(own.exit_code == 0);
    CHECK_FALSE(has(own.err, "add --subprocesses"));
}

TEST_CASE("attach --subprocesses: every worker of a forking master, labelled by pid",
          "[integration][subprocesses]") {
    auto master = Target::start({target_bin("tree_target", false), "master", "3"});
    const std::vector<pid_t> pids = ready_pids(master->ready_line());
    REQUIRE(pids.size() == 4);
    for (const char* mode : {"cpu", "wall"}) {
        INFO("mode " << mode);
        const std::string out = temp_path(std::string("master-") + mode + ".pb.gz");
        RunResult r = run({pmprof_bin(), "attach", std::to_string(master->pid()), "--subprocesses",
                           "-m", mode, "-d", "2s", "-o", out});
        INFO(r.err);
        CHECK(r.exit_code == 0);
        for (size_t i = 1; i < pids.size(); ++i) {
            INFO("worker " << pids[i]);
            CHECK(has(report_top(out, "pid=" + std::to_string(pids[i])), "worker_burn"));
        }
        CHECK(has(report_top(out, "comm=tree-worker"), "worker_burn"));
        // The master's own samples carry its pid (wall mode sees it waiting in master_wait).
        if (std::string(mode) == "wall")
            CHECK(has(report_top(out, "pid=" + std::to_string(master->pid())), "master_wait"));
        check_left_running(pids);
    }
    CHECK(master->alive());
}

TEST_CASE("attach -p A,B: several processes in one profile, labelled by pid",
          "[integration][subprocesses]") {
    auto master = Target::start({target_bin("tree_target", true), "master", "2"});
    const std::vector<pid_t> pids = ready_pids(master->ready_line());
    REQUIRE(pids.size() == 3);
    const std::string list = std::to_string(pids[1]) + "," + std::to_string(pids[2]);
    for (const char* mode : {"cpu", "wall"}) {
        INFO("mode " << mode);
        const std::string out = temp_path(std::string("several-") + mode + ".pb.gz");
        RunResult r =
            run({pmprof_bin(), "attach", "-p", list, "-m", mode, "-d", "1500ms", "-o", out});
        INFO(r.err);
        CHECK(r.exit_code == 0);
        CHECK(has(report_top(out, "pid=" + std::to_string(pids[1])), "worker_burn"));
        CHECK(has(report_top(out, "pid=" + std::to_string(pids[2])), "worker_burn"));
        // The master was not asked for.
        CHECK_FALSE(has(report_top(out), "master_wait"));
        check_left_running(pids);
    }
    RunResult bad = run({pmprof_bin(), "attach", "-p", std::to_string(pids[1]) + ",x", "-d", "1s"});
    CHECK(bad.exit_code == 64);
    // A pid that is not there: the one line says so, in either backend, and nothing is left
    // traced or stopped.
    for (const char* mode : {"cpu", "wall"}) {
        INFO("mode " << mode);
        RunResult gone =
            run({pmprof_bin(), "attach", "-m", mode, "-p", std::to_string(pids[1]) + ",999999999",
                 "-d", "1s", "-o", temp_path("gone.pb.gz")});
        INFO(gone.err);
        CHECK(gone.exit_code == 2);
        CHECK(gone.err.find("no process with pid 999999999") != std::string::npos);
        check_left_running(pids);
    }
}

TEST_CASE("stacks and top --subprocesses show the children", "[integration][subprocesses]") {
    auto master = Target::start({target_bin("tree_target", true), "master", "2"});
    const std::vector<pid_t> pids = ready_pids(master->ready_line());
    REQUIRE(pids.size() == 3);
    const std::string root = std::to_string(master->pid());

    RunResult plain = run({pmprof_bin(), "stacks", root});
    CHECK(plain.exit_code == 0);
    CHECK_FALSE(has(plain.out, "worker_burn"));  // the master alone
    RunResult tree = run({pmprof_bin(), "stacks", root, "--subprocesses"});
    INFO(tree.err);
    CHECK(tree.exit_code == 0);
    for (pid_t p : pids) CHECK(has(tree.out, "== pid " + std::to_string(p) + ":"));
    CHECK(has(tree.out, "worker_burn"));
    CHECK(has(tree.out, "master_wait"));
    // Grouped per process: the master's block comes first and holds no worker frame.
    const size_t first_worker = tree.out.find("== pid " + std::to_string(pids[1]) + ":");
    REQUIRE(first_worker != std::string::npos);
    CHECK_FALSE(has(tree.out.substr(0, first_worker), "worker_burn"));
    check_left_running(pids);

    // top writes plain blocks when stdout is not a terminal.
    RunResult top = run({pmprof_bin(), "top", root, "--subprocesses", "-d", "2500ms"});
    INFO(top.err);
    CHECK(top.exit_code == 0);
    CHECK(has(top.out, "worker_burn"));
    RunResult top_plain = run({pmprof_bin(), "top", root, "-d", "1500ms"});
    CHECK_FALSE(has(top_plain.out, "worker_burn"));
    check_left_running(pids);
    CHECK(master->alive());
}

TEST_CASE(
    "attach --subprocesses: pmprof killed or interrupted mid-run leaves every process running",
    "[integration][subprocesses]") {
    auto master = Target::start({target_bin("tree_target", true), "master", "3"});
    const std::vector<pid_t> pids = ready_pids(master->ready_line());
    REQUIRE(pids.size() == 4);
    for (int sig : {SIGKILL, SIGINT}) {
        INFO("signal " << sig);
        const std::string out = temp_path("killed-" + std::to_string(sig) + ".pb.gz");
        const std::string err = temp_path("killed-" + std::to_string(sig) + ".err");
        auto pm =
            Target::start({"/bin/sh", "-c",
                           "echo ready >&$PMPROF_READY_FD; exec " + pmprof_bin() + " attach " +
                               std::to_string(pids[0]) + " --subprocesses -m wall -d 60s -o " +
                               out + " 2>" + err + " </dev/null"});
        // Every process of the tree seized, then the signal in the middle of the sampling.
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        auto all_traced = [&] {
            for (pid_t p : pids)
                if (tracer_pid(p) <= 0) return false;
            return true;
        };
        while (!all_traced() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        REQUIRE(all_traced());
        std::this_thread::sleep_for(300ms);
        const int status = pm->terminate(sig, 30s);
        INFO(slurp(err));
        check_left_running(pids);
        if (sig == SIGINT) {
            REQUIRE(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
            CHECK(has(report_top(out, "comm=tree-worker"), "worker_burn"));
        }
    }
    CHECK(master->alive());
}
