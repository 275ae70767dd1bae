// SignalBlock and wait_for_signal on this thread's mask: what is blocked stays pending for the
// wait, and a block restores only what it added, so blocks nest.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>

#include "pmprof/os/clock.h"
#include "pmprof/os/signals.h"

using namespace pmprof;

namespace {

bool blocked(int sig) {
    sigset_t now;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &now);
    return sigismember(&now, sig) == 1;
}

}  // namespace

TEST_CASE("SignalBlock: blocks, keeps the signal pending for wait, nests", "[unit][os]") {
    REQUIRE_FALSE(blocked(SIGUSR1));
    REQUIRE_FALSE(blocked(SIGUSR2));
    {
        SignalBlock outer({SIGUSR1});
        CHECK(blocked(SIGUSR1));
        CHECK_FALSE(blocked(SIGUSR2));
        {
            SignalBlock inner({SIGUSR1, SIGUSR2});
            CHECK(blocked(SIGUSR2));
            CHECK(sigismember(&inner.set(), SIGUSR1) == 1);
            // A directed signal stays pending (its default action would end the test run).
            ::pthread_kill(::pthread_self(), SIGUSR2);
            siginfo_t info{};
            CHECK(inner.wait(0, &info) == SIGUSR2);
            CHECK(info.si_signo == SIGUSR2);
        }
        CHECK(blocked(SIGUSR1));  // the outer block's, not undone by the inner one
        CHECK_FALSE(blocked(SIGUSR2));
        const int64_t t0 = monotonic_ns();
        CHECK(outer.wait(20'000'000) == -1);  // nothing pending: the timeout
        CHECK(monotonic_ns() - t0 >= 15'000'000);
        ::pthread_kill(::pthread_self(), SIGUSR1);
        CHECK(wait_for_signal(signal_set({SIGUSR1}), 0) == SIGUSR1);
    }
    CHECK_FALSE(blocked(SIGUSR1));
}

TEST_CASE("clocks: one type, monotonic and realtime apart", "[unit][os]") {
    const int64_t a = monotonic_ns(), b = monotonic_ns();
    CHECK(b >= a);
    // 2020-01-01 in ns since the epoch: realtime is the wall clock, monotonic is not.
    CHECK(realtime_ns() > 1'577'836'800LL * kNsPerSec);
    CHECK(timeval_ns(timeval{2, 500}) == 2 * kNsPerSec + 500'000);
}
