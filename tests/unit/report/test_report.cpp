// `pmprof report` building blocks over hand-built profiles: the --format switch and file-name
// detection, reading files back (and refusing garbage), subtraction, tag focus, list, units.
#include <catch2/catch.hpp>

#include <fstream>

#include "../../support/harness.h"
#include "../../support/report_fixtures.h"
#include "pmprof/output/callgrind.h"
#include "pmprof/output/pprof.h"
#include "pmprof/output/text.h"
#include "pmprof/report/report.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

int64_t total(const Profile& p, size_t type) {
    int64_t t = 0;
    for (const Sample& s : p.samples) t += s.values.at(type);
    return t;
}

std::map<std::string, std::pair<int64_t, int64_t>> top_map(const Profile& p, int index) {
    std::map<std::string, std::pair<int64_t, int64_t>> out;
    for (const TopRow& r : compute_top(p, index)) out[r.function] = {r.flat, r.cum};
    return out;
}

// The value of the callgrind "totals:" line of `p` with one sample type.
std::string write_callgrind_totals(const Profile& p) {
    std::string out = write_callgrind(p);
    size_t at = out.rfind("totals: ");
    return at == std::string::npos ? "" : out.substr(at + 8, out.size() - at - 9);
}

std::string write_temp(const std::string& name, const std::string& data) {
    std::string path = temp_path(name);
    std::ofstream(path, std::ios::binary) << data;
    return path;
}

}  // namespace

TEST_CASE("format_from_filename follows the conventions of each consumer", "[unit][report]") {
    CHECK(format_from_filename("callgrind.out.1234") == "callgrind");
    CHECK(format_from_filename("/tmp/x/callgrind.out") == "callgrind");
    CHECK(format_from_filename("prof.callgrind") == "callgrind");
    CHECK(format_from_filename("flame.svg") == "svg");
    CHECK(format_from_filename("out.folded") == "folded");
    CHECK(format_from_filename("stacks.txt") == "folded");
    CHECK(format_from_filename("cpu.pb.gz") == "pprof");
    CHECK(format_from_filename("cpu.pb") == "pprof");
    CHECK(format_from_filename("cpu.pprof") == "pprof");
    CHECK(format_from_filename("profile").empty());
    CHECK(format_from_filename("").empty());
    CHECK(format_from_filename("svg/notes").empty());  // the directory does not count
}

TEST_CASE("render_profile maps every format name to its writer", "[unit][report]") {
    Profile p = fixture_profile();
    for (const std::string& f : kProfileFormats) {
        INFO(f);
        auto r = render_profile(p, f);
        REQUIRE(r.ok());
        CHECK(!r->empty());
    }
    CHECK(render_profile(p, "callgrind")->starts_with("# callgrind format"));
    CHECK(render_profile(p, "svg")->find("<svg") != std::string::npos);
    CHECK(render_profile(p, "text")->find("flat%") != std::string::npos);
    auto gz = render_profile(p, "pprof");
    REQUIRE(gz.ok());
    CHECK(static_cast<unsigned char>((*gz)[0]) == 0x1f);  // gzip magic
    auto back = decode_pprof(*gz);
    REQUIRE(back.ok());
    CHECK(back->samples.size() == p.samples.size());
    CHECK(format_is_binary("pprof"));
    CHECK(!format_is_binary("svg"));

    auto folded = render_profile(p, "folded", RenderOptions{"samples", 0, true, {}, {}});
    REQUIRE(folded.ok());
    CHECK(folded->find("worker;main;compute(int);memcpy 2") != std::string::npos);

    auto bad = render_profile(p, "dot");
    REQUIRE(!bad.ok());
    CHECK(bad.error().message.find("unknown format 'dot'") != std::string::npos);
    auto bad_type = render_profile(p, "svg", RenderOptions{"alloc_space", 0, false, {}, {}});
    REQUIRE(!bad_type.ok());
    CHECK(bad_type.error().message ==
          "no sample type 'alloc_space' (the profile has: samples, cpu)");
}

TEST_CASE("resolve_sample_type accepts names and indexes, default is the last type",
          "[unit][report]") {
    Profile p = fixture_profile();
    CHECK(*resolve_sample_type(p, "") == 1);
    CHECK(*resolve_sample_type(p, "samples") == 0);
    CHECK(*resolve_sample_type(p, "0") == 0);
    CHECK(!resolve_sample_type(p, "2").ok());
    p.default_sample_type = "samples";
    CHECK(*resolve_sample_type(p, "") == 0);
    CHECK(!resolve_sample_type(Profile{}, "").ok());
}

