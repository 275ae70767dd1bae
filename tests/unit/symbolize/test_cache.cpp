// The persistent symbolization cache (src/symbolize/cache.h): the file round-trips, is ignored as
// soon as the file its DWARF came from changes or it is malformed, and a symbolizer reads back
// exactly what the previous one computed, storing nothing for modules without DWARF.
#include <catch2/catch.hpp>

#include <dwarf.h>
#include <gnu/libc-version.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "../../support/harness.h"
#include "pmprof/elf/image.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/os/procfs.h"
#include "pmprof/symbolize/symbolize.h"
#include "symbolize/cache.h"

namespace cachetest {

[[gnu::noinline]] int cached_function(int x) {
    asm volatile("" : "+r"(x));
    return x + 7;
}

}  // namespace cachetest

namespace {

using pmprof::CachedFrames;
using pmprof::DwarfSource;
using pmprof::SourceFrame;

/// A fresh directory under the test temp dir, removed at the end of the scope.
struct TempDir {
    std::string path;
    TempDir() {
        path = pmprof::test::temp_path("symcache-XXXXXX");
        REQUIRE(mkdtemp(path.data()) != nullptr);
    }
    ~TempDir() { pmprof::test::run({"rm", "-rf", path}); }
};

/// Sets PMPROF_CACHE_DIR for the scope (the symbolizer reads it when it is made).
struct CacheDirEnv {
    std::string old;
    bool had = false;
    explicit CacheDirEnv(const std::string& dir) {
        if (const char* v = getenv("PMPROF_CACHE_DIR")) {
            had = true;
            old = v;
        }
        setenv("PMPROF_CACHE_DIR", dir.c_str(), 1);
    }
    ~CacheDirEnv() {
        if (had)
            setenv("PMPROF_CACHE_DIR", old.c_str(), 1);
        else
            unsetenv("PMPROF_CACHE_DIR");
    }
};

CachedFrames sample_entries() {
    CachedFrames e;
    e[0x1234] = {SourceFrame{"ns::inner()", "_ZN2ns5innerEv", "a/b.cpp", 12, 10, true},
                 SourceFrame{"outer(int)", "_Z5outeri", "c.cpp", 40, 35, false}};
    e[0x99] = {SourceFrame{"read", "read", "", 0, 0, false}};
    e[0x5000] = {};  // no symbol covers it: remembered too
    return e;
}

bool same(const SourceFrame& a, const SourceFrame& b) {
    return a.function == b.function && a.mangled == b.mangled && a.file == b.file &&
           a.line == b.line && a.start_line == b.start_line && a.inlined == b.inlined;
}

bool same(const CachedFrames& a, const CachedFrames& b) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, frames] : a) {
        auto it = b.find(key);
        if (it == b.end() || it->second.size() != frames.size()) return false;
        for (size_t i = 0; i < frames.size(); ++i)
            if (!same(frames[i], it->second[i])) return false;
    }
    return true;
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::trunc) << text;
}

}  // namespace

TEST_CASE("symbol cache files round-trip and are checked against their DWARF source",
          "[unit][symbolize]") {
    TempDir dir;
    const std::string id = "00112233445566778899aabbccddeeff00112233";
    const std::string path = pmprof::symbol_cache_path(dir.path, id, "l1i1");
    CHECK(path == dir.path + "/symbols/" + id + ".l1i1");
    CHECK(pmprof::symbol_cache_path("", id, "l1i1").empty());
    CHECK(pmprof::symbol_cache_path(dir.path, "../../etc", "l1i1").empty());

    SECTION("DWARF in the module's own file: its identity must match") {
        DwarfSource src;
        src.in_main_file = true;
        src.identity = pmprof::FileIdentity{1, 2, 3, 4};
        REQUIRE(pmprof::save_symbol_cache(path, src, sample_entries()));
        auto loaded = pmprof::load_symbol_cache(path, src.identity);
        REQUIRE(loaded);
        CHECK(same(*loaded, sample_entries()));
        CHECK_FALSE(pmprof::load_symbol_cache(path, pmprof::FileIdentity{1, 2, 3, 5}));
        CHECK_FALSE(pmprof::load_symbol_cache(path, std::nullopt));
    }
    SECTION("a separate debug file: changing it makes the entries stale") {
        const std::string debug = dir.path + "/libx.debug";
        write_text(debug, "debug info");
        DwarfSource src;
        src.debug_path = debug;
        src.identity = *pmprof::identity_of_path(debug);
        REQUIRE(pmprof::save_symbol_cache(path, src, sample_entries()));
        REQUIRE(pmprof::load_symbol_cache(path, std::nullopt));
        write_text(debug, "other debug info");
        CHECK_FALSE(pmprof::load_symbol_cache(path, std::nullopt));
        ::unlink(debug.c_str());
        CHECK_FALSE(pmprof::load_symbol_cache(path, std::nullopt));
    }
    SECTION("malformed or foreign files are ignored, unstorable entries left out") {
        DwarfSource src;
        src.in_main_file = true;
        CachedFrames entries = sample_entries();
        entries[0x77] = {SourceFrame{"has\ttab", "x", "", 0, 0, false}};
        REQUIRE(pmprof::save_symbol_cache(path, src, entries));
        auto loaded = pmprof::load_symbol_cache(path, src.identity);
        REQUIRE(loaded);
        CHECK(same(*loaded, sample_entries()));

        std::string text = pmprof::test::slurp(path);
        write_text(path, text.substr(0, text.size() - 5));  // a torn last line
        CHECK_FALSE(pmprof::load_symbol_cache(path, src.identity));
        // Written by another pmprof build: its frames may be named differently.
        std::string foreign = text;
        foreign.replace(foreign.find(' ', 15) + 1, 4, "dead");
        write_text(path, foreign);
        CHECK_FALSE(pmprof::load_symbol_cache(path, src.identity));
        write_text(path, "not a cache\n");
        CHECK_FALSE(pmprof::load_symbol_cache(path, src.identity));
    }
}

