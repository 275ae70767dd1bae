// TracerPriorityBoost: nice -10 or SCHED_FIFO on the calling thread only, restored; nested
// boosts are no-ops; threads started meanwhile never inherit the realtime policy.
#include <catch2/catch.hpp>

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "pmprof/os/tracer_priority.h"

using pmprof::TracerPriorityBoost;

namespace {

int thread_nice() {
    errno = 0;
    return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
}

}  // namespace

TEST_CASE("TracerPriorityBoost raises only this thread and restores it", "[unit][priority]") {
    const int before = thread_nice();
    {
        TracerPriorityBoost boost;
        if (::geteuid() == 0 && before > TracerPriorityBoost::kBoostedNice)
            CHECK(boost.boosted());  // root may always lower its nice value
        CHECK_FALSE(boost.realtime());
        CHECK(thread_nice() == (boost.boosted() ? TracerPriorityBoost::kBoostedNice : before));

        // A nested boost finds the thread already at -10: it changes nothing and, destroyed
        // first, must not restore the outer one's value early.
        {
            TracerPriorityBoost inner;
            CHECK_FALSE((inner.boosted() && boost.boosted()));
        }
        CHECK(thread_nice() == (boost.boosted() ? TracerPriorityBoost::kBoostedNice : before));
    }
    CHECK(thread_nice() == before);
}

TEST_CASE("TracerPriorityBoost leaves other threads alone", "[unit][priority]") {
    const int before = thread_nice();
    int seen = 99;
    std::atomic<int> step{0};
    // Started before the boost: keeps its own nice while this thread is boosted.
    std::thread other([&] {
        step = 1;
        while (step.load() != 2) std::this_thread::yield();
        seen = thread_nice();
    });
    while (step.load() != 1) std::this_thread::yield();
    {
        TracerPriorityBoost boost;
        step = 2;
        other.join();
    }
    CHECK(seen == before);
    CHECK(thread_nice() == before);
}

TEST_CASE("TracerPriorityBoost realtime: SCHED_FIFO for this thread only, then back",
          "[unit][priority]") {
    REQUIRE(::sched_getscheduler(0) == SCHED_OTHER);
    const int nice_before = thread_nice();
    int child_policy = -2;
    {
        TracerPriorityBoost boost(TracerPriorityBoost::Kind::Realtime);
        if (::geteuid() == 0) CHECK(boost.realtime());  // root: CAP_SYS_NICE
        if (boost.realtime()) {
            // sched_getscheduler reports the reset-on-fork flag with the policy.
            CHECK((::sched_getscheduler(0) & ~SCHED_RESET_ON_FORK) == SCHED_FIFO);
            sched_param param{};
            REQUIRE(::sched_getparam(0, &param) == 0);
            CHECK(param.sched_priority == TracerPriorityBoost::kRealtimePriority);
        } else {
            CHECK(::sched_getscheduler(0) == SCHED_OTHER);  // fell back to nice, if anything
        }
        // A thread started meanwhile (libdw may start one) is a normal thread.
        std::thread child([&] { child_policy = ::sched_getscheduler(0); });
        child.join();
        boost.end();
        CHECK_FALSE(boost.boosted());
        CHECK(::sched_getscheduler(0) == SCHED_OTHER);
        boost.end();  // idempotent; the destructor then does nothing either
    }
    CHECK(child_policy == SCHED_OTHER);
    CHECK(::sched_getscheduler(0) == SCHED_OTHER);
    CHECK(thread_nice() == nice_before);
}
