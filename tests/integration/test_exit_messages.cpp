// A target that exits while pmprof looks at it, or a zombie leader under `heap`:
// the message says so ("pid N exited during the dump", "pid N is a zombie: ..."), never reads
// like a missing file ("open /proc/N/root/...: No such file or directory").
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "../support/harness.h"

using namespace pmprof::test;
using namespace std::chrono_literals;

TEST_CASE("stacks and heap: a target exiting during the dump is said to have exited",
          "[integration][exit]") {
    // exit_target leaves --delay-us after it first sees itself traced: before the stop, inside
    // it, between the detach and the opening of its binaries, or after.
    for (const char* verb : {"stacks", "heap"}) {
        for (const char* delay : {"0", "200", "1000", "3000", "10000"}) {
            auto target = Target::start({target_bin("exit_target", true), "--delay-us", delay});
            const std::string pid = std::to_string(target->pid());
            RunResult r = run({pmprof_bin(), verb, pid}, 60s);
            // The watcher polls every 20 us: the exit has happened by now, or it never saw the
            // trace (then the target is still running and the run was an ordinary one).
            std::this_thread::sleep_for(100ms);
            const bool exited = !target->alive();
            INFO(verb << " --delay-us " << delay << " exited=" << exited << ": " << r.err);
            CHECK(!r.timed_out);
            CHECK(r.err.find("No such file or directory") == std::string::npos);
            CHECK(r.err.find("unreadable") == std::string::npos);
            // An exit after pmprof's last look may go unnoticed (exit 0); anything else that
            // went wrong must say why.
            if (exited && r.exit_code != 0)
                CHECK(r.err.find("pid " + pid + " exited") != std::string::npos);
        }
    }
}

TEST_CASE("heap: a zombie leader is named as such", "[integration][exit][heap]") {
    auto target = Target::start({target_bin("stacks_target", true), "--main-exits"});
    const std::string pid = std::to_string(target->pid());
    for (int i = 0; i < 200; ++i) {  // until the leader is a zombie
        if (slurp("/proc/" + pid + "/stat").find(") Z ") != std::string::npos) break;
        std::this_thread::sleep_for(10ms);
    }
    RunResult r = run({pmprof_bin(), "heap", pid});
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind("pmprof: pid " + pid + " is a zombie: its main thread has exited", 0) == 0);
    CHECK(r.err.find("No such file") == std::string::npos);
    REQUIRE(left_running(target->pid()) == "");
}
