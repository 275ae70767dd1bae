// `pmprof report` end to end against the real consumers: `go tool pprof` (top, list, base) on a
// Go runtime/pprof profile and on pmprof's own files, callgrind_annotate on the converted file,
// and one-line errors with exit 2 for anything that is not a profile.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>

#include "../support/harness.h"
#include "../support/report_fixtures.h"
#include "pmprof/output/pprof.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

std::string go_profile() { return source_dir() + "/tests/corpus/go_cpu.pb.gz"; }

RunResult go_pprof(const std::vector<std::string>& args) { return run_go_tool_pprof(args); }

RunResult pmprof_report(std::vector<std::string> args) {
    std::vector<std::string> argv = {pmprof_bin(), "report"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
}

// The rows of a -top table: "flat flat% sum% cum cum% name", everything after the header.
std::vector<std::string> top_rows(const std::string& text) {
    std::vector<std::string> rows;
    std::istringstream in(text);
    bool table = false;
    for (std::string l; std::getline(in, l);) {
        if (table) rows.push_back(l);
        if (l.find("flat  flat%   sum%") != std::string::npos) table = true;
    }
    return rows;
}

// "flat cum name" of each -top row (the percentage columns dropped).
std::vector<std::string> values_only(const std::vector<std::string>& rows) {
    std::vector<std::string> out;
    std::regex row(R"(^\s*(\S+)\s+\S+\s+\S+\s+(\S+)\s+\S+\s+(.*)$)");
    for (const std::string& r : rows) {
        std::smatch m;
        if (std::regex_match(r, m, row))
            out.push_back(m[1].str() + " " + m[2].str() + " " + m[3].str());
    }
    return out;
}

std::string line_with(const std::string& text, const std::string& prefix) {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        if (l.starts_with(prefix)) return l;
    return {};
}

// The value-bearing lines of a -list output ("  flat  cum  lineno:"), without the source text,
// which depends on where the source is found.
std::vector<std::string> list_values(const std::string& text) {
    std::vector<std::string> out;
    std::regex row(R"(^\s*(\S+)\s+(\S+)\s+(\d+):)");
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        std::smatch m;
        if (std::regex_search(l, m, row) && (m[1] != "." || m[2] != "."))
            out.push_back(m[1].str() + " " + m[2].str() + " " + m[3].str());
    }
    return out;
}

std::string write_fixture(const std::string& name, const Profile& p) {
    auto gz = encode_pprof_gzip(p);
    REQUIRE(gz.ok());
    std::string path = temp_path(name);
    std::ofstream(path, std::ios::binary) << *gz;
    return path;
}

}  // namespace

TEST_CASE("report --top prints go tool pprof -top's numbers for a Go CPU profile",
          "[integration][report]") {
    RunResult go = go_pprof({"-top", go_profile()});
    INFO(go.err);
    REQUIRE(go.exit_code == 0);
    RunResult ours = pmprof_report({go_profile(), "--top", "0"});
    INFO(ours.err);
    REQUIRE(ours.exit_code == 0);
    INFO("go:\n" << go.out << "\npmprof:\n" << ours.out);
    auto rows = top_rows(ours.out);
    CHECK(rows.size() >= 4);
    CHECK(rows == top_rows(go.out));
    CHECK(line_with(ours.out, "Showing nodes") == line_with(go.out, "Showing nodes"));
    CHECK(ours.out.find("main.hotLoop") != std::string::npos);
    CHECK(ours.err.empty());
}