TEST_CASE("read_profile_file refuses missing, empty, garbage and truncated files with one line",
          "[unit][report]") {
    auto missing = read_profile_file("/nonexistent/cpu.pb.gz");
    REQUIRE(!missing.ok());
    CHECK(missing.error().message == "open /nonexistent/cpu.pb.gz: No such file or directory");

    std::string empty = write_temp("empty.pb.gz", "");
    auto e = read_profile_file(empty);
    REQUIRE(!e.ok());
    CHECK(e.error().message == empty + ": empty file, not a pprof profile");

    auto gz = encode_pprof_gzip(fixture_profile());
    REQUIRE(gz.ok());
    std::vector<std::string> bad = {
        "hello, this is not a profile\n",
        gz->substr(0, gz->size() / 2),                  // truncated gzip
        encode_pprof(fixture_profile()).substr(0, 40),  // truncated protobuf
        std::string("\x1f\x8b\x08\x00garbage", 11),     // gzip magic, garbage after
        std::string(1000, '\xff'),
    };
    for (size_t i = 0; i < bad.size(); ++i) {
        std::string path = write_temp("bad" + std::to_string(i), bad[i]);
        auto r = read_profile_file(path);
        INFO(i);
        REQUIRE(!r.ok());
        CHECK(r.error().message.starts_with(path + ": "));
        CHECK(r.error().message.find('\n') == std::string::npos);
    }
    std::string good = write_temp("good.pb.gz", *gz);
    auto ok = read_profile_file(good);
    REQUIRE(ok.ok());
    CHECK(total(*ok, 1) == 90000000);
}

TEST_CASE("subtract_profile nets samples by symbol across relocated mappings", "[unit][report]") {
    Profile base = fixture_profile();
    Profile cur = fixture_profile();
    // The current run loaded the binary elsewhere (ASLR) and spent 5 more samples in memcpy.
    for (Mapping& m : cur.mappings) m.memory_start += 0x10000, m.memory_limit += 0x10000;
    for (Location& l : cur.locations)
        l.address += l.mapping_id == 1 || l.mapping_id == 2 ? 0x10000 : 0;
    cur.samples[1].values = {7, 70000000};
    auto diff = subtract_profile(cur, base);
    REQUIRE(diff.ok());
    REQUIRE(diff->samples.size() == 1);  // everything else nets to zero and is dropped
    CHECK(diff->samples[0].values == std::vector<int64_t>{5, 50000000});
    auto top = top_map(*diff, 1);
    CHECK(top["memcpy"] == std::pair<int64_t, int64_t>{50000000, 50000000});
    CHECK(top["main"] == std::pair<int64_t, int64_t>{0, 50000000});

    // A leak shrinking shows as negative.
    auto back = subtract_profile(base, cur);
    REQUIRE(back.ok());
    CHECK(top_map(*back, 1)["memcpy"].first == -50000000);

    Profile other = fixture_profile();
    other.sample_types[1] = {"alloc_space", "bytes"};
    auto mismatch = subtract_profile(cur, other);
    REQUIRE(!mismatch.ok());
    CHECK(mismatch.error().message.find("different sample types") != std::string::npos);
}

TEST_CASE("subtract_profile output is a valid profile for every writer", "[unit][report]") {
    Profile base = fixture_profile();
    base.samples.pop_back();
    auto diff = subtract_profile(fixture_profile(), base);
    REQUIRE(diff.ok());
    CHECK(diff->samples.size() == 1);
    for (const char* f : {"pprof", "folded", "svg", "text", "callgrind"}) {
        INFO(f);
        CHECK(render_profile(*diff, f).ok());
    }
    auto negative = subtract_profile(base, fixture_profile());
    REQUIRE(negative.ok());
    auto cg = render_profile(*negative, "callgrind");
    REQUIRE(!cg.ok());
    CHECK(cg.error().message.find("negative") != std::string::npos);
}

