// Unit tests of the sampler's schedstat reader: the allocation-free parse and the kept-open fd
// re-read (read_schedstat(const UniqueFd&)).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <string>

#include "pmprof/os/procfs.h"
#include "pmprof/support/fd.h"

using namespace pmprof;

TEST_CASE("parse_schedstat: separators, trailing fields, malformed numbers", "[unit][procfs]") {
    auto s = parse_schedstat("  7\t8  9 10\n");
    REQUIRE(s.ok());
    CHECK(s->run_ns == 7);
    CHECK(s->wait_ns == 8);
    CHECK(s->timeslices == 9);
    auto big = parse_schedstat("18446744073709551615 0 1\n");
    REQUIRE(big.ok());
    CHECK(big->run_ns == UINT64_MAX);
    CHECK_FALSE(parse_schedstat("1 2 x\n").ok());
    CHECK_FALSE(parse_schedstat("1 -2 3\n").ok());
    CHECK_FALSE(parse_schedstat("   \n").ok());
}

TEST_CASE("read_schedstat(fd): re-reads a kept-open file from its start", "[unit][procfs]") {
    const std::string path = "/proc/self/task/" + std::to_string(::gettid()) + "/schedstat";
    auto fd = open_readonly(path);
    REQUIRE(fd.ok());
    auto first = read_schedstat(*fd);
    REQUIRE(first.ok());
    CHECK(first->run_ns > 0);
    // Burn a few milliseconds of cpu: the second read through the same fd sees them.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
    volatile uint64_t spin = 0;
    while (std::chrono::steady_clock::now() < until) spin = spin + 1;
    auto second = read_schedstat(*fd);
    REQUIRE(second.ok());
    CHECK(second->run_ns > first->run_ns);
    CHECK(second->timeslices >= first->timeslices);

    UniqueFd closed;
    auto bad = read_schedstat(closed);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("pread schedstat") != std::string::npos);
}
