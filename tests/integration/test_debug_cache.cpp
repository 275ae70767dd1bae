// The debug cache (include/pmprof/elf/debug_cache.h): an uncompressed copy of a compressed separate
// debug file, named by build id, used by later opens; failures fall back; symbols do not change.
#include <catch2/catch.hpp>

#include <elfutils/libdwelf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "../support/harness.h"
#include "pmprof/elf/debug_cache.h"
#include "pmprof/elf/image.h"
#include "pmprof/elf/image_impl.h"
#include "pmprof/os/procfs.h"
#include "pmprof/symbolize/symbolize.h"

namespace {

using pmprof::RawFrame;
using pmprof::SymbolizedPc;

/// Sets an environment variable for one test and restores the old value after it.
class ScopedEnv {
  public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr)
            setenv(name, value, 1);
        else
            unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_)
            setenv(name_, old_->c_str(), 1);
        else
            unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

struct ElfFacts {
    std::string build_id;
    int compressed_sections = 0;
    int debug_sections = 0;
};

ElfFacts elf_facts(const std::string& path) {
    ElfFacts facts;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    elf_version(EV_CURRENT);
    Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
    REQUIRE(elf != nullptr);
    const void* id = nullptr;
    ssize_t len = dwelf_elf_gnu_build_id(elf, &id);
    if (len > 0)
        facts.build_id =
            pmprof::hex_bytes(static_cast<const unsigned char*>(id), static_cast<size_t>(len));
    size_t shstrndx = 0;
    elf_getshdrstrndx(elf, &shstrndx);
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr shdr;
        if (gelf_getshdr(scn, &shdr) == nullptr) continue;
        if ((shdr.sh_flags & SHF_COMPRESSED) != 0) ++facts.compressed_sections;
        const char* name = elf_strptr(elf, shstrndx, shdr.sh_name);
        if (name != nullptr && std::string(name).rfind(".debug_", 0) == 0) ++facts.debug_sections;
    }
    elf_end(elf);
    ::close(fd);
    return facts;
}

/// A zlib-compressed separate debug file made from this very test binary.
std::string make_compressed_debug_file() {
    const std::string out = pmprof::test::temp_path("self.debug");
    // Our own path: /proc/self/exe would name objcopy itself.
    char exe[4096] = {};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    auto made = pmprof::test::run({"objcopy", "--only-keep-debug", "--compress-debug-sections=zlib",
                                   std::string(exe, static_cast<size_t>(n)), out});
    REQUIRE(made.exit_code == 0);
    return out;
}

std::string fd_target(int fd) {
    char buf[4096] = {};
    std::string link = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

/// Symbols of a few libc pcs (libc6-dbg's separate debug file is zlib-compressed on Debian)
/// and of this binary, through a fresh ProcessImage of this process.
std::vector<SymbolizedPc> symbolize_some(std::string* libc_debug_file) {
    auto maps = pmprof::read_maps(getpid());
    REQUIRE(maps.ok());
    auto image = pmprof::ProcessImage::open(getpid(), *maps);
    REQUIRE(image.ok());
    auto sym = pmprof::make_symbolizer(**image, {});
    std::vector<uint64_t> pcs;
    for (const void* fn :
         {reinterpret_cast<const void*>(&::read), reinterpret_cast<const void*>(&::qsort),
          reinterpret_cast<const void*>(&::pthread_cond_wait),
          reinterpret_cast<const void*>(&make_compressed_debug_file)})
        for (uint64_t off : {0, 4, 17, 40}) pcs.push_back(reinterpret_cast<uint64_t>(fn) + off);
    std::vector<SymbolizedPc> out;
    for (uint64_t pc : pcs) out.push_back(sym->symbolize(RawFrame{pc, true}));
    Dwfl_Module* mod = dwfl_addrmodule((*image)->impl().dwfl, reinterpret_cast<uint64_t>(&::read));
    REQUIRE(mod != nullptr);
    // The persistent symbol cache (src/symbolize/cache.h) answers repeated pcs without DWARF: load
    // it here to see which file libdwfl picks.
    Dwarf_Addr bias = 0;
    dwfl_module_getdwarf(mod, &bias);
    const char* debug_file = nullptr;
    dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &debug_file);
    *libc_debug_file = debug_file != nullptr ? debug_file : "";
    return out;
}

void require_same_symbols(const std::vector<SymbolizedPc>& a, const std::vector<SymbolizedPc>& b) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        CAPTURE(i, a[i].pc);
        REQUIRE(a[i].build_id == b[i].build_id);
        REQUIRE(a[i].frames.size() == b[i].frames.size());
        for (size_t k = 0; k < a[i].frames.size(); ++k) {
            REQUIRE(a[i].frames[k].function == b[i].frames[k].function);
            REQUIRE(a[i].frames[k].file == b[i].frames[k].file);
            REQUIRE(a[i].frames[k].line == b[i].frames[k].line);
            REQUIRE(a[i].frames[k].inlined == b[i].frames[k].inlined);
        }
    }
}

}  // namespace

