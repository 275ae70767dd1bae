// heap --sites pieces that need no target: Go's sample scaling, the byte counts of
// --sample-rate, and the call-stack rule that matches returns to entries by stack pointer.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "../../src/alloc_sites_recorder.h"
#include "../../src/cmd_heap_sites.h"
#include "pmprof/error.h"

using namespace pmprof;

TEST_CASE("sites: Go's scaling of a sample by 1 / (1 - exp(-size/rate))", "[unit][sites]") {
    CHECK(sites::sample_scale(100, 1) == 1);  // rate 1: every allocation
    CHECK(sites::sample_scale(512 * 1024, 512 * 1024) == Approx(1 / (1 - std::exp(-1.0))));
    CHECK(sites::sample_scale(64, 512 * 1024) == Approx(512.0 * 1024 / 64).epsilon(0.001));
    CHECK(sites::sample_scale(64u << 20, 512 * 1024) == Approx(1));
}

TEST_CASE("sites: exponential spacing and the scale estimate bytes without bias", "[unit][sites]") {
    // The recorder's scheme, simulated: 200000 allocations of 4 KiB at 512 KiB.
    std::mt19937_64 rng(42);
    std::exponential_distribution<double> gap(1.0 / (512 * 1024));
    double until = gap(rng), estimate = 0;
    const uint64_t size = 4096, n = 200000;
    for (uint64_t i = 0; i < n; ++i) {
        until -= static_cast<double>(size);
        if (until <= 0) {
            until = gap(rng);
            estimate += static_cast<double>(size) * sites::sample_scale(size, 512 * 1024);
        }
    }
    CHECK(estimate == Approx(static_cast<double>(n * size)).epsilon(0.05));
}

TEST_CASE("sites: --sample-rate byte counts", "[unit][sites]") {
    CHECK(parse_byte_count("524288") == 524288);
    CHECK(parse_byte_count("512KiB") == 524288);
    CHECK(parse_byte_count("512k") == 524288);
    CHECK(parse_byte_count("5MiB") == 5u << 20);
    CHECK(parse_byte_count("1") == 1);
    CHECK_THROWS_AS(parse_byte_count("0"), FatalError);
    CHECK_THROWS_AS(parse_byte_count("12parsecs"), FatalError);
    CHECK_THROWS_AS(parse_byte_count("lots"), FatalError);
}

TEST_CASE("sites: calls below a new entry's sp or past the stale time are finished",
          "[unit][sites]") {
    using Call = std::pair<uint64_t, uint64_t>;  // (entry sp, time)
    auto sp_of = [](const Call& c) { return c.first; };
    auto time_of = [](const Call& c) { return c.second; };
    std::vector<Call> calls{{0x1000, 10}, {0x0f00, 20}};  // realloc, then malloc inside it
    // A return of the inner call (sp = its entry sp + 8) leaves the outer in progress.
    CHECK(sites::drop_finished(calls, 0x0f08 - 9, 0, sp_of, time_of) == 0);
    calls.pop_back();
    // A new entry from the same frame as the outer (its return was lost): the outer is done.
    CHECK(sites::drop_finished(calls, 0x1000, 30, sp_of, time_of) == 1);
    CHECK(calls.empty());
    // Deeper entry long after: the stale outer is dropped too.
    calls = {{0x1000, 10}};
    CHECK(sites::drop_finished(calls, 0x0800, 10 + sites::kStale + 1, sp_of, time_of) == 1);
    // Deeper entry soon after: nested, the outer stays.
    calls = {{0x1000, 10}};
    CHECK(sites::drop_finished(calls, 0x0800, 20, sp_of, time_of) == 0);
}
