// pmprof's pprof output read by its real consumers: build/pprofcheck (google/pprof's profile
// package: Parse + CheckValid) and `go tool pprof -raw/-top`. Totals and per-function flat/cum
// must equal compute_top, and format_top must print what `go tool pprof -top` prints. Go being
// missing is a failure, not a skip.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <sstream>

#include "../support/harness.h"
#include "../support/report_fixtures.h"
#include "pmprof/output/pprof.h"
#include "pmprof/output/text.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

class FakeSymbolizer : public Symbolizer {
  public:
    std::map<uint64_t, SymbolizedPc> table;
    const SymbolizedPc& symbolize(const RawFrame& frame) override {
        SymbolizedPc& s = table[frame.lookup_pc()];
        s.pc = frame.pc;
        return s;
    }
};

// A profile through ProfileBuilder: C++ template names, an inline chain, a libc pc without
// symbol, a truncated stack, a synthetic stack, string and numeric labels.
Profile built_profile() {
    FakeSymbolizer sym;
    auto sf = [](std::string fn, int line, bool inl) {
        return SourceFrame{fn, "_Z" + std::to_string(fn.size()) + "x", "/src/app.cpp", line, 1,
                           inl};
    };
    sym.table[0x401010] = {
        0,
        "/nonexistent/app",
        "b1d0",
        0x1010,
        {sf("std::vector<int, std::allocator<int> >::push_back(int const&)", 5, true),
         sf("fill(std::vector<int>&)", 20, false)}};
    sym.table[0x4010ff] = {0, "/nonexistent/app", "b1d0", 0x10ff, {sf("main", 40, false)}};
    sym.table[0x401200] = {0, "/nonexistent/app", "b1d0", 0x1200, {sf("spin()", 60, false)}};
    sym.table[0x7f0000001234] = {0, "/nonexistent/libfake.so.6", "", 0x1234, {}};
    const std::vector<MemoryMap> maps{
        {0x401000, 0x402000, "r-xp", 0x1000, "fd:01", 1, "/nonexistent/app", false},
        {0x7f0000000000, 0x7f0000100000, "r-xp", 0, "fd:01", 2, "/nonexistent/libfake.so.6",
         false}};

    ProfileBuilder b({{"samples", "count"}, {"cpu", "nanoseconds"}}, {"cpu", "nanoseconds"},
                     10000000);
    const std::vector<Label> w1{{"thread_name", "worker", 0, ""}, {"tid", "", 101, ""}};
    const std::vector<Label> w2{{"thread_name", "main", 0, ""}, {"tid", "", 100, ""}};
    for (int i = 0; i < 40; ++i)
        b.add({{{0x401010, true}, {0x401100, false}}, false, ""}, {1, 10000000}, w1);
    for (int i = 0; i < 25; ++i)
        b.add({{{0x7f0000001234, true}, {0x401011, false}, {0x401100, false}}, false, ""},
              {1, 10000000}, w1);
    for (int i = 0; i < 30; ++i)
        b.add({{{0x401200, true}, {0x401100, false}}, false, ""}, {1, 10000000}, w2);
    for (int i = 0; i < 3; ++i) b.add({{{0x401200, true}}, true, "max depth"}, {1, 10000000}, w2);
    b.add_synthetic({"[not captured: exited]"}, {1, 0}, {{"tid", "", 102, ""}});
    Profile p = b.build(sym, maps);
    p.default_sample_type = "cpu";
    p.comments = {"pmprof integration test"};
    p.time_nanos = 1700000000000000000;
    p.duration_nanos = 1000000000;
    return p;
}

std::string write_profile(const Profile& p, const std::string& name) {
    auto gz = encode_pprof_gzip(p);
    REQUIRE(gz.ok());
    std::string path = temp_path(name);
    std::ofstream(path, std::ios::binary) << *gz;
    return path;
}

RunResult go_pprof(const std::vector<std::string>& args) {
    RunResult r = run_go_tool_pprof(args);
    INFO("go tool pprof stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    return r;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
    return out;
}

// The part of a -top report from "Showing nodes accounting for" on (pprof also prints Time and
// Duration lines before it, which format_top leaves out).
std::string from_showing(const std::string& report) {
    size_t at = report.find("Showing nodes accounting for");
    REQUIRE(at != std::string::npos);
    return report.substr(at);
}

}  // namespace

TEST_CASE("pprofcheck accepts a built profile with the totals and flat/cum of compute_top",
          "[integration][pprof]") {
    const Profile p = built_profile();
    const std::string path = write_profile(p, "built.pb.gz");
    RunResult r = run({build_dir() + "/pprofcheck", path});
    INFO("pprofcheck stderr: " << r.err << "\nstdout:\n" << r.out);
    REQUIRE(r.exit_code == 0);

    std::map<std::string, std::pair<int64_t, int64_t>> go_funcs;
    std::map<std::string, std::string> fields;
    std::vector<int64_t> totals;
    for (const std::string& line : split(r.out, '\n')) {
        auto f = split(line, '\t');
        // pprof drops nodes whose flat and cum are both 0, and so does compute_top.
        if (f[0] == "func" && (f[1] != "0" || f[2] != "0")) {
            go_funcs[f[3]] = {std::stoll(f[1]), std::stoll(f[2])};
        }
        if (f[0] == "sample_type") totals.push_back(std::stoll(f[3]));
        if (f.size() == 2) fields[f[0]] = f[1];
    }
    CHECK(fields["default"] == "cpu");
    CHECK(fields["samples"] == std::to_string(p.samples.size()));
    CHECK(fields["locations"] == std::to_string(p.locations.size()));
    CHECK(fields["functions"] == std::to_string(p.functions.size()));
    CHECK(fields["mappings"] == "2");
    REQUIRE(totals.size() == 2);
    CHECK(totals[0] == 99);
    CHECK(totals[1] == 980000000);
    CHECK(r.out.find("mapping\t1\t/nonexistent/app\tb1d0\ttrue") != std::string::npos);

    auto rows = compute_top(p, p.sample_index());
    REQUIRE(rows.size() == go_funcs.size());
    for (const TopRow& row : rows) {
        INFO(row.function);
        REQUIRE(go_funcs.count(row.function) == 1);
        CHECK(go_funcs[row.function].first == row.flat);
        CHECK(go_funcs[row.function].second == row.cum);
    }
    CHECK(go_funcs.count("[truncated]") == 1);
    CHECK(go_funcs.count("libfake.so.6+0x1234") == 1);
}

