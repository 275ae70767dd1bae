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

/// Compares `actual` with tests/golden/NAME; with PMPROF_UPDATE_GOLDEN=1 rewrites the file.
inline std::string golden(const std::string& name, const std::string& actual) {
    std::string path = source_dir() + "/tests/golden/" + name;
    if (const char* u = std::getenv("PMPROF_UPDATE_GOLDEN"); u && std::string(u) == "1") {
        std::ofstream(path, std::ios::binary) << actual;
    }
    return slurp(path);
}

}  // namespace pmprof::test
