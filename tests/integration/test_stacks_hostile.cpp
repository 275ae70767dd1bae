// `pmprof stacks` under hostile conditions: each gives a clear one-line error or a marked
// partial result with the documented exit code, and leaves the target exactly as it was.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

namespace {

RunResult stacks(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{pmprof_bin(), "stacks"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, 60s);
}

/// The error output is one line (plus an optional "hint:" line), starting with "pmprof: ".
void require_clear_error(const RunResult& r) {
    INFO("stderr: " << r.err);
    REQUIRE(r.err.rfind("pmprof: ", 0) == 0);
    size_t lines = 0;
    for (char c : r.err) lines += c == '\n';
    REQUIRE(lines <= 3);  // the error, a hint, at most one summary line
    REQUIRE(r.out.empty());
}

}  // namespace

TEST_CASE("stacks: a pid that does not exist is a fatal one-line error", "[integration][stacks]") {
    // pid_max is at most 4194304; this one cannot exist.
    RunResult r = stacks({"4194304"});
    REQUIRE(r.exit_code == 2);
    require_clear_error(r);
    REQUIRE(r.err.find("4194304") != std::string::npos);
}

TEST_CASE("stacks: bad usage exits 64", "[integration][stacks]") {
    REQUIRE(stacks({"not-a-pid"}).exit_code == 64);
    REQUIRE(stacks({}).exit_code == 64);
    REQUIRE(stacks({"1", "--format", "nonsense"}).exit_code == 64);
    REQUIRE(run({pmprof_bin(), "no-such-verb"}).exit_code == 64);
}

TEST_CASE("stacks: refuses pmprof's own pid and its parent", "[integration][stacks]") {
    // `exec` keeps the shell's pid, so $$ is pmprof's own pid.
    RunResult self = run({"/bin/sh", "-c", "exec \"$0\" stacks $$", pmprof_bin()});
    REQUIRE(self.exit_code == 2);
    REQUIRE(self.err.find("itself") != std::string::npos);

    RunResult parent = run({"/bin/sh", "-c", "\"$0\" stacks $$; exit $?", pmprof_bin()});
    REQUIRE(parent.exit_code == 2);
    REQUIRE(parent.err.find("parent") != std::string::npos);
}

TEST_CASE("stacks: a zombie process is a fatal error", "[integration][stacks]") {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) _exit(0);
    // Wait until it is a zombie, without reaping it.
    for (int i = 0; i < 200; ++i) {
        siginfo_t info{};
        if (waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT | WNOHANG) == 0 &&
            info.si_pid == child)
            break;
        std::this_thread::sleep_for(5ms);
    }
    RunResult r = stacks({std::to_string(child)});
    int status = 0;
    waitpid(child, &status, 0);
    REQUIRE(r.exit_code == 2);
    REQUIRE(r.err.find("zombie") != std::string::npos);
}

TEST_CASE("stacks: an already traced target names its tracer", "[integration][stacks]") {
    auto target = Target::start({target_bin("garbage_target", true)});
    // strace as the other tracer; it attaches with PTRACE_SEIZE and stays until killed.
    auto strace_job =
        Target::start({"/bin/sh", "-c",
                       "strace -f -qq -e trace=none -p " + std::to_string(target->pid()) +
                           " -o /dev/null & echo ready >&${PMPROF_READY_FD}; wait"});
    for (int i = 0; i < 400 && tracer_pid(target->pid()) == 0; ++i)
        std::this_thread::sleep_for(5ms);
    int tracer = tracer_pid(target->pid());
    REQUIRE(tracer > 0);
    RunResult r = stacks({std::to_string(target->pid())});
    REQUIRE(r.exit_code == 2);
    REQUIRE(r.err.find("already traced") != std::string::npos);
    REQUIRE(r.err.find(std::to_string(tracer)) != std::string::npos);
    ::kill(tracer, SIGKILL);
    strace_job->terminate(SIGKILL);
    REQUIRE(left_running(target->pid(), {}, 5s) == "");
}

TEST_CASE("stacks: no permission says what is needed", "[integration][stacks]") {
    REQUIRE(geteuid() == 0);  // the suite runs as root (CI, make test); needed to drop to nobody
    auto target = Target::start({target_bin("garbage_target", false)});
    // As user nobody, tracing a root process fails; the message must say what is needed.
    RunResult r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       "--inh-caps=-all", pmprof_bin(), "stacks", std::to_string(target->pid())});
    REQUIRE(r.exit_code == 2);
    INFO(r.err);
    REQUIRE(r.err.find("CAP_SYS_PTRACE") != std::string::npos);
    REQUIRE(r.err.find("root") != std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}

TEST_CASE("stacks: garbage stack pointer and code without unwind info", "[integration][stacks]") {
    for (bool fp : {true, false}) {
        auto target = Target::start({target_bin("garbage_target", fp)});
        RunResult r = stacks({std::to_string(target->pid()), "--no-group"});
        INFO(r.out << r.err);
        REQUIRE((r.exit_code == 0 || r.exit_code == 1));
        REQUIRE(r.out.find("\"garbage-sp\"") != std::string::npos);
        REQUIRE(r.out.find("garbage_sp_spin") != std::string::npos);
        REQUIRE(r.out.find("nocfi_spin") != std::string::npos);
        REQUIRE(r.out.find("stack truncated") != std::string::npos);
        // The ordinary thread is still unwound to its function.
        REQUIRE(r.out.find("garbage_target::ordinary_sleep()") != std::string::npos);
        REQUIRE(target->alive());
        REQUIRE(left_running(target->pid()) == "");
    }
}