TEST_CASE("go tool pprof -raw and -top read pmprof's profile like format_top",
          "[integration][pprof]") {
    const Profile p = built_profile();
    const std::string path = write_profile(p, "built-top.pb.gz");
    RunResult raw = go_pprof({"-raw", "-symbolize=none", path});
    CHECK(raw.out.find("PeriodType: cpu nanoseconds") != std::string::npos);
    CHECK(raw.out.find("fill(std::vector<int>&)") != std::string::npos);
    CHECK(raw.out.find("thread_name:[worker]") != std::string::npos);

    RunResult top = go_pprof({"-top", "-symbolize=none", path});
    CHECK(top.out.find("Type: cpu\n") != std::string::npos);
    CHECK(from_showing(format_top(p, p.sample_index(), 0)) == from_showing(top.out));

    RunResult counts =
        go_pprof({"-top", "-symbolize=none", "-sample_index=samples", "-nodecount=3", path});
    CHECK(from_showing(format_top(p, 0, 3)) == from_showing(counts.out));
}

TEST_CASE("go tool pprof -top matches format_top on units, inline labels and drops",
          "[integration][pprof]") {
    const Profile p = top_profile();
    const std::string path = write_profile(p, "top.pb.gz");
    RunResult top = go_pprof({"-top", "-symbolize=none", path});
    const std::string ours = format_top(p, 1, 0);
    INFO("ours:\n" << ours << "\npprof:\n" << top.out);
    CHECK(ours.find("(inline)") != std::string::npos);
    CHECK(ours.find("Dropped 1 node") != std::string::npos);
    CHECK(from_showing(ours) == from_showing(top.out));
    RunResult counts = go_pprof({"-top", "-symbolize=none", "-sample_index=0", path});
    CHECK(from_showing(format_top(p, 0, 0)) == from_showing(counts.out));
}

TEST_CASE("pprofcheck accepts the golden profile and rejects garbage", "[integration][pprof]") {
    std::string here = __FILE__;
    std::ifstream in(here.substr(0, here.rfind('/')) + "/../golden/sample_profile.pb.hex");
    REQUIRE(in.good());
    std::string bytes;
    for (std::string hex; in >> hex;)
        bytes.push_back(static_cast<char>(std::stoi(hex, nullptr, 16)));
    REQUIRE(decode_pprof(bytes).ok());
    const std::string golden = temp_path("golden.pb");
    std::ofstream(golden, std::ios::binary) << bytes;
    RunResult ok = run({build_dir() + "/pprofcheck", golden});
    INFO(ok.err);
    CHECK(ok.exit_code == 0);
    CHECK(ok.out.find("sample_type\tcpu\tnanoseconds\t60000000") != std::string::npos);

    const std::string garbage = temp_path("garbage.pb");
    std::ofstream(garbage, std::ios::binary) << "\x0a\xff\xffnot a profile";
    RunResult bad = run({build_dir() + "/pprofcheck", garbage});
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("pprofcheck:") != std::string::npos);
    CHECK_FALSE(decode_pprof(slurp(garbage)).ok());
}

TEST_CASE("decode_pprof reads profiles written by Go's encoder", "[integration][pprof]") {
    // Legacy profiles shipped with google/pprof, converted to profile.proto by Go's own encoder.
    const std::string testdata = "/usr/share/gocode/src/github.com/google/pprof/profile/testdata/";
    for (const char* name : {"gobench.cpu", "gobench.heap", "cppbench.cpu"}) {
        INFO(name);
        const std::string converted = temp_path(std::string(name) + ".pb.gz");
        go_pprof({"-proto", "-symbolize=none", "-output", converted, testdata + name});
        auto p = decode_pprof(slurp(converted));
        REQUIRE(p.ok());
        REQUIRE_FALSE(p->samples.empty());
        RunResult check = run({build_dir() + "/pprofcheck", converted});
        REQUIRE(check.exit_code == 0);
        std::vector<int64_t> go_totals;
        for (const std::string& line : split(check.out, '\n')) {
            auto f = split(line, '\t');
            if (f[0] == "sample_type") go_totals.push_back(std::stoll(f[3]));
        }
        REQUIRE(go_totals.size() == p->sample_types.size());
        for (size_t i = 0; i < go_totals.size(); ++i) {
            int64_t total = 0;
            for (const Sample& s : p->samples) total += s.values[i];
            CHECK(total == go_totals[i]);
        }
        CHECK(check.out.find("locations\t" + std::to_string(p->locations.size()) + "\n") !=
              std::string::npos);
        // What we decoded encodes to a profile Go still accepts with the same numbers.
        const std::string again = write_profile(*p, std::string(name) + ".again.pb.gz");
        RunResult recheck = run({build_dir() + "/pprofcheck", again});
        REQUIRE(recheck.exit_code == 0);
        CHECK(recheck.out.substr(recheck.out.find("samples\t")) ==
              check.out.substr(check.out.find("samples\t")));
    }
}
