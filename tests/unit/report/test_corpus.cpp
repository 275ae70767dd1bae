// Replays the kept fuzz corpus (tests/corpus/fuzz, grown by `make fuzz`) and the Go profile
// through decode_pprof and every writer, so each `make test` re-checks what the fuzzer found
// without needing clang: every input gives a Profile or an Error, and every writer accepts what
// decodes.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <algorithm>

#include "../../support/harness.h"
#include "pmprof/output/pprof.h"
#include "pmprof/report/report.h"

using namespace pmprof;
using namespace pmprof::test;

namespace {

std::vector<std::string> corpus_files() {
    std::string dir = source_dir() + "/tests/corpus/fuzz";
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST_CASE("the fuzz corpus decodes or fails cleanly, and every writer accepts what decodes",
          "[unit][report][corpus]") {
    auto files = corpus_files();
    REQUIRE(files.size() >= 4);  // at least the seeds
    size_t decoded = 0;
    for (const std::string& path : files) {
        INFO(path);
        std::string bytes = slurp(path);
        auto p = decode_pprof(bytes);
        if (!p.ok()) {
            CHECK(!p.error().message.empty());
            continue;
        }
        ++decoded;
        for (const std::string& format : kProfileFormats) {
            auto out = render_profile(*p, format);
            if (out.ok() && format == "svg") CHECK(out->ends_with("</svg>\n"));
        }
        auto diff = subtract_profile(*p, *p);
        REQUIRE(diff.ok());
        // A profile minus itself is empty, unless sums saturated at the int64 limits.
        bool extreme = false;
        for (const Sample& s : p->samples)
            for (int64_t v : s.values) extreme |= v < -(int64_t{1} << 56) || v > (int64_t{1} << 56);
        if (!extreme) CHECK(diff->samples.empty());
    }
    CHECK(decoded >= 4);
}

TEST_CASE("the Go CPU profile decodes with Go's sample types and functions",
          "[unit][report][corpus]") {
    auto p = read_profile_file(source_dir() + "/tests/corpus/go_cpu.pb.gz");
    REQUIRE(p.ok());
    REQUIRE(p->sample_types.size() == 2);
    CHECK(p->sample_types[0] == ValueType{"samples", "count"});
    CHECK(p->sample_types[1] == ValueType{"cpu", "nanoseconds"});
    CHECK(p->period_type == ValueType{"cpu", "nanoseconds"});
    std::set<std::string> names;
    for (const Function& f : p->functions) names.insert(f.name);
    CHECK(names.count("main.hotLoop") == 1);
    CHECK(names.count("main.warmLoop") == 1);
    CHECK(names.count("runtime.main") == 1);
    auto svg = render_profile(*p, "svg");
    REQUIRE(svg.ok());
    CHECK(svg->find("data-n=\"main.hotLoop\"") != std::string::npos);
}
