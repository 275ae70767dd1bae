// Folded stacks: root first, inline frames expanded, merged, sorted, escaped, per thread.
#include <catch2/catch.hpp>

#include "pmprof/output/folded.h"

using namespace pmprof;

namespace {

Profile folded_profile() {
    Profile p;
    p.sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    p.default_sample_type = "samples";
    p.mappings = {{1, 0x7f0000000000, 0x7f0000100000, 0x1000, "/lib/libc.so.6", "", false, false,
                   false, false}};
    p.functions = {{1, "main", "main", "", 0},
                   {2, "outer", "outer", "", 0},
                   {3, "inlined", "inlined", "", 0},
                   {4, "", "_Zbad", "", 0},
                   {5, "odd;name\nwith breaks", "", "", 0}};
    p.locations = {{1, 0, 0x10, {{1, 0}}},
                   {2, 0, 0x20, {{3, 0}, {2, 0}}},  // inlined into outer
                   {3, 1, 0x7f0000000234, {}},      // no lines: mapping + offset
                   {4, 0, 0x40, {{4, 0}}},
                   {5, 0, 0x50, {{5, 0}}}};
    const std::vector<Label> t1{{"thread_name", "worker-1", 0, ""}, {"tid", "", 11, ""}};
    const std::vector<Label> t2{{"thread_name", "worker-2", 0, ""}};
    const std::vector<Label> anon{{"tid", "", 13, ""}};
    p.samples = {{{2, 1}, {3, 30}, t1}, {{2, 1}, {2, 20}, t2}, {{3, 2, 1}, {1, 10}, t1},
                 {{4, 1}, {0, 5}, t1},  {{5}, {1, 1}, anon},   {{1}, {4, 40}, {}}};
    return p;
}

}  // namespace

TEST_CASE("folded: root first, inline expanded, merged and sorted", "[unit][folded]") {
    const std::string out = write_folded(folded_profile(), {});
    CHECK(out == "main 4\n"
                 "main;outer;inlined 5\n"
                 "main;outer;inlined;libc.so.6+0x1234 1\n"
                 "odd:name with breaks 1\n");
}

TEST_CASE("folded: other sample type, per-thread roots", "[unit][folded]") {
    const Profile p = folded_profile();
    CHECK(write_folded(p, {1, false}) == "main 40\n"
                                         "main;_Zbad 5\n"
                                         "main;outer;inlined 50\n"
                                         "main;outer;inlined;libc.so.6+0x1234 10\n"
                                         "odd:name with breaks 1\n");
    CHECK(write_folded(p, {0, true}) == "[tid 13];odd:name with breaks 1\n"
                                        "[unknown thread];main 4\n"
                                        "worker-1;main;outer;inlined 3\n"
                                        "worker-1;main;outer;inlined;libc.so.6+0x1234 1\n"
                                        "worker-2;main;outer;inlined 2\n");
    CHECK(write_folded(p, {5, false}).empty());
}
