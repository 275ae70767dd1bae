// Hand-built profiles shared by the writer and report tests, and golden-file helpers.
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

#include "../support/harness.h"
#include "pmprof/profile/profile.h"

namespace pmprof::test {

/// Two sample types (samples/count, cpu/nanoseconds), two mappings, an inline frame (helper in
/// compute), a libc frame without file, an unsymbolized pc, recursion, thread_name labels.
/// Totals: 9 samples, 90 ms.
inline Profile fixture_profile() {
    Profile p;
    p.sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    p.period_type = {"cpu", "nanoseconds"};
    p.period = 10000000;
    p.duration_nanos = 1000000000;
    p.mappings = {
        Mapping{1, 0x400000, 0x500000, 0, "/usr/bin/app", "abcd", true, true, true, true},
        Mapping{2, 0x7f0000000000, 0x7f0000100000, 0x1000, "/lib/x86_64-linux-gnu/libc.so.6",
                "ef01", true, false, false, false},
    };
    p.functions = {
        Function{1, "main", "main", "/src/app.cpp", 10},
        Function{2, "compute(int)", "_Z7computei", "/src/app.cpp", 20},
        Function{3, "helper<int>", "_Z6helperIiEvv", "/src/app.h", 5},
        Function{4, "memcpy", "memcpy", "", 0},
    };
    p.locations = {
        Location{1, 1, 0x401010, {Line{1, 12}}},
        Location{2, 1, 0x401020, {Line{3, 6}, Line{2, 22}}},  // helper inlined into compute
        Location{3, 2, 0x7f0000000700, {Line{4, 0}}},
        Location{4, 1, 0x401030, {Line{2, 25}}},
        Location{5, 1, 0x401040, {}},  // no symbol
    };
    auto thread = [](const char* name) {
        return std::vector<Label>{Label{"thread_name", name, 0, ""}};
    };
    p.samples = {
        Sample{{2, 1}, {3, 30000000}, thread("main")},
        Sample{{3, 4, 1}, {2, 20000000}, thread("worker")},
        Sample{{4, 1}, {1, 10000000}, thread("main")},
        Sample{{5, 1}, {1, 10000000}, thread("worker")},
        Sample{{4, 4, 1}, {2, 20000000}, thread("main")},  // compute -> compute (recursion)
    };
    return p;
}

/// The `-top` profile, checked by tests/unit/output/test_text.cpp against hand-computed numbers
/// and by tests/integration/test_pprof_go.cpp against `go tool pprof` itself: main -> compute ->
/// helper (inlined into compute) -> a libc pseudo frame, and a tiny function under pprof's
/// default node fraction. Values in nanoseconds: 1.2 s, 30 ms, 700 ms, 1 ms. The mapping's file
/// does not exist, so pprof has nothing to symbolize from.
inline Profile top_profile() {
    Profile p;
    p.sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    p.mappings = {{1, 0x400000, 0x500000, 0, "/nonexistent/app", "", true, true, true, true}};
    p.functions = {{1, "main", "main", "app.cpp", 1},
                   {2, "compute(int)", "_Z7computei", "app.cpp", 10},
                   {3, "helper", "_Z6helperv", "app.cpp", 20},
                   {4, "libc.so.6+0x1234", "libc.so.6+0x1234", "", 0},
                   {5, "tiny", "tiny", "app.cpp", 30}};
    p.locations = {{1, 1, 0x401000, {{3, 21}, {2, 11}}},
                   {2, 1, 0x402000, {{1, 2}}},
                   {3, 0, 0x7f0000001234, {{4, 0}}},
                   {4, 1, 0x403000, {{5, 31}}}};
    p.samples = {{{1, 2}, {120, 1200000000}, {}},
                 {{2}, {3, 30000000}, {}},
                 {{3, 1, 2}, {70, 700000000}, {}},
                 {{4, 2}, {1, 1000000}, {}}};
    return p;
}

/// Compares `actual` with tests/golden/NAME; with PMPROF_UPDATE_GOLDEN=1 rewrites the file.
inline std::string golden(const std::string& name, const std::string& actual) {
    std::string path = source_dir() + "/tests/golden/" + name;
    if (const char* u = std::getenv("PMPROF_UPDATE_GOLDEN"); u && std::string(u) == "1") {
        std::ofstream(path, std::ios::binary) << actual;
    }
    return slurp(path);
}

}  // namespace pmprof::test