TEST_CASE("a symbolizer reuses the previous one's results, only for modules with DWARF",
          "[unit][symbolize]") {
    TempDir dir;
    CacheDirEnv env(dir.path);
    auto maps = pmprof::read_maps(getpid());
    REQUIRE(maps.ok());
    auto image = pmprof::ProcessImage::open(getpid(), *maps);
    REQUIRE(image.ok());
    const uint64_t pcs[] = {reinterpret_cast<uint64_t>(&cachetest::cached_function) + 1,
                            reinterpret_cast<uint64_t>(&::gnu_get_libc_version) + 4,
                            reinterpret_cast<uint64_t>(&::zlibVersion)};
    std::vector<pmprof::SymbolizedPc> first;
    {
        auto sym = pmprof::make_symbolizer(**image, {});
        for (uint64_t pc : pcs) first.push_back(sym->symbolize(pmprof::RawFrame{pc, true}));
    }
    REQUIRE(first[0].frames.size() == 1);
    CHECK(first[0].frames[0].function == "cachetest::cached_function(int)");
    const std::string self_file = pmprof::symbol_cache_path(dir.path, first[0].build_id, "l1i1");
    struct stat st {};
    REQUIRE(::stat(self_file.c_str(), &st) == 0);
    // libc's lines come from libc6-dbg: stored, checked by that file.
    const std::string libc_file = pmprof::symbol_cache_path(dir.path, first[1].build_id, "l1i1");
    REQUIRE(::stat(libc_file.c_str(), &st) == 0);
    CHECK(pmprof::test::slurp(libc_file).find("\nsource debug ") != std::string::npos);
    // zlib has no debug information installed: nothing may be stored for it, so that
    // installing it later shows its lines at once.
    Dwfl_Module* zmod = dwfl_addrmodule((*image)->impl().dwfl, pcs[2]);
    Dwarf_Addr bias = 0;
    if (zmod != nullptr && dwfl_module_getdwarf(zmod, &bias) == nullptr) {
        const std::string z_file = pmprof::symbol_cache_path(dir.path, first[2].build_id, "l1i1");
        CHECK(::stat(z_file.c_str(), &st) != 0);
    }

    // The next symbolizer answers from the file: same frames; and an edited entry shows,
    // which proves the answer came from the file.
    {
        auto sym = pmprof::make_symbolizer(**image, {});
        for (size_t i = 0; i < first.size(); ++i) {
            const pmprof::SymbolizedPc& again = sym->symbolize(pmprof::RawFrame{pcs[i], true});
            REQUIRE(again.frames.size() == first[i].frames.size());
            for (size_t k = 0; k < again.frames.size(); ++k)
                CHECK(same(again.frames[k], first[i].frames[k]));
            CHECK(again.module == first[i].module);
            CHECK(again.module_offset == first[i].module_offset);
        }
    }
    std::string text = pmprof::test::slurp(self_file);
    const std::string name = "cachetest::cached_function(int)\t";
    REQUIRE(text.find(name) != std::string::npos);
    text.replace(text.find(name), name.size(), "cachetest::edited(int)\t");
    write_text(self_file, text);
    auto sym = pmprof::make_symbolizer(**image, {});
    CHECK(sym->symbolize(pmprof::RawFrame{pcs[0], true}).frames.at(0).function ==
          "cachetest::edited(int)");
    // Other options are other results (no inline expansion here): a separate file.
    auto plain = pmprof::make_symbolizer(**image, {true, false});
    CHECK(plain->symbolize(pmprof::RawFrame{pcs[0], true}).frames.at(0).function ==
          "cachetest::cached_function(int)");
}
