// `pmprof doctor PID`: every finding with its fix, the exit status (0 fine,
// 1 something stops pmprof, 3 degraded), and the target is never traced or stopped.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

RunResult doctor(const std::string& pid, const std::vector<std::string>& pre = {},
                 const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = pre;
    argv.push_back(pmprof_bin());
    argv.push_back("doctor");
    argv.push_back(pid);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv);
}

bool has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("doctor: a healthy target, every section, and nothing traced", "[integration][doctor]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    // Under strace: no ptrace request may name the target (the only ptrace call is the probe
    // of pmprof's own pid), and no process_vm_readv of it either.
    RunResult r = doctor(pid, {"strace", "-f", "-qq", "-e", "trace=ptrace,process_vm_readv"});
    INFO(r.out << r.err);
    CHECK((r.exit_code == 0 || r.exit_code == 3));
    for (const char* section : {"Tracing (ptrace)", "Reading memory", "Kernel sampling",
                                "Debug information", "Unwind information", "Allocator", "Threads"})
        CHECK(has(r.out, section));
    CHECK(has(r.out, "ok    pmprof runs as uid 0 with CAP_SYS_PTRACE, pid " + pid + " as uid 0"));
    CHECK(has(r.out, "no other tracer"));
    CHECK(has(r.out, "process_vm_readv is allowed"));
    CHECK(has(r.out, "perf_event_paranoid is"));
    CHECK(has(r.out, target_bin("stacks_target", true) + ": symtab, DWARF, build id "));
    CHECK(has(r.out, "stacks_target-fp: .eh_frame_hdr; frame pointers in "));
    CHECK(has(r.out, "malloc: `pmprof heap` supports it"));
    CHECK(has(r.out, std::to_string(target->tids().size()) + " threads: `stacks` stops each"));
    CHECK(!has(r.err, "PTRACE_SEIZE"));
    CHECK(!has(r.err, "PTRACE_INTERRUPT"));
    CHECK(!has(r.err, "process_vm_readv(" + pid));
    CHECK(!has(r.err, "ptrace(PTRACE_GETREGS, " + pid));
    REQUIRE(left_running(target->pid()) == "");

    RunResult json = doctor(pid, {}, {"--format", "json"});
    CHECK(json.exit_code == r.exit_code);
    CHECK(json.out.rfind("{\"pid\":" + pid + ",", 0) == 0);
    CHECK(has(json.out, "\"section\":\"allocator\""));
}

TEST_CASE("doctor: no permission is a blocker naming both uids, with the fix",
          "[integration][doctor]") {
    REQUIRE(geteuid() == 0);
    auto target = Target::start({target_bin("stacks_target", false)});
    const std::string pid = std::to_string(target->pid());
    RunResult r = doctor(
        pid, {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(has(r.out,
              "FAIL  pmprof runs as uid 65534 without CAP_SYS_PTRACE, pid " + pid + " as uid 0"));
    CHECK(has(r.out, "fix: run pmprof as uid 0"));
    CHECK(has(r.out, "problem"));
}

TEST_CASE("doctor: another tracer, seccomp filters on pmprof", "[integration][doctor]") {
    auto target = Target::start({target_bin("garbage_target", true)});
    const std::string pid = std::to_string(target->pid());
    const std::string seccomp = build_dir() + "/seccomp_exec";

    RunResult ptrace_denied = doctor(pid, {seccomp, "ptrace"});
    INFO(ptrace_denied.out);
    CHECK(ptrace_denied.exit_code == 1);
    CHECK(has(ptrace_denied.out, "FAIL  ptrace is denied to pmprof itself"));
    CHECK(has(ptrace_denied.out, "Seccomp: 2"));

    RunResult vm_denied = doctor(pid, {seccomp, "process_vm_readv"});
    INFO(vm_denied.out);
    CHECK(has(vm_denied.out, "WARN  process_vm_readv is denied to pmprof"));
    CHECK(has(vm_denied.out, "/proc/" + pid + "/mem instead"));
    CHECK(vm_denied.exit_code == 3);

    auto strace_job = Target::start({"/bin/sh", "-c",
                                     "strace -f -qq -e trace=none -p " + pid +
                                         " -o /dev/null & echo ready >&${PMPROF_READY_FD}; wait"});
    for (int i = 0; i < 400 && tracer_pid(target->pid()) == 0; ++i)
        std::this_thread::sleep_for(5ms);
    const int tracer = tracer_pid(target->pid());
    REQUIRE(tracer > 0);
    RunResult traced = doctor(pid);
    INFO(traced.out);
    CHECK(traced.exit_code == 1);
    CHECK(has(traced.out, "FAIL  pid " + pid + " is already traced by " + std::to_string(tracer) +
                              " (strace)"));
    ::kill(tracer, SIGKILL);
    strace_job->terminate(SIGKILL);
    REQUIRE(left_running(target->pid(), {}, 5s) == "");
}

TEST_CASE("doctor: jemalloc, threads in D state, a missing pid", "[integration][doctor]") {
    const char* lib = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    REQUIRE(access(lib, R_OK) == 0);
    auto je = Target::start(
        {"/usr/bin/env", std::string("LD_PRELOAD=") + lib, target_bin("heap_types", true)});
    RunResult r = doctor(std::to_string(je->pid()));
    INFO(r.out);
    CHECK(has(r.out, "WARN  pid " + std::to_string(je->pid()) + " uses jemalloc"));
    CHECK(r.exit_code == 3);

    auto d = Target::start({target_bin("stacks_target", true), "--dstate"});
    const std::string vforker = parse_fields(d->ready_line()).at("vforker");
    RunResult ds = doctor(std::to_string(d->pid()));
    INFO(ds.out);
    CHECK(has(ds.out, "in uninterruptible sleep (D): " + vforker + " ("));
    CHECK(ds.exit_code == 3);
    REQUIRE(left_running(d->pid()) == "");

    RunResult none = doctor("4194304");
    CHECK(none.exit_code == 2);
    CHECK(has(none.err, "no process with pid 4194304"));
}
