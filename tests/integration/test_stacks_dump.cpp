// take_thread_dump (the library call behind `pmprof stacks`) on tests/targets/ptrace_target:
// busy and sleeping threads all captured, the maps are the snapshot's own, the tracer's
// priority is restored, and the target is left running and untraced.
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

#include "../support/harness.h"
#include "pmprof/os/procfs.h"
#include "pmprof/threads/dump.h"

namespace t = pmprof::test;

namespace {

int thread_nice() {
    errno = 0;
    return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
}

bool in_maps(const std::vector<pmprof::MemoryMap>& maps, uint64_t address) {
    for (const pmprof::MemoryMap& m : maps)
        if (m.contains(address)) return true;
    return false;
}

}  // namespace

TEST_CASE("take_thread_dump: busy and sleeping threads, maps of the snapshot, priority restored",
          "[integration][stacks]") {
    // 6 extra threads: 3 spin (state R when listed: interrupted first), 3 sleep.
    auto target = t::Target::start({t::target_bin("ptrace_target", true), "--threads", "6"});
    const pid_t pid = target->pid();
    const int nice_before = thread_nice();

    pmprof::DumpOptions opt;
    auto dump = pmprof::take_thread_dump(pid, opt);
    REQUIRE(dump.ok());

    // The realtime boost of the stop phase ended with it.
    CHECK(thread_nice() == nice_before);
    CHECK(::sched_getscheduler(0) == SCHED_OTHER);
    REQUIRE(dump->threads.size() == 7);
    size_t spinning = 0;
    for (const pmprof::ThreadEntry& th : dump->threads) {
        INFO("tid " << th.tid << " " << th.name << ": " << th.error);
        CHECK(th.captured);
        CHECK_FALSE(th.stack.frames.empty());
        // The maps the dump keeps (the snapshot's, read right before its stops) cover every
        // thread's pc: they are what the frames were symbolized against.
        if (!th.stack.frames.empty()) CHECK(in_maps(dump->maps, th.stack.frames[0].pc));
        bool spins = false;
        for (const pmprof::SymbolizedPc& pc : th.frames)
            for (const pmprof::SourceFrame& f : pc.frames)
                spins |= f.function.find("ptrace_target::spin") != std::string::npos;
        spinning += spins ? 1 : 0;
    }
    CHECK(spinning == 3);
    CHECK(dump->stats.threads_captured == 7);

    // Detached: running on, and no longer traced by us.
    REQUIRE(target->alive());
    auto status = pmprof::read_status(pid);
    REQUIRE(status.ok());
    CHECK(status->tracer_pid == 0);
}
