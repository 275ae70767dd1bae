// Callgrind writer: golden file, name compression, totals, inclusive call costs, and the real
// consumer (callgrind_annotate) agreeing on totals.
#include <catch2/catch.hpp>

#include <regex>
#include <sstream>

#include "../../support/harness.h"
#include "../../support/report_fixtures.h"
#include "pmprof/output/callgrind.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

}  // namespace

TEST_CASE("callgrind output matches the golden file", "[unit][callgrind]") {
    std::string out = write_callgrind(fixture_profile(), CallgrindOptions{"app --flag"});
    CHECK(out == golden("fixture.callgrind", out));
}

TEST_CASE("callgrind header declares one event per sample type and the totals",
          "[unit][callgrind]") {
    std::string out = write_callgrind(fixture_profile());
    CHECK(out.starts_with("# callgrind format\nversion: 1\n"));
    CHECK(out.find("\npositions: line\n") != std::string::npos);
    CHECK(out.find("\nevents: samples cpu\n") != std::string::npos);
    CHECK(out.find("\nsummary: 9 90000000\n") != std::string::npos);
    CHECK(out.ends_with("\ntotals: 9 90000000\n"));
    CHECK(out.find("cmd:") == std::string::npos);  // no command given
}

TEST_CASE("callgrind names are compressed: defined once, then referenced by id",
          "[unit][callgrind]") {
    std::string out = write_callgrind(fixture_profile());
    std::regex def(R"(^c?fn=\((\d+)\) (.+)$)"), ref(R"(^c?fn=\((\d+)\)$)");
    std::map<std::string, std::string> defined;
    size_t refs = 0;
    for (const std::string& l : lines_of(out)) {
        std::smatch m;
        if (std::regex_match(l, m, def)) {
            INFO(l);
            CHECK(defined.emplace(m[1], m[2]).second);  // each id defined exactly once
        } else if (std::regex_match(l, m, ref)) {
            INFO(l);
            CHECK(defined.count(m[1]) == 1);  // referenced only after its definition
            ++refs;
        }
    }
    CHECK(refs > 0);
    std::set<std::string> names;
    for (const auto& [id, name] : defined) names.insert(name);
    CHECK(names ==
          std::set<std::string>{"main", "compute(int)", "helper<int>", "memcpy", "app+0x1040"});
}

TEST_CASE("callgrind self costs sit on source lines, call costs are inclusive",
          "[unit][callgrind]") {
    std::string out = write_callgrind(fixture_profile());
    // helper (inlined) has the self cost of sample 1 at its line 6.
    std::smatch m;
    REQUIRE(std::regex_search(out, m, std::regex(R"(fn=\((\d+)\) helper<int>\n)")));
    CHECK(
        std::regex_search(out, std::regex("\nfn=\\(" + m[1].str() + "\\)[^\n]*\n6 3 30000000\n")));
    // main calls compute from line 12 with everything but the unsymbolized sample: 8 samples.
    std::regex main_to_compute(R"(cfn=\(\d+\)(?: compute\(int\))?\ncalls=\d+ 20\n12 8 80000000\n)");
    CHECK(std::regex_search(out, main_to_compute));
    // compute's recursive sample reaches compute through main's call only: no compute->compute
    // call record, so readers do not count it twice.
    CHECK(out.find("calls=2 20\n25 ") == std::string::npos);
}

TEST_CASE("callgrind writes unknown objects and files as ??? and no newline in names",
          "[unit][callgrind]") {
    Profile p;
    p.sample_types = {{"samples", "count"}};
    p.functions = {Function{1, "evil\nname", "", "", 0}};
    p.locations = {Location{1, 0, 0x10, {Line{1, 3}}}, Location{2, 0, 0x20, {Line{99, 1}}}};
    p.samples = {Sample{{1, 2, 77}, {5}, {}}};  // 2 names a missing function, 77 nothing
    std::string out = write_callgrind(p);
    CHECK(std::regex_search(out, std::regex(R"(fn=\(\d+\) evil name\n)")));
    CHECK(out.find("ob=(1) ???\n") != std::string::npos);
    CHECK(out.find("[unknown function]") != std::string::npos);
    CHECK(out.find("[unknown location]") != std::string::npos);
    CHECK(out.ends_with("totals: 5\n"));
}

TEST_CASE("callgrind_annotate reads the file and reports the profile's totals",
          "[integration][callgrind]") {
    std::string path = temp_path("callgrind.out.fixture");
    {
        std::ofstream f(path);
        f << write_callgrind(fixture_profile());
    }
    RunResult r = run({"callgrind_annotate", "--inclusive=yes", path});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    INFO(r.out);
    // "9 (100.0%)  90,000,000 (100.0%)  PROGRAM TOTALS" (the layout varies across versions).
    std::regex totals(R"(([\d,]+)\s+(?:\([^)]*\)\s+)?([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS)");
    std::smatch m;
    REQUIRE(std::regex_search(r.out, m, totals));
    CHECK(m[1] == "9");
    CHECK(m[2] == "90,000,000");
    // Inclusive per function equals pprof's cum (recursion counted once per sample).
    std::map<std::string, std::string> expected = {{"/src/app.cpp:main", "9"},
                                                   {"/src/app.cpp:compute(int)", "8"},
                                                   {"/src/app.h:helper<int>", "3"},
                                                   {"???:memcpy", "2"},
                                                   {"???:app+0x1040", "1"}};
    std::regex row(R"(\n\s*([\d,]+) \([^)]*\)\s+[\d,]+ \([^)]*\)\s+(\S+) \[)");
    std::map<std::string, std::string> got;
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), row), end; it != end; ++it)
        got[(*it)[2]] = (*it)[1];
    CHECK(got == expected);
}

TEST_CASE("callgrind names the profiled process: pid: and cmd: from pmprof's first comment",
          "[integration][callgrind]") {
    Profile p = fixture_profile();
    p.comments = {"pmprof attach 4242: /usr/bin/app --serve 8080", "pmprof sampler: cpu mode"};
    const std::string out = write_callgrind(p);
    CHECK(out.find("\npid: 4242\ncmd: /usr/bin/app --serve 8080\n") != std::string::npos);
    // A verb without a pid (record before its command ran): cmd only.
    p.comments = {"pmprof record: sh -c true"};
    const std::string no_pid = write_callgrind(p);
    CHECK(no_pid.find("\ncmd: sh -c true\n") != std::string::npos);
    CHECK(no_pid.find("\npid:") == std::string::npos);
    // callgrind_annotate shows both as the profiled target.
    p.comments = {"pmprof stacks 77: ./server --port 1"};
    const std::string path = temp_path("callgrind.out.target");
    { std::ofstream(path) << write_callgrind(p); }
    RunResult r = run({"callgrind_annotate", path});
    REQUIRE(r.exit_code == 0);
    INFO(r.out);
    CHECK(
        std::regex_search(r.out, std::regex(R"(Profiled target:\s+\./server --port 1 \(PID 77)")));
}