TEST_CASE("a compressed debug file gets an uncompressed cache entry with its build id",
          "[integration][debugcache]") {
    const std::string original = make_compressed_debug_file();
    const ElfFacts before = elf_facts(original);
    REQUIRE(before.compressed_sections > 0);
    REQUIRE(before.build_id.size() == 40);
    const std::string dir = pmprof::test::temp_path("cache-a");

    std::string path;
    REQUIRE_FALSE(pmprof::open_cached_debug(before.build_id, dir, &path).valid());
    auto fd = pmprof::open_readonly(original);
    REQUIRE(fd.ok());
    REQUIRE(pmprof::add_cached_debug(fd->get(), original, dir));

    const std::string entry = dir + "/debug/" + before.build_id + ".debug";
    const ElfFacts after = elf_facts(entry);
    CHECK(after.compressed_sections == 0);
    CHECK(after.debug_sections == before.debug_sections);
    CHECK(after.build_id == before.build_id);
    struct stat st {};
    REQUIRE(::stat((dir + "/debug").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);

    pmprof::UniqueFd cached = pmprof::open_cached_debug(before.build_id, dir, &path);
    REQUIRE(cached.valid());
    CHECK(path == entry);
    CHECK(fd_target(cached.get()) == entry);
    // Another build id never gets this entry.
    std::string other = before.build_id;
    other[0] = other[0] == '0' ? '1' : '0';
    CHECK_FALSE(pmprof::open_cached_debug(other, dir, &path).valid());
}

TEST_CASE("an uncompressed debug file or an unwritable cache dir adds nothing",
          "[integration][debugcache]") {
    const std::string original = make_compressed_debug_file();
    auto fd = pmprof::open_readonly(original);
    REQUIRE(fd.ok());
    // A regular file where the cache directory should be: mkdir fails even for root.
    const std::string blocker = pmprof::test::temp_path("not-a-dir");
    REQUIRE(pmprof::test::run({"touch", blocker}).exit_code == 0);
    CHECK_FALSE(pmprof::add_cached_debug(fd->get(), original, blocker + "/cache"));
    CHECK_FALSE(pmprof::add_cached_debug(fd->get(), original, ""));

    char exe[4096] = {};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    auto plain = pmprof::open_readonly(std::string(exe, static_cast<size_t>(n)));
    REQUIRE(plain.ok());
    const std::string dir = pmprof::test::temp_path("cache-plain");
    CHECK_FALSE(pmprof::add_cached_debug(plain->get(), exe, dir));
    CHECK(::access((dir + "/debug").c_str(), F_OK) != 0);
}

TEST_CASE("the cache dir comes from PMPROF_CACHE_DIR, XDG_CACHE_HOME or HOME",
          "[integration][debugcache]") {
    {
        ScopedEnv a("PMPROF_CACHE_DIR", "off");
        CHECK(pmprof::debug_cache_dir().empty());
    }
    ScopedEnv a("PMPROF_CACHE_DIR", nullptr);
    {
        ScopedEnv b("XDG_CACHE_HOME", "/x/cache");
        CHECK(pmprof::debug_cache_dir() == "/x/cache/pmprof");
    }
    ScopedEnv b("XDG_CACHE_HOME", nullptr);
    {
        ScopedEnv c("HOME", "/home/u");
        CHECK(pmprof::debug_cache_dir() == "/home/u/.cache/pmprof");
    }
    ScopedEnv c("HOME", nullptr);
    CHECK(pmprof::debug_cache_dir().empty());
    ScopedEnv d("PMPROF_CACHE_DIR", "/somewhere");
    CHECK(pmprof::debug_cache_dir() == "/somewhere");
}

TEST_CASE("symbols are identical with and without the debug cache, and reopening uses it",
          "[integration][symbolize][debugcache]") {
    std::string debug_file;
    std::vector<SymbolizedPc> plain;
    {
        ScopedEnv off("PMPROF_CACHE_DIR", "off");
        plain = symbolize_some(&debug_file);
    }
    if (elf_facts(debug_file).compressed_sections == 0) {
        WARN("libc's debug file " << debug_file << " is not compressed; nothing to cache");
        return;
    }
    REQUIRE(plain[0].frames.size() >= 1);  // libc6-dbg gives read() a name

    const std::string dir = pmprof::test::temp_path("cache-sym");
    ScopedEnv on("PMPROF_CACHE_DIR", dir.c_str());
    std::string first_file, second_file;
    auto first = symbolize_some(&first_file);  // creates the entry, still reads the original
    auto second = symbolize_some(&second_file);
    CHECK(first_file == debug_file);
    CHECK(second_file.rfind(dir + "/debug/", 0) == 0);
    CHECK(elf_facts(second_file).compressed_sections == 0);
    require_same_symbols(plain, first);
    require_same_symbols(plain, second);

    // A cache dir that cannot be created falls back to the original file, same symbols.
    const std::string blocker = pmprof::test::temp_path("blocker");
    REQUIRE(pmprof::test::run({"touch", blocker}).exit_code == 0);
    ScopedEnv bad("PMPROF_CACHE_DIR", (blocker + "/cache").c_str());
    std::string fallback_file;
    auto fallback = symbolize_some(&fallback_file);
    CHECK(fallback_file == debug_file);
    require_same_symbols(plain, fallback);
}