TEST_CASE("report --top agrees with go tool pprof on pmprof's own profile, with --base and "
          "--tagfocus",
          "[integration][report]") {
    std::string cur_path = write_fixture("cur.pb.gz", fixture_profile());
    Profile base = fixture_profile();
    base.samples[0].values = {1, 10000000};  // helper grew by 20 ms since the base
    base.samples.pop_back();                 // the recursion is new
    std::string base_path = write_fixture("base.pb.gz", base);

    RunResult go = go_pprof({"-top", cur_path});
    RunResult ours = pmprof_report({cur_path});  // top is the default
    REQUIRE(go.exit_code == 0);
    REQUIRE(ours.exit_code == 0);
    INFO("go:\n" << go.out << "\npmprof:\n" << ours.out);
    CHECK(top_rows(ours.out) == top_rows(go.out));

    RunResult go_diff = go_pprof({"-top", "-base", base_path, cur_path});
    RunResult diff = pmprof_report({cur_path, "--base", base_path});
    REQUIRE(go_diff.exit_code == 0);
    REQUIRE(diff.exit_code == 0);
    INFO("go -base:\n" << go_diff.out << "\npmprof --base:\n" << diff.out);
    CHECK(top_rows(diff.out) == top_rows(go_diff.out));
    CHECK(line_with(diff.out, "Showing nodes") == line_with(go_diff.out, "Showing nodes"));

    RunResult go_tag = go_pprof({"-top", "-tagfocus", "thread_name=worker", cur_path});
    RunResult tag =
        pmprof_report({cur_path, "--tagfocus", "thread_name=worker", "--sample-index", "samples"});
    REQUIRE(go_tag.exit_code == 0);
    REQUIRE(tag.exit_code == 0);
    RunResult go_tag_samples =
        go_pprof({"-top", "-sample_index=samples", "-tagfocus", "thread_name=worker", cur_path});
    INFO("go:\n" << go_tag_samples.out << "\npmprof:\n" << tag.out);
    // pprof keeps the whole profile's total for the percentages under -tagfocus, and so does
    // pmprof: the rows (with their percentages) and the "Showing nodes" line are the same.
    CHECK(top_rows(tag.out) == top_rows(go_tag_samples.out));
    CHECK(values_only(top_rows(tag.out)).size() == 4);
    CHECK(line_with(tag.out, "Showing nodes") == line_with(go_tag_samples.out, "Showing nodes"));
    CHECK(line_with(tag.out, "   tagfocus=thread_name=worker") ==
          line_with(go_tag_samples.out, "   tagfocus=thread_name=worker"));
    CHECK(!line_with(tag.out, "   tagfocus=thread_name=worker").empty());
}

TEST_CASE("report --list shows the same per-line values as go tool pprof -list",
          "[integration][report]") {
    std::string src = source_dir() + "/tests/corpus";
    RunResult go = go_pprof({"-list", "hotLoop", go_profile()});
    RunResult ours = pmprof_report({go_profile(), "--list", "hotLoop", "--source-path", src});
    REQUIRE(go.exit_code == 0);
    REQUIRE(ours.exit_code == 0);
    INFO("go:\n" << go.out << "\npmprof:\n" << ours.out);
    CHECK(line_with(ours.out, "Total:") == line_with(go.out, "Total:"));
    auto values = list_values(ours.out);
    CHECK(!values.empty());
    CHECK(values == list_values(go.out));
    // The source was found (by recorded path or under --source-path): its text is printed.
    CHECK(ours.out.find("func hotLoop(n int) uint64 {") != std::string::npos);
}

TEST_CASE("report converts to callgrind whose totals callgrind_annotate confirms",
          "[integration][report][callgrind]") {
    std::string out = temp_path("callgrind.out.go");
    RunResult conv = pmprof_report({go_profile(), "-o", out});  // format from the file name
    INFO(conv.err);
    REQUIRE(conv.exit_code == 0);
    RunResult ann = run({"callgrind_annotate", out});
    INFO(ann.err);
    REQUIRE(ann.exit_code == 0);
    RunResult go = go_pprof({"-raw", go_profile()});
    REQUIRE(go.exit_code == 0);
    // Totals of both sample types, from go's raw sample list.
    int64_t samples = 0, cpu = 0;
    std::regex sample_row(R"(\n\s+(\d+)\s+(\d+): [\d ]+)");
    for (std::sregex_iterator it(go.out.begin(), go.out.end(), sample_row), end; it != end; ++it) {
        samples += std::stoll((*it)[1]);
        cpu += std::stoll((*it)[2]);
    }
    REQUIRE(samples > 0);
    auto commas = [](int64_t v) {
        std::string s = std::to_string(v);
        for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3)
            s.insert(static_cast<size_t>(i), ",");
        return s;
    };
    INFO(ann.out);
    std::regex totals(R"(([\d,]+) \([^)]*\)\s+([\d,]+) \([^)]*\)\s+PROGRAM TOTALS)");
    std::smatch m;
    REQUIRE(std::regex_search(ann.out, m, totals));
    CHECK(m[1] == commas(samples));
    CHECK(m[2] == commas(cpu));
    CHECK(ann.out.find("main.hotLoop") != std::string::npos);
}