TEST_CASE("tag_focus keeps samples whose label matches", "[unit][report]") {
    Profile p = fixture_profile();
    auto worker = tag_focus(p, "thread_name=work");
    REQUIRE(worker.ok());
    CHECK(worker->samples.size() == 2);
    CHECK(total(*worker, 0) == 3);
    auto anchored = tag_focus(p, "thread_name=^main$");
    REQUIRE(anchored.ok());
    CHECK(total(*anchored, 0) == 6);
    auto none = tag_focus(p, "no_such_key=x");
    REQUIRE(none.ok());
    CHECK(none->samples.empty());

    p.samples[0].labels.push_back(Label{"bytes", "", 4096, "bytes"});
    p.samples[1].labels.push_back(Label{"bytes", "", 64, "bytes"});
    CHECK(tag_focus(p, "bytes=4096")->samples.size() == 1);
    CHECK(tag_focus(p, "bytes=100:")->samples.size() == 1);
    CHECK(tag_focus(p, "bytes=:100")->samples.size() == 1);
    CHECK(tag_focus(p, "bytes=1:5000")->samples.size() == 2);

    CHECK(!tag_focus(p, "thread_name").ok());
    CHECK(!tag_focus(p, "=x").ok());
    auto bad = tag_focus(p, "thread_name=(");
    REQUIRE(!bad.ok());
    CHECK(bad.error().message.find("bad regular expression") != std::string::npos);
}

TEST_CASE("format_list prints source lines with per-line flat and cum", "[unit][report]") {
    // The fixture's /src/app.cpp, found under --source-path by its path's tail.
    std::string dir = temp_path("srcroot");
    REQUIRE(system(("mkdir -p " + dir + "/src").c_str()) == 0);
    {
        std::ofstream f(dir + "/src/app.cpp");
        for (int i = 1; i <= 40; ++i) f << "line " << i << "\n";
    }
    ListOptions opt{"^compute", "cpu", {dir}};
    auto out = format_list(fixture_profile(), opt);
    REQUIRE(out.ok());
    INFO(*out);
    CHECK(out->starts_with("Total: 90ms\n"));
    CHECK(out->find("ROUTINE ======================== compute(int) in /src/app.cpp\n") !=
          std::string::npos);
    // flat 30ms (lines 25), cum: line 22 30ms + line 25 50ms (recursion counted once).
    CHECK(out->find("      30ms       80ms (flat, cum) 88.89% of Total\n") != std::string::npos);
    CHECK(out->find("         .          .     20:line 20\n") != std::string::npos);  // start line
    CHECK(out->find("         .       30ms     22:line 22\n") != std::string::npos);
    CHECK(out->find("      30ms       50ms     25:line 25\n") != std::string::npos);
    CHECK(out->find("     30:line 30\n") != std::string::npos);  // 5 lines of margin
    CHECK(out->find("     31:") == std::string::npos);
    CHECK(out->find("main") == std::string::npos);

    auto missing = format_list(fixture_profile(), ListOptions{"helper", "", {}});
    REQUIRE(missing.ok());
    CHECK(missing->find("Error: could not find source file /src/app.h") != std::string::npos);
    CHECK(missing->find("      30ms       30ms      6:\n") != std::string::npos);

    CHECK(!format_list(fixture_profile(), ListOptions{"nothing_matches", "", {}}).ok());
    CHECK(!format_list(fixture_profile(), ListOptions{"(", "", {}}).ok());
}

TEST_CASE("format_scaled_value scales like pprof", "[unit][report]") {
    CHECK(format_scaled_value(290000000, "nanoseconds") == "290ms");
    CHECK(format_scaled_value(2490000000, "nanoseconds") == "2.49s");
    CHECK(format_scaled_value(1500, "nanoseconds") == "1.50us");
    CHECK(format_scaled_value(0, "nanoseconds") == "0");
    CHECK(format_scaled_value(1572864, "bytes") == "1.50MB");
    CHECK(format_scaled_value(-2048, "bytes") == "-2kB");
    CHECK(format_scaled_value(42, "count") == "42");
}

TEST_CASE("writers and report operations saturate instead of overflowing on extreme values",
          "[unit][report]") {
    Profile p;
    p.sample_types = {{"samples", "count"}};
    p.functions = {Function{1, "f", "", "/x.c", 0}};
    p.locations = {Location{1, 0, 0x10, {Line{1, INT64_MAX}}},
                   Location{2, 0, 0x20, {Line{1, INT64_MIN}}}};
    p.samples = {Sample{{1}, {INT64_MAX}, {}}, Sample{{1}, {INT64_MAX}, {}},
                 Sample{{2}, {INT64_MIN}, {}}};
    // MAX + MAX saturates at MAX (not a wrapped negative), then + MIN gives -1.
    CHECK(write_callgrind_totals(p) == "-1");
    p.samples.pop_back();
    CHECK(write_callgrind_totals(p) == std::to_string(INT64_MAX));
    auto listed = format_list(p, ListOptions{"f", "", {}});
    CHECK(listed.ok());
    auto diff = subtract_profile(p, p);
    REQUIRE(diff.ok());
    CHECK(render_profile(*diff, "svg").ok());
}
