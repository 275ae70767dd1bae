// Fallbacks and reasons: with process_vm_readv denied to pmprof by a seccomp
// filter, memory is read through /proc/PID/mem (then PTRACE_PEEKDATA) and -v says so; a denied
// ptrace names seccomp; a permission error names both uids and ptrace_scope; `serve` refuses
// at start-up a target it cannot trace. build/seccomp_exec (tests/tools) installs the filter.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

std::string seccomp_exec() { return build_dir() + "/seccomp_exec"; }

const std::vector<std::string> kAsNobody = {"setpriv", "--reuid=65534", "--regid=65534",
                                            "--clear-groups", "--inh-caps=-all"};

std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

}  // namespace

TEST_CASE("seccomp: process_vm_readv denied, stacks reads /proc/PID/mem and says so",
          "[integration][access]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    RunResult r = run({seccomp_exec(), "process_vm_readv", pmprof_bin(), "-v", "stacks", pid,
                       "--no-group", "--no-source"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("no stack") == std::string::npos);
    CHECK(r.out.find("stacks_target::blocked_in_read()") != std::string::npos);
    CHECK(r.err.find("process_vm_readv denied") != std::string::npos);
    CHECK(r.err.find("seccomp") != std::string::npos);
    CHECK(r.err.find("/proc/PID/mem") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("seccomp: process_vm_readv denied, attach still takes samples", "[integration][access]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string out = temp_path("seccomp-attach.folded");
    RunResult r = run({seccomp_exec(), "process_vm_readv", pmprof_bin(), "attach",
                       std::to_string(target->pid()), "-d", "1s", "-o", out, "-m", "wall"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.err.find(" 0 samples") == std::string::npos);
    CHECK(slurp(out).find("stacks_target::blocked_in_read()") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("memory: with only PTRACE_PEEKDATA the stacks still unwind", "[integration][access]") {
    // PMPROF_MEMORY=peek starts where process_vm_readv and /proc/PID/mem both denied end up.
    auto target = Target::start({target_bin("stacks_target", true)});
    RunResult r = run({"env", "PMPROF_MEMORY=peek", pmprof_bin(), "-v", "stacks",
                       std::to_string(target->pid()), "--no-group", "--no-source"});
    INFO(r.err);
    CHECK((r.exit_code == 0 || r.exit_code == 1));
    CHECK(r.err.find("read with PTRACE_PEEKDATA") != std::string::npos);
    CHECK(r.out.find("stacks_target::blocked_in_read()") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("seccomp: ptrace denied to pmprof is named as the cause", "[integration][access]") {
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    for (const char* filter : {"ptrace", "ptrace:ENOSYS"}) {
        RunResult r = run({seccomp_exec(), filter, pmprof_bin(), "stacks", pid});
        INFO(filter << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("PTRACE_SEIZE pid " + pid) != std::string::npos);
        CHECK(r.err.find("seccomp filter") != std::string::npos);
        CHECK(r.err.find("Seccomp: 2") != std::string::npos);
    }
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("permission: the message names both uids, the capability and ptrace_scope",
          "[integration][access]") {
    REQUIRE(geteuid() == 0);
    auto target = Target::start({target_bin("stacks_target", true)});
    RunResult r = run(cat(kAsNobody, {pmprof_bin(), "stacks", std::to_string(target->pid())}));
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("pmprof runs as uid 65534 without CAP_SYS_PTRACE") != std::string::npos);
    CHECK(r.err.find("pid " + std::to_string(target->pid()) + " as uid 0") != std::string::npos);
    CHECK(r.err.find("root or CAP_SYS_PTRACE") != std::string::npos);
    if (::access("/proc/sys/kernel/yama/ptrace_scope", F_OK) == 0) {
        CHECK(r.err.find("ptrace_scope") != std::string::npos);
    }
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("serve: a target it cannot trace is refused at start-up, not with 500s",
          "[integration][access][serve]") {
    REQUIRE(geteuid() == 0);
    auto target = Target::start({target_bin("stacks_target", true)});
    const std::string pid = std::to_string(target->pid());
    const std::vector<std::string> serve = {pmprof_bin(), "serve", pid, "--listen", "127.0.0.1:0"};
    RunResult nobody = run(cat(kAsNobody, serve), 10s);
    INFO(nobody.err);
    CHECK(!nobody.timed_out);
    CHECK(nobody.exit_code == 2);
    CHECK(nobody.err.find("serving") == std::string::npos);
    CHECK(nobody.err.find("uid 65534") != std::string::npos);

    RunResult filtered = run(cat({seccomp_exec(), "ptrace"}, serve), 10s);
    INFO(filtered.err);
    CHECK(!filtered.timed_out);
    CHECK(filtered.exit_code == 2);
    CHECK(filtered.err.find("serving") == std::string::npos);
    CHECK(filtered.err.find("seccomp") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}