TEST_CASE("report --format writes svg, folded and pprof that read back", "[integration][report]") {
    std::string svg = temp_path("go.svg");
    REQUIRE(pmprof_report({go_profile(), "-o", svg}).exit_code == 0);
    CHECK(slurp(svg).find("data-n=\"main.hotLoop\"") != std::string::npos);

    RunResult folded = pmprof_report({go_profile(), "--format", "folded"});
    REQUIRE(folded.exit_code == 0);
    CHECK(folded.out.find("runtime.main;main.main;main.hotLoop") != std::string::npos);

    std::string pb = temp_path("copy.pb.gz");
    REQUIRE(pmprof_report({go_profile(), "--format", "pprof", "-o", pb}).exit_code == 0);
    RunResult again = pmprof_report({pb});
    RunResult orig = pmprof_report({go_profile()});
    REQUIRE(again.exit_code == 0);
    CHECK(top_rows(again.out) == top_rows(orig.out));
    RunResult go = go_pprof({"-top", pb});  // Go reads the converted copy too
    REQUIRE(go.exit_code == 0);
    CHECK(top_rows(go.out) == top_rows(orig.out));
}

TEST_CASE("report on garbage, truncated, empty or missing files: one line, exit 2",
          "[integration][report]") {
    std::string gz = slurp(go_profile());
    REQUIRE(gz.size() > 100);
    std::vector<std::pair<std::string, std::string>> inputs = {
        {"empty.pb.gz", ""},
        {"text.pb.gz", "not a profile at all\n"},
        {"truncated.pb.gz", gz.substr(0, gz.size() / 2)},
        {"zeros.pb.gz", std::string(4096, '\0')},
    };
    for (const auto& [name, data] : inputs) {
        std::string path = temp_path(name);
        std::ofstream(path, std::ios::binary) << data;
        RunResult r = pmprof_report({path});
        INFO(name << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.out.empty());
        CHECK(r.err.starts_with("pmprof: " + path + ": "));
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    RunResult missing = pmprof_report({"/nonexistent.pb.gz"});
    CHECK(missing.exit_code == 2);
    CHECK(missing.err == "pmprof: open /nonexistent.pb.gz: No such file or directory\n");
    RunResult bad_index = pmprof_report({go_profile(), "--sample-index", "bogus"});
    CHECK(bad_index.exit_code == 64);
    CHECK(bad_index.err.find("no sample type 'bogus'") != std::string::npos);
    RunResult bad_format = pmprof_report({go_profile(), "--format", "dot"});
    CHECK(bad_format.exit_code == 64);
}

TEST_CASE("report's repeatable options take one value each, the file stays positional",
          "[integration][report]") {
    std::string src = source_dir() + "/tests/corpus";
    RunResult r = pmprof_report(
        {"--source-path", "/nonexistent", "--source-path", src, go_profile(), "--list", "hotLoop"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("func hotLoop(n int) uint64 {") != std::string::npos);
    RunResult t = pmprof_report(
        {"--tagfocus", "no_such=x", "--tagfocus", "other=y", go_profile(), "--top", "3"});
    INFO(t.err);
    REQUIRE(t.exit_code == 0);
    // Nothing kept, percentages of the whole profile: what go tool pprof prints as well.
    RunResult go =
        go_pprof({"-top", "-tagfocus", "no_such=x", "-tagfocus", "other=y", go_profile()});
    CHECK(line_with(t.out, "Showing nodes") == line_with(go.out, "Showing nodes"));
    CHECK(line_with(t.out, "Showing nodes").starts_with("Showing nodes accounting for 0, 0% of "));
}
