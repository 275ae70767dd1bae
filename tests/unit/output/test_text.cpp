// `-top` numbers and formatting (the same profile is checked against the real `go tool pprof` in
// tests/integration/test_pprof_go.cpp).
#include <catch2/catch.hpp>

#include "../../support/report_fixtures.h"
#include "pmprof/output/text.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

/// top_profile() and a sample without locations, which counts in no row and no total.
Profile top_profile_with_empty_sample() {
    Profile p = top_profile();
    p.samples.push_back({{}, {0, 0}, {}});
    return p;
}

}  // namespace

TEST_CASE("compute_top: flat on the leaf line, cum once per sample", "[unit][text]") {
    const Profile p = top_profile_with_empty_sample();
    auto rows = compute_top(p, 1);
    REQUIRE(rows.size() == 5);
    CHECK(rows[0].function == "helper");
    CHECK(rows[0].flat == 1200000000);
    CHECK(rows[0].cum == 1900000000);
    CHECK(rows[1].function == "libc.so.6+0x1234");
    CHECK(rows[1].flat == 700000000);
    CHECK(rows[2].function == "main");
    CHECK(rows[2].flat == 30000000);
    CHECK(rows[2].cum == 1931000000);
    CHECK(rows[3].function == "tiny");
    CHECK(rows[4].function == "compute(int)");
    CHECK(rows[4].flat == 0);
    CHECK(rows[4].cum == 1900000000);
    CHECK(compute_top(p, 2).empty());
    CHECK(compute_top(p, -1).empty());
}

TEST_CASE("compute_top counts a recursive function once per sample", "[unit][text]") {
    Profile p;
    p.sample_types = {{"samples", "count"}};
    p.functions = {{1, "rec", "rec", "", 0}, {2, "main", "main", "", 0}};
    p.locations = {{1, 0, 0x10, {{1, 0}}}, {2, 0, 0x20, {{1, 0}}}, {3, 0, 0x30, {{2, 0}}}};
    p.samples = {{{1, 2, 1, 3}, {4}, {}}};
    auto rows = compute_top(p, 0);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].function == "rec");
    CHECK(rows[0].flat == 4);
    CHECK(rows[0].cum == 4);
    CHECK(rows[1].cum == 4);
}

TEST_CASE("format_top prints pprof's table, units and drops", "[unit][text]") {
    const Profile p = top_profile_with_empty_sample();
    const std::string out = format_top(p, 1, 0);
    INFO(out);
    CHECK(out.find("Type: cpu\n") != std::string::npos);
    CHECK(out.find("Showing nodes accounting for 1930ms, 99.95% of 1931ms total\n") !=
          std::string::npos);
    CHECK(out.find("Dropped 1 node (cum <= 9.65ms)\n") != std::string::npos);
    CHECK(out.find("      flat  flat%   sum%        cum   cum%\n") != std::string::npos);
    CHECK(out.find("    1200ms 62.14% 62.14%     1900ms 98.39%  helper (inline)\n") !=
          std::string::npos);
    CHECK(out.find("     700ms 36.25% 98.39%      700ms 36.25%  libc.so.6+0x1234\n") !=
          std::string::npos);
    CHECK(out.find("         0     0% 99.95%     1900ms 98.39%  compute(int)\n") !=
          std::string::npos);
    CHECK(out.find("tiny") == std::string::npos);

    const std::string counts = format_top(p, 0, 2);
    INFO(counts);
    CHECK(counts.find("Showing top 2 nodes out of 5\n") != std::string::npos);
    // compute(int) is not shown, so (as in pprof) no inline edge reaches helper.
    CHECK(counts.find("       120 61.86% 61.86%        190 97.94%  helper\n") != std::string::npos);
    CHECK(counts.find("main") == std::string::npos);
}
